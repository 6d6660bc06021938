//! `conclave`: the reference server.
//!
//! - `conclave serve`: one node, configured by `conclave.toml` (or `--config`), `CONCLAVE_*`
//!   environment variables and flags, in increasing precedence (see `conclave serve --help`
//!   and the server README). A configuration mistake ends with one line naming the setting
//!   and exit code 2. SIGTERM or Ctrl-C stop it gracefully.
//! - `conclave dev`: a local 3-node cluster on 127.0.0.1 as child processes of this same
//!   executable, data under `./conclave-data/dev`; prints the endpoints once a leader is
//!   elected; Ctrl-C (or SIGTERM) stops every node cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Arg, ArgMatches, Args, FromArgMatches, Parser, Subcommand};
use conclave_server::config::{SETTINGS, ServerConfig, Settings};
use conclave_server::server::{Server, ServerError};

/// The exit code of a configuration mistake (the same as clap's usage errors).
const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "conclave",
    version,
    about = "Conclave: a replicated coordinator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs one node of a cluster.
    Serve(ServeArgs),
    /// Runs a local 3-node cluster on 127.0.0.1 (child processes) until Ctrl-C.
    Dev(DevArgs),
    /// The client subcommands (cluster, kv, tree, lock, elect, queue, snapshot).
    #[command(flatten)]
    Client(conclave_server::cli::ClientCommand),
}

/// `conclave serve`: a config file and one flag per setting of [`SETTINGS`].
#[derive(Debug, Clone, Default)]
struct ServeArgs {
    config: Option<PathBuf>,
    flags: Settings,
}

impl FromArgMatches for ServeArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = ServeArgs::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        if let Some(path) = matches.get_one::<PathBuf>("config") {
            self.config = Some(path.clone());
        }
        for (name, _) in SETTINGS {
            if let Some(value) = matches.get_one::<String>(name) {
                self.flags.set(name, value.clone());
            }
        }
        Ok(())
    }
}

impl Args for ServeArgs {
    fn augment_args(command: clap::Command) -> clap::Command {
        let command = command.arg(
            Arg::new("config")
                .long("config")
                .env("CONCLAVE_CONFIG")
                .value_parser(clap::value_parser!(PathBuf))
                .help("the configuration file (default: ./conclave.toml when it exists)"),
        );
        SETTINGS.iter().fold(command, |command, (name, help)| {
            command.arg(
                Arg::new(*name)
                    .long(name.replace('_', "-"))
                    .value_name("VALUE")
                    .help(format!(
                        "{help} [env: CONCLAVE_{}]",
                        name.to_ascii_uppercase()
                    )),
            )
        })
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        ServeArgs::augment_args(command)
    }
}

#[derive(Debug, Clone, clap::Args)]
struct DevArgs {
    /// Where the three nodes keep their data (node-1, node-2, node-3 inside).
    #[arg(long, default_value = "conclave-data/dev")]
    data_dir: PathBuf,
    /// Node i listens for peers on base+i, for native clients on base+10+i, for HTTP on
    /// base+20+i, for etcd clients on base+30+i and for ZooKeeper clients on base+40+i.
    #[arg(long, default_value_t = 7000)]
    base_port: u16,
    /// The nodes' log level.
    #[arg(long, default_value = "warn")]
    log_level: String,
    /// How long to wait for the cluster to elect a leader before giving up, in ms.
    #[arg(long, default_value_t = 10_000)]
    ready_timeout_ms: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Dev(args) => dev::run(args),
        Command::Client(command) => conclave_server::cli::main(command),
    }
}

