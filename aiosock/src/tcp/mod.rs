//! Across hosts: the same protocols over TCP, secured with TLS (feature `tls`), or over
//! plaintext TCP where the network is trusted.
//!
//! A [`TcpListener`] accepts connections as typed [`Endpoint`]s, and `connect_tls` (or
//! [`connect_plaintext_tcp`]) connects to one. Once accepted or connected, an end is the
//! same [`Endpoint`] that [`pair`](crate::pair) and [`connect`](crate::connect) give: the
//! same hello and frames, calls, backpressure, decode budget and close. TLS is a layer
//! below the hello: nothing about it reaches the wire format, and no transport
//! negotiation is added (see the [wire format](crate#wire-format-version-2)).
//!
//! ```no_run
//! # #![allow(dead_code)]
//! # #[cfg(feature = "tls")]
//! # mod example {
//! use std::sync::Arc;
//!
//! #[aiosock::protocol]
//! pub enum Request {
//!     #[reply(u64)]
//!     Square(u64),
//! }
//!
//! #[aiosock::protocol]
//! pub enum Nothing {
//!     Never,
//! }
//!
//! #[derive(Clone)]
//! struct Squarer;
//!
//! impl RequestHandler for Squarer {
//!     async fn on_square(&mut self, n: u64) -> u64 {
//!         n * n
//!     }
//! }
//!
//! impl NothingHandler for () {
//!     async fn on_never(&mut self) {}
//! }
//!
//! // The server: its certificate and key, as rustls documents (`ServerConfig::builder()`).
//! pub async fn server(config: Arc<aiosock::rustls::ServerConfig>) -> Result<(), aiosock::Error> {
//!     let listener = aiosock::TcpListener::<Nothing, Request>::bind_tls("0.0.0.0:7000", config).await?;
//!     loop {
//!         match listener.accept().await {
//!             Ok((end, peer)) => {
//!                 println!("client {} ({} certificates)", peer.addr(), peer.certificates().len());
//!                 tokio::spawn(end.serve(Squarer));
//!             }
//!             // One client's failed handshake: the listener goes on.
//!             Err(e) => eprintln!("refused a client: {e}"),
//!         }
//!     }
//! }
//!
//! // A client on another host, trusting the server's CA (`ClientConfig::builder()`).
//! pub async fn client(config: Arc<aiosock::rustls::ClientConfig>) -> Result<(), Box<dyn std::error::Error>> {
//!     let end = aiosock::connect_tls::<Request, Nothing>("server.example:7000", "server.example", config).await?;
//!     let (tx, rx) = end.into_split();
//!     tokio::spawn(rx.serve(()));
//!     assert_eq!(RequestClient::new(tx).square(12).await?, 144);
//!     Ok(())
//! }
//! # }
//! ```
//!
//! # TLS
//!
//! Configuration is rustls's own: build a `rustls::ServerConfig` (a certificate chain
//! and key; for mutual TLS, a client certificate verifier such as
//! `WebPkiClientVerifier`) and a `rustls::ClientConfig` (the roots to trust; for mutual
//! TLS, the client's certificate and key), as rustls documents, and hand them over in an
//! `Arc`. aiosock re-exports the `rustls` it is built with as `aiosock::rustls`, so that
//! the versions match. The `tls` feature uses rustls's `ring` provider: install it as
//! the process default, or build the configs with `builder_with_provider`.
//!
//! The handshake happens inside [`TcpListener::accept`] and `connect_tls`, so a refused
//! certificate is an [`Error::Tls`] there, with rustls's reason: a wrong CA is
//! `invalid peer certificate: UnknownIssuer`, an expired certificate
//! `invalid peer certificate: certificate expired: ...`, a missing client certificate under mutual TLS
//! `peer sent no certificates`. Under TLS 1.3 the client's handshake finishes before the
//! server has checked the client's certificate: a client that the server refuses gets its
//! end from `connect_tls`, and then sees it close (`recv` returns `Ok(None)` or an error,
//! sends fail with [`SendError::Closed`](crate::SendError::Closed)); the server's `accept`
//! has the clear error. The client certificates a server accepted are in
//! `TcpPeer::certificates`.
//!
//! A handshake that does not finish within [`TcpListener::handshake_timeout`] (10 s by
//! default) fails with [`Error::Tls`]. A listener runs up to [`MAX_HANDSHAKES`] (64)
//! handshakes at once, each in a task of its own, and `accept` returns whichever finishes
//! first: a slow or stalled client does not hold up the others. Further connections wait
//! in the kernel's backlog. `accept` is cancel safe: handshakes it started go on, and a
//! later `accept` returns them.
//!
//! # Plaintext TCP
//!
//! [`TcpListener::bind_plaintext`] and [`connect_plaintext_tcp`] carry the same bytes
//! without any encryption or authentication: anyone on the path can read and change
//! them, and anyone who can reach the port can connect. Use them only on a network you
//! trust completely (a loopback, a private link between containers), never across the
//! internet. They need no feature.
//!
//! # Sockets
//!
//! Every connection has `TCP_NODELAY` set (a frame goes out at once, without Nagle's
//! delay) and keepalive on: the first probe after 60 s of silence, then every 10 s, and
//! the connection is dropped after 6 unanswered probes, so a dead host or a cut link is
//! seen after about two minutes even when neither side has anything to send.
//!
//! # How it works, and what it costs
//!
//! The machinery of an end (its writer, linger, flush at exit, and reads straight into
//! the receive buffer) works on a Unix socket. A TCP or TLS connection is joined to it by
//! a bridge: a task that pumps bytes between the network stream and one end of a Unix
//! socket pair whose other end is the user's [`Endpoint`]. A bridge (and its TLS
//! handshake) runs as a task on the runtime that accepted or connected, beside the tasks
//! that use the end, and moves to a thread of aiosock's own only when that runtime can no
//! longer drive it: see [Lifetime](#lifetime). The decode budget, frame limits,
//! backpressure, calls and close are therefore exactly those of a local end: a hostile
//! TLS peer gets the same budget as a local one. The cost is one copy per direction
//! through the extra socket pair, which on a current-thread runtime the same thread reads
//! back while it is still in its cache; the benchmark's `tcp-*` and `tls-*` rows measure
//! it (at 4 MiB over TLS, 1.22–1.25× the raw `tokio-rustls` stream in the same run). The
//! bridge holds at most 64 KiB per direction plus rustls's own bounded buffers, and reads only once it has written what it read: a peer that stalls,
//! or a user that stops receiving, makes the other side wait rather than the bridge
//! buffer.
//!
//! Closing, in each direction:
//!
//! - dropping every [`Sender`](crate::Sender) of the end sends TLS `close_notify`, then
//!   TCP `FIN`: the peer's `recv` returns `Ok(None)` after every earlier message;
//! - the peer's clean close (`close_notify`, or `FIN` on plaintext TCP) makes this end's
//!   `recv` return `Ok(None)` after every earlier message;
//! - dropping the whole end lets the bridge forward what it had written for at most a
//!   [linger](crate::Config::set_linger): that of the listener's [`Config`] for an
//!   accepted end, the default (5 s) for a connected one (changing the end's config after
//!   connecting does not reach the bridge); then the connection closes;
//! - a reset, a TLS alert or a TCP `FIN` without TLS `close_notify` closes the end at
//!   once: `recv` sees the end of the stream (an error if inside a frame), and sends
//!   fail with [`SendError::Closed`](crate::SendError::Closed). The bridge cannot pass
//!   the network error itself through the socket pair, so a TLS stream cut between two
//!   frames looks like a close.
//!
//! # Lifetime
//!
//! No accepted message is lost to the way a program ends, over TCP as over a socket
//! pair. A bridge keeps its whole state (the stream, rustls's buffers, the chunk it is
//! forwarding) where it can be moved, mid-chunk, to `aiosock-bridge`, a thread of
//! aiosock's own started the first time one moves:
//!
//! - when its runtime shuts down (or `main` returns from `block_on`): the end's accepted
//!   messages go into the pair (its [linger](crate::Config::set_linger)) and the moved
//!   bridge forwards them;
//! - at process exit: the exit hook moves every bridge first (the runtime that ran one
//!   may not be driven any more), writes out every end, ends each bridged end's sending
//!   direction, and waits, at most the ends' longest linger, until every bridge has
//!   forwarded what it holds and shut the network stream's sending side down (TLS
//!   `close_notify`, then `FIN`). The peer then reads every message and a clean end;
//! - when the whole end is dropped while the bridge still forwards what it had sent:
//!   bounding that by the linger takes a timer, which the user's runtime may not have.
//!
//! Plaintext TCP therefore needs only I/O enabled on the runtime; TLS needs the timer too
//! (for the handshake timeout).
//!
//! A process with TCP connections should not [`fork`](crate::fork): the child would hold
//! copies of their sockets (a forked child leaves the parent's bridges alone, and its
//! exit does not wait for them). Once a bridge has moved the process has a thread, and
//! `fork` refuses anyway. Make workers first, or [`spawn`](crate::spawn) them. An end
//! from here cannot be handed to another process, by [`spawn`](crate::spawn) or in a message (the
//! bridge stays with this process; sending one is refused).

