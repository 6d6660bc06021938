#!/usr/bin/env bash
# Runs etcdctl 3.4 (Debian's etcd-client package) against Conclave's etcd v3 frontend:
# installs etcdctl if missing (as root), starts the in-process 3-node example cluster,
# exercises put, get (prefix, revision), del, txn, watch (from a past revision and after
# compaction), lease grant / keep-alive / time-to-live / revoke, lock, elect, member list and
# endpoint status and health, compares every output with what etcd prints, and stops the
# cluster by its pid. Fails loudly at the first mismatch.
#
# Usage: server/interop/etcd.sh   (from anywhere; CARGO_TARGET_DIR is honoured)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
cluster_pid=""
background_pids=()

cleanup() {
    for pid in "${background_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    if [[ -n "$cluster_pid" ]] && kill -0 "$cluster_pid" 2>/dev/null; then
        kill "$cluster_pid" 2>/dev/null || true
        wait "$cluster_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "etcd interop: FAILED: $*" >&2
    if [[ -f "$work/cluster.log" ]]; then
        echo "--- cluster log (last 30 lines) ---" >&2
        tail -30 "$work/cluster.log" >&2
    fi
    exit 1
}

if ! command -v etcdctl >/dev/null 2>&1; then
    if [[ "$(id -u)" == 0 ]]; then
        apt-get update -qq
        apt-get install -y -qq etcd-client >/dev/null
    else
        fail "etcdctl is missing and we are not root (apt-get install etcd-client)"
    fi
fi
export ETCDCTL_API=3

cd "$root"
cargo build --quiet -p conclave-server --example etcd_cluster
target="${CARGO_TARGET_DIR:-$root/target}"
binary="$target/debug/examples/etcd_cluster"

# The cluster serves until its stdin closes: keep it open with a fifo we hold.
mkfifo "$work/stdin"
"$binary" "$work/endpoints" < "$work/stdin" > "$work/cluster.log" 2>&1 &
cluster_pid=$!
exec 3> "$work/stdin"

for _ in $(seq 1 300); do
    [[ -s "$work/endpoints" ]] && break
    kill -0 "$cluster_pid" 2>/dev/null || fail "the cluster exited early"
    sleep 0.1
done
[[ -s "$work/endpoints" ]] || fail "the cluster printed no endpoints within 30 s"
cat "$work/endpoints"
leader="$(awk '$4 == "leader" {print $3}' "$work/endpoints")"
all="$(awk '{print $3}' "$work/endpoints" | paste -sd, -)"
started=$(date +%s)

ctl() {
    etcdctl --endpoints="$leader" --command-timeout=10s "$@"
}

# expect NAME EXPECTED COMMAND...: the command's whole output must equal EXPECTED.
expect() {
    local name="$1" expected="$2"
    shift 2
    local actual
    actual="$("$@" 2>&1)" || fail "$name: exit $? with output: $actual"
    if [[ "$actual" != "$expected" ]]; then
        fail "$name: expected
$expected
got
$actual"
    fi
    echo "ok  $name"
}

# expect_match NAME REGEX COMMAND...: the command's output must match the extended REGEX.
expect_match() {
    local name="$1" pattern="$2"
    shift 2
    local actual
    actual="$("$@" 2>&1)" || fail "$name: exit $? with output: $actual"
    if ! grep -Eq -- "$pattern" <<< "$actual"; then
        fail "$name: output does not match /$pattern/:
$actual"
    fi
    echo "ok  $name"
}

# KV: revisions start at 1, each put adds one.
expect "put a/1" "OK" ctl put a/1 one                 # revision 2
expect "put a/2" "OK" ctl put a/2 two                 # 3
expect "put a/1 again" "OK" ctl put a/1 uno           # 4
expect "get prefix" $'a/1\nuno\na/2\ntwo' ctl get --prefix a/
expect "get at revision 2" $'a/1\none' ctl get --rev=2 a/1
expect "get keys only" $'a/1\n\na/2' ctl get --prefix --keys-only a/
expect_match "get json revision" '"revision":4' ctl get -w json a/1
expect "txn success" $'SUCCESS\n\nOK\n\na/1\nuno' ctl txn <<'TXN'
value("a/1") = "uno"

