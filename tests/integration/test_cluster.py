"""
The cluster: several keygated nodes sharing one key store through Redis
("cluster_redis redis://...", "cluster_name NAME"), each node a real
keygated (one worker unless said) and Redis a redis-server of the test's
own (rediskit.py: a free loopback port, no persistence, stopped at the end
of each test whatever happens).  What a node holds is read through its
admin API (GET /v1/keys, following next_cursor) and its gateway (a route
with auth=api-key on the built-in echo upstream: 200, 401, 403); what the
cluster holds, from Redis itself (the "keygate:{NAME}:keys" hash).

What is checked, and how:
- Changes propagate: on three nodes, a create, PATCHes (name, scopes,
  disabled), regenerate without and with grace_seconds, an import and
  deletes made on one node are in effect on the others within 1 s: the
  same record on their admin API, the secrets' 200/401/403 on their
  gateway.
- Revocation propagation: 100 trials of a delete, a regenerate without
  grace or a disable on node A, each timed from A's answer until node B's
  gateway refuses the old secret; every one within 1 s, p99 within
  100 ms (the figures are printed).
- A node killed (kill -9) while the other changes keys catches up when
  restarted on its state_dir ("resumed", same node id): exactly the
  other's keys.  A worker killed: the one the master starts still writes
  to the cluster.
- Redis killed: both gateways keep accepting the keys, admin reads work,
  admin writes are 503 cluster_unavailable, /v1/cluster says
  "disconnected"; Redis back on the same port but empty: the namespace
  is seeded again from a node's copy ("the namespace is gone from Redis
  ...; seeding it again"), writes work, every key acknowledged before is
  on every node and in Redis.  Redis paused (SIGSTOP): writes are 503
  within the command timeout (3 s, plus slack), the gateway keeps
  working; resumed: writes work, nothing acknowledged is lost.
- The stream trimmed (XTRIM MAXLEN 0) past a node killed meanwhile, with
  or without a change after the trim: on its restart the node
  resynchronises in full and has exactly the other node's keys.  Keys
  deleted (and a secret replaced) before a trim that happened while both
  masters were stopped stay revoked on both nodes and in Redis.  A node
  whose master was stopped (SIGSTOP) while the other changed keys and the
  stream was trimmed (then also: trimmed and changed again; the
  namespace's epoch changed) resynchronises each time, while a thread
  hammers its gateway with secrets valid all along (one of their keys
  changed each time, another regenerated with grace): not one refusal.
- A burst of 1,000 creates from 12 clients spread over three nodes (two
  workers each): every key acknowledged is listed on every node and is
  in Redis (HLEN); the rate is printed.
- Concurrent writes: 30 rounds of two PATCHes of one key (the name on A,
  the scopes on B) written at the same moment on pre-opened connections:
  200 or 409 conflict, and both nodes and Redis end with the same record
  holding each change answered 200; two creates with one secret at once
  on two nodes: one 201, one 409 key_exists.
- A node killed between its commit to Redis and its answer (debug
  builds: KEYGATE_TEST_STALL_CLUSTER): the key is on the other node;
  retrying the create there with the same Idempotency-Key answers the
  same id (and a secret that works) every time, another body 422
  idempotency_key_reused; the node restarted and a node that joined
  afterwards answer the retry the same.
- Seeding: a node whose state_dir holds keys, started against an empty
  namespace, seeds Redis with all of them, and another node gets them; a
  node with other keys of its own refuses to join (state "refused", the
  reason logged and shown, writes 503), keeps serving its own keys, and
  none of them reaches Redis.
- GET /v1/cluster: every field (both nodes listed from their heartbeats
  with self, pid, position; joined; no lag; applied_total counting a
  change made elsewhere), a stopped node's lag seen by the other, a
  killed node gone from the list when its heartbeat expires;
  {"enabled":false} without a cluster; the keygate_cluster_* metrics.
- A Redis password (password_file=, or in the URL) and an ACL user
  (redis://USER@ with password_file=): the node joins; a wrong password:
  a "retrying" log line, writes 503; no password ever appears in the
  error log, on stderr, in the access log or in /v1/cluster.  A unix:
  socket, a /DB number and another cluster_name: the right namespace.
- Configuration errors of cluster_redis and cluster_name (rediss://,
  http://, ports, database, unknown option, two passwords, no host, a
  relative socket, bad names, malformed sentinel:// addresses): keygated
  -t exits 1 naming FILE:LINE and the problem, never printing a password;
  the good forms (sentinel:// ones too) pass.
"""

import http.client
import json
import os
import re
import signal
import sys
import threading
import time

import kgtest as kg
import rediskit as R

NAME = "t"
BIG_RATE = {"per_1s": 1000000, "per_10s": 1000000, "per_60s": 1000000}
ROUTES = ("route GET ^/echo(/|$) auth=api-key upstream=echo",
          "route GET ^/scoped(/|$) auth=api-key scope=orders:write "
          "upstream=echo",
          "route * .* auth=deny")
NODE_RE = re.compile(r"^[0-9a-f]{16}$")
POS_RE = re.compile(r"^\d+-\d+$")


# --- deferred checks -------------------------------------------------------

class Later:
    """Checks whose failure is reported at the end of the test, so that
    one test can show several independent problems."""

    def __init__(self):
        self.problems = []

    def check(self, cond, msg):
        if not cond:
            self.problems.append(msg)
            print("# problem: %s" % msg)
            sys.stdout.flush()
        return cond

    def eq(self, actual, expected, what):
        return self.check(actual == expected, "%s: expected %r, got %r" %
                          (what, expected, actual))

    def done(self):
        if self.problems:
            raise AssertionError("%d problem(s): %s" % (
                len(self.problems), " | ".join(self.problems)))


# --- nodes -----------------------------------------------------------------

def template(url, name=NAME, metrics=False, extra="", workers=1,
             **settings):
    """A node's config: one worker, the admin API, the cluster."""
    if url is not None:
        settings["cluster_redis"] = url + ((" " + extra) if extra else "")
        settings["cluster_name"] = name
    if metrics:
        settings["metrics_listen"] = "127.0.0.1:{port3}"
    return kg.config(*ROUTES, workers=workers, admin="{port2}", **settings)


def launch(t, nports, env=None):
    """kg.start with env set for the daemon only (as test_writes)."""
    saved = {}
    for k, v in (env or {}).items():
        saved[k] = os.environ.get(k)
        os.environ[k] = v
    try:
        d = kg.start(t, nports=nports)
    finally:
        for k, v in saved.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v
    d.cl_template = t
    d.cl_nports = nports
    return d


def node(srv, name=NAME, env=None, state=None, url=None, metrics=False,
         extra="", join=True, **settings):
    """A node of srv's cluster (joined, unless join is false)."""
    t = template(url or (srv.url() if srv is not None else None), name,
                 metrics=metrics, extra=extra, **settings)
    if state is not None:
        t = t.replace("state_dir {dir}/state", "state_dir " + state)
    d = launch(t, 3 if metrics else 2, env)
    if join:
        wait_state(d, "joined")
    return d


def state_dir(d):
    with open(d.conf_path) as f:
        return re.search(r"^state_dir\s+(\S+)\s*$", f.read(), re.M).group(1)


def reopen(d, env=None, join=True):
    """A new node with d's configuration on d's state_dir (d is dead)."""
    kg.check(not d.master_alive(), "reopen: the old node still runs")
    t = d.cl_template.replace("state_dir {dir}/state",
                              "state_dir " + state_dir(d))
    n = launch(t, d.cl_nports, env)
    if join:
        wait_state(n, "joined")
    return n


def status(d):
    r = kg.admin(d, "GET", "/v1/cluster")
    kg.eq(r.status, 200, "GET /v1/cluster (%r)" % r.body[:200])
    return r.json()


def wait_state(d, state, timeout=5.0):
    last = []

    def ok():
        j = status(d)
        last[:] = [j.get("state")]
        return j if j.get("state") == state else None
    try:
        return kg.wait_for(ok, timeout, "state %r" % state, interval=0.02)
    except AssertionError:
        raise AssertionError("node %s: state %r after %.1f s, expected %r" %
                             (d.dir, last[0] if last else None, timeout,
                              state))


def gw(d, secret, path="/echo/x"):
    """The status of a gateway request with the secret."""
    return kg.get(d.port, path, headers={"X-API-KEY": secret}).status


def wait_gw(nodes, secret, code, what, timeout=1.0, path="/echo/x",
            since=None):
    """Until every node's gateway answers code for the secret (within
    timeout s of since, default now)."""
    t0 = since if since is not None else time.monotonic()
    for d in nodes:
        left = max(0.05, t0 + timeout - time.monotonic())
        got = []

        def ok():
            got[:] = [gw(d, secret, path)]
            return got[0] == code
        try:
            kg.wait_for(ok, left, what, interval=0.005)
        except AssertionError:
            raise AssertionError("%s: the gateway of node %s answers %s, "
                                 "not %d, %.2f s after the change" %
                                 (what, d.dir, got[0] if got else None,
                                  code, time.monotonic() - t0))


def create(d, owner, headers=None, timeout=kg.DEFAULT_TIMEOUT, **fields):
    body = {"owner": owner, "rate_limit": BIG_RATE}
    body.update(fields)
    return kg.admin(d, "POST", "/v1/keys", body, headers=headers,
                    timeout=timeout)


def mk(d, owner, **fields):
    """Create a key on d (201 expected): (key, secret)."""
    r = create(d, owner, **fields)
    kg.eq(r.status, 201, "create on %s (%r)" % (d.dir, r.body[:200]))
    j = r.json()
    return j, j["secret"]


def adm(d, method, path, body=None, status=200, what=""):
    r = kg.admin(d, method, path, body)
    kg.eq(r.status, status, "%s %s %s (%r)" % (what, method, path,
                                               r.body[:200]))
    return r.json() if r.body else None


