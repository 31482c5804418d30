//! Lingering: writing out what `send` accepted once an end's writer task is gone (its
//! runtime shut down, or no runtime ever ran it), and when the process exits.
//!
//! - An end whose writer is gone is *handed off*: it takes no more sends, and what it still
//!   holds is written at once if the socket takes it, else by one background thread that
//!   waits for all such ends together (one `poll` over their sockets). Each end lingers
//!   until its bytes are written, its peer is gone, or its [`Config::linger`] deadline
//!   passes; then its direction is shut down. Dropping a runtime never blocks for this.
//! - When the process exits through `exit` (returning from `main`, `std::process::exit`),
//!   an exit hook hands off every live end this process made, and waits until all
//!   lingering ends are done: at most until the latest deadline, not the sum of them.
//!   Every end, not only those that hold bytes when the hook looks: other threads run on
//!   while the hook waits, and a send they make on an end left alone would be accepted and
//!   then cut off when the process ends. Handed off, such a send fails with `Closed` and
//!   gives its message back. An end made once the hook has begun is handed off as it is
//!   made. A forked child does the same before it ends.
//!
//! [`Config::linger`]: crate::Config::linger

use std::os::fd::BorrowedFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::channel::Config;
use crate::channel::shared::{Flow, Shared, Writer};
use crate::sys;

/// Every live end, for the exit hook.
static ENDS: Mutex<Ends> = Mutex::new(Ends {
    all: Vec::new(),
    prune_at: 64,
    exiting: false,
});

struct Ends {
    all: Vec<Weak<Shared>>,
    /// Dead entries are dropped when the list reaches this length.
    prune_at: usize,
    /// The exit hook has begun: ends made from now on are handed off at once.
    exiting: bool,
}

/// Ends handed off and not done yet, with their deadlines.
static LINGERING: Mutex<Lingering> = Mutex::new(Lingering {
    ends: Vec::new(),
    threads: Vec::new(),
    thread_running: false,
});

/// Signalled when the lingering list empties.
static DONE: Condvar = Condvar::new();

struct Lingering {
    ends: Vec<(Arc<Shared>, Instant)>,
    /// Background threads started so far (joined by [`settle`]).
    threads: Vec<JoinHandle<()>>,
    thread_running: bool,
}

fn lock<T>(m: &'static Mutex<T>) -> MutexGuard<'static, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The longest a lingering thread sleeps in `poll` before it looks at the list again.
const POLL_AT_MOST: Duration = Duration::from_millis(100);
/// The pause before another try at an end whose descriptors the kernel refused for now.
const REFUSED_PAUSE: Duration = Duration::from_millis(5);

/// Records a new end, and installs the exit hook the first time.
pub(crate) fn register(shared: &Arc<Shared>) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // Without the hook, exiting loses what the kernel has not taken yet, as before.
        let _ = sys::at_exit(exit_hook);
    });
    let mut ends = lock(&ENDS);
    if ends.exiting {
        // Made on another thread while the process exits: the hook has looked already.
        drop(ends);
        hand_off(shared.clone());
        return;
    }
    if ends.all.len() >= ends.prune_at {
        ends.all.retain(|end| end.strong_count() > 0);
        ends.prune_at = (2 * ends.all.len()).max(64);
    }
    ends.all.push(Arc::downgrade(shared));
}

/// The end's writer is gone: it takes no more sends, and its bytes are written (at once
/// if the socket takes them, else by the lingering thread), then its direction shut down.
pub(crate) fn hand_off(shared: Arc<Shared>) {
    if !shared.owned_here() {
        // The parent's end, copied into a child by a plain `fork`: leave it alone.
        return;
    }
    {
        // Marked gone and listed in one critical section of the lingering list: an exit
        // on another thread that finds the writer gone (and so leaves the end to this
        // hand-off) also finds the end listed, and waits for it; its own try at the end
        // queues behind this one's on the batch lock.
        let mut lingering = lock(&LINGERING);
        {
            let mut out = shared.out();
            out.closed = true;
            out.writer = Writer::Gone;
        }
        let deadline = Instant::now() + shared.config.linger();
        lingering.ends.push((shared.clone(), deadline));
    }
    crate::trace::event!(&shared.span, debug, "writer gone: lingering");
    shared.events.notify_waiters();
    match try_finish(&shared) {
        Some(()) => {
            let mut lingering = lock(&LINGERING);
            lingering.ends.retain(|(end, _)| !Arc::ptr_eq(end, &shared));
            if lingering.ends.is_empty() {
                DONE.notify_all();
            }
        }
        None => {
            let mut lingering = lock(&LINGERING);
            if !lingering.thread_running {
                lingering.thread_running = true;
                lingering.threads.retain(|t| !t.is_finished());
                let spawned = std::thread::Builder::new()
                    .name("aiosock-linger".into())
                    .spawn(|| drive(true));
                match spawned {
                    Ok(thread) => lingering.threads.push(thread),
                    // No thread: the ends wait for the exit hook (or `settle`).
                    Err(_) => lingering.thread_running = false,
                }
            }
        }
    }
}

