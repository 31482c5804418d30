//! Writes the seed corpora: for `decode_stream`, real streams captured from a real pair,
//! each prefixed with a chunk-size byte; for `decode_budget`, one payload per message,
//! prefixed with a budget byte; for `decode_fds`, frames of messages with descriptors,
//! prefixed with the target's header and the batches that carry their descriptors. Run: `cargo +nightly run --release --bin make_seeds`.

use std::io::Read;
use std::os::unix::net::UnixStream;

use aiosock::Bytes;
use aiosock_fuzz::{Big, Carry, Msg, hello_of};

fn capture(msgs: Vec<Msg>) -> Vec<u8> {
    let (a, b) = aiosock::pair::<Msg, Msg>().expect("pair");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (tx, _rx) = a.into_split();
        for m in msgs {
            tx.send(m).await.expect("send");
        }
        tx.flush().await.expect("flush");
    });
    drop(rt);
    let mut raw = UnixStream::from(b.into_fd());
    raw.set_nonblocking(true).expect("nonblocking");
    let mut out = Vec::new();
    let _ = raw.read_to_end(&mut out);
    out
}

/// One frame of the kind `flags` names (see the wire format) holding `value`.
fn frame<T: aiosock::__private::serde::Serialize>(value: &T, flags: u16, id: u64) -> Vec<u8> {
    let mut out = Vec::new();
    aiosock::__private::wire::encode_as(&mut out, value, flags, id).expect("encode");
    out
}

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/decode_stream");
    std::fs::create_dir_all(&dir).expect("corpus dir");
    let sets = vec![
        vec![],
        vec![Msg::Unit],
        vec![Msg::Num(300, -7), Msg::Text { s: "héllo".into() }],
        vec![
            Msg::Blob(vec![0xff; 40]),
            Msg::Bytes(Bytes::from(vec![1, 2, 3])),
        ],
        vec![Msg::Items(vec![(1, "a".into()), (65535, String::new())])],
        vec![Msg::Maybe(Some(vec![None, Some(9)])), Msg::Maybe(None)],
        vec![
            Msg::Float(1.5, 'λ'),
            Msg::Unit,
            Msg::Num(u64::MAX, i32::MIN),
        ],
        vec![Msg::Nested(Box::new(Msg::Nested(Box::new(Msg::Text {
            s: "deep".into(),
        }))))],
        vec![
            Msg::NoneOfBig(vec![None, Some([3; 32]), None]),
            Msg::Units(vec![(); 5]),
            Msg::UnitSet([()].into_iter().collect()),
            Msg::UnitHashSet([()].into_iter().collect()),
            Msg::UnitMap([(1, ()), (70_000, ())].into_iter().collect()),
        ],
        vec![
            Msg::Strings(vec![String::new(), "ab".into()]),
            Msg::Buffers(vec![vec![], vec![1, 2]]),
            Msg::Array([7; 32]),
            Msg::Wide(vec![(i128::MIN, 'x'), (5, '\u{10ffff}')]),
        ],
        vec![
            Msg::Hash([(1, "one".into())].into_iter().collect()),
            Msg::Set([1, 1 << 40].into_iter().collect()),
            Msg::List([(), ()].into_iter().collect()),
            Msg::Boxes(vec![Box::new(None), Box::new(Some(Big::default()))]),
            Msg::Singletons(vec![[(9, [1; 32])].into_iter().collect()]),
        ],
    ];
    let budget_dir = dir.with_file_name("decode_budget");
    std::fs::create_dir_all(&budget_dir).expect("corpus dir");
    for (i, msg) in sets.iter().flatten().enumerate() {
        let mut frame = Vec::new();
        aiosock::__private::wire::encode_one(&mut frame, msg, usize::MAX).expect("encode");
        let mut seed = vec![15]; // the default budget of 16 units per byte
        seed.extend(&frame[aiosock::__private::wire::HEADER_LEN..]);
        std::fs::write(budget_dir.join(format!("seed-{i}")), seed).expect("write seed");
    }
    for (i, msgs) in sets.into_iter().enumerate() {
        for chunk in [0u8, 2, 255] {
            let mut seed = vec![chunk];
            seed.extend(capture(msgs.clone()));
            std::fs::write(dir.join(format!("seed-{i}-{chunk}")), seed).expect("write seed");
        }
    }
    // Streams with calls, replies, failure reports and a panic notice, written by hand
    // after a real hello (no call is waiting in a decoded stream, so a reply ends it).
    let hello = capture(vec![]);
    let frames: Vec<Vec<u8>> = vec![
        frame(&Msg::Num(5, 6), 0x0001, 1),
        frame(&Msg::Unit, 0x0001, u64::MAX),
        frame(&49u64, 0x0002, 1),
        frame(&(1u8), 0x0006, 2),         // Failure::Unanswered
        frame(&(0u8, "boom"), 0x0006, 3), // Failure::Panicked("boom")
        frame(&"a panic", 0x0008, 0),
    ];
    for (i, tail) in frames.iter().enumerate() {
        let mut seed = vec![3];
        seed.extend(&hello);
        seed.extend(frame(&Msg::Text { s: "first".into() }, 0, 0));
        seed.extend(tail);
        std::fs::write(dir.join(format!("seed-calls-{i}")), seed).expect("write seed");
    }
    let fds_dir = dir.with_file_name("decode_fds");
    fds_seeds(&fds_dir);
    println!(
        "seeds written to {}, {} and {}",
        dir.display(),
        budget_dir.display(),
        fds_dir.display()
    );
}

