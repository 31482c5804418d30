//! Wire format, version 1: the bytes that travel over the socket.
//!
//! This module is pure: it encodes into and decodes from byte buffers and never does I/O,
//! so every path through it is unit-tested and fuzzed without a socket.
//!
//! A connection carries two independent byte streams, one per direction. Each stream
//! starts with a **hello**, followed by any number of **frames**. No round trip is
//! added: a side writes its hello and goes on; the reader checks the peer's hello before
//! the first frame it decodes.
//!
//! # Hello
//!
//! ```text
//!  0        4        6        8        10                18                26
//!  +--------+--------+--------+--------+-----------------+-----------------+---------+---------+
//!  | "AIOS" | ver=1  | s_len  | e_len  | s_fingerprint   | e_fingerprint   | s_name  | e_name  |
//!  +--------+--------+--------+--------+-----------------+-----------------+---------+---------+
//!    magic    u16 LE   u16 LE   u16 LE   u64 LE            u64 LE            s_len B   e_len B
//! ```
//!
//! `s_*` describe the protocol this side **sends**, `e_*` the one it **expects** to
//! receive (names are UTF-8, at most [`MAX_NAME_LEN`] bytes). The reader accepts the hello
//! only if the peer sends what the reader expects and expects what the reader sends;
//! otherwise it fails with [`Error::ProtocolMismatch`](crate::Error::ProtocolMismatch).
//! A wrong magic is [`Error::BadMagic`](crate::Error::BadMagic), another version is
//! [`Error::UnsupportedVersion`](crate::Error::UnsupportedVersion).
//!
//! # Frame
//!
//! ```text
//!  0                 4        6        8
//!  +-----------------+--------+--------+--------------------------+
//!  | payload length  | fds    | flags  | payload (length bytes)   |
//!  +-----------------+--------+--------+--------------------------+
//!    u32 LE            u16 LE   u16 LE   bincode 2, standard config
//! ```
//!
//! - The payload length is checked against the receiver's configured maximum
//!   ([`Config::max_frame_len`](crate::Config::max_frame_len)) *before* any memory is
//!   reserved for it: [`Error::FrameTooLarge`](crate::Error::FrameTooLarge).
//! - `fds` is the number of file descriptors attached to the frame (they travel with the
//!   frame's first byte through `SCM_RIGHTS`). Version 1 sends none, and a frame that
//!   announces some is [`Error::UnexpectedFds`](crate::Error::UnexpectedFds).
//! - `flags` has no bits defined in version 1; a frame with any set is
//!   [`Error::UnknownFlags`](crate::Error::UnknownFlags).
//! - The payload is one message, encoded by bincode 2.0.1 through serde with
//!   `bincode::config::standard()` (little endian, variable-length integers, enum
//!   variants as their index). It must be consumed exactly: leftover bytes are
//!   [`Error::TrailingBytes`](crate::Error::TrailingBytes).
//! - Decoding nests at most 128 levels (each sequence, map, enum, option and newtype is
//!   one), and checks every string's and byte string's length against the payload before
//!   allocating: a payload that breaks either rule is [`Error::Decode`](crate::Error::Decode).
//!
//! The test `test_vector` at the bottom of `wire/frame.rs` pins these bytes.

mod decoder;
mod frame;
mod guard;
mod hello;

#[doc(hidden)]
pub use decoder::decode_stream;

/// Appends one frame holding `msg` (at most `max` payload bytes), exactly as a `Sender`
/// does. For benchmarks: not public API.
#[doc(hidden)]
pub fn encode_one<T: crate::Protocol>(
    out: &mut Vec<u8>,
    msg: &T,
    max: usize,
) -> Result<(), crate::InvalidMessage> {
    encode_frame(out, msg, max)
}

/// Decodes the frame at the start of `buf` (no hello), exactly as a `Receiver` does:
/// the message and the bytes it took, or `None` if `buf` holds less than a frame. For
/// benchmarks: not public API.
#[doc(hidden)]
pub fn decode_one<T: crate::Protocol>(
    buf: &[u8],
    max: usize,
) -> Result<Option<(T, usize)>, crate::Error> {
    let Some(header) = FrameHeader::decode(buf, max)? else {
        return Ok(None);
    };
    let Some(payload) = buf.get(HEADER_LEN..header.frame_len()) else {
        return Ok(None);
    };
    Ok(Some((decode_payload(payload)?, header.frame_len())))
}
pub(crate) use decoder::{Decoded, Decoder};
pub(crate) use frame::{FrameHeader, decode_payload, encode_frame};
pub(crate) use hello::{PeerHello, encode_hello};

/// The four bytes every stream starts with.
pub const MAGIC: [u8; 4] = *b"AIOS";
/// The wire format version this crate writes and reads.
pub const VERSION: u16 = 1;
/// Length of the fixed part of the hello, before the two names.
pub const HELLO_FIXED_LEN: usize = 26;
/// The longest protocol name a hello carries, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Length of a frame header.
pub const HEADER_LEN: usize = 8;
