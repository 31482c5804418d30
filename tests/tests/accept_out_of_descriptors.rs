//! `Listener::accept` when this process is out of descriptors: the error is
//! `Error::OutOfDescriptors`, it comes after a pause (so a loop that accepts again at
//! once does not spin while the want lasts), and the connection waits in the backlog for
//! a later `accept`. Alone in its test binary: it lowers the process's descriptor limit.

use std::time::{Duration, Instant};

use aiosock::{Error, Listener};
use aiosock_tests::guard;
use aiosock_tests::workers::{Reply, Request};

#[tokio::test(flavor = "current_thread")]
async fn accept_out_of_descriptors_pauses_and_the_peer_waits_in_the_backlog() {
    let dir = std::env::temp_dir().join(format!("aiosock-emfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let listener = Listener::<Request, Reply>::bind(&path).expect("bind");
    // A first connection, accepted: the listener is registered with the runtime, so that
    // accepting is all that needs a descriptor below.
    let first = std::os::unix::net::UnixStream::connect(&path).expect("connect");
    let (first_end, _) = guard("accept", listener.accept()).await.expect("accept");
    let client = std::os::unix::net::UnixStream::connect(&path).expect("connect");
    // Every descriptor under a lowered limit taken.
    let full = aiosock_tests::fill_descriptor_table(0);
    let start = Instant::now();
    let mut attempts = 0;
    while start.elapsed() < Duration::from_secs(1) {
        match guard("accept", listener.accept()).await {
            Err(Error::OutOfDescriptors(_)) => attempts += 1,
            other => panic!("expected OutOfDescriptors, got {:?}", other.map(|_| ())),
        }
    }
    assert!(
        attempts <= 20,
        "{attempts} failed accepts in a second: the error came without a pause"
    );
    drop(full);
    // The peer waited in the backlog.
    let (end, peer) = guard("accept", listener.accept()).await.expect("accept");
    assert_eq!(peer.pid(), std::process::id());
    drop((end, client, first_end, first));
    let _ = std::fs::remove_dir_all(&dir);
}
