//! Proptest model tests of the lock, election and queue machines: random commands from a
//! few sessions, session closes and log-time jumps, checked step by step against small
//! models and against the properties the issue names — locks: never two holders, FIFO
//! order, increasing tokens; elections: one leader per epoch, FIFO succession; queues:
//! nothing lost, redelivery after the timeout.
//!
//! More cases: `PROPTEST_CASES=2000 cargo test -p conclave-statemachines --test primitives_model`.

mod common;

use std::collections::{BTreeMap, VecDeque};

use common::Harness;
use conclave_statemachines::election::*;
use conclave_statemachines::lock::*;
use conclave_statemachines::queue::*;
use proptest::prelude::*;

/// Maps session slots to live session ids; a closed slot reopens as a new session.
struct Slots {
    ids: [u64; 4],
    next: u64,
}

impl Slots {
    fn new() -> Self {
        Slots {
            ids: [1, 2, 3, 4],
            next: 20,
        }
    }

    fn reopen<M: conclave_statemachines::StateMachine>(
        &mut self,
        slot: usize,
        harness: &mut Harness<M>,
    ) -> (u64, Vec<(u64, M::Event)>) {
        let old = self.ids[slot];
        let events = harness.close(old);
        self.ids[slot] = self.next;
        harness.sessions.insert(self.next, ());
        self.next += 1;
        (old, events)
    }
}

#[derive(Debug, Clone)]
enum LockAction {
    Lock {
        name: usize,
        slot: usize,
        wait_ms: Option<u64>,
    },
    Unlock {
        name: usize,
        slot: usize,
    },
    Cancel {
        name: usize,
        slot: usize,
    },
    Close {
        slot: usize,
    },
    Advance {
        ms: u64,
    },
}

fn lock_action() -> impl Strategy<Value = LockAction> {
    let wait = prop_oneof![Just(None), Just(Some(0)), (100u64..500).prop_map(Some)];
    prop_oneof![
        4 => (0usize..2, 0usize..4, wait).prop_map(|(name, slot, wait_ms)| LockAction::Lock { name, slot, wait_ms }),
        3 => (0usize..2, 0usize..4).prop_map(|(name, slot)| LockAction::Unlock { name, slot }),
        1 => (0usize..2, 0usize..4).prop_map(|(name, slot)| LockAction::Cancel { name, slot }),
        1 => (0usize..4).prop_map(|slot| LockAction::Close { slot }),
        2 => (0u64..300).prop_map(|ms| LockAction::Advance { ms }),
    ]
}

#[derive(Debug, Clone, Default)]
struct ModelLock {
    holder: Option<u64>,
    waiters: VecDeque<(u64, Option<u64>)>,
}

/// Grants the head waiter of a free lock; returns who got it.
fn model_grant(lock: &mut ModelLock) -> Option<u64> {
    if lock.holder.is_none()
        && let Some((session, _)) = lock.waiters.pop_front()
    {
        lock.holder = Some(session);
        return Some(session);
    }
    None
}

fn lock_events(
    events: &[(u64, LockEvent)],
    tokens: &mut BTreeMap<String, u64>,
) -> Result<Vec<(u64, String, bool)>, TestCaseError> {
    let mut seen = Vec::new();
    for (session, event) in events {
        match event {
            LockEvent::Acquired { name, token } => {
                let last = tokens.insert(name.clone(), *token).unwrap_or(0);
                prop_assert!(*token > last, "token {} after {} on {}", token, last, name);
                seen.push((*session, name.clone(), true));
            }
            LockEvent::TimedOut { name } => seen.push((*session, name.clone(), false)),
        }
    }
    seen.sort();
    Ok(seen)
}

