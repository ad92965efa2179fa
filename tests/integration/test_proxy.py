"""
The reverse proxy, seen from a client and from the upstream: keygated in
front of upstream.py (a real HTTP/1.1 server in a subprocess that echoes
what it received, streams big or chunked bodies, answers slowly or never,
closes connections at awkward moments and counts its connections).

What is checked: the config directives (upstream URL forms and options,
upstream=, forward_credentials, max_body_size, verify_path), the request
the upstream receives (request line, Host, header order, hop-by-hop /
identity / credential headers removed, X-Forwarded-*, X-Request-Id,
bodies with Content-Length or chunked), the response the client receives
(status, reason, headers minus hop-by-hop, Content-Length / chunked /
close-delimited framing, HEAD/204/304), the keep-alive pool, failures
(502, 504, cut responses, the retry of a stale pooled connection), 100 MiB
bodies both ways with the workers' memory bounded, and the nginx
auth_request endpoint (verify_path).
"""

import hashlib
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.parse

import kgtest as kg
import upstream as U

MiB = 1 << 20


with_upstreams = U.with_upstreams


def start_up(name="up", ipv6=False):
    try:
        return U.Upstream(name=name, ipv6=ipv6)
    except OSError as e:
        if ipv6:
            kg.skip("cannot listen on [::1]: %s" % e)
        raise


def conf(up, *routes, opts="read_timeout=3s", name="api", **settings):
    """A config whose first (default) upstream is up, then routes."""
    lines = ["upstream %s %s%s" % (name, up.url, " " + opts if opts else "")]
    lines += list(routes) or ["route * ^/ auth=anonymous"]
    return kg.config(*lines, upstream=False, **settings)


def proxy(up, *routes, opts="read_timeout=3s", workers=1, **settings):
    """A daemon in front of up; up's counters are zeroed once it serves."""
    d = kg.start(conf(up, *routes, opts=opts, workers=workers, **settings))
    up.reset()
    return d


def echo_of(r, what="echo"):
    """The upstream's JSON echo in a proxied 200 response."""
    kg.eq(r.status, 200, "%s: status (body %r)" % (what, r.body[:300]))
    try:
        j = json.loads(r.body.decode())
    except ValueError:
        raise AssertionError("%s: not the upstream's echo: %r" %
                             (what, r.body[:300]))
    kg.check(isinstance(j, dict) and "target" in j,
             "%s: not the upstream's echo: %r" % (what, j))
    return j


def up_headers(j, name):
    """Values of header name (case-insensitive) the upstream received."""
    return [v for n, v in j["headers"] if n.lower() == name.lower()]


def up_names(j):
    return [n.lower() for n, _ in j["headers"]]


def one_request(port, raw, head=False, timeout=kg.DEFAULT_TIMEOUT):
    with kg.Conn(port, timeout=timeout) as c:
        c.send(raw)
        return c.read_final(head)


def get_raw(port, target, headers=(), version="HTTP/1.1", host="x"):
    return one_request(port, kg.raw_request("GET", target, host=host,
                                            headers=headers,
                                            version=version))


# --- reading big bodies without keeping them --------------------------------

class BodyStream:
    """The body of a response on c, hashed as it arrives, never kept."""

    def __init__(self, c, r):
        self.c = c
        self.r = r
        self.buf = bytearray(c.buf)
        c.buf = b""
        self.sha = hashlib.sha256()
        self.n = 0

    def _more(self):
        try:
            d = self.c.sock.recv(1 << 20)
        except ConnectionResetError:
            d = b""
        if not d:
            return False
        self.buf += d
        return True

    def _take(self, k):
        d = bytes(self.buf[:k])
        del self.buf[:k]
        self.sha.update(d)
        self.n += len(d)

    def read(self, limit=None):
        """Read the whole body (or stop after limit bytes); returns self."""
        te = (self.r.header("transfer-encoding") or "").lower()
        cl = self.r.header("content-length")
        if "chunked" in te:
            self._chunked(limit)
        elif cl is not None:
            left = int(cl)
            while left:
                if not self.buf and not self._more():
                    raise kg.ProtocolError("closed after %d of %s body bytes"
                                           % (self.n, cl))
                k = min(left, len(self.buf))
                self._take(k)
                left -= k
                if limit is not None and self.n >= limit:
                    return self
        else:
            while self.buf or self._more():
                self._take(len(self.buf))
                if limit is not None and self.n >= limit:
                    return self
        return self

    def _line(self):
        while b"\r\n" not in self.buf:
            if not self._more():
                raise kg.ProtocolError("EOF in chunked body after %d bytes"
                                       % self.n)
        i = self.buf.index(b"\r\n")
        line = bytes(self.buf[:i])
        del self.buf[:i + 2]
        return line

    def _chunked(self, limit):
        while True:
            size = int(self._line().split(b";")[0], 16)
            if size == 0:
                while self._line() != b"":
                    pass
                return
            left = size
            while left:
                if not self.buf and not self._more():
                    raise kg.ProtocolError("EOF in chunk after %d bytes" %
                                           self.n)
                k = min(left, len(self.buf))
                self._take(k)
                left -= k
            if self._line() != b"":
                raise kg.ProtocolError("chunk not followed by CRLF")
            if limit is not None and self.n >= limit:
                return

    def hexdigest(self):
        return self.sha.hexdigest()


# --- memory of the workers --------------------------------------------------

# === configuration ===========================================================

def write_conf(text):
    dir = kg.tempdir()
    text = kg.fill(text, dir, [kg.free_port()])
    path = os.path.join(dir, "keygate.conf")
    with open(path, "w") as f:
        f.write(text)
    return path, text


