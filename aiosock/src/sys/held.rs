//! Bytes sent from a message's own buffers: the zero-copy path of large byte fields.
//!
//! A message's fields of type `Vec<u8>` or `Bytes` ([`Protocol::visit_byte_fields`]) of
//! at least a threshold's length are not copied into the frame when the message is sent:
//! the encoder records where it would have copied one ([`Span`]), and once the frame is queued
//! the message itself is moved into an owner that the queue keeps until those bytes are in
//! the kernel ([`Held`]). The kernel then copies them straight from the message's buffer.
//!
//! Why the bytes stay valid: a `Vec` owns its heap buffer, and moving the message (into the
//! owner's box) moves the `Vec`'s pointer, length and capacity, never the buffer. The
//! message is only lent out (`&T`) from the moment its fields are listed, and is never
//! touched again once it is the owner, which is dropped only after every [`Held`] made
//! from it (each holds an `Arc` of it).

use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use crate::Protocol;

/// Where a held byte field's bytes are: the address and length of a `Vec<u8>`'s buffer
/// inside the message being encoded. Only an address: nothing reads through it but a
/// [`Held`], which keeps the message alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Span` is an address and a length; it is never dereferenced by itself (only
// through a `Held`, which owns what it points into), so moving one to another thread
// moves two numbers.
unsafe impl Send for Span {}
// SAFETY: as for `Send`: a shared `Span` gives access to no memory.
unsafe impl Sync for Span {}

impl Span {
    /// The span of `bytes`.
    fn of(bytes: &[u8]) -> Span {
        Span {
            ptr: NonNull::from(bytes).cast(),
            len: bytes.len(),
        }
    }

    /// Whether `bytes` is exactly this span (the same address and length).
    pub(crate) fn is(&self, bytes: &[u8]) -> bool {
        std::ptr::eq(self.ptr.as_ptr().cast_const(), bytes.as_ptr()) && self.len == bytes.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// A message about to be sent, with its byte fields of at least a threshold's length
/// listed ([`Protocol::visit_byte_fields`]): the encoder leaves out the bytes of those it
/// meets whole ([`fields`](Self::fields)), and once the frame is queued the message becomes
/// the owner of those bytes ([`hold`](Self::hold)). Until then it is only lent out (`&T`),
/// so the buffers stay as they were listed; moving a `Holding` moves the message's `Vec`s,
/// not their buffers.
pub(crate) struct Holding<T> {
    msg: T,
    fields: Vec<Span>,
}

impl<T: Protocol> Holding<T> {
    /// Whether `msg` has a byte field of `min` bytes or more: whether a [`Holding`] of it
    /// would list anything (most messages have none, and need not be moved into one).
    #[inline]
    pub(crate) fn worth_it(msg: &T, min: usize) -> bool {
        let min = min.max(1);
        let mut any = false;
        msg.visit_byte_fields(&mut |v| any |= v.len() >= min);
        any
    }

    /// `msg`, with its byte fields of `min` bytes or more (never empty ones: their
    /// buffers have no address of their own).
    pub(crate) fn new(msg: T, min: usize) -> Holding<T> {
        let min = min.max(1);
        let mut fields = Vec::new();
        msg.visit_byte_fields(&mut |v| {
            if v.len() >= min {
                fields.push(Span::of(v));
            }
        });
        Holding { msg, fields }
    }
}

impl<T: Send + 'static> Holding<T> {
    pub(crate) fn msg(&self) -> &T {
        &self.msg
    }

    /// The byte fields listed (none if every one is short).
    pub(crate) fn fields(&self) -> &[Span] {
        &self.fields
    }

    /// The message back; nothing was held.
    pub(crate) fn into_inner(self) -> T {
        self.msg
    }

    /// The message with the byte fields the encoder left out of its frame (`used`: each
    /// with its offset in the frame), ready to be queued. `Err` with the message back if
    /// one of them is not one of its [`fields`](Self::fields).
    pub(crate) fn plan(self, used: Vec<(usize, Span)>) -> Result<Planned<T>, T> {
        if !used.iter().all(|(_, span)| self.fields.contains(span)) {
            return Err(self.msg);
        }
        Ok(Planned {
            msg: self.msg,
            used,
        })
    }
}

/// A message whose frame leaves out the bytes of some of its byte fields
/// ([`Holding::plan`]), until it is queued ([`hold`](Self::hold)) or given back.
pub(crate) struct Planned<T> {
    msg: T,
    /// Each with its offset in the frame.
    used: Vec<(usize, Span)>,
}

impl<T: Send + 'static> Planned<T> {
    /// The bytes left out of the frame.
    pub(crate) fn len(&self) -> usize {
        self.used.iter().map(|(_, span)| span.len).sum()
    }

    /// The message back; nothing was held.
    pub(crate) fn into_inner(self) -> T {
        self.msg
    }

