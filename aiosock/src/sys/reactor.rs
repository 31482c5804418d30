//! Registration with the Tokio reactor.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::Socket;

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

/// Registers `fd` with the current runtime's reactor.
///
/// For `interest`. An end's socket is registered for reading, and by default for writing
/// too, although nothing waits for that here: the socket becomes writable every time the
/// peer reads, and the event for it wakes the process, which on a virtual machine shortens
/// the next wake-up (see `Config::set_woken_by_peer_reads`). A writer that finds the
/// socket full registers a duplicate for writing while it waits ([`register_owned`]).
///
/// # Panics
///
/// Outside a Tokio runtime with I/O enabled.
#[track_caller]
pub(crate) fn register(fd: Arc<Socket>, interest: Interest) -> io::Result<AsyncFd<SharedFd>> {
    // SAFETY: `SharedFd` holds an `Arc<Socket>` (an owned descriptor), so the descriptor
    // stays open and refers to the same file description for as long as the `AsyncFd`
    // owns it, and `as_raw_fd` always returns that one descriptor.
    unsafe { AsyncFd::register_with_interest(SharedFd(fd), interest) }.map_err(io::Error::from)
}

/// Registers an owned descriptor with the current runtime's reactor for `interest`.
///
/// # Panics
///
/// Outside a Tokio runtime with I/O enabled.
#[track_caller]
pub(crate) fn register_owned<T: AsRawFd>(fd: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    // SAFETY: callers pass an owning type (`OwnedFd`, `Socket`, `Pidfd`): the `AsyncFd`
    // owns it, so the descriptor stays open until the `AsyncFd` is dropped or unwrapped,
    // and `as_raw_fd` always returns that same descriptor.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
}
