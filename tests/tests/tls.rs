//! TCP and TLS: a round trip of messages and a call over TLS, mutual TLS, the certificate
//! cases refused with `Error::Tls` (a wrong CA, an expired certificate, a missing client
//! certificate), a hostile TLS peer held to the decode budget, close in both directions,
//! and plaintext TCP with its socket options. Certificates are made here with rcgen.
//!
//! Run with `cargo test -p aiosock-tests --features tls --test tls`.

use std::sync::Arc;

use aiosock::{Error, TcpListener, connect_plaintext_tcp, connect_tls};
use aiosock_tests::{frame_header, guard, hello};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::AsyncWriteExt;

#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq)]
enum Msg {
    Text(String),
    #[reply(u64)]
    Square(u64),
    Units(std::collections::BTreeSet<()>),
}

/// Serves `Msg`: answers calls, and forwards texts to a channel.
struct Server(tokio::sync::mpsc::UnboundedSender<String>);

impl MsgHandler for Server {
    async fn on_text(&mut self, text: String) {
        let _ = self.0.send(text);
    }
    async fn on_square(&mut self, n: u64) -> u64 {
        n * n
    }
    async fn on_units(&mut self, _: std::collections::BTreeSet<()>) {}
}

/// A certificate authority that signs certificates for the tests.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
}

/// A certificate with its key.
struct Leaf {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca {
            issuer: Issuer::new(params, key),
            cert: cert.der().clone(),
        }
    }

    /// A certificate for `name`, valid now (or expired since 2021 with `expired`).
    fn leaf(&self, name: &str, expired: bool) -> Leaf {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        Leaf {
            cert: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.clone()).expect("root");
        Arc::new(roots)
    }
}

fn server_config(leaf: &Leaf, client_ca: Option<&Ca>) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder();
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(
            rustls::server::WebPkiClientVerifier::builder(ca.roots())
                .build()
                .expect("verifier"),
        ),
        None => builder.with_no_client_auth(),
    };
    Arc::new(
        builder
            .with_single_cert(vec![leaf.cert.clone()], leaf.key.clone_key())
            .expect("server config"),
    )
}

fn client_config(ca: &Ca, leaf: Option<&Leaf>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder().with_root_certificates(ca.roots());
    Arc::new(match leaf {
        Some(leaf) => builder
            .with_client_auth_cert(vec![leaf.cert.clone()], leaf.key.clone_key())
            .expect("client config"),
        None => builder.with_no_client_auth(),
    })
}

async fn tls_listener(config: Arc<ServerConfig>) -> (TcpListener<Msg, Msg>, String) {
    let listener = TcpListener::<Msg, Msg>::bind_tls("127.0.0.1:0", config)
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    (listener, addr)
}

/// Sends texts and a call from `client` to `server` and back, then closes the client's
/// sending direction and checks the server sees the close, and the other way round.
async fn round_trip(client: aiosock::Endpoint<Msg, Msg>, server: aiosock::Endpoint<Msg, Msg>) {
    let (texts_tx, mut texts) = tokio::sync::mpsc::unbounded_channel();
    let (stx, srx) = server.into_split();
    let serving = tokio::spawn(srx.serve(Server(texts_tx)));
    let (tx, mut rx) = client.into_split();
    // The client's receiver: it also takes the replies to the client's calls.
    let collector = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(msg) = rx.recv().await.expect("recv") {
            got.push(msg);
        }
        got
    });
    let client = MsgClient::new(tx);
    for i in 0..100 {
        client
            .send(Msg::Text(format!("hello {i}")))
            .await
            .expect("send");
    }
    assert_eq!(guard("call", client.square(12)).await.expect("call"), 144);
    for i in 0..100 {
        let text = guard("text", texts.recv()).await.expect("a text");
        assert_eq!(text, format!("hello {i}"));
    }
    // The server sends a message back and drops its sender; the client closes its
    // direction: the server's serve returns, and the client sees the message, then the
    // close.
    stx.send(Msg::Text("bye".into())).await.expect("send back");
    drop(stx);
    drop(client);
    guard("serve ends", serving)
        .await
        .expect("join")
        .expect("serve");
    let got = guard("collector", collector).await.expect("join");
    assert_eq!(got, vec![Msg::Text("bye".into())]);
}

