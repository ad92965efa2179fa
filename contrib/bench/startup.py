#!/usr/bin/env python3
"""Start-up with many keys: keygated against nginx (issue 14).

    python3 startup.py [N [ROUNDS]]     (default 1000000 keys, 3 rounds)

Environment: KEYGATED (default _build/src/keygated, then src/keygated,
from the source tree this file is in), NGINX (default nginx on PATH or in
/usr/sbin), TMPDIR (the work directory goes there: a million keys take
about 700 MB of secrets, maps and snapshots; it is removed at the end).
Standard library only.

What it does, in one run:

1. keys.py makes N keys: their secrets, keygated's snapshot in the
   JSON-lines format (what keygated wrote before the binary format) and
   the nginx map file.
2. keygated starts on that JSON snapshot, once: the time from its launch
   to its first good answer, and the load time it logs
   ("keys.snapshot: N keys loaded in T ms").  That start rewrites the
   snapshot in the binary format (journal_compact_due: an old snapshot is
   compacted at start), so its time includes the rewrite.
3. ROUNDS rounds, each starting keygated on the binary snapshot, then
   nginx with an N-entry "map $http_x_api_key" (sized as run.sh's keys-*
   workloads size it), each timed from launch to its first good answer:
   a request with the first key's secret that it answers 204 with that
   key's owner in X-Consumer-Id (keygated: verify_path, nginx: the map).
   Each is stopped before the next starts.
4. Medians, keygated's logged load times, and the ratio keygated/nginx of
   the medians and of each round (the two run back to back, so a round's
   ratio shares its noise).

Both run one worker; the machine's other load counts in both, so run it
on a quiet machine and read the per-round ratios.
"""

import http.client
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
START_LIMIT = 600.0	# seconds a server may take to answer
POLL = 0.005		# seconds between two tries


def find_keygated():
    env = os.environ.get("KEYGATED")
    if env:
        return env
    for p in ("_build/src/keygated", "src/keygated"):
        p = os.path.join(TOP, p)
        if os.access(p, os.X_OK):
            return p
    sys.exit("startup.py: no keygated (set KEYGATED)")


def find_nginx():
    env = os.environ.get("NGINX")
    if env:
        return env
    p = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(p, os.X_OK):
        sys.exit("startup.py: no nginx (set NGINX)")
    return p


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port, path, secret, owner):
    """Does 127.0.0.1:port answer path with the key 204 and its owner?"""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        c.request("GET", path, headers={
            "X-API-KEY": secret, "X-Original-Method": "GET",
            "X-Original-URI": "/bench"})
        r = c.getresponse()
        r.read()
        return r.status == 204 and r.getheader("X-Consumer-Id") == owner
    except (OSError, http.client.HTTPException):
        return False
    finally:
        c.close()


def stop(p):
    """SIGTERM, then SIGKILL after 30 s; the process is reaped."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def timed_start(argv, port, path, secret, owner, log):
    """Launch argv; seconds until it answers.  The process, still running."""
    with open(log, "ab") as out:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT)
    while not answers(port, path, secret, owner):
        if p.poll() is not None or time.monotonic() - t0 > START_LIMIT:
            stop(p)
            with open(log, errors="replace") as f:
                tail = f.read()[-2000:]
            sys.exit("startup.py: %s did not start:\n%s" % (argv[0], tail))
        time.sleep(POLL)
    return time.monotonic() - t0, p


def keygated_conf(work, port, n):
    path = os.path.join(work, "keygated.conf")
    with open(path, "w") as f:
        f.write("""# written by contrib/bench/startup.py
