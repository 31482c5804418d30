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
    /// Starts the worker's half of a soak: it sends `n` `Reply::Soak` messages made by
    /// [`soak_data`] with `seed`, while it checks the parent's `Request::Soak` messages.
    StartSoak {
        /// How many messages the worker sends.
        n: u64,
        /// The seed of the worker's sizes and contents.
        seed: u64,
    },
    /// One message of the parent's half of a soak: `data` is `soak_data(seed, seq)`.
    Soak {
        /// 0, 1, 2, … in order.
        seq: u64,
        /// The payload, checked by the worker.
        data: Vec<u8>,
    },
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
    /// One message of the worker's half of a soak.
    Soak {
        /// 0, 1, 2, … in order.
        seq: u64,
        /// `soak_data(seed, seq)`.
        data: Vec<u8>,
    },
    /// Sent once the parent closed after a soak: what the worker received, whether all of
    /// it was in order and intact, and its peak resident memory.
    SoakReport {
        /// `Request::Soak` messages received.
        received: u64,
        /// The first problem found, if any.
        problem: Option<String>,
        /// The worker's `VmHWM` in KiB.
        peak_rss_kib: u64,
    },
}

/// Calls from a test (the parent) to a `calls` or `calls-concurrent` worker.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// Answered with `n * n`.
    #[reply(u64)]
    Square(u64),
    /// Answered with `n * n` after `millis` milliseconds.
    #[reply(u64)]
    SlowSquare {
        /// The number.
        n: u64,
        /// How long to sleep first.
        millis: u64,
    },
    /// Never answered: the handler waits forever.
    #[reply(u64)]
    Hold,
    /// The handler panics with this message.
    #[reply(u64)]
    Panic(String),
    /// The handler calls the parent's `Back::Double(n)` and answers with the result plus 1.
    #[reply(u64)]
    AskBack(u64),
    /// Answered with `Ok(n)` for an even `n`, and `Err` naming `n` for an odd one.
    #[reply(Result<u64, String>)]
    Checked(u64),
    /// One-way: counted by the worker.
    Note(u64),
    /// Answered with the sum of the `Note`s received so far.
    #[reply(u64)]
    Notes,
    /// One-way: the handler panics with this message.
    PanicOneWay(String),
    /// Answered with the worker's process id.
    #[reply(u32)]
    Pid,
}

/// Calls from a `calls` worker back to its parent.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Back {
    /// Answered with `2 * n`.
    #[reply(u64)]
    Double(u64),
}

/// The parent's side of `Back`: doubles.
#[derive(Debug, Clone, Copy, Default)]
pub struct Doubler;

impl BackHandler for Doubler {
    async fn on_double(&mut self, n: u64) -> u64 {
        2 * n
    }
}

/// Spawns the worker binary at `exe` in `mode` (`calls` or `calls-concurrent`), serves
/// its calls back with [`Doubler`] in a task, and returns the client for calling it and
/// that task's handle.
pub fn start_calls(
    exe: &str,
    mode: &str,
    config: aiosock::Config,
) -> (
    aiosock::Child,
    AskClient,
    tokio::task::JoinHandle<Result<Doubler, aiosock::Error>>,
) {
    let (here, there) = aiosock::pair::<Ask, Back>().expect("pair");
    let child = aiosock::spawn(worker(exe, mode), there).expect("spawn worker");
    let (tx, rx) = here.with_config(config).into_split();
    (child, AskClient::new(tx), tokio::spawn(rx.serve(Doubler)))
}

/// Lines between two workers that a broker introduced to each other.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chat {
    /// Line number `n` (0, 1, 2, …).
    Line(u64),
}

