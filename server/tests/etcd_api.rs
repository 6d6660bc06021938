//! The etcd v3 frontend against the etcd-client crate, on a 3-node in-process cluster whose
//! nodes each serve etcd on 127.0.0.1:0: KV with response headers and etcd's errors, Watch
//! (history, filters, prev-kv, cancel, compaction, progress), Lease (grant, keep-alive,
//! time-to-live with keys, revoke, expiry), Cluster and Maintenance, Lock and Election, and
//! bad input that changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use conclave_consensus::{NodeId, Role};
use conclave_server::etcd::{EtcdConfig, serve};
use conclave_server::gateway::{Gateway, GatewayConfig};
use conclave_server::machines::{SessionApplication, SessionApplicationConfig};
use conclave_server::node::{Node, NodeConfig};
use conclave_transport::TransportConfig;
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, LeaseTimeToLiveOptions, LockOptions,
    PutOptions, Txn, TxnOp, WatchFilterType, WatchOptions,
};
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(30);

struct Cluster {
    _directory: tempfile::TempDir,
    gateways: BTreeMap<NodeId, Gateway>,
    endpoints: BTreeMap<NodeId, String>,
}

impl Cluster {
    async fn start() -> Cluster {
        let directory = tempfile::tempdir().unwrap();
        let mut listeners = BTreeMap::new();
        let mut addresses = BTreeMap::new();
        let mut etcd_listeners = BTreeMap::new();
        let mut endpoints = BTreeMap::new();
        for id in [1, 2, 3] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addresses.insert(id, listener.local_addr().unwrap().to_string());
            listeners.insert(id, listener);
            let etcd = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            endpoints.insert(id, format!("http://{}", etcd.local_addr().unwrap()));
            etcd_listeners.insert(id, etcd);
        }
        let mut gateways = BTreeMap::new();
        for (id, listener) in listeners {
            let mut config = NodeConfig::new(id, directory.path().join(format!("node-{id}")));
            config.bootstrap_voters = vec![1, 2, 3];
            config.tick_interval_ms = 10;
            config.election_timeout_ticks = 15;
            config.heartbeat_interval_ticks = 3;
            config.time_tick_interval_ticks = 10;
            let application = SessionApplication::new(SessionApplicationConfig::default()).unwrap();
            let node = Node::start_grpc(
                config,
                Box::new(application.clone()),
                listener,
                &addresses,
                TransportConfig::default(),
            )
            .unwrap();
            let gateway_config = GatewayConfig {
                managed_session_timeout_ms: 2_000,
                ..GatewayConfig::default()
            };
            let gateway = Gateway::new(Arc::new(node), application, gateway_config).unwrap();
            let etcd_config = EtcdConfig {
                member_client_urls: endpoints
                    .iter()
                    .map(|(id, url)| (*id, vec![url.clone()]))
                    .collect(),
                watch_progress_notify_interval: Duration::from_millis(200),
                watch_session_timeout_ms: 2_000,
                ..EtcdConfig::default()
            };
            let listener = etcd_listeners.remove(&id).unwrap();
            tokio::spawn(serve(
                gateway.clone(),
                listener,
                etcd_config,
                std::future::pending(),
            ));
            gateways.insert(id, gateway);
        }
        Cluster {
            _directory: directory,
            gateways,
            endpoints,
        }
    }

    async fn leader(&self) -> NodeId {
        let deadline = Instant::now() + DEADLINE;
        loop {
            for (id, gateway) in &self.gateways {
                if gateway.status().await.unwrap().soft_state.role == Role::Leader {
                    return *id;
                }
            }
            assert!(Instant::now() < deadline, "no leader elected");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A client of the leader's etcd endpoint.
    async fn leader_client(&self) -> (NodeId, Client) {
        let leader = self.leader().await;
        let client = Client::connect([self.endpoints[&leader].as_str()], None)
            .await
            .unwrap();
        (leader, client)
    }
}

fn grpc_status(error: etcd_client::Error) -> tonic::Status {
    match error {
        etcd_client::Error::GRpcStatus(status) => status,
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kv_put_get_delete_txn_compact_with_headers_and_errors() {
    let cluster = Cluster::start().await;
    let (leader, mut client) = cluster.leader_client().await;

    let put = client.put("a/1", "one", None).await.unwrap();
    let header = put.header().unwrap();
    assert_eq!(header.member_id(), leader);
    assert_eq!(header.cluster_id(), EtcdConfig::default().cluster_id);
    assert!(header.raft_term() >= 1);
    let first = header.revision();
    assert_eq!(first, 2, "an empty store is at revision 1");
    client.put("a/2", "two", None).await.unwrap();
    let third = client
        .put("a/1", "uno", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert_eq!(third.prev_key().unwrap().value(), b"one");
    assert_eq!(third.header().unwrap().revision(), 4);

    let prefix = client
        .get("a/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let keys: Vec<&[u8]> = prefix.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(keys, vec![b"a/1".as_slice(), b"a/2".as_slice()]);
    assert_eq!(prefix.kvs()[0].version(), 2);
    assert_eq!(prefix.kvs()[0].create_revision(), 2);
    assert_eq!(prefix.kvs()[0].mod_revision(), 4);
    assert_eq!(prefix.header().unwrap().revision(), 4);

    // A read at a past revision sees the old value; serializable reads work on followers.
    let old = client
        .get("a/1", Some(GetOptions::new().with_revision(2)))
        .await
        .unwrap();
    assert_eq!(old.kvs()[0].value(), b"one");
    let follower = cluster.gateways.keys().find(|id| **id != leader).unwrap();
    let mut follower_client = Client::connect([cluster.endpoints[follower].as_str()], None)
        .await
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let local = follower_client
            .get("a/1", Some(GetOptions::new().with_serializable()))
            .await
            .unwrap();
        if local.kvs().first().map(|kv| kv.value()) == Some(b"uno".as_slice()) {
            assert_eq!(local.header().unwrap().member_id(), *follower);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the follower never applied the put"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Txn: compare, success and failure branches.
    let txn = Txn::new()
        .when([Compare::value("a/1", CompareOp::Equal, "uno")])
        .and_then([TxnOp::put("a/3", "three", None), TxnOp::get("a/1", None)])
        .or_else([TxnOp::delete("a/1", None)]);
    let response = client.txn(txn).await.unwrap();
    assert!(response.succeeded());
    assert_eq!(response.header().unwrap().revision(), 5);
    let failing = Txn::new()
        .when([Compare::version("a/1", CompareOp::Equal, 7)])
        .and_then([TxnOp::delete("a/", None)])
        .or_else([TxnOp::get("a/2", None)]);
    let response = client.txn(failing).await.unwrap();
    assert!(!response.succeeded());
    assert_eq!(response.header().unwrap().revision(), 5);

    let deleted = client
        .delete("a/", Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(deleted.deleted(), 3);
    assert_eq!(deleted.header().unwrap().revision(), 6);

    // Compaction, then etcd's errors for compacted and future revisions.
    client.compact(5, None).await.unwrap();
    let compacted = client
        .get("a/1", Some(GetOptions::new().with_revision(3)))
        .await
        .unwrap_err();
    let status = grpc_status(compacted);
    assert_eq!(status.code(), tonic::Code::OutOfRange);
    assert_eq!(
        status.message(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    let future = grpc_status(
        client
            .get("a/1", Some(GetOptions::new().with_revision(100)))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        future.message(),
        "etcdserver: mvcc: required revision is a future revision"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_etcds_errors_and_changes_nothing() {
    let cluster = Cluster::start().await;
    let (_, mut client) = cluster.leader_client().await;
    client.put("k", "v", None).await.unwrap();

    let empty = grpc_status(client.put("", "v", None).await.unwrap_err());
    assert_eq!(empty.code(), tonic::Code::InvalidArgument);
    assert_eq!(empty.message(), "etcdserver: key is not provided");

    let unknown_lease = grpc_status(
        client
            .put("k", "w", Some(PutOptions::new().with_lease(0x7777)))
            .await
            .unwrap_err(),
    );
    assert_eq!(unknown_lease.code(), tonic::Code::NotFound);
    assert_eq!(
        unknown_lease.message(),
        "etcdserver: requested lease not found"
    );
    let revoke = grpc_status(client.lease_revoke(0x7777).await.unwrap_err());
    assert_eq!(revoke.message(), "etcdserver: requested lease not found");

    let too_many: Vec<TxnOp> = (0..200)
        .map(|index| TxnOp::put(format!("t{index}"), "x", None))
        .collect();
    let txn = grpc_status(client.txn(Txn::new().and_then(too_many)).await.unwrap_err());
    assert_eq!(txn.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        txn.message(),
        "etcdserver: too many operations in txn request"
    );

    let duplicate = Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]);
    let duplicate = grpc_status(client.txn(duplicate).await.unwrap_err());
    assert_eq!(
        duplicate.message(),
        "etcdserver: duplicate key given in txn request"
    );

    let large = grpc_status(
        client
            .put("big", vec![0u8; 1_600_000], None)
            .await
            .unwrap_err(),
    );
    assert_eq!(large.code(), tonic::Code::InvalidArgument);
    assert_eq!(large.message(), "etcdserver: request is too large");

    let ignore = grpc_status(
        client
            .put("missing", "", Some(PutOptions::new().with_ignore_value()))
            .await
            .unwrap_err(),
    );
    assert_eq!(ignore.message(), "etcdserver: key not found");

    // A range whose end is before its start is empty, as in etcd.
    let inverted = client
        .get("z", Some(GetOptions::new().with_range("a")))
        .await
        .unwrap();
    assert!(inverted.kvs().is_empty());

    // Nothing above changed the store: one key at the revision of the only put.
    let all = client
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    assert_eq!(all.kvs().len(), 1);
    assert_eq!(all.kvs()[0].value(), b"v");
    assert_eq!(all.header().unwrap().revision(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_history_filters_prev_kv_cancel_progress_and_compaction() {
    let cluster = Cluster::start().await;
    let (_, mut client) = cluster.leader_client().await;
    for index in 0..3 {
        client.put("w/a", format!("v{index}"), None).await.unwrap(); // revisions 2, 3, 4
    }
    client.delete("w/a", None).await.unwrap(); // revision 5

    // From a past revision, with prev-kv: the whole history in order.
    let mut stream = client
        .watch(
            "w/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(3)
                    .with_prev_key(),
            ),
        )
        .await
        .unwrap();
    let created = stream.message().await.unwrap().unwrap();
    assert!(created.created());
    let watch_id = created.watch_id();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let response = stream.message().await.unwrap().unwrap();
        assert_eq!(response.watch_id(), watch_id);
        for event in response.events() {
            let kv = event.kv().unwrap();
            seen.push((
                event.event_type(),
                kv.mod_revision(),
                event.prev_kv().map(|p| p.value().to_vec()),
            ));
        }
    }
    assert_eq!(
        seen,
        vec![
            (EventType::Put, 3, Some(b"v0".to_vec())),
            (EventType::Put, 4, Some(b"v1".to_vec())),
            (EventType::Delete, 5, Some(b"v2".to_vec())),
        ]
    );

    // A second watch on the same stream, without deletes; new events reach both.
    stream
        .watch(
            "w/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_filters([WatchFilterType::NoDelete]),
            ),
        )
        .await
        .unwrap();
    let created = stream.message().await.unwrap().unwrap();
    assert!(created.created());
    let no_delete_id = created.watch_id();
    assert_ne!(no_delete_id, watch_id);
    client.put("w/b", "x", None).await.unwrap(); // 6
    client.delete("w/b", None).await.unwrap(); // 7
    let mut by_watch: BTreeMap<i64, Vec<(EventType, i64)>> = BTreeMap::new();
    while by_watch.values().map(Vec::len).sum::<usize>() < 3 {
        let response = stream.message().await.unwrap().unwrap();
        for event in response.events() {
            by_watch
                .entry(response.watch_id())
                .or_default()
                .push((event.event_type(), event.kv().unwrap().mod_revision()));
        }
    }
    assert_eq!(
        by_watch[&watch_id],
        vec![(EventType::Put, 6), (EventType::Delete, 7)]
    );
    assert_eq!(by_watch[&no_delete_id], vec![(EventType::Put, 6)]);

    // Progress on request: a header revision that no later event undercuts.
    stream.request_progress().await.unwrap();
    let progress = stream.message().await.unwrap().unwrap();
    assert_eq!(progress.watch_id(), -1);
    assert!(progress.events().is_empty());
    assert!(progress.header().unwrap().revision() <= 7);

    // Cancel: the canceled watch hears nothing more.
    stream.cancel(no_delete_id).await.unwrap();
    let canceled = stream.message().await.unwrap().unwrap();
    assert!(canceled.canceled());
    assert_eq!(canceled.watch_id(), no_delete_id);
    client.put("w/c", "y", None).await.unwrap(); // 8
    let next = stream.message().await.unwrap().unwrap();
    assert_eq!(next.watch_id(), watch_id);
    assert_eq!(next.events()[0].kv().unwrap().mod_revision(), 8);

    // After compaction, a watch from a compacted revision is created and canceled with the
    // compact revision.
    client.compact(6, None).await.unwrap();
    let mut late = client
        .watch(
            "w/",
            Some(WatchOptions::new().with_prefix().with_start_revision(2)),
        )
        .await
        .unwrap();
    let created = late.message().await.unwrap().unwrap();
    assert!(created.created());
    let canceled = late.message().await.unwrap().unwrap();
    assert!(canceled.canceled());
    assert_eq!(canceled.compact_revision(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_progress_notify_reports_quiet_watches() {
    let cluster = Cluster::start().await;
    let (_, mut client) = cluster.leader_client().await;
    client.put("p", "1", None).await.unwrap();
    let mut stream = client
        .watch("quiet", Some(WatchOptions::new().with_progress_notify()))
        .await
        .unwrap();
    let created = stream.message().await.unwrap().unwrap();
    assert!(created.created());
    let notify = tokio::time::timeout(DEADLINE, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(notify.watch_id(), created.watch_id());
    assert!(notify.events().is_empty());
    assert!(!notify.canceled());
    assert_eq!(notify.header().unwrap().revision(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_grant_keep_alive_time_to_live_revoke_and_expire() {
    let cluster = Cluster::start().await;
    let (_, mut client) = cluster.leader_client().await;
    let lease = client.lease_grant(30, None).await.unwrap();
    assert_eq!(lease.ttl(), 30);
    let id = lease.id();
    client
        .put("leased/1", "x", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    let ttl = client
        .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert!(ttl.ttl() > 0 && ttl.ttl() <= 30);
    assert_eq!(ttl.granted_ttl(), 30);
    assert_eq!(ttl.keys(), [b"leased/1".to_vec()]);
    let leases = client.leases().await.unwrap();
    assert_eq!(
        leases.leases().iter().map(|l| l.id()).collect::<Vec<_>>(),
        vec![id]
    );

    let (mut keeper, mut responses) = client.lease_keep_alive(id).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let kept = responses.message().await.unwrap().unwrap();
    assert_eq!(kept.id(), id);
    assert_eq!(kept.ttl(), 30);

    // Unknown leases: keep-alive answers TTL 0 (which etcd-client reports as "lease not
    // found", as it does against etcd), time-to-live answers -1.
    match client.lease_keep_alive(0x4242).await {
        Err(etcd_client::Error::LeaseKeepAliveError(reason)) => {
            assert_eq!(reason, "lease not found");
        }
        other => panic!("expected TTL 0, got {other:?}"),
    }
    let unknown = client.lease_time_to_live(0x4242, None).await.unwrap();
    assert_eq!(unknown.ttl(), -1);

    client.lease_revoke(id).await.unwrap();
    let gone = client.get("leased/1", None).await.unwrap();
    assert!(gone.kvs().is_empty(), "revoking deletes the lease's keys");

    // A short lease nobody renews expires by log time and takes its key with it.
    let short = client.lease_grant(2, None).await.unwrap();
    client
        .put(
            "leased/2",
            "y",
            Some(PutOptions::new().with_lease(short.id())),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        if client.get("leased/2", None).await.unwrap().kvs().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        client
            .lease_time_to_live(short.id(), None)
            .await
            .unwrap()
            .ttl(),
        -1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_members_status_hash_and_health() {
    let cluster = Cluster::start().await;
    let (leader, mut client) = cluster.leader_client().await;
    let members = client.member_list().await.unwrap();
    let mut ids: Vec<u64> = members.members().iter().map(|m| m.id()).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2, 3]);
    for member in members.members() {
        assert_eq!(
            member.client_urls(),
            [cluster.endpoints[&member.id()].clone()]
        );
        assert!(!member.is_learner());
    }
    let status = client.status().await.unwrap();
    assert_eq!(status.leader(), leader);
    assert!(status.raft_term() >= 1);
    assert!(status.raft_index() >= 1);
    assert_eq!(status.header().unwrap().member_id(), leader);

    client.put("h", "1", None).await.unwrap();
    let removal = grpc_status(client.member_remove(99).await.unwrap_err());
    assert_eq!(removal.code(), tonic::Code::NotFound);
    assert_eq!(removal.message(), "etcdserver: member not found");

    // Every replica that applied the same history hashes it the same.
    let revision = client
        .hash_kv(0)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let mut hashes = Vec::new();
    for endpoint in cluster.endpoints.values() {
        let mut replica = Client::connect([endpoint.as_str()], None).await.unwrap();
        let deadline = Instant::now() + DEADLINE;
        loop {
            let hashed = replica.hash_kv(revision).await;
            if let Ok(hashed) = hashed {
                hashes.push(hashed.hash());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a replica never reached {revision}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert!(
        hashes.windows(2).all(|pair| pair[0] == pair[1]),
        "{hashes:?}"
    );
    client.defragment().await.unwrap();
    assert!(
        client
            .alarm(
                etcd_client::AlarmAction::Get,
                etcd_client::AlarmType::None,
                None
            )
            .await
            .unwrap()
            .alarms()
            .is_empty()
    );

    // grpc.health.v1 answers SERVING.
    let channel = tonic::transport::Channel::from_shared(cluster.endpoints[&leader].clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locks_are_exclusive_and_fifo_with_etcd_key_names() {
    let cluster = Cluster::start().await;
    let (_, mut client) = cluster.leader_client().await;
    let first_lease = client.lease_grant(30, None).await.unwrap().id();
    let second_lease = client.lease_grant(30, None).await.unwrap().id();
    let held = client
        .lock("jobs", Some(LockOptions::new().with_lease(first_lease)))
        .await
        .unwrap();
    assert_eq!(held.key(), format!("jobs/{first_lease:x}").as_bytes());

    let mut waiter_client = client.clone();
    let waiter = tokio::spawn(async move {
        waiter_client
            .lock("jobs", Some(LockOptions::new().with_lease(second_lease)))
            .await
            .unwrap()
    });
    // The waiter's key is visible while it waits, and it does not get the lock.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let keys = client
            .get("jobs/", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap();
        if keys.kvs().len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the waiter never queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!waiter.is_finished());
    client.unlock(held.key()).await.unwrap();
    let second = tokio::time::timeout(DEADLINE, waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.key(), format!("jobs/{second_lease:x}").as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn elections_campaign_proclaim_observe_and_resign() {
    let cluster = Cluster::start().await;
    let (_, mut client) = cluster.leader_client().await;
    let no_leader = grpc_status(client.leader("pool").await.unwrap_err());
    assert_eq!(no_leader.message(), "election: no leader");

    let first_lease = client.lease_grant(30, None).await.unwrap().id();
    let second_lease = client.lease_grant(30, None).await.unwrap().id();
    let campaign = client.campaign("pool", "alpha", first_lease).await.unwrap();
    let leader_key = campaign.leader().unwrap().clone();
    assert_eq!(leader_key.key(), format!("pool/{first_lease:x}").as_bytes());
    let current = client.leader("pool").await.unwrap();
    assert_eq!(current.kv().unwrap().value(), b"alpha");

    let mut observer = client.observe("pool").await.unwrap();
    let observed = observer.message().await.unwrap().unwrap();
    assert_eq!(observed.kv().unwrap().value(), b"alpha");

    client
        .proclaim(
            "beta",
            Some(etcd_client::ProclaimOptions::new().with_leader(leader_key.clone())),
        )
        .await
        .unwrap();
    let observed = observer.message().await.unwrap().unwrap();
    assert_eq!(observed.kv().unwrap().value(), b"beta");

    let mut challenger_client = client.clone();
    let challenger = tokio::spawn(async move {
        challenger_client
            .campaign("pool", "gamma", second_lease)
            .await
            .unwrap()
    });
    client
        .resign(Some(
            etcd_client::ResignOptions::new().with_leader(leader_key),
        ))
        .await
        .unwrap();
    let won = tokio::time::timeout(DEADLINE, challenger)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        won.leader().unwrap().key(),
        format!("pool/{second_lease:x}").as_bytes()
    );
    let observed = observer.message().await.unwrap().unwrap();
    assert_eq!(observed.kv().unwrap().value(), b"gamma");
}
