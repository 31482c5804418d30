//! Named Unix sockets: a server binds a [`Listener`] to a path (or an abstract name) and
//! accepts typed [`Endpoint`]s with each peer's credentials; clients [`connect`] by name.
//!
//! This is for processes that are not parent and child: a service and the clients that
//! come and go, each one connection. Once accepted or connected, an end is the same
//! [`Endpoint`] that [`pair`](crate::pair) makes, and everything in the crate docs holds
//! for it (the hello, calls, backpressure, close).
//!
//! ```no_run
//! #[aiosock::protocol]
//! enum Request {
//!     #[reply(u64)]
//!     Square(u64),
//! }
//!
//! #[aiosock::protocol]
//! enum Nothing {
//!     Never,
//! }
//!
//! #[derive(Clone)]
//! struct Squarer;
//!
//! impl RequestHandler for Squarer {
//!     async fn on_square(&mut self, n: u64) -> u64 {
//!         n * n
//!     }
//! }
//!
//! impl NothingHandler for () {
//!     async fn on_never(&mut self) {}
//! }
//!
//! // The server: one task per client.
//! async fn server() -> Result<(), aiosock::Error> {
//!     let listener = aiosock::Listener::<Nothing, Request>::bind("/run/user/1000/squarer.sock")?;
//!     loop {
//!         let (end, peer) = listener.accept().await?;
//!         println!("client pid {} uid {}", peer.pid(), peer.uid());
//!         tokio::spawn(end.serve(Squarer));
//!     }
//! }
//!
//! // A client, in another process.
//! async fn client() -> Result<(), Box<dyn std::error::Error>> {
//!     let end = aiosock::connect::<Request, Nothing>("/run/user/1000/squarer.sock").await?;
//!     let (tx, rx) = end.into_split();
//!     tokio::spawn(rx.serve(())); // replies arrive through the receiver
//!     assert_eq!(RequestClient::new(tx).square(12).await?, 144);
//!     Ok(())
//! }
//! # let _ = (server, client);
//! ```
//!
//! # The socket file
//!
//! [`Listener::bind`] creates the file with mode 0600 (owner read and write: only this
//! user, and root, may connect), or the mode given with [`Listener::bind_with`], whatever
//! the process's umask. The file never exists at the path with a wider mode, not even for
//! an instant: the socket is bound inside a private directory (mode 0700) made next to
//! the path, given its mode there, set listening, and then hard-linked to the path
//! (`linkat`, which is atomic and never replaces a file) before the private directory is
//! removed. So the path goes from absent to a listening socket with its final mode in
//! one step. (Linux also applies a mode set with `fchmod` on the socket before `bind`,
//! minus the umask; aiosock does not rely on that.) Binding needs write access to the
//! path's directory, as any `bind` does. The directory's own permissions still count:
//! put sockets for one user in a directory only that user can write (`$XDG_RUNTIME_DIR`).
//!
//! What is already at the path decides whether `bind` may take it:
//!
//! - nothing: the socket is linked there;
//! - a socket file that refuses connections (left by a server that died): it is
//!   replaced; `bind` checks just before removing it that it is still the file it probed;
//! - a socket file with a live server (a probe connection is accepted, or its backlog is
//!   full): [`Error::AddressInUse`], and the file is left alone. The probe is an ordinary
//!   connection: that server accepts it and sees it close at once, before any hello;
//! - anything else (a regular file, a directory, a symbolic link): [`Error::NotASocket`],
//!   left alone.
//!
//! Two servers binding one path at the same time cannot both get it (the link fails for
//! the second, which looks again and finds the first one live). One narrow race remains
//! when both find the same *stale* file: between the second one's last check and its
//! removal of that file, the first may have put its own socket there, which the second
//! then removes; the first keeps listening on a socket no one can reach. Servers that may
//! start at the same moment on one path should hold a lock file around `bind`.
//!
//! Dropping the [`Listener`] removes the file, only if it is still the one it created
//! (same device and inode) and only in the process that bound it (a forked child's copy
//! leaves it). Connections already accepted stay open. A server that is killed leaves the
//! file behind, stale, for the next `bind` to replace.
//!
//! # Abstract names
//!
//! [`Listener::bind_abstract`] and [`connect_abstract`] use Linux's abstract namespace: a
//! name with no file, gone as soon as the listening socket closes (so never stale), and
//! scoped to the network namespace. An abstract socket has no permission bits: any
//! process in the namespace may connect, and the [accept policy](AcceptPolicy) is the
//! only check. Errors name an abstract address as `@name`.
//!
//! # Who may connect
//!
//! [`Listener::accept`] reads each peer's credentials from the kernel (`SO_PEERCRED`:
//! its process id, user id and group id when it connected, which the peer cannot forge)
//! and asks the listener's [`AcceptPolicy`]. The default admits only peers of this
//! process's effective user id. A refused peer's connection is closed at once, before this
//! side writes anything (no hello), counted in [`Listener::refused`], and `accept` goes on
//! waiting for the next connection. The refused client sees the connection end: its
//! `recv` returns `Ok(None)` (or an I/O error, connection reset, if it had already written
//! its hello) and its sends fail with [`SendError::Closed`](crate::SendError::Closed).
//!
//! # Limits
//!
//! A path or an abstract name holds at most 107 bytes ([`Error::PathTooLong`]). The
//! listening backlog is the system's maximum (`SOMAXCONN`, 4096 on current kernels): that
//! many clients may wait to be accepted. While it is full, [`connect`] retries, backing
//! off from 1 ms to 50 ms, until there is room: wrap it in `tokio::time::timeout` to give
//! up. Each connection costs one descriptor on each side, released when its end is
//! dropped.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use crate::channel::{Config, Endpoint};
use crate::error::Error;
use crate::sys::{self, SharedFd, Socket};
use crate::{Protocol, trace};

