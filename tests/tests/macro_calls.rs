//! `#[reply(T)]` variants in `#[aiosock::protocol]`: the handler methods' return types,
//! the generated client's methods (checked at compile time, since the calls themselves
//! are the runtime's), `Dispatch::dispatch` and `dispatch_answer`, `HAS_CALLS`, and the
//! client's one-way methods and `Sender` plumbing over a real `pair()`.

use std::future::Future;

use aiosock::{CallError, Dispatch, Protocol, SendError, Sender};
use aiosock_tests::{guard, split_pair};

/// Calls of several reply types next to one-way variants.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq)]
enum Calc {
    /// Squares a number.
    #[reply(u64)]
    Square(u64),
    /// Divides, failing on zero: the handler's own error travels inside the reply.
    #[reply(Result<u64, String>)]
    Divide {
        a: u64,
        b: u64,
    },
    #[reply(())]
    Ping,
    #[reply(Vec<String>)]
    Names,
    Log(String),
    Stop,
    #[cfg(unix)]
    #[reply(i32)]
    OnlyUnix,
    /// Configured out: neither its reply type nor its field type exists.
    #[cfg(any())]
    #[reply(DoesNotExist)]
    Never(AlsoMissing),
}

/// One-way variants only.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq)]
enum Notes {
    Note(String),
}

/// Its only call is configured out (aiosock builds on Linux only).
#[aiosock::protocol]
enum CfgOut {
    #[cfg(not(unix))]
    #[reply(u8)]
    Call,
    Plain,
}

/// Its only call is configured in.
#[aiosock::protocol]
enum CfgIn {
    #[cfg(unix)]
    #[reply(u8)]
    Call,
    Plain,
}

#[derive(Debug, Default)]
struct Calculator {
    log: Vec<String>,
}

impl CalcHandler for Calculator {
    async fn on_square(&mut self, n: u64) -> u64 {
        self.log.push(format!("square {n}"));
        n * n
    }
    async fn on_divide(&mut self, a: u64, b: u64) -> Result<u64, String> {
        self.log.push(format!("divide {a} {b}"));
        a.checked_div(b)
            .ok_or_else(|| "division by zero".to_owned())
    }
    async fn on_ping(&mut self) {
        self.log.push("ping".into());
    }
    async fn on_names(&mut self) -> Vec<String> {
        self.log.push("names".into());
        vec!["a".into(), "b".into()]
    }
    async fn on_log(&mut self, line: String) {
        self.log.push(format!("log {line}"));
    }
    async fn on_stop(&mut self) {
        self.log.push("stop".into());
    }
    async fn on_only_unix(&mut self) -> i32 {
        self.log.push("only unix".into());
        -1
    }
}

// ---------------------------------------------------------------------------------------
// Compile-time checks of the generated signatures. These functions are never called:
// that they compile is the test.