put a/3 three
get a/1

del a/1

TXN
expect "txn failure" $'FAILURE\n\n1' ctl txn <<'TXN'
version("a/1") = "9"

put a/4 four

del a/3

TXN
expect "del prefix" "2" ctl del --prefix a/            # 7: a/1 and a/2

# watch_for SECONDS ARGS...: what `etcdctl watch ARGS` prints within SECONDS.
watch_for() {
    local seconds="$1"
    shift
    timeout "$seconds" etcdctl --endpoints="$leader" watch "$@" 2>&1 || true
}

# Watch from a past revision replays the history, deletes included.
expect "watch from revision 2" $'PUT\na/1\none\nPUT\na/2\ntwo\nPUT\na/1\nuno\nPUT\na/3\nthree\nDELETE\na/3\n\nDELETE\na/1\n\nDELETE\na/2' \
    watch_for 2 --rev=2 --prefix a/
expect "compact" "compacted revision 5" ctl compact 5
expect_match "watch after compaction" \
    'watch was canceled \(etcdserver: mvcc: required revision has been compacted\)' \
    watch_for 2 --rev=2 --prefix a/

# Leases.
lease="$(ctl lease grant 30 | awk '{print $2}')"
[[ -n "$lease" ]] || fail "lease grant printed no id"
expect "put with lease" "OK" ctl put --lease="$lease" l/1 x
expect "lease keep-alive" "lease $lease keepalived with TTL(30)" ctl lease keep-alive --once "$lease"
expect_match "lease timetolive" "lease $lease granted with TTL\(30s\), remaining\((29|30)s\), attached keys\(\[l/1\]\)" \
    ctl lease timetolive --keys "$lease"
expect "lease list" $'found 1 leases\n'"$lease" ctl lease list
expect "lease revoke" "lease $lease revoked" ctl lease revoke "$lease"
expect "lease keys deleted" "" ctl get l/1

# Lock and elect (etcdctl runs etcd's client-side recipes over our KV, Lease and Watch).
expect "lock" "held" ctl lock interop-lock echo held
timeout 6 etcdctl --endpoints="$leader" elect interop-election proposal > "$work/elect" 2>&1 &
background_pids+=($!)
for _ in $(seq 1 50); do
    [[ -s "$work/elect" ]] && break
    sleep 0.1
done
expect_match "elect campaign" '^interop-election/[0-9a-f]+$' head -1 "$work/elect"
expect_match "elect observe" 'proposal' bash -c \
    "timeout 2 etcdctl --endpoints=$leader elect -l interop-election 2>&1 || true"

# Cluster.
expect_match "member list" '^1, started, conclave-1, http://127\.0\.0\.1:[0-9]+, http://127\.0\.0\.1:[0-9]+, false$' \
    ctl member list
[[ "$(ctl member list | wc -l)" == 3 ]] || fail "member list: expected 3 members"
echo "ok  member list has 3 members"
expect_match "endpoint health" "is healthy: successfully committed proposal" \
    etcdctl --endpoints="$all" endpoint health

# etcdctl 3.4 dials a maintenance connection per endpoint with the URL's scheme left in the
# :authority, which the Rust HTTP/2 server refuses (PROTOCOL_ERROR): Maintenance calls get
# the endpoints without the scheme.
bare="$(awk '{print $3}' "$work/endpoints" | sed 's|^http://||' | paste -sd, -)"
expect_match "endpoint status" '^127\.0\.0\.1:[0-9]+, 1, 3\.5\.0, 0 B, (true|false), false, [0-9]+, [0-9]+, [0-9]+, $' \
    bash -c "etcdctl --endpoints=$bare endpoint status | head -1"
[[ "$(etcdctl --endpoints="$bare" endpoint status | grep -c ', true, ')" == 1 ]] \
    || fail "endpoint status: expected exactly one leader"
echo "ok  endpoint status names one leader"
expect_match "endpoint hashkv" '^127\.0\.0\.1:[0-9]+, [0-9]+$' \
    bash -c "etcdctl --endpoints=${bare%%,*} endpoint hashkv"

echo "etcd interop: passed in $(( $(date +%s) - started )) s"
exec 3>&-
