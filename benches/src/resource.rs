//! What the `fds` and `shm-4m` workloads move, the same for every system, and how a
//! receiver checks it.
//!
//! - `fds`: the sender opens `/dev/null` once, before `Ready` ([`FdSource`]), and each
//!   message carries a fresh duplicate of it (`dup`, in the timed loop, the same for every
//!   system: aiosock's `Fd` and tokio-unix-ipc's `Handle` own their descriptor, so each
//!   message needs one of its own) with its sequence number. The receiver checks the
//!   sequence, `fstat`s what it got and compares the device and inode with those of its
//!   own `/dev/null`, then closes it ([`Tally::fd`]).
//! - `shm-4m`: payload `seq` is 8-byte little-endian words, word 0 the sequence number and
//!   word `j` the wrapping `seq * K + j` ([`fill`]), written over a fresh zeroed buffer of
//!   the system's kind (a `Vec`, a `ShmBuf`, a loaned iceoryx2 sample). The receiver adds
//!   up every word and compares the sum with its closed form ([`check_filled`]), so every
//!   byte is read and a payload of another sequence number fails.
//!
//! aiosock's messages for both are [`Carry`]; the other systems' types sit with their
//! modules.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::sys::stat::{FileStat, fstat, stat};

use crate::BoxError;
use crate::msg::Shape;
use crate::workload::Stream;

/// The multiplier of [`fill`]'s words (the 64-bit golden ratio).
const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// What aiosock sends in the `fds` and `shm-4m` workloads.
#[aiosock::protocol]
#[derive(Debug)]
pub(crate) enum Carry {
    /// A descriptor (a duplicate of `/dev/null`) and its sequence number.
    Fd {
        /// The message's sequence number.
        seq: u64,
        /// The descriptor.
        fd: aiosock::Fd,
    },
    /// A sealed shared buffer holding a [`fill`]ed payload.
    Shm(aiosock::Shm),
    /// The receiver is connected and reading: start now.
    Ready,
}

/// Writes payload `seq` over `buf` (whose length is a multiple of 8): word 0 is `seq`,
/// word `j` is the wrapping `seq * K + j`. Every word is written.
pub(crate) fn fill(seq: u64, buf: &mut [u8]) {
    let (words, _) = buf.as_chunks_mut::<8>();
    let base = seq.wrapping_mul(K);
    for (j, word) in words.iter_mut().enumerate() {
        *word = base.wrapping_add(j as u64).to_le_bytes();
    }
    if let Some(first) = words.first_mut() {
        *first = seq.to_le_bytes();
    }
}

/// The wrapping sum of the words of payload `seq` with `words` words.
fn filled_sum(seq: u64, words: u64) -> u64 {
    if words == 0 {
        return 0;
    }
    // seq + sum over j in 1..words of (seq * K + j).
    let rest = words - 1;
    let triangle = if rest.is_multiple_of(2) {
        (rest / 2).wrapping_mul(words)
    } else {
        rest.wrapping_mul(words / 2)
    };
    seq.wrapping_add(rest.wrapping_mul(seq.wrapping_mul(K)))
        .wrapping_add(triangle)
}

/// Reads every byte of `bytes` and checks that it is payload `expected` of `len` bytes.
pub(crate) fn check_filled(expected: u64, bytes: &[u8], len: usize) -> Result<(), String> {
    if bytes.len() != len {
        return Err(format!("payload of {} bytes, expected {len}", bytes.len()));
    }
    let (words, tail) = bytes.as_chunks::<8>();
    if !tail.is_empty() {
        return Err(format!("payload of {len} bytes, not whole words"));
    }
    let sum = words.iter().fold(0u64, |sum, word| {
        sum.wrapping_add(u64::from_le_bytes(*word))
    });
    let seq = words.first().map_or(0, |w| u64::from_le_bytes(*w));
    if seq != expected {
        return Err(format!("payload {seq}, expected {expected}"));
    }
    if sum != filled_sum(expected, words.len() as u64) {
        return Err(format!("payload {seq} has corrupt content"));
    }
    Ok(())
}

/// The descriptors a sender of the `fds` workload sends: duplicates of one `/dev/null`.
#[derive(Debug)]
pub(crate) struct FdSource {
    devnull: File,
}

impl FdSource {
    /// Opens `/dev/null` (before the timed loop).
    pub(crate) fn open() -> std::io::Result<FdSource> {
        Ok(FdSource {
            devnull: File::open("/dev/null")?,
        })
    }

    /// The descriptor of the next message: a new duplicate (close-on-exec).
    pub(crate) fn next(&self) -> std::io::Result<OwnedFd> {
        self.devnull.as_fd().try_clone_to_owned()
    }
}

