//! The sending half of an end.

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use serde::de::DeserializeOwned;

use crate::channel::calls::{Calls, Sink, decode_reply};
use crate::channel::shared::{Held, Offer, Shared};
use crate::error::{CallError, InvalidMessage, SendError, TrySendError};
use crate::wire::Kind;
use crate::{Protocol, trace};

type PendingFuture = Pin<Box<dyn Future<Output = Result<(), ()>> + Send>>;

/// Sends messages of type `T` to the peer. Cheap to clone; every clone feeds the same
/// ordered stream.
///
/// Made by [`Endpoint::into_split`](crate::Endpoint::into_split). Messages are encoded
/// (outside any lock) and queued whole in the end's bounded outgoing buffer, and written
/// by the end's writer task; see the [crate docs](crate#delivery-and-backpressure) for what
/// "accepted" promises.
///
/// Dropping the last clone ends the direction after everything queued: at once if the
/// socket takes what is left, else once the writer has written it. The peer's
/// [`recv`](crate::Receiver::recv) returns `Ok(None)` after the last message.
///
/// # Examples
///
/// ```
/// #[aiosock::protocol]
/// #[derive(Debug, PartialEq)]
/// enum Msg {
///     Hello(String),
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (a, b) = aiosock::pair::<Msg, Msg>()?;
/// let (tx, _rx) = a.into_split();
/// let (_tx, mut rx) = b.into_split();
/// tx.send(Msg::Hello("world".into())).await?;
/// assert_eq!(rx.recv().await?, Some(Msg::Hello("world".into())));
/// # Ok(())
/// # }
/// ```
pub struct Sender<T> {
    shared: Arc<Shared>,
    /// The `Sink` implementation's pending readiness or flush wait.
    sink: Mutex<Option<PendingFuture>>,
    _msg: PhantomData<fn(T)>,
}

/// Tells whether an end's connection has ended, without keeping its sending direction
/// open as a `Sender` does.
#[derive(Debug, Clone)]
pub(crate) struct Watch(Arc<Shared>);

impl Watch {
    /// No reply can arrive any more: the peer closed or died, this end's receiver ended,
    /// or sending failed. Reads one flag, without a lock.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.calls.is_ended()
    }

    /// Ends the connection from this side (see [`Shared::hang_up`]): for a peer known to
    /// be gone whose socket may live on in another process.
    pub(crate) fn hang_up(&self) {
        self.0.hang_up();
    }
}

/// A call between taking its slot and getting its reply: if the caller gives up, the slot
/// is freed or left to absorb the late reply.
struct InFlight<'a> {
    calls: &'a Calls,
    id: u64,
    sent: bool,
    done: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.calls.give_up(self.id, self.sent);
        }
    }
}

/// Whether the peer knows a message's variant.
enum Knows {
    Yes,
    /// The peer's hello says it does not: the variant's name.
    No(&'static str),
    /// The peer's hello was not read yet.
    NotYet,
}

impl<T: Protocol> Sender<T> {
    /// Whether the peer knows `msg`'s variant: always for a protocol without `#[added]`
    /// variants and for the variants before them, else as the peer's hello says.
    #[inline]
    fn knows(&self, msg: &T) -> Knows {
        if T::BASELINE >= T::VARIANT_COUNT {
            return Knows::Yes;
        }
        self.knows_variant(msg.variant_index())
    }

    fn knows_variant(&self, index: usize) -> Knows {
        if index < T::BASELINE {
            return Knows::Yes;
        }
        match self.shared.known() {
            Some(known) if index < known => Knows::Yes,
            Some(_) => Knows::No(T::VARIANTS.get(index).copied().unwrap_or("?")),
            None => Knows::NotYet,
        }
    }

    /// [`knows`](Self::knows), peeking once for the peer's hello if it was not read yet
    /// (`NotYet` if it is not here); `Err` if it never will come.
    fn knows_at_once(&self, msg: &T) -> Result<Knows, ()> {
        match self.knows(msg) {
            Knows::NotYet => Ok(match self.shared.try_peer_hello()? {
                Some(_) => self.knows(msg),
                None => Knows::NotYet,
            }),
            known => Ok(known),
        }
    }

