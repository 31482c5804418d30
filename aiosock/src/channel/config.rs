//! Per-end settings.

use std::time::Duration;

use crate::wire;

/// Settings of one channel end: outgoing capacity, maximum frame length, decode budget and
/// linger.
///
/// Set them on an [`Endpoint`](crate::Endpoint) before [`into_split`](crate::Endpoint::into_split).
/// Each end has its own settings; the peer's do not matter to this end.
///
/// Each setting has one name: `set_x` changes it (and returns `&mut Config`, so settings
/// chain) and `x` reads it, as tokio-util's `LengthDelimitedCodec` does with
/// `set_max_frame_length` and `max_frame_length`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let mut config = aiosock::Config::new();
/// config
///     .set_capacity(64 * 1024)
///     .set_max_frame_len(1024 * 1024)
///     .set_decode_budget(8)
///     .set_linger(Duration::from_secs(1));
/// assert_eq!(config.capacity(), 64 * 1024);
/// assert_eq!(config.max_frame_len(), 1024 * 1024);
/// assert_eq!(config.decode_budget(), 8);
/// assert_eq!(config.linger(), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    capacity: usize,
    max_frame_len: usize,
    decode_budget: usize,
    linger: Duration,
    max_calls: usize,
    max_fds_per_frame: usize,
    max_fds: usize,
    max_shm_len: u64,
    spin: Duration,
    woken_by_peer_reads: bool,
    zero_copy_from: usize,
    /// The transport passes descriptors (a Unix socket); false for an end bridged to TCP.
    carries_fds: bool,
}

impl Config {
    /// The default outgoing capacity: 256 KiB.
    pub const DEFAULT_CAPACITY: usize = 256 * 1024;
    /// The default maximum frame length: 64 MiB.
    pub const DEFAULT_MAX_FRAME_LEN: usize = 64 * 1024 * 1024;
    /// The default decode budget: 16 units per payload byte.
    pub const DEFAULT_DECODE_BUDGET: usize = wire::DEFAULT_DECODE_BUDGET;
    /// Units every incoming frame may spend beyond its per-byte budget: 4096, so that
    /// small messages with large in-memory values still decode.
    pub const DECODE_ALLOWANCE: usize = wire::ALLOWANCE;
    /// The default number of calls in flight at once: 1024.
    pub const DEFAULT_MAX_CALLS: usize = 1024;
    /// The largest [`set_max_calls`](Self::set_max_calls) accepts: 65,536.
    pub const MAX_CALLS_LIMIT: usize = 1 << 16;
    /// The default linger: 5 seconds.
    pub const DEFAULT_LINGER: Duration = Duration::from_secs(5);
    /// The default number of descriptors one incoming message may carry: 64.
    pub const DEFAULT_MAX_FDS_PER_FRAME: usize = wire::DEFAULT_MAX_FDS_PER_FRAME;
    /// The most descriptors one message can carry at all: 253, what the kernel passes
    /// with one `sendmsg` (`SCM_MAX_FD`).
    pub const MAX_FDS_PER_FRAME_LIMIT: usize = wire::MAX_FDS_PER_FRAME;
    /// The default number of descriptors an end holds for messages it has not delivered:
    /// 1024.
    pub const DEFAULT_MAX_FDS: usize = wire::DEFAULT_MAX_FDS;
    /// The default size of the largest shared-memory buffer accepted: 1 GiB.
    pub const DEFAULT_MAX_SHM_LEN: u64 = wire::DEFAULT_MAX_SHM_LEN;

    /// The defaults: [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY),
    /// [`DEFAULT_MAX_FRAME_LEN`](Self::DEFAULT_MAX_FRAME_LEN),
    /// [`DEFAULT_DECODE_BUDGET`](Self::DEFAULT_DECODE_BUDGET) and
    /// [`DEFAULT_LINGER`](Self::DEFAULT_LINGER).
    pub fn new() -> Config {
        Config {
            capacity: Self::DEFAULT_CAPACITY,
            max_frame_len: Self::DEFAULT_MAX_FRAME_LEN,
            decode_budget: Self::DEFAULT_DECODE_BUDGET,
            linger: Self::DEFAULT_LINGER,
            max_calls: Self::DEFAULT_MAX_CALLS,
            max_fds_per_frame: Self::DEFAULT_MAX_FDS_PER_FRAME,
            max_fds: Self::DEFAULT_MAX_FDS,
            max_shm_len: Self::DEFAULT_MAX_SHM_LEN,
            spin: Duration::ZERO,
            woken_by_peer_reads: true,
            zero_copy_from: Self::DEFAULT_ZERO_COPY_FROM,
            carries_fds: true,
        }
    }

