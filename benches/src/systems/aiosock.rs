//! aiosock, as its README shows: `aiosock::spawn` in the parent and `aiosock::inherited`
//! in the child, default [`Config`], a current-thread runtime in each
//! process. The concurrent senders are clones of one `Sender`, each in its own task on a
//! multi-thread runtime.
//!
//! The calls workloads are in `aiosock_calls`: this system is the generated client with
//! an in-order server there. The resource workloads are in `aiosock_shm`: this system
//! sends an `aiosock::Fd` per message in `fds`, and builds each `shm-4m` payload in a
//! `ShmBuf` sent frozen as an `aiosock::Shm`. In the `pairs-*` workloads the parent makes
//! the connections with `aiosock::pair` and hands the child its ends as `Endpoint` fields
//! of [`Handoff`] messages over the first one; every connection then runs the stream at
//! once, all on the current-thread runtime of each process.

use std::future::Future;
use std::time::{Duration, Instant};

use ::aiosock::{ChildOptions, Config, Endpoint, Protocol, Receiver, Sender};
use tokio::runtime::{Builder, Runtime};

use super::aiosock_calls::{self, Serving};
use super::aiosock_shm::{self, Build};
use super::{System, unexpected};
use crate::BoxError;
use crate::msg::{Checker, Msg, Shape, Source};
use crate::process::{ChildCmd, check_status};
use crate::workload::{Outcome, Role, Stream, Workload};

/// aiosock.
#[derive(Debug)]
pub(crate) struct Aiosock;

impl System for Aiosock {
    fn name(&self) -> &'static str {
        "aiosock"
    }

    fn takes_part(&self, workload: Workload) -> bool {
        workload != Workload::Pool && !workload.is_network()
    }

    fn parent(&self, child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        match role {
            Role::Call(plan) => aiosock_calls::generated_parent(child, plan),
            _ if carries_resources(role) => aiosock_shm::parent(child, role, Build::InPlace),
            _ => messages_parent(child, role),
        }
    }

    fn child(&self, role: &Role) -> Result<Outcome, BoxError> {
        match role {
            Role::Answer => aiosock_calls::generated_child(Serving::InOrder),
            _ if carries_resources(role) => aiosock_shm::child(role, Build::InPlace),
            _ => messages_child(role),
        }
    }
}

/// aiosock with one setting changed on both ends, in the workloads it is for: the
/// default system otherwise (see [`SPINNING`], [`COPYING`] and [`READ_ONLY`]).
#[derive(Debug)]
pub(crate) struct Configured {
    name: &'static str,
    takes_part: fn(Workload) -> bool,
    configure: fn(&mut Config),
}

/// aiosock in its low-latency mode: both ends with [`Config::set_spin`] of [`SPIN`], in
/// the `rtt` workload only (the mode is for request and reply loops).
pub(crate) const SPINNING: Configured = Configured {
    name: "aiosock-spin",
    takes_part: |workload| workload == Workload::Rtt,
    configure: |config| {
        config.set_spin(SPIN);
    },
};

/// aiosock with every byte field copied into the outgoing buffer
/// ([`Config::set_zero_copy_from`] of `usize::MAX`), as before large fields were sent
/// from their own buffers: in the bulk workloads only (`data-64k`, `data-4m`, `size-*`),
/// to show what that saves in the same run.
pub(crate) const COPYING: Configured = Configured {
    name: "aiosock-copied",
    takes_part: |workload| {
        matches!(
            workload,
            Workload::Data64K | Workload::Data4M | Workload::Size(_)
        )
    },
    configure: |config| {
        config.set_zero_copy_from(usize::MAX);
    },
};

/// aiosock with its sockets watched for reading only
/// ([`Config::set_woken_by_peer_reads`] off), as before that became the default: in the
/// `rtt` workload only, to show in the same run what the wake-up when the peer reads does
/// to a round trip.
pub(crate) const READ_ONLY: Configured = Configured {
    name: "aiosock-read-only",
    takes_part: |workload| workload == Workload::Rtt,
    configure: |config| {
        config.set_woken_by_peer_reads(false);
    },
};

/// The spin of `aiosock-spin`: a little over the echoing child's answer time here (its
/// round trip, warm, is 10 to 20 µs), so that neither side parks between a ping and its
/// echo. Each side's thread is busy for up to this long at every wait.
const SPIN: Duration = Duration::from_micros(100);

