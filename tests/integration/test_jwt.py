"""
JWT bearer tokens end to end (issue 11): the real keygated with
jwt_provider lines pointing at idp.py (a local HTTPS OpenID provider with
a test CA, serving Entra-style discovery and JWKS and counting fetches),
tokens signed by PyJWT, requests through the gateway to the built-in echo
upstream (which shows the identity headers it was given).

What is checked: the identity forwarded (sub or the identity= claim,
X-Auth-Scheme, X-Scopes from scp and roles, headers= mappings, no
Authorization); every refusal (code, status, RFC 6750 WWW-Authenticate,
JSON body that never repeats the token); tenants; auth=jwt:NAME against
auth=jwt; jwt:entra,app-key both ways; key rotation with zero 401s and
exactly one early re-fetch; cached tokens dropped when their key leaves
the set; a request held for a re-fetch does not stall its worker; the IdP
down at start (503, then keys) and a
restart on the cached JWKS while it is down (not when the provider's key
source changed); a JWKS file; algorithms=; per-identity rate limits; a
reload changing the audience; a reload changing jwks= (old keys dropped at
once: 503 until the new source has them); the access log;
POST /v1/verify and keygatectl verify; keygated -t on bad jwt_provider
lines.

PyJWT and cryptography are Debian packages (python3-jwt,
python3-cryptography) that only /usr/bin/python3 sees; when the python
running this file lacks them it runs itself again with /usr/bin/python3
(or $KEYGATE_JWT_PYTHON), and if none has them every test is skipped with
the reason.
"""

import calendar
import json
import threading
import os
import re
import signal
import subprocess
import sys
import time
import uuid


import kgtest as kg				# noqa: E402

JWT_MISSING = kg.python_with(("jwt", "cryptography"), "KEYGATE_JWT_PYTHON",
                             "python3-jwt and python3-cryptography")

if JWT_MISSING is None:
    import idp as I				# noqa: E402

AUD = "api://salestim"
ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
        "ES384")				# the default algorithms=
POLICY = "20;w=1, 200;w=10, 1000;w=60"		# the default rate_limit
ALL_TOKENS = []		# every token sent to a daemon (never to be logged)


def need_jwt():
    if JWT_MISSING is not None:
        kg.skip(JWT_MISSING)


# --- the provider and the configuration --------------------------------------

_idp = None


def shared_idp():
    """One IdP for the tests that only read its keys (closed at exit)."""
    global _idp
    need_jwt()
    if _idp is None:
        _idp = I.IdP(dir=kg.tempdir())
        _idp.add_key(I.Key("o1"), realm="other")
        _idp.add_key(I.Key("e1", "ES256"))
        # One key per algorithm; the RSA ones share a key pair (key
        # generation is slow), each under a kid of its own.
        rsa = I.Key("alg-RS256")
        for alg in ALGS:
            _idp.add_key(I.Key("alg-" + alg, alg, like=rsa if alg in
                               I.RSA_ALGS else None))
    return _idp


def _close_shared_idp():
    if _idp is not None:
        _idp.close()


def entra_line(idp, *opts, name="entra", tenants="any"):
    return ("jwt_provider %s issuer=%s audience=%s tenants=%s ca=%s %s" %
            (name, idp.issuer("{tenantid}"), AUD, tenants, idp.ca_path,
             " ".join(opts))).rstrip()


def other_line(idp):
    return ("jwt_provider other issuer=%s audience=api://other ca=%s jwks=%s"
            % (idp.issuer("other"), idp.ca_path, idp.jwks_url("other")))


ROUTES = (
    "route GET,HEAD ^/store(/|$) auth=anonymous",
    "route * ^/apps(/|$) auth=jwt:entra scope=Apps.Read",
    "route * ^/catalog(/|$) auth=jwt:entra,app-key",
    "route * ^/any(/|$) auth=jwt",
)


def template(idp, *lines, workers=2, **settings):
    """The issue's configuration (lines replace its providers)."""
    providers = lines or (entra_line(idp, "headers=tid:X-Tenant-Id"),
                          other_line(idp))
    settings.setdefault("max_header_size", "64k")
    return kg.config(*(list(providers) + list(ROUTES)), workers=workers,
                     admin="{port2}", **settings)


def start(idp, *lines, **settings):
    t = template(idp, *lines, **settings)
    d = kg.start(t, nports=2)
    d.jt_template = t
    return d


def main_daemon():
    """The shared daemon of the issue's configuration, with its keys."""
    idp = shared_idp()
    d = kg.shared("jwt-main", template(idp), nports=2)
    if not getattr(d, "jt_keys", False):
        wait_keys(d, idp.token()[0], "/apps")
        wait_keys(d, idp.token(key=idp.keys("other")[0], aud="api://other",
                               iss=idp.issuer("other"))[0], "/any")
        d.jt_keys = True
    return d, idp


def wait_keys(d, tok, path, timeout=10):
    """
    Until the provider of tok has its first keys: the master fetches them
    in the background after the start, and until then a request is
    answered 503 auth_unavailable.
    """
    kg.wait_for(lambda: call(d, path, bearer(tok)).status != 503, timeout,
                "the first keys (no more 503 on %s)" % path, interval=0.1)


def state_dir(d):
    with open(d.conf_path) as f:
        m = re.search(r"^state_dir\s+(\S+)\s*$", f.read(), re.M)
    kg.check(m is not None, "no state_dir in %s" % d.conf_path)
    return m.group(1)


# --- requests ----------------------------------------------------------------

def bearer(tok, scheme="Bearer"):
    ALL_TOKENS.append(tok)
    return [("Authorization", "%s %s" % (scheme, tok))]


def call(d, path, headers=(), method="GET"):
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request(method, path, headers=list(headers)))
        return c.read_final(method == "HEAD")



