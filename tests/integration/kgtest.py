"""
kgtest: the harness shared by keygate's integration tests (Python 3
standard library only).

Every test starts the real keygated (the binary named by $KEYGATED) on the
loopback interface, in a fresh temporary directory holding its config,
pidfile, state_dir and logs, drives it with a real client and looks at what
a user would see: statuses, headers, bodies, log lines, processes.

Rules this module enforces so that a test can never hang or leak:
- every socket has a timeout (DEFAULT_TIMEOUT), every wait a deadline;
- every daemon is registered when it is started and killed (SIGKILL, the
  master stopped first so that it cannot respawn workers) when its test
  ends, whatever the outcome, and again at exit (atexit, SIGTERM, ^C);
- processes are only ever killed by pid, and only pids whose command line
  names the daemon's own temporary directory (so never a process of
  someone else, nor a pid that was reused).

A test file is a list of functions handed to run(); each prints
"ok N - name" or "not ok N - name" plus the failure and the tail of the
daemon's error log, and the file ends with "N passed, N failed" and exits
1 if anything failed (77 if the daemon binary is missing).
"""

import atexit
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

KEYGATED = os.environ.get("KEYGATED", "")
SRCDIR = os.environ.get("KEYGATE_SRCDIR", "")

DEFAULT_TIMEOUT = 5.0		# seconds, for every socket operation
START_TIMEOUT = 10.0		# seconds for a daemon to serve its first GET
BIND_RETRIES = 3		# fresh ports tried when a port was taken
SKIP_EXIT = 77

ADMIN_TOKEN = "kgtest-admin-token-0123456789abcdefXYZ"
ADMIN_TOKEN_FILE = "{dir}/admin.token"

REQID_RE = re.compile(r"^[0-9a-f]{32}$")
RFC3339_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class Skip(Exception):
    """Raised by a test that cannot run here (not a failure)."""


class NoResponse(Exception):
    """The connection ended before a single byte of a response arrived."""


class ProtocolError(Exception):
    """The daemon sent something that is not a well-formed response."""


