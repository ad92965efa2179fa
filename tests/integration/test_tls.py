"""
TLS end to end (issue 12): the real keygated with "listen ... tls" next to
a plain listener, certificates from a test CA made here with the openssl
command line, Python's ssl module (and, for TLS 1.1, "openssl s_client")
as the client, upstream.py as a plain or an HTTPS (--tls) upstream.

What is checked: SNI picks the certificate (an unknown name or none gets
the first one); an RSA and an ECDSA certificate for one name, chosen by
the TLS 1.2 client's cipher list; TLS 1.2 and 1.3 served, 1.1 refused by
the server, tls_protocols; ALPN http/1.1; 100 keep-alive requests on one
TLS connection with X-Forwarded-Proto https (http on the plain listener);
the access log's "tls" and "tls_resumed"; the admin listener over TLS;
session resumption across workers and across a SIGHUP, none with
tls_session_tickets off; a reload with a new certificate and with a
broken one; keygated -t errors
(FILE:LINE) and the expired-certificate warning; https upstreams with the
right CA, the wrong CA (502), verify=off, sni=, keep-alive; 100 MiB both
ways with bounded memory; a client that stops inside its ClientHello, a
slow reader; a plain HTTP client on the TLS port.

Only the standard library and the openssl program are used; without the
program every test is skipped with the reason.
"""

import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import kgtest as kg
import upstream as U

MiB = 1 << 20
OPENSSL = shutil.which("openssl")
ROUTE = "route * ^/ auth=anonymous"
PLAIN_AND_TLS = ("127.0.0.1:{port}", "127.0.0.1:{port2} tls")
RSS_LIMIT_MIB = 64		# as test_proxy.py's 100 MiB tests


# --- a test PKI with the openssl command line --------------------------------

def openssl(*args, cwd=None):
    """Run openssl with args; fail with its output if it fails."""
    if OPENSSL is None:
        kg.skip("no openssl program on PATH")
    p = subprocess.run([OPENSSL] + list(args), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60, universal_newlines=True, cwd=cwd)
    kg.check(p.returncode == 0, "openssl %s failed (%d): %s" %
             (" ".join(args), p.returncode, (p.stderr or p.stdout)[-800:]))
    return p.stdout


def newkey_args(kind):
    if kind == "ec":
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    return ["-newkey", "rsa:2048"]


class CA:
    """A certificate authority in dir; issue() makes server certificates."""

    def __init__(self, dir, name):
        self.dir = dir
        self.name = name
        self.pem = os.path.join(dir, name + ".pem")
        self.key = os.path.join(dir, name + ".key")
        openssl("req", "-x509", *newkey_args("ec"), "-nodes",
                "-keyout", self.key, "-out", self.pem, "-days", "30",
                "-subj", "/CN=keygate test CA %s" % name,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self.serial = 100

    def issue(self, base, names, kind="rsa", serial=None, key=None,
              expired=False):
        """
        A certificate for names (DNS names, or IP addresses) in
        dir/base.pem with its key in dir/base.key (or signed for the
        existing key file key).  Returns (cert path, key path).
        """
        cert = os.path.join(self.dir, base + ".pem")
        csr = os.path.join(self.dir, base + ".csr")
        ext = os.path.join(self.dir, base + ".ext")
        if key is None:
            key = os.path.join(self.dir, base + ".key")
            openssl("req", "-new", *newkey_args(kind), "-nodes", "-keyout",
                    key, "-out", csr, "-subj", "/CN=%s" % names[0])
        else:
            openssl("req", "-new", "-key", key, "-out", csr, "-subj",
                    "/CN=%s" % names[0])
        sans = ",".join(("IP:" if re.match(r"^[0-9.]+$", n) else "DNS:") + n
                        for n in names)
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectKeyIdentifier=hash\n"
                    "authorityKeyIdentifier=keyid\n"
                    "subjectAltName=%s\n" % sans)
        if serial is None:
            self.serial += 1
            serial = self.serial
        if expired:
            self._issue_expired(csr, cert, ext, serial)
        else:
            openssl("x509", "-req", "-in", csr, "-CA", self.pem, "-CAkey",
                    self.key, "-set_serial", str(serial), "-days", "30",
                    "-sha256", "-extfile", ext, "-out", cert)
        return cert, key

    def _issue_expired(self, csr, cert, ext, serial):
        """Valid in January 2020 only ("openssl ca" sets the dates)."""
        db = os.path.join(self.dir, "ca-%d" % serial)
        os.mkdir(db)
        open(os.path.join(db, "index.txt"), "w").close()
        with open(os.path.join(db, "serial"), "w") as f:
            f.write("%04X\n" % serial)
        cnf = os.path.join(db, "ca.cnf")
        with open(cnf, "w") as f:
            f.write("[ca]\ndefault_ca = kg\n[kg]\ndatabase = %s/index.txt\n"
                    "new_certs_dir = %s\nserial = %s/serial\n"
                    "default_md = sha256\npolicy = pol\n"
                    "unique_subject = no\n[pol]\ncommonName = supplied\n" %
                    (db, db, db))
        openssl("ca", "-batch", "-config", cnf, "-cert", self.pem,
                "-keyfile", self.key, "-in", csr, "-out", cert, "-notext",
                "-startdate", "20200101000000Z", "-enddate",
                "20200201000000Z", "-extfile", ext)


