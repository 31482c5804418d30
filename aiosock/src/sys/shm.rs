//! Sealed shared memory: memfds, their seals, and mappings of them.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};

use super::socket::io_err;

/// The seals that make a memfd immutable: no write, no shrink, no growth, and no change
/// to the seals themselves.
pub(crate) fn full_seals() -> SealFlag {
    SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL
}

/// A new memfd of `len` zero bytes that can be sealed, close-on-exec.
pub(crate) fn memfd(len: usize) -> io::Result<OwnedFd> {
    let fd = memfd_create(
        c"aiosock-shm",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .map_err(io_err)?;
    let len = i64::try_from(len).map_err(|_| io::Error::from_raw_os_error(nix::libc::EFBIG))?;
    nix::unistd::ftruncate(&fd, len).map_err(io_err)?;
    Ok(fd)
}

/// Seals `fd` against every change. Fails with `EBUSY` while a writable shared mapping of
/// it exists (in any process). A child forked by another thread in the moment between a
/// writable mapping's creation and its `MADV_DONTFORK` holds a copy until it `exec`s:
/// `EBUSY` is retried for up to 100 ms for that.
pub(crate) fn seal(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut tries = 0;
    loop {
        match fcntl(fd, FcntlArg::F_ADD_SEALS(full_seals())) {
            Ok(_) => return Ok(()),
            Err(Errno::EBUSY) if tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => return Err(io_err(e)),
        }
    }
}

/// The seals on `fd`: 0 for a descriptor that cannot carry any (not a memfd or shmem file).
pub(crate) fn seals(fd: BorrowedFd<'_>) -> u32 {
    match fcntl(fd, FcntlArg::F_GET_SEALS) {
        Ok(seals) => u32::try_from(seals).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Whether `seals` (from [`seals`]) holds every seal of [`full_seals`].
pub(crate) fn fully_sealed(seals: u32) -> bool {
    let want = u32::try_from(full_seals().bits()).unwrap_or(u32::MAX);
    seals & want == want
}

/// The size of the regular file behind `fd`.
pub(crate) fn file_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let st = nix::sys::stat::fstat(fd).map_err(io_err)?;
    if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFREG {
        return Err(io::Error::from_raw_os_error(nix::libc::EINVAL));
    }
    u64::try_from(st.st_size).map_err(|_| io::Error::from_raw_os_error(nix::libc::EINVAL))
}

/// The bytes of memory a regular file has allocated (`st_blocks`, in 512-byte units): for
/// a memfd, its pages in memory or in swap.
pub(crate) fn allocated_bytes(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let st = nix::sys::stat::fstat(fd).map_err(io_err)?;
    let blocks =
        u64::try_from(st.st_blocks).map_err(|_| io::Error::from_raw_os_error(nix::libc::EINVAL))?;
    Ok(blocks.saturating_mul(512))
}

/// The offset of the first hole in the file behind `fd` (`SEEK_HOLE` from 0; its size if
/// it has none, since the end counts as one). Moves the file offset, which the file's
/// other descriptors share; nothing here reads or writes through it.
pub(crate) fn first_hole(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let at = nix::unistd::lseek(fd, 0, nix::unistd::Whence::SeekHole).map_err(io_err)?;
    u64::try_from(at).map_err(|_| io::Error::from_raw_os_error(nix::libc::EINVAL))
}

/// A shared mapping of a whole memfd, unmapped on drop. An empty one maps nothing.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
}

// SAFETY: a mapping is plain memory owned by this value; handing it to another thread is
// as safe as handing over a `Box<[u8]>`. Shared references only read it (see `as_slice`).
unsafe impl Send for Mapping {}
// SAFETY: `&Mapping` only gives out `&[u8]`; writing needs `&mut Mapping`.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the `len` bytes of `fd` for reading and writing. Its pages are allocated (and
    /// zeroed by the kernel) at once (`MAP_POPULATE`) rather than one fault at a time.
    ///
    /// Only for a memfd this process made and shares with nobody yet: the slice that
    /// [`as_mut_slice`](Self::as_mut_slice) gives out must be the only way to its bytes.
    pub(crate) fn writable(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
        Mapping::new(fd, len, prot, MapFlags::MAP_POPULATE, true)
    }

    /// Maps the `len` bytes of `fd` read-only; with `populate`, its page tables are
    /// filled at once (`MAP_POPULATE`: for a reader about to read it all), else each page
    /// is mapped when first read (for a sender that rarely reads what it sends).
    ///
    /// Only for a memfd that is fully sealed (checked by the caller) and at least `len`
    /// bytes long: then nobody can change its bytes or shrink it under the mapping, so the
    /// slice [`as_slice`](Self::as_slice) gives out never changes and never faults.
    pub(crate) fn read_only(fd: BorrowedFd<'_>, len: usize, populate: bool) -> io::Result<Mapping> {
        let flags = if populate {
            MapFlags::MAP_POPULATE
        } else {
            MapFlags::empty()
        };
        Mapping::new(fd, len, ProtFlags::PROT_READ, flags, false)
    }

    fn new(
        fd: BorrowedFd<'_>,
        len: usize,
        prot: ProtFlags,
        flags: MapFlags,
        writable: bool,
    ) -> io::Result<Mapping> {
        let Some(length) = NonZeroUsize::new(len) else {
            return Ok(Mapping {
                ptr: NonNull::dangling(),
                len: 0,
                writable,
            });
        };
        // SAFETY: a new shared mapping at an address the kernel picks overlaps nothing of
        // ours; its memory is only reached through this value, as `as_slice` and
        // `as_mut_slice` document.
        let ptr = unsafe {
            mmap(
                None,
                length,
                prot,
                MapFlags::MAP_SHARED | flags,
                fd.as_fd(),
                0,
            )
        }
        .map_err(io_err)?;
        if writable {
            // A child forked now (another thread spawning a process) must not inherit the
            // writable mapping: while it had it, the memfd could not be sealed.
            // SAFETY: `ptr` and `len` are exactly the mapping just made; the advice only
            // keeps it out of children.
            let advised =
                unsafe { nix::libc::madvise(ptr.as_ptr(), len, nix::libc::MADV_DONTFORK) };
            debug_assert_eq!(advised, 0);
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
            writable,
        })
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes (or is dangling with `len` 0) for as long
        // as `self` lives. A read-only mapping is of a sealed memfd whose bytes cannot
        // change and which cannot shrink; a writable one is changed only through
        // `as_mut_slice`, which borrows `self` mutably.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        assert!(self.writable, "a read-only mapping is never written");
        // SAFETY: as `as_slice`, and the mapping is writable and borrowed mutably, and the
        // memfd is shared with nobody while it is (see `writable`).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: `ptr` and `len` are exactly the mapping made in `new`, unmapped only
            // here, and no slice of it outlives `self`.
            let result = unsafe { munmap(self.ptr.cast(), self.len) };
            debug_assert!(result.is_ok() || result == Err(Errno::EINVAL));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn a_memfd_with_a_writable_mapping_cannot_be_sealed_until_it_is_unmapped() {
        let fd = memfd(8192).expect("memfd");
        let mut map = Mapping::writable(fd.as_fd(), 8192).expect("map");
        map.as_mut_slice()[100] = 7;
        let err = seal(fd.as_fd()).expect_err("a writable mapping is live");
        assert_eq!(err.raw_os_error(), Some(nix::libc::EBUSY));
        assert!(!fully_sealed(seals(fd.as_fd())));
        drop(map);
        seal(fd.as_fd()).expect("seal");
        assert!(fully_sealed(seals(fd.as_fd())));
        assert_eq!(file_size(fd.as_fd()).expect("size"), 8192);
        let read = Mapping::read_only(fd.as_fd(), 8192, true).expect("map read-only");
        assert_eq!(read.as_slice()[100], 7);
        assert!(
            Mapping::writable(fd.as_fd(), 8192).is_err(),
            "sealed for writing"
        );
        assert!(
            nix::unistd::ftruncate(&fd, 0).is_err(),
            "sealed against shrinking"
        );
    }

    #[test]
    fn descriptors_that_are_not_memfds_have_no_seals() {
        let file = std::fs::File::open("/dev/null").expect("open");
        assert_eq!(seals(file.as_fd()), 0);
        assert!(file_size(file.as_fd()).is_err(), "not a regular file");
        let empty = memfd(0).expect("memfd");
        assert!(
            Mapping::read_only(empty.as_fd(), 0, false)
                .expect("empty")
                .as_slice()
                .is_empty()
        );
    }
}
