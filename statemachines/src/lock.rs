//! The lock machine: named FIFO locks bound to sessions — mutexes (optionally reentrant),
//! read-write locks and counting semaphores.
//!
//! A request is granted at once when FIFO order and the lock's state allow it, otherwise it
//! waits (forever, or for `wait_ms` of log time; `wait_ms: Some(0)` is a try-lock). A grant
//! that happens later reaches the waiter as a [`LockEvent::Acquired`]. Every grant carries
//! a fencing token: the index of the entry that granted it. When one entry grants twice
//! (a release and a grant inside an expiry hook, then another in the command), the second
//! grant takes the next integer instead, so tokens are strictly increasing across the whole
//! machine and therefore per lock. A session that closes or expires loses what it held and
//! its place in every queue; the next waiters are granted with events.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::Error;
use crate::machine::{ApplyContext, QueryContext, SessionId, StateMachine};
use crate::session_index::{self, SessionIndex};

/// Bounds of the lock machine; checked by [`LockConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockConfig {
    /// Most locks held or waited on at once; a new name beyond is `TooManyLocks`.
    pub locks_max: usize,
    /// Most waiters on one lock; more is `TooManyWaiters`.
    pub waiters_per_lock_max: usize,
    /// Longest wait a request may ask for, in milliseconds of log time.
    pub wait_ms_max: u64,
    /// Largest semaphore capacity.
    pub permits_max: u64,
    /// Longest lock name, in bytes.
    pub name_bytes_max: usize,
}

impl Default for LockConfig {
    fn default() -> Self {
        LockConfig {
            locks_max: 100_000,
            waiters_per_lock_max: 10_000,
            wait_ms_max: 24 * 60 * 60 * 1_000,
            permits_max: 1 << 32,
            name_bytes_max: 1_024,
        }
    }
}

impl LockConfig {
    /// Refuses zero bounds.
    pub fn validate(&self) -> Result<(), Error> {
        let fields = [
            ("locks_max", self.locks_max as u64),
            ("waiters_per_lock_max", self.waiters_per_lock_max as u64),
            ("wait_ms_max", self.wait_ms_max),
            ("permits_max", self.permits_max),
            ("name_bytes_max", self.name_bytes_max as u64),
        ];
        for (field, value) in fields {
            if value == 0 {
                return Err(Error::Config {
                    field,
                    reason: "must be at least 1".to_string(),
                });
            }
        }
        Ok(())
    }
}

/// What kind of lock a name denotes; fixed by the first request that creates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockKind {
    /// One holder at a time.
    Mutex,
    /// Many readers or one writer.
    ReadWrite,
    /// At most `capacity` permits held in total.
    Semaphore {
        /// The number of permits.
        capacity: u64,
    },
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Claim {
    /// The mutex; `reentrant` lets the holder lock again (counted).
    Exclusive {
        /// Whether the holder may lock again.
        reentrant: bool,
    },
    /// A read lock.
    Read,
    /// A write lock.
    Write,
    /// Semaphore permits.
    Permits(u64),
}

/// Commands of the lock machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockCommand {
    /// Lock a mutex.
    Lock {
        /// The lock.
        name: String,
        /// Whether a holder may lock again.
        reentrant: bool,
        /// `None`: wait until granted; `Some(0)`: try-lock; `Some(ms)`: wait at most that.
        wait_ms: Option<u64>,
    },
    /// Unlock a mutex (one level of a reentrant hold).
    Unlock {
        /// The lock.
        name: String,
    },
    /// Take a read lock.
    ReadLock {
        /// The lock.
        name: String,
        /// As for `Lock`.
        wait_ms: Option<u64>,
    },
    /// Take the write lock.
    WriteLock {
        /// The lock.
        name: String,
        /// As for `Lock`.
        wait_ms: Option<u64>,
    },
    /// Release the caller's read or write lock.
    ReadWriteUnlock {
        /// The lock.
        name: String,
    },
    /// Acquire semaphore permits.
    Acquire {
        /// The semaphore.
        name: String,
        /// How many permits.
        permits: u64,
        /// The semaphore's capacity (must match an existing semaphore's).
        capacity: u64,
        /// As for `Lock`.
        wait_ms: Option<u64>,
    },
    /// Release semaphore permits.
    Release {
        /// The semaphore.
        name: String,
        /// How many permits.
        permits: u64,
    },
    /// Withdraw the caller's waiting request.
    Cancel {
        /// The lock.
        name: String,
    },
}

