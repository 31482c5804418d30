//! Running the other end in another process: [`spawn`] and [`inherited`], and the
//! [`Child`] handle.
//!
//! `spawn` starts any program (often the current executable again, in a worker mode) with
//! one end of a pair inherited on a descriptor named in the environment variable
//! [`ENV_FD`]; the child adopts it with [`inherited`]. Every other descriptor aiosock makes
//! stays close-on-exec, so no other child ever inherits an end.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd};
use std::process::{ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::channel::{Endpoint, linger};
use crate::error::Error;
use crate::{Protocol, sys, trace};

/// The environment variable through which [`spawn`] tells the child its end:
/// `<descriptor>:<parent pid>`.
///
/// A program that links aiosock reads it before `main` (while it is still single-threaded):
/// it checks the descriptor, makes it close-on-exec at once, so that no child the program
/// starts before [`inherited`] inherits the connection, and removes the variable from the
/// environment, so that neither such a child nor the program re-executing itself finds a
/// stale number.
pub const ENV_FD: &str = sys::ENV_FD;

/// Starts `command` as a child process that inherits `end`, and closes this process's copy
/// of it. The same as `ChildOptions::new().spawn(command, end)`; see
/// [`ChildOptions::spawn`].
///
/// # Errors
///
/// [`Error::Io`] if the program cannot be started; `end` is closed either way.
///
/// Works outside a runtime too (a `main` that starts its workers before its runtime, a
/// plain `#[test]`).
///
/// # Examples
///
/// ```no_run
/// #[aiosock::protocol]
/// enum Job {
///     Run(u64),
/// }
///
/// #[aiosock::protocol]
/// enum Done {
///     Finished(u64),
/// }
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (here, there) = aiosock::pair::<Job, Done>()?;
/// let mut child = aiosock::spawn(std::process::Command::new("./worker"), there)?;
/// let (tx, mut rx) = here.into_split();
/// tx.send(Job::Run(7)).await?;
/// let reply = rx.recv().await?;
/// drop(tx);
/// let status = child.wait().await?;
/// # drop((reply, status));
/// # Ok(())
/// # }
/// ```
pub fn spawn<Out, In>(command: Command, end: Endpoint<Out, In>) -> Result<Child, Error>
where
    Out: Protocol,
    In: Protocol,
{
    ChildOptions::new().spawn(command, end)
}

/// Forks this process; the child runs `child_main(end)` on a runtime of its own and exits
/// with its result. The same as `ChildOptions::new().fork(end, child_main)`; see
/// [`ChildOptions::fork`].
///
/// # Errors
///
/// [`Error::ForkThreads`] if this process has more than one thread, [`Error::Io`] if the
/// fork fails.
///
/// # Examples
///
/// ```no_run
/// #[aiosock::protocol]
/// #[derive(Debug, PartialEq)]
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
///     let (here, there) = aiosock::pair::<Job, Done>()?;
///     // Fork first, while the process has one thread; start the runtime after.
///     let mut child = aiosock::fork(there, |end| async move {
///         let (tx, mut rx) = end.into_split();
///         while let Some(Job::Square(n)) = rx.recv().await? {
///             tx.send(Done::Squared(n * n)).await?;
///         }
///         Ok::<(), Box<dyn std::error::Error>>(())
///     })?;
///     tokio::runtime::Runtime::new()?.block_on(async move {
///         let (tx, mut rx) = here.into_split();
///         tx.send(Job::Square(4)).await?;
///         assert_eq!(rx.recv().await?, Some(Done::Squared(16)));
///         drop(tx);
///         assert!(child.wait().await?.success());
///         Ok(())
///     })
/// }
/// ```
pub fn fork<Out, In, F, Fut, E>(end: Endpoint<Out, In>, child_main: F) -> Result<Child, Error>
where
    Out: Protocol,
    In: Protocol,
    F: FnOnce(Endpoint<Out, In>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: fmt::Display,
{
    ChildOptions::new().fork(end, child_main)
}

/// How to start a child process: [`spawn`](Self::spawn) a program or [`fork`](Self::fork)
/// this one, with lifecycle options.
///
/// # Examples
///
/// ```no_run
/// # #[aiosock::protocol] enum Job { Run }
/// # #[aiosock::protocol] enum Done { Ok }
/// # #[tokio::main] async fn main() -> Result<(), aiosock::Error> {
/// let (here, there) = aiosock::pair::<Job, Done>()?;
/// let child = aiosock::ChildOptions::new()
///     .kill_on_drop(true)
///     .die_with_parent(true)
///     .spawn(std::process::Command::new("./worker"), there)?;
/// # drop((here, child)); Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ChildOptions {
    pub(crate) kill_on_drop: bool,
    pub(crate) die_with_parent: bool,
}

impl ChildOptions {
    /// The defaults: the child outlives its [`Child`] handle and its parent.
    pub fn new() -> ChildOptions {
        ChildOptions::default()
    }

    /// Kills the child (`SIGKILL`) when its [`Child`] handle is dropped before the child
    /// was reaped.
    pub fn kill_on_drop(&mut self, kill: bool) -> &mut ChildOptions {
        self.kill_on_drop = kill;
        self
    }

    /// Makes the kernel kill the child (`SIGKILL`) when the parent dies (Linux
    /// `PR_SET_PDEATHSIG`). If the parent is already gone when the child starts, the child
    /// exits at once.
    ///
    /// The kernel acts when the parent *thread* that started the child exits, not the whole
    /// process: start such children from a thread that lives as long as the process (the
    /// main thread, or a Tokio worker thread; not a `spawn_blocking` thread, which exits
    /// when idle).
    pub fn die_with_parent(&mut self, die: bool) -> &mut ChildOptions {
        self.die_with_parent = die;
        self
    }

    /// Starts `command` as a child process that inherits `end`, and closes this process's
    /// copy of it.
    ///
    /// The child finds the end with [`inherited`]: the descriptor is named in
    /// [`ENV_FD`]. Since the parent keeps no copy, the parent's half of the pair sees the
    /// child's death as a close. The descriptor is made inheritable only inside the new
    /// child (between its `fork` and `exec`), so children that other threads start at the
    /// same moment do not get it, and every other descriptor aiosock made stays
    /// close-on-exec.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the program cannot be started; `end` is closed either way.
    ///
    /// Works outside a runtime too. The pipes the `Command` asked for (`Stdio::piped()`)
    /// are kept for [`Child::take_stdin`], [`Child::take_stdout`] and
    /// [`Child::take_stderr`].
    pub fn spawn<Out, In>(&self, command: Command, end: Endpoint<Out, In>) -> Result<Child, Error>
    where
        Out: Protocol,
        In: Protocol,
    {
        let fd = end.into_fd();
        let mut command = command;
        let raw = fd.as_raw_fd();
        command.env(ENV_FD, format!("{raw}:{}", std::process::id()));
        sys::inherit_in_child(&mut command, raw);
        if self.die_with_parent {
            sys::die_with_parent_in_child(&mut command);
        }
        let mut child = command.spawn()?;
        drop(fd);
        let pid = child.id();
        // Nothing reaps the child but this handle, so the pid still names it.
        let pidfd = match sys::Pidfd::open(pid) {
            Ok(pidfd) => pidfd,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e.into());
            }
        };
        trace::process_event!(info, pid, "spawned a child process");
        let stdio = Stdio {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
        };
        Ok(Child::new(pid, pidfd, self.kill_on_drop, stdio))
    }

    /// Forks this process; the child runs `child_main(end)` on a runtime of its own and
    /// exits with its result, like `multiprocessing`'s fork start method.
    ///
    /// Fork before starting a multi-threaded runtime (or any other thread): forking a
    /// multi-threaded process is unsound (another thread may hold a lock the child then
    /// waits on forever), so this refuses when the process has more than one thread.
    ///
    /// In the child:
    /// - every other aiosock end inherited from the parent lets go of its connection (its
    ///   descriptor is pointed at `/dev/null`), so the parent's ends never stay open in the
    ///   child and the parent's death is seen as a close;
    /// - a current-thread Tokio runtime with everything enabled runs `child_main(end)`; when
    ///   it returns, the runtime shuts down (writing out accepted messages) and the child
    ///   exits with status 0 for `Ok`, 1 for `Err` (printed to stderr), 101 for a panic.
    ///   The child never returns into the caller's code and skips the parent's exit handlers.
    ///
    /// In the parent, the child's `end` is closed and the [`Child`] returned.
    ///
    /// Before forking, ends that are still writing out what they accepted after their
    /// runtime shut down (see [`Config::linger`](crate::Config::linger)) finish doing so, so
    /// that no aiosock thread runs.
    ///
    /// # Errors
    ///
    /// [`Error::ForkInRuntime`] when called from inside a Tokio runtime (the child could not
    /// start its own), [`Error::ForkThreads`] if this process has more than one thread,
    /// [`Error::Io`] if the fork fails. `end` is closed either way.
    pub fn fork<Out, In, F, Fut, E>(
        &self,
        end: Endpoint<Out, In>,
        child_main: F,
    ) -> Result<Child, Error>
    where
        Out: Protocol,
        In: Protocol,
        F: FnOnce(Endpoint<Out, In>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: fmt::Display,
    {
        use std::io::Write;
        // What is buffered now would be written twice, by the parent and by the child.
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::ForkInRuntime);
        }
        let parent = std::process::id();
        linger::settle();
        match sys::fork_single_threaded()? {
            sys::Fork::Refused(threads) => Err(Error::ForkThreads { threads }),
            sys::Fork::Parent(pid, pidfd) => {
                trace::process_event!(info, pid, "forked a child process");
                drop(end);
                Ok(Child::new(pid, pidfd, self.kill_on_drop, Stdio::default()))
            }
            sys::Fork::Child => {
                let code =
                    run_forked_child(end, child_main, self.die_with_parent.then_some(parent));
                end_forked_child(code)
            }
        }
    }
}

