//! A pool of worker processes that answer calls: [`Pool`].

use std::fmt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::error::{CallError, Error};
use std::task::Poll;

use serde::de::DeserializeOwned;

use crate::{
    CallStream, Child, ChildOptions, Client, Dispatch, Endpoint, ForkServer, Protocol, pair,
};

/// A pool of worker processes, each serving calls over its own connection, behind one
/// handle.
///
/// The pool is generic over the generated client type `C` of the protocol the workers
/// answer (`FooClient` for `enum Foo`): [`call`](Self::call) picks the worker with the
/// fewest calls in flight and hands its client to the closure, which makes the call.
///
/// - **Workers** are started with [`Pool::spawn`] from a `Command` (the current
///   executable in a worker mode, or a worker binary); each adopts its end with
///   [`inherited`](crate::inherited) and serves it, for example with
///   [`Endpoint::serve`](crate::Endpoint::serve). Or they are forked with [`Pool::fork`]
///   by a [`ForkServer`] made at the start of `main`, each running the server's closure
///   on its end: a pool starts and restarts workers from inside a running runtime, where
///   [`fork`](crate::fork) itself refuses. Either way they are killed if the pool is
///   dropped without [`shutdown`](Self::shutdown) (and, with the kernel's help, if this
///   process dies).
/// - **A worker that dies is restarted** (after a pause that grows with repeated failures,
///   from 10 ms up to 1 s). The calls it held fail with [`CallError::Closed`] (or
///   [`CallError::Failed`] if it died in the middle of a frame);
///   [`call_idempotent`](Self::call_idempotent) retries them on another worker instead,
///   for calls that are safe to repeat.
/// - **Shutdown** is graceful: [`shutdown`](Self::shutdown) refuses new calls, waits (at
///   most the given time) for the calls in flight, then closes every worker's connection,
///   which ends its `serve`; workers still running after the deadline are killed.
/// - **Health**: [`size`](Self::size) and [`workers`](Self::workers) (each worker's pid,
///   calls in flight, restarts, and whether it is up).
///
/// What the workers send on their own (one-way messages, or calls back to the parent) is
/// served by a clone of the handler given to [`Pool::spawn`], one per worker.
///
/// # Throughput
///
/// A worker is only as busy as the calls it has been given: each call waits for its
/// answer, and a worker that has answered everything sleeps until the next calls come
/// (waking a process costs tens of microseconds on a virtual machine). For many short
/// jobs, keep hundreds of calls in flight per worker. [`map`](Self::map) does that with
/// one stream of calls per worker (no task, future or waker per call), as
/// `examples/worker_pool.rs` does with 1,024 per worker (a connection's default
/// [`max_calls`](crate::Config::max_calls)). Measured on a 2-core machine, 2 workers,
/// jobs of about a hundred Collatz steps (the benchmark's `pool` workload, `-- --reps 3
/// pool`, parent on a current-thread runtime): `map` with 1,024 in flight per worker did
/// 1.6–1.7 M jobs/s; lanes of [`call`](Self::call) (256 tasks per worker, each making one
/// call after another) 0.9–1.3 M; `map` with 256 in flight 1.1–1.3 M. With the example's
/// multi-thread runtime (`worker_pool 2 1000000`), `map` did 1.2 M against 1.0 M for the
/// lanes. A hand-written pool that streams one-way jobs and results does 2.9–3.2 M: the
/// difference is what a call costs over a one-way message on both sides (a slot in the
/// call table, the reply's frame header and lookup), and that its jobs are not bounded
/// by a table of calls in flight.
///
/// # Examples
///
/// ```no_run
/// #[aiosock::protocol]
/// pub enum Job {
///     #[reply(u64)]
///     Square(u64),
/// }
///
/// #[aiosock::protocol]
/// pub enum Silence {
///     Nothing,
/// }
///
/// #[derive(Clone)]
/// struct Parent;
///
/// impl SilenceHandler for Parent {
///     async fn on_nothing(&mut self) {}
/// }
///
/// struct Worker;
///
/// impl JobHandler for Worker {
///     async fn on_square(&mut self, n: u64) -> u64 {
///         n * n
///     }
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     if std::env::args().any(|arg| arg == "--worker") {
///         let end = aiosock::inherited::<Silence, Job>()?;
///         let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
///         rt.block_on(end.serve(Worker))?;
///         return Ok(());
///     }
///     tokio::runtime::Runtime::new()?.block_on(async {
///         let exe = std::env::current_exe()?;
///         let command = move |_worker: usize| {
///             let mut cmd = std::process::Command::new(&exe);
///             cmd.arg("--worker");
///             cmd
///         };
///         let pool = aiosock::Pool::<JobClient>::spawn::<Silence, _>(4, command, Parent)?;
///         let sq = pool.call(async |job| job.square(7).await).await?;
///         assert_eq!(sq, 49);
///         pool.shutdown(std::time::Duration::from_secs(5)).await;
///         Ok(())
///     })
/// }
/// ```
pub struct Pool<C> {
    shared: Arc<Shared<C>>,
}

struct Shared<C> {
    workers: Vec<Worker<C>>,
    /// No new calls: shutting down.
    closing: AtomicBool,
    /// Kill the workers that are still running.
    kill: AtomicBool,
    /// Calls in flight, over all workers.
    in_flight: AtomicUsize,
    /// Signalled when a call ends, a worker comes up, or a worker stops.
    changed: Notify,
    /// Where the next search for the least-loaded worker starts, so ties rotate.
    next: AtomicUsize,
}

struct Worker<C> {
    /// Calls in flight on this worker.
    load: AtomicUsize,
    /// Whether it has a client and its connection was not seen to end: a hint for
    /// [`Pool::pick`], which checks under the lock.
    up: AtomicBool,
    restarts: AtomicU64,
    state: Mutex<State<C>>,
}

struct State<C> {
    /// The client of the running worker; `None` while it is down.
    client: Option<Arc<C>>,
    /// Tells whether the client's connection has ended (the worker died or closed).
    watch: Option<crate::channel::Watch>,
    pid: Option<u32>,
    /// Why the last start failed, if it did.
    last_error: Option<String>,
    /// The supervisor ended (shutdown).
    stopped: bool,
}

/// One worker of a [`Pool`], as [`Pool::workers`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// The worker's place in the pool, from 0.
    pub index: usize,
    /// Its process id while it is up.
    pub pid: Option<u32>,
    /// Whether it is up and taking calls.
    pub up: bool,
    /// Calls in flight on it.
    pub in_flight: usize,
    /// How many times it was restarted.
    pub restarts: u64,
    /// Why its last start failed, if it did.
    pub last_error: Option<String>,
}

