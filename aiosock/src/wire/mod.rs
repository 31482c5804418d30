//! The wire format: the hello and frames that travel over the socket, encoded into and
//! decoded from byte buffers.
//!
//! This module is pure: it never does I/O, so every path through it is unit-tested and
//! fuzzed without a socket. The layout is documented for users in `FORMAT.md` beside this
//! file, which the crate docs include as their "Wire format" section. The benchmark and
//! fuzz hooks reach it through `crate::__private`.

mod attached;
mod budget;
mod decoder;
mod frame;
mod hello;

pub(crate) use attached::Attached;
pub(crate) use budget::{ALLOWANCE, DEFAULT_DECODE_BUDGET, MAX_DEPTH, MEMORY_PER_UNIT};
pub(crate) use decoder::{Decoded, Decoder, decode_stream, decode_stream_with};
pub(crate) use frame::{
    Failure, FrameHeader, Kind, decode_payload, decode_payload_counted, decode_payload_spending,
    decode_payload_with, encode_frame, encode_frame_as, encode_frame_holding, finish_reply,
};
#[cfg(test)]
pub(crate) use frame::{encode_payload, encode_payload_with};
pub(crate) use hello::{PeerHello, encode_hello};

/// The limits a receiver decodes within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The largest payload accepted, in bytes.
    pub(crate) max_frame_len: usize,
    /// Decode budget units per payload byte.
    pub(crate) decode_budget: usize,
    /// The most descriptors one frame may carry.
    pub(crate) max_fds_per_frame: usize,
    /// The most descriptors the receiver holds for messages it has not delivered.
    pub(crate) max_fds: usize,
    /// The largest shared-memory buffer accepted, in bytes.
    pub(crate) max_shm_len: u64,
}

impl Limits {
    /// A maximum frame length and the defaults for the rest.
    pub(crate) fn new(max_frame_len: usize) -> Limits {
        Limits {
            max_frame_len,
            decode_budget: DEFAULT_DECODE_BUDGET,
            max_fds_per_frame: DEFAULT_MAX_FDS_PER_FRAME,
            max_fds: DEFAULT_MAX_FDS,
            max_shm_len: DEFAULT_MAX_SHM_LEN,
        }
    }
}

/// Descriptors travel with a `sendmsg` only for frames that begin within its first this
/// many bytes, so they never run further ahead of their frames (see `attached`).
pub(crate) const FD_WINDOW: u64 = 4096;
/// The most descriptors one `sendmsg` passes for several frames (one frame with more
/// passes all of its own alone).
pub(crate) const MAX_BATCH_FDS: usize = 64;
/// The most descriptors one frame carries: what the kernel passes with one `sendmsg`.
pub(crate) const MAX_FDS_PER_FRAME: usize = crate::sys::MAX_FDS_PER_SEND;
/// The most descriptors one frame may carry unless configured otherwise.
pub(crate) const DEFAULT_MAX_FDS_PER_FRAME: usize = 64;
/// The most descriptors a receiver holds for undelivered messages unless configured
/// otherwise.
pub(crate) const DEFAULT_MAX_FDS: usize = 1024;
/// The largest shared-memory buffer a receiver accepts unless configured otherwise.
pub(crate) const DEFAULT_MAX_SHM_LEN: u64 = 1 << 30;

/// The four bytes every stream starts with.
pub(crate) const MAGIC: [u8; 4] = *b"AIOS";
/// The wire format version this crate writes and reads.
pub(crate) const VERSION: u16 = 2;
/// Length of the fixed part of the hello, before the two names.
pub(crate) const HELLO_FIXED_LEN: usize = 28;
/// The longest protocol name a hello carries, in bytes.
pub(crate) const MAX_NAME_LEN: usize = 255;
/// Length of a frame header's fixed part.
pub(crate) const HEADER_LEN: usize = 8;
/// Length of the call id that follows the fixed header of a call or a reply.
pub(crate) const CALL_ID_LEN: usize = 8;
