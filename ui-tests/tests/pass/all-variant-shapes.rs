// Every variant shape, docs and cfgs on variants, and the `Vec<u8>` fast path next to
// byte vectors it must leave alone.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use aiosock::{Bytes, Dispatch, Protocol};

#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq)]
/// Messages to the worker.
pub enum ToWorker {
    /// Greets someone.
    Greet {
        name: String,
    },
    Square(u64),
    Pair(u8, String),
    Stop,
    EmptyTuple(),
    EmptyStruct {},
    Blob(Vec<u8>),
    Blobs {
        plain: std::vec::Vec<u8>,
        rooted: ::std::vec::Vec<u8>,
        maybe: Option<Vec<u8>>,
        bytes: Option<Bytes>,
        words: Vec<u16>,
    },
    #[cfg(any())]
    Disabled(u8),
    #[cfg(all())]
    Enabled,
}

#[aiosock::protocol]
#[derive(Debug)]
pub enum WithDiscriminants {
    First = 1,
    Second = 5,
}

#[derive(Default)]
struct Worker {
    log: Vec<String>,
    closed: bool,
}

impl ToWorkerHandler for Worker {
    async fn on_greet(&mut self, name: String) {
        self.log.push(format!("greet {name}"));
    }
    async fn on_square(&mut self, n: u64) {
        self.log.push(format!("square {}", n * n));
    }
    async fn on_pair(&mut self, a: u8, b: String) {
        self.log.push(format!("pair {a} {b}"));
    }
    async fn on_stop(&mut self) {
        self.log.push("stop".into());
    }
    async fn on_empty_tuple(&mut self) {
        self.log.push("empty tuple".into());
    }
    async fn on_empty_struct(&mut self) {
        self.log.push("empty struct".into());
    }
    async fn on_blob(&mut self, blob: Vec<u8>) {
        self.log.push(format!("blob {blob:?}"));
    }
    async fn on_blobs(
        &mut self,
        plain: Vec<u8>,
        rooted: Vec<u8>,
        maybe: Option<Vec<u8>>,
        bytes: Option<Bytes>,
        words: Vec<u16>,
    ) {
        let bytes = bytes.map(Bytes::into_vec);
        self.log.push(format!(
            "blobs {plain:?} {rooted:?} {maybe:?} {bytes:?} {words:?}"
        ));
    }
    async fn on_enabled(&mut self) {
        self.log.push("enabled".into());
    }
    async fn closed(&mut self) {
        self.closed = true;
    }
}

struct Ignore;

impl WithDiscriminantsHandler for Ignore {
    async fn on_first(&mut self) {}
    async fn on_second(&mut self) {}
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

fn assert_send<T: Send>(value: T) -> T {
    value
}

fn main() {
    assert_eq!(ToWorker::NAME, "ToWorker");
    assert_ne!(ToWorker::FINGERPRINT, 0);
    assert_ne!(ToWorker::FINGERPRINT, WithDiscriminants::FINGERPRINT);
    assert_eq!(WithDiscriminants::Second as u8, 5);

    let mut worker = Worker::default();
    for message in [
        ToWorker::Greet { name: "ann".into() },
        ToWorker::Square(3),
        ToWorker::Pair(1, "x".into()),
        ToWorker::Stop,
        ToWorker::EmptyTuple(),
        ToWorker::EmptyStruct {},
        ToWorker::Blob(vec![1, 2]),
        ToWorker::Blobs {
            plain: vec![1],
            rooted: vec![2],
            maybe: Some(vec![3]),
            bytes: Some(Bytes::from(vec![4])),
            words: vec![5],
        },
        ToWorker::Enabled,
    ] {
        block_on(assert_send(message.dispatch(&mut worker)));
    }
    block_on(assert_send(<ToWorker as Dispatch<Worker>>::closed(
        &mut worker,
    )));
    assert_eq!(
        worker.log,
        [
            "greet ann",
            "square 9",
            "pair 1 x",
            "stop",
            "empty tuple",
            "empty struct",
            "blob [1, 2]",
            "blobs [1] [2] Some([3]) Some([4]) [5]",
            "enabled",
        ]
    );
    assert!(worker.closed);

    block_on(WithDiscriminants::First.dispatch(&mut Ignore));
    // The default `closed` does nothing.
    block_on(<WithDiscriminants as Dispatch<Ignore>>::closed(&mut Ignore));
}
