"""
idp: a local OpenID Connect identity provider for keygate's JWT tests.

An HTTPS server (http.server + ssl, one thread per connection) on
127.0.0.1 and an ephemeral port, with a test CA made when it starts (by
the `cryptography` module) whose certificate is written to IdP.ca_path for
keygated's "ca=".  It looks like Microsoft Entra ID to a client:

  GET /{tenant}/v2.0/.well-known/openid-configuration
	{"issuer": "https://127.0.0.1:PORT/{tenant}/v2.0",
	 "jwks_uri": "https://127.0.0.1:PORT/{tenant}/discovery/v2.0/keys", ...}
	for any tenant segment; for "common" the issuer is the template
	".../{tenantid}/v2.0", as Entra's common endpoint answers.
  GET /PREFIX/.well-known/openid-configuration (any other prefix)
	{"issuer": "https://127.0.0.1:PORT/PREFIX",
	 "jwks_uri": "https://127.0.0.1:PORT/PREFIX/jwks.json"}
  GET /{realm}/discovery/v2.0/keys, GET /PREFIX/jwks.json
	the JWKS of a realm: the first path segment names it, and a realm
	without keys of its own serves the default realm's keys (so "common"
	and every tenant GUID share the default set).  Entra style: RSA keys
	carry kty, use, kid, n, e and the x5t/x5c members a client must
	ignore, but no "alg"; EC keys carry crv, x and y.

The test drives it: counters of discovery and JWKS fetches (thread-safe),
keys added to and dropped from a realm, down() (the listening socket
closed, the port held by a socket that does not listen, so connections are
refused; or mode "500": every answer a 500), up() on the same port, and a
delay before every answer.  Tokens are made with PyJWT (IdP.token, or
Key.sign for any claims), and a few hostile forms by hand (forge()).

Stdlib plus `cryptography` and `jwt` (PyJWT): Debian's python3-jwt and
python3-cryptography, seen by /usr/bin/python3.
"""

import base64
import datetime
import hashlib
import hmac
import http.server
import json
import os
import re
import shutil
import socket
import ssl
import tempfile
import threading
import time
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
import ipaddress
import jwt

DEFAULT_REALM = "default"
HANDLER_TIMEOUT = 5.0		# s, every socket operation of the server
MAX_DELAY = 30.0		# s, the longest delay() accepted

RSA_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGS = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1}
EC_CRV = {"ES256": "P-256", "ES384": "P-384"}


