//! The systems under test, one module each, behind one trait.
//!
//! Each system sets up its connection in its own way (how a user of it would), and
//! implements the four [`Role`]s over it: `send`, `recv`, `ping` and `echo`, with the same
//! shape in every module. Messages come from [`Source`](crate::msg::Source) and are checked
//! by [`Checker`](crate::msg::Checker), the same for all.

mod aiosock;
mod ipc_channel;
mod raw;
mod tokio_unix_ipc;

use crate::BoxError;
use crate::process::ChildCmd;
use crate::workload::{Outcome, Role, Workload};

/// One IPC system under test.
pub(crate) trait System: Sync + std::fmt::Debug {
    /// The name in the table and on the command lines.
    fn name(&self) -> &'static str;

    /// Why the system sits out `workload` (shown as n/a), if it does.
    fn unsupported(&self, workload: Workload) -> Option<&'static str> {
        let _ = workload;
        None
    }

    /// Whether the system makes a system call (or more) per message on each side. Such
    /// systems move a tenth of the messages in the message-count workloads (see
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

/// The baseline every ratio is taken against.
pub(crate) const BASELINE: &str = "raw-buffered";

/// Every system, in table order; the baseline first.
pub(crate) fn all() -> [&'static dyn System; 5] {
    [
        &raw::Raw::BUFFERED,
        &raw::Raw::UNBUFFERED,
        &aiosock::Aiosock,
        &tokio_unix_ipc::TokioUnixIpc,
        &ipc_channel::IpcChannel,
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
