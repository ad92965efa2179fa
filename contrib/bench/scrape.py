#!/usr/bin/env python3
"""The metrics-scrape workload's client (standard library only).

    python3 scrape.py traffic PORT ROUTES KEYROUTES CONNS [PID...]
    python3 scrape.py time PORT PATH N OUTFILE

traffic: opens CONNS keep-alive connections to 127.0.0.1:PORT (one
request on each as it opens), keeps them all open, and then sends on each
of them, one after the other, every request of the list: for each route I in 1..ROUTES, GET /rI (the upstream answers
200), GET /rI?s=404 and GET /rI?s=503 (the upstream answers that status);
for each K in 1..KEYROUTES, GET /kK without a key and with an unknown one
(401); GET /nope (no route: 404).  Each answer must have the status
expected.  With PIDs (the gateway's worker processes, which share one
listening socket), it first makes sure each of them holds at least one
of the connections (ss -tnp: the process that owns the accepted socket),
opening more, one every 20 ms, up to 32 x CONNS, if one does not: then
every worker has counts on every route, under every status.  Prints one line: "traffic
requests=N conns=C per_worker=PID:C,... statuses=200:N,401:N,...".

time: one keep-alive connection to 127.0.0.1:PORT; one untimed GET PATH,
then N timed ones in a row (from the request's first byte sent to the
last byte of the body read, time.perf_counter).  Each must answer 200
over the same connection (a new connection is an error: it would time a
handshake).  Writes the N times in ms, one a line, to OUTFILE and prints
"time n=N median_ms=.. p90_ms=.. p99_ms=.. max_ms=.. bytes=B series=S"
(bytes and series: of the last body; series: its lines that are not
comments).  Percentiles are nearest-rank.
"""

import http.client
import re
import subprocess
import sys
import time

HOST = "127.0.0.1"


def requests_list(routes, keyroutes):
    """(path, headers, expected status) of one pass over the routes."""
    out = []
    for i in range(1, routes + 1):
        out.append(("/r%d" % i, {}, 200))
        out.append(("/r%d?s=404" % i, {}, 404))
        out.append(("/r%d?s=503" % i, {}, 503))
    for k in range(1, keyroutes + 1):
        out.append(("/k%d" % k, {}, 401))
        out.append(("/k%d" % k,
                    {"X-API-KEY": "live_00000000000000000000000000000000"},
                    401))
    out.append(("/nope", {}, 404))
    return out


def owners(port):
    """{pid: connections} of the accepted sockets on port (ss -tnp)."""
    res = subprocess.run(
        ["ss", "-Htnp", "state", "established", "( sport = :%d )" % port],
        capture_output=True, text=True, check=True)
    n = {}
    for pid in re.findall(r"pid=(\d+)", res.stdout):
        n[int(pid)] = n.get(int(pid), 0) + 1
    return n


def fetch(conn, path, headers, want):
    """One request on conn; its answer must have status want."""
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    r.read()
    if r.status != want:
        sys.exit("scrape.py: GET %s answered %d, not %d"
                 % (path, r.status, want))
    return r.status


def traffic(port, routes, keyroutes, nconns, pids):
    """The traffic pass: see the module's comment."""
    conns = []

    def more(n, pause):
        for _ in range(n):
            c = http.client.HTTPConnection(HOST, port, timeout=10)
            c.connect()
            conns.append(c)
            # One request on it: accepted and served by then.
            fetch(c, "/r1", {}, 200)
            time.sleep(pause)

    more(nconns, 0)
    per = {}
    if pids:
        # The workers race for each connection on the shared socket,
        # and the last one to accept tends to win again: one at a time,
        # with a pause that lets every worker go back to waiting.
        while True:
            per = owners(port)
            if all(per.get(p, 0) > 0 for p in pids):
                break
            if len(conns) >= 32 * nconns:
                sys.exit("scrape.py: after %d connections, workers %s "
                         "hold none" % (len(conns), ",".join(
                             str(p) for p in pids if per.get(p, 0) == 0)))
            more(nconns, 0.02)
    reqs = requests_list(routes, keyroutes)
    statuses = {}
    n = 0
    for c in conns:
        for path, headers, want in reqs:
            s = fetch(c, path, headers, want)
            statuses[s] = statuses.get(s, 0) + 1
            n += 1
    for c in conns:
        c.close()
    print("traffic requests=%d conns=%d per_worker=%s statuses=%s" % (
        n + len(conns), len(conns),
        ",".join("%d:%d" % (p, per.get(p, 0)) for p in pids) or "-",
        ",".join("%d:%d" % (s, statuses[s]) for s in sorted(statuses))))


def pct(v, p):
    """Nearest-rank percentile p of the sorted list v."""
    k = max(1, -(-len(v) * p // 100))
    return v[int(k) - 1]


def timing(port, path, n, outfile):
    """The timed scrapes: see the module's comment."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    conn.connect()
    sock = conn.sock
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit("scrape.py: GET %s answered %d" % (path, r.status))
    ms = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        t1 = time.perf_counter()
        if r.status != 200:
            sys.exit("scrape.py: GET %s answered %d" % (path, r.status))
        if conn.sock is not sock:
            sys.exit("scrape.py: the server closed the keep-alive "
                     "connection")
        ms.append((t1 - t0) * 1000)
    conn.close()
    with open(outfile, "w", encoding="ascii") as f:
        for v in ms:
            f.write("%.4f\n" % v)
    v = sorted(ms)
    series = sum(1 for line in body.split(b"\n")
                 if line and not line.startswith(b"#"))
    print("time n=%d median_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f "
          "bytes=%d series=%d" % (n, pct(v, 50), pct(v, 90), pct(v, 99),
                                  v[-1], len(body), series))


def main():
    a = sys.argv[1:]
    if len(a) >= 5 and a[0] == "traffic":
        traffic(int(a[1]), int(a[2]), int(a[3]), int(a[4]),
                [int(p) for p in a[5:]])
    elif len(a) == 5 and a[0] == "time":
        timing(int(a[1]), a[2], int(a[3]), a[4])
    else:
        sys.exit(__doc__.split("\n\n")[1])


if __name__ == "__main__":
    main()