def der(path):
    """The DER bytes of the (first) certificate in a PEM file."""
    with open(path) as f:
        text = f.read()
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----",
                  text, re.S)
    kg.check(m is not None, "no certificate in %s" % path)
    return ssl.PEM_cert_to_DER_cert(m.group(0))


_pki = None


def pki():
    """The certificates shared by the tests that do not change them."""
    global _pki
    if _pki is None:
        dir = kg.tempdir()
        ca = CA(dir, "ca")
        p = {"dir": dir, "ca": ca, "other": CA(dir, "other")}
        p["a"] = ca.issue("a", ["a.test", "www.a.test"], "rsa")
        p["b"] = ca.issue("b", ["b.test"], "ec")
        p["dual_rsa"] = ca.issue("dual-rsa", ["dual.test"], "rsa")
        p["dual_ec"] = ca.issue("dual-ec", ["dual.test"], "ec")
        p["local"] = ca.issue("local", ["localhost", "127.0.0.1"], "ec")
        _pki = p
    return _pki


def cert_line(pair):
    return "tls_certificate %s %s" % pair


# --- the daemon and TLS clients ----------------------------------------------

def tls_conf(*lines, certs=(), workers=1, upstream=True, **settings):
    """A plain listener on {port}, a TLS one on {port2}, certs, lines."""
    out = [cert_line(c) for c in certs] + list(lines)
    if not any(line.startswith("route ") for line in out):
        out.append(ROUTE)
    return kg.config(*out, listen=PLAIN_AND_TLS, workers=workers,
                     upstream=upstream, **settings)


def start(*lines, certs=None, **kw):
    """A daemon with conf tls_conf(...) serving on both listeners."""
    if certs is None:
        certs = (pki()["a"], pki()["b"])
    d = kg.start(tls_conf(*lines, certs=certs, **kw), nports=2)
    d.tls_port = d.ports[1]
    wait_tls(d)
    return d


def client_ctx(ca=None, version=None, ciphers=None, alpn=("http/1.1",),
               check_name=True):
    """A client context trusting ca (the test CA); version pins one."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca or pki()["ca"].pem)
    ctx.check_hostname = check_name
    if version is not None:
        ctx.minimum_version = version
        ctx.maximum_version = version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


class TLSConn(kg.Conn):
    """kg.Conn over TLS: the handshake is done when it returns."""

    def __init__(self, port, ctx=None, sni="a.test", session=None,
                 timeout=kg.DEFAULT_TIMEOUT):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        try:
            self.sock = (ctx or client_ctx()).wrap_socket(
                raw, server_hostname=sni, session=session)
        except BaseException:
            raw.close()
            raise
        self.buf = b""
        self.eof = False
        self.received = 0

    def get(self, path="/", headers=()):
        self.send(kg.raw_request("GET", path, headers=list(headers)))
        return self.read_response()


def wait_tls(d, timeout=kg.START_TIMEOUT):
    """Until d's TLS listener completes a handshake and answers a GET."""
    deadline = time.monotonic() + timeout
    last = None
    ctx = client_ctx(check_name=False)	# whatever names d serves
    while time.monotonic() < deadline:
        try:
            with TLSConn(d.tls_port, ctx, timeout=1.0) as c:
                c.get()
                return
        except (OSError, kg.NoResponse, kg.ProtocolError) as e:
            last = e
            time.sleep(0.05)
    raise AssertionError("the TLS listener on port %d does not answer after "
                         "%.0f s: %r" % (d.tls_port, timeout, last))


class Session:
    """What a TLS connection negotiated (read before it closed)."""

    def __init__(self, sock):
        self.version = sock.version()
        self.alpn = sock.selected_alpn_protocol()
        self.cipher = sock.cipher()[0]
        self.reused = sock.session_reused


def tls_get(d, path="/", **kw):
    """One GET on a new TLS connection; (response, Session)."""
    with TLSConn(d.tls_port, **kw) as c:
        r = c.get(path)
        return r, Session(c.sock)


def served_der(d, sni, ctx=None):
    """The DER certificate d serves for sni (None: no SNI sent)."""
    ctx = ctx or client_ctx(check_name=False)
    with TLSConn(d.tls_port, ctx, sni=sni) as c:
        return c.sock.getpeercert(binary_form=True)


def handshake_error(port, ctx, sni="a.test", what="the handshake"):
    """The SSLError of a handshake that must fail (fails if it works)."""
    try:
        with TLSConn(port, ctx, sni=sni):
            pass
    except ssl.SSLError as e:
        return e
    except (ConnectionResetError, BrokenPipeError) as e:
        return e
    raise AssertionError("%s succeeded; it must fail" % what)


def ssl_says(e, pattern):
    """Does the handshake error e say pattern (words, any case)?"""
    text = "%s %s" % (getattr(e, "reason", None) or "", e)
    return re.search(pattern, text.replace("_", " "), re.I) is not None