def python_with(modules, env_name, package):
    """
    None if every module in modules imports here; else, if the Debian
    python3 ($env_name, default /usr/bin/python3) has them, re-exec this
    test with it (the first python3 on PATH may be one of its own, without
    Debian's python3-* packages); else the reason to skip.
    """
    try:
        for m in modules:
            __import__(m)
        return None
    except ImportError as e:
        missing = str(e)
    py = os.environ.get(env_name, "/usr/bin/python3")
    flag = "KGTEST_REEXEC_" + env_name
    if os.environ.get(flag) is None and os.access(py, os.X_OK) and \
            os.path.realpath(py) != os.path.realpath(sys.executable):
        try:
            ok = subprocess.run([py, "-c", "import " + ", ".join(modules)],
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL,
                                timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            os.environ[flag] = "1"
            sys.stdout.flush()
            sys.stderr.flush()
            os.execv(py, [py] + sys.argv)
    return ("%s missing for %s (%s) and %s has not got them: install %s" %
            (", ".join(modules), sys.executable, missing, py, package))


def skip(reason):
    raise Skip(reason)


# --- assertions ------------------------------------------------------------
# Explicit functions rather than `assert`, so that python -O cannot turn the
# checks off, and so that every failure says what was expected.

def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def eq(actual, expected, what):
    if actual != expected:
        raise AssertionError("%s: expected %r, got %r" % (what, expected,
                                                         actual))


def wait_for(pred, timeout, what, interval=0.02):
    """Poll pred() until it returns a true value; fail after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" %
                                 (timeout, what))
        time.sleep(interval)


# --- ports -----------------------------------------------------------------

# Every port handed out in this process, so that a later call never
# returns one again: a test's "dead" port must not become a listen address
# of the daemon it starts next, and two listeners must not share one.
_given = set()


def free_ports(n, host="127.0.0.1"):
    """n distinct ports the kernel considers free right now, none handed
    out before by this process.  The sockets stay bound until all are
    chosen, so the kernel cannot return the same port twice."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(fam, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((host, 0))
            port = s.getsockname()[1]
            if port not in _given:
                ports.append(port)
        _given.update(ports)
        return ports
    finally:
        for s in socks:
            s.close()


def free_port(host="127.0.0.1"):
    """A port the kernel considers free right now (bound to 0, closed)."""
    return free_ports(1, host)[0]


def have_ipv6():
    try:
        free_port("::1")
        return True
    except OSError:
        return False


# --- /proc -----------------------------------------------------------------

def proc_stat(pid):
    """(state, ppid, utime+stime in clock ticks) of pid, or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # comm is in parentheses and may contain anything: split at the last ')'.
    rest = data[data.rfind(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[11]) + int(rest[12])


def proc_alive(pid):
    """Exists and is not a zombie."""
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().decode("utf-8", "replace").split("\0")
    except OSError:
        return []


def proc_uids(pid):
    """The four uids (real, effective, saved, fs) of pid, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("Uid:"):
                    return [int(x) for x in line.split()[1:5]]
    except OSError:
        pass
    return None


def pids_of_dir(dir):
    """Live processes (not us) whose command line names dir."""
    out = []
    me = os.getpid()
    for pid in all_pids():
        if pid != me and any(dir in a for a in proc_cmdline(pid)):
            st = proc_stat(pid)
            if st is not None and st[0] not in ("Z", "X"):
                out.append(pid)
    return out


def kill_dir_processes(dir, timeout=5.0):
    """SIGKILL whatever still runs from dir (a run of keygated -c DIR/...)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = pids_of_dir(dir)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.01)


def all_pids():
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def children_of(ppid):
    """Live (non-zombie) children of ppid."""
    out = []
    for pid in all_pids():
        st = proc_stat(pid)
        if st is not None and st[1] == ppid and st[0] not in ("Z", "X"):
            out.append(pid)
    return sorted(out)


# --- HTTP responses and a raw client ------------------------------------------

class Response:
    """A parsed HTTP response."""

    def __init__(self, version, status, reason, headers, body, head=False):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers		# [(name, value)] as received
        self.body = body
        self.head = head

    def header(self, name, default=None):
        """First value of header name (case-insensitive)."""
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    def closes(self):
        """Does the response say the connection will close?"""
        v = self.header("connection", "")
        return "close" in [t.strip().lower() for t in v.split(",")]

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError as e:
            raise AssertionError("response body is not JSON (%s): %r" %
                                 (e, self.body[:300]))

    def __repr__(self):
        return "<Response %d %r %r>" % (self.status, self.headers,
                                         self.body[:200])


class Conn:
    """
    A raw HTTP client connection: send exact bytes, read whole responses
    (status line, headers, then a Content-Length body, or everything up to
    EOF when there is no length), or wait for the peer to close.
    """

    def __init__(self, port, host="127.0.0.1", timeout=DEFAULT_TIMEOUT):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect((host, port))
        except BaseException:
            self.sock.close()
            raise
        self.buf = b""
        self.eof = False
        self.received = 0		# bytes received in total

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def settimeout(self, t):
        self.sock.settimeout(t)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def shutdown_wr(self):
        self.sock.shutdown(socket.SHUT_WR)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self):
        """Receive more bytes; False at EOF (or a reset)."""
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        self.received += len(chunk)
        return True

    def read_response(self, head=False, max_header=1 << 20):
        """
        Read one response.  head: the request was HEAD (no body follows).
        Raises NoResponse if the connection ended before any byte of it,
        ProtocolError if it ended in the middle or the bytes are not HTTP,
        socket.timeout if the daemon went quiet for the socket timeout.
        """
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > max_header:
                raise ProtocolError("response header section too large")
            if not self._fill():
                if not self.buf:
                    raise NoResponse("connection closed before a response")
                raise ProtocolError("connection closed inside a response "
                                    "header: %r" % self.buf[:300])
        end = self.buf.index(b"\r\n\r\n")
        head_bytes, self.buf = self.buf[:end], self.buf[end + 4:]
        lines = head_bytes.decode("latin-1").split("\r\n")
        m = re.match(r"^(HTTP/\d\.\d) (\d{3}) ?(.*)$", lines[0])
        if not m:
            raise ProtocolError("bad status line %r" % lines[0])
        headers = []
        for line in lines[1:]:
            if ":" not in line:
                raise ProtocolError("bad header line %r" % line)
            n, v = line.split(":", 1)
            headers.append((n, v.strip()))
        r = Response(m.group(1), int(m.group(2)), m.group(3), headers, b"",
                     head)
        if head or r.status < 200 or r.status in (204, 304):
            return r
        te = r.header("transfer-encoding")
        cl = r.header("content-length")
        if te is not None and "chunked" in te.lower():
            r.body = self._read_chunked()
        elif cl is not None:
            n = int(cl)
            while len(self.buf) < n:
                if not self._fill():
                    raise ProtocolError("connection closed after %d of %d "
                                        "body bytes" % (len(self.buf), n))
            r.body, self.buf = self.buf[:n], self.buf[n:]
        else:
            while self._fill():
                pass
            r.body, self.buf = self.buf, b""
        return r

    def _read_chunked(self):
        body = b""
        while True:
            while b"\r\n" not in self.buf:
                if not self._fill():
                    raise ProtocolError("EOF in chunked body")
            line, self.buf = self.buf.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            if size == 0:
                while b"\r\n\r\n" not in b"\r\n" + self.buf:
                    if not self._fill():
                        raise ProtocolError("EOF in trailer")
                i = (b"\r\n" + self.buf).index(b"\r\n\r\n")
                self.buf = self.buf[i + 2:]
                return body
            while len(self.buf) < size + 2:
                if not self._fill():
                    raise ProtocolError("EOF in chunk")
            body += self.buf[:size]
            self.buf = self.buf[size + 2:]

    def read_final(self, head=False):
        """Read responses until a final (non-1xx) one; return it."""
        while True:
            r = self.read_response(head)
            if r.status >= 200:
                return r

    def wait_closed(self, timeout=DEFAULT_TIMEOUT):
        """
        Wait until the daemon closes the connection.  Returns the bytes
        that arrived before the EOF; fails if it stays open for timeout s.
        """
        old = self.sock.gettimeout()
        deadline = time.monotonic() + timeout
        got = self.buf
        self.buf = b""
        try:
            while not self.eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("connection still open after "
                                         "%.1f s" % timeout)
                self.sock.settimeout(left)
                try:
                    if self._fill():
                        got += self.buf
                        self.buf = b""
                except socket.timeout:
                    raise AssertionError("connection still open after "
                                         "%.1f s" % timeout)
        finally:
            self.sock.settimeout(old)
        return got

    def is_open_after(self, seconds):
        """True if nothing (not even EOF) arrives for seconds."""
        old = self.sock.gettimeout()
        self.sock.settimeout(seconds)
        try:
            self._fill()	# data or EOF: either way, not quiet
            return False
        except socket.timeout:
            return True
        finally:
            self.sock.settimeout(old)


def raw_request(method, path, host="x", headers=(), body=b"",
                version="HTTP/1.1"):
    """The bytes of a request; Content-Length is added for a body."""
    lines = ["%s %s %s" % (method, path, version)]
    if host is not None:
        lines.append("Host: %s" % host)
    for n, v in headers:
        lines.append("%s: %s" % (n, v))
    if body and not any(n.lower() in ("content-length", "transfer-encoding")
                        for n, _ in headers):
        lines.append("Content-Length: %d" % len(body))
    if isinstance(body, str):
        body = body.encode("latin-1")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def request(port, method, path, headers=None, body=None, host="127.0.0.1",
            timeout=DEFAULT_TIMEOUT):
    """One request through http.client on a new connection."""
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return Response("HTTP/1.%d" % (r.version - 10), r.status, r.reason,
                        r.getheaders(), body, method == "HEAD")
    finally:
        c.close()


def get(port, path, headers=None, host="127.0.0.1"):
    return request(port, "GET", path, headers=headers, host=host)


# --- checks of what every response must carry ---------------------------------

def admin(d, method, path, body=None, token=ADMIN_TOKEN, headers=None,
          timeout=DEFAULT_TIMEOUT):
    """
    A request to d's admin API; body (a dict/list) is sent as JSON.  Returns
    the Response; r.json() is its body.  timeout: for each socket operation
    (a request that waits for the key store lock needs more than its 5 s).
    """
    h = {"Authorization": "Bearer " + token} if token is not None else {}
    if headers:
        h.update(headers)
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    return request(d.admin_port, method, path, headers=h, body=data,
                   timeout=timeout)


def in_thread(fn):
    """Run fn() in a daemon thread; (thread, [its result, or the OSError
    or HTTPException it raised])."""
    out = []

    def run():
        try:
            out.append(fn())
        except (OSError, http.client.HTTPException) as e:
            out.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def create_key(d, owner="acme", **fields):
    """Create a key through the admin API; returns (key object, secret)."""
    fields["owner"] = owner
    r = admin(d, "POST", "/v1/keys", fields)
    eq(r.status, 201, "create status (%s)" % r.body[:200])
    j = r.json()
    return j, j["secret"]


def check_common(r, what="response"):
    """X-Request-Id, Date, Server: keygate, Content-Length on every answer."""
    rid = r.header("x-request-id")
    check(rid is not None and re.match(r"^[A-Za-z0-9._:-]{1,128}$", rid),
          "%s: bad or missing X-Request-Id %r" % (what, rid))
    check(r.header("date") is not None, "%s: no Date header" % what)
    eq(r.header("server"), "keygate", "%s: Server header" % what)
    cl = r.header("content-length")
    check(cl is not None, "%s: no Content-Length header" % what)
    if not r.head:
        eq(int(cl), len(r.body), "%s: Content-Length vs body length" % what)


def check_refusal(r, status, code, what="response"):
    """A JSON refusal {"error": code, "message": sentence}."""
    eq(r.status, status, "%s: status (body %r)" % (what, r.body[:200]))
    ct = r.header("content-type", "")
    check(ct.split(";")[0].strip() == "application/json",
          "%s: Content-Type %r, expected application/json" % (what, ct))
    j = r.json()
    check(isinstance(j, dict), "%s: body is not an object: %r" % (what, j))
    eq(j.get("error"), code, "%s: error code" % what)
    msg = j.get("message")
    check(isinstance(msg, str) and len(msg) > 0,
          "%s: message missing or empty: %r" % (what, j))
    check_common(r, what)
    return j


def echo_headers(r, what):
    """The headers the built-in echo upstream says it would forward."""
    eq(r.status, 200, "%s: status (body %r)" % (what, r.body[:300]))
    j = r.json()
    check(isinstance(j.get("headers"), dict), "%s: no echo: %r" % (what, j))
    return j["headers"]


def check_echo(r, method, path, query=None, body_bytes=0, what="echo"):
    """A 200 echo response for the given request; returns the JSON."""
    eq(r.status, 200, "%s: status (body %r)" % (what, r.body[:300]))
    check_common(r, what)
    ct = r.header("content-type", "")
    check(ct.split(";")[0].strip() == "application/json",
          "%s: Content-Type %r" % (what, ct))
    j = r.json()
    eq(j.get("method"), method, "%s: echoed method" % what)
    eq(j.get("path"), path, "%s: echoed path" % what)
    eq(j.get("query"), query, "%s: echoed query" % what)
    eq(j.get("body_bytes"), body_bytes, "%s: echoed body_bytes" % what)
    check(isinstance(j.get("headers"), dict),
          "%s: headers is not an object: %r" % (what, j))
    return j


# --- configuration ---------------------------------------------------------------

def config(*lines, workers=1, listen=("127.0.0.1:{port}",), access_log=True,
           log_level="info", upstream=True, admin=None, **settings):
    """
    A config template: the usual header (listen, workers, pidfile,
    state_dir, error and access log in the temp dir, an echo upstream), any
    extra directives given as keyword arguments (header_timeout="500ms"),
    then the lines given (routes, mostly).  {port}, {port2}, {port3} and
    {dir} are filled in by start().
    """
    out = ["# written by kgtest"]
    out += ["listen %s" % a for a in listen]
    out += ["workers %s" % workers,
            "pidfile {dir}/keygated.pid",
            "state_dir {dir}/state",
            "error_log {dir}/error.log",
            "access_log %s" % ("{dir}/access.log" if access_log else "off"),
            "log_level %s" % log_level]
    if admin is not None:
        # admin: the placeholder of its port, e.g. "{port2}" (start the
        # daemon with nports=2); the token file is written by write_conf().
        out += ["admin_listen 127.0.0.1:%s" % admin,
                "admin_token_file " + ADMIN_TOKEN_FILE]
    for k, v in settings.items():
        out.append("%s %s" % (k, v))
    if upstream:
        out.append("upstream echo echo")
    out += list(lines)
    return "\n".join(out) + "\n"


def fill(template, dir, ports):
    """Substitute {dir} and {port}/{port2}/{port3} (and nothing else)."""
    text = template.replace("{dir}", dir)
    for i, p in enumerate(ports):
        text = text.replace("{port}" if i == 0 else "{port%d}" % (i + 1),
                            str(p))
    return text


# --- daemons -------------------------------------------------------------------------

_lock = threading.RLock()
_daemons = []		# every Daemon not yet killed
_tempdirs = []		# every temp dir not yet removed
_test_daemons = None	# daemons started by the running test (killed after it)
_test_used = None	# daemons the running test used (error log reported)


def tempdir():
    """A fresh temporary directory, removed when the test file ends."""
    d = tempfile.mkdtemp(prefix="kgtest-%d-" % os.getpid())
    with _lock:
        _tempdirs.append(d)
    return d


def write_file(dir, name, text):
    """Write text to dir/name; its path."""
    path = os.path.join(dir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def binary():
    if not KEYGATED or not os.access(KEYGATED, os.X_OK):
        raise Skip("KEYGATED (%r) is not an executable" % KEYGATED)
    return KEYGATED


def keygated(*args, timeout=10, cwd=None):
    """Run keygated with args; returns CompletedProcess (text output)."""
    return subprocess.run([binary()] + list(args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, universal_newlines=True, cwd=cwd)


# --- keys.snapshot ----------------------------------------------------------------

SNAPSHOT_MAGIC = b"KGSNAP\r\n"
SNAPSHOT_STRINGS = ("id", "prefix", "hint", "name", "owner", "app_id",
                    "scopes")
_crc32c_table = []


def crc32c(data, crc=0):
    """CRC32C of data, continuing from crc (0 to start), as snapshot.c."""
    if not _crc32c_table:
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
            _crc32c_table.append(c)
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = (crc >> 8) ^ _crc32c_table[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


def _snapshot_record(data, q):
    """The record at data[q:] as a KEY object (include/journal.h), and
    where the next one starts."""
    old = data[q + 32:q + 64]
    grace, created, updated, expires, flags, r1, r10, r60 = \
        struct.unpack_from("<qqqqIIII", data, q + 64)
    key = {"digest": data[q:q + 32].hex(),
           "old_digest": None if old == bytes(32) else old.hex(),
           "grace_until": grace or None, "created": created,
           "updated": updated, "expires": expires or None,
           "disabled": bool(flags & 1), "rate": [r1, r10, r60]}
    q += 112
    for name in SNAPSHOT_STRINGS:
        n = data[q]
        key[name] = data[q + 1:q + 1 + n].decode("utf-8")
        q += 1 + n
    key["scopes"] = key["scopes"].split(" ") if key["scopes"] else []
    return key, q


def read_snapshot(path):
    """
    keys.snapshot in either format (binary: include/snapshot.h; JSON
    lines: include/journal.h) as (seq, [KEY objects as the journal writes
    them]).  A binary one is checked: magic, every checksum, the counts.
    """
    with open(path, "rb") as f:
        data = f.read()
    if data[:1] == b"{":
        lines = data.decode("utf-8").splitlines()
        return (json.loads(lines[0])["seq"],
                [json.loads(line) for line in lines[1:-1]])
    check(data[:8] == SNAPSHOT_MAGIC, "%s: bad magic" % path)
    _, _, seq, count, _, hcrc = struct.unpack_from("<IIQQII", data, 8)
    check(crc32c(data[:36]) == hcrc, "%s: header checksum" % path)
    p, keys, blocks = 40, [], 0
    while struct.unpack_from("<I", data, p)[0] != 0:
        nrec, plen, bcrc = struct.unpack_from("<III", data, p)
        end = p + 12 + plen
        check(crc32c(data[p + 12:end], crc32c(data[p:p + 8])) == bcrc,
              "%s: offset %d: block checksum" % (path, p))
        q = p + 12
        for _ in range(nrec):
            k, q = _snapshot_record(data, q)
            keys.append(k)
        check(q == end, "%s: offset %d: block length" % (path, p))
        p, blocks = end, blocks + 1
    _, nblocks, n, head, tcrc = struct.unpack_from("<IIQII", data, p)
    check(crc32c(data[p:p + 20]) == tcrc and head == hcrc and
          nblocks == blocks and n == count == len(keys) and
          p + 24 == len(data), "%s: offset %d: trailer" % (path, p))
    return seq, keys


# --- keygatectl -------------------------------------------------------------------

CTL_SANITIZER_RE = re.compile(r"AddressSanitizer|LeakSanitizer|"
                              r"UndefinedBehaviorSanitizer|runtime error:")


def ctl_binary():
    """keygatectl, built next to KEYGATED (else the test is skipped)."""
    binary()
    path = os.path.join(os.path.dirname(KEYGATED), "keygatectl")
    if not os.access(path, os.X_OK):
        raise Skip("no keygatectl next to %s" % KEYGATED)
    return path


def ctl_env(url=None, token=None, env=None):
    """The environment without KEYGATE_ADMIN_*, then url and token set
    (when given) and env applied (a value None removes the variable)."""
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("KEYGATE_ADMIN_")}
    if url is not None:
        e["KEYGATE_ADMIN_URL"] = url
    if token is not None:
        e["KEYGATE_ADMIN_TOKEN"] = token
    for k, v in (env or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    return e


def ctl_run(args, env, stdin=None, secret=ADMIN_TOKEN):
    """Run keygatectl args with env; fails if secret or a sanitizer report
    shows in its output.  Returns the CompletedProcess (text)."""
    p = subprocess.run([ctl_binary()] + list(args), env=env, input=stdin,
                       stdin=None if stdin is not None else
                       subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60,
                       universal_newlines=True)
    for name, text in (("stdout", p.stdout), ("stderr", p.stderr)):
        check(secret not in text, "the admin token appears in the %s of "
              "keygatectl %s" % (name, " ".join(args)))
        m = CTL_SANITIZER_RE.search(text)
        check(m is None, "sanitizer report from keygatectl %s: %s" %
              (" ".join(args), text[-2000:]))
    return p


class StartError(Exception):
    pass


class Daemon:
    """One keygated instance in its own temporary directory."""

    def __init__(self, template, foreground=True, nports=1, shared=False,
                 launcher=()):
        self.template = template
        # Words run before keygated's command line, which they must exec
        # (the master's pid stays the process's): see private_hosts().
        self.launcher = list(launcher)
        self.foreground = foreground
        self.nports = nports
        self.shared = shared
        self.dir = tempdir()
        os.chmod(self.dir, 0o755)	# workers may run as another user
        self.conf_path = os.path.join(self.dir, "keygate.conf")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.errlog_path = os.path.join(self.dir, "error.log")
        self.access_path = os.path.join(self.dir, "access.log")
        self.pidfile = os.path.join(self.dir, "keygated.pid")
        self.proc = None
        self.master_pid = None
        self.ports = []
        self.port = None
        self.host = "127.0.0.1"
        self.killed = False
        self.exit_code = None
        self.start_rc = None	# exit status of a daemonizing start
        self.health_mark = 0	# error log already checked by check_healthy
        self.admin_port = None	# set by write_conf() from admin_listen
        # Worker deaths are failures unless the test causes them.
        self.allow_worker_deaths = False
        with _lock:
            _daemons.append(self)
            if _test_daemons is not None and not shared:
                _test_daemons.append(self)

    # -- starting --

    def write_conf(self, template=None, ports=None):
        """(Re)write the config file from a template."""
        if template is not None:
            self.template = template
        if ports is not None:
            self.ports = list(ports)
        text = fill(self.template, self.dir, self.ports)
        with open(self.conf_path, "w") as f:
            f.write(text)
        token = fill(ADMIN_TOKEN_FILE, self.dir, self.ports)
        if token in text and not os.path.exists(token):
            fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, (ADMIN_TOKEN + "\n").encode())
            os.close(fd)
        m = re.search(r"^\s*admin_listen\s+[0-9.]+:(\d+)", text, re.M)
        self.admin_port = int(m.group(1)) if m else None
        # wait_ready() talks to the first listen address.
        m = re.search(r"^\s*listen\s+(\[([0-9a-fA-F:.]+)\]|[0-9.]+):\d+",
                      text, re.M)
        if m:
            self.host = m.group(2) or m.group(1)

    def _launch(self):
        args = self.launcher + [binary()]
        if self.foreground:
            args.append("-f")
        args += ["-c", self.conf_path]
        out = open(self.stderr_path, "ab")
        try:
            if self.foreground:
                # A session of its own: a ^C at the terminal reaches only
                # the harness, which then kills the daemon itself.
                self.proc = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                    cwd=self.dir, start_new_session=True)
                self.master_pid = self.proc.pid
                return
            p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=out,
                               stderr=out, cwd=self.dir, timeout=START_TIMEOUT)
            self.exit_code = p.returncode
            self.start_rc = p.returncode
            if p.returncode != 0:
                raise StartError("keygated exited with %d" % p.returncode)
            self.master_pid = self.read_pidfile()
        finally:
            out.close()

    def start(self):
        """Start on fresh ports; retry if one of them was taken meanwhile."""
        for attempt in range(BIND_RETRIES):
            self.write_conf(ports=free_ports(self.nports))
            self.port = self.ports[0] if self.ports else None
            mark = len(self.errlog_text())
            try:
                self._launch()
                self.wait_ready()
                return self
            except StartError as e:
                text = self.errlog_text()[mark:]
                self._kill_processes()
                if "Address already in use" in text and \
                        attempt + 1 < BIND_RETRIES:
                    continue
                raise AssertionError("keygated did not start (%s); its "
                                     "output:\n%s" % (e, text[-3000:]))
        raise AssertionError("keygated did not start")

    def read_pidfile(self):
        try:
            with open(self.pidfile) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def wait_ready(self, port=None, timeout=START_TIMEOUT):
        """Until port accepts a connection and answers a GET."""
        port = port or self.port
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.foreground and self.proc.poll() is not None:
                self.exit_code = self.proc.returncode
                raise StartError("keygated exited with %d" % self.exit_code)
            if not self.foreground and (self.master_pid is None or
                                        not proc_alive(self.master_pid)):
                raise StartError("the master (pid %s) is not running" %
                                 self.master_pid)
            try:
                with Conn(port, host=self.host if port == self.port else
                          "127.0.0.1", timeout=1.0) as c:
                    c.send(raw_request("GET", "/", headers=[
                        ("Connection", "close")]))
                    c.read_response()
                    return
            except (OSError, NoResponse, ProtocolError):
                time.sleep(0.02)
        raise StartError("not serving on port %s after %.0f s" %
                         (port, timeout))

    # -- looking at it --

    def errlog_text(self):
        """Everything the daemon logged (stderr, and the error_log file)."""
        text = ""
        for p in (self.stderr_path, self.errlog_path):
            try:
                with open(p, "rb") as f:
                    text += f.read().decode("utf-8", "replace")
            except OSError:
                pass
        return text

    def errlog_tail(self, n=25):
        lines = self.errlog_text().splitlines()
        return "\n".join(lines[-n:])

    def wait_log(self, pattern, timeout=DEFAULT_TIMEOUT, what=None):
        """Until the error log matches the regex; returns the match."""
        rx = re.compile(pattern)
        return wait_for(lambda: rx.search(self.errlog_text()), timeout,
                        what or "error log line /%s/" % pattern)

    def access_lines(self, path=None):
        """The access log, each line parsed as JSON (a bad line fails)."""
        out = []
        try:
            with open(path or self.access_path, "rb") as f:
                data = f.read().decode("utf-8")
        except OSError:
            return out
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                raise AssertionError("access log line is not JSON: %r" %
                                     line)
        return out

    def access_by_id(self, rid, timeout=2.0):
        """The access log entry with request_id rid (waits for it)."""
        def find():
            for e in self.access_lines():
                if e.get("request_id") == rid:
                    return e
            return None
        return wait_for(find, timeout, "access log line for %s" % rid)

    def worker_pids(self):
        """Live children of the master."""
        if self.master_pid is None:
            return []
        return children_of(self.master_pid)

    def wait_workers(self, n, timeout=DEFAULT_TIMEOUT, exclude=()):
        """Until exactly n workers run, none of them in exclude."""
        ex = set(exclude)
        deadline = time.monotonic() + timeout
        while True:
            p = self.worker_pids()
            if len(p) == n and not ex.intersection(p):
                return p
            if time.monotonic() >= deadline:
                raise AssertionError(
                    "timed out after %.1f s waiting for %d worker(s)%s; "
                    "have %s" % (timeout, n, " other than %s" % sorted(ex)
                                 if ex else "", p))
            time.sleep(0.02)

    def master_alive(self):
        if self.foreground and self.proc is not None:
            return self.proc.poll() is None
        return self.master_pid is not None and proc_alive(self.master_pid)

    def signal(self, sig):
        check(self.master_pid is not None, "no master pid")
        os.kill(self.master_pid, sig)

    def wait_exit(self, timeout=DEFAULT_TIMEOUT):
        """Wait for the master to exit; its status if it was our child."""
        if self.foreground and self.proc is not None:
            try:
                self.exit_code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError("master still running after %.1f s" %
                                     timeout)
            return self.exit_code
        wait_for(lambda: not proc_alive(self.master_pid), timeout,
                 "master %s to exit" % self.master_pid)
        return None

    def stop(self, timeout=DEFAULT_TIMEOUT):
        """Graceful stop (SIGTERM); returns the exit status, then cleans."""
        try:
            self.signal(signal.SIGTERM)
            return self.wait_exit(timeout)
        finally:
            self.kill()

    def check_healthy(self):
        """Fail if a worker died (not caused by the test) or memory errors."""
        full = self.errlog_text()
        text = full[self.health_mark:]
        self.health_mark = len(full)
        if not self.allow_worker_deaths:
            m = re.search(r".*(killed by signal|exited with status).*", text)
            check(m is None, "a worker died during the test: %s" %
                  (m.group(0) if m else ""))
        m = re.search(r".*(AddressSanitizer|runtime error:|LeakSanitizer)"
                      r".*", text)
        check(m is None, "sanitizer report: %s" % (m.group(0) if m else ""))

    # -- cleaning up --

    def our_pids(self):
        """Live processes whose command line names this daemon's dir."""
        return pids_of_dir(self.dir)

    def _kill_processes(self):
        # Stop the master first, so that it cannot start replacements for
        # the workers killed next; then kill whatever runs from our dir.
        m = self.master_pid
        if m is not None and m in self.our_pids():
            try:
                os.kill(m, signal.SIGSTOP)
            except OSError:
                pass
        kill_dir_processes(self.dir)
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None

    def kill(self):
        """SIGKILL everything of this daemon and forget it."""
        if self.killed:
            return
        self.killed = True
        self._kill_processes()
        with _lock:
            if self in _daemons:
                _daemons.remove(self)


def start(template, foreground=True, nports=1, shared=False, launcher=()):
    """Start a daemon from a config template (see config()); it serves."""
    d = Daemon(template, foreground=foreground, nports=nports, shared=shared,
               launcher=launcher)
    use(d)
    return d.start()


def private_hosts(text):
    """A launcher (start(launcher=...)) that runs keygated with /etc/hosts
    replaced by text in a mount namespace of its own (unshare -m), so that
    a test can make a name resolve as it needs without touching the
    machine's file.  Skips unless root with unshare(1)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        skip("a private /etc/hosts needs root and unshare(1) (util-linux)")
    path = os.path.join(tempdir(), "hosts")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /etc/hosts && exec "$@"', path]


_shared = {}


def shared(name, template, nports=1):
    """A daemon shared by a group of read-only tests (started once)."""
    d = _shared.get(name)
    if d is None or d.killed:
        d = start(template, nports=nports, shared=True)
        _shared[name] = d
    use(d)
    return d


def use(d):
    """Report d's error log if the running test fails."""
    with _lock:
        if _test_used is not None and d not in _test_used:
            _test_used.append(d)


def cleanup():
    """Kill every daemon and remove every temporary directory."""
    with _lock:
        ds = list(_daemons)
    for d in ds:
        try:
            d.kill()
        except Exception:
            pass
    with _lock:
        dirs = list(_tempdirs)
        del _tempdirs[:]
    for p in dirs:
        try:
            kill_dir_processes(p)
        except Exception:
            pass
        shutil.rmtree(p, ignore_errors=True)


atexit.register(cleanup)


def _on_signal(sig, frame):
    # SIGTERM (make check's timeout, say): unwind so finally blocks run.
    raise SystemExit(128 + sig)


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGHUP, _on_signal)