/// Where a listener listens, for errors and `Debug`.
#[derive(Clone, PartialEq, Eq)]
enum Address {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Path(path) => write!(f, "{}", path.display()),
            Address::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
        }
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

impl Address {
    fn len(&self) -> usize {
        match self {
            Address::Path(path) => path.as_os_str().len(),
            Address::Abstract(name) => name.len(),
        }
    }

    /// The typed error for a system error about this address, from `bind` or (with
    /// `connecting`) from `connect`.
    fn error(&self, e: io::Error, connecting: bool) -> Error {
        use nix::errno::Errno;
        let address = self.to_string();
        match e.raw_os_error().map(Errno::from_raw) {
            Some(Errno::ENAMETOOLONG) => Error::PathTooLong {
                len: self.len(),
                max: sys::MAX_ADDRESS_LEN,
            },
            Some(Errno::EADDRINUSE) => Error::AddressInUse { address },
            Some(Errno::ENOTSOCK) => Error::NotASocket { address },
            Some(Errno::ECONNREFUSED | Errno::ENOENT) if connecting => {
                Error::NotListening { address }
            }
            Some(Errno::EACCES | Errno::EPERM) => Error::PermissionDenied { address, source: e },
            _ => Error::from(e),
        }
    }
}

/// The credentials of a connected peer, as the kernel recorded them when it connected
/// (`SO_PEERCRED`): the peer cannot forge them.
///
/// The process id is that of the process that called `connect`; the process may have
/// exited since, and its id may even have been reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerCred {
    pid: u32,
    uid: u32,
    gid: u32,
}

impl PeerCred {
    /// The peer's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The peer's effective user id.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The peer's effective group id.
    pub fn gid(&self) -> u32 {
        self.gid
    }
}

/// Which peers a [`Listener`] admits, decided from their [`PeerCred`] before anything is
/// written to them.
///
/// The default is [`same_user`](Self::same_user).
///
/// # Examples
///
/// ```
/// use aiosock::AcceptPolicy;
///
/// // Only this user (the default).
/// let _ = AcceptPolicy::same_user();
/// // Users 1000 and 33 (a web server's), and no one else.
/// let _ = AcceptPolicy::uids([1000, 33]);
/// // Anything you can decide from the credentials.
/// let _ = AcceptPolicy::custom(|peer| peer.gid() == 100);
/// ```
#[derive(Clone, Default)]
pub struct AcceptPolicy(Rule);

#[derive(Clone, Default)]
enum Rule {
    #[default]
    SameUser,
    Any,
    Uids(Arc<[u32]>),
    Custom(Arc<dyn Fn(&PeerCred) -> bool + Send + Sync>),
}

