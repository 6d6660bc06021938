//! Transaction checks that run before anything is written, as etcd does: operation counts,
//! the duplicate-key rule, and the branch every (nested) transaction takes, decided against
//! the store as it was before the transaction.

use std::collections::BTreeSet;

use super::store::{KeyRange, Store};
use super::types::{
    Compare, CompareResult, CompareTarget, KeyValue, KvError, RequestOp, TxnRequest,
};

/// Checks that no list of a transaction (or of a nested one) exceeds `txn_ops_max`.
pub(crate) fn check_op_counts(txn: &TxnRequest, txn_ops_max: u64) -> Result<(), KvError> {
    let too_many = |count: usize| count as u64 > txn_ops_max;
    if too_many(txn.compare.len()) || too_many(txn.success.len()) || too_many(txn.failure.len()) {
        return Err(KvError::TooManyOps { txn_ops_max });
    }
    for op in txn.success.iter().chain(&txn.failure) {
        if let RequestOp::Txn(nested) = op {
            check_op_counts(nested, txn_ops_max)?;
        }
    }
    Ok(())
}

/// Refuses a transaction that could write one key twice: a put key repeated, or a put key
/// inside a delete range, at any depth. The two branches of a nested transaction exclude
/// each other, so a key put in both is allowed.
pub(crate) fn check_duplicates(txn: &TxnRequest) -> Result<(), KvError> {
    check_intervals(&txn.success)?;
    check_intervals(&txn.failure)?;
    Ok(())
}

type Intervals<'a> = (BTreeSet<&'a [u8]>, Vec<KeyRange<'a>>);

fn intersects_any(deletes: &[KeyRange<'_>], key: &[u8]) -> bool {
    deletes
        .iter()
        .any(|range| range.intersects(&KeyRange::Single(key)))
}

fn check_intervals(ops: &[RequestOp]) -> Result<Intervals<'_>, KvError> {
    let mut deletes: Vec<KeyRange<'_>> = ops
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(delete) => Some(KeyRange::new(&delete.key, &delete.range_end)),
            _ => None,
        })
        .collect();
    let mut puts: BTreeSet<&[u8]> = BTreeSet::new();
    for op in ops {
        let RequestOp::Txn(nested) = op else { continue };
        let (puts_then, deletes_then) = check_intervals(&nested.success)?;
        let (puts_else, deletes_else) = check_intervals(&nested.failure)?;
        for key in &puts_then {
            if puts.contains(key) || intersects_any(&deletes, key) {
                return Err(KvError::DuplicateKey);
            }
            puts.insert(key);
        }
        for key in &puts_else {
            let repeated = puts.contains(key) && !puts_then.contains(key);
            if repeated || intersects_any(&deletes, key) {
                return Err(KvError::DuplicateKey);
            }
            puts.insert(key);
        }
        deletes.extend(deletes_then);
        deletes.extend(deletes_else);
    }
    for op in ops {
        let RequestOp::Put(put) = op else { continue };
        let key = put.key.as_slice();
        if puts.contains(key) || intersects_any(&deletes, key) {
            return Err(KvError::DuplicateKey);
        }
        puts.insert(key);
    }
    Ok((puts, deletes))
}

/// Whether every key of the compare's range satisfies it at revision `at`. A range with no
/// key compares as one all-zero key, except that a value compare then fails (etcd's rule:
/// a missing value cannot be told from an empty one).
pub(crate) fn compare_holds(store: &Store, compare: &Compare, at: i64) -> bool {
    let kvs = store.visible(KeyRange::new(&compare.key, &compare.range_end), at);
    if kvs.is_empty() {
        if matches!(compare.target, CompareTarget::Value(_)) {
            return false;
        }
        let zero = KeyValue {
            key: compare.key.clone(),
            create_revision: 0,
            mod_revision: 0,
            version: 0,
            value: Vec::new(),
            lease: 0,
        };
        return compare_key_value(compare, &zero);
    }
    kvs.iter().all(|kv| compare_key_value(compare, kv))
}

fn compare_key_value(compare: &Compare, kv: &KeyValue) -> bool {
    let ordering = match &compare.target {
        CompareTarget::Version(version) => kv.version.cmp(version),
        CompareTarget::Create(revision) => kv.create_revision.cmp(revision),
        CompareTarget::Mod(revision) => kv.mod_revision.cmp(revision),
        CompareTarget::Value(value) => kv.value.as_slice().cmp(value.as_slice()),
        CompareTarget::Lease(lease) => kv.lease.cmp(lease),
    };
    match compare.result {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
        CompareResult::NotEqual => ordering.is_ne(),
    }
}

/// The branch each transaction takes, in pre-order (this one, then the nested ones of the
/// branch taken), all decided against the store before any write.
pub(crate) fn decide_path(store: &Store, txn: &TxnRequest, path: &mut Vec<bool>) {
    let at = store.revision();
    let succeeded = txn
        .compare
        .iter()
        .all(|compare| compare_holds(store, compare, at));
    path.push(succeeded);
    let branch = if succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    for op in branch {
        if let RequestOp::Txn(nested) = op {
            decide_path(store, nested, path);
        }
    }
}
