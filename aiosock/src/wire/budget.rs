//! The decode budget: a serde `Deserializer` wrapper that charges every value a peer's
//! payload makes the receiver build, and bounds how deeply it may nest.
//!
//! bincode decodes through serde with no limit of its own on work or memory: a sequence of
//! `None`s grows the receiver by the element's in-memory size per payload byte, and a
//! sequence of zero-sized elements claiming 2^60 of them never ends. Every way into a value
//! goes through [`Guarded`], which charges the shared [`Budget`] before the value is decoded:
//!
//! - one unit for every value (each `deserialize_*` call: integers, strings, options,
//!   enums, newtypes, units, every element and entry), so no loop is free;
//! - one more unit and the in-memory size of every element of a sequence and of every key
//!   and value of a map, which live on the heap, outside their parent;
//! - the in-memory size of a value larger than the slot its parent keeps for it: that value
//!   lives behind a pointer (`Box`, `Rc`, `Arc`) and is allocated on its own;
//! - the length of every string and byte string, which the visitor copies.
//!
//! The charge is made before the value is decoded, so an overspending frame fails before
//! its allocation. Sequences and maps are given no size hint (the peer's claimed length is
//! not trusted to reserve memory up front); they grow by doubling as elements arrive, each
//! already paid for. The memory decoding allocates therefore stays under a small multiple
//! of the units spent, [`MEMORY_PER_UNIT`], checked with a counting allocator over a corpus
//! of shapes and hostile payloads in `tests/tests/decode_budget.rs`.
//!
//! One thing the wrapper cannot see: a pointer (`Box`, `Rc`, `Arc`) deserializes its value
//! through the same deserializer, so a pointer around a value no larger than the pointer's
//! slot allocates without being charged (up to 24 bytes a layer). One or two layers stay
//! within [`MEMORY_PER_UNIT`]; deeper nests of pointers around small values can exceed it
//! in proportion to their depth (a limit stated in `SECURITY.md`).
//!
//! Nesting is limited separately ([`MAX_DEPTH`]): every sequence, map, enum, option and
//! newtype opens one level, so recursive types cannot overflow the stack.
//!
//! Owned strings and byte buffers are requested as borrowed ones: decoding from a whole
//! payload, bincode then checks a claimed length against the bytes that are really there
//! before anything is allocated, and serde's `String` and `Vec<u8>` visitors copy exactly
//! those bytes.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::mem::size_of;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// How deeply a message may nest: sequences, maps, enums, options and newtypes each add a
/// level. serde_json uses the same default.
pub(crate) const MAX_DEPTH: usize = 128;

/// Units per payload byte a receiver may spend unless configured otherwise.
pub(crate) const DEFAULT_DECODE_BUDGET: usize = 16;

/// Units every frame may spend beyond its per-byte budget, so that small messages with
/// large in-memory values (a few `None`s of a big type) still decode.
pub(crate) const ALLOWANCE: usize = 4096;

/// The memory decoding allocates is at most this many bytes per unit spent.
///
/// The worst case is a linked list of zero-sized elements (a 16-byte node for each
/// one-unit element), then a B-tree with a single entry (a node of eleven slots) and a
/// hash set with a single element (sixteen control bytes). Vectors and hash maps stay
/// under four: a collection that grows by doubling holds at most twice what its elements
/// paid for, three times while it reallocates (old and new buffers both live), and a
/// vector's first allocation reserves four elements.
pub(crate) const MEMORY_PER_UNIT: usize = 16;

/// The units one payload of `len` bytes may spend at `per_byte` units per byte.
pub(crate) fn units_for(len: usize, per_byte: usize) -> usize {
    len.saturating_mul(per_byte).saturating_add(ALLOWANCE)
}

/// Why decoding stopped early, when it was one of our limits and not bincode's own error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exceeded {
    /// The payload spent its whole budget.
    Budget,
    /// The payload nests deeper than [`MAX_DEPTH`].
    Depth,
}

/// What one payload may still spend. Shared by every wrapper of one decode.
#[derive(Debug)]
pub(crate) struct Budget {
    left: Cell<usize>,
    exceeded: Cell<Option<Exceeded>>,
}

impl Budget {
    pub(crate) fn new(units: usize) -> Budget {
        Budget {
            left: Cell::new(units),
            exceeded: Cell::new(None),
        }
    }

    /// Units not spent yet.
    pub(crate) fn left(&self) -> usize {
        self.left.get()
    }

    /// The limit that stopped decoding, if one did.
    pub(crate) fn exceeded(&self) -> Option<Exceeded> {
        self.exceeded.get()
    }

    /// Spends `units`, or fails if fewer are left. After a failure nothing is left, so
    /// every later charge of a unit or more fails too.
    #[inline]
    fn charge<E: de::Error>(&self, units: usize) -> Result<(), E> {
        match self.left.get().checked_sub(units) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => Err(self.fail(Exceeded::Budget)),
        }
    }

    #[cold]
    #[inline(never)]
    fn fail<E: de::Error>(&self, why: Exceeded) -> E {
        self.left.set(0);
        if self.exceeded.get().is_none() {
            self.exceeded.set(Some(why));
        }
        match why {
            Exceeded::Budget => E::custom("the message exceeds the decode budget"),
            Exceeded::Depth => E::custom(format_args!(
                "the message nests deeper than {MAX_DEPTH} levels"
            )),
        }
    }
}

