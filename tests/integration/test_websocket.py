"""
WebSocket (HTTP Upgrade) tunnelling through keygated, seen from a client
speaking RFC 6455 (written out below: masked frames, 7-, 16- and 64-bit
lengths, fragments, ping/pong, close) and from wsupstream.py (a
WebSocket echo server in a subprocess that counts the handshakes and plain
requests it saw, and keeps the headers each handshake arrived with).

A route with auth=api-key to an http:// upstream: the client's GET with
Connection: Upgrade, Upgrade: websocket and the Sec-WebSocket-* headers is
authenticated and rate-limited like any request, goes upstream with
Connection: upgrade and Upgrade: websocket (Sec-WebSocket-* unchanged, the
identity headers added, the API key and hop-by-hop headers removed), and
the upstream's 101 comes back with Connection: upgrade, Upgrade: websocket
and Sec-WebSocket-Accept; then bytes go both ways until either side closes
or the tunnel has been idle for the upstream's idle_timeout.

What is checked: the handshake both ways; text, binary, fragmented,
ping/pong and pipelined messages of every length form echoed intact; a
1 MiB message; 100 MiB through a client that stops reading, with
keygated's memory bounded (back-pressure); no key (401) and a bad key
(401) never reach the upstream; rate=2/60s refuses the third handshake
(429); the idle timeout (closed after about 1 s without traffic, kept
open while messages flow every 300 ms); a tunnel is one request (one
access log line, status 101, one count in keygate_requests_total); an
upgrade the upstream refuses (403) is an ordinary response and the
connection serves the next requests; plain requests on the route; the
close handshake, a half-close and an abrupt close by the client.

The first two tests talk to wsupstream.py directly, without keygated,
and check the framing code against the examples of RFC 6455: if they
fail, the harness is broken, not keygated.
"""

import base64
import hashlib
import os
import re
import socket
import struct
import sys
import threading
import time

import kgtest as kg
import upstream as U
import wsupstream as W
from wsupstream import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG,
                        OP_TEXT)

with_upstreams = U.with_upstreams

MiB = 1 << 20

OP_NAMES = {0: "continuation", 1: "text", 2: "binary", 8: "close",
            9: "ping", 10: "pong"}

# The route every tunnel test uses (name=ws in metrics and the access log)
# and one limited to 2 requests a minute per key.  "/" (kgtest's start
# probe) matches neither, so it never reaches the upstream.
ROUTES = ("route GET ^/ws(/|$) auth=api-key upstream=ws name=ws",
          "route GET ^/lim(/|$) auth=api-key rate=2/60s upstream=ws "
          "name=lim")


# --- RFC 6455, client side --------------------------------------------------

accept_of = W.accept_value


def new_key():
    return base64.b64encode(os.urandom(16)).decode("ascii")


