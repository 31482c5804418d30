//! The `tracing` feature: a connection's span and the events of its life, seen by a
//! subscriber. Run with `cargo test -p aiosock --features tracing --test tracing`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Writes every span and event it sees, one line each, into a shared log.
struct Capture {
    log: Arc<Mutex<Vec<String>>>,
    next: AtomicU64,
}

struct Line<'a>(&'a mut String);

impl Visit for Line<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut line = format!("span {}", span.metadata().name());
        span.record(&mut Line(&mut line));
        self.log.lock().unwrap().push(line);
        Id::from_u64(self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = format!("{}", event.metadata().level());
        event.record(&mut Line(&mut line));
        self.log.lock().unwrap().push(line);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[aiosock::protocol]
#[derive(Debug, PartialEq)]
enum Note {
    Text(String),
}

#[aiosock::protocol]
#[derive(Debug, PartialEq)]
enum Other {
    Number(u64),
}

fn captured(run: impl FnOnce()) -> Vec<String> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let subscriber = Capture {
        log: log.clone(),
        next: AtomicU64::new(0),
    };
    tracing::subscriber::with_default(subscriber, run);
    log.lock().unwrap().clone()
}

/// Runs `fut` on a current-thread runtime (on this thread, where the subscriber is) and
/// returns what was captured.
fn captured_async<F: std::future::Future<Output = ()>>(fut: F) -> Vec<String> {
    captured(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(fut)
    })
}

fn has(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|line| line.contains(needle))
}

#[test]
fn a_connection_has_a_span_and_its_hello_and_close_are_events() {
    let lines = captured_async(async {
        let (a, b) = aiosock::pair::<Note, Note>().unwrap();
        let (tx, _a_rx) = a.into_split();
        let (_b_tx, mut rx) = b.into_split();
        tx.send(Note::Text("hi".into())).await.unwrap();
        drop(tx);
        assert_eq!(rx.recv().await.unwrap(), Some(Note::Text("hi".into())));
        assert_eq!(rx.recv().await.unwrap(), None);
    });
    let all = lines.join("\n");
    assert!(
        has(
            &lines,
            "span aiosock.connection sends=\"Note\" expects=\"Note\""
        ),
        "{all}"
    );
    assert!(has(&lines, "peer hello checked"), "{all}");
    assert!(has(&lines, "sending direction ended"), "{all}");
    assert!(has(&lines, "peer closed its sending direction"), "{all}");
}

#[test]
fn a_mismatch_is_a_warning_that_names_both_sides() {
    let lines = captured_async(async {
        let (a, b) = aiosock::pair::<Note, Note>().unwrap();
        let (_tx, mut rx) = a.into_split();
        let other = aiosock::Endpoint::<Other, Other>::from_fd(b.into_fd());
        let (other_tx, _other_rx) = other.into_split();
        other_tx.send(Other::Number(1)).await.unwrap();
        assert!(rx.recv().await.is_err());
    });
    let all = lines.join("\n");
    assert!(
        lines.iter().any(|l| l.starts_with("WARN")
            && l.contains("protocol mismatch")
            && l.contains("`Other`")),
        "{all}"
    );
}

#[test]
fn children_starting_and_exiting_are_events() {
    let lines = captured(|| {
        let (_here, there) = aiosock::pair::<Note, Note>().unwrap();
        let mut child = aiosock::spawn(std::process::Command::new("true"), there).unwrap();
        let pid = child.id();
        while child.try_wait().unwrap().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(pid > 0);
    });
    let all = lines.join("\n");
    assert!(has(&lines, "spawned a child process"), "{all}");
    assert!(has(&lines, "child process exited"), "{all}");
}

#[test]
fn a_long_wait_for_room_is_reported() {
    let lines = captured_async(async {
        let (a, b) = aiosock::pair::<Note, Note>().unwrap();
        let mut config = aiosock::Config::new();
        config.set_capacity(1024);
        let (tx, _a_rx) = a.with_config(config).into_split();
        let (_b_tx, mut rx) = b.into_split();
        // Fill the socket and the buffer while nobody reads: until a send waits.
        let big = "x".repeat(64 * 1024);
        let short = std::time::Duration::from_millis(50);
        while tokio::time::timeout(short, tx.send(Note::Text(big.clone())))
            .await
            .is_ok()
        {}
        // Read everything after a while, so that the send below waits that long.
        let reader = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            while rx.recv().await.unwrap().is_some() {}
        });
        tx.send(Note::Text("late".into())).await.unwrap();
        drop(tx);
        reader.await.unwrap();
    });
    let all = lines.join("\n");
    assert!(
        lines.iter().any(|l| l.starts_with("INFO")
            && l.contains("send waited for room")
            && l.contains("waited_ms")),
        "{all}"
    );
}
