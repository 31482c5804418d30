//! The bridge: a task that pumps bytes between a network stream (plaintext TCP, or TLS
//! over TCP) and one end of a Unix socket pair, whose other end the user gets as an
//! ordinary [`Endpoint`](crate::Endpoint).
//!
//! A bridge runs on the runtime that made its connection, beside the tasks that use the
//! end, so that bytes do not hop between threads on their way. It keeps all of its state
//! (the stream, rustls's buffers, the chunk it is forwarding) in one [`Pump`] that is
//! polled, not an `async` block, so that it can move, mid-chunk, to a runtime of
//! aiosock's own (one thread, `aiosock-bridge`, started the first time it is needed; see
//! [`runtime`]) when the user's runtime can no longer drive it:
//!
//! - the user's runtime shuts down (or `main` returns from `block_on`): the task is
//!   dropped, and its drop moves the pump;
//! - the process exits: the exit hook moves every pump of this process
//!   ([`move_at_exit`]), since the thread that ran it may be the one exiting, and
//!   [`drain_at_exit`] waits for them;
//! - the user's end is gone while the pump still forwards what it had sent: that is bounded
//!   by the end's linger, which needs a timer, and the user's runtime may have none.
//!
//! Moving swaps each socket's registration for one with the new runtime's reactor; nothing
//! buffered is lost or sent twice.
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
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

use crate::sys;

/// Bytes each direction moves at once.
pub(crate) const BUF: usize = 64 * 1024;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The runtime that bridges move to when their own cannot drive them: a current-thread
/// runtime on a thread of aiosock's own (`aiosock-bridge`), started the first time a
/// bridge moves, in this process (a forked child starts its own).
fn runtime() -> io::Result<tokio::runtime::Handle> {
    static RUNTIME: Mutex<Option<(u32, tokio::runtime::Handle)>> = Mutex::new(None);
    let mut current = lock(&RUNTIME);
    let pid = std::process::id();
    if let Some((owner, handle)) = &*current
        && *owner == pid
    {
        return Ok(handle.clone());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("aiosock-bridge".into())
        .spawn(move || rt.block_on(std::future::pending::<()>()))?;
    *current = Some((pid, handle.clone()));
    Ok(handle)
}

/// A connected TCP socket registered with the reactor of the runtime it is used on; it
/// can move to another runtime ([`Net::rehome`]).
#[derive(Debug)]
pub(crate) struct NetFd(AsyncFd<OwnedFd>);

impl NetFd {
    /// Takes `stream` over from its runtime's reactor (registered with the current one).
    pub(crate) fn new(stream: tokio::net::TcpStream) -> io::Result<NetFd> {
        let fd = OwnedFd::from(stream.into_std()?);
        Ok(NetFd(sys::register_owned(
            fd,
            Interest::READABLE | Interest::WRITABLE,
        )?))
    }

    /// The same socket, registered with the current runtime's reactor instead.
    fn rehome(&mut self) -> io::Result<()> {
        self.0 = rehome(&self.0, Interest::READABLE | Interest::WRITABLE)?;
        Ok(())
    }
}

/// A registration of `fd`'s socket with the current runtime's reactor, for `interest`;
/// the old one is dropped by the caller (which deregisters it, or finds its reactor gone).
fn rehome(fd: &AsyncFd<OwnedFd>, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    sys::register_owned(fd.get_ref().try_clone()?, interest)
}

impl AsyncRead for NetFd {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| sys::recv(fd.get_ref().as_fd(), unfilled)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => {}
            }
        }
    }
}

impl AsyncWrite for NetFd {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(data)])
    }

    /// Writes as much of `bufs` as the socket takes in one `sendmsg`. Vectored, because
    /// rustls hands over every queued record at once and, on the way out of a failed
    /// handshake, gets one write only: its alert is often the second record.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // Tried before readiness is known: a socket that was just registered is writable
        // long before its reactor says so.
        match sys::send_vectored_with_fds(self.0.get_ref().as_fd(), bufs, &[]) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            result => return Poll::Ready(result),
        }
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            match guard.try_io(|fd| sys::send_vectored_with_fds(fd.get_ref().as_fd(), bufs, &[])) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => {}
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        sys::shutdown_write(self.0.get_ref().as_fd());
        Poll::Ready(Ok(()))
    }
}

