//! Error types.
//!
//! [`Error`] is what a receive (and the crate's constructors) can fail with. A send fails
//! with a [`SendError`] or [`TrySendError`], which hand the message back.

use std::fmt;
use std::io;

use crate::protocol::Mismatch;

/// What can go wrong on a channel: the connection, the peer's bytes, or setup.
///
/// Receiving fails with this type. After [`Receiver::recv`](crate::Receiver::recv) returns
/// any `Err`, the connection is over for receiving: a corrupt frame ends it, because
/// nothing after it can be trusted, and later calls return `Ok(None)`. Messages decoded
/// before the error were all delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    #[error("i/o error")]
    Io(#[source] io::Error),

    /// This process (or the system) is out of file descriptors (`EMFILE`, `ENFILE`): each
    /// end is a descriptor, and so are files, sockets and descriptors received in
    /// messages. Close some, or raise the limit: [`raise_fd_limit`](crate::raise_fd_limit)
    /// lifts this process's soft limit to its hard one.
    #[error(
        "this process is out of file descriptors (its RLIMIT_NOFILE, or the system's table): close some, or raise the limit"
    )]
    OutOfDescriptors(#[source] io::Error),

    /// The peer's first bytes are not an aiosock hello: it is not an aiosock end.
    #[error("the peer is not an aiosock end (its stream starts with {found:02x?})")]
    BadMagic {
        /// The first bytes seen (zero-filled when fewer arrived).
        found: [u8; 4],
    },

    /// The peer speaks another version of the wire format.
    #[error(
        "the peer speaks wire version {version}, this end speaks version {}",
        crate::wire::VERSION
    )]
    UnsupportedVersion {
        /// The peer's version.
        version: u16,
    },

    /// The peer's hello is malformed.
    #[error("malformed hello from the peer: {reason}")]
    BadHello {
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The peer was built for another protocol.
    #[error("{0}")]
    ProtocolMismatch(Box<Mismatch>),

    /// A frame header announced a payload over this end's maximum; nothing was allocated.
    #[error("the peer sent a frame of {len} bytes, over this end's maximum of {max}")]
    FrameTooLarge {
        /// The announced payload length.
        len: usize,
        /// The configured maximum ([`Config::max_frame_len`](crate::Config::max_frame_len)).
        max: usize,
    },

    /// The descriptors that came with the peer's frames are not what the frames announce,
    /// or a message that carries them (an [`Fd`](crate::Fd), a channel end, a
    /// [`Shm`](crate::Shm)) does not hold together. Every descriptor received and not yet
    /// delivered in a message was closed.
    #[error("the peer sent descriptors this end does not accept")]
    Fds(#[source] FdError),

    /// A frame header has flag bits this version does not know.
    #[error("the peer sent a frame with unknown flags {flags:#06x}")]
    UnknownFlags {
        /// The flags.
        flags: u16,
    },

    /// A frame header has a combination of flags that means nothing (a call that is also
    /// a reply, for example).
    #[error("the peer sent a frame with conflicting flags {flags:#06x}")]
    BadFlags {
        /// The flags.
        flags: u16,
    },

    /// The peer answered a call this end is not waiting for: an id it never used, a call
    /// already answered, or a one-way message. No caller receives it, and the connection
    /// ends.
    #[error("the peer answered call {id}, which this end is not waiting for")]
    UnexpectedReply {
        /// The call id the peer named.
        id: u64,
    },

    /// The peer's reply to a call is not a value of the call's reply type (or its failure
    /// report is malformed). The caller gets [`CallError::Failed`], and the connection ends.
    #[error("the peer's reply to call {id} is not a value of the call's reply type")]
    BadReply {
        /// The call id.
        id: u64,
        /// Why it did not decode.
        #[source]
        source: Box<Error>,
    },

    /// The peer's `serve` stopped on a panic in one of its handler methods. Calls in flight
    /// to it failed with [`CallError::Panicked`].
    #[error("the peer panicked: {message}")]
    PeerPanicked {
        /// The panic's message.
        message: String,
    },

    /// A frame's payload is not a valid message of the expected type.
    #[error("the peer sent a frame that does not decode as the expected message")]
    Decode(#[source] DecodeError),

    /// Decoding a frame's payload would spend more than this end's decode budget
    /// ([`Config::set_decode_budget`](crate::Config::set_decode_budget)): the payload
    /// describes more values, or values that need more memory, than its length allows.
    /// Found before the value was allocated.
    #[error(
        "the peer sent a frame of {len} bytes that decodes beyond this end's budget of {budget} units (raise Config::set_decode_budget if such messages are expected)"
    )]
    OverBudget {
        /// The payload length.
        len: usize,
        /// The units the payload could spend.
        budget: usize,
    },

    /// A frame's payload nests values deeper than decoding allows (sequences, maps, enums,
    /// options and newtypes each open a level).
    #[error("the peer sent a frame whose message nests deeper than {max} levels")]
    TooDeep {
        /// The maximum depth.
        max: usize,
    },

    /// A frame's payload held a whole message followed by more bytes.
    #[error("the peer sent a frame of {len} bytes whose message ends after {used} bytes")]
    TrailingBytes {
        /// The payload length.
        len: usize,
        /// The bytes the message took.
        used: usize,
    },

    /// The peer closed the connection in the middle of a hello or a frame.
    #[error("the peer closed the connection in the middle of a {what}")]
    Truncated {
        /// What was cut short.
        what: Part,
    },

    /// This process was not started with an aiosock end, or the end it names is unusable.
    #[error("no usable inherited end: {reason}")]
    Inherit {
        /// What is missing or wrong.
        reason: String,
    },

    /// A socket path or abstract name does not fit in a Unix socket address (`sun_path`
    /// holds 108 bytes: a path, with its terminating NUL, or an abstract name, with its
    /// leading NUL). Use a shorter path: a directory nearer the root, or a relative path.
    #[error("the socket address is {len} bytes, over the maximum of {max} that fits in sun_path")]
    PathTooLong {
        /// The length of the path or name, in bytes.
        len: usize,
        /// The longest that fits (107).
        max: usize,
    },

    /// [`Listener::bind`](crate::Listener::bind): a live server is listening at the address
    /// (it accepted a probe connection). Its socket file was left alone.
    #[error("a server is already listening at {address}")]
    AddressInUse {
        /// The path, or `@name` for an abstract name.
        address: String,
    },

    /// [`Listener::bind`](crate::Listener::bind): something that is not a socket is at the
    /// path. It was left alone.
    #[error("{address} exists and is not a socket; it was left alone")]
    NotASocket {
        /// The path.
        address: String,
    },

    /// [`connect`](crate::connect): nothing is listening at the address: no socket file
    /// there, or one left by a server that is gone (the connection was refused).
    #[error("nothing is listening at {address}")]
    NotListening {
        /// The path, or `@name` for an abstract name.
        address: String,
    },

    /// The system refused access to the socket file or a directory on its path (for
    /// example, a socket file of mode 0600 owned by another user, or a directory this
    /// process may not search or write).
    #[error("permission denied for {address}")]
    PermissionDenied {
        /// The path.
        address: String,
        /// The system's error.
        #[source]
        source: io::Error,
    },

    /// A TLS handshake failed (feature `tls`): the peer's certificate was refused (an
    /// unknown issuer, expired, or missing where one is required), the peer refused ours
    /// (a fatal alert), the server name is not valid, or the handshake did not finish in
    /// time. `reason` is rustls's own message, for example
    /// `invalid peer certificate: UnknownIssuer` or `peer sent no certificates`.
    #[error("TLS handshake failed: {reason}")]
    Tls {
        /// What went wrong, in rustls's words.
        reason: String,
    },

    /// A [`ForkServer`](crate::ForkServer) cannot start workers: it is gone, it did not
    /// answer, or it was asked from a forked copy of the process that made it.
    #[error("the fork server cannot start workers: {reason}")]
    ForkServer {
        /// Why, for example `it exited before it answered`.
        reason: String,
    },

    /// [`fork`](crate::fork) was called from inside a Tokio runtime: the child, a copy of
    /// this thread, could not start the runtime it runs its closure on. Fork before
    /// starting the runtime (or from outside it).
    #[error("fork refused: called from inside a Tokio runtime; fork before starting the runtime")]
    ForkInRuntime,

    /// [`fork`](crate::fork) was called in a process that has more than one thread.
    #[error(
        "fork refused: this process has {threads} threads, and forking a multi-threaded process is unsound"
    )]
    ForkThreads {
        /// The number of threads found.
        threads: usize,
    },
}

