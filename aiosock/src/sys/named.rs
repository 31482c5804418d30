//! Named Unix sockets: binding a path (with its mode set before anyone can see it) or an
//! abstract name, listening, accepting with the peer's credentials, and connecting.
//!
//! Errors are `io::Error`s; two carry a meaning of their own here, which the layer above
//! turns into typed errors: `EADDRINUSE` (a live server holds the address) and `ENOTSOCK`
//! (something that is not a socket is at the path, and was left alone).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, UnixAddr, accept4, getsockopt, sockopt,
};
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, fchmodat, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, linkat, unlinkat};

use super::socket::io_err;

/// The longest path (or abstract name) that fits in `sun_path` (108 bytes, one kept for the
/// terminating NUL of a path, or the leading NUL of an abstract name).
pub(crate) const MAX_ADDRESS_LEN: usize = 107;

/// How many times `bind_path` starts over when another process changes the path under it.
const BIND_ATTEMPTS: usize = 8;

/// This process's effective user id.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: `geteuid` takes no arguments, always succeeds and touches no memory.
    unsafe { nix::libc::geteuid() }
}

/// This process's effective group id.
#[cfg(test)]
fn effective_gid() -> u32 {
    // SAFETY: `getegid` takes no arguments, always succeeds and touches no memory.
    unsafe { nix::libc::getegid() }
}

/// A new Unix stream socket: close-on-exec and non-blocking.
fn stream_socket() -> io::Result<OwnedFd> {
    nix::sys::socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(io_err)
}

fn path_addr(path: &Path) -> io::Result<UnixAddr> {
    let len = path.as_os_str().len();
    if len == 0 || len > MAX_ADDRESS_LEN {
        return Err(io_err(Errno::ENAMETOOLONG));
    }
    UnixAddr::new(path).map_err(io_err)
}

fn abstract_addr(name: &[u8]) -> io::Result<UnixAddr> {
    if name.len() > MAX_ADDRESS_LEN {
        return Err(io_err(Errno::ENAMETOOLONG));
    }
    UnixAddr::new_abstract(name).map_err(io_err)
}

/// Connects a new socket to `addr`; while the listener's backlog is full (`EAGAIN`, which
/// a Unix socket gives no readiness event for) the caller retries.
fn connect_to(addr: &UnixAddr) -> io::Result<OwnedFd> {
    let fd = stream_socket()?;
    loop {
        match nix::sys::socket::connect(fd.as_raw_fd(), addr) {
            Ok(()) => return Ok(fd),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(io_err(e)),
        }
    }
}

/// Connects to the socket file at `path` (at most [`MAX_ADDRESS_LEN`] bytes, else
/// `ENAMETOOLONG`). `EAGAIN`: the listener's backlog is full, try again.
pub(crate) fn connect_path(path: &Path) -> io::Result<OwnedFd> {
    connect_to(&path_addr(path)?)
}

/// Connects to the abstract socket `name` (at most [`MAX_ADDRESS_LEN`] bytes).
pub(crate) fn connect_abstract(name: &[u8]) -> io::Result<OwnedFd> {
    connect_to(&abstract_addr(name)?)
}

/// The credentials of a connected peer, from `SO_PEERCRED`: `(pid, uid, gid)` as they were
/// when it connected.
pub(crate) fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<(u32, u32, u32)> {
    let cred = getsockopt(&fd, sockopt::PeerCredentials).map_err(io_err)?;
    Ok((cred.pid() as u32, cred.uid(), cred.gid()))
}

/// Accepts one connection (close-on-exec and non-blocking). `EAGAIN` when none is waiting.
/// A connection that was reset before it was accepted (`ECONNABORTED`) is skipped.
pub(crate) fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    loop {
        match accept4(listener, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK) {
            Ok(fd) => return Ok(fd),
            Err(Errno::EINTR | Errno::ECONNABORTED) => continue,
            Err(e) => return Err(io_err(e)),
        }
    }
}

/// Binds a listening socket to the abstract name `name`. `EADDRINUSE` if a socket holds it.
pub(crate) fn bind_abstract(name: &[u8]) -> io::Result<OwnedFd> {
    let addr = abstract_addr(name)?;
    let fd = stream_socket()?;
    nix::sys::socket::bind(fd.as_raw_fd(), &addr).map_err(io_err)?;
    nix::sys::socket::listen(&fd, Backlog::MAXCONN).map_err(io_err)?;
    Ok(fd)
}

