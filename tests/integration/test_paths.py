"""
What routes and upstreams see of a request's path and header names.

- Paths are normalised before routing (percent-encoded unreserved
  characters decoded, other escapes in upper case, repeated slashes
  merged unless merge_slashes is off) and forwarded as normalised, so that
  "/%61dmin" and "//admin" cannot pass a route for "^/admin" and reach an
  upstream that decodes or merges them.  Encoded "/", invalid escapes and
  dot segments (also "%2e%2e") get 400 and the connection closes.
- Header names with "_" are dropped (underscores_in_headers off), and the
  names keygate protects are recognised in their underscore spelling too,
  so "X_Consumer_Id: admin" never reaches a CGI/WSGI-style upstream as
  HTTP_X_CONSUMER_ID.  Checked against a real WSGI server (wsgiref).
- A route pattern that fails with a PCRE2 error (match limit) refuses the
  request with 500 instead of falling through to a later route.
"""

import functools
import json
import threading
import wsgiref.simple_server

import kgtest as kg
import upstream as U


with_upstreams = U.with_upstreams


# --- a WSGI upstream (wsgiref), as a CGI/WSGI application sees requests -----

class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass


class WsgiUpstream:
    """
    wsgiref in a thread of this process.  Every request is answered with a
    JSON object of its WSGI environ's HTTP_* variables and PATH_INFO, and
    recorded in self.environs.
    """

    def __init__(self):
        self.environs = []
        self.lock = threading.Lock()
        self.srv = wsgiref.simple_server.make_server(
            "127.0.0.1", 0, self.app, handler_class=_QuietHandler)
        self.srv.timeout = kg.DEFAULT_TIMEOUT
        self.port = self.srv.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.srv.serve_forever,
                                       kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def app(self, environ, start_response):
        env = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
        env["PATH_INFO"] = environ.get("PATH_INFO")
        with self.lock:
            self.environs.append(env)
        body = json.dumps(env).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()
        self.thread.join(kg.DEFAULT_TIMEOUT)


def with_wsgi(fn):
    """Call fn(wsgi upstream); stop it whatever happens."""
    @functools.wraps(fn)
    def t():
        w = WsgiUpstream()
        try:
            fn(w)
        finally:
            w.stop()
    return t


SPOOF = [("X_Consumer_Id", "admin"), ("X_Key_Id", "key_0123456789abcdef"),
         ("X_App_Id", "app_evil"), ("X_Scopes", "admin:*"),
         ("X_Auth_Scheme", "api-key"), ("X_Forwarded_For", "10.6.6.6"),
         ("X_Request_Id", "evil"), ("My_Header", "under"),
         ("X-Plain", "dash")]


def keyed_daemon(up_url, **settings):
    t = kg.config("upstream app %s read_timeout=3s" % up_url,
                  "route * ^/keyed(/|$) auth=api-key upstream=app",
                  "route * ^/ auth=anonymous upstream=app",
                  admin="{port2}", upstream=False, **settings)
    return kg.start(t, nports=2)


def wsgi_get(d, path, headers):
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", path, headers=headers))
        r = c.read_final()
    kg.eq(r.status, 200, "%s: status (body %r)" % (path, r.body[:300]))
    return json.loads(r.body.decode())


@with_wsgi
def test_underscore_identity_not_seen_by_wsgi(w):
    d = keyed_daemon(w.url)
    _, secret = kg.create_key(d, owner="acme")
    env = wsgi_get(d, "/anon", SPOOF)
    kg.check("HTTP_X_CONSUMER_ID" not in env, "anonymous route: the client's "
             "X_Consumer_Id reached the WSGI app: %r" % env)
    for k in ("HTTP_X_KEY_ID", "HTTP_X_APP_ID", "HTTP_X_SCOPES",
              "HTTP_MY_HEADER"):
        kg.check(k not in env, "anonymous route: %s reached the WSGI app: "
                 "%r" % (k, env))
    kg.eq(env.get("HTTP_X_AUTH_SCHEME"), "anonymous", "X-Auth-Scheme")
    kg.eq(env.get("HTTP_X_FORWARDED_FOR"), "127.0.0.1", "X-Forwarded-For")
    kg.check(env.get("HTTP_X_REQUEST_ID") != "evil", "X_Request_Id: %r" % env)
    kg.eq(env.get("HTTP_X_PLAIN"), "dash", "an ordinary header")
    env = wsgi_get(d, "/keyed/x", SPOOF + [("X-API-KEY", secret)])
    kg.eq(env.get("HTTP_X_CONSUMER_ID"), "acme",
          "keyed route: HTTP_X_CONSUMER_ID (only keygate's)")
    kg.eq(env.get("HTTP_X_AUTH_SCHEME"), "api-key", "keyed: X-Auth-Scheme")
    kg.check(env.get("HTTP_X_SCOPES") != "admin:*", "X_Scopes: %r" % env)
    kg.check("HTTP_X_API_KEY" not in env, "the credential reached the app")
    kg.check("HTTP_MY_HEADER" not in env, "keyed: My_Header: %r" % env)


