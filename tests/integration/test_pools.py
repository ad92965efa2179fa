"""
Upstream pools: several servers behind one upstream name ("upstream NAME
URL [URL...] [options]"), seen from a client, from the upstream servers
(upstream.py subprocesses: X-Upstream-Name says which one answered, their
/_stats which requests and connections they saw) and from the error log
and metrics_listen.

What is checked: smooth weighted round robin (equal weights share evenly,
weights 1,1,2 give exactly "c a b c" repeating); least_conn (the server
with fewer exchanges under way, per weight, gets the next request; ties
rotate); a server that dies mid-run (GETs go on on the other, the server
is marked out, nothing more is sent to it), a refused connect sent on to
the other server whatever the request, retries=0; max_fails within
fail_timeout (older failures forgotten), fail_timeout (a server out is
tried again after it, answers again, and one that fails right after
coming back goes out again at once), the lone server of an upstream never
out; every server out (502 "every server of the upstream is out" at once,
logged at most once a second); retry_on= (http_503, timeout, the default
error,timeout) and which requests may be sent twice (requests without a
body: any method whose connect failed, else idempotent ones); a name with
two addresses (127.0.0.1 and ::1 through a private /etc/hosts: two
servers, two metric series); idle_timeout; max_conns; strip_prefix= and
host=; and the configuration errors, with FILE:LINE.

Every daemon runs one worker: failures are counted per worker (as nginx
does without a shared zone), so one worker makes the counts exact.  The
probe kgtest sends to "/" at start matches no route (routes are "^/."),
so it never reaches the pool and the round robin starts fresh.
"""

import collections
import re
import sys
import time

import kgtest as kg
import upstream as U

with_upstreams = U.with_upstreams

# Every path but "/" (the start probe) goes to the pool, as it is.
ROUTE = "route * ^/. auth=anonymous upstream=pool"

OUT_MSG = "every server of the upstream is out after failures"
UNREACHED_MSG = "the upstream could not be reached"


# --- helpers -----------------------------------------------------------------

def start_ups(*names, ipv6=False):
    """upstream.py servers, one per name (its X-Upstream-Name)."""
    try:
        return [U.Upstream(name=n, ipv6=ipv6) for n in names]
    except OSError as e:
        if ipv6:
            kg.skip("cannot listen on [::1]: %s" % e)
        raise


def addr(up_or_port):
    """The server label / log name of an upstream on 127.0.0.1."""
    port = up_or_port if isinstance(up_or_port, int) else up_or_port.port
    return "127.0.0.1:%d" % port


def url(up_or_port, weight=None):
    u = "http://" + addr(up_or_port)
    return u + ("#weight=%d" % weight if weight is not None else "")


def pool(urls, opts="", *lines, nports=1, ups=(), **settings):
    """A daemon (one worker) whose upstream "pool" has these URLs and
    options, every path but "/" routed to it; ups' counters are zeroed
    once it serves."""
    line = "upstream pool %s%s" % (" ".join(urls), " " + opts if opts else "")
    d = kg.start(kg.config(line, ROUTE, *lines, upstream=False, **settings),
                 nports=nports)
    for u in ups:
        u.reset()
    return d


def call(d, target, method="GET", body=b"", conn=None, headers=(),
         timeout=kg.DEFAULT_TIMEOUT):
    """One request, on conn or on a new connection."""
    raw = kg.raw_request(method, target, headers=list(headers), body=body)
    if conn is not None:
        conn.send(raw)
        return conn.read_final(method == "HEAD")
    with kg.Conn(d.port, timeout=timeout) as c:
        c.send(raw)
        return c.read_final(method == "HEAD")


def served_by(r, what):
    """The name of the upstream server that answered r (a 200)."""
    kg.eq(r.status, 200, "%s: status (body %r)" % (what, r.body[:200]))
    name = r.header("x-upstream-name")
    kg.check(name is not None, "%s: no X-Upstream-Name: %r" % (what, r))
    return name


def sequence(d, n, target="/r", conn=None):
    """Who answered n GETs in a row (new connections unless conn)."""
    return [served_by(call(d, target, conn=conn), "GET %s #%d" % (target, i))
            for i in range(n)]


def seen(up, target=None):
    """Requests up received (for target only, if given)."""
    log = up.stats()["log"]
    return len([e for e in log if target is None or e[2] == target])


def wait_seen(ups, target, timeout=3.0):
    """The upstream that received a request for target (waits for it)."""
    def find():
        for u in ups:
            if seen(u, target):
                return u
        return None
    return kg.wait_for(find, timeout, "a request for %s at an upstream" %
                       target)


def count(d, pattern):
    """Lines of d's error log matching pattern."""
    return len(re.findall(pattern, d.errlog_text(), re.M))


def refused_re(name, server):
    return r"upstream %s: %s: connect: Connection refused" % (
        re.escape(name), re.escape(server))


def failover_re(name, frm, to):
    return r"upstream %s: %s failed; trying %s" % (
        re.escape(name), re.escape(frm), re.escape(to))


def out_re(name, server, n, ms):
    return r"upstream %s: %s: %d failures?, out for %d ms" % (
        re.escape(name), re.escape(server), n, ms)


def hold(d, target):
    """A connection whose GET target is on its way (read it later)."""
    c = kg.Conn(d.port)
    c.send(kg.raw_request("GET", target))
    return c


