//! A raw socket plays a hostile or broken peer: bad payloads, descriptors it should not
//! send, a stalled half frame, and a hello followed by nothing. (`channel_errors.rs` has
//! the header-level cases: magic, version, lengths, truncation, fds and flags.)

use std::io::{IoSlice, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use aiosock::{Config, Error, Receiver, Sender};
use aiosock_tests::{frame_header, guard, hello, raw_peer, write_raw};

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

fn open_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("fd dir").count()
}

async fn expect_decode_error(bytes: Vec<u8>, what: &str) {
    let (_tx, mut rx, mut peer) = raw_pair();
    write_raw(
        &mut peer,
        &[hello::<Raw, Raw>(), frame(&[1, 7]), bytes].concat(),
    );
    assert_eq!(
        guard("recv", rx.recv()).await.expect("recv"),
        Some(Raw::Num(7))
    );
    match guard("recv", rx.recv()).await {
        Err(Error::Decode(e)) => assert!(!e.to_string().is_empty()),
        // Bytes that happen to decode as a shorter message of the right type.
        Err(Error::TrailingBytes { len, used }) => assert!(used < len),
        other => panic!("{what}: expected Error::Decode or TrailingBytes, got {other:?}"),
    }
    assert!(
        matches!(rx.recv().await, Ok(None)),
        "{what}: the stream is over"
    );
}

#[tokio::test]
async fn a_payload_of_another_type_is_a_decode_error() {
    // `Other::Float(-2.5)`: variant 0, then 8 bytes of f64 that `Raw::Text` reads as a
    // string length and bytes that do not fit.
    let mut payload = vec![0];
    payload.extend((-2.5f64).to_le_bytes());
    expect_decode_error(frame(&payload), "another type").await;
    let _ = (Other::Float(0.0), Other::Flag(true));
}

#[tokio::test]
async fn invalid_utf8_in_a_string_is_a_decode_error() {
    expect_decode_error(frame(&[0, 3, 0xff, 0xfe, 0xfd]), "invalid UTF-8").await;
}

#[tokio::test]
async fn a_value_out_of_range_is_a_decode_error() {
    // `Pair { a: u8, b: u16 }` with `b` = 70000 (varint: 0xfc marker, u32 LE).
    expect_decode_error(frame(&[2, 7, 0xfc, 0x70, 0x11, 0x01, 0x00]), "u16 overflow").await;
}

#[tokio::test]
async fn a_string_claiming_a_huge_length_does_not_allocate_it() {
    let before = aiosock_tests::proc_status_kib("VmHWM");
    // `Text` with a length of 2^40 (varint 0xfd + u64) inside a 10-byte payload.
    let mut payload = vec![0, 0xfd];
    payload.extend((1u64 << 40).to_le_bytes());
    expect_decode_error(frame(&payload), "huge string").await;
    let grown = aiosock_tests::proc_status_kib("VmHWM").saturating_sub(before);
    assert!(grown < 64 * 1024, "peak memory grew by {grown} KiB");
}

#[tokio::test]
async fn descriptors_sent_without_a_frame_are_dropped_not_received() {
    let (_tx, mut rx, peer) = raw_pair();
    let mut peer = peer;
    write_raw(&mut peer, &hello::<Raw, Raw>());
    assert!(rx.try_recv().is_err(), "nothing yet");
    let before = open_fd_count();
    // Ancillary data carrying 8 descriptors (a file opened 8 times), with the bytes of
    // a valid frame: version 1 never receives descriptors.
    let files: Vec<std::fs::File> = (0..8)
        .map(|_| std::fs::File::open("/dev/null").expect("open"))
        .collect();
    let fds: Vec<i32> = files.iter().map(|f| f.as_raw_fd()).collect();
    let bytes = frame(&[1, 42]);
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    let sent = nix::sys::socket::sendmsg::<()>(
        peer.as_fd().as_raw_fd(),
        &[IoSlice::new(&bytes)],
        &cmsg,
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .expect("sendmsg");
    assert_eq!(sent, bytes.len());
    drop(files);
    let after_send = open_fd_count();
    assert_eq!(
        guard("recv", rx.recv()).await.expect("recv"),
        Some(Raw::Num(42)),
        "the frame's bytes still arrive"
    );
    // Once received, the in-flight descriptors are gone: none was installed here.
    let after_recv = open_fd_count();
    assert!(
        after_recv <= before,
        "descriptors leaked into the receiver: {before} before, {after_send} in flight, {after_recv} after"
    );
    drop(peer);
    assert!(matches!(guard("end", rx.recv()).await, Ok(None)));
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
