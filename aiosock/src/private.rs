//! Used by the code that `#[aiosock::protocol]` generates. Not public API.

pub use ::core;
pub use ::serde;

pub use crate::protocol::{Answer, Client, Dispatch, Protocol};

/// Makes a call: sends `msg` (a message of a variant declared with `#[reply(R)]`) as a call
/// and waits for its reply of type `R`. With `wait` false the call fails at once with
/// [`CallError::Full`](crate::CallError::Full) instead of waiting for room. The generated
/// client's methods call this; not public API.
pub fn call<T: Protocol, R: serde::de::DeserializeOwned + Send + 'static>(
    sender: &crate::Sender<T>,
    msg: T,
    wait: bool,
) -> impl ::core::future::Future<Output = Result<R, crate::CallError>> + Send + '_ {
    sender.call(msg, wait)
}

/// A stream of calls of the variant that `make` builds (declared with `#[reply(R)]`). The
/// generated client's `_stream` methods call this; not public API.
pub fn call_stream<T: Protocol, A, R: serde::de::DeserializeOwned + Send + 'static>(
    sender: &crate::Sender<T>,
    make: fn(A) -> T,
) -> crate::CallStream<T, A, R> {
    crate::CallStream::new(sender.clone(), make)
}

/// A plain `fork` of a single-threaded process (no aiosock handling in the child), for
/// the tests that check what other libraries' forks do to aiosock's ends: `Some(pid)` in
/// the parent, `None` in the child.
pub fn fork_plain() -> std::io::Result<Option<u32>> {
    crate::sys::fork_plain()
}

/// One `recvmsg` on a socket into the spare capacity of `buf` (which grows by what
/// arrived), waiting if the socket is blocking: the bytes read (0 at the end), and the
/// descriptors that came with them, owned and close-on-exec; `Err` with `EMSGSIZE` if the
/// kernel had to drop some (`MSG_CTRUNC`). For the benchmark's raw baseline of descriptor
/// passing, so that its `unsafe` stays in aiosock's `sys`.
pub fn recv_with_fds(
    fd: std::os::fd::BorrowedFd<'_>,
    buf: &mut Vec<u8>,
) -> std::io::Result<(usize, Vec<std::os::fd::OwnedFd>)> {
    let got = crate::sys::recv_spare_blocking(fd, buf)?;
    if got.truncated {
        return Err(std::io::Error::from_raw_os_error(nix::libc::EMSGSIZE));
    }
    Ok((got.len, got.fds))
}

/// A counting allocator for tests and fuzzing that assert allocation bounds.
pub use crate::sys::alloc::{CountingAlloc, peak_of, retained_by};

/// Hooks into the pure wire layer for the benchmark, the fuzz targets and the
/// decode-budget tests. Not public API.
pub mod wire {
    use crate::error::{Error, InvalidMessage};
    use crate::wire::{self, Limits};

    /// Length of a frame header.
    pub const HEADER_LEN: usize = wire::HEADER_LEN;
    /// Decode budget units every frame may spend beyond its per-byte budget.
    pub const ALLOWANCE: usize = wire::ALLOWANCE;
    /// Decode budget units per payload byte under the default `Config`.
    pub const DEFAULT_DECODE_BUDGET: usize = wire::DEFAULT_DECODE_BUDGET;
    /// The most descriptors one frame may carry under the default `Config`.
    pub const DEFAULT_MAX_FDS_PER_FRAME: usize = wire::DEFAULT_MAX_FDS_PER_FRAME;
    /// The most descriptors a receiver holds under the default `Config`.
    pub const DEFAULT_MAX_FDS: usize = wire::DEFAULT_MAX_FDS;
    /// Bytes decoding may allocate per unit of decode budget spent.
    pub const MEMORY_PER_UNIT: usize = wire::MEMORY_PER_UNIT;
    /// What the error of a failed decode may allocate besides the decoded values (its
    /// message), for the allocation-bound checks.
    pub const ERROR_SLACK: usize = 1024;
    /// How deeply a message may nest.
    pub const MAX_DEPTH: usize = wire::MAX_DEPTH;

