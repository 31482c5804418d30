//! aiosock in the calls workloads, three ways, all over `aiosock::spawn` and
//! `aiosock::inherited` with the default [`Config`](::aiosock::Config):
//!
//! - `aiosock`: the generated [`MathClient`] (`client.square(n).await`), its replies read by
//!   the parent's `Receiver::serve` in a task; the child answers with `Endpoint::serve`,
//!   one call at a time in order. Squaring never waits, so in-order serving loses nothing
//!   here, and it spawns no task per call.
//! - `aiosock-concurrent`: the same client; the child answers with
//!   `Endpoint::serve_concurrent`, a task per call, its limit [`CONCURRENT_LIMIT`] (the
//!   default `max_calls`, so never below the calls in flight): what a server whose handlers
//!   may wait would use.
//! - `aiosock-stream`: the same client's streams of calls (`client.square_stream()`), one
//!   per task, keeping the task's calls in flight without a future per call; the child
//!   serves as for `aiosock`.
//! - `aiosock-manual`: correlation written by hand, as a pool was written before calls
//!   existed (see `examples/worker_pool.rs`): one-way [`Job`]s carrying an id, one-way
//!   [`Done`]s back, matched to their callers by a reader task through a
//!   `HashMap<u64, oneshot::Sender<u64>>` behind a `Mutex`. The child serves with
//!   `Receiver::serve`, its handler sending each answer with the `Sender`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ::aiosock::{ChildOptions, Endpoint, Protocol, Sender};
use tokio::sync::oneshot;

use super::{System, on_local_runtime};
use crate::BoxError;
use crate::calls::{
    Caller, Done, Job, JobHandler, Math, MathClient, MathHandler, Plan, Quiet, QuietHandler, drive,
    drive_streams, square,
};
use crate::process::{ChildCmd, check_status};
use crate::workload::{Outcome, Role, Workload};

/// The concurrent server's limit: aiosock's default `max_calls`, the most calls a client
/// has in flight.
const CONCURRENT_LIMIT: usize = ::aiosock::Config::DEFAULT_MAX_CALLS;

/// How the generated server answers.
#[derive(Debug, Clone, Copy)]
pub(super) enum Serving {
    /// `Endpoint::serve`.
    InOrder,
    /// `Endpoint::serve_concurrent` up to [`CONCURRENT_LIMIT`].
    Concurrent,
}

/// The generated client with a concurrent server.
#[derive(Debug)]
pub(crate) struct AiosockConcurrent;

impl System for AiosockConcurrent {
    fn name(&self) -> &'static str {
        "aiosock-concurrent"
    }

    fn takes_part(&self, workload: Workload) -> bool {
        workload.is_calls()
    }

    fn parent(&self, child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        match role {
            Role::Call(plan) => generated_parent(child, plan),
            _ => Err(super::NO_CALLS.into()),
        }
    }

    fn child(&self, _: &Role) -> Result<Outcome, BoxError> {
        generated_child(Serving::Concurrent)
    }
}

/// The generated client's streams of calls, with the in-order server.
#[derive(Debug)]
pub(crate) struct AiosockStream;

impl System for AiosockStream {
    fn name(&self) -> &'static str {
        "aiosock-stream"
    }

    fn takes_part(&self, workload: Workload) -> bool {
        workload.is_calls()
    }

    fn parent(&self, child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        match role {
            Role::Call(plan) => stream_parent(child, plan),
            _ => Err(super::NO_CALLS.into()),
        }
    }

    fn child(&self, _: &Role) -> Result<Outcome, BoxError> {
        generated_child(Serving::InOrder)
    }
}

/// Correlation written by hand.
#[derive(Debug)]
pub(crate) struct AiosockManual;

impl System for AiosockManual {
    fn name(&self) -> &'static str {
        "aiosock-manual"
    }

    fn takes_part(&self, workload: Workload) -> bool {
        workload.is_calls()
    }

    fn parent(&self, child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        match role {
            Role::Call(plan) => manual_parent(child, plan),
            _ => Err(super::NO_CALLS.into()),
        }
    }

    fn child(&self, _: &Role) -> Result<Outcome, BoxError> {
        manual_child()
    }
}

/// Starts the child on `there`, killed if this process gives up on it.
fn spawn<Out: Protocol, In: Protocol>(
    child: ChildCmd,
    there: Endpoint<Out, In>,
) -> Result<::aiosock::Child, BoxError> {
    child.spawn_with(
        |command| {
            Ok(ChildOptions::new()
                .kill_on_drop(true)
                .spawn(command, there)?)
        },
        ::aiosock::Child::id,
    )
}

