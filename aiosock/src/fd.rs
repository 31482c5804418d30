//! [`Fd`]: a file descriptor as a message field, and the context that carries descriptors
//! between a message's serde code and the frame it travels in.
//!
//! A message is encoded and decoded by serde, which knows nothing of descriptors. So
//! while an end encodes a message, a collector is installed for the thread: each
//! descriptor the message holds ([`Fd`], a channel end, a [`Shm`](crate::Shm)) puts a
//! duplicate of itself into it and writes only its index. The frame then carries the
//! collected descriptors (`SCM_RIGHTS`, with its first byte) and announces their count in
//! its header. While an end decodes a frame, the descriptors that came with it are
//! installed the same way, and each field takes its own by index. Every descriptor must be
//! taken exactly once: an index past the frame's descriptors, one taken twice, or one left
//! over is [`Error::Fds`](crate::Error::Fds), and whatever was not taken is closed.
//!
//! Duplicates are sent, not the message's own descriptors, because serde encodes from a
//! shared reference: the message keeps its descriptors, so a message that cannot be sent
//! comes back whole inside the error. The exception is a variant's own [`Fd`] fields in
//! `send` and `try_send`: their descriptors are listed before the encode
//! ([`sys::Lendable`](crate::sys::Lendable)), and the frame passes them as they are, since
//! the message is then kept in the queue, untouched, until the kernel has them (see
//! [`sys::Holding`](crate::sys::Holding)).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::FdError;
use crate::sys;

/// A file descriptor that travels inside a message.
///
/// Put it in a variant's field, and the descriptor travels with the message's frame
/// (`SCM_RIGHTS` over the Unix socket): the peer receives its own descriptor for the same
/// open file, socket or pipe (close-on-exec), as if it had been duplicated into it. Use
/// it to hand a worker a file it could not open itself, a connected socket, or one end of
/// a pipe.
///
/// A message that cannot be sent comes back inside the error with its descriptors. A
/// variant's own `Fd` fields are passed to the kernel as they are by
/// [`Sender::send`](crate::Sender::send) and [`Sender::try_send`](crate::Sender::try_send),
/// the message staying queued until they are (no `dup` per descriptor); anywhere else (a
/// call's arguments or reply, an `Fd` inside another type) the frame carries a duplicate,
/// closed once it is in the kernel. Descriptors travel only between local processes: an end over TCP refuses
/// a message holding one ([`InvalidMessage::FdsNotCarried`](crate::InvalidMessage::FdsNotCarried)).
///
/// Limits: the kernel passes at most 253 descriptors with one message, and the receiver
/// accepts at most [`Config::max_fds_per_frame`](crate::Config::max_fds_per_frame) per
/// message and [`Config::max_fds`](crate::Config::max_fds) received and not yet delivered.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Seek, Write};
///
/// #[aiosock::protocol]
/// #[derive(Debug)]
/// enum Job {
///     Read { file: aiosock::Fd },
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (parent, worker) = aiosock::pair::<Job, Job>()?;
/// let (tx, _) = parent.into_split();
/// let (_, mut rx) = worker.into_split();
///
/// let mut file = tempfile()?;
/// file.write_all(b"opened by the parent")?;
/// file.rewind()?;
/// tx.send(Job::Read { file: file.into() }).await?;
///
/// let Some(Job::Read { file }) = rx.recv().await? else { panic!("a job") };
/// let mut text = String::new();
/// std::fs::File::from(file).read_to_string(&mut text)?;
/// assert_eq!(text, "opened by the parent");
/// # Ok(())
/// # }
/// # fn tempfile() -> std::io::Result<std::fs::File> {
/// #     let path = std::env::temp_dir().join(format!("aiosock-fd-doc-{}", std::process::id()));
/// #     let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
/// #     std::fs::remove_file(&path)?;
/// #     Ok(file)
/// # }
/// ```
pub struct Fd(OwnedFd);

impl Fd {
    /// Wraps a descriptor (an `OwnedFd`, a `File`, a socket: anything that converts into
    /// an `OwnedFd`).
    pub fn new(fd: impl Into<OwnedFd>) -> Fd {
        Fd(fd.into())
    }

