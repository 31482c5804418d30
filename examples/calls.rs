//! Calls with replies across two processes: the parent asks a worker (this same program,
//! re-run with `--worker`) to square numbers, many calls in flight at once; the worker
//! calls the parent back for a setting while it answers; a handler's panic reaches the
//! caller as an error.
//!
//! `cargo run --example calls`

use std::error::Error;
use std::process::Command;

/// What the parent asks the worker.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq)]
pub enum Ask {
    /// Answered with `n * n`.
    #[reply(u64)]
    Square(u64),
    /// Answered with `n` times the parent's factor, which the worker asks the parent for.
    #[reply(u64)]
    Scale(u64),
    /// Answered with the quotient, or why there is none.
    #[reply(Result<u64, String>)]
    Divide {
        /// Dividend.
        a: u64,
        /// Divisor.
        b: u64,
    },
    /// The handler panics.
    #[reply(u64)]
    Crash,
}

/// What the worker asks the parent.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq)]
pub enum Config {
    /// Answered with the factor `Ask::Scale` multiplies by.
    #[reply(u64)]
    Factor,
}

/// The worker's handler: it holds a client for calling the parent back.
#[derive(Clone)]
struct Worker {
    parent: ConfigClient,
}

impl AskHandler for Worker {
    async fn on_square(&mut self, n: u64) -> u64 {
        n * n
    }

    async fn on_scale(&mut self, n: u64) -> u64 {
        // A call back into the parent while answering the parent's call.
        let factor = self.parent.factor().await.unwrap_or(1);
        n * factor
    }

    async fn on_divide(&mut self, a: u64, b: u64) -> Result<u64, String> {
        a.checked_div(b)
            .ok_or_else(|| format!("cannot divide {a} by zero"))
    }

    async fn on_crash(&mut self) -> u64 {
        panic!("the worker was asked to crash")
    }
}

/// The parent's handler for the worker's calls.
struct Settings {
    factor: u64,
}

impl ConfigHandler for Settings {
    async fn on_factor(&mut self) -> u64 {
        self.factor
    }
}

fn worker() -> Result<(), Box<dyn Error>> {
    let end = aiosock::inherited::<Config, Ask>()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let (tx, rx) = end.into_split();
            let worker = Worker {
                parent: ConfigClient::new(tx),
            };
            // Up to 64 calls at once; a panic is contained to its call.
            rx.serve_concurrent(worker, 64).await?;
            Ok(())
        })
}

fn main() -> Result<(), Box<dyn Error>> {
    if std::env::args().any(|arg| arg == "--worker") {
        return worker();
    }
    let (here, there) = aiosock::pair::<Ask, Config>()?;
    tokio::runtime::Runtime::new()?.block_on(async move {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("--worker");
        let mut child = aiosock::spawn(cmd, there)?;
        let (tx, rx) = here.into_split();
        // The worker's calls, and the replies to ours, arrive through this receiver.
        let serving = tokio::spawn(rx.serve(Settings { factor: 10 }));
        let ask = AskClient::new(tx);

        println!("square(7) = {}", ask.square(7).await?);

        // 1,000 calls in flight from 8 tasks; each reply finds its caller.
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..8u64 {
            let ask = ask.clone();
            tasks.spawn(async move {
                let calls = (0..125).map(|i| {
                    let n = t * 125 + i;
                    let ask = ask.clone();
                    tokio::spawn(async move { (n, ask.square(n).await) })
                });
                let mut sum = 0;
                for call in calls.collect::<Vec<_>>() {
                    let (n, reply) = call.await.expect("call task");
                    assert_eq!(reply.expect("reply"), n * n);
                    sum += n * n;
                }
                sum
            });
        }
        let mut total = 0;
        while let Some(sum) = tasks.join_next().await {
            total += sum?;
        }
        println!("sum of squares of 0..1000 = {total}");

        println!("scale(4) = {}", ask.scale(4).await?);
        println!("divide(7, 0) = {:?}", ask.divide(7, 0).await?);
        match ask.crash().await {
            Err(aiosock::CallError::Panicked { message }) => {
                println!("crash() failed as it should: the worker panicked: {message}");
            }
            other => return Err(format!("crash() gave {other:?}").into()),
        }
        // The worker goes on after a contained panic.
        println!("square(12) = {}", ask.square(12).await?);

        // Dropping the client ends the worker's stream: it returns, and its end closes.
        drop(ask);
        serving.await??;
        let status = child.wait().await?;
        println!("worker exited: {status}");
        if !status.success() {
            return Err("the worker failed".into());
        }
        Ok(())
    })
}
