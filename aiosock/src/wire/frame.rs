//! Frame headers and payloads.

use bincode::config::{Configuration, standard};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::HEADER_LEN;
use super::budget::{Budget, Budgeted, Exceeded, MAX_DEPTH, units_for};
use crate::error::{DecodeError, EncodeError, Error, InvalidMessage};

const CONFIG: Configuration = standard();

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    /// Payload length in bytes, checked against the maximum.
    pub(crate) len: usize,
}

impl FrameHeader {
    /// Decodes and checks the header at the start of `buf`; `Ok(None)` if `buf` is shorter
    /// than a header. Nothing is allocated: the length is checked against `max` first.
    pub(crate) fn decode(buf: &[u8], max: usize) -> Result<Option<FrameHeader>, Error> {
        let Some(head) = buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let fds = u16::from_le_bytes([head[4], head[5]]);
        let flags = u16::from_le_bytes([head[6], head[7]]);
        if flags != 0 {
            return Err(Error::UnknownFlags { flags });
        }
        if fds != 0 {
            return Err(Error::UnexpectedFds { count: fds });
        }
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > max {
            return Err(Error::FrameTooLarge { len, max });
        }
        Ok(Some(FrameHeader { len }))
    }

    /// Header plus payload length.
    pub(crate) fn frame_len(self) -> usize {
        HEADER_LEN + self.len
    }
}

/// Appends one frame holding `msg` to `out`. On error `out` is left as it was.
pub(crate) fn encode_frame<T: Serialize>(
    out: &mut Vec<u8>,
    msg: &T,
    max: usize,
) -> Result<(), InvalidMessage> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    let encoded = bincode::serde::encode_into_writer(msg, VecWriter(out), CONFIG);
    let len = out.len() - start - HEADER_LEN;
    let result = match encoded {
        Err(source) => Err(InvalidMessage::Encode(EncodeError(source))),
        Ok(()) if len > max => Err(InvalidMessage::TooLarge { len, max }),
        Ok(()) => match u32::try_from(len) {
            Ok(len32) => {
                out[start..start + 4].copy_from_slice(&len32.to_le_bytes());
                return Ok(());
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

/// Encodes `value` as a payload on its own (no frame header).
pub(crate) fn encode_payload<T: Serialize>(value: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    bincode::serde::encode_into_writer(value, VecWriter(&mut out), CONFIG).map_err(EncodeError)?;
    Ok(out)
}

/// Decodes one message from a whole payload, which it must consume exactly, spending at
/// most `per_byte` units of decode budget per payload byte (plus the fixed allowance).
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
    let units = units_for(payload.len(), per_byte);
    let budget = Budget::new(units);
    let decoded =
        bincode::serde::seed_decode_from_slice(Budgeted::<T>::new(&budget), payload, CONFIG);
    checked(payload.len(), units, &budget, decoded)
}

/// [`decode_payload`], also returning the budget units spent.
pub(crate) fn decode_payload_spending<T: DeserializeOwned>(
    payload: &[u8],
    per_byte: usize,
) -> (Result<T, Error>, usize) {
    let units = units_for(payload.len(), per_byte);
    let budget = Budget::new(units);
    let decoded =
        bincode::serde::seed_decode_from_slice(Budgeted::<T>::new(&budget), payload, CONFIG);
    (
        checked(payload.len(), units, &budget, decoded),
        units - budget.left(),
    )
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

/// A bincode writer that appends to a `Vec<u8>`.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for VecWriter<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
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
        while let Some(h) = FrameHeader::decode(&bytes[at..], max)? {
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
            match FrameHeader::decode(part, 1024).unwrap() {
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
            let err = FrameHeader::decode(&head, 64).unwrap_err();
            assert!(
                matches!(err, Error::FrameTooLarge { len: l, max: 64 } if l == len as usize),
                "{err}"
            );
        }
        let mut head = 64u32.to_le_bytes().to_vec();
        head.extend([0, 0, 0, 0]);
        assert_eq!(
            FrameHeader::decode(&head, 64).unwrap(),
            Some(FrameHeader { len: 64 })
        );
    }

    #[test]
    fn fds_and_flags_are_rejected_in_v1() {
        let head = [0, 0, 0, 0, 1, 0, 0, 0];
        assert!(matches!(
            FrameHeader::decode(&head, 64),
            Err(Error::UnexpectedFds { count: 1 })
        ));
        let head = [0, 0, 0, 0, 0, 0, 4, 0];
        assert!(matches!(
            FrameHeader::decode(&head, 64),
            Err(Error::UnknownFlags { flags: 4 })
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