impl AcceptPolicy {
    /// Admits peers whose user id is this process's effective user id when the peer is
    /// accepted. The default.
    ///
    /// Only that id: even root is refused, unless the server runs as root.
    pub fn same_user() -> AcceptPolicy {
        AcceptPolicy(Rule::SameUser)
    }

    /// Admits every peer. For an abstract name this means any process in the network
    /// namespace; for a socket file, anyone its mode lets connect.
    pub fn any() -> AcceptPolicy {
        AcceptPolicy(Rule::Any)
    }

    /// Admits peers whose user id is one of `uids` (and no others: list this process's
    /// own user id too if it should be admitted).
    pub fn uids(uids: impl IntoIterator<Item = u32>) -> AcceptPolicy {
        AcceptPolicy(Rule::Uids(uids.into_iter().collect()))
    }

    /// Admits the peers for which `admit` returns `true`. It runs inside
    /// [`Listener::accept`], so it should be quick.
    pub fn custom(admit: impl Fn(&PeerCred) -> bool + Send + Sync + 'static) -> AcceptPolicy {
        AcceptPolicy(Rule::Custom(Arc::new(admit)))
    }

    /// Whether this policy admits a peer with these credentials.
    pub fn admits(&self, peer: &PeerCred) -> bool {
        match &self.0 {
            Rule::SameUser => peer.uid == sys::effective_uid(),
            Rule::Any => true,
            Rule::Uids(uids) => uids.contains(&peer.uid),
            Rule::Custom(admit) => admit(peer),
        }
    }
}

impl fmt::Debug for AcceptPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Rule::SameUser => f.write_str("SameUser"),
            Rule::Any => f.write_str("Any"),
            Rule::Uids(uids) => f.debug_tuple("Uids").field(uids).finish(),
            Rule::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// How [`Listener::bind_with`] creates the socket file.
///
/// # Examples
///
/// ```no_run
/// #[aiosock::protocol]
/// enum Msg {
///     Hi,
/// }
///
/// // Members of the socket's group may connect too (the policy must admit them as well).
/// let listener = aiosock::Listener::<Msg, Msg>::bind_with(
///     "/run/myservice/socket",
///     aiosock::BindOptions::new().set_mode(0o660),
/// )?
/// .with_policy(aiosock::AcceptPolicy::any());
/// # drop(listener);
/// # Ok::<(), aiosock::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindOptions {
    mode: u32,
}

impl BindOptions {
    /// The defaults: mode 0600.
    pub fn new() -> BindOptions {
        BindOptions { mode: 0o600 }
    }

    /// The socket file's permission bits (0600 by default), applied exactly, whatever the
    /// umask. Only the permission bits (`0o777`) count; others are ignored. Connecting
    /// needs write permission on the file.
    pub fn set_mode(&mut self, mode: u32) -> &mut BindOptions {
        self.mode = mode & 0o777;
        self
    }

    /// The socket file's permission bits.
    pub fn mode(&self) -> u32 {
        self.mode
    }
}

impl Default for BindOptions {
    fn default() -> BindOptions {
        BindOptions::new()
    }
}

/// A listening Unix socket that accepts connections as typed ends sending `Out` and
/// receiving `In`, each with its peer's credentials. See the [module docs](self) for the
/// socket file, the accept policy and the limits.
///
/// Binding works without a runtime (a server may bind before it starts one, or before it
/// drops privileges); the listener attaches to the Tokio runtime in which it first
/// accepts, and stays with it. Many tasks may accept on one listener at once (`accept`
/// takes `&self`; share it in an `Arc`).
pub struct Listener<Out, In> {
    // Declared first, so dropped first: the file goes before the socket closes, and no
    // client finds a file whose connections are refused. Held for its `Drop`.
    #[allow(dead_code, reason = "held only to remove the file on drop")]
    file: Option<sys::SocketFile>,
    socket: Arc<Socket>,
    registered: tokio::sync::OnceCell<AsyncFd<SharedFd>>,
    address: Address,
    policy: AcceptPolicy,
    config: Config,
    refused: AtomicU64,
    _types: PhantomData<fn(Out) -> In>,
}

