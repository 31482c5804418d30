//! The raw baselines: a blocking `std` socketpair with hand-written frames (a `u32` LE
//! length, then the message in bincode 2 standard, as aiosock's payload), no runtime.
//!
//! - `raw-buffered`, the limit every ratio is taken against: a 64 KiB `BufWriter`, flushed
//!   only when the other side needs the bytes (after `Ready`, each ping or echo, the end).
//! - `raw-unbuffered`: one `write` per message, as libraries without batching do.
//!
//! Both read through a 64 KiB `BufReader`. The child gets its end as its stdin, so no
//! descriptor juggling (and no `unsafe`) is needed; the end of a stream is
//! `shutdown(Write)`. Concurrent senders are threads sharing the writer behind a `Mutex`.
//!
//! In the calls workloads `raw-buffered` is the pipelined limit (`raw-unbuffered` sits
//! them out): one thread keeps every call in flight, each request a frame of
//! `(id, n)` and each reply one of `(id, n * n)`, matched to its call by id in a table of
//! slots. Both sides write into their buffer and flush only when they have read every
//! frame that arrived, so a burst of replies becomes a burst of requests in one `write`.
//!
//! In the resource workloads `raw-buffered` is the baseline too (`raw-unbuffered` sits
//! them out): `fds` passes each descriptor with its own `sendmsg` (see `raw_fds`), and
//! `shm-4m` sends each payload as a 4 MiB `Data` frame, as in `data-4m`.
//!
//! The frames and the message roles work over any blocking [`Socket`]: `raw-tcp` plays
//! `raw-buffered`'s over TCP ([`play_buffered`]), and `raw-tls` writes the same frames
//! ([`encode_frame`], [`decode_frame`]) through tokio-rustls.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{System, raw_fds, stdin_socket, stdin_socket_child, unexpected};
use crate::BoxError;
use crate::calls::{CallStats, Histogram, Plan, square};
use crate::msg::{Checker, Msg, Shape, Source};
use crate::process::{ChildCmd, wait_std};
use crate::workload::{Outcome, Role, Stream, Workload};

/// The buffer size of both variants' reader and of the buffered writer.
pub(super) const BUF: usize = 64 * 1024;
/// The largest frame a reader accepts, as aiosock's default.
pub(super) const MAX_FRAME: usize = 64 * 1024 * 1024;
const CONFIG: bincode::config::Configuration = bincode::config::standard();

