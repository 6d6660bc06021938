//! The `test` and `soak` subcommands of `conclave-jepsen`.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::HarnessError;
use super::nemesis::{NemesisConfig, NemesisMode};
use super::process::CommandTemplate;
use super::runner::{TestConfig, TestResult, run_test};
use super::workload::WorkloadKind;

/// The node command line used unless `--server-command` says otherwise.
pub const DEFAULT_SERVER_COMMAND: &str = "conclave serve --node-id {id} --data-dir {data_dir} \
     --peer-listen {peer_address} --client-listen {client_address} \
     --initial-cluster {cluster} --initial-cluster-clients {cluster_clients} --config /dev/null";

/// Which runs a `test` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Matrix {
    /// Every workload against partition, kill and pause, about 20 s each (CI's short
    /// matrix).
    Short,
}

/// Arguments of `conclave-jepsen test`.
#[derive(Debug, Clone, clap::Args)]
pub struct TestArguments {
    /// Workloads to run (repeat the flag for several).
    #[arg(long = "workload", value_enum, default_values_t = [WorkloadKind::Register])]
    pub workloads: Vec<WorkloadKind>,
    /// Nemesis modes to run each workload against (repeat the flag for several).
    #[arg(long = "nemesis", value_enum, default_values_t = [NemesisMode::Partition])]
    pub nemeses: Vec<NemesisMode>,
    /// A preset matrix of workloads and nemeses (overrides --workload, --nemesis and
    /// --duration-seconds).
    #[arg(long, value_enum)]
    pub matrix: Option<Matrix>,
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Workers running operations at once.
    #[arg(long, default_value_t = 5)]
    pub concurrency: u64,
    /// The most operations per second over all workers.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// How long each run's workload and nemesis last.
    #[arg(long, default_value_t = 20)]
    pub duration_seconds: u64,
    /// Seed of the nemesis schedule and the workers' choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The node command line; placeholders {id} {data_dir} {client_address}
    /// {peer_address} {peers} {cluster} {cluster_clients} {cluster_ids}. A bare `conclave`
    /// program is looked up next to this executable first.
    #[arg(long, default_value = DEFAULT_SERVER_COMMAND)]
    pub server_command: String,
    /// Where report folders go (default: jepsen-reports/<unix time>).
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// Session timeout the workers ask for.
    #[arg(long, default_value_t = 10_000)]
    pub session_timeout_ms: u64,
    /// How long one operation may take before it is recorded as unknown.
    #[arg(long, default_value_t = 2_000)]
    pub operation_timeout_ms: u64,
    /// How long the cluster may take to elect a leader at start and after healing.
    #[arg(long, default_value_t = 30_000)]
    pub recovery_timeout_ms: u64,
    /// The checker's time budget per run.
    #[arg(long, default_value_t = 60)]
    pub check_duration_max_seconds: u64,
    /// Shortest quiet period before a fault.
    #[arg(long, default_value_t = 1_000)]
    pub quiet_ms_min: u64,
    /// Longest quiet period before a fault.
    #[arg(long, default_value_t = 3_000)]
    pub quiet_ms_max: u64,
    /// Shortest fault.
    #[arg(long, default_value_t = 2_000)]
    pub fault_ms_min: u64,
    /// Longest fault.
    #[arg(long, default_value_t = 5_000)]
    pub fault_ms_max: u64,
    /// Partitions also cut client traffic to the minority side.
    #[arg(long)]
    pub partition_clients: bool,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// Arguments of `conclave-jepsen soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArguments {
    /// Total soak time in seconds: runs follow each other, seed after seed, until then.
    #[arg(long)]
    pub duration: u64,
    /// The runs' settings (each run lasts --duration-seconds).
    #[command(flatten)]
    pub test: TestArguments,
}

fn resolve_program(template: &mut CommandTemplate) {
    if template.words.first().map(String::as_str) == Some("conclave")
        && let Ok(executable) = std::env::current_exe()
        && let Some(folder) = executable.parent()
    {
        let sibling = folder.join("conclave");
        if sibling.is_file() {
            template.words[0] = sibling.display().to_string();
        }
    }
}

fn default_report_dir() -> PathBuf {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    PathBuf::from("jepsen-reports").join(seconds.to_string())
}