def clean(rec):
    """A record as every node must show it (last_used_at is the node's)."""
    if rec is None:
        return None
    return {k: v for k, v in rec.items() if k not in ("last_used_at",
                                                      "secret")}


def record(d, kid):
    r = kg.admin(d, "GET", "/v1/keys/" + kid)
    if r.status == 404:
        return None
    kg.eq(r.status, 200, "GET /v1/keys/%s (%r)" % (kid, r.body[:200]))
    return clean(r.json())


def wait_record(nodes, kid, want, what, timeout=1.0):
    """Until every node shows the record want (None: no such key)."""
    t0 = time.monotonic()
    for d in nodes:
        got = []

        def ok():
            got[:] = [record(d, kid)]
            return got[0] == want
        try:
            kg.wait_for(ok, max(0.05, t0 + timeout - time.monotonic()),
                        what, interval=0.01)
        except AssertionError:
            raise AssertionError("%s: node %s shows %r, not %r, after %.1f "
                                 "s" % (what, d.dir, got[0], want, timeout))


def keys(d):
    """Every key listed, following next_cursor: {id: record}."""
    out, cursor = {}, None
    for _ in range(100):
        q = "/v1/keys?limit=1000" + ("&cursor=%s" % cursor if cursor else "")
        r = kg.admin(d, "GET", q)
        kg.eq(r.status, 200, "list status (%r)" % r.body[:200])
        j = r.json()
        out.update((k["id"], clean(k)) for k in j["keys"])
        cursor = j["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("the key list does not end")


def wait_same(nodes, timeout=1.0, what="the nodes' keys"):
    """Until every node lists the same records; those records."""
    seen = []

    def same():
        views = [keys(d) for d in nodes]
        seen[:] = views
        return all(v == views[0] for v in views)
    try:
        kg.wait_for(same, timeout, what, interval=0.02)
    except AssertionError:
        a = seen[0]
        for i, b in enumerate(seen[1:], 1):
            if a != b:
                only_a = sorted(set(a) - set(b))[:3]
                only_b = sorted(set(b) - set(a))[:3]
                diff = {k: {f: (a[k].get(f), b[k].get(f))
                            for f in set(a[k]) | set(b[k])
                            if a[k].get(f) != b[k].get(f)}
                        for k in sorted(a) if k in b and a[k] != b[k]}
                raise AssertionError(
                    "%s differ after %.1f s: node 0 vs node %d: only on 0 "
                    "%s, only on %d %s, different (field: (0, %d)) %s" %
                    (what, timeout, i, only_a, i, only_b, i,
                     dict(list(diff.items())[:3])))
    return seen[0]


def import_keys(d, body):
    """POST /v1/keys/import (NDJSON); the results."""
    r = kg.admin(d, "POST", "/v1/keys/import", body,
                 headers={"Content-Type": "application/x-ndjson"})
    kg.eq(r.status, 200, "import status (%r)" % r.body[:300])
    return [json.loads(x) for x in r.body.decode().splitlines() if x]


def unavailable(r, what):
    """A 503 cluster_unavailable refusal (the usual JSON error shape)."""
    return kg.check_refusal(r, 503, "cluster_unavailable", what)


def redis_records(srv, name=NAME):
    """The namespace's records: {id: parsed record JSON}."""
    flat = srv.call("HGETALL", srv.ns(name, "keys")) or []
    return {flat[i].decode(): json.loads(flat[i + 1])
            for i in range(0, len(flat), 2)}


class Hammer:
    """A thread sending gateway requests to d with each secret in turn
    until stopped; every answer that is not 200 is recorded."""

    def __init__(self, d, secrets):
        self.d = d
        self.secrets = list(secrets)
        self.n = 0
        self.bad = []
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        i = 0
        while not self.stop_ev.is_set() and self.n < 200000:
            s = self.secrets[i % len(self.secrets)]
            i += 1
            try:
                r = kg.get(self.d.port, "/echo/h", headers={"X-API-KEY": s})
                code = r.status
                body = r.body[:120]
            except (OSError, http.client.HTTPException) as e:
                code, body = None, repr(e)
            self.n += 1
            if code != 200:
                self.bad.append((time.monotonic(), s[-4:], code, body))

    def stop(self):
        self.stop_ev.set()
        self.t.join(10)
        kg.check(not self.t.is_alive(), "the hammer thread hangs")
        return self.bad


# === changes seen everywhere =================================================

@R.cleaned
def test_changes_propagate():
    """
    Three nodes: create, PATCH name/scopes/disabled, regenerate without
    and with grace, delete, each made on one node and in effect on the
    others (admin GET: the same record; gateway) within 1 s.
    """
    srv = R.Server()
    a, b, c = node(srv), node(srv), node(srv)
    nodes = [a, b, c]

    k, s1 = mk(a, "acme", name="ci", scopes=["orders:read"])
    kid = k["id"]
    t0 = time.monotonic()
    wait_gw(nodes, s1, 200, "a key created on A", since=t0)
    wait_record(nodes, kid, clean(k), "the record created on A")
    wait_gw(nodes, s1, 403, "the scope route before the scope is added",
            path="/scoped/1", since=t0)

    # PATCH scopes on B: the scoped route opens everywhere.
    p = adm(b, "PATCH", "/v1/keys/" + kid,
            {"scopes": ["orders:read", "orders:write"]}, what="add scope")
    t0 = time.monotonic()
    wait_gw(nodes, s1, 200, "scope added on B", path="/scoped/1", since=t0)
    wait_record(nodes, kid, clean(p), "the record after the scope PATCH")

    # PATCH name on C.
    p = adm(c, "PATCH", "/v1/keys/" + kid, {"name": "ci-renamed"},
            what="rename")
    kg.eq(p["name"], "ci-renamed", "name in the PATCH answer")
    wait_record(nodes, kid, clean(p), "the record after the rename")

    # Disable on A, enable on B.
    p = adm(a, "PATCH", "/v1/keys/" + kid, {"disabled": True}, what="disable")
    t0 = time.monotonic()
    wait_gw(nodes, s1, 401, "disabled on A", since=t0)
    wait_record(nodes, kid, clean(p), "the record after the disable")
    p = adm(b, "PATCH", "/v1/keys/" + kid, {"disabled": False},
            what="enable")
    wait_gw(nodes, s1, 200, "enabled on B")

    # Regenerate without grace on B: the old secret stops everywhere.
    g = adm(b, "POST", "/v1/keys/%s/regenerate" % kid, what="regenerate")
    s2 = g["secret"]
    t0 = time.monotonic()
    wait_gw(nodes, s1, 401, "the old secret after a regenerate on B",
            since=t0)
    wait_gw(nodes, s2, 200, "the new secret after a regenerate on B",
            since=t0)
    wait_record(nodes, kid, clean(g), "the record after regenerate")

    # Regenerate with grace on C: both secrets work everywhere.
    g = adm(c, "POST", "/v1/keys/%s/regenerate" % kid, {"grace_seconds": 60},
            what="regenerate with grace")
    s3 = g["secret"]
    kg.check(g["grace_until"] is not None, "no grace_until: %r" % g)
    t0 = time.monotonic()
    wait_gw(nodes, s3, 200, "the new secret (grace) on every node", since=t0)
    wait_record(nodes, kid, clean(g), "the record after a regenerate with "
                "grace")
    for d in nodes:
        kg.eq(gw(d, s2), 200, "the previous secret in its grace period")
        kg.eq(gw(d, s1), 401, "the secret before the previous one")

    # An import on C (bring-your-own secrets): in effect everywhere; the
    # same import again on A changes nothing.
    byo = ["live_" + "%032d" % (7 * 10 ** 20 + i) for i in range(2)]
    body = "".join(json.dumps({"owner": "imported-%d" % i, "secret": x,
                               "rate_limit": BIG_RATE}) + "\n"
                   for i, x in enumerate(byo)).encode()
    res = import_keys(c, body)
    kg.eq([x["status"] for x in res], ["created", "created"],
          "import on C (%r)" % res)
    t0 = time.monotonic()
    for x in byo:
        wait_gw(nodes, x, 200, "a key imported on C", since=t0)
    res2 = import_keys(a, body)
    kg.eq([(x["status"], x["id"]) for x in res2],
          [("unchanged", x["id"]) for x in res], "the same import on A")
    for x in res:
        adm(b, "DELETE", "/v1/keys/" + x["id"], status=204)
    t0 = time.monotonic()
    for x in byo:
        wait_gw(nodes, x, 401, "an imported key deleted on B", since=t0)

    # Another key created on C, deleted on A; the first deleted on B.
    k2, t1 = mk(c, "other")
    wait_gw(nodes, t1, 200, "a key created on C")
    adm(a, "DELETE", "/v1/keys/" + k2["id"], status=204, what="delete")
    t0 = time.monotonic()
    wait_gw(nodes, t1, 401, "a key deleted on A", since=t0)
    adm(b, "DELETE", "/v1/keys/" + kid, status=204, what="delete")
    t0 = time.monotonic()
    wait_gw(nodes, s3, 401, "a key deleted on B", since=t0)
    wait_gw(nodes, s2, 401, "a deleted key's secret in grace", since=t0)
    wait_record(nodes, kid, None, "GET of a deleted key")
    for d in nodes:
        kg.eq(keys(d), {}, "keys left")
    kg.eq(srv.hlen(NAME), 0, "records left in Redis")


# === revocation latency ======================================================

def percentile(sorted_values, p):
    i = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 *
                                                     len(sorted_values)
                                                     + 0.5)) - 1))
    return sorted_values[i]


