//! Forking from anywhere, a running runtime included: [`ForkServer`].
//!
//! [`fork`](crate::fork) must run while the process has one thread, which rules it out
//! inside a runtime, where a pool restarts its workers. A fork server is a copy of the
//! process made early, while that still holds. It stays single-threaded and runs no
//! runtime: it waits for requests on a socket, each carrying a new end, and forks a
//! worker for each that runs the closure it was made with.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::channel::{Endpoint, linger};
use crate::error::Error;
use crate::process::{Child, ChildOptions, Stdio, end_forked_child, run_forked_child};
use crate::{Protocol, sys, trace};

/// How long [`ForkServer::start`] waits for the server's answer before it gives up on the
/// server: a fork takes about a millisecond.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// How long a new worker waits to be re-parented (the intermediate process exits right
/// after forking it) before it gives up and exits.
const REPARENT_WITHIN: Duration = Duration::from_secs(5);

/// The request's flag: the worker dies with this process.
const DIE_WITH_PARENT: u8 = 1;

/// Taken while this process is a subreaper for a request, so that two requests (of any
/// servers) do not undo each other's setting.
static SUBREAPER: Mutex<()> = Mutex::new(());

/// A copy of this process, made while it has one thread, that forks workers running one
/// closure on request, from any thread, inside a runtime too.
///
/// Each worker is an end's other side, as with [`fork`](crate::fork): the worker runs
/// `worker_main(end)` on a current-thread runtime of its own and exits with its result (0
/// for `Ok`, whatever it holds, such as the handler that `serve` gives back; 1 for `Err`,
/// printed to stderr; 101 for a panic). It is a copy of this
/// process as it was when the server was made, not as it is when the worker starts: it
/// sees none of the state made since, and its only connection is its end (the server
/// lets go of every aiosock end it inherited, as a forked child does).
///
/// The worker is this process's child: [`start`](Self::start) returns its [`Child`].
///
/// # How a worker becomes this process's child
///
/// The server forks twice: an intermediate process forks the worker and exits at once,
/// so the kernel re-parents the worker. While a request is in flight this process is a
/// *child subreaper* (`PR_SET_CHILD_SUBREAPER`, set just for the request and restored
/// after it), so the worker is re-parented to this process, not to init. The server
/// reaps the intermediate before it answers, so when [`ForkServer::start`] returns the
/// worker is this process's own child: its [`Child`] waits for it, reaps it and kills it
/// like a spawned one's. A descendant of another child of this process orphaned in the
/// same moment (a millisecond) becomes this process's child too, and stays a zombie
/// until this process ends or reaps it.
///
/// The worker's [`die_with_parent`](crate::ChildOptions::die_with_parent) is set after
/// the re-parenting, tied to the thread the kernel re-parented it to: the thread that
/// heads this process (the main thread) while it lives.
///
/// The server exits when its last handle is dropped or when this process dies (it is tied
/// to it with `PR_SET_PDEATHSIG`); workers it started live on until their own end.
///
/// [`Pool::fork`](crate::Pool::fork) makes a pool of forked workers from a server.
///
/// # Examples
///
/// ```no_run
/// #[aiosock::protocol]
/// enum Job {
///     Square(u64),
/// }
///
/// #[aiosock::protocol]
/// #[derive(Debug, PartialEq)]
/// enum Done {
///     Squared(u64),
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     // Made first, while the process has one thread.
///     let server = aiosock::ForkServer::<Done, Job>::new(|end| async move {
///         let (tx, mut rx) = end.into_split();
///         while let Some(Job::Square(n)) = rx.recv().await? {
///             tx.send(Done::Squared(n * n)).await?;
///         }
///         Ok::<(), Box<dyn std::error::Error>>(())
///     })?;
///     tokio::runtime::Runtime::new()?.block_on(async move {
///         // Inside the runtime, where `aiosock::fork` refuses.
///         let (here, there) = aiosock::pair::<Job, Done>()?;
///         let mut child = server.start(there)?;
///         let (tx, mut rx) = here.into_split();
///         tx.send(Job::Square(4)).await?;
///         assert_eq!(rx.recv().await?, Some(Done::Squared(16)));
///         drop(tx);
///         assert!(child.wait().await?.success());
///         Ok(())
///     })
/// }
/// ```
pub struct ForkServer<Out, In> {
    /// Dropped first: the server sees the end of its requests and exits.
    control: Mutex<UnixStream>,
    /// A request went unanswered: the stream may hold its late answer, so it is not used
    /// again.
    broken: AtomicBool,
    /// The server process; killed if it is still running when the handle goes.
    server: Child,
    /// The process that made the server: the only one whose requests make sense.
    owner: u32,
    _types: PhantomData<fn(Endpoint<Out, In>)>,
}