/// Prints a one-line error and returns its exit code.
fn fail(message: impl std::fmt::Display, code: u8) -> ExitCode {
    let line = message.to_string().replace('\n', " ");
    eprintln!("conclave: {line}");
    ExitCode::from(code)
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match load_config(&args) {
        Ok(config) => config,
        Err(error) => return fail(error, EXIT_CONFIG),
    };
    tracing_subscriber::fmt()
        .with_max_level(config.log_level)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(format!("cannot start the runtime: {error}"), 1),
    };
    runtime.block_on(async move {
        let server = match Server::builder().config(config).start().await {
            Ok(server) => server,
            Err(error @ ServerError::Node(_)) => return fail(error, 1),
            Err(error) => return fail(error, EXIT_CONFIG),
        };
        let signal = wait_for_signal().await;
        tracing::info!(signal, "shutting down");
        match server.shutdown().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(format!("shutdown: {error}"), 1),
        }
    })
}

fn load_config(args: &ServeArgs) -> Result<ServerConfig, Box<dyn std::error::Error>> {
    let mut settings = match &args.config {
        Some(path) => Settings::from_file(path)?,
        None => {
            let default = PathBuf::from("conclave.toml");
            if default.exists() {
                Settings::from_file(&default)?
            } else {
                Settings::default()
            }
        }
    };
    settings.merge(Settings::from_environment(std::env::vars()));
    settings.merge(args.flags.clone());
    Ok(ServerConfig::from_settings(&settings)?)
}

/// Waits for Ctrl-C or SIGTERM; returns which.
async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "interrupt",
                _ = terminate.recv() => "terminate",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "interrupt"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "interrupt"
    }
}

mod dev {
    //! `conclave dev`: three `conclave serve` children on loopback.

    use std::process::{Child, Stdio};
    use std::time::Instant;

    use conclave_transport::client_api::StatusRequest;
    use conclave_transport::client_api::cluster_client::ClusterClient;

    use super::*;

    /// The nodes of the dev cluster.
    const NODES: [u64; 3] = [1, 2, 3];

    struct Endpoints {
        peer: SocketAddr,
        client: SocketAddr,
        http: SocketAddr,
        etcd: SocketAddr,
        zookeeper: SocketAddr,
    }

    fn endpoints(base_port: u16, id: u64) -> Option<Endpoints> {
        let port = |offset: u64| -> Option<SocketAddr> {
            let port = u16::try_from(u64::from(base_port) + offset).ok()?;
            Some(SocketAddr::from(([127, 0, 0, 1], port)))
        };
        Some(Endpoints {
            peer: port(id)?,
            client: port(10 + id)?,
            http: port(20 + id)?,
            etcd: port(30 + id)?,
            zookeeper: port(40 + id)?,
        })
    }

