//! The processes of a run: the child's command line and report, watchdogs on every side,
//! and peak RSS.
//!
//! The benchmark's main process only orchestrates: each run gets a fresh parent process
//! ([`run_isolated`], `aiosock-benches __run ...`), so that no run inherits another's heap
//! or threads, and both directions start from the same state. That parent re-executes this binary (`std::env::current_exe()`) as
//! `aiosock-benches __child SYSTEM TIMEOUT_S ROLE...`, with the child's stdout on a pipe.
//! The pool workload's parent starts several such children ([`ChildCmd::workers`]), all
//! printing to the same pipe, of whose reports the first is read. The child plays its
//! role, prints one report line ([`ChildReport`]) and exits 0; on any
//! failure it prints the error to stderr and exits 1. Nothing can hang: the child exits
//! with status 2 after its timeout, and the parent's [`Watchdog`] kills the child after
//! the same timeout and ends the whole benchmark if the parent itself is still stuck.

use std::ffi::OsString;
use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::BoxError;
use crate::workload::{Outcome, Role};

/// The first argument of a child process.
pub(crate) const CHILD_ARG: &str = "__child";

/// The first argument of a run's parent process (see [`run_isolated`]).
pub(crate) const RUN_ARG: &str = "__run";

/// How long the parent waits for itself to get unstuck after killing a hung child.
const GRACE: Duration = Duration::from_secs(10);

/// The command that starts the child of one run, handed to [`System::parent`](crate::systems::System::parent).
///
/// A system adds what its connection needs (an environment variable, a descriptor) and
/// starts it with [`ChildCmd::spawn`] or [`ChildCmd::spawn_with`], which put the child
/// under the run's watchdog.
#[derive(Debug)]
pub(crate) struct ChildCmd {
    command: Command,
    /// A copy of the child's stdout, for [`ChildCmd::workers`]; dropped with the command.
    report: std::io::PipeWriter,
    watch: Watch,
}

impl ChildCmd {
    /// The command, to add to.
    pub(crate) fn command_mut(&mut self) -> &mut Command {
        &mut self.command
    }

    /// Starts the child with `std`, and drops the command (and any descriptor it holds for
    /// the child) at once.
    pub(crate) fn spawn(self) -> Result<std::process::Child, BoxError> {
        self.spawn_with(|mut command| Ok(command.spawn()?), std::process::Child::id)
    }

    /// Starts the child with `spawn` (for a system's own spawn function); `pid` tells its id.
    pub(crate) fn spawn_with<C>(
        self,
        spawn: impl FnOnce(Command) -> Result<C, BoxError>,
        pid: impl FnOnce(&C) -> u32,
    ) -> Result<C, BoxError> {
        let child = spawn(self.command)?;
        self.watch.add(pid(&child));
        Ok(child)
    }

    /// For a run with several children (the pool workload's workers): commands to start
    /// each, all alike. Drops this command (not the copy of the report pipe the workers
    /// share, which goes with the [`Workers`]).
    pub(crate) fn workers(self) -> Workers {
        Workers {
            program: self.command.get_program().to_owned(),
            args: self.command.get_args().map(ToOwned::to_owned).collect(),
            report: self.report,
            watch: self.watch,
        }
    }
}

/// The commands that start the several children of one run, each the child of
/// [`ChildCmd`] with its stdout on the run's report pipe. Every child started must be
/// [watched](Workers::watch), so that the run's watchdog can kill it; the run reads the
/// children's reports once the `Workers` (and every child) are gone.
#[derive(Debug)]
pub(crate) struct Workers {
    program: OsString,
    args: Vec<OsString>,
    report: std::io::PipeWriter,
    watch: Watch,
}

impl Workers {
    /// The command of one child. Its stdout is a copy of the report pipe, or nothing if
    /// the copy cannot be made (a report from another child is enough).
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args).stdin(Stdio::null());
        match self.report.try_clone() {
            Ok(report) => command.stdout(report),
            Err(_) => command.stdout(Stdio::null()),
        };
        command
    }

    /// Puts the started child `pid` under the run's watchdog.
    pub(crate) fn watch(&self, pid: u32) {
        self.watch.add(pid);
    }
}

/// Waits for a child started with `std` and checks that it succeeded.
pub(crate) fn wait_std(child: &mut std::process::Child) -> Result<(), BoxError> {
    check_status(child.wait()?)
}

