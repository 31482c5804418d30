//! Socket pairs and their I/O.

use std::io;
use std::mem::MaybeUninit;
use std::mem::{size_of, size_of_val};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{AddressFamily, ControlMessage, MsgFlags, Shutdown, SockFlag, SockType};

pub(super) fn io_err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// A connected pair of Unix stream sockets, both close-on-exec and non-blocking.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::sys::socket::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )
    .map_err(io_err)
}

/// One non-blocking `send` that never raises `SIGPIPE`.
pub(crate) fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        match nix::sys::socket::send(
            fd.as_raw_fd(),
            buf,
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        ) {
            Err(Errno::EINTR) => continue,
            other => return other.map_err(io_err),
        }
    }
}

/// The most descriptors the kernel passes with one `sendmsg` (`SCM_MAX_FD`).
pub(crate) const MAX_FDS_PER_SEND: usize = 253;

/// One non-blocking vectored send (`sendmsg`) that never raises `SIGPIPE`, passing `fds`
/// (at most [`MAX_FDS_PER_SEND`]) with the first byte written (`SCM_RIGHTS`). If it
/// writes any byte, the kernel holds its own references to the descriptors: the caller
/// may close its copies.
pub(crate) fn send_vectored_with_fds(
    fd: BorrowedFd<'_>,
    bufs: &[std::io::IoSlice<'_>],
    fds: &[RawFd],
) -> io::Result<usize> {
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    loop {
        match nix::sys::socket::sendmsg::<()>(
            fd.as_raw_fd(),
            bufs,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            Err(Errno::EINTR) => continue,
            other => return other.map_err(io_err),
        }
    }
}

/// One non-blocking `recv` with `MSG_PEEK` into `buf`: the bytes stay in the socket.
pub(crate) fn peek(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::sys::socket::recv(
            fd.as_raw_fd(),
            buf,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_PEEK,
        ) {
            Err(Errno::EINTR) => continue,
            other => return other.map_err(io_err),
        }
    }
}

/// One non-blocking `recv` into `buf`.
pub(crate) fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::sys::socket::recv(fd.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
            Err(Errno::EINTR) => continue,
            other => return other.map_err(io_err),
        }
    }
}

/// What one [`recv_spare`] read.
#[derive(Debug)]
pub(crate) struct Received {
    /// Bytes read; 0 at the end of the stream.
    pub(crate) len: usize,
    /// The read filled the space it was given.
    pub(crate) full: bool,
    /// The descriptors that came with the bytes (`SCM_RIGHTS`, close-on-exec). The kernel
    /// ends a read after the segment that carries them, so one read brings at most one
    /// segment's descriptors, and those were sent with a byte inside this read.
    pub(crate) fds: Vec<OwnedFd>,
    /// The kernel could not hand over every descriptor that came (`MSG_CTRUNC`): the ones
    /// that did not fit, or that this process had no room for, were closed.
    pub(crate) truncated: bool,
}

impl Received {
    /// Whether this read proves the socket empty: it stopped short of the space it had,
    /// not at a segment boundary that ancillary data made.
    pub(crate) fn drained(&self) -> bool {
        self.len > 0 && !self.full && self.fds.is_empty() && !self.truncated
    }
}

/// Room for the control message of one segment's descriptors: `CMSG_SPACE` of
/// [`MAX_FDS_PER_SEND`] descriptors, in 8-byte words so that the buffer is aligned for
/// `cmsghdr`.
// SAFETY: `CMSG_SPACE` only computes a size from its argument.
const CONTROL_WORDS: usize =
    unsafe { nix::libc::CMSG_SPACE((MAX_FDS_PER_SEND * size_of::<RawFd>()) as u32) as usize }
        .div_ceil(8);

