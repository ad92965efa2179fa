"""
Keys brought from another gateway (issue 14).

- keygatectl import of each format (NDJSON, CSV, nginx map, Kong decK
  YAML and JSON), 1,000 keys each with odd secrets (quotes, backslashes,
  commas, "#", ";", braces, dots, "=", 512 characters): every key
  authenticates through the proxy with its owner and scopes; the same
  import again answers "unchanged" for every key and changes nothing;
  unreadable entries (regex map entries, short CSV rows) are reported
  and make the exit status 1.
- kill -9 during an import (the worker, then the whole daemon): every key
  keygatectl reported as created or unchanged before the kill works after
  it, and running the import again completes it.

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
import re
import signal
import subprocess
import time

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


def reopen(d):
    """A new daemon on d's state_dir (d is gone)."""
    with open(d.conf_path) as f:
        m = re.search(r"^state_dir\s+(\S+)\s*$", f.read(), re.M)
    return kg.start(import_conf().replace("state_dir {dir}/state",
                                          "state_dir " + m.group(1)),
                    nports=2)


def short(fmt):
    return {"kong-json": "kj"}.get(fmt, fmt[:2])


def odd_secret(fmt, i):
    """The i-th secret of a format's 1,000: unique, and often awkward."""
    tag = "%s%04d" % (short(fmt), i)
    shapes = [
        lambda: "kong-" + hashlib.sha1(tag.encode()).hexdigest(),
        lambda: base64.b64encode(hashlib.sha256(tag.encode()).digest())
        .decode(),                                      # "/", "+", "="
        lambda: "eyJ" + tag + ".eyJzdWIi." + tag,        # a JWT's shape
        lambda: 'q"uo\\te,' + tag + "#;{x}",           # CSV/nginx specials
        lambda: "'" + tag + "'=`|~!@$%^&*()",
        lambda: tag + "." * 3 + "/" * 3 + "=" * 3,
        lambda: tag + "-" + "x" * (512 - len(tag) - 1),  # the longest
        lambda: "sk_live_" + tag + "abcdefghijklmnop",
        lambda: "12345" + tag,
        lambda: tag + "[]<>?:",
    ]
    return shapes[i % len(shapes)]()


def keys_for(fmt, n=1000):
    """[(secret, owner, scopes)] for a format."""
    out = []
    for i in range(n):
        scopes = ["read"] if i % 3 == 0 else (["read", "write:all"]
                                              if i % 3 == 1 else [])
        out.append((odd_secret(fmt, i), "%s-owner-%d" % (short(fmt), i % 97),
                    scopes))
    return out


def nginx_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def deck_yaml(doc):
    """doc as decK writes it: block YAML; strings double-quoted, which
    json.dumps does the YAML way, or plain where they are plain words."""
    def q(v):
        return v if re.match(r"^[A-Za-z][A-Za-z0-9_-]*$", v) else \
            json.dumps(v)
    out = ['_format_version: "3.0"', "consumers:"]
    for c in doc["consumers"]:
        out.append("- username: " + q(c["username"]))
        out.append("  keyauth_credentials:")
        out += ["  - key: " + q(k["key"]) for k in c["keyauth_credentials"]]
        if c["acls"]:
            out.append("  acls:")
            out += ["  - group: " + q(a["group"]) for a in c["acls"]]
    return "\n".join(out) + "\n"


def write_input(dir, fmt, keys):
    """The file a provider would have for keys; its path."""
    if fmt == "ndjson":
        path = os.path.join(dir, "keys.ndjson")
        with open(path, "w") as f:
            for s, o, sc in keys:
                f.write(json.dumps({"owner": o, "secret": s,
                                    "scopes": sc}) + "\n")
    elif fmt == "csv":
        import csv
        path = os.path.join(dir, "keys.csv")
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["owner", "secret", "scopes", "name"])
            for s, o, sc in keys:
                w.writerow([o, s, " ".join(sc), "from csv"])
    elif fmt == "nginx-map":
        path = os.path.join(dir, "keys.map")
        with open(path, "w") as f:
            f.write("# API keys of the old gateway\n"
                    "map $http_x_api_key $api_client {\n"
                    "    default \"\";\n    hostnames;\n"
                    "    ~^legacy-[0-9]+$ legacy;   # a regex: skipped\n")
            for i, (s, o, sc) in enumerate(keys):
                plain = re.match(r"^[A-Za-z0-9._/=+-]+$", s)
                f.write("    %s %s;%s\n" % (s if plain and i % 2 else
                                              nginx_quote(s), o,
                                              "  # k%d" % i if i % 5 == 0
                                              else ""))
            f.write("}\n")
    else:
        cons = {}
        for s, o, sc in keys:
            c = cons.setdefault(o, {"username": o, "keyauth_credentials": [],
                                    "acls": [{"group": g} for g in sc]})
            c["keyauth_credentials"].append({"key": s})
        doc = {"_format_version": "3.0", "consumers": list(cons.values())}
        if fmt == "kong":
            path = os.path.join(dir, "kong.yaml")
            with open(path, "w") as f:
                f.write(deck_yaml(doc))
        else:
            path = os.path.join(dir, "kong.json")
            with open(path, "w") as f:
                json.dump(doc, f, indent=1)
    return path


