//! Compatible evolution between real processes: a parent built with version 2 of a
//! protocol (variants added at the end, marked `#[added]`) and a worker built with version
//! 1, and the other way round. They talk over the variants both know; a variant the peer
//! does not know fails at `send` with the message handed back, never as a decode error at
//! the peer; a variant appended without `#[added]` is a mismatch.

use std::io::Read;
use std::process::Stdio;

use aiosock::{CallError, Error, InvalidMessage, SendError};
use aiosock_tests::guard;
use aiosock_tests::workers::{evolve_v1, evolve_v2, worker};

const EXE: &str = env!("CARGO_BIN_EXE_worker");

fn start<Out: aiosock::Protocol, In: aiosock::Protocol>(
    version: &str,
) -> (aiosock::Child, aiosock::Sender<Out>, aiosock::Receiver<In>) {
    let (here, there) = aiosock::pair::<Out, In>().expect("pair");
    let mut cmd = worker(EXE, "evolve");
    cmd.arg(version).stdout(Stdio::piped());
    let child = aiosock::spawn(cmd, there).expect("spawn worker");
    let (tx, rx) = here.into_split();
    (child, tx, rx)
}

#[tokio::test]
async fn a_new_parent_and_an_old_worker_talk_over_what_both_know() {
    use evolve_v2::{Evolving, EvolvingClient, Report};
    let (mut child, tx, mut rx) = start::<Evolving, Report>("v1");
    let client = EvolvingClient::new(tx);
    // The reports (and the replies) arrive through the receiver.
    let reports = tokio::spawn(async move {
        let mut pinged = Vec::new();
        while let Some(report) = rx.recv().await? {
            pinged.push(report);
        }
        Ok::<_, Error>(pinged)
    });
    // The first send of an added variant waits for the worker's hello, then fails with
    // the message handed back.
    match guard("note", client.note("hello".into())).await {
        Err(SendError::Invalid(
            Evolving::Note(text),
            InvalidMessage::UnknownVariant { variant: "Note" },
        )) => assert_eq!(text, "hello"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        guard("upper", client.upper("x".into())).await,
        Err(CallError::UnknownVariant { variant: "Upper" })
    );
    // A stream of the added call says so at its push: the call was not made, and the
    // stream has nothing in flight.
    let mut uppers = client.upper_stream();
    assert_eq!(
        guard("push", uppers.push("y".into(), 7)).await,
        Err(CallError::UnknownVariant { variant: "Upper" })
    );
    assert_eq!(
        guard("try_push", uppers.try_push("z".into(), 8)).await,
        Err(CallError::UnknownVariant { variant: "Upper" })
    );
    assert_eq!(uppers.in_flight(), 0);
    assert!(guard("next", uppers.next()).await.is_none());
    drop(uppers);
    match client.try_send(Evolving::Note("again".into())) {
        Err(aiosock::TrySendError::Invalid(_, InvalidMessage::UnknownVariant { variant })) => {
            assert_eq!(variant, "Note");
        }
        other => panic!("{other:?}"),
    }
    // What both know still works, before and after.
    for n in 1..=10 {
        client.ping(n).await.expect("ping");
    }
    assert_eq!(guard("pings", client.pings()).await.expect("call"), 55);
    drop(client);
    let pinged = guard("reports", reports)
        .await
        .expect("task")
        .expect("recv");
    assert_eq!(pinged, (1..=10).map(Report::Pinged).collect::<Vec<_>>());
    assert!(guard("exit", child.wait()).await.expect("wait").success());
}

#[tokio::test]
async fn an_old_parent_and_a_new_worker_talk_over_what_both_know() {
    use evolve_v1::{Evolving, EvolvingClient, Report};
    let (mut child, tx, mut rx) = start::<Evolving, Report>("v2");
    let mut stdout = child.take_stdout().expect("stdout");
    let client = EvolvingClient::new(tx);
    let reports = tokio::spawn(async move {
        let mut pinged = Vec::new();
        // Any report of a variant this build does not know would be an error here.
        while let Some(report) = rx.recv().await? {
            pinged.push(report);
        }
        Ok::<_, Error>(pinged)
    });
    for n in 1..=10 {
        client.ping(n).await.expect("ping");
    }
    assert_eq!(guard("pings", client.pings()).await.expect("call"), 55);
    drop(client);
    let pinged = guard("reports", reports)
        .await
        .expect("task")
        .expect("recv");
    assert_eq!(pinged, (1..=10).map(Report::Pinged).collect::<Vec<_>>());
    assert!(guard("exit", child.wait()).await.expect("wait").success());
    let mut out = String::new();
    stdout.read_to_string(&mut out).expect("stdout");
    // The new worker's `Noted` reports were refused at its `send`, all ten.
    assert!(out.contains("noted 0 refused 10"), "{out}");
}

#[tokio::test]
async fn two_new_builds_use_the_added_variants() {
    use evolve_v2::{Evolving, EvolvingClient, Report};
    let (mut child, tx, mut rx) = start::<Evolving, Report>("v2");
    let mut stdout = child.take_stdout().expect("stdout");
    let client = EvolvingClient::new(tx);
    let reports = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(report) = rx.recv().await? {
            all.push(report);
        }
        Ok::<_, Error>(all)
    });
    assert_eq!(
        guard("upper", client.upper("shout".into()))
            .await
            .expect("call"),
        "SHOUT"
    );
    client.note("kept".into()).await.expect("note");
    client.ping(3).await.expect("ping");
    drop(client);
    let all = guard("reports", reports)
        .await
        .expect("task")
        .expect("recv");
    assert_eq!(all, [Report::Pinged(3), Report::Noted("ping 3".into())]);
    assert!(guard("exit", child.wait()).await.expect("wait").success());
    let mut out = String::new();
    stdout.read_to_string(&mut out).expect("stdout");
    assert!(out.contains("noted 1 refused 0"), "{out}");
}

