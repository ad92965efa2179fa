"""
What a client, or many, can make a worker hold, and what happens at the
limits: descriptors (accept(2) failing with EMFILE must not spin the loop
nor flood the log; RLIMIT_NOFILE raised for max_connections), connection
slots (idle keep-alive connections make room for new clients at
max_connections), memory (pipelined input behind a pending response is
read only so far), time (a request body has body_deadline as a whole), and
chunked bodies that arrive all at once in many pieces.
"""

import hashlib
import json
import os
import re
import resource
import select
import socket
import subprocess
import sys
import threading
import time

import kgtest as kg
import upstream as U

MiB = 1 << 20


with_upstreams = U.with_upstreams


def proxy_conf(up, **settings):
    """/echo... to the built-in echo upstream, the rest to up."""
    return kg.config("upstream api %s read_timeout=10s" % up.url,
                     "route * ^/echo(/|$) upstream=echo auth=anonymous",
                     "route * ^/ upstream=api auth=anonymous", **settings)


class NofileDaemon(kg.Daemon):
    """A daemon started with RLIMIT_NOFILE set to (soft, hard)."""

    def __init__(self, template, nofile):
        self.nofile = nofile
        kg.Daemon.__init__(self, template)

    def _launch(self):
        real = subprocess.Popen
        lim = self.nofile

        def popen(*args, **kw):
            kw["preexec_fn"] = lambda: resource.setrlimit(
                resource.RLIMIT_NOFILE, lim)
            return real(*args, **kw)
        kg.subprocess.Popen = popen
        try:
            kg.Daemon._launch(self)
        finally:
            kg.subprocess.Popen = real


def start_nofile(template, nofile):
    d = NofileDaemon(template, nofile)
    kg.use(d)
    return d.start()


