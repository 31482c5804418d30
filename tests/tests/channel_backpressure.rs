//! Backpressure over a real `pair()`: a bounded outgoing buffer under a peer that does not
//! read (`try_send` says `Full`, `send` waits, `ready` and `flush` wait), what a dropped
//! `send` future leaves behind, and how a sender learns that the peer is gone.

use std::time::Duration;

use aiosock::{Config, Endpoint, Receiver, SendError, Sender, TrySendError};
use aiosock_tests::{HANG, Traffic, blob, guard};

/// The sending end's capacity in these tests.
const CAPACITY: usize = 64 * 1024;
/// Size of each message's blob.
const MSG: usize = 1024;
/// Accepted bytes beyond which the buffer is clearly not bounded: the capacity (twice,
/// with the batch in the writer's hands) plus the kernel's socket buffers are far below.
const BOUND: usize = 16 * 1024 * 1024;
/// Messages `fill` may try before calling the buffer unbounded (100 MB of blobs).
const LIMIT: u64 = 100_000;
/// How long `ready()` may stay pending before `fill` takes the peer as stalled. Only a
/// liveness probe: waiting longer changes nothing, since the peer never reads.
const STALL: Duration = Duration::from_millis(300);

/// A stalled pair: `tx` sends into a 64 KiB buffer, and the peer end is not even split.
fn stalled() -> (
    Sender<Traffic>,
    Receiver<Traffic>,
    Endpoint<Traffic, Traffic>,
) {
    let (a, b) = aiosock::pair::<Traffic, Traffic>().expect("socketpair");
    let mut config = Config::new();
    config.set_capacity(CAPACITY);
    let (tx, rx) = a.with_config(config).into_split();
    (tx, rx, b)
}

/// Sends `blob(seq, MSG)` for seq = 0, 1, … with `try_send` until the buffer is full and
/// stays full: `try_send` says `Full` and `ready()` does not resolve for [`STALL`].
/// Returns the number of messages accepted.
async fn fill(tx: &Sender<Traffic>) -> u64 {
    let mut accepted = 0;
    let mut fulls = 0;
    loop {
        assert!(
            accepted < LIMIT,
            "{accepted} messages of {MSG} bytes accepted and never Full: the buffer is unbounded"
        );
        match tx.try_send(blob(accepted, MSG)) {
            Ok(()) => accepted += 1,
            Err(TrySendError::Full(back)) => {
                assert_eq!(back, blob(accepted, MSG), "Full hands the message back");
                fulls += 1;
                // Let the writer move what it can into the kernel, if it can.
                match tokio::time::timeout(STALL, tx.ready()).await {
                    Ok(ready) => ready.expect("ready on an open channel"),
                    Err(_stalled) => break,
                }
            }
            Err(other) => panic!("try_send: {other:?}"),
        }
    }
    assert!(fulls > 0);
    let bytes = accepted as usize * MSG;
    assert!(
        bytes >= CAPACITY,
        "only {bytes} bytes accepted before Full, under the capacity {CAPACITY}"
    );
    assert!(
        bytes < BOUND,
        "{bytes} bytes accepted by a 64 KiB buffer under a stalled peer"
    );
    accepted
}