def even(counts, names, n, what):
    """Each of names got n/len(names) requests, give or take one."""
    share = n / len(names)
    kg.eq(sum(counts.values()), n, "%s: requests in all (%r)" % (what,
                                                                 counts))
    for name in names:
        kg.check(abs(counts[name] - share) <= 1,
                 "%s: %s got %d of %d requests, expected %.1f +- 1 (%r)" %
                 (what, name, counts[name], n, share, counts))


# --- metrics -----------------------------------------------------------------

UP_SERIES_RE = re.compile(
    r'^keygate_upstream_requests_total\{upstream="([^"]*)",'
    r'server="([^"]*)",result="([^"]*)"\} (\S+)$', re.M)


def upstream_series(d, port):
    """{(upstream, server, result): value} from metrics_listen on port."""
    r = kg.get(port, "/metrics")
    kg.eq(r.status, 200, "GET /metrics (%r)" % r.body[:200])
    return {m.group(1, 2, 3): float(m.group(4))
            for m in UP_SERIES_RE.finditer(r.body.decode())}


# === round robin =============================================================

@with_upstreams
def test_round_robin_two_servers():
    """Equal weights: 30 requests on new connections and 30 on one
    keep-alive connection are shared evenly; each server has its own
    keygate_upstream_requests_total series (server="127.0.0.1:PORT")
    counting exactly what it answered."""
    ups = start_ups("a", "b")
    d = pool([url(u) for u in ups], "", ups=ups, nports=2,
             metrics_listen="127.0.0.1:{port2}")
    even(collections.Counter(sequence(d, 30)), ["a", "b"], 30,
         "new connections")
    with kg.Conn(d.port) as c:
        even(collections.Counter(sequence(d, 30, conn=c)), ["a", "b"], 30,
             "one keep-alive connection")
    for u in ups:
        kg.eq(seen(u), 30, "requests upstream %s saw" % u.name)
    m = upstream_series(d, d.ports[1])
    for u in ups:
        kg.eq(m.get(("pool", addr(u), "ok")), 30.0,
              "keygate_upstream_requests_total{server=%s,result=ok} (%r)"
              % (addr(u), m))
    kg.eq(sorted(s for (name, s, res) in m if name == "pool"),
          sorted([addr(u) for u in ups] * 5),
          "the pool's series: 5 results for each of its 2 servers")


@with_upstreams
def test_round_robin_three_servers():
    """Three equal servers: 30 requests, 10 each (give or take one)."""
    ups = start_ups("a", "b", "c")
    d = pool([url(u) for u in ups], ups=ups)
    even(collections.Counter(sequence(d, 30)), ["a", "b", "c"], 30,
         "three servers")


@with_upstreams
def test_round_robin_weighted():
    """Weights 1,1,2 (c#weight=2): nginx's smooth weighted round robin,
    exactly "c a b c" repeating from the start, never c three times in a
    row; 40 more requests: 10, 10, 20."""
    a, b, c = start_ups("a", "b", "c")
    d = pool([url(a), url(b, 1), url(c, 2)], ups=(a, b, c))
    got = sequence(d, 8)
    kg.eq(" ".join(got), "c a b c c a b c", "the first 8 answers")
    counts = collections.Counter(sequence(d, 40))
    kg.eq((counts["a"], counts["b"], counts["c"]), (10, 10, 20),
          "40 more requests (a, b, c)")


# === least_conn ==============================================================

def least_conn_phase(d, ups, slow, fast_n):
    """Hold slow (a GET the upstream answers ~1.5 s later) and wait until
    an upstream has it; then fast_n quick GETs.  Returns (the held
    connection, the upstream that has the slow one, Counter of the fast
    ones)."""
    c = hold(d, slow)
    try:
        busy = wait_seen(ups, slow)
        fast = collections.Counter(sequence(d, fast_n, "/fast"))
    except BaseException:
        c.close()
        raise
    return c, busy, fast


def finish(c, busy, what):
    """Read the held response: it came from busy."""
    try:
        r = c.read_final()
    finally:
        c.close()
    kg.eq(served_by(r, what), busy.name, "%s: server" % what)


@with_upstreams
def test_least_conn():
    """balance=least_conn, two servers.  A slow request (?ms=1500) held on
    one of them (whichever: with none busy the tie rotates; the upstream
    that logged it tells which) makes it the busier one: the 8 quick
    requests that follow, one after the other, all go to the other.  A
    second slow one goes to the idle server; with one exchange under way
    on each, the quick ones tie and rotate: 4 and 4 (give or take one)."""
    ups = start_ups("a", "b")
    d = pool([url(u) for u in ups], "balance=least_conn read_timeout=5s",
             ups=ups)
    c1, x, fast = least_conn_phase(d, ups, "/slow?ms=1500&n=1", 8)
    y = [u for u in ups if u is not x][0]
    try:
        kg.eq(dict(fast), {y.name: 8}, "quick requests while %s is busy" %
              x.name)
        c2, busy2, fast = least_conn_phase(d, ups, "/slow?ms=1500&n=2", 8)
        try:
            kg.eq(busy2.name, y.name, "the second slow request went to")
            even(fast, ["a", "b"], 8, "quick requests with one slow "
                 "request on each")
        finally:
            finish(c2, y, "the second slow request")
    finally:
        finish(c1, x, "the first slow request")


