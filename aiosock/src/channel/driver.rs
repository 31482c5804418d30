//! The state one end shares between its [`Sender`](super::Sender) clones, its
//! [`Receiver`](super::Receiver) and its writer task.
//!
//! Senders encode whole frames straight into one bounded buffer under a mutex (so frames
//! from clones never interleave). When the end was idle, the sending task writes the first
//! frame of a burst itself, at once; after that, one writer task per end swaps the buffer
//! out and hands everything queued to the kernel in as few `send` calls as it can (group
//! commit), so under load one system call carries many messages.
//!
//! The socket is registered with the reactor for reading only: a writer that finds it
//! full registers a duplicate for write readiness while it waits, and `closed` watches a
//! duplicate of its own, so no process is woken each time the peer reads.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use serde::Serialize;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

use crate::channel::Config;
use crate::error::InvalidMessage;
use crate::protocol::ProtocolId;
use crate::sys::{self, SharedFd, Socket};
use crate::wire;

/// Why a frame was not queued.
pub(crate) enum Refused {
    Full,
    Closed,
    Invalid(InvalidMessage),
}

#[derive(Debug)]
enum Writer {
    /// No runtime has been attached yet.
    NotStarted,
    /// The writer task is busy, or scheduled.
    Running,
    /// The writer task is parked until there is something to do.
    Idle(Waker),
    /// The writer task ended.
    Gone,
}

#[derive(Debug)]
struct SendState {
    /// Whole frames queued and not yet taken by the writer.
    buf: Vec<u8>,
    /// The peer can no longer receive, or the runtime went away.
    closed: bool,
    /// Live `Sender` clones.
    senders: usize,
    writer: Writer,
    /// Bytes ever queued, and bytes ever handed to the kernel (for `flush`).
    queued: u64,
    written: u64,
    /// A send already wrote inline since the writer task last went idle or the receiver
    /// last waited: later sends leave the writing to the writer task, so that a burst
    /// goes out in batches.
    inline_spent: bool,
}

#[derive(Debug)]
pub(crate) struct Shared {
    fd: Arc<Socket>,
    io: OnceLock<AsyncFd<SharedFd>>,
    /// A duplicate of the socket registered for write readiness, so that
    /// [`closed`](Self::closed) can wake on the socket's events (the peer reading, shutting
    /// down or closing). Made the first time `closed` waits.
    watch: OnceLock<Option<AsyncFd<Socket>>>,
    attach_lock: Mutex<()>,
    state: Mutex<SendState>,
    /// Signalled whenever space frees up, bytes are written, or the end closes.
    events: Notify,
    pub(crate) config: Config,
}

impl Shared {
    pub(crate) fn new(
        fd: Socket,
        config: Config,
        sends: ProtocolId,
        expects: ProtocolId,
    ) -> Shared {
        let mut buf = Vec::with_capacity(config.capacity().min(64 * 1024));
        wire::encode_hello(
            &mut buf,
            (sends.name(), sends.fingerprint()),
            (expects.name(), expects.fingerprint()),
        );
        let queued = buf.len() as u64;
        Shared {
            fd: Arc::new(fd),
            io: OnceLock::new(),
            watch: OnceLock::new(),
            attach_lock: Mutex::new(()),
            state: Mutex::new(SendState {
                buf,
                closed: false,
                senders: 1,
                writer: Writer::NotStarted,
                queued,
                written: 0,
                inline_spent: false,
            }),
            events: Notify::new(),
            config,
        }
    }

    fn lock(&self) -> MutexGuard<'_, SendState> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters more than losing the channel, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Registers the socket with the current runtime's reactor and starts the writer task,
    /// the first time it is called.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime with I/O enabled.
    #[track_caller]
    pub(crate) fn attach(self: &Arc<Self>) -> io::Result<&AsyncFd<SharedFd>> {
        if let Some(io) = self.io.get() {
            return Ok(io);
        }
        let _guard = self.attach_lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(io) = self.io.get() {
            return Ok(io);
        }
        let io = sys::register(self.fd.clone())?;
        let io = self.io.get_or_init(|| io);
        let start = {
            let mut st = self.lock();
            if matches!(st.writer, Writer::NotStarted) {
                st.writer = Writer::Running;
                true
            } else {
                false
            }
        };
        if start {
            tokio::spawn(run_writer(self.clone()));
        }
        Ok(io)
    }

