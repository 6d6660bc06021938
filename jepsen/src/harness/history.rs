//! Recording: every operation's invocation and completion as JSON lines in the format of
//! `jepsen/HISTORY.md` (what `conclave-jepsen check` reads), and nemesis events on the same
//! clock in a separate file, since the checker's format has no nemesis events.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{Value, json};

use super::HarnessError;

/// How an operation ended (`jepsen/HISTORY.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It happened, with this result.
    Ok,
    /// It certainly did not happen.
    Fail,
    /// Unknown: it may have happened.
    Info,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        }
    }
}

/// One completed operation, kept for the latency and throughput plots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// When it was invoked, in nanoseconds since the recording started.
    pub invoke_ns: u64,
    /// When it completed, in the same clock.
    pub complete_ns: u64,
    /// How it ended.
    pub outcome: Outcome,
}

/// A nemesis event: a fault starting or stopping.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NemesisEvent {
    /// Nanoseconds since the recording started.
    pub time: u64,
    /// `start` or `stop`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The fault, e.g. `partition-halves`.
    pub fault: String,
    /// What exactly was done (targets, links).
    pub detail: String,
}

struct Inner {
    writer: BufWriter<File>,
    samples: Vec<Sample>,
}

/// One workload's history file, shared by its workers.
pub struct History {
    start: Instant,
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl History {
    /// Creates (truncates) the history file; `start` is the run's common clock origin.
    pub fn create(path: &Path, start: Instant) -> Result<Self, HarnessError> {
        let file = File::create(path)
            .map_err(|error| HarnessError::io(format!("creating {}", path.display()), error))?;
        Ok(Self {
            start,
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                writer: BufWriter::new(file),
                samples: Vec::new(),
            }),
        })
    }

    /// The history file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Nanoseconds since the clock origin.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn write(&self, line: &Value, sample: Option<Sample>) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // A write error surfaces at flush time, where the run fails with it.
        let _ = serde_json::to_writer(&mut inner.writer, line);
        let _ = inner.writer.write_all(b"\n");
        if let Some(sample) = sample {
            inner.samples.push(sample);
        }
    }

    /// Records an invocation; returns its time for the matching completion.
    pub fn invoke(&self, process: u64, function: &str, key: Option<&str>, value: Value) -> u64 {
        let time = self.now_ns();
        let mut line = json!({"process": process, "type": "invoke", "f": function, "value": value, "time": time});
        if let Some(key) = key {
            line["key"] = json!(key);
        }
        self.write(&line, None);
        time
    }

    /// Records a completion of the operation invoked at `invoke_ns`.
    pub fn complete(
        &self,
        process: u64,
        invoke_ns: u64,
        outcome: Outcome,
        function: &str,
        key: Option<&str>,
        value: Value,
    ) {
        let time = self.now_ns().max(invoke_ns);
        let mut line = json!({"process": process, "type": outcome.name(), "f": function, "value": value, "time": time});
        if let Some(key) = key {
            line["key"] = json!(key);
        }
        let sample = Sample {
            invoke_ns,
            complete_ns: time,
            outcome,
        };
        self.write(&line, Some(sample));
    }

    /// Every completed operation so far.
    pub fn samples(&self) -> Vec<Sample> {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.samples.clone()
    }

    /// Writes buffered lines to the file.
    pub fn flush(&self) -> Result<(), HarnessError> {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner
            .writer
            .flush()
            .map_err(|error| HarnessError::io(format!("writing {}", self.path.display()), error))
    }
}

/// The nemesis events of a run, on the histories' clock.
pub struct NemesisLog {
    start: Instant,
    events: Mutex<Vec<NemesisEvent>>,
}

impl NemesisLog {
    /// An empty log with the run's clock origin.
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            events: Mutex::new(Vec::new()),
        }
    }

    /// Records a fault starting (`kind` = "start") or stopping ("stop").
    pub fn record(&self, kind: &'static str, fault: &str, detail: String) {
        let time = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let event = NemesisEvent {
            time,
            kind,
            fault: fault.to_string(),
            detail,
        };
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(event);
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<NemesisEvent> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The fault periods as (start ns, stop ns, fault); a fault still on ends at `end_ns`.
    pub fn periods(&self, end_ns: u64) -> Vec<(u64, u64, String)> {
        let mut periods = Vec::new();
        let mut open: Option<(u64, String)> = None;
        for event in self.events() {
            match (event.kind, open.take()) {
                ("start", previous) => {
                    if let Some((start, fault)) = previous {
                        periods.push((start, event.time, fault));
                    }
                    open = Some((event.time, event.fault));
                }
                (_, Some((start, fault))) => periods.push((start, event.time, fault)),
                (_, None) => {}
            }
        }
        if let Some((start, fault)) = open {
            periods.push((start, end_ns, fault));
        }
        periods
    }

    /// Writes the events as JSON lines.
    pub fn write(&self, path: &Path) -> Result<(), HarnessError> {
        let mut text = String::new();
        for event in self.events() {
            text.push_str(&serde_json::to_string(&event).unwrap_or_default());
            text.push('\n');
        }
        std::fs::write(path, text)
            .map_err(|error| HarnessError::io(format!("writing {}", path.display()), error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{self, CheckConfig, Format, ModelName, Verdict};

    #[test]
    fn a_recorded_history_is_read_and_judged_by_the_checker() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("history.jsonl");
        let history = History::create(&path, Instant::now()).unwrap();
        let write = history.invoke(0, "write", None, json!(3));
        history.complete(0, write, Outcome::Ok, "write", None, Value::Null);
        let read = history.invoke(1, "read", None, Value::Null);
        history.complete(1, read, Outcome::Ok, "read", None, json!(3));
        let cas = history.invoke(2, "cas", None, json!([3, 4]));
        history.complete(2, cas, Outcome::Info, "cas", None, Value::Null);
        history.flush().unwrap();
        assert_eq!(history.samples().len(), 3);
        let text = std::fs::read_to_string(&path).unwrap();
        let analysis = check::check_text(
            &text,
            Format::JsonLines,
            ModelName::Register,
            &CheckConfig::default(),
            "test",
        )
        .unwrap();
        assert_eq!(analysis.report.verdict, Verdict::Linearizable);

        // A stale read after the write completed must be caught.
        let stale = history.invoke(3, "read", None, Value::Null);
        history.complete(3, stale, Outcome::Ok, "read", None, json!(1));
        history.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let analysis = check::check_text(
            &text,
            Format::JsonLines,
            ModelName::Register,
            &CheckConfig::default(),
            "test",
        )
        .unwrap();
        assert_eq!(analysis.report.verdict, Verdict::NotLinearizable);
    }

    #[test]
    fn nemesis_periods_pair_starts_and_stops() {
        let log = NemesisLog::new(Instant::now());
        log.record("start", "kill-one", "node 2".to_string());
        log.record("stop", "kill-one", "node 2".to_string());
        log.record("start", "pause-one", "node 1".to_string());
        let periods = log.periods(u64::MAX);
        assert_eq!(periods.len(), 2);
        assert_eq!(periods[0].2, "kill-one");
        assert!(periods[0].0 <= periods[0].1);
        assert_eq!(periods[1].1, u64::MAX);
    }
}
