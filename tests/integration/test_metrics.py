"""
Prometheus metrics end to end: GET /metrics on metrics_listen (no token)
and on the admin listener (token), exact counts after a known mix of
requests (per route and status, per refusal reason, per rate-limit window
and subject, per upstream result), histogram counts equal to the requests,
counters that never go back across scrapes, a SIGHUP and a killed worker,
route name= in the access log, no secret and no key id in the output, and
the output valid for promtool when it is installed.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import kgtest as kg

SERIES_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """{(name, ((label, value), ...)): float}; checks HELP/TYPE lines."""
    out, typed, helped = {}, set(), set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        kg.check(line and not line.startswith("#"), "stray line %r" % line)
        m = SERIES_RE.match(line)
        kg.check(m is not None, "unparsable series %r" % line)
        labels = tuple(sorted(LABEL_RE.findall(m.group(3) or "")))
        out[(m.group(1), labels)] = float(m.group(4))
    for (name, _) in out:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        kg.check(name in typed or base in typed, "%s has no # TYPE" % name)
        kg.check(name in helped or base in helped, "%s has no # HELP" % name)
    return out


def val(m, name, **labels):
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(m, base):
    """m minus the scrape base taken before (wait_ready()'s probe "GET /"
    is gateway traffic too)."""
    return {k: v - base.get(k, 0.0) for k, v in m.items()}


def scrape(d, port=None, token=None):
    h = {"Authorization": "Bearer " + token} if token else None
    r = kg.get(port or d.ports[2], "/metrics", headers=h)
    kg.eq(r.status, 200, "GET /metrics (%r)" % r.body[:200])
    kg.eq(r.header("content-type"), "text/plain; version=0.0.4; "
          "charset=utf-8", "Content-Type")
    return r.body.decode(), parse(r.body.decode())


def daemon(workers=2):
    dead = kg.free_port()		# nothing listens there
    return kg.start(kg.config(
        "upstream dead http://127.0.0.1:%d" % dead,
        "route GET ^/pub auth=anonymous name=pub",
        "route GET ^/api auth=api-key name=api",
        "route GET ^/scoped auth=api-key scope=admin name=scoped",
        "route GET ^/lim auth=api-key rate=2/60s name=lim",
        "route GET ^/anon auth=anonymous rate=1/60s",
        "route GET ^/down auth=anonymous upstream=dead name=down",
        workers=workers, admin="{port2}",
        metrics_listen="127.0.0.1:{port3}"), nports=3)


def request_mix(d, secret, secret2):
    """The known mix; returns {(route, code): n}."""
    k = {"X-API-KEY": secret}
    want = {}

    def go(path, code, route, headers=None):
        r = kg.get(d.port, path, headers)
        kg.eq(r.status, code, "GET %s" % path)
        want[(route, code)] = want.get((route, code), 0) + 1
    for _ in range(5):
        go("/pub", 200, "pub")
    for _ in range(3):
        go("/api", 401, "api")				# missing_credentials
    for _ in range(2):
        go("/api", 401, "api", {"X-API-KEY": "live_" + "A" * 32})  # invalid
    go("/api", 200, "api", k)
    go("/scoped", 403, "scoped", k)			# insufficient_scope
    for code in (200, 200, 429, 429):
        go("/lim", code, "lim", {"X-API-KEY": secret2})	# 60s window, key
    for code in (200, 429, 429):
        go("/anon", code, "route5")			# 60s window, address
    go("/nothing", 404, "none")
    go("/down", 502, "down")				# connect_error
    return want


def check_exact(m, want):
    for (route, code), n in want.items():
        kg.eq(val(m, "keygate_requests_total", route=route, code=str(code)),
              n, "keygate_requests_total{route=%s,code=%d}" % (route, code))
    routes = {}
    for (route, code), n in want.items():
        routes[route] = routes.get(route, 0) + n
    for route, n in routes.items():
        kg.eq(val(m, "keygate_request_duration_seconds_count", route=route),
              n, "histogram count of %s" % route)
        kg.eq(val(m, "keygate_request_duration_seconds_bucket", route=route,
                  le="+Inf"), n, "+Inf bucket of %s" % route)
    total = sum(v for (name, _), v in m.items()
                if name == "keygate_requests_total")
    kg.eq(total, sum(want.values()), "requests in all")
    f = "keygate_auth_refusals_total"
    kg.eq(val(m, f, scheme="none", reason="missing_credentials"), 3,
          "missing_credentials")
    kg.eq(val(m, f, scheme="api-key", reason="invalid_credentials"), 2,
          "invalid_credentials")
    kg.eq(val(m, f, scheme="api-key", reason="insufficient_scope"), 1,
          "insufficient_scope")
    kg.eq(sum(v for (n, _), v in m.items() if n == f), 6, "refusals in all")
    f = "keygate_ratelimit_refusals_total"
    kg.eq(val(m, f, window="60s", subject="key"), 2, "429 key/60s")
    kg.eq(val(m, f, window="60s", subject="address"), 2, "429 address/60s")
    kg.eq(sum(v for (n, _), v in m.items() if n == f), 4, "429s in all")
    ups = [(lbl, v) for (n, lbl), v in m.items()
           if n == "keygate_upstream_requests_total" and v > 0]
    kg.eq(len(ups), 1, "upstream series with counts (%r)" % ups)
    lbl = dict(ups[0][0])
    kg.eq((lbl["upstream"], lbl["result"], ups[0][1]),
          ("dead", "connect_error", 1.0), "the dead upstream's attempt")
    kg.check(lbl["server"].startswith("127.0.0.1:"), "server label %r" %
             lbl["server"])


def mixed(d):
    """Two keys, a scrape before, the known mix: (key, secret, base, want)."""
    key, secret = kg.create_key(d, scopes=["read"])
    _, secret2 = kg.create_key(d)
    _, base = scrape(d)
    return key, secret, base, request_mix(d, secret, secret2)


def test_exact_counts():
    d = daemon()
    key, secret, base, want = mixed(d)
    text, m = scrape(d)
    check_exact(delta(m, base), want)
    # Buckets are cumulative and end at +Inf.
    for route in ("pub", "api"):
        last = -1
        for le in ("0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
                   "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
                   "+Inf"):
            v = val(m, "keygate_request_duration_seconds_bucket",
                    route=route, le=le)
            kg.check(v >= last, "bucket %s of %s goes down" % (le, route))
            last = v
    kg.eq(val(m, "keygate_keys"), 2, "keygate_keys")
    kg.check(val(m, "keygate_keys_max") > 0, "keygate_keys_max")
    # Keys that were used have a rate state each (issue 14).
    kg.check(1 <= val(m, "keygate_rate_states") <= 2, "keygate_rate_states")
    kg.check(val(m, "keygate_rate_states_max") > 0, "keygate_rate_states_max")
    kg.eq(val(m, "keygate_rate_table_full_total"), 0, "rate table full")
    kg.eq(val(m, "keygate_workers"), 2, "keygate_workers")
    kg.check(val(m, "keygate_connections_accepted_total") >= 20,
             "connections accepted")
    kg.check(any(n == "keygate_build_info" and v == 1 for (n, _), v in
                 m.items()), "keygate_build_info")
    # The master reads /proc once a second.
    m = kg.wait_for(lambda: (lambda m: m if val(
        m, "process_resident_memory_bytes", process="workers") > 0 else None)(
        scrape(d)[1]), 3, "process figures")
    for who in ("master", "workers"):
        kg.check(val(m, "process_resident_memory_bytes", process=who) > 0,
                 "process_resident_memory_bytes of the %s" % who)
        kg.check(val(m, "process_open_fds", process=who) > 0,
                 "process_open_fds of the %s" % who)
        kg.check(val(m, "process_start_time_seconds", process=who) >
                 time.time() - 3600, "process_start_time of the %s" % who)
    # No secret, no key id, no admin token, anywhere.
    for s in (secret, key["id"], kg.ADMIN_TOKEN):
        kg.check(s not in text, "%s... in the metrics" % s[:8])
    # The access log names the route.
    r = kg.get(d.port, "/pub")
    kg.eq(d.access_by_id(r.header("x-request-id"))["route_name"], "pub",
          "route_name in the access log")
    r = kg.get(d.port, "/anon")
    kg.eq(d.access_by_id(r.header("x-request-id"))["route_name"], "route5",
          "default route name in the access log")
    # promtool, when installed (CI installs it).
    promtool = shutil.which("promtool")
    if promtool is None:
        print("# promtool not found: exposition not checked by promtool "
              "(apt-get install prometheus)")
    else:
        p = subprocess.run([promtool, "check", "metrics"], input=text,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=30)
        kg.eq(p.returncode, 0, "promtool check metrics: %s" % p.stdout)


def test_admin_endpoint():
    d = daemon(workers=1)
    r = kg.get(d.ports[1], "/metrics")
    kg.eq(r.status, 401, "admin /metrics without the token")
    kg.check(b"keygate_" not in r.body, "metrics shown without the token")
    r = kg.get(d.ports[1], "/metrics", {"Authorization": "Bearer wrong"})
    kg.eq(r.status, 401, "admin /metrics with a wrong token")
    _, base = scrape(d)
    kg.get(d.port, "/pub")
    _, m = scrape(d, port=d.ports[1], token=kg.ADMIN_TOKEN)
    m = delta(m, base)
    kg.eq(val(m, "keygate_requests_total", route="pub", code="200"), 1,
          "the admin listener's /metrics")
    # metrics_listen serves /metrics only; admin requests and scrapes are
    # not gateway traffic and count nowhere.
    r = kg.get(d.ports[2], "/v1/keys")
    kg.eq(r.status, 404, "metrics_listen: another path")
    r = kg.request(d.ports[2], "POST", "/metrics", body=b"")
    kg.eq(r.status, 405, "metrics_listen: POST")
    _, m = scrape(d)
    m = delta(m, base)
    kg.eq(sum(v for (n, _), v in m.items() if n == "keygate_requests_total"),
          1, "only the gateway request counted (%r)" % [
              (k, v) for k, v in m.items() if k[0] == "keygate_requests_total"
              and v > 0])


def test_connection_gauges():
    d = daemon(workers=1)
    with kg.Conn(d.port) as idle, kg.Conn(d.port) as reading:
        idle.send(kg.raw_request("GET", "/pub"))
        kg.eq(idle.read_response().status, 200, "GET /pub")
        reading.send(b"GET /pub HTTP/1.1\r\nHost: x\r\n")	# head cut
        time.sleep(0.2)
        _, m = scrape(d)
        kg.eq(val(m, "keygate_connections", state="idle"), 1, "idle")
        # The scrape is answered while its own head is being handled.
        kg.eq(val(m, "keygate_connections", state="reading"), 2,
              "reading (the cut head and the scrape)")
        kg.eq(val(m, "keygate_connections", state="writing"), 0, "writing")
    kg.wait_for(lambda: [val(scrape(d)[1], "keygate_connections", state=s)
                         for s in ("idle", "reading", "writing")] ==
                [0, 1, 0], 3, "gauges back to the scrape alone once the "
                "connections closed")


def counters(m):
    """The counter series (and histogram buckets/counts) of m."""
    return {k: v for k, v in m.items()
            if k[0].endswith("_total") or k[0].endswith("_bucket") or
            k[0].endswith("_count")}


def check_monotonic(a, b, what):
    for k, v in counters(a).items():
        if k[0] == "process_cpu_seconds_total":
            continue	# /proc ticks vs wait4 µs; checked loosely below
        kg.check(b.get(k, 0.0) >= v, "%s: %s %r went from %s to %s" %
                 (what, k[0], k[1], v, b.get(k)))


def test_monotonic_across_reload_and_kill():
    d = daemon()
    _, _, base, want = mixed(d)
    _, m1 = scrape(d)
    check_exact(delta(m1, base), want)
    kg.eq(val(m1, "keygate_config_reloads_total", result="success"), 0,
          "no reload yet")
    # SIGHUP: new workers, the counts carry on.
    old = d.wait_workers(2)
    d.signal(signal.SIGHUP)
    d.wait_workers(2, exclude=old)
    kg.wait_for(lambda: val(scrape(d)[1], "keygate_config_reloads_total",
                            result="success") == 1, 5, "reload counted")
    _, m2 = scrape(d)
    check_monotonic(m1, m2, "after SIGHUP")
    check_exact(delta(m2, base), want)
    kg.check(val(m2, "keygate_config_last_reload_success_timestamp_seconds")
             >= val(m1, "keygate_config_last_reload_success_timestamp_seconds"),
             "last reload time")
    # A bad file is refused and counted.
    good = d.template
    d.write_conf(good + "route GET ^/x auth=nonsense\n")
    d.signal(signal.SIGHUP)
    kg.wait_for(lambda: val(scrape(d)[1], "keygate_config_reloads_total",
                            result="failure") == 1, 5, "failed reload counted")
    d.write_conf(good)
    # More traffic on the new workers, then one of them is killed.
    for _ in range(4):
        kg.eq(kg.get(d.port, "/pub").status, 200, "GET /pub")
    want[("pub", 200)] += 4
    _, m3 = scrape(d)
    d.allow_worker_deaths = True
    pids = d.wait_workers(2)
    os.kill(pids[0], signal.SIGKILL)
    d.wait_workers(2, exclude=[pids[0]])
    kg.wait_for(lambda: val(scrape(d)[1], "keygate_worker_restarts_total")
                == 1, 5, "the restart counted")
    _, m4 = scrape(d)
    check_monotonic(m3, m4, "after a killed worker")
    check_exact(delta(m4, base), want)
    kg.wait_for(lambda: val(scrape(d)[1], "process_cpu_seconds_total",
                            process="workers") > 0, 3, "workers' CPU time")
    # Scrapes in a row never go back either.
    prev = m4
    for i in range(5):
        kg.get(d.port, "/pub")
        _, cur = scrape(d)
        check_monotonic(prev, cur, "scrape %d" % i)
        prev = cur


def test_config_errors():
    dir = kg.tempdir()
    cases = [
        ("route GET ^/a auth=anonymous name=a b",
         'unknown route option "b"'),
        ("route GET ^/a auth=anonymous name=x/y", 'invalid route name "x/y"'),
        ("route GET ^/a auth=anonymous name=none",
         'route name "none" is reserved'),
        ("route GET ^/a auth=anonymous name=a\nroute GET ^/b auth=anonymous "
         "name=a", 'duplicate route name "a" (first at line'),
        ("route GET ^/a auth=anonymous name=route2\nroute GET ^/b "
         "auth=anonymous", 'route name "route2" of line'),
        ("metrics_listen 127.0.0.1:{port}", "metrics_listen 127.0.0.1:"),
        ("metrics_listen nowhere", '"metrics_listen": invalid address'),
    ]
    for lines, msg in cases:
        port = kg.free_port()
        path = os.path.join(dir, "bad.conf")
        with open(path, "w") as f:
            f.write(kg.fill(kg.config(lines), dir, [port]))
        p = kg.keygated("-t", "-c", path)
        kg.check(p.returncode != 0, "keygated -t accepted %r" % lines)
        kg.check(msg in p.stderr, "%r: expected %r in %r" % (lines, msg,
                                                              p.stderr))
        kg.check(re.search(r"bad\.conf:\d+: ", p.stderr) is not None,
                 "FILE:LINE in %r" % p.stderr)


TESTS = [
    test_exact_counts,
    test_admin_endpoint,
    test_connection_gauges,
    test_monotonic_across_reload_and_kill,
    test_config_errors,
]


if __name__ == "__main__":
    if len(sys.argv) > 1:
        names = sys.argv[1:]
        TESTS = [t for t in TESTS if t.__name__ in names]
    kg.run(TESTS)
