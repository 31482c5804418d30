//! The read buffer of a receiver: bytes read from the socket and not yet decoded, and the
//! descriptors that came with them, kept in the receiver itself so that a cancelled
//! `recv` loses nothing.

use std::io;
use std::os::fd::BorrowedFd;

use crate::sys;
use crate::wire::{Attached, Limits};

/// Bytes read at once when nothing larger is needed.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// A buffer above this capacity is given back to the kernel when the receiver goes idle
/// with nothing buffered, and dropped after a frame much smaller than it.
const KEEP_WHEN_IDLE: usize = 4 * READ_CHUNK;

/// `buf[start..]` holds bytes read and not yet decoded; `fds` the descriptors read and
/// not yet claimed by a frame.
#[derive(Debug)]
pub(crate) struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    fds: Attached,
    limits: Limits,
    /// Bytes needed in `buf[start..]` before decoding can go on.
    need: usize,
    /// The peer's end of the stream was read.
    pub(crate) eof: bool,
    /// The buffer's pages were given back to the kernel since the last read.
    advised: bool,
}

impl ReadBuf {
    pub(crate) fn new(limits: Limits) -> ReadBuf {
        ReadBuf {
            buf: Vec::new(),
            start: 0,
            fds: Attached::default(),
            limits,
            need: 0,
            eof: false,
            advised: false,
        }
    }

    /// The bytes not decoded yet.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// The bytes not decoded yet, and the descriptors not claimed yet.
    #[inline]
    pub(crate) fn parts(&mut self) -> (&[u8], &mut Attached) {
        (&self.buf[self.start..], &mut self.fds)
    }

    /// The descriptors not claimed yet.
    pub(crate) fn fds(&mut self) -> &mut Attached {
        &mut self.fds
    }

    /// The first `n` pending bytes were decoded.
    #[inline]
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
        self.need = 0;
        if self.start == self.buf.len() {
            self.emptied(n);
        }
    }

    /// Every pending byte was decoded, the last frame `n` bytes long.
    #[inline(never)]
    fn emptied(&mut self, n: usize) {
        self.start = 0;
        self.buf.clear();
        if self.buf.capacity() <= KEEP_WHEN_IDLE {
            // Nothing left to decode: the buffer goes to this thread's pool, so that an
            // end between messages keeps none (the next read takes one back).
            recycle(std::mem::take(&mut self.buf));
        } else if n < self.buf.capacity() / 8 {
            // Keep a large buffer while large frames keep coming; drop it after a small
            // one.
            self.buf = Vec::new();
        }
    }

    /// Decoding needs at least `n` pending bytes.
    pub(crate) fn need(&mut self, n: usize) {
        self.need = n;
    }

    /// The capacity of the buffer, for `Debug`.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Drops everything, for good: the bytes, and the descriptors (closed).
    pub(crate) fn clear(&mut self) {
        self.buf = Vec::new();
        self.start = 0;
        self.need = 0;
        self.fds.clear();
    }

    /// Makes room for the next read. The buffer grows with the bytes that actually arrive
    /// (doubling towards what the next step needs), not with what a header announces, and
    /// nothing is zero-filled.
    fn reserve(&mut self) {
        if self.buf.capacity() == 0 {
            self.buf = pooled();
        }
        let spare = self.buf.capacity() - self.buf.len();
        let needs_room = self.start + self.need > self.buf.capacity();
        if self.start > 0 && (spare < READ_CHUNK / 2 || needs_room) {
            // Drop the decoded bytes before growing, so that the buffer never holds more
            // than the frame being read and one read's worth.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        let goal = (self.start + self.need).max(len + 1);
        let want = goal
            .min((2 * len).max(READ_CHUNK))
            .max(len + READ_CHUNK / 16)
            .max(READ_CHUNK);
        if self.buf.capacity() < want {
            self.buf.reserve_exact(want - len);
        }
    }

    /// Reads what the socket holds into the buffer, once, without blocking. Returns
    /// whether the read proved the socket drained. At the end of the stream (also after a
    /// reset: what the peer sent was all received) `eof` is set.
    pub(crate) fn fill_from(&mut self, fd: BorrowedFd<'_>) -> io::Result<bool> {
        self.reserve();
        match sys::recv_spare(fd, &mut self.buf) {
            Ok(got) if got.len == 0 => {
                self.eof = true;
                Ok(false)
            }
            Ok(got) => {
                self.advised = false;
                let drained = got.drained();
                self.fds.read(got.len, got.fds, got.truncated, &self.limits);
                Ok(drained)
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                self.eof = true;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The receiver is about to wait: if nothing is buffered, an ordinary buffer goes to
    /// the thread's pool, and a large buffer's memory is given back to the kernel (one maximum-size frame must not pin its memory while the
    /// end is idle). The allocation itself stays, so a stream of large frames reuses it
    /// without page faults as long as the system has memory to spare (`MADV_FREE`).
    pub(crate) fn idle(&mut self) {
        if self.start == self.buf.len() && self.buf.capacity() <= KEEP_WHEN_IDLE {
            // Nothing buffered: the buffer goes to this thread's pool, for whichever end
            // reads next (an idle end keeps none).
            self.start = 0;
            recycle(std::mem::take(&mut self.buf));
            return;
        }
        if self.start == self.buf.len() && self.buf.capacity() > KEEP_WHEN_IDLE && !self.advised {
            self.buf.clear();
            self.start = 0;
            sys::advise_free(&mut self.buf);
            self.advised = true;
        }
    }
}

/// Read buffers a thread keeps for its receivers, at most.
const POOL: usize = 4;

thread_local! {
    /// Emptied read buffers, for the next receiver that reads on this thread.
    static BUFFERS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty read buffer: one this thread pooled, or none yet (it grows on the read).
fn pooled() -> Vec<u8> {
    BUFFERS
        .try_with(|pool| pool.try_borrow_mut().ok()?.pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Keeps an empty read buffer for this thread's next read, if the pool has room.
fn recycle(mut buf: Vec<u8>) {
    if buf.capacity() == 0 {
        return;
    }
    buf.clear();
    let _ = BUFFERS.try_with(|pool| {
        if let Ok(mut pool) = pool.try_borrow_mut()
            && pool.len() < POOL
        {
            pool.push(buf);
        }
    });
}
