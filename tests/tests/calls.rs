//! Calls with replies between real processes: the `calls` and `calls-concurrent` workers
//! answer `Ask`, and call the test back with `Back`.

use std::time::{Duration, Instant};

use aiosock::{CallError, Config, Error};
use aiosock_tests::guard;
use aiosock_tests::workers::{Ask, AskClient, start_calls, until_gone};

const EXE: &str = env!("CARGO_BIN_EXE_worker");

fn config(max_calls: usize) -> Config {
    let mut config = Config::new();
    config.set_max_calls(max_calls);
    config
}

#[tokio::test]
async fn a_call_returns_its_reply_and_one_way_messages_mix_in() {
    let (_child, ask, _serving) = start_calls(EXE, "calls", Config::new());
    assert_eq!(guard("square", ask.square(7)).await.unwrap(), 49);
    for n in [1, 2, 3] {
        ask.note(n).await.unwrap();
    }
    // One-way messages are handled in order before the call that follows them.
    assert_eq!(guard("notes", ask.notes()).await.unwrap(), 6);
    // A reply type that carries the handler's own errors.
    assert_eq!(guard("checked", ask.checked(4)).await.unwrap(), Ok(4));
    assert_eq!(
        guard("checked", ask.checked(5)).await.unwrap(),
        Err("5 is odd".to_owned())
    );
    // The client is a sender too.
    ask.send(Ask::Note(10)).await.unwrap();
    assert_eq!(guard("notes", ask.notes()).await.unwrap(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_call_at_once_and_each_gets_its_own_reply() {
    for mode in ["calls", "calls-concurrent"] {
        let (_child, ask, _serving) = start_calls(EXE, mode, Config::new());
        let tasks: Vec<_> = (0..8u64)
            .map(|t| {
                let ask = ask.clone();
                tokio::spawn(async move {
                    let calls = (0..500u64).map(|i| {
                        let n = t * 1000 + i;
                        let ask = ask.clone();
                        async move { (n, ask.square(n).await) }
                    });
                    futures_join_all(calls).await
                })
            })
            .collect();
        for task in tasks {
            for (n, reply) in guard("calls", task).await.unwrap() {
                assert_eq!(reply.unwrap(), n * n, "{mode}");
            }
        }
    }
}

#[tokio::test]
async fn concurrent_serving_answers_out_of_order() {
    let (_child, ask, _serving) = start_calls(EXE, "calls-concurrent", Config::new());
    let slow = ask.slow_square(3, 2_000);
    tokio::pin!(slow);
    let start = Instant::now();
    tokio::select! {
        _ = &mut slow => panic!("the slow call was answered first"),
        fast = guard("fast", ask.square(4)) => assert_eq!(fast.unwrap(), 16),
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the fast call waited for the slow one"
    );
    assert_eq!(guard("slow", slow).await.unwrap(), 9);
}

#[tokio::test]
async fn a_worker_calls_its_parent_back_while_answering() {
    for mode in ["calls", "calls-concurrent"] {
        let (_child, ask, _serving) = start_calls(EXE, mode, Config::new());
        // The worker's handler awaits the parent's answer to `Double(5)` before it
        // answers: with `serve`, the worker reads the reply while its handler runs.
        assert_eq!(
            guard("ask back", ask.ask_back(5)).await.unwrap(),
            11,
            "{mode}"
        );
        assert_eq!(guard("square", ask.square(3)).await.unwrap(), 9, "{mode}");
    }
}

#[tokio::test]
async fn a_dropped_call_is_cancelled_and_its_late_reply_discarded() {
    let (_child, ask, _serving) = start_calls(EXE, "calls-concurrent", config(4));
    for n in [2, 3] {
        let late = tokio::time::timeout(Duration::from_millis(20), ask.slow_square(n, 300)).await;
        assert!(late.is_err(), "the call should have timed out");
    }
    // The two cancelled calls keep their slots until their late replies (4 and 9) come;
    // the two calls made meanwhile take the other two and must get their own replies.
    let x = tokio::spawn({
        let ask = ask.clone();
        async move { ask.slow_square(5, 400).await }
    });
    let y = tokio::spawn({
        let ask = ask.clone();
        async move { ask.slow_square(6, 400).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        ask.try_square(1).await,
        Err(CallError::Full),
        "4 slots in use"
    );
    assert_eq!(guard("x", x).await.unwrap(), Ok(25));
    assert_eq!(guard("y", y).await.unwrap(), Ok(36));
    // Every slot is free again.
    let calls: Vec<_> = (0..4).map(|n| ask.try_square(n)).collect();
    for (n, call) in (0..4).zip(calls) {
        assert_eq!(guard("square", call).await, Ok(n * n));
    }
}

#[tokio::test]
async fn a_full_table_waits_and_try_calls_say_so() {
    let (_child, ask, _serving) = start_calls(EXE, "calls-concurrent", config(2));
    let first = tokio::spawn({
        let ask = ask.clone();
        async move { ask.slow_square(5, 300).await }
    });
    let second = tokio::spawn({
        let ask = ask.clone();
        async move { ask.slow_square(6, 300).await }
    });
    // Wait until both are in flight.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ask.try_square(2).await, Err(CallError::Full));
    // A waiting call completes once a slot frees up.
    assert_eq!(guard("third", ask.square(7)).await.unwrap(), 49);
    assert_eq!(guard("first", first).await.unwrap().unwrap(), 25);
    assert_eq!(guard("second", second).await.unwrap().unwrap(), 36);
    assert_eq!(guard("try", ask.try_square(3)).await.unwrap(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_fails_a_thousand_calls_in_flight_at_once() {
    let (mut child, ask, serving) = start_calls(EXE, "calls-concurrent", Config::new());
    assert_eq!(guard("warm up", ask.square(2)).await.unwrap(), 4);
    // Each call is polled once here, which queues its message: all 1,000 are sent before
    // the `square` that follows them, so once it is answered the worker holds them all.
    let mut held: Vec<_> = (0..1000).map(|_| Box::pin(ask.hold())).collect();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for call in &mut held {
        assert!(call.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(guard("square", ask.square(3)).await.unwrap(), 9);
    let pid = child.id();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    child.start_kill().unwrap();
    for call in &mut held {
        let failed = tokio::time::timeout_at(deadline, call.as_mut()).await;
        assert_eq!(
            failed,
            Ok(Err(CallError::Closed)),
            "within a second of the kill"
        );
    }
    // New calls fail at once too, and the parent's serving ends cleanly.
    assert_eq!(guard("after", ask.square(1)).await, Err(CallError::Closed));
    guard("serving", serving).await.unwrap().unwrap();
    guard("gone", until_gone(pid)).await;
}

#[tokio::test]
async fn a_panicking_handler_answers_its_caller_and_stops_a_serial_worker() {
    let (mut child, ask, serving) = start_calls(EXE, "calls", Config::new());
    match guard("panic", ask.panic("the handler gave up".into())).await {
        Err(CallError::Panicked { message }) => assert_eq!(message, "the handler gave up"),
        other => panic!("expected the panic, got {other:?}"),
    }
    // The worker's `serve` stopped: the parent learns why, and later calls fail.
    match guard("serving", serving).await.unwrap() {
        Err(Error::PeerPanicked { message }) => assert_eq!(message, "the handler gave up"),
        other => panic!("expected PeerPanicked, got {other:?}"),
    }
    assert!(guard("after", ask.square(2)).await.is_err());
    let status = guard("exit", child.wait()).await.unwrap();
    assert_eq!(status.code(), Some(101), "a panic in main exits with 101");
}

#[tokio::test]
async fn a_panic_in_a_one_way_handler_fails_the_calls_in_flight() {
    let (mut child, ask, serving) = start_calls(EXE, "calls", Config::new());
    ask.panic_one_way("one-way trouble".into()).await.unwrap();
    // Sent after the panicking message: never answered, failed with the panic.
    match guard("square", ask.square(3)).await {
        Err(CallError::Panicked { message }) => assert_eq!(message, "one-way trouble"),
        other => panic!("expected the panic, got {other:?}"),
    }
    assert!(matches!(
        guard("serving", serving).await.unwrap(),
        Err(Error::PeerPanicked { .. })
    ));
    let _ = guard("exit", child.wait()).await;
}

#[tokio::test]
async fn a_concurrent_worker_contains_a_panic_and_goes_on() {
    let (_child, ask, _serving) = start_calls(EXE, "calls-concurrent", Config::new());
    match guard("panic", ask.panic("only this call".into())).await {
        Err(CallError::Panicked { message }) => assert_eq!(message, "only this call"),
        other => panic!("expected the panic, got {other:?}"),
    }
    ask.panic_one_way("nor this".into()).await.unwrap();
    assert_eq!(guard("square", ask.square(5)).await.unwrap(), 25);
}

#[tokio::test]
async fn a_terminated_worker_fails_pending_calls() {
    let (child, ask, _serving) = start_calls(EXE, "calls-concurrent", Config::new());
    let held = tokio::spawn({
        let ask = ask.clone();
        async move { ask.hold().await }
    });
    assert_eq!(guard("square", ask.square(2)).await.unwrap(), 4);
    // SIGTERM: the worker exits without answering.
    let pid = child.id();
    std::process::Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert_eq!(guard("held", held).await.unwrap(), Err(CallError::Closed));
    drop(child);
}

/// Runs the futures concurrently on this task and collects their outputs in order.
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut outs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in set.iter_mut().zip(outs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outs.into_iter().map(|o| o.expect("ready")).collect()
}

#[allow(dead_code)]
fn _client_is_send_and_sync(ask: AskClient) -> impl Send + Sync {
    ask
}

#[tokio::test]
async fn an_end_that_only_serves_answers_and_closes_after_its_peer() {
    let (client, server) = aiosock::pair::<Ask, aiosock_tests::workers::Back>().unwrap();
    let (tx, rx) = client.into_split();
    let parent = tokio::spawn(rx.serve(aiosock_tests::workers::Doubler));
    // The serving side has no sender of its own: `Endpoint::serve` keeps the end's
    // sending half for the answers.
    let serving = tokio::spawn(server.serve(Squarer));
    let ask = AskClient::new(tx);
    assert_eq!(guard("square", ask.square(9)).await.unwrap(), 81);
    // Dropping the client ends the server's stream; the server's `serve` returns and, with
    // no sender left, ends its direction, so the parent's receiver ends too.
    drop(ask);
    guard("serving", serving).await.unwrap().unwrap();
    guard("parent", parent).await.unwrap().unwrap();
}

/// Answers `Square` only.
struct Squarer;

impl aiosock_tests::workers::AskHandler for Squarer {
    async fn on_square(&mut self, n: u64) -> u64 {
        n * n
    }
    async fn on_slow_square(&mut self, n: u64, _: u64) -> u64 {
        n * n
    }
    async fn on_hold(&mut self) -> u64 {
        0
    }
    async fn on_panic(&mut self, _: String) -> u64 {
        0
    }
    async fn on_ask_back(&mut self, _: u64) -> u64 {
        0
    }
    async fn on_checked(&mut self, n: u64) -> Result<u64, String> {
        Ok(n)
    }
    async fn on_note(&mut self, _: u64) {}
    async fn on_notes(&mut self) -> u64 {
        0
    }
    async fn on_panic_one_way(&mut self, _: String) {}
    async fn on_pid(&mut self) -> u32 {
        std::process::id()
    }
}

#[tokio::test]
async fn dropping_the_client_ends_the_worker_then_the_parents_serving() {
    for mode in ["calls", "calls-concurrent"] {
        let (mut child, ask, serving) = start_calls(EXE, mode, Config::new());
        assert_eq!(guard("square", ask.square(2)).await.unwrap(), 4);
        drop(ask);
        // The worker's serve sees the end, returns, and drops its handler (and with it its
        // client back to the parent): the parent's serving ends cleanly.
        guard("serving", serving).await.unwrap().unwrap();
        let status = guard("exit", child.wait()).await.unwrap();
        assert!(status.success(), "{mode}: {status}");
    }
}

/// Squares, once `gate` (if any) opens; tells `entered` when it starts on a gated call.
struct Gated {
    entered: Option<tokio::sync::oneshot::Sender<()>>,
    gate: Option<tokio::sync::oneshot::Receiver<()>>,
}

#[aiosock::protocol]
#[derive(Debug, PartialEq)]
enum Sq {
    #[reply(u64)]
    Square(u64),
}

#[aiosock::protocol]
#[derive(Debug)]
enum Mute {
    Never,
}

impl SqHandler for Gated {
    async fn on_square(&mut self, n: u64) -> u64 {
        if let Some(entered) = self.entered.take() {
            let _ = entered.send(());
        }
        if let Some(gate) = self.gate.take() {
            let _ = gate.await;
        }
        n * n
    }
}

#[tokio::test]
async fn an_answer_holds_the_direction_open_and_lets_go_once_queued() {
    // The server's `Sender` lives on: each answer takes and gives back its hold, so two
    // answers both go out, and dropping the `Sender` afterwards ends the direction.
    let (client_end, server_end) = aiosock::pair::<Sq, Mute>().unwrap();
    let (server_tx, server_rx) = server_end.into_split();
    let serving = tokio::spawn(server_rx.serve(Gated {
        entered: None,
        gate: None,
    }));
    let (client_tx, mut client_rx) = client_end.into_split();
    let client = SqClient::new(client_tx);
    let replies = tokio::spawn(async move { guard("recv", client_rx.recv()).await });
    assert_eq!(guard("first", client.square(3)).await.unwrap(), 9);
    assert_eq!(guard("second", client.square(4)).await.unwrap(), 16);
    drop(server_tx);
    assert!(
        guard("end", replies).await.unwrap().unwrap().is_none(),
        "the server's direction ended with its last Sender"
    );
    drop(client);
    guard("serve", serving).await.unwrap().unwrap();

    // The server's last `Sender` is dropped while a call is being handled: the answer's
    // hold keeps the direction open until the answer is queued, then ends it.
    let (client_end, server_end) = aiosock::pair::<Sq, Mute>().unwrap();
    let (server_tx, server_rx) = server_end.into_split();
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel();
    let (open_tx, open_rx) = tokio::sync::oneshot::channel();
    let serving = tokio::spawn(server_rx.serve(Gated {
        entered: Some(entered_tx),
        gate: Some(open_rx),
    }));
    let (client_tx, mut client_rx) = client_end.into_split();
    let client = SqClient::new(client_tx);
    let replies = tokio::spawn(async move { guard("recv", client_rx.recv()).await });
    let call = tokio::spawn(async move { client.square(7).await });
    guard("entered", entered_rx).await.unwrap();
    drop(server_tx);
    open_tx.send(()).unwrap();
    assert_eq!(guard("gated", call).await.unwrap().unwrap(), 49);
    assert!(
        guard("end", replies).await.unwrap().unwrap().is_none(),
        "the answer's hold was the last: letting go ended the direction"
    );
    guard("serve", serving).await.unwrap().unwrap();
}

#[aiosock::protocol]
#[derive(Debug, PartialEq)]
enum Chat {
    Line(u32),
}

#[tokio::test]
async fn a_reply_in_transit_when_this_end_stops_sending_does_not_stop_its_receiving() {
    let (a, b) = aiosock::pair::<Sq, Chat>().unwrap();
    let (a_tx, mut a_rx) = a.into_split();
    let client = SqClient::new(a_tx.clone());
    let (b_tx, mut b_rx) = b.into_split();
    let reading = tokio::spawn(async move { (a_rx.recv().await, a_rx.recv().await) });
    let call = tokio::spawn(async move { client.square(3).await });
    let request = guard("request", b_rx.recv_request())
        .await
        .unwrap()
        .unwrap();
    // B stops receiving: A's next write fails, which ends A's sending direction and
    // fails A's calls, while A still receives.
    b_rx.close();
    let _ = a_tx.send(Sq::Square(1)).await;
    guard("closed", a_tx.closed()).await;
    assert_eq!(guard("call", call).await.unwrap(), Err(CallError::Closed));
    // B answers anyway (the reply reaches no one), then sends a message, which A must
    // receive: the late reply does not end A's receiving.
    let mut squarer = Gated {
        entered: None,
        gate: None,
    };
    guard("answer", request.dispatch(&mut squarer)).await;
    b_tx.send(Chat::Line(0)).await.unwrap();
    drop(b_tx);
    let (first, second) = guard("read", reading).await.unwrap();
    assert_eq!(first.unwrap(), Some(Chat::Line(0)));
    assert_eq!(second.unwrap(), None);
}

#[aiosock::protocol]
#[derive(Debug, PartialEq)]
enum Traffic {
    Blob(Vec<u8>),
}

#[tokio::test]
async fn a_failure_owed_behind_a_large_queued_message_loses_nothing() {
    let (a, b) = aiosock::pair::<Sq, Traffic>().unwrap();
    let (a_tx, mut a_rx) = a.into_split();
    let client = SqClient::new(a_tx);
    let (b_tx, mut b_rx) = b.into_split();
    // A does not read yet. The first blob fills the socket and waits in B's writer; the
    // second is queued behind it: more than twice the capacity, as sends may leave it.
    let blob = |byte: u8| Traffic::Blob(vec![byte; 1 << 20]);
    assert!(1 << 20 > 2 * Config::new().capacity());
    b_tx.send(blob(1)).await.unwrap();
    b_tx.send(blob(2)).await.unwrap();
    let call = tokio::spawn(async move { client.square(3).await });
    // B reads the call as a plain message: it owes the caller an `Unanswered`, queued
    // behind the blobs, which must still go out whole.
    assert_eq!(
        guard("recv", b_rx.recv()).await.unwrap(),
        Some(Sq::Square(3))
    );
    drop(b_tx);
    for byte in [1, 2] {
        let got = guard("blob", a_rx.recv()).await;
        assert!(
            matches!(&got, Ok(Some(Traffic::Blob(v))) if v.len() == 1 << 20 && v.iter().all(|&x| x == byte)),
            "blob {byte}: {:?}",
            got.map(|m| m.map(|Traffic::Blob(v)| v.len()))
        );
    }
    assert_eq!(guard("end", a_rx.recv()).await.unwrap(), None);
    assert_eq!(
        guard("call", call).await.unwrap(),
        Err(CallError::Unanswered)
    );
}