proptest! {

    #[test]
    fn locks_grant_fifo_to_one_holder_with_increasing_tokens(actions in proptest::collection::vec(lock_action(), 1..80)) {
        let names = ["a", "b"];
        let mut harness = Harness::new(LockMachine::default());
        let mut slots = Slots::new();
        let mut model: BTreeMap<&str, ModelLock> = names.iter().map(|name| (*name, ModelLock::default())).collect();
        let mut tokens: BTreeMap<String, u64> = BTreeMap::new();
        for action in &actions {
            let mut expected_events: Vec<(u64, String, bool)> = Vec::new();
            let events = match action {
                LockAction::Lock { name, slot, wait_ms } => {
                    let session = slots.ids[*slot];
                    let lock = model.get_mut(names[*name]).unwrap();
                    let expected = if lock.holder == Some(session) {
                        Err(LockError::AlreadyHeld)
                    } else if lock.waiters.iter().any(|(waiter, _)| *waiter == session) {
                        Err(LockError::AlreadyWaiting)
                    } else if lock.holder.is_none() && lock.waiters.is_empty() {
                        lock.holder = Some(session);
                        Ok(None)
                    } else if *wait_ms == Some(0) {
                        Ok(Some(LockResponse::NotAcquired))
                    } else {
                        lock.waiters.push_back((session, wait_ms.map(|wait| harness.time_ms + wait)));
                        Ok(Some(LockResponse::Queued { position: lock.waiters.len() as u64 - 1 }))
                    };
                    let command = LockCommand::Lock { name: names[*name].into(), reentrant: false, wait_ms: *wait_ms };
                    let (output, events) = harness.run(session, command);
                    match (output, expected) {
                        (Ok(LockResponse::Acquired { token }), Ok(None)) => {
                            let last = tokens.insert(names[*name].to_string(), token).unwrap_or(0);
                            prop_assert!(token > last);
                        }
                        (output, expected) => prop_assert_eq!(output, expected.map(Option::unwrap)),
                    }
                    events
                }
                LockAction::Unlock { name, slot } => {
                    let session = slots.ids[*slot];
                    let lock = model.get_mut(names[*name]).unwrap();
                    let expected = if lock.holder == Some(session) {
                        lock.holder = None;
                        if let Some(next) = model_grant(lock) {
                            expected_events.push((next, names[*name].to_string(), true));
                        }
                        Ok(LockResponse::Released)
                    } else {
                        Err(LockError::NotHeld)
                    };
                    let (output, events) = harness.run(session, LockCommand::Unlock { name: names[*name].into() });
                    prop_assert_eq!(output, expected);
                    events
                }
                LockAction::Cancel { name, slot } => {
                    let session = slots.ids[*slot];
                    let lock = model.get_mut(names[*name]).unwrap();
                    let before = lock.waiters.len();
                    lock.waiters.retain(|(waiter, _)| *waiter != session);
                    let expected = if lock.waiters.len() < before { Ok(LockResponse::Released) } else { Err(LockError::NotHeld) };
                    let (output, events) = harness.run(session, LockCommand::Cancel { name: names[*name].into() });
                    prop_assert_eq!(output, expected);
                    events
                }
                LockAction::Close { slot } => {
                    let old = slots.ids[*slot];
                    for (name, lock) in model.iter_mut() {
                        lock.waiters.retain(|(waiter, _)| *waiter != old);
                        if lock.holder == Some(old) {
                            lock.holder = None;
                            if let Some(next) = model_grant(lock) {
                                expected_events.push((next, name.to_string(), true));
                            }
                        }
                    }
                    slots.reopen(*slot, &mut harness).1
                }
                LockAction::Advance { ms } => {
                    let now = harness.time_ms + ms;
                    for (name, lock) in model.iter_mut() {
                        let timed_out: Vec<u64> = lock.waiters.iter()
                            .filter(|(_, deadline)| deadline.is_some_and(|deadline| deadline <= now))
                            .map(|(session, _)| *session).collect();
                        lock.waiters.retain(|(_, deadline)| !deadline.is_some_and(|deadline| deadline <= now));
                        expected_events.extend(timed_out.into_iter().map(|session| (session, name.to_string(), false)));
                    }
                    harness.advance(*ms)
                }
            };
            expected_events.sort();
            prop_assert_eq!(lock_events(&events, &mut tokens)?, expected_events);
            for name in names {
                let Ok(LockResponse::Description { holders, waiters, .. }) =
                    harness.query(1, LockQuery::Describe { name: name.into() }) else { panic!() };
                prop_assert!(holders.len() <= 1, "never two holders");
                let lock = &model[name];
                prop_assert_eq!(holders.first().map(|(session, _)| *session), lock.holder);
                let expected_waiters: Vec<u64> = lock.waiters.iter().map(|(session, _)| *session).collect();
                prop_assert_eq!(waiters, expected_waiters, "FIFO order");
            }
        }
    }
}

#[derive(Debug, Clone)]
enum ElectionAction {
    Campaign { slot: usize },
    Resign { slot: usize },
    Close { slot: usize },
}

fn election_action() -> impl Strategy<Value = ElectionAction> {
    prop_oneof![
        4 => (0usize..4).prop_map(|slot| ElectionAction::Campaign { slot }),
        2 => (0usize..4).prop_map(|slot| ElectionAction::Resign { slot }),
        1 => (0usize..4).prop_map(|slot| ElectionAction::Close { slot }),
    ]
}

