// The generated code names everything by absolute path, so it compiles without the
// prelude.

#![no_implicit_prelude]

#[::aiosock::protocol]
#[derive(Debug)]
pub enum Msg {
    Text(::std::string::String),
    Blob(::std::vec::Vec<u8>),
    Pair {
        a: u8,
        b: ::std::option::Option<u16>,
    },
    Stop,
}

struct Handler;

impl MsgHandler for Handler {
    async fn on_text(&mut self, _text: ::std::string::String) {}
    async fn on_blob(&mut self, _blob: ::std::vec::Vec<u8>) {}
    async fn on_pair(&mut self, _a: u8, _b: ::std::option::Option<u16>) {}
    async fn on_stop(&mut self) {}
}

fn main() {
    use ::aiosock::Dispatch as _;
    let mut handler = Handler;
    let _future = Msg::Stop.dispatch(&mut handler);
    ::std::assert_eq!(<Msg as ::aiosock::Protocol>::NAME, "Msg");
}
