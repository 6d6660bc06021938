//! Typed handles on the built-in machines: [`Session`] accessors, and the common calls of
//! each machine as methods of [`Machine`]. Anything not covered here is one
//! [`Machine::command`] or [`Machine::query`] away, with the machine's own types.

use conclave_statemachines::counter::{
    CounterCommand, CounterMachine, CounterOutput, CounterQuery,
};
use conclave_statemachines::election::{
    ElectionCommand, ElectionMachine, ElectionQuery, ElectionResponse, Leadership,
};
use conclave_statemachines::kv::{
    DeleteRangeRequest, KeyValue, KvCommand, KvMachine, KvQuery, KvResponse, PutRequest,
    RangeRequest, TxnRequest, TxnResponse, prefix_range_end,
};
use conclave_statemachines::lock::{LockCommand, LockMachine, LockQuery, LockResponse};
use conclave_statemachines::queue::{QueueCommand, QueueMachine, QueueQuery, QueueResponse};
use conclave_statemachines::tree::{
    CreateMode, CreateRequest, Stat, TreeCommand, TreeError, TreeMachine, TreeQuery, TreeResponse,
};
use conclave_statemachines::value::{ValueCommand, ValueMachine, ValueOutput, ValueQuery};

use crate::error::{ClientError, Result};
use crate::handle::{Machine, UntypedMachine};
use crate::session::{Consistency, Session};

/// Turns a machine's refusal into [`ClientError::Machine`].
pub(crate) fn refused<T, E: std::fmt::Display>(output: std::result::Result<T, E>) -> Result<T> {
    output.map_err(|error| ClientError::Machine(error.to_string()))
}

fn unexpected<T>(what: &str, output: impl std::fmt::Debug) -> Result<T> {
    Err(ClientError::Unexpected(format!("{what}: {output:?}")))
}

impl Session {
    /// A handle on any machine type implementing `StateMachine` (built-in or the user's).
    pub fn machine<M: conclave_statemachines::StateMachine>(
        &self,
        machine_name: &str,
    ) -> Machine<M> {
        Machine::new(self, machine_name)
    }

    /// A handle on a machine known only by its type name (the user's serde types).
    pub fn untyped(&self, machine_name: &str, machine_type: &str) -> UntypedMachine {
        UntypedMachine::new(self, machine_name, machine_type)
    }

    /// An etcd-style kv machine.
    pub fn kv(&self, machine_name: &str) -> Machine<KvMachine> {
        self.machine(machine_name)
    }

    /// A ZooKeeper-style tree machine.
    pub fn tree(&self, machine_name: &str) -> Machine<TreeMachine> {
        self.machine(machine_name)
    }

    /// A machine of named locks, read-write locks and semaphores.
    pub fn locks(&self, machine_name: &str) -> Machine<LockMachine> {
        self.machine(machine_name)
    }

    /// A machine of named elections.
    pub fn elections(&self, machine_name: &str) -> Machine<ElectionMachine> {
        self.machine(machine_name)
    }

    /// A machine of named queues.
    pub fn queues(&self, machine_name: &str) -> Machine<QueueMachine> {
        self.machine(machine_name)
    }

    /// An atomic counter.
    pub fn counter(&self, machine_name: &str) -> Machine<CounterMachine> {
        self.machine(machine_name)
    }

    /// An atomic value.
    pub fn value(&self, machine_name: &str) -> Machine<ValueMachine> {
        self.machine(machine_name)
    }
}

fn counter_value(output: CounterOutput) -> Result<i64> {
    match output {
        CounterOutput::Value(value) => Ok(value),
        CounterOutput::Overflow => Err(ClientError::Machine("counter overflow".to_string())),
        other => unexpected("counter", other),
    }
}

impl Machine<CounterMachine> {
    /// Adds `delta` and returns the new value.
    pub async fn add_and_get(&self, delta: i64) -> Result<i64> {
        counter_value(self.command(&CounterCommand::AddAndGet { delta }).await?)
    }

