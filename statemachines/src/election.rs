//! The election machine: named elections with a FIFO queue of candidates.
//!
//! `Campaign` makes the caller leader if there is none, otherwise queues it. Each
//! leadership has an epoch — the index of the entry at which it began (or, when one entry
//! starts two leaderships, the next integer), strictly increasing across the machine — for
//! use as a fencing token. The leader may `Proclaim` a new value or `Resign`; when the
//! leader's session closes or expires the next candidate takes over. Observers get a
//! [`ElectionEvent::LeaderChanged`] on every change; a new leader gets
//! [`ElectionEvent::Elected`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::Error;
use crate::machine::{ApplyContext, QueryContext, SessionId, StateMachine};
use crate::session_index::{self, SessionIndex};

/// Bounds of the election machine; checked by [`ElectionConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionConfig {
    /// Most elections with a leader, candidate or observer; more is `TooManyElections`.
    pub elections_max: usize,
    /// Most queued candidates per election; more is `TooManyCandidates`.
    pub candidates_per_election_max: usize,
    /// Most observers per election; more is `TooManyObservers`.
    pub observers_per_election_max: usize,
    /// Largest campaign or proclaimed value, in bytes.
    pub value_bytes_max: usize,
    /// Longest election name, in bytes.
    pub name_bytes_max: usize,
}

impl Default for ElectionConfig {
    fn default() -> Self {
        ElectionConfig {
            elections_max: 100_000,
            candidates_per_election_max: 10_000,
            observers_per_election_max: 10_000,
            value_bytes_max: 64 * 1024,
            name_bytes_max: 1_024,
        }
    }
}

impl ElectionConfig {
    /// Refuses zero bounds.
    pub fn validate(&self) -> Result<(), Error> {
        let fields = [
            ("elections_max", self.elections_max),
            (
                "candidates_per_election_max",
                self.candidates_per_election_max,
            ),
            (
                "observers_per_election_max",
                self.observers_per_election_max,
            ),
            ("value_bytes_max", self.value_bytes_max),
            ("name_bytes_max", self.name_bytes_max),
        ];
        for (field, value) in fields {
            if value == 0 {
                return Err(Error::Config {
                    field,
                    reason: "must be at least 1".to_string(),
                });
            }
        }
        Ok(())
    }
}

/// A leadership: who, with which value, since which epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leadership {
    /// The leader's session.
    pub session: SessionId,
    /// The value it campaigned with or last proclaimed.
    pub value: Vec<u8>,
    /// The index at which the leadership began; a fencing token.
    pub epoch: u64,
}

/// Commands of the election machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionCommand {
    /// Become leader, or queue as a candidate.
    Campaign {
        /// The election.
        name: String,
        /// The candidate's value.
        value: Vec<u8>,
    },
    /// Step down as leader, or leave the candidate queue.
    Resign {
        /// The election.
        name: String,
    },
    /// Replace the leader's value; only the leader of that epoch may.
    Proclaim {
        /// The election.
        name: String,
        /// The epoch the caller leads.
        epoch: u64,
        /// The new value.
        value: Vec<u8>,
    },
    /// Receive an event on every change of leader or value; answers the current leader.
    Observe {
        /// The election.
        name: String,
    },
    /// Stop observing.
    Unobserve {
        /// The election.
        name: String,
    },
}

/// Queries of the election machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionQuery {
    /// The current leader.
    Leader {
        /// The election.
        name: String,
    },
    /// The queued candidates in order.
    Candidates {
        /// The election.
        name: String,
    },
}

/// Successful outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionResponse {
    /// The caller leads from this epoch.
    Elected {
        /// The epoch.
        epoch: u64,
    },
    /// The caller is queued behind `position` candidates.
    Candidate {
        /// Candidates ahead.
        position: u64,
    },
    /// Resigned, proclaimed, or stopped observing.
    Done,
    /// The current leader (query, or the answer to `Observe`).
    Leader(Option<Leadership>),
    /// Queued candidate sessions.
    Candidates(Vec<SessionId>),
}