    /// A second `Fd` for the same open file (`dup`, close-on-exec).
    ///
    /// # Errors
    ///
    /// If the process is out of descriptors.
    pub fn try_clone(&self) -> std::io::Result<Fd> {
        self.0.try_clone().map(Fd)
    }

    /// The descriptor.
    pub fn into_owned_fd(self) -> OwnedFd {
        self.0
    }
}

impl fmt::Debug for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Fd").field(&self.0.as_raw_fd()).finish()
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl IntoRawFd for Fd {
    fn into_raw_fd(self) -> RawFd {
        self.0.into_raw_fd()
    }
}

macro_rules! conversions {
    ($($ty:ty),* $(,)?) => {$(
        impl From<$ty> for Fd {
            fn from(value: $ty) -> Fd {
                Fd(OwnedFd::from(value))
            }
        }

        impl From<Fd> for $ty {
            fn from(fd: Fd) -> $ty {
                <$ty>::from(fd.0)
            }
        }
    )*};
}

conversions!(
    OwnedFd,
    File,
    std::os::unix::net::UnixStream,
    std::os::unix::net::UnixListener,
    std::os::unix::net::UnixDatagram,
    std::net::TcpStream,
    std::net::TcpListener,
    std::net::UdpSocket,
    std::process::ChildStdin,
    std::process::ChildStdout,
    std::process::ChildStderr,
    std::io::PipeReader,
    std::io::PipeWriter,
);

impl Serialize for Fd {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let index = match lend(self) {
            Some(index) => index,
            None => attach(self.0.as_fd()),
        };
        serializer.serialize_u32(index.map_err(S::Error::custom)?)
    }
}

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fd, D::Error> {
        let index = u32::deserialize(deserializer)?;
        claim(index).map(Fd).map_err(D::Error::custom)
    }
}

thread_local! {
    /// Descriptors collected while a message is encoded on this thread, and the error of
    /// the first that could not be duplicated: `Some` only in [`Phase::Holding`].
    static OUTGOING: RefCell<Option<Collected>> = const { RefCell::new(None) };
    /// Whether a message is being encoded on this thread, and whether `OUTGOING` holds
    /// anything for it.
    static ENCODING: Cell<Phase> = const { Cell::new(Phase::Idle) };
    /// Descriptors handed out while a frame is decoded on this thread: `Some` only in
    /// [`Phase::Holding`].
    static INCOMING: RefCell<Option<Incoming>> = const { RefCell::new(None) };
    /// Whether a frame is being decoded on this thread, and whether `INCOMING` holds its
    /// descriptors.
    static DECODING: Cell<Phase> = const { Cell::new(Phase::Idle) };
    /// While a frame is decoded: the largest shared-memory buffer the receiver accepts.
    static MAX_SHM_LEN: Cell<u64> = const { Cell::new(0) };
}

/// Where this thread is with the message it encodes, or the frame it decodes.
///
/// Most messages carry no descriptors, so the common path touches only these `Cell`s
/// (a plain thread-local access): the `RefCell`s, whose contents have destructors, are
/// filled only when a field attaches or claims a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not encoding (decoding): a descriptor field refuses.
    Idle,
    /// Encoding (decoding), with nothing in the `RefCell` yet.
    Plain,
    /// Encoding (decoding), and the `RefCell` holds the message's (frame's) descriptors.
    Holding,
}

/// The descriptors of the frame being decoded, and the first problem with them.
struct Incoming {
    slots: Vec<Option<OwnedFd>>,
    problem: Option<FdError>,
}

/// What a message's fields attached while it was encoded.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    /// The duplicates, in index order.
    pub(crate) fds: Vec<OwnedFd>,
    /// Why a descriptor could not be duplicated (the process is out of descriptors).
    pub(crate) failure: Option<std::io::Error>,
    /// The message's descriptor fields that may be passed as they are ([`lending`]).
    lendable: Vec<sys::Lendable>,
    /// The descriptors passed as they are, each with its index among the frame's (the
    /// duplicates take the other indices, in order).
    pub(crate) lent: Vec<(u32, RawFd)>,
}

