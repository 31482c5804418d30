//! The receiving half of an end.

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use crate::channel::reader::ReadBuf;
use crate::channel::responder::{self, Responder};
use crate::channel::shared::Shared;
use crate::error::{CallError, Error, Part, TryRecvError};
use crate::protocol::{Answer, Shape};
use crate::wire::{self, Decoded, Decoder, Failure, Kind};
use crate::{Dispatch, Protocol, sys, trace};

type Observer<T> = Box<dyn FnMut(&T) + Send>;

/// A message to handle, with the promise to answer it if it is a call.
type Pending<T> = (T, Option<Responder>);

/// A message as read: its call id if the peer wants an answer, the frame's length, and
/// how many descriptors it holds.
struct Incoming<T> {
    msg: T,
    call: Option<u64>,
    len: usize,
    fds: usize,
    /// The decode budget units it took.
    spent: usize,
}

/// Receives messages of type `T` from the peer.
///
/// Made by [`Endpoint::into_split`](crate::Endpoint::into_split). Bytes are read into a
/// buffer kept in the receiver itself and decoded in place, so a cancelled
/// [`recv`](Self::recv) loses nothing.
///
/// Dropping the receiver shuts the receiving direction down and discards what the peer sent
/// and this end did not read: the peer's further sends fail with
/// [`SendError::Closed`](crate::SendError::Closed), promptly even if its socket was full.
///
/// # Examples
///
/// ```
/// #[aiosock::protocol]
/// #[derive(Debug, PartialEq)]
/// enum Num {
///     N(u32),
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (a, b) = aiosock::pair::<Num, Num>()?;
/// let (tx, _) = a.into_split();
/// let (_, mut rx) = b.into_split();
/// for n in 0..3 {
///     tx.send(Num::N(n)).await?;
/// }
/// drop(tx);
/// let mut got = Vec::new();
/// while let Some(Num::N(n)) = rx.recv().await? {
///     got.push(n);
/// }
/// assert_eq!(got, [0, 1, 2]);
/// # Ok(())
/// # }
/// ```
pub struct Receiver<T> {
    shared: Arc<Shared>,
    buf: ReadBuf,
    decoder: Decoder,
    /// An error or the end was returned: the stream is over, and nothing more is read.
    failed: bool,
    observer: Option<Observer<T>>,
    /// Messages read ahead while `serve` ran a handler, each with its promise to answer
    /// and the number of descriptors it holds.
    held: VecDeque<(Pending<T>, usize)>,
    /// What the messages in `held` count for (see [`held_cost`]).
    held_bytes: usize,
    /// `serve` is reading ahead while a handler method runs: no spinning then (the method
    /// would wait for it).
    reading_ahead: bool,
    /// How the stream ended while reading ahead: returned once `held` is empty.
    ended: Option<Result<(), Error>>,
    _msg: PhantomData<fn() -> T>,
}

impl<T: Protocol> Receiver<T> {
    pub(crate) fn new(shared: Arc<Shared>, sends: Shape, expects: Shape) -> Receiver<T> {
        let limits = shared.config.limits();
        Receiver {
            shared,
            buf: ReadBuf::new(limits),
            decoder: Decoder::new(sends, expects, limits),
            failed: false,
            observer: None,
            held: VecDeque::new(),
            held_bytes: 0,
            reading_ahead: false,
            ended: None,
            _msg: PhantomData,
        }
    }

