//! A model test: random sequences of puts, deletes, ranges at past revisions, compactions,
//! transactions, lease grants, leased puts, revocations, time-to-live queries and the
//! passing of log time run against the kv machine and against a plain model (one `BTreeMap`
//! per revision, and a lease table whose keys are derived from the keys' lease fields);
//! every response must agree.
//!
//! More cases: `PROPTEST_CASES=5000 cargo test -p conclave-statemachines --test kv_model`.

use std::collections::{BTreeMap, BTreeSet};

use conclave_statemachines::kv::*;
use conclave_statemachines::{ApplyContext, QueryContext, SessionId, StateMachine};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum TxnStep {
    Put(u8, u8),
    Delete(u8),
    Get(u8),
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8, Option<u8>),
    Range(u8, Option<u8>, i64),
    Compact(i64),
    Txn {
        key: u8,
        version: i64,
        success: Vec<TxnStep>,
        failure: Vec<TxnStep>,
    },
    Grant(i64, i64),
    PutLeased(u8, u8, i64),
    Revoke(i64),
    TimeToLive(i64),
    Advance(u64),
}

/// The kv configuration's default minimum TTL, which the model applies itself.
const LEASE_TTL_SECONDS_MIN: i64 = 2;

fn key(byte: u8) -> Vec<u8> {
    vec![b'a' + byte]
}

