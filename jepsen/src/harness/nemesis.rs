//! Nemesis scheduling: which fault runs when, drawn from a seed so that a run's schedule
//! replays exactly. A schedule alternates quiet periods and fault periods; each fault has a
//! start (applied) and a stop (healed, restarted, resumed) phase.

use std::time::Duration;

use super::HarnessError;
use super::partition::PartitionKind;
use super::random::Random;

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// A network partition of that shape (peer links; client links stay up).
    Partition(PartitionKind),
    /// kill -9 of one random node, restarted at the stop phase.
    KillOne,
    /// kill -9 of the leader.
    KillLeader,
    /// kill -9 of a random minority.
    KillMinority,
    /// kill -9 of every node (a durability test: every acknowledged write must survive).
    KillAll,
    /// SIGSTOP of one random node, SIGCONT at the stop phase.
    PauseOne,
    /// SIGSTOP of the leader.
    PauseLeader,
    /// Removes a random voter through the admin API, and adds it back (learner, then
    /// promoted) at the stop phase.
    RemoveVoter,
    /// Asks the leader to hand leadership to another voter.
    TransferLeader,
}

impl Fault {
    /// The fault's name in reports and nemesis events.
    pub fn name(self) -> String {
        match self {
            Fault::Partition(kind) => {
                let kind = match kind {
                    PartitionKind::IsolateOne => "isolate-one",
                    PartitionKind::IsolateLeader => "isolate-leader",
                    PartitionKind::Halves => "halves",
                    PartitionKind::Ring => "ring",
                    PartitionKind::Bridge => "bridge",
                };
                format!("partition-{kind}")
            }
            Fault::KillOne => "kill-one".to_string(),
            Fault::KillLeader => "kill-leader".to_string(),
            Fault::KillMinority => "kill-minority".to_string(),
            Fault::KillAll => "kill-all".to_string(),
            Fault::PauseOne => "pause-one".to_string(),
            Fault::PauseLeader => "pause-leader".to_string(),
            Fault::RemoveVoter => "remove-voter".to_string(),
            Fault::TransferLeader => "transfer-leader".to_string(),
        }
    }
}

/// Which family of faults a run draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NemesisMode {
    /// No faults (a baseline).
    None,
    /// Every partition shape.
    Partition,
    /// kill -9 of one, the leader, a minority, all.
    Kill,
    /// SIGSTOP / SIGCONT of one or the leader.
    Pause,
    /// Removing and re-adding voters.
    Membership,
    /// Leadership transfers.
    Transfer,
    /// All of the above, mixed.
    Combined,
}

impl NemesisMode {
    /// The faults the mode draws from.
    pub fn faults(self) -> Vec<Fault> {
        let partitions: Vec<Fault> = PartitionKind::ALL
            .iter()
            .copied()
            .map(Fault::Partition)
            .collect();
        let kills = vec![
            Fault::KillOne,
            Fault::KillLeader,
            Fault::KillMinority,
            Fault::KillAll,
        ];
        let pauses = vec![Fault::PauseOne, Fault::PauseLeader];
        match self {
            NemesisMode::None => Vec::new(),
            NemesisMode::Partition => partitions,
            NemesisMode::Kill => kills,
            NemesisMode::Pause => pauses,
            NemesisMode::Membership => vec![Fault::RemoveVoter],
            NemesisMode::Transfer => vec![Fault::TransferLeader],
            NemesisMode::Combined => {
                let mut all = partitions;
                all.extend(kills);
                all.extend(pauses);
                all.push(Fault::RemoveVoter);
                all.push(Fault::TransferLeader);
                all
            }
        }
    }
}

/// The timing of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NemesisConfig {
    /// The fault family.
    pub mode: NemesisMode,
    /// The shortest quiet period before each fault.
    pub quiet_ms_min: u64,
    /// The longest quiet period before each fault.
    pub quiet_ms_max: u64,
    /// The shortest fault period.
    pub fault_ms_min: u64,
    /// The longest fault period.
    pub fault_ms_max: u64,
}

impl Default for NemesisConfig {
    fn default() -> Self {
        Self {
            mode: NemesisMode::Partition,
            quiet_ms_min: 1_000,
            quiet_ms_max: 3_000,
            fault_ms_min: 2_000,
            fault_ms_max: 5_000,
        }
    }
}