impl From<io::Error> for Error {
    /// [`Error::OutOfDescriptors`] for `EMFILE` and `ENFILE`, else [`Error::Io`].
    fn from(e: io::Error) -> Error {
        match e.raw_os_error() {
            Some(nix::libc::EMFILE | nix::libc::ENFILE) => Error::OutOfDescriptors(e),
            _ => Error::Io(e),
        }
    }
}

/// The part of a stream that the peer cut short, in [`Error::Truncated`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Part {
    /// The hello that starts the stream.
    Hello,
    /// A frame (its header or its payload).
    Frame,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Hello => "hello",
            Part::Frame => "frame",
        })
    }
}

/// What is wrong with the descriptors the peer sent, in [`Error::Fds`].
///
/// Descriptors travel with the frame that carries them (see the crate docs' wire format):
/// the frame's header announces how many, and its message refers to each by its index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FdError {
    /// A frame announced `announced` descriptors, but `arrived` came with it.
    #[error("a frame announced {announced} descriptors, but {arrived} arrived with it")]
    Mismatch {
        /// The count in the frame's header.
        announced: usize,
        /// The descriptors that came with the frame's first byte.
        arrived: usize,
    },
    /// Descriptors arrived that no frame claims.
    #[error("{count} descriptors arrived that no frame claims")]
    Stray {
        /// How many.
        count: usize,
    },
    /// A frame carries more descriptors than this end accepts in one frame
    /// ([`Config::max_fds_per_frame`](crate::Config::max_fds_per_frame)).
    #[error("a frame carries {count} descriptors, over this end's maximum of {max} per frame")]
    TooManyInFrame {
        /// The descriptors announced or received.
        count: usize,
        /// The maximum.
        max: usize,
    },
    /// The end would hold more descriptors for messages it has not delivered yet than it
    /// accepts ([`Config::max_fds`](crate::Config::max_fds)): a peer that sends descriptors
    /// far ahead of the frames that claim them.
    #[error(
        "the peer sent {count} descriptors not yet delivered, over this end's maximum of {max}"
    )]
    TooManyHeld {
        /// The descriptors that would be held.
        count: usize,
        /// The maximum.
        max: usize,
    },
    /// The kernel could not hand over every descriptor the peer sent (`MSG_CTRUNC`): this
    /// process ran out of descriptors (its `RLIMIT_NOFILE`), or the peer sent more than fit.
    #[error(
        "the kernel dropped descriptors the peer sent (this process may be out of descriptors)"
    )]
    Truncated,
    /// A message refers to descriptor `index`, but its frame carries only `count`.
    #[error("a message refers to descriptor {index}, but its frame carries {count}")]
    BadIndex {
        /// The index in the message.
        index: u32,
        /// The descriptors the frame carries.
        count: usize,
    },
    /// A message refers to one of its frame's descriptors twice.
    #[error("a message refers to descriptor {index} twice")]
    Reused {
        /// The index.
        index: u32,
    },
    /// A frame carries descriptors its message does not refer to.
    #[error("a frame carries {count} descriptors that its message does not use")]
    Unused {
        /// How many.
        count: usize,
    },
    /// A channel end in a message is not a connected Unix stream socket.
    #[error("a channel end in a message is not a Unix stream socket")]
    NotASocket,
    /// A shared-memory buffer in a message is not a memfd sealed against every change
    /// (`F_SEAL_WRITE`, `F_SEAL_SHRINK`, `F_SEAL_GROW` and `F_SEAL_SEAL`): its sender
    /// could still change or shrink it under the reader.
    #[error(
        "a shared-memory buffer is not sealed against changes (its seals are {seals:#x}): its sender could still change it"
    )]
    NotSealed {
        /// The seals it has (`F_GET_SEALS`), 0 if it cannot have any.
        seals: u32,
    },
    /// A shared-memory buffer's size is not the size its message gives.
    #[error("a shared-memory buffer is {actual} bytes, but its message says {announced}")]
    ShmSize {
        /// The size in the message.
        announced: u64,
        /// The memfd's size.
        actual: u64,
    },
    /// A shared-memory buffer is larger than this end accepts
    /// ([`Config::max_shm_len`](crate::Config::max_shm_len)).
    #[error("a shared-memory buffer of {len} bytes is over this end's maximum of {max}")]
    ShmTooLarge {
        /// Its size.
        len: u64,
        /// The maximum.
        max: u64,
    },
    /// A shared-memory buffer has holes: fewer bytes of memory than its length. Reading
    /// a hole would allocate memory in the receiver, so its sender must have written (or
    /// populated) every page, as a [`ShmBuf`](crate::ShmBuf) does.
    #[error(
        "a shared-memory buffer of {len} bytes has only {allocated} allocated: reading its holes would allocate here"
    )]
    ShmSparse {
        /// Its size.
        len: u64,
        /// The bytes of memory it has, or if fewer, the bytes before its first hole.
        allocated: u64,
    },
    /// A shared-memory buffer could not be mapped.
    #[error("a shared-memory buffer could not be mapped: {reason}")]
    ShmMap {
        /// The system's error.
        reason: String,
    },
}

