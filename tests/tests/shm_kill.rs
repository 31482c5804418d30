//! A worker killed (`kill -9`) in the middle of a stream of shared-memory buffers: every
//! memfd dies with its last reference, so the system's shared memory returns to where it
//! was. (A file of its own: it reads the machine-wide `Shmem` figure.)

use aiosock::ShmBuf;
use aiosock_tests::guard;
use aiosock_tests::workers::{Resources, ResourcesClient, Returned, until_gone, worker};

const EXE: &str = env!("CARGO_BIN_EXE_worker");

/// `Shmem` in `/proc/meminfo` (memfds, tmpfs, shared mappings), in KiB.
fn shmem_kib() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    info.lines()
        .find_map(|line| line.strip_prefix("Shmem:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Shmem in /proc/meminfo")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_receiver_mid_stream_frees_every_buffer() {
    const BUFFERS: usize = 48;
    const LEN: usize = 4 << 20; // 192 MiB in all
    let before = shmem_kib();
    let (here, there) = aiosock::pair::<Resources, Returned>().expect("pair");
    let mut child = aiosock::spawn(worker(EXE, "resources"), there).expect("spawn worker");
    let pid = child.id();
    let (tx, rx) = here.into_split();
    let serving = tokio::spawn(rx.serve(()));
    let client = ResourcesClient::new(tx);
    let sending = tokio::spawn({
        let client = client.clone();
        async move {
            for seq in 0..BUFFERS {
                let mut buf = ShmBuf::new(LEN).expect("shm");
                buf.fill(seq as u8);
                if client.take(buf.freeze().expect("freeze")).await.is_err() {
                    break;
                }
            }
        }
    });
    // Some buffers are in flight, some mapped by the worker, when it dies.
    guard("a few taken", async {
        while client.taken().await.expect("call").0 < 4 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .await;
    child.kill().await.expect("kill -9");
    guard("gone", until_gone(pid)).await;
    guard("sender", sending).await.expect("sender task");
    drop(client);
    let _ = guard("serve", serving).await;
    // Every buffer's memory goes once no process holds it and no frame carries it.
    let settled = guard("shared memory freed", async {
        loop {
            let now = shmem_kib();
            if now <= before + 16 * 1024 {
                return now;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        settled <= before + 16 * 1024,
        "{settled} KiB, {before} before"
    );
}