/// Calls from a test (the parent) to a `resources` worker: descriptors, channel ends and
/// shared memory in messages.
#[aiosock::protocol]
#[derive(Debug)]
pub enum Resources {
    /// Answered with the contents of the file, read from its current offset: the worker
    /// only reads what the parent opened.
    #[reply(Result<String, String>)]
    ReadFile(aiosock::Fd),
    /// One-way: the worker sends the same descriptor back as `Returned::Echo` with the
    /// same `tag` (`pad` is ballast, to make frames large).
    Echo {
        /// Chosen by the parent, comes back unchanged.
        tag: u64,
        /// Comes back.
        fd: aiosock::Fd,
        /// Ignored.
        pad: Vec<u8>,
    },
    /// One-way: the worker drops the descriptors (the hostile-limit tests' message).
    Many(Vec<aiosock::Fd>),
    /// Answered with the buffer's length and [`checksum`].
    #[reply((u64, u64))]
    Sum(aiosock::Shm),
    /// One-way: the worker adds the buffer to a running count (see `Taken`).
    Take(aiosock::Shm),
    /// Answered with the number of `Take`s so far and the sum of their checksums.
    #[reply((u64, u64))]
    Taken,
    /// An end of a pair the parent made. With `speak`, the worker sends `Chat::Line(0..lines)`
    /// on it, closes it and answers `lines`; else it receives every line, checks they come
    /// in order, and answers how many came once the other side closed.
    #[reply(Result<u64, String>)]
    Join {
        /// The worker's end.
        end: aiosock::Endpoint<Chat, Chat>,
        /// Whether this worker speaks or listens.
        speak: bool,
        /// How many lines the speaker sends.
        lines: u64,
    },
    /// Answered with a fresh end, on whose other side the worker then streams
    /// `Chat::Line(0..n)` and closes.
    #[reply(aiosock::Endpoint<Chat, Chat>)]
    Results(u64),
    /// Answered with how many descriptors the worker has open, once everything it sent
    /// back is in the kernel.
    #[reply(usize)]
    OpenFds,
}

/// What a `resources` worker sends its parent on its own.
#[aiosock::protocol]
#[derive(Debug)]
pub enum Returned {
    /// A descriptor from `Resources::Echo`, sent back.
    Echo {
        /// The request's tag.
        tag: u64,
        /// The request's descriptor.
        fd: aiosock::Fd,
    },
}

/// Drops what a `resources` worker sends back (for parents that only make calls).
impl ReturnedHandler for () {
    async fn on_echo(&mut self, _tag: u64, _fd: aiosock::Fd) {}
}

/// A checksum of a buffer's bytes (FNV-1a over 8-byte words, then the tail).
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        hash = (hash ^ u64::from_le_bytes(w)).wrapping_mul(0x0100_0000_01b3);
    }
    for &b in words.remainder() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// `len` bytes that differ for every `seq`, for shared-memory buffers.
pub fn shm_pattern(seq: u64, len: usize) -> Vec<u8> {
    let base = mix(seq);
    (0..len)
        .map(|i| (base.wrapping_add(i as u64 / 8).wrapping_mul(0x9e37_79b9)) as u8)
        .collect()
}

/// The first version of an evolving protocol, for the `evolve v1` worker and the tests
/// that pair it with a newer build (see [`evolve_v2`]).
pub mod evolve_v1 {
    /// From the parent.
    #[aiosock::protocol]
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Evolving {
        /// Counted; the worker reports it with `Report::Pinged`.
        Ping(u64),
        /// Answered with the sum of the pings so far.
        #[reply(u64)]
        Pings,
    }

    /// From the worker.
    #[aiosock::protocol]
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Report {
        /// A ping arrived.
        Pinged(u64),
    }
}

/// A protocol with a variant behind `#[cfg(test)]`, which is off in this library and on
/// in an integration test that writes the same tokens: two builds of one source that
/// share a fingerprint while their variants differ.
pub mod gated {
    /// `Extra` only where `cfg(test)` is on.
    #[aiosock::protocol]
    #[derive(Debug, PartialEq)]
    pub enum Gated {
        /// In every build.
        Base(u64),
        /// Only with `cfg(test)`.
        #[cfg(test)]
        #[added]
        Extra(u64),
    }
}

/// The second version: variants added at the end, marked `#[added]`.
pub mod evolve_v2 {
    /// From the parent.
    #[aiosock::protocol]
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Evolving {
        /// As in version 1.
        Ping(u64),
        /// As in version 1.
        #[reply(u64)]
        Pings,
        /// New: answered with the text in upper case.
        #[added]
        #[reply(String)]
        Upper(String),
        /// New: one-way, counted.
        #[added]
        Note(String),
    }

