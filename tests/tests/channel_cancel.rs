//! Cancel safety of `recv` over a real `pair()`: `recv` futures dropped in `select!` or
//! after a single poll lose nothing and keep the order, including frames that arrive in
//! several reads.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use aiosock_tests::{Rng, Traffic, blob, guard, split_pair, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_in_select_with_a_losing_branch_loses_nothing() {
    const N: u64 = 100_000;
    let ((tx, _a_rx), (_b_tx, mut rx)) = split_pair::<Traffic>();
    let sender = tokio::spawn(async move {
        let mut rng = Rng::new(1);
        for seq in 0..N {
            tx.send(text(seq)).await.expect("send");
            // Pause now and then, so that the receiver catches up and its `recv` waits (and
            // loses to the other branches) rather than always finding a backlog.
            match rng.below(2_000) {
                0..=9 => tokio::time::sleep(Duration::from_millis(1)).await,
                10..=30 => tokio::task::yield_now().await,
                _ => {}
            }
        }
    });

    let mut next = 0u64;
    let mut cancelled = 0u64;
    let mut round = 0u64;
    loop {
        round += 1;
        let msg = tokio::select! {
            msg = rx.recv() => msg.expect("recv"),
            () = tokio::task::yield_now(), if round.is_multiple_of(2) => {
                cancelled += 1;
                continue;
            }
            () = tokio::time::sleep(Duration::from_millis(1)), if !round.is_multiple_of(2) => {
                cancelled += 1;
                continue;
            }
            () = tokio::time::sleep(Duration::from_secs(30)) => {
                panic!("hang guard: nothing received for 30 s after message {next}")
            }
        };
        match msg {
            Some(msg) => {
                assert_eq!(msg, text(next), "lost or reordered around a cancelled recv");
                next += 1;
            }
            None => break,
        }
    }
    assert_eq!(next, N, "messages received before Ok(None)");
    assert!(
        cancelled > 0,
        "no recv future was ever cancelled: the test tested nothing"
    );
    guard("sender task", sender).await.expect("sender task");
}

/// Polls `fut` once with the task's context: `Some(output)` if it completed.
async fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Option<F::Output> {
    let mut fut = fut;
    std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_dropped_recv_futures_loses_nothing() {
    const N: u64 = 4_000;
    const STORM: u64 = 1_000;
    let ((tx, _a_rx), (_b_tx, mut rx)) = split_pair::<Traffic>();
    // Mixed sizes: many frames span several reads (64 KiB each), so a recv dropped
    // mid-frame leaves a partial frame behind in the receiver.
    let size = |seq: u64| match seq % 10 {
        0 => 200 * 1024 + (seq as usize % 1000),
        1..=3 => 70 * 1024,
        _ => 8 + (seq as usize * 13 % 3000),
    };
    let sender = tokio::spawn(async move {
        let mut rng = Rng::new(2);
        for seq in 0..N {
            tx.send(blob(seq, size(seq))).await.expect("send");
            if rng.below(50) == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });

    let mut rng = Rng::new(3);
    let mut next = 0u64;
    let mut storm = 0u64;
    let mut dropped_pending = 0u64;
    let check = |msg: Option<Traffic>, next: &mut u64| match msg {
        Some(msg) => {
            assert_eq!(msg, blob(*next, size(*next)), "message {next}");
            *next += 1;
            true
        }
        None => false,
    };
    loop {
        if storm < STORM && rng.below(3) != 0 {
            // A recv future polled once or a few times, then dropped wherever it was.
            storm += 1;
            let polls = 1 + rng.below(3);
            let mut fut = pin!(rx.recv());
            let mut done = None;
            for _ in 0..polls {
                if let Some(out) = poll_once(fut.as_mut()).await {
                    done = Some(out.expect("recv"));
                    break;
                }
                if rng.below(2) == 0 {
                    tokio::task::yield_now().await;
                }
            }
            match done {
                Some(msg) => {
                    if !check(msg, &mut next) {
                        break;
                    }
                }
                None => dropped_pending += 1,
            }
        } else {
            let msg = guard("recv", rx.recv()).await.expect("recv");
            if !check(msg, &mut next) {
                break;
            }
        }
    }
    assert_eq!(next, N, "messages received before Ok(None)");
    assert_eq!(storm, STORM, "the storm ended early");
    assert!(
        dropped_pending > 0,
        "no recv future was dropped while pending"
    );
    guard("sender task", sender).await.expect("sender task");
}

#[tokio::test(flavor = "current_thread")]
async fn recv_dropped_mid_frame_resumes_the_frame() {
    // A frame larger than any single read, written while the receiver keeps giving up.
    let ((tx, _a_rx), (_b_tx, mut rx)) = split_pair::<Traffic>();
    let big = blob(7, 3 * 1024 * 1024);
    let send = {
        let big = big.clone();
        async move {
            tx.send(big).await.expect("send");
            tx.send(Traffic::End).await.expect("send");
        }
    };
    let recv = async {
        let mut giving_up = 0u64;
        let first = loop {
            tokio::select! {
                biased;
                msg = rx.recv() => break msg.expect("recv"),
                () = tokio::task::yield_now() => giving_up += 1,
            }
        };
        let second = rx.recv().await.expect("recv");
        (first, second, giving_up)
    };
    let ((), (first, second, giving_up)) =
        guard("send and recv", async { tokio::join!(send, recv) }).await;
    assert_eq!(first, Some(big));
    assert_eq!(second, Some(Traffic::End));
    assert!(
        giving_up > 0,
        "recv never gave up mid-frame: the test tested nothing"
    );
}
