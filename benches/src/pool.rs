//! The `pool` workload: jobs per second through a pool of [`WORKERS`] worker processes,
//! `aiosock::Pool` against the hand-written pool it replaces.
//!
//! A job is the one of `examples/worker_pool.rs`: count the Collatz steps from `start`
//! down to 1 ([`collatz`]), a real but small computation (about a hundred steps for the
//! starts used here), done in a worker. Job `id` (from 0) starts at `id + 1`. The parent
//! spawns [`WORKERS`] children (this binary re-executed, as for the other workloads),
//! sends each one job first (a warm-up, so that process start-up is not timed), then
//! times `n` jobs from the first sent to the last result checked. Every result is
//! checked against a table of the answers computed before the clock starts
//! ([`expected`]), so that the parent does not repeat the workers' work; the workers'
//! shutdown comes after the clock stops. Both systems run the parent on a current-thread
//! runtime (as the calls workloads do: the systems, not the runtimes, are compared), and
//! each worker on one of its own.
//!
//! - `pool`: `aiosock::Pool` as `examples/worker_pool.rs` used it before `Pool::map`: the generated
//!   [`JobClient`], [`LANES_PER_WORKER`] lanes of calls per worker (tasks), each taking
//!   the next job from one shared counter and waiting for its answer; the pool sends each
//!   call to the worker with the fewest in flight. The workers answer with
//!   `Endpoint::serve`.
//! - `pool-map`: the same pool, every job in one `Pool::map` as `examples/worker_pool.rs`
//!   does, with 1,024 calls in flight per worker (a connection's default `max_calls`),
//!   each worker's through one stream of calls (`job.collatz_stream()`): no task or
//!   future per call.
//! - `pool-manual`: the hand-written pool the example had before the pool existed: jobs
//!   dealt round-robin (worker `w` gets jobs `w`, `w + N`, …) as one-way [`Deal`]
//!   messages by a feeder task per worker, and the results streamed back as one-way
//!   [`Done`] messages, read and checked by id by a task per worker; workers started with
//!   `aiosock::spawn` and `inherited`, serving with the handler trait and a `Sender`.

/// Worker processes in the pool workload: the machine the README's numbers come from has
/// two cores.
pub(crate) const WORKERS: usize = 2;

/// Lanes of calls per worker in the `pool` system: calls in flight to each worker. 256
/// measured faster than 64 (which `examples/worker_pool.rs` uses): see the crate docs.
pub(crate) const LANES_PER_WORKER: usize = 256;

/// The pool's protocol, as in `examples/worker_pool.rs`.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Job {
    /// Answered with the number of Collatz steps from the start.
    #[reply(u32)]
    Collatz(u64),
}

/// What the pool's workers send of their own accord: nothing.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Silence {
    /// Never sent.
    Nothing,
}

/// The hand-written pool's jobs: one-way messages carrying the job's id.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Deal {
    /// Answered with [`Done::Steps`] of the same id.
    Collatz {
        /// The job's number, echoed in its result.
        id: u64,
        /// Where the sequence starts.
        start: u64,
    },
}

/// The hand-written pool's results.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Done {
    /// The result of one job.
    Steps {
        /// The job's number.
        id: u64,
        /// The number of steps.
        steps: u32,
    },
}

/// The job: Collatz steps from `n` down to 1.
pub(crate) fn collatz(mut n: u64) -> u32 {
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

/// The warm-up job's start: 27 takes 111 steps.
pub(crate) const WARMUP_START: u64 = 27;

/// The answer of every job of a run of `jobs`, by id (job `id` starts at `id + 1`).
pub(crate) fn expected(jobs: u64) -> Vec<u32> {
    (1..=jobs).map(collatz).collect()
}

/// Checks job `id`'s result against `expected`.
pub(crate) fn check(expected: &[u32], id: u64, steps: u32) -> Result<(), String> {
    match usize::try_from(id).ok().and_then(|i| expected.get(i)) {
        Some(&want) if want == steps => Ok(()),
        Some(&want) => Err(format!("job {id}: {steps} steps, expected {want}")),
        None => Err(format!("job {id}: no such job")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collatz_steps_of_known_starts() {
        assert_eq!(collatz(1), 0);
        assert_eq!(collatz(2), 1);
        assert_eq!(collatz(6), 8);
        assert_eq!(collatz(WARMUP_START), 111);
    }

    #[test]
    fn results_are_checked_by_id() {
        let table = expected(10);
        assert_eq!(table[5], collatz(6));
        assert!(check(&table, 5, 8).is_ok());
        assert!(check(&table, 5, 9).is_err());
        assert!(check(&table, 10, 0).is_err());
    }
}
