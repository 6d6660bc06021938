//! Transcript tests: each file in `consensus/testdata/*.txt` is a list of commands, each
//! followed by `----` and the exact output it must produce. A reviewer reads the transcript
//! (and its diff) instead of test code.
//!
//! Regenerate the expected outputs after an intended change with
//! `TRANSCRIPT_REWRITE=1 cargo test -p conclave-consensus --test transcripts`, then review
//! the diff.
//!
//! Commands:
//! - `cluster <ids…> [pre-vote=false] [check-quorum=false] [inflight=N] [entries=N]`
//! - `add-node <id>`: a fresh node with an empty log, to be added by a membership change
//! - `campaign <id>`, `tick <id> [count]`, `propose <id> <text>`, `read <id> <request-id>`
//! - `restart <id>`: crash the node after its last Ready was persisted, and start it again
//! - `transfer <leader> <target>`, `membership <leader> add-voter=N remove=N add-learner=N`
//! - `compact <id>`: compact the log up to the commit index
//! - `deliver [from=N] [to=N] [drop]`: carry out pending Readies, then deliver (or drop)
//!   the queued messages that match, printing each; the others stay queued
//! - `stabilize`: deliver everything until nothing moves, printing every message
//! - `partition <ids…> | <ids…>`, `heal`, `status`, `log <id>`

mod common;

use std::fmt::Write as _;

use bytes::Bytes;
use common::Cluster;
use conclave_consensus::{
    Config, Entry, EntryKind, Membership, MembershipChange, MemoryStorage, Message, MessageKind,
    NodeId,
};

struct Options {
    pre_vote: bool,
    check_quorum: bool,
    inflight: usize,
    entries: usize,
}

static OPTIONS: std::sync::Mutex<Options> = std::sync::Mutex::new(Options {
    pre_vote: true,
    check_quorum: true,
    inflight: 256,
    entries: 4096,
});

fn configure(config: &mut Config) {
    let options = OPTIONS.lock().expect("options");
    config.election_timeout_ticks = 10;
    config.heartbeat_interval_ticks = 1;
    config.pre_vote = options.pre_vote;
    config.check_quorum = options.check_quorum;
    config.inflight_messages_max = options.inflight;
    config.message_entries_max = options.entries;
}

fn entry_text(entry: &Entry) -> String {
    let body = match entry.kind {
        EntryKind::Noop => "noop".to_string(),
        EntryKind::Membership => match Membership::decode(&entry.payload) {
            Ok(m) => {
                let mut text = format!("conf{:?}", m.voters);
                if m.is_joint() {
                    let _ = write!(text, "&{:?}", m.voters_outgoing);
                }
                if !m.learners.is_empty() {
                    let _ = write!(text, "+learners{:?}", m.learners);
                }
                text
            }
            Err(_) => "conf?".into(),
        },
        EntryKind::Normal => String::from_utf8_lossy(&entry.payload).into_owned(),
    };
    format!("{}/{} {}", entry.index, entry.term, body)
}

fn message_text(message: &Message) -> String {
    let mut text = format!(
        "{}->{} {:?} term={}",
        message.from, message.to, message.kind, message.term
    );
    match message.kind {
        MessageKind::Vote | MessageKind::PreVote => {
            let _ = write!(text, " last={}/{}", message.index, message.log_term);
            if message.forced {
                text.push_str(" forced");
            }
        }
        MessageKind::VoteResponse | MessageKind::PreVoteResponse => {
            text.push_str(if message.reject {
                " rejected"
            } else {
                " granted"
            });
        }
        MessageKind::Append => {
            let entries: Vec<String> = message.entries.iter().map(entry_text).collect();
            let _ = write!(
                text,
                " prev={}/{} commit={} entries=[{}]",
                message.index,
                message.log_term,
                message.commit,
                entries.join(", ")
            );
        }
        MessageKind::AppendResponse => {
            let _ = write!(text, " index={}", message.index);
            if message.reject {
                let _ = write!(
                    text,
                    " rejected hint={}/{}",
                    message.reject_hint_index, message.reject_hint_term
                );
            }
        }
        MessageKind::Heartbeat => {
            let _ = write!(
                text,
                " commit={} round={}",
                message.commit, message.read_round
            );
        }
        MessageKind::HeartbeatResponse => {
            let _ = write!(text, " round={}", message.read_round);
        }
        MessageKind::Snapshot => {
            if let Some(snapshot) = &message.snapshot {
                let metadata = &snapshot.metadata;
                let _ = write!(text, " snapshot={}/{}", metadata.index, metadata.term);
            }
        }
        MessageKind::TimeoutNow => {}
    }
    text
}

