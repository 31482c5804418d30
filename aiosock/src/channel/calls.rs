//! The calls one end has in flight: a table of slots, each waiting for the reply to one
//! call, that the end's receiver fills as replies arrive.
//!
//! # Ids
//!
//! Call ids are 64-bit and handed out in sequence, wrapping around at `u64::MAX`. Slot
//! `id & mask` holds call `id`; the table has at least as many slots as
//! [`Config::max_calls`](crate::Config::max_calls), and a permit (one per slot in use) is
//! taken before a slot is, so a free slot always exists. An id whose slot is busy is
//! skipped, so an id is never handed out while a call with the same id is live, even after
//! wrap-around. A call whose caller gave up after its message was sent keeps its slot
//! (and its permit) until its reply arrives: the late reply is recognised and discarded,
//! never mistaken for the reply to a newer call.
//!
//! # Replies
//!
//! A reply names its call id. It is accepted only if that id is waiting (or was abandoned
//! by its caller); any other id (never used, already answered, a one-way message) is
//! [`Error::UnexpectedReply`]. The reply's payload is decoded, within the receiver's decode
//! budget, as the type the caller asked for, by a function the caller left in its slot; a
//! payload that does not decode is [`Error::BadReply`]. Either error ends the connection,
//! and every call still waiting fails.
//!
//! Once the table has ended (every call failed, and none can start: this end's sending
//! direction ended, for one), replies still in transit are dropped unread, so that what
//! the peer sends after them is still received.
//!
//! A decoded reply is handed over in a box (the table holds replies of every type), an
//! `Option<R>` that the caller empties. Emptied boxes of small types go back to the
//! table, up to [`SPARE_REPLIES`], and the next small reply of the same type is decoded
//! into one, so that a stream of calls allocates nothing for its replies. With no call in
//! flight the table keeps one at most, and none once the connection ended: an idle end
//! holds at most [`SPARE_MAX_SIZE`] bytes of them.

use std::any::Any;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use std::os::fd::OwnedFd;

use crate::error::{CallError, Error};
use crate::wire::{self, Failure, Limits};

/// Replies up to this long are decoded under the table's lock, in one critical section.
const DECODE_UNDER_LOCK: usize = 4096;

/// Emptied reply boxes the table keeps for the next replies, while calls are in flight.
const SPARE_REPLIES: usize = 64;

/// The largest reply box (`Option<R>`) kept for reuse, in bytes.
const SPARE_MAX_SIZE: usize = 64;

/// Decodes the reply to call `id`: with `failed` a [`Failure`], else a value by `decode`.
/// Gives the caller's outcome, and the error that ends the connection if it does not
/// decode. Used for single calls and for streams alike.
pub(crate) fn outcome_of<V>(
    id: u64,
    failed: bool,
    payload: &[u8],
    fds: Vec<OwnedFd>,
    limits: &Limits,
    decode: impl FnOnce(&[u8], Vec<OwnedFd>) -> Result<V, Error>,
) -> (Result<V, CallError>, Option<Error>) {
    let decoded = if failed {
        wire::decode_payload_with::<Failure>(payload, limits.decode_budget, fds, 0)
            .map(|failure| Err(failure.into()))
    } else {
        decode(payload, fds).map(Ok)
    };
    match decoded {
        Ok(outcome) => (outcome, None),
        Err(source) => {
            let error = Error::BadReply {
                id,
                source: Box::new(source),
            };
            let reason = error.to_string();
            (Err(CallError::Failed { reason }), Some(error))
        }
    }
}

/// [`outcome_of`] for a single call's reply, decoded by its slot's `decode` into `spare`
/// if that is an emptied box of the right type.
fn decoded(
    id: u64,
    failed: bool,
    decode: DecodeReply,
    payload: &[u8],
    fds: Vec<OwnedFd>,
    limits: &Limits,
    spare: Option<Reply>,
) -> (Result<Reply, CallError>, Option<Error>) {
    outcome_of(id, failed, payload, fds, limits, |payload, fds| {
        decode(payload, fds, limits, spare)
    })
}

/// A decoded reply: an `Option<R>` of the type `R` its caller asked for, `Some` until the
/// caller takes the value.
pub(crate) type Reply = Box<dyn Any + Send>;

/// Decodes a reply payload, with the descriptors its frame carries, within the limits,
/// into `spare` if that is an emptied box of the right type.
pub(crate) type DecodeReply =
    fn(&[u8], Vec<OwnedFd>, &Limits, Option<Reply>) -> Result<Reply, Error>;

/// The [`DecodeReply`] for replies of type `R`.
pub(crate) fn decode_reply<R: DeserializeOwned + Send + 'static>(
    payload: &[u8],
    fds: Vec<OwnedFd>,
    limits: &Limits,
    spare: Option<Reply>,
) -> Result<Reply, Error> {
    let reply =
        wire::decode_payload_with::<R>(payload, limits.decode_budget, fds, limits.max_shm_len)?;
    Ok(match spare.map(|spare| spare.downcast::<Option<R>>()) {
        Some(Ok(mut reused)) => {
            *reused = Some(reply);
            reused
        }
        // None to reuse, or one of another type (dropped here).
        _ => Box::new(Some(reply)),
    })
}

