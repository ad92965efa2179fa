"""
A redis-server of the test's own (a free loopback port, a temporary
directory, no persistence unless asked) and a small RESP client, for the
cluster tests.  Nothing here needs python3-redis.

Every Server started is remembered until it is stopped: stop_all() (which
a test calls in a finally block, see cleaned()) and, as a last resort,
the exit of the test file stop whatever still runs, so that no
redis-server outlives its test, even a paused one.
"""

import atexit
import functools
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import kgtest as kg

_lock = threading.Lock()
_servers = []		# every Server whose process may still run


def need_redis():
    if shutil.which("redis-server") is None:
        kg.skip("redis-server is not installed (apt-get install "
                "redis-server)")


class Client:
    """One connection; call("SET", "a", "b") returns the decoded reply
    (bytes for bulk strings, str for status, int, list, None; an error
    raises RedisError)."""

    def __init__(self, port, host="127.0.0.1", timeout=10, password=None,
                 user=None):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        if password is not None:
            self.call(*(["AUTH"] + ([user] if user else []) + [password]))

    def close(self):
        self.sock.close()

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RedisError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ConnectionError("bad RESP line %r" % line[:80])

    def call(self, *args):
        self.send(*args)
        return self.reply()


class RedisError(Exception):
    pass


class Server:
    """redis-server on 127.0.0.1:port (a free one by default)."""

    def __init__(self, port=None, args=(), password=None):
        need_redis()
        self.dir = kg.tempdir()
        self.port = port or kg.free_port()
        self.password = password
        self.args = list(args)
        self.proc = None
        self.start()

    def start(self):
        cmd = ["redis-server", "--port", str(self.port), "--bind",
               "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
               self.dir, "--logfile", os.path.join(self.dir, "redis.log"),
               "--daemonize", "no"] + self.args
        if self.password is not None:
            cmd += ["--requirepass", self.password]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        with _lock:
            if self not in _servers:
                _servers.append(self)
        deadline = time.monotonic() + 10
        while True:
            try:
                c = self.client()
                c.call("PING")
                c.close()
                return self
            except (OSError, RedisError, ConnectionError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError("redis-server did not start on %d"
                                         % self.port)
                time.sleep(0.05)

    def client(self):
        return Client(self.port, password=self.password)

    def call(self, *args):
        c = self.client()
        try:
            return c.call(*args)
        finally:
            c.close()

    def stop(self):
        """Stop it (SIGKILL: whatever it held in memory is lost)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None
        with _lock:
            if self in _servers:
                _servers.remove(self)

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def url(self, user=None, db=None):
        """redis://[USER@]127.0.0.1:PORT[/DB] (never with a password)."""
        return "redis://%s127.0.0.1:%d%s" % (
            user + "@" if user else "", self.port,
            "/%d" % db if db is not None else "")

    # -- the cluster's namespace ("keygate:{NAME}:...") --

    def ns(self, name, what):
        return "keygate:{%s}:%s" % (name, what)

    def hlen(self, name):
        """Records in the namespace's "keys" hash."""
        return self.call("HLEN", self.ns(name, "keys"))

    def key_ids(self, name):
        """The ids in the namespace's "keys" hash."""
        return {k.decode() for k in self.call("HKEYS",
                                              self.ns(name, "keys"))}

    def trim(self, name):
        """XTRIM the change stream to nothing; the entries removed."""
        return self.call("XTRIM", self.ns(name, "stream"), "MAXLEN", "0")


def stop_all():
    """Stop every Server still running (resumed first if paused)."""
    with _lock:
        servers = list(_servers)
    for s in servers:
        try:
            if s.proc is not None and s.proc.poll() is None:
                s.proc.send_signal(signal.SIGCONT)
            s.stop()
        except Exception:
            pass


def cleaned(fn):
    """A test function that stops every Server it started, however it
    ends (its daemons are kgtest's to kill)."""
    @functools.wraps(fn)
    def run():
        try:
            return fn()
        finally:
            stop_all()
    return run


atexit.register(stop_all)
