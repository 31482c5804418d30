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

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::runtime::{Builder, Runtime};
use tokio_unix_ipc::{Bootstrapper, Receiver, Sender, symmetric_channel};

use super::{System, unexpected};
use crate::BoxError;
use crate::msg::{Checker, Msg, Source};
use crate::process::{ChildCmd, wait_std};
use crate::workload::{Outcome, Role, Stream, Workload};

/// The environment variable with the bootstrapper's path.
const ENV_PATH: &str = "AIOSOCK_BENCH_TUI_PATH";

/// What the parent sends through the bootstrapper.
#[derive(Serialize, Deserialize)]
struct Setup {
    /// The child's receiving end of the parent-to-child stream.
    to_child: Receiver<Msg>,
    /// Where the child sends its receiver of the child-to-parent stream.
    reply: Sender<Receiver<Msg>>,
}

/// tokio-unix-ipc.
#[derive(Debug)]
pub(crate) struct TokioUnixIpc;

impl System for TokioUnixIpc {
    fn name(&self) -> &'static str {
        "tokio-unix-ipc"
    }

    fn unsupported(&self, workload: Workload) -> Option<&'static str> {
        (workload == Workload::Concurrent)
            .then_some("a send is two writes (header, payload): shared senders interleave frames")
    }

    fn syscall_per_message(&self) -> bool {
        true
    }

    fn parent(&self, mut child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        runtime()?.block_on(async {
            let bootstrapper = Bootstrapper::new()?;
            child.command_mut().env(ENV_PATH, bootstrapper.path());
            let mut child = child.spawn()?;
            let (tx, to_child) = symmetric_channel::<Msg>()?;
            let (reply, replies) = symmetric_channel::<Receiver<Msg>>()?;
            bootstrapper.send(Setup { to_child, reply }).await?;
            let rx = replies.recv().await?;
            drop(bootstrapper);
            let outcome = play(tx, rx, role).await?;
            wait_std(&mut child)?;
            Ok(outcome)
        })
    }

    fn child(&self, role: &Role) -> Result<Outcome, BoxError> {
        let path = std::env::var(ENV_PATH)?;
        runtime()?.block_on(async {
            let setup = Receiver::<Setup>::connect(path).await?.recv().await?;
            let (tx, rx) = symmetric_channel::<Msg>()?;
            setup.reply.send(rx).await?;
            play(tx, setup.to_child, role).await
        })
    }
}

fn runtime() -> std::io::Result<Runtime> {
    Builder::new_current_thread().enable_all().build()
}

/// The next message, or `None` once the peer closed.
async fn next(rx: &Receiver<Msg>) -> Result<Option<Msg>, BoxError> {
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
        Role::Ping { count } => ping(tx, rx, *count).await,
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
