//! The workloads, the role each process plays in one, and what a role reports.
//!
//! A run is one workload in one direction over one system. The *passive* side (the
//! receiver, or the echoer) sends `Ready` once it reads; the *active* side (the sender, or
//! the pinger) starts on it, so process start-up and connection set-up are never timed.

use std::fmt;
use std::time::Duration;

use crate::calls::{CallStats, IN_FLIGHT, Plan};
use crate::msg::Shape;

/// How many concurrent senders the `concurrent` workload runs.
pub(crate) const SENDERS: usize = 8;

/// The payload sizes of the `size-*` workloads, in table order. The largest is 64 MiB less
/// 64 bytes, so that its frame fits aiosock's default 64 MiB limit.
pub(crate) const PAYLOADS: [u32; 9] = [
    8,
    64,
    512,
    4 << 10,
    32 << 10,
    256 << 10,
    2 << 20,
    16 << 20,
    (64 << 20) - 64,
];

/// Round trips in one `rtt-*` (by size) run: as many as move [`RTT_SIZE_BYTES`] each way,
/// at least [`SIZE_MIN_MESSAGES`], at most the `rtt` workload's count.
const RTT_SIZE_BYTES: u64 = 256 << 20;

/// The connection counts of the `pairs-*` workloads, in table order.
pub(crate) const PAIR_COUNTS: [u16; 2] = [1, 100];

/// The sender counts of the `senders-*` workloads, in table order.
pub(crate) const SENDER_COUNTS: [u16; 4] = [1, 4, 16, 64];

/// Bytes one `size-*` run moves (at least [`SIZE_MIN_MESSAGES`] messages, at most
/// [`SIZE_MAX_MESSAGES`]); a tenth with `--quick`.
const SIZE_BYTES: u64 = 1 << 30;
const SIZE_MIN_MESSAGES: u64 = 16;
const SIZE_MAX_MESSAGES: u64 = 2_000_000;

/// One workload of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workload {
    /// Round trips of one small message: median and p99 latency.
    Rtt,
    /// One-way `Ping(u64)` messages: messages per second.
    Small,
    /// One-way `Data` of 64 KiB: GB/s.
    Data64K,
    /// One-way `Data` of 4 MiB: GB/s.
    Data4M,
    /// [`SENDERS`] concurrent senders of `Ping`, parent to child: messages per second.
    Concurrent,
    /// A sender pushes small messages at a receiver that sleeps first: the sender's peak RSS.
    Stalled,
    /// One descriptor per message, with a sequence number: descriptors per second (see
    /// [`crate::resource`]).
    Fds,
    /// One-way payloads of 4 MiB built in place by the sender and read whole by the
    /// receiver, in shared memory where the system has it: GB/s (see [`crate::resource`]).
    Shm4M,
    /// Calls with replies, this many in flight (one of [`IN_FLIGHT`]): calls/s, p50 and
    /// p99 latency (see [`crate::calls`]).
    Calls(u16),
    /// Jobs through a pool of [`WORKERS`](crate::pool::WORKERS) worker processes: jobs
    /// per second (see [`crate::pool`]).
    Pool,
    /// One-way `Ping(u64)` over TCP on the loopback: messages per second (see
    /// [`crate::net`]).
    TcpSmall,
    /// Round trips of one small message over TCP on the loopback: median and p99 latency.
    TcpRtt,
    /// One-way `Ping(u64)` over TLS on the loopback: messages per second.
    TlsSmall,
    /// Round trips of one small message over TLS on the loopback: median and p99 latency.
    TlsRtt,
    /// One-way `Data` of 4 MiB over TLS on the loopback, parent to child: GB/s.
    Tls4M,
    /// One-way `Data` of this many bytes (one of [`PAYLOADS`]), parent to child: GB/s, and
    /// the time per message. The scale of cost with the message's size.
    Size(u32),
    /// This many concurrent senders (one of [`SENDER_COUNTS`]) of `Ping`, parent to child:
    /// messages per second. The scale of cost with the senders.
    Senders(u16),
    /// `Ping` over this many connections at once (one of [`PAIR_COUNTS`]) between the
    /// same two processes, parent to child: messages per second, all connections together.
    Pairs(u16),
    /// Round trips of one `Data` of this many bytes (one of [`PAYLOADS`]), echoed back
    /// whole: median and p99 latency. The scale of the round trip with the message's size.
    RttSize(u32),
}