@with_wsgi
def test_underscores_in_headers_on(w):
    d = keyed_daemon(w.url, underscores_in_headers="on")
    _, secret = kg.create_key(d, owner="acme")
    env = wsgi_get(d, "/anon", SPOOF)
    kg.eq(env.get("HTTP_MY_HEADER"), "under", "My_Header, kept when on")
    kg.check("HTTP_X_CONSUMER_ID" not in env, "anonymous route: the client's "
             "X_Consumer_Id reached the WSGI app: %r" % env)
    kg.eq(env.get("HTTP_X_AUTH_SCHEME"), "anonymous", "X-Auth-Scheme")
    kg.eq(env.get("HTTP_X_FORWARDED_FOR"), "127.0.0.1", "X-Forwarded-For")
    env = wsgi_get(d, "/keyed/x", SPOOF + [("X-API-KEY", secret),
                                            ("X_API_KEY", "live_other")])
    kg.eq(env.get("HTTP_X_CONSUMER_ID"), "acme",
          "keyed route: HTTP_X_CONSUMER_ID (only keygate's)")
    kg.check(env.get("HTTP_X_KEY_ID") != "key_0123456789abcdef",
             "X_Key_Id spoofed: %r" % env)
    kg.check("HTTP_X_API_KEY" not in env, "a credential reached the app "
             "(X_API_KEY, forward_credentials off): %r" % env)
    kg.eq(env.get("HTTP_MY_HEADER"), "under", "keyed: My_Header")


def test_underscore_credential_does_not_authenticate():
    for setting in ("default", "on"):
        opts = {} if setting == "default" else {
            "underscores_in_headers": setting}
        t = kg.config("route * ^/keyed(/|$) auth=api-key",
                      admin="{port2}", **opts)
        d = kg.start(t, nports=2)
        _, secret = kg.create_key(d, owner="acme")
        r = kg.get(d.port, "/keyed/x", headers={"X_API_KEY": secret})
        kg.check_refusal(r, 401, "missing_credentials",
                         "X_API_KEY (underscores_in_headers %s)" % setting)
        r = kg.get(d.port, "/keyed/x", headers={"X-API-KEY": secret})
        kg.eq(r.status, 200, "X-API-KEY (underscores_in_headers %s)" %
              setting)
        d.stop()


def test_echo_upstream_shows_the_same_policy():
    for setting, mine in (("default", None), ("on", "under")):
        opts = {} if setting == "default" else {
            "underscores_in_headers": setting}
        d = kg.start(kg.config("route * ^/ auth=anonymous", **opts))
        with kg.Conn(d.port) as c:
            c.send(kg.raw_request("GET", "/e", headers=SPOOF))
            j = kg.check_echo(c.read_response(), "GET", "/e")
        h = {k.lower(): v for k, v in j["headers"].items()}
        kg.eq(h.get("my_header"), mine, "echo: My_Header (%s)" % setting)
        kg.check("x_consumer_id" not in h and "x-consumer-id" not in h,
                 "echo: X_Consumer_Id (%s): %r" % (setting, h))
        kg.eq(h.get("x-plain"), "dash", "echo: X-Plain")
        d.stop()


# --- paths --------------------------------------------------------------------

PATH_ROUTES = (
    "route * ^/admin(/|$) auth=deny",
    "route * ^/ auth=anonymous",
)


def proxied(d, target):
    """The target upstream.py received for target (which must be proxied)."""
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", target))
        r = c.read_final()
    kg.eq(r.status, 200, "%s: status (body %r)" % (target, r.body[:300]))
    return json.loads(r.body.decode())["target"]


def refused_closed(d, target, status, code):
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", target))
        r = c.read_response()
        kg.check_refusal(r, status, code, target)
        kg.check(r.closes(), "%s: %d without Connection: close" %
                 (target, status))
        c.wait_closed()


def path_daemon(up, **settings):
    t = kg.config("upstream app %s read_timeout=3s" % up.url,
                  *PATH_ROUTES, upstream=False, **settings)
    d = kg.start(t)
    up.reset()
    return d


@with_upstreams
def test_paths_normalised_before_routing():
    up = U.Upstream()
    d = path_daemon(up)
    for target in ("/%61dmin", "//admin", "/%61%64%6D%69%6E/x", "///admin/",
                   "/admin%2F", "http://h//admin"):
        with kg.Conn(d.port) as c:
            c.send(kg.raw_request("GET", target))
            r = c.read_response()
        if "%2F" in target:
            kg.check_refusal(r, 400, "bad_request", target)
        else:
            kg.check_refusal(r, 403, "forbidden", target)
    kg.eq(up.stats()["requests"], 0, "requests that reached the upstream")
    # Case stays significant: "(?i)" in a pattern is how to ignore it.
    kg.eq(proxied(d, "/%41dmin"), "/Admin", "case kept")
    kg.eq(proxied(d, "/a//b?q=%2f//x&r=%7e"), "/a/b?q=%2f//x&r=%7e",
          "slashes merged, query untouched")
    kg.eq(proxied(d, "/a%3ab%7Ec%2d%5F"), "/a%3Ab~c-_", "escapes")
    kg.eq(proxied(d, "/%c3%a9t%C3%A9"), "/%C3%A9t%C3%A9", "UTF-8 escapes")
    kg.eq(proxied(d, "http://h//a///b?x"), "/a/b?x", "absolute-form")
    kg.eq(proxied(d, "http://h?x=%2f"), "/?x=%2f", "absolute-form, no path")
    kg.eq(proxied(d, "/a.b/.c/..d"), "/a.b/.c/..d", "not dot segments")


