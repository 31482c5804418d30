//! A raw socket plays a hostile or broken peer that sends descriptors: more or fewer than
//! its frames announce, descriptors no frame claims, indices past a frame's descriptors,
//! too many, unsealed shared memory, and a "channel end" that is a file. Each gets its
//! typed error, the messages before it are delivered, and every descriptor received and
//! not delivered is closed (counted in `/proc/self/fd`).

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use aiosock::{Config, Error, FdError, Receiver, Sender};
use aiosock_tests::{frame_header, guard, hello, raw_peer, send_with_fds as send_with};

#[aiosock::protocol]
#[derive(Debug)]
enum Carry {
    Num(u64),
    One(aiosock::Fd),
    Files(Vec<aiosock::Fd>),
    Buf(aiosock::Shm),
    End(aiosock::Endpoint<Carry, Carry>),
}

/// The tests count the descriptors of [`marked`] memfds this process holds: one test at a
/// time, each holding this for its whole run (what it was delivered included).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn raw_pair(config: Config) -> (Sender<Carry>, Receiver<Carry>, UnixStream) {
    let (ours, theirs) = aiosock::pair::<Carry, Carry>().expect("pair");
    let (tx, rx) = ours.with_config(config).into_split();
    (tx, rx, raw_peer(theirs))
}

/// A frame announcing `fds` descriptors.
fn frame(payload: &[u8], fds: u16) -> Vec<u8> {
    [frame_header(payload.len() as u32, fds, 0), payload.to_vec()].concat()
}

/// `n` descriptors of one memfd whose name no other test uses, so that
/// [`still_open`] counts exactly the copies of them this process holds (tests run at once,
/// and each opens descriptors of its own). Closed when dropped: after sending, only the
/// copies in flight are left.
fn marked(n: usize) -> Vec<std::fs::File> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = std::ffi::CString::new(format!("aiosock-hostile-{id}")).expect("name");
    let memfd =
        nix::sys::memfd::memfd_create(name.as_c_str(), nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .expect("memfd");
    let file = std::fs::File::from(memfd);
    let mut files: Vec<_> = (1..n).map(|_| file.try_clone().expect("dup")).collect();
    if n > 0 {
        files.push(file);
    }
    files
}

/// How many descriptors this process holds of the memfds [`marked`] made.
fn still_open() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("fd dir")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|target| target.to_string_lossy().contains("aiosock-hostile-"))
        .count()
}

fn raws(files: &[impl AsRawFd]) -> Vec<RawFd> {
    files.iter().map(AsRawFd::as_raw_fd).collect()
}

/// Plays `script` against a fresh end after the hello, then ends the peer's stream: the
/// messages received before the error, and the error (found at the end of the stream at
/// the latest). Checks that the stream is over after it and that no descriptor the peer
/// sent ([`marked`] ones) is left open in this process but those delivered.
async fn play(config: Config, script: impl FnOnce(&UnixStream)) -> (Vec<Carry>, Error) {
    let (_tx, mut rx, peer) = raw_pair(config);
    send_with(&peer, &hello::<Carry, Carry>(), &[]);
    script(&peer);
    peer.shutdown(std::net::Shutdown::Write)
        .expect("end the stream");
    let mut got = Vec::new();
    let err = loop {
        match guard("recv", rx.recv()).await {
            Ok(Some(msg)) => got.push(msg),
            Ok(None) => panic!("the stream ended without an error after {got:?}"),
            Err(e) => break e,
        }
    };
    assert!(matches!(rx.recv().await, Ok(None)), "the stream is over");
    drop(peer);
    // What was delivered is the test's; everything else the peer sent is closed.
    let delivered: usize = got
        .iter()
        .map(|m| match m {
            Carry::One(_) | Carry::Buf(_) | Carry::End(_) => 1,
            Carry::Files(files) => files.len(),
            Carry::Num(_) => 0,
        })
        .sum();
    let open = still_open();
    assert_eq!(
        open, delivered,
        "descriptors the peer sent still open after {err:?}, with {delivered} delivered"
    );
    (got, err)
}

