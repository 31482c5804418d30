//! The worker process the process tests spawn. The first argument picks what it does:
//!
//! - `serve`: answers requests with the generated handler trait (see `Request`);
//! - `fds`: like `serve`, and `ListFds` reports the descriptors it had at start;
//! - `print-fds`: prints its descriptors at start to stdout, one `fd target` per line,
//!   and exits (run with a plain `Command`, no aiosock end);
//! - `mismatch`: speaks another protocol; exits with `EXIT_MISMATCH` if its first receive
//!   fails with `ProtocolMismatch`;
//! - `block`: waits in `recv` until the parent closes, then exits 0;
//! - `middle`: spawns a `block` worker, prints its pid, then waits to be killed;
//! - `middle-pdeathsig`: spawns a `sleep` worker that should die with it (`die_with_parent`),
//!   prints its pid, then waits to be killed;
//! - `sleep`: adopts its end and sleeps, never reading it;
//! - `fork`: checks that `aiosock::fork` refuses inside a runtime and works from this
//!   single-threaded process outside one; exits 0 if both hold;
//! - `plain-fork`: forks by other means (not `aiosock::fork`) with an end whose hello is
//!   still queued; the child exits at once through `exit`; then the parent sends
//!   `Item(1)`, which must arrive;
//! - `emfile`: uses up every descriptor it may open, then sends `emfile_reply(0..BURST)` to
//!   a parent that reads slowly (so the socket fills again and again), and exits;
//! - `grandchild`: runs a shell before adopting its end, and fails if the shell inherited
//!   the end or saw `AIOSOCK_FD`; else sends `StreamDone`;
//! - `reexec`: adopts its end, then re-executes itself as `reexec-adopt` with
//!   `AIOSOCK_FD` naming the same number, which must be refused (exit `EXIT_REFUSED`);
//! - `calls`: answers `Ask` calls with `serve` (one at a time), calling the parent back
//!   for `AskBack`; a panic in a handler ends the process (exit code 101);
//! - `calls-concurrent`: the same with `serve_concurrent` (up to 2,000 at once), on a
//!   multi-thread runtime; panics are contained;
//! - `connect <path>` / `connect-abstract <name>`: connects to a `Listener<Request, Reply>`
//!   by name (`aiosock::connect`) and serves it like `serve`;
//! - `connect-tcp <addr>`: the same over plaintext TCP (`connect_plaintext_tcp`);
//! - `connect-tls <addr> <ca.der>` (feature `tls`): the same over TLS to `localhost` at
//!   `addr`, trusting the CA certificate in the DER file `ca.der`;
//! - `probe <path>`: connects by path and prints one line: `connect-error <Variant>` if
//!   connecting failed, else, after its first receive, `closed` (the server closed without
//!   a hello: `Ok(None)` or a reset) or `message`;
//! - `listen <path>`: binds a `Listener<Reply, Request>` at `path`, prints `listening`,
//!   and echoes for every client until killed;
//! - `probe-bind <path>`: binds a `Listener` at `path` and prints `bound`, or
//!   `bind-error <Variant>`;
//! - `resources`: serves `Resources` (descriptors, channel ends, shared memory), sending
//!   echoed descriptors back as `Returned`;
//! - `fork-pool`: from this single-threaded process, makes a `ForkServer` whose workers
//!   serve `Ask` (as `calls`), then a multi-thread runtime and a `Pool::fork` of 2 on it;
//!   checks that calls are answered by both workers, that the workers are this process's
//!   children, that a worker killed with `kill -9` is restarted (again a child), and that
//!   shutdown ends the workers and dropping the pool the server; prints `fork-pool ok`;
//! - `fork-pool-hold`: makes the same pool, prints `pids <server> <worker> <worker>`, and
//!   waits to be killed;
//! - `fork-server`: makes a `ForkServer` serving `Ask`, sets a flag its workers must not
//!   see (they are copies of the process as it was), starts a worker inside a runtime,
//!   calls it, closes it and checks its exit status; then kills the server and
//!   checks that the next start fails with `Error::ForkServer`; prints `fork-server ok`;
//! - `fork-resources`: from this single-threaded process, forks a child (`aiosock::fork`)
//!   that serves `Resources`, hands it a file the parent opened, and exits 0 if the child
//!   read it back;
//! - `fds-rlimit`: receives one `Resources::Many`, then lowers its descriptor limit so that
//!   the next message's descriptors cannot all be installed; prints `truncated closed` if
//!   that receive fails with `FdError::Truncated` and leaves no descriptor open;
//! - `fds-unprivileged <n>`: lowers its descriptor limit to [`UNPRIVILEGED_NOFILE`] and,
//!   if it runs as root, becomes user and group 65534 (without root's exemption, the
//!   kernel refuses descriptors with `ETOOMANYREFS` once the user has more than its limit
//!   in flight), then sends `Returned::Echo { tag: i, fd }` for `i` in `0..n` (`fd` a new
//!   `/dev/null`) without waiting, and exits; prints `unprivileged` when it dropped root;
//! - `evolve <v1|v2|unmarked>`: serves version 1 or 2 of `Evolving` (or the broken
//!   version whose appended variant is not `#[added]`), reporting each ping back as
//!   `Report::Pinged`; version 2 also tries `Report::Noted`, and when the parent closes
//!   prints `noted N refused M` (how many the parent's version knew, and how many `send`
//!   refused as unknown to it);
//! - `connections <path> <n>`: raises its descriptor limit, opens `n` connections to the
//!   `Listener<Reply, Request>` at `path`, sends `Request::Count(i)` on connection `i`,
//!   waits until every one has its answer (`Reply::Counted`), then exits;
//! - `fd-limit`: lowers its descriptor limit, makes pairs until one fails, and prints
//!   `out-of-descriptors <message>` if the failure is `Error::OutOfDescriptors`;
//! - `burst <ending> <flavor>`: sends `Reply::Item(0..BURST)` without waiting for anything,
//!   then ends its runtime (`current` or `multi` thread) the way `<ending>` says (see
//!   [`aiosock_tests::workers::ENDINGS`]); every accepted message must still arrive;
//! - `burst-tcp <ending> <flavor> <addr>`: the same over plaintext TCP to the
//!   `TcpListener<Request, Reply>` at `addr` (any ending but `fork`).