    /// Receives the next message.
    ///
    /// Returns `Ok(Some(msg))` for each message in order, and `Ok(None)` once the peer has
    /// closed its sending side (dropped every `Sender`, exited, or was killed) and every
    /// message it sent before was received. The peer's hello is checked before the first
    /// message.
    ///
    /// A message the peer sent as a call is returned like any other, but `recv` cannot
    /// answer it: its caller gets [`CallError::Unanswered`](crate::CallError::Unanswered)
    /// at once. Serve calls with [`serve`](Self::serve), or receive them with
    /// [`recv_request`](Self::recv_request) to answer them. Replies to this end's own calls
    /// are delivered to their callers on the way, never returned here.
    ///
    /// # Errors
    ///
    /// See [`Error`]: the peer's hello does not match, a frame is malformed or does not
    /// decode, the peer closed mid-frame, or reading failed. After an error the stream is
    /// over and later calls return `Ok(None)`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: read progress lives in the receiver, so if the future is dropped (for
    /// example in `tokio::select!`) no message is lost, and the next call goes on.
    ///
    /// # Panics
    ///
    /// When first used outside a Tokio runtime with I/O enabled.
    pub async fn recv(&mut self) -> Result<Option<T>, Error> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Receives the next message together with the means to answer it, if the peer sent
    /// it as a call: the `recv` counterpart of [`serve`](Self::serve), for a loop that
    /// handles some messages itself and hands others to a handler.
    ///
    /// [`Request::dispatch`] runs the handler's method and answers the call with what it
    /// returns; [`Request::into_message`] takes the message out, and its caller then learns
    /// at once that no answer will come ([`CallError::Unanswered`](crate::CallError::Unanswered)),
    /// as does dropping the request. The answer goes out through this end's sending half,
    /// which must still be open (a [`Sender`](crate::Sender) alive).
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`recv`](Self::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// #[aiosock::protocol]
    /// #[derive(Debug, PartialEq)]
    /// enum Math {
    ///     #[reply(u64)]
    ///     Square(u64),
    ///     Note(String),
    /// }
    ///
    /// struct Squarer;
    ///
    /// impl MathHandler for Squarer {
    ///     async fn on_square(&mut self, n: u64) -> u64 {
    ///         n * n
    ///     }
    ///     async fn on_note(&mut self, _: String) {}
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (a, b) = aiosock::pair::<Math, Math>()?;
    /// let (tx, a_rx) = a.into_split();
    /// tokio::spawn(a_rx.serve(Squarer)); // replies to `a`'s calls arrive here
    /// let math = MathClient::new(tx);
    /// let call = tokio::spawn(async move { math.square(9).await });
    ///
    /// let (_b_tx, mut b_rx) = b.into_split(); // `_b_tx` keeps the direction open for answers
    /// let request = b_rx.recv_request().await?.expect("a request");
    /// assert_eq!(request.message(), &Math::Square(9));
    /// assert!(request.is_call());
    /// request.dispatch(&mut Squarer).await;
    /// assert_eq!(call.await??, 81);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv_request(&mut self) -> Result<Option<Request<T>>, Error> {
        std::future::poll_fn(|cx| self.poll_request(cx))
            .await
            .map(|next| next.map(|(msg, responder)| Request { msg, responder }))
    }

    /// Polls for the next message; the `poll` form of [`recv`](Self::recv).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<T>, Error>> {
        self.poll_incoming(cx)
            .map_ok(|incoming| incoming.map(|i| self.unanswered(i)))
    }

    /// Polls for the next message as read, with its call id.
    fn poll_incoming(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Incoming<T>>, Error>> {
        self.advance(|this| {
            // Reading from the socket spends the task's cooperative budget, as tokio's own
            // I/O does; decoding what is already buffered does not.
            let coop = ready!(tokio::task::coop::poll_proceed(cx));
            let filled = ready!(this.poll_fill(cx));
            coop.made_progress();
            Poll::Ready(filled)
        })
    }

    /// A message handed to a caller that does not answer (`recv`, `try_recv`, the
    /// `Stream`): if it is a call, its caller learns at once that no answer will come.
    fn unanswered(&self, incoming: Incoming<T>) -> T {
        if let Some(id) = incoming.call {
            Responder::new(self.shared.clone(), id).fail(Failure::Unanswered);
        }
        incoming.msg
    }

    /// Receives a message that has already arrived, without waiting.
    ///
    /// Reads what the socket holds without blocking, so it works outside a runtime too.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] when no whole message is there yet,
    /// [`TryRecvError::Disconnected`] after the peer closed and everything was received, and
    /// [`TryRecvError::Failed`] for the errors of [`recv`](Self::recv).
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let step = self.advance(|this| match this.buf.fill_from(this.shared.fd()) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            other => Poll::Ready(other.map(drop)),
        });
        match step {
            Poll::Pending => Err(TryRecvError::Empty),
            Poll::Ready(Ok(Some(incoming))) => Ok(self.unanswered(incoming)),
            Poll::Ready(Ok(None)) => Err(TryRecvError::Disconnected),
            Poll::Ready(Err(e)) => Err(TryRecvError::Failed(e)),
        }
    }

    /// Calls `observer` with every message this receiver decodes, just before returning it
    /// (from [`recv`](Self::recv), [`try_recv`](Self::try_recv), the `Stream` and
    /// [`serve`](Self::serve) alike; `serve` may decode a message early, while it reads
    /// ahead during a method). It replaces any earlier observer.
    ///
    /// This is the Python original's read callback, which saw each message while an awaiting
    /// reader got it too: observe (log, count, trace) without giving up `recv`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// #[aiosock::protocol]
    /// enum Msg {
    ///     Ping,
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (a, b) = aiosock::pair::<Msg, Msg>()?;
    /// let (tx, _) = a.into_split();
    /// let (_, mut rx) = b.into_split();
    /// let seen = Arc::new(AtomicUsize::new(0));
    /// let counter = seen.clone();
    /// rx.observe(move |_msg: &Msg| {
    ///     counter.fetch_add(1, Ordering::Relaxed);
    /// });
    /// tx.send(Msg::Ping).await?;
    /// assert!(matches!(rx.recv().await?, Some(Msg::Ping)));
    /// assert_eq!(seen.load(Ordering::Relaxed), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn observe(&mut self, observer: impl FnMut(&T) + Send + 'static) {
        self.observer = Some(Box::new(observer));
    }

    /// Closes the receiving direction without dropping the receiver: the peer's further
    /// sends fail, and messages already sent can still be received until `Ok(None)`.
    pub fn close(&mut self) {
        sys::shutdown_read(self.shared.fd());
    }

    /// Calls `handler`'s method for every message until the peer closes, then its `closed`
    /// hook, and returns the handler.
    ///
    /// The handler trait is generated by [`protocol`](crate::protocol): for `enum Foo`,
    /// implement `FooHandler`. Each method runs to completion before the next message is
    /// handled, so messages are handled in order.
    ///
    /// # Calls
    ///
    /// A message the peer sent as a call (a variant declared with `#[reply(T)]`, sent
    /// through the generated client) is answered with what its method returned, on this
    /// end's sending half. That half must stay open while serving: keep a
    /// [`Sender`](crate::Sender) (in the handler, for example), or serve with
    /// [`Endpoint::serve`](crate::Endpoint::serve), which keeps it. If every sender is
    /// gone, the direction has ended, and the peer's calls fail with
    /// [`CallError::Closed`](crate::CallError::Closed).
    ///
    /// While a method runs, `serve` goes on reading: replies to this end's own calls are
    /// delivered (a method may call the peer and await the answer), and the messages that
    /// follow are read ahead, up to [`Config::capacity`](crate::Config::capacity) bytes of
    /// them, to be handled next in order. Each counts for its frame's length or, if that
    /// is less, for what it may take in memory: its own size plus 16 bytes for each unit
    /// of decode budget it spent, so that a peer sending tiny frames that decode into large
    /// values cannot make `serve` hold more. Past that it stops reading until the method
    /// returns, so a method that awaits the peer's answer while the peer sends more than
    /// that before answering waits forever: raise the capacity for such protocols.
    ///
    /// # Errors
    ///
    /// The first error of [`recv`](Self::recv); the handler is dropped.
    ///
    /// # Panics
    ///
    /// A panic in a handler method stops `serve`, since the handler may be half-updated:
    /// a call being answered fails with [`CallError::Panicked`](crate::CallError::Panicked)
    /// and the panic's message, the peer is told (its receiver returns
    /// [`Error::PeerPanicked`], and its other calls fail with the message), and the panic
    /// resumes out of `serve`, as from any `async fn`. A worker whose `main` serves then
    /// exits as a panicking program does (code 101). Run `serve` in its own task
    /// (`tokio::spawn`) to keep the process going: the task's `JoinHandle` returns the
    /// panic, and the process's other channels are unaffected.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future drops the receiver and the handler; a message
    /// whose method was running is lost, and a call being answered fails with
    /// [`CallError::Unanswered`](crate::CallError::Unanswered).
    ///
    /// # Examples
    ///
    /// ```
    /// #[aiosock::protocol]
    /// enum Cmd {
    ///     Add(u64),
    ///     Stop,
    /// }
    ///
    /// #[derive(Default)]
    /// struct Sum {
    ///     total: u64,
    ///     stopped: bool,
    /// }
    ///
    /// impl CmdHandler for Sum {
    ///     async fn on_add(&mut self, n: u64) {
    ///         self.total += n;
    ///     }
    ///     async fn on_stop(&mut self) {
    ///         self.stopped = true;
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (a, b) = aiosock::pair::<Cmd, Cmd>()?;
    /// let (tx, _) = a.into_split();
    /// let (_, rx) = b.into_split();
    /// let server = tokio::spawn(rx.serve(Sum::default()));
    /// tx.send(Cmd::Add(40)).await?;
    /// tx.send(Cmd::Add(2)).await?;
    /// tx.send(Cmd::Stop).await?;
    /// drop(tx);
    /// let sum = server.await??;
    /// assert_eq!((sum.total, sum.stopped), (42, true));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn serve<H>(mut self, mut handler: H) -> Result<H, Error>
    where
        T: Dispatch<H>,
        H: Send,
    {
        while let Some((msg, responder)) = self.next_request().await? {
            let handled = answered(msg.dispatch_answer(&mut handler), responder);
            if let Err(panic) = self.reading_ahead(handled).await {
                self.report_panic(panic_message(&*panic));
                std::panic::resume_unwind(panic);
            }
        }
        T::closed(&mut handler).await;
        Ok(handler)
    }

    /// Like [`serve`](Self::serve), but runs up to `limit` messages at once, each in a task
    /// of its own (`tokio::spawn`) on a clone of `handler`, so that one slow call does not
    /// hold up the others.
    ///
    /// Clones share state only through what they hold (an `Arc`, a channel, a pool), which
    /// is the design: `serve_concurrent` needs `H: Clone`, and each message gets
    /// `&mut` access to its own clone for as long as its method runs.
    ///
    /// # Order
    ///
    /// Messages *start* in the order they arrive, but their methods overlap and finish in
    /// any order, and so do the answers to calls (each answer finds its caller by its call
    /// id). Use [`serve`](Self::serve) where one message must be handled completely before
    /// the next begins.
    ///
    /// Once the peer closed, `serve_concurrent` waits for every method still running, then
    /// calls `closed` on `handler` itself (which no message was handled on) and returns it.
    ///
    /// # Panics
    ///
    /// A panic in a method is contained in its task: a call is answered with
    /// [`CallError::Panicked`] and the panic's message, and serving goes on (each clone is
    /// on its own, so no other message sees a half-updated handler). A one-way message's
    /// panic is only printed by the panic hook, as for any task.
    ///
    /// # Errors
    ///
    /// The first error of [`recv`](Self::recv). Methods still running are aborted; calls
    /// among them are answered with [`CallError::Unanswered`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`serve`](Self::serve); dropping the future also aborts the
    /// tasks it started.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// #[aiosock::protocol]
    /// enum Job {
    ///     #[reply(u64)]
    ///     Slow(u64),
    ///     #[reply(u64)]
    ///     Fast(u64),
    /// }
    ///
    /// #[aiosock::protocol]
    /// enum Nothing {
    ///     Never,
    /// }
    ///
    /// #[derive(Clone)]
    /// struct Worker;
    ///
    /// impl JobHandler for Worker {
    ///     async fn on_slow(&mut self, n: u64) -> u64 {
    ///         tokio::time::sleep(Duration::from_millis(200)).await;
    ///         n
    ///     }
    ///     async fn on_fast(&mut self, n: u64) -> u64 {
    ///         n
    ///     }
    /// }
    ///
    /// impl NothingHandler for () {
    ///     async fn on_never(&mut self) {}
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (client, server) = aiosock::pair::<Job, Nothing>()?;
    /// let (tx, rx) = client.into_split();
    /// tokio::spawn(rx.serve(()));
    /// // The server's sending half carries the answers: keep it while serving.
    /// let (server_tx, requests) = server.into_split();
    /// tokio::spawn(async move {
    ///     let served = requests.serve_concurrent(Worker, 16).await;
    ///     drop(server_tx);
    ///     served
    /// });
    ///
    /// let jobs = JobClient::new(tx);
    /// let slow = jobs.slow(1);
    /// let fast = jobs.fast(2);
    /// tokio::pin!(slow);
    /// // The fast call is answered while the slow one still runs.
    /// tokio::select! {
    ///     slow = &mut slow => panic!("the slow call finished first: {slow:?}"),
    ///     fast = fast => assert_eq!(fast?, 2),
    /// }
    /// assert_eq!(slow.await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn serve_concurrent<H>(mut self, handler: H, limit: usize) -> Result<H, Error>
    where
        T: Dispatch<H>,
        H: Clone + Send + 'static,
    {
        let limit = limit.max(1);
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            while tasks.len() >= limit {
                self.reading_ahead(tasks.join_next()).await;
            }
            let next = std::future::poll_fn(|cx| {
                // Reap finished tasks while waiting, so the set does not grow.
                while let Poll::Ready(Some(_)) = tasks.poll_join_next(cx) {}
                self.poll_request(cx)
            })
            .await?;
            let Some((msg, responder)) = next else { break };
            let mut clone = handler.clone();
            tasks.spawn(async move {
                // A panic is contained here: its caller was answered with it.
                let _ = answered(msg.dispatch_answer(&mut clone), responder).await;
            });
        }
        while tasks.join_next().await.is_some() {}
        let mut handler = handler;
        T::closed(&mut handler).await;
        Ok(handler)
    }

    /// The next message with its promise to answer, if it is a call: one read ahead
    /// first, then from the socket.
    async fn next_request(&mut self) -> Result<Option<Pending<T>>, Error> {
        std::future::poll_fn(|cx| self.poll_request(cx)).await
    }

    fn poll_request(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Pending<T>>, Error>> {
        if let Some(((msg, responder), fds)) = self.held.pop_front() {
            self.buf.fds().release(fds);
            if self.held.is_empty() {
                self.held_bytes = 0;
                if self.held.capacity() > KEEP_HELD {
                    // A burst read ahead is over: its room goes back.
                    self.held = VecDeque::new();
                }
            }
            return Poll::Ready(Ok(Some((msg, responder))));
        }
        if let Some(end) = self.ended.take() {
            return Poll::Ready(end.map(|()| None));
        }
        self.poll_incoming(cx).map_ok(|incoming| {
            incoming.map(|i| {
                let responder = i.call.map(|id| Responder::new(self.shared.clone(), id));
                (i.msg, responder)
            })
        })
    }

    /// Runs `work` (a handler method, or sending its answer) while reading ahead: replies
    /// to this end's own calls keep arriving (a handler may call the peer and wait for the
    /// answer), and messages are held, up to the end's capacity (see [`held_cost`]), to be
    /// handled next in order.
    async fn reading_ahead<F: Future>(&mut self, work: F) -> F::Output {
        let mut work = std::pin::pin!(work);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = work.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            while self.ended.is_none() && self.room_to_read_ahead() {
                self.reading_ahead = true;
                let polled = self.poll_incoming(cx);
                self.reading_ahead = false;
                match polled {
                    Poll::Pending => break,
                    Poll::Ready(Ok(Some(incoming))) => {
                        let responder = incoming
                            .call
                            .map(|id| Responder::new(self.shared.clone(), id));
                        self.held_bytes += held_cost::<T>(incoming.len, incoming.spent);
                        self.buf.fds().hold(incoming.fds);
                        self.held
                            .push_back(((incoming.msg, responder), incoming.fds));
                    }
                    Poll::Ready(Ok(None)) => self.ended = Some(Ok(())),
                    Poll::Ready(Err(e)) => self.ended = Some(Err(e)),
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Whether `serve` may read another message ahead: the messages held take less than
    /// the end's capacity in memory (see [`held_cost`]), and leave room under
    /// [`Config::max_fds`](crate::Config::max_fds) for what the next reads may bring
    /// (up to two batches of descriptors wait to be claimed).
    fn room_to_read_ahead(&mut self) -> bool {
        let config = &self.shared.config;
        let held_fds = self.buf.fds().held();
        self.held_bytes < config.capacity()
            && (held_fds == 0 || held_fds + 2 * config.batch_fds() <= config.max_fds())
    }

    /// `serve` stops on a panic: the peer learns the message, and its calls fail with it.
    fn report_panic(&self, mut message: String) {
        trace::event!(&self.shared.span, error, %message, "a handler panicked: serving stops");
        responder::truncate(&mut message, responder::MAX_MESSAGE);
        let mut frame = Vec::new();
        if wire::encode_frame_as(&mut frame, &message, usize::MAX, Kind::Panicked).is_ok() {
            self.shared.push_owed(&mut frame);
        }
    }

    /// The one step behind [`recv`](Self::recv) and [`try_recv`](Self::try_recv): decodes
    /// what is buffered, and reads more with `fill` while a whole message is missing.
    /// `Pending` only when `fill` is.
    fn advance(
        &mut self,
        mut fill: impl FnMut(&mut Self) -> Poll<io::Result<()>>,
    ) -> Poll<Result<Option<Incoming<T>>, Error>> {
        if self.failed {
            return Poll::Ready(Ok(None));
        }
        if self.decoder.awaiting_hello() {
            // A send that looks for the hello in the socket may find it gone from there.
            self.shared.taking_hello();
        }
        let result = loop {
            match self.decode_buffered() {
                Ok(Some(msg)) => break Ok(Some(msg)),
                Ok(None) if self.buf.eof => break self.finish(),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            if let Err(e) = ready!(fill(self)) {
                break Err(Error::from(e));
            }
        };
        Poll::Ready(self.settle(result))
    }

    /// Decodes the next message from the buffer: `Ok(None)` when more bytes are needed.
    /// Replies to this end's calls on the way are handed to their callers.
    #[inline]
    fn decode_buffered(&mut self) -> Result<Option<Incoming<T>>, Error> {
        loop {
            let (pending, fds) = self.buf.parts();
            match self.decoder.decode(pending, fds)? {
                Decoded::Message {
                    msg,
                    used,
                    call,
                    fds,
                    spent,
                } => {
                    self.buf.consume(used);
                    if let Some(observer) = &mut self.observer {
                        observer(&msg);
                    }
                    return Ok(Some(Incoming {
                        msg,
                        call,
                        len: used,
                        fds,
                        spent,
                    }));
                }
                Decoded::Reply {
                    id,
                    failed,
                    payload,
                    fds,
                    used,
                } => {
                    let limits = self.shared.config.limits();
                    let bytes = &self.buf.pending()[payload];
                    self.shared
                        .calls
                        .complete(id, failed, bytes, fds, &limits)?;
                    self.buf.consume(used);
                }
                Decoded::Panicked { message, used } => {
                    self.buf.consume(used);
                    return Err(Error::PeerPanicked { message });
                }
                Decoded::Hello { used, known } => {
                    trace::event!(&self.shared.span, debug, "peer hello checked");
                    self.shared.peer_knows(known);
                    self.buf.consume(used);
                }
                Decoded::Need(need) => {
                    self.buf.need(need);
                    return Ok(None);
                }
            }
        }
    }

    /// What end-of-file means here: a clean close between frames, or a truncation.
    fn finish(&mut self) -> Result<Option<Incoming<T>>, Error> {
        // The peer closed its sending side; ask whether it can still receive ours.
        self.shared.probe_peer();
        if self.buf.pending().is_empty() {
            // Descriptors that no frame claimed came with the last bytes.
            self.buf.fds().finish()?;
            Ok(None)
        } else if let Some(problem) = self.buf.fds().problem() {
            Err(Error::Fds(problem))
        } else if self.decoder.awaiting_hello() {
            Err(Error::Truncated { what: Part::Hello })
        } else {
            Err(Error::Truncated { what: Part::Frame })
        }
    }

    /// Marks the stream over after an error or the end.
    fn settle(
        &mut self,
        result: Result<Option<Incoming<T>>, Error>,
    ) -> Result<Option<Incoming<T>>, Error> {
        if !matches!(result, Ok(Some(_))) {
            // Over without the peer's hello: senders waiting for it must not wait on.
            self.shared.hello_never();
        }
        match &result {
            Err(e) => {
                // No reply can be trusted after a bad frame; none comes after a panic.
                self.shared.calls.end(match e {
                    Error::PeerPanicked { message } => CallError::Panicked {
                        message: message.clone(),
                    },
                    other => CallError::Failed {
                        reason: other.to_string(),
                    },
                });
                trace::event!(&self.shared.span, warn, error = %e, "receive failed: the connection is over for receiving");
                // Nothing after a bad frame can be trusted: stop receiving for good, so the
                // peer's further sends fail instead of piling up here.
                self.failed = true;
                self.buf.clear();
                sys::shutdown_read(self.shared.fd());
            }
            Ok(None) => {
                trace::event!(
                    &self.shared.span,
                    debug,
                    "peer closed its sending direction"
                );
                self.failed = true;
                // The peer answers nothing more.
                self.shared.calls.end(CallError::Closed);
            }
            Ok(Some(_)) => {}
        }
        result
    }

    /// Reads more bytes from the socket, waiting for it. Readiness is cleared when a read
    /// finds the socket empty (`EAGAIN`), or proves it drained: it stopped short of its
    /// space without ancillary data. A short read that ended at a segment with descriptors
    /// proves nothing (the kernel ends a read after such a segment), so the next poll
    /// reads again.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let io = self.shared.attach()?;
        loop {
            let mut ready = match io.poll_read_ready(cx) {
                Poll::Ready(ready) => ready?,
                Poll::Pending => {
                    // Low-latency mode: poll the socket for a while before parking, between
                    // messages only (not inside a frame, not while `serve` runs a method).
                    if !self.reading_ahead
                        && self.buf.pending().is_empty()
                        && let Some(got) = self.spin()
                    {
                        return Poll::Ready(got);
                    }
                    // This task is about to wait: the next send may write at once again,
                    // and an empty buffer need not stay large.
                    self.shared.reader_waiting();
                    self.buf.idle();
                    return Poll::Pending;
                }
            };
            match ready.try_io(|fd| self.buf.fill_from(fd.get_ref().as_fd())) {
                Ok(Ok(drained)) => {
                    if drained {
                        // Saves the `recv` that would only say `EAGAIN`. Readiness that
                        // arrived meanwhile is kept (the guard clears only what it saw).
                        ready.clear_ready();
                    }
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

/// Room for messages read ahead that `serve` keeps once it has handled them all.
const KEEP_HELD: usize = 64;

/// What a message read ahead is counted as while `serve` holds it: the frame's length or,
/// if larger, what it may take in memory (its own size where it is held, and the heap its
/// decode was allowed: [`MEMORY_PER_UNIT`](crate::wire::MEMORY_PER_UNIT) bytes per budget
/// unit it spent). So a flood of tiny frames that each decode into a large value cannot
/// make `serve` hold more memory than the end's capacity (plus one message).
fn held_cost<T>(len: usize, spent: usize) -> usize {
    let slot = std::mem::size_of::<(Pending<T>, usize)>();
    len.max(slot.saturating_add(spent.saturating_mul(wire::MEMORY_PER_UNIT)))
}

impl<T> Receiver<T> {
    /// With [`Config::set_spin`](crate::Config::set_spin): reads the socket in a busy loop
    /// for up to the configured time before the receiver parks. `Some` once bytes (or the
    /// end) came, or reading failed; `None` if nothing came in time.
    fn spin(&mut self) -> Option<io::Result<()>> {
        let spin = self.shared.config.spin();
        if spin.is_zero() {
            return None;
        }
        // Spinning is waiting: a send made while it spins (from another thread), or once
        // it returns, writes at once again, as after a park. What this task sent before
        // and left to the writer task goes out now, since on a current-thread runtime the
        // writer cannot run until the spin ends.
        self.shared.reader_waiting();
        self.shared.write_queued_now();
        let start = std::time::Instant::now();
        loop {
            match self.buf.fill_from(self.shared.fd()) {
                Ok(_) => return Some(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Some(Err(e)),
            }
            if start.elapsed() >= spin {
                return None;
            }
            std::hint::spin_loop();
        }
    }
}

// Nothing in a receiver is ever pinned in place: messages read ahead are only moved.
impl<T> Unpin for Receiver<T> {}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // Replies come through here: with the receiver gone, no call can complete.
        self.shared.calls.end(CallError::Closed);
        self.held.clear();
        // Shut the direction down and discard what the peer sent and we did not read,
        // once the peer's hello is known (the sending half needs it for `#[added]`
        // variants).
        self.shared
            .receiver_dropped(self.buf.pending(), self.decoder.awaiting_hello());
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("fd", &self.shared.fd())
            .field("buffered", &self.buf.pending().len())
            .field("buffer_capacity", &self.buf.capacity())
            .field("eof", &self.buf.eof)
            .finish_non_exhaustive()
    }
}

/// Yields `Ok(msg)` per message and ends after the peer closed; an `Err` is the last item.
impl<T: Protocol> futures_core::Stream for Receiver<T> {
    type Item = Result<T, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx).map(Result::transpose)
    }
}

/// Runs a handler method (`work`) and, if the message was a call, answers it with what the
/// method returned, or with the panic's message if it panicked; the panic comes back as
/// the error, for the caller to resume or contain.
async fn answered(
    work: impl Future<Output = Answer>,
    responder: Option<Responder>,
) -> Result<(), Box<dyn Any + Send>> {
    match catch_unwind(work).await {
        Ok(answer) => {
            if let Some(responder) = responder {
                responder.answer(answer).await;
            }
            Ok(())
        }
        Err(panic) => {
            if let Some(responder) = responder {
                responder.fail(Failure::Panicked(panic_message(&*panic)));
            }
            Err(panic)
        }
    }
}

/// Runs `work`, catching a panic in it (its payload comes back as the error).
async fn catch_unwind<F: Future>(work: F) -> Result<F::Output, Box<dyn Any + Send>> {
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| work.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    })
    .await
}

/// The message of a panic's payload.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

/// A message received with [`Receiver::recv_request`], with the means to answer it if the
/// peer sent it as a call.
///
/// Dropping a request that is a call, or taking its message out with
/// [`into_message`](Self::into_message), tells the caller at once that no answer will come.
pub struct Request<T> {
    msg: T,
    responder: Option<Responder>,
}

impl<T: Protocol> Request<T> {
    /// The message.
    pub fn message(&self) -> &T {
        &self.msg
    }

    /// Whether the peer sent it as a call, waiting for an answer.
    pub fn is_call(&self) -> bool {
        self.responder.is_some()
    }

    /// The message; if it is a call, its caller gets
    /// [`CallError::Unanswered`](crate::CallError::Unanswered).
    pub fn into_message(self) -> T {
        if let Some(responder) = self.responder {
            responder.fail(Failure::Unanswered);
        }
        self.msg
    }

    /// Calls `handler`'s method for the message and, if it is a call, answers it with what
    /// the method returned.
    ///
    /// # Panics
    ///
    /// A panic in the method answers the caller with
    /// [`CallError::Panicked`](crate::CallError::Panicked) and the panic's message, then
    /// resumes.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if the future is dropped, the method is cancelled and a call is
    /// answered with [`CallError::Unanswered`](crate::CallError::Unanswered).
    pub async fn dispatch<H>(self, handler: &mut H)
    where
        T: Dispatch<H>,
        H: Send,
    {
        let Request { msg, responder } = self;
        if let Err(panic) = answered(msg.dispatch_answer(handler), responder).await {
            std::panic::resume_unwind(panic);
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Request<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("msg", &self.msg)
            .field("call", &self.responder.is_some())
            .finish()
    }
}
