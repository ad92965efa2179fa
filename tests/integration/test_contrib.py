"""
test_contrib: the monitoring files in contrib/ agree with the metrics keygate
serves and with Prometheus.

Always (no daemon, no network): contrib/grafana/keygate-dashboard.json
parses, takes its data source as the input ${DS_PROMETHEUS}, has the
"instance" and "route" variables and the panels the README promises; and
every metric name in a PromQL expression of the dashboard or of
contrib/prometheus/keygate-alerts.yml is one of the families keygate serves
(FAMILIES, below, the names fixed for issue 13; a histogram's _bucket, _sum
and _count, and Prometheus' own "up").  The files are in EXTRA_DIST.

When promtool is on PATH: "promtool check config" of the example
prometheus.yml, "promtool check rules" of the alerts and of the dashboard's
expressions (written as recording rules, the Grafana variables replaced),
and "promtool test rules" of keygate-alerts.test.yml must all pass.  Without
promtool those checks are skipped, visibly: the test prints why and exits
with the skip status (77) once the other checks have passed.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import kgtest as kg

PROM = "contrib/prometheus"
DASHBOARD = "contrib/grafana/keygate-dashboard.json"

# The metric families of keygate's exposition (src/metrics.c).
FAMILIES = {
    "keygate_requests_total": "counter",
    "keygate_request_duration_seconds": "histogram",
    "keygate_upstream_requests_total": "counter",
    "keygate_upstream_duration_seconds": "histogram",
    "keygate_auth_refusals_total": "counter",
    "keygate_ratelimit_refusals_total": "counter",
    "keygate_connections": "gauge",
    "keygate_connections_accepted_total": "counter",
    "keygate_keys": "gauge",
    "keygate_keys_max": "gauge",
    "keygate_workers": "gauge",
    "keygate_config_reloads_total": "counter",
    "keygate_config_last_reload_success_timestamp_seconds": "gauge",
    "keygate_worker_restarts_total": "counter",
    "keygate_build_info": "gauge",
    "keygate_tls_handshakes_total": "counter",
    "keygate_jwks_keys": "gauge",
    "keygate_jwks_last_success_timestamp_seconds": "gauge",
    "keygate_jwks_up": "gauge",
    "process_cpu_seconds_total": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_virtual_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
    "process_start_time_seconds": "gauge",
}

# Alerts the rules file must have.
ALERTS = ["KeygateDown", "KeygateHigh5xxRatio", "KeygateUpstreamFailures",
          "KeygateAuthRefusalSpike", "KeygateConfigReloadFailed",
          "KeygateWorkerRestarts", "KeygateKeysNearMax", "KeygateJwksStale",
          "KeygateHighLatencyP99"]

# Series the dashboard must chart (one panel or more each).
DASHBOARD_NEEDS = [
    "keygate_requests_total", "keygate_request_duration_seconds_bucket",
    "keygate_auth_refusals_total", "keygate_ratelimit_refusals_total",
    "keygate_upstream_requests_total",
    "keygate_upstream_duration_seconds_bucket", "keygate_connections",
    "keygate_keys", "keygate_keys_max", "keygate_config_reloads_total",
    "keygate_worker_restarts_total", "process_cpu_seconds_total",
    "process_resident_memory_bytes",
]

# PromQL words that are not metric names.
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring",
            "group_left", "group_right", "offset", "bool", "inf", "nan",
            "Inf", "NaN"}


def path(rel):
    return os.path.join(kg.SRCDIR, rel)


def metric_names(expr):
    """The metric names an expression reads (Grafana variables allowed)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)		# strings
    e = re.sub(r"\{[^{}]*\}", " ", e)				# matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)				# ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*"
               r"\([^)]*\)", " ", e)				# label lists
    e = re.sub(r"\$\{?\w+\}?", " ", e)				# variables
    names = set()
    for m in re.finditer(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?",
                         e):
        if m.group(2) or m.group(1) in KEYWORDS:
            continue		# a function (or aggregation), or a keyword
        names.add(m.group(1))
    return names


def known(name):
    if name == "up" or name in FAMILIES:
        return True
    m = re.match(r"^(.*)_(bucket|sum|count)$", name)
    return m is not None and FAMILIES.get(m.group(1)) == "histogram"