    /// Adds `delta` and returns the previous value.
    pub async fn get_and_add(&self, delta: i64) -> Result<i64> {
        counter_value(self.command(&CounterCommand::GetAndAdd { delta }).await?)
    }

    /// Sets `update` if the counter holds `expected`; returns whether it did and the value.
    pub async fn compare_and_set(&self, expected: i64, update: i64) -> Result<(bool, i64)> {
        match self
            .command(&CounterCommand::CompareAndSet { expected, update })
            .await?
        {
            CounterOutput::CompareAndSet { succeeded, value } => Ok((succeeded, value)),
            other => unexpected("counter compare-and-set", other),
        }
    }

    /// The current value.
    pub async fn get(&self, consistency: Consistency) -> Result<i64> {
        counter_value(self.query(&CounterQuery::Get, consistency).await?)
    }
}

impl Machine<ValueMachine> {
    /// Sets (or clears) the value and returns the previous one.
    pub async fn set(&self, value: Option<Vec<u8>>) -> Result<Option<Vec<u8>>> {
        match self.command(&ValueCommand::GetAndSet { value }).await? {
            ValueOutput::Value(previous) => Ok(previous),
            other => unexpected("value set", other),
        }
    }

    /// Sets `update` if the value is `expected`; returns whether it did.
    pub async fn compare_and_set(
        &self,
        expected: Option<Vec<u8>>,
        update: Option<Vec<u8>>,
    ) -> Result<bool> {
        match self
            .command(&ValueCommand::CompareAndSet { expected, update })
            .await?
        {
            ValueOutput::CompareAndSet { succeeded } => Ok(succeeded),
            other => unexpected("value compare-and-set", other),
        }
    }

    /// The current value.
    pub async fn get(&self, consistency: Consistency) -> Result<Option<Vec<u8>>> {
        match self.query(&ValueQuery::Get, consistency).await? {
            ValueOutput::Value(value) => Ok(value),
            other => unexpected("value get", other),
        }
    }

    /// Subscribes this session to changes (they arrive on [`Machine::events`]).
    pub async fn listen(&self) -> Result<()> {
        match self.command(&ValueCommand::Listen).await? {
            ValueOutput::Listening(_) => Ok(()),
            other => unexpected("value listen", other),
        }
    }
}

impl Machine<LockMachine> {
    /// Asks for mutex `name`: `wait_ms` `None` waits, `Some(0)` tries, `Some(ms)` waits at most
    /// that. The answer is `Acquired`, `Queued` (an event follows) or `NotAcquired`.
    pub async fn lock(&self, name: &str, wait_ms: Option<u64>) -> Result<LockResponse> {
        refused(
            self.command(&LockCommand::Lock {
                name: name.to_string(),
                reentrant: false,
                wait_ms,
            })
            .await?,
        )
    }

    /// Releases mutex `name`.
    pub async fn unlock(&self, name: &str) -> Result<()> {
        refused(
            self.command(&LockCommand::Unlock {
                name: name.to_string(),
            })
            .await?,
        )
        .map(drop)
    }

    /// Holders and waiters of lock `name`.
    pub async fn describe(&self, name: &str, consistency: Consistency) -> Result<LockResponse> {
        refused(
            self.query(
                &LockQuery::Describe {
                    name: name.to_string(),
                },
                consistency,
            )
            .await?,
        )
    }
}

impl Machine<ElectionMachine> {
    /// Campaigns in election `name`: `Elected { epoch }` or `Candidate { position }`.
    pub async fn campaign(&self, name: &str, value: &[u8]) -> Result<ElectionResponse> {
        refused(
            self.command(&ElectionCommand::Campaign {
                name: name.to_string(),
                value: value.to_vec(),
            })
            .await?,
        )
    }

