//! The bridge: a task that pumps bytes between a network stream (plaintext TCP, or TLS
//! over TCP) and one end of a Unix socket pair, whose other end the user gets as an
//! ordinary [`Endpoint`](crate::Endpoint).
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

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::UnixStream;

use crate::sys;

/// Bytes each direction moves at once.
pub(crate) const BUF: usize = 64 * 1024;

/// Starts the bridge for `net` on the current Tokio runtime and returns the user's side of
/// the pair. The bridge ends with the connection; it is not tied to the returned
/// descriptor's lifetime other than through the pair (see the module docs).
///
/// Must be called inside a Tokio runtime with I/O enabled.
pub(crate) fn spawn<S>(net: S, linger: Duration) -> io::Result<OwnedFd>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (user, ours) = sys::socketpair()?;
    // A second registration of our side, watched only for the hang-up, so that clearing
    // its readiness never disturbs the pump's own reads and writes.
    let watch = sys::register_owned(ours.try_clone()?, Interest::WRITABLE)?;
    let local = UnixStream::from_std(std::os::unix::net::UnixStream::from(ours))?;
    tokio::spawn(async move {
        // Errors end the bridge; dropping both sockets is how the user learns of them.
        let _ = run(net, local, watch, linger).await;
    });
    Ok(user)
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
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite,
{
    let (mut net_r, mut net_w) = tokio::io::split(net);
    let up = up(&local, &mut net_w);
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