impl<C> Shared<C> {
    /// Takes every worker's client away: its connection closes once no call holds it.
    fn take_clients(&self) {
        for index in 0..self.workers.len() {
            let mut state = self.state(index);
            state.client = None;
            state.watch = None;
            self.workers[index].up.store(false, Ordering::Relaxed);
        }
        self.changed.notify_waiters();
    }

    /// Completes once `done` holds, checking it each time something changes.
    async fn until(&self, done: impl Fn() -> bool) {
        loop {
            let changed = self.changed.notified();
            if done() {
                return;
            }
            changed.await;
        }
    }

    /// `n` more calls in flight on worker `index`.
    fn load(&self, index: usize, n: usize) {
        self.workers[index].load.fetch_add(n, Ordering::Relaxed);
        self.in_flight.fetch_add(n, Ordering::SeqCst);
    }

    /// `n` calls on worker `index` ended; the last of all wakes a shutdown waiting for
    /// the calls in flight.
    fn unload(&self, index: usize, n: usize) {
        if n == 0 {
            return;
        }
        self.workers[index].load.fetch_sub(n, Ordering::Relaxed);
        if self.in_flight.fetch_sub(n, Ordering::SeqCst) == n && self.closing.load(Ordering::SeqCst)
        {
            self.changed.notify_waiters();
        }
    }

