"""
wsupstream: a WebSocket-capable test upstream for keygate's tunnelling
tests (Python 3 standard library only; RFC 6455 server side written out
here, so that no third-party package is needed).

Run as a program (--serve) it listens on 127.0.0.1 on a port the kernel
picks, prints "PORT n" on stdout (and nothing else, ever) and serves until
stdin reaches EOF (so it dies with the test that started it, even if that
test is killed) or it is killed.  Tests use the WsUpstream class below,
which starts it as a subprocess and always kills it.

Each connection is HTTP/1.1 with keep-alive.  A request is answered
according to its path and headers:

  /_stats        JSON counters (see Stats.snapshot); not counted, nor is a
                 connection that only carried such requests
  /_reset        zero the counters (both: Connection: close honoured)
  an upgrade     a request with an Upgrade header naming "websocket":
                 counted in "upgrades" and logged (target and headers) in
                 "handshakes"; then
                   - a path whose last segment is "refuse", or a query
                     refuse=NNN: answered NNN (403 by default) with a
                     small JSON body and Content-Length, keep-alive (the
                     connection serves the next request);
                   - a handshake that is not valid for RFC 6455 4.2.1
                     (Connection without "upgrade", a version other than
                     13, a Sec-WebSocket-Key that is not 16 bytes in
                     base64, a method other than GET): 400, the reason in
                     "protocol_errors";
                   - otherwise 101 Switching Protocols with Upgrade:
                     websocket, Connection: Upgrade, Sec-WebSocket-Accept,
                     X-Upstream-Name, and Sec-WebSocket-Protocol: the
                     first protocol the client offered, if any.  With
                     hello=1 in the query, a text message "hello" follows
                     the 101 head in the same write; with ms=M, the 101
                     waits M ms; upgrade=P answers Upgrade: P instead of
                     websocket, and cl=1 adds Content-Length: 0.
  anything else  an echo of the request as JSON with Content-Length:
                 {"method", "target", "version", "headers" ([name, value]
                 in order), "body_bytes", "conn", "conn_request",
                 "upstream", "upgrade": false}

After a 101 the connection speaks WebSocket (RFC 6455), server side:
frames from the peer must be masked (an unmasked one, nonzero RSV bits,
an unknown opcode, a fragmented or over-long control frame, or a
continuation out of place is a protocol error: recorded, answered with a
close frame 1002, and the connection closed).  Every text or binary
message (fragmented ones reassembled) is echoed as one unmasked frame of
the same opcode; a ping is answered by a pong with the same payload at
once (also between the fragments of a message); a pong is counted; a
close frame is echoed with the same payload, then the connection is
closed.  EOF without a close frame ends the tunnel too ("tunnels_eof").
"""

import base64
import hashlib
import json
import struct
import sys
import threading
import time

from upstream import (Reader, ServerProcess, hdr, listen_sockets,
                      read_request, serve_forever)

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_MESSAGE = 64 << 20		# a bigger message is a protocol error

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA


def accept_value(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(
        (key + WS_GUID).encode("ascii")).digest()).decode("ascii")


def unmask(data, key):
    """data XOR the 4-byte key repeated (fast for megabytes)."""
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^
            int.from_bytes(k, "big")).to_bytes(n, "big")


