//! A sandboxed worker that reads a file it could never open: the parent opens it, removes
//! its path, and hands the worker only the open descriptor (`aiosock::Fd`). The worker
//! (this same program, re-run with `--worker`) counts the file's lines and words.
//!
//! A real sandbox would also take the worker's rights away (a seccomp filter, a new user
//! or mount namespace, `landlock`); whatever it takes, a descriptor the parent opened
//! still reads.
//!
//! `cargo run --example sandboxed_file`

use std::error::Error;
use std::io::{Read, Seek, Write};
use std::process::Command;

/// What the parent asks the worker.
#[aiosock::protocol]
#[derive(Debug)]
pub enum Job {
    /// Answered with the file's line and word counts.
    #[reply(Result<(usize, usize), String>)]
    Count(aiosock::Fd),
}

/// The worker holds no paths, only what it is handed.
struct Counter;

impl JobHandler for Counter {
    async fn on_count(&mut self, file: aiosock::Fd) -> Result<(usize, usize), String> {
        let mut text = String::new();
        std::fs::File::from(file)
            .read_to_string(&mut text)
            .map_err(|e| e.to_string())?;
        Ok((text.lines().count(), text.split_whitespace().count()))
    }
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

fn worker() -> Result<(), Box<dyn Error>> {
    let end = aiosock::inherited::<Nothing, Job>()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            end.serve(Counter).await?;
            Ok(())
        })
}

fn main() -> Result<(), Box<dyn Error>> {
    if std::env::args().any(|arg| arg == "--worker") {
        return worker();
    }
    // A file only the parent ever names: created, filled, then unlinked.
    let path = std::env::temp_dir().join(format!("aiosock-sandbox-{}.txt", std::process::id()));
    let mut file = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    file.write_all(b"the parent opened this file\nand handed the worker its descriptor\n")?;
    file.rewind()?;
    std::fs::remove_file(&path)?;
    println!(
        "parent {}: opened {} and removed its path",
        std::process::id(),
        path.display()
    );

    let (here, there) = aiosock::pair::<Job, Nothing>()?;
    tokio::runtime::Runtime::new()?.block_on(async move {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("--worker");
        let mut child = aiosock::spawn(cmd, there)?;
        println!("worker {} started with no path to the file", child.id());
        let (tx, rx) = here.into_split();
        let replies = tokio::spawn(rx.serve(()));
        let jobs = JobClient::new(tx);
        let (lines, words) = jobs.count(file.into()).await??;
        println!("the worker counted {lines} lines and {words} words");
        drop(jobs);
        replies.await??;
        let status = child.wait().await?;
        println!("worker exited: {status}");
        if !status.success() || (lines, words) != (2, 11) {
            return Err("the worker did not read the file".into());
        }
        Ok(())
    })
}
