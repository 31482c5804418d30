//! Frame headers and payloads.

use bincode::config::{Configuration, standard};
use serde::Serialize;
use serde::de::DeserializeOwned;

use std::os::fd::OwnedFd;

use super::budget::{Budget, Budgeted, Exceeded, MAX_DEPTH, units_for};
use super::{CALL_ID_LEN, HEADER_LEN, MAX_FDS_PER_FRAME};
use crate::error::{DecodeError, EncodeError, Error, FdError, InvalidMessage};
use crate::fd;
use crate::sys::{Lendable, Lent, Span};

const CONFIG: Configuration = standard();

/// What a frame carries, from its flags (and call id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A one-way message.
    Message,
    /// A message the sender wants answered; the answer names this call id.
    Call(u64),
    /// The reply to call `id`: a value of the call's reply type.
    Reply(u64),
    /// Call `id` failed on the answering side: the payload is a [`Failure`].
    Failed(u64),
    /// The sender's `serve` stopped on a panic: the payload is the panic's message.
    Panicked,
}

/// The frame carries a call: a call id follows the fixed header.
pub(crate) const FLAG_CALL: u16 = 0x0001;
/// The frame answers a call: a call id follows the fixed header.
pub(crate) const FLAG_REPLY: u16 = 0x0002;
/// With [`FLAG_REPLY`]: the call failed, and the payload says why.
pub(crate) const FLAG_FAILED: u16 = 0x0004;
/// The sender's `serve` stopped on a panic; the payload is the message.
pub(crate) const FLAG_PANICKED: u16 = 0x0008;

impl Kind {
    fn flags(self) -> u16 {
        match self {
            Kind::Message => 0,
            Kind::Call(_) => FLAG_CALL,
            Kind::Reply(_) => FLAG_REPLY,
            Kind::Failed(_) => FLAG_REPLY | FLAG_FAILED,
            Kind::Panicked => FLAG_PANICKED,
        }
    }

    fn id(self) -> Option<u64> {
        match self {
            Kind::Call(id) | Kind::Reply(id) | Kind::Failed(id) => Some(id),
            Kind::Message | Kind::Panicked => None,
        }
    }

    /// The header's length for a frame of this kind.
    pub(crate) fn header_len(self) -> usize {
        if self.id().is_some() {
            HEADER_LEN + CALL_ID_LEN
        } else {
            HEADER_LEN
        }
    }
}

/// Why a call failed on the answering side: the payload of a [`Kind::Failed`] frame.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Failure {
    /// The handler panicked, with this message.
    Panicked(String),
    /// The call was received but not answered.
    Unanswered,
    /// The handler's reply could not be sent, for this reason.
    BadReply(String),
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    /// Payload length in bytes, checked against the maximum.
    pub(crate) len: usize,
    /// Descriptors that travel with the frame, checked against the maximum.
    pub(crate) fds: usize,
    /// What the frame carries.
    pub(crate) kind: Kind,
}

impl FrameHeader {
    /// Decodes and checks the header at the start of `buf`; `Ok(None)` if `buf` is shorter
    /// than the header. Nothing is allocated: the length is checked against `max` (and the
    /// descriptor count against `max_fds`) first.
    #[inline]
    pub(crate) fn decode(
        buf: &[u8],
        max: usize,
        max_fds: usize,
    ) -> Result<Option<FrameHeader>, Error> {
        let Some(head) = buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let fds = usize::from(u16::from_le_bytes([head[4], head[5]]));
        let flags = u16::from_le_bytes([head[6], head[7]]);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > max {
            return Err(Error::FrameTooLarge { len, max });
        }
        if fds > max_fds {
            return Err(Error::Fds(FdError::TooManyInFrame {
                count: fds,
                max: max_fds,
            }));
        }
        if flags == 0 {
            return Ok(Some(FrameHeader {
                len,
                fds,
                kind: Kind::Message,
            }));
        }
        Self::decode_flagged(buf, len, fds, flags)
    }

