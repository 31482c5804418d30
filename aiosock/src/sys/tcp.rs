//! TCP socket options: keepalive with aiosock's timings (Tokio sets `TCP_NODELAY` itself,
//! but has no keepalive timings for a connected stream).

use std::io;
use std::os::fd::BorrowedFd;

use nix::sys::socket::{setsockopt, sockopt};

use super::socket::io_err;

/// Seconds a connection is idle before the first keepalive probe.
pub(crate) const KEEPALIVE_IDLE: u32 = 60;
/// Seconds between unanswered probes.
pub(crate) const KEEPALIVE_INTERVAL: u32 = 10;
/// Unanswered probes after which the connection is dropped (so a dead host is seen after
/// about 60 + 6 × 10 = 120 s of silence).
pub(crate) const KEEPALIVE_COUNT: u32 = 6;

/// Turns keepalive on with the timings above.
pub(crate) fn set_keepalive(fd: BorrowedFd<'_>) -> io::Result<()> {
    setsockopt(&fd, sockopt::KeepAlive, &true).map_err(io_err)?;
    setsockopt(&fd, sockopt::TcpKeepIdle, &KEEPALIVE_IDLE).map_err(io_err)?;
    setsockopt(&fd, sockopt::TcpKeepInterval, &KEEPALIVE_INTERVAL).map_err(io_err)?;
    setsockopt(&fd, sockopt::TcpKeepCount, &KEEPALIVE_COUNT).map_err(io_err)?;
    Ok(())
}
