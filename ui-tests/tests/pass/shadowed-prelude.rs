// Local items named like prelude items must not change what the generated code means.
// (Primitive types such as `u64` and `str` are not shadowed here: serde's derive names
// them unqualified. The macro's own code writes `::core::primitive::u64`.)
#![allow(dead_code, non_camel_case_types)]

use aiosock::{Dispatch, Protocol};

struct Result;
struct Ok;
struct Err;
struct Option;
struct Some;
struct None;
struct Vec;
struct Box;
struct Send;
struct Sync;
struct Future;
struct Sized;
struct Default;
struct Into;
struct From;
struct Clone;
struct Copy;
struct Drop;
struct Fn;
struct FnOnce;
struct IntoFuture;
struct serde;
struct core;

#[aiosock::protocol]
pub enum Msg {
    Text(std::string::String),
    Blob(std::vec::Vec<u8>),
    Maybe { value: std::option::Option<u8> },
    Stop,
}

struct Handler;

impl MsgHandler for Handler {
    async fn on_text(&mut self, _text: std::string::String) {}
    async fn on_blob(&mut self, _blob: std::vec::Vec<u8>) {}
    async fn on_maybe(&mut self, _value: std::option::Option<u8>) {}
    async fn on_stop(&mut self) {}
}

fn main() {
    let mut handler = Handler;
    let _future = Msg::Stop.dispatch(&mut handler);
    assert_eq!(Msg::NAME, "Msg");
}
