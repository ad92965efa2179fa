"""
nginx auth_request in front of keygated (verify_path) and a test upstream:
a real nginx, run as the current user from a temporary directory with the
site file contrib/nginx/keygate.conf (its addresses replaced by the test's
ports), so that the example shipped is the one tested.

Skipped (exit 77, "nginx not installed") when there is no nginx binary
($NGINX, else nginx on PATH, /usr/sbin or /usr/local/sbin).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import kgtest as kg
import upstream as U


def find_nginx():
    n = os.environ.get("NGINX")
    if n:
        return n if os.access(n, os.X_OK) else None
    n = shutil.which("nginx")
    if n:
        return n
    for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx",
              "/usr/local/nginx/sbin/nginx"):
        if os.access(p, os.X_OK):
            return p
    return None


NGINX = find_nginx()

# The addresses in the example site file, and what the test puts instead
# (each must occur exactly once, so that a changed example fails loudly).
SITE_KEYGATE = "server 127.0.0.1:8080;"
SITE_API = "server 127.0.0.1:9000;"
SITE_LISTEN = "listen 80;"


def site_text(nginx_port, keygate_port, api_port):
    path = os.path.join(kg.SRCDIR or os.path.join(os.path.dirname(
        os.path.abspath(__file__)), "..", ".."), "contrib", "nginx",
        "keygate.conf")
    with open(path) as f:
        text = f.read()
    for old, new in ((SITE_KEYGATE, "server 127.0.0.1:%d;" % keygate_port),
                     (SITE_API, "server 127.0.0.1:%d;" % api_port),
                     (SITE_LISTEN, "listen 127.0.0.1:%d;" % nginx_port)):
        kg.eq(text.count(old), 1, "occurrences of %r in %s" % (old, path))
        text = text.replace(old, new)
    return text


MAIN_CONF = """\
%(user)s
worker_processes 1;
error_log %(dir)s/error.log info;
pid %(dir)s/nginx.pid;
events {
	worker_connections 128;
}
http {
	access_log %(dir)s/access.log;
	client_body_temp_path %(dir)s/client_body;
	proxy_temp_path %(dir)s/proxy;
	fastcgi_temp_path %(dir)s/fastcgi;
	uwsgi_temp_path %(dir)s/uwsgi;
	scgi_temp_path %(dir)s/scgi;
	include %(dir)s/site.conf;
}
"""


class Nginx:
    """An nginx of our own in dir; stop() always kills it and its workers."""

    def __init__(self, nginx_port, keygate_port, api_port):
        self.dir = kg.tempdir()
        self.port = nginx_port
        with open(os.path.join(self.dir, "site.conf"), "w") as f:
            f.write(site_text(nginx_port, keygate_port, api_port))
        # Workers of a root master would become "nobody" and could not
        # enter the private temp dir; as another user, no user line.
        user = "user root;" if os.geteuid() == 0 else ""
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(MAIN_CONF % {"dir": self.dir, "user": user})
        self.args = [NGINX, "-p", self.dir + "/", "-c", self.conf,
                     "-e", os.path.join(self.dir, "error.log")]
        self.proc = None
        self.workers = []

    def errlog(self):
        try:
            with open(os.path.join(self.dir, "error.log")) as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def check_config(self):
        p = subprocess.run(self.args + ["-t"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=20)
        return p.returncode, p.stdout

    def start(self):
        rc, out = self.check_config()
        if rc != 0 and "unknown directive \"auth_request\"" in out:
            kg.skip("nginx without the auth_request module")
        kg.eq(rc, 0, "nginx -t on the site from contrib/nginx/keygate.conf "
              "(output %r)" % out)
        log = open(os.path.join(self.dir, "stderr.log"), "ab")
        try:
            self.proc = subprocess.Popen(
                self.args + ["-g", "daemon off;"], stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, cwd=self.dir, start_new_session=True)
        finally:
            log.close()
        _running.append(self)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("nginx exited with %d: %s" %
                                     (self.proc.returncode, self.errlog()))
            try:
                with kg.Conn(self.port, timeout=1) as c:
                    c.send(kg.raw_request("GET", "/_ready", headers=[
                        ("Connection", "close")]))
                    c.read_response()
                    break
            except (OSError, kg.NoResponse, kg.ProtocolError):
                if time.monotonic() > deadline:
                    raise AssertionError("nginx not serving on %d after 10 s:"
                                         " %s" % (self.port, self.errlog()))
                time.sleep(0.05)
        self.workers = kg.children_of(self.proc.pid)
        return self

    def stop(self):
        p = self.proc
        if p is None:
            return
        self.proc = None
        workers = set(self.workers) | set(kg.children_of(p.pid))
        try:
            p.send_signal(signal.SIGTERM)	# fast shutdown, workers too
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        except OSError:
            pass
        for w in workers:
            # Still one of ours: an nginx whose parent was our master.
            st = kg.proc_stat(w)
            if st is not None and st[1] in (p.pid, 1) and \
                    "nginx" in " ".join(kg.proc_cmdline(w)):
                try:
                    os.kill(w, signal.SIGKILL)
                except OSError:
                    pass
        if self in _running:
            _running.remove(self)


_running = []


def stop_all():
    for n in list(_running):
        n.stop()
    U.stop_all()


def with_cleanup(fn):
    def t():
        try:
            fn()
        finally:
            stop_all()
    t.__name__ = fn.__name__
    return t


KEYGATE_ROUTES = (
    "verify_path /_keygate/verify",
    "route GET,HEAD,POST ^/open(/|$) auth=anonymous",
    "route * .* auth=deny",
)


class Stack:
    """nginx -> (auth_request to keygated) -> upstream.py."""

    def __init__(self):
        self.up = U.Upstream(name="api")
        self.kg = kg.start(kg.config(
            "upstream api %s read_timeout=3s" % self.up.url, *KEYGATE_ROUTES,
            upstream=False))
        for attempt in range(3):
            self.nginx = Nginx(kg.free_port(), self.kg.port, self.up.port)
            try:
                self.nginx.start()
                break
            except AssertionError as e:
                self.nginx.stop()
                if "Address already in use" not in str(e) or attempt == 2:
                    raise
        self.up.reset()
        self.port = self.nginx.port

    def request(self, method, target, headers=(), body=b""):
        with kg.Conn(self.port) as c:
            c.send(kg.raw_request(method, target, host="api.example.com",
                                  headers=headers, body=body))
            return c.read_final(method == "HEAD")


def echo_of(r, what):
    kg.eq(r.status, 200, "%s: status (body %r)" % (what, r.body[:300]))
    j = json.loads(r.body.decode())
    kg.check(isinstance(j, dict) and "target" in j,
             "%s: not the upstream's echo: %r" % (what, j))
    return j


def up_headers(j, name):
    return [v for n, v in j["headers"] if n.lower() == name.lower()]


# --- tests ---------------------------------------------------------------------

def test_example_site_passes_nginx_t():
    n = Nginx(*kg.free_ports(3))
    rc, out = n.check_config()
    kg.eq(rc, 0, "nginx -t on contrib/nginx/keygate.conf (output %r)" % out)


def test_allowed_route_reaches_upstream():
    s = Stack()
    r = s.request("GET", "/open/page?x=1&y=%2F")
    j = echo_of(r, "GET of an anonymous route through nginx")
    kg.eq(j["target"], "/open/page?x=1&y=%2F", "target at the upstream")
    rid = up_headers(j, "x-keygate-request-id")
    kg.eq(len(rid), 1, "X-Keygate-Request-Id headers at the upstream (%r)" %
          j["headers"])
    kg.check(kg.REQID_RE.match(rid[0]), "X-Keygate-Request-Id %r is not "
             "keygate's 32 hex characters" % rid[0])
    kg.eq(r.header("x-keygate-request-id"), rid[0],
          "X-Keygate-Request-Id in the response to the client")
    # The verify sub-request went to keygated, not to the upstream: the
    # upstream saw exactly this one request.
    s2 = s.up.stats()
    kg.eq([e[2] for e in s2["log"]], ["/open/page?x=1&y=%2F"],
          "requests the upstream received")
    # keygated saw the sub-request (its access log names the verify path).
    lines = kg.wait_for(lambda: s.kg.access_lines(), 2.0, "access log")
    kg.check(any("/_keygate/verify" in json.dumps(e) for e in lines),
             "keygated's access log has no verify request: %r" % lines)


def test_request_id_wiring():
    s = Stack()
    r = s.request("GET", "/open/rid", headers=[("X-Request-Id",
                                                "nginx-test-123")])
    j = echo_of(r, "GET with a client X-Request-Id")
    kg.eq(up_headers(j, "x-keygate-request-id"), ["nginx-test-123"],
          "keygate's X-Request-Id, set by auth_request_set, at the upstream")


def test_denied_route_403():
    s = Stack()
    r = s.request("GET", "/admin/secret")
    kg.eq(r.status, 403, "status from nginx for a deny route (body %r)" %
          r.body[:200])
    kg.check(kg.REQID_RE.match(r.header("x-keygate-request-id") or ""),
             "keygate's request id on the 403: %r" % r.headers)
    r = s.request("POST", "/open/x", body=b"abc")
    echo_of(r, "POST to an anonymous GET,HEAD,POST route")
    r = s.request("DELETE", "/open/x")
    kg.eq(r.status, 403, "DELETE falls to the deny route")
    kg.eq([e[1] for e in s.up.stats()["log"]], ["POST"],
          "methods that reached the upstream")


def test_verify_endpoint_is_internal():
    s = Stack()
    r = s.request("GET", "/_keygate/verify", headers=[
        ("X-Original-Method", "GET"), ("X-Original-URI", "/open/x")])
    kg.eq(r.status, 404, "the verify location called from outside")


def test_spoofed_identity_and_credentials_not_passed():
    s = Stack()
    r = s.request("GET", "/open/spoof", headers=[
        ("X-Consumer-Id", "attacker"), ("X-Key-Id", "key_evil"),
        ("X-Auth-Scheme", "api-key"), ("X-Scopes", "admin"),
        ("X-API-KEY", "live_secret"), ("Authorization", "Bearer a.b.c"),
        ("X-Keygate-Request-Id", "forged"), ("X-Other", "kept")])
    j = echo_of(r, "GET with spoofed identity headers")
    for n in ("x-consumer-id", "x-key-id", "x-scopes", "x-api-key",
              "authorization"):
        kg.eq(up_headers(j, n), [], "%s at the upstream" % n)
    # keygated's 204 says how the request was let through.
    kg.eq(up_headers(j, "x-auth-scheme"), ["anonymous"],
          "x-auth-scheme at the upstream")
    kg.check(up_headers(j, "x-keygate-request-id") != ["forged"],
             "the client's X-Keygate-Request-Id reached the upstream")
    kg.eq(up_headers(j, "x-other"), ["kept"], "ordinary header")


def test_request_body_passes_verify():
    s = Stack()
    body = U.pattern(300000)
    r = s.request("POST", "/open/upload", body=body,
                  headers=[("Content-Type", "application/octet-stream")])
    j = echo_of(r, "POST of 300 kB through nginx")
    kg.eq(j["body_bytes"], len(body), "body bytes at the upstream")
    import hashlib
    kg.eq(j["body_sha256"], hashlib.sha256(body).hexdigest(), "body sha256")
    with kg.Conn(s.port) as c:
        c.send(kg.raw_request("POST", "/open/chunked", host="api.example.com",
                              headers=[("Transfer-Encoding", "chunked")]) +
               b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        j = echo_of(c.read_final(), "chunked POST through nginx")
    kg.eq(j["body_bytes"], 11, "chunked body bytes at the upstream")


TESTS = [with_cleanup(t) for t in [
    test_example_site_passes_nginx_t,
    test_allowed_route_reaches_upstream,
    test_request_id_wiring,
    test_denied_route_403,
    test_verify_endpoint_is_internal,
    test_spoofed_identity_and_credentials_not_passed,
    test_request_body_passes_verify,
]]


if __name__ == "__main__":
    if NGINX is None:
        print("1..0 # SKIP nginx not installed")
        sys.stderr.write("test_nginx.py: nginx not installed, skipped\n")
        sys.exit(kg.SKIP_EXIT)
    import atexit
    atexit.register(stop_all)
    if len(sys.argv) > 1:
        TESTS = [t for t in TESTS if t.__name__ in sys.argv[1:]]
    kg.run(TESTS)