@with_upstreams
def test_bad_paths_refused_and_closed():
    up = U.Upstream()
    d = path_daemon(up)
    for target in ("/a%2fb", "/a%2Fb", "/%2e%2e/admin", "/x/%2E./admin",
                   "/x/.%2e", "/x/%2e/admin", "/x/../admin", "/%zz", "/a%",
                   "/a%4", "/x/..;/admin", "/x/..;jsessionid=1/admin",
                   "/x\\..\\admin", "/x%5c..%5cadmin"):
        refused_closed(d, target, 400, "bad_request")
    kg.eq(up.stats()["requests"], 0, "requests that reached the upstream")


@with_upstreams
def test_merge_slashes_off():
    up = U.Upstream()
    d = path_daemon(up, merge_slashes="off")
    kg.eq(proxied(d, "/a//b"), "/a//b", "slashes kept with merge_slashes off")
    kg.eq(proxied(d, "//x/%61"), "//x/a", "decoded, slashes kept")
    # Routes still see the slashes merged: //admin is /admin to them.
    for target in ("//admin", "/%61dmin", "//admin//x"):
        kg.check_refusal(kg.get(d.port, target), 403, "forbidden", target)
    refused_closed(d, "//a/%2e%2e/admin", 400, "bad_request")
    kg.eq(len([t for _, _, t in up.stats()["log"] if "admin" in t]), 0,
          "admin requests forwarded")


VERIFY_ROUTES = (
    "route * ^/admin(/|$) auth=deny",
    "route * ^/pub(/|$) auth=anonymous",
    "route * ^/ auth=anonymous",
)


def verify(d, uri):
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/_keygate/verify", headers=[
            ("X-Original-Method", "GET"), ("X-Original-URI", uri)]))
        r = c.read_response()
        # A verify answer is about the original request: the connection
        # that carried it stays usable.
        kg.check(not r.closes(), "%s: the verify connection closes" % uri)
        c.send(kg.raw_request("GET", "/_keygate/verify", headers=[
            ("X-Original-Method", "GET"), ("X-Original-URI", "/pub")]))
        kg.eq(c.read_response().status, 204, "second verify after %s" % uri)
    return r


def test_verify_path_normalised():
    for merge in ("default", "off"):
        opts = {} if merge == "default" else {"merge_slashes": merge}
        d = kg.start(kg.config(*VERIFY_ROUTES, verify_path="/_keygate/verify",
                               **opts))
        for uri in ("/%61dmin", "//admin", "/%61dmin?x=1", "//admin//"):
            kg.check_refusal(verify(d, uri), 403, "forbidden", uri)
        kg.eq(verify(d, "/pub//x?a=%2f").status, 204, "/pub//x")
        for uri in ("/a%2fb", "/%2e%2e/admin", "/%zz"):
            kg.check_refusal(verify(d, uri), 400, "bad_request", uri)
        d.stop()


# --- route match errors -------------------------------------------------------

def test_route_match_error_refuses():
    t = kg.config("route GET (*LIMIT_MATCH=200)^/(a+)+$ auth=deny",
                  "route * ^/ auth=anonymous",
                  verify_path="/_keygate/verify")
    d = kg.start(t)
    path = "/" + "a" * 40 + "b"
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", path))
        r = c.read_response()
        kg.check_refusal(r, 500, "route_error", "match limit")
        kg.check(not r.closes(), "a route error closes the connection")
        kg.eq(d.access_by_id(r.header("x-request-id"))["route"], 1,
              "access log route")
        # The connection is in step; what the pattern can decide routes.
        c.send(kg.raw_request("GET", "/aaa"))
        kg.check_refusal(c.read_response(), 403, "forbidden", "/aaa")
        c.send(kg.raw_request("GET", "/ab"))
        kg.check_echo(c.read_response(), "GET", "/ab")
    d.wait_log(r"route 1 \(line \d+\): pattern .* failed: .*limit")
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/_keygate/verify", headers=[
            ("X-Original-Method", "GET"), ("X-Original-URI", path)]))
        kg.check_refusal(c.read_response(), 500, "route_error", "verify")


TESTS = [
    test_underscore_identity_not_seen_by_wsgi,
    test_underscores_in_headers_on,
    test_underscore_credential_does_not_authenticate,
    test_echo_upstream_shows_the_same_policy,
    test_paths_normalised_before_routing,
    test_bad_paths_refused_and_closed,
    test_merge_slashes_off,
    test_verify_path_normalised,
    test_route_match_error_refuses,
]

if __name__ == "__main__":
    kg.run(TESTS)