impl Configured {
    fn configured(&self, end: Endpoint<Msg, Msg>) -> Endpoint<Msg, Msg> {
        let mut config = end.config().clone();
        (self.configure)(&mut config);
        end.with_config(config)
    }
}

impl System for Configured {
    fn name(&self) -> &'static str {
        self.name
    }

    fn takes_part(&self, workload: Workload) -> bool {
        (self.takes_part)(workload)
    }

    fn parent(&self, child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        spawned::<Msg, _>(child, runtime(role)?, |end| async move {
            play(self.configured(end), role).await
        })
    }

    fn child(&self, role: &Role) -> Result<Outcome, BoxError> {
        let end = self.configured(::aiosock::inherited::<Msg, Msg>()?);
        runtime(role)?.block_on(play(end, role))
    }
}

/// Whether `role` moves descriptors or shared memory (the `fds` and `shm-4m` workloads).
fn carries_resources(role: &Role) -> bool {
    matches!(role.shape(), Some(Shape::Fd | Shape::Shm(_)))
}

/// The parent's side of `role` with [`Msg`] both ways (a `shm-4m` payload as a `Data`).
pub(super) fn messages_parent(child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
    if let Some(pairs) = pairs_of(role) {
        return spawned::<Handoff, _>(child, runtime(role)?, |end| async move {
            let (tx, _rx) = end.into_split();
            let mut ends = Vec::with_capacity(pairs);
            for _ in 0..pairs {
                let (here, there) = ::aiosock::pair::<Msg, Msg>()?;
                tx.send(Handoff::Pair(there))
                    .await
                    .map_err(|e| e.to_string())?;
                ends.push(here);
            }
            tx.flush().await?;
            all_pairs(ends, role).await
        });
    }
    spawned::<Msg, _>(child, runtime(role)?, |end| play(end, role))
}

/// The child's side of [`messages_parent`].
pub(super) fn messages_child(role: &Role) -> Result<Outcome, BoxError> {
    if let Some(pairs) = pairs_of(role) {
        let end = ::aiosock::inherited::<Handoff, Handoff>()?;
        return runtime(role)?.block_on(async move {
            let (_tx, mut rx) = end.into_split();
            let mut ends = Vec::with_capacity(pairs);
            while ends.len() < pairs {
                match rx.recv().await? {
                    Some(Handoff::Pair(end)) => ends.push(end),
                    None => return Err("the parent closed before it sent every pair".into()),
                }
            }
            all_pairs(ends, role).await
        });
    }
    let end = ::aiosock::inherited::<Msg, Msg>()?;
    runtime(role)?.block_on(play(end, role))
}

/// What the first connection of a `pairs-*` run carries: the child's ends of the others.
#[::aiosock::protocol]
#[derive(Debug)]
pub(crate) enum Handoff {
    /// One connection's end for the child.
    Pair(Endpoint<Msg, Msg>),
}

/// The connections of a `pairs-*` role, if there are more than one.
fn pairs_of(role: &Role) -> Option<usize> {
    match role {
        Role::Send(stream) | Role::Recv(stream) if stream.pairs > 1 => Some(stream.pairs),
        _ => None,
    }
}

/// Plays a `pairs-*` role over every end at once: each carries the whole stream. The
/// receiver's time runs from before the first `Ready` to the last message of all.
async fn all_pairs(ends: Vec<Endpoint<Msg, Msg>>, role: &Role) -> Result<Outcome, BoxError> {
    let one = |stream: &Stream| Stream {
        pairs: 1,
        ..stream.clone()
    };
    let each = match role {
        Role::Send(stream) => Role::Send(one(stream)),
        Role::Recv(stream) => Role::Recv(one(stream)),
        _ => return Err("only streams run over many pairs".into()),
    };
    let start = Instant::now();
    futures_util::future::try_join_all(ends.into_iter().map(|end| play(end, &each))).await?;
    Ok(match role {
        Role::Recv(_) => Outcome::timed(start.elapsed()),
        _ => Outcome::default(),
    })
}

/// Starts the child with an end speaking `P` both ways (`kill_on_drop`, so that a failed
/// parent leaves no child behind), plays the parent's side with `play` on `runtime`, and
/// waits for the child to succeed.
pub(super) fn spawned<P: Protocol, F: Future<Output = Result<Outcome, BoxError>>>(
    child: ChildCmd,
    runtime: Runtime,
    play: impl FnOnce(Endpoint<P, P>) -> F,
) -> Result<Outcome, BoxError> {
    runtime.block_on(async {
        let (here, there) = ::aiosock::pair::<P, P>()?;
        let mut child = child.spawn_with(
            |command| {
                Ok(ChildOptions::new()
                    .kill_on_drop(true)
                    .spawn(command, there)?)
            },
            ::aiosock::Child::id,
        )?;
        let outcome = play(here).await?;
        check_status(child.wait().await?)?;
        Ok(outcome)
    })
}

