//! DataWatch and ChildrenWatch on the tree machine: the current state first, then the state
//! after every change. A persistent watch (set once through the log) means no change between
//! two notifications is missed; each read after a notification is sequential at the
//! notification's index or later, so it never shows older state than the event announced.

use conclave_statemachines::tree::{
    AddWatchMode, Stat, TreeCommand, TreeMachine, TreeResponse, WatchedEvent,
};

use crate::error::{ClientError, Result};
use crate::handle::{Events, Machine};
use crate::session::{Consistency, Session};

async fn watch_path(machine: &Machine<TreeMachine>, path: &str) -> Result<Events<WatchedEvent>> {
    let events = machine.events();
    match machine
        .tree_command(&TreeCommand::AddWatch {
            path: path.to_string(),
            mode: AddWatchMode::Persistent,
        })
        .await?
    {
        Ok(TreeResponse::Done) => Ok(events),
        other => Err(ClientError::Machine(format!(
            "add watch on {path}: {other:?}"
        ))),
    }
}

async fn next_change(events: &mut Events<WatchedEvent>, path: &str) -> Result<()> {
    while let Some(event) = events.next().await {
        if event?.1.path == path {
            return Ok(());
        }
    }
    Err(ClientError::SessionExpired { session: 0 })
}

/// A node's data as it changes: `None` while the node does not exist.
#[derive(Debug)]
pub struct DataWatch {
    machine: Machine<TreeMachine>,
    path: String,
    events: Events<WatchedEvent>,
    started: bool,
}

impl DataWatch {
    /// Watches `path` in tree machine `machine_name`.
    pub async fn new(session: &Session, machine_name: &str, path: &str) -> Result<Self> {
        let machine = session.tree(machine_name);
        let events = watch_path(&machine, path).await?;
        Ok(DataWatch {
            machine,
            path: path.to_string(),
            events,
            started: false,
        })
    }

    /// The current data first, then the data after each change.
    pub async fn next(&mut self) -> Result<Option<(Vec<u8>, Stat)>> {
        if self.started {
            next_change(&mut self.events, &self.path).await?;
        }
        self.started = true;
        self.machine
            .get_data(&self.path, Consistency::Sequential)
            .await
    }
}

/// A node's children as they change: `None` while the node does not exist.
#[derive(Debug)]
pub struct ChildrenWatch {
    machine: Machine<TreeMachine>,
    path: String,
    events: Events<WatchedEvent>,
    last: Option<Option<Vec<String>>>,
}

impl ChildrenWatch {
    /// Watches the children of `path` in tree machine `machine_name`.
    pub async fn new(session: &Session, machine_name: &str, path: &str) -> Result<Self> {
        let machine = session.tree(machine_name);
        let events = watch_path(&machine, path).await?;
        Ok(ChildrenWatch {
            machine,
            path: path.to_string(),
            events,
            last: None,
        })
    }

    /// The current children first, then the children after each change (sorted names);
    /// notifications that leave the list as it was are skipped.
    pub async fn next(&mut self) -> Result<Option<Vec<String>>> {
        loop {
            if self.last.is_some() {
                next_change(&mut self.events, &self.path).await?;
            }
            let children = self
                .machine
                .children(&self.path, Consistency::Sequential)
                .await?;
            if self.last.as_ref() != Some(&children) {
                self.last = Some(children.clone());
                return Ok(children);
            }
        }
    }
}