def test_config_upstream_forms_accepted():
    text = kg.config(
        "upstream api http://127.0.0.1:9000",
        "upstream opts http://127.0.0.1:9001 max_idle=4 connect_timeout=2s "
        "read_timeout=500ms",
        "upstream none http://127.0.0.1:9002 max_idle=0",
        "upstream v6 http://[::1]:9003",
        "upstream named http://localhost:9004/",
        "upstream demo echo",
        "forward_credentials on",
        "verify_path /_keygate/verify",
        "max_body_size 0",
        "route GET ^/a auth=anonymous",
        "route GET ^/b auth=anonymous upstream=opts",
        "route GET ^/c auth=anonymous upstream=demo",
        upstream=False)
    path, _ = write_conf(text)
    p = kg.keygated("-t", "-c", path)
    kg.eq(p.returncode, 0, "-t exit status (stderr %r)" % p.stderr)
    for v in ("off", "on"):
        path, _ = write_conf(kg.config("forward_credentials %s" % v,
                                       "max_body_size 10k",
                                       "route GET ^/ auth=anonymous"))
        p = kg.keygated("-t", "-c", path)
        kg.eq(p.returncode, 0, "-t with forward_credentials %s (stderr %r)" %
              (v, p.stderr))


BAD_UPSTREAM = [
    ("upstream api http://127.0.0.1:9000 max_idle=lots", r"max_idle"),
    ("upstream api http://127.0.0.1:9000 read_timeout=soon", r"read_timeout"),
    ("upstream api http://127.0.0.1:9000 connect_timeout=x",
     r"connect_timeout"),
    ("upstream api http://127.0.0.1:9000 colour=blue", r"colour"),
    ("upstream api http://127.0.0.1:notaport", r"port|address"),
    ("upstream api http://", r"address|api"),
    ("upstream api http://no-such-host.invalid:80", r"resolve"),
    ("upstream api ftp://127.0.0.1:21", r"ftp|type"),
    ("upstream echo http://127.0.0.1:9000", r"duplicate upstream"),
    ("route GET ^/z auth=anonymous upstream=nowhere", r'"nowhere"'),
    ("forward_credentials maybe", r"forward_credentials"),
    ("verify_path relative/path", r"verify_path"),
]


def test_config_upstream_errors():
    for line, message in BAD_UPSTREAM:
        path, text = write_conf(kg.config("route GET ^/ auth=anonymous") +
                                line + "\n")
        lineno = text.count("\n")
        p = kg.keygated("-t", "-c", path)
        kg.eq(p.returncode, 1, "-t exit status for %r (stderr %r)" %
              (line, p.stderr))
        want = "%s:%d: " % (path, lineno)
        kg.check(want in p.stderr, "stderr %r for %r does not name %s" %
                 (p.stderr, line, want))
        kg.check(re.search(message, p.stderr),
                 "stderr %r for %r does not say /%s/" % (p.stderr, line,
                                                        message))


def test_route_upstream_selection():
    a = start_up("alpha")
    b = start_up("beta")
    d = kg.start(kg.config(
        "upstream a %s read_timeout=3s" % a.url,
        "upstream b %s read_timeout=3s" % b.url,
        "upstream e echo",
        "route * ^/to-b(/|$) auth=anonymous upstream=b",
        "route * ^/to-e(/|$) auth=anonymous upstream=e",
        "route * ^/ auth=anonymous", upstream=False))
    r = kg.get(d.port, "/default/x")
    kg.eq(r.header("x-upstream-name"), "alpha",
          "route without upstream= goes to the first upstream defined")
    kg.eq(echo_of(r)["target"], "/default/x", "target at alpha")
    r = kg.get(d.port, "/to-b/y?q=1")
    kg.eq(r.header("x-upstream-name"), "beta", "upstream=b")
    kg.eq(echo_of(r)["target"], "/to-b/y?q=1", "target at beta")
    r = kg.get(d.port, "/to-e/z")
    kg.check_echo(r, "GET", "/to-e/z", what="the built-in echo upstream")


def test_ipv6_and_hostname_upstreams():
    if not kg.have_ipv6():
        kg.skip("no IPv6 loopback")
    up = start_up("dual", ipv6=True)
    d = kg.start(kg.config(
        "upstream v6 http://[::1]:%d read_timeout=3s" % up.port,
        "upstream byname http://localhost:%d read_timeout=3s" % up.port,
        "route * ^/six(/|$) auth=anonymous upstream=v6",
        "route * ^/name(/|$) auth=anonymous upstream=byname",
        upstream=False))
    j = echo_of(kg.get(d.port, "/six/a"), "via [::1]")
    kg.eq(j["target"], "/six/a", "target via [::1]")
    j = echo_of(kg.get(d.port, "/name/b"), "via localhost")
    kg.eq(j["target"], "/name/b", "target via localhost")


# === the forwarded request ===================================================

def test_request_line_host_and_order():
    up = start_up()
    d = proxy(up)
    sent = [("X-First", "1"), ("Accept", "*/*"), ("X-Mixed-Case", "Kept As Is"),
            ("User-Agent", "kgtest/1"), ("X-Last", "z")]
    r = get_raw(d.port, "/p/a%20b/c?x=%2F&y=1&y=2", headers=sent,
                host="example.test:8080")
    j = echo_of(r)
    kg.eq(j["method"], "GET", "method")
    kg.eq(j["target"], "/p/a%20b/c?x=%2F&y=1&y=2", "target, byte for byte")
    kg.eq(j["version"], "HTTP/1.1", "version of the forwarded request")
    kg.eq(up_headers(j, "host"), ["example.test:8080"],
          "Host as the client sent it")
    got = [(n, v) for n, v in j["headers"]
           if n.lower() in [s[0].lower() for s in sent]]
    kg.eq([(n.lower(), v) for n, v in got],
          [(n.lower(), v) for n, v in sent],
          "end-to-end headers (in order, values as sent)")
    for n in ("x-forwarded-for", "x-forwarded-proto", "x-request-id"):
        kg.eq(len(up_headers(j, n)), 1, "number of %s headers" % n)
    kg.eq(up_headers(j, "x-forwarded-proto"), ["http"], "X-Forwarded-Proto")
    # A duplicate header: every value arrives, in order.
    r = get_raw(d.port, "/dup", headers=[("X-Dup", "a"), ("X-Other", "o"),
                                        ("X-Dup", "b")])
    vals = ", ".join(up_headers(echo_of(r), "x-dup"))
    kg.eq(vals, "a, b", "values of a repeated header")


def test_http10_client_forwarded_as_http11():
    up = start_up()
    d = proxy(up)
    r = get_raw(d.port, "/old?v=1", version="HTTP/1.0", host="old.test")
    j = echo_of(r, "HTTP/1.0 client")
    kg.eq(j["version"], "HTTP/1.1", "version towards the upstream")
    kg.eq(j["target"], "/old?v=1", "target")
    kg.eq(up_headers(j, "host"), ["old.test"], "Host")