    fn state(&self, index: usize) -> MutexGuard<'_, State<C>> {
        self.workers[index]
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl<C: Client> Pool<C> {
    /// Starts `size` workers (at least 1), each from `command(index)` with a new pair's end
    /// inherited (see [`spawn`](crate::spawn)), and a supervisor task per worker that
    /// serves what the worker sends with a clone of `handler` and restarts the worker when
    /// it exits.
    ///
    /// # Errors
    ///
    /// The first worker that cannot be started: the ones started before it are killed.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime with I/O and time enabled (`enable_all`): the supervisors
    /// wait on the workers' pidfds and pause between restarts.
    pub fn spawn<In, H>(
        size: usize,
        command: impl Fn(usize) -> Command + Send + Sync + 'static,
        handler: H,
    ) -> Result<Pool<C>, Error>
    where
        In: Protocol + Dispatch<H>,
        H: Clone + Send + 'static,
    {
        Pool::start::<In, H>(size, Arc::new(Spawner(command)), handler)
    }

    /// Starts `size` workers (at least 1), each forked by `server` with a new pair's end
    /// and running the server's closure on it (see [`ForkServer`]), and a supervisor task
    /// per worker as [`spawn`](Self::spawn) does. The pool keeps the server to restart
    /// workers with.
    ///
    /// # Errors
    ///
    /// The first worker that cannot be started: the ones started before it are killed.
    ///
    /// # Panics
    ///
    /// As [`spawn`](Self::spawn): outside a Tokio runtime with I/O and time enabled.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// #[aiosock::protocol]
    /// pub enum Job {
    ///     #[reply(u64)]
    ///     Square(u64),
    /// }
    ///
    /// #[aiosock::protocol]
    /// pub enum Silence {
    ///     Nothing,
    /// }
    ///
    /// #[derive(Clone)]
    /// struct Parent;
    ///
    /// impl SilenceHandler for Parent {
    ///     async fn on_nothing(&mut self) {}
    /// }
    ///
    /// struct Worker;
    ///
    /// impl JobHandler for Worker {
    ///     async fn on_square(&mut self, n: u64) -> u64 {
    ///         n * n
    ///     }
    /// }
    ///
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     // First, while the process has one thread: no worker binary, no worker mode.
    ///     let server = aiosock::ForkServer::new(|end| end.serve(Worker))?;
    ///     tokio::runtime::Runtime::new()?.block_on(async {
    ///         let pool = aiosock::Pool::<JobClient>::fork::<Silence, _>(4, server, Parent)?;
    ///         let sq = pool.call(async |job| job.square(7).await).await?;
    ///         assert_eq!(sq, 49);
    ///         pool.shutdown(std::time::Duration::from_secs(5)).await;
    ///         Ok(())
    ///     })
    /// }
    /// ```
    pub fn fork<In, H>(
        size: usize,
        server: ForkServer<In, C::Protocol>,
        handler: H,
    ) -> Result<Pool<C>, Error>
    where
        In: Protocol + Dispatch<H>,
        H: Clone + Send + 'static,
    {
        Pool::start::<In, H>(size, Arc::new(server), handler)
    }

    fn start<In, H>(
        size: usize,
        starter: Arc<dyn Starter<In, C::Protocol>>,
        handler: H,
    ) -> Result<Pool<C>, Error>
    where
        In: Protocol + Dispatch<H>,
        H: Clone + Send + 'static,
    {
        let size = size.max(1);
        let shared = Arc::new(Shared {
            workers: (0..size)
                .map(|_| Worker {
                    load: AtomicUsize::new(0),
                    up: AtomicBool::new(false),
                    restarts: AtomicU64::new(0),
                    state: Mutex::new(State {
                        client: None,
                        watch: None,
                        pid: None,
                        last_error: None,
                        stopped: false,
                    }),
                })
                .collect(),
            closing: AtomicBool::new(false),
            kill: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            changed: Notify::new(),
            next: AtomicUsize::new(0),
        });
        let mut started = Vec::with_capacity(size);
        for index in 0..size {
            started.push(start::<C, In, H>(
                &shared,
                index,
                &*starter,
                handler.clone(),
            )?);
        }
        for (index, running) in started.into_iter().enumerate() {
            let supervisor = Supervisor {
                shared: shared.clone(),
                index,
                starter: starter.clone(),
                handler: handler.clone(),
            };
            tokio::spawn(supervisor.run(running));
        }
        Ok(Pool { shared })
    }
}

impl<C> Pool<C> {
    /// The number of workers.
    pub fn size(&self) -> usize {
        self.shared.workers.len()
    }

    /// Each worker's state: pid, whether it is up, calls in flight, restarts.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        (0..self.size())
            .map(|index| {
                let worker = &self.shared.workers[index];
                let state = self.shared.state(index);
                WorkerInfo {
                    index,
                    pid: state.pid,
                    up: state.client.is_some(),
                    in_flight: worker.load.load(Ordering::Relaxed),
                    restarts: worker.restarts.load(Ordering::Relaxed),
                    last_error: state.last_error.clone(),
                }
            })
            .collect()
    }