/// `method`, called on a `&'a C` with one argument `A`, returns a `Send` future whose
/// output is exactly `O` (given explicitly by the caller).
fn returns1<'a, C: 'a, A, O, F>(_method: fn(&'a C, A) -> F)
where
    F: Future<Output = O> + Send + 'a,
{
}

/// [`returns1`] for a method without arguments.
fn returns0<'a, C: 'a, O, F>(_method: fn(&'a C) -> F)
where
    F: Future<Output = O> + Send + 'a,
{
}

/// [`returns1`] for a method with two arguments.
fn returns2<'a, C: 'a, A, B, O, F>(_method: fn(&'a C, A, B) -> F)
where
    F: Future<Output = O> + Send + 'a,
{
}

/// The handler trait's methods return the reply type (`()` for a one-way variant).
#[allow(dead_code)]
fn handler_methods_return_the_reply_type<H: CalcHandler>(handler: &mut H) {
    fn output<O>(_: &impl Future<Output = O>) {}
    output::<u64>(&handler.on_square(2));
    output::<Result<u64, String>>(&handler.on_divide(1, 2));
    output::<()>(&handler.on_ping());
    output::<Vec<String>>(&handler.on_names());
    output::<()>(&handler.on_log(String::new()));
    output::<()>(&handler.on_stop());
    output::<i32>(&handler.on_only_unix());
}

/// The client's methods: a call and its `try_` form return the reply in a
/// `Result<_, CallError>`; a one-way variant's method returns what `Sender::send` does.
#[allow(dead_code)]
fn client_methods_have_the_documented_types() {
    returns1::<CalcClient, u64, Result<u64, CallError>, _>(CalcClient::square);
    returns1::<CalcClient, u64, Result<u64, CallError>, _>(CalcClient::try_square);
    returns2::<CalcClient, u64, u64, Result<Result<u64, String>, CallError>, _>(CalcClient::divide);
    returns2::<CalcClient, u64, u64, Result<Result<u64, String>, CallError>, _>(
        CalcClient::try_divide,
    );
    returns0::<CalcClient, Result<(), CallError>, _>(CalcClient::ping);
    returns0::<CalcClient, Result<Vec<String>, CallError>, _>(CalcClient::try_names);
    returns0::<CalcClient, Result<i32, CallError>, _>(CalcClient::only_unix);
    returns1::<CalcClient, String, Result<(), SendError<Calc>>, _>(CalcClient::log);
    returns0::<CalcClient, Result<(), SendError<Calc>>, _>(CalcClient::stop);
    returns1::<NotesClient, String, Result<(), SendError<Notes>>, _>(NotesClient::note);

    let _: fn(Sender<Calc>) -> CalcClient = CalcClient::new;
    let _: fn(&CalcClient) -> &Sender<Calc> = CalcClient::sender;
    let _: fn(CalcClient) -> Sender<Calc> = CalcClient::into_sender;
    let _: fn(Sender<Calc>) -> CalcClient = CalcClient::from;
    // `Sender`'s own methods through `Deref`.
    returns0::<CalcClient, (), _>(|client| client.closed());
    let _ = |client: &CalcClient| client.try_send(Calc::Stop);
    let _ = |client: &CalcClient| client.is_closed();
}

/// The client is as `Send`, `Sync`, `Clone` and `Debug` as a `Sender`.
#[allow(dead_code)]
fn client_is_send_sync_clone_debug() {
    fn assert<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    assert::<CalcClient>();
    assert::<NotesClient>();
}

// ---------------------------------------------------------------------------------------
// Behaviour

#[test]
fn has_calls_says_whether_any_compiled_in_variant_is_a_call() {
    const {
        assert!(Calc::HAS_CALLS);
        assert!(!Notes::HAS_CALLS);
        assert!(!CfgOut::HAS_CALLS);
        assert!(CfgIn::HAS_CALLS);
    }
    let _ = (CfgOut::Plain, CfgIn::Plain, CfgIn::Call);
}

#[tokio::test(flavor = "current_thread")]
async fn dispatch_answer_encodes_replies_of_calls_only() {
    let mut calc = Calculator::default();
    for (msg, expected) in [
        (Calc::Square(3), "Answer::Reply(..)"),
        (Calc::Divide { a: 6, b: 0 }, "Answer::Reply(..)"),
        (Calc::Ping, "Answer::Reply(..)"),
        (Calc::Names, "Answer::Reply(..)"),
        (Calc::OnlyUnix, "Answer::Reply(..)"),
        (Calc::Log("x".into()), "Answer::None"),
        (Calc::Stop, "Answer::None"),
    ] {
        let answer = guard("dispatch_answer", msg.clone().dispatch_answer(&mut calc)).await;
        assert_eq!(format!("{answer:?}"), expected, "{msg:?}");
    }
    assert_eq!(
        calc.log,
        [
            "square 3",
            "divide 6 0",
            "ping",
            "names",
            "only unix",
            "log x",
            "stop"
        ]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn dispatch_calls_call_variants_and_drops_the_replies() {
    let mut calc = Calculator::default();
    for msg in [Calc::Square(4), Calc::Divide { a: 1, b: 1 }, Calc::Stop] {
        guard("dispatch", msg.dispatch(&mut calc)).await;
    }
    assert_eq!(calc.log, ["square 4", "divide 1 1", "stop"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_handles_one_way_messages_from_the_client() {
    let ((tx, _a_rx), (_b_tx, rx)) = split_pair::<Calc>();
    let server = tokio::spawn(rx.serve(Calculator::default()));
    let client = CalcClient::new(tx);
    guard("log", client.log("one".into())).await.expect("log");
    // Through `Deref` to the sender.
    guard("send", client.send(Calc::Log("two".into())))
        .await
        .expect("send");
    client
        .try_send(Calc::Log("three".into()))
        .expect("try_send");
    let other = client.clone();
    guard("stop", other.stop()).await.expect("stop");
    drop(other);
    assert!(!client.sender().is_closed());
    drop(client.into_sender());
    let calc = guard("serve", server).await.expect("task").expect("serve");
    assert_eq!(calc.log, ["log one", "log two", "log three", "stop"]);
}

#[tokio::test(flavor = "current_thread")]
async fn client_converts_from_its_sender_and_debugs_like_it() {
    let ((tx, _a_rx), (_b_tx, mut rx)) = split_pair::<Notes>();
    let client = NotesClient::from(tx);
    let debug = format!("{client:?}");
    assert!(
        debug.starts_with("NotesClient { sender: Sender {"),
        "{debug}"
    );
    assert!(debug.ends_with(".. }"), "{debug}");
    guard("note", client.note("hi".into())).await.expect("note");
    drop(client);
    assert_eq!(
        guard("recv", rx.recv()).await.expect("recv"),
        Some(Notes::Note("hi".into()))
    );
    assert_eq!(guard("recv", rx.recv()).await.expect("recv"), None);
}