#[tokio::test]
async fn a_variant_appended_without_added_is_a_mismatch() {
    let (mut child, tx, mut rx) = start::<evolve_v1::Evolving, evolve_v1::Report>("unmarked");
    let mut stdout = child.take_stdout().expect("stdout");
    let err = guard("recv", rx.recv()).await.expect_err("a mismatch");
    assert!(matches!(err, Error::ProtocolMismatch(_)), "{err}");
    drop((tx, rx));
    assert!(guard("exit", child.wait()).await.expect("wait").success());
    let mut out = String::new();
    stdout.read_to_string(&mut out).expect("stdout");
    assert!(out.contains("protocol mismatch"), "{out}");
}

/// A sending half whose receiving half was dropped at once (`let (tx, _) = ...`) still
/// learns what the peer knows: dropping the receiver waits with its shutdown (and the
/// discarding of what the peer sent) until the peer's hello is known, whether it was
/// already in the socket or comes later. Before the fix, the drop discarded the hello,
/// and every send of an `#[added]` variant failed with `Closed` on a live connection.
#[tokio::test]
async fn a_sender_without_its_receiver_still_sends_added_variants() {
    use evolve_v2::{Evolving, Report};
    for hello_first in [true, false] {
        let (here, there) = aiosock::pair::<Evolving, Report>().expect("pair");
        let (peer_tx, mut peer_rx, tx) = if hello_first {
            // The peer's hello is in the socket, unread, when the receiver is dropped.
            let (peer_tx, peer_rx) = there.into_split();
            let (tx, _) = here.into_split();
            (peer_tx, peer_rx, tx)
        } else {
            // The receiver is gone before the peer has written its hello.
            let (tx, _) = here.into_split();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let (peer_tx, peer_rx) = there.into_split();
            (peer_tx, peer_rx, tx)
        };
        guard("send", tx.send(Evolving::Note("late".into())))
            .await
            .unwrap_or_else(|e| panic!("hello first {hello_first}: {e:?}"));
        assert_eq!(
            guard("recv", peer_rx.recv()).await.expect("recv"),
            Some(Evolving::Note("late".into()))
        );
        // With the hello known, the receiving direction is shut down after all: the
        // peer's sends fail instead of piling up for a reader that is gone.
        guard("closed", peer_tx.closed()).await;
    }
}