    /// Calls in flight over all workers.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// Runs `call` with the client of the worker that has the fewest calls in flight (of
    /// those that are up; if none is, waits until one is), counting it against that
    /// worker until it returns.
    ///
    /// # Errors
    ///
    /// What `call` returns, and [`CallError::Closed`] once the pool is shutting down. If
    /// the worker dies meanwhile, the call fails with `CallError::Closed` (or `Failed`, if
    /// it died in the middle of a frame): see
    /// [`call_idempotent`](Self::call_idempotent) for calls that may be repeated.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the call as dropping a client's call does.
    pub async fn call<R>(
        &self,
        call: impl AsyncFnOnce(&C) -> Result<R, CallError>,
    ) -> Result<R, CallError> {
        let (index, client) = self.pick().await?;
        let _load = Load::new(&self.shared, index);
        // Counted first, then checked: a shutdown that saw no call in flight also sees
        // this one refused.
        if self.shared.closing.load(Ordering::SeqCst) {
            return Err(CallError::Closed);
        }
        call(&client).await
    }

    /// [`call`](Self::call) for a call that is safe to repeat: if the worker dies or its
    /// connection fails before the answer ([`CallError::Closed`] or
    /// [`CallError::Failed`]), the call is made again on another worker, up to the pool's
    /// size plus one attempts in all. Other errors (a panic in the handler, for one) are
    /// returned as they are.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call), from the last attempt.
    pub async fn call_idempotent<R>(
        &self,
        call: impl AsyncFn(&C) -> Result<R, CallError>,
    ) -> Result<R, CallError> {
        let attempts = self.size() + 1;
        let mut last = CallError::Closed;
        for _ in 0..attempts {
            let (index, client) = self.pick().await?;
            let load = Load::new(&self.shared, index);
            if self.shared.closing.load(Ordering::SeqCst) {
                return Err(CallError::Closed);
            }
            match call(&client).await {
                // The next pick skips a worker whose connection is known to have ended.
                Err(e @ (CallError::Closed | CallError::Failed { .. })) => {
                    drop(load);
                    last = e;
                }
                other => return other,
            }
        }
        Err(last)
    }

