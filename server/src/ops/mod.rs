//! Operations: the metrics every frontend records into, their Prometheus text rendering,
//! and the HTTP endpoints `/metrics`, `/health` and `/ready`.
//!
//! The metrics are written by hand in the Prometheus text format (version 0.0.4): a few
//! gauges sampled from the node's status, counters of leader changes, and per frontend and
//! method a request counter, an error counter and a latency histogram. Names follow
//! `conclave_<area>_<what>_<unit>`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use conclave_consensus::{NodeId, Role};

use crate::gateway::Gateway;
use crate::machines::SessionApplication;

/// The upper bounds of the latency histogram's buckets, in seconds.
const LATENCY_BUCKETS_SECONDS: [f64; 12] = [
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
];

/// The requests of one (frontend, method).
#[derive(Debug, Clone, Default)]
struct RequestStats {
    count: u64,
    errors: u64,
    /// Per bucket of [`LATENCY_BUCKETS_SECONDS`], the requests at or under its bound (not
    /// cumulative; the rendering accumulates).
    buckets: [u64; LATENCY_BUCKETS_SECONDS.len()],
    latency_seconds_sum: f64,
}

/// What the sampler last saw of the node.
#[derive(Debug, Clone, Default)]
struct NodeSample {
    id: NodeId,
    term: u64,
    commit_index: u64,
    applied_index: u64,
    last_index: u64,
    is_leader: bool,
    leader: Option<NodeId>,
    leader_changes: u64,
    sessions: u64,
    voters: u64,
    learners: u64,
}

#[derive(Debug, Default)]
struct MetricsState {
    requests: BTreeMap<(&'static str, &'static str), RequestStats>,
    node: NodeSample,
}

/// The server's metrics; cheap to clone, shared by every frontend.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    state: Arc<Mutex<MetricsState>>,
}

impl Metrics {
    /// Records one request of `frontend`'s `method` that took `elapsed`.
    pub fn observe_request(
        &self,
        frontend: &'static str,
        method: &'static str,
        succeeded: bool,
        elapsed: Duration,
    ) {
        let seconds = elapsed.as_secs_f64();
        let mut state = self.lock();
        let stats = state.requests.entry((frontend, method)).or_default();
        stats.count += 1;
        if !succeeded {
            stats.errors += 1;
        }
        stats.latency_seconds_sum += seconds;
        if let Some(bucket) = LATENCY_BUCKETS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
        {
            stats.buckets[bucket] += 1;
        }
    }

    /// How many requests of `frontend`'s `method` were recorded, and how many failed.
    pub fn request_count(&self, frontend: &str, method: &str) -> (u64, u64) {
        let state = self.lock();
        state
            .requests
            .iter()
            .find(|((f, m), _)| *f == frontend && *m == method)
            .map_or((0, 0), |(_, stats)| (stats.count, stats.errors))
    }

    /// Samples the node: its status, and the number of open sessions.
    pub async fn sample(&self, gateway: &Gateway, application: &SessionApplication) {
        let Ok(status) = gateway.status().await else {
            return;
        };
        let application = application.clone();
        let sessions = tokio::task::spawn_blocking(move || {
            application.with_layer(|layer| layer.sessions().len() as u64)
        })
        .await
        .unwrap_or(0);
        let mut state = self.lock();
        let node = &mut state.node;
        let leader = status.soft_state.leader;
        if leader.is_some() && leader != node.leader {
            node.leader_changes += 1;
        }
        node.id = status.id;
        node.leader = leader;
        node.is_leader = status.soft_state.role == Role::Leader;
        node.term = status.hard_state.term;
        node.commit_index = status.hard_state.commit;
        node.applied_index = status.applied;
        node.last_index = status.last_index;
        node.sessions = sessions;
        node.voters = status.membership.voters.len() as u64;
        node.learners = status.membership.learners.len() as u64;
    }

