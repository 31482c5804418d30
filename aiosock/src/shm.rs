//! Shared memory for large payloads: [`ShmBuf`], filled in place, and [`Shm`], the sealed
//! buffer that travels in messages.
//!
//! A buffer is a memfd. The sender fills it through a writable mapping, then
//! [freezes](ShmBuf::freeze) it: the mapping goes, and the memfd is sealed against
//! writing, shrinking, growing and further sealing, so nobody (not even its sender) can
//! change it again. In a message it travels as a descriptor; the receiver checks the
//! seals and the size, then maps it read-only. The bytes are never copied through the
//! socket, and the receiver reads the very pages the sender wrote.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, FdError};
use crate::{fd, sys};

/// A shared-memory buffer being filled, to be [frozen](Self::freeze) into a [`Shm`] that
/// travels in messages without its bytes being copied.
///
/// It starts as `len` zero bytes and derefs to `&mut [u8]`: build the payload in place
/// (decode an image into it, write a tensor's elements), then freeze it. Its memory is a
/// memfd of its own, allocated up front; nothing else can reach it until it is frozen.
///
/// # Examples
///
/// ```
/// use aiosock::{Shm, ShmBuf};
///
/// #[aiosock::protocol]
/// #[derive(Debug)]
/// enum Frames {
///     Frame { seq: u64, pixels: Shm },
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (a, b) = aiosock::pair::<Frames, Frames>()?;
/// let (tx, _) = a.into_split();
/// let (_, mut rx) = b.into_split();
///
/// let mut buf = ShmBuf::new(4 * 1024 * 1024)?;
/// for (i, byte) in buf.iter_mut().enumerate() {
///     *byte = (i % 251) as u8;
/// }
/// tx.send(Frames::Frame { seq: 1, pixels: buf.freeze()? }).await?;
///
/// let Some(Frames::Frame { seq, pixels }) = rx.recv().await? else { panic!("a frame") };
/// assert_eq!((seq, pixels.len(), pixels[1000]), (1, 4 * 1024 * 1024, (1000 % 251) as u8));
/// # Ok(())
/// # }
/// ```
pub struct ShmBuf {
    fd: OwnedFd,
    map: sys::Mapping,
}

impl ShmBuf {
    /// A buffer of `len` zero bytes, in a memfd of its own, mapped for writing (its pages
    /// are allocated at once).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the system refuses the memfd or the mapping (out of memory or
    /// descriptors).
    pub fn new(len: usize) -> Result<ShmBuf, Error> {
        let fd = sys::memfd(len)?;
        let map = sys::Mapping::writable(fd.as_fd(), len)?;
        Ok(ShmBuf { fd, map })
    }

    /// Seals the buffer for good and makes it a [`Shm`], ready to send: its bytes can never
    /// change again, in this process or any other.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the system refuses the seal or the read-only mapping.
    pub fn freeze(self) -> Result<Shm, Error> {
        let ShmBuf { fd, map } = self;
        let len = map.as_slice().len();
        // The writable mapping must go first: the kernel refuses to seal a memfd against
        // writing while a writable shared mapping of it exists.
        drop(map);
        sys::seal(fd.as_fd())?;
        // The sender seldom reads what it sends: its pages are mapped when first read.
        let map = sys::Mapping::read_only(fd.as_fd(), len, false)?;
        Ok(Shm {
            inner: Arc::new(Sealed { fd, map }),
        })
    }
}

impl Deref for ShmBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.map.as_slice()
    }
}

impl DerefMut for ShmBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.map.as_mut_slice()
    }
}

impl fmt::Debug for ShmBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShmBuf({} bytes)", self.map.as_slice().len())
    }
}

/// A sealed, read-only shared-memory buffer: a message field for large payloads whose
/// bytes are not copied through the socket.
///
/// Made by [`ShmBuf::freeze`] (or [`Shm::copy_from_slice`]); derefs to `&[u8]`. In a
/// message it travels as a descriptor with its length. The receiver maps the sender's
/// memfd read-only after checking that it is sealed against every change (`F_SEAL_WRITE`,
/// `F_SEAL_SHRINK`, `F_SEAL_GROW`, `F_SEAL_SEAL`) and has the size the message gives:
/// otherwise a hostile sender could change the bytes under the reader, or shrink the
/// file so that reading it faults. A buffer that fails a check is
/// [`FdError::NotSealed`] or [`FdError::ShmSize`], one larger than
/// [`Config::max_shm_len`](crate::Config::max_shm_len) is [`FdError::ShmTooLarge`], and
/// one with holes (pages never written, which reading would allocate in the receiver) is
/// [`FdError::ShmSparse`]: the sender pays for every byte it sends.
///
/// Clones share the mapping. The memory is freed when the last `Shm` for it, in any
/// process, is dropped (or its process exits, even by `kill -9`), and the frame carrying
/// it has been received or discarded. Each `Shm` (not each clone) holds its memfd's
/// descriptor open as long as it lives: a program that keeps many received buffers
/// counts them against its descriptor limit, beyond what
/// [`Config::max_fds`](crate::Config::max_fds) bounds while they wait to be received.
pub struct Shm {
    inner: Arc<Sealed>,
}

