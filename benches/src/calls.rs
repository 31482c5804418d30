//! The `calls` workloads: calls with replies, many in flight, against a server that
//! squares a `u64`.
//!
//! The parent is the client, the child the server. The client runs [`Plan::tasks`] tasks,
//! each keeping [`Plan::per_task`] calls in flight (a new call starts as soon as one
//! returns), first for a warm-up (not counted), then for a measuring window: calls/s is
//! the calls that returned within the window, divided by the window; every one of them
//! has its latency (from the call's first poll to its reply) in a [`Histogram`]. Calls
//! still in flight at the end of the window are waited for and not counted. Every reply
//! is checked against `n * n`.
//!
//! Every async system runs both processes on a current-thread runtime with a `LocalSet`,
//! the same for all, so that the systems and not the runtimes are compared (on 2 cores,
//! two multi-thread runtimes would fight over them). The raw baseline drives all its
//! calls from one blocking thread.

use std::fmt;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::BoxError;

/// Calls in flight in each calls workload, in table order.
pub(crate) const IN_FLIGHT: [u16; 5] = [1, 8, 64, 256, 1024];

/// The most tasks a client runs; fewer when fewer calls are in flight.
pub(crate) const MAX_TASKS: usize = 8;

/// The calls of the `aiosock` systems: the generated client and handler.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Math {
    /// Answered with `n * n` (wrapping).
    #[reply(u64)]
    Square(u64),
}

/// What an `aiosock` server sends of its own accord: nothing (its replies are not
/// messages of this type).
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Quiet {
    /// Never sent.
    Never,
}

/// The requests of `aiosock-manual`: one-way messages carrying the call's id.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Job {
    /// Answered with [`Done::Squared`] of the same id.
    Square {
        /// The call's id, chosen by the client.
        id: u64,
        /// The number to square.
        n: u64,
    },
}

/// The answers of `aiosock-manual`, matched to their calls by id.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Done {
    /// `n * n` (wrapping) for the call `id`.
    Squared {
        /// The call's id.
        id: u64,
        /// The square.
        value: u64,
    },
}

/// What the server computes.
pub(crate) fn square(n: u64) -> u64 {
    n.wrapping_mul(n)
}

/// What the client of one run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Calls in flight in all.
    pub(crate) in_flight: usize,
    /// The warm-up before the window.
    pub(crate) warmup: Duration,
    /// The measuring window.
    pub(crate) window: Duration,
}

impl Plan {
    /// Tasks making calls: `min(in_flight, MAX_TASKS)`.
    pub(crate) fn tasks(&self) -> usize {
        self.in_flight.clamp(1, MAX_TASKS)
    }

    /// Calls in flight from each task.
    pub(crate) fn per_task(&self) -> usize {
        (self.in_flight / self.tasks()).max(1)
    }
}

/// What a client measured in its window.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallStats {
    /// Calls that returned within the window.
    pub(crate) calls: u64,
    /// The window.
    pub(crate) window: Duration,
    /// Their latencies.
    pub(crate) latency: Histogram,
}

impl CallStats {
    /// Calls per second.
    pub(crate) fn rate(&self) -> f64 {
        self.calls as f64 / self.window.as_secs_f64()
    }
}

/// A client handle of one system: makes one call. Each task has its own clone.
pub(crate) trait Caller: Clone + 'static {
    /// Calls the server's square with `n` and returns the reply.
    async fn call(&self, n: u64) -> Result<u64, BoxError>;
}

/// Runs the plan's warm-up and then its window with `caller`, on the current `LocalSet`.
pub(crate) async fn drive<C: Caller>(plan: &Plan, caller: C) -> Result<CallStats, BoxError> {
    let task = |t, tasks, per_task, deadline| {
        let caller = caller.clone();
        async move { calls_of_one_task(&caller, t, tasks, per_task, deadline).await }
    };
    phase(plan, plan.warmup, &task).await?;
    phase(plan, plan.window, &task).await
}

/// What one task of a phase returns: its calls counted in the window and their
/// latencies.
type TaskResult = Result<(u64, Histogram), BoxError>;

/// One phase: every task (made by `task`) keeps its calls in flight until `length` has
/// passed; their counts and latencies summed.
async fn phase<F: Future<Output = TaskResult> + 'static>(
    plan: &Plan,
    length: Duration,
    task: &impl Fn(u64, u64, usize, Instant) -> F,
) -> Result<CallStats, BoxError> {
    let deadline = Instant::now() + length;
    let tasks: Vec<_> = (0..plan.tasks())
        .map(|t| {
            let (tasks, per_task) = (plan.tasks() as u64, plan.per_task());
            tokio::task::spawn_local(task(t as u64, tasks, per_task, deadline))
        })
        .collect();
    let mut stats = CallStats {
        window: length,
        ..CallStats::default()
    };
    for task in tasks {
        let (calls, latency) = task.await??;
        stats.calls += calls;
        stats.latency.merge(&latency);
    }
    Ok(stats)
}