@with_upstreams
def test_least_conn_weights():
    """least_conn counts exchanges per weight: a (weight 1) and b#weight=2
    with one slow request under way on each (1/1 against 1/2), every quick
    request goes to b."""
    a, b = start_ups("a", "b")
    d = pool([url(a), url(b, 2)], "balance=least_conn read_timeout=5s",
             ups=(a, b))
    held = []		# [connection, the upstream that has its request]
    try:
        for i in (1, 2):
            target = "/slow?ms=1500&n=%d" % i
            c = hold(d, target)
            held.append([c, None])
            held[-1][1] = wait_seen((a, b), target)
        kg.check(held[0][1] is not held[1][1], "both slow requests went "
                 "to %s" % held[0][1].name)
        fast = collections.Counter(sequence(d, 8, "/fast"))
        kg.eq(dict(fast), {"b": 8}, "quick requests (1/1 busy on a, 1/2 on "
              "b)")
    finally:
        for i, (c, up) in enumerate(held):
            if up is None:
                c.close()
            else:
                finish(c, up, "slow request %d" % (i + 1))


@with_upstreams
def test_round_robin_ignores_busy():
    """The contrast: with the default round robin a slow request held on
    one server does not stop it getting its share of quick ones."""
    ups = start_ups("a", "b")
    d = pool([url(u) for u in ups], "read_timeout=5s", ups=ups)
    c, x, fast = least_conn_phase(d, ups, "/slow?ms=1000", 8)
    try:
        even(fast, ["a", "b"], 8, "round robin with %s busy" % x.name)
    finally:
        finish(c, x, "the slow request")


# === failures ================================================================

@with_upstreams
def test_server_killed():
    """b is stopped mid-run: every GET still succeeds (the one that met
    the refused connect went on to a), b is marked out (max_fails=1
    default: "1 failure, out for 10000 ms") and not tried again within
    fail_timeout: no more connects to it."""
    a, b = start_ups("a", "b")
    d = pool([url(a), url(b)], ups=(a, b))
    kg.eq(sorted(sequence(d, 4)), ["a", "a", "b", "b"], "before the stop")
    b.stop()
    kg.eq(sequence(d, 10), ["a"] * 10, "after b stopped")
    kg.eq(count(d, refused_re("pool", addr(b))), 1,
          "'connect: Connection refused' lines for b")
    kg.eq(count(d, out_re("pool", addr(b), 1, 10000)), 1,
          "'1 failure, out for 10000 ms' lines for b")
    kg.eq(count(d, failover_re("pool", addr(b), addr(a))), 1,
          "'%s failed; trying %s' lines" % (addr(b), addr(a)))
    kg.eq(sequence(d, 10), ["a"] * 10, "10 more")
    kg.eq(count(d, refused_re("pool", addr(b))), 1,
          "connects to b while it is out (refused lines)")
    kg.check(count(d, r"answering again") == 0, "b said to answer again")


@with_upstreams
def test_refused_connect_any_request_goes_on():
    """A connect that is refused sent nothing: a request without a body
    goes to the other server whatever its method (POST, DELETE, GET).  A
    request with a body does not: its body may already be on its way into
    the failed connection (a refused connect is seen only after connect()
    returned, even on loopback), so it gets 502 when it met the dead
    server.  max_fails=0 keeps the dead server in the rotation, so about
    every other attempt meets it first."""
    a, = start_ups("a")
    dead = kg.free_port()
    d = pool([url(dead), url(a)], "max_fails=0", ups=(a,))
    got = []
    for method in ("POST", "POST", "DELETE", "DELETE", "GET", "GET"):
        r = call(d, "/r", method, b"")
        got.append((method, r.status, r.header("x-upstream-name")))
    kg.eq(got, [(m, 200, "a") for m, _, _ in got],
          "(method without a body, status, server)")
    statuses = []
    for i in range(6):
        method, body = ("POST", b"hello") if i % 2 == 0 else \
            ("PUT", b"x" * 1000)
        r = call(d, "/r", method, body)
        statuses.append(r.status)
        if r.status == 502:
            j = kg.check_refusal(r, 502, "upstream_unavailable",
                                 "%s with a body to the dead server" %
                                 method)
            kg.eq(j["message"], UNREACHED_MSG, "502 message")
        else:
            kg.eq((r.status, served_by(r, method),
                   r.json().get("body_bytes")), (200, "a", len(body)),
                  "%s with a body" % method)
    kg.check(502 in statuses and 200 in statuses,
             "requests with a body: some met the dead server and got 502, "
             "the others were served by a: %r" % statuses)
    kg.check(count(d, refused_re("pool", addr(dead))) >= 4,
             "the dead server was tried (refused lines: %d)" %
             count(d, refused_re("pool", addr(dead))))


@with_upstreams
def test_retries_zero():
    """retries=0: a GET whose server refuses the connect is answered 502
    (no other server tried, no "failed; trying" line); max_fails=0 keeps
    the dead server in the rotation: 502 and 200 alternate."""
    a, = start_ups("a")
    dead = kg.free_port()
    d = pool([url(dead), url(a)], "max_fails=0 retries=0", ups=(a,))
    statuses = []
    for i in range(6):
        r = call(d, "/r")
        statuses.append(r.status)
        if r.status == 502:
            j = kg.check_refusal(r, 502, "upstream_unavailable",
                                 "GET #%d to the dead server" % i)
            kg.eq(j["message"], UNREACHED_MSG, "502 message")
        else:
            kg.eq(served_by(r, "GET #%d" % i), "a", "GET #%d" % i)
    kg.eq(sorted(statuses), [200] * 3 + [502] * 3, "statuses %r" % statuses)
    kg.eq(seen(a), 3, "requests a saw")
    kg.eq(count(d, r"failed; trying"), 0, "'failed; trying' lines")
    kg.eq(count(d, refused_re("pool", addr(dead))), 3, "refused lines")


