//! The decode budget's invariants, checked with a counting allocator over a corpus of
//! protocol shapes fed valid, mutated, random and hostile payloads:
//!
//! 1. decoding one payload of `n` bytes spends at most `budget × n + ALLOWANCE` units;
//! 2. the memory it allocates (the peak of live bytes, counting old and new buffers both
//!    live during a reallocation) is at most `MEMORY_PER_UNIT` bytes per unit spent, plus
//!    the error's own message when it fails;
//! 3. so, whatever the payload, decoding allocates at most
//!    `MEMORY_PER_UNIT × (budget × n + ALLOWANCE)` bytes, and its work is linear in `n`:
//!    every value decoded, even a zero-sized one, spends a unit.
//!
//! The allocator counts per thread, so tests running beside each other do not disturb it.

#![allow(
    clippy::vec_box,
    reason = "boxed elements are one of the shapes under test"
)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, LinkedList, VecDeque};
use std::time::{Duration, Instant};

use aiosock::__private::peak_of;
use aiosock::__private::wire::{
    ALLOWANCE, ERROR_SLACK, HEADER_LEN, MEMORY_PER_UNIT, decode_payload_spending,
};
use aiosock::Error;
use aiosock_tests::Rng;

#[global_allocator]
static ALLOCATOR: aiosock::__private::CountingAlloc = aiosock::__private::CountingAlloc;

// ---------------------------------------------------------------------------------------
// The shapes.

/// A value with a large in-memory size and a one-byte `None`.
type Big = [u64; 32];

/// A zero-sized struct.
#[derive(
    Debug,
    Clone,
    PartialEq,
    aiosock::__private::serde::Serialize,
    aiosock::__private::serde::Deserialize,
)]
#[serde(crate = "aiosock::__private::serde")]
struct Marker;

/// A recursive type, through boxes and vectors.
#[derive(
    Debug,
    Clone,
    PartialEq,
    aiosock::__private::serde::Serialize,
    aiosock::__private::serde::Deserialize,
)]
#[serde(crate = "aiosock::__private::serde")]
enum Tree {
    Leaf(u8),
    Node(Box<Tree>, Box<Tree>),
    Many(Vec<Tree>),
    Heavy(Option<Box<Big>>),
}

#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq)]
enum Shapes {
    Options(Option<Option<Option<u64>>>),
    NoneOfBig(Vec<Option<Big>>),
    Units(Vec<()>),
    UnitSet(BTreeSet<()>),
    UnitHashSet(HashSet<()>),
    Markers(Vec<Marker>),
    UnitMap(BTreeMap<u32, ()>),
    BigMap(BTreeMap<u32, Option<Big>>),
    Strings(Vec<String>),
    Buffers(Vec<Vec<u8>>),
    Bytes(Vec<aiosock::Bytes>),
    Tree(Box<Tree>),
    Tuples(Vec<(u8, u64, Option<String>)>),
    Array(Box<Big>),
    Arrays(Vec<[u64; 32]>),
    Chars(Vec<char>),
    Wide(Vec<i128>),
    Hash(HashMap<u64, String>),
    Set(BTreeSet<u64>),
    Nested(Vec<Vec<Vec<u16>>>),
    Boxes(Vec<Box<Option<Big>>>),
    Lists(LinkedList<()>),
    Deque(VecDeque<Option<u128>>),
    Singletons(Vec<BTreeMap<u8, Big>>),
    /// Two pointer layers around a small value: the most the budget is stated to cover.
    Pointers(Vec<Box<Box<u16>>>),
    Mix {
        id: u64,
        name: String,
        tags: HashSet<String>,
        data: Vec<u8>,
        maybe: Option<Vec<Option<Box<Tree>>>>,
    },
}

/// Variants in declaration order (their index on the wire).
const VARIANTS: u8 = 26;

// ---------------------------------------------------------------------------------------
// Payloads.

/// Random choices for the shapes, on the tests' SplitMix64.
trait Pick {
    fn len(&mut self, max: u64) -> usize;
    fn text(&mut self, max: u64) -> String;
    fn big(&mut self) -> Big;
}

impl Pick for Rng {
    fn len(&mut self, max: u64) -> usize {
        usize::try_from(self.below(max + 1)).unwrap_or(0)
    }

    fn text(&mut self, max: u64) -> String {
        (0..self.len(max))
            .map(|_| char::from(b'a' + (self.below(26) as u8)))
            .collect()
    }

    fn big(&mut self) -> Big {
        std::array::from_fn(|_| self.below(3))
    }
}

