//! Running the other end in another process: [`spawn`] and [`inherited`], and the
//! [`Child`] handle.
//!
//! `spawn` starts any program (often the current executable again, in a worker mode) with
//! one end of a pair inherited on a descriptor named in the environment variable
//! [`ENV_FD`]; the child adopts it with [`inherited`]. Every other descriptor aiosock makes
//! stays close-on-exec, so no other child ever inherits an end.

use std::fmt;
use std::os::fd::AsRawFd;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::channel::Endpoint;
use crate::error::Error;
use crate::{Protocol, sys};

/// The environment variable through which [`spawn`] tells the child its end:
/// `<descriptor>:<parent pid>`.
pub const ENV_FD: &str = "AIOSOCK_FD";

/// Whether this process already adopted its inherited end.
static ADOPTED: AtomicBool = AtomicBool::new(false);

/// Starts `command` as a child process that inherits `end`, and closes this process's copy
/// of it.
///
/// The child finds the end with [`inherited`]. Since the parent keeps no copy, the parent's
/// half of the pair sees the child's death as a close. The descriptor is made inheritable
/// only inside the new child (between its `fork` and `exec`), so children that other
/// threads start at the same moment do not get it.
///
/// # Errors
///
/// [`Error::Io`] if the program cannot be started; `end` is closed either way.
///
/// # Panics
///
/// Outside a Tokio runtime (the [`Child`] is reaped by the runtime's signal driver).
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
#[track_caller]
pub fn spawn<Out, In>(command: Command, end: Endpoint<Out, In>) -> Result<Child, Error>
where
    Out: Protocol,
    In: Protocol,
{
    let fd = end.into_fd();
    let mut command = command;
    let raw = fd.as_raw_fd();
    command.env(ENV_FD, format!("{raw}:{}", std::process::id()));
    sys::inherit_in_child(&mut command, raw);
    let child = tokio::process::Command::from(command).spawn()?;
    drop(fd);
    Ok(Child { inner: child })
}

/// Adopts the end that the parent passed with [`spawn`]: it sends `Out` and receives `In`
/// (the parent's end has the two the other way round).
///
/// Works without a runtime. Can succeed once per process.
///
/// # Errors
///
/// [`Error::Inherit`] when the process was not started by `spawn` (no [`ENV_FD`]), the
/// variable is malformed or names another parent, the descriptor is not an open Unix
/// stream socket, or the end was already adopted.
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
    let fail = |reason: String| Error::Inherit { reason };
    let value = std::env::var(ENV_FD).map_err(|_| {
        fail(format!(
            "{ENV_FD} is not set: this process was not started by aiosock::spawn"
        ))
    })?;
    let (fd, parent) = value
        .split_once(':')
        .and_then(|(fd, pid)| Some((fd.parse::<i32>().ok()?, pid.parse::<u32>().ok()?)))
        .ok_or_else(|| fail(format!("{ENV_FD}={value:?} is not `<descriptor>:<parent pid>`")))?;
    if parent != std::os::unix::process::parent_id() {
        return Err(fail(format!(
            "{ENV_FD} was set for the children of process {parent}, not of this process's parent"
        )));
    }
    if ADOPTED.swap(true, Ordering::SeqCst) {
        return Err(fail("the inherited end was already adopted".into()));
    }
    let owned = sys::adopt_inherited(fd).map_err(|e| {
        ADOPTED.store(false, Ordering::SeqCst);
        fail(format!("descriptor {fd} is not usable: {e}"))
    })?;
    Ok(Endpoint::from_fd(owned))
}

/// A child process started by [`spawn`].
pub struct Child {
    inner: tokio::process::Child,
}

impl Child {
    /// The child's process id, or `None` once it has been reaped.
    pub fn id(&self) -> Option<u32> {
        self.inner.id()
    }

    /// Waits for the child to exit.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if waiting fails.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn wait(&mut self) -> Result<ExitStatus, Error> {
        Ok(self.inner.wait().await?)
    }

    /// Sends `SIGKILL` and waits for the child to exit.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the signal cannot be sent or waiting fails.
    pub async fn kill(&mut self) -> Result<(), Error> {
        Ok(self.inner.kill().await?)
    }

    /// Sends `SIGKILL` without waiting.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the signal cannot be sent.
    pub fn start_kill(&mut self) -> Result<(), Error> {
        Ok(self.inner.start_kill()?)
    }
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child").field("pid", &self.id()).finish()
    }
}