def test_absolute_form_target():
    up = start_up()
    d = proxy(up)
    r = get_raw(d.port, "http://example.test/abs/p?q=1", host="example.test")
    j = echo_of(r, "absolute-form request")
    kg.eq(j["target"], "/abs/p?q=1", "absolute-form target made origin-form")
    kg.eq(up_headers(j, "host"), ["example.test"], "Host")


def test_hop_by_hop_request_headers_removed():
    up = start_up()
    d = proxy(up)
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/hop", headers=[
            ("Connection", "keep-alive, X-Hop-Custom"),
            ("X-Hop-Custom", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "X-Foo"),
            ("Upgrade", "websocket"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("Proxy-Connection", "keep-alive"),
            ("Proxy-Foo", "bar"),
            ("X-Keep", "yes")]))
        j = echo_of(c.read_response(), "GET with hop-by-hop headers")
    names = up_names(j)
    for n in ("x-hop-custom", "keep-alive", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-connection", "proxy-foo"):
        kg.check(n not in names, "%s reached the upstream: %r" %
                 (n, j["headers"]))
    for v in up_headers(j, "connection"):
        kg.check("x-hop-custom" not in v.lower(),
                 "the client's Connection header was forwarded: %r" % v)
    kg.eq(up_headers(j, "x-keep"), ["yes"], "end-to-end X-Keep")


def test_expect_not_forwarded():
    up = start_up()
    d = proxy(up)
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("POST", "/expect", headers=[
            ("Expect", "100-continue"), ("Content-Length", "10")]))
        # Send the body whether or not a 100 Continue came first.
        c.settimeout(1.0)
        try:
            c._fill()
        except socket.timeout:
            pass
        c.settimeout(kg.DEFAULT_TIMEOUT)
        c.send(b"0123456789")
        r = c.read_final()
    j = echo_of(r, "POST with Expect")
    kg.check("expect" not in up_names(j), "Expect reached the upstream: %r" %
             j["headers"])
    kg.eq(j["body_bytes"], 10, "body bytes at the upstream")


def test_identity_and_credentials_removed_by_default():
    up = start_up()
    d = proxy(up)
    r = get_raw(d.port, "/id", headers=[
        ("X-Consumer-Id", "attacker"), ("X-Key-Id", "key_0123456789abcdef"),
        ("x-app-id", "app_evil"), ("X-SCOPES", "admin"),
        ("X-Auth-Scheme", "api-key"), ("X-API-KEY", "live_secret"),
        ("Authorization", "Bearer abc.def.ghi"), ("X-Other", "kept")])
    j = echo_of(r)
    for n in ("x-consumer-id", "x-key-id", "x-app-id", "x-scopes",
              "x-api-key", "authorization"):
        kg.check(n not in up_names(j), "the client's %s reached the upstream "
                 "(forward_credentials off): %r" % (n, j["headers"]))
    kg.eq(up_headers(j, "x-auth-scheme"), ["anonymous"],
          "keygate's X-Auth-Scheme replaces the client's")
    kg.eq(up_headers(j, "x-other"), ["kept"], "ordinary header")


def test_forward_credentials_on():
    up = start_up()
    d = proxy(up, forward_credentials="on")
    r = get_raw(d.port, "/cred", headers=[
        ("X-API-KEY", "live_secret"), ("Authorization", "Bearer abc.def.ghi"),
        ("X-Consumer-Id", "attacker"), ("X-Auth-Scheme", "jwt")])
    j = echo_of(r)
    kg.eq(up_headers(j, "x-api-key"), ["live_secret"],
          "X-API-KEY with forward_credentials on")
    kg.eq(up_headers(j, "authorization"), ["Bearer abc.def.ghi"],
          "Authorization with forward_credentials on")
    kg.check("x-consumer-id" not in up_names(j), "the client's "
             "x-consumer-id reached the upstream (forward_credentials on): "
             "%r" % j["headers"])
    kg.eq(up_headers(j, "x-auth-scheme"), ["anonymous"],
          "keygate's X-Auth-Scheme replaces the client's")


def test_x_forwarded_for():
    up = start_up()
    d = proxy(up)
    j = echo_of(get_raw(d.port, "/xff"))
    kg.eq(up_headers(j, "x-forwarded-for"), ["127.0.0.1"], "XFF without one")
    j = echo_of(get_raw(d.port, "/xff", headers=[
        ("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")]))
    kg.eq(up_headers(j, "x-forwarded-for"), ["203.0.113.7, 127.0.0.1"],
          "XFF appended")
    kg.eq(up_headers(j, "x-forwarded-proto"), ["http"],
          "the client's X-Forwarded-Proto replaced")


def test_request_id_to_upstream_and_back():
    up = start_up()
    d = proxy(up)
    # Kept.
    r = get_raw(d.port, "/rid", headers=[("X-Request-Id", "cli-A_1.2:3")])
    j = echo_of(r)
    kg.eq(up_headers(j, "x-request-id"), ["cli-A_1.2:3"], "forwarded id")
    kg.eq(r.header_all("x-request-id"), ["cli-A_1.2:3"], "response id")
    # Generated, for none and for invalid ones.
    for sent in (None, "has space", "A" * 129, "semi;colon"):
        hdrs = [] if sent is None else [("X-Request-Id", sent)]
        r = get_raw(d.port, "/rid", headers=hdrs)
        j = echo_of(r)
        got = r.header_all("x-request-id")
        kg.eq(len(got), 1, "X-Request-Id headers in the response (%r)" % sent)
        kg.check(kg.REQID_RE.match(got[0]), "generated id %r for %r is not "
                 "32 hex characters" % (got[0], sent))
        kg.eq(up_headers(j, "x-request-id"), got,
              "id forwarded vs id in the response (sent %r)" % sent)
    # The upstream's own id wins in the response.
    r = get_raw(d.port, "/rid?reqid=up-own-7",
                headers=[("X-Request-Id", "cli-B")])
    kg.eq(up_headers(echo_of(r), "x-request-id"), ["cli-B"], "forwarded id")
    kg.eq(r.header_all("x-request-id"), ["up-own-7"],
          "the upstream's X-Request-Id in the response")