mod bridge;

pub(crate) use bridge::{drain_at_exit, move_at_exit};

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::os::fd::AsFd;
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpStream, ToSocketAddrs};

use crate::channel::{Config, Endpoint};
use crate::error::Error;
use crate::{Protocol, sys};

/// The default handshake timeout.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many TLS handshakes one listener runs at once; further connections wait in the
/// kernel's backlog.
pub const MAX_HANDSHAKES: usize = 64;

/// One server-side handshake, within `timeout`; then the bridge.
#[cfg(feature = "tls")]
async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    addr: SocketAddr,
    timeout: Duration,
    linger: Duration,
) -> Result<(std::os::fd::OwnedFd, TcpPeer), Error> {
    let stream = bridge::NetFd::new(stream)?;
    let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(stream) => stream.map_err(tls_error)?,
        Err(_elapsed) => return Err(handshake_timed_out(timeout)),
    };
    let certificates = stream
        .get_ref()
        .1
        .peer_certificates()
        .map(<[_]>::to_vec)
        .unwrap_or_default();
    let fd = bridge::start(stream, linger)?;
    Ok((fd, TcpPeer { addr, certificates }))
}

/// A listening TCP socket that accepts connections as typed ends sending `Out` and
/// receiving `In`: over TLS (`bind_tls`, feature `tls`) or plaintext
/// ([`bind_plaintext`](Self::bind_plaintext)). See the [module docs](self).
pub struct TcpListener<Out, In> {
    listener: tokio::net::TcpListener,
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsAcceptor>,
    config: Config,
    handshake_timeout: Duration,
    /// Handshakes in progress, each in a task, finished ones waiting to be taken.
    #[cfg(feature = "tls")]
    handshakes:
        tokio::sync::Mutex<tokio::task::JoinSet<Result<(std::os::fd::OwnedFd, TcpPeer), Error>>>,
    _types: PhantomData<fn(Out) -> In>,
}

