//! Carrying out each client subcommand.

use std::process::ExitCode;
use std::time::Duration;

use conclave_client::machines::kv::{
    Compare, CompareResult, CompareTarget, EventKind, KvCommand as KvMachineCommand, KvResponse,
    PutRequest, RequestOp, TxnRequest, WatchRequest, prefix_range_end,
};
use conclave_client::machines::queue::QueueResponse;
use conclave_client::machines::tree::CreateMode;
use conclave_client::recipes::{DataWatch, Election, Lock, QueueConsumer};
use conclave_client::{Client, ClientConfig, Consistency, Session};
use conclave_transport::client_api::{MemberRole, Role};

use super::{
    CliError, ClientCommand, ClusterCommand, Connect, KvCommand, QueueCommand, SnapshotCommand,
    TreeCommand,
};

/// The exit code of `queue poll` on an empty queue.
const EXIT_EMPTY: u8 = 3;

fn client(connect: &Connect) -> Result<Client, CliError> {
    let mut config = ClientConfig::new(connect.endpoints.clone());
    config.request_timeout = Duration::from_millis(connect.request_timeout_ms);
    config.attempt_timeout = config.attempt_timeout.min(config.request_timeout);
    Ok(Client::new(config)?)
}

/// Runs one client subcommand; prints its result on stdout.
pub async fn run(command: ClientCommand) -> Result<ExitCode, CliError> {
    let client = client(command.connect())?;
    match command {
        ClientCommand::Cluster(args) => cluster(&client, args.command).await,
        ClientCommand::Kv(args) => kv(&client, &args.machine, args.command).await,
        ClientCommand::Tree(args) => tree(&client, &args.machine, args.command).await,
        ClientCommand::Lock(args) => {
            let mut config = client.config().clone();
            config.session_timeout_ms = args.session_timeout_ms;
            let session = Client::new(config)?.open_session().await?;
            let guard = Lock::new(&session, &args.machine, &args.name)
                .acquire()
                .await?;
            let token = guard.token();
            let code = run_child(&args.command, "CONCLAVE_LOCK_TOKEN", token).await;
            guard.release().await?;
            session.close().await?;
            code
        }
        ClientCommand::Elect(args) => {
            let session = client.open_session().await?;
            let election = Election::new(&session, &args.machine, &args.name);
            let epoch = election.campaign(args.value.as_bytes()).await?;
            println!("elected {} epoch {epoch}", args.name);
            let code = if args.command.is_empty() {
                tokio::signal::ctrl_c()
                    .await
                    .map_err(|error| CliError::Io {
                        what: "waiting for Ctrl-C".to_string(),
                        error,
                    })?;
                Ok(ExitCode::SUCCESS)
            } else {
                run_child(&args.command, "CONCLAVE_ELECTION_EPOCH", epoch).await
            };
            election.resign().await?;
            session.close().await?;
            code
        }
        ClientCommand::Queue(args) => queue(&client, &args.machine, args.command).await,
        ClientCommand::Snapshot(args) => match args.command {
            SnapshotCommand::Save { file } => {
                let mut output = std::fs::File::create(&file).map_err(|error| CliError::Io {
                    what: format!("creating {}", file.display()),
                    error,
                })?;
                let (index, term, size) = client.snapshot_save(&mut output).await?;
                output.sync_all().map_err(|error| CliError::Io {
                    what: format!("syncing {}", file.display()),
                    error,
                })?;
                println!(
                    "saved snapshot at index {index} term {term} ({size} bytes) to {}",
                    file.display()
                );
                Ok(ExitCode::SUCCESS)
            }
        },
    }
}

/// Runs `command` with `variable=value` in its environment; its exit code becomes ours.
async fn run_child(command: &[String], variable: &str, value: u64) -> Result<ExitCode, CliError> {
    let Some((program, arguments)) = command.split_first() else {
        return Err(CliError::Usage(
            "a command is required after --".to_string(),
        ));
    };
    let status = tokio::process::Command::new(program)
        .args(arguments)
        .env(variable, value.to_string())
        .status()
        .await
        .map_err(|error| CliError::Io {
            what: format!("running {program}"),
            error,
        })?;
    let code = status
        .code()
        .and_then(|code| u8::try_from(code).ok())
        .unwrap_or(1);
    Ok(ExitCode::from(code))
}