    /// [`knows`](Self::knows), waiting for the peer's hello if it was not read yet: `Ok`
    /// if the peer knows the variant, its name if not, `Err(None)` if the peer is gone.
    fn knows_now(
        &self,
        msg: &T,
    ) -> impl Future<Output = Result<(), Option<&'static str>>> + Send + '_ {
        let mut knows = self.knows(msg);
        // Only the variant's number crosses the wait (`T` need not be `Sync`).
        let index = matches!(knows, Knows::NotYet).then(|| msg.variant_index());
        async move {
            if let Some(index) = index {
                while let Knows::NotYet = knows {
                    self.shared.peer_hello().await.map_err(|()| None)?;
                    knows = self.knows_variant(index);
                }
            }
            match knows {
                Knows::No(variant) => Err(Some(variant)),
                Knows::Yes | Knows::NotYet => Ok(()),
            }
        }
    }

    pub(crate) fn new(shared: Arc<Shared>) -> Sender<T> {
        Sender {
            shared,
            sink: Mutex::new(None),
            _msg: PhantomData,
        }
    }

    /// Sends `msg`, waiting while the outgoing buffer is at capacity.
    ///
    /// Returns once the message is *accepted*: encoded as one whole frame into the end's
    /// outgoing buffer, in order after every message accepted before it from any clone.
    /// From then on it is delivered as long as the peer lives (see the crate docs); use
    /// [`flush`](Self::flush) to wait until it is in the kernel.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] once the peer can no longer receive (or this end's runtime
    /// shut down), and [`SendError::Invalid`] if the message cannot be encoded or is larger
    /// than [`Config::max_frame_len`](crate::Config::max_frame_len). Both hand `msg` back.
    ///
    /// While the buffer has room, `send` completes without yielding to the runtime (it only
    /// encodes the message; a large `Vec<u8>` field is not even copied, see
    /// [delivery](crate#delivery-and-backpressure)), so a task that does nothing but send yields once the buffer
    /// fills, at most [`Config::capacity`](crate::Config::capacity) bytes later.
    ///
    /// Once 64 KiB or more wait in the outgoing buffer, a send spends its task's
    /// cooperative budget (before it queues), as sends on tokio's own channels do: a loop
    /// of sends that never waits for room still lets the runtime's other tasks run, this
    /// end's writer among them.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the sense of tokio's `mpsc::Sender::send`: if the future is dropped
    /// before it completes, the message was not queued and nothing of it reaches the peer.
    /// If it completed, the message was queued whole.
    ///
    /// # Panics
    ///
    /// When first used outside a Tokio runtime with I/O enabled.
    #[track_caller]
    pub fn send(&self, msg: T) -> impl Future<Output = Result<(), SendError<T>>> + Send + '_ {
        let attached = self.shared.attach().is_ok();
        async move {
            if !attached {
                return Err(SendError::Closed(msg));
            }
            if self.shared.is_deep() {
                // Before the message is queued: a send dropped here sent nothing.
                tokio::task::consume_budget().await;
            }
            // Known at once for most protocols: no future to make and poll then.
            // The waits are boxed, off the common path, so that the future (part of the
            // caller's) stays small.
            if !matches!(self.knows(&msg), Knows::Yes) {
                match Box::pin(self.knows_now(&msg)).await {
                    Ok(()) => {}
                    Err(Some(variant)) => {
                        let why = InvalidMessage::UnknownVariant { variant };
                        return Err(SendError::Invalid(msg, why));
                    }
                    Err(None) => return Err(SendError::Closed(msg)),
                }
            }
            let msg = match self.shared.offer_holding(msg, true) {
                Held::Copy(msg) => msg,
                Held::Queued => return Ok(()),
                Held::Closed(msg) => return Err(SendError::Closed(msg)),
                Held::Invalid(msg, why) => return Err(SendError::Invalid(msg, why)),
                Held::Full(pending) => {
                    let waiting = trace::Stopwatch::start();
                    let queued = Box::pin(self.shared.push_held_when_room(pending)).await;
                    waiting.report(&self.shared.span, "send");
                    return queued.map_err(SendError::Closed);
                }
            };
            let mut frame = match self.shared.offer(&msg, true) {
                Ok(Offer::Queued) => return Ok(()),
                Ok(Offer::Closed) => return Err(SendError::Closed(msg)),
                Ok(Offer::Full(frame, fds)) => (frame, fds),
                Err(why) => return Err(SendError::Invalid(msg, why)),
            };
            let waiting = trace::Stopwatch::start();
            if Box::pin(self.shared.push_when_room(&mut frame.0, &mut frame.1))
                .await
                .is_err()
            {
                return Err(SendError::Closed(msg));
            }
            waiting.report(&self.shared.span, "send");
            Ok(())
        }
    }

    /// Whether no reply can arrive any more (see [`Watch::is_closed`]).
    pub(crate) fn is_ended(&self) -> bool {
        self.shared.calls.is_ended()
    }

    /// A watch on this end's connection.
    pub(crate) fn watch(&self) -> Watch {
        Watch(self.shared.clone())
    }