/// One task's calls: `per_task` in flight; task `t` of `tasks` squares `t`, `t + tasks`, …
async fn calls_of_one_task<C: Caller>(
    caller: &C,
    t: u64,
    tasks: u64,
    per_task: usize,
    deadline: Instant,
) -> Result<(u64, Histogram), BoxError> {
    let mut latency = Histogram::default();
    let mut calls = 0;
    let mut next = t;
    let one = |n: u64| async move {
        let start = Instant::now();
        let reply = caller.call(n).await;
        (n, start, reply)
    };
    let mut pending = FuturesUnordered::new();
    for _ in 0..per_task {
        pending.push(one(next));
        next += tasks;
    }
    while let Some((n, start, reply)) = pending.next().await {
        let now = Instant::now();
        let reply = reply?;
        if reply != square(n) {
            return Err(format!("the square of {n} came back as {reply}").into());
        }
        if now <= deadline {
            calls += 1;
            latency.record(now - start);
            pending.push(one(next));
            next += tasks;
        }
    }
    Ok((calls, latency))
}

/// Runs the plan's warm-up and then its window with streams of calls: each task keeps
/// its calls in flight through one `CallStream` (`client.square_stream()`) instead of a
/// future per call. Counted as [`drive`] counts.
pub(crate) async fn drive_streams(plan: &Plan, client: &MathClient) -> Result<CallStats, BoxError> {
    let task = |t, tasks, per_task, deadline| {
        stream_of_one_task(client.square_stream(), t, tasks, per_task, deadline)
    };
    phase(plan, plan.warmup, &task).await?;
    phase(plan, plan.window, &task).await
}

/// One task's stream: `per_task` calls in flight, each tagged with the slot that keeps
/// its number and start time until its reply, when the next call takes the slot.
async fn stream_of_one_task(
    mut stream: ::aiosock::CallStream<Math, u64, u64>,
    t: u64,
    tasks: u64,
    per_task: usize,
    deadline: Instant,
) -> Result<(u64, Histogram), BoxError> {
    let mut latency = Histogram::default();
    let mut calls = 0;
    let mut next = t;
    let mut slots = vec![(0u64, Instant::now()); per_task];
    for (tag, slot) in slots.iter_mut().enumerate() {
        *slot = (next, Instant::now());
        stream.push(next, tag as u64).await?;
        next += tasks;
    }
    while let Some((tag, reply)) = stream.next().await {
        let now = Instant::now();
        let (n, start) = slots[tag as usize];
        let reply = reply?;
        if reply != square(n) {
            return Err(format!("the square of {n} came back as {reply}").into());
        }
        if now <= deadline {
            calls += 1;
            latency.record(now - start);
            slots[tag as usize] = (next, Instant::now());
            stream.push(next, tag).await?;
            next += tasks;
        }
    }
    Ok((calls, latency))
}

/// Sub-buckets per power of two: values are kept to within 1/64 (1.6 %).
const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
/// Buckets for every `u64`: the values below `2 * SUB` one each, then `SUB` per power of two.
const BUCKETS: usize = (64 - SUB_BITS as usize) * SUB + SUB;

/// Latencies in nanoseconds, log-linear: constant memory and no allocation per call,
/// mergeable across tasks.
#[derive(Clone)]
pub(crate) struct Histogram {
    counts: Box<[u64]>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
        }
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl Histogram {
    /// The bucket of `v`: `v` itself below `2 * SUB`, else the top `SUB_BITS + 1` bits of
    /// `v` (which lie in `SUB..2 * SUB`) after the shift that leaves that many.
    fn index(v: u64) -> usize {
        let bits = 64 - v.leading_zeros();
        let shift = bits.saturating_sub(SUB_BITS + 1);
        (shift as usize) * SUB + (v >> shift) as usize
    }

    /// The middle of bucket `i`.
    fn value(i: usize) -> u64 {
        if i < 2 * SUB {
            return i as u64;
        }
        let shift = (i / SUB - 1) as u32;
        let top = (i % SUB + SUB) as u64;
        (top << shift) + (1 << shift) / 2
    }

    /// Counts one latency.
    pub(crate) fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[Self::index(ns)] += 1;
        self.total += 1;
    }

    /// Adds `other`'s counts.
    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
    }

    /// The `q`-quantile (0 < q ≤ 1), the nearest rank; `None` if empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_nanos(Self::value(i)));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_contiguous_and_close() {
        let mut last = 0;
        for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let i = Histogram::index(v);
            assert!(
                i >= last && i <= last + 1 || v > 100_000,
                "{v}: {i} after {last}"
            );
            assert!(i < BUCKETS, "{v}");
            let mid = Histogram::value(i) as f64;
            assert!(
                (mid - v as f64).abs() <= v as f64 / SUB as f64 + 0.5,
                "{v}: {mid}"
            );
            last = i;
        }
    }

    #[test]
    fn quantiles_of_a_known_spread() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        let mut other = Histogram::default();
        other.record(Duration::from_secs(1));
        h.merge(&other);
        let near = |d: Duration, us: f64| (d.as_secs_f64() * 1e6 - us).abs() / us < 0.02;
        assert!(
            near(h.quantile(0.5).unwrap(), 51.0),
            "{:?}",
            h.quantile(0.5)
        );
        assert!(
            near(h.quantile(0.99).unwrap(), 100.0),
            "{:?}",
            h.quantile(0.99)
        );
        assert!(near(h.quantile(1.0).unwrap(), 1e6));
    }

    #[test]
    fn plans_split_calls_over_at_most_eight_tasks() {
        let plan = |in_flight| Plan {
            in_flight,
            warmup: Duration::ZERO,
            window: Duration::ZERO,
        };
        assert_eq!((plan(1).tasks(), plan(1).per_task()), (1, 1));
        assert_eq!((plan(64).tasks(), plan(64).per_task()), (8, 8));
        assert_eq!((plan(1024).tasks(), plan(1024).per_task()), (8, 128));
    }
}
