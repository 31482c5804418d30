//! A run's results as JSON (`--json FILE`), and the report rendered from them.
//!
//! Every report the benchmark prints, and so the README's table, is rendered from a
//! [`Results`] that went through its JSON form: a run writes the JSON, reads it back and
//! renders what it read, so that the saved file always holds everything the table shows.
//! `--from-json FILE` renders a saved run again without measuring (with `--write-readme`,
//! into the README, under the provenance line of the run that measured it).

use serde::{Deserialize, Serialize};

use crate::BoxError;
use crate::readme::Provenance;
use crate::report::{NotApplicable, Record};
use crate::systems;
use crate::workload::{Direction, Workload};

/// The version of the JSON layout below; a file of another version is refused.
pub(crate) const FORMAT: u32 = 1;

/// Everything a run measured, and how.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Results {
    /// [`FORMAT`].
    pub(crate) format: u32,
    /// When, where and from what.
    pub(crate) provenance: Provenance,
    pub(crate) reps: usize,
    pub(crate) quick: bool,
    pub(crate) warm: bool,
    /// The CPU every process ran on, with `--pinned`.
    #[serde(default)]
    pub(crate) pinned: Option<usize>,
    /// CPUs the run could use.
    pub(crate) cpus: usize,
    /// The workloads run, by name, in table order.
    pub(crate) workloads: Vec<String>,
    /// The systems, by name, in row order.
    pub(crate) systems: Vec<String>,
    /// Every run of every system.
    pub(crate) runs: Vec<RunJson>,
    /// The systems that sat a workload out, and why.
    pub(crate) not_applicable: Vec<NotApplicableJson>,
    /// The `wire` microbenchmark's table, as printed, if it ran.
    pub(crate) wire: Option<String>,
    /// Seconds the whole run took.
    pub(crate) seconds: f64,
}

/// One run of one system in one workload and direction: its values (as the workload's
/// table row names them, in order) or why it failed.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RunJson {
    pub(crate) rep: usize,
    pub(crate) workload: String,
    /// `p2c` or `c2p`.
    pub(crate) direction: String,
    pub(crate) system: String,
    /// Messages, calls or jobs in the run.
    pub(crate) count: u64,
    pub(crate) values: Option<Vec<f64>>,
    pub(crate) error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct NotApplicableJson {
    pub(crate) workload: String,
    pub(crate) system: String,
    pub(crate) reason: String,
}

impl RunJson {
    pub(crate) fn of(record: &Record) -> RunJson {
        let (values, error) = match &record.result {
            Ok(values) => (Some(values.clone()), None),
            Err(e) => (None, Some(e.clone())),
        };
        RunJson {
            rep: record.rep,
            workload: record.workload.name().to_owned(),
            direction: record.dir.arg().to_owned(),
            system: record.system.to_owned(),
            count: record.count,
            values,
            error,
        }
    }
}

impl NotApplicableJson {
    pub(crate) fn of(na: &NotApplicable) -> NotApplicableJson {
        NotApplicableJson {
            workload: na.workload.name().to_owned(),
            system: na.system.to_owned(),
            reason: na.reason.clone(),
        }
    }
}

/// The workload named `name`.
pub(crate) fn workload(name: &str) -> Result<Workload, BoxError> {
    Workload::ALL
        .into_iter()
        .find(|w| w.name() == name)
        .ok_or_else(|| format!("unknown workload {name:?}").into())
}

/// The system named `name`, by its static name.
fn system(name: &str) -> Result<&'static str, BoxError> {
    systems::by_name(name)
        .map(|s| s.name())
        .ok_or_else(|| format!("unknown system {name:?}").into())
}

fn direction(arg: &str) -> Result<Direction, BoxError> {
    [Direction::ToChild, Direction::FromChild]
        .into_iter()
        .find(|d| d.arg() == arg)
        .ok_or_else(|| format!("unknown direction {arg:?}").into())
}

impl Results {
    /// The JSON text.
    pub(crate) fn to_json(&self) -> Result<String, BoxError> {
        Ok(serde_json::to_string_pretty(self)? + "\n")
    }

    /// Reads the JSON text of a run.
    pub(crate) fn from_json(text: &str) -> Result<Results, BoxError> {
        let results: Results = serde_json::from_str(text)?;
        if results.format != FORMAT {
            return Err(format!(
                "results of format {}, this benchmark reads format {FORMAT}",
                results.format
            )
            .into());
        }
        Ok(results)
    }

    /// The runs, workloads, sat-out systems and system order, as the report takes them.
    #[allow(clippy::type_complexity)]
    pub(crate) fn parts(
        &self,
    ) -> Result<
        (
            Vec<Record>,
            Vec<NotApplicable>,
            Vec<Workload>,
            Vec<&'static str>,
        ),
        BoxError,
    > {
        let records = self
            .runs
            .iter()
            .map(|r| {
                Ok(Record {
                    rep: r.rep,
                    workload: workload(&r.workload)?,
                    dir: direction(&r.direction)?,
                    system: system(&r.system)?,
                    count: r.count,
                    result: match (&r.values, &r.error) {
                        (Some(values), None) => Ok(values.clone()),
                        (None, Some(error)) => Err(error.clone()),
                        _ => return Err("a run needs values or an error, not both".into()),
                    },
                })
            })
            .collect::<Result<Vec<_>, BoxError>>()?;
        let na = self
            .not_applicable
            .iter()
            .map(|n| {
                Ok(NotApplicable {
                    workload: workload(&n.workload)?,
                    system: system(&n.system)?,
                    reason: n.reason.clone(),
                })
            })
            .collect::<Result<Vec<_>, BoxError>>()?;
        let workloads = self
            .workloads
            .iter()
            .map(|w| workload(w))
            .collect::<Result<Vec<_>, _>>()?;
        let systems = self
            .systems
            .iter()
            .map(|s| system(s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((records, na, workloads, systems))
    }
}
