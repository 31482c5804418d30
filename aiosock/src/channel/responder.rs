//! Answering one call received from the peer.

use std::sync::Arc;

use crate::channel::shared::{self, KEEP_SCRATCH_FROM, Refused, Shared};
use crate::error::InvalidMessage;
use crate::protocol::{Answer, AnswerKind};
use crate::wire::{self, Failure, Kind};

/// The promise to answer one call the peer made. Whoever holds it answers with
/// [`answer`](Self::answer) or [`fail`](Self::fail); dropping it unanswered tells the
/// caller [`CallError::Unanswered`](crate::CallError::Unanswered), so that no caller ever
/// waits for an answer that will not come.
///
/// While it lives, it keeps the end's sending direction open (as a `Sender` does), so
/// that the answer still goes out if the end's last `Sender` is dropped meanwhile. A call
/// that arrives after the direction ended cannot be answered: the peer, which has seen the
/// end, already failed it with `CallError::Closed`.
#[derive(Debug)]
pub(crate) struct Responder {
    shared: Arc<Shared>,
    id: u64,
    /// Answered, or nothing can be sent any more.
    answered: bool,
    holds: bool,
}

impl Responder {
    pub(crate) fn new(shared: Arc<Shared>, id: u64) -> Responder {
        let holds = shared.hold_sending();
        Responder {
            shared,
            id,
            answered: !holds,
            holds,
        }
    }

    /// Sends what the handler returned, waiting while the outgoing buffer is full (as
    /// `send` does). A reply that cannot be sent (it did not encode, or is over the
    /// maximum frame length) tells the caller why instead; a one-way variant received as a
    /// call tells the caller it has no reply.
    pub(crate) async fn answer(mut self, answer: Answer) {
        if self.answered {
            return;
        }
        let max = self.shared.config.max_frame_len();
        let (mut frame, mut fds) = match answer.0 {
            AnswerKind::Reply(mut frame, fds) => match wire::finish_reply(&mut frame, self.id, max)
            {
                Ok(()) if !fds.is_empty() && !self.shared.config.carries_fds() => {
                    let why = InvalidMessage::FdsNotCarried;
                    return self.fail(Failure::BadReply(why.to_string()));
                }
                Ok(()) => (frame, fds),
                Err(why) => return self.fail(Failure::BadReply(why.to_string())),
            },
            AnswerKind::None => {
                let why = "the message's variant is one-way: it has no reply".to_owned();
                return self.fail(Failure::BadReply(why));
            }
            AnswerKind::Refused(why) => return self.fail(Failure::BadReply(why.to_string())),
        };
        // Answered only once the reply is queued (or the peer is gone): if this future is
        // dropped while it waits for room, `drop` tells the caller instead.
        let small = frame.len() < KEEP_SCRATCH_FROM;
        // Queued at once, the frame also lets go of the hold (one lock for both).
        let mut released = self.holds;
        let pushed = self
            .shared
            .push_releasing(&mut frame, &mut fds, true, &mut released);
        if released {
            self.holds = false;
        }
        if let Err(Refused::Full) = pushed {
            // Queued, or closed (then the peer is gone and owed nothing). Boxed: off the
            // common path, and a serving future's size is copied for every message.
            let _ = Box::pin(self.shared.push_when_room(&mut frame, &mut fds)).await;
        }
        self.answered = true;
        frame.clear();
        shared::return_scratch(frame, small);
    }

    /// Tells the caller that the call failed, without waiting (see
    /// [`Shared::push_owed`]).
    pub(crate) fn fail(mut self, failure: Failure) {
        if !std::mem::replace(&mut self.answered, true) {
            self.send_failure(&failure);
        }
    }

    fn send_failure(&self, failure: &Failure) {
        let mut frame = Vec::new();
        let mut failure = failure.clone();
        if let Failure::Panicked(message) | Failure::BadReply(message) = &mut failure {
            truncate(message, MAX_MESSAGE);
        }
        if wire::encode_frame_as(&mut frame, &failure, usize::MAX, Kind::Failed(self.id)).is_ok() {
            self.shared.push_owed(&mut frame);
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.answered {
            self.send_failure(&Failure::Unanswered);
        }
        if self.holds {
            self.shared.remove_sender();
        }
    }
}

/// The longest message a failure carries, in bytes.
pub(crate) const MAX_MESSAGE: usize = 1024;

/// Cuts `s` to at most `max` bytes, at a character boundary.
pub(crate) fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}