    /// Appends one frame holding `msg` (at most `max` payload bytes), exactly as a
    /// `Sender` does.
    pub fn encode_one<T: crate::Protocol>(
        out: &mut Vec<u8>,
        msg: &T,
        max: usize,
    ) -> Result<(), InvalidMessage> {
        wire::encode_frame(out, msg, max)
    }

    /// Appends one frame holding `value` with the frame header's `flags` and, for a call or
    /// a reply, call id `id`, exactly as an end does (for the fuzzing seeds). Flags that
    /// name no frame kind are refused.
    pub fn encode_as<T: serde::Serialize>(
        out: &mut Vec<u8>,
        value: &T,
        flags: u16,
        id: u64,
    ) -> Result<(), InvalidMessage> {
        let kind = match flags {
            0 => wire::Kind::Message,
            0x0001 => wire::Kind::Call(id),
            0x0002 => wire::Kind::Reply(id),
            0x0006 => wire::Kind::Failed(id),
            0x0008 => wire::Kind::Panicked,
            _ => {
                return Err(InvalidMessage::TooLarge {
                    len: usize::MAX,
                    max: 0,
                });
            }
        };
        wire::encode_frame_as(out, value, usize::MAX, kind).map(drop)
    }

    /// Decodes the frame at the start of `buf` (no hello) with the default decode budget,
    /// exactly as a `Receiver` does: the message and the bytes it took, or `None` if `buf`
    /// holds less than a frame.
    #[inline]
    pub fn decode_one<T: crate::Protocol>(
        buf: &[u8],
        max: usize,
    ) -> Result<Option<(T, usize)>, Error> {
        let limits = Limits::new(max);
        let mut fds = wire::Attached::default();
        fds.read(buf.len(), Vec::new(), false, &limits);
        match wire::Decoder::frames_only(limits).decode(buf, &mut fds)? {
            wire::Decoded::Message { msg, used, .. } => Ok(Some((msg, used))),
            _ => Ok(None),
        }
    }

    /// Decodes one whole payload at `per_byte` units of budget per byte, exactly as a
    /// `Receiver` decodes a frame's payload.
    pub fn decode_payload<T: crate::Protocol>(payload: &[u8], per_byte: usize) -> Result<T, Error> {
        wire::decode_payload(payload, per_byte)
    }

    /// [`decode_payload`], also returning the decode budget units spent.
    pub fn decode_payload_spending<T: crate::Protocol>(
        payload: &[u8],
        per_byte: usize,
    ) -> (Result<T, Error>, usize) {
        wire::decode_payload_spending(payload, per_byte)
    }

    /// Runs a receiver's decoder over a whole stream (hello and frames) delivered in
    /// chunks of `chunk` bytes, with frames up to `max_frame_len` and the default budget:
    /// the messages, and the error that ended the stream if any.
    pub fn decode_stream<T: crate::Protocol>(
        bytes: &[u8],
        chunk: usize,
        max_frame_len: usize,
    ) -> (Vec<T>, Option<Error>) {
        wire::decode_stream(bytes, chunk, Limits::new(max_frame_len))
    }

    /// [`decode_stream`] with descriptors: the read that brings the byte at each batch's
    /// `at` brings `count` descriptors from `make_fd`, as the kernel hands them over, and
    /// says the kernel dropped some (`MSG_CTRUNC`) if `truncated`. The receiver takes at
    /// most `max_fds_per_frame` per frame and holds at most `max_fds`. Returns the
    /// messages, the error that ended the stream if any, and whether a truncated read
    /// arrived. For the fuzz target that checks no descriptor leaks.
    pub fn decode_stream_with_fds<T: crate::Protocol>(
        bytes: &[u8],
        chunk: usize,
        limits: FdLimits,
        batches: &[FdBatch],
        make_fd: &mut dyn FnMut() -> Option<std::os::fd::OwnedFd>,
    ) -> (Vec<T>, Option<Error>, bool) {
        let mut all = Limits::new(limits.max_frame_len);
        all.max_fds_per_frame = limits.max_fds_per_frame;
        all.max_fds = limits.max_fds;
        let batches: Vec<_> = batches
            .iter()
            .map(|b| (b.at, b.count, b.truncated))
            .collect();
        wire::decode_stream_with(bytes, chunk, all, &batches, make_fd)
    }

