//! Spawned worker processes: volume both ways, a serving worker under concurrent load,
//! large payloads, protocol mismatch across binaries, and descriptor hygiene.

use std::collections::BTreeSet;
use std::sync::Arc;

use aiosock::Error;
use aiosock_tests::guard;
use aiosock_tests::workers::{
    EXIT_MISMATCH, EXIT_REFUSED, Reply, Request, Stranger, start, worker,
};

const WORKER: &str = env!("CARGO_BIN_EXE_worker");

async fn expect_success(mut child: aiosock::Child) {
    let status = guard("worker exit", child.wait()).await.expect("wait");
    assert!(status.success(), "worker failed: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_million_messages_to_the_child_arrive_in_order() {
    const N: u64 = 1_000_000;
    let (child, tx, mut rx) = start(WORKER, "serve");
    let sender = tokio::spawn(async move {
        for i in 0..N {
            tx.send(Request::Count(i)).await.expect("send");
        }
        // Dropping the sender closes: the worker answers with its count.
    });
    guard("sender", sender).await.expect("sender task");
    let reply = guard("count reply", rx.recv()).await.expect("recv");
    assert_eq!(reply, Some(Reply::Counted(N)));
    assert_eq!(guard("close", rx.recv()).await.expect("recv"), None);
    expect_success(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_million_messages_from_the_child_arrive_in_order() {
    const N: u64 = 1_000_000;
    let (child, tx, mut rx) = start(WORKER, "serve");
    tx.send(Request::Stream { n: N }).await.expect("send");
    let receive = async {
        for i in 0..N {
            let got = rx.recv().await.expect("recv");
            assert_eq!(got, Some(Reply::Item(i)));
        }
        assert_eq!(rx.recv().await.expect("recv"), Some(Reply::StreamDone));
    };
    guard("receive 1M items", receive).await;
    drop(tx);
    assert_eq!(guard("close", rx.recv()).await.expect("recv"), None);
    expect_success(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_child_answers_sixteen_concurrent_tasks() {
    const TASKS: u64 = 16;
    const EACH: u64 = 500;
    let (child, tx, mut rx) = start(WORKER, "serve");
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            for seq in 0..EACH {
                let id = task << 32 | seq;
                let data = id.to_le_bytes().repeat(1 + (seq % 7) as usize);
                tx.send(Request::Echo { id, data }).await.expect("send");
            }
        }));
    }
    drop(tx);
    let mut next = vec![0u64; TASKS as usize];
    let receive = async {
        for _ in 0..TASKS * EACH {
            match rx.recv().await.expect("recv") {
                Some(Reply::Echo { id, data }) => {
                    let (task, seq) = (id >> 32, id & 0xffff_ffff);
                    assert_eq!(seq, next[task as usize], "task {task} out of order");
                    next[task as usize] += 1;
                    assert_eq!(data, id.to_le_bytes().repeat(1 + (seq % 7) as usize));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    guard("echo replies", receive).await;
    for task in tasks {
        guard("sender task", task).await.expect("task");
    }
    assert_eq!(guard("close", rx.recv()).await.expect("recv"), None);
    assert!(next.iter().all(|&n| n == EACH));
    expect_success(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_payloads_travel_both_ways() {
    let (child, tx, mut rx) = start(WORKER, "serve");
    for round in 0..3u64 {
        let data: Vec<u8> = (0..16 << 20)
            .map(|i: u64| (i.wrapping_mul(31) ^ round) as u8)
            .collect();
        let expected = data.clone();
        tx.send(Request::Echo { id: round, data })
            .await
            .expect("send");
        match guard("16 MiB echo", rx.recv()).await.expect("recv") {
            Some(Reply::Echo { id, data }) => {
                assert_eq!(id, round);
                assert!(data == expected, "16 MiB payload corrupted");
            }
            other => panic!("unexpected {:?}", other.map(|_| "a reply")),
        }
    }
    drop(tx);
    assert_eq!(guard("close", rx.recv()).await.expect("recv"), None);
    expect_success(child).await;
}

#[tokio::test]
async fn a_worker_of_another_protocol_is_a_mismatch_on_both_sides() {
    let (mut child, tx, mut rx) = start(WORKER, "mismatch");
    tx.send(Request::Count(0)).await.expect("send");
    let err = guard("recv", rx.recv()).await.expect_err("mismatch");
    let Error::ProtocolMismatch(m) = &err else {
        panic!("expected ProtocolMismatch, got {err:?}");
    };
    assert_eq!(m.peer_sends.name(), "Stranger");
    assert_eq!(m.local_expects.name(), "Reply");
    let text = err.to_string();
    assert!(
        text.contains("`Stranger`") && text.contains("`Reply`") && text.contains("`Request`"),
        "{text}"
    );
    let status = guard("worker exit", child.wait()).await.expect("wait");
    assert_eq!(
        status.code(),
        Some(EXIT_MISMATCH),
        "the worker saw: {status}"
    );
    let _ = Stranger::Hello(String::new());
}

/// Descriptors open in this process without close-on-exec: any child inherits those,
/// whatever aiosock does (the test runner's environment may leave some open).
fn inheritable_fds() -> BTreeSet<i32> {
    let mut fds = BTreeSet::new();
    for entry in std::fs::read_dir("/proc/self/fdinfo")
        .expect("fdinfo")
        .flatten()
    {
        let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok());
        const O_CLOEXEC: u32 = 0o2000000;
        if flags.is_some_and(|f| f & O_CLOEXEC == 0) {
            fds.insert(fd);
        }
    }
    fds
}

#[tokio::test]
async fn the_child_gets_only_stdio_and_its_end_and_plain_children_get_no_end() {
    // Keep other ends alive while the children start, to give them a chance to leak.
    let (keep_a, keep_b) = aiosock::pair::<Request, Reply>().expect("pair");
    let baseline = inheritable_fds();
    let (child, tx, mut rx) = start(WORKER, "fds");
    tx.send(Request::ListFds).await.expect("send");
    let Some(Reply::Fds(fds)) = guard("fds", rx.recv()).await.expect("recv") else {
        panic!("expected the worker's descriptors");
    };
    let end = std::env::var(aiosock::ENV_FD).ok();
    assert!(end.is_none(), "the test process itself has no end");
    let sockets: Vec<_> = fds
        .iter()
        .filter(|(_, target)| target.starts_with("socket:"))
        .collect();
    assert_eq!(sockets.len(), 1, "exactly one socket, its end: {fds:?}");
    let unexpected: Vec<_> = fds
        .iter()
        .filter(|(fd, target)| *fd > 2 && !target.starts_with("socket:") && !baseline.contains(fd))
        .collect();
    assert!(
        unexpected.is_empty(),
        "descriptors beyond stdio and the end: {unexpected:?}"
    );
    drop(tx);
    assert_eq!(guard("close", rx.recv()).await.expect("recv"), None);
    expect_success(child).await;

    // A plain child, started while aiosock ends are open here, inherits none of them.
    let out = worker(WORKER, "print-fds")
        .output()
        .expect("run plain child");
    assert!(out.status.success());
    let listing = String::from_utf8(out.stdout).expect("utf-8");
    let leaked: Vec<&str> = listing
        .lines()
        .filter(|l| l.contains("socket:") || l.contains("pidfd"))
        .collect();
    assert!(leaked.is_empty(), "a plain child inherited: {leaked:?}");
    drop((keep_a, keep_b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_workers_each_exchange_ten_thousand_messages() {
    const WORKERS: usize = 32;
    const EACH: u64 = 10_000;
    let mut runs = Vec::new();
    for w in 0..WORKERS {
        runs.push(tokio::spawn(async move {
            let (child, tx, mut rx) = start(WORKER, "serve");
            let tx = Arc::new(tx);
            let sender = {
                let tx = tx.clone();
                tokio::spawn(async move {
                    for i in 0..EACH {
                        let data = vec![w as u8; (i % 16) as usize];
                        tx.send(Request::Echo { id: i, data }).await.expect("send");
                    }
                })
            };
            for i in 0..EACH {
                let got = rx.recv().await.expect("recv");
                let data = vec![w as u8; (i % 16) as usize];
                assert_eq!(got, Some(Reply::Echo { id: i, data }), "worker {w}");
            }
            sender.await.expect("sender");
            drop(tx);
            assert_eq!(rx.recv().await.expect("recv"), None);
            expect_success(child).await;
        }));
    }
    for run in runs {
        guard("worker run", run).await.expect("run");
    }
}

#[test]
fn inherited_explains_a_missing_malformed_or_foreign_end() {
    let me = std::process::id();
    let cases: [(Option<String>, &str); 5] = [
        (None, "was not set when this program started"),
        (Some("seven".into()), "is not `<descriptor>:<parent pid>`"),
        (Some("5:1".into()), "was set for the children of process 1"),
        (Some(format!("0:{me}")), "one of stdin, stdout and stderr"),
        (Some(format!("1000:{me}")), "descriptor 1000 is not open"),
    ];
    for (value, expected) in cases {
        let mut cmd = worker(WORKER, "serve");
        cmd.env_remove(aiosock::ENV_FD);
        if let Some(value) = &value {
            cmd.env(aiosock::ENV_FD, value);
        }
        let out = cmd.output().expect("run the worker");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{value:?}: {stderr}");
        assert!(stderr.contains(expected), "{value:?}: {stderr}");
    }
}

#[test]
fn a_child_started_before_adoption_inherits_neither_the_end_nor_the_variable() {
    // The `grandchild` worker runs a shell before it adopts its end; the shell lists its
    // descriptors and environment. The worker exits 0 only if neither shows the end.
    let (here, there) = aiosock::pair::<Request, Reply>().expect("pair");
    let rt = aiosock_tests::local_runtime();
    rt.block_on(async move {
        let mut child = aiosock::spawn(worker(WORKER, "grandchild"), there).expect("spawn");
        let (_tx, mut rx) = here.into_split();
        assert_eq!(
            guard("report", rx.recv()).await.expect("recv"),
            Some(Reply::StreamDone)
        );
        let status = guard("exit", child.wait()).await.expect("wait");
        assert!(status.success(), "the grandchild saw the end: {status}");
    });
}

#[test]
fn a_child_that_re_executes_itself_cannot_adopt_its_old_number_again() {
    // The `reexec` worker adopts its end (close-on-exec from before `main`), then
    // re-executes itself with `AIOSOCK_FD` naming the same number again. The new image must
    // refuse it: the number is closed (or names something this program opened itself).
    let (here, there) = aiosock::pair::<Request, Reply>().expect("pair");
    let rt = aiosock_tests::local_runtime();
    rt.block_on(async move {
        let child = aiosock::spawn(worker(WORKER, "reexec"), there).expect("spawn");
        let (_tx, mut rx) = here.into_split();
        // The end closed when the first image exec'd: nothing more comes.
        assert_eq!(guard("close", rx.recv()).await.expect("recv"), None);
        let mut child = child;
        let status = guard("exit", child.wait()).await.expect("wait");
        assert_eq!(status.code(), Some(EXIT_REFUSED), "{status}");
    });
}

#[test]
fn spawn_works_before_any_runtime_and_hands_over_the_childs_pipes() {
    // A plain test: no runtime exists while the worker is started and its output read.
    use std::io::Read;
    let (here, there) = aiosock::pair::<Request, Reply>().expect("pair");
    let mut cmd = worker(WORKER, "print-fds");
    cmd.stdout(std::process::Stdio::piped());
    let mut child = aiosock::spawn(cmd, there).expect("spawn outside a runtime");
    let mut out = String::new();
    child
        .take_stdout()
        .expect("the piped stdout")
        .read_to_string(&mut out)
        .expect("read the worker's stdout");
    assert!(child.take_stdout().is_none(), "taken once");
    // `print-fds` lists its descriptors: stdio and the inherited end, a socket.
    assert!(out.contains("socket:["), "{out}");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            started.elapsed() < aiosock_tests::HANG,
            "the worker did not exit"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert!(status.success(), "{status}");
    drop(here);
}
