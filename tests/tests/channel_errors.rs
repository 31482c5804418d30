//! Errors over real sockets: protocol mismatches, frames over the maximum (without
//! allocating what they announce), bad bytes and truncation from a raw peer, messages too
//! large to send, and a property test of round trips.

use std::net::Shutdown;
use std::os::unix::net::UnixStream;

use aiosock::__private::peak_of;
use aiosock::{
    Config, Endpoint, Error, InvalidMessage, Part, Protocol, Receiver, SendError, Sender,
    TryRecvError, TrySendError,
};
use aiosock_tests::{call_header, frame_header, guard, hello, hello_v1, raw_peer, write_raw};
use proptest::prelude::*;

/// Counts what the receiving thread allocates (see `peak_of`).
#[global_allocator]
static ALLOCATOR: aiosock::__private::CountingAlloc = aiosock::__private::CountingAlloc;

// ---------------------------------------------------------------------------------------
// Protocol mismatch

#[aiosock::protocol]
#[derive(Debug, PartialEq)]
enum Apple {
    A(u64),
}

#[aiosock::protocol]
#[derive(Debug, PartialEq)]
enum Banana {
    B(u64),
}

#[aiosock::protocol]
#[derive(Debug, PartialEq)]
enum Cherry {
    C(u64),
}

#[aiosock::protocol]
#[derive(Debug, PartialEq)]
enum Durian {
    D(u64),
}

mod v1 {
    #[aiosock::protocol]
    #[derive(Debug, PartialEq)]
    pub(crate) enum Job {
        Run(u64),
    }
}

mod v2 {
    #[aiosock::protocol]
    #[derive(Debug, PartialEq)]
    pub(crate) enum Job {
        Run(String),
    }
}

fn id_of<P: Protocol>() -> (&'static str, u64) {
    (P::NAME, P::FINGERPRINT)
}

fn id(p: &aiosock::ProtocolId) -> (&str, u64) {
    (p.name(), p.fingerprint())
}

