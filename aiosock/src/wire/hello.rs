//! The hello that starts each direction of a connection.

use super::{HELLO_FIXED_LEN, MAGIC, MAX_NAME_LEN, VERSION};
use crate::error::Error;
use crate::protocol::ProtocolId;

/// Appends the hello of a side that sends `sends` and expects `expects`.
pub(crate) fn encode_hello(out: &mut Vec<u8>, sends: (&str, u64), expects: (&str, u64)) {
    let s = truncated(sends.0);
    let e = truncated(expects.0);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&len_u16(s).to_le_bytes());
    out.extend_from_slice(&len_u16(e).to_le_bytes());
    // No extensions are defined yet (see `FORMAT.md`).
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&sends.1.to_le_bytes());
    out.extend_from_slice(&expects.1.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(e.as_bytes());
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

/// The peer's hello, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerHello {
    pub(crate) sends: ProtocolId,
    pub(crate) expects: ProtocolId,
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
        check_extensions(&buf[names_end..total])?;
        let hello = PeerHello {
            sends: ProtocolId::new(s_name, s_fp),
            expects: ProtocolId::new(e_name, e_fp),
        };
        Ok(Some((hello, total)))
    }

    /// Checks the peer's hello against what this side sends and expects.
    pub(crate) fn check(self, sends: ProtocolId, expects: ProtocolId) -> Result<(), Error> {
        if self.sends == expects && self.expects == sends {
            Ok(())
        } else {
            Err(Error::ProtocolMismatch(Box::new(
                crate::protocol::Mismatch {
                    local_sends: sends,
                    local_expects: expects,
                    peer_sends: self.sends,
                    peer_expects: self.expects,
                },
            )))
        }
    }
}

/// Checks that `ext` is a well-formed list of extensions: each a `u16` tag, a `u16` length
/// and that many bytes, filling `ext` exactly. No tag is defined yet, and unknown tags are
/// skipped, so that a later version can add extensions that this one ignores.
fn check_extensions(mut ext: &[u8]) -> Result<(), Error> {
    while !ext.is_empty() {
        let Some(head) = ext.get(..4) else {
            return Err(Error::BadHello {
                reason: "an extension header is cut short",
            });
        };
        let len = usize::from(u16::from_le_bytes([head[2], head[3]]));
        let Some(rest) = ext.get(4 + len..) else {
            return Err(Error::BadHello {
                reason: "an extension is longer than the extensions' length",
            });
        };
        ext = rest;
    }
    Ok(())
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
        encode_hello(&mut out, sends, expects);
        out
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
        };
        assert!(
            peer.clone()
                .check(
                    ProtocolId::new("B".into(), 2),
                    ProtocolId::new("A".into(), 1)
                )
                .is_ok()
        );
        let err = peer
            .check(
                ProtocolId::new("B".into(), 2),
                ProtocolId::new("C".into(), 3),
            )
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`A`") && text.contains("`C`"), "{text}");
    }
}
