//! A pool of worker processes: the parent spawns N copies of this program in worker mode,
//! deals each a share of the jobs, collects the typed results and shuts the workers down.
//!
//! `cargo run --release --example worker_pool [WORKERS] [JOBS]` (defaults: the CPU count,
//! 200000 jobs). Prints one summary line with the total time and jobs per second.

use std::error::Error;
use std::process::Command;
use std::time::{Duration, Instant};

/// A job: count the Collatz steps from `start` down to 1.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// One job.
    Collatz {
        /// The job's number, echoed in its result.
        id: u64,
        /// Where the sequence starts.
        start: u64,
    },
}

/// A worker's answers.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// The result of one job.
    Steps {
        /// The job's number.
        id: u64,
        /// The number of steps.
        steps: u32,
    },
}

fn collatz(mut n: u64) -> u32 {
    let mut steps = 0;
    while n > 1 {
        n = if n.is_multiple_of(2) {
            n / 2
        } else {
            3 * n + 1
        };
        steps += 1;
    }
    steps
}

/// The worker: answers each job; the parent closing its side ends it.
struct Worker {
    out: aiosock::Sender<Done>,
}

impl JobHandler for Worker {
    async fn on_collatz(&mut self, id: u64, start: u64) {
        let steps = collatz(start);
        if self.out.send(Done::Steps { id, steps }).await.is_err() {
            eprintln!("worker {}: the parent is gone", std::process::id());
        }
    }
}

fn worker() -> Result<(), Box<dyn Error>> {
    let end = aiosock::inherited::<Done, Job>()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let (tx, rx) = end.into_split();
            rx.serve(Worker { out: tx }).await?;
            Ok(())
        })
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    if first.as_deref() == Some("--worker") {
        return worker();
    }
    let workers: usize = match first {
        Some(n) => n.parse()?,
        None => std::thread::available_parallelism().map_or(2, |n| n.get()),
    };
    let jobs: u64 = match args.next() {
        Some(n) => n.parse()?,
        None => 200_000,
    };
    if workers == 0 {
        return Err("at least one worker".into());
    }
    tokio::runtime::Runtime::new()?.block_on(pool(workers, jobs))
}

async fn pool(workers: usize, jobs: u64) -> Result<(), Box<dyn Error>> {
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let mut runs = Vec::new();
    for w in 0..workers as u64 {
        let (here, there) = aiosock::pair::<Job, Done>()?;
        let mut cmd = Command::new(&exe);
        cmd.arg("--worker");
        let mut child = aiosock::ChildOptions::new()
            .kill_on_drop(true)
            .spawn(cmd, there)?;
        let (tx, mut rx) = here.into_split();
        // This worker's share: every `workers`-th job.
        let share: Vec<u64> = (w..jobs).step_by(workers).collect();
        runs.push(tokio::spawn(async move {
            let expected = share.len();
            let feeder = tokio::spawn(async move {
                for id in share {
                    let job = Job::Collatz { id, start: id + 1 };
                    tx.send(job).await.map_err(|e| e.to_string())?;
                }
                // Dropping `tx` tells the worker there are no more jobs.
                Ok::<_, String>(())
            });
            let mut checksum = 0u64;
            let mut count = 0;
            while let Some(Done::Steps { id, steps }) =
                rx.recv().await.map_err(|e| e.to_string())?
            {
                if steps != collatz(id + 1) {
                    return Err(format!("job {id}: wrong result {steps}"));
                }
                checksum += u64::from(steps);
                count += 1;
            }
            feeder.await.map_err(|e| e.to_string())??;
            if count != expected {
                return Err(format!("worker {w}: {count} of {expected} results"));
            }
            let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .map_err(|_| "a worker did not exit".to_string())?
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("worker {w} failed: {status}"));
            }
            Ok((count, checksum))
        }));
    }
    let (mut done, mut checksum) = (0, 0);
    for run in runs {
        let (count, sum) = run.await??;
        done += count;
        checksum += sum;
    }
    let elapsed = started.elapsed();
    println!(
        "worker_pool: {workers} workers, {done} jobs in {:.3} s, {:.0} jobs/s (checksum {checksum})",
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