/// A network stream a bridge can pump: plaintext over [`NetFd`], or TLS over one.
pub(crate) trait Net: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Registers the stream's socket with the current runtime's reactor instead of the one
    /// it was registered with; what the stream buffers stays as it is.
    fn rehome(&mut self) -> io::Result<()>;
}

impl Net for NetFd {
    fn rehome(&mut self) -> io::Result<()> {
        NetFd::rehome(self)
    }
}

#[cfg(feature = "tls")]
impl Net for tokio_rustls::client::TlsStream<NetFd> {
    fn rehome(&mut self) -> io::Result<()> {
        self.get_mut().0.rehome()
    }
}

#[cfg(feature = "tls")]
impl Net for tokio_rustls::server::TlsStream<NetFd> {
    fn rehome(&mut self) -> io::Result<()> {
        self.get_mut().0.rehome()
    }
}

/// Starts the bridge for `net` on the current runtime, and returns the user's side of
/// the pair. The bridge ends with the connection; it is not tied to the returned
/// descriptor's lifetime other than through the pair (see the module docs).
///
/// # Panics
///
/// Outside a Tokio runtime with I/O enabled.
pub(crate) fn start<S: Net>(net: S, linger: Duration) -> io::Result<OwnedFd> {
    let (user, ours) = sys::socketpair()?;
    // A second registration of our side, watched only for the hang-up, so that clearing
    // its readiness never disturbs the pump's own reads and writes.
    let watch = sys::register_owned(ours.try_clone()?, Interest::WRITABLE)?;
    let local = sys::register_owned(ours, Interest::READABLE | Interest::WRITABLE)?;
    let pump = Pump {
        net,
        local,
        watch,
        up: Up::Read,
        up_buf: vec![0; BUF].into_boxed_slice(),
        down: Down::Read,
        down_buf: vec![0; BUF].into_boxed_slice(),
        hung: false,
        linger,
        deadline: None,
        sleep: None,
        moved: false,
        outbound: Some(Outbound::new()),
    };
    let slot = Arc::new(Slot {
        pump: Mutex::new(Some(pump)),
        pid: std::process::id(),
    });
    enlist(Arc::downgrade(&slot) as Weak<dyn Movable>);
    tokio::spawn(Task(slot));
    Ok(user)
}

/// Where chunks from the user stand (user to network).
enum Up {
    /// Reading the next chunk from the pair.
    Read,
    /// Writing `up_buf[at..end]` to the network stream.
    Write { at: usize, end: usize },
    /// The user's end of file: shutting the network stream's sending direction down.
    Shutdown,
    /// All forwarded and the network stream's sending direction shut down.
    Done,
}

/// Where chunks from the peer stand (network to user).
enum Down {
    /// Reading the next chunk from the network stream.
    Read,
    /// Writing `down_buf[at..end]` into the pair.
    Write { at: usize, end: usize },
    /// The network stream ended (the pair's sending direction is shut down), or the user
    /// stopped receiving.
    Done,
}

/// A bridge's whole state.
struct Pump<S> {
    net: S,
    /// This side of the pair: readable with what the user sent, writable with room for
    /// what the peer sent.
    local: AsyncFd<OwnedFd>,
    /// A second registration of `local`, watched for the hang-up only.
    watch: AsyncFd<OwnedFd>,
    up: Up,
    up_buf: Box<[u8]>,
    down: Down,
    down_buf: Box<[u8]>,
    /// The user's end is gone: nobody reads any more, and what it had sent is forwarded
    /// until `deadline` at most.
    hung: bool,
    linger: Duration,
    deadline: Option<Instant>,
    /// The timer for `deadline`, of the runtime the pump runs on (made there).
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Runs on aiosock's own runtime, which has a timer and is never shut down.
    moved: bool,
    outbound: Option<Outbound>,
}