/// The runs the arguments ask for, in order.
pub fn plan(
    arguments: &TestArguments,
    seed: u64,
    root: &std::path::Path,
) -> Result<Vec<TestConfig>, HarnessError> {
    let mut template = CommandTemplate::parse(&arguments.server_command)?;
    resolve_program(&mut template);
    let (workloads, nemeses, duration_seconds) = match arguments.matrix {
        Some(Matrix::Short) => (
            WorkloadKind::ALL.to_vec(),
            vec![
                NemesisMode::Partition,
                NemesisMode::Kill,
                NemesisMode::Pause,
            ],
            20,
        ),
        None => (
            arguments.workloads.clone(),
            arguments.nemeses.clone(),
            arguments.duration_seconds,
        ),
    };
    let mut configs = Vec::new();
    for &workload in &workloads {
        for &mode in &nemeses {
            let name = format!(
                "{}-{}-seed{seed}",
                workload.name(),
                format!("{mode:?}").to_lowercase()
            );
            let config = TestConfig {
                workload,
                nemesis: NemesisConfig {
                    mode,
                    quiet_ms_min: arguments.quiet_ms_min,
                    quiet_ms_max: arguments.quiet_ms_max,
                    fault_ms_min: arguments.fault_ms_min,
                    fault_ms_max: arguments.fault_ms_max,
                },
                node_count: arguments.nodes,
                concurrency: arguments.concurrency,
                rate_per_second_max: arguments.rate,
                duration: Duration::from_secs(duration_seconds),
                seed,
                template: template.clone(),
                folder: root.join(name),
                session_timeout_ms: arguments.session_timeout_ms,
                operation_timeout: Duration::from_millis(arguments.operation_timeout_ms),
                recovery_timeout: Duration::from_millis(arguments.recovery_timeout_ms),
                check_duration_max: Duration::from_secs(arguments.check_duration_max_seconds),
                partition_clients: arguments.partition_clients,
                progress: !arguments.no_progress,
            };
            config.validate()?;
            configs.push(config);
        }
    }
    Ok(configs)
}

fn summary_table(results: &[Result<TestResult, (String, HarnessError)>]) -> String {
    let mut text = format!(
        "{:<10} {:<10} {:>6} {:>7} {:>6} {:>6} {:>7} {:>8}  {}\n",
        "workload", "nemesis", "seed", "ok", "fail", "info", "faults", "seconds", "verdict"
    );
    for result in results {
        match result {
            Ok(result) => text.push_str(&format!(
                "{:<10} {:<10} {:>6} {:>7} {:>6} {:>6} {:>7} {:>8.1}  {}\n",
                result.workload.name(),
                result.nemesis,
                result.seed,
                result.operations.ok,
                result.operations.fail,
                result.operations.info,
                result.faults,
                result.elapsed_seconds,
                result.verdict
            )),
            Err((name, error)) => text.push_str(&format!("{name:<39} ERROR: {error}\n")),
        }
    }
    text
}

/// The exit code of a set of runs: 1 on any violation, 3 on any error, 2 on any unknown
/// verdict, 0 when every run was linearizable.
pub fn exit_code(results: &[Result<TestResult, (String, HarnessError)>]) -> u8 {
    if results
        .iter()
        .any(|result| matches!(result, Ok(result) if result.violation))
    {
        1
    } else if results.iter().any(Result::is_err) {
        3
    } else if results
        .iter()
        .any(|result| matches!(result, Ok(result) if result.verdict != "Linearizable"))
    {
        2
    } else {
        0
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, HarnessError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| HarnessError::io("starting the tokio runtime", error))
}

fn run_configs(
    runtime: &tokio::runtime::Runtime,
    configs: Vec<TestConfig>,
    results: &mut Vec<Result<TestResult, (String, HarnessError)>>,
) {
    for config in configs {
        let name = config.folder.display().to_string();
        let result = runtime.block_on(run_test(&config));
        match &result {
            Ok(result) => eprintln!(
                "{name}: {} ({:.1} s)",
                result.verdict, result.elapsed_seconds
            ),
            Err(error) => eprintln!("{name}: error: {error}"),
        }
        results.push(result.map_err(|error| (name, error)));
    }
}

/// `conclave-jepsen test`: runs, prints the summary table, returns the exit code.
pub fn test_command(arguments: &TestArguments) -> u8 {
    let root = arguments
        .report_dir
        .clone()
        .unwrap_or_else(default_report_dir);
    let started = Instant::now();
    let configs = match plan(arguments, arguments.seed, &root) {
        Ok(configs) => configs,
        Err(error) => {
            eprintln!("error: {error}");
            return 3;
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return 3;
        }
    };
    let mut results = Vec::new();
    run_configs(&runtime, configs, &mut results);
    print!("{}", summary_table(&results));
    println!(
        "reports: {} ({:.1} s in all)",
        root.display(),
        started.elapsed().as_secs_f64()
    );
    exit_code(&results)
}

/// `conclave-jepsen soak`: runs seed after seed until the duration is spent or a run fails.
pub fn soak_command(arguments: &SoakArguments) -> u8 {
    let root = arguments
        .test
        .report_dir
        .clone()
        .unwrap_or_else(default_report_dir);
    let deadline = Instant::now() + Duration::from_secs(arguments.duration);
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return 3;
        }
    };
    let mut results = Vec::new();
    let mut seed = arguments.test.seed;
    while Instant::now() < deadline {
        let configs = match plan(&arguments.test, seed, &root) {
            Ok(configs) => configs,
            Err(error) => {
                eprintln!("error: {error}");
                return 3;
            }
        };
        run_configs(&runtime, configs, &mut results);
        if exit_code(&results) != 0 {
            break;
        }
        seed += 1;
    }
    print!("{}", summary_table(&results));
    println!("reports: {}", root.display());
    exit_code(&results)
}
