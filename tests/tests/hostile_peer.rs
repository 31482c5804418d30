//! A raw socket plays a hostile or broken peer: bad payloads, a stalled half frame, and a
//! hello followed by nothing. (`channel_errors.rs` has the header-level cases: magic,
//! version, lengths, truncation, fds and flags; `fds_hostile.rs` has descriptors.)

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use aiosock::__private::{CountingAlloc, peak_of};
use aiosock::{Config, Error, Receiver, Sender};
use aiosock_tests::{frame_header, guard, hello, raw_peer, write_raw};

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq)]
enum Raw {
    Text(String),
    Num(u64),
    Pair { a: u8, b: u16 },
}

#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq)]
enum Other {
    Float(f64),
    Flag(bool),
}

fn raw_pair() -> (Sender<Raw>, Receiver<Raw>, UnixStream) {
    let (ours, theirs) = aiosock::pair::<Raw, Raw>().expect("pair");
    let (tx, rx) = ours.with_config(Config::new()).into_split();
    (tx, rx, raw_peer(theirs))
}

fn frame(payload: &[u8]) -> Vec<u8> {
    [frame_header(payload.len() as u32, 0, 0), payload.to_vec()].concat()
}

/// Sends a valid frame, then `bytes`, and returns the error the second `recv` gives,
/// after checking that the stream is over after it.
async fn error_after_a_good_frame(bytes: Vec<u8>) -> Error {
    let (_tx, mut rx, mut peer) = raw_pair();
    write_raw(
        &mut peer,
        &[hello::<Raw, Raw>(), frame(&[1, 7]), bytes].concat(),
    );
    assert_eq!(
        guard("recv", rx.recv()).await.expect("recv"),
        Some(Raw::Num(7))
    );
    let err = guard("recv", rx.recv())
        .await
        .expect_err("the second frame is bad");
    assert!(matches!(rx.recv().await, Ok(None)), "the stream is over");
    err
}

/// bincode's own error inside an `Error::Decode`, as text (bincode 2.0.1 prints its
/// error's `Debug` form).
fn bincode_cause(err: &Error) -> String {
    let Error::Decode(e) = err else {
        panic!("expected Error::Decode, got {err:?}");
    };
    std::error::Error::source(e)
        .expect("DecodeError has bincode's error as its source")
        .to_string()
}

#[tokio::test]
async fn a_payload_of_another_type_has_trailing_bytes() {
    // `Other::Float(-2.5)`: variant 0, then 8 bytes of f64. `Raw::Text` reads the f64's
    // first byte (0) as an empty string, and 7 bytes are left over.
    let mut payload = vec![0];
    payload.extend((-2.5f64).to_le_bytes());
    let err = error_after_a_good_frame(frame(&payload)).await;
    assert!(
        matches!(err, Error::TrailingBytes { len: 9, used: 2 }),
        "{err:?}"
    );
    let _ = (Other::Float(0.0), Other::Flag(true));
}

#[tokio::test]
async fn invalid_utf8_in_a_string_is_a_decode_error() {
    let err = error_after_a_good_frame(frame(&[0, 3, 0xff, 0xfe, 0xfd])).await;
    let cause = bincode_cause(&err);
    assert!(cause.starts_with("Utf8"), "{cause}");
}

#[tokio::test]
async fn a_value_out_of_range_is_a_decode_error() {
    // `Pair { a: u8, b: u16 }` with `b` = 70000 (varint: 0xfc marker, u32 LE).
    let err = error_after_a_good_frame(frame(&[2, 7, 0xfc, 0x70, 0x11, 0x01, 0x00])).await;
    let cause = bincode_cause(&err);
    assert!(cause.starts_with("InvalidIntegerType"), "{cause}");
}

