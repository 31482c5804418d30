//! Streams of calls: many calls of one variant in flight from one task, their outcomes
//! queued for it in the order they arrive, with one wake-up for a batch of them.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use serde::de::DeserializeOwned;

use crate::channel::calls::{Sink, outcome_of};
use crate::error::{CallError, Error};
use crate::wire::{self, Limits};
use crate::{Protocol, Sender};

/// Many calls of one `#[reply(R)]` variant in flight from one task, their outcomes
/// returned as they arrive: what a `FuturesUnordered` of calls gives, without a future, a
/// waker and a boxed reply per call.
///
/// Made by the generated client's `<variant>_stream` method (`client.square_stream()`
/// for `#[reply(u64)] Square(u64)`). [`push`](Self::push) takes the variant's fields (one
/// field as itself, several as a tuple, none as `()`) and a `tag` of your choosing, and
/// returns once the call is sent; [`next`](Self::next) returns the next outcome that has
/// arrived, with its tag. Replies come in the order the peer sends them, which a
/// concurrent server need not keep.
///
/// Each call counts against the connection's `max_calls` until its reply arrives (not
/// until `next` returns it), so a stream never holds up the connection's other calls by
/// being slow to read its outcomes; outcomes not read yet stay queued in the stream.
///
/// # Semantics
///
/// - Every pushed call gets exactly one outcome: its reply, the peer's `CallError` (a
///   panicking handler, for one), or the error that ended the connection, at once for
///   every call in flight.
/// - Dropping the stream cancels its calls: replies still due are discarded as they
///   come, and their slots freed then, as for a dropped call future.
///
/// # Cancel safety
///
/// `next` is cancel safe: an outcome is only taken when it is returned. `push` is cancel
/// safe in the sense of a call: dropped before its message was queued, the call was not
/// made; once it returns `Ok`, the call is in flight.
///
/// # Examples
///
/// ```
/// #[aiosock::protocol]
/// enum Math {
///     #[reply(u64)]
///     Square(u64),
/// }
///
/// struct Squarer;
/// impl MathHandler for Squarer {
///     async fn on_square(&mut self, n: u64) -> u64 {
///         n * n
///     }
/// }
///
/// # #[aiosock::protocol] enum Nothing { None }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (client_end, server_end) = aiosock::pair::<Math, Nothing>()?;
/// tokio::spawn(server_end.serve(Squarer));
/// let (tx, rx) = client_end.into_split();
/// tokio::spawn(rx.serve(NoHandler)); // reads the replies
/// let client = MathClient::new(tx);
///
/// // Squares 0..1000, at most 64 in flight.
/// let mut squares = client.square_stream();
/// let mut sum = 0;
/// for n in 0..1000u64 {
///     if squares.in_flight() == 64 {
///         let (_n, square) = squares.next().await.expect("in flight");
///         sum += square?;
///     }
///     squares.push(n, n).await?;
/// }
/// while let Some((n, square)) = squares.next().await {
///     assert_eq!(square?, n * n);
///     sum += n * n;
/// }
/// assert_eq!(sum, (0..1000u64).map(|n| n * n).sum());
/// # Ok(()) }
/// # struct NoHandler;
/// # impl NothingHandler for NoHandler { async fn on_none(&mut self) {} }
/// ```
pub struct CallStream<T: Protocol, A, R> {
    sender: Sender<T>,
    make: fn(A) -> T,
    queue: Arc<Outcomes<R>>,
    /// The same queue, as the call table sees it.
    sink: Arc<dyn Sink>,
    /// Outcomes taken from the queue in one go, not returned yet.
    ready: VecDeque<(u64, Result<R, CallError>)>,
    /// Calls pushed whose outcome `next` has not returned yet.
    in_flight: usize,
}

impl<T: Protocol, A, R> fmt::Debug for CallStream<T, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallStream")
            .field("sender", &self.sender)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

/// The outcomes of a stream's calls, filled by the receiver.
struct Outcomes<R> {
    state: Mutex<State<R>>,
}

struct State<R> {
    done: VecDeque<(u64, Result<R, CallError>)>,
    /// The stream's task, while it waits for an outcome.
    waker: Option<Waker>,
    /// The stream was dropped: outcomes are discarded.
    gone: bool,
}

