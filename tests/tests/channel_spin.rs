//! The low-latency mode (`Config::set_spin`): a receiver that polls its socket for a while
//! before parking gets every message, in order, whether it comes within the spin or long
//! after it (the receiver then parks and is woken as usual), across real processes.

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
