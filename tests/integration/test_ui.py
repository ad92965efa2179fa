#!/usr/bin/env python3
"""
The web console on the admin listener, at the HTTP level (keygated(8), WEB
CONSOLE): its files' headers (CSP and the others), ETag and 304; login into
a session cookie, the admin API with the session, CSRF refusals, idle
expiry, logout; the login's rate limit; Secure over TLS; admin_ui off.
The browser test is test_browser.py.
"""

import json
import os
import re
import signal
import sys
import time

import kgtest as kg
import test_tls as T
import upstream as U

CSP = ("default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "form-action 'self'")
FILES = (("/ui/", "text/html; charset=utf-8"),
         ("/ui/app.js", "text/javascript; charset=utf-8"),
         ("/ui/app.css", "text/css; charset=utf-8"))


def daemon(**settings):
    return kg.start(kg.config("route GET ^/echo/r auth=api-key "
                              "scope=reports:read upstream=echo",
                              "route GET ^/echo/b auth=api-key "
                              "scope=billing,reports:read upstream=echo",
                              "route GET ^/echo(/|$) auth=api-key "
                              "upstream=echo", "route * .* auth=deny",
                              admin="{port2}", **settings), nports=2)


def ui(d, method, path, body=None, cookie=None, csrf=None, headers=None):
    """A request to d's admin listener as the console's page sends it."""
    h = dict(headers or {})
    if cookie is not None:
        h["Cookie"] = cookie
    if csrf is not None:
        h["X-CSRF-Token"] = csrf
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    return kg.request(d.admin_port, method, path, headers=h, body=data)


def console_headers(r, what):
    kg.eq(r.header("content-security-policy"), CSP, what + ": CSP")
    kg.eq(r.header("x-frame-options"), "DENY", what + ": X-Frame-Options")
    kg.eq(r.header("referrer-policy"), "no-referrer",
          what + ": Referrer-Policy")
    kg.eq(r.header("x-content-type-options"), "nosniff",
          what + ": X-Content-Type-Options")


def login(d, token=kg.ADMIN_TOKEN, tls_conn=None):
    """Log in: (cookie for the Cookie header, csrf token, the answer)."""
    r = ui(d, "POST", "/ui/api/login", {"token": token})
    kg.eq(r.status, 200, "login (%r)" % r.body[:200])
    sc = r.header("set-cookie")
    m = re.match(r"^keygate_session=([A-Za-z0-9_-]{43}); Path=/; HttpOnly; "
                 r"SameSite=Strict; Max-Age=43200$", sc or "")
    kg.check(m is not None, "Set-Cookie of a login: %r" % sc)
    return "keygate_session=" + m.group(1), r.json()["csrf_token"], r


def test_files():
    """
    Every file: 200 with its type, the console's headers, ETag and
    Cache-Control no-cache, no token needed; If-None-Match with its ETag:
    304 without a body (nor Content-Length); an unknown file 404, a POST
    405, both with the console's headers.
    """
    d = daemon()
    for path, ctype in FILES:
        r = ui(d, "GET", path)
        kg.eq(r.status, 200, "GET %s" % path)
        kg.eq(r.header("content-type"), ctype, "%s: Content-Type" % path)
        console_headers(r, path)
        kg.eq(r.header("cache-control"), "no-cache", path + ": Cache-Control")
        etag = r.header("etag")
        kg.check(etag is not None and re.match(r'^"[0-9a-f]{32}"$', etag),
                 "%s: ETag %r" % (path, etag))
        kg.check(len(r.body) > 0, "%s: empty" % path)
        r2 = ui(d, "GET", path, headers={"If-None-Match": etag})
        kg.eq((r2.status, r2.body), (304, b""), "%s: revalidated" % path)
        kg.eq(r2.header("content-length"), None, path + ": 304's length")
        kg.eq(r2.header("etag"), etag, path + ": 304's ETag")
        console_headers(r2, path + " (304)")
        r3 = ui(d, "GET", path, headers={"If-None-Match": '"other"'})
        kg.eq(r3.status, 200, "%s: another ETag" % path)
    r = ui(d, "GET", "/ui")
    kg.eq(r.status, 200, "GET /ui")
    for path in ("/ui/nothing.js", "/ui/api/nothing", "/ui/../v1/keys"):
        r = ui(d, "GET", path)
        kg.eq(r.status, 404, "GET %s" % path)
        console_headers(r, path)
    r = ui(d, "POST", "/ui/", {})
    kg.eq((r.status, r.header("allow")), (405, "GET, HEAD"), "POST /ui/")
    r = ui(d, "HEAD", "/ui/app.js")
    kg.eq((r.status, r.body, int(r.header("content-length"))),
          (200, b"", len(ui(d, "GET", "/ui/app.js").body)), "HEAD /ui/app.js")


def test_session():
    """
    Login with the token: a session cookie and a CSRF token; the admin API
    takes the session (a read without more, a change only with the CSRF
    token: 403 csrf_failed without or with a wrong one); GET
    /ui/api/session answers the same token; logout ends the session and
    clears the cookie; the bearer token keeps working throughout.
    """
    d = daemon()
    r = ui(d, "POST", "/ui/api/login", {"token": "not-the-token"})
    kg.check_refusal(r, 401, "unauthorized", "login with a wrong token")
    kg.eq(r.header("set-cookie"), None, "Set-Cookie of a failed login")
    cookie, csrf, r = login(d)
    console_headers(r, "login")
    kg.eq(r.header("cache-control"), "no-store", "login: Cache-Control")
    j = r.json()
    kg.eq((j["idle_timeout_seconds"], j["rotate_days"], j["unused_days"]),
          (1800, 90, 30), "login: the console's settings")
    j = ui(d, "GET", "/ui/api/session", cookie=cookie).json()
    kg.eq((j["logged_in"], j["csrf_token"], j["scopes"]),
          (True, csrf, ["reports:read", "billing"]),
          "the session asked again: its CSRF token, the routes' scopes")
    kg.eq(ui(d, "GET", "/ui/api/session").json(), {"logged_in": False},
          "GET /ui/api/session without a session")
    r = ui(d, "GET", "/v1/keys", cookie=cookie)
    kg.eq(r.status, 200, "GET /v1/keys with the session")
    r = ui(d, "POST", "/v1/keys", {"owner": "ui"}, cookie=cookie)
    kg.check_refusal(r, 403, "csrf_failed", "a create without X-CSRF-Token")
    r = ui(d, "POST", "/v1/keys", {"owner": "ui"}, cookie=cookie,
           csrf=csrf[:-1] + ("A" if csrf[-1] != "A" else "B"))
    kg.check_refusal(r, 403, "csrf_failed", "a create with a wrong token")
    r = ui(d, "POST", "/v1/keys", {"owner": "ui"}, cookie=cookie, csrf=csrf)
    kg.eq(r.status, 201, "a create with the session and its CSRF token")
    kid = r.json()["id"]
    # The admin threads check it too: a write, and a sorted list.
    r = ui(d, "PATCH", "/v1/keys/" + kid, {"name": "n"}, cookie=cookie)
    kg.check_refusal(r, 403, "csrf_failed", "a PATCH without X-CSRF-Token")
    r = ui(d, "PATCH", "/v1/keys/" + kid, {"name": "n"}, cookie=cookie,
           csrf=csrf)
    kg.eq(r.status, 200, "a PATCH with the session")
    r = ui(d, "GET", "/v1/keys?sort=-created", cookie=cookie)
    kg.eq((r.status, r.json()["total"]), (200, 1), "a sorted list")
    # Another client's cookie jar: nothing.
    r = ui(d, "GET", "/v1/keys", cookie="keygate_session=" + "A" * 43)
    kg.check_refusal(r, 401, "unauthorized", "an unknown session")
    # Logout.
    r = ui(d, "POST", "/ui/api/logout", cookie=cookie)
    kg.check_refusal(r, 403, "csrf_failed", "a logout without X-CSRF-Token")
    r = ui(d, "POST", "/ui/api/logout", cookie=cookie, csrf=csrf)
    kg.eq(r.status, 204, "logout")
    kg.eq(r.header("set-cookie"), "keygate_session=; Path=/; HttpOnly; "
          "SameSite=Strict; Max-Age=0", "logout's Set-Cookie")
    r = ui(d, "GET", "/v1/keys", cookie=cookie)
    kg.check_refusal(r, 401, "unauthorized", "the session after a logout")
    kg.eq(ui(d, "GET", "/ui/api/session", cookie=cookie).json(),
          {"logged_in": False}, "GET /ui/api/session after a logout")
    kg.eq(kg.admin(d, "GET", "/v1/keys").status, 200, "the bearer token")
    # Nothing of a session in the logs.
    logs = d.errlog_text() + json.dumps(d.access_lines())
    kg.check(cookie.split("=")[1] not in logs and csrf not in logs and
             kg.ADMIN_TOKEN not in logs, "a session, its CSRF token or the "
             "admin token in the logs")


def test_idle_expiry():
    """admin_ui_idle_timeout 1s: a session used within it lives on; one
    left 1 s alone has ended."""
    d = daemon(admin_ui_idle_timeout="1s")
    cookie, csrf, r = login(d)
    kg.eq(r.json()["idle_timeout_seconds"], 1, "idle_timeout_seconds")
    for _ in range(3):
        time.sleep(0.5)
        kg.eq(ui(d, "GET", "/v1/keys", cookie=cookie).status, 200,
              "a session used every 0.5 s")
    time.sleep(1.1)
    r = ui(d, "GET", "/v1/keys", cookie=cookie)
    kg.check_refusal(r, 401, "unauthorized", "a session idle 1.1 s")
    kg.check("ended" in r.json()["message"], "message: %r" % r.json())


def test_login_rate_limited():
    """
    Wrong tokens at the login count as wrong admin tokens: the fifth in a
    row makes the address wait (429 too_many_attempts with Retry-After),
    the right token included; the admin API's Bearer too.
    """
    d = daemon()
    for i in range(5):
        r = ui(d, "POST", "/ui/api/login", {"token": "wrong-%d" % i})
        kg.check_refusal(r, 401, "unauthorized", "wrong login %d" % i)
    r = ui(d, "POST", "/ui/api/login", {"token": kg.ADMIN_TOKEN})
    kg.check_refusal(r, 429, "too_many_attempts", "the right token, waiting")
    kg.check(1 <= int(r.header("retry-after", "0")) <= 60,
             "Retry-After %r" % r.header("retry-after"))
    kg.eq(kg.admin(d, "GET", "/v1/keys").status, 429, "the Bearer token, "
          "waiting")
    time.sleep(int(r.header("retry-after")) + 0.1)
    login(d)


def test_secure_over_tls():
    """Over a TLS admin listener, the cookie is Secure."""
    d = kg.start(kg.config("route * .* auth=deny",
                           T.cert_line(T.pki()["local"]),
                           admin="{port2} tls"), nports=2)
    with T.TLSConn(d.admin_port, sni="localhost") as c:
        body = json.dumps({"token": kg.ADMIN_TOKEN}).encode()
        c.send(kg.raw_request("POST", "/ui/api/login", headers=[
            ("Content-Type", "application/json")], body=body))
        r = c.read_response()
    kg.eq(r.status, 200, "login over TLS")
    kg.check(re.match(r"^keygate_session=[A-Za-z0-9_-]{43}; Path=/; "
                      r"HttpOnly; SameSite=Strict; Max-Age=43200; Secure$",
                      r.header("set-cookie", "")),
             "Set-Cookie over TLS: %r" % r.header("set-cookie"))


def test_ui_off():
    """admin_ui off: 404 under /ui/, and a session cookie is no credential
    (sessions made while it was on end with it)."""
    d = daemon(admin_ui="off")
    for path, _ in FILES + (("/ui/api/session", None),):
        r = ui(d, "GET", path)
        kg.check_refusal(r, 404, "not_found", "GET %s, admin_ui off" % path)
    r = ui(d, "POST", "/ui/api/login", {"token": kg.ADMIN_TOKEN})
    kg.check_refusal(r, 404, "not_found", "login, admin_ui off")
    d2 = daemon()
    cookie, _, _ = login(d2)
    kg.eq(ui(d2, "GET", "/v1/keys", cookie=cookie).status, 200, "admin_ui on")
    text = open(d2.conf_path).read()
    with open(d2.conf_path, "w") as f:
        f.write(text + "\nadmin_ui off\n")
    old = d2.worker_pids()
    d2.signal(signal.SIGHUP)
    d2.wait_workers(len(old), exclude=old)
    kg.eq(ui(d2, "GET", "/ui/").status, 404, "the console after a reload")
    r = ui(d2, "GET", "/v1/keys", cookie=cookie)
    kg.check_refusal(r, 401, "unauthorized", "a session, admin_ui off")


def test_gateway():
    """
    GET /v1/gateway on a real daemon: the routes in order (methods, pattern,
    auth, scopes, rate limit, upstream), the upstreams with their servers'
    health from the master's checks (a closed port: down; no check:
    unchecked), a JWT provider's key set read from its file; /v1/status's
    last_hour.
    """
    port = kg.free_port()
    jwks = os.path.join(os.environ.get("KEYGATE_SRCDIR", "."), "contrib",
                        "demo", "jwks.json")
    d = kg.start(kg.config(
        "upstream api http://127.0.0.1:%d health=/hc "
        "health_interval=200ms health_fails=1" % port,
        "upstream plain http://127.0.0.1:%d" % port,
        "jwt_provider demo issuer=https://idp.test audience=api jwks=%s" %
        jwks,
        "route GET,POST ^/api/ auth=api-key,jwt:demo scope=billing "
        "rate=5/1s upstream=api",
        "route * ^/open auth=anonymous rate=off upstream=plain",
        "route * .* auth=deny", admin="{port2}"), nports=2)
    def upstreams():
        return {u["name"]: u for u in
                kg.admin(d, "GET", "/v1/gateway").json()["upstreams"]}
    kg.wait_for(lambda: upstreams()["api"]["servers"][0]["health"] ==
                "down", 5.0, "the closed server checked down")
    g = kg.admin(d, "GET", "/v1/gateway").json()
    kg.eq([(r["methods"], r["pattern"], r["auth"], r["scopes"],
            r["rate_limit"], r["upstream"]) for r in g["routes"]],
          [(["GET", "POST"], "^/api/", ["api-key", "jwt:demo"], ["billing"],
            {"per_1s": 5, "per_10s": None, "per_60s": None}, "api"),
           (["*"], "^/open", ["anonymous"], [], "off", "plain"),
           (["*"], ".*", ["deny"], [], {"per_1s": None, "per_10s": None,
                                        "per_60s": None}, None)],
          "the routes")
    ups = {u["name"]: u for u in g["upstreams"]}
    kg.eq((ups["api"]["health_check"], ups["plain"]["health_check"],
           ups["echo"]["type"]), ("/hc", None, "echo"), "the upstreams")
    kg.eq([(v["server"], v["health"]) for v in ups["plain"]["servers"]],
          [("127.0.0.1:%d" % port, "unchecked")], "an unchecked server")
    p = g["jwt_providers"][0]
    kg.eq((p["name"], p["issuers"], p["jwks"], p["up"]),
          ("demo", ["https://idp.test"], jwks, True), "the provider")
    kg.check(p["keys"] >= 1 and 0 <= p["age_seconds"] < 60,
             "the provider's key set: %r" % p)
    st = kg.admin(d, "GET", "/v1/status").json()
    kg.eq(sorted(st["last_hour"]["refused"]), sorted([
        "missing_credentials", "malformed_credentials", "invalid_credentials",
        "expired_credentials", "disabled_key", "insufficient_scope",
        "forbidden", "auth_unavailable"]), "last_hour's reasons")


@U.with_upstreams
def test_session_cookie_not_forwarded():
    """
    A request to the gateway carrying the console's session cookie (a
    browser sends a host's cookies to all its ports): the upstream gets
    the other cookies, never the session's.
    """
    up = U.Upstream()
    d = kg.start(kg.config("upstream app http://127.0.0.1:%d" % up.port,
                           "route * ^/app auth=anonymous upstream=app",
                           "route * .* auth=deny", admin="{port2}"),
                 nports=2)
    cookie, _, _ = login(d)
    for sent, want in ((cookie, None),
                       ("a=1; " + cookie + "; b=2", "a=1; b=2"),
                       ("a=1", "a=1")):
        r = kg.get(d.port, "/app/x", headers={"Cookie": sent})
        kg.eq(r.status, 200, "the gateway, Cookie %r" % sent[:20])
        got = [v for n, v in r.json()["headers"] if n.lower() == "cookie"]
        kg.eq(got, [want] if want is not None else [],
              "what the upstream got of Cookie %r" % sent[:20])


TESTS = [
    test_files,
    test_session,
    test_idle_expiry,
    test_login_rate_limited,
    test_secure_over_tls,
    test_ui_off,
    test_gateway,
    test_session_cookie_not_forwarded,
]


if __name__ == "__main__":
    if len(sys.argv) > 1:
        TESTS = [t for t in TESTS if t.__name__ in sys.argv[1:]]
    kg.run(TESTS)