/// The generated client's side (`aiosock`, `aiosock-concurrent`).
pub(super) fn generated_parent(child: ChildCmd, plan: &Plan) -> Result<Outcome, BoxError> {
    on_local_runtime(async {
        let (here, there) = ::aiosock::pair::<Math, Quiet>()?;
        let mut child = spawn(child, there)?;
        let (tx, rx) = here.into_split();
        // The replies arrive through the receiver, which must run.
        let replies = tokio::task::spawn_local(rx.serve(()));
        // Dropping the last client once the calls are done lets the child's serve end.
        let stats = drive(plan, MathClient::new(tx)).await?;
        check_status(child.wait().await?)?;
        replies.await??;
        Ok(Outcome::calls(stats))
    })?
}

/// The streams' side (`aiosock-stream`): as [`generated_parent`], each task's calls in
/// one `CallStream`.
fn stream_parent(child: ChildCmd, plan: &Plan) -> Result<Outcome, BoxError> {
    on_local_runtime(async {
        let (here, there) = ::aiosock::pair::<Math, Quiet>()?;
        let mut child = spawn(child, there)?;
        let (tx, rx) = here.into_split();
        let replies = tokio::task::spawn_local(rx.serve(()));
        let client = MathClient::new(tx);
        let stats = drive_streams(plan, &client).await?;
        drop(client);
        check_status(child.wait().await?)?;
        replies.await??;
        Ok(Outcome::calls(stats))
    })?
}

impl Caller for MathClient {
    async fn call(&self, n: u64) -> Result<u64, BoxError> {
        Ok(self.square(n).await?)
    }
}

/// The child of `aiosock` and `aiosock-concurrent`.
pub(super) fn generated_child(serving: Serving) -> Result<Outcome, BoxError> {
    let end = ::aiosock::inherited::<Quiet, Math>()?;
    on_local_runtime(async move {
        match serving {
            Serving::InOrder => drop(end.serve(Squarer).await?),
            Serving::Concurrent => drop(end.serve_concurrent(Squarer, CONCURRENT_LIMIT).await?),
        }
        Ok(Outcome::default())
    })?
}

/// The generated server's handler.
#[derive(Debug, Clone, Copy)]
struct Squarer;

impl MathHandler for Squarer {
    async fn on_square(&mut self, n: u64) -> u64 {
        square(n)
    }
}

/// The client's handler for what the server sends of its own accord: nothing.
impl QuietHandler for () {
    async fn on_never(&mut self) {}
}

/// The callers waiting for their answers, by call id.
type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<u64>>>>;

/// The hand-written client: a `Sender` of jobs, and the table of callers waiting.
#[derive(Debug, Clone)]
struct ManualClient {
    jobs: Sender<Job>,
    waiting: Waiting,
    next_id: Arc<AtomicU64>,
}

impl Caller for ManualClient {
    async fn call(&self, n: u64) -> Result<u64, BoxError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        lock(&self.waiting).insert(id, answer);
        if let Err(e) = self.jobs.send(Job::Square { id, n }).await {
            lock(&self.waiting).remove(&id);
            return Err(e.to_string().into());
        }
        answered
            .await
            .map_err(|_| "the connection ended before the answer".into())
    }
}

fn lock(waiting: &Waiting) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<u64>>> {
    waiting.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The hand-written client's side.
fn manual_parent(child: ChildCmd, plan: &Plan) -> Result<Outcome, BoxError> {
    on_local_runtime(async {
        let (here, there) = ::aiosock::pair::<Job, Done>()?;
        let mut child = spawn(child, there)?;
        let (jobs, mut done) = here.into_split();
        let waiting = Waiting::default();
        let reader = tokio::task::spawn_local({
            let waiting = waiting.clone();
            async move {
                let ended = loop {
                    match done.recv().await {
                        Ok(Some(Done::Squared { id, value })) => {
                            if let Some(caller) = lock(&waiting).remove(&id) {
                                let _ = caller.send(value);
                            }
                        }
                        Ok(None) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                };
                // Nothing more comes: the callers still waiting fail.
                lock(&waiting).clear();
                ended
            }
        });
        let client = ManualClient {
            jobs,
            waiting,
            next_id: Arc::default(),
        };
        let stats = drive(plan, client).await?;
        check_status(child.wait().await?)?;
        reader.await??;
        Ok(Outcome::calls(stats))
    })?
}

/// The hand-written server: answers each job with a one-way message.
struct Answerer {
    out: Sender<Done>,
}

impl JobHandler for Answerer {
    async fn on_square(&mut self, id: u64, n: u64) {
        let value = square(n);
        if self.out.send(Done::Squared { id, value }).await.is_err() {
            eprintln!("aiosock-manual server: the client is gone");
        }
    }
}

/// The hand-written server's side.
fn manual_child() -> Result<Outcome, BoxError> {
    let end = ::aiosock::inherited::<Done, Job>()?;
    on_local_runtime(async move {
        let (out, jobs) = end.into_split();
        jobs.serve(Answerer { out }).await?;
        Ok(Outcome::default())
    })?
}
