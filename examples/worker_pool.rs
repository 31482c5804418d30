//! A pool of worker processes answering calls: `aiosock::Pool` spawns N copies of this
//! program in worker mode (and would restart any that died), and `Pool::map` streams every
//! job to them, up to 1,024 calls in flight per worker, each to the worker with the fewest
//! in flight.
//!
//! `cargo run --release --example worker_pool [--fork] [WORKERS] [JOBS]` (defaults: the
//! CPU count, 200000 jobs). With `--fork` the workers are forked instead (`Pool::fork`,
//! from a `ForkServer` made first thing in `main`): no worker mode is needed. Prints one
//! summary line with the total time and jobs per second.

use std::error::Error;
use std::process::Command;
use std::time::{Duration, Instant};

/// A job: count the Collatz steps from `start` down to 1.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Answered with the number of steps.
    #[reply(u32)]
    Collatz(u64),
}

/// Workers send nothing of their own: only answers.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Silence {
    /// Never sent.
    Nothing,
}

/// The parent's handler for what workers send: nothing comes.
#[derive(Clone)]
struct Parent;

impl SilenceHandler for Parent {
    async fn on_nothing(&mut self) {}
}

/// Calls in flight to each worker: a connection's default `max_calls`.
const IN_FLIGHT: usize = aiosock::Config::DEFAULT_MAX_CALLS;

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
struct Worker;

impl JobHandler for Worker {
    async fn on_collatz(&mut self, start: u64) -> u32 {
        collatz(start)
    }
}

fn worker() -> Result<(), Box<dyn Error>> {
    let end = aiosock::inherited::<Silence, Job>()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            end.serve(Worker).await?;
            Ok(())
        })
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--worker") {
        return worker();
    }
    // The fork server is made while this process has one thread, before the runtime.
    let server = if args.peek().map(String::as_str) == Some("--fork") {
        args.next();
        Some(aiosock::ForkServer::<Silence, Job>::new(|end| {
            end.serve(Worker)
        })?)
    } else {
        None
    };
    let first = args.next();
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
    tokio::runtime::Runtime::new()?.block_on(pool(workers, jobs, server))
}

async fn pool(
    workers: usize,
    jobs: u64,
    server: Option<aiosock::ForkServer<Silence, Job>>,
) -> Result<(), Box<dyn Error>> {
    let started = Instant::now();
    let how = if server.is_some() {
        "forked"
    } else {
        "spawned"
    };
    let pool = match server {
        Some(server) => aiosock::Pool::<JobClient>::fork::<Silence, _>(workers, server, Parent)?,
        None => {
            let exe = std::env::current_exe()?;
            let command = move |_worker: usize| {
                let mut cmd = Command::new(&exe);
                cmd.arg("--worker");
                cmd
            };
            aiosock::Pool::<JobClient>::spawn::<Silence, _>(workers, command, Parent)?
        }
    };
    // Every job in one map: up to `IN_FLIGHT` calls on each worker at once, each new one
    // to the worker with the fewest in flight; the results come back in job order.
    let results = pool
        .map(1..=jobs, IN_FLIGHT, |job| job.collatz_stream())
        .await;
    let (mut done, mut checksum) = (0, 0);
    for (start, steps) in (1..=jobs).zip(results) {
        let steps = steps?;
        if steps != collatz(start) {
            return Err(format!("job {start}: wrong result {steps}").into());
        }
        done += 1;
        checksum += u64::from(steps);
    }
    let elapsed = started.elapsed();
    if done != jobs {
        return Err(format!("{done} of {jobs} jobs done").into());
    }
    if let Some(worker) = pool.workers().iter().find(|w| w.restarts > 0) {
        return Err(format!("worker {} was restarted", worker.index).into());
    }
    pool.shutdown(Duration::from_secs(30)).await;
    println!(
        "worker_pool: {workers} {how} workers, {done} jobs in {:.3} s, {:.0} jobs/s (checksum {checksum})",
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
