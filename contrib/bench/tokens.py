#!/usr/bin/python3
"""Make the keys and tokens of the jwt-* and jwks-refresh benchmark workloads.

    /usr/bin/python3 tokens.py N OUTDIR [PROVIDERS]

Needs PyJWT and cryptography (Debian: python3-jwt, python3-cryptography,
seen by /usr/bin/python3).  Writes into OUTDIR (created if missing):

    jwks.json       the JWKS keygated reads (jwks=PATH): the RSA key and the
                    EC P-256 key, Entra style: kty, use, kid, n/e or
                    crv/x/y, and no "alg"
    rsa.pub.pem     the RSA public key (PEM) for HAProxy's jwt_verify
    ec.pub.pem      the EC public key (PEM) for HAProxy's jwt_verify
    rs256.one       one RS256 token, as "Bearer TOKEN" (jwt-cached)
    rs256.pool      N RS256 tokens, one "Bearer TOKEN" line each, each with
                    its own sub (jwt-fresh)
    es256.pool      the same signed ES256 with the EC key (jwt-fresh-es256)
    check.hdr       "Authorization: Bearer TOKEN" of rs256.one (curl -H @)
    es256.hdr       the same for the first ES256 token
    bad.*           one "Authorization: Bearer TOKEN" line each, for the
                    checks; every system must refuse all of them:
                    bad.sig (signed by another RSA key, same kid), bad.exp
                    (expired an hour ago), bad.aud, bad.iss, bad.noexp (no
                    exp claim), bad.alg (HS256 with the RSA public key's
                    PEM as the secret: the alg confusion attack)
    sub.one         the sub of rs256.one (the checks look for it upstream)
    sub.es256       the sub of es256.hdr

With PROVIDERS (jwks-refresh), also, for each provider i in 1..PROVIDERS
(issuer https://bench.example/pI/, same audience, same RSA key, kid
"bench-rsa"):

    refresh/pI.base.json   pI's JWKS: the RSA key
    refresh/pI.next.json   the same plus a new EC key with kid "next-pI"
    refresh.pool           one RS256 token of each provider, "Bearer ..."
    refresh/check.hdr      "Authorization: Bearer TOKEN" of p1's token in
                           refresh.pool; refresh/sub: its sub
    refresh/ca.pem         a CA made for the run, and the certificate and
    refresh/server.pem     key it signed for the JWKS server on 127.0.0.1
    refresh/server.key     (jwks_server.py)
    refresh/pI.hdr         "Authorization: Bearer TOKEN", a token of pI
                           signed by the new key of pI.next.json: a kid that
                           pI.base.json lacks, which makes keygated re-fetch
                           pI's JWKS

Tokens carry the claims of a Microsoft Entra ID v2 access token (iss, aud,
sub, oid, tid, scp, ver, iat, nbf, exp), expire in 7 days, and have the
kid of their key in the header.  Keys are made afresh on every run.  Files
are created with mode 0600.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time
import uuid

import datetime

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://bench.example/"
AUDIENCE = "bench"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
RSA_KID = "bench-rsa"
EC_KID = "bench-ec"
LIFETIME = 7 * 86400


def b64u(n, size):
    """n as size big-endian bytes, base64url without padding."""
    return base64.urlsafe_b64encode(n.to_bytes(size, "big")).rstrip(
        b"=").decode()


def jwk_rsa(pub, kid):
    """The JWK of an RSA public key, as Entra publishes it (no alg)."""
    nums = pub.public_numbers()
    return {"kty": "RSA", "use": "sig", "kid": kid,
            "n": b64u(nums.n, (nums.n.bit_length() + 7) // 8),
            "e": b64u(nums.e, (nums.e.bit_length() + 7) // 8)}


def jwk_ec(pub, kid):
    """The JWK of a P-256 public key (no alg)."""
    nums = pub.public_numbers()
    return {"kty": "EC", "use": "sig", "kid": kid, "crv": "P-256",
            "x": b64u(nums.x, 32), "y": b64u(nums.y, 32)}


def pem(pub):
    return pub.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def claims(sub, now, issuer=ISSUER, **over):
    """An Entra-like claim set for sub."""
    c = {"aud": AUDIENCE, "iss": issuer, "iat": now - 60, "nbf": now - 60,
         "exp": now + LIFETIME, "sub": sub,
         "oid": str(uuid.UUID(int=hash(sub) & ((1 << 128) - 1))),
         "tid": TENANT, "scp": "bench.read bench.write", "ver": "2.0"}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def sign(c, key, alg, kid):
    return jwt.encode(c, key, algorithm=alg, headers={"kid": kid})


def write(path, text):
    """Create path with mode 0600 and write text."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def bearer_lines(tokens):
    return "".join("Bearer %s\n" % t for t in tokens)


