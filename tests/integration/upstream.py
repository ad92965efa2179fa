"""
upstream: a test upstream HTTP/1.1 server for keygate's proxy tests
(Python 3 standard library only).

Run as a program it listens on 127.0.0.1 (and, with --ipv6, on [::1] with
the same port) on a port the kernel picks, or on --port P (with --tls CERT
KEY it speaks HTTPS with that certificate instead of HTTP), prints "PORT n"
on stdout and
serves until stdin reaches EOF (so it dies with the test that started it,
even if that test is killed) or it is killed.  Tests use the Upstream class
below, which starts it as a subprocess and always kills it.

Every request is answered according to its path and query:

  /_stats                  JSON counters (see Stats.snapshot); a request to
                           it is not counted, nor is a connection that only
                           carried such requests
  /_reset                  zero the counters
  /chunked?n=K&size=S      a chunked response of K chunks of S bytes
                           (chunked_body(K, S)); &cut=1: stop after the
                           chunks, without the last chunk, and close
  /close-delimited?bytes=N N bytes of pattern(), no Content-Length nor
                           Transfer-Encoding, then close
  /big?bytes=N[&te=chunked][&chunk=C]
                           N bytes of pattern() written C (default 64 KiB)
                           at a time, with Content-Length (or chunked)
  /status/NNN[?reason=R][&bytes=N]
                           that status (and reason); a body of N bytes of
                           pattern() except for 1xx/204/304 and HEAD
  /silent                  read the request, never answer (the connection
                           stays open until the peer closes it)
  /close-before            read the request, close without answering
  /short?promise=P&send=S  promise Content-Length P, send S bytes, close
  /trickle?bytes=N&pieces=P&gap_ms=G
                           N bytes with Content-Length, in P pieces with G ms
                           between them
  anything else            an echo of the request as JSON (echo_json below)
                           with Content-Length

Modifiers any request may carry in its query:

  ms=M             wait M ms before answering (/slow?ms=M is just an echo)
  stall_ms=M       wait M ms before reading the request body
  reqid=ID         answer with X-Request-Id: ID
  interim=1        send 100 Continue and 103 Early Hints before the answer
  h=Name:Value     add that response header (repeatable, in order)
  close=1          answer with Connection: close, then close
  idle_close_ms=M  answer with keep-alive, then close the connection M ms
                   later without having said so (a stale pooled connection)
  drop_next=1      answer normally; the next request on this connection is
                   read and then the connection is closed unanswered (the
                   race of a pooled connection closed by the upstream)

HEAD is answered like GET without the body.  The response to every request
but /_stats carries X-Upstream-Name (--name) and X-Upstream-Conn (the
number of the connection, from 1).  Request bodies may have a
Content-Length or be chunked (decoded); they are hashed while they stream,
never kept whole.
"""

import atexit
import functools
import hashlib
import json
import os
import select
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.parse

BLOCK = 65536

# Hop-by-hop header names (RFC 9110 7.6.1) plus Expect: what a proxy must
# not pass on.  Names listed in a Connection header are hop-by-hop too.
HOP_BY_HOP = ("connection", "keep-alive", "te", "trailer",
              "transfer-encoding", "upgrade", "proxy-connection",
              "proxy-authorization", "proxy-authenticate", "expect")


# --- deterministic bodies (the tests compute the same) -----------------------

_BASE = bytes((i * 31 + 7) & 0xff for i in range(BLOCK))


def pattern_block(i):
    """Block i of the pattern: 64 KiB starting with its index."""
    return struct.pack(">Q", i) + _BASE[8:]


def pattern_iter(n, chunk=BLOCK):
    """The first n bytes of the pattern, as pieces of at most chunk bytes."""
    sent = 0
    blk = 0
    pend = b""
    while sent < n:
        if len(pend) < chunk:
            pend += pattern_block(blk)
            blk += 1
        piece = pend[:min(chunk, n - sent)]
        pend = pend[len(piece):]
        sent += len(piece)
        yield piece


def pattern(n):
    """The first n bytes of the pattern (for small n)."""
    return b"".join(pattern_iter(n))


def pattern_sha256(n):
    h = hashlib.sha256()
    for p in pattern_iter(n):
        h.update(p)
    return h.hexdigest()