/// The same variants as `aiosock_tests::workers::gated` (the fingerprint does not hash
/// visibility), compiled with `cfg(test)` on: this build has `Extra`, the library's does
/// not.
mod here {
    #[aiosock::protocol]
    #[derive(Debug, PartialEq)]
    pub(crate) enum Gated {
        Base(u64),
        #[cfg(test)]
        #[added]
        Extra(u64),
    }
}

#[tokio::test]
async fn a_variant_behind_a_cfg_the_peer_was_built_without_fails_at_send() {
    use aiosock::Protocol;
    use aiosock_tests::workers::gated;
    // One fingerprint (it hashes the `cfg` as written), two variant lists.
    assert_eq!(
        <here::Gated as Protocol>::FINGERPRINT,
        <gated::Gated as Protocol>::FINGERPRINT
    );
    assert_ne!(
        <here::Gated as Protocol>::VARIANT_FINGERPRINTS.len(),
        <gated::Gated as Protocol>::VARIANT_FINGERPRINTS.len()
    );
    let (new, old) = aiosock::pair::<here::Gated, here::Gated>().unwrap();
    let old = aiosock::Endpoint::<gated::Gated, gated::Gated>::from_fd(old.into_fd());
    let (tx, _rx) = new.into_split();
    let (old_tx, mut old_rx) = old.into_split();
    // What both builds have goes through; what only this one has fails at send, as for a
    // peer of an older version.
    guard("base", tx.send(here::Gated::Base(1))).await.unwrap();
    let extra = guard("extra", tx.send(here::Gated::Extra(2))).await;
    assert!(
        matches!(
            extra,
            Err(SendError::Invalid(_, InvalidMessage::UnknownVariant { .. }))
        ),
        "{extra:?}"
    );
    assert_eq!(
        guard("recv", old_rx.recv()).await.unwrap(),
        Some(gated::Gated::Base(1))
    );
    drop(old_tx);
}

#[tokio::test]
async fn an_added_call_fails_once_the_receiver_ended_without_the_peers_hello() {
    use aiosock_tests::{hello, raw_peer, write_raw};
    use evolve_v2::{Evolving, EvolvingClient, Report};
    let (here, there) = aiosock::pair::<Evolving, Report>().unwrap();
    let mut peer = raw_peer(there);
    // A hello of another protocol, then more than one read's worth of bytes: after the
    // mismatch, what the receiver did not read is still in the socket, and is no hello.
    let mut bytes = hello::<Report, Report>();
    bytes.extend(vec![0u8; 96 * 1024]);
    write_raw(&mut peer, &bytes);
    let (tx, mut rx) = here.into_split();
    let err = guard("recv", rx.recv()).await.unwrap_err();
    assert!(matches!(err, Error::ProtocolMismatch(_)), "{err}");
    drop(peer);
    // Sends and calls of `#[added]` variants wait for the peer's hello: it will never come.
    // On a thread of their own, since a wait that spins would keep any timer in their
    // runtime from firing.
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = aiosock_tests::local_runtime();
        let _ = done.send(runtime.block_on(async move {
            let client = EvolvingClient::new(tx.clone());
            let call = client.upper("x".into()).await;
            let send = tx.send(Evolving::Note("n".into())).await;
            (call.is_err(), matches!(send, Err(SendError::Closed(_))))
        }));
    });
    let outcome = outcome.recv_timeout(std::time::Duration::from_secs(10));
    assert_eq!(
        outcome,
        Ok((true, true)),
        "the call and the send must fail, not wait"
    );
}