/// Why bincode could not decode a payload; `source()` has bincode's own error.
///
/// When the cause is a serde shape that bincode cannot carry (a type inside a field that
/// needs a self-describing format), the message says so and what to do.
#[derive(Debug, thiserror::Error)]
#[error("bincode could not decode the payload{}", decode_hint(.0))]
pub struct DecodeError(#[source] pub(crate) bincode::error::DecodeError);

/// Why serde could not encode a message; `source()` has bincode's own error.
///
/// When the cause is a serde shape that bincode cannot carry (a sequence or map whose
/// length is not known up front), the message says so and what to do.
#[derive(Debug, thiserror::Error)]
#[error("bincode could not encode the message{}", encode_hint(.0))]
pub struct EncodeError(#[source] pub(crate) bincode::error::EncodeError);

fn encode_hint(e: &bincode::error::EncodeError) -> &'static str {
    match e {
        bincode::error::EncodeError::Serde(bincode::serde::EncodeError::SequenceMustHaveLength) => {
            ": a sequence or map had no length up front, which aiosock's encoding needs; a type \
             inside the message probably uses serde's `flatten` or `skip_serializing_if` (or \
             serializes a sequence of unknown length): remove the attribute, or give the field a \
             plain struct or map type (see the serde section of the `protocol` docs)"
        }
        _ => "",
    }
}

fn decode_hint(e: &bincode::error::DecodeError) -> &'static str {
    match e {
        bincode::error::DecodeError::Serde(
            bincode::serde::DecodeError::AnyNotSupported
            | bincode::serde::DecodeError::IdentifierNotSupported
            | bincode::serde::DecodeError::IgnoredAnyNotSupported,
        ) => {
            ": a type inside the message needs a self-describing format, which aiosock's \
             encoding is not; it probably uses serde's `untagged`, `tag` or `flatten`: remove \
             the attribute (see the serde section of the `protocol` docs)"
        }
        _ => "",
    }
}