def test_content_length_body_forwarded():
    up = start_up()
    d = proxy(up)
    body = U.pattern(200000)
    r = kg.request(d.port, "POST", "/cl?x=1", body=body,
                   headers={"Content-Type": "application/octet-stream"})
    j = echo_of(r, "POST with Content-Length")
    kg.eq(j["method"], "POST", "method")
    kg.eq(up_headers(j, "content-length"), ["200000"], "Content-Length")
    kg.check(not j["chunked"], "a Content-Length body was sent chunked")
    kg.eq(j["body_bytes"], 200000, "body bytes")
    kg.eq(j["body_sha256"], hashlib.sha256(body).hexdigest(), "body sha256")
    r = kg.request(d.port, "PUT", "/empty", body=b"",
                   headers={"Content-Length": "0"})
    j = echo_of(r, "PUT with an empty body")
    kg.eq(j["body_bytes"], 0, "empty body")


def test_chunked_body_forwarded_chunked():
    up = start_up()
    d = proxy(up)
    pieces = [b"a" * 1, b"hello world", U.pattern(70000), b"z" * 4096]
    raw = kg.raw_request("POST", "/chunk-in", headers=[
        ("Transfer-Encoding", "chunked")])
    for p in pieces:
        raw += b"%x\r\n" % len(p) + p + b"\r\n"
    raw += b"0\r\n\r\n"
    with kg.Conn(d.port) as c:
        c.send(raw)
        j = echo_of(c.read_response(), "chunked POST")
        # The connection stays usable after a chunked request.
        c.send(kg.raw_request("GET", "/after-chunked"))
        kg.eq(echo_of(c.read_response())["target"], "/after-chunked",
              "request after a chunked one")
    all_ = b"".join(pieces)
    kg.check(j["chunked"], "a chunked body reached the upstream with "
             "headers %r (expected Transfer-Encoding: chunked)" % j["headers"])
    kg.check("content-length" not in up_names(j),
             "Content-Length and chunked together: %r" % j["headers"])
    kg.eq(j["body_bytes"], len(all_), "body bytes")
    kg.eq(j["body_sha256"], hashlib.sha256(all_).hexdigest(), "body sha256")


# === the response ============================================================

def test_status_and_reason_passed():
    up = start_up()
    d = proxy(up)
    r = get_raw(d.port, "/status/418?reason=Short%20And%20Stout&bytes=7")
    kg.eq(r.status, 418, "status")
    kg.eq(r.reason, "Short And Stout", "reason phrase")
    kg.eq(r.body, U.pattern(7), "body")
    r = get_raw(d.port, "/status/503?bytes=10")
    kg.eq(r.status, 503, "an upstream 503 passes as it is")
    kg.eq(r.body, U.pattern(10), "the upstream's 503 body")
    r = get_raw(d.port, "/status/201?reason=Made")
    kg.eq((r.status, r.reason), (201, "Made"), "status and reason")


def test_response_hop_by_hop_removed():
    up = start_up()
    d = proxy(up)
    hs = ["Connection:X-Secret-Hop", "X-Secret-Hop:1", "Keep-Alive:timeout=5",
          "Proxy-Connection:keep-alive", "Upgrade:h2c", "Trailer:X-T",
          "X-Keep:yes", "Set-Cookie:a=1; Path=/", "Set-Cookie:b=2"]
    qs = "&".join("h=" + urllib.parse.quote(h, safe="") for h in hs)
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/resp?" + qs))
        r = c.read_response()
        echo_of(r)
        names = [n.lower() for n, _ in r.headers]
        for n in ("x-secret-hop", "keep-alive", "proxy-connection", "upgrade",
                  "trailer"):
            kg.check(n not in names, "the upstream's %s reached the client: "
                     "%r" % (n, r.headers))
        for v in r.header_all("connection"):
            kg.check("x-secret-hop" not in v.lower(), "the upstream's "
                     "Connection header reached the client: %r" % v)
        kg.eq(r.header_all("x-keep"), ["yes"], "end-to-end X-Keep")
        kg.eq(r.header_all("set-cookie"), ["a=1; Path=/", "b=2"],
              "two Set-Cookie headers, separate and in order")
        kg.eq(r.header("x-upstream-name"), "up", "other upstream headers")
        # Still one usable connection.
        c.send(kg.raw_request("GET", "/next"))
        kg.eq(echo_of(c.read_response())["target"], "/next", "next request")


def test_content_length_response_passed():
    up = start_up()
    d = proxy(up)
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/big?bytes=300000&chunk=7000"))
        r = c.read_response()
        kg.eq(r.status, 200, "status")
        kg.eq(r.header("content-length"), "300000", "Content-Length")
        kg.eq(r.header("transfer-encoding"), None, "Transfer-Encoding")
        kg.eq(hashlib.sha256(r.body).hexdigest(), U.pattern_sha256(300000),
              "body")
        c.send(kg.raw_request("GET", "/again"))
        kg.eq(echo_of(c.read_response())["target"], "/again",
              "request after a 300 kB response")


def test_chunked_response_to_http11_client():
    up = start_up()
    d = proxy(up)
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/chunked?n=5&size=3000"))
        r = c.read_response()
        kg.eq(r.status, 200, "status")
        kg.check("chunked" in (r.header("transfer-encoding") or "").lower(),
                 "a chunked upstream response reached an HTTP/1.1 client "
                 "with headers %r" % r.headers)
        kg.eq(r.header("content-length"), None, "Content-Length with chunked")
        kg.eq(r.body, U.chunked_body(5, 3000), "body")
        kg.check(not r.closes(), "connection closed after a chunked response")
        c.send(kg.raw_request("GET", "/chunked?n=0"))
        r = c.read_response()
        kg.eq((r.status, r.body), (200, b""), "an empty chunked body")
        c.send(kg.raw_request("GET", "/after"))
        kg.eq(echo_of(c.read_response())["target"], "/after",
              "request after two chunked responses")


def test_chunked_response_to_http10_client():
    up = start_up()
    d = proxy(up)
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/chunked?n=4&size=1000",
                              version="HTTP/1.0"))
        r = c.read_response()
        kg.eq(r.status, 200, "status")
        kg.eq(r.header("transfer-encoding"), None,
              "Transfer-Encoding sent to an HTTP/1.0 client")
        kg.eq(r.body, U.chunked_body(4, 1000), "body")


