"""
The real client behind trusted proxies, route from=, health_path and
shutdown_delay, seen from a client.

real_ip_from / real_ip_header: which address the access log's "client",
the anonymous rate limit and a route's from= use -- the TCP peer, unless
the peer is trusted and names the client in the header (read from the
right, trusted entries skipped, nginx's real_ip_recursive on): repeated
header lines, ports, IPv6 and IPv4-mapped addresses, entries that are not
addresses, the 64-entry cap, a keep-alive connection whose next request
names nobody (or cannot be parsed); the admin API and the metrics
listener, which always use the peer.  The X-Forwarded-For the echo
upstream receives: the incoming chain plus the peer, or only the peer
when real_ip_from is set and the peer is not trusted.  Route from= (on the
real client, before authentication, for verify_path too).  The
configuration errors, with FILE:LINE.

health_path: 200 {"status":"ok"} for any method, HEAD without a body, only
on the listen addresses, in the access log, not in
keygate_requests_total.  shutdown_delay: after
SIGTERM (or SIGINT) health_path answers 503 {"status":"draining"} and
closes while other requests are still served, then the graceful stop; a
second SIGTERM or a SIGQUIT ends the wait; a SIGHUP meanwhile is ignored.
"""

import os
import re
import signal
import sys
import time

import kgtest as kg

OPEN = "route GET,HEAD,POST ^/open(/|$) auth=anonymous upstream=echo"


# --- helpers -----------------------------------------------------------------

def call(d, path, headers=(), conn=None, port=None, host="127.0.0.1",
         method="GET"):
    """A request with exactly these headers (a list of pairs: a name may
    repeat), on conn or on a new connection to port (default d.port)."""
    raw = kg.raw_request(method, path, headers=list(headers),
                         host="[%s]" % host if ":" in host else "x")
    head = method == "HEAD"
    if conn is not None:
        conn.send(raw)
        return conn.read_final(head)
    with kg.Conn(port or d.port, host=host) as c:
        c.send(raw)
        return c.read_final(head)


def xff(*values):
    """One X-Forwarded-For header line per value."""
    return [("X-Forwarded-For", v) for v in values]


def client_of(d, r):
    """The access log's "client" of the response r."""
    return d.access_by_id(r.header("x-request-id"))["client"]


def seen_as(d, path, headers=(), **kw):
    """The client the access log names for a 200 request to path."""
    r = call(d, path, headers, **kw)
    kg.eq(r.status, 200, "%s with %r: status (body %r)" %
          (path, headers, r.body[:200]))
    return client_of(d, r)


def echo_xff(r, what):
    """The X-Forwarded-For the echo upstream received."""
    return kg.echo_headers(r, what).get("x-forwarded-for")


def within(elapsed, seconds, what):
    """A burst must fit in one window of the limit for its 429 to be
    guaranteed; on a machine so slow that it did not, nothing to check."""
    if elapsed >= seconds:
        kg.skip("%s took %.2f s, not within %.2f s: nothing to check" %
                (what, elapsed, seconds))


def health(d, method="GET", conn=None, path="/healthz"):
    return call(d, path, conn=conn, method=method)


def check_health_ok(r, what, head=False):
    kg.eq(r.status, 200, "%s: status (body %r)" % (what, r.body[:200]))
    kg.eq(r.header("content-type", "").split(";")[0].strip(),
          "application/json", "%s: Content-Type" % what)
    kg.eq(r.header("cache-control"), "no-store", "%s: Cache-Control" % what)
    kg.eq(r.header("content-length"), "16", "%s: Content-Length" % what)
    kg.eq(r.body, b"" if head else b'{"status":"ok"}\n', "%s: body" % what)
    kg.check_common(r, what)


def check_health_draining(r, what):
    kg.eq(r.status, 503, "%s: status (body %r)" % (what, r.body[:200]))
    kg.eq(r.body, b'{"status":"draining"}\n', "%s: body" % what)
    kg.eq(r.header("content-type", "").split(";")[0].strip(),
          "application/json", "%s: Content-Type" % what)
    kg.eq(r.header("cache-control"), "no-store", "%s: Cache-Control" % what)
    kg.check(r.closes(), "%s: no Connection: close on a draining 503" %
             what)
    kg.check_common(r, what)


def wait_draining(d, timeout=1.0):
    """Until health_path answers 503 on a new connection; checks that
    answer and that the connection is closed after it."""
    def probe():
        c = kg.Conn(d.port)
        try:
            r = health(d, conn=c)
            if r.status != 503:
                kg.eq(r.status, 200, "health before draining")
                return None
            check_health_draining(r, "health while draining")
            c.wait_closed(2.0)
            return r
        finally:
            c.close()
    return kg.wait_for(probe, timeout, "health_path to answer 503")


# --- which address is the client ---------------------------------------------

