//! The tonic transport on loopback: delivery, snapshots in chunks with resume, and refusal
//! of malformed and oversized messages without harming later traffic.

use std::time::{Duration, Instant};

use bytes::Bytes;
use conclave_consensus::{
    Entry, EntryKind, Membership, Message, MessageKind, Snapshot, SnapshotMetadata,
};
use conclave_transport::proto::raft_client::RaftClient;
use conclave_transport::{GrpcTransport, Transport, TransportConfig, proto, serve};
use tokio::sync::{mpsc, oneshot};

const DEADLINE: Duration = Duration::from_secs(10);

struct Server {
    address: String,
    received: mpsc::Receiver<Message>,
    _stop: oneshot::Sender<()>,
}

async fn start(local: u64, config: TransportConfig) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (inbox, received) = mpsc::channel(1024);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, local, inbox, config, async move {
        let _ = stopped.await;
    }));
    Server {
        address,
        received,
        _stop: stop,
    }
}

async fn receive(server: &mut Server) -> Message {
    tokio::time::timeout(DEADLINE, server.received.recv())
        .await
        .unwrap()
        .unwrap()
}

fn append(index: u64, payload: &'static [u8]) -> Message {
    let mut message = Message::new(MessageKind::Append, 1, 2, 3);
    message.index = index - 1;
    message.log_term = 3;
    message.entries = vec![Entry {
        index,
        term: 3,
        kind: EntryKind::Normal,
        payload: Bytes::from_static(payload),
    }];
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arrive_in_order_and_survive_a_server_restart() {
    let config = TransportConfig::default();
    let mut server = start(2, config.clone()).await;
    let transport =
        GrpcTransport::new(1, config.clone(), tokio::runtime::Handle::current()).unwrap();
    transport.add_peer(2, server.address.clone());
    for index in 1..=100 {
        transport.send(append(index, b"payload"));
    }
    for index in 1..=100 {
        let message = receive(&mut server).await;
        assert_eq!(message.entries[0].index, index);
        assert_eq!(message.entries[0].payload, Bytes::from_static(b"payload"));
    }
    // Restart the server on the same port: the client reconnects on its own.
    let address = server.address.clone();
    drop(server);
    let started = Instant::now();
    let listener = loop {
        match tokio::net::TcpListener::bind(&address).await {
            Ok(listener) => break listener,
            Err(_) if started.elapsed() < DEADLINE => tokio::task::yield_now().await,
            Err(error) => panic!("rebind: {error}"),
        }
    };
    let (inbox, mut received) = mpsc::channel(1024);
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, 2, inbox, config, async move {
        let _ = stopped.await;
    }));
    // Messages sent while the stream was broken may be lost; keep sending until one lands.
    let deadline = Instant::now() + DEADLINE;
    loop {
        transport.send(Message::new(MessageKind::Heartbeat, 1, 2, 4));
        if let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(50), received.recv()).await
        {
            assert_eq!(message.kind, MessageKind::Heartbeat);
            break;
        }
        assert!(Instant::now() < deadline, "no delivery after reconnect");
    }
}

fn snapshot_message(bytes: usize) -> Message {
    let mut message = Message::new(MessageKind::Snapshot, 1, 2, 5);
    let data: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
    message.snapshot = Some(Snapshot {
        metadata: SnapshotMetadata {
            index: 40,
            term: 4,
            membership: Membership::with_voters([1, 2, 3]),
        },
        data: Bytes::from(data),
    });
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_go_in_chunks_and_resume_from_the_held_offset() {
    let config = TransportConfig {
        snapshot_chunk_bytes: 4096,
        ..TransportConfig::default()
    };
    let mut server = start(2, config.clone()).await;
    let transport = GrpcTransport::new(1, config, tokio::runtime::Handle::current()).unwrap();
    transport.add_peer(2, server.address.clone());
    let message = snapshot_message(50_000);
    transport.send(message.clone());
    assert_eq!(receive(&mut server).await, message);

    // A transfer cut after two chunks resumes at 8192 bytes.
    let mut client = RaftClient::connect(format!("http://{}", server.address))
        .await
        .unwrap();
    let other = snapshot_message(20_000);
    let (header, data) = conclave_transport::convert::snapshot_header(&other).unwrap();
    let chunks: Vec<_> = (0..2)
        .map(|i| proto::SnapshotChunk {
            header: Some(header.clone()),
            offset: i * 4096,
            data: data.slice(i as usize * 4096..(i as usize + 1) * 4096),
        })
        .collect();
    let progress = client
        .install_snapshot(tokio_stream::iter(chunks))
        .await
        .unwrap();
    assert_eq!(progress.into_inner().offset, 8192);
    assert_eq!(
        client
            .snapshot_offset(header.clone())
            .await
            .unwrap()
            .into_inner()
            .offset,
        8192
    );
    // A chunk at the wrong offset is refused and changes nothing.
    let wrong = proto::SnapshotChunk {
        header: Some(header.clone()),
        offset: 0,
        data: data.slice(0..4096),
    };
    assert!(
        client
            .install_snapshot(tokio_stream::iter([wrong]))
            .await
            .is_err()
    );
    let rest = proto::SnapshotChunk {
        header: Some(header.clone()),
        offset: 8192,
        data: data.slice(8192..),
    };
    let progress = client
        .install_snapshot(tokio_stream::iter([rest]))
        .await
        .unwrap();
    assert_eq!(progress.into_inner().offset, 20_000);
    assert_eq!(receive(&mut server).await, other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_messages_are_refused_and_the_server_keeps_working() {
    let config = TransportConfig {
        message_bytes_max: 64 * 1024,
        snapshot_chunk_bytes: 4096,
        ..TransportConfig::default()
    };
    let mut server = start(2, config.clone()).await;
    let mut client = RaftClient::connect(format!("http://{}", server.address))
        .await
        .unwrap();

    let unknown_kind = proto::MessageBatch {
        messages: vec![proto::Message {
            kind: 77,
            from: 1,
            to: 2,
            ..Default::default()
        }],
    };
    let status = client
        .stream(tokio_stream::iter([unknown_kind]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    let mut huge = conclave_transport::convert::message_to_proto(append(1, b"x"));
    huge.entries[0].payload = Bytes::from(vec![7u8; 100 * 1024]);
    let oversized = proto::MessageBatch {
        messages: vec![huge],
    };
    let status = client
        .stream(tokio_stream::iter([oversized]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            status.code(),
            tonic::Code::ResourceExhausted | tonic::Code::OutOfRange | tonic::Code::Internal
        ),
        "oversized refused with {status:?}"
    );

    let too_big_snapshot = snapshot_message(10);
    let (mut header, data) =
        conclave_transport::convert::snapshot_header(&too_big_snapshot).unwrap();
    header.data_bytes = u64::MAX;
    let chunk = proto::SnapshotChunk {
        header: Some(header),
        offset: 0,
        data,
    };
    let status = client
        .install_snapshot(tokio_stream::iter([chunk]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(server.received.try_recv().is_err(), "nothing delivered");

    // The server still serves a well-formed stream on the same connection.
    let good = proto::MessageBatch {
        messages: vec![conclave_transport::convert::message_to_proto(append(
            1, b"ok",
        ))],
    };
    let summary = client.stream(tokio_stream::iter([good])).await.unwrap();
    assert_eq!(summary.into_inner().messages_received, 1);
    assert_eq!(receive(&mut server).await, append(1, b"ok"));
}
