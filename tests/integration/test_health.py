"""
Active health checks of upstream servers ("upstream NAME URL... health=/PATH
[health_interval=DUR] [health_fails=N] [health_passes=N]"), seen from a
client, from the upstream servers, from the error log and from
metrics_listen.

The master (not each worker) sends every server of such an upstream
"GET /PATH HTTP/1.1" (Host: the upstream's host= or the URL's host:port,
User-Agent: keygate-health-check, Connection: close, a new connection each
time) every health_interval, at once at start-up and at each reload.  A
2xx or 3xx within health_interval passes; another status, a refused
connect, a close before the status or a timeout fails.  health_fails
failures in a row take a server out, health_passes passes in a row bring
it back; until its first result a server is in.  The workers share the
results (shared memory), a lone server is taken out too, and an upstream
whose servers are all out is refused 502 upstream_unavailable ("every
server of the upstream failed its health check") with no connect.  Log
lines: "upstream NAME: SERVER: health check failed (REASON); out" and
"upstream NAME: SERVER: health check passed; back in".  Metric:
keygate_upstream_server_healthy{upstream=,server=} 1 or 0, only for the
servers of upstreams with health=.

What is checked: a live server failing its checks gets no request from
any of two workers while the others share the load (log line once, the
metric 0/1, none for an upstream without health=); a server killed is
out (no connect from a worker, even with max_fails=0) and, brought back
on its port, back in; the checks come from the master's own socket, once
per interval per server, whatever the number of workers, each on a new
connection; the shape of the check request; every server out: a fast
502; each failure reason and 2xx/3xx passing; health_fails and
health_passes count results in a row (a scripted server answers check N
with a fixed status, so nothing depends on timing); a timed-out check
(upstream.py's /silent) has its connection closed; the first check at
start-up (a server is in until its first result), the 5 s default
interval; a reload keeps the state of an unchanged check and applies a
changed one; the configuration errors, with FILE:LINE.

Two kinds of test upstreams: upstream.py (its /status/NNN, /silent and
/close-before serve as health paths, /_stats counts what reached it), and
HealthServer below, an HTTP/1.1 server of this file's own whose answer to
the health path is set by the test (a status, a script of statuses, silence)
while every other path is answered 200, and which records every request
head with the time it arrived and the connection it came on: a live
server that fails its checks, and a recorder of what the checks look like.
"""

import collections
import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import kgtest as kg
import upstream as U

# Every path but "/" (kgtest's start probe) goes to the pool, as it is.
ROUTE = "route * ^/. auth=anonymous upstream=pool"

HEALTH_MSG = "every server of the upstream failed its health check"
UA = "keygate-health-check"


# --- HealthServer ------------------------------------------------------------

_servers = []
_servers_lock = threading.Lock()


class Req:
    """One request head a HealthServer received."""

    def __init__(self, conn, k, peer, method, target, version, headers):
        self.t = time.monotonic()	# when its head had arrived
        self.conn = conn		# connection number, from 1
        self.k = k			# request number on the connection, from 1
        self.peer = peer		# the client's (address, port)
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers		# [(name, value)] as received
        self.path = target.split("?", 1)[0]
        self.health = False		# sent to a health path
        self.answer = None		# status sent, "silent" or "close"
        self.closed = None		# "silent": when the peer closed

    def header_all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]


class HealthServer:
    """
    An HTTP/1.1 server on 127.0.0.1 (port: a given one, else one the
    kernel picks).  A request whose path (without the query) is one of
    hpaths is a health request; it is answered as self.health says: a
    status (empty body), "silent" (never answered: the connection stays
    open until the peer closes it) or "close" (closed unanswered); a list
    is a script: health request N (from 1) gets item N, the last item
    once the list is used up.  Any other request gets 200 with
    X-Upstream-Name: name (as upstream.py's), keep-alive unless asked
    otherwise.  Stopped by stop() or stop_servers().
    """

    def __init__(self, name, health=200, hpaths=("/hc",), port=0):
        self.name = name
        self.health = health
        self.hpaths = set(hpaths)
        self.lock = threading.Lock()
        self.reqs = []
        self.nhealth = 0		# health requests ever (the script's N)
        self.nconn = 0
        self.socks = set()
        self.stopped = False
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", port))
        self.ls.listen(128)
        self.ls.settimeout(0.1)		# accept() wakes up to see stop()
        self.port = self.ls.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        with _servers_lock:
            _servers.append(self)
        threading.Thread(target=self._accept_loop, daemon=True).start()

    # -- the server --

    def _accept_loop(self):
        while not self.stopped:
            try:
                s, peer = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                if self.stopped:
                    return
                continue
            s.settimeout(60)
            with self.lock:
                if self.stopped:
                    s.close()
                    return
                self.nconn += 1
                cid = self.nconn
                self.socks.add(s)
            threading.Thread(target=self._serve, args=(s, cid, peer),
                             daemon=True).start()

    def _next_health(self):
        """The answer to the next health request (self.lock held)."""
        self.nhealth += 1
        h = self.health
        if isinstance(h, (list, tuple)):
            return h[min(self.nhealth, len(h)) - 1]
        return h

    def _serve(self, s, cid, peer):
        rd = U.Reader(s)
        k = 0
        try:
            while True:
                h = U.read_request(rd)	# upstream.py's head parser
                if h is None:
                    return
                k += 1
                r = Req(cid, k, peer, h.method, h.target, h.version,
                        [tuple(x) for x in h.headers])
                rd.read_exact(int((r.header_all("content-length") or
                                   ["0"])[0]))
                conn_hdr = ",".join(r.header_all("connection")).lower()
                close = "close" in conn_hdr or r.version == "HTTP/1.0"
                with self.lock:
                    r.health = r.path in self.hpaths
                    r.answer = self._next_health() if r.health else 200
                    self.reqs.append(r)
                if r.answer == "silent":
                    while s.recv(65536):
                        pass
                    with self.lock:
                        r.closed = time.monotonic()
                    return
                if r.answer == "close":
                    return
                body = b"" if r.health else json.dumps(
                    {"upstream": self.name, "target": r.target}).encode()
                out = ["HTTP/1.1 %d Status" % r.answer,
                       "X-Upstream-Name: %s" % self.name,
                       "Content-Type: application/json",
                       "Content-Length: %d" % len(body)]
                if close:
                    out.append("Connection: close")
                s.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1")
                          + body)
                if close:
                    return
        except (OSError, ValueError, EOFError):
            pass
        finally:
            with self.lock:
                self.socks.discard(s)
            try:
                s.close()
            except OSError:
                pass

    # -- the test's side --

    def requests(self, health=None, since=0.0):
        """The requests received (health ones only, or others only), since
        a monotonic time."""
        with self.lock:
            return [r for r in self.reqs if r.t >= since and
                    (health is None or r.health == health)]

    def checks(self, since=0.0):
        """The health requests received since a monotonic time."""
        return self.requests(health=True, since=since)

    def seen(self, target):
        """Requests for target (not health requests) since reset()."""
        with self.lock:
            return len([r for r in self.reqs if not r.health and
                        r.target == target])

    def reset(self):
        with self.lock:
            self.reqs = []

    def stop(self):
        with self.lock:
            self.stopped = True
            socks = list(self.socks)
            self.socks.clear()
        try:
            self.ls.close()
        except OSError:
            pass
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        with _servers_lock:
            if self in _servers:
                _servers.remove(self)


