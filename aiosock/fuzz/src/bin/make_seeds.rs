//! Writes the seed corpora: for `decode_stream`, real streams captured from a real pair,
//! each prefixed with a chunk-size byte; for `decode_budget`, one payload per message,
//! prefixed with a budget byte. Run: `cargo +nightly run --release --bin make_seeds`.

use std::io::Read;
use std::os::unix::net::UnixStream;

use aiosock::Bytes;
use aiosock_fuzz::{Big, Msg};

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
    println!(
        "seeds written to {} and {}",
        dir.display(),
        budget_dir.display()
    );
}