def tls_files(out):
    """A CA, and a certificate it signs for 127.0.0.1, valid for a day."""
    import ipaddress
    from cryptography.x509.oid import NameOID
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                            "keygate bench CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name)
          .issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0),
                         critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False,
                                       True, True, False, False),
                         critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(
                NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                           critical=True)
            .sign(ca_key, hashes.SHA256()))
    d = os.path.join(out, "refresh")
    write(os.path.join(d, "ca.pem"),
          ca.public_bytes(serialization.Encoding.PEM).decode())
    write(os.path.join(d, "server.pem"),
          cert.public_bytes(serialization.Encoding.PEM).decode())
    write(os.path.join(d, "server.key"), key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode())


def refresh_files(out, n, rsa_key, rsa_pub, now):
    """The jwks-refresh files for providers p1..pn (see the docstring)."""
    os.makedirs(os.path.join(out, "refresh"), exist_ok=True)
    pool = []
    for i in range(1, n + 1):
        name = "p%d" % i
        iss = "%s%s/" % (ISSUER, name)
        base = {"keys": [jwk_rsa(rsa_pub, RSA_KID)]}
        nkey = ec.generate_private_key(ec.SECP256R1())
        nxt = {"keys": base["keys"] + [jwk_ec(nkey.public_key(),
                                              "next-" + name)]}
        write(os.path.join(out, "refresh", name + ".base.json"),
              json.dumps(base) + "\n")
        write(os.path.join(out, "refresh", name + ".next.json"),
              json.dumps(nxt) + "\n")
        pool.append(sign(claims("user-%s" % name, now, iss), rsa_key,
                         "RS256", RSA_KID))
        t = sign(claims("rotate-%s" % name, now, iss), nkey, "ES256",
                 "next-" + name)
        write(os.path.join(out, "refresh", name + ".hdr"),
              "Authorization: Bearer %s\n" % t)
    write(os.path.join(out, "refresh.pool"), bearer_lines(pool))
    write(os.path.join(out, "refresh", "check.hdr"),
          "Authorization: Bearer %s\n" % pool[0])
    write(os.path.join(out, "refresh", "sub"), "user-p1\n")
    tls_files(out)


def main():
    if len(sys.argv) not in (3, 4) or not sys.argv[1].isdigit() or \
            int(sys.argv[1]) < 1:
        sys.exit("usage: tokens.py N OUTDIR [PROVIDERS]")
    n = int(sys.argv[1])
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    now = int(time.time())

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_pub, ec_pub = rsa_key.public_key(), ec_key.public_key()

    write(os.path.join(out, "jwks.json"), json.dumps(
        {"keys": [jwk_rsa(rsa_pub, RSA_KID), jwk_ec(ec_pub, EC_KID)]}) + "\n")
    write(os.path.join(out, "rsa.pub.pem"), pem(rsa_pub).decode())
    write(os.path.join(out, "ec.pub.pem"), pem(ec_pub).decode())

    one = sign(claims("user-one", now), rsa_key, "RS256", RSA_KID)
    write(os.path.join(out, "rs256.one"), bearer_lines([one]))
    write(os.path.join(out, "check.hdr"), "Authorization: Bearer %s\n" % one)
    write(os.path.join(out, "sub.one"), "user-one\n")

    write(os.path.join(out, "rs256.pool"), bearer_lines(
        sign(claims("user-%d" % i, now), rsa_key, "RS256", RSA_KID)
        for i in range(n)))
    es = [sign(claims("user-%d" % i, now), ec_key, "ES256", EC_KID)
          for i in range(n)]
    write(os.path.join(out, "es256.pool"), bearer_lines(es))
    write(os.path.join(out, "es256.hdr"), "Authorization: Bearer %s\n" % es[0])
    write(os.path.join(out, "sub.es256"), "user-0\n")

    bad = {
        "sig": sign(claims("user-one", now), other, "RS256", RSA_KID),
        "exp": sign(claims("user-one", now, exp=now - 3600), rsa_key,
                    "RS256", RSA_KID),
        "aud": sign(claims("user-one", now, aud="other"), rsa_key, "RS256",
                    RSA_KID),
        "iss": sign(claims("user-one", now, "https://evil.example/"),
                    rsa_key, "RS256", RSA_KID),
        "noexp": sign(claims("user-one", now, exp=None), rsa_key, "RS256",
                      RSA_KID),
    }
    # HS256 keyed with the public key's PEM: PyJWT refuses to do it, so by
    # hand (the attack a verifier must not fall for).
    head = base64.urlsafe_b64encode(json.dumps(
        {"alg": "HS256", "typ": "JWT", "kid": RSA_KID}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(
        claims("user-one", now)).encode()).rstrip(b"=")
    mac = hmac.new(pem(rsa_pub), head + b"." + body, hashlib.sha256).digest()
    bad["alg"] = (head + b"." + body + b"." + base64.urlsafe_b64encode(
        mac).rstrip(b"=")).decode()
    for what, t in bad.items():
        write(os.path.join(out, "bad." + what),
              "Authorization: Bearer %s\n" % t)

    if len(sys.argv) == 4:
        refresh_files(out, int(sys.argv[3]), rsa_key, rsa_pub, now)


if __name__ == "__main__":
    main()
