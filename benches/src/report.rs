//! Turning runs into numbers, and the numbers into the one table.
//!
//! Each row is one system in one workload (and direction): the median over the successful
//! repetitions, their min–max spread, and the median of the system's ratio to the
//! baseline's value *in the same repetition* (so slow drifts of the machine cancel out);
//! the baseline is the workload's [`baseline`].
//! A failed run is counted and its error printed, never averaged.

use std::fmt::Write as _;
use std::time::Duration;

use crate::process::ChildReport;
use crate::systems::{BASELINE, baseline};
use crate::workload::{Direction, Metric, Outcome, Workload};

/// One run's values, one per [`Workload::metrics`] entry.
pub(crate) fn values(
    workload: Workload,
    dir: Direction,
    count: u64,
    parent: &Outcome,
    child: &ChildReport,
) -> Result<Vec<f64>, String> {
    let receiver_elapsed = || {
        match dir {
            Direction::ToChild => child.elapsed,
            Direction::FromChild => parent.elapsed,
        }
        .filter(|d| !d.is_zero())
        .ok_or("the receiver reported no time")
        .map(|d| d.as_secs_f64())
    };
    Ok(match workload {
        Workload::Rtt | Workload::TcpRtt | Workload::TlsRtt | Workload::RttSize(_) => {
            let mut l: Vec<Duration> = parent.latencies.clone();
            if l.is_empty() {
                return Err("no round trips".into());
            }
            l.sort();
            let micros = |d: Duration| d.as_secs_f64() * 1e6;
            let p99 = l[(l.len() * 99).div_ceil(100) - 1];
            vec![micros(median_duration(&l)), micros(p99)]
        }
        Workload::Small
        | Workload::Concurrent
        | Workload::TcpSmall
        | Workload::TlsSmall
        | Workload::Senders(_)
        | Workload::Pairs(_) => {
            vec![count as f64 / receiver_elapsed()? / 1e6]
        }
        Workload::Size(bytes) => {
            let secs = receiver_elapsed()?;
            vec![
                count as f64 * f64::from(bytes) / secs / 1e9,
                secs / count as f64 * 1e6,
            ]
        }
        Workload::Data64K | Workload::Data4M | Workload::Shm4M | Workload::Tls4M => {
            let bytes = count as f64 * workload.shape().bytes() as f64;
            vec![bytes / receiver_elapsed()? / 1e9]
        }
        Workload::Fds => vec![count as f64 / receiver_elapsed()? / 1e3],
        Workload::Calls(_) => {
            let stats = parent
                .calls
                .as_ref()
                .ok_or("the client reported no calls")?;
            let micros = |q: f64| stats.latency.quantile(q).map(|d| d.as_secs_f64() * 1e6);
            match (stats.calls, micros(0.5), micros(0.99)) {
                (1.., Some(p50), Some(p99)) => vec![stats.rate() / 1e6, p50, p99],
                _ => return Err("no call returned within the window".into()),
            }
        }
        Workload::Pool => {
            let elapsed = parent
                .elapsed
                .filter(|d| !d.is_zero())
                .ok_or("the pool reported no time")?;
            vec![count as f64 / elapsed.as_secs_f64()]
        }
        Workload::Stalled => {
            let kib = child
                .peak_rss_kib
                .ok_or("the sender reported no peak RSS")?;
            vec![kib as f64 / 1024.0]
        }
    })
}

fn median_duration(sorted: &[Duration]) -> Duration {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

/// The median of `values` (which it sorts).
pub(crate) fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// One run of one system in one workload and direction.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) rep: usize,
    pub(crate) workload: Workload,
    pub(crate) dir: Direction,
    pub(crate) system: &'static str,
    pub(crate) count: u64,
    pub(crate) result: Result<Vec<f64>, String>,
}

/// A system that sat a workload out.
#[derive(Debug)]
pub(crate) struct NotApplicable {
    pub(crate) workload: Workload,
    pub(crate) system: &'static str,
    pub(crate) reason: String,
}

