//! Fields of type `Vec<u8>` or `Bytes` of 32 KiB or more are sent from the message's own buffer: the
//! outgoing queue keeps the message until those bytes are in the kernel, instead of a copy
//! of them (counted by a counting allocator), and frees it then. The peer gets the same
//! messages as by copy, in order, whatever the sizes, the descriptors, the waits for room
//! and the partial writes (a property test over a real socket pair).

use std::io::{Read, Seek, Write};

use aiosock::__private::{CountingAlloc, peak_of, retained_by};
use aiosock::{Config, Fd};
use aiosock_tests::{guard, local_runtime};
use proptest::prelude::*;

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

#[aiosock::protocol]
#[derive(Debug)]
enum Load {
    Small(u64),
    Parts {
        head: Vec<u8>,
        n: u64,
        tail: Vec<u8>,
    },
    /// Inside an `Option`: always copied.
    Nested(u64, Option<Vec<u8>>),
    Wrapped(u64, aiosock::Bytes),
    WithFd {
        /// The seed, so that the receiver tells two such messages apart by more than the
        /// descriptor (an empty `data` is the same for every seed).
        n: u64,
        data: Vec<u8>,
        fd: Fd,
    },
}

/// `len` bytes that differ with `seed` and position.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2_654_435_761).wrapping_add(seed) as u8)
        .collect()
}

