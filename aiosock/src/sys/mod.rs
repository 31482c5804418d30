//! The OS layer: the only module with raw descriptors and `unsafe`.
//!
//! Everything above it works with `OwnedFd`/`BorrowedFd` and the safe functions here.
//! Every descriptor made here is close-on-exec (`SOCK_CLOEXEC`), non-blocking, and every
//! write uses `MSG_NOSIGNAL`, so a closed peer is an `EPIPE` error, never a `SIGPIPE`.

#![allow(unsafe_code)]

#[cfg(unix)]
mod unix;

#[cfg(unix)]
pub(crate) use unix::*;

pub(crate) mod alloc;