#[tokio::test]
async fn messages_and_a_call_travel_over_tls() {
    let ca = Ca::new("aiosock test CA");
    let (listener, addr) = tls_listener(server_config(&ca.leaf("localhost", false), None)).await;
    let connecting = tokio::spawn(async move {
        connect_tls::<Msg, Msg>(addr, "localhost", client_config(&ca, None)).await
    });
    let (server, peer) = guard("accept", listener.accept()).await.expect("accept");
    assert!(peer.certificates().is_empty());
    assert!(listener.is_tls());
    let client = connecting.await.expect("join").expect("connect");
    round_trip(client, server).await;
}

#[tokio::test]
async fn mutual_tls_is_accepted_and_shows_the_client_certificate() {
    let ca = Ca::new("aiosock test CA");
    let client_leaf = ca.leaf("client", false);
    let client_cert = client_leaf.cert.clone();
    let (listener, addr) =
        tls_listener(server_config(&ca.leaf("localhost", false), Some(&ca))).await;
    let connecting = tokio::spawn(async move {
        connect_tls::<Msg, Msg>(addr, "localhost", client_config(&ca, Some(&client_leaf))).await
    });
    let (server, peer) = guard("accept", listener.accept()).await.expect("accept");
    assert_eq!(peer.certificates(), &[client_cert]);
    assert!(peer.addr().ip().is_loopback());
    let client = connecting.await.expect("join").expect("connect");
    round_trip(client, server).await;
}

/// Connects with `client` to a listener with `server`, and returns what each side got.
async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> (
    Result<aiosock::Endpoint<Msg, Msg>, Error>,
    Result<aiosock::Endpoint<Msg, Msg>, Error>,
) {
    let (listener, addr) = tls_listener(server).await;
    let connecting =
        tokio::spawn(async move { connect_tls::<Msg, Msg>(addr, "localhost", client).await });
    let accepted = guard("accept", listener.accept()).await.map(|(end, _)| end);
    let connected = guard("connect", connecting).await.expect("join");
    (accepted, connected)
}

