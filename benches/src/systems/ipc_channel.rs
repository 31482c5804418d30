//! ipc-channel 0.23, set up as its own cross-process tests do: the parent makes an
//! `IpcOneShotServer` and passes its name to the child in an environment variable; the
//! child makes one channel per direction, connects, and sends the parent its halves. All
//! blocking, no runtime. Concurrent senders are threads with clones of one `IpcSender`.

use std::time::{Duration, Instant};

use ipc_channel::IpcError;
use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiver, IpcSender};
use serde::{Deserialize, Serialize};

use super::{System, unexpected};
use crate::BoxError;
use crate::msg::{Checker, Msg, Source};
use crate::process::{ChildCmd, wait_std};
use crate::workload::{Outcome, Role, Stream};

/// The environment variable with the one-shot server's name.
const ENV_SERVER: &str = "AIOSOCK_BENCH_IPC_SERVER";

/// What the child sends the parent through the one-shot server.
#[derive(Serialize, Deserialize)]
struct Hello {
    to_child: IpcSender<Msg>,
    from_child: IpcReceiver<Msg>,
}

/// ipc-channel.
#[derive(Debug)]
pub(crate) struct IpcChannel;

impl System for IpcChannel {
    fn name(&self) -> &'static str {
        "ipc-channel"
    }

    fn syscall_per_message(&self) -> bool {
        true
    }

    fn parent(&self, mut child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        let (server, name) = IpcOneShotServer::<Hello>::new()?;
        child.command_mut().env(ENV_SERVER, name);
        let mut child = child.spawn()?;
        let (_, hello) = server.accept()?;
        let outcome = play(hello.to_child, hello.from_child, role)?;
        wait_std(&mut child)?;
        Ok(outcome)
    }

    fn child(&self, role: &Role) -> Result<Outcome, BoxError> {
        let (to_child, rx) = ipc::channel::<Msg>()?;
        let (tx, from_child) = ipc::channel::<Msg>()?;
        IpcSender::<Hello>::connect(std::env::var(ENV_SERVER)?)?.send(Hello {
            to_child,
            from_child,
        })?;
        play(tx, rx, role)
    }
}

/// The next message, or `None` once the peer closed.
fn next(rx: &IpcReceiver<Msg>) -> Result<Option<Msg>, BoxError> {
    match rx.recv() {
        Ok(msg) => Ok(Some(msg)),
        Err(IpcError::Disconnected) => Ok(None),
        Err(e) => Err(e.to_string().into()),
    }
}

fn play(tx: IpcSender<Msg>, rx: IpcReceiver<Msg>, role: &Role) -> Result<Outcome, BoxError> {
    match role {
        Role::Send(stream) => send(tx, rx, stream),
        Role::Recv(stream) => recv(tx, rx, stream),
        Role::Ping { count } => ping(tx, rx, *count),
        Role::Echo => echo(tx, rx),
        Role::Call(_) | Role::Answer => Err(super::NO_CALLS.into()),
        Role::Deal { .. } | Role::Work => Err(super::NO_POOL.into()),
    }
}

fn send(tx: IpcSender<Msg>, rx: IpcReceiver<Msg>, stream: &Stream) -> Result<Outcome, BoxError> {
    wait_ready(&rx)?;
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..stream.senders)
            .map(|sender| {
                let tx = tx.clone();
                scope.spawn(move || {
                    let source = Source::new(stream.shape, sender);
                    for seq in 0..stream.per_sender {
                        tx.send(source.msg(seq)).map_err(|e| e.to_string())?;
                    }
                    Ok::<_, String>(())
                })
            })
            .collect();
        threads
            .into_iter()
            .try_for_each(|t| t.join().expect("sender thread panicked"))
    })?;
    Ok(Outcome::default())
}

fn recv(tx: IpcSender<Msg>, rx: IpcReceiver<Msg>, stream: &Stream) -> Result<Outcome, BoxError> {
    let mut checker = Checker::new(stream.shape, stream.senders, stream.per_sender);
    tx.send(Msg::Ready).map_err(|e| e.to_string())?;
    let start = Instant::now();
    if stream.delay > Duration::ZERO {
        std::thread::sleep(stream.delay);
    }
    while checker.remaining() > 0 {
        match next(&rx)? {
            Some(msg) => checker.check(&msg)?,
            None => break,
        }
    }
    let elapsed = start.elapsed();
    checker.check_end()?;
    match next(&rx)? {
        None => Ok(Outcome::timed(elapsed)),
        Some(msg) => Err(unexpected("the close", Some(&msg))),
    }
}

fn ping(tx: IpcSender<Msg>, rx: IpcReceiver<Msg>, count: u64) -> Result<Outcome, BoxError> {
    wait_ready(&rx)?;
    let mut latencies = Vec::with_capacity(count as usize);
    for i in 0..count {
        let start = Instant::now();
        tx.send(Msg::Ping(i)).map_err(|e| e.to_string())?;
        match next(&rx)? {
            Some(Msg::Ping(j)) if j == i => latencies.push(start.elapsed()),
            other => return Err(unexpected(&format!("Ping({i})"), other.as_ref())),
        }
    }
    Ok(Outcome::latencies(latencies))
}

fn echo(tx: IpcSender<Msg>, rx: IpcReceiver<Msg>) -> Result<Outcome, BoxError> {
    tx.send(Msg::Ready).map_err(|e| e.to_string())?;
    while let Some(msg) = next(&rx)? {
        tx.send(msg).map_err(|e| e.to_string())?;
    }
    Ok(Outcome::default())
}

fn wait_ready(rx: &IpcReceiver<Msg>) -> Result<(), BoxError> {
    match next(rx)? {
        Some(Msg::Ready) => Ok(()),
        other => Err(unexpected("Ready", other.as_ref())),
    }
}
