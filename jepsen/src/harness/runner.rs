//! One test run: start the cluster, run the workers and the nemesis for the duration,
//! heal, recover, run the final operations, check the history and write the report folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Mutex;

use super::HarnessError;
use super::client::NativeSession;
use super::cluster::Cluster;
use super::history::{History, NemesisLog, Outcome};
use super::nemesis::{Fault, NemesisConfig, Phase, schedule};
use super::partition::Partition;
use super::plot;
use super::process::CommandTemplate;
use super::random::Random;
use super::workload::{self, Worker, WorkloadKind};
use crate::check::{self, CheckConfig, Format, Verdict};

/// Everything one test run needs.
#[derive(Debug, Clone)]
pub struct TestConfig {
    /// The workload.
    pub workload: WorkloadKind,
    /// The nemesis and its timing.
    pub nemesis: NemesisConfig,
    /// How many nodes (1 to 9).
    pub node_count: u64,
    /// How many workers run operations at once.
    pub concurrency: u64,
    /// The most operations per second over all workers.
    pub rate_per_second_max: f64,
    /// How long the workers and the nemesis run.
    pub duration: Duration,
    /// The seed of the nemesis schedule and the workers' choices.
    pub seed: u64,
    /// The node command line.
    pub template: CommandTemplate,
    /// The run's own report folder (created).
    pub folder: PathBuf,
    /// The session timeout the workers ask for.
    pub session_timeout_ms: u64,
    /// How long one operation may take before it is recorded as unknown.
    pub operation_timeout: Duration,
    /// How long the cluster may take to elect a leader at start and after healing.
    pub recovery_timeout: Duration,
    /// The checker's time budget.
    pub check_duration_max: Duration,
    /// Whether partitions also cut the clients' links to the minority side (clients
    /// then reach only the majority, and operations sent to the minority fail or time out).
    pub partition_clients: bool,
    /// Whether to draw a progress bar.
    pub progress: bool,
}

impl TestConfig {
    /// Checks every bound.
    pub fn validate(&self) -> Result<(), HarnessError> {
        self.nemesis.validate()?;
        if !(1..=256).contains(&self.concurrency) {
            return Err(HarnessError::Config(
                "concurrency must be in 1..=256".to_string(),
            ));
        }
        if !(self.rate_per_second_max.is_finite() && self.rate_per_second_max > 0.0) {
            return Err(HarnessError::Config(
                "the rate must be a positive number".to_string(),
            ));
        }
        if self.duration.is_zero() || self.operation_timeout.is_zero() {
            return Err(HarnessError::Config(
                "the duration and the operation timeout must be positive".to_string(),
            ));
        }
        Ok(())
    }
}

/// Operation counts by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// `ok` operations.
    pub ok: u64,
    /// `fail` operations.
    pub fail: u64,
    /// `info` operations.
    pub info: u64,
}

/// What a run found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TestResult {
    /// The workload.
    pub workload: WorkloadKind,
    /// The nemesis mode.
    pub nemesis: String,
    /// The seed.
    pub seed: u64,
    /// The checker's verdict, as text.
    pub verdict: String,
    /// Whether the verdict is a violation.
    pub violation: bool,
    /// Operations by outcome.
    pub operations: Counts,
    /// Faults started.
    pub faults: usize,
    /// How long the run took, in seconds (cluster start to report).
    pub elapsed_seconds: f64,
    /// The report folder.
    pub folder: PathBuf,
}

