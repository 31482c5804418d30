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
    #[reply(::std::result::Result<::std::vec::Vec<u8>, ::std::string::String>)]
    Call(u64),
    #[reply(())]
    Ping { id: u8 },
    Stop,
}

struct Handler;

impl MsgHandler for Handler {
    async fn on_text(&mut self, _text: ::std::string::String) {}
    async fn on_blob(&mut self, _blob: ::std::vec::Vec<u8>) {}
    async fn on_pair(&mut self, _a: u8, _b: ::std::option::Option<u16>) {}
    async fn on_call(
        &mut self,
        _n: u64,
    ) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
        ::std::result::Result::Ok(::std::vec::Vec::new())
    }
    async fn on_ping(&mut self, _id: u8) {}
    async fn on_stop(&mut self) {}
}

/// The client without the prelude; never called.
#[allow(dead_code)]
fn client(client: &MsgClient) {
    let _calls = (client.call(1), client.try_call(1), client.ping(2), client.try_ping(2));
    let _sends = (client.stop(), client.text(::std::string::String::new()));
    let _clone = ::std::clone::Clone::clone(client);
}

fn main() {
    use ::aiosock::Dispatch as _;
    let mut handler = Handler;
    ::std::mem::drop(Msg::Stop.dispatch(&mut handler));
    let _answer = Msg::Call(1).dispatch_answer(&mut handler);
    ::std::assert_eq!(<Msg as ::aiosock::Protocol>::NAME, "Msg");
    ::std::assert!(<Msg as ::aiosock::Protocol>::HAS_CALLS);
}
