"""
keygatectl against the real daemon's admin API: every command (create,
list, show, update, delete, regenerate, usage, verify) in its table / list
form and with --json, where the admin URL and token come from (-u, -t, -T,
the environment, the configuration file), and the failures a user meets
(wrong token, daemon not running, bad options), with their exit statuses.
keygatectl cluster also runs against a scripted admin API (FakeAdmin), for
cluster states and malformed answers a real daemon does not give, and
against a daemon in a cluster of one (a redis-server of the test's own).

Every run of keygatectl goes through ctl(), which also checks that the
admin token never appears in its output, and that no sanitizer reported
anything.  keygatectl is found next to $KEYGATED.
"""

import calendar
import datetime
import http.server
import json
import os
import re
import secrets
import threading
import time

import kgtest as kg
import rediskit
import test_tls as T

TOKEN = secrets.token_hex(16)		# 32 characters

# (mode 0600, outside the daemon's dir so it exists before the start)
_token_dir = None


def token_file():
    """The path of a file holding TOKEN, created once."""
    global _token_dir
    if _token_dir is None:
        _token_dir = kg.tempdir()
        path = os.path.join(_token_dir, "admin.token")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(TOKEN + "\n")
    return os.path.join(_token_dir, "admin.token")


def template(**settings):
    # /echo takes keys (the usage test sends requests there); the default
    # rate_limit (20/1s 200/10s 1000/60s) applies unless settings say else.
    return kg.config("route GET ^/echo(/|$) auth=api-key upstream=echo",
                     "route * .* auth=deny",
                     admin_listen="127.0.0.1:{port2}",
                     admin_token_file=token_file(),
                     max_keys=5000, **settings)


def daemon():
    return kg.shared("ctl", template(), nports=2)


def admin_port(d):
    return d.ports[1]


def admin_url(d):
    return "http://127.0.0.1:%d" % admin_port(d)


def owner():
    """A fresh owner name, so that tests on the shared daemon stay apart."""
    return "owner-" + secrets.token_hex(4)


# --- running keygatectl ----------------------------------------------------------

def ctl(*args, d=None, env=None, stdin=None, url=True, token=True):
    """
    Run keygatectl with args.  With d, KEYGATE_ADMIN_URL and
    KEYGATE_ADMIN_TOKEN point at that daemon (unless url/token is False);
    env adds or overrides variables (None removes one).  Returns the
    CompletedProcess; fails if the token shows in its output.
    """
    e = kg.ctl_env(admin_url(d) if d is not None and url else None,
                   TOKEN if d is not None and token else None, env)
    return kg.ctl_run(args, e, stdin=stdin, secret=TOKEN)


def ok(p, what):
    """p exited 0; returns its stdout."""
    kg.eq(p.returncode, 0, "%s: exit status (stderr %r)" % (what, p.stderr))
    return p.stdout


def fails(p, status, pattern, what):
    """p exited with status and one stderr line matching pattern."""
    kg.eq(p.returncode, status, "%s: exit status (stdout %r, stderr %r)" %
          (what, p.stdout, p.stderr))
    first = p.stderr.splitlines()[0] if p.stderr else ""
    kg.check(re.search(pattern, first), "%s: stderr %r does not match %r" %
             (what, p.stderr, pattern))
    kg.check(first.startswith("keygatectl: "), "%s: stderr %r does not "
             "start with 'keygatectl: '" % (what, first))
    return first


def fields(text):
    """The "name: value" lines of a list, as a dict."""
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        kg.check(sep and re.match(r"^[a-z_]+$", name),
                 "not a 'field: value' line: %r" % line)
        kg.check(name not in out, "field %s printed twice" % name)
        out[name] = value.strip()
    return out


TABLE_HEAD = ["ID", "OWNER", "APP", "NAME", "SCOPES", "HINT", "STATE",
              "LAST USED"]


WINDOW_HEAD = ["WINDOW", "LIMIT", "USED", "REMAINING", "RESET", "SOURCE"]


def table(text, columns=TABLE_HEAD):
    """The rows of a table as dicts; checks the header and alignment."""
    lines = text.splitlines()
    kg.check(lines, "empty table")
    head = lines[0]
    starts = [head.index(h) for h in columns]
    kg.eq(starts, sorted(starts), "header column order in %r" % head)
    kg.eq(re.split(r"  +", head.strip()), columns, "table header")
    rows = []
    for line in lines[1:]:
        row = {}
        for i, h in enumerate(columns):
            end = starts[i + 1] if i + 1 < len(starts) else len(line)
            cell = line[starts[i]:end]
            if i + 1 < len(starts):
                kg.check(cell.endswith("  "), "cell %r of %r is not "
                         "followed by two spaces" % (cell, line))
            kg.check(i == 0 or line[starts[i] - 1] == " ",
                     "column %s not aligned in %r" % (h, line))
            row[h] = cell.strip()
        rows.append(row)
    return rows


def iso_ms(t):
    """Milliseconds since the epoch of an API time (UTC, "Z")."""
    dt = datetime.datetime.strptime(t[:19], "%Y-%m-%dT%H:%M:%S")
    frac = re.match(r"^\.(\d+)", t[19:])
    ms = int((frac.group(1) + "00")[:3]) if frac else 0
    return calendar.timegm(dt.timetuple()) * 1000 + ms


def api(d, method, path, body=None):
    """A direct admin API request; (status, parsed JSON or None)."""
    headers = {"Authorization": "Bearer " + TOKEN}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    r = kg.request(admin_port(d), method, path, headers=headers, body=data)
    return r.status, (r.json() if r.body else None)


def create(d, *args):
    """keygatectl --json create ARGS; the key object with its secret."""
    p = ctl("--json", "create", *args, d=d)
    return json.loads(ok(p, "create %s" % " ".join(args)))


def show_json(d, key_id):
    return json.loads(ok(ctl("--json", "show", key_id, d=d), "show"))


SECRET_RE = r"^live_[0-9A-Za-z]{32}$"


def check_hint(hint, secret):
    """The hint shows the prefix and the last 4 characters of the secret."""
    prefix = secret.split("_")[0] + "_"
    kg.check(hint.startswith(prefix) and hint.endswith(secret[-4:]) and
             secret not in hint and len(hint) < len(secret),
             "hint %r for a secret ending in %r" % (hint, secret[-4:]))
WARNING = "keygatectl: store this secret now: it will not be shown again"


# --- create ------------------------------------------------------------------------

def test_create_prints_key_and_secret_once():
    d = daemon()
    o = owner()
    p = ctl("create", "--owner", o, "--name", "CRM sync",
            "--scope", "contacts:read,contacts:write", "--scope", "orders:read",
            "--app", "crm-app", "--rate", "1s=5,60s=100", "--expires", "+30d",
            d=d)
    out = ok(p, "create")
    f = fields(out)
    kg.check(re.match(r"^key_[0-9A-Za-z]{16}$", f["id"]), "id %r" % f["id"])
    kg.eq(f["owner"], o, "owner")
    kg.eq(f["name"], "CRM sync", "name")
    kg.eq(f["app_id"], "crm-app", "app_id")
    kg.eq(f["scopes"], "contacts:read,contacts:write,orders:read", "scopes")
    kg.eq(f["rate_limit"], "1s=5,10s=default,60s=100", "rate_limit")
    kg.eq(f["state"], "active", "state")
    kg.eq(f["last_used_at"], "never", "last_used_at")
    kg.check(re.match(kg.RFC3339_RE, f["expires_at"]), "expires_at %r" %
             f["expires_at"])
    kg.check(re.match(SECRET_RE, f["secret"]), "secret %r" % f["secret"])
    kg.eq(out.splitlines()[-1], "secret: " + f["secret"],
          "the secret on its own last line")
    kg.eq(out.count(f["secret"]), 1, "times the secret is printed")
    check_hint(f["hint"], f["secret"])
    kg.eq(p.stderr.strip(), WARNING, "warning on stderr")
    # Never again: neither show, list nor the API return it.
    for args in (("show", f["id"]), ("--json", "show", f["id"]),
                 ("list", "--owner", o), ("--json", "list", "--owner", o)):
        q = ok(ctl(*args, d=d), " ".join(args))
        kg.check(f["secret"] not in q, "%s shows the secret" % " ".join(args))
    status, j = api(d, "GET", "/v1/keys/" + f["id"])
    kg.eq(status, 200, "GET the key")
    kg.check("secret" not in j, "GET has a secret: %r" % j)


def test_create_json_has_secret():
    d = daemon()
    o = owner()
    p = ctl("--json", "create", "--owner", o, "--prefix", "test",
            "--disabled", d=d)
    j = json.loads(ok(p, "--json create"))
    kg.check(re.match(r"^test_[0-9A-Za-z]{32}$", j.get("secret", "")),
             "--json create: secret %r" % j.get("secret"))
    kg.eq(j["owner"], o, "owner")
    kg.eq(j["prefix"], "test", "prefix")
    kg.eq(j["disabled"], True, "disabled")
    kg.eq(j["scopes"], [], "scopes")
    kg.eq(j["app_id"], None, "app_id")
    kg.eq(j["expires_at"], None, "expires_at")
    kg.eq(p.stderr.strip(), WARNING, "warning on stderr with --json")
    # The JSON is the server's: same object as GET, plus the secret.
    del j["secret"]
    status, g = api(d, "GET", "/v1/keys/" + j["id"])
    kg.eq(g, j, "--json create vs GET /v1/keys/ID")
    # --json also works after the command.
    j2 = json.loads(ok(ctl("create", "--owner", o, "--json", d=d),
                       "create ... --json"))
    kg.check("secret" in j2, "create --json has no secret")


