//! aiosock's cost per message in instructions, for `valgrind --tool=callgrind`, which the
//! benchmark itself cannot run under (valgrind does not know `pidfd_open`, so `spawn`
//! fails there). Both ends are in this one process, on two threads with a current-thread
//! runtime each; what one thread spends per message is the difference of two runs with
//! different counts, divided by the difference of the counts (so that setup cancels out):
//!
//! ```sh
//! cargo build --release -p aiosock-benches --example per_message
//! for n in 100000 300000; do
//!   valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=cg.small.$n \
//!     target/release/examples/per_message small $n
//! done
//! grep summary cg.small.*-01 cg.small.*-02   # -01: the sending thread, -02: the receiving one
//! ```
//!
//! Workloads: `small` (one-way `Ping(u64)` messages, as in the benchmark's `small`), `fd`
//! (one-way messages each with a new duplicate of `/dev/null`, as in `fds`; the receiver
//! closes each) and `call` (calls of `Square(u64)` with replies, 64 tasks with one call in
//! flight each; `-01` is the client, `-02` the server).

use std::os::fd::AsFd;

use tokio::runtime::{Builder, Runtime};

#[aiosock::protocol]
#[derive(Debug)]
enum Stream {
    Ping(u64),
    File { file: aiosock::Fd, seq: u64 },
}

#[aiosock::protocol]
#[derive(Debug)]
enum Math {
    #[reply(u64)]
    Square(u64),
}

#[aiosock::protocol]
#[derive(Debug)]
enum Quiet {
    Nothing,
}

struct Squarer;

impl MathHandler for Squarer {
    async fn on_square(&mut self, n: u64) -> u64 {
        n.wrapping_mul(n)
    }
}

struct Silent;

impl QuietHandler for Silent {
    async fn on_nothing(&mut self) {}
}

fn runtime() -> Runtime {
    Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// `n` one-way messages (with a descriptor each if `fds`), checked by their sum.
fn stream(n: u64, fds: bool) {
    let (here, there) = aiosock::pair::<Stream, Stream>().expect("pair");
    let receiving = std::thread::spawn(move || {
        runtime().block_on(async move {
            let (_tx, mut rx) = there.into_split();
            let mut sum = 0u64;
            while let Some(msg) = rx.recv().await.expect("recv") {
                sum = sum.wrapping_add(match msg {
                    Stream::Ping(n) => n,
                    Stream::File { file, seq } => {
                        drop(file);
                        seq
                    }
                });
            }
            sum
        })
    });
    let null = std::fs::File::open("/dev/null").expect("open /dev/null");
    runtime().block_on(async move {
        let (tx, _rx) = here.into_split();
        for seq in 0..n {
            let msg = if fds {
                let file = null.as_fd().try_clone_to_owned().expect("dup");
                Stream::File {
                    file: file.into(),
                    seq,
                }
            } else {
                Stream::Ping(seq)
            };
            tx.send(msg).await.expect("send");
        }
        tx.flush().await.expect("flush");
    });
    let sum = receiving.join().expect("receiving thread");
    assert_eq!(
        sum,
        (0..n).fold(0u64, u64::wrapping_add),
        "every message arrived"
    );
}

/// `n` calls, from 64 tasks with one call in flight each, checked by their sum.
fn calls(n: u64) {
    const TASKS: u64 = 64;
    let (here, there) = aiosock::pair::<Math, Quiet>().expect("pair");
    let server = std::thread::spawn(move || {
        runtime().block_on(async move { there.serve(Squarer).await.expect("serve") })
    });
    let local = tokio::task::LocalSet::new();
    let sum = local.block_on(&runtime(), async move {
        let (tx, rx) = here.into_split();
        let replies = tokio::task::spawn_local(rx.serve(Silent));
        let client = MathClient::new(tx);
        let per_task = n / TASKS;
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let client = client.clone();
                tokio::task::spawn_local(async move {
                    let mut sum = 0u64;
                    for i in 0..per_task {
                        let n = task * per_task + i;
                        sum = sum.wrapping_add(client.square(n).await.expect("call"));
                    }
                    sum
                })
            })
            .collect();
        drop(client);
        let mut sum = 0u64;
        for task in tasks {
            sum = sum.wrapping_add(task.await.expect("task"));
        }
        replies.await.expect("replies task").expect("replies");
        sum
    });
    let _handler: Squarer = server.join().expect("server thread");
    let calls = n / TASKS * TASKS;
    let want = (0..calls).fold(0u64, |sum, n| sum.wrapping_add(n.wrapping_mul(n)));
    assert_eq!(sum, want, "every reply arrived");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let workload = args.next().unwrap_or_else(|| "small".to_owned());
    let n: u64 = args
        .next()
        .map(|n| n.parse().expect("a count"))
        .unwrap_or(100_000);
    match workload.as_str() {
        "small" => stream(n, false),
        "fd" => stream(n, true),
        "call" => calls(n),
        other => panic!("unknown workload {other}: small, fd or call"),
    }
}
