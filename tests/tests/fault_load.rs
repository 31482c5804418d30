//! Faults and load with real processes: a soak of random sizes both ways at once, a slow
//! receiver, `SIGSTOP`/`SIGCONT` and `kill -9` in the middle of large frames, a panicking
//! handler, and a storm of cancelled sends and receives.
//!
//! The soak has a short default for the normal suite; the full run is opt-in through the
//! environment: `AIOSOCK_SOAK_MESSAGES=10000000 cargo test --release -p aiosock-tests --test fault_load soak`.
//! (The slow receiver is in `slow_receiver.rs`, alone in its process for its memory check.)

use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use aiosock::{Config, Error, SendError};
use aiosock_tests::workers::{PARENT_SEED, Reply, Request, soak_data, start};
use aiosock_tests::{Rng, Traffic, guard};

const WORKER: &str = env!("CARGO_BIN_EXE_worker");
const WORKER_SEED: u64 = 0x5eed_0002;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).expect("signal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_random_sizes_both_ways_at_once_loses_nothing() {
    let n = env_or("AIOSOCK_SOAK_MESSAGES", 20_000);
    let hang = Duration::from_secs(60 + n / 1000);
    let (mut child, tx, mut rx) = start(WORKER, "serve");
    tx.send(Request::StartSoak {
        n,
        seed: WORKER_SEED,
    })
    .await
    .expect("start");
    let sender = tokio::spawn(async move {
        for seq in 0..n {
            let data = soak_data(PARENT_SEED, seq);
            tx.send(Request::Soak { seq, data }).await.expect("send");
        }
        // Dropping the sender ends the worker's serve: it then reports.
    });
    let receive = async {
        for seq in 0..n {
            match rx.recv().await.expect("recv") {
                Some(Reply::Soak { seq: got, data }) => {
                    assert_eq!(got, seq, "lost, duplicated or reordered");
                    assert!(
                        data == soak_data(WORKER_SEED, seq),
                        "message {seq} corrupted"
                    );
                }
                other => panic!("expected soak message {seq}, got {:?}", other.map(|_| "..")),
            }
        }
        rx.recv().await.expect("report")
    };
    let report = tokio::time::timeout(hang, receive)
        .await
        .expect("soak hang guard");
    tokio::time::timeout(hang, sender)
        .await
        .expect("sender hang guard")
        .expect("sender");
    match report {
        Some(Reply::SoakReport {
            received,
            problem,
            peak_rss_kib,
        }) => {
            assert_eq!(problem, None);
            assert_eq!(received, n);
            // Bounded by the buffers and one 1 MiB message, not by the traffic.
            assert!(
                peak_rss_kib < 128 * 1024,
                "worker peak RSS {peak_rss_kib} KiB"
            );
            println!("soak: {n} messages each way, worker peak RSS {peak_rss_kib} KiB");
        }
        other => panic!("expected the soak report, got {other:?}"),
    }
    assert_eq!(guard("close", rx.recv()).await.expect("recv"), None);
    let status = guard("exit", child.wait()).await.expect("wait");
    assert!(status.success(), "{status}");
}