def test_create_rejected_by_api():
    d = daemon()
    p = ctl("create", "--owner", owner(), "--scope", "bad scope!", d=d)
    fails(p, 1, r"^keygatectl: invalid_field: .*scope", "invalid scope")
    kg.eq(p.stdout, "", "stdout of a refused create")


# --- list ------------------------------------------------------------------------------

def test_list_table_filters_and_states():
    d = daemon()
    a, b = owner(), owner()
    k1 = create(d, "--owner", a, "--app", "app-x", "--name", "Büro key",
                "--scope", "s1,s2")
    k2 = create(d, "--owner", a, "--app", "app-y", "--disabled")
    k3 = create(d, "--owner", b, "--app", "app-x", "--expires", "+2s")
    rows = table(ok(ctl("list", "--owner", a, d=d), "list --owner"))
    kg.eq(sorted(r["ID"] for r in rows), sorted([k1["id"], k2["id"]]),
          "ids listed for owner %s" % a)
    r1 = [r for r in rows if r["ID"] == k1["id"]][0]
    kg.eq(r1, {"ID": k1["id"], "OWNER": a, "APP": "app-x",
               "NAME": "Büro key", "SCOPES": "s1,s2", "HINT": k1["hint"],
               "STATE": "active", "LAST USED": "never"}, "row of key 1")
    r2 = [r for r in rows if r["ID"] == k2["id"]][0]
    kg.eq((r2["STATE"], r2["NAME"], r2["SCOPES"]), ("disabled", "-", "-"),
          "row of the disabled key")
    rows = table(ok(ctl("list", "--app", "app-x", d=d), "list --app"))
    ids = [r["ID"] for r in rows]
    kg.check(k1["id"] in ids and k3["id"] in ids and k2["id"] not in ids,
             "list --app app-x: %r" % ids)
    rows = table(ok(ctl("list", "--owner", b, "--app", "app-x", d=d),
                    "list --owner --app"))
    kg.eq([r["ID"] for r in rows], [k3["id"]], "both filters")
    j = json.loads(ok(ctl("--json", "list", "--owner", a, "--app", "app-y",
                          d=d), "--json list"))
    kg.eq([k["id"] for k in j["keys"]], [k2["id"]], "--json list filtered")
    kg.eq(j["next_cursor"], None, "--json list next_cursor")
    # Nothing matches: only the header.
    out = ok(ctl("list", "--owner", owner(), d=d), "list, no match")
    kg.eq(table(out), [], "rows when nothing matches")
    kg.eq(table(ok(ctl("list", "--owner", b, d=d), "list"))[0]["STATE"],
          "active", "state before expires_at")
    # Once expires_at has passed, the key shows as expired.
    time.sleep(max(0.0, (iso_ms(k3["expires_at"]) - time.time() * 1000) /
                   1000.0) + 0.05)
    rows = table(ok(ctl("list", "--owner", b, d=d), "list after expiry"))
    kg.eq(rows[0]["STATE"], "expired", "state of an expired key")
    kg.eq(fields(ok(ctl("show", k3["id"], d=d), "show"))["state"],
          "expired", "show: state of an expired key")


def test_list_hygiene_filters():
    """
    --search, --state, --older-than and --unused (the admin API's q,
    state, older_than and unused): a key never used counts as unused since
    it was made; a bad duration is refused by the API, named.
    """
    d = daemon()
    o = owner()
    k1 = create(d, "--owner", o, "--name", "Rotate me")
    k2 = create(d, "--owner", o, "--name", "busy")
    k3 = create(d, "--owner", o, "--disabled")
    time.sleep(1.2)
    kg.eq(echo(d, k2["secret"], 1), [200], "a request with key 2")

    def ids(*args):
        rows = table(ok(ctl("list", "--owner", o, *args, d=d),
                        "list %s" % " ".join(args)))
        return sorted(r["ID"] for r in rows)
    kg.eq(ids("--older-than", "1s"), sorted([k1["id"], k2["id"], k3["id"]]),
          "--older-than 1s")
    kg.eq(ids("--older-than", "1h"), [], "--older-than 1h")
    kg.eq(ids("--unused", "1s"), sorted([k1["id"], k3["id"]]),
          "--unused 1s (key 2 was just used)")
    kg.eq(ids("--unused", "1s", "--state", "active"), [k1["id"]],
          "--unused 1s --state active")
    kg.eq(ids("--state", "disabled"), [k3["id"]], "--state disabled")
    kg.eq(ids("--search", "ROTATE"), [k1["id"]], "--search ROTATE")
    j = json.loads(ok(ctl("--json", "list", "--owner", o, "--search", "bus",
                          "--limit", "5", d=d), "--json list --search"))
    kg.eq([k["id"] for k in j["keys"]], [k2["id"]], "--json --search bus")
    p = ctl("list", "--older-than", "90 days", d=d)
    fails(p, 1, r"^keygatectl: invalid_field: .*older_than",
          "a bad --older-than")


def test_list_pagination():
    d = daemon()
    o = owner()
    n = 1003		# more than one page of 1000 (the most the API gives)
    made = set()
    for i in range(n):
        status, j = api(d, "POST", "/v1/keys", {"owner": o,
                                                "name": "bulk %d" % i})
        kg.eq(status, 201, "POST /v1/keys #%d" % i)
        made.add(j["id"])
    other = create(d, "--owner", owner())
    # Without --limit: every page, one table, each key once.
    p = ctl("list", "--owner", o, d=d)
    rows = table(ok(p, "list over several pages"))
    ids = [r["ID"] for r in rows]
    kg.eq(len(ids), n, "rows of list --owner (%d keys)" % n)
    kg.eq(set(ids), made, "ids of list --owner")
    kg.eq(p.stderr, "", "stderr of a complete list")
    j = json.loads(ok(ctl("--json", "list", "--owner", o, d=d),
                      "--json list over several pages"))
    kg.eq(len(j["keys"]), n, "--json list: keys")
    kg.eq({k["id"] for k in j["keys"]}, made, "--json list: ids")
    kg.eq(j["next_cursor"], None, "--json list: next_cursor")
    all_ids = {r["ID"] for r in table(ok(ctl("list", d=d), "list"))}
    kg.check(made <= all_ids and other["id"] in all_ids,
             "unfiltered list misses keys")
    # --limit: one page, and the cursor that continues it.
    p = ctl("list", "--owner", o, "--limit", "2", d=d)
    rows = table(ok(p, "list --limit 2"))
    kg.eq(len(rows), 2, "rows of list --limit 2")
    m = re.match(r"^keygatectl: more keys follow: continue with --cursor "
                 r"(\S+)$", p.stderr.strip())
    kg.check(m, "list --limit: stderr %r" % p.stderr)
    rows2 = table(ok(ctl("list", "--owner", o, "--limit", "2", "--cursor",
                         m.group(1), d=d), "list --cursor"))
    kg.eq(len(rows2), 2, "rows of the second page")
    kg.check(not {r["ID"] for r in rows} & {r["ID"] for r in rows2},
             "the second page repeats keys of the first")
    # Walking with --json --limit --cursor sees every key exactly once.
    seen, cursor, pages = [], None, 0
    while True:
        args = ["--json", "list", "--owner", o, "--limit", "300"]
        if cursor is not None:
            args += ["--cursor", cursor]
        j = json.loads(ok(ctl(*args, d=d), "page %d" % pages))
        kg.check(len(j["keys"]) <= 300, "page larger than --limit")
        seen += [k["id"] for k in j["keys"]]
        cursor = j["next_cursor"]
        pages += 1
        if cursor is None:
            break
        kg.check(pages < 20, "too many pages")
    kg.eq(len(seen), n, "keys seen walking the pages")
    kg.eq(set(seen), made, "ids seen walking the pages")
    # --cursor without --limit follows the rest of the pages.
    rest = table(ok(ctl("list", "--owner", o, "--cursor", m.group(1), d=d),
                    "list --cursor without --limit"))
    kg.eq(len(rest), n - 2, "rows after the first page of 2")


# --- show, update, delete --------------------------------------------------------------

def test_show_list_and_json():
    d = daemon()
    k = create(d, "--owner", owner(), "--scope", "a", "--rate", "10s=7")
    f = fields(ok(ctl("show", k["id"], d=d), "show"))
    kg.eq(set(f), {"id", "name", "owner", "app_id", "prefix", "hint",
                   "scopes", "state", "created_at", "updated_at",
                   "expires_at", "rate_limit", "last_used_at"},
          "fields of show")
    kg.eq(f["id"], k["id"], "id")
    kg.eq(f["owner"], k["owner"], "owner")
    kg.eq(f["prefix"], "live", "prefix")
    kg.eq(f["hint"], k["hint"], "hint")
    kg.eq(f["scopes"], "a", "scopes")
    kg.eq(f["created_at"], k["created_at"], "created_at")
    kg.eq(f["expires_at"], "never", "expires_at")
    kg.eq(f["rate_limit"], "1s=default,10s=7,60s=default", "rate_limit")
    j = show_json(d, k["id"])
    status, g = api(d, "GET", "/v1/keys/" + k["id"])
    kg.eq(j, g, "--json show vs GET")