/// Receives `blob(0..n)` in order.
async fn expect_blobs(rx: &mut Receiver<Traffic>, n: u64) {
    for seq in 0..n {
        let msg = guard("recv", rx.recv()).await.expect("recv");
        assert_eq!(msg, Some(blob(seq, MSG)), "message {seq} of {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_send_is_full_under_a_stalled_peer_and_everything_accepted_arrives() {
    let (tx, _rx, peer) = stalled();
    let accepted = fill(&tx).await;
    // Still full: nothing reads.
    match tx.try_send(Traffic::End) {
        Err(TrySendError::Full(back)) => assert_eq!(back, Traffic::End),
        other => panic!("expected Full, got {other:?}"),
    }

    let (_peer_tx, mut peer_rx) = peer.into_split();
    expect_blobs(&mut peer_rx, accepted).await;
    guard("send after draining", tx.send(Traffic::End))
        .await
        .expect("send after draining");
    assert_eq!(
        guard("recv", peer_rx.recv()).await.unwrap(),
        Some(Traffic::End),
        "the message after the accepted ones"
    );
    drop(tx);
    assert_eq!(
        guard("recv at the end", peer_rx.recv()).await.unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_waits_while_full_and_a_dropped_send_queues_nothing() {
    let (tx, _rx, peer) = stalled();
    let accepted = fill(&tx).await;

    // A liveness probe, not a measurement: with the peer not reading, send cannot finish.
    let dropped =
        tokio::time::timeout(Duration::from_millis(200), tx.send(Traffic::Num(666))).await;
    assert!(
        dropped.is_err(),
        "send completed into a full buffer: {dropped:?}"
    );
    // Several cancelled sends, from several clones.
    let clone = tx.clone();
    for n in 0..5 {
        let r = tokio::time::timeout(Duration::from_millis(20), clone.send(Traffic::Num(n))).await;
        assert!(r.is_err(), "send completed into a full buffer: {r:?}");
    }
    drop(clone);

    let (_peer_tx, mut peer_rx) = peer.into_split();
    expect_blobs(&mut peer_rx, accepted).await;
    guard("send", tx.send(Traffic::End)).await.expect("send");
    drop(tx);
    // Exactly the accepted messages, then End: none of the dropped sends' messages.
    assert_eq!(
        guard("recv", peer_rx.recv()).await.unwrap(),
        Some(Traffic::End)
    );
    assert_eq!(
        guard("recv at the end", peer_rx.recv()).await.unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_send_completes_once_the_peer_reads() {
    let (tx, _rx, peer) = stalled();
    let accepted = fill(&tx).await;
    let pending = tokio::spawn(async move {
        tx.send(Traffic::End).await.expect("send");
        tx
    });
    let (_peer_tx, mut peer_rx) = peer.into_split();
    expect_blobs(&mut peer_rx, accepted).await;
    let tx = guard("the waiting send", pending).await.expect("send task");
    assert_eq!(
        guard("recv", peer_rx.recv()).await.unwrap(),
        Some(Traffic::End)
    );
    drop(tx);
    assert_eq!(
        guard("recv at the end", peer_rx.recv()).await.unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_resolves_once_the_peer_drains() {
    let (tx, _rx, peer) = stalled();
    let accepted = fill(&tx).await;
    let probe = tokio::time::timeout(Duration::from_millis(200), tx.ready()).await;
    assert!(
        probe.is_err(),
        "ready() resolved with a full buffer: {probe:?}"
    );

    let reader = tokio::spawn(async move {
        let (peer_tx, mut peer_rx) = peer.into_split();
        expect_blobs(&mut peer_rx, accepted).await;
        (peer_tx, peer_rx)
    });
    guard("ready", tx.ready()).await.expect("ready");
    tx.try_send(Traffic::End)
        .expect("try_send right after ready");
    let (_peer_tx, mut peer_rx) = guard("reader", reader).await.expect("reader task");
    assert_eq!(
        guard("recv", peer_rx.recv()).await.unwrap(),
        Some(Traffic::End)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_resolves_after_the_peer_reads() {
    let (tx, _rx, peer) = stalled();
    let accepted = fill(&tx).await;
    let probe = tokio::time::timeout(Duration::from_millis(200), tx.flush()).await;
    assert!(
        probe.is_err(),
        "flush() resolved while the peer reads nothing: {probe:?}"
    );

    let (_peer_tx, mut peer_rx) = peer.into_split();
    let flush = tokio::spawn(async move {
        tx.flush().await.expect("flush");
        tx
    });
    expect_blobs(&mut peer_rx, accepted).await;
    let tx = guard("flush", flush).await.expect("flush task");
    // Flushed means in the kernel: a last message needs no further help from the writer
    // once flushed either.
    guard("send", tx.send(Traffic::End)).await.expect("send");
    guard("flush", tx.flush()).await.expect("flush");
    assert_eq!(
        guard("recv", peer_rx.recv()).await.unwrap(),
        Some(Traffic::End)
    );
}

fn expect_closed(result: Result<(), SendError<Traffic>>, sent: Traffic) {
    match result {
        Err(SendError::Closed(back)) => assert_eq!(back, sent, "Closed hands the message back"),
        other => panic!("expected SendError::Closed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_fails_with_closed_once_the_peer_end_is_dropped() {
    let (a, b) = aiosock::pair::<Traffic, Traffic>().expect("socketpair");
    let (tx, _rx) = a.into_split();
    guard("send", tx.send(Traffic::Num(0))).await.expect("send");
    guard("flush", tx.flush()).await.expect("flush");
    assert!(!tx.is_closed());
    let (peer_tx, peer_rx) = b.into_split();
    drop(peer_rx);
    drop(peer_tx);

    // A write to a gone peer fails; sends that follow hand their message back.
    let mut n = 1;
    loop {
        let msg = Traffic::Num(n);
        match guard("send", tx.send(msg.clone())).await {
            Ok(()) => {}
            other => {
                expect_closed(other, msg);
                break;
            }
        }
        assert!(n < 1_000_000, "sends to a dropped peer keep succeeding");
        n += 1;
        tokio::task::yield_now().await;
    }
    guard("closed", tx.closed()).await;
    assert!(tx.is_closed());
    expect_closed(guard("send", tx.send(Traffic::End)).await, Traffic::End);
    match tx.try_send(Traffic::End) {
        Err(TrySendError::Closed(back)) => assert_eq!(back, Traffic::End),
        other => panic!("expected TrySendError::Closed, got {other:?}"),
    }
    assert!(
        guard("ready", tx.ready()).await.is_err(),
        "ready on a closed channel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_resolves_when_the_receiver_sees_the_peer_hang_up() {
    let (a, b) = aiosock::pair::<Traffic, Traffic>().expect("socketpair");
    let (tx, mut rx) = a.into_split();
    let (peer_tx, peer_rx) = b.into_split();
    guard("peer send", peer_tx.send(Traffic::Num(1)))
        .await
        .expect("send");
    drop(peer_tx);
    drop(peer_rx);
    assert_eq!(
        guard("recv", rx.recv()).await.unwrap(),
        Some(Traffic::Num(1))
    );
    assert_eq!(guard("recv at the end", rx.recv()).await.unwrap(), None);
    guard("closed", tx.closed()).await;
    assert!(tx.is_closed());
    expect_closed(guard("send", tx.send(Traffic::End)).await, Traffic::End);
}

/// The peer end is dropped while this end is idle: nothing is written and this end's
/// receiver is not polled. `closed()` must still resolve (DESIGN.md: a peer that dies is
/// seen at once, never a hang; tokio's `mpsc::Sender::closed` resolves when the receiver
/// goes away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_resolves_for_an_idle_sender_when_the_peer_end_is_dropped() {
    let (a, b) = aiosock::pair::<Traffic, Traffic>().expect("socketpair");
    let (tx, _rx) = a.into_split();
    guard("send", tx.send(Traffic::Num(0))).await.expect("send");
    guard("flush", tx.flush()).await.expect("flush");
    let (peer_tx, peer_rx) = b.into_split();
    drop(peer_rx);
    drop(peer_tx);
    let closed = tokio::time::timeout(HANG, tx.closed()).await;
    assert!(
        closed.is_ok(),
        "closed() still pending {HANG:?} after the peer end was dropped"
    );
    assert!(tx.is_closed());
    expect_closed(guard("send", tx.send(Traffic::End)).await, Traffic::End);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_on_a_full_buffer_end_when_the_peer_goes_away() {
    let (tx, _rx, peer) = stalled();
    fill(&tx).await;
    let send = {
        let tx = tx.clone();
        tokio::spawn(async move { tx.send(Traffic::End).await })
    };
    let flush = {
        let tx = tx.clone();
        tokio::spawn(async move { tx.flush().await })
    };
    let ready = {
        let tx = tx.clone();
        tokio::spawn(async move { tx.ready().await })
    };
    // Let them start waiting, then the peer end goes away without reading anything.
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(peer);
    expect_closed(
        guard("waiting send", send).await.expect("task"),
        Traffic::End,
    );
    assert!(guard("waiting flush", flush).await.expect("task").is_err());
    assert!(guard("waiting ready", ready).await.expect("task").is_err());
    guard("closed", tx.closed()).await;
    assert!(tx.is_closed());
}

#[tokio::test]
async fn a_send_blocked_on_a_full_socket_fails_once_the_peer_drops_only_its_receiver() {
    // Both ends keep their `Sender`; the peer drops only its `Receiver` while this end's
    // socket and buffer are full. The peer's shutdown raises no event here, so the
    // receiver discards what it will never read: the room wakes this end's writer, whose
    // next write fails, and the blocked `send` returns `Closed`.
    let (tx, _rx, peer) = stalled();
    let (_peer_tx, peer_rx) = peer.into_split();
    fill(&tx).await;
    let blocked = tokio::spawn({
        let tx = tx.clone();
        async move { tx.send(blob(u64::MAX, MSG)).await }
    });
    tokio::time::sleep(STALL).await;
    assert!(!blocked.is_finished(), "the buffer is full: send waits");
    drop(peer_rx);
    let result = guard("the blocked send", blocked).await.expect("task");
    assert!(
        matches!(result, Err(SendError::Closed(_))),
        "expected Closed, got {result:?}"
    );
    assert!(tx.is_closed());
}

/// A loop of sends that never waits for room (the whole stream fits the outgoing buffer)
/// still lets the other tasks of a current-thread runtime run once a batch is queued, as
/// sends on tokio's own channels do: here a task that only counts. Everything sent
/// arrives, in order. Without the cooperative budget the loop ran to its end first (the
/// other task ran 0 times).
#[test]
fn a_send_loop_that_never_waits_for_room_lets_other_tasks_run() {
    const N: u64 = 200_000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(
        &rt,
        guard("a loop of sends and its receipt", async {
            let (a, b) = aiosock::pair::<Traffic, Traffic>().expect("socketpair");
            let mut config = Config::new();
            // Room for the whole stream (about 2 MB): no send ever waits.
            config.set_capacity(64 * 1024 * 1024);
            let (tx, _rx) = a.with_config(config).into_split();
            let (_btx, mut brx) = b.into_split();
            let ran = std::rc::Rc::new(std::cell::Cell::new(0u64));
            let counter = ran.clone();
            let ticker = tokio::task::spawn_local(async move {
                loop {
                    counter.set(counter.get() + 1);
                    tokio::task::yield_now().await;
                }
            });
            let mut ticks_seen = 0;
            for seq in 0..N {
                tx.send(Traffic::Num(seq)).await.expect("send");
                if seq == N - 1 {
                    ticks_seen = ran.get();
                }
            }
            ticker.abort();
            assert!(
                ticks_seen > 10,
                "the other task ran {ticks_seen} times during {N} sends"
            );
            drop(tx);
            for seq in 0..N {
                match brx.recv().await.expect("recv") {
                    Some(Traffic::Num(n)) => assert_eq!(n, seq),
                    other => panic!("{other:?} instead of {seq}"),
                }
            }
        }),
    );
}