/// A memfd holding `seed`'s 8 bytes.
fn file_with(seed: u64) -> Fd {
    let name = std::ffi::CString::new("aiosock-zero-copy").expect("name");
    let memfd =
        nix::sys::memfd::memfd_create(name.as_c_str(), nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .expect("memfd");
    let mut file = std::fs::File::from(memfd);
    file.write_all(&seed.to_le_bytes()).expect("write");
    Fd::from(file)
}

fn seed_in(fd: Fd) -> u64 {
    let mut file = std::fs::File::from(std::os::fd::OwnedFd::from(fd));
    file.rewind().expect("rewind");
    let mut seed = [0; 8];
    file.read_exact(&mut seed).expect("read");
    u64::from_le_bytes(seed)
}

/// The halves of a [`one_way`] pair that are not used, kept alive by the caller.
type Unused = (aiosock::Receiver<Load>, aiosock::Sender<Load>);

/// A pair used one way: the sender of one end, with an outgoing buffer of `capacity`
/// bytes, and the receiver of the other; then the two halves not used.
fn one_way(capacity: usize) -> (aiosock::Sender<Load>, aiosock::Receiver<Load>, Unused) {
    let (a, b) = aiosock::pair::<Load, Load>().expect("pair");
    let mut config = Config::new();
    config.set_capacity(capacity);
    let (tx, a_rx) = a.with_config(config).into_split();
    let (b_tx, rx) = b.into_split();
    (tx, rx, (a_rx, b_tx))
}

/// A multi-thread runtime with two workers, so that senders, the writer and the receiver
/// run at once.
fn two_threads() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn a_large_byte_field_is_queued_without_a_copy_and_freed_once_written() {
    // On a thread of its own, whose encoding buffer starts empty: a copy of the bytes
    // would have to allocate room for them.
    std::thread::spawn(|| {
        const LEN: usize = 1 << 20;
        let (tx, mut rx, _unused) = one_way(5 * LEN);
        let held = Load::Parts {
            head: bytes(1, LEN),
            n: 1,
            tail: bytes(2, 100),
        };
        // No runtime yet: the frame stays queued.
        let (sent, peak) = peak_of(|| tx.try_send(held));
        sent.expect("queued");
        assert!(
            peak < 64 * 1024,
            "{peak} bytes allocated to queue a message with a 1 MiB field"
        );
        // So is a `Bytes` field.
        let wrapped = Load::Wrapped(5, aiosock::Bytes::new(bytes(5, LEN)));
        let (sent, peak) = peak_of(|| tx.try_send(wrapped));
        sent.expect("queued");
        assert!(
            peak < 64 * 1024,
            "{peak} bytes allocated to queue a message with a 1 MiB Bytes field"
        );
        // The same bytes inside an `Option` are copied: the count sees it.
        let copied = Load::Nested(3, Some(bytes(3, LEN)));
        let (sent, peak) = peak_of(|| tx.try_send(copied));
        sent.expect("queued");
        assert!(
            peak >= LEN,
            "only {peak} bytes allocated: the copy was not counted"
        );
        let rt = local_runtime();
        let _rx = rt.block_on(async {
            let reading = tokio::spawn(async move {
                let first = guard("recv", rx.recv()).await.expect("recv");
                let wrapped = guard("recv", rx.recv()).await.expect("recv");
                assert!(
                    matches!(wrapped, Some(Load::Wrapped(5, v)) if *v == bytes(5, LEN)),
                    "the Bytes field changed"
                );
                let second = guard("recv", rx.recv()).await.expect("recv");
                (first, second, rx)
            });
            guard("flush", tx.flush()).await.expect("flush");
            let (first, second, rx) = reading.await.expect("reader");
            match first {
                Some(Load::Parts { head, n: 1, tail }) => {
                    assert!(
                        head == bytes(1, LEN) && tail == bytes(2, 100),
                        "bytes changed"
                    );
                }
                other => panic!("{other:?}"),
            }
            assert!(matches!(second, Some(Load::Nested(3, Some(v))) if v == bytes(3, LEN)));
            rx
        });
        // Once its bytes are in the kernel, the queue lets go of the message: made, sent
        // and written while the count runs, it is not kept. 150 KiB fit in the socket's
        // buffer, so the flush needs no reader.
        let ((), kept) = retained_by(|| {
            rt.block_on(async {
                let msg = Load::Parts {
                    head: bytes(4, 150 * 1024),
                    n: 2,
                    tail: Vec::new(),
                };
                guard("send", tx.send(msg)).await.expect("send");
                guard("flush", tx.flush()).await.expect("flush");
            })
        });
        assert!(
            kept < 32 * 1024,
            "{kept} bytes kept after the message was written"
        );
    })
    .join()
    .expect("the test thread");
}

#[derive(Debug, Clone)]
enum Shape {
    Small,
    Parts(usize, usize),
    Nested(usize),
    Wrapped(usize),
    WithFd(usize),
}

fn shape() -> impl Strategy<Value = Shape> {
    let len = prop_oneof![
        Just(0usize),
        1usize..100,
        Just(32 * 1024 - 1),
        Just(32 * 1024),
        40_000usize..300_000,
        Just(1 << 20),
    ];
    prop_oneof![
        Just(Shape::Small),
        (len.clone(), len.clone()).prop_map(|(a, b)| Shape::Parts(a, b)),
        len.clone().prop_map(Shape::Nested),
        len.clone().prop_map(Shape::Wrapped),
        len.prop_map(Shape::WithFd),
    ]
}

fn make(seed: u64, shape: &Shape) -> Load {
    match *shape {
        Shape::Small => Load::Small(seed),
        Shape::Parts(a, b) => Load::Parts {
            head: bytes(seed, a),
            n: seed,
            tail: bytes(seed + 1, b),
        },
        Shape::Nested(a) => Load::Nested(seed, Some(bytes(seed, a))),
        Shape::Wrapped(a) => Load::Wrapped(seed, aiosock::Bytes::new(bytes(seed, a))),
        Shape::WithFd(a) => Load::WithFd {
            n: seed,
            data: bytes(seed, a),
            fd: file_with(seed),
        },
    }
}

/// Whether `got` is what `make(seed, shape)` made.
fn check(seed: u64, shape: &Shape, got: Load) -> bool {
    match (shape, got) {
        (Shape::Small, Load::Small(n)) => n == seed,
        (&Shape::Parts(a, b), Load::Parts { head, n, tail }) => {
            n == seed && head == bytes(seed, a) && tail == bytes(seed + 1, b)
        }
        (&Shape::Nested(a), Load::Nested(n, Some(v))) => n == seed && v == bytes(seed, a),
        (&Shape::Wrapped(a), Load::Wrapped(n, v)) => n == seed && v.into_vec() == bytes(seed, a),
        (&Shape::WithFd(a), Load::WithFd { n, data, fd }) => {
            n == seed && data == bytes(seed, a) && seed_in(fd) == seed
        }
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any mix of messages with byte fields over and under the size, copied fields and
    /// descriptors, from two senders at once into a small outgoing buffer (so that sends
    /// wait for room and large frames go out in many partial writes), arrives whole and in
    /// each sender's order.
    #[test]
    fn mixed_messages_arrive_intact_and_in_order(
        shapes in proptest::collection::vec(shape(), 1..24),
        capacity in prop_oneof![Just(1usize), Just(64 * 1024), Just(1 << 20)],
    ) {
        let rt = two_threads();
        let result = rt.block_on(async move {
            let (tx, mut rx, _unused) = one_way(capacity);
            let shapes = std::sync::Arc::new(shapes);
            // Sender k sends the shapes at even (k = 0) or odd (k = 1) places, seeded by
            // place, so that the receiver knows what each message must be.
            let senders: Vec<_> = (0..2u64)
                .map(|k| {
                    let (tx, shapes) = (tx.clone(), shapes.clone());
                    tokio::spawn(async move {
                        for (i, shape) in shapes.iter().enumerate().skip(k as usize).step_by(2) {
                            tx.send(make(i as u64 * 16, shape)).await.expect("send");
                        }
                    })
                })
                .collect();
            drop(tx);
            let mut next = [0usize, 1];
            let mut got = 0;
            while let Some(msg) = guard("recv", rx.recv())
                .await
                .map_err(|e| format!("recv after {got} messages (next places {next:?}): {e}"))?
            {
                // Which sender: the one whose next place makes exactly this message.
                let k = (0..2)
                    .find(|&k| next[k] < shapes.len() && check_place(&shapes, next[k], &msg))
                    .ok_or_else(|| format!("message {got} is neither sender's next (next places {next:?})"))?;
                let place = next[k];
                if !check(place as u64 * 16, &shapes[place], msg) {
                    return Err(format!("message {got} (place {place}) is not what was sent"));
                }
                next[k] += 2;
                got += 1;
            }
            for sender in senders {
                sender.await.expect("sender");
            }
            if got != shapes.len() {
                return Err(format!("{got} of {} messages arrived", shapes.len()));
            }
            Ok(())
        });
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }
}

/// Whether `msg` has the variant and lengths of the message made for `place` (which
/// sender it came from is decided by this; its bytes are checked after).
fn check_place(shapes: &[Shape], place: usize, msg: &Load) -> bool {
    let seed = place as u64 * 16;
    match (&shapes[place], msg) {
        (Shape::Small, Load::Small(n)) => *n == seed,
        (Shape::Parts(..), Load::Parts { n, .. }) => *n == seed,
        (&Shape::Nested(a), Load::Nested(n, Some(v))) => {
            *n == seed && v.len() == a && *v == bytes(seed, a)
        }
        (&Shape::Wrapped(a), Load::Wrapped(n, v)) => {
            *n == seed && v.len() == a && **v == bytes(seed, a)
        }
        (&Shape::WithFd(a), Load::WithFd { n, data, .. }) => {
            *n == seed && data.len() == a && *data == bytes(seed, a)
        }
        _ => false,
    }
}

#[tokio::test]
async fn a_held_message_that_is_refused_comes_back_whole() {
    const LEN: usize = 300 * 1024;
    let (a, b) = aiosock::pair::<Load, Load>().expect("pair");
    let mut config = Config::new();
    config.set_capacity(1);
    let (tx, _a_rx) = a.with_config(config).into_split();
    let parts = |seed: u64| Load::Parts {
        head: bytes(seed, LEN),
        n: seed,
        tail: bytes(seed + 1, 40_000),
    };
    let whole = |seed: u64, msg: Load| match msg {
        Load::Parts { head, n, tail } => {
            n == seed && head == bytes(seed, LEN) && tail == bytes(seed + 1, 40_000)
        }
        _ => false,
    };
    // Nobody reads: the socket and then the buffer fill (the writer runs between the
    // sends), and `try_send` hands the message back.
    let mut seed = 0;
    loop {
        match tx.try_send(parts(seed)) {
            Ok(()) => {
                seed += 1;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Err(aiosock::TrySendError::Full(back)) => {
                assert!(whole(seed, back), "Full handed back another message");
                break;
            }
            Err(e) => panic!("{e:?}"),
        }
        assert!(seed < 1000, "the buffer never filled");
    }
    // A send waits for room; the peer goes away meanwhile: the message comes back.
    let waiting = tx.send(parts(seed));
    let dropper = async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        drop(b);
    };
    let (sent, ()) = tokio::join!(guard("send", waiting), dropper);
    match sent {
        Err(aiosock::SendError::Closed(back)) => {
            assert!(whole(seed, back), "Closed handed back another message");
        }
        other => panic!("expected Closed, got {:?}", other.map(|_| ())),
    }
}

/// The last `Sender` dropped right after its large message was accepted writes what it can
/// itself, while the end's writer task may be looking for more: the writer must not end
/// the direction meanwhile (it did, cutting the frame off mid-write, within a few hundred
/// rounds of this: `the peer closed the connection in the middle of a frame`).
#[test]
fn the_last_sender_dropped_mid_write_loses_nothing() {
    for round in 0..500 {
        let rt = two_threads();
        let received = rt.block_on(async move {
            let (tx, mut rx, _unused) = one_way(1);
            let big = tx.clone();
            let first = tokio::spawn(async move {
                let msg = Load::Parts {
                    head: vec![7; 1 << 20],
                    n: 7,
                    tail: Vec::new(),
                };
                big.send(msg).await.expect("send");
            });
            let small = tx.clone();
            let second = tokio::spawn(async move {
                small.send(Load::Small(1)).await.expect("send");
                let msg = Load::WithFd {
                    n: 8,
                    data: Vec::new(),
                    fd: file_with(8),
                };
                small.send(msg).await.expect("send");
            });
            drop(tx);
            let mut got = Vec::new();
            while let Some(msg) = guard("recv", rx.recv())
                .await
                .unwrap_or_else(|e| panic!("round {round}, after {} messages: {e}", got.len()))
            {
                got.push(msg);
            }
            first.await.expect("first sender");
            second.await.expect("second sender");
            got
        });
        assert_eq!(received.len(), 3, "round {round}");
        assert!(
            received
                .iter()
                .any(|m| matches!(m, Load::Parts { head, n: 7, .. } if head.len() == 1 << 20 && head.iter().all(|&b| b == 7))),
            "round {round}: the large message is not intact"
        );
    }
}