/// Queries of the lock machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockQuery {
    /// Holders and waiters of a lock.
    Describe {
        /// The lock.
        name: String,
    },
}

/// One holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The fencing token of the grant.
    pub token: u64,
    /// Reentrant depth for a mutex, permits for a semaphore, 1 otherwise.
    pub count: u64,
    /// Whether the hold is exclusive (mutex or write lock).
    pub exclusive: bool,
}

/// Successful outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockResponse {
    /// Granted now, with its fencing token.
    Acquired {
        /// The fencing token.
        token: u64,
    },
    /// Waiting; an `Acquired` or `TimedOut` event follows.
    Queued {
        /// Waiters ahead of this one.
        position: u64,
    },
    /// A try-lock that could not be granted at once.
    NotAcquired,
    /// Released (or one reentrant level dropped, or a request withdrawn).
    Released,
    /// A lock's state.
    Description {
        /// The kind, or `None` for a lock nobody holds or waits on.
        kind: Option<LockKind>,
        /// Holders in session order.
        holders: Vec<(SessionId, Hold)>,
        /// Waiting sessions in FIFO order.
        waiters: Vec<SessionId>,
    },
}

/// Refusals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum LockError {
    /// The command needs a session.
    #[error("no session")]
    NoSession,
    /// Unlock or release of something the session does not hold.
    #[error("not held by this session")]
    NotHeld,
    /// A non-reentrant lock of a mutex (or a second read/write lock) the session holds.
    #[error("already held by this session")]
    AlreadyHeld,
    /// The session already waits on this lock.
    #[error("this session already waits on the lock")]
    AlreadyWaiting,
    /// The name is a lock of another kind (or a semaphore of another capacity).
    #[error("the lock exists as {existing:?}")]
    KindMismatch {
        /// The existing kind.
        existing: LockKind,
    },
    /// `locks_max` reached.
    #[error("too many locks")]
    TooManyLocks,
    /// `waiters_per_lock_max` reached.
    #[error("too many waiters on the lock")]
    TooManyWaiters,
    /// Zero permits, more permits than the capacity, a capacity over `permits_max`, a wait
    /// over `wait_ms_max`, or a bad name.
    #[error("invalid argument: {reason}")]
    InvalidArgument {
        /// Which.
        reason: String,
    },
}

/// The output of every command and query.
pub type LockOutput = Result<LockResponse, LockError>;

