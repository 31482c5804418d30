//! Order, no loss and close over a real `pair()`: per-sender FIFO, whole frames from
//! concurrent clones, `Ok(None)` only after every earlier message, and the `Stream` impl.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use aiosock::SendError;
use aiosock_tests::{Traffic, guard, num_text, split_pair, tagged, text};
use futures_core::Stream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_messages_arrive_in_order() {
    const N: u64 = 100_000;
    let ((tx, _a_rx), (_b_tx, mut rx)) = split_pair::<Traffic>();
    let sender = tokio::spawn(async move {
        for seq in 0..N {
            tx.send(text(seq)).await.expect("send");
        }
        // Dropping the last sender closes the direction after the last message.
    });
    for seq in 0..N {
        match guard("recv", rx.recv()).await {
            Ok(Some(Traffic::Text(got, s))) => {
                assert_eq!(got, seq, "message out of order");
                assert_eq!(s, num_text(seq), "content of message {seq}");
            }
            other => panic!("message {seq}: expected Text, got {other:?}"),
        }
    }
    guard("sender task", sender).await.expect("sender task");
    assert_eq!(guard("recv after the last", rx.recv()).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clones_keep_per_sender_order_and_whole_frames() {
    const SENDERS: u32 = 8;
    const PER_SENDER: u64 = 10_000;
    let ((tx, _a_rx), (_b_tx, mut rx)) = split_pair::<Traffic>();
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            for seq in 0..PER_SENDER {
                tx.send(tagged(sender, seq)).await.expect("send");
                if seq.is_multiple_of(64) {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    drop(tx);

    let mut next = vec![0u64; SENDERS as usize];
    let mut total = 0u64;
    while let Some(msg) = guard("recv", rx.recv()).await.expect("recv") {
        let Traffic::Tagged { sender, seq, .. } = &msg else {
            panic!("unexpected message {msg:?}");
        };
        let (sender, seq) = (*sender, *seq);
        assert!(sender < SENDERS, "unknown sender {sender}");
        assert_eq!(
            seq, next[sender as usize],
            "sender {sender}: message lost, duplicated or out of order"
        );
        // The whole message is what this (sender, seq) sent: no bytes of another frame.
        assert_eq!(msg, tagged(sender, seq), "corrupted message");
        next[sender as usize] += 1;
        total += 1;
    }
    for task in tasks {
        guard("sender task", task).await.expect("sender task");
    }
    assert_eq!(
        next,
        vec![PER_SENDER; SENDERS as usize],
        "per-sender counts"
    );
    assert_eq!(total, u64::from(SENDERS) * PER_SENDER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_gives_none_only_after_every_earlier_message() {
    let ((tx, _a_rx), (_b_tx, mut rx)) = split_pair::<Traffic>();
    let clones = [tx.clone(), tx.clone(), tx];
    let mut sent = 0u64;
    for round in 0..500u64 {
        for (i, tx) in clones.iter().enumerate() {
            let seq = round * 3 + i as u64;
            guard("send", tx.send(text(seq))).await.expect("send");
            sent += 1;
        }
    }
    // Drop the clones one by one: only the last drop ends the stream.
    let [c0, c1, c2] = clones;
    drop(c0);
    drop(c1);
    let mut received = 0u64;
    // While a clone lives, everything sent so far arrives, and then recv waits.
    for seq in 0..sent {
        let msg = guard("recv", rx.recv()).await.expect("recv");
        assert_eq!(msg, Some(text(seq)));
        received += 1;
    }
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(100), rx.recv())
            .await
            .is_err(),
        "recv returned while a sender clone was still alive"
    );
    guard("send", c2.send(Traffic::End)).await.expect("send");
    drop(c2);
    assert_eq!(guard("recv", rx.recv()).await.unwrap(), Some(Traffic::End));
    received += 1;
    assert_eq!(received, sent + 1);
    assert_eq!(guard("recv at the end", rx.recv()).await.unwrap(), None);
    assert_eq!(guard("recv after the end", rx.recv()).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_after_a_burst_delivers_everything_then_none() {
    const N: u64 = 20_000;
    let ((tx, _a_rx), (_b_tx, mut rx)) = split_pair::<Traffic>();
    let clones: Vec<_> = (0..4).map(|_| tx.clone()).collect();
    drop(tx);
    let senders: Vec<_> = clones
        .into_iter()
        .enumerate()
        .map(|(id, tx)| {
            tokio::spawn(async move {
                for seq in 0..N / 4 {
                    tx.send(tagged(id as u32, seq)).await.expect("send");
                }
            })
        })
        .collect();
    let mut received = 0u64;
    while let Some(msg) = guard("recv", rx.recv()).await.expect("recv") {
        assert!(matches!(msg, Traffic::Tagged { .. }), "{msg:?}");
        received += 1;
    }
    assert_eq!(received, N, "messages before Ok(None)");
    for task in senders {
        guard("sender task", task).await.expect("sender task");
    }
    assert_eq!(guard("recv after None", rx.recv()).await.unwrap(), None);
    assert_eq!(guard("recv after None", rx.recv()).await.unwrap(), None);
}

/// The next item of the `Stream` impl, through `poll_next` only.
async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_yields_every_message_then_none() {
    const N: u64 = 5_000;
    let ((tx, _a_rx), (_b_tx, mut rx)) = split_pair::<Traffic>();
    let sender = tokio::spawn(async move {
        for seq in 0..N {
            tx.send(Traffic::Num(seq)).await.expect("send");
        }
    });
    for seq in 0..N {
        match guard("poll_next", next(&mut rx)).await {
            Some(Ok(Traffic::Num(got))) => assert_eq!(got, seq),
            other => panic!("item {seq}: {other:?}"),
        }
    }
    assert!(guard("poll_next at the end", next(&mut rx)).await.is_none());
    assert!(
        guard("poll_next after the end", next(&mut rx))
            .await
            .is_none()
    );
    guard("sender task", sender).await.expect("sender task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observer_sees_each_received_message_once_in_order() {
    const N: u64 = 1_000;
    let ((tx, _a_rx), (_b_tx, mut rx)) = split_pair::<Traffic>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    rx.observe(move |msg: &Traffic| log.lock().unwrap().push(msg.clone()));
    let sender = tokio::spawn(async move {
        for seq in 0..N {
            tx.send(Traffic::Num(seq)).await.expect("send");
        }
    });
    let mut got = Vec::new();
    while let Some(msg) = guard("recv", rx.recv()).await.expect("recv") {
        // The observer ran for this message before recv returned it.
        assert_eq!(seen.lock().unwrap().last(), Some(&msg));
        got.push(msg);
    }
    guard("sender task", sender).await.expect("sender task");
    let expected: Vec<_> = (0..N).map(Traffic::Num).collect();
    assert_eq!(got, expected);
    assert_eq!(*seen.lock().unwrap(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_close_keeps_flushed_messages_and_fails_later_sends() {
    let ((tx, _a_rx), (_b_tx, mut rx)) = split_pair::<Traffic>();
    for seq in 0..100 {
        guard("send", tx.send(Traffic::Num(seq)))
            .await
            .expect("send");
    }
    guard("flush", tx.flush()).await.expect("flush");
    rx.close();
    for seq in 0..100 {
        let msg = guard("recv after close", rx.recv()).await.expect("recv");
        assert_eq!(msg, Some(Traffic::Num(seq)));
    }
    assert_eq!(guard("recv at the end", rx.recv()).await.unwrap(), None);
    // The sender learns it at its next write at the latest.
    let _ = guard("send after close", tx.send(Traffic::Num(100))).await;
    guard("closed", tx.closed()).await;
    assert!(tx.is_closed());
    match guard("send once closed", tx.send(Traffic::Num(101))).await {
        Err(SendError::Closed(msg)) => assert_eq!(msg, Traffic::Num(101)),
        other => panic!("expected Closed, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn order_holds_on_a_current_thread_runtime() {
    const N: u64 = 20_000;
    let ((tx, _a_rx), (_b_tx, mut rx)) = split_pair::<Traffic>();
    let send = async move {
        for seq in 0..N {
            tx.send(tagged(0, seq)).await.expect("send");
        }
    };
    let recv = async {
        let mut counts: HashMap<u32, u64> = HashMap::new();
        while let Some(msg) = rx.recv().await.expect("recv") {
            let Traffic::Tagged { sender, seq, .. } = msg else {
                panic!("unexpected {msg:?}");
            };
            let next = counts.entry(sender).or_default();
            assert_eq!(seq, *next);
            assert_eq!(msg, tagged(sender, seq));
            *next += 1;
        }
        counts
    };
    let ((), counts) = guard("send and recv", async { tokio::join!(send, recv) }).await;
    assert_eq!(counts.get(&0), Some(&N));
}

#[test]
fn the_peer_sees_the_close_at_once_when_nothing_is_left_to_write() {
    // On a current-thread runtime nothing else runs until this task yields: the writer
    // task has not run when the last sender is dropped. The drop writes what is queued and
    // ends the direction itself, so `try_recv` sees the message, then `Disconnected`, as
    // with tokio's mpsc and ipc-channel.
    let rt = aiosock_tests::local_runtime();
    rt.block_on(async {
        let ((tx, _rx), (_peer_tx, mut peer_rx)) = split_pair::<Traffic>();
        tx.send(Traffic::Num(1)).await.expect("send");
        drop(tx);
        assert_eq!(peer_rx.try_recv().expect("the message"), Traffic::Num(1));
        assert!(
            matches!(peer_rx.try_recv(), Err(aiosock::TryRecvError::Disconnected)),
            "the close is seen without waiting for a task"
        );
    });
}

/// `LazyFree` of `/proc/self/smaps_rollup` in KiB: memory this process told the kernel
/// it may take back (`MADV_FREE`).
fn lazy_free_kib() -> u64 {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").expect("smaps_rollup");
    rollup
        .lines()
        .find_map(|line| line.strip_prefix("LazyFree:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .expect("a LazyFree line")
}

#[tokio::test]
async fn an_idle_receiver_gives_a_large_buffer_back() {
    let ((tx, _rx), (_peer_tx, mut peer_rx)) = split_pair::<Traffic>();
    tx.send(Traffic::Blob(vec![7; 8 << 20]))
        .await
        .expect("send");
    let got = guard("recv", peer_rx.recv()).await.expect("recv");
    assert!(matches!(got, Some(Traffic::Blob(b)) if b.len() == 8 << 20));
    let before = lazy_free_kib();
    // Nothing more comes: the receiver waits, and gives its 8 MiB buffer's memory back.
    let idle = tokio::time::timeout(std::time::Duration::from_millis(50), peer_rx.recv()).await;
    assert!(idle.is_err(), "nothing more was sent");
    let given = lazy_free_kib().saturating_sub(before);
    assert!(given >= 6 * 1024, "only {given} KiB given back");
    // The next large frame reuses the allocation.
    tx.send(Traffic::Blob(vec![8; 8 << 20]))
        .await
        .expect("send");
    let got = guard("recv", peer_rx.recv()).await.expect("recv");
    assert!(matches!(got, Some(Traffic::Blob(b)) if b.len() == 8 << 20 && b[0] == 8));
}

/// The `buffer_capacity` a receiver's `Debug` shows.
fn buffer_capacity<T>(rx: &aiosock::Receiver<T>) -> usize {
    let debug = format!("{rx:?}");
    debug
        .split("buffer_capacity: ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no buffer_capacity in {debug}"))
}

#[tokio::test]
async fn the_read_buffer_holds_at_most_one_frame_and_one_read() {
    // Frames of alternating sizes: decoded bytes must be dropped before the buffer grows,
    // so it never holds more than the frame being read and one read's worth.
    const FRAME: usize = 2 << 20;
    let ((tx, _rx), (_peer_tx, mut peer_rx)) = split_pair::<Traffic>();
    let sender = tokio::spawn(async move {
        for i in 0..12usize {
            let len = if i % 2 == 0 {
                FRAME
            } else {
                FRAME / 2 + 4096 * i
            };
            tx.send(Traffic::Blob(vec![i as u8; len]))
                .await
                .expect("send");
        }
    });
    for i in 0..12usize {
        let got = guard("recv", peer_rx.recv()).await.expect("recv");
        assert!(matches!(got, Some(Traffic::Blob(b)) if b[0] == i as u8));
        let cap = buffer_capacity(&peer_rx);
        assert!(
            cap <= FRAME + 2 * 64 * 1024,
            "after frame {i} the read buffer holds {cap} bytes"
        );
    }
    guard("sender", sender).await.expect("sender");
}