def test_update_each_field():
    d = daemon()
    k = create(d, "--owner", owner(), "--name", "old", "--scope", "a,b")
    kid = k["id"]

    def update(*args):
        f = fields(ok(ctl("update", kid, *args, d=d), "update %s" % (args,)))
        kg.eq(f["id"], kid, "update prints the key")
        return f, show_json(d, kid)

    f, j = update("--name", "new name")
    kg.eq((f["name"], j["name"]), ("new name", "new name"), "name")
    kg.eq(j["scopes"], ["a", "b"], "scopes unchanged by --name")
    f, j = update("--scope", "x:read", "--scope", "y,z")
    kg.eq(j["scopes"], ["x:read", "y", "z"], "scopes replaced")
    kg.eq(f["scopes"], "x:read,y,z", "scopes printed")
    f, j = update("--no-scopes")
    kg.eq((j["scopes"], f["scopes"]), ([], "-"), "--no-scopes")
    f, j = update("--expires", "+1d")
    kg.check(j["expires_at"] is not None and
             re.match(kg.RFC3339_RE, j["expires_at"]), "expires_at set")
    f, j = update("--expires", "2999-01-01T00:00:00Z")
    kg.check(j["expires_at"].startswith("2999-01-01T00:00:00"),
             "expires_at %r" % j["expires_at"])
    f, j = update("--expires", "never")
    kg.eq((j["expires_at"], f["expires_at"]), (None, "never"), "never")
    f, j = update("--disable")
    kg.eq((j["disabled"], f["state"]), (True, "disabled"), "--disable")
    f, j = update("--enable")
    kg.eq((j["disabled"], f["state"]), (False, "active"), "--enable")
    f, j = update("--rate", "1s=3,10s=20,60s=90")
    kg.eq(j["rate_limit"], {"per_1s": 3, "per_10s": 20, "per_60s": 90},
          "rate_limit")
    f, j = update("--rate", "60s=50")
    kg.eq(j["rate_limit"], {"per_1s": None, "per_10s": None, "per_60s": 50},
          "rate_limit: omitted windows become null")
    kg.eq(f["rate_limit"], "1s=default,10s=default,60s=50", "printed")
    f, j = update("--rate", "default")
    kg.eq((j["rate_limit"], f["rate_limit"]), (None, "default"),
          "--rate default")
    kg.eq(j["name"], "new name", "name kept through the other updates")
    kg.check(j["updated_at"] >= k["updated_at"], "updated_at moved back")
    j = json.loads(ok(ctl("--json", "update", kid, "--name", "n2", d=d),
                      "--json update"))
    kg.eq(j["name"], "n2", "--json update")


def test_delete_then_show():
    d = daemon()
    k = create(d, "--owner", owner())
    out = ok(ctl("delete", k["id"], d=d), "delete")
    kg.eq(out, "%s deleted\n" % k["id"], "delete output")
    p = ctl("show", k["id"], d=d)
    first = fails(p, 1, r"^keygatectl: key_not_found: .*" + k["id"],
                  "show after delete")
    kg.eq(p.stderr, first + "\n", "one line on stderr")
    kg.eq(p.stdout, "", "stdout of a failed show")
    fails(ctl("delete", k["id"], d=d), 1, r"key_not_found",
          "delete twice")
    fails(ctl("update", k["id"], "--name", "x", d=d), 1, r"key_not_found",
          "update a deleted key")
    fails(ctl("show", "key_doesnotexist", d=d), 1, r"key_not_found",
          "show an unknown id")
    fails(ctl("show", "not/an id", d=d), 1, r"key_not_found",
          "show a malformed id")
    kid = create(d, "--owner", owner())["id"]
    kg.eq(json.loads(ok(ctl("--json", "delete", kid, d=d), "--json delete")),
          {"id": kid, "deleted": True}, "--json delete prints one document")


# --- regenerate, usage, verify -------------------------------------------------------

def verify(d, secret, *args):
    return ctl("verify", secret, *args, d=d)


def test_regenerate_with_grace():
    d = daemon()
    k = create(d, "--owner", owner(), "--scope", "s")
    old = k["secret"]
    p = ctl("regenerate", k["id"], "--grace", "600", d=d)
    f = fields(ok(p, "regenerate --grace"))
    kg.eq(p.stderr.strip(), WARNING, "warning after regenerate")
    new = f["secret"]
    kg.check(re.match(SECRET_RE, new) and new != old, "new secret %r" % new)
    kg.eq(f["id"], k["id"], "same id")
    kg.eq(f["scopes"], "s", "same scopes")
    check_hint(f["hint"], new)
    kg.check(re.match(kg.RFC3339_RE, f.get("grace_until", "")),
             "grace_until %r" % f.get("grace_until"))
    ok(verify(d, old), "the old secret during the grace period")
    ok(verify(d, new), "the new secret")
    kg.check("grace_until" in fields(ok(ctl("show", k["id"], d=d), "show")),
             "show: no grace_until during the grace period")
    # Without --grace the previous secret stops at once.
    j = json.loads(ok(ctl("--json", "regenerate", k["id"], d=d),
                      "--json regenerate"))
    kg.check(re.match(SECRET_RE, j["secret"]), "--json regenerate secret")
    kg.eq(j["grace_until"], None, "grace_until without --grace")
    fails(verify(d, new), 1, r"not valid: invalid_credentials",
          "the previous secret after a regenerate without grace")
    ok(verify(d, j["secret"]), "the newest secret")
    fails(ctl("regenerate", "key_doesnotexist", d=d), 1, r"key_not_found",
          "regenerate an unknown id")


def usage(d, key_id):
    """
    keygatectl usage: the fields, the window table rows, and the JSON of
    --json (two runs); checks the shape of the output.
    """
    out = ok(ctl("usage", key_id, d=d), "usage")
    head, sep, rest = out.partition("\n\n")
    kg.check(sep, "usage: no empty line before the window table: %r" % out)
    j = json.loads(ok(ctl("--json", "usage", key_id, d=d), "--json usage"))
    return fields(head), table(rest, WINDOW_HEAD), j


def window_rows(windows):
    """The API's windows as the table shows them."""
    return [{"WINDOW": w["window"], "LIMIT": str(w["limit"]),
             "USED": str(w["used"]), "REMAINING": str(w["remaining"]),
             "RESET": str(w["reset"]), "SOURCE": w["source"]}
            for w in windows]


def echo(d, secret, n):
    """n requests with the key on /echo; the statuses."""
    return [kg.request(d.ports[0], "GET", "/echo",
                       headers={"X-API-KEY": secret}).status
            for _ in range(n)]


def test_usage():
    d = daemon()
    k = create(d, "--owner", owner())
    f, rows, j = usage(d, k["id"])
    kg.eq(f, {"id": k["id"], "requests_allowed": "0",
              "requests_refused": "0", "requests_rate_limited": "0",
              "last_used_at": "never"},
          "usage of a fresh key")
    fresh = [{"window": "1s", "limit": 20, "used": 0, "remaining": 20,
              "reset": 0, "source": "default"},
             {"window": "10s", "limit": 200, "used": 0, "remaining": 200,
              "reset": 0, "source": "default"},
             {"window": "60s", "limit": 1000, "used": 0, "remaining": 1000,
              "reset": 0, "source": "default"}]
    kg.eq(j, {"id": k["id"], "requests_allowed": 0, "requests_refused": 0,
              "requests_rate_limited": 0, "last_used_at": None,
              "windows": fresh}, "--json usage")
    kg.eq(rows, window_rows(fresh), "window table of a fresh key")
    fails(ctl("usage", "key_doesnotexist", d=d), 1, r"key_not_found",
          "usage of an unknown id")


