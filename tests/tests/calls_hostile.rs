//! A raw socket plays a peer that answers calls wrongly: an id never used, an answer
//! given twice, an answer to a one-way message, an answer of the wrong type. Each is a
//! typed error that ends the connection, and no reply reaches the wrong caller.

use std::io::Read;
use std::os::unix::net::UnixStream;

use aiosock::{CallError, Error};
use aiosock_tests::{call_header, guard, hello, raw_peer, write_raw};

#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq)]
enum Q {
    #[reply(u64)]
    Ask(u64),
    Tell(u64),
}

/// Our end calls through a `QClient`; its receiver runs in a task (serving the peer's
/// messages, routing replies) whose outcome the test inspects. The raw peer reads our
/// hello and has written its own.
fn setup() -> (
    QClient,
    tokio::task::JoinHandle<Result<(), Error>>,
    UnixStream,
) {
    let (ours, theirs) = aiosock::pair::<Q, Q>().expect("pair");
    let (tx, rx) = ours.into_split();
    let mut peer = raw_peer(theirs);
    write_raw(&mut peer, &hello::<Q, Q>());
    let serving = tokio::spawn(async move { rx.serve(Ignore).await.map(drop) });
    (QClient::new(tx), serving, peer)
}

struct Ignore;

impl QHandler for Ignore {
    async fn on_ask(&mut self, n: u64) -> u64 {
        n
    }
    async fn on_tell(&mut self, _: u64) {}
}

/// Reads one frame our end sent (after our hello, the first time): its flags, call id
/// (if any) and payload.
fn read_frame(peer: &mut UnixStream) -> (u16, Option<u64>, Vec<u8>) {
    let mut head = [0u8; 8];
    peer.read_exact(&mut head[..4]).expect("frame header");
    if head[..4] == *b"AIOS" {
        let mut rest = vec![0; hello::<Q, Q>().len() - 4];
        peer.read_exact(&mut rest).expect("our hello");
        assert_eq!([&head[..4], &rest[..]].concat(), hello::<Q, Q>());
        peer.read_exact(&mut head[..4]).expect("frame header");
    }
    peer.read_exact(&mut head[4..]).expect("frame header");
    let len = u32::from_le_bytes(head[0..4].try_into().unwrap()) as usize;
    let flags = u16::from_le_bytes(head[6..8].try_into().unwrap());
    let id = if flags & 0x3 != 0 {
        let mut id = [0u8; 8];
        peer.read_exact(&mut id).expect("call id");
        Some(u64::from_le_bytes(id))
    } else {
        None
    };
    let mut payload = vec![0; len];
    peer.read_exact(&mut payload).expect("payload");
    (flags, id, payload)
}

/// A reply frame for call `id` with `payload`.
fn reply(id: u64, payload: &[u8]) -> Vec<u8> {
    [
        call_header(payload.len() as u32, 0x0002, id),
        payload.to_vec(),
    ]
    .concat()
}

async fn call_id_of_next(peer: &mut UnixStream) -> u64 {
    let (flags, id, payload) = read_frame(peer);
    assert_eq!(flags, 0x0001, "a call");
    assert_eq!(payload[0], 0, "Q::Ask");
    id.expect("a call has an id")
}