def stop_servers():
    with _servers_lock:
        ss = list(_servers)
    for s in ss:
        s.stop()


def with_servers(fn):
    """Decorate a test: whatever happens, stop every upstream it started
    (HealthServers and upstream.py processes)."""
    @functools.wraps(fn)
    def t():
        try:
            fn()
        finally:
            stop_servers()
            U.stop_all()
    return t


# --- helpers -----------------------------------------------------------------

def addr(up_or_port):
    """The server label (metrics, log lines) of a server on 127.0.0.1."""
    port = up_or_port if isinstance(up_or_port, int) else up_or_port.port
    return "127.0.0.1:%d" % port


def url(up_or_port):
    return "http://" + addr(up_or_port)


def daemon(*lines, workers=2, **settings):
    """A daemon with these upstream and route lines, metrics_listen on its
    second port (d.ports[1])."""
    return kg.start(kg.config(*lines, upstream=False, workers=workers,
                              metrics_listen="127.0.0.1:{port2}",
                              **settings), nports=2)


def pool_line(servers, opts, name="pool"):
    return "upstream %s %s %s" % (name, " ".join(
        s if isinstance(s, str) else url(s) for s in servers), opts)


def call(d, target, timeout=kg.DEFAULT_TIMEOUT):
    """One GET on a new connection."""
    with kg.Conn(d.port, timeout=timeout) as c:
        c.send(kg.raw_request("GET", target))
        return c.read_final()


def served_by(r, what):
    """The name of the upstream server that answered r (a 200)."""
    kg.eq(r.status, 200, "%s: status (body %r)" % (what, r.body[:200]))
    name = r.header("x-upstream-name")
    kg.check(name is not None, "%s: no X-Upstream-Name: %r" % (what, r))
    return name


def sequence(d, n, target):
    """Who answered n GETs for target, each on a new connection."""
    return [served_by(call(d, target), "GET %s #%d" % (target, i))
            for i in range(n)]


def seen(up, target):
    """Requests for target an upstream (upstream.py or HealthServer)
    received since its last reset."""
    if isinstance(up, HealthServer):
        return up.seen(target)
    return len([e for e in up.stats()["log"] if e[2] == target])


def workers_of(d, target, sent):
    """The pids that served the sent requests for target (access log)."""
    entries = kg.wait_for(
        lambda: (lambda es: es if len(es) >= sent else None)(
            [e for e in d.access_lines() if e.get("path") == target]),
        3.0, "%d access log lines for %s" % (sent, target))
    return {e.get("pid") for e in entries}


def spread(d, target, batch=30, most=300):
    """GETs for target on new connections, batch at a time, until the
    access log shows that both workers of d served some (at most most
    GETs): a Counter of who answered."""
    got = collections.Counter()
    sent = 0
    while True:
        got.update(sequence(d, batch, target))
        sent += batch
        pids = workers_of(d, target, sent)
        if len(pids) >= 2:
            return got
        if sent >= most:
            raise AssertionError("%d GETs for %s, all served by worker(s) "
                                 "%s: the test needs both" % (sent, target,
                                                              sorted(pids)))


def count(d, pattern):
    """Lines of d's error log matching pattern."""
    return len(re.findall(pattern, d.errlog_text(), re.M))


def out_re(name, server, reason):
    """The "out" line; reason is a regex."""
    return r"upstream %s: %s: health check failed \(%s\); out" % (
        re.escape(name), re.escape(server), reason)


def back_re(name, server):
    return r"upstream %s: %s: health check passed; back in" % (
        re.escape(name), re.escape(server))


def any_out_re(name, server):
    return out_re(name, server, r"[^)]*")


