//! A variant's own `Fd` fields are passed to the kernel as they are by `send` and
//! `try_send`, not duplicated first: a process that has no descriptor to spare can still
//! send them, while an `Fd` inside another type (which is duplicated) cannot. The peer
//! gets the same open file either way. A real socket and a real `RLIMIT_NOFILE`. Alone in
//! its test binary: it fills the process's descriptor table.

use std::fs::File;
use std::io::{Read, Seek, Write};

use aiosock::{Fd, InvalidMessage, TrySendError};
use aiosock_tests::guard;

#[aiosock::protocol]
#[derive(Debug)]
enum Carry {
    Warm(u64),
    Direct { file: Fd, n: u64 },
    Nested { file: Option<Fd> },
}

/// A file of its own holding `text`, at its start.
fn file_with(text: &str) -> File {
    let name = std::ffi::CString::new("aiosock-lent").expect("name");
    let memfd =
        nix::sys::memfd::memfd_create(name.as_c_str(), nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .expect("memfd");
    let mut file = File::from(memfd);
    file.write_all(text.as_bytes()).expect("write");
    file.rewind().expect("rewind");
    file
}

fn text_of(fd: Fd) -> String {
    let mut text = String::new();
    File::from(fd.into_owned_fd())
        .read_to_string(&mut text)
        .expect("read");
    text
}

#[tokio::test(flavor = "current_thread")]
async fn a_process_out_of_descriptors_still_sends_a_variants_own_descriptors() {
    let (ours, theirs) = aiosock::pair::<Carry, Carry>().expect("pair");
    let (tx, _rx) = ours.into_split();
    let (_peer_tx, mut peer_rx) = theirs.into_split();
    // Everything the sending end needs is set up while there is room (the registration,
    // the writer task, the peer's hello).
    tx.send(Carry::Warm(1)).await.expect("warm up");
    tx.flush().await.expect("flush");
    assert!(matches!(
        guard("recv", peer_rx.recv()).await,
        Ok(Some(Carry::Warm(1)))
    ));
    let direct = file_with("direct");
    let nested = file_with("nested");

    // Every descriptor under a lowered limit taken: a `dup` now fails with EMFILE.
    let full = aiosock_tests::fill_descriptor_table(0);
    let dup_fails = direct.try_clone().is_err();
    // The nested one first: once the direct one is written, its descriptor is closed here,
    // which makes room.
    let nested_sent = tx.try_send(Carry::Nested {
        file: Some(nested.into()),
    });
    let direct_sent = tx.try_send(Carry::Direct {
        file: direct.into(),
        n: 7,
    });
    let flushed = guard("flush", tx.flush()).await;
    drop(full);

    assert!(dup_fails, "the table was not full");
    assert!(
        direct_sent.is_ok(),
        "a direct Fd field needs no duplicate: {direct_sent:?}"
    );
    flushed.expect("flushed with the table full");
    // An `Fd` inside an `Option` is duplicated, which fails: the message comes back whole.
    match nested_sent {
        Err(TrySendError::Invalid(
            Carry::Nested { file: Some(file) },
            InvalidMessage::FdDuplicate(_),
        )) => {
            assert_eq!(
                text_of(file),
                "nested",
                "the message came back with its descriptor"
            );
        }
        other => panic!("expected the nested descriptor's duplicate to fail, got {other:?}"),
    }
    // The peer got the very file.
    match guard("recv", peer_rx.recv()).await {
        Ok(Some(Carry::Direct { file, n: 7 })) => assert_eq!(text_of(file), "direct"),
        other => panic!("expected the direct file, got {other:?}"),
    }
}
