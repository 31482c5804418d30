//! The expansion is clean under strict rustc lints: every generated public item is
//! documented and no path is needlessly qualified.
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
    /// The end.
    Stop,
}

#[derive(Debug)]
struct Handler;

impl MsgHandler for Handler {
    async fn on_text(&mut self, _text: String) {}
    async fn on_blob(&mut self, _blob: Vec<u8>) {}
    async fn on_pair(&mut self, _a: u8, _b: u16) {}
    async fn on_stop(&mut self) {}
}

fn main() {
    use aiosock::Dispatch as _;
    let mut handler = Handler;
    let _future = Msg::Stop.dispatch(&mut handler);
}
