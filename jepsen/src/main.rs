//! `conclave-jepsen`: command-line entry point.
//!
//! `conclave-jepsen check HISTORY --model MODEL` checks a recorded history
//! for linearizability, prints the verdict per partition and overall (with a
//! counterexample for a violation), and writes an HTML timeline next to the
//! history. Exit status: 0 linearizable, 1 not linearizable, 2 unknown,
//! 3 error.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use conclave_jepsen::check::{self, CheckConfig, Format, ModelName, Verdict};

#[derive(Parser)]
#[command(
    name = "conclave-jepsen",
    about = "Conclave's fault harness and linearizability checker"
)]
struct Command {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Check a history for linearizability.
    Check(CheckArguments),
    /// Run the fault harness against a cluster of real processes.
    Test(conclave_jepsen::harness::cli::TestArguments),
    /// Run the fault harness seed after seed for a duration.
    Soak(conclave_jepsen::harness::cli::SoakArguments),
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArgument {
    /// Guess from the first line.
    Auto,
    /// Conclave's JSON lines (jepsen/HISTORY.md).
    Json,
    /// Jepsen etcd register logs.
    Etcd,
    /// EDN-like key/value lines.
    Kv,
}

#[derive(clap::Args)]
struct CheckArguments {
    /// The history file.
    history: PathBuf,
    /// The model: register, kv, mutex, queue, queue-at-least-once, set, election.
    #[arg(long, value_parser = |text: &str| text.parse::<ModelName>())]
    model: ModelName,
    /// The history's format.
    #[arg(long, value_enum, default_value = "auto")]
    format: FormatArgument,
    /// Time budget in seconds; partitions still running end as unknown.
    #[arg(long, default_value_t = 60.0)]
    duration_max_seconds: f64,
    /// Memory budget: the most cached (set, state) pairs per partition.
    #[arg(long, default_value_t = CheckConfig::default().cache_entries_max)]
    cache_entries_max: usize,
    /// The most threads checking partitions at once (default: all cores).
    #[arg(long)]
    threads_max: Option<usize>,
    /// Check the history as one object instead of splitting it by key.
    #[arg(long)]
    no_partition: bool,
    /// Check every partition to the end, even after one has failed.
    #[arg(long)]
    all_partitions: bool,
    /// Where to write the HTML timeline (default: next to the history, with
    /// the extension .html).
    #[arg(long)]
    html: Option<PathBuf>,
}

fn html_path(history: &Path) -> PathBuf {
    let mut name = history
        .file_name()
        .map(|name| name.to_os_string())
        .unwrap_or_default();
    name.push(".html");
    history.with_file_name(name)
}

fn run_check(arguments: &CheckArguments) -> Result<Verdict, String> {
    let text = std::fs::read_to_string(&arguments.history)
        .map_err(|error| format!("cannot read {}: {error}", arguments.history.display()))?;
    let format = match arguments.format {
        FormatArgument::Auto => Format::detect(&text),
        FormatArgument::Json => Format::JsonLines,
        FormatArgument::Etcd => Format::EtcdLog,
        FormatArgument::Kv => Format::KvEdn,
    };
    if !(arguments.duration_max_seconds.is_finite() && arguments.duration_max_seconds > 0.0) {
        return Err("--duration-max-seconds must be a positive number".to_string());
    }
    let mut config = CheckConfig {
        duration_max: Duration::from_secs_f64(arguments.duration_max_seconds),
        cache_entries_max: arguments.cache_entries_max,
        partition: !arguments.no_partition,
        stop_on_first_violation: !arguments.all_partitions,
        ..CheckConfig::default()
    };
    if let Some(threads_max) = arguments.threads_max {
        config.threads_max = threads_max;
    }
    let title = arguments.history.display().to_string();
    let analysis = check::check_text(&text, format, arguments.model, &config, &title)
        .map_err(|error| format!("{}: {error}", arguments.history.display()))?;
    // A closed pipe (`| head`) is not an error worth a panic.
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(analysis.text.as_bytes());
    let html = arguments
        .html
        .clone()
        .unwrap_or_else(|| html_path(&arguments.history));
    std::fs::write(&html, &analysis.html)
        .map_err(|error| format!("cannot write {}: {error}", html.display()))?;
    let _ = writeln!(stdout, "timeline: {}", html.display());
    Ok(analysis.report.verdict)
}

fn main() -> ExitCode {
    let command = Command::parse();
    match command.action {
        Action::Check(arguments) => match run_check(&arguments) {
            Ok(Verdict::Linearizable) => ExitCode::from(0),
            Ok(Verdict::NotLinearizable) => ExitCode::from(1),
            Ok(Verdict::Unknown) => ExitCode::from(2),
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::from(3)
            }
        },
        Action::Test(arguments) => {
            ExitCode::from(conclave_jepsen::harness::cli::test_command(&arguments))
        }
        Action::Soak(arguments) => {
            ExitCode::from(conclave_jepsen::harness::cli::soak_command(&arguments))
        }
    }
}
