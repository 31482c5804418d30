//! `Endpoint` and `pair`: one end of a connection before it is split.

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::channel::shared::Shared;
use crate::channel::{Config, Receiver, Sender};
use crate::error::{Error, FdError};
use crate::fd;
use crate::protocol::Shape;
use crate::sys::{self, Socket};
use crate::trace;
use crate::{Dispatch, Protocol};

/// One end of a connection: sends `Out` and receives `In`.
///
/// An endpoint is only a socket and its [`Config`] until [`into_split`](Self::into_split):
/// it can be made before any runtime exists, moved into a child process
/// ([`spawn`](crate::spawn)), and it attaches to the Tokio runtime in which its halves are
/// first used.
///
/// # Examples
///
/// ```
/// #[aiosock::protocol]
/// #[derive(Debug, PartialEq)]
/// enum Request {
///     Square(u64),
/// }
///
/// #[aiosock::protocol]
/// #[derive(Debug, PartialEq)]
/// enum Reply {
///     Squared(u64),
/// }
///
/// // Made before any runtime exists.
/// let (client, server) = aiosock::pair::<Request, Reply>()?;
///
/// tokio::runtime::Runtime::new()?.block_on(async move {
///     let (tx, mut rx) = client.into_split();
///     let (stx, mut srx) = server.into_split();
///     tx.send(Request::Square(12)).await?;
///     if let Some(Request::Square(n)) = srx.recv().await? {
///         stx.send(Reply::Squared(n * n)).await?;
///     }
///     assert_eq!(rx.recv().await?, Some(Reply::Squared(144)));
///     Ok::<_, Box<dyn std::error::Error>>(())
/// })
/// .unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Endpoint<Out, In> {
    fd: Socket,
    config: Config,
    /// The peer's process id, where it is known (an end inherited from the parent).
    peer_pid: Option<u32>,
    /// The socket leads to a bridge to TCP, which passes no descriptors.
    bridged: bool,
    _types: PhantomData<fn(Out) -> In>,
}

/// Makes a connected pair of ends: the first sends `A` and receives `B`, the second the
/// opposite.
///
/// Works without a runtime. Both sockets are close-on-exec and non-blocking.
///
/// # Errors
///
/// [`Error::Io`] if the system refuses a socket pair (for example, out of descriptors).
///
/// # Examples
///
/// ```
/// #[aiosock::protocol]
/// enum Ping {
///     Ping,
/// }
///
/// #[aiosock::protocol]
/// enum Pong {
///     Pong,
/// }
///
/// let (parent, child): (aiosock::Endpoint<Ping, Pong>, aiosock::Endpoint<Pong, Ping>) =
///     aiosock::pair()?;
/// # drop((parent, child));
/// # Ok::<(), aiosock::Error>(())
/// ```
#[allow(
    clippy::type_complexity,
    reason = "the pair's type reads best spelled out"
)]
pub fn pair<A: Protocol, B: Protocol>() -> Result<(Endpoint<A, B>, Endpoint<B, A>), Error> {
    let (a, b) = sys::socketpair()?;
    Ok((Endpoint::from_fd(a), Endpoint::from_fd(b)))
}

impl<Out: Protocol, In: Protocol> Endpoint<Out, In> {
    /// Wraps a connected Unix stream socket whose other end speaks aiosock.
    ///
    /// The socket is made non-blocking when it is first used. The usual ways to get an
    /// endpoint are [`pair`] and [`inherited`](crate::inherited).
    pub fn from_fd(fd: OwnedFd) -> Endpoint<Out, In> {
        Endpoint {
            fd: Socket::new(fd),
            config: Config::new(),
            peer_pid: None,
            bridged: false,
            _types: PhantomData,
        }
    }

    /// The same end, recorded as leading to a bridge to TCP: it sends and accepts no
    /// descriptors.
    pub(crate) fn bridged(mut self) -> Endpoint<Out, In> {
        self.bridged = true;
        self
    }

