"""
Routing and forwarding, seen from a client: which route answers, the
echo upstream's view of the forwarded request (method, path, query, body
size, headers after the hop-by-hop / identity / X-Forwarded-* rules),
request ids, HEAD, and the access log.

Most checks only read, so they share one daemon (ROUTES below); the
route numbers in the comments are the 1-based indexes the access log uses.
"""

import datetime
import time

import kgtest as kg

ROUTES = kg.config(
    "upstream second echo",
    "route GET,HEAD ^/echo(/|$) auth=anonymous",			# 1
    "route POST,PUT ^/echo(/|$) auth=anonymous upstream=second",	# 2
    "route * ^/deny(/|$) auth=deny",					# 3
    "route GET ^/only-get$ auth=anonymous",				# 4
    "route * ^/only-get$ auth=deny",					# 5
    "route GET ^/get-or-404$ auth=anonymous",				# 6
    "route * ^/first(/|$) auth=anonymous",				# 7
    "route * ^/first(/|$) auth=deny",					# 8
    "route * ^/firstdeny(/|$) auth=deny",				# 9
    "route * ^/firstdeny(/|$) auth=anonymous",				# 10
    "route * secret auth=deny",						# 11
    "route GET ^/pub$ auth=anonymous",					# 12
    workers=2)


def daemon():
    return kg.shared("routes", ROUTES)


def route_of(d, r):
    """The access log's route for the response r (by its request id)."""
    return d.access_by_id(r.header("x-request-id"))["route"]


# --- what answers -----------------------------------------------------------

def test_anonymous_route_echoes_get():
    d = daemon()
    r = kg.get(d.port, "/echo/x?a=1&b=two")
    j = kg.check_echo(r, "GET", "/echo/x", "a=1&b=two", 0)
    kg.eq(j["headers"].get("host"), "127.0.0.1:%d" % d.port, "echoed host")
    r = kg.get(d.port, "/echo")
    kg.check_echo(r, "GET", "/echo", None, 0, "no query")


def test_anonymous_route_echoes_post_body():
    d = daemon()
    r = kg.request(d.port, "POST", "/echo/post", body=b"hello world",
                   headers={"Content-Type": "text/plain"})
    kg.check_echo(r, "POST", "/echo/post", None, 11)
    r = kg.request(d.port, "PUT", "/echo/put?v=2", body=b"x" * 5000)
    kg.check_echo(r, "PUT", "/echo/put", "v=2", 5000)


def test_deny_route_403_keeps_connection():
    d = daemon()
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/deny/x"))
        r = c.read_response()
        kg.check_refusal(r, 403, "forbidden", "GET /deny/x")
        kg.check(not r.closes(), "403 should keep the connection alive")
        c.send(kg.raw_request("POST", "/deny", body=b"abc"))
        kg.check_refusal(c.read_response(), 403, "forbidden", "POST /deny")
        c.send(kg.raw_request("GET", "/echo/after"))
        kg.check_echo(c.read_response(), "GET", "/echo/after",
                      what="request after two 403s on the same connection")


def test_no_route_404_keeps_connection():
    d = daemon()
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/nowhere/at/all?x=1"))
        r = c.read_response()
        kg.check_refusal(r, 404, "no_route", "GET /nowhere")
        kg.check(not r.closes(), "404 should keep the connection alive")
        c.send(kg.raw_request("GET", "/echo/after"))
        kg.check_echo(c.read_response(), "GET", "/echo/after",
                      what="request after a 404 on the same connection")
    kg.eq(route_of(d, r), None, "access log route of an unrouted request")


def test_method_set_respected():
    d = daemon()
    r = kg.get(d.port, "/only-get")
    kg.check_echo(r, "GET", "/only-get", what="GET on a GET route")
    kg.eq(route_of(d, r), 4, "route of GET /only-get")
    # POST is not in route 4's set: it falls through to route 5 (deny).
    r = kg.request(d.port, "POST", "/only-get", body=b"x")
    kg.check_refusal(r, 403, "forbidden", "POST /only-get")
    kg.eq(route_of(d, r), 5, "route of POST /only-get")
    r = kg.get(d.port, "/get-or-404")
    kg.check_echo(r, "GET", "/get-or-404", what="GET /get-or-404")
    # Nothing after route 6 matches POST /get-or-404.
    for m in ("POST", "DELETE", "PATCH"):
        r = kg.request(d.port, m, "/get-or-404", body=b"")
        kg.check_refusal(r, 404, "no_route", "%s /get-or-404" % m)
    r = kg.request(d.port, "DELETE", "/echo/x")
    kg.check_refusal(r, 404, "no_route", "DELETE /echo/x (GET,HEAD / "
                     "POST,PUT routes only)")