impl Collected {
    /// The frame's descriptors so far: duplicated and passed as they are.
    fn count(&self) -> usize {
        self.fds.len() + self.lent.len()
    }
}

/// One message being encoded on this thread. Dropping it (also when a `Serialize`
/// panics) closes what was collected and not taken, and puts back the collector of a
/// message that was being encoded before (a `Serialize` that sends a message of its own).
/// Only that nested case saves anything: the common one costs a few `Cell` accesses.
struct Encoding {
    /// The phase and collector of the encode this one is nested in.
    outer: Option<Box<(Phase, Option<Collected>)>>,
}

impl Encoding {
    #[inline]
    fn begin() -> Encoding {
        let outer = match ENCODING.replace(Phase::Plain) {
            Phase::Idle => None,
            phase => Some(Box::new((phase, taken_collected(phase)))),
        };
        Encoding { outer }
    }

    /// What the message's fields attached.
    #[inline]
    fn finish(&mut self) -> Collected {
        taken_collected(ENCODING.replace(Phase::Plain)).unwrap_or_default()
    }
}

impl Drop for Encoding {
    #[inline]
    fn drop(&mut self) {
        drop(self.finish());
        match self.outer.take() {
            None => ENCODING.set(Phase::Idle),
            Some(outer) => {
                let (phase, collected) = *outer;
                if collected.is_some() {
                    OUTGOING.with(|cell| *cell.borrow_mut() = collected);
                }
                ENCODING.set(phase);
            }
        }
    }
}

/// Takes what `OUTGOING` holds in `phase` (out of line: only `Holding` has anything).
#[inline]
fn taken_collected(phase: Phase) -> Option<Collected> {
    #[inline(never)]
    fn take() -> Option<Collected> {
        OUTGOING.with(|cell| cell.borrow_mut().take())
    }
    match phase {
        Phase::Holding => take(),
        Phase::Idle | Phase::Plain => None,
    }
}

/// Runs `encode` with a fresh collector installed: its result and what the message's
/// fields attached. A collector that was installed before (a `Serialize` that sends a
/// message of its own) is restored after.
#[inline]
pub(crate) fn collecting<R>(encode: impl FnOnce() -> R) -> (R, Collected) {
    if ENCODING.get() == Phase::Idle {
        // Not nested in another encode: nothing to save or restore.
        let plain = Plain::begin();
        let result = encode();
        return (result, plain.collected());
    }
    let mut encoding = Encoding::begin();
    let result = encode();
    let collected = encoding.finish();
    (result, collected)
}

/// [`collecting`] for a message whose descriptor fields `lendable` are passed as they are
/// (the message stays queued until the kernel has them): an [`Fd`] that is one of them
/// attaches itself instead of a duplicate ([`Collected::lent`]). Out of line: only
/// messages with descriptor fields come here.
#[inline(never)]
pub(crate) fn lending<R>(lendable: &[sys::Lendable], encode: impl FnOnce() -> R) -> (R, Collected) {
    collecting(|| {
        if !lendable.is_empty() {
            let collected = Collected {
                lendable: lendable.to_vec(),
                ..Collected::default()
            };
            OUTGOING.with(|cell| *cell.borrow_mut() = Some(collected));
            ENCODING.set(Phase::Holding);
        }
        encode()
    })
}

/// While a message is encoded by [`lending`]: attaches `fd` itself if it is one of the
/// message's listed descriptor fields, and returns its index; `None` otherwise (it is
/// duplicated, see [`attach`]).
fn lend(fd: &Fd) -> Option<Result<u32, String>> {
    if ENCODING.get() != Phase::Holding {
        return None;
    }
    OUTGOING.with(|cell| {
        let mut collected = cell.borrow_mut();
        let collected = collected.as_mut()?;
        let field = collected.lendable.iter().find(|field| field.is(fd))?;
        let raw = field.raw();
        Some(match u32::try_from(collected.count()) {
            Ok(index) => {
                collected.lent.push((index, raw));
                Ok(index)
            }
            Err(_) => Err("too many descriptors in one message".to_owned()),
        })
    })
}

/// An encode not nested in another on this thread: the phase goes back to `Idle` when it
/// is dropped (also when a `Serialize` panics), and what its fields attached is closed if
/// [`collected`](Self::collected) did not take it.
struct Plain;