    /// Resigns (or leaves the candidate queue).
    pub async fn resign(&self, name: &str) -> Result<()> {
        refused(
            self.command(&ElectionCommand::Resign {
                name: name.to_string(),
            })
            .await?,
        )
        .map(drop)
    }

    /// The current leader.
    pub async fn leader(&self, name: &str, consistency: Consistency) -> Result<Option<Leadership>> {
        match refused(
            self.query(
                &ElectionQuery::Leader {
                    name: name.to_string(),
                },
                consistency,
            )
            .await?,
        )? {
            ElectionResponse::Leader(leader) => Ok(leader),
            other => unexpected("election leader", other),
        }
    }
}

impl Machine<QueueMachine> {
    /// Appends an item; returns its id.
    pub async fn offer(&self, name: &str, data: &[u8]) -> Result<u64> {
        match refused(
            self.command(&QueueCommand::Offer {
                name: name.to_string(),
                data: data.to_vec(),
            })
            .await?,
        )? {
            QueueResponse::Offered { id } => Ok(id),
            other => unexpected("queue offer", other),
        }
    }

    /// Takes the oldest ready item for `visibility_timeout_ms` (`Delivered`, `Empty`, or with
    /// `wait`, `Waiting` and an `ItemAvailable` event later).
    pub async fn poll(
        &self,
        name: &str,
        visibility_timeout_ms: u64,
        wait: bool,
    ) -> Result<QueueResponse> {
        refused(
            self.command(&QueueCommand::Poll {
                name: name.to_string(),
                visibility_timeout_ms,
                wait,
            })
            .await?,
        )
    }

    /// Removes a delivered item for good.
    pub async fn ack(&self, name: &str, id: u64, delivery: u32) -> Result<()> {
        refused(
            self.command(&QueueCommand::Ack {
                name: name.to_string(),
                id,
                delivery,
            })
            .await?,
        )
        .map(drop)
    }

    /// (ready, in flight) counts.
    pub async fn size(&self, name: &str, consistency: Consistency) -> Result<(u64, u64)> {
        match refused(
            self.query(
                &QueueQuery::Size {
                    name: name.to_string(),
                },
                consistency,
            )
            .await?,
        )? {
            QueueResponse::Size { ready, in_flight } => Ok((ready, in_flight)),
            other => unexpected("queue size", other),
        }
    }
}

impl Machine<KvMachine> {
    async fn kv_command(&self, command: KvCommand) -> Result<KvResponse> {
        refused(self.command(&command).await?)
    }

    /// Sets a key; returns the new revision.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<i64> {
        match self
            .kv_command(KvCommand::Put(PutRequest {
                key: key.to_vec(),
                value: value.to_vec(),
                ..PutRequest::default()
            }))
            .await?
        {
            KvResponse::Put(put) => Ok(put.revision),
            other => unexpected("kv put", other),
        }
    }

    /// Reads the keys in `[key, range_end)` (`range_end` empty: the key alone).
    pub async fn range(
        &self,
        key: &[u8],
        range_end: &[u8],
        consistency: Consistency,
    ) -> Result<Vec<KeyValue>> {
        let request = RangeRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            ..RangeRequest::default()
        };
        match refused(self.query(&KvQuery::Range(request), consistency).await?)? {
            KvResponse::Range(range) => Ok(range.kvs),
            other => unexpected("kv range", other),
        }
    }

    /// One key.
    pub async fn get(&self, key: &[u8], consistency: Consistency) -> Result<Option<KeyValue>> {
        Ok(self.range(key, &[], consistency).await?.into_iter().next())
    }

    /// Every key that starts with `prefix`.
    pub async fn prefix(&self, prefix: &[u8], consistency: Consistency) -> Result<Vec<KeyValue>> {
        self.range(prefix, &prefix_range_end(prefix), consistency)
            .await
    }

    /// Deletes the keys in `[key, range_end)`; returns how many.
    pub async fn delete(&self, key: &[u8], range_end: &[u8]) -> Result<i64> {
        match self
            .kv_command(KvCommand::DeleteRange(DeleteRangeRequest {
                key: key.to_vec(),
                range_end: range_end.to_vec(),
                ..DeleteRangeRequest::default()
            }))
            .await?
        {
            KvResponse::DeleteRange(deleted) => Ok(deleted.deleted),
            other => unexpected("kv delete", other),
        }
    }

    /// A transaction (compare, then success or failure operations).
    pub async fn txn(&self, request: TxnRequest) -> Result<TxnResponse> {
        match self.kv_command(KvCommand::Txn(request)).await? {
            KvResponse::Txn(txn) => Ok(txn),
            other => unexpected("kv txn", other),
        }
    }
}