impl Workload {
    /// Every workload, in table order.
    pub(crate) const ALL: [Workload; 43] = [
        Workload::Rtt,
        Workload::Small,
        Workload::Data64K,
        Workload::Data4M,
        Workload::Concurrent,
        Workload::Stalled,
        Workload::Fds,
        Workload::Shm4M,
        Workload::Calls(IN_FLIGHT[0]),
        Workload::Calls(IN_FLIGHT[1]),
        Workload::Calls(IN_FLIGHT[2]),
        Workload::Calls(IN_FLIGHT[3]),
        Workload::Calls(IN_FLIGHT[4]),
        Workload::Pool,
        Workload::TcpSmall,
        Workload::TcpRtt,
        Workload::TlsSmall,
        Workload::TlsRtt,
        Workload::Tls4M,
        Workload::Size(PAYLOADS[0]),
        Workload::Size(PAYLOADS[1]),
        Workload::Size(PAYLOADS[2]),
        Workload::Size(PAYLOADS[3]),
        Workload::Size(PAYLOADS[4]),
        Workload::Size(PAYLOADS[5]),
        Workload::Size(PAYLOADS[6]),
        Workload::Size(PAYLOADS[7]),
        Workload::Size(PAYLOADS[8]),
        Workload::Senders(SENDER_COUNTS[0]),
        Workload::Senders(SENDER_COUNTS[1]),
        Workload::Senders(SENDER_COUNTS[2]),
        Workload::Senders(SENDER_COUNTS[3]),
        Workload::Pairs(PAIR_COUNTS[0]),
        Workload::Pairs(PAIR_COUNTS[1]),
        Workload::RttSize(PAYLOADS[0]),
        Workload::RttSize(PAYLOADS[1]),
        Workload::RttSize(PAYLOADS[2]),
        Workload::RttSize(PAYLOADS[3]),
        Workload::RttSize(PAYLOADS[4]),
        Workload::RttSize(PAYLOADS[5]),
        Workload::RttSize(PAYLOADS[6]),
        Workload::RttSize(PAYLOADS[7]),
        Workload::RttSize(PAYLOADS[8]),
    ];

