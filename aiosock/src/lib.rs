//! Typed, asynchronous messages between processes over Unix socketpairs.
//!
//! Annotate a message enum with [`#[aiosock::protocol]`](protocol), make a connected
//! [`pair`] of ends, and exchange typed messages with [`Sender::send`] and
//! [`Receiver::recv`], or serve them with the generated handler trait. The ends can be
//! made before any runtime exists and handed to a child process with [`spawn`] /
//! [`inherited`]. This re-imagines the Python package *aiosock* (`aiosockpair()`,
//! `write(obj)`, `await read()`, read and write callbacks) with compile-time types, no
//! lost messages, and batched I/O.
//!
//! ```
//! #[aiosock::protocol]
//! #[derive(Debug, PartialEq)]
//! pub enum ToWorker {
//!     Greet { name: String },
//!     Square(u64),
//!     Stop,
//! }
//!
//! #[aiosock::protocol]
//! #[derive(Debug, PartialEq)]
//! pub enum FromWorker {
//!     Hello(String),
//!     Squared(u64),
//! }
//!
//! // The worker's state lives in its handler; one method per variant.
//! struct Worker {
//!     out: aiosock::Sender<FromWorker>,
//! }
//!
//! impl ToWorkerHandler for Worker {
//!     async fn on_greet(&mut self, name: String) {
//!         let _ = self.out.send(FromWorker::Hello(format!("hello, {name}"))).await;
//!     }
//!     async fn on_square(&mut self, n: u64) {
//!         let _ = self.out.send(FromWorker::Squared(n * n)).await;
//!     }
//!     async fn on_stop(&mut self) {}
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (here, there) = aiosock::pair::<ToWorker, FromWorker>()?;
//! // In a real program `there` goes to another process (`aiosock::spawn`).
//! let (worker_tx, worker_rx) = there.into_split();
//! let worker = tokio::spawn(worker_rx.serve(Worker { out: worker_tx }));
//!
//! let (tx, mut rx) = here.into_split();
//! tx.send(ToWorker::Greet { name: "Ada".into() }).await?;
//! tx.send(ToWorker::Square(7)).await?;
//! assert_eq!(rx.recv().await?, Some(FromWorker::Hello("hello, Ada".into())));
//! assert_eq!(rx.recv().await?, Some(FromWorker::Squared(49)));
//! drop(tx); // the worker's serve() returns once everything was handled
//! worker.await??;
//! assert_eq!(rx.recv().await?, None);
//! # Ok(())
//! # }
//! ```
//!
//! # Delivery and backpressure
//!
//! [`Sender::send`] returns once the message is *accepted*: encoded (outside any lock) and
//! queued as one whole frame in the end's bounded outgoing buffer. The first message after
//! the end was idle is written to the socket at once, by the sending task (lowest latency
//! for request and reply); while more keep coming, a writer task per end hands everything
//! queued to the kernel in as few system calls as it can (a burst of small messages costs
//! about one system call per buffer's worth). [`Sender::flush`] waits until every accepted
//! message is in the kernel.
//!
//! An accepted message is delivered as long as the peer lives and reads, however this end's
//! runtime or process ends:
//!
//! - **The runtime shuts down** (`#[tokio::main]` or `block_on` returning and the runtime
//!   dropped, `shutdown_timeout`, `shutdown_background`), even before the end's writer task
//!   first ran: what the end still holds is written by aiosock's lingering thread, for all
//!   such ends at once, without blocking the shutdown. Each end lingers until its bytes are
//!   written, its peer is gone, or its [`Config::linger`] (5 s by default) passes; then its
//!   sending direction is shut down. The end takes no more sends ([`SendError::Closed`]).
//! - **The process exits through `exit`** (returning from `main`, `std::process::exit`):
//!   an exit hook first writes out every end's accepted messages, waiting at most until the
//!   latest linger deadline of the ends still writing (one deadline, not one per end). A
//!   child started by [`fork`] does the same before it ends. From the moment the hook
//!   begins, every end of the process takes no more sends: other threads run on while it
//!   waits, and their sends fail with [`SendError::Closed`] (the message comes back)
//!   rather than being accepted and cut off when the process ends.
//! - **What loses them**: this process killed (`kill -9`), `abort`, `_exit`; and the peer
//!   dying: messages it had not read yet are lost with it, and the next sends fail with
//!   [`SendError::Closed`], handing the message back.
//!
//! A program that must exit *now* sets [`Config::set_linger`] to zero on its ends (the exit
//! then writes only what the kernel takes at once), or leaves with `std::process::abort`,
//! which skips the hook.
//!
//! **Large byte fields are not copied into the buffer.** A variant's field of type
//! `Vec<u8>` or [`Bytes`] of 32 KiB or more ([`Config::set_zero_copy_from`]) in a message
//! given to [`Sender::send`] or [`Sender::try_send`] is left out of the encoded frame: once
//! the frame is accepted, the message itself stays in the buffer until those bytes are in
//! the kernel, which copies them straight from the field's own allocation (one copy of the
//! bytes instead of two). Then the message is dropped, by whichever task or thread wrote
//! it out (so a `Drop` of yours inside such a message runs there: keep it short). A message
//! with [`Fd`] fields is kept the same way until its descriptors are in the kernel. Nothing
//! changes on the wire or for the peer, and the bytes count against the capacity as
//! before. Byte fields inside other types (`Option<Vec<u8>>`, `Vec<Bytes>`, your own
//! structs), shorter ones, and the arguments of calls and their replies are copied.
//! Measured in the benchmark's `data-*` workloads (`cargo run --release -p aiosock-benches
//! -- --reps 5 data-64k data-4m`, see the README's table).
//!
//! The buffer is bounded in bytes ([`Config::capacity`]): `send` waits while it is full,
//! [`Sender::try_send`] fails with [`TrySendError::Full`], and [`Sender::ready`] waits
//! for room (the Python original's write callback).
//!
//! # Close
//!
//! - Dropping the last [`Sender`] of an end ends its sending direction after everything
//!   accepted: inside the drop itself when the socket takes what is left (so the peer's
//!   [`Receiver::try_recv`] returns [`TryRecvError::Disconnected`] right after the last
//!   message, as with tokio's `mpsc` and ipc-channel), otherwise as soon as the writer task
//!   (or the linger) has written it. The peer's [`Receiver::recv`] returns `Ok(None)` after
//!   the last message.
//! - Dropping a [`Receiver`] shuts its receiving direction down and discards what the peer
//!   sent and this end did not read: the peer's sends fail with [`SendError::Closed`]
//!   promptly, even if they were waiting on a full socket. [`Receiver::close`] shuts the
//!   direction down but keeps what already arrived for `recv`.
//! - A peer that exits or is killed closes both directions at once: `recv` returns
//!   `Ok(None)` (or [`Error::Truncated`] if it died mid-frame), sends fail with
//!   [`SendError::Closed`], and [`Sender::closed`] completes.
//!
//! # Calls
//!
//! A variant declared with [`#[reply(T)]`](protocol#calls) is a call: the peer's handler
//! method returns a `T`, and the generated client (`FooClient`, one method per variant)
//! awaits it. A call is one line, and any number of tasks may have calls in flight on
//! clones of one client; each reply finds its caller by a call id, in any order.
//!
//! ```
//! #[aiosock::protocol]
//! enum Math {
//!     #[reply(u64)]
//!     Square(u64),
//!     #[reply(Result<u64, String>)]
//!     Root(u64),
//!     Log(String),
//! }
//!
//! #[aiosock::protocol]
//! enum Nothing {
//!     Never,
//! }
//!
//! struct Calculator;
//!
//! impl MathHandler for Calculator {
//!     async fn on_square(&mut self, n: u64) -> u64 {
//!         n * n
//!     }
//!     async fn on_root(&mut self, n: u64) -> Result<u64, String> {
//!         let root = n.isqrt();
//!         if root * root == n { Ok(root) } else { Err(format!("{n} is not a square")) }
//!     }
//!     async fn on_log(&mut self, line: String) {
//!         println!("{line}");
//!     }
//! }
//!
//! impl NothingHandler for () {
//!     async fn on_never(&mut self) {}
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (client, server) = aiosock::pair::<Math, Nothing>()?;
//! tokio::spawn(server.serve(Calculator)); // in a real program: in the worker process
//!
//! let (tx, rx) = client.into_split();
//! tokio::spawn(rx.serve(())); // replies arrive through this end's receiver
//! let math = MathClient::new(tx);
//! assert_eq!(math.square(7).await?, 49);
//! assert_eq!(math.root(50).await?, Err("50 is not a square".to_owned()));
//! math.log("one-way messages mix in".into()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! - **Replies arrive through the calling end's [`Receiver`]**, which must be running:
//!   [`serve`](Receiver::serve) it in a task (as above), or `recv` in a loop. Replies
//!   never show up as messages.
//! - **Serving answers calls**: [`Receiver::serve`] sends each method's return value back on
//!   the same connection, through the end's sending half, which must stay open: keep a
//!   [`Sender`] (or the client) while serving, or use [`Endpoint::serve`], which keeps it
//!   for you. `serve` handles one message at a time, in order;
//!   [`Receiver::serve_concurrent`] runs up to N at once on clones of the handler, so one
//!   slow call does not hold up the rest (messages start in order and finish in any order).
//!   While a method runs, `serve` keeps reading, so a handler may call the peer back and
//!   await the answer; other messages wait their turn, read ahead up to
//!   [`Config::capacity`] bytes of them (each counted at its frame's length, or at what it
//!   may take in memory if that is more). Past that, `serve` stops reading until the method
//!   returns: a method that waits for the peer's answer while the peer sends more than
//!   that many bytes of other messages first would wait forever (raise the capacity, or
//!   answer such calls with `serve_concurrent`).
//! - **Both directions**: each side may call the other over one pair.
//! - **Streams of calls**: for many calls of one variant from one task, the client's
//!   `<variant>_stream` method (`client.square_stream()`) gives a [`CallStream`]:
//!   `push(fields, tag)` sends a call, and `next()` returns each outcome with its tag as
//!   it arrives, with one wake-up for all the replies that came together and no future,
//!   waker or boxed reply per call. It is what a `FuturesUnordered` of calls does, at
//!   less cost: in the README's benchmark run it made 1.07, 1.20 and 1.14 times the
//!   calls/s of per-call futures with 64, 256 and 1,024 calls in flight
//!   (`aiosock-stream` against `aiosock`). Each call holds its slot only until its reply
//!   arrives; dropping the stream cancels the calls it has in flight, as dropping their
//!   futures would. A push that fails (the connection ended while it waited for room,
//!   say) leaves no outcome in the stream: every push that returned `Ok` gets exactly one.
//! - **Cancelling**: dropping a call's future cancels it (so `tokio::time::timeout` around a
//!   call works). Before the message was queued, nothing is sent; after, the late reply is
//!   recognised and dropped when it comes.
//! - **Close and death**: when the peer closes its sending direction, exits or is killed,
//!   or this end's receiver is dropped or fails, every call in flight fails at once with
//!   [`CallError::Closed`] (or [`CallError::Failed`] after a bad frame or a death in the
//!   middle of one, [`CallError::Panicked`] after the peer's `serve` stopped on a panic),
//!   and later calls fail immediately. A call never waits for a reply that cannot come.
//! - **Panics**: a handler method that panics answers its caller with
//!   [`CallError::Panicked`] and the panic's message. [`serve`](Receiver::serve) then
//!   stops, since the handler may be half-updated: it tells the peer (whose receiver
//!   returns [`Error::PeerPanicked`] and whose other calls fail with the message) and
//!   resumes the panic, so a worker whose `main` serves exits as a panicking program does
//!   (code 101). [`serve_concurrent`](Receiver::serve_concurrent) contains the panic to
//!   its task and goes on.
//! - **A call read with `recv`** (not served) cannot be answered: its caller gets
//!   [`CallError::Unanswered`] at once. [`Receiver::recv_request`] receives it with the
//!   means to answer ([`Request::dispatch`]), for loops that mix awaiting and handling. A call variant sent with `send` is one-way: its
//!   reply is computed and dropped.
//! - **Bounded**: at most [`Config::max_calls`] calls are in flight per end (1,024 by
//!   default); a call waits for a free slot, and the client's `try_` methods fail with
//!   [`CallError::Full`] instead. A call cancelled after it was sent keeps its slot until
//!   its reply arrives.
//! - **Ids**: call ids are 64-bit and never name two live calls, even after wrap-around. A
//!   peer that answers an id not in flight, answers twice, answers a one-way message, or
//!   answers with a value that does not decode as the reply type gets
//!   [`Error::UnexpectedReply`] or [`Error::BadReply`], and the connection ends: no reply
//!   ever reaches the wrong caller. (The encoding does not name types, so a reply of
//!   another type that happens to decode, a `u8` where a `u64` is expected, is not caught.)
//!   Replies are decoded within the same [decode budget](#the-decode-budget) as messages.
//!
//! # Resources in messages: descriptors, channel ends, shared memory
//!
//! Three field types carry things that are not bytes, between local processes:
//!
//! - [`Fd`]: an open file, socket or pipe. The peer gets its own descriptor for the same
//!   open file (`SCM_RIGHTS`, close-on-exec), as a `dup` into its process would. Converts
//!   from and into `File`, `OwnedFd`, `UnixStream`, `TcpStream` and the other std types
//!   that own a descriptor.
//! - [`Endpoint`]: a channel end, typed. A broker makes a [`pair`] and gives each end to a
//!   different worker; a worker hands its parent a fresh channel for a stream of results.
//!   The new connection checks its protocols in its own hello. Only a whole, unused end
//!   travels (a split end's halves live on in this process).
//! - [`Shm`]: a large payload in sealed shared memory. Fill a [`ShmBuf`] in place, freeze
//!   it, send it; the receiver maps the same pages read-only after checking that nobody
//!   can change them any more. The bytes never pass through the socket.
//!
//! Each descriptor travels with the frame of its message, whatever else is in flight
//! (batched frames, concurrent senders, partial writes). A message that cannot be sent
//! (or whose `send` future is dropped before it was queued) comes back, or is dropped,
//! with its descriptors. A variant's own [`Fd`] fields go to the kernel as they are from
//! [`Sender::send`] and [`Sender::try_send`]: the accepted message stays queued, untouched,
//! until they are in the kernel, and is dropped then (no `dup` and no second `close` per
//! descriptor; a process out of descriptors can still send them). Every other descriptor
//! (an `Fd` inside another type, a channel end, a [`Shm`], the arguments of a call) is
//! sent as a duplicate, closed once it is in the kernel. A message can hold up to 253 descriptors (what the
//! kernel passes at once); the receiver takes at most [`Config::max_fds_per_frame`] per
//! message, holds at most [`Config::max_fds`] for messages not yet delivered, and accepts
//! shared buffers up to [`Config::max_shm_len`]. Everything a peer can get wrong is an
//! [`Error::Fds`] naming an [`FdError`], with every descriptor it sent and this end did not
//! deliver closed (see the wire format's "Descriptors" and `SECURITY.md`).
//!
//! Whether `Vec<u8>` and [`Bytes`] fields above some size should travel by memfd on their
//! own was measured, and they do not: in the benchmark's `shm-4m` workload (4 MiB payloads,
//! every byte read by the receiver), a `Vec<u8>` copied into a memfd and out of the mapping
//! (system `aiosock-vec-shm`) ran at 0.40× the plain `Vec<u8>` field through the socket
//! (`aiosock-vec`, median of 5 repetitions: 0.52 against 1.36 GB/s on the README's machine,
//! `cargo run --release -p aiosock-benches -- shm-4m --reps 5`). The copies stay, and a
//! fresh memfd adds its page allocation and mappings, which dominate on this machine (its
//! shared memory has no transparent huge pages). A payload built in place in a [`ShmBuf`]
//! saves the copies, and reads the sender's pages; its cost is the same fresh memory per
//! buffer.
//!
//! # Compatible evolution
//!
//! Long-lived systems upgrade one process at a time, so a build with a newer version of a
//! protocol must talk to one with an older version. The rules, in the manner of
//! protobuf's:
//!
//! 1. **Add variants at the end, and mark each `#[added]`.** A build that has them talks
//!    to one that does not, over the variants both know. Every variant after the first
//!    `#[added]` one must be marked too (the macro says so otherwise).
//! 2. **Never remove, reorder, rename or change a variant** (its fields, their types, its
//!    reply type, its serde attributes), and never add one in the middle: variants travel
//!    by position, so the ends would misread each other. The hello catches it:
//!    [`Error::ProtocolMismatch`] before the first message.
//! 3. **Sending a variant the peer does not know fails at `send`**, with the message
//!    handed back: [`SendError::Invalid`] with [`InvalidMessage::UnknownVariant`] naming
//!    the variant (for a call, [`CallError::UnknownVariant`]). It never reaches the peer,
//!    so it is never a decode error there. Check for it where an older peer is possible,
//!    and fall back to what it knows.
//! 4. **A variant without `#[added]` is one every peer must know.** Appending a variant
//!    without the mark is therefore a mismatch with older builds, like any other change;
//!    mark it to make the change compatible. The mark may stay forever (it costs
//!    nothing once the peer's hello is known), or go once no older build is left.
//! 5. **The enum's name is the protocol's.** Renaming it is a new protocol.
//!
//! How it works: each hello lists, for the protocol the side sends and the one it expects,
//! a fingerprint per variant and how many variants come before the first `#[added]` one
//! (see the wire format's hello). Two ends are compatible when one's list is a prefix of
//! the other's and each knows the other's unmarked variants; each end then knows how many
//! of its variants the peer knows. A send of an `#[added]` variant checks that number:
//! before the peer's hello has arrived, `send` waits for it (once per connection: the peer
//! writes its hello first thing; the end peeks at its socket for it if its receiver has
//! not read it yet), and [`Sender::try_send`] returns [`TrySendError::Full`] until it is
//! there. Sends of the other variants never wait. The variant lists are compared even
//! when the two whole-protocol fingerprints are equal, so builds of one source with
//! different `#[cfg]`s on its variants are told apart. A receiver dropped before the
//! peer's hello came keeps its direction open until the hello is known (at most the
//! [linger](Config::linger)), so that later sends of `#[added]` variants still can tell.
//! The fingerprints have the limits of [`Protocol`]'s: a change in a type behind a field
//! is not seen.
//!
//! ```
//! // Version 1, still running somewhere:
//! mod v1 {
//!     #[aiosock::protocol]
//!     pub enum Job {
//!         Run(String),
//!     }
//! }
//!
//! // Version 2:
//! mod v2 {
//!     #[aiosock::protocol]
//!     #[derive(Debug)]
//!     pub enum Job {
//!         Run(String),
//!         #[added]
//!         Cancel(String),
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // In a real program the two ends are in processes built from each version.
//! let (new, old) = aiosock::pair::<v2::Job, v2::Job>()?;
//! let old = aiosock::Endpoint::<v1::Job, v1::Job>::from_fd(old.into_fd());
//! let (tx, _rx) = new.into_split();
//! let (_old_tx, mut old_rx) = old.into_split();
//! tx.send(v2::Job::Run("build".into())).await?; // both know `Run`
//! match tx.send(v2::Job::Cancel("build".into())).await {
//!     Err(aiosock::SendError::Invalid(v2::Job::Cancel(_), why)) => {
//!         assert_eq!(why.to_string(), "the peer runs an earlier version of the protocol, without variant `Cancel`");
//!     }
//!     other => panic!("{other:?}"),
//! }
//! assert!(matches!(old_rx.recv().await?, Some(v1::Job::Run(_))));
//! # Ok(())
//! # }
//! ```
//!
//! # Connecting by name
//!
//! Processes that are not parent and child meet at a named Unix socket: a server binds a
//! [`Listener`] to a path (the file is made with mode 0600, or the mode given, with no
//! moment of wider access; a stale file is replaced, a live server's is refused) or to an
//! abstract name, and [`accept`](Listener::accept)s typed [`Endpoint`]s, each with the
//! peer's [`PeerCred`] (pid, uid and gid from the kernel). An [`AcceptPolicy`] decides who
//! may connect before anything is written to the peer: by default, only this user. A
//! client calls [`connect`] (or [`connect_abstract`]). See the [`listener`] module.
//!
//! # Across hosts: TCP and TLS
//!
//! The same protocols run between hosts over TCP, secured with TLS through rustls
//! (feature `tls`): [`TcpListener::bind_plaintext`] or `TcpListener::bind_tls` with a
//! `rustls::ServerConfig` (server authentication, or mutual with a client certificate
//! verifier), and `connect_tls` with a `rustls::ClientConfig`. A refused certificate is an
//! [`Error::Tls`] with rustls's reason. Plaintext TCP ([`connect_plaintext_tcp`]) is an
//! explicit opt-in for trusted networks. Every connection has `TCP_NODELAY` and
//! keepalive. The hello and frames are the same on every transport; a bridge task joins
//! the network stream to an ordinary [`Endpoint`], so the decode budget, backpressure,
//! calls and close are those of a local end. See the [`tcp`] module.
//!
//! # Waiting on many receivers
//!
//! ipc-channel has a receiver set; with aiosock, the Tokio idioms do the job. For a few
//! receivers known up front, `tokio::select!` over their `recv()` (which is cancel safe).
//! For any number of them, one task per receiver forwards into a `tokio::sync::mpsc`
//! channel, tagging each message with where it came from, and reports when its peer
//! closed:
//!
//! ```
//! #[aiosock::protocol]
//! #[derive(Debug, PartialEq)]
//! enum Report {
//!     Done(u32),
//! }
//!
//! enum Event {
//!     Message(usize, Report),
//!     Closed(usize),
//!     Failed(usize, aiosock::Error),
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (events_tx, mut events) = tokio::sync::mpsc::channel(64);
//! let mut workers = Vec::new();
//! for id in 0..3 {
//!     let (here, there) = aiosock::pair::<Report, Report>()?;
//!     let (_, mut rx) = here.into_split();
//!     let events = events_tx.clone();
//!     tokio::spawn(async move {
//!         loop {
//!             let event = match rx.recv().await {
//!                 Ok(Some(msg)) => Event::Message(id, msg),
//!                 Ok(None) => Event::Closed(id),
//!                 Err(e) => Event::Failed(id, e),
//!             };
//!             let last = !matches!(event, Event::Message(..));
//!             if events.send(event).await.is_err() || last {
//!                 return;
//!             }
//!         }
//!     });
//!     workers.push(there); // in a real program: each end goes to a worker process
//! }
//! drop(events_tx);
//! for (id, end) in workers.into_iter().enumerate() {
//!     let (tx, _) = end.into_split();
//!     tx.send(Report::Done(id as u32 * 10)).await?;
//! } // each worker's sender is dropped here: its peer sees the close
//! let (mut got, mut closed) = (Vec::new(), Vec::new());
//! while let Some(event) = events.recv().await {
//!     match event {
//!         Event::Message(id, Report::Done(n)) => got.push((id, n)),
//!         Event::Closed(id) => closed.push(id),
//!         Event::Failed(id, e) => panic!("worker {id}: {e}"),
//!     }
//! }
//! got.sort();
//! closed.sort();
//! assert_eq!(got, [(0, 0), (1, 10), (2, 20)]);
//! assert_eq!(closed, [0, 1, 2]);
//! # Ok(())
//! # }
//! ```
//!
//! # Runtimes
//!
//! An end attaches to the Tokio runtime in which it is first used (any async method, or
//! `try_send` inside a runtime) and stays with it: its socket is registered with that
//! runtime's reactor and its writer task runs there. Both the current-thread and the
//! multi-thread runtime work; the runtime needs I/O enabled (`enable_io`, or
//! `enable_all`). Using an end's async methods outside a runtime panics.
//!
//! # Cancel safety
//!
//! | method | cancel safe | if the future is dropped |
//! |---|---|---|
//! | [`Receiver::recv`] | yes | no message is lost; read progress stays in the receiver |
//! | [`Sender::send`] | yes | the message was not queued (as tokio's `mpsc::Sender::send`); the duplicates of its descriptors are closed |
//! | [`Sender::ready`], [`Sender::flush`], [`Sender::closed`] | yes | they only wait |
//! | [`Receiver::serve`], [`Receiver::serve_concurrent`], [`Endpoint::serve`] | no | the receiver and handler are dropped; a message being handled is lost, and a call being answered fails with [`CallError::Unanswered`] |
//! | a generated client's call (`client.square(7)`) | yes | the call is cancelled: not sent, or its late reply is dropped |
//! | [`CallStream::next`] | yes | no outcome is taken |
//! | [`CallStream::push`] | yes | the call was not made (a call already sent stays in flight) |
//! | [`Child::wait`] | yes | |
//!
//! # Errors and a hostile peer
//!
//! Whatever bytes the peer sends, receiving yields messages or an [`Error`]: never a panic
//! or an abort, and never more memory or work than the limits below allow. A frame's
//! announced length is checked against [`Config::max_frame_len`] (64 MiB by default)
//! before anything is allocated for it, and lengths inside a payload are checked against
//! the payload. After a receive error the stream is over: a corrupt frame ends the
//! connection.
//!
//! # The decode budget
//!
//! Decoding a payload runs within a budget that the payload's own length sets, so that a
//! small frame cannot make the receiver build a large value or loop for long:
//!
//! - every value decoded costs one unit: each integer, string, option, enum, newtype,
//!   element of a sequence and entry of a map, zero-sized ones included;
//! - every element of a sequence and every key and value of a map cost one unit more, as
//!   slots of their collection;
//! - every byte of memory a value needs outside its parent costs one unit more: the
//!   in-memory size of each sequence element and map entry, of each boxed value, and the
//!   length of each string and byte string;
//! - a frame of `n` payload bytes may spend `decode_budget × n + 4096` units
//!   ([`Config::set_decode_budget`], 16 by default; [`Config::DECODE_ALLOWANCE`]). The first
//!   unit over that fails the frame with [`Error::OverBudget`], before the value it was
//!   for is allocated; nesting deeper than 128 levels fails with [`Error::TooDeep`].
//!
//! Sequences and maps reserve nothing for the length the peer claims; they grow as
//! elements arrive, each already paid for. So decoding a frame of `n` bytes does at most
//! `16 n + 4096` steps of work and allocates at most 16 bytes per unit spent (a linked
//! list of zero-sized elements; vectors, strings and hash maps stay under 4): at the
//! defaults, at most `256 n + 64 KiB`. `tests/tests/decode_budget.rs` checks both bounds
//! with a counting allocator over a corpus of shapes and hostile payloads, and the fuzz
//! target `decode_budget` hunts for inputs that break them. One shape escapes the bound:
//! pointers (`Box`, `Rc`, `Arc`) nested around small values, since a pointer decodes its
//! value through the same deserializer and the budget cannot see the layer. One or two
//! layers stay within it; deeper nests (`Arc<Arc<Arc<u8>>>`) may allocate up to 24 bytes
//! more per layer and value. Keep such types out of protocols that face untrusted peers.
//!
//! What fits under the default: integers and floats of any size (a `u64` in a sequence is
//! at most 10 units per byte), strings and byte strings, structs and enums of them, and
//! collections of those. What may not, at scale: collections of values that are much
//! larger in memory than on the wire, such as a long `Vec<Option<[u64; 32]>>` of `None`s
//! (266 units per byte) or a long `Vec<String>` of empty strings (26 units per byte). Raise the budget on the
//! receiving end for such protocols, or lower it (and [`Config::set_max_frame_len`]) for
//! ends that face untrusted peers.
//!
//! # The `protocol` attribute
//!
//! See [`protocol`] for everything it generates: the serde derives, the [`Protocol`] and
//! [`Dispatch`] impls, the `{Enum}Handler` trait and the `{Enum}Client` struct, and for
//! calls, the variants declared with `#[reply(T)]`.
//!
//! # Features
//!
//! - `tracing` (off by default): one `tracing` span per connection end
//!   (`aiosock.connection`, with the protocols it sends and expects, its descriptor, and
//!   the peer's pid where known: an end inherited from the parent), and events for the
//!   peer's hello (debug), receive errors including a protocol mismatch (warn), each
//!   direction's close (debug), a `send` that waited 100 ms or more for room (info), an
//!   end lingering after its runtime went away (debug, warn if its deadline passes), and
//!   child processes starting and exiting (info). Without the feature no tracing code is
//!   compiled in; with it and no subscriber, the benchmark shows no measurable cost
//!   (`cargo run --release -p aiosock-benches --features tracing -- small rtt`).
//! - `tls` (off by default): `TcpListener::bind_tls` and `connect_tls`, TLS over TCP
//!   through rustls (with its `ring` provider) and tokio-rustls, and a re-export of
//!   `rustls` as `aiosock::rustls`. Without it, rustls is not built. Plaintext TCP needs
//!   no feature.
//!
//! # Guide
//!
//! The [`guide`] shows the usual tasks with examples: the Python package's calls and their
//! counterparts, choosing spawn, fork or inherit, graceful shutdown, `select!` over
//! receivers, timeouts, supervising workers, and limits for untrusted peers.
//!
#![doc = include_str!("wire/FORMAT.md")]
#![warn(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![doc(test(attr(deny(warnings))))]