@R.cleaned
def test_revocation_latency():
    """
    100 revocations on A (delete, regenerate without grace, disable in
    turn), each timed from A's answer until B's gateway refuses the old
    secret: all within 1 s, p99 within 100 ms.
    """
    srv = R.Server()
    a, b = node(srv), node(srv)
    made = [mk(a, "rev-%d" % i) for i in range(100)]
    for k, s in made:
        wait_gw([b], s, 200, "key %s on B" % k["id"])
    lat = []
    ops = {"delete": 0, "regenerate": 0, "disable": 0}
    for i, (k, s) in enumerate(made):
        op = ("delete", "regenerate", "disable")[i % 3]
        if op == "delete":
            r = kg.admin(a, "DELETE", "/v1/keys/" + k["id"])
            kg.eq(r.status, 204, "delete")
        elif op == "regenerate":
            r = kg.admin(a, "POST", "/v1/keys/%s/regenerate" % k["id"])
            kg.eq(r.status, 200, "regenerate")
        else:
            r = kg.admin(a, "PATCH", "/v1/keys/" + k["id"],
                         {"disabled": True})
            kg.eq(r.status, 200, "disable")
        t0 = time.monotonic()
        ops[op] += 1
        while True:
            code = gw(b, s)
            now = time.monotonic()
            if code != 200:
                kg.eq(code, 401, "B's refusal of a revoked secret")
                lat.append(now - t0)
                break
            kg.check(now - t0 < 2.0, "B still accepts a secret %s'd on A "
                     "%.2f s ago" % (op, now - t0))
    lat.sort()
    p50, p99, worst = (percentile(lat, 50), percentile(lat, 99), lat[-1])
    print("# revocation A -> B over %d trials (%s): p50 %.1f ms, p99 %.1f "
          "ms, max %.1f ms" % (len(lat), ", ".join(
              "%d %s" % (n, o) for o, n in ops.items()), p50 * 1000,
              p99 * 1000, worst * 1000))
    kg.check(worst <= 1.0, "a revocation took %.3f s to reach B" % worst)
    kg.check(p99 <= 0.1, "p99 of the revocation latency %.1f ms > 100 ms" %
             (p99 * 1000))


# === a node killed, then restarted ===========================================

@R.cleaned
def test_killed_node_catches_up():
    """
    B killed (kill -9) while A creates, renames, deletes and regenerates
    keys; B restarted on its state_dir resumes from its stream position
    and has exactly A's keys at once.
    """
    srv = R.Server()
    a, b = node(srv), node(srv)
    made = [mk(a, "k%d" % i) for i in range(4)]
    for k, s in made:
        wait_gw([b], s, 200, "key on B before the kill")
    idb = status(b)["node"]
    b.kill()
    (k0, s0), (k1, s1), (k2, s2), (k3, s3) = made
    adm(a, "PATCH", "/v1/keys/" + k0["id"], {"name": "renamed"})
    adm(a, "DELETE", "/v1/keys/" + k1["id"], status=204)
    s2n = adm(a, "POST", "/v1/keys/%s/regenerate" % k2["id"])["secret"]
    adm(a, "PATCH", "/v1/keys/" + k3["id"], {"disabled": True})
    k4, s4 = mk(a, "while-b-was-down")
    b2 = reopen(b)
    b2.wait_log(r'cluster "%s": node [0-9a-f]{16} resumed at stream '
                r'position \d+-\d+' % NAME, what="B resumed")
    kg.eq(keys(b2), keys(a), "B's keys after its restart vs A's")
    for s, code, what in ((s0, 200, "renamed key"), (s1, 401, "deleted key"),
                          (s2, 401, "regenerated key's old secret"),
                          (s2n, 200, "regenerated key's new secret"),
                          (s3, 401, "disabled key"),
                          (s4, 200, "key created while B was down")):
        kg.eq(gw(b2, s), code, "B after its restart: %s" % what)
    kg.eq(status(b2)["node"], idb, "B's node id after its restart")
    with open(os.path.join(state_dir(b2), "cluster.state")) as f:
        saved = json.load(f)
    kg.eq((saved.get("node"), saved.get("name")), (idb, NAME),
          "node and name in cluster.state")


@R.cleaned
def test_worker_respawned_writes():
    """
    A node's only worker killed (kill -9): the master starts another,
    whose admin writes still reach the cluster (its channels to the
    master are new): a create and a delete made through it are in effect
    on the other node.
    """
    srv = R.Server()
    a, b = node(srv), node(srv)
    a.allow_worker_deaths = True
    k, s = mk(a, "before")
    old = a.wait_workers(1)
    os.kill(old[0], signal.SIGKILL)
    a.wait_workers(1, exclude=old, timeout=10)
    kg.wait_for(lambda: kg.admin(a, "GET", "/v1/cluster").status == 200, 5.0,
                "the new worker to answer")
    k2, s2 = mk(a, "after-respawn")
    wait_gw([b], s2, 200, "a key made through the new worker, on B")
    adm(a, "DELETE", "/v1/keys/" + k["id"], status=204)
    wait_gw([b], s, 401, "a key deleted through the new worker, on B")
    kg.eq(status(a)["state"], "joined", "A's state after the respawn")


# === Redis down ==============================================================

@R.cleaned
def test_redis_lost():
    """
    Redis killed: keys keep working on both nodes, reads work, writes are
    503 cluster_unavailable.  Redis back on its port, empty: one node seeds
    the namespace again, writes work, and every key acknowledged before
    is on both nodes and in Redis.
    """
    later = Later()
    srv = R.Server()
    a, b = node(srv), node(srv)
    acked = {}
    for i in range(6):
        k, s = mk((a, b)[i % 2], "before-%d" % i)
        acked[k["id"]] = s
    kid = sorted(acked)[0]
    adm(b, "DELETE", "/v1/keys/" + kid, status=204)
    del acked[kid]
    kid = sorted(acked)[0]
    acked[kid] = adm(a, "POST", "/v1/keys/%s/regenerate" % kid)["secret"]
    before = wait_same([a, b])
    kg.eq(set(before), set(acked), "keys before Redis goes")

    srv.stop()
    down = time.monotonic()
    for d in (a, b):
        def refused():
            r = create(d, "x")
            if r.status == 201:		# just before the node noticed
                acked[r.json()["id"]] = r.json()["secret"]
            return r.status == 503
        kg.wait_for(refused, 3.0, "writes refused once Redis is gone")
        unavailable(create(d, "during"), "create while Redis is down")
        some = sorted(acked)[1]
        unavailable(kg.admin(d, "PATCH", "/v1/keys/" + some, {"name": "n"}),
                    "PATCH while Redis is down")
        unavailable(kg.admin(d, "DELETE", "/v1/keys/" + some),
                    "DELETE while Redis is down")
        unavailable(kg.admin(d, "POST", "/v1/keys/%s/regenerate" % some),
                    "regenerate while Redis is down")
        kg.eq(keys(d), before, "reads while Redis is down")
        for kid, s in acked.items():
            kg.eq(gw(d, s), 200, "a key while Redis is down")
        st = status(d)
        kg.eq(st["redis_up"], False, "redis_up while Redis is down")
        later.eq(st["state"], "disconnected", "/v1/cluster state while "
                 "Redis is down")
    time.sleep(max(0.0, down + 1.0 - time.monotonic()))
    srv.start()
    print("# Redis was down for %.2f s" % (time.monotonic() - down))
    t0 = time.monotonic()
    for d in (a, b):
        got = []

        def works():
            r = create(d, "after")
            got[:] = [r]
            return r.status == 201
        kg.wait_for(works, 8.0, "writes to work again on %s" % d.dir,
                    interval=0.1)
        r = got[0]
        acked[r.json()["id"]] = r.json()["secret"]
    print("# writes again %.2f s after Redis came back" %
          (time.monotonic() - t0))
    logs = a.errlog_text() + b.errlog_text()
    later.check(re.search(r'cluster "%s": the namespace is gone from Redis '
                          r'.*; seeding it again' % NAME, logs),
                "no node logged 'the namespace is gone from Redis ...; "
                "seeding it again' (%r)" % re.findall(r".*seeding it.*",
                                                       logs))
    later.check(len(re.findall(r'cluster "%s": node [0-9a-f]{16} seeded '
                               r'the namespace' % NAME, logs)) == 2,
                "the namespace was not seeded again (once at the start, "
                "once after Redis came back)")
    try:
        after = wait_same([a, b], timeout=2.0, what="the keys of A and B "
                          "after Redis came back empty")
    except AssertionError as e:
        later.check(False, str(e))
        after = keys(a)
    in_redis = set(redis_records(srv))
    for d, what in ((a, "A"), (b, "B")):
        here = set(keys(d))
        later.eq(sorted(set(acked) - here), [], "acknowledged keys missing "
                 "on %s after Redis came back empty (of %d)" %
                 (what, len(acked)))
        later.eq(sorted(here - in_redis), [], "keys on %s missing in Redis "
                 "after it came back empty" % what)
        for kid, s in sorted(acked.items()):
            later.eq(gw(d, s), 200, "%s's gateway: acknowledged key %s "
                     "after Redis came back" % (what, kid))
    later.eq(sorted(set(acked) - in_redis), [], "acknowledged keys missing "
             "in Redis after it came back empty")
    later.done()


