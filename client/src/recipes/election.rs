//! Election: campaign, wait to be elected, act as leader with the epoch as fencing token,
//! resign; and observe who leads.

use std::future::Future;

use conclave_statemachines::election::{
    ElectionCommand, ElectionEvent, ElectionMachine, ElectionResponse, Leadership,
};

use crate::builtins::refused;
use crate::error::{ClientError, Result};
use crate::handle::{Events, Machine};
use crate::session::{Consistency, Session};

/// A named election bound to the session: its leadership ends when the session does.
#[derive(Debug, Clone)]
pub struct Election {
    machine: Machine<ElectionMachine>,
    name: String,
}

impl Election {
    /// Election `name` in election machine `machine_name`.
    pub fn new(session: &Session, machine_name: &str, name: &str) -> Self {
        Election {
            machine: session.elections(machine_name),
            name: name.to_string(),
        }
    }

    /// Campaigns with `value` and waits until elected; returns the epoch (a fencing token:
    /// each leadership's epoch is larger than every earlier one's).
    pub async fn campaign(&self, value: &[u8]) -> Result<u64> {
        let mut events = self.machine.events();
        match self.machine.campaign(&self.name, value).await? {
            ElectionResponse::Elected { epoch } => return Ok(epoch),
            ElectionResponse::Candidate { .. } => {}
            other => return Err(ClientError::Unexpected(format!("campaign: {other:?}"))),
        }
        while let Some(event) = events.next().await {
            if let (_, ElectionEvent::Elected { name, epoch }) = event?
                && name == self.name
            {
                return Ok(epoch);
            }
        }
        Err(ClientError::SessionExpired {
            session: self.machine.session().id(),
        })
    }

    /// Steps down (or leaves the candidate queue).
    pub async fn resign(&self) -> Result<()> {
        self.machine.resign(&self.name).await
    }

    /// Campaigns, runs `on_elected(epoch)` while leading, then resigns. Returns what the
    /// callback returned.
    pub async fn run<T, F, Fut>(&self, value: &[u8], on_elected: F) -> Result<T>
    where
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = T>,
    {
        let epoch = self.campaign(value).await?;
        let answer = on_elected(epoch).await;
        self.resign().await?;
        Ok(answer)
    }

    /// The current leader.
    pub async fn leader(&self, consistency: Consistency) -> Result<Option<Leadership>> {
        self.machine.leader(&self.name, consistency).await
    }

    /// Observes the election: the current leader first, then every change.
    pub async fn observe(&self) -> Result<LeaderWatch> {
        let events = self.machine.events();
        let current = refused(
            self.machine
                .command(&ElectionCommand::Observe {
                    name: self.name.clone(),
                })
                .await?,
        )?;
        let ElectionResponse::Leader(current) = current else {
            return Err(ClientError::Unexpected(format!("observe: {current:?}")));
        };
        Ok(LeaderWatch {
            name: self.name.clone(),
            first: Some(current),
            events,
        })
    }
}

/// The leaders of one election, as they change.
#[derive(Debug)]
pub struct LeaderWatch {
    name: String,
    first: Option<Option<Leadership>>,
    events: Events<ElectionEvent>,
}

impl LeaderWatch {
    /// The leader at the start, then the next change (`None` inside: no leader).
    pub async fn next(&mut self) -> Result<Option<Leadership>> {
        if let Some(first) = self.first.take() {
            return Ok(first);
        }
        while let Some(event) = self.events.next().await {
            if let (_, ElectionEvent::LeaderChanged { name, leader }) = event?
                && name == self.name
            {
                return Ok(leader);
            }
        }
        Err(ClientError::SessionExpired { session: 0 })
    }
}
