//! Process control: the node processes of a cluster, started from a command-line
//! template, with their logs captured; kill -9, restart, pause (SIGSTOP) and resume
//! (SIGCONT).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::HarnessError;

/// A node's command line with placeholders, expanded per node:
///
/// | placeholder | value |
/// | --- | --- |
/// | `{id}` | the node id (from 1) |
/// | `{data_dir}` | the node's own data directory |
/// | `{client_address}` | where the node listens for clients (`127.0.0.1:port`) |
/// | `{peer_address}` | where the node listens for peers |
/// | `{peers}` | `j=addr,...` for every other node `j`, `addr` being the proxy of link `id -> j` |
/// | `{cluster}` | `j=addr,...` for every node, itself at its own peer address, the others as in `{peers}` |
/// | `{cluster_clients}` | `j=addr,...` for every node, `addr` being the proxy of the client link to `j` |
/// | `{cluster_ids}` | `1,2,3`: every node id |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTemplate {
    /// The program and its arguments.
    pub words: Vec<String>,
}

impl CommandTemplate {
    /// Splits a template on whitespace (no quoting: each placeholder expands inside one
    /// word, so none is needed for the server's flags).
    pub fn parse(text: &str) -> Result<Self, HarnessError> {
        let words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        if words.is_empty() {
            return Err(HarnessError::Config(
                "the server command is empty".to_string(),
            ));
        }
        Ok(Self { words })
    }

    /// The command line of `node`.
    pub fn expand(&self, node: &NodeLayout) -> Vec<String> {
        let peers = join_addresses(&node.peers_via_proxy);
        let mut cluster = node.peers_via_proxy.clone();
        cluster.insert(node.id, node.peer_listen);
        let cluster_ids: Vec<String> = cluster.keys().map(u64::to_string).collect();
        let values = [
            ("{id}", node.id.to_string()),
            ("{data_dir}", node.data_dir.display().to_string()),
            ("{client_address}", node.client_listen.to_string()),
            ("{peer_address}", node.peer_listen.to_string()),
            ("{peers}", peers),
            ("{cluster}", join_addresses(&cluster)),
            ("{cluster_clients}", join_addresses(&node.clients_via_proxy)),
            ("{cluster_ids}", cluster_ids.join(",")),
        ];
        self.words
            .iter()
            .map(|word| {
                values
                    .iter()
                    .fold(word.clone(), |text, (key, value)| text.replace(key, value))
            })
            .collect()
    }
}

fn join_addresses(addresses: &BTreeMap<u64, SocketAddr>) -> String {
    let parts: Vec<String> = addresses
        .iter()
        .map(|(id, address)| format!("{id}={address}"))
        .collect();
    parts.join(",")
}

/// Where one node lives: its id, directories and addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLayout {
    /// The node id, from 1.
    pub id: u64,
    /// The node's data directory.
    pub data_dir: PathBuf,
    /// The node's log file (stdout and stderr, appended across restarts).
    pub log_path: PathBuf,
    /// Where the node listens for clients.
    pub client_listen: SocketAddr,
    /// Where the node listens for peers.
    pub peer_listen: SocketAddr,
    /// For every other node, the proxy address this node uses to reach it.
    pub peers_via_proxy: BTreeMap<u64, SocketAddr>,
    /// For every node, the proxy address clients use to reach it (for leader hints).
    pub clients_via_proxy: BTreeMap<u64, SocketAddr>,
}

/// Finds a free TCP port on 127.0.0.1 by binding port 0 and releasing it. Another
/// program may take it before the node binds it; on loopback in a test run this is rare,
/// and a node that fails to bind shows it in its log.
pub fn free_port() -> Result<u16, HarnessError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|error| HarnessError::io("finding a free port", error))?;
    let address = listener
        .local_addr()
        .map_err(|error| HarnessError::io("finding a free port", error))?;
    Ok(address.port())
}

/// One node's process and its state as the harness left it.
#[derive(Debug)]
struct NodeProcess {
    layout: NodeLayout,
    child: Option<Child>,
    paused: bool,
    start_count: u32,
}

/// The node processes of a cluster.
#[derive(Debug)]
pub struct Processes {
    template: CommandTemplate,
    nodes: BTreeMap<u64, NodeProcess>,
}

impl Processes {
    /// Prepares (does not start) one process per layout, creating data directories and
    /// the folders of the log files.
    pub fn new(template: CommandTemplate, layouts: Vec<NodeLayout>) -> Result<Self, HarnessError> {
        let mut nodes = BTreeMap::new();
        for layout in layouts {
            std::fs::create_dir_all(&layout.data_dir).map_err(|error| {
                HarnessError::io(format!("creating {}", layout.data_dir.display()), error)
            })?;
            if let Some(folder) = layout.log_path.parent() {
                std::fs::create_dir_all(folder).map_err(|error| {
                    HarnessError::io(format!("creating {}", folder.display()), error)
                })?;
            }
            let id = layout.id;
            let process = NodeProcess {
                layout,
                child: None,
                paused: false,
                start_count: 0,
            };
            if nodes.insert(id, process).is_some() {
                return Err(HarnessError::Config(format!("node {id} given twice")));
            }
        }
        Ok(Self { template, nodes })
    }

