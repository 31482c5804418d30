//! The outgoing queue as segments: small frames are copied together into shared segments
//! (one system call carries many of them), and a large frame stays in the buffer it was
//! encoded into, moved rather than copied, so that it is copied once on its way to the
//! kernel. The writer hands a batch of segments to the kernel with one vectored send.
//!
//! A frame that carries descriptors is gathered like any other; its segment records them
//! with the offset of the frame's first byte. A send passes the descriptors of the frames
//! that begin near its start, in order, as the wire format lays down and the receiver
//! checks (see `wire::Attached`), so many frames with descriptors go in one system call.

use std::collections::VecDeque;
use std::io;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::{sys, wire};

/// A frame of this size or more is queued in its own buffer (moved, not copied).
const OWN_SEGMENT_FROM: usize = 8 * 1024;
/// Small frames are gathered into segments of up to this size.
const SMALL_SEGMENT: usize = 64 * 1024;
/// Segments handed to the kernel in one system call, at most.
const MAX_IOVECS: usize = 64;
/// Emptied small segments kept for reuse, per thread (shared by every end the thread
/// writes for, so that an idle end keeps none).
const POOL: usize = 8;
/// Emptied large segments kept for reuse, so that a stream of large messages encodes into
/// memory it already has (no allocation, no page faults per message).
const BIG_POOL: usize = 2;

/// Bytes to hand to the kernel, and the descriptors of the frames among them: each with
/// the offset of its frame's first byte, in order. The bytes are `bytes`, or, for the
/// bytes of a message's byte field sent from the message's own buffer, `held` (then
/// `bytes` is empty and no frame begins in the segment).
#[derive(Debug, Default)]
struct Seg {
    bytes: Vec<u8>,
    /// A queue: the first are passed, and let go of, first (a segment of small frames
    /// can hold thousands).
    fds: VecDeque<(usize, FrameFds)>,
    held: Option<sys::Held>,
}

/// The descriptors of one frame, in index order: duplicates the queue owns (closed once
/// passed), or, for a message sent with its own descriptors, those mixed with the
/// message's ([`sys::LentFd`]: kept open by the message, queued until they are passed).
#[derive(Debug)]
enum FrameFds {
    Owned(Vec<OwnedFd>),
    Mixed(Vec<OutFd>),
}

/// One descriptor of a [`FrameFds::Mixed`].
#[derive(Debug)]
enum OutFd {
    Owned(OwnedFd),
    Lent(sys::LentFd),
}