@with_upstreams
def test_recovery_after_fail_timeout():
    """max_fails=2 fail_timeout=1s: b stopped is out after 2 refused
    connects; after 1 s (still dead) it is tried once and, failing right
    after coming back, goes out again at once ("3 failures"); b started
    again on its port gets nothing until that second second is over, then
    its share again, logged "answering again"."""
    a, b = start_ups("a", "b")
    d = pool([url(a), url(b)], "max_fails=2 fail_timeout=1s", ups=(a, b))
    kg.eq(sorted(sequence(d, 4)), ["a", "a", "b", "b"], "both up")
    port_b = b.port
    refused = refused_re("pool", addr(b))
    b.stop()
    kg.eq(sequence(d, 8), ["a"] * 8, "b stopped")
    kg.eq(count(d, refused), 2, "refused connects to b (max_fails=2)")
    kg.eq(count(d, out_re("pool", addr(b), 2, 1000)), 1,
          "'2 failures, out for 1000 ms' lines")
    time.sleep(1.2)
    kg.eq(sequence(d, 6), ["a"] * 6, "b still dead after fail_timeout")
    t_out = time.monotonic()
    kg.eq(count(d, refused), 3, "refused connects to b after fail_timeout "
          "(one: out again at once)")
    kg.eq(count(d, out_re("pool", addr(b), 3, 1000)), 1,
          "'3 failures, out for 1000 ms' lines")
    b2 = U.Upstream("b2", port=port_b)
    kg.eq(b2.port, port_b, "port of the restarted upstream")
    kg.eq(sequence(d, 4), ["a"] * 4, "b back but still out")
    kg.check(time.monotonic() - t_out < 0.9, "too slow to check that b "
             "stayed out (%.2f s)" % (time.monotonic() - t_out))
    kg.eq(seen(b2), 0, "requests b2 saw while out")
    time.sleep(max(0.0, t_out + 1.2 - time.monotonic()))
    counts = collections.Counter(sequence(d, 10))
    kg.eq((counts["a"], counts["b2"]), (5, 5), "after the second "
          "fail_timeout (a, b2)")
    kg.eq(count(d, r"upstream pool: %s: answering again" %
                re.escape(addr(b))), 1, "'answering again' lines")
    kg.eq(count(d, refused), 3, "refused connects in all")


@with_upstreams
def test_fail_timeout_window():
    """max_fails counts failures within fail_timeout (max_fails=2
    fail_timeout=500ms, a dead server next to a): two failures 600 ms
    apart leave it in (the first is forgotten), two in a row take it out
    ("2 failures, out for 500 ms": no more connects to it); after 500 ms
    it is tried again and, failing, is out again at once ("3
    failures").  Every GET is answered by a meanwhile."""
    a, = start_ups("a")
    dead = kg.free_port()
    d = pool([url(dead), url(a)], "max_fails=2 fail_timeout=500ms",
             ups=(a,))
    refused = refused_re("pool", addr(dead))

    def hit_dead(what):
        """GETs (at most 4) until one met the dead server."""
        before = count(d, refused)
        for i in range(4):
            kg.eq(served_by(call(d, "/r"), what), "a", what)
            if count(d, refused) > before:
                kg.eq(count(d, refused), before + 1, "%s: refused connects"
                      % what)
                return
        raise AssertionError("%s: 4 GETs, none tried the dead server" %
                             what)

    def not_tried(what):
        before = count(d, refused)
        kg.eq(sequence(d, 4), ["a"] * 4, what)
        kg.eq(count(d, refused), before, "%s: refused connects" % what)
    hit_dead("first failure")
    time.sleep(0.6)
    hit_dead("a failure 600 ms later")
    kg.eq(count(d, r"out for"), 0, "'out for' lines after two failures "
          "600 ms apart")
    hit_dead("a failure right after")
    kg.eq(count(d, out_re("pool", addr(dead), 2, 500)), 1,
          "'2 failures, out for 500 ms' lines")
    not_tried("while out")
    time.sleep(0.6)
    hit_dead("after fail_timeout")
    kg.eq(count(d, out_re("pool", addr(dead), 3, 500)), 1,
          "'3 failures, out for 500 ms' lines (out again at once)")
    not_tried("while out again")


def test_lone_server_never_out():
    """The only server of an upstream is never taken out (as nginx):
    every request tries it, whatever max_fails."""
    dead = kg.free_port()
    d = pool([url(dead)], "max_fails=1")
    for i in range(4):
        j = kg.check_refusal(call(d, "/r"), 502, "upstream_unavailable",
                             "GET #%d" % i)
        kg.eq(j["message"], UNREACHED_MSG, "GET #%d: message" % i)
    kg.eq(count(d, refused_re("pool", addr(dead))), 4, "refused connects")
    kg.eq(count(d, r"out for|no server to send to"), 0, "'out' lines")


