//! Clients with a history: simulated processes that open sessions, run register operations
//! on the atomic `value` machine through the real `SessionLayer` of every node, record each
//! operation's call, completion and answer, and hand the history to the linearizability
//! checker at the end of the seed.
//!
//! Writes and compare-and-sets are log commands tagged `(session, sequence)`; a command not
//! answered within `retry_ticks` is proposed again with the same sequence to whoever leads
//! then, so the session layer applies it exactly once. Reads go through ReadIndex and are
//! answered from the asking node's layer once it applied the confirmed index.

use std::collections::BTreeMap;

use conclave_consensus::{NodeId, Prng};
use conclave_statemachines::value::{ValueCommand, ValueOutput, ValueQuery};
use conclave_statemachines::{Entry, QueryRequest, Reply, SessionId, SessionLayer, codec};

use crate::check::models::register::{Register, RegisterInput, RegisterOutput};
use crate::check::report::describe;
use crate::check::{CheckConfig, Operation, Verdict, check};

/// The name of the one value machine every process works on.
const MACHINE_NAME: &str = "register";

/// The session timeout the processes ask for: the layer's maximum (one hour of log time),
/// far beyond any run because log time is the entry index. Process `p` asks for this minus
/// `p`, so the `Registered` reply tells which process it belongs to.
const SESSION_TIMEOUT_MS: u64 = 3_600_000;

/// The clients' parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryOptions {
    /// Concurrent processes (each with one session and one operation in flight).
    pub processes: u64,
    /// A process with nothing in flight starts an operation once per this many time units
    /// on average.
    pub operation_every_units: u64,
    /// An unanswered request is sent again after this many ticks.
    pub retry_ticks: u64,
    /// After the liveness phase, the processes get this many ticks to finish what they
    /// started; whatever is still open then is recorded as unknown.
    pub drain_ticks_max: u64,
    /// Test-only wrong rule: answer reads at once from a random running node's local state,
    /// without ReadIndex. The checker must find the stale reads this gives.
    pub stale_follower_reads: bool,
    /// Write each checked history to this file as JSON lines (`HISTORY.md`), for
    /// `conclave-jepsen check --model register` and its HTML timeline; meant for replaying
    /// one seed (`SIM_HISTORY_OUT` in `ci()`); every seed overwrites it.
    pub history_file: Option<std::path::PathBuf>,
}

impl HistoryOptions {
    /// The options CI runs with.
    pub fn ci() -> HistoryOptions {
        HistoryOptions {
            processes: 3,
            operation_every_units: 20,
            retry_ticks: 30,
            drain_ticks_max: 500,
            stale_follower_reads: false,
            history_file: std::env::var_os("SIM_HISTORY_OUT").map(std::path::PathBuf::from),
        }
    }

    /// Refuses options the clients cannot run with.
    pub fn validate(&self) -> Result<(), String> {
        if self.processes == 0 || self.processes >= 1_000 {
            return Err(format!(
                "history processes must be 1..1000, not {}",
                self.processes
            ));
        }
        if self.operation_every_units == 0 || self.retry_ticks == 0 {
            return Err("history operation_every_units and retry_ticks must be positive".into());
        }
        Ok(())
    }
}

/// What a process wants the driver to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Propose this entry to the leader.
    Propose(Vec<u8>),
    /// Ask the leader for a ReadIndex read with this id.
    ReadIndex(u64),
    /// (Wrong rule) answer the read at once from a random running node.
    StaleRead,
}

#[derive(Debug)]
struct InFlight {
    input: RegisterInput,
    call: u64,
    sequence: u64,
    sent_at: Option<u64>,
    /// The node the command was last proposed to: only its answer reaches the client, as
    /// with a real connection (another node's apply of the same entry is not seen).
    sent_to: Option<NodeId>,
}

#[derive(Debug, Default)]
struct Process {
    session: Option<SessionId>,
    register_sent_at: Option<u64>,
    sequence_last: u64,
    in_flight: Option<InFlight>,
}

/// The processes and the history they recorded.
#[derive(Debug)]
pub struct HistoryClient {
    options: HistoryOptions,
    processes: Vec<Process>,
    operations: Vec<Operation<RegisterInput, RegisterOutput>>,
    value_last: i64,
    /// ReadIndex requests in flight: id → the read (process, call time). A request answers
    /// only the read that asked it, never a later read of the same process.
    reads_asked: BTreeMap<u64, (usize, u64)>,
    /// Confirmed reads waiting for their node to apply the read index: id → (read, node,
    /// index).
    reads_confirmed: BTreeMap<u64, ((usize, u64), NodeId, u64)>,
    draining: bool,
    /// Requests sent again because the first went unanswered (exactly-once is exercised
    /// only when this is above zero).
    retries: u64,
}

