//! Channel ends: [`Endpoint`], [`Sender`] and [`Receiver`].
//!
//! # Order
//!
//! Messages from one sender arrive in the order they were sent. Clones of a sender feed
//! one stream: each message is encoded as one whole frame under a lock, so frames from
//! concurrent clones never interleave, and each clone's messages keep their order.
//!
//! # Backpressure and memory
//!
//! Each end has one outgoing buffer bounded in bytes ([`Config::capacity`]). `send` waits
//! while it is full, `try_send` reports [`TrySendError::Full`](crate::TrySendError::Full),
//! and [`Sender::ready`] waits for room. Whatever the peer does (even if it never reads),
//! the end holds at most twice the capacity plus one message for outgoing data, and at
//! most the bytes of one frame (up to [`Config::max_frame_len`]) plus 64 KiB for incoming
//! data.
//!
//! # Close
//!
//! Dropping every [`Sender`] of an end lets its writer send what is queued and then shut
//! the direction down; the peer's [`Receiver::recv`] returns `Ok(None)` after the last
//! message. A peer that exits or is killed closes both directions at once: the survivor's
//! `recv` returns `Ok(None)` (or [`Error::Truncated`](crate::Error::Truncated) if it died
//! mid-frame) and its sends fail with [`SendError::Closed`](crate::SendError::Closed).

mod config;
mod endpoint;
pub(crate) mod linger;
mod reader;
mod receiver;
mod sender;
mod shared;
mod writer;

pub use config::Config;
pub use endpoint::{Endpoint, pair};
pub use receiver::Receiver;
pub use sender::Sender;
