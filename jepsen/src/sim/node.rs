//! One simulated node: the Raft core, a simulated disk that completes writes after a delay,
//! and a tiny state machine (a hash chain over applied entries).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use conclave_consensus::{
    Config, Entry, EntryKind, Membership, MemoryStorage, NodeId, RawNode, Ready,
};
use conclave_statemachines::kv::KvConfig;
use conclave_statemachines::{Registry, SessionConfig, SessionLayer};

/// The hash-chain machine's snapshot bytes; a session layer's snapshot follows them.
const MACHINE_SNAPSHOT_BYTES: usize = 16;

/// The replicated object: the index applied and a hash chain of every applied entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The last applied index (of every entry kind).
    pub applied_index: u64,
    /// A hash over every entry applied so far.
    pub hash: u64,
    /// The membership as of `applied_index` (needed to write snapshots).
    pub membership: Membership,
}

impl Machine {
    /// The machine state a snapshot of `storage` restores.
    pub fn from_storage(storage: &MemoryStorage) -> Machine {
        use conclave_consensus::Storage;
        let snapshot = storage.snapshot().unwrap_or_default();
        let (applied_index, hash) = decode_snapshot(&snapshot.data);
        Machine {
            applied_index: applied_index.max(snapshot.metadata.index),
            hash,
            membership: snapshot.metadata.membership,
        }
    }

    /// Applies one committed entry.
    pub fn apply(&mut self, entry: &Entry) {
        assert!(
            entry.index == self.applied_index + 1,
            "apply out of order at {}",
            entry.index
        );
        self.applied_index = entry.index;
        self.hash = mix(self.hash, entry.index ^ (entry.term << 40));
        self.hash = mix(self.hash, fnv1a(&entry.payload));
        if entry.kind == EntryKind::Membership
            && let Ok(membership) = Membership::decode(&entry.payload)
        {
            self.membership = membership;
        }
    }

    /// The snapshot data for the current state.
    pub fn encode(&self) -> Bytes {
        let mut buffer = BytesMut::with_capacity(16);
        buffer.put_u64_le(self.applied_index);
        buffer.put_u64_le(self.hash);
        buffer.freeze()
    }
}

fn decode_snapshot(mut data: &[u8]) -> (u64, u64) {
    if data.len() < MACHINE_SNAPSHOT_BYTES {
        return (0, 0);
    }
    (data.get_u64_le(), data.get_u64_le())
}

/// FNV-1a, written out so that hashes never depend on a library version.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

fn mix(hash: u64, value: u64) -> u64 {
    (hash ^ value)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(29)
}

/// A write to the simulated disk that completes at `due`.
#[derive(Debug)]
pub struct DiskWrite {
    /// The time the write becomes durable.
    pub due: u64,
    /// The batch being persisted.
    pub ready: Ready,
}

/// A node of the simulation.
#[derive(Debug)]
pub struct SimNode {
    /// The node's id.
    pub id: NodeId,
    /// The running core, or `None` while crashed (then `storage` holds the disk).
    pub core: Option<RawNode<MemoryStorage>>,
    /// The disk of a crashed node.
    pub storage: Option<MemoryStorage>,
    /// The write in progress, lost if the node crashes first.
    pub disk: Option<DiskWrite>,
    /// The state machine (volatile: rebuilt from the snapshot on restart).
    pub machine: Machine,
    /// The offset of this node's tick within each tick period.
    pub tick_phase: u64,
    /// Removed from the cluster and shut down for good.
    pub decommissioned: bool,
    /// The configuration the node (re)starts with.
    pub config: Config,
    /// The commit index seen at the last check in this incarnation.
    pub commit_seen: u64,
    /// The applied index seen at the last check in this incarnation.
    pub applied_seen: u64,
    /// The commit index persisted, which must never go backwards, even across crashes.
    pub persisted_commit_seen: u64,
    /// The highest index whose committed term this node was checked against.
    pub commit_checked: u64,
    /// While leading: the term, commit index and membership at the last check, to confirm
    /// that each commit it makes is durable on a quorum.
    pub leader_view: Option<(u64, u64, Membership)>,
    /// In the history mode: the real session layer, applying every committed normal entry
    /// beside the hash chain (volatile: restored from the snapshot on restart).
    pub layer: Option<SessionLayer>,
}