/// The socket file a listener created; removed on drop if it is still that file and this
/// is still the process that created it (a forked child's copy leaves it).
#[derive(Debug)]
pub(crate) struct SocketFile {
    /// The directory it is in (`O_PATH`), so that a renamed or replaced parent path does not
    /// redirect the removal.
    dir: OwnedFd,
    name: OsString,
    dev: u64,
    ino: u64,
    pid: u32,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if std::process::id() == self.pid
            && same_file(self.dir.as_fd(), &self.name, self.dev, self.ino)
        {
            let _ = unlinkat(&self.dir, self.name.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
    }
}

/// Whether `dir/name` is the socket file `(dev, ino)` (not following a symbolic link).
fn same_file(dir: BorrowedFd<'_>, name: &OsStr, dev: u64, ino: u64) -> bool {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| {
        SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK
            && st.st_dev == dev
            && st.st_ino == ino
    })
}

/// What is at the path before binding.
enum Existing {
    Nothing,
    /// A socket file nobody listens on: `(dev, ino)`, to remove if it is still that one.
    Stale(u64, u64),
}

/// Looks at what is at `dir/name` (reached as `path` for the probe): nothing, a stale
/// socket, or an error (`EADDRINUSE` for a live server, `ENOTSOCK` for anything that is not
/// a socket).
fn existing(dir: BorrowedFd<'_>, name: &OsStr, path: &Path) -> io::Result<Existing> {
    let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(Existing::Nothing),
        Err(e) => return Err(io_err(e)),
    };
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err(io_err(Errno::ENOTSOCK));
    }
    // A socket file: someone listening accepts (or has a full backlog: EAGAIN); a file
    // left by a server that died refuses.
    match connect_path(path) {
        Ok(_) => Err(io_err(Errno::EADDRINUSE)),
        Err(e) if e.raw_os_error() == Some(Errno::EAGAIN as i32) => Err(io_err(Errno::EADDRINUSE)),
        Err(e) if e.raw_os_error() == Some(Errno::ECONNREFUSED as i32) => {
            Ok(Existing::Stale(st.st_dev, st.st_ino))
        }
        // Gone in between: nothing there any more.
        Err(e) if e.raw_os_error() == Some(Errno::ENOENT as i32) => Ok(Existing::Nothing),
        Err(e) => Err(e),
    }
}

/// A private directory next to the socket's path, removed (with what is in it) on drop.
struct PrivateDir<'a> {
    parent: BorrowedFd<'a>,
    name: OsString,
}

impl<'a> PrivateDir<'a> {
    /// Makes `.aiosock-<pid>-<n>` in `parent` with mode 0700.
    fn new(parent: BorrowedFd<'a>) -> io::Result<PrivateDir<'a>> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = OsString::from(format!(".aiosock-{}-{n}", std::process::id()));
            match mkdirat(parent, name.as_os_str(), Mode::S_IRWXU) {
                // Left by a process that had this pid and died: take the next number.
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(io_err(e)),
                Ok(()) => {
                    let dir = PrivateDir { parent, name };
                    // The umask may have taken some of the owner's bits; nobody else has any.
                    fchmodat(
                        parent,
                        dir.name.as_os_str(),
                        Mode::S_IRWXU,
                        FchmodatFlags::NoFollowSymlink,
                    )
                    .map_err(io_err)?;
                    return Ok(dir);
                }
            }
        }
    }

    /// `name` inside the directory, relative to the parent.
    fn entry(&self, name: &str) -> OsString {
        let mut path = self.name.clone();
        path.push("/");
        path.push(name);
        path
    }
}

impl Drop for PrivateDir<'_> {
    fn drop(&mut self) {
        let _ = unlinkat(
            self.parent,
            self.entry("s").as_os_str(),
            UnlinkatFlags::NoRemoveDir,
        );
        let _ = unlinkat(self.parent, self.name.as_os_str(), UnlinkatFlags::RemoveDir);
    }
}