    /// Calls one variant for every input, streaming them to the workers: up to
    /// `per_worker` calls in flight on each worker (through a [`CallStream`] per worker,
    /// made by `stream`, for example `|job| job.square_stream()`), each new call to the
    /// worker with the fewest in flight. Returns the outcomes in the order of the inputs.
    ///
    /// No task, future or waker per call: for many short jobs this is the fast way to use
    /// a pool (see "Throughput" above). Calls count as [`call`](Self::call)'s do in
    /// [`in_flight`](Self::in_flight) and [`workers`](Self::workers).
    ///
    /// A call that a worker held when it died fails with [`CallError::Closed`] (or
    /// [`CallError::Failed`]), as for `call`; the other inputs go on to the workers that
    /// are up (and to the restarted one, once it is). Inputs are taken from the iterator
    /// only as calls are sent. Once the pool is shutting down, the next input taken fails
    /// with `CallError::Closed` and no more are taken: the map returns once the calls in
    /// flight are done, with fewer outcomes than inputs if some were left (an iterator
    /// that never ends maps until the shutdown).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the calls in flight, as dropping their streams does.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[aiosock::protocol] pub enum Job { #[reply(u64)] Square(u64) }
    /// # #[allow(dead_code)]
    /// # async fn example(pool: aiosock::Pool<JobClient>) {
    /// let squares = pool.map(0..10_000u64, 256, |job| job.square_stream()).await;
    /// assert_eq!(squares[12], Ok(144));
    /// # }
    /// ```
    pub async fn map<T, A, R>(
        &self,
        inputs: impl IntoIterator<Item = A>,
        per_worker: usize,
        stream: impl Fn(&C) -> CallStream<T, A, R>,
    ) -> Vec<Result<R, CallError>>
    where
        T: Protocol,
        R: DeserializeOwned + Send + 'static,
    {
        let per_worker = per_worker.max(1);
        let size = self.size();
        let mut inputs = inputs.into_iter();
        let mut map = Mapping {
            shared: &self.shared,
            lanes: (0..size).map(|_| None).collect(),
            draining: Vec::new(),
            counted: vec![0; size],
            // As many places as the inputs say they have at least (an outcome each, up to
            // a million: a hint is not a promise), so that a long map does not copy its
            // outcomes over and over as they grow.
            results: Vec::with_capacity(inputs.size_hint().0.min(1 << 20)),
        };
        let mut next = inputs.next();
        // The pool is shutting down: no more inputs are taken.
        let mut closed = false;
        loop {
            if closed {
                next = None;
            }
            if let Some(input) = next.take() {
                let tag = map.results.len();
                if self.shared.closing.load(Ordering::SeqCst) {
                    // Shutting down: this input fails, and no more are taken.
                    map.results.push(Some(Err(CallError::Closed)));
                    closed = true;
                    continue;
                }
                if let Some(index) = map.free_lane(per_worker, &stream) {
                    map.results.push(None);
                    // Counted first, then checked: a shutdown that saw no call in flight
                    // also sees this one refused (as for `call`).
                    map.count(index, true);
                    if self.shared.closing.load(Ordering::SeqCst) {
                        map.count(index, false);
                        map.results[tag] = Some(Err(CallError::Closed));
                        closed = true;
                        continue;
                    }
                    let pushed = match &mut map.lanes[index] {
                        Some((_, lane)) => lane.push(input, tag as u64).await,
                        None => Err(CallError::Closed),
                    };
                    if let Err(e) = pushed {
                        map.count(index, false);
                        map.results[tag] = Some(Err(e));
                    }
                    next = inputs.next();
                    continue;
                }
                if map.in_flight() == 0 {
                    // No worker is up: wait for one (or the shutdown).
                    if let Err(e) = self.pick().await {
                        map.results.push(Some(Err(e)));
                        closed = true;
                    } else {
                        next = Some(input);
                    }
                    continue;
                }
                // Every worker that is up has its calls in flight: wait for an outcome.
                next = Some(input);
            } else if map.in_flight() == 0 {
                break;
            }
            map.next_outcome().await;
        }
        // Every input taken has its outcome by now: the loop ends with none in flight.
        std::mem::take(&mut map.results)
            .into_iter()
            .map(|outcome| {
                debug_assert!(outcome.is_some(), "an input without an outcome");
                outcome.unwrap_or(Err(CallError::Closed))
            })
            .collect()
    }

    /// Stops the pool: new calls fail with [`CallError::Closed`]; calls in flight get up
    /// to `grace` to finish; then every worker's connection is closed (its `serve` ends),
    /// and workers still running when `grace` is up are killed. Returns once every worker
    /// has exited.
    pub async fn shutdown(&self, grace: Duration) {
        let shared = &self.shared;
        shared.closing.store(true, Ordering::SeqCst);
        shared.changed.notify_waiters();
        let deadline = tokio::time::Instant::now() + grace;
        let drained = shared.until(|| shared.in_flight.load(Ordering::SeqCst) == 0);
        let _ = tokio::time::timeout_at(deadline, drained).await;
        // Dropping the clients closes the connections: each worker's serve sees the end.
        shared.take_clients();
        let stopped = shared.until(|| (0..self.size()).all(|i| shared.state(i).stopped));
        if tokio::time::timeout_at(deadline, stopped).await.is_err() {
            shared.kill.store(true, Ordering::SeqCst);
            shared.changed.notify_waiters();
            shared
                .until(|| (0..self.size()).all(|i| shared.state(i).stopped))
                .await;
        }
    }