    /// Whether the last sample saw a leader.
    pub fn leader_known(&self) -> bool {
        self.lock().node.leader.is_some()
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let state = self.lock();
        let node = &state.node;
        let mut text = String::new();
        let gauges: [(&str, &str, u64); 10] = [
            ("conclave_node_id", "This node's id.", node.id),
            ("conclave_raft_term", "The current Raft term.", node.term),
            (
                "conclave_raft_commit_index",
                "The highest log index known committed.",
                node.commit_index,
            ),
            (
                "conclave_raft_applied_index",
                "The highest log index applied to the machines.",
                node.applied_index,
            ),
            (
                "conclave_raft_apply_lag_entries",
                "Committed entries not applied yet.",
                node.commit_index.saturating_sub(node.applied_index),
            ),
            (
                "conclave_raft_last_index",
                "The last log index.",
                node.last_index,
            ),
            (
                "conclave_raft_is_leader",
                "1 when this node is the leader.",
                u64::from(node.is_leader),
            ),
            (
                "conclave_sessions_open",
                "Client sessions open in the replicated session layer.",
                node.sessions,
            ),
            ("conclave_cluster_voters", "Voting members.", node.voters),
            ("conclave_cluster_learners", "Learners.", node.learners),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                text,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let _ = writeln!(
            text,
            "# HELP conclave_raft_leader_changes_total Times this node saw a new leader.\n\
             # TYPE conclave_raft_leader_changes_total counter\n\
             conclave_raft_leader_changes_total {}",
            node.leader_changes
        );
        render_requests(&mut text, &state.requests);
        text
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MetricsState> {
        // The state holds only counters: after a panic elsewhere they are still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn render_requests(
    text: &mut String,
    requests: &BTreeMap<(&'static str, &'static str), RequestStats>,
) {
    let _ = writeln!(
        text,
        "# HELP conclave_requests_total Requests by frontend and method.\n\
         # TYPE conclave_requests_total counter"
    );
    for ((frontend, method), stats) in requests {
        let _ = writeln!(
            text,
            "conclave_requests_total{{frontend=\"{frontend}\",method=\"{method}\"}} {}",
            stats.count
        );
    }
    let _ = writeln!(
        text,
        "# HELP conclave_request_errors_total Failed requests by frontend and method.\n\
         # TYPE conclave_request_errors_total counter"
    );
    for ((frontend, method), stats) in requests {
        let _ = writeln!(
            text,
            "conclave_request_errors_total{{frontend=\"{frontend}\",method=\"{method}\"}} {}",
            stats.errors
        );
    }
    let _ = writeln!(
        text,
        "# HELP conclave_request_latency_seconds Request latency by frontend and method.\n\
         # TYPE conclave_request_latency_seconds histogram"
    );
    for ((frontend, method), stats) in requests {
        let labels = format!("frontend=\"{frontend}\",method=\"{method}\"");
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS_SECONDS.iter().zip(stats.buckets) {
            cumulative += count;
            let _ = writeln!(
                text,
                "conclave_request_latency_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            text,
            "conclave_request_latency_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n\
             conclave_request_latency_seconds_sum{{{labels}}} {}\n\
             conclave_request_latency_seconds_count{{{labels}}} {}",
            stats.count, stats.latency_seconds_sum, stats.count
        );
    }
}

/// What the HTTP handlers read.
#[derive(Debug, Clone)]
struct HttpState {
    metrics: Metrics,
    gateway: Gateway,
}

/// The HTTP endpoints: `/metrics` (Prometheus text), `/health` (200 while the node
/// answers), `/ready` (200 once the node knows a leader, so requests can be served).
pub fn router(metrics: Metrics, gateway: Gateway) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/health", get(serve_health))
        .route("/ready", get(serve_ready))
        .with_state(HttpState { metrics, gateway })
}

async fn serve_metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn serve_health(State(state): State<HttpState>) -> impl IntoResponse {
    match state.gateway.status().await {
        Ok(_) => (StatusCode::OK, "ok\n".to_string()),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")),
    }
}

async fn serve_ready(State(state): State<HttpState>) -> impl IntoResponse {
    match state.gateway.status().await {
        Ok(status) => match status.soft_state.leader {
            Some(leader) => (StatusCode::OK, format!("ready (leader {leader})\n")),
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: no leader known\n".to_string(),
            ),
        },
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_accumulate_and_errors_count_separately() {
        let metrics = Metrics::default();
        metrics.observe_request("native", "command", true, Duration::from_micros(300));
        metrics.observe_request("native", "command", false, Duration::from_millis(30));
        metrics.observe_request("native", "command", true, Duration::from_secs(10));
        assert_eq!(metrics.request_count("native", "command"), (3, 1));
        let text = metrics.render();
        let labels = "frontend=\"native\",method=\"command\"";
        assert!(text.contains(&format!("conclave_requests_total{{{labels}}} 3")));
        assert!(text.contains(&format!("conclave_request_errors_total{{{labels}}} 1")));
        // 300 us falls in the first bucket; 30 ms in the 0.05 one; 10 s only in +Inf.
        assert!(text.contains(&format!(
            "conclave_request_latency_seconds_bucket{{{labels},le=\"0.0005\"}} 1"
        )));
        assert!(text.contains(&format!(
            "conclave_request_latency_seconds_bucket{{{labels},le=\"0.05\"}} 2"
        )));
        assert!(text.contains(&format!(
            "conclave_request_latency_seconds_bucket{{{labels},le=\"5\"}} 2"
        )));
        assert!(text.contains(&format!(
            "conclave_request_latency_seconds_bucket{{{labels},le=\"+Inf\"}} 3"
        )));
    }

    #[test]
    fn every_metric_line_is_well_formed() {
        let metrics = Metrics::default();
        metrics.observe_request("etcd", "range", true, Duration::from_millis(1));
        for line in metrics.render().lines() {
            if line.starts_with('#') {
                assert!(
                    line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                    "{line}"
                );
                continue;
            }
            let (name, value) = line.rsplit_once(' ').expect("a name and a value");
            assert!(name.starts_with("conclave_"), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
