#!/usr/bin/env python3
"""Measure keygated's key creation rate through the admin API.

    python3 create.py ADMIN_URL TOKEN_FILE N VERIFY_URL

Sends N "POST /v1/keys" requests, one after the other over one keep-alive
connection (every create is fsync'ed to the journal before keygated
answers), and checks that each answers 201 with a secret.  Then the last
secret is sent to VERIFY_URL (keygated's verify_path, X-Original-URI
/bench): it must answer 204 at once, in whichever worker takes it.
Secrets are never printed.

Prints one line: "N SECONDS CREATES_PER_S P50_MS P99_MS MAX_MS VERIFY_STATUS".
Exits non-zero, with the reason on stderr, if a request fails.
"""

import http.client
import json
import sys
import time
import urllib.parse


def fail(msg):
    sys.exit("create.py: " + msg)


def connect(url):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or u.hostname is None:
        fail("not an http:// URL: " + url)
    return http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30), u


def main():
    if len(sys.argv) != 5 or not sys.argv[3].isdigit():
        sys.exit("usage: create.py ADMIN_URL TOKEN_FILE N VERIFY_URL")
    admin_url, token_file, n, verify_url = sys.argv[1], sys.argv[2], \
        int(sys.argv[3]), sys.argv[4]
    with open(token_file, encoding="ascii") as f:
        token = f.readline().strip()
    conn, u = connect(admin_url)
    path = u.path.rstrip("/") + "/v1/keys"
    headers = {"Authorization": "Bearer " + token,
               "Content-Type": "application/json"}
    lat = []
    secret = None
    start = time.perf_counter()
    for i in range(n):
        body = json.dumps({"name": "bench create %d" % i,
                           "owner": "owner-create"})
        t0 = time.perf_counter()
        conn.request("POST", path, body, headers)
        resp = conn.getresponse()
        data = resp.read()
        lat.append(time.perf_counter() - t0)
        if resp.status != 201:
            fail("create %d of %d: status %d: %s" % (i + 1, n, resp.status,
                 data[:200].decode("utf-8", "replace")))
        if resp.getheader("Connection", "").lower() == "close":
            fail("create %d: the server closed the keep-alive connection"
                 % (i + 1))
        secret = json.loads(data).get("secret")
        if not isinstance(secret, str) or not secret:
            fail("create %d: no secret in the 201 response" % (i + 1))
    elapsed = time.perf_counter() - start
    conn.close()
    status = 0
    if secret is not None:
        vconn, vu = connect(verify_url)
        vconn.request("GET", vu.path, headers={
            "X-Original-Method": "GET", "X-Original-URI": "/bench",
            "X-API-KEY": secret})
        vresp = vconn.getresponse()
        vresp.read()
        status = vresp.status
        vconn.close()
    lat.sort()

    def pct(p):
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else 0

    print("%d %.3f %.1f %.3f %.3f %.3f %d" % (n, elapsed,
          n / elapsed if elapsed > 0 else 0, pct(0.5), pct(0.99),
          lat[-1] * 1000 if lat else 0, status))


if __name__ == "__main__":
    main()