async fn big_echoes_through(
    tx: &aiosock::Sender<Request>,
    rx: &mut aiosock::Receiver<Reply>,
    count: u64,
    mut between: impl FnMut(u64),
) {
    for id in 0..count {
        let data = vec![(id * 7) as u8; 4 << 20];
        tx.send(Request::Echo { id, data }).await.expect("send");
        between(id);
        match guard("echo", rx.recv()).await.expect("recv") {
            Some(Reply::Echo { id: got, data }) => {
                assert_eq!(got, id);
                assert!(data.len() == 4 << 20 && data.iter().all(|&b| b == (id * 7) as u8));
            }
            other => panic!("unexpected {:?}", other.map(|_| "..")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_and_sigcont_in_the_middle_of_large_frames_lose_nothing() {
    let (mut child, tx, mut rx) = start(WORKER, "serve");
    let pid = child.id();
    big_echoes_through(&tx, &mut rx, 6, |id| {
        if id % 2 == 0 {
            // Stop the worker while its 4 MiB frame is in flight, then let it go on.
            signal(pid, nix::sys::signal::Signal::SIGSTOP);
            std::thread::sleep(Duration::from_millis(50));
            signal(pid, nix::sys::signal::Signal::SIGCONT);
        }
    })
    .await;
    drop(tx);
    assert_eq!(guard("close", rx.recv()).await.expect("recv"), None);
    assert!(guard("exit", child.wait()).await.expect("wait").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_large_frames_is_seen_promptly() {
    let (mut child, tx, mut rx) = start(WORKER, "serve");
    big_echoes_through(&tx, &mut rx, 1, |_| {}).await;
    let pid = child.id();
    let sender = tokio::spawn(async move {
        for id in 0.. {
            let data = vec![1u8; 4 << 20];
            if let Err(e) = tx.send(Request::Echo { id, data }).await {
                return e;
            }
        }
        unreachable!()
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    signal(pid, nix::sys::signal::Signal::SIGKILL);
    let drain = async {
        loop {
            match rx.recv().await {
                Ok(Some(_)) => {}
                Ok(None) | Err(Error::Truncated { .. }) => return,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .expect("recv did not see the death within 5 s");
    let err = tokio::time::timeout(Duration::from_secs(5), sender)
        .await
        .expect("send did not fail within 5 s")
        .expect("sender task");
    assert!(
        matches!(err, SendError::Closed(Request::Echo { .. })),
        "{err:?}"
    );
    let status = guard("reap", child.wait()).await.expect("wait");
    assert!(!status.success());
}

/// A handler that panics on `Num(13)`.
#[derive(Debug)]
struct Superstitious;

impl aiosock_tests::TrafficHandler for Superstitious {
    async fn on_num(&mut self, n: u64) {
        assert!(n != 13, "unlucky number");
    }
    async fn on_text(&mut self, _seq: u64, _text: String) {}
    async fn on_tagged(&mut self, _sender: u32, _seq: u64, _text: String, _data: Vec<u8>) {}
    async fn on_blob(&mut self, _data: Vec<u8>) {}
    async fn on_end(&mut self) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_fails_its_task_and_other_channels_go_on() {
    let (a, b) = aiosock::pair::<Traffic, Traffic>().expect("pair");
    let (tx, _a_rx) = a.into_split();
    let (_b_tx, rx) = b.into_split();
    let (c, d) = aiosock::pair::<Traffic, Traffic>().expect("pair");
    let (other_tx, _c_rx) = c.into_split();
    let (_d_tx, mut other_rx) = d.into_split();

    let serving = tokio::spawn(rx.serve(Superstitious));
    for n in 10..20 {
        tx.send(Traffic::Num(n)).await.expect("send");
    }
    let joined = guard("serve", serving).await;
    let panic = joined.expect_err("the handler panicked");
    assert!(panic.is_panic(), "{panic:?}");

    // The panicking task's receiver is gone: its peer's sends now fail.
    let closed = async {
        loop {
            if let Err(SendError::Closed(_)) = tx.send(Traffic::Num(0)).await {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    guard("sends to the dead server fail", closed).await;

    // Another channel in the same process is unaffected.
    other_tx.send(Traffic::Num(1)).await.expect("send");
    assert_eq!(
        guard("recv", other_rx.recv()).await.expect("recv"),
        Some(Traffic::Num(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_cancelled_sends_and_receives_keeps_the_stream_in_sync() {
    const FUTURES: u64 = 10_000;
    let mut config = Config::new();
    config.set_capacity(4 * 1024);
    let (a, b) = aiosock::pair::<Traffic, Traffic>().expect("pair");
    let (tx, _a_rx) = a.with_config(config).into_split();
    let (_b_tx, mut rx) = b.into_split();

    let sender = tokio::spawn(async move {
        let mut rng = Rng::new(1);
        let mut accepted = Vec::new();
        for seq in 0..FUTURES {
            let msg = Traffic::Text(seq, "x".repeat(rng.below(300) as usize));
            let mut fut = pin!(tx.send(msg));
            // Poll a random number of times, then drop it, finished or not.
            let polls = rng.below(3);
            let mut done = None;
            for _ in 0..=polls {
                let step = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
                if let Poll::Ready(r) = step {
                    done = Some(r);
                    break;
                }
                tokio::task::yield_now().await;
            }
            match done {
                Some(Ok(())) => accepted.push(seq),
                Some(Err(e)) => panic!("{e:?}"),
                None => {} // dropped while waiting: not sent
            }
        }
        tx.send(Traffic::End).await.expect("end");
        accepted
    });

    let mut rng = Rng::new(2);
    let mut received = Vec::new();
    let receive = async {
        loop {
            let mut fut = pin!(rx.recv());
            let polls = rng.below(4);
            let mut got = None;
            for _ in 0..=polls {
                let step = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
                if let Poll::Ready(r) = step {
                    got = Some(r);
                    break;
                }
                tokio::task::yield_now().await;
            }
            match got {
                Some(Ok(Some(Traffic::Text(seq, _)))) => received.push(seq),
                Some(Ok(Some(Traffic::End))) => break,
                Some(other) => panic!("unexpected {other:?}"),
                None => {} // dropped mid-receive
            }
        }
    };
    guard("storm receive", receive).await;
    let accepted = guard("storm send", sender).await.expect("sender");
    assert!(
        !accepted.is_empty() && accepted.len() < FUTURES as usize,
        "some sends were cancelled"
    );
    assert_eq!(
        received, accepted,
        "exactly the accepted messages, in order"
    );
}