fn tree(rng: &mut Rng, depth: u32) -> Tree {
    match if depth == 0 { 0 } else { rng.below(4) } {
        0 => Tree::Leaf(rng.below(256) as u8),
        1 => Tree::Node(
            Box::new(tree(rng, depth - 1)),
            Box::new(tree(rng, depth - 1)),
        ),
        2 => Tree::Many((0..rng.len(3)).map(|_| tree(rng, depth - 1)).collect()),
        _ => Tree::Heavy(rng.below(2).eq(&0).then(|| Box::new(rng.big()))),
    }
}

/// A random valid message of up to about `n` elements per collection.
fn shape(rng: &mut Rng, n: u64) -> Shapes {
    match rng.below(u64::from(VARIANTS)) {
        0 => Shapes::Options(match rng.below(4) {
            0 => None,
            1 => Some(None),
            2 => Some(Some(None)),
            _ => Some(Some(Some(rng.next_u64()))),
        }),
        1 => Shapes::NoneOfBig(
            (0..rng.len(n))
                .map(|_| rng.below(4).eq(&0).then(|| rng.big()))
                .collect(),
        ),
        2 => Shapes::Units(vec![(); rng.len(n)]),
        3 => Shapes::UnitSet((0..rng.len(1)).map(|_| ()).collect()),
        4 => Shapes::UnitHashSet((0..rng.len(1)).map(|_| ()).collect()),
        5 => Shapes::Markers(vec![Marker; rng.len(n)]),
        6 => Shapes::UnitMap(
            (0..rng.len(n))
                .map(|_| (rng.next_u64() as u32, ()))
                .collect(),
        ),
        7 => Shapes::BigMap(
            (0..rng.len(n / 4))
                .map(|_| {
                    (
                        rng.next_u64() as u32,
                        rng.below(2).eq(&0).then(|| rng.big()),
                    )
                })
                .collect(),
        ),
        8 => Shapes::Strings((0..rng.len(n)).map(|_| rng.text(5)).collect()),
        9 => Shapes::Buffers((0..rng.len(n)).map(|_| rng.text(5).into_bytes()).collect()),
        10 => Shapes::Bytes(
            (0..rng.len(n))
                .map(|_| aiosock::Bytes::from(rng.text(9).into_bytes()))
                .collect(),
        ),
        11 => Shapes::Tree(Box::new(tree(rng, 5))),
        12 => Shapes::Tuples(
            (0..rng.len(n))
                .map(|_| {
                    let s = rng.below(2).eq(&0).then(|| rng.text(4));
                    (rng.below(256) as u8, rng.next_u64() >> rng.below(64), s)
                })
                .collect(),
        ),
        13 => Shapes::Array(Box::new(rng.big())),
        14 => Shapes::Arrays((0..rng.len(n / 8)).map(|_| rng.big()).collect()),
        15 => Shapes::Chars(
            (0..rng.len(n))
                .map(|_| char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('?'))
                .collect(),
        ),
        16 => Shapes::Wide(
            (0..rng.len(n))
                .map(|_| i128::from(rng.next_u64() as i64))
                .collect(),
        ),
        17 => Shapes::Hash(
            (0..rng.len(n))
                .map(|_| (rng.next_u64(), rng.text(3)))
                .collect(),
        ),
        18 => Shapes::Set((0..rng.len(n)).map(|_| rng.next_u64() >> 40).collect()),
        19 => Shapes::Nested(
            (0..rng.len(n / 4))
                .map(|_| {
                    (0..rng.len(3))
                        .map(|_| (0..rng.len(3)).map(|_| rng.below(1000) as u16).collect())
                        .collect()
                })
                .collect(),
        ),
        20 => Shapes::Boxes(
            (0..rng.len(n / 4))
                .map(|_| Box::new(rng.below(4).eq(&0).then(|| rng.big())))
                .collect(),
        ),
        21 => Shapes::Lists((0..rng.len(n)).map(|_| ()).collect()),
        22 => Shapes::Deque(
            (0..rng.len(n))
                .map(|_| rng.below(2).eq(&0).then(|| u128::from(rng.next_u64())))
                .collect(),
        ),
        23 => Shapes::Singletons(
            (0..rng.len(n / 8))
                .map(|_| [(rng.below(256) as u8, rng.big())].into_iter().collect())
                .collect(),
        ),
        24 => Shapes::Pointers(
            (0..rng.len(n))
                .map(|_| Box::new(Box::new(rng.below(1000) as u16)))
                .collect(),
        ),
        _ => Shapes::Mix {
            id: rng.next_u64(),
            name: rng.text(20),
            tags: (0..rng.len(4)).map(|_| rng.text(6)).collect(),
            data: rng.text(30).into_bytes(),
            maybe: rng.below(2).eq(&0).then(|| {
                (0..rng.len(4))
                    .map(|_| rng.below(2).eq(&0).then(|| Box::new(tree(rng, 3))))
                    .collect()
            }),
        },
    }
}

