//! Every message `send` accepted reaches a live peer, however the sender's runtime or
//! process ends: `block_on` returning, the runtime dropped, `shutdown_timeout`,
//! `shutdown_background`, `std::process::exit`, and a forked child's closure returning.
//! Each case runs in a real worker process, on a current-thread and a multi-thread runtime,
//! over a socket pair and (most cases) over TCP.
//! And a worker that has used up its descriptors still delivers everything.

use aiosock_tests::guard;
use aiosock_tests::workers::{BURST, Reply, Request, burst_reply, emfile_reply, worker};

const WORKER: &str = env!("CARGO_BIN_EXE_worker");

/// Receives until the end: every message of the burst ([`burst_reply`]), in order, and
/// nothing lost.
async fn receive_the_burst(mut rx: aiosock::Receiver<Reply>, case: &str) {
    let mut next = 0;
    while let Some(reply) = guard("recv", rx.recv())
        .await
        .unwrap_or_else(|e| panic!("{case}: after {next} messages: {e}"))
    {
        assert!(
            reply == burst_reply(next),
            "{case}: message {next} is not the one sent"
        );
        next += 1;
    }
    assert_eq!(next, BURST, "{case}: messages lost");
}

/// Runs the `burst` worker with `ending` and `flavor` and counts what arrives.
async fn every_message_arrives(ending: &str, flavor: &str) {
    let (here, there) = aiosock::pair::<Request, Reply>().expect("pair");
    let mut cmd = worker(WORKER, "burst");
    cmd.args([ending, flavor]);
    let mut child = aiosock::spawn(cmd, there).expect("spawn");
    let (_tx, rx) = here.into_split();
    receive_the_burst(rx, &format!("{ending}/{flavor}")).await;
    let status = guard("wait", child.wait()).await.expect("wait");
    assert!(
        status.success(),
        "{ending}/{flavor}: worker exited with {status}"
    );
}

macro_rules! cases {
    ($($name:ident: $ending:literal, $flavor:literal;)*) => {$(
        #[tokio::test]
        async fn $name() {
            every_message_arrives($ending, $flavor).await;
        }
    )*};
}

cases! {
    block_on_returning_current_thread: "return", "current";
    block_on_returning_multi_thread: "return", "multi";
    runtime_dropped_current_thread: "drop", "current";
    runtime_dropped_multi_thread: "drop", "multi";
    shutdown_timeout_current_thread: "shutdown-timeout", "current";
    shutdown_timeout_multi_thread: "shutdown-timeout", "multi";
    shutdown_background_current_thread: "shutdown-background", "current";
    shutdown_background_multi_thread: "shutdown-background", "multi";
    process_exit_current_thread: "exit", "current";
    process_exit_multi_thread: "exit", "multi";
    forked_child_returning: "fork", "current";
}

