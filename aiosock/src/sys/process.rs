//! Processes: fork, exit, the parent-death signal, pidfds, the descriptor a parent passes
//! to its child, and the exit hook.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Command, ExitStatus};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};

use super::socket::{io_err, is_unix_stream, set_nonblocking};

/// The environment variable through which `spawn` names the child's end:
/// `<descriptor>:<parent pid>`.
pub(crate) const ENV_FD: &str = "AIOSOCK_FD";

/// The number of threads in this process, from `/proc/self/task`.
pub(crate) fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// The sides of a fork, or why it did not happen.
pub(crate) enum Fork {
    /// In the parent: the child's pid and a pidfd for it, opened before anything could
    /// reap the child (so it names this child and no other).
    Parent(u32, Pidfd),
    /// In the child.
    Child,
    /// Not forked: the process has this many threads.
    Refused(usize),
}

/// Forks this process, which must be single-threaded.
///
/// Refuses instead of forking if the process has more than one thread; the count and the
/// fork happen on this thread with no other thread alive to start one in between.
pub(crate) fn fork_single_threaded() -> io::Result<Fork> {
    let threads = thread_count()?;
    if threads != 1 {
        return Ok(Fork::Refused(threads));
    }
    // SAFETY: nix requires that in a multi-threaded program the child only calls
    // async-signal-safe functions. This process has exactly one thread (checked just
    // above, and only this thread could have started another since), so the child is an
    // ordinary single-threaded copy and may do anything, including allocate.
    match unsafe { nix::unistd::fork() }.map_err(io_err)? {
        nix::unistd::ForkResult::Parent { child } => {
            let pid = child.as_raw() as u32;
            match Pidfd::open(pid) {
                Ok(pidfd) => Ok(Fork::Parent(pid, pidfd)),
                Err(e) => {
                    // Without a pidfd the child could not be watched: do not leave it
                    // running unsupervised.
                    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                    let _ = nix::sys::wait::waitpid(child, None);
                    Err(e)
                }
            }
        }
        nix::unistd::ForkResult::Child => Ok(Fork::Child),
    }
}

/// A plain `fork` of this single-threaded process, nothing else done in the child: what
/// other libraries and programs do. For the tests that check aiosock's ends survive it.
/// `Ok(Some(pid))` in the parent, `Ok(None)` in the child.
pub(crate) fn fork_plain() -> io::Result<Option<u32>> {
    if thread_count()? != 1 {
        return Err(io::Error::other(
            "a plain fork needs a single-threaded process",
        ));
    }
    // SAFETY: the process has one thread (just counted; only this thread could start
    // another), so the child is an ordinary single-threaded copy.
    match unsafe { nix::unistd::fork() }.map_err(io_err)? {
        nix::unistd::ForkResult::Parent { child } => Ok(Some(child.as_raw() as u32)),
        nix::unistd::ForkResult::Child => Ok(None),
    }
}

/// Ends this process at once with `code`, without running exit handlers inherited from
/// the parent (as a forked child must).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is always safe to call; it does not return.
    unsafe { nix::libc::_exit(code) }
}

/// Runs `hook` when the process exits through `exit` (returning from `main` included),
/// before the descriptors close. Not on `_exit`, `abort` or a fatal signal.
pub(crate) fn at_exit(hook: extern "C" fn()) -> io::Result<()> {
    // SAFETY: `atexit` takes a function pointer with the C ABI and no arguments, which
    // `hook` is; it stays valid for the life of the process (it is a plain function).
    let r = unsafe { nix::libc::atexit(hook) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::other("atexit refused the exit hook"))
    }
}

/// Raises this process's soft limit on open descriptors to its hard limit: the new limit.
pub(crate) fn raise_nofile() -> io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io_err)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io_err)?;
    }
    Ok(hard.max(soft))
}