impl Plain {
    #[inline]
    fn begin() -> Plain {
        ENCODING.set(Phase::Plain);
        Plain
    }

    /// What the message's fields attached.
    #[inline]
    fn collected(self) -> Collected {
        taken_collected(ENCODING.replace(Phase::Plain)).unwrap_or_default()
    }
}

impl Drop for Plain {
    #[inline]
    fn drop(&mut self) {
        if ENCODING.replace(Phase::Idle) == Phase::Holding {
            // A panic in the middle: close what the fields attached.
            drop(taken_collected(Phase::Holding));
        }
    }
}

/// While a message is encoded: attaches a duplicate of `fd` to its frame, and returns the
/// index the message refers to it by.
pub(crate) fn attach(fd: BorrowedFd<'_>) -> Result<u32, String> {
    if ENCODING.get() == Phase::Idle {
        return Err("descriptors in messages are encoded only by aiosock's ends".to_owned());
    }
    let result = OUTGOING.with(|cell| {
        let mut collected = cell.borrow_mut();
        let collected = collected.get_or_insert_with(Collected::default);
        let index = u32::try_from(collected.count())
            .map_err(|_| "too many descriptors in one message".to_owned())?;
        match fd.try_clone_to_owned() {
            Ok(dup) => collected.fds.push(dup),
            Err(e) => {
                let text = format!("could not duplicate a descriptor to send: {e}");
                collected.failure.get_or_insert(e);
                return Err(text);
            }
        }
        Ok(index)
    });
    ENCODING.set(Phase::Holding);
    result
}

/// What became of a frame's descriptors while its message was decoded.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    /// The first descriptor a field could not take (an index out of range, one taken
    /// twice, a channel end or buffer that failed its checks).
    pub(crate) problem: Option<FdError>,
    /// Descriptors no field took (now closed).
    pub(crate) unused: usize,
}

/// One frame being decoded on this thread; the decoding counterpart of [`Encoding`]. A
/// field that claims a descriptor in a frame without any installs an empty set (see
/// [`with_incoming`]), which [`finish`](Self::finish) or the drop takes.
struct Decoding {
    /// The phase, descriptors and shared-memory limit of the decode this one is nested in.
    outer: Option<Box<(Phase, Option<Incoming>, u64)>>,
}

impl Decoding {
    #[inline(always)]
    fn begin(fds: Vec<OwnedFd>, max_shm_len: u64) -> Decoding {
        let outer = match DECODING.get() {
            Phase::Idle => None,
            phase => Some(Box::new((phase, taken_incoming(phase), MAX_SHM_LEN.get()))),
        };
        MAX_SHM_LEN.set(max_shm_len);
        if fds.is_empty() {
            DECODING.set(Phase::Plain);
        } else {
            install(fds);
        }
        Decoding { outer }
    }

    /// What became of the frame's descriptors; those not taken are closed.
    #[inline]
    fn finish(&mut self) -> Taken {
        taken_of(taken_incoming(DECODING.replace(Phase::Plain)))
    }
}

/// What became of a frame's descriptors, from what its decode left: those not taken are
/// counted, and closed.
#[inline]
fn taken_of(done: Option<Incoming>) -> Taken {
    match done {
        None => Taken::default(),
        Some(done) => Taken {
            unused: done.slots.iter().filter(|s| s.is_some()).count(),
            problem: done.problem,
        },
    }
}

/// Installs a frame's descriptors for its decode (out of line: most frames have none).
#[inline(never)]
fn install(fds: Vec<OwnedFd>) {
    let incoming = Incoming {
        slots: fds.into_iter().map(Some).collect(),
        problem: None,
    };
    INCOMING.with(|cell| *cell.borrow_mut() = Some(incoming));
    DECODING.set(Phase::Holding);
}

impl Drop for Decoding {
    #[inline(always)]
    fn drop(&mut self) {
        drop(self.finish());
        match self.outer.take() {
            None => DECODING.set(Phase::Idle),
            Some(outer) => {
                let (phase, incoming, max_shm_len) = *outer;
                if incoming.is_some() {
                    INCOMING.with(|cell| *cell.borrow_mut() = incoming);
                }
                DECODING.set(phase);
                MAX_SHM_LEN.set(max_shm_len);
            }
        }
    }
}

