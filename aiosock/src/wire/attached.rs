//! Which descriptors belong to which frame.
//!
//! The sender passes descriptors with `SCM_RIGHTS` in the `sendmsg` calls that write their
//! frames, in frame order, whole frames' at a time: each `sendmsg` passes the descriptors
//! of the frames with descriptors that begin within its first [`FD_WINDOW`] bytes (at most
//! [`MAX_BATCH_FDS`] in all, or one frame's if it alone has more), and the bytes it offers
//! stop before the first frame with descriptors it does not pass. The kernel hands a
//! `sendmsg`'s descriptors to the reader with the read that takes its first byte, and ends
//! that read at the end of the segment they came with, so one read brings at most one
//! batch. A write the kernel cuts short may leave some of those frames for later writes:
//! descriptors can arrive ahead of their frames, by less than [`FD_WINDOW`] bytes.
//!
//! So the receiver keeps the batches in order and checks what the stream allows:
//!
//! - a frame that announces `n > 0` descriptors takes the next `n` of the oldest batch,
//!   which must have come with a read that starts at or before the frame's first byte and
//!   must hold `n` more ([`FdError::Mismatch`] otherwise);
//! - descriptors left in a batch once a frame starts [`FD_WINDOW`] bytes or more past the
//!   end of the read that brought it, or at the end of the stream, are
//!   [`FdError::Stray`]: no frame can claim them any more;
//! - more descriptors waiting (with those of messages the receiver read ahead) than
//!   [`Limits::max_fds`], or descriptors the kernel had to drop, are errors found when they
//!   arrive and reported once the frames before them were decoded.
//!
//! Whatever an error leaves unclaimed is closed when the receiver clears its buffer.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;

#[cfg(doc)]
use super::MAX_BATCH_FDS;
use super::{FD_WINDOW, Limits};
use crate::error::{Error, FdError};

/// The descriptors one read brought and no frame took yet, and the stream offsets the
/// read covered.
#[derive(Debug)]
struct Batch {
    start: u64,
    end: u64,
    fds: VecDeque<OwnedFd>,
}

/// The descriptors received and not yet claimed by a frame, with where each arrived.
#[derive(Debug, Default)]
pub(crate) struct Attached {
    /// Bytes of the stream received so far.
    received: u64,
    batches: VecDeque<Batch>,
    /// Descriptors in `batches`.
    waiting: usize,
    /// Descriptors of messages the receiver decoded and holds, not yet delivered.
    held: usize,
    /// A problem found when a read arrived, at the offset of that read's first byte: it
    /// is reported once every frame that started before it was decoded.
    problem: Option<(u64, FdError)>,
}

impl Attached {
    /// A read of `len` bytes arrived, with `fds`; `truncated` if the kernel dropped some.
    pub(crate) fn read(&mut self, len: usize, fds: Vec<OwnedFd>, truncated: bool, limits: &Limits) {
        let start = self.received;
        self.received += len as u64;
        if self.problem.is_some() {
            return;
        }
        let count = self.waiting + self.held + fds.len();
        let problem = if truncated {
            Some(FdError::Truncated)
        } else if fds.is_empty() {
            return;
        } else if count > limits.max_fds {
            Some(FdError::TooManyHeld {
                count,
                max: limits.max_fds,
            })
        } else {
            None
        };
        match problem {
            // The descriptors are closed here: nothing may take them.
            Some(problem) => self.problem = Some((start, problem)),
            None => {
                self.waiting += fds.len();
                self.batches.push_back(Batch {
                    start,
                    end: self.received,
                    fds: fds.into(),
                });
            }
        }
    }

    /// Bytes of the stream received so far.
    #[inline]
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Before the frame that starts at stream offset `at` is decoded: a problem found on
    /// arrival that lies before it, or descriptors that no frame can claim any more.
    #[inline]
    pub(crate) fn check(&mut self, at: u64) -> Result<(), Error> {
        if self.problem.is_none() && self.batches.is_empty() {
            // No descriptor arrived that a frame has not taken: the common case.
            return Ok(());
        }
        self.check_held(at)
    }

    /// [`check`](Self::check) with descriptors or a problem on hand.
    #[inline(never)]
    fn check_held(&mut self, at: u64) -> Result<(), Error> {
        if let Some((from, problem)) = &self.problem
            && *from <= at
        {
            return Err(Error::Fds(problem.clone()));
        }
        match self.batches.front() {
            Some(batch) if at >= batch.end.saturating_add(FD_WINDOW) => {
                Err(Error::Fds(FdError::Stray {
                    count: batch.fds.len(),
                }))
            }
            _ => Ok(()),
        }
    }

    /// The descriptors of the whole frame that starts at `at` and announces `announced`.
    #[inline]
    pub(crate) fn take(&mut self, at: u64, announced: usize) -> Result<Vec<OwnedFd>, Error> {
        if announced == 0 {
            return Ok(Vec::new());
        }
        self.take_announced(at, announced)
    }