    /// The name on the command line and in the table.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::Rtt => "rtt",
            Workload::Small => "small",
            Workload::Data64K => "data-64k",
            Workload::Data4M => "data-4m",
            Workload::Concurrent => "concurrent",
            Workload::Stalled => "stalled",
            Workload::Fds => "fds",
            Workload::Shm4M => "shm-4m",
            Workload::Calls(1) => "calls-1",
            Workload::Calls(8) => "calls-8",
            Workload::Calls(64) => "calls-64",
            Workload::Calls(256) => "calls-256",
            Workload::Calls(1024) => "calls-1024",
            // Only the counts of `IN_FLIGHT` are ever made (see `ALL`).
            Workload::Calls(_) => "calls-?",
            Workload::Pool => "pool",
            Workload::TcpSmall => "tcp-small",
            Workload::TcpRtt => "tcp-rtt",
            Workload::TlsSmall => "tls-small",
            Workload::TlsRtt => "tls-rtt",
            Workload::Tls4M => "tls-4m",
            Workload::Size(8) => "size-8",
            Workload::Size(64) => "size-64",
            Workload::Size(512) => "size-512",
            Workload::Size(4096) => "size-4k",
            Workload::Size(32768) => "size-32k",
            Workload::Size(262144) => "size-256k",
            Workload::Size(2097152) => "size-2m",
            Workload::Size(16777216) => "size-16m",
            Workload::Size(67108800) => "size-64m",
            // Only the sizes of `PAYLOADS` are ever made (see `ALL`).
            Workload::Size(_) => "size-?",
            Workload::Senders(1) => "senders-1",
            Workload::Senders(4) => "senders-4",
            Workload::Senders(16) => "senders-16",
            Workload::Senders(64) => "senders-64",
            Workload::Senders(_) => "senders-?",
            Workload::Pairs(1) => "pairs-1",
            Workload::Pairs(100) => "pairs-100",
            Workload::Pairs(_) => "pairs-?",
            Workload::RttSize(8) => "rtt-8",
            Workload::RttSize(64) => "rtt-64",
            Workload::RttSize(512) => "rtt-512",
            Workload::RttSize(4096) => "rtt-4k",
            Workload::RttSize(32768) => "rtt-32k",
            Workload::RttSize(262144) => "rtt-256k",
            Workload::RttSize(2097152) => "rtt-2m",
            Workload::RttSize(16777216) => "rtt-16m",
            Workload::RttSize(67108800) => "rtt-64m",
            Workload::RttSize(_) => "rtt-?",
        }
    }

    /// The directions it runs in. The stalled sender is the child, so that its peak RSS is
    /// its own and not left over from earlier runs.
    pub(crate) fn directions(self) -> &'static [Direction] {
        match self {
            Workload::Small
            | Workload::Data64K
            | Workload::Data4M
            | Workload::Fds
            | Workload::TcpSmall
            | Workload::TlsSmall => &[Direction::ToChild, Direction::FromChild],
            Workload::Rtt
            | Workload::Concurrent
            | Workload::Shm4M
            | Workload::Calls(_)
            | Workload::Pool
            | Workload::TcpRtt
            | Workload::TlsRtt
            | Workload::Tls4M
            | Workload::Size(_)
            | Workload::Senders(_)
            | Workload::Pairs(_)
            | Workload::RttSize(_) => &[Direction::ToChild],
            Workload::Stalled => &[Direction::FromChild],
        }
    }

    /// Whether it is one of the calls workloads.
    pub(crate) fn is_calls(self) -> bool {
        matches!(self, Workload::Calls(_))
    }

    /// Whether it is one of the message workloads, which every system but those of the
    /// calls, the pool and the network takes part in.
    pub(crate) fn is_message(self) -> bool {
        !self.is_calls()
            && !self.is_resource()
            && !self.is_network()
            && !self.is_scale()
            && !matches!(self, Workload::Pairs(_))
            && self != Workload::Pool
    }

    /// Whether it is one of the scale workloads, `size-*`, `senders-*` and `rtt-*` by
    /// size, which only aiosock and the baseline run.
    pub(crate) fn is_scale(self) -> bool {
        matches!(
            self,
            Workload::Size(_) | Workload::Senders(_) | Workload::RttSize(_)
        )
    }

    /// Whether it runs over TCP on the loopback, in plaintext: `tcp-small` and `tcp-rtt`.
    pub(crate) fn is_tcp(self) -> bool {
        matches!(self, Workload::TcpSmall | Workload::TcpRtt)
    }

    /// Whether it runs over TLS on the loopback: `tls-small`, `tls-rtt` and `tls-4m`.
    pub(crate) fn is_tls(self) -> bool {
        matches!(
            self,
            Workload::TlsSmall | Workload::TlsRtt | Workload::Tls4M
        )
    }

    /// Whether it runs over the network (see [`crate::net`]), whose systems each say that
    /// they take part.
    pub(crate) fn is_network(self) -> bool {
        self.is_tcp() || self.is_tls()
    }

    /// Whether it moves resources (descriptors, shared memory): `fds` and `shm-4m`, whose
    /// systems each say that they take part.
    pub(crate) fn is_resource(self) -> bool {
        matches!(self, Workload::Fds | Workload::Shm4M)
    }

    /// Whether it counts small messages, so that a system making a system call per
    /// message moves a tenth of them ([`System::syscall_per_message`](crate::systems::System::syscall_per_message)).
    pub(crate) fn scaled(self) -> bool {
        matches!(
            self,
            Workload::Small
                | Workload::Concurrent
                | Workload::Stalled
                | Workload::TcpSmall
                | Workload::TlsSmall
                | Workload::Senders(_)
                | Workload::Pairs(_)
        )
    }

    /// The message shape.
    pub(crate) fn shape(self) -> Shape {
        match self {
            Workload::Data64K => Shape::Data(64 * 1024),
            Workload::Data4M | Workload::Tls4M => Shape::Data(4 * 1024 * 1024),
            Workload::Fds => Shape::Fd,
            Workload::Shm4M => Shape::Shm(4 * 1024 * 1024),
            Workload::Size(bytes) | Workload::RttSize(bytes) => Shape::Data(bytes as usize),
            _ => Shape::Ping,
        }
    }

    /// The rows it adds to the table: a label and a unit each.
    pub(crate) fn metrics(self) -> &'static [Metric] {
        const CALLS: &[Metric] = &[
            Metric {
                label: "",
                unit: "M calls/s",
            },
            Metric {
                label: "p50",
                unit: "µs",
            },
            Metric {
                label: "p99",
                unit: "µs",
            },
        ];
        const RTT: &[Metric] = &[
            Metric {
                label: "median",
                unit: "µs",
            },
            Metric {
                label: "p99",
                unit: "µs",
            },
        ];
        match self {
            Workload::Rtt | Workload::TcpRtt | Workload::TlsRtt | Workload::RttSize(_) => RTT,
            Workload::Small
            | Workload::Concurrent
            | Workload::TcpSmall
            | Workload::TlsSmall
            | Workload::Senders(_)
            | Workload::Pairs(_) => &[Metric {
                label: "",
                unit: "M msg/s",
            }],
            Workload::Size(_) => &[
                Metric {
                    label: "",
                    unit: "GB/s",
                },
                Metric {
                    label: "per msg",
                    unit: "µs",
                },
            ],
            Workload::Data64K | Workload::Data4M | Workload::Shm4M | Workload::Tls4M => &[Metric {
                label: "",
                unit: "GB/s",
            }],
            Workload::Fds => &[Metric {
                label: "",
                unit: "k fds/s",
            }],
            Workload::Stalled => &[Metric {
                label: "peak RSS",
                unit: "MiB",
            }],
            Workload::Calls(_) => CALLS,
            Workload::Pool => &[Metric {
                label: "",
                unit: "jobs/s",
            }],
        }
    }
}

