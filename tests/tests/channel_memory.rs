//! What an idle end costs: ends that were used (a message each way) and then left idle
//! keep at most 8 KiB of heap each, counted by a counting allocator, so that a process
//! can hold many connections. Buffers an idle end does not need go back.

use aiosock::__private::{CountingAlloc, retained_by};
use aiosock_tests::{Traffic, local_runtime};

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// The most heap one idle end keeps.
const PER_IDLE_END: usize = 8 * 1024;

#[test]
fn an_idle_end_keeps_at_most_8_kib() {
    const PAIRS: usize = 200;
    let rt = local_runtime();
    // Warm up the runtime's own structures (timer wheel, task slabs) outside the count.
    let warm = rt.block_on(async { aiosock_tests::split_pair::<Traffic>() });
    drop(warm);
    let (ends, kept) = retained_by(|| {
        rt.block_on(async {
            let mut ends = Vec::new();
            for i in 0..PAIRS as u64 {
                let ((a_tx, mut a_rx), (b_tx, mut b_rx)) = aiosock_tests::split_pair::<Traffic>();
                a_tx.send(aiosock_tests::text(i)).await.expect("send");
                b_tx.send(Traffic::Num(i)).await.expect("send");
                assert_eq!(
                    b_rx.recv().await.expect("recv"),
                    Some(aiosock_tests::text(i))
                );
                assert_eq!(a_rx.recv().await.expect("recv"), Some(Traffic::Num(i)));
                ends.push(((a_tx, a_rx), (b_tx, b_rx)));
            }
            // Let every writer task run to idle.
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            ends
        })
    });
    let per_end = kept / (2 * PAIRS);
    println!(
        "{kept} bytes kept by {} idle ends: {per_end} each",
        2 * PAIRS
    );
    assert!(
        per_end <= PER_IDLE_END,
        "an idle end keeps {per_end} bytes, over {PER_IDLE_END}"
    );
    drop(ends);
}