/// Refusals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ElectionError {
    /// The command needs a session.
    #[error("no session")]
    NoSession,
    /// The session already leads or is queued in this election.
    #[error("already campaigning")]
    AlreadyCampaigning,
    /// Proclaim by a session that does not lead that epoch.
    #[error("not the leader of that epoch")]
    NotLeader,
    /// Resign or unobserve by a session that is not in the election.
    #[error("not in the election")]
    NotInElection,
    /// `elections_max` reached.
    #[error("too many elections")]
    TooManyElections,
    /// `candidates_per_election_max` reached.
    #[error("too many candidates")]
    TooManyCandidates,
    /// `observers_per_election_max` reached.
    #[error("too many observers")]
    TooManyObservers,
    /// A name or value out of bounds.
    #[error("invalid argument: {reason}")]
    InvalidArgument {
        /// Which.
        reason: String,
    },
}

/// The output of every command and query.
pub type ElectionOutput = Result<ElectionResponse, ElectionError>;

/// Events published by the election machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionEvent {
    /// To observers: the leader or its value changed (`None`: no leader now).
    LeaderChanged {
        /// The election.
        name: String,
        /// The new state.
        leader: Option<Leadership>,
    },
    /// To a queued candidate that just became leader.
    Elected {
        /// The election.
        name: String,
        /// Its epoch.
        epoch: u64,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Election {
    leader: Option<Leadership>,
    candidates: VecDeque<(SessionId, Vec<u8>)>,
    observers: BTreeSet<SessionId>,
}

impl Election {
    fn is_idle(&self) -> bool {
        self.leader.is_none() && self.candidates.is_empty() && self.observers.is_empty()
    }
}

/// The elections of one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionMachine {
    config: ElectionConfig,
    elections: BTreeMap<String, Election>,
    epoch_last: u64,
    /// The elections each session leads, campaigns in or observes, so a close touches only
    /// those.
    by_session: SessionIndex,
}

impl Default for ElectionMachine {
    fn default() -> Self {
        ElectionMachine::new(ElectionConfig::default())
    }
}

#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    election_count: u64,
    epoch_last: u64,
}

impl ElectionMachine {
    /// An empty machine with these bounds.
    pub fn new(config: ElectionConfig) -> Self {
        ElectionMachine {
            config,
            elections: BTreeMap::new(),
            epoch_last: 0,
            by_session: BTreeMap::new(),
        }
    }

    /// Records whether `session` is still in election `name` (only a session's own
    /// commands and its close change that: a promotion keeps the promoted session in).
    fn sync_index(&mut self, name: &str, session: SessionId) {
        let involved = self.elections.get(name).is_some_and(|election| {
            election.observers.contains(&session)
                || election
                    .leader
                    .as_ref()
                    .is_some_and(|leader| leader.session == session)
                || election
                    .candidates
                    .iter()
                    .any(|(candidate, _)| *candidate == session)
        });
        session_index::record(&mut self.by_session, session, name, involved);
    }

    fn rebuild_index(&mut self) {
        self.by_session.clear();
        for (name, election) in &self.elections {
            let sessions = election
                .leader
                .iter()
                .map(|leader| leader.session)
                .chain(election.candidates.iter().map(|(session, _)| *session))
                .chain(election.observers.iter().copied());
            for session in sessions {
                self.by_session
                    .entry(session)
                    .or_default()
                    .insert(name.clone());
            }
        }
    }

    fn apply_command(
        &mut self,
        context: &mut ApplyContext<'_, ElectionEvent>,
        session: SessionId,
        command: ElectionCommand,
    ) -> ElectionOutput {
        match command {
            ElectionCommand::Campaign { name, value } => {
                self.campaign(context, session, &name, value)
            }
            ElectionCommand::Resign { name } => self.resign(context, session, &name),
            ElectionCommand::Proclaim { name, epoch, value } => {
                if value.len() > self.config.value_bytes_max {
                    return Err(ElectionError::InvalidArgument {
                        reason: "value over value_bytes_max".to_string(),
                    });
                }
                let leader = self
                    .elections
                    .get_mut(&name)
                    .and_then(|election| election.leader.as_mut())
                    .filter(|leader| leader.session == session && leader.epoch == epoch)
                    .ok_or(ElectionError::NotLeader)?;
                leader.value = value;
                self.notify_observers(context, &name);
                Ok(ElectionResponse::Done)
            }
            ElectionCommand::Observe { name } => {
                let observers_max = self.config.observers_per_election_max;
                let election = self.election_mut(&name)?;
                if !election.observers.contains(&session)
                    && election.observers.len() >= observers_max
                {
                    return Err(ElectionError::TooManyObservers);
                }
                election.observers.insert(session);
                Ok(ElectionResponse::Leader(election.leader.clone()))
            }
            ElectionCommand::Unobserve { name } => {
                let election = self
                    .elections
                    .get_mut(&name)
                    .ok_or(ElectionError::NotInElection)?;
                if !election.observers.remove(&session) {
                    return Err(ElectionError::NotInElection);
                }
                if election.is_idle() {
                    self.elections.remove(&name);
                }
                Ok(ElectionResponse::Done)
            }
        }
    }

