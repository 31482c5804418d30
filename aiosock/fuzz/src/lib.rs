//! The protocol the fuzz targets decode, shared with the seed generator.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, LinkedList};

/// A value with a large in-memory size and a one-byte `None`.
pub type Big = [u64; 32];

/// A protocol with every shape the decoder meets: integers, floats, chars, strings, byte
/// strings, options, sequences, maps, arrays, boxes and recursion, and the shapes that
/// amplify (options of large values, sequences and sets of zero-sized elements, maps with
/// unit values, sequences of empty strings and buffers), so that the fuzzer hunts for
/// inputs that break the decode budget's bounds, not only for crashes.
#[aiosock::protocol]
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    /// No fields.
    Unit,
    /// Integers.
    Num(u64, i32),
    /// A string.
    Text {
        /// The string.
        s: String,
    },
    /// A byte string, through the macro.
    Blob(Vec<u8>),
    /// A byte string, through `Bytes`.
    Bytes(aiosock::Bytes),
    /// A sequence of tuples.
    Items(Vec<(u16, String)>),
    /// Options.
    Maybe(Option<Vec<Option<u8>>>),
    /// A float and a char.
    Float(f64, char),
    /// Recursion, for the depth limit.
    Nested(Box<Msg>),
    /// Options of a large value: one byte each when `None`.
    NoneOfBig(Vec<Option<Big>>),
    /// Zero-sized elements.
    Units(Vec<()>),
    /// A set of a zero-sized type.
    UnitSet(BTreeSet<()>),
    /// A hash set of a zero-sized type.
    UnitHashSet(HashSet<()>),
    /// A map with unit values.
    UnitMap(BTreeMap<u32, ()>),
    /// Strings, empty ones one byte each.
    Strings(Vec<String>),
    /// Buffers as sequences of bytes.
    Buffers(Vec<Vec<u8>>),
    /// An array.
    Array(Big),
    /// Wide integers and chars.
    Wide(Vec<(i128, char)>),
    /// A hash map.
    Hash(HashMap<u64, String>),
    /// An ordered set.
    Set(BTreeSet<u64>),
    /// A linked list of a zero-sized type.
    List(LinkedList<()>),
    /// Boxed options of a large value.
    Boxes(Vec<Box<Option<Big>>>),
    /// Single-entry maps of a large value.
    Singletons(Vec<BTreeMap<u8, Big>>),
}

/// A protocol whose messages hold descriptors, for the `decode_fds` target.
#[aiosock::protocol]
#[derive(Debug)]
pub enum Carry {
    /// No descriptor.
    Num(u64),
    /// One.
    One(aiosock::Fd),
    /// Any number.
    Files(Vec<aiosock::Fd>),
    /// Maybe one, and a string.
    Maybe(Option<aiosock::Fd>, String),
    /// A channel end.
    End(aiosock::Endpoint<Carry, Carry>),
    /// A shared-memory buffer.
    Buf(aiosock::Shm),
}

/// The hello of a side that sends and expects `P`, built from the documented layout.
pub fn hello_of<P: aiosock::Protocol>() -> Vec<u8> {
    let name = P::NAME.as_bytes();
    let len = u16::try_from(name.len()).expect("a short name");
    let mut out = b"AIOS".to_vec();
    out.extend(2u16.to_le_bytes());
    out.extend(len.to_le_bytes());
    out.extend(len.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out.extend(P::FINGERPRINT.to_le_bytes());
    out.extend(P::FINGERPRINT.to_le_bytes());
    out.extend(name);
    out.extend(name);
    out
}