/// Takes the value out of a reply made by [`decode_reply::<R>`](decode_reply), leaving
/// the box empty for reuse.
fn take_reply<R: 'static>(reply: &mut Reply) -> R {
    match reply.downcast_mut::<Option<R>>().and_then(Option::take) {
        Some(value) => value,
        // The slot's decoder made an `Option<R>`, taken only here, once.
        None => unreachable!("a reply of another type than the call's, or taken twice"),
    }
}

/// Where the replies to the calls of one [`CallStream`](crate::CallStream) go: each is
/// decoded as the stream's reply type and queued for it, under the stream's own lock.
pub(crate) trait Sink: Send + Sync {
    /// Decodes the reply to call `id`, the stream's call `tag` (with `failed`, a
    /// [`Failure`]), and queues the outcome: the error that ends the connection if the
    /// payload does not decode (the stream then gets [`CallError::Failed`]).
    fn deliver(
        &self,
        id: u64,
        tag: u64,
        failed: bool,
        payload: &[u8],
        fds: Vec<OwnedFd>,
        limits: &Limits,
    ) -> Option<Error>;

    /// Queues an outcome that came without a reply.
    fn fail(&self, tag: u64, why: CallError);
}

#[derive(Debug)]
pub(crate) struct Calls {
    table: Mutex<Table>,
    /// Set together with `Table::ended`, to be read without the lock.
    ended: std::sync::atomic::AtomicBool,
    /// Signalled when a slot frees up while calls wait for one, and when the connection
    /// ends.
    room: Notify,
}

struct Table {
    /// A power of two long (or empty before the first call), at most `cap`: it grows as
    /// calls are made, so that an end that makes few calls keeps a small table.
    slots: Box<[Slot]>,
    /// The length the table may grow to: `max` rounded up to a power of two.
    cap: usize,
    /// The next id to try.
    next: u64,
    /// Set once the connection can carry no more replies: why every call fails.
    ended: Option<CallError>,
    /// Slots not free, and the most there may be (`max_calls`).
    in_use: usize,
    max: usize,
    /// Calls waiting for a slot.
    waiting: usize,
    /// Emptied reply boxes, at most [`SPARE_REPLIES`].
    spare: Vec<Reply>,
}

enum Slot {
    Free,
    /// A call waiting for its reply.
    Waiting {
        id: u64,
        decode: DecodeReply,
        waker: Option<Waker>,
    },
    /// The receiver is decoding this call's reply outside the lock.
    Decoding {
        id: u64,
        waker: Option<Waker>,
    },
    /// The outcome, for the caller to take.
    Done {
        id: u64,
        result: Result<Reply, CallError>,
    },
    /// The caller gave up after its message was sent: the reply is still due, and is
    /// discarded when it comes.
    Abandoned {
        id: u64,
    },
    /// A call of a stream: its reply goes to the stream's sink, and the slot is free again
    /// as soon as it is there. Until `sent` (set by [`Calls::sent`] once the message is
    /// queued) the outcome is the pushing caller's: if the connection ends meanwhile, the
    /// slot becomes `Done` for the caller to take, not a failure in the sink, so that a
    /// push that then fails does not also leave an outcome in the stream.
    Streamed {
        id: u64,
        tag: u64,
        sink: Arc<dyn Sink>,
        sent: bool,
    },
}

impl Slot {
    fn id(&self) -> Option<u64> {
        match self {
            Slot::Free => None,
            Slot::Waiting { id, .. }
            | Slot::Decoding { id, .. }
            | Slot::Done { id, .. }
            | Slot::Streamed { id, .. }
            | Slot::Abandoned { id } => Some(*id),
        }
    }
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let live = self.slots.iter().filter(|s| s.id().is_some()).count();
        f.debug_struct("Table")
            .field("slots", &self.slots.len())
            .field("live", &live)
            .field("next", &self.next)
            .field("ended", &self.ended)
            .finish()
    }
}

impl Calls {
    /// A table for at most `max` calls in flight.
    pub(crate) fn new(max: usize) -> Calls {
        Calls::starting_at(max, 0)
    }

