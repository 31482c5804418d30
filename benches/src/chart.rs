//! The README's chart: aiosock against raw and each peer, every workload, as SVG drawn with
//! plotters, from the same results as the table.
//!
//! A row per table row (workload, direction and metric) that aiosock ran; in it a bar per
//! other system that ran it too: how many times better aiosock did, as the median over
//! repetitions of the ratio within each repetition (throughput: aiosock ÷ the other;
//! latency and memory: the other ÷ aiosock). So right of the line at 1 is aiosock ahead,
//! left is behind, on a log scale from 1/64 to 64 (longer bars are clipped, and the
//! number printed at the bar's end says the real ratio).

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::BoxError;
use crate::report::{Record, paired_ratio, row_label};
use crate::workload::Workload;

/// The SVG's width, and the parts of it: the labels on the left, the bars, the numbers.
const WIDTH: i32 = 900;
const LABEL_W: i32 = 250;
const PLOT_W: i32 = 560;
/// Height of a bar, and the gap after each row.
const BAR_H: i32 = 11;
const ROW_GAP: i32 = 8;
/// Space for the title and the scale above the rows, and for the legend below.
const TOP: i32 = 64;
const LEGEND_ROW: i32 = 18;
/// The scale's ends, as powers of two.
const LOG2_MIN: f64 = -6.0;
const LOG2_MAX: f64 = 6.0;

/// The aiosock system of `workload`: the one whose ratios the chart shows.
fn ours(workload: Workload) -> &'static str {
    if workload.is_tcp() {
        "aiosock-tcp"
    } else if workload.is_tls() {
        "aiosock-tls"
    } else if workload == Workload::Pool {
        "pool"
    } else {
        "aiosock"
    }
}

/// Whether `system` is one of aiosock's own variants, not a peer.
fn is_variant(system: &str) -> bool {
    system.starts_with("aiosock") || system == "pool"
}

/// One row: its label and its bars (peer, aiosock's advantage).
struct Row {
    label: String,
    bars: Vec<(&'static str, f64)>,
}

fn rows(records: &[Record], workloads: &[Workload], systems: &[&'static str]) -> Vec<Row> {
    let mut rows = Vec::new();
    for &workload in workloads {
        let us = ours(workload);
        for &dir in workload.directions() {
            for (m, metric) in workload.metrics().iter().enumerate() {
                let bars: Vec<(&'static str, f64)> = systems
                    .iter()
                    .filter(|&&s| !is_variant(s) || (s == "pool-manual"))
                    .filter_map(|&peer| {
                        let (ratio, ..) = paired_ratio(records, workload, dir, m, us, peer)?;
                        let better = if metric.higher_is_better() {
                            ratio
                        } else {
                            1.0 / ratio
                        };
                        Some((peer, better))
                    })
                    .collect();
                if bars.is_empty() {
                    continue;
                }
                let label = row_label(workload, dir, metric);
                rows.push(Row { label, bars });
            }
        }
    }
    rows
}

/// A colour per peer, by its place in `peers`.
fn colour(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    PALETTE[i % PALETTE.len()]
}

/// The x of an advantage on the log scale, clipped to the plot.
fn x_of(better: f64) -> i32 {
    let l = better.log2().clamp(LOG2_MIN, LOG2_MAX);
    LABEL_W + ((l - LOG2_MIN) / (LOG2_MAX - LOG2_MIN) * f64::from(PLOT_W)).round() as i32
}

/// The chart of `records` as an SVG document, titled `title`; `None` when aiosock has no
/// row with a peer.
pub(crate) fn svg(
    records: &[Record],
    workloads: &[Workload],
    systems: &[&'static str],
    title: &str,
) -> Result<Option<String>, BoxError> {
    let rows = rows(records, workloads, systems);
    if rows.is_empty() {
        return Ok(None);
    }
    let mut peers: Vec<&'static str> = Vec::new();
    for row in &rows {
        for &(peer, _) in &row.bars {
            if !peers.contains(&peer) {
                peers.push(peer);
            }
        }
    }
    let rows_h: i32 = rows
        .iter()
        .map(|r| r.bars.len() as i32 * BAR_H + ROW_GAP)
        .sum();
    let legend_h = LEGEND_ROW * peers.len().div_ceil(4) as i32 + 16;
    let height = TOP + rows_h + legend_h;
    let mut out = String::new();
    {
        let size = (WIDTH as u32, height as u32);
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let text = |s: &str, at: (i32, i32), size: i32, h: HPos| {
            Text::new(
                s.to_owned(),
                at,
                ("sans-serif", size)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(h, VPos::Center)),
            )
        };
        root.draw(&text(title, (WIDTH / 2, 14), 13, HPos::Center))
            .map_err(|e| e.to_string())?;
        // The scale: a tick at every power of two, and the line at 1 drawn over the rows.
        let bottom = TOP + rows_h;
        for p in (LOG2_MIN as i32)..=(LOG2_MAX as i32) {
            let x = x_of(2f64.powi(p));
            let label = if p >= 0 {
                format!("{}×", 1u32 << p)
            } else {
                format!("1/{}", 1u32 << -p)
            };
            let grey = RGBColor(225, 225, 225);
            root.draw(&PathElement::new(
                vec![(x, TOP - 6), (x, bottom)],
                if p == 0 {
                    BLACK.stroke_width(2)
                } else {
                    grey.stroke_width(1)
                },
            ))
            .map_err(|e| e.to_string())?;
            root.draw(&text(&label, (x, TOP - 16), 11, HPos::Center))
                .map_err(|e| e.to_string())?;
        }
        root.draw(&text(
            "← aiosock behind · aiosock ahead →",
            (x_of(1.0), 34),
            11,
            HPos::Center,
        ))
        .map_err(|e| e.to_string())?;
        let mut y = TOP;
        for row in &rows {
            let h = row.bars.len() as i32 * BAR_H;
            root.draw(&text(&row.label, (LABEL_W - 8, y + h / 2), 11, HPos::Right))
                .map_err(|e| e.to_string())?;
            for (i, &(peer, better)) in row.bars.iter().enumerate() {
                let top = y + i as i32 * BAR_H + 1;
                let (one, end) = (x_of(1.0), x_of(better));
                let c = colour(peers.iter().position(|&p| p == peer).unwrap_or(0));
                root.draw(&Rectangle::new(
                    [(one.min(end), top), (one.max(end), top + BAR_H - 2)],
                    c.filled(),
                ))
                .map_err(|e| e.to_string())?;
                let number = if better >= 10.0 {
                    format!("{better:.0}")
                } else {
                    format!("{better:.2}")
                };
                let (at, h) = if end >= one {
                    (end + 3, HPos::Left)
                } else {
                    (end - 3, HPos::Right)
                };
                root.draw(&text(&number, (at, top + BAR_H / 2 - 1), 9, h))
                    .map_err(|e| e.to_string())?;
            }
            y += h + ROW_GAP;
        }
        // The legend: a swatch and a name per peer, four to a line.
        for (i, peer) in peers.iter().enumerate() {
            let x = LABEL_W + (i as i32 % 4) * 150;
            let y = bottom + 12 + (i as i32 / 4) * LEGEND_ROW;
            root.draw(&Rectangle::new(
                [(x, y - 5), (x + 12, y + 5)],
                colour(i).filled(),
            ))
            .map_err(|e| e.to_string())?;
            root.draw(&text(&format!("vs {peer}"), (x + 17, y), 11, HPos::Left))
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(Some(out))
}