def name_of(dercert):
    for k, v in pki().items():
        if isinstance(v, tuple) and der(v[0]) == dercert:
            return k
    return "an unknown certificate"


def expect_cert(got, pair, what):
    kg.check(got == der(pair[0]), "%s: got %s, expected %s" %
             (what, name_of(got), os.path.basename(pair[0])))


# === the harness itself ======================================================

def test_harness_pki_and_https_upstream():
    """The CA, the certificates and upstream.py --tls work (no keygated)."""
    p = pki()
    openssl("verify", "-CAfile", p["ca"].pem, p["a"][0], p["b"][0],
            p["local"][0])
    up = U.Upstream(name="tlsup", tls=p["local"])
    try:
        kg.check(up.url.startswith("https://"), "url %r" % up.url)
        ctx = client_ctx(alpn=None)
        with TLSConn(up.port, ctx, sni="localhost") as c:
            r = c.get("/x")
            kg.eq(r.status, 200, "upstream over TLS")
        e = handshake_error(up.port, client_ctx(p["other"].pem, alpn=None),
                            sni="localhost", what="trusting another CA")
        kg.check(ssl_says(e, r"certificate verify failed"),
                 "another CA: %r" % e)
        st = up.stats()
        kg.eq(st["requests"], 1, "requests at the upstream")
        # The upstream's thread counts the failure after the client saw it.
        kg.wait_for(lambda: up.stats()["tls_failed"] == 1, 2,
                    "one failed handshake at the upstream (%r)" % st)
    finally:
        up.stop()


# === keygated -t =============================================================

def write_conf(*lines, listen=PLAIN_AND_TLS):
    """A config file (not started); returns (path, its text)."""
    dir = kg.tempdir()
    text = kg.fill(kg.config(*lines, ROUTE, listen=listen), dir,
                   kg.free_ports(2))
    path = os.path.join(dir, "keygate.conf")
    with open(path, "w") as f:
        f.write(text)
    return path, text


def line_of(text, prefix):
    """The 1-based number of the first line starting with prefix."""
    for i, line in enumerate(text.splitlines(), 1):
        if line.startswith(prefix):
            return i
    raise AssertionError("no line %r in the config" % prefix)


def check_t_error(lines, message, at, listen=PLAIN_AND_TLS, what=""):
    """keygated -t fails, naming FILE:LINE of the line starting with at."""
    path, text = write_conf(*lines, listen=listen)
    p = kg.keygated("-t", "-c", path)
    out = p.stderr + p.stdout
    kg.check(p.returncode != 0, "-t exit status 0 for %s (output %r)" %
             (what, out))
    want = "%s:%d: " % (path, line_of(text, at)) if at else path + ":"
    kg.check(want in out, "-t output for %s does not name %s: %r" %
             (what, want, out))
    if not at:
        kg.check(re.search(re.escape(path) + r":\d+: ", out),
                 "-t output for %s has no %s:LINE: %r" % (what, path, out))
    kg.check(re.search(message, out, re.I),
             "-t output for %s does not say /%s/: %r" % (what, message, out))


def test_config_check():
    p = pki()
    d = p["dir"]
    good = [cert_line(p["a"]), cert_line(p["b"]), "tls_protocols TLSv1.2 "
            "TLSv1.3", "tls_session_tickets on",
            "tls_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:"
            "ECDHE-RSA-AES128-GCM-SHA256",
            "tls_ciphersuites TLS_AES_128_GCM_SHA256"]
    path, _ = write_conf(*good)
    r = kg.keygated("-t", "-c", path)
    kg.eq(r.returncode, 0, "-t of a good TLS config (output %r)" %
          (r.stderr + r.stdout))
    missing = os.path.join(d, "missing.pem")
    check_t_error([cert_line((missing, p["a"][1]))], r"missing\.pem|no such",
                  "tls_certificate", what="a missing certificate file")
    check_t_error([cert_line((p["a"][0], p["b"][1]))],
                  r"key|match", "tls_certificate",
                  what="a key that does not match")
    check_t_error([], r"tls_certificate|certificate", None,
                  what="a tls listener without tls_certificate")
    for v in ("TLSv1.1", "TLSv1.2 SSLv3", "TLSv9"):
        check_t_error([cert_line(p["a"]), "tls_protocols %s" % v],
                      r"tls_protocols|protocol", "tls_protocols",
                      what="tls_protocols %s" % v)
    check_t_error([cert_line(p["a"]), "tls_session_tickets maybe"],
                  r"tls_session_tickets", "tls_session_tickets",
                  what="tls_session_tickets maybe")
    check_t_error([cert_line(p["a"]), "tls_ciphers NO-SUCH-CIPHER"],
                  r"tls_ciphers|cipher", "tls_ciphers",
                  what="an unknown tls_ciphers")
    exp = p["ca"].issue("expired", ["expired.test"], "ec", expired=True)
    path, _ = write_conf(cert_line(exp))
    r = kg.keygated("-t", "-c", path)
    out = r.stderr + r.stdout
    kg.eq(r.returncode, 0, "-t with an expired certificate (output %r)" %
          out)
    kg.check(re.search(r"expire", out, re.I),
             "-t with an expired certificate: no warning: %r" % out)