fn report_error(path: &Path, error: impl std::fmt::Display) -> HarnessError {
    HarnessError::Report {
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

fn write_file(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), HarnessError> {
    std::fs::write(path, contents).map_err(|error| report_error(path, error))
}

/// Runs one test and writes its report folder.
pub async fn run_test(config: &TestConfig) -> Result<TestResult, HarnessError> {
    config.validate()?;
    let run_start = Instant::now();
    std::fs::create_dir_all(&config.folder).map_err(|error| report_error(&config.folder, error))?;
    let mut cluster =
        Cluster::prepare(config.node_count, config.template.clone(), &config.folder).await?;
    cluster.processes.start_all()?;
    cluster.wait_for_leader(config.recovery_timeout).await?;
    let addresses = cluster
        .ids()
        .iter()
        .map(|&id| cluster.client_address(id))
        .collect::<Result<Vec<_>, _>>()?;
    let cluster = Arc::new(Mutex::new(cluster));

    let clock = Instant::now();
    let history = Arc::new(History::create(
        &config.folder.join("history.jsonl"),
        clock,
    )?);
    let nemesis_log = Arc::new(NemesisLog::new(clock));
    let stop = Arc::new(AtomicBool::new(false));

    let mut workers = Vec::new();
    for index in 0..config.concurrency {
        let mut preferred = addresses.clone();
        let node_count = preferred.len();
        preferred.rotate_left(usize::try_from(index).unwrap_or(0) % node_count);
        let session = NativeSession::new(
            preferred,
            config.session_timeout_ms,
            config.operation_timeout,
        );
        let worker = Worker::new(
            session,
            index,
            config.concurrency,
            config.seed ^ (index + 1),
        );
        workers.push(tokio::spawn(run_worker(
            config.workload,
            worker,
            Arc::clone(&history),
            Arc::clone(&stop),
            Duration::from_secs_f64(config.concurrency as f64 / config.rate_per_second_max),
        )));
    }
    let phases = schedule(config.seed, &config.nemesis, config.duration);
    let nemesis = tokio::spawn(run_nemesis(
        phases.clone(),
        Arc::clone(&cluster),
        Arc::clone(&nemesis_log),
        clock,
        config.partition_clients,
    ));

    wait_with_progress(config, &history, &nemesis_log, clock).await;
    stop.store(true, Ordering::Relaxed);
    let mut stopped_workers = Vec::new();
    for handle in workers {
        if let Ok(worker) = handle.await {
            stopped_workers.push(worker);
        }
    }
    let _ = nemesis.await;

    // Heal everything, whatever the nemesis left, and let the cluster recover.
    {
        let mut guard = cluster.lock().await;
        guard.proxy.heal_all();
        guard.processes.recover_all()?;
        guard.wait_for_leader(config.recovery_timeout).await?;
    }
    for worker in &mut stopped_workers {
        if !worker.session.is_open() {
            let _ = worker.session.open().await;
        }
        workload::final_operations(config.workload, worker, &history).await;
    }
    history.flush()?;
    let end_ns = history.now_ns();
    {
        let mut guard = cluster.lock().await;
        guard.processes.kill_all()?;
    }
    nemesis_log.write(&config.folder.join("nemesis.jsonl"))?;
    let result = write_report(
        config,
        &history,
        &nemesis_log,
        end_ns,
        run_start,
        phases.len(),
    )?;
    Ok(result)
}

async fn run_worker(
    kind: WorkloadKind,
    mut worker: Worker,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    interval: Duration,
) -> Worker {
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        // Pacing to the configured rate, not waiting for a condition.
        tokio::time::sleep_until(next.into()).await;
        next = Instant::now().max(next) + interval;
        if !worker.session.is_open() && !worker.session.open().await {
            continue;
        }
        worker.session.keep_alive_if_due().await;
        workload::step(kind, &mut worker, &history).await;
    }
    worker
}

async fn wait_with_progress(
    config: &TestConfig,
    history: &History,
    nemesis: &NemesisLog,
    clock: Instant,
) {
    let bar = if config.progress {
        let bar = ProgressBar::new(config.duration.as_secs().max(1));
        if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} s {msg}") {
            bar.set_style(style);
        }
        bar.set_prefix(format!(
            "{} / {:?}",
            config.workload.name(),
            config.nemesis.mode
        ));
        bar
    } else {
        ProgressBar::hidden()
    };
    while clock.elapsed() < config.duration {
        // Redrawing the bar a few times per second; the run's end is a deadline.
        tokio::time::sleep(Duration::from_millis(250)).await;
        let samples = history.samples();
        let faults = nemesis
            .events()
            .iter()
            .filter(|event| event.kind == "start")
            .count();
        bar.set_position(clock.elapsed().as_secs());
        bar.set_message(format!("{} ops, {faults} faults", samples.len()));
    }
    bar.finish_and_clear();
}

async fn run_nemesis(
    phases: Vec<Phase>,
    cluster: Arc<Mutex<Cluster>>,
    log: Arc<NemesisLog>,
    clock: Instant,
    partition_clients: bool,
) {
    for phase in phases {
        tokio::time::sleep_until((clock + Duration::from_millis(phase.start_ms)).into()).await;
        let mut random = Random::new(phase.target_seed);
        let name = phase.fault.name();
        let targets = {
            let mut guard = cluster.lock().await;
            match start_fault(&mut guard, phase.fault, &mut random, partition_clients).await {
                Ok((targets, detail)) => {
                    log.record("start", &name, detail);
                    targets
                }
                Err(error) => {
                    log.record("start", &name, format!("failed: {error}"));
                    Vec::new()
                }
            }
        };
        tokio::time::sleep_until((clock + Duration::from_millis(phase.stop_ms)).into()).await;
        let mut guard = cluster.lock().await;
        match stop_fault(&mut guard, phase.fault, &targets).await {
            Ok(()) => log.record("stop", &name, format!("{targets:?}")),
            Err(error) => log.record("stop", &name, format!("failed: {error}")),
        }
    }
}

async fn leader_or_random(cluster: &Cluster, random: &mut Random) -> u64 {
    match cluster.leader().await {
        Some(leader) => leader,
        None => *random.choose(&cluster.ids()),
    }
}