def nofile_of(pid):
    """(soft, hard) 'Max open files' of pid."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                w = line.split()
                return int(w[3]), int(w[4])
    raise AssertionError("no Max open files in /proc/%d/limits" % pid)


def cpu_ticks(pid):
    st = kg.proc_stat(pid)
    kg.check(st is not None, "process %d is gone" % pid)
    return st[2]


def served(port, what):
    r = kg.request(port, "GET", "/echo/ping")
    kg.check_echo(r, "GET", "/echo/ping", what=what)


# === 10: descriptors ========================================================

def test_nofile_raised_for_max_connections():
    # Soft limit 256, hard 4096: max_connections 1000 needs about 2000
    # descriptors (client + upstream each), which the hard limit allows.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 4096 and os.geteuid() != 0:
        kg.skip("the hard descriptor limit here is %d" % hard)
    d = start_nofile(kg.config("route * ^/ auth=anonymous", workers=1,
                               max_connections=1000), (256, 4096))
    w = d.wait_workers(1)[0]
    soft, hard = nofile_of(w)
    kg.check(2000 < soft <= hard, "worker's RLIMIT_NOFILE is %d/%d for "
             "max_connections 1000" % (soft, hard))


def test_emfile_pauses_accepting():
    # A hard limit of 64 descriptors, far below what max_connections asks
    # (which cannot be had even as root: past fs.nr_open), so the worker
    # runs out of descriptors after a few dozen connections.
    d = start_nofile(kg.config("route * ^/ auth=anonymous", workers=1,
                               max_connections=1000000), (64, 64))
    w = d.wait_workers(1)[0]
    conns = []
    try:
        for i in range(120):	# the rest wait in the listen queue
            conns.append(kg.Conn(d.port))
        d.wait_log(r"accept: Too many open files", what="EMFILE logged")
        t0 = time.monotonic()
        cpu0 = cpu_ticks(w)
        log0 = len(d.errlog_text())
        time.sleep(2.0)
        dt = time.monotonic() - t0
        used = (cpu_ticks(w) - cpu0) / float(os.sysconf("SC_CLK_TCK"))
        grew = d.errlog_text()[log0:]
        kg.check(used < 0.25 * dt, "the worker used %.2f s of CPU in %.2f s "
                 "out of descriptors" % (used, dt))
        n = len(re.findall(r"accept:", grew))
        kg.check(n <= 4 and len(grew) < 4096, "%d accept errors logged "
                 "(%d bytes) in %.1f s: %r" % (n, len(grew), dt, grew[:300]))
        # Connections it did accept are served meanwhile.
        conns[0].send(kg.raw_request("GET", "/first"))
        kg.check_echo(conns[0].read_response(), "GET", "/first",
                      what="an accepted connection while out of "
                      "descriptors")
    finally:
        for c in conns:
            c.close()
    # Descriptors come back: accepting resumes, queued ones included.
    kg.wait_for(lambda: _try_get(d.port), 5, "service to resume")
    served(d.port, "after the connections closed")
    d.wait_log(r"needs \d+ descriptors per worker but the descriptor limit "
               r"\(RLIMIT_NOFILE\) is 64", what="the RLIMIT_NOFILE warning")


def _try_get(port):
    try:
        with kg.Conn(port, timeout=1.0) as c:
            c.send(kg.raw_request("GET", "/echo/again"))
            return c.read_response().status == 200
    except (OSError, kg.NoResponse, kg.ProtocolError):
        return False


# === 11: idle connections make room =========================================

def test_idle_connections_make_room():
    d = kg.start(kg.config("route * ^/ auth=anonymous", workers=1,
                           max_connections=4, keepalive_timeout="60s",
                           header_timeout="30s"))
    conns = []
    try:
        for i in range(4):
            c = kg.Conn(d.port)
            conns.append(c)
            # c1 is busy: the start of its next request comes with the
            # first one, in the same segment, so it is never idle.
            c.send(kg.raw_request("GET", "/c%d" % i) +
                   (b"GET /c1b HTTP/1.1\r\n" if i == 1 else b""))
            kg.check_echo(c.read_response(), "GET", "/c%d" % i,
                          what="connection %d" % i)
        # Three slots hold idle keep-alive connections, one a busy one.
        t0 = time.monotonic()
        c4 = kg.Conn(d.port)
        conns.append(c4)
        c4.send(kg.raw_request("GET", "/c4"))
        kg.check_echo(c4.read_response(), "GET", "/c4",
                      what="a fifth client with three idle connections")
        kg.check(time.monotonic() - t0 < 3, "fifth client served after "
                 "%.1f s" % (time.monotonic() - t0))
        conns[0].wait_closed(3)		# the oldest idle one made room
        # The next newcomer closes c2, the oldest idle one, not c1.
        c5 = kg.Conn(d.port)
        conns.append(c5)
        c5.send(kg.raw_request("GET", "/c5"))
        kg.check_echo(c5.read_response(), "GET", "/c5", what="sixth client")
        conns[2].wait_closed(3)
        conns[1].send(b"Host: x\r\n\r\n")
        kg.check_echo(conns[1].read_response(), "GET", "/c1b",
                      what="the busy connection, not closed")
        d.wait_log(r"max_connections \(4\) reached: closing idle",
                   what="the reuse warning")
    finally:
        for c in conns:
            c.close()


# === 12: pipelined input is bounded =========================================

@with_upstreams
def test_pipelined_input_bounded():
    up = U.Upstream()
    d = kg.start(proxy_conf(up, workers=1, max_body_size="0"))
    w = d.wait_workers(1)[0]
    total = 64 * MiB
    c = kg.Conn(d.port, timeout=15)
    sent = [0]
    err = []
    done = threading.Event()

    def push():
        # Behind the slow request: a second one whose 64 MiB body is
        # already on its way.
        try:
            c.send(kg.raw_request("POST", "/after", headers=[
                ("Content-Length", str(total))]))
            for p in U.pattern_iter(total, 256 * 1024):
                c.sock.sendall(p)
                sent[0] += len(p)
        except OSError as e:
            err.append(e)
        done.set()

    try:
        base = kg.status_kib(w, "VmRSS")
        peak = [base]
        c.send(kg.raw_request("GET", "/slow?ms=3000"))
        t = threading.Thread(target=push, daemon=True)
        t.start()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.5:
            peak[0] = max(peak[0], kg.status_kib(w, "VmRSS"))
            time.sleep(0.02)
        before = sent[0]
        r = c.read_response()
        kg.eq(r.status, 200, "the slow request (body %r)" % r.body[:200])
        kg.check(before < 32 * MiB, "%d MiB of pipelined input were taken "
                 "while the first response was pending" % (before // MiB))
        grew = (peak[0] - base) / 1024.0
        kg.check(grew < 16, "the worker grew by %.1f MiB (%d -> %d KiB) "
                 "holding pipelined input" % (grew, base, peak[0]))
        # Reading resumes once the response is done.
        r = c.read_response()
        done.wait(30)
        kg.check(not err, "sending the pipelined request: %s" % err)
        j = json.loads(r.body.decode())
        kg.eq(j.get("body_bytes"), total, "pipelined body at the upstream")
        kg.eq(j.get("body_sha256"), U.pattern_sha256(total),
              "pipelined body's digest")
    finally:
        c.close()


# === 13: body_deadline ======================================================

def _trickle(port, target, what):
    """Send a 100-byte body 1 byte every 150 ms until an answer comes."""
    with kg.Conn(port, timeout=10) as c:
        c.send(kg.raw_request("POST", target, headers=[
            ("Content-Length", "100")]))
        t0 = time.monotonic()
        try:
            for i in range(40):		# 6 s at most
                c.send(b"x")
                if select.select([c.sock], [], [], 0.15)[0]:
                    break
        except OSError:
            pass
        r = c.read_response()
        took = time.monotonic() - t0
    j = kg.check_refusal(r, 408, "request_timeout", what)
    kg.check("body_deadline" in j["message"], "%s: message %r" %
             (what, j["message"]))
    kg.check(0.8 <= took <= 4.5, "%s: 408 after %.2f s with body_deadline "
             "1s (body_timeout 5s)" % (what, took))


@with_upstreams
def test_body_deadline():
    up = U.Upstream()
    d = kg.start(proxy_conf(up, workers=1, body_timeout="5s",
                            body_deadline="1s"))
    up.reset()
    _trickle(d.port, "/echo/slow", "slow body, echo upstream")
    _trickle(d.port, "/up/slow", "slow body, proxied")
    kg.wait_for(lambda: up.stats()["open"] == 0, 3,
                "the upstream connection to be closed")
    # A body that arrives in time is unaffected.
    r = kg.request(d.port, "POST", "/up/fast", body=b"y" * 1000)
    j = json.loads(r.body.decode())
    kg.eq(j["body_bytes"], 1000, "a prompt body")


def test_body_deadline_off():
    d = kg.start(kg.config("route * ^/ auth=anonymous", body_timeout="2s",
                           body_deadline="0"))
    with kg.Conn(d.port, timeout=10) as c:
        c.send(kg.raw_request("POST", "/slow", headers=[
            ("Content-Length", "8")]))
        for i in range(8):		# 2.4 s in all, 300 ms apart
            time.sleep(0.3)
            c.send(b"z")
        kg.check_echo(c.read_response(), "POST", "/slow", body_bytes=8,
                      what="body_deadline 0")


# === 14: chunked bodies in many pieces ======================================

def _many_chunks(n):
    """A chunked body of n bytes in 10-byte chunks, and its payload."""
    payload = U.pattern(n)
    out = bytearray()
    for i in range(0, n, 10):
        piece = payload[i:i + 10]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    out += b"0\r\n\r\n"
    return bytes(out), payload


@with_upstreams
def test_chunked_many_pieces_pipelined():
    # With max_header_size 256k up to 1 MiB is read ahead behind the slow
    # response: the whole body, in more evbuffer slices (past the 256 KiB
    # the header parser pulls up) than one evbuffer_peek() shows.
    up = U.Upstream()
    d = kg.start(proxy_conf(up, workers=1, body_timeout="4s",
                            max_header_size="256k"))
    body, payload = _many_chunks(400 * 1024)
    for target in ("/echo/chunks", "/up/chunks"):
        with kg.Conn(d.port, timeout=10) as c:
            c.send(kg.raw_request("GET", "/slow?ms=700") +
                   kg.raw_request("POST", target, headers=[
                       ("Transfer-Encoding", "chunked")]) + body)
            kg.eq(c.read_response().status, 200, "the slow request")
            t0 = time.monotonic()
            r = c.read_response()
            took = time.monotonic() - t0
        kg.eq(r.status, 200, "%s: status (body %r)" % (target, r.body[:200]))
        kg.check(took < 3.5, "%s: answered %.1f s after the body was all "
                 "there (body_timeout 4s)" % (target, took))
        j = json.loads(r.body.decode())
        kg.eq(j["body_bytes"], len(payload), "%s: body bytes" % target)
        if target.startswith("/up"):
            kg.eq(j["body_sha256"], hashlib.sha256(payload).hexdigest(),
                  "%s: body" % target)


TESTS = [
    test_nofile_raised_for_max_connections,
    test_emfile_pauses_accepting,
    test_idle_connections_make_room,
    test_pipelined_input_bounded,
    test_body_deadline,
    test_body_deadline_off,
    test_chunked_many_pieces_pipelined,
]


if __name__ == "__main__":
    if len(sys.argv) > 1:		# run only the tests named
        names = sys.argv[1:]
        TESTS = [t for t in TESTS if t.__name__ in names]
    kg.run(TESTS)