#[tokio::test]
async fn a_receiver_dropped_before_the_peers_hello_shuts_down_when_only_baseline_variants_go() {
    use evolve_v2::{Evolving, Report};
    let (here, there) = aiosock::pair::<Evolving, Report>().unwrap();
    // The peer's hello is not there yet: shutting down this end's receiving waits for it.
    let (tx, _) = here.into_split();
    let (peer_tx, _peer_rx) = there.into_split();
    // Only a baseline variant goes out, so no send of this end ever peeks for the hello.
    tx.send(Evolving::Ping(1)).await.unwrap();
    // The peer learns that nobody reads what it sends, well within the linger.
    guard("closed", peer_tx.closed()).await;
    assert!(peer_tx.send(Report::Pinged(0)).await.is_err());
    drop(tx);
}

#[tokio::test]
async fn a_try_call_of_an_added_variant_does_not_wait_for_the_peers_hello() {
    use evolve_v2::{Evolving, EvolvingClient, Report};
    // The peer's end is never used: its hello never goes out.
    let (here, _there) = aiosock::pair::<Evolving, Report>().unwrap();
    let (tx, _rx) = here.into_split();
    let client = EvolvingClient::new(tx);
    assert_eq!(
        guard("try", client.try_upper("x".into())).await,
        Err(CallError::Full),
        "as try_send: the hello is not here yet"
    );
}