    /// Sets the outgoing buffer's capacity in bytes (at least 1).
    ///
    /// A send is accepted while fewer than `bytes` are queued, so the queue holds at most
    /// `bytes` plus one message. While the end's writer hands one batch to the kernel, the
    /// next one fills, so memory for outgoing messages stays under twice that (plus up to
    /// four emptied buffers of recent large messages, kept to encode the next ones into).
    pub fn set_capacity(&mut self, bytes: usize) -> &mut Config {
        self.capacity = bytes.max(1);
        self
    }

    /// The outgoing capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The limits the receiver decodes within.
    pub(crate) fn limits(&self) -> wire::Limits {
        wire::Limits {
            max_frame_len: self.max_frame_len,
            decode_budget: self.decode_budget,
            max_fds_per_frame: self.max_fds_per_frame,
            max_fds: self.max_fds(),
            max_shm_len: self.max_shm_len,
        }
    }

    /// Sets the largest frame payload this end sends or accepts, in bytes (at most
    /// `u32::MAX`). A larger incoming frame is [`Error::FrameTooLarge`](crate::Error::FrameTooLarge),
    /// found from its header before anything is allocated for it; a larger outgoing message
    /// is refused by `send` with [`InvalidMessage::TooLarge`](crate::InvalidMessage::TooLarge).
    pub fn set_max_frame_len(&mut self, bytes: usize) -> &mut Config {
        self.max_frame_len = bytes.min(u32::MAX as usize);
        self
    }

    /// The maximum frame payload length in bytes.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Sets how much decoding one incoming frame may spend, in units per payload byte (at
    /// least 1).
    ///
    /// Decoding a message costs one unit for every value in it (each integer, string,
    /// option, enum, element of a sequence or entry of a map, even a zero-sized one) plus
    /// one unit for every byte of memory the value needs outside its parent: the in-memory
    /// size of each sequence element and map entry, of each boxed value, and the length of
    /// each string and byte string. A frame of `n` payload bytes may spend
    /// `budget × n + 4096` units ([`DECODE_ALLOWANCE`](Self::DECODE_ALLOWANCE));
    /// the first unit over that fails the frame with
    /// [`Error::OverBudget`](crate::Error::OverBudget), before the value is allocated.
    ///
    /// So a frame of `n` bytes costs the receiver at most `budget × n + 4096` steps of
    /// work, and the memory decoding it allocates stays under 16 bytes per unit (at most
    /// 4 for vectors, strings and hash maps; collections grow by doubling). See the crate docs' [decode budget](crate#the-decode-budget)
    /// section for what fits under the default of 16 and when to raise it.
    pub fn set_decode_budget(&mut self, units_per_byte: usize) -> &mut Config {
        self.decode_budget = units_per_byte.max(1);
        self
    }

    /// The decode budget in units per payload byte.
    pub fn decode_budget(&self) -> usize {
        self.decode_budget
    }

    /// Sets how long the end keeps trying to hand messages that `send` already accepted to
    /// the kernel once its runtime shut down, or the process exits (as `SO_LINGER` does).
    ///
    /// Shutting a runtime down never waits for this: aiosock's lingering thread writes for
    /// all such ends at once, and stops early for an end whose bytes are all written or
    /// whose peer is gone. Only the process's exit waits, at most until the latest deadline.
    /// Zero writes what the kernel takes at once and gives up on the rest.
    pub fn set_linger(&mut self, linger: Duration) -> &mut Config {
        self.linger = linger;
        self
    }

    /// The linger duration.
    pub fn linger(&self) -> Duration {
        self.linger
    }

