//! Bytes sent from a message's own buffers, and descriptors sent themselves: the
//! zero-copy path of large byte fields and descriptor fields.
//!
//! A message's fields of type `Vec<u8>` or `Bytes` ([`Protocol::visit_held_fields`]) of
//! at least a threshold's length are not copied into the frame when the message is sent:
//! the encoder records where it would have copied one ([`Span`]), and once the frame is queued
//! the message itself is moved into an owner that the queue keeps until those bytes are in
//! the kernel ([`Held`]). The kernel then copies them straight from the message's buffer.
//! In the same way, the encoder passes the message's own descriptor for each of its
//! [`Fd`] fields instead of a duplicate ([`Lendable`]), which the owner keeps open until
//! the kernel has it ([`LentFd`]): no `dup` and no `close` of a duplicate per descriptor.
//!
//! Why the bytes stay valid: a `Vec` owns its heap buffer, and moving the message (into the
//! owner's box) moves the `Vec`'s pointer, length and capacity, never the buffer. The
//! message is only lent out (`&T`) from the moment its fields are listed, and is never
//! touched again once it is the owner, which is dropped only after every [`Held`] made
//! from it (each holds an `Arc` of it).

use std::os::fd::{AsRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use crate::__private::held::Field;
use crate::{Fd, Protocol};

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

/// A descriptor field of a message being encoded ([`Protocol::visit_held_fields`]): its
/// descriptor's number, which tells the encoder that an `Fd` it serializes is this field.
/// No other live `Fd` can have the number while the message owns it (an `Fd` owns its
/// descriptor, which is closed only when it is dropped), and moving the message does not
/// change it. Only a number: the descriptor stays the message's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lendable {
    raw: RawFd,
}

impl Lendable {
    fn of(fd: &Fd) -> Lendable {
        Lendable {
            raw: fd.as_raw_fd(),
        }
    }

    /// Whether `fd` is this field (the same descriptor).
    pub(crate) fn is(&self, fd: &Fd) -> bool {
        self.raw == fd.as_raw_fd()
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.raw
    }
}

/// The descriptors an encode passed from the message as they are: each with its index
/// among the frame's descriptors, and its number.
pub(crate) type Lent = Vec<(u32, RawFd)>;

/// What a queued message keeps for the kernel ([`Planned::hold`]): its bytes left out of
/// the frame, each with its offset in the frame, and its descriptors passed as they are,
/// each with its index among the frame's, both in order.
#[derive(Debug)]
pub(crate) struct Kept {
    pub(crate) bytes: Vec<(usize, Held)>,
    pub(crate) fds: Vec<(u32, LentFd)>,
}

/// A message about to be sent, with its byte fields of at least a threshold's length
/// and its descriptor fields listed ([`Protocol::visit_held_fields`]): the encoder leaves
/// out the bytes of those it meets whole ([`fields`](Self::fields)) and passes the listed
/// descriptors themselves ([`fds`](Self::fds)), and once the frame is queued the message
/// becomes the owner of those bytes and descriptors ([`hold`](Planned::hold)). Until then it
/// is only lent out (`&T`), so the buffers and descriptors stay as they were listed;
/// moving a `Holding` moves the message's `Vec`s and `Fd`s, not their buffers, and not
/// what their descriptors are.
pub(crate) struct Holding<T> {
    msg: T,
    fields: Vec<Span>,
    fds: Vec<Lendable>,
}

impl<T: Protocol> Holding<T> {
    /// Whether `msg` has a byte field of `min` bytes or more, or a descriptor field:
    /// whether a [`Holding`] of it would list anything (most messages have none, and need
    /// not be moved into one).
    #[inline]
    pub(crate) fn worth_it(msg: &T, min: usize) -> bool {
        let min = min.max(1);
        let mut any = false;
        msg.visit_held_fields(&mut |field| {
            any |= match field {
                Field::Bytes(v) => v.len() >= min,
                Field::Fd(_) => true,
            }
        });
        any
    }

