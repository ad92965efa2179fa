#!/usr/bin/env python3
"""Admin creates per second through a cluster, and how fast a revocation
reaches the other node, against one node on its own in the same run.

    KEYGATED=_build/src/keygated python3 contrib/bench/cluster.py \
        [CREATES] [CLIENTS] [ROUNDS]

Starts a redis-server (no persistence) and, in turns for ROUNDS rounds
(default 3): two keygated nodes in one cluster (cluster_redis), and one
keygated alone (its journal fdatasync'ed, as always).  In each round,
CREATES (default 2000) "POST /v1/keys" from CLIENTS (default 16)
concurrent clients, each with its own keep-alive connection, spread over
the nodes (every create answered 201, every key then present on every
node); then, for the cluster, 200 revocations (DELETE on one node, the
other node's gateway polled until it refuses the secret).  Prints the
medians over the rounds and each round's figures.  Everything listens on
127.0.0.1; every process is stopped at the end.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

KEYGATED = os.environ.get("KEYGATED") or os.path.join(
    os.path.dirname(__file__), "..", "..", "_build", "src", "keygated")
TOKEN = "bench-cluster-admin-token-0123456789"


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def wait_port(port, proc, what, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("cluster.py: %s exited (%d)" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("cluster.py: %s did not start" % what)


class Node:
    def __init__(self, top, name, redis_port=None, cluster="bench"):
        self.dir = os.path.join(top, name)
        os.makedirs(self.dir)
        self.port, self.admin = free_ports(2)
        with open(os.path.join(self.dir, "token"), "w") as f:
            f.write(TOKEN + "\n")
        lines = ["listen 127.0.0.1:%d" % self.port,
                 "admin_listen 127.0.0.1:%d" % self.admin,
                 "admin_token_file %s/token" % self.dir,
                 "workers 2", "log_level warn",
                 "pidfile %s/pid" % self.dir,
                 "state_dir %s/state" % self.dir,
                 "error_log %s/error.log" % self.dir,
                 "upstream echo echo",
                 "route GET ^/ auth=api-key upstream=echo"]
        if redis_port is not None:
            lines += ["cluster_redis redis://127.0.0.1:%d" % redis_port,
                      "cluster_name %s" % cluster]
        conf = os.path.join(self.dir, "keygate.conf")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([KEYGATED, "-f", "-c", conf],
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.admin, self.proc, "keygated " + name)
        if redis_port is not None:
            deadline = time.monotonic() + 10
            while self.request("GET", "/v1/cluster")[1].get(
                    "state") != "joined":
                if time.monotonic() > deadline:
                    sys.exit("cluster.py: node %s did not join" % name)
                time.sleep(0.05)

    def request(self, method, path, body=None, conn=None):
        c = conn or http.client.HTTPConnection("127.0.0.1", self.admin,
                                               timeout=30)
        h = {"Authorization": "Bearer " + TOKEN}
        if body is not None:
            h["Content-Type"] = "application/json"
        c.request(method, path, json.dumps(body) if body is not None
                  else None, h)
        r = c.getresponse()
        data = r.read()
        if conn is None:
            c.close()
        return r.status, json.loads(data) if data else {}

    def ids(self):
        out, cursor = set(), None
        while True:
            q = "/v1/keys?limit=1000" + ("&cursor=" + cursor if cursor
                                         else "")
            st, j = self.request("GET", q)
            out.update(k["id"] for k in j["keys"])
            cursor = j.get("next_cursor")
            if not cursor:
                return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def creates(nodes, n, clients):
    """n creates from clients threads over nodes; (seconds, ids)."""
    ids, errors, lock = [], [], threading.Lock()
    per = [n // clients + (1 if i < n % clients else 0)
           for i in range(clients)]

    def run(i):
        node = nodes[i % len(nodes)]
        c = http.client.HTTPConnection("127.0.0.1", node.admin, timeout=30)
        try:
            for j in range(per[i]):
                st, body = node.request("POST", "/v1/keys",
                                        {"owner": "bench"}, conn=c)
                if st != 201:
                    errors.append("%d: %s" % (st, body))
                    return
                with lock:
                    ids.append(body["id"])
        finally:
            c.close()
    threads = [threading.Thread(target=run, args=(i,))
               for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    if errors:
        sys.exit("cluster.py: create failed: %s" % errors[0])
    return took, ids


def revocations(a, b, n):
    """n keys made on a, deleted on a, b's gateway polled until 401:
    the times (ms) from a's answer to b's refusal."""
    out = []
    g = http.client.HTTPConnection("127.0.0.1", b.port, timeout=10)
    for _ in range(n):
        st, k = a.request("POST", "/v1/keys", {"owner": "rev"})
        secret = k["secret"]
        deadline = time.monotonic() + 2
        while True:     # known on b first
            g.request("GET", "/x", headers={"X-API-KEY": secret})
            r = g.getresponse()
            r.read()
            if r.status == 200 or time.monotonic() > deadline:
                break
        st, _ = a.request("DELETE", "/v1/keys/" + k["id"])
        t0 = time.perf_counter()
        while True:
            g.request("GET", "/x", headers={"X-API-KEY": secret})
            r = g.getresponse()
            r.read()
            if r.status == 401:
                break
            if time.perf_counter() - t0 > 5:
                sys.exit("cluster.py: a revocation took over 5 s")
        out.append((time.perf_counter() - t0) * 1000)
    g.close()
    return out


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    if shutil.which("redis-server") is None:
        sys.exit("cluster.py: redis-server is not installed")
    top = tempfile.mkdtemp(prefix="kg-bench-cluster-")
    (rport,) = free_ports(1)
    redis = subprocess.Popen(
        ["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", top],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(rport, redis, "redis-server")
    res = {"cluster": [], "alone": [], "rev": []}
    try:
        for r in range(rounds):
            for kind in ("cluster", "alone"):
                if kind == "cluster":
                    nodes = [Node(top, "c%d%s" % (r, x), rport,
                                  "bench%d" % r) for x in "ab"]
                else:
                    nodes = [Node(top, "s%d" % r)]
                try:
                    took, ids = creates(nodes, n, clients)
                    for node in nodes:
                        missing = set(ids) - node.ids()
                        if missing:
                            sys.exit("cluster.py: %d acknowledged keys "
                                     "missing on a node" % len(missing))
                    res[kind].append(n / took)
                    print("round %d %-7s %6.0f creates/s (%d in %.2f s, "
                          "%d node(s))" % (r + 1, kind, n / took, n, took,
                                           len(nodes)))
                    if kind == "cluster":
                        rev = revocations(nodes[0], nodes[1], 200)
                        res["rev"] += rev
                        q = statistics.quantiles(rev, n=100)
                        print("round %d revocation on the other node: "
                              "p50 %.2f ms, p99 %.2f ms, max %.2f ms" %
                              (r + 1, statistics.median(rev), q[98],
                               max(rev)))
                finally:
                    for node in nodes:
                        node.stop()
    finally:
        redis.kill()
        redis.wait()
        shutil.rmtree(top, ignore_errors=True)
    c, a = statistics.median(res["cluster"]), statistics.median(res["alone"])
    q = statistics.quantiles(res["rev"], n=100)
    print("median creates/s: cluster of 2 nodes %.0f, one node alone %.0f "
          "(ratio %.2fx); spread cluster %.0f-%.0f, alone %.0f-%.0f" %
          (c, a, c / a, min(res["cluster"]), max(res["cluster"]),
           min(res["alone"]), max(res["alone"])))
    print("revocation reaching the other node (%d): p50 %.2f ms, p99 %.2f "
          "ms, max %.2f ms" % (len(res["rev"]), statistics.median(res["rev"]),
                               q[98], max(res["rev"])))


if __name__ == "__main__":
    main()
