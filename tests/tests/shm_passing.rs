//! Sealed shared memory in messages between real processes: the `resources` worker reads
//! buffers the test built in place, and nothing of them stays behind.

use aiosock::{Shm, ShmBuf};
use aiosock_tests::guard;
use aiosock_tests::workers::{Resources, ResourcesClient, Returned, checksum, shm_pattern, worker};

const EXE: &str = env!("CARGO_BIN_EXE_worker");

fn start() -> (aiosock::Child, ResourcesClient) {
    let (here, there) = aiosock::pair::<Resources, Returned>().expect("pair");
    let child = aiosock::spawn(worker(EXE, "resources"), there).expect("spawn worker");
    let (tx, rx) = here.into_split();
    tokio::spawn(rx.serve(()));
    (child, ResourcesClient::new(tx))
}

/// Memfds of aiosock's shared-memory buffers this process holds open.
fn shm_fds_open() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("fd dir")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|target| target.to_string_lossy().contains("memfd:aiosock-shm"))
        .count()
}

fn filled(seq: u64, len: usize) -> Shm {
    let mut buf = ShmBuf::new(len).expect("shm");
    buf.copy_from_slice(&shm_pattern(seq, len));
    buf.freeze().expect("freeze")
}

#[tokio::test]
async fn a_worker_reads_a_buffer_built_in_place_without_a_copy_through_the_socket() {
    let (_child, client) = start();
    let len = 4 << 20;
    let shm = filled(7, len);
    let expected = checksum(&shm);
    let (got_len, got_sum) = guard("sum", client.sum(shm)).await.expect("call");
    assert_eq!((got_len, got_sum), (len as u64, expected));
    // An empty buffer travels too.
    let empty = ShmBuf::new(0).expect("shm").freeze().expect("freeze");
    assert_eq!(
        guard("sum", client.sum(empty)).await.expect("call"),
        (0, checksum(&[]))
    );
}

#[tokio::test]
async fn a_stream_of_buffers_arrives_whole_and_in_order_and_leaves_no_memfd_open() {
    let (_child, client) = start();
    let mut expected = 0u64;
    for seq in 0..64 {
        let shm = filled(seq, 256 * 1024 + seq as usize * 1000);
        expected = expected.wrapping_add(checksum(&shm));
        client.take(shm).await.expect("send");
    }
    let (count, sum) = guard("taken", client.taken()).await.expect("call");
    assert_eq!((count, sum), (64, expected));
    // The frames are in the kernel or received, so this end's duplicates are closed; the
    // buffers themselves were dropped after sending.
    assert_eq!(shm_fds_open(), 0, "memfds left open in the sender");
}

#[tokio::test]
async fn a_buffer_keeps_its_bytes_after_its_sender_dropped_every_handle() {
    let (_child, client) = start();
    let shm = filled(3, 1 << 20);
    let expected = checksum(&shm);
    let call = client.sum(shm.clone());
    drop(shm);
    assert_eq!(guard("sum", call).await.expect("call"), (1 << 20, expected));
}
