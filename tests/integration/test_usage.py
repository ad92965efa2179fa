"""
Per-key usage history (issue 13): the real keygated, a key with a small
rate limit and one scope, a known mix of requests through the gateway
(admitted, refused with 429 by the key's limit, refused with 403 for a
scope), then GET /v1/keys/{id}/usage?history=1h|24h|30d and
keygatectl usage KEY --history.

What is checked: every history has the answer's shape (60 or 1440
per-minute points, 720 per-hour points, ascending, evenly spaced, the last
one the current minute or hour) and its totals equal the requests made;
the usage counters split rate_limited out of refused; the history survives
a graceful restart on the same state_dir (and the restart adds nothing);
the files in state_dir/usage are there, versioned, 0600; a damaged file is
skipped, not fatal; keygatectl draws the same totals; a bad history value
answers 422 and an unknown key 404.
"""

import calendar
import os
import re
import stat
import sys
import time

import kgtest as kg

ROUTES = (
    "route GET ^/echo(/|$) auth=api-key upstream=echo",
    "route GET ^/scoped(/|$) auth=api-key scope=orders:write upstream=echo",
    "route * .* auth=deny",
)

ADMITTED = 5		# the key's per_60s limit: the first 5 /echo pass
LIMITED = 3		# then 429
REFUSED = 2		# /scoped: 403 insufficient_scope (uses no quota)


def start(state=None):
    t = kg.config(*ROUTES, workers=2, admin="{port2}")
    if state is not None:
        t = t.replace("state_dir {dir}/state", "state_dir " + state)
    return kg.start(t, nports=2)


def state_dir(d):
    with open(d.conf_path) as f:
        return re.search(r"^state_dir\s+(\S+)\s*$", f.read(), re.M).group(1)


def adm(d, path, status=200):
    r = kg.admin(d, "GET", path)
    kg.eq(r.status, status, "GET %s status (body %r)" % (path, r.body[:300]))
    return r.json()


def call(d, path, secret):
    return kg.request(d.port, "GET", path,
                      headers={"X-API-KEY": secret}).status


def away_from_minute_end():
    """
    Wait, if needed, until the wall clock is at second 3 to 50 of a
    minute, so that a few requests made now fall in one minute and the
    master's fold (at the first tick of a minute) is not in between.
    """
    sec = time.time() % 60
    if sec < 3 or sec > 50:
        time.sleep((63 - sec) % 60)


def traffic(d, secret):
    """The known mix; the statuses it got, in order."""
    got = [call(d, "/echo/%d" % i, secret)
           for i in range(ADMITTED + LIMITED)]
    got += [call(d, "/scoped/%d" % i, secret) for i in range(REFUSED)]
    kg.eq(got, [200] * ADMITTED + [429] * LIMITED + [403] * REFUSED,
          "statuses of the request mix")
    return got


