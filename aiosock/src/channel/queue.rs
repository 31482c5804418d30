//! The outgoing queue as segments: small frames are copied together into shared segments
//! (one system call carries many of them), and a large frame stays in the buffer it was
//! encoded into, moved rather than copied, so that it is copied once on its way to the
//! kernel. The writer hands a batch of segments to the kernel with one vectored send.
//!
//! A frame that carries descriptors starts a segment of its own, which holds them, and a
//! send never reaches past the start of the next such segment: so each `sendmsg` that
//! passes descriptors starts with the frame they belong to and carries only its
//! descriptors, as the receiver checks (see `wire::Attached`). The frames after it may
//! share its segment.

use std::collections::VecDeque;
use std::io;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::sys;

/// A frame of this size or more is queued in its own buffer (moved, not copied).
const OWN_SEGMENT_FROM: usize = 8 * 1024;
/// Small frames are gathered into segments of up to this size.
const SMALL_SEGMENT: usize = 64 * 1024;
/// Segments handed to the kernel in one system call, at most.
const MAX_IOVECS: usize = 64;
/// Emptied small segments kept for reuse.
const POOL: usize = 4;
/// Emptied large segments kept for reuse, so that a stream of large messages encodes into
/// memory it already has (no allocation, no page faults per message).
const BIG_POOL: usize = 2;

/// Bytes to hand to the kernel, and the descriptors that go with their first byte.
#[derive(Debug, Default)]
struct Seg {
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
}

/// Whole frames, in order.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    segs: VecDeque<Seg>,
    /// Bytes in `segs`.
    bytes: usize,
    /// Emptied small segments, for reuse.
    pool: Vec<Vec<u8>>,
    /// Emptied large segments, for the next large messages to be encoded into.
    big_pool: Vec<Vec<u8>>,
}

impl Queue {
    /// Bytes queued.
    pub(crate) fn len(&self) -> usize {
        self.bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Appends one whole frame, and the descriptors `fds` it carries (taken, leaving
    /// `fds` empty). A large frame is taken out of `frame`, which gets an emptied large
    /// buffer back if the queue has one (else it is left empty); a small one is copied, and
    /// `frame` keeps its buffer for the next message.
    pub(crate) fn push(&mut self, frame: &mut Vec<u8>, fds: &mut Vec<OwnedFd>) {
        self.bytes += frame.len();
        let fds = std::mem::take(fds);
        if frame.len() >= OWN_SEGMENT_FROM {
            let recycled = self.big_pool.pop().unwrap_or_default();
            self.segs.push_back(Seg {
                bytes: std::mem::replace(frame, recycled),
                fds,
            });
            return;
        }
        match self.segs.back_mut() {
            Some(last)
                if fds.is_empty()
                    && last.bytes.len() < OWN_SEGMENT_FROM
                    && last.bytes.len() + frame.len() <= SMALL_SEGMENT =>
            {
                last.bytes.extend_from_slice(frame);
            }
            _ => {
                let mut bytes = self
                    .pool
                    .pop()
                    .unwrap_or_else(|| Vec::with_capacity(SMALL_SEGMENT / 4));
                bytes.extend_from_slice(frame);
                self.segs.push_back(Seg { bytes, fds });
            }
        }
        frame.clear();
    }
}

/// The bytes being handed to the kernel: the segments taken from the queue, of which the
/// first has `sent` bytes written already.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    segs: VecDeque<Seg>,
    sent: usize,
    /// Emptied segments, small and large, to give back to the queue.
    spare: Vec<Vec<u8>>,
    spare_big: Vec<Vec<u8>>,
}

impl Batch {
    /// Whether every byte taken was handed to the kernel.
    pub(crate) fn is_done(&self) -> bool {
        self.segs.is_empty()
    }