def test_first_match_wins():
    d = daemon()
    r = kg.get(d.port, "/first/a")
    kg.check_echo(r, "GET", "/first/a", what="/first (anonymous before deny)")
    kg.eq(route_of(d, r), 7, "route of /first/a")
    r = kg.get(d.port, "/firstdeny/a")
    kg.check_refusal(r, 403, "forbidden", "/firstdeny (deny before "
                     "anonymous)")
    kg.eq(route_of(d, r), 9, "route of /firstdeny/a")


def test_query_not_part_of_match():
    d = daemon()
    # Route 11 denies every path containing "secret": a query containing it
    # must not matter, and route 12's "^/pub$" must match despite a query.
    r = kg.get(d.port, "/pub?secret=1")
    kg.check_echo(r, "GET", "/pub", "secret=1", 0, "/pub?secret=1")
    kg.eq(route_of(d, r), 12, "route of /pub?secret=1")
    r = kg.get(d.port, "/pub?x=1&y=2")
    kg.check_echo(r, "GET", "/pub", "x=1&y=2", 0, "/pub?x=1&y=2")
    r = kg.get(d.port, "/pub/secret")
    kg.check_refusal(r, 403, "forbidden", "/pub/secret (path matches "
                     "route 11)")
    kg.eq(route_of(d, r), 11, "route of /pub/secret")


def test_upstream_selection():
    d = daemon()
    # Route 2 names the second echo upstream; route 1 uses the first.
    r = kg.request(d.port, "POST", "/echo/second", body=b"12345")
    kg.check_echo(r, "POST", "/echo/second", None, 5, "upstream=second")
    kg.eq(route_of(d, r), 2, "route of POST /echo/second")
    r = kg.get(d.port, "/echo/first")
    kg.check_echo(r, "GET", "/echo/first", None, 0, "default upstream")
    kg.eq(route_of(d, r), 1, "route of GET /echo/first")


def test_upstream_selection_two_named():
    d = kg.start(kg.config(
        "upstream alpha echo",
        "upstream beta echo",
        "route GET ^/a(/|$) auth=anonymous upstream=alpha",
        "route GET ^/b(/|$) auth=anonymous upstream=beta",
        "route GET ^/d(/|$) auth=anonymous",
        upstream=False))
    for p in ("/a/1", "/b/2", "/d/3"):
        kg.check_echo(kg.get(d.port, p), "GET", p, what=p)


# --- forwarded headers --------------------------------------------------------

def test_x_forwarded_for():
    d = daemon()
    j = kg.get(d.port, "/echo/xff").json()
    kg.eq(j["headers"].get("x-forwarded-for"), "127.0.0.1", "XFF without one")
    kg.eq(j["headers"].get("x-forwarded-proto"), "http", "X-Forwarded-Proto")
    j = kg.get(d.port, "/echo/xff",
               headers={"X-Forwarded-For": "203.0.113.7"}).json()
    kg.eq(j["headers"].get("x-forwarded-for"), "203.0.113.7, 127.0.0.1",
          "XFF appended")
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/echo/xff", headers=[
            ("X-Forwarded-For", "198.51.100.1, 10.0.0.1"),
            ("X-Forwarded-For", "192.0.2.9"),
            ("X-Forwarded-Proto", "https")]))
        j = kg.check_echo(c.read_response(), "GET", "/echo/xff")
    kg.eq(j["headers"].get("x-forwarded-for"),
          "198.51.100.1, 10.0.0.1, 192.0.2.9, 127.0.0.1", "two XFF headers")
    kg.eq(j["headers"].get("x-forwarded-proto"), "http",
          "client's X-Forwarded-Proto replaced")


def test_x_forwarded_for_ipv6():
    if not kg.have_ipv6():
        kg.skip("no IPv6 loopback")
    d = kg.start(kg.config("route GET ^/ auth=anonymous",
                           listen=("127.0.0.1:{port}", "[::1]:{port2}")),
                 nports=2)
    with kg.Conn(d.ports[1], host="::1") as c:
        c.send(kg.raw_request("GET", "/v6", host="[::1]"))
        j = kg.check_echo(c.read_response(), "GET", "/v6")
    kg.eq(j["headers"].get("x-forwarded-for"), "::1", "XFF over IPv6")