/// The same over TCP: the worker connects to this process's listener, sends the burst and
/// ends its runtime or its process. Its end's bytes go through a bridge, which must
/// forward them all (before the fix the bridge was a task of the worker's runtime, and
/// ending the runtime or the process cut off what it had not forwarded yet).
async fn every_message_arrives_over_tcp(ending: &str, flavor: &str) {
    let listener = aiosock::TcpListener::<Request, Reply>::bind_plaintext("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let mut cmd = worker(WORKER, "burst-tcp");
    cmd.args([ending, flavor, &addr]);
    let mut child = cmd.spawn().expect("spawn");
    let (end, _peer) = guard("accept", listener.accept()).await.expect("accept");
    let (_tx, rx) = end.into_split();
    receive_the_burst(rx, &format!("tcp {ending}/{flavor}")).await;
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(
        status.success(),
        "tcp {ending}/{flavor}: worker exited with {status}"
    );
}

macro_rules! tcp_cases {
    ($($name:ident: $ending:literal, $flavor:literal;)*) => {$(
        #[tokio::test]
        async fn $name() {
            every_message_arrives_over_tcp($ending, $flavor).await;
        }
    )*};
}

tcp_cases! {
    tcp_block_on_returning_current_thread: "return", "current";
    tcp_runtime_dropped_multi_thread: "drop", "multi";
    tcp_shutdown_timeout_current_thread: "shutdown-timeout", "current";
    tcp_shutdown_background_multi_thread: "shutdown-background", "multi";
    tcp_process_exit_current_thread: "exit", "current";
    tcp_process_exit_multi_thread: "exit", "multi";
}

#[tokio::test]
async fn a_worker_out_of_descriptors_still_delivers_every_message() {
    let (here, there) = aiosock::pair::<Request, Reply>().expect("pair");
    let mut child = aiosock::spawn(worker(WORKER, "emfile"), there).expect("spawn");
    let (_tx, mut rx) = here.into_split();
    let mut next = 0;
    while let Some(reply) = guard("recv", rx.recv())
        .await
        .unwrap_or_else(|e| panic!("after {next} messages: {e}"))
    {
        assert_eq!(reply, emfile_reply(next));
        next += 1;
        // Read slowly now and then, so that the worker's socket fills up again and again.
        if next % 2000 == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    assert_eq!(next, BURST, "messages lost");
    let status = guard("wait", child.wait()).await.expect("wait");
    assert!(status.success(), "worker exited with {status}");
}

#[tokio::test]
async fn a_child_of_a_plain_fork_exiting_leaves_the_parents_connection_alone() {
    let (here, there) = aiosock::pair::<Request, Reply>().expect("pair");
    let mut child = aiosock::spawn(worker(WORKER, "plain-fork"), there).expect("spawn");
    let (_tx, mut rx) = here.into_split();
    assert_eq!(
        guard("recv", rx.recv()).await.expect("recv"),
        Some(Reply::Item(1))
    );
    assert_eq!(guard("end", rx.recv()).await.expect("recv"), None);
    let status = guard("wait", child.wait()).await.expect("wait");
    assert!(status.success(), "worker exited with {status}");
}

/// `std::process::exit` on one thread while a task on another keeps sending: every send
/// that was accepted arrives whole and in order. Before the fix the exit hook handed to
/// the linger only the ends that held bytes at the moment it looked, so sends accepted
/// after that were cut off when the process ended (a truncated frame).
#[tokio::test]
async fn exiting_while_another_thread_sends_loses_no_accepted_message() {
    exit_racing(false).await;
}

/// The same with an end made (the endpoint split) after the exit hook began. Before the
/// fix such an end was not known to the hook at all, and its sends were cut off too.
#[tokio::test]
async fn an_end_made_while_the_process_exits_loses_no_accepted_message() {
    exit_racing(true).await;
}

/// Runs the `exit-racing` worker three times and checks what arrives against what it
/// printed as accepted.
async fn exit_racing(late: bool) {
    use aiosock_tests::workers::RACING_SIZE;
    use tokio::io::AsyncReadExt;
    for run in 0..3 {
        let (here, there) = aiosock::pair::<Request, Reply>().expect("pair");
        let mut cmd = worker(WORKER, "exit-racing");
        if late {
            cmd.arg("late");
        }
        cmd.stdout(std::process::Stdio::piped());
        let mut child = aiosock::spawn(cmd, there).expect("spawn");
        let stdout = child.take_stdout().expect("stdout");
        let mut stdout = tokio::process::ChildStdout::from_std(stdout).expect("stdout");
        let printed = tokio::spawn(async move {
            let mut text = String::new();
            stdout.read_to_string(&mut text).await.map(|_| text)
        });
        let (_tx, mut rx) = here.into_split();
        let mut next = 0u64;
        while let Some(reply) = guard("recv", rx.recv())
            .await
            .unwrap_or_else(|e| panic!("run {run}: after {next} messages: {e}"))
        {
            let expected = Reply::Echo {
                id: next,
                data: vec![next as u8; RACING_SIZE],
            };
            assert!(
                reply == expected,
                "run {run}: message {next} is not as sent"
            );
            next += 1;
        }
        let status = guard("wait", child.wait()).await.expect("wait");
        assert!(status.success(), "run {run}: worker exited with {status}");
        let printed = printed.await.expect("join").expect("read stdout");
        let accepted = printed.lines().count() as u64;
        assert!(
            next >= accepted,
            "run {run}: {accepted} sends were accepted, {next} messages arrived"
        );
        if !late {
            assert!(accepted > 0, "run {run}: the worker printed nothing");
        }
    }
}