/// Ends a forked child with `code`. `_exit` skips the exit hook, so what the child
/// accepted is written out first, and what its stdout and stderr buffer is flushed.
pub(crate) fn end_forked_child(code: i32) -> ! {
    use std::io::Write;
    linger::exit_flush();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    sys::exit_now(code)
}

/// The forked child's life: it lets go of every other aiosock end, ties its life to
/// `parent` if asked, and runs `child_main(end)` on a current-thread runtime of its own.
/// Its exit status: 0 for `Ok`, 1 for `Err` (printed to stderr) or a failed start, 101
/// for a panic.
pub(crate) fn run_forked_child<Out, In, F, Fut, E>(
    end: Endpoint<Out, In>,
    child_main: F,
    parent: Option<u32>,
) -> i32
where
    Out: Protocol,
    In: Protocol,
    F: FnOnce(Endpoint<Out, In>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: fmt::Display,
{
    let me = std::process::id();
    if let Err(e) = sys::release_other_sockets(end.as_fd().as_raw_fd()) {
        eprintln!("aiosock: forked child {me}: could not release the parent's ends: {e}");
        return 1;
    }
    if let Some(Err(e)) = parent.map(sys::die_with_parent) {
        eprintln!("aiosock: forked child {me}: could not tie its life to the parent: {e}");
        return 1;
    }
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let result = runtime.block_on(child_main(end));
        drop(runtime);
        Ok::<_, std::io::Error>(result)
    }));
    match run {
        Ok(Ok(Ok(()))) => 0,
        Ok(Ok(Err(e))) => {
            eprintln!("aiosock: forked child {me} failed: {e}");
            1
        }
        Ok(Err(e)) => {
            eprintln!("aiosock: forked child {me} could not start its runtime: {e}");
            1
        }
        Err(_panic) => 101,
    }
}

