//! Barrier and DoubleBarrier on the tree machine (the ZooKeeper recipes).

use conclave_statemachines::tree::{CreateMode, TreeCommand, TreeError, TreeMachine, TreeResponse};

use crate::error::{ClientError, Result};
use crate::handle::Machine;
use crate::recipes::watch::{ChildrenWatch, DataWatch};
use crate::session::Session;

/// Creates `path` as a persistent node unless it exists.
pub(crate) async fn ensure_node(machine: &Machine<TreeMachine>, path: &str) -> Result<()> {
    let mut prefix = String::new();
    for part in path.split('/').filter(|part| !part.is_empty()) {
        prefix.push('/');
        prefix.push_str(part);
        match machine
            .tree_command(&TreeCommand::Create(
                conclave_statemachines::tree::CreateRequest::new(
                    &prefix,
                    &[],
                    CreateMode::Persistent,
                ),
            ))
            .await?
        {
            Ok(TreeResponse::Created { .. }) | Err(TreeError::NodeExists { .. }) => {}
            other => return Err(ClientError::Machine(format!("create {prefix}: {other:?}"))),
        }
    }
    Ok(())
}

/// A barrier: while node `path` exists, `wait` blocks; removing it lets everyone through.
#[derive(Debug, Clone)]
pub struct Barrier {
    session: Session,
    machine_name: String,
    path: String,
}

impl Barrier {
    /// The barrier at `path` of tree machine `machine_name`.
    pub fn new(session: &Session, machine_name: &str, path: &str) -> Self {
        Barrier {
            session: session.clone(),
            machine_name: machine_name.to_string(),
            path: path.to_string(),
        }
    }

    /// Raises the barrier (creates its node; raising a raised barrier is fine).
    pub async fn set(&self) -> Result<()> {
        ensure_node(&self.session.tree(&self.machine_name), &self.path).await
    }

    /// Lowers the barrier.
    pub async fn remove(&self) -> Result<()> {
        match self
            .session
            .tree(&self.machine_name)
            .tree_command(&TreeCommand::Delete {
                path: self.path.clone(),
                version: -1,
            })
            .await?
        {
            Ok(_) | Err(TreeError::NoNode { .. }) => Ok(()),
            Err(other) => Err(ClientError::Machine(other.to_string())),
        }
    }

    /// Waits until the barrier is down.
    pub async fn wait(&self) -> Result<()> {
        let mut watch = DataWatch::new(&self.session, &self.machine_name, &self.path).await?;
        while watch.next().await?.is_some() {}
        Ok(())
    }
}

/// A double barrier: `enter` waits until `count` members entered; `leave` waits until all
/// left. Each member is an ephemeral child, so a member whose session ends leaves.
#[derive(Debug, Clone)]
pub struct DoubleBarrier {
    session: Session,
    machine_name: String,
    path: String,
    count: usize,
}

impl DoubleBarrier {
    /// The double barrier at `path` of tree machine `machine_name` for `count` members.
    pub fn new(session: &Session, machine_name: &str, path: &str, count: usize) -> Self {
        DoubleBarrier {
            session: session.clone(),
            machine_name: machine_name.to_string(),
            path: path.to_string(),
            count,
        }
    }

    fn member_path(&self) -> String {
        format!("{}/{}", self.path, self.session.id())
    }

    /// Enters and waits until `count` members are in.
    pub async fn enter(&self) -> Result<()> {
        let machine = self.session.tree(&self.machine_name);
        ensure_node(&machine, &self.path).await?;
        let mut watch = ChildrenWatch::new(&self.session, &self.machine_name, &self.path).await?;
        machine
            .create(&self.member_path(), &[], CreateMode::Ephemeral)
            .await?;
        loop {
            if watch.next().await?.unwrap_or_default().len() >= self.count {
                return Ok(());
            }
        }
    }

    /// Leaves and waits until every member left.
    pub async fn leave(&self) -> Result<()> {
        let machine = self.session.tree(&self.machine_name);
        let mut watch = ChildrenWatch::new(&self.session, &self.machine_name, &self.path).await?;
        machine.delete(&self.member_path(), -1).await?;
        loop {
            if watch.next().await?.unwrap_or_default().is_empty() {
                return Ok(());
            }
        }
    }
}