    #[cold]
    fn decode_flagged(
        buf: &[u8],
        len: usize,
        fds: usize,
        flags: u16,
    ) -> Result<Option<FrameHeader>, Error> {
        const KNOWN: u16 = FLAG_CALL | FLAG_REPLY | FLAG_FAILED | FLAG_PANICKED;
        if flags & !KNOWN != 0 {
            return Err(Error::UnknownFlags { flags });
        }
        let with_id = |make: fn(u64) -> Kind| -> Option<Kind> {
            let id = buf.get(HEADER_LEN..HEADER_LEN + CALL_ID_LEN)?;
            let mut bytes = [0u8; CALL_ID_LEN];
            bytes.copy_from_slice(id);
            Some(make(u64::from_le_bytes(bytes)))
        };
        let kind = match flags {
            FLAG_CALL => with_id(Kind::Call),
            FLAG_REPLY => with_id(Kind::Reply),
            f if f == FLAG_REPLY | FLAG_FAILED => with_id(Kind::Failed),
            FLAG_PANICKED => Some(Kind::Panicked),
            _ => return Err(Error::BadFlags { flags }),
        };
        Ok(kind.map(|kind| FrameHeader { len, fds, kind }))
    }

    /// The header's length.
    pub(crate) fn header_len(self) -> usize {
        self.kind.header_len()
    }

    /// Header plus payload length.
    pub(crate) fn frame_len(self) -> usize {
        self.header_len() + self.len
    }
}

/// Appends one frame holding `msg` to `out`. On error `out` is left as it was. For a
/// message without descriptors (the tests, the benchmark's wire rows).
#[inline]
pub(crate) fn encode_frame<T: Serialize>(
    out: &mut Vec<u8>,
    msg: &T,
    max: usize,
) -> Result<(), InvalidMessage> {
    encode_frame_as(out, msg, max, Kind::Message).map(drop)
}

/// Appends one frame of `kind` holding `msg` to `out`, and returns the descriptors the
/// frame carries: duplicates of those in `msg` (see [`crate::fd`]), which the frame's
/// header counts and which must travel with its first byte. On error `out` is left as it
/// was and the duplicates are closed.
#[inline]
pub(crate) fn encode_frame_as<T: Serialize>(
    out: &mut Vec<u8>,
    msg: &T,
    max: usize,
    kind: Kind,
) -> Result<Vec<OwnedFd>, InvalidMessage> {
    // The common path: no byte field to leave out, so a writer that only appends, and no
    // descriptor passed as it is.
    let encode = |out: &mut Vec<u8>, _| {
        let encoded = bincode::serde::encode_into_writer(msg, AppendWriter(out), CONFIG);
        (encoded, 0)
    };
    framed(out, max, kind, &[], encode).map(|(fds, _)| fds)
}

/// [`encode_frame_as`] that leaves out the bytes of the byte fields `fields` (see
/// [`sys::Holding`](crate::sys::Holding)): where the encoding would copy exactly one of
/// them, `held` gets the field, with the offset in the frame (from its first byte, the
/// header's) where its bytes belong, and `out` gets nothing. The header's length counts
/// them. The frame is `out`'s new bytes with each held field's bytes put in at its offset.
/// The descriptor fields `lendable` are passed as they are: they come back second, each
/// with its index among the frame's descriptors (the duplicates, first, take the others).
pub(crate) fn encode_frame_holding<T: Serialize>(
    out: &mut Vec<u8>,
    msg: &T,
    max: usize,
    kind: Kind,
    (fields, lendable): (&[Span], &[Lendable]),
    held: &mut Vec<(usize, Span)>,
) -> Result<(Vec<OwnedFd>, Lent), InvalidMessage> {
    held.clear();
    let result = framed(out, max, kind, lendable, |out, start| {
        let writer = FrameWriter {
            out,
            start,
            fields,
            held: &mut *held,
        };
        let encoded = bincode::serde::encode_into_writer(msg, writer, CONFIG);
        (encoded, held.iter().map(|(_, f)| f.len()).sum())
    });
    if result.is_err() {
        held.clear();
    }
    result
}

/// What an encode gives [`framed`]: bincode's result, and how many payload bytes it left
/// out of the buffer.
type Encoded = (Result<(), bincode::error::EncodeError>, usize);