impl<Out: Protocol, In: Protocol> ForkServer<Out, In> {
    /// Forks the server, which keeps `worker_main` to run in each worker it forks.
    ///
    /// # Errors
    ///
    /// As [`fork`](crate::fork): [`Error::ForkInRuntime`] inside a Tokio runtime,
    /// [`Error::ForkThreads`] if this process has more than one thread, [`Error::Io`] if
    /// the fork fails.
    pub fn new<F, Fut, T, E>(worker_main: F) -> Result<ForkServer<Out, In>, Error>
    where
        F: Fn(Endpoint<Out, In>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: fmt::Display,
    {
        // What is buffered now would be written twice, by this process and by the server.
        let _ = io::stdout().flush();
        let _ = io::stderr().flush();
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::ForkInRuntime);
        }
        let owner = std::process::id();
        let (here, there) = UnixStream::pair()?;
        linger::settle();
        match sys::fork_single_threaded()? {
            sys::Fork::Refused(threads) => Err(Error::ForkThreads { threads }),
            sys::Fork::Parent(pid, pidfd) => {
                trace::process_event!(info, pid, "forked a fork server");
                drop(there);
                here.set_read_timeout(Some(ANSWER_WITHIN))?;
                Ok(ForkServer {
                    control: Mutex::new(here),
                    broken: AtomicBool::new(false),
                    server: Child::new(pid, pidfd, true, Stdio::default()),
                    owner,
                    _types: PhantomData,
                })
            }
            sys::Fork::Child => {
                drop(here);
                let code = match serve_requests(there, &worker_main, owner) {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("aiosock: fork server {}: {e}", std::process::id());
                        1
                    }
                };
                sys::exit_now(code)
            }
        }
    }

    /// Forks a worker that runs the server's closure on `end`, with the defaults of
    /// [`ChildOptions::new`]; see [`start_with`](Self::start_with).
    ///
    /// # Errors
    ///
    /// As [`start_with`](Self::start_with).
    pub fn start(&self, end: Endpoint<Out, In>) -> Result<Child, Error> {
        self.start_with(&ChildOptions::new(), end)
    }

    /// Forks a worker that runs the server's closure on `end`, with `options`
    /// ([`kill_on_drop`](ChildOptions::kill_on_drop) and
    /// [`die_with_parent`](ChildOptions::die_with_parent)), and closes this process's copy
    /// of `end`. Blocks the calling thread for the fork, about a millisecond, as
    /// [`spawn`](crate::spawn) does for its fork and exec.
    ///
    /// # Errors
    ///
    /// [`Error::ForkServer`] if the server is gone (killed, or it failed), did not answer
    /// within 10 seconds (it is not asked again), or this process is a forked copy of the
    /// one that made it; [`Error::Io`] if the server could not fork the worker, or this
    /// process could not take it as its child. `end` is closed either way.
    pub fn start_with(
        &self,
        options: &ChildOptions,
        end: Endpoint<Out, In>,
    ) -> Result<Child, Error> {
        let end = end.into_fd();
        if std::process::id() != self.owner {
            return Err(gone(
                "this process is a copy of the one that made the server",
            ));
        }
        let flags = if options.die_with_parent {
            DIE_WITH_PARENT
        } else {
            0
        };
        let (pid, errno) = {
            let _window = Subreaper::enter()?;
            let control = lock(&self.control);
            if self.broken.load(Ordering::Relaxed) {
                return Err(gone("an earlier request went unanswered"));
            }
            ask(&control, flags, end).inspect_err(|_| self.broken.store(true, Ordering::Relaxed))?
        };
        if pid == 0 {
            return Err(io::Error::from_raw_os_error(errno as i32).into());
        }
        // The worker is this process's child now, reaped by nobody yet: its pid names it.
        let pidfd = match sys::Pidfd::open(pid) {
            Ok(pidfd) => pidfd,
            Err(e) => {
                sys::kill_child(pid);
                return Err(e.into());
            }
        };
        trace::process_event!(info, pid, "forked a worker through the fork server");
        Ok(Child::new(
            pid,
            pidfd,
            options.kill_on_drop,
            Stdio::default(),
        ))
    }

    /// The server process's id.
    pub fn id(&self) -> u32 {
        self.server.id()
    }
}