def frame(opcode, payload, fin=True, mask=None):
    """A frame: unmasked, as a server sends it, or masked with the 4-byte
    mask, as a client must (RFC 6455 5.2)."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    m = 0 if mask is None else 0x80
    if n < 126:
        head = struct.pack(">BB", b0, m | n)
    elif n < 65536:
        head = struct.pack(">BBH", b0, m | 126, n)
    else:
        head = struct.pack(">BBQ", b0, m | 127, n)
    if mask is None:
        return head + payload
    return head + mask + unmask(payload, mask)


def server_frame(opcode, payload, fin=True):
    """An unmasked frame, as a server sends it."""
    return frame(opcode, payload, fin)


# --- counters ---------------------------------------------------------------

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.tunnels_open = 0	# a gauge: not zeroed by reset
        self.reset()

    def reset(self):
        self.connections = 0	# connections that carried a counted request
        self.requests = 0		# plain requests (not upgrades, not /_stats)
        self.upgrades = 0		# requests asking to upgrade to websocket
        self.switched = 0		# of them, answered 101
        self.refused = 0		# of them, answered otherwise
        self.handshakes = []	# [target, [[name, value]...]] of upgrades
        self.log = []		# [conn, method, target, "plain"|"upgrade"]
        self.messages = 0		# data messages echoed
        self.message_bytes = 0	# their payload bytes
        self.pings = 0
        self.pongs = 0
        self.closes = 0		# close frames received (and echoed)
        self.tunnels_eof = 0	# tunnels ended by EOF without a close frame
        self.tunnels_ended = 0	# tunnels ended, whatever the way
        self.protocol_errors = []	# what was wrong, in words

    def snapshot(self):
        with self.lock:
            return {"connections": self.connections,
                    "requests": self.requests,
                    "upgrades": self.upgrades,
                    "switched": self.switched,
                    "refused": self.refused,
                    "handshakes": list(self.handshakes),
                    "log": list(self.log),
                    "messages": self.messages,
                    "message_bytes": self.message_bytes,
                    "pings": self.pings,
                    "pongs": self.pongs,
                    "closes": self.closes,
                    "tunnels_open": self.tunnels_open,
                    "tunnels_eof": self.tunnels_eof,
                    "tunnels_ended": self.tunnels_ended,
                    "protocol_errors": list(self.protocol_errors)}

    def protocol_error(self, what):
        with self.lock:
            self.protocol_errors.append(what)
            del self.protocol_errors[:-50]


STATS = Stats()
NAME = "ws"
_conn_seq = [0]


# --- reading ----------------------------------------------------------------

def tokens(value):
    return [t.strip().lower() for t in (value or "").split(",") if t.strip()]


def q(r, name, default=None):
    v = r.query.get(name)
    return v[0] if v else default


def drain_body(rd, r):
    """Read and drop a Content-Length request body; its length."""
    if "chunked" in (hdr(r, "transfer-encoding") or "").lower():
        n = 0
        while True:
            size = int(rd.readline().decode("latin-1").split(";")[0]
                       .strip(), 16)
            if size == 0:
                while rd.readline() not in (b"\r\n", b"\n"):
                    pass
                return n
            rd.read_exact(size + 2)
            n += size
    left = int(hdr(r, "content-length") or 0)
    if left:
        rd.read_exact(left)
    return left


# --- HTTP -------------------------------------------------------------------

def send_response(sock, status, reason, headers, body, cid, close=False):
    lines = ["HTTP/1.1 %d %s" % (status, reason),
             "X-Upstream-Name: %s" % NAME,
             "X-Upstream-Conn: %d" % cid]
    lines += ["%s: %s" % (n, v) for n, v in headers]
    lines.append("Content-Length: %d" % len(body))
    if close:
        lines.append("Connection: close")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


def check_handshake(r):
    """The reason r is not a valid opening handshake, or None."""
    if r.method != "GET":
        return "method %s" % r.method
    if r.version != "HTTP/1.1":
        return "version %s" % r.version
    if "upgrade" not in tokens(hdr(r, "connection")):
        return "Connection %r does not name upgrade" % hdr(r, "connection")
    if "websocket" not in tokens(hdr(r, "upgrade")):
        return "Upgrade %r" % hdr(r, "upgrade")
    if hdr(r, "sec-websocket-version") != "13":
        return "Sec-WebSocket-Version %r" % hdr(r, "sec-websocket-version")
    key = hdr(r, "sec-websocket-key")
    try:
        ok = key is not None and \
            len(base64.b64decode(key.encode("ascii"), validate=True)) == 16
    except (ValueError, UnicodeEncodeError):
        ok = False
    if not ok:
        return "Sec-WebSocket-Key %r" % key
    return None


def handle_upgrade(sock, rd, r, cid):
    """Answer an upgrade request.  Returns True if the connection goes on
    as HTTP (refused), False if it is over (a tunnel that ended, or a
    bad handshake)."""
    with STATS.lock:
        STATS.upgrades += 1
        STATS.handshakes.append([r.target, [list(h) for h in r.headers]])
        del STATS.handshakes[:-50]
    refuse = q(r, "refuse")
    if refuse is not None or r.path.rsplit("/", 1)[-1] == "refuse":
        status = int(refuse or 403)
        with STATS.lock:
            STATS.refused += 1
        body = json.dumps({"error": "refused_by_upstream",
                           "status": status}).encode()
        send_response(sock, status, "Refused", [("Content-Type",
                                                 "application/json")],
                      body, cid)
        return True
    why = check_handshake(r)
    if why is not None:
        STATS.protocol_error("bad handshake: %s" % why)
        with STATS.lock:
            STATS.refused += 1
        send_response(sock, 400, "Bad Request", [("Content-Type",
                                                  "text/plain")],
                      ("bad handshake: %s\n" % why).encode(), cid,
                      close=True)
        return False
    if q(r, "ms") is not None:
        time.sleep(int(q(r, "ms")) / 1000.0)
    lines = ["HTTP/1.1 101 Switching Protocols",
             "Upgrade: %s" % (q(r, "upgrade") or "websocket"),
             "Connection: Upgrade",
             "Sec-WebSocket-Accept: %s" %
             accept_value(hdr(r, "sec-websocket-key")),
             "X-Upstream-Name: %s" % NAME]
    if q(r, "cl") == "1":
        lines.append("Content-Length: 0")
    offered = tokens(hdr(r, "sec-websocket-protocol"))
    if offered:
        # Tokens are case-sensitive: answer the first as it was written.
        first = hdr(r, "sec-websocket-protocol").split(",")[0].strip()
        lines.append("Sec-WebSocket-Protocol: %s" % first)
    out = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if q(r, "hello") == "1":
        out += server_frame(OP_TEXT, b"hello")
    with STATS.lock:
        STATS.switched += 1
        STATS.tunnels_open += 1
    try:
        sock.sendall(out)
        tunnel(sock, rd)
    finally:
        with STATS.lock:
            STATS.tunnels_open -= 1
            STATS.tunnels_ended += 1
    return False


# --- WebSocket --------------------------------------------------------------

class ProtocolError(Exception):
    pass


def read_frame(rd):
    """(fin, opcode, payload) of the next frame from a client."""
    b0, b1 = rd.read_exact(2)
    fin, rsv, opcode = b0 >> 7, (b0 >> 4) & 7, b0 & 0x0F
    masked, n = b1 >> 7, b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", rd.read_exact(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", rd.read_exact(8))[0]
        if n >> 63:
            raise ProtocolError("64-bit length with the top bit set")
    if rsv:
        raise ProtocolError("RSV bits %d set" % rsv)
    if opcode not in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING,
                      OP_PONG):
        raise ProtocolError("unknown opcode %#x" % opcode)
    if opcode >= 8 and (not fin or n > 125):
        raise ProtocolError("control frame %#x fin=%d length %d" %
                            (opcode, fin, n))
    if not masked:
        raise ProtocolError("unmasked frame from the client (opcode %#x)" %
                            opcode)
    if n > MAX_MESSAGE:
        raise ProtocolError("frame of %d bytes" % n)
    key = rd.read_exact(4)
    return fin, opcode, unmask(rd.read_exact(n), key)


def tunnel(sock, rd):
    """Serve WebSocket frames until a close frame or EOF."""
    msg_op, parts, size = None, [], 0
    try:
        while True:
            fin, op, payload = read_frame(rd)
            if op == OP_PING:
                with STATS.lock:
                    STATS.pings += 1
                sock.sendall(server_frame(OP_PONG, payload))
                continue
            if op == OP_PONG:
                with STATS.lock:
                    STATS.pongs += 1
                continue
            if op == OP_CLOSE:
                with STATS.lock:
                    STATS.closes += 1
                sock.sendall(server_frame(OP_CLOSE, payload))
                return
            if op == OP_CONT:
                if msg_op is None:
                    raise ProtocolError("continuation without a message")
            elif msg_op is not None:
                raise ProtocolError("new message inside a fragmented one")
            else:
                msg_op = op
            parts.append(payload)
            size += len(payload)
            if size > MAX_MESSAGE:
                raise ProtocolError("message over %d bytes" % MAX_MESSAGE)
            if not fin:
                continue
            data = b"".join(parts)
            if msg_op == OP_TEXT:
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError:
                    raise ProtocolError("text message is not UTF-8")
            sock.sendall(server_frame(msg_op, data))
            with STATS.lock:
                STATS.messages += 1
                STATS.message_bytes += len(data)
            msg_op, parts, size = None, [], 0
    except EOFError:
        with STATS.lock:
            STATS.tunnels_eof += 1
    except ProtocolError as e:
        STATS.protocol_error(str(e))
        try:
            sock.sendall(server_frame(OP_CLOSE, struct.pack(">H", 1002) +
                                      str(e).encode()[:100]))
        except OSError:
            pass


# --- the server --------------------------------------------------------------

def serve_conn(sock):
    with STATS.lock:
        _conn_seq[0] += 1
        cid = _conn_seq[0]
    rd = Reader(sock)
    counted = False
    k = 0
    try:
        while True:
            r = read_request(rd)
            if r is None:
                return
            if r.path in ("/_stats", "/_reset"):
                if r.path == "/_reset":
                    with STATS.lock:
                        STATS.reset()
                    body = b""
                else:
                    body = json.dumps(STATS.snapshot()).encode()
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: "
                             b"application/json\r\nContent-Length: %d\r\n"
                             b"\r\n" % len(body) + body)
                if "close" in tokens(hdr(r, "connection")):
                    return
                continue
            k += 1
            upgrade = "websocket" in tokens(hdr(r, "upgrade"))
            with STATS.lock:
                if not counted:
                    STATS.connections += 1
                    counted = True
                if not upgrade:
                    STATS.requests += 1
                STATS.log.append([cid, r.method, r.target,
                                  "upgrade" if upgrade else "plain"])
                del STATS.log[:-200]
            n = drain_body(rd, r)
            if upgrade:
                if not handle_upgrade(sock, rd, r, cid):
                    return
                continue
            body = json.dumps({"method": r.method, "target": r.target,
                               "version": r.version, "headers": r.headers,
                               "body_bytes": n, "conn": cid,
                               "conn_request": k, "upstream": NAME,
                               "upgrade": False}).encode()
            close = "close" in tokens(hdr(r, "connection")) or \
                r.version == "HTTP/1.0"
            send_response(sock, 200, "OK", [("Content-Type",
                                             "application/json")],
                          body, cid, close=close)
            if close:
                return
    except (EOFError, ValueError, OSError):
        pass
    except Exception as e:	# a bug here: say so in the stats, not stdout
        STATS.protocol_error("wsupstream: %r" % e)
    finally:
        try:
            sock.close()
        except OSError:
            pass


def main(argv):
    global NAME
    if "--name" in argv:
        NAME = argv[argv.index("--name") + 1]
    port, socks = listen_sockets(False)
    serve_forever(port, socks, serve_conn)


# --- the client side: start, query and stop ----------------------------------

class WsUpstream(ServerProcess):
    """A wsupstream.py subprocess (upstream.py's ServerProcess: stopped by
    stop(), stop_all() or at exit)."""

    def __init__(self, name="ws", timeout=10.0):
        ServerProcess.__init__(self, __file__, (), name, None, timeout)


if __name__ == "__main__":
    if "--serve" in sys.argv:
        main(sys.argv)
    else:
        sys.stderr.write("usage: wsupstream.py --serve [--name N]\n")
        sys.exit(2)
