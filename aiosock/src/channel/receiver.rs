//! The receiving half of an end.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use crate::channel::driver::Shared;
use crate::error::{Error, Part, TryRecvError};
use crate::protocol::ProtocolId;
use crate::wire::{Decoded, Decoder};
use crate::{Dispatch, Protocol, sys};

/// Bytes read at once when nothing larger is needed.
const READ_CHUNK: usize = 64 * 1024;

type Observer<T> = Box<dyn FnMut(&T) + Send>;

/// Receives messages of type `T` from the peer.
///
/// Made by [`Endpoint::into_split`](crate::Endpoint::into_split). Bytes are read into a
/// buffer kept in the receiver itself and decoded in place, so a cancelled
/// [`recv`](Self::recv) loses nothing.
///
/// Dropping the receiver shuts the receiving direction down: the peer's further sends fail
/// with [`SendError::Closed`](crate::SendError::Closed).
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
    /// `buf[start..end]` holds bytes read and not yet decoded.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes needed in `buf[start..]` before decoding can go on.
    need: usize,
    decoder: Decoder,
    eof: bool,
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
            buf: Vec::new(),
            start: 0,
            end: 0,
            need: 0,
            decoder: Decoder::new(sends, expects, limits),
            eof: false,
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
        if self.failed {
            return Poll::Ready(Ok(None));
        }
        let result = loop {
            match self.step() {
                Ok(Some(msg)) => break Ok(Some(msg)),
                Ok(None) if self.eof => break self.finish(),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            // Reading from the socket spends the task's cooperative budget, as tokio's own
            // I/O does; decoding what is already buffered does not.
            let coop = ready!(tokio::task::coop::poll_proceed(cx));
            match ready!(self.poll_fill(cx)) {
                Ok(()) => coop.made_progress(),
                Err(e) => break Err(Error::Io(e)),
            }
        };
        Poll::Ready(self.settle(result))
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
        if self.failed {
            return Err(TryRecvError::Disconnected);
        }
        let result = loop {
            match self.step() {
                Ok(Some(msg)) => break Ok(Some(msg)),
                Ok(None) if self.eof => break self.finish(),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            self.reserve();
            match sys::recv(self.shared.fd(), &mut self.buf[self.end..]) {
                Ok(n) => self.filled(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(TryRecvError::Empty),
                Err(e) => match self.read_error(e) {
                    Ok(()) => {}
                    Err(e) => break Err(Error::Io(e)),
                },
            }
        };
        match self.settle(result) {
            Ok(Some(msg)) => Ok(msg),
            Ok(None) => Err(TryRecvError::Disconnected),
            Err(e) => Err(TryRecvError::Failed(e)),
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

    /// Decodes the next message from the buffer: `Ok(None)` when more bytes are needed.
    fn step(&mut self) -> Result<Option<T>, Error> {
        loop {
            match self.decoder.decode(&self.buf[self.start..self.end])? {
                Decoded::Message { msg, used } => {
                    self.consume(used);
                    if let Some(observer) = &mut self.observer {
                        observer(&msg);
                    }
                    return Ok(Some(msg));
                }
                Decoded::Hello { used } => self.consume(used),
                Decoded::Need(need) => {
                    self.need = need;
                    return Ok(None);
                }
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.need = 0;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            // Keep a large buffer while large frames keep coming; give it back after a
            // small one.
            if self.buf.len() > 4 * READ_CHUNK && n < self.buf.len() / 8 {
                self.buf = Vec::new();
            }
        }
    }

    /// What end-of-file means here: a clean close between frames, or a truncation.
    fn finish(&mut self) -> Result<Option<T>, Error> {
        if self.start == self.end {
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
            Err(_) => {
                // Nothing after a bad frame can be trusted: stop receiving for good, so the
                // peer's further sends fail instead of piling up here.
                self.failed = true;
                self.buf = Vec::new();
                self.start = 0;
                self.end = 0;
                sys::shutdown_read(self.shared.fd());
            }
            Ok(None) => self.failed = true,
            Ok(Some(_)) => {}
        }
        result
    }

    /// Makes room after `end` for what the next step needs. The buffer grows with the
    /// bytes that actually arrive (doubling), not with what a header announces.
    fn reserve(&mut self) {
        if self.start > 0 && self.buf.len() - self.end < READ_CHUNK / 2 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let goal = (self.start + self.need).max(self.end + 1);
        // Grow towards the goal by doubling, and always leave room for a useful read.
        let want = goal
            .min((2 * self.end).max(READ_CHUNK))
            .max(self.end + READ_CHUNK / 16);
        if self.buf.len() < want {
            self.buf.resize(want.max(READ_CHUNK), 0);
        }
    }

    fn filled(&mut self, n: usize) {
        if n == 0 {
            self.eof = true;
            self.shared.peer_gone();
        } else {
            self.end += n;
        }
    }

    /// A reset peer is a close: what it sent before was all received.
    fn read_error(&mut self, e: io::Error) -> io::Result<()> {
        if e.kind() == io::ErrorKind::ConnectionReset {
            self.filled(0);
            Ok(())
        } else {
            Err(e)
        }
    }

    /// Reads more bytes from the socket, waiting for it.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.reserve();
        let io = self.shared.attach()?;
        let read = loop {
            let mut ready = match io.poll_read_ready(cx) {
                Poll::Ready(ready) => ready?,
                Poll::Pending => {
                    // This task is about to wait: the next send may write at once again.
                    self.shared.end_of_burst();
                    return Poll::Pending;
                }
            };
            let space = self.buf.len() - self.end;
            match ready.try_io(|fd| sys::recv(fd.get_ref().as_fd(), &mut self.buf[self.end..])) {
                Ok(read) => {
                    // A read that did not fill the space drained the socket (epoll is edge
                    // triggered): forget the readiness now rather than learn it from one more
                    // `recv` that fails with `EAGAIN`. Readiness that arrived meanwhile is
                    // kept (the guard only clears the event it saw).
                    if matches!(read, Ok(n) if n > 0 && n < space) {
                        ready.clear_ready();
                    }
                    break read;
                }
                Err(_would_block) => continue,
            }
        };
        Poll::Ready(match read {
            Ok(n) => {
                self.filled(n);
                Ok(())
            }
            Err(e) => self.read_error(e),
        })
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        sys::shutdown_read(self.shared.fd());
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("fd", &self.shared.fd())
            .field("buffered", &(self.end - self.start))
            .field("eof", &self.eof)
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