    /// Whether `msg` may go as a call: the peer knows its variant (waiting for the peer's
    /// hello with `wait`; without, a hello not here yet is [`CallError::Full`], as for
    /// `try_send`). Only the variant's number crosses the wait (`T` need not be `Sync`).
    fn may_call(
        &self,
        msg: &T,
        wait: bool,
    ) -> impl Future<Output = Result<(), CallError>> + Send + '_ {
        let now = match self.knows(msg) {
            Knows::Yes => Some(Ok(())),
            Knows::No(variant) => Some(Err(CallError::UnknownVariant { variant })),
            Knows::NotYet if !wait => Some(match self.knows_at_once(msg) {
                Ok(Knows::Yes) => Ok(()),
                Ok(Knows::No(variant)) => Err(CallError::UnknownVariant { variant }),
                Ok(Knows::NotYet) => Err(CallError::Full),
                Err(()) => Err(CallError::Closed),
            }),
            Knows::NotYet => None,
        };
        // The wait is boxed, off the common path: a call's future is moved around (into
        // a `FuturesUnordered`, a task), and its size is copied each time.
        let waiting = now.is_none().then(|| Box::pin(self.knows_now(msg)));
        async move {
            match (now, waiting) {
                (Some(now), _) => now,
                (None, Some(waiting)) => match waiting.await {
                    Ok(()) => Ok(()),
                    Err(Some(variant)) => Err(CallError::UnknownVariant { variant }),
                    Err(None) => Err(CallError::Closed),
                },
                (None, None) => unreachable!("a wait is made when there is no answer now"),
            }
        }
    }

    /// Queues `msg` as call `id`, waiting for room with `wait` (else a full buffer is
    /// [`CallError::Full`]): whether it had to wait.
    fn queue_call(
        &self,
        msg: &T,
        id: u64,
        wait: bool,
    ) -> impl Future<Output = Result<bool, CallError>> + Send + '_ {
        let offered = match self.shared.offer_as(msg, Kind::Call(id), true) {
            Ok(Offer::Queued) => Ok(None),
            Ok(Offer::Closed) => Err(CallError::Closed),
            Ok(Offer::Full(..)) if !wait => Err(CallError::Full),
            Ok(Offer::Full(frame, fds)) => Ok(Some((frame, fds))),
            Err(why) => Err(CallError::Invalid {
                reason: why.to_string(),
            }),
        };
        async move {
            let Some((mut frame, mut fds)) = offered? else {
                return Ok(false);
            };
            match Box::pin(self.shared.push_when_room(&mut frame, &mut fds)).await {
                Ok(()) => Ok(true),
                Err(_) => Err(CallError::Closed),
            }
        }
    }

    /// Sends `msg` as call `tag` of a stream whose replies go to `sink`: returns once the
    /// message is queued (waiting for a slot and for room with `wait`), and the outcome
    /// reaches the sink later. The engine of [`CallStream`](crate::CallStream).
    ///
    /// Cancel safe: dropped before the message is queued, the call is not made.
    pub(crate) async fn start_streamed(
        &self,
        msg: T,
        tag: u64,
        sink: &Arc<dyn Sink>,
        wait: bool,
    ) -> Result<(), CallError> {
        if self.shared.attach().is_err() {
            return Err(CallError::Closed);
        }
        self.may_call(&msg, wait).await?;
        let calls = &self.shared.calls;
        let id = calls.start_streamed(tag, sink, wait).await?;
        let mut call = InFlight {
            calls,
            id,
            sent: false,
            done: false,
        };
        self.queue_call(&msg, id, wait).await?;
        // From here the slot is the stream's: it frees when the outcome is delivered. If
        // the connection ended while the message was being queued, this call's outcome
        // is that end, given to the stream here (once: the end left it to this caller).
        call.done = true;
        if let Err(why) = calls.sent(id) {
            sink.fail(tag, why);
        }
        Ok(())
    }

    /// Sends `msg` as a call and waits for the reply, decoded as `R`: the engine of the
    /// client that `#[aiosock::protocol]` generates. Without `wait`, a full call table or
    /// outgoing buffer fails the call at once with [`CallError::Full`].
    ///
    /// Cancel safe in the sense that dropping the future cancels the call: before its
    /// message was queued nothing is sent; after, the reply is discarded when it comes.
    pub(crate) fn call<R: DeserializeOwned + Send + 'static>(
        &self,
        msg: T,
        wait: bool,
    ) -> impl Future<Output = Result<R, CallError>> + Send + '_ {
        let attached = self.shared.attach().is_ok();
        async move {
            if !attached {
                return Err(CallError::Closed);
            }
            self.may_call(&msg, wait).await?;
            let calls = &self.shared.calls;
            // A slot taken in this poll holds this poll's waker, so that a reply wakes
            // this future even before it first looks for one.
            let started = std::future::poll_fn(|cx| {
                Poll::Ready(calls.try_start(decode_reply::<R>, cx.waker()))
            })
            .await?;
            // Whether this future has not waited since it took the slot: then its first
            // look at the outcome would only find the waker in place and no reply yet
            // (a reply that came meanwhile woke this task, which polls it again).
            let (id, mut fresh) = match started {
                Some(id) => (id, true),
                None if !wait => return Err(CallError::Full),
                None => (Box::pin(calls.start(decode_reply::<R>, wait)).await?, false),
            };
            let mut call = InFlight {
                calls,
                id,
                sent: false,
                done: false,
            };
            if self.queue_call(&msg, id, wait).await? {
                fresh = false;
            }
            call.sent = true;
            let reply = std::future::poll_fn(|cx| {
                if std::mem::take(&mut fresh) {
                    Poll::Pending
                } else {
                    calls.poll_outcome::<R>(id, cx)
                }
            })
            .await;
            call.done = true;
            reply
        }
    }

    /// Sends `msg` if the outgoing buffer has room, without waiting.
    ///
    /// Works outside a runtime too: the message is queued and written once the end is
    /// attached to a runtime (or, if it never is, when the last sender is dropped).
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] when the buffer is at capacity, [`TrySendError::Closed`] and
    /// [`TrySendError::Invalid`] as for [`send`](Self::send). Each hands `msg` back.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[aiosock::protocol] enum Msg { Tick }
    /// let mut config = aiosock::Config::new();
    /// config.set_capacity(1);
    /// let (a, _b) = aiosock::pair::<Msg, Msg>()?;
    /// let (tx, _rx) = a.with_config(config).into_split();
    /// // No runtime here: the first message stays queued, and the buffer is at capacity.
    /// tx.try_send(Msg::Tick).expect("room for one");
    /// assert!(matches!(tx.try_send(Msg::Tick), Err(aiosock::TrySendError::Full(_))));
    /// # Ok::<(), aiosock::Error>(())
    /// ```
    pub fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
        self.shared.attach_if_in_runtime();
        let unknown = |variant| InvalidMessage::UnknownVariant { variant };
        match self.knows_at_once(&msg) {
            Ok(Knows::Yes) => {}
            Ok(Knows::No(variant)) => return Err(TrySendError::Invalid(msg, unknown(variant))),
            // The peer's hello is not here yet: try again later (`send` waits for it).
            Ok(Knows::NotYet) => return Err(TrySendError::Full(msg)),
            Err(()) => return Err(TrySendError::Closed(msg)),
        }
        let msg = match self.shared.offer_holding(msg, true) {
            Held::Copy(msg) => msg,
            Held::Queued => return Ok(()),
            Held::Closed(msg) => return Err(TrySendError::Closed(msg)),
            Held::Invalid(msg, why) => return Err(TrySendError::Invalid(msg, why)),
            Held::Full(pending) => return Err(TrySendError::Full(pending.into_inner())),
        };
        match self.shared.offer(&msg, true) {
            Ok(Offer::Queued) => Ok(()),
            Ok(Offer::Full(..)) => Err(TrySendError::Full(msg)),
            Ok(Offer::Closed) => Err(TrySendError::Closed(msg)),
            Err(why) => Err(TrySendError::Invalid(msg, why)),
        }
    }

    /// Waits until the outgoing buffer has room for a message: the "writable" callback of
    /// the Python original, as a future.
    ///
    /// After it returns `Ok`, a [`try_send`](Self::try_send) from this task succeeds unless
    /// another clone filled the buffer in between. For a protocol with
    /// [`#[added]`](crate#compatible-evolution) variants it also waits for the peer's hello,
    /// which `try_send` needs to know whether the peer understands them.
    ///
    /// # Errors
    ///
    /// `SendError::Closed(())` once the peer can no longer receive.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    ///
    /// # Panics
    ///
    /// When first used outside a Tokio runtime with I/O enabled.
    #[track_caller]
    pub fn ready(&self) -> impl Future<Output = Result<(), SendError<()>>> + Send + '_ {
        let _ = self.shared.attach();
        async move {
            if T::BASELINE < T::VARIANT_COUNT {
                // A protocol with `#[added]` variants: `try_send` needs the peer's hello
                // for those (it says `Full` until then), so readiness includes it.
                self.shared
                    .peer_hello()
                    .await
                    .map_err(|()| SendError::Closed(()))?;
            }
            self.shared
                .ready()
                .await
                .map_err(|()| SendError::Closed(()))
        }
    }

    /// Waits until every message accepted so far, from any clone, is in the kernel's
    /// socket buffer.
    ///
    /// # Errors
    ///
    /// `SendError::Closed(())` if the end closed before that.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    ///
    /// # Panics
    ///
    /// When first used outside a Tokio runtime with I/O enabled.
    #[track_caller]
    pub fn flush(&self) -> impl Future<Output = Result<(), SendError<()>>> + Send + '_ {
        let _ = self.shared.attach();
        async move {
            self.shared
                .flush()
                .await
                .map_err(|()| SendError::Closed(()))
        }
    }

    /// Completes once the peer can no longer receive: it dropped its
    /// [`Receiver`](crate::Receiver), exited or was killed.
    ///
    /// Works for an idle sender too: while waiting, it watches the socket's events and asks
    /// the kernel (with a zero-length send) whether the peer can still receive.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    ///
    /// # Panics
    ///
    /// When first used outside a Tokio runtime with I/O enabled.
    #[track_caller]
    pub fn closed(&self) -> impl Future<Output = ()> + Send + '_ {
        let _ = self.shared.attach();
        async move { self.shared.closed().await }
    }

    /// Whether the peer can no longer receive; see [`closed`](Self::closed). Asks the
    /// kernel (one system call) unless that is already known.
    pub fn is_closed(&self) -> bool {
        self.shared.probe_peer()
    }

    fn poll_pending(
        &mut self,
        cx: &mut Context<'_>,
        make: fn(Arc<Shared>) -> PendingFuture,
    ) -> Poll<Result<(), SendError<Option<T>>>> {
        let slot = self.sink.get_mut().unwrap_or_else(|e| e.into_inner());
        let fut = slot.get_or_insert_with(|| make(self.shared.clone()));
        let result = ready!(fut.as_mut().poll(cx));
        *slot = None;
        Poll::Ready(result.map_err(|()| SendError::Closed(None)))
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        self.shared.add_sender();
        Sender {
            shared: self.shared.clone(),
            sink: Mutex::new(None),
            _msg: PhantomData,
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.shared.remove_sender();
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("fd", &self.shared.fd())
            .field("closed", &self.shared.known_closed())
            .finish_non_exhaustive()
    }
}

