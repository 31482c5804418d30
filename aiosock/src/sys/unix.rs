//! Linux / Unix implementation of the OS layer.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::process::Command;
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

/// Whether the peer can no longer receive (`POLLHUP` or `POLLERR` on the socket).
pub(crate) fn peer_hung_up(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(_) => fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR)),
        Err(_) => false,
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
    use nix::sys::socket::{getsockname, getsockopt, sockopt, UnixAddr};
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
pub(crate) struct SharedFd(Arc<OwnedFd>);

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

/// Registers `fd` with the current runtime's reactor for reading and writing.
///
/// # Panics
///
/// Outside a Tokio runtime with I/O enabled.
#[track_caller]
pub(crate) fn register(fd: Arc<OwnedFd>) -> io::Result<AsyncFd<SharedFd>> {
    // SAFETY: `SharedFd` holds an `Arc<OwnedFd>`, so the descriptor stays open and refers
    // to the same file description for as long as the `AsyncFd` owns it, and
    // `as_raw_fd` always returns that one descriptor.
    unsafe { AsyncFd::register_with_interest(SharedFd(fd), Interest::READABLE | Interest::WRITABLE) }
        .map_err(io::Error::from)
}
