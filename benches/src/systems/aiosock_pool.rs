//! The pool workload's systems (see [`crate::pool`]): `pool`, `aiosock::Pool` as
//! `examples/worker_pool.rs` uses it, `pool-map`, all jobs in one `Pool::map`, and
//! `pool-manual`, the hand-written pool that
//! example had before (`git show 31a9a4f:examples/worker_pool.rs`). Both start
//! [`WORKERS`] children from [`Workers`], put each under the run's watchdog, and have them
//! killed if the parent gives up (the pool's workers, and `kill_on_drop` children).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ::aiosock::{ChildOptions, Pool, Sender};
use futures_util::future::join_all;

use super::{NO_POOL, System, on_local_runtime};
use crate::BoxError;
use crate::pool::{
    Deal, DealHandler, Done, Job, JobClient, JobHandler, LANES_PER_WORKER, Silence, SilenceHandler,
    WARMUP_START, WORKERS, check, collatz, expected,
};
use crate::process::{ChildCmd, Workers, check_status};
use crate::workload::{Outcome, Role, Workload};

/// How long the workers get to exit after the jobs, before they are killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// `aiosock::Pool`.
#[derive(Debug)]
pub(crate) struct AiosockPool;

impl System for AiosockPool {
    fn name(&self) -> &'static str {
        "pool"
    }

    fn takes_part(&self, workload: Workload) -> bool {
        workload == Workload::Pool
    }

    fn parent(&self, child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        match role {
            Role::Deal { jobs } => pool_parent(child.workers(), *jobs),
            _ => Err(NO_POOL.into()),
        }
    }

    fn child(&self, _: &Role) -> Result<Outcome, BoxError> {
        pool_child()
    }
}

/// `aiosock::Pool::map`.
#[derive(Debug)]
pub(crate) struct AiosockPoolMap;

impl System for AiosockPoolMap {
    fn name(&self) -> &'static str {
        "pool-map"
    }

    fn takes_part(&self, workload: Workload) -> bool {
        workload == Workload::Pool
    }

    fn parent(&self, child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        match role {
            Role::Deal { jobs } => map_parent(child.workers(), *jobs),
            _ => Err(NO_POOL.into()),
        }
    }

    fn child(&self, _: &Role) -> Result<Outcome, BoxError> {
        pool_child()
    }
}

/// The hand-written pool.
#[derive(Debug)]
pub(crate) struct PoolManual;

impl System for PoolManual {
    fn name(&self) -> &'static str {
        "pool-manual"
    }

    fn takes_part(&self, workload: Workload) -> bool {
        workload == Workload::Pool
    }

    fn parent(&self, child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        match role {
            Role::Deal { jobs } => manual_parent(child.workers(), *jobs),
            _ => Err(NO_POOL.into()),
        }
    }

    fn child(&self, _: &Role) -> Result<Outcome, BoxError> {
        manual_child()
    }
}

/// The parent's handler for what the pool's workers send: nothing comes.
#[derive(Debug, Clone, Copy)]
struct Parent;

impl SilenceHandler for Parent {
    async fn on_nothing(&mut self) {}
}

/// Starts the pool of [`WORKERS`] under the run's watchdog, and gives each worker one
/// job before the clock starts: calls made together go to different workers (the least
/// loaded).
async fn started_pool(workers: &Arc<Workers>) -> Result<Arc<Pool<JobClient>>, BoxError> {
    let command = {
        let workers = workers.clone();
        move |_worker: usize| workers.command()
    };
    let pool = Arc::new(Pool::<JobClient>::spawn::<Silence, _>(
        WORKERS, command, Parent,
    )?);
    for pid in pool.workers().iter().filter_map(|w| w.pid) {
        workers.watch(pid);
    }
    let warmups = (0..WORKERS).map(|_| pool.call(async |job| job.collatz(WARMUP_START).await));
    for steps in join_all(warmups).await {
        if steps? != collatz(WARMUP_START) {
            return Err("the warm-up job came back wrong".into());
        }
    }
    Ok(pool)
}