impl<R> Outcomes<R> {
    fn state(&self) -> MutexGuard<'_, State<R>> {
        // Every change under the lock is a push or a take: poisoning means nothing.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an outcome and wakes the stream if it waits.
    fn queue(&self, tag: u64, outcome: Result<R, CallError>) {
        let waker = {
            let mut state = self.state();
            if state.gone {
                return;
            }
            state.done.push_back((tag, outcome));
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<R: DeserializeOwned + Send + 'static> Sink for Outcomes<R> {
    fn deliver(
        &self,
        id: u64,
        tag: u64,
        failed: bool,
        payload: &[u8],
        fds: Vec<OwnedFd>,
        limits: &Limits,
    ) -> Option<Error> {
        let (outcome, error) = outcome_of(id, failed, payload, fds, limits, |payload, fds| {
            wire::decode_payload_with::<R>(payload, limits.decode_budget, fds, limits.max_shm_len)
        });
        self.queue(tag, outcome);
        error
    }

    fn fail(&self, tag: u64, why: CallError) {
        self.queue(tag, Err(why));
    }
}

impl<T: Protocol, A, R: DeserializeOwned + Send + 'static> CallStream<T, A, R> {
    /// A stream of the calls that `make` builds from their fields, over `sender`. The
    /// generated client's `<variant>_stream` method makes it; `make` must build a
    /// variant declared with `#[reply(R)]`.
    pub(crate) fn new(sender: Sender<T>, make: fn(A) -> T) -> CallStream<T, A, R> {
        let queue = Arc::new(Outcomes {
            state: Mutex::new(State {
                done: VecDeque::new(),
                waker: None,
                gone: false,
            }),
        });
        CallStream {
            sender,
            make,
            sink: queue.clone(),
            queue,
            ready: VecDeque::new(),
            in_flight: 0,
        }
    }

    /// Sends a call with these fields, tagged `tag`, waiting while the connection has
    /// `max_calls` calls in flight or its outgoing buffer is full. Its outcome comes from
    /// [`next`](Self::next), with the tag.
    ///
    /// # Errors
    ///
    /// As a call of the variant: [`CallError::Closed`] once the connection is gone,
    /// [`CallError::UnknownVariant`] if the peer's protocol lacks the variant,
    /// [`CallError::Invalid`] if the message cannot be encoded. The call was not made.
    ///
    /// # Cancel safety
    ///
    /// Dropped before it returns, the call was not made.
    ///
    /// # Panics
    ///
    /// When first used outside a Tokio runtime with I/O enabled.
    pub async fn push(&mut self, fields: A, tag: u64) -> Result<(), CallError> {
        self.push_with(fields, tag, true).await
    }

    /// [`push`](Self::push) without waiting: fails with [`CallError::Full`] where `push`
    /// would wait for a slot or for room.
    ///
    /// # Errors
    ///
    /// As for `push`, and `CallError::Full`.
    pub async fn try_push(&mut self, fields: A, tag: u64) -> Result<(), CallError> {
        self.push_with(fields, tag, false).await
    }

    /// `push` (waiting for a slot and room with `wait`) or `try_push`.
    async fn push_with(&mut self, fields: A, tag: u64, wait: bool) -> Result<(), CallError> {
        let msg = (self.make)(fields);
        self.sender
            .start_streamed(msg, tag, &self.sink, wait)
            .await?;
        self.in_flight += 1;
        Ok(())
    }

    /// The next outcome to arrive, with its call's tag; `None` once no call is in flight.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an outcome is taken only when it is returned.
    pub async fn next(&mut self) -> Option<(u64, Result<R, CallError>)> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Polls for the next outcome, as [`next`](Self::next) waits for it: `Ready(None)`
    /// once no call is in flight. For a `Stream` adapter or a hand-written future.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<(u64, Result<R, CallError>)>> {
        if self.ready.is_empty() {
            if self.in_flight == 0 {
                return Poll::Ready(None);
            }
            let mut state = self.queue.state();
            if state.done.is_empty() {
                if !state
                    .waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    state.waker = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
            // Everything that arrived, in one go: the next outcomes need no lock.
            std::mem::swap(&mut state.done, &mut self.ready);
        }
        let outcome = self.ready.pop_front();
        if outcome.is_some() {
            self.in_flight -= 1;
        }
        Poll::Ready(outcome)
    }

    /// Calls pushed whose outcome [`next`](Self::next) has not returned yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The sender the calls go through.
    pub fn sender(&self) -> &Sender<T> {
        &self.sender
    }
}

impl<T: Protocol, A, R> Drop for CallStream<T, A, R> {
    fn drop(&mut self) {
        // Replies still due find the stream gone and are discarded; their slots free as
        // they come.
        let mut state = self.queue.state();
        state.gone = true;
        state.done.clear();
        state.waker = None;
    }
}
