#!/usr/bin/env python3
"""Recording upstream for the rate-accuracy benchmark workload (stdlib only).

    python3 record.py PORT LOGFILE

Listens on 127.0.0.1:PORT and answers every request with 200 '{"ok":true}'
over keep-alive connections (HTTP/1.1), with the headers the keys-proxy
checks of run.sh look for: X-Upstream-Consumer (the X-Consumer-Id the
gateway sent) and X-Upstream-Saw-Key (yes if the request still carried
X-API-KEY).  For every request it appends one line to LOGFILE:

    SECONDS PATH

SECONDS is time.monotonic() when the recv() that completed the request
head returned, to the microsecond.  The gateways only forward the requests
they admit, so the lines of one gateway's run are its admit times.

One thread and one selector: a threaded server would stamp a request only
when its thread next got the GIL (up to the 5 ms switch interval later).
The line is written and flushed before the answer, so when a client has
its answer the line is in the file.
"""

import selectors
import socket
import sys
import time

BODY = b'{"ok":true}'
MAX_HEAD = 16384


def answer(head):
    """The response to one request head (bytes up to the blank line)."""
    lines = head.split(b"\r\n")
    consumer = b""
    saw_key = b"no"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"x-consumer-id":
            consumer = value.strip()
        elif name == b"x-api-key":
            saw_key = b"yes"
    # The header is sent only when set, like nginx's add_header.
    extra = b"X-Upstream-Consumer: " + consumer + b"\r\n" if consumer else b""
    return (b"HTTP/1.1 200 OK\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: " + str(len(BODY)).encode() + b"\r\n" +
            extra +
            b"X-Upstream-Saw-Key: " + saw_key + b"\r\n"
            b"\r\n" + BODY)


def body_length(head):
    """Content-Length of a request head (0 if none); -1 if unusable."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding":
            return -1
        if name == b"content-length":
            try:
                return int(value.strip())
            except ValueError:
                return -1
    return 0


class Conn:
    """One client connection: its unparsed input."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""


def serve(port, log):
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", port))
    lsock.listen(1024)
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, None)
    while True:
        for key, _ in sel.select():
            if key.data is None:
                try:
                    sock, _ = lsock.accept()
                except OSError:
                    continue
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sel.register(sock, selectors.EVENT_READ, Conn(sock))
                continue
            conn = key.data
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            now = time.monotonic()
            if not data:
                sel.unregister(conn.sock)
                conn.sock.close()
                continue
            conn.buf += data
            if not handle(conn, now, log):
                sel.unregister(conn.sock)
                conn.sock.close()


def handle(conn, now, log):
    """Answer every complete request in conn.buf; False to close."""
    out = []
    while True:
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0:
            break
        head = conn.buf[:end]
        n = body_length(head)
        if n < 0:
            return False
        if len(conn.buf) < end + 4 + n:
            break
        conn.buf = conn.buf[end + 4 + n:]
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        path = parts[1].decode("latin-1") if len(parts) > 1 else "-"
        log.write("%.6f %s\n" % (now, path))
        out.append(answer(head))
    if len(conn.buf) > MAX_HEAD:
        return False
    if out:
        log.flush()
        data = b"".join(out)
        # A gateway reads its answers at once; 5 s bounds a stuck one.
        conn.sock.settimeout(5)
        try:
            conn.sock.sendall(data)
        except OSError:
            return False
        conn.sock.setblocking(False)
    return True


def main():
    if len(sys.argv) != 3 or not sys.argv[1].isdigit():
        sys.exit("usage: record.py PORT LOGFILE")
    with open(sys.argv[2], "a", encoding="ascii") as log:
        try:
            serve(int(sys.argv[1]), log)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