    /// The least-loaded worker that is up, and its client.
    async fn pick(&self) -> Result<(usize, Arc<C>), CallError> {
        let shared = &self.shared;
        // Made only once no worker was found up, so that the usual call pays nothing for it.
        let mut changed = None;
        loop {
            if shared.closing.load(Ordering::SeqCst) {
                return Err(CallError::Closed);
            }
            let size = self.size();
            let start = shared.next.fetch_add(1, Ordering::Relaxed) % size;
            let mut best: Option<(usize, usize)> = None;
            for offset in 0..size {
                let index = (start + offset) % size;
                let worker = &shared.workers[index];
                if !worker.up.load(Ordering::Relaxed) {
                    continue;
                }
                let load = worker.load.load(Ordering::Relaxed);
                if best.is_none_or(|(_, least)| load < least) {
                    best = Some((index, load));
                    if load == 0 {
                        break;
                    }
                }
            }
            if let Some((index, _)) = best {
                let mut state = shared.state(index);
                match (&state.client, &state.watch) {
                    (Some(client), Some(watch)) if !watch.is_closed() => {
                        return Ok((index, client.clone()));
                    }
                    // Its connection ended: out of rotation until the supervisor restarts it.
                    _ => {
                        state.client = None;
                        state.watch = None;
                        shared.workers[index].up.store(false, Ordering::Relaxed);
                        continue;
                    }
                }
            }
            // No worker is up: wait for a restart (checking once more after registering).
            match changed.take() {
                None => changed = Some(shared.changed.notified()),
                Some(changed) => changed.await,
            }
        }
    }
}

impl<C> Drop for Pool<C> {
    fn drop(&mut self) {
        // Without a shutdown: the supervisors kill their workers and stop.
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shared.kill.store(true, Ordering::SeqCst);
        self.shared.take_clients();
    }
}

impl<C> fmt::Debug for Pool<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.workers())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

/// A worker's stream in a [`Pool::map`], with the client it was made from.
type Lane<C, T, A, R> = (Arc<C>, CallStream<T, A, R>);

/// The state of one [`Pool::map`]: a stream per worker, the streams of workers that were
/// restarted (still draining), and the calls counted against each worker.
struct Mapping<'a, C, T: Protocol, A, R> {
    shared: &'a Shared<C>,
    /// Worker `i`'s stream, with the client it was made from.
    lanes: Vec<Option<Lane<C, T, A, R>>>,
    /// Streams of clients that are gone, with their worker, until their calls end.
    draining: Vec<(usize, CallStream<T, A, R>)>,
    /// Calls of this map in flight on each worker, counted in its load.
    counted: Vec<usize>,
    /// The outcome of each input taken so far, by its place.
    results: Vec<Option<Result<R, CallError>>>,
}

impl<C, T: Protocol, A, R: DeserializeOwned + Send + 'static> Mapping<'_, C, T, A, R> {
    /// Calls of this map in flight.
    fn in_flight(&self) -> usize {
        self.counted.iter().sum()
    }

    /// Counts a call against worker `index` (`add`), or stops counting one.
    fn count(&mut self, index: usize, add: bool) {
        if add {
            self.counted[index] += 1;
            self.shared.load(index, 1);
        } else {
            self.counted[index] -= 1;
            self.shared.unload(index, 1);
        }
    }

    /// The worker that is up with the fewest calls in flight (this map's and others'), of
    /// those with fewer than `per_worker` of this map's, its stream made (again, if it
    /// was restarted) from its client.
    fn free_lane(
        &mut self,
        per_worker: usize,
        stream: &impl Fn(&C) -> CallStream<T, A, R>,
    ) -> Option<usize> {
        let size = self.lanes.len();
        let start = self.shared.next.fetch_add(1, Ordering::Relaxed) % size;
        // Workers found down in this search (allocated only when one is: this runs for
        // every input).
        let mut skip: Vec<bool> = Vec::new();
        loop {
            let mut best: Option<usize> = None;
            for offset in 0..size {
                let index = (start + offset) % size;
                if skip.get(index).copied().unwrap_or(false)
                    || self.counted[index] >= per_worker
                    || !self.shared.workers[index].up.load(Ordering::Relaxed)
                {
                    continue;
                }
                // The worker's load: this map's calls and every other call in flight on it.
                let load = |i: usize| self.shared.workers[i].load.load(Ordering::Relaxed);
                if best.is_none_or(|best| load(index) < load(best)) {
                    best = Some(index);
                }
            }
            let index = best?;
            // A stream whose connection is open goes on without a look at the worker's
            // state; else the worker's current client makes a new one.
            if let Some((_, lane)) = &self.lanes[index]
                && !lane.sender().is_ended()
            {
                return Some(index);
            }
            let client = {
                let state = self.shared.state(index);
                match (&state.client, &state.watch) {
                    (Some(client), Some(watch)) if !watch.is_closed() => Some(client.clone()),
                    _ => None,
                }
            };
            let Some(client) = client else {
                skip.resize(size, false);
                skip[index] = true;
                continue;
            };
            let current = matches!(&self.lanes[index], Some((made_from, _)) if Arc::ptr_eq(made_from, &client));
            if current {
                // Its client is still the worker's, but its connection ended: the
                // supervisor has not seen it yet.
                skip.resize(size, false);
                skip[index] = true;
                continue;
            }
            if let Some((_, old)) = self.lanes[index].take()
                && old.in_flight() > 0
            {
                self.draining.push((index, old));
            }
            self.lanes[index] = Some((client.clone(), stream(&client)));
            return Some(index);
        }
    }

