//! Lock, RwLock and Semaphore: claims on the lock machine, granted in FIFO order, each grant
//! with a fencing token (the index of the entry that granted it, so a later grant always has
//! a larger token). A waiting claim is granted by an event, not by polling.

use std::time::Duration;

use conclave_statemachines::lock::{LockCommand, LockEvent, LockMachine, LockResponse};

use crate::builtins::refused;
use crate::error::{ClientError, Result};
use crate::handle::Machine;
use crate::session::Session;

/// Sends a claim and waits for its grant: `Some(token)`, or `None` when it was not granted
/// within its wait.
async fn claim(
    machine: &Machine<LockMachine>,
    name: &str,
    command: LockCommand,
) -> Result<Option<u64>> {
    // Listen first: the grant event may be published right after the command is applied.
    let mut events = machine.events();
    match refused(machine.command(&command).await?)? {
        LockResponse::Acquired { token } => return Ok(Some(token)),
        LockResponse::NotAcquired => return Ok(None),
        LockResponse::Queued { .. } => {}
        other => return Err(ClientError::Unexpected(format!("lock claim: {other:?}"))),
    }
    while let Some(event) = events.next().await {
        match event? {
            (
                _,
                LockEvent::Acquired {
                    name: granted,
                    token,
                },
            ) if granted == name => {
                return Ok(Some(token));
            }
            (_, LockEvent::TimedOut { name: timed_out }) if timed_out == name => return Ok(None),
            _ => {}
        }
    }
    Err(ClientError::SessionExpired {
        session: machine.session().id(),
    })
}

fn wait_ms(wait: Option<Duration>) -> Option<u64> {
    wait.map(|wait| u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
}

/// A held lock (or read/write lock, or permits): its fencing token, and `release`. Pass the
/// token to every resource the lock protects; a resource that has seen a larger token must
/// refuse a smaller one. Dropping the guard does not release (release is a command): call
/// [`LockGuard::release`], or close the session.
#[derive(Debug)]
#[must_use = "a dropped guard keeps the lock until release() or the session ends"]
pub struct LockGuard {
    token: u64,
    release: LockCommand,
    machine: Machine<LockMachine>,
}

impl LockGuard {
    /// The fencing token of this grant.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Releases what the guard holds.
    pub async fn release(self) -> Result<()> {
        refused(self.machine.command(&self.release).await?).map(drop)
    }
}

/// A named FIFO mutex bound to the session.
#[derive(Debug, Clone)]
pub struct Lock {
    machine: Machine<LockMachine>,
    name: String,
}

impl Lock {
    /// Lock `name` in lock machine `machine_name`.
    pub fn new(session: &Session, machine_name: &str, name: &str) -> Self {
        Lock {
            machine: session.locks(machine_name),
            name: name.to_string(),
        }
    }

    fn guard(&self, token: u64) -> LockGuard {
        LockGuard {
            token,
            release: LockCommand::Unlock {
                name: self.name.clone(),
            },
            machine: self.machine.clone(),
        }
    }

    /// Waits until the lock is granted.
    pub async fn acquire(&self) -> Result<LockGuard> {
        let command = LockCommand::Lock {
            name: self.name.clone(),
            reentrant: false,
            wait_ms: None,
        };
        match claim(&self.machine, &self.name, command).await? {
            Some(token) => Ok(self.guard(token)),
            None => Err(ClientError::Unexpected(
                "a lock without a wait was not granted".to_string(),
            )),
        }
    }

    /// Waits at most `wait` (zero: only tries); `None` when not granted in time.
    pub async fn try_acquire(&self, wait: Duration) -> Result<Option<LockGuard>> {
        let command = LockCommand::Lock {
            name: self.name.clone(),
            reentrant: false,
            wait_ms: wait_ms(Some(wait)),
        };
        Ok(claim(&self.machine, &self.name, command)
            .await?
            .map(|token| self.guard(token)))
    }
}

/// A named read-write lock bound to the session: many readers or one writer.
#[derive(Debug, Clone)]
pub struct RwLock {
    machine: Machine<LockMachine>,
    name: String,
}

impl RwLock {
    /// Read-write lock `name` in lock machine `machine_name`.
    pub fn new(session: &Session, machine_name: &str, name: &str) -> Self {
        RwLock {
            machine: session.locks(machine_name),
            name: name.to_string(),
        }
    }

    async fn take(&self, command: LockCommand) -> Result<Option<LockGuard>> {
        Ok(claim(&self.machine, &self.name, command)
            .await?
            .map(|token| LockGuard {
                token,
                release: LockCommand::ReadWriteUnlock {
                    name: self.name.clone(),
                },
                machine: self.machine.clone(),
            }))
    }

    /// Takes a read lock, waiting at most `wait` (`None`: until granted).
    pub async fn read(&self, wait: Option<Duration>) -> Result<Option<LockGuard>> {
        self.take(LockCommand::ReadLock {
            name: self.name.clone(),
            wait_ms: wait_ms(wait),
        })
        .await
    }

    /// Takes the write lock, waiting at most `wait` (`None`: until granted).
    pub async fn write(&self, wait: Option<Duration>) -> Result<Option<LockGuard>> {
        self.take(LockCommand::WriteLock {
            name: self.name.clone(),
            wait_ms: wait_ms(wait),
        })
        .await
    }
}

/// A named counting semaphore bound to the session.
#[derive(Debug, Clone)]
pub struct Semaphore {
    machine: Machine<LockMachine>,
    name: String,
    capacity: u64,
}

impl Semaphore {
    /// Semaphore `name` with `capacity` permits in lock machine `machine_name`.
    pub fn new(session: &Session, machine_name: &str, name: &str, capacity: u64) -> Self {
        Semaphore {
            machine: session.locks(machine_name),
            name: name.to_string(),
            capacity,
        }
    }

    /// Takes `permits`, waiting at most `wait` (`None`: until granted).
    pub async fn acquire(&self, permits: u64, wait: Option<Duration>) -> Result<Option<LockGuard>> {
        let command = LockCommand::Acquire {
            name: self.name.clone(),
            permits,
            capacity: self.capacity,
            wait_ms: wait_ms(wait),
        };
        Ok(claim(&self.machine, &self.name, command)
            .await?
            .map(|token| LockGuard {
                token,
                release: LockCommand::Release {
                    name: self.name.clone(),
                    permits,
                },
                machine: self.machine.clone(),
            }))
    }
}
