// Raw identifiers as the enum's, the variants' and the fields' names. The handler
// methods drop the `r#`: `r#type` gives `on_type`, `r#Match` gives `on_match`. The
// client's methods are raw where they are keywords: `r#type`, `r#match` and `r#loop`,
// with `try_match` for the call `r#Match`.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use aiosock::{Dispatch, Protocol};

#[aiosock::protocol]
#[allow(non_camel_case_types)]
pub enum r#Match {
    r#type { r#type: u8, r#fn: String },
    #[reply(r#Match)]
    r#Match(u8),
    r#Loop,
    #[reply(u8)]
    Try,
}

#[derive(Default)]
struct Handler(Vec<String>);

impl MatchHandler for Handler {
    async fn on_type(&mut self, r#type: u8, r#fn: String) {
        self.0
            .push(format!("type {type} {fn}", type = r#type, fn = r#fn));
    }
    async fn on_match(&mut self, n: u8) -> r#Match {
        self.0.push(format!("match {n}"));
        r#Match::r#Loop
    }
    async fn on_loop(&mut self) {
        self.0.push("loop".into());
    }
    async fn on_try(&mut self) -> u8 {
        self.0.push("try".into());
        0
    }
}

/// The client's raw method names; never called.
#[allow(dead_code)]
fn client(client: &MatchClient) {
    let _calls = (client.r#match(1), client.try_match(1), client.r#try(), client.try_try());
    let _sends = (client.r#type(1, String::new()), client.r#loop());
}

fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the handler future was not ready"),
    }
}

fn main() {
    assert_eq!(r#Match::NAME, "Match");
    let mut handler = Handler::default();
    block_on(
        r#Match::r#type {
            r#type: 1,
            r#fn: "f".into(),
        }
        .dispatch(&mut handler),
    );
    block_on(r#Match::r#Match(2).dispatch(&mut handler));
    block_on(r#Match::Loop.dispatch(&mut handler));
    block_on(r#Match::r#Try.dispatch(&mut handler));
    assert_eq!(handler.0, ["type 1 f", "match 2", "loop", "try"]);
}