def rule_exprs(text):
    """(alert name, expr) of every rule of a rules file, without YAML."""
    out, alert, lines, i = [], None, text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^\s*- alert:\s*(\S+)\s*$", line)
        if m:
            alert = m.group(1)
        m = re.match(r"^(\s*)expr:\s*(.*)$", line)
        if m:
            indent, value = len(m.group(1)), m.group(2).strip()
            if value in ("|", "|-", ">", ">-"):
                block = []
                while i + 1 < len(lines) and (not lines[i + 1].strip() or
                                              len(lines[i + 1]) -
                                              len(lines[i + 1].lstrip()) >
                                              indent):
                    i += 1
                    block.append(lines[i].strip())
                value = " ".join(block)
            out.append((alert, value))
        i += 1
    return out


def dashboard():
    with open(path(DASHBOARD), encoding="utf-8") as f:
        try:
            return json.load(f)
        except ValueError as e:
            raise AssertionError("%s does not parse: %s" % (DASHBOARD, e))


def dashboard_exprs(d):
    """(where, expr) of every query of every panel, rows included."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if "expr" in t:
                    out.append(("panel %r" % p.get("title"), t["expr"]))
            walk(p.get("panels", []))
    walk(d.get("panels", []))
    return out


def check_names(where, expr):
    kg.check(expr.strip() != "", "%s: empty expression" % where)
    names = metric_names(expr)
    kg.check(names, "%s: no metric in %r" % (where, expr))
    bad = sorted(n for n in names if not known(n))
    kg.check(not bad, "%s: %s not served by keygate (in %r)" %
             (where, ", ".join(bad), expr))
    return names


def test_name_extraction():
    """metric_names() finds what it must, so the checks below mean it."""
    kg.eq(metric_names('sum by (route, le) (rate(keygate_request_duration_'
                       'seconds_bucket{instance=~"$instance", route=~'
                       '"$route"}[$__rate_interval]))'),
          {"keygate_request_duration_seconds_bucket"}, "histogram query")
    kg.eq(metric_names('keygate_keys / keygate_keys_max > 0.9 and on '
                       '(instance) up == 1'),
          {"keygate_keys", "keygate_keys_max", "up"}, "binary operators")
    kg.eq(metric_names('label_replace(rate(x_total{code="5.."}[5m]), '
                       '"c", "${1}xx", "code", "(.).*") offset 1h'),
          {"x_total"}, "strings and offset")
    kg.check(not known("keygate_requests") and
             not known("keygate_keys_bucket") and
             known("keygate_upstream_duration_seconds_count"),
             "histogram suffixes only on histograms")


def test_dashboard():
    d = dashboard()
    inputs = {i.get("name"): i for i in d.get("__inputs", [])}
    kg.check("DS_PROMETHEUS" in inputs and
             inputs["DS_PROMETHEUS"].get("pluginId") == "prometheus",
             "no DS_PROMETHEUS input: %r" % d.get("__inputs"))
    variables = {v["name"]: v for v in d["templating"]["list"]}
    for name in ("instance", "route"):
        kg.check(name in variables, "no $%s variable" % name)
        q = variables[name]["query"]
        q = q.get("query") if isinstance(q, dict) else q
        m = re.match(r"^label_values\((.*),\s*(\w+)\)$", q)
        kg.check(m is not None and m.group(2) == name,
                 "$%s: query %r" % (name, q))
        check_names("variable $%s" % name, m.group(1))
    exprs = dashboard_exprs(d)
    kg.check(len(exprs) >= 10, "only %d queries" % len(exprs))
    used = set()
    for where, expr in exprs:
        used |= check_names(where, expr)
        kg.check('instance=~"$instance"' in expr, "%s does not follow "
                 "$instance: %r" % (where, expr))
    for p in d["panels"]:
        if p.get("type") == "row":
            continue
        kg.eq(p.get("datasource", {}).get("uid"), "${DS_PROMETHEUS}",
              "data source of panel %r" % p.get("title"))
        kg.check(p.get("targets"), "panel %r has no query" % p.get("title"))
    missing = [n for n in DASHBOARD_NEEDS if n not in used]
    kg.check(not missing, "the dashboard charts none of %s" % missing)
    kg.check(any('route=~"$route"' in e for _, e in exprs),
             "no panel follows $route")


def test_alert_rules():
    with open(path(PROM + "/keygate-alerts.yml"), encoding="utf-8") as f:
        rules = rule_exprs(f.read())
    names = [a for a, _ in rules]
    for a in ALERTS:
        kg.check(a in names, "no alert %s in keygate-alerts.yml" % a)
    kg.eq(len(names), len(set(names)), "alert names unique")
    for alert, expr in rules:
        check_names("alert %s" % alert, expr)
    with open(path(PROM + "/keygate-alerts.test.yml"),
              encoding="utf-8") as f:
        tests = f.read()
    for a in ("KeygateConfigReloadFailed", "KeygateKeysNearMax",
              "KeygateHigh5xxRatio"):
        kg.check(re.search(r"alertname: %s\n\s+exp_alerts: \[\]" % a,
                           tests) is not None,
                 "keygate-alerts.test.yml never shows %s quiet" % a)
        kg.check(re.search(r"alertname: %s\n\s+exp_alerts:\n" % a, tests)
                 is not None,
                 "keygate-alerts.test.yml never shows %s firing" % a)


def test_in_dist():
    with open(path("Makefile.am"), encoding="utf-8") as f:
        text = f.read().replace("\\\n", " ")
    m = re.search(r"^EXTRA_DIST\s*=(.*)$", text, re.M)
    dist = set(m.group(1).split())
    for m in re.finditer(r"^EXTRA_DIST\s*\+=(.*)$", text, re.M):
        dist |= set(m.group(1).split())
    for rel in (PROM + "/prometheus.yml", PROM + "/keygate-alerts.yml",
                PROM + "/keygate-alerts.test.yml", DASHBOARD):
        kg.check(rel in dist, "%s is not in EXTRA_DIST" % rel)


def promtool(*args, cwd=None):
    exe = shutil.which("promtool")
    if exe is None:
        raise kg.Skip("promtool not found (install prometheus): "
                      "\"promtool check config/rules\" and \"promtool test "
                      "rules\" not run")
    p = subprocess.run([exe] + list(args), cwd=cwd, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=120)
    kg.eq(p.returncode, 0, "promtool %s: %s" % (" ".join(args), p.stdout))
    return p.stdout


def test_promtool():
    # promtool reads rule_files relative to the configuration: a copy, so
    # that nothing is written next to the sources.
    tmp = tempfile.mkdtemp(prefix="kgtest-contrib-")
    try:
        for name in ("prometheus.yml", "keygate-alerts.yml",
                     "keygate-alerts.test.yml"):
            shutil.copy(path(PROM + "/" + name), tmp)
        promtool("check", "config", "prometheus.yml", cwd=tmp)
        promtool("check", "rules", "keygate-alerts.yml", cwd=tmp)
        out = promtool("test", "rules", "keygate-alerts.test.yml", cwd=tmp)
        kg.check("SUCCESS" in out, "promtool test rules: %s" % out)
        # The dashboard's queries as recording rules, so that promtool
        # parses each one; the Grafana variables become what they stand for.
        lines = ["groups:", "  - name: dashboard", "    rules:"]
        for i, (_, expr) in enumerate(dashboard_exprs(dashboard())):
            e = (expr.replace("$__rate_interval", "5m")
                 .replace("$instance", ".*").replace("$route", ".*"))
            lines += ["      - record: keygate:dashboard_%d" % i,
                      "        expr: %s" % json.dumps(e)]
        with open(os.path.join(tmp, "dashboard.yml"), "w") as f:
            f.write("\n".join(lines) + "\n")
        promtool("check", "rules", "dashboard.yml", cwd=tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


TESTS = [
    test_name_extraction,
    test_dashboard,
    test_alert_rules,
    test_in_dist,
    test_promtool,
]


if __name__ == "__main__":
    if len(sys.argv) > 1:
        names = sys.argv[1:]
        TESTS = [t for t in TESTS if t.__name__ in names]
    try:
        kg.run(TESTS)
    except SystemExit as e:
        # Everything else passed: without promtool the file is a skip.
        if e.code == 0 and shutil.which("promtool") is None:
            sys.stderr.write("test_contrib.py: promtool not found: the "
                             "Prometheus files were not checked by it; "
                             "skipped\n")
            sys.exit(kg.SKIP_EXIT)
        raise