@R.cleaned
def test_redis_paused():
    """
    Redis stopped with SIGSTOP: writes on either node are 503 within the
    3 s command timeout (plus slack), the gateway keeps working; Redis
    resumed: writes work again and every acknowledged key is everywhere.
    """
    srv = R.Server()
    a, b = node(srv), node(srv)
    acked = {}
    for i in range(3):
        k, s = mk((a, b)[i % 2], "before-%d" % i)
        acked[k["id"]] = s
    wait_same([a, b])
    srv.pause()
    try:
        t0 = time.monotonic()
        r = create(a, "during-pause", timeout=15)
        took = time.monotonic() - t0
        unavailable(r, "create while Redis is paused")
        kg.check(took < 5.0, "a write with Redis paused took %.1f s to be "
                 "refused" % took)
        print("# first write with Redis paused refused after %.2f s" % took)
        t0 = time.monotonic()
        r = kg.admin(b, "PATCH", "/v1/keys/" + sorted(acked)[0],
                     {"name": "x"}, timeout=15)
        took = time.monotonic() - t0
        unavailable(r, "PATCH on B while Redis is paused")
        kg.check(took < 5.0, "a write on B with Redis paused took %.1f s" %
                 took)
        for d in (a, b):
            for s in acked.values():
                kg.eq(gw(d, s), 200, "a key while Redis is paused")
            r = kg.admin(d, "GET", "/v1/keys?limit=10")
            kg.eq(r.status, 200, "a read while Redis is paused")
    finally:
        srv.resume()
    t0 = time.monotonic()
    for d in (a, b):
        got = []

        def works():
            r = create(d, "after-pause", timeout=15)
            got[:] = [r]
            return r.status == 201
        kg.wait_for(works, 10.0, "writes to work again on %s" % d.dir,
                    interval=0.1)
        acked[got[0].json()["id"]] = got[0].json()["secret"]
    print("# writes again %.2f s after Redis resumed" %
          (time.monotonic() - t0))
    after = wait_same([a, b], timeout=2.0)
    refused = [x for x, rec in after.items() if rec["owner"] == "during-pause"]
    print("# the create refused 503 while Redis was paused %s" %
          ("was made all the same (its message says it may have been)"
           if refused else "was not made"))
    kg.eq(sorted(set(acked) - set(after)), [], "acknowledged keys missing")
    kg.eq(set(redis_records(srv)), set(after), "key ids in Redis")
    for d in (a, b):
        for s in acked.values():
            kg.eq(gw(d, s), 200, "an acknowledged key after the pause")


# === the stream trimmed ======================================================

def trimmed_while_down(change_after_trim):
    """
    B killed; A creates, deletes and changes keys; the stream is trimmed
    to nothing (and, with change_after_trim, A makes one more change, so
    that the stream goes on past B's position); B restarted must
    resynchronise in full and have exactly A's keys.
    """
    srv = R.Server()
    a, b = node(srv), node(srv)
    made = [mk(a, "k%d" % i) for i in range(4)]
    for k, s in made:
        wait_gw([b], s, 200, "key on B")
    b.kill()
    new = [mk(a, "new%d" % i) for i in range(2)]
    for k, s in made[:2]:
        adm(a, "DELETE", "/v1/keys/" + k["id"], status=204)
    adm(a, "PATCH", "/v1/keys/" + made[2][0]["id"], {"name": "changed"})
    kg.check(srv.trim(NAME) > 0, "XTRIM removed nothing")
    if change_after_trim:
        new.append(mk(a, "after-the-trim"))
    b2 = reopen(b)
    refused = [gw(b2, s) for k, s in made[:2]]
    kg.eq(refused, [401, 401], "B after its restart: the secrets of the "
          "keys deleted while it was down and the stream trimmed")
    time.sleep(0.2)
    kg.eq([gw(a, s) for k, s in made[:2]], [401, 401], "A after B's "
          "restart: the secrets of the keys it deleted")
    kg.eq(set(redis_records(srv)) & {k["id"] for k, _ in made[:2]}, set(),
          "deleted keys in Redis after B's restart")
    kg.eq(keys(b2), keys(a), "B's keys vs A's")
    for k, s in new:
        kg.eq(gw(b2, s), 200, "a key created while B was down")
    b2.wait_log(r'cluster "%s": .*resynchronising' % NAME, timeout=1,
                what="B resynchronising")
    b2.wait_log(r'cluster "%s": node [0-9a-f]{16} resynchronised in full'
                % NAME, timeout=1, what="B resynchronised in full")


@R.cleaned
def test_trimmed_while_down():
    """B killed, changes on A, XTRIM MAXLEN 0, B restarted: B
    resynchronises in full and has exactly A's keys."""
    trimmed_while_down(False)


@R.cleaned
def test_trimmed_then_changed_while_down():
    """As test_trimmed_while_down, with one more change on A after the
    trim (the stream then goes on past B's position, as when Redis trims
    it by itself with MAXLEN ~): B must still resynchronise."""
    trimmed_while_down(True)


@R.cleaned
def test_trim_never_revives_a_revoked_key():
    """
    B's master stopped; A deletes three keys and regenerates a fourth
    (no grace); A's master stopped too; the stream trimmed to nothing;
    B's master resumed first, then A's.  Whatever each node concludes
    about the trim, a key revoked on A must stay revoked: the deleted
    keys and the old secret are refused on both nodes and absent from
    Redis, the new secret accepted, and both nodes hold the same keys.
    """
    srv = R.Server()
    a, b = node(srv), node(srv)
    made = [mk(a, "k%d" % i) for i in range(5)]
    for _, s in made:
        wait_gw([b], s, 200, "key on B")
    b.signal(signal.SIGSTOP)
    stopped = [b]
    try:
        for k, _ in made[:3]:
            adm(a, "DELETE", "/v1/keys/" + k["id"], status=204)
        new = adm(a, "POST", "/v1/keys/%s/regenerate" %
                  made[3][0]["id"])["secret"]
        a.signal(signal.SIGSTOP)
        stopped.append(a)
        kg.check(srv.trim(NAME) > 0, "XTRIM removed nothing")
        b.signal(signal.SIGCONT)
        stopped.remove(b)
        time.sleep(1.5)
        a.signal(signal.SIGCONT)
        stopped.remove(a)
    finally:
        for d in stopped:
            d.signal(signal.SIGCONT)
    time.sleep(1.5)
    later = Later()
    ids = srv.key_ids(NAME)
    for k, s in made[:3]:
        for d, what in ((a, "A"), (b, "B")):
            later.eq(gw(d, s), 401, "%s's gateway: key %s deleted on A "
                     "before the trim" % (what, k["id"]))
        later.check(k["id"] not in ids, "key %s, deleted on A before the "
                    "trim, is back in Redis" % k["id"])
    for d, what in ((a, "A"), (b, "B")):
        later.eq(gw(d, made[3][1]), 401, "%s's gateway: the secret "
                 "replaced on A before the trim" % what)
        later.eq(gw(d, new), 200, "%s's gateway: the new secret" % what)
        later.eq(gw(d, made[4][1]), 200, "%s's gateway: a key never "
                 "changed" % what)
    try:
        wait_same([a, b], timeout=1.0)
    except AssertionError as e:
        later.check(False, str(e))
    revived = re.findall(r".*(?:committing it again|committed again).*",
                         a.errlog_text() + b.errlog_text())
    if revived:
        print("# after the trim: %s" % " / ".join(x.split(" master: ")[-1]
                                                  for x in revived[:4]))
    later.done()


@R.cleaned
def test_resync_refuses_no_valid_key():
    """
    A thread hammers B's gateway with secrets valid throughout.  Three
    times B's master is stopped (SIGSTOP) while A changes keys (one of
    the hammered keys renamed, another regenerated with grace, others
    deleted), then the stream is trimmed and B's master resumed: (1) the
    stream trimmed to nothing; (2) trimmed, then one more change on A;
    (3) trimmed and the namespace's epoch changed (as if recreated).
    Each time B must resynchronise in full ("resynchronised in full")
    and end with A's keys (the deleted ones refused, the new ones
    accepted); never a refusal of a hammered secret.
    """
    later = Later()
    srv = R.Server()
    a, b = node(srv), node(srv)
    (kv, sv), (kgr, sg) = mk(a, "valid"), mk(a, "grace")
    # Per phase: a key whose delete answers B's pending XREAD (the
    # changes after it stay in the stream only), and keys to delete.
    first = [mk(a, "first-%d" % i) for i in range(3)]
    doomed = [[mk(a, "doomed-%d-%d" % (i, j)) for j in range(3)]
              for i in range(3)]
    steady = [mk(a, "steady-%d" % i) for i in range(5)]
    for _, s in first + sum(doomed, []) + steady + [(kv, sv), (kgr, sg)]:
        wait_gw([b], s, 200, "key on B")
    ham = Hammer(b, [sv, sg] + [s for _, s in steady])
    try:
        time.sleep(0.2)
        for i, what in enumerate(("the stream trimmed",
                                  "the stream trimmed, then a change",
                                  "the namespace's epoch changed")):
            mark = len(b.errlog_text())
            b.signal(signal.SIGSTOP)
            try:
                adm(a, "DELETE", "/v1/keys/" + first[i][0]["id"], status=204)
                adm(a, "PATCH", "/v1/keys/" + kv["id"],
                    {"name": "phase-%d" % i})
                if i == 0:
                    sg2 = adm(a, "POST", "/v1/keys/%s/regenerate" %
                              kgr["id"], {"grace_seconds": 600})["secret"]
                for k, _ in doomed[i]:
                    adm(a, "DELETE", "/v1/keys/" + k["id"], status=204)
                kg.check(srv.trim(NAME) > 0, "XTRIM removed nothing")
                made = []
                if i == 1:
                    made.append(mk(a, "after-the-trim"))
                if i == 2:
                    srv.call("SET", srv.ns(NAME, "epoch"),
                             "0123456789abcdef" * 2)
                time.sleep(0.3)
            finally:
                b.signal(signal.SIGCONT)
            t0 = time.monotonic()
            try:
                wait_same([a, b], timeout=3.0, what="A's and B's keys")
                print("# %s: B caught up %.2f s after its master resumed" %
                      (what, time.monotonic() - t0))
            except AssertionError as e:
                later.check(False, "%s while B's master was stopped: %s" %
                            (what, e))
            # The reader may catch up before the heartbeat sees the
            # change that calls for a resync: its line can come later.
            try:
                kg.wait_for(lambda: "resynchronised in full" in
                            b.errlog_text()[mark:], 3.0, "B's resync",
                            interval=0.02)
            except AssertionError:
                later.check(False, "%s while B's master was stopped: B "
                            "did not log 'resynchronised in full'" % what)
            ids = srv.key_ids(NAME)
            for k, s in doomed[i] + [first[i]]:
                later.eq(gw(b, s), 401, "%s: B's gateway, a key deleted "
                         "while B's master was stopped" % what)
                later.eq(gw(a, s), 401, "%s: A's gateway, a key deleted on "
                         "A" % what)
                later.check(k["id"] not in ids, "%s: a key deleted on A is "
                            "back in Redis" % what)
            for k, s in made:
                later.eq(gw(b, s), 200, "%s: B's gateway, a key created "
                         "while B's master was stopped" % what)
            later.eq(record(b, kv["id"]), record(a, kv["id"]),
                     "%s: the renamed key on B" % what)
            if i == 0:
                later.eq(gw(b, sg2), 200, "%s: B's gateway, the new secret "
                         "of a key regenerated while B's master was "
                         "stopped" % what)
        time.sleep(0.2)
    finally:
        bad = ham.stop()
    print("# %d gateway requests on B during the resynchronisations" % ham.n)
    kg.check(ham.n > 100, "only %d requests hammered B" % ham.n)
    kg.eq(bad[:5], [], "refusals of valid secrets on B (%d of %d)" %
          (len(bad), ham.n))
    later.done()