    /// Like [`attach`](Self::attach), but only inside a runtime; `None` outside one.
    pub(crate) fn attach_if_in_runtime(self: &Arc<Self>) -> Option<&AsyncFd<SharedFd>> {
        if self.io.get().is_none() && tokio::runtime::Handle::try_current().is_err() {
            return None;
        }
        self.attach().ok()
    }

    /// Marks the end closed for sending after `attach` failed.
    pub(crate) fn fail(&self) {
        self.lock().closed = true;
        self.events.notify_waiters();
    }

    /// Queues `msg` as one frame unless the end is closed or, with `bounded`, the buffer
    /// is at capacity.
    pub(crate) fn push<T: Serialize>(&self, msg: &T, bounded: bool) -> Result<(), Refused> {
        let mut st = self.lock();
        if st.closed {
            return Err(Refused::Closed);
        }
        if bounded && st.buf.len() >= self.config.capacity() {
            return Err(Refused::Full);
        }
        let before = st.buf.len();
        wire::encode_frame(&mut st.buf, msg, self.config.max_frame_len())
            .map_err(Refused::Invalid)?;
        st.queued += (st.buf.len() - before) as u64;
        let wake = match std::mem::replace(&mut st.writer, Writer::Running) {
            Writer::Idle(waker) if !st.inline_spent => {
                // The writer is idle, so this frame is all that is queued: write it now,
                // without waiting for the writer task to be scheduled (a round trip's
                // latency). Only once per burst: the writer batches the rest.
                st.inline_spent = true;
                // If the socket is not writable, or failing, the writer task waits or reports.
                if let Ok(n) = sys::send(self.fd(), &st.buf) {
                    st.buf.drain(..n);
                    st.written += n as u64;
                }
                if st.buf.is_empty() {
                    st.writer = Writer::Idle(waker);
                    drop(st);
                    self.events.notify_waiters();
                    return Ok(());
                }
                Some(waker)
            }
            Writer::Idle(waker) => Some(waker),
            other => {
                st.writer = other;
                None
            }
        };
        drop(st);
        if let Some(waker) = wake {
            waker.wake();
        }
        Ok(())
    }

    /// The task that receives on this end is about to wait: the next send may write inline.
    pub(crate) fn end_of_burst(&self) {
        let mut st = self.lock();
        st.inline_spent = false;
    }

    /// Waits until `done` holds for the send state, re-checking on every event.
    async fn wait_until<R>(&self, mut done: impl FnMut(&SendState) -> Option<R>) -> R {
        loop {
            let notified = self.events.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = done(&self.lock()) {
                return r;
            }
            notified.await;
        }
    }

    /// Waits for space in the buffer; `Err` once closed.
    pub(crate) async fn ready(&self) -> Result<(), ()> {
        let cap = self.config.capacity();
        self.wait_until(|st| match () {
            () if st.closed => Some(Err(())),
            () if st.buf.len() < cap => Some(Ok(())),
            () => None,
        })
        .await
    }

    /// Waits until everything queued so far is in the kernel; `Err` if closed first.
    pub(crate) async fn flush(&self) -> Result<(), ()> {
        let target = self.lock().queued;
        self.wait_until(|st| match () {
            () if st.written >= target => Some(Ok(())),
            () if st.closed => Some(Err(())),
            () => None,
        })
        .await
    }

