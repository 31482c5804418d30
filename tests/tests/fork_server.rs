//! `ForkServer` and `Pool::fork` across real processes: the worker binary makes the server
//! while it is single-threaded, then forks workers from inside a multi-thread runtime,
//! restarts one killed with `kill -9`, and shuts down; a killed parent takes its server
//! and forked workers with it; refusals where forking is unsound.

use std::time::Duration;

use aiosock::{Error, ForkServer};
use aiosock_tests::workers::{Ask, Back, process_gone, until_gone, worker};
use tokio::io::AsyncBufReadExt;

const WORKER: &str = env!("CARGO_BIN_EXE_worker");

/// A hang guard with room for a loaded machine, not a speed measurement.
const PROMPT: Duration = Duration::from_secs(10);

/// Runs the worker in `mode` to its end; its stdout, after checking that it succeeded.
async fn run(mode: &str) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::from(worker(WORKER, mode)).output(),
    )
    .await
    .expect("the worker hung")
    .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "worker {mode} failed: {stdout}{stderr}"
    );
    stdout
}

#[tokio::test]
async fn a_forked_pool_answers_restarts_a_killed_worker_and_shuts_down() {
    let stdout = run("fork-pool").await;
    assert!(stdout.contains("fork-pool ok"), "{stdout}");
}

#[tokio::test]
async fn a_fork_server_starts_a_worker_inside_a_runtime_and_a_dead_one_is_refused() {
    let stdout = run("fork-server").await;
    assert!(stdout.contains("refused: "), "{stdout}");
    assert!(stdout.contains("fork-server ok"), "{stdout}");
}

#[tokio::test]
async fn the_server_and_its_forked_workers_die_with_a_killed_parent() {
    let mut parent = tokio::process::Command::from(worker(WORKER, "fork-pool-hold"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let stdout = parent.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(PROMPT, lines.next_line())
        .await
        .expect("no pids line in time")
        .expect("read")
        .expect("a pids line");
    let pids: Vec<u32> = line
        .strip_prefix("pids ")
        .unwrap_or_else(|| panic!("not a pids line: {line}"))
        .split_whitespace()
        .map(|pid| pid.parse().expect("pid"))
        .collect();
    assert_eq!(pids.len(), 3, "{line}");
    assert!(
        pids.iter().all(|&pid| !process_gone(pid)),
        "all alive first"
    );
    parent.start_kill().expect("kill -9");
    parent.wait().await.expect("wait");
    for pid in pids {
        tokio::time::timeout(PROMPT, until_gone(pid))
            .await
            .unwrap_or_else(|_| panic!("process {pid} outlived its killed parent"));
    }
}

#[test]
fn a_fork_server_is_refused_in_a_multi_threaded_process() {
    // The test harness runs this on a thread of its own: this process has several.
    let err = ForkServer::<Back, Ask>::new(async |_end| Ok::<(), Error>(())).expect_err("refused");
    match err {
        Error::ForkThreads { threads } => assert!(threads > 1),
        other => panic!("expected ForkThreads, got {other:?}"),
    }
}

#[tokio::test]
async fn a_fork_server_is_refused_inside_a_runtime() {
    let err = ForkServer::<Back, Ask>::new(async |_end| Ok::<(), Error>(())).expect_err("refused");
    assert!(matches!(err, Error::ForkInRuntime), "{err:?}");
}