def client_frame(opcode, payload=b"", fin=True, mask=None):
    """A masked frame, as a client must send it (mask: 4 bytes, random
    by default)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return W.frame(opcode, payload, fin, os.urandom(4) if mask is None
                   else mask)


def parse_server_frame(buf):
    """(fin, opcode, payload, frame length) of the unmasked frame at the
    start of buf, or None if buf does not hold all of it yet.  A masked
    frame or RSV bits fail: a server sends neither (RFC 6455 5.1, 5.2)."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    kg.check(not (b1 & 0x80), "a frame from the server side is masked "
             "(first bytes %r)" % bytes(buf[:16]))
    kg.check(not (b0 & 0x70), "a frame from the server side has RSV bits "
             "set (first bytes %r)" % bytes(buf[:16]))
    n, h = b1 & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, h = struct.unpack_from(">H", buf, 2)[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, h = struct.unpack_from(">Q", buf, 2)[0], 10
        kg.check(n < (1 << 40), "absurd frame length %d (stream out of "
                 "step?)" % n)
    if len(buf) < h + n:
        return None
    return bool(b0 & 0x80), b0 & 0x0F, bytes(buf[h:h + n]), h + n


def same_bytes(got, want, what):
    """got == want, said briefly when they are big."""
    if got == want:
        return
    if len(got) + len(want) < 400:
        raise AssertionError("%s: expected %r, got %r" % (what, want, got))
    i = next((i for i in range(min(len(got), len(want)))
              if got[i] != want[i]), min(len(got), len(want)))
    raise AssertionError("%s: %d bytes received, %d expected, first "
                         "difference at offset %d" % (what, len(got),
                                                      len(want), i))


class Closed(AssertionError):
    """The connection ended while a frame was expected."""


class WS:
    """The client end of a tunnel: a kg.Conn whose 101 has been read."""

    def __init__(self, conn, what="tunnel"):
        self.c = conn
        self.sock = conn.sock
        self.buf = bytearray(conn.buf)	# what came after the 101 head
        conn.buf = b""
        self.what = what
        self.eof = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.c.close()

    def settimeout(self, t):
        self.sock.settimeout(t)

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, opcode, payload=b"", fin=True):
        self.sock.sendall(client_frame(opcode, payload, fin))

    def _fill(self, waiting):
        try:
            d = self.sock.recv(1 << 20)
        except socket.timeout:
            raise AssertionError("%s: nothing arrived for %.1f s while "
                                 "waiting for %s (%d bytes buffered: %r)" %
                                 (self.what, self.sock.gettimeout(), waiting,
                                  len(self.buf), bytes(self.buf[:40])))
        except (ConnectionResetError, ConnectionAbortedError):
            d = b""
        if not d:
            self.eof = True
            raise Closed("%s: the connection closed while waiting for %s "
                         "(%d bytes buffered: %r)" % (
                             self.what, waiting, len(self.buf),
                             bytes(self.buf[:40])))
        self.buf += d

    def recv_frame(self, waiting="a frame"):
        """(fin, opcode, payload) of the next frame."""
        while True:
            f = parse_server_frame(self.buf)
            if f is not None:
                del self.buf[:f[3]]
                return f[:3]
            self._fill(waiting)

    def recv_message(self, waiting="a message"):
        """(opcode, payload) of the next control frame or whole message
        (fragments joined)."""
        op, parts = None, []
        while True:
            fin, fop, payload = self.recv_frame(waiting)
            if fop >= 8:
                kg.check(op is None, "%s: control frame %s inside a "
                         "fragmented message" % (self.what, OP_NAMES.get(
                             fop, fop)))
                return fop, payload
            if op is None:
                kg.check(fop != OP_CONT, "%s: continuation frame without "
                         "a message" % self.what)
                op = fop
            else:
                kg.eq(fop, OP_CONT, "%s: opcode inside a fragmented "
                      "message" % self.what)
            parts.append(payload)
            if fin:
                return op, b"".join(parts)

    def expect(self, opcode, payload, what):
        """The next message is opcode with payload."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        op, got = self.recv_message(what)
        kg.eq(OP_NAMES.get(op, op), OP_NAMES[opcode], "%s: opcode" % what)
        same_bytes(got, payload, "%s: payload" % what)

    def echo(self, opcode, payload, what):
        self.send(opcode, payload)
        self.expect(opcode, payload, what)

    def wait_eof(self, timeout, what):
        """Read until EOF (within timeout s); returns the bytes that came
        before it."""
        old = self.sock.gettimeout()
        deadline = time.monotonic() + timeout
        try:
            while not self.eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("%s: %s still open after %.1f s" %
                                         (what, self.what, timeout))
                self.sock.settimeout(left)
                try:
                    self._fill("EOF")
                except Closed:
                    break
                except AssertionError:	# the timeout
                    raise AssertionError("%s: %s still open after %.1f s" %
                                         (what, self.what, timeout))
        finally:
            self.sock.settimeout(old)
        got = bytes(self.buf)
        self.buf = bytearray()
        return got

    def close_handshake(self, what, code=1000, reason=b"bye"):
        """Send a close frame; the same comes back, then EOF."""
        payload = struct.pack(">H", code) + reason
        self.send(OP_CLOSE, payload)
        self.expect(OP_CLOSE, payload, "%s: the echoed close frame" % what)
        rest = self.wait_eof(3.0, "%s: after the close frames" % what)
        same_bytes(rest, b"", "%s: bytes after the close frame" % what)


# --- handshakes -------------------------------------------------------------

def upgrade_headers(key, secret=None, extra=(), connection="Upgrade"):
    h = [("Connection", connection), ("Upgrade", "websocket"),
         ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]
    if secret is not None:
        h.append(("X-API-KEY", secret))
    return h + list(extra)


def handshake(port, path, secret=None, extra=(), key=None, conn=None,
              connection="Upgrade", timeout=kg.DEFAULT_TIMEOUT):
    """Send an opening handshake (on conn, or a new connection); returns
    (conn, response, key).  The response is read up to its head for a
    1xx (the tunnel's bytes stay in conn.buf), whole otherwise."""
    key = key or new_key()
    c = conn or kg.Conn(port, timeout=timeout)
    try:
        c.send(kg.raw_request("GET", path, host="127.0.0.1",
                              headers=upgrade_headers(key, secret, extra,
                                                      connection)))
        r = c.read_response()
    except BaseException:
        if conn is None:
            c.close()
        raise
    return c, r, key


def tokens(value):
    return [t.strip().lower() for t in (value or "").split(",")
            if t.strip()]


def check_switched(r, key, what):
    """r is a 101 agreeing to the upgrade that key asked for."""
    kg.check(r.status == 101, "%s: status %d, expected 101 (headers %r, "
             "body %r)" % (what, r.status, r.headers, r.body[:300]))
    kg.eq(tokens(r.header("upgrade")), ["websocket"], "%s: Upgrade "
          "tokens of the 101 (headers %r)" % (what, r.headers))
    kg.check("upgrade" in tokens(r.header("connection")),
             "%s: the 101's Connection %r does not name upgrade" %
             (what, r.header_all("connection")))
    kg.eq(r.header_all("sec-websocket-accept"), [accept_of(key)],
          "%s: Sec-WebSocket-Accept of the 101" % what)
    # RFC 9110 8.6 and 6.4.1: no Content-Length in a 1xx, no body.
    kg.eq(r.header("content-length"), None, "%s: Content-Length in the "
          "101" % what)
    kg.eq(r.header("transfer-encoding"), None, "%s: Transfer-Encoding in "
          "the 101" % what)


def open_ws(d, path, secret, extra=(), what=None):
    """A tunnel through d to path, checked; a WS."""
    what = what or "handshake for %s" % path
    c, r, key = handshake(d.port, path, secret, extra)
    try:
        check_switched(r, key, what)
    except BaseException:
        c.close()
        raise
    return WS(c, "the tunnel to %s" % path)


# --- keygated and the upstream -----------------------------------------------

def start_up():
    return W.WsUpstream(name="ws")


def gateway(up, opts="read_timeout=5s", **settings):
    """keygated (one worker) in front of up as upstream "ws", with the
    routes above, the admin API on {port2} and metrics on {port3}; up's
    counters are zeroed once it serves."""
    conf = kg.config("upstream ws %s%s" % (up.url, " " + opts if opts
                                           else ""),
                     *ROUTES, upstream=False, admin="{port2}",
                     metrics_listen="127.0.0.1:{port3}", **settings)
    d = kg.start(conf, nports=3)
    up.reset()
    return d


def up_headers(headers, name):
    """Values of name (case-insensitive) in [[name, value]...]."""
    return [v for n, v in headers if n.lower() == name.lower()]


def last_handshake(up, what):
    """[target, headers] of the one upgrade up saw."""
    st = up.stats()
    kg.eq(st["upgrades"], 1, "%s: upgrade requests the upstream saw "
          "(stats %r)" % (what, st))
    return st["handshakes"][-1]


def no_protocol_errors(up, what):
    st = up.stats()
    kg.eq(st["protocol_errors"], [], "%s: protocol errors the upstream "
          "found" % what)
    return st


REQUESTS_RE = re.compile(r'^keygate_requests_total\{([^}]*)\} (\S+)$', re.M)
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def requests_total(d):
    """{(route, code): value} of keygate_requests_total (metrics_listen)."""
    r = kg.get(d.ports[2], "/metrics")
    kg.eq(r.status, 200, "GET /metrics (%r)" % r.body[:200])
    out = {}
    for m in REQUESTS_RE.finditer(r.body.decode()):
        labels = dict(LABEL_RE.findall(m.group(1)))
        out[(labels.get("route"), labels.get("code"))] = float(m.group(2))
    return out


def route_delta(now, base, route):
    """{code: growth} of route's series since base."""
    out = {}
    for (rt, code), v in now.items():
        if rt == route and v != base.get((rt, code), 0.0):
            out[code] = v - base.get((rt, code), 0.0)
    return out


def pattern_bytes(n, seed):
    """n reproducible bytes (sha256 in counter mode)."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d:%d" % (seed, i)).digest()
        i += 1
    return bytes(out[:n])


def text_of(n, seed=0):
    """A text payload of exactly n bytes (ASCII)."""
    unit = ("msg-%d-" % seed).encode()
    return (unit * (n // len(unit) + 1))[:n]


# === the harness itself ======================================================

@with_upstreams
def test_selfcheck_framing_and_upstream():
    """Without keygated.  The client framing gives RFC 6455's own
    examples (1.3: the accept value; 5.7: "Hello" masked, 256 and 65536
    bytes unmasked; frame lengths parsed back); wsupstream.py answers a
    direct handshake with the right accept value and the first
    subprotocol offered, sends its hello, echoes text and binary, echoes
    a close and closes."""
    kg.eq(W.accept_value("dGhlIHNhbXBsZSBub25jZQ=="),
          "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "RFC 6455 1.3 accept value")
    kg.eq(client_frame(OP_TEXT, b"Hello", mask=bytes.fromhex("37fa213d")),
          bytes.fromhex("818537fa213d7f9f4d5158"), "5.7 masked Hello")
    kg.eq(W.server_frame(OP_TEXT, b"Hello"), bytes.fromhex("810548656c6c6f"),
          "5.7 unmasked Hello")
    kg.eq(W.server_frame(OP_BINARY, bytes(256))[:4],
          bytes.fromhex("827e0100"), "5.7 256 bytes")
    kg.eq(W.server_frame(OP_BINARY, bytes(65536))[:10],
          bytes.fromhex("827f0000000000010000"), "5.7 65536 bytes")
    for n in (0, 125, 126, 65535, 65536):
        f = parse_server_frame(W.server_frame(OP_BINARY, b"x" * n) + b"zz")
        kg.eq((f[0], f[1], len(f[2]), f[3]), (True, OP_BINARY, n,
              len(W.server_frame(OP_BINARY, b"x" * n))),
              "parse of a %d-byte frame" % n)
    # wsupstream.py directly.
    up = start_up()
    c, r, key = handshake(up.port, "/direct?hello=1", extra=[
        ("Sec-WebSocket-Protocol", "kgtest.v1, chat")])
    with WS(c, "the direct tunnel") as ws:
        check_switched(r, key, "direct handshake")
        kg.eq(r.header("sec-websocket-protocol"), "kgtest.v1",
              "subprotocol chosen")
        ws.expect(OP_TEXT, "hello", "the upstream's hello")
        ws.echo(OP_TEXT, "tëxt", "direct text")
        ws.echo(OP_BINARY, bytes(range(256)) * 300, "direct binary")
        ws.close_handshake("direct close")
    no_protocol_errors(up, "direct")


@with_upstreams
def test_selfcheck_ping_close_refuse():
    """Without keygated: a ping is answered by a pong with its payload, a
    close frame is echoed and the connection closed; /refuse gets 403 and
    the connection then serves a plain GET; the counters say 2 upgrades
    (1 switched, 1 refused), 1 plain request, 1 close, no errors."""
    up = start_up()
    c, r, key = handshake(up.port, "/direct")
    with WS(c, "the direct tunnel") as ws:
        check_switched(r, key, "direct handshake")
        ws.send(OP_PING, b"ping-payload")
        ws.expect(OP_PONG, b"ping-payload", "pong")
        ws.close_handshake("direct close")
    with kg.Conn(up.port) as c:
        _, r, _ = handshake(up.port, "/x/refuse", conn=c)
        kg.eq(r.status, 403, "/refuse status")
        c.send(kg.raw_request("GET", "/plain"))
        r = c.read_response()
        kg.eq(r.status, 200, "plain GET after the refusal")
        kg.eq(r.json()["upgrade"], False, "plain GET echo")
    st = up.stats()
    kg.eq((st["upgrades"], st["switched"], st["refused"], st["requests"],
           st["closes"], st["pings"], st["protocol_errors"]),
          (2, 1, 1, 1, 1, 1, []), "upstream counters (%r)" % st)


# === through keygated ========================================================

@with_upstreams
def test_handshake():
    """A key's upgrade: 101 with Upgrade: websocket, Connection naming
    upgrade, the right Sec-WebSocket-Accept, the subprotocol the upstream
    chose, no Content-Length.  The upstream got one GET with Connection:
    upgrade only (the client's keep-alive and the header it named gone,
    Keep-Alive gone), Upgrade: websocket, Sec-WebSocket-Key, -Version,
    -Protocol and -Extensions unchanged, the key's identity
    (X-Consumer-Id, X-Key-Id, X-Scopes, X-Auth-Scheme: api-key; the
    client's forged X-Consumer-Id gone), X-Forwarded-For, X-Request-Id
    and the client's Host; no X-API-KEY, nor the secret anywhere."""
    up = start_up()
    d = gateway(up)
    k, secret = kg.create_key(d, "ws-owner", scopes=["chat"])
    key = new_key()
    extra = [("Sec-WebSocket-Protocol", "kgtest.v1, chat"),
             ("Sec-WebSocket-Extensions", "x-kgtest; level=1"),
             ("Origin", "http://app.example"),
             ("X-Consumer-Id", "attacker"),
             ("Keep-Alive", "timeout=5"), ("X-Hop", "hop-secret")]
    c, r, key = handshake(d.port, "/ws/chat?room=1", secret, extra, key=key,
                          connection="keep-alive, Upgrade, X-Hop")
    with WS(c) as ws:
        check_switched(r, key, "handshake through keygated")
        kg.eq(r.header_all("sec-websocket-protocol"), ["kgtest.v1"],
              "Sec-WebSocket-Protocol of the 101")
        target, h = last_handshake(up, "handshake")
        kg.eq(target, "/ws/chat?room=1", "target at the upstream")
        conn = up_headers(h, "connection")
        kg.eq([tokens(v) for v in conn], [["upgrade"]],
              "Connection header(s) at the upstream (%r)" % h)
        kg.eq(up_headers(h, "upgrade"), ["websocket"], "Upgrade at the "
              "upstream")
        for name, value in (("Sec-WebSocket-Key", key),
                            ("Sec-WebSocket-Version", "13"),
                            ("Sec-WebSocket-Protocol", "kgtest.v1, chat"),
                            ("Sec-WebSocket-Extensions",
                             "x-kgtest; level=1"),
                            ("Origin", "http://app.example"),
                            ("Host", "127.0.0.1"),
                            ("X-Consumer-Id", "ws-owner"),
                            ("X-Key-Id", k["id"]),
                            ("X-Scopes", "chat"),
                            ("X-Auth-Scheme", "api-key"),
                            ("X-Forwarded-For", "127.0.0.1")):
            kg.eq(up_headers(h, name), [value], "%s at the upstream" % name)
        for name in ("x-api-key", "keep-alive", "x-hop", "authorization"):
            kg.eq(up_headers(h, name), [], "%s at the upstream (headers %r)"
                  % (name, h))
        kg.eq(len(up_headers(h, "x-request-id")), 1, "X-Request-Id at the "
              "upstream")
        kg.check(secret not in repr(h), "the key's secret reached the "
                 "upstream: %r" % h)
        ws.echo(OP_TEXT, "first", "a message after the handshake")
        ws.close_handshake("close")
    st = no_protocol_errors(up, "handshake")
    kg.eq((st["upgrades"], st["switched"], st["requests"]), (1, 1, 0),
          "upgrades, 101s and plain requests at the upstream")


@with_upstreams
def test_echo_text_binary_ping():
    """Through the tunnel: the upstream's own message sent with its 101
    (in the same write) arrives; text (UTF-8) and binary messages of 0 to
    70000 bytes (7-, 16- and 64-bit lengths) are echoed intact with their
    opcode; 6 messages sent back to back come back in order; a ping gets
    its pong; a text message sent in 3 fragments with a ping between two
    of them gets the pong, then the message whole."""
    up = start_up()
    d = gateway(up)
    _, secret = kg.create_key(d, "echo")
    with open_ws(d, "/ws/echo?hello=1", secret) as ws:
        ws.expect(OP_TEXT, "hello", "the message that came with the 101")
        ws.echo(OP_TEXT, "h\u00e9llo w\u00f6rld \u2603 \U0001F680",
                "UTF-8 text")
        sent = 2
        for i, n in enumerate((0, 1, 125, 126, 127, 1000, 65535, 65536,
                               70000)):
            ws.echo(OP_TEXT, text_of(n, i), "text of %d bytes" % n)
            ws.echo(OP_BINARY, pattern_bytes(n, i), "binary of %d bytes" % n)
            sent += 2
        batch = [(OP_TEXT if i % 2 else OP_BINARY, pattern_bytes(
            100 + 3000 * i, 50 + i) if i % 2 == 0 else text_of(
                100 + 3000 * i, 50 + i)) for i in range(6)]
        ws.send_raw(b"".join(client_frame(op, p) for op, p in batch))
        for i, (op, p) in enumerate(batch):
            ws.expect(op, p, "back-to-back message %d" % i)
        sent += len(batch)
        ws.send(OP_PING, b"are you there?")
        ws.expect(OP_PONG, b"are you there?", "pong")
        ws.send(OP_TEXT, "frag-one ", fin=False)
        ws.send(OP_PING, b"mid")
        ws.send(OP_CONT, "frag-two ", fin=False)
        ws.send(OP_CONT, "frag-three", fin=True)
        ws.expect(OP_PONG, b"mid", "pong between fragments")
        ws.expect(OP_TEXT, "frag-one frag-two frag-three",
                  "the fragmented message")
        sent += 1
        ws.close_handshake("close")
    st = no_protocol_errors(up, "echo")
    kg.eq((st["messages"], st["pings"], st["closes"]), (sent - 1, 2, 1),
          "messages echoed (besides the hello), pings and closes at the "
          "upstream")


@with_upstreams
def test_big_message():
    """A 1 MiB binary message in one frame (64-bit length), then a second
    one right behind it and a short text: all three come back intact and
    in order (1 MiB is four times what keygated holds before it stops
    reading a side)."""
    up = start_up()
    d = gateway(up)
    _, secret = kg.create_key(d, "big")
    a, b = pattern_bytes(MiB, 1), pattern_bytes(MiB, 2)
    with open_ws(d, "/ws/big", secret) as ws:
        ws.settimeout(10.0)
        ws.echo(OP_BINARY, a, "1 MiB message")
        done = []
        t = threading.Thread(target=lambda: (ws.send_raw(
            client_frame(OP_BINARY, b) + client_frame(OP_TEXT, "after")),
            done.append(1)), daemon=True)
        t.start()
        ws.expect(OP_BINARY, b, "second 1 MiB message")
        ws.expect(OP_TEXT, "after", "the text after it")
        t.join(10)
        kg.check(done, "the sender thread did not finish")
        ws.close_handshake("close")
    st = no_protocol_errors(up, "big")
    kg.eq((st["messages"], st["message_bytes"]), (3, 2 * MiB + 5),
          "messages and bytes at the upstream")


class SmallConn(kg.Conn):
    """A kg.Conn whose receive buffer is small (set before connect), so
    that what the client does not read stays in keygated's side."""

    def __init__(self, port, rcvbuf, timeout):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(("127.0.0.1", port))
        except BaseException:
            self.sock.close()
            raise
        self.buf = b""
        self.eof = False
        self.received = 0


# As test_proxy.py's 100 MiB transfers: room for a sanitizer build's
# quarantine, far below what buffering 100 MiB would take.
RSS_LIMIT_MIB = 64


@with_upstreams
def test_backpressure_bounded_memory():
    """100 messages of 1 MiB sent at once by a client that reads nothing
    for 2 s (its receive buffer 64 KiB): the echoes wait, keygated stops
    reading from the upstream, the upstream stops reading, keygated stops
    reading from the client, instead of buffering (no process of
    keygated grows by 64 MiB); then all 100 come back intact and in
    order."""
    up = start_up()
    d = gateway(up)
    _, secret = kg.create_key(d, "pressure")
    key = new_key()
    base = os.urandom(MiB)
    n = 100

    def message(i):
        return struct.pack(">Q", i) + base[8:]
    c = SmallConn(d.port, 65536, 30.0)
    try:
        c.send(kg.raw_request("GET", "/ws/pressure", host="127.0.0.1",
                              headers=upgrade_headers(key, secret)))
        r = c.read_response()
        check_switched(r, key, "handshake")
        ws = WS(c, "the tunnel")
        watch = kg.RssWatch(d)
        err = []

        def sender():
            try:
                for i in range(n):
                    ws.send(OP_BINARY, message(i))
            except Exception as e:
                err.append(e)
        t = threading.Thread(target=sender, daemon=True)
        t.start()
        time.sleep(2.0)
        watch.sample()
        for i in range(n):
            ws.expect(OP_BINARY, message(i), "message %d of %d" % (i + 1, n))
        t.join(30)
        kg.check(not t.is_alive(), "the sender is still sending")
        kg.check(not err, "sending failed: %r" % err)
        watch.check(RSS_LIMIT_MIB, "100 MiB through a client that paused")
        ws.close_handshake("close")
    finally:
        c.close()
    st = no_protocol_errors(up, "back-pressure")
    kg.eq((st["messages"], st["message_bytes"]), (n, n * MiB),
          "messages and bytes echoed by the upstream")


@with_upstreams
def test_refused_without_key():
    """An upgrade without a key is refused 401 missing_credentials (with
    WWW-Authenticate), one with an unknown key 401 invalid_credentials;
    neither is a 101 or says Upgrade, and the upstream saw no request at
    all."""
    up = start_up()
    d = gateway(up)
    c, r, _ = handshake(d.port, "/ws/nokey")
    c.close()
    kg.check_refusal(r, 401, "missing_credentials", "upgrade without a key")
    kg.check(r.header("www-authenticate") is not None,
             "no WWW-Authenticate on the 401")
    kg.eq(r.header("upgrade"), None, "Upgrade on the 401")
    c, r, _ = handshake(d.port, "/ws/badkey", "live_" + "A" * 32)
    c.close()
    kg.check_refusal(r, 401, "invalid_credentials", "upgrade with an "
                     "unknown key")
    kg.eq(r.header("upgrade"), None, "Upgrade on the 401")
    time.sleep(0.2)
    st = up.stats()
    kg.eq((st["upgrades"], st["requests"], st["connections"]), (0, 0, 0),
          "upgrades, plain requests and connections at the upstream "
          "(log %r)" % st["log"])


@with_upstreams
def test_rate_limit():
    """rate=2/60s on the route: a key's first two upgrades are 101 with
    RateLimit-Remaining 1 then 0; the third is 429 rate_limited with
    Retry-After and never reaches the upstream (2 upgrades seen)."""
    up = start_up()
    d = gateway(up)
    _, secret = kg.create_key(d, "limited")
    for i, left in enumerate(("1", "0")):
        c, r, key = handshake(d.port, "/lim/chat", secret)
        with WS(c, "tunnel %d" % (i + 1)) as ws:
            check_switched(r, key, "handshake %d" % (i + 1))
            kg.eq(r.header("ratelimit-remaining"), left,
                  "RateLimit-Remaining of handshake %d (headers %r)" %
                  (i + 1, r.headers))
            ws.echo(OP_TEXT, "n%d" % i, "message in tunnel %d" % (i + 1))
            ws.close_handshake("tunnel %d" % (i + 1))
    c, r, _ = handshake(d.port, "/lim/chat", secret)
    c.close()
    kg.check_refusal(r, 429, "rate_limited", "third handshake")
    kg.check(r.header("retry-after") is not None, "no Retry-After on the "
             "429")
    st = no_protocol_errors(up, "rate limit")
    kg.eq((st["upgrades"], st["switched"]), (2, 2), "upgrades at the "
          "upstream")


@with_upstreams
def test_idle_timeout():
    """idle_timeout=1s (read_timeout=5s): a tunnel with no traffic is
    closed by keygated 0.7 to 3 s after its 101, both ends (the client
    sees EOF, the upstream's side ends too); a tunnel with a message each
    way every 300 ms stays open for 2.1 s, then, silent, closes 0.7 to
    3 s after its last message."""
    up = start_up()
    d = gateway(up, "read_timeout=5s idle_timeout=1s")
    _, secret = kg.create_key(d, "idle")
    with open_ws(d, "/ws/idle", secret) as ws:
        t0 = time.monotonic()
        ws.wait_eof(4.0, "an idle tunnel (idle_timeout=1s)")
        dt = time.monotonic() - t0
    kg.check(0.7 <= dt <= 3.0, "the idle tunnel closed %.2f s after its "
             "101, expected about 1 s" % dt)
    kg.wait_for(lambda: up.stats()["tunnels_open"] == 0, 2.0,
                "the upstream's side of the idle tunnel to end")
    with open_ws(d, "/ws/busy", secret) as ws:
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < 2.1:
            ws.echo(OP_TEXT, "tick %d" % i, "tick %d at %.1f s" %
                    (i, time.monotonic() - t0))
            i += 1
            time.sleep(0.3)
        ws.echo(OP_BINARY, b"still here", "a message after %.1f s of "
                "traffic" % (time.monotonic() - t0))
        last = time.monotonic()
        ws.wait_eof(4.0, "the tunnel once silent")
        dt = time.monotonic() - last
    kg.check(i >= 5, "only %d ticks in 2.1 s" % i)
    kg.check(0.7 <= dt <= 3.0, "the tunnel closed %.2f s after its last "
             "message, expected about 1 s" % dt)
    kg.wait_for(lambda: up.stats()["tunnels_open"] == 0, 2.0,
                "the upstream's side of the tunnel to end")
    no_protocol_errors(up, "idle")


@with_upstreams
def test_counted_as_one_request():
    """A tunnel that carried 6 messages over about 0.5 s, then closed, is
    one request: exactly one access log line for its path (GET, status
    101, the key's id, route 1), and keygate_requests_total{route="ws"}
    grew by exactly 1, in the code="101" series."""
    up = start_up()
    d = gateway(up)
    k, secret = kg.create_key(d, "counted")
    base = requests_total(d)
    with open_ws(d, "/ws/counted", secret) as ws:
        for i in range(6):
            ws.echo(OP_TEXT if i % 2 else OP_BINARY, "m%d" % i,
                    "message %d" % i)
            time.sleep(0.08)
        ws.close_handshake("close")

    def lines():
        return [e for e in d.access_lines() if e.get("path") ==
                "/ws/counted"]
    kg.wait_for(lines, 3.0, "an access log line for /ws/counted")
    kg.wait_for(lambda: route_delta(requests_total(d), base, "ws"), 3.0,
                "keygate_requests_total{route=ws} to grow")
    time.sleep(0.3)		# anything more would be there by now
    es = lines()
    kg.eq(len(es), 1, "access log lines for the tunnel (%r)" % es)
    e = es[0]
    kg.eq((e.get("method"), e.get("status"), e.get("key_id"),
           e.get("route")), ("GET", 101, k["id"], 1),
          "method, status, key_id, route of the line (%r)" % e)
    kg.eq(route_delta(requests_total(d), base, "ws"), {"101": 1.0},
          "growth of keygate_requests_total{route=\"ws\"} by code")
    st = no_protocol_errors(up, "counted")
    kg.eq((st["upgrades"], st["requests"], st["messages"]), (1, 0, 6),
          "upgrades, plain requests, messages at the upstream")


@with_upstreams
def test_upstream_refuses_upgrade():
    """The upstream answers an upgrade 403 (JSON body, keep-alive): the
    client gets that 403 and body as an ordinary response (no Upgrade, no
    Connection: upgrade, not closed), and the same connection then
    serves a plain GET (200 from the upstream) and a successful upgrade
    whose tunnel works."""
    up = start_up()
    d = gateway(up)
    _, secret = kg.create_key(d, "refused")
    with kg.Conn(d.port) as c:
        _, r, _ = handshake(d.port, "/ws/refuse", secret, conn=c)
        kg.check(r.status == 403, "status of the refused upgrade: %d, "
                 "expected 403 (body %r)" % (r.status, r.body[:300]))
        kg.eq(r.json(), {"error": "refused_by_upstream", "status": 403},
              "body of the refused upgrade")
        kg.eq(r.header("upgrade"), None, "Upgrade on the 403")
        kg.check("upgrade" not in tokens(r.header("connection")),
                 "Connection of the 403 names upgrade: %r" %
                 r.header_all("connection"))
        kg.check(not r.closes(), "the 403 closes the client connection")
        c.send(kg.raw_request("GET", "/ws/after", host="127.0.0.1",
                              headers=[("X-API-KEY", secret)]))
        r = c.read_response()
        kg.eq(r.status, 200, "plain GET after the refused upgrade (body "
              "%r)" % r.body[:300])
        j = r.json()
        kg.eq((j["target"], j["upgrade"]), ("/ws/after", False),
              "the upstream's echo of the plain GET")
        kg.check(not r.closes(), "the plain GET closes the connection")
        _, r, key = handshake(d.port, "/ws/third", secret, conn=c)
        check_switched(r, key, "upgrade on the same connection")
        with WS(c, "the tunnel after the refusal") as ws:
            ws.echo(OP_TEXT, "works", "message after the refusal")
            ws.close_handshake("close")
    st = no_protocol_errors(up, "refused")
    kg.eq((st["upgrades"], st["refused"], st["switched"], st["requests"]),
          (2, 1, 1, 1), "upgrades, refusals, 101s, plain requests at the "
          "upstream")


@with_upstreams
def test_plain_request():
    """Plain GETs on the route are proxied as ever: 200 with the
    upstream's echo, the identity added, no Upgrade either way; one with
    Upgrade: websocket but no Connection: upgrade is a plain request too
    (the Upgrade header dropped as hop-by-hop), on the same connection."""
    up = start_up()
    d = gateway(up)
    k, secret = kg.create_key(d, "plain")
    with kg.Conn(d.port) as c:
        for what, extra in (("plain GET", []),
                            ("GET with Upgrade alone",
                             [("Upgrade", "websocket")]),
                            # h2c is never upgraded: its streams would be
                            # requests no route checked (h2c smuggling).
                            ("GET with Upgrade: h2c",
                             [("Connection", "Upgrade, HTTP2-Settings"),
                              ("Upgrade", "h2c"),
                              ("HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA")]),
                            ("GET with Upgrade: websocket, h2c",
                             [("Connection", "Upgrade"),
                              ("Upgrade", "websocket, h2c")])):
            c.send(kg.raw_request("GET", "/ws/plain", host="127.0.0.1",
                                  headers=[("X-API-KEY", secret)] + extra))
            r = c.read_response()
            kg.eq(r.status, 200, "%s: status (body %r)" % (what,
                                                           r.body[:300]))
            kg.check(not r.closes(), "%s: the connection closes" % what)
            kg.eq(r.header("upgrade"), None, "%s: Upgrade in the response"
                  % what)
            j = r.json()
            kg.eq((j["target"], j["upgrade"]), ("/ws/plain", False),
                  "%s: the upstream's echo" % what)
            h = j["headers"]
            kg.eq(up_headers(h, "upgrade"), [], "%s: Upgrade at the "
                  "upstream" % what)
            kg.check(all("upgrade" not in tokens(v)
                         for v in up_headers(h, "connection")),
                     "%s: Connection at the upstream names upgrade: %r" %
                     (what, h))
            kg.eq(up_headers(h, "x-key-id"), [k["id"]], "%s: X-Key-Id" %
                  what)
            kg.eq(up_headers(h, "x-api-key"), [], "%s: X-API-KEY" % what)
    st = no_protocol_errors(up, "plain")
    kg.eq((st["upgrades"], st["requests"]), (0, 4), "upgrades and plain "
          "requests at the upstream")


@with_upstreams
def test_close():
    """The close handshake: the client's close frame (1000, "bye") comes
    back from the upstream, then EOF, and the upstream's side ended.  A
    client that half-closes (shutdown SHUT_WR) without a close frame: the
    upstream sees EOF, closes, and the client sees EOF.  A client that
    just closes its socket: the upstream's side ends too."""
    up = start_up()
    d = gateway(up)
    _, secret = kg.create_key(d, "closer")
    with open_ws(d, "/ws/close", secret) as ws:
        ws.echo(OP_TEXT, "before close", "message before the close")
        ws.close_handshake("close handshake", 1000, b"bye")
    kg.wait_for(lambda: up.stats()["tunnels_ended"] == 1, 2.0,
                "the upstream's side of the closed tunnel to end")

    with open_ws(d, "/ws/halfclose", secret) as ws:
        ws.echo(OP_BINARY, b"\x00\x01", "message before the half-close")
        ws.sock.shutdown(socket.SHUT_WR)
        rest = ws.wait_eof(3.0, "after the client's half-close")
        same_bytes(rest, b"", "bytes after the half-close")
    kg.wait_for(lambda: up.stats()["tunnels_eof"] == 1, 2.0,
                "the upstream to see EOF after the client's half-close")

    ws = open_ws(d, "/ws/drop", secret)
    try:
        ws.echo(OP_TEXT, "before the drop", "message before the drop")
    finally:
        ws.close()
    kg.wait_for(lambda: up.stats()["tunnels_ended"] == 3, 2.0,
                "the upstream's side to end after the client dropped")
    st = no_protocol_errors(up, "close")
    kg.eq((st["closes"], st["tunnels_eof"], st["tunnels_open"]), (1, 2, 0),
          "close frames, EOFs and open tunnels at the upstream")


@with_upstreams
def test_half_close_before_101():
    """A client that sends its upgrade request, bytes for the tunnel and
    then shuts its write side, all before the 101: the bytes reach the
    upstream, and so does the EOF, right after the 101 (not when
    idle_timeout runs out), and the tunnel ends."""
    up = start_up()
    d = gateway(up, opts="read_timeout=5s idle_timeout=10s")
    _, secret = kg.create_key(d, "early")
    key = new_key()
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/ws/early?ms=400", host="127.0.0.1",
                              headers=upgrade_headers(key, secret)) +
               client_frame(OP_TEXT, "early"))
        c.sock.shutdown(socket.SHUT_WR)
        t0 = time.monotonic()
        kg.wait_for(lambda: up.stats()["tunnels_eof"] == 1, 3.0,
                    "the upstream to see the client's EOF after the 101")
        took = time.monotonic() - t0
        kg.check(took < 2.0, "the EOF reached the upstream %.1f s after "
                 "the request (idle_timeout is 10 s)" % took)
        r = c.read_response()
        kg.eq(r.status, 101, "status")
    st = no_protocol_errors(up, "half-close before the 101")
    kg.eq((st["messages"], st["tunnels_open"]), (1, 0),
          "messages echoed and tunnels open at the upstream")


