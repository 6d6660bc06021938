"""Kazoo against Conclave's ZooKeeper frontend.

Usage: python3 zk_kazoo.py HOST:PORT
Exits non-zero with a message at the first check that fails.
"""

import os
import signal
import subprocess
import sys
import threading
import time

from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadVersionError,
    NoNodeError,
    NodeExistsError,
    NotEmptyError,
)
from kazoo.recipe.lock import Lock

HOSTS = sys.argv[1]
DEADLINE_S = 30.0


def check(condition, message):
    if not condition:
        print("FAILED: " + message, file=sys.stderr)
        sys.exit(1)
    print("ok: " + message)


def wait_until(predicate, message):
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if predicate():
            check(True, message)
            return
        time.sleep(0.05)
    check(False, message + " (timed out)")


def client(timeout=10.0, **kwargs):
    zk = KazooClient(hosts=HOSTS, timeout=timeout, **kwargs)
    zk.start(timeout=DEADLINE_S)
    return zk


def basics(zk):
    zk.ensure_path("/interop/basics")
    zk.create("/interop/basics/a", b"one")
    data, stat = zk.get("/interop/basics/a")
    check(data == b"one" and stat.version == 0, "create and get")
    try:
        zk.create("/interop/basics/a", b"again")
        check(False, "a second create fails")
    except NodeExistsError:
        check(True, "a second create raises NodeExistsError")
    stat = zk.set("/interop/basics/a", b"two", version=0)
    check(stat.version == 1, "set with the right version")
    try:
        zk.set("/interop/basics/a", b"three", version=0)
        check(False, "set with a stale version fails")
    except BadVersionError:
        check(True, "set with a stale version raises BadVersionError")
    check(zk.exists("/interop/basics/a") is not None, "exists")
    check(zk.exists("/interop/basics/none") is None, "exists of an absent node")
    zk.create("/interop/basics/b")
    check(sorted(zk.get_children("/interop/basics")) == ["a", "b"], "get_children")
    try:
        zk.delete("/interop/basics")
        check(False, "delete of a parent fails")
    except NotEmptyError:
        check(True, "delete of a parent raises NotEmptyError")
    zk.delete("/interop/basics/b", version=0)
    try:
        zk.get("/interop/basics/b")
        check(False, "get after delete fails")
    except NoNodeError:
        check(True, "get after delete raises NoNodeError")
    zk.delete("/interop/basics", recursive=True)
    check(zk.exists("/interop/basics") is None, "recursive delete")


def sequential_and_ephemeral(zk):
    zk.ensure_path("/interop/seq")
    first = zk.create("/interop/seq/n-", sequence=True)
    second = zk.create("/interop/seq/n-", ephemeral=True, sequence=True)
    check(first == "/interop/seq/n-0000000000", "sequential suffix " + first)
    check(second == "/interop/seq/n-0000000001", "ephemeral sequential " + second)
    _, stat = zk.get(second)
    check(stat.ephemeralOwner == zk.client_id[0], "the ephemeral's owner is the session")


def transactions(zk):
    zk.ensure_path("/interop/tx")
    tx = zk.transaction()
    tx.create("/interop/tx/a", b"a")
    tx.create("/interop/tx/b", b"b")
    tx.check("/interop/tx", 0)
    results = tx.commit()
    check(results == ["/interop/tx/a", "/interop/tx/b", True], "transaction commits %r" % results)
    tx = zk.transaction()
    tx.create("/interop/tx/c")
    tx.check("/interop/tx/a", 7)
    results = tx.commit()
    check(isinstance(results[1], BadVersionError), "failed transaction reports %r" % results)
    check(zk.exists("/interop/tx/c") is None, "a failed transaction changes nothing")


def watches(zk, other):
    zk.ensure_path("/interop/watch")
    seen = []
    fired = threading.Event()

    def on_data(data, stat):
        seen.append(data)
        if data == b"changed":
            fired.set()

    zk.DataWatch("/interop/watch", on_data)
    other.set("/interop/watch", b"changed")
    check(fired.wait(DEADLINE_S), "DataWatch sees another client's change")

    children = []
    zk.ChildrenWatch("/interop/watch", lambda names: children.append(sorted(names)))
    other.create("/interop/watch/kid")
    wait_until(lambda: children and children[-1] == ["kid"], "ChildrenWatch sees a new child")

    event = threading.Event()
    zk.exists("/interop/watch/later", watch=lambda e: event.set())
    other.create("/interop/watch/later")
    check(event.wait(DEADLINE_S), "exists watch fires on create")


def locks(zk):
    holders = []
    order = []
    clients = [client() for _ in range(3)]
    try:

        def worker(index, zk_worker):
            lock = Lock(zk_worker, "/interop/lock", identifier="w%d" % index)
            with lock:
                holders.append(index)
                check(len(holders) == 1, "only one holder at a time")
                order.append(index)
                time.sleep(0.05)
                holders.remove(index)

        threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE_S)
        check(sorted(order) == [0, 1, 2], "every contender got the lock once")
    finally:
        for c in clients:
            c.stop()
            c.close()


CHILD = """
import sys, time
from kazoo.client import KazooClient
zk = KazooClient(hosts=sys.argv[1], timeout=2.0)
zk.start(timeout=30)
zk.create("/interop/dying", ephemeral=True, makepath=True)
print("%d %s" % (zk.client_id[0], zk.client_id[1].hex()), flush=True)
time.sleep(600)
"""


def failure_detection_and_expiry(zk):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, HOSTS], stdout=subprocess.PIPE, text=True
    )
    line = child.stdout.readline().split()
    check(len(line) == 2, "the child client started")
    session_id, password = int(line[0]), bytes.fromhex(line[1])
    check(zk.exists("/interop/dying") is not None, "the child's ephemeral exists")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    gone = threading.Event()
    zk.exists("/interop/dying", watch=lambda e: gone.set())
    check(gone.wait(DEADLINE_S), "the ephemeral of a killed client disappears")

    # The server answers the dead session's id with the expired answer (timeout 0);
    # kazoo then opens a fresh session (a client that starts in LOST stays there, so no
    # listener call tells it: the new id does).
    late = KazooClient(hosts=HOSTS, timeout=2.0, client_id=(session_id, password))
    late.start(timeout=DEADLINE_S)
    try:
        wait_until(
            lambda: late.connected and late.client_id[0] != session_id,
            "resuming an expired session gets a new session",
        )
        check(late.exists("/interop") is not None, "the new session serves requests")
    finally:
        late.stop()
        late.close()


def main():
    zk = client()
    other = client()
    try:
        zk.delete("/interop", recursive=True)
        basics(zk)
        sequential_and_ephemeral(zk)
        transactions(zk)
        watches(zk, other)
        locks(zk)
        failure_detection_and_expiry(zk)
        zk.delete("/interop", recursive=True)
    finally:
        other.stop()
        other.close()
        zk.stop()
        zk.close()
    print("kazoo interop: all checks passed")


if __name__ == "__main__":
    main()