impl<S: Net> Pump<S> {
    /// Moves bytes both ways until neither can go on; `Ready` once the bridge is done
    /// (an error ends it at once: dropping the pump closes both sockets, which is how the
    /// user learns of it).
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let up = self.poll_up(cx)?;
        if !self.hung {
            self.poll_hang_up(cx)?;
        }
        let down = self.poll_down(cx)?;
        if up.is_ready() && down.is_ready() {
            return Poll::Ready(Ok(()));
        }
        if self.lingering() && self.moved {
            let deadline = *self
                .deadline
                .get_or_insert_with(|| Instant::now() + self.linger);
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the peer did not take the closed end's last bytes within its linger",
                )));
            }
        }
        Poll::Pending
    }

    /// The user's end is gone but what it sent is not all forwarded yet: this takes a
    /// timer.
    fn lingering(&self) -> bool {
        self.hung && !matches!(self.up, Up::Done)
    }

    /// User to network: forwards until the user's end of file, then shuts the network
    /// stream's sending direction down (TLS `close_notify`, then `FIN`).
    fn poll_up(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.up {
                Up::Read => {
                    let mut guard = match self.local.poll_read_ready(cx) {
                        Poll::Ready(guard) => guard?,
                        Poll::Pending => {
                            // Nothing more for now: push out what is buffered (a TLS
                            // record in the making) while waiting for the user's next bytes.
                            ready!(Pin::new(&mut self.net).poll_flush(cx))?;
                            return Poll::Pending;
                        }
                    };
                    let buf = &mut self.up_buf;
                    match guard.try_io(|fd| sys::recv(fd.get_ref().as_fd(), buf)) {
                        Ok(Ok(0)) => self.up = Up::Shutdown,
                        Ok(Ok(end)) => self.up = Up::Write { at: 0, end },
                        Ok(Err(e)) => return Poll::Ready(Err(e)),
                        Err(_would_block) => {}
                    }
                }
                Up::Write { at, end } => {
                    let n = ready!(Pin::new(&mut self.net).poll_write(cx, &self.up_buf[at..end]))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    self.up = match at + n {
                        at if at == end => Up::Read,
                        at => Up::Write { at, end },
                    };
                }
                Up::Shutdown => {
                    ready!(Pin::new(&mut self.net).poll_shutdown(cx))?;
                    self.up = Up::Done;
                    self.outbound = None;
                }
                Up::Done => return Poll::Ready(Ok(())),
            }
        }
    }

    /// Network to user: forwards until the network stream ends (then shuts the pair's
    /// sending direction down) or the user stops receiving.
    fn poll_down(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.down {
                Down::Read => {
                    let mut buf = ReadBuf::new(&mut self.down_buf);
                    ready!(Pin::new(&mut self.net).poll_read(cx, &mut buf))?;
                    self.down = match buf.filled().len() {
                        0 => {
                            sys::shutdown_write(self.local.get_ref().as_fd());
                            Down::Done
                        }
                        end => Down::Write { at: 0, end },
                    };
                }
                Down::Write { at, end } => {
                    let mut guard = ready!(self.local.poll_write_ready(cx))?;
                    let rest = &self.down_buf[at..end];
                    match guard.try_io(|fd| sys::send(fd.get_ref().as_fd(), rest)) {
                        Ok(Ok(k)) => {
                            self.down = match at + k {
                                at if at == end => Down::Read,
                                at => Down::Write { at, end },
                            };
                        }
                        Ok(Err(e))
                            if matches!(
                                e.kind(),
                                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                            ) =>
                        {
                            self.down = Down::Done;
                        }
                        Ok(Err(e)) => return Poll::Ready(Err(e)),
                        Err(_would_block) => {}
                    }
                }
                Down::Done => return Poll::Ready(Ok(())),
            }
        }
    }

    /// Notices the pair hanging up: both of the user's directions are closed (its end was
    /// dropped) or this side's sending direction and the user's are. Nobody reads what the
    /// peer sends from then on.
    fn poll_hang_up(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while let Poll::Ready(guard) = self.watch.poll_write_ready(cx) {
            let mut guard = guard?;
            if guard.ready().is_write_closed() {
                self.hung = true;
                self.down = Down::Done;
                return Ok(());
            }
            // Writable but not hung up: wait for the next change of state.
            guard.clear_ready();
        }
        Ok(())
    }

    /// Registers every socket with the current runtime's reactor instead.
    fn rehome(&mut self) -> io::Result<()> {
        self.net.rehome()?;
        self.local = rehome(&self.local, Interest::READABLE | Interest::WRITABLE)?;
        self.watch = rehome(&self.watch, Interest::WRITABLE)?;
        self.sleep = None;
        self.moved = true;
        Ok(())
    }
}