/// The frame around an encode: appends the header's room to `out`, runs `encode` (given
/// `out` and where the frame starts) with a collector for the descriptors installed
/// ([`fd::collecting`], or [`fd::lending`] the descriptor fields `lendable`), checks the
/// result and fills the header in. The frame's descriptors come back: the duplicates, and
/// those passed as they are with their indices. On error `out` is left as it was and the
/// duplicates are closed.
#[inline(always)]
fn framed(
    out: &mut Vec<u8>,
    max: usize,
    kind: Kind,
    lendable: &[Lendable],
    encode: impl FnOnce(&mut Vec<u8>, usize) -> Encoded,
) -> Result<(Vec<OwnedFd>, Lent), InvalidMessage> {
    let start = out.len();
    let header_len = kind.header_len();
    // Constant lengths, so that each is one store rather than a call to `memset`.
    if header_len == HEADER_LEN {
        out.extend_from_slice(&[0; HEADER_LEN]);
    } else {
        out.extend_from_slice(&[0; HEADER_LEN + CALL_ID_LEN]);
    }
    let run = || encode(&mut *out, start);
    let ((encoded, left_out), collected) = if lendable.is_empty() {
        fd::collecting(run)
    } else {
        fd::lending(lendable, run)
    };
    let (fds, failure, lent) = (collected.fds, collected.failure, collected.lent);
    let count = fds.len() + lent.len();
    let len = out.len() - start - header_len + left_out;
    let result = match (encoded, failure) {
        // Out of descriptors: a resource error, not the message's fault.
        (Err(_), Some(failure)) => Err(InvalidMessage::FdDuplicate(failure)),
        (Err(source), None) => Err(InvalidMessage::Encode(EncodeError(source))),
        (Ok(()), _) => Ok(()),
    };
    let result = match result {
        Err(why) => Err(why),
        Ok(()) if len > max => Err(InvalidMessage::TooLarge { len, max }),
        Ok(()) if count > MAX_FDS_PER_FRAME => Err(InvalidMessage::TooManyFds {
            count,
            max: MAX_FDS_PER_FRAME,
        }),
        Ok(()) => match u32::try_from(len) {
            Ok(len32) => {
                // At most MAX_FDS_PER_FRAME (253), checked above.
                let count = u16::try_from(count).unwrap_or(u16::MAX);
                write_header(&mut out[start..start + header_len], len32, count, kind);
                return Ok((fds, lent));
            }
            Err(_) => Err(InvalidMessage::TooLarge {
                len,
                max: u32::MAX as usize,
            }),
        },
    };
    out.truncate(start);
    result
}

/// Completes a frame made by [`encode_frame_as`] with `Kind::Reply(_)`: sets its call id
/// and checks its payload against `max`.
pub(crate) fn finish_reply(frame: &mut [u8], id: u64, max: usize) -> Result<(), InvalidMessage> {
    let len = frame.len() - HEADER_LEN - CALL_ID_LEN;
    if len > max {
        return Err(InvalidMessage::TooLarge { len, max });
    }
    frame[HEADER_LEN..HEADER_LEN + CALL_ID_LEN].copy_from_slice(&id.to_le_bytes());
    Ok(())
}

#[inline]
fn write_header(head: &mut [u8], len: u32, fds: u16, kind: Kind) {
    head[0..4].copy_from_slice(&len.to_le_bytes());
    head[4..6].copy_from_slice(&fds.to_le_bytes());
    head[6..8].copy_from_slice(&kind.flags().to_le_bytes());
    if let Some(id) = kind.id() {
        head[8..16].copy_from_slice(&id.to_le_bytes());
    }
}

/// Encodes `value` as a payload on its own (no frame header).
#[cfg(test)]
pub(crate) fn encode_payload<T: Serialize>(value: &T) -> Result<Vec<u8>, EncodeError> {
    encode_payload_with(value).map(|(payload, _)| payload)
}

/// Encodes `value` as a payload on its own, with the descriptors it carries.
#[cfg(test)]
pub(crate) fn encode_payload_with<T: Serialize>(
    value: &T,
) -> Result<(Vec<u8>, Vec<OwnedFd>), EncodeError> {
    let mut out = Vec::new();
    let writer = FrameWriter {
        out: &mut out,
        start: 0,
        fields: &[],
        held: &mut Vec::new(),
    };
    let (encoded, collected) =
        fd::collecting(|| bincode::serde::encode_into_writer(value, writer, CONFIG));
    encoded.map_err(EncodeError)?;
    Ok((out, collected.fds))
}