/// A session layer holding the state a snapshot of `storage` carries (an empty one when
/// there is no snapshot or it was written without a layer).
pub fn layer_from_storage(storage: &MemoryStorage) -> Result<SessionLayer, String> {
    use conclave_consensus::Storage;
    let registry =
        Registry::with_builtins(KvConfig::default()).map_err(|e| format!("registry: {e}"))?;
    let mut layer = SessionLayer::new(SessionConfig::default(), registry)
        .map_err(|e| format!("session layer: {e}"))?;
    let snapshot = storage.snapshot().unwrap_or_default();
    if snapshot.data.len() > MACHINE_SNAPSHOT_BYTES {
        let mut reader = &snapshot.data[MACHINE_SNAPSHOT_BYTES..];
        layer
            .restore(&mut reader)
            .map_err(|e| format!("restore the session layer: {e}"))?;
    }
    Ok(layer)
}

impl SimNode {
    /// Starts a node over `storage`.
    pub fn start(
        id: NodeId,
        config: Config,
        storage: MemoryStorage,
        tick_phase: u64,
    ) -> Result<SimNode, String> {
        let machine = Machine::from_storage(&storage);
        let core = RawNode::new(config.clone(), storage).map_err(|e| format!("start {id}: {e}"))?;
        Ok(SimNode {
            id,
            core: Some(core),
            storage: None,
            disk: None,
            machine,
            tick_phase,
            decommissioned: false,
            config,
            commit_seen: 0,
            applied_seen: 0,
            persisted_commit_seen: 0,
            commit_checked: 0,
            leader_view: None,
            layer: None,
        })
    }

    /// Turns the history mode on: a session layer applies committed entries from now on.
    pub fn enable_layer(&mut self) -> Result<(), String> {
        let storage = match (&self.core, &self.storage) {
            (Some(core), _) => core.storage(),
            (None, Some(storage)) => storage,
            (None, None) => return Ok(()),
        };
        self.layer = Some(layer_from_storage(storage)?);
        Ok(())
    }

    /// The snapshot bytes of the machine (and of the session layer, if any) as applied now.
    pub fn snapshot_data(&self) -> Result<Bytes, String> {
        let machine = self.machine.encode();
        let Some(layer) = &self.layer else {
            return Ok(machine);
        };
        let mut data = machine.to_vec();
        layer
            .snapshot(&mut data)
            .map_err(|e| format!("session layer snapshot: {e}"))?;
        Ok(Bytes::from(data))
    }

    /// True if the node runs.
    pub fn is_up(&self) -> bool {
        self.core.is_some() && !self.decommissioned
    }

    /// Crashes the node: the write in progress and all volatile state are lost.
    pub fn crash(&mut self) {
        if let Some(core) = self.core.take() {
            self.storage = Some(core.into_storage());
        }
        self.disk = None;
        self.leader_view = None;
    }

    /// Restarts a crashed node from its disk.
    pub fn restart(&mut self) -> Result<(), String> {
        let Some(storage) = self.storage.take() else {
            return Ok(());
        };
        self.machine = Machine::from_storage(&storage);
        if self.layer.is_some() {
            self.layer = Some(layer_from_storage(&storage)?);
        }
        let core = RawNode::new(self.config.clone(), storage)
            .map_err(|e| format!("restart {}: {e}", self.id))?;
        self.core = Some(core);
        self.commit_seen = 0;
        self.applied_seen = 0;
        self.commit_checked = 0;
        Ok(())
    }
}