def test_close_delimited_response():
    up = start_up()
    d = proxy(up)
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/close-delimited?bytes=150000"))
        r = c.read_response()
        kg.eq(r.status, 200, "status")
        kg.check(r.closes(), "a close-delimited response without "
                 "Connection: close: %r" % r.headers)
        kg.eq(r.header("content-length"), None, "Content-Length")
        kg.eq(r.header("transfer-encoding"), None, "Transfer-Encoding")
        kg.eq(len(r.body), 150000, "body length")
        kg.eq(r.body, U.pattern(150000), "body")
        kg.check(c.eof, "connection still open after the response")


def test_head_204_304_no_body():
    up = start_up()
    d = proxy(up)
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("HEAD", "/big?bytes=5000"))
        r = c.read_response(head=True)
        kg.eq(r.status, 200, "HEAD status")
        kg.eq(r.header("content-length"), "5000", "HEAD Content-Length")
        c.send(kg.raw_request("HEAD", "/chunked?n=3&size=10"))
        kg.eq(c.read_response(head=True).status, 200, "HEAD of a chunked "
              "resource")
        c.send(kg.raw_request("HEAD", "/echo-head"))
        r = c.read_response(head=True)
        kg.eq(r.status, 200, "HEAD of an echo")
        kg.check(int(r.header("content-length", "0")) > 0,
                 "HEAD Content-Length %r" % r.header("content-length"))
        c.send(kg.raw_request("GET", "/status/204"))
        r = c.read_response()
        kg.eq(r.status, 204, "204 status")
        c.send(kg.raw_request("GET", "/status/304?h=ETag%3A%22v1%22"))
        r = c.read_response()
        kg.eq(r.status, 304, "304 status")
        kg.eq(r.header("etag"), '"v1"', "304 ETag")
        # A 304 may carry the Content-Length of the representation.
        c.send(kg.raw_request("GET",
                              "/status/304?h=Content-Length%3A100"))
        kg.eq(c.read_response().status, 304, "304 with a Content-Length")
        c.send(kg.raw_request("GET", "/after-304"))
        r = c.read_response()
        kg.eq(echo_of(r, "request after HEADs, 204 and 304s")["target"],
              "/after-304", "target (no stray body bytes before it)")
        kg.check(not c.buf, "stray bytes after the responses: %r" % c.buf)


def test_pipelined_requests_proxied():
    up = start_up()
    d = proxy(up)
    with kg.Conn(d.port) as c:
        c.send(b"".join(kg.raw_request("GET", "/pipe/%d" % i)
                        for i in range(4)))
        for i in range(4):
            kg.eq(echo_of(c.read_response())["target"], "/pipe/%d" % i,
                  "pipelined response %d" % i)


# === the keep-alive pool =====================================================

def test_pool_reused_on_one_client_connection():
    up = start_up()
    d = proxy(up)
    conns = []
    with kg.Conn(d.port) as c:
        for i in range(5):
            c.send(kg.raw_request("GET", "/seq/%d" % i))
            j = echo_of(c.read_response())
            kg.eq(j["target"], "/seq/%d" % i, "target")
            conns.append(j["conn"])
    kg.eq(len(set(conns)), 1, "upstream connections used by 5 sequential "
          "requests (connection numbers %r)" % conns)
    kg.eq(up.stats()["connections"], 1, "connections the upstream accepted")


def test_pool_shared_by_client_connections():
    up = start_up()
    d = proxy(up, workers=1)
    for i in range(3):
        echo_of(kg.get(d.port, "/again/%d" % i))
    s = up.stats()
    kg.eq((s["requests"], s["connections"]), (3, 1),
          "(requests, upstream connections) for 3 client connections in "
          "turn, one worker")


def test_pool_max_idle_zero():
    up = start_up()
    d = proxy(up, opts="read_timeout=3s max_idle=0")
    with kg.Conn(d.port) as c:
        for i in range(3):
            c.send(kg.raw_request("GET", "/noidle/%d" % i))
            echo_of(c.read_response())
    kg.eq(up.stats()["connections"], 3, "upstream connections, max_idle=0")


def test_upstream_connection_close_not_reused():
    up = start_up()
    d = proxy(up)
    with kg.Conn(d.port) as c:
        for i in range(3):
            c.send(kg.raw_request("GET", "/cl/%d?close=1" % i))
            r = c.read_response()
            kg.eq(echo_of(r)["target"], "/cl/%d?close=1" % i, "target")
            kg.check(not r.closes(), "the upstream's Connection: close "
                     "reached the client (it is hop-by-hop)")
    kg.eq(up.stats()["connections"], 3,
          "upstream connections when each one is closed by the upstream")


def test_interim_responses_skipped():
    up = start_up()
    d = proxy(up)
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/interim?interim=1"))
        r = c.read_final()	# 1xx may be passed on or not
        kg.eq(echo_of(r, "final response after 100 and 103")["target"],
              "/interim?interim=1", "target")
        c.send(kg.raw_request("GET", "/after-interim"))
        kg.eq(echo_of(c.read_response())["target"], "/after-interim",
              "next request")


def test_client_connection_close():
    up = start_up()
    d = proxy(up)
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/bye", headers=[("Connection",
                                                        "close")]))
        r = c.read_response()
        j = echo_of(r, "request with Connection: close")
        kg.check(r.closes(), "response without Connection: close")
        c.wait_closed(2.0)
    kg.check(not [v for v in up_headers(j, "connection")
                  if "close" in v.lower()],
             "the client's Connection: close reached the upstream")
    echo_of(kg.get(d.port, "/next"), "next client")
    kg.eq(up.stats()["connections"], 1, "upstream connections (the client's "
          "Connection: close does not end the upstream one)")


def test_client_half_close_gets_answer():
    up = start_up()
    d = proxy(up)
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/half?ms=200"))
        c.shutdown_wr()
        kg.eq(echo_of(c.read_response(), "half-closed client")["target"],
              "/half?ms=200", "target")


