//! A leader election: at most one leader per epoch, epochs increase.
//!
//! `campaign` by process p answers the epoch p won; it must be greater than
//! every epoch before (so no two leaders share one). `resign` by the leader
//! leaves the election without a leader (by anyone else it changes nothing).
//! `leader` answers `[process, epoch]` of the current leader, or `null`.
//! A campaign with an unknown answer may have won an unknown (greater) epoch;
//! the first `leader` answer that names it pins that epoch.

use serde_json::Value;

use super::{key_of, key_partition, natural, unknown_function};
use crate::check::history::Record;
use crate::check::model::{FromRecord, Model};

/// The election model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Election;

/// An election operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionInput {
    /// Try to become leader.
    Campaign {
        /// The election's name.
        election: String,
        /// The candidate.
        process: u64,
    },
    /// Stop being leader.
    Resign {
        /// The election's name.
        election: String,
        /// The resigning process.
        process: u64,
    },
    /// Ask who leads.
    Leader {
        /// The election's name.
        election: String,
    },
}

/// An election answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionOutput {
    /// The campaign won this epoch.
    Elected(u64),
    /// The resignation happened.
    Resigned,
    /// The current leader and its epoch, if any.
    Leader(Option<(u64, u64)>),
}

/// The current epoch and leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ElectionState {
    /// The current epoch, or a lower bound on it when `epoch_known` is false.
    pub epoch: u64,
    /// Whether `epoch` is exact.
    pub epoch_known: bool,
    /// The leader, if any.
    pub leader: Option<u64>,
}

impl Model for Election {
    type State = ElectionState;
    type Input = ElectionInput;
    type Output = ElectionOutput;

    fn name(&self) -> &'static str {
        "election"
    }

    fn init(&self) -> ElectionState {
        ElectionState {
            epoch: 0,
            epoch_known: true,
            leader: None,
        }
    }

    fn step(
        &self,
        state: &ElectionState,
        input: &ElectionInput,
        output: Option<&ElectionOutput>,
        successors: &mut Vec<ElectionState>,
    ) {
        match (input, output) {
            (ElectionInput::Campaign { process, .. }, None) => successors.push(ElectionState {
                epoch: state.epoch,
                epoch_known: false,
                leader: Some(*process),
            }),
            (ElectionInput::Campaign { process, .. }, Some(ElectionOutput::Elected(epoch)))
                if *epoch > state.epoch =>
            {
                successors.push(ElectionState {
                    epoch: *epoch,
                    epoch_known: true,
                    leader: Some(*process),
                });
            }
            (ElectionInput::Resign { process, .. }, None | Some(ElectionOutput::Resigned)) => {
                if state.leader == Some(*process) {
                    successors.push(ElectionState {
                        leader: None,
                        ..*state
                    });
                } else {
                    successors.push(*state);
                }
            }
            (ElectionInput::Leader { .. }, None) => successors.push(*state),
            (ElectionInput::Leader { .. }, Some(ElectionOutput::Leader(None)))
                if state.leader.is_none() =>
            {
                successors.push(*state);
            }
            (ElectionInput::Leader { .. }, Some(ElectionOutput::Leader(Some((leader, epoch))))) => {
                if state.leader != Some(*leader) {
                    return;
                }
                if state.epoch_known && *epoch == state.epoch {
                    successors.push(*state);
                } else if !state.epoch_known && *epoch > state.epoch {
                    successors.push(ElectionState {
                        epoch: *epoch,
                        epoch_known: true,
                        ..*state
                    });
                }
            }
            _ => {}
        }
    }

    fn partition(&self, input: &ElectionInput) -> u64 {
        match input {
            ElectionInput::Campaign { election, .. }
            | ElectionInput::Resign { election, .. }
            | ElectionInput::Leader { election } => key_partition(election),
        }
    }

    fn describe_operation(&self, input: &ElectionInput, output: Option<&ElectionOutput>) -> String {
        let answer = match output {
            None => "?".to_string(),
            Some(ElectionOutput::Elected(epoch)) => format!("epoch {epoch}"),
            Some(ElectionOutput::Resigned) => "ok".to_string(),
            Some(ElectionOutput::Leader(None)) => "none".to_string(),
            Some(ElectionOutput::Leader(Some((leader, epoch)))) => {
                format!("p{leader} in epoch {epoch}")
            }
        };
        match input {
            ElectionInput::Campaign { process, .. } => format!("p{process} campaign => {answer}"),
            ElectionInput::Resign { process, .. } => format!("p{process} resign => {answer}"),
            ElectionInput::Leader { .. } => format!("leader => {answer}"),
        }
    }

    fn describe_state(&self, state: &ElectionState) -> String {
        let epoch = if state.epoch_known {
            format!("epoch {}", state.epoch)
        } else {
            format!("epoch > {}", state.epoch)
        };
        match state.leader {
            Some(leader) => format!("leader p{leader}, {epoch}"),
            None => format!("no leader, {epoch}"),
        }
    }
}

impl FromRecord for Election {
    fn input(&self, record: &Record) -> Result<ElectionInput, String> {
        let election = key_of(record).to_string();
        let process = record.process;
        match record.function.as_str() {
            "campaign" => Ok(ElectionInput::Campaign { election, process }),
            "resign" => Ok(ElectionInput::Resign { election, process }),
            "leader" => Ok(ElectionInput::Leader { election }),
            _ => Err(unknown_function(record)),
        }
    }

    fn output(&self, record: &Record, input: &ElectionInput) -> Result<ElectionOutput, String> {
        match input {
            ElectionInput::Campaign { .. } => Ok(ElectionOutput::Elected(natural(
                &record.result,
                "an epoch",
            )?)),
            ElectionInput::Resign { .. } => Ok(ElectionOutput::Resigned),
            ElectionInput::Leader { .. } => match &record.result {
                Value::Null => Ok(ElectionOutput::Leader(None)),
                Value::Array(pair) if pair.len() == 2 => Ok(ElectionOutput::Leader(Some((
                    natural(&pair[0], "a leader")?,
                    natural(&pair[1], "an epoch")?,
                )))),
                other => Err(format!(
                    "a leader answer is [process, epoch] or null, not {other}"
                )),
            },
        }
    }
}
