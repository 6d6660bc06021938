//! A replicated rate limiter: a user's machine (a token bucket per key, refilled by log time)
//! registered with `Server::builder()` on a 3-node in-process cluster, used through the
//! client's typed handle; every replica agrees on every decision, and a retried request is
//! never counted twice. Run: `cargo run -p conclave-client --example rate_limiter`.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use conclave_client::{ClientConfig, Consistency, connect};
use conclave_server::config::ServerConfig;
use conclave_server::server::Server;
use conclave_statemachines::{ApplyContext, Error, QueryContext, StateMachine, codec};
use serde::{Deserialize, Serialize};

/// Each key may spend `CAPACITY` requests at once, refilled at `REFILL_PER_SECOND`.
const CAPACITY: u64 = 5;
const REFILL_PER_SECOND: u64 = 5;

#[derive(Default, Serialize, Deserialize)]
struct RateLimiter {
    /// Per key: (thousandths of a token, log time of the last refill in ms).
    buckets: BTreeMap<String, (u64, u64)>,
}

#[derive(Serialize, Deserialize)]
enum LimitCommand {
    Take { key: String },
}

#[derive(Serialize, Deserialize)]
enum LimitQuery {
    Tokens { key: String },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum LimitOutput {
    Allowed(bool),
    Tokens(u64),
}

impl RateLimiter {
    /// The key's bucket refilled up to `now_ms` (log time, the same on every replica).
    fn refilled(&self, key: &str, now_ms: u64) -> (u64, u64) {
        let (milli, since) = self
            .buckets
            .get(key)
            .copied()
            .unwrap_or((CAPACITY * 1000, now_ms));
        let refill = now_ms.saturating_sub(since) * REFILL_PER_SECOND;
        ((milli + refill).min(CAPACITY * 1000), now_ms)
    }
}

impl StateMachine for RateLimiter {
    const TYPE_NAME: &'static str = "rate-limiter";
    type Command = LimitCommand;
    type Query = LimitQuery;
    type Output = LimitOutput;
    type Event = ();

    fn apply(&mut self, context: &mut ApplyContext<'_, ()>, command: LimitCommand) -> LimitOutput {
        let LimitCommand::Take { key } = command;
        let (milli, now) = self.refilled(&key, context.log_time_ms());
        let allowed = milli >= 1000;
        let left = if allowed { milli - 1000 } else { milli };
        self.buckets.insert(key, (left, now));
        LimitOutput::Allowed(allowed)
    }

    fn query(&self, context: &QueryContext, query: LimitQuery) -> LimitOutput {
        let LimitQuery::Tokens { key } = query;
        LimitOutput::Tokens(self.refilled(&key, context.log_time_ms).0 / 1000)
    }

    fn snapshot(&self, writer: &mut dyn Write) -> Result<(), Error> {
        codec::write_frame(writer, &self.buckets, "rate limiter")
    }

    fn restore(&mut self, reader: &mut dyn Read) -> Result<(), Error> {
        self.buckets = codec::read_frame(reader, "rate limiter")?;
        Ok(())
    }
}

fn local_address() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("a bound port")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let directory = tempfile::tempdir()?;
    let peers: BTreeMap<u64, std::net::SocketAddr> =
        (1..=3).map(|id| (id, local_address())).collect();
    let initial_cluster: BTreeMap<u64, String> = peers
        .iter()
        .map(|(id, address)| (*id, address.to_string()))
        .collect();
    let mut servers = Vec::new();
    for (id, peer) in &peers {
        let data = directory.path().join(format!("node-{id}"));
        let config = ServerConfig::new(*id, data, *peer, local_address(), initial_cluster.clone());
        let server = Server::builder()
            .config(config)
            .machines(|registry| registry.register(RateLimiter::default))
            .start()
            .await?;
        servers.push(server);
    }
    let endpoints: Vec<String> = servers
        .iter()
        .map(|s| s.client_address().to_string())
        .collect();

    let (_client, session) = connect(ClientConfig::new(endpoints)).await?;
    let limiter = session.machine::<RateLimiter>("api-limits");
    let mut decisions = Vec::new();
    for _ in 0..8 {
        let take = LimitCommand::Take {
            key: "alice".into(),
        };
        decisions.push(limiter.command(&take).await? == LimitOutput::Allowed(true));
    }
    println!("8 requests at once: {decisions:?}");
    // Log time moves with the entries, so the refill shows on the next command.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let later = limiter
        .command(&LimitCommand::Take {
            key: "alice".into(),
        })
        .await?;
    let query = LimitQuery::Tokens {
        key: "alice".into(),
    };
    let tokens = limiter.query(&query, Consistency::Linearizable).await?;
    println!("after 600 ms: {later:?}, {tokens:?} left");
    session.close().await?;
    for server in servers {
        server.shutdown().await?;
    }
    Ok(())
}