def test_slow_request_body_is_not_a_read_timeout():
    up = start_up()
    d = proxy(up, opts="read_timeout=500ms")
    body = U.pattern(3000)
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("POST", "/slow-body", headers=[
            ("Content-Length", str(len(body)))]))
        for i in range(0, 3000, 1000):
            time.sleep(0.6)
            c.send(body[i:i + 1000])
        j = echo_of(c.read_response(), "body sent in 1.8 s, read_timeout "
                    "500ms")
    kg.eq(j["body_sha256"], hashlib.sha256(body).hexdigest(), "body")
    t0 = time.monotonic()
    r = kg.request(d.port, "POST", "/silent", body=b"abc")
    kg.check_refusal(r, 504, "upstream_timeout", "silent upstream, POST")
    kg.check(time.monotonic() - t0 < 3.0, "504 took %.1f s" %
             (time.monotonic() - t0))


def test_concurrent_clients_share_the_pool():
    up = start_up()
    d = proxy(up, workers=2)
    errors = []

    def client(k):
        try:
            with kg.Conn(d.port, timeout=10) as c:
                for i in range(10):
                    t = "/conc/%d/%d?ms=%d" % (k, i, (k * 7 + i) % 20)
                    if i % 3 == 0:
                        body = b"%d-%d" % (k, i) * 100
                        c.send(kg.raw_request("POST", t, body=body))
                    else:
                        body = b""
                        c.send(kg.raw_request("GET", t))
                    j = echo_of(c.read_response(), "client %d request %d" %
                                (k, i))
                    kg.eq(j["target"], t, "target")
                    kg.eq(j["body_sha256"], hashlib.sha256(body).hexdigest(),
                          "body of %s" % t)
        except Exception as e:
            errors.append("client %d: %s: %s" % (k, type(e).__name__, e))

    ts = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    kg.check(not errors, "; ".join(errors[:5]))
    s = up.stats()
    kg.eq(s["requests"], 160, "requests at the upstream")
    kg.check(s["connections"] <= 32, "%d upstream connections for 16 "
             "clients on 2 workers" % s["connections"])


# === failures ================================================================

def test_upstream_refused_502():
    # {port2} is free (start() picked it) and nothing listens on it.
    d = kg.start(kg.config("upstream down http://127.0.0.1:{port2} "
                           "connect_timeout=2s read_timeout=2s",
                           "route * ^/ auth=anonymous", upstream=False),
                 nports=2)
    t0 = time.monotonic()
    r = get_raw(d.port, "/x")
    kg.check_refusal(r, 502, "upstream_unavailable", "connection refused")
    kg.check(time.monotonic() - t0 < 2.0, "502 took %.1f s" %
             (time.monotonic() - t0))
    r = kg.request(d.port, "POST", "/y", body=b"abc")
    kg.check_refusal(r, 502, "upstream_unavailable", "POST, refused")


def test_upstream_silent_504():
    up = start_up()
    d = proxy(up, opts="read_timeout=500ms")
    t0 = time.monotonic()
    r = get_raw(d.port, "/silent")
    dt = time.monotonic() - t0
    kg.check_refusal(r, 504, "upstream_timeout", "silent upstream")
    kg.check(0.4 <= dt <= 3.0, "504 after %.2f s with read_timeout=500ms" %
             dt)
    # The timed-out connection is not reused: the next request works.
    r = get_raw(d.port, "/after-timeout")
    kg.eq(echo_of(r)["target"], "/after-timeout", "request after a 504")


def test_upstream_slow_within_read_timeout():
    up = start_up()
    d = proxy(up, opts="read_timeout=500ms")
    r = get_raw(d.port, "/slow?ms=250")
    kg.eq(echo_of(r, "answer after 250 ms")["target"], "/slow?ms=250",
          "target")
    # read_timeout is between reads: a body trickling in pieces 300 ms apart
    # arrives whole although it takes longer than 500 ms in all.
    t0 = time.monotonic()
    r = get_raw(d.port, "/trickle?bytes=3000&pieces=4&gap_ms=300")
    kg.eq(r.status, 200, "trickled response status")
    kg.eq(r.body, U.pattern(3000), "trickled body")
    kg.check(time.monotonic() - t0 >= 0.8, "trickle did not trickle")


def test_upstream_closes_before_answer_502():
    up = start_up()
    d = proxy(up)
    r = get_raw(d.port, "/close-before")
    kg.check_refusal(r, 502, "upstream_unavailable", "upstream closed")
    r = get_raw(d.port, "/after")
    kg.eq(echo_of(r)["target"], "/after", "request after a 502")


def test_failure_after_response_started_closes_client():
    up = start_up()
    d = proxy(up)
    for target, what in (("/short?promise=1000&send=500",
                          "the upstream sent 500 of 1000 bytes and closed"),
                         ("/chunked?n=3&size=100&cut=1",
                          "the upstream's chunked body was cut")):
        with kg.Conn(d.port, timeout=3) as c:
            c.send(kg.raw_request("GET", target))
            try:
                r = c.read_response()
            except kg.ProtocolError:
                pass
            except socket.timeout:
                raise AssertionError("%s: the client connection stayed open "
                                     "(waiting for the rest for 3 s): %d "
                                     "bytes received" % (what, c.received))
            else:
                raise AssertionError("%s, yet a complete response arrived: "
                                     "%r" % (what, r))
            kg.check(c.eof, "%s: connection not closed" % what)
    r = get_raw(d.port, "/after")
    kg.eq(echo_of(r)["target"], "/after", "request after two cut responses")


def test_stale_pooled_connection_retried():
    up = start_up()
    d = proxy(up)
    with kg.Conn(d.port) as c:
        # Answered with keep-alive, then closed by the upstream 50 ms later.
        c.send(kg.raw_request("GET", "/one?idle_close_ms=50"))
        first = echo_of(c.read_response())["conn"]
        time.sleep(0.3)
        c.send(kg.raw_request("GET", "/two"))
        j = echo_of(c.read_response(), "GET after the pooled connection "
                    "was closed")
        kg.eq(j["target"], "/two", "target")
        kg.check(j["conn"] != first, "answered on the closed connection?")
        # The race: the upstream reads the next request and closes.
        c.send(kg.raw_request("GET", "/three?drop_next=1"))
        dropping = echo_of(c.read_response())["conn"]
        c.send(kg.raw_request("GET", "/four"))
        j = echo_of(c.read_response(), "GET on a connection the upstream "
                    "closed unanswered (must be retried)")
        kg.eq(j["target"], "/four", "target")
        kg.check(j["conn"] != dropping, "conn numbers")
    log = [e for e in up.stats()["log"] if e[2] == "/four"]
    kg.eq(len(log), 2, "times /four reached the upstream (the dropped try "
          "and the retry): %r" % log)