/// A current-thread runtime, or a multi-thread one for concurrent senders.
pub(super) fn runtime(role: &Role) -> std::io::Result<Runtime> {
    match role {
        Role::Send(stream) if stream.senders > 1 => Builder::new_multi_thread(),
        _ => Builder::new_current_thread(),
    }
    .enable_all()
    .build()
}

/// Plays `role` with [`Msg`] both ways over `end` (also over TCP and TLS: `aiosock_net`).
pub(super) async fn play(end: Endpoint<Msg, Msg>, role: &Role) -> Result<Outcome, BoxError> {
    let (tx, rx) = end.into_split();
    match role {
        Role::Send(stream) => send(tx, rx, stream).await,
        Role::Recv(stream) => recv(tx, rx, stream).await,
        Role::Ping { count, shape } => ping(tx, rx, *count, *shape).await,
        Role::Echo => echo(tx, rx).await,
        Role::Call(_) | Role::Answer => Err("the calls roles use other protocols".into()),
        Role::Deal { .. } | Role::Work => Err(super::NO_POOL.into()),
    }
}

async fn send(
    tx: Sender<Msg>,
    mut rx: Receiver<Msg>,
    stream: &Stream,
) -> Result<Outcome, BoxError> {
    wait_ready(&mut rx).await?;
    let tasks: Vec<_> = (0..stream.senders)
        .map(|sender| {
            let tx = tx.clone();
            let source = Source::new(stream.shape, sender);
            let count = stream.per_sender;
            tokio::spawn(async move {
                for seq in 0..count {
                    tx.send(source.msg(seq)).await.map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    tx.flush().await?;
    Ok(Outcome::default())
}

async fn recv(
    tx: Sender<Msg>,
    mut rx: Receiver<Msg>,
    stream: &Stream,
) -> Result<Outcome, BoxError> {
    let mut checker = Checker::new(stream.shape, stream.senders, stream.per_sender);
    tx.send(Msg::Ready).await.map_err(|e| e.to_string())?;
    let start = Instant::now();
    if stream.delay > Duration::ZERO {
        tokio::time::sleep(stream.delay).await;
    }
    while checker.remaining() > 0 {
        match rx.recv().await? {
            Some(msg) => checker.check(&msg)?,
            None => break,
        }
    }
    let elapsed = start.elapsed();
    checker.check_end()?;
    match rx.recv().await? {
        None => Ok(Outcome::timed(elapsed)),
        Some(msg) => Err(unexpected("the close", Some(&msg))),
    }
}

async fn ping(
    tx: Sender<Msg>,
    mut rx: Receiver<Msg>,
    count: u64,
    shape: Shape,
) -> Result<Outcome, BoxError> {
    wait_ready(&mut rx).await?;
    let (source, mut checker) = (Source::new(shape, 0), Checker::new(shape, 1, count));
    let mut latencies = Vec::with_capacity(count as usize);
    for i in 0..count {
        let msg = source.msg(i);
        let start = Instant::now();
        tx.send(msg).await.map_err(|e| e.to_string())?;
        let echoed = rx.recv().await?;
        latencies.push(start.elapsed());
        match echoed {
            Some(msg) => checker.check(&msg)?,
            None => return Err(unexpected(&format!("message {i}"), None)),
        }
    }
    Ok(Outcome::latencies(latencies))
}

async fn echo(tx: Sender<Msg>, mut rx: Receiver<Msg>) -> Result<Outcome, BoxError> {
    tx.send(Msg::Ready).await.map_err(|e| e.to_string())?;
    while let Some(msg) = rx.recv().await? {
        tx.send(msg).await.map_err(|e| e.to_string())?;
    }
    tx.flush().await?;
    Ok(Outcome::default())
}

async fn wait_ready(rx: &mut Receiver<Msg>) -> Result<(), BoxError> {
    match rx.recv().await? {
        Some(Msg::Ready) => Ok(()),
        other => Err(unexpected("Ready", other.as_ref())),
    }
}