impl HistoryClient {
    /// Processes without sessions yet.
    pub fn new(options: HistoryOptions) -> HistoryClient {
        HistoryClient {
            processes: (0..options.processes).map(|_| Process::default()).collect(),
            operations: Vec::new(),
            value_last: 0,
            reads_asked: BTreeMap::new(),
            reads_confirmed: BTreeMap::new(),
            draining: false,
            retries: 0,
            options,
        }
    }

    /// The options.
    pub fn options(&self) -> &HistoryOptions {
        &self.options
    }

    /// Stops new operations (the run is ending); open ones still retry.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Requests sent again after a timeout so far.
    pub fn retries(&self) -> u64 {
        self.retries
    }

    /// True when no operation is open.
    pub fn idle(&self) -> bool {
        self.processes.iter().all(|p| p.in_flight.is_none())
    }

    /// One client step at time `now`: each process (re)registers, starts an operation or
    /// retries one; returns what to send, by process. `next_read_id` hands out read ids.
    pub fn step(
        &mut self,
        now: u64,
        tick_units: u64,
        prng: &mut Prng,
        next_read_id: &mut dyn FnMut() -> u64,
    ) -> Result<Vec<(usize, Request)>, String> {
        let retry_units = self.options.retry_ticks * tick_units;
        let mut requests = Vec::new();
        for index in 0..self.processes.len() {
            let process = &mut self.processes[index];
            let Some(session) = process.session else {
                if process
                    .register_sent_at
                    .is_none_or(|at| now >= at + retry_units)
                {
                    process.register_sent_at = Some(now);
                    let entry = Entry::Register {
                        timeout_ms: SESSION_TIMEOUT_MS - index as u64,
                    };
                    requests.push((index, Request::Propose(entry.encode())));
                }
                continue;
            };
            if process.in_flight.is_none() {
                if self.draining || !prng.chance(1, self.options.operation_every_units) {
                    continue;
                }
                self.value_last += 1;
                let fresh = self.value_last;
                let input = match prng.range(0, 3) {
                    0 => RegisterInput::Read,
                    1 => RegisterInput::Write(fresh),
                    // Expect a recent value so that some compare-and-sets succeed.
                    _ => RegisterInput::Cas {
                        from: (fresh - prng.range(1, 4) as i64).max(1),
                        to: fresh,
                    },
                };
                let sequence = match input {
                    RegisterInput::Read => 0,
                    _ => {
                        process.sequence_last += 1;
                        process.sequence_last
                    }
                };
                process.in_flight = Some(InFlight {
                    input,
                    call: now,
                    sequence,
                    sent_at: None,
                    sent_to: None,
                });
            }
            let Some(in_flight) = process.in_flight.as_mut() else {
                continue;
            };
            if in_flight.sent_at.is_some_and(|at| now < at + retry_units) {
                continue;
            }
            if in_flight.sent_at.is_some() {
                self.retries += 1;
            }
            in_flight.sent_at = Some(now);
            in_flight.sent_to = None;
            let request = match in_flight.input {
                RegisterInput::Read if self.options.stale_follower_reads => Request::StaleRead,
                RegisterInput::Read => {
                    let id = next_read_id();
                    self.reads_asked.insert(id, (index, in_flight.call));
                    Request::ReadIndex(id)
                }
                RegisterInput::Write(value) => command(
                    session,
                    in_flight.sequence,
                    ValueCommand::GetAndSet {
                        value: Some(encode_value(value)),
                    },
                )?,
                RegisterInput::Cas { from, to } => command(
                    session,
                    in_flight.sequence,
                    ValueCommand::CompareAndSet {
                        expected: Some(encode_value(from)),
                        update: Some(encode_value(to)),
                    },
                )?,
            };
            requests.push((index, request));
        }
        Ok(requests)
    }

    /// The driver proposed `process`'s current command to `node`.
    pub fn proposed_to(&mut self, process: usize, node: NodeId) {
        if let Some(in_flight) = self
            .processes
            .get_mut(process)
            .and_then(|p| p.in_flight.as_mut())
        {
            in_flight.sent_to = Some(node);
        }
    }

