//! Fuzzes the receiver's decoder: the peer's hello, frame headers and bincode payloads,
//! fed in chunks of every size. Any input must give messages and at most one error.

#![no_main]

use libfuzzer_sys::fuzz_target;

/// A protocol with every shape the decoder meets: integers, strings, byte strings,
/// options and sequences. (No recursive type: decoding depth is not limited yet.)
#[aiosock::protocol]
#[derive(Debug)]
enum Msg {
    Unit,
    Num(u64, i32),
    Text { s: String },
    Blob(Vec<u8>),
    Bytes(aiosock::Bytes),
    Items(Vec<(u16, String)>),
    Maybe(Option<Vec<Option<u8>>>),
    Float(f64, char),
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size; the rest is the stream.
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let (msgs, err) = aiosock::wire::decode_stream::<Msg>(stream, usize::from(chunk) + 1, 1 << 16);
    // Every message took at least a frame header.
    assert!(msgs.len() <= stream.len() / aiosock::wire::HEADER_LEN);
    drop(err);
});