/// Who connected to a [`TcpListener`]: the address, and under mutual TLS the client's
/// certificate chain.
#[derive(Debug, Clone)]
pub struct TcpPeer {
    addr: SocketAddr,
    #[cfg(feature = "tls")]
    certificates: Vec<rustls_pki_types::CertificateDer<'static>>,
}

impl TcpPeer {
    /// The peer's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The certificate chain the client presented (its own certificate first), which the
    /// server's verifier accepted; empty for plaintext TCP and for TLS without client
    /// certificates.
    #[cfg(feature = "tls")]
    pub fn certificates(&self) -> &[rustls_pki_types::CertificateDer<'static>] {
        &self.certificates
    }
}

impl<Out: Protocol, In: Protocol> TcpListener<Out, In> {
    /// The default [`handshake_timeout`](Self::handshake_timeout): 10 seconds.
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = HANDSHAKE_TIMEOUT;

    /// Listens on `addr` for **plaintext** TCP: no encryption, no authentication. Only
    /// for networks trusted completely; see [the module docs](self#plaintext-tcp).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the address cannot be bound (in use, say).
    pub async fn bind_plaintext(addr: impl ToSocketAddrs) -> Result<TcpListener<Out, In>, Error> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(TcpListener {
            listener,
            #[cfg(feature = "tls")]
            tls: None,
            config: Config::new(),
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
            #[cfg(feature = "tls")]
            handshakes: tokio::sync::Mutex::new(tokio::task::JoinSet::new()),
            _types: PhantomData,
        })
    }

    /// Listens on `addr` for TLS over TCP, with the certificate, key and client
    /// verification of `config` (feature `tls`).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the address cannot be bound (in use, say).
    #[cfg(feature = "tls")]
    pub async fn bind_tls(
        addr: impl ToSocketAddrs,
        config: Arc<rustls::ServerConfig>,
    ) -> Result<TcpListener<Out, In>, Error> {
        let mut listener = Self::bind_plaintext(addr).await?;
        listener.tls = Some(tokio_rustls::TlsAcceptor::from(config));
        Ok(listener)
    }

    /// Waits for the next connection and returns its end with the peer's address (and,
    /// under mutual TLS, its certificates), once the TLS handshake is done.
    ///
    /// The end has this listener's [`Config`]. Its hello goes out when it is first used,
    /// as with any [`Endpoint`].
    ///
    /// # Errors
    ///
    /// - [`Error::Tls`]: this client's TLS handshake failed (its certificate was refused
    ///   or missing, it refused ours, or it did not finish in time). The connection is
    ///   closed; the listener is fine: call `accept` again;
    /// - [`Error::OutOfDescriptors`]: this process (or the system) is out of
    ///   descriptors; the connection waits in the backlog;
    /// - [`Error::Io`]: accepting failed otherwise, or the client reset the connection
    ///   during the handshake.
    ///
    /// An error for want of a resource (descriptors, buffers, memory) is returned after a
    /// pause of 100 ms, so that a loop that accepts again at once does not spin while the
    /// want lasts.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime with I/O and time enabled.
    pub async fn accept(&self) -> Result<(Endpoint<Out, In>, TcpPeer), Error> {
        #[cfg(feature = "tls")]
        if let Some(acceptor) = &self.tls {
            let (fd, peer) = self.accept_tls(acceptor).await?;
            return Ok((
                Endpoint::from_fd(fd)
                    .with_config(self.config.clone())
                    .bridged(),
                peer,
            ));
        }
        let (stream, addr) = match self.listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => return Err(crate::listener::accept_failed(e).await),
        };
        configure(&stream)?;
        let fd = plain_bridge(stream, self.config.linger()).await?;
        let end = Endpoint::from_fd(fd)
            .with_config(self.config.clone())
            .bridged();
        Ok((
            end,
            TcpPeer {
                addr,
                #[cfg(feature = "tls")]
                certificates: Vec::new(),
            },
        ))
    }

    /// Accepts connections and starts their handshakes, each in a task of its own (at
    /// most [`MAX_HANDSHAKES`] at once), until one finishes.
    #[cfg(feature = "tls")]
    async fn accept_tls(
        &self,
        acceptor: &tokio_rustls::TlsAcceptor,
    ) -> Result<(std::os::fd::OwnedFd, TcpPeer), Error> {
        let mut pending = self.handshakes.lock().await;
        loop {
            tokio::select! {
                Some(done) = pending.join_next(), if !pending.is_empty() => match done {
                    Ok(result) => return result,
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(_cancelled) => continue,
                },
                accepted = self.listener.accept(), if pending.len() < MAX_HANDSHAKES => {
                    let (stream, addr) = match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => return Err(crate::listener::accept_failed(e).await),
                    };
                    configure(&stream)?;
                    pending.spawn(handshake(
                        acceptor.clone(),
                        stream,
                        addr,
                        self.handshake_timeout,
                        self.config.linger(),
                    ));
                }
            }
        }
    }

    /// The same listener, giving the ends it accepts `config`.
    pub fn with_config(mut self, config: Config) -> TcpListener<Out, In> {
        self.config = config;
        self
    }

    /// The settings the ends it accepts get.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The same listener, failing a TLS handshake that takes longer than `timeout`.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> TcpListener<Out, In> {
        self.handshake_timeout = timeout;
        self
    }

    /// How long a client may take over its TLS handshake
    /// ([`DEFAULT_HANDSHAKE_TIMEOUT`](Self::DEFAULT_HANDSHAKE_TIMEOUT) unless changed).
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The address it listens on (with the port the system chose, for port 0).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the system cannot say.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        Ok(self.listener.local_addr()?)
    }

    /// Whether it speaks TLS (false: plaintext TCP).
    pub fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }
}

