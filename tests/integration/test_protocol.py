"""
HTTP/1.1 as a client on the wire sees it: keep-alive, pipelining,
Connection: close and HTTP/1.0, the limits (431/414/413), strict parsing
(400/505, after which the same daemon goes on serving), request bodies
(Content-Length, chunked, 100-continue), the timeouts (408, idle close),
max_connections, half-closed clients, and a burst of bad requests.

Requests are written by hand (kgtest.raw_request or literal bytes) so that
every byte the daemon sees is the one the test means.
"""

import select
import socket
import time

import kgtest as kg

# Small limits, so that crossing them costs little.
PROTO = kg.config(
    "route * ^/echo(/|$) auth=anonymous",
    workers=2, max_request_line="1k", max_header_size="4k",
    max_body_size="1k")

TIMEOUTS = kg.config(
    "route * ^/echo(/|$) auth=anonymous",
    header_timeout="500ms", body_timeout="500ms", keepalive_timeout="300ms")


def daemon():
    return kg.shared("proto", PROTO)


def still_serving(d, what):
    """A new connection to the same daemon is served normally."""
    try:
        r = kg.get(d.port, "/echo/alive")
    except Exception as e:
        raise AssertionError("daemon stopped serving after %s: %s: %s" %
                             (what, type(e).__name__, e))
    kg.check_echo(r, "GET", "/echo/alive", what="GET after %s" % what)


def expect_closed(c, what):
    """The daemon closes the connection after its response."""
    extra = c.wait_closed(3.0)
    kg.eq(extra, b"", "bytes after the final response of %s" % what)


def refused_and_closed(d, data, status, code, what):
    """Send data on a new connection: a refusal, then the daemon closes."""
    with kg.Conn(d.port) as c:
        try:
            c.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass		# it may answer and close before all is sent
        r = c.read_response()
        kg.check_refusal(r, status, code, what)
        kg.check(r.closes(), "%s: %d without Connection: close" %
                 (what, status))
        expect_closed(c, what)
    return r


# --- connection management -----------------------------------------------------

def test_keepalive_ten_requests():
    d = daemon()
    with kg.Conn(d.port) as c:
        for i in range(10):
            c.send(kg.raw_request("GET", "/echo/k%d" % i, headers=[
                ("X-Request-Id", "ka-%d" % i)]))
            r = c.read_response()
            kg.check_echo(r, "GET", "/echo/k%d" % i, what="request %d" % i)
            kg.eq(r.header("x-request-id"), "ka-%d" % i, "request id %d" % i)
            kg.check(not r.closes(), "response %d says close" % i)
        kg.check(c.is_open_after(0.2), "connection closed after 10 requests")


def test_pipelining_in_order():
    d = daemon()
    reqs = (kg.raw_request("GET", "/echo/p1", headers=[("X-Request-Id",
                                                         "pipe-1")]) +
            kg.raw_request("POST", "/echo/p2", body=b"abc", headers=[
                ("X-Request-Id", "pipe-2")]) +
            kg.raw_request("GET", "/nope", headers=[("X-Request-Id",
                                                      "pipe-3")]) +
            kg.raw_request("HEAD", "/echo/p4", headers=[("X-Request-Id",
                                                          "pipe-4")]) +
            kg.raw_request("GET", "/echo/p5?z=9", headers=[("X-Request-Id",
                                                             "pipe-5")]))
    with kg.Conn(d.port) as c:
        c.send(reqs)		# one write
        rs = [c.read_response(head=(i == 3)) for i in range(5)]
        kg.eq([r.header("x-request-id") for r in rs],
              ["pipe-%d" % i for i in range(1, 6)], "response order")
        kg.check_echo(rs[0], "GET", "/echo/p1")
        kg.check_echo(rs[1], "POST", "/echo/p2", None, 3)
        kg.check_refusal(rs[2], 404, "no_route", "pipelined /nope")
        kg.eq(rs[3].status, 200, "pipelined HEAD")
        kg.check_echo(rs[4], "GET", "/echo/p5", "z=9")
        # A longer train: 100 requests in one write, answered in order.
        c.send(b"".join(kg.raw_request("GET", "/echo/t%d" % i, headers=[
            ("X-Request-Id", "train-%d" % i)]) for i in range(100)))
        for i in range(100):
            r = c.read_response()
            kg.eq(r.header("x-request-id"), "train-%d" % i,
                  "response %d of 100" % i)
            kg.eq(r.status, 200, "status of response %d" % i)