def test_hop_by_hop_headers_removed():
    d = daemon()
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/echo/hop", headers=[
            ("Connection", "keep-alive, X-Hop-Custom"),
            ("X-Hop-Custom", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "X-Foo"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("Proxy-Connection", "keep-alive"),
            ("X-Keep", "yes"),
            ("X-MiXeD-Case", "Value Kept As Is"),
            ("X-Dup", "a"),
            ("X-Dup", "b")]))
        j = kg.check_echo(c.read_response(), "GET", "/echo/hop")
    h = j["headers"]
    kg.eq(sorted(h), sorted(["host", "x-keep", "x-mixed-case", "x-dup",
                             "x-forwarded-for", "x-forwarded-proto",
                             "x-request-id", "x-auth-scheme"]),
          "forwarded header names")
    kg.eq(h["x-auth-scheme"], "anonymous", "x-auth-scheme")
    kg.eq(h["x-keep"], "yes", "x-keep")
    kg.eq(h["x-mixed-case"], "Value Kept As Is", "value case kept")
    kg.eq(h["x-dup"], "a, b", "duplicate headers joined")


def test_upgrade_header_removed():
    d = daemon()
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/echo/up", headers=[
            ("Connection", "Upgrade"), ("Upgrade", "websocket"),
            ("X-Keep", "1")]))
        j = kg.check_echo(c.read_response(), "GET", "/echo/up")
    kg.check("upgrade" not in j["headers"] and
             "connection" not in j["headers"],
             "Upgrade/Connection forwarded: %r" % j["headers"])
    kg.eq(j["headers"].get("x-keep"), "1", "x-keep")


def test_transfer_encoding_not_forwarded():
    d = daemon()
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("POST", "/echo/te", headers=[
            ("Transfer-Encoding", "chunked")]) +
            b"4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n")
        j = kg.check_echo(c.read_response(), "POST", "/echo/te", None, 7)
    kg.check("transfer-encoding" not in j["headers"],
             "Transfer-Encoding forwarded: %r" % j["headers"])


def test_spoofed_identity_headers_removed():
    d = daemon()
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/echo/id", headers=[
            ("X-Consumer-Id", "attacker"),
            ("X-Key-Id", "key_0123456789abcdef"),
            ("x-app-id", "app_evil"),
            ("X-SCOPES", "admin"),
            ("X-Auth-Scheme", "api-key"),
            ("X-Other", "kept")]))
        j = kg.check_echo(c.read_response(), "GET", "/echo/id")
    h = j["headers"]
    for n in ("x-consumer-id", "x-key-id", "x-app-id", "x-scopes"):
        kg.check(n not in h, "client's %s was forwarded: %r" % (n, h))
    # keygate's own value replaces the client's (an anonymous route).
    kg.eq(h.get("x-auth-scheme"), "anonymous", "x-auth-scheme")
    kg.eq(h.get("x-other"), "kept", "ordinary header")


# --- request ids --------------------------------------------------------------

def check_reqid(d, sent, kept):
    hdrs = {} if sent is None else {"X-Request-Id": sent}
    r = kg.get(d.port, "/echo/rid", headers=hdrs)
    j = kg.check_echo(r, "GET", "/echo/rid", what="X-Request-Id %r" % sent)
    got = r.header("x-request-id")
    if kept:
        kg.eq(got, sent, "X-Request-Id kept")
    else:
        kg.check(kg.REQID_RE.match(got or ""),
                 "generated X-Request-Id %r for %r is not 32 hex chars" %
                 (got, sent))
    kg.eq(j["headers"].get("x-request-id"), got,
          "forwarded x-request-id vs response's")
    kg.eq(d.access_by_id(got)["request_id"], got, "access log request_id")
    return got


def test_request_id_kept():
    d = daemon()
    check_reqid(d, "req-ABC_1.2:3", True)
    check_reqid(d, "x", True)
    check_reqid(d, "A" * 128, True)


def test_request_id_generated():
    d = daemon()
    a = check_reqid(d, None, False)
    b = check_reqid(d, None, False)
    kg.check(a != b, "two generated request ids are equal: %s" % a)
    check_reqid(d, "A" * 129, False)
    check_reqid(d, "has space", False)
    check_reqid(d, "semi;colon", False)
    check_reqid(d, "slash/y", False)


# --- HEAD ---------------------------------------------------------------------

def test_head_no_body_but_length():
    d = daemon()
    hdrs = [("X-Request-Id", "head-same-id")]
    with kg.Conn(d.port) as c:
        # HEAD and GET pipelined: any body bytes after the HEAD response
        # would be read as the start of the GET response and break it.
        c.send(kg.raw_request("HEAD", "/echo/h", headers=hdrs) +
               kg.raw_request("GET", "/echo/h", headers=hdrs))
        h = c.read_response(head=True)
        g = c.read_response()
    kg.eq(h.status, 200, "HEAD status")
    kg.check_common(h, "HEAD response")
    kg.check_echo(g, "GET", "/echo/h", what="GET after HEAD")
    # The echo of the HEAD request says "HEAD" where the GET's says "GET".
    kg.eq(int(h.header("content-length")), len(g.body) + 1,
          "HEAD Content-Length vs the GET body length + 1")
    kg.eq(h.header("content-type"), g.header("content-type"),
          "HEAD Content-Type")
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("HEAD", "/nope") +
               kg.raw_request("GET", "/echo/after-head"))
        h = c.read_response(head=True)
        g = c.read_response()
    kg.eq(h.status, 404, "HEAD /nope status")
    kg.check(int(h.header("content-length", "0")) > 0,
             "HEAD 404: Content-Length of the refusal expected")
    kg.check_echo(g, "GET", "/echo/after-head", what="GET after HEAD 404")
    # http.client agrees that there is no body.
    r = kg.request(d.port, "HEAD", "/echo/h2")
    kg.eq((r.status, r.body), (200, b""), "HEAD via http.client")