use std::error::Error;
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aiosock_tests::workers::{
    AskHandler, BURST, Back, BackClient, Chat, EXIT_MISMATCH, EXIT_REFUSED, PARENT_SEED,
    RACING_SIZE, Reply, Request, RequestHandler, Resources, ResourcesClient, ResourcesHandler,
    Returned, Stranger, burst_reply, checksum, emfile_reply, open_fds, peak_rss_kib, soak_data,
};

type BoxError = Box<dyn Error + Send + Sync>;

fn main() {
    let fds_at_start = open_fds();
    let mode = std::env::args().nth(1).unwrap_or_default();
    let result = match mode.as_str() {
        "serve" | "fds" => serve(fds_at_start),
        "print-fds" => {
            for (fd, target) in fds_at_start {
                println!("{fd} {target}");
            }
            Ok(())
        }
        "mismatch" => mismatch(),
        "block" => block(),
        "middle" => middle(),
        "middle-pdeathsig" => middle_pdeathsig(),
        "sleep" => sleep(),
        "fork" => fork_check(),
        "fork-pool" => fork_pool(false),
        "fork-pool-hold" => fork_pool(true),
        "fork-server" => fork_server(),
        "grandchild" => grandchild(),
        "emfile" => emfile(),
        "plain-fork" => plain_fork(),
        "reexec" => reexec(),
        "reexec-adopt" => reexec_adopt(),
        "resources" => resources(),
        "evolve" => evolve(&std::env::args().nth(2).unwrap_or_default()),
        "connections" => connections(
            &std::env::args().nth(2).unwrap_or_default(),
            std::env::args()
                .nth(3)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        ),
        "fd-limit" => fd_limit(),
        "fork-resources" => fork_resources(),
        "fds-rlimit" => fds_rlimit(),
        "fds-unprivileged" => fds_unprivileged(
            std::env::args()
                .nth(2)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        ),
        "calls" => calls(false),
        "calls-concurrent" => calls(true),
        "calls-forked-copy" => calls_with_a_forked_copy(),
        "connect" | "connect-abstract" | "connect-tcp" | "connect-tls" | "probe" | "probe-bind"
        | "listen" => named(&mode, &std::env::args().nth(2).unwrap_or_default()),
        "burst" => burst(
            &std::env::args().nth(2).unwrap_or_default(),
            &std::env::args().nth(3).unwrap_or_default(),
        ),
        "exit-racing" => exit_racing(std::env::args().nth(2).as_deref() == Some("late")),
        "burst-tcp" => burst_tcp(
            &std::env::args().nth(2).unwrap_or_default(),
            &std::env::args().nth(3).unwrap_or_default(),
            &std::env::args().nth(4).unwrap_or_default(),
        ),
        other => Err(format!("unknown worker mode {other:?}").into()),
    };
    if let Err(e) = result {
        eprintln!("worker {mode}: {e}");
        std::process::exit(1);
    }
}

/// Answers `Ask` calls.
#[derive(Clone)]
struct Answerer {
    back: BackClient,
    notes: Arc<AtomicU64>,
}

impl AskHandler for Answerer {
    async fn on_square(&mut self, n: u64) -> u64 {
        n * n
    }

    async fn on_slow_square(&mut self, n: u64, millis: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        n * n
    }

    async fn on_hold(&mut self) -> u64 {
        std::future::pending().await
    }

    async fn on_panic(&mut self, message: String) -> u64 {
        panic!("{message}")
    }

    async fn on_ask_back(&mut self, n: u64) -> u64 {
        match self.back.double(n).await {
            Ok(doubled) => doubled + 1,
            Err(e) => panic!("calling the parent back failed: {e}"),
        }
    }

    async fn on_checked(&mut self, n: u64) -> Result<u64, String> {
        if n.is_multiple_of(2) {
            Ok(n)
        } else {
            Err(format!("{n} is odd"))
        }
    }

    async fn on_note(&mut self, n: u64) {
        self.notes.fetch_add(n, Ordering::Relaxed);
    }

    async fn on_notes(&mut self) -> u64 {
        self.notes.load(Ordering::Relaxed)
    }

    async fn on_panic_one_way(&mut self, message: String) {
        panic!("{message}")
    }

    async fn on_pid(&mut self) -> u32 {
        std::process::id()
    }
}

/// The closure of the fork servers' workers: serve `Ask` as a `calls` worker does.
async fn answer(
    end: aiosock::Endpoint<Back, aiosock_tests::workers::Ask>,
) -> Result<(), aiosock::Error> {
    let (tx, rx) = end.into_split();
    let answerer = Answerer {
        back: BackClient::new(tx),
        notes: Arc::default(),
    };
    rx.serve(answerer).await.map(drop)
}

/// The parent of process `pid`, from `/proc/<pid>/stat`.
fn parent_of(pid: u32) -> Result<u32, BoxError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ppid = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .ok_or("malformed stat")?;
    Ok(ppid.parse()?)
}

fn kill_9(pid: u32) -> Result<(), BoxError> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    Ok(())
}

