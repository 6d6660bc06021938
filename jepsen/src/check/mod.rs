//! The linearizability checker.
//!
//! A history (operations with a process, a call time, a completion time, an
//! input and an output) is *linearizable* for a sequential model if its
//! operations can be put in one order that respects real time (an operation
//! that completed before another was called comes first) and in which every
//! output is what the model answers.
//!
//! The search is Wing & Gong's, with Lowe's cache of (linearized set, state)
//! pairs, on a history split into independent partitions
//! (P-compositionality) that are checked in parallel, under a budget of time
//! and cache entries that ends in [`Verdict::Unknown`] instead of hanging.
//!
//! ```
//! use conclave_jepsen::check::{check, CheckConfig, Operation, Verdict};
//! use conclave_jepsen::check::models::register::{Register, RegisterInput, RegisterOutput};
//!
//! // Process 0 writes 1; process 1 reads 1 during the write: fine.
//! let history = vec![
//!     Operation::completed(0, 0, 3, RegisterInput::Write(1), RegisterOutput::Write),
//!     Operation::completed(1, 1, 2, RegisterInput::Read, RegisterOutput::Read(Some(1))),
//! ];
//! let report = check(&Register, &history, &CheckConfig::default()).unwrap();
//! assert_eq!(report.verdict, Verdict::Linearizable);
//!
//! // A read after the write has completed cannot see the old value.
//! let history = vec![
//!     Operation::completed(0, 0, 1, RegisterInput::Write(1), RegisterOutput::Write),
//!     Operation::completed(1, 2, 3, RegisterInput::Read, RegisterOutput::Read(None)),
//! ];
//! let report = check(&Register, &history, &CheckConfig::default()).unwrap();
//! assert_eq!(report.verdict, Verdict::NotLinearizable);
//! ```
//!
//! Entry points: [`check`] for typed operations, [`check_text`] for a history
//! file's contents and a model name (what `conclave-jepsen check` runs).

mod checker;
mod error;
pub mod formats;
pub mod generate;
mod history;
pub mod html;
mod model;
pub mod models;
mod reachable;
pub mod report;
mod search;
mod window;

use std::str::FromStr;

pub use checker::{
    COUNTEREXAMPLE_CACHE_ENTRIES_MAX, CheckConfig, CheckReport, Counterexample,
    DESCRIPTION_LENGTH_MAX, LinearizationStep, PartitionReport, THREADS_MAX_LIMIT, Verdict,
    WindowKind, check,
};
pub use error::CheckError;
pub use formats::Format;
pub use history::{Event, EventKind, Operation, Outcome, Record, pair_events};
pub use model::{FromRecord, Model, operations_from_records};
pub use reachable::{REACHABLE_STATES_MAX, REACHABLE_STEPS_MAX};
pub use search::{GiveUp, STATES_KEPT_MAX};
pub use window::{WINDOW_CACHE_ENTRIES_MAX, WINDOW_OPERATIONS_MAX};

/// The built-in models, by the names the command line uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelName {
    /// [`models::register::Register`].
    Register,
    /// [`models::kv::Kv`].
    Kv,
    /// [`models::mutex::Mutex`].
    Mutex,
    /// [`models::queue::Queue`], exactly once.
    Queue,
    /// [`models::queue::Queue`], at least once.
    QueueAtLeastOnce,
    /// [`models::set::Set`].
    Set,
    /// [`models::election::Election`].
    Election,
}

impl ModelName {
    /// Every built-in model with its command-line name.
    pub const ALL: [(&'static str, ModelName); 7] = [
        ("register", ModelName::Register),
        ("kv", ModelName::Kv),
        ("mutex", ModelName::Mutex),
        ("queue", ModelName::Queue),
        ("queue-at-least-once", ModelName::QueueAtLeastOnce),
        ("set", ModelName::Set),
        ("election", ModelName::Election),
    ];
}

impl FromStr for ModelName {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, model)| *model)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|(name, _)| *name).collect();
                format!("unknown model {text:?}; known models: {}", names.join(", "))
            })
    }
}

/// A finished check of a history file: the report and its renderings.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// Verdicts and counterexamples.
    pub report: CheckReport,
    /// The readable text report.
    pub text: String,
    /// The self-contained HTML timeline.
    pub html: String,
}

/// Parses `text` in `format`, checks it against the named model and renders
/// the result; `title` heads the HTML page.
pub fn check_text(
    text: &str,
    format: Format,
    model: ModelName,
    config: &CheckConfig,
    title: &str,
) -> Result<Analysis, CheckError> {
    let records = formats::parse(text, format)?;
    match model {
        ModelName::Register => analyse(&models::register::Register, &records, config, title),
        ModelName::Kv => analyse(&models::kv::Kv, &records, config, title),
        ModelName::Mutex => analyse(&models::mutex::Mutex, &records, config, title),
        ModelName::Queue => analyse(
            &models::queue::Queue {
                at_least_once: false,
            },
            &records,
            config,
            title,
        ),
        ModelName::QueueAtLeastOnce => analyse(
            &models::queue::Queue {
                at_least_once: true,
            },
            &records,
            config,
            title,
        ),
        ModelName::Set => analyse(&models::set::Set, &records, config, title),
        ModelName::Election => analyse(&models::election::Election, &records, config, title),
    }
}

/// Converts, checks and renders records with any model that reads records.
pub fn analyse<M: FromRecord>(
    model: &M,
    records: &[Record],
    config: &CheckConfig,
    title: &str,
) -> Result<Analysis, CheckError> {
    let operations = operations_from_records(model, records)?;
    let report = check(model, &operations, config)?;
    let text = report::render_text(model, &operations, &report);
    let html = html::render_html(model, &operations, &report, title);
    Ok(Analysis { report, text, html })
}