/// Decodes a whole message of type `T` within `budget`: the seed handed to bincode.
pub(crate) struct Budgeted<'b, T> {
    budget: &'b Budget,
    _msg: PhantomData<fn() -> T>,
}

impl<'b, T> Budgeted<'b, T> {
    pub(crate) fn new(budget: &'b Budget) -> Budgeted<'b, T> {
        Budgeted {
            budget,
            _msg: PhantomData,
        }
    }
}

impl<'de, T: de::Deserialize<'de>> DeserializeSeed<'de> for Budgeted<'_, T> {
    type Value = T;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        // The message itself is returned by value: its slot is its own size.
        T::deserialize(Guarded {
            inner: d,
            at: Place {
                budget: self.budget,
                depth: 0,
                slot: size_of::<T>(),
            },
        })
    }
}

/// Where a value is decoded: the budget, its nesting depth, and the bytes its parent keeps
/// for it in place.
#[derive(Clone, Copy)]
struct Place<'b> {
    budget: &'b Budget,
    depth: usize,
    slot: usize,
}

impl<'b> Place<'b> {
    /// Charges one value of type `V` decoded here: one unit, plus its size if it does not
    /// fit its slot (then it lives behind a pointer, allocated on its own).
    #[inline]
    fn charge_value<V, E: de::Error>(&self) -> Result<(), E> {
        let size = size_of::<V>();
        let boxed = if size > self.slot { size } else { 0 };
        self.budget.charge(1 + boxed)
    }

    /// The place of what a value of type `V` decoded here contains: one level deeper, with
    /// `V`'s own size as the slot.
    #[inline]
    fn inside<V, E: de::Error>(&self) -> Result<Place<'b>, E> {
        if self.depth >= MAX_DEPTH {
            return Err(self.budget.fail(Exceeded::Depth));
        }
        Ok(Place {
            budget: self.budget,
            depth: self.depth + 1,
            slot: size_of::<V>(),
        })
    }
}

/// Whether the elements of a sequence live in a heap buffer of their own (a collection)
/// or in place inside their parent (the fields of a tuple, struct or array).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    Collection,
    InPlace,
}

/// A deserializer whose value is decoded at `at`.
struct Guarded<'b, D> {
    inner: D,
    at: Place<'b>,
}

impl<'b, D> Guarded<'b, D> {
    /// Charges the value `V` and wraps its visitor.
    #[inline]
    fn visitor<'de, V: Visitor<'de>>(
        &self,
        inner: V,
        layout: Layout,
    ) -> Result<GuardedVisitor<'b, V>, D::Error>
    where
        D: Deserializer<'de>,
    {
        self.at.charge_value::<V::Value, D::Error>()?;
        Ok(GuardedVisitor {
            inner,
            at: self.at,
            layout,
        })
    }
}

/// Forwards `deserialize_*` methods that take only a visitor.
macro_rules! forward {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            let visitor = self.visitor(visitor, Layout::InPlace)?;
            self.inner.$method(visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Guarded<'_, D> {
    type Error = D::Error;

    forward! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_bytes deserialize_option deserialize_unit
        deserialize_identifier deserialize_ignored_any
    }

    #[inline]
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let visitor = self.visitor(visitor, Layout::Collection)?;
        self.inner.deserialize_seq(visitor)
    }

    #[inline]
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let visitor = self.visitor(visitor, Layout::Collection)?;
        self.inner.deserialize_map(visitor)
    }

    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let visitor = self.visitor(visitor, Layout::InPlace)?;
        self.inner.deserialize_str(visitor)
    }

    #[inline]
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let visitor = self.visitor(visitor, Layout::InPlace)?;
        self.inner.deserialize_bytes(visitor)
    }

    #[inline]
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.visitor(visitor, Layout::InPlace)?;
        self.inner.deserialize_unit_struct(name, visitor)
    }

    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.visitor(visitor, Layout::InPlace)?;
        self.inner.deserialize_newtype_struct(name, visitor)
    }

    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.visitor(visitor, Layout::InPlace)?;
        self.inner.deserialize_tuple(len, visitor)
    }

    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.visitor(visitor, Layout::InPlace)?;
        self.inner.deserialize_tuple_struct(name, len, visitor)
    }

    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.visitor(visitor, Layout::InPlace)?;
        self.inner.deserialize_struct(name, fields, visitor)
    }

    #[inline]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.visitor(visitor, Layout::InPlace)?;
        self.inner.deserialize_enum(name, variants, visitor)
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Wraps a visitor (already charged for its value) so that whatever it opens is one level
/// deeper and charged in turn.
struct GuardedVisitor<'b, V> {
    inner: V,
    at: Place<'b>,
    layout: Layout,
}