@with_upstreams
def test_all_servers_out():
    """Both servers refuse: the first GET tries both (502 "could not be
    reached") and marks them out; then every request is refused 502
    "every server of the upstream is out after failures" at once, with no
    connect, and "no server to send to" is logged at most once a second."""
    dead1, dead2 = kg.free_ports(2)
    d = pool([url(dead1), url(dead2)])
    r = call(d, "/r")
    j = kg.check_refusal(r, 502, "upstream_unavailable", "first GET")
    kg.eq(j["message"], UNREACHED_MSG, "first 502 message")
    kg.eq(count(d, r"connect: Connection refused"), 2, "refused connects")
    t0 = time.monotonic()
    slowest = 0.0
    n = 0
    while time.monotonic() - t0 < 1.6:
        with kg.Conn(d.port) as c:
            t = time.monotonic()
            r = call(d, "/r?n=%d" % n, conn=c)
            slowest = max(slowest, time.monotonic() - t)
        j = kg.check_refusal(r, 502, "upstream_unavailable", "GET #%d" % n)
        kg.eq(j["message"], OUT_MSG, "GET #%d: message" % n)
        n += 1
        time.sleep(0.04)
    elapsed = time.monotonic() - t0
    kg.check(slowest < 0.05, "slowest 502 took %.1f ms" % (slowest * 1000))
    kg.eq(count(d, r"connect: Connection refused"), 2,
          "refused connects after %d more requests" % n)
    lines = count(d, r"upstream pool: no server to send to")
    kg.check(1 <= lines <= int(elapsed) + 1,
             "%d 'no server to send to' lines for %d requests in %.1f s" %
             (lines, n, elapsed))


@with_upstreams
def test_retry_on_http_503():
    """retry_on=http_503: a GET answered 503 goes to the other server too
    (the client gets its 503, both servers saw the request, "failed;
    trying" logged) and each 503 is a failure: both are out afterwards.
    A POST with a body is not sent twice.  By default a 503 is passed on
    from the one server that answered it, and is no failure."""
    ups = start_ups("a", "b")
    d = pool([url(u) for u in ups], "retry_on=http_503", ups=ups)
    r = call(d, "/status/503")
    kg.eq(r.status, 503, "GET /status/503 status")
    last = r.header("x-upstream-name")
    kg.eq([seen(u, "/status/503") for u in ups], [1, 1],
          "servers that saw GET /status/503 (a, b)")
    first = [u for u in ups if u.name != last][0]
    kg.eq(count(d, failover_re("pool", addr(first), "127.0.0.1:%d" %
                               [u for u in ups if u.name == last][0].port)),
          1, "'failed; trying' lines")
    # The 503 of the first was a failure: it is out (max_fails=1).
    kg.eq(count(d, out_re("pool", addr(first), 1, 10000)), 1,
          "'1 failure, out for 10000 ms' lines for the first server")
    for i in range(4):
        r = call(d, "/r")
        kg.check(r.status == 502 or r.header("x-upstream-name") == last,
                 "GET #%d after the 503s: %r" % (i, r))
    kg.eq(seen(first, "/r"), 0, "GETs the first server saw while out")
    d.kill()

    d = pool([url(u) for u in ups], "retry_on=http_503 max_fails=0",
             ups=ups)
    r = call(d, "/status/503", "POST", b"body")
    kg.eq(r.status, 503, "POST /status/503 status")
    kg.eq(sum(seen(u, "/status/503") for u in ups), 1,
          "servers that saw POST /status/503 with a body")
    d.kill()

    d = pool([url(u) for u in ups], "", ups=ups)
    r = call(d, "/status/503")
    kg.eq(r.status, 503, "GET /status/503 status, default retry_on")
    kg.eq(sum(seen(u, "/status/503") for u in ups), 1,
          "servers that saw it, default retry_on")
    even(collections.Counter(sequence(d, 4)), ["a", "b"], 4,
         "GETs after a 503 (no failure by default)")
    kg.eq(count(d, r"failed; trying|out for"), 0,
          "failover or out lines, default retry_on")


@with_upstreams
def test_retry_on_503_out_means_out():
    """retry_on=http_503: when the last server tried answers 503 too (no
    retry left) its 503 goes to the client.  Whether that 503 counts as a
    failure or not, the log must tell the truth: a server logged "out for
    10000 ms" gets no request during those 10 s, and one logged both "out
    for" and "answering again" at the same moment is a contradiction."""
    ups = start_ups("a", "b")
    d = pool([url(u) for u in ups], "retry_on=http_503", ups=ups)
    kg.eq(call(d, "/status/503").status, 503, "GET /status/503 status")
    for u in ups:
        u.reset()
    out = [u for u in ups if count(d, out_re("pool", addr(u), 1, 10000))]
    kg.check(out, "no server logged out after two retried 503s")
    for i in range(4):
        call(d, "/r")
    for u in out:
        kg.eq(seen(u, "/r"), 0, "GETs to %s, logged 'out for 10000 ms', in "
              "the next second" % addr(u))