@with_upstreams
def test_101_checked():
    """A 101 must switch to a protocol the request offered, and carries no
    Content-Length to the client: Upgrade: foo in answer to websocket is
    a 502; the upstream's Content-Length: 0 on a 101 is dropped."""
    up = start_up()
    d = gateway(up)
    _, secret = kg.create_key(d, "checked")
    c, r, _ = handshake(d.port, "/ws/other?upgrade=foo", secret)
    c.close()
    kg.check_refusal(r, 502, "upstream_unavailable", "a 101 to Upgrade: foo")
    d.wait_log(r"101 without Connection: upgrade and an Upgrade the "
               r"request offered", 3.0)
    c, r, _ = handshake(d.port, "/ws/cl?cl=1", secret)
    try:
        kg.eq(r.status, 101, "status of a 101 with Content-Length")
        kg.eq(r.header("content-length"), None, "Content-Length on the 101")
    finally:
        c.close()


@with_upstreams
def test_cut_tunnel_logged():
    """A tunnel the client cuts with a reset is still one access log
    line, status 101, when it ends."""
    up = start_up()
    d = gateway(up)
    _, secret = kg.create_key(d, "cut")
    ws = open_ws(d, "/ws/cut", secret)
    ws.echo(OP_TEXT, "before the reset", "message before the reset")
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                       struct.pack("ii", 1, 0))
    ws.close()

    def lines():
        return [e for e in d.access_lines() if e.get("path") == "/ws/cut"]
    kg.wait_for(lines, 3.0, "an access log line for the cut tunnel")
    kg.eq([e.get("status") for e in lines()], [101], "statuses logged")


TESTS = [
    test_selfcheck_framing_and_upstream,
    test_selfcheck_ping_close_refuse,
    test_handshake,
    test_echo_text_binary_ping,
    test_big_message,
    test_backpressure_bounded_memory,
    test_refused_without_key,
    test_rate_limit,
    test_idle_timeout,
    test_counted_as_one_request,
    test_upstream_refuses_upgrade,
    test_plain_request,
    test_close,
    test_half_close_before_101,
    test_101_checked,
    test_cut_tunnel_logged,
]


if __name__ == "__main__":
    if len(sys.argv) > 1:
        names = sys.argv[1:]
        TESTS = [t for t in TESTS if t.__name__ in names]
    kg.run(TESTS)