/// Adopts the end that the parent passed with [`spawn`]: it sends `Out` and receives `In`
/// (the parent's end has the two the other way round).
///
/// Works without a runtime. Can succeed once per process. The end is close-on-exec (it
/// was made so before `main`, see [`ENV_FD`]).
///
/// # Errors
///
/// [`Error::Inherit`] when the process was not started by `spawn` (no [`ENV_FD`] when it
/// started), the variable is malformed or names another parent, the descriptor is not an
/// open, inherited Unix stream socket (one that is close-on-exec was opened by this
/// program, not passed by the parent), or the end was already adopted.
///
/// # Examples
///
/// ```
/// #[aiosock::protocol]
/// enum Job {
///     Run(u64),
/// }
///
/// #[aiosock::protocol]
/// enum Done {
///     Finished(u64),
/// }
///
/// // This doctest was not started by `aiosock::spawn`, so there is nothing to adopt.
/// let err = aiosock::inherited::<Done, Job>().unwrap_err();
/// assert!(matches!(err, aiosock::Error::Inherit { .. }));
/// ```
pub fn inherited<Out: Protocol, In: Protocol>() -> Result<Endpoint<Out, In>, Error> {
    inherited_impl()
}

/// Raises this process's limit on open descriptors (the soft `RLIMIT_NOFILE`) to the
/// most it may be (the hard limit), and returns the limit now in force.
///
/// Each end is a descriptor, and so is each descriptor a message brings: a process that
/// holds thousands of connections needs more than the usual soft limit of 1024. When the
/// limit is reached, making or accepting an end fails with [`Error::OutOfDescriptors`].
///
/// # Errors
///
/// [`Error::Io`] if the limits cannot be read or set.
///
/// # Examples
///
/// ```
/// let limit = aiosock::raise_fd_limit()?;
/// assert!(limit >= 3);
/// # Ok::<(), aiosock::Error>(())
/// ```
pub fn raise_fd_limit() -> Result<u64, Error> {
    Ok(sys::raise_nofile()?)
}