/// Writes what the end holds without blocking; `Some` if it is done (everything written,
/// or the peer gone), after ending its direction.
fn try_finish(shared: &Shared) -> Option<()> {
    let flow = {
        let mut batch = shared.batch();
        shared.write_now(&mut batch)
    };
    match flow {
        Ok(Flow::Full | Flow::More) => None,
        Ok(Flow::Refused) => {
            // Descriptors refused for now, on a socket that may have room: its readiness
            // would not make the wait below wait.
            std::thread::sleep(REFUSED_PAUSE);
            None
        }
        Ok(Flow::Drained) | Err(_) => {
            shared.end_sending();
            shared.events.notify_waiters();
            Some(())
        }
    }
}

/// Writes out every lingering end, waiting on all their sockets at once, until none is
/// left. On the lingering thread (`background`), marks the thread gone at the end.
fn drive(background: bool) {
    loop {
        let ends: Vec<(Arc<Shared>, Instant)> = lock(&LINGERING).ends.clone();
        let now = Instant::now();
        let mut done = Vec::new();
        for (end, deadline) in &ends {
            if !end.owned_here() {
                // Lingering in the parent when a plain `fork` copied the list: the
                // parent's business, not this child's.
                done.push(end.clone());
            } else if try_finish(end).is_some() {
                done.push(end.clone());
            } else if now >= *deadline {
                // The peer did not read in time: give up on what is left, end the direction.
                crate::trace::event!(&end.span, warn, "linger deadline passed with bytes unsent");
                end.end_sending();
                done.push(end.clone());
            }
        }
        let mut lingering = lock(&LINGERING);
        lingering
            .ends
            .retain(|(end, _)| !done.iter().any(|d| Arc::ptr_eq(d, end)));
        if lingering.ends.is_empty() {
            if background {
                lingering.thread_running = false;
            }
            DONE.notify_all();
            return;
        }
        let waiting: Vec<(Arc<Shared>, Instant)> = lingering.ends.clone();
        drop(lingering);
        let next = waiting.iter().map(|(_, d)| *d).min().unwrap_or(now);
        let timeout = next
            .saturating_duration_since(Instant::now())
            .min(POLL_AT_MOST);
        let fds: Vec<BorrowedFd<'_>> = waiting.iter().map(|(end, _)| end.fd()).collect();
        let _ = sys::poll_writable(&fds, timeout);
    }
}

/// Writes out every lingering end on this thread, then waits for the lingering threads to
/// exit: afterwards the process has no aiosock thread of its own. `fork` calls it.
pub(crate) fn settle() {
    drive(false);
    let threads = std::mem::take(&mut lock(&LINGERING).threads);
    for thread in threads {
        let _ = thread.join();
    }
}

/// Hands off every live end (so that no send is accepted from now on), then writes out
/// what they hold (at most until the latest linger deadline). Run when the process exits,
/// and by a forked child before it ends.
pub(crate) fn exit_flush() {
    // Bridges first: they read what the ends write out below.
    crate::tcp::move_at_exit(Instant::now() + Config::DEFAULT_LINGER);
    let ends: Vec<Arc<Shared>> = {
        let mut ends = lock(&ENDS);
        ends.exiting = true;
        ends.all
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|end| end.owned_here())
            .collect()
    };
    for end in ends {
        // Looked at under the lingering list's lock: an end whose writer is gone is
        // either done writing, or listed there by the hand-off that marked it.
        let gone = {
            let _lingering = lock(&LINGERING);
            matches!(end.out().writer, Writer::Gone)
        };
        if !gone {
            hand_off(end);
        }
    }
    drive(false);
    // A lingering thread may still be finishing an end it took before we looked.
    let mut lingering = lock(&LINGERING);
    while lingering.thread_running && !lingering.ends.is_empty() {
        lingering = DONE
            .wait_timeout(lingering, POLL_AT_MOST)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    drop(lingering);
    drain_bridges();
}

/// Ends over TCP or TLS: what they accepted is in their bridge's socket pair now. Ends
/// their sending direction (the bridge's end of file) and waits, at most their linger,
/// until every bridge has forwarded it and shut the network stream's sending side down.
fn drain_bridges() {
    let bridged: Vec<Arc<Shared>> = lock(&ENDS)
        .all
        .iter()
        .filter_map(Weak::upgrade)
        .filter(|end| end.owned_here() && !end.config.carries_fds())
        .collect();
    // Ends already dropped have bridges that forward their last bytes too: the default
    // linger for those.
    let linger = bridged
        .iter()
        .map(|end| end.config.linger())
        .max()
        .unwrap_or_else(|| Config::new().linger());
    for end in &bridged {
        end.end_sending();
    }
    crate::tcp::drain_at_exit(Instant::now() + linger);
}

/// Runs at process exit (registered with `atexit`).
extern "C" fn exit_hook() {
    // Nothing may unwind into the C runtime.
    let _ = std::panic::catch_unwind(exit_flush);
}
