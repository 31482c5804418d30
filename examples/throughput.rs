//! One-process throughput: how fast 1M small messages go through one pair.
//!
//! `cargo run --release --example throughput [MESSAGES]` prints messages per second for a
//! sender task and a receiver task on a multi-thread runtime, and on a current-thread one.
//! A quick check, not the benchmark: cross-process numbers come from the benches.

use std::error::Error;
use std::time::Instant;

/// The small message.
#[aiosock::protocol]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    /// A sequence number.
    Ping(u64),
}

async fn run(n: u64) -> Result<f64, Box<dyn Error>> {
    let (a, b) = aiosock::pair::<Ping, Ping>()?;
    let (tx, _a_rx) = a.into_split();
    let (_b_tx, mut rx) = b.into_split();
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        for i in 0..n {
            tx.send(Ping::Ping(i)).await.map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(())
    });
    let mut expected = 0;
    while let Some(Ping::Ping(i)) = rx.recv().await? {
        if i != expected {
            return Err(format!("got {i}, expected {expected}").into());
        }
        expected += 1;
    }
    sender.await??;
    if expected != n {
        return Err(format!("received {expected} of {n}").into());
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn main() -> Result<(), Box<dyn Error>> {
    let n: u64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 1_000_000,
    };
    for (name, runtime) in [
        ("multi-thread", tokio::runtime::Runtime::new()?),
        (
            "current-thread",
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        ),
    ] {
        let mut rates = Vec::new();
        for _ in 0..5 {
            rates.push(runtime.block_on(run(n))?);
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "{name:>14}: {n} messages, median {:.2} M msg/s (min {:.2}, max {:.2})",
            rates[2] / 1e6,
            rates[0] / 1e6,
            rates[4] / 1e6
        );
    }
    Ok(())
}