/// Starts a fault; returns the nodes it targets and a description.
async fn start_fault(
    cluster: &mut Cluster,
    fault: Fault,
    random: &mut Random,
    partition_clients: bool,
) -> Result<(Vec<u64>, String), HarnessError> {
    let ids = cluster.ids();
    let targets = match fault {
        Fault::Partition(kind) => {
            let leader = cluster.leader().await;
            let partition = Partition::generate(kind, &ids, leader, random);
            if partition_clients {
                cluster.proxy.apply_with_clients(&partition, &ids);
                let minority = partition.minority_nodes(&ids);
                let detail = format!("cut {:?}, clients cut from {minority:?}", partition.cut);
                return Ok((Vec::new(), detail));
            }
            cluster.proxy.apply(&partition);
            return Ok((Vec::new(), format!("cut {:?}", partition.cut)));
        }
        Fault::KillOne | Fault::PauseOne | Fault::RemoveVoter => vec![*random.choose(&ids)],
        Fault::KillLeader | Fault::PauseLeader => vec![leader_or_random(cluster, random).await],
        Fault::KillMinority => {
            let mut shuffled = ids.clone();
            random.shuffle(&mut shuffled);
            shuffled.truncate((ids.len() - 1) / 2);
            shuffled
        }
        Fault::KillAll => ids.clone(),
        Fault::TransferLeader => {
            let leader = cluster.leader().await;
            let others: Vec<u64> = ids
                .iter()
                .copied()
                .filter(|&id| Some(id) != leader)
                .collect();
            let target = *random.choose(if others.is_empty() { &ids } else { &others });
            cluster.transfer_leader(target).await?;
            return Ok((vec![target], format!("transfer to {target}")));
        }
    };
    for &target in &targets {
        match fault {
            Fault::PauseOne | Fault::PauseLeader => cluster.processes.pause(target)?,
            Fault::RemoveVoter => cluster.remove_member(target).await?,
            _ => cluster.processes.kill(target)?,
        }
    }
    Ok((targets.clone(), format!("{} {targets:?}", fault.name())))
}

async fn stop_fault(
    cluster: &mut Cluster,
    fault: Fault,
    targets: &[u64],
) -> Result<(), HarnessError> {
    match fault {
        Fault::Partition(_) => cluster.proxy.heal_all(),
        Fault::KillOne | Fault::KillLeader | Fault::KillMinority | Fault::KillAll => {
            for &target in targets {
                cluster.processes.start(target)?;
            }
        }
        Fault::PauseOne | Fault::PauseLeader => {
            for &target in targets {
                cluster.processes.resume(target)?;
            }
        }
        Fault::RemoveVoter => {
            for &target in targets {
                cluster.add_member(target).await?;
            }
        }
        Fault::TransferLeader => {}
    }
    Ok(())
}

fn write_report(
    config: &TestConfig,
    history: &History,
    nemesis: &NemesisLog,
    end_ns: u64,
    run_start: Instant,
    faults: usize,
) -> Result<TestResult, HarnessError> {
    let samples = history.samples();
    let mut operations = Counts::default();
    for sample in &samples {
        match sample.outcome {
            Outcome::Ok => operations.ok += 1,
            Outcome::Fail => operations.fail += 1,
            Outcome::Info => operations.info += 1,
        }
    }
    let periods = nemesis.periods(end_ns);
    let title = format!(
        "{} / {:?} / seed {}",
        config.workload.name(),
        config.nemesis.mode,
        config.seed
    );
    write_file(
        &config.folder.join("latency.svg"),
        plot::latency_svg(&title, &samples, &periods, end_ns),
    )?;
    write_file(
        &config.folder.join("throughput.svg"),
        plot::throughput_svg(&title, &samples, &periods, end_ns),
    )?;
    let text = std::fs::read_to_string(history.path())
        .map_err(|error| report_error(history.path(), error))?;
    let check_config = CheckConfig {
        duration_max: config.check_duration_max,
        ..CheckConfig::default()
    };
    let analysis = check::check_text(
        &text,
        Format::JsonLines,
        config.workload.model(),
        &check_config,
        &title,
    )
    .map_err(|error| HarnessError::Check {
        workload: config.workload.name().to_string(),
        reason: error.to_string(),
    })?;
    write_file(&config.folder.join("timeline.html"), &analysis.html)?;
    write_file(&config.folder.join("check.txt"), &analysis.text)?;
    let verdict = analysis.report.verdict;
    let result = TestResult {
        workload: config.workload,
        nemesis: format!("{:?}", config.nemesis.mode).to_lowercase(),
        seed: config.seed,
        verdict: format!("{verdict:?}"),
        violation: verdict == Verdict::NotLinearizable,
        operations,
        faults,
        elapsed_seconds: run_start.elapsed().as_secs_f64(),
        folder: config.folder.clone(),
    };
    let json = serde_json::to_string_pretty(&result)
        .map_err(|error| report_error(&config.folder, error))?;
    write_file(&config.folder.join("results.json"), json)?;
    Ok(result)
}
