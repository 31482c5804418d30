//! A receiver slower than its sender: the sender is held back (`try_send` says `Full`,
//! `ready` waits), nothing is dropped, and memory stays bounded. Alone in its binary, so
//! that the process's peak memory is this test's.
//!
//! Runs 3 s by default; `AIOSOCK_SLOW_SECS=30 cargo test -p aiosock-tests --test slow_receiver`
//! runs the full 30 s.

use std::time::{Duration, Instant};

use aiosock::Config;
use aiosock_tests::{Traffic, proc_status_kib};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_blocks_the_sender_without_loss_or_growth() {
    let secs = env_or("AIOSOCK_SLOW_SECS", 3);
    let mut config = Config::new();
    config.set_capacity(64 * 1024);
    let (a, b) = aiosock::pair::<Traffic, Traffic>().expect("pair");
    let (tx, _a_rx) = a.with_config(config).into_split();
    let (_b_tx, mut rx) = b.into_split();
    let rss_before = proc_status_kib("VmHWM");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let sender = tokio::spawn(async move {
        let mut sent = 0u64;
        let mut full = 0u64;
        while Instant::now() < deadline {
            match tx.try_send(Traffic::Blob(vec![sent as u8; 512])) {
                Ok(()) => sent += 1,
                Err(aiosock::TrySendError::Full(_)) => {
                    full += 1;
                    tx.ready().await.expect("ready");
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        (sent, full)
    });
    let mut received = 0u64;
    let hang = Duration::from_secs(secs + 60);
    let receive = async {
        while let Some(msg) = rx.recv().await.expect("recv") {
            assert_eq!(
                msg,
                Traffic::Blob(vec![received as u8; 512]),
                "message {received}"
            );
            received += 1;
            // Much slower than the sender.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let (sent, full) = tokio::time::timeout(hang, async {
        let ((), sent) = tokio::join!(receive, sender);
        sent.expect("sender")
    })
    .await
    .expect("slow receiver hang guard");
    assert_eq!(received, sent, "every accepted message arrived");
    assert!(full > 0, "the sender was held back");
    let grown = proc_status_kib("VmHWM").saturating_sub(rss_before);
    println!(
        "slow receiver: {secs} s, {sent} messages, sender held back {full} times, peak memory +{grown} KiB"
    );
    assert!(grown < 64 * 1024, "memory grew by {grown} KiB");
}