def test_connection_close_honoured():
    d = daemon()
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/echo/cc", headers=[
            ("Connection", "close")]))
        r = c.read_response()
        kg.check_echo(r, "GET", "/echo/cc")
        kg.check(r.closes(), "no Connection: close in the answer")
        expect_closed(c, "a Connection: close request")


def test_http10_closes_by_default():
    d = daemon()
    with kg.Conn(d.port) as c:
        c.send(b"GET /echo/10 HTTP/1.0\r\n\r\n")
        r = c.read_response()
        kg.check_echo(r, "GET", "/echo/10", what="HTTP/1.0 without Host")
        kg.check(r.header("connection", "").lower() != "keep-alive",
                 "HTTP/1.0 default answered keep-alive")
        expect_closed(c, "an HTTP/1.0 request")


def test_http10_keepalive_opt_in():
    d = daemon()
    with kg.Conn(d.port) as c:
        c.send(b"GET /echo/10a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response()
        kg.check_echo(r, "GET", "/echo/10a")
        kg.eq(r.header("connection", "").lower(), "keep-alive",
              "Connection header for an HTTP/1.0 keep-alive request")
        c.send(b"GET /echo/10b HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
        r = c.read_response()
        kg.check_echo(r, "GET", "/echo/10b", what="second request")
        kg.eq(r.header("connection", "").lower(), "keep-alive",
              "second Connection header")
        c.send(b"GET /echo/10c HTTP/1.0\r\n\r\n")
        kg.check_echo(c.read_response(), "GET", "/echo/10c",
                      what="third request, no keep-alive")
        expect_closed(c, "the last HTTP/1.0 request")


def test_half_closed_client_gets_response():
    d = daemon()
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/echo/half"))
        c.shutdown_wr()
        kg.check_echo(c.read_response(), "GET", "/echo/half",
                      what="after shutdown(SHUT_WR)")
        expect_closed(c, "a half-closed connection")
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("POST", "/echo/half1", body=b"0123456789") +
               kg.raw_request("GET", "/echo/half2"))
        c.shutdown_wr()
        kg.check_echo(c.read_response(), "POST", "/echo/half1", None, 10,
                      "first of two, half-closed")
        kg.check_echo(c.read_response(), "GET", "/echo/half2",
                      what="second of two, half-closed")
        expect_closed(c, "a half-closed pipelined connection")


# --- limits ------------------------------------------------------------------------

def test_oversize_header_431():
    d = daemon()
    refused_and_closed(d, kg.raw_request("GET", "/echo/big", headers=[
        ("X-Big", "a" * 5000)]), 431, "headers_too_large",
        "a 5000-byte header (max_header_size 4k)")
    still_serving(d, "431 for one big header")
    refused_and_closed(d, kg.raw_request("GET", "/echo/big", headers=[
        ("X-H%d" % i, "b" * 70) for i in range(60)]), 431,
        "headers_too_large", "60 headers of 80 bytes (max_header_size 4k)")
    still_serving(d, "431 for a big header section")
    # Below the limit is fine.
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/echo/ok", headers=[
            ("X-Big", "a" * 3000)]))
        kg.check_echo(c.read_response(), "GET", "/echo/ok",
                      what="3000-byte header under the 4k limit")


def test_request_line_too_long_414():
    d = daemon()
    path = "/echo/" + "a" * 1100
    refused_and_closed(d, kg.raw_request("GET", path), 414, "uri_too_long",
                       "a 1100-byte target (max_request_line 1k)")
    still_serving(d, "414")
    path = "/echo/" + "b" * 990
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", path))
        kg.check_echo(c.read_response(), "GET", path,
                      what="a request line just under 1k")


def test_too_many_headers_431():
    d = daemon()
    refused_and_closed(d, kg.raw_request("GET", "/echo/many", headers=[
        ("X-H%d" % i, "v") for i in range(150)]), 431, "headers_too_large",
        "150 small header fields")
    still_serving(d, "431 for too many headers")
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/echo/some", headers=[
            ("X-H%d" % i, "v") for i in range(50)]))
        j = kg.check_echo(c.read_response(), "GET", "/echo/some",
                          what="50 header fields")
        kg.eq(j["headers"].get("x-h49"), "v", "50th header forwarded")


