//! The traits that `#[aiosock::protocol]` implements for a message enum.
//!
//! Users do not implement these traits by hand: the attribute macro does, and the
//! channel ends use them to check the handshake ([`Protocol`]) and to call a handler
//! ([`Dispatch`]).

use std::fmt;
use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A message type that can travel over an aiosock channel.
///
/// Implemented by `#[aiosock::protocol]`. The name and fingerprint go into the hello that
/// each side writes first (see the [wire format](crate#wire-format-version-2)), so that two processes built from
/// different enums notice it before the first message and fail with
/// [`Error::ProtocolMismatch`](crate::Error::ProtocolMismatch).
///
/// # Fingerprint limits
///
/// The fingerprint is computed by the macro from the enum's name, its variants' names and
/// shapes, and the field names and field types *as written* (their tokens). It does not look
/// into the types behind a field: changing the definition of a struct used in a field, or
/// naming the same type by another path (`String` vs `std::string::String`), is not seen.
/// Serde attributes that change the encoding are part of the tokens only where they are
/// written on the enum itself.
///
/// # Examples
///
/// ```
/// use aiosock::Protocol;
///
/// #[aiosock::protocol]
/// enum Ping {
///     Ping(u64),
/// }
///
/// assert_eq!(Ping::NAME, "Ping");
/// assert_ne!(Ping::FINGERPRINT, 0);
/// ```
pub trait Protocol: Serialize + DeserializeOwned + Send + 'static {
    /// The enum's name, as written.
    const NAME: &'static str;
    /// A 64-bit hash of the enum's shape (see the limits above).
    const FINGERPRINT: u64;
    /// Whether any variant is a call: declared with `#[reply(T)]`, so that the peer answers
    /// it. An end that receives such a protocol keeps its sending direction open for the
    /// answers while its receiver runs.
    const HAS_CALLS: bool = false;
    /// The names of the variants compiled in, in order (their position is their number on
    /// the wire).
    const VARIANTS: &'static [&'static str];
    /// How many of the first variants are not marked `#[added]`: every peer must know
    /// them (see [compatible evolution](crate#compatible-evolution)).
    const BASELINE: usize;
    /// `VARIANTS.len()`, for array lengths in the generated code. Not public API.
    #[doc(hidden)]
    const VARIANT_COUNT: usize;
    /// A fingerprint per variant in `VARIANTS`, carried in the hello. Not public API.
    #[doc(hidden)]
    const VARIANT_FINGERPRINTS: &'static [u64];
    /// The number of this message's variant. Not public API.
    #[doc(hidden)]
    fn variant_index(&self) -> usize;

    /// Calls `visit` with each field of this message's variant of type `Vec<u8>` or
    /// [`Bytes`](crate::Bytes) (its vector), or [`Fd`](crate::Fd): a send hands the large
    /// byte fields to the kernel from their own buffers, and the descriptors themselves
    /// instead of duplicates. Every field visited lives as long as the borrow of the
    /// message (`'a`), so it is the message's (or as lasting). Not public API.
    #[doc(hidden)]
    fn visit_held_fields<'a>(&'a self, visit: &mut dyn FnMut(crate::__private::held::Field<'a>)) {
        let _ = visit;
    }
}

/// Calls the method of a generated handler trait that matches a message's variant.
///
/// `#[aiosock::protocol]` on `enum Foo` generates a trait `FooHandler` and implements
/// `Dispatch<H>` for `Foo` for every `H: FooHandler`. [`Receiver::serve`](crate::Receiver::serve)
/// uses it; you can also call it yourself on a message you got from
/// [`Receiver::recv`](crate::Receiver::recv), to mix awaiting and handling.
///
/// # Examples
///
/// ```
/// use aiosock::Dispatch;
///
/// #[aiosock::protocol]
/// enum Cmd {
///     Add(u64),
///     Reset,
/// }
///
/// struct Sum(u64);
///
/// impl CmdHandler for Sum {
///     async fn on_add(&mut self, n: u64) {
///         self.0 += n;
///     }
///     async fn on_reset(&mut self) {
///         self.0 = 0;
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut sum = Sum(0);
/// Cmd::Add(2).dispatch(&mut sum).await;
/// Cmd::Add(3).dispatch(&mut sum).await;
/// assert_eq!(sum.0, 5);
/// # });
/// ```
pub trait Dispatch<H>: Protocol {
    /// Calls `handler`'s method for this message's variant, with the variant's fields.
    fn dispatch(self, handler: &mut H) -> impl Future<Output = ()> + Send;

    /// Calls `handler`'s `closed` hook: the peer closed the channel and every earlier
    /// message was handled.
    fn closed(handler: &mut H) -> impl Future<Output = ()> + Send;

