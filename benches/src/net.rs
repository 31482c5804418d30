//! The network workloads: the messages of `small`, `rtt` and `data-4m` between the parent
//! and the child over TCP on the loopback (`127.0.0.1`, a port the system picks), in
//! plaintext (`tcp-small`, `tcp-rtt`) or under TLS (`tls-small`, `tls-rtt`, `tls-4m`).
//!
//! The parent listens and starts the child with the address in [`ENV_ADDR`]
//! ([`pass_addr`]); the child connects ([`parent_addr`]). Every connection has
//! `TCP_NODELAY`, as aiosock sets on its own. The parent waits for the connection and for
//! the child's exit without blocking its runtime ([`accepted`], [`exited`]), so that the
//! tasks on it (aiosock's bridge) go on meanwhile, and a child that fails before it
//! connects fails the run at once.
//!
//! For TLS (feature `tls-peers`) the parent makes a certificate authority and a
//! certificate for `localhost` signed by it for each run, with rcgen, as
//! `examples/tls.rs` does, and writes the authority's DER into a file whose path the child
//! finds in `AIOSOCK_BENCH_CA`; the child trusts that authority only (`Tls`,
//! `client_config`). Both sides use rustls's `ring` provider with its defaults: TLS 1.3
//! with `TLS13_AES_256_GCM_SHA384`, no client certificate. The handshake, like connecting,
//! is never timed: as in every workload, the passive side sends `Ready` once connected and
//! the active side starts on it (tarpc, whose server cannot send first, is the exception:
//! see `systems/tarpc_tls.rs`).

use std::future::Future;
use std::net::SocketAddr;
use std::process::Child;
use std::time::Duration;

use crate::BoxError;
use crate::process::{ChildCmd, check_status};

/// Where the parent listens: the loopback, on a port the system picks.
pub(crate) const LOOPBACK: &str = "127.0.0.1:0";

/// The environment variable with the parent's address, for the child.
const ENV_ADDR: &str = "AIOSOCK_BENCH_ADDR";

/// Why the TLS systems sit out when the feature is off.
pub(crate) const TLS_MISSING: &str = "unsupported: build with --features tls-peers";

/// What the report says about the TLS workloads' set-up.
pub(crate) const TLS_NOTE: &str = if cfg!(feature = "tls-peers") {
    "TLS: rustls 0.23 (ring provider, its defaults: TLS 1.3, AES-256-GCM), tokio-rustls 0.26, \
     a fresh CA and localhost certificate per run"
} else {
    "the TLS systems are not built (feature tls-peers)"
};

/// How often the parent looks whether the child exited, while it waits.
const POLL: Duration = Duration::from_millis(1);

/// Tells the child where the parent listens.
pub(crate) fn pass_addr(child: &mut ChildCmd, addr: SocketAddr) {
    child.command_mut().env(ENV_ADDR, addr.to_string());
}

/// The child's side of [`pass_addr`].
pub(crate) fn parent_addr() -> Result<SocketAddr, BoxError> {
    let addr = std::env::var(ENV_ADDR).map_err(|e| format!("{ENV_ADDR}: {e}"))?;
    Ok(addr.parse()?)
}

