"""
The cluster behind Redis Sentinel ("cluster_redis sentinel://HOST:PORT,
HOST:PORT,HOST:PORT/NAME"): one primary, one replica and three sentinels
on loopback, started by the test.

The master asks a sentinel for the primary (SENTINEL
get-master-addr-by-name), checks with ROLE that it is one, and stays
subscribed to +switch-master; a change is acknowledged once the replica
has it too (WAIT 1, at most 500 ms).  When the primary is killed, the
sentinels promote the replica and keygated follows: its log names the new
primary, writes work again, and every key acknowledged before the
failover is still there, on every node and in the new primary.  A stale
answer (a sentinel naming a replica) is caught by ROLE.

Redis that lost its last changes (here: restarted from an older
snapshot, the namespace's epoch unchanged) is caught by the heartbeat (the
stream ends before the node's position): each node commits again the
changes it applied that the stream no longer has, if the key is as they
found it, and only then takes Redis's state whole.

What is checked: the lost changes (creates, a patch, a deletion) are back
in Redis and on both nodes, and the key whose deletion was lost is refused
throughout; two nodes follow a failover (the log line, /v1/cluster's
redis_up, keys created before it work on both nodes afterwards, writes
after it reach both nodes); the configuration's sentinel:// forms and
their errors.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import kgtest as kg
import rediskit as R

MASTER = "kgprimary"


class Sentinel:
    """redis-sentinel (redis-server --sentinel) watching primary."""

    def __init__(self, primary_port):
        self.dir = kg.tempdir()
        self.port = kg.free_port()
        self.conf = os.path.join(self.dir, "sentinel.conf")
        with open(self.conf, "w") as f:
            f.write("port %d\nbind 127.0.0.1\ndir %s\n"
                    "logfile %s\n"
                    "sentinel monitor %s 127.0.0.1 %d 2\n"
                    "sentinel down-after-milliseconds %s 1000\n"
                    "sentinel failover-timeout %s 5000\n"
                    "sentinel parallel-syncs %s 1\n"
                    % (self.port, self.dir,
                       os.path.join(self.dir, "sentinel.log"), MASTER,
                       primary_port, MASTER, MASTER, MASTER))
        self.proc = subprocess.Popen(
            ["redis-server", self.conf, "--sentinel"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        kg.wait_for(self.up, 10, "sentinel on %d" % self.port)

    def up(self):
        try:
            c = R.Client(self.port)
            c.call("PING")
            c.close()
            return True
        except (OSError, ConnectionError, R.RedisError):
            return False

    def primary(self):
        c = R.Client(self.port)
        try:
            a = c.call("SENTINEL", "get-master-addr-by-name", MASTER)
        finally:
            c.close()
        return None if a is None else (a[0].decode(), int(a[1]))

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


def need_sentinel():
    R.need_redis()


def setup():
    """Primary, replica (in sync), three sentinels; (primary, replica,
    sentinels)."""
    need_sentinel()
    primary = R.Server()
    replica = R.Server(args=["--replicaof", "127.0.0.1", str(primary.port)])
    kg.wait_for(lambda: b"master_link_status:up" in replica.call(
        "INFO", "replication"), 10, "the replica in sync")
    sentinels = [Sentinel(primary.port) for _ in range(3)]
    # Every sentinel knows the replica (and the others) before a test
    # kills anything.
    kg.wait_for(lambda: all(int(dict(zip(*[iter(
        R.Client(s.port).call("SENTINEL", "master", MASTER))] * 2)).get(
        b"num-slaves", b"0")) >= 1 for s in sentinels), 15,
        "the sentinels see the replica")
    return primary, replica, sentinels


def url(sentinels):
    return "sentinel://" + ",".join("127.0.0.1:%d" % s.port
                                    for s in sentinels) + "/" + MASTER


def test_failover():
    primary, replica, sentinels = setup()
    try:
        t = kg.config("route GET ^/ auth=api-key upstream=echo",
                      admin="{port2}", cluster_redis=url(sentinels),
                      cluster_name="sen")
        a = kg.start(t, nports=2)
        b = kg.start(t, nports=2)
        for d in (a, b):
            kg.wait_for(lambda: kg.admin(d, "GET", "/v1/cluster").json()
                        .get("state") == "joined", 10, "joined")
        before = [kg.create_key(a if i % 2 else b, owner="o%d" % i)
                  for i in range(10)]
        for k, sec in before:
            kg.wait_for(lambda: kg.get(b.port, "/x", headers={
                "X-API-KEY": sec}).status == 200, 2, "key on b")
        t0 = time.monotonic()
        primary.stop()
        for d in (a, b):
            d.wait_log(r"the primary %s is 127\.0\.0\.1:%d "
                       r"\(\+switch-master\); reconnecting"
                       % (MASTER, replica.port), timeout=30)
        # Writes work against the new primary.
        def created():
            r = kg.admin(a, "POST", "/v1/keys", {"owner": "after"})
            return r if r.status == 201 else None
        kg.wait_for(created, 15, "a create after the failover")
        took = time.monotonic() - t0
        print("# failover followed in %.1f s" % took)
        after = kg.create_key(b, owner="after2")
        for d in (a, b):
            for k, sec in before + [after]:
                kg.wait_for(lambda: kg.get(d.port, "/x", headers={
                    "X-API-KEY": sec}).status == 200, 3,
                    "key %s on node %s" % (k["id"], d.port))
        ids = R.Client(replica.port).call("HKEYS", "keygate:{sen}:keys")
        for k, _ in before + [after]:
            kg.check(k["id"].encode() in ids, "key %s lost in the "
                     "failover" % k["id"])
        st = kg.admin(a, "GET", "/v1/cluster").json()
        kg.eq(st["redis_up"], True, "redis_up after the failover")
    finally:
        for s in sentinels:
            s.stop()
        R.stop_all()


def test_lost_changes_restored():
    """Redis comes back from an older snapshot (same namespace, the last
    changes gone): the nodes commit again what they applied since, so a
    deleted key stays deleted and created ones stay, everywhere."""
    r = R.Server()
    try:
        t = kg.config("route GET ^/ auth=api-key upstream=echo",
                      admin="{port2}", cluster_redis=r.url(),
                      cluster_name="lost")
        a = kg.start(t, nports=2)
        b = kg.start(t, nports=2)
        for d in (a, b):
            kg.wait_for(lambda: kg.admin(d, "GET", "/v1/cluster").json()
                        .get("state") == "joined", 10, "joined")
        k0, s0 = kg.create_key(a, owner="gone")
        kg.eq(r.call("SAVE"), "OK", "SAVE")
        made = [kg.create_key(a, owner="x"), kg.create_key(b, owner="y")]
        k3, s3 = kg.create_key(a, owner="z")
        # b changes keys a made: it must have them first (the stream
        # brings them within milliseconds, later on a loaded machine).
        for k in (k0, k3):
            kg.wait_for(lambda: kg.admin(b, "GET", "/v1/keys/" + k["id"])
                        .status == 200, 5, "key %s on b" % k["id"])
        r3 = kg.admin(b, "PATCH", "/v1/keys/" + k3["id"], {"name": "n3"})
        kg.eq(r3.status, 200, "patch")
        kg.eq(kg.admin(b, "DELETE", "/v1/keys/" + k0["id"]).status, 204,
              "delete")
        for d in (a, b):
            kg.wait_for(lambda: kg.get(d.port, "/x", headers={
                "X-API-KEY": s0}).status == 401, 2, "k0 revoked")
        # Back from the snapshot taken before all of that.
        r.stop()
        r.start()
        kg.eq(r.call("HEXISTS", "keygate:{lost}:keys", k0["id"]), 1,
              "the snapshot holds k0")
        for d in (a, b):
            d.wait_log(r"Redis lost changes; resynchronising", timeout=15)
        # The deletion is committed again, the creates too; k0 never
        # works again meanwhile.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for d in (a, b):
                kg.eq(kg.get(d.port, "/x", headers={"X-API-KEY": s0})
                      .status, 401, "k0 (deleted) on %d" % d.port)
            if (r.call("HEXISTS", "keygate:{lost}:keys", k0["id"]) == 0
                    and all(r.call("HEXISTS", "keygate:{lost}:keys",
                                   k["id"]) for k, _ in made + [(k3, s3)])):
                break
            time.sleep(0.05)
        kg.eq(r.call("HEXISTS", "keygate:{lost}:keys", k0["id"]), 0,
              "k0 deleted again in Redis")
        for d in (a, b):
            for k, sec in made + [(k3, s3)]:
                kg.wait_for(lambda: kg.get(d.port, "/x", headers={
                    "X-API-KEY": sec}).status == 200, 3,
                    "key %s on %d" % (k["id"], d.port))
            kg.wait_for(lambda: kg.admin(d, "GET", "/v1/keys/" + k3["id"])
                        .json().get("name") == "n3", 3, "the patch kept")
    finally:
        R.stop_all()


def test_config_forms():
    d = kg.tempdir()
    good = ["sentinel://127.0.0.1:26379/mymaster",
            "sentinel://a:1,b:2,c/mymaster"]
    bad = [("sentinel://127.0.0.1:26379", "primary's name"),
           ("sentinel://127.0.0.1:0/m", "port"),
           ("sentinel://:5/m", "without a host"),
           ("sentinel://h/m!", "primary's name"),
           ("sentinel://" + ",".join("h%d" % i for i in range(9)) + "/m",
            "more than 8")]
    for u in good:
        path = kg.write_file(d, "g.conf", kg.config(cluster_redis=u).replace(
            "{dir}", d).replace("{port}", "1"))
        r = kg.keygated("-t", "-c", path)
        kg.eq(r.returncode, 0, "%s: %s" % (u, r.stderr))
    for u, why in bad:
        path = kg.write_file(d, "b.conf", kg.config(cluster_redis=u).replace(
            "{dir}", d).replace("{port}", "1"))
        r = kg.keygated("-t", "-c", path)
        kg.eq(r.returncode, 1, "%s accepted" % u)
        kg.check(why in r.stderr and "b.conf:" in r.stderr,
                 "%s: %r" % (u, r.stderr))


TESTS = [
    test_failover,
    test_lost_changes_restored,
    test_config_forms,
]


if __name__ == "__main__":
    if len(sys.argv) > 1:
        TESTS = [t for t in TESTS if t.__name__ in sys.argv[1:]]
    kg.run(TESTS)
