//! `wire`: aiosock's frame encode/decode path alone, in one process, no I/O.
//!
//! Calls the functions a `Sender` and a `Receiver` run per message (through the hidden
//! hooks `aiosock::__private::wire::{encode_one, decode_one}`), on the same [`Msg`] values
//! the cross-process runs send: encoding appends a frame to a reused `Vec`; decoding checks
//! the header and allocates what the message owns. This is the workspace's only wire
//! microbenchmark: `cargo run --release -p aiosock-benches -- wire`, and part of `all`, so
//! its table lands in the README with the rest.

use std::hint::black_box;
use std::time::{Duration, Instant};

use crate::msg::{Msg, Shape, Source};
use crate::report::{median, num};

const MAX: usize = 64 << 20;

/// Runs the microbenchmark and returns its table.
pub(crate) fn run(reps: usize, quick: bool) -> String {
    let budget = if quick {
        Duration::from_millis(50)
    } else {
        Duration::from_millis(300)
    };
    let shapes = [
        ("Ping(u64)", Shape::Ping),
        ("Data 64 KiB", Shape::Data(64 * 1024)),
        ("Data 4 MiB", Shape::Data(4 * 1024 * 1024)),
    ];
    let mut out = format!(
        "{:<12} {:<7} {:>12} {:>21} {:>10}\n",
        "message", "op", "median ns", "min–max ns", "GB/s"
    );
    for (name, shape) in shapes {
        let msg = Source::new(shape, 0).msg(7);
        let mut buf = Vec::new();
        aiosock::__private::wire::encode_one(&mut buf, &msg, MAX).expect("encodes");
        let encoded = buf.clone();
        let mut encode = || {
            buf.clear();
            aiosock::__private::wire::encode_one(&mut buf, black_box(&msg), MAX).expect("encodes");
            black_box(&buf);
        };
        out += &row(name, "encode", shape, reps, budget, &mut encode);
        let mut decode = || {
            let decoded: Option<(Msg, usize)> =
                aiosock::__private::wire::decode_one(black_box(&encoded), MAX).expect("decodes");
            black_box(decoded);
        };
        out += &row(name, "decode", shape, reps, budget, &mut decode);
    }
    out
}

/// One line of the table: `f` timed `reps` times.
fn row(
    name: &str,
    op: &str,
    shape: Shape,
    reps: usize,
    budget: Duration,
    f: &mut dyn FnMut(),
) -> String {
    let mut per_op: Vec<f64> = (0..reps).map(|_| time(f, budget)).collect();
    let lo = per_op.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = per_op.iter().copied().fold(0.0, f64::max);
    let mid = median(&mut per_op).expect("at least one rep");
    let gbps = match shape {
        Shape::Ping | Shape::Fd => "-".to_string(),
        Shape::Data(len) | Shape::Shm(len) => num(len as f64 / mid),
    };
    format!(
        "{name:<12} {op:<7} {:>12} {:>21} {gbps:>10}\n",
        num(mid),
        format!("{}–{}", num(lo), num(hi))
    )
}

/// Nanoseconds per call of `f`, calling it in batches for about `budget`.
fn time(f: &mut dyn FnMut(), budget: Duration) -> f64 {
    // Warm up, and size the batches so that reading the clock costs nothing.
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < budget / 10 {
        f();
        calls += 1;
    }
    let batch = (calls / 100).max(1);
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < budget {
        for _ in 0..batch {
            f();
        }
        calls += batch;
    }
    start.elapsed().as_nanos() as f64 / calls as f64
}