def test_usage_windows_after_requests():
    """
    A key with its own 60 s limit of 4 sends 6 requests: 4 admitted, 2
    refused (429), and usage shows them in every window.  The counts are
    compared exactly only for windows longer than the time the test took
    (the 1 s window may have emptied on a slow machine).
    """
    d = daemon()
    k = create(d, "--owner", owner(), "--rate", "60s=4")
    t0 = time.monotonic()
    statuses = echo(d, k["secret"], 6)
    kg.eq(statuses, [200] * 4 + [429] * 2, "statuses of 6 requests")
    f, rows, j = usage(d, k["id"])
    elapsed = time.monotonic() - t0
    kg.eq((f["requests_allowed"], f["requests_refused"]), ("4", "2"),
          "counters after the requests")
    kg.check(re.match(kg.RFC3339_RE, f["last_used_at"]), "last_used_at %r" %
             f["last_used_at"])
    kg.eq((j["requests_allowed"], j["requests_refused"]), (4, 2),
          "--json counters")
    ws = {w["window"]: w for w in j["windows"]}
    kg.eq([w["window"] for w in j["windows"]], ["1s", "10s", "60s"],
          "windows listed")
    for name, limit, source, length in (("1s", 20, "default", 1),
                                        ("10s", 200, "default", 10),
                                        ("60s", 4, "key", 60)):
        w = ws[name]
        what = "window %s: %r" % (name, w)
        kg.eq((w["limit"], w["source"]), (limit, source), what)
        kg.eq(w["remaining"], max(0, limit - w["used"]), what)
        kg.check(0 <= w["used"] <= 4, what)
        kg.check((w["used"] == 0) == (w["reset"] == 0), what)
        # The limiter counts a request up to a fifteenth of the window
        # longer than the window (its buckets), and reset says when it
        # really stops counting.
        kg.check(0 <= w["reset"] <= length * 16 // 15 + 1, what)
        if elapsed < length - 1:
            kg.eq(w["used"], 4, what + ": refused requests count in none")
            kg.check(w["reset"] >= 1, what)
    if elapsed < 59:
        kg.eq(ws["60s"]["remaining"], 0, "60s window: nothing remains")
    # The table (a run of its own) shows the same limits and sources; the
    # counts may have moved on meanwhile, so only those are compared.
    kg.eq([(r["WINDOW"], r["LIMIT"], r["SOURCE"]) for r in rows],
          [("1s", "20", "default"), ("10s", "200", "default"),
           ("60s", "4", "key")], "window table")
    for r in rows:
        kg.eq(int(r["REMAINING"]), max(0, int(r["LIMIT"]) - int(r["USED"])),
              "REMAINING of %r" % r)
    # Another key's windows are its own.
    other = create(d, "--owner", owner())
    kg.check(all(w["used"] == 0 for w in usage(d, other["id"])[2]["windows"]),
             "a fresh key shows requests of another")


def test_usage_rate_limit_off():
    """With "rate_limit off" only the key's own windows are listed."""
    d = kg.start(template(rate_limit="off"), nports=2)
    k = create(d, "--owner", owner())
    f, rows, j = usage(d, k["id"])
    kg.eq(j["windows"], [], "windows with rate_limit off")
    kg.eq(rows, [], "window table with rate_limit off")
    kg.eq(echo(d, k["secret"], 25), [200] * 25, "requests not limited")
    kg.eq(usage(d, k["id"])[2]["windows"], [], "windows after requests")
    k2 = create(d, "--owner", owner(), "--rate", "10s=7")
    t0 = time.monotonic()
    kg.eq(echo(d, k2["secret"], 2), [200] * 2, "requests of the limited key")
    f, rows, j = usage(d, k2["id"])
    kg.eq([(w["window"], w["limit"], w["source"]) for w in j["windows"]],
          [("10s", 7, "key")], "windows of a key with its own 10s limit")
    kg.eq([(r["WINDOW"], r["LIMIT"], r["SOURCE"]) for r in rows],
          [("10s", "7", "key")], "window table of that key")
    if time.monotonic() - t0 < 9:
        kg.eq((j["windows"][0]["used"], j["windows"][0]["remaining"]),
              (2, 5), "used and remaining of the 10s window")


def test_verify():
    d = daemon()
    o = owner()
    k = create(d, "--owner", o, "--app", "app-1", "--scope", "r,w")
    f = fields(ok(verify(d, k["secret"]), "verify a valid secret"))
    kg.eq(f, {"valid": "yes", "code": "-", "key_id": k["id"], "owner": o,
              "scopes": "r,w", "expires_at": "never"}, "verify output")
    p = verify(d, "live_" + "x" * 32)
    fails(p, 1, r"^keygatectl: the key is not valid: invalid_credentials$",
          "verify an unknown secret")
    kg.eq(fields(p.stdout)["valid"], "no", "valid: no")
    # From standard input (with a newline, as echo writes it).
    f = fields(ok(ctl("verify", "-", d=d, stdin=k["secret"] + "\n"),
                  "verify -"))
    kg.eq((f["valid"], f["key_id"]), ("yes", k["id"]), "verify - result")
    fails(ctl("verify", "-", d=d, stdin="live_nope\n"), 1, r"not valid",
          "verify - with a bad secret")
    # Bound to its application.
    ok(verify(d, k["secret"], "--app", "app-1"), "verify --app (its app)")
    fails(verify(d, k["secret"], "--app", "app-2"), 1, r"not valid",
          "verify --app (another app)")
    # Disabled, and malformed.
    ok(ctl("update", k["id"], "--disable", d=d), "disable")
    p = verify(d, k["secret"])
    fails(p, 1, r"not valid: disabled_key", "verify a disabled key")
    kg.eq(fields(p.stdout)["key_id"], k["id"], "key_id of a refused key")
    fails(verify(d, "live_ab cd"), 1, r"not valid: malformed_credentials",
          "verify a malformed secret")
    j = json.loads(ctl("--json", "verify", k["secret"], d=d).stdout)
    kg.eq((j["valid"], j["code"]), (False, "disabled_key"), "--json verify")


# --- where the URL and token come from ------------------------------------------------

def test_token_sources():
    d = daemon()
    o = owner()
    k = create(d, "--owner", o)
    u = admin_url(d)
    ok(ctl("-u", u, "-t", TOKEN, "show", k["id"], d=d, token=False), "-t")
    ok(ctl("-u", u, "--token", TOKEN, "show", k["id"], d=d, token=False),
       "--token")
    ok(ctl("-u", u, "-T", token_file(), "show", k["id"], d=d, token=False),
       "-T")
    ok(ctl("-u", u, "show", k["id"], d=d), "KEYGATE_ADMIN_TOKEN")
    ok(ctl("-u", u, "-c", d.conf_path, "show", k["id"], d=d, token=False),
       "admin_token_file of the configuration")
    # Precedence: -t over -T over the environment over the config.
    wrong = os.path.join(kg.tempdir(), "wrong.token")
    with open(wrong, "w") as f:
        f.write("w" * 32 + "\n")
    fails(ctl("-t", "w" * 32, "-T", token_file(), "show", k["id"], d=d), 1,
          r"^keygatectl: unauthorized", "-t before -T")
    fails(ctl("-T", wrong, "show", k["id"], d=d), 1, r"unauthorized",
          "-T before KEYGATE_ADMIN_TOKEN")
    fails(ctl("-c", d.conf_path, "show", k["id"], d=d,
              env={"KEYGATE_ADMIN_TOKEN": "w" * 32}), 1, r"unauthorized",
          "KEYGATE_ADMIN_TOKEN before the config")
    # No token anywhere.
    bare = os.path.join(kg.tempdir(), "bare.conf")
    with open(bare, "w") as f:
        f.write("listen 127.0.0.1:1\nroute * .* auth=deny\n")
    fails(ctl("-c", bare, "-u", u, "show", k["id"], d=d, token=False), 1,
          r"no admin token", "no token")
    fails(ctl("-T", "/nonexistent/token", "show", k["id"], d=d), 1,
          r"cannot open /nonexistent/token", "-T missing file")


def test_url_sources():
    d = daemon()
    k = create(d, "--owner", owner())
    dead = "http://127.0.0.1:%d" % kg.free_port()
    ok(ctl("-u", admin_url(d), "show", k["id"], d=d, url=False), "-u")
    ok(ctl("--url", admin_url(d) + "/", "show", k["id"], d=d, url=False),
       "--url with a trailing slash")
    ok(ctl("-u", "http://localhost:%d" % admin_port(d), "show", k["id"],
           d=d, url=False), "-u with a host name")
    ok(ctl("show", k["id"], d=d), "KEYGATE_ADMIN_URL")
    ok(ctl("-c", d.conf_path, "show", k["id"], d=d, url=False),
       "admin_listen of the configuration")
    ok(ctl("-c", d.conf_path, "show", k["id"], url=False, token=False, d=d),
       "URL and token both from the configuration")
    # -u before the environment before the config.
    ok(ctl("-u", admin_url(d), "-c", "/nonexistent.conf", "show", k["id"],
           d=d, env={"KEYGATE_ADMIN_URL": dead}), "-u before the environment")
    fails(ctl("-c", d.conf_path, "show", k["id"], d=d,
              env={"KEYGATE_ADMIN_URL": dead}), 1, r"cannot reach",
          "the environment before the config")
    # A wildcard admin_listen means the loopback address.
    wild = os.path.join(kg.tempdir(), "wild.conf")
    with open(wild, "w") as f:
        f.write("listen 127.0.0.1:1\nadmin_listen *:%d\n"
                "admin_token_file %s\nroute * .* auth=deny\n" %
                (admin_port(d), token_file()))
    ok(ctl("-c", wild, "show", k["id"], url=False, token=False, d=d),
       "admin_listen *:PORT")
    # A config without the admin API, and URLs that are not accepted.
    bare = os.path.join(kg.tempdir(), "bare.conf")
    with open(bare, "w") as f:
        f.write("listen 127.0.0.1:1\nroute * .* auth=deny\n")
    fails(ctl("-c", bare, "show", k["id"], d=d, url=False), 1,
          r"does not enable the admin API", "config without admin API")
    fails(ctl("-c", "/nonexistent.conf", "show", k["id"], d=d, url=False),
          1, r"/nonexistent.conf", "missing config file")
    for bad in ("ftp://127.0.0.1:1", "http://127.0.0.1", "127.0.0.1:80",
                "http://127.0.0.1:80/v1", "http://[::1:80",
                "http://127.0.0.1:99999"):
        fails(ctl("-u", bad, "show", k["id"], d=d, url=False), 1,
              r"admin URL .* is invalid", "-u %s" % bad)


def test_wrong_token_unauthorized():
    d = daemon()
    k = create(d, "--owner", owner())
    for args in (("show", k["id"]), ("list",), ("delete", k["id"]),
                 ("create", "--owner", "x"), ("verify", k["secret"])):
        p = ctl("-t", "not-the-token-0123456789", *args, d=d)
        first = fails(p, 1, r"^keygatectl: unauthorized: ", " ".join(args))
        kg.eq(p.stderr, first + "\n", "one stderr line")
        kg.eq(p.stdout, "", "stdout when unauthorized")
    # Five wrong tokens in a row make this address wait (1 s) before its
    # next token is looked at: keygatectl says so, then works again.
    deadline = time.monotonic() + 10
    while True:
        p = ctl("show", k["id"], d=d)
        if p.returncode == 0 or time.monotonic() > deadline:
            break
        fails(p, 1, r"^keygatectl: too_many_attempts: .*retry in \d+ s",
              "right token while waiting")
        time.sleep(0.2)
    ok(p, "the key survived the refused delete")


def test_unreachable_admin_api():
    port = kg.free_port()
    p = ctl("-u", "http://127.0.0.1:%d" % port, "-t", TOKEN, "list")
    first = fails(p, 1, r"^keygatectl: cannot reach the admin API at "
                  r"http://127\.0\.0\.1:%d: Connection refused$" % port,
                  "no daemon")
    kg.eq(p.stderr, first + "\n", "one stderr line")
    if kg.have_ipv6():
        fails(ctl("-u", "http://[::1]:%d" % kg.free_port("::1"), "-t",
                  TOKEN, "show", "key_x"), 1,
              r"cannot reach the admin API at http://\[::1\]:\d+: "
              r"Connection refused$", "no daemon on [::1]")


# --- an https admin API -------------------------------------------------------

def tls_daemon(*certs):
    """
    A daemon whose admin API is served over TLS with the pki() certificates
    named (the first is the default; SNI picks the others), or "local"
    (localhost and 127.0.0.1).
    """
    lines = [T.cert_line(T.pki()[c]) for c in certs or ("local",)]
    return kg.start(kg.config("route * .* auth=deny", *lines,
                              admin_listen="127.0.0.1:{port2} tls",
                              admin_token_file=token_file()), nports=2)


def conf_copy(d, old, new):
    """A copy of d's configuration with old replaced by new; its path."""
    with open(d.conf_path) as f:
        text = f.read()
    kg.check(old in text, "%r is not in %s" % (old, d.conf_path))
    path = os.path.join(kg.tempdir(), "copy.conf")
    with open(path, "w") as f:
        f.write(text.replace(old, new))
    return path


def test_https_admin_url_from_config_pinned():
    d = tls_daemon()
    o = owner()
    out = ok(ctl("-c", d.conf_path, "create", "--owner", o, "--json",
                 url=False, token=False, d=d), "create over https, pinned")
    k = json.loads(out)
    rows = table(ok(ctl("-c", d.conf_path, "list", "--owner", o, url=False,
                        token=False, d=d), "list over https, pinned"))
    kg.eq([r["ID"] for r in rows], [k["id"]], "the key listed over https")
    # The TLS private key is not read: a copy naming a key that does not
    # exist (as if only root could read it) still works.
    nokey = conf_copy(d, T.pki()["local"][1], "/nonexistent/admin.key")
    kg.check(kg.keygated("-t", "-c", nokey).returncode != 0,
             "keygated -t accepts a configuration without its key")
    ok(ctl("-c", nokey, "show", k["id"], url=False, token=False, d=d),
       "the TLS key unreadable to keygatectl")
    # Pinning trusts exactly the configuration's certificates: naming
    # another one (signed by the same CA, valid) is refused.
    other = conf_copy(d, T.cert_line(T.pki()["local"]),
                      T.cert_line(T.pki()["a"]))
    p = ctl("-c", other, "show", k["id"], url=False, token=False, d=d)
    first = fails(p, 1, r"^keygatectl: cannot verify the admin API at "
                  r"https://127\.0\.0\.1:%d: certificate verification "
                  r"failed: .*none of the tls_certificate certificates of "
                  % admin_port(d) + re.escape(other), "pinned to another "
                  "certificate")
    kg.eq(p.stderr, first + "\n", "one stderr line")
    kg.eq(p.stdout, "", "stdout when the certificate is refused")


def test_https_admin_url_with_cacert():
    d = tls_daemon()
    pki = T.pki()
    url = "https://127.0.0.1:%d" % admin_port(d)
    k = json.loads(ok(ctl("-u", url, "--cacert", pki["ca"].pem, "create",
                          "--owner", owner(), "--json", d=d, url=False),
                      "-u https --cacert"))
    ok(ctl("-u", "https://localhost:%d/" % admin_port(d), "show", k["id"],
           d=d, url=False, env={"KEYGATE_ADMIN_CA": pki["ca"].pem}),
       "a host name, KEYGATE_ADMIN_CA")
    ok(ctl("--cacert", pki["ca"].pem, "show", k["id"], d=d,
           env={"KEYGATE_ADMIN_URL": url}), "KEYGATE_ADMIN_URL https")
    # --cacert overrides the pinning of the configuration's certificate.
    fails(ctl("-c", d.conf_path, "--cacert", pki["other"].pem, "show",
              k["id"], d=d, url=False, token=False), 1,
          r"cannot verify the admin API at https://127\.0\.0\.1:\d+: "
          r"certificate verification failed: unable to get local issuer "
          r"certificate$", "-c with --cacert of another CA")
    for args, env, what in (
            (("--cacert", pki["other"].pem), {}, "another CA"),
            ((), {"KEYGATE_ADMIN_CA": pki["other"].pem},
             "another CA from KEYGATE_ADMIN_CA"),
            ((), {}, "the system CA store")):
        p = ctl("-u", url, *args, "show", k["id"], d=d, url=False, env=env)
        first = fails(p, 1, r"^keygatectl: cannot verify the admin API at "
                      r"%s: certificate verification failed: unable to get "
                      r"local issuer certificate$" % re.escape(url), what)
        kg.eq(p.stderr, first + "\n", "%s: one stderr line" % what)
    # The URL's host is checked: "a" names a.test and www.a.test only.
    d2 = tls_daemon("a")
    for host, why in (("127.0.0.1", "IP address mismatch"),
                      ("localhost", "hostname mismatch")):
        fails(ctl("-u", "https://%s:%d" % (host, admin_port(d2)),
                  "--cacert", pki["ca"].pem, "list", d=d2, url=False), 1,
              r"cannot verify the admin API at https://%s:\d+: certificate "
              r"verification failed: %s$" % (host, why), "%s not in the "
              "certificate" % host)
    # SNI is sent for a name: "localhost" gets the certificate naming it,
    # not the default one.
    d3 = tls_daemon("a", "local")
    ok(ctl("-u", "https://localhost:%d" % admin_port(d3), "--cacert",
           pki["ca"].pem, "list", d=d3, url=False), "SNI localhost")
    # https to a plain HTTP admin listener: OpenSSL's reason.
    fails(ctl("-u", "https://127.0.0.1:%d" % admin_port(daemon()),
              "--cacert", pki["ca"].pem, "list", d=d, url=False), 1,
          r"cannot reach the admin API at https://127\.0\.0\.1:\d+: TLS "
          r"error: wrong version number$", "https to a plain listener")
    fails(ctl("-u", url, "--cacert", "/nonexistent/ca.pem", "show", k["id"],
              d=d, url=False), 1, r"cannot load the CA certificates "
          r"/nonexistent/ca.pem \(from --cacert\)", "missing CA file")
    fails(ctl("-u", "http://127.0.0.1:1", "--cacert", pki["ca"].pem, "show",
              k["id"], d=d, url=False), 1, r"--cacert is for an https:// "
          r"admin URL", "--cacert with http")


# --- the command line ----------------------------------------------------------

def test_usage_errors_exit_2():
    d = daemon()
    k = create(d, "--owner", owner())
    cases = [
        (("--frobnicate", "list"), r"unknown option --frobnicate"),
        (("-x", "list"), r"unknown option -x"),
        (("frob",), r'unknown command "frob"'),
        (("list", "--frob"), r"list: unknown option --frob"),
        (("list", "extra"), r'unexpected argument "extra"'),
        (("list", "--limit", "many"), r"bad --limit"),
        (("list", "--limit", "1001"), r"bad --limit"),
        (("list", "--limit", "0"), r"bad --limit"),
        (("update", k["id"], "--disable=yes"), r"--disable takes no value"),
        (("create",), r"--owner is required"),
        (("create", "--owner"), r"option --owner needs a value"),
        (("create", "--owner", "o", "--rate", "2s=5"), r"bad --rate"),
        (("create", "--owner", "o", "--rate", "1s=5,1s=6"), r"bad --rate"),
        (("create", "--owner", "o", "--expires", "+5y"), r"bad --expires"),
        (("create", "--owner", "o", "--scope", "a,,b"), r"empty scope"),
        (("show",), r"missing key id"),
        (("show", k["id"], "other"), r'unexpected argument "other"'),
        (("update", k["id"]), r"nothing to change"),
        (("update", k["id"], "--enable", "--disable"), r"contradict"),
        (("update", k["id"], "--scope", "a", "--no-scopes"), r"contradict"),
        (("regenerate", k["id"], "--grace", "soon"), r"bad --grace"),
        (("verify",), r"missing secret"),
    ]
    for args, pattern in cases:
        p = ctl(*args, d=d)
        fails(p, 2, pattern, "keygatectl %s" % " ".join(args))
        kg.eq(p.stdout, "", "stdout of a usage error")
    # Nothing was changed by the refused update.
    kg.eq(show_json(d, k["id"])["disabled"], False, "key after usage errors")


def test_help_and_version():
    p = ctl("-h")
    out = ok(p, "-h")
    kg.check(out.startswith("usage: keygatectl "), "-h output %r" % out[:80])
    for cmd in ("create", "list", "show", "update", "delete", "regenerate",
                "usage", "verify", "import", "status", "top",
                "cluster"):
        kg.check(re.search(r"^\t%s\b" % cmd, out, re.M),
                 "-h does not describe %s" % cmd)
    p = ctl()
    kg.eq(p.returncode, 2, "exit status without arguments")
    kg.check(p.stderr.startswith("usage: keygatectl "), "usage on stderr")
    out = ok(ctl("-v"), "-v")
    kg.check(re.match(r"^keygatectl \d+\.\d+\.\d+\n$", out), "-v: %r" % out)
    out2 = kg.keygated("-v").stdout
    kg.eq(out.split()[1], out2.split()[1], "same version as keygated")


def dead_url():
    """An admin URL where nothing listens: a command that got there fails."""
    return "http://127.0.0.1:%d" % kg.free_port()


def test_help_commands():
    """help, help COMMAND, COMMAND --help / -h: usage on stdout, exit 0."""
    out = ok(ctl("help", env={"KEYGATE_ADMIN_URL": dead_url()}), "help")
    kg.check(out.startswith("usage: keygatectl "), "help: %r" % out[:80])
    kg.check(re.search(r"^\thelp \[COMMAND\]$", out, re.M),
             "help does not describe itself")
    synopsis = {}
    for line in out.splitlines():
        m = re.match(r"^\t([a-z]+) ", line + " ")
        if m:
            synopsis[m.group(1)] = line.strip()
    for cmd in ("create", "list", "show", "update", "delete", "regenerate",
                "usage", "verify", "import", "status", "top",
                "cluster"):
        first = synopsis[cmd].split("\n")[0]
        for args in (("help", cmd), (cmd, "--help"), (cmd, "-h"),
                     (cmd, "x", "--help"), ("--json", cmd, "--help")):
            # A URL where nothing listens, and no token: help needs none.
            p = ctl("-u", dead_url(), *args)
            text = ok(p, "keygatectl %s" % " ".join(args))
            kg.eq(p.stderr, "", "stderr of %s" % " ".join(args))
            kg.check(text.startswith("usage: keygatectl [global options] " +
                                     first), "%s: %r" % (" ".join(args),
                                                         text[:120]))
            kg.check(len(text.splitlines()) >= 3, "%s says what %s does" %
                     (" ".join(args), cmd))
    fails(ctl("help", "frob"), 2, r'help: unknown command "frob"',
          "help of an unknown command")
    fails(ctl("help", "list", "x"), 2, r'unexpected argument "x"',
          "help with two arguments")


def default_config():
    """keygatectl's default configuration path, as -h prints it."""
    out = ok(ctl("-h"), "-h")
    m = re.search(r"configuration file \(default (\S+)\)", out)
    kg.check(m is not None, "no default configuration in -h")
    return m.group(1)


def test_url_without_token():
    """A URL without a token: say which token is missing, not the config."""
    if os.path.exists(default_config()):
        raise kg.Skip("%s exists here" % default_config())
    u = dead_url()
    for args, env, src in ((("-u", u, "list"), {}, "-u"),
                           (("show", "key_x"), {"KEYGATE_ADMIN_URL": u},
                            "KEYGATE_ADMIN_URL")):
        p = ctl(*args, env=env)
        first = fails(p, 1, r"^keygatectl: no admin token for the admin URL "
                      r"from %s: use -t TOKEN, -T FILE or KEYGATE_ADMIN_TOKEN"
                      % src, "URL from %s without a token" % src)
        kg.eq(p.stderr, first + "\n", "one stderr line")
        kg.eq(p.stdout, "", "stdout")
    # An explicit -c is read for admin_token_file, and named when it has none.
    bare = os.path.join(kg.tempdir(), "bare.conf")
    with open(bare, "w") as f:
        f.write("listen 127.0.0.1:1\nroute * .* auth=deny\n")
    fails(ctl("-c", bare, "-u", u, "list"), 1, r"no admin token: .*" +
          re.escape(bare), "-c without admin_token_file")


def test_expires_checked_locally():
    """
    --expires is checked before anything is sent, like --rate: a reason on
    one line, the synopsis, exit 2; the forms the API takes still work.
    """
    d = daemon()
    k = create(d, "--owner", owner())
    bad = [("tomorrow", r"expected an RFC 3339 time"),
           ("2030-02-30T00:00:00Z", r"expected an RFC 3339 time"),
           ("2030-01-01 00:00:00Z", r"expected an RFC 3339 time"),
           ("2030-01-01T00:00:00", r"expected an RFC 3339 time"),
           ("2030-01-01T24:00:00Z", r"expected an RFC 3339 time"),
           ("x10d", r"expected an RFC 3339 time"),
           ("+0s", r"expected an RFC 3339 time"),
           ("", r"expected an RFC 3339 time"),
           ("2001-01-01T00:00:00Z", r"in the past")]
    for value, pattern in bad:
        for args in (("create", "--owner", "o", "--expires", value),
                     ("update", k["id"], "--expires", value)):
            # Sent to a URL where nothing listens: refused before that.
            p = ctl(*args, d=d, env={"KEYGATE_ADMIN_URL": dead_url()})
            first = fails(p, 2, r"^keygatectl: %s: bad --expires \"%s\" "
                          r"\(.*%s" % (args[0], re.escape(value), pattern),
                          "--expires %r" % value)
            lines = p.stderr.splitlines()
            kg.eq(lines[0], first, "reason first")
            kg.check(lines[1].startswith("usage: keygatectl %s" % args[0]),
                     "synopsis after the reason: %r" % p.stderr)
            kg.eq(p.stdout, "", "stdout")
    good = [("2999-01-31T12:00:00Z", "2999-01-31T12:00:00.000Z"),
            ("2999-01-31T12:00:00.5+02:00", "2999-01-31T10:00:00.500Z"),
            ("2999-01-31t12:00:00z", "2999-01-31T12:00:00.000Z")]
    for value, want in good:
        j = create(d, "--owner", owner(), "--expires", value)
        kg.eq(j["expires_at"], want, "expires_at of --expires %s" % value)
    j = create(d, "--owner", owner(), "--expires", "+2h")
    kg.check(abs(iso_ms(j["expires_at"]) - time.time() * 1000 - 7200000) <
             60000, "--expires +2h: %r" % j["expires_at"])


def no_empty_strings(v, where):
    """Absent values are null in --json output, never "" (nor missing)."""
    if isinstance(v, dict):
        for k, x in v.items():
            no_empty_strings(x, "%s.%s" % (where, k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            no_empty_strings(x, "%s[%d]" % (where, i))
    else:
        kg.check(v != "", "%s is an empty string" % where)


def test_json_matches_api():
    """
    Every command's --json prints one JSON document: the API's answer as
    the API gives it (the same members, null for what is absent), and for
    delete, which the API answers with 204, {"id": ID, "deleted": true}.
    """
    d = daemon()
    o = owner()
    j = create(d, "--owner", o)			# no name, app, expiry
    kid = j["id"]
    _, g = api(d, "GET", "/v1/keys/" + kid)
    kg.eq(set(j), set(g) | {"secret"}, "--json create members")
    kg.eq({m: j[m] for m in g}, g, "--json create vs GET")
    for m in ("name", "app_id", "expires_at", "rate_limit", "grace_until",
              "last_used_at"):
        kg.eq(j[m], None, "--json create: %s of a key without one" % m)
    outputs = {"create": j}
    outputs["show"] = show_json(d, kid)
    kg.eq(outputs["show"], g, "--json show vs GET")
    outputs["list"] = json.loads(ok(ctl("--json", "list", "--owner", o,
                                        d=d), "--json list"))
    _, gl = api(d, "GET", "/v1/keys?owner=" + o)
    kg.eq(outputs["list"], gl, "--json list vs GET /v1/keys")
    outputs["list1"] = json.loads(ok(ctl("--json", "list", "--owner", o,
                                         "--limit", "1", d=d), "list 1"))
    kg.eq(outputs["list1"], gl, "--json list --limit 1 vs GET /v1/keys")
    outputs["update"] = json.loads(ok(ctl("--json", "update", kid,
                                          "--name", "n", d=d), "update"))
    _, g = api(d, "GET", "/v1/keys/" + kid)
    kg.eq(outputs["update"], g, "--json update vs GET")
    outputs["clear"] = json.loads(ok(ctl("--json", "update", kid, "--name",
                                         "", d=d), "update --name ''"))
    kg.eq(outputs["clear"]["name"], None, "a cleared name")
    outputs["usage"] = json.loads(ok(ctl("--json", "usage", kid, d=d),
                                     "usage"))
    _, gu = api(d, "GET", "/v1/keys/%s/usage" % kid)
    kg.eq(outputs["usage"], gu, "--json usage vs GET .../usage")
    outputs["regenerate"] = json.loads(ok(ctl("--json", "regenerate", kid,
                                              d=d), "regenerate"))
    _, g = api(d, "GET", "/v1/keys/" + kid)
    r = outputs["regenerate"]
    kg.eq({m: r[m] for m in g}, g, "--json regenerate vs GET")
    p = ctl("--json", "verify", r["secret"], d=d)
    outputs["verify"] = json.loads(ok(p, "verify"))
    _, gv = api(d, "POST", "/v1/verify", {"key": r["secret"]})
    kg.eq(outputs["verify"], gv, "--json verify vs POST /v1/verify")
    p = ctl("--json", "verify", "live_" + "x" * 32, d=d)
    kg.eq(p.returncode, 1, "verify of a wrong secret")
    outputs["verify-bad"] = json.loads(p.stdout)
    _, gv = api(d, "POST", "/v1/verify", {"key": "live_" + "x" * 32})
    kg.eq(outputs["verify-bad"], gv, "--json verify (invalid) vs the API")
    outputs["delete"] = json.loads(ok(ctl("--json", "delete", kid, d=d),
                                      "--json delete"))
    kg.eq(outputs["delete"], {"id": kid, "deleted": True}, "--json delete")
    kg.eq(api(d, "GET", "/v1/keys/" + kid)[0], 404, "deleted")
    for name, v in outputs.items():
        no_empty_strings(v, "--json %s" % name)


def test_token_never_printed():
    """The token stays out of every message, even about the token itself."""
    d = daemon()
    # ctl() checks every run; these are the runs most likely to leak it.
    ctl("-u", "http://127.0.0.1:%d" % kg.free_port(), "-t", TOKEN, "list")
    ctl("-u", "http://" + TOKEN + "@127.0.0.1:1", "-t", TOKEN, "list")
    ctl("-u", "ftp://127.0.0.1:1", "-t", TOKEN, "list")
    ctl("-t", TOKEN + " x", "list", d=d, token=False)
    short = os.path.join(kg.tempdir(), "short.token")
    with open(short, "w") as f:
        f.write(TOKEN[:8] + "\n")
    p = ctl("-T", short, "list", d=d, token=False)
    fails(p, 1, r"shorter than 16", "short token file")
    kg.check(TOKEN[:8] not in p.stderr, "the short token is printed")
    ctl("--json", "list", d=d)
    # And it is in the daemon's logs neither.
    kg.check(TOKEN not in d.errlog_text(), "the token is in the error log")
    try:
        with open(d.access_path) as f:
            kg.check(TOKEN not in f.read(), "the token is in the access log")
    except OSError:
        pass


# --- cluster ----------------------------------------------------------------

class FakeAdmin:
    """
    A scripted admin API on a free loopback port.  GET PATH answers
    answers[PATH]: (status, body), or a function returning it, body being
    JSON-encoded unless it is bytes; a request without "Bearer TOKEN" gets
    401.  Every request is kept in requests as (method, path, auth), the
    last body sent in last.
    """

    def __init__(self, answers):
        fake = self
        self.answers = answers
        self.requests = []
        self.last = None

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                auth = self.headers.get("Authorization")
                fake.requests.append((self.command, self.path, auth))
                if auth != "Bearer " + TOKEN:
                    status, body = 401, {"error": "unauthorized",
                                         "message": "wrong token"}
                elif self.path not in fake.answers:
                    status, body = 404, b"no such page"
                else:
                    a = fake.answers[self.path]
                    status, body = a() if callable(a) else a
                fake.last = body
                data = body if isinstance(body, bytes) else \
                    json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      Handler)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def url(self):
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def ctl(self, *args):
        """keygatectl ARGS against this server, with TOKEN."""
        return kg.ctl_run(args, kg.ctl_env(self.url(), TOKEN), secret=TOKEN)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def fake_cluster(answer):
    """A FakeAdmin whose GET /v1/cluster answers 200 with answer (a dict,
    or a function of the time in ms returning one), or (status, body)."""
    def serve():
        if isinstance(answer, tuple):
            return answer
        return 200, answer(int(time.time() * 1000)) if callable(answer) \
            else answer
    return FakeAdmin({"/v1/cluster": serve})


CLUSTER_HEAD = ["NODE", "HOST", "PID", "POSITION", "LAG", "SEEN"]
NOT_ENABLED = "cluster: not enabled (no cluster_redis in the configuration)\n"


def cluster_joined(now):
    """GET /v1/cluster of a joined node with three peers: one 2.5 s behind,
    one not seen for 2 hours, one whose clock is a minute ahead.  This node
    is not first in the list."""
    return {
        "enabled": True, "name": "t1", "redis": "redis://127.0.0.1:43333/0",
        "redis_up": True, "state": "joined", "node": "2c5b53fc9dcf03f0",
        "epoch": "f67a90c15068bee7d39c0cbb28e16ea6",
        "position": "1796321716000-0", "lag_seconds": 0.0,
        "applied_total": 3,
        "nodes": [
            {"node": "c9b9c1db80277fc3", "host": "vm", "pid": 27304,
             "position": "1796321713500-0", "version": "0.11.0",
             "seen": now - 1000, "lag_seconds": 2.5, "self": False},
            {"node": "2c5b53fc9dcf03f0", "host": "vm", "pid": 27294,
             "position": "1796321716000-0", "version": "0.11.0",
             "seen": now - 400, "lag_seconds": 0.0, "self": True},
            {"node": "0a1b2c3d4e5f6071", "host": "gw-other", "pid": 1,
             "position": "1796321716000-0", "version": "0.11.0",
             "seen": now - 7265000, "lag_seconds": 0.0, "self": False},
            {"node": "ffeeddccbbaa9988", "host": "gw3", "pid": 4242,
             "position": "1796321716000-0", "version": "0.11.0",
             "seen": now + 60000, "lag_seconds": 0.0, "self": False}],
        "stream_last": "1796321716000-0", "checked_ms_ago": 434}


def cluster_output(text):
    """keygatectl cluster's output: (the lines before the table, the
    table's rows); rows is None when there is no table."""
    head, sep, rest = text.partition("\n\n")
    return head.splitlines(), table(rest, CLUSTER_HEAD) if sep else None


def test_cluster_not_enabled():
    """A daemon without cluster_redis: one line, exit 0; --json is the
    API's {"enabled": false}."""
    d = daemon()
    p = ctl("cluster", d=d)
    kg.eq(ok(p, "cluster"), NOT_ENABLED, "cluster without a cluster")
    kg.eq(p.stderr, "", "stderr")
    j = json.loads(ok(ctl("cluster", "--json", d=d), "cluster --json"))
    kg.eq(j, {"enabled": False}, "cluster --json without a cluster")
    kg.eq(api(d, "GET", "/v1/cluster"), (200, j), "--json vs the API")
    fails(ctl("cluster", "extra", d=d), 2, r'cluster: unexpected argument '
          r'"extra"', "cluster with an argument")
    fails(ctl("-t", "not-the-token-0123456789", "cluster", d=d), 1,
          r"^keygatectl: unauthorized: ", "cluster with a wrong token")


def test_cluster_output():
    """A joined node and its peers, from a scripted API: the summary lines
    and the node table, this node first; --json as served."""
    fake = fake_cluster(cluster_joined)
    try:
        p = fake.ctl("cluster")
        lines, rows = cluster_output(ok(p, "cluster"))
        kg.eq(p.stderr, "", "stderr")
        kg.eq(fake.requests[-1], ("GET", "/v1/cluster", "Bearer " + TOKEN),
              "the request")
        kg.eq(lines, [
            "cluster t1: joined, Redis redis://127.0.0.1:43333/0 reachable",
            "this node: 2c5b53fc9dcf03f0 at 1796321716000-0, lag 0.000 s, "
            "3 changes applied",
            "stream: last 1796321716000-0, epoch "
            "f67a90c15068bee7d39c0cbb28e16ea6, checked 0.434 s ago"],
            "summary lines")
        kg.eq([(r["NODE"], r["HOST"], r["PID"], r["POSITION"], r["LAG"])
               for r in rows],
              [("2c5b53fc9dcf03f0", "vm", "27294", "1796321716000-0",
                "0.000s"),
               ("c9b9c1db80277fc3", "vm", "27304", "1796321713500-0",
                "2.500s"),
               ("0a1b2c3d4e5f6071", "gw-other", "1", "1796321716000-0",
                "0.000s"),
               ("ffeeddccbbaa9988", "gw3", "4242", "1796321716000-0",
                "0.000s")], "node table")
        # SEEN is from keygatectl's clock, a little after the answer.
        seen = [r["SEEN"] for r in rows]
        m = re.match(r"^(\d+\.\d)s ago \(this node\)$", seen[0])
        kg.check(m and 0.4 <= float(m.group(1)) < 5, "SEEN of this node: "
                 "%r" % seen[0])
        m = re.match(r"^(\d+\.\d)s ago$", seen[1])
        kg.check(m and 1.0 <= float(m.group(1)) < 6, "SEEN: %r" % seen[1])
        kg.check(re.match(r"^2h 1m ago$", seen[2]), "SEEN: %r" % seen[2])
        m = re.match(r"^(\d+\.\d)s ahead$", seen[3])
        kg.check(m and 55 < float(m.group(1)) <= 60, "SEEN: %r" % seen[3])
        j = json.loads(ok(fake.ctl("--json", "cluster"), "--json cluster"))
        kg.eq(j, fake.last, "--json cluster vs the answer")
        # One change: no plural.
        one = cluster_joined(0)
        one["applied_total"] = 1
        fake.answers["/v1/cluster"] = (200, one)
        lines, _ = cluster_output(ok(fake.ctl("cluster"), "cluster"))
        kg.check(lines[1].endswith(", 1 change applied"), "applied_total "
                 "1: %r" % lines[1])
        # The rate limits' line (0.13), after the stream's.
        lim = dict(one, limits={
            "mode": "local", "fallback": "local", "nodes": 3,
            "subjects": 12, "lease_calls": 4567, "lease_calls_failed": 2,
            "units_granted": 120000, "units_returned": 310, "full": 7})
        fake.answers["/v1/cluster"] = (200, lim)
        lines, _ = cluster_output(ok(fake.ctl("cluster"), "cluster"))
        kg.eq(lines[3], "limits: local (fallback local, 3 nodes), 12 "
              "subjects, 4567 lease calls (2 failed), 120000 units granted, "
              "310 returned, 7 full", "the limits line")
        # The standing allowance's line (0.13.1), after it.
        lim["limits"]["standing"] = {"share_permille": 133,
                                     "max_permille": 200, "state": "waiting",
                                     "usable_in_ms": 62100}
        lines, _ = cluster_output(ok(fake.ctl("cluster"), "cluster"))
        kg.eq(lines[4], "standing allowance: 13.3% of each key's limits (at "
              "most 20.0%), waiting (usable in 63 s)", "the standing "
              "allowance's line")
        lim["limits"]["standing"] = {"share_permille": 0, "max_permille": 0,
                                     "state": "off", "usable_in_ms": 0}
        lines, _ = cluster_output(ok(fake.ctl("cluster"), "cluster"))
        kg.eq(lines[4], "standing allowance: 0.0% of each key's limits (at "
              "most 0.0%), off", "the standing allowance's line, off")
        lim["limits"] = {"mode": 1}
        lines, _ = cluster_output(ok(fake.ctl("cluster"), "cluster"))
        kg.eq(lines[3], "limits: ? (fallback ?, ? nodes), ? subjects, ? "
              "lease calls (? failed), ? units granted, ? returned, ? full",
              "a limits object of the wrong types")
    finally:
        fake.close()


def test_cluster_states_exit_0():
    """Refused, disconnected and not enabled, from a scripted API: the
    refusal and the cache warning lines, "nodes: none", and exit 0 in every
    state (as status, whatever the upstreams)."""
    refused = {
        "enabled": True, "name": "t1", "redis": "redis://10.0.0.9:6379/2",
        "redis_up": True, "state": "refused",
        "refused": "the cluster has max_keys 100, this node 5000",
        "cache": "a journal write failed: state_dir holds an older copy",
        "node": "2c5b53fc9dcf03f0", "epoch": "f67a90c15068bee7d39c0cbb28e1",
        "position": "0-0", "lag_seconds": 12.25, "applied_total": 0,
        "nodes": [], "stream_last": "1796321716000-0"}
    fake = fake_cluster((200, refused))
    try:
        lines, rows = cluster_output(ok(fake.ctl("cluster"), "refused"))
        kg.eq(lines, [
            "cluster t1: refused, Redis redis://10.0.0.9:6379/2 reachable",
            "refused: the cluster has max_keys 100, this node 5000",
            "warning: a journal write failed: state_dir holds an older copy",
            "this node: 2c5b53fc9dcf03f0 at 0-0, lag 12.250 s, 0 changes "
            "applied",
            "stream: last 1796321716000-0, epoch "
            "f67a90c15068bee7d39c0cbb28e1, not checked yet",
            "nodes:            none"], "refused")
        kg.eq(rows, None, "no table without nodes")
        down = dict(refused, state="disconnected", redis_up=False,
                    checked_ms_ago=61500)
        del down["refused"], down["cache"]
        fake.answers["/v1/cluster"] = (200, down)
        lines, _ = cluster_output(ok(fake.ctl("cluster"), "disconnected"))
        kg.eq(lines[0], "cluster t1: disconnected, Redis "
              "redis://10.0.0.9:6379/2 unreachable", "disconnected")
        kg.eq(lines[2], "stream: last 1796321716000-0, epoch "
              "f67a90c15068bee7d39c0cbb28e1, checked 61.500 s ago",
              "checked_ms_ago")
        kg.eq(len(lines), 4, "no refused or warning line: %r" % lines)
        fake.answers["/v1/cluster"] = (200, dict(down, state="joining",
                                                 redis_up=True))
        lines, _ = cluster_output(ok(fake.ctl("cluster"), "joining"))
        kg.check(lines[0].startswith("cluster t1: joining, "), lines[0])
        fake.answers["/v1/cluster"] = (200, {"enabled": False})
        kg.eq(ok(fake.ctl("cluster"), "not enabled"), NOT_ENABLED,
              "not enabled")
    finally:
        fake.close()


def test_cluster_malformed_answers():
    """Members missing or of the wrong type print as "?" and control
    characters as "?", never a crash; an answer that is not a JSON object
    or not a 200 fails with one line, exit 1."""
    garbage = [
        ({}, ["cluster ?: ?, Redis ? ?",
              "this node: ? at ?, lag ?, ? changes applied",
              "stream: last ?, epoch ?, not checked yet",
              "nodes:            ?"]),
        ({"enabled": "yes", "name": 7, "state": None, "redis": ["x"],
          "redis_up": "yes", "node": {}, "position": 1, "lag_seconds": "0",
          "applied_total": 1.5, "checked_ms_ago": "x", "stream_last": False,
          "epoch": "", "refused": 3, "cache": None, "nodes": {"a": 1}},
         ["cluster ?: ?, Redis ? ?", "refused: ?", "warning: ?",
          "this node: ? at ?, lag ?, ? changes applied",
          "stream: last ?, epoch ?, checked ? s ago",
          "nodes:            ?"]),
        ({"enabled": True, "name": "t\n1\x1b[2J", "state": "joined\r",
          "redis": "redis://h:1/0", "redis_up": True, "node": "n",
          "position": "1-0", "lag_seconds": 1e300, "applied_total": -2,
          "checked_ms_ago": -5, "stream_last": "1-0", "epoch": "e",
          "refused": "bad\tname", "nodes": []},
         ["cluster t?1?[2J: joined?, Redis redis://h:1/0 reachable",
          "refused: bad?name",
          "this node: n at 1-0, lag 1e+300 s, -2 changes applied",
          "stream: last 1-0, epoch e, checked -0.005 s ago",
          "nodes:            none"]),
    ]
    nodes = [1, "a", None, [], {"self": "yes", "seen": "x", "pid": "p",
                                "lag_seconds": "z", "node": 5},
             {"self": True, "seen": 1e300, "pid": -1, "node": "n\x1b[31m",
              "host": "", "position": "1-0", "lag_seconds": 0.25}]
    fake = fake_cluster((200, {}))
    try:
        for body, want in garbage:
            fake.answers["/v1/cluster"] = (200, body)
            p = fake.ctl("cluster")
            lines, rows = cluster_output(ok(p, "cluster %r" % body))
            kg.eq(lines, want, "output for %r" % body)
            kg.eq(rows, None, "no table for %r" % body)
            kg.eq(p.stderr, "", "stderr for %r" % body)
        fake.answers["/v1/cluster"] = (200, {"enabled": True, "nodes": nodes})
        lines, rows = cluster_output(ok(fake.ctl("cluster"), "bad nodes"))
        unknown = {h: "?" for h in CLUSTER_HEAD}
        kg.eq(rows, [{"NODE": "n?[31m", "HOST": "?", "PID": "-1",
                      "POSITION": "1-0", "LAG": "0.250s",
                      "SEEN": "? (this node)"}] + [unknown] * 5,
              "rows of malformed nodes")
        # Answers that are no cluster state at all.
        for answer, pattern in (
                ((200, []), r"answered with invalid JSON"),
                ((200, b"not json"), r"answered with invalid JSON"),
                ((200, b""), r"answered with invalid JSON"),
                ((503, {"error": "cluster_unavailable", "message":
                        "the master did not answer: timeout"}),
                 r"^keygatectl: cluster_unavailable: the master did not "
                 r"answer: timeout$"),
                ((404, b"no such page"), r"unexpected answer from the admin "
                 r"API at http://127\.0\.0\.1:\d+: HTTP 404$")):
            fake.answers["/v1/cluster"] = answer
            p = fake.ctl("cluster")
            first = fails(p, 1, pattern, "answer %r" % (answer,))
            kg.eq(p.stderr, first + "\n", "one stderr line")
            kg.eq(p.stdout, "", "stdout of a failed cluster")
    finally:
        fake.close()


def test_cluster_of_one_daemon():
    """A daemon in a cluster of one (a redis-server of the test's own):
    joined, Redis reachable, one row for this node (the master's pid)."""
    rediskit.need_redis()
    r = rediskit.Server()
    d = None
    try:
        d = kg.start(template(cluster_redis="redis://127.0.0.1:%d" % r.port,
                              cluster_name="t"), nports=2)

        def joined():
            p = ctl("--json", "cluster", d=d)
            if p.returncode != 0:
                return None
            j = json.loads(p.stdout)
            return j if j.get("state") == "joined" and \
                any(n.get("self") for n in j.get("nodes", [])) else None
        j = kg.wait_for(joined, 15, "the daemon to join the cluster",
                        interval=0.1)
        kg.check(re.match(r"^redis://127\.0\.0\.1:%d(/0)?$" % r.port,
                          j["redis"]), "redis %r" % j["redis"])
        p = ctl("cluster", d=d)
        lines, rows = cluster_output(ok(p, "cluster"))
        kg.eq(p.stderr, "", "stderr")
        kg.eq(lines[0], "cluster t: joined, Redis %s reachable" % j["redis"],
              "first line")
        kg.check(re.match(r"^this node: %s at \S+, lag \d+\.\d{3} s, \d+ "
                          r"changes? applied$" % re.escape(j["node"]),
                          lines[1]), "this node: %r" % lines[1])
        kg.check(re.match(r"^stream: last \S+, epoch %s, (checked \d+\.\d{3} "
                          r"s ago|not checked yet)$" % re.escape(j["epoch"]),
                          lines[2]), "stream: %r" % lines[2])
        kg.check(re.match(r"^limits: lease \(fallback local, 1 nodes\), "
                          r"\d+ subjects, \d+ lease calls \(\d+ failed\), "
                          r"\d+ units granted, \d+ returned, \d+ full$",
                          lines[3]), "limits: %r" % lines[3])
        kg.check(re.match(r"^standing allowance: (0\.0|20\.0)% of each key's "
                          r"limits \(at most 20\.0%\), (registering|on)$",
                          lines[4]),
                 "standing: %r" % lines[4])
        kg.eq(len(lines), 5, "summary lines: %r" % lines)
        kg.eq(len(rows), 1, "rows: %r" % rows)
        row = rows[0]
        kg.eq((row["NODE"], row["PID"]), (j["node"], str(d.master_pid)),
              "the node's row")
        kg.check(re.match(r"^\d+\.\d{3}s$", row["LAG"]), "LAG %r" %
                 row["LAG"])
        kg.check(re.match(r"^\d+\.\ds ago \(this node\)$", row["SEEN"]),
                 "SEEN %r" % row["SEEN"])
    finally:
        if d is not None:
            d.kill()
        r.stop()


TESTS = [
    test_create_prints_key_and_secret_once,
    test_create_json_has_secret,
    test_create_rejected_by_api,
    test_list_table_filters_and_states,
    test_list_pagination,
    test_show_list_and_json,
    test_update_each_field,
    test_delete_then_show,
    test_regenerate_with_grace,
    test_usage,
    test_usage_windows_after_requests,
    test_usage_rate_limit_off,
    test_verify,
    test_token_sources,
    test_url_sources,
    test_wrong_token_unauthorized,
    test_unreachable_admin_api,
    test_https_admin_url_from_config_pinned,
    test_https_admin_url_with_cacert,
    test_usage_errors_exit_2,
    test_help_and_version,
    test_help_commands,
    test_url_without_token,
    test_expires_checked_locally,
    test_json_matches_api,
    test_token_never_printed,
    test_cluster_not_enabled,
    test_cluster_output,
    test_cluster_states_exit_0,
    test_cluster_malformed_answers,
    test_cluster_of_one_daemon,
]

if __name__ == "__main__":
    kg.run(TESTS)
