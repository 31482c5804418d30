//! Peer death: `kill -9` of a child seen at once by the parent (receiving, sending,
//! serving), a dead parent seen by its child, and `fork`.

use std::time::Duration;

use aiosock::{Error, SendError};
use aiosock_tests::guard;
use aiosock_tests::workers::{Reply, Request, process_gone, start, until_gone, worker};
use tokio::io::AsyncBufReadExt;

const WORKER: &str = env!("CARGO_BIN_EXE_worker");

/// How soon a peer's death must be seen. A hang guard with room for a loaded machine,
/// not a speed measurement.
const PROMPT: Duration = Duration::from_secs(5);

async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(PROMPT, fut)
        .await
        .unwrap_or_else(|_| panic!("`{what}` not done within {PROMPT:?} of the peer's death"))
}

#[tokio::test]
async fn a_killed_child_ends_the_parents_blocked_recv() {
    let (mut child, tx, mut rx) = start(WORKER, "block");
    // Make sure the child is up and attached: it answers nothing, so only its hello
    // arrives; a short wait for our side to be parked in recv.
    let recv = tokio::spawn(async move { rx.recv().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!recv.is_finished(), "nothing to receive yet");
    child.start_kill().expect("kill -9");
    let got = within("recv", recv).await.expect("recv task");
    assert!(
        matches!(got, Ok(None) | Err(Error::Truncated { .. })),
        "recv after kill -9: {got:?}"
    );
    // Sends now fail, handing the message back.
    let send_until_closed = async {
        for i in 0.. {
            match tx.send(Request::Count(i)).await {
                Ok(()) => tokio::task::yield_now().await,
                Err(SendError::Closed(msg)) => return msg,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        unreachable!()
    };
    let msg = within("send fails", send_until_closed).await;
    assert!(matches!(msg, Request::Count(_)));
    within("closed", tx.closed()).await;
    let status = guard("reap", child.wait()).await.expect("wait");
    assert!(!status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_child_stops_a_parent_sending_at_full_speed() {
    let (mut child, tx, mut rx) = start(WORKER, "serve");
    let sender = tokio::spawn(async move {
        let mut sent = 0u64;
        loop {
            match tx.send(Request::Count(sent)).await {
                Ok(()) => sent += 1,
                Err(SendError::Closed(Request::Count(n))) => return (sent, n),
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!sender.is_finished(), "the sender runs until the kill");
    child.start_kill().expect("kill -9");
    let (sent, returned) = within("sender", sender).await.expect("sender task");
    assert!(sent > 0, "some messages went out before the kill");
    assert_eq!(returned, sent, "the refused message comes back");
    let got = within("recv", rx.recv()).await;
    assert!(
        matches!(got, Ok(None) | Err(Error::Truncated { .. })),
        "{got:?}"
    );
    guard("reap", child.wait()).await.expect("wait");
}

/// Counts what it is given; used to check that `serve` returns when the peer dies.
#[derive(Default)]
struct Tally {
    items: u64,
    closed: bool,
}

impl aiosock_tests::workers::ReplyHandler for Tally {
    async fn on_echo(&mut self, _id: u64, _data: Vec<u8>) {}
    async fn on_counted(&mut self, _n: u64) {}
    async fn on_item(&mut self, _n: u64) {
        self.items += 1;
    }
    async fn on_stream_done(&mut self) {}
    async fn on_fds(&mut self, _fds: Vec<(i32, String)>) {}
    async fn on_soak(&mut self, _seq: u64, _data: Vec<u8>) {}
    async fn on_soak_report(
        &mut self,
        _received: u64,
        _problem: Option<String>,
        _peak_rss_kib: u64,
    ) {
    }
    async fn closed(&mut self) {
        self.closed = true;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_child_ends_the_parents_serve() {
    let (mut child, tx, rx) = start(WORKER, "serve");
    tx.send(Request::Stream { n: u64::MAX })
        .await
        .expect("send");
    let serving = tokio::spawn(rx.serve(Tally::default()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!serving.is_finished(), "the stream is endless");
    child.start_kill().expect("kill -9");
    match within("serve", serving).await.expect("serve task") {
        Ok(tally) => assert!(tally.items > 0 && tally.closed),
        Err(e) => assert!(matches!(e, Error::Truncated { .. }), "{e:?}"),
    }
    guard("reap", child.wait()).await.expect("wait");
}

/// Starts the worker `mode` (which spawns a grandchild and prints its pid) as a plain
/// child of the test; returns it and the grandchild's pid.
async fn middle_and_grandchild(mode: &str) -> (tokio::process::Child, u32) {
    let mut middle = tokio::process::Command::from(worker(WORKER, mode))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the middle process");
    let stdout = middle.stdout.take().expect("piped");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = guard("grandchild pid", lines.next_line())
        .await
        .expect("read")
        .expect("a line");
    (middle, line.trim().parse().expect("a pid"))
}

#[tokio::test]
async fn a_child_blocked_in_recv_exits_when_its_parent_dies() {
    // The test plays grandparent: `middle` spawns a `block` child, then is killed.
    let (mut middle, grandchild) = middle_and_grandchild("middle").await;
    assert!(!process_gone(grandchild), "the grandchild runs");
    middle.start_kill().expect("kill -9 the parent");
    guard("middle exit", middle.wait()).await.expect("wait");
    within("grandchild exit", until_gone(grandchild)).await;
}

#[test]
fn fork_refuses_in_a_multi_threaded_process() {
    // The test harness runs this on a thread of its own: this process has several.
    let (_here, there) = aiosock::pair::<Request, Reply>().expect("pair");
    let err = aiosock::fork(there, |_end| async { Ok::<(), Error>(()) }).expect_err("refused");
    match err {
        Error::ForkThreads { threads } => assert!(threads > 1),
        other => panic!("expected ForkThreads, got {other:?}"),
    }
}

#[tokio::test]
async fn fork_works_from_a_single_threaded_process() {
    // The worker forks before it starts any runtime, exchanges a message with its child,
    // checks that the child let go of another pair's end, and reaps it.
    let out = tokio::process::Command::from(worker(WORKER, "fork"))
        .output()
        .await
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "fork worker failed: {stdout}{stderr}");
    assert!(
        stdout.contains("worked and exited with exit status: 0"),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_child_started_with_die_with_parent_is_killed_with_its_parent() {
    // The grandchild never reads its end and the middle process keeps its own end open:
    // only the kernel's parent-death signal can end it.
    let (mut middle, grandchild) = middle_and_grandchild("middle-pdeathsig").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !process_gone(grandchild),
        "the grandchild runs while its parent does"
    );
    middle.start_kill().expect("kill -9 the parent");
    guard("middle exit", middle.wait()).await.expect("wait");
    within("grandchild killed", until_gone(grandchild)).await;
}

#[tokio::test]
async fn kill_on_drop_kills_a_child_whose_handle_is_dropped() {
    let (here, there) = aiosock::pair::<Request, Reply>().expect("pair");
    let child = aiosock::ChildOptions::new()
        .kill_on_drop(true)
        .spawn(worker(WORKER, "sleep"), there)
        .expect("spawn");
    let pid = child.id();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!process_gone(pid));
    drop(child);
    within("child killed on drop", until_gone(pid)).await;
    drop(here);
}