/// Decodes one message from a whole payload, which it must consume exactly, spending at
/// most `per_byte` units of decode budget per payload byte (plus the fixed allowance).
/// For a frame that carries no descriptors.
///
/// # Allocation and work
///
/// Decoding goes through [`Budgeted`](super::budget): every value is charged before it is
/// decoded, so a payload that would make the receiver build more than its budget allows
/// fails with [`Error::OverBudget`] before the allocation, and nesting deeper than
/// [`MAX_DEPTH`](super::budget::MAX_DEPTH) levels fails with [`Error::TooDeep`] (no stack
/// overflow). Strings and byte buffers are decoded borrowed, so a claimed length is checked
/// against the payload before anything is allocated.
#[inline]
pub(crate) fn decode_payload<T: DeserializeOwned>(
    payload: &[u8],
    per_byte: usize,
) -> Result<T, Error> {
    decode_payload_with(payload, per_byte, Vec::new(), 0)
}

/// [`decode_payload`] for a frame that carries `fds`: the message's descriptor fields
/// take them by index (see [`crate::fd`]), each exactly once, and shared-memory buffers up
/// to `max_shm_len` bytes are accepted. A descriptor the message does not take is
/// [`FdError::Unused`], and is closed with any that an error leaves.
#[inline]
pub(crate) fn decode_payload_with<T: DeserializeOwned>(
    payload: &[u8],
    per_byte: usize,
    fds: Vec<OwnedFd>,
    max_shm_len: u64,
) -> Result<T, Error> {
    decode_payload_counted(payload, per_byte, fds, max_shm_len).map(|(msg, _)| msg)
}

/// [`decode_payload_with`], also returning the budget units the message took: its heap
/// is within [`MEMORY_PER_UNIT`](super::budget::MEMORY_PER_UNIT) bytes per unit.
#[inline]
pub(crate) fn decode_payload_counted<T: DeserializeOwned>(
    payload: &[u8],
    per_byte: usize,
    fds: Vec<OwnedFd>,
    max_shm_len: u64,
) -> Result<(T, usize), Error> {
    let (decoded, spent) = decode_payload_metered(payload, per_byte, fds, max_shm_len);
    decoded.map(|msg| (msg, spent))
}

/// [`decode_payload`], also returning the budget units spent (on an error too): what the
/// decode-budget tests and fuzz target check the bounds of, measured by the same code as
/// every payload's decode.
pub(crate) fn decode_payload_spending<T: DeserializeOwned>(
    payload: &[u8],
    per_byte: usize,
) -> (Result<T, Error>, usize) {
    decode_payload_metered(payload, per_byte, Vec::new(), 0)
}

/// The one decode of a payload under the budget, with the frame's descriptors: the
/// message or the error, and the budget units spent either way.
#[inline]
fn decode_payload_metered<T: DeserializeOwned>(
    payload: &[u8],
    per_byte: usize,
    fds: Vec<OwnedFd>,
    max_shm_len: u64,
) -> (Result<T, Error>, usize) {
    let units = units_for(payload.len(), per_byte);
    let budget = Budget::new(units);
    let (decoded, taken) = fd::providing(fds, max_shm_len, || {
        bincode::serde::seed_decode_from_slice(Budgeted::<T>::new(&budget), payload, CONFIG)
    });
    let spent = units - budget.left();
    // A limit of ours decides the error first, then a descriptor the message could not
    // take (which made serde fail), then bincode's own error.
    if budget.exceeded().is_none()
        && let Some(problem) = taken.problem
    {
        return (Err(Error::Fds(problem)), spent);
    }
    let decoded =
        checked(payload.len(), units, &budget, decoded).and_then(|msg| match taken.unused {
            0 => Ok(msg),
            count => Err(Error::Fds(FdError::Unused { count })),
        });
    (decoded, spent)
}

#[inline]
fn checked<T>(
    len: usize,
    units: usize,
    budget: &Budget,
    decoded: Result<(T, usize), bincode::error::DecodeError>,
) -> Result<T, Error> {
    // A limit of ours that was hit decides the error, even if a visitor swallowed it.
    if let Some(why) = budget.exceeded() {
        return Err(match why {
            Exceeded::Budget => Error::OverBudget { len, budget: units },
            Exceeded::Depth => Error::TooDeep { max: MAX_DEPTH },
        });
    }

    match decoded {
        Ok((msg, used)) if used == len => Ok(msg),
        Ok((_, used)) => Err(Error::TrailingBytes { len, used }),
        Err(source) => Err(Error::Decode(DecodeError(source))),
    }
}

/// The bincode writer of a frame with nothing left out: appends to the `Vec`.
struct AppendWriter<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for AppendWriter<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        crate::bytes::extend(self.0, bytes);
        Ok(())
    }
}