    /// Calls `handler`'s method for this message's variant and encodes what it returns:
    /// the reply of a call variant, nothing for a one-way variant. Used by
    /// [`Receiver::serve`](crate::Receiver::serve) to answer calls; not public API.
    #[doc(hidden)]
    fn dispatch_answer(self, handler: &mut H) -> impl Future<Output = Answer> + Send;
}

/// The client that `#[aiosock::protocol]` generates for a protocol (`FooClient` for
/// `enum Foo`): a typed face over a [`Sender`](crate::Sender) with one method per variant.
///
/// Implemented by the macro; [`Pool`](crate::Pool) uses it to make a client for each
/// worker it starts.
pub trait Client: Clone + Send + Sync + 'static {
    /// The protocol the client sends.
    type Protocol: Protocol;

    /// The client that sends through `sender`.
    fn from_sender(sender: crate::Sender<Self::Protocol>) -> Self;
}

/// What a handler method returned, encoded for the wire: the reply of a call variant, or
/// nothing for a one-way variant. Made by the code `#[aiosock::protocol]` generates; not
/// public API.
#[doc(hidden)]
pub struct Answer(pub(crate) AnswerKind);

pub(crate) enum AnswerKind {
    /// A one-way variant: nothing to send back.
    None,
    /// A call variant's reply, encoded as a whole reply frame whose call id is still to
    /// be filled in, with the descriptors the frame carries.
    Reply(Vec<u8>, Vec<std::os::fd::OwnedFd>),
    /// A call variant's reply that cannot be sent: it did not encode, or is too large.
    Refused(crate::error::InvalidMessage),
}

impl Answer {
    /// The answer of a one-way variant.
    pub fn none() -> Answer {
        Answer(AnswerKind::None)
    }

    /// The answer of a call variant: `reply`, encoded.
    pub fn of<R: Serialize>(reply: &R) -> Answer {
        // Given back by the responder once the frame is queued.
        let mut frame = crate::channel::take_scratch();
        match crate::wire::encode_frame_as(
            &mut frame,
            reply,
            usize::MAX,
            crate::wire::Kind::Reply(0),
        ) {
            Ok(fds) => Answer(AnswerKind::Reply(frame, fds)),
            Err(why) => Answer(AnswerKind::Refused(why)),
        }
    }
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            AnswerKind::None => "Answer::None",
            AnswerKind::Reply(..) => "Answer::Reply(..)",
            AnswerKind::Refused(_) => "Answer::Invalid(..)",
        })
    }
}

/// The name and fingerprint of a protocol, as carried in the hello.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProtocolId {
    name: String,
    fingerprint: u64,
}

impl ProtocolId {
    pub(crate) fn new(name: String, fingerprint: u64) -> ProtocolId {
        ProtocolId { name, fingerprint }
    }

    pub(crate) fn of<P: Protocol>() -> ProtocolId {
        ProtocolId::new(P::NAME.to_owned(), P::FINGERPRINT)
    }

    /// The protocol's enum name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The protocol's fingerprint.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

impl fmt::Debug for ProtocolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ProtocolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` ({:#018x})", self.name, self.fingerprint)
    }
}

/// A protocol as this end knows it: its name and fingerprint, and for compatible
/// evolution its variants' fingerprints and how many of them are not `#[added]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) id: ProtocolId,
    pub(crate) variants: &'static [u64],
    pub(crate) baseline: usize,
}

impl Shape {
    pub(crate) fn of<P: Protocol>() -> Shape {
        Shape {
            id: ProtocolId::of::<P>(),
            variants: P::VARIANT_FINGERPRINTS,
            baseline: P::BASELINE,
        }
    }

    /// A protocol without variant fingerprints, for tests of the hello.
    #[cfg(test)]
    pub(crate) fn plain(name: &str, fingerprint: u64) -> Shape {
        Shape {
            id: ProtocolId::new(name.to_owned(), fingerprint),
            variants: &[],
            baseline: 0,
        }
    }
}

/// Both sides of a failed protocol check, in [`Error::ProtocolMismatch`](crate::Error::ProtocolMismatch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// What this end sends.
    pub local_sends: ProtocolId,
    /// What this end expects to receive.
    pub local_expects: ProtocolId,
    /// What the peer sends.
    pub peer_sends: ProtocolId,
    /// What the peer expects to receive.
    pub peer_expects: ProtocolId,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "protocol mismatch: this end sends {} and expects {}, the peer sends {} and expects {}",
            self.local_sends, self.local_expects, self.peer_sends, self.peer_expects
        )
    }
}