def b64u(data):
    """base64url without padding (RFC 7515 2)."""
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _uint(n):
    return b64u(n.to_bytes((n.bit_length() + 7) // 8 or 1, "big"))


# --- keys ------------------------------------------------------------------

class Key:
    """A signing key: its kid, the algorithm its tokens use, its JWK."""

    def __init__(self, kid, alg="RS256", bits=2048, publish_alg=False,
                 like=None):
        """like: another Key whose key pair this one shares (a new kid)."""
        self.kid = kid
        self.alg = alg
        self.publish_alg = publish_alg
        if like is not None:
            if (alg in RSA_ALGS) != (like.alg in RSA_ALGS) or \
                    (alg in EC_ALGS and alg != like.alg):
                raise ValueError("%s cannot share a %s key" % (alg, like.alg))
            self.priv = like.priv
        elif alg in RSA_ALGS:
            self.priv = rsa.generate_private_key(public_exponent=65537,
                                                 key_size=bits)
        elif alg in EC_ALGS:
            self.priv = ec.generate_private_key(EC_ALGS[alg]())
        else:
            raise ValueError("no key type for %s" % alg)
        self.pub = self.priv.public_key()

    def public_pem(self):
        return self.pub.public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo)

    def jwk(self):
        """The public JWK, as Entra publishes it (no "alg" by default)."""
        if self.alg in RSA_ALGS:
            nums = self.pub.public_numbers()
            k = {"kty": "RSA", "use": "sig", "kid": self.kid,
                 "x5t": b64u(hashlib.sha1(self.kid.encode()).digest()),
                 "n": _uint(nums.n), "e": _uint(nums.e),
                 # Junk a verifier must never use (a token header's x5c is
                 # never followed; a JWKS member's is simply ignored).
                 "x5c": [base64.b64encode(b"not a certificate").decode()],
                 "issuer": "https://example.invalid/ignored"}
        else:
            nums = self.pub.public_numbers()
            size = 32 if self.alg == "ES256" else 48
            k = {"kty": "EC", "use": "sig", "kid": self.kid,
                 "crv": EC_CRV[self.alg],
                 "x": b64u(nums.x.to_bytes(size, "big")),
                 "y": b64u(nums.y.to_bytes(size, "big"))}
        if self.publish_alg:
            k["alg"] = self.alg
        return k

    def sign(self, claims, alg=None, headers=None, kid=True):
        """A token of claims signed by this key with PyJWT."""
        h = {} if headers is None else dict(headers)
        if kid:
            h.setdefault("kid", self.kid)
        return jwt.encode(claims, self.priv, algorithm=alg or self.alg,
                          headers=h)


    def sign_raw(self, payload, header=None):
        """
        A token of these exact payload bytes and header (JSON text, by
        default {"alg": ..., "kid": ...}), signed by this key: for JSON a
        JSON library would not write, such as duplicate member names.
        """
        if header is None:
            header = json.dumps({"alg": self.alg, "kid": self.kid})
        signing = "%s.%s" % (b64u(header), b64u(payload))
        algo = jwt.algorithms.get_default_algorithms()[self.alg]
        sig = algo.sign(signing.encode(), self.priv)
        return signing + "." + b64u(sig)

def jwks_of(keys):
    return {"keys": [k.jwk() for k in keys]}


def forge(header, claims, signature=b""):
    """A compact token of these exact JSON parts (for hostile tokens)."""
    h = header if isinstance(header, (bytes, str)) else json.dumps(header)
    c = claims if isinstance(claims, (bytes, str)) else json.dumps(claims)
    return "%s.%s.%s" % (b64u(h), b64u(c), b64u(signature))


def forge_hs256(header, claims, secret):
    """An HS256 token with this secret (e.g. an RSA public key's PEM)."""
    signing = "%s.%s" % (b64u(json.dumps(header)), b64u(json.dumps(claims)))
    mac = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64u(mac)


def tamper(token):
    """The token with one bit of its signature flipped."""
    h, p, s = token.split(".")
    sig = bytearray(b64u_decode(s))
    sig[len(sig) // 2] ^= 0x01
    return "%s.%s.%s" % (h, p, b64u(bytes(sig)))


# --- the test CA -------------------------------------------------------------

def make_ca(dir):
    """A CA and a server certificate for 127.0.0.1; their paths."""
    now = datetime.datetime.utcnow()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                            "keygate test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name)
          .issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0),
                         critical=True)
          .add_extension(x509.KeyUsage(
              digital_signature=True, key_cert_sign=True, crl_sign=True,
              content_commitment=False, key_encipherment=False,
              data_encipherment=False, key_agreement=False,
              encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = (x509.CertificateBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                       "127.0.0.1")]))
           .issuer_name(ca_name).public_key(srv_key.public_key())
           .serial_number(x509.random_serial_number())
           .not_valid_before(now - datetime.timedelta(hours=1))
           .not_valid_after(now + datetime.timedelta(days=2))
           .add_extension(x509.SubjectAlternativeName([
               x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
               x509.DNSName("localhost")]), critical=False)
           .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                          critical=True)
           .add_extension(x509.ExtendedKeyUsage(
               [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
           .sign(ca_key, hashes.SHA256()))
    paths = {}
    for name, data in (
            ("ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
            ("server.pem", srv.public_bytes(serialization.Encoding.PEM)),
            ("server.key", srv_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))):
        p = os.path.join(dir, name)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        paths[name] = p
    return paths


# --- the server --------------------------------------------------------------

DISCOVERY_RE = re.compile(r"^/(.+)/\.well-known/openid-configuration$")
ENTRA_PREFIX_RE = re.compile(r"^([^/]+)/v2\.0$")
ENTRA_JWKS_RE = re.compile(r"^/([^/]+)/discovery/v2\.0/keys$")
PLAIN_JWKS_RE = re.compile(r"^/(.+)/jwks\.json$")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kgtest-idp"
    sys_version = ""

    def setup(self):
        self.request.settimeout(HANDLER_TIMEOUT)
        try:
            self.request.do_handshake()
        except (OSError, ssl.SSLError):
            self.handshake_failed = True
        else:
            self.handshake_failed = False
        super().setup()

    def handle(self):
        if not self.handshake_failed:
            super().handle()

    def log_message(self, fmt, *args):
        self.server.idp._log(fmt % args)

    def _send(self, status, obj):
        body = json.dumps(obj).encode() if obj is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        try:
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            # The client went away before its answer: count("cut").
            self.server.idp._count("cut", self.path)
            raise

    def do_GET(self):
        idp = self.server.idp
        path = self.path.split("?", 1)[0]
        kind, answer = idp._route(path)
        idp._count(kind, path)
        delay, failing = idp._behaviour()
        if delay > 0:
            time.sleep(delay)
        if failing:
            self._send(500, {"error": "server_error"})
        elif answer is None:
            self._send(404, {"error": "not_found"})
        else:
            self._send(200, answer)

    do_HEAD = do_GET


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def get_request(self):
        sock, addr = self.socket.accept()
        # The handshake is made by the connection's own thread (setup()),
        # so that a client that never finishes it stalls only itself.
        return self.idp.ctx.wrap_socket(sock, server_side=True,
                                        do_handshake_on_connect=False), addr


class IdP:
    """The provider; see the module's comment.  close() always."""

    def __init__(self, port=0, keys=None, dir=None):
        """dir: where the CA files go (default: a new temporary one)."""
        self.own_dir = dir is None
        self.dir = tempfile.mkdtemp(prefix="kgtest-idp-") if dir is None \
            else dir
        self.lock = threading.Lock()
        self.counts = {"discovery": 0, "jwks": 0, "other": 0, "cut": 0}
        self.paths = []			# every path asked for, in order
        self.realms = {DEFAULT_REALM: list(keys) if keys is not None else
                       [Key("k1")]}
        self.delay_s = 0.0
        self.failing = False
        self.log = []
        paths = make_ca(self.dir)
        self.ca_path = paths["ca.pem"]
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(paths["server.pem"], paths["server.key"])
        self.server = None
        self.thread = None
        self.holder = None		# a bound, not listening, socket
        self.port = port
        self._listen()

    # -- addresses --

    @property
    def base(self):
        return "https://127.0.0.1:%d" % self.port

    def issuer(self, tenant):
        """The Entra v2 issuer of tenant ("{tenantid}" for the template)."""
        return "%s/%s/v2.0" % (self.base, tenant)

    def jwks_url(self, realm):
        return "%s/%s/discovery/v2.0/keys" % (self.base, realm)

    # -- running --

    def _listen(self):
        self.server = _Server(("127.0.0.1", self.port), _Handler)
        self.server.idp = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def _stop_server(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(5)
            self.server = None
            self.thread = None

    def down(self, mode="close"):
        """
        Stop answering.  "close": the listening socket is closed and the
        port held by a socket bound to it that does not listen, so that a
        connection is refused and no one else takes the port.  "500":
        still listening, every answer is a 500.
        """
        if mode == "500":
            with self.lock:
                self.failing = True
            return
        if mode != "close":
            raise ValueError("down(%r): close or 500" % mode)
        self._stop_server()
        if self.holder is None:
            h = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            h.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            h.bind(("127.0.0.1", self.port))
            self.holder = h

    def up(self):
        """Answer again, on the same port."""
        with self.lock:
            self.failing = False
        if self.server is None:
            if self.holder is not None:
                self.holder.close()
                self.holder = None
            self._listen()

    def delay(self, seconds):
        """Wait this long before every answer (0: no delay)."""
        if not 0 <= seconds <= MAX_DELAY:
            raise ValueError("delay %r" % seconds)
        with self.lock:
            self.delay_s = float(seconds)

    def close(self):
        self._stop_server()
        if self.holder is not None:
            self.holder.close()
            self.holder = None
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- keys --

    def keys(self, realm=DEFAULT_REALM):
        with self.lock:
            return list(self.realms.get(realm, []))

    def add_key(self, key, realm=DEFAULT_REALM):
        with self.lock:
            self.realms.setdefault(realm, []).append(key)
        return key

    def drop_key(self, kid, realm=DEFAULT_REALM):
        with self.lock:
            ks = self.realms.get(realm, [])
            n = len(ks)
            ks[:] = [k for k in ks if k.kid != kid]
            if len(ks) == n:
                raise KeyError("no key %r in realm %r" % (kid, realm))

    def jwks(self, realm=DEFAULT_REALM):
        """The JWKS served for realm (the default realm's if it has none)."""
        with self.lock:
            ks = self.realms.get(realm) or self.realms.get(DEFAULT_REALM, [])
            return jwks_of(ks)

    # -- counters --

    def count(self, kind, realm=None):
        """Fetches of kind ("discovery", "jwks"), of one realm or all;
        "cut": answers the client closed its connection before."""
        with self.lock:
            if realm is None:
                return self.counts[kind]
            return sum(1 for k, p in self.paths if k == kind and
                       p.split("/")[1] == realm)

    def _count(self, kind, path):
        with self.lock:
            self.counts[kind] += 1
            self.paths.append((kind, path))

    def _behaviour(self):
        with self.lock:
            return self.delay_s, self.failing

    def _log(self, line):
        with self.lock:
            if len(self.log) < 1000:
                self.log.append(line)

    # -- answers --

    def _route(self, path):
        """(counter kind, JSON answer or None) for a GET of path."""
        m = DISCOVERY_RE.match(path)
        if m:
            prefix = m.group(1)
            e = ENTRA_PREFIX_RE.match(prefix)
            if e:
                tenant = e.group(1)
                iss = self.issuer("{tenantid}" if tenant in
                                  ("common", "organizations") else tenant)
                jwks = self.jwks_url(tenant)
            else:
                iss = "%s/%s" % (self.base, prefix)
                jwks = "%s/%s/jwks.json" % (self.base, prefix)
            return "discovery", {
                "issuer": iss, "jwks_uri": jwks,
                "token_endpoint": self.base + "/" + prefix + "/token",
                "authorization_endpoint": self.base + "/" + prefix +
                "/authorize",
                "response_types_supported": ["code", "id_token"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"]}
        m = ENTRA_JWKS_RE.match(path) or PLAIN_JWKS_RE.match(path)
        if m:
            return "jwks", self.jwks(m.group(1).split("/")[0])
        return "other", None

    # -- tokens --

    def claims(self, tenant=None, iss=None, aud="api://salestim", sub=None,
               lifetime=3600, **more):
        """The usual claims of an Entra v2 access token; more override."""
        now = int(time.time())
        tenant = tenant or str(uuid.uuid4())
        c = {"iss": iss or self.issuer(tenant), "aud": aud,
             "iat": now - 5, "nbf": now - 5, "exp": now + lifetime,
             "sub": sub or "sub-" + uuid.uuid4().hex[:16],
             "oid": str(uuid.uuid4()), "tid": tenant,
             "scp": "Apps.Read Apps.Write", "roles": ["Admin"], "ver": "2.0"}
        for k, v in more.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return c

    def token(self, key=None, alg=None, headers=None, realm=DEFAULT_REALM,
              **claims):
        """(token, claims) signed by key (the realm's first by default)."""
        if key is None:
            key = self.keys(realm)[0]
        c = self.claims(**claims)
        return key.sign(c, alg=alg, headers=headers), c


# --- self-test ---------------------------------------------------------------

def selftest():
    """Discovery and JWKS through urllib with the CA; a token verified."""
    import urllib.error
    import urllib.request
    with IdP() as idp:
        ctx = ssl.create_default_context(cafile=idp.ca_path)

        def fetch(url):
            with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
                return json.loads(r.read().decode())

        idp.add_key(Key("e1", "ES256"))
        d = fetch(idp.base + "/common/v2.0/.well-known/openid-configuration")
        assert d["issuer"] == idp.issuer("{tenantid}"), d
        assert d["jwks_uri"] == idp.jwks_url("common"), d
        j = fetch(d["jwks_uri"])
        assert [k["kid"] for k in j["keys"]] == ["k1", "e1"], j
        assert all("alg" not in k for k in j["keys"]), j
        assert idp.count("discovery") == 1 and idp.count("jwks") == 1
        p = fetch(idp.base + "/plain/.well-known/openid-configuration")
        assert p["issuer"] == idp.base + "/plain", p
        assert fetch(p["jwks_uri"]) == j
        tok, c = idp.token(tenant="72f988bf-86f1-41af-91ab-2d7cd011db47")
        keys = jwt.PyJWKSet.from_dict(j)
        kid = jwt.get_unverified_header(tok)["kid"]
        k = [x for x in keys.keys if x.key_id == kid][0]
        got = jwt.decode(tok, k.key, algorithms=["RS256"],
                         audience="api://salestim", issuer=c["iss"])
        assert got["sub"] == c["sub"], got
        raw = idp.keys()[0].sign_raw(json.dumps(c).encode())
        assert jwt.decode(raw, k.key, algorithms=["RS256"],
                          audience="api://salestim")["sub"] == c["sub"]
        for alg in ("PS384", "ES384"):
            key = Key("x-" + alg, alg)
            t = key.sign(c)
            jwk = jwt.PyJWK.from_dict(key.jwk(), algorithm=alg)
            jwt.decode(t, jwk.key, algorithms=[alg], audience="api://salestim")
        # Down (refused), up again on the same port, 500, delay.
        port = idp.port
        idp.down()
        try:
            fetch(d["jwks_uri"])
            raise AssertionError("fetch from a down IdP worked")
        except urllib.error.URLError:
            pass
        idp.up()
        assert idp.port == port
        assert fetch(d["jwks_uri"]) == j
        idp.down("500")
        try:
            fetch(d["jwks_uri"])
            raise AssertionError("fetch from a failing IdP worked")
        except urllib.error.HTTPError as e:
            assert e.code == 500
        idp.up()
        idp.delay(0.3)
        t0 = time.monotonic()
        fetch(d["jwks_uri"])
        assert time.monotonic() - t0 >= 0.3
        idp.delay(0)
        idp.drop_key("k1")
        assert [k["kid"] for k in fetch(d["jwks_uri"])["keys"]] == ["e1"]
    print("idp self-test passed")


if __name__ == "__main__":
    selftest()