def check_jwt_identity(r, c, what, identity="sub", scopes=("Apps.Read",
                       "Apps.Write", "Admin"), tenant_header=True):
    """r is an echo of a request made with a token of claims c."""
    h = kg.echo_headers(r, what)
    kg.eq(h.get("x-consumer-id"), c[identity], "%s: X-Consumer-Id" % what)
    kg.eq(h.get("x-auth-scheme"), "jwt", "%s: X-Auth-Scheme" % what)
    got = (h.get("x-scopes") or "").split()
    for s in scopes:
        kg.check(s in got, "%s: X-Scopes %r lacks %s" % (what,
                                                         h.get("x-scopes"), s))
    if tenant_header:
        kg.eq(h.get("x-tenant-id"), c["tid"], "%s: X-Tenant-Id" % what)
    kg.check("authorization" not in h, "%s: Authorization was forwarded: %r"
             % (what, h.get("authorization")))
    return h


def no_token_in(data, tokens, what):
    """None of the tokens' segments (nor the token) is in data (bytes)."""
    for t in tokens:
        # Shorter strings ("abc") turn up by chance (request ids are hex).
        for seg in [s for s in [t] + t.split(".") if len(s) >= 16]:
            kg.check(seg.encode() not in data, "%s holds (part of) a token"
                     " (%d bytes, %r...)" % (what, len(seg), seg[:6]))


def refused(r, status, code, what, tok=None, challenge=None):
    """
    A JSON refusal that repeats no part of the token; for a 401/403 of a
    token, WWW-Authenticate "Bearer ... error=challenge".
    """
    j = kg.check_refusal(r, status, code, what)
    if tok is not None:
        no_token_in(r.body, [tok], "%s: the refusal" % what)
    if challenge is not None:
        ch = r.header("www-authenticate", "")
        kg.check(ch.startswith("Bearer"), "%s: WWW-Authenticate %r does not "
                 "start with Bearer" % (what, ch))
        kg.check('error="%s"' % challenge in ch, "%s: WWW-Authenticate %r "
                 "lacks error=\"%s\"" % (what, ch, challenge))
    return j


def invalid(d, path, tok, what, code="invalid_credentials"):
    r = call(d, path, bearer(tok))
    return refused(r, 401, code, what, tok, "invalid_token")


def rl_headers(r, what, policy=POLICY):
    kg.eq(r.header("ratelimit-policy"), policy, "%s: RateLimit-Policy" % what)
    for n in ("limit", "remaining", "reset"):
        v = r.header("ratelimit-" + n)
        kg.check(v is not None and v.isdigit(), "%s: RateLimit-%s %r" %
                 (what, n.capitalize(), v))


def guid():
    return str(uuid.uuid4())


# --- the provider itself -----------------------------------------------------

def test_idp_selftest():
    """idp.py: discovery and JWKS over HTTPS with its CA; PyJWT verifies."""
    need_jwt()
    I.selftest()


def conf_file(tmpl):
    """
    tmpl filled in a new directory, with the admin token file it names:
    (path, number of its last line), for keygated -t.
    """
    dir = kg.tempdir()
    text = kg.fill(tmpl, dir, kg.free_ports(2))
    path = os.path.join(dir, "jwt.conf")
    with open(path, "w") as f:
        f.write(text)
    token = kg.fill(kg.ADMIN_TOKEN_FILE, dir, [])
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, (kg.ADMIN_TOKEN + "\n").encode())
    os.close(fd)
    return path, text.count("\n")


def test_config_check():
    """keygated -t accepts the issue's configuration."""
    idp = shared_idp()
    path, lineno = conf_file(template(idp))
    p = kg.keygated("-t", "-c", path)
    kg.eq(p.returncode, 0, "keygated -t (stderr %r)" % p.stderr)
    kg.check("configuration is valid" in p.stdout, "-t output %r" % p.stdout)


# --- identity and refusals on the shared daemon ------------------------------

def test_good_token_identity():
    d, idp = main_daemon()
    kg.check_echo(call(d, "/store/x"), "GET", "/store/x",
                  what="anonymous /store")
    tok, c = idp.token()
    # Identity headers a client sends are replaced, not passed on.
    r = call(d, "/apps/list", bearer(tok) + [("X-Consumer-Id", "evil"),
                                            ("X-Auth-Scheme", "api-key")])
    kg.check_echo(r, "GET", "/apps/list", what="good token")
    check_jwt_identity(r, c, "good token")
    rl_headers(r, "good token")
    # "bearer" in lower case (as the seed's clients send it), an ES256 key.
    tok2, c2 = idp.token(key=idp.keys()[1])
    r = call(d, "/apps", bearer(tok2, "bearer"))
    check_jwt_identity(r, c2, "ES256 token, 'bearer'")
    # The same token again (the verified-token cache) gives the same.
    check_jwt_identity(call(d, "/apps/again", bearer(tok)), c, "reused token")
    # aud as an array meeting the audience; roles alone carry the scope.
    tok3, c3 = idp.token(aud=["api://x", AUD], scp=None, roles=["Apps.Read"])
    check_jwt_identity(call(d, "/apps", bearer(tok3)), c3, "aud array, roles",
                       scopes=("Apps.Read",))
    # Every default algorithm, each with a key of its own (no "alg" in the
    # JWKS: the type says which fit).
    for alg in ALGS:
        key = [k for k in idp.keys() if k.kid == "alg-" + alg][0]
        t, ca = idp.token(key=key)
        check_jwt_identity(call(d, "/apps", bearer(t)), ca, alg)
    # Just under the 8 KiB cap is a token like any other.
    tok4, c4 = sized_token(idp, 8192)
    check_jwt_identity(call(d, "/apps", bearer(tok4)), c4, "8 KiB token")