# --- the runner --------------------------------------------------------------------

def _indent(text, prefix="#   "):
    return "\n".join(prefix + line for line in text.rstrip().splitlines())


def run(tests):
    """Run each test function; print TAP-like lines; exit 0, 1 or 77."""
    global _test_daemons, _test_used
    if not KEYGATED or not os.access(KEYGATED, os.X_OK):
        print("1..0 # SKIP KEYGATED is not set to an executable keygated")
        sys.exit(SKIP_EXIT)
    passed = failed = skipped = 0
    t0 = time.monotonic()
    print("1..%d" % len(tests))
    sys.stdout.flush()
    try:
        for i, t in enumerate(tests, 1):
            name = t.__name__
            with _lock:
                _test_daemons = []
                _test_used = []
            started = time.monotonic()
            err = skip_reason = None
            try:
                t()
                for d in list(_test_used):
                    d.check_healthy()
            except Skip as e:
                skip_reason = str(e)
            except Exception as e:
                err = e
            finally:
                used = list(_test_used)
                for d in list(_test_daemons):
                    d.kill()
                with _lock:
                    _test_daemons = None
                    _test_used = None
            if skip_reason is not None:
                skipped += 1
                print("ok %d - %s # SKIP %s" % (i, name, skip_reason))
            elif err is None:
                passed += 1
                print("ok %d - %s # %.2f s" % (i, name,
                                               time.monotonic() - started))
            else:
                failed += 1
                print("not ok %d - %s" % (i, name))
                _report(err, used)
            sys.stdout.flush()
    except KeyboardInterrupt:
        print("# interrupted")
        cleanup()
        sys.exit(130)
    finally:
        cleanup()
    print("# %s: %.1f s" % (os.path.basename(sys.argv[0]),
                           time.monotonic() - t0))
    print("%d passed, %d failed%s" % (passed, failed, ", %d skipped" % skipped
                                      if skipped else ""))
    sys.stdout.flush()
    if failed:
        sys.exit(1)
    if skipped and not passed:
        sys.exit(SKIP_EXIT)
    sys.exit(0)


