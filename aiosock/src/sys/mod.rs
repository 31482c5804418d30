//! The OS layer: the only module with raw descriptors and `unsafe`.
//!
//! Everything above it works with `OwnedFd`/`BorrowedFd` and the safe functions here, and
//! gets `io::Error`s back. Every descriptor made here is close-on-exec (`SOCK_CLOEXEC`),
//! non-blocking, and every write uses `MSG_NOSIGNAL`, so a closed peer is an `EPIPE` error,
//! never a `SIGPIPE`.
//!
//! One file a concern:
//!
//! - [`socket`]: socket pairs and their I/O (send, receive into spare capacity, shutdown,
//!   probes, blocking waits where no runtime is left);
//! - [`named`]: named sockets: binding a path with its mode set before anyone can see it,
//!   or an abstract name; accepting with the peer's credentials; connecting;
//! - [`tcp`]: TCP keepalive timings;
//! - [`reactor`]: registration with the Tokio reactor;
//! - [`registry`]: the process-wide registry of live sockets, which a forked child lets go of;
//! - [`held`]: the bytes of a queued message's large byte fields, sent from its own
//!   buffers;
//! - [`shm`]: sealed shared memory: memfds, their seals, and mappings;
//! - [`process`]: fork, exit, the parent-death signal, pidfds, the inherited descriptor and
//!   the exit hook;
//! - [`alloc`]: a counting allocator for the tests and the fuzz harness.
//!
//! Linux only: pidfds, `PR_SET_PDEATHSIG`, `/proc` and `.init_array` are Linux features.

#![allow(unsafe_code)]

pub(crate) mod alloc;
mod held;
mod named;
mod process;
mod reactor;
mod registry;
mod shm;
mod socket;
mod tcp;

pub(crate) use held::{Held, Holding, Kept, Lendable, Lent, LentFd, Planned, Span};
pub(crate) use named::{
    MAX_ADDRESS_LEN, SocketFile, accept, bind_abstract, bind_path, connect_abstract, connect_path,
    effective_uid, peer_cred,
};
pub(crate) use process::{
    ENV_FD, Fork, Pidfd, at_exit, child_subreaper, die_with_parent, die_with_parent_in_child,
    exit_now, fork_plain, fork_single_threaded, inherit_in_child, kill_child, raise_nofile,
    reap_blocking, set_child_subreaper, take_inherited, try_reap,
};
pub(crate) use reactor::{SharedFd, register, register_owned};
pub(crate) use registry::{Socket, release_fd, release_other_sockets};
pub(crate) use shm::{
    Mapping, allocated_bytes, file_size, first_hole, fully_sealed, memfd, seal, seals,
};
pub(crate) use socket::{
    MAX_FDS_PER_SEND, advise_free, is_refused_for_now, is_unix_stream, peek, peer_can_receive,
    poll_writable, recv, recv_spare, recv_spare_blocking, send, send_vectored_with_fds,
    set_nonblocking, shutdown_read, shutdown_write, socketpair,
};
pub(crate) use tcp::set_keepalive;

/// Held by the unit tests that spawn a process and by those that need a socket to be
/// really closed when they drop it: a process forked meanwhile would hold a copy of it
/// until its `exec`.
#[cfg(test)]
pub(crate) static SPAWN_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
