//! An in-process network behind the [`Transport`] trait, for tests: messages go straight
//! into the receiver's inbox, and links can be cut to make partitions.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use conclave_consensus::{Message, NodeId};

use crate::forward::{ForwardError, ForwardFuture, ForwardHandler, ForwardRequest};
use crate::{Inbox, Transport};

#[derive(Default)]
struct NetworkState {
    inboxes: HashMap<NodeId, Inbox>,
    /// Who carries out requests forwarded to each node.
    forward_handlers: HashMap<NodeId, Arc<dyn ForwardHandler>>,
    /// Directed links `(from, to)` that drop everything.
    cut: BTreeSet<(NodeId, NodeId)>,
    delivered_count: u64,
    dropped_count: u64,
}

/// The shared in-memory network; cheap to clone.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    state: Arc<Mutex<NetworkState>>,
}

impl std::fmt::Debug for MemoryNetwork {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (delivered, dropped) = self.counts();
        formatter
            .debug_struct("MemoryNetwork")
            .field("delivered", &delivered)
            .field("dropped", &dropped)
            .finish_non_exhaustive()
    }
}

impl MemoryNetwork {
    /// An empty network.
    pub fn new() -> MemoryNetwork {
        MemoryNetwork::default()
    }

    fn lock(&self) -> MutexGuard<'_, NetworkState> {
        // A panic while holding the lock leaves plain data behind, still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Attaches node `id`, whose received messages go to `inbox`, and returns its transport.
    /// Attaching an id again replaces its inbox (a restarted node).
    pub fn join(&self, id: NodeId, inbox: Inbox) -> MemoryTransport {
        self.lock().inboxes.insert(id, inbox);
        MemoryTransport {
            id,
            network: self.clone(),
        }
    }

    /// Detaches node `id`: messages and forwarded requests to it are dropped.
    pub fn leave(&self, id: NodeId) {
        let mut state = self.lock();
        state.inboxes.remove(&id);
        state.forward_handlers.remove(&id);
    }

    fn forward(&self, from: NodeId, to: NodeId, request: ForwardRequest) -> ForwardFuture {
        let handler = {
            let state = self.lock();
            if state.cut.contains(&(from, to)) || state.cut.contains(&(to, from)) {
                None
            } else {
                state.forward_handlers.get(&to).cloned()
            }
        };
        match handler {
            Some(handler) => handler.handle(from, request),
            None => Box::pin(async move {
                Err(ForwardError::Unreachable(format!(
                    "node {to} is not reachable"
                )))
            }),
        }
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut(&self, a: NodeId, b: NodeId) {
        let mut state = self.lock();
        state.cut.insert((a, b));
        state.cut.insert((b, a));
    }

    /// Cuts every link of `id`.
    pub fn isolate(&self, id: NodeId) {
        let mut state = self.lock();
        let others: Vec<NodeId> = state.inboxes.keys().copied().filter(|o| *o != id).collect();
        for other in others {
            state.cut.insert((id, other));
            state.cut.insert((other, id));
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.lock().cut.clear();
    }

    /// Messages delivered and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        let state = self.lock();
        (state.delivered_count, state.dropped_count)
    }

    fn deliver(&self, message: Message) {
        let mut state = self.lock();
        let link_up = !state.cut.contains(&(message.from, message.to));
        let delivered = link_up
            && state
                .inboxes
                .get(&message.to)
                .is_some_and(|inbox| inbox.try_send(message).is_ok());
        if delivered {
            state.delivered_count += 1;
        } else {
            state.dropped_count += 1;
        }
    }
}

/// One node's end of a [`MemoryNetwork`].
#[derive(Debug, Clone)]
pub struct MemoryTransport {
    id: NodeId,
    network: MemoryNetwork,
}

impl MemoryTransport {
    /// The node this end belongs to.
    pub fn id(&self) -> NodeId {
        self.id
    }
}

impl Transport for MemoryTransport {
    fn send(&self, message: Message) {
        assert_eq!(message.from, self.id, "a node sends only its own messages");
        self.network.deliver(message);
    }

    fn add_peer(&self, _id: NodeId, _address: String) {}

    fn remove_peer(&self, _id: NodeId) {}

    fn forward(&self, to: NodeId, request: ForwardRequest) -> ForwardFuture {
        self.network.forward(self.id, to, request)
    }

    fn set_forward_handler(&self, handler: Arc<dyn ForwardHandler>) {
        self.network
            .lock()
            .forward_handlers
            .insert(self.id, handler);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_consensus::MessageKind;
    use tokio::sync::mpsc;

    #[test]
    fn delivers_and_honours_cuts_and_full_inboxes() {
        let network = MemoryNetwork::new();
        let (inbox_one, mut received_one) = mpsc::channel(1);
        let (inbox_two, mut received_two) = mpsc::channel(1);
        let one = network.join(1, inbox_one);
        let two = network.join(2, inbox_two);
        one.send(Message::new(MessageKind::Heartbeat, 1, 2, 1));
        assert_eq!(
            received_two.try_recv().map(|m| m.kind),
            Ok(MessageKind::Heartbeat)
        );
        network.cut(1, 2);
        two.send(Message::new(MessageKind::HeartbeatResponse, 2, 1, 1));
        assert!(received_one.try_recv().is_err());
        network.heal();
        two.send(Message::new(MessageKind::HeartbeatResponse, 2, 1, 1));
        two.send(Message::new(MessageKind::HeartbeatResponse, 2, 1, 1));
        assert!(received_one.try_recv().is_ok());
        assert!(
            received_one.try_recv().is_err(),
            "second message dropped: inbox full"
        );
        assert_eq!(network.counts(), (2, 2));
    }
}