mod bytes;
mod channel;
mod error;
mod fd;
mod fork_server;
pub mod guide;
pub mod listener;
mod pool;
mod process;
mod protocol;
mod shm;
mod sys;
pub mod tcp;
mod trace;
mod wire;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use crate::bytes::Bytes;
pub use crate::channel::{CallStream, Config, Endpoint, Receiver, Request, Sender, pair};
pub use crate::error::{
    CallError, DecodeError, EncodeError, Error, FdError, InvalidMessage, Part, SendError,
    TryRecvError, TrySendError,
};
pub use crate::fd::Fd;
pub use crate::fork_server::ForkServer;
pub use crate::listener::{
    AcceptPolicy, BindOptions, Listener, PeerCred, connect, connect_abstract,
};
pub use crate::pool::{Pool, WorkerInfo};
pub use crate::process::{Child, ChildOptions, ENV_FD, fork, inherited, raise_fd_limit, spawn};
pub use crate::shm::{Shm, ShmBuf};
#[cfg(feature = "tls")]
pub use crate::tcp::connect_tls;
pub use crate::tcp::{TcpListener, TcpPeer, connect_plaintext_tcp};
/// The rustls that the `tls` feature is built with, for building its configs.
#[cfg(feature = "tls")]
pub use rustls;

#[cfg(not(target_os = "linux"))]
compile_error!("aiosock supports Linux only: it relies on pidfds, PR_SET_PDEATHSIG and /proc");
pub use crate::protocol::{Client, Dispatch, Mismatch, Protocol, ProtocolId};

