//! The per-session index that lock and election keep so that closing a session touches
//! only the objects that session was part of.

use std::collections::{BTreeMap, BTreeSet};

use crate::machine::SessionId;

/// Which named objects each session takes part in.
pub(crate) type SessionIndex = BTreeMap<SessionId, BTreeSet<String>>;

/// Records whether `session` still takes part in object `name`, dropping a session's entry
/// once it takes part in nothing.
pub(crate) fn record(index: &mut SessionIndex, session: SessionId, name: &str, involved: bool) {
    if involved {
        index.entry(session).or_default().insert(name.to_string());
    } else if let Some(names) = index.get_mut(&session) {
        names.remove(name);
        if names.is_empty() {
            index.remove(&session);
        }
    }
}
