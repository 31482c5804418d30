//! Linux / Unix implementation of the OS layer.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{AddressFamily, MsgFlags, Shutdown, SockFlag, SockType};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

fn io_err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// A connected pair of Unix stream sockets, both close-on-exec and non-blocking.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::sys::socket::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )
    .map_err(io_err)
}

/// One non-blocking `send` that never raises `SIGPIPE`.
pub(crate) fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        match nix::sys::socket::send(
            fd.as_raw_fd(),
            buf,
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        ) {
            Err(Errno::EINTR) => continue,
            other => return other.map_err(io_err),
        }
    }
}

/// One non-blocking `recv`.
pub(crate) fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::sys::socket::recv(fd.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
            Err(Errno::EINTR) => continue,
            other => return other.map_err(io_err),
        }
    }
}

/// Shuts down the sending direction: the peer reads end-of-file after what was sent.
pub(crate) fn shutdown_write(fd: BorrowedFd<'_>) {
    // Errors (ENOTCONN once the peer is gone) leave nothing to do.
    let _ = nix::sys::socket::shutdown(fd.as_raw_fd(), Shutdown::Write);
}

/// Shuts down the receiving direction: the peer's further sends fail with `EPIPE`.
pub(crate) fn shutdown_read(fd: BorrowedFd<'_>) {
    let _ = nix::sys::socket::shutdown(fd.as_raw_fd(), Shutdown::Read);
}

/// Whether the peer can still receive: a zero-length send fails with `EPIPE` once the
/// peer closed its socket or shut its receiving direction down (and once this side shut
/// its sending direction down). Sends no bytes.
pub(crate) fn peer_can_receive(fd: BorrowedFd<'_>) -> bool {
    match send(fd, &[]) {
        Ok(_) => true,
        Err(e) => !matches!(
            e.raw_os_error().map(Errno::from_raw),
            Some(Errno::EPIPE | Errno::ECONNRESET | Errno::ENOTCONN)
        ),
    }
}

/// Writes all of `buf`, waiting for the socket with `poll` until `deadline`.
///
/// Used where no runtime is left to wait with: when an end's runtime shuts down with
/// bytes still queued (the linger of [`Config::linger`](crate::Config::linger)).
pub(crate) fn send_all_blocking(
    fd: BorrowedFd<'_>,
    mut buf: &[u8],
    deadline: Instant,
) -> io::Result<()> {
    while !buf.is_empty() {
        match send(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
                let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                match poll(&mut fds, PollTimeout::from(ms)) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => return Err(io_err(e)),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Makes `fd` non-blocking.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(io_err)?;
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(io_err)?;
    Ok(())
}

/// Whether `fd` is a Unix stream socket.
pub(crate) fn is_unix_stream(fd: BorrowedFd<'_>) -> bool {
    use nix::sys::socket::{UnixAddr, getsockname, getsockopt, sockopt};
    let stream = getsockopt(&fd, sockopt::SockType).is_ok_and(|t| t == SockType::Stream);
    stream && getsockname::<UnixAddr>(fd.as_raw_fd()).is_ok()
}

/// Takes ownership of the inherited descriptor `raw`, after checking that it is an open
/// Unix stream socket. The descriptor is made close-on-exec again, so it leaks no further.
pub(crate) fn adopt_inherited(raw: RawFd) -> io::Result<OwnedFd> {
    if raw < 3 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is one of stdin, stdout and stderr",
        ));
    }
    // SAFETY: `borrow_raw` requires the descriptor to stay open while borrowed. F_GETFD
    // is valid on any number (EBADF when it is not open), and the borrow is only used
    // below once F_GETFD showed it open; nothing in this single call path closes it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    fcntl(borrowed, FcntlArg::F_GETFD).map_err(io_err)?;
    if !is_unix_stream(borrowed) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is not a Unix stream socket",
        ));
    }
    // SAFETY: the descriptor is open and a Unix stream socket (checked above), the parent
    // handed it to this process for aiosock (the environment variable names it), and the
    // caller adopts it at most once per process, so nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io_err)?;
    Ok(fd)
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