/// Renders the table. `systems` gives the row order.
pub(crate) fn table(records: &[Record], na: &[NotApplicable], systems: &[&'static str]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<26} {:<18} {:>9} {:>10} {:>21} {:>7} {:>6}",
        "workload", "system", "n", "median", "min–max", "×raw", "ok"
    );
    let mut failures = Vec::new();
    for workload in Workload::ALL {
        for &dir in workload.directions() {
            let here: Vec<&Record> = records
                .iter()
                .filter(|r| r.workload == workload && r.dir == dir)
                .collect();
            // A workload that no system ran still shows why (its systems all n/a).
            if here.is_empty() && !na.iter().any(|n| n.workload == workload) {
                continue;
            }
            for (m, metric) in workload.metrics().iter().enumerate() {
                let label = row_label(workload, dir, metric);
                for &system in systems {
                    if let Some(n) = na
                        .iter()
                        .find(|n| n.workload == workload && n.system == system)
                    {
                        if m == 0 {
                            let _ = writeln!(out, "{label:<26} {system:<18} n/a: {}", n.reason);
                        }
                        continue;
                    }
                    let runs: Vec<&&Record> = here.iter().filter(|r| r.system == system).collect();
                    if runs.is_empty() {
                        continue;
                    }
                    let value = |r: &Record| r.result.as_ref().ok().map(|v| v[m]);
                    let mut ok: Vec<f64> = runs.iter().filter_map(|r| value(r)).collect();
                    let mut ratios: Vec<f64> = runs
                        .iter()
                        .filter_map(|r| {
                            let base = here
                                .iter()
                                .find(|b| b.system == baseline(workload) && b.rep == r.rep)
                                .and_then(|b| value(b))?;
                            Some(value(r)? / base)
                        })
                        .collect();
                    let (min, max) = ok
                        .iter()
                        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                            (lo.min(v), hi.max(v))
                        });
                    let ok_count = ok.len();
                    let counts: Vec<u64> = runs.iter().map(|r| r.count).collect();
                    let n = if counts.iter().all(|&c| c == counts[0]) {
                        if workload.is_calls() {
                            format!("{} ms", counts[0])
                        } else {
                            counts[0].to_string()
                        }
                    } else {
                        "mixed".into()
                    };
                    let fmt = |v: Option<f64>| v.map_or_else(|| "-".into(), num);
                    let _ = writeln!(
                        out,
                        "{label:<26} {system:<18} {n:>9} {:>10} {:>21} {:>7} {:>6}",
                        fmt(median(&mut ok)),
                        if ok_count == 0 {
                            "-".into()
                        } else {
                            format!("{}–{}", num(min), num(max))
                        },
                        median(&mut ratios).map_or_else(|| "-".into(), |r| format!("{r:.2}")),
                        format!("{ok_count}/{}", runs.len()),
                    );
                    if m == 0 {
                        for r in runs.iter().filter(|r| r.result.is_err()) {
                            failures.push(format!(
                                "  rep {} {} {dir} {}: {}",
                                r.rep + 1,
                                workload.name(),
                                r.system,
                                r.result.as_ref().err().map_or("", String::as_str)
                            ));
                        }
                    }
                }
            }
        }
    }
    if !failures.is_empty() {
        let _ = writeln!(out, "\nfailed runs (not in the numbers above):");
        for f in failures {
            let _ = writeln!(out, "{f}");
        }
    }
    out
}

/// The systems aiosock's calls are set against in [`calls_summary`], with the column
/// title of each and the metric compared: calls/s (aiosock ÷ them, higher is better) or
/// latency (aiosock ÷ them, lower is better).
const CALLS_AGAINST: [(&str, &str, usize); 7] = [
    (BASELINE, "/raw", 0),
    ("aiosock-manual", "/manual", 0),
    ("tarpc", "/tarpc", 0),
    ("remoc", "/remoc", 0),
    (BASELINE, "p50/raw", 1),
    (BASELINE, "p99/raw", 2),
    ("tarpc", "p50/tarpc", 1),
];