    /// `msg`, with its byte fields of `min` bytes or more (never empty ones: their
    /// buffers have no address of their own) and its descriptor fields.
    pub(crate) fn new(msg: T, min: usize) -> Holding<T> {
        let min = min.max(1);
        let (mut fields, mut fds) = (Vec::new(), Vec::new());
        msg.visit_held_fields(&mut |field| match field {
            Field::Bytes(v) if v.len() >= min => fields.push(Span::of(v)),
            Field::Bytes(_) => {}
            Field::Fd(fd) => fds.push(Lendable::of(fd)),
        });
        Holding { msg, fields, fds }
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

    /// The descriptor fields listed.
    pub(crate) fn fds(&self) -> &[Lendable] {
        &self.fds
    }

    /// The message back; nothing was held.
    pub(crate) fn into_inner(self) -> T {
        self.msg
    }

    /// The message with the byte fields the encoder left out of its frame (`used`: each
    /// with its offset in the frame) and the descriptors it passed from the message
    /// (`lent`: each with its index among the frame's descriptors), ready to be queued.
    /// `Err` with the message back if one of them is not one of its
    /// [`fields`](Self::fields) or [`fds`](Self::fds).
    pub(crate) fn plan(self, used: Vec<(usize, Span)>, lent: Lent) -> Result<Planned<T>, T> {
        if !used.iter().all(|(_, span)| self.fields.contains(span))
            || !lent
                .iter()
                .all(|(_, raw)| self.fds.iter().any(|fd| fd.raw == *raw))
        {
            return Err(self.msg);
        }
        Ok(Planned {
            msg: self.msg,
            used,
            lent,
        })
    }
}

/// A message whose frame leaves out the bytes of some of its byte fields
/// ([`Holding::plan`]), until it is queued ([`hold`](Self::hold)) or given back.
pub(crate) struct Planned<T> {
    msg: T,
    /// Each with its offset in the frame.
    used: Vec<(usize, Span)>,
    /// Each with its index among the frame's descriptors.
    lent: Lent,
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

    /// The descriptors passed from the message.
    pub(crate) fn lent_fds(&self) -> usize {
        self.lent.len()
    }

    /// The message becomes the owner of the bytes left out and the descriptors passed:
    /// one [`Held`] per field, and one [`LentFd`] per descriptor.
    pub(crate) fn hold(self) -> Kept {
        let owner = Arc::new(Owner(Mutex::new(Box::new(self.msg))));
        let bytes = self
            .used
            .into_iter()
            .map(|(at, span)| {
                let held = Held {
                    owner: owner.clone(),
                    span,
                };
                (at, held)
            })
            .collect();
        let lent = self
            .lent
            .into_iter()
            .map(|(index, raw)| {
                let fd = LentFd {
                    _owner: owner.clone(),
                    raw,
                };
                (index, fd)
            })
            .collect();
        Kept { bytes, fds: lent }
    }
}

impl<T> std::fmt::Debug for Planned<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Planned({} fields, {} descriptors)",
            self.used.len(),
            self.lent.len()
        )
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Holding<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holding")
            .field("msg", &self.msg)
            .field("fields", &self.fields.len())
            .field("fds", &self.fds.len())
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

/// A descriptor of a queued message, passed to the kernel as it is (not a duplicate):
/// open as long as this lives, since the message that owns it is kept until then.
pub(crate) struct LentFd {
    _owner: Arc<Owner>,
    raw: RawFd,
}

impl LentFd {
    /// The descriptor's number, for the system call that passes it. The message's
    /// [`Fd`] field that owns it was listed by `visit_held_fields` (`Holding::plan` lets
    /// through only those), is only borrowed for as long as the message, and closes its
    /// descriptor only when dropped; the message is dropped only with the owner, after
    /// this. So the number names the field's open file while this lives.
    pub(crate) fn raw(&self) -> RawFd {
        self.raw
    }
}

impl std::fmt::Debug for LentFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LentFd({})", self.raw)
    }
}

impl Held {
    /// The bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // The owner is only held: it keeps the span's buffer alive.
        let _ = &self.owner;
        // SAFETY: the span is the buffer of a non-empty `Vec<u8>` that the message in
        // `owner` showed through `visit_held_fields` (`Holding::plan` lets through only
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
    #[derive(Debug)]
    enum Msg {
        Two {
            a: Vec<u8>,
            n: u64,
            b: Vec<u8>,
        },
        Tuple(u8, Vec<u8>),
        Other(Option<Vec<u8>>),
        Wrapped(crate::Bytes),
        Files {
            first: Fd,
            inner: Option<Fd>,
            second: Fd,
        },
    }

    /// A descriptor of a pipe of its own (its `/proc/self/fd` link names that pipe only).
    fn pipe() -> Fd {
        let (_reader, writer) = std::io::pipe().expect("pipe");
        Fd::new(writer)
    }

