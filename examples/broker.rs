//! A broker hands a fresh channel to two workers, which then talk to each other directly:
//! the broker (the parent) makes a pair and sends one `Endpoint` to each worker in a
//! message. Worker A sends numbers, worker B sums them and tells the broker the total.
//! Both workers are this same program, re-run with `--worker`.
//!
//! `cargo run --example broker`

use std::error::Error;
use std::process::Command;

/// Between the two workers.
#[aiosock::protocol]
#[derive(Debug)]
pub enum Numbers {
    /// One number.
    N(u64),
}

/// From the broker to a worker.
#[aiosock::protocol]
#[derive(Debug)]
pub enum Assign {
    /// Send `0..count` on this end, then close it.
    #[reply(u64)]
    Produce {
        /// The worker's end of the new channel.
        end: aiosock::Endpoint<Numbers, Numbers>,
        /// How many numbers.
        count: u64,
    },
    /// Sum what arrives on this end until the producer closes, and answer the sum.
    #[reply(Result<u64, String>)]
    Consume(aiosock::Endpoint<Numbers, Numbers>),
}

/// What a worker sends on its own: nothing (its answers travel as replies).
#[aiosock::protocol]
#[derive(Debug)]
pub enum Nothing {
    /// Never sent.
    Never,
}

impl NothingHandler for () {
    async fn on_never(&mut self) {}
}

struct Worker;

impl AssignHandler for Worker {
    async fn on_produce(&mut self, end: aiosock::Endpoint<Numbers, Numbers>, count: u64) -> u64 {
        let (tx, _rx) = end.into_split();
        for n in 0..count {
            if tx.send(Numbers::N(n)).await.is_err() {
                return n;
            }
        }
        count
    }

    async fn on_consume(
        &mut self,
        end: aiosock::Endpoint<Numbers, Numbers>,
    ) -> Result<u64, String> {
        let (_tx, mut rx) = end.into_split();
        let mut sum = 0;
        while let Some(Numbers::N(n)) = rx.recv().await.map_err(|e| e.to_string())? {
            sum += n;
        }
        Ok(sum)
    }
}

fn worker() -> Result<(), Box<dyn Error>> {
    let end = aiosock::inherited::<Nothing, Assign>()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            end.serve(Worker).await?;
            Ok(())
        })
}

fn start() -> Result<(aiosock::Child, AssignClient), Box<dyn Error>> {
    let (here, there) = aiosock::pair::<Assign, Nothing>()?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("--worker");
    let child = aiosock::spawn(cmd, there)?;
    let (tx, rx) = here.into_split();
    tokio::spawn(rx.serve(()));
    Ok((child, AssignClient::new(tx)))
}

fn main() -> Result<(), Box<dyn Error>> {
    if std::env::args().any(|arg| arg == "--worker") {
        return worker();
    }
    tokio::runtime::Runtime::new()?.block_on(async move {
        let (mut producer, a) = start()?;
        let (mut consumer, b) = start()?;
        println!(
            "broker {}: workers {} and {}",
            std::process::id(),
            producer.id(),
            consumer.id()
        );
        // The new channel's ends go to the workers; the broker keeps neither.
        let (for_a, for_b) = aiosock::pair::<Numbers, Numbers>()?;
        let count = 100_000;
        let (sent, sum) = tokio::join!(a.produce(for_a, count), b.consume(for_b));
        let (sent, sum) = (sent?, sum??);
        println!(
            "worker {} sent {sent} numbers straight to worker {}",
            producer.id(),
            consumer.id()
        );
        println!("which summed them to {sum}");
        drop((a, b));
        let (sa, sb) = (producer.wait().await?, consumer.wait().await?);
        println!("workers exited: {sa}, {sb}");
        if sum != count * (count - 1) / 2 || !sa.success() || !sb.success() {
            return Err("the workers did not talk".into());
        }
        Ok(())
    })
}