@with_upstreams
def test_retry_on_timeout():
    """read_timeout=300ms retry_on=timeout: GET /silent times out on one
    server, goes to the other (silent too): 504 upstream_timeout after
    about 2 x 300 ms, both saw it; the default (error,timeout, nginx's)
    does the same.  With retry_on=error: 504 after about 300 ms, one
    attempt."""
    ups = start_ups("a", "b")
    d = pool([url(u) for u in ups], "read_timeout=300ms retry_on=timeout",
             ups=ups)
    t0 = time.monotonic()
    r = call(d, "/silent")
    dt = time.monotonic() - t0
    kg.check_refusal(r, 504, "upstream_timeout", "GET /silent, retried")
    kg.check(0.58 <= dt < 1.5, "504 after %.2f s (2 x 300 ms expected)" % dt)
    kg.eq([seen(u, "/silent") for u in ups], [1, 1],
          "servers that saw GET /silent (a, b)")
    kg.eq(count(d, r"read timed out"), 2, "'read timed out' lines")
    kg.eq(count(d, r"upstream pool: \S+ failed; trying \S+"), 1,
          "'failed; trying' lines")
    d.kill()

    d = pool([url(u) for u in ups], "read_timeout=300ms", ups=ups)
    t0 = time.monotonic()
    r = call(d, "/silent")
    dt = time.monotonic() - t0
    kg.check_refusal(r, 504, "upstream_timeout", "GET /silent, default")
    kg.check(0.58 <= dt < 1.5, "504 after %.2f s (2 x 300 ms expected, "
             "default retry_on)" % dt)
    kg.eq([seen(u, "/silent") for u in ups], [1, 1],
          "servers that saw GET /silent with the default retry_on")
    d.kill()

    d = pool([url(u) for u in ups], "read_timeout=300ms retry_on=error",
             ups=ups)
    t0 = time.monotonic()
    r = call(d, "/silent")
    dt = time.monotonic() - t0
    kg.check_refusal(r, 504, "upstream_timeout", "GET /silent, not retried")
    kg.check(0.28 <= dt < 0.55, "504 after %.2f s (300 ms expected)" % dt)
    kg.eq(sum(seen(u, "/silent") for u in ups), 1,
          "servers that saw GET /silent, retry_on=error")
    kg.eq(count(d, r"failed; trying"), 0, "'failed; trying' lines")


@with_upstreams
def test_close_before_answer_idempotent_only():
    """A server that closes before answering (/close-before, both
    servers): an idempotent request without a body (GET, DELETE) is sent
    to the other server too (both see it, "failed; trying"), a POST (with
    or without a body) or a PUT with a body is not (one sees it); every
    one ends 502.  max_fails=0 keeps both servers in; max_idle=0 keeps
    every attempt on a new connection (no stale-connection resend)."""
    ups = start_ups("a", "b")
    d = pool([url(u) for u in ups], "max_fails=0 max_idle=0", ups=ups)
    for method, body, want in (("POST", b"data", 1), ("GET", b"", 2),
                               ("PUT", b"data", 1), ("DELETE", b"", 2),
                               ("POST", b"", 1), ("GET", b"", 2)):
        what = "%s /close-before with %d body bytes" % (method, len(body))
        for u in ups:
            u.reset()
        before = count(d, r"failed; trying")
        kg.check_refusal(call(d, "/close-before", method, body), 502,
                         "upstream_unavailable", what)
        kg.eq(sum(seen(u, "/close-before") for u in ups), want,
              "%s: servers that saw it" % what)
        kg.eq(count(d, r"failed; trying") - before, want - 1,
              "%s: 'failed; trying' lines" % what)


# === a name with several addresses ===========================================

@with_upstreams
def test_name_with_two_addresses():
    """http://pool.test:PORT where the name has two addresses, 127.0.0.1
    and ::1: two servers (upstream.py --ipv6 listens on both, same port),
    both get requests, each with its own series server="127.0.0.1:PORT"
    and server="[::1]:PORT".  The name is made up and resolved through a
    private /etc/hosts (kg.private_hosts: a mount namespace of keygated's
    own), so the test does not depend on what this machine's localhost
    resolves to, and changes nothing on it."""
    if not kg.have_ipv6():
        kg.skip("no IPv6 loopback")
    launcher = kg.private_hosts("127.0.0.1 pool.test\n::1 pool.test\n")
    up, = start_ups("dual", ipv6=True)
    line = "upstream pool http://pool.test:%d" % up.port
    d = kg.start(kg.config(line, ROUTE, upstream=False,
                           metrics_listen="127.0.0.1:{port2}"),
                 nports=2, launcher=launcher)
    up.reset()
    sequence(d, 10)
    kg.eq(seen(up), 10, "requests the upstream saw")
    m = upstream_series(d, d.ports[1])
    v4 = m.get(("pool", "127.0.0.1:%d" % up.port, "ok"), 0.0)
    v6 = m.get(("pool", "[::1]:%d" % up.port, "ok"), 0.0)
    kg.eq(v4 + v6, 10.0, "ok attempts on both series (%r)" % m)
    kg.check(v4 == v6 == 5.0, "127.0.0.1 got %d, [::1] got %d of 10" %
             (v4, v6))
    kg.eq([s for (name, s, res) in m if name == "pool" and
           s.startswith("pool.test")], [], "series named after the name")


# === idle_timeout and max_conns ==============================================

def conn_round(d, names, what):
    """One GET to each server: {name: X-Upstream-Conn} (the upstream's
    connection number; its own /_stats queries take numbers too)."""
    conns = {}
    for _ in names:
        r = call(d, "/r")
        conns[served_by(r, what)] = int(r.header("x-upstream-conn"))
    kg.eq(sorted(conns), sorted(names), "%s: servers" % what)
    return conns