impl<Out: Protocol, In: Protocol> Listener<Out, In> {
    /// Binds to the socket file `path`, created with mode 0600 (this user only); see
    /// [the module docs](self#the-socket-file) for how, and for what happens when
    /// something is at the path already.
    ///
    /// # Errors
    ///
    /// - [`Error::PathTooLong`]: `path` is over 107 bytes;
    /// - [`Error::AddressInUse`]: a live server listens there;
    /// - [`Error::NotASocket`]: something else is there (left alone);
    /// - [`Error::PermissionDenied`]: this process may not create files in the directory;
    /// - [`Error::Io`]: anything else (the directory does not exist, say).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[aiosock::protocol]
    /// # enum Msg { Hi }
    /// let dir = std::env::temp_dir().join(format!("aiosock-doc-bind-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("server.sock");
    /// let listener = aiosock::Listener::<Msg, Msg>::bind(&path)?;
    /// assert_eq!(listener.path(), Some(path.as_path()));
    /// drop(listener); // removes the file
    /// assert!(!path.exists());
    /// # std::fs::remove_dir(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bind(path: impl AsRef<Path>) -> Result<Listener<Out, In>, Error> {
        Self::bind_with(path, &BindOptions::new())
    }

    /// [`bind`](Self::bind) with options: the socket file's mode.
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind).
    pub fn bind_with(
        path: impl AsRef<Path>,
        options: &BindOptions,
    ) -> Result<Listener<Out, In>, Error> {
        let address = Address::Path(path.as_ref().to_owned());
        let (fd, file) =
            sys::bind_path(path.as_ref(), options.mode).map_err(|e| address.error(e, false))?;
        Ok(Listener::new(fd, Some(file), address))
    }

    /// Binds to `name` in Linux's abstract namespace (no file; see
    /// [the module docs](self#abstract-names)). `name` is the bytes after the leading NUL.
    ///
    /// # Errors
    ///
    /// [`Error::PathTooLong`] if `name` is over 107 bytes, [`Error::AddressInUse`] if a
    /// socket holds the name, [`Error::Io`] otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[aiosock::protocol]
    /// # #[derive(Debug, PartialEq)]
    /// # enum Msg { Hi }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let name = format!("aiosock-doc-{}", std::process::id());
    /// let listener = aiosock::Listener::<Msg, Msg>::bind_abstract(&name)?;
    /// let client = aiosock::connect_abstract::<Msg, Msg>(&name).await?;
    /// let (server, peer) = listener.accept().await?;
    /// assert_eq!(peer.pid(), std::process::id());
    /// let (tx, _) = client.into_split();
    /// let (_, mut rx) = server.into_split();
    /// tx.send(Msg::Hi).await?;
    /// assert_eq!(rx.recv().await?, Some(Msg::Hi));
    /// # Ok(())
    /// # }
    /// ```
    pub fn bind_abstract(name: impl AsRef<[u8]>) -> Result<Listener<Out, In>, Error> {
        let address = Address::Abstract(name.as_ref().to_owned());
        let fd = sys::bind_abstract(name.as_ref()).map_err(|e| address.error(e, false))?;
        Ok(Listener::new(fd, None, address))
    }

    fn new(fd: OwnedFd, file: Option<sys::SocketFile>, address: Address) -> Listener<Out, In> {
        Listener {
            file,
            socket: Arc::new(Socket::new(fd)),
            registered: tokio::sync::OnceCell::new(),
            address,
            policy: AcceptPolicy::default(),
            config: Config::new(),
            refused: AtomicU64::new(0),
            _types: PhantomData,
        }
    }

    /// Waits for the next connection that the [policy](AcceptPolicy) admits, and returns
    /// its end (recorded as connected to the peer's pid, for tracing) with the peer's
    /// credentials. Peers the policy refuses are closed before anything is written to
    /// them, and counted in [`refused`](Self::refused).
    ///
    /// The end has this listener's [`Config`] ([`with_config`](Self::with_config)).
    /// Nothing is written to it yet: its hello goes out when it is first used, as with
    /// any [`Endpoint`].
    ///
    /// Cancel safe: a connection is taken from the kernel only when it can be returned.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfDescriptors`] when this process (or the system) is out of descriptors,
    /// and [`Error::Io`] if accepting fails otherwise. The connection waits in the backlog,
    /// and a later `accept` can take it once descriptors were freed. An error for want of
    /// a resource (descriptors, buffers, memory) is returned after a pause of 100 ms, so
    /// that a loop that accepts again at once does not spin while the want lasts.
    ///
    /// Refusing a peer spends the task's cooperative budget (as a receive does), so that a
    /// flood of refused connections does not keep the runtime from its other tasks.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime with I/O enabled.
    pub async fn accept(&self) -> Result<(Endpoint<Out, In>, PeerCred), Error> {
        let io = self
            .registered
            .get_or_try_init(|| async {
                sys::register(self.socket.clone(), tokio::io::Interest::READABLE)
            })
            .await?;
        loop {
            let mut ready = io.readable().await?;
            let stream = match ready.try_io(|io| sys::accept(io.get_ref().as_fd())) {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return Err(accept_failed(e).await),
                Err(_would_block) => continue,
            };
            let (pid, uid, gid) = sys::peer_cred(stream.as_fd())?;
            let peer = PeerCred { pid, uid, gid };
            if !self.policy.admits(&peer) {
                self.refused.fetch_add(1, Ordering::Relaxed);
                trace::process_event!(info, pid, uid, gid, listener = %self.address, "refused a connection: the accept policy does not admit the peer");
                drop(stream);
                tokio::task::consume_budget().await;
                continue;
            }
            trace::process_event!(debug, pid, uid, gid, listener = %self.address, "accepted a connection");
            let end = Endpoint::from_fd(stream)
                .with_peer_pid(pid)
                .with_config(self.config.clone());
            return Ok((end, peer));
        }
    }

    /// The same listener, admitting the peers `policy` admits.
    pub fn with_policy(mut self, policy: AcceptPolicy) -> Listener<Out, In> {
        self.policy = policy;
        self
    }

    /// Replaces the accept policy; connections accepted later follow it.
    pub fn set_policy(&mut self, policy: AcceptPolicy) -> &mut Listener<Out, In> {
        self.policy = policy;
        self
    }

    /// The accept policy.
    pub fn policy(&self) -> &AcceptPolicy {
        &self.policy
    }

    /// The same listener, giving the ends it accepts `config`.
    pub fn with_config(mut self, config: Config) -> Listener<Out, In> {
        self.config = config;
        self
    }

    /// The settings the ends it accepts get.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How many connections the policy refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The socket file's path, for a listener bound to one.
    pub fn path(&self) -> Option<&Path> {
        match &self.address {
            Address::Path(path) => Some(path),
            Address::Abstract(_) => None,
        }
    }

    /// The abstract name, for a listener bound to one.
    pub fn abstract_name(&self) -> Option<&[u8]> {
        match &self.address {
            Address::Path(_) => None,
            Address::Abstract(name) => Some(name),
        }
    }
}

