//! Handles on named machines: [`Machine`] for any type that implements `StateMachine` (the
//! built-ins and users' machines alike) and [`UntypedMachine`] for a machine known only by
//! its type name and serde types. Both encode with postcard, the codec of the built-ins.

use std::marker::PhantomData;

use conclave_statemachines::{Index, StateMachine};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::error::{ClientError, Result};
use crate::session::{Consistency, Notice, Session};

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|error| ClientError::Codec(error.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|error| ClientError::Codec(error.to_string()))
}

/// A named machine of a type known by name; commands, queries and outputs are any serde
/// types the machine agrees on.
#[derive(Debug, Clone)]
pub struct UntypedMachine {
    session: Session,
    machine_name: String,
    machine_type: String,
}

impl UntypedMachine {
    /// A handle on machine `machine_name` of type `machine_type` (created on first command).
    pub fn new(session: &Session, machine_name: &str, machine_type: &str) -> Self {
        UntypedMachine {
            session: session.clone(),
            machine_name: machine_name.to_string(),
            machine_type: machine_type.to_string(),
        }
    }

    /// The session commands go through.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The machine's name.
    pub fn name(&self) -> &str {
        &self.machine_name
    }

    /// Applies a command exactly once; returns the output and the index that applied it.
    pub async fn command_at<C: Serialize, O: DeserializeOwned>(
        &self,
        command: &C,
    ) -> Result<(Index, O)> {
        let (index, output) = self
            .session
            .command_raw(&self.machine_name, &self.machine_type, encode(command)?)
            .await?;
        Ok((index, decode(&output)?))
    }

    /// Applies a command exactly once.
    pub async fn command<C: Serialize, O: DeserializeOwned>(&self, command: &C) -> Result<O> {
        Ok(self.command_at(command).await?.1)
    }

    /// Asks a query at the given consistency.
    pub async fn query<Q: Serialize, O: DeserializeOwned>(
        &self,
        query: &Q,
        consistency: Consistency,
    ) -> Result<O> {
        let (_, output) = self
            .session
            .query_raw(
                &self.machine_name,
                &self.machine_type,
                encode(query)?,
                consistency,
            )
            .await?;
        decode(&output)
    }

    /// The machine's events to this session from now on, decoded as `E`.
    pub fn events<E: DeserializeOwned>(&self) -> Events<E> {
        Events {
            receiver: self.session.listen(&self.machine_name),
            ended: false,
            _event: PhantomData,
        }
    }
}

/// A typed handle on a named machine of type `M`.
pub struct Machine<M: StateMachine> {
    untyped: UntypedMachine,
    _machine: PhantomData<fn() -> M>,
}

impl<M: StateMachine> Clone for Machine<M> {
    fn clone(&self) -> Self {
        Machine {
            untyped: self.untyped.clone(),
            _machine: PhantomData,
        }
    }
}

impl<M: StateMachine> std::fmt::Debug for Machine<M> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Machine")
            .field("type", &M::TYPE_NAME)
            .field("name", &self.untyped.machine_name)
            .finish()
    }
}

impl<M: StateMachine> Machine<M> {
    /// A handle on machine `machine_name` of type `M` (created on first command).
    pub fn new(session: &Session, machine_name: &str) -> Self {
        Machine {
            untyped: UntypedMachine::new(session, machine_name, M::TYPE_NAME),
            _machine: PhantomData,
        }
    }

    /// The session commands go through.
    pub fn session(&self) -> &Session {
        self.untyped.session()
    }

    /// The machine's name.
    pub fn name(&self) -> &str {
        self.untyped.name()
    }

    /// Applies a command exactly once; returns the output and the index that applied it.
    pub async fn command_at(&self, command: &M::Command) -> Result<(Index, M::Output)> {
        self.untyped.command_at(command).await
    }

    /// Applies a command exactly once.
    pub async fn command(&self, command: &M::Command) -> Result<M::Output> {
        self.untyped.command(command).await
    }

    /// Asks a query at the given consistency.
    pub async fn query(&self, query: &M::Query, consistency: Consistency) -> Result<M::Output> {
        self.untyped.query(query, consistency).await
    }

    /// The machine's events to this session from now on. Subscribe before the command that
    /// makes the machine publish.
    pub fn events(&self) -> Events<M::Event> {
        self.untyped.events()
    }
}

/// Decoded events of one machine to one session, in index order, each once.
#[derive(Debug)]
pub struct Events<E> {
    receiver: mpsc::Receiver<Notice>,
    ended: bool,
    _event: PhantomData<fn() -> E>,
}

impl<E: DeserializeOwned> Events<E> {
    /// The next event with the index that published it; `Err(SessionExpired)` once when the
    /// session ends, then `None`.
    pub async fn next(&mut self) -> Option<Result<(Index, E)>> {
        if self.ended {
            return None;
        }
        match self.receiver.recv().await {
            Some(Notice::Event { index, payload }) => Some(decode(&payload).map(|e| (index, e))),
            Some(Notice::Expired) | None => {
                self.ended = true;
                Some(Err(ClientError::SessionExpired { session: 0 }))
            }
        }
    }
}