/// `Sink` over the same buffer: `poll_ready` waits for capacity (in bytes, and in
/// descriptors under [`Config::max_fds`](crate::Config::max_fds), which the message after
/// it may then exceed by its own), `start_send` queues,
/// `poll_flush` waits until everything queued is in the kernel. `poll_close` only flushes:
/// the direction ends when the last `Sender` is dropped, not when one sink closes.
///
/// The error hands the message back where there is one: `SendError::Closed(Some(msg))`
/// from `start_send`, `SendError::Closed(None)` from the other methods.
impl<T: Protocol> futures_sink::Sink<T> for Sender<T> {
    type Error = SendError<Option<T>>;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let _ = self.shared.attach();
        if T::BASELINE < T::VARIANT_COUNT {
            // A protocol with `#[added]` variants: `start_send` must know what the peer
            // knows, so readiness includes the peer's hello.
            return self.poll_pending(cx, |shared| {
                Box::pin(async move {
                    shared.peer_hello().await?;
                    shared.ready_for_unknown().await
                })
            });
        }
        self.poll_pending(cx, |shared| {
            Box::pin(async move { shared.ready_for_unknown().await })
        })
    }

    fn start_send(self: Pin<&mut Self>, msg: T) -> Result<(), Self::Error> {
        match self.knows(&msg) {
            Knows::Yes => {}
            Knows::No(variant) => {
                let why = InvalidMessage::UnknownVariant { variant };
                return Err(SendError::Invalid(Some(msg), why));
            }
            // `poll_ready` waited for the peer's hello; it can only be missing if the
            // connection ended.
            Knows::NotYet => return Err(SendError::Closed(Some(msg))),
        }
        // `poll_ready` returned Ok, so the buffer had room; if a clone filled it since,
        // the frame still goes in (the capacity is then exceeded by this one message).
        match self.shared.offer(&msg, false) {
            Ok(Offer::Queued) => Ok(()),
            Ok(Offer::Full(..) | Offer::Closed) => Err(SendError::Closed(Some(msg))),
            Err(why) => Err(SendError::Invalid(Some(msg), why)),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.poll_pending(cx, |shared| Box::pin(async move { shared.flush().await }))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.poll_flush(cx)
    }
}