/// A bridge's pump, where its task and the exit hook both find it: empty once the bridge is
/// done or has moved.
struct Slot<S> {
    pump: Mutex<Option<Pump<S>>>,
    /// The process that made it (a forked child has a copy it must leave alone).
    pid: u32,
}

/// What the exit hook sees of a bridge.
trait Movable: Send + Sync {
    /// Moves the bridge to aiosock's own runtime unless it is done or moved already;
    /// `false` if its task is polling it right now (try again).
    fn move_now(&self) -> bool;
    fn pid(&self) -> u32;
}

impl<S: Net> Movable for Slot<S> {
    fn move_now(&self) -> bool {
        let pump = match self.pump.try_lock() {
            Ok(mut pump) => pump.take(),
            Err(TryLockError::Poisoned(e)) => e.into_inner().take(),
            Err(TryLockError::WouldBlock) => return false,
        };
        if let Some(pump) = pump {
            move_away(pump);
        }
        true
    }

    fn pid(&self) -> u32 {
        self.pid
    }
}

/// Every bridge of this process that runs on a user's runtime (dead ones are pruned as
/// the list grows).
static BRIDGES: Mutex<Vec<Weak<dyn Movable>>> = Mutex::new(Vec::new());

fn enlist(bridge: Weak<dyn Movable>) {
    let mut all = lock(&BRIDGES);
    if all.len() >= 32 && all.len().is_power_of_two() {
        all.retain(|b| b.strong_count() > 0);
    }
    all.push(bridge);
}

/// Hands `pump` to aiosock's own runtime, where it goes on from where it stood. If that
/// runtime cannot start (no thread to be had), the bridge ends: both sockets close.
fn move_away<S: Net>(mut pump: Pump<S>) {
    let Ok(runtime) = runtime() else {
        return;
    };
    runtime.spawn(async move {
        if pump.rehome().is_err() {
            return;
        }
        // Errors end the bridge; dropping both sockets is how the user learns of them.
        let _ = std::future::poll_fn(|cx| pump.poll(cx)).await;
    });
}

/// The bridge's task on the user's runtime.
struct Task<S: Net>(Arc<Slot<S>>);

impl<S: Net> Future for Task<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut slot = lock(&self.0.pump);
        let Some(pump) = slot.as_mut() else {
            // Moved by the exit hook.
            return Poll::Ready(());
        };
        match pump.poll(cx) {
            // Done, or ended by an error: dropping the pump closes both sockets.
            Poll::Ready(_) => *slot = None,
            Poll::Pending if pump.lingering() => {
                if let Some(pump) = slot.take() {
                    move_away(pump);
                }
            }
            Poll::Pending => return Poll::Pending,
        }
        Poll::Ready(())
    }
}

impl<S: Net> Drop for Task<S> {
    fn drop(&mut self) {
        // The runtime is shutting down with the bridge still running: it moves.
        let pump = lock(&self.0.pump).take();
        if let Some(pump) = pump {
            move_away(pump);
        }
    }
}

/// Bridges of this process still forwarding what their users sent (with the process
/// they belong to: a forked child starts from none), and the signal when one is done.
static OUTBOUND: Mutex<(u32, usize)> = Mutex::new((0, 0));
static OUTBOUND_DONE: Condvar = Condvar::new();

/// One bridge's user-to-network direction, counted in [`OUTBOUND`] until it is done (all
/// forwarded and the network stream's sending direction shut down) or the bridge ends.
struct Outbound(u32);