    pub(super) fn run(args: DevArgs) -> ExitCode {
        let Some(nodes) = NODES
            .iter()
            .map(|id| endpoints(args.base_port, *id).map(|endpoints| (*id, endpoints)))
            .collect::<Option<Vec<_>>>()
        else {
            return fail(
                "invalid setting base_port: the ports above it overflow",
                EXIT_CONFIG,
            );
        };
        let executable = match std::env::current_exe() {
            Ok(path) => path,
            Err(error) => return fail(format!("cannot find this executable: {error}"), 1),
        };
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => return fail(format!("cannot start the runtime: {error}"), 1),
        };
        let join = |render: &dyn Fn(&Endpoints) -> SocketAddr| {
            nodes
                .iter()
                .map(|(id, endpoints)| format!("{id}={}", render(endpoints)))
                .collect::<Vec<_>>()
                .join(",")
        };
        let initial_cluster = join(&|endpoints| endpoints.peer);
        let initial_cluster_clients = join(&|endpoints| endpoints.client);
        let mut children = Vec::new();
        for (id, endpoints) in &nodes {
            let spawned = std::process::Command::new(&executable)
                .arg("serve")
                .args(["--node-id", &id.to_string()])
                .arg("--data-dir")
                .arg(args.data_dir.join(format!("node-{id}")))
                .args(["--peer-listen", &endpoints.peer.to_string()])
                .args(["--client-listen", &endpoints.client.to_string()])
                .args(["--http-listen", &endpoints.http.to_string()])
                .args(["--etcd-listen", &endpoints.etcd.to_string()])
                .args(["--zookeeper-listen", &endpoints.zookeeper.to_string()])
                .args(["--initial-cluster", &initial_cluster])
                .args(["--initial-cluster-clients", &initial_cluster_clients])
                .args(["--log-level", &args.log_level])
                // The dev nodes take everything from the flags above, not from a
                // conclave.toml that happens to sit in the working directory.
                .args(["--config", "/dev/null"])
                .stdin(Stdio::null())
                .spawn();
            match spawned {
                Ok(child) => children.push(child),
                Err(error) => {
                    stop_all(&mut children);
                    return fail(format!("cannot start node {id}: {error}"), 1);
                }
            }
        }
        let clients: Vec<String> = nodes
            .iter()
            .map(|(_, endpoints)| format!("http://{}", endpoints.client))
            .collect();
        let deadline = Instant::now() + Duration::from_millis(args.ready_timeout_ms);
        let ready = runtime.block_on(wait_until_ready(&clients, &mut children, deadline));
        if let Err(reason) = ready {
            stop_all(&mut children);
            return fail(format!("the dev cluster did not start: {reason}"), 1);
        }
        println!(
            "conclave dev: a 3-node cluster is serving (data in {})",
            args.data_dir.display()
        );
        for (id, endpoints) in &nodes {
            println!(
                "  node {id}: native gRPC {}  etcd {}  zookeeper {}  http http://{}/metrics  peer {}",
                endpoints.client,
                endpoints.etcd,
                endpoints.zookeeper,
                endpoints.http,
                endpoints.peer
            );
        }
        println!("conclave dev: ready; press Ctrl-C to stop");
        let reason = runtime.block_on(wait_for_stop(&mut children));
        println!("conclave dev: stopping ({reason})");
        let clean = stop_all(&mut children);
        if clean {
            println!("conclave dev: stopped");
            ExitCode::SUCCESS
        } else {
            fail("a node did not stop cleanly", 1)
        }
    }

    /// Waits until every node answers Status with a known leader.
    async fn wait_until_ready(
        clients: &[String],
        children: &mut [Child],
        deadline: Instant,
    ) -> Result<(), String> {
        let mut pending: Vec<&String> = clients.iter().collect();
        while !pending.is_empty() {
            if let Some(exited) = first_exited(children) {
                return Err(exited);
            }
            if Instant::now() > deadline {
                return Err(format!("no leader known at {} in time", pending.len()));
            }
            let mut still = Vec::new();
            for endpoint in pending {
                if !leader_known(endpoint).await {
                    still.push(endpoint);
                }
            }
            pending = still;
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    async fn leader_known(endpoint: &str) -> bool {
        let Ok(mut client) = ClusterClient::connect(endpoint.to_string()).await else {
            return false;
        };
        match client.status(StatusRequest {}).await {
            Ok(response) => response.into_inner().leader_id != 0,
            Err(_) => false,
        }
    }

    fn first_exited(children: &mut [Child]) -> Option<String> {
        children
            .iter_mut()
            .enumerate()
            .find_map(|(index, child)| match child.try_wait() {
                Ok(Some(status)) => Some(format!("node {} exited ({status})", index + 1)),
                _ => None,
            })
    }

    /// Waits for Ctrl-C, SIGTERM or a node that exits on its own.
    async fn wait_for_stop(children: &mut [Child]) -> String {
        let signal = wait_for_signal();
        tokio::pin!(signal);
        let mut ticker = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                received = &mut signal => return received.to_string(),
                _ = ticker.tick() => {
                    if let Some(exited) = first_exited(children) {
                        return exited;
                    }
                }
            }
        }
    }

    /// Sends SIGTERM to every node still running and waits for each (killing one that
    /// takes longer than 15 s). True when each exited successfully.
    fn stop_all(children: &mut [Child]) -> bool {
        for child in children.iter_mut() {
            if let Ok(None) = child.try_wait() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut clean = true;
        for child in children.iter_mut() {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        // A node stopped by Ctrl-C from the terminal also exits with 0.
                        clean &= status.success();
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        clean = false;
                        break;
                    }
                }
            }
        }
        clean
    }
}