/// One non-blocking `recvmsg` into the spare capacity of `buf`, which grows by the bytes
/// received. Nothing is zero-filled first, so a large buffer costs only what arrives.
/// Descriptors the peer attached come back in [`Received::fds`], close-on-exec.
pub(crate) fn recv_spare(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<Received> {
    recv_spare_with(fd, buf, nix::libc::MSG_DONTWAIT)
}

/// [`recv_spare`] that waits for bytes if `fd` is a blocking socket (for the benchmark's
/// raw baseline, which reads descriptors from a blocking socket).
pub(crate) fn recv_spare_blocking(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<Received> {
    recv_spare_with(fd, buf, 0)
}

fn recv_spare_with(fd: BorrowedFd<'_>, buf: &mut Vec<u8>, flags: i32) -> io::Result<Received> {
    let spare: &mut [MaybeUninit<u8>] = buf.spare_capacity_mut();
    let mut iov = nix::libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: spare.len(),
    };
    let space = spare.len();
    let mut control = [MaybeUninit::<u64>::uninit(); CONTROL_WORDS];
    loop {
        // SAFETY: a zeroed `msghdr` is a valid empty header (null name and control, no
        // flags); it is then pointed at one iovec and at the control buffer, which both
        // live until the call returns.
        let mut msg: nix::libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control) as _;
        // SAFETY: `recvmsg` writes at most `iov_len` bytes into the vector's own allocation
        // past its length (never reading it, so uninitialised bytes are fine), at most
        // `msg_controllen` bytes into the control buffer, and the lengths and flags into
        // the header, which is valid for the call.
        let r = unsafe {
            nix::libc::recvmsg(
                fd.as_raw_fd(),
                &mut msg,
                flags | nix::libc::MSG_CMSG_CLOEXEC,
            )
        };
        if r >= 0 {
            let len = r as usize;
            // SAFETY: the kernel initialised the first `len` bytes of the spare capacity
            // (`len <= space`), so the vector may include them.
            unsafe { buf.set_len(buf.len() + len) };
            return Ok(Received {
                len,
                full: len == space,
                fds: received_fds(&msg),
                truncated: msg.msg_flags & nix::libc::MSG_CTRUNC != 0,
            });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Takes ownership of the descriptors in the control messages `recvmsg` filled in.
fn received_fds(msg: &nix::libc::msghdr) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    if msg.msg_controllen == 0 {
        return fds;
    }
    // SAFETY: `msg` is the header `recvmsg` just filled in: `msg_control` points at the
    // control buffer, and `msg_controllen` says how much of it the kernel wrote, so these
    // macros walk only complete headers inside it.
    let mut cmsg = unsafe { nix::libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: `CMSG_FIRSTHDR`/`CMSG_NXTHDR` return null or a header wholly inside the
        // written part of the buffer, which is aligned for `cmsghdr`.
        let header = unsafe { &*cmsg };
        if header.cmsg_level == nix::libc::SOL_SOCKET && header.cmsg_type == nix::libc::SCM_RIGHTS {
            // SAFETY: as above; `CMSG_LEN(0)` is the header's own size.
            let data_offset = unsafe { nix::libc::CMSG_LEN(0) } as usize;
            let count = (header.cmsg_len as usize).saturating_sub(data_offset) / size_of::<RawFd>();
            // SAFETY: `CMSG_DATA` points just past this header, inside the buffer.
            let data = unsafe { nix::libc::CMSG_DATA(cmsg) };
            for i in 0..count {
                // SAFETY: the `count` descriptors lie inside the control message, which the
                // kernel wrote (possibly unaligned for `i32`, hence `read_unaligned`).
                let raw = unsafe { data.cast::<RawFd>().add(i).read_unaligned() };
                // SAFETY: the kernel just installed this descriptor in this process for
                // us (`SCM_RIGHTS`); nothing else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
        // SAFETY: `cmsg` is a valid header of `msg`'s control buffer (see above).
        cmsg = unsafe { nix::libc::CMSG_NXTHDR(msg, cmsg) };
    }
    fds
}

/// Tells the kernel that the memory behind `buf`'s spare capacity is not needed
/// (`MADV_FREE` on the whole pages inside it): under memory pressure the kernel takes the
/// pages back; otherwise they stay, and reusing them costs nothing. Their contents become
/// unspecified, which is fine for bytes no one has read.
pub(crate) fn advise_free(buf: &mut Vec<u8>) {
    let page = page_size();
    let spare = buf.spare_capacity_mut();
    let start = spare.as_mut_ptr() as usize;
    let end = start + spare.len();
    let Some(first) = start.checked_next_multiple_of(page) else {
        return;
    };
    let last = end - end % page;
    if last > first {
        // SAFETY: `[first, last)` lies inside the vector's own allocation, past its length,
        // and both ends are aligned to the system's real page size (so the kernel does not
        // round the range out past the allocation); no one reads those bytes before writing
        // them, so their contents may change.
        unsafe {
            nix::libc::madvise(
                first as *mut nix::libc::c_void,
                last - first,
                nix::libc::MADV_FREE,
            );
        }
    }
}

/// The system's page size (4 KiB on x86-64; 4, 16 or 64 KiB on aarch64).
fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf takes a constant and returns a number (or -1); no pointers.
        let page = unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) };
        usize::try_from(page)
            .ok()
            .filter(|n| n.is_power_of_two())
            // Unknown: no page is whole, so nothing is advised.
            .unwrap_or(usize::MAX / 2 + 1)
    })
}