def ctl_import(d, path, *args, check_rc=0):
    env = kg.ctl_env(url="http://127.0.0.1:%d" % d.admin_port,
                     token=kg.ADMIN_TOKEN)
    p = kg.ctl_run(["--json", "import"] + list(args) + [path], env)
    if check_rc is not None:
        kg.eq(p.returncode, check_rc, "keygatectl import %s exit status "
              "(%s)" % (os.path.basename(path), p.stderr[-500:]))
    return p, [json.loads(line) for line in p.stdout.splitlines()]


def keys_work(d, keys, scopes_of_owner=False):
    """Every secret authenticates, as its owner, with its scopes."""
    with kg.Conn(d.port) as c:
        for s, o, sc in keys:
            c.send(kg.raw_request("GET", "/k/x", headers=[("X-API-KEY", s)]))
            r = c.read_response()
            h = kg.echo_headers(r, "key %r" % s[:24])
            kg.eq(h.get("x-consumer-id"), o, "owner of %r" % s[:24])
            want = set(sc)
            kg.eq(set(h.get("x-scopes", "").split()) - {""}, want,
                  "scopes of %r" % s[:24])


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
    d2 = reopen(d)
    for s in ODD:
        through_proxy(d2, s, "after a restart, %r" % s[:20])
    d2.check_healthy()


def test_import_formats():
    d = kg.start(import_conf(), nports=2)
    dir = kg.tempdir()
    every = []
    for fmt in ("ndjson", "csv", "nginx-map", "kong", "kong-json"):
        keys = keys_for(fmt)
        if fmt == "kong-json":
            keys = keys[:200]
        if fmt == "nginx-map":
            keys = [(s, o, []) for s, o, _ in keys]	# a map has no scopes
        if fmt.startswith("kong"):
            # decK gives scopes per consumer: one set per owner.
            by = {}
            keys = [(s, o, by.setdefault(o, sc)) for s, o, sc in keys]
        every += [s for s, _, _ in keys]
        path = write_input(dir, fmt, keys)
        t0 = time.monotonic()
        p, res = ctl_import(d, path, check_rc=1 if fmt == "nginx-map" else 0)
        took = time.monotonic() - t0
        st = [r["status"] for r in res]
        kg.eq(st.count("created"), len(keys), "%s: keys created (%s)" %
              (fmt, [r for r in res if r["status"] != "created"][:3]))
        if fmt == "nginx-map":
            kg.eq(st.count("skipped"), 1, "nginx-map: the regex entry")
        kg.check(re.search(r"%d created, 0 unchanged, 0 failed" % len(keys),
                           p.stderr), "summary: " + p.stderr[-300:])
        keys_work(d, keys)
        # Again: nothing changes, every key "unchanged".
        p, res = ctl_import(d, path, check_rc=1 if fmt == "nginx-map"
                            else 0)
        kg.eq([r["status"] for r in res].count("unchanged"), len(keys),
              "%s: a second import is a no-op" % fmt)
        print("# %s: %d keys imported in %.2f s" % (fmt, len(keys), took))
    r = kg.admin(d, "GET", "/v1/keys?owner=cs-owner-1")
    kg.check(all(k["name"] == "from csv" for k in r.json()["keys"]),
             "csv names")
    # A CSV with a bad row: the others go in, exit status 1.
    path = os.path.join(dir, "bad.csv")
    with open(path, "w") as f:
        f.write("owner,secret\nok,good-secret-1\nshort,x\nonly-one\n"
                "ok,\"good,secret-2\"\n")
    p, res = ctl_import(d, path, check_rc=1)
    kg.eq([r["status"] for r in res], ["created", "error", "skipped",
                                       "created"], "bad.csv results")
    kg.eq(res[1]["error"]["code"], "invalid_field", "short secret")
    kg.eq(res[1]["where"], "line 3", "where of the short secret")
    # A file of another format: a clear error, nothing sent.
    p, _ = ctl_import(d, path, "--format", "kong", check_rc=1)
    kg.check("consumers" in p.stderr or "YAML" in p.stderr,
             "csv read as kong: " + p.stderr)
    d.stop()
    no_secret_on_disk(d, every)


