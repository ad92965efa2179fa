"""
API keys end to end: keys made, changed, regenerated, disabled and deleted
through the admin API of the real keygated, and used through its gateway
(the built-in echo upstream, and upstream.py as a real upstream that shows
the headers it received), with two workers so that "at once, in every
worker" is really checked: the tests hold one keep-alive connection to
each worker (which worker answered is read from the access log's pid).

Also: the credential forms (X-API-KEY, Basic ":secret", X-APP-ID +
X-API-KEY, Basic "app:secret"), every refusal code, anonymous fallback,
verify_path, the access log (key ids, never secrets), persistence across
restarts, SIGHUP, a worker killed by SIGKILL in a burst of creates, a full
file system (tmpfs, root only), damaged journal and snapshot files, the
admin API's HTTP behaviour, and max_keys.

Every secret any test creates is remembered, and each test ends by
checking that none of them (nor the admin token) appears in the access
log, the error log, the daemon's stderr or the files of its state_dir.
"""

import base64
import http.client
import json
import os
import re
import secrets as pysecrets
import shutil
import signal
import subprocess
import sys
import threading
import time

import kgtest as kg
import upstream as U

SECRET_RE = re.compile(r"^live_[A-Za-z0-9]{32}$")
KEYID_RE = re.compile(r"^key_[A-Za-z0-9]{16}$")
B62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

# Keys used for many requests get limits no test comes near.
BIG_RATE = {"per_1s": 1000000, "per_10s": 1000000, "per_60s": 1000000}

ALL_SECRETS = []		# every secret seen in a create/regenerate answer

# The usual routes: echo, a scoped echo, a mixed route, app-key, deny.
ROUTES = (
    "route GET ^/echo(/|$) auth=api-key upstream=echo",
    "route GET ^/scoped(/|$) auth=api-key scope=orders:write upstream=echo",
    "route GET ^/mixed(/|$) auth=api-key,anonymous upstream=echo",
    "route GET ^/jobs(/|$) auth=app-key upstream=echo",
    "route * .* auth=deny",
)


def template(*lines, workers=2, **settings):
    return kg.config(*(lines or ROUTES), workers=workers, admin="{port2}",
                     **settings)


def start(*lines, **settings):
    t = template(*lines, **settings)
    d = kg.start(t, nports=2)
    d.kt_template = t
    return d


def state_dir(d):
    """The state_dir d's configuration names."""
    with open(d.conf_path) as f:
        m = re.search(r"^state_dir\s+(\S+)\s*$", f.read(), re.M)
    kg.check(m is not None, "no state_dir in %s" % d.conf_path)
    return m.group(1)


def reopen(d, state=None):
    """A new daemon (d's config) on d's state_dir (or state); d is stopped."""
    kg.check(not d.master_alive(), "reopen: the old daemon still runs")
    t = d.kt_template.replace("state_dir {dir}/state",
                  "state_dir " + (state or state_dir(d)))
    n = kg.start(t, nports=2)
    n.kt_template = t
    return n


def stop(d, workers=2):
    """
    Graceful stop, once every worker has served a request.  (A SIGTERM
    that reaches a worker still starting kills it by signal, which the
    master logs as a crash: a start-up race of its own, not what these
    tests are about.)
    """
    PerWorker(d, n=workers).close()
    rc = d.stop()
    kg.eq(rc, 0, "exit status of a graceful stop")


# --- the admin API ---------------------------------------------------------

def remember(secret):
    ALL_SECRETS.append(secret)


def mk(d, owner="acme", **fields):
    """Create a key; check the answer; returns (key, secret)."""
    fields.setdefault("rate_limit", BIG_RATE)
    k, s = kg.create_key(d, owner, **fields)
    remember(s)
    kg.check(SECRET_RE.match(s), "secret %r is not live_ + 32 base62" % s)
    kg.check(KEYID_RE.match(k["id"]), "key id %r" % k["id"])
    kg.eq(k["owner"], owner, "owner of the new key")
    kg.check(k["hint"].startswith("live") and k["hint"].endswith(s[-4:]),
             "hint %r for a secret ending %r" % (k["hint"], s[-4:]))
    kg.check(s not in k["hint"], "the hint holds the whole secret")
    return k, s


def adm(d, method, path, body=None, status=200, what=None, **kw):
    """An admin request that must answer status; its JSON (or None)."""
    r = kg.admin(d, method, path, body, **kw)
    kg.eq(r.status, status, "%s: %s %s status (body %r)" %
          (what or "admin", method, path, r.body[:300]))
    if status == 204:
        kg.eq(r.body, b"", "%s: 204 body" % (what or "admin"))
        return None
    ct = r.header("content-type", "")
    kg.check(ct.split(";")[0].strip() == "application/json",
             "%s: Content-Type %r" % (what or "admin", ct))
    return r.json()


def adm_refusal(d, method, path, body, status, code, what, **kw):
    r = kg.admin(d, method, path, body, **kw)
    j = kg.check_refusal(r, status, code, what)
    return r, j


