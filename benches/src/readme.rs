//! `--write-readme FILE`: the README's performance table, written by the benchmark.
//!
//! The table in the README is the one a run printed, never typed by hand. The run replaces
//! everything between the two marker lines [`START`] and [`END`] with one line saying when,
//! where and from what it was measured ([`Provenance`]), then the printed report in a text
//! block. Everything outside the markers is left as it was.

use std::fmt;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// The line after which the generated block starts.
pub(crate) const START: &str = "<!-- bench-table:start -->";
/// The line before which the generated block ends.
pub(crate) const END: &str = "<!-- bench-table:end -->";

/// Why a README could not be spliced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SpliceError {
    /// No line is exactly this marker.
    Missing(&'static str),
    /// More than one line is this marker.
    Duplicate(&'static str),
    /// The end marker comes before the start marker.
    OutOfOrder,
}

impl fmt::Display for SpliceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpliceError::Missing(marker) => write!(f, "no line `{marker}`"),
            SpliceError::Duplicate(marker) => write!(f, "more than one line `{marker}`"),
            SpliceError::OutOfOrder => write!(f, "`{END}` comes before `{START}`"),
        }
    }
}

impl std::error::Error for SpliceError {}

/// `readme` with the lines between the line [`START`] and the line [`END`] replaced by
/// `block` (which gets a final newline if it lacks one). The marker lines and everything
/// outside them are kept byte for byte. Each marker must be a line of its own (surrounding
/// spaces allowed) and appear once.
pub(crate) fn splice(readme: &str, block: &str) -> Result<String, SpliceError> {
    let start = marker_line(readme, START)?;
    let end = marker_line(readme, END)?;
    if end.0 < start.1 {
        return Err(SpliceError::OutOfOrder);
    }
    let mut out = String::with_capacity(readme.len() + block.len());
    out.push_str(&readme[..start.1]);
    out.push_str(block);
    if !block.is_empty() && !block.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&readme[end.0..]);
    Ok(out)
}

/// The byte range of the one line (with its newline) that is `marker`.
fn marker_line(text: &str, marker: &'static str) -> Result<(usize, usize), SpliceError> {
    let mut found = None;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let range = (at, at + line.len());
        at = range.1;
        if line.trim() == marker {
            if found.is_some() {
                return Err(SpliceError::Duplicate(marker));
            }
            found = Some(range);
        }
    }
    found.ok_or(SpliceError::Missing(marker))
}

/// When, where and from what a run was measured.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Provenance {
    /// `YYYY-MM-DD HH:MM UTC`.
    pub(crate) date: String,
    /// The CPU model, as `/proc/cpuinfo` names it.
    pub(crate) cpu: String,
    /// Logical CPUs (`processor` entries in `/proc/cpuinfo`).
    pub(crate) cores: usize,
    /// `uname -sr`.
    pub(crate) kernel: String,
    /// `git rev-parse --short HEAD`, with `-dirty` if tracked files differ from it.
    pub(crate) commit: String,
    /// The command line of the run.
    pub(crate) command: String,
}

impl Provenance {
    /// Gathers everything about this machine and run. `dir` is a directory in the git
    /// work tree whose commit is reported (the README's).
    pub(crate) fn gather(dir: &Path, args: &[String]) -> Provenance {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Provenance {
            date: utc_minutes(SystemTime::now()),
            cpu: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown CPU".into()),
            cores: match cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count()
            {
                0 => std::thread::available_parallelism().map_or(0, |n| n.get()),
                n => n,
            },
            kernel: output("uname", &["-sr"], None).unwrap_or_else(|| "unknown kernel".into()),
            commit: commit(dir),
            command: command_line(args),
        }
    }

    /// The line above the table.
    pub(crate) fn line(&self) -> String {
        format!(
            "Measured {} on {} ({} cores), {}, at commit `{}`, with `{}`:",
            self.date, self.cpu, self.cores, self.kernel, self.commit, self.command
        )
    }
}

/// The block put between the markers: the provenance line and the report as printed.
pub(crate) fn block(provenance: &Provenance, report: &str) -> String {
    format!(
        "{}\n\n```text\n{}```\n",
        provenance.line(),
        with_newline(report)
    )
}

fn with_newline(text: &str) -> String {
    if text.ends_with('\n') {
        text.to_string()
    } else {
        format!("{text}\n")
    }
}

/// The first `model name` in `/proc/cpuinfo`.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.split_whitespace().collect::<Vec<_>>().join(" "))
    })
}

/// The short commit of `dir`'s work tree, `-dirty` when tracked files have changes (as
/// `git describe --dirty` counts them: untracked files do not).
fn commit(dir: &Path) -> String {
    let Some(hash) = output("git", &["rev-parse", "--short", "HEAD"], Some(dir)) else {
        return "unknown (not a git work tree)".into();
    };
    let dirty = output(
        "git",
        &["status", "--porcelain", "--untracked-files=no"],
        Some(dir),
    )
    .is_none_or(|s| !s.is_empty());
    if dirty { format!("{hash}-dirty") } else { hash }
}

