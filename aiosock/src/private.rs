//! Used by the code that `#[aiosock::protocol]` generates. Not public API.

pub use ::core;
pub use ::serde;

pub use crate::protocol::{Dispatch, Protocol};

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
