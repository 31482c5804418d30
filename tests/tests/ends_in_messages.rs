//! Channel ends in messages between real processes: a broker (the test) makes a pair and
//! hands one end to each of two workers, which then talk without it; a worker hands the
//! test a fresh channel for a stream of results; a mistyped end fails its own hello.

use aiosock::Endpoint;
use aiosock_tests::guard;
use aiosock_tests::workers::{Chat, Resources, ResourcesClient, Returned, Stranger, worker};

const EXE: &str = env!("CARGO_BIN_EXE_worker");

fn start() -> (aiosock::Child, ResourcesClient) {
    let (here, there) = aiosock::pair::<Resources, Returned>().expect("pair");
    let child = aiosock::spawn(worker(EXE, "resources"), there).expect("spawn worker");
    let (tx, rx) = here.into_split();
    tokio::spawn(rx.serve(()));
    (child, ResourcesClient::new(tx))
}

#[tokio::test]
async fn a_broker_introduces_two_workers_who_then_talk_directly() {
    let (child_a, speaker) = start();
    let (child_b, listener) = start();
    assert_ne!(child_a.id(), child_b.id());
    let (for_a, for_b) = aiosock::pair::<Chat, Chat>().expect("pair");
    let speaking = speaker.join(for_a, true, 10_000);
    let listening = listener.join(for_b, false, 0);
    let (spoken, heard) = guard("both", async { tokio::join!(speaking, listening) }).await;
    assert_eq!(spoken.expect("call"), Ok(10_000));
    assert_eq!(heard.expect("call"), Ok(10_000), "every line, in order");
}

#[tokio::test]
async fn a_worker_hands_back_a_fresh_channel_for_a_stream_of_results() {
    let (_child, client) = start();
    let end: Endpoint<Chat, Chat> = guard("results", client.results(5_000)).await.expect("call");
    let (_tx, mut rx) = end.into_split();
    for n in 0..5_000 {
        assert_eq!(
            guard("line", rx.recv()).await.expect("recv"),
            Some(Chat::Line(n))
        );
    }
    assert_eq!(guard("end", rx.recv()).await.expect("recv"), None);
}

#[tokio::test]
async fn an_end_whose_peer_speaks_another_protocol_fails_its_own_hello() {
    let (_child, client) = start();
    let (ours, theirs) = aiosock::pair::<Stranger, Stranger>().expect("pair");
    // Passed off as a chat end: the worker's end checks the peer's hello.
    let disguised = Endpoint::<Chat, Chat>::from_fd(theirs.into_fd());
    let (tx, _rx) = ours.into_split();
    tx.send(Stranger::Hello("not a chat".into()))
        .await
        .expect("send");
    let heard = guard("join", client.join(disguised, false, 0))
        .await
        .expect("call");
    let err = heard.expect_err("a mismatch");
    assert!(err.contains("protocol mismatch"), "{err}");
}