impl<Out, In> fmt::Debug for ForkServer<Out, In> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForkServer")
            .field("pid", &self.server.id())
            .field("broken", &self.broken.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn gone(reason: &str) -> Error {
    Error::ForkServer {
        reason: reason.to_owned(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends one request (`flags`, with `end` attached) and reads its answer: the worker's
/// pid, or 0 and an errno.
fn ask(control: &UnixStream, flags: u8, end: OwnedFd) -> Result<(u32, u32), Error> {
    let sent = sys::send_vectored_with_fds(
        control.as_fd(),
        &[IoSlice::new(&[flags])],
        &[end.as_raw_fd()],
    );
    drop(end);
    match sent {
        Ok(1) => {}
        Ok(_) | Err(_) => return Err(gone("it does not take requests (it exited)")),
    }
    let mut answer = [0; 8];
    let mut reader = control;
    match reader.read_exact(&mut answer) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(gone("it exited before it answered"));
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            return Err(gone("it did not answer within 10 seconds"));
        }
        Err(e) => return Err(e.into()),
    }
    let [p0, p1, p2, p3, e0, e1, e2, e3] = answer;
    Ok((
        u32::from_le_bytes([p0, p1, p2, p3]),
        u32::from_le_bytes([e0, e1, e2, e3]),
    ))
}

/// This process as a child subreaper, for one request; the setting found is restored on
/// drop.
struct Subreaper {
    _window: MutexGuard<'static, ()>,
    was: bool,
}

impl Subreaper {
    fn enter() -> Result<Subreaper, Error> {
        let window = lock(&SUBREAPER);
        let was = sys::child_subreaper()?;
        if !was {
            sys::set_child_subreaper(true)?;
        }
        Ok(Subreaper {
            _window: window,
            was,
        })
    }
}

impl Drop for Subreaper {
    fn drop(&mut self) {
        if !self.was {
            let _ = sys::set_child_subreaper(false);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The server process.

/// The closure a server runs in each worker.
trait WorkerMain<Out, In> {
    /// Runs it on `end` as a forked child does (see [`run_forked_child`]): the exit
    /// status.
    fn run(&self, end: Endpoint<Out, In>, parent: Option<u32>) -> i32;
}

impl<Out, In, F, Fut, T, E> WorkerMain<Out, In> for F
where
    Out: Protocol,
    In: Protocol,
    F: Fn(Endpoint<Out, In>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: fmt::Display,
{
    fn run(&self, end: Endpoint<Out, In>, parent: Option<u32>) -> i32 {
        run_forked_child(end, async |end| self(end).await.map(drop), parent)
    }
}

/// The server's life: until the requests end, fork a worker for each and answer with its
/// pid (or 0 and an errno).
fn serve_requests<Out: Protocol, In: Protocol>(
    control: UnixStream,
    worker_main: &dyn WorkerMain<Out, In>,
    owner: u32,
) -> io::Result<()> {
    // Every aiosock end this copy inherited lets go of its connection, and the server
    // dies with the process that made it.
    sys::release_other_sockets(-1)?;
    sys::die_with_parent(owner)?;
    loop {
        let mut request = Vec::with_capacity(1);
        let received = sys::recv_spare_blocking(control.as_fd(), &mut request)?;
        if received.len == 0 {
            return Ok(());
        }
        let flags = request[0];
        let answer = match <[OwnedFd; 1]>::try_from(received.fds) {
            // The intermediate and the worker never come back here; each takes its own
            // copy of the control stream and closes it.
            Ok([end]) => fork_worker(&control, end, flags, worker_main, owner),
            // Not a request this crate sends: its descriptors are closed.
            Err(_) => Err(io::Error::from_raw_os_error(nix::libc::EINVAL)),
        };
        let (pid, errno) = match answer {
            Ok(pid) => (pid, 0),
            Err(e) => (0, e.raw_os_error().unwrap_or(nix::libc::EIO) as u32),
        };
        let mut bytes = [0; 8];
        bytes[..4].copy_from_slice(&pid.to_le_bytes());
        bytes[4..].copy_from_slice(&errno.to_le_bytes());
        (&control).write_all(&bytes)?;
    }
}

/// Forks the intermediate process, which forks the worker and exits; returns the
/// worker's pid once the intermediate is reaped (the worker then belongs to `owner`).
fn fork_worker<Out: Protocol, In: Protocol>(
    control: &UnixStream,
    end: OwnedFd,
    flags: u8,
    worker_main: &dyn WorkerMain<Out, In>,
    owner: u32,
) -> io::Result<u32> {
    let (mut report, tell) = UnixStream::pair()?;
    match sys::fork_single_threaded()? {
        sys::Fork::Refused(threads) => Err(io::Error::other(format!(
            "the fork server has {threads} threads"
        ))),
        sys::Fork::Parent(intermediate, _pidfd) => {
            drop(tell);
            drop(end);
            sys::reap_blocking(intermediate)?;
            let mut pid = [0; 4];
            match report.read_exact(&mut pid) {
                Ok(()) => Ok(u32::from_le_bytes(pid)),
                // The intermediate failed to fork: its report is empty.
                Err(_) => Err(io::Error::from_raw_os_error(nix::libc::EAGAIN)),
            }
        }
        sys::Fork::Child => {
            drop(report);
            let intermediate = std::process::id();
            match sys::fork_single_threaded() {
                Ok(sys::Fork::Parent(worker, _pidfd)) => {
                    let _ = (&tell).write_all(&worker.to_le_bytes());
                    sys::exit_now(0)
                }
                Ok(sys::Fork::Child) => {
                    drop(tell);
                    run_worker(control, end, flags, worker_main, owner, intermediate)
                }
                Ok(sys::Fork::Refused(_)) | Err(_) => sys::exit_now(1),
            }
        }
    }
}

/// The worker: once re-parented to `owner`, it runs `worker_main(end)` and exits.
fn run_worker<Out: Protocol, In: Protocol>(
    control: &UnixStream,
    end: OwnedFd,
    flags: u8,
    worker_main: &dyn WorkerMain<Out, In>,
    owner: u32,
    intermediate: u32,
) -> ! {
    // The server's requests are not the worker's business: its copy of the stream (never
    // dropped, since this function does not return) is pointed at `/dev/null`.
    if sys::release_fd(control.as_fd()).is_err() {
        sys::exit_now(1);
    }
    let deadline = Instant::now() + REPARENT_WITHIN;
    while std::os::unix::process::parent_id() == intermediate {
        if Instant::now() >= deadline {
            sys::exit_now(1);
        }
        std::thread::sleep(Duration::from_micros(20));
    }
    let parent = (flags & DIE_WITH_PARENT != 0).then_some(owner);
    end_forked_child(worker_main.run(Endpoint::from_fd(end), parent))
}