    /// The limits of [`decode_stream_with_fds`].
    #[derive(Debug, Clone, Copy)]
    pub struct FdLimits {
        /// The largest payload accepted, in bytes.
        pub max_frame_len: usize,
        /// The most descriptors one frame may carry.
        pub max_fds_per_frame: usize,
        /// The most descriptors the receiver holds for messages it has not delivered.
        pub max_fds: usize,
    }

    /// One read's descriptors in [`decode_stream_with_fds`].
    #[derive(Debug, Clone, Copy)]
    pub struct FdBatch {
        /// The stream offset of a byte the read brings.
        pub at: usize,
        /// How many descriptors it brings.
        pub count: usize,
        /// The kernel dropped some of them (`MSG_CTRUNC`).
        pub truncated: bool,
    }
}

/// How the generated `Protocol::visit_held_fields` finds a message's byte and descriptor
/// fields: for each field `f` it calls `(&Probe(f)).held(visit)`. Method resolution picks
/// [`ViaField`](held::ViaField) for a field of type `Vec<u8>`, [`Bytes`](crate::Bytes) or
/// [`Fd`](crate::Fd) (implemented on `Probe` itself, so its method takes the `&Probe` as
/// it is) and the no-op [`ViaNothing`](held::ViaNothing) for any other type (implemented
/// on `&Probe`, found one auto-reference later), so no field's type needs to be recognised
/// by its name.
pub mod held {
    /// A field that a send may pass from the message itself instead of a copy.
    #[derive(Debug)]
    pub enum Field<'a> {
        /// A `Vec<u8>` (or the vector of a `Bytes`): its bytes may go to the kernel from
        /// its own buffer.
        Bytes(&'a Vec<u8>),
        /// A descriptor: it may go to the kernel itself, instead of a duplicate.
        Fd(&'a crate::Fd),
    }

    /// A field of a message, borrowed for as long as the message.
    #[derive(Debug)]
    pub struct Probe<'a, T>(pub &'a T);

    /// A field that a send may pass from the message itself.
    pub trait ViaField<'a> {
        /// Calls `visit` with the field.
        fn held(&self, visit: &mut dyn FnMut(Field<'a>));
    }

    impl<'a> ViaField<'a> for Probe<'a, Vec<u8>> {
        #[inline]
        fn held(&self, visit: &mut dyn FnMut(Field<'a>)) {
            visit(Field::Bytes(self.0));
        }
    }

    impl<'a> ViaField<'a> for Probe<'a, crate::Bytes> {
        #[inline]
        fn held(&self, visit: &mut dyn FnMut(Field<'a>)) {
            visit(Field::Bytes(self.0.as_vec()));
        }
    }

    impl<'a> ViaField<'a> for Probe<'a, crate::Fd> {
        #[inline]
        fn held(&self, visit: &mut dyn FnMut(Field<'a>)) {
            visit(Field::Fd(self.0));
        }
    }

    /// Any other field: nothing to visit.
    pub trait ViaNothing<'a> {
        /// Does nothing.
        #[inline]
        fn held(&self, visit: &mut dyn FnMut(Field<'a>)) {
            let _ = visit;
        }
    }

    impl<'a, T> ViaNothing<'a> for &Probe<'a, T> {}
}

/// Serde `with` module that encodes a `Vec<u8>` as one byte string instead of a sequence
/// of `u8`. The macro applies it to every field whose type is written `Vec<u8>`.
pub mod bytes {
    use serde::{Deserializer, Serializer};

    /// Writes the bytes as one byte string.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    /// Reads a byte string (or, from formats that have none, a sequence of `u8`).
    ///
    /// Asks for borrowed bytes: decoding from a whole payload, bincode then checks the
    /// length against the bytes that are there before anything is allocated, and the
    /// visitor copies exactly those.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_bytes(crate::bytes::BytesVisitor)
    }
}

/// Sets `TCP_NODELAY` and keepalive on `stream`, exactly as
/// [`TcpListener::accept`](crate::TcpListener::accept) and the connect functions do, for the tests.
pub fn configure_tcp(stream: &tokio::net::TcpStream) -> Result<(), crate::Error> {
    crate::tcp::configure(stream)
}