/// One row kind of the table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Metric {
    /// What the row measures beyond the workload's name.
    pub(crate) label: &'static str,
    /// The unit of its values.
    pub(crate) unit: &'static str,
}

impl Metric {
    /// Whether a larger value is better: throughput is, latency and memory are not.
    pub(crate) fn higher_is_better(self) -> bool {
        !matches!(self.unit, "µs" | "MiB")
    }
}

/// Which way the measured messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Parent to child.
    ToChild,
    /// Child to parent.
    FromChild,
}

impl Direction {
    /// The direction on a command line.
    pub(crate) fn arg(self) -> &'static str {
        match self {
            Direction::ToChild => "p2c",
            Direction::FromChild => "c2p",
        }
    }

    /// Parses [`Direction::arg`].
    pub(crate) fn parse(arg: &str) -> Result<Direction, String> {
        match arg {
            "p2c" => Ok(Direction::ToChild),
            "c2p" => Ok(Direction::FromChild),
            _ => Err(format!("unknown direction {arg:?}")),
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::ToChild => "p→c",
            Direction::FromChild => "c→p",
        })
    }
}

/// How many messages each workload moves, and how long the stalled receiver sleeps.
#[derive(Debug, Clone)]
pub(crate) struct Sizes {
    pub(crate) rtt: u64,
    pub(crate) small: u64,
    pub(crate) data_64k: u64,
    pub(crate) data_4m: u64,
    pub(crate) concurrent: u64,
    pub(crate) stalled: u64,
    pub(crate) stall: Duration,
    /// Descriptors in each `fds` run: more than the process's descriptor limit, as every
    /// system closes what it passed (aiosock's outgoing queue is bounded in descriptors).
    pub(crate) fds: u64,
    /// Payloads in each `shm-4m` run.
    pub(crate) shm_4m: u64,
    /// The measuring window of each calls run (its warm-up is a fifth of it).
    pub(crate) calls_window: Duration,
    /// Jobs in each pool run (after a warm-up of one job per worker).
    pub(crate) pool: u64,
    /// A smoke test: the `size-*` runs move a tenth of their bytes.
    pub(crate) quick: bool,
}

impl Sizes {
    /// The full benchmark.
    pub(crate) fn full() -> Sizes {
        Sizes {
            rtt: 10_000,
            small: 2_000_000,
            data_64k: 8_192,
            data_4m: 128,
            concurrent: 2_000_000,
            stalled: 10_000_000,
            stall: Duration::from_secs(5),
            fds: 100_000,
            shm_4m: 256,
            calls_window: Duration::from_millis(500),
            pool: 1_000_000,
            quick: false,
        }
    }

    /// A smoke test: every path, few messages.
    pub(crate) fn quick() -> Sizes {
        Sizes {
            rtt: 2_000,
            small: 100_000,
            data_64k: 1_024,
            data_4m: 16,
            concurrent: 100_000,
            stalled: 300_000,
            stall: Duration::from_millis(300),
            fds: 2_000,
            shm_4m: 16,
            calls_window: Duration::from_millis(100),
            pool: 100_000,
            quick: true,
        }
    }

