//! The low-latency mode (`Config::set_spin`): a receiver that polls its socket for a while
//! before parking gets every message, in order, whether it comes within the spin or long
//! after it (the receiver then parks and is woken as usual), across real processes; and
//! its spin never holds back its own task's sends, nor does a peer that dribbles a frame
//! keep it spinning.

use std::time::Duration;

use aiosock::Config;
use aiosock_tests::workers::{Reply, Request, worker};
use aiosock_tests::{frame_header, guard, hello, raw_peer, write_raw};

const EXE: &str = env!("CARGO_BIN_EXE_worker");

/// One round trip through the `serve` worker: `Echo { id, data }` comes back unchanged.
async fn echo(
    tx: &aiosock::Sender<Request>,
    rx: &mut aiosock::Receiver<Reply>,
    id: u64,
    data: Vec<u8>,
) {
    tx.send(Request::Echo {
        id,
        data: data.clone(),
    })
    .await
    .expect("send");
    let reply = guard("echo", rx.recv()).await.expect("recv");
    assert_eq!(reply, Some(Reply::Echo { id, data }));
}

#[tokio::test]
async fn a_spinning_receiver_gets_every_reply_soon_or_late() {
    let (here, there) = aiosock::pair::<Request, Reply>().expect("pair");
    let _child = aiosock::spawn(worker(EXE, "serve"), there).expect("spawn");
    let mut config = Config::new();
    config.set_spin(Duration::from_micros(200));
    let (tx, mut rx) = here.with_config(config).into_split();
    for id in 0..5_000u64 {
        echo(&tx, &mut rx, id, id.to_le_bytes().to_vec()).await;
        if id % 1_000 == 999 {
            // Longer than the spin: the receiver parks, and the next reply still wakes it.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    drop(tx);
    // Whatever the worker reports at the close, then the end.
    while let Some(reply) = guard("end", rx.recv()).await.expect("recv") {
        assert!(!matches!(reply, Reply::Echo { .. }), "{reply:?}");
    }
}

/// A task that sends, then receives with a long spin, on a current-thread runtime: each
/// send must reach the peer at once. (A send left to the end's writer task would wait out
/// the whole spin, since that task cannot run on the same thread meanwhile: before the fix,
/// every other round trip here waited out the whole spin, 1.5 s in all.)
#[tokio::test]
async fn a_spin_does_not_hold_back_the_sends_before_it() {
    let (here, there) = aiosock::pair::<Request, Reply>().expect("pair");
    let _child = aiosock::spawn(worker(EXE, "serve"), there).expect("spawn");
    let spin = Duration::from_millis(300);
    let mut config = Config::new();
    config.set_spin(spin);
    let (tx, mut rx) = here.with_config(config).into_split();
    let start = std::time::Instant::now();
    for id in 0..10u64 {
        echo(&tx, &mut rx, id, vec![id as u8; 16]).await;
    }
    let elapsed = start.elapsed();
    // Ten round trips with the worker answering at once take milliseconds; five spins if
    // sends waited for them, as before the fix. The bound is far from both.
    assert!(
        elapsed < spin * 3,
        "10 round trips took {elapsed:?} with a {spin:?} spin: sends waited for it"
    );
    drop(tx);
    while let Some(reply) = guard("end", rx.recv()).await.expect("recv") {
        assert!(!matches!(reply, Reply::Echo { .. }), "{reply:?}");
    }
}

/// This thread's CPU time so far.
fn thread_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_THREAD).expect("getrusage");
    let (user, system) = (usage.user_time(), usage.system_time());
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    micros(user) + micros(system)
}

/// A peer that sends a frame a byte at a time, far apart: the spin is spent between
/// messages only, so the receiver parks while the frame is incomplete instead of
/// spinning through it (which a peer could otherwise keep up at the cost of a byte per
/// spin). Before the fix, this receiver's thread spent the whole dribble (0.5 s) spinning.
#[tokio::test]
async fn a_peer_dribbling_a_frame_does_not_keep_the_receiver_spinning() {
    const GAP: Duration = Duration::from_millis(50);
    let (here, there) = aiosock::pair::<Request, Reply>().expect("pair");
    let mut config = Config::new();
    config.set_spin(Config::MAX_SPIN);
    let (tx, mut rx) = here.with_config(config).into_split();
    let mut peer = raw_peer(there);
    // `Reply::Counted(7)`: variant 1, then 7.
    let frame = [frame_header(2, 0, 0), vec![1, 7]].concat();
    let dribbler = std::thread::spawn(move || {
        write_raw(&mut peer, &hello::<Reply, Request>());
        for byte in frame {
            std::thread::sleep(GAP);
            write_raw(&mut peer, &[byte]);
        }
        peer
    });
    let before = thread_cpu();
    let got = guard("dribbled", rx.recv()).await.expect("recv");
    let spent = thread_cpu() - before;
    assert_eq!(got, Some(Reply::Counted(7)));
    // The spin before the first byte (one gap) is the only one: a tenth of the dribble
    // at most, where spinning through it would take all ten gaps.
    assert!(
        spent < GAP * 3,
        "the receiver's thread spent {spent:?} of CPU on a frame dribbled over {:?}",
        GAP * 10
    );
    drop(dribbler.join().expect("dribbler"));
    drop(tx);
}
