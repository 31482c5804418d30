//! The state one end shares between its [`Sender`](super::Sender) clones, its
//! [`Receiver`](super::Receiver), its writer task and the linger: the socket and its
//! registration with the runtime, the outgoing queue, and the close state.
//!
//! Outgoing bytes live in two places, each under its own lock:
//!
//! - the **queue** ([`Outgoing::queue`]): whole frames that `send` accepted. Senders encode
//!   a message outside any lock, then append its frame here under the `out` lock (small
//!   frames copied into shared segments, large ones moved), so frames from clones never
//!   interleave and a slow `Serialize` holds nobody up;
//! - the **batch** ([`Batch`]): the segments being handed to the kernel, in order. Whoever
//!   writes (the sending task for the first frame of a burst, the writer task, the linger
//!   at shutdown, the exit hook) takes the `batch` lock, and when the batch is done takes
//!   the whole queue in ([`Shared::write_now`]). One writer at a time, always in order.
//!
//! Lock order: `batch`, then `out`. A sender holding `out` only ever *tries* `batch`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};

use serde::Serialize;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

use crate::channel::calls::Calls;
use crate::channel::queue::{Batch, Queue};
use crate::channel::{Config, linger, writer};
use crate::error::{CallError, InvalidMessage};
use crate::protocol::{Protocol, Shape};
use crate::sys::{self, SharedFd, Socket};
use crate::{trace, wire};

/// Why a frame was not queued.
pub(crate) enum Refused {
    Full,
    Closed,
}

/// A thread keeps at most this much encoding buffer for its next message.
const KEEP_SCRATCH: usize = 64 * 1024;
/// Frames from this size on are large: while they keep coming, the thread keeps a larger
/// buffer than [`KEEP_SCRATCH`] (the one the queue hands back for each it takes).
pub(crate) const KEEP_SCRATCH_FROM: usize = KEEP_SCRATCH / 8;

/// Who writes the queue out.
#[derive(Debug)]
pub(crate) enum Writer {
    /// No runtime has been attached yet.
    NotStarted,
    /// The writer task is busy or scheduled, or a sending task writes inline.
    Running,
    /// The writer task is parked until there is something to do.
    Idle(Waker),
    /// The writer task is gone: finished, or handed to the linger.
    Gone,
}

#[derive(Debug)]
pub(crate) struct Outgoing {
    /// Whole frames accepted and not yet taken into the batch.
    pub(crate) queue: Queue,
    /// No more sends are accepted: the peer cannot receive, the runtime went away, or
    /// the process is exiting.
    pub(crate) closed: bool,
    /// Live `Sender` clones.
    pub(crate) senders: usize,
    pub(crate) writer: Writer,
    /// Bytes ever queued, and bytes ever handed to the kernel (for `flush`).
    pub(crate) queued: u64,
    pub(crate) written: u64,
    /// A send already wrote inline since the writer task last went idle or the receiver
    /// last waited: later sends leave the writing to the writer task, so that a burst
    /// goes out in batches.
    pub(crate) inline_spent: bool,
    /// The batch may hold bytes (an inline write left some): the writer task must write
    /// before it parks again.
    pub(crate) kick: bool,
}

/// What [`Shared::write_now`] left.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Everything queued is in the kernel.
    Drained,
    /// The socket is full; bytes wait in the batch or the queue.
    Full,
    /// The call wrote its share and more is queued (others keep queueing): call again.
    More,
    /// The kernel refused to take descriptors for now (see `sys::is_refused_for_now`):
    /// nothing of the send went out, and the socket may have room, so its readiness says
    /// nothing: try again after a pause.
    Refused,
}

/// Batches [`Shared::write_now`] takes from the queue before it returns [`Flow::More`].
const BATCHES_PER_CALL: usize = 16;

#[derive(Debug)]
pub(crate) struct Shared {
    socket: Arc<Socket>,
    io: OnceLock<AsyncFd<SharedFd>>,
    /// A duplicate of the socket registered for write readiness, so that
    /// [`closed`](Self::closed) can wake on the socket's events (the peer reading, shutting
    /// down or closing). Made the first time `closed` waits; `None` if it could not be.
    watch: OnceLock<Option<AsyncFd<Socket>>>,
    attach_lock: Mutex<()>,
    batch: Mutex<Batch>,
    out: Mutex<Outgoing>,
    /// Signalled whenever space frees up, bytes are written, or the end closes.
    pub(crate) events: Notify,
    /// The calls this end has in flight.
    pub(crate) calls: Calls,
    pub(crate) config: Config,
    /// This connection end's tracing span (empty without the `tracing` feature).
    pub(crate) span: trace::Span,
    /// The process that made this end. A child made by a plain `fork` (not
    /// [`crate::fork`]) shares the socket: it must never write to it or shut it down
    /// behind the parent's back, when it exits or drops its copies.
    owner: u32,
    /// What this end sends and expects, as its hello says.
    sends: Shape,
    expects: Shape,
    /// How many variants of what this end sends the peer knows, from the peer's hello;
    /// [`UNKNOWN`] until it was read (by the receiver, or peeked by a sender), [`NEVER`]
    /// once the receiver ended without it (a bad hello or frame, or the peer's end).
    known: AtomicUsize,
    /// The last push left at least [`DEEP`] bytes queued (see [`is_deep`](Self::is_deep)).
    deep: AtomicBool,
    /// A duplicate of the socket registered for read readiness, for a sender that waits
    /// for the peer's hello (see [`peer_hello`](Self::peer_hello)).
    hello_watch: OnceLock<Option<AsyncFd<Socket>>>,
    /// The receiver was dropped before the peer's hello was read, and this end sends
    /// `#[added]` variants: the shutdown of the receiving direction (and the discarding of
    /// what the peer sent) waits until the hello is known, which sends of those variants
    /// need (see [`receiver_dropped`](Self::receiver_dropped)).
    shutdown_after_hello: AtomicBool,
    /// The receiver has begun to read the peer's hello from the socket (set before its
    /// first read, while the hello is not decoded): from then on the socket may hold none
    /// of it, and the end of the stream there does not say that it will never come (the
    /// receiver reports it, or its absence: [`peer_knows`](Self::peer_knows),
    /// [`hello_never`](Self::hello_never)).
    hello_taken: AtomicBool,
    /// The start of the peer's hello that a dropped receiver had read (the socket holds
    /// the rest): a peek for the hello reads it as these bytes, then what it peeks.
    hello_prefix: Mutex<Vec<u8>>,
}