/// Waits (up to 10 s) until `done` holds.
async fn eventually(what: &str, done: impl Fn() -> bool) -> Result<(), BoxError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn fork_pool(hold: bool) -> Result<(), BoxError> {
    use aiosock_tests::workers::{AskClient, Doubler, process_gone};
    let me = std::process::id();
    let server = aiosock::ForkServer::new(answer)?;
    let server_pid = server.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let pool = aiosock::Pool::<AskClient>::fork::<Back, _>(2, server, Doubler)?;
        let pids = || -> Vec<Option<u32>> { pool.workers().iter().map(|w| w.pid).collect() };
        let first: Vec<u32> = pids().into_iter().flatten().collect();
        if hold {
            println!("pids {server_pid} {} {}", first[0], first[1]);
            std::future::pending::<()>().await;
        }
        let mut served_by = std::collections::HashSet::new();
        for n in 0..200u64 {
            // Two calls at once go to the two workers (the least loaded each time).
            let (sq, a, b) = tokio::join!(
                pool.call(async |ask| ask.square(n).await),
                pool.call(async |ask| ask.pid().await),
                pool.call(async |ask| ask.pid().await)
            );
            if sq? != n * n {
                return Err("a wrong square".into());
            }
            served_by.insert(a?);
            served_by.insert(b?);
        }
        let mut expected: Vec<u32> = first.clone();
        let mut seen: Vec<u32> = served_by.into_iter().collect();
        expected.sort_unstable();
        seen.sort_unstable();
        if seen != expected || seen.contains(&me) || seen.contains(&server_pid) {
            return Err(format!(
                "served by {seen:?}, workers {expected:?}, me {me}, server {server_pid}"
            )
            .into());
        }
        for &pid in &first {
            let parent = parent_of(pid)?;
            if parent != me {
                return Err(format!("worker {pid}'s parent is {parent}, not {me}").into());
            }
        }
        // A worker calls back into this process while it answers.
        if pool.call(async |ask| ask.ask_back(5).await).await? != 11 {
            return Err("a wrong call back".into());
        }
        kill_9(first[0])?;
        eventually("the restart", || {
            pool.workers()[0].restarts == 1 && pool.workers()[0].up && pids()[0] != Some(first[0])
        })
        .await?;
        let restarted = pids()[0].ok_or("no pid")?;
        if parent_of(restarted)? != me {
            return Err("the restarted worker is not this process's child".into());
        }
        eventually("the killed worker reaped", || process_gone(first[0])).await?;
        for n in 0..100u64 {
            if pool.call(async |ask| ask.square(n).await).await? != n * n {
                return Err("a wrong square after the restart".into());
            }
        }
        pool.shutdown(Duration::from_secs(5)).await;
        let last = [restarted, first[1]];
        eventually("the workers' exit", || {
            last.iter().all(|&pid| process_gone(pid))
        })
        .await?;
        drop(pool);
        eventually("the server's exit", || process_gone(server_pid)).await?;
        println!("fork-pool ok");
        Ok(())
    })
}

/// Set by `fork-server` once its server exists: its workers, copies of the process as it
/// was when the server was made, must not see it.
static SET_AFTER_THE_SERVER: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

fn fork_server() -> Result<(), BoxError> {
    use aiosock_tests::workers::{Ask, AskClient};
    let server = aiosock::ForkServer::new(async |end| {
        if SET_AFTER_THE_SERVER.load(Ordering::Relaxed) {
            return Err(aiosock::Error::Io(std::io::Error::other(
                "the worker sees state made after its server",
            )));
        }
        answer(end).await
    })?;
    SET_AFTER_THE_SERVER.store(true, Ordering::Relaxed);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (here, there) = aiosock::pair::<Ask, Back>()?;
        let mut child = server.start(there)?;
        let (tx, rx) = here.into_split();
        let serving = tokio::spawn(rx.serve(aiosock_tests::workers::Doubler));
        let ask = AskClient::new(tx);
        if ask.square(9).await? != 81 || ask.pid().await? != child.id() {
            return Err("a wrong answer from the forked worker".into());
        }
        drop(ask);
        let status = child.wait().await?;
        if !status.success() {
            return Err(format!("the forked worker exited with {status}").into());
        }
        serving.await??;
        kill_9(server.id())?;
        let server_pid = server.id();
        eventually("the server's death", || {
            aiosock_tests::workers::process_gone(server_pid)
        })
        .await?;
        let (_here, there) = aiosock::pair::<Ask, Back>()?;
        match server.start(there) {
            Err(aiosock::Error::ForkServer { reason }) => println!("refused: {reason}"),
            other => return Err(format!("a start after the server's death gave {other:?}").into()),
        }
        println!("fork-server ok");
        Ok(())
    })
}

/// `calls-concurrent`, after a plain fork whose child keeps a copy of the connection open
/// for 10 s and does nothing: the worker's death does not end its connection.
fn calls_with_a_forked_copy() -> Result<(), BoxError> {
    if aiosock::__private::fork_plain()?.is_none() {
        std::thread::sleep(Duration::from_secs(10));
        std::process::exit(0);
    }
    calls(true)
}

fn calls(concurrent: bool) -> Result<(), BoxError> {
    let end = aiosock::inherited::<Back, aiosock_tests::workers::Ask>()?;
    let rt = if concurrent {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
    } else {
        runtime()?
    };
    rt.block_on(async move {
        let (tx, rx) = end.into_split();
        let answerer = Answerer {
            back: BackClient::new(tx),
            notes: Arc::default(),
        };
        if concurrent {
            rx.serve_concurrent(answerer, 2000).await?;
        } else {
            rx.serve(answerer).await?;
        }
        Ok(())
    })
}

/// Serves `Resources`.
struct Keeper {
    back: aiosock::Sender<Returned>,
    takes: u64,
    sum: u64,
}

impl Keeper {
    fn new(back: aiosock::Sender<Returned>) -> Keeper {
        Keeper {
            back,
            takes: 0,
            sum: 0,
        }
    }
}

impl ResourcesHandler for Keeper {
    async fn on_read_file(&mut self, file: aiosock::Fd) -> Result<String, String> {
        use std::io::Read as _;
        let mut text = String::new();
        std::fs::File::from(file)
            .read_to_string(&mut text)
            .map_err(|e| e.to_string())?;
        Ok(text)
    }

    async fn on_echo(&mut self, tag: u64, fd: aiosock::Fd, _pad: Vec<u8>) {
        if let Err(e) = self.back.send(Returned::Echo { tag, fd }).await {
            panic!("sending an echo back failed: {e}");
        }
    }

    async fn on_many(&mut self, _fds: Vec<aiosock::Fd>) {}

    async fn on_sum(&mut self, shm: aiosock::Shm) -> (u64, u64) {
        (shm.len() as u64, checksum(&shm))
    }

    async fn on_take(&mut self, shm: aiosock::Shm) {
        self.takes += 1;
        self.sum = self.sum.wrapping_add(checksum(&shm));
    }

    async fn on_taken(&mut self) -> (u64, u64) {
        (self.takes, self.sum)
    }

