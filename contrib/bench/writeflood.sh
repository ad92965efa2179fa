#!/bin/sh
# The data plane during an admin create flood (issue 14): p99 latency of
# keyed requests through keygated's gateway (wrk --latency, built-in echo
# upstream, one API key) without, then with, $CLIENTS admin clients creating
# keys as fast as they can (wrk posting to /v1/keys, a C client: a Python
# one would be the bottleneck) on the same workers.  Also prints the
# creates/s of the flood alone.
#
#   contrib/bench/writeflood.sh [KEYGATED]
#
# KEYGATED: the daemon (default: src/keygated of the build in the current
# directory).  Environment: WORKERS [2], CONNS wrk connections [16],
# DURATION seconds per wrk run [10], CLIENTS admin clients [16], STATE a
# directory on the file system to measure [a new one under /var/tmp].
# Needs wrk, curl and python3.  Uses 127.0.0.1 only.
set -eu

keygated=${1:-src/keygated}
WORKERS=${WORKERS:-2}
CONNS=${CONNS:-16}
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-16}
dir=$(mktemp -d "${STATE:-/var/tmp}/writeflood.XXXXXX")
pid=

cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

p1=$(port)
p2=$(port)
chmod 755 "$dir"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/token"
chmod 600 "$dir/token"
cat >"$dir/keygate.conf" <<EOF
listen 127.0.0.1:$p1
admin_listen 127.0.0.1:$p2
admin_token_file $dir/token
workers $WORKERS
state_dir $dir/state
error_log $dir/error.log
access_log off
pidfile $dir/keygated.pid
upstream echo echo
route GET ^/bench auth=api-key upstream=echo
route * .* auth=deny
EOF
mkdir -p "$dir/state"
"$keygated" -f -c "$dir/keygate.conf" 2>>"$dir/error.log" &
pid=$!
i=0
until curl -sf "http://127.0.0.1:$p2/v1/health" >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 100 ] || { echo "keygated did not start" >&2; exit 1; }
	sleep 0.1
done
secret=$(curl -s -H "Authorization: Bearer $(cat "$dir/token")" \
    -H 'Content-Type: application/json' \
    -d '{"owner":"bench","rate_limit":{"per_1s":1000000,"per_10s":1000000,"per_60s":1000000}}' \
    "http://127.0.0.1:$p2/v1/keys" |
    python3 -c 'import json, sys; j = json.load(sys.stdin); print(j.get("secret") or sys.exit("create: %s" % j))')

# The flood's requests: POST /v1/keys with the token.
{
	echo 'wrk.method = "POST"'
	echo "wrk.body = '{\"owner\":\"flood\"}'"
	echo 'wrk.headers["Content-Type"] = "application/json"'
	echo "wrk.headers[\"Authorization\"] = \"Bearer $(cat "$dir/token")\""
} >"$dir/create.lua"

# p99 NAME: the gateway run; its p99 and rate.
p99() {
	wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "X-API-KEY: $secret" \
	    "http://127.0.0.1:$p1/bench" >"$dir/wrk.$1"
	awk -v name="$1" '/Requests\/sec/ { rps = $2 } $1 == "99%" { p = $2 }
	    END { printf "gateway %s: p99 %s, %s req/s\n", name, p, rps }' \
	    "$dir/wrk.$1"
}

# flood SECONDS NAME: creates for that long; their rate, p99, failures.
flood() {
	wrk -t1 -c"$CLIENTS" -d"$1s" --latency -s "$dir/create.lua" \
	    "http://127.0.0.1:$p2/v1/keys" >"$dir/flood.$2"
	awk -v name="$2" '/Requests\/sec/ { rps = $2 } $1 == "99%" { p = $2 }
	    /Non-2xx/ { bad = $NF }
	    END { printf "creates %s: %s/s, p99 %s, non-2xx %d\n", name, rps,
	    p, bad }' "$dir/flood.$2"
}

echo "fs: $(stat -f -c %T "$dir/state"), $WORKERS workers, gateway wrk" \
    "-c$CONNS, $CLIENTS admin clients"
flood "$DURATION" alone
p99 baseline
flood $((DURATION + 2)) "beside the gateway run" &
fl=$!
sleep 1
p99 "during the flood"
wait "$fl"
kill "$pid" && wait "$pid" || true
pid=
# Each worker says how many fdatasync calls its changes took.
grep -h "fdatasync call" "$dir/error.log" | sed 's/.*worker: //' || true