fn encode(msg: &Shapes) -> Vec<u8> {
    let mut out = Vec::new();
    aiosock::__private::wire::encode_one(&mut out, msg, usize::MAX).expect("encodes");
    out.split_off(HEADER_LEN)
}

/// A varint as bincode writes it: a length or a count the peer claims.
fn varint(n: u64) -> Vec<u8> {
    match n {
        0..=250 => vec![n as u8],
        251..=0xffff => [vec![251], (n as u16).to_le_bytes().to_vec()].concat(),
        0x1_0000..=0xffff_ffff => [vec![252], (n as u32).to_le_bytes().to_vec()].concat(),
        _ => [vec![253], n.to_le_bytes().to_vec()].concat(),
    }
}

/// Payloads a hostile peer would send: every variant with a huge count followed by
/// filler (zeros: `None`s, empty strings, zero keys), at several sizes.
fn hostile() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for variant in 0..VARIANTS {
        for claim in [1u64 << 60, 1 << 32, 100_000, 1000] {
            for filler in [0usize, 1, 17, 1000, 64 * 1024] {
                let mut p = vec![variant];
                p.extend(varint(claim));
                p.resize(p.len() + filler, 0);
                out.push(p);
            }
        }
        // Nested claims: every count huge, all the way down.
        let mut p = vec![variant];
        for _ in 0..200 {
            p.extend(varint(1 << 60));
            p.push(1);
        }
        out.push(p);
    }
    out
}

/// Flips, inserts huge counts into, cuts and duplicates parts of `payload`.
fn mutate(rng: &mut Rng, payload: &[u8]) -> Vec<u8> {
    let mut p = payload.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.len(p.len() as u64);
        match rng.below(5) {
            0 if !p.is_empty() => {
                let i = at.min(p.len() - 1);
                p[i] ^= rng.next_u64() as u8;
            }
            1 => {
                let claim = varint(1 << rng.below(62));
                p.splice(at..at, claim);
            }
            2 => p.truncate(at),
            3 => {
                let tail = p[at..].to_vec();
                p.extend(tail);
            }
            _ => p.splice(at..at, vec![0; rng.len(300)]).for_each(drop),
        }
    }
    p
}

// ---------------------------------------------------------------------------------------
// The checks.

#[derive(Default, Debug)]
struct Stats {
    payloads: usize,
    decoded: usize,
    over_budget: usize,
    worst_bytes_per_unit: f64,
    worst_bytes_per_payload_byte: f64,
}

/// Decodes `payload` at `per_byte` and asserts the invariants.
fn check(payload: &[u8], per_byte: usize, stats: &mut Stats) {
    let ((result, spent), peak) = peak_of(|| decode_payload_spending::<Shapes>(payload, per_byte));
    let units = payload.len() * per_byte + ALLOWANCE;
    assert!(
        spent <= units,
        "spent {spent} units of {units} on {} bytes",
        payload.len()
    );
    // A failed decode also allocates its error (a message of a few dozen bytes).
    let slack = if result.is_err() { ERROR_SLACK } else { 0 };
    assert!(
        peak <= MEMORY_PER_UNIT * spent + slack,
        "{peak} bytes allocated for {spent} units ({} bytes per unit) on a payload of {} bytes: {:02x?}",
        peak / spent.max(1),
        payload.len(),
        &payload[..payload.len().min(64)]
    );
    stats.payloads += 1;
    match result {
        Ok(_) => stats.decoded += 1,
        Err(Error::OverBudget { len, budget }) => {
            assert_eq!((len, budget), (payload.len(), units));
            stats.over_budget += 1;
        }
        Err(_) => {}
    }
    stats.worst_bytes_per_unit = stats
        .worst_bytes_per_unit
        .max(peak as f64 / spent.max(1) as f64);
    stats.worst_bytes_per_payload_byte = stats
        .worst_bytes_per_payload_byte
        .max(peak as f64 / payload.len().max(1) as f64);
}