impl<'b, 'de, V: Visitor<'de>> GuardedVisitor<'b, V> {
    /// The place of what this visitor's value contains.
    #[inline]
    fn inside<E: de::Error>(&self) -> Result<Place<'b>, E> {
        self.at.inside::<V::Value, E>()
    }

    /// Charges the bytes of a string or byte string, which the visitor is about to copy.
    #[inline]
    fn copy<E: de::Error>(&self, len: usize) -> Result<(), E> {
        self.at.budget.charge(len)
    }
}

/// Forwards `visit_*` methods that take one plain value.
macro_rules! forward_visit {
    ($($method:ident($ty:ty))*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

/// Forwards `visit_*` methods that take a string or bytes, charging their length.
macro_rules! forward_copy {
    ($($method:ident($ty:ty))*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.copy(v.len())?;
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for GuardedVisitor<'_, V> {
    type Value = V::Value;

    #[inline]
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char)
    }

    forward_copy! {
        visit_str(&str) visit_borrowed_str(&'de str) visit_string(String)
        visit_bytes(&[u8]) visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    #[inline]
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    #[inline]
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    #[inline]
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let at = self.inside()?;
        self.inner.visit_some(Guarded { inner: d, at })
    }

    #[inline]
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let at = self.inside()?;
        self.inner.visit_newtype_struct(Guarded { inner: d, at })
    }

    #[inline]
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let at = self.inside()?;
        self.inner.visit_seq(Nested {
            inner: seq,
            at,
            layout: self.layout,
        })
    }

    #[inline]
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let at = self.inside()?;
        self.inner.visit_map(Nested {
            inner: map,
            at,
            layout: self.layout,
        })
    }

    #[inline]
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        let at = self.inside()?;
        self.inner.visit_enum(Nested {
            inner: data,
            at,
            layout: Layout::InPlace,
        })
    }
}

/// A sequence, map, enum or variant whose contents are decoded at `at` (whose slot is the
/// parent value's size), laid out as `layout` says.
struct Nested<'b, A> {
    inner: A,
    at: Place<'b>,
    layout: Layout,
}

/// A seed whose value is decoded at `at`; for a collection's element, its in-memory size
/// is charged first.
struct GuardedSeed<'b, S> {
    inner: S,
    at: Place<'b>,
    layout: Layout,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for GuardedSeed<'_, S> {
    type Value = S::Value;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        let size = size_of::<S::Value>();
        if self.layout == Layout::Collection {
            // The element lives in the collection's heap buffer. It costs a unit of its
            // own too, so that no element is free even if its `Deserialize` never asks the
            // deserializer for anything.
            self.at.budget.charge(1 + size)?;
        }
        // In place or in its element slot, the value fills `size` bytes without allocating.
        let at = Place {
            slot: size,
            ..self.at
        };
        self.inner.deserialize(Guarded { inner: d, at })
    }
}

impl<'b, A> Nested<'b, A> {
    #[inline]
    fn seed<S>(&self, inner: S) -> GuardedSeed<'b, S> {
        GuardedSeed {
            inner,
            at: self.at,
            layout: self.layout,
        }
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Nested<'_, A> {
    type Error = A::Error;

    #[inline]
    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        let seed = self.seed(seed);
        self.inner.next_element_seed(seed)
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        // The length is the peer's claim: reserving for it up front would allocate before
        // the elements are paid for. Collections grow as elements arrive instead.
        None
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Nested<'_, A> {
    type Error = A::Error;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let seed = self.seed(seed);
        self.inner.next_key_seed(seed)
    }

    #[inline]
    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        let seed = self.seed(seed);
        self.inner.next_value_seed(seed)
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        // As for sequences: nothing is reserved on the peer's word.
        None
    }
}

impl<'b, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Nested<'b, A> {
    type Error = A::Error;
    type Variant = Nested<'b, A::Variant>;

    #[inline]
    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let (at, layout) = (self.at, self.layout);
        // The variant's index is part of the enum step, already paid for: bincode decodes
        // it as one integer, into the seed's identifier, which allocates nothing.
        let (value, variant) = self.inner.variant_seed(seed)?;
        let variant = Nested {
            inner: variant,
            at,
            layout,
        };
        Ok((value, variant))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Nested<'_, A> {
    type Error = A::Error;

    #[inline]
    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    #[inline]
    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        // The field lives inside the enum: its slot is the enum's size.
        let seed = GuardedSeed {
            inner: seed,
            at: self.at,
            layout: Layout::InPlace,
        };
        self.inner.newtype_variant_seed(seed)
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let visitor = self.visitor(visitor)?;
        self.inner.tuple_variant(len, visitor)
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = self.visitor(visitor)?;
        self.inner.struct_variant(fields, visitor)
    }
}

impl<'b, A> Nested<'b, A> {
    /// The visitor of a tuple or struct variant's fields: one unit, the fields in place.
    #[inline]
    fn visitor<'de, V: Visitor<'de>, E: de::Error>(
        &self,
        inner: V,
    ) -> Result<GuardedVisitor<'b, V>, E> {
        self.at.budget.charge(1)?;
        Ok(GuardedVisitor {
            inner,
            at: self.at,
            layout: Layout::InPlace,
        })
    }
}
