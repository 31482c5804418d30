//! [`Bytes`]: a byte buffer that encodes as one byte string.

use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A `Vec<u8>` that serde encodes as one byte string instead of a sequence of `u8`.
///
/// With bincode that is a length and one copy of the bytes, instead of a loop over every
/// byte. `#[aiosock::protocol]` already applies this encoding to every field whose type is
/// written `Vec<u8>`; use `Bytes` where the macro cannot see the bytes, such as
/// `Option<Bytes>`, `Vec<Bytes>` or a field of your own structs.
///
/// # Examples
///
/// ```
/// use aiosock::Bytes;
///
/// #[aiosock::protocol]
/// #[derive(Debug, PartialEq)]
/// enum Upload {
///     Chunk { data: Vec<u8> },            // byte string, done by the macro
///     MaybeChunk(Option<Bytes>),          // byte string, done by `Bytes`
/// }
///
/// let b = Bytes::from(vec![1, 2, 3]);
/// assert_eq!(&b[..], &[1, 2, 3]);
/// let msg = Upload::MaybeChunk(Some(b));
/// # let _ = Upload::Chunk { data: vec![] };
/// assert!(matches!(msg, Upload::MaybeChunk(Some(b)) if b.as_ref() == [1, 2, 3]));
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(Vec<u8>);

impl Bytes {
    /// Wraps a vector.
    pub fn new(bytes: Vec<u8>) -> Bytes {
        Bytes(bytes)
    }

    /// Unwraps the vector.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Bytes {
        Bytes(v)
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Bytes {
        Bytes(v.to_vec())
    }
}

impl From<Bytes> for Vec<u8> {
    fn from(b: Bytes) -> Vec<u8> {
        b.0
    }
}

impl Deref for Bytes {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Bytes {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        d.deserialize_bytes(BytesVisitor).map(Bytes)
    }
}

/// Accepts a byte string, or a sequence of `u8` from formats without byte strings.
pub(crate) struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        // The size hint comes from the peer: cap what is reserved up front.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64 * 1024));
        while let Some(b) = seq.next_element()? {
            out.push(b);
        }
        Ok(out)
    }
}
