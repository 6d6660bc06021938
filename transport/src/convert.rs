//! The mapping between the protobuf messages of `proto/peer.proto` and the core's types.
//!
//! Conversions towards the wire consume the core's values so that entry payloads (`Bytes`)
//! move without a copy; conversions from the wire check every field the core relies on and
//! refuse what the core could never have produced.

use std::collections::BTreeSet;

use bytes::Bytes;
use conclave_consensus::{
    Entry, EntryKind, Membership, Message, MessageKind, NodeId, Snapshot, SnapshotMetadata,
};

use crate::error::Error;
use crate::proto;

/// The wire form of a message kind.
pub fn kind_to_proto(kind: MessageKind) -> proto::MessageKind {
    match kind {
        MessageKind::PreVote => proto::MessageKind::PreVote,
        MessageKind::PreVoteResponse => proto::MessageKind::PreVoteResponse,
        MessageKind::Vote => proto::MessageKind::Vote,
        MessageKind::VoteResponse => proto::MessageKind::VoteResponse,
        MessageKind::Append => proto::MessageKind::Append,
        MessageKind::AppendResponse => proto::MessageKind::AppendResponse,
        MessageKind::Heartbeat => proto::MessageKind::Heartbeat,
        MessageKind::HeartbeatResponse => proto::MessageKind::HeartbeatResponse,
        MessageKind::Snapshot => proto::MessageKind::Snapshot,
        MessageKind::TimeoutNow => proto::MessageKind::TimeoutNow,
    }
}

fn kind_from_proto(value: i32) -> Result<MessageKind, Error> {
    let kind = proto::MessageKind::try_from(value)
        .map_err(|_| Error::Malformed(format!("unknown message kind {value}")))?;
    Ok(match kind {
        proto::MessageKind::Unspecified => {
            return Err(Error::Malformed("message kind unspecified".into()));
        }
        proto::MessageKind::PreVote => MessageKind::PreVote,
        proto::MessageKind::PreVoteResponse => MessageKind::PreVoteResponse,
        proto::MessageKind::Vote => MessageKind::Vote,
        proto::MessageKind::VoteResponse => MessageKind::VoteResponse,
        proto::MessageKind::Append => MessageKind::Append,
        proto::MessageKind::AppendResponse => MessageKind::AppendResponse,
        proto::MessageKind::Heartbeat => MessageKind::Heartbeat,
        proto::MessageKind::HeartbeatResponse => MessageKind::HeartbeatResponse,
        proto::MessageKind::Snapshot => MessageKind::Snapshot,
        proto::MessageKind::TimeoutNow => MessageKind::TimeoutNow,
    })
}

fn entry_to_proto(entry: Entry) -> proto::Entry {
    let kind = match entry.kind {
        EntryKind::Normal => proto::EntryKind::Normal,
        EntryKind::Noop => proto::EntryKind::Noop,
        EntryKind::Membership => proto::EntryKind::Membership,
    };
    proto::Entry {
        index: entry.index,
        term: entry.term,
        kind: kind as i32,
        payload: entry.payload,
    }
}

fn entry_from_proto(entry: proto::Entry) -> Result<Entry, Error> {
    let kind = match proto::EntryKind::try_from(entry.kind) {
        Ok(proto::EntryKind::Normal) => EntryKind::Normal,
        Ok(proto::EntryKind::Noop) => EntryKind::Noop,
        Ok(proto::EntryKind::Membership) => EntryKind::Membership,
        _ => return Err(Error::Malformed(format!("bad entry kind {}", entry.kind))),
    };
    if entry.index == 0 || entry.term == 0 {
        return Err(Error::Malformed("entry with index or term zero".into()));
    }
    Ok(Entry {
        index: entry.index,
        term: entry.term,
        kind,
        payload: entry.payload,
    })
}

/// The wire form of a membership.
pub fn membership_to_proto(membership: &Membership) -> proto::Membership {
    proto::Membership {
        voters: membership.voters.iter().copied().collect(),
        voters_outgoing: membership.voters_outgoing.iter().copied().collect(),
        learners: membership.learners.iter().copied().collect(),
    }
}

fn ids(list: Vec<u64>) -> Result<BTreeSet<NodeId>, Error> {
    let set: BTreeSet<NodeId> = list.into_iter().collect();
    if set.contains(&0) {
        return Err(Error::Malformed("node id zero in membership".into()));
    }
    Ok(set)
}

