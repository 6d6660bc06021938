//! Coordination recipes built on the typed handles: locks with fencing tokens, elections,
//! watches, barriers, counters, semaphores, queue consumers and service discovery.
//!
//! Every recipe is bound to a [`crate::Session`]: what it holds (a lock, a leadership, an
//! ephemeral node) is released by the server when the session closes or expires, and
//! waiting is done on the session's events, never by polling.

mod barrier;
mod discovery;
mod election;
mod lock;
mod queue;
mod watch;

pub use barrier::{Barrier, DoubleBarrier};
pub use discovery::{InstanceWatch, Instances, ServiceDiscovery};
pub use election::{Election, LeaderWatch};
pub use lock::{Lock, LockGuard, RwLock, Semaphore};
pub use queue::QueueConsumer;
pub use watch::{ChildrenWatch, DataWatch};

/// The Counter recipe is the counter machine's typed handle (`Session::counter`): atomic
/// add-and-get, get-and-add, compare-and-set and reads at any consistency.
pub type Counter = crate::Machine<conclave_statemachines::counter::CounterMachine>;