fn fd_problem(err: &Error) -> &FdError {
    match err {
        Error::Fds(problem) => problem,
        other => panic!("expected Error::Fds, got {other:?}"),
    }
}

#[tokio::test]
async fn descriptors_no_frame_claims_are_an_error_once_frames_pass_the_window() {
    let _serial = SERIAL.lock().await;
    // A frame announcing none, with eight attached, then plain frames: once a frame starts
    // FD_WINDOW (4 KiB) past the read that brought them, no frame can claim them. Found
    // with the peer still open: no need to wait for the end of its stream.
    let (_tx, mut rx, peer) = raw_pair(Config::new());
    send_with(&peer, &hello::<Carry, Carry>(), &[]);
    let files = marked(8);
    send_with(&peer, &frame(&[0, 1], 0), &raws(&files));
    drop(files);
    let padding: Vec<u8> = (0..1_000).flat_map(|_| frame(&[0, 2], 0)).collect();
    send_with(&peer, &padding, &[]);
    let mut got = 0;
    let err = loop {
        match guard("recv", rx.recv()).await {
            Ok(Some(Carry::Num(_))) => got += 1,
            Ok(other) => panic!("{other:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(fd_problem(&err), &FdError::Stray { count: 8 });
    // The frames within the window were delivered: 4 KiB of 10-byte frames.
    assert!((400..=420).contains(&got), "{got} delivered");
    assert!(matches!(rx.recv().await, Ok(None)), "the stream is over");
    assert_eq!(still_open(), 0, "the strays were closed");
    drop(peer);
}

#[tokio::test]
async fn descriptors_left_unclaimed_at_the_end_of_the_stream_are_an_error() {
    let _serial = SERIAL.lock().await;
    let (_tx, mut rx, peer) = raw_pair(Config::new());
    let files = marked(3);
    send_with(
        &peer,
        &[hello::<Carry, Carry>(), frame(&[0, 5], 0)].concat(),
        &raws(&files),
    );
    drop(files);
    drop(peer);
    assert!(matches!(
        guard("recv", rx.recv()).await,
        Ok(Some(Carry::Num(5)))
    ));
    let err = guard("recv", rx.recv())
        .await
        .expect_err("stray at the end");
    assert_eq!(fd_problem(&err), &FdError::Stray { count: 3 });
    assert_eq!(still_open(), 0, "the strays were closed");
}

#[tokio::test]
async fn a_frame_whose_descriptors_are_fewer_or_more_than_announced_is_an_error() {
    let _serial = SERIAL.lock().await;
    for (announced, sent, expected) in [
        (
            2u16,
            1usize,
            FdError::Mismatch {
                announced: 2,
                arrived: 1,
            },
        ),
        // One more than announced: left for a frame that never comes.
        (1, 2, FdError::Stray { count: 1 }),
        (
            3,
            0,
            FdError::Mismatch {
                announced: 3,
                arrived: 0,
            },
        ),
    ] {
        let (got, err) = play(Config::new(), |peer| {
            let one = marked(1);
            send_with(peer, &frame(&[1, 0], 1), &raws(&one));
            let files = marked(sent);
            // `Files` with `announced` indices.
            let mut payload = vec![2, announced as u8];
            payload.extend(0..announced as u8);
            send_with(peer, &frame(&payload, announced), &raws(&files));
        })
        .await;
        // With one more sent than announced, the frame takes its one and is delivered.
        let delivered = if sent > usize::from(announced) { 2 } else { 1 };
        assert_eq!(got.len(), delivered, "{got:?}");
        assert!(matches!(got[0], Carry::One(_)), "{got:?}");
        assert_eq!(
            fd_problem(&err),
            &expected,
            "{announced} announced, {sent} sent"
        );
    }
}

#[tokio::test]
async fn a_message_that_refers_to_descriptors_its_frame_does_not_carry_is_an_error() {
    let _serial = SERIAL.lock().await;
    let cases: [(&[u8], u16, FdError); 4] = [
        // `One(5)` with one descriptor.
        (&[1, 5], 1, FdError::BadIndex { index: 5, count: 1 }),
        // `Files([0, 0])` with two.
        (&[2, 2, 0, 0], 2, FdError::Reused { index: 0 }),
        // `Num(3)` with one it does not use.
        (&[0, 3], 1, FdError::Unused { count: 1 }),
        // `Files([0, 1])` with one less than it uses, announced honestly.
        (&[2, 2, 0, 1], 1, FdError::BadIndex { index: 1, count: 1 }),
    ];
    for (payload, fds, expected) in cases {
        let (got, err) = play(Config::new(), |peer| {
            send_with(peer, &frame(&[0, 9], 0), &[]);
            let files = marked(fds.into());
            send_with(peer, &frame(payload, fds), &raws(&files));
        })
        .await;
        assert!(matches!(got[..], [Carry::Num(9)]), "{got:?}");
        assert_eq!(fd_problem(&err), &expected, "{payload:?}");
    }
}

#[tokio::test]
async fn a_frame_over_the_per_frame_maximum_is_refused() {
    let _serial = SERIAL.lock().await;
    let mut config = Config::new();
    config.set_max_fds_per_frame(4);
    // Announced over the maximum (caught from the header), and sent over it (the one
    // more is left for a frame that never comes).
    for (announced, sent, expected) in [
        (5u16, 5usize, FdError::TooManyInFrame { count: 5, max: 4 }),
        (4, 5, FdError::Stray { count: 1 }),
    ] {
        let (_, err) = play(config.clone(), |peer| {
            let files = marked(sent);
            let mut payload = vec![2, announced as u8];
            payload.extend(0..announced as u8);
            send_with(peer, &frame(&payload, announced), &raws(&files));
        })
        .await;
        assert_eq!(fd_problem(&err), &expected);
    }
    // An end that takes no descriptors at all.
    config.set_max_fds_per_frame(0);
    let (_, err) = play(config, |peer| {
        let files = marked(1);
        send_with(peer, &frame(&[1, 0], 1), &raws(&files));
    })
    .await;
    assert_eq!(
        fd_problem(&err),
        &FdError::TooManyInFrame { count: 1, max: 0 }
    );
}

#[tokio::test]
async fn descriptors_sent_far_ahead_of_their_frames_are_refused_past_max_fds() {
    let _serial = SERIAL.lock().await;
    // A frame's first half, then many sends of descriptors inside it: far more than any
    // valid stream has waiting.
    let mut config = Config::new();
    config.set_max_fds(256);
    let (_, err) = play(config, |peer| {
        let whole = frame(&[1, 0], 1);
        let files = marked(1);
        send_with(peer, &whole[..2], &raws(&files));
        let many = marked(64);
        for _ in 0..6 {
            send_with(peer, &[0], &raws(&many));
        }
    })
    .await;
    assert_eq!(
        fd_problem(&err),
        &FdError::TooManyHeld {
            count: 1 + 4 * 64,
            max: 256
        }
    );
}

#[tokio::test]
async fn shared_memory_that_is_not_fully_sealed_is_refused() {
    let _serial = SERIAL.lock().await;
    use nix::fcntl::{FcntlArg, SealFlag, fcntl};
    use std::io::Write as _;
    // A sender that keeps a way to write (here the descriptor itself; a writable mapping
    // makes the kernel refuse `F_SEAL_WRITE`, see `sys::shm`'s unit test) can seal it only
    // in part: refused, since it could still change the bytes under the reader.
    let memfd = nix::sys::memfd::memfd_create(
        c"hostile",
        nix::sys::memfd::MFdFlags::MFD_ALLOW_SEALING | nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
    )
    .expect("memfd");
    nix::unistd::ftruncate(&memfd, 4096).expect("size");
    fcntl(
        &memfd,
        FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW),
    )
    .expect("seal in part");
    let mut writer = std::fs::File::from(memfd.try_clone().expect("dup"));
    writer
        .write_all(b"still writable")
        .expect("the sender can write");
    // `Buf(index 0, len 4096)`.
    let payload = [3u8, 0, 251, 0, 16];
    let (got, err) = play(Config::new(), |peer| {
        send_with(peer, &frame(&[0, 1], 0), &[]);
        send_with(peer, &frame(&payload, 1), &[memfd.as_raw_fd()]);
    })
    .await;
    assert!(matches!(got[..], [Carry::Num(1)]), "{got:?}");
    assert!(
        matches!(fd_problem(&err), FdError::NotSealed { seals } if *seals & 0x8 == 0),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_channel_end_that_is_not_a_socket_is_refused() {
    let _serial = SERIAL.lock().await;
    let (_, err) = play(Config::new(), |peer| {
        let file = marked(1);
        send_with(peer, &frame(&[4, 0], 1), &raws(&file));
    })
    .await;
    assert_eq!(fd_problem(&err), &FdError::NotASocket);
}

#[tokio::test]
async fn a_frame_after_a_segment_that_carried_descriptors_is_not_stranded() {
    let _serial = SERIAL.lock().await;
    // The kernel ends a read after a segment that carries descriptors, so the first read
    // returns less than there is. Readiness must not be forgotten on such a short read:
    // the second frame is already there and no further event will announce it.
    let (_tx, mut rx, peer) = raw_pair(Config::new());
    send_with(&peer, &hello::<Carry, Carry>(), &[]);
    let file = marked(1);
    send_with(&peer, &frame(&[1, 0], 1), &raws(&file));
    send_with(&peer, &frame(&[0, 42], 0), &[]);
    assert!(matches!(
        guard("first", rx.recv()).await,
        Ok(Some(Carry::One(_)))
    ));
    assert!(matches!(
        guard("second", rx.recv()).await,
        Ok(Some(Carry::Num(42)))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_flooding_descriptors_at_a_busy_server_cannot_make_it_hold_more_than_max_fds() {
    let _serial = SERIAL.lock().await;
    // `serve` reads ahead while its handler is busy; the descriptors in what it reads
    // ahead stay within `Config::max_fds`, whatever the peer sends.
    struct Slow(std::sync::Arc<tokio::sync::Notify>);
    impl CarryHandler for Slow {
        async fn on_num(&mut self, _: u64) {
            self.0.notified().await;
        }
        async fn on_one(&mut self, _: aiosock::Fd) {}
        async fn on_files(&mut self, _: Vec<aiosock::Fd>) {}
        async fn on_buf(&mut self, _: aiosock::Shm) {}
        async fn on_end(&mut self, _: aiosock::Endpoint<Carry, Carry>) {}
    }
    let mut config = Config::new();
    config.set_max_fds_per_frame(8).set_max_fds(256);
    let (tx, rx, peer) = raw_pair(config);
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let serving = tokio::spawn(rx.serve(Slow(release.clone())));
    let files = marked(8);
    let flood = std::thread::spawn(move || {
        send_with(
            &peer,
            &[hello::<Carry, Carry>(), frame(&[0, 0], 0)].concat(),
            &[],
        );
        let payload = [2u8, 8, 0, 1, 2, 3, 4, 5, 6, 7];
        // Far more than the end may hold; the peer blocks once its socket is full.
        for _ in 0..2_000 {
            send_with(&peer, &frame(&payload, 8), &raws(&files));
        }
        peer
    });
    let mut most = 0;
    for _ in 0..200 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        most = most.max(still_open().saturating_sub(8));
    }
    assert!(most <= 256, "the busy server held {most} descriptors");
    release.notify_one();
    let peer = guard("flood", tokio::task::spawn_blocking(move || flood.join()))
        .await
        .expect("join")
        .expect("flood thread");
    drop(peer);
    drop(tx);
    guard("serve", serving).await.expect("task").expect("serve");
}