#[test]
fn a_string_claiming_a_huge_length_fails_without_allocating_it() {
    // `Text` with a length of 2^40 (varint 0xfd + u64) inside a 10-byte payload. The
    // receiver runs on this thread (a current-thread runtime), where the counting
    // allocator measures what receiving the frame allocates.
    let rt = aiosock_tests::local_runtime();
    let (_tx, mut rx, mut peer) = rt.block_on(async { raw_pair() });
    let mut payload = vec![0, 0xfd];
    payload.extend((1u64 << 40).to_le_bytes());
    write_raw(
        &mut peer,
        &[hello::<Raw, Raw>(), frame(&[1, 7]), frame(&payload)].concat(),
    );
    assert_eq!(rt.block_on(rx.recv()).expect("recv"), Some(Raw::Num(7)));
    let (result, peak) = peak_of(|| rt.block_on(rx.recv()));
    let cause = bincode_cause(&result.expect_err("a bad frame"));
    assert!(cause.starts_with("UnexpectedEnd"), "{cause}");
    assert!(peak < 4096, "receiving the frame allocated {peak} bytes");
}

#[tokio::test]
async fn a_peer_that_stalls_mid_frame_never_desynchronises_a_cancelled_receiver() {
    let (_tx, rx, mut peer) = raw_pair();
    let whole = frame(&[
        0, 11, b'h', b'e', b'l', b'l', b'o', b' ', b'w', b'o', b'r', b'l', b'd',
    ]);
    write_raw(
        &mut peer,
        &[hello::<Raw, Raw>(), whole[..5].to_vec()].concat(),
    );

    // A task blocked in recv on the half frame is dropped at an arbitrary point.
    let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
    let task = {
        let rx = rx.clone();
        tokio::spawn(async move { rx.lock().await.recv().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!task.is_finished(), "half a frame is not a message");
    task.abort();
    let _ = task.await;
    let mut rx = std::sync::Arc::try_unwrap(rx)
        .expect("task gone")
        .into_inner();

    // Timeouts around recv while the peer stays silent lose nothing either.
    for _ in 0..5 {
        let r = tokio::time::timeout(Duration::from_millis(20), rx.recv()).await;
        assert!(r.is_err(), "still waiting for the rest");
    }
    write_raw(&mut peer, &whole[5..]);
    write_raw(&mut peer, &frame(&[1, 3]));
    assert_eq!(
        guard("recv", rx.recv()).await.expect("recv"),
        Some(Raw::Text("hello world".into()))
    );
    assert_eq!(
        guard("recv", rx.recv()).await.expect("recv"),
        Some(Raw::Num(3))
    );
    drop(peer);
    assert!(matches!(guard("end", rx.recv()).await, Ok(None)));
}

#[tokio::test]
async fn a_hello_then_end_of_file_is_a_clean_close() {
    let (_tx, mut rx, mut peer) = raw_pair();
    write_raw(&mut peer, &hello::<Raw, Raw>());
    peer.flush().expect("flush");
    drop(peer);
    assert!(matches!(guard("recv", rx.recv()).await, Ok(None)));
}

#[tokio::test]
async fn end_of_file_before_any_byte_is_a_clean_close() {
    let (_tx, mut rx, peer) = raw_pair();
    drop(peer);
    assert!(matches!(guard("recv", rx.recv()).await, Ok(None)));
}

/// Shapes that amplify: a frame of `None`s, and zero-sized elements.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq)]
enum Wide {
    Nones(Vec<Option<[u64; 32]>>),
    Units(std::collections::BTreeSet<()>),
}

fn wide_pair() -> (Receiver<Wide>, UnixStream) {
    let (ours, theirs) = aiosock::pair::<Wide, Wide>().expect("pair");
    let (_tx, rx) = ours.into_split();
    let mut peer = raw_peer(theirs);
    write_raw(&mut peer, &hello::<Wide, Wide>());
    (rx, peer)
}

#[test]
fn a_frame_of_nones_is_refused_before_its_memory_is_allocated() {
    // 1 MiB of `None`s would be 264 MiB of `Option<[u64; 32]>` without the budget.
    let rt = aiosock_tests::local_runtime();
    let (mut rx, mut peer) = rt.block_on(async { wide_pair() });
    let mut payload = vec![0, 0xfc];
    payload.extend((1u32 << 20).to_le_bytes());
    payload.resize(payload.len() + (1 << 20), 0);
    let writer = std::thread::spawn(move || {
        write_raw(&mut peer, &frame(&payload));
        peer
    });
    let (result, peak) = peak_of(|| rt.block_on(rx.recv()));
    let len = (1 << 20) + 6;
    let budget = 16 * len + aiosock::Config::DECODE_ALLOWANCE;
    assert!(
        matches!(result, Err(Error::OverBudget { len: l, budget: b }) if (l, b) == (len, budget)),
        "{result:?}"
    );
    // The read buffer (at most twice the frame) plus what the budget allows.
    let bound = 2 * (len + 64 * 1024) + aiosock::__private::wire::MEMORY_PER_UNIT * budget;
    assert!(peak <= bound, "{peak} bytes allocated, bound {bound}");
    drop(writer.join().expect("writer"));
}

#[tokio::test]
async fn a_claim_of_2_to_the_60_zero_sized_elements_fails_promptly() {
    // `Units(BTreeSet<()>)` claiming 2^60 elements in a 10-byte frame: without a budget
    // the receiving thread would insert `()` for centuries, and no timeout could fire.
    let (mut rx, mut peer) = wide_pair();
    let mut payload = vec![1, 0xfd];
    payload.extend((1u64 << 60).to_le_bytes());
    write_raw(&mut peer, &frame(&payload));
    let result = guard("recv", rx.recv()).await;
    assert!(
        matches!(
            result,
            Err(Error::OverBudget {
                len: 10,
                budget: 4256
            })
        ),
        "{result:?}"
    );
    assert!(matches!(rx.recv().await, Ok(None)), "the stream is over");
}

// Large on purpose: a small frame that decodes into a large value.
#[allow(clippy::large_enum_variant)]
#[aiosock::protocol]
#[derive(Debug)]
enum Heavy {
    /// Handled by waiting until the test lets it go.
    Slow,
    /// Nine bytes on the wire, but a `Heavy` in memory.
    Ping,
    Big([[u64; 32]; 16]),
}

/// A handler whose `Slow` waits: meanwhile `serve` reads ahead.
struct Stuck(Option<tokio::sync::oneshot::Receiver<()>>, u64);

impl HeavyHandler for Stuck {
    async fn on_slow(&mut self) {
        if let Some(gate) = self.0.take() {
            let _ = gate.await;
        }
    }
    async fn on_ping(&mut self) {
        self.1 += 1;
    }
    async fn on_big(&mut self, _: [[u64; 32]; 16]) {}
}

/// While a handler waits, `serve` holds the messages it reads ahead; the peer floods it
/// with the smallest frames, each a 4 KiB `Heavy` in memory. What `serve` holds is
/// bounded by the end's capacity in memory, not in frame bytes (256 KiB of nine-byte
/// frames would be 29,000 messages: 120 MiB).
#[test]
fn read_ahead_under_a_flood_of_tiny_messages_holds_memory_within_the_capacity() {
    const PINGS: u64 = 40_000;
    let (ours, theirs) = aiosock::pair::<Other, Heavy>().expect("pair");
    let mut peer = raw_peer(theirs);
    let (_tx, rx) = ours.into_split();
    let flood = std::thread::spawn(move || {
        let mut bytes = [hello::<Heavy, Other>(), frame(&[0])].concat();
        for _ in 0..PINGS {
            bytes.extend_from_slice(&frame(&[1]));
        }
        write_raw(&mut peer, &bytes);
    });
    let runtime = aiosock_tests::local_runtime();
    let (pings, peak) = peak_of(|| {
        runtime.block_on(async move {
            let (open, gate) = tokio::sync::oneshot::channel();
            let serving = rx.serve(Stuck(Some(gate), 0));
            let release = async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = open.send(());
                std::future::pending::<()>().await;
            };
            tokio::select! {
                served = serving => served.expect("serve").1,
                () = release => unreachable!(),
            }
        })
    });
    flood.join().expect("flood");
    assert_eq!(pings, PINGS, "every message handled");
    assert!(
        peak < 8 << 20,
        "serve held {peak} bytes while the handler waited"
    );
}