    /// The message becomes the owner of the bytes left out: one [`Held`] per field, with
    /// its offset in the frame, in order.
    pub(crate) fn hold(self) -> Vec<(usize, Held)> {
        let owner = Arc::new(Owner(Mutex::new(Box::new(self.msg))));
        self.used
            .into_iter()
            .map(|(at, span)| {
                let held = Held {
                    owner: owner.clone(),
                    span,
                };
                (at, held)
            })
            .collect()
    }
}

impl<T> std::fmt::Debug for Planned<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Planned({} fields)", self.used.len())
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Holding<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holding")
            .field("msg", &self.msg)
            .field("fields", &self.fields.len())
            .finish()
    }
}

/// A queued message whose byte fields are sent from its own buffers: kept, untouched,
/// until the last [`Held`] of it is dropped. The mutex only makes it `Sync` (for the
/// `Arc`); it is never locked.
struct Owner(#[allow(dead_code)] Mutex<Box<dyn Send>>);

/// Bytes of a queued message, readable as long as this lives.
pub(crate) struct Held {
    owner: Arc<Owner>,
    span: Span,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Held({} bytes)", self.span.len)
    }
}

impl Held {
    /// The bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // The owner is only held: it keeps the span's buffer alive.
        let _ = &self.owner;
        // SAFETY: the span is the buffer of a non-empty `Vec<u8>` that the message in
        // `owner` showed through `visit_byte_fields` (`Holding::plan` lets through only
        // those, and a `Planned` cannot be made otherwise), borrowed for as long as the
        // message: a field of it, or memory it keeps alive (a `Box`, an `Arc`) or that
        // lives forever. `Vec<u8>` has no interior mutability, and safe code cannot hand
        // out a longer-lived `&Vec` from behind a lock or a `RefCell` (their guards are
        // local), so nothing can change or free the buffer while the message lives and no
        // `&mut` to it is made. The message was moved into the owner whole (which leaves
        // its `Vec`s' buffers where they were), is never reached again, and is dropped
        // only with the owner, after this `Held` (it holds an `Arc` of it). So the buffer
        // is allocated, initialised for `len` bytes and unchanged for as long as the
        // returned slice (which borrows `self`).
        unsafe { std::slice::from_raw_parts(self.span.ptr.as_ptr().cast_const(), self.span.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[crate::protocol(crate = "crate")]
    #[derive(Debug, PartialEq)]
    enum Msg {
        Two { a: Vec<u8>, n: u64, b: Vec<u8> },
        Tuple(u8, Vec<u8>),
        Other(Option<Vec<u8>>),
        Wrapped(crate::Bytes),
    }

    #[test]
    fn only_long_byte_fields_are_listed_and_held_bytes_outlive_the_move() {
        let msg = Msg::Two {
            a: vec![1; 1000],
            n: 5,
            b: vec![2; 10],
        };
        let (a, b) = match &msg {
            Msg::Two { a, b, .. } => (Span::of(a), Span::of(b)),
            _ => unreachable!(),
        };
        let holding = Holding::new(msg, 100);
        assert_eq!(holding.fields(), &[a], "b is short");
        assert!(a.is(match holding.msg() {
            Msg::Two { a, .. } => a,
            _ => unreachable!(),
        }));
        // A span that is not one of the fields is refused, and the message comes back.
        let foreign = Span::of(&[7; 3]);
        let holding = match Holding::new(holding.into_inner(), 1).plan(vec![(0, a), (9, foreign)]) {
            Err(msg) => Holding::new(msg, 1),
            Ok(_) => panic!("a foreign span was let through"),
        };
        let planned = holding.plan(vec![(5, b), (7, a)]).expect("both are fields");
        assert_eq!(planned.len(), 1010);
        let held = planned.hold();
        // Moved into the owner: the bytes are where they were.
        assert_eq!(held[0].0, 5);
        assert_eq!(held[0].1.bytes(), &[2; 10][..]);
        assert_eq!(held[1].1.bytes(), &[1; 1000][..]);
        let tuple = Holding::new(Msg::Tuple(1, vec![3; 200]), 100);
        assert_eq!(tuple.fields().len(), 1);
        assert!(matches!(
            tuple.plan(Vec::new()).expect("none").into_inner(),
            Msg::Tuple(1, _)
        ));
        // Not written `Vec<u8>`: not listed (the encoder copies it).
        assert!(
            Holding::new(Msg::Other(Some(vec![4; 500])), 1)
                .fields()
                .is_empty()
        );
    }

    #[test]
    fn the_message_lives_until_its_last_held_bytes_go() {
        let alive = Arc::new(());
        struct Tracked(#[allow(dead_code)] Arc<()>);
        let msg = (vec![9u8; 64], Tracked(alive.clone()));
        let span = Span::of(&msg.0);
        let planned = Planned {
            msg,
            used: vec![(0, span), (64, span)],
        };
        let mut held = planned.hold();
        let (_, last) = held.pop().expect("two");
        drop(held);
        assert_eq!(Arc::strong_count(&alive), 2, "one is left");
        assert_eq!(last.bytes(), &[9; 64][..]);
        drop(last);
        assert_eq!(Arc::strong_count(&alive), 1, "the message is dropped");
    }
}
