//! tokio-unix-ipc 0.4, set up as its `examples/hello.rs` does: the parent makes a
//! `Bootstrapper` (a listening socket in the temp dir), passes its path to the child in an
//! environment variable, and sends typed channel ends through it; a current-thread runtime
//! in each process.
//!
//! The set-up has one twist. Sending an end through a tokio-unix-ipc channel leaves the
//! sending process holding its descriptor (`extract_raw_fd` marks the end moved and never
//! closes it). A leaked *sending* end would keep the child-to-parent stream from ever
//! closing, so the parent sends only receiving ends: the child's receiver, and a reply
//! channel on which the child sends back the receiver for its own stream.
//!
//! Concurrent senders are n/a: its `Sender::send` writes a frame's header and payload in
//! two separate calls, so tasks sharing a sender can interleave frames.
//!
//! In `fds` the channels carry [`Passed`] instead of `Msg`: each descriptor in a
//! `Handle<OwnedFd>`, its serde wrapper for descriptors, as its `serde` module documents.
//! Its serializer takes the descriptor out of the handle (`into_raw_fd`) and nothing ever
//! closes it after the send, so the sender closes each one itself after its `send`, as a
//! user must to not run out of descriptors (one `close`, as aiosock's own duplicate costs
//! it). `shm-4m` is n/a: it has no shared-memory type.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::runtime::{Builder, Runtime};
use tokio_unix_ipc::serde::Handle;
use tokio_unix_ipc::{Bootstrapper, Receiver, Sender, symmetric_channel};

use super::{System, unexpected};
use crate::BoxError;
use crate::msg::{Checker, Msg, Shape, Source};
use crate::process::{ChildCmd, wait_std};
use crate::resource::{FdSource, Tally};
use crate::workload::{Outcome, Role, Stream, Workload};

/// The environment variable with the bootstrapper's path.
const ENV_PATH: &str = "AIOSOCK_BENCH_TUI_PATH";

/// What the parent sends through the bootstrapper, for channels of `T`.
#[derive(Serialize, Deserialize)]
#[serde(bound = "T: Serialize + DeserializeOwned")]
struct Setup<T> {
    /// The child's receiving end of the parent-to-child stream.
    to_child: Receiver<T>,
    /// Where the child sends its receiver of the child-to-parent stream.
    reply: Sender<Receiver<T>>,
}

/// What travels in the `fds` workload.
#[derive(Serialize, Deserialize)]
enum Passed {
    /// A descriptor (a duplicate of `/dev/null`) and its sequence number.
    Fd {
        /// The message's sequence number.
        seq: u64,
        /// The descriptor.
        fd: Handle<OwnedFd>,
    },
    /// The receiver is connected and reading: start now.
    Ready,
}

/// tokio-unix-ipc.
#[derive(Debug)]
pub(crate) struct TokioUnixIpc;

impl System for TokioUnixIpc {
    fn name(&self) -> &'static str {
        "tokio-unix-ipc"
    }

    fn takes_part(&self, workload: Workload) -> bool {
        workload.is_message() || workload.is_resource()
    }

    fn unsupported(&self, workload: Workload) -> Option<&'static str> {
        match workload {
            Workload::Concurrent => {
                Some("a send is two writes (header, payload): shared senders interleave frames")
            }
            Workload::Shm4M => Some("no shared-memory type (a Vec<u8> goes through the socket)"),
            _ => None,
        }
    }

    fn syscall_per_message(&self) -> bool {
        true
    }

    fn parent(&self, child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        runtime()?.block_on(async {
            if role.shape() == Some(Shape::Fd) {
                let (tx, rx, mut child) = connect_child::<Passed>(child).await?;
                let outcome = play_fds(tx, rx, role).await?;
                wait_std(&mut child)?;
                return Ok(outcome);
            }
            let (tx, rx, mut child) = connect_child::<Msg>(child).await?;
            let outcome = play(tx, rx, role).await?;
            wait_std(&mut child)?;
            Ok(outcome)
        })
    }

    fn child(&self, role: &Role) -> Result<Outcome, BoxError> {
        runtime()?.block_on(async {
            if role.shape() == Some(Shape::Fd) {
                let (tx, rx) = connect_parent::<Passed>().await?;
                return play_fds(tx, rx, role).await;
            }
            let (tx, rx) = connect_parent::<Msg>().await?;
            play(tx, rx, role).await
        })
    }
}

fn runtime() -> std::io::Result<Runtime> {
    Builder::new_current_thread().enable_all().build()
}

/// The parent's set-up: starts the child and connects channels of `T` both ways.
async fn connect_child<T: Serialize + DeserializeOwned>(
    mut child: ChildCmd,
) -> Result<(Sender<T>, Receiver<T>, std::process::Child), BoxError> {
    let bootstrapper = Bootstrapper::new()?;
    child.command_mut().env(ENV_PATH, bootstrapper.path());
    let child = child.spawn()?;
    let (tx, to_child) = symmetric_channel::<T>()?;
    let (reply, replies) = symmetric_channel::<Receiver<T>>()?;
    bootstrapper.send(Setup { to_child, reply }).await?;
    let rx = replies.recv().await?;
    drop(bootstrapper);
    Ok((tx, rx, child))
}