    /// Every node id, in order.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// A node's layout.
    pub fn layout(&self, id: u64) -> Result<&NodeLayout, HarnessError> {
        self.nodes
            .get(&id)
            .map(|node| &node.layout)
            .ok_or(HarnessError::UnknownNode(id))
    }

    fn node(&mut self, id: u64) -> Result<&mut NodeProcess, HarnessError> {
        self.nodes.get_mut(&id).ok_or(HarnessError::UnknownNode(id))
    }

    /// Starts a node that is not running (a running one is left alone).
    pub fn start(&mut self, id: u64) -> Result<(), HarnessError> {
        self.reap(id)?;
        let template = self.template.clone();
        let node = self.node(id)?;
        if node.child.is_some() {
            return Ok(());
        }
        let words = template.expand(&node.layout);
        let log = open_log(&node.layout.log_path)?;
        let log_error = log
            .try_clone()
            .map_err(|error| HarnessError::io("duplicating a log file handle", error))?;
        let child = Command::new(&words[0])
            .args(&words[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_error))
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                node: id,
                program: words[0].clone(),
                source,
            })?;
        node.child = Some(child);
        node.paused = false;
        node.start_count += 1;
        Ok(())
    }

    /// Starts every node that is not running.
    pub fn start_all(&mut self) -> Result<(), HarnessError> {
        for id in self.ids() {
            self.start(id)?;
        }
        Ok(())
    }

    /// Kills a node with SIGKILL and waits for it to be gone; a stopped node is fine.
    pub fn kill(&mut self, id: u64) -> Result<(), HarnessError> {
        let node = self.node(id)?;
        let Some(mut child) = node.child.take() else {
            return Ok(());
        };
        node.paused = false;
        // SIGKILL works on a stopped (paused) process too; no SIGCONT needed.
        let _ = child.kill();
        child
            .wait()
            .map_err(|error| HarnessError::io(format!("waiting for node {id} to die"), error))?;
        Ok(())
    }

    /// Kills then starts a node again, on the same data directory.
    pub fn restart(&mut self, id: u64) -> Result<(), HarnessError> {
        self.kill(id)?;
        self.start(id)
    }

    /// Stops a node with SIGSTOP: its sockets stay open but it does nothing.
    pub fn pause(&mut self, id: u64) -> Result<(), HarnessError> {
        self.signal(id, Signal::SIGSTOP)?;
        self.node(id)?.paused = true;
        Ok(())
    }

    /// Continues a paused node with SIGCONT.
    pub fn resume(&mut self, id: u64) -> Result<(), HarnessError> {
        self.signal(id, Signal::SIGCONT)?;
        self.node(id)?.paused = false;
        Ok(())
    }

    /// Resumes every paused node and starts every node that is not running.
    pub fn recover_all(&mut self) -> Result<(), HarnessError> {
        for id in self.ids() {
            if self.is_paused(id) {
                self.resume(id)?;
            }
            self.start(id)?;
        }
        Ok(())
    }

    fn signal(&mut self, id: u64, signal: Signal) -> Result<(), HarnessError> {
        let node = self.node(id)?;
        let child = node.child.as_ref().ok_or_else(|| HarnessError::Signal {
            node: id,
            reason: "not running".to_string(),
        })?;
        let pid = i32::try_from(child.id()).map_err(|_| HarnessError::Signal {
            node: id,
            reason: "process id out of range".to_string(),
        })?;
        kill(Pid::from_raw(pid), signal).map_err(|error| HarnessError::Signal {
            node: id,
            reason: error.to_string(),
        })
    }

    /// Notices a node that exited by itself (a crash), so that it counts as not running.
    fn reap(&mut self, id: u64) -> Result<(), HarnessError> {
        let node = self.node(id)?;
        if let Some(child) = node.child.as_mut() {
            let exited = child
                .try_wait()
                .map_err(|error| HarnessError::io(format!("polling node {id}"), error))?;
            if exited.is_some() {
                node.child = None;
                node.paused = false;
            }
        }
        Ok(())
    }

    /// Whether the node's process is alive (paused counts as alive).
    pub fn is_running(&mut self, id: u64) -> bool {
        self.reap(id).is_ok() && self.nodes.get(&id).is_some_and(|node| node.child.is_some())
    }

    /// Whether the node is paused.
    pub fn is_paused(&self, id: u64) -> bool {
        self.nodes.get(&id).is_some_and(|node| node.paused)
    }

    /// The node's operating-system process id, when running.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.nodes
            .get(&id)
            .and_then(|node| node.child.as_ref())
            .map(Child::id)
    }

    /// How many times the node was started.
    pub fn start_count(&self, id: u64) -> u32 {
        self.nodes.get(&id).map_or(0, |node| node.start_count)
    }

    /// Kills every node.
    pub fn kill_all(&mut self) -> Result<(), HarnessError> {
        for id in self.ids() {
            self.kill(id)?;
        }
        Ok(())
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        // A harness that stops early (an error, a panic in a test) must not leave servers
        // behind holding ports.
        let _ = self.kill_all();
    }
}

fn open_log(path: &Path) -> Result<File, HarnessError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|error| HarnessError::io(format!("opening {}", path.display()), error))
}