/// After the clock stopped: no worker was restarted, and the pool shuts down.
async fn finished_pool(pool: &Pool<JobClient>) -> Result<(), BoxError> {
    if let Some(worker) = pool.workers().iter().find(|w| w.restarts > 0) {
        return Err(format!("worker {} was restarted", worker.index).into());
    }
    pool.shutdown(SHUTDOWN_GRACE).await;
    Ok(())
}

/// The pool's side: lanes of calls through `aiosock::Pool`.
fn pool_parent(workers: Workers, jobs: u64) -> Result<Outcome, BoxError> {
    let workers = Arc::new(workers);
    let expected: Arc<[u32]> = expected(jobs).into();
    on_local_runtime(async move {
        let pool = started_pool(&workers).await?;
        let started = Instant::now();
        // Lanes of calls, as in the example: each takes the next job and waits for its
        // answer; the pool sends each call to the worker with the fewest in flight.
        let next = Arc::new(AtomicU64::new(0));
        let lanes: Vec<_> = (0..WORKERS * LANES_PER_WORKER)
            .map(|_| {
                let (pool, next, expected) = (pool.clone(), next.clone(), expected.clone());
                tokio::task::spawn_local(async move {
                    let mut count = 0u64;
                    loop {
                        let id = next.fetch_add(1, Ordering::Relaxed);
                        if id >= jobs {
                            return Ok::<_, String>(count);
                        }
                        let steps = pool
                            .call(async |job| job.collatz(id + 1).await)
                            .await
                            .map_err(|e| format!("job {id}: {e}"))?;
                        check(&expected, id, steps)?;
                        count += 1;
                    }
                })
            })
            .collect();
        let mut done = 0;
        for lane in lanes {
            done += lane.await??;
        }
        let elapsed = started.elapsed();
        if done != jobs {
            return Err(format!("{done} of {jobs} jobs done").into());
        }
        finished_pool(&pool).await?;
        Ok(Outcome::timed(elapsed))
    })?
}

/// `Pool::map`'s side: every job in one map, a connection's default `max_calls` (1,024)
/// in flight per worker through a stream of calls each, as `examples/worker_pool.rs` does.
fn map_parent(workers: Workers, jobs: u64) -> Result<Outcome, BoxError> {
    let workers = Arc::new(workers);
    let expected: Arc<[u32]> = expected(jobs).into();
    on_local_runtime(async move {
        let pool = started_pool(&workers).await?;
        let started = Instant::now();
        let results = pool
            .map(1..=jobs, ::aiosock::Config::DEFAULT_MAX_CALLS, |job| {
                job.collatz_stream()
            })
            .await;
        for (id, steps) in (0..jobs).zip(results) {
            check(&expected, id, steps.map_err(|e| format!("job {id}: {e}"))?)?;
        }
        let elapsed = started.elapsed();
        finished_pool(&pool).await?;
        Ok(Outcome::timed(elapsed))
    })?
}

/// A pool worker: answers each job; the pool closing its connection ends it.
#[derive(Debug, Clone, Copy)]
struct Worker;

impl JobHandler for Worker {
    async fn on_collatz(&mut self, start: u64) -> u32 {
        collatz(start)
    }
}

fn pool_child() -> Result<Outcome, BoxError> {
    let end = ::aiosock::inherited::<Silence, Job>()?;
    on_local_runtime(async move {
        end.serve(Worker).await?;
        Ok(Outcome::default())
    })?
}

