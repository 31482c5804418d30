//! Fuzzes the receiver's decoder: the peer's hello, frame headers and bincode payloads,
//! fed in chunks of every size. Any input must give messages and at most one error,
//! never a panic, an abort or a large allocation.

#![no_main]

use aiosock_fuzz::Msg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size; the rest is the stream.
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let (msgs, _err) =
        aiosock::__private::wire::decode_stream::<Msg>(stream, usize::from(chunk) + 1, 1 << 16);
    // Every message took at least a frame header.
    assert!(msgs.len() <= stream.len() / aiosock::__private::wire::HEADER_LEN);
});