/// Binds a listening socket to the file `path` with permission bits `mode`, such that the
/// file never exists at `path` with any other mode:
///
/// 1. The socket is bound inside a private directory (mode 0700) made next to `path`, and
///    its file is given `mode` there (whatever the umask), where no one else can reach it.
/// 2. It starts listening, then is hard-linked to `path`: `linkat` is atomic and never
///    replaces a file, so the path goes from absent to a listening socket with its final
///    mode in one step, and two servers cannot both take it.
/// 3. What is already at `path` decides first: a live socket is `EADDRINUSE`, anything
///    but a socket is `ENOTSOCK` (left alone), and a stale socket (connecting is refused)
///    is removed, only if it is still the file that was probed.
pub(crate) fn bind_path(path: &Path, mode: u32) -> io::Result<(OwnedFd, SocketFile)> {
    path_addr(path)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?
        .to_owned();
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = nix::fcntl::open(
        parent,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err)?;
    let mode = Mode::from_bits_truncate(mode & 0o777);

    let private = PrivateDir::new(dir.as_fd())?;
    let fd = stream_socket()?;
    // Through the directory's descriptor, so that the path is short whatever `path` is.
    let temp = format!(
        "/proc/self/fd/{}/{}/s",
        dir.as_raw_fd(),
        private.name.to_string_lossy()
    );
    nix::sys::socket::bind(
        fd.as_raw_fd(),
        &UnixAddr::new(temp.as_str()).map_err(io_err)?,
    )
    .map_err(io_err)?;
    let entry = private.entry("s");
    fchmodat(
        dir.as_fd(),
        entry.as_os_str(),
        mode,
        FchmodatFlags::NoFollowSymlink,
    )
    .map_err(io_err)?;
    let st =
        fstatat(dir.as_fd(), entry.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io_err)?;
    nix::sys::socket::listen(&fd, Backlog::MAXCONN).map_err(io_err)?;

    for _ in 0..BIND_ATTEMPTS {
        if let Existing::Stale(dev, ino) = existing(dir.as_fd(), &name, path)?
            && same_file(dir.as_fd(), &name, dev, ino)
        {
            match unlinkat(&dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        match linkat(
            dir.as_fd(),
            entry.as_os_str(),
            dir.as_fd(),
            name.as_os_str(),
            AtFlags::empty(),
        ) {
            Ok(()) => {
                drop(private);
                let file = SocketFile {
                    dir,
                    name,
                    dev: st.st_dev,
                    ino: st.st_ino,
                    pid: std::process::id(),
                };
                return Ok((fd, file));
            }
            // Someone took the path since we looked: look again.
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(io_err(e)),
        }
    }
    Err(io_err(Errno::EADDRINUSE))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("aiosock-sys-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn a_bound_path_has_its_mode_and_leaves_no_private_directory() {
        let dir = temp_dir("mode");
        let path = dir.join("s.sock");
        let (fd, file) = bind_path(&path, 0o640).expect("bind");
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        let entries: Vec<_> = std::fs::read_dir(&dir).expect("list").flatten().collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        let client = connect_path(&path).expect("connect");
        let server = accept(fd.as_fd()).expect("accept");
        let (pid, uid, gid) = peer_cred(server.as_fd()).expect("cred");
        assert_eq!(pid, std::process::id());
        assert_eq!(uid, effective_uid());
        assert_eq!(gid, effective_gid());
        drop((client, server, fd, file));
        assert!(std::fs::symlink_metadata(&path).is_err(), "removed on drop");
        std::fs::remove_dir(&dir).expect("empty");
    }

    #[test]
    fn an_overlong_path_is_refused_before_anything_is_made() {
        let long = Path::new("/tmp").join("x".repeat(MAX_ADDRESS_LEN));
        let err = bind_path(&long, 0o600).expect_err("too long");
        assert_eq!(err.raw_os_error(), Some(Errno::ENAMETOOLONG as i32));
        let err = connect_path(&long).expect_err("too long");
        assert_eq!(err.raw_os_error(), Some(Errno::ENAMETOOLONG as i32));
        let fits = "/".repeat(MAX_ADDRESS_LEN);
        assert!(path_addr(Path::new(&fits)).is_ok());
    }

    #[test]
    fn nothing_listening_is_refused_or_missing() {
        // No process may be forked while the socket is dropped (it would keep a copy).
        let _spawning = super::super::SPAWN_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let dir = temp_dir("refused");
        let path = dir.join("gone.sock");
        let err = connect_path(&path).expect_err("missing");
        assert_eq!(err.raw_os_error(), Some(Errno::ENOENT as i32));
        let (fd, file) = bind_path(&path, 0o600).expect("bind");
        // Keep the file, close the socket: a stale file.
        std::mem::forget(file);
        drop(fd);
        let err = connect_path(&path).expect_err("stale");
        assert_eq!(err.raw_os_error(), Some(Errno::ECONNREFUSED as i32));
        let (_fd, _file) = bind_path(&path, 0o600).expect("a stale file is replaced");
        let err = bind_path(&path, 0o600).expect_err("live");
        assert_eq!(err.raw_os_error(), Some(Errno::EADDRINUSE as i32));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