/// How the run was started: as `cargo run` gives it when cargo started us (cargo sets
/// `CARGO` in the program's environment), else the program's name; then the arguments.
fn command_line(args: &[String]) -> String {
    let features: Vec<&str> = [
        ("rpc-peers", cfg!(feature = "rpc-peers")),
        ("shm-peers", cfg!(feature = "shm-peers")),
        ("tls-peers", cfg!(feature = "tls-peers")),
        ("tracing", cfg!(feature = "tracing")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    let program = match (std::env::var_os("CARGO").is_some(), features.is_empty()) {
        (true, true) => "cargo run --release -p aiosock-benches --".to_owned(),
        (true, false) => format!(
            "cargo run --release -p aiosock-benches --features {} --",
            features.join(",")
        ),
        (false, _) => "aiosock-benches".to_owned(),
    };
    std::iter::once(program)
        .chain(args.iter().map(|a| shell_word(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `word`, quoted if a shell would split or expand it.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,/=:+@".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The trimmed standard output of a command that succeeded.
fn output(program: &str, args: &[&str], dir: Option<&Path>) -> Option<String> {
    let mut command = Command::new(program);
    command.args(args);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let out = command.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `YYYY-MM-DD HH:MM UTC`.
fn utc_minutes(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let minute = secs % 86_400 / 60;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        minute / 60,
        minute % 60
    )
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const README: &str = "# Title\n\nprose before\n<!-- bench-table:start -->\nold line 1\nold line 2\n<!-- bench-table:end -->\nprose after\n";

    #[test]
    fn splice_replaces_only_between_the_markers() {
        let out = splice(README, "new table\n").unwrap();
        assert_eq!(
            out,
            "# Title\n\nprose before\n<!-- bench-table:start -->\nnew table\n<!-- bench-table:end -->\nprose after\n"
        );
    }

    #[test]
    fn splice_keeps_the_outside_byte_for_byte() {
        let readme =
            "a\r\n  <!-- bench-table:start -->  \r\nold\r\n<!-- bench-table:end -->\r\n\tz \u{e9}";
        let out = splice(readme, "new").unwrap();
        assert_eq!(
            out,
            "a\r\n  <!-- bench-table:start -->  \r\nnew\n<!-- bench-table:end -->\r\n\tz \u{e9}"
        );
    }

    #[test]
    fn splice_is_idempotent_and_handles_empty_blocks() {
        let once = splice(README, "x\ny\n").unwrap();
        assert_eq!(splice(&once, "x\ny\n").unwrap(), once);
        let empty = splice(README, "").unwrap();
        assert!(empty.contains("<!-- bench-table:start -->\n<!-- bench-table:end -->\n"));
        let adjacent = splice(&empty, "z").unwrap();
        assert!(adjacent.contains("<!-- bench-table:start -->\nz\n<!-- bench-table:end -->\n"));
    }

    #[test]
    fn splice_refuses_missing_duplicate_or_misordered_markers() {
        assert_eq!(
            splice("no markers\n", "t"),
            Err(SpliceError::Missing(START))
        );
        assert_eq!(
            splice("<!-- bench-table:start -->\nx\n", "t"),
            Err(SpliceError::Missing(END))
        );
        assert_eq!(
            splice("x\n<!-- bench-table:end -->\n", "t"),
            Err(SpliceError::Missing(START))
        );
        let twice = format!("{README}{START}\n");
        assert_eq!(splice(&twice, "t"), Err(SpliceError::Duplicate(START)));
        assert_eq!(
            splice(&format!("{END}\nx\n{START}\n"), "t"),
            Err(SpliceError::OutOfOrder)
        );
        // A marker quoted inside a line is not a marker line.
        assert_eq!(
            splice(&format!("see `{START}`\n{END}\n"), "t"),
            Err(SpliceError::Missing(START))
        );
    }

    #[test]
    fn block_has_the_provenance_line_then_the_report_verbatim() {
        let provenance = Provenance {
            date: "2026-11-25 15:04 UTC".into(),
            cpu: "AMD EPYC 7B13".into(),
            cores: 2,
            kernel: "Linux 6.18.0".into(),
            commit: "116d59e-dirty".into(),
            command: "cargo run --release -p aiosock-benches -- all --write-readme README.md"
                .into(),
        };
        let block = block(&provenance, "workload  system\nrtt  aiosock\n");
        assert_eq!(
            block,
            "Measured 2026-11-25 15:04 UTC on AMD EPYC 7B13 (2 cores), Linux 6.18.0, at commit \
             `116d59e-dirty`, with `cargo run --release -p aiosock-benches -- all --write-readme \
             README.md`:\n\n```text\nworkload  system\nrtt  aiosock\n```\n"
        );
    }

    #[test]
    fn cpu_model_is_the_first_model_name() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC  7B13 64-Core Processor\n\nprocessor\t: 1\nmodel name\t: other\n";
        assert_eq!(
            cpu_model(cpuinfo).as_deref(),
            Some("AMD EPYC 7B13 64-Core Processor")
        );
        assert_eq!(cpu_model("processor\t: 0\n"), None);
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(utc_minutes(UNIX_EPOCH), "1970-01-01 00:00 UTC");
        let at = |secs| utc_minutes(UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(at(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(at(1_795_618_140), "2026-11-25 14:49 UTC");
        assert_eq!(at(4_107_542_399), "2100-02-28 23:59 UTC");
    }

    #[test]
    fn command_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("--write-readme"), "--write-readme");
        assert_eq!(shell_word("aiosock,raw-buffered"), "aiosock,raw-buffered");
        assert_eq!(shell_word("my README.md"), "'my README.md'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