def test_untrusted_peer_xff_ignored():
    """No real_ip_from: X-Forwarded-For is never trusted; spoofed values do
    not escape the anonymous limit of 127.0.0.1; the header is forwarded
    with the peer appended (as before real_ip_from existed)."""
    d = kg.start(kg.config(OPEN, anonymous_rate_limit="3/1s"))
    spoofs = ["203.0.113.9", "203.0.113.10", "203.0.113.11", "203.0.113.12"]
    t0 = time.monotonic()
    with kg.Conn(d.port) as c:
        rs = [call(d, "/open/%d" % i, xff(s), conn=c)
              for i, s in enumerate(spoofs)]
    within(time.monotonic() - t0, 0.9, "4 anonymous requests")
    for i, r in enumerate(rs[:3]):
        kg.eq(r.status, 200, "request %d with XFF %s (body %r)" %
              (i + 1, spoofs[i], r.body[:200]))
    kg.check_refusal(rs[3], 429, "rate_limited",
                     "4th request, with yet another spoofed XFF")
    for i, r in enumerate(rs):
        kg.eq(client_of(d, r), "127.0.0.1", "access log client of request "
              "%d (XFF %s)" % (i + 1, spoofs[i]))
    kg.eq(echo_xff(rs[0], "first"), "203.0.113.9, 127.0.0.1",
          "X-Forwarded-For sent upstream")


def test_trusted_peer_anonymous_limit_per_client():
    """real_ip_from 127.0.0.1: the client named in X-Forwarded-For is the
    access log's client and has an anonymous counter of its own."""
    d = kg.start(kg.config(OPEN, anonymous_rate_limit="3/1s",
                           real_ip_from="127.0.0.1"))
    a, b = "198.51.100.1", "198.51.100.2"
    t0 = time.monotonic()
    with kg.Conn(d.port) as c:
        rs = [call(d, "/open/a%d" % i, xff(a), conn=c) for i in range(4)]
        rb = call(d, "/open/b", xff(b), conn=c)
        rp = call(d, "/open/peer", conn=c)
    within(time.monotonic() - t0, 0.9, "6 anonymous requests")
    for i, r in enumerate(rs[:3]):
        kg.eq(r.status, 200, "request %d from %s (body %r)" %
              (i + 1, a, r.body[:200]))
        kg.eq(r.header("ratelimit-remaining"), str(2 - i),
              "RateLimit-Remaining of request %d from %s" % (i + 1, a))
    kg.check_refusal(rs[3], 429, "rate_limited", "4th request from %s" % a)
    kg.eq(rb.status, 200, "first request from %s after %s is exhausted "
          "(body %r)" % (b, a, rb.body[:200]))
    kg.eq(rb.header("ratelimit-remaining"), "2",
          "RateLimit-Remaining of %s's first request" % b)
    kg.eq(rp.status, 200, "the peer itself (no XFF) has its own counter "
          "(body %r)" % rp.body[:200])
    kg.eq(client_of(d, rs[0]), a, "access log client (XFF %s)" % a)
    kg.eq(client_of(d, rs[3]), a, "access log client of the 429")
    kg.eq(client_of(d, rb), b, "access log client (XFF %s)" % b)
    kg.eq(client_of(d, rp), "127.0.0.1", "access log client without XFF")
    # Hop semantics: the chain goes on with the peer appended.
    kg.eq(echo_xff(rs[0], "from %s" % a), "198.51.100.1, 127.0.0.1",
          "X-Forwarded-For sent upstream")


