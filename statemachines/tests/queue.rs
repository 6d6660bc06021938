//! One test per rule of the queue machine.

mod common;

use common::Harness;
use conclave_statemachines::queue::*;

fn queues() -> Harness<QueueMachine> {
    Harness::new(QueueMachine::default())
}

fn offer(data: &str) -> QueueCommand {
    QueueCommand::Offer {
        name: "q".into(),
        data: data.into(),
    }
}

fn poll(wait: bool) -> QueueCommand {
    QueueCommand::Poll {
        name: "q".into(),
        visibility_timeout_ms: 1_000,
        wait,
    }
}

fn delivered(harness: &mut Harness<QueueMachine>, session: u64) -> Delivery {
    match harness.output(session, poll(false)) {
        Ok(QueueResponse::Delivered(delivery)) => delivery,
        other => panic!("{other:?}"),
    }
}

fn size(harness: &Harness<QueueMachine>) -> (u64, u64) {
    match harness.query(1, QueueQuery::Size { name: "q".into() }) {
        Ok(QueueResponse::Size { ready, in_flight }) => (ready, in_flight),
        other => panic!("{other:?}"),
    }
}

#[test]
fn items_come_out_in_offer_order_and_ack_removes_them() {
    let mut harness = queues();
    for data in ["a", "b", "c"] {
        assert!(matches!(
            harness.output(1, offer(data)),
            Ok(QueueResponse::Offered { .. })
        ));
    }
    assert_eq!(
        harness.query(1, QueueQuery::Peek { name: "q".into() }),
        Ok(QueueResponse::Peeked(Some((1, b"a".to_vec()))))
    );
    let first = delivered(&mut harness, 2);
    assert_eq!(
        (first.id, first.delivery, first.data.as_slice()),
        (1, 1, &b"a"[..])
    );
    assert_eq!(delivered(&mut harness, 3).data, b"b");
    assert_eq!(size(&harness), (1, 2));
    let ack = |delivery: &Delivery| QueueCommand::Ack {
        name: "q".into(),
        id: delivery.id,
        delivery: delivery.delivery,
    };
    assert_eq!(harness.output(2, ack(&first)), Ok(QueueResponse::Done));
    assert_eq!(
        harness.output(2, ack(&first)),
        Err(QueueError::UnknownDelivery { id: 1, delivery: 1 })
    );
    assert_eq!(size(&harness), (1, 1));
}

#[test]
fn unacknowledged_items_come_back_after_the_timeout_in_their_order() {
    let mut harness = queues();
    harness.output(1, offer("a")).unwrap();
    harness.output(1, offer("b")).unwrap();
    let first = delivered(&mut harness, 2);
    assert!(harness.advance(999).is_empty());
    assert_eq!(size(&harness), (1, 1));
    harness.advance(1);
    assert_eq!(size(&harness), (2, 0));
    let again = delivered(&mut harness, 3);
    assert_eq!(
        (again.id, again.delivery),
        (first.id, 2),
        "redelivered first, counted"
    );
    let late_ack = QueueCommand::Ack {
        name: "q".into(),
        id: first.id,
        delivery: first.delivery,
    };
    assert_eq!(
        harness.output(2, late_ack),
        Err(QueueError::UnknownDelivery {
            id: first.id,
            delivery: 1
        }),
        "a stale receipt cannot ack a newer delivery"
    );
}

#[test]
fn nack_returns_the_item_at_once() {
    let mut harness = queues();
    harness.output(1, offer("a")).unwrap();
    let first = delivered(&mut harness, 2);
    let nack = QueueCommand::Nack {
        name: "q".into(),
        id: first.id,
        delivery: first.delivery,
    };
    assert_eq!(harness.output(2, nack), Ok(QueueResponse::Done));
    assert_eq!(delivered(&mut harness, 2).delivery, 2);
}

#[test]
fn waiting_consumers_are_woken_by_events() {
    let mut harness = queues();
    assert_eq!(harness.output(2, poll(false)), Ok(QueueResponse::Empty));
    assert_eq!(harness.output(2, poll(true)), Ok(QueueResponse::Waiting));
    assert_eq!(harness.output(3, poll(true)), Ok(QueueResponse::Waiting));
    let (_, events) = harness.run(1, offer("x"));
    let available = QueueEvent::ItemAvailable { name: "q".into() };
    assert_eq!(events, vec![(2, available.clone()), (3, available.clone())]);
    let (_, events) = harness.run(1, offer("y"));
    assert!(
        events.is_empty(),
        "woken consumers are forgotten until they wait again"
    );
    // A redelivery after a timeout wakes waiters too.
    let taken = [delivered(&mut harness, 2), delivered(&mut harness, 3)];
    assert_eq!(taken[1].data, b"y");
    harness.output(4, poll(true)).unwrap();
    assert_eq!(harness.advance(1_000), vec![(4, available)]);
}

#[test]
fn a_closed_consumer_gives_its_items_back() {
    let mut harness = queues();
    harness.output(1, offer("a")).unwrap();
    delivered(&mut harness, 2);
    harness.output(3, poll(true)).unwrap();
    let events = harness.close(2);
    assert_eq!(
        events,
        vec![(3, QueueEvent::ItemAvailable { name: "q".into() })]
    );
    assert_eq!(size(&harness), (1, 0));
    assert!(harness.advance(5_000).is_empty(), "its deadline is gone");
}

#[test]
fn a_full_queue_refuses_offers_clearly() {
    let mut harness = Harness::new(QueueMachine::new(QueueConfig {
        items_per_queue_max: 2,
        ..QueueConfig::default()
    }));
    harness.output(1, offer("a")).unwrap();
    harness.output(1, offer("b")).unwrap();
    assert_eq!(
        harness.output(1, offer("c")),
        Err(QueueError::QueueFull { items_max: 2 })
    );
    delivered(&mut harness, 2);
    assert_eq!(
        harness.output(1, offer("c")),
        Err(QueueError::QueueFull { items_max: 2 }),
        "in-flight items count"
    );
    let zero = QueueCommand::Poll {
        name: "q".into(),
        visibility_timeout_ms: 0,
        wait: false,
    };
    assert!(matches!(
        harness.output(2, zero),
        Err(QueueError::InvalidArgument { .. })
    ));
    assert!(
        QueueConfig {
            queues_max: 0,
            ..QueueConfig::default()
        }
        .validate()
        .is_err()
    );
}