/// Reads a membership; it must pass [`Membership::validate`].
pub fn membership_from_proto(membership: proto::Membership) -> Result<Membership, Error> {
    let membership = Membership {
        voters: ids(membership.voters)?,
        voters_outgoing: ids(membership.voters_outgoing)?,
        learners: ids(membership.learners)?,
    };
    membership
        .validate()
        .map_err(|error| Error::Malformed(error.to_string()))?;
    Ok(membership)
}

/// The wire form of a message other than a snapshot (whose data goes in chunks, see
/// [`snapshot_header`]). Payloads move without a copy.
pub fn message_to_proto(message: Message) -> proto::Message {
    proto::Message {
        kind: kind_to_proto(message.kind) as i32,
        from: message.from,
        to: message.to,
        term: message.term,
        index: message.index,
        log_term: message.log_term,
        entries: message.entries.into_iter().map(entry_to_proto).collect(),
        commit: message.commit,
        reject: message.reject,
        reject_hint_index: message.reject_hint_index,
        reject_hint_term: message.reject_hint_term,
        read_round: message.read_round,
        forced: message.forced,
    }
}

fn check_addressing(from: u64, to: u64, local: NodeId) -> Result<(), Error> {
    if from == 0 || to == 0 {
        return Err(Error::Malformed("node id zero".into()));
    }
    if from == to {
        return Err(Error::Malformed("message from a node to itself".into()));
    }
    if to != local {
        return Err(Error::WrongReceiver { to, local });
    }
    Ok(())
}

/// Reads a message received by node `local`. Snapshot messages are refused here: they only
/// arrive through the chunked snapshot stream.
pub fn message_from_proto(message: proto::Message, local: NodeId) -> Result<Message, Error> {
    let kind = kind_from_proto(message.kind)?;
    if kind == MessageKind::Snapshot {
        return Err(Error::Malformed(
            "snapshot outside the snapshot stream".into(),
        ));
    }
    check_addressing(message.from, message.to, local)?;
    if kind != MessageKind::Append && !message.entries.is_empty() {
        return Err(Error::Malformed(format!("{kind:?} carries entries")));
    }
    let entries = message
        .entries
        .into_iter()
        .map(entry_from_proto)
        .collect::<Result<Vec<_>, _>>()?;
    for (expected, entry) in (message.index + 1..).zip(entries.iter()) {
        if entry.index != expected {
            return Err(Error::Malformed(
                "entries not contiguous after index".into(),
            ));
        }
    }
    Ok(Message {
        kind,
        from: message.from,
        to: message.to,
        term: message.term,
        index: message.index,
        log_term: message.log_term,
        entries,
        commit: message.commit,
        reject: message.reject,
        reject_hint_index: message.reject_hint_index,
        reject_hint_term: message.reject_hint_term,
        snapshot: None,
        read_round: message.read_round,
        forced: message.forced,
    })
}

/// The header that names a snapshot message's transfer, and its data. Returns `None` for a
/// message that is not a snapshot or carries none.
pub fn snapshot_header(message: &Message) -> Option<(proto::SnapshotHeader, Bytes)> {
    let snapshot = message.snapshot.as_ref()?;
    if message.kind != MessageKind::Snapshot {
        return None;
    }
    let header = proto::SnapshotHeader {
        from: message.from,
        to: message.to,
        term: message.term,
        metadata: Some(proto::SnapshotMetadata {
            index: snapshot.metadata.index,
            term: snapshot.metadata.term,
            membership: Some(membership_to_proto(&snapshot.metadata.membership)),
        }),
        data_bytes: snapshot.data.len() as u64,
        data_checksum: crc32fast::hash(&snapshot.data),
    };
    Some((header, snapshot.data.clone()))
}

/// Checks a snapshot header received by node `local` and returns its metadata.
pub fn snapshot_metadata_from_header(
    header: &proto::SnapshotHeader,
    local: NodeId,
) -> Result<SnapshotMetadata, Error> {
    check_addressing(header.from, header.to, local)?;
    let Some(metadata) = header.metadata.clone() else {
        return Err(Error::Malformed("snapshot header without metadata".into()));
    };
    let Some(membership) = metadata.membership else {
        return Err(Error::Malformed("snapshot without membership".into()));
    };
    if metadata.index == 0 || metadata.term == 0 || header.term == 0 {
        return Err(Error::Malformed("snapshot at index or term zero".into()));
    }
    Ok(SnapshotMetadata {
        index: metadata.index,
        term: metadata.term,
        membership: membership_from_proto(membership)?,
    })
}

