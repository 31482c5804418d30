//! aiosock across the network, as its `tcp` module shows: the parent listens with
//! `TcpListener::<Msg, Msg>::bind_plaintext` (`aiosock-tcp`) or `bind_tls` with the run's
//! server config (`aiosock-tls`, feature `tls-peers`) and takes the child's connection
//! from `accept`; the child connects with `connect_plaintext_tcp` or `connect_tls`
//! (trusting the run's authority). The ends are ordinary [`Endpoint`]s, played as in the
//! `aiosock` system, on a current-thread runtime in each process, with the default
//! [`Config`](::aiosock::Config).
//!
//! One difference: a sender, once it has sent everything, waits for the receiver to close
//! its end before it ends. An end over TCP hands its bytes to a bridge, a task on this
//! process's runtime (see aiosock's `tcp` module), and `flush` only says that the bridge
//! has them, so the process must not end before the bridge has forwarded them; the peer's
//! close, which comes after it has read every message, is the sign. The sender is not
//! timed (the receiver is), so the wait costs the numbers nothing.

use std::future::Future;

use ::aiosock::{Endpoint, TcpListener};

use super::aiosock::{play, runtime};
use super::{System, unexpected};
use crate::BoxError;
use crate::msg::{Msg, Source};
use crate::net;
use crate::process::ChildCmd;
use crate::workload::{Outcome, Role, Stream, Workload};

/// aiosock over plaintext TCP or TLS.
#[derive(Debug)]
pub(crate) struct AiosockNet {
    tls: bool,
}

impl AiosockNet {
    /// Plaintext TCP.
    pub(crate) const TCP: AiosockNet = AiosockNet { tls: false };
    /// TLS.
    pub(crate) const TLS: AiosockNet = AiosockNet { tls: true };
}

impl System for AiosockNet {
    fn name(&self) -> &'static str {
        if self.tls {
            "aiosock-tls"
        } else {
            "aiosock-tcp"
        }
    }

    fn takes_part(&self, workload: Workload) -> bool {
        if self.tls {
            workload.is_tls()
        } else {
            workload.is_tcp()
        }
    }

    fn unsupported(&self, _: Workload) -> Option<&'static str> {
        (self.tls && !cfg!(feature = "tls-peers")).then_some(net::TLS_MISSING)
    }

    fn parent(&self, child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        if self.tls {
            #[cfg(feature = "tls-peers")]
            {
                let mut child = child;
                let tls = net::Tls::new()?;
                tls.pass_to(&mut child);
                let listening = TcpListener::bind_tls(net::LOOPBACK, tls.server_config());
                // `tls` (and with it the authority's file) lives until the child exited.
                return parent(child, role, listening);
            }
            #[cfg(not(feature = "tls-peers"))]
            {
                drop(child);
                return Err(net::TLS_MISSING.into());
            }
        }
        parent(child, role, TcpListener::bind_plaintext(net::LOOPBACK))
    }

    fn child(&self, role: &Role) -> Result<Outcome, BoxError> {
        let addr = net::parent_addr()?;
        if self.tls {
            #[cfg(feature = "tls-peers")]
            {
                let config = net::client_config()?;
                return child(role, ::aiosock::connect_tls(addr, net::SERVER_NAME, config));
            }
            #[cfg(not(feature = "tls-peers"))]
            return Err(net::TLS_MISSING.into());
        }
        child(role, ::aiosock::connect_plaintext_tcp(addr))
    }
}

/// The parent's side: listens with `listening`, starts the child with the address, plays
/// `role` over the end it accepts, and waits for the child to succeed.
fn parent(
    mut child: ChildCmd,
    role: &Role,
    listening: impl Future<Output = Result<TcpListener<Msg, Msg>, ::aiosock::Error>>,
) -> Result<Outcome, BoxError> {
    runtime(role)?.block_on(async {
        let listener = listening.await?;
        net::pass_addr(&mut child, listener.local_addr()?);
        let mut child = child.spawn()?;
        let (end, _peer) = net::accepted(&mut child, listener.accept()).await??;
        let outcome = play_net(end, role).await?;
        net::exited(&mut child).await?;
        Ok(outcome)
    })
}

/// The child's side: plays `role` over the end `connecting` gives.
fn child(
    role: &Role,
    connecting: impl Future<Output = Result<Endpoint<Msg, Msg>, ::aiosock::Error>>,
) -> Result<Outcome, BoxError> {
    runtime(role)?.block_on(async { play_net(connecting.await?, role).await })
}

/// Plays `role` as the `aiosock` system does, but a sender waits for the receiver's close.
async fn play_net(end: Endpoint<Msg, Msg>, role: &Role) -> Result<Outcome, BoxError> {
    match role {
        Role::Send(stream) => send(end, stream).await,
        _ => play(end, role).await,
    }
}

/// Waits for `Ready`, sends the stream, flushes and closes this direction (dropping the
/// sender), and waits for the receiver's close.
async fn send(end: Endpoint<Msg, Msg>, stream: &Stream) -> Result<Outcome, BoxError> {
    if stream.senders != 1 {
        return Err(format!("{} senders; these workloads have one", stream.senders).into());
    }
    let (tx, mut rx) = end.into_split();
    match rx.recv().await? {
        Some(Msg::Ready) => {}
        other => return Err(unexpected("Ready", other.as_ref())),
    }
    let source = Source::new(stream.shape, 0);
    for seq in 0..stream.per_sender {
        tx.send(source.msg(seq)).await.map_err(|e| e.to_string())?;
    }
    tx.flush().await?;
    drop(tx);
    match rx.recv().await? {
        None => Ok(Outcome::default()),
        Some(msg) => Err(unexpected("the close", Some(&msg))),
    }
}
