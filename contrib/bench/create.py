#!/usr/bin/env python3
"""Measure keygated's key creation rate through the admin API.

    python3 create.py ADMIN_URL TOKEN_FILE N VERIFY_URL [CLIENTS]

Sends N "POST /v1/keys" requests from CLIENTS concurrent clients (default
16; each its own thread and keep-alive connection, N split between them;
every create is fdatasync'ed to the journal before keygated answers, and
concurrent ones share the sync), and checks that each answers 201 with a
secret.  Then the last secret is sent to VERIFY_URL (keygated's
verify_path, X-Original-URI /bench): it must answer 204 at once, in
whichever worker takes it.  Secrets are never printed.

Prints one line: "N SECONDS CREATES_PER_S P50_MS P99_MS MAX_MS VERIFY_STATUS".
Exits non-zero, with the reason on stderr, if a request fails.
"""

import http.client
import json
import sys
import threading
import time
import urllib.parse


def fail(msg):
    sys.exit("create.py: " + msg)


def connect(url):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or u.hostname is None:
        fail("not an http:// URL: " + url)
    return http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30), u


def client(admin_url, token, ids, lat, out, errors):
    """Create keys numbered ids over one connection; latencies into lat."""
    conn, u = connect(admin_url)
    path = u.path.rstrip("/") + "/v1/keys"
    headers = {"Authorization": "Bearer " + token,
               "Content-Type": "application/json"}
    try:
        for i in ids:
            body = json.dumps({"name": "bench create %d" % i,
                               "owner": "owner-create"})
            t0 = time.perf_counter()
            conn.request("POST", path, body, headers)
            resp = conn.getresponse()
            data = resp.read()
            lat.append(time.perf_counter() - t0)
            if resp.status != 201:
                errors.append("create %d: status %d: %s" % (i + 1,
                              resp.status,
                              data[:200].decode("utf-8", "replace")))
                return
            if resp.getheader("Connection", "").lower() == "close":
                errors.append("create %d: the server closed the keep-alive "
                              "connection" % (i + 1))
                return
            secret = json.loads(data).get("secret")
            if not isinstance(secret, str) or not secret:
                errors.append("create %d: no secret in the 201 response" %
                              (i + 1))
                return
            out[0] = secret
    except (OSError, http.client.HTTPException) as e:
        errors.append("%r" % e)
    finally:
        conn.close()


def main():
    if len(sys.argv) not in (5, 6) or not sys.argv[3].isdigit() or \
            (len(sys.argv) == 6 and not sys.argv[5].isdigit()):
        sys.exit("usage: create.py ADMIN_URL TOKEN_FILE N VERIFY_URL "
                 "[CLIENTS]")
    admin_url, token_file, n, verify_url = sys.argv[1], sys.argv[2], \
        int(sys.argv[3]), sys.argv[4]
    clients = max(1, int(sys.argv[5]) if len(sys.argv) == 6 else 16)
    with open(token_file, encoding="ascii") as f:
        token = f.readline().strip()
    lat, errors, out = [], [], [None]
    threads = [threading.Thread(target=client, args=(admin_url, token,
               range(c, n, clients), lat, out, errors))
               for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        fail(errors[0])
    secret = out[0]
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
