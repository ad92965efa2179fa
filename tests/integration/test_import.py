"""
Keys brought from another gateway (issue 14).

- POST /v1/keys with "secret" (any 8..512 visible ASCII characters) or
  "secret_sha256": the key authenticates through the proxy on an api-key
  route (X-API-KEY and Basic), also secrets with dots, slashes, "=", a
  JWT-like shape, quotes and 512 characters; the answer never echoes the
  secret; the secret is in no log (error log, access log) nor in the
  state files.
"""

import base64
import hashlib
import json
import os

import kgtest as kg

ODD = [
    "ab.cd.ef",                         # dots
    "eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl",  # a JWT's shape
    "abc/def+ghi=",                     # base64
    "a=b=c=d==",
    "quote\"back\\slash'",
    "~!@#$%^&*()[]{}<>?,;:`|",
    "".join(chr(0x21 + i % 94) for i in range(512)),
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "kong-key-0123456789",
]


def import_conf(workers=1):
    return kg.config(
        "route GET ^/k(/|$) auth=api-key rate=off",
        "route * .* auth=deny",
        admin="{port2}", workers=workers)


def through_proxy(d, secret, what):
    """The secret authenticates as X-API-KEY and as Basic's password."""
    r = kg.get(d.port, "/k/x", headers={"X-API-KEY": secret})
    kg.eq(r.status, 200, "%s through X-API-KEY (%s)" % (what, r.body[:200]))
    basic = base64.b64encode((":" + secret).encode()).decode()
    r = kg.get(d.port, "/k/x", headers={"Authorization": "Basic " + basic})
    kg.eq(r.status, 200, "%s through Basic (%s)" % (what, r.body[:200]))
    return r


def no_secret_on_disk(d, secrets):
    """None of secrets in the error log, access log or state files."""
    files = [os.path.join(d.dir, "error.log"),
             os.path.join(d.dir, "access.log")]
    state = os.path.join(d.dir, "state")
    files += [os.path.join(state, n) for n in os.listdir(state)]
    for path in files:
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        for s in secrets:
            kg.check(s.encode() not in data,
                     "a brought secret is in %s" % path)


def test_create_with_secret():
    d = kg.start(import_conf(), nports=2)
    for s in ODD:
        r = kg.admin(d, "POST", "/v1/keys", {"owner": "mig", "secret": s})
        kg.eq(r.status, 201, "create with %r (%s)" % (s[:20], r.body[:200]))
        k = r.json()
        kg.check("secret" not in k, "the answer echoes the secret")
        kg.check(s.encode() not in r.body, "the answer holds the secret")
        kg.check(len(k["hint"]) <= 12 and (len(s) < 16 or
                 k["hint"].endswith(s[-4:])), "hint %r" % k["hint"])
        r = through_proxy(d, s, "secret %r" % s[:20])
        kg.eq(kg.echo_headers(r, "echo").get("x-key-id"), k["id"],
              "X-Key-Id for %r" % s[:20])
    # The same secret again: 409, and a wrong one still refused.
    r = kg.admin(d, "POST", "/v1/keys", {"owner": "x", "secret": ODD[0]})
    kg.eq(r.status, 409, "a secret another key has")
    kg.check_refusal(kg.get(d.port, "/k/x", headers={"X-API-KEY":
                     ODD[0] + "x"}), 401, "invalid_credentials")
    # Bad secrets: 422 naming the field, the value not quoted.
    for bad in ("short", "has space inside", "tab\there1", "caf\u00e9-secret",
                "x" * 513):
        r = kg.admin(d, "POST", "/v1/keys", {"owner": "x", "secret": bad})
        kg.eq(r.status, 422, "secret %r" % bad[:20])
        kg.eq(r.json().get("field"), "secret", "field of %r" % bad[:20])
        kg.check(bad.encode() not in r.body, "the 422 quotes the secret")
    # The digest alone.
    legacy = "legacy/secret=42"
    r = kg.admin(d, "POST", "/v1/keys", {
        "owner": "old", "secret_sha256": hashlib.sha256(
            legacy.encode()).hexdigest(), "hint": "leg...42"})
    kg.eq(r.status, 201, "create with secret_sha256 (%s)" % r.body[:200])
    kg.eq(r.json()["hint"], "leg...42", "given hint")
    through_proxy(d, legacy, "secret_sha256")
    # keygatectl create --secret-stdin.
    env = kg.ctl_env(url="http://127.0.0.1:%d" % d.admin_port,
                     token=kg.ADMIN_TOKEN)
    s = "ctl.brought/secret=1"
    p = kg.ctl_run(["--json", "create", "--owner", "ctl",
                    "--secret-stdin"], env, stdin=s + "\n")
    kg.eq(p.returncode, 0, "keygatectl create --secret-stdin: " + p.stderr)
    kg.check(s not in p.stdout + p.stderr, "keygatectl prints the secret")
    through_proxy(d, s, "keygatectl's brought secret")
    p = kg.ctl_run(["--json", "verify", "--key", ODD[1]], env)
    kg.eq(p.returncode, 0, "verify --key of a JWT-like key: " + p.stderr)
    kg.eq(json.loads(p.stdout)["valid"], True, "verify --key")
    p = kg.ctl_run(["--json", "verify", ODD[0]], env)
    kg.eq(p.returncode, 0, "verify of a dotted key: " + p.stderr)
    d.stop()
    no_secret_on_disk(d, ODD + [legacy, s])
    # After a restart (journal replay) they still work.
    d.start()
    for s in ODD:
        through_proxy(d, s, "after a restart, %r" % s[:20])
    d.check_healthy()


TESTS = [test_create_with_secret]

if __name__ == "__main__":
    kg.run(TESTS)