def refused_re(name, server):
    """A worker's failed connect (a request sent to the server)."""
    return r"upstream %s: %s: connect: " % (re.escape(name),
                                            re.escape(server))


def check_health_refusal(r, what):
    j = kg.check_refusal(r, 502, "upstream_unavailable", what)
    kg.eq(j["message"], HEALTH_MSG, "%s: message" % what)


def fast_502(d, target, what, n=10, limit=0.5):
    """n GETs for target each refused at once with the health message."""
    slowest = 0.0
    for i in range(n):
        t = time.monotonic()
        r = call(d, target)
        slowest = max(slowest, time.monotonic() - t)
        check_health_refusal(r, "%s: GET #%d" % (what, i))
    kg.check(slowest < limit, "%s: the slowest 502 took %.0f ms" %
             (what, slowest * 1000))


# --- metrics -----------------------------------------------------------------

HEALTHY_RE = re.compile(r'^keygate_upstream_server_healthy(\{[^}]*\})? (\S+)$',
                        re.M)
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def healthy(d):
    """{(upstream, server): value} of keygate_upstream_server_healthy."""
    r = kg.get(d.ports[1], "/metrics")
    kg.eq(r.status, 200, "GET /metrics (%r)" % r.body[:200])
    text = r.body.decode()
    out = {}
    for m in HEALTHY_RE.finditer(text):
        labels = dict(LABEL_RE.findall(m.group(1) or ""))
        kg.eq(sorted(labels), ["server", "upstream"],
              "labels of %r" % m.group(0))
        out[(labels["upstream"], labels["server"])] = float(m.group(2))
    if out:
        kg.check(re.search(r"^# TYPE keygate_upstream_server_healthy gauge$",
                           text, re.M),
                 "keygate_upstream_server_healthy is not typed a gauge")
    return out


def wait_healthy(d, want, timeout=3.0, exact=False):
    """Until the healthy series include want ({(upstream, server): 0/1})
    (are exactly want, if exact); returns them."""
    last = [None]

    def ok():
        m = healthy(d)
        last[0] = m
        if exact:
            return m if m == want else None
        return m if all(m.get(k) == v for k, v in want.items()) else None
    try:
        return kg.wait_for(ok, timeout, "keygate_upstream_server_healthy "
                           "%r" % want, interval=0.05)
    except AssertionError:
        raise AssertionError("keygate_upstream_server_healthy: expected %s"
                             "%r, last scrape %r" % ("exactly " if exact
                                                     else "", want, last[0]))


# --- /proc: who holds a socket -----------------------------------------------

