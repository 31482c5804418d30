//! A large-buffer pipeline: the parent renders frames of 4 MiB straight into shared
//! memory (`aiosock::ShmBuf`), freezes them (sealed: nobody can change them any more) and
//! sends them to a worker, which reads each in place, with no copy through the socket,
//! and answers its checksum. Both are this same program; the worker runs with `--worker`.
//!
//! `cargo run --release --example shm_pipeline [frames]`

use std::error::Error;
use std::process::Command;
use std::time::Instant;

use aiosock::{Shm, ShmBuf};

const FRAME: usize = 4 << 20;

/// From the parent to the worker.
#[aiosock::protocol]
#[derive(Debug)]
pub enum Stage {
    /// Answered with the frame's checksum.
    #[reply(u64)]
    Frame {
        /// Frame number.
        seq: u64,
        /// Its pixels, in sealed shared memory.
        pixels: Shm,
    },
}

/// What a worker sends on its own: nothing (its answers travel as replies).
#[aiosock::protocol]
#[derive(Debug)]
pub enum Nothing {
    /// Never sent.
    Never,
}

impl NothingHandler for () {
    async fn on_never(&mut self) {}
}

/// A checksum over 8-byte words.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.chunks_exact(8).fold(0u64, |sum, w| {
        sum.rotate_left(5) ^ u64::from_le_bytes(w.try_into().unwrap_or_default())
    })
}

struct Reader;

impl StageHandler for Reader {
    async fn on_frame(&mut self, _seq: u64, pixels: Shm) -> u64 {
        checksum(&pixels)
    }
}

fn worker() -> Result<(), Box<dyn Error>> {
    let end = aiosock::inherited::<Nothing, Stage>()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            end.serve(Reader).await?;
            Ok(())
        })
}

/// Renders frame `seq` in place.
fn render(seq: u64) -> Result<Shm, aiosock::Error> {
    let mut buf = ShmBuf::new(FRAME)?;
    for (i, word) in buf.chunks_exact_mut(8).enumerate() {
        word.copy_from_slice(&(seq << 32 | i as u64).to_le_bytes());
    }
    buf.freeze()
}

fn main() -> Result<(), Box<dyn Error>> {
    if std::env::args().any(|arg| arg == "--worker") {
        return worker();
    }
    let frames: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(64);
    let (here, there) = aiosock::pair::<Stage, Nothing>()?;
    tokio::runtime::Runtime::new()?.block_on(async move {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("--worker");
        let mut child = aiosock::spawn(cmd, there)?;
        let (tx, rx) = here.into_split();
        let replies = tokio::spawn(rx.serve(()));
        let stage = StageClient::new(tx);
        let start = Instant::now();
        // Two frames in flight: the next renders while the worker reads the last.
        let mut pending = std::collections::VecDeque::new();
        for seq in 0..frames {
            let pixels = render(seq)?;
            let expected = checksum(&pixels);
            let stage = stage.clone();
            pending.push_back(tokio::spawn(async move {
                (expected, stage.frame(seq, pixels).await)
            }));
            if pending.len() > 2
                && let Some(call) = pending.pop_front()
            {
                let (expected, got) = call.await?;
                if got? != expected {
                    return Err("a frame changed on its way".into());
                }
            }
        }
        for call in pending {
            let (expected, got) = call.await?;
            if got? != expected {
                return Err("a frame changed on its way".into());
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let mib = (frames as usize * FRAME) as f64 / (1 << 20) as f64;
        println!(
            "{frames} frames of 4 MiB rendered in place, sent and checked in {secs:.3} s: {:.0} MiB/s",
            mib / secs
        );
        drop(stage);
        replies.await??;
        let status = child.wait().await?;
        println!("worker exited: {status}");
        if !status.success() {
            return Err("the worker failed".into());
        }
        Ok(())
    })
}
