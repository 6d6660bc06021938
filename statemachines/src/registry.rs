//! The registry: factories by machine type, and the named machines of one Raft group.
//!
//! Like Atomix primitives, a machine is created on the first command that names it; several
//! machines of different types run side by side, routed by name.

use std::collections::BTreeMap;

use crate::error::{Error, SessionError};
use crate::machine::{Erased, ErasedMachine, StateMachine};

type Factory = Box<dyn Fn() -> Box<dyn ErasedMachine>>;

/// The configs of the built-in machines, for [`Registry::with_builtin_configs`].
#[derive(Debug, Clone, Default)]
pub struct BuiltinConfigs {
    /// The kv machine's bounds.
    pub kv: crate::kv::KvConfig,
    /// The tree machine's bounds and options.
    pub tree: crate::tree::TreeConfig,
    /// The lock machine's bounds.
    pub lock: crate::lock::LockConfig,
    /// The election machine's bounds.
    pub election: crate::election::ElectionConfig,
    /// The queue machine's bounds.
    pub queue: crate::queue::QueueConfig,
}

/// Factories by type name and the live machines by name.
#[derive(Default)]
pub struct Registry {
    factories: BTreeMap<&'static str, Factory>,
    pub(crate) machines: BTreeMap<String, Box<dyn ErasedMachine>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Registry")
            .field("types", &self.factories.keys().collect::<Vec<_>>())
            .field("machines", &self.machines.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// A registry with every built-in machine: kv (with `kv_config`), counter, value, and
    /// tree, lock, election and queue with their default bounds.
    pub fn with_builtins(kv_config: crate::kv::KvConfig) -> Result<Self, Error> {
        Registry::with_builtin_configs(BuiltinConfigs {
            kv: kv_config,
            ..BuiltinConfigs::default()
        })
    }

    /// A registry with every built-in machine, each with its own validated config.
    pub fn with_builtin_configs(configs: BuiltinConfigs) -> Result<Self, Error> {
        let BuiltinConfigs {
            kv,
            tree,
            lock,
            election,
            queue,
        } = configs;
        kv.validate()?;
        tree.validate()?;
        lock.validate()?;
        election.validate()?;
        queue.validate()?;
        let mut registry = Registry::new();
        registry.register(move || crate::kv::KvMachine::new(kv.clone()))?;
        registry.register(crate::counter::CounterMachine::default)?;
        registry.register(crate::value::ValueMachine::default)?;
        registry.register(move || crate::tree::TreeMachine::new(tree.clone()))?;
        registry.register(move || crate::lock::LockMachine::new(lock.clone()))?;
        registry.register(move || crate::election::ElectionMachine::new(election.clone()))?;
        registry.register(move || crate::queue::QueueMachine::new(queue.clone()))?;
        Ok(registry)
    }

    /// Registers the factory of a machine type; the factory builds an empty machine, used on
    /// first use of a name and before a restore.
    pub fn register<M, F>(&mut self, factory: F) -> Result<(), Error>
    where
        M: StateMachine,
        F: Fn() -> M + 'static,
    {
        if self.factories.contains_key(M::TYPE_NAME) {
            return Err(Error::DuplicateMachineType {
                type_name: M::TYPE_NAME.to_string(),
            });
        }
        let boxed: Factory = Box::new(move || Box::new(Erased(factory())));
        self.factories.insert(M::TYPE_NAME, boxed);
        Ok(())
    }

    /// The registered type names.
    pub fn machine_types(&self) -> Vec<&'static str> {
        self.factories.keys().copied().collect()
    }

    /// The live machines as (name, type) pairs, in name order.
    pub fn machines(&self) -> Vec<(String, &'static str)> {
        self.machines
            .iter()
            .map(|(name, machine)| (name.clone(), machine.type_name()))
            .collect()
    }

    pub(crate) fn create(&self, machine_type: &str) -> Option<Box<dyn ErasedMachine>> {
        self.factories.get(machine_type).map(|factory| factory())
    }

    /// Checks that `name` may be used with `machine_type`: an existing machine must have that
    /// type, a new one needs a registered factory.
    pub(crate) fn check_route(&self, name: &str, machine_type: &str) -> Result<bool, SessionError> {
        match self.machines.get(name) {
            Some(machine) if machine.type_name() == machine_type => Ok(true),
            Some(machine) => Err(SessionError::MachineTypeMismatch {
                machine_name: name.to_string(),
                existing_type: machine.type_name().to_string(),
                requested_type: machine_type.to_string(),
            }),
            None if self.factories.contains_key(machine_type) => Ok(false),
            None => Err(SessionError::UnknownMachineType {
                machine_type: machine_type.to_string(),
            }),
        }
    }
}