impl<Out, In> fmt::Debug for TcpListener<Out, In> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TcpListener");
        d.field("local_addr", &self.listener.local_addr().ok());
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls.is_some());
        #[cfg(not(feature = "tls"))]
        d.field("tls", &false);
        d.field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

/// Connects to `addr` over **plaintext** TCP, as an end that sends `Out` and receives
/// `In`: no encryption, no authentication. Only for networks trusted completely; see
/// [the module docs](self#plaintext-tcp).
///
/// # Errors
///
/// [`Error::NotListening`] if the connection was refused, [`Error::Io`] otherwise (no
/// route, an address that does not resolve).
///
/// # Panics
///
/// Outside a Tokio runtime with I/O enabled.
pub async fn connect_plaintext_tcp<Out: Protocol, In: Protocol>(
    addr: impl ToSocketAddrs,
) -> Result<Endpoint<Out, In>, Error> {
    let stream = tcp_connect(addr).await?;
    let fd = plain_bridge(stream, Config::new().linger()).await?;
    Ok(Endpoint::from_fd(fd).bridged())
}

/// The bridge of a plaintext connection.
async fn plain_bridge(stream: TcpStream, linger: Duration) -> Result<std::os::fd::OwnedFd, Error> {
    let fd = bridge::start(bridge::NetFd::new(stream)?, linger)?;
    Ok(fd)
}