fn role_name(role: i32) -> &'static str {
    match Role::try_from(role) {
        Ok(Role::Leader) => "leader",
        Ok(Role::Follower) => "follower",
        Ok(Role::Candidate) => "candidate",
        Ok(Role::PreCandidate) => "pre-candidate",
        _ => "unknown",
    }
}

fn print_members(members: &[conclave_transport::client_api::Member]) {
    for member in members {
        let role = match MemberRole::try_from(member.role) {
            Ok(MemberRole::Voter) => "voter",
            Ok(MemberRole::Learner) => "learner",
            Ok(MemberRole::OutgoingVoter) => "outgoing-voter",
            _ => "unknown",
        };
        println!(
            "{} {role} {} {}",
            member.id, member.peer_address, member.client_address
        );
    }
}

async fn cluster(client: &Client, command: ClusterCommand) -> Result<ExitCode, CliError> {
    match command {
        ClusterCommand::Status => {
            let mut reachable = 0;
            for (address, status) in client.status_of_each().await {
                match status {
                    Ok(status) => {
                        reachable += 1;
                        println!(
                            "{address} id={} role={} leader={} term={} commit={} applied={}",
                            status.id,
                            role_name(status.role),
                            status.leader_id,
                            status.term,
                            status.commit_index,
                            status.applied_index
                        );
                    }
                    Err(error) => println!("{address} unreachable: {error}"),
                }
            }
            Ok(if reachable > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        ClusterCommand::Members => {
            print_members(&client.status().await?.members);
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Add {
            id,
            peer_address,
            client_address,
        } => {
            print_members(
                &client
                    .add_learner(id, &peer_address, &client_address)
                    .await?,
            );
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Promote { id } => {
            print_members(&client.promote(id).await?);
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Remove { id } => {
            print_members(&client.remove(id).await?);
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::TransferLeader { id } => {
            client.transfer_leader(id).await?;
            println!("leadership handed to {id}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn range_end(key: &str, prefix: bool) -> Vec<u8> {
    if prefix {
        prefix_range_end(key.as_bytes())
    } else {
        Vec::new()
    }
}

fn key_value(pair: &str) -> Result<(Vec<u8>, Vec<u8>), CliError> {
    pair.split_once('=')
        .map(|(key, value)| (key.as_bytes().to_vec(), value.as_bytes().to_vec()))
        .ok_or_else(|| CliError::Usage(format!("{pair:?} is not key=value")))
}

fn puts(pairs: &[String]) -> Result<Vec<RequestOp>, CliError> {
    pairs
        .iter()
        .map(|pair| {
            let (key, value) = key_value(pair)?;
            Ok(RequestOp::Put(PutRequest {
                key,
                value,
                ..PutRequest::default()
            }))
        })
        .collect()
}

async fn kv(client: &Client, machine: &str, command: KvCommand) -> Result<ExitCode, CliError> {
    let session = client.open_session().await?;
    let kv = session.kv(machine);
    let code = match command {
        KvCommand::Get { key, prefix } => {
            let found = kv
                .range(
                    key.as_bytes(),
                    &range_end(&key, prefix),
                    Consistency::Linearizable,
                )
                .await?;
            for pair in &found {
                println!(
                    "{}={}",
                    String::from_utf8_lossy(&pair.key),
                    String::from_utf8_lossy(&pair.value)
                );
            }
            if found.is_empty() {
                ExitCode::from(EXIT_EMPTY)
            } else {
                ExitCode::SUCCESS
            }
        }
        KvCommand::Put { key, value } => {
            println!(
                "revision {}",
                kv.put(key.as_bytes(), value.as_bytes()).await?
            );
            ExitCode::SUCCESS
        }
        KvCommand::Del { key, prefix } => {
            println!(
                "deleted {}",
                kv.delete(key.as_bytes(), &range_end(&key, prefix)).await?
            );
            ExitCode::SUCCESS
        }
        KvCommand::Watch { key, prefix, count } => {
            let mut events = kv.events();
            let created = kv
                .command(&KvMachineCommand::Watch(WatchRequest {
                    key: key.as_bytes().to_vec(),
                    range_end: range_end(&key, prefix),
                    start_revision: 0,
                    no_put: false,
                    no_delete: false,
                    prev_kv: false,
                }))
                .await?;
            match created {
                Ok(KvResponse::WatchCreated { .. }) => {}
                other => return Err(CliError::Usage(format!("watch refused: {other:?}"))),
            }
            println!("watching");
            let mut printed = 0u64;
            while count.is_none_or(|count| printed < count) {
                let Some(event) = events.next().await else {
                    break;
                };
                for change in event?.1.events {
                    let key = String::from_utf8_lossy(&change.kv.key).into_owned();
                    match change.kind {
                        EventKind::Put => {
                            println!("PUT {key}={}", String::from_utf8_lossy(&change.kv.value))
                        }
                        EventKind::Delete => println!("DELETE {key}"),
                    }
                    printed += 1;
                }
            }
            ExitCode::SUCCESS
        }
        KvCommand::Txn {
            compare,
            put,
            else_put,
        } => {
            let compare = compare
                .iter()
                .map(|pair| {
                    let (key, value) = key_value(pair)?;
                    // An empty value means "the key does not exist": version 0.
                    let target = if value.is_empty() {
                        CompareTarget::Version(0)
                    } else {
                        CompareTarget::Value(value)
                    };
                    Ok(Compare {
                        key,
                        range_end: Vec::new(),
                        result: CompareResult::Equal,
                        target,
                    })
                })
                .collect::<Result<Vec<_>, CliError>>()?;
            let answer = kv
                .txn(TxnRequest {
                    compare,
                    success: puts(&put)?,
                    failure: puts(&else_put)?,
                })
                .await?;
            println!(
                "{}",
                if answer.succeeded {
                    "SUCCESS"
                } else {
                    "FAILURE"
                }
            );
            ExitCode::SUCCESS
        }
    };
    session.close().await?;
    Ok(code)
}

async fn tree(client: &Client, machine: &str, command: TreeCommand) -> Result<ExitCode, CliError> {
    let session: Session = client.open_session().await?;
    let tree = session.tree(machine);
    let code = match command {
        TreeCommand::Ls { path } => match tree.children(&path, Consistency::Linearizable).await? {
            Some(children) => {
                for child in children {
                    println!("{child}");
                }
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("no node {path}");
                ExitCode::from(EXIT_EMPTY)
            }
        },
        TreeCommand::Get { path } => match tree.get_data(&path, Consistency::Linearizable).await? {
            Some((data, _)) => {
                println!("{}", String::from_utf8_lossy(&data));
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("no node {path}");
                ExitCode::from(EXIT_EMPTY)
            }
        },
        TreeCommand::Create {
            path,
            data,
            sequential,
        } => {
            let mode = if sequential {
                CreateMode::PersistentSequential
            } else {
                CreateMode::Persistent
            };
            println!("{}", tree.create(&path, data.as_bytes(), mode).await?);
            ExitCode::SUCCESS
        }
        TreeCommand::Set {
            path,
            data,
            version,
        } => {
            let stat = tree.set_data(&path, data.as_bytes(), version).await?;
            println!("version {}", stat.version);
            ExitCode::SUCCESS
        }
        TreeCommand::Rm { path, version } => {
            tree.delete(&path, version).await?;
            println!("deleted {path}");
            ExitCode::SUCCESS
        }
        TreeCommand::Watch { path, count } => {
            let mut watch = DataWatch::new(&session, machine, &path).await?;
            let mut printed = 0u64;
            while count.is_none_or(|count| printed < count) {
                match watch.next().await? {
                    Some((data, _)) => println!("{}", String::from_utf8_lossy(&data)),
                    None => println!("<absent>"),
                }
                printed += 1;
            }
            ExitCode::SUCCESS
        }
    };
    session.close().await?;
    Ok(code)
}

async fn queue(
    client: &Client,
    machine: &str,
    command: QueueCommand,
) -> Result<ExitCode, CliError> {
    let session = client.open_session().await?;
    let queues = session.queues(machine);
    let code = match command {
        QueueCommand::Offer { name, data } => {
            println!("offered {}", queues.offer(&name, data.as_bytes()).await?);
            ExitCode::SUCCESS
        }
        QueueCommand::Poll { name, wait } => {
            let delivery = if wait {
                Some(
                    QueueConsumer::new(&session, machine, &name, Duration::from_secs(60))
                        .next()
                        .await?,
                )
            } else {
                match queues.poll(&name, 60_000, false).await? {
                    QueueResponse::Delivered(delivery) => Some(delivery),
                    _ => None,
                }
            };
            match delivery {
                Some(delivery) => {
                    queues.ack(&name, delivery.id, delivery.delivery).await?;
                    println!("{}", String::from_utf8_lossy(&delivery.data));
                    ExitCode::SUCCESS
                }
                None => ExitCode::from(EXIT_EMPTY),
            }
        }
    };
    session.close().await?;
    Ok(code)
}