/// The calls workloads' ratios: each aiosock variant's calls/s and latency divided by
/// those of the other systems in the same repetition, medians over repetitions. Empty
/// when no aiosock variant ran a calls workload.
pub(crate) fn calls_summary(records: &[Record]) -> String {
    let mut out = String::new();
    let value = |r: &Record, m: usize| r.result.as_ref().ok().map(|v| v[m]);
    for ours in ["aiosock", "aiosock-stream", "aiosock-concurrent"] {
        let mut rows = String::new();
        for workload in Workload::ALL.into_iter().filter(|w| w.is_calls()) {
            let mine: Vec<&Record> = records
                .iter()
                .filter(|r| r.workload == workload && r.system == ours)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let _ = write!(rows, "{:<12}", workload.name());
            for (other, _, m) in CALLS_AGAINST {
                let mut ratios: Vec<f64> = mine
                    .iter()
                    .filter_map(|r| {
                        let theirs = records
                            .iter()
                            .find(|o| o.workload == workload && o.system == other && o.rep == r.rep)
                            .and_then(|o| value(o, m))?;
                        Some(value(r, m)? / theirs)
                    })
                    .collect();
                let cell = median(&mut ratios).map_or_else(|| "-".into(), |r| format!("{r:.2}"));
                let _ = write!(rows, " {cell:>9}");
            }
            rows.push('\n');
        }
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "\n{ours}: its value ÷ the other's in the same repetition, median over repetitions \
             (calls/s: above 1 is faster; latency: below 1 is better)"
        );
        let _ = write!(out, "{:<12}", "workload");
        for (_, title, _) in CALLS_AGAINST {
            let _ = write!(out, " {title:>9}");
        }
        out.push('\n');
        out += &rows;
    }
    out
}

/// The systems of [`calls_curve`], in column order.
const CURVE_SYSTEMS: [&str; 4] = [BASELINE, "aiosock", "aiosock-stream", "tarpc"];

/// A system's curve bends where raising the calls in flight gains less than this share of
/// the raise (a latency-bound curve gains all of it: as many calls in flight, as many
/// more calls/s).
const BENT: f64 = 0.5;

/// Calls/s against the calls in flight, for the calls workloads that ran: each system's
/// median calls/s, and its gain over the row above set against the raise in calls in
/// flight. While a system's round trip bounds it, the two match (each call waits for
/// wake-ups, not for the CPU); where the gain falls below [`BENT`] of the raise, the
/// curve bends: the calls queue behind a busy process, and latency grows with the calls
/// in flight instead. Empty if fewer than two calls workloads ran.
pub(crate) fn calls_curve(records: &[Record]) -> String {
    let rate = |workload: Workload, system: &str| {
        let mut values: Vec<f64> = records
            .iter()
            .filter(|r| r.workload == workload && r.system == system)
            .filter_map(|r| r.result.as_ref().ok().and_then(|v| v.first().copied()))
            .collect();
        median(&mut values)
    };
    let rows: Vec<(u16, Vec<Option<f64>>)> = Workload::ALL
        .into_iter()
        .filter_map(|w| match w {
            Workload::Calls(n) => Some((n, w)),
            _ => None,
        })
        .map(|(n, w)| {
            (
                n,
                CURVE_SYSTEMS.iter().map(|s| rate(w, s)).collect::<Vec<_>>(),
            )
        })
        .filter(|(_, rates)| rates.iter().any(Option::is_some))
        .collect();
    if rows.len() < 2 {
        return String::new();
    }
    let mut out = String::from(
        "\ncalls/s against calls in flight: median M calls/s; gain: over the row above, \
         set against the raise in calls in flight (equal while the round trip bounds the \
         rate; the curve bends where the gain falls below half the raise)\n",
    );
    let _ = write!(out, "{:<10} {:>6}", "in flight", "raise");
    for system in CURVE_SYSTEMS {
        let _ = write!(out, " {system:>14} {:>6}", "gain");
    }
    out.push('\n');
    let mut bends: Vec<Option<(u16, u16)>> = vec![None; CURVE_SYSTEMS.len()];
    for (i, (n, rates)) in rows.iter().enumerate() {
        let before = i.checked_sub(1).map(|j| &rows[j]);
        let raise = before.map(|(m, _)| f64::from(*n) / f64::from(*m));
        let cell = |v: Option<f64>, digits: usize| {
            v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
        };
        let _ = write!(out, "{n:<10} {:>6}", cell(raise, 1));
        for (k, rate) in rates.iter().enumerate() {
            let gain = match (before, rate) {
                (Some((_, earlier)), Some(now)) => earlier[k].map(|earlier| now / earlier),
                _ => None,
            };
            if let (Some(gain), Some(raise), Some((m, _))) = (gain, raise, before)
                && bends[k].is_none()
                && gain < BENT * raise
            {
                bends[k] = Some((*m, *n));
            }
            let _ = write!(out, " {:>14} {:>6}", cell(*rate, 3), cell(gain, 1));
        }
        out.push('\n');
    }
    for (k, (system, bend)) in CURVE_SYSTEMS.iter().zip(&bends).enumerate() {
        if rows.iter().all(|(_, rates)| rates[k].is_none()) {
            continue;
        }
        match bend {
            Some((m, n)) => {
                let _ = writeln!(out, "{system}: bends between {m} and {n} in flight");
            }
            None => {
                let _ = writeln!(out, "{system}: no bend in the rows measured");
            }
        }
    }
    out
}

