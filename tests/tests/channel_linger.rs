//! Lingering: when a runtime shuts down with ends whose peers are slow to read, what
//! `send` accepted is still written (by aiosock's lingering thread, all ends at once), and
//! shutting the runtime down does not wait for it.

use std::time::{Duration, Instant};

use aiosock::{Config, Endpoint, Sender, TrySendError};
use aiosock_tests::{Traffic, blob, guard};

/// Each end's linger: far longer than any shutdown below may take.
const LINGER: Duration = Duration::from_secs(30);
const MSG: usize = 4096;

/// A pair whose first end lingers [`LINGER`], with the second end not even split (nobody
/// reads it yet).
fn stalled_pair() -> (Sender<Traffic>, Endpoint<Traffic, Traffic>) {
    let (a, b) = aiosock::pair::<Traffic, Traffic>().expect("pair");
    let mut config = Config::new();
    config.set_capacity(64 * 1024).set_linger(LINGER);
    let (tx, _rx) = a.with_config(config).into_split();
    (tx, b)
}

/// Sends blobs until the buffer stays full; returns how many were accepted.
async fn fill(tx: &Sender<Traffic>) -> u64 {
    let mut accepted = 0;
    loop {
        match tx.try_send(blob(accepted, MSG)) {
            Ok(()) => accepted += 1,
            Err(TrySendError::Full(_)) => {
                if tokio::time::timeout(Duration::from_millis(200), tx.ready())
                    .await
                    .is_err()
                {
                    return accepted;
                }
            }
            Err(e) => panic!("try_send: {e:?}"),
        }
    }
}

/// Reads every accepted blob from `peer` on a new runtime, then the end of the stream.
fn read_all(peer: Endpoint<Traffic, Traffic>, n: u64) {
    let rt = aiosock_tests::local_runtime();
    rt.block_on(async move {
        let (_tx, mut rx) = peer.into_split();
        for seq in 0..n {
            let got = guard("recv", rx.recv()).await.expect("recv");
            assert_eq!(got, Some(blob(seq, MSG)), "message {seq} of {n}");
        }
        assert_eq!(guard("end", rx.recv()).await.expect("recv"), None);
    });
}

#[test]
fn dropping_a_runtime_with_three_stalled_ends_neither_waits_nor_loses_messages() {
    let rt = aiosock_tests::local_runtime();
    let mut stalled = Vec::new();
    rt.block_on(async {
        for _ in 0..3 {
            let (tx, peer) = stalled_pair();
            let accepted = fill(&tx).await;
            stalled.push((tx, peer, accepted));
        }
    });
    let started = Instant::now();
    drop(rt);
    let took = started.elapsed();
    // Before, each end blocked for its full linger in turn: 3 × 30 s.
    assert!(
        took < LINGER / 3,
        "dropping the runtime waited {took:?} (each end lingers {LINGER:?})"
    );
    for (tx, peer, accepted) in stalled {
        // The runtime is gone: the senders take nothing more, and what they accepted
        // arrives once the peer reads.
        assert!(matches!(
            tx.try_send(Traffic::End),
            Err(TrySendError::Closed(_))
        ));
        read_all(peer, accepted);
    }
}

#[test]
fn shutdown_timeout_returns_on_time_with_a_stalled_end() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (tx, peer) = stalled_pair();
    let accepted = rt.block_on(fill(&tx));
    let started = Instant::now();
    rt.shutdown_timeout(Duration::from_millis(100));
    let took = started.elapsed();
    assert!(took < LINGER / 3, "shutdown_timeout(100 ms) took {took:?}");
    read_all(peer, accepted);
}