    /// From the worker.
    #[aiosock::protocol]
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Report {
        /// As in version 1.
        Pinged(u64),
        /// New: the worker also says what it was pinged with, to a parent that knows it.
        #[added]
        Noted(String),
    }
}

/// A broken third version: a variant appended without `#[added]`, so an older build
/// cannot talk to it.
pub mod evolve_unmarked {
    /// From the parent.
    #[aiosock::protocol]
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Evolving {
        /// As in version 1.
        Ping(u64),
        /// As in version 1.
        #[reply(u64)]
        Pings,
        /// New, but not marked `#[added]`.
        Stop,
    }
}

/// How many messages the `burst` worker sends.
pub const BURST: u64 = 20_000;

/// Message `i` of the `burst` worker: mostly small items, and every 1,000th a 256 KiB
/// `Echo`, whose data a send hands to the kernel from the message's own buffer (it is over
/// the size from which byte fields are not copied), so that the ways a process ends are
/// also checked with such messages still queued.
pub fn burst_reply(i: u64) -> Reply {
    if i % 1000 == 999 {
        Reply::Echo {
            id: i,
            data: (0..256 * 1024u32)
                .map(|b| (b as u64 ^ i.wrapping_mul(31)) as u8)
                .collect(),
        }
    } else {
        Reply::Item(i)
    }
}

/// Message `i` of the `emfile` worker: 512 bytes each, 10 MB in all, so that the socket
/// fills up many times.
pub fn emfile_reply(i: u64) -> Reply {
    Reply::Echo {
        id: i,
        data: vec![i as u8; 512],
    }
}

/// The size of each message of the `exit-racing` worker: larger than a socket's buffer,
/// so that most sends leave bytes to be written after they return.
pub const RACING_SIZE: usize = 256 * 1024;

/// The ways the `burst` worker ends its runtime after sending.
pub const ENDINGS: [&str; 6] = [
    "return",
    "drop",
    "shutdown-timeout",
    "shutdown-background",
    "exit",
    "fork",
];

/// The seed the parent uses for its half of a soak (the worker gets another).
pub const PARENT_SEED: u64 = 0x5eed_0001;

/// A small deterministic generator (SplitMix64), for sizes and contents.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The payload of soak message `seq` under `seed`: its size is skewed small (most under
/// 256 B, a few up to 64 KiB, one in a thousand up to 1 MiB) and every byte depends on
/// `(seed, seq, position)`, so loss, duplication, reordering and corruption all show.
pub fn soak_data(seed: u64, seq: u64) -> Vec<u8> {
    let r = mix(seed ^ mix(seq));
    let len = match r % 1000 {
        0 => (r >> 10) % (1 << 20),
        1..=99 => (r >> 10) % (64 << 10),
        _ => (r >> 10) % 256,
    } as usize;
    let base = mix(r);
    (0..len)
        .map(|i| (base.wrapping_add((i as u64).wrapping_mul(0x9e37)) >> 8) as u8)
        .collect()
}

/// `VmHWM` (peak resident memory) of this process in KiB.
pub fn peak_rss_kib() -> u64 {
    crate::proc_status_kib("VmHWM")
}

/// A protocol no test parent speaks: the `mismatch` worker uses it.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stranger {
    /// Anything.
    Hello(String),
}

/// The exit code of the `reexec` worker when the re-executed image refused the stale
/// descriptor number.
pub const EXIT_REFUSED: i32 = 4;

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

/// Spawns the worker binary at `exe` in `mode` with one end of a new pair, and splits the
/// parent's end.
pub fn start(
    exe: &str,
    mode: &str,
) -> (
    aiosock::Child,
    aiosock::Sender<Request>,
    aiosock::Receiver<Reply>,
) {
    let (here, there) = aiosock::pair::<Request, Reply>().expect("pair");
    let child = aiosock::spawn(worker(exe, mode), there).expect("spawn worker");
    let (tx, rx) = here.into_split();
    (child, tx, rx)
}

/// Waits until process `pid` is gone (see [`process_gone`]).
pub async fn until_gone(pid: u32) {
    while !process_gone(pid) {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
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