    /// Sets how many calls this end may have in flight at once (at least 1): a call made
    /// while that many await their replies waits for one to finish, and a `try_` call
    /// fails with [`CallError::Full`](crate::CallError::Full).
    pub fn set_max_calls(&mut self, calls: usize) -> &mut Config {
        self.max_calls = calls.clamp(1, Self::MAX_CALLS_LIMIT);
        self
    }

    /// The most calls in flight at once.
    pub fn max_calls(&self) -> usize {
        self.max_calls
    }

    /// Sets how many descriptors one incoming message may carry (0 to 253): a frame that
    /// announces or brings more is [`FdError::TooManyInFrame`](crate::FdError::TooManyInFrame).
    /// 0 refuses descriptors altogether. What this end sends is limited only by the
    /// kernel's 253.
    pub fn set_max_fds_per_frame(&mut self, fds: usize) -> &mut Config {
        self.max_fds_per_frame = fds.min(Self::MAX_FDS_PER_FRAME_LIMIT);
        self
    }

    /// The most descriptors one incoming message may carry.
    pub fn max_fds_per_frame(&self) -> usize {
        self.max_fds_per_frame
    }

    /// Sets how many descriptors this end holds at most for messages it has received but
    /// not delivered yet (at least three times the larger of
    /// [`max_fds_per_frame`](Self::max_fds_per_frame) and 64, which it is raised to): those
    /// that arrived and wait for their frames (a sender passes descriptors slightly ahead
    /// of their frames, up to 64 at a time, for many frames in one system call), and those
    /// in messages [`serve`](crate::Receiver::serve) read ahead while a method ran, which
    /// stops reading ahead before the limit. A peer that sends more is
    /// [`FdError::TooManyHeld`](crate::FdError::TooManyHeld). Once delivered, a message's descriptors are the
    /// program's.
    ///
    /// It bounds sending too: a message with descriptors waits for room (`send`), or is
    /// [`TrySendError::Full`](crate::TrySendError::Full) (`try_send`), while the outgoing
    /// queue holds this many, since each queued descriptor is held open until the kernel
    /// takes it (a duplicate, or a queued message's own; at most about twice the limit
    /// are held: the queue, and the batch being written). Keep it well under the process's descriptor limit
    /// (`RLIMIT_NOFILE`) divided by the connections it serves.
    pub fn set_max_fds(&mut self, fds: usize) -> &mut Config {
        self.max_fds = fds;
        self
    }

    /// The most descriptors held for undelivered messages.
    pub fn max_fds(&self) -> usize {
        self.max_fds.max(3 * self.batch_fds())
    }

    /// The most descriptors one read may bring for frames not yet decoded: a batch of
    /// the wire's, or one frame's.
    pub(crate) fn batch_fds(&self) -> usize {
        self.max_fds_per_frame.max(wire::MAX_BATCH_FDS)
    }

    /// Sets the size of the largest shared-memory buffer ([`Shm`](crate::Shm)) this end
    /// accepts in a message, in bytes. A larger one is
    /// [`FdError::ShmTooLarge`](crate::FdError::ShmTooLarge). The buffer's memory belongs
    /// to its memfd, allocated by its sender (one with holes is
    /// [`FdError::ShmSparse`](crate::FdError::ShmSparse)), but it stays allocated while
    /// this process holds the `Shm`, so lower this for untrusted peers.
    pub fn set_max_shm_len(&mut self, bytes: u64) -> &mut Config {
        self.max_shm_len = bytes;
        self
    }

    /// The largest shared-memory buffer accepted, in bytes.
    pub fn max_shm_len(&self) -> u64 {
        self.max_shm_len
    }

    /// Sets the low-latency mode's spin: a receiver with nothing to read polls its socket
    /// in a busy loop for up to this long before it parks (zero, the default, parks at
    /// once).
    ///
    /// Parking costs a wake-up when the next message comes: on an idle machine (and most
    /// of all on a virtual one whose idle vCPUs halt), that is most of a small message's
    /// round trip. Spinning saves it when the next message comes within the spin, at a
    /// price: the receiver's thread, and the runtime it runs on (no other task of a
    /// current-thread runtime runs meanwhile), busy for up to the spin at every wait.
    /// Choose it for request and reply loops whose latency matters more than a core, with
    /// a spin a little over the peer's typical answer time (tens of microseconds); see the
    /// benchmark's `rtt` rows for `aiosock-spin`.
    ///
    /// The spin is spent only between messages: while part of a frame is buffered (a
    /// peer dribbling a frame's bytes), and while [`serve`](crate::Receiver::serve) reads
    /// ahead during a handler method, the receiver parks at once. At most
    /// [`MAX_SPIN`](Self::MAX_SPIN); longer is taken as that.
    pub fn set_spin(&mut self, spin: Duration) -> &mut Config {
        self.spin = spin.min(Self::MAX_SPIN);
        self
    }