listen			127.0.0.1:%d
workers			1
state_dir		%s/state
pidfile			%s/keygated.pid
log_level		info
access_log		off
max_keys		%d
upstream		echo echo
verify_path		/_keygate/verify
route GET ^/bench$	auth=api-key
""" % (port, work, work, n))
    return path


def nginx_conf(work, port, n):
    """The keys-verify workload's nginx of run.sh, one worker."""
    m = 1024
    while m < 2 * n:
        m *= 2
    os.makedirs(os.path.join(work, "nginx", "logs"), exist_ok=True)
    path = os.path.join(work, "nginx", "nginx.conf")
    temps = "".join("\t%s_temp_path %s/nginx/%s;\n" % (t, work, t) for t in
                    ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    with open(path, "w") as f:
        f.write("""# written by contrib/bench/startup.py
worker_processes 1;
pid %(w)s/nginx/nginx.pid;
error_log %(w)s/nginx/logs/error.log error;
events { worker_connections 1024; }
http {
	access_log off;
%(temps)s	map_hash_max_size %(m)d;
	map_hash_bucket_size 512;
	map $http_x_api_key $kg_owner {
		default "";
		include %(w)s/keys/nginx.map;
	}
	server {
		listen 127.0.0.1:%(port)d;
		location = /_keygate/verify {
			if ($kg_owner = "") {
				return 401;
			}
			add_header X-Consumer-Id $kg_owner;
			return 204;
		}
	}
}
""" % {"w": work, "m": m, "port": port, "temps": temps})
    return path


def logged_load_ms(log):
    """The last "keys.snapshot: N keys loaded in T ms (F format)" line."""
    with open(log, errors="replace") as f:
        found = re.findall(r"keys\.snapshot: (\d+) keys loaded in (\d+) ms "
                           r"\(([^)]*) format\)", f.read())
    if not found:
        return None
    keys, ms, fmt = found[-1]
    return int(keys), int(ms), fmt


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    keygated, nginx = find_keygated(), find_nginx()
    work = tempfile.mkdtemp(prefix="kg-startup-")
    try:
        run(n, rounds, keygated, nginx, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(n, rounds, keygated, nginx, work):
    keys = os.path.join(work, "keys")
    t0 = time.monotonic()
    subprocess.run([sys.executable, os.path.join(HERE, "keys.py"), str(n),
                    keys], check=True)
    print("# %d keys made by keys.py in %.1f s" % (n, time.monotonic() - t0))
    with open(os.path.join(keys, "secrets.txt")) as f:
        secret = f.readline().strip()
    with open(os.path.join(keys, "first.owner")) as f:
        owner = f.readline().strip()
    state = os.path.join(work, "state")
    os.makedirs(state, mode=0o700)
    shutil.move(os.path.join(keys, "keys.snapshot"),
                os.path.join(state, "keys.snapshot"))
    kport, nport = free_port(), free_port()
    kconf = keygated_conf(work, kport, n)
    nconf = nginx_conf(work, nport, n)
    kargv = [keygated, "-f", "-c", kconf]
    nargv = [nginx, "-p", work + "/nginx/", "-c", nconf, "-e",
             work + "/nginx/logs/error.log", "-g", "daemon off;"]
    klog = os.path.join(work, "keygated.log")
    nlog = os.path.join(work, "nginx.log")
    print("# keygated %s, nginx %s, one worker each; time from launch to "
          "the first 204 for the first key" % (keygated, nginx))

    secs, p = timed_start(kargv, kport, "/_keygate/verify", secret, owner,
                          klog)
    stop(p)
    loaded = logged_load_ms(klog)
    size = os.path.getsize(os.path.join(state, "keys.snapshot"))
    with open(os.path.join(state, "keys.snapshot"), "rb") as f:
        magic = f.read(8)
    if magic != b"KGSNAP\r\n":
        sys.exit("startup.py: the JSON snapshot was not rewritten as binary")
    print("keygated, JSON-lines snapshot:  %6.2f s to answer (load %s ms, "
          "then the rewrite as binary, %d bytes)" %
          (secs, loaded[1] if loaded else "?", size))

    kt, nt, kl = [], [], []
    for i in range(rounds):
        secs, p = timed_start(kargv, kport, "/_keygate/verify", secret,
                              owner, klog)
        stop(p)
        loaded = logged_load_ms(klog)
        kt.append(secs)
        kl.append(loaded[1] if loaded else float("nan"))
        secs, p = timed_start(nargv, nport, "/_keygate/verify", secret,
                              owner, nlog)
        stop(p)
        nt.append(secs)
        print("round %d: keygated %6.2f s (load %s ms), nginx %6.2f s, "
              "ratio %.2f" % (i + 1, kt[-1], kl[-1], nt[-1], kt[-1] / nt[-1]))
    km, nm = statistics.median(kt), statistics.median(nt)
    print("keygated, binary snapshot:      %6.2f s median to answer (load "
          "%s ms median)" % (km, statistics.median(kl)))
    print("nginx, %d-entry map:       %6.2f s median to answer" % (n, nm))
    print("ratio keygated/nginx: %.2f (of the medians), %.2f (median of the "
          "rounds' ratios)" % (km / nm, statistics.median(
              [k / m for k, m in zip(kt, nt)])))


if __name__ == "__main__":
    main()