/// The ratio of `ours`'s value number `metric` (0 for the first) to `theirs`'s in
/// `workload` and `dir`, each run paired with the other's run of the same repetition: the
/// median over repetitions, the min and max, and how many pairs there were. `None` unless
/// both ran successfully in at least one repetition.
pub(crate) fn paired_ratio(
    records: &[Record],
    workload: Workload,
    dir: Direction,
    metric: usize,
    ours: &str,
    theirs: &str,
) -> Option<(f64, f64, f64, usize)> {
    let value = |system: &str, rep: usize| {
        records
            .iter()
            .find(|r| r.workload == workload && r.dir == dir && r.system == system && r.rep == rep)
            .and_then(|r| r.result.as_ref().ok())
            .and_then(|v| v.get(metric).copied())
    };
    let ratios: Vec<f64> = records
        .iter()
        .filter(|r| r.workload == workload && r.dir == dir && r.system == ours)
        .filter_map(|r| Some(value(ours, r.rep)? / value(theirs, r.rep)?))
        .collect();
    spread(ratios)
}

/// The median of `ratios`, their min and max, and how many there are; `None` if empty.
fn spread(mut ratios: Vec<f64>) -> Option<(f64, f64, f64, usize)> {
    let (min, max) = ratios
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let n = ratios.len();
    median(&mut ratios).map(|ratio| (ratio, min, max, n))
}

/// The label of a table row: the workload, the direction, the metric and its unit.
pub(crate) fn row_label(workload: Workload, dir: Direction, metric: &Metric) -> String {
    format!(
        "{} {dir}{}{} ({})",
        workload.name(),
        if metric.label.is_empty() { "" } else { " " },
        metric.label,
        metric.unit
    )
}

/// The pool workload's ratios: `pool`'s and `pool-map`'s jobs/s divided by
/// `pool-manual`'s in the same repetition, the median over repetitions and their spread.
/// A line for each that ran beside `pool-manual`.
pub(crate) fn pool_summary(records: &[Record]) -> String {
    let mut out = String::new();
    for ours in ["pool", "pool-map"] {
        if let Some((ratio, min, max, n)) = paired_ratio(
            records,
            Workload::Pool,
            Direction::ToChild,
            0,
            ours,
            "pool-manual",
        ) {
            if out.is_empty() {
                out.push('\n');
            }
            out += &format!(
                "{ours} ÷ pool-manual (jobs/s in the same repetition, median over {n} \
                 repetitions): {ratio:.2} (min–max {min:.2}–{max:.2}; above 1 is faster)\n"
            );
        }
    }
    out
}

/// The scale of many connections: aiosock's aggregate messages/s over `pairs-100` divided
/// by its messages/s over `pairs-1` in the same repetition, the median over repetitions
/// and their spread. Empty unless both ran.
pub(crate) fn pairs_summary(records: &[Record]) -> String {
    let value = |pairs: u16, rep: usize| {
        records
            .iter()
            .find(|r| r.workload == Workload::Pairs(pairs) && r.system == "aiosock" && r.rep == rep)
            .and_then(|r| r.result.as_ref().ok())
            .and_then(|v| v.first().copied())
    };
    let ratios: Vec<f64> = records
        .iter()
        .filter(|r| r.workload == Workload::Pairs(100) && r.system == "aiosock")
        .filter_map(|r| Some(value(100, r.rep)? / value(1, r.rep)?))
        .collect();
    match spread(ratios) {
        None => String::new(),
        Some((ratio, min, max, n)) => format!(
            "\npairs-100 ÷ pairs-1 (aiosock, all connections' M msg/s together, in the same \
             repetition, median over {n} repetitions): {ratio:.2} (min–max {min:.2}–{max:.2}; \
             the target is at least 0.8)\n"
        ),
    }
}