    /// [`take`](Self::take) for a frame that announces descriptors.
    #[inline(never)]
    fn take_announced(&mut self, at: u64, announced: usize) -> Result<Vec<OwnedFd>, Error> {
        let mismatch = |arrived| Err(Error::Fds(FdError::Mismatch { announced, arrived }));
        let Some(batch) = self.batches.front_mut() else {
            return mismatch(0);
        };
        if batch.start > at {
            // It came after the frame's first byte: not the frame's.
            return mismatch(0);
        }
        if batch.fds.len() < announced {
            return mismatch(batch.fds.len());
        }
        let taken: Vec<OwnedFd> = batch.fds.drain(..announced).collect();
        if batch.fds.is_empty() {
            self.batches.pop_front();
        }
        self.waiting -= announced;
        Ok(taken)
    }

    /// A problem found on arrival, wherever it lies: at an end of the stream cut inside a
    /// frame, it says more than the truncation.
    pub(crate) fn problem(&self) -> Option<FdError> {
        self.problem.as_ref().map(|(_, problem)| problem.clone())
    }

    /// At the end of the stream, after the last frame: descriptors nobody claimed.
    pub(crate) fn finish(&self) -> Result<(), Error> {
        if let Some((_, problem)) = &self.problem {
            return Err(Error::Fds(problem.clone()));
        }
        match self.waiting {
            0 => Ok(()),
            count => Err(Error::Fds(FdError::Stray { count })),
        }
    }

    /// The receiver holds `n` more descriptors in messages it read ahead.
    pub(crate) fn hold(&mut self, n: usize) {
        self.held += n;
    }

    /// The receiver delivered messages holding `n` of the descriptors it held.
    pub(crate) fn release(&mut self, n: usize) {
        self.held = self.held.saturating_sub(n);
    }

    /// Descriptors the receiver holds in messages it read ahead.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Closes every descriptor waiting, for good.
    pub(crate) fn clear(&mut self) {
        self.batches.clear();
        self.waiting = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fds(n: usize) -> Vec<OwnedFd> {
        (0..n)
            .map(|_| OwnedFd::from(std::fs::File::open("/dev/null").expect("open")))
            .collect()
    }

    fn limits() -> Limits {
        Limits::new(1 << 20)
    }

    fn problem(result: Result<impl std::fmt::Debug, Error>) -> FdError {
        match result {
            Err(Error::Fds(problem)) => problem,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn frames_take_a_batch_in_order_across_reads_within_the_window() {
        let mut a = Attached::default();
        a.read(10, vec![], false, &limits());
        a.read(20, fds(3), false, &limits()); // covers 10..30
        a.check(10).expect("a frame at 10");
        assert_eq!(a.take(10, 0).expect("none announced").len(), 0);
        assert_eq!(a.take(25, 2).expect("claimed").len(), 2);
        // The last one's frame may start in a later read, within the window.
        a.read(100, vec![], false, &limits());
        a.check(120).expect("within the window");
        assert_eq!(a.take(120, 1).expect("claimed").len(), 1);
        a.finish().expect("all claimed");
    }

    #[test]
    fn descriptors_past_the_window_or_at_the_end_are_stray() {
        let mut a = Attached::default();
        a.read(30, fds(2), false, &limits());
        a.check(0).expect("at the start");
        a.check(30 + FD_WINDOW - 1).expect("just inside the window");
        assert_eq!(
            problem(a.check(30 + FD_WINDOW)),
            FdError::Stray { count: 2 }
        );
        assert_eq!(problem(a.finish()), FdError::Stray { count: 2 });
    }

    #[test]
    fn announced_counts_must_be_there() {
        let mut a = Attached::default();
        a.read(30, fds(1), false, &limits());
        assert_eq!(
            problem(a.take(0, 2)),
            FdError::Mismatch {
                announced: 2,
                arrived: 1
            }
        );
        let mut b = Attached::default();
        b.read(30, vec![], false, &limits());
        assert_eq!(
            problem(b.take(5, 1)),
            FdError::Mismatch {
                announced: 1,
                arrived: 0
            }
        );
        // A batch that arrived after the frame's first byte is not the frame's.
        b.read(30, fds(1), false, &limits()); // covers 30..60
        assert_eq!(
            problem(b.take(5, 1)),
            FdError::Mismatch {
                announced: 1,
                arrived: 0
            }
        );
    }

    #[test]
    fn too_many_waiting_or_truncated_are_refused_after_earlier_frames() {
        let mut tight = limits();
        tight.max_fds = 4;
        let mut a = Attached::default();
        a.hold(2);
        a.read(10, fds(2), false, &tight);
        a.read(10, fds(1), false, &tight); // arrives at 10
        a.check(5).expect("frames before that read still decode");
        assert_eq!(
            problem(a.check(10)),
            FdError::TooManyHeld { count: 5, max: 4 }
        );
        let mut c = Attached::default();
        c.read(10, vec![], true, &limits());
        assert_eq!(problem(c.check(0)), FdError::Truncated);
    }

    #[test]
    fn descriptors_held_in_messages_are_counted_until_delivered() {
        let mut a = Attached::default();
        a.hold(3);
        a.hold(2);
        a.release(3);
        assert_eq!(a.held(), 2);
        a.release(5);
        assert_eq!(a.held(), 0, "never below zero");
    }
}