def sized_token(idp, size):
    """A valid token of size bytes (or one less: base64url has gaps)."""
    c = idp.claims(pad="")
    key = idp.keys()[0]
    start = (size - len(key.sign(c))) * 3 // 4 - 8
    kg.check(start > 0, "a token of %d bytes is too small to make" % size)
    best = None
    for n in range(start, start + 24):
        c["pad"] = "p" * n
        t = key.sign(c)
        if len(t) == size or (len(t) == size - 1 and best is None):
            best = (t, dict(c))
        if len(t) >= size:
            break
    kg.check(best is not None, "no token of %d bytes made" % size)
    return best


def test_insufficient_scope():
    d, idp = main_daemon()
    tok, c = idp.token(scp="Apps.Write", roles=[])
    r = call(d, "/apps", bearer(tok))
    j = refused(r, 403, "insufficient_scope", "token without Apps.Read", tok,
                "insufficient_scope")
    kg.check("Apps.Read" in j["message"], "message %r does not name the "
             "missing scope" % j["message"])
    # The scope= of /apps is all /catalog lacks: the token works there.
    check_jwt_identity(call(d, "/catalog", bearer(tok)), c, "no scope needed",
                       scopes=("Apps.Write",))


def test_refusals():
    d, idp = main_daemon()
    k1 = idp.keys()[0]
    now = int(time.time())
    r = call(d, "/apps")
    refused(r, 401, "missing_credentials", "no Authorization")
    ch = r.header("www-authenticate", "")
    kg.check("Bearer" in ch, "WWW-Authenticate %r does not name Bearer" % ch)

    tok, c = idp.token(exp=now - 120)
    invalid(d, "/apps", tok, "expired", "expired_credentials")
    # Within the leeway (60 s) a token just past exp still works.
    tok, c = idp.token(exp=now - 20)
    check_jwt_identity(call(d, "/apps", bearer(tok)), c, "exp within leeway")
    tok, c = idp.token(nbf=now + 600)
    invalid(d, "/apps", tok, "nbf in the future")
    tok, c = idp.token(iat=now + 600)
    invalid(d, "/apps", tok, "iat in the future")
    tok, c = idp.token(exp=None)
    invalid(d, "/apps", tok, "no exp")
    tok, c = idp.token(aud="api://other")
    invalid(d, "/apps", tok, "wrong aud")
    t = guid()
    tok, c = idp.token(tenant=t, iss=idp.issuer(guid()))
    invalid(d, "/apps", tok, "iss of another tenant than tid")
    tok, c = idp.token(tenant=t, iss="https://login.microsoftonline.com/%s/"
                       "v2.0" % t)
    invalid(d, "/apps", tok, "iss of another host")
    tok, c = idp.token(tenant="not-a-guid")
    invalid(d, "/apps", tok, "tid not a GUID")
    tok, c = idp.token()
    invalid(d, "/apps", I.tamper(tok), "bad signature")
    # Another key under k1's kid, and the kid of the ES256 key on an RS256
    # token (the key type does not fit the alg).
    tok, c = idp.token(key=I.Key("k1"))
    invalid(d, "/apps", tok, "signed by a key the IdP does not publish")
    tok, c = idp.token(key=k1, headers={"kid": "e1"})
    invalid(d, "/apps", tok, "RS256 token naming an EC key")
    tok, c = idp.token(key=I.Key("e1", "ES384"))
    invalid(d, "/apps", tok, "ES384 token naming a P-256 key")
    # alg none, HS256 with the RSA public key as the secret, ES512, crit.
    claims = idp.claims()
    invalid(d, "/apps", I.forge({"alg": "none", "typ": "JWT"}, claims),
            "alg none")
    invalid(d, "/apps", I.forge({"alg": "none", "kid": "k1"}, claims,
                                b"x" * 256), "alg none with a signature")
    invalid(d, "/apps", I.forge_hs256({"alg": "HS256", "kid": "k1"}, claims,
                                      k1.public_pem()), "HS256 (RSA PEM)")
    invalid(d, "/apps", I.forge({"alg": "ES512", "kid": "e1"}, claims,
                                b"s" * 132), "ES512")
    tok = k1.sign(claims, headers={"crit": ["exp"]})
    invalid(d, "/apps", tok, "crit")
    # jku / x5u / jwk pointing at keys that sign it: never followed.
    bad = I.Key("evil")
    idp.add_key(bad, realm="attacker")
    jku = idp.base + "/attacker/jwks.json"
    for h in ({"jku": jku}, {"x5u": jku}, {"jwk": bad.jwk()}):
        tok = bad.sign(claims, headers=dict(h, kid="k1"))
        invalid(d, "/apps", tok, "header %s" % list(h))
    time.sleep(0.2)
    kg.eq(idp.count("jwks", "attacker"), 0, "fetches of a token's jku")
    # Duplicate member names, correctly signed (the last would say another
    # subject); and a duplicate in the header.
    body = '{"iss":"%s","aud":"%s","exp":%d,"sub":"a","sub":"b","tid":"%s"}' \
        % (claims["iss"], AUD, now + 600, claims["tid"])
    invalid(d, "/apps", k1.sign_raw(body.encode()), "duplicate sub")
    invalid(d, "/apps", k1.sign_raw(json.dumps(claims).encode(),
                                    header='{"alg":"RS256","kid":"k1",'
                                    '"kid":"e1"}'), "duplicate kid")

    mal = "malformed_credentials"
    for t, what in (("abc", "not a JWT"), ("a.b", "two segments"),
                    ("a.b.c.d", "four segments"),
                    (tok.replace(".", ".*", 1), "not base64url"),
                    (I.b64u("[1]") + "." + I.b64u("{}") + ".", "header an "
                     "array")):
        refused(call(d, "/apps", bearer(t)), 401, mal, what, t)
    big, _ = sized_token(idp, 9 * 1024)
    refused(call(d, "/apps", bearer(big)), 401, mal, "9 KiB token", big)
    no_token_leak(d)