def test_stale_connection_post_not_retried():
    up = start_up()
    d = proxy(up)
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/arm?drop_next=1"))
        echo_of(c.read_response())
        c.send(kg.raw_request("POST", "/once", body=b"do it once"))
        r = c.read_response()
    kg.check_refusal(r, 502, "upstream_unavailable",
                     "POST with a body on a connection closed unanswered")
    log = [e for e in up.stats()["log"] if e[2] == "/once"]
    kg.eq(len(log), 1, "times the POST reached the upstream: %r" % log)


def test_client_abort_during_download():
    up = start_up()
    d = proxy(up)
    with kg.Conn(d.port, timeout=10) as c:
        c.send(kg.raw_request("GET", "/big?bytes=%d" % (100 * MiB)))
        r = c.read_response(head=True)
        kg.eq(r.status, 200, "status")
        BodyStream(c, r).read(limit=MiB)
    # keygate drops the upstream connection instead of reading 100 MiB for
    # nobody, and keeps serving.
    kg.wait_for(lambda: up.stats()["open"] == 0, 5.0,
                "the upstream connection of the aborted download to close")
    r = get_raw(d.port, "/after-abort")
    kg.eq(echo_of(r)["target"], "/after-abort", "request after an abort")


# === body size limits ========================================================

def test_body_too_large_content_length():
    up = start_up()
    d = proxy(up, max_body_size="1k")
    r = kg.request(d.port, "POST", "/big-post", body=b"x" * 1025)
    kg.check_refusal(r, 413, "body_too_large", "1025 bytes, limit 1k")
    kg.eq(up.stats()["requests"], 0, "requests that reached the upstream")
    r = kg.request(d.port, "POST", "/ok-post", body=b"x" * 1024)
    kg.eq(echo_of(r, "1024 bytes, limit 1k")["body_bytes"], 1024,
          "body bytes")


def test_body_too_large_chunked():
    up = start_up()
    d = proxy(up, max_body_size="1k")
    raw = kg.raw_request("POST", "/chunky", headers=[
        ("Transfer-Encoding", "chunked")])
    r = one_request(d.port, raw + b"".join(b"200\r\n" + b"y" * 512 + b"\r\n"
                                           for _ in range(4)) +
                    b"0\r\n\r\n")
    kg.check_refusal(r, 413, "body_too_large", "2048 chunked bytes, limit 1k")
    r = one_request(d.port, raw + b"200\r\n" + b"y" * 512 + b"\r\n" +
                    b"1ff\r\n" + b"y" * 511 + b"\r\n0\r\n\r\n")
    kg.eq(echo_of(r, "1023 chunked bytes, limit 1k")["body_bytes"], 1023,
          "body bytes")


# === big bodies, bounded memory ==============================================

RSS_LIMIT_MIB = 64


def test_big_upload_100m_bounded_memory():
    up = start_up()
    d = proxy(up, opts="read_timeout=30s", max_body_size="0")
    n = 100 * MiB
    want = U.pattern_sha256(n)
    w = kg.RssWatch(d)
    with kg.Conn(d.port, timeout=30) as c:
        # The upstream waits 2 s before it reads the body: keygate must
        # stop reading from the client meanwhile, not buffer.
        c.send(kg.raw_request("PUT", "/upload?stall_ms=2000", headers=[
            ("Content-Length", str(n))]))
        for piece in U.pattern_iter(n, MiB):
            c.send(piece)
        r = c.read_response()
    w.check(RSS_LIMIT_MIB, "100 MiB upload")
    j = echo_of(r, "100 MiB upload")
    kg.eq(up_headers(j, "content-length"), [str(n)], "Content-Length")
    kg.eq(j["body_bytes"], n, "bytes at the upstream")
    kg.eq(j["body_sha256"], want, "sha256 at the upstream")


def test_big_chunked_upload_bounded_memory():
    up = start_up()
    d = proxy(up, opts="read_timeout=30s", max_body_size="0")
    n = 40 * MiB
    want = U.pattern_sha256(n)
    w = kg.RssWatch(d)
    with kg.Conn(d.port, timeout=30) as c:
        c.send(kg.raw_request("POST", "/upload-chunked?stall_ms=1500",
                              headers=[("Transfer-Encoding", "chunked")]))
        for piece in U.pattern_iter(n, 256 * 1024):
            c.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
        c.send(b"0\r\n\r\n")
        r = c.read_response()
    w.check(RSS_LIMIT_MIB, "40 MiB chunked upload")
    j = echo_of(r, "40 MiB chunked upload")
    kg.check(j["chunked"], "not forwarded chunked")
    kg.eq(j["body_bytes"], n, "bytes at the upstream")
    kg.eq(j["body_sha256"], want, "sha256 at the upstream")


def big_download(te):
    up = start_up()
    d = proxy(up, opts="read_timeout=30s")
    n = 100 * MiB
    want = U.pattern_sha256(n)
    q = "&te=chunked" if te == "chunked" else ""
    w = kg.RssWatch(d)
    with kg.Conn(d.port, timeout=30) as c:
        c.send(kg.raw_request("GET", "/big?bytes=%d%s" % (n, q)))
        r = c.read_response(head=True)
        kg.eq(r.status, 200, "status")
        if te == "chunked":
            kg.check("chunked" in (r.header("transfer-encoding") or ""),
                     "not chunked: %r" % r.headers)
        else:
            kg.eq(r.header("content-length"), str(n), "Content-Length")
        # A slow reader: nothing read for 2 s while the upstream has
        # 100 MiB to send.
        time.sleep(2.0)
        w.sample()
        s = BodyStream(c, r).read()
        kg.eq(s.n, n, "bytes received")
        kg.eq(s.hexdigest(), want, "sha256 of the body")
        c.send(kg.raw_request("GET", "/after-big"))
        kg.eq(echo_of(c.read_response())["target"], "/after-big",
              "request after the big response")
    w.check(RSS_LIMIT_MIB, "100 MiB download (%s) to a slow reader" % te)


