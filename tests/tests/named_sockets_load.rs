//! Many clients at once on one named socket: 1,000 connections open together, each
//! answered, and the descriptor count back where it was once they leave. (Alone in its
//! binary, so that no other test opens descriptors meanwhile.)

use std::sync::Arc;

use aiosock::Listener;
use aiosock_tests::workers::{Reply, Request};
use aiosock_tests::{fd_count_settles_at, guard, open_fd_count};

const CLIENTS: u64 = 1000;

/// Serves one client: echoes each request until it closes.
async fn echo_server(end: aiosock::Endpoint<Reply, Request>) {
    let (tx, mut rx) = end.into_split();
    while let Ok(Some(msg)) = rx.recv().await {
        if let Request::Echo { id, data } = msg
            && tx.send(Reply::Echo { id, data }).await.is_err()
        {
            return;
        }
    }
}

async fn one_client(
    path: &std::path::Path,
    id: u64,
) -> (aiosock::Sender<Request>, aiosock::Receiver<Reply>) {
    let end = aiosock::connect::<Request, Reply>(path)
        .await
        .expect("connect");
    let (tx, mut rx) = end.into_split();
    let data = id.to_le_bytes().to_vec();
    tx.send(Request::Echo {
        id,
        data: data.clone(),
    })
    .await
    .expect("send");
    assert_eq!(
        rx.recv().await.expect("recv"),
        Some(Reply::Echo { id, data })
    );
    (tx, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_at_once_leave_no_descriptor_behind() {
    let dir = std::env::temp_dir().join(format!("aiosock-named-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = Arc::new(dir.join("server.sock"));
    let listener = Listener::<Reply, Request>::bind(path.as_path()).expect("bind");
    let server = tokio::spawn(async move {
        loop {
            let (end, _) = listener.accept().await.expect("accept");
            tokio::spawn(echo_server(end));
        }
    });

    // The listener and the runtime are open: what is open now must be all that is open
    // after each round.
    let baseline = open_fd_count();
    drop(guard("warm-up", one_client(&path, u64::MAX)).await);
    fd_count_settles_at(baseline, "after one client").await;

    for round in 0..2 {
        // Every client holds its connection until all of them are connected and answered
        // and the test has counted them.
        let all_in = Arc::new(tokio::sync::Barrier::new(CLIENTS as usize + 1));
        let counted = Arc::new(tokio::sync::Barrier::new(CLIENTS as usize + 1));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let path = path.clone();
                let (all_in, counted) = (all_in.clone(), counted.clone());
                tokio::spawn(async move {
                    let held = one_client(&path, round * CLIENTS + i).await;
                    all_in.wait().await;
                    counted.wait().await;
                    drop(held);
                })
            })
            .collect();
        guard("all clients connected", all_in.wait()).await;
        let open = open_fd_count();
        assert!(
            open >= baseline + 2 * CLIENTS as usize,
            "{open} descriptors open with {CLIENTS} connections, {baseline} before"
        );
        counted.wait().await;
        for client in clients {
            guard("client", client).await.expect("client task");
        }
        fd_count_settles_at(baseline, &format!("after round {round}")).await;
    }

    server.abort();
    let _ = server.await;
    assert!(!path.exists(), "the listener removed its file when dropped");
    let _ = std::fs::remove_dir_all(&dir);
}