# === a burst of creates ======================================================

@R.cleaned
def test_burst_of_creates():
    """
    1,000 creates from 12 clients, 4 on each of three nodes (two workers
    each): every key acknowledged is listed on every node and is in
    Redis.
    """
    srv = R.Server()
    nodes = [node(srv, workers=2) for _ in range(3)]
    total, clients = 1000, 12
    acked, errors = [], []
    lock = threading.Lock()
    go = threading.Barrier(clients + 1)

    def client(n):
        d = nodes[n % 3]
        count = total // clients + (1 if n < total % clients else 0)
        try:
            go.wait(10)
        except threading.BrokenBarrierError:
            return
        for i in range(count):
            try:
                r = create(d, "burst-%d-%d" % (n, i), timeout=15)
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    errors.append(repr(e))
                continue
            with lock:
                if r.status == 201:
                    acked.append(r.json()["id"])
                else:
                    errors.append("%d %r" % (r.status, r.body[:150]))
    ts = [threading.Thread(target=client, args=(n,), daemon=True)
          for n in range(clients)]
    for t in ts:
        t.start()
    go.wait(10)
    t0 = time.monotonic()
    for t in ts:
        t.join(120)
    took = time.monotonic() - t0
    kg.check(not any(t.is_alive() for t in ts), "burst clients hang")
    print("# burst: %d creates over 3 nodes in %.2f s: %.0f creates/s "
          "(%d errors)" % (len(acked), took, len(acked) / took,
                           len(errors)))
    kg.eq(errors[:3], [], "errors in the burst (%d)" % len(errors))
    kg.eq(len(acked), total, "creates acknowledged")
    listed = wait_same(nodes, timeout=3.0, what="the nodes' keys after the "
                       "burst")
    missing = sorted(set(acked) - set(listed))
    kg.eq(missing[:5], [], "acknowledged keys missing (%d)" % len(missing))
    kg.eq(srv.hlen(NAME), len(listed), "HLEN of the keys hash")
    kg.eq(srv.key_ids(NAME), set(listed), "key ids in Redis")


# === concurrent writes ======================================================

