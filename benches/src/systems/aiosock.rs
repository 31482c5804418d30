//! aiosock, as its README shows: `aiosock::spawn` in the parent and `aiosock::inherited`
//! in the child, default [`Config`](::aiosock::Config), a current-thread runtime in each
//! process. The concurrent senders are clones of one `Sender`, each in its own task on a
//! multi-thread runtime.
//!
//! The calls workloads are in `aiosock_calls`: this system is the generated client with
//! an in-order server there.

use std::time::{Duration, Instant};

use ::aiosock::{ChildOptions, Endpoint, Receiver, Sender};
use tokio::runtime::{Builder, Runtime};

use super::aiosock_calls::{self, Serving};
use super::{System, unexpected};
use crate::BoxError;
use crate::msg::{Checker, Msg, Source};
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
        workload != Workload::Pool
    }

    fn parent(&self, child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        if let Role::Call(plan) = role {
            return aiosock_calls::generated_parent(child, plan);
        }
        runtime(role)?.block_on(async {
            let (here, there) = ::aiosock::pair::<Msg, Msg>()?;
            let mut child = child.spawn_with(
                |command| {
                    Ok(ChildOptions::new()
                        .kill_on_drop(true)
                        .spawn(command, there)?)
                },
                ::aiosock::Child::id,
            )?;
            let outcome = play(here, role).await?;
            check_status(child.wait().await?)?;
            Ok(outcome)
        })
    }

    fn child(&self, role: &Role) -> Result<Outcome, BoxError> {
        if let Role::Answer = role {
            return aiosock_calls::generated_child(Serving::InOrder);
        }
        let end = ::aiosock::inherited::<Msg, Msg>()?;
        runtime(role)?.block_on(play(end, role))
    }
}

/// A current-thread runtime, or a multi-thread one for concurrent senders.
fn runtime(role: &Role) -> std::io::Result<Runtime> {
    match role {
        Role::Send(stream) if stream.senders > 1 => Builder::new_multi_thread(),
        _ => Builder::new_current_thread(),
    }
    .enable_all()
    .build()
}

async fn play(end: Endpoint<Msg, Msg>, role: &Role) -> Result<Outcome, BoxError> {
    let (tx, rx) = end.into_split();
    match role {
        Role::Send(stream) => send(tx, rx, stream).await,
        Role::Recv(stream) => recv(tx, rx, stream).await,
        Role::Ping { count } => ping(tx, rx, *count).await,
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

async fn ping(tx: Sender<Msg>, mut rx: Receiver<Msg>, count: u64) -> Result<Outcome, BoxError> {
    wait_ready(&mut rx).await?;
    let mut latencies = Vec::with_capacity(count as usize);
    for i in 0..count {
        let start = Instant::now();
        tx.send(Msg::Ping(i)).await.map_err(|e| e.to_string())?;
        match rx.recv().await? {
            Some(Msg::Ping(j)) if j == i => latencies.push(start.elapsed()),
            other => return Err(unexpected(&format!("Ping({i})"), other.as_ref())),
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