/// Events published to waiting sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockEvent {
    /// A waiting request was granted.
    Acquired {
        /// The lock.
        name: String,
        /// The fencing token.
        token: u64,
    },
    /// A waiting request reached its deadline and was withdrawn.
    TimedOut {
        /// The lock.
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Waiter {
    session: SessionId,
    claim: Claim,
    deadline_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Lock {
    kind: LockKind,
    holders: BTreeMap<SessionId, Hold>,
    waiters: VecDeque<Waiter>,
}

impl Lock {
    fn is_idle(&self) -> bool {
        self.holders.is_empty() && self.waiters.is_empty()
    }

    fn permits_held(&self) -> u64 {
        self.holders.values().map(|hold| hold.count).sum()
    }

    /// Whether a claim can be granted now, ignoring the queue.
    fn fits(&self, claim: Claim) -> bool {
        match (self.kind, claim) {
            (LockKind::Mutex, Claim::Exclusive { .. }) | (LockKind::ReadWrite, Claim::Write) => {
                self.holders.is_empty()
            }
            (LockKind::ReadWrite, Claim::Read) => self.holders.values().all(|hold| !hold.exclusive),
            (LockKind::Semaphore { capacity }, Claim::Permits(permits)) => {
                self.permits_held() + permits <= capacity
            }
            _ => false,
        }
    }
}

/// The named locks, read-write locks and semaphores of one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockMachine {
    config: LockConfig,
    locks: BTreeMap<String, Lock>,
    /// Waiting requests with a deadline: (deadline, lock name, session).
    deadlines: BTreeSet<(u64, String, SessionId)>,
    /// The last fencing token handed out.
    token_last: u64,
    /// The locks each session holds or waits on, so a close touches only those.
    by_session: SessionIndex,
}

impl Default for LockMachine {
    fn default() -> Self {
        LockMachine::new(LockConfig::default())
    }
}

impl LockMachine {
    /// An empty machine with these bounds.
    pub fn new(config: LockConfig) -> Self {
        LockMachine {
            config,
            locks: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            token_last: 0,
            by_session: BTreeMap::new(),
        }
    }

    fn next_token(&mut self, index: u64) -> u64 {
        self.token_last = index.max(self.token_last + 1);
        self.token_last
    }

    fn acquire(
        &mut self,
        context: &mut ApplyContext<'_, LockEvent>,
        name: String,
        kind: LockKind,
        claim: Claim,
        wait_ms: Option<u64>,
    ) -> LockOutput {
        let session = context.session().ok_or(LockError::NoSession)?;
        let invalid = |reason: &str| LockError::InvalidArgument {
            reason: reason.to_string(),
        };
        if name.is_empty() || name.len() > self.config.name_bytes_max {
            return Err(invalid("name length"));
        }
        if wait_ms.is_some_and(|wait_ms| wait_ms > self.config.wait_ms_max) {
            return Err(invalid("wait_ms over wait_ms_max"));
        }
        if let (LockKind::Semaphore { capacity }, Claim::Permits(permits)) = (kind, claim)
            && (permits == 0 || permits > capacity || capacity > self.config.permits_max)
        {
            return Err(invalid("permits must be in 1..=capacity <= permits_max"));
        }
        if !self.locks.contains_key(&name) && self.locks.len() >= self.config.locks_max {
            return Err(LockError::TooManyLocks);
        }
        let waiters_max = self.config.waiters_per_lock_max;
        let lock = self.locks.entry(name.clone()).or_insert_with(|| Lock {
            kind,
            holders: BTreeMap::new(),
            waiters: VecDeque::new(),
        });
        let output = Self::request(lock, session, kind, claim, wait_ms, waiters_max);
        let output = match output {
            Ok(Some(grant)) => {
                let token = match grant {
                    Grant::New => {
                        let token = self.next_token(context.index());
                        if let Some(hold) = self
                            .locks
                            .get_mut(&name)
                            .and_then(|lock| lock.holders.get_mut(&session))
                        {
                            hold.token = token;
                        }
                        token
                    }
                    Grant::Again(token) => token,
                };
                Ok(LockResponse::Acquired { token })
            }
            Ok(None) if wait_ms == Some(0) => Ok(LockResponse::NotAcquired),
            Ok(None) => {
                let position = self.enqueue(context, &name, session, claim, wait_ms);
                Ok(LockResponse::Queued { position })
            }
            Err(error) => Err(error),
        };
        self.drop_if_idle(&name);
        self.sync_index(&name, session);
        output
    }

    /// Records whether `session` still holds or waits on `name`.
    fn sync_index(&mut self, name: &str, session: SessionId) {
        let involved = self.locks.get(name).is_some_and(|lock| {
            lock.holders.contains_key(&session)
                || lock.waiters.iter().any(|waiter| waiter.session == session)
        });
        session_index::record(&mut self.by_session, session, name, involved);
    }

    fn rebuild_index(&mut self) {
        self.by_session.clear();
        for (name, lock) in &self.locks {
            let sessions = lock
                .holders
                .keys()
                .copied()
                .chain(lock.waiters.iter().map(|waiter| waiter.session));
            for session in sessions {
                self.by_session
                    .entry(session)
                    .or_default()
                    .insert(name.clone());
            }
        }
    }

    /// Grants at once when allowed; `Ok(None)` means the request must wait.
    fn request(
        lock: &mut Lock,
        session: SessionId,
        kind: LockKind,
        claim: Claim,
        wait_ms: Option<u64>,
        waiters_max: usize,
    ) -> Result<Option<Grant>, LockError> {
        if lock.kind != kind {
            return Err(LockError::KindMismatch {
                existing: lock.kind,
            });
        }
        if lock.waiters.iter().any(|waiter| waiter.session == session) {
            return Err(LockError::AlreadyWaiting);
        }
        if let Some(hold) = lock.holders.get_mut(&session) {
            match claim {
                Claim::Exclusive { reentrant: true } => {
                    hold.count += 1;
                    return Ok(Some(Grant::Again(hold.token)));
                }
                Claim::Permits(_) => {}
                _ => return Err(LockError::AlreadyHeld),
            }
        }
        if lock.waiters.is_empty() && lock.fits(claim) {
            let (count, exclusive) = match claim {
                Claim::Permits(permits) => (permits, false),
                Claim::Read => (1, false),
                _ => (1, true),
            };
            let hold = lock.holders.entry(session).or_insert(Hold {
                token: 0,
                count: 0,
                exclusive,
            });
            hold.count += count;
            return Ok(Some(Grant::New));
        }
        if wait_ms != Some(0) && lock.waiters.len() >= waiters_max {
            return Err(LockError::TooManyWaiters);
        }
        Ok(None)
    }

    fn enqueue(
        &mut self,
        context: &ApplyContext<'_, LockEvent>,
        name: &str,
        session: SessionId,
        claim: Claim,
        wait_ms: Option<u64>,
    ) -> u64 {
        let deadline_ms = wait_ms.map(|wait_ms| context.log_time_ms().saturating_add(wait_ms));
        if let Some(deadline_ms) = deadline_ms {
            self.deadlines
                .insert((deadline_ms, name.to_string(), session));
        }
        let Some(lock) = self.locks.get_mut(name) else {
            return 0;
        };
        lock.waiters.push_back(Waiter {
            session,
            claim,
            deadline_ms,
        });
        lock.waiters.len() as u64 - 1
    }

    /// Grants the waiters at the head of the queue while the lock allows, publishing events.
    fn grant_waiters(&mut self, context: &mut ApplyContext<'_, LockEvent>, name: &str) {
        loop {
            let Some(lock) = self.locks.get(name) else {
                return;
            };
            let Some(head) = lock.waiters.front().cloned() else {
                break;
            };
            if !lock.fits(head.claim) {
                break;
            }
            let token = self.next_token(context.index());
            let Some(lock) = self.locks.get_mut(name) else {
                return;
            };
            lock.waiters.pop_front();
            let (count, exclusive) = match head.claim {
                Claim::Permits(permits) => (permits, false),
                Claim::Read => (1, false),
                _ => (1, true),
            };
            let hold = lock.holders.entry(head.session).or_insert(Hold {
                token,
                count: 0,
                exclusive,
            });
            hold.count += count;
            hold.token = token;
            if let Some(deadline_ms) = head.deadline_ms {
                self.deadlines
                    .remove(&(deadline_ms, name.to_string(), head.session));
            }
            context.publish(
                head.session,
                LockEvent::Acquired {
                    name: name.to_string(),
                    token,
                },
            );
        }
        self.drop_if_idle(name);
    }

    fn drop_if_idle(&mut self, name: &str) {
        if self.locks.get(name).is_some_and(Lock::is_idle) {
            self.locks.remove(name);
        }
    }

    fn release(
        &mut self,
        context: &mut ApplyContext<'_, LockEvent>,
        name: &str,
        kind: Option<LockKind>,
        permits: u64,
    ) -> LockOutput {
        let session = context.session().ok_or(LockError::NoSession)?;
        let lock = self.locks.get_mut(name).ok_or(LockError::NotHeld)?;
        let kind_matches = match (kind, lock.kind) {
            (Some(LockKind::Semaphore { .. }), LockKind::Semaphore { .. }) => true,
            (Some(wanted), existing) => wanted == existing,
            (None, _) => true,
        };
        if !kind_matches {
            return Err(LockError::KindMismatch {
                existing: lock.kind,
            });
        }
        let hold = lock.holders.get_mut(&session).ok_or(LockError::NotHeld)?;
        if permits > hold.count {
            return Err(LockError::NotHeld);
        }
        hold.count -= permits;
        if hold.count == 0 {
            lock.holders.remove(&session);
        }
        self.grant_waiters(context, name);
        self.sync_index(name, session);
        Ok(LockResponse::Released)
    }

    fn cancel(&mut self, context: &mut ApplyContext<'_, LockEvent>, name: &str) -> LockOutput {
        let session = context.session().ok_or(LockError::NoSession)?;
        if !self.remove_waiter(name, session) {
            return Err(LockError::NotHeld);
        }
        // The head may have been blocking smaller requests behind it.
        self.grant_waiters(context, name);
        Ok(LockResponse::Released)
    }

    fn remove_waiter(&mut self, name: &str, session: SessionId) -> bool {
        let Some(lock) = self.locks.get_mut(name) else {
            return false;
        };
        let Some(position) = lock
            .waiters
            .iter()
            .position(|waiter| waiter.session == session)
        else {
            return false;
        };
        if let Some(waiter) = lock.waiters.remove(position)
            && let Some(deadline_ms) = waiter.deadline_ms
        {
            self.deadlines
                .remove(&(deadline_ms, name.to_string(), session));
        }
        self.sync_index(name, session);
        true
    }
}

enum Grant {
    New,
    Again(u64),
}

/// The snapshot header frame.
#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    lock_count: u64,
    token_last: u64,
}