fn tls_reason(result: Result<aiosock::Endpoint<Msg, Msg>, Error>) -> String {
    match result {
        Err(Error::Tls { reason }) => {
            let shown = Error::Tls {
                reason: reason.clone(),
            }
            .to_string();
            assert!(shown.starts_with("TLS handshake failed: "), "{shown}");
            reason
        }
        Err(e) => panic!("expected Error::Tls, got {e:?}"),
        Ok(_) => panic!("expected Error::Tls, got an end"),
    }
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused() {
    let ca = Ca::new("aiosock test CA");
    let other = Ca::new("another CA");
    let (accepted, connected) = handshake(
        server_config(&other.leaf("localhost", false), None),
        client_config(&ca, None),
    )
    .await;
    let reason = tls_reason(connected);
    assert!(
        reason.contains("invalid peer certificate: UnknownIssuer"),
        "{reason}"
    );
    // The client told the server why.
    let reason = tls_reason(accepted);
    assert!(reason.contains("UnknownCA"), "{reason}");
}

#[tokio::test]
async fn an_expired_server_certificate_is_refused() {
    let ca = Ca::new("aiosock test CA");
    let (_, connected) = handshake(
        server_config(&ca.leaf("localhost", true), None),
        client_config(&ca, None),
    )
    .await;
    let reason = tls_reason(connected);
    assert!(
        reason.contains("invalid peer certificate: certificate expired"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_server_certificate_for_another_name_is_refused() {
    let ca = Ca::new("aiosock test CA");
    let (_, connected) = handshake(
        server_config(&ca.leaf("elsewhere.example", false), None),
        client_config(&ca, None),
    )
    .await;
    let reason = tls_reason(connected);
    assert!(
        reason.contains("certificate not valid for name \"localhost\""),
        "{reason}"
    );
}

#[tokio::test]
async fn a_missing_client_certificate_under_mutual_tls_is_refused() {
    let ca = Ca::new("aiosock test CA");
    let (accepted, connected) = handshake(
        server_config(&ca.leaf("localhost", false), Some(&ca)),
        client_config(&ca, None),
    )
    .await;
    let reason = tls_reason(accepted);
    assert!(reason.contains("no certificates"), "{reason}");
    // Under TLS 1.3 the client's handshake was done before the server refused it: its end
    // closes.
    if let Ok(end) = connected {
        let (_tx, mut rx) = end.into_split();
        assert!(guard("recv", rx.recv()).await.map_or(true, |m| m.is_none()));
    }
}

#[tokio::test]
async fn client_certificates_from_another_ca_or_expired_are_refused() {
    let ca = Ca::new("aiosock test CA");
    let other = Ca::new("another CA");
    let server = || server_config(&ca.leaf("localhost", false), Some(&ca));
    let (accepted, _) = handshake(
        server(),
        client_config(&ca, Some(&other.leaf("client", false))),
    )
    .await;
    let reason = tls_reason(accepted);
    assert!(
        reason.contains("invalid peer certificate: UnknownIssuer"),
        "{reason}"
    );
    let (accepted, _) =
        handshake(server(), client_config(&ca, Some(&ca.leaf("client", true)))).await;
    let reason = tls_reason(accepted);
    assert!(
        reason.contains("invalid peer certificate: certificate expired"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_hostile_tls_peer_gets_the_same_decode_budget() {
    // A raw tokio-rustls client sends a valid hello, then `Units(BTreeSet<()>)` claiming
    // 2^60 elements in a 10-byte frame: the same frame a local peer is refused for.
    let ca = Ca::new("aiosock test CA");
    let (listener, addr) = tls_listener(server_config(&ca.leaf("localhost", false), None)).await;
    let config = client_config(&ca, None);
    let raw = tokio::spawn(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .expect("handshake");
        let mut payload = vec![2, 0xfd];
        payload.extend((1u64 << 60).to_le_bytes());
        let bytes = [
            hello::<Msg, Msg>(),
            frame_header(payload.len() as u32, 0, 0),
            payload,
        ]
        .concat();
        tls.write_all(&bytes).await.expect("write");
        tls.flush().await.expect("flush");
        tls
    });
    let (server, _) = guard("accept", listener.accept()).await.expect("accept");
    let (_tx, mut rx) = server.into_split();
    let result = guard("recv", rx.recv()).await;
    assert!(
        matches!(
            result,
            Err(Error::OverBudget {
                len: 10,
                budget: 4256
            })
        ),
        "{result:?}"
    );
    assert!(matches!(rx.recv().await, Ok(None)), "the stream is over");
    drop(raw.await.expect("raw peer"));
}

#[tokio::test]
async fn a_tls_peer_that_vanishes_closes_the_end() {
    let ca = Ca::new("aiosock test CA");
    let (listener, addr) = tls_listener(server_config(&ca.leaf("localhost", false), None)).await;
    let config = client_config(&ca, None);
    let raw = tokio::spawn(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .expect("handshake");
        tls.write_all(&hello::<Msg, Msg>()).await.expect("hello");
        tls.flush().await.expect("flush");
        tls
    });
    let (server, _) = guard("accept", listener.accept()).await.expect("accept");
    // The peer's TCP connection closes without close_notify.
    drop(raw.await.expect("raw peer"));
    let (tx, mut rx) = server.into_split();
    assert!(matches!(guard("recv", rx.recv()).await, Ok(None)));
    guard("closed", tx.closed()).await;
}

/// The TCP socket options of this process's connection from local port `port`, from the
/// kernel's table: whether its keepalive timer runs.
fn keepalive_timer_runs(local_port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let port = fields[1].rsplit(':').next().expect("port");
        // `tr` (the timer) is 2 for the keepalive timer.
        u16::from_str_radix(port, 16) == Ok(local_port) && fields[5].starts_with("02:")
    })
}

#[tokio::test]
async fn plaintext_tcp_round_trip_with_nodelay_and_keepalive() {
    let listener = TcpListener::<Msg, Msg>::bind_plaintext("127.0.0.1:0")
        .await
        .expect("bind");
    assert!(!listener.is_tls());
    let addr = listener.local_addr().expect("addr");
    let connecting = tokio::spawn(connect_plaintext_tcp::<Msg, Msg>(addr));
    let (server, peer) = guard("accept", listener.accept()).await.expect("accept");
    assert!(peer.certificates().is_empty());
    let client = connecting.await.expect("join").expect("connect");
    // Both sockets of the connection: the server's (local port = the listener's) and the
    // client's (local port = the peer's port), with their keepalive timers running.
    guard("keepalive", async {
        while !(keepalive_timer_runs(addr.port()) && keepalive_timer_runs(peer.addr().port())) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    round_trip(client, server).await;
    // The options as accept and connect set them, read back with getsockopt.
    let stream = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    aiosock::__private::configure_tcp(&stream).expect("configure");
    use nix::sys::socket::{getsockopt, sockopt};
    assert!(getsockopt(&stream, sockopt::TcpNoDelay).expect("nodelay"));
    assert!(getsockopt(&stream, sockopt::KeepAlive).expect("keepalive"));
    assert_eq!(getsockopt(&stream, sockopt::TcpKeepIdle).expect("idle"), 60);
    assert_eq!(
        getsockopt(&stream, sockopt::TcpKeepInterval).expect("interval"),
        10
    );
    assert_eq!(
        getsockopt(&stream, sockopt::TcpKeepCount).expect("count"),
        6
    );
}

#[tokio::test]
async fn connecting_to_nothing_is_not_listening() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let err = connect_plaintext_tcp::<Msg, Msg>(addr).await.unwrap_err();
    assert!(matches!(err, Error::NotListening { .. }), "{err:?}");
}

#[tokio::test]
async fn a_worker_process_over_plaintext_tcp_answers_and_its_death_is_seen() {
    use aiosock_tests::workers::{Reply, Request, worker};
    let listener = TcpListener::<Request, Reply>::bind_plaintext("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let mut child = worker(env!("CARGO_BIN_EXE_worker"), "connect-tcp")
        .arg(&addr)
        .spawn()
        .expect("spawn worker");
    let (end, _) = guard("accept", listener.accept()).await.expect("accept");
    let (tx, mut rx) = end.into_split();
    let data = vec![7; 100_000];
    tx.send(Request::Echo {
        id: 1,
        data: data.clone(),
    })
    .await
    .expect("send");
    assert_eq!(
        guard("echo", rx.recv()).await.expect("recv"),
        Some(Reply::Echo { id: 1, data })
    );
    child.kill().expect("kill -9");
    let after = guard("death seen", rx.recv()).await;
    assert!(matches!(after, Ok(None) | Err(_)), "{after:?}");
    let _ = child.wait();
}

#[tokio::test]
async fn a_peer_that_does_not_read_makes_sends_wait_not_the_bridge_buffer() {
    let ca = Ca::new("aiosock test CA");
    let (listener, addr) = tls_listener(server_config(&ca.leaf("localhost", false), None)).await;
    let connecting = tokio::spawn(async move {
        connect_tls::<Msg, Msg>(addr, "localhost", client_config(&ca, None)).await
    });
    let (server, _) = guard("accept", listener.accept()).await.expect("accept");
    let client = connecting.await.expect("join").expect("connect");
    let (tx, _rx) = client.into_split();
    // The server never receives: the client's buffer, the socket pairs, the bridges and
    // TCP fill up, and `try_send` says `Full` well before 256 MiB went out.
    let chunk = "x".repeat(64 * 1024);
    let mut sent = 0usize;
    let full = guard("fills up", async {
        loop {
            match tx.try_send(Msg::Text(chunk.clone())) {
                Ok(()) => sent += chunk.len(),
                Err(aiosock::TrySendError::Full(_)) => {
                    // Give the pumps time to drain what they can, then try again.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    if tx.try_send(Msg::Text(chunk.clone())).is_err() {
                        return sent;
                    }
                    sent += chunk.len();
                }
                Err(e) => panic!("{e:?}"),
            }
            assert!(sent < 256 << 20, "256 MiB accepted: nothing holds back");
        }
    })
    .await;
    assert!(full > 0);
    drop(server);
}

#[tokio::test]
async fn the_bridge_ends_when_the_end_is_dropped_and_the_peer_stays_silent() {
    let ca = Ca::new("aiosock test CA");
    let (listener, addr) = tls_listener(server_config(&ca.leaf("localhost", false), None)).await;
    let config = client_config(&ca, None);
    let raw = tokio::spawn(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .expect("handshake")
    });
    let (server, _) = guard("accept", listener.accept()).await.expect("accept");
    let mut tls = raw.await.expect("raw peer");
    let (tx, rx) = server.into_split();
    tx.send(Msg::Text("last".into())).await.expect("send");
    drop((tx, rx));
    // The peer reads the hello, the last message and then close_notify: a clean end.
    let mut got = Vec::new();
    use tokio::io::AsyncReadExt;
    guard("read to close_notify", tls.read_to_end(&mut got))
        .await
        .expect("a clean close");
    let mut expected = hello::<Msg, Msg>();
    aiosock::__private::wire::encode_one(&mut expected, &Msg::Text("last".into()), 1 << 20)
        .expect("encode");
    assert_eq!(got, expected);
    // The peer keeps its side open and silent; the bridge ends anyway, closing the
    // connection: what the peer writes now is refused (a reset), which it learns at its
    // next writes. (A bridge still running would take them, unread, without end.)
    guard("bridge ends", async {
        use tokio::io::AsyncWriteExt;
        loop {
            if tls.write_all(b"x").await.is_err() || tls.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    drop(tls);
}

/// A plaintext client on a runtime with I/O only (no timer) sends 32 MiB that the server
/// has not started to read, drops its end and then its runtime. Its bridge cannot
/// forward it all from there: it moves to aiosock's own thread, and every message
/// arrives, then a clean end.
#[tokio::test]
async fn a_client_runtime_without_timers_that_drops_its_end_still_delivers_everything() {
    let listener = TcpListener::<Msg, Msg>::bind_plaintext("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    const COUNT: usize = 512;
    let chunk = "y".repeat(64 * 1024);
    let client = {
        let chunk = chunk.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let end = connect_plaintext_tcp::<Msg, Msg>(addr)
                    .await
                    .expect("connect");
                let (tx, rx) = end.into_split();
                for i in 0..COUNT {
                    tx.send(Msg::Text(format!("{i} {chunk}")))
                        .await
                        .expect("send");
                }
                drop((tx, rx));
            });
            drop(rt);
        })
    };
    let (server, _) = guard("accept", listener.accept()).await.expect("accept");
    // Not reading yet: TCP and the pairs fill up, and the client's last sends wait.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_tx, mut rx) = server.into_split();
    for i in 0..COUNT {
        let got = guard("recv", rx.recv()).await.expect("recv");
        assert_eq!(got, Some(Msg::Text(format!("{i} {chunk}"))), "message {i}");
    }
    assert_eq!(guard("end", rx.recv()).await.expect("clean end"), None);
    client.join().expect("client thread");
}

#[tokio::test]
async fn a_client_that_stalls_its_handshake_does_not_hold_up_the_others() {
    let ca = Ca::new("aiosock test CA");
    let (listener, addr) = tls_listener(server_config(&ca.leaf("localhost", false), None)).await;
    let listener = listener.with_handshake_timeout(std::time::Duration::from_secs(1));
    // Connects over TCP and sends nothing.
    let stalled = tokio::net::TcpStream::connect(&addr).await.expect("tcp");
    let config = client_config(&ca, None);
    let connecting =
        tokio::spawn(async move { connect_tls::<Msg, Msg>(addr, "localhost", config).await });
    let (end, _) = tokio::time::timeout(std::time::Duration::from_millis(500), listener.accept())
        .await
        .expect("the good client was accepted before the stalled one's timeout")
        .expect("accept");
    let client = connecting.await.expect("join").expect("connect");
    // The stalled one times out with a clear error.
    let err = guard("timeout", listener.accept()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Tls { reason } if reason.contains("did not finish within")),
        "{err:?}"
    );
    drop((stalled, end, client));
}

/// The TLS futures are `Send` too.
#[allow(dead_code)]
fn tls_futures_are_send(config: Arc<ClientConfig>, server: Arc<ServerConfig>) {
    fn send<F: std::future::Future + Send>(_: F) {}
    send(connect_tls::<Msg, Msg>("127.0.0.1:1", "localhost", config));
    send(TcpListener::<Msg, Msg>::bind_tls("127.0.0.1:0", server));
}

#[tokio::test]
async fn a_worker_process_over_tls_answers_and_its_death_is_seen() {
    use aiosock_tests::workers::{Reply, Request, worker};
    let ca = Ca::new("aiosock test CA");
    let ca_file = std::env::temp_dir().join(format!("aiosock-tls-ca-{}.der", std::process::id()));
    std::fs::write(&ca_file, ca.cert.as_ref()).expect("write the CA");
    let listener = TcpListener::<Request, Reply>::bind_tls(
        "127.0.0.1:0",
        server_config(&ca.leaf("localhost", false), None),
    )
    .await
    .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let mut child = worker(env!("CARGO_BIN_EXE_worker"), "connect-tls")
        .arg(&addr)
        .arg(&ca_file)
        .spawn()
        .expect("spawn worker");
    let (end, _) = guard("accept", listener.accept()).await.expect("accept");
    let (tx, mut rx) = end.into_split();
    let data = vec![9; 1 << 20];
    for id in 0..5 {
        tx.send(Request::Echo {
            id,
            data: data.clone(),
        })
        .await
        .expect("send");
    }
    for id in 0..5 {
        assert_eq!(
            guard("echo", rx.recv()).await.expect("recv"),
            Some(Reply::Echo {
                id,
                data: data.clone()
            })
        );
    }
    child.kill().expect("kill -9");
    let after = guard("death seen", rx.recv()).await;
    assert!(matches!(after, Ok(None) | Err(_)), "{after:?}");
    let _ = child.wait();
    let _ = std::fs::remove_file(&ca_file);
}
