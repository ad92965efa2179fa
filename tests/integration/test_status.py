"""
GET /v1/status and keygatectl status/top against the real daemon: two
workers, routes to an echo upstream (upstream.py) and to a port where
nothing listens, a known mix of requests (answered, refused without a key,
rate-limited, failed upstream), then the figures: version, workers running
as configured, the key count, the last minute (requests, refusals, 429s,
5xx, rates) once the master has taken its samples, connections accepted,
each upstream's state and counts, a reload counted after SIGHUP, 401 without
the token.  keygatectl status shows the same figures; keygatectl top -n 2
prints two frames and exits 0, without escapes through a pipe, and on a
terminal restores the cursor and attributes when interrupted.
"""

import datetime
import json
import os
import pty
import re
import select
import signal
import sys
import time

import kgtest as kg
import upstream as U

# The master samples the totals once a second; the last minute is the
# difference of two samples, so it shows a request within about 2 s.
SAMPLE_WAIT = 3.0

# What request_mix() sends, by kind.
N_PUB = 4		# /pub: 200 through the api upstream
N_MISSING = 3		# /api without a key: 401 missing_credentials
N_KEYED = 3		# /api with the key, rate=2/60s: 200, 200, 429
N_DOWN = 2		# /down: 502, nothing listens (connect_error)
N_ALL = N_PUB + N_MISSING + N_KEYED + N_DOWN


def ctl_env(d):
    return kg.ctl_env("http://127.0.0.1:%d" % d.admin_port, kg.ADMIN_TOKEN)


def ctl(d, *args):
    """keygatectl ARGS against d; never the token, never a sanitizer."""
    return kg.ctl_run(args, ctl_env(d))


def ok(p, what):
    kg.eq(p.returncode, 0, "%s: exit status (stderr %r)" % (what, p.stderr))
    return p.stdout


def daemon(up):
    dead = kg.free_port()		# nothing listens there
    return kg.start(kg.config(
        "upstream api %s" % up.url,
        "upstream dead http://127.0.0.1:%d" % dead,
        "route GET ^/pub auth=anonymous upstream=api name=pub",
        "route GET ^/api auth=api-key rate=2/60s upstream=api name=api",
        "route GET ^/down auth=anonymous upstream=dead name=down",
        workers=2, admin="{port2}", upstream=False), nports=2)


def status(d):
    r = kg.admin(d, "GET", "/v1/status")
    kg.eq(r.status, 200, "GET /v1/status (%r)" % r.body[:200])
    kg.eq(r.header("content-type"), "application/json", "Content-Type")
    return r.json()


def request_mix(d, secret):
    def go(path, code, headers=None):
        r = kg.get(d.port, path, headers)
        kg.eq(r.status, code, "GET %s (%r)" % (path, r.body[:200]))
    for _ in range(N_PUB):
        go("/pub", 200)
    for _ in range(N_MISSING):
        go("/api", 401)
    for code in (200, 200, 429):
        go("/api", code, {"X-API-KEY": secret})
    for _ in range(N_DOWN):
        go("/down", 502)


def upstream_of(st, name):
    for u in st["upstreams"]:
        if u["name"] == name:
            return u
    raise AssertionError("no upstream %r in %r" % (name, st["upstreams"]))


def settled(d):
    """
    The daemon after request_mix(), once the last minute holds all of it.
    The mix is sent only after two samples were taken (seconds > 0), so
    the oldest sample of the minute precedes every request of the mix.
    """
    kg.wait_for(lambda: status(d)["last_minute"]["seconds"] > 0,
                SAMPLE_WAIT, "a last minute in /v1/status")
    _, secret = kg.create_key(d, owner="status")
    request_mix(d, secret)
    last = {}

    def counted():
        last["st"] = st = status(d)
        m = st["last_minute"]
        return (m["requests"] >= N_ALL and m["refused"] >= N_MISSING and
                m["rate_limited"] >= 1 and m["errors"] >= N_DOWN and
                upstream_of(st, "dead")["last_minute"]["failed"] >= N_DOWN)
    try:
        kg.wait_for(counted, SAMPLE_WAIT, "the requests in the last minute")
    except Exception:
        raise AssertionError("last minute after %d requests: %r" %
                             (N_ALL, last.get("st")))
    return last["st"]


