"""
Configuration reload (SIGHUP): no client notices it under load; a bad file
is refused with FILE:LINE and the running configuration keeps serving; a
good one brings new routes, new workers (old ones leave), a new worker
count and new listeners.
"""

import os
import re
import signal
import threading
import time

import kgtest as kg

ECHO = "route GET,POST ^/echo(/|$) auth=anonymous"

LOAD_SECONDS = 5.0		# how long the load runs
LOAD_MAX_REQUESTS = 200000	# per thread, whatever the time
HUPS = 5
HUP_SPACING = 0.7


class Stats:
    def __init__(self, name):
        self.name = name
        self.ok = 0
        self.refused = 0
        self.retries = 0
        self.failures = []
        self.statuses = {}
        self.last = 0.0			# monotonic time of the last answer

    def fail(self, what):
        if len(self.failures) < 20:
            self.failures.append(what)
        else:
            self.failures.append(None)		# counted, not kept

    def status(self, r, n):
        self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
        self.last = time.monotonic()
        if r.status == 200:
            self.ok += 1
        else:
            self.fail("request %d: status %d %r" % (n, r.status, r.body[:100]))


def new_connection_client(port, st, stop, deadline):
    """One request per connection (Connection: close)."""
    n = 0
    while not stop.is_set() and n < LOAD_MAX_REQUESTS and \
            time.monotonic() < deadline:
        n += 1
        try:
            with kg.Conn(port) as c:
                c.send(kg.raw_request("GET", "/echo/n%d" % n, headers=[
                    ("Connection", "close")]))
                r = c.read_response()
            st.status(r, n)
        except ConnectionRefusedError:
            st.refused += 1
            st.fail("request %d: connection refused" % n)
        except Exception as e:
            st.fail("request %d: %s: %s" % (n, type(e).__name__, e))


def keepalive_client(port, st, stop, deadline):
    """
    Requests on a kept-alive connection, with the standard client rule
    (RFC 9112 9.3.1): a GET on a reused connection that fails before any
    byte of the response arrived is retried once on a new connection.
    Anything else is a failure.
    """
    conn, reused, n = None, False, 0
    try:
        while not stop.is_set() and n < LOAD_MAX_REQUESTS and \
                time.monotonic() < deadline:
            n += 1
            for attempt in (0, 1):
                if conn is None:
                    try:
                        conn = kg.Conn(port)
                    except ConnectionRefusedError:
                        st.refused += 1
                        st.fail("request %d: connection refused" % n)
                        break
                    except Exception as e:
                        st.fail("request %d: connect: %s: %s" %
                                (n, type(e).__name__, e))
                        break
                    reused = False
                try:
                    conn.send(kg.raw_request("GET", "/echo/k%d" % n))
                    r = conn.read_response()
                except (kg.NoResponse, BrokenPipeError,
                        ConnectionResetError) as e:
                    conn.close()
                    conn = None
                    if reused and attempt == 0:
                        st.retries += 1
                        continue
                    st.fail("request %d: %s on a %s connection: %s" % (
                        n, type(e).__name__, "reused" if reused else "new",
                        e))
                    break
                except Exception as e:
                    conn.close()
                    conn = None
                    st.fail("request %d: %s: %s" % (n, type(e).__name__, e))
                    break
                reused = True
                st.status(r, n)
                if r.closes():
                    conn.close()
                    conn = None
                break
    finally:
        if conn is not None:
            conn.close()


def test_reload_under_load():
    routes = [ECHO]
    d = kg.start(kg.config(*routes, workers=2, access_log=False))
    first = d.wait_workers(2)
    stop = threading.Event()
    t0 = time.monotonic()
    deadline = t0 + LOAD_SECONDS
    stats, threads = [], []
    last_hup = None
    for kind, fn in (("new-connection", new_connection_client),
                     ("keep-alive", keepalive_client)):
        for i in range(2):
            st = Stats("%s #%d" % (kind, i + 1))
            t = threading.Thread(target=fn, args=(d.port, st, stop, deadline),
                                 daemon=True)
            stats.append(st)
            threads.append(t)
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)
        for k in range(HUPS):
            # Each reload brings a route of its own, to be sure it applied.
            routes.append("route GET ^/gen%d$ auth=anonymous" % (k + 1))
            d.write_conf(kg.config(*routes, workers=2, access_log=False))
            d.signal(signal.SIGHUP)
            last_hup = time.monotonic()
            time.sleep(HUP_SPACING)
    finally:
        # Let the load run its course (bounded), then stop it.
        while time.monotonic() < deadline and any(t.is_alive()
                                                  for t in threads):
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join(10)
    kg.check(not any(t.is_alive() for t in threads),
             "a client thread did not finish")
    for st in stats:
        print("# %-18s ok %5d  failed %d  refused %d  retries %d  statuses %s"
              % (st.name, st.ok, len(st.failures), st.refused, st.retries,
                 st.statuses))
    failures = ["%s: %s" % (st.name, f) for st in stats
                for f in st.failures if f is not None]
    nfail = sum(len(st.failures) for st in stats)
    kg.check(nfail == 0, "%d request(s) failed across the reloads; first "
             "ones:\n%s" % (nfail, "\n".join(failures[:10])))
    kg.eq(sum(st.refused for st in stats), 0, "connections refused")
    for st in stats:
        kg.check(st.ok >= 20, "%s did only %d requests: no real load" %
                 (st.name, st.ok))
        kg.eq(list(st.statuses), [200], "%s statuses" % st.name)
        kg.check(st.last > last_hup, "%s stopped before the last reload" %
                 st.name)
    # Every reload applied, and the workers are of the last generation.
    kg.eq(len(re.findall(r"configuration reloaded", d.errlog_text())), HUPS,
          "'configuration reloaded' log lines")
    d.wait_workers(2, exclude=first)
    kg.wait_for(lambda: kg.get(d.port, "/gen%d" % HUPS).status == 200, 5,
                "the route of the last reload to serve")


