//! Channel ends: [`Endpoint`], [`Sender`] and [`Receiver`].
//!
//! # Order
//!
//! Messages from one sender arrive in the order they were sent. Clones of a sender feed
//! one stream: each message is encoded into a frame of its own, then appended whole to the
//! queue under a lock, so frames from concurrent clones never interleave, and each clone's
//! messages keep their order.
//!
//! # Backpressure and memory
//!
//! Each end has one outgoing buffer bounded in bytes ([`Config::capacity`]). `send` waits
//! while it is full, `try_send` reports [`TrySendError::Full`](crate::TrySendError::Full),
//! and [`Sender::ready`] waits for room. Whatever the peer does (even if it never reads),
//! the end holds at most twice the capacity plus one message for outgoing data (and keeps
//! up to four emptied buffers of recent large messages, to encode the next ones into), and
//! at most the bytes of one frame (up to [`Config::max_frame_len`]) plus 64 KiB for
//! incoming data.
//!
//! # Close
//!
//! See the crate docs' "Close" section: the last `Sender` ends the direction after what it
//! accepted (at once when the socket takes it), a dropped `Receiver` discards what it will
//! never read so that the peer's sends fail promptly, and a dead peer closes both ways.
//!
//! # Files
//!
//! `sender.rs` and `receiver.rs` are thin typed faces over `shared.rs` (the socket, its
//! registration, the outgoing queue and the close state); `writer.rs` is the writer task,
//! `linger.rs` writes out ends whose writer is gone and does the exit flush, `reader.rs` is
//! the receiver's buffer.

mod calls;
mod config;
mod endpoint;
pub(crate) mod linger;
mod queue;
mod reader;
mod receiver;
mod responder;
mod sender;
mod shared;
mod stream;
mod writer;

pub(crate) use writer::pause;

pub use config::Config;
pub use endpoint::{Endpoint, pair};
pub use receiver::{Receiver, Request};
pub use sender::Sender;
pub(crate) use sender::Watch;
pub(crate) use shared::take_scratch;
pub use stream::CallStream;