    /// A reply `node` produced while applying an entry. Registrations are taken from any
    /// node; a command's output only from the node it was last proposed to (after a retry
    /// that is the new leader, which answers from the session layer's output cache if the
    /// first attempt was applied already).
    pub fn on_reply(&mut self, now: u64, node: NodeId, reply: &Reply) -> Result<(), String> {
        match reply {
            Reply::Registered {
                session,
                timeout_ms,
            } => {
                let index = SESSION_TIMEOUT_MS.saturating_sub(*timeout_ms) as usize;
                if let Some(process) = self.processes.get_mut(index)
                    && process.session.is_none()
                {
                    process.session = Some(*session);
                }
                Ok(())
            }
            Reply::Output(output) => {
                let Some(index) = self
                    .processes
                    .iter()
                    .position(|p| p.session == Some(output.session))
                else {
                    return Ok(());
                };
                let process = &mut self.processes[index];
                let matches = process.in_flight.as_ref().is_some_and(|f| {
                    f.sequence == output.sequence && f.sequence != 0 && f.sent_to == Some(node)
                });
                if !matches {
                    return Ok(());
                }
                let Some(in_flight) = process.in_flight.take() else {
                    return Ok(());
                };
                let bytes = output.result.as_ref().map_err(|error| {
                    format!(
                        "process {index}: command {} refused: {error}",
                        output.sequence
                    )
                })?;
                let answer: ValueOutput = codec::decode(bytes, "value output")
                    .map_err(|error| format!("value output: {error}"))?;
                let output = match (in_flight.input, answer) {
                    (RegisterInput::Write(_), ValueOutput::Value(_)) => RegisterOutput::Write,
                    (RegisterInput::Cas { .. }, ValueOutput::CompareAndSet { succeeded }) => {
                        RegisterOutput::Cas(succeeded)
                    }
                    (input, answer) => {
                        return Err(format!("{input:?} answered with {answer:?}"));
                    }
                };
                self.operations.push(Operation::completed(
                    index as u64,
                    in_flight.call,
                    now,
                    in_flight.input,
                    output,
                ));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A node confirmed ReadIndex read `request_id` at `index`; true if it was ours.
    pub fn on_read_confirmed(&mut self, node: NodeId, request_id: u64, index: u64) -> bool {
        let Some(read) = self.reads_asked.remove(&request_id) else {
            return false;
        };
        self.reads_confirmed.insert(request_id, (read, node, index));
        true
    }

    /// Answers the confirmed reads of `node` whose index its layer has applied.
    pub fn serve_reads(
        &mut self,
        now: u64,
        node: NodeId,
        applied_index: u64,
        layer: &SessionLayer,
    ) -> Result<(), String> {
        let ready: Vec<u64> = self
            .reads_confirmed
            .iter()
            .filter(|(_, (_, at, index))| *at == node && *index <= applied_index)
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            if let Some(((process, call), _, _)) = self.reads_confirmed.remove(&id) {
                let value = read_value(layer)?;
                self.complete_read(now, process, call, value);
            }
        }
        Ok(())
    }

    /// (Wrong rule) answers `process`'s read from `layer` at once.
    pub fn serve_stale_read(
        &mut self,
        now: u64,
        process: usize,
        layer: &SessionLayer,
    ) -> Result<(), String> {
        let value = read_value(layer)?;
        let call = self
            .processes
            .get(process)
            .and_then(|p| p.in_flight.as_ref())
            .map_or(now, |f| f.call);
        self.complete_read(now, process, call, value);
        Ok(())
    }

    fn complete_read(&mut self, now: u64, process: usize, call: u64, value: Option<i64>) {
        let Some(state) = self.processes.get_mut(process) else {
            return;
        };
        if !state
            .in_flight
            .as_ref()
            .is_some_and(|f| f.input == RegisterInput::Read && f.call == call)
        {
            // The read was already answered through another of its requests (it was
            // retried); this answer is a duplicate.
            return;
        }
        if let Some(in_flight) = state.in_flight.take() {
            self.operations.push(Operation::completed(
                process as u64,
                in_flight.call,
                now,
                RegisterInput::Read,
                RegisterOutput::Read(value),
            ));
        }
    }

    /// Ends the history (open operations become unknown) and checks it against the register
    /// model. Returns the number of operations checked and how many of them are unknown.
    pub fn check(mut self) -> Result<(u64, u64), String> {
        let mut unknown = 0;
        for (index, process) in self.processes.iter_mut().enumerate() {
            if let Some(in_flight) = process.in_flight.take() {
                self.operations.push(Operation::unknown(
                    index as u64,
                    in_flight.call,
                    in_flight.input,
                ));
                unknown += 1;
            }
        }
        if let Some(path) = &self.options.history_file {
            std::fs::write(path, history_json_lines(&self.operations))
                .map_err(|e| format!("write the history to {}: {e}", path.display()))?;
        }
        let config = CheckConfig {
            threads_max: 1,
            ..CheckConfig::default()
        };
        let report = check(&Register, &self.operations, &config)
            .map_err(|error| format!("history check: {error}"))?;
        match report.verdict {
            Verdict::Linearizable => Ok((self.operations.len() as u64, unknown)),
            verdict => {
                // The operations involved, one per line, in the checker's own words.
                let mut detail = Vec::new();
                for counterexample in report
                    .partitions
                    .iter()
                    .filter_map(|p| p.counterexample.as_ref())
                {
                    if let Some(last) = counterexample.linearized.last() {
                        detail.push(format!(
                            "  last placed: {} (state after: {})",
                            describe(&Register, &self.operations, last.operation),
                            last.state
                        ));
                    }
                    for &index in &counterexample.window {
                        let mark = if counterexample.unplaceable.contains(&index) {
                            "cannot be placed"
                        } else {
                            "in the window"
                        };
                        detail.push(format!(
                            "  {mark}: {}",
                            describe(&Register, &self.operations, index)
                        ));
                    }
                }
                if self.options.stale_follower_reads {
                    detail.push(
                        "  (run with the test-only stale reads: add SIM_STALE_READS=1 to replay)"
                            .into(),
                    );
                }
                Err(format!(
                    "history of {} operations (times in simulated units) is {verdict}:\n{}",
                    self.operations.len(),
                    detail.join("\n")
                ))
            }
        }
    }
}

fn command(session: SessionId, sequence: u64, command: ValueCommand) -> Result<Request, String> {
    let payload = codec::encode(&command, "value command").map_err(|e| format!("{e}"))?;
    let entry = Entry::Command {
        session,
        sequence,
        machine_name: MACHINE_NAME.into(),
        machine_type: "value".into(),
        payload,
    };
    Ok(Request::Propose(entry.encode()))
}

/// The history in `HISTORY.md`'s JSON lines, with times, in time order; unknown operations
/// have no completion line. At one time, completions of earlier calls come first (a process
/// may start its next operation in the step its last one completed), then calls, then
/// completions of operations called at that same time.
fn history_json_lines(operations: &[Operation<RegisterInput, RegisterOutput>]) -> String {
    let mut events: Vec<(u64, u8, serde_json::Value)> = Vec::new();
    for operation in operations {
        let (function, argument) = match operation.input {
            RegisterInput::Read => ("read", serde_json::Value::Null),
            RegisterInput::Write(value) => ("write", serde_json::json!(value)),
            RegisterInput::Cas { from, to } => ("cas", serde_json::json!([from, to])),
        };
        events.push((
            operation.call,
            1,
            serde_json::json!({"process": operation.process, "type": "invoke", "f": function,
                "value": argument, "time": operation.call}),
        ));
        let result = match &operation.output {
            None => continue,
            Some(RegisterOutput::Read(value)) => serde_json::json!(value),
            Some(RegisterOutput::Write) => serde_json::Value::Null,
            Some(RegisterOutput::Cas(succeeded)) => serde_json::json!(succeeded),
        };
        let order = if operation.completion > operation.call {
            0
        } else {
            2
        };
        events.push((
            operation.completion,
            order,
            serde_json::json!({"process": operation.process, "type": "ok", "f": function,
                "value": result, "time": operation.completion}),
        ));
    }
    events.sort_by_key(|(time, order, _)| (*time, *order));
    events
        .into_iter()
        .map(|(_, _, event)| format!("{event}\n"))
        .collect()
}

fn encode_value(value: i64) -> Vec<u8> {
    value.to_string().into_bytes()
}

fn read_value(layer: &SessionLayer) -> Result<Option<i64>, String> {
    let request = QueryRequest {
        session: None,
        index_seen: 0,
        machine_name: MACHINE_NAME.into(),
        machine_type: "value".into(),
        payload: codec::encode(&ValueQuery::Get, "value query").map_err(|e| format!("{e}"))?,
    };
    let bytes = layer.query(&request).map_err(|e| format!("read: {e}"))?;
    let answer: ValueOutput =
        codec::decode(&bytes, "value output").map_err(|e| format!("value output: {e}"))?;
    match answer {
        ValueOutput::Value(None) => Ok(None),
        ValueOutput::Value(Some(bytes)) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| text.parse().ok())
            .map(Some)
            .ok_or_else(|| "the register holds something that is not a number".to_string()),
        other => Err(format!("read answered with {other:?}")),
    }
}
