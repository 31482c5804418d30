//! What encoding a message can do to the channel: a `Serialize` that sends on the same
//! end (re-entrantly), one that panics halfway, and serde shapes bincode cannot carry
//! inside a field's type (which the macro cannot see).

use std::cell::RefCell;
use std::sync::mpsc;

use aiosock::__private::serde::{self, Deserialize, Deserializer, Serialize, Serializer};
use aiosock::{InvalidMessage, SendError, Sender};
use aiosock_tests::{HANG, guard, split_pair};

thread_local! {
    /// The sender a `Reentrant` value sends on while it is being encoded.
    static INNER: RefCell<Option<Sender<Loop>>> = const { RefCell::new(None) };
}

/// Sends `Loop::Plain(7)` on [`INNER`] from inside its own `Serialize`.
#[derive(Debug, Clone, PartialEq)]
struct Reentrant;

impl Serialize for Reentrant {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        INNER.with(|inner| {
            if let Some(tx) = inner.borrow().as_ref() {
                tx.try_send(Loop::Plain(7))
                    .expect("the inner send is accepted");
            }
        });
        s.serialize_u8(1)
    }
}

impl<'de> Deserialize<'de> for Reentrant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u8::deserialize(d).map(|_| Reentrant)
    }
}

#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq)]
enum Loop {
    Plain(u8),
    Nested(Reentrant),
}

#[test]
fn a_serialize_that_sends_on_the_same_end_does_not_deadlock() {
    // Run where a deadlock cannot take the test harness with it: a thread that reports.
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = aiosock_tests::local_runtime();
        let got = rt.block_on(async {
            let ((tx, _rx), (_peer_tx, mut peer_rx)) = split_pair::<Loop>();
            INNER.with(|inner| *inner.borrow_mut() = Some(tx.clone()));
            tx.send(Loop::Nested(Reentrant)).await.expect("send");
            INNER.with(|inner| inner.borrow_mut().take());
            let first = guard("recv", peer_rx.recv()).await.expect("recv");
            let second = guard("recv", peer_rx.recv()).await.expect("recv");
            (first, second)
        });
        let _ = done.send(got);
    });
    let (first, second) = result
        .recv_timeout(HANG)
        .expect("sending from inside Serialize hung");
    // The inner message was queued while the outer one was being encoded: first.
    assert_eq!(first, Some(Loop::Plain(7)));
    assert_eq!(second, Some(Loop::Nested(Reentrant)));
}

/// A value whose `Serialize` writes one field, then panics.
#[derive(Debug, Clone, PartialEq)]
struct Bomb;

impl Serialize for Bomb {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&0xdead_beef_u64)?;
        panic!("boom, halfway through a frame");
    }
}

impl<'de> Deserialize<'de> for Bomb {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <(u64, u64)>::deserialize(d).map(|_| Bomb)
    }
}

#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq)]
enum Fragile {
    Fine(u64),
    Explodes(Bomb),
}

#[tokio::test]
async fn a_panic_in_serialize_leaves_no_half_frame_behind() {
    let ((tx, _rx), (_peer_tx, mut peer_rx)) = split_pair::<Fragile>();
    tx.send(Fragile::Fine(1)).await.expect("send");
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = tx.try_send(Fragile::Explodes(Bomb));
    }));
    assert!(panicked.is_err(), "Serialize panicked");
    tx.send(Fragile::Fine(2))
        .await
        .expect("the channel goes on");
    assert_eq!(
        guard("recv", peer_rx.recv()).await.expect("recv"),
        Some(Fragile::Fine(1))
    );
    assert_eq!(
        guard("recv", peer_rx.recv()).await.expect("recv"),
        Some(Fragile::Fine(2))
    );
}

/// A field type with `#[serde(flatten)]` inside: bincode cannot encode a map of unknown
/// length, and the macro cannot see inside `Outer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "aiosock::__private::serde")]
struct Outer {
    id: u64,
    #[serde(flatten)]
    rest: Inner,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "aiosock::__private::serde")]
struct Inner {
    name: String,
}

#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq)]
enum Flattened {
    Record(Outer),
}

#[tokio::test]
async fn an_unsupported_serde_shape_inside_a_field_names_the_cause_and_the_remedy() {
    let ((tx, _rx), _peer) = split_pair::<Flattened>();
    let msg = Flattened::Record(Outer {
        id: 1,
        rest: Inner { name: "x".into() },
    });
    let err = tx
        .send(msg.clone())
        .await
        .expect_err("bincode cannot encode it");
    let SendError::Invalid(back, InvalidMessage::Encode(why)) = err else {
        panic!("expected Invalid(Encode), got {err:?}");
    };
    assert_eq!(back, msg, "the message comes back");
    let text = why.to_string();
    assert!(
        text.contains("length") && text.contains("flatten") && text.contains("serde"),
        "{text}"
    );
}

/// An untagged enum inside a field's type: it encodes, but bincode cannot decode it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "aiosock::__private::serde", untagged)]
enum Either {
    Number(u8),
    Text(String),
}

#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq)]
enum Untagged {
    Value(Either),
}

#[tokio::test]
async fn a_self_describing_shape_inside_a_field_fails_to_decode_with_the_remedy() {
    let ((tx, _rx), (_peer_tx, mut peer_rx)) = split_pair::<Untagged>();
    tx.send(Untagged::Value(Either::Number(3)))
        .await
        .expect("it encodes");
    let err = guard("recv", peer_rx.recv())
        .await
        .expect_err("it cannot decode");
    let aiosock::Error::Decode(why) = err else {
        panic!("expected Decode, got {err:?}");
    };
    let text = why.to_string();
    assert!(
        text.contains("self-describing") && text.contains("untagged"),
        "{text}"
    );
    let _ = Either::Text(String::new());
}
