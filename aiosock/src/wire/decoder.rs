//! The incremental decoder a receiver runs over the bytes it has read.

use serde::de::DeserializeOwned;

use std::ops::Range;
use std::os::fd::OwnedFd;

use super::{
    Attached, CALL_ID_LEN, FrameHeader, HEADER_LEN, Kind, Limits, PeerHello,
    decode_payload_counted, decode_payload_with,
};
use crate::error::{Error, Part};
use crate::protocol::{Protocol, Shape};

/// What the decoder made of the start of a buffer.
#[derive(Debug)]
pub(crate) enum Decoded<T> {
    /// A message, taking `used` bytes; `call` is its call id if the peer wants an answer,
    /// `fds` the number of descriptors it holds, and `spent` the decode budget units it
    /// took (what it holds on the heap is within `MEMORY_PER_UNIT` bytes per unit).
    Message {
        msg: T,
        used: usize,
        call: Option<u64>,
        fds: usize,
        spent: usize,
    },
    /// An answer to call `id`, taking `used` bytes. The payload (at `payload` in the
    /// buffer) is the reply value, or a `Failure` if `failed`; which type it must decode
    /// as is known only to the caller, so the receiver decodes it, with `fds`, the
    /// descriptors the frame carries.
    Reply {
        id: u64,
        failed: bool,
        payload: Range<usize>,
        fds: Vec<OwnedFd>,
        used: usize,
    },
    /// The peer's `serve` stopped on a panic with this message, taking `used` bytes.
    Panicked { message: String, used: usize },
    /// The peer's hello, checked, taking `used` bytes; the peer knows the first `known`
    /// variants of the protocol this side sends.
    Hello { used: usize, known: usize },
    /// Nothing whole yet: at least `need` bytes (from the start) are needed.
    Need(usize),
}

/// A pure state machine: the peer's hello, then frames.
#[derive(Debug, Clone)]
pub(crate) struct Decoder {
    /// What this side sends and expects, until the peer's hello was checked.
    hello: Option<(Shape, Shape)>,
    limits: Limits,
}

impl Decoder {
    pub(crate) fn new(sends: Shape, expects: Shape, limits: Limits) -> Decoder {
        Decoder {
            hello: Some((sends, expects)),
            limits,
        }
    }

    /// A decoder of frames alone, for a buffer that starts after the hello.
    pub(crate) fn frames_only(limits: Limits) -> Decoder {
        Decoder {
            hello: None,
            limits,
        }
    }

    /// Decodes and checks the peer's hello: the bytes it took and how many of this side's
    /// variants the peer knows, or `None` while incomplete.
    #[cold]
    fn decode_hello(&mut self, buf: &[u8]) -> Result<Option<(usize, usize)>, Error> {
        let Some((sends, expects)) = &self.hello else {
            return Ok(Some((0, usize::MAX)));
        };
        match PeerHello::decode(buf)? {
            None => Ok(None),
            Some((peer, used)) => {
                let known = peer.check(sends, expects)?;
                self.hello = None;
                Ok(Some((used, known)))
            }
        }
    }

    /// Whether the peer's hello is still to come.
    pub(crate) fn awaiting_hello(&self) -> bool {
        self.hello.is_some()
    }