    /// Waits for the next outcome of any stream and records it.
    async fn next_outcome(&mut self) {
        let (index, tag, outcome) = std::future::poll_fn(|cx| {
            for (index, lane) in self.lanes.iter_mut().enumerate() {
                if let Some((_, lane)) = lane
                    && let Poll::Ready(Some((tag, outcome))) = lane.poll_next(cx)
                {
                    return Poll::Ready((index, tag, outcome));
                }
            }
            for (index, lane) in &mut self.draining {
                if let Poll::Ready(Some((tag, outcome))) = lane.poll_next(cx) {
                    return Poll::Ready((*index, tag, outcome));
                }
            }
            Poll::Pending
        })
        .await;
        self.draining.retain(|(_, lane)| lane.in_flight() > 0);
        self.count(index, false);
        if let Some(slot) = self.results.get_mut(tag as usize) {
            *slot = Some(outcome);
        }
    }
}

impl<C, T: Protocol, A, R> Drop for Mapping<'_, C, T, A, R> {
    fn drop(&mut self) {
        // Calls still counted (the map was cancelled) stop counting; their streams, dropped
        // after this, cancel them.
        for (index, &n) in self.counted.iter().enumerate() {
            self.shared.unload(index, n);
        }
    }
}

/// A call counted against its worker while it lives.
struct Load<'a, C> {
    shared: &'a Shared<C>,
    index: usize,
}

impl<'a, C> Load<'a, C> {
    fn new(shared: &'a Shared<C>, index: usize) -> Self {
        shared.load(index, 1);
        Load { shared, index }
    }
}

impl<C> Drop for Load<'_, C> {
    fn drop(&mut self) {
        self.shared.unload(self.index, 1);
    }
}

/// A worker that ran at least this long before it ended is restarted at once.
const HEALTHY_AFTER: Duration = Duration::from_secs(1);

/// A started worker: its process and the task serving what it sends.
struct Running {
    child: crate::Child,
    serving: tokio::task::JoinHandle<()>,
    started: Instant,
}

/// How a pool starts its workers: worker `index` on the end `end`, killed if its
/// [`Child`] is dropped, and dying with this process.
trait Starter<Out: Protocol, In: Protocol>: Send + Sync + 'static {
    fn start(&self, index: usize, end: Endpoint<Out, In>) -> Result<Child, Error>;
}

fn worker_options() -> ChildOptions {
    let mut options = ChildOptions::new();
    options.kill_on_drop(true).die_with_parent(true);
    options
}

/// Spawns each worker from the `Command` its function makes.
struct Spawner<F>(F);

impl<Out, In, F> Starter<Out, In> for Spawner<F>
where
    Out: Protocol,
    In: Protocol,
    F: Fn(usize) -> Command + Send + Sync + 'static,
{
    fn start(&self, index: usize, end: Endpoint<Out, In>) -> Result<Child, Error> {
        worker_options().spawn((self.0)(index), end)
    }
}

impl<Out: Protocol, In: Protocol> Starter<Out, In> for ForkServer<Out, In> {
    fn start(&self, _index: usize, end: Endpoint<Out, In>) -> Result<Child, Error> {
        self.start_with(&worker_options(), end)
    }
}

