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
struct Deref;
struct Debug;
struct Formatter;
struct Sender;
struct CallError;
struct SendError;
struct Answer;

#[aiosock::protocol]
pub enum Msg {
    Text(std::string::String),
    Blob(std::vec::Vec<u8>),
    Maybe { value: std::option::Option<u8> },
    #[reply(std::result::Result<u64, std::string::String>)]
    Call(u64),
    Stop,
}

struct Handler;

impl MsgHandler for Handler {
    async fn on_text(&mut self, _text: std::string::String) {}
    async fn on_blob(&mut self, _blob: std::vec::Vec<u8>) {}
    async fn on_maybe(&mut self, _value: std::option::Option<u8>) {}
    async fn on_call(&mut self, n: u64) -> std::result::Result<u64, std::string::String> {
        std::result::Result::Ok(n)
    }
    async fn on_stop(&mut self) {}
}

/// The client among the shadowing names; never called.
fn client(client: &MsgClient) {
    let _calls = (client.call(1), client.try_call(1));
    let _sends = (client.stop(), client.maybe(std::option::Option::None));
    let _debug = std::format!("{client:?}");
}

fn main() {
    let mut handler = Handler;
    drop(Msg::Stop.dispatch(&mut handler));
    let _answer = Msg::Call(1).dispatch_answer(&mut handler);
    assert_eq!(Msg::NAME, "Msg");
    let _ = client;
}
