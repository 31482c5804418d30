//! Fuzzes the receiver's handling of descriptors: frames of a protocol whose messages hold
//! descriptors, channel ends and shared buffers, after a valid hello, with batches of
//! descriptors arriving at offsets the input picks. Whatever comes, no panic, and every
//! descriptor that is not in a message returned is closed when decoding ends: a leak is a
//! crash here, not only a panic.

#![no_main]

use std::os::fd::OwnedFd;

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
    // Byte 0: the chunk size. Byte 1: how many batches (up to 7), then 3 bytes each: the
    // offset into the frames (u16 LE) and the count (up to 15). The rest: the frames.
    let [chunk, n, rest @ ..] = data else {
        return;
    };
    let n = usize::from(n % 8);
    let Some((spec, frames)) = rest.split_at_checked(3 * n) else {
        return;
    };
    let hello = hello_of::<Carry>();
    let mut batches: Vec<(usize, usize)> = spec
        .chunks_exact(3)
        .map(|b| {
            let at = usize::from(u16::from_le_bytes([b[0], b[1]]));
            (hello.len() + at, usize::from(b[2] % 16))
        })
        .collect();
    batches.sort_unstable();
    let stream = [hello, frames.to_vec()].concat();
    let base = {
        let _ = marked();
        open_copies()
    };
    let mut make = || marked().try_clone().ok().map(OwnedFd::from);
    let (msgs, _err) = aiosock::__private::wire::decode_stream_with_fds::<Carry>(
        &stream,
        usize::from(*chunk) + 1,
        1 << 16,
        &batches,
        &mut make,
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