    async fn on_join(
        &mut self,
        end: aiosock::Endpoint<Chat, Chat>,
        speak: bool,
        lines: u64,
    ) -> Result<u64, String> {
        let (tx, mut rx) = end.into_split();
        if speak {
            for n in 0..lines {
                tx.send(Chat::Line(n)).await.map_err(|e| e.to_string())?;
            }
            tx.flush().await.map_err(|e| e.to_string())?;
            return Ok(lines);
        }
        drop(tx);
        let mut count = 0;
        while let Some(Chat::Line(n)) = rx.recv().await.map_err(|e| e.to_string())? {
            if n != count {
                return Err(format!("line {n} came where {count} was due"));
            }
            count += 1;
        }
        Ok(count)
    }

    async fn on_results(&mut self, n: u64) -> aiosock::Endpoint<Chat, Chat> {
        let (mine, theirs) = aiosock::pair::<Chat, Chat>().expect("pair");
        tokio::spawn(async move {
            let (tx, _rx) = mine.into_split();
            for i in 0..n {
                if tx.send(Chat::Line(i)).await.is_err() {
                    break;
                }
            }
        });
        theirs
    }

    async fn on_open_fds(&mut self) -> usize {
        // Descriptors of echoes still queued are this end's until the kernel has them.
        let _ = self.back.flush().await;
        open_fds().len()
    }
}

fn resources() -> Result<(), BoxError> {
    let end = aiosock::inherited::<Returned, Resources>()?;
    runtime()?.block_on(async move {
        let (tx, rx) = end.into_split();
        rx.serve(Keeper::new(tx)).await?;
        Ok(())
    })
}

fn fork_resources() -> Result<(), BoxError> {
    use std::io::{Seek as _, Write as _};
    let (here, there) = aiosock::pair::<Resources, Returned>()?;
    let mut child = aiosock::fork(there, |end| async move {
        let (tx, rx) = end.into_split();
        rx.serve(Keeper::new(tx)).await.map(drop)
    })?;
    let path = std::env::temp_dir().join(format!("aiosock-fork-fd-{}", std::process::id()));
    let mut file = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    file.write_all(b"opened before the fork's child asked")?;
    file.rewind()?;
    runtime()?.block_on(async move {
        let (tx, rx) = here.into_split();
        let serving = tokio::spawn(rx.serve(()));
        let client = ResourcesClient::new(tx);
        let read =
            tokio::time::timeout(Duration::from_secs(30), client.read_file(file.into())).await??;
        if read.as_deref() != Ok("opened before the fork's child asked") {
            return Err(format!("the forked child read {read:?}").into());
        }
        drop(client);
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
        if !status.success() {
            return Err(format!("forked child exited with {status}").into());
        }
        serving.abort();
        println!("forked child read the file");
        Ok(())
    })
}

fn fds_rlimit() -> Result<(), BoxError> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let end = aiosock::inherited::<Returned, Resources>()?;
    runtime()?.block_on(async move {
        let (_tx, mut rx) = end.into_split();
        match rx.recv().await? {
            Some(Resources::Many(fds)) => drop(fds),
            other => return Err(format!("expected Many first, got {other:?}").into()),
        }
        let before = open_fds().len();
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
        // Room for one more descriptor at most (fewer where numbers are taken above it).
        let tight = u64::try_from(before)? + 1;
        setrlimit(Resource::RLIMIT_NOFILE, tight, hard)?;
        let got = rx.recv().await;
        setrlimit(Resource::RLIMIT_NOFILE, soft, hard)?;
        match got {
            Err(aiosock::Error::Fds(aiosock::FdError::Truncated)) => {}
            other => return Err(format!("expected a truncation, got {other:?}").into()),
        }
        let after = open_fds().len();
        if after != before {
            return Err(
                format!("{after} descriptors open after the error, {before} before").into(),
            );
        }
        println!("truncated closed");
        Ok(())
    })
}

/// The descriptor limit of the `fds-unprivileged` worker.
const UNPRIVILEGED_NOFILE: u64 = 512;

fn fds_unprivileged(n: u64) -> Result<(), BoxError> {
    use nix::sys::resource::{Resource, setrlimit};
    use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
    let end = aiosock::inherited::<Returned, Resources>()?;
    setrlimit(
        Resource::RLIMIT_NOFILE,
        UNPRIVILEGED_NOFILE,
        UNPRIVILEGED_NOFILE,
    )?;
    if Uid::effective().is_root() {
        setgroups(&[])?;
        setgid(Gid::from_raw(65534))?;
        setuid(Uid::from_raw(65534))?;
        println!("unprivileged");
    }
    // The queue's own bound on descriptors stays well under the process's limit.
    let mut config = aiosock::Config::new();
    config.set_max_fds(192);
    let end = end.with_config(config);
    runtime()?.block_on(async move {
        let (tx, _rx) = end.into_split();
        for tag in 0..n {
            let fd = aiosock::Fd::from(std::fs::File::open("/dev/null")?);
            tx.send(Returned::Echo { tag, fd }).await?;
        }
        // Whatever the kernel has not taken yet is written out at exit.
        Ok(())
    })
}

fn connections(path: &str, n: u64) -> Result<(), BoxError> {
    aiosock::raise_fd_limit()?;
    runtime()?.block_on(async move {
        let mut ends = Vec::new();
        for i in 0..n {
            let end = aiosock::connect::<Request, Reply>(path).await?;
            let (tx, rx) = end.into_split();
            tx.send(Request::Count(i)).await?;
            ends.push((tx, rx));
        }
        // Each connection's server end answers once this side closes it.
        for (tx, mut rx) in ends {
            drop(tx);
            match rx.recv().await? {
                Some(Reply::Counted(1)) => {}
                other => return Err(format!("expected Counted(1), got {other:?}").into()),
            }
        }
        Ok(())
    })
}

