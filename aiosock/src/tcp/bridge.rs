//! The bridge: a task that pumps bytes between a network stream (plaintext TCP, or TLS
//! over TCP) and one end of a Unix socket pair, whose other end the user gets as an
//! ordinary [`Endpoint`](crate::Endpoint).
//!
//! Bridges run on a runtime of their own, on one thread (see [`runtime`]), so that they
//! outlive the user's runtime: what an end accepted is forwarded even after that runtime
//! is gone, and at exit the exit hook waits for it ([`drain_at_exit`]).
//!
//! Each direction holds one buffer of [`BUF`] bytes (64 KiB) and reads the next chunk only once
//! the last one was written, so backpressure passes through: a user who stops receiving
//! fills the socket pair, the pump stops reading the network, and TCP's window closes on
//! the peer; a peer that stops reading fills TCP's buffers, the pump stops reading the
//! socket pair, and the user's `send` waits. Whatever the peer does, the bridge holds at
//! most two buffers plus rustls's own (bounded) buffers.
//!
//! Closing:
//!
//! - the user drops every `Sender` (end of file on the pair): the pump shuts the network
//!   stream's sending direction down: TLS `close_notify`, then TCP `FIN`;
//! - the network stream ends cleanly (TLS `close_notify`, or `FIN` on plaintext TCP): the
//!   pump shuts the pair's sending direction down, and the user's `recv` returns
//!   `Ok(None)` after every earlier message;
//! - the user stops receiving (the `Receiver` dropped): what the peer sends next is no
//!   longer read (the peer's sends wait, as they would for any peer that does not read);
//! - the user's end is gone entirely (the pair hangs up): the pump stops reading the
//!   network, forwards what the user had written, for at most the end's
//!   [linger](crate::Config::set_linger), shuts the network stream down, and ends;
//! - any error on the network stream (a reset, a TLS alert, a TCP `FIN` without TLS
//!   `close_notify`) or on the pair ends the bridge at once: both sockets close, so the
//!   user's `recv` sees the end of the stream (an error if it was inside a frame) and its
//!   sends fail with `SendError::Closed`.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::UnixStream;

use crate::error::Error;
use crate::sys;

/// Bytes each direction moves at once.
pub(crate) const BUF: usize = 64 * 1024;

/// The runtime every bridge of this process runs on: a current-thread runtime on a thread
/// of aiosock's own (`aiosock-bridge`), started by the first connection. Bridges do not
/// live on the user's runtime, so that shutting that runtime down (or returning from
/// `main`) does not cut off what its ends had accepted: the bridge goes on forwarding it,
/// and at exit the exit hook waits for it (see [`drain_at_exit`]).
fn runtime() -> io::Result<&'static tokio::runtime::Handle> {
    static RUNTIME: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    static START: Mutex<()> = Mutex::new(());
    if let Some(handle) = RUNTIME.get() {
        return Ok(handle);
    }
    let _guard = START.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(handle) = RUNTIME.get() {
        return Ok(handle);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = rt.handle().clone();
    RUNTIME_PID.store(std::process::id(), Ordering::Release);
    std::thread::Builder::new()
        .name("aiosock-bridge".into())
        .spawn(move || rt.block_on(std::future::pending::<()>()))?;
    Ok(RUNTIME.get_or_init(|| handle))
}

/// Makes a network stream with `connect` (a TLS handshake, say) on the bridges' runtime,
/// starts its bridge there, and returns the user's side of the pair with what `connect`
/// returned besides the stream. The bridge ends with the connection; it is not tied to the
/// returned descriptor's lifetime other than through the pair (see the module docs).
///
/// Cancel safe: dropping the future stops `connect` (a connection not made yet is closed).
pub(crate) async fn start<S, R, F>(connect: F, linger: Duration) -> Result<(OwnedFd, R), Error>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
    R: Send + 'static,
    F: Future<Output = Result<(S, R), Error>> + Send + 'static,
{
    let task = runtime()?.spawn(async move {
        let (net, extra) = connect.await?;
        Ok::<_, Error>((spawn_here(net, linger)?, extra))
    });
    let mut task = AbortOnDrop(task);
    match (&mut task.0).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(Error::Io(io::Error::other(e))),
    }
}

/// A task of the bridges' runtime that is aborted if its caller stops waiting for it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A plain TCP stream of the user's runtime, made ready to move to the bridges' runtime
/// (where [`adopt`] takes it).
pub(crate) fn detach(stream: tokio::net::TcpStream) -> io::Result<std::net::TcpStream> {
    stream.into_std()
}

/// Registers a stream that [`detach`] made with the current runtime (the bridges').
pub(crate) fn adopt(stream: std::net::TcpStream) -> io::Result<tokio::net::TcpStream> {
    stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(stream)
}