proptest! {

    #[test]
    fn elections_have_one_leader_per_epoch_and_fifo_succession(actions in proptest::collection::vec(election_action(), 1..80)) {
        let mut harness = Harness::new(ElectionMachine::default());
        let mut slots = Slots::new();
        let mut leader: Option<u64> = None;
        let mut queue: VecDeque<u64> = VecDeque::new();
        let mut epochs: BTreeMap<u64, u64> = BTreeMap::new();
        let record = |epoch: u64, session: u64, epochs: &mut BTreeMap<u64, u64>| -> Result<(), TestCaseError> {
            let last = epochs.keys().next_back().copied().unwrap_or(0);
            prop_assert!(epoch > last, "epochs increase");
            prop_assert!(epochs.insert(epoch, session).is_none(), "one leader per epoch");
            Ok(())
        };
        for action in &actions {
            let (events, expected_new_leader) = match action {
                ElectionAction::Campaign { slot } => {
                    let session = slots.ids[*slot];
                    let command = ElectionCommand::Campaign { name: "e".into(), value: vec![*slot as u8] };
                    let (output, events) = harness.run(session, command);
                    if leader == Some(session) || queue.contains(&session) {
                        prop_assert_eq!(output, Err(ElectionError::AlreadyCampaigning));
                    } else if leader.is_none() {
                        let Ok(ElectionResponse::Elected { epoch }) = output else { panic!("{output:?}") };
                        record(epoch, session, &mut epochs)?;
                        leader = Some(session);
                    } else {
                        prop_assert_eq!(output, Ok(ElectionResponse::Candidate { position: queue.len() as u64 }));
                        queue.push_back(session);
                    }
                    (events, None)
                }
                ElectionAction::Resign { slot } => {
                    let session = slots.ids[*slot];
                    let (output, events) = harness.run(session, ElectionCommand::Resign { name: "e".into() });
                    if leader == Some(session) {
                        leader = queue.pop_front();
                        prop_assert_eq!(output, Ok(ElectionResponse::Done));
                        (events, leader)
                    } else if queue.contains(&session) {
                        queue.retain(|candidate| *candidate != session);
                        prop_assert_eq!(output, Ok(ElectionResponse::Done));
                        (events, None)
                    } else {
                        prop_assert_eq!(output, Err(ElectionError::NotInElection));
                        (events, None)
                    }
                }
                ElectionAction::Close { slot } => {
                    let old = slots.ids[*slot];
                    queue.retain(|candidate| *candidate != old);
                    let successor = if leader == Some(old) {
                        leader = queue.pop_front();
                        leader
                    } else {
                        None
                    };
                    (slots.reopen(*slot, &mut harness).1, successor)
                }
            };
            let elected: Vec<(u64, u64)> = events.iter().filter_map(|(session, event)| match event {
                ElectionEvent::Elected { epoch, .. } => Some((*session, *epoch)),
                _ => None,
            }).collect();
            prop_assert_eq!(elected.iter().map(|(session, _)| *session).collect::<Vec<_>>(), expected_new_leader.into_iter().collect::<Vec<_>>());
            for (session, epoch) in elected {
                record(epoch, session, &mut epochs)?;
            }
            let Ok(ElectionResponse::Leader(current)) = harness.query(1, ElectionQuery::Leader { name: "e".into() }) else { panic!() };
            prop_assert_eq!(current.as_ref().map(|leadership| leadership.session), leader);
            if let Some(current) = current {
                prop_assert_eq!(epochs.get(&current.epoch), Some(&current.session), "the leader holds the epoch it was given");
            }
            let Ok(ElectionResponse::Candidates(candidates)) = harness.query(1, ElectionQuery::Candidates { name: "e".into() }) else { panic!() };
            prop_assert_eq!(candidates, queue.iter().copied().collect::<Vec<_>>());
        }
    }
}

#[derive(Debug, Clone)]
enum QueueAction {
    Offer,
    Poll {
        slot: usize,
        timeout_ms: u64,
    },
    Ack {
        slot: usize,
        receipt: usize,
        acknowledge: bool,
    },
    Advance {
        ms: u64,
    },
    Close {
        slot: usize,
    },
}

