"""
Accept balance (issue 14): each worker accepts on listening sockets of its
own, bound with SO_REUSEPORT, so the kernel spreads new connections evenly
over the workers; the master keeps every socket, so a worker that dies is
replaced on the very socket it had, and a reload keeps the sockets of the
addresses and worker indexes that remain.

Which worker served a request is the "pid" of its access log line: with
one request per connection, lines per pid are connections accepted per
worker.  Which socket a process holds is read from /proc: the inodes of
the sockets listening on the port (/proc/net/tcp) that are among its
descriptors (/proc/PID/fd).
"""

import os
import re
import signal
import subprocess
import threading
import time

import kgtest as kg

ECHO = "route GET ^/echo(/|$) auth=anonymous"

CONNECTIONS = 400		# for the balance: new connections in all
THREADS = 2			# clients making them at the same time
LOOP_MAX = 20000		# connections of one looping client, at most


def listen_inodes(port):
    """Inodes of the sockets listening on port (IPv4, /proc/net/tcp)."""
    out = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and \
                    fields[3] == "0A":
                out.add(int(fields[9]))
    return out


def accepted_inode(port, peer):
    """The inode of the server side of the connection from 127.0.0.1:peer
    to port (0 while it waits to be accepted), or None if there is none."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and \
                    int(fields[2].split(":")[1], 16) == peer:
                return int(fields[9])
    return None


def socket_inodes(pid):
    """Inodes of the sockets among pid's descriptors."""
    out = set()
    d = "/proc/%d/fd" % pid
    try:
        names = os.listdir(d)
    except OSError:
        return out
    for name in names:
        try:
            link = os.readlink(os.path.join(d, name))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]$", link)
        if m:
            out.add(int(m.group(1)))
    return out


def own_sockets(d, n):
    """
    Wait until n workers run, each holding exactly one socket listening on
    d.port, no two the same, and the master holding all of them; returns
    {worker pid: inode}.
    """
    seen = {}

    def settled():
        seen.clear()
        pids = d.worker_pids()
        lis = listen_inodes(d.port)
        if len(pids) != n or len(lis) != n:
            return False
        for p in pids:
            mine = socket_inodes(p) & lis
            if len(mine) != 1:
                return False
            seen[p] = mine.pop()
        return len(set(seen.values())) == n and \
            lis <= socket_inodes(d.master_pid)
    try:
        kg.wait_for(settled, 10, "%d workers with a listening socket each" %
                    n)
    except AssertionError:
        pids = d.worker_pids()
        lis = listen_inodes(d.port)
        raise AssertionError(
            "want %d workers each with a socket of its own on port %d: "
            "listening sockets %s, master holds %s, workers hold %s" %
            (n, d.port, sorted(lis),
             sorted(socket_inodes(d.master_pid) & lis),
             {p: sorted(socket_inodes(p) & lis) for p in pids}))
    return dict(seen)


def one_connection(port, path):
    """A GET on a new connection; the response."""
    with kg.Conn(port) as c:
        c.send(kg.raw_request("GET", path, headers=[("Connection", "close")]))
        return c.read_response()


def served_by(d, prefix, n):
    """{pid: lines} of the access log lines whose path starts with prefix,
    once there are n of them."""
    lines = kg.wait_for(lambda: (lambda ls: ls if len(ls) >= n else None)(
        [e for e in d.access_lines() if e["path"].startswith(prefix)]), 5,
        "%d access log lines for %s" % (n, prefix))
    by = {}
    for e in lines:
        by[e["pid"]] = by.get(e["pid"], 0) + 1
    return by


class Looper:
    """One client making new connections in a loop until stopped; it
    notes every failure (refused, reset, no answer, a status not 200)."""

    def __init__(self, port, prefix):
        self.port = port
        self.prefix = prefix
        self.ok = 0
        self.failures = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        n = 0
        while not self.stop.is_set() and n < LOOP_MAX:
            n += 1
            try:
                r = one_connection(self.port, "%s%d" % (self.prefix, n))
                if r.status == 200:
                    self.ok += 1
                else:
                    self.failures.append("request %d: status %d" %
                                         (n, r.status))
            except Exception as e:
                self.failures.append("request %d: %s: %s" %
                                     (n, type(e).__name__, e))

    def start(self):
        self.thread.start()
        return self

    def until(self, ok, what):
        start = self.ok
        kg.wait_for(lambda: self.ok >= start + ok or
                    not self.thread.is_alive(), 20, what)

    def finish(self):
        self.stop.set()
        self.thread.join(20)
        kg.check(not self.thread.is_alive(), "the client did not finish")