impl StateMachine for LockMachine {
    const TYPE_NAME: &'static str = "lock";
    type Command = LockCommand;
    type Query = LockQuery;
    type Output = LockOutput;
    type Event = LockEvent;

    fn apply(
        &mut self,
        context: &mut ApplyContext<'_, LockEvent>,
        command: LockCommand,
    ) -> LockOutput {
        match command {
            LockCommand::Lock {
                name,
                reentrant,
                wait_ms,
            } => self.acquire(
                context,
                name,
                LockKind::Mutex,
                Claim::Exclusive { reentrant },
                wait_ms,
            ),
            LockCommand::Unlock { name } => self.release(context, &name, Some(LockKind::Mutex), 1),
            LockCommand::ReadLock { name, wait_ms } => {
                self.acquire(context, name, LockKind::ReadWrite, Claim::Read, wait_ms)
            }
            LockCommand::WriteLock { name, wait_ms } => {
                self.acquire(context, name, LockKind::ReadWrite, Claim::Write, wait_ms)
            }
            LockCommand::ReadWriteUnlock { name } => {
                self.release(context, &name, Some(LockKind::ReadWrite), 1)
            }
            LockCommand::Acquire {
                name,
                permits,
                capacity,
                wait_ms,
            } => self.acquire(
                context,
                name,
                LockKind::Semaphore { capacity },
                Claim::Permits(permits),
                wait_ms,
            ),
            LockCommand::Release { name, permits } => {
                if permits == 0 {
                    return Err(LockError::InvalidArgument {
                        reason: "release at least one permit".to_string(),
                    });
                }
                self.release(
                    context,
                    &name,
                    Some(LockKind::Semaphore { capacity: 0 }),
                    permits,
                )
            }
            LockCommand::Cancel { name } => self.cancel(context, &name),
        }
    }

