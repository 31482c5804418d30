//! The systems under test, one module each, behind one trait.
//!
//! Each system sets up its connection in its own way (how a user of it would), and
//! implements the [`Role`]s of the workloads it takes part in over it: `send`, `recv`,
//! `ping` and `echo` for the message workloads, `call` and `answer` for the calls
//! workloads, with the same shape in every module. Messages come from
//! [`Source`](crate::msg::Source) and are checked by [`Checker`](crate::msg::Checker), and
//! calls are driven by [`calls::drive`](crate::calls::drive), the same for all.
//!
//! The calls workloads have systems of their own: `aiosock-concurrent` and
//! `aiosock-manual` (in `aiosock_calls`), and the RPC frameworks `tarpc` and `remoc`,
//! which are built only with the feature `rpc-peers`. So does the pool workload: `pool`
//! and `pool-manual` (in `aiosock_pool`), whose parent starts several children, the
//! roles `deal` and `work`.
//!
//! In `rtt`, `aiosock-spin` (in `aiosock`) is aiosock in its low-latency mode, and
//! `iceoryx2-poll` and `iceoryx2-wait` (in `iceoryx2_rtt`, feature `shm-peers`) are
//! iceoryx2 busy-polling and blocking.
//!
//! In the resource workloads (`fds`, `shm-4m`: see [`crate::resource`]) each system says
//! that it takes part, and sends its own message types: `raw-buffered` (descriptors in
//! `raw_fds`), `aiosock`, `tokio-unix-ipc` and `ipc-channel` in their modules, and in
//! `shm-4m` also `aiosock-vec` and `aiosock-vec-shm` (in `aiosock_shm`) and iceoryx2,
//! which is built only with the feature `shm-peers`.
//!
//! The network workloads (`tcp-*`, `tls-*`: see [`crate::net`]) have systems of their own,
//! each connecting over the loopback (the parent listens, the child connects):
//! `raw-tcp` (`raw`'s buffered frames over a blocking `std` TCP stream, in `raw_tcp`) and
//! `aiosock-tcp` over plaintext TCP; `raw-tls` (frames over a tokio-rustls stream, in
//! `raw_tls`), `aiosock-tls` (both aiosock systems in `aiosock_net`) and `tarpc-tls`
//! (tarpc's calls over the same TLS stream, in `tarpc_tls`) over TLS, which are built only
//! with the feature `tls-peers` (and `tarpc-tls` only with `rpc-peers` too).

mod aiosock;
mod aiosock_calls;
mod aiosock_net;
mod aiosock_pool;
mod aiosock_shm;
mod iceoryx2;
mod iceoryx2_rtt;
mod ipc_channel;
mod raw;
mod raw_fds;
mod raw_tcp;
mod raw_tls;
mod remoc;
mod tarpc;
mod tarpc_tls;
mod tokio_unix_ipc;

use std::future::Future;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Stdio;

use crate::BoxError;
use crate::process::ChildCmd;
use crate::workload::{Outcome, Role, Workload};

/// What the report says about the calls workloads' RPC peers.
pub(crate) const PEERS: &str = if cfg!(feature = "rpc-peers") {
    "peers: tarpc 0.38 (serde transport, bincode) and remoc 0.20 (rtc, default codec)"
} else {
    "peers tarpc and remoc not built (feature rpc-peers)"
};

/// What the report says about the `shm-4m` workload's shared-memory peer.
pub(crate) const SHM_PEERS: &str = if cfg!(feature = "shm-peers") {
    "peer: iceoryx2 0.10 (publish-subscribe of [u8], loaned samples, polling subscriber; in rtt publish-subscribe of u64 both ways, iceoryx2-poll busy-polling, iceoryx2-wait blocking on an event service)"
} else {
    "peer iceoryx2 not built (feature shm-peers)"
};

/// Calls `tarpc-tls` keeps in flight in `tls-small`.
pub(crate) use tarpc_tls::IN_FLIGHT as TARPC_TLS_IN_FLIGHT;

/// Why tarpc and remoc sit out when the feature is off.
const PEERS_MISSING: &str = "unsupported: build with --features rpc-peers";

/// The error of a role a system does not play.
const NO_CALLS: &str = "this system takes no part in the calls workloads";

/// The error of a pool role played by a system of another workload.
const NO_POOL: &str = "this system takes no part in the pool workload";

/// Whether this build has the RPC peers.
/// Defines the `System` of an RPC framework benchmarked in the calls workloads only and
/// built with the feature `rpc-peers`: its module's `imp::parent` and `imp::child` run the
/// two sides.
macro_rules! rpc_peer {
    ($(#[$doc:meta])* $ty:ident, $name:literal) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub(crate) struct $ty;

        impl super::System for $ty {
            fn name(&self) -> &'static str {
                $name
            }

            fn takes_part(&self, workload: crate::workload::Workload) -> bool {
                workload.is_calls()
            }

            fn unsupported(&self, _: crate::workload::Workload) -> Option<&'static str> {
                super::peers_missing()
            }

            fn parent(
                &self,
                child: crate::process::ChildCmd,
                role: &crate::workload::Role,
            ) -> Result<crate::workload::Outcome, crate::BoxError> {
                match role {
                    #[cfg(feature = "rpc-peers")]
                    crate::workload::Role::Call(plan) => imp::parent(child, plan),
                    _ => {
                        drop(child);
                        Err(super::peers_missing().unwrap_or(super::NO_CALLS).into())
                    }
                }
            }

            fn child(
                &self,
                role: &crate::workload::Role,
            ) -> Result<crate::workload::Outcome, crate::BoxError> {
                match role {
                    #[cfg(feature = "rpc-peers")]
                    crate::workload::Role::Answer => imp::child(),
                    _ => Err(super::peers_missing().unwrap_or(super::NO_CALLS).into()),
                }
            }
        }
    };
}
use rpc_peer;