def test_big_download_100m_content_length_slow_reader():
    big_download("cl")


def test_big_download_100m_chunked_slow_reader():
    big_download("chunked")


# === verify_path (nginx auth_request) ========================================

VERIFY_ROUTES = (
    "route GET,HEAD ^/open(/|$) auth=anonymous",
    "route * ^/open(/|$) auth=deny",
    "route * ^/closed(/|$) auth=deny",
    # Would answer the verify path itself if it were routed like any other.
    "route * ^/_keygate/ auth=anonymous",
)


def verify(d, uri, method="GET", vmethod="GET", target="/_keygate/verify",
           extra=()):
    hdrs = list(extra)
    if vmethod is not None:
        hdrs.append(("X-Original-Method", vmethod))
    if uri is not None:
        hdrs.append(("X-Original-URI", uri))
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request(method, target, headers=hdrs))
        r = c.read_response()
        if r.closes():
            return r
        # The connection is still in step: a second verify gets its answer.
        c.send(kg.raw_request("GET", "/_keygate/verify", headers=[
            ("X-Original-Method", "GET"), ("X-Original-URI", "/closed")]))
        kg.eq(c.read_response().status, 403, "second verify on the "
              "connection after %s %r" % (vmethod, uri))
    return r


def check_204(r, what):
    kg.eq(r.status, 204, "%s: status (body %r)" % (what, r.body[:200]))
    kg.eq(r.body, b"", "%s: body" % what)
    kg.check(r.header("x-request-id"), "%s: no X-Request-Id" % what)
    kg.check(r.header("content-length") in (None, "0"),
             "%s: Content-Length %r" % (what, r.header("content-length")))


def test_verify_path():
    up = start_up()
    d = proxy(up, *VERIFY_ROUTES, verify_path="/_keygate/verify")
    check_204(verify(d, "/open/page?x=1"), "anonymous route")
    check_204(verify(d, "/open", method="POST",
                     target="/_keygate/verify?ignored=1"),
              "POST to the verify path, with a query")
    check_204(verify(d, "/open/x", vmethod="HEAD"), "X-Original-Method HEAD")
    kg.check_refusal(verify(d, "/open/x", vmethod="POST"), 403, "forbidden",
                     "X-Original-Method POST on a GET,HEAD route")
    kg.check_refusal(verify(d, "/closed/x"), 403, "forbidden", "deny route")
    kg.check_refusal(verify(d, "/nowhere"), 404, "no_route", "no route")
    kg.check_refusal(verify(d, "/x?/open"), 404, "no_route",
                     "query of X-Original-URI matched")
    kg.check_refusal(verify(d, None), 400, "bad_request",
                     "no X-Original-URI")
    # Documented (README, doc/architecture.md choice 10): no
    # X-Original-Method means GET; a malformed one is a bad request.
    check_204(verify(d, "/open/y", vmethod=None), "no X-Original-Method")
    kg.check_refusal(verify(d, "/open/y", vmethod="G@T"), 400, "bad_request",
                     "malformed X-Original-Method")
    for uri in ("/open/../closed", "/open/%2e%2e/closed", "/open/./x"):
        kg.check_refusal(verify(d, uri), 400, "bad_request",
                         "dot segments in %r" % uri)
    s = up.stats()
    kg.eq(s["requests"], 0, "requests forwarded to the upstream by verify "
          "requests: %r" % s["log"])
    # Only the exact path: below it, requests are routed as usual.
    r = get_raw(d.port, "/_keygate/verify/more")
    kg.eq(echo_of(r, "a path below verify_path")["target"],
          "/_keygate/verify/more", "target")


def test_verify_path_unset_is_routed():
    up = start_up()
    d = proxy(up, *VERIFY_ROUTES)
    r = get_raw(d.port, "/_keygate/verify", headers=[
        ("X-Original-Method", "GET"), ("X-Original-URI", "/closed")])
    kg.eq(echo_of(r, "verify path without verify_path")["target"],
          "/_keygate/verify", "target")


TESTS = [with_upstreams(t) for t in [
    test_config_upstream_forms_accepted,
    test_config_upstream_errors,
    test_route_upstream_selection,
    test_ipv6_and_hostname_upstreams,
    test_request_line_host_and_order,
    test_http10_client_forwarded_as_http11,
    test_absolute_form_target,
    test_hop_by_hop_request_headers_removed,
    test_expect_not_forwarded,
    test_identity_and_credentials_removed_by_default,
    test_forward_credentials_on,
    test_x_forwarded_for,
    test_request_id_to_upstream_and_back,
    test_content_length_body_forwarded,
    test_chunked_body_forwarded_chunked,
    test_status_and_reason_passed,
    test_response_hop_by_hop_removed,
    test_content_length_response_passed,
    test_chunked_response_to_http11_client,
    test_chunked_response_to_http10_client,
    test_close_delimited_response,
    test_head_204_304_no_body,
    test_pipelined_requests_proxied,
    test_pool_reused_on_one_client_connection,
    test_pool_shared_by_client_connections,
    test_pool_max_idle_zero,
    test_upstream_connection_close_not_reused,
    test_interim_responses_skipped,
    test_client_connection_close,
    test_client_half_close_gets_answer,
    test_concurrent_clients_share_the_pool,
    test_slow_request_body_is_not_a_read_timeout,
    test_upstream_refused_502,
    test_upstream_silent_504,
    test_upstream_slow_within_read_timeout,
    test_upstream_closes_before_answer_502,
    test_failure_after_response_started_closes_client,
    test_stale_pooled_connection_retried,
    test_stale_connection_post_not_retried,
    test_client_abort_during_download,
    test_body_too_large_content_length,
    test_body_too_large_chunked,
    test_big_upload_100m_bounded_memory,
    test_big_chunked_upload_bounded_memory,
    test_big_download_100m_content_length_slow_reader,
    test_big_download_100m_chunked_slow_reader,
    test_verify_path,
    test_verify_path_unset_is_routed,
]]


if __name__ == "__main__":
    if len(sys.argv) > 1:		# run only the tests named
        names = sys.argv[1:]
        TESTS = [t for t in TESTS if t.__name__ in names]
    kg.run(TESTS)