    fn query(&self, _context: &QueryContext, query: LockQuery) -> LockOutput {
        let LockQuery::Describe { name } = query;
        let lock = self.locks.get(&name);
        Ok(LockResponse::Description {
            kind: lock.map(|lock| lock.kind),
            holders: lock
                .map(|lock| {
                    lock.holders
                        .iter()
                        .map(|(session, hold)| (*session, *hold))
                        .collect()
                })
                .unwrap_or_default(),
            waiters: lock
                .map(|lock| lock.waiters.iter().map(|waiter| waiter.session).collect())
                .unwrap_or_default(),
        })
    }

    fn session_closed(&mut self, context: &mut ApplyContext<'_, LockEvent>, session: SessionId) {
        let touched = self.by_session.get(&session).cloned().unwrap_or_default();
        for name in touched {
            self.remove_waiter(&name, session);
            if let Some(lock) = self.locks.get_mut(&name) {
                lock.holders.remove(&session);
            }
            self.grant_waiters(context, &name);
        }
        self.by_session.remove(&session);
    }

    fn time_advanced(&mut self, context: &mut ApplyContext<'_, LockEvent>) {
        let now_ms = context.log_time_ms();
        let due: Vec<(u64, String, SessionId)> = self
            .deadlines
            .iter()
            .take_while(|(deadline_ms, _, _)| *deadline_ms <= now_ms)
            .cloned()
            .collect();
        for (_, name, session) in due {
            if self.remove_waiter(&name, session) {
                context.publish(session, LockEvent::TimedOut { name: name.clone() });
                self.grant_waiters(context, &name);
            }
        }
    }