fn expect_mismatch(result: Result<Option<impl std::fmt::Debug>, Error>) -> aiosock::Mismatch {
    match result {
        Err(Error::ProtocolMismatch(m)) => *m,
        other => panic!("expected ProtocolMismatch, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_enums_fail_with_both_names() {
    let (a, b) = aiosock::pair::<Apple, Banana>().expect("socketpair");
    // The other end, retyped as if built from other enums.
    let b: Endpoint<Cherry, Durian> = Endpoint::from_fd(b.into_fd());
    let (a_tx, mut a_rx) = a.into_split();
    let (b_tx, mut b_rx) = b.into_split();
    guard("send", a_tx.send(Apple::A(1))).await.expect("send");
    guard("flush", a_tx.flush()).await.expect("flush");
    guard("send", b_tx.send(Cherry::C(2))).await.expect("send");
    guard("flush", b_tx.flush()).await.expect("flush");

    let m = expect_mismatch(guard("recv", b_rx.recv()).await);
    assert_eq!(id(&m.local_sends), id_of::<Cherry>());
    assert_eq!(id(&m.local_expects), id_of::<Durian>());
    assert_eq!(id(&m.peer_sends), id_of::<Apple>());
    assert_eq!(id(&m.peer_expects), id_of::<Banana>());
    let text = Error::ProtocolMismatch(Box::new(m)).to_string();
    for name in ["`Apple`", "`Banana`", "`Cherry`", "`Durian`"] {
        assert!(text.contains(name), "{name} missing from: {text}");
    }

    let m = expect_mismatch(guard("recv", a_rx.recv()).await);
    assert_eq!(id(&m.local_sends), id_of::<Apple>());
    assert_eq!(id(&m.local_expects), id_of::<Banana>());
    assert_eq!(id(&m.peer_sends), id_of::<Cherry>());
    assert_eq!(id(&m.peer_expects), id_of::<Durian>());

    // The stream is over: nothing after the hello is delivered.
    drop((a_tx, a_rx));
    assert!(
        guard("recv after the error", b_rx.recv())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        guard("recv after the error", b_rx.recv())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_name_different_shape_is_a_mismatch() {
    assert_eq!(v1::Job::NAME, v2::Job::NAME);
    assert_ne!(
        v1::Job::FINGERPRINT,
        v2::Job::FINGERPRINT,
        "the fingerprint must see the field type"
    );
    let (a, b) = aiosock::pair::<v1::Job, v1::Job>().expect("socketpair");
    let b: Endpoint<v2::Job, v2::Job> = Endpoint::from_fd(b.into_fd());
    let (a_tx, _a_rx) = a.into_split();
    let (_b_tx, mut b_rx) = b.into_split();
    guard("send", a_tx.send(v1::Job::Run(7)))
        .await
        .expect("send");

    let result = guard("recv", b_rx.recv()).await;
    let text = match &result {
        Err(e @ Error::ProtocolMismatch(_)) => e.to_string(),
        other => panic!("expected ProtocolMismatch, got {other:?}"),
    };
    let m = expect_mismatch(result);
    assert_eq!(m.peer_sends.name(), "Job");
    assert_eq!(m.local_expects.name(), "Job");
    assert_eq!(m.peer_sends.fingerprint(), v1::Job::FINGERPRINT);
    assert_eq!(m.local_expects.fingerprint(), v2::Job::FINGERPRINT);
    for fp in [v1::Job::FINGERPRINT, v2::Job::FINGERPRINT] {
        let hex = format!("{fp:#018x}");
        assert!(
            text.contains(&hex),
            "fingerprint {hex} missing from: {text}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// A raw peer

#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq)]
enum Raw {
    /// Variant 0: payload `[0, varint len, bytes…]`.
    Blob(Vec<u8>),
    /// Variant 1.
    Num(u64),
    /// Variant 2: payload `[2, varint len, varints…]`.
    Numbers(Vec<u64>),
}

/// An aiosock receiver (with `config`) whose peer is a plain blocking socket.
fn raw_pair(config: Config) -> (Sender<Raw>, Receiver<Raw>, UnixStream) {
    let (a, b) = aiosock::pair::<Raw, Raw>().expect("socketpair");
    let (tx, rx) = a.with_config(config).into_split();
    (tx, rx, raw_peer(b))
}

/// A valid hello for the `Raw` protocol followed by `rest`.
fn after_hello(rest: &[u8]) -> Vec<u8> {
    let mut bytes = hello::<Raw, Raw>();
    bytes.extend_from_slice(rest);
    bytes
}

/// A whole frame: header and payload.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = frame_header(u32::try_from(payload.len()).unwrap(), 0, 0);
    out.extend_from_slice(payload);
    out
}

/// The peer's bytes are over; `recv` must return `Ok(None)`, and again.
async fn expect_none_from_now_on(rx: &mut Receiver<Raw>) {
    for _ in 0..2 {
        match guard("recv after the end", rx.recv()).await {
            Ok(None) => {}
            other => panic!("expected Ok(None), got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_peer_speaking_the_documented_wire_format_is_understood() {
    let (tx, mut rx, mut peer) = raw_pair(Config::new());
    let mut bytes = after_hello(&frame(&[1, 42]));
    bytes.extend(frame(&[0, 3, 7, 8, 9]));
    bytes.extend(frame(&[2, 2, 251, 0x2c, 0x01, 5]));
    write_raw(&mut peer, &bytes);
    assert_eq!(guard("recv", rx.recv()).await.unwrap(), Some(Raw::Num(42)));
    assert_eq!(
        guard("recv", rx.recv()).await.unwrap(),
        Some(Raw::Blob(vec![7, 8, 9]))
    );
    assert_eq!(
        guard("recv", rx.recv()).await.unwrap(),
        Some(Raw::Numbers(vec![300, 5]))
    );
    peer.shutdown(Shutdown::Write).unwrap();
    expect_none_from_now_on(&mut rx).await;
    // And the other way: aiosock's hello and frames, as documented.
    drop(rx);
    guard("send", tx.send(Raw::Num(300))).await.expect("send");
    drop(tx);
    let read = tokio::task::spawn_blocking(move || {
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut peer, &mut got).expect("read from aiosock");
        got
    });
    let got = guard("read to the end", read).await.expect("reader");
    assert_eq!(got, after_hello(&frame(&[1, 251, 0x2c, 0x01])));
}

#[test]
fn a_frame_announcing_u32_max_is_refused_from_its_header() {
    let rt = aiosock_tests::local_runtime();
    let (_tx, mut rx, mut peer) = rt.block_on(async { raw_pair(Config::new()) });
    let mut bytes = after_hello(&frame_header(u32::MAX, 0, 0));
    bytes.extend([0xab; 4096]);
    write_raw(&mut peer, &bytes);
    // The peer stays connected and sends no more: the header alone must decide.
    let (result, peak) = peak_of(|| rt.block_on(guard("recv", rx.recv())));
    match result {
        Err(Error::FrameTooLarge { len, max }) => {
            assert_eq!(len, u32::MAX as usize);
            assert_eq!(max, Config::DEFAULT_MAX_FRAME_LEN);
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    // One read buffer (64 KiB) and the error, not the 4 GiB announced.
    assert!(peak < 256 * 1024, "receiving allocated {peak} bytes");
    drop(peer);
    rt.block_on(expect_none_from_now_on(&mut rx));
}

#[test]
fn an_allowed_huge_frame_is_not_allocated_before_its_bytes_arrive() {
    // The maximum allows 4 GiB frames: only the bytes that arrive may cost memory.
    let mut config = Config::new();
    config.set_max_frame_len(usize::MAX);
    assert_eq!(config.max_frame_len(), u32::MAX as usize);
    let rt = aiosock_tests::local_runtime();
    let (_tx, mut rx, mut peer) = rt.block_on(async { raw_pair(config) });
    let mut bytes = after_hello(&frame_header(u32::MAX, 0, 0));
    bytes.extend(vec![0u8; 1024 * 1024]);
    // More than the socket buffers hold: write from another thread while receiving.
    let writer = std::thread::spawn(move || {
        write_raw(&mut peer, &bytes);
        peer.shutdown(Shutdown::Write).unwrap();
        peer
    });
    let (result, peak) = peak_of(|| rt.block_on(guard("recv", rx.recv())));
    let _peer = writer.join().expect("writer thread");
    match result {
        Err(Error::Truncated { what }) => assert_eq!(what, Part::Frame),
        other => panic!("expected Truncated, got {other:?}"),
    }
    // The buffer grew with the 1 MiB that arrived (doubling), not to the 4 GiB announced.
    assert!(peak < 4 * 1024 * 1024, "receiving allocated {peak} bytes");
    rt.block_on(expect_none_from_now_on(&mut rx));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_of_max_len_passes_and_max_plus_one_is_refused() {
    let mut config = Config::new();
    config.set_max_frame_len(1024);
    let (_tx, mut rx, mut peer) = raw_pair(config);
    // Variant 0 (Blob), varint 1020 (0xfb marker + u16 LE), 1020 bytes: 1024 in all.
    let mut payload = vec![0, 0xfb, 0xfc, 0x03];
    payload.extend(vec![0x5a; 1020]);
    assert_eq!(payload.len(), 1024);
    let mut bytes = after_hello(&frame(&payload));
    bytes.extend(frame_header(1025, 0, 0));
    write_raw(&mut peer, &bytes);
    assert_eq!(
        guard("recv", rx.recv()).await.unwrap(),
        Some(Raw::Blob(vec![0x5a; 1020]))
    );
    match guard("recv", rx.recv()).await {
        Err(Error::FrameTooLarge { len, max }) => assert_eq!((len, max), (1025, 1024)),
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    drop(peer);
    expect_none_from_now_on(&mut rx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receivers_max_applies_to_an_aiosock_sender() {
    let (a, b) = aiosock::pair::<Raw, Raw>().expect("socketpair");
    let mut small = Config::new();
    small.set_max_frame_len(100);
    let (tx, _a_rx) = a.into_split();
    let (_b_tx, mut rx) = b.with_config(small).into_split();
    // Variant, length, 98 bytes: exactly 100.
    guard("send", tx.send(Raw::Blob(vec![7; 98])))
        .await
        .expect("send");
    guard("send", tx.send(Raw::Blob(vec![7; 99])))
        .await
        .expect("send");
    assert_eq!(
        guard("recv", rx.recv()).await.unwrap(),
        Some(Raw::Blob(vec![7; 98]))
    );
    match guard("recv", rx.recv()).await {
        Err(Error::FrameTooLarge { len, max }) => assert_eq!((len, max), (101, 100)),
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    drop(tx);
    expect_none_from_now_on(&mut rx).await;
}

/// What a raw peer sends (after which it closes), and the error it must cause.
struct BadInput {
    name: &'static str,
    bytes: Vec<u8>,
    /// Messages that decode before the error.
    before: Vec<Raw>,
    is_expected: fn(&Error) -> bool,
}

fn bad_inputs() -> Vec<BadInput> {
    let full_hello = hello::<Raw, Raw>();
    let mut long_name = full_hello.clone();
    long_name[6..8].copy_from_slice(&300u16.to_le_bytes());
    let mut version_3 = full_hello.clone();
    version_3[4..6].copy_from_slice(&3u16.to_le_bytes());
    let mut huge_inner_len = vec![2, 0xfd];
    huge_inner_len.extend((1u64 << 60).to_le_bytes());
    vec![
        BadInput {
            name: "bad magic",
            bytes: b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
            before: vec![],
            is_expected: |e| matches!(e, Error::BadMagic { found } if found == b"HTTP"),
        },
        BadInput {
            name: "bad magic, short",
            bytes: b"AI".to_vec(),
            before: vec![],
            is_expected: |e| matches!(e, Error::Truncated { what: Part::Hello }),
        },
        BadInput {
            name: "EOF in the hello",
            bytes: full_hello[..full_hello.len() - 1].to_vec(),
            before: vec![],
            is_expected: |e| matches!(e, Error::Truncated { what: Part::Hello }),
        },
        BadInput {
            name: "unsupported version",
            bytes: version_3,
            before: vec![],
            is_expected: |e| matches!(e, Error::UnsupportedVersion { version: 3 }),
        },
        BadInput {
            name: "a peer of aiosock 0.1 (wire version 1)",
            bytes: [hello_v1::<Raw, Raw>(), frame(&[1, 5])].concat(),
            before: vec![],
            is_expected: |e| {
                matches!(e, Error::UnsupportedVersion { version: 1 })
                    && e.to_string() == "the peer speaks wire version 1, this end speaks version 2"
            },
        },
        BadInput {
            name: "conflicting flags (a call that is a reply)",
            bytes: after_hello(&[call_header(2, 0x0003, 1), vec![1, 5]].concat()),
            before: vec![],
            is_expected: |e| matches!(e, Error::BadFlags { flags: 3 }),
        },
        BadInput {
            name: "a failure flag without a reply",
            bytes: after_hello(&[call_header(2, 0x0004, 1), vec![1, 5]].concat()),
            before: vec![],
            is_expected: |e| matches!(e, Error::BadFlags { flags: 4 }),
        },
        BadInput {
            name: "EOF in a call id",
            bytes: after_hello(
                &[frame(&[1, 5]), call_header(2, 0x0001, 9)[..12].to_vec()].concat(),
            ),
            before: vec![Raw::Num(5)],
            is_expected: |e| matches!(e, Error::Truncated { what: Part::Frame }),
        },
        BadInput {
            name: "a reply to a call never made",
            bytes: after_hello(&[frame(&[1, 5]), call_header(1, 0x0002, 77), vec![3]].concat()),
            before: vec![Raw::Num(5)],
            is_expected: |e| matches!(e, Error::UnexpectedReply { id: 77 }),
        },
        BadInput {
            name: "a failure report for a call never made",
            bytes: after_hello(&[call_header(1, 0x0006, 0), vec![1]].concat()),
            before: vec![],
            is_expected: |e| matches!(e, Error::UnexpectedReply { id: 0 }),
        },
        BadInput {
            name: "a panic notice",
            bytes: after_hello(
                &[
                    frame(&[1, 5]),
                    frame_header(3, 0, 0x0008),
                    vec![2, b'o', b'h'],
                ]
                .concat(),
            ),
            before: vec![Raw::Num(5)],
            is_expected: |e| matches!(e, Error::PeerPanicked { message } if message == "oh"),
        },
        BadInput {
            name: "a panic notice whose message is not a string",
            bytes: after_hello(&[frame_header(2, 0, 0x0008), vec![5, b'o']].concat()),
            before: vec![],
            is_expected: |e| matches!(e, Error::Decode(_)),
        },
        BadInput {
            name: "name too long",
            bytes: long_name,
            before: vec![],
            is_expected: |e| matches!(e, Error::BadHello { .. }),
        },
        BadInput {
            name: "EOF in a frame header",
            bytes: after_hello(&[1, 0, 0]),
            before: vec![],
            is_expected: |e| matches!(e, Error::Truncated { what: Part::Frame }),
        },
        BadInput {
            name: "EOF in a payload",
            bytes: after_hello(&[frame(&[1, 5]), frame_header(100, 0, 0), vec![0; 10]].concat()),
            before: vec![Raw::Num(5)],
            is_expected: |e| matches!(e, Error::Truncated { what: Part::Frame }),
        },
        BadInput {
            name: "fds announced, none sent",
            bytes: after_hello(&[frame_header(2, 1, 0), vec![1, 5]].concat()),
            before: vec![],
            is_expected: |e| {
                matches!(
                    e,
                    Error::Fds(aiosock::FdError::Mismatch {
                        announced: 1,
                        arrived: 0
                    })
                )
            },
        },
        BadInput {
            name: "unknown flags",
            bytes: after_hello(&[frame_header(2, 0, 0x8000), vec![1, 5]].concat()),
            before: vec![],
            is_expected: |e| matches!(e, Error::UnknownFlags { flags: 0x8000 }),
        },
        BadInput {
            name: "unknown variant",
            bytes: after_hello(&frame(&[9])),
            before: vec![],
            is_expected: |e| matches!(e, Error::Decode(_)),
        },
        BadInput {
            name: "trailing bytes",
            bytes: after_hello(&frame(&[1, 5, 0])),
            before: vec![],
            is_expected: |e| matches!(e, Error::TrailingBytes { len: 3, used: 2 }),
        },
        BadInput {
            name: "a sequence claiming 2^60 elements",
            bytes: after_hello(&frame(&huge_inner_len)),
            before: vec![],
            is_expected: |e| matches!(e, Error::Decode(_)),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bytes_from_the_peer_give_the_right_error_then_none() {
    for case in bad_inputs() {
        let (_tx, mut rx, mut peer) = raw_pair(Config::new());
        write_raw(&mut peer, &case.bytes);
        peer.shutdown(Shutdown::Write).unwrap();
        for msg in &case.before {
            let got = guard("recv", rx.recv()).await;
            assert_eq!(got.unwrap().as_ref(), Some(msg), "{}", case.name);
        }
        match guard("recv", rx.recv()).await {
            Err(e) => assert!(
                (case.is_expected)(&e),
                "{}: unexpected error {e:?}",
                case.name
            ),
            Ok(other) => panic!("{}: expected an error, got Ok({other:?})", case.name),
        }
        expect_none_from_now_on(&mut rx).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_close_between_frames_is_none() {
    for bytes in [after_hello(&[]), after_hello(&frame(&[1, 5]))] {
        let (_tx, mut rx, mut peer) = raw_pair(Config::new());
        let has_frame = bytes.len() > hello::<Raw, Raw>().len();
        write_raw(&mut peer, &bytes);
        drop(peer);
        if has_frame {
            assert_eq!(guard("recv", rx.recv()).await.unwrap(), Some(Raw::Num(5)));
        }
        expect_none_from_now_on(&mut rx).await;
    }
}

/// After an error the stream is over (the crate docs: "later calls return `Ok(None)`"),
/// even while the peer stays connected and keeps sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_error_recv_is_none_while_the_peer_stays_connected() {
    let (_tx, mut rx, mut peer) = raw_pair(Config::new());
    write_raw(&mut peer, b"HTTP/1.1 200 OK\r\n\r\n");
    let err = guard("recv", rx.recv()).await.unwrap_err();
    assert!(matches!(err, Error::BadMagic { .. }), "{err:?}");
    // The receiver stopped receiving for good: the peer's further writes fail, and it
    // stays connected (it does not close).
    let more = std::io::Write::write_all(&mut peer, b"Content-Length: 12\r\n\r\nhello world!");
    assert_eq!(
        more.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::BrokenPipe),
        "writes after the receiver's error must fail"
    );
    match rx.try_recv() {
        Err(TryRecvError::Disconnected) => {}
        other => panic!("try_recv after an error: expected Disconnected, got {other:?}"),
    }
    match guard("recv after an error", rx.recv()).await {
        Ok(None) => {}
        other => panic!("recv after an error: expected Ok(None), got {other:?}"),
    }
    drop(peer);
}

/// After an error, what the peer sends is neither buffered nor reported as a second error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_error_further_bytes_are_not_buffered_or_reported() {
    let (_tx, mut rx, mut peer) = raw_pair(Config::new());
    write_raw(&mut peer, &after_hello(&frame(&[9])));
    let err = guard("recv", rx.recv()).await.unwrap_err();
    assert!(matches!(err, Error::Decode(_)), "{err:?}");
    // 1 MiB of junk, then a close.
    let writer = tokio::task::spawn_blocking(move || {
        let junk = vec![0x42u8; 1024 * 1024];
        // Fails once the receiver shuts its side down, which is fine.
        let _ = std::io::Write::write_all(&mut peer, &junk);
    });
    let result = guard("recv after an error", rx.recv()).await;
    // Dropping the receiver makes the writer's next write fail, if it still writes.
    drop(rx);
    guard("writer", writer).await.expect("writer thread");
    assert!(
        matches!(result, Ok(None)),
        "recv after an error: expected Ok(None), got {result:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Whatever follows a valid hello, the receiver yields messages, then at most one
    /// error, then `Ok(None)`: no panic, no hang.
    #[test]
    fn random_bytes_after_a_hello_never_panic(junk in proptest::collection::vec(any::<u8>(), 0..512)) {
        let rt = aiosock_tests::local_runtime();
        rt.block_on(async {
            let (_tx, mut rx, mut peer) = raw_pair(Config::new());
            write_raw(&mut peer, &after_hello(&junk));
            drop(peer);
            let mut messages = 0;
            loop {
                match guard("recv", rx.recv()).await {
                    Ok(Some(_)) => messages += 1,
                    Ok(None) | Err(_) => break,
                }
                assert!(messages <= junk.len(), "more messages than bytes");
            }
            expect_none_from_now_on(&mut rx).await;
        });
    }
}

// ---------------------------------------------------------------------------------------
// Messages too large to send

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_senders_max_comes_back_and_the_channel_goes_on() {
    let (a, b) = aiosock::pair::<Raw, Raw>().expect("socketpair");
    let mut config = Config::new();
    config.set_max_frame_len(1024);
    let (tx, _a_rx) = a.with_config(config).into_split();
    let (_b_tx, mut rx) = b.into_split();

    let big = Raw::Blob(vec![1; 2000]);
    match guard("send", tx.send(big.clone())).await {
        // Variant (1) + varint 2000 (3) + 2000 bytes.
        Err(SendError::Invalid(back, InvalidMessage::TooLarge { len, max })) => {
            assert_eq!(back, big, "the message comes back");
            assert_eq!((len, max), (2004, 1024));
        }
        other => panic!("expected SendError::Invalid(TooLarge), got {other:?}"),
    }
    match tx.try_send(big.clone()) {
        Err(TrySendError::Invalid(
            back,
            InvalidMessage::TooLarge {
                len: 2004,
                max: 1024,
            },
        )) => {
            assert_eq!(back, big);
        }
        other => panic!("expected TrySendError::Invalid(TooLarge), got {other:?}"),
    }
    assert!(!tx.is_closed());
    // Exactly the maximum still goes, and nothing of the refused ones was sent.
    let fits = Raw::Blob(vec![2; 1020]);
    guard("send", tx.send(fits.clone()))
        .await
        .expect("send at the maximum");
    guard("send", tx.send(Raw::Num(1))).await.expect("send");
    drop(tx);
    assert_eq!(guard("recv", rx.recv()).await.unwrap(), Some(fits));
    assert_eq!(guard("recv", rx.recv()).await.unwrap(), Some(Raw::Num(1)));
    assert_eq!(guard("recv", rx.recv()).await.unwrap(), None);
}

// ---------------------------------------------------------------------------------------
// Round trips of any message sequence

#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq)]
enum Any {
    Unit,
    Tuple(u8, i64, bool),
    Struct {
        id: u32,
        name: String,
        flag: Option<bool>,
    },
    Text(String),
    Bytes(Vec<u8>),
    Nested(Option<Option<Vec<u64>>>),
    Numbers(Vec<u64>),
    Pair((char, i128), Vec<String>),
}

fn any_message() -> impl Strategy<Value = Any> {
    prop_oneof![
        Just(Any::Unit),
        (any::<u8>(), any::<i64>(), any::<bool>()).prop_map(|(a, b, c)| Any::Tuple(a, b, c)),
        (any::<u32>(), ".{0,20}", any::<Option<bool>>()).prop_map(|(id, name, flag)| Any::Struct {
            id,
            name,
            flag
        }),
        any::<String>().prop_map(Any::Text),
        proptest::collection::vec(any::<u8>(), 0..3000).prop_map(Any::Bytes),
        any::<Option<Option<Vec<u64>>>>().prop_map(Any::Nested),
        proptest::collection::vec(any::<u64>(), 0..50).prop_map(Any::Numbers),
        (
            any::<(char, i128)>(),
            proptest::collection::vec(".{0,8}", 0..4)
        )
            .prop_map(|(p, v)| Any::Pair(p, v)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn any_message_sequence_round_trips_in_order(
        msgs in proptest::collection::vec(any_message(), 0..64),
    ) {
        let rt = aiosock_tests::local_runtime();
        let got = rt.block_on(async {
            let (a, b) = aiosock::pair::<Any, Any>().expect("socketpair");
            let (tx, _a_rx) = a.into_split();
            let (_b_tx, mut rx) = b.into_split();
            let sent = msgs.clone();
            let send = async move {
                for msg in sent {
                    tx.send(msg).await.expect("send");
                }
            };
            let recv = async {
                let mut got = Vec::new();
                while let Some(msg) = rx.recv().await.expect("recv") {
                    got.push(msg);
                }
                got
            };
            guard("send and recv", async { tokio::join!(send, recv).1 }).await
        });
        prop_assert_eq!(got, msgs);
    }
}