def parse_t(t):
    m = re.match(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?Z$", t)
    kg.check(m is not None, "point time %r is not RFC 3339 UTC" % t)
    return calendar.timegm(tuple(int(x) for x in m.groups()[:6]))


def history(d, k, which, before, after):
    """
    The history answer, its shape checked against the wall clock read
    before and after the request; the totals (admitted, rate_limited,
    refused).
    """
    h = adm(d, "/v1/keys/%s/usage?history=%s" % (k["id"], which))
    n, step = {"1h": (60, 60), "24h": (1440, 60), "30d": (720, 3600)}[which]
    kg.eq((h["id"], h["history"], h["resolution"]),
          (k["id"], which, "1h" if step == 3600 else "1m"),
          "%s: id, history, resolution" % which)
    pts = h["points"]
    kg.eq(len(pts), n, "%s: number of points" % which)
    ts = [parse_t(p["t"]) for p in pts]
    kg.eq([b - a for a, b in zip(ts, ts[1:])], [step] * (n - 1),
          "%s: points ascending, %d s apart" % (which, step))
    kg.check(ts[-1] % step == 0, "%s: last point not on a boundary" % which)
    kg.check(int(before) // step * step <= ts[-1] <=
             int(after) // step * step,
             "%s: the last point %s is not the current one" %
             (which, pts[-1]["t"]))
    for p in pts:
        kg.eq(sorted(p), ["admitted", "rate_limited", "refused", "t"],
              "%s: members of a point" % which)
    return tuple(sum(p[c] for p in pts)
                 for c in ("admitted", "rate_limited", "refused"))


def check_totals(d, k, what):
    want = (ADMITTED, LIMITED, REFUSED)
    for which in ("1h", "24h", "30d"):
        before = time.time()
        got = history(d, k, which, before, time.time())
        kg.eq(got, want, "%s: %s totals (admitted, rate_limited, refused)"
              % (what, which))


def ctl(d, *args):
    """keygatectl ARGS against d, in the C locale (ASCII sparklines)."""
    env = kg.ctl_env("http://127.0.0.1:%d" % d.ports[1], kg.ADMIN_TOKEN,
                     {"LANG": None, "LC_CTYPE": None, "LC_ALL": "C"})
    return kg.ctl_run(args, env)


def test_history_totals_and_restart():
    """
    The mix shows in every history at once (the live minute), the usage
    counters split it the same way, and a graceful restart keeps the
    history exactly: the new daemon neither loses nor repeats a request.
    """
    d = start()
    k, s = kg.create_key(d, "history", scopes=["orders:read"],
                         rate_limit={"per_60s": ADMITTED})
    traffic(d, s)
    u = adm(d, "/v1/keys/%s/usage" % k["id"])
    kg.eq((u["requests_allowed"], u["requests_refused"],
           u["requests_rate_limited"]), (ADMITTED, LIMITED + REFUSED, LIMITED),
          "usage counters (allowed, refused, rate_limited)")
    check_totals(d, k, "before the restart")
    # Another key without traffic: all zeros, and no line of its own.
    k2, _ = kg.create_key(d, "quiet")
    kg.eq(history(d, k2, "24h", time.time(), time.time()), (0, 0, 0),
          "a key without traffic")
    state = state_dir(d)
    kg.eq(d.stop(), 0, "exit status of a graceful stop")

    udir = os.path.join(state, "usage")
    st = os.stat(udir)
    kg.eq(stat.S_IMODE(st.st_mode), 0o700, "mode of state_dir/usage")
    names = sorted(os.listdir(udir))
    kg.check(any(n.startswith("minutes-") for n in names) and
             any(n.startswith("hours-") for n in names),
             "files in state_dir/usage: %r" % names)
    for n in names:
        kg.check(not n.endswith(".tmp"), "a temporary file is left: %s" % n)
        p = os.path.join(udir, n)
        kg.eq(stat.S_IMODE(os.stat(p).st_mode), 0o600, "mode of %s" % n)
        with open(p) as f:
            text = f.read()
        kg.check(text.startswith("keygate-usage 1 ") and
                 text.endswith("\nend\n"), "%s: %r" % (n, text[:200]))
        kg.check(k["id"] in text and k2["id"] not in text,
                 "%s holds the key with traffic only: %r" % (n, text[:200]))
        kg.check(s not in text, "%s holds a secret" % n)

    n = start(state)
    check_totals(n, k, "after the restart")
    u2 = adm(n, "/v1/keys/%s/usage" % k["id"])
    kg.eq(u2["requests_rate_limited"], LIMITED, "rate_limited after a restart")
    # New traffic adds to what was kept.
    kg.eq(call(n, "/scoped/again", s), 403, "a refusal after the restart")
    before = time.time()
    kg.eq(history(n, k, "1h", before, time.time()),
          (ADMITTED, LIMITED, REFUSED + 1), "1h totals after one more")
    kg.eq(n.stop(), 0, "exit status of the second stop")


def test_damaged_file_skipped():
    """
    A truncated minutes file (its end line cut) and a hostile one are
    logged and skipped: the daemon starts, answers, and the day's file
    still gives the 30-day history its totals.
    """
    d = start()
    k, s = kg.create_key(d, "damage", scopes=["orders:read"],
                         rate_limit={"per_60s": ADMITTED})
    traffic(d, s)
    state = state_dir(d)
    kg.eq(d.stop(), 0, "exit status of a graceful stop")
    udir = os.path.join(state, "usage")
    for name in os.listdir(udir):
        if name.startswith("minutes-"):
            p = os.path.join(udir, name)
            with open(p) as f:
                text = f.read()
            with open(p, "w") as f:
                f.write(text[:-len("end\n")])
    with open(os.path.join(udir, "minutes-2000-01-01T00"), "w") as f:
        f.write("keygate-usage 1 minutes 262968 1\nend\n")
    # The hour before: a line far over the limit, in the 24 h window.
    hour = int(time.time()) // 3600 - 1
    prev = time.strftime("minutes-%Y-%m-%dT%H", time.gmtime(hour * 3600))
    with open(os.path.join(udir, prev), "w") as f:
        f.write("keygate-usage 1 minutes %d 1\n%s 0:%s,0,0\nend\n" %
                (hour, k["id"], "9" * 100000))
    n = start(state)
    before = time.time()
    kg.eq(history(n, k, "30d", before, time.time()),
          (ADMITTED, LIMITED, REFUSED), "30d totals from the day file")
    kg.eq(history(n, k, "24h", before, time.time()), (0, 0, 0),
          "24h totals with the minutes files skipped")
    n.wait_log(r"usage history: .*minutes-.*no end line \(truncated\) "
               r"\(file skipped\)", what="the truncated file logged")
    n.wait_log(r"usage history: .*%s:2: line too long" % prev,
               what="the hostile file logged")
    kg.check(not os.path.exists(os.path.join(udir, "minutes-2000-01-01T00")),
             "the minutes file of 2000 was not pruned")
    kg.eq(n.stop(), 0, "exit status of a graceful stop")


def test_bad_history_and_unknown_key():
    d = start()
    k, _ = kg.create_key(d, "bad")
    for q in ("history=2h", "history=", "history=1H", "history=1h&history=1h",
              "hist=1h"):
        r = kg.admin(d, "GET", "/v1/keys/%s/usage?%s" % (k["id"], q))
        j = kg.check_refusal(r, 422, "invalid_field", "history %r" % q)
        kg.eq(j.get("field"), "history", "field of the 422 for %r" % q)
    r = kg.admin(d, "GET", "/v1/keys/key_doesnotexist0000/usage?history=1h")
    kg.check_refusal(r, 404, "key_not_found", "history of an unknown key")
    p = ctl(d, "usage", k["id"], "--history", "2d")
    kg.eq(p.returncode, 2, "keygatectl --history 2d exit status (%s)" %
          p.stderr)
    kg.check("--history" in p.stderr, "the usage error names --history: %r" %
             p.stderr)


def test_keygatectl_history():
    """
    keygatectl usage KEY --history 1h prints the totals, an ASCII sparkline
    of the 60 minutes (LC_ALL=C) and, for 24h, a table of 24 hourly rows
    whose sums are the totals; --json prints the API's answer.
    """
    d = start()
    k, s = kg.create_key(d, "ctl", scopes=["orders:read"],
                         rate_limit={"per_60s": ADMITTED})
    away_from_minute_end()
    traffic(d, s)
    p = ctl(d, "usage", k["id"], "--history", "1h")
    kg.eq(p.returncode, 0, "keygatectl usage --history 1h (%s)" % p.stderr)
    lines = p.stdout.splitlines()
    f = dict(re.match(r"^(\w+):\s+(.*)$", l).groups() for l in lines
             if re.match(r"^\w+:\s", l))
    kg.eq((f.get("id"), f.get("history"), f.get("admitted"),
           f.get("rate_limited"), f.get("refused")),
          (k["id"], "1h (60 points of 1m)", str(ADMITTED), str(LIMITED),
           str(REFUSED)), "keygatectl history fields: %r" % p.stdout)
    spark = [l for l in lines if l.startswith("requests ")]
    kg.eq(len(spark), 1, "one sparkline: %r" % p.stdout)
    bars = spark[0].split(" ", 1)[1].strip("|")
    kg.eq(len(bars), 60, "sparkline width: %r" % spark[0])
    kg.check(set(bars) <= set(" .:-=+*#%@"), "ASCII sparkline under "
             "LC_ALL=C: %r" % spark[0])
    kg.eq(bars[-1], "@", "the busiest minute (the last) at the top: %r" %
          spark[0])
    kg.eq(bars[:-1], " " * 59, "quiet minutes blank: %r" % spark[0])

    p = ctl(d, "usage", k["id"], "--history", "24h")
    kg.eq(p.returncode, 0, "keygatectl usage --history 24h (%s)" % p.stderr)
    rows = [l.split() for l in p.stdout.splitlines()
            if re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\dZ\s", l)]
    kg.eq(len(rows), 24, "24 hourly rows: %r" % p.stdout)
    kg.eq(tuple(sum(int(r[c]) for r in rows) for c in (1, 2, 3)),
          (ADMITTED, LIMITED, REFUSED), "the rows' sums")

    p = ctl(d, "usage", k["id"], "--history", "30d", "--json")
    kg.eq(p.returncode, 0, "keygatectl usage --history 30d --json")
    import json
    j = json.loads(p.stdout)
    kg.eq((j["history"], j["resolution"], len(j["points"])), ("30d", "1h", 720),
          "--json history answer")
    kg.eq(sum(x["admitted"] for x in j["points"]), ADMITTED,
          "--json admitted total")


TESTS = [
    test_history_totals_and_restart,
    test_damaged_file_skipped,
    test_bad_history_and_unknown_key,
    test_keygatectl_history,
]


if __name__ == "__main__":
    if len(sys.argv) > 1:
        names = sys.argv[1:]
        TESTS = [t for t in TESTS if t.__name__ in names]
    kg.run(TESTS)