def at_once(calls):
    """Send each (node, method, path, body) at the same moment: every
    connection is opened first, then the requests are written together.
    [(Response or exception, sent, answered)] in order."""
    conns, out = [], [None] * len(calls)
    for d, method, path, body in calls:
        conns.append(kg.Conn(d.admin_port, timeout=15))
    go = threading.Barrier(len(calls))

    def one(i):
        d, method, path, body = calls[i]
        data = json.dumps(body).encode()
        raw = kg.raw_request(method, path, host="127.0.0.1", headers=[
            ("Authorization", "Bearer " + kg.ADMIN_TOKEN),
            ("Content-Type", "application/json"),
            ("Connection", "close")], body=data)
        try:
            go.wait(5)
            sent = time.monotonic()
            conns[i].send(raw)
            r = conns[i].read_response()
            out[i] = (r, sent, time.monotonic())
        except (OSError, kg.NoResponse, kg.ProtocolError,
                threading.BrokenBarrierError) as e:
            out[i] = (e, None, None)
        finally:
            conns[i].close()
    ts = [threading.Thread(target=one, args=(i,), daemon=True)
          for i in range(len(calls))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(20)
    kg.check(not any(t.is_alive() for t in ts), "a request hangs")
    return out


@R.cleaned
def test_concurrent_writes():
    """
    30 rounds of two PATCHes of one key sent at the same moment, the name
    on A and the scopes on B: each 200 (or 409 conflict); every node and
    Redis end with the same record, holding each change answered 200.
    Then 10 rounds of two creates with the same secret on A and B at
    once: one 201, the other 409 key_exists, one key with that secret.
    """
    srv = R.Server()
    a, b = node(srv), node(srv)
    k, s = mk(a, "contended")
    kid = k["id"]
    wait_gw([b], s, 200, "key on B")	# one admitted request on B
    codes, overlapped = {}, 0
    for rnd in range(30):
        name, scope = "name-%d" % rnd, "scope:%d" % rnd
        out = at_once([(a, "PATCH", "/v1/keys/" + kid, {"name": name}),
                       (b, "PATCH", "/v1/keys/" + kid, {"scopes": [scope]})])
        for (r, _, _), tag in zip(out, "AB"):
            kg.check(isinstance(r, kg.Response), "round %d: PATCH on %s: "
                     "%r" % (rnd, tag, r))
            kg.check(r.status in (200, 409), "round %d: PATCH on %s: %d %r"
                     % (rnd, tag, r.status, r.body[:200]))
            if r.status == 409:
                kg.check_refusal(r, 409, "conflict", "a PATCH that lost")
            codes[r.status] = codes.get(r.status, 0) + 1
        (ra, sa, ea), (rb, sb, eb) = out
        if sa < eb and sb < ea:
            overlapped += 1
        recs = []

        def converged():
            recs[:] = [record(a, kid), record(b, kid)]
            return recs[0] == recs[1]
        try:
            kg.wait_for(converged, 1.0, "the same record on A and B")
        except AssertionError:
            raise AssertionError("round %d: the record differs: A %r, B %r"
                                 % (rnd, recs[0], recs[1]))
        rec = recs[0]
        if ra.status == 200:
            kg.eq(rec["name"], name, "round %d: the name PATCHed on A "
                  "(answered 200; B's %d)" % (rnd, rb.status))
        if rb.status == 200:
            kg.eq(rec["scopes"], [scope], "round %d: the scopes PATCHed "
                  "on B (answered 200; A's %d)" % (rnd, ra.status))
        red = redis_records(srv)[kid]
        kg.eq((red.get("name"), red.get("scopes")),
              (rec["name"] or "", rec["scopes"]), "round %d: the record "
              "in Redis" % rnd)
    print("# concurrent PATCH answers: %s; %d of 30 rounds overlapped" %
          (", ".join("%d x %d" % (n, c) for c, n in sorted(codes.items())),
           overlapped))
    kg.check(overlapped >= 10, "only %d of 30 rounds of PATCHes were in "
             "flight at the same time" % overlapped)

    for rnd in range(10):
        secret = "byo_%032d" % (31337 * 10 ** 12 + rnd)
        body = {"owner": "same-secret-%d" % rnd, "secret": secret}
        out = at_once([(a, "POST", "/v1/keys", body),
                       (b, "POST", "/v1/keys", body)])
        got = sorted(r.status if isinstance(r, kg.Response) else repr(r)
                     for r, _, _ in out)
        kg.eq(got, [201, 409], "round %d: two creates with one secret" % rnd)
        for r, _, _ in out:
            if r.status == 409:
                kg.check_refusal(r, 409, "key_exists", "the second create "
                                 "with a secret")
        winner = [r for r, _, _ in out if r.status == 201][0].json()["id"]
        wait_gw([a, b], secret, 200, "the secret created twice")
        for d in (a, b):
            mine = [x for x, rec in keys(d).items()
                    if rec["owner"] == body["owner"]]
            kg.eq(mine, [winner], "round %d: keys with the secret" % rnd)


# === killed between the commit and the answer ================================

@R.cleaned
def test_killed_after_commit():
    """
    A create with an Idempotency-Key on A, whose master stops right after
    committing it to Redis (KEYGATE_TEST_STALL_CLUSTER), then A killed:
    the key is on B, and the create retried on B with the same key answers
    201 with the same id (its secret works), as does a second retry, A
    restarted on its state_dir, and a node that joins afterwards.
    """
    srv = R.Server()
    stall = os.path.join(kg.tempdir(), "stall")
    a = node(srv, env={"KEYGATE_TEST_STALL_CLUSTER": stall})
    b = node(srv)
    a.allow_worker_deaths = True
    k0, s0 = mk(a, "before")
    open(stall, "w").close()
    idem = "c1a2b3d4-0000-4000-8000-000000000001"
    body = {"owner": "stalled", "scopes": ["read"], "rate_limit": BIG_RATE}
    t, answers = kg.in_thread(lambda: kg.admin(
        a, "POST", "/v1/keys", body, headers={"Idempotency-Key": idem},
        timeout=15))
    try:
        a.wait_log(r"test: stalled after a cluster commit", timeout=5)
    except AssertionError:
        kg.skip("this keygated is not a debug build (--enable-debug): no "
                "KEYGATE_TEST_STALL_CLUSTER")
    time.sleep(0.2)
    kg.check(not answers, "the stalled create was answered: %r" %
             (answers[:1],))
    # Every process of A stopped first, so that no worker outlives the
    # master by the moment it takes to see the channel close and answer
    # (the kill of a whole node, not the master's alone).
    for pid in kg.pids_of_dir(a.dir):
        try:
            os.kill(pid, signal.SIGSTOP)
        except OSError:
            pass
    a.kill()
    t.join(20)
    kg.check(not t.is_alive(), "the stalled client never ended")
    kg.check(not any(isinstance(x, kg.Response) for x in answers),
             "the stalled create was answered: %r" % (answers[:1],))
    # The key is on B (and in Redis).
    theirs = kg.wait_for(lambda: [x for x, r in keys(b).items()
                                  if r["owner"] == "stalled"], 1.0,
                         "the stalled create on B")
    kg.eq(len(theirs), 1, "keys of the stalled create on B")
    kid = theirs[0]
    kg.check(kid in redis_records(srv), "the stalled create is not in "
             "Redis")
    r = kg.admin(b, "POST", "/v1/keys", body,
                 headers={"Idempotency-Key": idem})
    kg.eq(r.status, 201, "the retry on B (%r)" % r.body[:200])
    kg.eq(r.json()["id"], kid, "the id answered to the retry on B")
    secret = r.json()["secret"]
    kg.eq(gw(b, secret), 200, "the secret answered to the retry")
    r2 = kg.admin(b, "POST", "/v1/keys", body,
                  headers={"Idempotency-Key": idem})
    kg.eq((r2.status, r2.json().get("id"), r2.json().get("secret")),
          (201, kid, secret), "a second retry on B")
    other = dict(body, owner="someone-else")
    kg.check_refusal(kg.admin(b, "POST", "/v1/keys", other,
                              headers={"Idempotency-Key": idem}), 422,
                     "idempotency_key_reused", "the Idempotency-Key with "
                     "another body, on B")
    kg.eq([x for x, r in keys(b).items() if r["owner"] == "stalled"], [kid],
          "keys of the stalled create after the retries")
    # A restarted on its state_dir (it never applied the create itself)
    # catches up from the stream and answers the retry the same.
    a2 = reopen(a)
    r4 = kg.admin(a2, "POST", "/v1/keys", body,
                  headers={"Idempotency-Key": idem})
    kg.eq((r4.status, r4.json().get("id"), r4.json().get("secret")),
          (201, kid, secret), "the retry on A restarted (%r)" % r4.body[:200])
    # A node that joins now (resynchronised in full) answers the same.
    c = node(srv)
    r3 = kg.admin(c, "POST", "/v1/keys", body,
                  headers={"Idempotency-Key": idem})
    kg.eq((r3.status, r3.json().get("id"), r3.json().get("secret")),
          (201, kid, secret), "the retry on a node that joined afterwards "
          "(%r)" % r3.body[:200])
    kg.eq(gw(c, secret), 200, "the secret on the new node")
    kg.eq(gw(c, s0), 200, "the key made before the stall, on the new node")


# === seeding and refusing to join ============================================

def standalone_with_keys(n, owner):
    """A node without cluster_redis, its keys made, then stopped: (its
    state_dir, [(key, secret)])."""
    d = launch(template(None), 2)
    made = [mk(d, "%s-%d" % (owner, i)) for i in range(n)]
    kg.eq(d.stop(), 0, "graceful stop of the stand-alone node")
    return state_dir(d), made


@R.cleaned
def test_seeding_and_refusal():
    """
    A node whose state_dir holds 3 keys, started against an empty
    namespace, seeds it with all 3 (HLEN; a new node gets them).  A node
    with 2 keys of its own does not join: state "refused", the reason in
    its error log and /v1/cluster, writes 503; its keys keep working.
    """
    later = Later()
    srv = R.Server()
    state, made = standalone_with_keys(3, "seed")
    s = node(srv, state=state)
    s.wait_log(r'cluster "%s": node [0-9a-f]{16} seeded the namespace' %
               NAME, timeout=2)
    later.check(re.search(r"seeding it with this node's 3 key\(s\)",
                          s.errlog_text()),
                "the seeding node does not say it seeds its 3 keys: %r" %
                re.findall(r".*seeding it.*", s.errlog_text()))
    later.eq(srv.hlen(NAME), 3, "HLEN after seeding with 3 keys")
    later.eq(srv.key_ids(NAME), {k["id"] for k, _ in made},
             "key ids seeded")
    t = node(srv)
    for k, sec in made:
        later.eq(gw(t, sec), 200, "a seeded key on another node (%s)" %
                 k["id"])
        later.eq(gw(s, sec), 200, "a seeded key on the seeding node")
    later.check(keys(t) == keys(s), "the seeding node's keys differ from "
                "the other node's: %s vs %s" % (sorted(keys(s)),
                                                sorted(keys(t))))

    # A node with other keys of its own refuses to join.
    ustate, umade = standalone_with_keys(2, "mine")
    u = node(srv, state=ustate, join=False)
    st = wait_state(u, "refused", timeout=5)
    kg.check("not the cluster's" in st.get("refused", ""),
             "/v1/cluster's reason: %r" % st.get("refused"))
    u.wait_log(r'cluster "%s": this node\'s keys are not the cluster\'s '
               r'\(' % NAME, timeout=1)
    unavailable(create(u, "refused-node"), "a create on a refused node")
    unavailable(kg.admin(u, "DELETE", "/v1/keys/" + umade[0][0]["id"]),
                "a delete on a refused node")
    for k, sec in umade:
        kg.eq(gw(u, sec), 200, "the refused node's own key")
    kg.eq(set(keys(u)), {k["id"] for k, _ in umade}, "the refused node's "
          "keys")
    for k, _ in umade:
        kg.check(k["id"] not in srv.key_ids(NAME), "a refused node's key "
                 "reached Redis")
    # The cluster goes on.
    k, sec = mk(t, "after-refusal")
    wait_gw([s, t], sec, 200, "a key made after the refusal")
    kg.eq(gw(u, sec), 401, "a cluster key on the refused node")
    later.done()


# === /v1/cluster and /metrics ================================================

def metrics(d):
    r = kg.get(d.ports[2], "/metrics")
    kg.eq(r.status, 200, "GET /metrics")
    out = {}
    for line in r.body.decode().splitlines():
        if line.startswith("keygate_cluster_"):
            n, v = line.rsplit(" ", 1)
            out[n] = float(v)
    return out


@R.cleaned
def test_status_and_metrics():
    """
    /v1/cluster on two nodes: enabled, name, redis URL, redis_up, state
    joined, node ids, epoch (Redis's), no lag, applied_total counting,
    both nodes listed (self marked), stream_last, checked_ms_ago; the
    keygate_cluster_* metrics; a stopped node's lag seen by the other, a
    killed one gone from the list when its heartbeat expires; Redis
    gone: redis_up 0; without cluster_redis: {"enabled":false} and no
    such metric.
    """
    srv = R.Server()
    a, b = node(srv, metrics=True), node(srv, metrics=True)
    ida, idb = status(a)["node"], status(b)["node"]
    kg.check(NODE_RE.match(ida) and NODE_RE.match(idb) and ida != idb,
             "node ids %r %r" % (ida, idb))

    def both_listed():
        # (A node's first heartbeat, sent before it joined, has position
        # 0-0 and no lag: wait for the next.)
        j = status(a)
        return j if {n.get("node") for n in j["nodes"]
                     if n.get("position") != "0-0"} == {ida, idb} else None
    kg.wait_for(both_listed, 3.0, "both nodes (joined) in A's /v1/cluster")
    k, s = mk(b, "counted")
    wait_gw([a], s, 200, "the key on A")
    j = status(a)
    kg.eq(j["enabled"], True, "enabled")
    kg.eq(j["name"], NAME, "name")
    kg.eq(j["redis"], "redis://127.0.0.1:%d/0" % srv.port, "redis")
    kg.eq(j["redis_up"], True, "redis_up")
    kg.eq(j["state"], "joined", "state")
    kg.eq(j["node"], ida, "node")
    kg.eq(j["epoch"], srv.call("GET", srv.ns(NAME, "epoch")).decode(),
          "epoch (Redis's)")
    kg.check(POS_RE.match(j["position"]), "position %r" % j["position"])
    last = srv.call("XREVRANGE", srv.ns(NAME, "stream"), "+", "-",
                    "COUNT", "1")[0][0].decode()
    kg.eq(j["position"], last, "A's position: the stream's last entry")
    kg.eq(j["lag_seconds"], 0.0, "lag_seconds")
    kg.check(isinstance(j["applied_total"], int) and j["applied_total"] >= 1,
             "applied_total %r" % j.get("applied_total"))
    kg.check(POS_RE.match(j["stream_last"]), "stream_last %r" %
             j.get("stream_last"))
    kg.check(isinstance(j["checked_ms_ago"], int) and
             0 <= j["checked_ms_ago"] <= 2500,
             "checked_ms_ago %r" % j.get("checked_ms_ago"))
    kg.check("refused" not in j, "refused shown: %r" % j.get("refused"))
    byid = {n["node"]: n for n in j["nodes"]}
    kg.eq(sorted(byid), sorted([ida, idb]), "nodes listed")
    kg.eq(byid[ida]["position"], j["position"], "A's own entry: its "
          "position now")
    for nid, d in ((ida, a), (idb, b)):
        n = byid[nid]
        kg.eq(n["self"], nid == ida, "self of node %s" % nid)
        kg.eq(n["pid"], d.master_pid, "pid of node %s" % nid)
        kg.check(isinstance(n["host"], str) and n["host"], "host %r" % n)
        kg.check(isinstance(n["version"], str) and n["version"],
                 "version %r" % n)
        kg.check(POS_RE.match(n["position"]), "position %r" % n)
        kg.check(isinstance(n["seen"], int) and
                 abs(n["seen"] / 1000.0 - time.time()) < 10, "seen %r" % n)
        kg.check(isinstance(n["lag_seconds"], (int, float)) and
                 n["lag_seconds"] >= 0, "lag_seconds %r" % n)
    # applied_total counts a change made elsewhere.
    before = status(a)["applied_total"]
    k2, s2 = mk(b, "counted-2")
    wait_gw([a], s2, 200, "the second key on A")
    kg.eq(status(a)["applied_total"], before + 1, "applied_total after one "
          "change made on B")
    m = metrics(a)
    kg.eq(m.get("keygate_cluster_redis_up"), 1.0, "keygate_cluster_redis_up")
    kg.eq(m.get("keygate_cluster_lag_seconds"), 0.0,
          "keygate_cluster_lag_seconds")
    kg.eq(m.get("keygate_cluster_applied_total"),
          float(status(a)["applied_total"]), "keygate_cluster_applied_total")

    # A node whose master is stopped falls behind (A sees its lag grow);
    # killed, it drops out of the list once its heartbeat expires (5 s).
    b.signal(signal.SIGSTOP)
    stopped = time.monotonic()		# B's last heartbeat was before
    try:
        mk(a, "while-b-is-stopped")
        time.sleep(1.0)
        mk(a, "while-b-is-stopped-2")

        def b_lags():
            n = [x for x in status(a)["nodes"] if x["node"] == idb]
            return n and n[0]["lag_seconds"] >= 0.9
        kg.wait_for(b_lags, 2.5, "A to show B's lag", interval=0.1)
        kg.eq(status(a)["lag_seconds"], 0.0, "A's own lag")
    finally:
        b.signal(signal.SIGCONT)
    b.kill()
    kg.wait_for(lambda: [x["node"] for x in status(a)["nodes"]] == [ida],
                max(1.0, stopped + 8.0 - time.monotonic()),
                "B to drop out of A's node list", interval=0.1)
    gone = time.monotonic() - stopped
    print("# a node stopped, then killed, left the node list %.1f s after "
          "its master stopped" % gone)
    # Its last heartbeat was at most 1 s before it stopped, and lives 5 s.
    kg.check(gone >= 3.8, "a node left the list %.1f s after its last "
             "heartbeat (which lives 5 s)" % gone)
    srv.stop()
    kg.wait_for(lambda: metrics(a).get("keygate_cluster_redis_up") == 0.0,
                2.0, "keygate_cluster_redis_up 0 once Redis is gone")
    kg.eq(status(a)["redis_up"], False, "redis_up once Redis is gone")

    # No cluster.
    n = launch(template(None, metrics=True), 3)
    r = kg.admin(n, "GET", "/v1/cluster")
    kg.eq(r.status, 200, "GET /v1/cluster without a cluster")
    kg.eq(r.json(), {"enabled": False}, "/v1/cluster without a cluster")
    kg.eq(metrics(n), {}, "keygate_cluster_* metrics without a cluster")
    k3, s3 = mk(n, "alone")
    kg.eq(gw(n, s3), 200, "a key without a cluster")


# === passwords ===============================================================

def no_password(d, words, what):
    text = d.errlog_text()
    try:
        with open(d.access_path, "rb") as f:
            text += f.read().decode("utf-8", "replace")
    except OSError:
        pass
    j = json.dumps(status(d))
    for w in words:
        kg.check(w not in text, "%s: the password %r appears in the logs" %
                 (what, w))
        kg.check(w not in j, "%s: the password %r appears in /v1/cluster" %
                 (what, w))


@R.cleaned
def test_passwords():
    """
    Redis with requirepass: password_file= and a URL password work; a
    wrong password leaves writes 503 with a retrying log line; an ACL
    user with password_file= works, a wrong one does not; no password
    ever in a log or /v1/cluster.
    """
    good, bad = "Pw-right-7f3a9c1e", "Pw-wrong-0b8d2e4f"
    upw = "Acl-user-5e6f7a"
    srv = R.Server(password=good)
    pdir = kg.tempdir()
    gfile = kg.write_file(pdir, "good.pw", good + "\n")
    bfile = kg.write_file(pdir, "bad.pw", bad + "\n")
    ufile = kg.write_file(pdir, "user.pw", upw + "\n")
    a = node(srv, extra="password_file=" + gfile)
    b = node(srv, url="redis://:%s@127.0.0.1:%d" % (good, srv.port))
    k, s = mk(a, "pw")
    wait_gw([b], s, 200, "a key made on A, on B")
    kg.eq(status(b)["redis"], "redis://127.0.0.1:%d/0" % srv.port,
          "redis shown for a URL with a password")

    w = node(srv, extra="password_file=" + bfile, join=False)
    w.wait_log(r"cluster: Redis redis://127\.0\.0\.1:%d/0 \(commands "
               r"connection\): .*; retrying in \d+ ms" % srv.port,
               timeout=3, what="the wrong password logged")
    unavailable(create(w, "wrong"), "a create with the wrong password")
    st = status(w)
    kg.eq(st["redis_up"], False, "redis_up with the wrong password")
    kg.check(st["state"] != "joined", "joined with the wrong password")
    kg.eq(gw(w, s), 401, "a cluster key on a node that never joined")

    # An ACL user.
    kg.eq(srv.call("ACL", "SETUSER", "kg", "on", ">" + upw, "~*", "&*",
                   "+@all"), "OK", "ACL SETUSER")
    u = node(srv, url=srv.url(user="kg"), extra="password_file=" + ufile)
    kg.eq(status(u)["redis"], "redis://kg@127.0.0.1:%d/0" % srv.port,
          "redis shown for an ACL user")
    k2, s2 = mk(u, "acl")
    wait_gw([a, b], s2, 200, "a key made by the ACL user's node")
    kg.eq(gw(u, s), 200, "an older key on the ACL user's node")
    v = node(srv, url=srv.url(user="kg"), extra="password_file=" + bfile,
             join=False)
    v.wait_log(r"cluster: Redis redis://kg@127\.0\.0\.1:%d/0 \(commands "
               r"connection\): .*; retrying in \d+ ms" % srv.port,
               timeout=3, what="the wrong ACL password logged")
    unavailable(create(v, "wrong-acl"), "a create with a wrong ACL password")
    for d, what in ((a, "password_file"), (b, "URL password"),
                    (w, "wrong password"), (u, "ACL user"),
                    (v, "wrong ACL password")):
        no_password(d, (good, bad, upw), what)


# === unix socket, database, cluster names ====================================

@R.cleaned
def test_unix_socket_db_and_names():
    """
    A node on Redis's unix socket and one on TCP share one cluster; a node
    on database 3 and one with another cluster_name are clusters of their
    own on the same Redis: their keys stay apart, in their own Redis keys.
    """
    sock = os.path.join(kg.tempdir(), "redis.sock")
    srv = R.Server(args=["--unixsocket", sock, "--unixsocketperm", "700"])
    a = node(srv, url="unix:" + sock)
    b = node(srv)
    kg.eq(status(a)["redis"], "unix:" + sock, "redis shown for a socket")
    k, s = mk(a, "via-unix")
    wait_gw([b], s, 200, "a key made over the socket, on the TCP node")
    k2, s2 = mk(b, "via-tcp")
    wait_gw([a], s2, 200, "a key made over TCP, on the socket node")
    c = node(srv, url=srv.url(db=3))
    kg.eq(status(c)["redis"], "redis://127.0.0.1:%d/3" % srv.port,
          "redis shown with a database")
    o = node(srv, name="other")
    kc, sc = mk(c, "db3")
    ko, so = mk(o, "other-name")
    time.sleep(0.1)
    for d, mine, others in ((a, (s, s2), (sc, so)), (b, (s, s2), (sc, so)),
                            (c, (sc,), (s, s2, so)), (o, (so,), (s, s2, sc))):
        for x in mine:
            kg.eq(gw(d, x), 200, "a key of the node's own cluster")
        for x in others:
            kg.eq(gw(d, x), 401, "a key of another cluster")
    kg.eq(srv.key_ids(NAME), {k["id"], k2["id"]}, "database 0, cluster t")
    kg.eq(srv.key_ids("other"), {ko["id"]}, "database 0, cluster other")
    cl = srv.client()
    try:
        cl.call("SELECT", "3")
        got = {x.decode() for x in cl.call("HKEYS", srv.ns(NAME, "keys"))}
    finally:
        cl.close()
    kg.eq(got, {kc["id"]}, "database 3, cluster t")


# === configuration errors ====================================================

CONFIG_ERRORS = (
    ("cluster_redis rediss://127.0.0.1:6380", r"rediss://.*TLS|TLS.*rediss"),
    ("cluster_redis http://x", r"redis://HOST"),
    ("cluster_redis redis://127.0.0.1:0", r"port"),
    ("cluster_redis redis://127.0.0.1:70000", r"port"),
    ("cluster_redis redis://127.0.0.1:63x9", r"port"),
    ("cluster_redis redis://127.0.0.1:6379/99", r"database"),
    ("cluster_redis redis://127.0.0.1:6379 timeout=3s", r"unknown option"),
    ("cluster_redis redis://:secret-in-url@127.0.0.1:6379 "
     "password_file={dir}/pw", r"password both"),
    ("cluster_redis redis://127.0.0.1:6379 password_file={dir}/missing",
     r"missing"),
    ("cluster_redis redis://", r"no host"),
    ("cluster_redis unix:relative.sock", r"absolute"),
    ("cluster_name a/b", r"cluster_name"),
    ("cluster_name " + "x" * 65, r"cluster_name"),
)


def config_dir():
    """A directory with a good config (and a password file): (dir, text)."""
    dir = kg.tempdir()
    kg.write_file(dir, "pw", "a-password-file-secret\n")
    kg.write_file(dir, "admin.token", kg.ADMIN_TOKEN + "\n")
    return dir, kg.fill(template(None), dir, [kg.free_port(),
                                              kg.free_port()])


def config_refused(later, dir, good, line, message):
    """keygated -t on good + line: exit 1, FILE:LINE, the message, no
    password printed."""
    line = line.replace("{dir}", dir)
    text = good + line + "\n"
    lineno = text.count("\n")
    path = kg.write_file(dir, "bad.conf", text)
    p = kg.keygated("-t", "-c", path)
    out = p.stdout + p.stderr
    if not later.eq(p.returncode, 1, "%r: exit status of -t (output %r)" %
                    (line, out)):
        return
    want = "%s:%d: " % (path, lineno)
    later.check(want in p.stderr, "%r: stderr %r does not name %s" %
                (line, p.stderr, want))
    later.check(re.search(message, p.stderr), "%r: stderr %r does not say "
                "/%s/" % (line, p.stderr, message))
    later.check("configuration is valid" not in out, "%r: a bad file "
                "reported valid" % line)
    for secret in ("secret-in-url", "a-password-file-secret"):
        later.check(secret not in out, "%r: the password is printed: %r" %
                    (line, out))


def test_config_errors():
    """keygated -t refuses each bad cluster_redis / cluster_name with
    exit status 1, FILE:LINE and the reason; a URL's password is never
    printed; good forms pass."""
    later = Later()
    dir, good = config_dir()
    for line, message in CONFIG_ERRORS:
        config_refused(later, dir, good, line, message)
    for line in ("cluster_redis redis://127.0.0.1:6379/2",
                 "cluster_redis redis://127.0.0.1",
                 "cluster_redis redis://kg@127.0.0.1:6380 "
                 "password_file=%s/pw" % dir,
                 "cluster_redis redis://:secret-in-url@127.0.0.1:6379",
                 "cluster_redis unix:/run/redis/redis.sock\n"
                 "cluster_name prod-eu.1"):
        path = kg.write_file(dir, "good.conf", good + line + "\n")
        p = kg.keygated("-t", "-c", path)
        later.eq(p.returncode, 0, "%r: exit status of -t (stderr %r)" %
                 (line, p.stderr))
        later.check("secret-in-url" not in p.stderr + p.stdout,
                    "%r: the password is printed" % line)
    later.done()


SENTINEL_ERRORS = (
    ("cluster_redis sentinel://127.0.0.1:26379", r"primary's name"),
    ("cluster_redis sentinel://127.0.0.1:26379/", r"primary's name"),
    ("cluster_redis sentinel://127.0.0.1:26379/my/master",
     r"primary's name"),
    ("cluster_redis sentinel://127.0.0.1:0/mymaster", r"port"),
    ("cluster_redis sentinel://127.0.0.1:26379,:26380/mymaster",
     r"without a host"),
    ("cluster_redis sentinel://" + ",".join(
        "127.0.0.1:%d" % (26379 + i) for i in range(9)) + "/mymaster",
     r"more than 8"),
    ("cluster_redis redis://127.0.0.1:6379 "
     "sentinel_password_file={dir}/pw", r"sentinel://"),
)


def test_config_sentinel():
    """
    sentinel:// (Redis Sentinel: keygate.conf(5) and README document it
    since commit 7f4ca1b; this test's brief still had it refused): good
    forms pass keygated -t, bad ones exit 1 with FILE:LINE and the reason,
    never printing a password.
    """
    later = Later()
    dir, good = config_dir()
    for line, message in SENTINEL_ERRORS:
        config_refused(later, dir, good, line, message)
    for line in ("cluster_redis sentinel://127.0.0.1:26379/mymaster",
                 "cluster_redis sentinel://10.0.0.1,10.0.0.2:26380,"
                 "10.0.0.3/keygate password_file=%s/pw "
                 "sentinel_password_file=%s/pw" % (dir, dir)):
        path = kg.write_file(dir, "good.conf", good + line + "\n")
        p = kg.keygated("-t", "-c", path)
        later.eq(p.returncode, 0, "%r: exit status of -t (stderr %r)" %
                 (line, p.stderr))
        later.check("a-password-file-secret" not in p.stderr + p.stdout,
                    "%r: the password is printed" % line)
    later.done()


@R.cleaned
def test_start_without_redis():
    """
    A node started while Redis is down serves the keys its state_dir has
    (gateway and admin reads), refuses writes (503 cluster_unavailable,
    state "disconnected"), and once Redis is back (empty: it lost its
    data) seeds it with them and takes writes again.
    """
    srv = R.Server()
    a = node(srv)
    made = [mk(a, "kept-%d" % i) for i in range(3)]
    kg.eq(a.stop(), 0, "A's stop")
    srv.stop()
    b = reopen(a, join=False)
    wait_state(b, "disconnected")
    for k, s in made:
        kg.eq(gw(b, s), 200, "a key of the node's copy, Redis down")
    kg.eq(sorted(keys(b)), sorted(k["id"] for k, _ in made),
          "the node's keys, Redis down")
    unavailable(create(b, "no"), "a create with Redis down at start")
    srv.start()
    wait_state(b, "joined", timeout=15)
    kg.eq(sorted(srv.key_ids(NAME)), sorted(k["id"] for k, _ in made),
          "the namespace seeded from the node's copy")
    k, s = mk(b, "after")
    kg.eq(gw(b, s), 200, "a key made once Redis is back")


# === usage merged across nodes ================================================

@R.cleaned
def test_usage_merged():
    """
    Requests with one key through two nodes (and a refusal on each: a
    path the key's scopes do not allow): after a usage push (every 10 s),
    GET /v1/keys/{id}/usage on either node counts all of them ("scope":
    "cluster"), last_used_at is the later use, and ?history=1h, 24h and
    30d hold them in the current point.  Before the push, a node shows its
    own counts at once (what it counted since its last push is added).
    With Redis gone, the answer is the node's own ("scope": "node",
    cluster_error says why).  Without a cluster the answer has no scope.
    """
    srv = R.Server()
    a, b = node(srv), node(srv)
    k, s = mk(a, "usage", scopes=["read"])
    kid = k["id"]
    wait_gw([b], s, 200, "key on B")
    for d, n in ((a, 3), (b, 5)):	# 9 admitted in all
        for _ in range(n):
            kg.eq(gw(d, s), 200, "a request")
    kg.eq(gw(a, s, path="/scoped/x"), 403, "a refused request on A")
    kg.eq(gw(b, s, path="/scoped/x"), 403, "a refused request on B")
    u = adm(a, "GET", "/v1/keys/%s/usage" % kid)
    kg.eq(u["scope"], "cluster", "scope")
    kg.check(u["requests_allowed"] >= 3, "A counts its own at once: %r" % u)

    def merged(d):
        j = adm(d, "GET", "/v1/keys/%s/usage" % kid)
        return j["requests_allowed"] == 9 and j["requests_refused"] == 2
    for d in (a, b):
        kg.wait_for(lambda: merged(d), 25, "node %s to count the cluster's "
                    "9 admitted and 2 refused requests" % d.dir,
                    interval=0.5)
    ua = adm(a, "GET", "/v1/keys/%s/usage" % kid)
    ub = adm(b, "GET", "/v1/keys/%s/usage" % kid)
    kg.eq(ua["last_used_at"], ub["last_used_at"], "last_used_at on A and B")
    kg.eq(ua["cluster_error"], None, "cluster_error")
    for h in ("1h", "24h", "30d"):
        for d in (a, b):
            j = adm(d, "GET", "/v1/keys/%s/usage?history=%s" % (kid, h))
            kg.eq(j["scope"], "cluster", "history %s scope" % h)
            tot = [sum(p[c] for p in j["points"])
                   for c in ("admitted", "refused")]
            kg.eq(tot, [9, 2], "history %s on %s: admitted, refused" %
                  (h, d.dir))
    srv.stop()
    kg.wait_for(lambda: adm(a, "GET", "/v1/cluster")["redis_up"] is False,
                10, "A to see Redis gone")
    j = adm(a, "GET", "/v1/keys/%s/usage" % kid)
    kg.eq(j["scope"], "node", "scope without Redis")
    kg.check(j["cluster_error"], "no cluster_error without Redis: %r" % j)
    kg.eq(j["requests_allowed"], 3, "A's own admitted requests")
    # Outside a cluster: the answer as it always was.
    plain = kg.start(kg.config(*ROUTES, admin="{port2}"), nports=2)
    pk, _ = kg.create_key(plain)
    j = kg.admin(plain, "GET", "/v1/keys/%s/usage" % pk["id"]).json()
    kg.check("scope" not in j and "cluster_error" not in j,
             "a usage answer outside a cluster has a scope: %r" % j)


TESTS = [
    test_changes_propagate,
    test_revocation_latency,
    test_killed_node_catches_up,
    test_worker_respawned_writes,
    test_redis_lost,
    test_redis_paused,
    test_start_without_redis,
    test_trimmed_while_down,
    test_trimmed_then_changed_while_down,
    test_trim_never_revives_a_revoked_key,
    test_resync_refuses_no_valid_key,
    test_burst_of_creates,
    test_concurrent_writes,
    test_killed_after_commit,
    test_seeding_and_refusal,
    test_status_and_metrics,
    test_usage_merged,
    test_passwords,
    test_unix_socket_db_and_names,
    test_config_errors,
    test_config_sentinel,
]


if __name__ == "__main__":
    if len(sys.argv) > 1:
        TESTS = [t for t in TESTS if t.__name__ in sys.argv[1:]]
    kg.run(TESTS)