def test_max_body_size_413():
    d = daemon()
    # Refused on the announced length, before the body is sent.
    with kg.Conn(d.port) as c:
        c.send(b"POST /echo/b HTTP/1.1\r\nHost: x\r\nContent-Length: 2000"
               b"\r\n\r\n")
        r = c.read_response()
        kg.check_refusal(r, 413, "body_too_large", "Content-Length 2000")
        kg.check(r.closes(), "413 without Connection: close")
    still_serving(d, "413 on Content-Length")
    # A chunked body is refused once it crosses the limit.
    body = b"".join(b"100\r\n" + b"x" * 256 + b"\r\n" for _ in range(6))
    refused_and_closed(d, b"POST /echo/b HTTP/1.1\r\nHost: x\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n" + body +
                       b"0\r\n\r\n", 413, "body_too_large",
                       "a 1536-byte chunked body")
    still_serving(d, "413 on a chunked body")
    # Exactly the limit is fine.
    r = kg.request(d.port, "POST", "/echo/b", body=b"y" * 1024)
    kg.check_echo(r, "POST", "/echo/b", None, 1024, "a body of exactly 1k")


# --- malformed requests ---------------------------------------------------------

MALFORMED = [
    ("bare_lf", b"GET /echo HTTP/1.1\nHost: x\n\n"),
    ("space_before_colon", b"GET /echo HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n"),
    ("obs_fold", b"GET /echo HTTP/1.1\r\nHost: x\r\nX-A: b\r\n  c\r\n\r\n"),
    ("content_length_and_chunked", b"POST /echo HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("two_content_lengths", b"POST /echo HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    ("transfer_encoding_gzip", b"POST /echo HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: gzip\r\n\r\nxxxx"),
    ("nul_byte", b"GET /echo HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"),
    ("invalid_method_char", b"GE(T /echo HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("missing_host_http11", b"GET /echo HTTP/1.1\r\nX-A: b\r\n\r\n"),
    ("two_host_headers", b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ("bad_content_length", b"POST /echo HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 12abc\r\n\r\n"),
    ("negative_content_length", b"POST /echo HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: -1\r\n\r\n"),
    ("bad_chunk_size", b"POST /echo HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    ("no_version", b"GET /echo\r\nHost: x\r\n\r\n"),
    ("relative_target", b"GET echo HTTP/1.1\r\nHost: x\r\n\r\n"),
]


def make_malformed_test(name, data):
    def t():
        d = daemon()
        before = d.worker_pids()
        refused_and_closed(d, data, 400, "bad_request", name)
        still_serving(d, name)
        kg.eq(d.worker_pids(), before, "worker pids after %s" % name)
    t.__name__ = "test_400_" + name
    return t


def test_http2_version_505():
    d = daemon()
    refused_and_closed(d, b"GET /echo HTTP/2.0\r\nHost: x\r\n\r\n", 505,
                       "http_version_not_supported", "HTTP/2.0")
    still_serving(d, "505")


def test_bad_request_burst_workers_survive():
    d = daemon()
    before = d.worker_pids()
    kg.eq(len(before), 2, "workers before the burst")
    kinds = [(data, 400) for _, data in MALFORMED] + [
        (b"GET /echo HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (kg.raw_request("GET", "/echo/" + "a" * 1100), 414),
        (kg.raw_request("GET", "/echo", headers=[("X", "a" * 5000)]), 431),
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40, 400)]
    deadline = time.monotonic() + 30
    for i in range(100):
        kg.check(time.monotonic() < deadline, "burst took over 30 s")
        data, status = kinds[i % len(kinds)]
        with kg.Conn(d.port) as c:
            try:
                c.send(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            r = c.read_response()
            kg.eq(r.status, status, "status of bad request %d" % i)
    kg.eq(d.worker_pids(), before, "worker pids after 100 bad requests")
    still_serving(d, "100 bad requests")


# --- bodies ----------------------------------------------------------------------

def test_chunked_body_counted():
    d = daemon()
    with kg.Conn(d.port) as c:
        c.send(b"POST /echo/chunked HTTP/1.1\r\nHost: x\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n5\r\nhel")
        time.sleep(0.05)
        c.send(b"lo\r\n6;ext=1\r\n world\r\n")
        time.sleep(0.05)
        c.send(b"A\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n")
        kg.check_echo(c.read_response(), "POST", "/echo/chunked", None, 21,
                      "chunked body in three writes")
        # The body was consumed exactly: the connection goes on.
        c.send(kg.raw_request("GET", "/echo/next"))
        kg.check_echo(c.read_response(), "GET", "/echo/next",
                      what="request after a chunked body")


def test_content_length_body_counted():
    d = daemon()
    with kg.Conn(d.port) as c:
        c.send(b"POST /echo/cl HTTP/1.1\r\nHost: x\r\nContent-Length: 1000"
               b"\r\n\r\n" + b"a" * 500)
        time.sleep(0.05)
        c.send(b"b" * 500)
        kg.check_echo(c.read_response(), "POST", "/echo/cl", None, 1000,
                      "Content-Length body in two writes")
        c.send(kg.raw_request("PUT", "/echo/cl2", body=b"z" * 7))
        kg.check_echo(c.read_response(), "PUT", "/echo/cl2", None, 7,
                      "second body on the connection")
        c.send(kg.raw_request("POST", "/echo/cl3", headers=[
            ("Content-Length", "0")]))
        kg.check_echo(c.read_response(), "POST", "/echo/cl3", None, 0,
                      "Content-Length: 0")


def test_expect_100_continue():
    d = daemon()
    with kg.Conn(d.port) as c:
        c.send(b"POST /echo/exp HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
               b"Expect: 100-continue\r\n\r\n")
        r = c.read_response()
        kg.eq((r.version, r.status), ("HTTP/1.1", 100),
              "interim response before the body")
        c.send(b"0123456789")
        r = c.read_response()
        kg.check_echo(r, "POST", "/echo/exp", None, 10, "after 100-continue")
        kg.check(not r.closes(), "keep-alive after 100-continue")
        # The body sent along with the headers: no need for 100 Continue.
        c.send(b"POST /echo/exp2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
               b"Expect: 100-continue\r\n\r\nabc")
        r = c.read_final()
        kg.check_echo(r, "POST", "/echo/exp2", None, 3,
                      "Expect with the body already sent")
    # Too large: a final 413 instead of 100 Continue.
    with kg.Conn(d.port) as c:
        c.send(b"POST /echo/exp HTTP/1.1\r\nHost: x\r\nContent-Length: 5000"
               b"\r\nExpect: 100-continue\r\n\r\n")
        r = c.read_response()
        kg.check_refusal(r, 413, "body_too_large", "Expect with a body over "
                         "max_body_size")
    # An expectation it cannot meet.
    refused_and_closed(d, b"POST /echo/exp HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Length: 3\r\nExpect: teapot\r\n\r\n", 417,
                       "expectation_failed", "Expect: teapot")
    still_serving(d, "417")


# --- timeouts ------------------------------------------------------------------------

def timeouts():
    return kg.shared("timeouts", TIMEOUTS)


def test_header_timeout_408():
    d = timeouts()
    with kg.Conn(d.port) as c:
        c.send(b"GET /echo/slow HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        r = c.read_response()
        took = time.monotonic() - t0
        kg.check_refusal(r, 408, "request_timeout", "partial header")
        kg.check(r.closes(), "408 without Connection: close")
        kg.check(0.4 <= took <= 3.0, "408 after %.2f s (header_timeout "
                 "500ms)" % took)
        expect_closed(c, "408")


def test_header_timeout_is_total_not_per_read():
    """A client that trickles a byte every 100 ms still gets 408 in time."""
    d = timeouts()
    line = b"GET /echo/trickle HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    with kg.Conn(d.port) as c:
        t0 = time.monotonic()
        for i in range(len(line)):
            if time.monotonic() - t0 > 4:
                break
            try:
                c.send(line[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            if select.select([c.sock], [], [], 0.1)[0]:
                break
        r = c.read_response()
        took = time.monotonic() - t0
        kg.check_refusal(r, 408, "request_timeout", "trickled header")
        kg.check(0.4 <= took <= 2.0, "408 after %.2f s of trickling "
                 "(header_timeout 500ms)" % took)


def test_keepalive_idle_timeout():
    d = timeouts()
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/echo/idle"))
        kg.check_echo(c.read_response(), "GET", "/echo/idle")
        t0 = time.monotonic()
        extra = c.wait_closed(3.0)
        took = time.monotonic() - t0
        kg.eq(extra, b"", "bytes sent when closing an idle connection")
        kg.check(0.2 <= took <= 2.0, "idle connection closed after %.2f s "
                 "(keepalive_timeout 300ms)" % took)


def test_keepalive_timeout_zero():
    """keepalive_timeout 0: a new connection still gets header_timeout for
    its first request; every answer closes the connection."""
    d = kg.start(kg.config("route * ^/echo(/|$) auth=anonymous",
                           keepalive_timeout="0", header_timeout="2s"))
    with kg.Conn(d.port) as c:
        time.sleep(0.3)
        c.send(kg.raw_request("GET", "/echo/late"))
        r = c.read_response()
        kg.check_echo(r, "GET", "/echo/late", what="first request after 0.3 s")
        kg.check(r.closes(), "keepalive_timeout 0 without Connection: close")
        kg.eq(c.wait_closed(3.0), b"", "bytes after the answer")


def test_body_timeout_408():
    d = timeouts()
    with kg.Conn(d.port) as c:
        c.send(b"POST /echo/b HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
               b"\r\n01234")
        t0 = time.monotonic()
        r = c.read_response()
        took = time.monotonic() - t0
        kg.check_refusal(r, 408, "request_timeout", "half a body")
        kg.check(r.closes(), "408 without Connection: close")
        kg.check(0.4 <= took <= 3.0, "408 after %.2f s (body_timeout 500ms)" %
                 took)
        expect_closed(c, "body 408")


# --- max_connections ------------------------------------------------------------

def test_max_connections_queue():
    # Busy connections are never closed to make room: with both slots
    # in the middle of a request, a third connection waits in the
    # kernel's queue.  Once one of them is idle again, it is closed so
    # that the waiting connection can be served (test_limits.py has more).
    d = kg.start(kg.config("route * ^/echo(/|$) auth=anonymous",
                           workers=1, max_connections=2))
    c1 = kg.Conn(d.port)
    c2 = kg.Conn(d.port)
    c3 = None
    try:
        for i, c in enumerate((c1, c2), 1):
            # The start of a second request comes in the same segment:
            # the connection is busy from its first request on.
            c.send(kg.raw_request("GET", "/echo/c%d" % i) +
                   b"GET /echo/c%db HTTP/1.1\r\n" % i)
            kg.check_echo(c.read_response(), "GET", "/echo/c%d" % i,
                          what="connection %d" % i)
        # The third connection completes in the kernel but is not served.
        c3 = kg.Conn(d.port)
        c3.send(kg.raw_request("GET", "/echo/c3"))
        kg.check(c3.is_open_after(0.8), "third connection answered (or "
                 "closed) while two were busy with max_connections 2")
        c1.send(b"Host: x\r\n\r\n")
        kg.check_echo(c1.read_response(), "GET", "/echo/c1b",
                      what="first connection's second request")
        t0 = time.monotonic()
        r = c3.read_response()
        kg.check_echo(r, "GET", "/echo/c3", what="third connection after "
                      "the first went idle")
        kg.check(time.monotonic() - t0 < 3, "third connection served late")
        c1.wait_closed(3)
        c2.send(b"Host: x\r\n\r\n")
        kg.check_echo(c2.read_response(), "GET", "/echo/c2b",
                      what="second connection still works")
    finally:
        for c in (c1, c2, c3):
            if c is not None:
                c.close()


TESTS = [
    test_keepalive_ten_requests,
    test_pipelining_in_order,
    test_connection_close_honoured,
    test_http10_closes_by_default,
    test_http10_keepalive_opt_in,
    test_half_closed_client_gets_response,
    test_oversize_header_431,
    test_request_line_too_long_414,
    test_too_many_headers_431,
    test_max_body_size_413,
] + [make_malformed_test(n, b) for n, b in MALFORMED] + [
    test_http2_version_505,
    test_bad_request_burst_workers_survive,
    test_chunked_body_counted,
    test_content_length_body_counted,
    test_expect_100_continue,
    test_header_timeout_408,
    test_header_timeout_is_total_not_per_read,
    test_keepalive_idle_timeout,
    test_keepalive_timeout_zero,
    test_body_timeout_408,
    test_max_connections_queue,
]

if __name__ == "__main__":
    kg.run(TESTS)