def test_recursive_chain():
    """real_ip_from 127.0.0.1 10.0.0.0/8: the walk from the right."""
    d = kg.start(kg.config(OPEN, real_ip_from="127.0.0.1 10.0.0.0/8"))
    cases = [
        (xff("198.51.100.7, 10.1.2.3, 10.9.9.9"), "198.51.100.7",
         "trusted hops skipped"),
        (xff("203.0.113.1, 198.51.100.7, 10.1.2.3"), "198.51.100.7",
         "the first untrusted from the right, not the leftmost"),
        (xff("10.1.1.1, 10.2.2.2"), "10.1.1.1", "all trusted: the leftmost"),
        (xff("garbage, 10.2.2.2"), "10.2.2.2",
         "a non-address ends the walk: the last address read"),
        (xff("198.51.100.8, garbage"), "127.0.0.1",
         "the rightmost is not an address: the peer"),
        (xff("unknown"), "127.0.0.1", "no address at all: the peer"),
        (xff("198.51.100.20", "10.0.0.5"), "198.51.100.20",
         "two header lines: the last one first"),
        (xff("198.51.100.21", "garbage", "10.0.0.5"), "10.0.0.5",
         "a non-address in an earlier line ends the walk"),
        (xff("198.51.100.9:5555"), "198.51.100.9", "IPv4 with a port"),
        (xff("198.51.100.10:80, 10.0.0.9:8080"), "198.51.100.10",
         "trusted hop with a port"),
        (xff("[2001:db8::9]:443"), "2001:db8::9", "[IPv6]:port"),
        (xff("2001:db8::a, 10.3.3.3"), "2001:db8::a",
         "bare IPv6 behind a trusted IPv4 hop"),
        (xff("198.51.100.11 ,   10.4.4.4"), "198.51.100.11",
         "spaces around entries"),
        (xff("[198.51.100.12]"), "127.0.0.1",
         "[IPv4] is not an address"),
        (xff("198.51.100.13:"), "127.0.0.1", "an empty port"),
        (xff("198.51.100.14, ::ffff:10.1.2.3"), "198.51.100.14",
         "an IPv4-mapped hop is the IPv4 one (trusted)"),
        (xff("[::ffff:198.51.100.15]:443"), "198.51.100.15",
         "[IPv4-mapped]:port"),
        (xff("2001:DB8::B"), "2001:db8::b", "IPv6 written in capitals"),
    ]
    for headers, want, what in cases:
        kg.eq(seen_as(d, "/open/chain", headers), want,
              "%s: client for %r" % (what, headers))
    # The 64-entry cap: 63 trusted hops are walked through, 64 are not.
    hops = ["10.0.%d.%d" % (i // 250, i % 250 + 1) for i in range(64)]
    kg.eq(seen_as(d, "/open/cap",
                  xff(", ".join(["198.51.100.40"] + hops[:63]))),
          "198.51.100.40", "client behind 63 trusted hops (64 entries)")
    got = seen_as(d, "/open/cap",
                  xff(", ".join(["198.51.100.41"] + hops)))
    kg.check(got != "198.51.100.41" and got.startswith("10.0."),
             "client behind 64 trusted hops (65 entries): %r, expected the "
             "walk to stop at a trusted hop (at most 64 entries read)" % got)
    # The chain sent upstream: every incoming line, then the peer.
    r = call(d, "/open/fwd", xff("198.51.100.20", "10.0.0.5"))
    kg.eq(echo_xff(r, "two lines"), "198.51.100.20, 10.0.0.5, 127.0.0.1",
          "X-Forwarded-For sent upstream from a trusted peer")


def test_keepalive_client_per_request():
    """The real client is decided for each request, not once for the
    connection: a second request without the header is the peer."""
    d = kg.start(kg.config(
        OPEN, "route GET ^/net(/|$) auth=anonymous from=192.0.2.0/24",
        real_ip_from="127.0.0.1"))
    with kg.Conn(d.port) as c:
        r1 = call(d, "/open/1", xff("198.51.100.77"), conn=c)
        r2 = call(d, "/open/2", conn=c)
        r3 = call(d, "/net/1", xff("192.0.2.10"), conn=c)
        r4 = call(d, "/net/2", conn=c)
    kg.eq(r1.status, 200, "first request")
    kg.eq(client_of(d, r1), "198.51.100.77", "client of the first request")
    kg.eq(r2.status, 200, "second request")
    kg.eq(client_of(d, r2), "127.0.0.1", "client of a later request on the "
          "same connection without X-Forwarded-For")
    kg.eq(echo_xff(r2, "second"), "127.0.0.1", "XFF sent for the second")
    kg.eq(r3.status, 200, "from= allowed through XFF (body %r)" %
          r3.body[:200])
    kg.check_refusal(r4, 403, "forbidden", "from= on a later request "
                     "without XFF on the same connection")


def test_stale_client_after_bad_request():
    """A request refused before its headers are read (400, 431) names the
    peer in the access log, not the client of the previous request on the
    same keep-alive connection."""
    d = kg.start(kg.config(OPEN, real_ip_from="127.0.0.1"))
    bad = [
        ("header line without colon",
         b"GET /open/x HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
        ("header too large",
         b"GET /open/x HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 +
         b"\r\n\r\n", 431),
    ]
    wrong = []
    for what, raw, status in bad:
        with kg.Conn(d.port) as c:
            r1 = call(d, "/open/1", xff("198.51.100.77"), conn=c)
            kg.eq(client_of(d, r1), "198.51.100.77", "%s: client of the "
                  "first request" % what)
            c.send(raw)
            r2 = c.read_response()
        kg.eq(r2.status, status, "%s: status" % what)
        got = client_of(d, r2)
        if got != "127.0.0.1":
            wrong.append("%s (%d): %r" % (what, status, got))
    kg.check(not wrong, "access log client of a refused request after one "
             "from 198.51.100.77 on the same connection, expected "
             "'127.0.0.1': %s" % "; ".join(wrong))


def test_real_ip_header_x_real_ip():
    """real_ip_header X-Real-IP: that header names the client; an
    X-Forwarded-For is then not read for it (but still forwarded)."""
    d = kg.start(kg.config(OPEN, real_ip_from="127.0.0.1",
                           real_ip_header="X-Real-IP"))
    kg.eq(seen_as(d, "/open/r", [("X-Real-IP", "192.0.2.44")]), "192.0.2.44",
          "client named in X-Real-IP")
    kg.eq(seen_as(d, "/open/r", [("x-real-ip", "192.0.2.45:8080")]),
          "192.0.2.45", "lower-case header name, with a port")
    kg.eq(seen_as(d, "/open/r", xff("198.51.100.5")), "127.0.0.1",
          "X-Forwarded-For alone is ignored")
    r = call(d, "/open/r", [("X-Forwarded-For", "198.51.100.5"),
                            ("X-Real-IP", "192.0.2.46")])
    kg.eq(client_of(d, r), "192.0.2.46", "client with both headers")
    kg.eq(echo_xff(r, "both headers"), "198.51.100.5, 127.0.0.1",
          "X-Forwarded-For sent upstream (trusted peer: kept)")


def test_peer_not_in_trusted_list():
    """real_ip_from 10.0.0.0/8 only: the 127.0.0.1 peer is not trusted, so
    its X-Forwarded-For is ignored and not forwarded: only the peer is."""
    d = kg.start(kg.config(OPEN, real_ip_from="10.0.0.0/8",
                           anonymous_rate_limit="3/1s"))
    r = call(d, "/open/u", xff("198.51.100.1"))
    kg.eq(r.status, 200, "status")
    kg.eq(client_of(d, r), "127.0.0.1", "client")
    kg.eq(echo_xff(r, "untrusted"), "127.0.0.1",
          "X-Forwarded-For sent upstream (incoming dropped)")
    r = call(d, "/open/u", xff("198.51.100.1, 10.0.0.1", "10.0.0.2"))
    kg.eq(client_of(d, r), "127.0.0.1", "client with two lines")
    kg.eq(echo_xff(r, "two lines"), "127.0.0.1",
          "X-Forwarded-For sent upstream (two incoming lines dropped)")
    r = call(d, "/open/u")
    kg.eq(echo_xff(r, "no XFF"), "127.0.0.1", "X-Forwarded-For without one")


def test_ipv4_mapped_trusted():
    """real_ip_from ::ffff:127.0.0.0/104 is the IPv4 127.0.0.0/8: the
    127.0.0.1 peer is trusted."""
    d = kg.start(kg.config(OPEN, real_ip_from="::ffff:127.0.0.0/104"))
    kg.eq(seen_as(d, "/open/m", xff("198.51.100.50")), "198.51.100.50",
          "client behind a peer trusted through an IPv4-mapped prefix")


def test_ipv6():
    """real_ip_from ::1: IPv6 clients, IPv4-mapped ones shown as IPv4,
    from= with IPv6 prefixes; the 127.0.0.1 listener is not trusted."""
    if not kg.have_ipv6():
        kg.skip("no IPv6 loopback")
    d = kg.start(kg.config(
        OPEN,
        "route GET ^/v6net(/|$) auth=anonymous from=2001:db8::/32",
        "route GET ^/v4net(/|$) auth=anonymous from=198.51.100.0/24",
        real_ip_from="::1",
        listen=("127.0.0.1:{port}", "[::1]:{port2}")), nports=2)
    v6 = {"port": d.ports[1], "host": "::1"}
    kg.eq(seen_as(d, "/open/6", **v6), "::1", "client over ::1 without XFF")
    kg.eq(seen_as(d, "/open/6", xff("2001:db8::5"), **v6), "2001:db8::5",
          "IPv6 client named by the ::1 peer")
    kg.eq(seen_as(d, "/open/6", xff("::ffff:198.51.100.3"), **v6),
          "198.51.100.3", "IPv4-mapped client shown as IPv4")
    kg.eq(seen_as(d, "/open/6", xff("2001:db8::6, ::1"), **v6), "2001:db8::6",
          "::1 in the chain is skipped")
    r = call(d, "/open/6", xff("2001:db8::5"), **v6)
    kg.eq(echo_xff(r, "over ::1"), "2001:db8::5, ::1",
          "X-Forwarded-For sent upstream")
    # 127.0.0.1 is not in real_ip_from: ignored and dropped.
    r = call(d, "/open/4", xff("2001:db8::5"))
    kg.eq(client_of(d, r), "127.0.0.1", "client over 127.0.0.1 (untrusted)")
    kg.eq(echo_xff(r, "over 127.0.0.1"), "127.0.0.1",
          "X-Forwarded-For sent upstream by an untrusted peer")
    # from= on the real client, IPv6 and IPv4-mapped.
    r = call(d, "/v6net/a", xff("2001:db8:1::1"), **v6)
    kg.eq(r.status, 200, "from=2001:db8::/32, client 2001:db8:1::1")
    kg.check_refusal(call(d, "/v6net/b", xff("2001:db9::1"), **v6), 403,
                     "forbidden", "from=2001:db8::/32, client 2001:db9::1")
    kg.check_refusal(call(d, "/v6net/c", **v6), 403, "forbidden",
                     "from=2001:db8::/32, client ::1")
    r = call(d, "/v4net/a", xff("::ffff:198.51.100.3"), **v6)
    kg.eq(r.status, 200, "from=198.51.100.0/24, client ::ffff:198.51.100.3")


def test_admin_and_metrics_log_the_peer():
    """The admin API and the metrics listener use the peer, whatever a
    trusted peer says in X-Forwarded-For (keygate.conf(5), real_ip_from):
    also in the access log."""
    d = kg.start(kg.config(OPEN, real_ip_from="127.0.0.1", admin="{port2}",
                           metrics_listen="127.0.0.1:{port3}"), nports=3)
    h = {"X-Forwarded-For": "198.51.100.99"}
    ra = kg.admin(d, "GET", "/v1/keys", headers=h)
    kg.eq(ra.status, 200, "admin GET /v1/keys (body %r)" % ra.body[:200])
    rm = kg.get(d.ports[2], "/metrics", headers=h)
    kg.eq(rm.status, 200, "GET /metrics")
    rg = kg.get(d.port, "/open/g", headers=h)
    kg.eq(client_of(d, rg), "198.51.100.99", "gateway request's client")
    got = (client_of(d, ra), client_of(d, rm))
    kg.eq(got, ("127.0.0.1", "127.0.0.1"), "access log client of (the admin "
          "request, the metrics scrape) with X-Forwarded-For 198.51.100.99")


# --- route from= -------------------------------------------------------------

def test_route_from():
    """from= on the real client: 403 forbidden outside the set, before
    the credentials are looked at; verify_path requests too."""
    d = kg.start(kg.config(
        "route GET ^/net(/|$) auth=anonymous from=192.0.2.0/24 name=net",
        "route GET ^/keyed(/|$) auth=api-key from=192.0.2.0/24",
        "route GET ^/two(/|$) auth=anonymous from=192.0.2.7,198.51.100.0/25",
        real_ip_from="127.0.0.1", verify_path="/_keygate/verify"))
    r = call(d, "/net/a", xff("192.0.2.10"))
    kg.eq(r.status, 200, "allowed client (body %r)" % r.body[:200])
    kg.eq(client_of(d, r), "192.0.2.10", "access log client")
    r = call(d, "/net/b", xff("198.51.100.1"))
    kg.check_refusal(r, 403, "forbidden", "client outside from=")
    e = d.access_by_id(r.header("x-request-id"))
    kg.eq((e["client"], e["status"], e["route_name"]),
          ("198.51.100.1", 403, "net"), "access log of the refusal")
    kg.check_refusal(call(d, "/net/c"), 403, "forbidden",
                     "no XFF: the peer 127.0.0.1 is not in from=")
    # Before authentication: 403, not 401, without credentials.
    kg.check_refusal(call(d, "/keyed/a", xff("198.51.100.1")), 403,
                     "forbidden", "api-key route, disallowed client, no key")
    kg.check_refusal(call(d, "/keyed/a", xff("198.51.100.1") +
                          [("X-API-KEY", "live_" + "A" * 32)]), 403,
                     "forbidden", "api-key route, disallowed client, a key")
    kg.check_refusal(call(d, "/keyed/b", xff("192.0.2.10")), 401,
                     "missing_credentials",
                     "api-key route, allowed client, no key")
    # A list: a bare address and a prefix.
    for addr, status in (("192.0.2.7", 200), ("192.0.2.8", 403),
                         ("198.51.100.127", 200), ("198.51.100.128", 403)):
        r = call(d, "/two/x", xff(addr))
        kg.eq(r.status, status, "from=192.0.2.7,198.51.100.0/25, client %s"
              % addr)
    # verify_path requests: from= on the client nginx names.
    for addr, status in (("192.0.2.10", 204), ("198.51.100.1", 403)):
        r = call(d, "/_keygate/verify", xff(addr) + [
            ("X-Original-URI", "/net/v"), ("X-Original-Method", "GET")])
        kg.eq(r.status, status, "verify of /net/v for client %s (body %r)" %
              (addr, r.body[:200]))


def test_route_from_without_real_ip_from():
    """No real_ip_from: from= checks the peer; XFF cannot get in."""
    d = kg.start(kg.config(
        "route GET ^/local(/|$) auth=anonymous from=127.0.0.1",
        "route GET ^/ten(/|$) auth=anonymous from=10.0.0.0/8"))
    r = call(d, "/local/a")
    kg.eq(r.status, 200, "from=127.0.0.1, direct (body %r)" % r.body[:200])
    kg.check_refusal(call(d, "/ten/a"), 403, "forbidden",
                     "from=10.0.0.0/8, direct from 127.0.0.1")
    kg.check_refusal(call(d, "/ten/a", xff("10.1.1.1")), 403, "forbidden",
                     "from=10.0.0.0/8 with a spoofed XFF 10.1.1.1")


# --- configuration errors ----------------------------------------------------

CONFIG_ERRORS = [
    ("real_ip_from 10.0.0.1/8", r"did you mean 10\.0\.0\.0/8"),
    ("real_ip_from 127.0.0.1 192.168.1.1/16",
     r"did you mean 192\.168\.0\.0/16"),
    ("real_ip_from 2001:db8::1/32", r"did you mean 2001:db8::/32"),
    ("real_ip_from nonsense", r"real_ip_from.*nonsense"),
    ("real_ip_from 10.0.0.0/33", r"real_ip_from.*10\.0\.0\.0/33"),
    ("real_ip_from ::/129", r"real_ip_from.*::/129"),
    ("real_ip_from 10.0.0.0/x", r"real_ip_from.*10\.0\.0\.0/x"),
    ("route GET ^/x auth=anonymous from=", r"from"),
    ("route GET ^/x auth=anonymous from=1.2.3.4,bad", r"from=.*bad"),
    ("route GET ^/x auth=anonymous from=1.2.3.4,", r"from="),
    ("route GET ^/x auth=anonymous from=10.1.0.0/8",
     r"did you mean 10\.0\.0\.0/8"),
    ('real_ip_header "bad header"', r"real_ip_header.*bad header"),
    ("real_ip_header a:b", r"real_ip_header.*a:b"),
    ("health_path nohash", r"health_path.*must start with '/'"),
    ("health_path /a?b", r"health_path"),
    ("verify_path /check\nhealth_path /check",
     r'health_path "/check" is also the verify_path'),
]


def test_config_errors():
    """keygated -t refuses each bad line, naming FILE:LINE (the line of
    the bad directive) and the problem."""
    dir = kg.tempdir()
    good = kg.fill(kg.config(OPEN), dir, [kg.free_port()]) + "# a comment\n\n"
    for lines, message in CONFIG_ERRORS:
        text = good + lines + "\n"
        lineno = text.count("\n")	# the last line is the faulty one
        path = kg.write_file(dir, "bad.conf", text)
        p = kg.keygated("-t", "-c", path)
        kg.eq(p.returncode, 1, "%r: exit status of -t (stdout %r, stderr %r)"
              % (lines, p.stdout, p.stderr))
        want = "keygated: %s:%d: " % (path, lineno)
        kg.check(p.stderr.startswith(want),
                 "%r: stderr %r does not start with %r" % (lines, p.stderr,
                                                          want))
        kg.check(re.search(message, p.stderr),
                 "%r: stderr %r does not say /%s/" % (lines, p.stderr,
                                                      message))
        kg.check("configuration is valid" not in p.stdout,
                 "%r: a bad file reported valid" % lines)


def test_config_good():
    """Every new directive and option, written correctly, is accepted."""
    dir = kg.tempdir()
    text = kg.fill(kg.config(
        OPEN, "route GET ^/o auth=anonymous from=10.0.0.0/8,192.0.2.7,"
        "2001:db8::/32,::ffff:198.51.100.0/120",
        real_ip_from="127.0.0.1 ::1 10.0.0.0/8 fd00::/8",
        real_ip_header="X-Real-IP", health_path="/healthz",
        verify_path="/_keygate/verify", shutdown_delay="1500ms") +
        "real_ip_from 192.0.2.0/24\n", dir, [kg.free_port()])
    path = kg.write_file(dir, "good.conf", text)
    p = kg.keygated("-t", "-c", path)
    kg.eq(p.returncode, 0, "exit status of -t (stderr %r)" % p.stderr)
    kg.check("configuration is valid" in p.stdout,
             "-t output %r lacks 'configuration is valid'" % p.stdout)


# --- health_path -------------------------------------------------------------

REQUESTS_RE = re.compile(r'^keygate_requests_total\{([^}]*)\} (\S+)$', re.M)


def requests_total(d):
    """{labels text: value} of keygate_requests_total, from metrics_listen."""
    r = kg.get(d.ports[1], "/metrics")
    kg.eq(r.status, 200, "GET /metrics (%r)" % r.body[:200])
    return {m.group(1): float(m.group(2))
            for m in REQUESTS_RE.finditer(r.body.decode())}


def test_health_path():
    """Any method on exactly /healthz: 200 {"status":"ok"}, before the
    routes; logged, not counted in keygate_requests_total."""
    d = kg.start(kg.config(
        "route GET ^/pub$ auth=anonymous name=pub",
        "route * ^/healthz/deny auth=deny",
        health_path="/healthz", metrics_listen="127.0.0.1:{port2}",
        admin="{port3}"), nports=3)
    base = requests_total(d)
    with kg.Conn(d.port) as c:
        r = health(d, conn=c)
        check_health_ok(r, "GET /healthz")
        kg.check(not r.closes(), "GET /healthz closes the connection")
        rh = health(d, method="HEAD", conn=c)
        check_health_ok(rh, "HEAD /healthz", head=True)
        # Nothing was sent after the HEAD answer: the next response parses.
        rp = health(d, method="POST", conn=c)
        check_health_ok(rp, "POST /healthz on the same connection")
    rd = call(d, "/healthz", method="DELETE")
    check_health_ok(rd, "DELETE /healthz")
    # Exactly that path: not below it.
    kg.check_refusal(call(d, "/healthz/x"), 404, "no_route", "/healthz/x")
    kg.check_refusal(call(d, "/healthz/deny"), 403, "forbidden",
                     "/healthz/deny")
    # Only on the listen addresses.
    rx = call(d, "/healthz", port=d.ports[1])
    kg.eq(rx.status, 404, "/healthz on metrics_listen (body %r)" %
          rx.body[:200])
    rx = call(d, "/healthz", port=d.ports[2])
    kg.check(rx.status in (401, 404), "/healthz on admin_listen: %d %r" %
             (rx.status, rx.body[:200]))
    # In the access log, with the method and no route.
    for resp, method in ((r, "GET"), (rh, "HEAD"), (rp, "POST")):
        e = d.access_by_id(resp.header("x-request-id"))
        kg.eq((e["method"], e["path"], e["status"], e["route"]),
              (method, "/healthz", 200, None), "access log of %s /healthz" %
              method)
    # Not in keygate_requests_total; the 404 and 403 above are.
    after = requests_total(d)
    grown = {k: v - base.get(k, 0.0) for k, v in after.items()
             if v != base.get(k, 0.0)}
    kg.eq(sum(grown.values()), 2.0, "keygate_requests_total growth after 4 "
          "health requests, a 404 and a 403 (%r)" % grown)
    for _ in range(3):
        check_health_ok(health(d), "GET /healthz")
    kg.eq(requests_total(d), after, "keygate_requests_total after 3 more "
          "health requests")
    r = kg.get(d.port, "/pub")
    kg.eq(r.status, 200, "GET /pub")
    last = requests_total(d)
    pub = [k for k in last if 'route="pub"' in k and 'code="200"' in k]
    kg.eq(len(pub), 1, "the pub/200 series in %r" % sorted(last))
    kg.eq(last[pub[0]] - after.get(pub[0], 0.0), 1.0,
          "keygate_requests_total{route=pub,code=200} after GET /pub")
    kg.eq(sum(last.values()) - sum(after.values()), 1.0,
          "keygate_requests_total growth after GET /pub")


# --- shutdown_delay ----------------------------------------------------------

def drain_template(delay, workers=2):
    settings = {"health_path": "/healthz", "workers": workers}
    if delay is not None:
        settings["shutdown_delay"] = delay
    return kg.config(OPEN, **settings)


def test_shutdown_delay():
    """SIGTERM: health 503 at once, other requests served for 2 s, then
    the graceful stop and exit 0."""
    d = kg.start(drain_template("2s"))
    check_health_ok(health(d), "health before SIGTERM")
    c = kg.Conn(d.port)
    try:
        kg.eq(call(d, "/open/before", conn=c).status, 200,
              "keep-alive request before SIGTERM")
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        wait_draining(d, 1.0)
        r = call(d, "/open/new", [("Connection", "close")])
        kg.check_echo(r, "GET", "/open/new", what="new connection while "
                      "draining")
        r = call(d, "/open/ka", conn=c)
        kg.check_echo(r, "GET", "/open/ka", what="keep-alive connection "
                      "while draining")
    finally:
        c.close()
    d.wait_log(r"draining: health checks fail for 2(\.0+)? s "
               r"\(shutdown_delay\), then a graceful stop", 2.0)
    # Still there, still serving, still failing health, well into the delay.
    # (Unless this machine was so slow that 1.5 s passed already.)
    kg.wait_for(lambda: time.monotonic() - t0 >= 1.3, 2.0, "1.3 s to pass")
    if time.monotonic() - t0 < 1.5:
        kg.check(d.master_alive(), "master exited %.1f s into a 2 s delay"
                 % (time.monotonic() - t0))
        kg.eq(call(d, "/open/late").status, 200,
              "request 1.3 s into the delay")
        check_health_draining(health(d), "health 1.3 s into the delay")
    rc = d.wait_exit(10)
    took = time.monotonic() - t0
    kg.eq(rc, 0, "exit status after the delay and a graceful stop")
    kg.check(1.9 <= took < 10, "exit %.2f s after SIGTERM with "
             "shutdown_delay 2s" % took)
    text = d.errlog_text()
    kg.check(re.search(r"draining:.*\n(.*\n)*.*graceful stop", text),
             "no 'graceful stop' after 'draining' in the log:\n%s" %
             text[-1500:])
    kg.check(not os.path.exists(d.pidfile), "pidfile left behind")
    kg.wait_for(lambda: not d.our_pids(), 5, "workers to exit")


def test_second_signal_ends_delay():
    """SIGINT drains too; a SIGTERM during a 30 s delay stops at once."""
    d = kg.start(drain_template("30s", workers=1))
    d.signal(signal.SIGINT)
    wait_draining(d, 1.0)
    kg.eq(call(d, "/open/x").status, 200, "request while draining")
    t1 = time.monotonic()
    d.signal(signal.SIGTERM)
    rc = d.wait_exit(5)
    kg.eq(rc, 0, "exit status after the second signal")
    took = time.monotonic() - t1
    kg.check(took < 5, "stop took %.1f s after the second SIGTERM" % took)
    d.wait_log(r"graceful stop", 1.0)


def test_sigquit_ends_delay():
    """SIGQUIT during the delay: the fast stop, at once."""
    d = kg.start(drain_template("30s", workers=1))
    d.signal(signal.SIGTERM)
    wait_draining(d, 1.0)
    t1 = time.monotonic()
    d.signal(signal.SIGQUIT)
    rc = d.wait_exit(5)
    kg.eq(rc, 0, "exit status after SIGQUIT")
    took = time.monotonic() - t1
    kg.check(took < 3, "fast stop took %.1f s" % took)
    d.wait_log(r"fast stop", 1.0)


def test_no_delay_by_default():
    """Without shutdown_delay a SIGTERM stops at once, as before."""
    d = kg.start(drain_template(None))
    check_health_ok(health(d), "health")
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    rc = d.wait_exit(5)
    took = time.monotonic() - t0
    kg.eq(rc, 0, "exit status")
    kg.check(took < 3, "stop took %.1f s without shutdown_delay" % took)
    kg.check("draining" not in d.errlog_text(),
             "'draining' logged without shutdown_delay")


def test_reload_ignored_while_draining():
    """A SIGHUP during shutdown_delay reloads nothing and does not cut the
    delay short; a worker that dies meanwhile is replaced and drains."""
    d = kg.start(drain_template("3s", workers=1))
    # A reload works before the SIGTERM (so its absence later means
    # something).
    d.signal(signal.SIGHUP)
    d.wait_log(r"configuration reloaded", 5.0)
    kg.check_refusal(call(d, "/new"), 404, "no_route", "/new before")
    kg.wait_for(lambda: len(d.worker_pids()) == 1, 5.0,
                "the old worker to leave")
    d.write_conf(kg.config(OPEN, "route GET ^/new$ auth=anonymous",
                           health_path="/healthz", workers=1,
                           shutdown_delay="3s"))
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    wait_draining(d, 1.0)
    d.signal(signal.SIGHUP)
    time.sleep(0.7)
    kg.check(d.master_alive(), "master gone 0.7 s after SIGHUP")
    kg.check_refusal(call(d, "/new"), 404, "no_route",
                     "/new after a SIGHUP while draining")
    check_health_draining(health(d), "health after the SIGHUP")
    # A worker that dies meanwhile is replaced, and its replacement
    # drains too.
    d.allow_worker_deaths = True
    old = d.worker_pids()
    kg.eq(len(old), 1, "workers while draining")
    os.kill(old[0], signal.SIGKILL)
    d.wait_workers(1, 1.5, exclude=old)
    d.wait_ready(timeout=1.0)
    check_health_draining(health(d), "health from the replacement worker")
    kg.eq(call(d, "/open/r").status, 200, "request to the replacement")
    rc = d.wait_exit(10)
    took = time.monotonic() - t0
    kg.eq(rc, 0, "exit status")
    kg.check(2.8 <= took < 10, "exit %.2f s after SIGTERM with "
             "shutdown_delay 3s and a SIGHUP" % took)
    text = d.errlog_text()
    kg.eq(len(re.findall(r"configuration reloaded", text)), 1,
          "'configuration reloaded' lines (one before the SIGTERM)")
    kg.check("reload failed" not in text, "a reload was tried:\n%s" %
             text[-1500:])


TESTS = [
    test_untrusted_peer_xff_ignored,
    test_trusted_peer_anonymous_limit_per_client,
    test_recursive_chain,
    test_keepalive_client_per_request,
    test_stale_client_after_bad_request,
    test_real_ip_header_x_real_ip,
    test_peer_not_in_trusted_list,
    test_ipv4_mapped_trusted,
    test_ipv6,
    test_admin_and_metrics_log_the_peer,
    test_route_from,
    test_route_from_without_real_ip_from,
    test_config_errors,
    test_config_good,
    test_health_path,
    test_shutdown_delay,
    test_second_signal_ends_delay,
    test_sigquit_ends_delay,
    test_no_delay_by_default,
    test_reload_ignored_while_draining,
]


if __name__ == "__main__":
    if len(sys.argv) > 1:
        names = sys.argv[1:]
        TESTS = [t for t in TESTS if t.__name__ in names]
    kg.run(TESTS)