def chunked_body(n, size):
    """What /chunked?n=K&size=S sends, decoded."""
    return b"".join(chunk_piece(i, size) for i in range(n))


def chunk_piece(i, size):
    unit = b"%d-" % i
    return (unit * (size // len(unit) + 1))[:size]


# --- the server ------------------------------------------------------------

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.gen = getattr(self, "gen", 0) + 1	# connections count anew
        self.accepted = 0		# every connection accepted
        self.connections = 0	# connections that carried a counted request
        self.requests = 0		# requests other than /_stats, /_reset
        self.hop_by_hop = []	# [name, value, target] of hop headers seen
        self.log = []		# last requests: [conn, method, target]
        self.peer_closed = 0	# connections the peer closed
        self.send_failed = 0	# responses cut because the peer went away
        self.tls_failed = 0	# --tls: handshakes that failed
        if not hasattr(self, "open"):
            self.open = 0	# open now (a gauge, kept by reset), not
				# counting /_stats and /_reset connections

    def snapshot(self):
        with self.lock:
            return {"accepted": self.accepted,
                    "connections": self.connections,
                    "requests": self.requests,
                    "hop_by_hop": list(self.hop_by_hop),
                    "log": list(self.log),
                    "peer_closed": self.peer_closed,
                    "send_failed": self.send_failed,
                    "tls_failed": self.tls_failed,
                    "open": self.open}


STATS = Stats()
NAME = "up"
TLS_CTX = None		# --tls CERT KEY: the server context
_conn_seq = [0]


class Reader:
    """Buffered reads from a socket; EOFError at EOF."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def fill(self, want=262144):
        try:
            d = self.sock.recv(max(want, 65536))
        except (ConnectionResetError, ConnectionAbortedError):
            d = b""
        if not d:
            raise EOFError()
        self.buf += d

    def readline(self, limit=65536):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            if len(self.buf) > limit:
                raise ValueError("line too long")
            self.fill()

    def read_some(self, n):
        if not self.buf:
            self.fill()
        d = bytes(self.buf[:n])
        del self.buf[:n]
        return d

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill(n - len(self.buf))
        d = bytes(self.buf[:n])
        del self.buf[:n]
        return d


class Request:
    pass


def read_request(rd):
    """The next request (head only), None at a clean EOF between requests."""
    try:
        line = rd.readline()
        while line in (b"\r\n", b"\n"):
            line = rd.readline()
    except EOFError:
        return None
    parts = line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3:
        raise ValueError("bad request line %r" % line)
    r = Request()
    r.method, r.target, r.version = parts
    r.headers = []
    while True:
        line = rd.readline().decode("latin-1").rstrip("\r\n")
        if line == "":
            break
        n, _, v = line.partition(":")
        r.headers.append([n, v.strip()])
    u = urllib.parse.urlsplit(r.target)
    r.path = u.path if r.target.startswith("/") else r.target
    if r.target.startswith("/"):
        r.path = r.target.split("?", 1)[0]
    r.query = urllib.parse.parse_qs(u.query, keep_blank_values=True)
    return r


def hdr(r, name):
    name = name.lower()
    vals = [v for n, v in r.headers if n.lower() == name]
    return ", ".join(vals) if vals else None


def q(r, name, default=None):
    v = r.query.get(name)
    return v[0] if v else default


def qint(r, name, default=0):
    return int(q(r, name, str(default)))


def read_body(rd, r):
    """Read (and hash) the request body; sets body_bytes, sha256, chunked."""
    h = hashlib.sha256()
    n = 0
    te = (hdr(r, "transfer-encoding") or "").lower()
    r.chunked = "chunked" in te
    if r.chunked:
        while True:
            line = rd.readline().decode("latin-1").strip()
            size = int(line.split(";")[0], 16)
            if size == 0:
                while rd.readline() not in (b"\r\n", b"\n"):
                    pass	# trailer fields
                break
            left = size
            while left:
                d = rd.read_some(min(left, 262144))
                h.update(d)
                n += len(d)
                left -= len(d)
            if rd.readline() not in (b"\r\n", b"\n"):
                raise ValueError("bad chunk end")
    else:
        left = int(hdr(r, "content-length") or 0)
        while left:
            d = rd.read_some(min(left, 262144))
            h.update(d)
            n += len(d)
            left -= len(d)
    r.body_bytes = n
    r.body_sha256 = h.hexdigest()


def echo_json(r, cid, k):
    return {"method": r.method, "target": r.target, "version": r.version,
            "headers": r.headers, "body_bytes": r.body_bytes,
            "body_sha256": r.body_sha256, "chunked": r.chunked,
            "conn": cid, "conn_request": k, "upstream": NAME}


REASONS = {100: "Continue", 200: "OK", 201: "Created", 204: "No Content",
           304: "Not Modified", 400: "Bad Request", 404: "Not Found",
           500: "Internal Server Error", 503: "Service Unavailable"}


class Out:
    """The response being written on a connection."""

    def __init__(self, sock, r, cid):
        self.sock = sock
        self.r = r
        self.cid = cid
        self.head = r.method == "HEAD"

    def start(self, status, headers, reason=None):
        r = self.r
        if reason is None:
            reason = q(r, "reason") if q(r, "reason") is not None else \
                REASONS.get(status, "Status")
        if q(r, "interim") == "1":
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n"
                              b"HTTP/1.1 103 Early Hints\r\n"
                              b"Link: </style.css>; rel=preload\r\n\r\n")
        lines = ["HTTP/1.1 %d %s" % (status, reason)]
        lines.append("X-Upstream-Name: %s" % NAME)
        lines.append("X-Upstream-Conn: %d" % self.cid)
        if q(r, "reqid") is not None:
            lines.append("X-Request-Id: %s" % q(r, "reqid"))
        for hv in r.query.get("h", []):
            n, _, v = hv.partition(":")
            lines.append("%s: %s" % (n, v))
        for n, v in headers:
            lines.append("%s: %s" % (n, v))
        if q(r, "close") == "1":
            lines.append("Connection: close")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def send(self, data):
        if not self.head and data:
            self.sock.sendall(data)

    def full(self, status, headers, body, reason=None):
        self.start(status, list(headers) + [("Content-Length", len(body))],
                   reason)
        self.send(body)


def respond(sock, rd, r, cid, k):
    """Answer r.  Returns False if the connection must close after it."""
    out = Out(sock, r, cid)
    p = r.path
    if p == "/_stats":
        body = json.dumps(STATS.snapshot()).encode()
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return True
    if p == "/_reset":
        with STATS.lock:
            STATS.reset()
        sock.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
        return True
    if qint(r, "ms"):
        time.sleep(qint(r, "ms") / 1000.0)
    if p == "/silent":
        try:
            while True:
                rd.fill()
        except (EOFError, OSError):
            pass
        return False
    if p == "/close-before":
        return False
    if p == "/chunked":
        n, size = qint(r, "n", 3), qint(r, "size", 10)
        out.start(200, [("Content-Type", "application/octet-stream"),
                        ("Transfer-Encoding", "chunked")])
        if out.head:
            return True
        for i in range(n):
            piece = chunk_piece(i, size)
            sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        if q(r, "cut") == "1":
            return False
        sock.sendall(b"0\r\n\r\n")
        return True
    if p == "/close-delimited":
        n = qint(r, "bytes", 100)
        out.start(200, [("Content-Type", "application/octet-stream")])
        for piece in pattern_iter(n):
            out.send(piece)
        return False
    if p == "/big":
        n = qint(r, "bytes", 1 << 20)
        chunk = qint(r, "chunk", BLOCK)
        if q(r, "te") == "chunked":
            out.start(200, [("Content-Type", "application/octet-stream"),
                            ("Transfer-Encoding", "chunked")])
            if out.head:
                return True
            for piece in pattern_iter(n, chunk):
                sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        else:
            out.start(200, [("Content-Type", "application/octet-stream"),
                            ("Content-Length", n)])
            for piece in pattern_iter(n, chunk):
                out.send(piece)
        return True
    if p.startswith("/status/"):
        status = int(p[len("/status/"):])
        n = qint(r, "bytes", 0)
        if status < 200 or status in (204, 304):
            out.start(status, [])
        else:
            out.full(status, [("Content-Type", "application/octet-stream")],
                     pattern(n))
        return True
    if p == "/short":
        out.start(200, [("Content-Type", "application/octet-stream"),
                        ("Content-Length", qint(r, "promise", 1000))])
        out.send(pattern(qint(r, "send", 500)))
        return False
    if p == "/trickle":
        n, pieces = qint(r, "bytes", 300), max(1, qint(r, "pieces", 3))
        gap = qint(r, "gap_ms", 100) / 1000.0
        data = pattern(n)
        out.start(200, [("Content-Type", "application/octet-stream"),
                        ("Content-Length", n)])
        step = (n + pieces - 1) // pieces
        for i in range(0, n, step):
            if i:
                time.sleep(gap)
            out.send(data[i:i + step])
        return True
    body = json.dumps(echo_json(r, cid, k)).encode()
    out.full(200, [("Content-Type", "application/json")], body)
    return True


def record(r, cid, counted_gen):
    """Count r; returns the generation its connection is counted in."""
    with STATS.lock:
        if counted_gen != STATS.gen:
            STATS.connections += 1
        STATS.requests += 1
        STATS.log.append([cid, r.method, r.target])
        del STATS.log[:-200]
        named = []
        for n, v in r.headers:
            if n.lower() == "connection":
                named += [t.strip().lower() for t in v.split(",")]
        for n, v in r.headers:
            ln = n.lower()
            if ln in HOP_BY_HOP or ln.startswith("proxy-") or ln in named:
                STATS.hop_by_hop.append([n, v, r.target])
        del STATS.hop_by_hop[:-200]
        return STATS.gen


def serve_conn(sock):
    with STATS.lock:
        STATS.accepted += 1
        STATS.open += 1
        _conn_seq[0] += 1
        cid = _conn_seq[0]
    rd = Reader(sock)
    counted_gen = None
    is_internal = False
    drop_next = False
    k = 0
    try:
        while True:
            r = read_request(rd)
            if r is None:
                with STATS.lock:
                    STATS.peer_closed += 1
                return
            internal = r.path in ("/_stats", "/_reset")
            if internal and k == 0 and not is_internal:
                is_internal = True	# a test asking, not keygated
                with STATS.lock:
                    STATS.open -= 1
            if not internal:
                k += 1
                counted_gen = record(r, cid, counted_gen)
            if qint(r, "stall_ms"):
                time.sleep(qint(r, "stall_ms") / 1000.0)
            if (hdr(r, "expect") or "").lower() == "100-continue":
                sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            read_body(rd, r)
            if drop_next:
                return
            keep = respond(sock, rd, r, cid, k)
            if not keep or q(r, "close") == "1" or \
                    (hdr(r, "connection") or "").lower() == "close" or \
                    r.version == "HTTP/1.0":
                return
            if qint(r, "idle_close_ms"):
                time.sleep(qint(r, "idle_close_ms") / 1000.0)
                return
            drop_next = q(r, "drop_next") == "1"
    except (BrokenPipeError, ConnectionResetError):
        with STATS.lock:
            STATS.send_failed += 1
    except (EOFError, ValueError, OSError):
        pass
    finally:
        if not is_internal:
            with STATS.lock:
                STATS.open -= 1
        try:
            sock.close()
        except OSError:
            pass


def serve_tls(sock):
    """The TLS handshake (in the connection's thread), then serve_conn."""
    try:
        sock.settimeout(10)
        tls = TLS_CTX.wrap_socket(sock, server_side=True)
        tls.settimeout(None)
    except (OSError, ssl.SSLError):
        with STATS.lock:
            STATS.tls_failed += 1
        sock.close()
        return
    serve_conn(tls)


def accept_loop(ls, handler):
    while True:
        try:
            s, _ = ls.accept()
        except OSError:
            continue
        s.setblocking(True)
        threading.Thread(target=handler, args=(s,), daemon=True).start()


def listen_sockets(ipv6, fixed=0):
    """A listener on 127.0.0.1 (and [::1] on the same port if ipv6), on
    port fixed if not 0 (an upstream brought back on its old port)."""
    if fixed:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", fixed))
        s.listen(128)
        return fixed, [s]
    for _ in range(20):
        s4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s4.bind(("127.0.0.1", 0))
        s4.listen(128)
        port = s4.getsockname()[1]
        if not ipv6:
            return port, [s4]
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s6.bind(("::1", port))
        except OSError:
            s4.close()
            s6.close()
            continue
        s6.listen(128)
        return port, [s4, s6]
    raise OSError("no port free on both 127.0.0.1 and ::1")


def main(argv):
    global NAME
    ipv6 = "--ipv6" in argv
    global TLS_CTX
    if "--name" in argv:
        NAME = argv[argv.index("--name") + 1]
    if "--tls" in argv:
        i = argv.index("--tls")
        TLS_CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        TLS_CTX.load_cert_chain(argv[i + 1], argv[i + 2])
    fixed = int(argv[argv.index("--port") + 1]) if "--port" in argv else 0
    port, socks = listen_sockets(ipv6, fixed)
    serve_forever(port, socks, serve_tls if TLS_CTX else serve_conn)


def serve_forever(port, socks, handler):
    """Accept on socks, each connection served by handler in a thread of
    its own; say "PORT n" (ServerProcess waits for it), then go on as long
    as whoever started us holds our stdin open."""
    for s in socks:
        threading.Thread(target=accept_loop, args=(s, handler),
                         daemon=True).start()
    sys.stdout.write("PORT %d\n" % port)
    sys.stdout.flush()
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, KeyboardInterrupt):
        pass
    os._exit(0)


# --- the client side: start, query and stop upstreams -------------------------

_running = []
_lock = threading.Lock()


class ServerProcess:
    """A test server subprocess, "SCRIPT --serve --name NAME ARGS...", that
    prints "PORT n" once it listens on 127.0.0.1 and serves /_stats and
    /_reset (upstream.py, wsupstream.py); killed by stop(), stop_all() or
    at exit."""

    def __init__(self, script, args=(), name="up", tls=None, timeout=10.0):
        what = os.path.basename(script)
        argv = [sys.executable, os.path.abspath(script), "--serve",
                "--name", name] + list(args)
        self.name = name
        self.tls = tls
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     start_new_session=True)
        with _lock:
            _running.append(self)
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("%s did not start" % what)
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                b = os.read(self.proc.stdout.fileno(), 1)
                if not b:
                    self.stop()
                    raise RuntimeError("%s exited at start" % what)
                line += b
        self.port = int(line.split()[1])
        self.url = "%s://127.0.0.1:%d" % ("https" if tls else "http",
                                          self.port)

    def _get(self, path):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        if self.tls is not None:
            # The test's own query: the certificate is not its subject.
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s)
        try:
            s.sendall(("GET %s HTTP/1.1\r\nHost: up\r\nConnection: close"
                       "\r\n\r\n" % path).encode())
            data = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
        finally:
            s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        return body

    def stats(self):
        """The counters (see Stats); this query itself is not counted."""
        return json.loads(self._get("/_stats").decode())

    def reset(self):
        self._get("/_reset")

    def stop(self):
        p = self.proc
        if p is None:
            return
        self.proc = None
        try:
            p.kill()		# by pid: our own child
        except OSError:
            pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for f in (p.stdin, p.stdout):
            try:
                f.close()
            except OSError:
                pass
        with _lock:
            if self in _running:
                _running.remove(self)


class Upstream(ServerProcess):
    """An upstream.py subprocess."""

    def __init__(self, name="up", ipv6=False, timeout=10.0, tls=None,
                 port=0):
        """tls: (CERT, KEY) paths to serve HTTPS with; port: listen on
        that port of 127.0.0.1 (not with ipv6) instead of one the kernel
        picks."""
        args = []
        if ipv6:
            args.append("--ipv6")
        if port:
            args += ["--port", str(port)]
        if tls is not None:
            args += ["--tls", tls[0], tls[1]]
        ServerProcess.__init__(self, __file__, args, name, tls, timeout)


def stop_all():
    with _lock:
        us = list(_running)
    for u in us:
        u.stop()


atexit.register(stop_all)


def with_upstreams(fn):
    """Decorate a test: whatever happens, stop the upstreams it started."""
    @functools.wraps(fn)
    def t():
        try:
            fn()
        finally:
            stop_all()
    return t


if __name__ == "__main__":
    if "--serve" in sys.argv:
        main(sys.argv)
    else:
        sys.stderr.write("usage: upstream.py --serve [--name N] [--ipv6] [--port P]\n")
        sys.exit(2)
