//! The crash test with a real process: the test binary re-runs itself as a
//! child that appends through the group-commit writer from several threads
//! and prints every index range acknowledged as durable; the parent kills it
//! with SIGKILL at a seeded random moment (after a random count of
//! acknowledgements), reopens the log and checks that every acknowledged entry
//! is there and intact. Several rounds on the same directory, so recovery also
//! runs on logs that were recovered before.
//!
//! More rounds: `CONCLAVE_LOG_CRASH_ROUNDS=50 cargo test -p conclave-log --test crash_process`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use conclave_log::{GroupCommit, GroupCommitOptions, Log, LogOptions};

const CHILD_DIRECTORY_VARIABLE: &str = "CONCLAVE_LOG_CRASH_CHILD_DIRECTORY";
const TEST_NAME: &str = "sigkill_during_group_commit_loses_no_acknowledged_entry";
const APPENDERS_COUNT: u64 = 8;
/// The child stops by itself after this long, should the parent never kill it.
const CHILD_LIFETIME_MAX: Duration = Duration::from_secs(60);

fn options() -> LogOptions {
    LogOptions {
        segment_size_bytes_max: 64 * 1024,
        entry_payload_bytes_max: 1024,
        ..LogOptions::default()
    }
}

/// The payload of one submission: who sent it, plus filler of a length that
/// depends on it, so that a wrong or torn entry cannot pass for a right one.
fn payload(thread: u64, sequence: u64) -> Bytes {
    let mut content = format!("thread {thread} sequence {sequence} ").into_bytes();
    let filler = 64 + ((thread * 131 + sequence * 17) % 400) as usize;
    content.extend((0..filler).map(|position| (position as u64 ^ sequence ^ thread) as u8));
    Bytes::from(content)
}

/// splitmix64, so the parent's kill points are seeded without `rand`.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut mixed = *state;
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    mixed ^ (mixed >> 31)
}

fn run_child(directory: &Path) {
    let log = Log::open_on_disk(directory, options()).expect("child opens the log");
    let writer = Arc::new(GroupCommit::start(log, GroupCommitOptions::default()).expect("writer"));
    let started = Instant::now();
    let threads: Vec<_> = (0..APPENDERS_COUNT)
        .map(|thread| {
            let writer = Arc::clone(&writer);
            std::thread::spawn(move || {
                let mut sequence = 0u64;
                while started.elapsed() < CHILD_LIFETIME_MAX {
                    let receipt = writer
                        .append_payloads(1, 0, vec![payload(thread, sequence)])
                        .expect("append");
                    // One line per acknowledgement; stdout flushes at each newline.
                    println!("ACK {} {thread} {sequence}", receipt.first_index);
                    sequence += 1;
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("appender");
    }
}

struct Acknowledgement {
    index: u64,
    thread: u64,
    sequence: u64,
}

fn parse(line: &str) -> Option<Acknowledgement> {
    let mut words = line.strip_prefix("ACK ")?.split(' ');
    let index = words.next()?.parse().ok()?;
    let thread = words.next()?.parse().ok()?;
    let sequence = words.next()?.parse().ok()?;
    Some(Acknowledgement {
        index,
        thread,
        sequence,
    })
}

/// Runs one child, kills it after `kill_after` acknowledgements, and returns
/// every acknowledgement it printed before dying.
fn run_round(directory: &Path, kill_after: usize) -> Vec<Acknowledgement> {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIRECTORY_VARIABLE, directory)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut acknowledgements = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        if let Some(acknowledgement) = parse(&line.expect("read child output")) {
            acknowledgements.push(acknowledgement);
            if acknowledgements.len() >= kill_after {
                break;
            }
        }
    }
    // `Child::kill` sends SIGKILL on Unix.
    child.kill().expect("kill child");
    // Lines already written to the pipe were acknowledged before the kill.
    acknowledgements.extend(lines.map_while(Result::ok).filter_map(|line| parse(&line)));
    child.wait().expect("reap child");
    acknowledgements
}

#[test]
fn sigkill_during_group_commit_loses_no_acknowledged_entry() {
    if let Some(directory) = std::env::var_os(CHILD_DIRECTORY_VARIABLE) {
        run_child(Path::new(&directory));
        return;
    }
    let rounds: u64 = std::env::var("CONCLAVE_LOG_CRASH_ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(5);
    let directory = tempfile::tempdir().expect("temporary directory");
    let log_directory = directory.path().join("log");
    let mut random_state = 0x5eed_u64;
    let mut checked_total = 0usize;
    let mut torn_tails_count = 0u64;
    for round in 0..rounds {
        let kill_after = 50 + (next_random(&mut random_state) % 2000) as usize;
        let acknowledgements = run_round(&log_directory, kill_after);
        assert!(
            acknowledgements.len() >= kill_after,
            "round {round}: the child stopped early"
        );
        let log = Log::open_on_disk(&log_directory, options()).expect("reopen after SIGKILL");
        for acknowledgement in &acknowledgements {
            let entry = log.entry(acknowledgement.index).unwrap_or_else(|error| {
                panic!(
                    "round {round}: acknowledged index {} is gone: {error}",
                    acknowledgement.index
                )
            });
            assert_eq!(
                entry.payload,
                payload(acknowledgement.thread, acknowledgement.sequence),
                "round {round}: index {}",
                acknowledgement.index
            );
        }
        for index in log.first_index()..=log.last_index() {
            log.entry(index).unwrap_or_else(|error| {
                panic!("round {round}: hole or damage at {index}: {error}")
            });
        }
        checked_total += acknowledgements.len();
        torn_tails_count += u64::from(log.recovery_report().torn_tail_bytes > 0);
    }
    assert!(checked_total > 0);
    // Whether a kill lands inside a write is up to the scheduler, so this is
    // reported rather than asserted.
    eprintln!(
        "{rounds} rounds, {checked_total} acknowledged entries checked, {torn_tails_count} torn tails repaired"
    );
}
