//! aiosock in the resource workloads (see [`crate::resource`]), over `aiosock::spawn` and
//! `aiosock::inherited` with the default [`Config`](::aiosock::Config) and a
//! current-thread runtime in each process, as the message workloads are (`aiosock`):
//!
//! - `aiosock` in `fds`: each message is a [`Carry::Fd`] holding an `aiosock::Fd` (a new
//!   duplicate of `/dev/null`); the receiver checks it and drops it, closing it.
//! - `aiosock` in `shm-4m`: each payload is built in place in a fresh `ShmBuf`, frozen and
//!   sent as a [`Carry::Shm`]; the receiver reads the sealed mapping whole.
//! - `aiosock-vec`: the same payload in a fresh `Vec<u8>`, sent as a plain `Vec<u8>` field
//!   through the socket (`Msg::Data`, the path of `data-4m`).
//! - `aiosock-vec-shm`: what an automatic memfd path for `Vec<u8>` fields would do: the
//!   sender fills a fresh `Vec<u8>` as `aiosock-vec` does, copies it into a new `ShmBuf`
//!   (`Shm::copy_from_slice`) and sends the frozen `Shm`; the receiver copies the bytes
//!   out into a new `Vec<u8>`, drops the `Shm`, and reads the `Vec`.

use std::os::fd::AsFd;
use std::time::Instant;

use ::aiosock::{Receiver, Sender, Shm, ShmBuf};

use super::System;
use super::aiosock::{messages_child, messages_parent, runtime, spawned};
use crate::BoxError;
use crate::msg::Shape;
use crate::process::{ChildCmd, error_chain};
use crate::resource::{Carry, FdSource, Tally, fill};
use crate::workload::{Outcome, Role, Stream, Workload};

/// How a `shm-4m` payload is made and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Build {
    /// Built in a `ShmBuf` and read in the received `Shm` (`aiosock`).
    InPlace,
    /// Built in a `Vec<u8>`, copied into a `ShmBuf`, copied out into a `Vec<u8>` by the
    /// receiver (`aiosock-vec-shm`).
    ViaVec,
}

/// aiosock sending each `shm-4m` payload as a `Vec<u8>` field.
#[derive(Debug)]
pub(crate) struct AiosockVec;

impl System for AiosockVec {
    fn name(&self) -> &'static str {
        "aiosock-vec"
    }

    fn takes_part(&self, workload: Workload) -> bool {
        workload == Workload::Shm4M
    }

    fn parent(&self, child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        messages_parent(child, role)
    }

    fn child(&self, role: &Role) -> Result<Outcome, BoxError> {
        messages_child(role)
    }
}

/// aiosock moving each `shm-4m` payload from a `Vec<u8>` to a `Vec<u8>` through a memfd.
#[derive(Debug)]
pub(crate) struct AiosockVecShm;

impl System for AiosockVecShm {
    fn name(&self) -> &'static str {
        "aiosock-vec-shm"
    }

    fn takes_part(&self, workload: Workload) -> bool {
        workload == Workload::Shm4M
    }

    fn parent(&self, child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        parent(child, role, Build::ViaVec)
    }

    fn child(&self, role: &Role) -> Result<Outcome, BoxError> {
        child(role, Build::ViaVec)
    }
}

/// The parent's side of a resource workload, with [`Carry`] both ways.
pub(super) fn parent(child: ChildCmd, role: &Role, build: Build) -> Result<Outcome, BoxError> {
    spawned::<Carry, _>(child, runtime(role)?, |end| {
        let (tx, rx) = end.into_split();
        play(tx, rx, role, build)
    })
}

/// The child's side of [`parent`].
pub(super) fn child(role: &Role, build: Build) -> Result<Outcome, BoxError> {
    let (tx, rx) = ::aiosock::inherited::<Carry, Carry>()?.into_split();
    runtime(role)?.block_on(play(tx, rx, role, build))
}

async fn play(
    tx: Sender<Carry>,
    rx: Receiver<Carry>,
    role: &Role,
    build: Build,
) -> Result<Outcome, BoxError> {
    match role {
        Role::Send(stream) => send(tx, rx, stream, build).await,
        Role::Recv(stream) => recv(tx, rx, stream, build).await,
        _ => Err("the resource workloads have only a sender and a receiver".into()),
    }
}

async fn send(
    tx: Sender<Carry>,
    mut rx: Receiver<Carry>,
    stream: &Stream,
    build: Build,
) -> Result<Outcome, BoxError> {
    let fds = match stream.shape {
        Shape::Fd => Some(FdSource::open()?),
        _ => None,
    };
    match rx.recv().await? {
        Some(Carry::Ready) => {}
        other => return Err(unexpected("Ready", other.as_ref())),
    }
    for seq in 0..stream.per_sender {
        let msg = match (stream.shape, &fds) {
            (Shape::Fd, Some(fds)) => Carry::Fd {
                seq,
                fd: fds.next()?.into(),
            },
            (Shape::Shm(len), _) => Carry::Shm(payload(seq, len, build)?),
            (other, _) => return Err(format!("a {other} stream is no resource stream").into()),
        };
        tx.send(msg).await.map_err(|e| error_chain(&e))?;
    }
    tx.flush().await?;
    Ok(Outcome::default())
}

/// Payload `seq` of `len` bytes, made as `build` says.
fn payload(seq: u64, len: usize, build: Build) -> Result<Shm, BoxError> {
    Ok(match build {
        Build::InPlace => {
            let mut buf = ShmBuf::new(len)?;
            fill(seq, &mut buf);
            buf.freeze()?
        }
        Build::ViaVec => {
            let mut data = vec![0; len];
            fill(seq, &mut data);
            Shm::copy_from_slice(&data)?
        }
    })
}

async fn recv(
    tx: Sender<Carry>,
    mut rx: Receiver<Carry>,
    stream: &Stream,
    build: Build,
) -> Result<Outcome, BoxError> {
    let mut tally = Tally::new(stream)?;
    tx.send(Carry::Ready).await.map_err(|e| error_chain(&e))?;
    let start = Instant::now();
    while tally.remaining() > 0 {
        match rx.recv().await? {
            Some(Carry::Fd { seq, fd }) => {
                tally.fd(seq, fd.as_fd())?;
                drop(fd);
            }
            Some(Carry::Shm(shm)) => match build {
                Build::InPlace => tally.payload(&shm)?,
                Build::ViaVec => {
                    let data = shm.to_vec();
                    drop(shm);
                    tally.payload(&data)?;
                }
            },
            Some(other) => return Err(unexpected("a descriptor or a payload", Some(&other))),
            None => break,
        }
    }
    let elapsed = start.elapsed();
    tally.check_end()?;
    match rx.recv().await? {
        None => Ok(Outcome::timed(elapsed)),
        Some(msg) => Err(unexpected("the close", Some(&msg))),
    }
}

/// The error for a message the role did not expect.
fn unexpected(what: &str, msg: Option<&Carry>) -> BoxError {
    let got = match msg {
        Some(Carry::Fd { seq, .. }) => format!("descriptor {seq}"),
        Some(Carry::Shm(shm)) => format!("Shm({} bytes)", shm.len()),
        Some(Carry::Ready) => "Ready".into(),
        None => return format!("expected {what}, but the peer closed").into(),
    };
    format!("expected {what}, got {got}").into()
}