/// Starts the bridge for `net` on the current runtime (the bridges').
fn spawn_here<S>(net: S, linger: Duration) -> io::Result<OwnedFd>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (user, ours) = sys::socketpair()?;
    // A second registration of our side, watched only for the hang-up, so that clearing
    // its readiness never disturbs the pump's own reads and writes.
    let watch = sys::register_owned(ours.try_clone()?, Interest::WRITABLE)?;
    let local = UnixStream::from_std(std::os::unix::net::UnixStream::from(ours))?;
    let outbound = Outbound::new();
    tokio::spawn(async move {
        // Errors end the bridge; dropping both sockets is how the user learns of them.
        let _ = run(net, local, watch, linger, outbound).await;
    });
    Ok(user)
}

/// The process whose thread runs the bridges (a forked child has no such thread, only a
/// copy of the counts below).
static RUNTIME_PID: AtomicU32 = AtomicU32::new(0);

/// Bridges still forwarding what their users sent, and the signal when one is done.
static OUTBOUND: Mutex<usize> = Mutex::new(0);
static OUTBOUND_DONE: Condvar = Condvar::new();

/// One bridge's user-to-network direction, counted in [`OUTBOUND`] until it is done (all
/// forwarded and the network stream's sending direction shut down) or the bridge ends.
struct Outbound;

impl Outbound {
    fn new() -> Outbound {
        *OUTBOUND.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        Outbound
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        let mut n = OUTBOUND.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
        OUTBOUND_DONE.notify_all();
    }
}

/// At process exit, once every end has written what it accepted into its pair and ended
/// its sending direction: waits until every bridge has forwarded it to the network and
/// shut the network stream's sending direction down, or until `deadline`.
pub(crate) fn drain_at_exit(deadline: Instant) {
    if RUNTIME_PID.load(Ordering::Acquire) != std::process::id() {
        return;
    }
    let mut n = OUTBOUND.lock().unwrap_or_else(|e| e.into_inner());
    while *n > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        n = OUTBOUND_DONE
            .wait_timeout(n, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// Why the network-to-user direction stopped.
enum Down {
    /// The network stream ended cleanly; the pair's sending direction is shut down.
    Eof,
    /// The user stopped receiving (`EPIPE` on the pair).
    UserGone,
}

async fn run<S>(
    net: S,
    local: UnixStream,
    watch: AsyncFd<OwnedFd>,
    linger: Duration,
    outbound: Outbound,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite,
{
    let (mut net_r, mut net_w) = tokio::io::split(net);
    let up = async {
        let result = up(&local, &mut net_w).await;
        drop(outbound);
        result
    };
    let down = down(&mut net_r, &local);
    let hang_up = hung_up(&watch);
    tokio::pin!(up, down, hang_up);
    let (mut up_done, mut down_done, mut hung) = (false, false, false);
    let deadline = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(deadline);
    while !(up_done && down_done) {
        tokio::select! {
            r = &mut up, if !up_done => {
                r?;
                up_done = true;
            }
            r = &mut down, if !down_done => {
                match r? {
                    Down::Eof | Down::UserGone => down_done = true,
                }
            }
            r = &mut hang_up, if !hung => {
                r?;
                hung = true;
                // Nobody reads what the peer sends any more.
                down_done = true;
                deadline.as_mut().reset(tokio::time::Instant::now() + linger);
            }
            () = &mut deadline, if hung && !up_done => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the peer did not take the closed end's last bytes within its linger",
                ));
            }
        }
    }
    Ok(())
}

/// User to network: forwards until the user's end of file, then shuts the network
/// stream's sending direction down (TLS `close_notify`, then `FIN`).
async fn up<W: AsyncWrite + Unpin>(local: &UnixStream, net: &mut W) -> io::Result<()> {
    let mut buf = vec![0; BUF];
    loop {
        let n = match local.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Nothing more for now: push out what is buffered (a TLS record in the
                // making), then wait for the user's next bytes.
                net.flush().await?;
                local.readable().await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        net.write_all(&buf[..n]).await?;
    }
    net.shutdown().await
}

/// Network to user: forwards until the network stream ends (then shuts the pair's sending
/// direction down) or the user stops receiving.
async fn down<R: AsyncRead + Unpin>(net: &mut R, local: &UnixStream) -> io::Result<Down> {
    let mut buf = vec![0; BUF];
    loop {
        let n = net.read(&mut buf).await?;
        if n == 0 {
            sys::shutdown_write(local.as_fd());
            return Ok(Down::Eof);
        }
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            local.writable().await?;
            match local.try_write(rest) {
                Ok(k) => rest = &rest[k..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    return Ok(Down::UserGone);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Resolves once the pair hangs up: both of the user's directions are closed (its end was
/// dropped) or this side's sending direction and the user's are.
async fn hung_up(watch: &AsyncFd<OwnedFd>) -> io::Result<()> {
    loop {
        let mut guard = watch.writable().await?;
        if guard.ready().is_write_closed() {
            return Ok(());
        }
        // Writable but not hung up: wait for the next change of state.
        guard.clear_ready();
    }
}
