//! Which descriptors belong to which frame.
//!
//! The sender passes a frame's descriptors with the frame's first byte: each `sendmsg` that
//! carries descriptors starts with the frame they belong to, and carries that frame's
//! descriptors only. The kernel hands them over with the read that takes the first byte
//! of that `sendmsg`, and ends that read at the end of the segment they came with, so one
//! read brings at most one frame's descriptors. The receiver knows the read's range of
//! stream offsets, not where in it the segment began, so it checks what it can:
//!
//! - a frame that announces `n > 0` descriptors claims the oldest batch not yet claimed,
//!   which must have come with a read that holds the frame's first byte, and must hold
//!   exactly `n` descriptors ([`FdError::Mismatch`] otherwise);
//! - a batch that no frame starting inside its read claimed is [`FdError::Stray`]: found
//!   as soon as a frame starts past the read's end, at the end of the stream, or when a
//!   third batch arrives (at most two can be waiting in a valid stream: the one of the
//!   frame being read, and the one of the frame after it, which the read that completes
//!   the first may bring);
//! - a batch over the per-frame maximum, or descriptors the kernel had to drop, are errors
//!   found when they arrive and reported once the frames before them were decoded.
//!
//! So at most two frames' descriptors wait here; with the descriptors of the messages the
//! receiver read ahead (it stops reading ahead before [`Limits::max_fds`] less those two),
//! an end never holds more than `max_fds` descriptors for undelivered messages.
//!
//! Whatever an error leaves unclaimed is closed when the receiver clears its buffer.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;

use super::Limits;
use crate::error::{Error, FdError};

/// The descriptors one read brought, and the stream offsets the read covered.
#[derive(Debug)]
struct Batch {
    start: u64,
    end: u64,
    fds: Vec<OwnedFd>,
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
        let problem = if truncated {
            Some(FdError::Truncated)
        } else if fds.is_empty() {
            return;
        } else if fds.len() > limits.max_fds_per_frame {
            Some(FdError::TooManyInFrame {
                count: fds.len(),
                max: limits.max_fds_per_frame,
            })
        } else if self.batches.len() >= 2 {
            Some(FdError::Stray {
                count: self.batches[0].fds.len(),
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
                    fds,
                });
            }
        }
    }

    /// Bytes of the stream received so far.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Before the frame (or the hello) that starts at stream offset `at` is decoded: a
    /// problem found on arrival that lies before it, or a batch that a frame before it
    /// should have claimed.
    pub(crate) fn check(&mut self, at: u64) -> Result<(), Error> {
        if let Some((from, problem)) = &self.problem
            && *from <= at
        {
            return Err(Error::Fds(problem.clone()));
        }
        match self.batches.front() {
            Some(batch) if batch.end <= at => Err(Error::Fds(FdError::Stray {
                count: batch.fds.len(),
            })),
            _ => Ok(()),
        }
    }

    /// The descriptors of the whole frame that starts at `at` and announces `announced`.
    pub(crate) fn take(&mut self, at: u64, announced: usize) -> Result<Vec<OwnedFd>, Error> {
        if announced == 0 {
            return Ok(Vec::new());
        }
        match self.batches.front() {
            Some(batch) if batch.start <= at && at < batch.end => {
                if batch.fds.len() != announced {
                    return Err(Error::Fds(FdError::Mismatch {
                        announced,
                        arrived: batch.fds.len(),
                    }));
                }
                let batch = self.batches.pop_front().map(|b| b.fds).unwrap_or_default();
                self.waiting -= batch.len();
                Ok(batch)
            }
            _ => Err(Error::Fds(FdError::Mismatch {
                announced,
                arrived: 0,
            })),
        }
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
    fn a_frame_claims_the_batch_that_came_with_its_first_byte() {
        let mut a = Attached::default();
        a.read(10, vec![], false, &limits());
        a.read(20, fds(2), false, &limits()); // covers 10..30
        a.check(10).expect("a frame at 10");
        assert_eq!(a.take(10, 0).expect("none announced").len(), 0);
        a.check(25)
            .expect("the batch's frame may still start at 25");
        assert_eq!(a.take(25, 2).expect("claimed").len(), 2);
        a.check(30).expect("nothing waits");
        a.finish().expect("all claimed");
    }

    #[test]
    fn a_batch_no_frame_in_its_read_claimed_is_stray() {
        let mut a = Attached::default();
        a.read(30, fds(1), false, &limits());
        a.check(0).expect("at the start");
        assert_eq!(problem(a.check(30)), FdError::Stray { count: 1 });
        assert_eq!(problem(a.finish()), FdError::Stray { count: 1 });
    }

    #[test]
    fn announced_counts_must_match_what_arrived() {
        let mut a = Attached::default();
        a.read(30, fds(3), false, &limits());
        assert_eq!(
            problem(a.take(0, 2)),
            FdError::Mismatch {
                announced: 2,
                arrived: 3
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
    fn a_third_waiting_batch_and_oversized_batches_are_refused_after_earlier_frames() {
        let mut a = Attached::default();
        a.read(10, fds(1), false, &limits());
        a.read(10, fds(1), false, &limits());
        a.read(10, fds(1), false, &limits()); // arrives at 20
        a.check(5)
            .expect("frames before the third read still decode");
        assert_eq!(problem(a.check(20)), FdError::Stray { count: 1 });

        let mut b = Attached::default();
        let max = limits().max_fds_per_frame;
        b.read(10, fds(max + 1), false, &limits());
        assert_eq!(
            problem(b.check(0)),
            FdError::TooManyInFrame {
                count: max + 1,
                max
            }
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