impl FrameFds {
    fn len(&self) -> usize {
        match self {
            FrameFds::Owned(fds) => fds.len(),
            FrameFds::Mixed(fds) => fds.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the descriptors' numbers to `raw`, in order.
    fn extend_raw(&self, raw: &mut Vec<RawFd>) {
        match self {
            FrameFds::Owned(fds) => raw.extend(fds.iter().map(AsRawFd::as_raw_fd)),
            FrameFds::Mixed(fds) => raw.extend(fds.iter().map(|fd| match fd {
                OutFd::Owned(fd) => fd.as_raw_fd(),
                OutFd::Lent(fd) => fd.raw(),
            })),
        }
    }

    /// The duplicates `owned` and the message's own descriptors `lent` (each with its
    /// index among the frame's), in index order.
    fn merged(owned: Vec<OwnedFd>, lent: Vec<(u32, sys::LentFd)>) -> FrameFds {
        if lent.is_empty() {
            return FrameFds::Owned(owned);
        }
        let total = owned.len() + lent.len();
        let (mut owned, mut lent) = (owned.into_iter(), lent.into_iter().peekable());
        let mut fds = Vec::with_capacity(total);
        for index in 0..total {
            let fd = match lent.next_if(|(at, _)| *at as usize == index) {
                Some((_, fd)) => OutFd::Lent(fd),
                None => match owned.next() {
                    Some(fd) => OutFd::Owned(fd),
                    // Not reached: the encoder numbers the two kinds together.
                    None => match lent.next() {
                        Some((_, fd)) => OutFd::Lent(fd),
                        None => break,
                    },
                },
            };
            fds.push(fd);
        }
        FrameFds::Mixed(fds)
    }
}

impl Seg {
    fn data(&self) -> &[u8] {
        match &self.held {
            Some(held) => held.bytes(),
            None => &self.bytes,
        }
    }

    /// Whether a small frame may be appended to this segment.
    fn takes(&self, len: usize) -> bool {
        self.held.is_none()
            && self.bytes.len() < OWN_SEGMENT_FROM
            && self.bytes.len() + len <= SMALL_SEGMENT
    }
}

/// Whole frames, in order.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    segs: VecDeque<Seg>,
    /// Bytes in `segs`.
    bytes: usize,
    /// Descriptors in `segs`.
    fds: usize,
    /// Emptied large segments, for the next large messages to be encoded into.
    big_pool: Vec<Vec<u8>>,
    /// Bytes of frames the end owed the peer (see `Shared::push_owed`) queued since the
    /// writer last took the queue.
    owed: usize,
}

impl Queue {
    /// Bytes queued.
    pub(crate) fn len(&self) -> usize {
        self.bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Descriptors queued.
    /// Bytes of owed frames queued since the writer last took the queue.
    pub(crate) fn owed(&self) -> usize {
        self.owed
    }

    /// Counts `len` bytes of an owed frame about to be queued.
    pub(crate) fn note_owed(&mut self, len: usize) {
        self.owed = self.owed.saturating_add(len);
    }

    pub(crate) fn fds(&self) -> usize {
        self.fds
    }

    /// Appends one whole frame, and the descriptors `fds` it carries (taken, leaving
    /// `fds` empty). A large frame is taken out of `frame`, which gets an emptied large
    /// buffer back if the queue has one (else it is left empty); a small one is copied, and
    /// `frame` keeps its buffer for the next message.
    #[inline]
    pub(crate) fn push(&mut self, frame: &mut Vec<u8>, fds: &mut Vec<OwnedFd>) {
        if fds.is_empty()
            && frame.len() < OWN_SEGMENT_FROM
            && let Some(last) = self.segs.back_mut()
            && last.takes(frame.len())
        {
            // The common case: a small frame without descriptors, into the last segment.
            self.bytes += frame.len();
            last.bytes.extend_from_slice(frame);
            frame.clear();
            return;
        }
        self.push_any(frame, fds);
    }

    /// [`push`](Self::push) for any frame.
    #[inline(never)]
    fn push_any(&mut self, frame: &mut Vec<u8>, fds: &mut Vec<OwnedFd>) {
        self.bytes += frame.len();
        self.fds += fds.len();
        let fds = FrameFds::Owned(std::mem::take(fds));
        if frame.len() >= OWN_SEGMENT_FROM {
            let recycled = self.big_pool.pop().unwrap_or_default();
            let mut seg = Seg {
                bytes: std::mem::replace(frame, recycled),
                ..Seg::default()
            };
            if !fds.is_empty() {
                seg.fds.push_back((0, fds));
            }
            self.segs.push_back(seg);
            return;
        }
        self.append_small(frame, fds);
        frame.clear();
    }

    /// Copies `bytes` (a small frame, or a piece of a frame with held bytes) after the last
    /// segment's, or into a new segment; `fds` go with its first byte.
    fn append_small(&mut self, bytes: &[u8], fds: FrameFds) {
        let last = match self.segs.back_mut() {
            Some(last) if last.takes(bytes.len()) => last,
            _ => {
                self.segs.push_back(Seg {
                    bytes: small_segment(),
                    ..Seg::default()
                });
                self.segs.back_mut().expect("just pushed")
            }
        };
        if !fds.is_empty() {
            last.fds.push_back((last.bytes.len(), fds));
        }
        crate::bytes::extend(&mut last.bytes, bytes);
    }

    /// Appends one whole frame whose byte fields `held` are sent from their message's
    /// buffers: `frame` holds the rest, and each held field's bytes go in at its offset
    /// (in order, from the frame's first byte; see `wire::encode_frame_holding`). The
    /// pieces of `frame` are copied; each held field is a segment of its own. The
    /// duplicates `fds` (taken) and the message's own descriptors `lent` (each with its
    /// index among the frame's) go with the frame's first byte, which is in its first piece
    /// (the header).
    pub(crate) fn push_holding(
        &mut self,
        frame: &mut Vec<u8>,
        fds: &mut Vec<OwnedFd>,
        kept: sys::Kept,
    ) {
        let sys::Kept {
            bytes: held,
            fds: lent,
        } = kept;
        let held_len: usize = held.iter().map(|(_, h)| h.bytes().len()).sum();
        self.bytes += frame.len() + held_len;
        self.fds += fds.len() + lent.len();
        let mut fds = FrameFds::merged(std::mem::take(fds), lent);
        let mut from = 0;
        for (at, bytes) in held {
            if at > from {
                let first = std::mem::replace(&mut fds, FrameFds::Owned(Vec::new()));
                self.append_small(&frame[from..at], first);
            }
            from = at;
            self.segs.push_back(Seg {
                held: Some(bytes),
                ..Seg::default()
            });
        }
        if frame.len() > from || !fds.is_empty() {
            self.append_small(&frame[from..], fds);
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
        queue.fds = 0;
        queue.owed = 0;
        self.sent = 0;
        while queue.big_pool.len() < BIG_POOL {
            let Some(seg) = self.spare_big.pop() else {
                break;
            };
            queue.big_pool.push(seg);
        }
        self.spare_big.clear();
    }

    /// One vectored, non-blocking send of what is left: the bytes the kernel took. The
    /// send passes the descriptors of the frames that begin within its first
    /// [`wire::FD_WINDOW`] bytes, in order, at most [`wire::MAX_BATCH_FDS`] (or one frame's,
    /// if it alone has more), and its bytes stop before the first frame whose descriptors
    /// it does not pass. Once the kernel took any byte, it holds the passed descriptors,
    /// and this end's duplicates are closed (their frames may follow in later sends).
    pub(crate) fn send_some(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        let mut iov: [IoSlice<'_>; MAX_IOVECS] = [IoSlice::new(&[]); MAX_IOVECS];
        let mut n = 0;
        let mut raw: Vec<RawFd> = Vec::new();
        // Offset of each segment's first byte from where this send starts.
        let mut base = 0usize;
        let window = wire::FD_WINDOW as usize;
        'segs: for (i, seg) in self.segs.iter().take(MAX_IOVECS).enumerate() {
            let from = if i == 0 { self.sent } else { 0 };
            let data = seg.data();
            let mut stop = data.len();
            for (at, fds) in seg.fds.iter().filter(|(at, _)| *at >= from) {
                let offset = base + at - from;
                let fits = raw.is_empty() || raw.len() + fds.len() <= wire::MAX_BATCH_FDS;
                if offset < window && fits {
                    fds.extend_raw(&mut raw);
                } else {
                    stop = *at;
                    break;
                }
            }
            if stop > from {
                iov[n] = IoSlice::new(&data[from..stop]);
                n += 1;
            }
            if stop < data.len() {
                break 'segs;
            }
            base += data.len() - from;
        }
        let written = sys::send_vectored_with_fds(fd, &iov[..n], &raw)?;
        if written > 0 && !raw.is_empty() {
            // The kernel holds them now: drop this end's duplicates (and let go of the
            // messages that lent theirs).
            let mut passed = raw.len();
            let mut first = true;
            for seg in &mut self.segs {
                let from = if first { self.sent } else { 0 };
                first = false;
                while passed > 0 {
                    match seg.fds.iter().position(|(at, _)| *at >= from) {
                        Some(k) => {
                            passed = passed.saturating_sub(seg.fds[k].1.len());
                            // The front one, unless some were passed before `from`.
                            drop(seg.fds.remove(k));
                        }
                        None => break,
                    }
                }
                if passed == 0 {
                    break;
                }
            }
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
            let left = first.data().len() - self.sent;
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
                if done.capacity() == 0 {
                    // A held field's segment: its message goes with it.
                } else if done.capacity() <= SMALL_SEGMENT {
                    recycle(done);
                } else if self.spare_big.len() < BIG_POOL {
                    self.spare_big.push(done);
                }
            }
        }
    }
}

thread_local! {
    /// Emptied small segments, for the next frames this thread queues.
    static SEGMENTS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty small segment: one this thread emptied, or a new one.
fn small_segment() -> Vec<u8> {
    SEGMENTS
        .try_with(|pool| pool.try_borrow_mut().ok()?.pop())
        .ok()
        .flatten()
        .unwrap_or_else(|| Vec::with_capacity(SMALL_SEGMENT / 4))
}

/// Keeps an emptied small segment for this thread's next frames, if the pool has room.
fn recycle(seg: Vec<u8>) {
    let _ = SEGMENTS.try_with(|pool| {
        if let Ok(mut pool) = pool.try_borrow_mut()
            && pool.len() < POOL
        {
            pool.push(seg);
        }
    });
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

    /// Pushes frames of `len` bytes with `counts[i]` descriptors each, sends them all, and
    /// returns the sends (stream offset, bytes) and, per read that brought descriptors,
    /// (start, end, count).
    #[allow(clippy::type_complexity)]
    fn send_all(len: usize, counts: &[usize]) -> (Vec<(usize, usize)>, Vec<(usize, usize, usize)>) {
        use std::os::fd::AsFd;
        let (a, b) = sys::socketpair().expect("socketpair");
        let null = || OwnedFd::from(std::fs::File::open("/dev/null").expect("open"));
        let mut queue = Queue::default();
        for (i, &n) in counts.iter().enumerate() {
            let mut frame = vec![i as u8; len];
            let mut fds: Vec<OwnedFd> = (0..n).map(|_| null()).collect();
            queue.push(&mut frame, &mut fds);
        }
        assert_eq!(queue.fds(), counts.iter().sum::<usize>());
        let total = len * counts.len();
        let mut batch = Batch::default();
        batch.take_from(&mut queue);
        let mut sends = Vec::new();
        let mut at = 0;
        while !batch.is_done() {
            let n = batch.send_some(a.as_fd()).expect("send");
            sends.push((at, n));
            at += n;
        }
        let mut buf = Vec::with_capacity(total + 1);
        let mut batches = Vec::new();
        while buf.len() < total {
            let before = buf.len();
            let got = sys::recv_spare(b.as_fd(), &mut buf).expect("recv");
            if !got.fds.is_empty() {
                batches.push((before, buf.len(), got.fds.len()));
            }
        }
        let expected: Vec<u8> = (0..counts.len()).flat_map(|i| vec![i as u8; len]).collect();
        assert_eq!(buf, expected);
        (sends, batches)
    }

    #[test]
    fn frames_with_descriptors_near_a_send_s_start_go_with_it() {
        // A, B (1 fd), C, D (2 fds), E: all within the window, one send, one batch.
        let (sends, batches) = send_all(100, &[0, 1, 0, 2, 0]);
        assert_eq!(sends, [(0, 500)]);
        assert_eq!(batches, [(0, 500, 3)]);
    }

    #[test]
    fn a_send_stops_before_a_frame_past_the_window_or_over_the_batch() {
        // 1 KiB frames with one descriptor each: four begin within the 4 KiB window.
        let (sends, batches) = send_all(1024, &[1; 9]);
        assert_eq!(sends, [(0, 4096), (4096, 4096), (8192, 1024)]);
        assert_eq!(batches.iter().map(|b| b.2).collect::<Vec<_>>(), [4, 4, 1]);
        // Small frames: at most MAX_BATCH_FDS descriptors a send, in whole frames.
        let (sends, batches) = send_all(16, &[3; 30]);
        let per_send = wire::MAX_BATCH_FDS / 3 * 3;
        assert_eq!(batches[0].2, per_send);
        assert_eq!(sends[0], (0, per_send / 3 * 16));
        // Each batch came with a read that starts at or before its first frame.
        for ((start, _, _), (at, _)) in batches.iter().zip(&sends) {
            assert!(start <= at);
        }
        // One frame with more than a batch goes alone.
        let (_, batches) = send_all(16, &[1, 100, 1]);
        assert_eq!(batches.iter().map(|b| b.2).collect::<Vec<_>>(), [1, 100, 1]);
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
