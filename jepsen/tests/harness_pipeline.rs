//! The worker -> history -> checker pipeline against an in-process stand-in of the native
//! API that serves one register: a correct stand-in must be judged linearizable, and one
//! whose reads return an old value (what skipping ReadIndex at a deposed leader looks
//! like) must be caught. This proves the harness can fail without needing a server build
//! with an injected bug.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use conclave_jepsen::check::{self, CheckConfig, Format, Verdict};
use conclave_jepsen::harness::client::NativeSession;
use conclave_jepsen::harness::history::History;
use conclave_jepsen::harness::workload::{self, Worker, WorkloadKind};
use conclave_statemachines::codec;
use conclave_statemachines::value::{ValueCommand, ValueOutput, ValueQuery};
use conclave_transport::client_api::client_server::{Client, ClientServer};
use conclave_transport::client_api::{
    CloseSessionRequest, CloseSessionResponse, CommandRequest, CommandResponse, EventsRequest,
    EventsResponse, KeepAliveRequest, KeepAliveResponse, OpenSessionRequest, OpenSessionResponse,
    QueryRequest, QueryResponse, command_response,
};
use tonic::{Request, Response, Status};

#[derive(Default)]
struct Register {
    /// Every value written, in order; the current one is the last.
    values: Vec<Option<Vec<u8>>>,
    sessions: u64,
}

/// A stand-in node holding one register; with `stale_reads`, reads answer the value
/// from a few writes ago.
struct StandIn {
    register: Arc<Mutex<Register>>,
    stale_reads: bool,
}

impl StandIn {
    fn current(register: &Register, lag: usize) -> Option<Vec<u8>> {
        let count = register.values.len();
        if count == 0 {
            return None;
        }
        register.values[count.saturating_sub(1 + lag)].clone()
    }
}

#[tonic::async_trait]
impl Client for StandIn {
    async fn open_session(
        &self,
        _request: Request<OpenSessionRequest>,
    ) -> Result<Response<OpenSessionResponse>, Status> {
        let mut register = self.register.lock().unwrap();
        register.sessions += 1;
        Ok(Response::new(OpenSessionResponse {
            session: register.sessions,
            timeout_ms: 10_000,
        }))
    }

    async fn keep_alive(
        &self,
        _request: Request<KeepAliveRequest>,
    ) -> Result<Response<KeepAliveResponse>, Status> {
        Ok(Response::new(KeepAliveResponse {
            event_index_last: 0,
        }))
    }

    async fn close_session(
        &self,
        _request: Request<CloseSessionRequest>,
    ) -> Result<Response<CloseSessionResponse>, Status> {
        Ok(Response::new(CloseSessionResponse {}))
    }

    async fn command(
        &self,
        request: Request<CommandRequest>,
    ) -> Result<Response<CommandResponse>, Status> {
        let request = request.into_inner();
        assert_eq!(request.machine_type, "value");
        let command: ValueCommand = codec::decode(&request.payload, "command").unwrap();
        let mut register = self.register.lock().unwrap();
        let current = Self::current(&register, 0);
        let output = match command {
            ValueCommand::GetAndSet { value } => {
                register.values.push(value);
                ValueOutput::Value(current)
            }
            ValueCommand::CompareAndSet { expected, update } => {
                let succeeded = current == expected;
                if succeeded {
                    register.values.push(update);
                }
                ValueOutput::CompareAndSet { succeeded }
            }
            other => panic!("the register workload sent {other:?}"),
        };
        let index = register.values.len() as u64;
        Ok(Response::new(CommandResponse {
            index,
            result: Some(command_response::Result::Output(
                codec::encode(&output, "output").unwrap().into(),
            )),
        }))
    }

    async fn query(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<QueryResponse>, Status> {
        let request = request.into_inner();
        let query: ValueQuery = codec::decode(&request.payload, "query").unwrap();
        assert_eq!(query, ValueQuery::Get);
        let register = self.register.lock().unwrap();
        let lag = if self.stale_reads { 3 } else { 0 };
        let output = ValueOutput::Value(Self::current(&register, lag));
        Ok(Response::new(QueryResponse {
            index_applied: 0,
            output: codec::encode(&output, "output").unwrap().into(),
        }))
    }

    type EventsStream = tokio_stream::Empty<Result<EventsResponse, Status>>;

    async fn events(
        &self,
        _request: Request<EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        Ok(Response::new(tokio_stream::empty()))
    }
}

/// Runs the register workload against a stand-in and returns the checker's verdict.
async fn run_against_stand_in(stale_reads: bool) -> (Verdict, usize) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let stand_in = StandIn {
        register: Arc::new(Mutex::new(Register::default())),
        stale_reads,
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ClientServer::new(stand_in))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let folder = tempfile::tempdir().unwrap();
    let history =
        Arc::new(History::create(&folder.path().join("history.jsonl"), Instant::now()).unwrap());
    let workers = 4;
    let mut tasks = Vec::new();
    for index in 0..workers {
        let history = Arc::clone(&history);
        tasks.push(tokio::spawn(async move {
            let session = NativeSession::new(vec![address], 10_000, Duration::from_secs(5));
            let mut worker = Worker::new(session, index, workers, 100 + index);
            assert!(worker.session.open().await);
            for _ in 0..150 {
                workload::step(WorkloadKind::Register, &mut worker, &history).await;
            }
            workload::final_operations(WorkloadKind::Register, &mut worker, &history).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    history.flush().unwrap();
    let text = std::fs::read_to_string(history.path()).unwrap();
    let operations = text.lines().count() / 2;
    let analysis = check::check_text(
        &text,
        Format::JsonLines,
        WorkloadKind::Register.model(),
        &CheckConfig::default(),
        "stand-in",
    )
    .unwrap();
    (analysis.report.verdict, operations)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_register_is_judged_linearizable() {
    let (verdict, operations) = run_against_stand_in(false).await;
    assert_eq!(
        operations,
        4 * 151,
        "every operation and final read is recorded"
    );
    assert_eq!(verdict, Verdict::Linearizable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_reads_are_reported_as_a_violation() {
    let (verdict, _) = run_against_stand_in(true).await;
    assert_eq!(verdict, Verdict::NotLinearizable);
}