/// An owned descriptor shared between the reactor registration and the rest of an end.
/// It stays open while any clone of the `Arc` lives.
#[derive(Debug)]
pub(crate) struct SharedFd(Arc<Socket>);

impl AsRawFd for SharedFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl AsFd for SharedFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Registers `fd` with the current runtime's reactor for reading only.
///
/// Write readiness is not watched here: the socket becomes writable every time the peer
/// reads, and an event for each would wake the process for nothing. A writer that finds
/// the socket full registers a duplicate for writing while it waits
/// ([`register_owned`]).
///
/// # Panics
///
/// Outside a Tokio runtime with I/O enabled.
#[track_caller]
pub(crate) fn register(fd: Arc<Socket>) -> io::Result<AsyncFd<SharedFd>> {
    // SAFETY: `SharedFd` holds an `Arc<Socket>` (an owned descriptor), so the descriptor
    // stays open and refers to the same file description for as long as the `AsyncFd`
    // owns it, and `as_raw_fd` always returns that one descriptor.
    unsafe { AsyncFd::register_with_interest(SharedFd(fd), Interest::READABLE) }
        .map_err(io::Error::from)
}

// ---------------------------------------------------------------------------------------
// Every socket of an end is registered while it is open, so that a forked child can let
// go of all of them but its own.

/// The descriptors of the aiosock sockets open in this process.
static LIVE: std::sync::Mutex<std::collections::BTreeSet<RawFd>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn live() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<RawFd>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// An end's socket. Registered while open (see [`release_other_sockets`]).
#[derive(Debug)]
pub(crate) struct Socket(Option<OwnedFd>);

impl Socket {
    pub(crate) fn new(fd: OwnedFd) -> Socket {
        live().insert(fd.as_raw_fd());
        Socket(Some(fd))
    }

    pub(crate) fn into_fd(mut self) -> OwnedFd {
        let fd = self
            .0
            .take()
            .expect("a socket holds its descriptor until dropped");
        live().remove(&fd.as_raw_fd());
        fd
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0
            .as_ref()
            .expect("a socket holds its descriptor until dropped")
            .as_fd()
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        if let Some(fd) = self.0.take() {
            // Unregister while the number is still ours, then close.
            live().remove(&fd.as_raw_fd());
            drop(fd);
        }
    }
}

/// In a forked child: makes every registered socket but `keep` let go of its connection.
///
/// Each descriptor is replaced by `/dev/null` (with `dup2`) rather than closed, so the
/// parent's objects that the child still holds can drop their descriptor normally.
pub(crate) fn release_other_sockets(keep: RawFd) -> io::Result<()> {
    let null = std::fs::File::open("/dev/null")?;
    for &fd in live().iter().filter(|&&fd| fd != keep) {
        // SAFETY: `fd` is registered, so an aiosock `Socket` owns it and it is open; dup2
        // atomically replaces the open file behind that number, which stays valid for the
        // owner (it now refers to /dev/null, opened close-on-exec by std).
        let r = unsafe { nix::libc::dup2(null.as_raw_fd(), fd) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // dup2 clears close-on-exec on the new descriptor: set it again.
        // SAFETY: `fd` was just made a valid descriptor by dup2 and stays owned by its Socket.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io_err)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Processes.

/// The number of threads in this process, from `/proc/self/task`.
pub(crate) fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// The two sides of a fork.
pub(crate) enum Fork {
    Parent(u32),
    Child,
}

/// Forks this process, which must be single-threaded.
///
/// Returns an error instead of forking if the process has more than one thread; the
/// count and the fork happen on this thread with no other thread alive to start one in
/// between.
pub(crate) fn fork_single_threaded() -> Result<Fork, crate::Error> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(crate::Error::ForkThreads { threads });
    }
    // SAFETY: nix requires that in a multi-threaded program the child only calls
    // async-signal-safe functions. This process has exactly one thread (checked just
    // above, and only this thread could have started another since), so the child is an
    // ordinary single-threaded copy and may do anything, including allocate.
    match unsafe { nix::unistd::fork() }.map_err(io_err)? {
        nix::unistd::ForkResult::Parent { child } => Ok(Fork::Parent(child.as_raw() as u32)),
        nix::unistd::ForkResult::Child => Ok(Fork::Child),
    }
}

/// Ends this process at once with `code`, without running exit handlers inherited from
/// the parent (as a forked child must).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is always safe to call; it does not return.
    unsafe { nix::libc::_exit(code) }
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

/// A descriptor that becomes readable when process `pid` exits (`pidfd_open`, Linux 5.3+).
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid as nix::libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this new descriptor, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io_err)?;
    set_nonblocking(fd.as_fd())?;
    Ok(fd)
}