impl Outbound {
    fn new() -> Outbound {
        let pid = std::process::id();
        let mut outbound = lock(&OUTBOUND);
        if outbound.0 != pid {
            *outbound = (pid, 0);
        }
        outbound.1 += 1;
        Outbound(pid)
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        let mut outbound = lock(&OUTBOUND);
        if outbound.0 == self.0 {
            outbound.1 = outbound.1.saturating_sub(1);
        }
        OUTBOUND_DONE.notify_all();
    }
}

/// At process exit, before the ends are written out: moves every bridge of this process to
/// aiosock's own runtime, since the thread that ran one may be the thread that exits (or
/// its runtime may not be driven any more), and the ends' last bytes need a bridge that
/// reads them. Gives up on a bridge that its task keeps busy until `deadline`.
pub(crate) fn move_at_exit(deadline: Instant) {
    let pid = std::process::id();
    let mut left: Vec<Arc<dyn Movable>> = lock(&BRIDGES)
        .iter()
        .filter_map(Weak::upgrade)
        .filter(|bridge| bridge.pid() == pid)
        .collect();
    while !left.is_empty() && Instant::now() < deadline {
        // A bridge being polled right now is moved once its task lets go of it.
        left.retain(|bridge| !bridge.move_now());
        if !left.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// At process exit, once every end has written what it accepted into its pair and ended
/// its sending direction: waits until every bridge of this process has forwarded what it
/// holds to the network and shut the network stream's sending direction down, or until
/// `deadline`.
pub(crate) fn drain_at_exit(deadline: Instant) {
    let pid = std::process::id();
    let mut outbound = lock(&OUTBOUND);
    while outbound.0 == pid && outbound.1 > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        outbound = OUTBOUND_DONE
            .wait_timeout(outbound, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Drives `rt` for `span` of the clock without a timer (the runtime has none), or
    /// until `done` holds.
    fn drive_for(rt: &tokio::runtime::Runtime, span: Duration, mut done: impl FnMut() -> bool) {
        rt.block_on(async {
            let start = Instant::now();
            while start.elapsed() < span && !done() {
                tokio::task::yield_now().await;
            }
        });
    }

    /// A bridge on a runtime with I/O only (no timer), which stays alive, whose user hangs
    /// up while TCP and the pair are full (the peer does not read): forwarding for its
    /// linger and then giving up takes a timer, so it moves to aiosock's own thread, which
    /// ends it after 100 ms. The peer sees the end: the bytes it writes from then on are
    /// left unread, so the close resets the connection and its writes fail. (A bridge
    /// still waiting to forward would take them without end.)
    #[test]
    fn a_bridge_without_a_timer_moves_to_keep_its_linger() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        // A small receive buffer (inherited by the accepted socket), so that TCP takes
        // little off the bridge.
        nix::sys::socket::setsockopt(&listener, nix::sys::socket::sockopt::RcvBuf, &4096)
            .expect("SO_RCVBUF");
        let addr = listener.local_addr().expect("addr");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime");
        let user = rt
            .block_on(async {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                start(NetFd::new(tcp)?, Duration::from_millis(100))
            })
            .expect("bridge");
        let (mut peer, _) = listener.accept().expect("accept");
        // Fill TCP, the bridge and the pair: until the pair has taken nothing for 300 ms.
        let chunk = vec![1u8; 64 * 1024];
        let mut last_taken = Instant::now();
        drive_for(&rt, Duration::from_secs(10), || {
            match sys::send(user.as_fd(), &chunk) {
                Ok(_) => last_taken = Instant::now(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            last_taken.elapsed() > Duration::from_millis(300)
        });
        drop(user);
        // The user's runtime goes on running; the peer writes until the reset.
        let mut reset = false;
        let mut next = Instant::now();
        drive_for(&rt, Duration::from_secs(10), || {
            if Instant::now() >= next {
                next = Instant::now() + Duration::from_millis(10);
                reset = peer.write_all(b"x").is_err();
            }
            reset
        });
        assert!(reset, "the bridge still runs 10 s after its 100 ms linger");
    }
}
