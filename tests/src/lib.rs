//! Helpers shared by the integration tests and their worker binaries.
//!
//! This crate depends on `aiosock` and `tokio` only: no direct serde dependency, so every
//! protocol here (and in the test files) also checks that the macro's output names serde
//! through aiosock.

use std::future::IntoFuture;
use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use aiosock::{Endpoint, Protocol};

/// How long one await may take before a test calls it a hang. A hang guard, never a
/// speed measurement: every await it wraps is expected to finish in far less.
pub const HANG: Duration = Duration::from_secs(30);

/// Awaits `fut`, panicking with `what` if it has not completed within [`HANG`].
pub async fn guard<F: IntoFuture>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(HANG, fut).await {
        Ok(out) => out,
        Err(_) => panic!("hang guard: `{what}` did not complete within {HANG:?}"),
    }
}

/// A current-thread runtime with everything enabled, for tests that run their async part
/// on the test's own thread (where a counting allocator or a subscriber sees it).
pub fn local_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Both halves of one end.
pub type Halves<P> = (aiosock::Sender<P>, aiosock::Receiver<P>);

/// A pair whose ends both send and receive `P`, already split.
pub fn split_pair<P: Protocol>() -> (Halves<P>, Halves<P>) {
    let (a, b) = aiosock::pair::<P, P>().expect("socketpair");
    (a.into_split(), b.into_split())
}

/// Messages for the order, cancel and backpressure tests.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Traffic {
    /// A bare sequence number.
    Num(u64),
    /// A sequence number with a text derived from it (see [`num_text`]).
    Text(u64, String),
    /// A message from one of several senders, its payload derived from `(sender, seq)`
    /// (see [`tagged`]).
    Tagged {
        /// Which sender.
        sender: u32,
        /// The sender's sequence number.
        seq: u64,
        /// `text_for(sender, seq)`.
        text: String,
        /// `bytes_for(sender, seq, _)`.
        data: Vec<u8>,
    },
    /// A blob whose content is derived from a sequence number (see [`blob`]).
    Blob(Vec<u8>),
    /// The last message of a test.
    End,
}

/// The text carried by `Traffic::Text(seq, _)`.
pub fn num_text(seq: u64) -> String {
    format!("message #{seq}")
}

/// `Traffic::Text(seq, num_text(seq))`.
pub fn text(seq: u64) -> Traffic {
    Traffic::Text(seq, num_text(seq))
}

/// A text that differs for every `(sender, seq)`, of varying length.
pub fn text_for(sender: u32, seq: u64) -> String {
    let word = format!("<{sender}:{seq}>");
    word.repeat(1 + usize::try_from(seq % 7).unwrap_or(0))
}

/// `len` bytes that differ for every `(sender, seq)`.
pub fn bytes_for(sender: u32, seq: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new((u64::from(sender) << 40) ^ seq);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The `Tagged` message number `seq` of `sender`, with up to 300 bytes of data.
pub fn tagged(sender: u32, seq: u64) -> Traffic {
    let len = usize::try_from((seq * 37 + u64::from(sender)) % 300).unwrap_or(0);
    Traffic::Tagged {
        sender,
        seq,
        text: text_for(sender, seq),
        data: bytes_for(sender, seq, len),
    }
}

/// A `Blob` of `len` bytes (at least 8): `seq` in little endian, then bytes derived from it.
pub fn blob(seq: u64, len: usize) -> Traffic {
    let len = len.max(8);
    let mut data = seq.to_le_bytes().to_vec();
    data.extend(bytes_for(u32::MAX, seq, len - 8));
    Traffic::Blob(data)
}

/// A small deterministic pseudo-random generator (SplitMix64), so tests need no `rand`.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let out = workers::mix(self.0);
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        out
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The hello of a side that sends `S` and expects `E`, built by hand from the layout
/// documented in `aiosock::wire` (not with aiosock's own encoder), with the variants
/// extension, as aiosock writes it.
pub fn hello<S: Protocol, E: Protocol>() -> Vec<u8> {
    let mut ext = Vec::new();
    for (prints, baseline) in [
        (S::VARIANT_FINGERPRINTS, S::BASELINE),
        (E::VARIANT_FINGERPRINTS, E::BASELINE),
    ] {
        ext.extend_from_slice(&short(prints.len()).to_le_bytes());
        ext.extend_from_slice(&short(baseline).to_le_bytes());
        for print in prints {
            ext.extend_from_slice(&print.to_le_bytes());
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(b"AIOS");
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&name_len(S::NAME).to_le_bytes());
    out.extend_from_slice(&name_len(E::NAME).to_le_bytes());
    out.extend_from_slice(&short(4 + ext.len()).to_le_bytes());
    out.extend_from_slice(&S::FINGERPRINT.to_le_bytes());
    out.extend_from_slice(&E::FINGERPRINT.to_le_bytes());
    out.extend_from_slice(S::NAME.as_bytes());
    out.extend_from_slice(E::NAME.as_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // the variants extension
    out.extend_from_slice(&short(ext.len()).to_le_bytes());
    out.extend_from_slice(&ext);
    out
}

fn short(n: usize) -> u16 {
    u16::try_from(n).expect("test protocols are small")
}

/// The hello of aiosock 0.1 (wire version 1) for a side that sends `S` and expects `E`.
pub fn hello_v1<S: Protocol, E: Protocol>() -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"AIOS");
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&name_len(S::NAME).to_le_bytes());
    out.extend_from_slice(&name_len(E::NAME).to_le_bytes());
    out.extend_from_slice(&S::FINGERPRINT.to_le_bytes());
    out.extend_from_slice(&E::FINGERPRINT.to_le_bytes());
    out.extend_from_slice(S::NAME.as_bytes());
    out.extend_from_slice(E::NAME.as_bytes());
    out
}