impl<Out, In> AsFd for Listener<Out, In> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl<Out, In> fmt::Debug for Listener<Out, In> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("fd", &self.socket)
            .field("policy", &self.policy)
            .field("refused", &self.refused.load(Ordering::Relaxed))
            .finish()
    }
}

/// Connects to the socket file at `path`, as an end that sends `Out` and receives `In`.
///
/// Nothing is written yet: the hello goes out when the end is first used. The server's
/// policy may refuse this process: the connection then ends without a hello (`recv`
/// returns `Ok(None)` or a reset). While the server's backlog is full, retries with a
/// growing pause (1 to 50 ms); wrap in `tokio::time::timeout` to give up.
///
/// # Errors
///
/// - [`Error::PathTooLong`]: `path` is over 107 bytes;
/// - [`Error::NotListening`]: no socket file at `path`, or one that nothing listens on;
/// - [`Error::PermissionDenied`]: the file's mode (or a directory's) does not let this
///   process connect;
/// - [`Error::Io`]: anything else.
///
/// # Panics
///
/// Outside a Tokio runtime with time enabled, if it has to wait for the backlog.
///
/// # Examples
///
/// ```
/// # #[aiosock::protocol]
/// # #[derive(Debug, PartialEq)]
/// # enum Msg { Hi }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let path = std::env::temp_dir().join(format!("aiosock-doc-connect-{}", std::process::id()));
/// let listener = aiosock::Listener::<Msg, Msg>::bind(&path)?;
/// let client = aiosock::connect::<Msg, Msg>(&path).await?;
/// let (server, _peer) = listener.accept().await?;
/// # drop((client, server));
/// drop(listener);
/// let err = aiosock::connect::<Msg, Msg>(&path).await.unwrap_err();
/// assert!(matches!(err, aiosock::Error::NotListening { .. }));
/// # Ok(())
/// # }
/// ```
pub async fn connect<Out: Protocol, In: Protocol>(
    path: impl AsRef<Path>,
) -> Result<Endpoint<Out, In>, Error> {
    let address = Address::Path(path.as_ref().to_owned());
    connect_with(&address, || sys::connect_path(path.as_ref())).await
}