/// A tree refusal as [`ClientError::Machine`], with ZooKeeper's code in the message.
fn tree_refused<T>(output: std::result::Result<T, TreeError>) -> Result<T> {
    output.map_err(|error| ClientError::Machine(format!("{error} (code {})", error.code())))
}

impl Machine<TreeMachine> {
    /// Runs a tree command and keeps the machine's refusal typed (the recipes match on it).
    pub async fn tree_command(
        &self,
        command: &TreeCommand,
    ) -> Result<std::result::Result<TreeResponse, TreeError>> {
        self.command(command).await
    }

    /// Creates a node; returns the path created (with its suffix for sequential modes).
    pub async fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Result<String> {
        match tree_refused(
            self.tree_command(&TreeCommand::Create(CreateRequest::new(path, data, mode)))
                .await?,
        )? {
            TreeResponse::Created { path, .. } => Ok(path),
            other => unexpected("tree create", other),
        }
    }

    /// Sets a node's data if its version is `version` (-1: any); returns the new stat.
    pub async fn set_data(&self, path: &str, data: &[u8], version: i32) -> Result<Stat> {
        match tree_refused(
            self.tree_command(&TreeCommand::SetData {
                path: path.to_string(),
                data: data.to_vec(),
                version,
            })
            .await?,
        )? {
            TreeResponse::Stat(stat) => Ok(stat),
            other => unexpected("tree set", other),
        }
    }

    /// Deletes a node if its version is `version` (-1: any).
    pub async fn delete(&self, path: &str, version: i32) -> Result<()> {
        tree_refused(
            self.tree_command(&TreeCommand::Delete {
                path: path.to_string(),
                version,
            })
            .await?,
        )
        .map(drop)
    }

    async fn tree_query(
        &self,
        query: TreeQuery,
        consistency: Consistency,
    ) -> Result<std::result::Result<TreeResponse, TreeError>> {
        self.query(&query, consistency).await
    }

    /// A node's data and stat, or `None` when it does not exist.
    pub async fn get_data(
        &self,
        path: &str,
        consistency: Consistency,
    ) -> Result<Option<(Vec<u8>, Stat)>> {
        let path = path.to_string();
        match self
            .tree_query(TreeQuery::GetData { path }, consistency)
            .await?
        {
            Ok(TreeResponse::Data { data, stat }) => Ok(Some((data, stat))),
            Err(TreeError::NoNode { .. }) => Ok(None),
            other => tree_refused(other).and_then(|other| unexpected("tree get", other)),
        }
    }

    /// A node's children (names, sorted), or `None` when it does not exist.
    pub async fn children(
        &self,
        path: &str,
        consistency: Consistency,
    ) -> Result<Option<Vec<String>>> {
        let path = path.to_string();
        match self
            .tree_query(TreeQuery::GetChildren { path }, consistency)
            .await?
        {
            Ok(TreeResponse::Children { mut children, .. }) => {
                children.sort();
                Ok(Some(children))
            }
            Err(TreeError::NoNode { .. }) => Ok(None),
            other => tree_refused(other).and_then(|other| unexpected("tree children", other)),
        }
    }
}