    fn next_epoch(&mut self, index: u64) -> u64 {
        self.epoch_last = index.max(self.epoch_last + 1);
        self.epoch_last
    }

    /// The election, created if the bound allows.
    fn election_mut(&mut self, name: &str) -> Result<&mut Election, ElectionError> {
        if name.is_empty() || name.len() > self.config.name_bytes_max {
            return Err(ElectionError::InvalidArgument {
                reason: "name length".to_string(),
            });
        }
        if !self.elections.contains_key(name) && self.elections.len() >= self.config.elections_max {
            return Err(ElectionError::TooManyElections);
        }
        Ok(self.elections.entry(name.to_string()).or_default())
    }

    fn notify_observers(&self, context: &mut ApplyContext<'_, ElectionEvent>, name: &str) {
        let Some(election) = self.elections.get(name) else {
            return;
        };
        for &observer in &election.observers {
            context.publish(
                observer,
                ElectionEvent::LeaderChanged {
                    name: name.to_string(),
                    leader: election.leader.clone(),
                },
            );
        }
    }

    /// Promotes the head candidate if there is no leader; notifies; drops an idle election.
    fn settle(&mut self, context: &mut ApplyContext<'_, ElectionEvent>, name: &str) {
        let needs_leader = self
            .elections
            .get(name)
            .is_some_and(|election| election.leader.is_none() && !election.candidates.is_empty());
        if needs_leader {
            let epoch = self.next_epoch(context.index());
            if let Some(election) = self.elections.get_mut(name)
                && let Some((session, value)) = election.candidates.pop_front()
            {
                election.leader = Some(Leadership {
                    session,
                    value,
                    epoch,
                });
                context.publish(
                    session,
                    ElectionEvent::Elected {
                        name: name.to_string(),
                        epoch,
                    },
                );
            }
        }
        self.notify_observers(context, name);
        if self.elections.get(name).is_some_and(Election::is_idle) {
            self.elections.remove(name);
        }
    }

    fn campaign(
        &mut self,
        context: &mut ApplyContext<'_, ElectionEvent>,
        session: SessionId,
        name: &str,
        value: Vec<u8>,
    ) -> ElectionOutput {
        if value.len() > self.config.value_bytes_max {
            return Err(ElectionError::InvalidArgument {
                reason: "value over value_bytes_max".to_string(),
            });
        }
        let candidates_max = self.config.candidates_per_election_max;
        let election = self.election_mut(name)?;
        let leads = election
            .leader
            .as_ref()
            .is_some_and(|leader| leader.session == session);
        if leads
            || election
                .candidates
                .iter()
                .any(|(candidate, _)| *candidate == session)
        {
            return Err(ElectionError::AlreadyCampaigning);
        }
        if election.leader.is_some() {
            if election.candidates.len() >= candidates_max {
                return Err(ElectionError::TooManyCandidates);
            }
            election.candidates.push_back((session, value));
            return Ok(ElectionResponse::Candidate {
                position: election.candidates.len() as u64 - 1,
            });
        }
        let epoch = self.next_epoch(context.index());
        if let Some(election) = self.elections.get_mut(name) {
            election.leader = Some(Leadership {
                session,
                value,
                epoch,
            });
        }
        self.notify_observers(context, name);
        Ok(ElectionResponse::Elected { epoch })
    }

    fn resign(
        &mut self,
        context: &mut ApplyContext<'_, ElectionEvent>,
        session: SessionId,
        name: &str,
    ) -> ElectionOutput {
        let election = self
            .elections
            .get_mut(name)
            .ok_or(ElectionError::NotInElection)?;
        if election
            .leader
            .as_ref()
            .is_some_and(|leader| leader.session == session)
        {
            election.leader = None;
            self.settle(context, name);
            return Ok(ElectionResponse::Done);
        }
        let before = election.candidates.len();
        election
            .candidates
            .retain(|(candidate, _)| *candidate != session);
        if election.candidates.len() == before {
            return Err(ElectionError::NotInElection);
        }
        if election.is_idle() {
            self.elections.remove(name);
        }
        Ok(ElectionResponse::Done)
    }
}

