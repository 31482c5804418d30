//! `Config::set_woken_by_peer_reads`: with it on (the default), an end's runtime thread is
//! woken when the peer reads what the end sent, as well as when the peer's answer comes;
//! with it off, only by the answer. Counted as the runtime thread's voluntary context
//! switches (`/proc/thread-self/status`) over request-and-reply rounds with a real peer
//! that reads each request a little after it was sent, pauses, and then answers.

use std::io::{Read, Write};
use std::time::Duration;

use aiosock::Config;
use aiosock_tests::{frame_header, hello, raw_peer};

#[aiosock::protocol]
#[derive(Debug)]
enum Talk {
    Say(u64),
}

const ROUNDS: u64 = 40;

/// The voluntary context switches of the calling thread so far.
fn voluntary_switches() -> u64 {
    let status = std::fs::read_to_string("/proc/thread-self/status").expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
        .expect("the field")
        .trim()
        .parse()
        .expect("a number")
}

/// How many times the end's runtime thread slept per round, with `woken` set.
fn sleeps_per_round(woken: bool) -> f64 {
    let (ours, theirs) = aiosock::pair::<Talk, Talk>().expect("pair");
    let mut config = Config::new();
    config.set_woken_by_peer_reads(woken);
    let ours = ours.with_config(config);
    let mut peer = raw_peer(theirs);
    peer.write_all(&hello::<Talk, Talk>()).expect("hello");
    let end = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let (tx, mut rx) = ours.into_split();
            // The hello, and the first round, before counting.
            tx.send(Talk::Say(0)).await.expect("send");
            rx.recv().await.expect("recv").expect("an answer");
            let before = voluntary_switches();
            for n in 1..=ROUNDS {
                tx.send(Talk::Say(n)).await.expect("send");
                match rx.recv().await.expect("recv") {
                    Some(Talk::Say(m)) if m == n => {}
                    other => panic!("expected the answer {n}, got {other:?}"),
                }
            }
            voluntary_switches() - before
        })
    });
    // Skip this end's hello; then read each request once the end sleeps, pause, and
    // answer it (the pauses only keep the two wake-ups apart).
    let mut skip = vec![0u8; hello::<Talk, Talk>().len()];
    peer.read_exact(&mut skip).expect("its hello");
    for n in 0..=ROUNDS {
        let mut request = [0u8; 10];
        std::thread::sleep(Duration::from_millis(3));
        peer.read_exact(&mut request).expect("a request");
        std::thread::sleep(Duration::from_millis(3));
        let payload = [0u8, n as u8];
        peer.write_all(&[frame_header(2, 0, 0).to_vec(), payload.to_vec()].concat())
            .expect("answer");
    }
    let switches = end.join().expect("the end's thread");
    switches as f64 / ROUNDS as f64
}

#[test]
fn the_runtime_wakes_when_the_peer_reads_only_with_the_option_on() {
    let on = sleeps_per_round(true);
    let off = sleeps_per_round(false);
    // The price the docs state: one more wake-up per message the peer reads, no more.
    assert!(
        (1.6..=2.4).contains(&on),
        "with it on, about two sleeps per round: {on}"
    );
    assert!(off <= 1.4, "with it off, about one sleep per round: {off}");
}