/// The core's snapshot message, once every chunk arrived and the checksum matched.
pub fn snapshot_message(
    header: &proto::SnapshotHeader,
    metadata: SnapshotMetadata,
    data: Bytes,
) -> Message {
    let mut message = Message::new(MessageKind::Snapshot, header.from, header.to, header.term);
    message.snapshot = Some(Snapshot { metadata, data });
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append() -> Message {
        let mut message = Message::new(MessageKind::Append, 1, 2, 7);
        message.index = 4;
        message.log_term = 6;
        message.commit = 3;
        message.entries = vec![
            Entry {
                index: 5,
                term: 7,
                kind: EntryKind::Normal,
                payload: Bytes::from_static(b"five"),
            },
            Entry {
                index: 6,
                term: 7,
                kind: EntryKind::Membership,
                payload: Membership::with_voters([1, 2]).encode(),
            },
        ];
        message
    }

    #[test]
    fn every_kind_round_trips() {
        let kinds = [
            MessageKind::PreVote,
            MessageKind::PreVoteResponse,
            MessageKind::Vote,
            MessageKind::VoteResponse,
            MessageKind::AppendResponse,
            MessageKind::Heartbeat,
            MessageKind::HeartbeatResponse,
            MessageKind::TimeoutNow,
        ];
        for kind in kinds {
            let mut message = Message::new(kind, 3, 2, 9);
            message.index = 11;
            message.log_term = 8;
            message.reject = true;
            message.reject_hint_index = 10;
            message.reject_hint_term = 5;
            message.read_round = 4;
            message.forced = true;
            message.commit = 2;
            let back = message_from_proto(message_to_proto(message.clone()), 2);
            assert_eq!(back, Ok(message));
        }
        let back = message_from_proto(message_to_proto(append()), 2);
        assert_eq!(back, Ok(append()));
    }

    #[test]
    fn payloads_move_without_copy() {
        let message = append();
        let pointer = message.entries[0].payload.as_ptr();
        let wire = message_to_proto(message);
        assert_eq!(wire.entries[0].payload.as_ptr(), pointer);
        let back = message_from_proto(wire, 2).unwrap();
        assert_eq!(back.entries[0].payload.as_ptr(), pointer);
    }

    #[test]
    fn malformed_messages_are_refused() {
        let good = message_to_proto(append());
        let cases: Vec<(proto::Message, &str)> = vec![
            (
                proto::Message {
                    kind: 0,
                    ..good.clone()
                },
                "unspecified",
            ),
            (
                proto::Message {
                    kind: 99,
                    ..good.clone()
                },
                "unknown kind",
            ),
            (
                proto::Message {
                    kind: 9,
                    ..good.clone()
                },
                "snapshot",
            ),
            (
                proto::Message {
                    from: 0,
                    ..good.clone()
                },
                "from zero",
            ),
            (
                proto::Message {
                    from: 2,
                    ..good.clone()
                },
                "to itself",
            ),
            (
                proto::Message {
                    index: 9,
                    ..good.clone()
                },
                "gap",
            ),
            (
                proto::Message {
                    kind: 3,
                    ..good.clone()
                },
                "vote with entries",
            ),
        ];
        for (message, case) in cases {
            assert!(
                matches!(message_from_proto(message, 2), Err(Error::Malformed(_))),
                "{case}"
            );
        }
        let mut bad_entry = good.clone();
        bad_entry.entries[0].kind = 42;
        assert!(message_from_proto(bad_entry, 2).is_err());
        assert_eq!(
            message_from_proto(good, 3),
            Err(Error::WrongReceiver { to: 2, local: 3 })
        );
    }

    #[test]
    fn snapshot_header_round_trips_and_checks_membership() {
        let mut message = Message::new(MessageKind::Snapshot, 1, 2, 4);
        let metadata = SnapshotMetadata {
            index: 30,
            term: 3,
            membership: Membership::with_voters([1, 2, 3]),
        };
        message.snapshot = Some(Snapshot {
            metadata: metadata.clone(),
            data: Bytes::from_static(b"state"),
        });
        let (header, data) = snapshot_header(&message).unwrap();
        assert_eq!(header.data_checksum, crc32fast::hash(b"state"));
        assert_eq!(
            snapshot_metadata_from_header(&header, 2),
            Ok(metadata.clone())
        );
        assert_eq!(snapshot_message(&header, metadata, data), message);
        let mut empty = header.clone();
        empty.metadata.as_mut().unwrap().membership = Some(proto::Membership::default());
        assert!(snapshot_metadata_from_header(&empty, 2).is_err());
        assert!(snapshot_metadata_from_header(&header, 3).is_err());
    }
}