def test_reload_bad_config_keeps_serving():
    d = kg.start(kg.config(ECHO, workers=2))
    before = d.wait_workers(2)
    text = kg.config(ECHO, "route GET ^/new$ auth=anonymous", workers=2) + \
        "\n# broken:\nbogus_directive 1\n"
    lineno = text.count("\n")
    d.write_conf(text)
    d.signal(signal.SIGHUP)
    d.wait_log(r"reload failed.*%s:%d: unknown directive \"bogus_directive\"" %
               (re.escape(d.conf_path), lineno),
               what="'reload failed' with FILE:LINE in the error log")
    time.sleep(0.3)
    kg.eq(d.worker_pids(), before, "workers after a failed reload")
    kg.check_echo(kg.get(d.port, "/echo/still"), "GET", "/echo/still",
                  what="the old route after a failed reload")
    kg.check_refusal(kg.get(d.port, "/new"), 404, "no_route",
                     "route of the refused file")
    kg.check(d.master_alive(), "master died on a bad reload")


def test_reload_fixed_config_new_route():
    d = kg.start(kg.config("route GET ^/old$ auth=anonymous", workers=2))
    before = d.wait_workers(2)
    kg.check_refusal(kg.get(d.port, "/new"), 404, "no_route", "before")
    # First a broken file (bad regex), then the fixed one.
    bad = kg.config("route GET ^/old$ auth=anonymous",
                    "route GET ^/new($ auth=anonymous", workers=2)
    d.write_conf(bad)
    d.signal(signal.SIGHUP)
    d.wait_log(r"reload failed.*%s:%d: bad regex" %
               (re.escape(d.conf_path), bad.count("\n")))
    kg.eq(d.worker_pids(), before, "workers after the bad reload")
    d.write_conf(kg.config("route GET ^/old$ auth=anonymous",
                           "route GET ^/new$ auth=anonymous", workers=2))
    d.signal(signal.SIGHUP)
    d.wait_log(r"configuration reloaded")
    # Until the old workers have seen their SIGTERM they may still take a
    # connection (as nginx's do); once they are gone only the new serve.
    after = d.wait_workers(2, exclude=before)
    kg.wait_for(lambda: not any(kg.proc_alive(p) for p in before), 5,
                "the old workers %s to exit" % before)
    for i in range(10):
        kg.check_echo(kg.get(d.port, "/new"), "GET", "/new",
                      what="new route, request %d" % i)
    kg.check_echo(kg.get(d.port, "/old"), "GET", "/old", what="old route")
    time.sleep(0.3)
    kg.eq(d.worker_pids(), after, "workers 0.3 s after the reload")


def test_reload_workers_1_to_3():
    d = kg.start(kg.config(ECHO, workers=1))
    before = d.wait_workers(1)
    d.write_conf(kg.config(ECHO, workers=3))
    d.signal(signal.SIGHUP)
    after = d.wait_workers(3, exclude=before)
    time.sleep(0.3)
    kg.eq(d.worker_pids(), after, "workers 0.3 s after the reload")
    for i in range(6):
        kg.check_echo(kg.get(d.port, "/echo/%d" % i), "GET", "/echo/%d" % i)


def test_reload_adds_listen_address():
    d = kg.start(kg.config(ECHO, workers=2), nports=2)
    port2 = d.ports[1]
    try:
        kg.Conn(port2).close()
        raise AssertionError("port %d listens before it is configured" %
                             port2)
    except ConnectionRefusedError:
        pass
    d.write_conf(kg.config(ECHO, workers=2, listen=("127.0.0.1:{port}",
                                                    "127.0.0.1:{port2}")))
    d.signal(signal.SIGHUP)
    d.wait_ready(port=port2, timeout=5)
    kg.check_echo(kg.get(port2, "/echo/two"), "GET", "/echo/two",
                  what="the added address")
    kg.check_echo(kg.get(d.port, "/echo/one"), "GET", "/echo/one",
                  what="the first address")