/// Shuts down the sending direction: the peer reads end-of-file after what was sent.
pub(crate) fn shutdown_write(fd: BorrowedFd<'_>) {
    // Errors (ENOTCONN once the peer is gone) leave nothing to do.
    let _ = nix::sys::socket::shutdown(fd.as_raw_fd(), Shutdown::Write);
}

/// Shuts down the receiving direction: the peer's further sends fail with `EPIPE`.
pub(crate) fn shutdown_read(fd: BorrowedFd<'_>) {
    let _ = nix::sys::socket::shutdown(fd.as_raw_fd(), Shutdown::Read);
}

/// Whether the peer can still receive: a zero-length send fails with `EPIPE` once the
/// peer closed its socket or shut its receiving direction down (and once this side shut
/// its sending direction down). Sends no bytes.
pub(crate) fn peer_can_receive(fd: BorrowedFd<'_>) -> bool {
    match send(fd, &[]) {
        Ok(_) => true,
        Err(e) => !matches!(
            e.raw_os_error().map(Errno::from_raw),
            Some(Errno::EPIPE | Errno::ECONNRESET | Errno::ENOTCONN)
        ),
    }
}

/// Waits with `poll` until `fd` is writable (or hung up), at most `timeout`. Used where
/// no runtime can wait: lingering at shutdown, and a writer that cannot register a waiter.
pub(crate) fn poll_writable(fds: &[BorrowedFd<'_>], timeout: Duration) -> io::Result<()> {
    let ms = u16::try_from(timeout.as_millis().max(1)).unwrap_or(u16::MAX);
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLOUT))
        .collect();
    match poll(&mut polled, PollTimeout::from(ms)) {
        Ok(_) | Err(Errno::EINTR) => Ok(()),
        Err(e) => Err(io_err(e)),
    }
}

/// Makes `fd` non-blocking.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(io_err)?;
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(io_err)?;
    Ok(())
}

/// Whether `fd` is a Unix stream socket.
/// Whether a failed send with descriptors was refused for now rather than for good: the
/// sending user has more descriptors in flight than its `RLIMIT_NOFILE` allows
/// (`ETOOMANYREFS`, which root is exempt from), or the kernel is short of buffers
/// (`ENOBUFS`). Nothing was sent; the same send succeeds once the peer has received some.
pub(crate) fn is_refused_for_now(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::ETOOMANYREFS | nix::libc::ENOBUFS)
    )
}

