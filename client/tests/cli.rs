//! The `conclave` client subcommands against three real `conclave serve` processes.

mod support;

use std::process::{Command, Output, Stdio};

use support::{ProcessCluster, within};

fn conclave(cluster: &ProcessCluster, arguments: &[&str]) -> Output {
    Command::new(support::conclave_binary())
        .args(arguments)
        // Through the environment: after `--` a flag would belong to the child command.
        .env("CONCLAVE_ENDPOINTS", cluster.endpoints().join(","))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs a subcommand that must succeed; returns its stdout.
fn ok(cluster: &ProcessCluster, arguments: &[&str]) -> String {
    let output = conclave(cluster, arguments);
    assert!(
        output.status.success(),
        "conclave {arguments:?}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_tree_queue_and_cluster_subcommands() {
    let cluster = ProcessCluster::start().await;

    assert!(ok(&cluster, &["kv", "put", "/app/a", "1"]).starts_with("revision "));
    ok(&cluster, &["kv", "put", "/app/b", "2"]);
    assert_eq!(ok(&cluster, &["kv", "get", "/app/a"]), "/app/a=1\n");
    assert_eq!(
        ok(&cluster, &["kv", "get", "/app/", "--prefix"]),
        "/app/a=1\n/app/b=2\n"
    );
    assert_eq!(
        ok(
            &cluster,
            &[
                "kv",
                "txn",
                "--compare",
                "/app/a=1",
                "--put",
                "/app/a=3",
                "--else-put",
                "/app/z=0"
            ]
        ),
        "SUCCESS\n"
    );
    assert_eq!(
        ok(
            &cluster,
            &[
                "kv",
                "txn",
                "--compare",
                "/app/a=1",
                "--put",
                "/app/a=4",
                "--else-put",
                "/app/z=0"
            ]
        ),
        "FAILURE\n"
    );
    assert_eq!(ok(&cluster, &["kv", "get", "/app/z"]), "/app/z=0\n");
    assert_eq!(
        ok(&cluster, &["kv", "del", "/app/", "--prefix"]),
        "deleted 3\n"
    );
    assert_eq!(
        conclave(&cluster, &["kv", "get", "/app/a"]).status.code(),
        Some(3)
    );

    assert_eq!(
        ok(&cluster, &["tree", "create", "/jobs", "root"]),
        "/jobs\n"
    );
    let created = ok(
        &cluster,
        &["tree", "create", "/jobs/job-", "x", "--sequential"],
    );
    assert!(created.starts_with("/jobs/job-"), "{created}");
    let child = created.trim().to_string();
    assert_eq!(
        ok(&cluster, &["tree", "ls", "/jobs"]),
        format!("{}\n", &child["/jobs/".len()..])
    );
    assert_eq!(
        ok(&cluster, &["tree", "set", &child, "y", "--version", "0"]),
        "version 1\n"
    );
    let stale = conclave(&cluster, &["tree", "set", &child, "z", "--version", "0"]);
    assert_eq!(stale.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&stale.stderr).contains("bad version"),
        "{stale:?}"
    );
    assert_eq!(ok(&cluster, &["tree", "get", &child]), "y\n");
    ok(&cluster, &["tree", "rm", &child]);
    assert_eq!(
        conclave(&cluster, &["tree", "get", &child]).status.code(),
        Some(3)
    );

    assert_eq!(
        ok(&cluster, &["queue", "offer", "work", "w1"])
            .split(' ')
            .next(),
        Some("offered")
    );
    assert_eq!(ok(&cluster, &["queue", "poll", "work"]), "w1\n");
    assert_eq!(
        conclave(&cluster, &["queue", "poll", "work"]).status.code(),
        Some(3)
    );

    let status = ok(&cluster, &["cluster", "status"]);
    assert_eq!(status.lines().count(), 3, "{status}");
    assert_eq!(status.matches("role=leader").count(), 1, "{status}");
    let members = ok(&cluster, &["cluster", "members"]);
    assert_eq!(members.matches(" voter ").count(), 3, "{members}");

    let file = cluster.directory.path().join("backup.snap");
    let saved = ok(&cluster, &["snapshot", "save", file.to_str().unwrap()]);
    assert!(saved.starts_with("saved snapshot"), "{saved}");
    assert!(std::fs::metadata(&file).unwrap().len() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_and_elect_run_a_command_with_the_token_and_watches_print_changes() {
    let cluster = ProcessCluster::start().await;
    let first: u64 = ok(
        &cluster,
        &[
            "lock",
            "deploy",
            "--",
            "sh",
            "-c",
            "echo $CONCLAVE_LOCK_TOKEN",
        ],
    )
    .trim()
    .parse()
    .unwrap();
    let second: u64 = ok(
        &cluster,
        &[
            "lock",
            "deploy",
            "--",
            "sh",
            "-c",
            "echo $CONCLAVE_LOCK_TOKEN",
        ],
    )
    .trim()
    .parse()
    .unwrap();
    assert!(second > first, "each grant has a larger fencing token");
    let failed = conclave(&cluster, &["lock", "deploy", "--", "sh", "-c", "exit 7"]);
    assert_eq!(
        failed.status.code(),
        Some(7),
        "the command's exit code is passed on"
    );

    let elected = ok(
        &cluster,
        &[
            "elect",
            "primary",
            "--",
            "sh",
            "-c",
            "echo epoch=$CONCLAVE_ELECTION_EPOCH",
        ],
    );
    let mut lines = elected.lines();
    assert!(lines.next().unwrap().starts_with("elected primary epoch "));
    assert!(lines.next().unwrap().starts_with("epoch="));

    // A watcher prints the current data, then the change another client makes.
    let endpoints = cluster.endpoints().join(",");
    let mut watcher = std::process::Command::new(support::conclave_binary())
        .args([
            "tree",
            "watch",
            "/flag",
            "--count",
            "2",
            "--endpoints",
            &endpoints,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The first line is printed once the watch is set, so the create below is seen.
    let mut reader = std::io::BufReader::new(watcher.stdout.take().unwrap());
    let first_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        (line, reader)
    });
    let (line, mut reader) = within("watch set", first_line).await.unwrap();
    assert_eq!(line, "<absent>\n");
    ok(&cluster, &["tree", "create", "/flag", "up"]);
    let rest = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
        rest
    });
    assert_eq!(within("watch change", rest).await.unwrap(), "up\n");
    assert!(
        watcher.wait().unwrap().success(),
        "the watcher exits after --count lines"
    );
}