# === certificates, protocols, ALPN ===========================================

def test_sni_picks_certificate():
    p = pki()
    d = start()
    expect_cert(served_der(d, "a.test"), p["a"], "SNI a.test")
    expect_cert(served_der(d, "www.a.test"), p["a"], "SNI www.a.test")
    expect_cert(served_der(d, "b.test"), p["b"], "SNI b.test")
    expect_cert(served_der(d, "B.Test"), p["b"], "SNI B.Test")
    expect_cert(served_der(d, "unknown.test"), p["a"], "an unknown SNI")
    expect_cert(served_der(d, None), p["a"], "no SNI")
    # Verified by name, end to end.
    r, _ = tls_get(d, sni="b.test")
    kg.eq(r.status, 200, "GET with SNI b.test")


def test_rsa_and_ecdsa_for_one_name():
    p = pki()
    d = start(certs=(p["a"], p["dual_rsa"], p["dual_ec"]))
    for ciphers, want in (("ECDHE-ECDSA-AES128-GCM-SHA256", "dual_ec"),
                          ("ECDHE-RSA-AES128-GCM-SHA256", "dual_rsa"),
                          ("ECDHE-ECDSA-CHACHA20-POLY1305", "dual_ec"),
                          ("ECDHE-RSA-AES256-GCM-SHA384", "dual_rsa")):
        ctx = client_ctx(version=ssl.TLSVersion.TLSv1_2, ciphers=ciphers)
        with TLSConn(d.tls_port, ctx, sni="dual.test") as c:
            expect_cert(c.sock.getpeercert(binary_form=True), p[want],
                        "TLS 1.2 client limited to %s" % ciphers)
            kg.eq(c.sock.cipher()[0], ciphers, "cipher")
            kg.eq(c.get().status, 200, "GET with %s" % ciphers)