/// An error unless the child exited with status 0.
pub(crate) fn check_status(status: ExitStatus) -> Result<(), BoxError> {
    if status.success() {
        Ok(())
    } else {
        Err(format!("the child failed ({status})").into())
    }
}

/// What the child reports on its stdout: one line.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ChildReport {
    /// The child's [`Outcome::elapsed`] when it received.
    pub(crate) elapsed: Option<Duration>,
    /// The child's peak resident set size (`VmHWM`), in KiB.
    pub(crate) peak_rss_kib: Option<u64>,
}

impl ChildReport {
    /// The line the child prints.
    pub(crate) fn line(&self) -> String {
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        format!(
            "report elapsed_ns={} peak_rss_kib={}",
            opt(self.elapsed.map(|d| d.as_nanos() as u64)),
            opt(self.peak_rss_kib),
        )
    }

    /// Parses the child's stdout.
    pub(crate) fn parse(text: &str) -> Result<ChildReport, String> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("report "))
            .ok_or_else(|| format!("the child printed no report ({text:?})"))?;
        let mut report = ChildReport::default();
        for field in line.split_whitespace() {
            let (key, value) = field.split_once('=').ok_or("bad report field")?;
            let value = match value {
                "-" => None,
                v => Some(v.parse::<u64>().map_err(|e| format!("bad {key}: {e}"))?),
            };
            match key {
                "elapsed_ns" => report.elapsed = value.map(Duration::from_nanos),
                "peak_rss_kib" => report.peak_rss_kib = value,
                _ => return Err(format!("unknown report field {key}")),
            }
        }
        Ok(report)
    }
}

/// The child's side of a run: the command line after [`CHILD_ARG`].
#[derive(Debug)]
pub(crate) struct ChildArgs {
    pub(crate) system: String,
    pub(crate) timeout: Duration,
    pub(crate) role: Role,
}

impl ChildArgs {
    /// Parses `SYSTEM TIMEOUT_S ROLE...`.
    pub(crate) fn parse(args: &[String]) -> Result<ChildArgs, String> {
        let [system, timeout, role @ ..] = args else {
            return Err(format!("bad child arguments {args:?}"));
        };
        Ok(ChildArgs {
            system: system.clone(),
            timeout: Duration::from_secs(timeout.parse().map_err(|e| format!("timeout: {e}"))?),
            role: Role::parse(role)?,
        })
    }
}

/// Starts a thread that ends this (child) process with status 2 after `timeout`.
pub(crate) fn child_watchdog(timeout: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(timeout);
        eprintln!("aiosock-benches child: timed out after {timeout:?}");
        std::process::exit(2);
    });
}

/// Runs this binary with `args` as the parent process of one run and returns its stdout.
/// It is killed after `timeout`; its failure is the `error ...` line it printed.
pub(crate) fn run_isolated(args: &[String], timeout: Duration) -> Result<String, String> {
    let mut command = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
    command
        .arg(RUN_ARG)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut watchdog = Watchdog::start(timeout);
    let mut child = command
        .spawn()
        .map_err(|e| format!("starting the run: {e}"))?;
    watchdog.watch.add(child.id());
    let mut text = String::new();
    let read = child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_string(&mut text);
    let status = child.wait();
    if watchdog.finish() {
        return Err("timed out; the run was killed".into());
    }
    read.map_err(|e| format!("reading the run's output: {e}"))?;
    let status = status.map_err(|e| format!("waiting for the run: {e}"))?;
    if !status.success() {
        let error = text.lines().find_map(|l| l.strip_prefix("error "));
        return Err(error.map_or_else(|| format!("the run failed ({status})"), str::to_string));
    }
    Ok(text)
}

/// `error` followed by each of its sources (`: ` between them, a source left out where its
/// text is already in the one before), so that a report names the cause and not only what
/// failed: aiosock's errors, as the style asks, leave their cause to `source()`.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// Peak resident set size of this process (`VmHWM` in `/proc/self/status`), in KiB.
pub(crate) fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The parent's side of one run: starts the child command, and afterwards collects the
/// child's report.
#[derive(Debug)]
pub(crate) struct Run {
    reader: std::io::PipeReader,
    watchdog: Watchdog,
}