/// The pairs the resource summary compares: the workload, the system divided, the system
/// divided by, and what the ratio answers.
const RESOURCE_PAIRS: [(Workload, &str, &str, &str); 5] = [
    (
        Workload::Fds,
        "aiosock",
        "tokio-unix-ipc",
        "the target is at least 5",
    ),
    (
        Workload::Shm4M,
        "aiosock",
        "aiosock-vec",
        "a Shm field against a Vec<u8> field through the socket",
    ),
    (
        Workload::Shm4M,
        "aiosock-vec-shm",
        "aiosock-vec",
        "above 1: an automatic memfd path for Vec<u8> would pay",
    ),
    (Workload::Shm4M, "aiosock", "ipc-channel", ""),
    (Workload::Shm4M, "aiosock", "iceoryx2", ""),
];

/// The resource workloads' ratios between the systems of [`RESOURCE_PAIRS`] (throughput
/// in the same repetition, medians over repetitions; above 1 is faster). Empty when no
/// pair ran.
pub(crate) fn resource_summary(records: &[Record]) -> String {
    let mut rows = String::new();
    for (workload, ours, theirs, note) in RESOURCE_PAIRS {
        for &dir in workload.directions() {
            let Some((ratio, min, max, n)) = paired_ratio(records, workload, dir, 0, ours, theirs)
            else {
                continue;
            };
            let label = format!("{} {dir}", workload.name());
            let pair = format!("{ours} ÷ {theirs}");
            ratio_row(
                &mut rows,
                (&label, 12),
                (&pair, 32),
                (ratio, min, max, n),
                note,
            );
        }
    }
    if rows.is_empty() {
        return rows;
    }
    format!(
        "\nresource workloads: one system's throughput ÷ the other's in the same repetition, \
         median over repetitions (above 1 is faster)\n{rows}"
    )
}

/// The pairs the network summary compares: the workload, the metric (an index into
/// [`Workload::metrics`]), the system divided, the system divided by, and what the ratio
/// answers.
const NET_PAIRS: [(Workload, usize, &str, &str, &str); 11] = [
    (Workload::TcpSmall, 0, "aiosock-tcp", "raw-tcp", ""),
    (Workload::TcpRtt, 0, "aiosock-tcp", "raw-tcp", ""),
    (Workload::TcpRtt, 1, "aiosock-tcp", "raw-tcp", ""),
    (Workload::TlsSmall, 0, "aiosock-tls", "raw-tls", ""),
    (
        Workload::TlsSmall,
        0,
        "aiosock-tls",
        "tarpc-tls",
        "the target is at least 20",
    ),
    (Workload::TlsSmall, 0, "raw-tls", "tarpc-tls", ""),
    (Workload::TlsRtt, 0, "aiosock-tls", "raw-tls", ""),
    (Workload::TlsRtt, 1, "aiosock-tls", "raw-tls", ""),
    (Workload::TlsRtt, 0, "aiosock-tls", "tarpc-tls", ""),
    (Workload::TlsRtt, 1, "aiosock-tls", "tarpc-tls", ""),
    (
        Workload::Tls4M,
        0,
        "aiosock-tls",
        "raw-tls",
        "the target is at least 0.8",
    ),
];

/// One line of a ratio summary: the label and the pair in columns of the given widths,
/// the median ratio with its range and repetitions, then the note if there is one.
fn ratio_row(
    rows: &mut String,
    (label, label_width): (&str, usize),
    (pair, pair_width): (&str, usize),
    (ratio, min, max, n): (f64, f64, f64, usize),
    note: &str,
) {
    let _ = write!(
        rows,
        "{label:<label_width$} {pair:<pair_width$} {ratio:>6.2} (min–max {min:.2}–{max:.2}, {n} reps)"
    );
    if !note.is_empty() {
        let _ = write!(rows, "  {note}");
    }
    rows.push('\n');
}