fn expect_failed(result: Result<u64, CallError>) {
    assert!(
        matches!(result, Err(CallError::Failed { .. })),
        "expected CallError::Failed, got {result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_to_an_unknown_id_ends_the_connection() {
    let (q, serving, mut peer) = setup();
    let call = tokio::spawn({
        let q = q.clone();
        async move { q.ask(1).await }
    });
    let id = call_id_of_next(&mut peer).await;
    write_raw(&mut peer, &reply(id.wrapping_add(1000), &[9]));
    expect_failed(guard("call", call).await.unwrap());
    assert!(matches!(
        guard("serving", serving).await.unwrap(),
        Err(Error::UnexpectedReply { id: bad }) if bad == id.wrapping_add(1000)
    ));
    // The connection is over for calls.
    assert!(guard("after", q.ask(2)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_answer_never_reaches_the_next_caller() {
    let (q, serving, mut peer) = setup();
    let first = tokio::spawn({
        let q = q.clone();
        async move { q.ask(1).await }
    });
    let first_id = call_id_of_next(&mut peer).await;
    write_raw(&mut peer, &reply(first_id, &[11]));
    assert_eq!(guard("first", first).await.unwrap(), Ok(11));
    let second = tokio::spawn({
        let q = q.clone();
        async move { q.ask(2).await }
    });
    let second_id = call_id_of_next(&mut peer).await;
    assert_ne!(first_id, second_id);
    // The first call answered again: the second caller must not get 99.
    write_raw(&mut peer, &reply(first_id, &[99]));
    expect_failed(guard("second", second).await.unwrap());
    assert!(matches!(
        guard("serving", serving).await.unwrap(),
        Err(Error::UnexpectedReply { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_to_a_one_way_message_ends_the_connection() {
    let (q, serving, mut peer) = setup();
    q.tell(5).await.unwrap();
    let (flags, id, payload) = read_frame(&mut peer);
    assert_eq!((flags, id, payload), (0, None, vec![1, 5]));
    // The peer makes up an id for it: there is no call to answer.
    write_raw(&mut peer, &reply(0, &[5]));
    assert!(matches!(
        guard("serving", serving).await.unwrap(),
        Err(Error::UnexpectedReply { id: 0 })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_of_the_wrong_type_is_a_typed_error() {
    for payload in [
        vec![3, b'a', b'b', b'c'], // a string where a u64 belongs: trailing bytes
        vec![0xff],                // not a varint
        vec![],                    // nothing at all
    ] {
        let (q, serving, mut peer) = setup();
        let call = tokio::spawn({
            let q = q.clone();
            async move { q.ask(1).await }
        });
        let id = call_id_of_next(&mut peer).await;
        write_raw(&mut peer, &reply(id, &payload));
        expect_failed(guard("call", call).await.unwrap());
        match guard("serving", serving).await.unwrap() {
            Err(Error::BadReply { id: bad, source }) => {
                assert_eq!(bad, id);
                assert!(
                    matches!(*source, Error::TrailingBytes { .. } | Error::Decode(_)),
                    "{source:?}"
                );
            }
            other => panic!("expected BadReply for {payload:?}, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_reports_reach_the_caller_and_malformed_ones_end_the_connection() {
    let (q, serving, mut peer) = setup();
    let call = tokio::spawn({
        let q = q.clone();
        async move { q.ask(1).await }
    });
    let id = call_id_of_next(&mut peer).await;
    // Failure::Unanswered.
    write_raw(&mut peer, &[call_header(1, 0x0006, id), vec![1]].concat());
    assert_eq!(
        guard("call", call).await.unwrap(),
        Err(CallError::Unanswered)
    );
    let call = tokio::spawn({
        let q = q.clone();
        async move { q.ask(2).await }
    });
    let id = call_id_of_next(&mut peer).await;
    // Failure variant 9 does not exist.
    write_raw(&mut peer, &[call_header(1, 0x0006, id), vec![9]].concat());
    expect_failed(guard("call", call).await.unwrap());
    assert!(matches!(
        guard("serving", serving).await.unwrap(),
        Err(Error::BadReply { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_received_with_recv_is_answered_unanswered() {
    let (a, b) = aiosock::pair::<Q, Q>().expect("pair");
    let (tx, rx) = a.into_split();
    let serving = tokio::spawn(rx.serve(Ignore));
    let (_btx, mut brx) = b.into_split();
    let q = QClient::new(tx);
    let call = tokio::spawn({
        let q = q.clone();
        async move { q.ask(3).await }
    });
    assert_eq!(guard("recv", brx.recv()).await.unwrap(), Some(Q::Ask(3)));
    assert_eq!(
        guard("call", call).await.unwrap(),
        Err(CallError::Unanswered)
    );
    drop((q, brx, _btx));
    guard("serving", serving).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_request_answers_calls_it_dispatches_and_no_others() {
    let (a, b) = aiosock::pair::<Q, Q>().expect("pair");
    let (tx, rx) = a.into_split();
    let serving = tokio::spawn(rx.serve(Ignore));
    let (b_tx, mut b_rx) = b.into_split();
    let q = QClient::new(tx);
    let call = |n: u64| {
        let q = q.clone();
        tokio::spawn(async move { q.ask(n).await })
    };
    // Dispatched: answered with what the method returned.
    let first = call(7);
    let request = guard("recv", b_rx.recv_request()).await.unwrap().unwrap();
    assert_eq!((request.message(), request.is_call()), (&Q::Ask(7), true));
    request.dispatch(&mut Ignore).await;
    assert_eq!(guard("first", first).await.unwrap(), Ok(7));
    // Taken out, or dropped: the caller learns at once.
    let second = call(8);
    let request = guard("recv", b_rx.recv_request()).await.unwrap().unwrap();
    assert_eq!(request.into_message(), Q::Ask(8));
    assert_eq!(
        guard("second", second).await.unwrap(),
        Err(CallError::Unanswered)
    );
    let third = call(9);
    drop(guard("recv", b_rx.recv_request()).await.unwrap().unwrap());
    assert_eq!(
        guard("third", third).await.unwrap(),
        Err(CallError::Unanswered)
    );
    // A one-way message is no call.
    q.tell(3).await.unwrap();
    let request = guard("recv", b_rx.recv_request()).await.unwrap().unwrap();
    assert!(!request.is_call());
    request.dispatch(&mut Ignore).await;
    drop((q, b_tx, b_rx));
    guard("serving", serving).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_calls_and_never_reads_cannot_grow_the_queue_of_owed_answers() {
    const CALLS: u64 = 100_000;
    let (ours, theirs) = aiosock::pair::<Q, Q>().expect("pair");
    let mut config = aiosock::Config::new();
    config.set_capacity(1024);
    let (_tx, mut rx) = ours.with_config(config).into_split();
    let mut peer = raw_peer(theirs);
    // The peer writes its hello and 100,000 calls from a thread, and never reads: every call
    // `recv` hands out owes it an `Unanswered` report, which piles up on our side once the
    // socket is full.
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut bytes = hello::<Q, Q>();
        for id in 0..CALLS {
            bytes.extend(call_header(2, 0x0001, id));
            bytes.extend([0, 1]);
        }
        let _ = peer.write_all(&bytes);
        peer
    });
    let mut received = 0u64;
    loop {
        match guard("recv", rx.recv()).await {
            Ok(Some(Q::Ask(1))) => received += 1,
            Ok(None) | Err(_) => break,
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    // Past twice the capacity of owed reports, the connection ended before every call was
    // received, and the peer's writes stopped.
    assert!(received < CALLS, "all {CALLS} calls were received");
    let mut peer = writer.join().expect("writer");
    // What we owed and wrote is readable, then the end: nothing more was queued.
    let mut got = Vec::new();
    let _ = peer.read_to_end(&mut got);
    assert!(!got.is_empty());
}

/// The same rules for a stream's calls: a reply of the wrong type fails that call with
/// `Failed` and ends the connection (`BadReply`), the other calls of the stream fail
/// with it, and an answer given twice reaches no other call of the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streams_calls_get_typed_errors_and_never_a_reply_meant_for_another() {
    // A wrong type: the call fails, the connection ends, the stream's other call too.
    let (q, serving, mut peer) = setup();
    let mut asks = q.ask_stream();
    asks.push(1, 10).await.unwrap();
    asks.push(2, 20).await.unwrap();
    let first = call_id_of_next(&mut peer).await;
    let _second = call_id_of_next(&mut peer).await;
    write_raw(&mut peer, &reply(first, &[3, b'a', b'b', b'c']));
    let mut outcomes = Vec::new();
    while let Some(outcome) = guard("next", asks.next()).await {
        outcomes.push(outcome);
    }
    assert!(
        matches!(
            &outcomes[..],
            [(10, Err(CallError::Failed { .. })), (20, Err(_))]
        ),
        "{outcomes:?}"
    );
    assert!(matches!(
        guard("serving", serving).await.unwrap(),
        Err(Error::BadReply { id, .. }) if id == first
    ));

    // An answer given twice: the second call of the stream must not get it.
    let (q, serving, mut peer) = setup();
    let mut asks = q.ask_stream();
    asks.push(1, 10).await.unwrap();
    let first = call_id_of_next(&mut peer).await;
    write_raw(&mut peer, &reply(first, &[11]));
    assert_eq!(guard("next", asks.next()).await, Some((10, Ok(11))));
    asks.push(2, 20).await.unwrap();
    let second = call_id_of_next(&mut peer).await;
    assert_ne!(first, second);
    write_raw(&mut peer, &reply(first, &[99]));
    match guard("next", asks.next()).await {
        Some((20, Err(CallError::Failed { .. }))) => {}
        other => panic!("expected the second call to fail, got {other:?}"),
    }
    assert!(matches!(
        guard("serving", serving).await.unwrap(),
        Err(Error::UnexpectedReply { id }) if id == first
    ));
}

#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq)]
enum Bulk {
    #[reply(u64)]
    Take(Vec<u8>),
}

struct Refuse;

impl BulkHandler for Refuse {
    async fn on_take(&mut self, _: Vec<u8>) -> u64 {
        0
    }
}

/// A `BulkClient` with a 64 KiB outgoing buffer whose receiver runs in a task, and a raw
/// peer that has sent its hello and reads nothing.
fn bulk_setup() -> (
    BulkClient,
    tokio::task::JoinHandle<Result<(), Error>>,
    UnixStream,
) {
    let (ours, theirs) = aiosock::pair::<Bulk, Bulk>().expect("pair");
    let mut config = aiosock::Config::new();
    config.set_capacity(64 * 1024);
    let (tx, rx) = ours.with_config(config).into_split();
    let mut peer = raw_peer(theirs);
    write_raw(&mut peer, &hello::<Bulk, Bulk>());
    let serving = tokio::spawn(async move { rx.serve(Refuse).await.map(drop) });
    (BulkClient::new(tx), serving, peer)
}

/// A push that waits for room when the connection ends (the peer never read, then
/// closed): it fails, and the stream's `next` gives exactly one outcome for each push
/// that succeeded and none for it. Before the fix the end also failed the waiting push's
/// call in the stream, so its tag came out of `next` too, beside the push's error.
#[tokio::test]
async fn a_push_waiting_for_room_when_the_connection_ends_has_one_outcome() {
    use std::future::Future;
    use std::task::{Context, Waker};
    let (client, serving, peer) = bulk_setup();
    let mut takes = client.take_stream();
    let mut cx = Context::from_waker(Waker::noop());
    // Push until one waits: the peer reads nothing, so the socket and the buffer fill.
    let mut pushed = 0u64;
    let mut waiting = loop {
        let mut push = Box::pin(takes.push(vec![7; 256 * 1024], pushed));
        match push.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(result) => {
                result.expect("room for this one");
                pushed += 1;
            }
            std::task::Poll::Pending => break push,
        }
        assert!(pushed < 1000, "a push never waited");
    };
    // The peer goes away; this end's writer finds out and the connection ends.
    drop(peer);
    assert_eq!(
        guard("waiting push", waiting.as_mut()).await,
        Err(CallError::Closed)
    );
    drop(waiting);
    let mut tags = Vec::new();
    while let Some((tag, outcome)) = guard("next", takes.next()).await {
        assert!(outcome.is_err(), "call {tag}: {outcome:?}");
        tags.push(tag);
    }
    tags.sort_unstable();
    assert_eq!(
        tags,
        (0..pushed).collect::<Vec<_>>(),
        "one outcome per push that succeeded"
    );
    let _ = guard("serving", serving).await;
}

/// `try_push` says `Full` once the outgoing buffer is full (the peer reads nothing), and
/// a refused push is not in flight: the stream counts only the pushes that succeeded.
#[tokio::test]
async fn try_push_says_full_when_the_buffer_is_full() {
    let (client, _serving, _peer) = bulk_setup();
    let mut takes = client.take_stream();
    let mut pushed = 0;
    let full = loop {
        match takes.try_push(vec![1; 256 * 1024], pushed).await {
            Ok(()) => pushed += 1,
            Err(e) => break e,
        }
        assert!(pushed < 1000, "never full");
    };
    assert_eq!(full, CallError::Full);
    assert_eq!(takes.in_flight(), pushed as usize);
}
