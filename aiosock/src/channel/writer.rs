//! The writer task: one per end, on the runtime the end attached to. It hands everything
//! queued to the kernel in as few system calls as it can (group commit), waits for room
//! when the socket is full, and ends the direction once no sender is left.
//!
//! The task's state is built before it is spawned, so that a runtime that shuts down
//! before the task first runs still drops it, and dropping it unfinished hands the end to
//! the [linger](super::linger), which writes what `send` accepted.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::channel::linger;
use crate::channel::shared::{Flow, Shared, Writer};
use crate::sys::{self, Socket};

/// How long a writer that cannot register a waiter polls the socket at a time, and how
/// often `closed` probes without a watcher.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The first pause of a writer whose descriptors the kernel refused for now.
const REFUSED_PAUSE: Duration = Duration::from_millis(1);

/// A writer woken with less than this queued lets other tasks add to it before writing.
const GATHER_BELOW: usize = 16 * 1024;

/// Starts the writer task of `shared` on the current runtime.
pub(crate) fn spawn(shared: Arc<Shared>) {
    let task = WriterTask {
        shared,
        waiter: None,
        finished: false,
    };
    // `task` is moved into the future now: dropping the future, even unpolled, drops it.
    tokio::spawn(async move {
        let mut task = task;
        task.run().await;
    });
}

/// The writer task's state; dropping it unfinished (runtime shutdown) hands the end to
/// the linger.
struct WriterTask {
    shared: Arc<Shared>,
    /// A duplicate of the socket registered for write readiness while the socket is full.
    waiter: Option<AsyncFd<Socket>>,
    finished: bool,
}

impl WriterTask {
    async fn run(&mut self) {
        loop {
            // Write everything queued, waiting for room whenever the socket is full. This
            // also finishes a batch that an inline write in a sending task left behind.
            let mut refused = 0u32;
            loop {
                let flow = {
                    let mut batch = self.shared.batch();
                    self.shared.write_now(&mut batch)
                };
                if !matches!(flow, Ok(Flow::Refused)) {
                    // The kernel took descriptors again: the next refusal pauses briefly.
                    refused = 0;
                }
                match flow {
                    Ok(Flow::Drained) => break,
                    // Producers keep refilling the queue while the peer keeps up: give the
                    // runtime's other tasks their turn between rounds of batches.
                    Ok(Flow::More) => tokio::task::consume_budget().await,
                    Ok(Flow::Full) if self.wait_writable().await.is_ok() => {}
                    // Descriptors refused for now: the peer holds the sending user's quota
                    // of descriptors in flight. Its reads free it, but no readiness says
                    // when: pause, longer each time (1 ms up to 64 ms), and try again.
                    // Nothing is dropped; the queue's own bounds hold meanwhile.
                    Ok(Flow::Refused) => {
                        pause_for(REFUSED_PAUSE * (1 << refused.min(6))).await;
                        refused = refused.saturating_add(1);
                    }
                    // The peer is gone (or the socket failed): nothing more can be sent.
                    Ok(Flow::Full) | Err(_) => {
                        self.shared.close_for_sending();
                        break;
                    }
                }
            }
            // Done with this burst: stop watching write readiness (no wake-ups each time
            // the peer reads), and park until there is more.
            self.waiter = None;
            let more = std::future::poll_fn(|cx| self.shared.poll_more(cx)).await;
            if !more {
                break;
            }
            // Woken by a send of little: let the runtime's other ready tasks run first, so
            // that what they send goes out in the same system call (the tasks woken by one
            // read of replies, each making its next call, for example). The first message
            // after a quiet spell does not wait for this (its sender writes it inline), nor
            // does a queue that already fills a large write.
            if self.shared.out().queue.len() < GATHER_BELOW {
                tokio::task::yield_now().await;
            }
        }
        let taken_over = {
            let mut out = self.shared.out();
            let taken_over = matches!(out.writer, Writer::Gone);
            out.writer = Writer::Gone;
            taken_over
        };
        // Unless the linger (at exit) took the end over and is still writing it, everything
        // is written or cannot be: end the direction.
        if !taken_over {
            self.shared.end_sending();
        }
        self.finished = true;
        self.shared.events.notify_waiters();
    }

    /// Waits until the socket has room. Registers a duplicate of the socket for write
    /// readiness the first time; if the process is out of descriptors (or the reactor
    /// refuses), polls the socket from the blocking pool instead, so that no accepted
    /// message waits on a resource that can run out.
    async fn wait_writable(&mut self) -> io::Result<()> {
        if self.waiter.is_none() {
            self.waiter = self
                .shared
                .socket()
                .try_clone()
                .and_then(|dup| sys::register_owned(dup, Interest::WRITABLE))
                .ok();
        }
        match &self.waiter {
            Some(waiter) => {
                waiter.writable().await?.clear_ready();
                Ok(())
            }
            None => {
                let socket = self.shared.socket().clone();
                tokio::task::spawn_blocking(move || {
                    sys::poll_writable(&[socket.as_fd()], POLL_INTERVAL)
                })
                .await
                .map_err(io::Error::other)?
            }
        }
    }
}

impl Drop for WriterTask {
    fn drop(&mut self) {
        if !self.finished {
            // The runtime is shutting down under a live writer (maybe before it ever ran):
            // the linger writes what `send` accepted, then ends the direction.
            linger::hand_off(self.shared.clone());
        }
    }
}

/// A pause between probes where nothing better can be waited on: from the blocking pool,
/// so that it needs no timer in the runtime.
pub(crate) async fn pause() {
    pause_for(POLL_INTERVAL).await;
}

/// A pause of `time`, from the blocking pool (the runtime may have no timer).
async fn pause_for(time: Duration) {
    let _ = tokio::task::spawn_blocking(move || std::thread::sleep(time)).await;
}