/// Encodes `msg` as one frame into `frame` (cleared first): its length as a `u32` LE, then
/// the message in bincode 2 standard.
pub(super) fn encode_frame<M: Serialize>(frame: &mut Vec<u8>, msg: &M) -> Result<(), BoxError> {
    frame.clear();
    frame.extend_from_slice(&[0; 4]);
    bincode::serde::encode_into_std_write(msg, frame, CONFIG)?;
    let len = u32::try_from(frame.len() - 4)?;
    frame[..4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Decodes the payload of one frame (what follows its length), which must be one whole
/// message.
pub(super) fn decode_frame<M: DeserializeOwned>(payload: &[u8]) -> Result<M, BoxError> {
    let (msg, used) = bincode::serde::decode_from_slice(payload, CONFIG)?;
    if used != payload.len() {
        return Err(format!("{} trailing bytes", payload.len() - used).into());
    }
    Ok(msg)
}

/// A blocking stream socket that frames travel over: the socketpair, or TCP (`raw-tcp`).
pub(super) trait Socket: Read + Write + Send + Sized {
    /// Another handle to the same socket.
    fn try_clone(&self) -> io::Result<Self>;

    /// Ends the sending direction: the peer reads EOF after the last byte.
    fn shutdown_write(&self) -> io::Result<()>;
}

impl Socket for UnixStream {
    fn try_clone(&self) -> io::Result<Self> {
        UnixStream::try_clone(self)
    }

    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl Socket for TcpStream {
    fn try_clone(&self) -> io::Result<Self> {
        TcpStream::try_clone(self)
    }

    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// `raw-buffered`'s message roles (`send`, `recv`, `ping`, `echo`) over `stream`: a 64 KiB
/// `BufWriter` and `BufReader`, as on the socketpair.
pub(super) fn play_buffered<S: Socket>(stream: S, role: &Role) -> Result<Outcome, BoxError> {
    let mut rx = FrameReader {
        input: BufReader::with_capacity(BUF, stream.try_clone()?),
        buf: Vec::new(),
    };
    let ctl = stream.try_clone()?;
    let mut tx = FrameWriter::new(BufWriter::with_capacity(BUF, stream), ctl);
    match role {
        Role::Send(stream) => send(tx, rx, stream),
        Role::Recv(stream) => recv(&mut tx, rx, stream),
        Role::Ping { count, shape } => ping(tx, rx, *count, *shape),
        Role::Echo => echo(&mut tx, &mut rx),
        _ => Err(format!("{role:?} is no message role").into()),
    }
}

/// A raw socketpair baseline.
#[derive(Debug)]
pub(crate) struct Raw {
    buffered: bool,
}

impl Raw {
    /// The limit: a buffered writer.
    pub(crate) const BUFFERED: Raw = Raw { buffered: true };
    /// One write per message.
    pub(crate) const UNBUFFERED: Raw = Raw { buffered: false };

    fn play(&self, stream: UnixStream, role: &Role) -> Result<Outcome, BoxError> {
        if role.shape() == Some(Shape::Fd) {
            return raw_fds::play(stream, role);
        }
        let reader = FrameReader {
            input: BufReader::with_capacity(BUF, stream.try_clone()?),
            buf: Vec::new(),
        };
        let ctl = stream.try_clone()?;
        if self.buffered {
            play(
                FrameWriter::new(BufWriter::with_capacity(BUF, stream), ctl),
                reader,
                role,
            )
        } else {
            play(FrameWriter::new(stream, ctl), reader, role)
        }
    }
}

impl System for Raw {
    fn name(&self) -> &'static str {
        if self.buffered {
            "raw-buffered"
        } else {
            "raw-unbuffered"
        }
    }

    fn takes_part(&self, workload: Workload) -> bool {
        workload.is_message()
            || (self.buffered
                && (workload.is_calls() || workload.is_resource() || workload.is_scale()))
    }

    fn syscall_per_message(&self) -> bool {
        !self.buffered
    }

    fn parent(&self, child: ChildCmd, role: &Role) -> Result<Outcome, BoxError> {
        let (mine, mut child) = stdin_socket(child)?;
        let outcome = self.play(mine, role)?;
        wait_std(&mut child)?;
        Ok(outcome)
    }

    fn child(&self, role: &Role) -> Result<Outcome, BoxError> {
        self.play(stdin_socket_child()?, role)
    }
}

/// Writes frames to `W` (buffered or not); `ctl` shuts the stream down at the end.
#[derive(Debug)]
struct FrameWriter<W, S = UnixStream> {
    out: W,
    ctl: S,
    frame: Vec<u8>,
}

impl<W: Write, S: Socket> FrameWriter<W, S> {
    fn new(out: W, ctl: S) -> FrameWriter<W, S> {
        FrameWriter {
            out,
            ctl,
            frame: Vec::new(),
        }
    }

    /// Encodes `msg` as one frame and hands it to `W` in one `write_all`.
    fn write<M: Serialize>(&mut self, msg: &M) -> Result<(), BoxError> {
        encode_frame(&mut self.frame, msg)?;
        self.out.write_all(&self.frame)?;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Flushes and ends the stream: the peer reads EOF after the last frame.
    fn close(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.ctl.shutdown_write()
    }
}

/// Reads frames.
#[derive(Debug)]
struct FrameReader<S = UnixStream> {
    input: BufReader<S>,
    buf: Vec<u8>,
}

impl<S: Read> FrameReader<S> {
    /// The next message, or `None` at a clean end of stream (between frames).
    fn read(&mut self) -> Result<Option<Msg>, BoxError> {
        self.read_as()
    }

    /// Whether every byte that arrived has been read: the next read blocks.
    fn drained(&self) -> bool {
        self.input.buffer().is_empty()
    }

    /// [`read`](Self::read) for any message type.
    fn read_as<M: DeserializeOwned>(&mut self) -> Result<Option<M>, BoxError> {
        if self.input.fill_buf()?.is_empty() {
            return Ok(None);
        }
        let mut header = [0; 4];
        self.input.read_exact(&mut header)?;
        let len = u32::from_le_bytes(header) as usize;
        if len > MAX_FRAME {
            return Err(format!("frame of {len} bytes").into());
        }
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        let payload = &mut self.buf[..len];
        self.input.read_exact(payload)?;
        Ok(Some(decode_frame(payload)?))
    }
}

fn play<W: Write + Send>(
    mut tx: FrameWriter<W>,
    mut rx: FrameReader,
    role: &Role,
) -> Result<Outcome, BoxError> {
    match role {
        Role::Send(stream) => send(tx, rx, stream),
        Role::Recv(stream) => recv(&mut tx, rx, stream),
        Role::Ping { count, shape } => ping(tx, rx, *count, *shape),
        Role::Echo => echo(&mut tx, &mut rx),
        Role::Call(plan) => call(tx, rx, plan),
        Role::Answer => answer(&mut tx, &mut rx),
        Role::Deal { .. } | Role::Work => Err(super::NO_POOL.into()),
    }
}

fn send<W: Write + Send, S: Socket>(
    mut tx: FrameWriter<W, S>,
    mut rx: FrameReader<S>,
    stream: &Stream,
) -> Result<Outcome, BoxError> {
    wait_ready(&mut rx)?;
    if stream.senders == 1 {
        let source = Source::new(stream.shape, 0);
        for seq in 0..stream.per_sender {
            tx.write(&source.msg(seq))?;
        }
    } else {
        let shared = Mutex::new(tx);
        std::thread::scope(|scope| {
            let threads: Vec<_> = (0..stream.senders)
                .map(|sender| {
                    let shared = &shared;
                    scope.spawn(move || {
                        let source = Source::new(stream.shape, sender);
                        for seq in 0..stream.per_sender {
                            let msg = source.msg(seq);
                            let mut tx = shared.lock().expect("writer lock");
                            tx.write(&msg).map_err(|e| e.to_string())?;
                        }
                        Ok::<_, String>(())
                    })
                })
                .collect();
            threads
                .into_iter()
                .try_for_each(|t| t.join().expect("sender thread panicked"))
        })?;
        tx = shared.into_inner().expect("writer lock");
    }
    tx.close()?;
    Ok(Outcome::default())
}

fn recv<W: Write, S: Socket>(
    tx: &mut FrameWriter<W, S>,
    mut rx: FrameReader<S>,
    stream: &Stream,
) -> Result<Outcome, BoxError> {
    let mut checker = Checker::new(stream.shape, stream.senders, stream.per_sender);
    tx.write(&Msg::Ready)?;
    tx.flush()?;
    let start = Instant::now();
    if stream.delay > Duration::ZERO {
        std::thread::sleep(stream.delay);
    }
    while checker.remaining() > 0 {
        match rx.read()? {
            Some(msg) => checker.check(&msg)?,
            None => break,
        }
    }
    let elapsed = start.elapsed();
    checker.check_end()?;
    match rx.read()? {
        None => Ok(Outcome::timed(elapsed)),
        Some(msg) => Err(unexpected("the close", Some(&msg))),
    }
}

fn ping<W: Write, S: Socket>(
    mut tx: FrameWriter<W, S>,
    mut rx: FrameReader<S>,
    count: u64,
    shape: Shape,
) -> Result<Outcome, BoxError> {
    wait_ready(&mut rx)?;
    let (source, mut checker) = (Source::new(shape, 0), Checker::new(shape, 1, count));
    let mut latencies = Vec::with_capacity(count as usize);
    for i in 0..count {
        let msg = source.msg(i);
        let start = Instant::now();
        tx.write(&msg)?;
        tx.flush()?;
        let echoed = rx.read()?;
        latencies.push(start.elapsed());
        match echoed {
            Some(msg) => checker.check(&msg)?,
            None => return Err(unexpected(&format!("message {i}"), None)),
        }
    }
    tx.close()?;
    Ok(Outcome::latencies(latencies))
}

fn echo<W: Write, S: Socket>(
    tx: &mut FrameWriter<W, S>,
    rx: &mut FrameReader<S>,
) -> Result<Outcome, BoxError> {
    tx.write(&Msg::Ready)?;
    tx.flush()?;
    while let Some(msg) = rx.read()? {
        tx.write(&msg)?;
        tx.flush()?;
    }
    tx.close()?;
    Ok(Outcome::default())
}

fn wait_ready<S: Read>(rx: &mut FrameReader<S>) -> Result<(), BoxError> {
    match rx.read()? {
        Some(Msg::Ready) => Ok(()),
        other => Err(unexpected("Ready", other.as_ref())),
    }
}

/// The calls client: every call of the plan in flight from this one thread.
fn call<W: Write>(
    mut tx: FrameWriter<W>,
    mut rx: FrameReader,
    plan: &Plan,
) -> Result<Outcome, BoxError> {
    let mut slots = Slots::new(plan.in_flight);
    slots.phase(&mut tx, &mut rx, plan.warmup)?;
    let stats = slots.phase(&mut tx, &mut rx, plan.window)?;
    tx.close()?;
    match rx.read_as::<(u64, u64)>()? {
        None => Ok(Outcome::calls(stats)),
        Some((id, _)) => Err(format!("a reply to {id} after the last call").into()),
    }
}

/// The calls in flight: slot `id % len` holds call `id`'s number and start time.
struct Slots {
    calls: Vec<Option<(u64, Instant)>>,
    /// The next call's id (and number to square).
    next: u64,
}

impl Slots {
    fn new(in_flight: usize) -> Slots {
        Slots {
            calls: vec![None; in_flight.max(1)],
            next: 0,
        }
    }

    /// Starts call `next` in its slot (free, since the ids in flight are consecutive).
    fn start<W: Write>(&mut self, tx: &mut FrameWriter<W>) -> Result<(), BoxError> {
        let id = self.next;
        self.next += 1;
        let len = self.calls.len() as u64;
        self.calls[(id % len) as usize] = Some((id, Instant::now()));
        tx.write(&(id, id))
    }

    /// Keeps every slot busy for `length`, then waits for the calls still in flight.
    fn phase<W: Write>(
        &mut self,
        tx: &mut FrameWriter<W>,
        rx: &mut FrameReader,
        length: Duration,
    ) -> Result<CallStats, BoxError> {
        let deadline = Instant::now() + length;
        let mut stats = CallStats {
            window: length,
            ..CallStats::default()
        };
        let mut latency = Histogram::default();
        for _ in 0..self.calls.len() {
            self.start(tx)?;
        }
        let mut in_flight = self.calls.len();
        while in_flight > 0 {
            if rx.drained() {
                tx.flush()?;
            }
            let Some((id, value)) = rx.read_as::<(u64, u64)>()? else {
                return Err("the server closed with calls in flight".into());
            };
            let len = self.calls.len() as u64;
            let slot = &mut self.calls[(id % len) as usize];
            let Some((n, start)) = slot.take_if(|(n, _)| *n == id) else {
                return Err(format!("a reply to {id}, which is not in flight").into());
            };
            let now = Instant::now();
            if value != square(n) {
                return Err(format!("the square of {n} came back as {value}").into());
            }
            in_flight -= 1;
            if now <= deadline {
                stats.calls += 1;
                latency.record(now - start);
                self.start(tx)?;
                in_flight += 1;
            }
        }
        stats.latency = latency;
        Ok(stats)
    }
}

/// The calls server: answers each request in order, flushing once it has read all that
/// arrived.
fn answer<W: Write>(tx: &mut FrameWriter<W>, rx: &mut FrameReader) -> Result<Outcome, BoxError> {
    while let Some((id, n)) = rx.read_as::<(u64, u64)>()? {
        tx.write(&(id, square(n)))?;
        if rx.drained() {
            tx.flush()?;
        }
    }
    tx.close()?;
    Ok(Outcome::default())
}