fn fd_limit() -> Result<(), BoxError> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let open = u64::try_from(open_fds().len())?;
    setrlimit(Resource::RLIMIT_NOFILE, open + 10, hard)?;
    let mut pairs = Vec::new();
    loop {
        match aiosock::pair::<Request, Reply>() {
            Ok(pair) => pairs.push(pair),
            Err(e @ aiosock::Error::OutOfDescriptors(_)) => {
                println!("out-of-descriptors {e} ({} pairs made)", pairs.len());
                return Ok(());
            }
            Err(e) => return Err(format!("expected OutOfDescriptors, got {e:?}").into()),
        }
        if pairs.len() > 100 {
            return Err("the limit never came".into());
        }
    }
}

mod evolving {
    use aiosock_tests::workers::{evolve_unmarked, evolve_v1, evolve_v2};

    /// Serves version 1.
    pub(super) struct V1 {
        pub(super) out: aiosock::Sender<evolve_v1::Report>,
        pub(super) sum: u64,
    }

    impl evolve_v1::EvolvingHandler for V1 {
        async fn on_ping(&mut self, n: u64) {
            self.sum += n;
            let _ = self.out.send(evolve_v1::Report::Pinged(n)).await;
        }
        async fn on_pings(&mut self) -> u64 {
            self.sum
        }
    }

    /// Serves version 2.
    pub(super) struct V2 {
        pub(super) out: aiosock::Sender<evolve_v2::Report>,
        pub(super) sum: u64,
        pub(super) noted: u64,
        pub(super) refused: u64,
    }

    impl evolve_v2::EvolvingHandler for V2 {
        async fn on_ping(&mut self, n: u64) {
            self.sum += n;
            let _ = self.out.send(evolve_v2::Report::Pinged(n)).await;
            match self
                .out
                .send(evolve_v2::Report::Noted(format!("ping {n}")))
                .await
            {
                Ok(()) => self.noted += 1,
                Err(aiosock::SendError::Invalid(
                    evolve_v2::Report::Noted(_),
                    aiosock::InvalidMessage::UnknownVariant { variant: "Noted" },
                )) => self.refused += 1,
                Err(e) => panic!("unexpected send error: {e:?}"),
            }
        }
        async fn on_pings(&mut self) -> u64 {
            self.sum
        }
        async fn on_upper(&mut self, text: String) -> String {
            text.to_uppercase()
        }
        async fn on_note(&mut self, _text: String) {}
        async fn closed(&mut self) {
            println!("noted {} refused {}", self.noted, self.refused);
        }
    }

    /// Serves the version with an unmarked appended variant.
    pub(super) struct Unmarked;

    impl evolve_unmarked::EvolvingHandler for Unmarked {
        async fn on_ping(&mut self, _: u64) {}
        async fn on_pings(&mut self) -> u64 {
            0
        }
        async fn on_stop(&mut self) {}
    }
}

