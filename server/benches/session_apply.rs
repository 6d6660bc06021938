//! The cost of running the session layer behind `SessionApplication`'s thread hop: counter
//! commands applied straight to a `SessionLayer`, then the same commands through
//! `SessionApplication::apply` (which also encodes the whole `Applied`). Prints nanoseconds
//! per entry for both.
//!
//! `cargo bench -p conclave-server --bench session_apply`; `CONCLAVE_BENCH_ENTRIES` sets how
//! many commands each side applies (default 200 000).

use std::time::Instant;

use conclave_server::machines::{SessionApplication, SessionApplicationConfig};
use conclave_server::node::Application;
use conclave_statemachines::counter::CounterCommand;
use conclave_statemachines::kv::KvConfig;
use conclave_statemachines::{ClientSession, Entry, Registry, SessionConfig, SessionLayer, codec};

/// The register entry, then `count` counter commands with keep-alives that acknowledge the
/// outputs every 500 commands (so the output cache stays under its bound).
fn entries(count: u64) -> Vec<Vec<u8>> {
    let mut entries = vec![
        Entry::Register {
            timeout_ms: 3_600_000,
        }
        .encode(),
    ];
    let mut client = ClientSession::new(1);
    let payload = codec::encode(&CounterCommand::AddAndGet { delta: 1 }, "command").unwrap();
    for i in 1..=count {
        entries.push(
            client
                .command("visits", "counter", payload.clone())
                .encode(),
        );
        if i % 500 == 0 {
            entries.push(
                Entry::KeepAlive {
                    session: 1,
                    command_sequence_acknowledged: i,
                    event_index_acknowledged: 0,
                }
                .encode(),
            );
        }
    }
    entries
}

fn main() {
    let count: u64 = std::env::var("CONCLAVE_BENCH_ENTRIES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(200_000);
    let entries = entries(count);

    let registry = Registry::with_builtins(KvConfig::default()).unwrap();
    let mut layer = SessionLayer::new(SessionConfig::default(), registry).unwrap();
    let started = Instant::now();
    for (offset, entry) in entries.iter().enumerate() {
        let index = offset as u64 + 1;
        std::hint::black_box(layer.apply(index, index, entry));
    }
    let direct = started.elapsed();

    let mut application = SessionApplication::new(SessionApplicationConfig::default()).unwrap();
    let started = Instant::now();
    for (offset, entry) in entries.iter().enumerate() {
        let index = offset as u64 + 1;
        std::hint::black_box(application.apply(index, index, entry));
    }
    let wrapped = started.elapsed();

    let per_entry = |elapsed: std::time::Duration| elapsed.as_nanos() as f64 / entries.len() as f64;
    println!(
        "{} entries: SessionLayer::apply {:.0} ns/entry, SessionApplication::apply {:.0} ns/entry",
        entries.len(),
        per_entry(direct),
        per_entry(wrapped)
    );
}