    fn starting_at(max: usize, first_id: u64) -> Calls {
        let max = max.max(1);
        Calls {
            table: Mutex::new(Table {
                slots: Box::new([]),
                cap: max.next_power_of_two(),
                next: first_id,
                ended: None,
                in_use: 0,
                max,
                waiting: 0,
                spare: Vec::new(),
            }),
            room: Notify::new(),
            ended: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // Every change under the lock is a single assignment: poisoning means nothing.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`start`](Self::start) if a slot is free now: `Ok(None)` if the table is full. The
    /// slot holds `waker` from the start, so that the caller's first look at the outcome
    /// in the same poll can be skipped (as `Sender::call` does).
    #[inline]
    pub(crate) fn try_start(
        &self,
        decode: DecodeReply,
        waker: &Waker,
    ) -> Result<Option<u64>, CallError> {
        let mut table = self.table();
        if let Some(why) = &table.ended {
            return Err(why.clone());
        }
        if table.in_use < table.max {
            table.in_use += 1;
            let waker = Some(waker.clone());
            return Ok(Some(table.take_slot(|id| Slot::Waiting {
                id,
                decode,
                waker,
            })));
        }
        Ok(None)
    }

    /// Takes a slot for a call whose reply decodes with `decode`, waiting for one while
    /// `max_calls` calls are in flight (or failing with [`CallError::Full`] without
    /// `wait`). Returns the call's id.
    ///
    /// Cancel safe: a permit is only taken together with its slot.
    pub(crate) async fn start(&self, decode: DecodeReply, wait: bool) -> Result<u64, CallError> {
        self.start_with(wait, |id| Slot::Waiting {
            id,
            decode,
            waker: None,
        })
        .await
    }

    /// [`start`](Self::start) for call `tag` of a stream whose replies go to `sink`.
    pub(crate) async fn start_streamed(
        &self,
        tag: u64,
        sink: &Arc<dyn Sink>,
        wait: bool,
    ) -> Result<u64, CallError> {
        {
            // A slot free now: taken without the machinery of waiting for one.
            let mut table = self.table();
            if let Some(why) = &table.ended {
                return Err(why.clone());
            }
            if table.in_use < table.max {
                table.in_use += 1;
                let sink = sink.clone();
                return Ok(table.take_slot(|id| Slot::Streamed {
                    id,
                    tag,
                    sink,
                    sent: false,
                }));
            }
        }
        self.start_with(wait, |id| Slot::Streamed {
            id,
            tag,
            sink: sink.clone(),
            sent: false,
        })
        .await
    }

    /// The message of stream call `id` is queued: from now on its outcome goes to the
    /// stream's sink. `Err` if the connection ended before (the slot is freed; the caller
    /// hands the stream that outcome itself); `Ok` also if the reply already came.
    pub(crate) fn sent(&self, id: u64) -> Result<(), CallError> {
        let mut table = self.table();
        match table.slot(id) {
            Some(Slot::Streamed { sent, .. }) => {
                *sent = true;
                Ok(())
            }
            Some(slot @ Slot::Done { .. }) => {
                let Slot::Done { result, .. } = std::mem::replace(slot, Slot::Free) else {
                    unreachable!("matched above")
                };
                self.freed(table, 1);
                match result {
                    Err(why) => Err(why),
                    Ok(_) => unreachable!("a stream's slot is only done by the end"),
                }
            }
            // The reply came (and went to the sink) before this.
            _ => Ok(()),
        }
    }

    /// Takes a slot made by `slot` from the call's id, waiting for one without `wait`.
    async fn start_with(
        &self,
        wait: bool,
        slot: impl FnOnce(u64) -> Slot,
    ) -> Result<u64, CallError> {
        let mut slot = Some(slot);
        let mut waited = false;
        loop {
            // Registered before the check, so that a slot freed after it is not missed: a
            // `notify_one` reaches a registered waiter rather than a single stored permit.
            let room = self.room.notified();
            let mut room = std::pin::pin!(room);
            room.as_mut().enable();
            {
                let mut table = self.table();
                if waited {
                    table.waiting -= 1;
                }
                if let Some(why) = &table.ended {
                    return Err(why.clone());
                }
                if table.in_use < table.max {
                    table.in_use += 1;
                    let Some(slot) = slot.take() else {
                        unreachable!("a slot is taken once, then the loop returns")
                    };
                    return Ok(table.take_slot(slot));
                }
                if !wait {
                    return Err(CallError::Full);
                }
                table.waiting += 1;
            }
            // Cancel safe: a dropped `Notified` passes a wake-up it got on to the next
            // waiter. The count of waiters is kept right by `Waiting` below.
            let guard = Waiting(self);
            room.await;
            std::mem::forget(guard);
            waited = true;
        }
    }

    /// The caller gave up: before its message was sent (`sent` false) the slot is freed at
    /// once; after, it waits for the reply, which is then discarded.
    pub(crate) fn give_up(&self, id: u64, sent: bool) {
        let mut table = self.table();
        let keep = sent && table.ended.is_none();
        let Some(slot) = table.slot(id) else {
            return;
        };
        match slot {
            Slot::Waiting { .. } | Slot::Decoding { .. } | Slot::Streamed { .. } if keep => {
                *slot = Slot::Abandoned { id };
            }
            _ => {
                *slot = Slot::Free;
                self.freed(table, 1);
            }
        }
    }

    /// `n` slots were freed: calls waiting for one may go on.
    fn freed(&self, mut table: MutexGuard<'_, Table>, n: usize) {
        table.in_use -= n;
        if table.in_use == 0 {
            // Idle: one box is enough for the next call.
            table.spare.truncate(1);
        }
        let waiting = table.waiting;
        drop(table);
        for _ in 0..n.min(waiting) {
            self.room.notify_one();
        }
    }

    /// The outcome of call `id`, whose replies decode as `R`, once there is one; frees the
    /// slot when it returns it.
    pub(crate) fn poll_outcome<R: 'static>(
        &self,
        id: u64,
        cx: &mut Context<'_>,
    ) -> Poll<Result<R, CallError>> {
        let mut table = self.table();
        let ended = table.ended.clone();
        let Some(slot) = table.slot(id) else {
            return Poll::Ready(Err(ended.unwrap_or(CallError::Closed)));
        };
        match slot {
            Slot::Waiting { waker, .. } | Slot::Decoding { waker, .. } => {
                if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Slot::Done { .. } => {
                let Slot::Done { result, .. } = std::mem::replace(slot, Slot::Free) else {
                    unreachable!()
                };
                let keep = table.ended.is_none();
                let outcome = result.map(|mut reply| {
                    let value = take_reply::<R>(&mut reply);
                    if keep
                        && std::mem::size_of::<Option<R>>() <= SPARE_MAX_SIZE
                        && table.spare.len() < SPARE_REPLIES
                    {
                        table.spare.push(reply);
                    }
                    value
                });
                self.freed(table, 1);
                Poll::Ready(outcome)
            }
            Slot::Streamed { .. } => unreachable!("a stream's call is not polled alone"),
            Slot::Abandoned { .. } | Slot::Free => unreachable!("`slot` only finds live ids"),
        }
    }

    /// The receiver got a reply to call `id`: `payload` is the value, or with `failed` a
    /// [`Failure`]. Decodes it as the caller asked, at `per_byte` units of decode budget
    /// per byte, and hands it over.
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedReply`] if no call `id` is waiting or abandoned, and
    /// [`Error::BadReply`] if the payload does not decode (the caller then has
    /// [`CallError::Failed`]). Either ends the connection. Neither once the table has
    /// ended: then every reply is dropped.
    pub(crate) fn complete(
        &self,
        id: u64,
        failed: bool,
        payload: &[u8],
        fds: Vec<OwnedFd>,
        limits: &Limits,
    ) -> Result<(), Error> {
        let mut guard = self.table();
        if guard.ended.is_some() {
            // Every call already failed (this end's sending direction ended, say) and no
            // call can start: a reply still in transit, honest or not, can reach no one
            // and mislead no one. Dropped, so that what the peer sends after it is read.
            return Ok(());
        }
        // Reborrowed once, so that the slot and the spare boxes are borrowed apart.
        let table = &mut *guard;
        let decode = match slot_of(&mut table.slots, id) {
            Some(slot @ Slot::Waiting { .. }) => {
                let Slot::Waiting { decode, waker, .. } = std::mem::replace(slot, Slot::Free)
                else {
                    unreachable!("matched above")
                };
                // While the reply is decoded the slot says so: if a `Deserialize` panics,
                // the receiver unwinds, and `end` still fails the caller.
                *slot = Slot::Decoding { id, waker };
                if payload.len() <= DECODE_UNDER_LOCK && fds.is_empty() {
                    // A small reply: decoded in the same critical section, into a spare
                    // box if there is one.
                    let spare = table.spare.pop();
                    let (result, error) = decoded(id, failed, decode, payload, fds, limits, spare);
                    let waker = match std::mem::replace(slot, Slot::Done { id, result }) {
                        Slot::Decoding { waker, .. } => waker,
                        _ => None,
                    };
                    drop(guard);
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                    return error.map_or(Ok(()), Err);
                }
                decode
            }
            Some(slot @ Slot::Abandoned { .. }) => {
                // The caller is gone: the late reply has nowhere to go.
                *slot = Slot::Free;
                self.freed(guard, 1);
                return Ok(());
            }
            Some(slot @ Slot::Streamed { .. }) => {
                let Slot::Streamed { tag, sink, .. } = std::mem::replace(slot, Slot::Free) else {
                    unreachable!("matched above")
                };
                self.freed(guard, 1);
                // Decoded under the stream's lock, not the table's. Should a `Deserialize`
                // panic, the stream still learns that this call failed.
                let mut pending = Undelivered {
                    sink: &*sink,
                    tag,
                    armed: true,
                };
                let error = sink.deliver(id, tag, failed, payload, fds, limits);
                pending.armed = false;
                return error.map_or(Ok(()), Err);
            }
            _ => return Err(Error::UnexpectedReply { id }),
        };
        drop(guard);
        // Decode a large reply outside the lock: it does not hold up other calls.
        // So is one with descriptors, whose checks may make system calls.
        let (result, error) = decoded(id, failed, decode, payload, fds, limits, None);
        let mut table = self.table();
        if let Some(slot) = table.slot(id) {
            match std::mem::replace(slot, Slot::Free) {
                Slot::Decoding { waker, .. } => {
                    *slot = Slot::Done { id, result };
                    drop(table);
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                }
                Slot::Abandoned { .. } => self.freed(table, 1),
                // The connection ended meanwhile: the caller already has its error.
                other => *slot = other,
            }
        }
        error.map_or(Ok(()), Err)
    }

    /// The connection can carry no more replies: every call waiting fails with `why`, and
    /// so does every call started from now on. Only the first reason counts.
    pub(crate) fn end(&self, why: CallError) {
        let mut table = self.table();
        if table.ended.is_some() {
            return;
        }
        table.ended = Some(why.clone());
        table.spare = Vec::new();
        self.ended.store(true, std::sync::atomic::Ordering::Release);
        let mut freed = 0;
        let mut wakers = Vec::new();
        let mut streamed = Vec::new();
        for slot in table.slots.iter_mut() {
            match slot {
                Slot::Streamed { sent: true, .. } => {
                    if let Slot::Streamed { tag, sink, .. } = std::mem::replace(slot, Slot::Free) {
                        streamed.push((tag, sink));
                    }
                    freed += 1;
                }
                // Not queued yet: the push that holds it learns the end itself.
                Slot::Streamed {
                    id, sent: false, ..
                } => {
                    *slot = Slot::Done {
                        id: *id,
                        result: Err(why.clone()),
                    };
                }
                Slot::Waiting { id, waker, .. } | Slot::Decoding { id, waker } => {
                    wakers.extend(waker.take());
                    *slot = Slot::Done {
                        id: *id,
                        result: Err(why.clone()),
                    };
                }
                Slot::Abandoned { .. } => {
                    *slot = Slot::Free;
                    freed += 1;
                }
                Slot::Free | Slot::Done { .. } => {}
            }
        }
        table.in_use -= freed;
        drop(table);
        // Calls waiting for a slot fail too.
        self.room.notify_waiters();
        for waker in wakers {
            waker.wake();
        }
        for (tag, sink) in streamed {
            sink.fail(tag, why.clone());
        }
    }

    /// Whether the connection can carry no more replies.
    pub(crate) fn is_ended(&self) -> bool {
        self.ended.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Calls in flight: waiting for a reply, or abandoned with the reply still due.
    #[cfg(test)]
    fn live(&self) -> usize {
        let table = self.table();
        table
            .slots
            .iter()
            .filter(|s| !matches!(s, Slot::Free | Slot::Done { .. }))
            .count()
    }
}

/// A stream's reply while it is decoded: if decoding unwinds (a `Deserialize` that
/// panics), the stream still gets an outcome for the call.
struct Undelivered<'a> {
    sink: &'a dyn Sink,
    tag: u64,
    armed: bool,
}

impl Drop for Undelivered<'_> {
    fn drop(&mut self) {
        if self.armed {
            let reason = "decoding the reply panicked".to_string();
            self.sink.fail(self.tag, CallError::Failed { reason });
        }
    }
}

/// A call waiting for a slot: if its future is dropped, it no longer counts as waiting.
struct Waiting<'a>(&'a Calls);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.table().waiting -= 1;
    }
}

impl Table {
    /// Takes a free slot for a new call (one is free: `in_use` was below `max`, and there
    /// are at least `max` slots) and returns its id, skipping ids whose slot is busy.
    fn take_slot(&mut self, make: impl FnOnce(u64) -> Slot) -> u64 {
        // At most half full below the largest size, so that a free slot is found soon.
        if 2 * self.in_use > self.slots.len() && self.slots.len() < self.cap {
            self.grow();
        }
        let mask = self.slots.len() as u64 - 1;
        loop {
            let id = self.next;
            self.next = id.wrapping_add(1);
            // `id & mask` is below the table's length.
            let slot = &mut self.slots[(id & mask) as usize];
            if let Slot::Free = slot {
                *slot = make(id);
                return id;
            }
        }
    }

    /// Doubles the table (to at least 4 slots, at most `cap`), moving each live call to
    /// its slot in the larger table: two live ids differ in their low bits (the smaller
    /// table's mask), so they differ under the larger mask too.
    fn grow(&mut self) {
        let len = (2 * self.slots.len()).max(4).min(self.cap);
        let mut slots: Box<[Slot]> = (0..len).map(|_| Slot::Free).collect();
        let mask = len as u64 - 1;
        for slot in std::mem::take(&mut self.slots) {
            if let Some(id) = slot.id() {
                slots[(id & mask) as usize] = slot;
            }
        }
        self.slots = slots;
    }

    /// The slot of live call `id`, if there is one.
    fn slot(&mut self, id: u64) -> Option<&mut Slot> {
        slot_of(&mut self.slots, id)
    }
}

/// The slot of live call `id` in `slots` (a table's, a power of two long), if there is one.
fn slot_of(slots: &mut [Slot], id: u64) -> Option<&mut Slot> {
    if slots.is_empty() {
        return None;
    }
    let mask = slots.len() as u64 - 1;
    let slot = &mut slots[(id & mask) as usize];
    (slot.id() == Some(id)).then_some(slot)
}

impl From<Failure> for CallError {
    fn from(failure: Failure) -> CallError {
        match failure {
            Failure::Panicked(message) => CallError::Panicked { message },
            Failure::Unanswered => CallError::Unanswered,
            Failure::BadReply(reason) => CallError::BadReply { reason },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::Waker;

    use super::*;

    fn start_now(calls: &Calls, wait: bool) -> Result<u64, CallError> {
        let mut cx = Context::from_waker(Waker::noop());
        match pin!(calls.start(decode_reply::<u64>, wait)).poll(&mut cx) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(CallError::Full),
        }
    }

    #[test]
    fn the_table_grows_with_the_calls_in_flight_and_keeps_them() {
        let calls = Calls::starting_at(1024, u64::MAX - 40);
        assert_eq!(
            calls.table().slots.len(),
            0,
            "nothing before the first call"
        );
        let ids: Vec<u64> = (0..600)
            .map(|_| start_now(&calls, false).unwrap())
            .collect();
        let len = calls.table().slots.len();
        assert!((1024..=1024).contains(&len), "{len} slots for 600 calls");
        // Every call still finds its slot after the moves, across the wrap-around.
        for (i, &id) in ids.iter().enumerate().rev() {
            calls
                .complete(
                    id,
                    false,
                    &payload(&(i as u64)),
                    Vec::new(),
                    &Limits::new(1 << 20),
                )
                .unwrap();
            assert!(matches!(outcome(&calls, id), Poll::Ready(Ok(_))));
        }
        let small = Calls::new(1024);
        start_now(&small, false).unwrap();
        assert_eq!(small.table().slots.len(), 4, "one call, a small table");
    }

    fn payload(value: &impl serde::Serialize) -> Vec<u8> {
        wire::encode_payload(value).unwrap()
    }

    fn outcome(calls: &Calls, id: u64) -> Poll<Result<u64, CallError>> {
        calls.poll_outcome::<u64>(id, &mut Context::from_waker(Waker::noop()))
    }

    fn reply_u64(calls: &Calls, id: u64) -> u64 {
        match outcome(calls, id) {
            Poll::Ready(Ok(reply)) => reply,
            other => panic!("no reply for {id}: {other:?}"),
        }
    }

    #[test]
    fn replies_reach_their_callers_out_of_order() {
        let calls = Calls::new(4);
        let a = start_now(&calls, true).unwrap();
        let b = start_now(&calls, true).unwrap();
        assert_ne!(a, b);
        assert!(outcome(&calls, a).is_pending());
        calls
            .complete(
                b,
                false,
                &payload(&20u64),
                Vec::new(),
                &Limits::new(1 << 20),
            )
            .unwrap();
        calls
            .complete(
                a,
                false,
                &payload(&10u64),
                Vec::new(),
                &Limits::new(1 << 20),
            )
            .unwrap();
        assert_eq!((reply_u64(&calls, a), reply_u64(&calls, b)), (10, 20));
        assert_eq!(calls.live(), 0);
    }

    #[test]
    fn a_full_table_refuses_try_and_frees_on_reply() {
        let calls = Calls::new(2);
        let a = start_now(&calls, false).unwrap();
        let _b = start_now(&calls, false).unwrap();
        assert_eq!(start_now(&calls, false), Err(CallError::Full));
        calls
            .complete(a, false, &payload(&1u64), Vec::new(), &Limits::new(1 << 20))
            .unwrap();
        // The slot is freed when the caller takes its reply.
        assert_eq!(start_now(&calls, false), Err(CallError::Full));
        assert_eq!(reply_u64(&calls, a), 1);
        assert!(start_now(&calls, false).is_ok());
    }

    #[test]
    fn ids_skip_live_calls_across_wrap_around() {
        let calls = Calls::starting_at(4, u64::MAX - 1);
        let first = start_now(&calls, true).unwrap();
        let second = start_now(&calls, true).unwrap();
        assert_eq!((first, second), (u64::MAX - 1, u64::MAX));
        // Free `second` only: the table keeps `first` live while ids wrap to 0, 1, 2...
        calls
            .complete(
                second,
                false,
                &payload(&0u64),
                Vec::new(),
                &Limits::new(1 << 20),
            )
            .unwrap();
        reply_u64(&calls, second);
        let mut seen = vec![first];
        for _ in 0..3 {
            let id = start_now(&calls, true).unwrap();
            assert!(!seen.contains(&id), "{id} reused while live: {seen:?}");
            seen.push(id);
        }
        // 0, 1 and then 3: 2 shares its slot with the live u64::MAX - 1.
        assert_eq!(&seen[1..], [0, 1, 3]);
        for id in seen {
            calls
                .complete(id, false, &payload(&id), Vec::new(), &Limits::new(1 << 20))
                .unwrap();
            assert_eq!(reply_u64(&calls, id), id);
        }
    }

    #[test]
    fn every_live_id_is_distinct_over_many_wraps() {
        let calls = Calls::starting_at(8, u64::MAX - 100);
        let mut live: Vec<u64> = Vec::new();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..10_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if live.len() < 8 && !rng.is_multiple_of(3) {
                let id = start_now(&calls, false).unwrap();
                assert!(!live.contains(&id));
                live.push(id);
            } else if !live.is_empty() {
                let id = live.swap_remove((rng as usize / 3) % live.len());
                calls
                    .complete(id, false, &payload(&id), Vec::new(), &Limits::new(1 << 20))
                    .unwrap();
                assert_eq!(reply_u64(&calls, id), id);
            }
        }
    }

    #[test]
    fn unknown_repeated_and_wrong_type_replies_are_errors() {
        let calls = Calls::new(4);
        assert!(matches!(
            calls.complete(
                77,
                false,
                &payload(&1u64),
                Vec::new(),
                &Limits::new(1 << 20)
            ),
            Err(Error::UnexpectedReply { id: 77 })
        ));
        let a = start_now(&calls, true).unwrap();
        calls
            .complete(a, false, &payload(&1u64), Vec::new(), &Limits::new(1 << 20))
            .unwrap();
        // Answered twice: the second finds nothing waiting, even before the caller looked.
        assert!(matches!(
            calls.complete(a, false, &payload(&1u64), Vec::new(), &Limits::new(1 << 20)),
            Err(Error::UnexpectedReply { .. })
        ));
        reply_u64(&calls, a);
        let b = start_now(&calls, true).unwrap();
        let err = calls
            .complete(
                b,
                false,
                &payload(&"not a number"),
                Vec::new(),
                &Limits::new(1 << 20),
            )
            .unwrap_err();
        assert!(
            matches!(err, Error::BadReply { id, .. } if id == b),
            "{err}"
        );
        assert!(matches!(
            outcome(&calls, b),
            Poll::Ready(Err(CallError::Failed { .. }))
        ));
    }

    #[tokio::test]
    async fn calls_waiting_for_room_start_as_slots_free() {
        let calls = std::sync::Arc::new(Calls::new(2));
        let a = start_now(&calls, true).unwrap();
        let b = start_now(&calls, true).unwrap();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let calls = calls.clone();
                tokio::spawn(async move { calls.start(decode_reply::<u64>, true).await })
            })
            .collect();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            waiters.iter().all(|w| !w.is_finished()),
            "the table is full"
        );
        // Both slots free at once: both waiters must start (one stored wake-up would not do).
        calls
            .complete(a, false, &payload(&1u64), Vec::new(), &Limits::new(1 << 20))
            .unwrap();
        calls
            .complete(b, false, &payload(&2u64), Vec::new(), &Limits::new(1 << 20))
            .unwrap();
        reply_u64(&calls, a);
        reply_u64(&calls, b);
        for waiter in waiters {
            let id = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
                .await
                .expect("a waiter was not woken")
                .unwrap()
                .unwrap();
            assert!(id != a && id != b);
        }
        // A waiter whose future is dropped does not count as waiting any more.
        let mut dropped = Box::pin(calls.start(decode_reply::<u64>, true));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(dropped.as_mut().poll(&mut cx).is_pending());
        drop(dropped);
        assert_eq!(calls.table().waiting, 0);
    }

    #[test]
    fn emptied_reply_boxes_are_reused_by_type_and_bounded() {
        let calls = Calls::new(2 * SPARE_REPLIES);
        let limits = Limits::new(1 << 20);
        let spare = |calls: &Calls| calls.table().spare.len();
        // A stream of calls, one at a time: after the first reply, every reply is decoded
        // into the box the one before left.
        for n in 0..10u64 {
            let id = start_now(&calls, false).unwrap();
            calls
                .complete(id, false, &payload(&(n * n)), Vec::new(), &limits)
                .unwrap();
            assert_eq!(spare(&calls), 0, "the spare box was taken for reply {n}");
            assert_eq!(reply_u64(&calls, id), n * n);
            assert_eq!(spare(&calls), 1, "reply {n}'s box came back");
        }
        // A reply of another type does not take the `u64` box's place as a `u64`.
        let id = start_str(&calls);
        calls
            .complete(id, false, &payload(&"text"), Vec::new(), &limits)
            .unwrap();
        match calls.poll_outcome::<String>(id, &mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(text)) => assert_eq!(text, "text"),
            other => panic!("{other:?}"),
        }
        let id = start_now(&calls, false).unwrap();
        calls
            .complete(id, false, &payload(&7u64), Vec::new(), &limits)
            .unwrap();
        assert_eq!(reply_u64(&calls, id), 7);
        // Many replies taken at once: the table keeps at most `SPARE_REPLIES` boxes.
        let ids: Vec<u64> = (0..2 * SPARE_REPLIES)
            .map(|_| start_now(&calls, false).unwrap())
            .collect();
        for &id in &ids {
            calls
                .complete(id, false, &payload(&id), Vec::new(), &limits)
                .unwrap();
        }
        let last = ids.len() - 1;
        for &id in &ids[..last] {
            assert_eq!(reply_u64(&calls, id), id);
        }
        assert_eq!(
            spare(&calls),
            SPARE_REPLIES,
            "at most this many, while busy"
        );
        assert_eq!(reply_u64(&calls, ids[last]), ids[last]);
        assert_eq!(spare(&calls), 1, "idle, the table keeps one");
        // A large reply type's boxes are not kept, and an ended table keeps none.
        let id = start_large(&calls);
        calls
            .complete(id, false, &payload(&[7u64; 16]), Vec::new(), &limits)
            .unwrap();
        match calls.poll_outcome::<[u64; 16]>(id, &mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(values)) => assert_eq!(values, [7; 16]),
            other => panic!("{other:?}"),
        }
        // Its decode took the one `u64` box (of the wrong type, so dropped) and its own
        // box was not kept.
        assert_eq!(
            spare(&calls),
            0,
            "a box of {} bytes was kept",
            std::mem::size_of::<Option<[u64; 16]>>()
        );
        calls.end(CallError::Closed);
        assert_eq!(spare(&calls), 0);
    }

    fn start_large(calls: &Calls) -> u64 {
        let mut cx = Context::from_waker(Waker::noop());
        match pin!(calls.start(decode_reply::<[u64; 16]>, false)).poll(&mut cx) {
            Poll::Ready(result) => result.unwrap(),
            Poll::Pending => panic!("the table is full"),
        }
    }

    fn start_str(calls: &Calls) -> u64 {
        let mut cx = Context::from_waker(Waker::noop());
        match pin!(calls.start(decode_reply::<String>, false)).poll(&mut cx) {
            Poll::Ready(result) => result.unwrap(),
            Poll::Pending => panic!("the table is full"),
        }
    }

    #[test]
    fn failures_reach_the_caller() {
        let calls = Calls::new(4);
        let a = start_now(&calls, true).unwrap();
        let failure = payload(&Failure::Panicked("boom".into()));
        calls
            .complete(a, true, &failure, Vec::new(), &Limits::new(1 << 20))
            .unwrap();
        assert!(matches!(
            outcome(&calls, a),
            Poll::Ready(Err(CallError::Panicked { message })) if message == "boom"
        ));
    }

    #[test]
    fn abandoned_calls_keep_their_slot_until_the_reply() {
        let calls = Calls::new(1);
        let a = start_now(&calls, true).unwrap();
        calls.give_up(a, true);
        assert_eq!(calls.live(), 1);
        assert_eq!(start_now(&calls, false), Err(CallError::Full));
        // The late reply is discarded, and frees the slot.
        calls
            .complete(a, false, &payload(&5u64), Vec::new(), &Limits::new(1 << 20))
            .unwrap();
        assert_eq!(calls.live(), 0);
        let b = start_now(&calls, false).unwrap();
        assert_ne!(a, b);
        // A call given up before it was sent frees its slot at once.
        calls.give_up(b, false);
        assert!(start_now(&calls, false).is_ok());
    }

    #[test]
    fn replies_in_transit_after_the_end_are_dropped() {
        let calls = Calls::new(4);
        let limits = Limits::new(1 << 20);
        let a = start_now(&calls, true).unwrap();
        let b = start_now(&calls, true).unwrap();
        calls.end(CallError::Closed);
        assert!(matches!(
            outcome(&calls, a),
            Poll::Ready(Err(CallError::Closed))
        ));
        // The peer answers both, and an id it never had: no error, nothing delivered.
        for id in [a, b, 99] {
            calls
                .complete(id, false, &payload(&1u64), Vec::new(), &limits)
                .unwrap();
        }
        assert!(matches!(
            outcome(&calls, b),
            Poll::Ready(Err(CallError::Closed))
        ));
    }

    #[test]
    fn ending_fails_waiting_and_new_calls() {
        let calls = Calls::new(2);
        let a = start_now(&calls, true).unwrap();
        let b = start_now(&calls, true).unwrap();
        calls.give_up(b, true);
        calls.end(CallError::Closed);
        assert!(matches!(
            outcome(&calls, a),
            Poll::Ready(Err(CallError::Closed))
        ));
        assert_eq!(start_now(&calls, true), Err(CallError::Closed));
        assert_eq!(calls.live(), 0);
        // Only the first reason counts.
        calls.end(CallError::Unanswered);
        assert_eq!(start_now(&calls, false), Err(CallError::Closed));
    }

    /// A sink that records outcomes, and panics decoding the reply to tag 13.
    #[derive(Default)]
    struct Recording(Mutex<Vec<(u64, Result<(), CallError>)>>);

    impl Sink for Recording {
        fn deliver(
            &self,
            _: u64,
            tag: u64,
            _: bool,
            _: &[u8],
            _: Vec<OwnedFd>,
            _: &Limits,
        ) -> Option<Error> {
            assert_ne!(tag, 13, "a Deserialize that panics");
            self.0.lock().unwrap().push((tag, Ok(())));
            None
        }

        fn fail(&self, tag: u64, why: CallError) {
            self.0.lock().unwrap().push((tag, Err(why)));
        }
    }

    fn start_streamed_now(calls: &Calls, tag: u64, sink: &Arc<dyn Sink>) -> u64 {
        let mut cx = Context::from_waker(Waker::noop());
        match pin!(calls.start_streamed(tag, sink, false)).poll(&mut cx) {
            Poll::Ready(result) => result.unwrap(),
            Poll::Pending => panic!("no slot"),
        }
    }

    #[test]
    fn every_streamed_call_gets_one_outcome_even_if_its_decoding_panics() {
        let calls = Calls::new(8);
        let recording = Arc::new(Recording::default());
        let sink: Arc<dyn Sink> = recording.clone();
        let ids: Vec<u64> = [12, 13, 14]
            .iter()
            .map(|&tag| start_streamed_now(&calls, tag, &sink))
            .collect();
        // Their messages are queued.
        for &id in &ids {
            calls.sent(id).unwrap();
        }
        let limits = Limits::new(1 << 20);
        calls
            .complete(ids[0], false, &payload(&0u64), Vec::new(), &limits)
            .unwrap();
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            calls.complete(ids[1], false, &payload(&0u64), Vec::new(), &limits)
        }));
        assert!(unwound.is_err(), "the decoding panicked");
        // The slots of answered calls are free at once; the third is still in flight.
        assert_eq!(calls.table().in_use, 1);
        calls.end(CallError::Closed);
        assert_eq!(calls.table().in_use, 0);
        let got = recording.0.lock().unwrap().clone();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], (12, Ok(())));
        assert!(
            matches!(&got[1], (13, Err(CallError::Failed { .. }))),
            "{got:?}"
        );
        assert_eq!(got[2], (14, Err(CallError::Closed)));
        // A reply after the end reaches no one.
        calls
            .complete(ids[2], false, &payload(&0u64), Vec::new(), &limits)
            .unwrap();
        assert_eq!(recording.0.lock().unwrap().len(), 3);
    }

    #[test]
    fn a_streamed_call_not_queued_when_the_connection_ends_gets_its_outcome_once() {
        let calls = Calls::new(8);
        let recording = Arc::new(Recording::default());
        let sink: Arc<dyn Sink> = recording.clone();
        // Its push fails afterwards (the message could not be queued): it gives up, and
        // the stream gets nothing, since the push returns the error.
        let failing = start_streamed_now(&calls, 1, &sink);
        // Its message was queued just before the end: the push learns the end from
        // `sent` and hands it to the stream itself.
        let queued = start_streamed_now(&calls, 2, &sink);
        calls.end(CallError::Closed);
        assert!(
            recording.0.lock().unwrap().is_empty(),
            "the end left both to their pushes"
        );
        assert_eq!(calls.table().in_use, 2, "held until their pushes return");
        calls.give_up(failing, false);
        assert_eq!(calls.sent(queued), Err(CallError::Closed));
        assert_eq!(calls.table().in_use, 0);
        assert!(recording.0.lock().unwrap().is_empty());
        // A reply that came before `sent` went to the stream, and `sent` adds nothing.
        let calls = Calls::new(8);
        let early = start_streamed_now(&calls, 3, &sink);
        let limits = Limits::new(1 << 20);
        calls
            .complete(early, false, &payload(&0u64), Vec::new(), &limits)
            .unwrap();
        assert_eq!(calls.sent(early), Ok(()));
        assert_eq!(*recording.0.lock().unwrap(), vec![(3, Ok(()))]);
        assert_eq!(calls.table().in_use, 0);
    }
}