# --- access log ---------------------------------------------------------------

FIELDS = ("time", "pid", "client", "method", "path", "route", "status",
          "bytes", "duration_us", "request_id")


def check_entry(d, e, method, path, route, status):
    for f in FIELDS:
        kg.check(f in e, "access log entry lacks %r: %r" % (f, e))
    kg.check(kg.RFC3339_RE.match(e["time"]), "time %r not RFC 3339" %
             e["time"])
    t = datetime.datetime.fromisoformat(e["time"].replace("Z", "+00:00"))
    kg.check(abs(t.timestamp() - time.time()) < 300,
             "time %r is not now" % e["time"])
    kg.check(isinstance(e["pid"], int) and e["pid"] in d.worker_pids(),
             "pid %r is not a worker (%s)" % (e["pid"], d.worker_pids()))
    kg.eq(e["client"], "127.0.0.1", "client")
    kg.eq(e["method"], method, "method")
    kg.eq(e["path"], path, "path")
    kg.eq(e["route"], route, "route")
    kg.eq(e["status"], status, "status")
    kg.check(isinstance(e["bytes"], int) and e["bytes"] > 0,
             "bytes %r" % e["bytes"])
    kg.check(isinstance(e["duration_us"], int) and e["duration_us"] >= 0,
             "duration_us %r" % e["duration_us"])


def test_access_log():
    d = daemon()
    cases = [("GET", "/echo/al?token=s3cr3tA&x=1", None, "/echo/al", 1, 200),
             ("GET", "/nope?q=s3cr3tB", None, "/nope", None, 404),
             ("POST", "/echo/p?k=s3cr3tC", b"12345", "/echo/p", 2, 200),
             ("GET", "/deny?s3cr3tD", None, "/deny", 3, 403)]
    for method, target, body, path, route, status in cases:
        r = kg.request(d.port, method, target, body=body)
        kg.eq(r.status, status, "%s %s" % (method, target))
        e = d.access_by_id(r.header("x-request-id"))
        check_entry(d, e, method, path, route, status)
        kg.check(e["bytes"] >= len(r.body), "bytes %d < body %d" %
                 (e["bytes"], len(r.body)))
    with open(d.access_path, "rb") as f:
        raw = f.read()
    kg.check(b"s3cr3t" not in raw and b"?" not in raw,
             "a query string reached the access log")


def test_dot_segments_refused():
    d = daemon()
    for path in ("/echo/../admin", "/echo/%2e%2E/admin", "/echo/./x",
                 "/echo/x/..", "/echo/%2e/x"):
        with kg.Conn(d.port) as c:
            c.send(kg.raw_request("GET", path))
            r = c.read_response()
            kg.check_refusal(r, 400, "bad_request", path)
            # A 400 closes the connection, like every other 400.
            kg.check(r.closes(), "%s: 400 without Connection: close" % path)
            c.wait_closed()
    for path in ("/echo/.x", "/echo/...", "/echo/a..b"):
        kg.check_echo(kg.get(d.port, path), "GET", path, what=path)
    # Decoded before routing and forwarding (test_paths.py).
    kg.check_echo(kg.get(d.port, "/echo/%2ex"), "GET", "/echo/.x",
                  what="/echo/%2ex")


TESTS = [
    test_dot_segments_refused,
    test_anonymous_route_echoes_get,
    test_anonymous_route_echoes_post_body,
    test_deny_route_403_keeps_connection,
    test_no_route_404_keeps_connection,
    test_method_set_respected,
    test_first_match_wins,
    test_query_not_part_of_match,
    test_upstream_selection,
    test_upstream_selection_two_named,
    test_x_forwarded_for,
    test_x_forwarded_for_ipv6,
    test_hop_by_hop_headers_removed,
    test_upgrade_header_removed,
    test_transfer_encoding_not_forwarded,
    test_spoofed_identity_headers_removed,
    test_request_id_kept,
    test_request_id_generated,
    test_head_no_body_but_length,
    test_access_log,
]

if __name__ == "__main__":
    kg.run(TESTS)