impl StateMachine for ElectionMachine {
    const TYPE_NAME: &'static str = "election";
    type Command = ElectionCommand;
    type Query = ElectionQuery;
    type Output = ElectionOutput;
    type Event = ElectionEvent;

    fn apply(
        &mut self,
        context: &mut ApplyContext<'_, ElectionEvent>,
        command: ElectionCommand,
    ) -> ElectionOutput {
        let session = context.session().ok_or(ElectionError::NoSession)?;
        let name = match &command {
            ElectionCommand::Campaign { name, .. }
            | ElectionCommand::Resign { name }
            | ElectionCommand::Proclaim { name, .. }
            | ElectionCommand::Observe { name }
            | ElectionCommand::Unobserve { name } => name.clone(),
        };
        let output = self.apply_command(context, session, command);
        self.sync_index(&name, session);
        output
    }

    fn query(&self, _context: &QueryContext, query: ElectionQuery) -> ElectionOutput {
        match query {
            ElectionQuery::Leader { name } => Ok(ElectionResponse::Leader(
                self.elections
                    .get(&name)
                    .and_then(|election| election.leader.clone()),
            )),
            ElectionQuery::Candidates { name } => Ok(ElectionResponse::Candidates(
                self.elections
                    .get(&name)
                    .map(|election| {
                        election
                            .candidates
                            .iter()
                            .map(|(session, _)| *session)
                            .collect()
                    })
                    .unwrap_or_default(),
            )),
        }
    }

    fn session_closed(
        &mut self,
        context: &mut ApplyContext<'_, ElectionEvent>,
        session: SessionId,
    ) {
        let names = self.by_session.remove(&session).unwrap_or_default();
        for name in names {
            let Some(election) = self.elections.get_mut(&name) else {
                continue;
            };
            election.observers.remove(&session);
            election
                .candidates
                .retain(|(candidate, _)| *candidate != session);
            if election
                .leader
                .as_ref()
                .is_some_and(|leader| leader.session == session)
            {
                election.leader = None;
                self.settle(context, &name);
            } else if election.is_idle() {
                self.elections.remove(&name);
            }
        }
    }

    fn snapshot(&self, writer: &mut dyn Write) -> Result<(), Error> {
        let header = SnapshotHeader {
            election_count: self.elections.len() as u64,
            epoch_last: self.epoch_last,
        };
        codec::write_frame(writer, &header, "election snapshot header")?;
        for entry in &self.elections {
            codec::write_frame(writer, &entry, "election")?;
        }
        Ok(())
    }

    fn restore(&mut self, reader: &mut dyn Read) -> Result<(), Error> {
        let header: SnapshotHeader = codec::read_frame(reader, "election snapshot header")?;
        self.elections.clear();
        for _ in 0..header.election_count {
            let (name, election): (String, Election) = codec::read_frame(reader, "election")?;
            self.elections.insert(name, election);
        }
        self.epoch_last = header.epoch_last;
        self.rebuild_index();
        Ok(())
    }

    fn validate(&self) -> Result<(), String> {
        let mut rebuilt = self.clone();
        rebuilt.rebuild_index();
        if rebuilt.by_session != self.by_session {
            return Err("the per-session index differs from the elections".to_string());
        }
        for (name, election) in &self.elections {
            if election.is_idle() {
                return Err(format!("idle election {name} is kept"));
            }
            if election.leader.is_none() && !election.candidates.is_empty() {
                return Err(format!("election {name} has candidates but no leader"));
            }
            if election
                .leader
                .as_ref()
                .is_some_and(|leader| leader.epoch > self.epoch_last)
            {
                return Err(format!("election {name} has a future epoch"));
            }
            let mut sessions: BTreeSet<SessionId> = BTreeSet::new();
            let queued = election.candidates.iter().map(|(session, _)| *session);
            for session in election
                .leader
                .iter()
                .map(|leader| leader.session)
                .chain(queued)
            {
                if !sessions.insert(session) {
                    return Err(format!("session {session} campaigns twice in {name}"));
                }
            }
        }
        Ok(())
    }
}
