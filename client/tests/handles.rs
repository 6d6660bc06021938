//! conclave-client against three real `conclave serve` processes: every typed handle, the
//! generic handle, the consistency levels, and every recipe.

mod support;

use std::time::Duration;

use conclave_client::machines::counter::{CounterCommand, CounterOutput, CounterQuery};
use conclave_client::machines::election::ElectionResponse;
use conclave_client::machines::kv::{
    Compare, CompareResult, CompareTarget, PutRequest, RequestOp, TxnRequest,
};
use conclave_client::machines::lock::LockResponse;
use conclave_client::machines::queue::QueueResponse;
use conclave_client::machines::tree::CreateMode;
use conclave_client::recipes::{
    Barrier, ChildrenWatch, DataWatch, DoubleBarrier, Election, Lock, QueueConsumer, RwLock,
    Semaphore, ServiceDiscovery,
};
use conclave_client::{ClientError, Consistency};
use support::{ProcessCluster, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_builtin_handle_and_the_generic_handle_work() {
    let cluster = ProcessCluster::start().await;
    let client = cluster.client();
    let session = client.open_session().await.unwrap();

    // Counter, and sequential reads never older than what the session saw.
    let counter = session.counter("visits");
    assert_eq!(counter.add_and_get(5).await.unwrap(), 5);
    assert_eq!(counter.get_and_add(2).await.unwrap(), 5);
    assert_eq!(counter.compare_and_set(7, 10).await.unwrap(), (true, 10));
    assert_eq!(counter.compare_and_set(7, 11).await.unwrap(), (false, 10));
    for consistency in [
        Consistency::Linearizable,
        Consistency::Lease,
        Consistency::Sequential,
    ] {
        assert_eq!(
            counter.get(consistency).await.unwrap(),
            10,
            "{consistency:?}"
        );
    }
    assert!(session.index_seen() > session.id());

    // The generic handle, with the machine's serde types and its type name.
    let untyped = session.untyped("visits", "counter");
    let output: CounterOutput = untyped
        .command(&CounterCommand::AddAndGet { delta: 1 })
        .await
        .unwrap();
    assert_eq!(output, CounterOutput::Value(11));
    let read: CounterOutput = untyped
        .query(&CounterQuery::Get, Consistency::Sequential)
        .await
        .unwrap();
    assert_eq!(read, CounterOutput::Value(11));
    // A machine of another type under that name is refused, and the session goes on.
    let refused = session
        .untyped("visits", "value")
        .command::<_, CounterOutput>(&CounterCommand::AddAndGet { delta: 1 })
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, ClientError::Rejected { code, .. } if code == "MACHINE_TYPE_MISMATCH"),
        "{refused:?}"
    );
    let unknown = session
        .untyped("x", "no-such-type")
        .command::<_, CounterOutput>(&CounterCommand::AddAndGet { delta: 1 })
        .await
        .unwrap_err();
    assert!(
        matches!(&unknown, ClientError::Rejected { code, .. } if code == "UNKNOWN_MACHINE_TYPE"),
        "{unknown:?}"
    );
    assert_eq!(counter.add_and_get(1).await.unwrap(), 12);

    // Value, with a change event to a listening session.
    let value = session.value("config");
    let mut changes = value.events();
    value.listen().await.unwrap();
    assert_eq!(value.set(Some(b"a".to_vec())).await.unwrap(), None);
    assert!(
        value
            .compare_and_set(Some(b"a".to_vec()), Some(b"b".to_vec()))
            .await
            .unwrap()
    );
    assert_eq!(
        value.get(Consistency::Linearizable).await.unwrap(),
        Some(b"b".to_vec())
    );
    let (_, first) = within("value event", changes.next())
        .await
        .unwrap()
        .unwrap();
    let (_, second) = within("value event", changes.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.value, second.value),
        (Some(b"a".to_vec()), Some(b"b".to_vec()))
    );

    // Kv: put, get, prefix, txn, delete.
    let kv = session.kv("kv");
    let revision = kv.put(b"/app/a", b"1").await.unwrap();
    kv.put(b"/app/b", b"2").await.unwrap();
    let a = kv
        .get(b"/app/a", Consistency::Linearizable)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((a.value.as_slice(), a.mod_revision), (&b"1"[..], revision));
    assert_eq!(
        kv.prefix(b"/app/", Consistency::Sequential)
            .await
            .unwrap()
            .len(),
        2
    );
    let txn = kv
        .txn(TxnRequest {
            compare: vec![Compare {
                key: b"/app/a".to_vec(),
                range_end: Vec::new(),
                result: CompareResult::Equal,
                target: CompareTarget::Value(b"1".to_vec()),
            }],
            success: vec![RequestOp::Put(PutRequest {
                key: b"/app/a".to_vec(),
                value: b"3".to_vec(),
                ..PutRequest::default()
            })],
            failure: Vec::new(),
        })
        .await
        .unwrap();
    assert!(txn.succeeded);
    assert_eq!(
        kv.get(b"/app/a", Consistency::Linearizable)
            .await
            .unwrap()
            .unwrap()
            .value,
        b"3"
    );
    assert_eq!(kv.delete(b"/app/a", b"/app/c").await.unwrap(), 2);
    assert!(
        kv.get(b"/app/a", Consistency::Linearizable)
            .await
            .unwrap()
            .is_none()
    );

    // Tree.
    let tree = session.tree("tree");
    assert_eq!(
        tree.create("/services", b"", CreateMode::Persistent)
            .await
            .unwrap(),
        "/services"
    );
    let sequential = tree
        .create("/services/job-", b"x", CreateMode::PersistentSequential)
        .await
        .unwrap();
    assert!(sequential.starts_with("/services/job-"), "{sequential}");
    let stat = tree.set_data(&sequential, b"y", 0).await.unwrap();
    assert_eq!(stat.version, 1);
    let stale = tree.set_data(&sequential, b"z", 0).await.unwrap_err();
    assert!(format!("{stale}").contains("-103"), "{stale}");
    let (data, _) = tree
        .get_data(&sequential, Consistency::Sequential)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(data, b"y");
    assert_eq!(
        tree.children("/services", Consistency::Linearizable)
            .await
            .unwrap()
            .unwrap()
            .len(),
        1
    );
    tree.delete(&sequential, -1).await.unwrap();
    assert!(
        tree.get_data(&sequential, Consistency::Linearizable)
            .await
            .unwrap()
            .is_none()
    );

    // Queue.
    let queues = session.queues("queues");
    let id = queues.offer("jobs", b"job-1").await.unwrap();
    let QueueResponse::Delivered(delivery) = queues.poll("jobs", 60_000, false).await.unwrap()
    else {
        panic!("an offered item is delivered")
    };
    assert_eq!((delivery.id, delivery.data.as_slice()), (id, &b"job-1"[..]));
    assert_eq!(
        queues
            .size("jobs", Consistency::Linearizable)
            .await
            .unwrap(),
        (0, 1)
    );
    queues
        .ack("jobs", delivery.id, delivery.delivery)
        .await
        .unwrap();
    assert_eq!(
        queues
            .size("jobs", Consistency::Linearizable)
            .await
            .unwrap(),
        (0, 0)
    );
    assert_eq!(
        queues.poll("jobs", 1_000, false).await.unwrap(),
        QueueResponse::Empty
    );

    // Lock and election handles.
    let locks = session.locks("locks");
    let LockResponse::Acquired { token } = locks.lock("l", Some(0)).await.unwrap() else {
        panic!("a free lock is granted")
    };
    assert!(token > session.id());
    locks.unlock("l").await.unwrap();
    assert!(
        locks.unlock("l").await.is_err(),
        "unlocking a free lock is refused"
    );
    let elections = session.elections("elections");
    let ElectionResponse::Elected { epoch } = elections.campaign("e", b"me").await.unwrap() else {
        panic!("the only candidate is elected")
    };
    let leader = elections
        .leader("e", Consistency::Linearizable)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((leader.session, leader.epoch), (session.id(), epoch));

    session.close().await.unwrap();
    assert!(matches!(
        counter.add_and_get(1).await,
        Err(ClientError::SessionExpired { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_recipes_exclude_and_fence() {
    let cluster = ProcessCluster::start().await;
    let client = cluster.client();
    let first = client.open_session().await.unwrap();
    let second = client.open_session().await.unwrap();

    let held = Lock::new(&first, "locks", "job").acquire().await.unwrap();
    assert!(
        Lock::new(&second, "locks", "job")
            .try_acquire(Duration::ZERO)
            .await
            .unwrap()
            .is_none()
    );
    let timed_out = Lock::new(&second, "locks", "job")
        .try_acquire(Duration::from_millis(200))
        .await
        .unwrap();
    assert!(
        timed_out.is_none(),
        "a wait that ends before the release is not granted"
    );
    let waiter = {
        let second = second.clone();
        tokio::spawn(async move { Lock::new(&second, "locks", "job").acquire().await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "the lock is still held");
    let first_token = held.token();
    held.release().await.unwrap();
    let granted = within("the waiter's grant", waiter).await.unwrap().unwrap();
    assert!(granted.token() > first_token, "fencing tokens grow");
    granted.release().await.unwrap();

    // RwLock: readers share, a writer waits for them.
    let read_first = RwLock::new(&first, "locks", "rw")
        .read(None)
        .await
        .unwrap()
        .unwrap();
    let read_second = RwLock::new(&second, "locks", "rw")
        .read(None)
        .await
        .unwrap()
        .unwrap();
    assert!(
        RwLock::new(&first, "locks", "rw2")
            .write(Some(Duration::ZERO))
            .await
            .unwrap()
            .is_some()
    );
    let third = client.open_session().await.unwrap();
    assert!(
        RwLock::new(&third, "locks", "rw")
            .write(Some(Duration::ZERO))
            .await
            .unwrap()
            .is_none()
    );
    read_first.release().await.unwrap();
    read_second.release().await.unwrap();
    let write = RwLock::new(&third, "locks", "rw")
        .write(Some(Duration::ZERO))
        .await
        .unwrap();
    assert!(write.is_some(), "the writer gets it once the readers left");

    // Semaphore: two permits.
    let one = Semaphore::new(&first, "locks", "pool", 2)
        .acquire(1, None)
        .await
        .unwrap()
        .unwrap();
    let _two = Semaphore::new(&second, "locks", "pool", 2)
        .acquire(1, None)
        .await
        .unwrap()
        .unwrap();
    assert!(
        Semaphore::new(&third, "locks", "pool", 2)
            .acquire(1, Some(Duration::ZERO))
            .await
            .unwrap()
            .is_none()
    );
    one.release().await.unwrap();
    assert!(
        Semaphore::new(&third, "locks", "pool", 2)
            .acquire(1, Some(Duration::ZERO))
            .await
            .unwrap()
            .is_some()
    );

    // Closing a session releases its lock to the waiter, with an event.
    let held = Lock::new(&first, "locks", "closing")
        .acquire()
        .await
        .unwrap();
    let waiter = {
        let second = second.clone();
        tokio::spawn(async move { Lock::new(&second, "locks", "closing").acquire().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.close().await.unwrap();
    let granted = within("grant after close", waiter).await.unwrap().unwrap();
    assert!(granted.token() > held.token());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_watch_barrier_queue_and_discovery_recipes() {
    let cluster = ProcessCluster::start().await;
    let client = cluster.client();
    let first = client.open_session().await.unwrap();
    let second = client.open_session().await.unwrap();

    // Election: the second candidate is elected when the first resigns, with a larger epoch;
    // an observer sees both leaderships.
    let mut observer = Election::new(&second, "elections", "primary")
        .observe()
        .await
        .unwrap();
    assert_eq!(observer.next().await.unwrap(), None);
    let first_epoch = Election::new(&first, "elections", "primary")
        .campaign(b"first")
        .await
        .unwrap();
    let seen = within("observed leader", observer.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (seen.session, seen.epoch, seen.value.as_slice()),
        (first.id(), first_epoch, &b"first"[..])
    );
    let candidate = {
        let second = second.clone();
        tokio::spawn(async move {
            Election::new(&second, "elections", "primary")
                .run(b"second", |epoch| async move { epoch })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !candidate.is_finished(),
        "the second waits while the first leads"
    );
    Election::new(&first, "elections", "primary")
        .resign()
        .await
        .unwrap();
    let second_epoch = within("second elected", candidate).await.unwrap().unwrap();
    assert!(second_epoch > first_epoch);

    // DataWatch and ChildrenWatch.
    let mut data = DataWatch::new(&second, "tree", "/config").await.unwrap();
    assert_eq!(data.next().await.unwrap(), None);
    let mut children = ChildrenWatch::new(&second, "tree", "/config")
        .await
        .unwrap();
    assert_eq!(children.next().await.unwrap(), None);
    let tree = first.tree("tree");
    tree.create("/config", b"v1", CreateMode::Persistent)
        .await
        .unwrap();
    assert_eq!(
        within("created", data.next()).await.unwrap().unwrap().0,
        b"v1"
    );
    tree.set_data("/config", b"v2", -1).await.unwrap();
    assert_eq!(
        within("changed", data.next()).await.unwrap().unwrap().0,
        b"v2"
    );
    assert_eq!(
        within("children", children.next()).await.unwrap(),
        Some(Vec::new())
    );
    tree.create("/config/a", b"", CreateMode::Ephemeral)
        .await
        .unwrap();
    assert_eq!(
        within("child added", children.next()).await.unwrap(),
        Some(vec!["a".to_string()])
    );

    // Barrier: wait blocks while it is up.
    let barrier = Barrier::new(&first, "tree", "/gate");
    barrier.set().await.unwrap();
    let waiting = {
        let second = second.clone();
        tokio::spawn(async move { Barrier::new(&second, "tree", "/gate").wait().await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    barrier.remove().await.unwrap();
    within("barrier down", waiting).await.unwrap().unwrap();

    // DoubleBarrier for two members.
    let entering = {
        let first = first.clone();
        tokio::spawn(async move {
            DoubleBarrier::new(&first, "tree", "/double", 2)
                .enter()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!entering.is_finished(), "one member alone does not enter");
    DoubleBarrier::new(&second, "tree", "/double", 2)
        .enter()
        .await
        .unwrap();
    within("both entered", entering).await.unwrap().unwrap();
    let leaving = {
        let first = first.clone();
        tokio::spawn(async move {
            DoubleBarrier::new(&first, "tree", "/double", 2)
                .leave()
                .await
        })
    };
    DoubleBarrier::new(&second, "tree", "/double", 2)
        .leave()
        .await
        .unwrap();
    within("both left", leaving).await.unwrap().unwrap();

    // Queue consumer: waits for an item on the machine's event, then acknowledges it.
    let consumer = QueueConsumer::new(&second, "queues", "work", Duration::from_secs(30));
    let next = {
        let consumer = consumer.clone();
        tokio::spawn(async move { consumer.next().await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!next.is_finished(), "the queue is empty");
    first.queues("queues").offer("work", b"w1").await.unwrap();
    let delivery = within("delivery", next).await.unwrap().unwrap();
    assert_eq!(delivery.data, b"w1");
    consumer.ack(&delivery).await.unwrap();
    assert_eq!(
        first
            .queues("queues")
            .size("work", Consistency::Linearizable)
            .await
            .unwrap(),
        (0, 0)
    );

    // Service discovery and configuration.
    let third = client.open_session().await.unwrap();
    let watcher = ServiceDiscovery::new(&first, "tree", "/discovery");
    let mut instances = watcher.watch("api").await.unwrap();
    assert!(instances.next().await.unwrap().is_empty());
    ServiceDiscovery::new(&third, "tree", "/discovery")
        .register("api", "node-3", b"127.0.0.1:9003")
        .await
        .unwrap();
    let listed = within("registered", instances.next()).await.unwrap();
    assert_eq!(
        listed.get("node-3").map(Vec::as_slice),
        Some(&b"127.0.0.1:9003"[..])
    );
    assert_eq!(
        watcher
            .instances("api", Consistency::Linearizable)
            .await
            .unwrap(),
        listed
    );
    let mut config = watcher.subscribe_config("limits").await.unwrap();
    assert_eq!(config.next().await.unwrap(), None);
    ServiceDiscovery::new(&third, "tree", "/discovery")
        .set_config("limits", b"10")
        .await
        .unwrap();
    assert_eq!(
        within("config", config.next()).await.unwrap().unwrap().0,
        b"10"
    );
    third.close().await.unwrap();
    assert!(
        within("instance gone with its session", instances.next())
            .await
            .unwrap()
            .is_empty(),
        "an instance is bound to its session"
    );
}