/// Connects to `addr` over TLS, checking that the server's certificate is valid for
/// `server_name` under `config` (feature `tls`), as an end that sends `Out` and receives
/// `In`. For mutual TLS, `config` holds the client's certificate and key.
///
/// # Errors
///
/// - [`Error::Tls`]: the handshake failed: the server's certificate was refused
///   (`invalid peer certificate: UnknownIssuer` for a wrong CA, `...: certificate expired: ...`), the
///   server refused this client (a fatal alert, under TLS 1.2), `server_name` is not a
///   valid DNS name or IP address, or the handshake took longer than
///   [`TcpListener::DEFAULT_HANDSHAKE_TIMEOUT`];
/// - [`Error::NotListening`]: the connection was refused;
/// - [`Error::Io`]: anything else.
///
/// # Panics
///
/// Outside a Tokio runtime with I/O and time enabled.
#[cfg(feature = "tls")]
pub async fn connect_tls<Out: Protocol, In: Protocol>(
    addr: impl ToSocketAddrs,
    server_name: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<Endpoint<Out, In>, Error> {
    let name =
        rustls_pki_types::ServerName::try_from(server_name.to_owned()).map_err(|e| Error::Tls {
            reason: format!("invalid server name {server_name:?}: {e}"),
        })?;
    let stream = bridge::NetFd::new(tcp_connect(addr).await?)?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let timeout = HANDSHAKE_TIMEOUT;
    let stream = match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
        Ok(stream) => stream.map_err(tls_error)?,
        Err(_elapsed) => return Err(handshake_timed_out(timeout)),
    };
    let fd = bridge::start(stream, Config::new().linger())?;
    Ok(Endpoint::from_fd(fd).bridged())
}

async fn tcp_connect(addr: impl ToSocketAddrs) -> Result<TcpStream, Error> {
    let stream = TcpStream::connect(addr).await.map_err(|e| {
        if e.kind() == io::ErrorKind::ConnectionRefused {
            let address = e.to_string();
            Error::NotListening { address }
        } else {
            Error::from(e)
        }
    })?;
    configure(&stream)?;
    Ok(stream)
}

/// `TCP_NODELAY` and keepalive.
pub(crate) fn configure(stream: &TcpStream) -> Result<(), Error> {
    stream.set_nodelay(true)?;
    sys::set_keepalive(stream.as_fd())?;
    Ok(())
}

/// A handshake's `io::Error` as [`Error::Tls`] when rustls is behind it.
#[cfg(feature = "tls")]
fn tls_error(e: io::Error) -> Error {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => Error::Tls {
            reason: tls.to_string(),
        },
        None => Error::from(e),
    }
}

#[cfg(feature = "tls")]
fn handshake_timed_out(timeout: Duration) -> Error {
    Error::Tls {
        reason: format!("the handshake did not finish within {timeout:?}"),
    }
}