impl NemesisConfig {
    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), HarnessError> {
        if self.quiet_ms_min > self.quiet_ms_max || self.fault_ms_min > self.fault_ms_max {
            return Err(HarnessError::Config(
                "nemesis minimum periods must not exceed the maxima".to_string(),
            ));
        }
        if self.fault_ms_min == 0 {
            return Err(HarnessError::Config(
                "a fault must last at least 1 ms".to_string(),
            ));
        }
        Ok(())
    }
}

/// One fault period of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Phase {
    /// When the fault starts, from the start of the workload.
    pub start_ms: u64,
    /// When it stops (heal, restart, resume).
    pub stop_ms: u64,
    /// The fault.
    pub fault: Fault,
    /// The seed of the targets' choice at run time (which node, which half).
    pub target_seed: u64,
}

/// Draws a schedule for a run of `duration`: fault periods that do not overlap, each
/// stopped before the run ends so that the final reads see a healed cluster.
pub fn schedule(seed: u64, config: &NemesisConfig, duration: Duration) -> Vec<Phase> {
    let faults = config.mode.faults();
    let duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let mut random = Random::new(seed);
    let mut phases = Vec::new();
    if faults.is_empty() {
        return phases;
    }
    let mut now_ms = 0_u64;
    loop {
        let quiet = random.between(config.quiet_ms_min, config.quiet_ms_max);
        let length = random.between(config.fault_ms_min, config.fault_ms_max);
        let fault = *random.choose(&faults);
        let target_seed = random.next_u64();
        let start_ms = now_ms.saturating_add(quiet);
        let stop_ms = start_ms.saturating_add(length);
        if stop_ms > duration_ms {
            break;
        }
        phases.push(Phase {
            start_ms,
            stop_ms,
            fault,
            target_seed,
        });
        now_ms = stop_ms;
    }
    phases
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_replays_from_its_seed_and_changes_with_it() {
        let config = NemesisConfig {
            mode: NemesisMode::Combined,
            ..NemesisConfig::default()
        };
        let duration = Duration::from_secs(120);
        assert_eq!(
            schedule(11, &config, duration),
            schedule(11, &config, duration)
        );
        assert_ne!(
            schedule(11, &config, duration),
            schedule(12, &config, duration)
        );
    }

    #[test]
    fn phases_do_not_overlap_respect_bounds_and_end_in_time() {
        let config = NemesisConfig {
            mode: NemesisMode::Combined,
            ..NemesisConfig::default()
        };
        for seed in 0..50 {
            let phases = schedule(seed, &config, Duration::from_secs(60));
            assert!(!phases.is_empty());
            let mut previous_stop = 0;
            for phase in &phases {
                assert!(phase.start_ms >= previous_stop + config.quiet_ms_min);
                assert!(phase.start_ms <= previous_stop + config.quiet_ms_max);
                let length = phase.stop_ms - phase.start_ms;
                assert!((config.fault_ms_min..=config.fault_ms_max).contains(&length));
                assert!(phase.stop_ms <= 60_000);
                previous_stop = phase.stop_ms;
            }
        }
    }

    #[test]
    fn each_mode_draws_only_its_faults_and_combined_draws_them_all() {
        let duration = Duration::from_secs(600);
        let kill = NemesisConfig {
            mode: NemesisMode::Kill,
            ..NemesisConfig::default()
        };
        assert!(schedule(1, &kill, duration).iter().all(|phase| matches!(
            phase.fault,
            Fault::KillOne | Fault::KillLeader | Fault::KillMinority | Fault::KillAll
        )));
        let combined = NemesisConfig {
            mode: NemesisMode::Combined,
            ..NemesisConfig::default()
        };
        let drawn: std::collections::BTreeSet<String> = schedule(1, &combined, duration)
            .iter()
            .map(|phase| phase.fault.name())
            .collect();
        assert_eq!(drawn.len(), NemesisMode::Combined.faults().len());
        let none = NemesisConfig {
            mode: NemesisMode::None,
            ..NemesisConfig::default()
        };
        assert!(schedule(1, &none, duration).is_empty());
    }

    #[test]
    fn validate_refuses_inverted_bounds() {
        let config = NemesisConfig {
            quiet_ms_min: 5,
            quiet_ms_max: 4,
            ..NemesisConfig::default()
        };
        assert!(config.validate().is_err());
        assert!(NemesisConfig::default().validate().is_ok());
    }
}
