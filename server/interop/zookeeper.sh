#!/usr/bin/env bash
# Runs kazoo (the Python ZooKeeper client) against Conclave's ZooKeeper frontend: installs
# kazoo if missing, starts the in-process 3-node example cluster, runs zk_kazoo.py against
# one node, and stops the cluster by its pid. Fails loudly at the first error.
#
# Usage: server/interop/zookeeper.sh   (from anywhere; CARGO_TARGET_DIR is honoured)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
cluster_pid=""

cleanup() {
    if [[ -n "$cluster_pid" ]] && kill -0 "$cluster_pid" 2>/dev/null; then
        kill "$cluster_pid" 2>/dev/null || true
        wait "$cluster_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

if ! python3 -c "import kazoo" 2>/dev/null; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
        if [[ "$(id -u)" == 0 ]]; then
            apt-get update -qq
            apt-get install -y -qq python3-pip >/dev/null
        else
            echo "zookeeper interop: python3-pip is missing and we are not root" >&2
            exit 1
        fi
    fi
    python3 -m pip install --quiet kazoo 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages kazoo
fi

cd "$root"
cargo build --quiet -p conclave-server --example zookeeper_cluster
target="${CARGO_TARGET_DIR:-$root/target}"
binary="$target/debug/examples/zookeeper_cluster"

# The cluster serves until its stdin closes: keep it open with a fifo we hold.
mkfifo "$work/stdin"
"$binary" "$work/endpoints" < "$work/stdin" > "$work/cluster.log" 2>&1 &
cluster_pid=$!
exec 3> "$work/stdin"

for _ in $(seq 1 300); do
    [[ -s "$work/endpoints" ]] && break
    if ! kill -0 "$cluster_pid" 2>/dev/null; then
        echo "zookeeper interop: the cluster exited early:" >&2
        cat "$work/cluster.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ ! -s "$work/endpoints" ]]; then
    echo "zookeeper interop: the cluster printed no endpoints within 30 s" >&2
    cat "$work/cluster.log" >&2
    exit 1
fi
cat "$work/endpoints"
endpoint="$(awk 'NR==1 {print $3}' "$work/endpoints")"

started=$(date +%s)
if ! python3 "$here/zk_kazoo.py" "$endpoint"; then
    echo "zookeeper interop: kazoo checks FAILED; cluster log:" >&2
    tail -50 "$work/cluster.log" >&2
    exit 1
fi
echo "zookeeper interop: passed in $(( $(date +%s) - started )) s"
exec 3>&-
