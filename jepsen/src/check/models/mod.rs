//! The built-in models, and helpers for reading their JSON arguments.
//!
//! | name | functions | partition |
//! | --- | --- | --- |
//! | [`register`] | `read`, `write v`, `cas [from, to]` | one register |
//! | [`kv`] | `get`, `put v`, `append v` on string values | by key |
//! | [`mutex`] | `acquire` → fencing token, `release` | by lock name (key) |
//! | [`queue`] | `enqueue v`, `dequeue` → v or null; exact or at-least-once | by queue name (key) |
//! | [`set`] | `add v`, `read` → [values] | by set name (key) |
//! | [`election`] | `campaign` → epoch, `resign`, `leader` → [process, epoch] or null | by election name (key) |

pub mod election;
pub mod kv;
pub mod mutex;
pub mod queue;
pub mod register;
pub mod set;

use serde_json::Value;

use super::history::Record;
use super::search::fast_hash;

/// An integer argument or result.
pub(crate) fn integer(value: &Value, what: &str) -> Result<i64, String> {
    value
        .as_i64()
        .ok_or_else(|| format!("{what} must be an integer, not {value}"))
}

/// A non-negative integer argument or result.
pub(crate) fn natural(value: &Value, what: &str) -> Result<u64, String> {
    value
        .as_u64()
        .ok_or_else(|| format!("{what} must be a non-negative integer, not {value}"))
}

/// The partition of a record's key (records without a key share one).
pub(crate) fn key_partition(key: &str) -> u64 {
    fast_hash(key)
}

/// The record's key, or the empty string.
pub(crate) fn key_of(record: &Record) -> &str {
    record.key.as_deref().unwrap_or("")
}

pub(crate) fn unknown_function(record: &Record) -> String {
    format!("unknown function {:?}", record.function)
}
