//! The hello that starts each direction of a connection.

use super::{HELLO_FIXED_LEN, MAGIC, MAX_NAME_LEN, VERSION};
use crate::error::Error;
use crate::protocol::{ProtocolId, Shape};

/// The tag of the extension that lists each protocol's variant fingerprints.
pub(crate) const EXT_VARIANTS: u16 = 1;

/// Appends the hello of a side that sends `sends` and expects `expects`, with the
/// variants extension when either has variants (see `FORMAT.md`).
pub(crate) fn encode_hello(out: &mut Vec<u8>, sends: &Shape, expects: &Shape) {
    let s = truncated(sends.id.name());
    let e = truncated(expects.id.name());
    let ext = variants_extension(sends, expects);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&len_u16(s).to_le_bytes());
    out.extend_from_slice(&len_u16(e).to_le_bytes());
    out.extend_from_slice(&(ext.len() as u16).to_le_bytes());
    out.extend_from_slice(&sends.id.fingerprint().to_le_bytes());
    out.extend_from_slice(&expects.id.fingerprint().to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(e.as_bytes());
    out.extend_from_slice(&ext);
}

/// The variants extension (tag, length and data), or nothing when neither side has
/// variants or the lists do not fit in an extension.
fn variants_extension(sends: &Shape, expects: &Shape) -> Vec<u8> {
    if sends.variants.is_empty() && expects.variants.is_empty() {
        return Vec::new();
    }
    let mut data = Vec::new();
    for shape in [sends, expects] {
        let (Ok(count), Ok(baseline)) = (
            u16::try_from(shape.variants.len()),
            u16::try_from(shape.baseline),
        ) else {
            return Vec::new();
        };
        data.extend_from_slice(&count.to_le_bytes());
        data.extend_from_slice(&baseline.to_le_bytes());
        for print in shape.variants {
            data.extend_from_slice(&print.to_le_bytes());
        }
    }
    // The whole extensions field must fit its u16 length.
    let Ok(len) = u16::try_from(data.len()) else {
        return Vec::new();
    };
    if usize::from(len) + 4 > usize::from(u16::MAX) {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(4 + data.len());
    out.extend_from_slice(&EXT_VARIANTS.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&data);
    out
}

/// A name cut to [`MAX_NAME_LEN`] bytes at a character boundary.
fn truncated(name: &str) -> &str {
    let mut end = name.len().min(MAX_NAME_LEN);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

fn len_u16(s: &str) -> u16 {
    // `truncated` keeps every name at or below MAX_NAME_LEN (255).
    u16::try_from(s.len()).unwrap_or(u16::MAX)
}

/// A peer's list of one protocol's variant fingerprints, from the variants extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Variants {
    pub(crate) prints: Vec<u64>,
    /// How many of the first are not `#[added]`: the peer needs this end to know them.
    pub(crate) baseline: usize,
}

/// The peer's hello, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerHello {
    pub(crate) sends: ProtocolId,
    pub(crate) expects: ProtocolId,
    /// The variants of what the peer sends and expects, if its hello lists them.
    pub(crate) variants: Option<(Variants, Variants)>,
}