/// The peer's hello has not been read yet.
const UNKNOWN: usize = usize::MAX;
/// The peer's hello will never be read: the receiver ended first.
const NEVER: usize = usize::MAX - 1;

/// The longest hello: the fixed part, two names and the largest extensions.
const MAX_HELLO: usize = wire::HELLO_FIXED_LEN + 2 * wire::MAX_NAME_LEN + u16::MAX as usize;

/// What peeking at the socket told of the peer's hello.
enum Peeked {
    /// The peer knows this many of the variants this end sends.
    Known(usize),
    /// Not there yet (or already read by the receiver, which records it).
    NotYet,
    /// The peer is gone, or its hello does not match: nothing will be understood.
    Never,
}

impl Shared {
    pub(crate) fn new(
        socket: Socket,
        config: Config,
        sends: Shape,
        expects: Shape,
        span: trace::Span,
    ) -> Arc<Shared> {
        let mut hello = Vec::new();
        wire::encode_hello(&mut hello, &sends, &expects);
        let queued = hello.len() as u64;
        let mut queue = Queue::default();
        queue.push(&mut hello, &mut Vec::new());
        let shared = Arc::new(Shared {
            socket: Arc::new(socket),
            io: OnceLock::new(),
            watch: OnceLock::new(),
            attach_lock: Mutex::new(()),
            batch: Mutex::new(Batch::default()),
            out: Mutex::new(Outgoing {
                queue,
                closed: false,
                senders: 1,
                writer: Writer::NotStarted,
                queued,
                written: 0,
                inline_spent: false,
                kick: false,
            }),
            events: Notify::new(),
            calls: Calls::new(config.max_calls()),
            config,
            span,
            owner: std::process::id(),
            sends,
            expects,
            known: AtomicUsize::new(UNKNOWN),
            deep: AtomicBool::new(false),
            hello_watch: OnceLock::new(),
            shutdown_after_hello: AtomicBool::new(false),
            hello_taken: AtomicBool::new(false),
            hello_prefix: Mutex::new(Vec::new()),
        });
        linger::register(&shared);
        shared
    }

    pub(crate) fn out(&self) -> MutexGuard<'_, Outgoing> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters more than losing the channel, so poisoning is ignored.
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn batch(&self) -> MutexGuard<'_, Batch> {
        self.batch.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    pub(crate) fn socket(&self) -> &Arc<Socket> {
        &self.socket
    }

    /// Registers the socket with the current runtime's reactor and starts the writer task,
    /// the first time it is called. On failure the end is closed for sending.
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
        // Read readiness is what the receiver waits for; write readiness only wakes the
        // runtime when the peer reads (see `Config::set_woken_by_peer_reads`).
        let interest = if self.config.woken_by_peer_reads() {
            tokio::io::Interest::READABLE | tokio::io::Interest::WRITABLE
        } else {
            tokio::io::Interest::READABLE
        };
        let io = match sys::register(self.socket.clone(), interest) {
            Ok(io) => self.io.get_or_init(|| io),
            Err(e) => {
                self.close_for_sending();
                return Err(e);
            }
        };
        let start = {
            let mut out = self.out();
            if matches!(out.writer, Writer::NotStarted) {
                out.writer = Writer::Running;
                true
            } else {
                false
            }
        };
        if start {
            writer::spawn(self.clone());
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

    /// No more sends: they fail with `Closed` from now on, and waiters learn it.
    pub(crate) fn close_for_sending(&self) {
        let was = std::mem::replace(&mut self.out().closed, true);
        if !was {
            trace::event!(&self.span, debug, "closed for sending");
        }
        self.events.notify_waiters();
        // Calls whose messages cannot reach the peer will get no reply.
        self.calls.end(CallError::Closed);
    }

    /// Whether this process made the end (see `owner`).
    pub(crate) fn owned_here(&self) -> bool {
        self.owner == std::process::id()
    }

    /// Ends the sending direction: the peer reads the end after what was written.
    pub(crate) fn end_sending(&self) {
        sys::shutdown_write(self.fd());
        trace::event!(&self.span, debug, "sending direction ended");
    }

    /// Queues the frame `frame` (made by [`offer`](Self::offer)), with the descriptors
    /// `fds` it carries, unless the end is closed or, with `bounded`, the queue is at
    /// capacity. On success `frame` and `fds` are left empty.
    pub(crate) fn push(
        &self,
        frame: &mut Vec<u8>,
        fds: &mut Vec<OwnedFd>,
        bounded: bool,
    ) -> Result<(), Refused> {
        self.push_releasing(frame, fds, bounded, &mut false)
    }

    /// [`push`](Self::push) for a sender that holds the direction open (a `Responder`)
    /// and lets go once its frame is queued: with `release` set, a queued frame also drops
    /// that hold in the same critical section. `release` stays set only if it did: not
    /// when the frame was refused, nor for the last hold (which
    /// [`remove_sender`](Self::remove_sender) must drop, to end the direction).
    #[inline]
    pub(crate) fn push_releasing(
        &self,
        frame: &mut Vec<u8>,
        fds: &mut Vec<OwnedFd>,
        bounded: bool,
        release: &mut bool,
    ) -> Result<(), Refused> {
        let mut out = self.out();
        self.admit(&mut out, fds.len(), bounded, release)?;
        out.queued += frame.len() as u64;
        out.queue.push(frame, fds);
        self.queued(out);
        Ok(())
    }

    /// [`push`](Self::push) for a frame whose byte fields `planned` sends from its
    /// message's buffers (see [`sys::Holding`]): once the frame is queued the message is
    /// the queue's, until those bytes are in the kernel. Refused, it comes back.
    pub(crate) fn push_planned<T: Send + 'static>(
        &self,
        frame: &mut Vec<u8>,
        fds: &mut Vec<OwnedFd>,
        planned: sys::Planned<T>,
        bounded: bool,
    ) -> Result<(), (Refused, sys::Planned<T>)> {
        let mut out = self.out();
        let count = fds.len() + planned.lent_fds();
        if let Err(why) = self.admit(&mut out, count, bounded, &mut false) {
            return Err((why, planned));
        }
        out.queued += (frame.len() + planned.len()) as u64;
        out.queue.push_holding(frame, fds, planned.hold());
        self.queued(out);
        Ok(())
    }