@with_upstreams
def test_idle_timeout():
    """idle_timeout=500ms: the kept-alive connection to each server is
    closed after 500 ms idle (the upstream sees it close; not before
    ~250 ms), so the next request opens connection 2.  By default (60 s)
    the next request, a second later, reuses connection 1."""
    ups = start_ups("a", "b")
    d = pool([url(u) for u in ups], "idle_timeout=500ms", ups=ups)
    first = conn_round(d, ["a", "b"], "first round")
    time.sleep(0.25)
    kg.eq([u.stats()["open"] for u in ups], [1, 1],
          "connections open 250 ms after the requests")
    kg.wait_for(lambda: all(u.stats()["peer_closed"] == 1 for u in ups),
                1.5, "both idle connections closed by keygated")
    second = conn_round(d, ["a", "b"], "second round")
    for name in ("a", "b"):
        kg.check(second[name] > first[name], "%s: connection %d after "
                 "idle_timeout, %d before: not a new one" %
                 (name, second[name], first[name]))
    d.kill()

    ups = start_ups("c", "e")
    d = pool([url(u) for u in ups], "", ups=ups)
    first = conn_round(d, ["c", "e"], "first round, default idle_timeout")
    time.sleep(1.0)
    second = conn_round(d, ["c", "e"], "second round, default idle_timeout")
    kg.eq(second, first, "connections a second later, default "
          "idle_timeout")
    kg.eq([u.stats()["peer_closed"] for u in ups], [0, 0],
          "connections closed by keygated with the default idle_timeout")


@with_upstreams
def test_max_conns():
    """max_conns=1: with a slow request under way on one server, every
    quick one goes to the other; with one under way on each, a request
    is refused 502 at once ("no server to send to ... or at max_conns"
    logged); once they are done, both serve again."""
    ups = start_ups("a", "b")
    d = pool([url(u) for u in ups], "max_conns=1 read_timeout=5s", ups=ups)
    c1, x, fast = least_conn_phase(d, ups, "/slow?ms=1200&n=1", 4)
    c2 = None
    try:
        y = [u for u in ups if u is not x][0]
        kg.eq(dict(fast), {y.name: 4}, "quick requests with %s at "
              "max_conns" % x.name)
        c2 = hold(d, "/slow?ms=1200&n=2")
        kg.eq(wait_seen(ups, "/slow?ms=1200&n=2").name, y.name,
              "the second slow request went to")
        t = time.monotonic()
        r = call(d, "/r")
        dt = time.monotonic() - t
        j = kg.check_refusal(r, 502, "upstream_unavailable",
                             "both at max_conns")
        kg.eq(j["message"], OUT_MSG + " or at max_conns", "message")
        kg.check(dt < 0.05, "the 502 took %.1f ms" % (dt * 1000))
        kg.eq(count(d, r"upstream pool: no server to send to: every "
                    r"server of the upstream is out after failures or at "
                    r"max_conns \(2 servers\)"), 1,
              "'no server to send to' lines")
    finally:
        if c2 is not None:
            finish(c2, y, "the second slow request")
        finish(c1, x, "the first slow request")
    even(collections.Counter(sequence(d, 4)), ["a", "b"], 4,
         "after the slow ones")


# === configuration ===========================================================

def base_conf(dir):
    return kg.fill(kg.config("upstream pool http://127.0.0.1:9000 "
                             "http://127.0.0.1:9001", ROUTE,
                             upstream=False), dir, [kg.free_port()])


U1, U2 = "http://127.0.0.1:9100", "http://127.0.0.1:9101"

CONFIG_ERRORS = [
    ("upstream bad %s https://127.0.0.1:9101" % U1, r"same scheme"),
    ("upstream bad https://127.0.0.1:9100 %s" % U2, r"same scheme"),
    ("upstream bad %s#weight=0 %s" % (U1, U2), r"#weight"),
    ("upstream bad %s %s#weight=101" % (U1, U2), r"#weight"),
    ("upstream bad %s#weight=x" % U1, r"#weight"),
    ("upstream bad %s#weight= %s" % (U1, U2), r"#weight"),
    ("upstream bad %s#foo %s" % (U1, U2), r"#weight"),
    ("upstream bad %s %s balance=random" % (U1, U2), r"balance.*random"),
    ("upstream bad %s %s retries=99" % (U1, U2), r"retries.*99"),
    ("upstream bad %s %s retries=-1" % (U1, U2), r"retries"),
    ("upstream bad %s %s retry_on=http_500" % (U1, U2),
     r"retry_on.*http_500"),
    ("upstream bad %s %s retry_on=off,error" % (U1, U2), r"retry_on"),
    ("upstream bad %s %s retry_on=error,off" % (U1, U2), r"retry_on"),
    ("upstream bad %s %s retry_on=" % (U1, U2), r"retry_on"),
    ("upstream bad %s %s max_fails=-1" % (U1, U2), r"max_fails"),
    ("upstream bad %s %s max_fails=lots" % (U1, U2), r"max_fails"),
    ("upstream bad %s %s fail_timeout=0" % (U1, U2), r"fail_timeout"),
    ("upstream bad %s %s fail_timeout=soon" % (U1, U2), r"fail_timeout"),
    ("upstream bad %s %s idle_timeout=0" % (U1, U2), r"idle_timeout"),
    ("upstream bad %s %s max_conns=x" % (U1, U2), r"max_conns"),
    ("upstream bad %s %s retries=1 retries=2" % (U1, U2),
     r"duplicate option.*retries"),
    ("upstream bad %s %s balance=least_conn balance=round_robin" %
     (U1, U2), r"duplicate option.*balance"),
    ("upstream bad echo retries=1", r"echo upstream takes no options"),
    ("upstream bad echo %s" % U1, r"echo upstream takes no options"),
    ("upstream bad %s retries=1 %s" % (U1, U2), r"127\.0\.0\.1:9101"),
]


