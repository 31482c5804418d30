//! A receiving end that is out of descriptors when a frame's descriptors arrive: the
//! kernel installs those it has room for, drops the rest and says so (`MSG_CTRUNC`). The
//! end reports `FdError::Truncated` after the messages before it, and closes the
//! descriptors that did arrive (counted in `/proc/self/fd`). A real socket and a real
//! `RLIMIT_NOFILE`, no simulated flag. Alone in its test binary: it fills the process's
//! descriptor table.

use std::fs::File;

use aiosock::{Config, Error, FdError};
use aiosock_tests::{frame_header, guard, hello, raw_peer, send_with_fds};

#[aiosock::protocol]
#[derive(Debug)]
enum Carry {
    Num(u64),
    Files(Vec<aiosock::Fd>),
}

/// A frame announcing `fds` descriptors.
fn frame(payload: &[u8], fds: u16) -> Vec<u8> {
    [frame_header(payload.len() as u32, fds, 0), payload.to_vec()].concat()
}

/// How many descriptors of the memfd named `name` this process holds.
fn open_copies(name: &str) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("fd dir")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|target| target.to_string_lossy().contains(name))
        .count()
}

#[tokio::test(flavor = "current_thread")]
async fn descriptors_the_kernel_could_not_install_are_an_error_and_those_that_came_are_closed() {
    // Room for this many of the frame's descriptors.
    const ROOM: usize = 3;
    const SENT: usize = 8;
    let name = format!("aiosock-ctrunc-{}", std::process::id());
    let (ours, theirs) = aiosock::pair::<Carry, Carry>().expect("pair");
    let (_tx, mut rx) = ours.with_config(Config::new()).into_split();
    let peer = raw_peer(theirs);
    send_with_fds(&peer, &hello::<Carry, Carry>(), &[]);
    // A message before the frame with descriptors: delivered.
    send_with_fds(&peer, &frame(&[0, 9], 0), &[]);
    // The first message is read while the process has descriptors to spare (and the
    // end reads all there is: the frame with descriptors is sent after it).
    let first = guard("recv", rx.recv()).await;
    assert!(matches!(first, Ok(Some(Carry::Num(9)))), "{first:?}");
    let c_name = std::ffi::CString::new(name.clone()).expect("name");
    let memfd =
        nix::sys::memfd::memfd_create(c_name.as_c_str(), nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .expect("memfd");
    let file = File::from(memfd);
    let mut copies: Vec<File> = (1..SENT).map(|_| file.try_clone().expect("dup")).collect();
    copies.push(file);
    let raw: Vec<_> = copies.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();

    // Every descriptor under a lowered limit taken, then ROOM of them given back.
    let full = aiosock_tests::fill_descriptor_table(ROOM);
    // `Files` with SENT indices, announced honestly; then a message the stream never
    // delivers (it ends at the error).
    let mut payload = vec![1, SENT as u8];
    payload.extend(0..SENT as u8);
    send_with_fds(&peer, &frame(&payload, SENT as u16), &raw);
    send_with_fds(&peer, &frame(&[0, 10], 0), &[]);
    peer.shutdown(std::net::Shutdown::Write)
        .expect("end the stream");
    // The sender's copies stay open until the frame is read, so that closing them gives
    // the receiver no room.
    let got = guard("recv", rx.recv()).await;
    drop(copies);
    drop(full);

    match got {
        Err(Error::Fds(FdError::Truncated)) => {}
        other => panic!("expected FdError::Truncated, got {other:?}"),
    }
    assert!(
        matches!(rx.recv().await, Ok(None)),
        "the stream is over after the error"
    );
    assert_eq!(
        open_copies(&name),
        0,
        "the {ROOM} descriptors the kernel installed are closed"
    );
    drop(peer);
}
