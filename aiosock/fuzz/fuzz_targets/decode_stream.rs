//! Fuzzes the receiver's decoder: the peer's hello, frame headers and bincode payloads,
//! fed in chunks of every size. Any input must give messages and at most one error,
//! never a panic or an abort, and the invariants below:
//!
//! - memory: what decoding allocates at its peak stays within what the decode budget
//!   allows for the stream's bytes (16 bytes per unit, units of 16 per payload byte plus
//!   the allowance per frame), plus the list of messages and fixed slack, even though the
//!   frame limit is 1 GiB: a header that claims a huge frame must cost nothing until its
//!   bytes come;
//! - count: every message took a frame header and at least a byte of payload;
//! - chunking: reading the stream in one piece decodes the same messages and ends the
//!   same way.

#![no_main]

use aiosock::__private::wire::{
    ALLOWANCE, DEFAULT_DECODE_BUDGET, ERROR_SLACK, HEADER_LEN, MEMORY_PER_UNIT, decode_stream,
};
use aiosock::__private::{CountingAlloc, peak_of};
use aiosock_fuzz::Msg;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// The frame limit: far above any input, so that only the budget bounds memory.
const MAX_FRAME_LEN: usize = 1 << 30;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size; the rest is the stream.
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk) + 1;
    let ((msgs, err), peak) = peak_of(|| decode_stream::<Msg>(stream, chunk, MAX_FRAME_LEN));
    let most_frames = stream.len() / (HEADER_LEN + 1);
    assert!(msgs.len() <= most_frames, "{} messages", msgs.len());
    let units = DEFAULT_DECODE_BUDGET * stream.len() + ALLOWANCE * (most_frames + 1);
    // The message list doubles as it grows; partial frames may be copied once.
    let list = 2 * std::mem::size_of::<Msg>() * (most_frames + 1);
    let bound = MEMORY_PER_UNIT * units + list + 2 * stream.len() + ERROR_SLACK + 4096;
    assert!(
        peak <= bound,
        "{peak} bytes at the peak for a {}-byte stream (bound {bound})",
        stream.len()
    );
    let (whole, whole_err) = decode_stream::<Msg>(stream, stream.len().max(1), MAX_FRAME_LEN);
    assert_eq!(msgs, whole, "chunks of {chunk} against one read");
    assert_eq!(
        err.is_some(),
        whole_err.is_some(),
        "{err:?} against {whole_err:?}"
    );
});
