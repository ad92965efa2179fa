#!/usr/bin/env python3
"""Make N API keys for the keys-* benchmark workloads (standard library only).

    python3 keys.py N OUTDIR

writes into OUTDIR (created if missing):

    secrets.txt     the N secrets, one per line (the wrk script reads them)
    keys.snapshot   keygated's key store with the N keys, in the snapshot
                    format of include/journal.h: a header line, one KEY line
                    per key, an end line; only digests, no secrets
    nginx.map       the body of an nginx "map $http_x_api_key ..." block:
                    one '"SECRET" "OWNER";' line per key
    haproxy.map     an HAProxy map file: one "SECRET OWNER" line per key
    first.owner     the owner of the first key (the checks use it)

Secrets are "live_" and 32 base62 characters, ids "key_" and 16, drawn
from os.urandom without modulo bias, like src/secret.c.  Each key belongs
to one of 1000 owners ("owner-0" ... "owner-999"), round robin.  The files
holding secrets are created with mode 0600.
"""

import hashlib
import json
import os
import sys
import time

BASE62 = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PREFIX = "live"
OWNERS = 1000


def base62(n):
    """n random base62 characters (bytes >= 248 are redrawn: no bias)."""
    out = bytearray()
    while len(out) < n:
        for b in os.urandom(2 * n):
            if b < 248:
                out.append(BASE62[b % 62])
                if len(out) == n:
                    break
    return out.decode("ascii")


def key_line(kid, secret, owner, i, now):
    """The snapshot KEY object of one key (see include/journal.h)."""
    return json.dumps({
        "id": kid,
        "digest": hashlib.sha256(secret.encode("ascii")).hexdigest(),
        "old_digest": None,
        "grace_until": None,
        "name": "bench %d" % i,
        "owner": owner,
        "app_id": "",
        "prefix": PREFIX,
        "hint": "%s_...%s" % (PREFIX, secret[-4:]),
        "scopes": [],
        "created": now,
        "updated": now,
        "expires": None,
        "disabled": False,
        "rate": [0, 0, 0],
    }, separators=(",", ":"))


def private(path):
    """A text file only its owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, "w", encoding="ascii")


def main():
    if len(sys.argv) != 3 or not sys.argv[1].isdigit():
        sys.exit("usage: keys.py N OUTDIR")
    n = int(sys.argv[1])
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    now = int(time.time() * 1000)
    ids = set()
    secrets = set()
    with private(os.path.join(out, "secrets.txt")) as sec, \
            private(os.path.join(out, "keys.snapshot")) as snap, \
            private(os.path.join(out, "nginx.map")) as ngx, \
            private(os.path.join(out, "haproxy.map")) as hap:
        snap.write('{"keygate_snapshot":1,"seq":%d,"keys":%d}\n' % (n, n))
        i = 0
        while i < n:
            kid = "key_" + base62(16)
            secret = PREFIX + "_" + base62(32)
            # nginx compares map strings case-insensitively: keep the
            # secrets distinct in lower case too (a clash is ~62^-32).
            if kid in ids or secret.lower() in secrets:
                continue
            ids.add(kid)
            secrets.add(secret.lower())
            owner = "owner-%d" % (i % OWNERS)
            sec.write(secret + "\n")
            snap.write(key_line(kid, secret, owner, i, now) + "\n")
            ngx.write('"%s" "%s";\n' % (secret, owner))
            hap.write("%s %s\n" % (secret, owner))
            i += 1
        snap.write('{"end":%d}\n' % n)
    with open(os.path.join(out, "first.owner"), "w", encoding="ascii") as f:
        f.write("owner-0\n")


if __name__ == "__main__":
    main()