/// The bincode writer of a frame: appends to `out`, but records a write of exactly one of
/// `fields` (the whole buffer of a byte field: bincode writes a byte string's bytes in one
/// call, after its length) in `held`, with its offset from `start`, instead of copying it.
struct FrameWriter<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    fields: &'a [Span],
    held: &'a mut Vec<(usize, Span)>,
}

impl bincode::enc::write::Writer for FrameWriter<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        if !self.fields.is_empty()
            && let Some(field) = self.fields.iter().find(|field| field.is(bytes))
        {
            let at = self.out.len() - self.start;
            self.held.push((at, *field));
            return Ok(());
        }
        crate::bytes::extend(self.out, bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Msg {
        Ping(u64),
        Text { s: String },
        Items(Vec<u64>),
        Unit,
    }

    fn frame(msg: &Msg) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, msg, usize::MAX).unwrap();
        out
    }

    fn decode_all(bytes: &[u8], max: usize) -> Result<Vec<Msg>, Error> {
        let mut at = 0;
        let mut out = Vec::new();
        while let Some(h) = FrameHeader::decode(&bytes[at..], max, 8)? {
            let Some(payload) = bytes.get(at + HEADER_LEN..at + h.frame_len()) else {
                break;
            };
            out.push(decode_payload(payload, 16)?);
            at += h.frame_len();
        }
        Ok(out)
    }

    #[test]
    fn test_vector() {
        let mut bytes = frame(&Msg::Ping(300));
        bytes.extend(frame(&Msg::Text { s: "hi".into() }));
        bytes.extend(frame(&Msg::Unit));
        let expected: &[u8] = &[
            4, 0, 0, 0, 0, 0, 0, 0, // len 4, no fds, no flags
            0, 251, 44, 1, // variant 0, varint 300 (0xfb marker + u16 LE)
            4, 0, 0, 0, 0, 0, 0, 0, // len 4
            1, 2, b'h', b'i', // variant 1, string length 2, bytes
            1, 0, 0, 0, 0, 0, 0, 0, // len 1
            3, // variant 3
        ];
        assert_eq!(bytes, expected);
        assert_eq!(
            decode_all(&bytes, 64).unwrap(),
            [Msg::Ping(300), Msg::Text { s: "hi".into() }, Msg::Unit]
        );
    }

    #[test]
    fn every_split_point_needs_more_or_decodes() {
        let bytes = frame(&Msg::Text {
            s: "hello world".into(),
        });
        for cut in 0..bytes.len() {
            let part = &bytes[..cut];
            match FrameHeader::decode(part, 1024, 8).unwrap() {
                None => assert!(cut < HEADER_LEN),
                Some(h) => assert!(part.len() < h.frame_len()),
            }
        }
        assert_eq!(decode_all(&bytes, 1024).unwrap().len(), 1);
    }

    #[test]
    fn oversized_length_is_rejected_from_the_header_alone() {
        for len in [u32::MAX, 1 << 31, 65] {
            let mut head = len.to_le_bytes().to_vec();
            head.extend([0, 0, 0, 0]);
            let err = FrameHeader::decode(&head, 64, 8).unwrap_err();
            assert!(
                matches!(err, Error::FrameTooLarge { len: l, max: 64 } if l == len as usize),
                "{err}"
            );
        }
        let mut head = 64u32.to_le_bytes().to_vec();
        head.extend([0, 0, 0, 0]);
        assert_eq!(
            FrameHeader::decode(&head, 64, 8).unwrap(),
            Some(FrameHeader {
                len: 64,
                fds: 0,
                kind: Kind::Message
            })
        );
    }

    #[test]
    fn too_many_fds_and_unknown_or_conflicting_flags_are_rejected() {
        let head = [0, 0, 0, 0, 9, 0, 0, 0];
        assert!(matches!(
            FrameHeader::decode(&head, 64, 8),
            Err(Error::Fds(FdError::TooManyInFrame { count: 9, max: 8 }))
        ));
        assert_eq!(
            FrameHeader::decode(&head, 64, 9).unwrap().map(|h| h.fds),
            Some(9)
        );
        for flags in [0x0010u16, 0x8000, 0x0011] {
            let mut head = vec![0, 0, 0, 0, 0, 0];
            head.extend(flags.to_le_bytes());
            head.extend([0; 8]);
            assert!(
                matches!(FrameHeader::decode(&head, 64, 8), Err(Error::UnknownFlags { flags: f }) if f == flags),
                "{flags:#x}"
            );
        }
        // Every combination of known bits but the five valid ones.
        let valid = [
            0,
            FLAG_CALL,
            FLAG_REPLY,
            FLAG_REPLY | FLAG_FAILED,
            FLAG_PANICKED,
        ];
        for flags in (0..16u16).filter(|f| !valid.contains(f)) {
            let mut head = vec![0, 0, 0, 0, 0, 0];
            head.extend(flags.to_le_bytes());
            head.extend([0; 8]);
            assert!(
                matches!(FrameHeader::decode(&head, 64, 8), Err(Error::BadFlags { flags: f }) if f == flags),
                "{flags:#x}"
            );
        }
    }

    #[test]
    fn fd_test_vector() {
        #[derive(serde::Serialize)]
        enum Carry {
            _Num(u64),
            Two(crate::Fd, Option<crate::Fd>, u8),
        }
        let open = || crate::Fd::from(std::fs::File::open("/dev/null").unwrap());
        let mut bytes = Vec::new();
        let fds = encode_frame_as(
            &mut bytes,
            &Carry::Two(open(), Some(open()), 9),
            64,
            Kind::Call(5),
        )
        .unwrap();
        let expected: &[u8] = &[
            5, 0, 0, 0, 2, 0, 1, 0, // len 5, two fds, CALL
            5, 0, 0, 0, 0, 0, 0, 0, // call id 5
            1, 0, 1, 1, 9, // variant 1, fd 0, Some(fd 1), 9
        ];
        assert_eq!(bytes, expected);
        assert_eq!(fds.len(), 2);
        let header = FrameHeader::decode(&bytes, 64, 2).unwrap().unwrap();
        assert_eq!((header.fds, header.kind), (2, Kind::Call(5)));
    }

    #[test]
    fn a_message_with_more_descriptors_than_one_send_passes_is_refused() {
        let files: Vec<crate::Fd> = (0..=MAX_FDS_PER_FRAME)
            .map(|_| crate::Fd::from(std::fs::File::open("/dev/null").unwrap()))
            .collect();
        let mut out = vec![1];
        let err = encode_frame_as(&mut out, &files, usize::MAX, Kind::Message).unwrap_err();
        assert!(matches!(
            err,
            InvalidMessage::TooManyFds {
                count: 254,
                max: 253
            }
        ));
        assert_eq!(out, [1], "nothing of the refused frame stays behind");
    }

    #[test]
    fn call_test_vector() {
        let mut bytes = Vec::new();
        encode_frame_as(&mut bytes, &Msg::Ping(7), 64, Kind::Call(0x0102)).unwrap();
        let mut reply = Vec::new();
        encode_frame_as(&mut reply, &49u64, usize::MAX, Kind::Reply(0)).unwrap();
        finish_reply(&mut reply, 0x0102, 64).unwrap();
        bytes.extend(reply);
        encode_frame_as(&mut bytes, &Failure::Unanswered, 64, Kind::Failed(3)).unwrap();
        encode_frame_as(
            &mut bytes,
            &Failure::Panicked("x".into()),
            64,
            Kind::Failed(4),
        )
        .unwrap();
        encode_frame_as(&mut bytes, &"boom", 64, Kind::Panicked).unwrap();
        let expected: &[u8] = &[
            2, 0, 0, 0, 0, 0, 1, 0, // len 2, no fds, CALL
            2, 1, 0, 0, 0, 0, 0, 0, // call id 0x0102
            0, 7, // variant 0 (Ping), 7
            1, 0, 0, 0, 0, 0, 2, 0, // len 1, REPLY
            2, 1, 0, 0, 0, 0, 0, 0,  // call id 0x0102
            49, // the reply: 49
            1, 0, 0, 0, 0, 0, 6, 0, // len 1, REPLY + FAILED
            3, 0, 0, 0, 0, 0, 0, 0, // call id 3
            1, // Failure::Unanswered
            3, 0, 0, 0, 0, 0, 6, 0, // len 3, REPLY + FAILED
            4, 0, 0, 0, 0, 0, 0, 0, // call id 4
            0, 1, b'x', // Failure::Panicked("x")
            5, 0, 0, 0, 0, 0, 8, 0, // len 5, PANICKED
            4, b'b', b'o', b'o', b'm', // the message
        ];
        assert_eq!(bytes, expected);
        let mut at = 0;
        let mut kinds = Vec::new();
        while let Some(h) = FrameHeader::decode(&bytes[at..], 64, 8).unwrap() {
            kinds.push((h.kind, h.len));
            at += h.frame_len();
        }
        assert_eq!(at, bytes.len());
        assert_eq!(
            kinds,
            [
                (Kind::Call(0x0102), 2),
                (Kind::Reply(0x0102), 1),
                (Kind::Failed(3), 1),
                (Kind::Failed(4), 3),
                (Kind::Panicked, 5)
            ]
        );
        // A call or reply header cut before the end of its id needs more bytes.
        for cut in HEADER_LEN..HEADER_LEN + CALL_ID_LEN {
            assert_eq!(FrameHeader::decode(&bytes[..cut], 64, 8).unwrap(), None);
        }
    }

    #[test]
    fn a_reply_over_the_maximum_is_refused() {
        let mut reply = Vec::new();
        encode_frame_as(&mut reply, &"x".repeat(100), usize::MAX, Kind::Reply(0)).unwrap();
        assert!(matches!(
            finish_reply(&mut reply, 1, 50),
            Err(InvalidMessage::TooLarge { len: 101, max: 50 })
        ));
    }

    #[test]
    fn encode_refuses_messages_over_the_maximum() {
        let mut out = vec![9];
        let err = encode_frame(&mut out, &Msg::Text { s: "x".repeat(100) }, 50).unwrap_err();
        assert!(matches!(
            err,
            InvalidMessage::TooLarge { len: 102, max: 50 }
        ));
        assert_eq!(out, [9], "nothing of the refused frame stays behind");
    }

    #[test]
    fn payloads_of_small_integers_fit_the_claim_limit() {
        // Each u64 is one varint byte but bincode claims 8 for it.
        let msg = Msg::Items(vec![7; 100_000]);
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, &msg, usize::MAX).unwrap();
        assert_eq!(
            decode_payload::<Msg>(&bytes[HEADER_LEN..], 16).unwrap(),
            msg
        );
        let text = Msg::Text {
            s: "x".repeat(4079),
        };
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, &text, usize::MAX).unwrap();
        assert_eq!(
            decode_payload::<Msg>(&bytes[HEADER_LEN..], 16).unwrap(),
            text
        );
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut payload = frame(&Msg::Unit)[HEADER_LEN..].to_vec();
        payload.push(0);
        assert!(matches!(
            decode_payload::<Msg>(&payload, 16),
            Err(Error::TrailingBytes { len: 2, used: 1 })
        ));
    }

    #[test]
    fn huge_claimed_lengths_inside_a_small_payload_do_not_allocate() {
        // Variant 2 (Items), then a varint length of 2^60 (0xfd marker + u64 LE).
        let mut payload = vec![2, 0xfd];
        payload.extend((1u64 << 60).to_le_bytes());
        assert!(matches!(
            decode_payload::<Msg>(&payload, 16),
            Err(Error::Decode(_))
        ));
        // Variant 1 (Text) with a string length of 2^60.
        payload[0] = 1;
        assert!(matches!(
            decode_payload::<Msg>(&payload, 16),
            Err(Error::Decode(_))
        ));
    }

    #[test]
    fn bad_discriminant_and_utf8_are_decode_errors() {
        assert!(matches!(
            decode_payload::<Msg>(&[7], 16),
            Err(Error::Decode(_))
        ));
        assert!(matches!(
            decode_payload::<Msg>(&[1, 2, 0xff, 0xfe], 16),
            Err(Error::Decode(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode_all(&bytes, 1 << 20);
        }

        #[test]
        fn messages_round_trip(values in proptest::collection::vec((proptest::num::u64::ANY, ".{0,40}"), 0..20)) {
            let msgs: Vec<Msg> = values
                .into_iter()
                .flat_map(|(n, s)| [Msg::Ping(n), Msg::Text { s }, Msg::Items(vec![n; 3]), Msg::Unit])
                .collect();
            let mut bytes = Vec::new();
            for m in &msgs {
                encode_frame(&mut bytes, m, 1 << 20).unwrap();
            }
            proptest::prop_assert_eq!(decode_all(&bytes, 1 << 20).unwrap(), msgs);
        }
    }
}
