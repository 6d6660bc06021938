//! One test per rule of the election machine.

mod common;

use common::Harness;
use conclave_statemachines::election::*;

fn elections() -> Harness<ElectionMachine> {
    Harness::new(ElectionMachine::default())
}

fn campaign(value: &str) -> ElectionCommand {
    ElectionCommand::Campaign {
        name: "e".into(),
        value: value.into(),
    }
}

fn leader(harness: &Harness<ElectionMachine>) -> Option<Leadership> {
    match harness.query(1, ElectionQuery::Leader { name: "e".into() }) {
        Ok(ElectionResponse::Leader(leader)) => leader,
        other => panic!("{other:?}"),
    }
}

fn changed(leader: Option<Leadership>) -> ElectionEvent {
    ElectionEvent::LeaderChanged {
        name: "e".into(),
        leader,
    }
}

#[test]
fn the_first_candidate_leads_and_the_rest_queue_in_order() {
    let mut harness = elections();
    let output = harness.output(1, campaign("one"));
    let epoch = harness.index;
    assert_eq!(output, Ok(ElectionResponse::Elected { epoch }));
    assert_eq!(
        harness.output(2, campaign("two")),
        Ok(ElectionResponse::Candidate { position: 0 })
    );
    assert_eq!(
        harness.output(3, campaign("three")),
        Ok(ElectionResponse::Candidate { position: 1 })
    );
    assert_eq!(
        harness.output(2, campaign("again")),
        Err(ElectionError::AlreadyCampaigning)
    );
    assert_eq!(
        harness.output(1, campaign("again")),
        Err(ElectionError::AlreadyCampaigning)
    );
    assert_eq!(
        leader(&harness),
        Some(Leadership {
            session: 1,
            value: b"one".to_vec(),
            epoch
        })
    );
    assert_eq!(
        harness.query(1, ElectionQuery::Candidates { name: "e".into() }),
        Ok(ElectionResponse::Candidates(vec![2, 3]))
    );
}

#[test]
fn resign_hands_over_with_a_new_epoch_and_events() {
    let mut harness = elections();
    harness.output(1, campaign("one")).unwrap();
    let first_epoch = harness.index;
    harness.output(2, campaign("two")).unwrap();
    harness
        .output(4, ElectionCommand::Observe { name: "e".into() })
        .unwrap();
    let (output, events) = harness.run(1, ElectionCommand::Resign { name: "e".into() });
    assert_eq!(output, Ok(ElectionResponse::Done));
    let epoch = harness.index;
    assert!(epoch > first_epoch);
    let new_leader = Leadership {
        session: 2,
        value: b"two".to_vec(),
        epoch,
    };
    assert_eq!(
        events,
        vec![
            (
                2,
                ElectionEvent::Elected {
                    name: "e".into(),
                    epoch
                }
            ),
            (4, changed(Some(new_leader.clone()))),
        ]
    );
    assert_eq!(
        harness.output(1, ElectionCommand::Resign { name: "e".into() }),
        Err(ElectionError::NotInElection)
    );
    let (_, events) = harness.run(2, ElectionCommand::Resign { name: "e".into() });
    assert_eq!(events, vec![(4, changed(None))]);
    assert_eq!(leader(&harness), None);
}

#[test]
fn only_the_leader_of_the_epoch_may_proclaim() {
    let mut harness = elections();
    let Ok(ElectionResponse::Elected { epoch }) = harness.output(1, campaign("v1")) else {
        panic!()
    };
    harness
        .output(3, ElectionCommand::Observe { name: "e".into() })
        .unwrap();
    let proclaim = |epoch, value: &str| ElectionCommand::Proclaim {
        name: "e".into(),
        epoch,
        value: value.into(),
    };
    assert_eq!(
        harness.output(2, proclaim(epoch, "x")),
        Err(ElectionError::NotLeader)
    );
    assert_eq!(
        harness.output(1, proclaim(epoch + 1, "x")),
        Err(ElectionError::NotLeader)
    );
    let (output, events) = harness.run(1, proclaim(epoch, "v2"));
    assert_eq!(output, Ok(ElectionResponse::Done));
    let expected = Leadership {
        session: 1,
        value: b"v2".to_vec(),
        epoch,
    };
    assert_eq!(events, vec![(3, changed(Some(expected.clone())))]);
    assert_eq!(leader(&harness), Some(expected));
}

#[test]
fn an_expired_leader_is_replaced_with_events() {
    let mut harness = elections();
    harness.output(1, campaign("one")).unwrap();
    harness.output(2, campaign("two")).unwrap();
    harness.output(3, campaign("three")).unwrap();
    harness
        .output(5, ElectionCommand::Observe { name: "e".into() })
        .unwrap();
    assert!(
        harness.close(2).is_empty(),
        "a queued candidate leaves silently"
    );
    let events = harness.close(1);
    let epoch = harness.index;
    assert_eq!(
        events,
        vec![
            (
                3,
                ElectionEvent::Elected {
                    name: "e".into(),
                    epoch
                }
            ),
            (
                5,
                changed(Some(Leadership {
                    session: 3,
                    value: b"three".to_vec(),
                    epoch
                }))
            ),
        ]
    );
    assert_eq!(harness.close(3), vec![(5, changed(None))]);
    harness.close(5);
    assert_eq!(
        harness.query(1, ElectionQuery::Candidates { name: "e".into() }),
        Ok(ElectionResponse::Candidates(vec![])),
    );
}

#[test]
fn observe_answers_the_current_leader_and_bounds_hold() {
    let mut harness = Harness::new(ElectionMachine::new(ElectionConfig {
        elections_max: 1,
        candidates_per_election_max: 1,
        ..ElectionConfig::default()
    }));
    assert_eq!(
        harness.output(4, ElectionCommand::Observe { name: "e".into() }),
        Ok(ElectionResponse::Leader(None))
    );
    harness.output(1, campaign("one")).unwrap();
    harness.output(2, campaign("two")).unwrap();
    assert_eq!(
        harness.output(3, campaign("three")),
        Err(ElectionError::TooManyCandidates)
    );
    let other = ElectionCommand::Campaign {
        name: "f".into(),
        value: vec![],
    };
    assert_eq!(
        harness.output(3, other),
        Err(ElectionError::TooManyElections)
    );
    assert_eq!(
        harness.output(4, ElectionCommand::Unobserve { name: "e".into() }),
        Ok(ElectionResponse::Done)
    );
    assert!(
        ElectionConfig {
            value_bytes_max: 0,
            ..ElectionConfig::default()
        }
        .validate()
        .is_err()
    );
}