    /// The same end, recorded as connected to process `pid` (for tracing).
    pub(crate) fn with_peer_pid(mut self, pid: u32) -> Endpoint<Out, In> {
        self.peer_pid = Some(pid);
        self
    }

    /// Gives the socket back, for example to hand it to a process by other means.
    pub fn into_fd(self) -> OwnedFd {
        self.fd.into_fd()
    }

    /// Replaces this end's settings.
    pub fn with_config(mut self, config: Config) -> Endpoint<Out, In> {
        self.config = config;
        self
    }

    /// This end's settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This end's settings, to change before the split.
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// Splits the end into its sending and receiving halves.
    ///
    /// Works without a runtime: the end writes its hello to the socket at once (without
    /// blocking; what the socket does not take waits in the outgoing buffer), and the
    /// halves attach to the Tokio runtime in which they are first used.
    pub fn into_split(self) -> (Sender<Out>, Receiver<In>) {
        // The socket came from `pair` or a parent: it may still be blocking.
        let _ = sys::set_nonblocking(self.fd.as_fd());
        let sends = Shape::of::<Out>();
        let expects = Shape::of::<In>();
        let span = trace::connection(
            sends.id.name(),
            expects.id.name(),
            self.fd.as_fd().as_raw_fd(),
            self.peer_pid,
        );
        let mut config = self.config;
        if self.bridged {
            config.without_fds();
        }
        let shared = Shared::new(self.fd, config, sends.clone(), expects.clone(), span);
        // The hello goes out now, runtime or not: the peer learns what this end speaks
        // (and a peer's send of an `#[added]` variant need not wait) before this end is
        // first used.
        shared.write_queued_now();
        (
            Sender::new(shared.clone()),
            Receiver::new(shared, sends, expects),
        )
    }
}

impl<Out: Protocol, In: Protocol> Endpoint<Out, In> {
    /// Serves the messages this end receives with `handler` (see
    /// [`Receiver::serve`]) and answers the peer's calls, keeping the sending half alive for
    /// the answers; once the peer closed, drops it (which ends this end's direction) and
    /// returns the handler.
    ///
    /// For a worker that only answers. A handler that also sends one-way messages to the
    /// peer needs the [`Sender`]: split the end with [`into_split`](Self::into_split) and
    /// keep the sender (in the handler, for example) while serving.
    ///
    /// # Errors
    ///
    /// As [`Receiver::serve`].
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
    /// #[aiosock::protocol]
    /// enum Nothing {
    ///     Never,
    /// }
    ///
    /// struct Squarer;
    ///
    /// impl MathHandler for Squarer {
    ///     async fn on_square(&mut self, n: u64) -> u64 {
    ///         n * n
    ///     }
    /// }
    ///
    /// impl NothingHandler for () {
    ///     async fn on_never(&mut self) {}
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (client, server) = aiosock::pair::<Math, Nothing>()?;
    /// let serving = tokio::spawn(server.serve(Squarer));
    /// let (tx, rx) = client.into_split();
    /// // The replies arrive through the receiver, which must run.
    /// tokio::spawn(rx.serve(()));
    /// let math = MathClient::new(tx);
    /// assert_eq!(math.square(12).await?, 144);
    /// drop(math);
    /// serving.await??;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn serve<H>(self, handler: H) -> Result<H, Error>
    where
        In: Dispatch<H>,
        H: Send,
    {
        let (tx, rx) = self.into_split();
        let served = rx.serve(handler).await;
        drop(tx);
        served
    }

    /// [`serve`](Self::serve) with up to `limit` messages at once: see
    /// [`Receiver::serve_concurrent`].
    ///
    /// # Errors
    ///
    /// As [`Receiver::serve_concurrent`].
    pub async fn serve_concurrent<H>(self, handler: H, limit: usize) -> Result<H, Error>
    where
        In: Dispatch<H>,
        H: Clone + Send + 'static,
    {
        let (tx, rx) = self.into_split();
        let served = rx.serve_concurrent(handler, limit).await;
        drop(tx);
        served
    }
}