def _report(err, used):
    """The failure: where, what, and the tail of each daemon's log."""
    tb = traceback.extract_tb(err.__traceback__)
    here = os.path.abspath(__file__)
    mine = [f for f in tb if os.path.abspath(f.filename) != here]
    for f in (mine or tb)[-2:]:
        print("#   at %s:%d in %s" % (os.path.basename(f.filename),
                                      f.lineno, f.name))
    print(_indent("%s: %s" % (type(err).__name__, err)))
    for d in used:
        print("#   --- error log of the daemon in %s (last lines) ---" %
              d.dir)
        print(_indent(d.errlog_tail() or "(empty)", "#   | "))


# --- memory of the daemon's processes ---------------------------------------

def status_kib(pid, field):
    """A field of /proc/PID/status in KiB ("VmRSS", "VmHWM"), or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class RssWatch:
    """
    Growth of each of a daemon's processes during a transfer: VmRSS
    sampled every 20 ms from now, and VmHWM (the kernel's exact peak) when
    it rose meanwhile.
    """

    def __init__(self, d):
        self.pids = [d.master_pid] + d.worker_pids()
        self.base = {p: status_kib(p, "VmRSS") or 0 for p in self.pids}
        self.hwm0 = {p: status_kib(p, "VmHWM") or 0 for p in self.pids}
        self.peak = dict(self.base)
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop_ev.is_set():
            self.sample()
            time.sleep(0.02)

    def sample(self):
        for p in self.pids:
            v = status_kib(p, "VmRSS")
            if v is not None and v > self.peak[p]:
                self.peak[p] = v

    def stop(self):
        self.stop_ev.set()
        self.t.join(2)
        self.sample()
        for p in self.pids:
            h = status_kib(p, "VmHWM")
            if h is not None and h > self.hwm0[p]:
                self.peak[p] = max(self.peak[p], h)

    def growth_mib(self):
        """Largest growth of one process, in MiB, and a description."""
        g = max(self.peak[p] - self.base[p] for p in self.pids)
        desc = ", ".join("pid %d %d->%d KiB" % (p, self.base[p], self.peak[p])
                         for p in self.pids)
        return g / 1024.0, desc

    def check(self, limit_mib, what):
        self.stop()
        g, desc = self.growth_mib()
        check(g < limit_mib, "%s: keygated grew by %.1f MiB (limit %d "
              "MiB): %s" % (what, g, limit_mib, desc))
