// The handler trait is generated next to the enum, with the enum's visibility, so it is
// reachable wherever the enum is.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use aiosock::Dispatch;

mod outer {
    pub(crate) mod inner {
        #[aiosock::protocol]
        pub(crate) enum Msg {
            Ping(u32),
        }

        pub(super) mod deeper {
            #[aiosock::protocol]
            pub(in crate::outer) enum Private {
                Poke,
            }
        }

        pub(crate) struct Counter(pub(crate) u32);

        impl deeper::PrivateHandler for Counter {
            async fn on_poke(&mut self) {
                self.0 += 100;
            }
        }
    }

    pub(crate) fn poke(counter: &mut inner::Counter) {
        use aiosock::Dispatch as _;
        super::block_on(inner::deeper::Private::Poke.dispatch(counter));
    }
}

impl outer::inner::MsgHandler for outer::inner::Counter {
    async fn on_ping(&mut self, n: u32) {
        self.0 += n;
    }
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
    let mut counter = outer::inner::Counter(0);
    block_on(outer::inner::Msg::Ping(2).dispatch(&mut counter));
    outer::poke(&mut counter);
    assert_eq!(counter.0, 102);
}