/// The child's side of [`connect_child`].
async fn connect_parent<T: Serialize + DeserializeOwned>()
-> Result<(Sender<T>, Receiver<T>), BoxError> {
    let path = std::env::var(ENV_PATH)?;
    let setup = Receiver::<Setup<T>>::connect(path).await?.recv().await?;
    let (tx, rx) = symmetric_channel::<T>()?;
    setup.reply.send(rx).await?;
    Ok((tx, setup.to_child))
}

/// The next message, or `None` once the peer closed.
async fn next<T: Serialize + DeserializeOwned>(rx: &Receiver<T>) -> Result<Option<T>, BoxError> {
    match rx.recv().await {
        Ok(msg) => Ok(Some(msg)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn play(tx: Sender<Msg>, rx: Receiver<Msg>, role: &Role) -> Result<Outcome, BoxError> {
    match role {
        Role::Send(stream) => send(tx, rx, stream).await,
        Role::Recv(stream) => recv(tx, rx, stream).await,
        Role::Ping { count, .. } => ping(tx, rx, *count).await,
        Role::Echo => echo(tx, rx).await,
        Role::Call(_) | Role::Answer => Err(super::NO_CALLS.into()),
        Role::Deal { .. } | Role::Work => Err(super::NO_POOL.into()),
    }
}

async fn send(tx: Sender<Msg>, rx: Receiver<Msg>, stream: &Stream) -> Result<Outcome, BoxError> {
    wait_ready(&rx).await?;
    let source = Source::new(stream.shape, 0);
    for seq in 0..stream.per_sender {
        tx.send(source.msg(seq)).await?;
    }
    Ok(Outcome::default())
}

async fn recv(tx: Sender<Msg>, rx: Receiver<Msg>, stream: &Stream) -> Result<Outcome, BoxError> {
    let mut checker = Checker::new(stream.shape, stream.senders, stream.per_sender);
    tx.send(Msg::Ready).await?;
    let start = Instant::now();
    if stream.delay > Duration::ZERO {
        tokio::time::sleep(stream.delay).await;
    }
    while checker.remaining() > 0 {
        match next(&rx).await? {
            Some(msg) => checker.check(&msg)?,
            None => break,
        }
    }
    let elapsed = start.elapsed();
    checker.check_end()?;
    match next(&rx).await? {
        None => Ok(Outcome::timed(elapsed)),
        Some(msg) => Err(unexpected("the close", Some(&msg))),
    }
}

async fn ping(tx: Sender<Msg>, rx: Receiver<Msg>, count: u64) -> Result<Outcome, BoxError> {
    wait_ready(&rx).await?;
    let mut latencies = Vec::with_capacity(count as usize);
    for i in 0..count {
        let start = Instant::now();
        tx.send(Msg::Ping(i)).await?;
        match next(&rx).await? {
            Some(Msg::Ping(j)) if j == i => latencies.push(start.elapsed()),
            other => return Err(unexpected(&format!("Ping({i})"), other.as_ref())),
        }
    }
    Ok(Outcome::latencies(latencies))
}

async fn echo(tx: Sender<Msg>, rx: Receiver<Msg>) -> Result<Outcome, BoxError> {
    tx.send(Msg::Ready).await?;
    while let Some(msg) = next(&rx).await? {
        tx.send(msg).await?;
    }
    Ok(Outcome::default())
}

async fn wait_ready(rx: &Receiver<Msg>) -> Result<(), BoxError> {
    match next(rx).await? {
        Some(Msg::Ready) => Ok(()),
        other => Err(unexpected("Ready", other.as_ref())),
    }
}

async fn play_fds(
    tx: Sender<Passed>,
    rx: Receiver<Passed>,
    role: &Role,
) -> Result<Outcome, BoxError> {
    match role {
        Role::Send(stream) => send_fds(tx, rx, stream).await,
        Role::Recv(stream) => recv_fds(tx, rx, stream).await,
        _ => Err("the fds workload has only a sender and a receiver".into()),
    }
}

async fn send_fds(
    tx: Sender<Passed>,
    rx: Receiver<Passed>,
    stream: &Stream,
) -> Result<Outcome, BoxError> {
    let source = FdSource::open()?;
    match next(&rx).await? {
        Some(Passed::Ready) => {}
        Some(Passed::Fd { seq, .. }) => {
            return Err(format!("expected Ready, got descriptor {seq}").into());
        }
        None => return Err("expected Ready, but the peer closed".into()),
    }
    for seq in 0..stream.per_sender {
        let fd = source.next()?;
        let raw = fd.as_raw_fd();
        tx.send(Passed::Fd {
            seq,
            fd: Handle::new(fd),
        })
        .await?;
        // The handle gave its descriptor up to the serializer, which never closes it.
        nix::unistd::close(raw)?;
    }
    Ok(Outcome::default())
}

async fn recv_fds(
    tx: Sender<Passed>,
    rx: Receiver<Passed>,
    stream: &Stream,
) -> Result<Outcome, BoxError> {
    let mut tally = Tally::new(stream)?;
    tx.send(Passed::Ready).await?;
    let start = Instant::now();
    while tally.remaining() > 0 {
        match next(&rx).await? {
            Some(Passed::Fd { seq, fd }) => {
                let fd = fd.into_inner();
                tally.fd(seq, fd.as_fd())?;
                drop(fd);
            }
            Some(Passed::Ready) => return Err("expected a descriptor, got Ready".into()),
            None => break,
        }
    }
    let elapsed = start.elapsed();
    tally.check_end()?;
    match next(&rx).await? {
        None => Ok(Outcome::timed(elapsed)),
        Some(_) => Err("expected the close, got another message".into()),
    }
}