fn queue_action() -> impl Strategy<Value = QueueAction> {
    prop_oneof![
        3 => Just(QueueAction::Offer),
        3 => (0usize..4, 50u64..300).prop_map(|(slot, timeout_ms)| QueueAction::Poll { slot, timeout_ms }),
        3 => (0usize..4, 0usize..6, any::<bool>()).prop_map(|(slot, receipt, acknowledge)| QueueAction::Ack { slot, receipt, acknowledge }),
        2 => (0u64..200).prop_map(|ms| QueueAction::Advance { ms }),
        1 => (0usize..4).prop_map(|slot| QueueAction::Close { slot }),
    ]
}

#[derive(Debug, Clone)]
struct ModelItem {
    deliveries: u32,
    consumer: u64,
    deadline_ms: u64,
}

proptest! {

    #[test]
    fn queues_lose_nothing_and_redeliver_after_the_timeout(actions in proptest::collection::vec(queue_action(), 1..80)) {
        let mut harness = Harness::new(QueueMachine::default());
        let mut slots = Slots::new();
        let mut ready: BTreeMap<u64, u32> = BTreeMap::new();
        let mut in_flight: BTreeMap<u64, ModelItem> = BTreeMap::new();
        let mut receipts: [Vec<(u64, u32)>; 4] = Default::default();
        let mut offered = 0u64;
        let mut acked = 0u64;
        for action in &actions {
            match action {
                QueueAction::Offer => {
                    let output = harness.output(1, QueueCommand::Offer { name: "q".into(), data: offered.to_le_bytes().to_vec() });
                    offered += 1;
                    prop_assert_eq!(output, Ok(QueueResponse::Offered { id: offered }));
                    ready.insert(offered, 0);
                }
                QueueAction::Poll { slot, timeout_ms } => {
                    let session = slots.ids[*slot];
                    let command = QueueCommand::Poll { name: "q".into(), visibility_timeout_ms: *timeout_ms, wait: false };
                    let output = harness.output(session, command);
                    match ready.pop_first() {
                        Some((id, deliveries)) => {
                            let expected = Delivery { id, delivery: deliveries + 1, data: (id - 1).to_le_bytes().to_vec() };
                            prop_assert_eq!(output, Ok(QueueResponse::Delivered(expected)));
                            in_flight.insert(id, ModelItem { deliveries: deliveries + 1, consumer: session, deadline_ms: harness.time_ms + timeout_ms });
                            receipts[*slot].push((id, deliveries + 1));
                        }
                        None => prop_assert_eq!(output, Ok(QueueResponse::Empty)),
                    }
                }
                QueueAction::Ack { slot, receipt, acknowledge } => {
                    let Some(&(id, delivery)) = receipts[*slot].get(*receipt % receipts[*slot].len().max(1)) else { continue };
                    let command = if *acknowledge {
                        QueueCommand::Ack { name: "q".into(), id, delivery }
                    } else {
                        QueueCommand::Nack { name: "q".into(), id, delivery }
                    };
                    let output = harness.output(slots.ids[*slot], command);
                    if in_flight.get(&id).is_some_and(|item| item.deliveries == delivery) {
                        prop_assert_eq!(output, Ok(QueueResponse::Done));
                        let item = in_flight.remove(&id).unwrap();
                        if *acknowledge {
                            acked += 1;
                        } else {
                            ready.insert(id, item.deliveries);
                        }
                    } else {
                        prop_assert_eq!(output, Err(QueueError::UnknownDelivery { id, delivery }));
                    }
                }
                QueueAction::Advance { ms } => {
                    harness.advance(*ms);
                    let now = harness.time_ms;
                    let due: Vec<u64> = in_flight.iter().filter(|(_, item)| item.deadline_ms <= now).map(|(id, _)| *id).collect();
                    for id in due {
                        let item = in_flight.remove(&id).unwrap();
                        ready.insert(id, item.deliveries);
                    }
                }
                QueueAction::Close { slot } => {
                    let (old, _) = slots.reopen(*slot, &mut harness);
                    receipts[*slot].clear();
                    let held: Vec<u64> = in_flight.iter().filter(|(_, item)| item.consumer == old).map(|(id, _)| *id).collect();
                    for id in held {
                        let item = in_flight.remove(&id).unwrap();
                        ready.insert(id, item.deliveries);
                    }
                }
            }
            let size = harness.query(1, QueueQuery::Size { name: "q".into() });
            prop_assert_eq!(size, Ok(QueueResponse::Size { ready: ready.len() as u64, in_flight: in_flight.len() as u64 }));
            prop_assert_eq!(acked + ready.len() as u64 + in_flight.len() as u64, offered, "nothing lost");
        }
    }
}