    /// Decodes what starts `buf`, the bytes received and not decoded yet; `fds` holds the
    /// descriptors received and not claimed yet, and knows how much of the stream was
    /// received (so `buf` starts at stream offset `fds.received() - buf.len()`). Never
    /// allocates more than the checks in [`FrameHeader::decode`] and
    /// [`decode_payload_with`] allow.
    #[inline]
    pub(crate) fn decode<T: DeserializeOwned>(
        &mut self,
        buf: &[u8],
        fds: &mut Attached,
    ) -> Result<Decoded<T>, Error> {
        if self.hello.is_some() {
            return self.decode_hello(buf).map(|used| match used {
                None => Decoded::Need(buf.len() + 1),
                Some((used, known)) => Decoded::Hello { used, known },
            });
        }
        let at = fds.received() - buf.len() as u64;
        fds.check(at)?;
        let limits = &self.limits;
        let Some(header) =
            FrameHeader::decode(buf, limits.max_frame_len, limits.max_fds_per_frame)?
        else {
            let need = if buf.len() < HEADER_LEN {
                HEADER_LEN
            } else {
                HEADER_LEN + CALL_ID_LEN
            };
            return Ok(Decoded::Need(need));
        };
        let used = header.frame_len();
        let payload = header.header_len()..used;
        let Some(bytes) = buf.get(payload.clone()) else {
            return Ok(Decoded::Need(used));
        };
        let attached = fds.take(at, header.fds)?;
        let (per_byte, max_shm) = (limits.decode_budget, limits.max_shm_len);
        let call = match header.kind {
            Kind::Message => None,
            Kind::Call(id) => Some(id),
            Kind::Reply(id) | Kind::Failed(id) => {
                return Ok(Decoded::Reply {
                    id,
                    failed: matches!(header.kind, Kind::Failed(_)),
                    payload,
                    fds: attached,
                    used,
                });
            }
            Kind::Panicked => {
                let message = decode_payload_with(bytes, per_byte, attached, max_shm)?;
                return Ok(Decoded::Panicked { message, used });
            }
        };
        let (msg, spent) = decode_payload_counted(bytes, per_byte, attached, max_shm)?;
        Ok(Decoded::Message {
            msg,
            used,
            call,
            fds: header.fds,
            spent,
        })
    }
}

/// Runs the decoder over `bytes` as a receiver of `T` expecting the peer to send `T` and
/// expect `T` would, delivering them in chunks of `chunk` bytes (at least 1). Returns the
/// messages decoded, and the error that ended the stream if any. For fuzzing and tests.
pub(crate) fn decode_stream<T: Protocol>(
    bytes: &[u8],
    chunk: usize,
    limits: Limits,
) -> (Vec<T>, Option<Error>) {
    let (msgs, err, _) = decode_stream_with(bytes, chunk, limits, &[], &mut || None);
    (msgs, err)
}