def test_config_errors():
    """keygated -t refuses each bad upstream line with exit status 1,
    naming FILE:LINE (the bad line, the last) and the problem."""
    dir = kg.tempdir()
    good = base_conf(dir)
    for line, message in CONFIG_ERRORS:
        text = good + line + "\n"
        lineno = text.count("\n")
        path = kg.write_file(dir, "bad.conf", text)
        p = kg.keygated("-t", "-c", path)
        short = line if len(line) < 120 else line[:100] + "..."
        kg.eq(p.returncode, 1, "%r: exit status of -t (stdout %r, stderr "
              "%r)" % (short, p.stdout, p.stderr))
        want = "%s:%d: " % (path, lineno)
        kg.check(want in p.stderr, "%r: stderr %r does not name %s" %
                 (short, p.stderr, want))
        kg.check(re.search(message, p.stderr), "%r: stderr %r does not say "
                 "/%s/" % (short, p.stderr, message))
        kg.check("configuration is valid" not in p.stdout,
                 "%r: a bad file reported valid" % short)


def test_config_good():
    """Every new option and URL form, written correctly, is accepted:
    weights 1 and 100, each option, retry_on=off, https URLs together, 62
    servers (as many URLs as a line of 64 words holds)."""
    dir = kg.tempdir()
    lines = [
        "upstream w http://127.0.0.1:9100#weight=3 http://127.0.0.1:9101 "
        "http://127.0.0.1:9102#weight=1 http://127.0.0.1:9103/#weight=100",
        "upstream o %s %s balance=least_conn max_fails=0 fail_timeout=2s "
        "retries=0 retry_on=error,timeout,http_502,http_503,http_504 "
        "max_conns=10 idle_timeout=500ms max_idle=2 connect_timeout=1s "
        "read_timeout=3s" % (U1, U2),
        "upstream r %s %s balance=round_robin retry_on=off retries=63 "
        "max_fails=1000" % (U1, U2),
        "upstream s https://127.0.0.1:9443 https://127.0.0.1:9444#weight=2 "
        "verify=off",
        "upstream many " + " ".join("http://127.0.0.1:%d" % (9000 + i)
                                    for i in range(62)),
        "upstream one http://127.0.0.1:9200 max_fails=3 fail_timeout=1s",
    ]
    path = kg.write_file(dir, "good.conf",
                         base_conf(dir) + "\n".join(lines) + "\n")
    p = kg.keygated("-t", "-c", path)
    kg.eq(p.returncode, 0, "exit status of -t (stderr %r)" % p.stderr)
    kg.check("configuration is valid" in p.stdout,
             "-t output %r lacks 'configuration is valid'" % p.stdout)


@with_upstreams
def test_strip_prefix_and_host():
    """strip_prefix=/api takes the prefix off at a segment boundary only
    (/api/v1/x -> /v1/x, /api -> /, /apix stays), the query kept; host=
    replaces the client's Host, on every server of the pool and on a
    retried request too (the dead first server makes the GET move on)."""
    a, = start_ups("a")
    dead = kg.free_port()
    d = pool([url(dead), url(a)],
             "strip_prefix=/api host=internal.example:8080")
    seen_targets = []
    for target in ("/api/v1/x?q=1", "/api", "/api/", "/apix/y", "/other"):
        r = call(d, target)
        kg.eq(r.status, 200, "GET %s" % target)
        j = r.json()
        hosts = [v for k, v in j["headers"] if k.lower() == "host"]
        kg.eq(hosts, ["internal.example:8080"], "Host of GET %s" % target)
        seen_targets.append(j["target"])
    kg.eq(seen_targets, ["/v1/x?q=1", "/", "/", "/apix/y", "/other"],
          "targets the upstream got")
    kg.check(count(d, r"failed; trying") >= 1,
             "a request was retried on a after the dead server")


TESTS = [
    test_round_robin_two_servers,
    test_round_robin_three_servers,
    test_round_robin_weighted,
    test_least_conn,
    test_least_conn_weights,
    test_round_robin_ignores_busy,
    test_server_killed,
    test_refused_connect_any_request_goes_on,
    test_retries_zero,
    test_recovery_after_fail_timeout,
    test_fail_timeout_window,
    test_lone_server_never_out,
    test_all_servers_out,
    test_retry_on_http_503,
    test_retry_on_503_out_means_out,
    test_retry_on_timeout,
    test_close_before_answer_idempotent_only,
    test_name_with_two_addresses,
    test_idle_timeout,
    test_max_conns,
    test_strip_prefix_and_host,
    test_config_errors,
    test_config_good,
]


if __name__ == "__main__":
    if len(sys.argv) > 1:
        names = sys.argv[1:]
        TESTS = [t for t in TESTS if t.__name__ in names]
    kg.run(TESTS)