/// Takes what `INCOMING` holds in `phase` (out of line: only `Holding` has anything).
#[inline]
fn taken_incoming(phase: Phase) -> Option<Incoming> {
    #[inline(never)]
    fn take() -> Option<Incoming> {
        INCOMING.with(|cell| cell.borrow_mut().take())
    }
    match phase {
        Phase::Holding => take(),
        Phase::Idle | Phase::Plain => None,
    }
}

/// Runs `decode` with the frame's descriptors `fds` installed (and the largest shared
/// buffer accepted): its result, and what became of the descriptors. Whatever was not
/// taken is closed.
#[inline]
pub(crate) fn providing<R>(
    fds: Vec<OwnedFd>,
    max_shm_len: u64,
    decode: impl FnOnce() -> R,
) -> (R, Taken) {
    let mut decoding = Decoding::begin(fds, max_shm_len);
    let result = decode();
    let taken = decoding.finish();
    (result, taken)
}

/// Runs `f` on the descriptors of the frame being decoded (installing an empty set for
/// a frame that came without any); `None` outside a decode.
fn with_incoming<R>(f: impl FnOnce(&mut Incoming) -> R) -> Option<R> {
    let phase = DECODING.get();
    if phase == Phase::Idle {
        return None;
    }
    DECODING.set(Phase::Holding);
    INCOMING.with(|cell| {
        let mut incoming = cell.borrow_mut();
        let incoming = incoming.get_or_insert_with(|| Incoming {
            slots: Vec::new(),
            problem: None,
        });
        Some(f(incoming))
    })
}

/// Records `problem` with the frame being decoded (the first one counts), and gives the
/// text for serde's error.
pub(crate) fn refuse(problem: FdError) -> String {
    let text = problem.to_string();
    with_incoming(|incoming| {
        incoming.problem.get_or_insert(problem);
    });
    text
}

/// While a frame is decoded: takes its descriptor number `index`.
pub(crate) fn claim(index: u32) -> Result<OwnedFd, String> {
    let taken = with_incoming(|incoming| {
        let count = incoming.slots.len();
        match incoming.slots.get_mut(index as usize) {
            None => Err(FdError::BadIndex { index, count }),
            Some(slot) => slot.take().ok_or(FdError::Reused { index }),
        }
    });
    match taken {
        Some(Ok(fd)) => Ok(fd),
        Some(Err(problem)) => Err(refuse(problem)),
        None => Err("descriptors in messages are decoded only by aiosock's ends".to_owned()),
    }
}