    /// The longest spin [`set_spin`](Self::set_spin) takes: one second.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let mut config = aiosock::Config::new();
    /// config.set_spin(Duration::from_secs(3600));
    /// assert_eq!(config.spin(), aiosock::Config::MAX_SPIN);
    /// ```
    pub const MAX_SPIN: Duration = Duration::from_secs(1);

    /// The low-latency mode's spin: zero when off.
    pub fn spin(&self) -> Duration {
        self.spin
    }

    /// Sets whether the end's socket is also watched for room to write, as a Tokio
    /// `UnixStream` is (on by default). Nothing waits for that readiness on this
    /// registration (the writer has its own), so all it does is wake the runtime's thread
    /// when the peer reads what this end sent: on an idle machine whose idle CPUs halt (a
    /// virtual machine most of all), that wake-up, which comes while the peer works on its
    /// answer, leaves the thread's CPU just idle rather than halted when the answer comes,
    /// and a request and reply costs about a third less there (the benchmark's `rtt` and
    /// `calls-1` rows). The price: while the runtime is parked, one more wake-up of its
    /// thread for each of the peer's reads of this end's messages (a few microseconds of
    /// CPU each; none while it is busy, and none on an idle connection). Turn it off for
    /// ends that mostly send to a peer that reads them one by one, when CPU matters more
    /// than latency. It takes effect when the end is first used in a runtime.
    ///
    /// ```
    /// let mut config = aiosock::Config::new();
    /// assert!(config.woken_by_peer_reads());
    /// config.set_woken_by_peer_reads(false);
    /// assert!(!config.woken_by_peer_reads());
    /// ```
    pub fn set_woken_by_peer_reads(&mut self, on: bool) -> &mut Config {
        self.woken_by_peer_reads = on;
        self
    }

    /// Whether the end's socket is also watched for room to write (see
    /// [`set_woken_by_peer_reads`](Self::set_woken_by_peer_reads)).
    pub fn woken_by_peer_reads(&self) -> bool {
        self.woken_by_peer_reads
    }

    /// The default size from which a message's `Vec<u8>` fields are sent from their own
    /// buffers: 32 KiB.
    pub const DEFAULT_ZERO_COPY_FROM: usize = 32 * 1024;

    /// Sets the size from which a message's fields written `Vec<u8>` are not copied into
    /// the outgoing buffer: the message stays queued until their bytes are in the kernel,
    /// which copies them from the fields' own buffers (see
    /// [delivery](crate#delivery-and-backpressure)). Smaller fields are copied, which costs
    /// less than keeping their message. `usize::MAX` copies every field.
    ///
    /// ```
    /// let mut config = aiosock::Config::new();
    /// assert_eq!(config.zero_copy_from(), aiosock::Config::DEFAULT_ZERO_COPY_FROM);
    /// config.set_zero_copy_from(usize::MAX);
    /// assert_eq!(config.zero_copy_from(), usize::MAX);
    /// ```
    pub fn set_zero_copy_from(&mut self, bytes: usize) -> &mut Config {
        self.zero_copy_from = bytes;
        self
    }

    /// The size from which `Vec<u8>` fields are sent from their own buffers.
    pub fn zero_copy_from(&self) -> usize {
        self.zero_copy_from
    }

    /// This end's transport cannot pass descriptors (TCP): a message holding one is
    /// refused at `send`, and none are accepted.
    pub(crate) fn without_fds(&mut self) -> &mut Config {
        self.carries_fds = false;
        self.max_fds_per_frame = 0;
        self
    }

    /// Whether this end's transport passes descriptors.
    pub(crate) fn carries_fds(&self) -> bool {
        self.carries_fds
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::new()
    }
}
