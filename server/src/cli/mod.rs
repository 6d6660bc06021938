//! The client subcommands of the `conclave` binary, on conclave-client: `cluster`, `kv`,
//! `tree`, `lock NAME -- COMMAND`, `elect`, `queue` and `snapshot save`.
//!
//! Every subcommand takes `--endpoints` (or `CONCLAVE_ENDPOINTS`), a comma-separated list of
//! client addresses; the default is the `conclave dev` cluster. Output is plain text, one
//! record per line; failures print one line on stderr and exit with code 1 (2 for usage).

mod commands;

use std::process::ExitCode;

use clap::{Args, Subcommand};
use conclave_client::ClientError;

pub use commands::run;

/// The endpoints of `conclave dev` (client ports base+11..base+13 with base 7000).
pub const DEV_ENDPOINTS: &str = "127.0.0.1:7011,127.0.0.1:7012,127.0.0.1:7013";

/// Where the cluster is.
#[derive(Debug, Clone, Args)]
pub struct Connect {
    /// Client addresses of the cluster's nodes, comma-separated.
    #[arg(long, env = "CONCLAVE_ENDPOINTS", value_delimiter = ',', default_value = DEV_ENDPOINTS, global = true)]
    pub endpoints: Vec<String>,
    /// How long a request may take, in milliseconds.
    #[arg(long, default_value_t = 10_000, global = true)]
    pub request_timeout_ms: u64,
}

/// The client subcommands; `main` flattens them into its own.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Cluster status and membership.
    Cluster(ClusterArgs),
    /// The etcd-style key-value machine.
    Kv(KvArgs),
    /// The ZooKeeper-style tree machine.
    Tree(TreeArgs),
    /// Runs COMMAND while holding lock NAME; the fencing token is in CONCLAVE_LOCK_TOKEN.
    Lock(LockArgs),
    /// Campaigns in election NAME; once elected, runs COMMAND (or waits for Ctrl-C), then
    /// resigns. The epoch is in CONCLAVE_ELECTION_EPOCH.
    Elect(ElectArgs),
    /// Named FIFO queues.
    Queue(QueueArgs),
    /// Backups.
    Snapshot(SnapshotArgs),
}

impl ClientCommand {
    /// The connection options of the command.
    pub fn connect(&self) -> &Connect {
        match self {
            ClientCommand::Cluster(args) => &args.connect,
            ClientCommand::Kv(args) => &args.connect,
            ClientCommand::Tree(args) => &args.connect,
            ClientCommand::Lock(args) => &args.connect,
            ClientCommand::Elect(args) => &args.connect,
            ClientCommand::Queue(args) => &args.connect,
            ClientCommand::Snapshot(args) => &args.connect,
        }
    }
}

/// `conclave cluster ...`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    connect: Connect,
    #[command(subcommand)]
    command: ClusterCommand,
}

/// Cluster subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Each endpoint's view: id, role, leader, term, commit and applied index.
    Status,
    /// The members: id, role, peer and client address.
    Members,
    /// Adds a learner.
    Add {
        /// The new node's id.
        id: u64,
        /// Where peers reach it.
        peer_address: String,
        /// Where clients reach it.
        #[arg(default_value = "")]
        client_address: String,
    },
    /// Makes a learner a voter.
    Promote {
        /// The learner.
        id: u64,
    },
    /// Removes a member.
    Remove {
        /// The member.
        id: u64,
    },
    /// Hands leadership to a voter.
    TransferLeader {
        /// The voter.
        id: u64,
    },
}

/// `conclave kv ...`.
#[derive(Debug, Args)]
pub struct KvArgs {
    #[command(flatten)]
    connect: Connect,
    /// The kv machine's name.
    #[arg(long, default_value = "kv", global = true)]
    machine: String,
    #[command(subcommand)]
    command: KvCommand,
}

/// Kv subcommands.
#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Prints `key=value` for a key (or every key with the prefix).
    Get {
        /// The key.
        key: String,
        /// Treat the key as a prefix.
        #[arg(long)]
        prefix: bool,
    },
    /// Sets a key; prints the revision.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Deletes a key (or every key with the prefix); prints how many.
    Del {
        /// The key.
        key: String,
        /// Treat the key as a prefix.
        #[arg(long)]
        prefix: bool,
    },
    /// Prints `PUT key=value` / `DELETE key` for each change, until Ctrl-C or `--count`.
    Watch {
        /// The key.
        key: String,
        /// Treat the key as a prefix.
        #[arg(long)]
        prefix: bool,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// If every `--compare key=value` holds, applies the `--put`s, else the `--else-put`s;
    /// prints `SUCCESS` or `FAILURE`.
    Txn {
        /// `key=value`: the key must hold exactly this value (empty: must not exist).
        #[arg(long)]
        compare: Vec<String>,
        /// `key=value` to put on success.
        #[arg(long)]
        put: Vec<String>,
        /// `key=value` to put on failure.
        #[arg(long)]
        else_put: Vec<String>,
    },
}

