//! Readers for the history formats the checker accepts.
//!
//! * [`Format::JsonLines`]: Conclave's own format, documented in
//!   `jepsen/HISTORY.md`.
//! * [`Format::EtcdLog`]: Jepsen's 2015 etcd logs (`INFO  jepsen.util - P :type :f value`),
//!   a single CAS register.
//! * [`Format::KvEdn`]: EDN-like maps, one per line, of a multi-key string KV.
//!
//! The last two are the formats of Porcupine's labelled test data; their
//! grammar is in `shared/lincheck-data/README.md`.

use serde::Deserialize;
use serde_json::Value;

use super::error::CheckError;
use super::history::{Event, EventKind, Outcome, Record, pair_events};

/// A history file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (see `jepsen/HISTORY.md`).
    JsonLines,
    /// Jepsen's etcd register logs.
    EtcdLog,
    /// EDN-like key/value maps, one per line.
    KvEdn,
}

impl Format {
    /// Guesses the format from the first non-empty line.
    pub fn detect(text: &str) -> Format {
        let first = text
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .unwrap_or("");
        if first.starts_with("INFO") {
            Format::EtcdLog
        } else if first.starts_with("{:") {
            Format::KvEdn
        } else {
            Format::JsonLines
        }
    }
}

/// Parses a whole history in the given format into records.
pub fn parse(text: &str, format: Format) -> Result<Vec<Record>, CheckError> {
    let events = match format {
        Format::JsonLines => parse_json_lines(text)?,
        Format::EtcdLog => parse_etcd_log(text)?,
        Format::KvEdn => parse_kv_edn(text)?,
    };
    pair_events(events)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEvent {
    process: u64,
    #[serde(rename = "type")]
    kind: String,
    f: String,
    #[serde(default)]
    key: Option<Value>,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    time: Option<u64>,
}

fn event_kind(kind: &str) -> Option<EventKind> {
    match kind {
        "invoke" => Some(EventKind::Invoke),
        "ok" => Some(EventKind::Complete(Outcome::Ok)),
        "fail" => Some(EventKind::Complete(Outcome::Fail)),
        "info" => Some(EventKind::Complete(Outcome::Info)),
        _ => None,
    }
}

/// Reads Conclave's JSON-lines format; blank lines are skipped.
pub fn parse_json_lines(text: &str) -> Result<Vec<Event>, CheckError> {
    let mut events = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let error = |reason: String| CheckError::Parse {
            line: index + 1,
            reason,
        };
        let raw: JsonEvent = serde_json::from_str(line).map_err(|e| error(e.to_string()))?;
        let kind =
            event_kind(&raw.kind).ok_or_else(|| error(format!("unknown type {:?}", raw.kind)))?;
        let key = match raw.key {
            None | Some(Value::Null) => None,
            Some(Value::String(key)) => Some(key),
            Some(Value::Number(key)) => Some(key.to_string()),
            Some(other) => {
                return Err(error(format!("a key is a string or a number, not {other}")));
            }
        };
        events.push(Event {
            process: raw.process,
            kind,
            function: raw.f,
            key,
            value: raw.value,
            time: raw.time,
        });
    }
    Ok(events)
}

/// Reads a Jepsen etcd log, mapped onto the `register` model.
///
/// A `:fail` cas means the comparison failed, so it becomes an `ok` cas with
/// result `false`; a `:fail` read or write did not happen.
pub fn parse_etcd_log(text: &str) -> Result<Vec<Event>, CheckError> {
    let mut events = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let error = |reason: &str| CheckError::Parse {
            line: index + 1,
            reason: reason.to_string(),
        };
        let rest = line
            .strip_prefix("INFO")
            .and_then(|rest| rest.trim_start().strip_prefix("jepsen.util"))
            .and_then(|rest| rest.trim_start().strip_prefix('-'))
            .ok_or_else(|| error("expected the prefix `INFO  jepsen.util - `"))?;
        let mut fields = rest.split_whitespace();
        let process = fields
            .next()
            .and_then(|field| field.parse::<u64>().ok())
            .ok_or_else(|| error("expected a process number"))?;
        let kind = fields
            .next()
            .and_then(|field| field.strip_prefix(':'))
            .and_then(event_kind);
        let kind = kind.ok_or_else(|| error("expected :invoke, :ok, :fail or :info"))?;
        let function = fields
            .next()
            .and_then(|field| field.strip_prefix(':'))
            .ok_or_else(|| error("expected a function such as :read"))?
            .to_string();
        let value_text = fields.collect::<Vec<_>>().join(" ");
        let value = etcd_value(&value_text).ok_or_else(|| error("unreadable value"))?;
        let (kind, value) = match (kind, function.as_str()) {
            (EventKind::Complete(Outcome::Fail), "cas") => {
                (EventKind::Complete(Outcome::Ok), Value::Bool(false))
            }
            (EventKind::Complete(Outcome::Ok), "cas") => (kind, Value::Bool(true)),
            (EventKind::Complete(Outcome::Ok), "write") => (kind, Value::Null),
            _ => (kind, value),
        };
        events.push(Event {
            process,
            kind,
            function,
            key: None,
            value,
            time: None,
        });
    }
    Ok(events)
}

fn etcd_value(text: &str) -> Option<Value> {
    let text = text.trim();
    if text == "nil" || text.starts_with(':') {
        return Some(Value::Null);
    }
    if let Some(inner) = text
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
    {
        let numbers: Option<Vec<Value>> = inner
            .split_whitespace()
            .map(|number| number.parse::<i64>().ok().map(Value::from))
            .collect();
        return numbers.map(Value::Array);
    }
    text.parse::<i64>().ok().map(Value::from)
}

/// Reads the EDN-like key/value format, mapped onto the `kv` model.
pub fn parse_kv_edn(text: &str) -> Result<Vec<Event>, CheckError> {
    let mut events = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let error = |reason: &str| CheckError::Parse {
            line: index + 1,
            reason: reason.to_string(),
        };
        let body = line
            .strip_prefix('{')
            .and_then(|body| body.strip_suffix('}'))
            .ok_or_else(|| error("expected a map in braces"))?;
        let field = |name: &str| -> Option<&str> {
            let start = body.find(name)? + name.len();
            let rest = body[start..].trim_start();
            if let Some(quoted) = rest.strip_prefix('"') {
                quoted.find('"').map(|end| &quoted[..end])
            } else {
                Some(rest.split(',').next().unwrap_or(rest).trim())
            }
        };
        let process = field(":process")
            .and_then(|process| process.parse::<u64>().ok())
            .ok_or_else(|| error("expected :process N"))?;
        let kind = field(":type")
            .and_then(|kind| kind.strip_prefix(':'))
            .and_then(event_kind)
            .ok_or_else(|| error("expected :type :invoke|:ok|:fail|:info"))?;
        let function = field(":f")
            .and_then(|function| function.strip_prefix(':'))
            .ok_or_else(|| error("expected :f :get|:put|:append"))?
            .to_string();
        let key = field(":key").map(str::to_string);
        let value_start = body
            .find(":value")
            .ok_or_else(|| error("expected :value"))?;
        let value_text = body[value_start + ":value".len()..].trim();
        let value = if let Some(quoted) = value_text.strip_prefix('"') {
            let end = quoted
                .rfind('"')
                .ok_or_else(|| error("unterminated string"))?;
            Value::String(quoted[..end].to_string())
        } else {
            Value::Null
        };
        events.push(Event {
            process,
            kind,
            function,
            key,
            value,
            time: None,
        });
    }
    Ok(events)
}
