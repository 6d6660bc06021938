//! The node: a Raft core, its durable storage, its transport and the application it
//! replicates, run by a driver thread and an apply thread.
//!
//! Lifecycle:
//!
//! 1. **Open** `data_directory`: the log (`log/`), the hard state (`meta`), the snapshots
//!    (`snapshots/`). A directory that was never used is initialised with the static
//!    `bootstrap_voters` of the config, or with an empty membership for a node that will
//!    join an existing cluster as a learner (it never campaigns until the leader's log
//!    tells it the membership).
//! 2. **Recover**: the application is restored from the newest snapshot, and the core is
//!    started with the persisted term, vote and commit index; committed entries after the
//!    snapshot are replayed into the application through the normal apply path.
//! 3. **Run**: the driver thread waits for the next tick (a tokio interval), peer message or
//!    client request; it feeds every available input to the core (proposals batched into
//!    one `propose` call), then carries out each `Ready` (see `driver.rs`). Committed
//!    entries and confirmed reads go, in order, to the apply task (`apply.rs`), a thread
//!    that owns the application, so applying overlaps the driver's next write and fsync.
//! 4. **Snapshot** by policy (entries or bytes applied since the last one): the apply task
//!    writes the application's state and hands it to the driver, which stores it and
//!    compacts the log. A follower that needs compacted entries is sent the snapshot, which
//!    the transport streams in chunks.
//! 5. **Stop**: [`Node::stop`] ends the driver after its current batch; what was
//!    acknowledged is durable.

mod application;
mod apply;
mod config;
mod driver;
mod envelope;
mod error;
mod handle;
mod storage;

pub use application::{Application, MapApplication};
pub use config::NodeConfig;
pub use error::NodeError;
pub use handle::Node;
pub use storage::LogStorage;