/// Checks what a receiver of the `fds` or `shm-4m` workload gets: every message in order,
/// each a working descriptor for `/dev/null` or the whole payload expected, and none
/// missing at the end.
#[derive(Debug)]
pub(crate) struct Tally {
    shape: Shape,
    next: u64,
    count: u64,
    /// The receiver's own `/dev/null`, for an `fds` stream.
    devnull: Option<FileStat>,
}

impl Tally {
    /// Expects `stream` (from one sender).
    pub(crate) fn new(stream: &Stream) -> Result<Tally, BoxError> {
        if stream.senders != 1 {
            return Err(format!("{} senders; these workloads have one", stream.senders).into());
        }
        let devnull = match stream.shape {
            Shape::Fd => Some(stat("/dev/null")?),
            Shape::Shm(_) => None,
            other => return Err(format!("a {other} stream is no resource stream").into()),
        };
        Ok(Tally {
            shape: stream.shape,
            next: 0,
            count: stream.per_sender,
            devnull,
        })
    }

    /// Messages still expected.
    pub(crate) fn remaining(&self) -> u64 {
        self.count - self.next
    }

    /// Checks a received descriptor with its sequence number (the caller closes it after).
    pub(crate) fn fd(&mut self, seq: u64, fd: BorrowedFd<'_>) -> Result<(), String> {
        let n = self.next;
        let Some(devnull) = &self.devnull else {
            return Err(format!(
                "message {n}: a descriptor in a {} stream",
                self.shape
            ));
        };
        if seq != n || n >= self.count {
            return Err(format!("message {n}: descriptor {seq}, expected {n}"));
        }
        let got = fstat(fd).map_err(|e| format!("message {n}: fstat of the descriptor: {e}"))?;
        if (got.st_dev, got.st_ino, got.st_rdev)
            != (devnull.st_dev, devnull.st_ino, devnull.st_rdev)
        {
            return Err(format!("message {n}: the descriptor is not /dev/null"));
        }
        self.next += 1;
        Ok(())
    }

    /// Checks a received payload, reading every byte.
    pub(crate) fn payload(&mut self, bytes: &[u8]) -> Result<(), String> {
        let n = self.next;
        let Shape::Shm(len) = self.shape else {
            return Err(format!("message {n}: a payload in a {} stream", self.shape));
        };
        if n >= self.count {
            return Err(format!("message {n}: a payload after the last"));
        }
        check_filled(n, bytes, len).map_err(|e| format!("message {n}: {e}"))?;
        self.next += 1;
        Ok(())
    }

    /// Checks that the stream ended (the peer closed) only after every message arrived.
    pub(crate) fn check_end(&self) -> Result<(), String> {
        match self.remaining() {
            0 => Ok(()),
            missing => Err(format!(
                "the peer closed after {} messages; {missing} missing",
                self.next
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stream(shape: Shape, per_sender: u64) -> Stream {
        Stream {
            shape,
            per_sender,
            senders: 1,
            delay: Duration::ZERO,
            pairs: 1,
        }
    }

    #[test]
    fn the_closed_form_sum_matches_the_words() {
        for (seq, words) in [(0, 1), (1, 2), (7, 3), (u64::MAX, 4), (12345, 524_288)] {
            let mut buf = vec![0; words * 8];
            fill(seq, &mut buf);
            check_filled(seq, &buf, buf.len()).unwrap();
            assert!(check_filled(seq.wrapping_add(1), &buf, buf.len()).is_err());
        }
        let mut buf = vec![0; 64];
        fill(3, &mut buf);
        buf.swap(8, 9);
        assert!(check_filled(3, &buf, 64).is_err(), "a changed word");
        assert!(check_filled(3, &buf[..56], 64).is_err(), "short");
    }

    #[test]
    fn a_tally_takes_devnull_in_order_and_nothing_else() {
        let source = FdSource::open().unwrap();
        let mut tally = Tally::new(&stream(Shape::Fd, 2)).unwrap();
        assert!(tally.fd(1, source.next().unwrap().as_fd()).is_err());
        tally.fd(0, source.next().unwrap().as_fd()).unwrap();
        assert!(tally.check_end().is_err());
        let other = File::open("/proc/self/status").unwrap();
        assert!(tally.fd(1, other.as_fd()).is_err(), "not /dev/null");
        tally.fd(1, source.next().unwrap().as_fd()).unwrap();
        tally.check_end().unwrap();
        assert!(tally.fd(2, source.next().unwrap().as_fd()).is_err());
        assert!(tally.payload(&[0; 8]).is_err());

        let mut tally = Tally::new(&stream(Shape::Shm(16), 1)).unwrap();
        let mut buf = vec![0; 16];
        fill(0, &mut buf);
        tally.payload(&buf).unwrap();
        tally.check_end().unwrap();
        assert!(tally.payload(&buf).is_err());
        assert!(tally.fd(1, source.next().unwrap().as_fd()).is_err());
    }
}