/// An endpoint travels in a message as a descriptor (see [`Fd`](crate::Fd)): the receiver
/// gets an end of the same connection, typed as the field says, with the default
/// [`Config`] (settings do not travel). The new end checks its protocols in its own hello
/// once it is used, as every end does, so a field whose types do not match its peer's
/// fails there with [`Error::ProtocolMismatch`].
///
/// Only a whole, unused endpoint can travel: once split, an end's halves share a live
/// queue, a writer task and a read buffer in this process, which cannot move. So the
/// halves ([`Sender`], [`Receiver`]) are not messages; send the endpoint before splitting
/// it. An end over TCP or TLS cannot travel either (its connection is pumped by a bridge
/// task of this process: see [`tcp`](crate::tcp)); sending one is
/// [`InvalidMessage::Encode`](crate::InvalidMessage::Encode), with the message handed
/// back. A received socket that is not a Unix stream socket is
/// [`FdError::NotASocket`](crate::FdError::NotASocket).
///
/// # Examples
///
/// A broker makes a pair and hands one end to each of two workers, which then talk
/// directly:
///
/// ```
/// #[aiosock::protocol]
/// #[derive(Debug)]
/// enum Chat {
///     Line(String),
/// }
///
/// #[aiosock::protocol]
/// #[derive(Debug)]
/// enum FromBroker {
///     Introduce(aiosock::Endpoint<Chat, Chat>),
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let (to_a, at_a) = aiosock::pair::<FromBroker, FromBroker>()?;
/// # let (to_b, at_b) = aiosock::pair::<FromBroker, FromBroker>()?;
/// # let (to_a, _) = to_a.into_split();
/// # let (to_b, _) = to_b.into_split();
/// # let (_, mut a_rx) = at_a.into_split();
/// # let (_, mut b_rx) = at_b.into_split();
/// // The broker, with a channel to each worker:
/// let (for_a, for_b) = aiosock::pair::<Chat, Chat>()?;
/// to_a.send(FromBroker::Introduce(for_a)).await?;
/// to_b.send(FromBroker::Introduce(for_b)).await?;
///
/// // Worker A:
/// let Some(FromBroker::Introduce(end)) = a_rx.recv().await? else { panic!() };
/// let (a_tx, _a_rx) = end.into_split();
/// a_tx.send(Chat::Line("hello, B".into())).await?;
///
/// // Worker B:
/// let Some(FromBroker::Introduce(end)) = b_rx.recv().await? else { panic!() };
/// let (_b_tx, mut b_chat) = end.into_split();
/// assert!(matches!(b_chat.recv().await?, Some(Chat::Line(line)) if line == "hello, B"));
/// # Ok(())
/// # }
/// ```
impl<Out: Protocol, In: Protocol> serde::Serialize for Endpoint<Out, In> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.bridged {
            return Err(serde::ser::Error::custom(
                "an end over TCP or TLS cannot travel in a message: its connection is held by this process's bridge",
            ));
        }
        let index = fd::attach(self.fd.as_fd()).map_err(serde::ser::Error::custom)?;
        serializer.serialize_u32(index)
    }
}

impl<'de, Out: Protocol, In: Protocol> serde::Deserialize<'de> for Endpoint<Out, In> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let index = <u32 as serde::Deserialize>::deserialize(deserializer)?;
        let socket = fd::claim(index).map_err(serde::de::Error::custom)?;
        if !sys::is_unix_stream(socket.as_fd()) {
            return Err(serde::de::Error::custom(fd::refuse(FdError::NotASocket)));
        }
        Ok(Endpoint::from_fd(socket))
    }
}

impl<Out, In> AsFd for Endpoint<Out, In> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl<Out, In> fmt::Debug for Endpoint<Out, In> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("fd", &self.fd)
            .field("config", &self.config)
            .finish()
    }
}