pub(crate) fn is_unix_stream(fd: BorrowedFd<'_>) -> bool {
    use nix::sys::socket::{UnixAddr, getsockname, getsockopt, sockopt};
    let stream = getsockopt(&fd, sockopt::SockType).is_ok_and(|t| t == SockType::Stream);
    stream && getsockname::<UnixAddr>(fd.as_raw_fd()).is_ok()
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use nix::fcntl::FdFlag;

    use super::*;

    #[test]
    fn a_zero_length_send_tells_whether_the_peer_can_receive() {
        let (a, b) = socketpair().expect("socketpair");
        assert!(peer_can_receive(a.as_fd()));
        shutdown_read(b.as_fd());
        assert!(!peer_can_receive(a.as_fd()));
        let (c, d) = socketpair().expect("socketpair");
        drop(d);
        assert!(!peer_can_receive(c.as_fd()));
    }

    #[test]
    fn sockets_are_close_on_exec_and_non_blocking() {
        let (a, _b) = socketpair().expect("socketpair");
        let fd_flags = FdFlag::from_bits_retain(fcntl(&a, FcntlArg::F_GETFD).expect("getfd"));
        assert!(fd_flags.contains(FdFlag::FD_CLOEXEC));
        let fl = OFlag::from_bits_retain(fcntl(&a, FcntlArg::F_GETFL).expect("getfl"));
        assert!(fl.contains(OFlag::O_NONBLOCK));
    }

    #[test]
    fn recv_spare_appends_what_arrives_and_says_would_block_when_drained() {
        let (a, b) = socketpair().expect("socketpair");
        send(a.as_fd(), b"hello").expect("send");
        let mut buf = Vec::with_capacity(3);
        buf.push(b'>');
        let got = recv_spare(b.as_fd(), &mut buf).expect("recv");
        assert_eq!((got.len, got.full, got.drained()), (2, true, false));
        assert_eq!(buf, b">he");
        buf.reserve(16);
        let got = recv_spare(b.as_fd(), &mut buf).expect("recv");
        assert_eq!((got.len, got.full, got.drained()), (3, false, true));
        assert_eq!(buf, b">hello");
        let err = recv_spare(b.as_fd(), &mut buf).expect_err("drained");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        drop(a);
        assert_eq!(recv_spare(b.as_fd(), &mut buf).expect("eof").len, 0);
    }

    #[test]
    fn a_read_that_ends_at_a_segment_with_descriptors_is_not_taken_for_drained() {
        use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
        use std::io::IoSlice;
        let (a, b) = socketpair().expect("socketpair");
        let file = std::fs::File::open("/dev/null").expect("open");
        let fds = [file.as_raw_fd()];
        sendmsg::<()>(
            a.as_raw_fd(),
            &[IoSlice::new(b"first")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .expect("sendmsg");
        send(a.as_fd(), b"second").expect("send");
        let mut buf = Vec::with_capacity(64);
        let got = recv_spare(b.as_fd(), &mut buf).expect("recv");
        // The kernel stops after the segment that carried descriptors.
        assert_eq!(buf, b"first");
        assert!(!got.drained(), "{got:?}");
        assert_eq!((got.fds.len(), got.truncated), (1, false));
        let fd_flags =
            FdFlag::from_bits_retain(fcntl(&got.fds[0], FcntlArg::F_GETFD).expect("getfd"));
        assert!(
            fd_flags.contains(FdFlag::FD_CLOEXEC),
            "received close-on-exec"
        );
        let got = recv_spare(b.as_fd(), &mut buf).expect("recv");
        assert_eq!(buf, b"firstsecond");
        assert!(got.drained() && got.fds.is_empty(), "{got:?}");
    }

    #[test]
    fn the_most_descriptors_one_send_can_carry_arrive_together_and_in_order() {
        let (a, b) = socketpair().expect("socketpair");
        let files: Vec<std::fs::File> = (0..MAX_FDS_PER_SEND)
            .map(|_| std::fs::File::open("/dev/null").expect("open"))
            .collect();
        let raws: Vec<RawFd> = files.iter().map(AsRawFd::as_raw_fd).collect();
        let inodes = |fds: &[BorrowedFd<'_>]| -> Vec<(u64, i32)> {
            fds.iter()
                .map(|fd| {
                    let st = nix::sys::stat::fstat(fd).expect("fstat");
                    (st.st_ino, fcntl(fd, FcntlArg::F_GETFL).expect("getfl"))
                })
                .collect()
        };
        let sent = send_vectored_with_fds(a.as_fd(), &[std::io::IoSlice::new(b"x")], &raws)
            .expect("sendmsg");
        assert_eq!(sent, 1);
        let mut buf = Vec::with_capacity(16);
        let got = recv_spare(b.as_fd(), &mut buf).expect("recv");
        assert_eq!(
            (got.len, got.fds.len(), got.truncated),
            (1, MAX_FDS_PER_SEND, false)
        );
        let sent_ids = inodes(&files.iter().map(AsFd::as_fd).collect::<Vec<_>>());
        let got_ids = inodes(&got.fds.iter().map(AsFd::as_fd).collect::<Vec<_>>());
        assert_eq!(sent_ids, got_ids);
        // One more than the kernel passes at once is refused, and nothing is sent.
        let extra = std::fs::File::open("/dev/null").expect("open");
        let mut too_many = raws.clone();
        too_many.push(extra.as_raw_fd());
        let err = send_vectored_with_fds(a.as_fd(), &[std::io::IoSlice::new(b"y")], &too_many)
            .expect_err("over SCM_MAX_FD");
        assert_eq!(err.raw_os_error(), Some(nix::libc::EINVAL));
    }

    #[test]
    fn after_shutting_down_reads_queued_bytes_can_still_be_drained() {
        // Receiver::drop relies on this: the peer's blocked writer gets room, then EPIPE.
        let (a, b) = socketpair().expect("socketpair");
        send(a.as_fd(), b"queued").expect("send");
        shutdown_read(b.as_fd());
        let mut buf = [0u8; 16];
        let n = recv(b.as_fd(), &mut buf).expect("drain");
        assert_eq!(&buf[..n], b"queued");
        assert!(!peer_can_receive(a.as_fd()));
    }
}
