//! Descriptor leaks: pairs made and dropped, and children spawned and reaped, leave the
//! process's descriptor count where it started. (Alone in its binary, so that no other
//! test opens descriptors meanwhile.)

use aiosock_tests::workers::{Reply, Request, worker};
use aiosock_tests::{Traffic, fd_count_settles_at, guard, open_fd_count};

const WORKER: &str = env!("CARGO_BIN_EXE_worker");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_and_children_leave_no_descriptor_behind() {
    // Warm up the runtime's own descriptors (signal driver, blocking pool) first.
    let (here, there) = aiosock::pair::<Request, Reply>().expect("pair");
    let mut child = aiosock::spawn(worker(WORKER, "serve"), there).expect("spawn");
    drop(here);
    guard("warm-up child", child.wait()).await.expect("wait");
    let baseline = open_fd_count();

    for i in 0..1000u64 {
        let (a, b) = aiosock::pair::<Traffic, Traffic>().expect("pair");
        match i % 4 {
            // Made and dropped unused.
            0 => drop((a, b)),
            // Split and dropped without a runtime use.
            1 => drop((a.into_split(), b.into_split())),
            // Used both ways, some `closed` waits, then dropped.
            _ => {
                let (atx, mut arx) = a.into_split();
                let (btx, mut brx) = b.into_split();
                atx.send(Traffic::Num(i)).await.expect("send");
                btx.send(Traffic::Num(i)).await.expect("send");
                assert_eq!(
                    guard("recv", brx.recv()).await.expect("recv"),
                    Some(Traffic::Num(i))
                );
                assert_eq!(
                    guard("recv", arx.recv()).await.expect("recv"),
                    Some(Traffic::Num(i))
                );
                if i % 4 == 3 {
                    drop((brx, btx));
                    guard("closed", atx.closed()).await;
                }
            }
        }
    }
    fd_count_settles_at(baseline, "after 1000 pairs").await;

    for _ in 0..200 {
        let (here, there) = aiosock::pair::<Request, Reply>().expect("pair");
        let mut child = aiosock::spawn(worker(WORKER, "serve"), there).expect("spawn");
        let (tx, mut rx) = here.into_split();
        tx.send(Request::Echo {
            id: 1,
            data: vec![],
        })
        .await
        .expect("send");
        assert!(guard("echo", rx.recv()).await.expect("recv").is_some());
        drop(tx);
        assert_eq!(guard("close", rx.recv()).await.expect("recv"), None);
        assert!(guard("exit", child.wait()).await.expect("wait").success());
    }
    fd_count_settles_at(baseline, "after 200 children").await;
}