struct Interpreter {
    cluster: Cluster,
}

fn id(word: Option<&&str>) -> NodeId {
    word.and_then(|w| w.parse().ok()).expect("node id")
}

fn option_value(words: &[&str], name: &str) -> Option<NodeId> {
    words
        .iter()
        .find_map(|w| w.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
        .and_then(|value| value.parse().ok())
}

impl Interpreter {
    fn run(&mut self, line: &str) -> String {
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut out = String::new();
        let result: Result<(), conclave_consensus::Error> = match words[0] {
            "cluster" => {
                {
                    let mut options = OPTIONS.lock().expect("options");
                    options.pre_vote = !words.contains(&"pre-vote=false");
                    options.check_quorum = !words.contains(&"check-quorum=false");
                    options.inflight = option_value(&words, "inflight").unwrap_or(256) as usize;
                    options.entries = option_value(&words, "entries").unwrap_or(4096) as usize;
                }
                let ids: Vec<NodeId> = words[1..].iter().filter_map(|w| w.parse().ok()).collect();
                self.cluster = Cluster::new(&ids, configure);
                Ok(())
            }
            "add-node" => {
                self.cluster
                    .add_node(id(words.get(1)), MemoryStorage::new(Membership::default()));
                Ok(())
            }
            "campaign" => self.cluster.node(id(words.get(1))).campaign(),
            "restart" => {
                // Crash after the last Ready was persisted: volatile state is lost.
                let node = id(words.get(1));
                self.cluster.process();
                let storage = self
                    .cluster
                    .nodes
                    .remove(&node)
                    .expect("node")
                    .into_storage();
                self.cluster.add_node(node, storage);
                Ok(())
            }
            "tick" => {
                let count = words.get(2).and_then(|w| w.parse().ok()).unwrap_or(1);
                (0..count).try_for_each(|_| self.cluster.node(id(words.get(1))).tick())
            }
            "propose" => {
                let payload = Bytes::copy_from_slice(words[2].as_bytes());
                self.cluster
                    .node(id(words.get(1)))
                    .propose(vec![payload])
                    .map(|receipt| {
                        let _ = writeln!(out, "index={} term={}", receipt.last_index, receipt.term);
                    })
            }
            "read" => {
                let request = words[2].parse().expect("request id");
                self.cluster.node(id(words.get(1))).read_index(request)
            }
            "transfer" => self
                .cluster
                .node(id(words.get(1)))
                .transfer_leadership(id(words.get(2))),
            "membership" => {
                let mut changes = Vec::new();
                for word in &words[2..] {
                    let (kind, value) = word.split_once('=').expect("change");
                    let node = value.parse().expect("id");
                    changes.push(match kind {
                        "add-voter" => MembershipChange::AddVoter(node),
                        "add-learner" => MembershipChange::AddLearner(node),
                        _ => MembershipChange::Remove(node),
                    });
                }
                self.cluster
                    .node(id(words.get(1)))
                    .propose_membership(&changes)
                    .map(|_| ())
            }
            "compact" => {
                let node = id(words.get(1));
                let status = self.cluster.nodes[&node].status();
                let index = status.applied;
                let data = Bytes::from(format!("snap@{index}"));
                self.cluster
                    .node(node)
                    .storage_mut()
                    .compact(index, data, status.membership);
                let _ = writeln!(out, "compacted to {index}");
                Ok(())
            }
            "deliver" => {
                let from = option_value(&words, "from");
                let to = option_value(&words, "to");
                let drop = words.contains(&"drop");
                self.cluster.process();
                let queued = std::mem::take(&mut self.cluster.queue);
                let (matching, rest): (Vec<Message>, Vec<Message>) =
                    queued.into_iter().partition(|m| {
                        from.is_none_or(|f| m.from == f) && to.is_none_or(|t| m.to == t)
                    });
                for message in matching {
                    let verb = if drop { "dropped " } else { "" };
                    let _ = writeln!(out, "{verb}{}", message_text(&message));
                    if !drop {
                        self.deliver(message, &mut out);
                    }
                }
                self.cluster.queue.extend(rest);
                self.cluster.process();
                Ok(())
            }
            "stabilize" => {
                for _ in 0..1000 {
                    self.cluster.process();
                    if self.cluster.queue.is_empty() {
                        break;
                    }
                    for message in std::mem::take(&mut self.cluster.queue) {
                        let _ = writeln!(out, "{}", message_text(&message));
                        self.deliver(message, &mut out);
                    }
                }
                Ok(())
            }
            "partition" => {
                let bar = words
                    .iter()
                    .position(|w| *w == "|")
                    .expect("partition needs |");
                let left: Vec<NodeId> = words[1..bar]
                    .iter()
                    .map(|w| w.parse().expect("id"))
                    .collect();
                let right: Vec<NodeId> = words[bar + 1..]
                    .iter()
                    .map(|w| w.parse().expect("id"))
                    .collect();
                for a in &left {
                    for b in &right {
                        self.cluster.cut.insert((*a, *b));
                        self.cluster.cut.insert((*b, *a));
                    }
                }
                Ok(())
            }
            "heal" => {
                self.cluster.heal();
                Ok(())
            }
            "status" => {
                let ids: Vec<NodeId> = self.cluster.nodes.keys().copied().collect();
                for node in ids {
                    self.cluster.process();
                    let status = self.cluster.nodes[&node].status();
                    let reads: Vec<String> = self.cluster.read_states[&node]
                        .iter()
                        .map(|r| format!("{}@{}", r.request_id, r.index))
                        .collect();
                    let _ = writeln!(
                        out,
                        "{node}: {:?} term={} leader={:?} commit={} applied={} last={} voters={:?}{} reads=[{}]",
                        status.soft_state.role,
                        status.hard_state.term,
                        status.soft_state.leader,
                        status.hard_state.commit,
                        status.applied,
                        status.last_index,
                        status.membership.voters,
                        if status.membership.learners.is_empty() {
                            String::new()
                        } else {
                            format!(" learners={:?}", status.membership.learners)
                        },
                        reads.join(", ")
                    );
                }
                Ok(())
            }
            "log" => {
                let node = &self.cluster.nodes[&id(words.get(1))];
                let first = node.first_index().expect("first index");
                let entries = node
                    .log_entries(first, node.status().last_index + 1)
                    .expect("log");
                let texts: Vec<String> = entries.iter().map(entry_text).collect();
                let _ = writeln!(out, "first={first} [{}]", texts.join(", "));
                Ok(())
            }
            other => panic!("unknown transcript command {other:?}"),
        };
        if let Err(error) = result {
            let _ = writeln!(out, "error: {error}");
        }
        out
    }

    fn deliver(&mut self, message: Message, out: &mut String) {
        if self.cluster.cut.contains(&(message.from, message.to)) {
            let _ = writeln!(out, "  (lost: partitioned)");
            return;
        }
        self.cluster.deliver(message);
    }
}

fn run_file(path: &std::path::Path) -> (String, String) {
    let text = std::fs::read_to_string(path).expect("transcript readable");
    let mut interpreter = Interpreter {
        cluster: Cluster::new(&[], configure),
    };
    let mut actual = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            actual.push_str(line);
            actual.push('\n');
            continue;
        }
        actual.push_str(line);
        actual.push('\n');
        assert_eq!(
            lines.next(),
            Some("----"),
            "{}: `----` expected after {line:?}",
            path.display()
        );
        while lines.peek().is_some_and(|l| !l.trim().is_empty()) {
            lines.next();
        }
        actual.push_str("----\n");
        actual.push_str(&interpreter.run(line));
    }
    (text, actual)
}

#[test]
fn transcripts() {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut paths: Vec<_> = std::fs::read_dir(&directory)
        .expect("testdata")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 4, "transcripts missing");
    let rewrite = std::env::var_os("TRANSCRIPT_REWRITE").is_some();
    let mut failures = Vec::new();
    for path in paths {
        let (expected, actual) = run_file(&path);
        if rewrite {
            std::fs::write(&path, &actual).expect("rewrite transcript");
        } else if expected != actual {
            failures.push(format!("{}:\n{actual}", path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "transcripts differ (actual output below):\n{}",
        failures.join("\n")
    );
}