struct Sealed {
    fd: OwnedFd,
    map: sys::Mapping,
}

impl Shm {
    /// A sealed buffer holding a copy of `bytes`.
    ///
    /// # Errors
    ///
    /// As [`ShmBuf::new`] and [`ShmBuf::freeze`].
    pub fn copy_from_slice(bytes: &[u8]) -> Result<Shm, Error> {
        let mut buf = ShmBuf::new(bytes.len())?;
        buf.copy_from_slice(bytes);
        buf.freeze()
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        self.inner.map.as_slice()
    }

    /// Checks what a peer sent and maps it.
    fn adopt(fd: OwnedFd, len: u64) -> Result<Shm, FdError> {
        let max = fd::max_shm_len();
        if len > max {
            return Err(FdError::ShmTooLarge { len, max });
        }
        let seals = sys::seals(fd.as_fd());
        if !sys::fully_sealed(seals) {
            return Err(FdError::NotSealed { seals });
        }
        let actual = sys::file_size(fd.as_fd()).map_err(|_| FdError::NotSealed { seals: 0 })?;
        if actual != len {
            return Err(FdError::ShmSize {
                announced: len,
                actual,
            });
        }
        // Every page must exist already, paid for by its sender. Reading a hole of a
        // memfd allocates a page for the reader: a sealed, sparse buffer (a 1 GiB
        // `ftruncate` costs its sender nothing) would make this end allocate its whole
        // length. A `ShmBuf` is populated when made, so it always passes. Both counts
        // are asked: pages allocated past the end (`fallocate` with `KEEP_SIZE`) count in
        // `st_blocks` but leave the holes inside, which `SEEK_HOLE` finds.
        let allocated = sys::allocated_bytes(fd.as_fd()).unwrap_or(0);
        let whole = sys::first_hole(fd.as_fd()).unwrap_or(0);
        if allocated < len || whole < len {
            return Err(FdError::ShmSparse {
                len,
                allocated: allocated.min(whole),
            });
        }
        let map_len = usize::try_from(len).map_err(|_| FdError::ShmTooLarge {
            len,
            max: usize::MAX as u64,
        })?;
        // Each page is mapped when first read, not here (`MAP_POPULATE`): the same memfd
        // can come many times in one frame and in every frame (each a new duplicate),
        // and filling page tables for all of it while decoding would cost this end work
        // and memory in proportion to lengths the sender pays for only once.
        let map =
            sys::Mapping::read_only(fd.as_fd(), map_len, false).map_err(|e| FdError::ShmMap {
                reason: e.to_string(),
            })?;
        Ok(Shm {
            inner: Arc::new(Sealed { fd, map }),
        })
    }
}

impl Clone for Shm {
    fn clone(&self) -> Shm {
        Shm {
            inner: self.inner.clone(),
        }
    }
}

impl Deref for Shm {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Shm {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl fmt::Debug for Shm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Shm({} bytes)", self.as_slice().len())
    }
}