#[tokio::test]
async fn a_receiver_dropped_before_a_hello_that_never_comes_shuts_down_after_the_linger() {
    use aiosock_tests::raw_peer;
    use evolve_v2::{Evolving, Report};
    use std::io::Write;
    let (here, there) = aiosock::pair::<Evolving, Report>().unwrap();
    let mut config = aiosock::Config::new();
    config.set_linger(std::time::Duration::from_millis(200));
    let (tx, rx) = here.with_config(config).into_split();
    // A peer that never says hello, only sends bytes that are not one.
    let mut peer = raw_peer(there);
    peer.set_nonblocking(true).unwrap();
    drop(rx);
    let started = std::time::Instant::now();
    // Until this end shuts its receiving down, the peer's writes are taken (or would
    // block); then they fail. Waiting past the linger, at most: not forever.
    let refused = guard("refused", async {
        loop {
            match peer.write(&[0u8; 1024]) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return started.elapsed(),
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        refused >= std::time::Duration::from_millis(150),
        "shut down after {refused:?}: before the linger, a late hello could still come"
    );
    drop(tx);
}

/// An `evolve_v2` end whose peer is a raw socket, and the peer's hello (it knows every
/// variant), not sent yet.
fn raw_peer_v2() -> (
    aiosock::Sender<evolve_v2::Evolving>,
    aiosock::Receiver<evolve_v2::Report>,
    std::os::unix::net::UnixStream,
    Vec<u8>,
) {
    use evolve_v2::{Evolving, Report};
    let (here, there) = aiosock::pair::<Evolving, Report>().unwrap();
    let (tx, rx) = here.into_split();
    let peer = aiosock_tests::raw_peer(there);
    (tx, rx, peer, aiosock_tests::hello::<Report, Evolving>())
}

/// [`raw_peer_v2`] once the peer has sent the first half of its hello and the receiver
/// has read it (and found no whole hello yet): the rest of the hello is returned.
fn half_hello_read() -> (
    aiosock::Sender<evolve_v2::Evolving>,
    aiosock::Receiver<evolve_v2::Report>,
    std::os::unix::net::UnixStream,
    Vec<u8>,
) {
    let (tx, mut rx, mut peer, hello) = raw_peer_v2();
    let (first, rest) = hello.split_at(hello.len() / 2);
    aiosock_tests::write_raw(&mut peer, first);
    assert!(matches!(rx.try_recv(), Err(aiosock::TryRecvError::Empty)));
    (tx, rx, peer, rest.to_vec())
}

#[tokio::test]
async fn a_receiver_dropped_with_part_of_the_peers_hello_read_still_learns_it() {
    use evolve_v2::Evolving;
    // The receiver reads the first piece of the hello and is dropped with it.
    let (tx, rx, mut peer, rest) = half_hello_read();
    drop(rx);
    aiosock_tests::write_raw(&mut peer, &rest);
    // A send of an `#[added]` variant waits for the hello, which the end still reads whole.
    guard("note", tx.send(Evolving::Note("x".into())))
        .await
        .expect("the peer's hello says it knows Note");
    drop(peer);
}

/// The peer's hello in two pieces, and then the end of its sending direction (it still
/// receives): a send of an `#[added]` variant waits for the receiver, on the same
/// current-thread runtime, to read the rest. The end of the stream leaves the socket
/// readable for good, so the wait must not poll it in a loop: that would never yield to
/// the receiver's task.
#[tokio::test(flavor = "current_thread")]
async fn a_send_waiting_for_the_rest_of_the_hello_after_the_peer_stopped_sending_yields() {
    use evolve_v2::Evolving;
    let (tx, mut rx, mut peer, rest) = half_hello_read();
    aiosock_tests::write_raw(&mut peer, &rest);
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    let receiving = tokio::spawn(async move { rx.recv().await.map(|msg| msg.is_none()) });
    guard("note", tx.send(Evolving::Note("x".into())))
        .await
        .expect("the peer's hello says it knows Note");
    assert!(matches!(guard("end", receiving).await, Ok(Ok(true))));
    drop(peer);
}

/// A receiver that took part of the peer's hello and is not polled again, and a peer that
/// is gone (closed both ways): a send of an `#[added]` variant fails with `Closed` instead
/// of waiting on that receiver for a hello that cannot come.
#[tokio::test]
async fn a_send_fails_when_the_peer_is_gone_with_part_of_its_hello_taken_by_the_receiver() {
    use evolve_v2::Evolving;
    let (tx, rx, peer, _rest) = half_hello_read();
    drop(peer);
    match guard("note", tx.send(Evolving::Note("x".into()))).await {
        Err(SendError::Closed(_)) => {}
        other => panic!("expected Closed, got {other:?}"),
    }
    drop(rx);
}

/// A race between the receiver and a send that looks for the peer's hello: the receiver
/// has taken the hello from the socket and not decoded it yet, and the peer has closed its
/// sending direction (it still receives), so a peek finds the end of the stream. That is
/// no sign that the hello will never come: the receiver is about to report it. Before, the
/// send of an `#[added]` variant failed with `Closed` there.
#[test]
fn a_send_racing_the_receiver_for_the_peers_hello_never_fails_while_the_peer_lives() {
    use evolve_v2::Evolving;
    use std::sync::{Arc, Barrier};
    const ROUNDS: usize = 2000;
    let mut spurious = 0;
    for _ in 0..ROUNDS {
        let (tx, mut rx, mut peer, hello) = raw_peer_v2();
        aiosock_tests::write_raw(&mut peer, &hello);
        // The peer stops sending; it still receives.
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        let start = Arc::new(Barrier::new(2));
        let receiving = {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                loop {
                    match rx.try_recv() {
                        Err(aiosock::TryRecvError::Empty) => std::hint::spin_loop(),
                        Err(aiosock::TryRecvError::Disconnected) => return rx,
                        other => panic!("the peer sent only its hello: {other:?}"),
                    }
                }
            })
        };
        start.wait();
        let sent = loop {
            match tx.try_send(Evolving::Note("x".into())) {
                Err(aiosock::TrySendError::Full(_)) => std::hint::spin_loop(),
                other => break other,
            }
        };
        let rx = receiving.join().unwrap();
        match sent {
            Ok(()) => {}
            Err(aiosock::TrySendError::Closed(_)) => spurious += 1,
            Err(other) => panic!("the peer knows Note: {other:?}"),
        }
        drop((tx, rx, peer));
    }
    assert_eq!(
        spurious, 0,
        "sends that failed with Closed in {ROUNDS} rounds"
    );
}