/// [`decode_stream`] with descriptors: `batches` lists `(offset, count, truncated)` in
/// stream order, and the read that brings the byte at `offset` brings `count` descriptors
/// made by `make_fd` (reads are cut so that each brings at most one batch, as the kernel's
/// are), flagged as cut short by the kernel if `truncated`. A batch `make_fd` cannot fill
/// (it returns `None`) is left short; a batch behind bytes already read never arrives.
/// Also returns whether a truncated batch arrived. For property tests and fuzzing:
/// whatever the bytes and batches, every descriptor not in a message returned must be
/// closed when this returns.
pub(crate) fn decode_stream_with<T: Protocol>(
    bytes: &[u8],
    chunk: usize,
    limits: Limits,
    batches: &[(usize, usize, bool)],
    make_fd: &mut dyn FnMut() -> Option<OwnedFd>,
) -> (Vec<T>, Option<Error>, bool) {
    let me = Shape::of::<T>();
    let mut cut = false;
    let mut decoder = Decoder::new(me.clone(), me, limits);
    let mut fds = Attached::default();
    let mut msgs = Vec::new();
    let mut start = 0;
    let mut end = 0;
    let chunk = chunk.max(1);
    let mut batches = batches.iter().copied().peekable();
    loop {
        match decoder.decode::<T>(&bytes[start..end], &mut fds) {
            Err(e) => return (msgs, Some(e), cut),
            Ok(Decoded::Message { msg, used, .. }) => {
                msgs.push(msg);
                start += used;
            }
            Ok(Decoded::Reply {
                failed: true,
                payload,
                fds,
                used,
                ..
            }) => {
                // As a receiver does: a failure report must decode.
                let range = start + payload.start..start + payload.end;
                if let Err(e) = decode_payload_with::<super::Failure>(
                    &bytes[range],
                    limits.decode_budget,
                    fds,
                    limits.max_shm_len,
                ) {
                    return (msgs, Some(e), cut);
                }
                start += used;
            }
            Ok(Decoded::Reply { id, .. }) => {
                // No call is waiting in a stream decoded on its own.
                return (msgs, Some(Error::UnexpectedReply { id }), cut);
            }
            Ok(Decoded::Panicked { message, .. }) => {
                return (msgs, Some(Error::PeerPanicked { message }), cut);
            }
            Ok(Decoded::Hello { used, .. }) => start += used,
            Ok(Decoded::Need(_)) if end == bytes.len() => {
                if start == end
                    && let Err(e) = fds.finish()
                {
                    return (msgs, Some(e), cut);
                }
                let err = (start < end).then_some(Error::Truncated {
                    what: if decoder.awaiting_hello() {
                        Part::Hello
                    } else {
                        Part::Frame
                    },
                });
                return (msgs, err, cut);
            }
            Ok(Decoded::Need(_)) => {
                let mut next = (end + chunk).min(bytes.len());
                // Batches behind the bytes already read can no longer arrive.
                while batches.next_if(|&(at, _, _)| at < end).is_some() {}
                let mut arrived = Vec::new();
                let mut truncated = false;
                if let Some(&(at, count, short)) = batches.peek()
                    && at < next
                {
                    batches.next();
                    arrived = (0..count).map_while(|_| make_fd()).collect();
                    truncated = short;
                    cut |= short;
                    // The kernel ends a read after the segment that carried descriptors;
                    // here, before the next batch, so that each read brings one.
                    if let Some(&(following, _, _)) = batches.peek() {
                        next = next.min(following.max(at + 1));
                    }
                }
                fds.read(next - end, arrived, truncated, &limits);
                end = next;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::{encode_frame, encode_hello};

    #[aiosock_derive::protocol(crate = "crate")]
    #[derive(Debug, Clone, PartialEq)]
    enum Msg {
        Unit,
        Num(u64),
        Text { s: String },
        Blob(Vec<u8>),
        Nested(Option<Vec<(u16, String)>>),
    }

    fn msg() -> impl Strategy<Value = Msg> {
        prop_oneof![
            Just(Msg::Unit),
            any::<u64>().prop_map(Msg::Num),
            ".{0,20}".prop_map(|s| Msg::Text { s }),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(Msg::Blob),
            proptest::option::of(proptest::collection::vec((any::<u16>(), ".{0,5}"), 0..4))
                .prop_map(Msg::Nested),
        ]
    }

    /// The hello of a side that sends and expects `P`.
    fn hello_of<P: Protocol>() -> Vec<u8> {
        let mut out = Vec::new();
        let shape = Shape::of::<P>();
        encode_hello(&mut out, &shape, &shape);
        out
    }

    fn stream(msgs: &[Msg]) -> Vec<u8> {
        let mut out = hello_of::<Msg>();
        for m in msgs {
            encode_frame(&mut out, m, 1 << 20).unwrap();
        }
        out
    }

    proptest! {
        #[test]
        fn valid_streams_decode_whole_at_any_chunk_size(
            msgs in proptest::collection::vec(msg(), 0..16),
            chunk in 1usize..64,
        ) {
            let bytes = stream(&msgs);
            let (got, err) = decode_stream::<Msg>(&bytes, chunk, Limits::new(1 << 20));
            prop_assert!(err.is_none(), "{err:?}");
            prop_assert_eq!(got, msgs);
        }

        #[test]
        fn mutated_streams_give_a_prefix_then_at_most_an_error(
            msgs in proptest::collection::vec(msg(), 1..8),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
            chunk in 1usize..64,
        ) {
            let mut bytes = stream(&msgs);
            for (at, byte) in flips {
                let at = at % bytes.len();
                bytes[at] ^= byte;
            }
            bytes.truncate(cut % (bytes.len() + 1));
            // Whatever happens, no panic, and no more messages than frames were written.
            let (got, _err) = decode_stream::<Msg>(&bytes, chunk, Limits::new(1 << 20));
            prop_assert!(got.len() <= msgs.len() + bytes.len() / 8);
        }

        #[test]
        fn random_bytes_after_a_valid_hello_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..512),
            chunk in 1usize..64,
        ) {
            let mut bytes = stream(&[]);
            bytes.extend(tail);
            let _ = decode_stream::<Msg>(&bytes, chunk, Limits::new(4096));
        }
    }

    #[aiosock_derive::protocol(crate = "crate")]
    #[derive(Debug)]
    enum Carry {
        Num(u64),
        One(crate::Fd),
        Files(Vec<crate::Fd>),
        Maybe(Option<crate::Fd>, String),
    }

    /// Descriptors of one memfd named for this test, and how many of them are open.
    struct Marked {
        memfd: std::fs::File,
        name: String,
    }

    impl Marked {
        fn new(tag: &str) -> Marked {
            let name = format!("aiosock-wire-{tag}-{}", std::process::id());
            let cname = std::ffi::CString::new(name.clone()).unwrap();
            let memfd = nix::sys::memfd::memfd_create(
                cname.as_c_str(),
                nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
            )
            .unwrap();
            Marked {
                memfd: memfd.into(),
                name,
            }
        }

        fn fd(&self) -> Option<OwnedFd> {
            self.memfd.try_clone().ok().map(OwnedFd::from)
        }

        /// Descriptors of the memfd open, other than `self.memfd`.
        fn open(&self) -> usize {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|t| t.to_string_lossy().contains(&self.name))
                .count()
                - 1
        }
    }

    fn carry() -> impl Strategy<Value = (u8, u8)> {
        (0u8..4, 0u8..5)
    }

    /// A stream of `Carry` messages (kinds and descriptor counts from `shapes`), and where
    /// each frame's descriptors go: its first byte.
    fn carry_stream(shapes: &[(u8, u8)], marked: &Marked) -> (Vec<u8>, Vec<(usize, usize, bool)>) {
        let mut bytes = hello_of::<Carry>();
        let mut batches = Vec::new();
        for (i, &(kind, n)) in shapes.iter().enumerate() {
            let fd = || crate::Fd::from(marked.fd().unwrap());
            let msg = match kind {
                0 => Carry::Num(i as u64),
                1 => Carry::One(fd()),
                2 => Carry::Files((0..n).map(|_| fd()).collect()),
                _ => Carry::Maybe((n % 2 == 1).then(fd), "x".repeat(usize::from(n) * 50)),
            };
            let at = bytes.len();
            let sent = crate::wire::encode_frame_as(&mut bytes, &msg, 1 << 20, Kind::Message)
                .unwrap()
                .len();
            if sent > 0 {
                batches.push((at, sent, false));
            }
        }
        (bytes, batches)
    }

    proptest! {
        #[test]
        fn descriptors_reach_their_own_messages_at_any_chunk_size(
            shapes in proptest::collection::vec(carry(), 0..24),
            chunk in 1usize..200,
        ) {
            let marked = Marked::new("valid");
            let (bytes, batches) = carry_stream(&shapes, &marked);
            let sent: usize = batches.iter().map(|b| b.1).sum();
            let (got, err, cut) = decode_stream_with::<Carry>(
                &bytes, chunk, Limits::new(1 << 20), &batches, &mut || marked.fd());
            prop_assert!(err.is_none(), "{err:?}");
            prop_assert!(!cut);
            prop_assert_eq!(got.len(), shapes.len());
            prop_assert_eq!(marked.open(), sent, "each descriptor in its message");
            for (msg, &(kind, n)) in got.iter().zip(&shapes) {
                let fds = match msg {
                    Carry::Num(_) => 0,
                    Carry::One(_) => 1,
                    Carry::Files(f) => f.len(),
                    Carry::Maybe(f, s) => { prop_assert_eq!(s.len(), usize::from(n) * 50); usize::from(f.is_some()) }
                };
                let expected = match kind { 0 => 0, 1 => 1, 2 => usize::from(n), _ => usize::from(n % 2) };
                prop_assert_eq!(fds, expected);
            }
            drop(got);
            prop_assert_eq!(marked.open(), 0);
        }

        #[test]
        fn misplaced_descriptors_are_an_error_and_closed_never_a_leak(
            shapes in proptest::collection::vec(carry(), 1..12),
            moves in proptest::collection::vec(
                (any::<usize>(), 0usize..6, proptest::bool::weighted(0.2)), 0..6),
            chunk in 1usize..200,
        ) {
            let marked = Marked::new("misplaced");
            let (bytes, mut batches) = carry_stream(&shapes, &marked);
            for (at, count, truncated) in moves {
                let at = at % bytes.len();
                match batches.iter_mut().find(|b| b.0 >= at) {
                    Some(batch) if count % 2 == 0 => *batch = (at, count, truncated),
                    _ => batches.push((at, count, truncated)),
                }
            }
            batches.sort();
            let (got, err, cut) = decode_stream_with::<Carry>(
                &bytes, chunk, Limits::new(1 << 20), &batches, &mut || marked.fd());
            let delivered: usize = got.iter().map(|m| match m {
                Carry::Num(_) => 0,
                Carry::One(_) => 1,
                Carry::Files(f) => f.len(),
                Carry::Maybe(f, _) => usize::from(f.is_some()),
            }).sum();
            prop_assert_eq!(marked.open(), delivered, "only delivered descriptors stay open");
            prop_assert!(!cut || err.is_some(), "a cut-short read ended the stream cleanly");
        }
    }

    #[test]
    fn a_byte_string_claiming_more_than_its_frame_fails_without_allocating_it() {
        // `Blob` (variant 3) with a length of 2^40 (varint 0xfd + u64) in an 11-byte frame.
        let mut payload = vec![3, 0xfd];
        payload.extend((1u64 << 40).to_le_bytes());
        let mut bytes = stream(&[]);
        bytes.extend((payload.len() as u32).to_le_bytes());
        bytes.extend([0, 0, 0, 0]);
        bytes.extend(payload);
        let (got, err) = decode_stream::<Msg>(&bytes, 64, Limits::new(1 << 20));
        assert!(got.is_empty());
        assert!(matches!(err, Some(Error::Decode(_))), "{err:?}");
    }

    #[aiosock_derive::protocol(crate = "crate")]
    #[derive(Debug, Clone, PartialEq)]
    enum Tree {
        Leaf(String),
        Node(Box<Tree>),
        Many(Vec<Tree>),
    }

    fn tree_frames(payload: &[u8]) -> Vec<u8> {
        let mut bytes = hello_of::<Tree>();
        bytes.extend((payload.len() as u32).to_le_bytes());
        bytes.extend([0, 0, 0, 0]);
        bytes.extend(payload);
        bytes
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // `Node(Node(Node(…)))` a million levels deep: one byte (variant 1) per level.
        let mut payload = vec![1u8; 1_000_000];
        payload.extend([0, 0]); // Leaf("")
        let (got, err) =
            decode_stream::<Tree>(&tree_frames(&payload), 1 << 20, Limits::new(1 << 21));
        assert!(got.is_empty());
        assert!(
            matches!(err, Some(Error::TooDeep { max: 128 })),
            "expected TooDeep, got {err:?}"
        );
        // Through sequences too: `Many([Many([…])])`.
        let payload: Vec<u8> = std::iter::repeat_n([2u8, 1], 100_000).flatten().collect();
        let (_, err) = decode_stream::<Tree>(&tree_frames(&payload), 1 << 20, Limits::new(1 << 21));
        assert!(matches!(err, Some(Error::TooDeep { max: 128 })), "{err:?}");
    }

    #[test]
    fn ordinary_nesting_decodes() {
        let mut tree = Tree::Leaf("leaf".into());
        for i in 0..30 {
            tree = if i % 2 == 0 {
                Tree::Node(Box::new(tree))
            } else {
                Tree::Many(vec![tree, Tree::Leaf(i.to_string())])
            };
        }
        let mut bytes = hello_of::<Tree>();
        encode_frame(&mut bytes, &tree, 1 << 20).unwrap();
        let (got, err) = decode_stream::<Tree>(&bytes, 5, Limits::new(1 << 20));
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got, [tree]);
    }

    #[test]
    fn the_hello_is_checked_before_any_frame() {
        let mut bytes = Vec::new();
        let other = Shape::plain("Other", 1);
        encode_hello(&mut bytes, &other, &other);
        encode_frame(&mut bytes, &Msg::Unit, 1 << 20).unwrap();
        let (got, err) = decode_stream::<Msg>(&bytes, 7, Limits::new(1 << 20));
        assert!(got.is_empty());
        assert!(matches!(err, Some(Error::ProtocolMismatch(_))), "{err:?}");
    }

    #[test]
    fn a_stream_cut_mid_frame_is_truncated_after_the_whole_messages() {
        let bytes = stream(&[Msg::Num(1), Msg::Text { s: "abc".into() }]);
        let (got, err) = decode_stream::<Msg>(&bytes[..bytes.len() - 1], 3, Limits::new(1 << 20));
        assert_eq!(got, [Msg::Num(1)]);
        assert!(
            matches!(err, Some(Error::Truncated { what: Part::Frame })),
            "{err:?}"
        );
    }
}
