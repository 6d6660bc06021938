//! One test per rule of the lock machine.

mod common;

use common::Harness;
use conclave_statemachines::lock::*;

fn locks() -> Harness<LockMachine> {
    Harness::new(LockMachine::default())
}

fn lock(name: &str, wait_ms: Option<u64>) -> LockCommand {
    LockCommand::Lock {
        name: name.into(),
        reentrant: false,
        wait_ms,
    }
}

fn unlock(name: &str) -> LockCommand {
    LockCommand::Unlock { name: name.into() }
}

fn acquired(name: &str, token: u64) -> LockEvent {
    LockEvent::Acquired {
        name: name.into(),
        token,
    }
}

#[test]
fn a_free_lock_is_granted_with_the_index_as_token() {
    let mut harness = locks();
    let output = harness.output(1, lock("a", None));
    assert_eq!(
        output,
        Ok(LockResponse::Acquired {
            token: harness.index
        })
    );
    assert_eq!(
        harness.output(1, lock("a", None)),
        Err(LockError::AlreadyHeld)
    );
    assert_eq!(harness.output(2, unlock("a")), Err(LockError::NotHeld));
}

#[test]
fn waiters_are_granted_in_fifo_order_with_increasing_tokens() {
    let mut harness = locks();
    let Ok(LockResponse::Acquired { token: first }) = harness.output(1, lock("a", None)) else {
        panic!()
    };
    assert_eq!(
        harness.output(2, lock("a", None)),
        Ok(LockResponse::Queued { position: 0 })
    );
    assert_eq!(
        harness.output(3, lock("a", None)),
        Ok(LockResponse::Queued { position: 1 })
    );
    assert_eq!(
        harness.output(2, lock("a", None)),
        Err(LockError::AlreadyWaiting)
    );
    let (output, events) = harness.run(1, unlock("a"));
    assert_eq!(output, Ok(LockResponse::Released));
    let second = harness.index;
    assert!(second > first);
    assert_eq!(events, vec![(2, acquired("a", second))]);
    let (_, events) = harness.run(2, unlock("a"));
    assert_eq!(events, vec![(3, acquired("a", harness.index))]);
    harness.output(3, unlock("a")).unwrap();
    assert_eq!(
        harness.query(1, LockQuery::Describe { name: "a".into() }),
        Ok(LockResponse::Description {
            kind: None,
            holders: vec![],
            waiters: vec![]
        })
    );
}

#[test]
fn try_lock_and_timeouts_run_on_log_time() {
    let mut harness = locks();
    harness.output(1, lock("a", None)).unwrap();
    assert_eq!(
        harness.output(2, lock("a", Some(0))),
        Ok(LockResponse::NotAcquired)
    );
    assert_eq!(
        harness.output(2, lock("a", Some(500))),
        Ok(LockResponse::Queued { position: 0 })
    );
    harness.output(3, lock("a", Some(2_000))).unwrap();
    assert!(harness.advance(499).is_empty());
    assert_eq!(
        harness.advance(1),
        vec![(2, LockEvent::TimedOut { name: "a".into() })]
    );
    let (_, events) = harness.run(1, unlock("a"));
    assert_eq!(
        events,
        vec![(3, acquired("a", harness.index))],
        "the timed-out waiter is gone"
    );
    assert!(
        harness.advance(5_000).is_empty(),
        "a granted request has no deadline left"
    );
    let big = harness.output(4, lock("b", Some(u64::MAX)));
    assert!(matches!(big, Err(LockError::InvalidArgument { .. })));
}

#[test]
fn reentrant_locks_count_their_levels() {
    let mut harness = locks();
    let reentrant = LockCommand::Lock {
        name: "r".into(),
        reentrant: true,
        wait_ms: None,
    };
    let Ok(LockResponse::Acquired { token }) = harness.output(1, reentrant.clone()) else {
        panic!()
    };
    assert_eq!(
        harness.output(1, reentrant),
        Ok(LockResponse::Acquired { token })
    );
    harness.output(2, lock("r", None)).unwrap();
    let (_, events) = harness.run(1, unlock("r"));
    assert!(events.is_empty(), "one level is still held");
    let (_, events) = harness.run(1, unlock("r"));
    assert_eq!(events, vec![(2, acquired("r", harness.index))]);
}

#[test]
fn a_closed_session_releases_to_the_next_waiter() {
    let mut harness = locks();
    harness.output(1, lock("a", None)).unwrap();
    harness.output(2, lock("a", None)).unwrap();
    harness.output(3, lock("a", Some(10_000))).unwrap();
    let events = harness.close(2);
    assert!(events.is_empty(), "a waiter leaves the queue silently");
    let events = harness.close(1);
    assert_eq!(events, vec![(3, acquired("a", harness.index))]);
    assert!(harness.advance(20_000).is_empty());
}

