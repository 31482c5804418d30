//! Tracing, with the `tracing` feature: one span per connection, and events for the hello,
//! receive errors (a protocol mismatch among them), the close of each direction, long
//! backpressure waits, and child processes starting and exiting. Without the feature these
//! items are empty and the macros expand to nothing: no tracing code is compiled in.

#[cfg(feature = "tracing")]
pub(crate) use tracing::Span;

/// A stand-in for `tracing::Span` when the feature is off.
#[cfg(not(feature = "tracing"))]
#[derive(Debug, Clone, Default)]
pub(crate) struct Span;

/// The span of a new connection end: the protocols it sends and expects, its descriptor,
/// and the peer's process id where it is known (an end inherited from a parent).
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(crate) fn connection(sends: &str, expects: &str, fd: i32, peer_pid: Option<u32>) -> Span {
    #[cfg(feature = "tracing")]
    {
        tracing::info_span!("aiosock.connection", sends, expects, fd, peer_pid)
    }
    #[cfg(not(feature = "tracing"))]
    {
        Span
    }
}

/// An event in a connection's span: `event!(span, level, fields and message)`.
macro_rules! event {
    ($span:expr, $level:ident, $($rest:tt)+) => {
        #[cfg(feature = "tracing")]
        ::tracing::$level!(parent: $span, $($rest)+);
    };
}

/// An event outside any connection: `process_event!(level, fields and message)`.
macro_rules! process_event {
    ($level:ident, $($rest:tt)+) => {
        #[cfg(feature = "tracing")]
        ::tracing::$level!($($rest)+);
    };
}

pub(crate) use {event, process_event};

/// Measures a wait, only with the feature (otherwise it is empty and measures nothing).
#[derive(Debug)]
pub(crate) struct Stopwatch {
    #[cfg(feature = "tracing")]
    started: std::time::Instant,
}

/// Waits longer than this are reported.
#[cfg(feature = "tracing")]
pub(crate) const LONG_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

impl Stopwatch {
    pub(crate) fn start() -> Stopwatch {
        Stopwatch {
            #[cfg(feature = "tracing")]
            started: std::time::Instant::now(),
        }
    }

    /// Reports the wait in `span` if it was long.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn report(&self, span: &Span, what: &str) {
        #[cfg(feature = "tracing")]
        {
            let waited = self.started.elapsed();
            if waited >= LONG_WAIT {
                tracing::info!(parent: span, waited_ms = waited.as_millis() as u64, "{what} waited for room in the outgoing buffer");
            }
        }
    }
}
