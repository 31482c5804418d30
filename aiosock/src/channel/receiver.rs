//! The receiving half of an end.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use crate::channel::reader::ReadBuf;
use crate::channel::shared::Shared;
use crate::error::{Error, Part, TryRecvError};
use crate::protocol::ProtocolId;
use crate::wire::{Decoded, Decoder};
use crate::{Dispatch, Protocol, sys, trace};

type Observer<T> = Box<dyn FnMut(&T) + Send>;

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
    _msg: PhantomData<fn() -> T>,
}

impl<T: Protocol> Receiver<T> {
    pub(crate) fn new(shared: Arc<Shared>, sends: ProtocolId, expects: ProtocolId) -> Receiver<T> {
        let limits = shared.config.limits();
        Receiver {
            shared,
            buf: ReadBuf::default(),
            decoder: Decoder::new(sends, expects, limits),
            failed: false,
            observer: None,
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

    /// Polls for the next message; the `poll` form of [`recv`](Self::recv).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<T>, Error>> {
        self.advance(|this| {
            // Reading from the socket spends the task's cooperative budget, as tokio's own
            // I/O does; decoding what is already buffered does not.
            let coop = ready!(tokio::task::coop::poll_proceed(cx));
            let filled = ready!(this.poll_fill(cx));
            coop.made_progress();
            Poll::Ready(filled)
        })
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
            Poll::Ready(Ok(Some(msg))) => Ok(msg),
            Poll::Ready(Ok(None)) => Err(TryRecvError::Disconnected),
            Poll::Ready(Err(e)) => Err(TryRecvError::Failed(e)),
        }
    }

    /// Calls `observer` with every message this receiver returns, just before returning it
    /// (from [`recv`](Self::recv), [`try_recv`](Self::try_recv), the `Stream` and
    /// [`serve`](Self::serve) alike). It replaces any earlier observer.
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
    /// received, so messages are handled in order.
    ///
    /// # Errors
    ///
    /// The first error of [`recv`](Self::recv); the handler is dropped.
    ///
    /// # Panics
    ///
    /// A panic in a handler method propagates out of `serve`, as from any `async fn`. Run
    /// `serve` in its own task (`tokio::spawn`) to contain it: the task's `JoinHandle` then
    /// returns the panic, the receiver is dropped (so the peer's sends fail with
    /// [`SendError::Closed`](crate::SendError::Closed)), and the process's other channels
    /// are unaffected.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future drops the receiver and the handler, and a
    /// message whose method was running is lost.
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
        while let Some(msg) = self.recv().await? {
            msg.dispatch(&mut handler).await;
        }
        T::closed(&mut handler).await;
        Ok(handler)
    }

    /// The one step behind [`recv`](Self::recv) and [`try_recv`](Self::try_recv): decodes
    /// what is buffered, and reads more with `fill` while a whole message is missing.
    /// `Pending` only when `fill` is.
    fn advance(
        &mut self,
        mut fill: impl FnMut(&mut Self) -> Poll<io::Result<()>>,
    ) -> Poll<Result<Option<T>, Error>> {
        if self.failed {
            return Poll::Ready(Ok(None));
        }
        let result = loop {
            match self.decode_buffered() {
                Ok(Some(msg)) => break Ok(Some(msg)),
                Ok(None) if self.buf.eof => break self.finish(),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            if let Err(e) = ready!(fill(self)) {
                break Err(Error::Io(e));
            }
        };
        Poll::Ready(self.settle(result))
    }

    /// Decodes the next message from the buffer: `Ok(None)` when more bytes are needed.
    fn decode_buffered(&mut self) -> Result<Option<T>, Error> {
        loop {
            match self.decoder.decode(self.buf.pending())? {
                Decoded::Message { msg, used } => {
                    self.buf.consume(used);
                    if let Some(observer) = &mut self.observer {
                        observer(&msg);
                    }
                    return Ok(Some(msg));
                }
                Decoded::Hello { used } => {
                    trace::event!(&self.shared.span, debug, "peer hello checked");
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
    fn finish(&mut self) -> Result<Option<T>, Error> {
        // The peer closed its sending side; ask whether it can still receive ours.
        self.shared.probe_peer();
        if self.buf.pending().is_empty() {
            Ok(None)
        } else if self.decoder.awaiting_hello() {
            Err(Error::Truncated { what: Part::Hello })
        } else {
            Err(Error::Truncated { what: Part::Frame })
        }
    }

    /// Marks the stream over after an error or the end.
    fn settle(&mut self, result: Result<Option<T>, Error>) -> Result<Option<T>, Error> {
        match &result {
            Err(_e) => {
                trace::event!(&self.shared.span, warn, error = %_e, "receive failed: the connection is over for receiving");
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

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // Shut the direction down and discard what the peer sent and we did not read:
        // the room this makes wakes a peer whose socket was full, and its next write
        // fails with EPIPE instead of waiting forever for a reader that is gone.
        sys::shutdown_read(self.shared.fd());
        let mut scratch = [0u8; 16 * 1024];
        for _ in 0..4096 {
            match sys::recv(self.shared.fd(), &mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
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