    /// Completes once the peer can no longer receive: a write failed, or the socket says
    /// so (checked now and on each of its events).
    pub(crate) async fn closed(&self) {
        let watch = self
            .watch
            .get_or_init(|| {
                let dup = self.fd.as_fd().try_clone_to_owned().ok()?;
                sys::register_owned(Socket::new(dup), tokio::io::Interest::WRITABLE).ok()
            })
            .as_ref();
        loop {
            let notified = self.events.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            match watch {
                Some(watch) => {
                    tokio::select! {
                        () = &mut notified => {}
                        ready = watch.writable() => match ready {
                            // Wait for the socket's next event before checking again.
                            Ok(mut ready) => ready.clear_ready(),
                            Err(_) => notified.await,
                        },
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Whether the peer is known to be unable to receive; asks the socket when not known.
    pub(crate) fn is_closed(&self) -> bool {
        if self.lock().closed {
            return true;
        }
        if !sys::peer_can_receive(self.fd()) && self.lock().senders > 0 {
            self.fail();
            return true;
        }
        false
    }

    /// Called when this end's receiver read end-of-file: asks whether the peer can still
    /// receive.
    pub(crate) fn peer_gone(&self) {
        self.is_closed();
    }

    pub(crate) fn add_sender(&self) {
        self.lock().senders += 1;
    }

    /// Drops one sender; the last one lets the writer flush and shut the direction down.
    pub(crate) fn remove_sender(&self) {
        let mut st = self.lock();
        st.senders -= 1;
        if st.senders > 0 {
            return;
        }
        match std::mem::replace(&mut st.writer, Writer::Running) {
            Writer::Idle(waker) => {
                drop(st);
                waker.wake();
            }
            Writer::NotStarted => {
                // No runtime ever ran this end: flush what was queued (at least the hello)
                // here, within the linger time, then end the direction.
                st.writer = Writer::Gone;
                let pending = std::mem::take(&mut st.buf);
                drop(st);
                let deadline = Instant::now() + self.config.linger();
                let _ = sys::send_all_blocking(self.fd(), &pending, deadline);
                sys::shutdown_write(self.fd());
            }
            other => st.writer = other,
        }
    }

    /// Swaps the queued frames into `batch`; `false` once no sender is left and all is sent.
    fn poll_take(&self, batch: &mut Vec<u8>, cx: &mut Context<'_>) -> Poll<bool> {
        let mut st = self.lock();
        if !st.buf.is_empty() && !st.closed {
            std::mem::swap(&mut st.buf, batch);
            drop(st);
            self.events.notify_waiters();
            Poll::Ready(true)
        } else if st.senders == 0 || st.closed {
            Poll::Ready(false)
        } else {
            st.writer = Writer::Idle(cx.waker().clone());
            st.inline_spent = false;
            Poll::Pending
        }
    }
}

/// The writer task's state; dropping it unfinished (runtime shutdown) lingers.
struct WriterTask {
    shared: Arc<Shared>,
    batch: Vec<u8>,
    /// Bytes of `batch` already written.
    sent: usize,
    finished: bool,
}

async fn run_writer(shared: Arc<Shared>) {
    let mut task = WriterTask {
        shared,
        batch: Vec::new(),
        sent: 0,
        finished: false,
    };
    task.run().await;
}

impl WriterTask {
    async fn run(&mut self) {
        loop {
            let more = std::future::poll_fn(|cx| self.shared.poll_take(&mut self.batch, cx)).await;
            if !more {
                break;
            }
            self.sent = 0;
            if let Err(_e) = self.write_batch().await {
                self.shared.fail();
                break;
            }
            let len = self.batch.len() as u64;
            self.batch.clear();
            // Keep a large batch buffer while large batches keep coming.
            let cap = self.shared.config.capacity();
            if self.batch.capacity() > 4 * cap && len < self.batch.capacity() as u64 / 8 {
                self.batch.shrink_to(cap);
            }
            self.shared.lock().written += len;
            self.shared.events.notify_waiters();
        }
        sys::shutdown_write(self.shared.fd());
        self.shared.lock().writer = Writer::Gone;
        self.finished = true;
    }

    /// Writes the batch, trying the socket first and waiting for room only when it is
    /// full: then (and only then) a duplicate of the socket is registered for write
    /// readiness, and dropped once the batch is out.
    async fn write_batch(&mut self) -> io::Result<()> {
        let mut waiter: Option<AsyncFd<Socket>> = None;
        while self.sent < self.batch.len() {
            match sys::send(self.shared.fd(), &self.batch[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if waiter.is_none() {
                        let dup = self.shared.fd().try_clone_to_owned()?;
                        waiter = Some(sys::register_owned(
                            Socket::new(dup),
                            tokio::io::Interest::WRITABLE,
                        )?);
                    }
                    let waiter = waiter.as_ref().expect("registered above");
                    // Wait for the next write-space event, then try again.
                    waiter.writable().await?.clear_ready();
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Drop for WriterTask {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // The runtime is shutting down under a live writer: hand what `send` accepted to
        // the kernel within the linger time, then close the direction for good.
        let mut st = self.shared.lock();
        st.closed = true;
        st.writer = Writer::Gone;
        let mut pending = self.batch.split_off(self.sent.min(self.batch.len()));
        pending.extend_from_slice(&st.buf);
        st.buf = Vec::new();
        drop(st);
        let deadline = Instant::now() + self.shared.config.linger();
        let _ = sys::send_all_blocking(self.shared.fd(), &pending, deadline);
        sys::shutdown_write(self.shared.fd());
        self.shared.events.notify_waiters();
    }
}