#[test]
fn valid_messages_of_every_shape_decode_within_the_bound() {
    let mut rng = Rng::new(1);
    let mut stats = Stats::default();
    for i in 0..3000 {
        let msg = shape(&mut rng, [4, 40, 400][i % 3]);
        let payload = encode(&msg);
        check(&payload, 16, &mut stats);
        // Valid messages of these sizes fit the default budget, except the shapes that
        // are amplifying by nature; the round trip is exact when they fit.
        let decoded = aiosock::__private::wire::decode_payload::<Shapes>(&payload, 16);
        match decoded {
            Ok(got) => assert_eq!(got, msg),
            Err(Error::OverBudget { .. }) => {}
            Err(e) => panic!("{msg:?} failed: {e}"),
        }
    }
    eprintln!("valid: {stats:?}");
    assert!(stats.decoded > 2000, "{stats:?}");
}

#[test]
fn mutated_messages_stay_within_the_bound() {
    let mut rng = Rng::new(2);
    let mut stats = Stats::default();
    for i in 0..6000 {
        let msg = shape(&mut rng, [4, 40, 400][i % 3]);
        let payload = mutate(&mut rng, &encode(&msg));
        for per_byte in [1, 16, 64] {
            check(&payload, per_byte, &mut stats);
        }
    }
    eprintln!("mutated: {stats:?}");
}

#[test]
fn random_bytes_stay_within_the_bound() {
    let mut rng = Rng::new(3);
    let mut stats = Stats::default();
    for _ in 0..6000 {
        let mut payload: Vec<u8> = (0..rng.len(200)).map(|_| rng.next_u64() as u8).collect();
        if let Some(first) = payload.first_mut() {
            *first %= VARIANTS;
        }
        check(&payload, 16, &mut stats);
    }
    eprintln!("random: {stats:?}");
}

#[test]
fn hostile_payloads_stay_within_the_bound() {
    let mut stats = Stats::default();
    for payload in hostile() {
        for per_byte in [1, 16] {
            check(&payload, per_byte, &mut stats);
        }
    }
    eprintln!("hostile: {stats:?}");
    assert!(stats.over_budget > 100, "{stats:?}");
}

#[test]
fn the_reviews_amplifying_frames_fail_before_their_memory_is_allocated() {
    // One `None` per byte of a `Vec<Option<[u64; 32]>>`: 264 bytes of memory per payload
    // byte without a budget (1 MiB frame, 264 MiB).
    let mut payload = vec![1];
    payload.extend(varint(1 << 20));
    payload.resize(payload.len() + (1 << 20), 0);
    let ((result, spent), peak) = peak_of(|| decode_payload_spending::<Shapes>(&payload, 16));
    assert!(
        matches!(result, Err(Error::OverBudget { .. })),
        "{result:?}"
    );
    assert!(spent <= 16 * payload.len() + ALLOWANCE);
    assert!(peak <= MEMORY_PER_UNIT * spent, "{peak} bytes");
    // Empty strings: 24 bytes per payload byte without a budget.
    let mut payload = vec![8];
    payload.extend(varint(1 << 20));
    payload.resize(payload.len() + (1 << 20), 0);
    let (result, _) = decode_payload_spending::<Shapes>(&payload, 16);
    assert!(
        matches!(result, Err(Error::OverBudget { .. })),
        "{result:?}"
    );
    // The same frames decode when the receiver raises its budget on purpose.
    let (result, _) = decode_payload_spending::<Shapes>(&payload, 32);
    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn a_2_to_the_60_claim_of_zero_sized_elements_fails_after_a_bounded_number_of_steps() {
    // `Vec<()>`, `BTreeSet<()>`, `HashSet<()>`, `Vec<Marker>` and `LinkedList<()>`
    // claiming 2^60 elements in a frame of 10 bytes: each element costs a unit, so the
    // frame fails once its 16 × 10 + 4096 units are spent.
    for variant in [2u8, 3, 4, 5, 21] {
        let mut payload = vec![variant];
        payload.extend(varint(1 << 60));
        let started = Instant::now();
        let (result, spent) = decode_payload_spending::<Shapes>(&payload, 16);
        let took = started.elapsed();
        assert!(
            matches!(
                result,
                Err(Error::OverBudget {
                    len: 10,
                    budget: 4256
                })
            ),
            "variant {variant}: {result:?}"
        );
        assert_eq!(spent, 4256, "variant {variant}");
        // A hang guard, not a speed measurement: 4256 steps take microseconds.
        assert!(took < Duration::from_secs(5), "variant {variant}: {took:?}");
    }
}
