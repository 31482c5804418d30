//! Descriptors in messages between real processes: the `resources` worker reads files the
//! test opened, sends descriptors back, and counts its own.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::process::Stdio;

use aiosock::{Fd, InvalidMessage, SendError};
use aiosock_tests::workers::{Chat, Resources, ResourcesClient, Returned, until_gone, worker};
use aiosock_tests::{fd_count_settles_at, guard, open_fd_count};

const EXE: &str = env!("CARGO_BIN_EXE_worker");

fn start(mode: &str) -> (aiosock::Child, ResourcesClient, aiosock::Receiver<Returned>) {
    let (here, there) = aiosock::pair::<Resources, Returned>().expect("pair");
    let child = aiosock::spawn(worker(EXE, mode), there).expect("spawn worker");
    let (tx, rx) = here.into_split();
    (child, ResourcesClient::new(tx), rx)
}

/// A file holding `text`, open for reading at its start, whose path is already gone: only
/// its descriptor reaches it.
fn unlinked_file(text: &str) -> File {
    let path = std::env::temp_dir().join(format!(
        "aiosock-fds-{}-{}",
        std::process::id(),
        aiosock_tests::Rng::new(text.len() as u64).next_u64()
    ));
    let mut file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("create");
    std::fs::remove_file(&path).expect("unlink");
    file.write_all(text.as_bytes()).expect("write");
    file.rewind().expect("rewind");
    file
}

/// The device and inode a descriptor points at.
fn identity(fd: impl AsFd) -> (u64, u64) {
    let st = nix::sys::stat::fstat(fd.as_fd()).expect("fstat");
    (st.st_dev, st.st_ino)
}

#[tokio::test]
async fn a_worker_reads_a_file_that_only_its_parent_could_open() {
    let (_child, client, rx) = start("resources");
    tokio::spawn(rx.serve(()));
    let text = "opened by the parent, read by the worker";
    let read = guard("read", client.read_file(unlinked_file(text).into()))
        .await
        .expect("call");
    assert_eq!(read.as_deref(), Ok(text));
}

#[tokio::test]
async fn descriptors_pass_across_fork_too() {
    let out = tokio::process::Command::new(EXE)
        .arg("fork-resources")
        .output();
    let out = guard("fork-resources", out).await.expect("run the worker");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("forked child read the file"),
        "{}: {stdout} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_descriptor_arrives_with_its_own_message_in_order_under_load() {
    // Eight tasks send 250 messages each, every seventh with 200 KiB of ballast (so that
    // writes are partial and batches mix sizes). Each carries the read end of a pipe that
    // holds its own tag; the worker sends every descriptor back with the tag it came with.
    const SENDERS: u64 = 8;
    const EACH: u64 = 250;
    let (_child, client, mut rx) = start("resources");
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let client = client.clone();
            tokio::spawn(async move {
                for seq in 0..EACH {
                    let tag = sender << 32 | seq;
                    let (reader, mut writer) = std::io::pipe().expect("pipe");
                    writer.write_all(&tag.to_le_bytes()).expect("fill the pipe");
                    drop(writer);
                    let pad = if seq % 7 == 0 {
                        vec![seq as u8; 200 * 1024]
                    } else {
                        Vec::new()
                    };
                    client.echo(tag, reader.into(), pad).await.expect("send");
                }
            })
        })
        .collect();
    let mut next = vec![0u64; SENDERS as usize];
    for _ in 0..SENDERS * EACH {
        let Some(Returned::Echo { tag, fd }) = guard("echo", rx.recv()).await.expect("recv") else {
            panic!("the worker closed early");
        };
        let (sender, seq) = (tag >> 32, tag & 0xffff_ffff);
        assert_eq!(seq, next[sender as usize], "sender {sender}'s order");
        next[sender as usize] += 1;
        let mut inside = Vec::new();
        std::io::PipeReader::from(fd)
            .read_to_end(&mut inside)
            .expect("read the pipe");
        assert_eq!(
            inside,
            tag.to_le_bytes(),
            "the descriptor of message {tag:#x}"
        );
    }
    for task in senders {
        guard("sender", task).await.expect("sender task");
    }
}