/// Asks the kernel to kill this process when the thread that created it exits, and dies
/// at once if the parent `parent` is already gone. Async-signal-safe.
pub(crate) fn die_with_parent(parent: u32) -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and no pointers.
    let r = unsafe {
        nix::libc::prctl(
            nix::libc::PR_SET_PDEATHSIG,
            nix::libc::SIGKILL as nix::libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if std::os::unix::process::parent_id() != parent {
        // The parent died before the request took effect.
        exit_now(1);
    }
    Ok(())
}

/// Whether this process is a child subreaper (`PR_GET_CHILD_SUBREAPER`): orphaned
/// descendants are re-parented to it instead of to init.
pub(crate) fn child_subreaper() -> io::Result<bool> {
    let mut flag: nix::libc::c_int = 0;
    // SAFETY: PR_GET_CHILD_SUBREAPER writes one `int` through the pointer, which points at
    // `flag`, alive for the call.
    let r = unsafe {
        nix::libc::prctl(
            nix::libc::PR_GET_CHILD_SUBREAPER,
            &mut flag as *mut nix::libc::c_int as nix::libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flag != 0)
}

/// Makes this process a child subreaper, or stops it being one (`PR_SET_CHILD_SUBREAPER`).
pub(crate) fn set_child_subreaper(on: bool) -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes a flag and no pointers.
    let r = unsafe {
        nix::libc::prctl(
            nix::libc::PR_SET_CHILD_SUBREAPER,
            nix::libc::c_ulong::from(on),
            0,
            0,
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Kills child `pid`, which nothing has reaped (so the pid still names it), and reaps it.
pub(crate) fn kill_child(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as nix::libc::pid_t),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = reap_blocking(pid);
}

/// Waits (blocking) for child `pid` to exit and reaps it.
pub(crate) fn reap_blocking(pid: u32) -> io::Result<()> {
    let pid = nix::unistd::Pid::from_raw(pid as nix::libc::pid_t);
    loop {
        match nix::sys::wait::waitpid(pid, None) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(io_err(e)),
            Ok(
                nix::sys::wait::WaitStatus::Exited(..) | nix::sys::wait::WaitStatus::Signaled(..),
            ) => {
                return Ok(());
            }
            Ok(_) => continue,
        }
    }
}

/// Runs [`die_with_parent`] in the child that `cmd` spawns, before `exec`.
pub(crate) fn die_with_parent_in_child(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: the closure calls prctl, getppid and _exit, all async-signal-safe, and does
    // not allocate on its success path.
    unsafe {
        cmd.pre_exec(move || die_with_parent(parent));
    }
}

/// Arranges for `fd` to stay open across `exec` in the child that `cmd` spawns, and only
/// there: the parent's descriptor stays close-on-exec, so no other child inherits it.
pub(crate) fn inherit_in_child(cmd: &mut Command, fd: RawFd) {
    use std::os::unix::process::CommandExt;
    let clear = move || {
        // SAFETY: runs in the forked child before `exec`, where `fd` is still open (the
        // parent keeps it open until `spawn` returns); F_SETFD is async-signal-safe.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::empty()))
            .map(drop)
            .map_err(io_err)
    };
    // SAFETY: the closure only calls `fcntl`, which is async-signal-safe, and allocates
    // nothing (the error path builds an `io::Error` from an errno, which does not allocate).
    unsafe {
        cmd.pre_exec(clear);
    }
}

/// A pidfd: a descriptor for one process, which stays bound to it even after its pid is
/// reused. Readable once the process exits.
#[derive(Debug)]
pub(crate) struct Pidfd(OwnedFd);

impl Pidfd {
    /// A pidfd for `pid` (`pidfd_open`, Linux 5.3+), close-on-exec and non-blocking.
    pub(crate) fn open(pid: u32) -> io::Result<Pidfd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd =
            unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid as nix::libc::pid_t, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this new descriptor, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io_err)?;
        set_nonblocking(fd.as_fd())?;
        Ok(Pidfd(fd))
    }

    /// Sends `SIGKILL` to the process (`pidfd_send_signal`): never to another process
    /// that reused its pid. Succeeds if the process already exited and was not reaped.
    pub(crate) fn kill(&self) -> io::Result<()> {
        // SAFETY: pidfd_send_signal takes a pidfd, a signal number, a null siginfo (allowed:
        // the kernel fills it in as for `kill`) and flags 0.
        let r = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                nix::libc::SIGKILL,
                std::ptr::null::<nix::libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsRawFd for Pidfd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Reaps child `pid` if it has exited; `Ok(None)` while it runs. Never blocks.
pub(crate) fn try_reap(pid: u32) -> io::Result<Option<ExitStatus>> {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    use std::os::unix::process::ExitStatusExt;
    let pid = nix::unistd::Pid::from_raw(pid as nix::libc::pid_t);
    loop {
        return match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Err(Errno::EINTR) => continue,
            Err(e) => Err(io_err(e)),
            Ok(WaitStatus::Exited(_, code)) => {
                Ok(Some(ExitStatusExt::from_raw((code & 0xff) << 8)))
            }
            Ok(WaitStatus::Signaled(_, sig, core)) => Ok(Some(ExitStatusExt::from_raw(
                sig as i32 | if core { 0x80 } else { 0 },
            ))),
            Ok(_) => Ok(None),
        };
    }
}

// ---------------------------------------------------------------------------------------
// The inherited descriptor, found before `main`.

/// What [`find_inherited`] found: the descriptor and the identity of the socket behind it
/// (device and inode), or why there is none. `None` once taken.
static INHERITED: Mutex<Option<Result<Found, String>>> = Mutex::new(None);

/// An inherited descriptor and the device and inode of the socket behind it.
type Found = (RawFd, (u64, u64));

/// The device and inode of the file behind `fd`.
fn identity(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = nix::sys::stat::fstat(fd).map_err(io_err)?;
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// Runs before `main` (from `.init_array`) in every program that links aiosock, while the
/// process is still single-threaded: if the parent passed an end with `spawn`, checks it,
/// makes it close-on-exec at once (so no child started before [`take_inherited`] inherits
/// it) and removes [`ENV_FD`] from the environment (so no child or re-executed image sees
/// a stale number).
#[used]
// SAFETY: `.init_array` holds pointers to `extern "C" fn()` that the dynamic loader (or
// the C runtime, for static binaries) calls once before `main`; this static is exactly
// such a pointer, and the function it names never unwinds.
#[unsafe(link_section = ".init_array")]
static FIND_INHERITED: extern "C" fn() = find_inherited;

extern "C" fn find_inherited() {
    // Nothing may unwind out of a function the loader calls.
    let _ = std::panic::catch_unwind(|| {
        let Some(value) = std::env::var_os(ENV_FD) else {
            return;
        };
        let found = check_inherited(&value.to_string_lossy());
        *INHERITED.lock().unwrap_or_else(|e| e.into_inner()) = Some(found);
        if thread_count().is_ok_and(|n| n == 1) {
            // SAFETY: the process has one thread (just counted, before `main`), so no
            // other thread can read or write the environment at the same time.
            unsafe { std::env::remove_var(ENV_FD) };
        }
    });
}

/// Checks the value of [`ENV_FD`] and the descriptor it names; makes it close-on-exec.
fn check_inherited(value: &str) -> Result<Found, String> {
    let (fd, parent) = value
        .split_once(':')
        .and_then(|(fd, pid)| Some((fd.parse::<RawFd>().ok()?, pid.parse::<u32>().ok()?)))
        .ok_or_else(|| format!("{ENV_FD}={value:?} is not `<descriptor>:<parent pid>`"))?;
    if parent != std::os::unix::process::parent_id() {
        return Err(format!(
            "{ENV_FD} was set for the children of process {parent}, not of this process's parent"
        ));
    }
    if fd < 3 {
        return Err(format!(
            "descriptor {fd} is one of stdin, stdout and stderr"
        ));
    }
    // SAFETY: `borrow_raw` requires the descriptor to stay open while borrowed. F_GETFD
    // is valid on any number (EBADF when it is not open), and the borrow is only used
    // below once F_GETFD showed it open; nothing runs concurrently before `main`.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let flags = fcntl(borrowed, FcntlArg::F_GETFD)
        .map_err(|e| format!("descriptor {fd} is not open: {}", io_err(e)))?;
    if FdFlag::from_bits_retain(flags).contains(FdFlag::FD_CLOEXEC) {
        // `spawn` clears close-on-exec only in the child; a descriptor that has it was
        // made by this program, not inherited.
        return Err(format!(
            "descriptor {fd} is close-on-exec, so it was not inherited from the parent"
        ));
    }
    if !is_unix_stream(borrowed) {
        return Err(format!("descriptor {fd} is not a Unix stream socket"));
    }
    fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map_err(|e| format!("descriptor {fd}: {}", io_err(e)))?;
    let id = identity(borrowed).map_err(|e| format!("descriptor {fd}: {e}"))?;
    Ok((fd, id))
}

/// Takes the descriptor the parent passed with `spawn`, which [`find_inherited`] checked
/// before `main`. Succeeds at most once per process.
pub(crate) fn take_inherited() -> Result<OwnedFd, String> {
    let found = INHERITED.lock().unwrap_or_else(|e| e.into_inner()).take();
    match found {
        None => Err(format!(
            "{ENV_FD} was not set when this program started, or its end was already adopted"
        )),
        Some(Err(reason)) => Err(reason),
        Some(Ok((fd, id))) => {
            // Code that ran since `main` started may have closed the number, and another
            // file may have taken it: it must still be the same socket.
            // SAFETY: F_GETFD and fstat are valid on any number (EBADF if closed); the
            // borrow is used for these two queries only.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            let same = fcntl(borrowed, FcntlArg::F_GETFD).is_ok()
                && identity(borrowed).is_ok_and(|now| now == id);
            if !same {
                return Err(format!(
                    "descriptor {fd} was closed or replaced after this program started"
                ));
            }
            // SAFETY: `find_inherited` checked that `fd` is an open Unix stream socket
            // inherited from the parent (not close-on-exec, so no part of this program
            // opened it); it is still that socket (same device and inode, checked just
            // above); and it is handed out once (`take` above), so nothing else owns it.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_inherited_unix_stream_sockets_pass_the_check() {
        let parent = std::os::unix::process::parent_id();
        let (read, _write) = nix::unistd::pipe().expect("pipe");
        // A descriptor that is close-on-exec was made here, not inherited.
        fcntl(&read, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).expect("set cloexec");
        let err = check_inherited(&format!("{}:{parent}", read.as_raw_fd())).unwrap_err();
        assert!(err.contains("close-on-exec"), "{err}");
        fcntl(&read, FcntlArg::F_SETFD(FdFlag::empty())).expect("clear cloexec");
        let err = check_inherited(&format!("{}:{parent}", read.as_raw_fd())).unwrap_err();
        assert!(err.contains("not a Unix stream socket"), "{err}");
        let err = check_inherited("2:1").unwrap_err();
        assert!(
            err.contains("not of this process's parent") || err.contains("stdin"),
            "{err}"
        );
        let err = check_inherited(&format!("2:{parent}")).unwrap_err();
        assert!(err.contains("stdin, stdout and stderr"), "{err}");
        let err = check_inherited("x").unwrap_err();
        assert!(err.contains("is not `<descriptor>:<parent pid>`"), "{err}");
    }

    #[test]
    fn an_inherited_socket_passes_and_becomes_close_on_exec() {
        let parent = std::os::unix::process::parent_id();
        let (a, _b) = super::super::socketpair().expect("socketpair");
        fcntl(&a, FcntlArg::F_SETFD(FdFlag::empty())).expect("clear cloexec");
        let (fd, id) = check_inherited(&format!("{}:{parent}", a.as_raw_fd())).expect("passes");
        assert_eq!(fd, a.as_raw_fd());
        assert_eq!(id, identity(a.as_fd()).expect("fstat"));
        let flags = FdFlag::from_bits_retain(fcntl(&a, FcntlArg::F_GETFD).expect("getfd"));
        assert!(flags.contains(FdFlag::FD_CLOEXEC));
    }

    #[test]
    fn a_pidfd_kills_its_own_process() {
        let spawning = super::super::SPAWN_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
        drop(spawning);
        let pidfd = Pidfd::open(child.id()).expect("pidfd");
        pidfd.kill().expect("kill");
        let status = child.wait().expect("wait");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(nix::libc::SIGKILL));
    }
}