/// The hand-written pool's side: per worker, a feeder task dealing its share of the jobs
/// and a reader task checking its results.
fn manual_parent(workers: Workers, jobs: u64) -> Result<Outcome, BoxError> {
    let expected: Arc<[u32]> = expected(jobs).into();
    on_local_runtime(async move {
        let mut ends = Vec::with_capacity(WORKERS);
        for _ in 0..WORKERS {
            let (here, there) = ::aiosock::pair::<Deal, Done>()?;
            let child = ChildOptions::new()
                .kill_on_drop(true)
                .spawn(workers.command(), there)?;
            workers.watch(child.id());
            let (tx, rx) = here.into_split();
            ends.push((child, tx, rx));
        }
        // One job per worker, before the clock starts; its id is past the run's.
        let warmup = Deal::Collatz {
            id: jobs,
            start: WARMUP_START,
        };
        for (_, tx, _) in &ends {
            tx.send(warmup.clone()).await?;
        }
        for (_, _, rx) in &mut ends {
            match rx.recv().await? {
                Some(Done::Steps { id, steps }) if id == jobs && steps == collatz(WARMUP_START) => {
                }
                other => return Err(format!("warm-up: {other:?}").into()),
            }
        }
        let started = Instant::now();
        let mut runs = Vec::with_capacity(WORKERS);
        for (w, (child, tx, mut rx)) in ends.into_iter().enumerate() {
            // This worker's share: every `WORKERS`-th job.
            let share = (w as u64..jobs).step_by(WORKERS);
            let expected_count = jobs.saturating_sub(w as u64).div_ceil(WORKERS as u64);
            let feeder = tokio::task::spawn_local(async move {
                for id in share {
                    let job = Deal::Collatz { id, start: id + 1 };
                    tx.send(job).await.map_err(|e| e.to_string())?;
                }
                // Dropping `tx` tells the worker there are no more jobs.
                Ok::<_, String>(())
            });
            let expected = expected.clone();
            let reader = tokio::task::spawn_local(async move {
                let mut count = 0u64;
                while count < expected_count {
                    match rx.recv().await.map_err(|e| e.to_string())? {
                        Some(Done::Steps { id, steps }) => {
                            if id as usize % WORKERS != w {
                                return Err(format!("worker {w}: the result of job {id}"));
                            }
                            check(&expected, id, steps)?;
                            count += 1;
                        }
                        None => {
                            return Err(format!("worker {w}: {count} of {expected_count} results"));
                        }
                    }
                }
                Ok(rx)
            });
            runs.push((child, feeder, reader));
        }
        let mut ends = Vec::with_capacity(WORKERS);
        for (child, feeder, reader) in runs {
            let rx = reader.await??;
            feeder.await??;
            ends.push((child, rx));
        }
        let elapsed = started.elapsed();
        // Each worker's stream ends after its share (no result twice), and it exits.
        for (w, (mut child, mut rx)) in ends.into_iter().enumerate() {
            if let Some(extra) = rx.recv().await? {
                return Err(format!("worker {w}: a result too many: {extra:?}").into());
            }
            check_status(
                tokio::time::timeout(SHUTDOWN_GRACE, child.wait())
                    .await
                    .map_err(|_| format!("worker {w} did not exit"))??,
            )?;
        }
        Ok(Outcome::timed(elapsed))
    })?
}

/// A hand-written worker: answers each job with a one-way message.
struct Answerer {
    out: Sender<Done>,
    /// The parent was seen to be gone (said once, not once per job).
    gone: bool,
}

impl DealHandler for Answerer {
    async fn on_collatz(&mut self, id: u64, start: u64) {
        let steps = collatz(start);
        if self.out.send(Done::Steps { id, steps }).await.is_err() && !self.gone {
            self.gone = true;
            eprintln!(
                "pool-manual worker {}: the parent is gone",
                std::process::id()
            );
        }
    }
}

fn manual_child() -> Result<Outcome, BoxError> {
    let end = ::aiosock::inherited::<Done, Deal>()?;
    on_local_runtime(async move {
        let (out, jobs) = end.into_split();
        jobs.serve(Answerer { out, gone: false }).await?;
        Ok(Outcome::default())
    })?
}
