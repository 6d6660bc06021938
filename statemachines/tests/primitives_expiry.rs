//! Session expiry through the real session layer cleans up every primitive at once: the
//! expired session's ephemeral node, lock, leadership and in-flight queue item all pass on,
//! and the other sessions hear about each in the event batch of the expiring entry.

use conclave_statemachines::election::{ElectionCommand, ElectionEvent, ElectionOutput};
use conclave_statemachines::lock::{LockCommand, LockEvent, LockOutput};
use conclave_statemachines::queue::{QueueCommand, QueueEvent, QueueOutput, QueueResponse};
use conclave_statemachines::tree::{
    CreateMode, CreateRequest, EventType, TreeCommand, TreeOutput, WatchedEvent,
};
use conclave_statemachines::{
    Entry, EventBatch, Registry, Reply, SessionConfig, SessionLayer, codec,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

struct Cluster {
    layer: SessionLayer,
    index: u64,
    time_ms: u64,
    sequences: [u64; 3],
}

impl Cluster {
    fn apply(&mut self, entry: Entry) -> conclave_statemachines::Applied {
        self.index += 1;
        self.layer.apply(self.index, self.time_ms, &entry.encode())
    }

    fn command<C: Serialize, O: DeserializeOwned>(
        &mut self,
        session: u64,
        machine: &str,
        command: &C,
    ) -> O {
        self.sequences[session as usize] += 1;
        let entry = Entry::Command {
            session,
            sequence: self.sequences[session as usize],
            machine_name: machine.into(),
            machine_type: machine.into(),
            payload: codec::encode(command, "command").unwrap(),
        };
        let Reply::Output(output) = self.apply(entry).reply else {
            panic!("not answered")
        };
        codec::decode(&output.result.unwrap(), "output").unwrap()
    }
}

fn decode_all<E: DeserializeOwned>(batch: &EventBatch, machine: &str) -> Vec<E> {
    batch
        .events
        .iter()
        .filter(|event| event.machine_name == machine)
        .map(|event| codec::decode(&event.payload, "event").unwrap())
        .collect()
}

#[test]
fn an_expired_session_releases_every_primitive_with_events() {
    let registry = Registry::with_builtins(Default::default()).unwrap();
    let layer = SessionLayer::new(SessionConfig::default(), registry).unwrap();
    let mut cluster = Cluster {
        layer,
        index: 0,
        time_ms: 1_000,
        sequences: [0; 3],
    };
    // Session 1 will expire (short timeout); session 2 keeps alive.
    cluster.apply(Entry::Register { timeout_ms: 1_000 });
    cluster.apply(Entry::Register { timeout_ms: 60_000 });

    let ephemeral = TreeCommand::Create(CreateRequest::new("/owner", b"", CreateMode::Ephemeral));
    let created: TreeOutput = cluster.command(1, "tree", &ephemeral);
    created.unwrap();
    let watch = TreeCommand::Exists {
        path: "/owner".into(),
        watch: true,
    };
    let watched: TreeOutput = cluster.command(2, "tree", &watch);
    watched.unwrap();

    let lock = |_: u64| LockCommand::Lock {
        name: "l".into(),
        reentrant: false,
        wait_ms: None,
    };
    let held: LockOutput = cluster.command(1, "lock", &lock(1));
    held.unwrap();
    let queued: LockOutput = cluster.command(2, "lock", &lock(2));
    queued.unwrap();

    let campaign = |value: &str| ElectionCommand::Campaign {
        name: "e".into(),
        value: value.into(),
    };
    let led: ElectionOutput = cluster.command(1, "election", &campaign("one"));
    led.unwrap();
    let candidate: ElectionOutput = cluster.command(2, "election", &campaign("two"));
    candidate.unwrap();

    let offer = QueueCommand::Offer {
        name: "q".into(),
        data: b"job".to_vec(),
    };
    let offered: QueueOutput = cluster.command(2, "queue", &offer);
    offered.unwrap();
    let poll = |wait| QueueCommand::Poll {
        name: "q".into(),
        visibility_timeout_ms: 600_000,
        wait,
    };
    let taken: QueueOutput = cluster.command(1, "queue", &poll(false));
    assert!(matches!(taken, Ok(QueueResponse::Delivered(_))));
    let waiting: QueueOutput = cluster.command(2, "queue", &poll(true));
    assert_eq!(waiting, Ok(QueueResponse::Waiting));

    // Session 2 keeps alive; time passes session 1's timeout; the next entry expires it.
    cluster.time_ms += 500;
    cluster.apply(Entry::KeepAlive {
        session: 2,
        command_sequence_acknowledged: 0,
        event_index_acknowledged: 0,
    });
    cluster.time_ms += 1_000;
    let applied = cluster.apply(Entry::Tick);
    assert_eq!(applied.expired, vec![1]);
    assert_eq!(applied.events.len(), 1, "one batch for session 2");
    let batch = &applied.events[0];
    assert_eq!((batch.session, batch.index), (2, cluster.index));

    let tree: Vec<WatchedEvent> = decode_all(batch, "tree");
    assert_eq!(
        tree,
        vec![WatchedEvent {
            event_type: EventType::NodeDeleted,
            path: "/owner".into()
        }]
    );
    let locks: Vec<LockEvent> = decode_all(batch, "lock");
    assert_eq!(
        locks,
        vec![LockEvent::Acquired {
            name: "l".into(),
            token: cluster.index
        }]
    );
    let elections: Vec<ElectionEvent> = decode_all(batch, "election");
    assert_eq!(
        elections,
        vec![ElectionEvent::Elected {
            name: "e".into(),
            epoch: cluster.index
        }]
    );
    let queues: Vec<QueueEvent> = decode_all(batch, "queue");
    assert_eq!(queues, vec![QueueEvent::ItemAvailable { name: "q".into() }]);

    // The item comes back to session 2, as a second delivery.
    let retaken: QueueOutput = cluster.command(2, "queue", &poll(false));
    let Ok(QueueResponse::Delivered(delivery)) = retaken else {
        panic!("{retaken:?}")
    };
    assert_eq!(
        (delivery.data.as_slice(), delivery.delivery),
        (&b"job"[..], 2)
    );
    cluster.layer.validate().unwrap();
}
