//! The registry of live sockets: every socket of an end is registered while it is open,
//! so that a forked child can let go of all of them but its own.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

use super::socket::io_err;

/// The descriptors of the aiosock sockets open in this process.
static LIVE: Mutex<BTreeSet<RawFd>> = Mutex::new(BTreeSet::new());

fn live() -> MutexGuard<'static, BTreeSet<RawFd>> {
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

    /// A duplicate of this socket (close-on-exec), registered in turn.
    pub(crate) fn try_clone(&self) -> io::Result<Socket> {
        Ok(Socket::new(self.as_fd().try_clone_to_owned()?))
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
        // SAFETY: `fd` is registered, so an aiosock `Socket` owns it and it is open.
        unsafe { point_at(fd, &null) }?;
    }
    Ok(())
}

/// In a forked child that never returns to the owner of `fd`: lets go of the file behind
/// it the same way, pointing it at `/dev/null`.
pub(crate) fn release_fd(fd: BorrowedFd<'_>) -> io::Result<()> {
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: `fd` is borrowed, so it is open and its owner outlives this call; the owner
    // then holds `/dev/null` behind the same number, which it drops normally.
    unsafe { point_at(fd.as_raw_fd(), &null) }
}

/// Replaces the open file behind `fd` with `null`'s, close-on-exec.
///
/// # Safety
///
/// `fd` must be an open descriptor whose owner may find another file behind it.
unsafe fn point_at(fd: RawFd, null: &std::fs::File) -> io::Result<()> {
    // SAFETY: `fd` is open (the caller's promise); dup2 atomically replaces the open file
    // behind that number, which stays valid for its owner (it now refers to /dev/null,
    // opened close-on-exec by std).
    let r = unsafe { nix::libc::dup2(null.as_raw_fd(), fd) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // dup2 clears close-on-exec on the new descriptor: set it again.
    // SAFETY: `fd` was just made a valid descriptor by dup2 and stays with its owner.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io_err)?;
    Ok(())
}
