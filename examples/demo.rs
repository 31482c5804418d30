//! The Python package's two-process demo, in Rust.
//!
//! A main process and an IO process, each with its own runtime, talk over one socketpair.
//! The example re-executes itself as the IO process (with `--io-process`). The IO process
//! watches every message with an observer (the Python read callback), awaits the first one
//! with `recv().await`, and serves the rest with the generated handler trait.
//!
//! Run it with `cargo run --example demo`.

use std::error::Error;
use std::process::Command;
use std::time::Duration;

/// What the main process sends to the IO process.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq)]
pub enum ToIo {
    /// Say hello.
    Greet {
        /// Who is greeting.
        name: String,
    },
    /// Square a number.
    Square(u64),
    /// Some bytes (sent as one byte string, not byte by byte).
    Blob(Vec<u8>),
    /// Finish.
    Stop,
}

/// What the IO process answers.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq)]
pub enum FromIo {
    /// The answer to `Greet`.
    Greeting {
        /// The IO process's id.
        pid: u32,
        /// The greeting.
        text: String,
    },
    /// The answer to `Square`.
    Squared {
        /// The number.
        n: u64,
        /// Its square.
        square: u64,
    },
    /// The answer to `Blob`.
    Received {
        /// How many bytes arrived.
        len: usize,
        /// Their sum, as a checksum.
        sum: u64,
    },
    /// The answer to `Stop`.
    Bye,
}

/// Hang guard: the demo never waits longer than this for one step.
const STEP: Duration = Duration::from_secs(20);

fn main() -> Result<(), Box<dyn Error>> {
    if std::env::args().nth(1).as_deref() == Some("--io-process") {
        io_process()
    } else {
        main_process()
    }
}

fn main_process() -> Result<(), Box<dyn Error>> {
    let me = std::process::id();
    println!("[main {me}] starting");
    // Like Python's aiosockpair(): made before any event loop exists.
    let (here, there) = aiosock::pair::<ToIo, FromIo>()?;

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let mut command = Command::new(std::env::current_exe()?);
        command.arg("--io-process");
        let mut child = aiosock::spawn(command, there)?;
        println!("[main {me}] started the IO process {}", child.id());

        let (tx, mut rx) = here.into_split();
        let requests = [
            ToIo::Greet {
                name: "main".into(),
            },
            ToIo::Square(7),
            ToIo::Square(12),
            ToIo::Blob((0..=255).collect()),
            ToIo::Stop,
        ];
        for request in requests {
            println!("[main {me}] send {}", short(&request));
            tx.send(request).await?;
            let reply = tokio::time::timeout(STEP, rx.recv()).await??;
            match reply {
                Some(reply) => println!("[main {me}] got  {reply:?}"),
                None => return Err("the IO process closed early".into()),
            }
        }
        // Closing our side ends the IO process's serve loop.
        drop(tx);
        let rest = tokio::time::timeout(STEP, rx.recv()).await??;
        assert!(rest.is_none(), "nothing follows Bye");
        let status = tokio::time::timeout(STEP, child.wait()).await??;
        println!("[main {me}] the IO process exited: {status}");
        if status.success() {
            Ok(())
        } else {
            Err(format!("the IO process failed: {status}").into())
        }
    })
}

/// The IO process's handler: its state lives here, not in callback arguments.
struct Io {
    pid: u32,
    out: aiosock::Sender<FromIo>,
}

impl ToIoHandler for Io {
    async fn on_greet(&mut self, name: String) {
        let text = format!("hello {name}, from the handler");
        self.reply(FromIo::Greeting {
            pid: self.pid,
            text,
        })
        .await;
    }

    async fn on_square(&mut self, n: u64) {
        self.reply(FromIo::Squared { n, square: n * n }).await;
    }

    async fn on_blob(&mut self, data: Vec<u8>) {
        let sum = data.iter().map(|&b| u64::from(b)).sum();
        self.reply(FromIo::Received {
            len: data.len(),
            sum,
        })
        .await;
    }

    async fn on_stop(&mut self) {
        self.reply(FromIo::Bye).await;
    }

    async fn closed(&mut self) {
        println!("[io   {}] the main process closed its side", self.pid);
    }
}

impl Io {
    async fn reply(&self, msg: FromIo) {
        if let Err(e) = self.out.send(msg).await {
            eprintln!("[io   {}] could not reply: {e}", self.pid);
        }
    }
}

fn io_process() -> Result<(), Box<dyn Error>> {
    let pid = std::process::id();
    println!("[io   {pid}] started");
    // Adopt the end the parent passed, before the runtime starts (the Python `init()`).
    let end = aiosock::inherited::<FromIo, ToIo>()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (tx, mut rx) = end.into_split();
        // The read callback: sees every message, whoever receives it.
        rx.observe(move |msg: &ToIo| println!("[io   {pid}] callback saw {}", short(msg)));

        // Await the first message directly...
        let first = tokio::time::timeout(STEP, rx.recv()).await??;
        println!("[io   {pid}] awaited {:?}", first.as_ref().map(short));
        let mut io = Io { pid, out: tx };
        if let Some(first) = first {
            aiosock::Dispatch::dispatch(first, &mut io).await;
        }
        // ...then hand the rest to the handler until the main process closes.
        let io = rx.serve(io).await?;
        io.out.flush().await.ok();
        println!("[io   {pid}] done");
        Ok(())
    })
}

/// A one-line description that keeps blobs short.
fn short(msg: &ToIo) -> String {
    match msg {
        ToIo::Blob(data) => format!("Blob({} bytes)", data.len()),
        other => format!("{other:?}"),
    }
}