/// Starts worker `index` and puts its client in place.
fn start<C, In, H>(
    shared: &Shared<C>,
    index: usize,
    starter: &dyn Starter<In, C::Protocol>,
    handler: H,
) -> Result<Running, Error>
where
    C: Client,
    In: Protocol + Dispatch<H>,
    H: Send + 'static,
{
    let (here, there) = pair::<C::Protocol, In>()?;
    let child = starter.start(index, there)?;
    let (tx, rx) = here.into_split();
    let serving = tokio::spawn(async move {
        let _ = rx.serve(handler).await;
    });
    let mut state = shared.state(index);
    if shared.closing.load(Ordering::SeqCst) {
        // The pool began to shut down while the worker started: it takes no calls. Its
        // client is dropped here (so its serve ends), and the supervisor stops it.
        drop(state);
        drop(tx);
        return Ok(Running {
            child,
            serving,
            started: Instant::now(),
        });
    }
    state.watch = Some(tx.watch());
    state.client = Some(Arc::new(C::from_sender(tx)));
    state.pid = Some(child.id());
    state.last_error = None;
    shared.workers[index].up.store(true, Ordering::Relaxed);
    drop(state);
    shared.changed.notify_waiters();
    Ok(Running {
        child,
        serving,
        started: Instant::now(),
    })
}

/// Watches one worker: restarts it when it exits, kills it at shutdown.
struct Supervisor<C: Client, In: Protocol, H> {
    shared: Arc<Shared<C>>,
    index: usize,
    starter: Arc<dyn Starter<In, C::Protocol>>,
    handler: H,
}

impl<C, In, H> Supervisor<C, In, H>
where
    C: Client,
    In: Protocol + Dispatch<H>,
    H: Clone + Send + 'static,
{
    async fn run(self, first: Running) {
        let shared = &self.shared;
        let mut running = Some(first);
        let mut failures = 0u32;
        loop {
            if let Some(Running {
                mut child,
                mut serving,
                started,
            }) = running.take()
            {
                // Until the worker exits, its connection ends, or the pool shuts down and
                // takes its client.
                let mut served = false;
                let exited = tokio::select! {
                    _ = child.wait() => true,
                    _ = &mut serving => {
                        // The worker closed its connection but runs on: it is of no use.
                        served = true;
                        let _ = child.kill().await;
                        true
                    }
                    () = shared.until(|| shared.kill.load(Ordering::SeqCst)
                        || shared.closing.load(Ordering::SeqCst)
                            && shared.state(self.index).client.is_none()) => false,
                };
                if !exited {
                    // The connection is closing: the worker's serve ends and it exits, unless
                    // the shutdown's grace runs out first.
                    tokio::select! {
                        _ = child.wait() => {}
                        () = shared.until(|| shared.kill.load(Ordering::SeqCst)) => {
                            let _ = child.kill().await;
                        }
                    }
                }
                if exited && !served {
                    // The worker is gone, but its socket may live on in a process it forked:
                    // end the connection here rather than wait for an end of stream that
                    // may not come. Its calls fail now; what it sent is still served.
                    let watch = shared.state(self.index).watch.clone();
                    if let Some(watch) = watch {
                        watch.hang_up();
                    }
                }
                if !served {
                    // What the worker sent is served until its connection ends, which its
                    // exit brings; a handler method still running is not waited for once
                    // the grace is over.
                    tokio::select! {
                        _ = &mut serving => {}
                        () = shared.until(|| shared.kill.load(Ordering::SeqCst)) => serving.abort(),
                    }
                }
                let mut state = shared.state(self.index);
                state.client = None;
                state.watch = None;
                state.pid = None;
                shared.workers[self.index]
                    .up
                    .store(false, Ordering::Relaxed);
                drop(state);
                // A worker that ran a while starts the count of failures afresh; one that
                // ends at once, cleanly or not, makes the next restart wait longer.
                failures = if started.elapsed() >= HEALTHY_AFTER {
                    0
                } else {
                    failures.saturating_add(1)
                };
            }
            if shared.closing.load(Ordering::SeqCst) {
                break;
            }
            let pause = Duration::from_millis(10 << failures.min(7)).min(Duration::from_secs(1));
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shared.until(|| shared.closing.load(Ordering::SeqCst)) => break,
            }
            match start::<C, In, H>(shared, self.index, &*self.starter, self.handler.clone()) {
                Ok(started) => {
                    shared.workers[self.index]
                        .restarts
                        .fetch_add(1, Ordering::Relaxed);
                    running = Some(started);
                }
                Err(e) => {
                    shared.state(self.index).last_error = Some(e.to_string());
                    failures = failures.saturating_add(1);
                }
            }
        }
        shared.state(self.index).stopped = true;
        shared.changed.notify_waiters();
    }
}