/// Seeds for `decode_fds`: its header (chunk size, batch count, per-frame limit,
/// receiver limit), the batches, then frames of `Carry` whose descriptors the batches
/// bring, each at its frame's first byte unless the seed says otherwise.
fn fds_seeds(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).expect("corpus dir");
    let fd = || aiosock::Fd::from(std::fs::File::open("/dev/null").expect("/dev/null"));
    let msgs = [
        Carry::Num(1),
        Carry::One(fd()),
        Carry::Files(vec![fd(), fd(), fd()]),
        Carry::Maybe(Some(fd()), "x".into()),
        Carry::Maybe(None, "y".into()),
    ];
    let hello = hello_of::<Carry>().len();
    let mut frames = Vec::new();
    let mut batches = Vec::new(); // (stream offset, count)
    for msg in &msgs {
        let count = match msg {
            Carry::One(_) | Carry::Maybe(Some(_), _) => 1,
            Carry::Files(files) => files.len(),
            _ => 0,
        };
        if count > 0 {
            batches.push((hello + frames.len(), count));
        }
        aiosock::__private::wire::encode_one(&mut frames, msg, usize::MAX).expect("encode");
    }
    // (name, chunk, per-frame limit, receiver limit, which batch is truncated, a batch
    // moved into the hello)
    let cases: [(&str, u8, u8, u8, Option<usize>, bool); 6] = [
        ("whole", 255, 0xff, 0xff, None, false),
        ("bytewise", 0, 0xff, 0xff, None, false),
        ("truncated", 7, 0xff, 0xff, Some(1), false),
        ("per-frame-2", 255, 2, 0xff, None, false),
        ("held-1", 3, 0xff, 1, None, false),
        ("in-hello", 255, 0xff, 0xff, None, true),
    ];
    for (name, chunk, per_frame, held, truncated, in_hello) in cases {
        let mut seed = vec![chunk, batches.len() as u8, per_frame, held];
        for (i, &(at, count)) in batches.iter().enumerate() {
            let at = if in_hello && i == 0 { 3 } else { at };
            let at = u16::try_from(at).expect("a short stream");
            seed.extend(at.to_le_bytes());
            seed.push(count as u8 | if truncated == Some(i) { 0x80 } else { 0 });
        }
        seed.extend(&frames);
        std::fs::write(dir.join(format!("seed-{name}")), seed).expect("write seed");
    }
}