    /// Messages in one run of `workload` (all senders together); for a calls workload, its
    /// measuring window in milliseconds.
    pub(crate) fn count(&self, workload: Workload) -> u64 {
        match workload {
            Workload::Rtt | Workload::TcpRtt | Workload::TlsRtt => self.rtt,
            Workload::Small | Workload::TcpSmall | Workload::TlsSmall => self.small,
            Workload::Data64K => self.data_64k,
            Workload::Data4M | Workload::Tls4M => self.data_4m,
            Workload::Concurrent => self.concurrent,
            Workload::Stalled => self.stalled,
            Workload::Fds => self.fds,
            Workload::Shm4M => self.shm_4m,
            Workload::Calls(_) => self.calls_window.as_millis() as u64,
            Workload::Pool => self.pool,
            Workload::Size(bytes) => {
                let bytes_per_run = if self.quick {
                    SIZE_BYTES / 10
                } else {
                    SIZE_BYTES
                };
                (bytes_per_run / u64::from(bytes)).clamp(SIZE_MIN_MESSAGES, SIZE_MAX_MESSAGES)
            }
            Workload::Senders(_) => self.concurrent,
            Workload::Pairs(_) => self.small,
            Workload::RttSize(bytes) => (RTT_SIZE_BYTES / u64::from(bytes))
                .clamp(SIZE_MIN_MESSAGES, self.rtt.max(SIZE_MIN_MESSAGES)),
        }
    }

    /// The roles of the parent and of the child in one run, with `count` messages.
    pub(crate) fn roles(&self, workload: Workload, dir: Direction, count: u64) -> (Role, Role) {
        let senders = match workload {
            Workload::Concurrent => SENDERS,
            Workload::Senders(n) => n.into(),
            _ => 1,
        };
        let pairs = match workload {
            Workload::Pairs(n) => usize::from(n),
            _ => 1,
        };
        let stream = Stream {
            shape: workload.shape(),
            per_sender: count / (senders * pairs) as u64,
            senders,
            delay: Duration::ZERO,
            pairs,
        };
        match (workload, dir) {
            (Workload::Calls(in_flight), _) => {
                let window = Duration::from_millis(count);
                let plan = Plan {
                    in_flight: in_flight.into(),
                    warmup: window / 5,
                    window,
                };
                (Role::Call(plan), Role::Answer)
            }
            (Workload::Pool, _) => (Role::Deal { jobs: count }, Role::Work),
            (Workload::Rtt | Workload::TcpRtt | Workload::TlsRtt | Workload::RttSize(_), _) => (
                Role::Ping {
                    count,
                    shape: workload.shape(),
                },
                Role::Echo,
            ),
            (Workload::Stalled, _) => (
                Role::Recv(Stream {
                    delay: self.stall,
                    ..stream
                }),
                Role::Send(stream),
            ),
            (_, Direction::ToChild) => (Role::Send(stream.clone()), Role::Recv(stream)),
            (_, Direction::FromChild) => (Role::Recv(stream.clone()), Role::Send(stream)),
        }
    }
}

/// A one-way stream of messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stream {
    /// What each message is.
    pub(crate) shape: Shape,
    /// Messages from each sender.
    pub(crate) per_sender: u64,
    /// Concurrent senders (each numbered in its messages).
    pub(crate) senders: usize,
    /// How long the receiver sleeps after `Ready` before it reads.
    pub(crate) delay: Duration,
    /// Connections, each carrying the whole stream as described (`per_sender` from each
    /// sender); more than one only in the `pairs-*` workloads.
    pub(crate) pairs: usize,
}

/// What one process does in a run. Every system implements the four.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// Waits for `Ready`, sends the stream, flushes and closes.
    Send(Stream),
    /// Sends `Ready`, sleeps `delay`, then receives and checks the stream and the close
    /// after it. Timed from `Ready` to the last message.
    Recv(Stream),
    /// Waits for `Ready`, then makes `count` round trips of message `i` of `shape`, each
    /// timed and checked.
    Ping {
        /// Round trips.
        count: u64,
        /// What each message is: `Ping(i)`, or (in the `rtt-*` by size workloads, of
        /// aiosock and the baseline) a `Data` numbered `i`.
        shape: Shape,
    },
    /// Sends `Ready`, then sends back every message until the peer closes.
    Echo,
    /// The client of the calls workloads: makes calls as the plan says, each timed.
    Call(Plan),
    /// The server of the calls workloads: answers every call until the peer closes.
    Answer,
    /// The parent of the pool workload: starts the workers, hands them `jobs` jobs and
    /// checks every result; timed from the first job to the last result.
    Deal {
        /// Jobs, over all workers.
        jobs: u64,
    },
    /// A worker of the pool workload (one of several children): answers every job until
    /// the parent closes.
    Work,
}

