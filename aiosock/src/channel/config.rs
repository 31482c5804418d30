//! Per-end settings.

use std::time::Duration;

/// Settings of one channel end: buffer capacity, maximum frame length and linger.
///
/// Set them on an [`Endpoint`](crate::Endpoint) before [`into_split`](crate::Endpoint::into_split).
/// Each end has its own settings; the peer's do not matter to this end.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let mut config = aiosock::Config::new();
/// config
///     .capacity(64 * 1024)
///     .max_frame_len(1024 * 1024)
///     .linger(Duration::from_secs(1));
/// assert_eq!(config.capacity_bytes(), 64 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    capacity: usize,
    max_frame_len: usize,
    linger: Duration,
}

impl Config {
    /// The default outgoing capacity: 256 KiB.
    pub const DEFAULT_CAPACITY: usize = 256 * 1024;
    /// The default maximum frame length: 64 MiB.
    pub const DEFAULT_MAX_FRAME_LEN: usize = 64 * 1024 * 1024;
    /// The default linger: 5 seconds.
    pub const DEFAULT_LINGER: Duration = Duration::from_secs(5);

    /// The defaults: [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY),
    /// [`DEFAULT_MAX_FRAME_LEN`](Self::DEFAULT_MAX_FRAME_LEN) and
    /// [`DEFAULT_LINGER`](Self::DEFAULT_LINGER).
    pub fn new() -> Config {
        Config {
            capacity: Self::DEFAULT_CAPACITY,
            max_frame_len: Self::DEFAULT_MAX_FRAME_LEN,
            linger: Self::DEFAULT_LINGER,
        }
    }

    /// Sets the outgoing buffer's capacity in bytes (at least 1).
    ///
    /// A send is accepted while fewer than `bytes` are queued, so the queue holds at most
    /// `bytes` plus one message. While the end's writer hands one batch to the kernel, the
    /// next one fills, so memory for outgoing messages stays under twice that.
    pub fn capacity(&mut self, bytes: usize) -> &mut Config {
        self.capacity = bytes.max(1);
        self
    }

    /// Sets the largest frame payload this end sends or accepts, in bytes (at most
    /// `u32::MAX`). A larger incoming frame is [`Error::FrameTooLarge`](crate::Error::FrameTooLarge),
    /// found from its header before anything is allocated for it; a larger outgoing message
    /// is refused by `send` with [`InvalidMessage::TooLarge`](crate::InvalidMessage::TooLarge).
    pub fn max_frame_len(&mut self, bytes: usize) -> &mut Config {
        self.max_frame_len = bytes.min(u32::MAX as usize);
        self
    }

    /// Sets how long the end may block, when the runtime it is attached to shuts down, to
    /// hand messages that `send` already accepted to the kernel (as `SO_LINGER` does).
    pub fn linger(&mut self, linger: Duration) -> &mut Config {
        self.linger = linger;
        self
    }

    /// The outgoing capacity in bytes.
    pub fn capacity_bytes(&self) -> usize {
        self.capacity
    }

    /// The maximum frame payload length in bytes.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_len
    }

    /// The linger duration.
    pub fn linger_duration(&self) -> Duration {
        self.linger
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::new()
    }
}