/// Registers an owned descriptor with the current runtime's reactor for `interest`.
///
/// # Panics
///
/// Outside a Tokio runtime with I/O enabled.
#[track_caller]
pub(crate) fn register_owned<T: AsRawFd>(fd: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    // SAFETY: callers pass an owning type (`OwnedFd`, `Socket`): the `AsyncFd` owns it, so
    // the descriptor stays open until the `AsyncFd` is dropped or unwrapped, and
    // `as_raw_fd` always returns that same descriptor.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
}

/// Reaps child `pid` if it has exited; `Ok(None)` while it runs.
pub(crate) fn try_reap(pid: u32, block: bool) -> io::Result<Option<std::process::ExitStatus>> {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    use std::os::unix::process::ExitStatusExt;
    let flags = if block {
        None
    } else {
        Some(WaitPidFlag::WNOHANG)
    };
    let pid = nix::unistd::Pid::from_raw(pid as nix::libc::pid_t);
    loop {
        return match waitpid(pid, flags) {
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

/// Sends `SIGKILL` to `pid`.
pub(crate) fn kill(pid: u32) -> io::Result<()> {
    let pid = nix::unistd::Pid::from_raw(pid as nix::libc::pid_t);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unix_stream_sockets_are_adopted() {
        let (read, write) = nix::unistd::pipe().expect("pipe");
        let err = adopt_inherited(read.as_raw_fd()).expect_err("a pipe is not a socket");
        assert!(
            err.to_string().contains("not a Unix stream socket"),
            "{err}"
        );
        // The pipe was not taken over: it is still open and ours.
        assert!(fcntl(&write, FcntlArg::F_GETFD).is_ok());
        assert!(fcntl(&read, FcntlArg::F_GETFD).is_ok());
        let err = adopt_inherited(2).expect_err("stderr");
        assert!(
            err.to_string().contains("stdin, stdout and stderr"),
            "{err}"
        );
    }

    #[test]
    fn a_zero_length_send_tells_whether_the_peer_can_receive() {
        let (a, b) = socketpair().expect("socketpair");
        assert!(peer_can_receive(a.as_fd()));
        shutdown_read(b.as_fd());
        assert!(!peer_can_receive(a.as_fd()));
        let (c, d) = socketpair().expect("socketpair");
        drop(d);
        assert!(!peer_can_receive(c.as_fd()));
    }

    #[test]
    fn sockets_are_close_on_exec_and_non_blocking() {
        let (a, _b) = socketpair().expect("socketpair");
        let fd_flags = FdFlag::from_bits_retain(fcntl(&a, FcntlArg::F_GETFD).expect("getfd"));
        assert!(fd_flags.contains(FdFlag::FD_CLOEXEC));
        let fl = OFlag::from_bits_retain(fcntl(&a, FcntlArg::F_GETFL).expect("getfl"));
        assert!(fl.contains(OFlag::O_NONBLOCK));
    }
}