/// In a message: the index of the memfd among the frame's descriptors, then the length.
impl Serialize for Shm {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let index = fd::attach(self.inner.fd.as_fd()).map_err(S::Error::custom)?;
        (index, self.as_slice().len() as u64).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Shm {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Shm, D::Error> {
        let (index, len) = <(u32, u64)>::deserialize(deserializer)?;
        let memfd = fd::claim(index).map_err(D::Error::custom)?;
        Shm::adopt(memfd, len).map_err(|problem| D::Error::custom(fd::refuse(problem)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode_payload_with, encode_payload_with};

    fn decode(payload: &[u8], fds: Vec<OwnedFd>, max: u64) -> Result<Shm, Error> {
        decode_payload_with(payload, 16, fds, max)
    }

    /// The process's page tables, in KiB (`VmPTE`).
    fn page_tables_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmPTE:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmPTE")
    }

    #[test]
    fn one_memfd_many_times_in_a_frame_costs_no_page_tables_to_decode() {
        const LEN: usize = 64 << 20;
        const TIMES: usize = 64;
        let shm = ShmBuf::new(LEN).expect("buf").freeze().expect("freeze");
        // Paid for once by its sender, attached 64 times (each a duplicate): 4 GiB to map.
        let (payload, fds) = encode_payload_with(&vec![shm.clone(); TIMES]).expect("encode");
        assert_eq!(fds.len(), TIMES);
        let before = page_tables_kib();
        let back: Vec<Shm> = decode_payload_with(&payload, 16, fds, LEN as u64).expect("decode");
        let grown = page_tables_kib().saturating_sub(before);
        assert_eq!(back.len(), TIMES);
        // Populating every mapping would take 2 KiB of page tables per MiB: 8 MiB here.
        assert!(
            grown < 1024,
            "decoding grew the page tables by {grown} KiB for {TIMES} mappings of one buffer"
        );
        // Reading is still the receiver's choice, and works.
        assert_eq!(back[TIMES - 1].as_slice()[LEN - 1], 0);
    }

    #[test]
    fn a_frozen_buffer_travels_as_its_memfd_and_is_read_in_place() {
        let mut buf = ShmBuf::new(10_000).expect("buf");
        assert!(buf.iter().all(|&b| b == 0));
        buf[9_999] = 42;
        let shm = buf.freeze().expect("freeze");
        let (payload, fds) = encode_payload_with(&shm).expect("encode");
        assert_eq!(fds.len(), 1);
        let back = decode(&payload, fds, 1 << 20).expect("decode");
        assert_eq!((back.len(), back[9_999]), (10_000, 42));
        assert_eq!(
            Shm::copy_from_slice(b"").expect("empty").len(),
            0,
            "an empty buffer maps nothing"
        );
    }

    #[test]
    fn a_sparse_buffer_is_refused_without_allocating_its_holes() {
        const LEN: usize = 64 << 20;
        // Sealed and the right size, but never written: 64 MiB of holes, free to make.
        let sparse = sys::memfd(LEN).expect("memfd");
        sys::seal(sparse.as_fd()).expect("seal");
        assert_eq!(sys::allocated_bytes(sparse.as_fd()).expect("stat"), 0);
        let probe = sparse.try_clone().expect("dup");
        let (payload, _) = encode_payload_with(&(0u32, LEN as u64)).expect("encode");
        match decode(&payload, vec![sparse], 1 << 30) {
            Err(crate::Error::Fds(FdError::ShmSparse { len, allocated })) => {
                assert_eq!((len, allocated), (LEN as u64, 0));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            sys::allocated_bytes(probe.as_fd()).expect("stat"),
            0,
            "the refusal read nothing: no page was allocated for it"
        );
        // Pages allocated past the end, as many as its length, and holes inside: its
        // memory count is right, its holes are still holes.
        let behind = sys::memfd(LEN).expect("memfd");
        nix::fcntl::fallocate(
            behind.as_fd(),
            nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
            LEN as i64,
            LEN as i64,
        )
        .expect("fallocate");
        sys::seal(behind.as_fd()).expect("seal");
        assert!(sys::allocated_bytes(behind.as_fd()).expect("stat") >= LEN as u64);
        let probe = behind.try_clone().expect("dup");
        match decode(&payload, vec![behind], 1 << 30) {
            Err(crate::Error::Fds(FdError::ShmSparse { len, allocated })) => {
                assert_eq!((len, allocated), (LEN as u64, 0));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            sys::allocated_bytes(probe.as_fd()).expect("stat") <= LEN as u64,
            "the refusal allocated pages inside it"
        );
        // One page written, the rest holes: refused all the same.
        let mut buf = ShmBuf::new(3 * 4096).expect("buf");
        buf[0] = 1;
        let shm = buf.freeze().expect("freeze");
        let (payload, fds) = encode_payload_with(&shm).expect("encode");
        assert!(
            decode(&payload, fds, 1 << 20).is_ok(),
            "a ShmBuf has no holes"
        );
    }

    #[test]
    fn unsealed_resized_and_oversized_buffers_are_refused() {
        let problem = |r: Result<Shm, Error>| match r {
            Err(Error::Fds(problem)) => problem,
            other => panic!("{other:?}"),
        };
        // A memfd that is not sealed: its sender could still write to it.
        let open = sys::memfd(4096).expect("memfd");
        let (payload, _) = encode_payload_with(&(0u32, 4096u64)).expect("encode");
        assert!(matches!(
            problem(decode(&payload, vec![open], 1 << 20)),
            FdError::NotSealed { .. }
        ));
        // Sealed against writing only: it could still be shrunk under the reader.
        let partly = sys::memfd(4096).expect("memfd");
        nix::fcntl::fcntl(
            partly.as_fd(),
            nix::fcntl::FcntlArg::F_ADD_SEALS(nix::fcntl::SealFlag::F_SEAL_WRITE),
        )
        .expect("seal");
        assert!(matches!(
            problem(decode(&payload, vec![partly], 1 << 20)),
            FdError::NotSealed { .. }
        ));
        // A file that is no memfd at all.
        let file = OwnedFd::from(std::fs::File::open("/dev/null").expect("open"));
        assert_eq!(
            problem(decode(&payload, vec![file], 1 << 20)),
            FdError::NotSealed { seals: 0 }
        );
        // Sealed, but not the size the message gives.
        let shm = Shm::copy_from_slice(&[1; 100]).expect("shm");
        let (_, fds) = encode_payload_with(&shm).expect("encode");
        let (lying, _) = encode_payload_with(&(0u32, 200u64)).expect("encode");
        assert_eq!(
            problem(decode(&lying, fds, 1 << 20)),
            FdError::ShmSize {
                announced: 200,
                actual: 100
            }
        );
        // Over this end's maximum.
        let (payload, fds) = encode_payload_with(&shm).expect("encode");
        assert_eq!(
            problem(decode(&payload, fds, 99)),
            FdError::ShmTooLarge { len: 100, max: 99 }
        );
    }
}