def test_tenants():
    idp = shared_idp()
    g1, g2 = guid(), guid()
    d = start(idp, entra_line(idp, name="entra", tenants=g1),
              other_line(idp))
    tok, c = idp.token(tenant=g1)
    wait_keys(d, tok, "/apps")
    kg.check(idp.count("discovery", g1) >= 1, "no discovery under the "
             "tenant of tenants= (%s)" % idp.paths)
    check_jwt_identity(call(d, "/apps", bearer(tok)), c, "listed tenant",
                       tenant_header=False)
    tok, c = idp.token(tenant=g2)
    invalid(d, "/apps", tok, "tenant not in tenants=")


def test_identity_claim():
    """identity=oid, scope_claims=roles, headers= of two claims."""
    idp = shared_idp()
    d = start(idp, entra_line(idp, "identity=oid", "scope_claims=roles",
                              "headers=tid:X-Tenant-Id,oid:X-Object-Id"))
    tok, c = idp.token(roles=["Apps.Read", "Admin"], scp="Apps.Write")
    wait_keys(d, idp.token()[0], "/apps")
    r = call(d, "/apps", bearer(tok))
    h = check_jwt_identity(r, c, "identity=oid", identity="oid",
                           scopes=("Apps.Read", "Admin"))
    kg.check("Apps.Write" not in h.get("x-scopes", ""), "scp used with "
             "scope_claims=roles: %r" % h.get("x-scopes"))
    kg.eq(h.get("x-object-id"), c["oid"], "X-Object-Id")
    tok, c = idp.token(scp="Apps.Read", roles=[])
    refused(call(d, "/apps", bearer(tok)), 403, "insufficient_scope",
            "scope only in scp with scope_claims=roles", tok,
            "insufficient_scope")
    tok, c = idp.token(oid=None)
    invalid(d, "/apps", tok, "no oid claim")


def test_catalog_jwt_or_app_key():
    d, idp = main_daemon()
    k, secret = kg.create_key(d, "catalog-owner", app_id="app.catalog",
                              scopes=["catalog:read"])
    appkey = [("X-APP-ID", "app.catalog"), ("X-API-KEY", secret)]
    tok, c = idp.token()
    check_jwt_identity(call(d, "/catalog/1", bearer(tok)), c,
                       "JWT on /catalog")
    h = kg.echo_headers(call(d, "/catalog/1", appkey), "app key on /catalog")
    kg.eq((h.get("x-auth-scheme"), h.get("x-consumer-id"), h.get("x-app-id"),
           h.get("x-key-id")), ("app-key", "catalog-owner", "app.catalog",
                                k["id"]), "app-key identity")
    kg.check("x-api-key" not in h, "X-API-KEY was forwarded")
    # Both: jwt is listed first and is present, so it decides.
    check_jwt_identity(call(d, "/catalog/2", bearer(tok) + appkey), c,
                       "JWT and app key")
    r = call(d, "/catalog/3", bearer(I.tamper(tok)) + appkey)
    refused(r, 401, "invalid_credentials", "bad JWT and a good app key",
            tok, "invalid_token")
    kg.check(secret.encode() not in r.body, "the secret in a refusal")
    r = call(d, "/catalog/4")
    refused(r, 401, "missing_credentials", "nothing on /catalog")
    ch = r.header("www-authenticate", "")
    kg.check("Bearer" in ch and "X-APP-ID" in ch, "WWW-Authenticate %r of "
             "jwt:entra,app-key" % ch)


def test_other_provider():
    d, idp = main_daemon()
    o1 = idp.keys("other")[0]
    tok, c = idp.token(key=o1, iss=idp.issuer("other"), aud="api://other")
    invalid(d, "/apps", tok, "token of provider other on jwt:entra")
    r = call(d, "/any/x", bearer(tok))
    check_jwt_identity(r, c, "token of other on auth=jwt",
                       tenant_header=False)
    # other maps no header: no X-Tenant-Id.
    kg.check("x-tenant-id" not in kg.echo_headers(r, "other"),
             "X-Tenant-Id from a provider without headers=")
    tok, c = idp.token()
    check_jwt_identity(call(d, "/any/y", bearer(tok)), c,
                       "token of entra on auth=jwt")
    # other's own audience only.
    tok, c = idp.token(key=o1, iss=idp.issuer("other"), aud=AUD)
    invalid(d, "/any", tok, "other's token for entra's audience")


def test_access_log():
    d, idp = main_daemon()
    tok, c = idp.token()
    r = call(d, "/apps/logged", bearer(tok))
    kg.eq(r.status, 200, "status (body %r)" % r.body[:200])
    e = d.access_by_id(r.header("x-request-id"))
    kg.eq(e.get("scheme"), "jwt", "access log scheme")
    kg.check(c["sub"] in [v for v in e.values() if isinstance(v, str)],
             "the identity %r is not in the access log entry %r" %
             (c["sub"], e))
    kg.eq(e.get("key_id"), None, "key_id of a JWT request")
    r = call(d, "/apps/refused", bearer(I.tamper(tok)))
    e = d.access_by_id(r.header("x-request-id"))
    kg.eq(e.get("status"), 401, "status logged for a bad token")
    no_token_leak(d)


def no_token_leak(d):
    """No token sent so far is in the access log, error log or state_dir."""
    blobs = []
    for p in (d.access_path, d.errlog_path, d.stderr_path):
        try:
            with open(p, "rb") as f:
                blobs.append((p, f.read()))
        except OSError:
            pass
    sd = state_dir(d)
    for root, dirs, files in os.walk(sd):
        for n in files:
            try:
                with open(os.path.join(root, n), "rb") as f:
                    blobs.append((n, f.read()))
            except OSError:
                pass
    for name, data in blobs:
        no_token_in(data, ALL_TOKENS, name)


# --- the admin API and keygatectl --------------------------------------------

