//! Service discovery and configuration on the tree machine.
//!
//! An instance of service `S` is the ephemeral node `<root>/services/S/<instance id>`
//! holding its data (an address, metadata): it disappears when the registering session ends,
//! so the list never names a dead instance for longer than a session timeout. A
//! configuration `C` is the node `<root>/config/C`; subscribers see every new value.

use std::collections::BTreeMap;

use conclave_statemachines::tree::{CreateMode, TreeMachine};

use crate::error::Result;
use crate::handle::Machine;
use crate::recipes::barrier::ensure_node;
use crate::recipes::watch::{ChildrenWatch, DataWatch};
use crate::session::{Consistency, Session};

/// Instances by id, each with its data.
pub type Instances = BTreeMap<String, Vec<u8>>;

/// The registry of services and configurations under one tree root.
#[derive(Debug, Clone)]
pub struct ServiceDiscovery {
    session: Session,
    machine_name: String,
    root: String,
}

impl ServiceDiscovery {
    /// Discovery under `root` (e.g. "/discovery") of tree machine `machine_name`.
    pub fn new(session: &Session, machine_name: &str, root: &str) -> Self {
        ServiceDiscovery {
            session: session.clone(),
            machine_name: machine_name.to_string(),
            root: root.trim_end_matches('/').to_string(),
        }
    }

    fn tree(&self) -> Machine<TreeMachine> {
        self.session.tree(&self.machine_name)
    }

    fn service_path(&self, service: &str) -> String {
        format!("{}/services/{service}", self.root)
    }

    fn config_path(&self, name: &str) -> String {
        format!("{}/config/{name}", self.root)
    }

    /// Registers instance `instance` of `service` with `data`, bound to this session.
    pub async fn register(&self, service: &str, instance: &str, data: &[u8]) -> Result<()> {
        let path = self.service_path(service);
        ensure_node(&self.tree(), &path).await?;
        self.tree()
            .create(&format!("{path}/{instance}"), data, CreateMode::Ephemeral)
            .await
            .map(drop)
    }

    /// Removes this session's instance before the session ends.
    pub async fn deregister(&self, service: &str, instance: &str) -> Result<()> {
        self.tree()
            .delete(&format!("{}/{instance}", self.service_path(service)), -1)
            .await
    }

    /// The instances of `service` now.
    pub async fn instances(&self, service: &str, consistency: Consistency) -> Result<Instances> {
        let path = self.service_path(service);
        let names = self
            .tree()
            .children(&path, consistency)
            .await?
            .unwrap_or_default();
        self.read_instances(&path, names, consistency).await
    }

    async fn read_instances(
        &self,
        path: &str,
        names: Vec<String>,
        consistency: Consistency,
    ) -> Result<Instances> {
        let mut instances = Instances::new();
        for name in names {
            // An instance may go between the listing and the read; it is simply not listed.
            if let Some((data, _)) = self
                .tree()
                .get_data(&format!("{path}/{name}"), consistency)
                .await?
            {
                instances.insert(name, data);
            }
        }
        Ok(instances)
    }

    /// Watches the instances of `service`: the current set, then each new set.
    pub async fn watch(&self, service: &str) -> Result<InstanceWatch> {
        let path = self.service_path(service);
        ensure_node(&self.tree(), &path).await?;
        let children = ChildrenWatch::new(&self.session, &self.machine_name, &path).await?;
        Ok(InstanceWatch {
            discovery: self.clone(),
            path,
            children,
        })
    }

    /// Publishes configuration `name`.
    pub async fn set_config(&self, name: &str, data: &[u8]) -> Result<()> {
        let path = self.config_path(name);
        ensure_node(&self.tree(), &path).await?;
        self.tree().set_data(&path, data, -1).await.map(drop)
    }

    /// Subscribes to configuration `name`: its value now, then each new value (`None`
    /// while it does not exist).
    pub async fn subscribe_config(&self, name: &str) -> Result<DataWatch> {
        DataWatch::new(&self.session, &self.machine_name, &self.config_path(name)).await
    }
}

/// The instances of one service as they change.
#[derive(Debug)]
pub struct InstanceWatch {
    discovery: ServiceDiscovery,
    path: String,
    children: ChildrenWatch,
}

impl InstanceWatch {
    /// The current instances first, then the instances after each change.
    pub async fn next(&mut self) -> Result<Instances> {
        let names = self.children.next().await?.unwrap_or_default();
        self.discovery
            .read_instances(&self.path, names, Consistency::Sequential)
            .await
    }
}