/// The pairs the round-trip summary compares, as [`NET_PAIRS`]: aiosock against the
/// baseline, and its low-latency mode against iceoryx2's busy-polling one.
const RTT_PAIRS: [(Workload, usize, &str, &str, &str); 6] = [
    (
        Workload::Rtt,
        0,
        "aiosock",
        "raw-buffered",
        "the target is at most 1.05",
    ),
    (
        Workload::Rtt,
        1,
        "aiosock",
        "raw-buffered",
        "the target is at most 1.05",
    ),
    (
        Workload::Rtt,
        0,
        "aiosock-spin",
        "iceoryx2-poll",
        "the target is at most 2",
    ),
    (
        Workload::Rtt,
        0,
        "aiosock",
        "aiosock-read-only",
        "woken when the peer reads (the default) against not",
    ),
    (Workload::Rtt, 0, "aiosock", "iceoryx2-wait", ""),
    (Workload::Rtt, 1, "aiosock", "iceoryx2-wait", ""),
];

/// The pairs the bulk summary compares: the workload, the metric, the system divided, the
/// system divided by, and what the ratio answers.
const BULK_PAIRS: [(Workload, usize, &str, &str, &str); 4] = [
    (
        Workload::Data64K,
        0,
        "aiosock",
        "raw-buffered",
        "the target is at least 0.95",
    ),
    (
        Workload::Data4M,
        0,
        "aiosock",
        "raw-buffered",
        "the target is at least 1",
    ),
    (
        Workload::Data64K,
        0,
        "aiosock",
        "aiosock-copied",
        "what sending byte fields from their own buffers gains",
    ),
    (
        Workload::Data4M,
        0,
        "aiosock",
        "aiosock-copied",
        "what sending byte fields from their own buffers gains",
    ),
];

/// The bulk workloads' ratios between the systems of [`BULK_PAIRS`] (throughput in the
/// same repetition, medians over repetitions; above 1 is faster). Empty when no pair ran.
pub(crate) fn bulk_summary(records: &[Record]) -> String {
    metric_pairs_summary(
        records,
        &BULK_PAIRS,
        "bulk workloads: one system's throughput ÷ the other's in the same repetition, median \
         over repetitions (above 1 is faster)",
    )
}

/// The network workloads' ratios between the systems of [`NET_PAIRS`] (in the same
/// repetition, medians over repetitions; throughput above 1 is faster, latency below 1 is
/// better). Empty when no pair ran.
pub(crate) fn net_summary(records: &[Record]) -> String {
    metric_pairs_summary(
        records,
        &NET_PAIRS,
        "network workloads: one system's value ÷ the other's in the same repetition, median \
         over repetitions (M msg/s and GB/s: above 1 is faster; µs: below 1 is better)",
    )
}

/// The round trip's ratios between the systems of [`RTT_PAIRS`] (in the same repetition,
/// medians over repetitions; below 1 is better). Empty when no pair ran.
pub(crate) fn rtt_summary(records: &[Record]) -> String {
    metric_pairs_summary(
        records,
        &RTT_PAIRS,
        "round trip: one system's latency ÷ the other's in the same repetition, median over \
         repetitions (below 1 is better)",
    )
}

/// The ratio rows of `pairs` (workload, metric index, the system divided, the system
/// divided by, note) under `heading`; empty when no pair ran.
fn metric_pairs_summary(
    records: &[Record],
    pairs: &[(Workload, usize, &str, &str, &str)],
    heading: &str,
) -> String {
    let mut rows = String::new();
    for &(workload, metric, ours, theirs, note) in pairs {
        for &dir in workload.directions() {
            let Some((ratio, min, max, n)) =
                paired_ratio(records, workload, dir, metric, ours, theirs)
            else {
                continue;
            };
            let what = &workload.metrics()[metric];
            let label = format!(
                "{} {dir}{}{} ({})",
                workload.name(),
                if what.label.is_empty() { "" } else { " " },
                what.label,
                what.unit
            );
            let pair = format!("{ours} ÷ {theirs}");
            ratio_row(
                &mut rows,
                (&label, 26),
                (&pair, 30),
                (ratio, min, max, n),
                note,
            );
        }
    }
    if rows.is_empty() {
        return rows;
    }
    format!("\n{heading}\n{rows}")
}

