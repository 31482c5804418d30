//! A guide: how to do the usual things with aiosock, each with an example that the test
//! suite compiles (and runs, where it needs no second program).
//!
//! # From the Python package
//!
//! | Python *aiosock* | aiosock |
//! |---|---|
//! | `aiosockpair()` | [`pair::<A, B>()`](crate::pair): two typed ends, before any runtime |
//! | `sock.write(obj)` | [`Sender::send(msg).await`](crate::Sender::send), or [`try_send`](crate::Sender::try_send) without waiting |
//! | `await sock.read()` | [`Receiver::recv().await`](crate::Receiver::recv): `Ok(Some(msg))`, `Ok(None)` at the end |
//! | the read callback (with extra arguments) | the generated `{Enum}Handler` trait and [`Receiver::serve`](crate::Receiver::serve); state lives in the handler |
//! | the read callback *and* `await read()` | `recv()`, then [`Dispatch::dispatch`](crate::Dispatch::dispatch) in the same loop (or, to answer calls too, [`recv_request()`](crate::Receiver::recv_request) and [`Request::dispatch`](crate::Request::dispatch)); or [`Receiver::observe`](crate::Receiver::observe) to watch |
//! | the "writable" callback | [`Sender::ready().await`](crate::Sender::ready) |
//! | `multiprocessing.Process(target=...)` with the fork method | [`fork(end, \|end\| async { ... })`](crate::fork) |
//! | `multiprocessing` with the spawn method | [`spawn(command, end)`](crate::spawn) and [`inherited()`](crate::inherited) in the child |
//! | `init()` (bind to the event loop) | nothing: ends attach to the runtime they are first used in |
//! | write a request, then `await read()` and match the answer to it by hand | a `#[reply(T)]` variant and the generated client: `client.square(7).await` (see the crate docs' [calls](crate#calls)) |
//! | a `multiprocessing.Pool` of workers | [`Pool`](crate::Pool): least-loaded calls, restarts, graceful shutdown |
//!
//! # Choosing spawn, fork or inherit
//!
//! - [`spawn`](crate::spawn) starts any program (often the current executable again, in a
//!   worker mode) with one end inherited; the child calls [`inherited`](crate::inherited).
//!   It works from any process, including one running a multi-threaded runtime, and
//!   outside a runtime. Choose it by default.
//! - [`fork`](crate::fork) runs a closure in a copy of this process, like
//!   `multiprocessing`'s fork method: no worker binary or argument parsing, and the closure
//!   sees the parent's state. Only from a single-threaded process, outside a runtime (it
//!   refuses otherwise): fork your workers at the start of `main`, before the runtime.
//! - [`ForkServer`](crate::ForkServer) forks workers later, from inside a runtime: made at
//!   the start of `main` (the same rule as `fork`), it is a copy of the process that forks
//!   a worker running its closure on each [`start`](crate::ForkServer::start), and the
//!   worker becomes this process's child. [`Pool::fork`](crate::Pool::fork) uses one to
//!   start and restart a pool's workers. Each worker is a copy of the process as it was
//!   when the server was made, so it sees none of the state made since.
//! - [`Endpoint::from_fd`](crate::Endpoint::from_fd) wraps a socket you passed by other
//!   means.
//!
//! # Graceful shutdown of a parent and its workers
//!
//! Closing is how a parent asks its workers to stop: dropping its `Sender` ends the
//! worker's `serve` (after every message sent before), the worker's handler runs its
//! `closed` hook, and the worker returns. The parent then waits, with a deadline, and kills
//! what did not stop. Here the "worker" is a task, so that the example runs; with a real
//! process, `child.wait()` and `child.kill()` take the place of the task's handle.
//!
//! ```
//! use std::time::Duration;
//!
//! #[aiosock::protocol]
//! enum Job {
//!     Work(u64),
//! }
//!
//! #[aiosock::protocol]
//! #[derive(Debug, PartialEq)]
//! enum Done {
//!     Total(u64),
//! }
//!
//! struct Worker {
//!     total: u64,
//!     out: aiosock::Sender<Done>,
//! }
//!
//! impl JobHandler for Worker {
//!     async fn on_work(&mut self, n: u64) {
//!         self.total += n;
//!     }
//!     // The parent closed: report, then `serve` returns.
//!     async fn closed(&mut self) {
//!         let _ = self.out.send(Done::Total(self.total)).await;
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (parent, worker) = aiosock::pair::<Job, Done>()?;
//! let (wtx, wrx) = worker.into_split();
//! let running = tokio::spawn(wrx.serve(Worker { total: 0, out: wtx }));
//!
//! let (tx, mut rx) = parent.into_split();
//! for n in 1..=3 {
//!     tx.send(Job::Work(n)).await?;
//! }
//! drop(tx); // "please stop": the worker sees the close after the three jobs
//! assert_eq!(rx.recv().await?, Some(Done::Total(6)));
//! match tokio::time::timeout(Duration::from_secs(5), running).await {
//!     Ok(result) => drop(result??), // stopped on its own
//!     Err(_) => { /* a process would be killed here: child.kill().await? */ }
//! }
//! assert_eq!(rx.recv().await?, None); // and its end closed
//! # Ok(())
//! # }
//! ```
//!
//! Messages a worker accepted before it returns are delivered even if it then exits at
//! once: see the crate docs' [delivery rules](crate#delivery-and-backpressure).
//!
//! # `select!` over several receivers and a timer
//!
//! [`Receiver::recv`](crate::Receiver::recv) is cancel safe, so it can lose a race in
//! `tokio::select!` without losing a message. A receiver that returned `Ok(None)` is done;
//! stop polling it.
//!
//! ```
//! use std::time::Duration;
//!
//! #[aiosock::protocol]
//! #[derive(Debug)]
//! enum Event {
//!     Tick(u32),
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (a, a_peer) = aiosock::pair::<Event, Event>()?;
//! let (b, b_peer) = aiosock::pair::<Event, Event>()?;
//! let (_, mut from_a) = a.into_split();
//! let (_, mut from_b) = b.into_split();
//! let (a_tx, _) = a_peer.into_split();
//! let (b_tx, _) = b_peer.into_split();
//! a_tx.send(Event::Tick(1)).await?;
//! b_tx.send(Event::Tick(2)).await?;
//! drop((a_tx, b_tx));
//!
//! let (mut a_open, mut b_open, mut seen) = (true, true, 0);
//! let report = tokio::time::sleep(Duration::from_secs(10));
//! tokio::pin!(report);
//! while a_open || b_open {
//!     tokio::select! {
//!         msg = from_a.recv(), if a_open => match msg? {
//!             Some(Event::Tick(_)) => seen += 1,
//!             None => a_open = false,
//!         },
//!         msg = from_b.recv(), if b_open => match msg? {
//!             Some(Event::Tick(_)) => seen += 1,
//!             None => b_open = false,
//!         },
//!         () = &mut report => break, // a timer beside the receivers
//!     }
//! }
//! assert_eq!(seen, 2);
//! # Ok(())
//! # }
//! ```
//!
//! For any number of receivers, see the crate docs' "Waiting on many receivers".
//!
//! # Timeouts and cancellation
//!
//! - `tokio::time::timeout(d, rx.recv())` loses nothing when it fires: read progress lives
//!   in the receiver.
//! - A `send` future dropped before it completed queued nothing (as tokio's `mpsc`); one
//!   that completed queued the whole message. `send` waits only while the outgoing buffer
//!   is full, so a timeout around it bounds how long a slow peer can hold you up.
//! - [`Sender::flush`](crate::Sender::flush) waits until what was accepted is in the kernel;
//!   [`Sender::closed`](crate::Sender::closed) until the peer cannot receive. Both only wait.
//!
//! ```
//! use std::time::Duration;
//!
//! #[aiosock::protocol]
//! enum Ping {
//!     Ping,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (a, b) = aiosock::pair::<Ping, Ping>()?;
//! let (tx, _) = a.into_split();
//! let (_, mut rx) = b.into_split();
//! // Nothing was sent yet: the timeout fires, and nothing is lost.
//! assert!(tokio::time::timeout(Duration::from_millis(10), rx.recv()).await.is_err());
//! tx.send(Ping::Ping).await?;
//! assert!(matches!(rx.recv().await?, Some(Ping::Ping)));
//! # Ok(())
//! # }
//! ```
//!
//! # Supervising and restarting workers
//!
//! A worker that dies (even `kill -9`) closes its end: the parent's `recv` returns
//! `Ok(None)` (or [`Error::Truncated`](crate::Error::Truncated) mid-message) and its sends
//! fail with the message handed back. A supervisor loop restarts it:
//!
//! ```no_run
//! #[aiosock::protocol]
//! enum Job {
//!     Run(u64),
//! }
//!
//! #[aiosock::protocol]
//! enum Done {
//!     Finished(u64),
//! }
//!
//! async fn supervise(worker: &std::path::Path) -> Result<(), aiosock::Error> {
//!     let mut restarts = 0;
//!     loop {
//!         let (here, there) = aiosock::pair::<Job, Done>()?;
//!         let mut child = aiosock::ChildOptions::new()
//!             .kill_on_drop(true)
//!             .die_with_parent(true)
//!             .spawn(std::process::Command::new(worker), there)?;
//!         let (tx, mut rx) = here.into_split();
//!         let _ = tx.send(Job::Run(restarts)).await;
//!         // Serve until the worker's end closes, cleanly or not.
//!         while let Ok(Some(Done::Finished(_))) = rx.recv().await {}
//!         let status = child.wait().await?;
//!         if status.success() || restarts == 5 {
//!             return Ok(());
//!         }
//!         restarts += 1;
//!     }
//! }
//! # let _ = supervise;
//! ```
//!
//! For workers that answer calls, [`Pool`](crate::Pool) does this for a set of workers:
//! it restarts each one that dies (the calls it held fail with
//! [`CallError::Closed`](crate::CallError::Closed), or are made again elsewhere with
//! [`Pool::call_idempotent`](crate::Pool::call_idempotent)), sends each call to the worker
//! with the fewest in flight, and shuts down gracefully.
//!
//! # Limits for untrusted peers
//!
//! Everything a peer sends is checked: see `SECURITY.md` and the crate docs'
//! [decode budget](crate#the-decode-budget). For an end that faces a peer you do not
//! trust, lower the limits to what the protocol needs:
//!
//! ```
//! #[aiosock::protocol]
//! enum Request {
//!     Lookup { key: String },
//! }
//!
//! let (end, _peer) = aiosock::pair::<Request, Request>()?;
//! let mut config = aiosock::Config::new();
//! config
//!     .set_max_frame_len(64 * 1024) // no frame over 64 KiB is read at all
//!     .set_decode_budget(4) // a frame of n bytes builds at most 4 n + 4096 units
//!     .set_capacity(16 * 1024) // a peer that stops reading holds up 16 KiB of ours
//!     .set_max_fds_per_frame(0) // this protocol carries no descriptors: refuse any
//!     .set_max_shm_len(0); // nor shared memory
//! let (tx, rx) = end.with_config(config).into_split();
//! # drop((tx, rx));
//! # Ok::<(), aiosock::Error>(())
//! ```
//!
//! With these, a frame costs the receiver at most 64 KiB of buffer, `4 × 64 Ki + 4096`
//! decoding steps and 16 bytes per step of memory, and no descriptor; put a timeout around
//! `recv` if a stalled peer must not hold you up. For a protocol that does carry
//! descriptors, [`Config::set_max_fds`](crate::Config::set_max_fds) bounds how many an end
//! holds for messages not yet delivered, and [`raise_fd_limit`](crate::raise_fd_limit)
//! makes room for many connections.