/// While a frame is decoded: the largest shared-memory buffer the receiver accepts.
pub(crate) fn max_shm_len() -> u64 {
    match DECODING.get() {
        Phase::Idle => 0,
        Phase::Plain | Phase::Holding => MAX_SHM_LEN.get(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode_payload_with, encode_payload_with};

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Two {
        a: Fd,
        b: Option<Fd>,
    }

    fn devnull() -> Fd {
        Fd::from(File::open("/dev/null").expect("open"))
    }

    #[test]
    fn a_message_keeps_its_descriptors_and_the_frame_carries_duplicates() {
        let msg = Two {
            a: devnull(),
            b: Some(devnull()),
        };
        let (payload, fds) = encode_payload_with(&msg).expect("encode");
        assert_eq!(payload, [0, 1, 1], "indices 0 and Some(1)");
        assert_eq!(fds.len(), 2);
        assert_ne!(fds[0].as_raw_fd(), msg.a.as_raw_fd(), "a duplicate");
        let back: Two = decode_payload_with(&payload, 16, fds, 0).expect("decode");
        assert!(back.b.is_some());
    }

    #[test]
    fn every_descriptor_is_taken_exactly_once() {
        let three = || {
            (0..3)
                .map(|_| devnull().into_owned_fd())
                .collect::<Vec<_>>()
        };
        let problem = |payload: &[u8], fds: Vec<OwnedFd>| match decode_payload_with::<Two>(
            payload, 16, fds, 0,
        ) {
            Err(crate::Error::Fds(problem)) => problem,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            problem(&[0, 1, 9], three()),
            FdError::BadIndex { index: 9, count: 3 }
        );
        assert_eq!(problem(&[1, 1, 1], three()), FdError::Reused { index: 1 });
        assert_eq!(problem(&[0, 1, 1], three()), FdError::Unused { count: 1 });
        assert_eq!(problem(&[0, 0], three()), FdError::Unused { count: 2 });
        assert_eq!(
            problem(&[0, 0], vec![]),
            FdError::BadIndex { index: 0, count: 0 }
        );
    }

    /// A message whose `Serialize` encodes another message with descriptors of its own
    /// (as a field that sends on an end would), between two descriptors of its own.
    struct Nested {
        outer: [Fd; 2],
        inner: Two,
        inner_fds: std::cell::Cell<usize>,
    }

    impl Serialize for Nested {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeTuple;
            let mut tuple = serializer.serialize_tuple(2)?;
            tuple.serialize_element(&self.outer[0])?;
            let (_, fds) = encode_payload_with(&self.inner).map_err(S::Error::custom)?;
            self.inner_fds.set(fds.len());
            tuple.serialize_element(&self.outer[1])?;
            tuple.end()
        }
    }

    #[test]
    fn a_message_encoded_inside_another_keeps_its_descriptors_apart() {
        let msg = Nested {
            outer: [devnull(), devnull()],
            inner: Two {
                a: devnull(),
                b: None,
            },
            inner_fds: std::cell::Cell::new(0),
        };
        let (payload, fds) = encode_payload_with(&msg).expect("encode");
        assert_eq!(msg.inner_fds.get(), 1, "the inner message's own descriptor");
        assert_eq!(
            payload,
            [0, 1],
            "the outer indices go on after the inner encode"
        );
        assert_eq!(fds.len(), 2);
    }

    /// Attaches a descriptor, then panics.
    struct Panics(Fd);

    impl Serialize for Panics {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            self.0.serialize(serializer)?;
            panic!("a Serialize that panics after attaching");
        }
    }

    #[test]
    fn a_panicking_serialize_closes_its_duplicates_and_leaves_no_trace() {
        let fd = devnull();
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            encode_payload_with(&Panics(fd.try_clone().expect("dup")))
        }));
        assert!(unwound.is_err());
        // The duplicate attached before the panic was dropped (closed), not kept for the
        // thread's next message.
        assert!(
            OUTGOING.with(|cell| cell.borrow().is_none()),
            "a duplicate kept"
        );
        assert_eq!(ENCODING.get(), Phase::Idle);
        let next = devnull();
        // The next message on this thread starts afresh: index 0, one descriptor.
        let (payload, fds) = encode_payload_with(&Two { a: next, b: None }).expect("encode");
        assert_eq!((payload, fds.len()), (vec![0, 0], 1));
        // Outside an encode, a descriptor field refuses again.
        assert!(attach(fd.as_fd()).is_err());
    }

    #[test]
    fn a_frame_without_descriptors_refuses_an_index_and_decodes_without_one() {
        let problem = decode_payload_with::<Fd>(&[3], 16, vec![], 0);
        assert!(
            matches!(
                problem,
                Err(crate::Error::Fds(FdError::BadIndex { index: 3, count: 0 }))
            ),
            "{problem:?}"
        );
        let plain: Option<Fd> = decode_payload_with(&[0], 16, vec![], 0).expect("decode");
        assert!(plain.is_none());
        assert!(claim(0).is_err(), "outside a decode");
        assert_eq!(max_shm_len(), 0, "outside a decode");
    }

    #[test]
    fn outside_an_end_an_fd_neither_encodes_nor_decodes() {
        let fd = devnull();
        let mut out = Vec::new();
        let encoded =
            bincode::serde::encode_into_std_write(&fd, &mut out, bincode::config::standard());
        assert!(encoded.is_err());
        let decoded: Result<(Fd, usize), _> =
            bincode::serde::decode_from_slice(&[0], bincode::config::standard());
        assert!(decoded.is_err());
    }
}