    fn snapshot(&self, writer: &mut dyn Write) -> Result<(), Error> {
        let header = SnapshotHeader {
            lock_count: self.locks.len() as u64,
            token_last: self.token_last,
        };
        codec::write_frame(writer, &header, "lock snapshot header")?;
        for entry in &self.locks {
            codec::write_frame(writer, &entry, "lock")?;
        }
        Ok(())
    }

    fn restore(&mut self, reader: &mut dyn Read) -> Result<(), Error> {
        let header: SnapshotHeader = codec::read_frame(reader, "lock snapshot header")?;
        self.locks.clear();
        self.deadlines.clear();
        for _ in 0..header.lock_count {
            let (name, lock): (String, Lock) = codec::read_frame(reader, "lock")?;
            for waiter in &lock.waiters {
                if let Some(deadline_ms) = waiter.deadline_ms {
                    self.deadlines
                        .insert((deadline_ms, name.clone(), waiter.session));
                }
            }
            self.locks.insert(name, lock);
        }
        self.token_last = header.token_last;
        self.rebuild_index();
        Ok(())
    }

    fn validate(&self) -> Result<(), String> {
        let mut deadlines = 0;
        for (name, lock) in &self.locks {
            if lock.is_idle() {
                return Err(format!("idle lock {name} is kept"));
            }
            let exclusive = lock.holders.values().filter(|hold| hold.exclusive).count();
            match lock.kind {
                LockKind::Mutex if lock.holders.len() > 1 => {
                    return Err(format!("mutex {name} has {} holders", lock.holders.len()));
                }
                LockKind::ReadWrite if exclusive > 0 && lock.holders.len() > 1 => {
                    return Err(format!("rwlock {name} has a writer and other holders"));
                }
                LockKind::Semaphore { capacity } if lock.permits_held() > capacity => {
                    return Err(format!("semaphore {name} is over capacity"));
                }
                _ => {}
            }
            if lock
                .holders
                .values()
                .any(|hold| hold.count == 0 || hold.token > self.token_last)
            {
                return Err(format!("lock {name} has an empty hold or a future token"));
            }
            if lock.holders.is_empty() {
                return Err(format!("lock {name} has waiters but no holder"));
            }
            for waiter in &lock.waiters {
                if let Some(deadline_ms) = waiter.deadline_ms {
                    deadlines += 1;
                    if !self
                        .deadlines
                        .contains(&(deadline_ms, name.clone(), waiter.session))
                    {
                        return Err(format!("waiter on {name} has an unindexed deadline"));
                    }
                }
            }
        }
        if deadlines != self.deadlines.len() {
            return Err("the deadline index holds stale entries".to_string());
        }
        let mut rebuilt = self.clone();
        rebuilt.rebuild_index();
        if rebuilt.by_session != self.by_session {
            return Err("the per-session index differs from the locks".to_string());
        }
        Ok(())
    }
}
