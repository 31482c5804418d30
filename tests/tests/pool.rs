//! `aiosock::Pool` over real worker processes (the `calls-concurrent` worker): calls go to
//! the least-loaded worker, a worker killed with `kill -9` is restarted while its calls
//! fail or (idempotent ones) are made again elsewhere, and shutdown is graceful and
//! bounded.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use aiosock::{CallError, Pool};
use aiosock_tests::guard;
use aiosock_tests::workers::{AskClient, Back, Doubler, process_gone, until_gone, worker};

const EXE: &str = env!("CARGO_BIN_EXE_worker");

fn pool(size: usize) -> Arc<Pool<AskClient>> {
    let pool =
        Pool::<AskClient>::spawn::<Back, _>(size, |_| worker(EXE, "calls-concurrent"), Doubler);
    Arc::new(pool.expect("pool"))
}

async fn pid_of_next(pool: &Pool<AskClient>) -> u32 {
    guard("pid", pool.call(async |ask| ask.pid().await))
        .await
        .expect("pid")
}

/// Polls `call` once, so that it picks its worker and sends; it must still be waiting.
fn start<F: Future>(call: &mut Pin<Box<F>>) {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(
        call.as_mut().poll(&mut cx).is_pending(),
        "the call ended at once"
    );
}

fn kill_9(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Kills (`kill -9`) the one worker with a call in flight.
fn kill_the_worker_with_the_call(pool: &Pool<AskClient>) {
    let taken = pool.workers().into_iter().find(|w| w.in_flight == 1);
    kill_9(taken.and_then(|w| w.pid).expect("a worker with the call"));
}

fn pids(pool: &Pool<AskClient>) -> Vec<u32> {
    pool.workers().iter().map(|w| w.pid.expect("up")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_the_workers_and_all_are_answered() {
    let pool = pool(3);
    assert_eq!(pool.size(), 3);
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..30u64 {
        let pool = pool.clone();
        tasks.spawn(async move {
            let mut served_by = HashSet::new();
            for i in 0..100u64 {
                let n = t * 100 + i;
                assert_eq!(pool.call(async |ask| ask.square(n).await).await, Ok(n * n));
                served_by.insert(pool.call(async |ask| ask.pid().await).await.unwrap());
            }
            served_by
        });
    }
    let mut served_by = HashSet::new();
    while let Some(pids) = tasks.join_next().await {
        served_by.extend(pids.unwrap());
    }
    let pids: HashSet<_> = pids(&pool).into_iter().collect();
    assert_eq!(served_by, pids, "every worker took calls");
    let workers = pool.workers();
    assert!(
        workers
            .iter()
            .all(|w| w.up && w.restarts == 0 && w.in_flight == 0)
    );
    assert_eq!(pool.in_flight(), 0);
    guard("shutdown", pool.shutdown(Duration::from_secs(10))).await;
    for pid in pids {
        assert!(process_gone(pid), "worker {pid} still runs after shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_goes_to_the_least_loaded_worker() {
    let pool = pool(2);
    let first = pid_of_next(&pool).await;
    let second = pid_of_next(&pool).await;
    assert_ne!(first, second, "ties rotate over the workers");
    // Three held calls: two land on one worker and one on the other.
    let mut holds: Vec<_> = (0..3)
        .map(|_| Box::pin(pool.call(async |ask| ask.hold().await)))
        .collect();
    for hold in &mut holds {
        start(hold);
    }
    let workers = pool.workers();
    let mut loads: Vec<_> = workers.iter().map(|w| w.in_flight).collect();
    loads.sort();
    assert_eq!(loads, [1, 2]);
    // The next call goes to the worker with one.
    let lighter = workers.iter().find(|w| w.in_flight == 1).unwrap();
    assert_eq!(pid_of_next(&pool).await, lighter.pid.unwrap());
    drop(holds);
    // The held calls' methods never return, so the workers' `serve_concurrent` waits for
    // them after the end: shutdown's grace runs out and it kills them.
    guard("shutdown", pool.shutdown(Duration::from_millis(500))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_restarted_and_only_its_calls_fail() {
    let pool = pool(2);
    let victim = pool.workers()[0].pid.unwrap();
    let mut held: Vec<_> = (0..10)
        .map(|_| Box::pin(pool.call(async |ask| ask.hold().await)))
        .collect();
    for call in &mut held {
        start(call);
    }
    let on_victim = pool.workers()[0].in_flight;
    assert_eq!(on_victim, 5);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    kill_9(victim);
    let mut closed = 0;
    for call in &mut held {
        // Within a second of the kill, every call on the victim has failed.
        match tokio::time::timeout_at(deadline, call.as_mut()).await {
            Ok(Err(CallError::Closed)) => closed += 1,
            Ok(other) => panic!("a held call ended with {other:?}"),
            Err(_) => {} // held on the other worker, which lives
        }
    }
    assert_eq!(
        closed, on_victim,
        "the calls on the killed worker failed, only those"
    );
    drop(held);
    guard("gone", until_gone(victim)).await;
    let back = guard("restart", async {
        loop {
            let w = &pool.workers()[0];
            if w.up && w.restarts == 1 {
                return w.pid.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_ne!(back, victim);
    for n in 0..10 {
        assert_eq!(pool.call(async |ask| ask.square(n).await).await, Ok(n * n));
    }
    // The other worker still runs the held calls' methods: a short grace, then the kill.
    guard("shutdown", pool.shutdown(Duration::from_millis(500))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_call_is_made_again_when_its_worker_dies() {
    let pool = pool(2);
    let mut slow = Box::pin(pool.call_idempotent(async |ask| ask.slow_square(5, 500).await));
    start(&mut slow);
    kill_the_worker_with_the_call(&pool);
    assert_eq!(guard("retried", slow).await, Ok(25));
    // The same call, not marked idempotent, fails.
    let mut once = Box::pin(pool.call(async |ask| ask.slow_square(5, 500).await));
    start(&mut once);
    kill_the_worker_with_the_call(&pool);
    assert_eq!(guard("once", once).await, Err(CallError::Closed));
    guard("shutdown", pool.shutdown(Duration::from_secs(10))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_calls_in_flight_then_stops_the_workers() {
    let pool = pool(2);
    let pids = pids(&pool);
    let slow = tokio::spawn({
        let pool = pool.clone();
        async move { pool.call(async |ask| ask.slow_square(3, 300).await).await }
    });
    while pool.in_flight() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    guard("shutdown", pool.shutdown(Duration::from_secs(10))).await;
    // The call in flight was answered; the workers exited on their own; new calls fail.
    assert_eq!(guard("slow", slow).await.unwrap(), Ok(9));
    for pid in pids {
        assert!(process_gone(pid), "worker {pid} still runs");
    }
    assert!(pool.workers().iter().all(|w| !w.up && w.restarts == 0));
    assert_eq!(
        pool.call(async |ask| ask.square(1).await).await,
        Err(CallError::Closed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_by_its_grace() {
    let pool = pool(2);
    let pids = pids(&pool);
    let held = tokio::spawn({
        let pool = pool.clone();
        async move { pool.call(async |ask| ask.hold().await).await }
    });
    while pool.in_flight() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    guard("shutdown", pool.shutdown(Duration::from_millis(300))).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "shutdown did not wait: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    // The workers were killed at the deadline, and the held call failed.
    for pid in pids {
        guard("gone", until_gone(pid)).await;
    }
    assert_eq!(guard("held", held).await.unwrap(), Err(CallError::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_a_worker_restarts_still_ends() {
    for wait_ms in [0, 5, 15, 30] {
        let pool = pool(2);
        kill_9(pool.workers()[0].pid.unwrap());
        // Shut down while the supervisor notices the death, pauses or starts a new worker.
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        guard("shutdown", pool.shutdown(Duration::from_secs(2))).await;
        assert!(pool.workers().iter().all(|w| !w.up && w.pid.is_none()));
        assert_eq!(
            pool.call(async |ask| ask.square(1).await).await,
            Err(CallError::Closed)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_whose_connection_lives_on_in_its_child_still_fails_its_calls() {
    // Each worker forks a child that keeps a copy of its connection open: a `kill -9` of
    // the worker brings no end of stream.
    let pool =
        Pool::<AskClient>::spawn::<Back, _>(1, |_| worker(EXE, "calls-forked-copy"), Doubler)
            .expect("pool");
    let victim = pool.workers()[0].pid.expect("up");
    let mut held = Box::pin(pool.call(async |ask| ask.hold().await));
    start(&mut held);
    kill_9(victim);
    match tokio::time::timeout(Duration::from_secs(5), held).await {
        Ok(Err(CallError::Closed)) => {}
        Ok(other) => panic!("the held call ended with {other:?}"),
        Err(_) => panic!("the call on the killed worker still waits after 5 s"),
    }
    let back = guard("restart", async {
        loop {
            let w = &pool.workers()[0];
            if w.up && w.restarts == 1 {
                return w.pid.expect("up");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_ne!(back, victim);
    assert_eq!(pool.call(async |ask| ask.square(3).await).await, Ok(9));
    guard("shutdown", pool.shutdown(Duration::from_millis(500))).await;
}

/// `Pool::map`: 20,000 inputs streamed over 3 workers, the outcomes in input order, every
/// worker taking calls, and nothing left counted once it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_answers_every_input_in_order_over_all_workers() {
    let pool = pool(3);
    let squares = guard("map", pool.map(0..20_000u64, 64, |ask| ask.square_stream())).await;
    assert_eq!(squares.len(), 20_000);
    for (n, square) in (0..20_000u64).zip(&squares) {
        assert_eq!(*square, Ok(n * n), "input {n}");
    }
    assert_eq!(pool.in_flight(), 0);
    // Each worker got calls: the pids answered by a map over the workers' `Pid`.
    let served: HashSet<u32> = guard(
        "pids",
        pool.map((0..300).map(|_| ()), 1, |ask| ask.pid_stream()),
    )
    .await
    .into_iter()
    .map(|pid| pid.expect("pid"))
    .collect();
    let all: HashSet<u32> = pids(&pool).into_iter().collect();
    assert_eq!(served, all, "every worker took calls");
    assert!(pool.workers().iter().all(|w| w.in_flight == 0));
}

/// A worker killed with `kill -9` in the middle of a map: only the calls it held fail
/// (with `Closed` or `Failed`); every other input is answered by the other worker or the
/// restarted one, and the map ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_goes_on_when_a_worker_dies() {
    let pool = pool(2);
    let victim = pids(&pool)[0];
    let map = {
        let pool = pool.clone();
        tokio::spawn(async move {
            pool.map((0..400u64).map(|n| (n, 5)), 16, |ask| {
                ask.slow_square_stream()
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    kill_9(victim);
    let outcomes = guard("map", map).await.unwrap();
    assert_eq!(outcomes.len(), 400);
    let mut failed = 0;
    for (n, outcome) in (0..400u64).zip(&outcomes) {
        match outcome {
            Ok(square) => assert_eq!(*square, n * n, "input {n}"),
            Err(CallError::Closed | CallError::Failed { .. }) => failed += 1,
            Err(other) => panic!("input {n}: {other:?}"),
        }
    }
    assert!(failed > 0, "the killed worker held calls");
    assert!(
        failed <= 16,
        "only the killed worker's calls fail: {failed}"
    );
    assert_eq!(pool.in_flight(), 0);
    guard("gone", until_gone(victim)).await;
}

/// A map when the pool shuts down: the input taken then fails with `Closed`, no more are
/// taken, and the map ends once its calls in flight are done, even over an iterator that
/// never ends, on a current-thread runtime (where a map that kept taking inputs without
/// waiting would starve the shutdown).
#[tokio::test]
async fn a_map_ends_when_the_pool_shuts_down() {
    for endless in [false, true] {
        let pool = pool(2);
        let map = {
            let pool = pool.clone();
            tokio::spawn(async move {
                let inputs: Box<dyn Iterator<Item = u64> + Send> = if endless {
                    Box::new(0..)
                } else {
                    Box::new(0..1_000)
                };
                pool.map(inputs.map(|n| (n, 2)), 4, |ask| ask.slow_square_stream())
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        guard("shutdown", pool.shutdown(Duration::from_secs(5))).await;
        let outcomes = guard("map", map).await.unwrap();
        assert!(outcomes.len() < 1_000, "{} outcomes", outcomes.len());
        let (last, answered) = outcomes.split_last().expect("outcomes");
        assert_eq!(
            *last,
            Err(CallError::Closed),
            "the input taken at the shutdown"
        );
        assert!(!answered.is_empty());
        for (n, outcome) in (0..).zip(answered) {
            match outcome {
                Ok(square) => assert_eq!(*square, n * n),
                Err(e) => assert_eq!(*e, CallError::Closed, "input {n}"),
            }
        }
    }
}

/// A cancelled map stops counting its calls: the pool's load is back to zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_map_leaves_no_calls_counted() {
    let pool = pool(2);
    let map = pool.map((0..1_000u64).map(|n| (n, 1_000)), 8, |ask| {
        ask.slow_square_stream()
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(100), map)
            .await
            .is_err(),
        "the map should still be running"
    );
    assert_eq!(pool.in_flight(), 0);
    assert!(pool.workers().iter().all(|w| w.in_flight == 0));
}

/// A map's calls go to the worker with the fewest calls in flight, counting calls made
/// outside the map: with a `call` held on one worker, a map of one call goes to the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maps_call_goes_to_the_least_loaded_worker() {
    let pool = pool(2);
    let mut held = Box::pin(pool.call(async |ask| ask.hold().await));
    start(&mut held);
    let busy = pool
        .workers()
        .into_iter()
        .find(|w| w.in_flight == 1)
        .and_then(|w| w.pid)
        .expect("the held call's worker");
    for _ in 0..10 {
        let pids = guard(
            "map",
            pool.map(std::iter::once(()), 1, |ask| ask.pid_stream()),
        )
        .await;
        let pid = pids[0].clone().expect("pid");
        assert_ne!(pid, busy, "the map's call went to the busy worker");
    }
}