#[test]
fn one_entry_that_grants_twice_still_gives_increasing_tokens() {
    let mut harness = locks();
    harness.output(1, lock("a", None)).unwrap();
    harness.output(2, lock("a", None)).unwrap();
    harness.output(3, lock("a", None)).unwrap();
    let events = harness.close(1);
    let index = harness.index;
    assert_eq!(events, vec![(2, acquired("a", index))]);
    // The next release at the same index (as an expiry hook then a command would).
    harness.index -= 1;
    let (_, events) = harness.run(2, unlock("a"));
    assert_eq!(events, vec![(3, acquired("a", index + 1))]);
}

#[test]
fn read_write_locks_share_reads_and_queue_writers_fairly() {
    let mut harness = locks();
    let read = |wait_ms| LockCommand::ReadLock {
        name: "rw".into(),
        wait_ms,
    };
    let write = LockCommand::WriteLock {
        name: "rw".into(),
        wait_ms: None,
    };
    let done = LockCommand::ReadWriteUnlock { name: "rw".into() };
    assert!(matches!(
        harness.output(1, read(None)),
        Ok(LockResponse::Acquired { .. })
    ));
    assert!(matches!(
        harness.output(2, read(None)),
        Ok(LockResponse::Acquired { .. })
    ));
    assert_eq!(
        harness.output(3, write.clone()),
        Ok(LockResponse::Queued { position: 0 })
    );
    assert_eq!(
        harness.output(4, read(Some(0))),
        Ok(LockResponse::NotAcquired),
        "no barging past a writer"
    );
    harness.output(5, read(None)).unwrap();
    assert!(harness.run(1, done.clone()).1.is_empty());
    let (_, events) = harness.run(2, done.clone());
    assert_eq!(events, vec![(3, acquired("rw", harness.index))]);
    let (_, events) = harness.run(3, done);
    assert_eq!(events, vec![(5, acquired("rw", harness.index))]);
    assert_eq!(
        harness.output(1, lock("rw", None)),
        Err(LockError::KindMismatch {
            existing: LockKind::ReadWrite
        })
    );
}

#[test]
fn semaphores_count_permits_in_fifo_order() {
    let mut harness = locks();
    let acquire = |permits, wait_ms| LockCommand::Acquire {
        name: "s".into(),
        permits,
        capacity: 3,
        wait_ms,
    };
    let release = |permits| LockCommand::Release {
        name: "s".into(),
        permits,
    };
    harness.output(1, acquire(2, None)).unwrap();
    assert_eq!(
        harness.output(2, acquire(2, None)),
        Ok(LockResponse::Queued { position: 0 })
    );
    assert_eq!(
        harness.output(3, acquire(1, Some(0))),
        Ok(LockResponse::NotAcquired),
        "FIFO: no barging"
    );
    assert!(matches!(
        harness.output(4, acquire(4, None)),
        Err(LockError::InvalidArgument { .. })
    ));
    assert_eq!(harness.output(1, release(3)), Err(LockError::NotHeld));
    let (_, events) = harness.run(1, release(1));
    assert_eq!(events, vec![(2, acquired("s", harness.index))]);
    let other_capacity = LockCommand::Acquire {
        name: "s".into(),
        permits: 1,
        capacity: 5,
        wait_ms: None,
    };
    assert!(matches!(
        harness.output(5, other_capacity),
        Err(LockError::KindMismatch { .. })
    ));
    let (output, _) = harness.run(2, LockCommand::Cancel { name: "s".into() });
    assert_eq!(
        output,
        Err(LockError::NotHeld),
        "a holder has nothing to cancel"
    );
}

#[test]
fn bounds_are_enforced() {
    let mut harness = Harness::new(LockMachine::new(LockConfig {
        locks_max: 1,
        waiters_per_lock_max: 1,
        ..LockConfig::default()
    }));
    harness.output(1, lock("a", None)).unwrap();
    assert_eq!(
        harness.output(1, lock("b", None)),
        Err(LockError::TooManyLocks)
    );
    harness.output(2, lock("a", None)).unwrap();
    assert_eq!(
        harness.output(3, lock("a", None)),
        Err(LockError::TooManyWaiters)
    );
    assert!(
        LockConfig {
            locks_max: 0,
            ..LockConfig::default()
        }
        .validate()
        .is_err()
    );
}