/// Connects to `name` in Linux's abstract namespace (see
/// [the listener's docs](Listener::bind_abstract)); otherwise as [`connect`].
///
/// # Errors
///
/// [`Error::PathTooLong`] if `name` is over 107 bytes, [`Error::NotListening`] if no
/// socket holds the name, [`Error::Io`] otherwise.
pub async fn connect_abstract<Out: Protocol, In: Protocol>(
    name: impl AsRef<[u8]>,
) -> Result<Endpoint<Out, In>, Error> {
    let address = Address::Abstract(name.as_ref().to_owned());
    connect_with(&address, || sys::connect_abstract(name.as_ref())).await
}

async fn connect_with<Out: Protocol, In: Protocol>(
    address: &Address,
    connect: impl Fn() -> io::Result<OwnedFd>,
) -> Result<Endpoint<Out, In>, Error> {
    let mut pause = Duration::from_millis(1);
    loop {
        match connect() {
            Ok(fd) => {
                // The server's pid at `listen`, for tracing.
                let pid = sys::peer_cred(fd.as_fd()).map(|(pid, _, _)| pid);
                let end = Endpoint::from_fd(fd);
                return Ok(match pid {
                    Ok(pid) if pid != 0 => end.with_peer_pid(pid),
                    _ => end,
                });
            }
            // The backlog is full, and a Unix socket gives no event when it has room.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(address.error(e, true)),
        }
    }
}

/// The error of a failed `accept`, after a pause if it is for want of a resource (out of
/// descriptors, buffers or memory): readiness stays set while the connection waits in the
/// backlog, so a caller that accepts again at once would otherwise spin on the error.
pub(crate) async fn accept_failed(e: std::io::Error) -> Error {
    let wanting = matches!(
        e.raw_os_error(),
        Some(nix::libc::EMFILE | nix::libc::ENFILE | nix::libc::ENOBUFS | nix::libc::ENOMEM)
    );
    if wanting {
        crate::channel::pause().await;
    }
    Error::from(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_admit_what_they_say() {
        let me = sys::effective_uid();
        let other = me.wrapping_add(1);
        let peer = |uid| PeerCred {
            pid: 1,
            uid,
            gid: 1,
        };
        let default = AcceptPolicy::default();
        assert!(default.admits(&peer(me)) && !default.admits(&peer(other)));
        assert!(AcceptPolicy::any().admits(&peer(other)));
        let listed = AcceptPolicy::uids([other]);
        assert!(listed.admits(&peer(other)) && !listed.admits(&peer(me)));
        let custom = AcceptPolicy::custom(|p| p.pid() == 1);
        assert!(custom.admits(&peer(other)));
        assert_eq!(format!("{listed:?}"), format!("Uids([{other}])"));
    }

    #[test]
    fn addresses_name_paths_and_abstract_names() {
        assert_eq!(
            Address::Path("/run/a.sock".into()).to_string(),
            "/run/a.sock"
        );
        assert_eq!(Address::Abstract(b"svc".to_vec()).to_string(), "@svc");
        let e = Address::Path("x".repeat(200).into()).error(
            io::Error::from_raw_os_error(nix::errno::Errno::ENAMETOOLONG as i32),
            false,
        );
        assert!(
            matches!(e, Error::PathTooLong { len: 200, max: 107 }),
            "{e:?}"
        );
    }
}