def check_document(st, d):
    kg.eq(st["version"], os.environ.get("KEYGATE_VERSION", st["version"]),
          "version")
    started = datetime.datetime.strptime(st["started_at"],
                                         "%Y-%m-%dT%H:%M:%S.%fZ")
    age = (datetime.datetime.utcnow() - started).total_seconds()
    kg.check(-2 <= age <= 120, "started_at %s is not now" % st["started_at"])
    kg.check(0 <= st["uptime_seconds"] <= 120, "uptime %r" %
             st["uptime_seconds"])
    kg.eq(st["workers"], {"configured": 2, "running": 2, "restarts": 0},
          "workers")
    kg.eq(st["keys"]["count"], 1, "keys.count")
    kg.check(st["keys"]["max"] >= 1, "keys.max %r" % st["keys"]["max"])
    kg.check(st["connections"]["accepted"] >= N_ALL, "accepted %r" %
             st["connections"])
    m = st["last_minute"]
    kg.check(1 <= m["seconds"] <= 60, "last_minute.seconds %r" % m)
    for name in ("requests", "refused", "rate_limited", "errors"):
        want = m[name] / m["seconds"]
        kg.check(abs(m[name + "_per_second"] - want) < 1e-9,
                 "%s_per_second %r, expected %r" % (name,
                                                    m[name + "_per_second"],
                                                    want))
    kg.check(m["refused"] < m["requests"], "refused counted as requests")
    api = upstream_of(st, "api")
    kg.eq(api["state"], "up", "state of api")
    kg.check(api["last_minute"]["ok"] >= N_PUB + 2 and
             api["last_minute"]["failed"] == 0, "api last minute %r" % api)
    kg.check(api["requests"] >= N_PUB + 2 and api["failures"] == 0,
             "api totals %r" % api)
    dead = upstream_of(st, "dead")
    kg.eq(dead["state"], "down", "state of dead")
    kg.eq(dead["last_minute"], {"ok": 0, "failed": N_DOWN},
          "dead last minute")
    kg.eq((dead["requests"], dead["failures"]), (N_DOWN, N_DOWN),
          "dead totals")
    kg.check(re.match(r"^127\.0\.0\.1:\d+$", dead["server"]) is not None,
             "server %r" % dead["server"])
    kg.check(all(u["name"] != "other" for u in st["upstreams"]),
             "\"other\" shown without counts")


def test_status_endpoint():
    up = U.Upstream(name="api")
    try:
        d = daemon(up)
        st = settled(d)
        check_document(st, d)
        kg.eq(st["reloads"]["succeeded"], 0, "reloads before SIGHUP")
        # Without the token, or with a wrong one: 401, nothing shown.
        for tok in (None, "wrong-" + kg.ADMIN_TOKEN):
            r = kg.admin(d, "GET", "/v1/status", token=tok)
            kg.check_refusal(r, 401, "unauthorized", "status, token %r" %
                             (tok is not None))
            kg.check(b"workers" not in r.body, "401 body %r" % r.body)
        r = kg.admin(d, "POST", "/v1/status", {})
        kg.check_refusal(r, 405, "method_not_allowed", "POST /v1/status")
        # A reload counts.
        d.signal(signal.SIGHUP)
        kg.wait_for(lambda: status(d)["reloads"]["succeeded"] == 1, 5.0,
                    "the reload in /v1/status")
        st2 = status(d)
        kg.eq(st2["reloads"]["failed"], 0, "failed reloads")
        kg.check(st2["reloads"]["last_success_at"] >= st["started_at"],
                 "last_success_at %r" % st2["reloads"])
    finally:
        up.stop()


