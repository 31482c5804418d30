//! Streams of calls (`client.square_stream()`) between real processes: the `calls` and
//! `calls-concurrent` workers answer `Ask`.

use std::collections::HashSet;
use std::time::Duration;

use aiosock::{CallError, Config};
use aiosock_tests::guard;
use aiosock_tests::workers::{start_calls, until_gone};

const EXE: &str = env!("CARGO_BIN_EXE_worker");

fn config(max_calls: usize) -> Config {
    let mut config = Config::new();
    config.set_max_calls(max_calls);
    config
}

/// 5,000 calls, at most 64 in flight: every tag comes back exactly once, with its own
/// reply, and `next` says `None` once none is in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_of_a_stream_gets_its_own_reply_once() {
    for mode in ["calls", "calls-concurrent"] {
        let (_child, ask, _serving) = start_calls(EXE, mode, Config::new());
        let mut squares = ask.square_stream();
        let mut seen = HashSet::new();
        let mut check = |tag: u64, reply: Result<u64, CallError>| {
            assert_eq!(reply, Ok(tag * tag), "{mode}: call {tag}");
            assert!(seen.insert(tag), "{mode}: call {tag} answered twice");
        };
        for n in 0..5_000u64 {
            if squares.in_flight() == 64 {
                let (tag, reply) = guard("next", squares.next()).await.expect("in flight");
                check(tag, reply);
            }
            guard("push", squares.push(n, n)).await.unwrap();
        }
        while let Some((tag, reply)) = guard("next", squares.next()).await {
            check(tag, reply);
        }
        assert_eq!(seen.len(), 5_000, "{mode}");
        assert_eq!(squares.in_flight(), 0);
        // A variant with several fields takes them as a tuple, and mixes with plain calls.
        let mut slow = ask.slow_square_stream();
        slow.push((3, 50), 30).await.unwrap();
        slow.push((4, 0), 40).await.unwrap();
        assert_eq!(guard("square", ask.square(5)).await, Ok(25));
        let mut got: Vec<_> = vec![
            guard("next", slow.next()).await.unwrap(),
            guard("next", slow.next()).await.unwrap(),
        ];
        got.sort_by_key(|(tag, _)| *tag);
        assert_eq!(got, vec![(30, Ok(9)), (40, Ok(16))], "{mode}");
        assert!(slow.next().await.is_none());
    }
}

/// The concurrent worker answers a slow call after a fast one: the stream returns the
/// outcomes in the order they arrive.
#[tokio::test]
async fn outcomes_come_in_the_order_they_arrive() {
    let (_child, ask, _serving) = start_calls(EXE, "calls-concurrent", Config::new());
    let mut slow = ask.slow_square_stream();
    slow.push((2, 300), 1).await.unwrap();
    slow.push((3, 0), 2).await.unwrap();
    assert_eq!(guard("next", slow.next()).await, Some((2, Ok(9))));
    assert_eq!(guard("next", slow.next()).await, Some((1, Ok(4))));
}

/// A panicking handler answers its stream call with the panic; a concurrent worker goes
/// on with the stream's other calls.
#[tokio::test]
async fn a_panicking_handler_answers_its_call_in_the_stream() {
    let (_child, ask, _serving) = start_calls(EXE, "calls-concurrent", Config::new());
    let mut panics = ask.panic_stream();
    panics.push("stream trouble".to_owned(), 7).await.unwrap();
    match guard("next", panics.next()).await {
        Some((7, Err(CallError::Panicked { message }))) => assert_eq!(message, "stream trouble"),
        other => panic!("expected the panic, got {other:?}"),
    }
    let mut squares = ask.square_stream();
    squares.push(6, 6).await.unwrap();
    assert_eq!(guard("next", squares.next()).await, Some((6, Ok(36))));
}

