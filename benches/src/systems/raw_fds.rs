//! `raw-buffered` in the `fds` workload: the simplest honest descriptor passing over the
//! blocking socketpair the raw baseline has (see `raw`), without a runtime or a framing
//! library.
//!
//! A message is one `sendmsg` of the 8-byte little-endian sequence number with the
//! descriptor as `SCM_RIGHTS`; the receiver takes it with one `recvmsg` of 8 bytes with
//! room for one descriptor (`MSG_CMSG_CLOEXEC`). Nothing is buffered: descriptors ride on
//! the first byte of their `sendmsg`, so each message is its own system call (the same as
//! for every system in this workload). `Ready` is the one byte [`READY`] the other way, and
//! the end is `shutdown(Write)`.
//!
//! Descriptors are received through `aiosock::__private::recv_with_fds` (a blocking
//! `recvmsg` with a control buffer), so that no `unsafe` is needed here.

use std::io::{IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

use crate::BoxError;
use crate::resource::{FdSource, Tally};
use crate::workload::{Outcome, Role, Stream};

/// The byte a receiver sends when it is reading.
const READY: u8 = b'R';

/// Plays a sender or receiver of the `fds` workload over `socket`.
pub(super) fn play(socket: UnixStream, role: &Role) -> Result<Outcome, BoxError> {
    match role {
        Role::Send(stream) => send(socket, stream),
        Role::Recv(stream) => recv(socket, stream),
        _ => Err("the raw descriptor stream has only a sender and a receiver".into()),
    }
}

fn send(mut socket: UnixStream, stream: &Stream) -> Result<Outcome, BoxError> {
    let source = FdSource::open()?;
    let mut ready = [0];
    socket.read_exact(&mut ready)?;
    if ready != [READY] {
        return Err(format!("expected Ready, got byte {}", ready[0]).into());
    }
    for seq in 0..stream.per_sender {
        let fd = source.next()?;
        send_one(&socket, seq, fd.as_raw_fd())?;
        drop(fd);
    }
    socket.shutdown(Shutdown::Write)?;
    Ok(Outcome::default())
}

/// Sends `seq` with `fd` attached to its first byte; the rest, if the kernel took only
/// part, without.
fn send_one(socket: &UnixStream, seq: u64, fd: RawFd) -> Result<(), BoxError> {
    let bytes = seq.to_le_bytes();
    let fds = [fd];
    let sent = loop {
        match sendmsg::<()>(
            socket.as_raw_fd(),
            &[IoSlice::new(&bytes)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        ) {
            Err(Errno::EINTR) => continue,
            result => break result?,
        }
    };
    let mut writer = socket;
    writer.write_all(&bytes[sent..])?;
    Ok(())
}

fn recv(mut socket: UnixStream, stream: &Stream) -> Result<Outcome, BoxError> {
    let mut tally = Tally::new(stream)?;
    socket.write_all(&[READY])?;
    let start = Instant::now();
    while tally.remaining() > 0 {
        match recv_one(&socket)? {
            Some((seq, fd)) => tally.fd(seq, fd.as_fd())?,
            None => break,
        }
    }
    let elapsed = start.elapsed();
    tally.check_end()?;
    match recv_one(&socket)? {
        None => Ok(Outcome::timed(elapsed)),
        Some((seq, _)) => Err(format!("expected the close, got descriptor {seq}").into()),
    }
}

/// The next message: its sequence number and its one descriptor, or `None` at a clean end
/// of stream (between messages). Reads with one `recvmsg` per message (through
/// `aiosock::__private::recv_with_fds`, a plain blocking `recvmsg` with a control buffer,
/// so that no `unsafe` is needed here).
fn recv_one(socket: &UnixStream) -> Result<Option<(u64, OwnedFd)>, BoxError> {
    let mut bytes = Vec::with_capacity(8);
    let mut fds = Vec::new();
    while bytes.len() < 8 {
        // Never read past this message: room for what is left of it only.
        let mut want = Vec::with_capacity(8 - bytes.len());
        let (n, got) = match aiosock::__private::recv_with_fds(socket.as_fd(), &mut want) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(Errno::EMSGSIZE as i32) => {
                return Err("descriptors were cut off (MSG_CTRUNC)".into());
            }
            result => result?,
        };
        fds.extend(got);
        match n {
            0 if bytes.is_empty() && fds.is_empty() => return Ok(None),
            0 => {
                let filled = bytes.len();
                return Err(format!("the peer closed after {filled} bytes of a message").into());
            }
            _ => bytes.extend_from_slice(&want[..n]),
        }
    }
    let seq = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
    let mut fds = fds.into_iter();
    match (fds.next(), fds.next()) {
        (Some(fd), None) => Ok(Some((seq, fd))),
        (None, _) => Err(format!("message {seq} came without a descriptor").into()),
        (Some(_), Some(_)) => Err(format!("message {seq} came with several descriptors").into()),
    }
}