impl PeerHello {
    /// Decodes a hello from the start of `buf`.
    ///
    /// Returns `Ok(None)` while `buf` holds too few bytes to tell, and the hello with the
    /// number of bytes it took once complete. Bytes that cannot start a hello fail as
    /// soon as they are seen, so a wrong peer is reported without waiting for more.
    pub(crate) fn decode(buf: &[u8]) -> Result<Option<(PeerHello, usize)>, Error> {
        let seen = buf.len().min(MAGIC.len());
        if buf[..seen] != MAGIC[..seen] {
            let mut found = [0u8; 4];
            found[..seen].copy_from_slice(&buf[..seen]);
            return Err(Error::BadMagic { found });
        }
        if buf.len() < 6 {
            return Ok(None);
        }
        let version = u16::from_le_bytes([buf[4], buf[5]]);
        if version != VERSION {
            return Err(Error::UnsupportedVersion { version });
        }
        if buf.len() < HELLO_FIXED_LEN {
            return Ok(None);
        }
        let s_len = usize::from(u16::from_le_bytes([buf[6], buf[7]]));
        let e_len = usize::from(u16::from_le_bytes([buf[8], buf[9]]));
        if s_len > MAX_NAME_LEN || e_len > MAX_NAME_LEN {
            return Err(Error::BadHello {
                reason: "a protocol name is longer than 255 bytes",
            });
        }
        let ext_len = usize::from(u16::from_le_bytes([buf[10], buf[11]]));
        let names_end = HELLO_FIXED_LEN + s_len + e_len;
        let total = names_end + ext_len;
        if buf.len() < total {
            return Ok(None);
        }
        let s_fp = u64_at(buf, 12);
        let e_fp = u64_at(buf, 20);
        let s_name = name_at(buf, HELLO_FIXED_LEN, s_len)?;
        let e_name = name_at(buf, HELLO_FIXED_LEN + s_len, e_len)?;
        let variants = extensions(&buf[names_end..total])?;
        let hello = PeerHello {
            sends: ProtocolId::new(s_name, s_fp),
            expects: ProtocolId::new(e_name, e_fp),
            variants,
        };
        Ok(Some((hello, total)))
    }

    /// Checks the peer's hello against what this side sends and expects (see
    /// [`compatible`]): how many of the variants this side sends the peer knows.
    pub(crate) fn check(self, sends: &Shape, expects: &Shape) -> Result<usize, Error> {
        let (peer_sends, peer_expects) = match &self.variants {
            Some((s, e)) => (Some(s), Some(e)),
            None => (None, None),
        };
        let known = compatible(sends, &self.expects, peer_expects);
        let understood = compatible(expects, &self.sends, peer_sends);
        match (known, understood) {
            (Some(known), Some(_)) => Ok(known),
            _ => Err(Error::ProtocolMismatch(Box::new(
                crate::protocol::Mismatch {
                    local_sends: sends.id.clone(),
                    local_expects: expects.id.clone(),
                    peer_sends: self.sends,
                    peer_expects: self.expects,
                },
            ))),
        }
    }
}

/// Whether this end's `ours` and the peer's `theirs` (with its variants, if it listed
/// them) are versions of one protocol that can talk: the same name, and variant lists of
/// which one is a prefix of the other, where each side's baseline (the variants before
/// its first `#[added]`) is within the other's list; a peer that lists no variants (an
/// older hello) must have the same fingerprint. Gives how many of `ours`' variants the
/// peer knows.
///
/// The lists are compared even when the fingerprints are equal: the fingerprint hashes a
/// variant's `#[cfg]` as written, not whether it is on, so two builds of one source with
/// different features share it while their variants differ.
pub(crate) fn compatible(
    ours: &Shape,
    theirs: &ProtocolId,
    variants: Option<&Variants>,
) -> Option<usize> {
    if ours.id.name() != theirs.name() {
        return None;
    }
    let Some(listed) = variants else {
        return (ours.id.fingerprint() == theirs.fingerprint()).then_some(ours.variants.len());
    };
    let theirs = listed;
    let common = ours.variants.len().min(theirs.prints.len());
    let same = ours.variants[..common] == theirs.prints[..common];
    let baselines = ours.baseline <= theirs.prints.len() && theirs.baseline <= ours.variants.len();
    (same && baselines).then_some(common)
}

/// Checks that `ext` is a well-formed list of extensions: each a `u16` tag, a `u16` length
/// and that many bytes, filling `ext` exactly. Unknown tags are skipped, so that a later
/// version can add extensions that this one ignores; the variants extension is decoded.
fn extensions(mut ext: &[u8]) -> Result<Option<(Variants, Variants)>, Error> {
    let mut variants = None;
    while !ext.is_empty() {
        let Some(head) = ext.get(..4) else {
            return Err(Error::BadHello {
                reason: "an extension header is cut short",
            });
        };
        let tag = u16::from_le_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_le_bytes([head[2], head[3]]));
        let Some(data) = ext.get(4..4 + len) else {
            return Err(Error::BadHello {
                reason: "an extension is longer than the extensions' length",
            });
        };
        if tag == EXT_VARIANTS {
            if variants.is_some() {
                return Err(Error::BadHello {
                    reason: "the variants extension appears twice",
                });
            }
            variants = Some(variants_of(data)?);
        }
        ext = &ext[4 + len..];
    }
    Ok(variants)
}

