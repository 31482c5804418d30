//! Auto-trait assertions, as in tokio's `tests/async_send_sync.rs`: the channel types and
//! the futures of their async methods are `Send` (and `Sync` where promised), so users
//! can hand them to `tokio::spawn`. A failure here is a compile error.

use std::future::Future;

use aiosock::{Endpoint, Error, Receiver, SendError, Sender, TryRecvError, TrySendError};
use aiosock_tests::{Traffic, TrafficHandler, guard};

fn assert_send<T: Send>(_: &T) {}
fn assert_sync<T: Sync>(_: &T) {}
fn assert_send_future<F: Future + Send>(_: &F)
where
    F::Output: Send,
{
}

/// Checked at compile time for every type named here; never needs to run.
#[allow(dead_code)]
fn types_are_send_and_sync() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    fn clone<T: Clone>() {}
    fn unpin<T: Unpin>() {}
    fn error<T: std::error::Error + Send + Sync + 'static>() {}

    send::<Sender<Traffic>>();
    sync::<Sender<Traffic>>();
    clone::<Sender<Traffic>>();
    send::<Receiver<Traffic>>();
    unpin::<Receiver<Traffic>>();
    send::<Endpoint<Traffic, Traffic>>();
    sync::<Endpoint<Traffic, Traffic>>();
    error::<Error>();
    error::<SendError<Traffic>>();
    error::<TrySendError<Traffic>>();
    error::<TryRecvError>();
    send::<aiosock::TcpListener<Traffic, Traffic>>();
    sync::<aiosock::TcpListener<Traffic, Traffic>>();
    send::<aiosock::TcpPeer>();
    // A pool keeps its fork server behind an `Arc` shared by its supervisor tasks.
    send::<aiosock::ForkServer<Traffic, Traffic>>();
    sync::<aiosock::ForkServer<Traffic, Traffic>>();
    sync::<aiosock::TcpPeer>();
}

/// The TCP futures are `Send`: a server spawns its accept loop.
#[allow(dead_code)]
fn tcp_futures_are_send(listener: &aiosock::TcpListener<Traffic, Traffic>) {
    assert_send_future(&listener.accept());
    assert_send_future(&aiosock::connect_plaintext_tcp::<Traffic, Traffic>(
        "127.0.0.1:1",
    ));
    assert_send_future(&aiosock::TcpListener::<Traffic, Traffic>::bind_plaintext(
        "127.0.0.1:0",
    ));
}

struct Echo {
    out: Sender<Traffic>,
    seen: u64,
}

impl TrafficHandler for Echo {
    async fn on_num(&mut self, n: u64) {
        self.seen += 1;
        let _ = self.out.send(Traffic::Num(n * 2)).await;
    }
    async fn on_text(&mut self, _seq: u64, _text: String) {
        self.seen += 1;
    }
    async fn on_tagged(&mut self, _sender: u32, _seq: u64, _text: String, _data: Vec<u8>) {
        self.seen += 1;
    }
    async fn on_blob(&mut self, _data: Vec<u8>) {
        self.seen += 1;
    }
    async fn on_end(&mut self) {
        self.seen += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_of_every_async_method_are_send() {
    let (a, b) = aiosock::pair::<Traffic, Traffic>().expect("socketpair");
    assert_send(&a);
    assert_sync(&a);
    let (tx, mut rx) = a.into_split();
    let (peer_tx, peer_rx) = b.into_split();
    assert_send(&tx);
    assert_sync(&tx);
    assert_send(&rx);

    // Created (which attaches the end to this runtime) and dropped unpolled.
    assert_send_future(&tx.send(Traffic::End));
    assert_send_future(&tx.ready());
    assert_send_future(&tx.flush());
    assert_send_future(&tx.closed());
    assert_send_future(&rx.recv());
    let serve = peer_rx.serve(Echo {
        out: peer_tx,
        seen: 0,
    });
    assert_send_future(&serve);
    drop(serve);
    drop((tx, rx));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_a_send_loop_run_under_tokio_spawn() {
    const N: u64 = 1_000;
    let (a, b) = aiosock::pair::<Traffic, Traffic>().expect("socketpair");
    let (tx, mut rx) = a.into_split();
    let (peer_tx, peer_rx) = b.into_split();
    let server = tokio::spawn(peer_rx.serve(Echo {
        out: peer_tx,
        seen: 0,
    }));
    let sender = tokio::spawn(async move {
        for n in 0..N {
            tx.send(Traffic::Num(n)).await.expect("send");
        }
        tx.ready().await.expect("ready");
        tx.flush().await.expect("flush");
        tx.send(Traffic::End).await.expect("send");
        // Dropping tx ends the server's stream.
    });
    let receiver = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(msg) = rx.recv().await.expect("recv") {
            got.push(msg);
        }
        got
    });
    guard("sender", sender).await.expect("sender task");
    let echo = guard("server", server).await.expect("task").expect("serve");
    assert_eq!(echo.seen, N + 1);
    // The server's sender went with the handler: the echo stream ends.
    drop(echo);
    let got = guard("receiver", receiver).await.expect("receiver task");
    let expected: Vec<_> = (0..N).map(|n| Traffic::Num(n * 2)).collect();
    assert_eq!(got, expected);
}