    /// Whether a frame with `fds` descriptors may be queued now (see `push_releasing` for
    /// `release`).
    #[inline]
    fn admit(
        &self,
        out: &mut Outgoing,
        fds: usize,
        bounded: bool,
        release: &mut bool,
    ) -> Result<(), Refused> {
        if out.closed {
            *release = false;
            return Err(Refused::Closed);
        }
        if bounded && !self.room(out, fds) {
            *release = false;
            return Err(Refused::Full);
        }
        if *release {
            if out.senders > 1 {
                out.senders -= 1;
            } else {
                *release = false;
            }
        }
        Ok(())
    }

    /// A frame was just queued under `out`: the writer learns of it, or this task writes
    /// it now if the writer is idle and this burst has not written inline yet.
    #[inline]
    fn queued(&self, mut out: MutexGuard<'_, Outgoing>) {
        self.deep.store(out.queue.len() >= DEEP, Ordering::Relaxed);
        if !matches!(out.writer, Writer::Idle(_)) {
            // The writer is busy (or gone, or not started): it takes the frame from there.
            return;
        }
        let waker = match std::mem::replace(&mut out.writer, Writer::Running) {
            Writer::Idle(waker) if !out.inline_spent => {
                // The writer is idle, so this frame is all that is queued: write it now,
                // without waiting for the writer task to be scheduled (a round trip's
                // latency). Only once per burst: the writer task batches the rest.
                out.inline_spent = true;
                drop(out);
                self.write_inline(waker);
                return;
            }
            Writer::Idle(waker) => Some(waker),
            other => {
                out.writer = other;
                None
            }
        };
        drop(out);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Writes what is queued from the sending task, then gives the writer back its waker,
    /// or wakes it if anything is left.
    fn write_inline(&self, waker: Waker) {
        let drained = match self.try_batch() {
            Some(mut batch) => matches!(self.write_batches(&mut batch, 1), Ok(Flow::Drained)),
            // Someone else is writing (the linger or the exit hook): leave it to them.
            None => false,
        };
        let mut out = self.out();
        // Parked again only if nothing happened meanwhile that the writer must act on: a
        // kick (the last sender left while this write held the batch, and could not end
        // the direction) or no sender left at all (the writer ends the direction).
        if drained
            && out.queue.is_empty()
            && matches!(out.writer, Writer::Running)
            && !out.kick
            && out.senders > 0
        {
            out.writer = Writer::Idle(waker);
        } else {
            out.kick = true;
            drop(out);
            waker.wake();
        }
    }

    /// The batch, unless someone else is writing it. A poisoned lock is taken anyway (a
    /// panic while holding it leaves nothing half-done that matters).
    fn try_batch(&self) -> Option<MutexGuard<'_, Batch>> {
        match self.batch.try_lock() {
            Ok(batch) => Some(batch),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Hands queued bytes to the kernel without blocking, in order, until everything is
    /// written or the socket is full, taking at most [`BATCHES_PER_CALL`] batches from the
    /// queue. Bytes the kernel took are counted as written.
    pub(crate) fn write_now(&self, batch: &mut Batch) -> io::Result<Flow> {
        self.write_batches(batch, BATCHES_PER_CALL)
    }

    /// [`write_now`](Self::write_now), taking at most `batches` batches from the queue
    /// before it returns [`Flow::More`]. A sending task writes one batch at most, so that
    /// a `send` never keeps writing for other clones' messages.
    fn write_batches(&self, batch: &mut Batch, batches: usize) -> io::Result<Flow> {
        let mut taken = 0;
        loop {
            if batch.is_done() {
                let mut out = self.out();
                if out.queue.is_empty() {
                    return Ok(Flow::Drained);
                }
                if taken == batches {
                    return Ok(Flow::More);
                }
                taken += 1;
                batch.take_from(&mut out.queue);
                drop(out);
                // Room in the queue: senders waiting for it may go on.
                self.events.notify_waiters();
            }
            match batch.send_some(self.fd()) {
                Ok(n) => {
                    self.out().written += n as u64;
                    self.events.notify_waiters();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flow::Full),
                Err(e) if sys::is_refused_for_now(&e) => return Ok(Flow::Refused),
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes what is queued (at the split, the hello) if the socket takes it at once, from
    /// any thread and without a runtime; what it does not take stays for the writer.
    pub(crate) fn write_queued_now(&self) {
        if let Some(mut batch) = self.try_batch() {
            let _ = self.write_now(&mut batch);
        }
    }

    /// The task that receives on this end is about to wait: the next send may write inline.
    pub(crate) fn reader_waiting(&self) {
        self.out().inline_spent = false;
    }

    /// Waits until `done` holds for the outgoing state, re-checking on every event.
    async fn wait_until<R>(&self, mut done: impl FnMut(&Outgoing) -> Option<R>) -> R {
        loop {
            let notified = self.events.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = done(&self.out()) {
                return r;
            }
            notified.await;
        }
    }

    /// Whether the queue takes a frame with `fds` descriptors: it holds less than the
    /// capacity in bytes and, for a frame with descriptors, leaves room for them under
    /// [`Config::max_fds`] (or holds none: a frame always fits an empty queue).
    fn room(&self, out: &Outgoing, fds: usize) -> bool {
        let queued = out.queue.fds();
        out.queue.len() < self.config.capacity()
            && (fds == 0 || queued == 0 || queued + fds <= self.config.max_fds())
    }

    /// Waits for space in the queue; `Err` once closed.
    pub(crate) async fn ready(&self) -> Result<(), ()> {
        self.ready_for(0).await
    }

    /// Waits for space in the queue for a frame whose descriptors are not known yet (the
    /// `Sink`'s `poll_ready`): fewer bytes than the capacity, and fewer descriptors than
    /// [`Config::max_fds`], so that the frame that follows, whatever it carries, exceeds
    /// the bound by at most its own descriptors; `Err` once closed.
    pub(crate) async fn ready_for_unknown(&self) -> Result<(), ()> {
        self.wait_until(|out| match () {
            () if out.closed => Some(Err(())),
            () if out.queue.len() < self.config.capacity()
                && out.queue.fds() < self.config.max_fds() =>
            {
                Some(Ok(()))
            }
            () => None,
        })
        .await
    }

    /// Waits for space in the queue for a frame with `fds` descriptors; `Err` once closed.
    pub(crate) async fn ready_for(&self, fds: usize) -> Result<(), ()> {
        self.wait_until(|out| match () {
            () if out.closed => Some(Err(())),
            () if self.room(out, fds) => Some(Ok(())),
            () => None,
        })
        .await
    }

    /// Queues `frame` (refused once for lack of room), waiting for room as often as it takes.
    /// `Err` once the end is closed for sending. Cancel safe: until it returns `Ok`, the frame
    /// was not queued.
    pub(crate) async fn push_when_room(
        &self,
        frame: &mut Vec<u8>,
        fds: &mut Vec<OwnedFd>,
    ) -> Result<(), ()> {
        loop {
            self.ready_for(fds.len()).await?;
            match self.push(frame, fds, true) {
                Ok(()) => return Ok(()),
                Err(Refused::Closed) => return Err(()),
                Err(Refused::Full) => {}
            }
        }
    }

    /// Waits until everything queued so far is in the kernel; `Err` if closed first.
    pub(crate) async fn flush(&self) -> Result<(), ()> {
        let target = self.out().queued;
        self.wait_until(|out| match () {
            () if out.written >= target => Some(Ok(())),
            () if out.closed => Some(Err(())),
            () => None,
        })
        .await
    }

    /// Completes once the peer can no longer receive: a write failed, or the socket says
    /// so (probed now and on each of its events).
    pub(crate) async fn closed(&self) {
        let watch = self
            .watch
            .get_or_init(|| {
                let dup = self.socket.try_clone().ok()?;
                sys::register_owned(dup, tokio::io::Interest::WRITABLE).ok()
            })
            .as_ref();
        loop {
            let notified = self.events.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.probe_peer() {
                return;
            }
            match watch {
                Some(watch) => {
                    tokio::select! {
                        () = &mut notified => {}
                        ready = watch.writable() => match ready {
                            // Wait for the socket's next event before probing again.
                            Ok(mut ready) => ready.clear_ready(),
                            // Registered with a runtime that is gone: probe now and then.
                            Err(_) => tokio::select! {
                                () = &mut notified => {}
                                () = writer::pause() => {}
                            },
                        },
                    }
                }
                // No descriptor to watch with (out of descriptors): probe now and then.
                None => {
                    tokio::select! {
                        () = &mut notified => {}
                        () = writer::pause() => {}
                    }
                }
            }
        }
    }

    /// The receiver is about to read from the socket before it has decoded the peer's
    /// hello (see `hello_taken`).
    #[inline]
    pub(crate) fn taking_hello(&self) {
        if !self.hello_taken.load(Ordering::Relaxed) {
            self.hello_taken.store(true, Ordering::SeqCst);
        }
    }

    /// The receiver read the peer's hello: the peer knows the first `known` variants of
    /// what this end sends.
    pub(crate) fn peer_knows(&self, known: usize) {
        self.known.store(known, Ordering::Release);
        self.events.notify_waiters();
        if self.shutdown_after_hello.swap(false, Ordering::AcqRel) {
            self.shut_receiving();
        }
    }

    /// The receiver is gone, leaving `buffered` bytes it read and did not decode. Shuts
    /// the receiving direction down and discards what the peer sent (the room this makes
    /// wakes a peer whose socket was full, and its next write fails with `EPIPE` instead
    /// of waiting forever for a reader that is gone) — unless the peer's hello is still
    /// to come and this end sends `#[added]` variants: then only once it has been peeked,
    /// by a send that needs it or, in a runtime, by a task that waits for it (at most the
    /// linger; the direction is shut down then anyway). A hello among `buffered` is taken
    /// first; the start of one is kept, and later peeks go on from it.
    pub(crate) fn receiver_dropped(self: &Arc<Self>, buffered: &[u8], hello_pending: bool) {
        // What the receiver took of the hello is in `buffered`: from now on it is the kept
        // prefix and the socket that say whether the hello comes.
        self.hello_taken.store(false, Ordering::SeqCst);
        if hello_pending && self.known().is_none() {
            if let Ok(Some((hello, _))) = wire::PeerHello::decode(buffered)
                && let Ok(known) = hello.check(&self.sends, &self.expects)
            {
                self.known.store(known, Ordering::Release);
                self.events.notify_waiters();
            } else if self.sends.baseline < self.sends.variants.len()
                && (buffered.is_empty() || matches!(wire::PeerHello::decode(buffered), Ok(None)))
            {
                // Nothing of the hello, or only its start (at most a hello's length): the
                // rest is in the socket.
                *self.hello_prefix.lock().unwrap_or_else(|e| e.into_inner()) = buffered.to_vec();
                self.shutdown_after_hello.store(true, Ordering::Release);
                // The hello may have come meanwhile (a peek that finds it, or finds that
                // it never will, shuts the direction down).
                if matches!(self.peek_hello(), Peeked::NotYet) {
                    self.await_hello_then_shut();
                }
                return;
            }
        }
        self.shut_receiving();
    }

    /// With the receiver gone before the peer's hello: waits for the hello in a task (this
    /// end may never send an `#[added]` variant, whose send would peek), so that the
    /// deferred shutdown happens; at most the linger, then it happens anyway. Without a
    /// runtime, now.
    fn await_hello_then_shut(self: &Arc<Self>) {
        let shut_if_still_deferred = |shared: &Shared| {
            if shared.shutdown_after_hello.swap(false, Ordering::AcqRel) {
                shared.shut_receiving();
            }
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            shut_if_still_deferred(self);
            return;
        };
        let shared = self.clone();
        runtime.spawn(async move {
            let deadline = std::time::Instant::now() + shared.config.linger();
            let hello = shared.peer_hello();
            let mut hello = std::pin::pin!(hello);
            loop {
                tokio::select! {
                    // Known or never: the peek that found out shut the direction down.
                    _ = &mut hello => break,
                    () = writer::pause() => {
                        if std::time::Instant::now() >= deadline {
                            break;
                        }
                    }
                }
            }
            shut_if_still_deferred(&shared);
        });
    }

    /// Shuts the receiving direction down and discards what is left to read.
    fn shut_receiving(&self) {
        sys::shutdown_read(self.fd());
        let mut scratch = [0u8; 16 * 1024];
        for _ in 0..4096 {
            match sys::recv(self.fd(), &mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// How many variants of what this end sends the peer knows, if its hello was read.
    pub(crate) fn known(&self) -> Option<usize> {
        match self.known.load(Ordering::Acquire) {
            UNKNOWN | NEVER => None,
            known => Some(known),
        }
    }

    /// The receiver ended (an error, or the peer's end of stream) without the peer's
    /// hello: it will never be read, and what is left in the socket (bytes after a bad
    /// frame, say) is no hello to wait for. Sends that wait for it fail.
    pub(crate) fn hello_never(&self) {
        if self
            .known
            .compare_exchange(UNKNOWN, NEVER, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.events.notify_waiters();
        }
    }

    /// Whether the peer's hello will never be read (see [`hello_never`](Self::hello_never)).
    fn hello_is_never(&self) -> bool {
        self.known.load(Ordering::Acquire) == NEVER
    }

    /// Looks at the start of the incoming stream without taking it (`MSG_PEEK`): if the
    /// receiver has not read the peer's hello yet, it is there.
    fn peek_hello(&self) -> Peeked {
        let prefix = {
            let prefix = self.hello_prefix.lock().unwrap_or_else(|e| e.into_inner());
            (!prefix.is_empty()).then(|| prefix.clone())
        };
        if let Some(mut buf) = prefix {
            // A dropped receiver read the hello's start (shorter than a hello can be): the
            // socket holds the rest.
            let start = buf.len();
            if start >= MAX_HELLO {
                return self.peeked(Ok(&[]));
            }
            buf.resize(MAX_HELLO, 0);
            return match sys::peek(self.fd(), &mut buf[start..]) {
                Ok(0) => self.peeked(Ok(&[])),
                Ok(n) => self.peeked(Ok(&buf[..start + n])),
                Err(e) => self.peeked(Err(e)),
            };
        }
        // Most hellos are short: a look at the first bytes first, the longest hello only
        // when those were all there and not enough.
        let mut short = [0u8; 1024];
        match sys::peek(self.fd(), &mut short) {
            Ok(n) if n == short.len() => {}
            Ok(n) => return self.peeked(Ok(&short[..n])),
            Err(e) => return self.peeked(Err(e)),
        }
        let mut buf = vec![0u8; MAX_HELLO];
        match sys::peek(self.fd(), &mut buf) {
            Ok(n) => self.peeked(Ok(&buf[..n])),
            Err(e) => self.peeked(Err(e)),
        }
    }

    /// What a peek at the incoming stream (`bytes`, or the error) says of the peer's hello.
    fn peeked(&self, peek: io::Result<&[u8]>) -> Peeked {
        let peeked = self.read_peek(peek);
        if !matches!(peeked, Peeked::NotYet) {
            // Known or never: the start of the hello a dropped receiver kept is done with.
            std::mem::take(&mut *self.hello_prefix.lock().unwrap_or_else(|e| e.into_inner()));
        }
        if !matches!(peeked, Peeked::NotYet)
            && self.shutdown_after_hello.swap(false, Ordering::AcqRel)
        {
            // The receiver is gone and waited for this: nothing more to learn.
            self.shut_receiving();
        }
        peeked
    }

    /// Whether the receiver may hold the peer's hello undecoded, with the peer still
    /// there to send more.
    fn hello_may_be_taken(&self) -> bool {
        self.hello_taken.load(Ordering::SeqCst) && sys::peer_can_receive(self.fd())
    }

    fn read_peek(&self, peek: io::Result<&[u8]>) -> Peeked {
        match peek {
            // The end of the stream, or a reset, with the hello maybe taken by the receiver
            // and not decoded yet: it reports the hello, or that none came; unless the
            // peer is gone (then nothing waits on a receiver that may not be polled).
            Ok([]) if self.hello_may_be_taken() => Peeked::NotYet,
            Err(e) if e.kind() != io::ErrorKind::WouldBlock && self.hello_may_be_taken() => {
                Peeked::NotYet
            }
            Ok([]) => Peeked::Never,
            Ok(bytes) => match wire::PeerHello::decode(bytes) {
                Ok(Some((hello, _))) => match hello.check(&self.sends, &self.expects) {
                    Ok(known) => {
                        self.known.store(known, Ordering::Release);
                        Peeked::Known(known)
                    }
                    // The receiver reports the mismatch.
                    Err(_) => Peeked::Never,
                },
                // A hello cut short, or the receiver took the hello and what is left is
                // frames: it records what the hello said.
                Ok(None) | Err(_) => Peeked::NotYet,
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Peeked::NotYet,
            Err(_) => Peeked::Never,
        }
    }

    /// How many variants the peer knows, peeking once if its hello was not read yet:
    /// `Ok(None)` if it has not arrived, `Err` if it never will.
    pub(crate) fn try_peer_hello(&self) -> Result<Option<usize>, ()> {
        if let Some(known) = self.known() {
            return Ok(Some(known));
        }
        if self.hello_is_never() {
            return Err(());
        }
        match self.peek_hello() {
            Peeked::Known(known) => Ok(Some(known)),
            Peeked::NotYet if self.known_closed() => Err(()),
            Peeked::NotYet => Ok(self.known()),
            Peeked::Never => self.known().map(Some).ok_or(()),
        }
    }

    /// Waits until the peer's hello was read (by the receiver) or is in the socket to peek
    /// at: how many variants of what this end sends the peer knows. `Err` if the peer is
    /// gone or its hello does not match. Only a send of an `#[added]` variant waits here,
    /// once: the peer writes its hello first thing.
    pub(crate) async fn peer_hello(&self) -> Result<usize, ()> {
        let watch = self
            .hello_watch
            .get_or_init(|| {
                let dup = self.socket.try_clone().ok()?;
                sys::register_owned(dup, tokio::io::Interest::READABLE).ok()
            })
            .as_ref();
        // The peer stopped sending: the socket stays readable for good (Tokio never
        // clears that readiness), so its events say nothing more.
        let mut ended = false;
        loop {
            let notified = self.events.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(known) = self.try_peer_hello()? {
                return Ok(known);
            }
            match watch {
                Some(watch) if !ended => {
                    tokio::select! {
                        () = &mut notified => {}
                        ready = watch.readable() => match ready {
                            Ok(ready) if ready.ready().is_read_closed() => ended = true,
                            Ok(mut ready) => ready.clear_ready(),
                            Err(_) => writer::pause().await,
                        },
                    }
                }
                // Out of descriptors to watch with, or the stream ended: the receiver's
                // news (`notified`), or a look now and then.
                _ => {
                    tokio::select! {
                        () = &mut notified => {}
                        () = writer::pause() => {}
                    }
                }
            }
        }
    }

    /// Whether the end is known to be closed for sending. Asks nothing, changes nothing.
    pub(crate) fn known_closed(&self) -> bool {
        self.out().closed
    }

    /// Asks the kernel whether the peer can still receive (a zero-length send), unless it
    /// is already known that it cannot; if it cannot, closes the end for sending. Returns
    /// whether the end is closed.
    pub(crate) fn probe_peer(&self) -> bool {
        if self.known_closed() {
            return true;
        }
        if !sys::peer_can_receive(self.fd()) && self.out().senders > 0 {
            self.close_for_sending();
            return true;
        }
        false
    }

    /// Queues a small frame the end owes the peer (an answer it cannot wait to send, such
    /// as a call's failure), beyond the capacity. So that a peer that sends calls and never
    /// reads cannot make this end queue without bound, the frame is refused once twice
    /// the capacity of owed frames waits in the queue (the writer has not taken them: the
    /// peer does not read); the connection then ends, which fails the peer's calls. The
    /// sends' own frames do not count: a large message queued is no reason to end.
    pub(crate) fn push_owed(&self, frame: &mut Vec<u8>) {
        let over = {
            let mut out = self.out();
            let over = out.queue.owed() >= 2 * self.config.capacity();
            if !over {
                out.queue.note_owed(frame.len());
            }
            over
        };
        if over {
            trace::event!(
                &self.span,
                warn,
                "the peer does not read: the connection ends"
            );
            self.hang_up();
        } else {
            // Refused only when closed: then the peer is gone and owed nothing.
            let _ = self.push(frame, &mut Vec::new(), false);
        }
    }

    /// Ends the connection from this side: nothing more is sent (every call fails with
    /// `Closed`), and receiving ends once what already arrived is read.
    pub(crate) fn hang_up(&self) {
        self.close_for_sending();
        sys::shutdown_read(self.fd());
        self.end_sending();
    }

    /// Keeps the sending direction open like one more `Sender`, unless it already ended
    /// (every sender was dropped): whether it did.
    pub(crate) fn hold_sending(&self) -> bool {
        let mut out = self.out();
        if out.senders == 0 || out.closed {
            return false;
        }
        out.senders += 1;
        true
    }

    pub(crate) fn add_sender(&self) {
        self.out().senders += 1;
    }

    /// Drops one sender. The last one ends the direction: at once if everything queued
    /// can be written now (the peer sees the end without waiting for a task to run), else
    /// once the writer task (or, with no runtime, the linger) has written everything.
    pub(crate) fn remove_sender(self: &Arc<Self>) {
        let mut out = self.out();
        out.senders -= 1;
        if out.senders > 0 {
            return;
        }
        let waker = match std::mem::replace(&mut out.writer, Writer::Running) {
            Writer::NotStarted => {
                // No runtime ever ran this end: the linger writes what was queued (at
                // least the hello), at once if the socket takes it. The hand-off marks
                // the writer gone itself (see `linger::hand_off`).
                if !self.owned_here() {
                    // A copy of the parent's end in a child of a plain `fork`: never
                    // written from here.
                    out.writer = Writer::Gone;
                    return;
                }
                out.writer = Writer::NotStarted;
                drop(out);
                linger::hand_off(self.clone());
                return;
            }
            Writer::Gone => {
                out.writer = Writer::Gone;
                return;
            }
            Writer::Idle(waker) => Some(waker),
            Writer::Running => None,
        };
        // The writer task must look again before it ends the direction: this drop may be
        // about to take the queue into the batch (below), and a writer that found the
        // queue empty and no sender left meanwhile would end the direction while this
        // write is still going, cutting the last frames off.
        out.kick = true;
        drop(out);
        if !self.owned_here() {
            // A copy of the parent's end in a child of a plain `fork`: not ours to close.
            return;
        }
        // Unless a writer is busy right now (then it finishes the job), write what is left
        // and end the direction.
        let drained = match self.try_batch() {
            Some(mut batch) => matches!(self.write_now(&mut batch), Ok(Flow::Drained)),
            None => false,
        };
        if drained {
            self.end_sending();
        } else {
            self.out().kick = true;
        }
        // The writer task sees that no sender is left, finishes and ends.
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// In the writer task: takes the queue's frames for writing, or parks the task until
    /// there are some. `Ready(false)` once no sender is left and everything is written, or
    /// the end closed.
    pub(crate) fn poll_more(&self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut out = self.out();
        if out.closed {
            Poll::Ready(false)
        } else if out.kick || !out.queue.is_empty() {
            out.kick = false;
            out.writer = Writer::Running;
            Poll::Ready(true)
        } else if out.senders == 0 {
            Poll::Ready(false)
        } else {
            out.writer = Writer::Idle(cx.waker().clone());
            out.inline_spent = false;
            Poll::Pending
        }
    }
}

/// Queued bytes from which a send spends its task's cooperative budget: enough for the
/// writer to hand the kernel a batch worth a system call.
const DEEP: usize = 64 * 1024;

impl Shared {
    /// Whether the last push left a batch's worth queued ([`DEEP`] bytes): then a send
    /// spends its task's cooperative budget before it queues, so that a loop of sends that
    /// never waits for room (a stream that fits the outgoing buffer) still lets the
    /// runtime's other tasks run (this end's writer, other ends' senders), as sends on
    /// tokio's own channels do. Below it, sends run on, so that the writer gets batches.
    #[inline]
    pub(crate) fn is_deep(&self) -> bool {
        self.deep.load(Ordering::Relaxed)
    }
}

/// What became of a message offered to the queue.
pub(crate) enum Offer {
    /// Queued: accepted.
    Queued,
    /// The queue is at capacity; the encoded frame and its descriptors come back, to be
    /// pushed later.
    Full(Vec<u8>, Vec<OwnedFd>),
    /// The end is closed for sending.
    Closed,
}

/// What became of a message offered with its byte fields held ([`Shared::offer_holding`]).
pub(crate) enum Held<T> {
    /// Queued: accepted.
    Queued,
    /// The end is closed for sending: the message back.
    Closed(T),
    /// The message cannot be encoded: the message back.
    Invalid(T, InvalidMessage),
    /// The queue is at capacity: the encoded frame, to queue once there is room.
    Full(PendingHeld<T>),
    /// Nothing to hold (no byte field is long enough; or, which cannot happen, the encoder
    /// left out bytes that are not the message's fields): the message back, to be sent by
    /// copy ([`Shared::offer`]).
    Copy(T),
}

/// A frame with held byte fields, waiting for room in the queue.
pub(crate) struct PendingHeld<T> {
    frame: Vec<u8>,
    fds: Vec<OwnedFd>,
    planned: sys::Planned<T>,
}

impl<T: Send + 'static> PendingHeld<T> {
    /// The message back; nothing was queued.
    pub(crate) fn into_inner(self) -> T {
        self.planned.into_inner()
    }
}

impl Shared {
    /// [`offer`](Self::offer) for a message with byte fields of at least
    /// [`Config::zero_copy_from`] bytes or descriptor fields: the frame is encoded without
    /// those bytes, and passes those descriptors as they are; once it is queued the message
    /// itself stays in the queue until those bytes and descriptors are in the kernel, which
    /// copies the bytes from the message's buffers. One copy of the bytes instead of two,
    /// and no duplicate of a descriptor. A message without such fields comes back at once
    /// as [`Held::Copy`].
    #[inline]
    pub(crate) fn offer_holding<T: Protocol>(&self, msg: T, bounded: bool) -> Held<T> {
        if !sys::Holding::worth_it(&msg, self.config.zero_copy_from()) {
            return Held::Copy(msg);
        }
        self.offer_held(
            sys::Holding::new(msg, self.config.zero_copy_from()),
            bounded,
        )
    }

    /// [`offer_holding`](Self::offer_holding) of a message with a byte field long enough
    /// or a descriptor field.
    fn offer_held<T: Protocol>(&self, holding: sys::Holding<T>, bounded: bool) -> Held<T> {
        if holding.fields().is_empty() && holding.fds().is_empty() {
            return Held::Copy(holding.into_inner());
        }
        let mut frame = take_scratch();
        let mut used = Vec::new();
        let encoded = wire::encode_frame_holding(
            &mut frame,
            holding.msg(),
            self.config.max_frame_len(),
            wire::Kind::Message,
            (holding.fields(), holding.fds()),
            &mut used,
        );
        let (mut fds, lent) = match encoded {
            Ok((fds, lent))
                if (!fds.is_empty() || !lent.is_empty()) && !self.config.carries_fds() =>
            {
                drop(fds);
                return_scratch(frame, true);
                return Held::Invalid(holding.into_inner(), InvalidMessage::FdsNotCarried);
            }
            Ok(encoded) => encoded,
            Err(why) => {
                return_scratch(frame, true);
                return Held::Invalid(holding.into_inner(), why);
            }
        };
        let planned = match holding.plan(used, lent) {
            Ok(planned) => planned,
            Err(msg) => {
                return_scratch(frame, true);
                return Held::Copy(msg);
            }
        };
        match self.push_planned(&mut frame, &mut fds, planned, bounded) {
            Ok(()) => {
                return_scratch(frame, true);
                Held::Queued
            }
            Err((Refused::Closed, planned)) => {
                return_scratch(frame, true);
                Held::Closed(planned.into_inner())
            }
            Err((Refused::Full, planned)) => Held::Full(PendingHeld {
                frame,
                fds,
                planned,
            }),
        }
    }

    /// Queues `pending` once there is room; the message back if the end closes first.
    pub(crate) async fn push_held_when_room<T: Send + 'static>(
        &self,
        pending: PendingHeld<T>,
    ) -> Result<(), T> {
        let PendingHeld {
            mut frame,
            mut fds,
            mut planned,
        } = pending;
        loop {
            if self
                .ready_for(fds.len() + planned.lent_fds())
                .await
                .is_err()
            {
                return Err(planned.into_inner());
            }
            match self.push_planned(&mut frame, &mut fds, planned, true) {
                Ok(()) => return Ok(()),
                Err((Refused::Closed, back)) => return Err(back.into_inner()),
                Err((Refused::Full, back)) => planned = back,
            }
        }
    }

    /// Encodes `msg` as one frame, outside any lock, into a buffer this thread reuses, and
    /// pushes it (see [`push`](Self::push)). A `Serialize` that panics leaves nothing
    /// behind, and one that sends on the same end (re-entrantly) encodes into a fresh
    /// buffer of its own.
    #[inline]
    pub(crate) fn offer<T: Serialize>(
        &self,
        msg: &T,
        bounded: bool,
    ) -> Result<Offer, InvalidMessage> {
        self.offer_as(msg, wire::Kind::Message, bounded)
    }

    /// [`offer`](Self::offer) for a frame of any kind.
    pub(crate) fn offer_as<T: Serialize>(
        &self,
        msg: &T,
        kind: wire::Kind,
        bounded: bool,
    ) -> Result<Offer, InvalidMessage> {
        // Taken out of the thread-local for the encode: a `Serialize` that sends on this
        // thread meanwhile finds it empty and encodes into a fresh buffer.
        let mut frame = take_scratch();
        let mut small = true;
        let result = self.offer_from(&mut frame, msg, kind, bounded, &mut small);
        return_scratch(frame, small);
        result
    }
}

impl Shared {
    /// [`offer_as`](Self::offer_as), encoding into `frame` (empty); `small` says whether
    /// the frame was.
    #[inline]
    fn offer_from<T: Serialize>(
        &self,
        frame: &mut Vec<u8>,
        msg: &T,
        kind: wire::Kind,
        bounded: bool,
        small: &mut bool,
    ) -> Result<Offer, InvalidMessage> {
        let mut fds = wire::encode_frame_as(frame, msg, self.config.max_frame_len(), kind)?;
        *small = frame.len() < KEEP_SCRATCH_FROM;
        if !fds.is_empty() && !self.config.carries_fds() {
            frame.clear();
            return Err(InvalidMessage::FdsNotCarried);
        }
        Ok(match self.push(frame, &mut fds, bounded) {
            Ok(()) => Offer::Queued,
            Err(Refused::Full) => Offer::Full(std::mem::take(frame), fds),
            Err(Refused::Closed) => Offer::Closed,
        })
    }
}

thread_local! {
    /// The buffer messages are encoded into before they are queued.
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// This thread's buffer to encode a frame into, empty; whoever encodes meanwhile (a
/// `Serialize` that sends) gets a fresh one.
#[inline]
pub(crate) fn take_scratch() -> Vec<u8> {
    let mut frame = SCRATCH.take();
    frame.clear();
    frame
}

/// Gives [`take_scratch`]'s buffer back once its frame was queued (`frame` is then empty,
/// or the queue's spare large buffer). A large buffer stays while large messages keep
/// coming (the queue hands one back for each it takes); after a `small` frame it goes.
#[inline]
pub(crate) fn return_scratch(frame: Vec<u8>, small: bool) {
    if !(small && frame.capacity() > KEEP_SCRATCH) {
        SCRATCH.set(frame);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn an_inline_write_wakes_the_writer_if_the_last_sender_left_meanwhile() {
        let (here, _there) = sys::socketpair().unwrap();
        let shape = Shape::plain("test", 1);
        let shared = Shared::new(
            Socket::new(here),
            Config::new(),
            shape.clone(),
            shape,
            trace::connection("test", "test", -1, None),
        );
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        // As a `Responder`'s push leaves it: the writer taken for an inline write (of the
        // queued hello here). Meanwhile the last `Sender` went: it found the writer busy
        // and the batch held, so it left a kick.
        {
            let mut out = shared.out();
            out.writer = Writer::Running;
            out.senders = 0;
            out.kick = true;
        }
        shared.write_inline(Waker::from(wakes.clone()));
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "the writer must run to end the direction"
        );
        assert!(matches!(shared.out().writer, Writer::Running));
    }
}