/// The two lists of the variants extension.
fn variants_of(mut data: &[u8]) -> Result<(Variants, Variants), Error> {
    const BAD: Error = Error::BadHello {
        reason: "the variants extension is malformed",
    };
    let mut one = || -> Result<Variants, Error> {
        let head = data.get(..4).ok_or(BAD)?;
        let count = usize::from(u16::from_le_bytes([head[0], head[1]]));
        let baseline = usize::from(u16::from_le_bytes([head[2], head[3]]));
        let body = data.get(4..4 + 8 * count).ok_or(BAD)?;
        if baseline > count {
            return Err(BAD);
        }
        let prints = body.chunks_exact(8).map(|c| u64_at(c, 0)).collect();
        data = &data[4 + 8 * count..];
        Ok(Variants { prints, baseline })
    };
    let sends = one()?;
    let expects = one()?;
    if !data.is_empty() {
        return Err(BAD);
    }
    Ok((sends, expects))
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(bytes)
}

fn name_at(buf: &[u8], at: usize, len: usize) -> Result<String, Error> {
    std::str::from_utf8(&buf[at..at + len])
        .map(str::to_owned)
        .map_err(|_| Error::BadHello {
            reason: "a protocol name is not valid UTF-8",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(sends: (&str, u64), expects: (&str, u64)) -> Vec<u8> {
        let mut out = Vec::new();
        let (sends, expects) = (
            Shape::plain(sends.0, sends.1),
            Shape::plain(expects.0, expects.1),
        );
        encode_hello(&mut out, &sends, &expects);
        out
    }

    /// A protocol named `E` with these variant fingerprints, the first `baseline` of them
    /// not `#[added]`.
    fn shape(prints: &'static [u64], baseline: usize) -> Shape {
        Shape {
            id: ProtocolId::new("E".into(), prints.iter().fold(7, |h, p| h * 31 + p)),
            variants: prints,
            baseline,
        }
    }

    /// The peer's hello for a side that sends and expects `shape`.
    fn peer(shape: &Shape) -> PeerHello {
        let mut out = Vec::new();
        encode_hello(&mut out, shape, shape);
        PeerHello::decode(&out).unwrap().unwrap().0
    }

    #[test]
    fn variants_test_vector() {
        let up = Shape {
            id: ProtocolId::new("Up".into(), 0x10),
            variants: &[0xa1, 0xa2],
            baseline: 1,
        };
        let down = Shape {
            id: ProtocolId::new("D".into(), 0x20),
            variants: &[0xb1],
            baseline: 1,
        };
        let mut bytes = Vec::new();
        encode_hello(&mut bytes, &up, &down);
        let expected: &[u8] = &[
            b'A', b'I', b'O', b'S', 2, 0, // magic, version
            2, 0, 1, 0, // name lengths
            36, 0, // extensions length: 4 + 32
            0x10, 0, 0, 0, 0, 0, 0, 0, // sends fingerprint
            0x20, 0, 0, 0, 0, 0, 0, 0, // expects fingerprint
            b'U', b'p', b'D', // names
            1, 0, 32, 0, // tag 1 (variants), 32 bytes
            2, 0, 1, 0, // sends: 2 variants, 1 before the first #[added]
            0xa1, 0, 0, 0, 0, 0, 0, 0, 0xa2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1,
            0, // expects: 1 variant, 1 before the first #[added]
            0xb1, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(bytes, expected);
        for cut in 0..bytes.len() {
            assert_eq!(PeerHello::decode(&bytes[..cut]).unwrap(), None, "cut {cut}");
        }
        let (hello, used) = PeerHello::decode(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(
            hello.variants,
            Some((
                Variants {
                    prints: vec![0xa1, 0xa2],
                    baseline: 1
                },
                Variants {
                    prints: vec![0xb1],
                    baseline: 1
                }
            ))
        );
    }

    #[test]
    fn an_older_and_a_newer_build_agree_on_what_both_know() {
        let old = shape(&[1, 2], 2);
        let new = shape(&[1, 2, 3, 4], 2); // two variants #[added]
        // The new side knows that the old one knows its first two variants; the old side
        // that the new one knows all of its own.
        assert_eq!(peer(&old).check(&new, &new).unwrap(), 2);
        assert_eq!(peer(&new).check(&old, &old).unwrap(), 2);
        // The same build: everything.
        assert_eq!(peer(&new).check(&new, &new).unwrap(), 4);
    }

    #[test]
    fn removed_reordered_changed_or_unmarked_variants_are_a_mismatch() {
        let new = shape(&[1, 2, 3], 2);
        for other in [
            shape(&[1, 3], 2),       // a variant changed (or one removed from the middle)
            shape(&[2, 1, 3], 3),    // reordered
            shape(&[1, 2, 4], 2),    // the added one differs
            shape(&[1], 1),          // misses a variant the new side does not mark added
            shape(&[1, 2, 3, 4], 4), // a variant added without #[added]
        ] {
            assert!(
                matches!(
                    peer(&other).check(&new, &new),
                    Err(Error::ProtocolMismatch(_))
                ),
                "{:?}",
                other.variants
            );
            assert!(matches!(
                peer(&new).check(&other, &other),
                Err(Error::ProtocolMismatch(_))
            ));
        }
        // Another name is another protocol, whatever its variants.
        let mut renamed = shape(&[1, 2, 3], 2);
        renamed.id = ProtocolId::new("F".into(), renamed.id.fingerprint());
        assert!(peer(&renamed).check(&new, &new).is_err());
        // A peer without the extension is compared by fingerprint alone.
        let (plain, _) = PeerHello::decode(&hello(("E", 99), ("E", 99)))
            .unwrap()
            .unwrap();
        assert!(plain.check(&new, &new).is_err());
    }

    #[test]
    fn malformed_variant_lists_are_refused() {
        let with_ext = |ext: &[u8]| {
            let mut bytes = hello(("Up", 1), ("Down", 2));
            let len = u16::try_from(ext.len()).unwrap().to_le_bytes();
            bytes[10..12].copy_from_slice(&len);
            bytes.extend_from_slice(ext);
            bytes
        };
        for bad in [
            &[1, 0, 4, 0, 1, 0, 0, 0][..],                // a count with no prints
            &[1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0][..],    // baseline over the count
            &[1, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7][..], // bytes left over
            &[
                1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ][..], // twice
        ] {
            assert!(
                matches!(
                    PeerHello::decode(&with_ext(bad)),
                    Err(Error::BadHello { .. })
                ),
                "{bad:?}"
            );
        }
        // Two empty lists are well formed.
        let (h, _) = PeerHello::decode(&with_ext(&[1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
            .unwrap()
            .unwrap();
        assert!(h.variants.is_some());
    }

    #[test]
    fn hello_test_vector() {
        let bytes = hello(
            ("Up", 0x0102_0304_0506_0708),
            ("Down", 0x1122_3344_5566_7788),
        );
        let expected: &[u8] = &[
            b'A', b'I', b'O', b'S', // magic
            2, 0, // version
            2, 0, // sends name length
            4, 0, // expects name length
            0, 0, // extensions length
            8, 7, 6, 5, 4, 3, 2, 1, // sends fingerprint
            0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // expects fingerprint
            b'U', b'p', b'D', b'o', b'w', b'n',
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn hello_round_trips_at_every_split() {
        let bytes = hello(("Up", 1), ("Down", 2));
        for cut in 0..bytes.len() {
            assert_eq!(PeerHello::decode(&bytes[..cut]).unwrap(), None, "cut {cut}");
        }
        let (h, used) = PeerHello::decode(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(h.sends, ProtocolId::new("Up".into(), 1));
        assert_eq!(h.expects, ProtocolId::new("Down".into(), 2));
    }

    #[test]
    fn wrong_magic_fails_at_first_byte() {
        assert!(matches!(
            PeerHello::decode(b"X"),
            Err(Error::BadMagic { found }) if found == [b'X', 0, 0, 0]
        ));
        assert!(matches!(
            PeerHello::decode(b"AIOX"),
            Err(Error::BadMagic { .. })
        ));
    }

    #[test]
    fn unknown_version_is_rejected() {
        let mut bytes = hello(("Up", 1), ("Down", 2));
        bytes[4] = 3;
        assert!(matches!(
            PeerHello::decode(&bytes),
            Err(Error::UnsupportedVersion { version: 3 })
        ));
    }

    #[test]
    fn a_version_1_peer_is_told_apart() {
        // The hello of aiosock 0.1 (wire version 1): no extensions length, so the rest
        // would not parse as version 2; the version says so first.
        let v1: &[u8] = &[
            b'A', b'I', b'O', b'S', 1, 0, 2, 0, 4, 0, 8, 7, 6, 5, 4, 3, 2, 1, 0x88, 0x77, 0x66,
            0x55, 0x44, 0x33, 0x22, 0x11, b'U', b'p', b'D', b'o', b'w', b'n',
        ];
        let err = PeerHello::decode(v1).unwrap_err();
        assert!(matches!(err, Error::UnsupportedVersion { version: 1 }));
        assert_eq!(
            err.to_string(),
            "the peer speaks wire version 1, this end speaks version 2"
        );
    }

    #[test]
    fn unknown_extensions_are_skipped_and_malformed_ones_refused() {
        let with_ext = |ext: &[u8]| {
            let mut bytes = hello(("Up", 1), ("Down", 2));
            let len = u16::try_from(ext.len()).unwrap().to_le_bytes();
            bytes[10..12].copy_from_slice(&len);
            bytes.extend_from_slice(ext);
            bytes
        };
        // Two unknown extensions: tag 7 with 3 bytes, tag 9 with none.
        let bytes = with_ext(&[7, 0, 3, 0, 1, 2, 3, 9, 0, 0, 0]);
        for cut in 0..bytes.len() {
            assert_eq!(PeerHello::decode(&bytes[..cut]).unwrap(), None, "cut {cut}");
        }
        let (h, used) = PeerHello::decode(&bytes).unwrap().unwrap();
        assert_eq!((used, h.sends.name()), (bytes.len(), "Up"));
        for bad in [&[7, 0, 4, 0, 1, 2, 3][..], &[7, 0, 0][..]] {
            assert!(matches!(
                PeerHello::decode(&with_ext(bad)),
                Err(Error::BadHello { .. })
            ));
        }
    }

    #[test]
    fn long_or_invalid_names_are_rejected() {
        let mut bytes = hello(("Up", 1), ("Down", 2));
        bytes[6] = 0;
        bytes[7] = 1; // 256
        assert!(matches!(
            PeerHello::decode(&bytes),
            Err(Error::BadHello { .. })
        ));
        let mut bytes = hello(("Up", 1), ("Down", 2));
        bytes[HELLO_FIXED_LEN] = 0xff;
        assert!(matches!(
            PeerHello::decode(&bytes),
            Err(Error::BadHello { .. })
        ));
    }

    #[test]
    fn long_names_are_truncated_on_a_char_boundary() {
        let name = "é".repeat(200); // 400 bytes
        let bytes = hello((&name, 1), ("B", 2));
        let (h, _) = PeerHello::decode(&bytes).unwrap().unwrap();
        assert_eq!(h.sends.name().len(), 254);
    }

    #[test]
    fn check_names_both_sides() {
        let peer = PeerHello {
            sends: ProtocolId::new("A".into(), 1),
            expects: ProtocolId::new("B".into(), 2),
            variants: None,
        };
        assert!(
            peer.clone()
                .check(&Shape::plain("B", 2), &Shape::plain("A", 1))
                .is_ok()
        );
        let err = peer
            .check(&Shape::plain("B", 2), &Shape::plain("C", 3))
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`A`") && text.contains("`C`"), "{text}");
    }
}
