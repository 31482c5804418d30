//! The low-latency mode (`Config::set_spin`): a receiver that polls its socket for a while
//! before parking gets every message, in order, whether it comes within the spin or long
//! after it (the receiver then parks and is woken as usual), across real processes; and
//! its spin never holds back its own task's sends.

use std::time::Duration;

use aiosock::Config;
use aiosock_tests::guard;
use aiosock_tests::workers::{Reply, Request, worker};

const EXE: &str = env!("CARGO_BIN_EXE_worker");

#[tokio::test]
async fn a_spinning_receiver_gets_every_reply_soon_or_late() {
    let (here, there) = aiosock::pair::<Request, Reply>().expect("pair");
    let _child = aiosock::spawn(worker(EXE, "serve"), there).expect("spawn");
    let mut config = Config::new();
    config.set_spin(Duration::from_micros(200));
    let (tx, mut rx) = here.with_config(config).into_split();
    for id in 0..5_000u64 {
        let data = id.to_le_bytes().to_vec();
        tx.send(Request::Echo {
            id,
            data: data.clone(),
        })
        .await
        .expect("send");
        let reply = guard("echo", rx.recv()).await.expect("recv");
        assert_eq!(reply, Some(Reply::Echo { id, data }));
        if id % 1_000 == 999 {
            // Longer than the spin: the receiver parks, and the next reply still wakes it.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    drop(tx);
    // Whatever the worker reports at the close, then the end.
    while let Some(reply) = guard("end", rx.recv()).await.expect("recv") {
        assert!(!matches!(reply, Reply::Echo { .. }), "{reply:?}");
    }
}

/// A task that sends, then receives with a long spin, on a current-thread runtime: each
/// send must reach the peer at once. (A send left to the end's writer task would wait out
/// the whole spin, since that task cannot run on the same thread meanwhile: before the fix,
/// every other round trip here waited out the whole spin, 1.5 s in all.)
#[tokio::test]
async fn a_spin_does_not_hold_back_the_sends_before_it() {
    let (here, there) = aiosock::pair::<Request, Reply>().expect("pair");
    let _child = aiosock::spawn(worker(EXE, "serve"), there).expect("spawn");
    let spin = Duration::from_millis(300);
    let mut config = Config::new();
    config.set_spin(spin);
    let (tx, mut rx) = here.with_config(config).into_split();
    let start = std::time::Instant::now();
    for id in 0..10u64 {
        let data = vec![id as u8; 16];
        tx.send(Request::Echo {
            id,
            data: data.clone(),
        })
        .await
        .expect("send");
        let reply = guard("echo", rx.recv()).await.expect("recv");
        assert_eq!(reply, Some(Reply::Echo { id, data }));
    }
    let elapsed = start.elapsed();
    // Ten round trips with the worker answering at once take milliseconds; five spins if
    // sends waited for them, as before the fix. The bound is far from both.
    assert!(
        elapsed < spin * 3,
        "10 round trips took {elapsed:?} with a {spin:?} spin: sends waited for it"
    );
    drop(tx);
    while let Some(reply) = guard("end", rx.recv()).await.expect("recv") {
        assert!(!matches!(reply, Reply::Echo { .. }), "{reply:?}");
    }
}
