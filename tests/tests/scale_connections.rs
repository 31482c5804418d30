//! Many live connections in one process: a worker process opens 10,000 connections to a
//! listener here and keeps them all open until each has been answered; this process holds
//! the 10,000 other ends at once. Afterwards the descriptor count returns to its baseline.
//! A process out of descriptors gets a clear error.

use std::process::Stdio;

use aiosock::Listener;
use aiosock_tests::workers::{Reply, Request, worker};
use aiosock_tests::{fd_count_settles_at, guard, open_fd_count};

const EXE: &str = env!("CARGO_BIN_EXE_worker");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_live_connections_in_one_process() {
    const CONNECTIONS: usize = 10_000;
    let limit = aiosock::raise_fd_limit().expect("limit");
    assert!(
        limit as usize > CONNECTIONS + 1_000,
        "a limit of {limit} is too low"
    );
    let dir = std::env::temp_dir().join(format!("aiosock-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("s.sock");
    let listener = Listener::<Reply, Request>::bind(&path).expect("bind");
    let baseline = open_fd_count();
    let mut child = worker(EXE, "connections")
        .arg(&path)
        .arg(CONNECTIONS.to_string())
        .spawn()
        .expect("spawn");
    let mut ends = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let (end, _peer) = guard("accept", listener.accept()).await.expect("accept");
        let (tx, mut rx) = end.into_split();
        // Each end reads its one message here, so all are live at once.
        match guard("count", rx.recv()).await.expect("recv") {
            Some(Request::Count(_)) => {}
            other => panic!("{other:?}"),
        }
        ends.push((tx, rx));
    }
    // Every end is live at once (the other test here spawns a process meanwhile, so the
    // descriptor count alone would not tell).
    assert_eq!(ends.len(), CONNECTIONS);
    // Answer each once its client closes: the worker waits for every answer.
    let answering: Vec<_> = ends
        .into_iter()
        .map(|(tx, mut rx)| {
            tokio::spawn(async move {
                assert!(matches!(rx.recv().await, Ok(None)));
                tx.send(Reply::Counted(1)).await.expect("answer");
            })
        })
        .collect();
    for task in answering {
        guard("answer", task).await.expect("task");
    }
    let status = guard("exit", tokio::task::spawn_blocking(move || child.wait()))
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "{status}");
    fd_count_settles_at(baseline, "after 10,000 connections closed").await;
    drop(listener);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn running_out_of_descriptors_is_a_clear_error() {
    let out = worker(EXE, "fd-limit")
        .stdout(Stdio::piped())
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("out-of-descriptors this process is out of file descriptors"),
        "{text}"
    );
}