fn peers_missing() -> Option<&'static str> {
    (!cfg!(feature = "rpc-peers")).then_some(PEERS_MISSING)
}

/// One IPC system under test.
pub(crate) trait System: Sync + std::fmt::Debug {
    /// The name in the table and on the command lines.
    fn name(&self) -> &'static str;

    /// Whether the system belongs in `workload`'s rows at all. By default, the message
    /// workloads (not the calls, the pool or the network).
    fn takes_part(&self, workload: Workload) -> bool {
        workload.is_message()
    }

    /// Why the system sits out a workload it [takes part in](Self::takes_part) (shown as
    /// n/a), if it does.
    fn unsupported(&self, workload: Workload) -> Option<&'static str> {
        let _ = workload;
        None
    }

    /// Whether the system makes a system call (or more) per message on each side, or is
    /// as slow per message (`tarpc-tls`). Such systems move a tenth of the messages in the message-count workloads (see
    /// [`Workload::scaled`]), to keep each run within seconds; rates stay comparable, and
    /// the table's `n` column shows the count.
    fn syscall_per_message(&self) -> bool {
        false
    }

    /// The parent's side: starts the child through `child`, connects to it, plays `role`,
    /// and waits for the child to exit successfully.
    fn parent(&self, child: ChildCmd, role: &Role) -> Result<Outcome, BoxError>;

    /// The child's side: connects to the parent and plays `role`.
    fn child(&self, role: &Role) -> Result<Outcome, BoxError>;
}

/// The baseline every ratio is taken against, but in the network workloads (see
/// [`baseline`]).
pub(crate) const BASELINE: &str = "raw-buffered";

/// The baseline of `workload`'s `×raw` column: `raw-tcp` in the TCP workloads, `raw-tls`
/// in the TLS ones, [`BASELINE`] elsewhere.
pub(crate) fn baseline(workload: Workload) -> &'static str {
    if workload.is_tcp() {
        "raw-tcp"
    } else if workload.is_tls() {
        "raw-tls"
    } else {
        BASELINE
    }
}

/// Every system, in table order; the baseline first.
pub(crate) fn all() -> [&'static dyn System; 26] {
    [
        &raw::Raw::BUFFERED,
        &raw::Raw::UNBUFFERED,
        &aiosock::Aiosock,
        &aiosock::SPINNING,
        &aiosock::READ_ONLY,
        &aiosock::COPYING,
        &aiosock_shm::AiosockVec,
        &aiosock_shm::AiosockVecShm,
        &aiosock_calls::AiosockConcurrent,
        &aiosock_calls::AiosockStream,
        &aiosock_calls::AiosockManual,
        &tokio_unix_ipc::TokioUnixIpc,
        &ipc_channel::IpcChannel,
        &iceoryx2::Iceoryx2,
        &iceoryx2_rtt::Iceoryx2Rtt::POLL,
        &iceoryx2_rtt::Iceoryx2Rtt::WAIT,
        &tarpc::Tarpc,
        &remoc::Remoc,
        &aiosock_pool::AiosockPool,
        &aiosock_pool::AiosockPoolMap,
        &aiosock_pool::PoolManual,
        &raw_tcp::RawTcp,
        &aiosock_net::AiosockNet::TCP,
        &raw_tls::RawTls,
        &aiosock_net::AiosockNet::TLS,
        &tarpc_tls::TarpcTls,
    ]
}

/// The system named `name`.
pub(crate) fn by_name(name: &str) -> Option<&'static dyn System> {
    all().into_iter().find(|s| s.name() == name)
}

/// The error for a message the role did not expect.
fn unexpected(what: &str, msg: Option<&crate::msg::Msg>) -> BoxError {
    match msg {
        Some(msg) => format!("expected {what}, got {}", crate::msg::describe(msg)).into(),
        None => format!("expected {what}, but the peer closed").into(),
    }
}

/// The parent's side of a connection handed to the child as its stdin: one end of a
/// `std` socketpair here, the other there. `spawn` drops the command, and with it this
/// process's copy of the child's end.
fn stdin_socket(mut child: ChildCmd) -> Result<(UnixStream, std::process::Child), BoxError> {
    let (mine, theirs) = UnixStream::pair()?;
    child
        .command_mut()
        .stdin(Stdio::from(OwnedFd::from(theirs)));
    Ok((mine, child.spawn()?))
}

/// The child's side of [`stdin_socket`].
fn stdin_socket_child() -> Result<UnixStream, BoxError> {
    let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
    Ok(UnixStream::from(fd))
}

/// Runs `f` on a current-thread runtime inside a `LocalSet`, as every async system's calls
/// roles do (see [`crate::calls`]).
fn on_local_runtime<F: Future>(f: F) -> Result<F::Output, BoxError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(tokio::task::LocalSet::new().block_on(&runtime, f))
}

/// A `std` socket as a Tokio one, for the systems that speak over a Tokio stream.
#[cfg(feature = "rpc-peers")]
fn tokio_socket(socket: UnixStream) -> Result<tokio::net::UnixStream, BoxError> {
    socket.set_nonblocking(true)?;
    Ok(tokio::net::UnixStream::from_std(socket)?)
}