def balance(workers, low, high):
    """CONNECTIONS new connections from THREADS clients at once: each
    worker accepts a share within [low, high] of them."""
    d = kg.start(kg.config(ECHO, workers=workers))
    own_sockets(d, workers)
    errors = []

    def client(t):
        for i in range(CONNECTIONS // THREADS):
            try:
                r = one_connection(d.port, "/echo/b%d-%d" % (t, i))
                if r.status != 200:
                    errors.append("status %d" % r.status)
            except Exception as e:
                errors.append("%s: %s" % (type(e).__name__, e))
    threads = [threading.Thread(target=client, args=(t,), daemon=True)
               for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    kg.check(not any(t.is_alive() for t in threads), "a client hangs")
    kg.eq(errors[:5], [], "failed connections")
    by = served_by(d, "/echo/b", CONNECTIONS)
    print("# connections per worker: %s" % sorted(by.values()))
    kg.eq(len(by), workers, "workers that accepted connections (%s)" % by)
    for pid, n in by.items():
        kg.check(low <= n / CONNECTIONS <= high,
                 "worker %d accepted %d of %d connections (%.0f %%), not "
                 "within %.0f-%.0f %%: %s" % (pid, n, CONNECTIONS,
                                              100.0 * n / CONNECTIONS,
                                              100 * low, 100 * high, by))


def test_two_workers_share_the_load():
    """Two workers: each accepts 30-70 % (binomial, 400 tries: 50 % +- 2.5
    %, so the bounds are 8 standard deviations away)."""
    balance(2, 0.30, 0.70)


def test_four_workers_share_the_load():
    """Four workers: each accepts 15-35 % (25 % +- 2.2 %: 4.6 standard
    deviations).  With one shared socket the busiest worker took 43-57 %
    in five runs out of five on a two-core machine."""
    balance(4, 0.15, 0.35)


def test_killed_worker_replaced_on_its_socket():
    """kill -9 of a worker while a client connects in a loop: at most the
    connection it had in hand fails, none is refused, and its replacement
    accepts on the socket the dead one had."""
    d = kg.start(kg.config(ECHO, workers=2))
    d.allow_worker_deaths = True
    before = own_sockets(d, 2)
    loop = Looper(d.port, "/echo/k").start()
    try:
        loop.until(50, "50 answers before the kill")
        victim = sorted(before)[0]
        os.kill(victim, signal.SIGKILL)
        d.wait_workers(2, exclude=[victim])
        after = own_sockets(d, 2)
        loop.until(200, "200 answers after the replacement started")
    finally:
        loop.finish()
    kg.check(len(loop.failures) <= 1, "%d connections failed around the "
             "kill (at most the one in hand may): %s" %
             (len(loop.failures), loop.failures[:5]))
    kg.check(not any("Refused" in f for f in loop.failures),
             "a connection was refused: %s" % loop.failures)
    new = [p for p in after if p not in before]
    kg.eq(len(new), 1, "replacement workers")
    kg.eq(after[new[0]], before[victim], "the replacement's socket (inode) "
          "against the killed worker's")
    by = served_by(d, "/echo/k", loop.ok)
    kg.check(by.get(new[0], 0) > 0, "the replacement %d accepted nothing: "
             "%s" % (new[0], by))


def test_reload_changes_workers_keeps_sockets():
    """Reloads from 2 workers to 3 and back to 2 while a client connects in
    a loop: nothing fails, the sockets of indexes 0 and 1 are the same
    throughout, the third is added, then closed once its worker left."""
    d = kg.start(kg.config(ECHO, workers=2))
    first = own_sockets(d, 2)
    loop = Looper(d.port, "/echo/r").start()
    try:
        loop.until(30, "30 answers before the reloads")
        for n, want in ((3, 3), (2, 2)):
            before = d.worker_pids()
            mark = len(d.errlog_text())
            d.write_conf(kg.config(ECHO, workers=n))
            d.signal(signal.SIGHUP)
            kg.wait_for(lambda: "configuration reloaded" in
                        d.errlog_text()[mark:], 10, "the reload to %d "
                        "workers" % n)
            kg.wait_for(lambda: not any(kg.proc_alive(p) for p in before),
                        10, "the old workers %s to exit" % before)
            now = own_sockets(d, want)
            kg.check(set(first.values()) <= set(now.values()),
                     "the sockets of the first workers %s are not all "
                     "among those after the reload to %d workers %s" %
                     (sorted(first.values()), n, sorted(now.values())))
            loop.until(30, "30 answers after the reload to %d workers" % n)
    finally:
        loop.finish()
    kg.eq(loop.failures[:5], [], "connections that failed across the "
          "reloads")
    by = served_by(d, "/echo/r", loop.ok)
    kg.check(len(by) >= 4, "connections served by %d workers over three "
             "generations: %s" % (len(by), by))


def test_second_daemon_on_the_port_refused():
    """A second keygated on the port of a running one fails to start with
    EADDRINUSE, as before SO_REUSEPORT, rather than joining its group and
    taking a share of its connections."""
    d = kg.start(kg.config(ECHO, workers=2))
    own_sockets(d, 2)
    dir = kg.tempdir()
    path = os.path.join(dir, "k.conf")
    with open(path, "w") as f:
        f.write(kg.fill(kg.config(ECHO, workers=2), dir, [d.port]))
    try:
        p = kg.keygated("-f", "-c", path, timeout=5)
    except subprocess.TimeoutExpired:
        raise AssertionError("a second keygated started on port %d, where "
                             "one runs already" % d.port)
    kg.eq(p.returncode, 1, "exit status of the second keygated")
    kg.check("Address already in use" in p.stderr and "listen" in p.stderr,
             "stderr %r" % p.stderr)
    kg.eq(len(listen_inodes(d.port)), 2, "sockets listening on the port")


def test_stopping_worker_accepts_its_queue():
    """
    A worker told to stop accepts what is queued on its sockets before it
    closes them (when it holds the last copy, as after a reload that drops
    its index, closing would reset those connections).  Here the worker
    is at max_connections 1 (a request that never ends holds it), so the
    next connections wait in the queue; the master is stopped, which
    closes its copies first: they are answered, not reset.
    """
    d = kg.start(kg.config(ECHO, workers=1, max_connections=1,
                           header_timeout="10s"))
    (worker,) = own_sockets(d, 1)
    held = kg.Conn(d.port)
    held.send(b"GET /echo/held HTTP/1.1\r\nHost: x\r\n")
    peer = held.sock.getsockname()[1]
    kg.wait_for(lambda: accepted_inode(d.port, peer) in
                socket_inodes(worker), 5,
                "the worker to accept the held connection")
    queued = []
    try:
        for i in range(5):
            c = kg.Conn(d.port)
            c.send(kg.raw_request("GET", "/echo/q%d" % i, headers=[
                ("Connection", "close")]))
            queued.append(c)
        for i, c in enumerate(queued):
            kg.eq(accepted_inode(d.port, c.sock.getsockname()[1]), 0,
                  "inode of queued connection %d (0: not accepted)" % i)
        kg.check(queued[0].is_open_after(0.3), "a connection past "
                 "max_connections was answered or closed at once")
        d.signal(signal.SIGTERM)
        for i, c in enumerate(queued):
            r = c.read_response()
            kg.eq(r.status, 200, "status of queued connection %d" % i)
            kg.check(r.closes(), "queued connection %d is not closed "
                     "after its answer" % i)
        held.send(b"Connection: close\r\n\r\n")
        kg.eq(held.read_response().status, 200, "the held request")
    finally:
        held.close()
        for c in queued:
            c.close()
    kg.eq(d.wait_exit(10), 0, "exit status of the master")


if __name__ == "__main__":
    kg.run([test_two_workers_share_the_load,
            test_four_workers_share_the_load,
            test_killed_worker_replaced_on_its_socket,
            test_reload_changes_workers_keeps_sockets,
            test_second_daemon_on_the_port_refused,
            test_stopping_worker_accepts_its_queue])