def test_import_kill9():
    d = kg.start(import_conf(), nports=2)
    d.allow_worker_deaths = True
    dir = kg.tempdir()
    keys = keys_for("ndjson", 3000)
    path = write_input(dir, "ndjson", keys)
    env = kg.ctl_env(url="http://127.0.0.1:%d" % d.admin_port,
                     token=kg.ADMIN_TOKEN)

    def run_until_killed(kill):
        """Import in batches of 50; kill once 400 results are in."""
        p = subprocess.Popen([kg.ctl_binary(), "--json", "import",
                              "--batch", "50", path], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True)
        acked = []
        for line in p.stdout:
            r = json.loads(line)
            if r["status"] in ("created", "unchanged"):
                acked.append(int(r["where"].split()[1]) - 1)
            if len(acked) == 400:
                kill()
        p.wait(30)
        kg.check(p.returncode != 0, "keygatectl exit status after a kill")
        return acked

    worker = d.wait_workers(1)[0]
    acked = run_until_killed(lambda: os.kill(worker, signal.SIGKILL))
    d.wait_workers(1, exclude=[worker])
    kg.check(400 <= len(acked) < len(keys), "acknowledged: %d" % len(acked))
    keys_work(d, [keys[i] for i in acked])

    master = d.master_pid
    pids = [master] + d.worker_pids()
    acked2 = run_until_killed(lambda: [os.kill(p, signal.SIGKILL)
                                       for p in pids])
    d.proc.wait(5)
    d.kill()
    d2 = reopen(d)
    keys_work(d2, [keys[i] for i in acked + acked2])
    # Running it again completes the import.
    p, res = ctl_import(d2, path)
    kg.eq(len(res), len(keys), "results of the completing import")
    keys_work(d2, keys[::7])
    r = kg.admin(d2, "GET", "/v1/keys?limit=1")
    d2.check_healthy()


def idem_create(d, key, body):
    return kg.admin(d, "POST", "/v1/keys", body,
                    headers={"Idempotency-Key": key})


def test_idempotency_key():
    """A retried create answers the same key and secret, on any worker,
    after a restart; another body is 422; the secret is in no file."""
    d = kg.start(import_conf(workers=2), nports=2)
    d.wait_workers(2)
    key = "0b7f3c52-5e0e-4d3c-9a3e-6c2d1f1e8a01"
    body = {"owner": "idem", "scopes": ["read"]}
    r = idem_create(d, key, body)
    kg.eq(r.status, 201, "first create (%s)" % r.body[:200])
    first = r.json()
    # Retries on new connections until both workers have answered one
    # (which worker accepts is up to the scheduler: one may win many
    # accepts in a row, so keep going a while, pausing a little more
    # each time, as test_keys' PerWorker does).
    pids = set(d.wait_workers(2))
    workers = set()
    deadline = time.monotonic() + 30
    pause = 0.005
    i = 0
    while workers != pids and time.monotonic() < deadline and i < 2000:
        r = idem_create(d, key, body)
        kg.eq(r.status, 201, "retry %d (%s)" % (i, r.body[:200]))
        kg.eq((r.json()["id"], r.json()["secret"]),
              (first["id"], first["secret"]), "retry %d" % i)
        workers = set(int(p) for p in re.findall(
            r"keygated\[(\d+)\] worker: key \S+: create answered again",
            d.errlog_text()))
        i += 1
        time.sleep(pause)
        pause = min(pause * 1.5, 0.1)
    kg.eq(workers, pids, "workers that answered a retry (%d retries)" % i)
    r = kg.admin(d, "GET", "/v1/keys?owner=idem")
    kg.eq(len(r.json()["keys"]), 1, "keys after %d retries" % i)
    r = idem_create(d, key, {"owner": "idem", "scopes": ["write"]})
    kg.check_refusal(r, 422, "idempotency_key_reused")
    r = idem_create(d, "bad key", body)
    kg.check_refusal(r, 422, "invalid_field")
    through = kg.get(d.port, "/k/x", headers={"X-API-KEY": first["secret"]})
    kg.eq(through.status, 200, "the key works")
    d.stop()
    no_secret_on_disk(d, [first["secret"], key])
    d2 = reopen(d)
    r = idem_create(d2, key, body)
    kg.eq(r.status, 201, "retry after a restart (%s)" % r.body[:200])
    kg.eq((r.json()["id"], r.json()["secret"]),
          (first["id"], first["secret"]), "retry after a restart")
    r = kg.admin(d2, "GET", "/v1/keys?owner=idem")
    kg.eq(len(r.json()["keys"]), 1, "keys after the restart's retry")
    # The start compacted the journal: the entry is in keys.idempotency
    # now, and survives a second restart.
    d2.stop()
    state = os.path.join(d.dir, "state")
    kg.check(os.path.exists(os.path.join(state, "keys.idempotency")),
             "keys.idempotency after a compaction")
    no_secret_on_disk(d, [first["secret"], key])
    d3 = reopen(d)
    r = idem_create(d3, key, body)
    kg.eq(r.status, 201, "retry after two restarts (%s)" % r.body[:200])
    kg.eq((r.json()["id"], r.json()["secret"]),
          (first["id"], first["secret"]), "retry after two restarts")
    r = kg.admin(d3, "GET", "/v1/keys?owner=idem")
    kg.eq(len(r.json()["keys"]), 1, "keys after two restarts' retries")
    d3.check_healthy()


TESTS = [test_create_with_secret, test_import_formats, test_import_kill9,
         test_idempotency_key]

if __name__ == "__main__":
    kg.run(TESTS)