    /// Takes everything `queue` holds (the batch must be done), and gives the queue the
    /// emptied small segments for reuse.
    pub(crate) fn take_from(&mut self, queue: &mut Queue) {
        debug_assert!(self.is_done());
        std::mem::swap(&mut self.segs, &mut queue.segs);
        queue.bytes = 0;
        self.sent = 0;
        while queue.pool.len() < POOL {
            let Some(seg) = self.spare.pop() else { break };
            queue.pool.push(seg);
        }
        while queue.big_pool.len() < BIG_POOL {
            let Some(seg) = self.spare_big.pop() else {
                break;
            };
            queue.big_pool.push(seg);
        }
        self.spare.clear();
        self.spare_big.clear();
    }

    /// One vectored, non-blocking send of what is left, up to the next segment that
    /// carries descriptors (the first segment's go with this send): the bytes the kernel
    /// took. Once any byte of a segment is written, its descriptors are in the kernel, and
    /// this end's duplicates are closed.
    pub(crate) fn send_some(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        let mut iov: [IoSlice<'_>; MAX_IOVECS] = [IoSlice::new(&[]); MAX_IOVECS];
        let mut n = 0;
        for (i, seg) in self.segs.iter().take(MAX_IOVECS).enumerate() {
            if i > 0 && !seg.fds.is_empty() {
                break;
            }
            let from = if i == 0 { self.sent } else { 0 };
            iov[i] = IoSlice::new(&seg.bytes[from..]);
            n = i + 1;
        }
        let fds: Vec<RawFd> = match self.segs.front() {
            Some(first) => first.fds.iter().map(AsRawFd::as_raw_fd).collect(),
            None => Vec::new(),
        };
        let written = sys::send_vectored_with_fds(fd, &iov[..n], &fds)?;
        if written > 0
            && let Some(first) = self.segs.front_mut()
        {
            first.fds.clear();
        }
        self.advance(written);
        Ok(written)
    }

    /// `n` more bytes were written: drop the segments that are done.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(first) = self.segs.front() else {
                break;
            };
            let left = first.bytes.len() - self.sent;
            if n < left {
                self.sent += n;
                return;
            }
            n -= left;
            self.sent = 0;
            if let Some(Seg {
                bytes: mut done, ..
            }) = self.segs.pop_front()
            {
                done.clear();
                if done.capacity() <= SMALL_SEGMENT {
                    if self.spare.len() < POOL {
                        self.spare.push(done);
                    }
                } else if self.spare_big.len() < BIG_POOL {
                    self.spare_big.push(done);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_frames_share_segments_and_large_ones_are_moved() {
        let mut queue = Queue::default();
        let mut small = vec![1u8; 100];
        queue.push(&mut small, &mut Vec::new());
        assert!(
            small.is_empty() && small.capacity() >= 100,
            "a small frame is copied"
        );
        small.extend([1u8; 100]);
        queue.push(&mut small, &mut Vec::new());
        let mut large = vec![2u8; OWN_SEGMENT_FROM];
        let ptr = large.as_ptr();
        queue.push(&mut large, &mut Vec::new());
        assert_eq!(large.capacity(), 0, "a large frame is moved");
        assert_eq!(queue.segs.len(), 2);
        assert_eq!(queue.segs[1].bytes.as_ptr(), ptr);
        assert_eq!(queue.len(), 200 + OWN_SEGMENT_FROM);
    }

    #[test]
    fn partial_writes_keep_the_order_across_segments() {
        let (a, b) = sys::socketpair().expect("socketpair");
        let mut queue = Queue::default();
        let mut expected = Vec::new();
        for i in 0..200u32 {
            let mut frame = vec![i as u8; (i as usize * 97) % 20_000];
            expected.extend_from_slice(&frame);
            queue.push(&mut frame, &mut Vec::new());
        }
        let mut batch = Batch::default();
        batch.take_from(&mut queue);
        assert!(queue.is_empty());
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        use std::os::fd::AsFd;
        while !batch.is_done() {
            match batch.send_some(a.as_fd()) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            // Drain some (not all) of what arrived, so that sends are partial.
            if let Ok(n) = sys::recv(b.as_fd(), &mut buf[..7_777]) {
                got.extend_from_slice(&buf[..n]);
            }
        }
        while let Ok(n) = sys::recv(b.as_fd(), &mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, expected);
    }
}
