//! The code `#[aiosock::protocol]` generates, under clippy's pedantic lints.
//!
//! trybuild (the ui tests) runs rustc only, so this is where clippy sees the expansion:
//! CI's `cargo clippy --workspace --all-targets -- -D warnings` lints this file with the
//! module below denying `clippy::pedantic`. The `#[test]` only makes sure the items are
//! used; the check happens at lint time. The generated client is linted too (its calls
//! are only named, never made).

use aiosock::Dispatch as _;

/// A protocol with every variant shape, linted strictly.
pub mod strict {
    #![deny(clippy::pedantic, missing_docs, unused_qualifications)]

    /// Every shape of variant, with the attributes the macro passes on.
    #[aiosock::protocol]
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Shapes {
        /// A unit variant.
        Unit,
        /// A tuple variant with one field.
        One(u64),
        /// A tuple variant with several fields, one of them bytes.
        Several(u8, String, Vec<u8>),
        /// A struct variant.
        Named {
            /// A number.
            id: u32,
            /// Bytes, encoded as one byte string.
            data: Vec<u8>,
            /// Left out of the message on both sides.
            #[serde(skip)]
            local: bool,
        },
        /// A struct variant with raw identifiers.
        Raw {
            /// A field named after a keyword.
            r#type: String,
        },
        /// An empty tuple variant.
        EmptyTuple(),
        /// An empty struct variant.
        EmptyStruct {},
        /// A variant behind a `cfg`.
        #[cfg(unix)]
        OnlyUnix(i64),
        /// A call, answered with the handler's own result.
        #[reply(Result<u64, String>)]
        Call(u64),
        /// A call with named fields, answered with nothing.
        #[reply(())]
        NamedCall {
            /// A number.
            id: u32,
        },
        /// A renamed variant.
        #[serde(rename = "stop")]
        Stop,
    }

    /// A protocol whose only call is behind a `cfg`: `HAS_CALLS` is a block then.
    #[aiosock::protocol]
    #[derive(Debug)]
    pub enum CfgCall {
        /// The call.
        #[cfg(unix)]
        #[reply(u8)]
        Call,
        /// A one-way message.
        Plain,
    }
}

/// Counts the messages by kind.
#[derive(Debug, Default)]
struct Count(Vec<&'static str>);

impl strict::ShapesHandler for Count {
    async fn on_unit(&mut self) {
        self.0.push("unit");
    }
    async fn on_one(&mut self, _: u64) {
        self.0.push("one");
    }
    async fn on_several(&mut self, _: u8, _: String, _: Vec<u8>) {
        self.0.push("several");
    }
    async fn on_named(&mut self, _: u32, _: Vec<u8>, _: bool) {
        self.0.push("named");
    }
    async fn on_raw(&mut self, _: String) {
        self.0.push("raw");
    }
    async fn on_empty_tuple(&mut self) {
        self.0.push("empty tuple");
    }
    async fn on_empty_struct(&mut self) {
        self.0.push("empty struct");
    }
    async fn on_only_unix(&mut self, _: i64) {
        self.0.push("only unix");
    }
    async fn on_call(&mut self, n: u64) -> Result<u64, String> {
        self.0.push("call");
        n.checked_mul(2).ok_or_else(|| "overflow".to_owned())
    }
    async fn on_named_call(&mut self, _: u32) {
        self.0.push("named call");
    }
    async fn on_stop(&mut self) {
        self.0.push("stop");
    }
}

/// Names every method of the client, so that they are linted as used code; never called.
#[allow(dead_code)]
fn client_methods(client: &strict::ShapesClient) {
    drop((
        client.unit(),
        client.one(1),
        client.several(2, String::new(), Vec::new()),
        client.named(4, Vec::new(), true),
        client.raw(String::new()),
        client.empty_tuple(),
        client.empty_struct(),
        client.only_unix(-6),
        client.call(7),
        client.try_call(7),
        client.named_call(8),
        client.try_named_call(8),
        client.stop(),
    ));
    let client = strict::ShapesClient::new(client.clone().into_sender());
    drop((client.sender().is_closed(), format!("{client:?}")));
}

#[test]
fn has_calls_of_a_protocol_whose_only_call_is_behind_a_cfg() {
    use aiosock::Protocol as _;
    const { assert!(strict::CfgCall::HAS_CALLS) };
    let _ = (strict::CfgCall::Call, strict::CfgCall::Plain);
}

#[tokio::test]
async fn strict_protocol_dispatches_every_shape() {
    use strict::Shapes;

    let mut count = Count::default();
    for message in [
        Shapes::Unit,
        Shapes::One(1),
        Shapes::Several(2, "s".into(), vec![3]),
        Shapes::Named {
            id: 4,
            data: vec![5],
            local: true,
        },
        Shapes::Raw { r#type: "t".into() },
        Shapes::EmptyTuple(),
        Shapes::EmptyStruct {},
        Shapes::OnlyUnix(-6),
        Shapes::Call(8),
        Shapes::NamedCall { id: 9 },
        Shapes::Stop,
    ] {
        message.dispatch(&mut count).await;
    }
    assert_eq!(
        count.0,
        [
            "unit",
            "one",
            "several",
            "named",
            "raw",
            "empty tuple",
            "empty struct",
            "only unix",
            "call",
            "named call",
            "stop",
        ]
    );
}
