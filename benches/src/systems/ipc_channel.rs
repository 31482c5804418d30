//! ipc-channel 0.23, set up as its own cross-process tests do: the parent makes an
//! `IpcOneShotServer` and passes its name to the child in an environment variable; the
//! child makes one channel per direction, connects, and sends the parent its halves. All
//! blocking, no runtime. Concurrent senders are threads with clones of one `IpcSender`.
//!
//! In `shm-4m` the channels carry [`Shared`] instead of `Msg`: each payload in an
//! `IpcSharedMemory` made as its docs show, `IpcSharedMemory::from_bytes` (a new memfd, the
//! bytes copied in) of a buffer the sender filled in place; its one way to write into
//! shared memory directly is `unsafe` (`deref_mut`). `fds` is n/a: it has no way to send
//! an arbitrary descriptor.

use std::time::{Duration, Instant};

use ipc_channel::IpcError;
use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiver, IpcSender, IpcSharedMemory};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{System, unexpected};
use crate::BoxError;
use crate::msg::{Checker, Msg, Shape, Source};
use crate::process::{ChildCmd, wait_std};
use crate::resource::{Tally, fill};
use crate::workload::{Outcome, Role, Stream, Workload};

/// The environment variable with the one-shot server's name.
const ENV_SERVER: &str = "AIOSOCK_BENCH_IPC_SERVER";

/// What the child sends the parent through the one-shot server, for channels of `T`.
#[derive(Serialize, Deserialize)]
#[serde(bound = "T: Serialize + DeserializeOwned")]
struct Hello<T> {
    to_child: IpcSender<T>,
    from_child: IpcReceiver<T>,
}

/// What travels in the `shm-4m` workload.
#[derive(Serialize, Deserialize)]
enum Shared {
    /// A [`fill`]ed payload.
    Shm(IpcSharedMemory),
    /// The receiver is connected and reading: start now.
    Ready,
}

/// ipc-channel.
#[derive(Debug)]
pub(crate) struct IpcChannel;

impl System for IpcChannel {
    fn name(&self) -> &'static str {
        "ipc-channel"
    }

    fn takes_part(&self, workload: Workload) -> bool {
        workload.is_message() || workload.is_resource()
    }

    fn unsupported(&self, workload: Workload) -> Option<&'static str> {
        (workload == Workload::Fds).then_some(
            "no way to send an arbitrary descriptor (only its own channels and IpcSharedMemory)",
        )
    }

    fn syscall_per_message(&self) -> bool {
        true
    }

    fn parent(&self, child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        if matches!(role.shape(), Some(Shape::Shm(_))) {
            let (tx, rx, mut child) = connect_child::<Shared>(child)?;
            let outcome = play_shm(tx, rx, role)?;
            wait_std(&mut child)?;
            return Ok(outcome);
        }
        let (tx, rx, mut child) = connect_child::<Msg>(child)?;
        let outcome = play(tx, rx, role)?;
        wait_std(&mut child)?;
        Ok(outcome)
    }

    fn child(&self, role: &Role) -> Result<Outcome, BoxError> {
        if matches!(role.shape(), Some(Shape::Shm(_))) {
            let (tx, rx) = connect_parent::<Shared>()?;
            return play_shm(tx, rx, role);
        }
        let (tx, rx) = connect_parent::<Msg>()?;
        play(tx, rx, role)
    }
}

/// The parent's set-up: starts the child and takes its channels of `T`.
fn connect_child<T: Serialize + DeserializeOwned>(
    mut child: ChildCmd,
) -> Result<(IpcSender<T>, IpcReceiver<T>, std::process::Child), BoxError> {
    let (server, name) = IpcOneShotServer::<Hello<T>>::new()?;
    child.command_mut().env(ENV_SERVER, name);
    let child = child.spawn()?;
    let (_, hello) = server.accept()?;
    Ok((hello.to_child, hello.from_child, child))
}

/// The child's side of [`connect_child`]: makes a channel each way and sends the parent
/// its halves.
fn connect_parent<T: Serialize + DeserializeOwned>()
-> Result<(IpcSender<T>, IpcReceiver<T>), BoxError> {
    let (to_child, rx) = ipc::channel::<T>()?;
    let (tx, from_child) = ipc::channel::<T>()?;
    IpcSender::<Hello<T>>::connect(std::env::var(ENV_SERVER)?)?.send(Hello {
        to_child,
        from_child,
    })?;
    Ok((tx, rx))
}

/// The next message, or `None` once the peer closed.
fn next<T: Serialize + DeserializeOwned>(rx: &IpcReceiver<T>) -> Result<Option<T>, BoxError> {
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
        Role::Ping { count, .. } => ping(tx, rx, *count),
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

fn play_shm(
    tx: IpcSender<Shared>,
    rx: IpcReceiver<Shared>,
    role: &Role,
) -> Result<Outcome, BoxError> {
    match role {
        Role::Send(stream) => send_shm(tx, rx, stream),
        Role::Recv(stream) => recv_shm(tx, rx, stream),
        _ => Err("the shm-4m workload has only a sender and a receiver".into()),
    }
}

fn send_shm(
    tx: IpcSender<Shared>,
    rx: IpcReceiver<Shared>,
    stream: &Stream,
) -> Result<Outcome, BoxError> {
    let Shape::Shm(len) = stream.shape else {
        return Err(format!("a {} stream is no shm stream", stream.shape).into());
    };
    match next(&rx)? {
        Some(Shared::Ready) => {}
        Some(Shared::Shm(_)) => return Err("expected Ready, got a payload".into()),
        None => return Err("expected Ready, but the peer closed".into()),
    }
    // The buffer each payload is built in, before `from_bytes` copies it into a new memfd.
    let mut scratch = vec![0; len];
    for seq in 0..stream.per_sender {
        fill(seq, &mut scratch);
        tx.send(Shared::Shm(IpcSharedMemory::from_bytes(&scratch)))
            .map_err(|e| e.to_string())?;
    }
    Ok(Outcome::default())
}

fn recv_shm(
    tx: IpcSender<Shared>,
    rx: IpcReceiver<Shared>,
    stream: &Stream,
) -> Result<Outcome, BoxError> {
    let mut tally = Tally::new(stream)?;
    tx.send(Shared::Ready).map_err(|e| e.to_string())?;
    let start = Instant::now();
    while tally.remaining() > 0 {
        match next(&rx)? {
            Some(Shared::Shm(shm)) => tally.payload(&shm)?,
            Some(Shared::Ready) => return Err("expected a payload, got Ready".into()),
            None => break,
        }
    }
    let elapsed = start.elapsed();
    tally.check_end()?;
    match next(&rx)? {
        None => Ok(Outcome::timed(elapsed)),
        Some(_) => Err("expected the close, got another message".into()),
    }
}