#[tokio::test]
async fn ten_thousand_descriptors_through_a_worker_and_back_leave_no_descriptor_open() {
    let (_child, client, mut rx) = start("resources");
    let file = File::open("/dev/null").expect("open");
    let mut round = async |tag: u64| {
        client
            .echo(tag, Fd::new(file.try_clone().expect("dup")), Vec::new())
            .await
            .expect("send");
        match guard("echo", rx.recv()).await.expect("recv") {
            Some(Returned::Echo { tag: back, fd }) => {
                assert_eq!((back, identity(&fd)), (tag, identity(&file)));
            }
            None => panic!("the worker closed"),
        }
    };
    round(0).await;
    let baseline = open_fd_count();
    for tag in 1..=10_000 {
        round(tag).await;
    }
    fd_count_settles_at(baseline, "after 10,000 descriptors").await;
}

/// How many descriptors this process holds of the memfd named `name` (each test names
/// its own: other tests open descriptors meanwhile).
fn copies_of(name: &str) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|t| t.to_string_lossy().contains(name))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_descriptors_holds_at_most_max_fds_of_them_open_while_queued() {
    // Each message's descriptor is duplicated and held until the kernel takes it; the
    // outgoing queue is bounded in descriptors too (Config::max_fds), so a burst of 20,000
    // never holds 20,000 open, whatever the process's descriptor limit.
    let (here, there) = aiosock::pair::<Resources, Returned>().expect("pair");
    let mut config = aiosock::Config::new();
    config.set_max_fds(256);
    let _child = aiosock::spawn(worker(EXE, "resources"), there).expect("spawn worker");
    let (tx, rx) = here.with_config(config).into_split();
    tokio::spawn(rx.serve(()));
    let client = ResourcesClient::new(tx);
    guard("warm up", client.open_fds()).await.expect("call");
    // Copies of one memfd named for this test: other tests open descriptors meanwhile.
    let memfd =
        nix::sys::memfd::memfd_create(c"aiosock-burst", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .expect("memfd");
    let file = File::from(memfd);
    let copies = || copies_of("aiosock-burst");
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let peak = std::thread::spawn({
        let watching = watching.clone();
        move || {
            let mut peak = 0;
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(copies());
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            peak
        }
    });
    for _ in 0..20_000 {
        let fd = Fd::new(file.try_clone().expect("dup"));
        client.many(vec![fd]).await.expect("send");
    }
    guard("flush", client.flush()).await.expect("flush");
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak = peak.join().expect("watcher");
    // The queue's 256, the batch being written (as many again, plus one message), the
    // message being encoded and its duplicate, and the memfd itself.
    assert!(peak <= 2 * 256 + 4, "{peak} copies open at the peak");
    let after = guard("count", client.open_fds()).await.expect("call");
    assert!(after < 64, "the worker holds {after}");
}

/// The `Sink` keeps the same bound as `send`: its `poll_ready` waits while the queue holds
/// `max_fds` descriptors, so a stream of messages with descriptors forwarded to a peer
/// that never reads holds at most about twice that many open (the queue, and the batch
/// being written), as `send` does. Before the fix it waited for bytes only, and the queue
/// took 256 KiB of such frames: 9,361 duplicates open here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_of_descriptors_holds_at_most_max_fds_of_them_queued() {
    use futures_sink::Sink;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicU64, Ordering};
    let (here, there) = aiosock::pair::<Resources, Returned>().expect("pair");
    // A peer that never reads: the socket fills, then the queue.
    let peer = aiosock_tests::raw_peer(there);
    let mut config = aiosock::Config::new();
    config.set_max_fds(256);
    let (tx, _rx) = here.with_config(config).into_split();
    let memfd =
        nix::sys::memfd::memfd_create(c"aiosock-sink", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .expect("memfd");
    let file = File::from(memfd);
    let copies = || copies_of("aiosock-sink");
    let sent = std::sync::Arc::new(AtomicU64::new(0));
    let sending = tokio::spawn({
        let sent = sent.clone();
        let file = file.try_clone().expect("dup");
        async move {
            let mut sink = tx;
            for _ in 0..100_000 {
                std::future::poll_fn(|cx| Pin::new(&mut sink).poll_ready(cx))
                    .await
                    .expect("ready");
                let fd = Fd::new(file.try_clone().expect("dup"));
                Pin::new(&mut sink)
                    .start_send(Resources::Many(vec![fd]))
                    .expect("start_send");
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    // Until the sends stop: the socket and the queue are full.
    let mut last = 0;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let now = sent.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    let held = copies();
    assert!(
        last > 1_000,
        "only {last} sent: the test did not fill the socket"
    );
    // As for `send`: the queue's 256, the batch being written (as many again, plus one
    // message), the message after `poll_ready`, this test's copy for the task, and the
    // memfd itself.
    assert!(held <= 2 * 256 + 4, "{held} copies open with {last} sent");
    sending.abort();
    drop(peer);
}

#[tokio::test]
async fn the_worker_holds_no_descriptor_after_passing_thousands() {
    let (_child, client, rx) = start("resources");
    tokio::spawn(rx.serve(()));
    let file = File::open("/dev/null").expect("open");
    let before = guard("count", client.open_fds()).await.expect("call");
    for tag in 0..2_000 {
        let fds = (0..4)
            .map(|_| Fd::new(file.try_clone().expect("dup")))
            .collect();
        if tag % 2 == 0 {
            client.many(fds).await.expect("send");
        } else {
            let one = Fd::new(file.try_clone().expect("dup"));
            client.echo(tag, one, Vec::new()).await.expect("send");
            drop(fds);
        }
    }
    let after = guard("count", client.open_fds()).await.expect("call");
    assert_eq!(after, before, "descriptors open in the worker");
}

#[tokio::test]
async fn a_message_whose_peer_is_gone_comes_back_with_its_descriptors() {
    let (mut child, client, rx) = start("resources");
    tokio::spawn(rx.serve(()));
    guard("warm up", client.open_fds()).await.expect("call");
    let pid = child.id();
    child.kill().await.expect("kill -9");
    guard("gone", until_gone(pid)).await;
    let file = File::open("/dev/null").expect("open");
    let id = identity(&file);
    let mut msg = Resources::Echo {
        tag: 1,
        fd: Fd::from(file),
        pad: Vec::new(),
    };
    let back = loop {
        match guard("send", client.send(msg)).await {
            Ok(()) => {
                // Accepted before the end learnt the peer was gone: make a new one.
                msg = Resources::Echo {
                    tag: 1,
                    fd: Fd::from(File::open("/dev/null").expect("open")),
                    pad: Vec::new(),
                };
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Err(SendError::Closed(back)) => break back,
            Err(e) => panic!("{e}"),
        }
    };
    let Resources::Echo { fd, .. } = back else {
        panic!("another message came back")
    };
    let (dev, ino) = identity(&fd);
    let (nul_dev, nul_ino) = identity(File::open("/dev/null").expect("open"));
    assert!(
        (dev, ino) == id || (dev, ino) == (nul_dev, nul_ino),
        "the descriptor came back open"
    );
}

#[tokio::test]
async fn a_receiver_out_of_descriptors_fails_with_truncated_and_closes_what_came() {
    let (here, there) = aiosock::pair::<Resources, Returned>().expect("pair");
    let mut cmd = worker(EXE, "fds-rlimit");
    cmd.stdout(Stdio::piped());
    let mut child = aiosock::spawn(cmd, there).expect("spawn");
    let mut stdout = child.take_stdout().expect("stdout");
    let (tx, _rx) = here.into_split();
    let file = File::open("/dev/null").expect("open");
    let fds = |n: usize| -> Vec<Fd> {
        (0..n)
            .map(|_| Fd::new(file.try_clone().expect("dup")))
            .collect()
    };
    tx.send(Resources::Many(fds(1))).await.expect("send");
    // In the kernel before the next: its own system call, so the worker's first read
    // takes the first message's descriptor only.
    guard("flush", tx.flush()).await.expect("flush");
    tx.send(Resources::Many(fds(16))).await.expect("send");
    let status = guard("exit", child.wait()).await.expect("wait");
    let mut out = String::new();
    stdout.read_to_string(&mut out).expect("read stdout");
    assert!(
        status.success() && out.contains("truncated closed"),
        "{status}: {out}"
    );
}

/// A sender that is not root: once its user has more descriptors in flight than its
/// descriptor limit, the kernel refuses more (`ETOOMANYREFS`) until the receiver takes
/// some. That is backpressure, not an error: every accepted message still arrives, in
/// order (before the fix, the end closed at the first refusal: 514 of 3,000 arrived, the
/// rest lost without a word). The receiver starts reading after the quota is full.
#[tokio::test]
async fn a_sender_over_its_users_descriptors_in_flight_waits_and_loses_nothing() {
    const N: u64 = 3_000;
    let (here, there) = aiosock::pair::<Resources, Returned>().expect("pair");
    let mut cmd = worker(EXE, "fds-unprivileged");
    cmd.arg(N.to_string()).stdout(Stdio::piped());
    let mut child = aiosock::spawn(cmd, there).expect("spawn");
    let mut stdout = child.take_stdout().expect("stdout");
    let (_tx, mut rx) = here.into_split();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut next = 0;
    while let Some(msg) = guard("recv", rx.recv()).await.expect("recv") {
        match msg {
            Returned::Echo { tag, fd } => {
                assert_eq!(tag, next, "in order");
                assert!(File::from(fd.into_owned_fd()).metadata().is_ok());
                next += 1;
            }
        }
    }
    assert_eq!(next, N, "every accepted message arrives");
    let status = guard("exit", child.wait()).await.expect("wait");
    let mut out = String::new();
    stdout.read_to_string(&mut out).expect("read stdout");
    assert!(status.success(), "{status}: {out}");
    if nix::unistd::Uid::effective().is_root() {
        assert!(out.contains("unprivileged"), "the worker kept root: {out}");
    }
}

/// An end over TCP lives in this process's bridge: it cannot be handed on in a message
/// (the receiver would get the bridge's socket pair without the bridge's knowledge, and
/// descriptors it sent would be dropped). The send is refused with the message back.
#[tokio::test]
async fn an_end_over_tcp_cannot_travel_in_a_message() {
    let listener = aiosock::TcpListener::<Chat, Chat>::bind_plaintext("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (connected, accepted) = tokio::join!(
        aiosock::connect_plaintext_tcp::<Chat, Chat>(addr),
        listener.accept()
    );
    let (connected, _accepted) = (connected.expect("connect"), accepted.expect("accept"));
    let (here, _there) = aiosock::pair::<Resources, Returned>().expect("pair");
    let (tx, _rx) = here.into_split();
    let msg = Resources::Join {
        end: connected,
        speak: false,
        lines: 0,
    };
    match tx.send(msg).await {
        Err(SendError::Invalid(Resources::Join { end, .. }, InvalidMessage::Encode(e))) => {
            let why = std::error::Error::source(&e).map(ToString::to_string);
            assert!(
                why.as_deref().is_some_and(|w| w.contains("TCP")),
                "{e}: {why:?}"
            );
            drop(end);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_end_over_tcp_refuses_descriptors_at_send() {
    let listener = aiosock::TcpListener::<Returned, Resources>::bind_plaintext("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepting = tokio::spawn(async move { listener.accept().await });
    let end = aiosock::connect_plaintext_tcp::<Resources, Returned>(addr)
        .await
        .expect("connect");
    let _server = guard("accept", accepting)
        .await
        .expect("task")
        .expect("accept");
    let (tx, _rx) = end.into_split();
    let file = File::open("/dev/null").expect("open");
    let id = identity(&file);
    match tx.send(Resources::Many(vec![Fd::from(file)])).await {
        Err(SendError::Invalid(Resources::Many(fds), InvalidMessage::FdsNotCarried)) => {
            assert_eq!(identity(&fds[0]), id, "the message came back whole");
        }
        other => panic!("{other:?}"),
    }
    // Messages without descriptors still go.
    tx.send(Resources::Many(Vec::new())).await.expect("send");
}