/// A number with about three significant digits.
pub(crate) fn num(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        a if a >= 1.0 => format!("{v:.2}"),
        _ => format!("{v:.3}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calls_curve_bends_where_the_gain_falls_below_half_the_raise() {
        let record = |rep, n, system, rate: f64| Record {
            rep,
            workload: Workload::Calls(n),
            dir: Direction::ToChild,
            system,
            count: 500,
            result: Ok(vec![rate, 50.0, 90.0]),
        };
        // aiosock scales with the calls in flight up to 64, then gains 1.5 for a raise of 4
        // (the bend); raw keeps more than half of each raise; tarpc ran no calls.
        let mut records = Vec::new();
        for rep in 0..3 {
            let noise = 1.0 + rep as f64 / 100.0;
            for (n, aiosock, raw) in [
                (1, 0.01, 0.02),
                (8, 0.08, 0.16),
                (64, 0.64, 1.28),
                (256, 0.96, 5.0),
                (1024, 1.2, 19.0),
            ] {
                records.push(record(rep, n, "aiosock", aiosock * noise));
                records.push(record(rep, n, BASELINE, raw * noise));
            }
        }
        let text = calls_curve(&records);
        assert!(
            text.contains("aiosock: bends between 64 and 256 in flight"),
            "{text}"
        );
        assert!(
            text.contains("raw-buffered: no bend in the rows measured"),
            "{text}"
        );
        assert!(!text.contains("tarpc:"), "a system that never ran: {text}");
        let row = text.lines().find(|l| l.starts_with("256 ")).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        // in flight, raise, raw, gain, aiosock, gain, aiosock-stream, gain, tarpc, gain
        assert_eq!(&cells[..6], ["256", "4.0", "5.050", "3.9", "0.970", "1.5"]);
        assert_eq!(&cells[6..], ["-", "-", "-", "-"]);
        // One calls workload gives no curve.
        let one: Vec<Record> = records
            .into_iter()
            .filter(|r| r.workload == Workload::Calls(1))
            .collect();
        assert_eq!(calls_curve(&one), "");
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn ratios_pair_runs_of_the_same_repetition() {
        let record = |rep, system, v: Result<f64, &str>| Record {
            rep,
            workload: Workload::Small,
            dir: Direction::ToChild,
            system,
            count: 10,
            result: v.map(|v| vec![v]).map_err(String::from),
        };
        let records = [
            record(0, BASELINE, Ok(10.0)),
            record(0, "other", Ok(5.0)),
            record(1, BASELINE, Ok(20.0)),
            record(1, "other", Err("broke")),
            record(2, BASELINE, Err("broke")),
            record(2, "other", Ok(7.0)),
        ];
        let text = table(&records, &[], &[BASELINE, "other"]);
        let other = text.lines().find(|l| l.contains(" other ")).unwrap();
        // Median of 5 and 7; the one ratio is 5/10; two of three runs succeeded.
        assert!(other.contains(" 6.00 "), "{other}");
        assert!(other.contains(" 0.50 "), "{other}");
        assert!(other.contains(" 2/3"), "{other}");
        assert!(text.contains("rep 2 small p→c other: broke"), "{text}");
    }

    #[test]
    fn pool_ratio_pairs_runs_of_the_same_repetition() {
        let record = |rep, system, v: f64| Record {
            rep,
            workload: Workload::Pool,
            dir: Direction::ToChild,
            system,
            count: 10,
            result: Ok(vec![v]),
        };
        assert_eq!(pool_summary(&[record(0, "pool", 1.0)]), "");
        let records = [
            record(0, "pool", 90.0),
            record(0, "pool-manual", 100.0),
            record(1, "pool-manual", 50.0),
            record(1, "pool", 60.0),
            record(2, "pool", 100.0),
            record(2, "pool-manual", 100.0),
        ];
        let text = pool_summary(&records);
        assert!(text.contains("pool ÷ pool-manual"), "{text}");
        assert!(text.contains(": 1.00 (min–max 0.90–1.20;"), "{text}");
        assert!(text.contains("over 3 repetitions"), "{text}");
        assert!(!text.contains("pool-map"), "{text}");
        let mut with_map: Vec<Record> = records.into_iter().collect();
        with_map.push(record(0, "pool-map", 200.0));
        let text = pool_summary(&with_map);
        assert!(
            text.contains("pool-map ÷ pool-manual (jobs/s in the same repetition, median over 1 repetitions): 2.00"),
            "{text}"
        );
    }

    #[test]
    fn bulk_ratios_set_aiosock_against_raw_and_against_its_copying_self() {
        let record = |rep, system, v: f64| Record {
            rep,
            workload: Workload::Data4M,
            dir: Direction::FromChild,
            system,
            count: 128,
            result: Ok(vec![v]),
        };
        assert_eq!(bulk_summary(&[record(0, "aiosock", 1.0)]), "");
        let records = [
            record(0, "raw-buffered", 2.0),
            record(0, "aiosock", 2.2),
            record(0, "aiosock-copied", 1.1),
            record(1, "raw-buffered", 2.0),
            record(1, "aiosock", 1.8),
            record(1, "aiosock-copied", 1.2),
        ];
        let text = bulk_summary(&records);
        let to_raw = text
            .lines()
            .find(|l| l.contains("aiosock ÷ raw-buffered"))
            .unwrap();
        assert!(to_raw.starts_with("data-4m c→p"), "{to_raw}");
        assert!(
            to_raw.contains("1.00 (min–max 0.90–1.10, 2 reps)"),
            "{to_raw}"
        );
        assert!(to_raw.contains("the target is at least 1"), "{to_raw}");
        let gain = text
            .lines()
            .find(|l| l.contains("aiosock ÷ aiosock-copied"))
            .unwrap();
        assert!(gain.contains("1.75 (min–max 1.50–2.00, 2 reps)"), "{gain}");
    }

    #[test]
    fn network_ratios_take_each_metric_and_their_own_baseline() {
        let record = |rep, system, v: [f64; 2]| Record {
            rep,
            workload: Workload::TcpRtt,
            dir: Direction::ToChild,
            system,
            count: 10,
            result: Ok(v.to_vec()),
        };
        assert_eq!(net_summary(&[record(0, "aiosock-tcp", [1.0, 2.0])]), "");
        let records = [
            record(0, "raw-tcp", [10.0, 40.0]),
            record(0, "aiosock-tcp", [20.0, 60.0]),
            record(1, "raw-tcp", [10.0, 20.0]),
            record(1, "aiosock-tcp", [30.0, 60.0]),
        ];
        let text = table(&records, &[], &["raw-tcp", "aiosock-tcp"]);
        let median = text
            .lines()
            .find(|l| l.contains("median") && l.contains("aiosock-tcp"))
            .unwrap();
        assert!(
            median.contains(" 2.50 "),
            "to raw-tcp, not raw-buffered: {median}"
        );
        let text = net_summary(&records);
        let p50 = text
            .lines()
            .find(|l| l.starts_with("tcp-rtt p→c median"))
            .unwrap();
        assert!(p50.contains("aiosock-tcp ÷ raw-tcp"), "{p50}");
        assert!(p50.contains("2.50 (min–max 2.00–3.00, 2 reps)"), "{p50}");
        let p99 = text
            .lines()
            .find(|l| l.starts_with("tcp-rtt p→c p99"))
            .unwrap();
        assert!(p99.contains("2.25 (min–max 1.50–3.00, 2 reps)"), "{p99}");
    }

    #[test]
    fn resource_ratios_pair_runs_of_the_same_repetition_and_direction() {
        let record = |rep, dir, system, v: f64| Record {
            rep,
            workload: Workload::Fds,
            dir,
            system,
            count: 10,
            result: Ok(vec![v]),
        };
        assert_eq!(
            resource_summary(&[record(0, Direction::ToChild, "aiosock", 1.0)]),
            ""
        );
        let records = [
            record(0, Direction::ToChild, "aiosock", 500.0),
            record(0, Direction::ToChild, "tokio-unix-ipc", 100.0),
            record(0, Direction::FromChild, "aiosock", 100.0),
            record(0, Direction::FromChild, "tokio-unix-ipc", 100.0),
            record(1, Direction::ToChild, "aiosock", 300.0),
            record(1, Direction::ToChild, "tokio-unix-ipc", 100.0),
        ];
        let text = resource_summary(&records);
        let p2c = text.lines().find(|l| l.starts_with("fds p→c")).unwrap();
        assert!(p2c.contains("aiosock ÷ tokio-unix-ipc"), "{p2c}");
        assert!(p2c.contains("4.00 (min–max 3.00–5.00, 2 reps)"), "{p2c}");
        let c2p = text.lines().find(|l| l.starts_with("fds c→p")).unwrap();
        assert!(c2p.contains("1.00 (min–max 1.00–1.00, 1 reps)"), "{c2p}");
    }
}