/// `conclave tree ...`.
#[derive(Debug, Args)]
pub struct TreeArgs {
    #[command(flatten)]
    connect: Connect,
    /// The tree machine's name.
    #[arg(long, default_value = "tree", global = true)]
    machine: String,
    #[command(subcommand)]
    command: TreeCommand,
}

/// Tree subcommands.
#[derive(Debug, Subcommand)]
pub enum TreeCommand {
    /// Lists the children of a node.
    Ls {
        /// The node.
        path: String,
    },
    /// Prints a node's data.
    Get {
        /// The node.
        path: String,
    },
    /// Creates a node; prints its path.
    Create {
        /// The node.
        path: String,
        /// Its data.
        #[arg(default_value = "")]
        data: String,
        /// Append a sequence number to the name.
        #[arg(long)]
        sequential: bool,
    },
    /// Sets a node's data.
    Set {
        /// The node.
        path: String,
        /// The data.
        data: String,
        /// The expected version (-1: any).
        #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
        version: i32,
    },
    /// Deletes a node.
    Rm {
        /// The node.
        path: String,
        /// The expected version (-1: any).
        #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
        version: i32,
    },
    /// Prints the node's data after each change (`<absent>` when deleted), until Ctrl-C or
    /// `--count`.
    Watch {
        /// The node.
        path: String,
        /// Stop after this many lines (the first is the current data).
        #[arg(long)]
        count: Option<u64>,
    },
}

/// `conclave lock NAME -- COMMAND...`.
#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(flatten)]
    connect: Connect,
    /// The lock machine's name.
    #[arg(long, default_value = "locks")]
    machine: String,
    /// The session timeout in milliseconds: how long the lock outlives a frozen client.
    #[arg(long, default_value_t = 10_000)]
    session_timeout_ms: u64,
    /// The lock.
    name: String,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// `conclave elect NAME [-- COMMAND...]`.
#[derive(Debug, Args)]
pub struct ElectArgs {
    #[command(flatten)]
    connect: Connect,
    /// The election machine's name.
    #[arg(long, default_value = "elections")]
    machine: String,
    /// The value to campaign with.
    #[arg(long, default_value = "")]
    value: String,
    /// The election.
    name: String,
    /// What to run while leader (default: wait for Ctrl-C).
    #[arg(last = true)]
    command: Vec<String>,
}

/// `conclave queue ...`.
#[derive(Debug, Args)]
pub struct QueueArgs {
    #[command(flatten)]
    connect: Connect,
    /// The queue machine's name.
    #[arg(long, default_value = "queues", global = true)]
    machine: String,
    #[command(subcommand)]
    command: QueueCommand,
}

/// Queue subcommands.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Appends an item; prints its id.
    Offer {
        /// The queue.
        name: String,
        /// The item.
        data: String,
    },
    /// Takes the oldest item, prints it and acknowledges it; exits 3 when empty.
    Poll {
        /// The queue.
        name: String,
        /// Wait for an item instead of exiting when empty.
        #[arg(long)]
        wait: bool,
    },
}

/// `conclave snapshot ...`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    connect: Connect,
    #[command(subcommand)]
    command: SnapshotCommand,
}

/// Snapshot subcommands.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Saves the serving node's latest snapshot to FILE (checked by size and CRC).
    Save {
        /// Where to write it.
        file: std::path::PathBuf,
    },
}

/// Why a client subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The cluster refused or could not be reached.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// A local file or process failed.
    #[error("{what}: {error}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        error: std::io::Error,
    },
    /// An argument is malformed.
    #[error("{0}")]
    Usage(String),
}

/// Runs a client subcommand on its own runtime and turns the outcome into the exit code,
/// printing a failure as one line on stderr; what `main` calls.
pub fn main(command: ClientCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("conclave: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("conclave: {}", error.to_string().replace('\n', " "));
            error.exit_code()
        }
    }
}

impl CliError {
    /// The exit code for this failure.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}
