//! Named Unix sockets: `Listener::bind` and `connect` by path or abstract name, the socket
//! file's mode, stale and live files, peer credentials and the accept policy, and the
//! errors, with worker processes connecting by name.
//!
//! Tests that need a peer of another user run a worker as uid 65534 (`nobody`); that needs
//! root, and without it they print why they skip that part.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aiosock::{AcceptPolicy, BindOptions, Error, Listener};
use aiosock_tests::guard;
use aiosock_tests::workers::{Reply, Request, worker};
use tokio::io::{AsyncBufReadExt as _, BufReader};

const WORKER: &str = env!("CARGO_BIN_EXE_worker");

/// The user the tests switch to for a peer of another user.
const NOBODY: u32 = 65534;

/// A fresh directory for one test's sockets, searchable by everyone (so that a worker
/// running as another user can reach a socket in it).
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("aiosock-named-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("make the test directory");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .expect("stat the socket file")
        .permissions()
        .mode()
        & 0o7777
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn euid() -> u32 {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("stat"))
}

fn egid() -> u32 {
    std::os::unix::fs::MetadataExt::gid(&std::fs::metadata("/proc/self").expect("stat"))
}

/// Runs the worker in `mode` with `arg` (as `uid` if given) and returns the line it
/// prints.
async fn worker_says(mode: &str, arg: &Path, uid: Option<u32>) -> String {
    let mut cmd = worker(WORKER, mode);
    cmd.arg(arg).stdout(Stdio::piped()).stderr(Stdio::inherit());
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    let out = guard(
        mode,
        tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run the worker");
    assert!(out.status.success(), "worker {mode}: {:?}", out.status);
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// One echo round trip over a server end.
async fn echo(server: aiosock::Endpoint<Request, Reply>, id: u64) {
    let (tx, mut rx) = server.into_split();
    let data = id.to_le_bytes().to_vec();
    tx.send(Request::Echo {
        id,
        data: data.clone(),
    })
    .await
    .expect("send");
    assert_eq!(
        guard("echo", rx.recv()).await.expect("recv"),
        Some(Reply::Echo { id, data })
    );
}

#[tokio::test]
async fn a_worker_connects_by_path_and_accept_reports_its_credentials() {
    let dir = temp_dir("creds");
    let path = dir.join("server.sock");
    let listener = Listener::<Request, Reply>::bind(&path).expect("bind");
    assert_eq!(listener.path(), Some(path.as_path()));

    let mut cmd = worker(WORKER, "connect");
    cmd.arg(&path);
    let mut child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let (server, peer) = guard("accept", listener.accept()).await.expect("accept");
    assert_eq!(peer.pid(), child.id().expect("pid"));
    assert_eq!(peer.uid(), euid());
    assert_eq!(peer.gid(), egid());
    echo(server, 7).await;
    // The server end was dropped: the worker's serve returns.
    let status = guard("worker exit", child.wait()).await.expect("wait");
    assert!(status.success(), "{status:?}");
    assert_eq!(listener.refused(), 0);

    drop(listener);
    assert!(!path.exists(), "the listener removes its socket file");
    std::fs::remove_dir(&dir).expect("nothing else is left in the directory");
}

#[tokio::test]
async fn bind_creates_the_file_with_mode_0600_or_the_mode_given() {
    let dir = temp_dir("mode");
    let path = dir.join("default.sock");
    let listener = Listener::<Request, Reply>::bind(&path).expect("bind");
    assert_eq!(mode_of(&path), 0o600);
    // The umask (022 here, typically) does not narrow a mode given.
    for mode in [0o666, 0o660, 0o640, 0o000] {
        let path = dir.join(format!("{mode:o}.sock"));
        let l = Listener::<Request, Reply>::bind_with(&path, BindOptions::new().set_mode(mode))
            .expect("bind_with");
        assert_eq!(mode_of(&path), mode, "mode {mode:o}");
        drop(l);
    }
    // It is a working socket, and nothing else was left in the directory.
    let client = aiosock::connect::<Reply, Request>(&path)
        .await
        .expect("connect");
    let (server, _) = guard("accept", listener.accept()).await.expect("accept");
    drop((client, server, listener));
    assert_eq!(std::fs::read_dir(&dir).expect("list").count(), 0);
    std::fs::remove_dir(&dir).expect("rmdir");
}

#[tokio::test]
async fn a_user_the_mode_leaves_out_gets_permission_denied() {
    let dir = temp_dir("denied");
    let path = dir.join("private.sock");
    let _listener = Listener::<Request, Reply>::bind(&path).expect("bind");
    if is_root() {
        // Root passes every permission check: ask a worker running as another user.
        assert_eq!(
            worker_says("probe", &path, Some(NOBODY)).await,
            "connect-error PermissionDenied"
        );
        // Nor may that user create a socket in a directory it cannot write.
        let taken = dir.join("theirs.sock");
        assert_eq!(
            worker_says("probe-bind", &taken, Some(NOBODY)).await,
            "bind-error PermissionDenied"
        );
        assert!(!taken.exists());
    } else {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).expect("chmod");
        let err = aiosock::connect::<Reply, Request>(&path)
            .await
            .expect_err("mode 0");
        assert!(
            matches!(&err, Error::PermissionDenied { address, .. } if address == &path.display().to_string()),
            "{err:?}"
        );
        let locked = dir.join("locked");
        std::fs::create_dir(&locked).expect("mkdir");
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).expect("chmod");
        let err = Listener::<Request, Reply>::bind(locked.join("s.sock")).expect_err("read-only");
        assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    }
    assert!(
        Error::PermissionDenied {
            address: "x".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied)
        }
        .to_string()
        .contains("permission denied for x")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced() {
    let dir = temp_dir("stale");
    let path = dir.join("server.sock");
    // A server that died leaves its file: std's listener does not remove it.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("std bind"));
    assert!(path.exists());
    let err = aiosock::connect::<Reply, Request>(&path)
        .await
        .expect_err("stale");
    assert!(matches!(err, Error::NotListening { .. }), "{err:?}");

    let listener = Listener::<Request, Reply>::bind(&path).expect("replaces the stale file");
    assert_eq!(mode_of(&path), 0o600);
    let mut cmd = worker(WORKER, "connect");
    cmd.arg(&path);
    let mut child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let (server, _) = guard("accept", listener.accept()).await.expect("accept");
    echo(server, 1).await;
    assert!(guard("exit", child.wait()).await.expect("wait").success());

    drop(listener);
    assert!(!path.exists());

    // A server process killed with SIGKILL leaves its file; the next bind takes it.
    let mut cmd = worker(WORKER, "listen");
    cmd.arg(&path).stdout(Stdio::piped());
    let mut server = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let line = guard("listening", lines.next_line()).await.expect("read");
    assert_eq!(line.as_deref(), Some("listening"));
    // While it lives, its path is refused.
    let err = Listener::<Request, Reply>::bind(&path).expect_err("live");
    assert!(matches!(err, Error::AddressInUse { .. }), "{err:?}");
    server.start_kill().expect("kill");
    guard("killed", server.wait()).await.expect("wait");
    assert!(path.exists(), "a killed server leaves its file");
    let listener = Listener::<Request, Reply>::bind(&path).expect("replaces it");
    let client = aiosock::connect::<Reply, Request>(&path)
        .await
        .expect("connect");
    let (server, peer) = guard("accept", listener.accept()).await.expect("accept");
    assert_eq!(peer.pid(), std::process::id());
    drop((client, server, listener));
    std::fs::remove_dir(&dir).expect("nothing is left");
}

#[tokio::test]
async fn a_live_servers_path_is_refused_and_left_alone() {
    let dir = temp_dir("live");
    let path = dir.join("server.sock");
    let listener = Listener::<Request, Reply>::bind(&path).expect("bind");
    let err = Listener::<Request, Reply>::bind(&path).expect_err("live");
    assert!(
        matches!(&err, Error::AddressInUse { address } if address == &path.display().to_string()),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("a server is already listening at {}", path.display())
    );
    // The probe was an ordinary connection: the first listener accepts it, closed at once.
    let (probe, _) = guard("accept the probe", listener.accept())
        .await
        .expect("accept");
    let (_tx, mut rx) = probe.into_split();
    assert_eq!(guard("probe closes", rx.recv()).await.expect("recv"), None);
    // The first listener still works, from another process.
    let mut cmd = worker(WORKER, "connect");
    cmd.arg(&path);
    let mut child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let (server, _) = guard("accept", listener.accept()).await.expect("accept");
    echo(server, 2).await;
    assert!(guard("exit", child.wait()).await.expect("wait").success());

    // A live server that is not aiosock's is refused the same way.
    let other = dir.join("other.sock");
    let _std = std::os::unix::net::UnixListener::bind(&other).expect("std bind");
    let err = Listener::<Request, Reply>::bind(&other).expect_err("live");
    assert!(matches!(err, Error::AddressInUse { .. }), "{err:?}");
    assert!(other.exists());
    // The failed binds left no private directory behind.
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["other.sock", "server.sock"]);
    drop(listener);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn anything_but_a_socket_at_the_path_is_left_alone() {
    let dir = temp_dir("file");
    let path = dir.join("notes.txt");
    std::fs::write(&path, b"keep me").expect("write");
    let err = Listener::<Request, Reply>::bind(&path).expect_err("a regular file");
    assert!(matches!(err, Error::NotASocket { .. }), "{err:?}");
    assert!(err.to_string().contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read(&path).expect("read"), b"keep me");

    std::fs::create_dir(dir.join("sub")).expect("mkdir");
    let err = Listener::<Request, Reply>::bind(dir.join("sub")).expect_err("a directory");
    assert!(matches!(err, Error::NotASocket { .. }), "{err:?}");

    // A symbolic link, even to a stale socket, is not followed or removed.
    let stale = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("std bind"));
    let link = dir.join("link.sock");
    std::os::unix::fs::symlink(&stale, &link).expect("symlink");
    let err = Listener::<Request, Reply>::bind(&link).expect_err("a symlink");
    assert!(matches!(err, Error::NotASocket { .. }), "{err:?}");
    assert!(std::fs::symlink_metadata(&link).is_ok() && stale.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn abstract_names_connect_by_name_and_are_refused_when_taken() {
    let name = format!("aiosock-test-{}", std::process::id());
    let listener = Listener::<Request, Reply>::bind_abstract(&name).expect("bind");
    assert_eq!(listener.abstract_name(), Some(name.as_bytes()));
    let err = Listener::<Request, Reply>::bind_abstract(&name).expect_err("taken");
    assert!(
        matches!(&err, Error::AddressInUse { address } if address == &format!("@{name}")),
        "{err:?}"
    );

    let mut cmd = worker(WORKER, "connect-abstract");
    cmd.arg(&name);
    let mut child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let (server, peer) = guard("accept", listener.accept()).await.expect("accept");
    assert_eq!(peer.pid(), child.id().expect("pid"));
    echo(server, 3).await;
    assert!(guard("exit", child.wait()).await.expect("wait").success());

    drop(listener);
    // The name is free as soon as the socket closes: no stale state.
    let err = aiosock::connect_abstract::<Reply, Request>(&name)
        .await
        .expect_err("gone");
    assert!(matches!(err, Error::NotListening { .. }), "{err:?}");
    let _again = Listener::<Request, Reply>::bind_abstract(&name).expect("free again");
}

#[tokio::test]
async fn the_default_policy_refuses_another_user() {
    if !is_root() {
        eprintln!(
            "skipped: running a peer as another user needs root (the policy itself is \
             tested with a custom rule below)"
        );
        return;
    }
    let dir = temp_dir("policy");
    let path = dir.join("open.sock");
    // Mode 0666: the file lets anyone connect, so the policy is what refuses.
    let listener = Arc::new(
        Listener::<Request, Reply>::bind_with(&path, BindOptions::new().set_mode(0o666))
            .expect("bind"),
    );
    let accepting = tokio::spawn({
        let listener = listener.clone();
        async move { listener.accept().await }
    });
    assert_eq!(worker_says("probe", &path, Some(NOBODY)).await, "closed");
    assert_eq!(listener.refused(), 1);
    assert!(
        !accepting.is_finished(),
        "the refused peer is never returned"
    );

    // The same user is admitted, by the accept that skipped the refused peer.
    let client = aiosock::connect::<Reply, Request>(&path)
        .await
        .expect("connect");
    let (server, peer) = guard("accept", accepting)
        .await
        .expect("task")
        .expect("accept");
    assert_eq!(peer.uid(), 0);
    drop((client, server));

    // A policy listing the other user admits it.
    let listener = Arc::into_inner(listener)
        .expect("sole owner")
        .with_policy(AcceptPolicy::uids([NOBODY]));
    let accepting = tokio::spawn(async move {
        let got = listener.accept().await;
        (listener, got)
    });
    let mut cmd = worker(WORKER, "connect");
    cmd.arg(&path).uid(NOBODY).gid(NOBODY);
    let mut child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let (listener, got) = guard("accept", accepting).await.expect("task");
    let (server, peer) = got.expect("accept");
    assert_eq!((peer.uid(), peer.gid()), (NOBODY, NOBODY));
    assert_eq!(peer.pid(), child.id().expect("pid"));
    echo(server, 4).await;
    assert!(guard("exit", child.wait()).await.expect("wait").success());
    drop(listener);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_refused_peer_is_closed_before_any_hello_and_accept_goes_on() {
    let dir = temp_dir("custom");
    let path = dir.join("server.sock");
    // Admits only this process, and only once `open` is set.
    let open = Arc::new(AtomicBool::new(false));
    let me = std::process::id();
    let listener = Arc::new(
        Listener::<Request, Reply>::bind(&path)
            .expect("bind")
            .with_policy(AcceptPolicy::custom({
                let open = open.clone();
                move |peer| peer.pid() == me && open.load(Ordering::SeqCst)
            })),
    );
    let accepting = tokio::spawn({
        let listener = listener.clone();
        async move { listener.accept().await }
    });

    // A raw client reads nothing at all, not even a hello: the end of the stream.
    let raw = std::os::unix::net::UnixStream::connect(&path).expect("raw connect");
    let got = tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let mut raw = raw;
        let mut buf = Vec::new();
        raw.read_to_end(&mut buf).map(|_| buf)
    });
    assert_eq!(
        guard("raw read", got).await.expect("task").expect("read"),
        b""
    );
    assert_eq!(listener.refused(), 1);

    // A worker process, refused, sees its connection close.
    let mut cmd = worker(WORKER, "probe");
    cmd.arg(&path).stdout(Stdio::piped());
    let child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let out = guard("probe", child.wait_with_output())
        .await
        .expect("wait");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "closed");
    assert_eq!(listener.refused(), 2);

    // Others are admitted by the same accept call.
    open.store(true, Ordering::SeqCst);
    let client = aiosock::connect::<Reply, Request>(&path)
        .await
        .expect("connect");
    let (server, peer) = guard("accept", accepting)
        .await
        .expect("task")
        .expect("accept");
    assert_eq!(peer.pid(), std::process::id());
    drop((client, server));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn errors_say_what_went_wrong() {
    let dir = temp_dir("errors");
    // Path too long for sun_path (107 bytes and a NUL).
    let long = dir.join("x".repeat(120));
    let err = Listener::<Request, Reply>::bind(&long).expect_err("too long");
    let len = long.as_os_str().len();
    assert!(
        matches!(err, Error::PathTooLong { len: l, max: 107 } if l == len),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("the socket address is {len} bytes, over the maximum of 107 that fits in sun_path")
    );
    let err = aiosock::connect::<Reply, Request>(&long)
        .await
        .expect_err("too long");
    assert!(matches!(err, Error::PathTooLong { .. }), "{err:?}");
    let err = Listener::<Request, Reply>::bind_abstract([b'a'; 108]).expect_err("too long");
    assert!(
        matches!(err, Error::PathTooLong { len: 108, max: 107 }),
        "{err:?}"
    );
    let err = aiosock::connect_abstract::<Reply, Request>([b'a'; 108])
        .await
        .expect_err("too long");
    assert!(matches!(err, Error::PathTooLong { .. }), "{err:?}");
    // Exactly 107 bytes fits.
    let base = dir.as_os_str().len() + 1;
    let fits = dir.join("y".repeat(107 - base));
    assert_eq!(fits.as_os_str().len(), 107);
    drop(Listener::<Request, Reply>::bind(&fits).expect("107 bytes fit"));

    // Nothing listening: no file at all, from this process and from a worker.
    let missing = dir.join("missing.sock");
    let err = aiosock::connect::<Reply, Request>(&missing)
        .await
        .expect_err("missing");
    assert!(
        matches!(&err, Error::NotListening { address } if address == &missing.display().to_string()),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("nothing is listening at {}", missing.display())
    );
    assert_eq!(
        worker_says("probe", &missing, None).await,
        "connect-error NotListening"
    );
    // A directory that does not exist is an I/O error from bind.
    let err = Listener::<Request, Reply>::bind(dir.join("no/such/dir.sock")).expect_err("no dir");
    assert!(
        matches!(&err, Error::Io(e) if e.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A flood of peers the policy refuses, all waiting in the backlog: each poll of `accept`
/// refuses about a cooperative budget's worth of them (tokio's is 128 units; the bound
/// below leaves room for it to change) and then lets the runtime's other tasks run,
/// instead of refusing the whole flood in one go.
#[tokio::test(flavor = "current_thread")]
async fn refusing_a_flood_of_peers_leaves_the_runtime_to_its_other_tasks() {
    use std::os::linux::net::SocketAddrExt as _;
    const FLOOD: u64 = 2_000;
    let name = format!("aiosock-test-flood-{}", std::process::id());
    let listener = Listener::<Request, Reply>::bind_abstract(&name)
        .expect("bind")
        .with_policy(AcceptPolicy::custom(|_| false));
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    // All in the backlog before `accept` first runs.
    let held: Vec<_> = (0..FLOOD)
        .map(|_| std::os::unix::net::UnixStream::connect_addr(&addr).expect("connect"))
        .collect();
    let mut accept = std::pin::pin!(listener.accept());
    let mut most = 0;
    let mut polls = 0;
    while listener.refused() < FLOOD {
        let before = listener.refused();
        let polled =
            std::future::poll_fn(|cx| std::task::Poll::Ready(accept.as_mut().poll(cx))).await;
        assert!(polled.is_pending(), "every peer is refused");
        most = most.max(listener.refused() - before);
        polls += 1;
        assert!(
            polls < 10_000,
            "{} refused after {polls} polls",
            listener.refused()
        );
        tokio::task::yield_now().await;
    }
    assert!(
        most <= 256,
        "one poll of accept refused {most} peers without letting other tasks run"
    );
    drop(held);
}
