//! Fuzzes the receiver's handling of descriptors: frames of a protocol whose messages hold
//! descriptors, channel ends and shared buffers, after a valid hello, with batches of
//! descriptors arriving at offsets the input picks (the hello's bytes included), some
//! flagged as cut short by the kernel (`MSG_CTRUNC`), under per-frame and per-receiver
//! limits the input picks too. Whatever comes, no panic, and these invariants, each a
//! crash when broken:
//!
//! - every descriptor that is not in a message returned is closed when decoding ends;
//! - no message holds more descriptors than the per-frame limit;
//! - a read the kernel cut short ends the stream with an error, never with a clean end.

#![no_main]

use std::os::fd::OwnedFd;

use aiosock::__private::wire::{
    DEFAULT_MAX_FDS, DEFAULT_MAX_FDS_PER_FRAME, FdBatch, FdLimits, decode_stream_with_fds,
};
use aiosock_fuzz::{Carry, hello_of};
use libfuzzer_sys::fuzz_target;

/// A memfd only this target makes, so that its open copies can be counted.
fn marked() -> &'static std::fs::File {
    static MARKED: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
    MARKED.get_or_init(|| {
        let name = c"aiosock-fuzz-fds";
        let fd = nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .expect("memfd");
        std::fs::File::from(fd)
    })
}

/// Copies of the marked memfd open in this process, the original included.
fn open_copies() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("fd dir")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|t| t.to_string_lossy().contains("aiosock-fuzz-fds"))
        .count()
}

fn held(msg: &Carry) -> usize {
    match msg {
        Carry::Num(_) => 0,
        Carry::One(_) | Carry::End(_) | Carry::Buf(_) => 1,
        Carry::Files(files) => files.len(),
        Carry::Maybe(fd, _) => usize::from(fd.is_some()),
    }
}

fuzz_target!(|data: &[u8]| {
    // Byte 0: the chunk size. Byte 1: how many batches (up to 7). Byte 2: the per-frame
    // limit (below 0x80: that value modulo 16; else the default). Byte 3: the receiver's
    // limit (below 0x80: modulo 32; else the default). Then 3 bytes per batch: the stream
    // offset (u16 LE, counted from the hello's first byte) and the count (low 4 bits),
    // truncated if the top bit is set. The rest: the frames, after a valid hello.
    let [chunk, n, per_frame, max_fds, rest @ ..] = data else {
        return;
    };
    let n = usize::from(n % 8);
    let Some((spec, frames)) = rest.split_at_checked(3 * n) else {
        return;
    };
    let limits = FdLimits {
        max_frame_len: 1 << 16,
        max_fds_per_frame: if *per_frame < 0x80 {
            usize::from(per_frame % 16)
        } else {
            DEFAULT_MAX_FDS_PER_FRAME
        },
        max_fds: if *max_fds < 0x80 {
            usize::from(max_fds % 32)
        } else {
            DEFAULT_MAX_FDS
        },
    };
    let mut batches: Vec<FdBatch> = spec
        .chunks_exact(3)
        .map(|b| FdBatch {
            at: usize::from(u16::from_le_bytes([b[0], b[1]])),
            count: usize::from(b[2] & 0x0f),
            truncated: b[2] & 0x80 != 0,
        })
        .collect();
    batches.sort_unstable_by_key(|b| b.at);
    let stream = [hello_of::<Carry>(), frames.to_vec()].concat();
    let base = {
        let _ = marked();
        open_copies()
    };
    let mut make = || marked().try_clone().ok().map(OwnedFd::from);
    let (msgs, err, cut) = decode_stream_with_fds::<Carry>(
        &stream,
        usize::from(*chunk) + 1,
        limits,
        &batches,
        &mut make,
    );
    for msg in &msgs {
        assert!(
            held(msg) <= limits.max_fds_per_frame,
            "a message holds {} descriptors, over the limit of {}",
            held(msg),
            limits.max_fds_per_frame
        );
    }
    assert!(
        !cut || err.is_some(),
        "a read the kernel cut short ended the stream cleanly"
    );
    let delivered: usize = msgs.iter().map(held).sum();
    // Channel ends and buffers delivered are not copies of the marked memfd in every case
    // (a memfd is refused as a channel end), so count only upward bounds.
    assert!(
        open_copies() <= base + delivered,
        "{} copies open, {base} before, {delivered} delivered",
        open_copies()
    );
    drop(msgs);
    assert_eq!(open_copies(), base, "descriptors leaked");
});