    /// What descriptor `raw` is now (`None` once closed), for a check that cannot be
    /// fooled by another test's descriptor taking the same number.
    fn what(raw: RawFd) -> Option<std::path::PathBuf> {
        std::fs::read_link(format!("/proc/self/fd/{raw}")).ok()
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
        let holding = match Holding::new(holding.into_inner(), 1)
            .plan(vec![(0, a), (9, foreign)], Vec::new())
        {
            Err(msg) => Holding::new(msg, 1),
            Ok(_) => panic!("a foreign span was let through"),
        };
        let planned = holding
            .plan(vec![(5, b), (7, a)], Vec::new())
            .expect("both are fields");
        assert_eq!(planned.len(), 1010);
        let Kept {
            bytes: held,
            fds: lent,
        } = planned.hold();
        assert!(lent.is_empty());
        // Moved into the owner: the bytes are where they were.
        assert_eq!(held[0].0, 5);
        assert_eq!(held[0].1.bytes(), &[2; 10][..]);
        assert_eq!(held[1].1.bytes(), &[1; 1000][..]);
        let tuple = Holding::new(Msg::Tuple(1, vec![3; 200]), 100);
        assert_eq!(tuple.fields().len(), 1);
        assert!(matches!(
            tuple
                .plan(Vec::new(), Vec::new())
                .expect("none")
                .into_inner(),
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
            lent: Vec::new(),
        };
        let mut held = planned.hold().bytes;
        let (_, last) = held.pop().expect("two");
        drop(held);
        assert_eq!(Arc::strong_count(&alive), 2, "one is left");
        assert_eq!(last.bytes(), &[9; 64][..]);
        drop(last);
        assert_eq!(Arc::strong_count(&alive), 1, "the message is dropped");
    }

    #[test]
    fn only_direct_descriptor_fields_are_listed_and_lent_ones_stay_open_until_let_go() {
        let msg = Msg::Files {
            first: pipe(),
            inner: Some(pipe()),
            second: pipe(),
        };
        let (first, inner, second) = match &msg {
            Msg::Files {
                first,
                inner: Some(inner),
                second,
            } => (first.as_raw_fd(), inner.as_raw_fd(), second.as_raw_fd()),
            _ => unreachable!(),
        };
        assert!(
            Holding::worth_it(&msg, usize::MAX),
            "descriptor fields count"
        );
        let holding = Holding::new(msg, usize::MAX);
        let listed: Vec<RawFd> = holding.fds().iter().map(Lendable::raw).collect();
        assert_eq!(
            listed,
            [first, second],
            "the Option's descriptor is not listed"
        );
        // A descriptor that is not one of the fields is refused, and the message comes back.
        let holding = match holding.plan(Vec::new(), vec![(0, first), (1, inner)]) {
            Err(msg) => Holding::new(msg, usize::MAX),
            Ok(_) => panic!("a descriptor not listed was let through"),
        };
        let planned = holding
            .plan(Vec::new(), vec![(0, first), (2, second)])
            .expect("both are fields");
        assert_eq!(planned.lent_fds(), 2);
        let Kept {
            bytes: held,
            fds: mut lent,
        } = planned.hold();
        assert!(held.is_empty());
        assert_eq!(
            lent.iter()
                .map(|(i, fd)| (*i, fd.raw()))
                .collect::<Vec<_>>(),
            [(0, first), (2, second)]
        );
        let (was_first, was_second) = (what(first), what(second));
        assert!(was_first.is_some() && was_second.is_some());
        let (_, last) = lent.pop().expect("two");
        drop(lent);
        assert_eq!(
            (what(first), what(second)),
            (was_first.clone(), was_second.clone()),
            "the message lives while one is lent"
        );
        drop(last);
        assert!(
            what(first) != was_first && what(second) != was_second,
            "the message went with the last one"
        );
    }

    #[test]
    fn a_message_without_long_byte_fields_or_descriptors_is_not_worth_holding() {
        assert!(!Holding::worth_it(&Msg::Tuple(1, vec![3; 99]), 100));
        assert!(Holding::worth_it(&Msg::Tuple(1, vec![3; 100]), 100));
        assert!(!Holding::worth_it(&Msg::Other(Some(vec![4; 500])), 1));
        assert!(
            !Holding::worth_it(&Msg::Tuple(1, Vec::new()), 0),
            "an empty one never is"
        );
    }
}
