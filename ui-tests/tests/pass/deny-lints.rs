//! The expansion is clean under strict rustc lints: every generated public item (the
//! client too) is documented, every public type implements `Debug`, and no path is
//! needlessly qualified.
//!
//! trybuild runs rustc, never clippy, so clippy's lints are checked elsewhere:
//! `tests/tests/macro_lints.rs` in the `aiosock-tests` crate, which CI's
//! `cargo clippy --workspace --all-targets -- -D warnings` lints.

#![deny(
    warnings,
    missing_docs,
    missing_debug_implementations,
    unused_qualifications,
    unreachable_pub,
    rust_2018_idioms
)]

/// Messages.
#[aiosock::protocol]
#[derive(Debug)]
pub enum Msg {
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
    /// A call.
    #[reply(Result<u64, String>)]
    Call(u64),
    /// A call with named fields.
    #[reply(())]
    NamedCall {
        /// The id.
        id: u32,
    },
    /// The end.
    Stop,
}

/// A private protocol: the client's methods it does not use must not warn.
#[aiosock::protocol]
enum Private {
    #[reply(u8)]
    Call,
    Send(u8),
}

#[derive(Debug)]
struct Handler;

impl MsgHandler for Handler {
    async fn on_text(&mut self, _text: String) {}
    async fn on_blob(&mut self, _blob: Vec<u8>) {}
    async fn on_pair(&mut self, _a: u8, _b: u16) {}
    async fn on_call(&mut self, n: u64) -> Result<u64, String> {
        Ok(n)
    }
    async fn on_named_call(&mut self, _id: u32) {}
    async fn on_stop(&mut self) {}
}

/// Uses the client; never called.
pub fn client(client: &MsgClient) {
    let _calls = (client.call(1), client.try_call(1), client.named_call(2));
    let _sends = (client.text(String::new()), client.stop());
}

fn main() {
    use aiosock::Dispatch as _;
    let mut handler = Handler;
    drop(Msg::Stop.dispatch(&mut handler));
    let _answer = Msg::Call(1).dispatch_answer(&mut handler);
    let _ = (Private::Call, Private::Send(1));
}