def ctl_binary():
    kg.binary()
    path = os.path.join(os.path.dirname(kg.KEYGATED), "keygatectl")
    if not os.access(path, os.X_OK):
        kg.skip("no keygatectl next to %s" % kg.KEYGATED)
    return path


def ctl(d, *args):
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("KEYGATE_ADMIN_")}
    e["KEYGATE_ADMIN_URL"] = "http://127.0.0.1:%d" % d.admin_port
    e["KEYGATE_ADMIN_TOKEN"] = kg.ADMIN_TOKEN
    return subprocess.run([ctl_binary()] + list(args), env=e,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=30,
                          universal_newlines=True)


def rfc3339_unix(s):
    kg.check(kg.RFC3339_RE.match(s or ""), "not RFC 3339: %r" % s)
    return calendar.timegm(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S"))


def test_admin_verify():
    d, idp = main_daemon()
    tok, c = idp.token()
    ALL_TOKENS.append(tok)
    r = kg.admin(d, "POST", "/v1/verify", {"token": tok})
    kg.eq(r.status, 200, "verify status (body %r)" % r.body[:300])
    j = r.json()
    kg.eq((j.get("valid"), j.get("scheme"), j.get("provider"),
           j.get("identity"), j.get("issuer")),
          (True, "jwt", "entra", c["sub"], c["iss"]), "verify answer")
    kg.eq(sorted(j.get("scopes") or []), sorted(["Apps.Read", "Apps.Write",
                                                 "Admin"]), "verify scopes")
    kg.eq(rfc3339_unix(j.get("expires_at")), c["exp"], "expires_at")
    for bad, code in ((I.tamper(tok), "invalid_credentials"),
                      (idp.token(exp=int(time.time()) - 600)[0],
                       "expired_credentials"),
                      ("abc", "malformed_credentials")):
        ALL_TOKENS.append(bad)
        r = kg.admin(d, "POST", "/v1/verify", {"token": bad})
        kg.eq(r.status, 200, "verify of a bad token (body %r)" % r.body[:300])
        j = r.json()
        kg.eq((j.get("valid"), j.get("code")), (False, code),
              "verify of a bad token")
        kg.check(isinstance(j.get("message"), str) and j["message"],
                 "no message: %r" % j)
        no_token_in(r.body, [bad], "the verify answer")

    p = ctl(d, "verify", tok)
    kg.eq(p.returncode, 0, "keygatectl verify (stderr %r)" % p.stderr)
    kg.check(re.search(r"^valid:\s+yes$", p.stdout, re.M) and
             c["sub"] in p.stdout, "keygatectl verify output %r" % p.stdout)
    p = ctl(d, "--json", "verify", tok)
    kg.eq(p.returncode, 0, "keygatectl --json verify (stderr %r)" % p.stderr)
    j = json.loads(p.stdout)
    kg.eq((j.get("valid"), j.get("provider"), j.get("identity")),
          (True, "entra", c["sub"]), "keygatectl --json verify")
    p = ctl(d, "verify", I.tamper(tok))
    kg.eq(p.returncode, 1, "keygatectl verify of a bad token (stdout %r, "
          "stderr %r)" % (p.stdout, p.stderr))
    kg.check(re.search(r"^keygatectl: .*not valid: invalid_credentials",
                       p.stderr), "stderr %r" % p.stderr)
    kg.check(re.search(r"^valid:\s+no$", p.stdout, re.M), "stdout %r" %
             p.stdout)
    no_token_in((p.stdout + p.stderr).encode(), [tok], "keygatectl output")


# --- fetching: rotation, the IdP down, a file --------------------------------

def test_rotation_zero_401():
    need_jwt()
    with I.IdP(dir=kg.tempdir()) as idp:
        d = start(idp, entra_line(idp))
        tok, c = idp.token()
        wait_keys(d, tok, "/apps")
        check_jwt_identity(call(d, "/apps", bearer(tok)), c, "k1 token",
                           tenant_header=False)
        time.sleep(0.3)
        before = idp.count("jwks")
        k2 = idp.add_key(I.Key("k2", "PS256"))
        tok, c = idp.token(key=k2)
        t0 = time.monotonic()
        r = call(d, "/apps", bearer(tok))
        took = time.monotonic() - t0
        check_jwt_identity(r, c, "first k2 token", tenant_header=False)
        kg.check(took < 2.5, "the k2 request took %.2f s" % took)
        time.sleep(0.3)
        kg.eq(idp.count("jwks"), before + 1, "JWKS fetches for the new kid")
        # Other workers learn it from the shared keys: no fetch, no 401.
        for i in range(6):
            tok, c = idp.token(key=k2)
            check_jwt_identity(call(d, "/apps/%d" % i, bearer(tok)), c,
                               "k2 token %d" % i, tenant_header=False)
        tok, c = idp.token(key=idp.keys()[0])
        check_jwt_identity(call(d, "/apps", bearer(tok)), c,
                           "k1 after the rotation", tenant_header=False)
        # An unknown kid right after: no re-fetch for 5 min, so no hold.
        tok, c = idp.token(key=I.Key("k3"))
        t0 = time.monotonic()
        invalid(d, "/apps", tok, "unpublished k3")
        took = time.monotonic() - t0
        kg.check(took < 1.0, "the k3 refusal took %.2f s" % took)
        time.sleep(0.5)
        kg.eq(idp.count("jwks"), before + 1, "JWKS fetches after k3")


def test_removed_key_drops_cached_tokens():
    """
    A token verified once (and so cached) stops working when its key
    leaves the provider's set: the cache is dropped when the keys change.
    """
    need_jwt()
    with I.IdP(dir=kg.tempdir()) as idp:
        d = start(idp, entra_line(idp))
        old, c = idp.token()
        wait_keys(d, old, "/apps")
        for i in range(3):
            check_jwt_identity(call(d, "/apps", bearer(old)), c,
                               "k1 token, use %d" % i, tenant_header=False)
        k1 = idp.keys()[0]
        idp.drop_key("k1")
        k2 = idp.add_key(I.Key("k2", "ES384"))
        tok, c2 = idp.token(key=k2)
        check_jwt_identity(call(d, "/apps", bearer(tok)), c2,
                           "k2 token (a re-fetch)", tenant_header=False)
        invalid(d, "/apps", old, "the cached k1 token after k1 was removed")
        fresh, c3 = idp.token(key=k1)
        invalid(d, "/apps", fresh, "a new token of the removed key k1")


def test_refetch_hold_does_not_stall():
    """
    A request held for a re-fetch does not hold up the worker: with one
    worker and a JWKS answer that takes 3 s, a request with a known key is
    answered at once meanwhile; the held one is refused after the 2 s
    hold; the keys fetched later are used.
    """
    need_jwt()
    with I.IdP(dir=kg.tempdir()) as idp:
        d = start(idp, entra_line(idp), workers=1)
        tok1, c1 = idp.token()
        wait_keys(d, tok1, "/apps")
        k2 = idp.add_key(I.Key("k2", "ES256"))
        idp.delay(3.0)
        tok2, c2 = idp.token(key=k2)
        held = {}

        def send():
            t0 = time.monotonic()
            try:
                held["r"] = call(d, "/apps/held", bearer(tok2))
            except Exception as e:
                held["e"] = e
            held["took"] = time.monotonic() - t0

        t = threading.Thread(target=send, daemon=True)
        t.start()
        try:
            time.sleep(0.3)
            t0 = time.monotonic()
            check_jwt_identity(call(d, "/apps/k1", bearer(tok1)), c1,
                               "k1 while a k2 request is held",
                               tenant_header=False)
            took = time.monotonic() - t0
            kg.check(took < 1.0, "a k1 request took %.2f s while another "
                     "was held" % took)
        finally:
            t.join(10)
        kg.check("e" not in held, "the held request: %r" % held.get("e"))
        kg.check("r" in held, "the held request got no answer in 10 s")
        refused(held["r"], 401, "invalid_credentials", "k2 held past 2 s",
                tok2, "invalid_token")
        kg.check(1.5 <= held["took"] < 3.5, "the k2 request was held %.2f "
                 "s (the hold is 2 s)" % held["took"])
        idp.delay(0)
        kg.wait_for(lambda: call(d, "/apps", bearer(tok2)).status == 200, 5,
                    "k2 accepted once the slow fetch ended")


def test_reload_during_fetch():
    """
    A reload while the master fetches a JWKS does not break the fetch:
    the new key arrives once the slow answer does, and no "no keys from"
    line is logged.  (The master used to close its own fetch sockets when
    a reload was committed, as if it were a freshly forked worker.)
    """
    need_jwt()
    with I.IdP(dir=kg.tempdir()) as idp:
        d = start(idp, entra_line(idp), workers=1)
        tok1, _ = idp.token()
        wait_keys(d, tok1, "/apps")
        k2 = idp.add_key(I.Key("k2", "ES256"))
        tok2, c2 = idp.token(key=k2)
        idp.delay(2.5)
        mark = len(d.errlog_text())
        # An unknown kid starts an early re-fetch; the IdP sits on it.
        call(d, "/apps/held", bearer(tok2))
        d.signal(signal.SIGHUP)
        d.wait_log(r"configuration reloaded", timeout=10)
        idp.delay(0)
        kg.wait_for(lambda: call(d, "/apps", bearer(tok2)).status == 200, 6,
                    "k2 accepted once the slow fetch under the reload ended")
        check_jwt_identity(call(d, "/apps", bearer(tok2)), c2, "k2 token",
                           tenant_header=False)
        log = d.errlog_text()[mark:]
        kg.check(not re.search(r"no keys from", log),
                 "a fetch failed across the reload:\n%s" % log)
        kg.eq(idp.count("cut"), 0, "IdP answers whose connection keygated "
              "closed first")


def test_idp_down_at_start_then_cache():
    need_jwt()
    with I.IdP(dir=kg.tempdir()) as idp:
        idp.down()
        sd = os.path.join(kg.tempdir(), "state")
        t = template(idp, entra_line(idp), workers=1).replace(
            "state_dir {dir}/state", "state_dir " + sd)
        d = kg.start(t, nports=2)
        tok, c = idp.token(lifetime=7200)
        r = call(d, "/apps", bearer(tok))
        refused(r, 503, "auth_unavailable", "no keys yet", tok)
        idp.up()
        kg.wait_for(lambda: call(d, "/apps", bearer(tok)).status == 200, 20,
                    "a 200 once the IdP is up")
        check_jwt_identity(call(d, "/apps", bearer(tok)), c, "IdP up",
                           tenant_header=False)
        cache = os.path.join(sd, "jwks-entra.json")
        kg.wait_for(lambda: os.path.exists(cache), 5, cache)
        with open(cache) as f:
            saved = json.load(f)
        kg.eq(sorted(saved), ["jwks", "source"], "members of %s" % cache)
        kg.eq(saved["source"], "discovery:%s/.well-known/openid-configuration"
              "\nca=%s" % (idp.issuer("common"), idp.ca_path),
              "the source in %s" % cache)
        kids = [k.get("kid") for k in saved["jwks"].get("keys", [])]
        kg.check("k1" in kids, "kids in %s: %r" % (cache, kids))
        kg.eq(d.stop(), 0, "exit status of a graceful stop")
        # Down (500 this time); a new daemon on the same state_dir.
        idp.down("500")
        d2 = kg.start(t, nports=2)
        check_jwt_identity(call(d2, "/apps", bearer(tok)), c,
                           "first request after a restart, IdP down",
                           tenant_header=False)
        tok2, c2 = idp.token()
        check_jwt_identity(call(d2, "/apps", bearer(tok2)), c2,
                           "a new token, cached keys", tenant_header=False)
        no_token_leak(d2)
        kg.eq(d2.stop(), 0, "exit status of a graceful stop")
        # The provider moved (jwks= now, another source), the IdP down: the
        # cache of the source before is not used.
        d3 = kg.start(t.replace(entra_line(idp), entra_line(
            idp, "jwks=" + idp.jwks_url("moved"))), nports=2)
        refused(call(d3, "/apps", bearer(tok)), 503, "auth_unavailable",
                "another source, its cache not used", tok)
        d3.wait_log(r"jwt_provider entra: cached keys in jwks-entra.json "
                    r"ignored: saved from another key source", timeout=5)


def test_jwks_file_and_algorithms():
    """jwks=PATH (no HTTPS at all) and algorithms=."""
    need_jwt()
    dir = kg.tempdir()
    rs, ec, ec384 = I.Key("r1"), I.Key("p1", "ES256"), I.Key("p2", "ES384")
    pinned = I.Key("a1", publish_alg=True)		# "alg": "RS256"
    path = os.path.join(dir, "jwks.json")
    with open(path, "w") as f:
        json.dump(I.jwks_of([rs, ec, ec384, pinned]), f)
    iss = "https://issuer.example/file"
    d = kg.start(kg.config(
        "jwt_provider file issuer=%s audience=api://file jwks=%s "
        "algorithms=RS256,PS256,ES256" % (iss, path),
        "route * ^/f(/|$) auth=jwt:file", workers=1), nports=1)

    def tk(key, alg=None, **kw):
        c = dict(iss=iss, aud="api://file", sub="file-" + uuid.uuid4().hex,
                 exp=int(time.time()) + 600, **kw)
        return key.sign(c, alg=alg), c

    wait_keys(d, tk(rs)[0], "/f")
    for key, alg in ((rs, None), (rs, "PS256"), (ec, None), (pinned, None)):
        tok, c = tk(key, alg)
        h = kg.echo_headers(call(d, "/f", bearer(tok)), "%s %s" % (key.kid,
                                                               alg or key.alg))
        kg.eq(h.get("x-consumer-id"), c["sub"], "X-Consumer-Id")
    for key, alg, what in ((rs, "RS512", "RS512 not in algorithms="),
                           (ec384, None, "ES384 not in algorithms="),
                           (pinned, "PS256", "PS256 with a key whose alg is "
                            "RS256")):
        tok, c = tk(key, alg)
        invalid(d, "/f", tok, what)


def test_providers_sharing_an_issuer():
    """
    Two providers of one issuer (one Entra tenant, two APIs) differ in
    audience: auth=jwt tries both, and a cached token answers what the
    full check does (it once answered 401, then 200 from the cache).
    """
    need_jwt()
    dir = kg.tempdir()
    key = I.Key("s1")
    path = os.path.join(dir, "jwks.json")
    with open(path, "w") as f:
        json.dump(I.jwks_of([key]), f)
    iss = "https://issuer.example/shared"
    d = kg.start(kg.config(
        "jwt_provider first issuer=%s audience=api://first jwks=%s" %
        (iss, path),
        "jwt_provider second issuer=%s audience=api://second jwks=%s" %
        (iss, path),
        "route * ^/any(/|$) auth=jwt",
        "route * ^/one(/|$) auth=jwt:first",
        "route * ^/two(/|$) auth=jwt:second", workers=1), nports=1)

    def tk(aud):
        c = dict(iss=iss, aud=aud, sub="shared-" + uuid.uuid4().hex,
                 exp=int(time.time()) + 600)
        return key.sign(c), c

    wait_keys(d, tk("api://first")[0], "/any")
    tok, c = tk("api://second")
    for path, status in (("/any", 200), ("/two", 200), ("/any", 200),
                         ("/one", 401), ("/any", 200)):
        r = call(d, path, bearer(tok))
        kg.eq(r.status, status, "token of the second provider on %s" % path)
        if status == 200:
            kg.eq(kg.echo_headers(r, path).get("x-consumer-id"), c["sub"],
                  "X-Consumer-Id on %s" % path)
    tok, c = tk("api://first")
    for path, status in (("/two", 401), ("/any", 200), ("/one", 200),
                         ("/two", 401)):
        kg.eq(call(d, path, bearer(tok)).status, status,
              "token of the first provider on %s" % path)


def test_reload_jwks_source():
    """
    A reload that changes jwks= drops the old source's keys at once: a
    missing file is 503 auth_unavailable, not the keys of before; the keys
    come back when the new source has them.
    """
    need_jwt()
    dir = kg.tempdir()
    key = I.Key("r1")
    old, new = os.path.join(dir, "old.json"), os.path.join(dir, "new.json")
    with open(old, "w") as f:
        json.dump(I.jwks_of([key]), f)
    iss = "https://issuer.example/file"
    line = "jwt_provider file issuer=%s audience=api://file jwks=%s"
    t = kg.config(line % (iss, old), "route * ^/f(/|$) auth=jwt:file",
                  workers=1)
    d = kg.start(t, nports=1)
    master = d.master_pid
    tok = key.sign(dict(iss=iss, aud="api://file", sub="file-user",
                        exp=int(time.time()) + 600))
    wait_keys(d, tok, "/f")
    kg.echo_headers(call(d, "/f", bearer(tok)), "before the reload")
    d.write_conf(t.replace(old, new))
    d.signal(signal.SIGHUP)
    d.wait_log(r"configuration reloaded", timeout=10)
    kg.wait_for(lambda: call(d, "/f", bearer(tok)).status == 503, 5,
                "503 once jwks= names a missing file")
    refused(call(d, "/f", bearer(tok)), 503, "auth_unavailable",
            "a token of the old source's keys after the reload", tok)
    kg.check("keeping the previous keys" not in d.errlog_text(),
             "the old keys were kept after the source changed")
    with open(new, "w") as f:
        json.dump(I.jwks_of([key]), f)
    kg.wait_for(lambda: call(d, "/f", bearer(tok)).status == 200, 15,
                "200 once the new file has the keys")
    kg.eq(d.master_pid, master, "master pid")


def test_rate_per_identity():
    idp = shared_idp()
    d = start(idp, entra_line(idp, "rate=2/1s"))
    # An identity is issuer + sub: with {tenantid}, the tenant is part of
    # the issuer, so the three tokens share one.
    sub, tenant = "rl-" + uuid.uuid4().hex, str(uuid.uuid4())
    toks = [idp.token(sub=sub, tenant=tenant)[0] for _ in range(3)]
    other, _ = idp.token()
    wait_keys(d, idp.token()[0], "/apps")
    rs = []
    with kg.Conn(d.port) as conn:
        t0 = time.monotonic()
        for tok in toks:
            conn.send(kg.raw_request("GET", "/apps", headers=bearer(tok)))
            rs.append(conn.read_final())
        took = time.monotonic() - t0
    if took >= 1.0:
        kg.skip("three requests took %.2f s, not within 1 s" % took)
    kg.eq([r.status for r in rs[:2]], [200, 200], "first two of one sub")
    for r in rs[:2]:
        kg.check((r.header("ratelimit-policy") or "").startswith("2;w=1"),
                 "RateLimit-Policy %r" % r.header("ratelimit-policy"))
    j = refused(rs[2], 429, "rate_limited", "third of the same sub (another "
                "token)", toks[2])
    ra = rs[2].header("retry-after")
    kg.check(ra is not None and ra.isdigit() and int(ra) >= 1,
             "Retry-After %r" % ra)
    want = "rate limit of 2 requests per 1s"
    kg.check(want in j["message"], "message %r does not say %r" %
             (j["message"], want))
    kg.eq(call(d, "/apps", bearer(other)).status, 200, "another sub")


def test_reload_audience():
    idp = shared_idp()
    d = start(idp, entra_line(idp))
    master = d.master_pid
    tok, c = idp.token()
    wait_keys(d, idp.token()[0], "/apps")
    check_jwt_identity(call(d, "/apps", bearer(tok)), c, "before the reload",
                       tenant_header=False)
    d.write_conf(d.jt_template.replace("audience=" + AUD,
                                       "audience=api://renamed"))
    d.signal(signal.SIGHUP)
    d.wait_log(r"configuration reloaded", timeout=10)
    kg.wait_for(lambda: call(d, "/apps", bearer(tok)).status == 401, 5,
                "the old audience refused")
    invalid(d, "/apps", tok, "old audience after the reload")
    tok2, c2 = idp.token(aud="api://renamed")
    check_jwt_identity(call(d, "/apps", bearer(tok2)), c2, "new audience",
                       tenant_header=False)
    kg.eq(d.master_pid, master, "master pid")
    kg.check(d.master_alive(), "the master is gone")


# --- keygated -t -------------------------------------------------------------

def bad_lines(idp):
    iss = idp.issuer("{tenantid}")
    base = "jwt_provider bad issuer=%s audience=%s ca=%s" % (iss, AUD,
                                                             idp.ca_path)
    return [
        ("jwt_provider bad issuer=%s" % iss, r"audience"),
        ("jwt_provider bad audience=%s" % AUD, r"issuer"),
        (base + " colour=blue", r"colour"),
        (base + " tenants=contoso", r"tenant"),
        (base + " algorithms=HS256", r"HS256"),
        (base + " algorithms=none", r"none"),
        (base + " jwks=http://127.0.0.1:1/keys", r"jwks"),
        (base + " leeway=soon", r"leeway"),
        (base + " headers=tid", r"headers"),
        (base + " rate=lots", r"rate"),
        ("jwt_provider entra issuer=%s audience=%s" % (iss, AUD),
         r"entra"),
        ("route GET ^/z auth=jwt:nosuch", r"nosuch"),
    ]


def test_check_bad_jwt_provider():
    idp = shared_idp()
    failures = []
    for line, message in bad_lines(idp):
        path, lineno = conf_file(template(idp) + "# a comment\n\n" + line +
                                 "\n")
        p = kg.keygated("-t", "-c", path)
        what = "keygated -t with %r" % line
        want = "%s:%d: " % (path, lineno)
        if p.returncode == 0:
            failures.append("%s: exit status 0" % what)
        elif want not in p.stderr:
            failures.append("%s: stderr %r lacks %r" % (what, p.stderr, want))
        elif not re.search(message, p.stderr):
            failures.append("%s: stderr %r does not say /%s/" %
                            (what, p.stderr, message))
    kg.check(not failures, "\n".join(failures))


TESTS = [
    test_idp_selftest,
    test_config_check,
    test_good_token_identity,
    test_insufficient_scope,
    test_refusals,
    test_tenants,
    test_identity_claim,
    test_catalog_jwt_or_app_key,
    test_other_provider,
    test_access_log,
    test_admin_verify,
    test_rotation_zero_401,
    test_removed_key_drops_cached_tokens,
    test_refetch_hold_does_not_stall,
    test_reload_during_fetch,
    test_idp_down_at_start_then_cache,
    test_jwks_file_and_algorithms,
    test_providers_sharing_an_issuer,
    test_rate_per_identity,
    test_reload_audience,
    test_reload_jwks_source,
    test_check_bad_jwt_provider,
]


if __name__ == "__main__":
    import atexit
    atexit.register(_close_shared_idp)
    if len(sys.argv) > 1:		# run only the tests named
        names = sys.argv[1:]
        TESTS = [t for t in TESTS if t.__name__ in names]
    kg.run(TESTS)
