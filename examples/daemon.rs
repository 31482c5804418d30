//! A daemon and the clients that come and go: the server binds a named Unix socket (mode
//! 0600), admits only peers of its own user (the default `AcceptPolicy`, checked with the
//! peer's credentials from the kernel before anything is written to it) and serves each
//! client in a task. Three clients, started independently of it (plain processes that
//! know only the socket's path), connect, make calls and leave; the server tells each who
//! it is, from its credentials.
//!
//! `cargo run --example daemon` runs the server, which starts the three clients (this same
//! program, run with `--client N <path>`) and stops once they are done. Started by hand,
//! `daemon --client 1 <path>` connects to a running server.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aiosock::{AcceptPolicy, Listener, PeerCred};

/// From a client to the daemon.
#[aiosock::protocol]
#[derive(Debug)]
pub enum Ask {
    /// Answered with the daemon's running total, after adding `n`.
    #[reply(u64)]
    Add(u64),
    /// Answered with what the daemon knows of the caller: its pid and uid.
    #[reply(String)]
    WhoAmI,
}

/// The daemon sends its clients nothing on its own: its answers are replies.
#[aiosock::protocol]
#[derive(Debug)]
pub enum Nothing {
    /// Never sent.
    Never,
}

impl NothingHandler for () {
    async fn on_never(&mut self) {}
}

/// Serves one client; the total is the daemon's, shared by all.
struct Session {
    peer: PeerCred,
    total: Arc<AtomicU64>,
}

impl AskHandler for Session {
    async fn on_add(&mut self, n: u64) -> u64 {
        self.total.fetch_add(n, Ordering::Relaxed) + n
    }

    async fn on_who_am_i(&mut self) -> String {
        format!("pid {} uid {}", self.peer.pid(), self.peer.uid())
    }
}

async fn client(number: u64, path: &Path) -> Result<(), Box<dyn Error>> {
    let end = aiosock::connect::<Ask, Nothing>(path).await?;
    let (tx, rx) = end.into_split();
    let replies = tokio::spawn(rx.serve(()));
    let ask = AskClient::new(tx);
    let me = ask.who_am_i().await?;
    let total = ask.add(number * 10).await?;
    println!(
        "client {number} (pid {}): the daemon sees {me}; total now {total}",
        std::process::id()
    );
    drop(ask);
    replies.await??;
    Ok(())
}

async fn server(path: PathBuf) -> Result<(), Box<dyn Error>> {
    // Mode 0600 from the moment the file exists; only this user may connect.
    let listener = Listener::<Nothing, Ask>::bind(&path)?.with_policy(AcceptPolicy::same_user());
    println!(
        "daemon {}: listening at {}",
        std::process::id(),
        path.display()
    );
    let exe = std::env::current_exe()?;
    let mut clients = Vec::new();
    for number in 1..=3 {
        // Independent processes: they inherit nothing of aiosock's, only the path.
        let child = Command::new(&exe)
            .arg("--client")
            .arg(number.to_string())
            .arg(&path)
            .spawn()?;
        clients.push(child);
    }
    let total = Arc::new(AtomicU64::new(0));
    let mut sessions = tokio::task::JoinSet::new();
    for _ in 0..clients.len() {
        let (end, peer) = listener.accept().await?;
        println!(
            "daemon: accepted pid {} (uid {}, gid {})",
            peer.pid(),
            peer.uid(),
            peer.gid()
        );
        let session = Session {
            peer,
            total: total.clone(),
        };
        sessions.spawn(end.serve(session));
    }
    while let Some(served) = sessions.join_next().await {
        served??;
    }
    for mut child in clients {
        if !child.wait()?.success() {
            return Err("a client failed".into());
        }
    }
    let total = total.load(Ordering::Relaxed);
    println!(
        "daemon: all clients done, total {total}; {} refused",
        listener.refused()
    );
    drop(listener); // removes the socket file
    if total != 60 {
        return Err(format!("expected a total of 60, got {total}").into());
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let runtime = tokio::runtime::Runtime::new()?;
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, number, path] = &args[..]
        && flag == "--client"
    {
        return runtime.block_on(client(number.parse()?, Path::new(path)));
    }
    let path = std::env::temp_dir().join(format!("aiosock-daemon-{}.sock", std::process::id()));
    runtime.block_on(server(path))
}