def refused(port):
    """Is a connection to 127.0.0.1:port refused?"""
    try:
        kg.Conn(port, timeout=1.0).close()
        return False
    except ConnectionRefusedError:
        return True


def test_reload_removes_listen_address():
    """A listen address dropped by a reload is closed for good once the
    reload is done (connections are refused, not queued), and a later
    reload can bind it again."""
    two = ("127.0.0.1:{port}", "127.0.0.1:{port2}")
    d = kg.start(kg.config(ECHO, workers=2, listen=two), nports=2)
    port2 = d.ports[1]
    d.wait_ready(port=port2, timeout=5)
    before = d.wait_workers(2)
    d.write_conf(kg.config(ECHO, workers=2))
    d.signal(signal.SIGHUP)
    d.wait_log(r"configuration reloaded")
    d.wait_workers(2, exclude=before, timeout=10)
    kg.wait_for(lambda: refused(port2), 5,
                "port %d to refuse connections after its removal" % port2)
    kg.check_echo(kg.get(d.port, "/echo/kept"), "GET", "/echo/kept",
                  what="the address kept")
    # Added back: the reload binds it again and serves on it.
    mark = len(d.errlog_text())
    d.write_conf(kg.config(ECHO, workers=2, listen=two))
    d.signal(signal.SIGHUP)
    kg.wait_for(lambda: "configuration reloaded" in d.errlog_text()[mark:] or
                "reload failed" in d.errlog_text()[mark:], 10,
                "the second reload to finish")
    kg.check("reload failed" not in d.errlog_text()[mark:],
             "re-adding the address failed: %s" % d.errlog_tail(3))
    d.wait_ready(port=port2, timeout=5)
    kg.check_echo(kg.get(port2, "/echo/back"), "GET", "/echo/back",
                  what="the address added back")


def test_reload_missing_log_dir_refused():
    d = kg.start(kg.config(ECHO, workers=2))
    before = d.wait_workers(2)
    d.write_conf(kg.config(ECHO, "route GET ^/new$ auth=anonymous",
                           workers=2).replace(
        "access_log {dir}/access.log",
        "access_log {dir}/no/such/dir/access.log"))
    d.signal(signal.SIGHUP)
    d.wait_log(r"reload failed, keeping the running configuration: cannot "
               r"create .*/no/such/dir/access\.log")
    kg.eq(d.worker_pids(), before, "workers after the refused reload")
    kg.check_refusal(kg.get(d.port, "/new"), 404, "no_route",
                     "route of the refused file")


def test_reload_workers_that_cannot_start_roll_back():
    """
    New workers that die before serving (here: as "nobody" they cannot
    reach an access log in a root-only directory) undo the reload; the old
    workers never stop.
    """
    if os.geteuid() != 0:
        kg.skip("not running as root")
    d = kg.start(kg.config(ECHO, workers=2))
    before = d.wait_workers(2)
    d.allow_worker_deaths = True
    private = os.path.join(d.dir, "private")
    os.mkdir(private, 0o700)
    d.write_conf(kg.config(ECHO, "route GET ^/new$ auth=anonymous", workers=2,
                           user="nobody").replace(
        "access_log {dir}/access.log",
        "access_log {dir}/private/access.log"))
    d.signal(signal.SIGHUP)
    d.wait_log(r"reload failed, keeping the running configuration: a new "
               r"worker exited before it was ready")
    kg.wait_for(lambda: d.worker_pids() == before, 5,
                "only the old workers %s to remain" % before)
    for i in range(5):
        kg.check_echo(kg.get(d.port, "/echo/%d" % i), "GET", "/echo/%d" % i,
                      what="old configuration after the rollback")
    kg.check_refusal(kg.get(d.port, "/new"), 404, "no_route",
                     "route of the rolled-back file")
    kg.check("configuration reloaded" not in d.errlog_text(),
             "the failed reload was reported as done")
    # A good file afterwards reloads normally.
    d.write_conf(kg.config(ECHO, "route GET ^/new$ auth=anonymous", workers=2))
    d.signal(signal.SIGHUP)
    d.wait_log(r"configuration reloaded")
    kg.wait_for(lambda: kg.get(d.port, "/new").status == 200, 5,
                "the new route after a good reload")


TESTS = [
    test_reload_under_load,
    test_reload_bad_config_keeps_serving,
    test_reload_fixed_config_new_route,
    test_reload_workers_1_to_3,
    test_reload_adds_listen_address,
    test_reload_removes_listen_address,
    test_reload_missing_log_dir_refused,
    test_reload_workers_that_cannot_start_roll_back,
]

if __name__ == "__main__":
    kg.run(TESTS)