def tcp_inode(local_port, remote_port):
    """The inode of the TCP socket local_port -> remote_port (loopback),
    from /proc/net/tcp; None if there is none."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            p = line.split()
            lport = int(p[1].split(":")[1], 16)
            rport = int(p[2].split(":")[1], 16)
            if lport == local_port and rport == remote_port and p[9] != "0":
                return p[9]
    return None


def holders(pids, inode):
    """Those of pids with a file descriptor on socket inode."""
    want = "socket:[%s]" % inode
    out = []
    for pid in pids:
        try:
            fds = os.listdir("/proc/%d/fd" % pid)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == want:
                    out.append(pid)
                    break
            except OSError:
                pass
    return out


# === a server failing its checks =============================================

@with_servers
def test_unhealthy_server_gets_nothing():
    """Three servers, workers 2, health=/hc every 250 ms, max_fails=0 (no
    passive marking): s, alive but answering its health path 500, is out
    ("health check failed (status 500); out" logged once, however many
    checks fail after); GETs spread over both workers all go
    to a and b, which share them; s sees none.  Metrics: healthy 1 for a
    and b, 0 for s, no series for an upstream without health=."""
    a = U.Upstream(name="a")
    b = U.Upstream(name="b")
    s = HealthServer("s", health=500)
    d = daemon(pool_line([a, b, s], "health=/hc health_interval=250ms "
                         "max_fails=0"),
               "upstream other %s" % a.url, ROUTE)
    d.wait_log(out_re("pool", addr(s), r"status 500"), 3.0)
    want = {("pool", addr(a)): 1.0, ("pool", addr(b)): 1.0,
            ("pool", addr(s)): 0.0}
    wait_healthy(d, want, exact=True)
    for u in (a, b, s):
        u.reset()
    got = spread(d, "/t1")
    n = sum(got.values())
    kg.eq(seen(s, "/t1"), 0, "GETs s (out) received")
    kg.eq(set(got), {"a", "b"}, "servers that answered")
    for name in ("a", "b"):
        kg.check(got[name] >= n / 3, "%s answered %d of %d GETs (%r): "
                 "not its share" % (name, got[name], n, dict(got)))
    kg.eq(seen(a, "/t1") + seen(b, "/t1"), n, "GETs a and b received")
    # The checks went on meanwhile: s still out, logged once.
    kg.wait_for(lambda: len(s.checks()) >= 3, 3.0, "3 more checks of s")
    kg.check(all(r.answer == 500 for r in s.checks()), "s answered a check "
             "other than 500")
    kg.eq(count(d, any_out_re("pool", addr(s))), 1, "'out' lines for s")
    kg.eq(count(d, r"health check (failed|passed)"), 1,
          "'health check failed/passed' lines in all")
    wait_healthy(d, want, exact=True)


@with_servers
def test_killed_server_out_and_back():
    """Servers a and b (upstream.py), workers 2, max_fails=0: b stopped
    is taken out by its checks ("health check failed (connect: Connection
    refused); out"), and no worker tries it (no "connect:" line, though
    max_fails=0 would keep it in otherwise); started again on its port
    (upstream.py --port) it is back in within a few intervals ("health
    check passed; back in") and gets its share again; the metric follows
    (1, 0, 1)."""
    a = U.Upstream(name="a")
    b = U.Upstream(name="b")
    d = daemon(pool_line([a, b], "health=/hc health_interval=250ms "
                         "max_fails=0"), ROUTE)
    got = collections.Counter(sequence(d, 10, "/t1"))
    kg.eq(set(got), {"a", "b"}, "servers that answered with both in")
    wait_healthy(d, {("pool", addr(a)): 1.0, ("pool", addr(b)): 1.0},
                 exact=True)
    port_b = b.port
    b.stop()
    d.wait_log(out_re("pool", addr(port_b), r"connect: Connection refused"),
               3.0)
    wait_healthy(d, {("pool", addr(a)): 1.0, ("pool", addr(port_b)): 0.0},
                 exact=True)
    a.reset()
    got = spread(d, "/t2")
    kg.eq(set(got), {"a"}, "servers that answered with b stopped")
    kg.eq(count(d, refused_re("pool", addr(port_b))), 0,
          "connects to b from a worker while it was out")

    b2 = U.Upstream(name="b2", port=port_b)
    kg.eq(b2.port, port_b, "port of the restarted upstream")
    t = time.monotonic()
    d.wait_log(back_re("pool", addr(port_b)), 3.0)
    kg.check(time.monotonic() - t < 1.5, "back in only %.2f s after b came "
             "back (interval 250 ms)" % (time.monotonic() - t))
    wait_healthy(d, {("pool", addr(a)): 1.0, ("pool", addr(port_b)): 1.0},
                 exact=True)
    got = spread(d, "/t3")
    n = sum(got.values())
    kg.check(got["b2"] >= n / 3 and got["a"] >= n / 3,
             "a and b2 do not share %d GETs: %r" % (n, dict(got)))
    kg.eq(count(d, any_out_re("pool", addr(port_b))), 1, "'out' lines")
    kg.eq(count(d, back_re("pool", addr(port_b))), 1, "'back in' lines")
    kg.eq(count(d, r"health check (failed|passed)"), 2,
          "'health check failed/passed' lines in all")
    checks = [e for e in b2.stats()["log"] if e[2] == "/hc"]
    kg.check(checks, "b2 received no check")


# === who checks, how often, how ==============================================

@with_servers
def test_checks_by_master_once_per_interval():
    """workers 2, health_interval=200ms: over 2 s each of two servers gets
    about 10 checks (6 to 14; one checker per worker would make 20), each
    on a connection of its own that carries nothing else.  The check's
    socket belongs to the master: a check held unanswered (a third server,
    silent) is on a socket of the master's, not of a worker's."""
    s1 = HealthServer("s1")
    s2 = HealthServer("s2")
    h = HealthServer("h", health="silent")
    d = daemon(pool_line([s1, s2], "health=/hc health_interval=200ms"),
               pool_line([h], "health=/hc health_interval=2s", name="held"),
               ROUTE)
    kg.eq(len(d.wait_workers(2)), 2, "workers")
    kg.wait_for(lambda: s1.checks() and s2.checks(), 2.0,
                "a first check of s1 and s2")
    t0 = time.monotonic()
    time.sleep(2.0)
    t1 = time.monotonic()
    for s in (s1, s2):
        n = len([r for r in s.checks(t0) if r.t < t1])
        kg.check(6 <= n <= 14, "%s received %d checks in %.2f s at 200 ms "
                 "(10 expected; 20 would be one checker per worker)" %
                 (s.name, n, t1 - t0))
        reqs = s.requests()
        conns = collections.Counter(r.conn for r in reqs)
        for r in s.checks():
            kg.eq((r.k, conns[r.conn]), (1, 1), "%s: (number of the check "
                  "on its connection, requests on that connection)" %
                  s.name)
    # The held check: find its socket while it waits for an answer.
    pending = kg.wait_for(lambda: [r for r in h.checks()
                                   if r.closed is None], 3.0,
                          "a check of h under way")
    r = pending[-1]
    inode = tcp_inode(r.peer[1], h.port)
    if inode is None:
        kg.skip("no /proc/net/tcp entry for 127.0.0.1:%d -> %d" %
                (r.peer[1], h.port))
    workers = d.worker_pids()
    owners = holders([d.master_pid] + workers, inode)
    kg.eq(owners, [d.master_pid], "holders of the check's socket "
          "(master %d, workers %s)" % (d.master_pid, workers))


@with_servers
def test_check_request_shape():
    """What a check sends: GET of the health path with its query as
    written, HTTP/1.1, one Host (the URL's 127.0.0.1:PORT; with host= that
    name and port), User-Agent: keygate-health-check, Connection: close,
    no body; the connection carries that request only and is closed by
    keygated once answered (Connection: close from the server too)."""
    s = HealthServer("s", hpaths=("/hc/plain", "/hc/named"))
    d = daemon(pool_line([s], "health=/hc/plain?x=1&y=two "
                         "health_interval=200ms", name="plain"),
               pool_line([s], "health=/hc/named?z host=internal.example:8080 "
                         "health_interval=200ms", name="named"),
               "route * ^/plain/ auth=anonymous upstream=plain",
               "route * ^/named/ auth=anonymous upstream=named")
    kg.wait_for(lambda: len([r for r in s.checks() if r.path == "/hc/plain"])
                >= 2 and len([r for r in s.checks()
                              if r.path == "/hc/named"]) >= 2, 3.0,
                "two checks of each upstream")
    for path, target, host in (
            ("/hc/plain", "/hc/plain?x=1&y=two", addr(s)),
            ("/hc/named", "/hc/named?z", "internal.example:8080")):
        for r in [r for r in s.checks() if r.path == path]:
            what = "check %s (connection %d)" % (target, r.conn)
            kg.eq((r.method, r.target, r.version),
                  ("GET", target, "HTTP/1.1"), "%s: request line" % what)
            kg.eq(r.header_all("host"), [host], "%s: Host" % what)
            kg.eq(r.header_all("user-agent"), [UA], "%s: User-Agent" % what)
            kg.eq([v.lower() for v in r.header_all("connection")], ["close"],
                  "%s: Connection" % what)
            kg.eq(r.header_all("transfer-encoding"), [],
                  "%s: Transfer-Encoding" % what)
            cl = r.header_all("content-length")
            kg.check(cl in ([], ["0"]), "%s: Content-Length %r" % (what, cl))
            kg.eq(r.k, 1, "%s: its number on the connection" % what)
    conns = collections.Counter(r.conn for r in s.requests())
    kg.check(all(n == 1 for n in conns.values()), "a connection carried "
             "several checks: %r" % conns)
    # Both upstreams are in; the client's requests go through as usual.
    kg.eq(served_by(call(d, "/plain/x"), "GET /plain/x"), "s", "/plain/x")
    kg.eq(served_by(call(d, "/named/x"), "GET /named/x"), "s", "/named/x")
    wait_healthy(d, {("plain", addr(s)): 1.0, ("named", addr(s)): 1.0},
                 exact=True)


# === every server out ========================================================

@with_servers
def test_all_out_fast_502():
    """a and b answer health=/status/500: both out, and every request is
    refused at once (< 0.5 s) 502 upstream_unavailable "every server of
    the upstream failed its health check" by both workers, with no
    connect (neither saw one).  A lone server (c, health=/status/503) is
    taken out too (passive marking never does that) and refused the
    same way."""
    a = U.Upstream(name="a")
    b = U.Upstream(name="b")
    c = U.Upstream(name="c")
    d = daemon(pool_line([a, b], "health=/status/500 health_interval=250ms"),
               pool_line([c], "health=/status/503 health_interval=250ms",
                         name="lone"),
               "route * ^/lone/ auth=anonymous upstream=lone", ROUTE)
    for u in (a, b):
        d.wait_log(out_re("pool", addr(u), r"status 500"), 3.0)
    d.wait_log(out_re("lone", addr(c), r"status 503"), 3.0)
    wait_healthy(d, {("pool", addr(a)): 0.0, ("pool", addr(b)): 0.0,
                     ("lone", addr(c)): 0.0}, exact=True)
    for u in (a, b, c):
        u.reset()
    for target in ("/t1", "/lone/t1"):
        sent = 0
        while True:
            fast_502(d, target, target, n=20)
            sent += 20
            pids = workers_of(d, target, sent)
            if len(pids) >= 2:
                break
            kg.check(sent < 200, "%d GETs for %s, all refused by worker(s) "
                     "%s: the test needs both" % (sent, target, sorted(pids)))
    kg.eq([seen(u, "/t1") for u in (a, b)], [0, 0], "GETs a and b received")
    kg.eq(seen(c, "/lone/t1"), 0, "GETs c received")
    kg.eq(count(d, r"upstream \S+: \S+: connect: "), 0,
          "connects from a worker")


# === health_fails and health_passes ==========================================

# The answer of s to its checks, by number: out after check 8 (the third
# failure in a row; 3, 4 and 6 are three failures but not in a row), back
# in after check 12 (the second pass in a row; 9 and 11 are not).
SCRIPT = [200, 200, 500, 500, 200, 500, 500, 500, 200, 500, 200, 200]
OUT_AT, BACK_AT = 8, 12


@with_servers
def test_fails_and_passes_in_a_row():
    """health_fails=3 health_passes=2, every 250 ms, s beside a (one
    worker: exact round robin).  s answers its checks as SCRIPT says: it
    still gets its share after a failed check, is out only once the third
    failure in a row came back (check 8: the "out" line shows up no
    earlier), gets nothing after it and after one pass, and is back in
    only after the second pass in a row (check 12); one "out" and one
    "back in" line.  The checks are counted at s, so nothing depends on
    when they come."""
    a = U.Upstream(name="a")
    s = HealthServer("s", health=SCRIPT)
    d = daemon(pool_line([a, s], "health=/hc health_interval=250ms "
                         "health_fails=3 health_passes=2"), ROUTE, workers=1)
    out = any_out_re("pool", addr(s))
    back = back_re("pool", addr(s))

    def nchecks():
        return len(s.checks())

    def in_time(before, what):
        kg.check(nchecks() < before, "too slow: check %d of s came before "
                 "%s was done" % (before, what))

    # After the first failure (check 3): still in.
    kg.wait_for(lambda: nchecks() >= 3, 3.0, "check 3 of s")
    kg.eq(count(d, out), 0, "'out' lines after one failure")
    got = collections.Counter(sequence(d, 4, "/t1"))
    kg.check(got["s"] >= 1, "s answered none of 4 GETs after one failed "
             "check: %r" % dict(got))
    in_time(OUT_AT, "checking that s is in after one failure")
    # Two in a row (checks 6, 7): still in.
    kg.wait_for(lambda: nchecks() >= 7, 3.0, "check 7 of s")
    kg.eq(count(d, out), 0, "'out' lines after checks 3 4 6 7 failed")
    # The third in a row: out.
    d.wait_log(out, 3.0)
    n = nchecks()
    kg.check(n >= OUT_AT, "s went out after check %d (failures in a row "
             "needed: 3, at check %d)" % (n, OUT_AT))
    kg.check(re.search(out_re("pool", addr(s), r"status 500"),
                       d.errlog_text()), "the reason is not 'status 500'")
    kg.eq(sequence(d, 4, "/t2"), ["a"] * 4, "who answered 4 GETs after "
          "check %d" % OUT_AT)
    in_time(BACK_AT - 1, "checking that s is out")
    # One pass (check 9): still out.
    kg.wait_for(lambda: nchecks() >= 9, 3.0, "check 9 of s")
    kg.eq(sequence(d, 4, "/t3"), ["a"] * 4, "who answered 4 GETs after "
          "one passed check")
    kg.eq(count(d, back), 0, "'back in' lines after one pass")
    in_time(BACK_AT, "checking that s is out after one pass")
    # Pass (11) after a failure (10): still out.
    kg.wait_for(lambda: nchecks() >= 11, 3.0, "check 11 of s")
    kg.eq(count(d, back), 0, "'back in' lines after checks 9 and 11 passed")
    # The second pass in a row: back.
    d.wait_log(back, 3.0)
    n = nchecks()
    kg.check(n >= BACK_AT, "s came back after check %d (passes in a row "
             "needed: 2, at check %d)" % (n, BACK_AT))
    got = collections.Counter(sequence(d, 4, "/t4"))
    kg.check(got["s"] >= 1, "s answered none of 4 GETs once back in: %r" %
             dict(got))
    kg.eq(count(d, out), 1, "'out' lines")
    kg.eq(count(d, back), 1, "'back in' lines")
    kg.eq([r.answer for r in s.checks()][:BACK_AT], SCRIPT,
          "what s answered to its checks")


# === failure reasons, timeouts ===============================================

REASONS = [
    # (upstream, health path, the reason logged, or None: passes)
    ("u500", "/status/500", r"status 500"),
    ("u404", "/status/404", r"status 404"),
    ("uclose", "/close-before", r"closed before the status"),
    ("u200", "/status/200", None),
    ("u204", "/status/204", None),
    ("u302", "/status/302", None),
    ("uecho", "/hc?q=1", None),
]


@with_servers
def test_failure_reasons():
    """Lone servers, one per upstream, all on one upstream.py (a) and one
    dead port: a check answered 500 or 404 fails ("status 500"), one
    closed unanswered fails ("closed before the status"), a refused
    connect fails ("connect: Connection refused"): those upstreams refuse
    502 with the health message; 200, 204, 302 and an echo pass: those
    upstreams serve, and log nothing after 3 checks."""
    a = U.Upstream(name="a")
    dead = kg.free_port()
    lines = []
    for name, path, _ in REASONS:
        lines.append(pool_line([a], "health=%s health_interval=250ms" % path,
                               name=name))
        lines.append("route * ^/%s/ auth=anonymous upstream=%s" %
                     (name, name))
    lines.append(pool_line([dead], "health=/hc health_interval=250ms",
                           name="udead"))
    lines.append("route * ^/udead/ auth=anonymous upstream=udead")
    d = daemon(*lines)
    for name, path, reason in REASONS:
        if reason is not None:
            d.wait_log(out_re(name, addr(a), reason), 3.0)
    d.wait_log(out_re("udead", addr(dead), r"connect: Connection refused"),
               3.0)
    kg.wait_for(lambda: all(seen(a, path) >= 3 for _, path, _ in REASONS),
                3.0, "3 checks for each health path")
    for name, path, reason in REASONS:
        r = call(d, "/%s/x" % name)
        if reason is None:
            kg.eq(served_by(r, name), "a", "GET /%s/x" % name)
            kg.eq(count(d, r"upstream %s: .*health check" % name), 0,
                  "'health check' lines of %s" % name)
        else:
            check_health_refusal(r, "GET /%s/x" % name)
    check_health_refusal(call(d, "/udead/x"), "GET /udead/x")
    want = {(name, addr(a)): 0.0 if reason else 1.0
            for name, _, reason in REASONS}
    want[("udead", addr(dead))] = 0.0
    wait_healthy(d, want, exact=True)


@with_servers
def test_check_timeout():
    """health=/silent (upstream.py never answers) health_interval=500ms,
    two servers: each is out "health check failed (timed out)" no sooner
    than the interval after start-up (the interval is the timeout) and
    no later than a few; every timed-out check's connection is closed by
    keygated (the upstreams never hold more than 2 open, after 4 checks
    each); requests are refused 502 at once."""
    a = U.Upstream(name="a")
    b = U.Upstream(name="b")
    t0 = time.monotonic()
    d = daemon(pool_line([a, b], "health=/silent health_interval=500ms"),
               ROUTE)
    for u in (a, b):
        d.wait_log(out_re("pool", addr(u), r"timed out"), 3.0)
    dt = time.monotonic() - t0
    kg.check(dt >= 0.45, "both timed out %.2f s after start-up (timeout: "
             "the 500 ms interval)" % dt)
    kg.wait_for(lambda: all(seen(u, "/silent") >= 4 for u in (a, b)), 4.0,
                "4 checks of each server")
    for u in (a, b):
        st = u.stats()
        kg.check(st["open"] <= 2, "%s: %d connections open after %d checks"
                 " (keygated does not close timed-out checks)" %
                 (u.name, st["open"], seen(u, "/silent")))
    fast_502(d, "/t1", "both timed out", n=6)
    kg.eq(sum(count(d, any_out_re("pool", addr(u))) for u in (a, b)), 2,
          "'out' lines")


@with_servers
def test_first_check_at_start():
    """The first check is sent at start-up, not an interval later, and a
    server is in until its first result: with the default interval (5 s)
    s (500) is out within 2.5 s of the start, checked once more about 5 s
    after its first check, not before; a lone server whose check hangs
    (health=/silent, 2 s) serves a request right after start-up, then is
    out "timed out" and refused."""
    s = HealthServer("s", health=500)
    c = U.Upstream(name="c")
    t0 = time.monotonic()
    d = daemon(pool_line([s], "health=/hc"),
               pool_line([c], "health=/silent health_interval=2s",
                         name="slow"),
               "route * ^/slow/ auth=anonymous upstream=slow", ROUTE)
    r = call(d, "/slow/x")
    dt = time.monotonic() - t0
    kg.check(dt < 1.5, "too slow: the first request came %.2f s after the "
             "start (the hung check times out at 2 s)" % dt)
    kg.eq(served_by(r, "GET /slow/x before the first result"), "c",
          "GET /slow/x before the first result")
    d.wait_log(out_re("pool", addr(s), r"status 500"), max(0.1, 2.5 - dt))
    d.wait_log(out_re("slow", addr(c), r"timed out"), 4.0)
    check_health_refusal(call(d, "/slow/y"), "GET /slow/y after the timeout")
    first = s.checks()[0].t
    kg.wait_for(lambda: len(s.checks()) >= 2, 7.0, "a second check of s")
    checks = s.checks()
    gap = checks[1].t - first
    kg.check(4.5 <= gap <= 5.6, "the second check came %.2f s after the "
             "first (default interval 5 s)" % gap)
    kg.check(first - t0 < 1.5, "the first check came %.2f s after the start"
             % (first - t0))


# === reload ==================================================================

@with_servers
def test_reload_keeps_state():
    """a and s (whose checks hang: silent) every 1 s, workers 2: s is out
    "timed out".  A SIGHUP with the same upstream keeps s out: from the
    moment the reload is logged no GET reaches s (were its state new, s
    would be in until its check timed out, a second later), no new 'out'
    line after the first check of the reload timed out, metric 0.  A
    reload changing health= to a path s answers 200 applies it: s gets
    GETs again, its checks are for the new path, metric 1."""
    a = U.Upstream(name="a")
    s = HealthServer("s", health="silent")

    def tmpl(hpath):
        return kg.config(pool_line([a, s], "health=%s health_interval=1s "
                                   "max_fails=0" % hpath), ROUTE,
                         upstream=False, workers=2,
                         metrics_listen="127.0.0.1:{port2}")
    d = kg.start(tmpl("/hc"), nports=2)
    out = out_re("pool", addr(s), r"timed out")
    d.wait_log(out, 3.0)
    before = d.wait_workers(2)
    mark = len(d.errlog_text())
    d.write_conf(tmpl("/hc"))
    t_hup = time.monotonic()
    d.signal(signal.SIGHUP)
    kg.wait_for(lambda: "configuration reloaded" in d.errlog_text()[mark:],
                5.0, "the reload")
    t = time.monotonic()
    got = collections.Counter()
    while time.monotonic() - t < 0.4:
        got.update(sequence(d, 5, "/t1"))
    d.wait_workers(2, exclude=before, timeout=5.0)
    got.update(sequence(d, 10, "/t1"))
    kg.eq(seen(s, "/t1"), 0, "GETs s received after the reload (%r)" %
          dict(got))
    kg.eq(set(got), {"a"}, "servers that answered after the reload")
    # The reload's own check of s times out: still out, nothing new logged.
    kg.wait_for(lambda: [r for r in s.checks(t_hup) if r.closed is not None],
                4.0, "a check of s after the reload, timed out")
    got.update(sequence(d, 10, "/t1"))
    kg.eq(seen(s, "/t1"), 0, "GETs s received once the reload's check "
          "timed out")
    kg.eq(count(d, out), 1, "'out' lines for s")
    kg.eq(count(d, back_re("pool", addr(s))), 0, "'back in' lines for s")
    wait_healthy(d, {("pool", addr(a)): 1.0, ("pool", addr(s)): 0.0},
                 exact=True)

    # A new health path, which s answers 200 (it is not s's "/hc").
    mark = len(d.errlog_text())
    d.write_conf(tmpl("/alive"))
    t_hup = time.monotonic()
    d.signal(signal.SIGHUP)
    kg.wait_for(lambda: "configuration reloaded" in d.errlog_text()[mark:],
                5.0, "the second reload")
    kg.wait_for(lambda: "s" in sequence(d, 4, "/t2"), 4.0,
                "a GET answered by s after the new health path")
    wait_healthy(d, {("pool", addr(a)): 1.0, ("pool", addr(s)): 1.0},
                 exact=True)
    alive = [r for r in s.requests(since=t_hup) if r.path == "/alive"]
    kg.check(alive and all(r.header_all("user-agent") == [UA]
                           for r in alive),
             "s received no check of /alive (or not from keygate): %r" %
             [(r.target, r.headers) for r in alive])
    kg.eq(count(d, any_out_re("pool", addr(s))), 1, "'out' lines for s")


# === configuration ===========================================================

U1, U2 = "http://127.0.0.1:9100", "http://127.0.0.1:9101"

CONFIG_ERRORS = [
    ("health=hc", r"health"),
    ("health=", r"health"),
    ("health=http://127.0.0.1/hc", r"health"),
    ("health=/hc health_interval=50ms", r"health_interval"),
    ("health=/hc health_interval=99ms", r"health_interval"),
    ("health=/hc health_interval=0", r"health_interval"),
    ("health=/hc health_interval=soon", r"health_interval"),
    ("health=/hc health_interval=", r"health_interval"),
    ("health=/hc health_fails=0", r"health_fails"),
    ("health=/hc health_fails=101", r"health_fails"),
    ("health=/hc health_fails=-1", r"health_fails"),
    ("health=/hc health_fails=x", r"health_fails"),
    ("health=/hc health_passes=0", r"health_passes"),
    ("health=/hc health_passes=101", r"health_passes"),
    ("health=/hc health_passes=two", r"health_passes"),
    ("health_interval=1s", r"health_interval"),
    ("health_fails=2", r"health_fails"),
    ("health_passes=2", r"health_passes"),
    ("health=/a health=/b", r"duplicate option.*health"),
]


def base_conf(dir):
    return kg.fill(kg.config(ROUTE.replace("pool", "base"),
                             "upstream base %s" % U1, upstream=False),
                   dir, [kg.free_port()])


def test_config_errors():
    """keygated -t refuses each bad option with exit status 1, naming
    FILE:LINE (the bad line, the last) and the option, not as an unknown
    one."""
    dir = kg.tempdir()
    good = base_conf(dir)
    for opts, message in CONFIG_ERRORS:
        line = "upstream bad %s %s %s" % (U1, U2, opts)
        text = good + line + "\n"
        lineno = text.count("\n")
        path = kg.write_file(dir, "bad.conf", text)
        p = kg.keygated("-t", "-c", path)
        kg.eq(p.returncode, 1, "%r: exit status of -t (stdout %r, stderr "
              "%r)" % (opts, p.stdout, p.stderr))
        want = "%s:%d: " % (path, lineno)
        kg.check(want in p.stderr, "%r: stderr %r does not name %s" %
                 (opts, p.stderr, want))
        kg.check("unknown option" not in p.stderr, "%r: stderr %r" %
                 (opts, p.stderr))
        kg.check(re.search(message, p.stderr), "%r: stderr %r does not say "
                 "/%s/" % (opts, p.stderr, message))
        kg.check("configuration is valid" not in p.stdout,
                 "%r: a bad file reported valid" % opts)


def test_config_good():
    """Every option at its bounds, with the other upstream options, a
    lone server, https, host=: keygated -t accepts them."""
    dir = kg.tempdir()
    lines = [
        "upstream h1 %s %s health=/hc" % (U1, U2),
        "upstream h2 %s health=/healthz?full=1&x=y health_interval=100ms "
        "health_fails=1 health_passes=1" % U1,
        "upstream h3 %s %s health=/ health_interval=30s health_fails=100 "
        "health_passes=100 max_fails=0 retries=0 host=internal.example:8080"
        % (U1, U2),
        "upstream h4 %s health_passes=3 health=/a/b health_fails=2 "
        "health_interval=250ms balance=least_conn" % U2,
        "upstream h5 https://127.0.0.1:9443 https://127.0.0.1:9444 "
        "verify=off health=/hc health_interval=1s",
    ]
    path = kg.write_file(dir, "good.conf",
                         base_conf(dir) + "\n".join(lines) + "\n")
    p = kg.keygated("-t", "-c", path)
    kg.eq(p.returncode, 0, "exit status of -t (stderr %r)" % p.stderr)
    kg.check("configuration is valid" in p.stdout,
             "-t output %r lacks 'configuration is valid'" % p.stdout)


def test_start_refused():
    """Starting (keygated -f) with health_interval=10ms fails at once with
    FILE:LINE and the option named."""
    dir = kg.tempdir()
    text = base_conf(dir) + ("upstream bad %s health=/hc "
                             "health_interval=10ms\n" % U1)
    lineno = text.count("\n")
    path = kg.write_file(dir, "bad.conf", text)
    try:
        p = kg.keygated("-f", "-c", path, timeout=5)
    except subprocess.TimeoutExpired:
        raise AssertionError("keygated started (still running after 5 s)")
    finally:
        kg.kill_dir_processes(dir)
    kg.check(p.returncode != 0, "exit status 0 (stderr %r)" % p.stderr)
    out = p.stdout + p.stderr
    try:
        with open(os.path.join(dir, "error.log")) as f:
            out += f.read()
    except OSError:
        pass
    kg.check("%s:%d: " % (path, lineno) in out and
             "health_interval" in out and "unknown option" not in out,
             "the refusal does not name %s:%d and health_interval: %r" %
             (path, lineno, out[-1000:]))


TESTS = [
    test_unhealthy_server_gets_nothing,
    test_killed_server_out_and_back,
    test_checks_by_master_once_per_interval,
    test_check_request_shape,
    test_all_out_fast_502,
    test_fails_and_passes_in_a_row,
    test_failure_reasons,
    test_check_timeout,
    test_first_check_at_start,
    test_reload_keeps_state,
    test_config_errors,
    test_config_good,
    test_start_refused,
]


if __name__ == "__main__":
    if len(sys.argv) > 1:
        names = sys.argv[1:]
        TESTS = [t for t in TESTS if t.__name__ in names]
    kg.run(TESTS)