/// Turns a message enum into an aiosock protocol.
///
/// ```
/// #[aiosock::protocol]
/// #[derive(Debug, Clone, PartialEq)]
/// pub enum Msg {
///     Unit,
///     Tuple(u8, String),
///     Struct { id: u64, data: Vec<u8> },
///     /// A call: the peer's handler answers it with a `u64`.
///     #[reply(u64)]
///     Square(u64),
/// }
///
/// struct Printer;
///
/// impl MsgHandler for Printer {
///     async fn on_unit(&mut self) {}
///     async fn on_tuple(&mut self, a: u8, b: String) {
///         println!("{a} {b}");
///     }
///     async fn on_struct(&mut self, id: u64, data: Vec<u8>) {
///         println!("{id}: {} bytes", data.len());
///     }
///     async fn on_square(&mut self, n: u64) -> u64 {
///         n * n
///     }
///     async fn closed(&mut self) {
///         println!("the peer closed");
///     }
/// }
///
/// // The other side: one method per variant on the generated client.
/// async fn use_it(client: &MsgClient) -> Result<(), Box<dyn std::error::Error>> {
///     client.tuple(1, "one".into()).await?; // sends, like `Sender::send`
///     let squared: u64 = client.square(7).await?; // sends and waits for the reply
///     assert_eq!(squared, 49);
///     Ok(())
/// }
/// # let _ = (Msg::Unit, Msg::Tuple(1, String::new()), Msg::Struct { id: 0, data: vec![] }, Printer);
/// # let _ = use_it;
/// ```
///
/// On `enum Msg` it generates:
///
/// - the enum itself, unchanged, with serde's `Serialize` and `Deserialize` derived through
///   aiosock's own copy of serde (your crate needs no serde dependency). Your derives, docs
///   and attributes stay, except `#[reply(...)]`, which is the macro's own. Every field
///   whose type is written `Vec<u8>` is encoded as one byte string (see [`Bytes`] for other
///   places bytes live);
/// - `impl aiosock::Protocol for Msg`: the name `"Msg"`, a fingerprint of the enum's shape
///   (reply types included), which the two ends compare in their hello (see [`Protocol`]
///   for its limits), [`HAS_CALLS`](Protocol::HAS_CALLS), whether any variant that is
///   compiled in has a `#[reply]`, and for [compatible evolution](crate#compatible-evolution)
///   the variants' names ([`VARIANTS`](Protocol::VARIANTS)), how many come before the
///   first `#[added]` one ([`BASELINE`](Protocol::BASELINE)), and a fingerprint per
///   variant;
/// - `trait MsgHandler: Send`, with the enum's visibility, one method per variant named
///   `on_` + the variant in snake case, taking the fields by value (named fields by name):
///   `on_unit(&mut self)`, `on_tuple(&mut self, _0: u8, _1: String)`,
///   `on_struct(&mut self, id: u64, data: Vec<u8>)`. Each returns a `Send` future, so you
///   implement them with `async fn` and can `tokio::spawn` the serving task. The future's
///   output is the reply type of a call variant (`on_square(&mut self, _0: u64)` gives a
///   `u64`, sent back as the reply) and `()` for any other. A provided method
///   `closed(&mut self)` runs once after the peer closed; it does nothing by default;
/// - `impl<H: MsgHandler> aiosock::Dispatch<H> for Msg`, which [`Receiver::serve`] and
///   [`Dispatch::dispatch`] use (`dispatch` drops what a call's method returns; `serve`
///   sends it back);
/// - `struct MsgClient`, with the enum's visibility: a [`Sender<Msg>`](Sender) with one
///   method per variant, named after the variant in snake case (raw where that is a
///   keyword: `r#Match` gives `r#match`), taking the fields as the handler's methods do,
///   with the variant's docs and `#[cfg]`s:
///   - a one-way variant sends its message:
///     `fn unit(&self) -> impl Future<Output = Result<(), SendError<Msg>>> + Send + '_`,
///     the same as `send(Msg::Unit)`;
///   - a call sends its message and waits for the reply:
///     `fn square(&self, _0: u64) -> impl Future<Output = Result<u64, CallError>> + Send + '_`,
///     and `try_square`, with the same signature, fails at once with
///     [`CallError::Full`] where `square` would wait (for room in the table of calls in
///     flight or in the outgoing buffer, or for the peer's hello before an `#[added]`
///     variant). The handler's own errors travel inside the reply:
///     declare `#[reply(Result<u64, MyError>)]`;
///   - `new(sender: Sender<Msg>) -> Self`, `sender(&self) -> &Sender<Msg>` and
///     `into_sender(self) -> Sender<Msg>`, with `Clone`, `Debug`, `From<Sender<Msg>>`
///     and `Deref<Target = Sender<Msg>>`, so `send`, `try_send`, `closed` and the other
///     methods of [`Sender`] work on the client too. A variant's method hides the
///     `Sender` method of the same name (a variant `Ready` gives `ready`); `sender()`
///     still reaches it.
///
/// Arguments: `#[aiosock::protocol(crate = "path::to::aiosock")]` when aiosock is reached
/// through another name (a re-export).
///
/// # Calls: `#[reply(T)]`
///
/// A variant declared with `#[reply(T)]` is a call: the peer's handler method returns a
/// `T`, which [`Receiver::serve`] sends back, and the client's method for the variant
/// returns it. `T` is any type that serde can encode and decode and that is `Send` and
/// `'static`: `u64`, `()`, `Vec<String>`, `Result<u64, MyError>`, or a type of your own
/// that derives serde's `Serialize` and `Deserialize` (through your own serde dependency).
/// A type that is not is an error at the type in the attribute. `#[reply(())]` is a call
/// that is answered with nothing: the caller learns that the handler ran.
///
/// The reply is declared with an attribute on the variant, rather than, say, a field of
/// the variant or a separate list of calls, because:
///
/// - the enum stays an ordinary enum: the input is still valid Rust, so rustfmt,
///   rust-analyzer and your derives see what they always see, and a message is still
///   built as `Msg::Square(7)`;
/// - it reads like serde's own attributes, which already say how each variant travels
///   (`#[serde(rename = "...")]`);
/// - the reply sits next to the request it answers, so the protocol reads as one list of
///   messages, each with its answer, and changing one changes the fingerprint in one place.
///
/// # Evolution: `#[added]`
///
/// A variant added after the protocol's first version goes at the end of the enum, marked
/// `#[added]`: a peer built with the earlier enum then still talks to this one, over the
/// variants both know, and sending it a variant it does not know fails at `send` with
/// [`InvalidMessage::UnknownVariant`]. Every variant after the first `#[added]` one must be
/// marked too. See [compatible evolution](crate#compatible-evolution) for the rules.
///
/// # Errors
///
/// The macro rejects, with an error at the offending tokens: `#[added]` with arguments,
/// repeated, on the enum or a field, or followed by a variant without it; anything but an enum, an enum
/// without variants, generic parameters or lifetimes, two variants whose handler methods
/// would have the same name, `#[cfg]` on a field, unknown or repeated arguments, the
/// serde attributes below, `#[reply]` on the enum or on a field, a repeated `#[reply]`,
/// one that does not hold exactly one type (`#[reply]`, `#[reply = u64]`,
/// `#[reply(u64, u32)]`), a reply type that is not a serde type or that names `Self`
/// (write the enum's name: the reply type is also written in the handler trait and the
/// client, where `Self` means another type), and a variant whose
/// client method could not be generated: one named like the client's own methods (`New`,
/// `Sender`, `IntoSender`), like the `try_` method of a call (`TrySquare` next to a call
/// `Square`), or whose name in snake case cannot be a method's (`Self_`, `Super`,
/// `Crate`). It reports every error it finds in one build.
///
/// # Serde attributes
///
/// A message is encoded with bincode through serde: by position (no field or variant
/// names are written, a variant is sent as its index), without `deserialize_any`, and
/// with sequences and maps whose length is known before their items. `#[serde(...)]`
/// attributes on the enum, its variants and their fields go to serde's derive, except
/// these, which bincode cannot carry and the macro rejects:
///
/// - `#[serde(untagged)]`, `#[serde(tag = "...")]` (internally tagged) and
///   `#[serde(tag = "...", content = "...")]` (adjacently tagged) on the enum, and
///   `#[serde(untagged)]` on a variant: serde decodes them through `deserialize_any`;
/// - `#[serde(other)]` on a variant: an unknown variant index would be caught but its
///   fields left unread (and the hello already refuses a peer whose enum differs);
/// - `#[serde(skip)]` or `#[serde(skip_deserializing)]` on a variant: serde would read
///   each later variant as the one after it;
/// - `#[serde(flatten)]` on a field: it is written as a map of unknown length;
/// - `#[serde(skip_serializing_if = "...")]`, and `#[serde(skip_serializing)]` or
///   `#[serde(skip_deserializing)]` without the other, on a field: a field that one side
///   writes and the other does not read shifts every field after it.
///
/// Everything else is passed on, for example `skip` on a field (left out on both sides
/// and filled with its `Default` on receipt), `default`, `rename`, `rename_all`, `alias`,
/// `with`, `serialize_with` with `deserialize_with`, and `bound`.
///
/// The macro sees only the enum's own tokens. The same attributes on a type used inside
/// a field (a struct with a `#[serde(flatten)]` field, an untagged enum) cannot be seen
/// and fail at run time: sending with [`SendError::Invalid`] holding
/// [`InvalidMessage::Encode`], or receiving with [`Error::Decode`] or
/// [`Error::TrailingBytes`] (which ends the connection). A field that only one side
/// skips can even be misread without an error, when the shifted bytes happen to decode.
pub use aiosock_derive::protocol;

/// The README's examples, compiled as doc tests so that they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