def test_keygatectl_status_and_top():
    up = U.Upstream(name="api")
    try:
        d = daemon(up)
        settled(d)
        out = ok(ctl(d, "status"), "keygatectl status")
        st = status(d)
        kg.check(re.search(r"^workers: +2 running of 2 configured, "
                           r"0 restarts$", out, re.M) is not None,
                 "workers line in %r" % out)
        kg.check(re.search(r"^keys: +1 of %d$" % st["keys"]["max"], out,
                           re.M) is not None, "keys line in %r" % out)
        kg.check(re.search(r"^version: +%s$" % re.escape(st["version"]),
                           out, re.M) is not None, "version in %r" % out)
        m = re.search(r"^  requests: +(\d+) \((\d+\.\d\d)/s\)$", out, re.M)
        kg.check(m is not None and int(m.group(1)) >= N_ALL,
                 "requests line in %r" % out)
        m = re.search(r"^  refused: +(\d+) ", out, re.M)
        kg.check(m is not None and int(m.group(1)) >= N_MISSING,
                 "refused line in %r" % out)
        m = re.search(r"^  rate_limited: +(\d+) ", out, re.M)
        kg.check(m is not None and int(m.group(1)) >= 1,
                 "rate_limited line in %r" % out)
        kg.check(re.search(r"^UPSTREAM +SERVER +STATE +OK/MIN +FAILED/MIN "
                           r"+REQUESTS +FAILURES$", out, re.M) is not None,
                 "upstream table head in %r" % out)
        kg.check(re.search(r"^api +127\.0\.0\.1:%d +up +\d+ +0 +\d+ +0$" %
                           up.port, out, re.M) is not None,
                 "api row in %r" % out)
        kg.check(re.search(r"^dead +127\.0\.0\.1:\d+ +down +0 +%d +%d +%d$"
                           % (N_DOWN, N_DOWN, N_DOWN), out, re.M)
                 is not None, "dead row in %r" % out)
        j = json.loads(ok(ctl(d, "status", "--json"), "status --json"))
        kg.eq(sorted(j), sorted(st), "members of status --json")
        kg.eq(j["workers"], st["workers"], "workers of status --json")
        # top through a pipe: two frames, no escape, exit 0.
        t0 = time.monotonic()
        out = ok(ctl(d, "top", "-n", "2", "-d", "0.3"), "top -n 2")
        kg.check(time.monotonic() - t0 >= 0.3, "top did not wait -d")
        kg.eq(len(re.findall(r"^keygate at http://127\.0\.0\.1:%d, " %
                             d.admin_port, out, re.M)), 2, "frames of top")
        kg.eq(len(re.findall(r"^workers: +2 running of 2 configured",
                             out, re.M)), 2, "status in each frame")
        kg.check("\x1b" not in out, "escapes through a pipe: %r" % out)
        lines = ok(ctl(d, "--json", "top", "-n", "3", "-d", "0.1"),
                   "top --json").splitlines()
        kg.eq(len(lines), 3, "JSON lines of top --json")
        kg.eq(json.loads(lines[2])["workers"]["running"], 2, "a JSON frame")
        p = ctl(d, "top", "-n", "0")
        kg.eq(p.returncode, 2, "top -n 0 (%r)" % p.stderr)
        p = ctl(d, "top", "-d", "0")
        kg.eq(p.returncode, 2, "top -d 0 (%r)" % p.stderr)
    finally:
        up.stop()


def top_on_a_terminal(d, sig):
    """keygatectl top on a pty until sig; (exit status, output)."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execve(kg.ctl_binary(), ["keygatectl", "top", "-d", "0.2"],
                      ctl_env(d))
        finally:
            os._exit(127)
    out = b""
    try:
        deadline = time.monotonic() + 10
        while out.count(b"\x1b[H\x1b[2J") < 2:
            kg.check(time.monotonic() < deadline, "top drew %r" % out)
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                out += os.read(fd, 65536)
        os.kill(pid, sig)
        while True:
            r, _, _ = select.select([fd], [], [], 5)
            kg.check(bool(r), "top still running after signal %d" % sig)
            try:
                b = os.read(fd, 65536)
            except OSError:		# EIO: the child side is closed
                break
            if not b:
                break
            out += b
        _, st = os.waitpid(pid, 0)
    finally:
        os.close(fd)
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    return st, out.decode(errors="replace")


def test_top_terminal():
    d = kg.start(kg.config("route * .* auth=deny", admin="{port2}"),
                 nports=2)
    for sig in (signal.SIGINT, signal.SIGTERM):
        st, out = top_on_a_terminal(d, sig)
        kg.check(os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0,
                 "top after signal %d: wait status %r" % (sig, st))
        kg.check(out.startswith("\x1b[?25l"), "cursor hidden first: %r" %
                 out[:40])
        kg.check(out.endswith("\x1b[0m\x1b[?25h"), "terminal restored "
                 "last: %r" % out[-80:])
        kg.check("\x1b[1mkeygate at " in out, "bold heading: %r" % out[:200])
        kg.check(kg.ADMIN_TOKEN not in out, "token on the terminal")


TESTS = [
    test_status_endpoint,
    test_keygatectl_status_and_top,
    test_top_terminal,
]


if __name__ == "__main__":
    if len(sys.argv) > 1:
        names = sys.argv[1:]
        TESTS = [t for t in TESTS if t.__name__ in names]
    kg.run(TESTS)