/// The header of a call's or a reply's frame: the fixed part, then the call id.
pub fn call_header(len: u32, flags: u16, id: u64) -> Vec<u8> {
    let mut out = frame_header(len, 0, flags);
    out.extend_from_slice(&id.to_le_bytes());
    out
}

fn name_len(name: &str) -> u16 {
    u16::try_from(name.len()).expect("test protocol names are short")
}

/// A frame header (payload length, fds, flags), as documented in `aiosock::wire`.
pub fn frame_header(len: u32, fds: u16, flags: u16) -> Vec<u8> {
    let mut out = len.to_le_bytes().to_vec();
    out.extend_from_slice(&fds.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out
}

/// Turns an end into a plain blocking socket, to play a raw (possibly hostile) peer.
pub fn raw_peer<Out: Protocol, In: Protocol>(end: Endpoint<Out, In>) -> UnixStream {
    let stream = UnixStream::from(end.into_fd());
    stream
        .set_nonblocking(false)
        .expect("make the raw peer blocking");
    stream
}

/// Writes `bytes` to a raw peer with `fds` attached to their first byte (`SCM_RIGHTS`), in
/// one `sendmsg`.
pub fn send_with_fds(peer: &UnixStream, bytes: &[u8], fds: &[std::os::fd::RawFd]) {
    use std::os::fd::{AsFd, AsRawFd};
    let rights = [nix::sys::socket::ControlMessage::ScmRights(fds)];
    let cmsgs: &[_] = if fds.is_empty() { &[] } else { &rights };
    let sent = nix::sys::socket::sendmsg::<()>(
        peer.as_fd().as_raw_fd(),
        &[std::io::IoSlice::new(bytes)],
        cmsgs,
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .expect("sendmsg");
    assert_eq!(sent, bytes.len(), "a short sendmsg to the aiosock end");
}

/// Writes all of `bytes` to a raw peer.
pub fn write_raw(peer: &mut UnixStream, bytes: &[u8]) {
    peer.write_all(bytes).expect("write to the aiosock end");
}

/// A field of `/proc/self/status` in KiB, such as `"VmHWM"` (peak resident memory) or
/// `"VmPeak"` (peak virtual memory).
pub fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().strip_suffix("kB")?.trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

pub mod workers;

/// How many descriptors this process has open.
pub fn open_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("fd dir").count()
}

/// Waits until this process's descriptor count is back to `baseline` (writer tasks close
/// their end's socket shortly after the last sender is gone), panicking with `what` if it
/// is not within 30 s.
pub async fn fd_count_settles_at(baseline: usize, what: &str) {
    let settle = async {
        while open_fd_count() > baseline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), settle)
        .await
        .is_err()
    {
        panic!(
            "{what}: {} descriptors open, {baseline} before",
            open_fd_count()
        );
    }
}

/// The process's descriptor table full: the soft `RLIMIT_NOFILE` lowered to a little over
/// what is open, and every descriptor under it taken (by `/dev/null`) but `room`.
/// Dropping it closes those and puts the limit back. For test binaries of one test: the
/// limit and the table are the whole process's.
#[derive(Debug)]
pub struct FullTable {
    fillers: Vec<std::fs::File>,
    soft: u64,
    hard: u64,
}

/// Fills the descriptor table (see [`FullTable`]), leaving `room` descriptors free.
pub fn fill_descriptor_table(room: usize) -> FullTable {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    let open = std::fs::read_dir("/proc/self/fd").expect("fd dir").count() as u64;
    setrlimit(Resource::RLIMIT_NOFILE, open + 16, hard).expect("setrlimit");
    let mut fillers = Vec::new();
    while let Ok(file) = std::fs::File::open("/dev/null") {
        fillers.push(file);
    }
    fillers.truncate(fillers.len().saturating_sub(room));
    FullTable {
        fillers,
        soft,
        hard,
    }
}

impl Drop for FullTable {
    fn drop(&mut self) {
        self.fillers.clear();
        let limit = nix::sys::resource::Resource::RLIMIT_NOFILE;
        nix::sys::resource::setrlimit(limit, self.soft, self.hard).expect("restore the limit");
    }
}
