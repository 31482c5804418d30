//! The same protocol across hosts: two processes over TLS on localhost, with certificates
//! made on the fly. The server makes a certificate authority and a certificate for
//! `localhost` signed by it, listens with TLS on an ephemeral port, and starts the client
//! (this same program, run with `--client <addr> <ca.der>`), which trusts only that
//! authority. They talk over ordinary aiosock ends: calls, replies, the close.
//!
//! `cargo run -p aiosock-examples --features tls --example tls`

use std::error::Error;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use aiosock::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use aiosock::rustls::{ClientConfig, RootCertStore, ServerConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// From the client to the server.
#[aiosock::protocol]
#[derive(Debug)]
pub enum Ask {
    /// Answered with the text reversed.
    #[reply(String)]
    Reverse(String),
}

/// The server sends nothing on its own.
#[aiosock::protocol]
#[derive(Debug)]
pub enum Nothing {
    /// Never sent.
    Never,
}

impl NothingHandler for () {
    async fn on_never(&mut self) {}
}

struct Reverser;

impl AskHandler for Reverser {
    async fn on_reverse(&mut self, text: String) -> String {
        text.chars().rev().collect()
    }
}

type BoxError = Box<dyn Error + Send + Sync>;

/// A certificate authority, and a certificate for `localhost` that it signed.
fn certificates() -> Result<(CertificateDer<'static>, CertificateDer<'static>, KeyPair), BoxError> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "aiosock example CA");
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()])?;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok((ca_cert.der().clone(), cert.der().clone(), key))
}

async fn client(addr: &str, ca: &Path) -> Result<(), BoxError> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(std::fs::read(ca)?))?;
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let end = aiosock::connect_tls::<Ask, Nothing>(addr, "localhost", Arc::new(config)).await?;
    let (tx, rx) = end.into_split();
    let replies = tokio::spawn(rx.serve(()));
    let ask = AskClient::new(tx);
    let reply = ask.reverse("across hosts, over TLS".into()).await?;
    println!(
        "client {}: the server answered {reply:?}",
        std::process::id()
    );
    drop(ask);
    replies.await??;
    Ok(())
}

async fn server() -> Result<(), BoxError> {
    let (ca, cert, key) = certificates()?;
    let ca_file = std::env::temp_dir().join(format!("aiosock-tls-ca-{}.der", std::process::id()));
    std::fs::write(&ca_file, ca.as_ref())?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    let listener =
        aiosock::TcpListener::<Nothing, Ask>::bind_tls("127.0.0.1:0", Arc::new(config)).await?;
    let addr = listener.local_addr()?;
    println!("server {}: TLS on {addr}", std::process::id());
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--client")
        .arg(addr.to_string())
        .arg(&ca_file)
        .spawn()?;
    let (end, peer) = listener.accept().await?;
    println!(
        "server: a client from {} completed the handshake",
        peer.addr()
    );
    end.serve(Reverser).await?;
    let status = child.wait()?;
    std::fs::remove_file(&ca_file)?;
    println!("server: the client closed; it exited with {status}");
    if !status.success() {
        return Err("the client failed".into());
    }
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let runtime = tokio::runtime::Runtime::new()?;
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, addr, ca] = &args[..]
        && flag == "--client"
    {
        return runtime.block_on(client(addr, Path::new(ca)));
    }
    runtime.block_on(server())
}
