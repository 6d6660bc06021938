//! The client's half of the session protocol, as pure bookkeeping: sequence numbers,
//! which outputs to acknowledge, and which event batches are new. The Rust client and the
//! simulator's clients drive it; it does no I/O and keeps no clock.

use std::collections::BTreeSet;

use crate::envelope::{CommandOutput, Entry, EventBatch, EventCursor};
use crate::machine::{Index, SessionId};

/// One open session, seen from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSession {
    session: SessionId,
    sequence_last: u64,
    /// Sequences answered beyond the contiguous prefix (answers can arrive out of order).
    answered_ahead: BTreeSet<u64>,
    /// Every sequence up to this one has been answered.
    answered_through: u64,
    events: EventCursor,
    index_seen: Index,
}

impl ClientSession {
    /// Starts tracking a session the server registered (at index `session`).
    pub fn new(session: SessionId) -> Self {
        ClientSession {
            session,
            sequence_last: 0,
            answered_ahead: BTreeSet::new(),
            answered_through: 0,
            events: EventCursor::default(),
            index_seen: session,
        }
    }

    /// The session id.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The highest index this client has seen in any answer: what sequential queries carry.
    pub fn index_seen(&self) -> Index {
        self.index_seen
    }

    /// Builds the next command; resend the same entry (same sequence) until it is answered.
    pub fn command(&mut self, machine_name: &str, machine_type: &str, payload: Vec<u8>) -> Entry {
        self.sequence_last += 1;
        Entry::Command {
            session: self.session,
            sequence: self.sequence_last,
            machine_name: machine_name.to_string(),
            machine_type: machine_type.to_string(),
            payload,
        }
    }

    /// Records an answer (from a reply or from `Applied::released`) seen at `index`. Returns
    /// false for an answer already recorded, so a retry's answer is shown only once.
    pub fn answered(&mut self, output: &CommandOutput, index: Index) -> bool {
        assert_eq!(
            output.session, self.session,
            "answers go to their own session"
        );
        self.index_seen = self.index_seen.max(index);
        let sequence = output.sequence;
        if sequence <= self.answered_through || !self.answered_ahead.insert(sequence) {
            return false;
        }
        while self.answered_ahead.remove(&(self.answered_through + 1)) {
            self.answered_through += 1;
        }
        true
    }

    /// Whether an event batch is new; the application sees only new ones.
    pub fn event_batch(&mut self, batch: &EventBatch) -> bool {
        self.index_seen = self.index_seen.max(batch.index);
        self.events.accept(batch)
    }

    /// The keep-alive that acknowledges every answered prefix and every batch received.
    pub fn keep_alive(&self) -> Entry {
        Entry::KeepAlive {
            session: self.session,
            command_sequence_acknowledged: self.answered_through,
            event_index_acknowledged: self.events.index_received(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(sequence: u64) -> CommandOutput {
        CommandOutput {
            session: 7,
            sequence,
            result: Ok(Vec::new()),
        }
    }

    #[test]
    fn acknowledges_only_the_answered_prefix_and_shows_each_answer_once() {
        let mut client = ClientSession::new(7);
        for _ in 0..3 {
            client.command("m", "counter", Vec::new());
        }
        assert!(client.answered(&output(2), 10));
        let Entry::KeepAlive {
            command_sequence_acknowledged,
            ..
        } = client.keep_alive()
        else {
            panic!()
        };
        assert_eq!(command_sequence_acknowledged, 0, "1 is still unanswered");
        assert!(client.answered(&output(1), 11));
        assert!(
            !client.answered(&output(2), 12),
            "a retry's answer is not shown twice"
        );
        assert!(client.answered(&output(3), 13));
        let batch = EventBatch {
            index: 15,
            session: 7,
            events: Vec::new(),
        };
        assert!(client.event_batch(&batch));
        assert!(!client.event_batch(&batch));
        assert_eq!(
            client.keep_alive(),
            Entry::KeepAlive {
                session: 7,
                command_sequence_acknowledged: 3,
                event_index_acknowledged: 15
            }
        );
        assert_eq!(client.index_seen(), 15);
    }
}