/// Why a message cannot be sent: it cannot be encoded for any peer, or this peer cannot
/// take it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidMessage {
    /// The encoded message is larger than the end's maximum frame length.
    #[error("the message encodes to {len} bytes, over the maximum of {max}")]
    TooLarge {
        /// The encoded length.
        len: usize,
        /// The maximum ([`Config::max_frame_len`](crate::Config::max_frame_len)).
        max: usize,
    },
    /// The message's `Serialize` implementation failed.
    #[error("the message could not be encoded")]
    Encode(#[source] EncodeError),
    /// The message carries more descriptors than one frame can: the kernel passes at most
    /// 253 (`SCM_MAX_FD`) with one `sendmsg`.
    #[error("the message carries {count} descriptors, over the maximum of {max} per message")]
    TooManyFds {
        /// The descriptors in the message.
        count: usize,
        /// The maximum.
        max: usize,
    },
    /// A descriptor in the message could not be duplicated to travel with it: this process
    /// is out of descriptors (`EMFILE`, `ENFILE`). The message keeps its own.
    #[error("a descriptor in the message could not be duplicated to send")]
    FdDuplicate(#[source] std::io::Error),
    /// The message carries descriptors, which this end's transport cannot pass (TCP and
    /// TLS carry bytes only).
    #[error("the message carries descriptors, which this end's transport (TCP) cannot pass")]
    FdsNotCarried,
    /// The message's variant is one the peer does not know: the peer runs an earlier
    /// version of the protocol, from before the variant was `#[added]` (see
    /// [compatible evolution](crate#compatible-evolution)). Nothing was sent.
    #[error("the peer runs an earlier version of the protocol, without variant `{variant}`")]
    UnknownVariant {
        /// The variant's name.
        variant: &'static str,
    },
}

/// A failed [`Sender::send`](crate::Sender::send); the message comes back inside.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum SendError<T> {
    /// The peer can no longer receive (it closed its receiver, exited or was killed), or
    /// this end's runtime shut down.
    #[error("channel closed")]
    Closed(T),
    /// The message itself cannot be sent.
    #[error("invalid message")]
    Invalid(T, #[source] InvalidMessage),
}

impl<T> SendError<T> {
    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Closed(msg) | SendError::Invalid(msg, _) => msg,
        }
    }

    /// Whether the channel is closed (as opposed to the message being invalid).
    pub fn is_closed(&self) -> bool {
        matches!(self, SendError::Closed(_))
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed(_) => f.write_str("Closed(..)"),
            SendError::Invalid(_, why) => f.debug_tuple("Invalid").field(&"..").field(why).finish(),
        }
    }
}