def list_all(d, limit=1000, **filters):
    """Every key listed, following next_cursor (bounded); [key]."""
    out = []
    cursor = None
    for _ in range(100000 // limit + 2):
        q = ["limit=%d" % limit] + ["%s=%s" % kv for kv in filters.items()]
        if cursor is not None:
            q.append("cursor=%s" % cursor)
        j = adm(d, "GET", "/v1/keys?" + "&".join(q), what="list")
        kg.check(len(j["keys"]) <= limit, "a page of %d keys with limit %d" %
                 (len(j["keys"]), limit))
        out += j["keys"]
        cursor = j["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("listing did not end")


def list_sorted(d, sort, limit=1000, **filters):
    """Every key listed sorted, paged by offset (bounded): ([key], total)."""
    out, total = [], None
    for _ in range(100000 // limit + 2):
        q = ["sort=%s" % sort, "limit=%d" % limit, "offset=%d" % len(out)]
        q += ["%s=%s" % kv for kv in filters.items()]
        j = adm(d, "GET", "/v1/keys?" + "&".join(q), what="sorted list")
        kg.check("next_cursor" not in j, "a sorted page with next_cursor")
        kg.eq(j["offset"], len(out), "offset of a sorted page")
        kg.check(total is None or j["total"] == total, "total changed "
                 "between pages: %r, then %r" % (total, j["total"]))
        total = j["total"]
        out += j["keys"]
        if not j["keys"] or len(out) >= total:
            return out, total
    raise AssertionError("sorted listing did not end")


def list_ids(d, **kw):
    ids = [k["id"] for k in list_all(d, **kw)]
    kg.eq(len(ids), len(set(ids)), "keys listed twice")
    return set(ids)


# --- the gateway -------------------------------------------------------------

def xkey(secret):
    return [("X-API-KEY", secret)]


def basic(user, secret):
    tok = base64.b64encode(("%s:%s" % (user, secret)).encode("latin-1"))
    return [("Authorization", "Basic " + tok.decode())]


def call(d, path, headers=(), method="GET", conn=None):
    """A request with exactly these headers, on conn or a new connection."""
    raw = kg.raw_request(method, path, headers=list(headers))
    if conn is not None:
        conn.send(raw)
        return conn.read_final(method == "HEAD")
    with kg.Conn(d.port) as c:
        c.send(raw)
        return c.read_final(method == "HEAD")



def check_identity(h, key, scheme, what):
    """The identity headers in h (lower-case name -> value) are key's."""
    kg.eq(h.get("x-consumer-id"), key["owner"], "%s: X-Consumer-Id" % what)
    kg.eq(h.get("x-key-id"), key["id"], "%s: X-Key-Id" % what)
    kg.eq(h.get("x-app-id"), key["app_id"], "%s: X-App-Id" % what)
    kg.eq(h.get("x-scopes"), " ".join(key["scopes"]) or None,
          "%s: X-Scopes" % what)
    kg.eq(h.get("x-auth-scheme"), scheme, "%s: X-Auth-Scheme" % what)


def refused(r, status, code, what, secrets=()):
    """A JSON refusal that does not repeat any of the secrets."""
    j = kg.check_refusal(r, status, code, what)
    for s in list(secrets) + ALL_SECRETS:
        kg.check(s.encode() not in r.body, "%s: the refusal contains a "
                 "secret: %r" % (what, r.body))
    return j


def random_secret():
    return "live_" + "".join(pysecrets.choice(B62) for _ in range(32))


class PerWorker:
    """
    One keep-alive connection to each of d's n workers.  Which worker
    accepted a connection is learnt from the access log (its pid) for a
    request sent on it; connections to a worker already covered are
    closed, so the next one is accepted by whichever worker is free.
    """

    def __init__(self, d, n=2, timeout=30.0, attempts=5000):
        """
        Which worker accepts a connection is up to the scheduler: on a
        loaded machine one worker can win many accepts in a row (it was 80
        attempts, which flaked).  So keep trying for up to timeout seconds
        (and attempts connections), pausing a little longer each time (5 ms
        up to 100 ms) so that a worker waiting for the CPU gets it.  What
        is checked is unchanged: one connection to each of the n workers.
        """
        self.d = d
        self.conns = {}
        pids = set(d.wait_workers(n))
        deadline = time.monotonic() + timeout
        pause = 0.005
        for i in range(attempts):
            c = kg.Conn(d.port)
            r = call(d, "/_probe/%d" % i, conn=c)
            pid = d.access_by_id(r.header("x-request-id"))["pid"]
            if pid in pids and pid not in self.conns:
                self.conns[pid] = c
            else:
                c.close()
            if set(self.conns) == pids:
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(pause)
            pause = min(pause * 1.5, 0.1)
        self.close()
        raise AssertionError("no connection to each of the workers %s in %d "
                             "attempts (%.0f s)" % (sorted(pids), i + 1,
                                                    timeout))

    def each(self, path, headers=()):
        """The request on every worker's connection: [(pid, Response)]."""
        out = []
        for pid in sorted(self.conns):
            r = call(self.d, path, headers, conn=self.conns[pid])
            kg.check(not r.closes(), "worker %d closed the connection: %r" %
                     (pid, r))
            out.append((pid, r))
        return out

    def close(self):
        for c in self.conns.values():
            c.close()
        self.conns = {}


def everywhere_refused(pw, path, headers, status, code, what, fresh=16):
    """Refused on each worker's connection and on fresh connections."""
    for pid, r in pw.each(path, headers):
        refused(r, status, code, "%s (worker %d)" % (what, pid))
    for i in range(fresh):
        refused(call(pw.d, path, headers), status, code,
                "%s (fresh connection %d)" % (what, i))


def everywhere_ok(pw, path, headers, what):
    """Allowed on each worker; returns the echoed headers of each."""
    return [kg.echo_headers(r, "%s (worker %d)" % (what, pid))
            for pid, r in pw.each(path, headers)]


# --- no secret anywhere ------------------------------------------------------

def no_secret_leak(*daemons):
    """No secret nor the admin token in logs or state files of daemons."""
    needles = [s.encode() for s in ALL_SECRETS]
    needles.append(kg.ADMIN_TOKEN.encode())
    for d in daemons:
        paths = [d.access_path, d.errlog_path, d.stderr_path]
        sd = state_dir(d)
        if os.path.isdir(sd):
            paths += [os.path.join(sd, n) for n in os.listdir(sd)]
        for p in paths:
            try:
                with open(p, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            for n in needles:
                kg.check(n not in data, "a secret (%s...) is in %s" %
                         (n[:5].decode(), p))


def utc(t):
    """RFC 3339 UTC with milliseconds for the epoch time t."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + \
        ".%03dZ" % int((t % 1) * 1000)


# === the life of a key =======================================================

def test_lifecycle():
    up = U.Upstream(name="up")
    try:
        lifecycle(up)
    finally:
        U.stop_all()


def lifecycle(up):
    d = start("upstream api %s read_timeout=3s" % up.url,
              "route GET ^/up(/|$) auth=api-key upstream=api", *ROUTES)
    k, s1 = mk(d, "acme-corp", name="ci", app_id="app.mobile",
               scopes=["orders:read"])
    kg.eq(k["name"], "ci", "name")
    kg.eq(k["app_id"], "app.mobile", "app_id")
    kg.eq(k["scopes"], ["orders:read"], "scopes")
    kg.eq(k["disabled"], False, "disabled")
    kg.eq(k["expires_at"], None, "expires_at")
    kid = k["id"]
    g = adm(d, "GET", "/v1/keys/" + kid, what="show")
    kg.check("secret" not in g, "GET shows a secret field: %r" % g)
    kg.eq({x: g[x] for x in ("id", "owner", "name", "scopes", "app_id")},
          {x: k[x] for x in ("id", "owner", "name", "scopes", "app_id")},
          "GET vs create")
    pw = PerWorker(d)

    # The echo route: identity added, credentials and spoofed identity gone.
    spoof = [("X-Consumer-Id", "attacker"),
             ("X-Key-Id", "key_AAAAAAAAAAAAAAAA"),
             ("X-Scopes", "admin"), ("X-Auth-Scheme", "jwt"),
             ("X-App-Id", "evil")]
    for h in everywhere_ok(pw, "/echo/a", xkey(s1) + spoof, "echo route"):
        check_identity(h, k, "api-key", "echo route")
        for n in ("x-api-key", "authorization"):
            kg.check(n not in h, "%s reached the upstream: %r" % (n, h))
        kg.check(s1 not in json.dumps(h), "the secret reached the upstream")

    # The real upstream sees the same, exactly once each.
    r = call(d, "/up/orders?x=1", xkey(s1) + spoof +
             [("Authorization", "Bearer abc.def.ghi")])
    kg.eq(r.status, 200, "proxied request (body %r)" % r.body[:300])
    j = r.json()
    kg.eq(j.get("upstream"), "up", "answered by upstream.py")
    got = {}
    for n, v in j["headers"]:
        got.setdefault(n.lower(), []).append(v)
    want = {"x-consumer-id": ["acme-corp"], "x-key-id": [kid],
            "x-app-id": ["app.mobile"], "x-scopes": ["orders:read"],
            "x-auth-scheme": ["api-key"]}
    for n, v in want.items():
        kg.eq(got.get(n), v, "upstream.py received %s" % n)
    for n in ("x-api-key", "authorization"):
        kg.check(n not in got, "upstream.py received %s: %r" % (n, got))
    kg.check(s1 not in r.body.decode(), "the secret reached upstream.py")

    # Rename.
    p = adm(d, "PATCH", "/v1/keys/" + kid, {"name": "ci-renamed"},
            what="rename")
    kg.eq(p["name"], "ci-renamed", "name after PATCH")
    kg.eq(p["owner"], "acme-corp", "owner after PATCH")
    kg.check(p["updated_at"] >= k["updated_at"], "updated_at went back")
    kg.eq(adm(d, "GET", "/v1/keys/" + kid)["name"], "ci-renamed",
          "name shown after PATCH")
    kg.check("secret" not in p, "PATCH shows a secret field")

    # A scope route: refused naming the scope, allowed once it is added.
    for pid, r in pw.each("/scoped/1", xkey(s1)):
        j = refused(r, 403, "insufficient_scope", "scope missing (worker %d)"
                    % pid)
        kg.check("orders:write" in j["message"], "the message does not name "
                 "the scope: %r" % j["message"])
    p = adm(d, "PATCH", "/v1/keys/" + kid,
            {"scopes": ["orders:read", "orders:write"]}, what="add scope")
    kg.eq(p["scopes"], ["orders:read", "orders:write"], "scopes after PATCH")
    k["scopes"] = p["scopes"]
    for h in everywhere_ok(pw, "/scoped/1", xkey(s1), "scope added"):
        check_identity(h, k, "api-key", "scope added")

    # Regenerate without grace: the old secret stops at once, everywhere.
    g = adm(d, "POST", "/v1/keys/%s/regenerate" % kid, what="regenerate")
    s2 = g.get("secret")
    kg.check(isinstance(s2, str) and SECRET_RE.match(s2),
             "regenerate secret %r" % s2)
    remember(s2)
    kg.check(s2 != s1, "regenerate returned the same secret")
    kg.eq(g["id"], kid, "id after regenerate")
    kg.eq(g["scopes"], k["scopes"], "scopes after regenerate")
    kg.eq(g["app_id"], "app.mobile", "app after regenerate")
    kg.eq(g["grace_until"], None, "grace_until without grace")
    kg.check(g["hint"].endswith(s2[-4:]), "hint after regenerate %r" %
             g["hint"])
    everywhere_refused(pw, "/echo/b", xkey(s1), 401, "invalid_credentials",
                       "old secret after regenerate")
    for h in everywhere_ok(pw, "/echo/b", xkey(s2), "new secret"):
        check_identity(h, k, "api-key", "new secret")

    # Regenerate with grace: both secrets work during it.
    g = adm(d, "POST", "/v1/keys/%s/regenerate" % kid, {"grace_seconds": 60},
            what="regenerate with grace")
    s3 = g["secret"]
    remember(s3)
    kg.check(s3 not in (s1, s2), "regenerate with grace: same secret")
    kg.check(g["grace_until"] is not None and
             kg.RFC3339_RE.match(g["grace_until"]),
             "grace_until %r" % g["grace_until"])
    for sec, what in ((s2, "previous secret in grace"), (s3, "new secret")):
        for h in everywhere_ok(pw, "/echo/c", xkey(sec), what):
            check_identity(h, k, "api-key", what)
    everywhere_refused(pw, "/echo/c", xkey(s1), 401, "invalid_credentials",
                       "the secret before the previous one", fresh=2)

    # A grace period that ends: the previous secret stops, the new goes on.
    t0 = time.time()
    g = adm(d, "POST", "/v1/keys/%s/regenerate" % kid, {"grace_seconds": 2},
            what="regenerate with 2 s of grace")
    s4 = g["secret"]
    remember(s4)
    rs = pw.each("/echo/g", xkey(s3))
    if time.time() < t0 + 1.95:		# answered well within the grace
        for pid, r in rs:
            kg.echo_headers(r, "previous secret, 2 s of grace (worker %d)" % pid)

    def ended():
        sent = time.time()
        r = call(d, "/echo/g", xkey(s3))
        return (r, sent) if r.status != 200 else None
    r, sent = kg.wait_for(ended, 7.0, "the grace period to end",
                          interval=0.1)
    kg.check(sent >= t0 + 2.0 - 0.05, "the previous secret stopped %.2f s "
             "before its grace period ended" % (t0 + 2.0 - sent))
    refused(r, 401, "invalid_credentials", "previous secret after its grace")
    everywhere_refused(pw, "/echo/g", xkey(s3), 401, "invalid_credentials",
                       "previous secret after its grace", fresh=4)
    everywhere_refused(pw, "/echo/g", xkey(s2), 401, "invalid_credentials",
                       "the secret two regenerations back", fresh=0)
    for h in everywhere_ok(pw, "/echo/g", xkey(s4), "new secret after grace"):
        check_identity(h, k, "api-key", "new secret after grace")
    kg.eq(adm(d, "GET", "/v1/keys/" + kid)["grace_until"], None,
          "grace_until once the grace period is over")

    # Disable, enable.
    p = adm(d, "PATCH", "/v1/keys/" + kid, {"disabled": True}, what="disable")
    kg.eq(p["disabled"], True, "disabled after PATCH")
    everywhere_refused(pw, "/echo/d", xkey(s4), 401, "disabled_key",
                       "disabled key")
    p = adm(d, "PATCH", "/v1/keys/" + kid, {"disabled": False}, what="enable")
    kg.eq(p["disabled"], False, "disabled after enable")
    everywhere_ok(pw, "/echo/d", xkey(s4), "enabled again")

    # Delete (during a grace period): both secrets stop at once everywhere.
    g = adm(d, "POST", "/v1/keys/%s/regenerate" % kid, {"grace_seconds": 600},
            what="regenerate before the delete")
    s5 = g["secret"]
    remember(s5)
    everywhere_ok(pw, "/echo/e", xkey(s4), "previous secret before delete")
    adm(d, "DELETE", "/v1/keys/" + kid, status=204, what="delete")
    everywhere_refused(pw, "/echo/e", xkey(s5), 401, "invalid_credentials",
                       "deleted key")
    everywhere_refused(pw, "/echo/e", xkey(s4), 401, "invalid_credentials",
                       "deleted key's secret in its grace period")
    adm_refusal(d, "GET", "/v1/keys/" + kid, None, 404, "key_not_found",
                "GET of a deleted key")
    adm_refusal(d, "DELETE", "/v1/keys/" + kid, None, 404, "key_not_found",
                "second DELETE")
    kg.check(kid not in list_ids(d), "deleted key still listed")
    pw.close()
    no_secret_leak(d)


# === the credential forms ====================================================

def test_basic_and_app_key_forms():
    d = start()
    k, s = mk(d, "basic-owner", scopes=["orders:read"])
    ka, sa = mk(d, "app-owner", app_id="app.mobile")
    kn, sn = mk(d, "no-app-owner")

    # Basic with an empty user name (curl --user :secret) on an api-key route.
    h = kg.echo_headers(call(d, "/echo/basic", basic("", s)), "Basic :secret")
    check_identity(h, k, "api-key", "Basic :secret")
    kg.check("authorization" not in h, "Authorization reached the upstream")
    # curl itself, when there is one.
    curl = shutil.which("curl")
    if curl:
        p = subprocess.run([curl, "-sS", "--max-time", "5", "--user", ":" + s,
                            "http://127.0.0.1:%d/echo/curl" % d.port],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=10)
        kg.eq(p.returncode, 0, "curl exit status (%r)" % p.stderr)
        j = json.loads(p.stdout.decode())
        check_identity(j["headers"], k, "api-key", "curl --user :secret")
    # The key header wins over Authorization when both are sent.
    h = kg.echo_headers(call(d, "/echo/both", xkey(s) +
                          [("Authorization", "Bearer x.y.z")]),
                     "X-API-KEY with a Bearer Authorization")
    check_identity(h, k, "api-key", "X-API-KEY with Authorization")
    # Leading and trailing blanks around the value are not part of the key.
    h = kg.echo_headers(call(d, "/echo/ows", [("X-API-KEY", "  %s \t" % s)]),
                     "X-API-KEY with blanks around it")
    check_identity(h, k, "api-key", "OWS around the key")
    # The header name is case-insensitive.
    h = kg.echo_headers(call(d, "/echo/case", [("x-api-key", s)]),
                     "x-api-key in lower case")
    check_identity(h, k, "api-key", "lower-case header name")
    # A user name with an api-key route is refused.
    refused(call(d, "/echo/basic", basic("someone", s)), 401,
            "malformed_credentials", "Basic user:secret on an api-key route")
    refused(call(d, "/echo/basic", basic("", random_secret())), 401,
            "invalid_credentials", "Basic with an unknown secret")

    # app-key: X-APP-ID + X-API-KEY.
    app = [("X-APP-ID", "app.mobile")]
    h = kg.echo_headers(call(d, "/jobs/1", app + xkey(sa)), "app-key pair")
    check_identity(h, ka, "app-key", "app-key pair")
    kg.check("x-api-key" not in h, "X-API-KEY reached the upstream")
    # X-APP-ID twice (in any case) is malformed; so is a wrong app.
    refused(call(d, "/jobs/1", [("X-APP-ID", "app.mobile"),
                                ("X-App-Id", "app.mobile")] + xkey(sa)), 401,
            "malformed_credentials", "X-APP-ID twice")
    refused(call(d, "/jobs/1", [("X-APP-ID", "app.other")] + xkey(sa)), 401,
            "invalid_credentials", "app-key pair with the wrong app",
            secrets=[sa])
    refused(call(d, "/jobs/1", app + xkey(sn)), 401, "invalid_credentials",
            "a key without an app, with X-APP-ID")
    refused(call(d, "/jobs/1", app + xkey(s)), 401, "invalid_credentials",
            "another owner's key without an app")
    refused(call(d, "/jobs/1", app + xkey(random_secret())), 401,
            "invalid_credentials", "unknown secret with X-APP-ID")
    r = call(d, "/jobs/1", xkey(sa))
    refused(r, 401, "missing_credentials", "X-API-KEY without X-APP-ID on an "
            "app-key route")
    kg.check(r.header("www-authenticate"), "no WWW-Authenticate")
    refused(call(d, "/jobs/1", app), 401, "missing_credentials",
            "X-APP-ID alone")

    # Basic app:secret on an app-key route.
    h = kg.echo_headers(call(d, "/jobs/2", basic("app.mobile", sa)),
                     "Basic app:secret")
    check_identity(h, ka, "app-key", "Basic app:secret")
    kg.check("authorization" not in h, "Authorization reached the upstream")
    refused(call(d, "/jobs/2", basic("app.other", sa)), 401,
            "invalid_credentials", "Basic with the wrong app")
    refused(call(d, "/jobs/2", basic("app.mobile", sn)), 401,
            "invalid_credentials", "Basic app:secret of a key without app")
    refused(call(d, "/jobs/2", basic("", sa)), 401, "missing_credentials",
            "Basic :secret on an app-key-only route")
    no_secret_leak(d)


# === every refusal ===========================================================

def raw_call(d, path, header_lines):
    """A request whose header lines are given as raw text (any bytes)."""
    raw = ("GET %s HTTP/1.1\r\nHost: x\r\n" % path).encode() + \
        b"".join(l + b"\r\n" for l in header_lines) + b"\r\n"
    with kg.Conn(d.port) as c:
        c.send(raw)
        return c.read_final()


def test_refusal_codes():
    d = start()
    k, s = mk(d, "refusals", scopes=["orders:read"])
    kd, sd = mk(d, "refusals", disabled=True)
    kg.eq(kd["disabled"], True, "created disabled")

    r = call(d, "/echo/x")
    refused(r, 401, "missing_credentials", "no credential")
    ch = r.header("www-authenticate", "")
    kg.check("X-API-KEY" in ch and "Basic" in ch,
             "WWW-Authenticate %r does not name the API key header and "
             "Basic" % ch)
    r = call(d, "/jobs/x")
    refused(r, 401, "missing_credentials", "no credential, app-key route")
    kg.check("X-APP-ID" in r.header("www-authenticate", ""),
             "WWW-Authenticate of an app-key route %r" %
             r.header("www-authenticate"))

    mal = "malformed_credentials"
    half = s[:20]
    cases = [
        ("empty X-API-KEY", [b"X-API-KEY: "]),
        ("blank X-API-KEY", [b"X-API-KEY:    "]),
        ("space inside", [("X-API-KEY: %s %s" % (half, s[20:])).encode()]),
        ("tab inside", [("X-API-KEY: %s\t%s" % (half, s[20:])).encode()]),
        ("two X-API-KEY headers", [b"X-API-KEY: " + s.encode(),
                                   b"x-api-key: " + s.encode()]),
        ("Basic, not base64", [b"Authorization: Basic !!not*base64!!"]),
        ("Basic, bad padding", [b"Authorization: Basic OmxpdmVf="]),
        ("Basic without ':'", [b"Authorization: Basic " +
                               base64.b64encode(s.encode())]),
        ("Basic, control character in the key",
         [b"Authorization: Basic " + base64.b64encode(
             b":" + half.encode() + b"\x01" + s[20:].encode())]),
        ("Basic, space in the key",
         [b"Authorization: Basic " + base64.b64encode(
             b":" + half.encode() + b" " + s[20:].encode())]),
        ("Basic, empty", [b"Authorization: Basic"]),
    ]
    for what, lines in cases:
        j = refused(raw_call(d, "/echo/m", lines), 401, mal, what)
        kg.check(s not in j["message"] and half not in j["message"],
                 "%s: message repeats the key: %r" % (what, j["message"]))
    j = refused(raw_call(d, "/echo/m", [("X-API-KEY: %s %s" % (
        half, s[20:])).encode()]), 401, mal, "space inside")
    kg.check(re.search(r"whitespace|control", j["message"]),
             "the message does not say what is wrong: %r" % j["message"])
    # A raw control character is already refused by the HTTP parser.
    r = raw_call(d, "/echo/m", [b"X-API-KEY: " + half.encode() + b"\x01" +
                                s[20:].encode()])
    kg.check((r.status, r.json().get("error")) in
             ((400, "bad_request"), (401, mal)),
             "control character in X-API-KEY: %r" % r)

    refused(call(d, "/echo/i", xkey(random_secret())), 401,
            "invalid_credentials", "unknown key")
    refused(call(d, "/echo/i", xkey("not-a-keygate-key")), 401,
            "invalid_credentials", "not a key at all")
    refused(call(d, "/echo/i", xkey(s + "x")), 401, "invalid_credentials",
            "a secret with one more character", secrets=[s + "x"])
    refused(call(d, "/echo/dis", xkey(sd)), 401, "disabled_key",
            "disabled key")
    # Disabled is decided before the scopes.
    refused(call(d, "/scoped/x", xkey(sd)), 401, "disabled_key",
            "disabled key on a scope route")
    j = refused(call(d, "/scoped/x", xkey(s)), 403, "insufficient_scope",
                "missing scope")
    kg.check('orders:write' in j["message"], "message %r" % j["message"])
    for hdrs, what in (([], "no credential"), (xkey(s), "a good key")):
        refused(call(d, "/nowhere", hdrs), 403, "forbidden",
                "deny route, %s" % what)
        refused(call(d, "/nowhere", hdrs, method="POST"), 403, "forbidden",
                "deny route, POST, %s" % what)

    # Expired: a key that expires in 2 s works now and is refused after.
    t0 = time.time()
    ke, se = mk(d, "refusals", expires_at=utc(t0 + 2.0))
    kg.check(ke["expires_at"] is not None, "expires_at not set")
    r = call(d, "/echo/exp", xkey(se))
    if time.time() < t0 + 1.95:		# answered well before the expiry
        check_identity(kg.echo_headers(r, "before expires_at"), ke, "api-key",
                       "before expires_at")

    def expired():
        sent = time.time()
        r = call(d, "/echo/exp", xkey(se))
        return (r, sent) if r.status != 200 else None
    r, sent = kg.wait_for(expired, 6.0, "the key to expire", interval=0.1)
    kg.check(sent >= t0 + 2.0 - 0.05, "refused %.2f s before its expiry: "
             "%r" % (t0 + 2.0 - sent, r))
    refused(r, 401, "expired_credentials", "expired key")
    # A past expiry is refused by the admin API.
    adm_refusal(d, "POST", "/v1/keys", {"owner": "x",
                                        "expires_at": utc(time.time() - 60)},
                422, "invalid_field", "expires_at in the past")
    no_secret_leak(d)


def test_anonymous_fallback():
    d = start()
    k, s = mk(d, "mixed")
    h = kg.echo_headers(call(d, "/mixed/a"), "no key on api-key,anonymous")
    kg.eq(h.get("x-auth-scheme"), "anonymous", "X-Auth-Scheme")
    for n in ("x-consumer-id", "x-key-id", "x-app-id", "x-scopes"):
        kg.check(n not in h, "anonymous request carries %s: %r" % (n, h))
    h = kg.echo_headers(call(d, "/mixed/a", [("X-Consumer-Id", "spoof"),
                                          ("X-Auth-Scheme", "api-key")]),
                     "anonymous with spoofed identity")
    kg.eq(h.get("x-auth-scheme"), "anonymous", "X-Auth-Scheme (spoofed)")
    kg.check("x-consumer-id" not in h, "spoofed X-Consumer-Id forwarded")
    refused(call(d, "/mixed/a", xkey(random_secret())), 401,
            "invalid_credentials", "a bad key does not fall back")
    refused(call(d, "/mixed/a", [("X-API-KEY", "a b")]), 401,
            "malformed_credentials", "a malformed key does not fall back")
    h = kg.echo_headers(call(d, "/mixed/a", xkey(s)), "good key")
    check_identity(h, k, "api-key", "good key on api-key,anonymous")
    no_secret_leak(d)


# === verify_path =============================================================

def test_verify_path_with_keys():
    d = start(verify_path="/_keygate/verify")
    k, s = mk(d, "verified", app_id="app.web", scopes=["orders:read"])
    kd, sd = mk(d, "verified", disabled=True)

    def verify(uri, headers=(), method="GET"):
        return call(d, "/_keygate/verify", [("X-Original-URI", uri),
                                            ("X-Original-Method", method)] +
                    list(headers))
    r = verify("/echo/page?q=1", xkey(s))
    kg.eq(r.status, 204, "verify with a good key (body %r)" % r.body[:200])
    kg.eq(r.body, b"", "204 body")
    got = {n.lower(): v for n, v in r.headers}
    check_identity(got, k, "api-key", "verify 204")
    r = verify("/jobs/1", [("X-APP-ID", "app.web")] + xkey(s))
    kg.eq(r.status, 204, "verify app-key (body %r)" % r.body[:200])
    kg.eq(r.header("x-auth-scheme"), "app-key", "verify app-key scheme")
    r = verify("/mixed/1")
    kg.eq(r.status, 204, "verify anonymous fallback")
    kg.eq(r.header("x-auth-scheme"), "anonymous", "verify anonymous scheme")
    kg.eq(r.header("x-consumer-id"), None, "anonymous verify consumer")

    r = verify("/echo/page")
    refused(r, 401, "missing_credentials", "verify without a key")
    kg.check(r.header("www-authenticate"), "verify 401 without "
             "WWW-Authenticate")
    refused(verify("/echo/page", [("X-API-KEY", "")]), 401,
            "malformed_credentials", "verify with an empty key")
    refused(verify("/echo/page", xkey(random_secret())), 401,
            "invalid_credentials", "verify with an unknown key")
    refused(verify("/echo/page", xkey(sd)), 401, "disabled_key",
            "verify with a disabled key")
    j = refused(verify("/scoped/x", xkey(s)), 403, "insufficient_scope",
                "verify without the scope")
    kg.check("orders:write" in j["message"], "message %r" % j["message"])
    refused(verify("/jobs/1", [("X-APP-ID", "app.other")] + xkey(s)), 401,
            "invalid_credentials", "verify with the wrong app")
    refused(verify("/elsewhere", xkey(s)), 403, "forbidden",
            "verify of a deny route")
    refused(verify("/echo/page", xkey(s), method="POST"), 403, "forbidden",
            "verify of POST (only GET is routed to the key route)")
    adm(d, "DELETE", "/v1/keys/" + k["id"], status=204)
    refused(verify("/echo/page", xkey(s)), 401, "invalid_credentials",
            "verify with a deleted key")
    no_secret_leak(d)


# === the access log ==========================================================

def test_access_log_key_ids():
    d = start()
    k, s = mk(d, "logged", app_id="app.log")
    other, so = mk(d, "logged")

    def entry(r):
        return d.access_by_id(r.header("x-request-id"))
    cases = [
        (call(d, "/echo/1", xkey(s)), 200, k["id"], "allowed"),
        (call(d, "/echo/1?api_key=" + s, xkey(s)), 200, k["id"],
         "allowed, secret in the query"),
        (call(d, "/scoped/1", xkey(s)), 403, k["id"], "scope refused"),
        (call(d, "/jobs/1", [("X-APP-ID", "app.other")] + xkey(s)), 401,
         k["id"], "wrong app"),
        (call(d, "/jobs/1", basic("app.log", s)), 200, k["id"],
         "Basic app:secret"),
        (call(d, "/echo/1", xkey(random_secret())), 401, None, "unknown key"),
        (call(d, "/echo/1"), 401, None, "no key"),
        (call(d, "/echo/1", [("X-API-KEY", "a b")]), 401, None, "malformed"),
        (call(d, "/nowhere", xkey(so)), 403, None, "deny route"),
    ]
    adm(d, "PATCH", "/v1/keys/" + k["id"], {"disabled": True})
    cases.append((call(d, "/echo/1", xkey(s)), 401, k["id"], "disabled"))
    g = adm(d, "POST", "/v1/keys/%s/regenerate" % other["id"])
    remember(g["secret"])
    cases.append((call(d, "/echo/1", xkey(g["secret"])), 200, other["id"],
                  "regenerated"))
    cases.append((call(d, "/echo/1", xkey(so)), 401, None,
                   "the secret before regenerate"))
    for r, status, kid, what in cases:
        kg.eq(r.status, status, "%s: status" % what)
        e = entry(r)
        kg.eq(e.get("status"), status, "%s: logged status" % what)
        kg.eq(e.get("key_id"), kid, "%s: logged key_id" % what)
        kg.check("?" not in e.get("path", ""), "%s: the query was logged: %r"
                 % (what, e))
    no_secret_leak(d)


# === persistence =============================================================

def check_store(d, expect, gone, what, graced=()):
    """
    The listing is exactly expect (id -> (key, secret)), field for field;
    each secret works (or is refused as disabled), so do the previous
    secrets in graced [(id, secret)]; the secrets in gone do not.
    """
    keys = list_all(d, limit=97)
    by_id = {x["id"]: x for x in keys}
    kg.eq(len(keys), len(by_id), "%s: keys listed twice" % what)
    # Sorted (the admin threads answer it), paged by offset: the same keys.
    srt, total = list_sorted(d, "-created", limit=97)
    kg.eq((total, sorted(x["id"] for x in srt)), (len(keys), sorted(by_id)),
          "%s: the keys sorted by -created, and their total" % what)
    order = [(x["created_at"], x["id"]) for x in srt]
    kg.check(order == sorted(order, reverse=True), "%s: sort=-created is "
             "not by created_at then id, descending" % what)
    missing = set(expect) - set(by_id)
    extra = set(by_id) - set(expect)
    kg.check(not missing and not extra, "%s: listed keys differ: %d missing "
             "(%s), %d extra (%s)" % (what, len(missing), sorted(missing)[:3],
                                      len(extra), sorted(extra)[:3]))
    for kid, (k, s) in expect.items():
        got = by_id[kid]
        for f in ("owner", "name", "scopes", "app_id", "disabled", "hint",
                  "created_at", "updated_at", "expires_at", "rate_limit",
                  "prefix", "grace_until"):
            kg.eq(got[f], k[f], "%s: %s of %s" % (what, f, kid))
    with kg.Conn(d.port) as c:
        for kid, (k, s) in sorted(expect.items()):
            r = call(d, "/echo/p", xkey(s), conn=c)
            if k["disabled"]:
                refused(r, 401, "disabled_key", "%s: %s" % (what, kid))
            else:
                h = kg.echo_headers(r, "%s: %s" % (what, kid))
                kg.eq(h.get("x-key-id"), kid, "%s: key id" % what)
                kg.eq(h.get("x-consumer-id"), k["owner"], "%s: owner" % what)
        for kid, s in graced:
            h = kg.echo_headers(call(d, "/echo/p", xkey(s), conn=c),
                             "%s: previous secret of %s" % (what, kid))
            kg.eq(h.get("x-key-id"), kid, "%s: key id (grace)" % what)
        for s in gone:
            refused(call(d, "/echo/p", xkey(s), conn=c), 401,
                    "invalid_credentials", "%s: a secret that must not work" %
                    what)


def create_many(d, n, owner_of, threads=4, **fields):
    """n keys made by several clients at once; {id: (key, secret)}."""
    out = {}
    lock = threading.Lock()
    errors = []

    def work(i0):
        try:
            for i in range(i0, n, threads):
                k, s = mk(d, owner_of(i), name="k%d" % i, **fields)
                with lock:
                    out[k["id"]] = (k, s)
        except Exception as e:
            errors.append(e)
    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    kg.check(not errors, "creating keys: %r" % errors[:1])
    kg.eq(len(out), n, "keys created")
    return out


def test_restart_keeps_every_key():
    d = start()
    keys = create_many(d, 300, lambda i: "owner%d" % (i % 7))
    ids = sorted(keys)
    gone = []
    graced = []
    # A tenth each: updated (half of them disabled), regenerated without
    # grace, regenerated with grace, deleted.
    for i, kid in enumerate(ids):
        k, s = keys[kid]
        if i % 10 == 1:
            p = adm(d, "PATCH", "/v1/keys/" + kid,
                    {"name": "updated %d" % i, "scopes": ["s:%d" % i, "x"],
                     "disabled": i % 20 == 1,
                     "rate_limit": {"per_1s": 1000 + i}})
            keys[kid] = (p, s)
        elif i % 10 == 2:
            g = adm(d, "POST", "/v1/keys/%s/regenerate" % kid,
                    {"grace_seconds": 0} if i % 20 == 2 else None)
            remember(g["secret"])
            gone.append(s)
            keys[kid] = (g, g["secret"])
        elif i % 10 == 3:
            g = adm(d, "POST", "/v1/keys/%s/regenerate" % kid,
                    {"grace_seconds": 3600})
            remember(g["secret"])
            graced.append((kid, s))
            keys[kid] = (g, g["secret"])
        elif i % 10 == 4:
            adm(d, "DELETE", "/v1/keys/" + kid, status=204)
            gone.append(s)
            del keys[kid]
    check_store(d, keys, gone, "before the restart", graced)
    stop(d)
    d2 = reopen(d)
    check_store(d2, keys, gone, "after a restart", graced)
    h = adm(d2, "GET", "/v1/health")
    kg.eq(h["keys"], len(keys), "health: keys after the restart")
    # Changes after the restart, then a second restart (from the snapshot
    # the first start wrote, plus the journal).
    kid = sorted(k for k in keys if k not in dict(graced))[0]
    adm(d2, "DELETE", "/v1/keys/" + kid, status=204)
    gone.append(keys.pop(kid)[1])
    k, s = mk(d2, "after-restart")
    keys[k["id"]] = (k, s)
    stop(d2)
    d3 = reopen(d2)
    check_store(d3, keys, gone, "after a second restart", graced)
    no_secret_leak(d, d2, d3)


def test_sighup_keeps_keys():
    d = start()
    k, s = mk(d, "hup", scopes=["orders:write"])
    master = d.master_pid
    old = d.worker_pids()
    kg.eq(len(old), 2, "workers before the reload")
    d.write_conf(template("route GET ^/new(/|$) auth=api-key upstream=echo",
                          *ROUTES))
    d.signal(signal.SIGHUP)
    d.wait_log(r"configuration reloaded")
    d.wait_workers(2, exclude=old, timeout=10)
    kg.eq(d.master_pid, master, "master pid after SIGHUP")
    kg.check(d.master_alive(), "master after SIGHUP")
    pw = PerWorker(d)
    for path in ("/new/1", "/echo/1", "/scoped/1"):
        for h in everywhere_ok(pw, path, xkey(s), "after SIGHUP " + path):
            check_identity(h, k, "api-key", "after SIGHUP " + path)
    k2, s2 = mk(d, "hup2")
    for h in everywhere_ok(pw, "/new/2", xkey(s2), "key made after SIGHUP"):
        check_identity(h, k2, "api-key", "key made after SIGHUP")
    adm(d, "DELETE", "/v1/keys/" + k["id"], status=204)
    everywhere_refused(pw, "/new/3", xkey(s), 401, "invalid_credentials",
                       "deleted after SIGHUP", fresh=4)
    kg.eq(list_ids(d), {k2["id"]}, "keys listed after SIGHUP")
    pw.close()
    no_secret_leak(d)


def test_sighup_state_dir_kept():
    """
    A reload that changes state_dir, max_keys or max_active_keys changes
    none of them until a restart, and says so: the workers it starts append to the journal the
    master loaded and compacts (review of issue 10: they used the new
    directory, so a key acknowledged after the reload was lost at the next
    restart).  Key A made before the reload and key B after it are both
    there after a restart with the first configuration, and nothing was
    written in the new directory.
    """
    d = start()
    a, _ = mk(d, "before")
    first = state_dir(d)
    second = os.path.join(d.dir, "state2")
    os.mkdir(second, 0o700)
    old = d.worker_pids()
    d.write_conf(template(max_keys=7, max_active_keys=5).replace(
        "state_dir {dir}/state",
        "state_dir {dir}/state2"))
    d.signal(signal.SIGHUP)
    d.wait_log(r"configuration reloaded")
    d.wait_workers(2, exclude=old, timeout=10)
    b, _ = mk(d, "after")
    kg.eq(list_ids(d), {a["id"], b["id"]}, "keys after the reload")
    kg.eq(adm(d, "GET", "/v1/health")["max_keys"], 1000000,
          "max_keys after the reload")
    stop(d)
    d2 = reopen(d, state=first)
    kg.eq(list_ids(d2), {a["id"], b["id"]}, "keys after a restart")
    stop(d2)
    kg.eq(os.listdir(second), [], "files in the new state_dir")
    kg.check(re.search(r"state_dir %s ignored until the next restart: the "
                       r"key store stays in %s" % (re.escape(second),
                                                   re.escape(first)),
                       d.errlog_text()), "no warning about state_dir")
    kg.check(re.search(r"max_keys 7 ignored until the next restart",
                       d.errlog_text()), "no warning about max_keys")
    kg.check(re.search(r"max_active_keys 5 ignored until the next restart: "
                       r"the rate table keeps 1000064 entries",
                       d.errlog_text()), "no warning about max_active_keys")
    no_secret_leak(d, d2)


def test_usage_counted_and_kept():
    """
    Requests allowed and refused are counted per key across workers, shown
    by the usage endpoint, and saved when the daemon stops: a restart shows
    the same counts.
    """
    d = start()
    k, s = mk(d, "usage", scopes=["orders:read"])
    for i in range(6):		# fresh connections: both workers count
        r = call(d, "/echo/u%d" % i, xkey(s))
        kg.eq(r.status, 200, "allowed request %d" % i)
    for i in range(2):
        refused(call(d, "/scoped/u%d" % i, xkey(s)), 403,
                "insufficient_scope", "refused request %d" % i, (s,))
    u = adm(d, "GET", "/v1/keys/%s/usage" % k["id"])
    kg.eq((u["requests_allowed"], u["requests_refused"]), (6, 2),
          "usage (allowed, refused)")
    kg.check(kg.RFC3339_RE.match(u["last_used_at"] or ""),
             "last_used_at %r" % u["last_used_at"])
    stop(d)
    n = reopen(d)
    u2 = adm(n, "GET", "/v1/keys/%s/usage" % k["id"])
    kg.eq((u2["requests_allowed"], u2["requests_refused"]), (6, 2),
          "usage after a restart")
    kg.eq(u2["last_used_at"], u["last_used_at"], "last_used_at after a "
          "restart")
    no_secret_leak(d, n)


def test_worker_killed_during_creates():
    d = start()
    d.allow_worker_deaths = True
    created = {}
    lock = threading.Lock()
    stop_ev = threading.Event()
    failures = []

    def work(t):
        for i in range(150):
            if stop_ev.is_set():
                return
            try:
                r = kg.admin(d, "POST", "/v1/keys",
                             {"owner": "burst%d" % t,
                              "name": "b%d-%d" % (t, i),
                              "rate_limit": BIG_RATE})
            except (OSError, http.client.HTTPException) as e:
                failures.append(repr(e))
                continue
            if r.status == 201:
                j = r.json()
                remember(j["secret"])
                with lock:
                    created[j["id"]] = (j, j["secret"])
            elif r.status != 503 or r.json().get("error") != "key_store_busy":
                failures.append("%d %r" % (r.status, r.body[:200]))
    ts = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in ts:
        t.start()
    kg.wait_for(lambda: len(created) >= 20, 10, "20 keys created")
    victim = d.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    kg.wait_for(lambda: len(created) >= 60 or
                all(not t.is_alive() for t in ts), 10,
                "keys created after the kill")
    stop_ev.set()
    for t in ts:
        t.join(20)
    kg.check(not any(t.is_alive() for t in ts), "client threads hang")
    # Connections cut by the kill are expected; any answer but 201 or 503
    # key_store_busy is not.
    bad = [f for f in failures if not f.startswith(("ConnectionResetError",
                                                     "RemoteDisconnected",
                                                     "BrokenPipeError",
                                                     "ConnectionRefused"))]
    kg.check(not bad, "answers during the burst: %s" % bad[:3])
    d.wait_log(r"worker %d killed by signal 9" % victim, what="the kill")
    d.wait_workers(2, exclude=[victim], timeout=10)
    kg.check(len(created) >= 20, "keys created: %d" % len(created))
    for kid in created:
        adm(d, "GET", "/v1/keys/" + kid, what="a key that got 201")
    listed = list_ids(d)
    kg.check(set(created) <= listed, "keys that got 201 are not listed: %s" %
             sorted(set(created) - listed)[:5])
    # (A key whose 201 was lost with the worker may be listed as well.)
    check_store_subset(d, created, "after the kill")
    stop(d)
    d2 = reopen(d)
    kg.eq(list_ids(d2), listed, "keys listed after a restart")
    check_store_subset(d2, created, "after the kill and a restart")
    no_secret_leak(d, d2)


def test_worker_killed_holding_the_lock():
    """
    A worker killed at the worst moment of a create (lock held, journal line
    written, memory not yet changed; debug builds stop there on request):
    the master repairs the store, replays the line, frees the lock, and
    memory, disk and a restart all agree.
    """
    stall = os.path.join(kg.tempdir(), "stall")
    os.environ["KEYGATE_TEST_STALL_WRITE"] = stall
    try:
        d = start()
    finally:
        del os.environ["KEYGATE_TEST_STALL_WRITE"]
    d.allow_worker_deaths = True
    k1, s1 = mk(d, "before")
    open(stall, "w").close()
    answers = []

    def create():
        try:
            answers.append(kg.admin(d, "POST", "/v1/keys",
                                    {"owner": "stalled",
                                     "rate_limit": BIG_RATE}))
        except (OSError, http.client.HTTPException) as e:
            answers.append(e)
    t = threading.Thread(target=create)
    t.start()
    try:
        m = d.wait_log(r"keygated\[(\d+)\] worker: test: stalled in a key "
                       r"store write", timeout=3)
    except AssertionError:
        t.join(10)
        if answers and getattr(answers[0], "status", None) == 201:
            remember(answers[0].json()["secret"])
            raise kg.Skip("this keygated is not a debug build "
                          "(--enable-debug): no fault injection")
        raise
    victim = int(m.group(1))
    os.kill(victim, signal.SIGKILL)
    t.join(10)
    kg.check(not t.is_alive(), "the stalled create never ended")
    kg.check(isinstance(answers[0], Exception),
             "the killed worker answered: %r" % (answers[0],))
    d.wait_log(r"worker %d died during a key store write; the key store "
               r"was repaired" % victim, what="the repair")
    # The lock is free: the next write goes through at once.
    t0 = time.monotonic()
    k3, s3 = mk(d, "after")
    kg.check(time.monotonic() - t0 < 2, "a create after the repair waited "
             "%.1f s for the lock" % (time.monotonic() - t0))
    # The journal line the dead worker wrote was replayed into memory.
    keys = list_all(d)
    owners = sorted(k["owner"] for k in keys)
    kg.eq(owners, ["after", "before", "stalled"], "owners after the repair")
    for k, s in ((k1, s1), (k3, s3)):
        kg.eq(call(d, "/echo/r", xkey(s)).status, 200,
              "key %s after the repair" % k["id"])
    stop(d)
    d2 = reopen(d)
    kg.eq(sorted(k["id"] for k in list_all(d2)),
          sorted(k["id"] for k in keys), "keys after a restart")
    no_secret_leak(d, d2)


def admin_head(body):
    """The head of an admin POST /v1/keys whose body is sent later."""
    return ("POST /v1/keys HTTP/1.1\r\nHost: x\r\n"
            "Authorization: Bearer %s\r\n"
            "Content-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % (kg.ADMIN_TOKEN, len(body))
            ).encode()


def test_master_killed_orphan_writes():
    """
    The master killed by SIGKILL while its worker is in the middle of two
    admin creates (issue 10, item 15).  The orphaned worker, which may
    finish data-plane requests, refuses the writes (503 master_gone); a
    new keygated started on the same state_dir meanwhile waits for the
    old worker to exit (keys.lock) before it loads the journal; then every
    acknowledged key is there, and restarts still work.  (Before: the
    orphan answered 201, the new master loaded the journal without it and
    its workers appended with the same seqs, so a later start failed with
    "seq 3 goes backwards".)
    """
    d = start(workers=1, shutdown_timeout="30s")
    d.allow_worker_deaths = True
    k1, s1 = mk(d, "before")
    worker = d.wait_workers(1)[0]
    body = json.dumps({"owner": "orphan", "rate_limit": BIG_RATE}).encode()
    conns = []
    for i in range(2):
        c = kg.Conn(d.admin_port)
        c.send(kg.raw_request("GET", "/v1/health"))
        kg.eq(c.read_final().status, 200, "health on connection %d" % i)
        c.send(admin_head(body))
        conns.append(c)
    time.sleep(0.2)		# not needed for correctness: the heads are read
    master = d.master_pid
    os.kill(master, signal.SIGKILL)
    d.proc.wait(5)
    kg.wait_for(lambda: (kg.proc_stat(worker) or (0, 0))[1] != master, 5,
                "the worker to be orphaned")
    kg.check(kg.proc_alive(worker), "the worker is gone already")
    conns[0].send(body)
    r = conns[0].read_final()
    if r.status == 201:
        remember(r.json()["secret"])
    kg.check_refusal(r, 503, "master_gone", "an admin create on the worker "
                     "of a killed master")
    conns[0].close()

    # A new keygated on the same state_dir, while the orphan still runs.
    t = d.kt_template.replace("state_dir {dir}/state",
                              "state_dir " + state_dir(d))
    d2 = kg.Daemon(t, nports=2)
    kg.use(d2)
    d2.write_conf(ports=kg.free_ports(2))
    d2.port = d2.ports[0]
    d2._launch()
    d2.kt_template = t
    d2.wait_log(r"keys\.lock is locked.*waiting", timeout=10,
                what="the new master waiting for keys.lock")
    kg.check(kg.proc_alive(worker), "the orphan exited too early")
    kg.check("started" not in d2.errlog_text(),
             "the new keygated started beside the orphan")
    # The orphan's second write is refused too; then it has nothing left.
    conns[1].send(body)
    r = conns[1].read_final()
    if r.status == 201:
        remember(r.json()["secret"])
    kg.check_refusal(r, 503, "master_gone", "a second orphaned create")
    conns[1].close()
    kg.wait_for(lambda: not kg.proc_alive(worker), 10, "the orphan to exit")
    d2.wait_ready()
    kg.eq(list_ids(d2), {k1["id"]}, "keys in the new keygated")
    kg.eq(call(d2, "/echo/o", xkey(s1)).status, 200, "the key made before")
    k2, s2 = mk(d2, "after")
    stop(d2, workers=1)
    d3 = reopen(d2)
    kg.eq(list_ids(d3), {k1["id"], k2["id"]}, "keys after a restart")
    kg.check("goes backwards" not in d3.errlog_text(), "a journal repair")
    stop(d3, workers=1)
    no_secret_leak(d, d2, d3)


def check_store_subset(d, created, what):
    with kg.Conn(d.port) as c:
        for kid, (k, s) in sorted(created.items()):
            h = kg.echo_headers(call(d, "/echo/k", xkey(s), conn=c),
                             "%s: %s" % (what, kid))
            kg.eq(h.get("x-key-id"), kid, "%s: key id" % what)


# === storage failure (a full file system) ====================================

def fill_fs(path):
    """Write path until the file system is full (bounded)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            block = b"\0" * size
            for _ in range(1 << 16):
                try:
                    if os.write(fd, block) < size:
                        break
                except OSError:
                    break
    finally:
        os.close(fd)


def test_storage_full():
    if os.geteuid() != 0:
        kg.skip("needs root to mount a tmpfs")
    mnt = os.path.join(kg.tempdir(), "state")
    os.mkdir(mnt)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0755",
                        "kgtest", mnt], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=10)
    if p.returncode != 0:
        kg.skip("mount -t tmpfs failed: %s" %
                p.stdout.decode(errors="replace").strip())
    daemons = []
    try:
        storage_full(mnt, daemons)
    finally:
        for d in daemons:
            d.kill()
        if subprocess.run(["umount", mnt], timeout=10).returncode != 0:
            subprocess.run(["umount", "-l", mnt], timeout=10)


def storage_full(mnt, daemons):
    t = template().replace("state_dir {dir}/state", "state_dir " + mnt)
    d = kg.start(t, nports=2)
    d.kt_template = t
    daemons.append(d)
    keys = {}
    for i in range(3):
        k, s = mk(d, "full%d" % i)
        keys[k["id"]] = (k, s)
    filler = os.path.join(mnt, "filler")
    fill_fs(filler)
    # The journal's last page may still hold a line or two: create until
    # the file system refuses (bounded).
    refusal = None
    for i in range(40):
        r = kg.admin(d, "POST", "/v1/keys", {"owner": "while-full",
                                              "name": "n%d" % i})
        if r.status == 201:
            remember(r.json()["secret"])
            keys[r.json()["id"]] = (r.json(), r.json()["secret"])
            continue
        refusal = r
        break
    kg.check(refusal is not None, "40 keys created on a full file system")
    j = kg.check_refusal(refusal, 503, "storage_unavailable",
                         "create on a full file system")
    kg.check("secret" not in j, "a refused create shows a secret")
    kg.eq(list_ids(d), set(keys), "keys listed after the refused create")
    kg.eq(adm(d, "GET", "/v1/health")["keys"], len(keys), "health: keys")
    check_store(d, keys, [], "full file system")
    os.unlink(filler)
    k, s = mk(d, "after-full")
    keys[k["id"]] = (k, s)
    check_store(d, keys, [], "space again")
    stop(d)
    d2 = reopen(d, state=mnt)
    daemons.append(d2)
    check_store(d2, keys, [], "restart after the full file system")
    no_secret_leak(d, d2)


# === damaged state files =====================================================

def read_lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines(True)
    except FileNotFoundError:
        return []


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def journal_with_lines(st):
    """
    keys.journal's lines; if compaction emptied it, put lines rebuilt from
    the snapshot (a put carries the whole record, so they are idempotent).
    """
    lines = read_lines(os.path.join(st, "keys.journal"))
    if len(lines) >= 3:
        return lines
    seq, keys = kg.read_snapshot(os.path.join(st, "keys.snapshot"))
    lines = [json.dumps({"seq": seq + 1 + i, "op": "put", "key": k}) +
             "\n" for i, k in enumerate(keys)]
    with open(os.path.join(st, "keys.journal"), "w") as f:
        f.writelines(lines)
    return lines


def start_fails(d, what):
    """keygated -f on d's config must exit non-zero; returns its stderr."""
    try:
        p = kg.keygated("-f", "-c", d.conf_path, timeout=10)
    except subprocess.TimeoutExpired:
        kg.kill_dir_processes(d.dir)
        raise AssertionError("%s: keygated started (still running after "
                             "10 s)" % what)
    finally:
        kg.kill_dir_processes(d.dir)
    kg.check(p.returncode != 0, "%s: exit status 0 (stderr %r)" %
             (what, p.stderr))
    return p.stdout + p.stderr


def test_journal_damage():
    d = start()
    keys = {}
    for i in range(3):
        k, s = mk(d, "journal%d" % i)
        keys[k["id"]] = (k, s)
    stop(d)
    st = state_dir(d)
    lines = journal_with_lines(st)
    good = json.loads(lines[-1])
    # A torn last line: a put of a key that was never acknowledged.
    torn = dict(good)
    torn["seq"] = good["seq"] + 1
    torn["key"] = dict(good["key"], id="key_TornTornTornTorn",
                       digest="ab" * 32, owner="torn")
    text = json.dumps(torn)
    with open(os.path.join(st, "keys.journal"), "a") as f:
        f.write(text[:len(text) // 2])
    d2 = reopen(d)
    d2.wait_log(r"keys\.journal.*torn|torn.*keys\.journal",
                what="a warning about the torn line")
    check_store(d2, keys, [], "after a torn last line")
    kg.check("key_TornTornTornTorn" not in list_ids(d2),
             "the torn key was loaded")
    stop(d2)

    # A corrupt line in the middle of the journal: the start stops.
    lines = journal_with_lines(st)
    saved = {n: read_bytes(os.path.join(st, n))
             for n in ("keys.journal", "keys.snapshot")}
    bad = list(lines)
    bad[1] = '{"seq":%d,"op":"put","key":{"id":"key_' % \
        json.loads(lines[1])["seq"] + " no longer JSON\n"
    with open(os.path.join(st, "keys.journal"), "w") as f:
        f.writelines(bad)
    out = start_fails(d2, "corrupt middle journal line")
    kg.check(re.search(r"keys\.journal:2:", out),
             "the message does not name keys.journal:2: %r" % out[-800:])

    # A valid snapshot written by hand loads; a damaged one stops the start.
    recs = [json.loads(l)["key"] for l in lines]
    seq = max(json.loads(l)["seq"] for l in lines)
    snap = [json.dumps({"keygate_snapshot": 1, "seq": seq,
                        "keys": len(recs)}) + "\n"]
    snap += [json.dumps(r) + "\n" for r in recs]
    snap += [json.dumps({"end": len(recs)}) + "\n"]

    def write_state(snapshot, journal):
        with open(os.path.join(st, "keys.snapshot"), "wb") as f:
            f.write(snapshot if isinstance(snapshot, bytes) else
                    "".join(snapshot).encode())
        with open(os.path.join(st, "keys.journal"), "wb") as f:
            f.write(journal if isinstance(journal, bytes) else
                    "".join(journal).encode())
    write_state(snap, [])
    d3 = reopen(d2)
    check_store(d3, keys, [], "a snapshot written by hand")
    stop(d3)

    # That start found the JSON format and rewrote the snapshot as binary
    # (the same keys); damage to that one stops the start with the byte
    # offset.
    path = os.path.join(st, "keys.snapshot")
    binary = read_bytes(path)
    kg.check(binary.startswith(kg.SNAPSHOT_MAGIC), "the JSON snapshot was "
             "not rewritten in the binary format: %r" % binary[:40])
    kg.eq(sorted(k["id"] for k in kg.read_snapshot(path)[1]), sorted(keys),
          "ids in the binary snapshot")
    bad = bytearray(binary)
    bad[40 + 12 + 72] ^= 0x10		# the first record's created time
    write_state(bytes(bad), b"")
    out = start_fails(d3, "a bit flipped in the binary snapshot")
    kg.check("keys.snapshot: offset 40: block checksum mismatch" in out,
             "the message does not name the block: %r" % out[-800:])
    write_state(binary[:-30], b"")
    out = start_fails(d3, "a binary snapshot cut short")
    kg.check(re.search(r"keys\.snapshot: offset \d+: .*cut short", out),
             "the message does not say where it is cut: %r" % out[-800:])
    bad = list(snap)
    bad[2] = bad[2][:40] + "\n"
    write_state(bad, [])
    out = start_fails(d3, "corrupt snapshot line 3")
    kg.check(re.search(r"keys\.snapshot:3:", out),
             "the message does not name keys.snapshot:3: %r" % out[-800:])
    write_state(snap[:-1], [])
    out = start_fails(d3, "snapshot without its end line")
    kg.check("keys.snapshot" in out, "the message does not name "
             "keys.snapshot: %r" % out[-800:])
    # Put back as it was: it loads again (nothing was rewritten meanwhile).
    write_state(saved["keys.snapshot"], saved["keys.journal"])
    d4 = reopen(d3)
    check_store(d4, keys, [], "the undamaged files again")
    no_secret_leak(d, d2, d3, d4)


def test_journal_two_writers():
    """
    A journal two processes appended to (seqs going backwards, as a worker
    of a killed master and a new master's workers wrote it) is repaired at
    start, not fatal (issue 10, item 15): every line is kept, the log says
    what was renumbered, the original is kept as
    keys.journal.damaged-TIME, and the next start finds nothing to repair.
    """
    d = start()
    keys = {}
    for i in range(3):
        k, s = mk(d, "writer%d" % i)
        keys[k["id"]] = (k, s)
    stop(d)
    st = state_dir(d)
    lines = journal_with_lines(st)
    first = json.loads(lines[0])
    extra = []
    for i, digest in enumerate(("ab" * 32, "cd" * 32)):
        line = dict(first)
        line["seq"] = first["seq"] + i		# back to the first seq
        line["key"] = dict(first["key"], id="key_SecondWriter%04d" % i,
                           digest=digest, owner="second")
        extra.append(json.dumps(line) + "\n")
    with open(os.path.join(st, "keys.journal"), "a") as f:
        f.writelines(extra)
    original = "".join(read_lines(os.path.join(st, "keys.journal")))
    d2 = reopen(d)
    d2.wait_log(r"keys\.journal:%d: seq %d goes backwards" %
                (len(lines) + 1, first["seq"]), what="the repair warning")
    d2.wait_log(r"keys\.journal:%d: seq %d renumbered %d" %
                (len(lines) + 2, first["seq"] + 1,
                 json.loads(lines[-1])["seq"] + 2), what="a renumbering")
    for kid, (k, sec) in keys.items():
        kg.eq(call(d2, "/echo/r", xkey(sec)).status, 200,
              "key %s after the repair" % kid)
    ids = list_ids(d2)
    kg.eq(ids, set(keys) | {"key_SecondWriter0000", "key_SecondWriter0001"},
          "keys after the repair")
    copies = [n for n in os.listdir(st)
              if n.startswith("keys.journal.damaged-")]
    kg.eq(len(copies), 1, "copies of the damaged journal")
    with open(os.path.join(st, copies[0])) as f:
        kg.eq(f.read(), original, "the copy of the damaged journal")
    stop(d2)
    d3 = reopen(d2)
    kg.eq(list_ids(d3), ids, "keys after another restart")
    kg.check("goes backwards" not in d3.errlog_text(), "repaired twice")
    no_secret_leak(d, d2, d3)


# === the admin API over HTTP =================================================

def admin_raw(d, raw):
    with kg.Conn(d.admin_port) as c:
        c.send(raw)
        return c.read_final()


def admin_from(d, src, method, path, token=kg.ADMIN_TOKEN, body=None):
    """An admin request from the loopback address src (e.g. 127.0.0.2)."""
    h = {"Authorization": "Bearer " + token} if token is not None else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    c = http.client.HTTPConnection("127.0.0.1", d.admin_port,
                                   timeout=kg.DEFAULT_TIMEOUT,
                                   source_address=(src, 0))
    try:
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        return kg.Response("HTTP/1.%d" % (r.version - 10), r.status,
                           r.reason, r.getheaders(), r.read())
    finally:
        c.close()


def test_admin_http():
    d = start()
    # Each kind of wrong token from its own address: 4 wrong tokens in a
    # row cost nothing, more make the address wait (test_admin_throttle).
    for src, token, what in (
            ("127.0.0.11", None, "no token"),
            ("127.0.0.12", "wrong-token", "wrong token"),
            ("127.0.0.13", kg.ADMIN_TOKEN + "x", "token plus one character")):
        for m, p in (("GET", "/v1/keys"), ("POST", "/v1/keys"),
                     ("GET", "/v1/openapi.json"),
                     ("GET", "/v1/keys/key_0000000000000000")):
            r = admin_from(d, src, m, p, token=token,
                           body={"owner": "x"} if m == "POST" else None)
            kg.check_refusal(r, 401, "unauthorized", "%s %s, %s" %
                             (m, p, what))
            ch = r.header("www-authenticate", "")
            kg.check(ch.startswith("Bearer"), "WWW-Authenticate %r" % ch)
            kg.check(kg.ADMIN_TOKEN.encode() not in r.body, "token echoed")
    r = kg.admin(d, "GET", "/v1/keys", headers={
        "Authorization": "Basic " + base64.b64encode(
            (":" + kg.ADMIN_TOKEN).encode()).decode()}, token=None)
    kg.check_refusal(r, 401, "unauthorized", "the token in Basic")
    kg.eq(list_ids(d), set(), "keys after refused creates")

    h = adm(d, "GET", "/v1/health", token=None, what="health without token")
    kg.eq(h.get("status"), "ok", "health status")
    kg.eq(h.get("keys"), 0, "health keys")
    kg.eq(h.get("max_keys"), 1000000, "health max_keys")
    kg.check(isinstance(h.get("version"), str), "health version %r" % h)

    r, _ = adm_refusal(d, "DELETE", "/v1/keys", None, 405,
                       "method_not_allowed", "DELETE /v1/keys")
    allow = [a.strip() for a in r.header("allow", "").split(",")]
    kg.check("GET" in allow and "POST" in allow, "Allow %r" % allow)
    k, s = mk(d, "admin-http")
    r, _ = adm_refusal(d, "PUT", "/v1/keys/" + k["id"], {"name": "x"}, 405,
                       "method_not_allowed", "PUT /v1/keys/{id}")
    allow = [a.strip() for a in r.header("allow", "").split(",")]
    kg.eq(sorted(allow), ["DELETE", "GET", "PATCH"], "Allow of /v1/keys/{id}")
    adm_refusal(d, "GET", "/v1/nothing", None, 404, "not_found",
                "unknown path")
    adm_refusal(d, "GET", "/v1/keys/key_0000000000000000", None, 404,
                "key_not_found", "unknown key")
    adm_refusal(d, "GET", "/v1/keys/not-an-id", None, 404, "key_not_found",
                "malformed key id")

    # Bad JSON: 400 with the position.
    _, j = adm_refusal(d, "POST", "/v1/keys", b'{"owner": "a",\n  "name": }',
                       400, "bad_json", "bad JSON")
    kg.check(re.search(r"line 2, column \d+", j["message"]),
             "bad JSON message without line/column: %r" % j["message"])
    adm_refusal(d, "POST", "/v1/keys", b'["owner"]', 400, "bad_json",
                "a JSON array")
    _, j = adm_refusal(d, "POST", "/v1/keys", {"owner": "a", "colour": 1},
                       422, "invalid_field", "unknown field")
    kg.eq(j.get("field"), "colour", "422 field")
    _, j = adm_refusal(d, "PATCH", "/v1/keys/" + k["id"], {"owner": "b"},
                       422, "invalid_field", "PATCH owner")
    kg.eq(j.get("field"), "owner", "422 field of PATCH owner")

    # Bodies over 64 KiB: 413, with Content-Length or chunked.
    big = json.dumps({"owner": "a", "name": "x" * (70 * 1024)}).encode()
    r = kg.admin(d, "POST", "/v1/keys", big)
    kg.check_refusal(r, 413, "body_too_large", "70 KiB admin body")
    auth = "Authorization: Bearer %s\r\n" % kg.ADMIN_TOKEN
    chunks = b"".join(b"%x\r\n%s\r\n" % (8192, b"x" * 8192)
                      for _ in range(10)) + b"0\r\n\r\n"
    r = admin_raw(d, ("POST /v1/keys HTTP/1.1\r\nHost: x\r\n%s"
                      "Content-Type: application/json\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n" % auth).encode() +
                  chunks)
    kg.check_refusal(r, 413, "body_too_large", "80 KiB chunked admin body")
    kg.eq(list_ids(d), {k["id"]}, "keys after refused bodies")

    # A chunked body is accepted.
    body = json.dumps({"owner": "chunked", "name": "in pieces",
                       "rate_limit": BIG_RATE}).encode()
    parts = [body[:5], body[5:17], body[17:]]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + \
        b"0\r\n\r\n"
    r = admin_raw(d, ("POST /v1/keys HTTP/1.1\r\nHost: x\r\n%s"
                      "Content-Type: application/json\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n" % auth).encode() +
                  chunked)
    kg.eq(r.status, 201, "chunked create (body %r)" % r.body[:300])
    j = r.json()
    remember(j["secret"])
    kg.eq((j["owner"], j["name"]), ("chunked", "in pieces"), "chunked create")
    h = kg.echo_headers(call(d, "/echo/c", xkey(j["secret"])), "chunked key")
    kg.eq(h.get("x-consumer-id"), "chunked", "owner of the chunked key")
    # The admin port is not the gateway: a key does not open it.
    r = kg.admin(d, "GET", "/v1/keys", token=None, headers={"X-API-KEY": s})
    kg.check_refusal(r, 401, "unauthorized", "an API key on the admin port")
    no_secret_leak(d)


def throttle_logs(d, addr):
    """Error log lines about failed admin authentications from addr."""
    pat = re.compile(r"admin: (failed authentication from|refused) %s[: ]" %
                     re.escape(addr))
    return [l for l in d.errlog_text().splitlines() if pat.search(l)]


def test_admin_throttle():
    """
    Wrong admin tokens slow their address down: after 4 free failures
    the 5th earns a 1 s wait, then 2 s, ... 60 s; while it waits the
    address gets 429 with Retry-After and its token is not even looked at,
    in every worker; other addresses are not affected; a right token after
    the wait works and ends the streak.  At most one log line per second
    per address, with the address and never the token.
    """
    d = start()
    wrong = "wrong-" + pysecrets.token_hex(16)
    t0 = time.monotonic()
    answers = [admin_from(d, "127.0.0.21", "GET", "/v1/keys", token=wrong)
               for _ in range(20)]
    elapsed = time.monotonic() - t0
    statuses = [r.status for r in answers]
    kg.eq(statuses[:5], [401] * 5, "the first five wrong tokens")
    n401 = statuses.count(401)
    n429 = statuses.count(429)
    kg.eq(n401 + n429, 20, "statuses of 20 wrong tokens: %r" % statuses)
    kg.check(n429 >= 1, "no 429 among 20 wrong tokens: %r" % statuses)
    if elapsed < 0.9:		# all within the first 1 s wait
        kg.eq(n401, 5, "401s within the first wait: %r" % statuses)
    for r in answers:
        if r.status == 429:
            kg.check_refusal(r, 429, "too_many_attempts", "throttled")
            ra = r.header("retry-after", "")
            kg.check(re.match(r"^[1-9][0-9]*$", ra) and int(ra) <= 60,
                     "Retry-After %r" % ra)
            kg.eq(r.header("www-authenticate"), None,
                  "WWW-Authenticate on a 429")
        kg.check(wrong.encode() not in r.body, "the token echoed")

    # While it waits, even the right token is refused from that address,
    # but another address is served.
    r = admin_from(d, "127.0.0.21", "GET", "/v1/keys")
    if r.status == 429:
        kg.check(int(r.header("retry-after", "0")) >= 1, "Retry-After")
    j = json.loads(admin_from(d, "127.0.0.22", "GET", "/v1/keys").body)
    kg.check("keys" in j, "another address with the right token: %r" % j)
    # After the wait the right token works (bounded: the longest wait).
    deadline = time.monotonic() + 70
    while True:
        r = admin_from(d, "127.0.0.21", "GET", "/v1/keys")
        if r.status != 429:
            break
        kg.check(time.monotonic() < deadline, "still 429 after 70 s")
        time.sleep(min(0.2 * int(r.header("retry-after", "1")), 1.0))
    kg.eq(r.status, 200, "the right token after the wait")
    # ... and ended the streak: four wrong tokens are free again.
    for i in range(4):
        r = admin_from(d, "127.0.0.21", "GET", "/v1/keys", token=wrong)
        kg.check_refusal(r, 401, "unauthorized", "wrong token %d after a "
                         "success" % (i + 1))
    kg.eq(admin_from(d, "127.0.0.21", "GET", "/v1/keys").status, 200,
          "the right token after four wrong ones")

    # A request without Authorization is not a guess: not counted.
    for _ in range(8):
        kg.check_refusal(admin_from(d, "127.0.0.23", "GET", "/v1/keys",
                                    token=None), 401, "unauthorized",
                         "no Authorization")
    kg.eq(admin_from(d, "127.0.0.23", "GET", "/v1/keys").status, 200,
          "the right token after requests without one")

    # Logged: bounded (one line per second per address), with the address
    # and the reason, never the token.
    span = time.monotonic() - t0
    lines = kg.wait_for(lambda: throttle_logs(d, "127.0.0.21") or None, 5,
                        "a log line about 127.0.0.21")
    lines = throttle_logs(d, "127.0.0.21")
    kg.check(len(lines) <= span + 3, "%d log lines in %.1f s: %r" %
             (len(lines), span, lines[:10]))
    kg.check(any("wrong token" in l for l in lines),
             "no reason in the log: %r" % lines)
    kg.check(wrong not in d.errlog_text(), "the wrong token is logged")
    kg.eq(throttle_logs(d, "127.0.0.23"), [], "log lines about requests "
          "without a token")
    no_secret_leak(d)


def test_max_keys():
    d = start(max_keys=5)
    made = [mk(d, "full%d" % i)[0]["id"] for i in range(5)]
    _, j = adm_refusal(d, "POST", "/v1/keys", {"owner": "sixth"}, 507,
                       "key_store_full", "the 6th key")
    kg.check("5" in j["message"] and "max_keys" in j["message"],
             "507 message %r" % j["message"])
    kg.eq(list_ids(d), set(made), "keys after the 507")
    h = adm(d, "GET", "/v1/health")
    kg.eq((h["keys"], h["max_keys"]), (5, 5), "health keys/max_keys")
    adm(d, "DELETE", "/v1/keys/" + made[0], status=204)
    k, s = mk(d, "sixth")
    kg.eq(list_ids(d), set(made[1:]) | {k["id"]}, "keys after delete+create")
    h = kg.echo_headers(call(d, "/echo/x", xkey(s)), "the key made after a 507")
    kg.eq(h.get("x-key-id"), k["id"], "key id")
    adm_refusal(d, "POST", "/v1/keys", {"owner": "seventh"}, 507,
                "key_store_full", "full again")
    no_secret_leak(d)


TESTS = [
    test_lifecycle,
    test_basic_and_app_key_forms,
    test_refusal_codes,
    test_anonymous_fallback,
    test_verify_path_with_keys,
    test_access_log_key_ids,
    test_restart_keeps_every_key,
    test_sighup_keeps_keys,
    test_sighup_state_dir_kept,
    test_usage_counted_and_kept,
    test_worker_killed_during_creates,
    test_worker_killed_holding_the_lock,
    test_master_killed_orphan_writes,
    test_storage_full,
    test_journal_damage,
    test_journal_two_writers,
    test_admin_http,
    test_admin_throttle,
    test_max_keys,
]


if __name__ == "__main__":
    if len(sys.argv) > 1:		# run only the tests named
        names = sys.argv[1:]
        TESTS = [t for t in TESTS if t.__name__ in names]
    kg.run(TESTS)