/// `kill -9` of the worker with 1,000 stream calls in flight: every one of them gets
/// `Closed` within a second, and new pushes fail at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_fails_every_call_of_a_stream_within_a_second() {
    let (mut child, ask, serving) = start_calls(EXE, "calls-concurrent", Config::new());
    let mut held = ask.hold_stream();
    for tag in 0..1000 {
        held.push((), tag).await.unwrap();
    }
    // Sent after the held calls: once it is answered, the worker holds them all.
    assert_eq!(guard("square", ask.square(3)).await.unwrap(), 9);
    let pid = child.id();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    child.start_kill().unwrap();
    let mut tags = HashSet::new();
    while let Some((tag, outcome)) = tokio::time::timeout_at(deadline, held.next())
        .await
        .expect("within a second of the kill")
    {
        assert_eq!(outcome, Err(CallError::Closed), "call {tag}");
        assert!(tags.insert(tag), "call {tag} failed twice");
    }
    assert_eq!(tags.len(), 1000);
    assert_eq!(held.push((), 1000).await, Err(CallError::Closed));
    guard("serving", serving).await.unwrap().unwrap();
    guard("gone", until_gone(pid)).await;
}

/// A dropped stream cancels its calls: their late replies are discarded, their slots
/// free as the replies come, and the connection's other calls get their own replies.
#[tokio::test]
async fn a_dropped_stream_frees_its_slots_as_the_late_replies_come() {
    let (_child, ask, _serving) = start_calls(EXE, "calls-concurrent", config(4));
    let mut slow = ask.slow_square_stream();
    for n in 0..4 {
        slow.push((n, 200), n).await.unwrap();
    }
    assert_eq!(
        ask.try_square(1).await,
        Err(CallError::Full),
        "4 slots in use"
    );
    drop(slow);
    // A waiting call gets a slot once a late reply has come, and its own reply.
    assert_eq!(guard("square", ask.square(9)).await, Ok(81));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Every slot is free again.
    let calls: Vec<_> = (0..4).map(|n| ask.try_square(n)).collect();
    for (n, call) in (0..4).zip(calls) {
        assert_eq!(guard("square", call).await, Ok(n * n));
    }
}

/// A full table: `try_push` says so, `push` waits for a slot, and a stream's calls count
/// against the table only until their replies arrive, not until `next` takes them.
#[tokio::test]
async fn a_streams_calls_hold_slots_only_until_their_replies_arrive() {
    let (_child, ask, _serving) = start_calls(EXE, "calls-concurrent", config(2));
    let mut slow = ask.slow_square_stream();
    slow.push((5, 200), 5).await.unwrap();
    slow.push((6, 200), 6).await.unwrap();
    assert_eq!(slow.try_push((7, 0), 7).await, Err(CallError::Full));
    // Waits for a slot, which the first reply frees.
    guard("push", slow.push((7, 0), 7)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // All three replies are in the stream, none taken: the table is free.
    assert_eq!(guard("square", ask.try_square(2)).await, Ok(4));
    assert_eq!(guard("square", ask.try_square(3)).await, Ok(9));
    let mut got = Vec::new();
    while let Some(outcome) = guard("next", slow.next()).await {
        got.push(outcome);
    }
    got.sort_by_key(|(tag, _)| *tag);
    assert_eq!(got, vec![(5, Ok(25)), (6, Ok(36)), (7, Ok(49))]);
}

/// `next` is cancel safe: a `next` dropped while it waits takes nothing, and the outcome
/// that arrives later comes from the next `next`.
#[tokio::test]
async fn a_cancelled_next_loses_no_outcome() {
    let (_child, ask, _serving) = start_calls(EXE, "calls-concurrent", Config::new());
    let mut slow = ask.slow_square_stream();
    slow.push((2, 200), 1).await.unwrap();
    for _ in 0..3 {
        let waited = tokio::time::timeout(Duration::from_millis(20), slow.next()).await;
        assert!(waited.is_err(), "the reply came too soon");
    }
    assert_eq!(slow.in_flight(), 1);
    assert_eq!(guard("next", slow.next()).await, Some((1, Ok(4))));
    assert_eq!(slow.next().await, None);
}