/// A failed [`Sender::try_send`](crate::Sender::try_send); the message comes back inside.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum TrySendError<T> {
    /// The outgoing buffer is at capacity; try again after [`Sender::ready`](crate::Sender::ready).
    #[error("no available capacity")]
    Full(T),
    /// The peer can no longer receive.
    #[error("channel closed")]
    Closed(T),
    /// The message itself cannot be sent.
    #[error("invalid message")]
    Invalid(T, #[source] InvalidMessage),
}

impl<T> TrySendError<T> {
    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(msg) | TrySendError::Closed(msg) | TrySendError::Invalid(msg, _) => {
                msg
            }
        }
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
            TrySendError::Invalid(_, why) => {
                f.debug_tuple("Invalid").field(&"..").field(why).finish()
            }
        }
    }
}

impl<T> From<SendError<T>> for TrySendError<T> {
    fn from(e: SendError<T>) -> Self {
        match e {
            SendError::Closed(m) => TrySendError::Closed(m),
            SendError::Invalid(m, why) => TrySendError::Invalid(m, why),
        }
    }
}

/// A failed [`Receiver::try_recv`](crate::Receiver::try_recv).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TryRecvError {
    /// No whole message has arrived yet.
    #[error("receiving on an empty channel")]
    Empty,
    /// The peer closed and every message was received.
    #[error("receiving on a closed channel")]
    Disconnected,
    /// Receiving failed; see [`Error`].
    #[error(transparent)]
    Failed(#[from] Error),
}

/// A failed call: a message of a variant declared with `#[reply(T)]`, sent through the
/// generated client, whose reply did not arrive.
///
/// A user who wants the handler's own errors to travel declares a `Result` as the reply
/// type (`#[reply(Result<u64, MyError>)]`): those arrive inside `Ok`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The connection ended (the peer closed, exited or was killed, or this end's receiver
    /// was dropped) before the reply arrived.
    #[error("the connection closed before the reply arrived")]
    Closed,
    /// The connection failed: the peer sent something this end could not accept (a bad
    /// frame, a reply this end did not ask for, or a reply of the wrong type). Every
    /// pending call fails with this.
    #[error("the connection failed: {reason}")]
    Failed {
        /// What the receiver reported.
        reason: String,
    },
    /// The peer's handler panicked while answering this call, or the peer's `serve`
    /// stopped on a panic before it answered.
    #[error("the peer panicked: {message}")]
    Panicked {
        /// The panic's message (`"<non-string panic payload>"` if it had none).
        message: String,
    },
    /// The peer received the call but will not answer it: it read the message with
    /// `recv` instead of serving it, or dropped the request.
    #[error("the peer received the call but did not answer it")]
    Unanswered,
    /// The peer's handler returned a reply that could not be encoded or was larger than
    /// the peer's maximum frame length.
    #[error("the peer could not send its reply: {reason}")]
    BadReply {
        /// Why.
        reason: String,
    },
    /// The call was made with a `try_` method while the connection's table of calls in
    /// flight ([`Config::max_calls`](crate::Config::max_calls)) or its outgoing buffer was
    /// full. Nothing was sent.
    #[error("too many calls in flight")]
    Full,
    /// The peer runs an earlier version of the protocol, without the call's variant (see
    /// [compatible evolution](crate#compatible-evolution)). Nothing was sent.
    #[error("the peer runs an earlier version of the protocol, without variant `{variant}`")]
    UnknownVariant {
        /// The variant's name.
        variant: &'static str,
    },
    /// The call's message cannot be sent: it does not encode, or is larger than the
    /// maximum frame length. Nothing was sent.
    #[error("the call's message cannot be sent: {reason}")]
    Invalid {
        /// Why.
        reason: String,
    },
}
