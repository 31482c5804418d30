//! `#[aiosock::protocol]` on every variant shape, round-tripped over a real `pair()`; the
//! generated handler trait driven by `serve` and by `Dispatch::dispatch`; hygiene
//! (no prelude, shadowed prelude names, strict lints).

use aiosock::{Bytes, Dispatch, Protocol};
use aiosock_tests::{guard, split_pair};

/// Every shape of variant.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq)]
#[allow(non_camel_case_types)]
enum Shapes {
    /// A unit variant, with a doc comment.
    Unit,
    One(u64),
    Three(u8, String, Vec<u64>),
    Named {
        /// A documented field.
        id: u32,
        name: String,
    },
    RawField {
        r#type: String,
        r#match: u8,
    },
    r#Match(i64),
    Blob(Vec<u8>),
    NamedBlob {
        data: Vec<u8>,
        more: Bytes,
    },
    Wrapped(Bytes),
    MaybeBytes(Option<Bytes>, std::vec::Vec<u8>),
    #[cfg(unix)]
    OnlyUnix(u16),
    /// Configured out: its field type does not even exist.
    #[cfg(any())]
    Never(DoesNotExist),
    Nested(Option<Option<Vec<u8>>>, Vec<Vec<String>>),
    Empty(),
    EmptyNamed {},
}

mod outer {
    pub(crate) mod inner {
        /// A `pub(crate)` protocol in a nested module.
        #[aiosock::protocol]
        #[derive(Debug, Clone, PartialEq)]
        pub(crate) enum Private {
            A(u8),
            B { s: String },
        }
    }
}

fn shapes() -> Vec<Shapes> {
    vec![
        Shapes::Unit,
        Shapes::One(u64::MAX),
        Shapes::Three(7, "three".into(), vec![1, 300, u64::MAX]),
        Shapes::Named {
            id: 9,
            name: "named".into(),
        },
        Shapes::RawField {
            r#type: "raw".into(),
            r#match: 2,
        },
        Shapes::r#Match(-5),
        Shapes::Blob((0..=255).collect()),
        Shapes::NamedBlob {
            data: vec![0xff; 1000],
            more: Bytes::from(vec![0xfe; 300]),
        },
        Shapes::Wrapped(Bytes::new(b"wrapped".to_vec())),
        Shapes::MaybeBytes(Some(Bytes::from(&b"maybe"[..])), vec![]),
        Shapes::MaybeBytes(None, vec![1, 2, 3]),
        #[cfg(unix)]
        Shapes::OnlyUnix(443),
        Shapes::Nested(
            Some(Some(vec![251, 252, 253])),
            vec![vec!["a".into()], vec![]],
        ),
        Shapes::Nested(Some(None), vec![]),
        Shapes::Nested(None, vec![]),
        Shapes::Empty(),
        Shapes::EmptyNamed {},
    ]
}