impl Role {
    /// The shape of the stream a sender or receiver moves (`None` for the other roles).
    pub(crate) fn shape(&self) -> Option<Shape> {
        match self {
            Role::Send(stream) | Role::Recv(stream) => Some(stream.shape),
            _ => None,
        }
    }

    /// The role as command-line arguments for the child.
    pub(crate) fn to_args(&self) -> Vec<String> {
        match self {
            Role::Send(s) | Role::Recv(s) => vec![
                if matches!(self, Role::Send(_)) {
                    "send"
                } else {
                    "recv"
                }
                .to_string(),
                s.shape.to_string(),
                s.per_sender.to_string(),
                s.senders.to_string(),
                s.delay.as_millis().to_string(),
                s.pairs.to_string(),
            ],
            Role::Ping { count, shape } => {
                vec!["ping".into(), count.to_string(), shape.to_string()]
            }
            Role::Echo => vec!["echo".into()],
            Role::Call(plan) => vec![
                "call".into(),
                plan.in_flight.to_string(),
                plan.warmup.as_millis().to_string(),
                plan.window.as_millis().to_string(),
            ],
            Role::Answer => vec!["answer".into()],
            Role::Deal { jobs } => vec!["deal".into(), jobs.to_string()],
            Role::Work => vec!["work".into()],
        }
    }

    /// Parses [`Role::to_args`].
    pub(crate) fn parse(args: &[String]) -> Result<Role, String> {
        let num = |i: usize| -> Result<u64, String> {
            args.get(i)
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| format!("bad role arguments {args:?}"))
        };
        match args.first().map(String::as_str) {
            Some(kind @ ("send" | "recv")) => {
                let stream = Stream {
                    shape: args.get(1).ok_or("missing shape")?.parse()?,
                    per_sender: num(2)?,
                    senders: num(3)? as usize,
                    delay: Duration::from_millis(num(4)?),
                    pairs: num(5)? as usize,
                };
                Ok(if kind == "send" {
                    Role::Send(stream)
                } else {
                    Role::Recv(stream)
                })
            }
            Some("ping") => Ok(Role::Ping {
                count: num(1)?,
                shape: args.get(2).ok_or("missing shape")?.parse()?,
            }),
            Some("echo") => Ok(Role::Echo),
            Some("call") => Ok(Role::Call(Plan {
                in_flight: num(1)? as usize,
                warmup: Duration::from_millis(num(2)?),
                window: Duration::from_millis(num(3)?),
            })),
            Some("answer") => Ok(Role::Answer),
            Some("deal") => Ok(Role::Deal { jobs: num(1)? }),
            Some("work") => Ok(Role::Work),
            _ => Err(format!("bad role arguments {args:?}")),
        }
    }
}

/// What a role measured.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// A receiver's time from `Ready` to the last message; the pool parent's time from
    /// the first job to the last result.
    pub(crate) elapsed: Option<Duration>,
    /// A pinger's round-trip times.
    pub(crate) latencies: Vec<Duration>,
    /// A calls client's measurements.
    pub(crate) calls: Option<CallStats>,
}

impl Outcome {
    /// A receiver's outcome.
    pub(crate) fn timed(elapsed: Duration) -> Outcome {
        Outcome {
            elapsed: Some(elapsed),
            ..Outcome::default()
        }
    }

    /// A pinger's outcome.
    pub(crate) fn latencies(latencies: Vec<Duration>) -> Outcome {
        Outcome {
            latencies,
            ..Outcome::default()
        }
    }

    /// A calls client's outcome.
    pub(crate) fn calls(stats: CallStats) -> Outcome {
        Outcome {
            calls: Some(stats),
            ..Outcome::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_args() {
        let sizes = Sizes::quick();
        for workload in Workload::ALL {
            for &dir in workload.directions() {
                let (parent, child) = sizes.roles(workload, dir, sizes.count(workload));
                for role in [parent, child] {
                    assert_eq!(Role::parse(&role.to_args()), Ok(role));
                }
            }
        }
    }
}