fn step_strategy() -> impl Strategy<Value = TxnStep> {
    prop_oneof![
        (0..5_u8, 0..4_u8).prop_map(|(key, value)| TxnStep::Put(key, value)),
        (0..5_u8).prop_map(TxnStep::Delete),
        (0..5_u8).prop_map(TxnStep::Get),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..5_u8, 0..4_u8).prop_map(|(key, value)| Op::Put(key, value)),
        2 => (0..5_u8, proptest::option::of(0..6_u8)).prop_map(|(key, end)| Op::Delete(key, end)),
        3 => (0..5_u8, proptest::option::of(0..6_u8), -2..12_i64)
            .prop_map(|(key, end, back)| Op::Range(key, end, back)),
        1 => (-1..8_i64).prop_map(Op::Compact),
        2 => (
            0..5_u8,
            0..3_i64,
            proptest::collection::vec(step_strategy(), 0..4),
            proptest::collection::vec(step_strategy(), 0..3)
        )
            .prop_map(|(key, version, success, failure)| Op::Txn { key, version, success, failure }),
        1 => (1..4_i64, 0..6_i64).prop_map(|(id, ttl)| Op::Grant(id, ttl)),
        2 => (0..5_u8, 0..4_u8, 1..4_i64).prop_map(|(key, value, id)| Op::PutLeased(key, value, id)),
        1 => (1..4_i64).prop_map(Op::Revoke),
        1 => (1..4_i64).prop_map(Op::TimeToLive),
        1 => (0..4_000_u64).prop_map(Op::Advance),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct Model {
    /// `states[r]` is the store at revision `r` (index 0 unused).
    states: Vec<BTreeMap<Vec<u8>, KeyValue>>,
    compact_revision: i64,
    /// Lease id to (expiry in log time, granted TTL); a lease's keys are the live keys whose
    /// `lease` field names it, so the model needs no attach/detach bookkeeping.
    leases: BTreeMap<i64, (u64, i64)>,
    now_ms: u64,
}

impl Model {
    fn revision(&self) -> i64 {
        self.states.len() as i64 - 1
    }

    fn current(&self) -> &BTreeMap<Vec<u8>, KeyValue> {
        &self.states[self.states.len() - 1]
    }

    fn put_into(
        state: &mut BTreeMap<Vec<u8>, KeyValue>,
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
        revision: i64,
    ) {
        let previous = state.get(&key);
        let kv = KeyValue {
            key: key.clone(),
            create_revision: previous.map_or(revision, |kv| kv.create_revision),
            mod_revision: revision,
            version: previous.map_or(1, |kv| kv.version + 1),
            value,
            lease,
        };
        state.insert(key, kv);
    }

    /// Revokes a lease: its live keys go in one new revision (none if it has no keys).
    fn revoke(&mut self, id: i64) -> bool {
        if self.leases.remove(&id).is_none() {
            return false;
        }
        let mut state = self.current().clone();
        let before = state.len();
        state.retain(|_, kv| kv.lease != id);
        if state.len() != before {
            self.states.push(state);
        }
        true
    }

    fn advance(&mut self, milliseconds: u64) {
        self.now_ms += milliseconds;
        loop {
            let due = self
                .leases
                .iter()
                .filter(|(_, (expiry_ms, _))| *expiry_ms <= self.now_ms)
                .min_by_key(|(id, (expiry_ms, _))| (*expiry_ms, **id))
                .map(|(id, _)| *id);
            let Some(id) = due else { break };
            self.revoke(id);
        }
    }

    fn in_range(candidate: &[u8], start: &[u8], end: &Option<Vec<u8>>) -> bool {
        match end {
            None => candidate == start,
            Some(end) => candidate >= start && candidate < end.as_slice(),
        }
    }
}

struct Runner {
    machine: KvMachine,
    index: u64,
    now_ms: u64,
}

impl Runner {
    fn run(&mut self, command: KvCommand) -> KvOutput {
        self.index += 1;
        let sessions: BTreeMap<SessionId, ()> = BTreeMap::new();
        let mut context = ApplyContext::new(self.index, self.now_ms, Some(1), &sessions);
        self.machine.apply(&mut context, command)
    }

    fn query_context(&self) -> QueryContext {
        QueryContext {
            index: self.index,
            log_time_ms: self.now_ms,
            session: None,
        }
    }

    /// Ops that are not commands: the passing of time (as the session layer drives it) and
    /// a time-to-live query.
    fn other(&mut self, op: &Op) -> KvOutput {
        match op {
            Op::Advance(milliseconds) => {
                self.index += 1;
                self.now_ms += milliseconds;
                let sessions: BTreeMap<SessionId, ()> = BTreeMap::new();
                let mut context = ApplyContext::new(self.index, self.now_ms, None, &sessions);
                self.machine.time_advanced(&mut context);
                self.machine.query(&self.query_context(), KvQuery::Status)
            }
            Op::TimeToLive(id) => {
                let query = KvQuery::LeaseTimeToLive {
                    id: *id,
                    keys: true,
                };
                self.machine.query(&self.query_context(), query)
            }
            _ => unreachable!("commands go through run"),
        }
    }
}

fn txn_steps(steps: &[TxnStep]) -> Vec<RequestOp> {
    steps
        .iter()
        .map(|step| match *step {
            TxnStep::Put(k, v) => RequestOp::Put(PutRequest {
                key: key(k),
                value: vec![v],
                ..Default::default()
            }),
            TxnStep::Delete(k) => RequestOp::DeleteRange(DeleteRangeRequest {
                key: key(k),
                ..Default::default()
            }),
            TxnStep::Get(k) => RequestOp::Range(RangeRequest {
                key: key(k),
                ..Default::default()
            }),
        })
        .collect()
}

fn has_duplicates(steps: &[TxnStep]) -> bool {
    let mut puts = BTreeSet::new();
    let deletes: BTreeSet<u8> = steps
        .iter()
        .filter_map(|step| {
            if let TxnStep::Delete(k) = step {
                Some(*k)
            } else {
                None
            }
        })
        .collect();
    steps.iter().any(|step| match step {
        TxnStep::Put(k, _) => !puts.insert(*k) || deletes.contains(k),
        _ => false,
    })
}

/// Applies an op to the model and returns the expected output, with the machine's types.
fn expect(model: &mut Model, op: &Op) -> KvOutput {
    let next = model.revision() + 1;
    match op {
        Op::Put(k, v) => {
            let mut state = model.current().clone();
            Model::put_into(&mut state, key(*k), vec![*v], 0, next);
            model.states.push(state);
            Ok(KvResponse::Put(PutResponse {
                revision: next,
                prev_kv: None,
            }))
        }
        Op::PutLeased(k, v, id) => {
            if !model.leases.contains_key(id) {
                return Err(KvError::LeaseNotFound);
            }
            let mut state = model.current().clone();
            Model::put_into(&mut state, key(*k), vec![*v], *id, next);
            model.states.push(state);
            Ok(KvResponse::Put(PutResponse {
                revision: next,
                prev_kv: None,
            }))
        }
        Op::Grant(id, ttl) => {
            if model.leases.contains_key(id) {
                return Err(KvError::LeaseExists);
            }
            let ttl_seconds = (*ttl).max(LEASE_TTL_SECONDS_MIN);
            model.leases.insert(
                *id,
                (model.now_ms + ttl_seconds as u64 * 1_000, ttl_seconds),
            );
            Ok(KvResponse::LeaseGranted {
                revision: model.revision(),
                id: *id,
                ttl_seconds,
            })
        }
        Op::Revoke(id) => {
            if !model.revoke(*id) {
                return Err(KvError::LeaseNotFound);
            }
            Ok(KvResponse::LeaseRevoked {
                revision: model.revision(),
            })
        }
        Op::TimeToLive(id) => {
            let Some((expiry_ms, granted_ttl_seconds)) = model.leases.get(id) else {
                return Err(KvError::LeaseNotFound);
            };
            let keys = model
                .current()
                .values()
                .filter(|kv| kv.lease == *id)
                .map(|kv| kv.key.clone())
                .collect();
            Ok(KvResponse::LeaseTimeToLive {
                revision: model.revision(),
                id: *id,
                ttl_seconds: (expiry_ms - model.now_ms).div_ceil(1_000) as i64,
                granted_ttl_seconds: *granted_ttl_seconds,
                keys,
            })
        }
        Op::Advance(milliseconds) => {
            model.advance(*milliseconds);
            Ok(KvResponse::Status {
                revision: model.revision(),
                compact_revision: model.compact_revision,
            })
        }
        Op::Delete(k, end) => {
            let end = end.map(key);
            let mut state = model.current().clone();
            let before = state.len();
            state.retain(|candidate, _| !Model::in_range(candidate, &key(*k), &end));
            let deleted = (before - state.len()) as i64;
            if deleted > 0 {
                model.states.push(state);
            }
            let revision = model.revision();
            Ok(KvResponse::DeleteRange(DeleteRangeResponse {
                revision,
                deleted,
                prev_kvs: Vec::new(),
            }))
        }
        Op::Range(k, end, back) => {
            let revision = if *back < 0 {
                0
            } else {
                (model.revision() - back).max(1)
            };
            let end = end.map(key);
            if revision > model.revision() {
                return Err(KvError::FutureRevision {
                    current_revision: model.revision(),
                });
            }
            if revision != 0 && revision < model.compact_revision {
                return Err(KvError::Compacted {
                    compact_revision: model.compact_revision,
                });
            }
            let at = if revision == 0 {
                model.revision()
            } else {
                revision
            };
            let kvs: Vec<KeyValue> = model.states[at as usize]
                .values()
                .filter(|kv| Model::in_range(&kv.key, &key(*k), &end))
                .cloned()
                .collect();
            let count = kvs.len() as i64;
            Ok(KvResponse::Range(RangeResponse {
                revision: model.revision(),
                kvs,
                more: false,
                count,
            }))
        }
        Op::Compact(back) => {
            let revision = model.revision() - back;
            if revision <= model.compact_revision {
                return Err(KvError::Compacted {
                    compact_revision: model.compact_revision,
                });
            }
            if revision > model.revision() {
                return Err(KvError::FutureRevision {
                    current_revision: model.revision(),
                });
            }
            model.compact_revision = revision;
            Ok(KvResponse::Compact {
                revision: model.revision(),
            })
        }
        Op::Txn {
            key: k,
            version,
            success,
            failure,
        } => {
            if has_duplicates(success) || has_duplicates(failure) {
                return Err(KvError::DuplicateKey);
            }
            let current_version = model.current().get(&key(*k)).map_or(0, |kv| kv.version);
            let succeeded = current_version == *version;
            let steps = if succeeded { success } else { failure };
            let mut state = model.current().clone();
            let mut changed = false;
            let mut responses = Vec::new();
            for step in steps {
                match *step {
                    TxnStep::Put(k, v) => {
                        Model::put_into(&mut state, key(k), vec![v], 0, next);
                        changed = true;
                        responses.push(ResponseOp::Put(PutResponse::default()));
                    }
                    TxnStep::Delete(k) => {
                        let deleted = state.remove(&key(k)).is_some();
                        changed |= deleted;
                        responses.push(ResponseOp::DeleteRange(DeleteRangeResponse {
                            deleted: deleted as i64,
                            ..Default::default()
                        }));
                    }
                    TxnStep::Get(k) => {
                        let kvs: Vec<KeyValue> = state.get(&key(k)).cloned().into_iter().collect();
                        let count = kvs.len() as i64;
                        responses.push(ResponseOp::Range(RangeResponse {
                            kvs,
                            count,
                            ..Default::default()
                        }));
                    }
                }
            }
            if changed {
                model.states.push(state);
            }
            let revision = model.revision();
            for response in &mut responses {
                match response {
                    ResponseOp::Put(put) => put.revision = revision,
                    ResponseOp::DeleteRange(delete) => delete.revision = revision,
                    ResponseOp::Range(range) => range.revision = revision,
                    ResponseOp::Txn(_) => unreachable!(),
                }
            }
            Ok(KvResponse::Txn(TxnResponse {
                revision,
                succeeded,
                responses,
            }))
        }
    }
}

fn command(model: &Model, op: &Op) -> KvCommand {
    match op {
        Op::Put(k, v) => KvCommand::Put(PutRequest {
            key: key(*k),
            value: vec![*v],
            ..Default::default()
        }),
        Op::Delete(k, end) => KvCommand::DeleteRange(DeleteRangeRequest {
            key: key(*k),
            range_end: end.map(key).unwrap_or_default(),
            prev_kv: false,
        }),
        Op::Range(k, end, back) => KvCommand::Range(RangeRequest {
            key: key(*k),
            range_end: end.map(key).unwrap_or_default(),
            revision: if *back < 0 {
                0
            } else {
                (model.revision() - back).max(1)
            },
            ..Default::default()
        }),
        Op::PutLeased(k, v, id) => KvCommand::Put(PutRequest {
            key: key(*k),
            value: vec![*v],
            lease: *id,
            ..Default::default()
        }),
        Op::Grant(id, ttl) => KvCommand::LeaseGrant {
            ttl_seconds: *ttl,
            id: *id,
        },
        Op::Revoke(id) => KvCommand::LeaseRevoke { id: *id },
        Op::TimeToLive(_) | Op::Advance(_) => unreachable!("not commands"),
        Op::Compact(back) => KvCommand::Compact {
            revision: model.revision() - back,
        },
        Op::Txn {
            key: k,
            version,
            success,
            failure,
        } => KvCommand::Txn(TxnRequest {
            compare: vec![Compare {
                key: key(*k),
                range_end: Vec::new(),
                result: CompareResult::Equal,
                target: CompareTarget::Version(*version),
            }],
            success: txn_steps(success),
            failure: txn_steps(failure),
        }),
    }
}

proptest! {
    #[test]
    fn kv_agrees_with_a_map_per_revision(ops in proptest::collection::vec(op_strategy(), 1..80)) {
        let machine = KvMachine::new(KvConfig::default());
        let mut runner = Runner { machine, index: 0, now_ms: 0 };
        let mut model = Model {
            states: vec![BTreeMap::new(), BTreeMap::new()],
            compact_revision: 0,
            leases: BTreeMap::new(),
            now_ms: 0,
        };
        for op in &ops {
            let actual = match op {
                Op::Advance(_) | Op::TimeToLive(_) => runner.other(op),
                _ => {
                    let command = command(&model, op);
                    runner.run(command)
                }
            };
            let expected = expect(&mut model, op);
            prop_assert_eq!(&actual, &expected, "op {:?}", op);
            prop_assert_eq!(runner.machine.revision(), model.revision());
            prop_assert_eq!(runner.machine.validate(), Ok(()));
        }
        // Every retained revision still reads as the model says.
        for revision in model.compact_revision.max(1)..=model.revision() {
            let request =
                RangeRequest { key: vec![0], range_end: vec![0], revision, ..Default::default() };
            let Ok(KvResponse::Range(response)) = runner.run(KvCommand::Range(request)) else {
                panic!("range at a retained revision failed");
            };
            let expected: Vec<KeyValue> =
                model.states[revision as usize].values().cloned().collect();
            prop_assert_eq!(response.kvs, expected, "at revision {}", revision);
        }
    }
}