fn inherited_impl<Out: Protocol, In: Protocol>() -> Result<Endpoint<Out, In>, Error> {
    let owned = sys::take_inherited().map_err(|reason| Error::Inherit { reason })?;
    Ok(Endpoint::from_fd(owned).with_peer_pid(std::os::unix::process::parent_id()))
}

/// A child process started by [`spawn`] or [`fork`].
///
/// It works without a runtime: [`try_wait`](Self::try_wait), [`start_kill`](Self::start_kill)
/// and the pipes need none; [`wait`](Self::wait) needs one to wait in. The child is watched
/// and signalled through a pidfd, so a signal can never reach another process that reused
/// its pid.
pub struct Child {
    pid: u32,
    /// The child's pidfd; moved into `io` when first waited on.
    pidfd: Option<sys::Pidfd>,
    /// The pidfd, registered with the runtime.
    io: Option<AsyncFd<sys::Pidfd>>,
    status: Option<ExitStatus>,
    kill_on_drop: bool,
    stdio: Stdio,
}

/// The pipes a spawned child was given (what its `Command` asked for with `Stdio::piped`).
#[derive(Debug, Default)]
pub(crate) struct Stdio {
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
}

impl Child {
    pub(crate) fn new(pid: u32, pidfd: sys::Pidfd, kill_on_drop: bool, stdio: Stdio) -> Child {
        Child {
            pid,
            pidfd: Some(pidfd),
            io: None,
            status: None,
            kill_on_drop,
            stdio,
        }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Takes the writing end of the child's stdin, if its `Command` had
    /// `stdin(Stdio::piped())`. `None` for a forked child, or once taken.
    ///
    /// It is a blocking `std` pipe; for async I/O wrap it with
    /// `tokio::process::ChildStdin::from_std` inside a runtime.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[aiosock::protocol] enum Job { Run }
    /// # #[aiosock::protocol] enum Done { Ok }
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tokio::io::AsyncBufReadExt;
    ///
    /// let (here, there) = aiosock::pair::<Job, Done>()?;
    /// let mut cmd = std::process::Command::new("./worker");
    /// cmd.stdout(std::process::Stdio::piped());
    /// let mut child = aiosock::spawn(cmd, there)?;
    /// let stdout = tokio::process::ChildStdout::from_std(child.take_stdout().unwrap())?;
    /// let mut lines = tokio::io::BufReader::new(stdout).lines();
    /// while let Some(line) = lines.next_line().await? {
    ///     println!("worker says: {line}");
    /// }
    /// # drop(here); Ok(()) }
    /// ```
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdio.stdin.take()
    }