def tls11_refused(port):
    """
    Check that a TLS 1.1 ClientHello is refused by the server; returns a
    note if this machine cannot send one (the check was not made).
    """
    ctx = client_ctx(alpn=None, check_name=False)
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pass
    else:
        e = handshake_error(port, ctx, what="a TLS 1.1 handshake")
        if ssl_says(e, r"alert protocol version"):
            return None
        # Else the client itself would not send TLS 1.1 here.
        kg.check(ssl_says(e, r"no protocols|unsupported protocol"),
                 "TLS 1.1 failed but not for the protocol version: %r" % e)
    if OPENSSL is None:
        return "no openssl program to send a TLS 1.1 ClientHello"
    try:
        p = subprocess.run(
            [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port,
             "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0", "-servername",
             "a.test"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, timeout=10, universal_newlines=True)
    except subprocess.TimeoutExpired:
        raise AssertionError("openssl s_client -tls1_1 hung")
    out = p.stdout
    if re.search(r"no protocols available|unsupported protocol|"
                 r"unknown option", out, re.I) and \
            not re.search(r"alert protocol version", out, re.I):
        return "this openssl does not send TLS 1.1: %s" % out[-200:]
    kg.check(p.returncode != 0, "openssl s_client -tls1_1 connected: %s" %
             out[-600:])
    kg.check(re.search(r"alert protocol version|wrong version|"
                       r"version too low", out, re.I),
             "TLS 1.1 failed but not for the protocol version: %s" %
             out[-600:])
    return None


def test_protocol_versions():
    d = start()
    for v, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                    (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        r, s = tls_get(d, ctx=client_ctx(version=v))
        kg.eq(r.status, 200, "%s: status" % name)
        kg.eq(s.version, name, "negotiated version")
    note = tls11_refused(d.tls_port)
    if note:
        print("# note: TLS 1.1 refusal not checked: %s" % note)
    r, _ = tls_get(d)
    kg.eq(r.status, 200, "a request after the refused handshakes")
    # tls_protocols TLSv1.3: a TLS 1.2 client is refused.
    d2 = start("tls_protocols TLSv1.3")
    e = handshake_error(d2.tls_port, client_ctx(
        version=ssl.TLSVersion.TLSv1_2), what="a TLS 1.2 handshake with "
        "tls_protocols TLSv1.3")
    kg.check(ssl_says(e, r"protocol version"),
             "TLS 1.2 against tls_protocols TLSv1.3: %r" % e)
    r, s = tls_get(d2)
    kg.eq((r.status, s.version), (200, "TLSv1.3"), "TLS 1.3 only")


def test_alpn():
    d = start()
    r, s = tls_get(d, ctx=client_ctx(alpn=("h2", "http/1.1")))
    kg.eq(r.status, 200, "status")
    kg.eq(s.alpn, "http/1.1", "ALPN h2,http/1.1")
    r, s = tls_get(d, ctx=client_ctx(alpn=None))
    kg.eq((r.status, s.alpn), (200, None), "no ALPN")
    # tls.h: only other protocols offered -> no_application_protocol.
    e = handshake_error(d.tls_port, client_ctx(alpn=("h2",)),
                        what="a handshake offering ALPN h2 only")
    kg.check(ssl_says(e, r"no application protocol"),
             "ALPN h2 only: not refused with no_application_protocol: %r" %
             e)


# === requests over TLS =======================================================

def test_keepalive_100_requests_and_forwarded_proto():
    d = start()
    with TLSConn(d.tls_port) as c:
        for i in range(100):
            r = c.get("/ka/%d" % i)
            h = kg.echo_headers(r, "request %d on one TLS connection" % i)
            kg.check(not r.closes(), "request %d: Connection: close" % i)
            kg.eq(h.get("x-forwarded-proto"), "https",
                  "request %d: X-Forwarded-Proto at the echo upstream" % i)
    with kg.Conn(d.port) as c:
        c.send(kg.raw_request("GET", "/plain"))
        h = kg.echo_headers(c.read_response(), "plain listener")
        kg.eq(h.get("x-forwarded-proto"), "http", "plain X-Forwarded-Proto")


def test_forwarded_proto_at_a_real_upstream():
    up = U.Upstream(name="plainup")
    try:
        d = start("upstream up %s" % up.url, upstream=False)
        for proto, r in (("https", tls_get(d, "/fp")[0]),
                         ("http", kg.request(d.port, "GET", "/fp"))):
            kg.eq(r.status, 200, "%s: status" % proto)
            j = r.json()
            got = [v for n, v in j["headers"]
                   if n.lower() == "x-forwarded-proto"]
            kg.eq(got, [proto], "X-Forwarded-Proto from the %s listener" %
                  proto)
    finally:
        up.stop()


def test_admin_listener_over_tls():
    d = kg.start(tls_conf(certs=(pki()["a"],), admin="{port3} tls"),
                 nports=3)
    d.tls_port = d.ports[1]
    wait_tls(d)
    kg.eq(d.admin_port, d.ports[2], "admin port")
    auth = "Authorization: Bearer %s" % kg.ADMIN_TOKEN
    with TLSConn(d.admin_port) as c:
        r = c.get("/v1/keys", headers=[tuple(auth.split(": ", 1))])
        kg.eq(r.status, 200, "GET /v1/keys over TLS (body %r)" % r.body[:200])
        r = c.get("/v1/keys")
        kg.check_refusal(r, 401, "unauthorized", "no token over TLS")
    with kg.Conn(d.admin_port) as c:
        c.send(kg.raw_request("GET", "/v1/keys", headers=[
            tuple(auth.split(": ", 1))]))
        got = c.wait_closed(timeout=5.0)
        kg.check(not got.startswith(b"HTTP/"), "plain HTTP answered on the "
                 "TLS admin listener: %r" % got[:100])


def rid(r):
    v = r.header("x-request-id")
    kg.check(v, "no X-Request-Id in %r" % r)
    return v


def test_access_log_tls_fields():
    d = start()
    r, s = tls_get(d, "/al13", ctx=client_ctx(
        version=ssl.TLSVersion.TLSv1_3))
    kg.eq(s.version, "TLSv1.3", "negotiated version")
    e = d.access_by_id(rid(r))
    kg.eq((e.get("tls"), e.get("tls_resumed")), ("TLSv1.3", False),
          "access log of a TLS 1.3 request: %r" % e)
    ctx12 = client_ctx(version=ssl.TLSVersion.TLSv1_2)
    with TLSConn(d.tls_port, ctx12) as c:
        e = d.access_by_id(rid(c.get("/al12")))
        sess = c.sock.session
    kg.eq((e.get("tls"), e.get("tls_resumed")), ("TLSv1.2", False),
          "access log of a TLS 1.2 request: %r" % e)
    with TLSConn(d.tls_port, ctx12, session=sess) as c:
        kg.check(c.sock.session_reused, "TLS 1.2 session not resumed")
        e = d.access_by_id(rid(c.get("/al12r")))
    kg.eq((e.get("tls"), e.get("tls_resumed")), ("TLSv1.2", True),
          "access log of a resumed request: %r" % e)
    r = kg.request(d.port, "GET", "/plain")
    e = d.access_by_id(rid(r))
    kg.check("tls" not in e and "tls_resumed" not in e,
             "access log of a plain request has TLS fields: %r" % e)


# === session resumption ======================================================

def new_session(d, ctx, session=None):
    """A request on a new connection; (resumed?, session, worker pid)."""
    with TLSConn(d.tls_port, ctx, session=session) as c:
        r = c.get("/resume")
        kg.eq(r.status, 200, "status")
        # TLS 1.3 tickets come after the handshake: read them by now.
        return c.sock.session_reused, c.sock.session, \
            d.access_by_id(rid(r)).get("pid")


def resumes_on_other_worker(d, ctx, what):
    """A session made on one worker resumes on the other one.  Each worker
    accepts on a socket of its own (SO_REUSEPORT) that the kernel hashes a
    connection onto by its port, so a stopped worker would leave the
    connections hashed to it waiting: new ones are made until one lands on
    the other worker (each does with probability 1/2)."""
    _, sess, first = new_session(d, ctx)
    for i in range(20):
        reused, _, pid = new_session(d, ctx, sess)
        if pid != first:
            break
    kg.check(pid != first, "%s: 20 connections all went to worker %s" %
             (what, first))
    kg.check(reused, "%s: the session from worker %s did not resume on "
             "worker %s" % (what, first, pid))


def test_resumption_across_workers_and_reload():
    d = start(workers=2)
    before = d.wait_workers(2)
    for v in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        ctx = client_ctx(version=v)
        resumes_on_other_worker(d, ctx, "%s, 2 workers" % v.name)
    ctx = client_ctx()
    _, sess, _ = new_session(d, ctx)
    d.signal(signal.SIGHUP)
    d.wait_log(r"configuration reloaded")
    d.wait_workers(2, exclude=before)
    reused, _, pid = new_session(d, ctx, sess)
    kg.check(reused, "a session made before SIGHUP did not resume on the "
             "new worker %s" % pid)


def test_session_tickets_off():
    d = start("tls_session_tickets off", workers=2)
    for v in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        ctx = client_ctx(version=v)
        reused, sess, _ = new_session(d, ctx)
        kg.check(not reused, "first connection resumed?")
        for i in range(5):
            if sess is None:
                break
            reused, sess, pid = new_session(d, ctx, sess)
            kg.check(not reused, "%s: connection %d resumed (worker %s) "
                     "with tls_session_tickets off" % (v.name, i + 1, pid))


# === reload ==================================================================

def test_reload_new_certificate():
    ca = pki()["ca"]
    pair = ca.issue("r1", ["reload.test"], "ec", serial=5001)
    d = start(certs=(pair,))
    old = served_der(d, "reload.test")
    kg.eq(old, der(pair[0]), "the certificate served at start")
    ca.issue("r1", ["reload.test"], "ec", serial=5002)	# same paths
    new = der(pair[0])
    kg.check(new != old, "the new certificate file is the same")
    d.signal(signal.SIGHUP)
    d.wait_log(r"configuration reloaded")
    kg.wait_for(lambda: served_der(d, "reload.test") == new, 5.0,
                "the new certificate (serial 5002) on new connections")
    r, _ = tls_get(d, sni="reload.test")
    kg.eq(r.status, 200, "a request after the reload")


def test_reload_broken_certificate_keeps_old():
    ca = pki()["ca"]
    pair = ca.issue("r2", ["broken.test"], "rsa", serial=6001)
    d = start(certs=(pair,))
    old = der(pair[0])
    kg.eq(served_der(d, "broken.test"), old, "the certificate at start")
    # A new certificate for another key, written over the old file: the
    # key file no longer matches it.
    other = ca.issue("r2-other", ["broken.test"], "rsa", serial=6002)
    shutil.copyfile(other[0], pair[0])
    lineno = line_of(open(d.conf_path).read(), "tls_certificate")
    d.signal(signal.SIGHUP)
    d.wait_log(r"reload failed.*%s:%d: " % (re.escape(d.conf_path), lineno),
               what="reload failed with %s:%d" % (d.conf_path, lineno))
    for i in range(5):
        kg.eq(served_der(d, "broken.test"), old,
              "connection %d after the failed reload" % i)
        r, _ = tls_get(d, sni="broken.test")
        kg.eq(r.status, 200, "request %d after the failed reload" % i)
    kg.eq(kg.request(d.port, "GET", "/p").status, 200, "plain listener")
    kg.check(d.master_alive(), "the master exited")


# === https upstreams =========================================================

def https_daemon(*upstreams, routes=()):
    """A daemon whose upstreams are the given lines; routes, or all to the
    first."""
    return start(*upstreams, *(list(routes) or [ROUTE]), upstream=False)


def test_https_upstream_verified_and_kept_alive():
    p = pki()
    up = U.Upstream(name="tlsup", tls=p["local"])
    try:
        d = https_daemon(
            "upstream ok %s ca=%s" % (up.url, p["ca"].pem),
            "upstream named %s ca=%s sni=localhost" % (up.url, p["ca"].pem),
            "upstream wrongname %s ca=%s sni=nobody.test" %
            (up.url, p["ca"].pem),
            routes=("route * ^/named(/|$) auth=anonymous upstream=named",
                    "route * ^/wrongname(/|$) auth=anonymous "
                    "upstream=wrongname",
                    ROUTE))
        up.reset()
        n = 6
        for i in range(n):
            r = kg.request(d.port, "GET", "/ok/%d" % i)
            kg.eq(r.status, 200, "request %d to the https upstream (body "
                  "%r)" % (i, r.body[:200]))
            kg.eq(r.json()["target"], "/ok/%d" % i, "target at the upstream")
        st = up.stats()
        kg.eq(st["requests"], n, "requests at the upstream")
        kg.check(st["connections"] < n, "the upstream saw %d connections "
                 "for %d requests: no keep-alive" % (st["connections"], n))
        r, _ = tls_get(d, "/named/1")
        kg.eq(r.status, 200, "sni=localhost (body %r)" % r.body[:200])
        r = kg.request(d.port, "GET", "/wrongname/1")
        kg.check_refusal(r, 502, "upstream_unavailable",
                         "sni=nobody.test, a name not in the certificate")
    finally:
        up.stop()


def test_https_upstream_wrong_ca_and_verify_off():
    p = pki()
    up = U.Upstream(name="tlsup", tls=p["local"])
    try:
        d = https_daemon(
            "upstream bad %s ca=%s" % (up.url, p["other"].pem),
            "upstream off %s ca=%s verify=off" % (up.url, p["other"].pem),
            routes=("route * ^/off(/|$) auth=anonymous upstream=off",
                    ROUTE))
        mark = len(d.errlog_text())
        r = kg.request(d.port, "GET", "/bad")
        kg.check_refusal(r, 502, "upstream_unavailable", "the wrong CA")
        kg.wait_for(lambda: re.search(r"(?i)verif|certificate",
                                      d.errlog_text()[mark:]), 3.0,
                    "an error log line saying the verification failed")
        r = kg.request(d.port, "GET", "/off/1")
        kg.eq(r.status, 200, "verify=off (body %r)" % r.body[:200])
        kg.eq(r.json()["target"], "/off/1", "target at the upstream")
    finally:
        up.stop()


def test_https_upstream_health_checks():
    """health= on https upstreams: the master's checks go over TLS with the
    upstream's CA and name, so a server whose certificate verifies passes
    (and serves), and one checked against the wrong CA is taken out with
    the TLS reason logged, and refused 502 at once."""
    p = pki()
    up = U.Upstream(name="tlsup", tls=p["local"])
    try:
        d = https_daemon(
            "upstream ok %s ca=%s health=/status/200 health_interval=200ms" %
            (up.url, p["ca"].pem),
            "upstream bad %s ca=%s health=/status/200 health_interval=200ms"
            % (up.url, p["other"].pem),
            routes=("route * ^/bad(/|$) auth=anonymous upstream=bad",
                    ROUTE))
        kg.wait_for(lambda: re.search(
            r"upstream bad: [^ ]+: health check failed \(TLS: [^)]*"
            r"(?i:verify|certificate)[^)]*\); out", d.errlog_text()), 5.0,
            "the bad upstream out after a TLS failure")
        # Checks of "ok" have passed meanwhile: it was never taken out.
        kg.wait_for(lambda: up.stats()["requests"] >= 2, 5.0,
                    "two health checks of the ok upstream")
        kg.check(not re.search(r"upstream ok: .*; out", d.errlog_text()),
                 "the ok upstream was taken out:\n%s" % d.errlog_text())
        r = kg.request(d.port, "GET", "/ok/1")
        kg.eq(r.status, 200, "through the checked https upstream (body "
              "%r)" % r.body[:200])
        r = kg.request(d.port, "GET", "/bad")
        j = kg.check_refusal(r, 502, "upstream_unavailable", "bad CA, out")
        kg.eq(j["message"], "every server of the upstream failed its "
              "health check", "message")
    finally:
        up.stop()


# === big bodies, bounded memory ==============================================

def big_daemon(up, **settings):
    return start("upstream up %s read_timeout=30s" % up.url, upstream=False,
                 max_body_size="0", **settings)


def read_body_hashed(c, r, n, pause=0.0, step=1 << 20):
    """Read n body bytes of r on c, hashed; pause s after each step bytes."""
    h = hashlib.sha256()
    got = len(c.buf)
    h.update(c.buf)
    c.buf = b""
    while got < n:
        want = min(got + step, n)
        while got < want:
            d = c.sock.recv(want - got)
            kg.check(d, "connection closed after %d of %d body bytes" %
                     (got, n))
            h.update(d)
            got += len(d)
        if pause:
            time.sleep(pause)
    return h.hexdigest()


def test_big_upload_100m_over_tls():
    up = U.Upstream(name="up")
    try:
        d = big_daemon(up)
        n = 100 * MiB
        want = U.pattern_sha256(n)
        w = kg.RssWatch(d)
        with TLSConn(d.tls_port, timeout=30) as c:
            # The upstream waits 1 s before reading: keygate must stop
            # reading from the client meanwhile, not buffer.
            c.send(kg.raw_request("POST", "/upload?stall_ms=1000", headers=[
                ("Content-Length", str(n))]))
            for piece in U.pattern_iter(n, MiB):
                c.send(piece)
            r = c.read_response()
        w.check(RSS_LIMIT_MIB, "100 MiB upload over TLS")
        kg.eq(r.status, 200, "status (body %r)" % r.body[:200])
        j = r.json()
        kg.eq(j["body_bytes"], n, "bytes at the upstream")
        kg.eq(j["body_sha256"], want, "sha256 at the upstream")
    finally:
        up.stop()


def test_big_download_100m_over_tls():
    up = U.Upstream(name="up")
    try:
        d = big_daemon(up)
        n = 100 * MiB
        want = U.pattern_sha256(n)
        w = kg.RssWatch(d)
        with TLSConn(d.tls_port, timeout=30) as c:
            c.send(kg.raw_request("GET", "/big?bytes=%d" % n))
            r = c.read_response(head=True)
            kg.eq(r.status, 200, "status")
            kg.eq(r.header("content-length"), str(n), "Content-Length")
            time.sleep(1.0)		# a slow start: nothing read for 1 s
            kg.eq(read_body_hashed(c, r, n), want, "sha256 of the body")
            r = c.get("/after-big")
            kg.eq(r.status, 200, "a request after the big response")
        w.check(RSS_LIMIT_MIB, "100 MiB download over TLS")
    finally:
        up.stop()


# === slow and foreign clients ================================================

def client_hello():
    """The bytes of a real ClientHello (SNI a.test)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx().wrap_bio(inc, out, server_hostname="a.test")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    kg.check(len(hello) > 100 and hello[0] == 0x16,
             "not a ClientHello: %r" % hello[:20])
    return hello


def test_half_client_hello_closed_after_header_timeout():
    d = start(header_timeout="1s")
    hello = client_hello()
    with kg.Conn(d.tls_port) as c:
        t0 = time.monotonic()
        c.send(hello[:len(hello) // 2])
        # Others are served meanwhile.
        for i in range(3):
            t1 = time.monotonic()
            r, _ = tls_get(d, "/other/%d" % i)
            kg.eq(r.status, 200, "another client %d" % i)
            kg.check(time.monotonic() - t1 < 0.9, "another client waited "
                     "%.1f s" % (time.monotonic() - t1))
        c.wait_closed(timeout=5.0)
        took = time.monotonic() - t0
    kg.check(0.7 <= took <= 4.0, "the half ClientHello was closed after "
             "%.2f s (header_timeout 1s)" % took)


def test_slow_reader_gets_everything():
    up = U.Upstream(name="up")
    try:
        d = big_daemon(up, header_timeout="1s")
        n = 16 * MiB
        want = U.pattern_sha256(n)
        with TLSConn(d.tls_port, timeout=10) as c:
            c.send(kg.raw_request("GET", "/big?bytes=%d" % n))
            time.sleep(1.5)		# longer than header_timeout
            r = c.read_response(head=True)
            kg.eq(r.status, 200, "status")
            # 16 MiB at 10 MiB/s (1 MiB, then 100 ms of nothing), while
            # another client is served.
            box = []

            def slow():
                try:
                    box.append(read_body_hashed(c, r, n, pause=0.1,
                                                step=MiB))
                except Exception as e:
                    box.append("the slow reader failed: %r" % e)
            t = threading.Thread(target=slow, daemon=True)
            t.start()
            time.sleep(0.5)
            t1 = time.monotonic()
            r2, _ = tls_get(d, "/meanwhile")
            kg.eq(r2.status, 200, "another client during the slow one")
            kg.check(time.monotonic() - t1 < 1.0, "another client waited "
                     "%.1f s" % (time.monotonic() - t1))
            t.join(20)
            kg.check(not t.is_alive(), "the slow reader did not finish")
            kg.eq(box, [want], "sha256 of the slowly read body")
    finally:
        up.stop()


def test_plain_http_client_on_tls_port():
    d = start()
    d.wait_log(r"started: ", what="the start-up line")  # logged last
    mark = len(d.errlog_text())
    with kg.Conn(d.tls_port) as c:
        c.send(kg.raw_request("GET", "/plain-on-tls", headers=[
            ("Connection", "close")]))
        c.wait_closed(timeout=5.0)
    with kg.Conn(d.tls_port) as c:
        c.send(b"\x00" * 64 + b"garbage\r\n\r\n")
        c.wait_closed(timeout=5.0)
    r, _ = tls_get(d, "/after")
    kg.eq(r.status, 200, "a TLS request after the plain clients")
    kg.eq(kg.request(d.port, "GET", "/p").status, 200, "plain listener")
    time.sleep(0.2)
    new = d.errlog_text()[mark:]
    kg.check(new.strip() == "", "the error log (log_level info) has lines "
             "for the failed handshakes: %r" % new[-600:])


if __name__ == "__main__":
    kg.run([
        test_harness_pki_and_https_upstream,
        test_config_check,
        test_sni_picks_certificate,
        test_rsa_and_ecdsa_for_one_name,
        test_protocol_versions,
        test_alpn,
        test_keepalive_100_requests_and_forwarded_proto,
        test_forwarded_proto_at_a_real_upstream,
        test_admin_listener_over_tls,
        test_access_log_tls_fields,
        test_resumption_across_workers_and_reload,
        test_session_tickets_off,
        test_reload_new_certificate,
        test_reload_broken_certificate_keeps_old,
        test_https_upstream_verified_and_kept_alive,
        test_https_upstream_wrong_ca_and_verify_off,
        test_https_upstream_health_checks,
        test_big_upload_100m_over_tls,
        test_big_download_100m_over_tls,
        test_half_client_hello_closed_after_header_timeout,
        test_slow_reader_gets_everything,
        test_plain_http_client_on_tls_port,
    ])
