//! A direct harness for one machine: applies commands and hooks with increasing indexes and
//! a controllable log time, and collects the events each step published.

#![allow(dead_code)]

use std::collections::BTreeMap;

use conclave_statemachines::{ApplyContext, QueryContext, SessionId, StateMachine};

/// A machine with its own index counter, log time and set of open sessions.
pub struct Harness<M: StateMachine> {
    pub machine: M,
    pub index: u64,
    pub time_ms: u64,
    pub sessions: BTreeMap<SessionId, ()>,
}

impl<M: StateMachine> Harness<M> {
    pub fn new(machine: M) -> Self {
        Harness {
            machine,
            index: 100,
            time_ms: 1_000,
            sessions: (1..=9).map(|session| (session, ())).collect(),
        }
    }

    /// Applies a command from `session` at the next index.
    pub fn run(
        &mut self,
        session: SessionId,
        command: M::Command,
    ) -> (M::Output, Vec<(SessionId, M::Event)>) {
        self.index += 1;
        let mut context =
            ApplyContext::new(self.index, self.time_ms, Some(session), &self.sessions);
        let output = self.machine.apply(&mut context, command);
        let events = context.take_events();
        self.check();
        (output, events)
    }

    /// Applies a command and drops its events.
    pub fn output(&mut self, session: SessionId, command: M::Command) -> M::Output {
        self.run(session, command).0
    }

    pub fn query(&self, session: SessionId, query: M::Query) -> M::Output {
        let context = QueryContext {
            index: self.index,
            log_time_ms: self.time_ms,
            session: Some(session),
        };
        self.machine.query(&context, query)
    }

    /// Closes a session at the next index, returning the cleanup's events.
    pub fn close(&mut self, session: SessionId) -> Vec<(SessionId, M::Event)> {
        self.index += 1;
        self.sessions.remove(&session);
        let mut context =
            ApplyContext::new(self.index, self.time_ms, Some(session), &self.sessions);
        self.machine.session_expired(&mut context, session);
        let events = context.take_events();
        self.check();
        events
    }

    /// Moves log time forward by `delta_ms` at the next index, returning the events.
    pub fn advance(&mut self, delta_ms: u64) -> Vec<(SessionId, M::Event)> {
        self.index += 1;
        self.time_ms += delta_ms;
        let mut context = ApplyContext::new(self.index, self.time_ms, None, &self.sessions);
        self.machine.time_advanced(&mut context);
        let events = context.take_events();
        self.check();
        events
    }

    fn check(&self) {
        if let Err(broken) = self.machine.validate() {
            panic!("invariant broken at index {}: {broken}", self.index);
        }
    }
}
