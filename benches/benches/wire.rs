//! The wire path alone, with divan: encoding one frame into a reused buffer and decoding
//! it back, exactly as a `Sender` and a `Receiver` do per message, without I/O.
//!
//! `cargo bench -p aiosock-benches --bench wire`

use std::hint::black_box;

use divan::counter::BytesCount;

fn main() {
    divan::main();
}

/// A protocol of the benchmark's two message shapes.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// A small message.
    Ping(u64),
    /// A bulk message.
    Data(Vec<u8>),
}

const MAX: usize = 64 << 20;
const SIZES: [usize; 3] = [64, 64 << 10, 4 << 20];

fn frame(msg: &Msg) -> Vec<u8> {
    let mut buf = Vec::new();
    aiosock::__private::wire::encode_one(&mut buf, msg, MAX).expect("encodes");
    buf
}

#[divan::bench]
fn encode_ping(bencher: divan::Bencher<'_, '_>) {
    let msg = Msg::Ping(u64::MAX / 3);
    let mut buf = Vec::with_capacity(64);
    bencher.bench_local(|| {
        buf.clear();
        aiosock::__private::wire::encode_one(&mut buf, black_box(&msg), MAX).expect("encodes");
        black_box(&buf);
    });
}

#[divan::bench]
fn decode_ping(bencher: divan::Bencher<'_, '_>) {
    let bytes = frame(&Msg::Ping(u64::MAX / 3));
    bencher.bench_local(|| {
        let msg: Option<(Msg, usize)> =
            aiosock::__private::wire::decode_one(black_box(&bytes), MAX).expect("decodes");
        black_box(msg)
    });
}

#[divan::bench(args = SIZES)]
fn encode_data(bencher: divan::Bencher<'_, '_>, len: usize) {
    let msg = Msg::Data(vec![0x5a; len]);
    let mut buf = Vec::with_capacity(len + 64);
    bencher.counter(BytesCount::new(len)).bench_local(|| {
        buf.clear();
        aiosock::__private::wire::encode_one(&mut buf, black_box(&msg), MAX).expect("encodes");
        black_box(&buf);
    });
}

#[divan::bench(args = SIZES)]
fn decode_data(bencher: divan::Bencher<'_, '_>, len: usize) {
    let bytes = frame(&Msg::Data(vec![0x5a; len]));
    bencher.counter(BytesCount::new(len)).bench_local(|| {
        let msg: Option<(Msg, usize)> =
            aiosock::__private::wire::decode_one(black_box(&bytes), MAX).expect("decodes");
        black_box(msg)
    });
}
