//! The one message type every system sends, how a sender makes the `i`-th message, and
//! how a receiver checks what arrives.
//!
//! All systems send the same Rust type with the same serde impl (the one
//! `#[aiosock::protocol]` derives, which writes `Vec<u8>` as one byte string), so the
//! table compares transports, not message definitions. The `fds` and `shm-4m` workloads
//! are the exception: their messages carry descriptors or shared memory, which each system
//! has its own type for (see [`crate::resource`]); where a system sends a `shm-4m` payload
//! as plain bytes, it is a `Data` built by [`Source`] and checked by [`Checker`] as here.

use std::fmt;

/// What travels in every run, in both directions.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Msg {
    /// A small message: a sequence number, tagged with its sender (see [`tag`]).
    Ping(u64),
    /// A bulk message: the sequence number in the first 8 bytes, then a fixed pattern.
    Data(Vec<u8>),
    /// The passive side (receiver, echoer) is connected and reading: start now.
    Ready,
}

/// How many bits of a `Ping` hold the sequence number; the sender's index sits above.
const SEQ_BITS: u32 = 48;

/// The value of the `seq`-th `Ping` from sender `sender`.
pub(crate) fn tag(sender: usize, seq: u64) -> u64 {
    ((sender as u64) << SEQ_BITS) | seq
}

/// The kind of message a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `Ping(u64)`.
    Ping,
    /// `Data(Vec<u8>)` of this many bytes (at least 8).
    Data(usize),
    /// One descriptor and a sequence number per message, in each system's own message
    /// type (the `fds` workload; see [`crate::resource`]).
    Fd,
    /// A payload of this many bytes (a multiple of 8, at least 8) that the sender builds in
    /// place, as [`resource::fill`](crate::resource::fill) writes it, and the receiver reads
    /// whole (the `shm-4m` workload). A system with shared memory sends it in that; one
    /// without sends it as a `Data`.
    Shm(usize),
}

impl Shape {
    /// Payload bytes per message, as counted for GB/s.
    pub(crate) fn bytes(self) -> usize {
        match self {
            Shape::Ping | Shape::Fd => 8,
            Shape::Data(len) | Shape::Shm(len) => len,
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Ping => f.write_str("ping"),
            Shape::Data(len) => write!(f, "data:{len}"),
            Shape::Fd => f.write_str("fd"),
            Shape::Shm(len) => write!(f, "shm:{len}"),
        }
    }
}

impl std::str::FromStr for Shape {
    type Err = String;

    fn from_str(s: &str) -> Result<Shape, String> {
        if let Some(len) = s.strip_prefix("data:") {
            return match len.parse() {
                Ok(len) if len >= 8 => Ok(Shape::Data(len)),
                _ => Err(format!("bad data length {len:?}")),
            };
        }
        if let Some(len) = s.strip_prefix("shm:") {
            return match len.parse::<usize>() {
                Ok(len) if len >= 8 && len.is_multiple_of(8) => Ok(Shape::Shm(len)),
                _ => Err(format!("bad shm length {len:?}")),
            };
        }
        match s {
            "ping" => Ok(Shape::Ping),
            "fd" => Ok(Shape::Fd),
            _ => Err(format!("unknown shape {s:?}")),
        }
    }
}

/// The filler of every `Data` message after its first 8 bytes.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (j as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect()
}

/// Makes the messages one sender sends.
#[derive(Debug)]
pub(crate) struct Source {
    shape: Shape,
    sender: usize,
    template: Vec<u8>,
}

impl Source {
    /// Messages of `shape` from sender number `sender` (0 unless senders are concurrent).
    pub(crate) fn new(shape: Shape, sender: usize) -> Source {
        let template = match shape {
            Shape::Ping | Shape::Fd | Shape::Shm(_) => Vec::new(),
            Shape::Data(len) => pattern(len),
        };
        Source {
            shape,
            sender,
            template,
        }
    }

    /// The `seq`-th message. A `Data` message is a fresh copy of the template, as a
    /// producer of new data would allocate and fill it; a `Shm` payload is a fresh zeroed
    /// `Vec` filled in place ([`resource::fill`](crate::resource::fill)).
    ///
    /// A `Fd` stream has no `Msg`: its messages carry descriptors, which each system sends
    /// in its own type. Its stand-in is the `Ping` of the sequence number, which a
    /// [`Checker`] refuses, so that a system sending it by mistake fails the run.
    pub(crate) fn msg(&self, seq: u64) -> Msg {
        match self.shape {
            Shape::Ping | Shape::Fd => Msg::Ping(tag(self.sender, seq)),
            Shape::Data(_) => {
                let mut data = self.template.clone();
                data[..8].copy_from_slice(&seq.to_le_bytes());
                Msg::Data(data)
            }
            Shape::Shm(len) => {
                let mut data = vec![0; len];
                crate::resource::fill(seq, &mut data);
                Msg::Data(data)
            }
        }
    }
}

/// Checks a received stream: every message is the next one expected from its sender, with
/// the right content, and nothing is missing at the end.
#[derive(Debug)]
pub(crate) struct Checker {
    shape: Shape,
    template: Vec<u8>,
    /// The next sequence number expected from each sender.
    next: Vec<u64>,
    per_sender: u64,
    received: u64,
}