fn evolve(version: &str) -> Result<(), BoxError> {
    use aiosock_tests::workers::{evolve_unmarked, evolve_v1, evolve_v2};
    runtime()?.block_on(async move {
        match version {
            "v1" => {
                let end = aiosock::inherited::<evolve_v1::Report, evolve_v1::Evolving>()?;
                let (out, rx) = end.into_split();
                rx.serve(evolving::V1 { out, sum: 0 }).await?;
            }
            "v2" => {
                let end = aiosock::inherited::<evolve_v2::Report, evolve_v2::Evolving>()?;
                let (out, rx) = end.into_split();
                let handler = evolving::V2 {
                    out,
                    sum: 0,
                    noted: 0,
                    refused: 0,
                };
                rx.serve(handler).await?;
            }
            "unmarked" => {
                let end = aiosock::inherited::<evolve_v1::Report, evolve_unmarked::Evolving>()?;
                let (_out, rx) = end.into_split();
                if let Err(e) = rx.serve(evolving::Unmarked).await {
                    println!("error {e}");
                }
            }
            other => return Err(format!("unknown version {other:?}").into()),
        }
        Ok(())
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, BoxError> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Answers every request; its state lives in the handler.
struct Server {
    out: aiosock::Sender<Reply>,
    next_count: u64,
    fds: Vec<(i32, String)>,
    error: Option<String>,
    soak: Soak,
}

/// The worker's half of a soak.
#[derive(Default)]
struct Soak {
    sender: Option<tokio::task::JoinHandle<Result<(), String>>>,
    received: u64,
    problem: Option<String>,
    seed: Option<u64>,
}

impl Server {
    fn new(out: aiosock::Sender<Reply>, fds: Vec<(i32, String)>) -> Server {
        Server {
            out,
            next_count: 0,
            fds,
            error: None,
            soak: Soak::default(),
        }
    }
}

impl Server {
    async fn reply(&mut self, reply: Reply) {
        if let Err(e) = self.out.send(reply).await {
            self.error.get_or_insert(format!("reply failed: {e}"));
        }
    }
}

impl RequestHandler for Server {
    async fn on_echo(&mut self, id: u64, data: Vec<u8>) {
        self.reply(Reply::Echo { id, data }).await;
    }

    async fn on_count(&mut self, n: u64) {
        if n != self.next_count {
            self.error
                .get_or_insert(format!("count {n} arrived, expected {}", self.next_count));
        }
        self.next_count += 1;
    }

    async fn on_stream(&mut self, n: u64) {
        for i in 0..n {
            self.reply(Reply::Item(i)).await;
        }
        self.reply(Reply::StreamDone).await;
    }

    async fn on_list_fds(&mut self) {
        let fds = self.fds.clone();
        self.reply(Reply::Fds(fds)).await;
    }

    async fn on_start_soak(&mut self, n: u64, seed: u64) {
        let out = self.out.clone();
        self.soak.seed = Some(seed);
        self.soak.sender = Some(tokio::spawn(async move {
            for seq in 0..n {
                let data = soak_data(seed, seq);
                out.send(Reply::Soak { seq, data })
                    .await
                    .map_err(|e| format!("soak send {seq}: {e}"))?;
            }
            Ok(())
        }));
    }

    async fn on_soak(&mut self, seq: u64, data: Vec<u8>) {
        let expected = self.soak.received;
        self.soak.received += 1;
        if self.soak.problem.is_some() {
            return;
        }
        if seq != expected {
            self.soak.problem = Some(format!("soak message {seq} arrived, expected {expected}"));
        } else if data != soak_data(PARENT_SEED, seq) {
            self.soak.problem = Some(format!("soak message {seq} is corrupted"));
        }
    }

    async fn closed(&mut self) {
        if let Some(sender) = self.soak.sender.take() {
            let problem = match sender.await {
                Ok(Ok(())) => self.soak.problem.take(),
                Ok(Err(e)) => Some(e),
                Err(e) => Some(format!("soak sender task: {e}")),
            };
            let report = Reply::SoakReport {
                received: self.soak.received,
                problem,
                peak_rss_kib: peak_rss_kib(),
            };
            self.reply(report).await;
        }
        if self.next_count > 0 {
            let n = self.next_count;
            self.reply(Reply::Counted(n)).await;
        }
    }
}

fn serve(fds: Vec<(i32, String)>) -> Result<(), BoxError> {
    let end = aiosock::inherited::<Reply, Request>()?;
    runtime()?.block_on(async move {
        let (tx, rx) = end.into_split();
        let server = rx.serve(Server::new(tx, fds)).await?;
        server.out.flush().await.map_err(|e| e.to_string())?;
        match server.error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    })
}

/// The variant name of an error, from its `Debug` form (`NotListening { .. }` gives
/// `NotListening`).
fn variant(e: &aiosock::Error) -> String {
    let debug = format!("{e:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn named(mode: &str, address: &str) -> Result<(), BoxError> {
    runtime()?.block_on(async move {
        let connected = match mode {
            "probe-bind" => {
                match aiosock::Listener::<Request, Reply>::bind(address) {
                    Ok(_) => println!("bound"),
                    Err(e) => println!("bind-error {}", variant(&e)),
                }
                return Ok(());
            }
            "listen" => {
                let listener = aiosock::Listener::<Reply, Request>::bind(address)?;
                println!("listening");
                loop {
                    let (end, _) = listener.accept().await?;
                    tokio::spawn(async move {
                        let (tx, rx) = end.into_split();
                        rx.serve(Server::new(tx, Vec::new())).await
                    });
                }
            }
            "connect-abstract" => aiosock::connect_abstract::<Reply, Request>(address).await,
            "connect-tcp" => aiosock::connect_plaintext_tcp::<Reply, Request>(address).await,
            #[cfg(feature = "tls")]
            "connect-tls" => {
                let ca = std::fs::read(std::env::args().nth(3).unwrap_or_default())?;
                let mut roots = rustls::RootCertStore::empty();
                roots.add(rustls::pki_types::CertificateDer::from(ca))?;
                let config = rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                aiosock::connect_tls::<Reply, Request>(address, "localhost", Arc::new(config)).await
            }
            _ => aiosock::connect::<Reply, Request>(address).await,
        };
        let end = match connected {
            Ok(end) => end,
            Err(e) if mode == "probe" => {
                println!("connect-error {}", variant(&e));
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let (tx, mut rx) = end.into_split();
        if mode == "probe" {
            let first = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await?;
            match first {
                Ok(None) | Err(aiosock::Error::Io(_)) => println!("closed"),
                Ok(Some(_)) => println!("message"),
                Err(e) => println!("error {}", variant(&e)),
            }
            drop(tx);
            return Ok(());
        }
        let server = rx.serve(Server::new(tx, Vec::new())).await?;
        server.out.flush().await.map_err(|e| e.to_string())?;
        match server.error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    })
}

fn mismatch() -> Result<(), BoxError> {
    let end = aiosock::inherited::<Stranger, Stranger>()?;
    runtime()?.block_on(async move {
        let (tx, mut rx) = end.into_split();
        tx.send(Stranger::Hello("who are you?".into()))
            .await
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await? {
            Err(aiosock::Error::ProtocolMismatch(m)) => {
                eprintln!("worker mismatch: {m}");
                // `exit` skips the runtime's shutdown, which would write out what `send`
                // accepted: flush first, so the parent gets our hello and sees the mismatch.
                let _ = tx.flush().await;
                std::process::exit(EXIT_MISMATCH)
            }
            other => Err(format!("expected a protocol mismatch, got {other:?}").into()),
        }
    })
}

fn block() -> Result<(), BoxError> {
    let end = aiosock::inherited::<Reply, Request>()?;
    runtime()?.block_on(async move {
        let (_tx, mut rx) = end.into_split();
        while rx.recv().await?.is_some() {}
        Ok(())
    })
}

fn middle() -> Result<(), BoxError> {
    let exe = std::env::current_exe()?;
    runtime()?.block_on(async move {
        let (here, there) = aiosock::pair::<Request, Reply>()?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("block");
        let child = aiosock::spawn(cmd, there)?;
        println!("{}", child.id());
        let (_tx, mut rx) = here.into_split();
        // Wait to be killed; the child's end stays connected to ours until then.
        let _ = rx.recv().await;
        std::future::pending::<()>().await;
        Ok(())
    })
}

fn middle_pdeathsig() -> Result<(), BoxError> {
    let exe = std::env::current_exe()?;
    runtime()?.block_on(async move {
        let (here, there) = aiosock::pair::<Request, Reply>()?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("sleep");
        let child = aiosock::ChildOptions::new()
            .die_with_parent(true)
            .spawn(cmd, there)?;
        println!("{}", child.id());
        // Keep our end open: only the kernel's parent-death signal can end the child.
        let _keep = here;
        std::future::pending::<()>().await;
        Ok(())
    })
}

fn sleep() -> Result<(), BoxError> {
    let _end = aiosock::inherited::<Reply, Request>()?;
    std::thread::sleep(Duration::from_secs(600));
    Ok(())
}

fn fork_check() -> Result<(), BoxError> {
    // From inside a current-thread runtime the process has one thread, but the child could
    // not start a runtime of its own: refused in the parent.
    let (_unused, end) = aiosock::pair::<Request, Reply>()?;
    let inside = runtime()?.block_on(async {
        aiosock::fork(end, |_end| async { Ok::<(), String>(()) }).map(|child| child.id())
    });
    if !matches!(inside, Err(aiosock::Error::ForkInRuntime)) {
        return Err(format!("fork inside a runtime gave {inside:?}").into());
    }
    // A child that would sleep for a minute, killed and reaped when its handle is dropped:
    // the drop must not block, and no zombie may stay behind.
    let (_sleeper_here, sleeper_there) = aiosock::pair::<Request, Reply>()?;
    let sleeper =
        aiosock::ChildOptions::new()
            .kill_on_drop(true)
            .fork(sleeper_there, |_end| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok::<(), String>(())
            })?;
    let sleeper_pid = sleeper.id();
    runtime()?.block_on(async move {
        drop(sleeper);
        // Reaped, not only dead: its /proc entry goes away (a zombie keeps one).
        let proc_entry = format!("/proc/{sleeper_pid}");
        let reaped = tokio::time::timeout(Duration::from_secs(30), async {
            while std::path::Path::new(&proc_entry).exists() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        reaped.map_err(|_| format!("the dropped child {sleeper_pid} was not killed and reaped"))
    })?;
    // A second pair, made before the fork: the child must let go of both its ends.
    let (other_here, other_there) = aiosock::pair::<Request, Reply>()?;
    let (here, there) = aiosock::pair::<Request, Reply>()?;
    let mut child = aiosock::fork(there, |end| async move {
        let (tx, rx) = end.into_split();
        rx.serve(Server::new(tx, open_fds())).await.map(drop)
    })?;
    drop(other_there);
    runtime()?.block_on(async move {
        let (tx, mut rx) = here.into_split();
        tx.send(Request::Echo {
            id: 1,
            data: b"forked".to_vec(),
        })
        .await
        .map_err(|e| e.to_string())?;
        let reply = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await??;
        if reply
            != Some(Reply::Echo {
                id: 1,
                data: b"forked".to_vec(),
            })
        {
            return Err(format!("unexpected reply {reply:?}").into());
        }
        // The child let go of `other_here`'s peer copy: dropping ours closes the pair
        // for good, which `other_here`'s receiver sees as a close.
        let (_other_tx, mut other_rx) = other_here.into_split();
        let other = tokio::time::timeout(Duration::from_secs(30), other_rx.recv()).await??;
        if other.is_some() {
            return Err("the other pair carried a message".into());
        }
        drop(tx);
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
        if !status.success() {
            return Err(format!("forked child exited with {status}").into());
        }
        let pid = child.id();
        println!("forked child {pid} worked and exited with {status}");
        Ok(())
    })
}

/// Sends the burst on `end` in a runtime of `flavor`; returns the runtime.
fn send_burst(
    flavor: &str,
    tx: &aiosock::Sender<Reply>,
) -> Result<tokio::runtime::Runtime, BoxError> {
    let rt = flavored(flavor)?;
    rt.block_on(async {
        for i in 0..BURST {
            tx.send(burst_reply(i)).await.map_err(|e| e.to_string())?;
        }
        Ok::<_, BoxError>(())
    })?;
    Ok(rt)
}

/// A runtime of `flavor`: `current` or `multi` thread.
fn flavored(flavor: &str) -> Result<tokio::runtime::Runtime, BoxError> {
    Ok(match flavor {
        "current" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        "multi" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?,
        other => return Err(format!("unknown runtime flavor {other:?}").into()),
    })
}

/// Connects over plaintext TCP to `addr`, sends a burst, then ends the runtime as
/// `ending` says (not `fork`): the bridge must still forward every accepted message.
fn burst_tcp(ending: &str, flavor: &str, addr: &str) -> Result<(), BoxError> {
    let rt = flavored(flavor)?;
    let tx = rt.block_on(async {
        let end = aiosock::connect_plaintext_tcp::<Reply, Request>(addr).await?;
        let (tx, _rx) = end.into_split();
        for i in 0..BURST {
            tx.send(burst_reply(i)).await.map_err(|e| e.to_string())?;
        }
        Ok::<_, BoxError>(tx)
    })?;
    end_runtime(ending, rt)?;
    drop(tx);
    Ok(())
}

/// Ends `rt` as `ending` says.
fn end_runtime(ending: &str, rt: tokio::runtime::Runtime) -> Result<(), BoxError> {
    match ending {
        // `block_on` returned; the runtime and the sender go out of scope at the end.
        "return" => {}
        // The runtime is dropped while the sender lives on.
        "drop" => drop(rt),
        "shutdown-timeout" => rt.shutdown_timeout(Duration::from_millis(100)),
        "shutdown-background" => rt.shutdown_background(),
        // The process exits at once, with the runtime and the sender alive.
        "exit" => std::process::exit(0),
        other => return Err(format!("unknown ending {other:?}").into()),
    }
    Ok(())
}

/// Sends a burst, then ends the runtime as `ending` says.
fn burst(ending: &str, flavor: &str) -> Result<(), BoxError> {
    if ending == "fork" {
        // The forked child gets the inherited end, sends the burst and returns; `fork`
        // runs its closure on a current-thread runtime.
        let end = aiosock::inherited::<Reply, Request>()?;
        let mut child = aiosock::fork(end, |end| async move {
            let (tx, _rx) = end.into_split();
            for i in 0..BURST {
                tx.send(burst_reply(i)).await.map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        })?;
        let status = runtime()?.block_on(child.wait())?;
        return if status.success() {
            Ok(())
        } else {
            Err(format!("forked child exited with {status}").into())
        };
    }
    let (tx, _rx) = aiosock::inherited::<Reply, Request>()?.into_split();
    let rt = send_burst(flavor, &tx)?;
    end_runtime(ending, rt)?;
    drop(tx);
    Ok(())
}

/// Sends `Reply::Echo` messages of [`RACING_SIZE`] bytes, numbered from 0, from a task on
/// a multi-thread runtime, and prints each number whose send was accepted, while the main
/// thread calls `std::process::exit`. Every accepted message must still reach the peer
/// whole.
///
/// The sending end holds nothing when the exit begins: after message 0 the task waits for
/// the exit, then 20 ms more, and only then sends without pause. A second end in the
/// process, whose peer never reads, holds bytes at the exit, so the exit waits for its
/// linger (300 ms) while the task sends: the exit hook must stop the sending end too, not
/// only the ends that held bytes when it looked, or the process ends mid-message.
///
/// With `late`, the task makes its sending end (splits the endpoint) only once the exit
/// has begun, and sends no message 0 before: the hook must stop ends made after it looked.
fn exit_racing(late: bool) -> Result<(), BoxError> {
    use std::io::Write;
    use std::sync::atomic::AtomicBool;
    static EXITING: AtomicBool = AtomicBool::new(false);
    let end = aiosock::inherited::<Reply, Request>()?;
    let (blocked, unread) = aiosock::pair::<Reply, Request>()?;
    let mut config = aiosock::Config::new();
    config.set_linger(Duration::from_millis(300));
    let (blocked, _blocked_rx) = blocked.with_config(config).into_split();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Fill the blocked end's socket and leave bytes queued behind it.
        while blocked
            .try_send(Reply::Echo {
                id: 0,
                data: vec![0; 64 * 1024],
            })
            .is_ok()
        {}
    });
    let (started, start) = std::sync::mpsc::channel();
    let (end, early) = if late {
        (Some(end), None)
    } else {
        (None, Some(end.into_split()))
    };
    rt.spawn(async move {
        let mut stdout = std::io::stdout();
        let (tx, _rx) = match (early, end) {
            (Some(split), _) => split,
            (None, end) => {
                let _ = started.send(());
                while !EXITING.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                match end {
                    Some(end) => end.into_split(),
                    None => return,
                }
            }
        };
        for id in 0.. {
            let message = Reply::Echo {
                id,
                data: vec![id as u8; RACING_SIZE],
            };
            if tx.send(message).await.is_err() {
                break;
            }
            // Unbuffered, so that what is printed is out before the process is gone.
            let _ = writeln!(stdout, "{id}").and_then(|()| stdout.flush());
            if id == 0 && !late {
                let _ = started.send(());
                while !EXITING.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    start.recv()?;
    // Message 0 is written by now (the peer has read it, or the kernel holds it).
    std::thread::sleep(Duration::from_millis(20));
    // The blocked end's peer stays open (and unread) until the process is gone.
    let _unread = unread;
    EXITING.store(true, Ordering::SeqCst);
    std::process::exit(0)
}

/// Runs a shell before adopting the end: it must see neither the end nor the variable.
fn grandchild() -> Result<(), BoxError> {
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", "ls /proc/self/fd; echo \"var=${AIOSOCK_FD:-unset}\""])
        .output()?;
    let listing = String::from_utf8(out.stdout)?;
    let end = aiosock::inherited::<Reply, Request>()?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&end)).to_string();
    if listing.lines().any(|line| line.trim() == fd) {
        return Err(format!("the shell inherited descriptor {fd}: {listing}").into());
    }
    if !listing.contains("var=unset") {
        return Err(format!("the shell saw AIOSOCK_FD: {listing}").into());
    }
    let (tx, _rx) = end.into_split();
    runtime()?.block_on(async move {
        tx.send(Reply::StreamDone)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Adopts the end, then re-executes itself naming the same descriptor number again.
fn reexec() -> Result<(), BoxError> {
    use std::os::unix::process::CommandExt;
    let end = aiosock::inherited::<Reply, Request>()?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&end));
    let parent = std::os::unix::process::parent_id();
    let err = std::process::Command::new(std::env::current_exe()?)
        .arg("reexec-adopt")
        .env(aiosock::ENV_FD, format!("{fd}:{parent}"))
        .exec();
    Err(format!("exec failed: {err}").into())
}

/// The re-executed image: opens sockets of its own first (one of them likely gets the
/// stale number, which exec closed), then adopting the stale number must fail.
fn reexec_adopt() -> Result<(), BoxError> {
    let _own = (0..4)
        .map(|_| aiosock::pair::<Request, Reply>())
        .collect::<Result<Vec<_>, _>>()?;
    match aiosock::inherited::<Reply, Request>() {
        Err(aiosock::Error::Inherit { reason }) => {
            eprintln!("refused as it should be: {reason}");
            std::process::exit(EXIT_REFUSED)
        }
        Err(e) => Err(format!("unexpected error {e}").into()),
        Ok(_) => Err("adopted a stale descriptor".into()),
    }
}

/// Sends a burst while the process has no descriptor left to open: waiting for room in the
/// socket must not need one.
fn emfile() -> Result<(), BoxError> {
    let (tx, _rx) = aiosock::inherited::<Reply, Request>()?.into_split();
    let rt = runtime()?;
    // Attach (the runtime's own descriptors and the registration) before running out.
    rt.block_on(async { tx.send(emfile_reply(0)).await.map_err(|e| e.to_string()) })?;
    let mut hold = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => hold.push(file),
            // EMFILE: the per-process limit is reached.
            Err(e) if e.raw_os_error() == Some(24) => break,
            Err(e) => return Err(e.into()),
        }
        if hold.len() > 1 << 20 {
            return Err("no descriptor limit".into());
        }
    }
    if std::fs::File::open("/dev/null").is_ok() {
        return Err("a descriptor was still free".into());
    }
    rt.block_on(async {
        for i in 1..BURST {
            tx.send(emfile_reply(i)).await.map_err(|e| e.to_string())?;
        }
        Ok::<_, BoxError>(())
    })?;
    drop(rt);
    drop(tx);
    // Leave with every descriptor still in use: the exit hook writes what is left.
    std::mem::forget(hold);
    Ok(())
}

/// A child made by a plain fork exits through `exit` while the parent's end still holds
/// its hello: the exit hook must leave the parent's connection alone.
fn plain_fork() -> Result<(), BoxError> {
    let (tx, _rx) = aiosock::inherited::<Reply, Request>()?.into_split();
    match aiosock::__private::fork_plain()? {
        None => std::process::exit(0),
        Some(child) => {
            let path = format!("/proc/{child}");
            // Wait for the child to be done (a zombie or gone).
            while !aiosock_tests::workers::process_gone(child)
                && std::path::Path::new(&path).exists()
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    runtime()?.block_on(async move {
        tx.send(Reply::Item(1)).await.map_err(|e| e.to_string())?;
        Ok(())
    })
}
