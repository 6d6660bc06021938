//! The fault-injecting proxy: bytes flow through a healed link, a cut link resets the
//! connections it carries and every new one, a heal lets traffic through again, and a
//! partition cuts exactly its links.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conclave_jepsen::harness::partition::Partition;
use conclave_jepsen::harness::proxy::{CLIENTS, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Starts a server that echoes every byte back; returns its address.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buffer = [0_u8; 4096];
                loop {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(count) => {
                            if stream.write_all(&buffer[..count]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    address
}

/// Sends `message` and reads the echo, with a deadline; `None` if the connection ended or
/// failed before the whole echo came back.
async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Option<Vec<u8>> {
    let exchange = async {
        stream.write_all(message).await.ok()?;
        let mut echoed = vec![0_u8; message.len()];
        stream.read_exact(&mut echoed).await.ok()?;
        Some(echoed)
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// Waits until a read on `stream` ends (end of stream or error), with a deadline.
async fn connection_ends(stream: &mut TcpStream) -> Result<(), std::io::Error> {
    let mut buffer = [0_u8; 16];
    match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await {
        Ok(Ok(0)) => Ok(()),
        Ok(Ok(count)) => panic!("{count} unexpected bytes on a cut link"),
        Ok(Err(error)) => Err(error),
        Err(_) => panic!("a cut link left its connection open"),
    }
}

#[tokio::test]
async fn bytes_flow_through_a_healed_link_and_are_counted() {
    let target = echo_server().await;
    let proxy = Proxy::start(&[((1, 2), target)]).await.unwrap();
    let mut stream = TcpStream::connect(proxy.address((1, 2)).unwrap())
        .await
        .unwrap();
    let echoed = round_trip(&mut stream, b"hello through the proxy").await;
    assert_eq!(echoed.as_deref(), Some(&b"hello through the proxy"[..]));
    assert_eq!(proxy.bytes_forwarded((1, 2)), 2 * 23);
    assert!(proxy.address((2, 1)).is_none());
}

#[tokio::test]
async fn a_cut_resets_open_connections_and_refuses_new_ones_until_healed() {
    let target = echo_server().await;
    let proxy = Proxy::start(&[((1, 2), target)]).await.unwrap();
    let address = proxy.address((1, 2)).unwrap();
    let mut open = TcpStream::connect(address).await.unwrap();
    assert!(round_trip(&mut open, b"before").await.is_some());

    proxy.set_cut((1, 2), true).unwrap();
    assert!(proxy.is_cut((1, 2)));
    let ended = connection_ends(&mut open).await;
    assert_eq!(
        ended.map_err(|error| error.kind()),
        Err(std::io::ErrorKind::ConnectionReset),
        "the open connection must see a reset, not a clean end"
    );

    // A new connection is accepted by the listener and reset at once: no byte gets through.
    let forwarded_before = proxy.bytes_forwarded((1, 2));
    let mut refused = TcpStream::connect(address).await.unwrap();
    assert!(round_trip(&mut refused, b"during").await.is_none());
    assert_eq!(proxy.bytes_forwarded((1, 2)), forwarded_before);

    proxy.set_cut((1, 2), false).unwrap();
    let mut healed = TcpStream::connect(address).await.unwrap();
    assert_eq!(
        round_trip(&mut healed, b"after").await.as_deref(),
        Some(&b"after"[..])
    );
}

#[tokio::test]
async fn a_link_to_a_dead_target_resets_the_client() {
    // A port that was free a moment ago: nobody listens on it.
    let dead: SocketAddr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let proxy = Proxy::start(&[((CLIENTS, 1), dead)]).await.unwrap();
    let mut stream = TcpStream::connect(proxy.address((CLIENTS, 1)).unwrap())
        .await
        .unwrap();
    assert!(round_trip(&mut stream, b"anyone?").await.is_none());
}

#[tokio::test]
async fn a_partition_cuts_exactly_its_peer_links_and_leaves_client_links_alone() {
    let target = echo_server().await;
    let nodes = [1_u64, 2, 3];
    let mut links = Vec::new();
    for &to in &nodes {
        links.push(((CLIENTS, to), target));
        for &from in nodes.iter().filter(|&&from| from != to) {
            links.push(((from, to), target));
        }
    }
    let proxy = Proxy::start(&links).await.unwrap();
    let partition = Partition::isolate_group(&nodes, &[3]);
    proxy.apply(&partition);
    for link in proxy.links().collect::<Vec<_>>() {
        let expected_cut = link.0 != CLIENTS && (link.0 == 3 || link.1 == 3);
        assert_eq!(proxy.is_cut(link), expected_cut, "link {link:?}");
        let mut stream = TcpStream::connect(proxy.address(link).unwrap())
            .await
            .unwrap();
        let passed = round_trip(&mut stream, b"x").await.is_some();
        assert_eq!(passed, !expected_cut, "traffic on link {link:?}");
    }
    proxy.heal_all();
    let deadline = Instant::now() + Duration::from_secs(5);
    for link in proxy.links().collect::<Vec<_>>() {
        assert!(!proxy.is_cut(link));
        let mut stream = TcpStream::connect(proxy.address(link).unwrap())
            .await
            .unwrap();
        assert!(round_trip(&mut stream, b"y").await.is_some());
    }
    assert!(Instant::now() < deadline);
}

#[tokio::test]
async fn a_partition_with_clients_also_cuts_client_traffic_to_the_minority() {
    let target = echo_server().await;
    let nodes = [1_u64, 2, 3];
    let mut links = Vec::new();
    for &to in &nodes {
        links.push(((CLIENTS, to), target));
        for &from in nodes.iter().filter(|&&from| from != to) {
            links.push(((from, to), target));
        }
    }
    let proxy = Proxy::start(&links).await.unwrap();
    proxy.apply_with_clients(&Partition::isolate_group(&nodes, &[2]), &nodes);
    assert!(proxy.is_cut((CLIENTS, 2)));
    assert!(!proxy.is_cut((CLIENTS, 1)) && !proxy.is_cut((CLIENTS, 3)));
    let mut stream = TcpStream::connect(proxy.address((CLIENTS, 2)).unwrap())
        .await
        .unwrap();
    assert!(round_trip(&mut stream, b"z").await.is_none());
    // The next partition moves the client cut with it.
    proxy.apply_with_clients(&Partition::isolate_group(&nodes, &[3]), &nodes);
    assert!(!proxy.is_cut((CLIENTS, 2)) && proxy.is_cut((CLIENTS, 3)));
}