impl Checker {
    /// Expects `per_sender` messages of `shape` from each of `senders` senders.
    pub(crate) fn new(shape: Shape, senders: usize, per_sender: u64) -> Checker {
        let template = match shape {
            Shape::Ping | Shape::Fd | Shape::Shm(_) => Vec::new(),
            Shape::Data(len) => pattern(len),
        };
        Checker {
            shape,
            template,
            next: vec![0; senders],
            per_sender,
            received: 0,
        }
    }

    /// Messages still expected.
    pub(crate) fn remaining(&self) -> u64 {
        self.per_sender * self.next.len() as u64 - self.received
    }

    /// Checks one received message.
    pub(crate) fn check(&mut self, msg: &Msg) -> Result<(), String> {
        let n = self.received;
        match (self.shape, msg) {
            (Shape::Ping, Msg::Ping(value)) => {
                let sender = (value >> SEQ_BITS) as usize;
                let seq = value & ((1 << SEQ_BITS) - 1);
                let Some(next) = self.next.get_mut(sender) else {
                    return Err(format!("message {n}: Ping from unknown sender {sender}"));
                };
                if seq != *next || seq >= self.per_sender {
                    return Err(format!(
                        "message {n}: Ping {seq} from sender {sender}, expected {next}"
                    ));
                }
                *next += 1;
            }
            (Shape::Data(len), Msg::Data(data)) => {
                let expected = self.next[0];
                if data.len() != len {
                    return Err(format!(
                        "message {n}: Data of {} bytes, expected {len}",
                        data.len()
                    ));
                }
                let seq = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
                if seq != expected {
                    return Err(format!("message {n}: Data {seq}, expected {expected}"));
                }
                if data[8..] != self.template[8..] {
                    return Err(format!("message {n}: Data {seq} has corrupt content"));
                }
                self.next[0] += 1;
            }
            (Shape::Shm(len), Msg::Data(data)) => {
                crate::resource::check_filled(self.next[0], data, len)
                    .map_err(|e| format!("message {n}: {e}"))?;
                self.next[0] += 1;
            }
            (_, other) => return Err(format!("message {n}: unexpected {}", describe(other))),
        }
        self.received += 1;
        Ok(())
    }

    /// Checks that the stream ended (the peer closed) only after every message arrived.
    pub(crate) fn check_end(&self) -> Result<(), String> {
        match self.remaining() {
            0 => Ok(()),
            missing => Err(format!(
                "the peer closed after {} messages; {missing} missing",
                self.received
            )),
        }
    }
}

/// A short description of a message for error text (never a whole 4 MiB buffer).
pub(crate) fn describe(msg: &Msg) -> String {
    match msg {
        Msg::Ping(v) => format!("Ping({v})"),
        Msg::Data(d) => format!("Data({} bytes)", d.len()),
        Msg::Ready => "Ready".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checker_accepts_what_sources_make() {
        let mut checker = Checker::new(Shape::Ping, 2, 3);
        let a = Source::new(Shape::Ping, 0);
        let b = Source::new(Shape::Ping, 1);
        for seq in 0..3 {
            checker.check(&b.msg(seq)).unwrap();
            checker.check(&a.msg(seq)).unwrap();
        }
        checker.check_end().unwrap();

        let mut checker = Checker::new(Shape::Data(100), 1, 2);
        let source = Source::new(Shape::Data(100), 0);
        checker.check(&source.msg(0)).unwrap();
        assert!(checker.check_end().is_err());
        checker.check(&source.msg(1)).unwrap();
        checker.check_end().unwrap();
    }

    #[test]
    fn checker_rejects_order_content_and_extras() {
        let source = Source::new(Shape::Ping, 0);
        let mut checker = Checker::new(Shape::Ping, 1, 2);
        assert!(checker.check(&source.msg(1)).is_err());
        checker.check(&source.msg(0)).unwrap();
        checker.check(&source.msg(1)).unwrap();
        assert!(checker.check(&source.msg(2)).is_err());

        let source = Source::new(Shape::Data(64), 0);
        let mut checker = Checker::new(Shape::Data(64), 1, 1);
        let Msg::Data(mut data) = source.msg(0) else {
            unreachable!()
        };
        data[40] ^= 1;
        assert!(checker.check(&Msg::Data(data)).is_err());
        assert!(checker.check(&Msg::Ready).is_err());

        // A filled payload is summed whole: one flipped bit anywhere is caught.
        let source = Source::new(Shape::Shm(4096), 0);
        let mut checker = Checker::new(Shape::Shm(4096), 1, 2);
        checker.check(&source.msg(0)).unwrap();
        let Msg::Data(mut data) = source.msg(1) else {
            unreachable!()
        };
        data[4000] ^= 0x10;
        assert!(checker.check(&Msg::Data(data)).is_err());
        assert!(checker.check(&source.msg(2)).is_err(), "out of order");

        // A descriptor stream has no `Msg`: its stand-in is refused.
        let mut checker = Checker::new(Shape::Fd, 1, 1);
        assert!(checker.check(&Source::new(Shape::Fd, 0).msg(0)).is_err());
    }

    #[test]
    fn shapes_round_trip_through_text() {
        for shape in [Shape::Ping, Shape::Data(64), Shape::Fd, Shape::Shm(4 << 20)] {
            assert_eq!(shape.to_string().parse(), Ok(shape));
        }
        assert!("shm:12".parse::<Shape>().is_err(), "not whole words");
        assert!("data:7".parse::<Shape>().is_err());
    }
}
