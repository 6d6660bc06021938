//! A malformed or oversized peer message sent to a node of a running cluster is refused,
//! and the cluster keeps working.

mod common;

use bytes::Bytes;
use common::{Cluster, key, value};
use conclave_consensus::{Entry, EntryKind, Message, MessageKind};
use conclave_transport::proto::raft_client::RaftClient;
use conclave_transport::{convert, proto};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_peer_messages_are_refused_and_the_node_keeps_working() {
    let cluster = Cluster::start(&[1, 2, 3], 10_000).await;
    let leader = cluster.wait_for_leader().await;
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    cluster.write(0).await;
    let term_before = cluster.nodes[&follower]
        .status()
        .await
        .unwrap()
        .hard_state
        .term;
    let mut client = RaftClient::connect(format!("http://{}", cluster.addresses[&follower]))
        .await
        .unwrap();

    // An unknown message kind.
    let unknown = proto::Message {
        kind: 99,
        from: leader,
        to: follower,
        term: 1_000,
        ..Default::default()
    };
    let status = client
        .stream(tokio_stream::iter([proto::MessageBatch {
            messages: vec![unknown],
        }]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    // An append whose entries do not follow its index, with a huge term: refused before it
    // reaches the core, so the follower's term does not move.
    let mut gap = Message::new(MessageKind::Append, leader, follower, 1_000);
    gap.index = 5;
    gap.entries = vec![Entry {
        index: 9,
        term: 1_000,
        kind: EntryKind::Normal,
        payload: Bytes::from_static(b"x"),
    }];
    let batch = proto::MessageBatch {
        messages: vec![convert::message_to_proto(gap)],
    };
    let status = client
        .stream(tokio_stream::iter([batch]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    // A message over the configured size limit.
    let mut huge = Message::new(MessageKind::Append, leader, follower, 1);
    huge.entries = vec![Entry {
        index: 1,
        term: 1,
        kind: EntryKind::Normal,
        payload: Bytes::from(vec![0u8; cluster.transport_config.message_bytes_max + 1]),
    }];
    let batch = proto::MessageBatch {
        messages: vec![convert::message_to_proto(huge)],
    };
    let status = client
        .stream(tokio_stream::iter([batch]))
        .await
        .unwrap_err();
    assert_ne!(status.code(), tonic::Code::Ok);

    let after = cluster.nodes[&follower].status().await.unwrap();
    assert_eq!(
        after.hard_state.term, term_before,
        "a refused message moved the term"
    );
    for i in 1..20 {
        cluster.write(i).await;
    }
    cluster.wait_for_keys(follower, 0..20).await;
    assert_eq!(
        cluster.nodes[&follower]
            .query_local(Bytes::from(key(19)))
            .await
            .unwrap()
            .1,
        value(19)
    );
    cluster.shutdown().await;
}