impl Run {
    /// Prepares the child command for `system` playing `role`, and arms the watchdog.
    pub(crate) fn start(
        system: &str,
        role: &Role,
        timeout: Duration,
    ) -> Result<(Run, ChildCmd), BoxError> {
        let (reader, writer) = std::io::pipe()?;
        let report = writer.try_clone()?;
        let mut command = Command::new(std::env::current_exe()?);
        command
            .arg(CHILD_ARG)
            .arg(system)
            .arg(timeout.as_secs().to_string())
            .args(role.to_args())
            .stdin(Stdio::null())
            .stdout(writer);
        let watchdog = Watchdog::start(timeout);
        let child = ChildCmd {
            command,
            report,
            watch: watchdog.watch.clone(),
        };
        Ok((Run { reader, watchdog }, child))
    }

    /// Ends the run after the parent's role returned `parent`: kills the child if the
    /// parent failed, reads the child's report, and disarms the watchdog.
    pub(crate) fn finish(
        mut self,
        parent: Result<Outcome, BoxError>,
    ) -> Result<(Outcome, ChildReport), String> {
        if parent.is_err() {
            self.watchdog.watch.kill_living();
        }
        // EOF once the children exited (the parent's copies of the pipe went with the
        // command, or with the `Workers`).
        let mut text = String::new();
        let read = self.reader.read_to_string(&mut text);
        let timed_out = self.watchdog.finish();
        if timed_out {
            return Err("timed out; the child was killed".into());
        }
        let parent = parent.map_err(|e| error_chain(&*e))?;
        read.map_err(|e| format!("reading the child's report: {e}"))?;
        Ok((parent, ChildReport::parse(&text)?))
    }
}

/// The children of one run, by pid, for the watchdog to kill.
#[derive(Debug, Clone, Default)]
struct Watch {
    pids: Arc<Mutex<Vec<u32>>>,
}

impl Watch {
    fn add(&self, pid: u32) {
        self.pids.lock().expect("watch lock").push(pid);
    }

    /// Kills every child of the run (`SIGKILL`).
    fn kill_all(&self) {
        for &pid in self.pids.lock().expect("watch lock").iter() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }

    /// Kills the children not yet reaped, and reaps them (a reaped pid is never signalled,
    /// since it may belong to another process by now).
    fn kill_living(&self) {
        for &pid in self.pids.lock().expect("watch lock").iter() {
            let pid = Pid::from_raw(pid as i32);
            if let Ok(WaitStatus::StillAlive) = waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
            }
        }
    }
}

/// A thread that kills the run's children when the run takes longer than its timeout,
/// and exits the benchmark (status 2) if the parent is still stuck [`GRACE`] later.
#[derive(Debug)]
struct Watchdog {
    watch: Watch,
    done: mpsc::Sender<()>,
    thread: Option<JoinHandle<bool>>,
}

impl Watchdog {
    fn start(timeout: Duration) -> Watchdog {
        let watch = Watch::default();
        let (done, rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn({
            let watch = watch.clone();
            move || match rx.recv_timeout(timeout) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => false,
                Err(RecvTimeoutError::Timeout) => {
                    eprintln!(
                        "aiosock-benches: run timed out after {timeout:?}; killing the child"
                    );
                    watch.kill_all();
                    if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(GRACE) {
                        eprintln!("aiosock-benches: still stuck {GRACE:?} after the kill; exiting");
                        std::process::exit(2);
                    }
                    true
                }
            }
        });
        Watchdog {
            watch,
            done,
            thread: Some(thread),
        }
    }

    /// Disarms the watchdog; whether it had fired.
    fn finish(&mut self) -> bool {
        let _ = self.done.send(());
        self.thread.take().is_some_and(|t| t.join().unwrap_or(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trips() {
        let report = ChildReport {
            elapsed: Some(Duration::from_nanos(12345)),
            peak_rss_kib: Some(2048),
        };
        let text = format!("noise\n{}\n", report.line());
        assert_eq!(ChildReport::parse(&text), Ok(report));
        assert_eq!(
            ChildReport::parse("report elapsed_ns=- peak_rss_kib=-"),
            Ok(ChildReport::default())
        );
        assert!(ChildReport::parse("").is_err());
    }

    #[test]
    fn error_chains_name_every_cause_once() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("invalid message")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let inner = std::io::Error::other("out of descriptors");
        assert_eq!(
            error_chain(&Outer(inner)),
            "invalid message: out of descriptors"
        );
        let plain = std::io::Error::other("broken pipe");
        assert_eq!(error_chain(&plain), "broken pipe");
    }

    #[test]
    fn peak_rss_is_readable() {
        assert!(peak_rss_kib().is_some_and(|kib| kib > 0));
    }
}
