//! The protocol between the process tests and the `worker` binary, and helpers to run it.

use std::path::Path;
use std::process::Command;

/// What a test (the parent) sends to a worker.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Answered with `Reply::Echo` carrying the same id and data.
    Echo {
        /// Chosen by the sender; comes back unchanged.
        id: u64,
        /// Comes back unchanged.
        data: Vec<u8>,
    },
    /// One of a numbered series: the worker checks that they arrive as 0, 1, 2, … and
    /// answers `Reply::Counted` with the total when the parent closes.
    Count(u64),
    /// Answered with `Reply::Items(0..n)` followed by `Reply::StreamDone`.
    Stream {
        /// How many items.
        n: u64,
    },
    /// Answered with `Reply::Fds`: the descriptors the worker had when it started.
    ListFds,
}

/// What a worker sends back.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The answer to `Request::Echo`.
    Echo {
        /// The request's id.
        id: u64,
        /// The request's data.
        data: Vec<u8>,
    },
    /// Sent once the parent closed: how many `Count`s arrived, all in order.
    Counted(u64),
    /// One item of a `Stream`.
    Item(u64),
    /// The end of a `Stream`.
    StreamDone,
    /// The descriptors open when the worker started, with what each points at.
    Fds(Vec<(i32, String)>),
}

/// A protocol no test parent speaks: the `mismatch` worker uses it.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stranger {
    /// Anything.
    Hello(String),
}

/// The exit code of the `mismatch` worker when its first `recv` gave `ProtocolMismatch`.
pub const EXIT_MISMATCH: i32 = 3;

/// The descriptors open in this process, with their link targets, leaving out the one
/// used to list them.
pub fn open_fds() -> Vec<(i32, String)> {
    let mut fds = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return fds;
    };
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let target = std::fs::read_link(entry.path())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        // The directory being listed shows up as its own descriptor.
        if target.starts_with("/proc/") && target.ends_with("/fd") || target.is_empty() {
            continue;
        }
        fds.push((fd, target));
    }
    fds.sort();
    fds
}

/// A `Command` for the worker binary at `exe` in `mode`.
pub fn worker(exe: &str, mode: &str) -> Command {
    let mut cmd = Command::new(Path::new(exe));
    cmd.arg(mode);
    cmd
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}