/// The child's connection to a blocking `std` listener, which this makes non-blocking:
/// an error if the child exits before it connects. The stream is blocking.
pub(crate) fn accept_std(
    listener: &std::net::TcpListener,
    child: &mut Child,
) -> Result<std::net::TcpStream, BoxError> {
    listener.set_nonblocking(true)?;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                gone_before_connecting(child)?;
                std::thread::sleep(POLL);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// What `accept` returns once the child connected: an error if the child exits first.
pub(crate) async fn accepted<T>(
    child: &mut Child,
    accept: impl Future<Output = T>,
) -> Result<T, BoxError> {
    let mut accept = std::pin::pin!(accept);
    loop {
        if let Ok(accepted) = tokio::time::timeout(10 * POLL, &mut accept).await {
            return Ok(accepted);
        }
        gone_before_connecting(child)?;
    }
}

/// An error if the child has exited (while the parent waits for its connection).
fn gone_before_connecting(child: &mut Child) -> Result<(), BoxError> {
    match child.try_wait()? {
        Some(status) => Err(format!("the child exited before it connected ({status})").into()),
        None => Ok(()),
    }
}

/// Waits for the child to exit, letting the runtime's other tasks run meanwhile: an error
/// unless it succeeded.
pub(crate) async fn exited(child: &mut Child) -> Result<(), BoxError> {
    loop {
        if let Some(status) = child.try_wait()? {
            return check_status(status);
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(feature = "tls-peers")]
pub(crate) use tls::{SERVER_NAME, Tls, accept_tls, client_config, connect_tls};

#[cfg(feature = "tls-peers")]
mod tls {
    use std::path::PathBuf;
    use std::process::Child;
    use std::sync::Arc;

    use aiosock::rustls::crypto::{CryptoProvider, ring};
    use aiosock::rustls::pki_types::{
        CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName,
    };
    use aiosock::rustls::{ClientConfig, RootCertStore, ServerConfig};
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

    use super::{LOOPBACK, accepted, parent_addr, pass_addr};
    use crate::BoxError;
    use crate::process::ChildCmd;

    /// The name the server's certificate is for, which the client checks.
    pub(crate) const SERVER_NAME: &str = "localhost";

    /// The environment variable with the path of the authority's DER, for the child.
    const ENV_CA: &str = "AIOSOCK_BENCH_CA";

    /// The parent's TLS material for one run: the server's config, and the file with the
    /// authority's DER for the child, removed when this is dropped.
    #[derive(Debug)]
    pub(crate) struct Tls {
        server: Arc<ServerConfig>,
        ca_file: PathBuf,
    }

    impl Tls {
        /// Makes a certificate authority and a certificate for [`SERVER_NAME`] signed by
        /// it, and writes the authority's DER to a file of this process's.
        pub(crate) fn new() -> Result<Tls, BoxError> {
            let ca_key = KeyPair::generate()?;
            let mut ca = CertificateParams::new(Vec::<String>::new())?;
            ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca.distinguished_name
                .push(DnType::CommonName, "aiosock-benches CA");
            let ca_cert = ca.self_signed(&ca_key)?;
            let issuer = Issuer::new(ca, ca_key);
            let key = KeyPair::generate()?;
            let mut leaf = CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
            leaf.distinguished_name
                .push(DnType::CommonName, SERVER_NAME);
            let cert = leaf.signed_by(&key, &issuer)?;
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
            let server = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(vec![cert.der().clone()], key)?;
            let ca_file =
                std::env::temp_dir().join(format!("aiosock-benches-ca-{}.der", std::process::id()));
            std::fs::write(&ca_file, ca_cert.der())?;
            Ok(Tls {
                server: Arc::new(server),
                ca_file,
            })
        }

        /// The server's config.
        pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
            self.server.clone()
        }

        /// Tells the child where the authority's DER is.
        pub(crate) fn pass_to(&self, child: &mut ChildCmd) {
            child.command_mut().env(ENV_CA, &self.ca_file);
        }
    }

    impl Drop for Tls {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.ca_file);
        }
    }

    /// The child's config: trusts the parent's authority only.
    pub(crate) fn client_config() -> Result<Arc<ClientConfig>, BoxError> {
        let path = std::env::var_os(ENV_CA).ok_or(format!("{ENV_CA} is not set"))?;
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(std::fs::read(path)?))?;
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// rustls's `ring` provider, named rather than taken as the process default.
    fn provider() -> Arc<CryptoProvider> {
        Arc::new(ring::default_provider())
    }

    /// The parent's side of a tokio-rustls connection: listens on the loopback, starts the
    /// child with the address and the authority, accepts its connection and completes the
    /// handshake.
    pub(crate) async fn accept_tls(
        mut child: ChildCmd,
        tls: &Tls,
    ) -> Result<(server::TlsStream<TcpStream>, Child), BoxError> {
        let listener = TcpListener::bind(LOOPBACK).await?;
        pass_addr(&mut child, listener.local_addr()?);
        tls.pass_to(&mut child);
        let mut child = child.spawn()?;
        let (tcp, _) = accepted(&mut child, listener.accept()).await??;
        tcp.set_nodelay(true)?;
        let stream = TlsAcceptor::from(tls.server_config()).accept(tcp).await?;
        Ok((stream, child))
    }

    /// The child's side of [`accept_tls`].
    pub(crate) async fn connect_tls() -> Result<client::TlsStream<TcpStream>, BoxError> {
        let config = client_config()?;
        let tcp = TcpStream::connect(parent_addr()?).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(SERVER_NAME)?;
        Ok(TlsConnector::from(config).connect(name, tcp).await?)
    }
}