    /// Takes the reading end of the child's stdout, if its `Command` had
    /// `stdout(Stdio::piped())`; see [`take_stdin`](Self::take_stdin).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdio.stdout.take()
    }

    /// Takes the reading end of the child's stderr, if its `Command` had
    /// `stderr(Stdio::piped())`; see [`take_stdin`](Self::take_stdin).
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.stdio.stderr.take()
    }

    fn pidfd(&self) -> Option<&sys::Pidfd> {
        self.pidfd
            .as_ref()
            .or(self.io.as_ref().map(AsyncFd::get_ref))
    }

    /// Registers the pidfd with the current runtime, once.
    fn registered(&mut self) -> Result<&AsyncFd<sys::Pidfd>, Error> {
        if let Some(pidfd) = self.pidfd.take() {
            self.io = Some(sys::register_owned(pidfd, Interest::READABLE)?);
        }
        self.io
            .as_ref()
            .ok_or_else(|| Error::from(std::io::Error::other("the child's pidfd is gone")))
    }

    /// Waits for the child to exit and reaps it. Returns the same status when called again.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if waiting fails.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime with I/O enabled.
    pub async fn wait(&mut self) -> Result<ExitStatus, Error> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            let mut ready = self.registered()?.readable().await?;
            ready.clear_ready();
        }
    }

    /// Returns the exit status if the child has exited, reaping it, without waiting.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the check fails.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, Error> {
        if self.status.is_none() {
            self.status = sys::try_reap(self.pid)?;
            if let Some(_status) = &self.status {
                trace::process_event!(info, pid = self.pid, status = %_status, "child process exited");
            }
        }
        Ok(self.status)
    }

    /// Sends `SIGKILL` and waits for the child to exit.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the signal cannot be sent or waiting fails.
    pub async fn kill(&mut self) -> Result<ExitStatus, Error> {
        self.start_kill()?;
        self.wait().await
    }

    /// Sends `SIGKILL` without waiting, through the child's pidfd. Does nothing once the
    /// child was reaped.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the signal cannot be sent.
    pub fn start_kill(&mut self) -> Result<(), Error> {
        match (self.status, self.pidfd()) {
            (None, Some(pidfd)) => Ok(pidfd.kill()?),
            _ => Ok(()),
        }
    }
}

impl Drop for Child {
    /// Never blocks. With [`kill_on_drop`](ChildOptions::kill_on_drop), a child that was not
    /// reaped is killed through its pidfd. A child not reaped yet is reaped in the
    /// background once it exits: by a task on the current runtime, or (after a kill,
    /// outside a runtime) by a short-lived thread. A child that outlives its handle outside
    /// any runtime stays a zombie after it exits, until this process ends.
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        if let Some(pidfd) = self.pidfd().filter(|_| self.kill_on_drop) {
            let _ = pidfd.kill();
        }
        if matches!(sys::try_reap(self.pid), Ok(Some(_)) | Err(_)) {
            return;
        }
        let pid = self.pid;
        let pidfd = self.pidfd.take();
        let io = self.io.take();
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(async move {
                let io = match (io, pidfd) {
                    (Some(io), _) => io,
                    (None, Some(pidfd)) => match sys::register_owned(pidfd, Interest::READABLE) {
                        Ok(io) => io,
                        Err(_) => return,
                    },
                    (None, None) => return,
                };
                while let Ok(None) = sys::try_reap(pid) {
                    match io.readable().await {
                        Ok(mut ready) => ready.clear_ready(),
                        Err(_) => return,
                    }
                }
            });
        } else if self.kill_on_drop {
            // Killed children die promptly: a thread reaps it so that no zombie stays.
            let _ = std::thread::Builder::new()
                .name("aiosock-reap".into())
                .spawn(move || {
                    while let Ok(None) = sys::try_reap(pid) {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                });
        }
    }
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.pid)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}
