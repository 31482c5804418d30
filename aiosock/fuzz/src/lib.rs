//! The protocol the fuzz targets decode, shared with the seed generator.

/// A protocol with every shape the decoder meets: integers, floats, chars, strings, byte
/// strings, options, sequences, and recursion (decoding depth is limited).
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
}