/// Sends `msgs` over a fresh pair and returns what arrived before `Ok(None)`.
async fn round_trip<P: Protocol + Clone>(msgs: &[P]) -> Vec<P> {
    let ((tx, _a_rx), (_b_tx, mut rx)) = split_pair::<P>();
    let sent = msgs.to_vec();
    let sender = tokio::spawn(async move {
        for msg in sent {
            tx.send(msg).await.expect("send");
        }
    });
    let mut got = Vec::new();
    while let Some(msg) = guard("recv", rx.recv()).await.expect("recv") {
        got.push(msg);
    }
    guard("sender", sender).await.expect("sender task");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_variant_shape_round_trips() {
    assert_eq!(Shapes::NAME, "Shapes");
    assert_eq!(round_trip(&shapes()).await, shapes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pub_crate_enum_in_a_nested_module_round_trips() {
    use outer::inner::Private;
    let msgs = [Private::A(1), Private::B { s: "b".into() }];
    assert_eq!(round_trip(&msgs).await, msgs);
    assert_eq!(Private::NAME, "Private");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_of_bytes_round_trip_in_both_byte_forms() {
    let data: Vec<u8> = (0..16 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let msgs = [
        Shapes::Blob(data.clone()),
        Shapes::Wrapped(Bytes::from(data.clone())),
        Shapes::NamedBlob {
            data: data[..1024 * 1024].to_vec(),
            more: Bytes::from(&data[1024 * 1024..2 * 1024 * 1024]),
        },
    ];
    let got = round_trip(&msgs).await;
    assert_eq!(got.len(), msgs.len());
    for (got, sent) in got.iter().zip(&msgs) {
        // Compare without printing 16 MiB on failure.
        assert!(got == sent, "a byte payload changed on the way");
    }
}

// ---------------------------------------------------------------------------------------
// Handler dispatch

#[derive(Debug, Clone, PartialEq)]
enum Call {
    Unit,
    One(u64),
    Three(u8, String, Vec<u64>),
    Named(u32, String),
    RawField(String, u8),
    Match(i64),
    Blob(Vec<u8>),
    NamedBlob(Vec<u8>, Vec<u8>),
    Wrapped(Vec<u8>),
    MaybeBytes(Option<Vec<u8>>, Vec<u8>),
    OnlyUnix(u16),
    Nested(Option<Option<Vec<u8>>>, Vec<Vec<String>>),
    Empty,
    EmptyNamed,
}

/// What `Shapes` message a call corresponds to, to compare with what was sent.
fn call_for(msg: &Shapes) -> Call {
    match msg.clone() {
        Shapes::Unit => Call::Unit,
        Shapes::One(n) => Call::One(n),
        Shapes::Three(a, b, c) => Call::Three(a, b, c),
        Shapes::Named { id, name } => Call::Named(id, name),
        Shapes::RawField { r#type, r#match } => Call::RawField(r#type, r#match),
        Shapes::r#Match(n) => Call::Match(n),
        Shapes::Blob(b) => Call::Blob(b),
        Shapes::NamedBlob { data, more } => Call::NamedBlob(data, more.into_vec()),
        Shapes::Wrapped(b) => Call::Wrapped(b.into()),
        Shapes::MaybeBytes(a, b) => Call::MaybeBytes(a.map(Bytes::into_vec), b),
        #[cfg(unix)]
        Shapes::OnlyUnix(n) => Call::OnlyUnix(n),
        Shapes::Nested(a, b) => Call::Nested(a, b),
        Shapes::Empty() => Call::Empty,
        Shapes::EmptyNamed {} => Call::EmptyNamed,
    }
}

#[derive(Debug, Default)]
struct Recorder {
    calls: Vec<Call>,
    closed: usize,
    /// A call after `closed` would be a bug.
    calls_after_closed: usize,
}

impl Recorder {
    fn record(&mut self, call: Call) {
        if self.closed > 0 {
            self.calls_after_closed += 1;
        }
        self.calls.push(call);
    }
}

impl ShapesHandler for Recorder {
    async fn on_unit(&mut self) {
        self.record(Call::Unit);
    }
    async fn on_one(&mut self, n: u64) {
        // Handlers may await.
        tokio::task::yield_now().await;
        self.record(Call::One(n));
    }
    async fn on_three(&mut self, a: u8, b: String, c: Vec<u64>) {
        self.record(Call::Three(a, b, c));
    }
    async fn on_named(&mut self, id: u32, name: String) {
        self.record(Call::Named(id, name));
    }
    async fn on_raw_field(&mut self, r#type: String, r#match: u8) {
        self.record(Call::RawField(r#type, r#match));
    }
    async fn on_match(&mut self, n: i64) {
        self.record(Call::Match(n));
    }
    async fn on_blob(&mut self, b: Vec<u8>) {
        self.record(Call::Blob(b));
    }
    async fn on_named_blob(&mut self, data: Vec<u8>, more: Bytes) {
        self.record(Call::NamedBlob(data, more.into_vec()));
    }
    async fn on_wrapped(&mut self, b: Bytes) {
        self.record(Call::Wrapped(b.into_vec()));
    }
    async fn on_maybe_bytes(&mut self, a: Option<Bytes>, b: Vec<u8>) {
        self.record(Call::MaybeBytes(a.map(Bytes::into_vec), b));
    }
    #[cfg(unix)]
    async fn on_only_unix(&mut self, n: u16) {
        self.record(Call::OnlyUnix(n));
    }
    async fn on_nested(&mut self, a: Option<Option<Vec<u8>>>, b: Vec<Vec<String>>) {
        self.record(Call::Nested(a, b));
    }
    async fn on_empty(&mut self) {
        self.record(Call::Empty);
    }
    async fn on_empty_named(&mut self) {
        self.record(Call::EmptyNamed);
    }
    async fn closed(&mut self) {
        self.closed += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_calls_each_method_in_order_then_closed_once() {
    let ((tx, _a_rx), (_b_tx, rx)) = split_pair::<Shapes>();
    let server = tokio::spawn(rx.serve(Recorder::default()));
    let msgs = shapes();
    for msg in &msgs {
        guard("send", tx.send(msg.clone())).await.expect("send");
    }
    drop(tx);
    let recorder = guard("serve", server)
        .await
        .expect("serve task")
        .expect("serve");
    let expected: Vec<Call> = msgs.iter().map(call_for).collect();
    assert_eq!(recorder.calls, expected);
    assert_eq!(recorder.closed, 1, "the closed hook runs exactly once");
    assert_eq!(recorder.calls_after_closed, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn dispatch_calls_the_matching_method_directly() {
    let mut recorder = Recorder::default();
    for msg in shapes() {
        let expected = call_for(&msg);
        guard("dispatch", msg.dispatch(&mut recorder)).await;
        assert_eq!(recorder.calls.last(), Some(&expected));
    }
    assert_eq!(recorder.calls.len(), shapes().len());
    assert_eq!(recorder.closed, 0);
    guard(
        "closed",
        <Shapes as Dispatch<Recorder>>::closed(&mut recorder),
    )
    .await;
    assert_eq!(recorder.closed, 1);
}

/// A handler that relies on the default `closed` hook.
struct Summer(u64);

impl outer::inner::PrivateHandler for Summer {
    async fn on_a(&mut self, n: u8) {
        self.0 += u64::from(n);
    }
    async fn on_b(&mut self, s: String) {
        self.0 += s.len() as u64;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_the_default_closed_hook_returns_the_handler() {
    use outer::inner::Private;
    let ((tx, _a_rx), (_b_tx, rx)) = split_pair::<Private>();
    let server = tokio::spawn(rx.serve(Summer(0)));
    guard("send", tx.send(Private::A(40))).await.expect("send");
    guard("send", tx.send(Private::B { s: "xy".into() }))
        .await
        .expect("send");
    drop(tx);
    let summer = guard("serve", server).await.expect("task").expect("serve");
    assert_eq!(summer.0, 42);
}

// ---------------------------------------------------------------------------------------
// Hygiene

mod no_prelude {
    #![no_implicit_prelude]

    #[::aiosock::protocol]
    #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::cmp::PartialEq)]
    pub(crate) enum Bare {
        Text(::std::string::String),
        Blob(::std::vec::Vec<u8>),
        Pair {
            a: u8,
            b: ::std::option::Option<u16>,
        },
        Stop,
    }
}

mod shadowed {
    #![allow(dead_code, non_camel_case_types, non_snake_case)]

    // Local items named like prelude items, in both namespaces.
    pub(crate) struct Result<T, E>(T, E);
    pub(crate) struct Option;
    pub(crate) struct Vec;
    pub(crate) struct String;
    pub(crate) struct Box;
    pub(crate) struct Send;
    pub(crate) struct Future;
    pub(crate) fn Ok() {}
    pub(crate) fn Err() {}
    pub(crate) fn Some() {}
    #[allow(non_upper_case_globals)]
    pub(crate) const None: () = ();

    #[aiosock::protocol]
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) enum Shadowed {
        Text(std::string::String),
        Blob(std::vec::Vec<u8>),
        Maybe { value: std::option::Option<u8> },
        Stop,
    }
}

/// Generated code under strict lints.
pub mod lints {
    #![deny(missing_docs, unused_qualifications, missing_debug_implementations)]
    #![deny(clippy::pedantic)]

    /// A documented public protocol.
    #[aiosock::protocol]
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Strict {
        /// Some text.
        Text(String),
        /// Some bytes.
        Blob(Vec<u8>),
        /// A pair.
        Pair {
            /// The first.
            a: u8,
            /// The second.
            b: u16,
        },
        /// The end.
        Stop,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hygiene_cases_round_trip() {
    use lints::Strict;
    use no_prelude::Bare;
    use shadowed::Shadowed;

    let bare = [
        Bare::Text("t".into()),
        Bare::Blob(vec![1, 2]),
        Bare::Pair { a: 1, b: Some(2) },
        Bare::Stop,
    ];
    assert_eq!(round_trip(&bare).await, bare);
    let shadowed = [
        Shadowed::Text("t".into()),
        Shadowed::Blob(vec![3]),
        Shadowed::Maybe { value: None },
        Shadowed::Stop,
    ];
    assert_eq!(round_trip(&shadowed).await, shadowed);
    let strict = [
        Strict::Text("t".into()),
        Strict::Blob(vec![4]),
        Strict::Pair { a: 1, b: 2 },
        Strict::Stop,
    ];
    assert_eq!(round_trip(&strict).await, strict);
}

#[derive(Debug, Default)]
struct Counter(Vec<&'static str>);

impl no_prelude::BareHandler for Counter {
    async fn on_text(&mut self, _: String) {
        self.0.push("text");
    }
    async fn on_blob(&mut self, _: Vec<u8>) {
        self.0.push("blob");
    }
    async fn on_pair(&mut self, _: u8, _: Option<u16>) {
        self.0.push("pair");
    }
    async fn on_stop(&mut self) {
        self.0.push("stop");
    }
    async fn closed(&mut self) {
        self.0.push("closed");
    }
}

impl shadowed::ShadowedHandler for Counter {
    async fn on_text(&mut self, _: String) {
        self.0.push("text");
    }
    async fn on_blob(&mut self, _: Vec<u8>) {
        self.0.push("blob");
    }
    async fn on_maybe(&mut self, _: Option<u8>) {
        self.0.push("maybe");
    }
    async fn on_stop(&mut self) {
        self.0.push("stop");
    }
}

impl lints::StrictHandler for Counter {
    async fn on_text(&mut self, _: String) {
        self.0.push("text");
    }
    async fn on_blob(&mut self, _: Vec<u8>) {
        self.0.push("blob");
    }
    async fn on_pair(&mut self, _: u8, _: u16) {
        self.0.push("pair");
    }
    async fn on_stop(&mut self) {
        self.0.push("stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hygiene_cases_serve() {
    let ((tx, _a_rx), (_b_tx, rx)) = split_pair::<no_prelude::Bare>();
    let server = tokio::spawn(rx.serve(Counter::default()));
    for msg in [
        no_prelude::Bare::Text("t".into()),
        no_prelude::Bare::Pair { a: 1, b: None },
        no_prelude::Bare::Blob(vec![]),
        no_prelude::Bare::Stop,
    ] {
        guard("send", tx.send(msg)).await.expect("send");
    }
    drop(tx);
    let counter = guard("serve", server).await.expect("task").expect("serve");
    assert_eq!(counter.0, ["text", "pair", "blob", "stop", "closed"]);

    let mut counter = Counter::default();
    guard(
        "dispatch",
        shadowed::Shadowed::Maybe { value: Some(1) }.dispatch(&mut counter),
    )
    .await;
    guard(
        "dispatch",
        lints::Strict::Pair { a: 1, b: 2 }.dispatch(&mut counter),
    )
    .await;
    assert_eq!(counter.0, ["maybe", "pair"]);
}
