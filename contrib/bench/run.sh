#!/bin/sh
# keygate benchmark harness (POSIX sh: runs under dash and bash alike).
#
# For each workload, starts keygated and the comparison servers on free
# loopback ports, in a private temporary directory, and measures them with
# wrk, taking the systems in turn for several rounds (A/B/A/B...) so that
# noise from a shared machine falls on all of them alike.  Prints, per
# workload and system, the median over the rounds of requests/s and of the
# p50 and p99 latency, the ratios of the first system (keygated) to each
# other one, and the peak RSS of each server (VmHWM summed over master and
# workers).
#
#   sh contrib/bench/run.sh
#   KEYGATED=/tmp/bench-build/src/keygated ROUNDS=3 DURATION=5 sh contrib/bench/run.sh
#   WORKLOADS=proxy PROFILE=1 sh contrib/bench/run.sh
#   WORKLOADS="jwt-cached jwt-fresh jwt-fresh-es256 jwt-vs-key" PROFILE=1 \
#       sh contrib/bench/run.sh
#   WORKLOADS=jwks-refresh DURATION=15 sh contrib/bench/run.sh
#   PEERS=1 WORKLOADS=jwt-cached sh contrib/bench/run.sh  (HAProxy alone
#       while keygated lacks jwt_provider)
#
# Workloads (see workload_info()):
#   proxy   GET /bench through the gateway to one shared upstream (an nginx
#           answering 200 '{"ok":true}'): keygated vs nginx proxy_pass vs
#           HAProxy, all with keep-alive connections to the upstream.
#   proxy-pool  proxy with two upstream servers (two such nginx, each with
#           $UPSTREAM_WORKERS worker(s)), each gateway balancing round robin
#           over both with keep-alive pools: keygated "upstream up URL1 URL2
#           max_idle=$POOL" (its default balance=round_robin) vs nginx
#           "upstream up { server ...; server ...; keepalive $POOL; }" vs
#           HAProxy "balance roundrobin" with two servers.  Before the
#           rounds, 10 requests over one connection through each gateway
#           must reach both servers; the requests each server got in every
#           round are printed (the servers' stub_status counters).
#   verify  GET /_keygate/verify with X-Original-Method/X-Original-URI (the
#           nginx auth_request sub-request), answered 204, nothing forwarded:
#           keygated verify_path vs nginx "return 204" vs HAProxy
#           "http-request return status 204".
#   echo    GET /bench: keygated's built-in echo upstream vs nginx return 200.
#   keys-verify  like verify, with $KEYS API keys loaded and a random one of
#           them in X-API-KEY on every request (wrk script keys.lua):
#           keygated route auth=api-key vs nginx "map $http_x_api_key" vs
#           an HAProxy map file; 204 with X-Consumer-Id, 401 without a key.
#   keys-proxy   like proxy, with the same keys: the gateway sends the key's
#           owner upstream in X-Consumer-Id and drops X-API-KEY.  With
#           KEYGATED2, a keygated2 column too, started from the same
#           keys.snapshot (each keygated has its own state_dir).
#   keys-create  keygated only: $CREATES x POST /v1/keys (admin API, each
#           create fdatasync'ed to the journal before its answer, concurrent
#           ones sharing the sync) from $CREATE_CLIENTS concurrent clients,
#           one keep-alive connection each (create.py), on top of the $KEYS
#           keys.
#   rate    keys-proxy with per-key rate limits too high to refuse anything:
#           keygated "rate_limit 1000000/1s 1000000/10s 1000000/60s" vs
#           keygated "rate_limit off" vs nginx limit_req keyed by
#           $http_x_api_key vs HAProxy with three stick tables (1s, 10s,
#           60s http_req_rate) keyed by the X-API-KEY header; no 429 may
#           occur (wrk counts every status >= 400).
#   rate-verify  keys-verify with the limits of rate: keygated vs keygated
#           rate_limit off vs nginx map + limit_req vs HAProxy map + three
#           stick tables, all answering 204 with X-Consumer-Id (the keyed
#           verify path with limits on, as issue 14's target names it).
#   rate-accuracy  one key, wrk -c$ACCURACY_CONNS for $DURATION s once per
#           system, each gateway limiting it to 20/1s (keygated rate_limit
#           20/1s, nginx rate=20r/s burst=$NGINX_BURST nodelay, HAProxy
#           http_req_rate(1s) gt 20) and forwarding what it admits to a
#           recording upstream (record.py): admits, the most admits in any
#           sliding 1 s, the mean admitted rate.
#   jwt-cached  GET /bench with one RS256 bearer token (Entra-like claims)
#           on every request of every connection, forwarded to the proxy
#           upstream: keygated route auth=jwt with a jwt_provider reading a
#           JWKS file (its cache of verified tokens answers all but the
#           first) vs HAProxy 2.6 jwt_verify against the PEM public key (no
#           cache: a signature check per request) with alg, iss, aud and
#           exp (and nbf) checked too; both send the token's sub upstream
#           in X-Consumer-Id and drop Authorization.
#   jwt-fresh   the same with $JWT_TOKENS RS256 tokens (distinct sub), taken
#           in turn (keys.lua KEYS_ORDER=cycle): a token comes back only
#           after all the others.
#   jwt-fresh-es256  jwt-fresh with ES256 tokens (P-256 key).
#   jwt-vs-key  keygated against itself, rate_limit off in both: auth=jwt
#           with the one token of jwt-cached vs auth=api-key with a random
#           one of $KEYS keys per request (the keys-proxy setup), the same
#           route and upstream (target: jwt >= 0.9x api-key req/s).
#   jwks-refresh  keygated against itself: 15 providers whose JWKS come
#           from an https server of the run (jwks_server.py, a CA made for
#           the run), jwt-cached traffic with one token per provider, the
#           same one for all the requests of a second (keys.lua
#           KEYS_ORDER=clock); in the rounds of "keygated", at the start of
#           each second, that provider's served JWKS gets a new key and a
#           token signed by it is sent (curl), which makes keygated
#           re-fetch that JWKS at once (unknown kid);
#           "keygated_calm" gets the same traffic, and the same requests
#           and file copies each second, with a known kid: no re-fetch.  Both
#           are restarted with an empty state_dir before each round (a
#           provider re-fetches early at most once per 5 minutes).  The p99
#           ratio is the figure (target <= 1.2x).
#   https-proxy  proxy over keep-alive HTTPS (wrk https://): keygated
#           "listen ... tls" vs nginx "listen ... ssl" vs HAProxy "bind ...
#           ssl crt", all with the run's ECDSA P-256 certificate (openssl
#           CLI) and session tickets on, to the plain upstream of proxy.
#   https-handshake  the same systems, full handshakes: tlsload.c -m full
#           (built here with cc; wrk may resume sessions at random), a
#           new connection per request, no session offered.
#   https-resume  the same, tlsload -m resume: each connection slot offers
#           the ticket it was last given; the share resumed is printed.
#   tls-idle-memory  one run per system: $IDLE_CONNS TLS connections held
#           open after the handshake (tlsload -m hold); memory (RSS and
#           PSS over master and workers) before and after, per connection.
#   A keygated without TLS leaves its column out of these four (with a
#   note, "keygated: TLS not supported by this binary"); the peers run.
#   metrics-scrape  the cost of a Prometheus scrape: keygated with
#           $SCRAPE_ROUTES routes "route GET ^/rN$ auth=anonymous name=rN"
#           to the shared upstream and 4 api-key routes /kN (401s), and
#           "metrics_listen"; HAProxy with $SCRAPE_ROUTES backends (one
#           server each) and its prometheus-exporter service on a frontend
#           of its own; both with $SCRAPE_WORKERS workers (HAProxy:
#           threads).  First scrape.py sends every route 200, 404 and 503
#           (the upstream answers ?s=), every /kN two 401s and /nope a 404,
#           from $SCRAPE_CONNS connections or more, until every keygated
#           worker holds one; then, in turns for $ROUNDS rounds, $SCRAPES
#           sequential GET /metrics over one keep-alive connection
#           (scrape.py time): median, p90 and p99 in ms, the body's size;
#           PROFILE=1: the servers' CPU time per scrape (perf stat).
#           nginx has no comparable exporter (stub_status: 7 numbers).
#   cluster-limits  keygated against itself, two nodes per system, keyed
#           proxy on $HOT_KEYS hot keys with limits too high to refuse
#           anything ($CLUSTER_LIMITS): "keygated", two nodes with
#           cluster_redis to a redis-server of the run (one cluster_name),
#           the limits leased from Redis; "keygated_local", the same two
#           nodes without cluster_redis (each with its own copy of the
#           keys: limits per node); "keygated_sync", the cluster again with
#           KEYGATE_BENCH_LEASE_SYNC=1 (one unit per lease, asked for when
#           spent: a Redis round trip per request, the anchor's approach).
#           Each round runs two wrk at once, one per node, -c$CONNS/2
#           each, over the $HOT_KEYS first keys.  Prints req/s (sum of the
#           two), 2xx/s, Redis CPU (/proc/PID/stat) per round and per
#           1,000 requests, lease calls per 1,000 requests (both nodes'
#           /v1/cluster), and the share of decisions taken without waiting
#           (/metrics keygate_cluster_limit_decisions_total); ratios
#           keygated/keygated_local (target >= 0.95x) and
#           keygated/keygated_sync (target >= 2x).
# The keys (secrets, keygated's keys.snapshot, nginx and HAProxy map files)
# are made once per run by keys.py; the JWT keys, JWKS, PEM public keys and
# tokens once per run by tokens.py (run with $JWT_PYTHON).  For keys-verify
# and keys-proxy every system is also started once with no keys, to measure
# its memory at rest with 0 and with $KEYS keys (PSS summed over its
# processes) and its start-up time.
# Each workload gets its own fresh servers, stopped after it.  Before a
# workload starts, its keygated config is checked with "keygated -t": if the
# binary rejects it (for example one without http:// upstreams or
# verify_path), the workload is skipped with the reason and the others run
# (with PEERS=1, its systems other than keygated's still run).
#
# Environment (defaults in brackets):
#   KEYGATED   keygated binary [_build/src/keygated, then src/keygated, from
#              the top of the source tree]
#   NGINX      nginx binary [nginx from PATH]
#   HAPROXY    haproxy binary [haproxy from PATH], for the workloads
#              that compare with it
#   WORKLOADS  space-separated workloads to run [proxy proxy-pool verify
#              echo keys-verify keys-proxy keys-create rate rate-verify
#              rate-accuracy];
#              also jwt-cached jwt-fresh jwt-fresh-es256 jwt-vs-key
#              jwks-refresh https-proxy https-handshake https-resume
#              tls-idle-memory
#   KEYS       API keys loaded for the keys-* workloads [100000]
#   CREATES    keys created through the admin API in keys-create [2000]
#   CREATE_CLIENTS  concurrent admin clients in keys-create [16]
#   ROUNDS     rounds per workload [5]
#   DURATION   seconds per wrk run [10]
#   CONNS      wrk connections (-c) [64]
#   THREADS    wrk threads (-t) [1]
#   WORKERS    worker processes of every gateway; HAProxy: nbthread [2]
#   UPSTREAM_WORKERS  worker processes of the upstream nginx (proxy; of
#              each of the two in proxy-pool) [1]
#   POOL       idle keep-alive connections to the upstream per gateway
#              worker: keygated max_idle=, nginx keepalive [64]
#   WARMUP     seconds of untimed wrk load per system before the rounds [2]
#   PROFILE    1: after the rounds, measure CPU time and context switches per
#              request (perf stat) and syscalls per request (strace -c -f)
#              on each system's processes [0]
#   PROFILE_DURATION  seconds of wrk load per profile run [5]
#   KEEP_TMP   1: keep the temporary directory (configs, logs, wrk output)
#   ACCURACY_CONNS  wrk connections in rate-accuracy [16]
#   NGINX_BURST     nginx limit_req burst in rate-accuracy [19: with
#              nodelay, 20 requests at once, as the 20/1s of the others]
#   JWT_TOKENS tokens in the jwt-fresh pools [10000]
#   JWT_PYTHON a Python with PyJWT and cryptography, for tokens.py
#              [/usr/bin/python3: Debian's python3-jwt, python3-cryptography]
#   PEERS      1: run a workload's other systems even when keygated -t
#              rejects its config (the peers' figures alone, no ratios) [0]
#   KEYGATED2  a second keygated binary: a keygated2 column in proxy,
#              verify and keys-proxy, same config (in keys-proxy the same
#              keys.snapshot in its own state_dir), ratios
#              keygated/keygated2 (before and after a change, in one run)
#              [none]
#   IDLE_CONNS idle TLS connections in tls-idle-memory [10000]
#   IDLE_HOLD  seconds they stay open after the measurement [5]
#   SCRAPES    timed GET /metrics per system and round in metrics-scrape
#              [300]
#   SCRAPE_ROUTES   routes (keygated) and backends (HAProxy) in
#              metrics-scrape [100]
#   SCRAPE_WORKERS  workers (HAProxy: threads) in metrics-scrape [4]
#   SCRAPE_CONNS    connections of metrics-scrape's traffic, at least [16]
#   HOT_KEYS   keys wrk sends in cluster-limits (the first ones of the run's
#              keys, a random one per request) [10]
#   CLUSTER_LIMITS  rate_limit of every node in cluster-limits
#              [1000000/1s 1000000/10s 1000000/60s]
#   ROUND_WARMUP  cluster-limits: seconds of untimed load on a system right
#              before each of its rounds (its leases were handed back in
#              the other systems' turns; 0: measure from cold) [1]
#
# Adding a workload: give it a case in workload_info() (description,
# systems with the compared one first, path, extra request headers,
# expected status) and in workload_expect() (a string the response must
# contain), and serve its path in the SYSTEM_conf functions.
# Adding a system: write start_SYSTEM WORKLOAD (start it, set SYSTEM_PID to
# the pid of its master process, set SYSTEM_PORT, return non-zero if it
# would not start) and, if its config can be checked, check_SYSTEM.
set -eu

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
WORKERS=${WORKERS:-2}
UPSTREAM_WORKERS=${UPSTREAM_WORKERS:-1}
POOL=${POOL:-64}
WARMUP=${WARMUP:-2}
WORKLOADS=${WORKLOADS:-proxy proxy-pool verify echo keys-verify keys-proxy keys-create rate rate-verify rate-accuracy}
KEYS=${KEYS:-100000}
CREATES=${CREATES:-2000}
CREATE_CLIENTS=${CREATE_CLIENTS:-16}
PROFILE=${PROFILE:-0}
PROFILE_DURATION=${PROFILE_DURATION:-5}
KEEP_TMP=${KEEP_TMP:-0}
ACCURACY_CONNS=${ACCURACY_CONNS:-16}
NGINX_BURST=${NGINX_BURST:-19}
JWT_TOKENS=${JWT_TOKENS:-10000}
JWT_PYTHON=${JWT_PYTHON:-/usr/bin/python3}
PEERS=${PEERS:-0}
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE_HOLD=${IDLE_HOLD:-5}
KEYGATED2=${KEYGATED2:-}
SCRAPES=${SCRAPES:-300}
SCRAPE_ROUTES=${SCRAPE_ROUTES:-100}
SCRAPE_WORKERS=${SCRAPE_WORKERS:-4}
SCRAPE_CONNS=${SCRAPE_CONNS:-16}
HOT_KEYS=${HOT_KEYS:-10}
ROUND_WARMUP=${ROUND_WARMUP:-1}

top=$(cd "$(dirname "$0")/../.." && pwd)
here=$(cd "$(dirname "$0")" && pwd)

say() { printf '%s\n' "$*"; }
warn() { printf 'bench: %s\n' "$*" >&2; }
die() { warn "$*"; exit 1; }

val=
for v in ROUNDS DURATION CONNS THREADS WORKERS UPSTREAM_WORKERS POOL WARMUP \
    PROFILE_DURATION KEYS CREATES ACCURACY_CONNS NGINX_BURST JWT_TOKENS \
    IDLE_CONNS IDLE_HOLD SCRAPES SCRAPE_ROUTES SCRAPE_WORKERS SCRAPE_CONNS \
    HOT_KEYS ROUND_WARMUP; do
	eval "val=\$$v"
	case $val in
	'' | *[!0-9]*) die "$v must be a whole number, not \"$val\"" ;;
	esac
done
[ "$ROUNDS" -ge 1 ] && [ "$DURATION" -ge 1 ] && [ "$CONNS" -ge 1 ] &&
    [ "$THREADS" -ge 1 ] && [ "$WORKERS" -ge 1 ] &&
    [ "$UPSTREAM_WORKERS" -ge 1 ] && [ "$POOL" -ge 1 ] && [ "$KEYS" -ge 1 ] &&
    [ "$CREATES" -ge 1 ] && [ "$ACCURACY_CONNS" -ge 1 ] &&
    [ "$JWT_TOKENS" -ge 1 ] && [ "$IDLE_CONNS" -ge 1 ] &&
    [ "$IDLE_HOLD" -ge 1 ] && [ "$SCRAPES" -ge 1 ] &&
    [ "$SCRAPE_ROUTES" -ge 1 ] && [ "$SCRAPE_WORKERS" -ge 1 ] &&
    [ "$SCRAPE_CONNS" -ge 1 ] && [ "$HOT_KEYS" -ge 1 ] ||
    die "ROUNDS, DURATION, CONNS, THREADS, WORKERS, UPSTREAM_WORKERS, POOL, KEYS, CREATES, ACCURACY_CONNS, JWT_TOKENS, IDLE_CONNS, IDLE_HOLD, HOT_KEYS and the SCRAPE* variables must be at least 1"
W_KEYS=0
W_TLS=0
W_CLIENT=wrk
W_IDLE=0
W_JWT=
W_REFRESH=0
W_CREATE=0
W_ACCURACY=0
W_MAX_KEYS=0
W_SCRAPE=0
W_REDIS=0
W_CLIMIT=0
W_SERVERS=1
port_upstream=
port_upstream2=

# The rate workloads' limits: rate, per window (1s 10s 60s), so high that
# nothing is refused; rate-accuracy, 20 requests per second.
RATE_HIGH=1000000
RATE_LOW=20
CLUSTER_LIMITS=${CLUSTER_LIMITS:-$RATE_HIGH/1s $RATE_HIGH/10s $RATE_HIGH/60s}

# The JWT workloads: the issuer and audience of every token (tokens.py),
# and jwks-refresh's providers, p1 ... pREFRESH_PROVIDERS (keygated takes
# 16 providers at most).
JWT_ISSUER=https://bench.example/
JWT_AUDIENCE=bench
REFRESH_PROVIDERS=15

# proxy-pool: the path of each upstream server's stub_status (the
# requests it has served), and the requests check_pool sends through each
# gateway, one after the other over one connection.  upstream_stub: 1 if
# $NGINX has stub_status (set in the main part).
POOL_STATUS=/_upstream_status
POOL_CHECK=10
upstream_stub=0

# metrics-scrape: api-key routes /k1 ... /kSCRAPE_KEYROUTES besides the
# $SCRAPE_ROUTES anonymous ones (their refusals give the 401s).
SCRAPE_KEYROUTES=4

# ---------------------------------------------------------------- workloads

# workload_info NAME: set
#   W_DESC      one line of description;
#   W_SYSTEMS   the systems (the first is the one the ratios compare with
#               each of the others);
#   W_PATH      the path wrk requests (GET);
#   W_HEADERS   extra request headers, one per line (wrk -H, curl -H);
#   W_STATUS    the status a good response has;
#   W_UPSTREAM  1 if the workload needs the upstream server;
#   W_SERVERS   the upstream servers the gateways balance over: 1, or 2
#               for proxy-pool (a second upstream nginx, upstream2, on
#               $port_upstream2);
#   W_KEYS      1 if the systems hold the $KEYS API keys and every request
#               carries one (wrk -s keys.lua);
#   W_CREATE    1 for keys-create: no wrk rounds, the admin API client;
#   W_ACCURACY  1 for rate-accuracy: no rounds, one run per system on one
#               key, the upstream is the recording one (record.py);
#   W_MAX_KEYS  keygated's max_keys: $KEYS (a full store), and room for the
#               creates in keys-create;
#   W_JWT       for the JWT workloads, the file of tokens.py that wrk sends
#               ("Bearer TOKEN" lines, in Authorization: keys.lua);
#   W_ORDER     keys.lua's KEYS_ORDER: random (default), cycle or clock;
#   W_REFRESH   1 for jwks-refresh: the JWKS server (jwks_server.py), the
#               systems restarted before each round, the re-fetches;
#   W_TLS       1 if the systems listen with TLS (the run's certificate);
#   W_CLIENT    the load client: wrk, or tlsload (tlsload.c) in mode full
#               or resume;
#   W_IDLE      1 for tls-idle-memory: no rounds; tlsload holds
#               $IDLE_CONNS connections open while the memory is read;
#   W_SCRAPE    1 for metrics-scrape: no wrk rounds; scrape.py's traffic,
#               then rounds of timed GET /metrics (run_scrape).
#   W_REDIS     1 if the workload needs a redis-server of its own (start_redis);
#   W_CLIMIT    1 for cluster-limits: each system is two keygated nodes
#               (climit_nodes), loaded by two wrk at once (run_climit).
# print_ratios WHAT NAME: "ratio a/b: WHAT Nx, p99 Nx" for the first system
# of W_SYSTEMS against each other one, from the files $wdir/NAME.SYSTEM.median
# ("figure p99" each).
print_ratios() {
	_what=$1
	_name=$2
	set -- $W_SYSTEMS
	_a=$1
	shift
	for _b in "$@"; do
		awk -v a="$_a" -v b="$_b" -v what="$_what" '
		    NR == FNR { af = $1; ap = $2; next }
		    { printf "ratio %s/%s: %s %.2fx, p99 %.2fx\n", a, b, what,
			$1 ? af / $1 : 0, $2 ? ap / $2 : 0 }' \
		    "$wdir/$_name.$_a.median" "$wdir/$_name.$_b.median"
	done
}

# The verify workloads' request headers: an nginx auth_request
# sub-request's, for GET /bench.
VERIFY_HEADERS="X-Original-Method: GET
X-Original-URI: /bench"

workload_info() {
	W_TLS=0
	W_CLIENT=wrk
	W_IDLE=0
	W_HEADERS=
	W_JWT=
	W_ORDER=random
	W_REFRESH=0
	W_UPSTREAM=0
	W_STATUS=200
	W_KEYS=0
	W_CREATE=0
	W_ACCURACY=0
	W_MAX_KEYS=$KEYS
	W_SCRAPE=0
	W_REDIS=0
	W_CLIMIT=0
	W_SERVERS=1
	case $1 in
	proxy)
		W_DESC="gateway -> keep-alive upstream (nginx return 200)"
		W_SYSTEMS="keygated ${KEYGATED2:+keygated2 }nginx haproxy"
		W_PATH=/bench
		W_UPSTREAM=1
		;;
	proxy-pool)
		# No keygated2: a binary from before several servers per
		# upstream would reject the config and end the workload.
		W_DESC="gateway -> 2 keep-alive upstream servers, round robin (nginx return 200 each)"
		W_SYSTEMS="keygated nginx haproxy"
		W_PATH=/bench
		W_UPSTREAM=1
		W_SERVERS=2
		;;
	https-proxy)
		W_DESC="keep-alive HTTPS (ECDSA P-256) -> gateway -> keep-alive plain upstream"
		W_SYSTEMS="keygated nginx haproxy"
		W_PATH=/bench
		W_UPSTREAM=1
		W_TLS=1
		;;
	https-handshake)
		W_DESC="full TLS handshakes (ECDSA P-256, no resumption), one request per connection (tlsload -m full)"
		W_SYSTEMS="keygated nginx haproxy"
		W_PATH=/bench
		W_UPSTREAM=1
		W_TLS=1
		W_CLIENT=full
		;;
	https-resume)
		W_DESC="resumed TLS handshakes (session tickets), one request per connection (tlsload -m resume)"
		W_SYSTEMS="keygated nginx haproxy"
		W_PATH=/bench
		W_UPSTREAM=1
		W_TLS=1
		W_CLIENT=resume
		;;
	tls-idle-memory)
		W_DESC="memory per idle TLS connection: $IDLE_CONNS connections, handshake done, nothing sent (tlsload -m hold)"
		W_SYSTEMS="keygated nginx haproxy"
		W_PATH=/bench
		W_UPSTREAM=1
		W_TLS=1
		W_IDLE=1
		;;
	verify)
		W_DESC="auth_request answer: keygated verify_path vs return 204"
		W_SYSTEMS="keygated ${KEYGATED2:+keygated2 }nginx haproxy"
		W_PATH=/_keygate/verify
		W_HEADERS=$VERIFY_HEADERS
		W_STATUS=204
		;;
	echo)
		W_DESC="keygated echo upstream vs nginx return 200"
		W_SYSTEMS="keygated nginx"
		W_PATH=/bench
		;;
	keys-verify)
		W_DESC="verify with $KEYS API keys, a random one per request: keygated api-key vs nginx map vs HAProxy map"
		W_SYSTEMS="keygated nginx haproxy"
		W_PATH=/_keygate/verify
		W_HEADERS=$VERIFY_HEADERS
		W_STATUS=204
		W_KEYS=1
		;;
	keys-proxy)
		W_DESC="proxy with $KEYS API keys, a random one per request, owner sent upstream"
		W_SYSTEMS="keygated ${KEYGATED2:+keygated2 }nginx haproxy"
		W_PATH=/bench
		W_UPSTREAM=1
		W_KEYS=1
		;;
	keys-proxy-cluster)
		W_DESC="keys-proxy with the key store shared through Redis (cluster_redis to a redis-server of the run): keygated in a cluster (cluster_limits ${KPC_LIMITS:-off}) vs keygated_local alone, same keys (target >= 0.98x)"
		W_SYSTEMS="keygated keygated_local"
		W_PATH=/bench
		W_UPSTREAM=1
		W_KEYS=1
		W_REDIS=1
		;;
	cluster-limits)
		W_DESC="2 nodes, keyed proxy on $HOT_KEYS hot key(s), rate_limit $CLUSTER_LIMITS: keygated limits leased from Redis vs keygated_local limits per node vs keygated_sync a Redis call per request (targets >= 0.95x, >= 2x)"
		W_SYSTEMS="keygated keygated_local keygated_sync"
		W_PATH=/bench
		W_UPSTREAM=1
		W_KEYS=1
		W_REDIS=1
		W_CLIMIT=1
		;;
	keys-create)
		W_DESC="admin API: $CREATES x POST /v1/keys, one keep-alive connection, $KEYS keys loaded"
		W_SYSTEMS="keygated"
		W_PATH=/_keygate/verify
		W_HEADERS=$VERIFY_HEADERS
		W_STATUS=204
		W_KEYS=1
		W_CREATE=1
		W_MAX_KEYS=$((KEYS + CREATES))
		;;
	rate)
		W_DESC="keys-proxy with limits of $RATE_HIGH per 1s/10s/60s per key: keygated vs keygated rate_limit off vs nginx limit_req vs HAProxy stick tables"
		W_SYSTEMS="keygated keygated_off nginx haproxy"
		W_PATH=/bench
		W_UPSTREAM=1
		W_KEYS=1
		;;
	rate-verify)
		W_DESC="keys-verify with limits of $RATE_HIGH per 1s/10s/60s per key: keygated vs keygated rate_limit off vs nginx map + limit_req vs HAProxy map + stick tables"
		W_SYSTEMS="keygated keygated_off nginx haproxy"
		W_PATH=/_keygate/verify
		W_HEADERS=$VERIFY_HEADERS
		W_STATUS=204
		W_KEYS=1
		;;
	rate-accuracy)
		W_DESC="one key limited to $RATE_LOW/1s, wrk -c$ACCURACY_CONNS, admits recorded by the upstream"
		W_SYSTEMS="keygated nginx haproxy"
		W_PATH=/bench
		W_UPSTREAM=1
		W_KEYS=1
		W_ACCURACY=1
		;;
	jwt-cached)
		W_DESC="one RS256 token on every request: keygated auth=jwt (verified-token cache) vs HAProxy jwt_verify (no cache)"
		W_SYSTEMS="keygated haproxy"
		W_PATH=/bench
		W_UPSTREAM=1
		W_JWT=rs256.one
		;;
	jwt-fresh)
		W_DESC="$JWT_TOKENS RS256 tokens taken in turn: keygated auth=jwt vs HAProxy jwt_verify"
		W_SYSTEMS="keygated haproxy"
		W_PATH=/bench
		W_UPSTREAM=1
		W_JWT=rs256.pool
		W_ORDER=cycle
		;;
	jwt-fresh-es256)
		W_DESC="$JWT_TOKENS ES256 tokens taken in turn: keygated auth=jwt vs HAProxy jwt_verify"
		W_SYSTEMS="keygated haproxy"
		W_PATH=/bench
		W_UPSTREAM=1
		W_JWT=es256.pool
		W_ORDER=cycle
		;;
	jwt-vs-key)
		W_DESC="keygated auth=jwt (one RS256 token) vs keygated auth=api-key (a random one of $KEYS keys), rate_limit off"
		W_SYSTEMS="keygated keygated_key"
		W_PATH=/bench
		W_UPSTREAM=1
		W_KEYS=1
		W_JWT=rs256.one
		;;
	jwks-refresh)
		W_DESC="jwt-cached over $REFRESH_PROVIDERS providers: keygated with one forced JWKS re-fetch a second vs keygated_calm without"
		W_SYSTEMS="keygated keygated_calm"
		W_PATH=/bench
		W_UPSTREAM=1
		W_JWT=refresh.pool
		W_ORDER=clock
		W_REFRESH=1
		;;
	metrics-scrape)
		W_DESC="$SCRAPES x GET /metrics over one keep-alive connection, $SCRAPE_ROUTES routes/backends with counts, $SCRAPE_WORKERS workers: keygated metrics_listen vs HAProxy prometheus-exporter"
		W_SYSTEMS="keygated haproxy"
		W_PATH=/r1
		W_UPSTREAM=1
		W_SCRAPE=1
		;;
	*)
		die "unknown workload \"$1\" (known: proxy proxy-pool verify echo keys-verify keys-proxy keys-proxy-cluster cluster-limits keys-create rate rate-verify rate-accuracy jwt-cached jwt-fresh jwt-fresh-es256 jwt-vs-key jwks-refresh https-proxy https-handshake https-resume tls-idle-memory metrics-scrape)"
		;;
	esac
}

# workload_url NAME SYSTEM: the URL wrk loads.
workload_url() {
	eval "say \"$(scheme)://127.0.0.1:\${port_$2}$W_PATH\""
}

# scheme: the scheme of the current workload's systems, http or https.
scheme() {
	if [ "$W_TLS" = 1 ]; then say https; else say http; fi
}

# workload_expect NAME SYSTEM: a string a good response (headers and body)
# contains, checked once before the rounds.
workload_expect() {
	case $1:$2 in
	echo:keygated) say '"path":"/bench"' ;;
	echo:* | proxy:* | proxy-pool:* | keys-proxy:* | keys-proxy-cluster:* | \
	    cluster-limits:* | \
	    rate:* | rate-accuracy:* | jwt*:* | \
	    https-*:* | tls-idle-memory:* | metrics-scrape:*)
		say '{"ok":true}' ;;
	*) say "HTTP/1.1 $W_STATUS" ;;
	esac
}

# with_headers URL CMD ARGS...: run CMD ARGS... -H LINE... URL, with one
# -H per line of W_HEADERS (wrk and curl both take -H).
with_headers() {
	url=$1
	shift
	set -f
	old_ifs=$IFS
	IFS='
'
	for h in $W_HEADERS; do set -- "$@" -H "$h"; done
	IFS=$old_ifs
	set +f
	"$@" "$url"
}

# ------------------------------------------------------------------ helpers

# need COMMAND PACKAGE: install PACKAGE with apt-get if COMMAND is missing.
need() {
	command -v "$1" >/dev/null 2>&1 && return 0
	[ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1 ||
	    die "$1 is missing: apt-get install $2 (as root), then run again"
	warn "$1 is missing: installing $2"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" \
	    >/dev/null 2>&1 || {
		apt-get update -qq >/dev/null 2>&1 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" \
		    >/dev/null
	} || die "cannot install $2"
	command -v "$1" >/dev/null 2>&1 || die "$2 installed no $1"
}

# free_port: set PORT to a TCP port nobody on this machine uses (below the
# ephemeral range, so wrk's own connections never take it) and that this
# script has not handed out before.  Not in a subshell: it must remember.
free_port() {
	lo=20000
	hi=$(awk '{print $1 - 1}' /proc/sys/net/ipv4/ip_local_port_range \
	    2>/dev/null || echo 32767)
	[ "$hi" -gt $((lo + 1000)) ] || { lo=40000; hi=60999; }
	n=0
	while [ $n -lt 200 ]; do
		n=$((n + 1))
		fp_r=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
		fp_p=$((lo + fp_r % (hi - lo + 1)))
		case " $ports_taken " in *" $fp_p "*) continue ;; esac
		hex=$(printf '%04X' "$fp_p")
		if ! awk -v h=":$hex" 'NR > 1 && substr($2, length($2) - 4) == h \
		    { f = 1 } END { exit !f }' /proc/net/tcp /proc/net/tcp6 \
		    2>/dev/null; then
			ports_taken="$ports_taken $fp_p"
			PORT=$fp_p
			return 0
		fi
	done
	die "no free TCP port found"
}
ports_taken=

# alive PID
alive() { kill -0 "$1" 2>/dev/null; }

# children PID: pids of PID's child processes.
children() {
	if command -v pgrep >/dev/null 2>&1; then
		pgrep -P "$1" || true
	else
		for f in /proc/[0-9]*/status; do
			awk -v p="$1" '$1 == "PPid:" && $2 == p { print d }' \
			    d="${f%/status}" "$f" 2>/dev/null
		done | sed 's|^/proc/||'
	fi
}

# tree PID: PID and its children (masters fork workers, nothing deeper).
tree() { say "$1"; children "$1"; }

# peak_rss PID: VmHWM in KiB summed over PID and its children.
peak_rss() {
	total=0
	for p in $(tree "$1"); do
		k=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$p/status" \
		    2>/dev/null || true)
		total=$((total + ${k:-0}))
	done
	say "$total"
}

# wait_ready PID URL: wait until URL answers while PID lives (10 s at most;
# 60 s when the workload loads the keys).  An https URL's certificate is not
# checked (the JWKS server's).
wait_ready() {
	n=0
	lim=100
	[ "$W_KEYS" = 1 ] && lim=600
	while [ $n -lt $lim ]; do
		alive "$1" || return 1
		curl -s -k -o /dev/null --max-time 1 "$2" && return 0
		sleep 0.1
		n=$((n + 1))
	done
	return 1
}

# mem_now PID: "RSS PSS" in KiB, each summed over PID and its children
# (VmRSS from status, Pss from smaps_rollup: PSS divides each shared page
# among the processes that map it, so the sum counts it once).
mem_now() {
	m_pids=$(tree "$1")
	set --
	for p in $m_pids; do
		for f in "/proc/$p/status" "/proc/$p/smaps_rollup"; do
			[ -r "$f" ] && set -- "$@" "$f"
		done
	done
	[ $# -gt 0 ] || { say "0 0"; return 0; }
	awk '$1 == "VmRSS:" { r += $2 } $1 == "Pss:" { p += $2 }
	    END { print r + 0, p + 0 }' "$@" 2>/dev/null || say "0 0"
}

# now_ms: milliseconds since the epoch (whole seconds if date lacks %N).
now_ms() {
	t=$(date +%s%N 2>/dev/null || true)
	case $t in
	'' | *[!0-9]*) say "$(($(date +%s) * 1000))" ;;
	*) say "$((t / 1000000))" ;;
	esac
}

# stop_pid PID: graceful stop (SIGTERM), then SIGKILL to what is left of
# the process and its children after 5 s.
stop_pid() {
	alive "$1" || return 0
	kids=$(children "$1")
	kill -TERM "$1" 2>/dev/null || true
	n=0
	while alive "$1" && [ $n -lt 50 ]; do
		sleep 0.1
		n=$((n + 1))
	done
	for p in "$1" $kids; do
		alive "$p" && kill -KILL "$p" 2>/dev/null
	done
	wait "$1" 2>/dev/null || true
}


# ------------------------------------------------------------------ systems
#
# Every system of a workload runs from $wdir/SYSTEM ($wdir is the
# workload's directory under $tmp) and listens on 127.0.0.1:$port_SYSTEM.

# keygated_conf WORKLOAD [SYSTEM]: keygated's config for the workload, in
# $d, listening on $port_SYSTEM.  SYSTEM is keygated (the default),
# keygated_off, the same with "rate_limit off" (rate), keygated_key, the
# route with auth=api-key (jwt-vs-key), keygated_calm, the same as
# keygated (jwks-refresh), or keygated2, the same as keygated run from
# $KEYGATED2 (proxy, verify, keys-proxy).  No access_log directive (the
# default is off).  The TLS workloads listen with "tls" on the run's
# certificate, with session tickets on (nginx's and HAProxy's default);
# tls-idle-memory also lets a worker hold all the idle connections and
# keeps them longer than the run takes (header_timeout).  metrics-scrape
# runs $SCRAPE_WORKERS workers and metrics_listen on
# $keygated_metrics_port.
keygated_conf() {
	kg_sys=${2:-keygated}
	eval "kg_port=\$port_$kg_sys"
	kg_tls=
	[ "$W_TLS" = 1 ] && kg_tls=" tls"
	kg_workers=$WORKERS
	[ "$W_SCRAPE" = 1 ] && kg_workers=$SCRAPE_WORKERS
	cat <<EOF
# generated by contrib/bench/run.sh, workload $1
listen			127.0.0.1:$kg_port$kg_tls
workers			$kg_workers
state_dir		$d/state
pidfile			$d/keygated.pid
log_level		warn
keepalive_requests	100000
EOF
	if [ "$W_TLS" = 1 ]; then
		say "tls_certificate		$tlsdir/cert.pem $tlsdir/key.pem"
		say "tls_session_tickets	on"
	fi
	if [ "$W_IDLE" = 1 ]; then
		say "max_connections		$((IDLE_CONNS + 1024))"
		say "header_timeout		600s"
	fi
	case $1 in
	proxy | https-* | tls-idle-memory)
		say "upstream		up http://127.0.0.1:$port_upstream max_idle=$POOL"
		say "route GET ^/bench\$	auth=anonymous upstream=up"
		;;
	proxy-pool)
		# balance=round_robin is the default: not written, as nginx's
		# and HAProxy's.
		say "upstream		up http://127.0.0.1:$port_upstream http://127.0.0.1:$port_upstream2 max_idle=$POOL"
		say "route GET ^/bench\$	auth=anonymous upstream=up"
		;;
	verify)
		say "upstream		echo echo"
		say "verify_path		/_keygate/verify"
		say "route GET ^/bench\$	auth=anonymous"
		;;
	echo)
		say "upstream		echo echo"
		say "route GET ^/bench\$	auth=anonymous"
		;;
	keys-verify | rate-verify)
		say "max_keys		${KG_MAX_KEYS:-$W_MAX_KEYS}"
		say "upstream		echo echo"
		say "verify_path		/_keygate/verify"
		say "route GET ^/bench\$	auth=api-key"
		;;
	keys-proxy | keys-proxy-cluster | rate | rate-accuracy)
		say "max_keys		${KG_MAX_KEYS:-$W_MAX_KEYS}"
		say "upstream		up http://127.0.0.1:$port_upstream max_idle=$POOL"
		say "route GET ^/bench\$	auth=api-key upstream=up"
		;;
	cluster-limits)
		# keys-proxy's, with the limits of the workload and the admin
		# API (/v1/cluster, /metrics) for the counters, in every node.
		say "max_keys		${KG_MAX_KEYS:-$W_MAX_KEYS}"
		say "upstream		up http://127.0.0.1:$port_upstream max_idle=$POOL"
		say "route GET ^/bench\$	auth=api-key upstream=up"
		say "rate_limit		$CLUSTER_LIMITS"
		say "admin_listen		127.0.0.1:$keygated_admin_port"
		say "admin_token_file	$keysdir/admin.token"
		;;
	jwt-cached | jwt-fresh | jwt-fresh-es256)
		say "upstream		up http://127.0.0.1:$port_upstream max_idle=$POOL"
		say "jwt_provider		bench issuer=$JWT_ISSUER audience=$JWT_AUDIENCE jwks=$jwtdir/jwks.json rate=off"
		say "route GET ^/bench\$	auth=jwt upstream=up"
		;;
	jwt-vs-key)
		# One config for both but the route's scheme: the same
		# provider and keys loaded, no rate limit for either.
		say "max_keys		${KG_MAX_KEYS:-$W_MAX_KEYS}"
		say "rate_limit		off"
		say "upstream		up http://127.0.0.1:$port_upstream max_idle=$POOL"
		say "jwt_provider		bench issuer=$JWT_ISSUER audience=$JWT_AUDIENCE jwks=$jwtdir/jwks.json"
		if [ "$kg_sys" = keygated_key ]; then
			say "route GET ^/bench\$	auth=api-key upstream=up"
		else
			say "route GET ^/bench\$	auth=jwt upstream=up"
		fi
		;;
	jwks-refresh)
		say "upstream		up http://127.0.0.1:$port_upstream max_idle=$POOL"
		i=0
		while [ $i -lt $REFRESH_PROVIDERS ]; do
			i=$((i + 1))
			say "jwt_provider		p$i issuer=${JWT_ISSUER}p$i/ audience=$JWT_AUDIENCE jwks=https://127.0.0.1:${port_jwks:-1}/p$i.json ca=$jwtdir/refresh/ca.pem rate=off"
		done
		say "route GET ^/bench\$	auth=jwt upstream=up"
		;;
	keys-create)
		say "max_keys		${KG_MAX_KEYS:-$W_MAX_KEYS}"
		say "upstream		echo echo"
		say "verify_path		/_keygate/verify"
		say "route GET ^/bench\$	auth=api-key"
		# The admin API is what this workload measures: not optional.
		say "admin_listen		127.0.0.1:$keygated_admin_port"
		say "admin_token_file	$keysdir/admin.token"
		;;
	metrics-scrape)
		say "upstream		up http://127.0.0.1:$port_upstream max_idle=$POOL"
		say "metrics_listen		127.0.0.1:$keygated_metrics_port"
		i=0
		while [ $i -lt "$SCRAPE_ROUTES" ]; do
			i=$((i + 1))
			say "route GET ^/r$i\$	auth=anonymous name=r$i upstream=up"
		done
		i=0
		while [ $i -lt "$SCRAPE_KEYROUTES" ]; do
			i=$((i + 1))
			say "route GET ^/k$i\$	auth=api-key name=k$i upstream=up"
		done
		;;
	esac
	# The other workloads run with the default limits (20/1s 200/10s
	# 1000/60s); with $KEYS keys picked at random, no key comes near them.
	case $1:$kg_sys in
	rate:keygated | rate-verify:keygated)
		say "rate_limit		$RATE_HIGH/1s $RATE_HIGH/10s $RATE_HIGH/60s"
		;;
	rate:keygated_off | rate-verify:keygated_off) say "rate_limit		off" ;;
	keys-proxy-cluster:keygated)
		# Each start (the empty one of the memory figures too) in a
		# namespace of its own: a node with keys seeds an empty one.
		kg_cluster=$((${kg_cluster:-0} + 1))
		say "cluster_redis		redis://127.0.0.1:${port_redis:-1}"
		say "cluster_name		bench$kg_cluster"
		# The key store's sharing, and with KPC_LIMITS=on exact
		# limits too: 100,000 keys picked at random are each new to a
		# node every few seconds, decided by the node's standing
		# allowance (KPC_STANDING, cluster_standing_share) without a
		# Redis call while it lasts.
		say "cluster_limits		${KPC_LIMITS:-off}"
		[ -z "${KPC_STANDING:-}" ] ||
			say "cluster_standing_share	$KPC_STANDING"
		;;
	cluster-limits:keygated_local*) ;;	# the same nodes, no cluster
	cluster-limits:*)
		# keygated (and keygated_a/_b) in one cluster, keygated_sync_a/_b
		# in another: the two never share a quota.
		say "cluster_redis		redis://127.0.0.1:${port_redis:-1}"
		say "cluster_name		limits_${kg_sys%_[ab]}"
		;;
	rate-accuracy:*)
		say "rate_limit		$RATE_LOW/1s"
		# Its own admit times (rate_time), besides the upstream's.
		say "access_log		$d/access.log"
		;;
	esac
	kg_ok=$keygated_opt_ok
	[ "$kg_sys" = keygated2 ] && kg_ok=$keygated2_opt_ok
	n=0
	keygated_optional | while IFS= read -r line; do
		n=$((n + 1))
		[ "$1" = keys-create ] || [ "$1" = cluster-limits ] &&
		    [ $n -eq 1 ] && continue
		case " $kg_ok " in *" $n "*) say "$line" ;; esac
	done
}

# Directives a later keygated may know, kept only if "keygated -t" accepts
# them (see keygated_probe): the admin listener on a free port (not the
# default 8081), and no per-IP limit on anonymous routes (wrk comes from
# one address).
keygated_optional() {
	say "admin_listen 127.0.0.1:$keygated_admin_port"
	say "anonymous_rate_limit off"
}

# keygated_probe BINARY: print the numbers of the lines of
# keygated_optional that "BINARY -t" accepts after the echo config.  Run
# in a subshell ($(...)): the base config is made with no optional line
# accepted yet, or, probing $KEYGATED2 after $KEYGATED, each line would
# come twice and be refused as a duplicate directive, and keygated2 would
# run without the lines keygated has.
keygated_probe() {
	d=$tmp/probe
	mkdir -p "$d/state"
	port_keygated=1
	keygated_admin_port=2
	keygated_opt_ok=
	workload_info echo
	base=$(keygated_conf echo)
	n=0
	ok=
	keygated_optional >"$d/optional"
	while IFS= read -r line; do
		n=$((n + 1))
		{ say "$base"; say "$line"; } >"$d/try.conf"
		"$1" -t -c "$d/try.conf" >/dev/null 2>&1 && ok="$ok $n"
	done <"$d/optional"
	rm -rf "$d"
	say "$ok"
}
keygated_opt_ok=
keygated2_opt_ok=
keygated_metrics_port=
port_haproxy_metrics=

# keygated_tls_probe: whether $KEYGATED takes a TLS listener at all
# ("keygated -t" on the echo config with "listen ... tls" and the run's
# certificate): 0 if it does; its complaint in $tmp/tls/probe.log.
keygated_tls_probe() {
	d=$tmp/tls/probe
	mkdir -p "$d/state"
	port_keygated=1
	keygated_admin_port=2
	workload_info echo
	{
		keygated_conf echo | sed 's/^listen\(.*\)$/listen\1 tls/'
		say "tls_certificate		$tlsdir/cert.pem $tlsdir/key.pem"
	} >"$d/try.conf"
	"$KEYGATED" -t -c "$d/try.conf" >"$tmp/tls/probe.log" 2>&1
}

# check_keygated WORKLOAD: "keygated -t" on the workload's config, its
# output in $wdir/keygated/check.log.
check_keygated() {
	d=$wdir/keygated
	mkdir -p "$d/state"
	port_keygated=${port_keygated:-1}
	port_upstream=${port_upstream:-1}
	port_upstream2=${port_upstream2:-4}	# not port_upstream's: two
						# URLs of one address and port
						# are an error
	keygated_admin_port=${keygated_admin_port:-2}
	keygated_metrics_port=${keygated_metrics_port:-3}
	keygated_conf "$1" >"$d/keygated.conf"
	"$KEYGATED" -t -c "$d/keygated.conf" >"$d/check.log" 2>&1
}

# start_keygated WORKLOAD [SYSTEM]: keygated in the foreground (-f) as a
# background job, with its config, state and pidfile in $wdir/SYSTEM
# (keygated, or keygated_off: see keygated_conf); keygated2 runs
# $KEYGATED2.
start_keygated() {
	kg_sys=${2:-keygated}
	kg_bin=$KEYGATED
	[ "$kg_sys" = keygated2 ] && kg_bin=$KEYGATED2
	d=$wdir/$kg_sys
	mkdir -p "$d/state"
	free_port
	eval "port_$kg_sys=\$PORT"
	kg_port=$PORT
	free_port
	keygated_admin_port=$PORT
	if [ "$W_SCRAPE" = 1 ]; then
		free_port
		keygated_metrics_port=$PORT
	fi
	keygated_conf "$1" "$kg_sys" >"$d/keygated.conf"
	"$kg_bin" -t -c "$d/keygated.conf" >"$d/check.log" 2>&1 || {
		cat "$d/check.log" >&2
		return 2
	}
	# The key store: the prebuilt snapshot, unless the state is already
	# there (keys-create restarts keygated on its own state).
	if [ "$W_KEYS" = 1 ] && [ -s "$keys_src/keys.snapshot" ] &&
	    [ ! -e "$d/state/keys.snapshot" ] &&
	    [ ! -e "$d/state/keys.journal" ]; then
		cp "$keys_src/keys.snapshot" "$d/state/keys.snapshot"
	fi
	eval "admin_$kg_sys=\$keygated_admin_port"
	launch_ms=$(now_ms)
	case $1:$kg_sys in
	cluster-limits:keygated_sync*)
		# The anchor's stand-in: one unit per lease (cllimit.c).
		KEYGATE_BENCH_LEASE_SYNC=1 "$kg_bin" -f -c "$d/keygated.conf" \
		    >"$d/stderr.log" 2>&1 &
		;;
	*)	"$kg_bin" -f -c "$d/keygated.conf" >"$d/stderr.log" 2>&1 & ;;
	esac
	SYSTEM_PID=$!
	wait_ready "$SYSTEM_PID" "$(scheme)://127.0.0.1:$kg_port/" || {
		stop_pid "$SYSTEM_PID"
		tail -n 5 "$d/stderr.log" >&2
		return 1
	}
}

# start_keygated_off WORKLOAD: keygated with "rate_limit off".
start_keygated_off() { start_keygated "$1" keygated_off; }

# start_keygated_key WORKLOAD: jwt-vs-key's keygated with auth=api-key.
start_keygated_key() { start_keygated "$1" keygated_key; }

# start_keygated_local WORKLOAD: keys-proxy-cluster's keygated on its own.
start_keygated_local() { start_keygated "$1" keygated_local; }

# start_redis WORKLOAD: the redis-server keys-proxy-cluster's keygated
# shares its keys through (no persistence), on $port_redis.
start_redis() {
	command -v redis-server >/dev/null 2>&1 ||
	    { warn "redis-server is not installed"; return 2; }
	d=$wdir/redis
	mkdir -p "$d"
	free_port
	port_redis=$PORT
	launch_ms=$(now_ms)
	redis-server --port "$PORT" --bind 127.0.0.1 --save '' \
	    --appendonly no --dir "$d" --logfile "$d/redis.log" &
	SYSTEM_PID=$!
	n=0
	until redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG; do
		n=$((n + 1))
		[ $n -gt 100 ] && { stop_pid "$SYSTEM_PID"; return 1; }
		sleep 0.05
	done
}

# start_keygated_calm WORKLOAD: jwks-refresh's keygated without re-fetches.
start_keygated_calm() { start_keygated "$1" keygated_calm; }

# start_keygated2 WORKLOAD: keygated's config, run from $KEYGATED2.
start_keygated2() { start_keygated "$1" keygated2; }

# nginx_head DIR WORKERS: the start of a private nginx's config, up to the
# open "http {" block.
nginx_head() {
	cat <<EOF
# generated by contrib/bench/run.sh, workload $w
worker_processes $2;
pid $1/nginx.pid;
error_log $1/logs/error.log error;
EOF
	# tls-idle-memory: room for every idle connection in one worker.
	if [ "$W_IDLE" = 1 ]; then
		say "worker_rlimit_nofile $nofile;"
		say "events { worker_connections $((IDLE_CONNS + 1024)); }"
	else
		say "events { worker_connections 4096; }"
	fi
	cat <<EOF
http {
	access_log off;
	keepalive_requests 100000;
EOF
	for m in $nginx_temps; do
		say "	${m}_temp_path $1/tmp/$m;"
	done
}

# nginx_run DIR PORT [SCHEME]: a private nginx (-p prefix, -c config, -e
# error log, daemon off) that never touches the system nginx's files.
nginx_run() {
	launch_ms=$(now_ms)
	"$NGINX" -p "$1/" -c "$1/nginx.conf" -e "$1/logs/error.log" \
	    -g 'daemon off;' >"$1/stderr.log" 2>&1 &
	SYSTEM_PID=$!
	wait_ready "$SYSTEM_PID" "${3:-http}://127.0.0.1:$2/" || {
		stop_pid "$SYSTEM_PID"
		tail -n 5 "$1/stderr.log" "$1/logs/error.log" >&2
		return 1
	}
}

# start_nginx WORKLOAD: nginx as the gateway.
start_nginx() {
	d=$wdir/nginx
	mkdir -p "$d/logs" "$d/tmp"
	free_port
	port_nginx=$PORT
	{
		nginx_head "$d" "$WORKERS"
		case $1 in
		proxy | proxy-pool | keys-proxy | rate | rate-accuracy | \
		    https-* | tls-idle-memory)
			# proxy-pool: the second server; round robin is
			# nginx's default balance, the keepalive cache one
			# for both servers (per worker).
			say "	upstream up {"
			say "		server 127.0.0.1:$port_upstream;"
			[ "$W_SERVERS" = 2 ] &&
			    say "		server 127.0.0.1:$port_upstream2;"
			cat <<EOF
		keepalive $POOL;
		keepalive_requests 100000;
	}
EOF
			;;
		esac
		[ "$W_KEYS" = 1 ] && nginx_map
		nginx_limit "$1"
		say "	server {"
		if [ "$W_TLS" = 1 ]; then
			nginx_tls
		else
			say "		listen 127.0.0.1:$port_nginx;"
		fi
		case $1 in
		keys-proxy | rate | rate-accuracy)
			cat <<EOF
		location = /bench {
			if (\$kg_owner = "") {
				return 401;
			}
EOF
			[ -n "$nginx_burst" ] &&
			    say "			$(nginx_limit_req "$nginx_burst")"
			cat <<EOF
			proxy_pass http://up;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header X-Consumer-Id \$kg_owner;
			proxy_set_header X-API-KEY "";
		}
EOF
			;;
		keys-verify | rate-verify)
			cat <<EOF
		location = /_keygate/verify {
			if (\$kg_owner = "") {
				return 401;
			}
			add_header X-Consumer-Id \$kg_owner;
EOF
			if [ -n "$nginx_burst" ]; then
				# "return" ends the request in the rewrite
				# phase, before limit_req's: the 204 comes
				# from try_files, after it (a file missing
				# from a root nginx's user can search, so
				# nothing is logged; its look-up cached, no
				# syscall).
				cat <<EOF
			$(nginx_limit_req "$nginx_burst")
			root /nonexistent;
			open_file_cache max=16 inactive=3600s;
			open_file_cache_valid 3600s;
			open_file_cache_errors on;
			try_files /nothing-here =204;
EOF
			else
				say "			return 204;"
			fi
			say "		}"
			;;
		proxy | proxy-pool | https-* | tls-idle-memory)
			cat <<EOF
		location = /bench {
			proxy_pass http://up;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
		}
EOF
			;;
		verify)
			cat <<EOF
		location = /_keygate/verify {
			return 204;
		}
EOF
			;;
		echo)
			cat <<EOF
		location = /bench {
			default_type application/json;
			return 200 '{"ok":true}';
		}
EOF
			;;
		esac
		say "	}"
		say "}"
	} >"$d/nginx.conf"
	nginx_run "$d" "$port_nginx" "$(scheme)"
}

# nginx_tls: the TLS workloads' listener: the run's certificate, TLS 1.2
# and 1.3 (nginx 1.22's default lacks 1.3; keygated's and HAProxy's
# defaults are these two), session tickets on with the key nginx makes at
# start (its default, written out), no server-side session cache (its
# default too: resumption by ticket only, as keygated).  tls-idle-memory:
# the idle connections kept longer than the run takes.
nginx_tls() {
	cat <<EOF
		listen 127.0.0.1:$port_nginx ssl;
		ssl_certificate $tlsdir/cert.pem;
		ssl_certificate_key $tlsdir/key.pem;
		ssl_protocols TLSv1.2 TLSv1.3;
		ssl_session_tickets on;
EOF
	[ "$W_IDLE" = 1 ] && say "		client_header_timeout 600s;"
	return 0
}

# nginx_limit WORKLOAD: for rate, rate-verify and rate-accuracy, the
# limit_req zone keyed by the API key (and nginx_burst set for the
# location's limit_req; empty for the other workloads).  32 MB hold about 250,000 keys (nodes of
# about 128 bytes).  nginx's limiter is one leaky bucket per key, the rate
# per second.  It counts in milliseconds: without a burst, a second request
# in the same millisecond is refused even at 1000000r/s, so rate gets a
# burst as large as its rate.  Refusals: 429 (nginx's default is 503),
# logged at "warn", below the error log's level, so not written (keygated
# and HAProxy do not log them either).  The key check (if ... return 401)
# runs in the rewrite phase, before limit_req: unknown keys never reach
# the zone.
nginx_limit() {
	nginx_burst=
	case $1 in
	rate | rate-verify)
		nginx_rate=$RATE_HIGH
		nginx_burst=$RATE_HIGH
		;;
	rate-accuracy)
		nginx_rate=$RATE_LOW
		nginx_burst=$NGINX_BURST
		;;
	*) return 0 ;;
	esac
	cat <<EOF
	limit_req_zone \$http_x_api_key zone=k:32m rate=${nginx_rate}r/s;
	limit_req_status 429;
	limit_req_log_level warn;
EOF
}
nginx_burst=

# nginx_limit_req BURST: the limit_req directive with that burst; nginx
# takes no "burst=0": 0 is limit_req without burst (and without nodelay,
# which only applies to a burst).
nginx_limit_req() {
	if [ "$1" -gt 0 ]; then
		say "limit_req zone=k burst=$1 nodelay;"
	else
		say "limit_req zone=k;"
	fi
}

# nginx_map: the map from X-API-KEY to the key's owner ("" for no key or
# an unknown one), its entries included from $keys_src/nginx.map.  The
# hash must hold every key in buckets of at most map_hash_bucket_size
# bytes: 512 holds 10 entries of 48 bytes (a 37-character secret), and
# with at least twice as many buckets as keys (a power of two) the first
# sizes nginx tries (from map_hash_max_size - 1000 up) already fit.
nginx_map() {
	m=1024
	while [ $m -lt $((2 * KEYS)) ]; do m=$((m * 2)); done
	cat <<EOF
	map_hash_max_size $m;
	map_hash_bucket_size 512;
	map \$http_x_api_key \$kg_owner {
		default "";
		include $keys_src/nginx.map;
	}
EOF
}

# start_upstream WORKLOAD: the upstream every gateway of the proxy workload
# forwards to: nginx answering GET /bench with 200 '{"ok":true}' (in
# rate-accuracy, record.py: see start_recorder; in metrics-scrape, GET /rN
# too).
start_upstream() {
	[ "$W_ACCURACY" = 1 ] && { start_recorder; return; }
	upstream_nginx upstream
}

# start_upstream2 WORKLOAD: proxy-pool's second upstream server, the same
# nginx as the first (UPSTREAM_WORKERS workers), in $wdir/upstream2 on
# $port_upstream2.
start_upstream2() { upstream_nginx upstream2; }

# upstream_nginx NAME: start_upstream's nginx, in $wdir/NAME, listening on
# $port_NAME.  With two servers (proxy-pool) each also answers
# GET $POOL_STATUS with its stub_status (whose "requests" count
# check_pool and the rounds read: pool_counts), or, for an nginx built
# without stub_status, tags its answers to GET /bench with "X-Upstream:
# NAME".
upstream_nginx() {
	d=$wdir/$1
	mkdir -p "$d/logs" "$d/tmp"
	free_port
	eval "port_$1=\$PORT"
	u_port=$PORT
	{
		nginx_head "$d" "$UPSTREAM_WORKERS"
		if [ "$W_KEYS" = 1 ] || [ -n "$W_JWT" ]; then
			# The check request shows which owner (or sub) the
			# gateway sent and whether it forwarded the secret (or
			# the token: JWT workloads only, so that the keys-*
			# upstream does what it always did).
			cat <<EOF
	map \$http_x_api_key \$saw_key {
		"" no;
		default yes;
	}
EOF
			[ -n "$W_JWT" ] && cat <<EOF
	map \$http_authorization \$saw_auth {
		"" no;
		default yes;
	}
EOF
		fi
		cat <<EOF
	server {
		listen 127.0.0.1:$u_port;
		location = /bench {
			default_type application/json;
EOF
		[ "$W_SERVERS" = 2 ] && [ "$upstream_stub" = 0 ] &&
		    say "			add_header X-Upstream $1;"
		if [ "$W_KEYS" = 1 ] || [ -n "$W_JWT" ]; then
			cat <<EOF
			add_header X-Upstream-Consumer \$http_x_consumer_id;
			add_header X-Upstream-Saw-Key \$saw_key;
EOF
			[ -n "$W_JWT" ] && cat <<EOF
			add_header X-Upstream-Saw-Auth \$saw_auth;
EOF
		fi
		cat <<EOF
			return 200 '{"ok":true}';
		}
EOF
		# metrics-scrape: its routes /rN, answered with the status
		# asked for in ?s= (404, 503), else 200.
		[ "$W_SCRAPE" = 1 ] && cat <<EOF
		location ~ ^/r[0-9]+\$ {
			default_type application/json;
			if (\$arg_s = 404) {
				return 404;
			}
			if (\$arg_s = 503) {
				return 503;
			}
			return 200 '{"ok":true}';
		}
EOF
		[ "$W_SERVERS" = 2 ] && [ "$upstream_stub" = 1 ] && cat <<EOF
		location = $POOL_STATUS {
			stub_status;
		}
EOF
		cat <<EOF
	}
}
EOF
	} >"$d/nginx.conf"
	nginx_run "$d" "$u_port"
}

# start_recorder: rate-accuracy's upstream, record.py: answers like the
# keys-proxy upstream, and appends "MONOTONIC_SECONDS PATH" for every
# request it gets to $wdir/upstream/arrivals.
start_recorder() {
	d=$wdir/upstream
	mkdir -p "$d"
	free_port
	port_upstream=$PORT
	: >"$d/arrivals"
	launch_ms=$(now_ms)
	python3 "$here/record.py" "$port_upstream" "$d/arrivals" \
	    >"$d/stderr.log" 2>&1 &
	SYSTEM_PID=$!
	wait_ready "$SYSTEM_PID" "http://127.0.0.1:$port_upstream/" || {
		stop_pid "$SYSTEM_PID"
		tail -n 5 "$d/stderr.log" >&2
		return 1
	}
}

# start_jwks: jwks-refresh's JWKS server (jwks_server.py), on
# https://127.0.0.1:$port_jwks/pI.json, serving $wdir/jwks/served/pI.json
# (each provider's base JWKS to begin with: see refresh_reset), logging
# every fetch to $wdir/jwks/fetches.
start_jwks() {
	d=$wdir/jwks
	mkdir -p "$d/served"
	free_port
	port_jwks=$PORT
	refresh_reset
	: >"$d/fetches"
	launch_ms=$(now_ms)
	python3 "$here/jwks_server.py" "$port_jwks" "$d/served" \
	    "$jwtdir/refresh/server.pem" "$jwtdir/refresh/server.key" \
	    "$d/fetches" >"$d/stderr.log" 2>&1 &
	SYSTEM_PID=$!
	wait_ready "$SYSTEM_PID" "https://127.0.0.1:$port_jwks/" || {
		stop_pid "$SYSTEM_PID"
		tail -n 5 "$d/stderr.log" >&2
		return 1
	}
}

# refresh_reset: serve every provider's base JWKS (its RSA key alone).
refresh_reset() {
	i=0
	while [ $i -lt $REFRESH_PROVIDERS ]; do
		i=$((i + 1))
		refresh_serve "p$i" base
	done
}

# refresh_serve PROVIDER base|next: serve PROVIDER's base or next JWKS
# (tokens.py), replacing the file at once (rename).
refresh_serve() {
	cp "$jwtdir/refresh/$1.$2.json" "$wdir/jwks/served/.$1.tmp"
	mv -f "$wdir/jwks/served/.$1.tmp" "$wdir/jwks/served/$1.json"
}

# start_haproxy WORKLOAD: HAProxy in the foreground (-db) as a background
# job, never the system service; one process with $WORKERS threads.
#
# The TLS workloads: "ssl crt" with the run's certificate and key in one
# PEM; HAProxy's defaults otherwise (TLS 1.2 and 1.3, session tickets on
# with keys it makes at start, its session cache).  tls-idle-memory:
# maxconn room for the idle connections, kept longer than the run takes
# (and "no strict-limits": see below).
start_haproxy() {
	d=$wdir/haproxy
	mkdir -p "$d"
	free_port
	port_haproxy=$PORT
	h_ssl=
	[ "$W_TLS" = 1 ] && h_ssl=" ssl crt $tlsdir/haproxy.pem"
	h_maxconn=4096
	h_req_timeout=60s
	h_limits=
	h_threads=$WORKERS
	if [ "$W_SCRAPE" = 1 ]; then
		h_threads=$SCRAPE_WORKERS
		free_port
		port_haproxy_metrics=$PORT
	fi
	if [ "$W_IDLE" = 1 ]; then
		# HAProxy wants 2 descriptors per connection (client and
		# server side) and by default will not start if it cannot
		# have them (strict-limits); idle connections have no server
		# side, so the limit the shell could set is enough.
		h_maxconn=$((IDLE_CONNS + 1024))
		h_req_timeout=600s
		h_limits="
	no strict-limits"
	fi
	{
		cat <<EOF
# generated by contrib/bench/run.sh, workload $1
global
	nbthread $h_threads
	maxconn $h_maxconn$h_limits
	pidfile $d/haproxy.pid

defaults
	mode http
	option http-keep-alive
	http-reuse always
	timeout connect 5s
	timeout client 60s
	timeout server 60s
	timeout http-keep-alive 75s
	timeout http-request $h_req_timeout
	maxconn $h_maxconn

frontend gateway
	bind 127.0.0.1:$port_haproxy$h_ssl
EOF
		if [ "$W_KEYS" = 1 ]; then
			# One map look-up per request: the owner goes into a
			# variable, refused when absent, sent upstream from it.
			cat <<EOF
	http-request set-var(txn.owner) req.hdr(x-api-key),map($keys_src/haproxy.map)
	http-request deny deny_status 401 unless { var(txn.owner) -m found }
EOF
			haproxy_limit "$1"
		fi
		[ -n "$W_JWT" ] && haproxy_jwt "$1"
		case $1 in
		proxy | https-* | tls-idle-memory)
			cat <<EOF
	use_backend up if { path /bench }

backend up
	server up 127.0.0.1:$port_upstream
EOF
			;;
		proxy-pool)
			# roundrobin is HAProxy's default balance, written
			# out; the defaults' http-reuse always shares the idle
			# connections of each server between requests.
			cat <<EOF
	use_backend up if { path /bench }

backend up
	balance roundrobin
	server s1 127.0.0.1:$port_upstream
	server s2 127.0.0.1:$port_upstream2
EOF
			;;
		keys-proxy | rate | rate-accuracy | jwt*)
			if [ -n "$W_JWT" ]; then
				cat <<EOF
	http-request set-header X-Consumer-Id %[var(txn.sub)]
	http-request del-header Authorization
EOF
			else
				cat <<EOF
	http-request set-header X-Consumer-Id %[var(txn.owner)]
	http-request del-header X-API-KEY
EOF
			fi
			cat <<EOF
	use_backend up if { path /bench }

backend up
	server up 127.0.0.1:$port_upstream
EOF
			haproxy_tables "$1"
			;;
		keys-verify | rate-verify)
			say "	http-request return status 204 hdr X-Consumer-Id %[var(txn.owner)] if { path /_keygate/verify }"
			haproxy_tables "$1"
			;;
		verify)
			say "	http-request return status 204 if { path /_keygate/verify }"
			;;
		echo)
			say "	http-request return status 200 content-type application/json string '{\"ok\":true}' if { path /bench }"
			;;
		metrics-scrape) haproxy_scrape ;;
		esac
	} >"$d/haproxy.cfg"
	"$HAPROXY" -c -f "$d/haproxy.cfg" >"$d/check.log" 2>&1 || {
		cat "$d/check.log" >&2
		return 2
	}
	launch_ms=$(now_ms)
	"$HAPROXY" -f "$d/haproxy.cfg" -db -p "$d/haproxy.pid" \
	    >"$d/stderr.log" 2>&1 &
	SYSTEM_PID=$!
	wait_ready "$SYSTEM_PID" "$(scheme)://127.0.0.1:$port_haproxy/" || {
		stop_pid "$SYSTEM_PID"
		tail -n 5 "$d/stderr.log" >&2
		return 1
	}
}

# haproxy_scrape: metrics-scrape's HAProxy, what keygated's config does
# with backends for routes: /kN refused with 401 (no key is known), other
# paths than /rN answered 404, /rN to backend rN, $SCRAPE_ROUTES backends
# of one server each (the shared upstream); and the built-in Prometheus
# exporter (USE_PROMEX) on a frontend of its own, as keygated's
# metrics_listen.
haproxy_scrape() {
	cat <<EOF
	http-request deny deny_status 401 if { path_reg ^/k[0-9]+\$ }
	http-request return status 404 unless { path_reg ^/r[0-9]+\$ }
EOF
	i=0
	while [ $i -lt "$SCRAPE_ROUTES" ]; do
		i=$((i + 1))
		say "	use_backend r$i if { path /r$i }"
	done
	cat <<EOF

frontend metrics
	bind 127.0.0.1:$port_haproxy_metrics
	http-request use-service prometheus-exporter if { path /metrics }
EOF
	i=0
	while [ $i -lt "$SCRAPE_ROUTES" ]; do
		i=$((i + 1))
		say
		say "backend r$i"
		say "	server s1 127.0.0.1:$port_upstream"
	done
}

# haproxy_jwt WORKLOAD: the JWT checks of the jwt-* workloads, the way
# HAProxy 2.6's manual shows them: the bearer token in a variable, its
# header's alg required to be the one algorithm of the key (RS256 or ES256),
# the signature checked by jwt_verify against the PEM public key (1: good),
# then iss and aud (exact strings), exp required and in the future, nbf (if
# there) not more than 60 s ahead, as keygated's default leeway.  Each
# jwt_*_query decodes the token's part again: HAProxy has nothing to keep
# the decoded claims.  Refusals: 401, as keygated.  Single quotes keep
# HAProxy from reading "$." as an environment variable.
haproxy_jwt() {
	case $1 in
	jwt-fresh-es256) h_alg=ES256; h_pem=$jwtdir/ec.pub.pem ;;
	*) h_alg=RS256; h_pem=$jwtdir/rsa.pub.pem ;;
	esac
	cat <<EOF
	http-request set-var(txn.bearer) http_auth_bearer
	http-request set-var(txn.jwt_alg) var(txn.bearer),jwt_header_query('\$.alg')
	http-request deny deny_status 401 unless { var(txn.jwt_alg) -m str $h_alg } { var(txn.bearer),jwt_verify(txn.jwt_alg,"$h_pem") -m int 1 }
	http-request deny deny_status 401 unless { var(txn.bearer),jwt_payload_query('\$.iss') -m str $JWT_ISSUER } { var(txn.bearer),jwt_payload_query('\$.aud') -m str $JWT_AUDIENCE }
	http-request set-var(txn.now) date()
	http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
	http-request deny deny_status 401 unless { var(txn.exp),sub(txn.now) -m int gt 0 }
	http-request set-var(txn.nbf) var(txn.bearer),jwt_payload_query('\$.nbf','int')
	http-request deny deny_status 401 if { var(txn.nbf),sub(txn.now) -m int gt 60 }
	http-request set-var(txn.sub) var(txn.bearer),jwt_payload_query('\$.sub')
EOF
}

# haproxy_limit WORKLOAD: for rate, rate-verify and rate-accuracy, after
# the key check (so that unknown keys are never tracked): track the
# X-API-KEY header in one stick table per window (a table stores one
# http_req_rate period), and refuse with 429 when a window's rate is over
# its limit.  track-sc counts the request in http_req_rate before the deny
# rule reads it, so "gt N" admits N; a refused request counts too (the
# rate counts every tracked request).  rate and rate-verify: 1s, 10s and
# 60s tables at $RATE_HIGH; rate-accuracy: the 1s table at $RATE_LOW.
haproxy_limit() {
	case $1 in
	rate | rate-verify)
		cat <<EOF
	http-request track-sc0 req.hdr(x-api-key) table rate_1s
	http-request track-sc1 req.hdr(x-api-key) table rate_10s
	http-request track-sc2 req.hdr(x-api-key) table rate_60s
	http-request deny deny_status 429 if { sc_http_req_rate(0) gt $RATE_HIGH } || { sc_http_req_rate(1) gt $RATE_HIGH } || { sc_http_req_rate(2) gt $RATE_HIGH }
EOF
		;;
	rate-accuracy)
		cat <<EOF
	http-request track-sc0 req.hdr(x-api-key) table rate_1s
	http-request deny deny_status 429 if { sc_http_req_rate(0) gt $RATE_LOW }
EOF
		;;
	esac
}

# haproxy_tables WORKLOAD: the stick tables haproxy_limit tracks, each in
# a backend of its own, with room for twice the keys.  An entry lives two
# periods after its last request, since HAProxy estimates a period's rate
# from the previous period too.
haproxy_tables() {
	case $1 in
	rate | rate-verify) set -- 1 10 60 ;;
	rate-accuracy) set -- 1 ;;
	*) return 0 ;;
	esac
	for p in "$@"; do
		cat <<EOF

backend rate_${p}s
	stick-table type string len 64 size $((2 * KEYS)) expire $((2 * p))s store http_req_rate(${p}s)
EOF
	done
}

# system_logs NAME: the files a system logs to.
system_logs() {
	case $1 in
	keygated* | haproxy | jwks) say "$wdir/$1/stderr.log" ;;
	*) say "$wdir/$1/stderr.log"; say "$wdir/$1/logs/error.log" ;;
	esac
}

# log_lines NAME: how many lines the system has logged so far.
log_lines() {
	cat $(system_logs "$1") 2>/dev/null | wc -l | tr -d ' '
}

# system_died WORKLOAD ROUND SYSTEM...: if one of the systems is gone,
# the workload fails with the last lines of its log, and this succeeds.
system_died() {
	sd_w=$1 sd_r=$2
	shift 2
	for t in "$@"; do
		alive "$(system_pid "$t")" && continue
		say "$t DIED during round $sd_r; last lines of its log:" \
		    >"$wdir/died"
		tail -q -n 8 $(system_logs "$t") 2>/dev/null |
		    sed 's/^/    /' >>"$wdir/died"
		fail "$sd_w" "$(cat "$wdir/died")"
		return 0
	done
	return 1
}

# note_new_log_lines NAME WHEN: into the notes, the last of the lines NAME
# logged since $wdir/NAME.loglines was taken (WHEN names that span).
note_new_log_lines() {
	n0=$(cat "$wdir/$1.loglines")
	n1=$(log_lines "$1")
	if [ "$n1" -gt "$n0" ]; then
		say "NOTE: $1 logged $((n1 - n0)) lines during $2; the last ones:"
		cat $(system_logs "$1") 2>/dev/null | tail -n +"$((n0 + 1))" |
		    tail -n 5 | sed 's/^/    /'
	fi >>"$wdir/notes"
}

# start_system NAME: start it for workload $w (three tries, in case another
# program takes the port first; none if its config is rejected), remember
# its pid in $wdir/NAME.pid and the milliseconds from its launch to its
# first answer in $wdir/NAME.startms.
start_system() {
	try=0
	while [ $try -lt 3 ]; do
		try=$((try + 1))
		SYSTEM_PID=
		launch_ms=
		rc=0
		"start_$1" "$w" 2>"$wdir/$1.start.log" || rc=$?
		if [ $rc -eq 0 ]; then
			say "$(($(now_ms) - ${launch_ms:-0}))" >"$wdir/$1.startms"
			say "$SYSTEM_PID" >"$wdir/$1.pid"
			started="$started $SYSTEM_PID"
			wsystems="$wsystems $1"
			return 0
		fi
		cat "$wdir/$1.start.log" >&2
		[ $rc -eq 2 ] && return 1
		warn "$1 did not start (try $try of 3)"
	done
	return 1
}
started=

system_pid() { cat "$wdir/$1.pid"; }

# stop_systems: stop the systems of the current workload.
stop_systems() {
	for s in $wsystems; do
		p=$(system_pid "$s")
		stop_pid "$p"
		started=$(say "$started" | tr ' ' '\n' | grep -vx "$p" |
		    tr '\n' ' ' || true)
	done
	wsystems=
}
wsystems=

# -------------------------------------------------------------------- wrk

# run_wrk OUTFILE SECONDS URL [SYSTEM]: wrk in the background, so that a
# signal reaches the trap at once, with the workload's headers (and
# keys.lua with SYSTEM's credentials: see wrk_creds).  Non-zero if wrk
# failed (its output is in OUTFILE).  The handshake workloads (W_CLIENT
# full or resume) run tlsload instead, on SYSTEM's port, with $CONNS
# connection slots.
run_wrk() {
	if [ "$W_CLIENT" != wrk ]; then
		eval "rw_port=\$port_$4"
		"$tlsload" -p "$rw_port" -u "$W_PATH" -c "$CONNS" -d "$2" \
		    -m "$W_CLIENT" >"$1" 2>&1 &
		wrk_pid=$!
		rc=0
		wait "$wrk_pid" || rc=$?
		wrk_pid=
		return $rc
	fi
	wrk_creds "${4:-}"
	set -- "$1" "$2" "$3" wrk
	[ -n "$wrk_file" ] && set -- "$1" "$2" "$3" env KEYS_FILE="$wrk_file" \
	    KEYS_HEADER="$wrk_header" KEYS_ORDER="$W_ORDER" wrk \
	    -s "$here/keys.lua"
	rw_out=$1
	rw_secs=$2
	rw_url=$3
	shift 3
	with_headers "$rw_url" "$@" -t"$THREADS" -c"$CONNS" -d"${rw_secs}s" \
	    --latency >"$rw_out" 2>&1 &
	wrk_pid=$!
	rc=0
	wait "$wrk_pid" || rc=$?
	wrk_pid=
	return $rc
}
wrk_pid=

# wrk_creds SYSTEM: set wrk_file and wrk_header to the file keys.lua takes
# a credential from for each request, and the header it goes in: the
# workload's tokens (W_JWT, "Bearer TOKEN" lines) in Authorization, else,
# for the keys-* workloads and jwt-vs-key's keygated_key, the API keys in
# X-API-KEY; none for the others.
wrk_creds() {
	wrk_file=
	wrk_header=
	if [ -n "$W_JWT" ] && [ "$1" != keygated_key ]; then
		wrk_file=$jwtdir/$W_JWT
		wrk_header=Authorization
	elif [ "$W_KEYS" = 1 ]; then
		wrk_file=$KEYS_FILE
		wrk_header=X-API-KEY
	fi
}

# parse_wrk FILE: print "req/s p50_us p99_us non2xx socket_errors requests"
# (from wrk's output, or from tlsload's line: its exchanges, one per
# connection, and its failed connections as socket errors).
parse_wrk() {
	awk '
	/^tlsload / {
		for (i = 2; i <= NF; i++) {
			k = $i; sub(/=.*/, "", k); v = $i; sub(/^[^=]*=/, "", v)
			t[k] = v
		}
		rps = t["rps"]; p50 = t["p50_us"]; p99 = t["p99_us"]
		bad = t["non2xx"]; err = t["errors"]; req = t["exchanges"]
	}
	function us(v) {
		if (v ~ /us$/) return v + 0
		if (v ~ /ms$/) return v * 1000
		if (v ~ /m$/) return v * 60000000
		if (v ~ /s$/) return v * 1000000
		return v + 0
	}
	/^ *50% / { p50 = us($2) }
	/^ *99% / { p99 = us($2) }
	/^Requests\/sec:/ { rps = $2 }
	/requests in/ { req = $1 }
	/Non-2xx or 3xx responses:/ { bad = $NF }
	/Socket errors:/ {
		for (i = 3; i <= NF; i += 2) { v = $(i + 1); sub(/,/, "", v); err += v }
	}
	END { printf "%s %s %s %d %d %d\n", rps, p50, p99, bad, err, req }
	' "$1"
}

# median: of the numbers on standard input.
median() {
	sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print 0; exit }
		if (NR % 2) print v[(NR + 1) / 2]
		else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# field FILE N: field N of every line of FILE.
field() { awk -v n="$2" '{ print $n }' "$1"; }

# --------------------------------------------------------------- workloads

# fail WORKLOAD REASON [FILE]: give up on the workload: its table shows
# REASON and the last lines of FILE.
fail() {
	say "$2" >"$tmp/$1/failed"
	if [ -n "${3:-}" ] && [ -s "$3" ]; then
		tail -n 8 "$3" | sed 's/^/    /' >>"$tmp/$1/failed"
	fi
	warn "workload $1: $(cat "$tmp/$1/failed")"
	return 0
}

# refresh_wait SYSTEM: jwks-refresh: until SYSTEM accepts the token of
# every provider (the master fetches the 15 JWKS in the background after
# it starts, and until then a provider answers 503), at most 20 s.
refresh_wait() {
	rw_url=$(workload_url "$w" "$1")
	rw_end=$(($(now_ms) + 20000))
	while IFS= read -r rw_line; do
		while [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
		    -H "Authorization: $rw_line" "$rw_url" || true)" != 200 ]; do
			[ "$(now_ms)" -lt "$rw_end" ] || return 1
			sleep 0.1
		done
	done <"$jwtdir/refresh.pool"
}

# check_workload: fetch each system's URL once (with curl, the workload's
# headers); it must answer W_STATUS with the expected content.
check_workload() {
	for s in $W_SYSTEMS; do
		[ "$W_REFRESH" = 1 ] && ! refresh_wait "$s" &&
		    warn "$s: not every provider has its keys after 20 s"
		check_curl=curl
		[ "$W_TLS" = 1 ] && check_curl=curl_tls
		[ "$W_KEYS" = 1 ] && check_curl=curl_key
		[ -n "$W_JWT" ] && [ "$s" != keygated_key ] && check_curl=curl_jwt
		url=$(workload_url "$w" "$s")
		resp=$(with_headers "$url" "$check_curl" -s -i --max-time 5 ||
		    true)
		say "$resp" >"$wdir/$s.check"
		case $resp in
		"HTTP/1.1 $W_STATUS"*) ;;
		*)
			fail "$w" "$s: GET $url answered \"$(say "$resp" |
			    head -n 1 | tr -d '\r')\", not $W_STATUS" \
			    "$wdir/$s.check"
			return 1
			;;
		esac
		case $resp in
		*"$(workload_expect "$w" "$s")"*) ;;
		*)
			fail "$w" "$s: GET $url: unexpected response" \
			    "$wdir/$s.check"
			return 1
			;;
		esac
	done
	# verify: a URI that no route matches must not be allowed, or
	# keygated would not be looking the route up.
	if [ "$w" = verify ]; then
		url=$(workload_url "$w" keygated)
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
		    -H 'X-Original-Method: GET' -H 'X-Original-URI: /nope' \
		    "$url" || true)
		case $code in
		2*)
			fail "$w" "keygated: $url allowed X-Original-URI /nope ($code)"
			return 1
			;;
		esac
		say "keygated answers $code for X-Original-URI /nope (no route)" \
		    >>"$wdir/notes"
	fi
	case $w in
	rate | rate-verify | rate-accuracy) check_rate || return 1 ;;
	esac
	if [ "$W_SERVERS" = 2 ]; then
		check_pool || return 1
	fi
	if [ -n "$W_JWT" ]; then
		check_jwt || return 1
		[ "$W_KEYS" = 1 ] && ! check_keys keygated_key && return 1
	elif [ "$W_KEYS" = 1 ]; then
		check_keys $W_SYSTEMS || return 1
	fi
	return 0
}

# jwt_check_file NAME: the file of tokens.py holding the workload's check
# token (NAME hdr: its "Authorization: Bearer" line, NAME sub: its sub).
jwt_check_file() {
	case $w:$1 in
	jwt-fresh-es256:hdr) say "$jwtdir/es256.hdr" ;;
	jwt-fresh-es256:sub) say "$jwtdir/sub.es256" ;;
	jwks-refresh:hdr) say "$jwtdir/refresh/check.hdr" ;;
	jwks-refresh:sub) say "$jwtdir/refresh/sub" ;;
	*:hdr) say "$jwtdir/check.hdr" ;;
	*:sub) say "$jwtdir/sub.one" ;;
	esac
}

# curl_tls ARGS...: curl trusting the run's certificate alone (its own
# CA), for 127.0.0.1: a system that presents another one fails the check.
curl_tls() { curl --cacert "$tlsdir/cert.pem" "$@"; }

# curl_jwt ARGS...: curl with the workload's check token (from a file).
curl_jwt() { curl -H "@$(jwt_check_file hdr)" "$@"; }

# check_jwt: for the JWT workloads, every system but keygated_key must
# refuse (401) a request without a token and each of tokens.py's bad.*
# tokens (a bad signature, expired, another audience or issuer, no exp,
# HS256 keyed with the public key), and the upstream must have seen the
# check token's sub in X-Consumer-Id and no Authorization header.
check_jwt() {
	sub=$(cat "$(jwt_check_file sub)")
	for s in $W_SYSTEMS; do
		[ "$s" = keygated_key ] && continue
		url=$(workload_url "$w" "$s")
		for bad in none "$jwtdir"/bad.*; do
			if [ "$bad" = none ]; then
				set -- curl
			else
				set -- curl -H "@$bad"
			fi
			code=$(with_headers "$url" "$@" -s -o /dev/null \
			    -w '%{http_code}' --max-time 5 || true)
			[ "$code" = 401 ] && continue
			fail "$w" "$s: GET $url with $(test "$bad" = none &&
			    echo no token || echo "the token of ${bad##*/}") answered $code, not 401"
			return 1
		done
		got=$(tr -d '\r' <"$wdir/$s.check" | tr 'A-Z' 'a-z')
		for h in "x-upstream-consumer: $sub" "x-upstream-saw-auth: no"; do
			case $got in
			*"$h"*) ;;
			*)
				fail "$w" "$s: the answer for the check token lacks \"$h\"" \
				    "$wdir/$s.check"
				return 1
				;;
			esac
		done
	done
	say "every JWT system answered 401 without a token and with each of: $(cd "$jwtdir" && echo bad.* | sed 's/bad\.//g'); the upstream saw the sub and no Authorization" \
	    >>"$wdir/notes"
	return 0
}

# check_rate: for rate, rate-verify and rate-accuracy, keygated's answer to the check
# request must carry the RateLimit-Policy of the workload's limits (as a
# whole line: no other window), and keygated_off's no RateLimit header: the
# limiter runs in the one and not in the other.
check_rate() {
	case $w in
	rate | rate-verify) want="RateLimit-Policy: $RATE_HIGH;w=1, $RATE_HIGH;w=10, $RATE_HIGH;w=60" ;;
	*) want="RateLimit-Policy: $RATE_LOW;w=1" ;;
	esac
	if ! tr -d '\r' <"$wdir/keygated.check" | grep -qixF "$want"; then
		fail "$w" "keygated: the answer lacks \"$want\"" \
		    "$wdir/keygated.check"
		return 1
	fi
	note="keygated answers with \"$want\""
	case " $W_SYSTEMS " in
	*" keygated_off "*)
		if grep -qi '^ratelimit-' "$wdir/keygated_off.check"; then
			fail "$w" "keygated_off: RateLimit headers with rate_limit off" \
			    "$wdir/keygated_off.check"
			return 1
		fi
		note="$note, keygated_off without RateLimit headers"
		;;
	esac
	say "$note" >>"$wdir/notes"
}

# pool_counts: proxy-pool: "N1 N2", the requests upstream and upstream2
# have served so far (their stub_status "requests", which counts the
# reading request too); "- -" for a server that did not answer.
pool_counts() {
	for u in upstream upstream2; do
		eval "pc_port=\$port_$u"
		curl -s --max-time 5 "http://127.0.0.1:$pc_port$POOL_STATUS" |
		    awk 'NR == 3 && $3 ~ /^[0-9]+$/ { n = $3 }
			END { print (n == "" ? "-" : n) }'
	done | paste -sd' ' -
}

# pool_delta BEFORE AFTER: "A B", the requests each server got between two
# pool_counts (the second reading counted itself: one less each); empty
# if a reading failed.
pool_delta() {
	say "$1 $2" | awk '$1 ~ /^[0-9]+$/ && $2 ~ /^[0-9]+$/ &&
	    $3 ~ /^[0-9]+$/ && $4 ~ /^[0-9]+$/ {
		print $3 - $1 - 1, $4 - $2 - 1 }'
}

# check_pool: proxy-pool: through each system, $POOL_CHECK requests one
# after the other over one connection (one curl); each of the two upstream
# servers must get some of them (round robin: half each), or the gateway
# does not spread and the workload fails.  Counted by the servers'
# stub_status (pool_counts), or, for an nginx without it, from the
# X-Upstream header each server adds to its answers.
check_pool() {
	note=
	for s in $W_SYSTEMS; do
		url=$(workload_url "$w" "$s")
		set --
		while [ $# -lt $((3 * POOL_CHECK)) ]; do
			set -- "$@" -o /dev/null "$url"
		done
		if [ "$upstream_stub" = 1 ]; then
			c0=$(pool_counts)
			curl -s --max-time 10 "$@" || true
			got=$(pool_delta "$c0" "$(pool_counts)")
			if [ -z "$got" ]; then
				fail "$w" "$s: no request count from an upstream server's stub_status (GET http://127.0.0.1:$port_upstream$POOL_STATUS and :$port_upstream2)"
				return 1
			fi
		else
			: >"$wdir/$s.pool"
			curl -s -D "$wdir/$s.pool" --max-time 10 "$@" || true
			got=$(tr -d '\r' <"$wdir/$s.pool" | awk '
			    tolower($1) == "x-upstream:" { n[$2]++ }
			    END { print n["upstream"] + 0, n["upstream2"] + 0 }')
		fi
		case $got in
		"0 "* | *" 0")
			fail "$w" "$s does not spread: of $POOL_CHECK requests over one connection to $url, upstream (port $port_upstream) got ${got% *}, upstream2 (port $port_upstream2) got ${got#* }; both should get some (round robin: half each)"
			return 1
			;;
		esac
		note="$note${note:+, }$s ${got% *}/${got#* }"
	done
	say "$POOL_CHECK requests over one connection before the rounds, to upstream/upstream2: $note" \
	    >>"$wdir/notes"
}

# curl_key ARGS...: curl with the first key's X-API-KEY header (read from a
# file: the secret stays off the command line).
curl_key() { curl -H "@$keysdir/check.hdr" "$@"; }

# curl_badkey ARGS...: curl with an X-API-KEY that is no key.
curl_badkey() { curl -H "X-API-KEY: live_00000000000000000000000000000000" "$@"; }

# check_keys SYSTEM...: for the keys-* workloads, each SYSTEM must refuse a
# request without a key and one with an unknown key (401), and its answer
# with the first key must carry that key's owner: in X-Consumer-Id
# (verify), or as the upstream saw it, with the secret removed (proxy).
check_keys() {
	owner=$(cat "$keysdir/first.owner")
	for s in "$@"; do
		url=$(workload_url "$w" "$s")
		for how in curl curl_badkey; do
			code=$(with_headers "$url" "$how" -s -o /dev/null \
			    -w '%{http_code}' --max-time 5 || true)
			[ "$code" = 401 ] && continue
			fail "$w" "$s: GET $url with $(test $how = curl &&
			    echo no key || echo an unknown key) answered $code, not 401"
			return 1
		done
		case $w in
		keys-proxy | keys-proxy-cluster | cluster-limits | rate | \
		    rate-accuracy | jwt-vs-key)
			want="x-upstream-consumer: $owner
x-upstream-saw-key: no"
			;;
		*)	want="x-consumer-id: $owner" ;;
		esac
		got=$(tr -d '\r' <"$wdir/$s.check" | tr 'A-Z' 'a-z')
		old_ifs=$IFS
		IFS='
'
		for h in $want; do
			case $got in
			*"$h"*) ;;
			*)
				IFS=$old_ifs
				fail "$w" "$s: the answer for the first key lacks \"$h\"" \
				    "$wdir/$s.check"
				return 1
				;;
			esac
		done
		IFS=$old_ifs
	done
	say "every system answered 401 without a key and with an unknown one" \
	    >>"$wdir/notes"
	return 0
}

# mem_empty NAME: start system NAME for workload $w with no keys (its files
# from $keys_empty, in $wdir/empty.mem0), and write "RSS PSS STARTMS" (KiB,
# KiB, ms) of it at rest, 1 s after its first answer, to $wdir/NAME.mem0.
# keygated then has the smallest key store (max_keys 1), since its store
# is sized by max_keys, not by the keys in it; it is started a second time
# with max_keys $W_MAX_KEYS and no keys, for $wdir/keygated.mem0max.
mem_empty() {
	mem_empty_run "$1" mem0 || return 1
	[ "$1" = keygated ] || return 0
	mem_empty_run keygated mem0max
}

# mem_empty_run NAME TAG: one such start, in $wdir/empty.TAG, results in
# $wdir/NAME.TAG; keygated gets max_keys 1 for TAG mem0.
mem_empty_run() {
	m_wdir=$wdir
	m_ws=$wsystems
	wdir=$wdir/empty.$2
	wsystems=
	keys_src=$keys_empty
	KG_MAX_KEYS=
	[ "$2" = mem0 ] && KG_MAX_KEYS=1
	mkdir -p "$wdir"
	m_rc=0
	if start_system "$1"; then
		sleep 1
		say "$(mem_now "$(system_pid "$1")") $(cat "$wdir/$1.startms")" \
		    >"$m_wdir/$1.$2"
	else
		m_rc=1
	fi
	stop_systems
	wdir=$m_wdir
	wsystems=$m_ws
	keys_src=$keysdir
	KG_MAX_KEYS=
	return $m_rc
}

# health_keys URL: the "keys" count of GET URL/v1/health (empty if none).
health_keys() {
	curl -s --max-time 5 "$1/v1/health" >"$wdir/health" 2>&1 || true
	sed -n 's/.*"keys": *\([0-9][0-9]*\).*/\1/p' "$wdir/health"
}

# run_create: keys-create, with keygated started and checked: $CREATES
# creates through the admin API (create.py), the store's key count before
# and after, the journal's growth, then a restart of keygated on the same
# state_dir, which must come back with every key.  Results in
# $wdir/create.res (printed by print_create).
run_create() {
	d=$wdir/keygated
	admin=http://127.0.0.1:$keygated_admin_port
	n0=$(health_keys "$admin")
	if [ "$n0" != "$KEYS" ]; then
		fail "$w" "keygated: GET $admin/v1/health: ${n0:-no} keys, not $KEYS" \
		    "$wdir/health"
		return 0
	fi
	j0=$({ wc -c <"$d/state/keys.journal"; } 2>/dev/null || say 0)
	log_lines keygated >"$wdir/keygated.loglines"
	warn "$w: $CREATES creates through $admin/v1/keys ($CREATE_CLIENTS clients)"
	if ! python3 "$here/create.py" "$admin" "$keysdir/admin.token" \
	    "$CREATES" "$(workload_url "$w" keygated)" "$CREATE_CLIENTS" \
	    >"$wdir/create.out" \
	    2>"$wdir/create.err"; then
		fail "$w" "the admin client failed" "$wdir/create.err"
		return 0
	fi
	n1=$(health_keys "$admin")
	j1=$({ wc -c <"$d/state/keys.journal"; } 2>/dev/null || say 0)
	# For comparison: synchronous 512-byte appends (O_DSYNC) on the same
	# filesystem, one at a time, as many as the creates.
	dd if=/dev/zero of="$d/dsync.test" bs=512 count="$CREATES" \
	    oflag=dsync 2>"$wdir/dsync.out" >/dev/null || true
	rm -f "$d/dsync.test"
	dsync=$(awk -v n="$CREATES" '/copied/ { for (i = 1; i < NF; i++)
	    if ($(i + 1) ~ /^s,?$/ && $i + 0 > 0) { printf "%.1f %.3f", n / $i, $i; exit } }' \
	    "$wdir/dsync.out")
	rss=$(peak_rss "$(system_pid keygated)")
	n=$(cat "$wdir/keygated.loglines")
	logged=$(($(log_lines keygated) - n))
	{
		say "create $(cat "$wdir/create.out")"
		say "keys $n0 $n1"
		say "journal $j0 $j1"
		say "fs $(stat -f -c %T "$d/state") $(df -P "$d/state" |
		    awk 'NR == 2 { print $1, $6 }')"
		say "rss $rss"
		say "logged $logged"
		[ -n "$dsync" ] && say "dsync $dsync"
	} >"$wdir/create.res"
	stop_systems
	if start_system keygated; then
		say "restart $(health_keys "http://127.0.0.1:$keygated_admin_port") $(cat \
		    "$wdir/keygated.startms")" >>"$wdir/create.res"
	else
		say "restart failed" >>"$wdir/create.res"
	fi
}

# run_accuracy: rate-accuracy, with the systems started and checked: for
# each system in turn, a warm-up, a probe (accuracy_probe), 2 s of rest,
# then wrk hammers the first key (keys.lua with only its secret, counting
# statuses) for $DURATION s.  The recorder's lines written during the run
# are the system's admits, in $wdir/out/SYSTEM.arrivals; the counts in
# $wdir/acc.SYSTEM (see accuracy_counts).
#
# The warm-up ($WARMUP s of the same load on 100 other keys, whose limits
# let thousands through) fills the gateway's pool of upstream connections
# first: otherwise the first admits would wait for new connections, reach
# the recorder a few ms late, and the next second's admits would look
# closer to them than they were.
run_accuracy() {
	log=$wdir/upstream/arrivals
	for s in $W_SYSTEMS; do
		url=$(workload_url "$w" "$s")
		out=$wdir/out/$s.acc
		if [ "$WARMUP" -gt 0 ] && [ -s "$keysdir/warm.secrets" ]; then
			with_headers "$url" env KEYS_FILE="$keysdir/warm.secrets" \
			    wrk -s "$here/keys.lua" -t"$THREADS" \
			    -c"$ACCURACY_CONNS" -d"${WARMUP}s" >"$out.warmup" 2>&1 &
			wrk_pid=$!
			wait "$wrk_pid" || true
			wrk_pid=
		fi
		accuracy_probe "$s" "$url"
		# The checks and the probe used the key: 2 s let every limiter
		# forget them (HAProxy's rate of a second weighs the one
		# before).
		sleep 2
		n0=$(wc -l <"$log")
		a0=0
		[ -f "$wdir/$s/access.log" ] && a0=$(wc -l <"$wdir/$s/access.log")
		warn "$w: $s, ${DURATION}s"
		with_headers "$url" env KEYS_FILE="$keysdir/first.secret" \
		    KEYS_STATUS=1 wrk -s "$here/keys.lua" -t"$THREADS" \
		    -c"$ACCURACY_CONNS" -d"${DURATION}s" --latency >"$out" 2>&1 &
		wrk_pid=$!
		rc=0
		wait "$wrk_pid" || rc=$?
		wrk_pid=
		if [ $rc -ne 0 ]; then
			fail "$w" "wrk failed ($s)" "$out"
			return 0
		fi
		# Requests the gateway forwarded as wrk stopped.
		sleep 0.5
		n1=$(wc -l <"$log")
		sed -n "$((n0 + 1)),${n1}p" "$log" >"$wdir/out/$s.arrivals"
		accuracy_counts "$s" >"$wdir/acc.$s"
		[ -f "$wdir/$s/access.log" ] &&
		    tail -n +"$((a0 + 1))" "$wdir/$s/access.log" |
		    accuracy_admit_log >"$wdir/acc.$s.log"
		alive "$(system_pid "$s")" || {
			fail "$w" "$s DIED during its run"
			return 0
		}
	done
}

# accuracy_probe SYSTEM URL: 30 requests with the first key, one after the
# other over one connection (one curl); the first refused answer's head
# goes to $wdir/SYSTEM.refusal, to show how each gateway refuses (status,
# Retry-After).
accuracy_probe() {
	p_sys=$1
	p_url=$2
	set --
	while [ $# -lt 90 ]; do set -- "$@" -o /dev/null "$p_url"; done
	: >"$wdir/$p_sys.probe"
	curl_key -s -D "$wdir/$p_sys.probe" --max-time 10 "$@" || true
	tr -d '\r' <"$wdir/$p_sys.probe" | awk '
	    /^HTTP\// { if (found) exit; keep = $2 !~ /^2/ }
	    keep { print; found = 1 }' >"$wdir/$p_sys.refusal"
}

# accuracy_admit_log: from keygated's access log on stdin, "admitted worst
# span": its 2xx answers, the most of their rate_time (the limiter's own
# clock, whole ms) in any [t, t + 1000 ms), and the shortest time in ms in
# which $RATE_LOW + 1 of them were admitted.
accuracy_admit_log() {
	python3 -c '
import json, sys
from datetime import datetime
lim = int(sys.argv[1])
t = []
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if 200 <= e.get("status", 0) < 300 and "rate_time" in e:
        d = datetime.strptime(e["rate_time"], "%Y-%m-%dT%H:%M:%S.%fZ")
        t.append(round(d.timestamp() * 1000))
t.sort()
worst, j = 0, 0
for i in range(len(t)):
    while j < len(t) and t[j] < t[i] + 1000:
        j += 1
    worst = max(worst, j - i)
span = min((t[i + lim] - t[i] for i in range(len(t) - lim)), default=None)
print(len(t), worst, "-" if span is None else span)
' "$RATE_LOW"
}

# accuracy_counts SYSTEM: one line from the run's files: "sent 2xx 429
# other socket_errors seconds admitted worst worst_at span mean
# refusal_status retry_after per_second...".  sent, 2xx, 429, other:
# responses wrk got (keys.lua's status counts); seconds: the run's length
# (wrk); admitted: requests the upstream got; worst: the most of them in
# any interval [t, t + 1 s) (t one of them, so every interval is covered),
# worst_at: its start, seconds after the first admit; span: the shortest
# time, in ms, in which $RATE_LOW + 1 admits happened ("-" if there were
# not that many): the limit holds in every interval shorter than that, so
# a span of 1000 ms or more means worst <= $RATE_LOW; mean: admits per
# second over the whole seconds of
# the run from the first admit (D s: those in [t1, t1 + D) / D; the run's
# last instants would add a batch that belongs to the next second);
# refusal_status, retry_after: the probe's refusal ("none", "-" without
# Retry-After); per_second: admits in each whole second from the first
# admit on, to the last admit or the run's length.
accuracy_counts() {
	st=$(awk '/^status [0-9]+: / { n[$2 + 0] += $3 }
	    END { for (c in n) if (c + 0 >= 200 && c + 0 < 300) ok += n[c]
		else if (c + 0 == 429) lim += n[c]; else other += n[c]
		printf "%d %d %d", ok, lim, other }' "$wdir/out/$1.acc")
	sent_err=$(parse_wrk "$wdir/out/$1.acc" | awk '{ print $6, $5 }')
	secs=$(awk '/requests in/ { v = $4; sub(/s,?$/, "", v); print v + 0 }' \
	    "$wdir/out/$1.acc")
	refusal=$(tr -d '\r' <"$wdir/$1.refusal" | awk '
	    NR == 1 { s = $2 } tolower($1) == "retry-after:" { r = $2 }
	    END { print (s == "" ? "none" : s), (r == "" ? "-" : r) }')
	awk -v pre="${sent_err% *} $st ${sent_err#* } ${secs:-0}" \
	    -v refusal="$refusal" -v lim="$RATE_LOW" '
	    function worst(len,	i, j, m) {
		m = 0; j = 1; at = 0
		for (i = 1; i <= n; i++) {
			while (j <= n && t[j] < t[i] + len) j++
			if (j - i > m) { m = j - i; at = t[i] - t[1] }
		}
		return m
	    }
	    { t[++n] = $1 }
	    END {
		span = "-"
		for (i = 1; i + lim <= n; i++)
			if (span == "-" || t[i + lim] - t[i] < span)
				span = t[i + lim] - t[i]
		if (span != "-") span = sprintf("%.1f", span * 1000)
		w = worst(1)
		split(pre, f, " ")
		d = int(f[6])
		for (i = 1; i <= n; i++) {
			per[int(t[i] - t[1])]++
			if (t[i] < t[1] + d) whole++
		}
		line = sprintf("%s %d %d %.3f %s %.1f %s", pre, n, w, at, span,
		    (d > 0 ? whole / d : 0), refusal)
		last = n ? int(t[n] - t[1]) : -1
		if (last < f[6] - 1) last = int(f[6] + 0.5) - 1
		for (k = 0; k <= last; k++)
			line = line " " (per[k] + 0)
		print line
	    }' "$wdir/out/$1.arrivals"
}

# run_idle: tls-idle-memory, with the systems started and checked: for
# each system in turn, its memory at rest (mem_now: RSS and PSS summed over
# master and workers), then tlsload -m hold opens $IDLE_CONNS TLS
# connections to it (64 handshakes at a time, nothing sent after the
# handshake) and keeps them for $IDLE_HOLD s; 1 s after it says all are
# up, the memory again.  tlsload then reports how many the server still
# had open.  Results in $wdir/idle.SYSTEM: "rss0 pss0 rss1 pss1 held
# alive errors connect_secs".
run_idle() {
	for s in $W_SYSTEMS; do
		p=$(system_pid "$s")
		sleep 1
		m0=$(mem_now "$p")
		eval "i_port=\$port_$s"
		out=$wdir/out/$s.idle
		warn "$w: $s, $IDLE_CONNS idle connections"
		: >"$out"
		"$tlsload" -p "$i_port" -m hold -n "$IDLE_CONNS" -c 64 \
		    -d "$IDLE_HOLD" >"$out" 2>&1 &
		wrk_pid=$!
		until grep -q '^held ' "$out"; do
			alive "$wrk_pid" || break
			sleep 0.2
		done
		if ! grep -q '^held ' "$out"; then
			wait "$wrk_pid" || true
			wrk_pid=
			fail "$w" "tlsload failed ($s)" "$out"
			return 0
		fi
		sleep 1
		m1=$(mem_now "$p")
		rc=0
		wait "$wrk_pid" || rc=$?
		wrk_pid=
		if [ $rc -ne 0 ]; then
			fail "$w" "tlsload failed ($s)" "$out"
			return 0
		fi
		awk -v m="$m0 $m1" '/^tlsload / {
		    for (i = 2; i <= NF; i++) {
			k = $i; sub(/=.*/, "", k); v = $i; sub(/^[^=]*=/, "", v)
			t[k] = v
		    }
		    print m, t["held"], t["alive"], t["errors"], t["connect_secs"],
			t["proto"], t["group"], t["cert"] }' "$out" >"$wdir/idle.$s"
		alive "$p" || {
			fail "$w" "$s DIED while it held the connections"
			return 0
		}
	done
}

# scrape_port SYSTEM: the port SYSTEM serves GET /metrics on (keygated:
# metrics_listen; HAProxy: its metrics frontend).
scrape_port() {
	case $1 in
	keygated) say "$keygated_metrics_port" ;;
	haproxy) say "$port_haproxy_metrics" ;;
	esac
}

# run_scrape: metrics-scrape, with the systems started and checked: the
# traffic (scrape.py traffic; for keygated, until each of its workers
# holds one of the connections), one GET /metrics kept for the checks and
# the notes, then $ROUNDS rounds in which each system in turn gets
# $SCRAPES timed GET /metrics over one keep-alive connection (scrape.py
# time).  Results: $wdir/scrape.SYSTEM.traffic, $wdir/SYSTEM.metrics (the
# body after the traffic), $wdir/out/SYSTEM.ROUND (the summary line) and
# .ms (the times).
run_scrape() {
	for s in $W_SYSTEMS; do
		eval "sc_port=\$port_$s"
		set --
		[ "$s" = keygated ] && set -- $(children "$(system_pid "$s")")
		warn "$w: $s: traffic over $SCRAPE_ROUTES routes"
		if ! python3 "$here/scrape.py" traffic "$sc_port" \
		    "$SCRAPE_ROUTES" "$SCRAPE_KEYROUTES" "$SCRAPE_CONNS" "$@" \
		    >"$wdir/scrape.$s.traffic" 2>"$wdir/scrape.$s.err"; then
			fail "$w" "$s: the traffic failed" "$wdir/scrape.$s.err"
			return 0
		fi
		curl -s --max-time 10 -o "$wdir/$s.metrics" \
		    "http://127.0.0.1:$(scrape_port "$s")/metrics" || true
		scrape_check "$s" || return 0
	done
	r=0
	while [ $r -lt "$ROUNDS" ]; do
		r=$((r + 1))
		for s in $W_SYSTEMS; do
			out=$wdir/out/$s.$r
			if ! python3 "$here/scrape.py" time "$(scrape_port "$s")" \
			    /metrics "$SCRAPES" "$out.ms" >"$out" 2>"$out.err"; then
				fail "$w" "$s: the scrapes failed (round $r)" \
				    "$out.err"
				return 0
			fi
			warn "$w round $r/$ROUNDS $s: $(tr ' ' '\n' <"$out" |
			    sed -n 's/^median_ms=//p') ms median"
			alive "$(system_pid "$s")" || {
				fail "$w" "$s DIED during round $r"
				return 0
			}
		done
	done
	[ "$PROFILE" = 1 ] && command -v perf >/dev/null 2>&1 || return 0
	# PROFILE=1: the servers' own CPU time for one more round of scrapes
	# (perf stat task-clock on every process of each), which the
	# client's and the other programs' share of the 2 cores leaves out.
	for s in $W_SYSTEMS; do
		out=$wdir/out/$s.prof
		perf stat -x, -e task-clock -p "$(tree "$(system_pid "$s")" |
		    paste -sd, -)" -o "$out.perf" -- python3 "$here/scrape.py" \
		    time "$(scrape_port "$s")" /metrics "$SCRAPES" "$out.ms" \
		    >"$out" 2>"$out.err" || warn "perf stat failed on $s"
	done
}

# scrape_check SYSTEM: the body in $wdir/SYSTEM.metrics must have the
# series of the last route (keygated) or backend (HAProxy) under the
# statuses of the traffic; its values go to the notes.
scrape_check() {
	n=$SCRAPE_ROUTES
	sc_sys=$1
	case $1 in
	keygated)
		set -- "keygate_requests_total{route=\"r$n\",code=\"200\"}" \
		    "keygate_requests_total{route=\"r$n\",code=\"404\"}" \
		    "keygate_requests_total{route=\"r$n\",code=\"503\"}" \
		    "keygate_requests_total{route=\"k$SCRAPE_KEYROUTES\",code=\"401\"}" \
		    "keygate_request_duration_seconds_count{route=\"r$n\"}"
		;;
	*)
		set -- "haproxy_backend_http_responses_total{proxy=\"r$n\",code=\"2xx\"}" \
		    "haproxy_backend_http_responses_total{proxy=\"r$n\",code=\"4xx\"}" \
		    "haproxy_backend_http_responses_total{proxy=\"r$n\",code=\"5xx\"}" \
		    "haproxy_frontend_http_responses_total{proxy=\"gateway\",code=\"4xx\"}"
		;;
	esac
	sc_found=
	for m in "$@"; do
		v=$(awk -v m="$m" 'index($0, m " ") == 1 { print $2 }' \
		    "$wdir/$sc_sys.metrics")
		if [ -z "$v" ] || [ "$v" = 0 ]; then
			fail "$w" "$sc_sys: GET /metrics after the traffic has no $m (or 0)" \
			    "$wdir/$sc_sys.metrics"
			return 1
		fi
		sc_found="$sc_found${sc_found:+, }$m $v"
	done
	say "$sc_sys after the traffic: $sc_found" >>"$wdir/notes"
}

# print_scrape: the metrics-scrape results: per system, over the times of
# all rounds, median, p90, p99 (nearest rank) and max, with the body's
# size and series (the last round's), the per-round medians, the traffic.
print_scrape() {
	sw=$(name_width)
	printf "%-${sw}s %7s %9s %9s %9s %9s %9s %7s\n" system scrapes median \
	    p90 p99 max body series
	for s in $W_SYSTEMS; do
		cat "$wdir/out/$s".[0-9]*.ms 2>/dev/null | sort -g |
		    awk -v s="$s" -v sw="$sw" -v last="$(cat \
		    "$wdir/out/$s.$ROUNDS")" '
		    function pct(p,	k) {
			k = int((NR * p + 99) / 100)
			return v[k < 1 ? 1 : k]
		    }
		    { v[NR] = $1 }
		    END {
			if (!NR) exit
			split(last, f, " ")
			for (i in f) {
				k = f[i]; sub(/=.*/, "", k)
				x = f[i]; sub(/^[^=]*=/, "", x)
				t[k] = x
			}
			printf "%-*s %7d %7.3fms %7.3fms %7.3fms %7.3fms %7.0f KiB %7d\n",
			    sw, s, NR, pct(50), pct(90), pct(99), v[NR],
			    t["bytes"] / 1024, t["series"]
			print pct(50), pct(99) >"/dev/stderr"
		    }' 2>"$wdir/scrape.$s.median"
	done
	print_ratios median scrape
	for s in $W_SYSTEMS; do
		printf 'median per round (ms), %s:' "$s"
		for f in "$wdir/out/$s".[0-9]*; do
			case $f in *.ms | *.err) continue ;; esac
			tr ' ' '\n' <"$f" | sed -n 's/^median_ms=/ /p' | tr -d '\n'
		done
		say
	done
	for s in $W_SYSTEMS; do
		f=$wdir/out/$s.prof.perf
		[ -s "$f" ] || continue
		awk -F, -v s="$s" -v n="$((SCRAPES + 1))" '
		    $3 ~ /^task-clock/ { printf "CPU per scrape (perf stat task-clock, every process of %s, %d scrapes): %.3f ms\n", s, n, $1 / n }' "$f"
	done
	for s in $W_SYSTEMS; do
		say "traffic, $s: $(sed 's/^traffic //' "$wdir/scrape.$s.traffic")"
	done
	say "times: from the request's first byte to the body's last byte (python3 http.client, one keep-alive connection, ${SCRAPES} per round after one untimed); body: bytes of the last one; series: its lines that are not comments"
	cat "$wdir/notes"
}

# print_idle: the tls-idle-memory results, from $wdir/idle.SYSTEM.
print_idle() {
	sw=$(name_width)
	printf "%-${sw}s %6s %6s %10s %10s %9s %9s  %s\n" system held alive \
	    "RSS delta" "PSS delta" "RSS/conn" "PSS/conn" "TLS"
	for s in $W_SYSTEMS; do
		[ -s "$wdir/idle.$s" ] || continue
		awk -v s="$s" -v sw="$sw" '{
		    n = $5 > 0 ? $5 : 1
		    printf "%-*s %6d %6d %7d KiB %7d KiB %7.0f B %7.0f B  %s %s %s, %d failed, up in %.1f s\n",
			sw, s, $5, $6, $3 - $1, $4 - $2, ($3 - $1) * 1024 / n,
			($4 - $2) * 1024 / n, $9, $10, $11, $7, $8 }' \
		    "$wdir/idle.$s" | tee "$wdir/idle.$s.line"
	done
	set -- $W_SYSTEMS
	a=$1
	shift
	for b in "$@"; do
		[ -s "$wdir/idle.$a" ] && [ -s "$wdir/idle.$b" ] || continue
		awk -v a="$a" -v b="$b" '
		    NR == FNR { ar = ($3 - $1) / ($5 ? $5 : 1); ap = ($4 - $2) / ($5 ? $5 : 1); next }
		    { br = ($3 - $1) / ($5 ? $5 : 1); bp = ($4 - $2) / ($5 ? $5 : 1)
		      printf "ratio %s/%s: RSS per connection %.2fx, PSS per connection %.2fx\n",
			a, b, br ? ar / br : 0, bp ? ap / bp : 0 }' \
		    "$wdir/idle.$a" "$wdir/idle.$b"
	done
	say "delta: memory 1 s after the last of $IDLE_CONNS connections was up, minus at rest before, summed over master and workers (RSS: VmRSS, a shared page once per process; PSS: smaps_rollup, shared pages divided among the processes); per connection: delta / held; alive: still open after ${IDLE_HOLD}s"
	for s in $W_SYSTEMS; do
		[ -s "$wdir/idle.$s" ] || continue
		awk -v s="$s" -v n="$IDLE_CONNS" '$5 < n || $6 < $5 {
		    printf "WARNING: %s: %d of %d connections up, %d still open at the end\n", s, $5, n, $6 }' \
		    "$wdir/idle.$s"
	done
	cat "$wdir/notes"
}

# print_tls: the handshake workloads, per system: what tlsload's rounds
# negotiated, handshakes/s and the share resumed (medians over the
# rounds), and whether every handshake was what the mode asks (full: none
# resumed; resume: every offered session taken).
print_tls() {
	for s in $W_SYSTEMS; do
		cat "$wdir/out/$s".[0-9]* 2>/dev/null | awk -v s="$s" \
		    -v mode="$W_CLIENT" '/^tlsload / {
		    for (i = 2; i <= NF; i++) {
			k = $i; sub(/=.*/, "", k); v = $i; sub(/^[^=]*=/, "", v)
			t[k] = v
		    }
		    r++; hs += t["handshakes"]; res += t["resumed"]
		    off += t["offered"]; miss += t["missed"]
		    full += t["reused_in_full"]; hps[r] = t["hps"]
		    share[r] = t["resumed_share"]
		    if (tls == "") tls = t["proto"] " " t["cipher"] " " t["group"] " " t["cert"]
		    }
		    END {
			if (!r) exit
			n = asort_(hps); m = asort_(share)
			if (mode == "full")
				printf "%s: %s; handshakes/s (median) %.0f; resumed %d of %d handshakes (no session offered)\n",
				    s, tls, med(hps, r), res, hs
			else
				printf "%s: %s; handshakes/s (median) %.0f; resumed %d of %d handshakes (%.2f%%, median per round %.2f%%; the first of each connection slot is full), %d of %d offered sessions\n",
				    s, tls, med(hps, r), res, hs, hs ? 100 * res / hs : 0,
				    100 * med(share, r), off - miss, off
			if (mode == "full" && full)
				printf "WARNING: %s: %d handshakes resumed in full mode\n", s, full
			if (mode == "resume" && miss)
				printf "WARNING: %s: %d of %d offered sessions not resumed\n", s, miss, off
		    }
		    function asort_(a,	i, j, x) {
			for (i = 2; i <= r; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) {
				x = a[j]; a[j] = a[j - 1]; a[j - 1] = x
			}
			return r
		    }
		    function med(a, n) { return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }'
	done
}

# tls_drop_keygated: a TLS workload goes on without keygated, which did not
# start or did not answer over TLS: a note says so, the table has no
# keygated column and no ratios.
tls_drop_keygated() {
	{
		say "NOTE: keygated: did not answer over TLS ($KEYGATED takes \"listen ... tls\" but https://127.0.0.1:$port_keygated/ got no TLS answer in 10 s, three tries); its column is missing, no ratios:"
		tail -n 3 "$wdir/keygated.start.log" | sed 's/^/    /'
	} >>"$wdir/notes"
	W_SYSTEMS=$(for t in $W_SYSTEMS; do say "$t"; done |
	    grep -vx keygated | tr '\n' ' ' | sed 's/ $//' || true)
	say "$W_SYSTEMS" >"$wdir/systems"
}

# --------------------------------------------------------- cluster-limits
#
# Each system of cluster-limits is two keygated nodes, SYSTEM_a and
# SYSTEM_b, started from the same keys.snapshot, each in $wdir/NODE with a
# state_dir, port ($port_NODE) and admin port ($admin_NODE) of its own;
# keygated's and keygated_sync's pairs share the run's redis-server, each
# pair under its own cluster_name (keygated_conf).

# climit_nodes SYSTEM...: the nodes of each system, in order.
climit_nodes() {
	for cn_s in "$@"; do printf '%s_a %s_b ' "$cn_s" "$cn_s"; done
}

start_keygated_a() { start_keygated "$1" keygated_a; }
start_keygated_b() { start_keygated "$1" keygated_b; }
start_keygated_local_a() { start_keygated "$1" keygated_local_a; }
start_keygated_local_b() { start_keygated "$1" keygated_local_b; }
start_keygated_sync_a() { start_keygated "$1" keygated_sync_a; }
start_keygated_sync_b() { start_keygated "$1" keygated_sync_b; }

# climit_admin NODE PATH: GET PATH from NODE's admin API (the run's admin
# token, read from a file: it stays off the command line).
climit_admin() {
	eval "ca_port=\$admin_$1"
	curl -s --max-time 5 -H "@$keysdir/admin.hdr" \
	    "http://127.0.0.1:$ca_port$2" || true
}

# climit_limits NODE: the "limits" object of NODE's GET /v1/cluster.
climit_limits() {
	climit_admin "$1" /v1/cluster | tr -d ' \n' |
	    sed -n 's/.*"limits":{\([^}]*\)}.*/\1/p'
}

# climit_joined NODE: wait until NODE has joined its cluster (the first
# node of a pair seeds the namespace with the run's keys, the second checks
# its own against them), 60 s at most.
climit_joined() {
	cj_end=$(($(now_ms) + 60000))
	until climit_admin "$1" /v1/cluster | tr -d ' \n' |
	    grep -q '"state":"joined"'; do
		[ "$(now_ms)" -lt "$cj_end" ] || return 1
		alive "$(system_pid "$1")" || return 1
		sleep 0.1
	done
}

# proc_ticks PID: utime + stime of PID, in clock ticks (0 if it is gone).
# The fields are counted from the end of the command name, which may hold
# spaces.
proc_ticks() {
	awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" \
	    2>/dev/null || say 0
}

# climit_snap SYSTEM: one line of counters now: "MS REDIS_TICKS
# NODES_TICKS LEASE_CALLS LEASE WAITED FULL LOCAL DENY TIMEOUT": the
# redis-server's CPU, every process of both nodes', and the lease calls
# (GET /v1/cluster, limits.lease_calls) and cluster limit decisions by how
# (/metrics keygate_cluster_limit_decisions_total) of both nodes (0 for
# nodes without a cluster).
climit_snap() {
	cs_nodes=$(climit_nodes "$1")
	cs_calls=0
	cs_dec="0 0 0 0 0 0"
	for n in $cs_nodes; do
		c=$(climit_limits "$n" |
		    sed -n 's/.*"lease_calls":\([0-9][0-9]*\).*/\1/p')
		cs_calls=$((cs_calls + ${c:-0}))
		cs_dec=$(climit_admin "$n" /metrics | awk -v prev="$cs_dec" '
		    BEGIN {
			split(prev, v, " ")
			split("lease waited full fallback_local fallback_deny timeout", k, " ")
			for (i = 1; i <= 6; i++) idx[k[i]] = i
			idx["standing"] = 1	# decided here too, without a wait
		    }
		    /^keygate_cluster_limit_decisions_total\{how="/ {
			h = $1; sub(/^[^"]*"/, "", h); sub(/".*/, "", h)
			if (h in idx) v[idx[h]] += $2
		    }
		    END { printf "%d %d %d %d %d %d", v[1], v[2], v[3], v[4], v[5], v[6] }')
	done
	cs_ms=$(now_ms)
	cs_r=$(proc_ticks "$(system_pid redis)")
	cs_n=0
	for n in $cs_nodes; do
		for p in $(tree "$(system_pid "$n")"); do
			cs_n=$((cs_n + $(proc_ticks "$p")))
		done
	done
	say "$cs_ms $cs_r $cs_n $cs_calls $cs_dec"
}

# climit_wrk OUT SECONDS SYSTEM: two wrk at once, one per node of SYSTEM,
# each with half of $CONNS connections and keys.lua over the hot keys;
# their outputs in OUT.a and OUT.b.  Non-zero if either failed.
climit_wrk() {
	cw_c=$((CONNS / 2))
	[ "$cw_c" -ge 1 ] || cw_c=1
	eval "cw_pa=\$port_${3}_a; cw_pb=\$port_${3}_b"
	env KEYS_FILE="$wdir/hot.secrets" KEYS_HEADER=X-API-KEY \
	    wrk -s "$here/keys.lua" -t"$THREADS" -c"$cw_c" -d"${2}s" \
	    --latency "http://127.0.0.1:$cw_pa$W_PATH" >"$1.a" 2>&1 &
	wrk_pid=$!
	env KEYS_FILE="$wdir/hot.secrets" KEYS_HEADER=X-API-KEY \
	    wrk -s "$here/keys.lua" -t"$THREADS" -c"$cw_c" -d"${2}s" \
	    --latency "http://127.0.0.1:$cw_pb$W_PATH" >"$1.b" 2>&1 &
	wrk2_pid=$!
	cw_rc=0
	wait "$wrk_pid" || cw_rc=$?
	wait "$wrk2_pid" || cw_rc=$?
	wrk_pid=
	wrk2_pid=
	return $cw_rc
}
wrk2_pid=

# climit_result OUT: one result line from a round's two wrk outputs and
# the counters before and after (OUT.snap0, OUT.snap1): "REQ/S 2XX/S P50
# P99 NON2XX SOCKET_ERRORS REQUESTS SECONDS REDIS_TICKS NODES_TICKS CALLS
# LEASE WAITED FULL LOCAL DENY TIMEOUT": req/s and 2xx/s summed over the
# two wrk, p50 and p99 (us) the higher of the two, the counters' deltas.
climit_result() {
	{
		parse_wrk "$1.a"
		parse_wrk "$1.b"
		cat "$1.snap0" "$1.snap1"
	} | awk '
	    NR <= 2 {
		rps += $1; ok += $6 ? $1 * ($6 - $4) / $6 : 0
		if ($2 > p50) p50 = $2
		if ($3 > p99) p99 = $3
		bad += $4; err += $5; req += $6
		next
	    }
	    NR == 3 { for (i = 1; i <= NF; i++) a[i] = $i; next }
	    NR == 4 {
		printf "%.1f %.1f %d %d %d %d %d %.3f", rps, ok, p50, p99, bad,
		    err, req, ($1 - a[1]) / 1000
		for (i = 2; i <= NF; i++) printf " %d", $i - a[i]
		printf "\n"
	    }'
}

# climit_check: before the rounds, each node must answer the first key's
# request with 200, the owner as the upstream saw it and a
# RateLimit-Policy header (its limits on), and refuse no key and an
# unknown key (check_keys); the nodes of keygated and keygated_sync must be
# in lease mode with 2 nodes seen (GET /v1/cluster, limits), and
# keygated_local's must have no cluster.  (The environment cannot be read
# back: keygated's process titles overwrite /proc/PID/environ;
# climit_check_sync looks at what the leases did instead.)
climit_check() {
	for n in $(climit_nodes $W_SYSTEMS); do
		url=$(workload_url "$w" "$n")
		resp=$(curl_key -s -i --max-time 5 "$url" || true)
		say "$resp" >"$wdir/$n.check"
		case $resp in
		"HTTP/1.1 200"*'{"ok":true}'*) ;;
		*)
			fail "$w" "$n: GET $url answered \"$(say "$resp" |
			    head -n 1 | tr -d '\r')\", not 200 {\"ok\":true}" \
			    "$wdir/$n.check"
			return 1
			;;
		esac
		if ! grep -qi '^ratelimit-policy:' "$wdir/$n.check"; then
			fail "$w" "$n: no RateLimit-Policy: its limits are off" \
			    "$wdir/$n.check"
			return 1
		fi
		case $n in
		keygated_local_*)
			if ! climit_admin "$n" /v1/cluster | tr -d ' \n' |
			    grep -q '"enabled":false'; then
				fail "$w" "$n: GET /v1/cluster does not say enabled:false"
				return 1
			fi
			continue
			;;
		esac
		# The nodes see each other after a heartbeat (1 s).
		cc_end=$(($(now_ms) + 10000))
		until climit_limits "$n" >"$wdir/$n.limits" &&
		    grep -q '"mode":"lease"' "$wdir/$n.limits" &&
		    grep -Eq '"nodes":2(,|$)' "$wdir/$n.limits"; do
			if [ "$(now_ms)" -ge "$cc_end" ]; then
				fail "$w" "$n: GET /v1/cluster limits not in lease mode with 2 nodes after 10 s: $(cat "$wdir/$n.limits")"
				return 1
			fi
			sleep 0.2
		done
	done
	check_keys $(climit_nodes $W_SYSTEMS) || return 1
	say "keygated and keygated_sync: each node in lease mode and seeing 2 nodes (/v1/cluster limits); keygated_local's without a cluster (/v1/cluster enabled:false); every node answers with RateLimit-Policy" \
	    >>"$wdir/notes"
}

# climit_check_sync: after the checks and the warm-up, the units each
# cluster node was granted per lease call so far (/v1/cluster limits):
# KEYGATE_BENCH_LEASE_SYNC=1 grants one unit per call at most, so a
# keygated_sync node granted more did not get the environment, and the
# workload is given up.  keygated's nodes are granted more when their
# subjects are hot (a few keys); with many keys, each used now and then,
# their leases are as small, which the notes say.
climit_check_sync() {
	ccs_line=
	ccs_small=
	for n in $(climit_nodes keygated keygated_sync); do
		ccs=$(climit_limits "$n" | awk -F'[:,]' '{
		    for (i = 1; i < NF; i++) {
			if ($i == "\"lease_calls\"") c = $(i + 1)
			if ($i == "\"units_granted\"") g = $(i + 1)
		    }
		    printf "%d %d", c, g }')
		ccs_calls=${ccs% *}
		ccs_units=${ccs#* }
		ccs_line="$ccs_line${ccs_line:+, }$n $ccs_units/$ccs_calls"
		case $n in
		keygated_sync_*)
			[ "$ccs_units" -le "$ccs_calls" ] && continue
			fail "$w" "$n: $ccs_units units granted in $ccs_calls lease calls by the end of the warm-up, more than one per call: it does not run with KEYGATE_BENCH_LEASE_SYNC=1"
			return 1
			;;
		*)
			[ "$ccs_units" -le "$ccs_calls" ] &&
			    ccs_small="$ccs_small${ccs_small:+, }$n"
			;;
		esac
	done
	say "units granted/lease calls by the end of the warm-up: $ccs_line (keygated_sync's one unit per call at most: KEYGATE_BENCH_LEASE_SYNC=1)" \
	    >>"$wdir/notes"
	[ -z "$ccs_small" ] ||
	    say "NOTE: $ccs_small: one unit per lease call at most, as keygated_sync's: its leases are no larger than the stand-in's with this load" \
	    >>"$wdir/notes"
	return 0
}

# run_climit: cluster-limits: the redis-server, the upstream and the six
# nodes (each cluster node joined before the next starts: the first of a
# pair seeds the namespace), the checks, $WARMUP s of load per system,
# then $ROUNDS rounds in which each system in turn gets $ROUND_WARMUP s of
# untimed load, then two wrk at once, one per node, with the counters read
# before and after (climit_snap);
# results in $wdir/res.SYSTEM (climit_result lines).
run_climit() {
	if [ "$HOT_KEYS" -gt "$KEYS" ]; then
		fail "$w" "HOT_KEYS ($HOT_KEYS) is more than KEYS ($KEYS)"
		return 0
	fi
	(umask 077; head -n "$HOT_KEYS" "$keysdir/secrets.txt" \
	    >"$wdir/hot.secrets")
	for s in redis upstream $(climit_nodes $W_SYSTEMS); do
		if ! start_system "$s"; then
			fail "$w" "skipped: $s would not start" \
			    "$wdir/$s.start.log"
			return 0
		fi
		case $s in
		redis | upstream | keygated_local_*) continue ;;
		esac
		if ! climit_joined "$s"; then
			fail "$w" "$s did not join its cluster in 60 s" \
			    "$wdir/$s/stderr.log"
			return 0
		fi
	done
	climit_check || return 0
	for s in $wsystems; do
		log_lines "$s" >"$wdir/$s.loglines"
	done
	if [ "$WARMUP" -gt 0 ]; then
		for s in $W_SYSTEMS; do
			climit_wrk "$wdir/out/$s.warmup" "$WARMUP" "$s" || {
				fail "$w" "wrk failed (warm-up, $s)" \
				    "$wdir/out/$s.warmup.a"
				return 0
			}
		done
	fi
	climit_check_sync || return 0
	for s in $W_SYSTEMS; do : >"$wdir/res.$s"; done
	r=0
	while [ $r -lt "$ROUNDS" ]; do
		r=$((r + 1))
		for s in $W_SYSTEMS; do
			out=$wdir/out/$s.$r
			# Back from $((2 * DURATION)) s of rest, in which its
			# leases were handed back: warm again, untimed.
			if [ "$ROUND_WARMUP" -gt 0 ] &&
			    ! climit_wrk "$out.pre" "$ROUND_WARMUP" "$s"; then
				fail "$w" "wrk failed (round $r warm-up, $s)" \
				    "$out.pre.a"
				return 0
			fi
			climit_snap "$s" >"$out.snap0"
			if ! climit_wrk "$out" "$DURATION" "$s"; then
				fail "$w" "wrk failed (round $r, $s)" "$out.a"
				return 0
			fi
			climit_snap "$s" >"$out.snap1"
			climit_result "$out" >>"$wdir/res.$s"
			warn "$w round $r/$ROUNDS $s: $(tail -n 1 "$wdir/res.$s" |
			    awk -v hz="$clk_tck" '{
				printf "%.0f req/s, %.0f 2xx/s, p99 %.3fms, Redis %.1f%% of a core, %.1f lease calls/1k req",
				    $1, $2, $4 / 1000, $8 ? 100 * $9 / hz / $8 : 0,
				    $7 ? 1000 * $11 / $7 : 0
				if ($5 || $6) printf ", %d non-2xx, %d socket errors", $5, $6 }')"
			if system_died "$w" "$r" $wsystems; then
				return 0
			fi
		done
	done
	for s in $wsystems; do
		case $s in redis | upstream) continue ;; esac
		note_new_log_lines "$s" "the warm-up and rounds"
	done
}

# print_climit: the cluster-limits results, from $wdir/res.SYSTEM: medians
# over the rounds, the ratios, each round's figures.
print_climit() {
	sw=$(name_width)
	printf "%-${sw}s %8s %8s %9s %9s  %s\n" system req/s 2xx/s p50 p99 \
	    "non-2xx (all rounds)"
	for s in $W_SYSTEMS; do
		f=$wdir/res.$s
		[ -s "$f" ] || continue
		rps=$(field "$f" 1 | median)
		ok=$(field "$f" 2 | median)
		p50=$(field "$f" 3 | median)
		p99=$(field "$f" 4 | median)
		say "$rps $p99 $ok" >"$f.median"
		awk -v s="$s" -v sw="$sw" -v rps="$rps" -v ok="$ok" -v p50="$p50" \
		    -v p99="$p99" '{ bad += $5; err += $6; req += $7 }
		    END { printf "%-*s %8.0f %8.0f %7.3fms %7.3fms  %d of %d%s\n",
			sw, s, rps, ok, p50 / 1000, p99 / 1000, bad, req,
			err ? sprintf(", %d socket errors", err) : "" }' "$f"
	done
	set -- $W_SYSTEMS
	a=$1
	shift
	for b in "$@"; do
		[ -s "$wdir/res.$a.median" ] && [ -s "$wdir/res.$b.median" ] ||
		    continue
		tgt=
		case $b in
		keygated_local) tgt=" (target >= 0.95x)" ;;
		keygated_sync) tgt=" (target >= 2x)" ;;
		esac
		awk -v a="$a" -v b="$b" -v tgt="$tgt" '
		    NR == FNR { ar = $1; ap = $2; ao = $3; next }
		    { printf "ratio %s/%s: req/s %.2fx%s, 2xx/s %.2fx, p99 %.2fx\n",
			a, b, $1 ? ar / $1 : 0, tgt, $3 ? ao / $3 : 0,
			$2 ? ap / $2 : 0 }' \
		    "$wdir/res.$a.median" "$wdir/res.$b.median"
		# Each round's pair ran back to back: their ratio shares most
		# of the round's noise.
		paste -d' ' "$wdir/res.$a" "$wdir/res.$b" | awk -v a="$a" -v b="$b" '
		    { n = NF / 2; r[NR] = $(n + 1) ? $1 / $(n + 1) : 0
		      line = line sprintf(" %.3f", r[NR]) }
		    END {
			for (i = 2; i <= NR; i++)
				for (j = i; j > 1 && r[j - 1] > r[j]; j--) {
					x = r[j]; r[j] = r[j - 1]; r[j - 1] = x
				}
			m = NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
			printf "ratio %s/%s per round, req/s:%s (median %.3f)\n", a, b, line, m
		    }'
	done
	say
	say "cost (medians over the rounds; per 1k req: per 1,000 requests wrk completed, both nodes):"
	printf "%-${sw}s %11s %13s %13s %13s %9s\n" system "Redis CPU" \
	    "Redis CPU" "nodes' CPU" "lease calls" "no wait"
	printf "%-${sw}s %11s %13s %13s %13s %9s\n" "" "% of a core" \
	    "ms/1k req" "ms/1k req" "per 1k req" "share"
	for s in $W_SYSTEMS; do
		f=$wdir/res.$s
		[ -s "$f" ] || continue
		core=$(awk -v hz="$clk_tck" '{ print $8 ? 100 * $9 / hz / $8 : 0 }' "$f" | median)
		rms=$(awk -v hz="$clk_tck" '{ print $7 ? 1e6 * $9 / hz / $7 : 0 }' "$f" | median)
		nms=$(awk -v hz="$clk_tck" '{ print $7 ? 1e6 * $10 / hz / $7 : 0 }' "$f" | median)
		calls=$(awk '{ print $7 ? 1000 * $11 / $7 : 0 }' "$f" | median)
		awk -v s="$s" -v sw="$sw" -v core="$core" -v rms="$rms" \
		    -v nms="$nms" -v calls="$calls" '
		    { for (i = 12; i <= 17; i++) d += $i; l += $12 }
		    END { printf "%-*s %10.1f%% %13.2f %13.1f %13s %9s\n", sw, s,
			core, rms, nms, d ? sprintf("%.2f", calls) : "-",
			d ? sprintf("%.2f%%", 100 * l / d) : "-" }' "$f"
	done
	say "Redis CPU: utime+stime of the redis-server (/proc/PID/stat) over the round, which also serves the idle pairs' heartbeats (keygated_local's figure: that background); nodes' CPU: every process of both nodes (masters and workers); lease calls: limits.lease_calls of both nodes' GET /v1/cluster; no wait: decisions how=\"lease\" / all decisions (both nodes' /metrics keygate_cluster_limit_decisions_total) over all the rounds"
	for s in $W_SYSTEMS; do
		f=$wdir/res.$s
		[ -s "$f" ] || continue
		awk -v s="$s" '{ for (i = 12; i <= 17; i++) d[i] += $i }
		    END { t = 0; for (i = 12; i <= 17; i++) t += d[i]
			if (t) printf "decisions, %s (all rounds, both nodes): lease or standing allowance %d, waited %d, full %d, fallback_local %d, fallback_deny %d, timeout (503) %d\n",
			    s, d[12], d[13], d[14], d[15], d[16], d[17] }' "$f"
	done
	for s in $W_SYSTEMS; do
		f=$wdir/res.$s
		[ -s "$f" ] || continue
		printf 'per round, %s: req/s' "$s"
		awk '{ printf " %.0f", $1 }' "$f"
		printf '; 2xx/s'
		awk '{ printf " %.0f", $2 }' "$f"
		printf '; Redis %% of a core'
		awk -v hz="$clk_tck" '{ printf " %.1f", $8 ? 100 * $9 / hz / $8 : 0 }' "$f"
		printf '; lease calls/1k req'
		awk '{ printf " %.1f", $7 ? 1000 * $11 / $7 : 0 }' "$f"
		say
		awk -v s="$s" '$5 || $6 { printf "WARNING: %s round %d: %d non-2xx responses, %d socket errors\n", s, NR, $5, $6 }' "$f"
	done
	say "limits: rate_limit $CLUSTER_LIMITS in every node; wrk: the first $HOT_KEYS of the run's keys, a random one per request, $((CONNS / 2 > 0 ? CONNS / 2 : 1)) connections to each node, ${ROUND_WARMUP}s untimed right before each round; req/s and 2xx/s: the two wrk summed; p50, p99: the higher of the two"
	cat "$wdir/notes"
}
clk_tck=$(getconf CLK_TCK 2>/dev/null || say 100)

# run_workload NAME: start the workload's systems, check them, warm them
# up, run the rounds, record peak RSS, profile (PROFILE=1), stop them.
# Results in $tmp/NAME; $tmp/NAME/failed says why there are none.
run_workload() {
	w=$1
	workload_info "$w"
	wdir=$tmp/$w
	mkdir -p "$wdir/out"
	: >"$wdir/notes"
	if ! check_keygated "$w"; then
		peers=$(for s in $W_SYSTEMS; do say "$s"; done |
		    grep -v '^keygated' | tr '\n' ' ' | sed 's/ $//' || true)
		# A binary without TLS: the peers' figures all the same.
		no_tls=0
		[ "$W_TLS" = 1 ] && [ "$keygated_tls" = 0 ] && no_tls=1
		if { [ "$PEERS" != 1 ] && [ "$no_tls" = 0 ]; } ||
		    [ -z "$peers" ]; then
			fail "$w" "skipped: keygated -t rejects its config ($KEYGATED):" \
			    "$wdir/keygated/check.log"
			return 0
		fi
		{
			if [ "$no_tls" = 1 ]; then
				say "NOTE: keygated: TLS not supported by this binary ($KEYGATED: keygated -t rejects \"listen ... tls\"); its column is missing, no ratios:"
			else
				say "NOTE: keygated skipped (PEERS=1): keygated -t rejects its config:"
			fi
			tail -n 3 "$wdir/keygated/check.log" | sed 's/^/    /'
		} >>"$wdir/notes"
		W_SYSTEMS=$peers
		say "$W_SYSTEMS" >"$wdir/systems"
	fi
	if [ "$W_CLIMIT" = 1 ]; then
		run_climit
		stop_systems
		return 0
	fi
	systems=$W_SYSTEMS
	[ "$W_REFRESH" = 1 ] && systems="jwks $systems"
	[ "$W_SERVERS" = 2 ] && systems="upstream2 $systems"
	[ "$W_UPSTREAM" = 1 ] && systems="upstream $systems"
	[ "$W_REDIS" = 1 ] && systems="redis $systems"
	for s in $systems; do
		if [ "$W_KEYS" = 1 ] && [ "$W_CREATE" = 0 ] &&
		    [ "$W_ACCURACY" = 0 ] && [ -z "$W_JWT" ] &&
		    [ "$s" != upstream ] && [ "$s" != redis ] &&
		    ! mem_empty "$s"; then
			fail "$w" "skipped: $s would not start without keys" \
			    "$(ls -t "$wdir"/empty.*/"$s".start.log | head -n 1)"
			stop_systems
			return 0
		fi
		if ! start_system "$s"; then
			# A keygated that takes "listen ... tls" but does not
			# answer over TLS (TLS half done): the peers still run.
			if [ "$W_TLS" = 1 ] && [ "$s" = keygated ]; then
				tls_drop_keygated
				continue
			fi
			fail "$w" "skipped: $s would not start" \
			    "$wdir/$s.start.log"
			stop_systems
			return 0
		fi
		if [ "$W_KEYS" = 1 ] && [ "$W_ACCURACY" = 0 ] &&
		    [ -z "$W_JWT" ] && [ "$s" != upstream ] &&
		    [ "$s" != redis ]; then
			sleep 1
			say "$(mem_now "$(system_pid "$s")") $(cat \
			    "$wdir/$s.startms")" >"$wdir/$s.mem1"
		fi
	done
	if ! check_workload; then
		stop_systems
		return 0
	fi
	if [ "$W_CREATE" = 1 ]; then
		run_create
		stop_systems
		return 0
	fi
	if [ "$W_ACCURACY" = 1 ]; then
		run_accuracy
		stop_systems
		return 0
	fi
	if [ "$W_IDLE" = 1 ]; then
		run_idle
		stop_systems
		return 0
	fi
	if [ "$W_SCRAPE" = 1 ]; then
		run_scrape
		stop_systems
		return 0
	fi
	for s in $wsystems; do
		children "$(system_pid "$s")" | sort >"$wdir/$s.kids"
		log_lines "$s" >"$wdir/$s.loglines"
	done
	if [ "$WARMUP" -gt 0 ]; then
		for s in $W_SYSTEMS; do
			run_wrk "$wdir/out/$s.warmup" "$WARMUP" \
			    "$(workload_url "$w" "$s")" "$s" || {
				fail "$w" "wrk failed (warm-up, $s)" \
				    "$wdir/out/$s.warmup"
				stop_systems
				return 0
			}
		done
	fi
	for s in $W_SYSTEMS; do : >"$wdir/res.$s"; done
	r=0
	while [ $r -lt "$ROUNDS" ]; do
		r=$((r + 1))
		for s in $W_SYSTEMS; do
			out=$wdir/out/$s.$r
			if [ "$W_REFRESH" = 1 ] && ! refresh_restart "$s" "$r"; then
				stop_systems
				return 0
			fi
			refresher_pid=
			if [ "$W_REFRESH" = 1 ]; then
				refresher "$s" "$r" &
				refresher_pid=$!
			fi
			[ "$W_SERVERS" = 2 ] && [ "$upstream_stub" = 1 ] &&
			    pool_counts >"$out.pool0"
			conn_split "$s" >"$out.split" &
			split_pid=$!
			if ! run_wrk "$out" "$DURATION" \
			    "$(workload_url "$w" "$s")" "$s"; then
				fail "$w" "wrk failed (round $r, $s)" "$out"
				stop_systems
				return 0
			fi
			if [ -n "$refresher_pid" ]; then
				wait "$refresher_pid" || true
				refresher_pid=
			fi
			wait "$split_pid" || true
			# proxy-pool: the requests each upstream server got
			# in the round (those still in flight as wrk stopped
			# finish first: a few ms).
			if [ "$W_SERVERS" = 2 ] && [ "$upstream_stub" = 1 ]; then
				sleep 0.2
				pool_delta "$(cat "$out.pool0")" \
				    "$(pool_counts)" >"$out.pool"
			fi
			parse_wrk "$out" >>"$wdir/res.$s"
			[ "$W_REFRESH" = 1 ] && say "$(wc -l <"$wdir/jwks/fetches")" \
			    >"$wdir/out/$s.$r.fetches1"
			warn "$w round $r/$ROUNDS $s: $(tail -n 1 \
			    "$wdir/res.$s" | awk '{ printf "%.0f req/s, p99 %.3fms", $1, $3 / 1000;
			    if ($4 || $5) printf ", %d non-2xx, %d socket errors", $4, $5 }')$(
			    [ -s "$out.split" ] && printf ', connections per worker %s' "$(cat "$out.split")")"
			if system_died "$w" "$r" $wsystems; then
				stop_systems
				return 0
			fi
		done
	done
	: >"$wdir/rss"
	for s in $wsystems; do
		p=$(system_pid "$s")
		say "$s $(peak_rss "$p")" >>"$wdir/rss"
		say "$(mem_now "$p")" >"$wdir/$s.mem2"
		children "$p" | sort >"$wdir/$s.kids.after"
		cmp -s "$wdir/$s.kids" "$wdir/$s.kids.after" ||
		    say "WARNING: $s: worker processes changed during the rounds (died and respawned?): before $(tr '\n' ' ' <"$wdir/$s.kids")/ after $(tr '\n' ' ' <"$wdir/$s.kids.after")" >>"$wdir/notes"
		note_new_log_lines "$s" "the rounds"
	done
	if [ "$PROFILE" = 1 ] && [ "$W_CREATE" = 0 ]; then
		for s in $W_SYSTEMS; do
			profile_system "$s" "$w" || warn "profile of $s failed"
		done
	fi
	stop_systems
}

# refresh_restart SYSTEM ROUND: jwks-refresh, before SYSTEM's round: serve
# the base JWKS again, stop SYSTEM, start it again on an empty state_dir
# (no JWKS kept from the round before, and a new shared segment: no early
# re-fetch done yet), and warm it up for $WARMUP s (the upstream pool, the
# token cache).  Non-zero, with the workload failed, if it does not come
# back.
refresh_restart() {
	refresh_reset
	p=$(system_pid "$1")
	stop_pid "$p"
	started=$(say "$started" | tr ' ' '\n' | grep -vx "$p" | tr '\n' ' ' ||
	    true)
	wsystems=$(for t in $wsystems; do [ "$t" = "$1" ] || say "$t"; done |
	    tr '\n' ' ')
	rm -rf "$wdir/$1/state"
	if ! start_system "$1"; then
		fail "$w" "$1 did not start again before round $2" \
		    "$wdir/$1.start.log"
		return 1
	fi
	if ! refresh_wait "$1"; then
		fail "$w" "$1: not every provider had its keys 20 s after its" \
		    "start (round $2)" "$wdir/$1.start.log"
		return 1
	fi
	say "$(wc -l <"$wdir/jwks/fetches")" >"$wdir/out/$1.$2.fetches0"
	children "$(system_pid "$1")" | sort >"$wdir/$1.kids"
	log_lines "$1" >"$wdir/$1.loglines"
	[ "$WARMUP" -gt 0 ] || return 0
	run_wrk "$wdir/out/$1.$2.warmup" "$WARMUP" "$(workload_url "$w" "$1")" \
	    "$1" || true
}

# refresher SYSTEM ROUND: jwks-refresh, during SYSTEM's round: at each of
# the first whole seconds T of the clock after its start (at most
# $REFRESH_PROVIDERS of them, and not in the round's last second), serve
# provider pI's next JWKS (a new key), I = (T mod $REFRESH_PROVIDERS) + 1,
# and send one request with a token of pI signed by that key: its kid is
# unknown to keygated, which re-fetches pI's JWKS, publishes the new set (a
# new generation: the workers drop pI's verified tokens) and answers it.
# In that second wrk sends pI's token on every request (keys.lua
# KEYS_ORDER=clock takes line (T mod LINES) + 1 of refresh.pool, pI's), so
# all the load of a second depends on the provider re-fetched in it, and
# no provider is re-fetched twice in a round.  Writes "PROVIDER STATUS LATE
# MS" per request to $wdir/out/SYSTEM.ROUND.refresh (LATE: ms from T to the
# request; MS: its time, the re-fetch included).
# For keygated_calm it does the same work (the same processes, a file
# copied, one request a second), but serves pI's JWKS unchanged and sends
# a token of its known key: nothing is re-fetched, so that the only
# difference between the two systems is the re-fetch itself.
refresher() {
	f_url=$(workload_url "$w" "$1")
	f_out=$wdir/out/$1.$2.refresh
	: >"$f_out"
	f_n=$((DURATION - 1))
	[ "$f_n" -gt "$REFRESH_PROVIDERS" ] && f_n=$REFRESH_PROVIDERS
	f_s0=$(($(now_ms) / 1000))
	i=0
	while [ $i -lt "$f_n" ]; do
		i=$((i + 1))
		f_at=$(((f_s0 + i) * 1000))
		f_wait=$((f_at - $(now_ms)))
		[ "$f_wait" -gt 0 ] && sleep "$(awk -v m="$f_wait" \
		    'BEGIN { printf "%.3f", m / 1000 }')"
		f_i=$(((f_s0 + i) % REFRESH_PROVIDERS + 1))
		f_p=p$f_i
		if [ "$1" = keygated ]; then
			refresh_serve "$f_p" next
			f_hdr=$jwtdir/refresh/$f_p.hdr
		else
			refresh_serve "$f_p" base
			f_hdr=$wdir/out/calm.hdr
			sed -n "${f_i}s/^/Authorization: /p" \
			    "$jwtdir/refresh.pool" >"$f_hdr"
		fi
		f_t1=$(now_ms)
		f_code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
		    -H "@$f_hdr" "$f_url" || true)
		say "$f_p ${f_code:-000} $((f_t1 - f_at)) $(($(now_ms) - f_t1))" \
		    >>"$f_out"
	done
}
refresher_pid=

# print_refresh: jwks-refresh, what the refresher did in keygated's rounds
# and what the JWKS server saw in each system's rounds.
print_refresh() {
	for s in $W_SYSTEMS; do
		r=0
		while [ $r -lt "$ROUNDS" ]; do
			r=$((r + 1))
			f0=$(cat "$wdir/out/$s.$r.fetches0" 2>/dev/null || say 0)
			f1=$(cat "$wdir/out/$s.$r.fetches1" 2>/dev/null || say 0)
			f=$wdir/out/$s.$r.refresh
			if [ -f "$f" ] && [ "$s" = keygated_calm ]; then
				say "$s round $r: $(wc -l <"$f" | tr -d ' ') requests with a known kid (no re-fetch), in median $(field "$f" 4 | median) ms; JWKS fetches the server saw during the round: $((f1 - f0))"
			elif [ -f "$f" ]; then
				say "$s round $r: $(wc -l <"$f" | tr -d ' ') forced re-fetches, $(awk '$2 == 200' "$f" | wc -l | tr -d ' ') answered 200, in (re-fetch included) median $(field "$f" 4 | median) ms, max $(field "$f" 4 | sort -n | tail -n 1) ms, sent at most $(field "$f" 3 | sort -n | tail -n 1) ms into their second; JWKS fetches the server saw during the round: $((f1 - f0))"
			else
				say "$s round $r: no forced re-fetch; JWKS fetches seen by the server during the round: $((f1 - f0))"
			fi
		done
	done
}

# name_width: the width of the system column: 10, or the longest name of
# W_SYSTEMS (keygated_off).
name_width() {
	for s in $W_SYSTEMS; do say "$s"; done |
	    awk '{ if (length($0) > m) m = length($0) }
		END { print (m > 10 ? m : 10) }'
}

# print_table NAME: the results of one workload.
print_table() {
	w=$1
	workload_info "$w"
	wdir=$tmp/$w
	[ -s "$wdir/systems" ] && W_SYSTEMS=$(cat "$wdir/systems")
	if [ "$W_CREATE" = 1 ]; then
		say "workload: $w ($W_DESC)"
	elif [ "$W_SCRAPE" = 1 ]; then
		say "workload: $w ($W_DESC), $ROUNDS rounds"
	elif [ "$W_IDLE" = 1 ]; then
		say "workload: $w ($W_DESC), 1 run per system, held ${IDLE_HOLD}s"
	elif [ "$W_CLIMIT" = 1 ]; then
		say "workload: $w ($W_DESC), 2 x wrk -t$THREADS -c$((CONNS / 2 > 0 ? CONNS / 2 : 1)) at once (one per node), $ROUNDS x ${DURATION}s"
	elif [ "$W_CLIENT" != wrk ]; then
		say "workload: $w ($W_DESC), tlsload -m $W_CLIENT -c$CONNS, $ROUNDS x ${DURATION}s"
	elif [ "$W_ACCURACY" = 1 ]; then
		say "workload: $w ($W_DESC), wrk -t$THREADS -c$ACCURACY_CONNS, 1 x ${DURATION}s per system"
	else
		say "workload: $w ($W_DESC), wrk -t$THREADS -c$CONNS, $ROUNDS x ${DURATION}s"
	fi
	if [ -f "$wdir/failed" ]; then
		cat "$wdir/failed"
		return 0
	fi
	if [ "$W_CREATE" = 1 ]; then
		print_create
		return 0
	fi
	if [ "$W_ACCURACY" = 1 ]; then
		print_accuracy
		return 0
	fi
	if [ "$W_IDLE" = 1 ]; then
		print_idle
		return 0
	fi
	if [ "$W_SCRAPE" = 1 ]; then
		print_scrape
		return 0
	fi
	if [ "$W_CLIMIT" = 1 ]; then
		print_climit
		return 0
	fi
	sw=$(name_width)
	printf "%-${sw}s %8s %9s %9s %10s\n" system req/s p50 p99 "peak RSS"
	for s in $W_SYSTEMS; do
		f=$wdir/res.$s
		rps=$(field "$f" 1 | median)
		p50=$(field "$f" 2 | median)
		p99=$(field "$f" 3 | median)
		rss=$(awk -v s="$s" '$1 == s { print $2 }' "$wdir/rss")
		say "$rps $p99" >"$f.median"
		printf "%-${sw}s %8.0f %7.3fms %7.3fms %7s KiB\n" "$s" "$rps" \
		    "$(awk -v v="$p50" 'BEGIN { print v / 1000 }')" \
		    "$(awk -v v="$p99" 'BEGIN { print v / 1000 }')" "$rss"
	done
	print_ratios req/s res
	for s in $W_SYSTEMS; do
		printf 'req/s per round, %s:' "$s"
		awk '{ printf " %.0f", $1 }' "$wdir/res.$s"
		say
		awk -v s="$s" '$4 || $5 { printf "WARNING: %s round %d: %d non-2xx responses, %d socket errors\n", s, NR, $4, $5 }' \
		    "$wdir/res.$s"
	done
	# keygated2 runs right after keygated in every round: the ratio of
	# each round's pair shares most of that round's noise, and their
	# median is steadier than the ratio of the medians on a busy machine.
	case " $W_SYSTEMS " in
	*" keygated2 "*)
		paste "$wdir/res.keygated" "$wdir/res.keygated2" | awk '
		    { r[NR] = $7 ? $1 / $7 : 0; line = line sprintf(" %.3f", r[NR]) }
		    END {
			for (i = 2; i <= NR; i++)
				for (j = i; j > 1 && r[j - 1] > r[j]; j--) {
					x = r[j]; r[j] = r[j - 1]; r[j - 1] = x
				}
			m = NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
			printf "ratio keygated/keygated2 per round, req/s:%s (median %.3f)\n", line, m
		    }'
		;;
	esac
	awk '$1 ~ /^upstream2?$/ { printf "%s (shared, %d worker%s) peak RSS: %d KiB\n", $1, w, (w > 1 ? "s" : ""), $2 }' \
	    w="$UPSTREAM_WORKERS" "$wdir/rss"
	case $w in rate | rate-verify) print_refusals ;; esac
	print_split
	[ "$W_SERVERS" = 2 ] && print_pool
	[ "$W_CLIENT" != wrk ] && print_tls
	[ "$W_REFRESH" = 1 ] && print_refresh
	[ "$W_KEYS" = 1 ] && [ -z "$W_JWT" ] && print_memory
	cat "$wdir/notes"
}

# conn_split SYSTEM: halfway through a round, how wrk's connections are
# spread over SYSTEM's processes ("36/28": established connections to its
# port per process, most first; nothing without ss).  With wrk on the same
# two cores, the spread decides much of p99: a worker with every
# connection leaves the other core to wrk and is never preempted, while
# two busy workers and wrk take turns on two cores.  nginx (accept on a
# shared socket) lands anywhere from 32/32 to 64/0 by chance; keygated
# (SO_REUSEPORT) near an even split by design.
conn_split() {
	command -v ss >/dev/null 2>&1 || return 0
	eval "cs_port=\$port_$1"
	[ -n "$cs_port" ] || return 0
	sleep "$(awk -v d="$DURATION" 'BEGIN { print d / 2 }')"
	ss -Htnp state established "( sport = :$cs_port )" 2>/dev/null |
	    sed -n 's/.*pid=\([0-9]*\).*/\1/p' | sort | uniq -c |
	    sort -rn | awk '{ s = s (NR > 1 ? "/" : "") $1 } END { print s }'
}
split_pid=

# print_split: the connection spread of every round (see conn_split).
print_split() {
	for s in $W_SYSTEMS; do
		line=
		r=0
		while [ $r -lt "$ROUNDS" ]; do
			r=$((r + 1))
			f=$wdir/out/$s.$r.split
			[ -s "$f" ] && line="$line $(cat "$f")"
		done
		[ -n "$line" ] && say "connections per worker at mid-round, $s:$line"
	done
	return 0
}

# print_pool: proxy-pool: the requests each upstream server got in every
# round (stub_status, see pool_counts), with upstream's share; a warning
# for a round in which a server got less than 45 % (round robin: 50 %).
print_pool() {
	if [ "$upstream_stub" = 0 ]; then
		say "requests per upstream server in the rounds: not counted ($NGINX has no stub_status)"
		return 0
	fi
	for s in $W_SYSTEMS; do
		line=
		r=0
		while [ $r -lt "$ROUNDS" ]; do
			r=$((r + 1))
			f=$wdir/out/$s.$r.pool
			if [ -s "$f" ]; then
				line="$line $(awk '{ printf "%d/%d (%.1f%%)", $1, $2,
				    $1 + $2 ? 100 * $1 / ($1 + $2) : 0 }' "$f")"
			else
				line="$line -"
			fi
		done
		say "requests to upstream/upstream2 per round (upstream's share), $s:$line"
	done
	for s in $W_SYSTEMS; do
		r=0
		while [ $r -lt "$ROUNDS" ]; do
			r=$((r + 1))
			f=$wdir/out/$s.$r.pool
			[ -s "$f" ] || continue
			awk -v s="$s" -v r="$r" '{ t = $1 + $2
			    if (t && ($1 < 0.45 * t || $2 < 0.45 * t))
				printf "WARNING: %s round %d: upstream got %d, upstream2 %d requests: not round robin\n", s, r, $1, $2 }' "$f"
		done
	done
	return 0
}

# print_memory: the keys-* memory table, from $wdir/SYSTEM.mem0, .mem1 and
# .mem2 ("RSS PSS [STARTMS]": no keys at rest, $KEYS keys at rest, $KEYS
# keys after the rounds).
print_memory() {
	say "memory (PSS summed over the processes, KiB): no keys, $KEYS keys at rest (1 s after the first answer), after the rounds"
	sw=$(name_width)
	printf "%-${sw}s %9s %9s %9s %9s %9s %13s\n" system "no keys" \
	    "$KEYS" "after" "per key" "RSS after" "start-up"
	for s in $W_SYSTEMS; do
		[ -s "$wdir/$s.mem0" ] && [ -s "$wdir/$s.mem1" ] &&
		    [ -s "$wdir/$s.mem2" ] || continue
		awk -v s="$s" -v n="$KEYS" -v sw="$sw" '
		    FILENAME ~ /mem0$/ { p0 = $2; t0 = $3; next }
		    FILENAME ~ /mem1$/ { p1 = $2; t1 = $3; next }
		    { printf "%-*s %9d %9d %9d %7.0f B %9d %5.2fs/%.2fs\n", sw, s,
			p0, p1, $2, (p1 - p0) * 1024 / n, $1, t0 / 1000, t1 / 1000 }' \
		    "$wdir/$s.mem0" "$wdir/$s.mem1" "$wdir/$s.mem2"
	done
	say "per key: (PSS with $KEYS keys at rest - PSS without) / $KEYS; RSS after: summed VmRSS, a shared page once per process; start-up: launch to first answer, without keys/with $KEYS"
	[ -s "$wdir/keygated.mem0max" ] && awk -v m="$W_MAX_KEYS" '{
	    printf "keygated without keys is measured with max_keys 1; with max_keys %d and no keys: %d KiB PSS\n", m, $2 }' \
	    "$wdir/keygated.mem0max"
	return 0
}

# print_refusals: rate and rate-verify: responses with a status >= 400 (wrk's count; a 429
# is one) over all the rounds, per system: the limits are meant never to
# refuse.
print_refusals() {
	line=
	for s in $W_SYSTEMS; do
		line="$line${line:+,} $s $(awk '{ n += $6; bad += $4 }
		    END { printf "%d of %d", bad, n }' "$wdir/res.$s")"
	done
	say "responses >= 400 (429 included) in the rounds:$line"
	for s in $W_SYSTEMS; do
		awk -v s="$s" '{ bad += $4 } END { if (bad)
		    printf "WARNING: %s refused or failed %d requests; its figures are not those of a limiter that admits everything\n", s, bad }' \
		    "$wdir/res.$s"
	done
}

# print_accuracy: the rate-accuracy results, from $wdir/acc.SYSTEM.
print_accuracy() {
	sw=$(name_width)
	printf "%-${sw}s %9s %5s %9s %5s %8s %8s %9s %7s  %s\n" system sent \
	    2xx 429 other admitted "worst 1s" "$((RATE_LOW + 1)) within" \
	    "mean/s" "refusal"
	for s in $W_SYSTEMS; do
		awk -v s="$s" -v sw="$sw" '{
		    printf "%-*s %9d %5d %9d %5d %8d %8d %9s %7.1f  %s%s\n", sw, s,
			$1, $2, $3, $4 + $5, $7, $8, ($10 == "-" ? "-" : $10 "ms"), $11,
			$12, ($13 == "-" ? "" : ", Retry-After: " $13) }' \
		    "$wdir/acc.$s"
	done
	say "limit: $RATE_LOW requests per 1 s, one key; keygated \"rate_limit $RATE_LOW/1s\", nginx \"rate=${RATE_LOW}r/s\" and \"$(nginx_limit_req "$NGINX_BURST")\", HAProxy \"sc_http_req_rate(0) gt $RATE_LOW\" on a 1s table"
	say "admitted: requests the upstream got; worst 1s: the most of them in any interval [t, t + 1 s), times taken upstream; $((RATE_LOW + 1)) within: the shortest time in which $((RATE_LOW + 1)) of them arrived (1000ms or more: worst 1s <= $RATE_LOW); mean/s: admits in the run's first whole seconds from the first admit, per second; refusal: the first refused answer of a probe before the run"
	for s in $W_SYSTEMS; do
		awk -v s="$s" -v lim="$RATE_LOW" '{
		    printf "admits per second from the first, %s:", s
		    for (i = 14; i <= NF; i++) printf " %s", $i
		    printf " (worst 1s from +%.3f s)\n", $9
		    if ($1 + 0 == 0) printf "WARNING: %s: wrk counted no responses\n", s
		    if ($2 < $7)
			printf "NOTE: %s: the upstream got %d requests, the client %d 2xx: %d answer(s) still in flight when wrk stopped\n", s, $7, $2, $7 - $2
		    if ($2 > $7)
			printf "WARNING: %s: the client got %d 2xx, the upstream only %d requests\n", s, $2, $7
		    if ($4 + $5)
			printf "WARNING: %s: %d responses neither 2xx nor 429, %d socket errors\n", s, $4, $5
		    if (s == "keygated" && $8 > lim)
			printf "NOTE: keygated: %d admits within 1 s at the upstream; %d of them within %s ms: the time from admission to the upstream varies (queueing on 2 cores); see its own admit times below\n", $8, lim + 1, $10
		}' "$wdir/acc.$s"
	done
	for s in $W_SYSTEMS; do
		[ -s "$wdir/acc.$s.log" ] || continue
		awk -v s="$s" '{ printf "%s, its own admit times (access log rate_time, whole ms): %d admitted, worst 1s %d, %d within %s ms\n", s, $1, $2, lim + 1, $3 }' \
		    lim="$RATE_LOW" "$wdir/acc.$s.log"
	done
	cat "$wdir/notes"
}

# print_create: the keys-create results, from $wdir/create.res.
print_create() {
	awk -v keys="$KEYS" -v w="$WORKERS" '
	$1 == "create" {
		printf "creates: %d in %.2f s over one keep-alive connection: %.1f creates/s\n", $2, $3, $4
		printf "create latency: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", $5, $6, $7
		printf "last created key through verify_path right after its 201: %s\n", $8
	}
	$1 == "keys" { printf "keys in the store (GET /v1/health): %s before, %s after\n", $2, $3 }
	$1 == "journal" {
		per = nc ? ($3 - $2) / nc : 0
		printf "keys.journal: %d -> %d bytes (%.0f bytes per create)\n", $2, $3, per
	}
	$1 == "create" { nc = $2 }
	$1 == "fs" { printf "state_dir filesystem: %s, %s mounted on %s\n", $2, $3, $4 }
	$1 == "dsync" { printf "same filesystem, dd bs=512 oflag=dsync (one synchronous append at a time): %.1f writes/s\n", $2 }
	$1 == "rss" { printf "keygated peak RSS (master + %d workers, summed): %d KiB\n", w, $2 }
	$1 == "logged" && $2 > 0 { printf "NOTE: keygated logged %d lines during the creates\n", $2 }
	$1 == "restart" && $2 == "failed" { print "WARNING: keygated did not start again on the same state_dir" ; next }
	$1 == "restart" { printf "after a restart on the same state_dir: %s keys, first answer after %.2f s\n", $2, $3 / 1000 }
	' "$wdir/create.res"
	cat "$wdir/notes"
}

# ---------------------------------------------------------------- profiles

# Syscall tracepoints, for counting syscalls with perf at full speed.
tracefs=
for t in /sys/kernel/tracing /sys/kernel/debug/tracing; do
	[ -d "$t/events/syscalls" ] && { tracefs=$t; break; }
done

# profile_system NAME WORKLOAD: over one wrk run each, with the system's
# processes (master and workers) attached:
#   strace -c -f   which syscalls, and how many per request;
#   perf stat      CPU time, context switches and syscalls per request, and
#                  the count of each syscall strace saw, through tracepoints
#                  (which, unlike strace, do not slow the server down).
# Output in $tmp/prof.WORKLOAD.NAME.{strace,perf}[.wrk].
profile_system() {
	s=$1
	w=$2
	url=$(workload_url "$w" "$s")
	out=$tmp/prof.$w.$s
	if command -v strace >/dev/null 2>&1; then
		set --
		for p in $(tree "$(system_pid "$s")"); do set -- "$@" -p "$p"; done
		strace -c -f -o "$out.strace" "$@" >/dev/null 2>&1 &
		strace_pid=$!
		sleep 0.5
		run_wrk "$out.strace.wrk" "$PROFILE_DURATION" "$url" "$s"
		kill -INT "$strace_pid" 2>/dev/null || true
		wait "$strace_pid" || true
		strace_pid=
	fi
	command -v perf >/dev/null 2>&1 || return 0
	pids=$(tree "$(system_pid "$s")" | paste -sd, -)
	base=task-clock,context-switches
	ev=$base
	if [ -n "$tracefs" ]; then
		ev=$ev,raw_syscalls:sys_enter
		for n in $(strace_calls "$out.strace" | awk '{ print $1 }'); do
			[ -d "$tracefs/events/syscalls/sys_enter_$n" ] &&
			    ev=$ev,syscalls:sys_enter_$n
		done
	fi
	for e in "$ev" "$base"; do
		perf stat -x, -e "$e" -p "$pids" -o "$out.perf" \
		    -- sleep $((PROFILE_DURATION + 1)) >/dev/null 2>&1 &
		perf_pid=$!
		sleep 0.3
		alive "$perf_pid" || { wait "$perf_pid" || true; continue; }
		run_wrk "$out.perf.wrk" "$PROFILE_DURATION" "$url" "$s"
		wait "$perf_pid" && return 0
	done
	warn "perf stat failed on $s"
	rm -f "$out.perf"
}
strace_pid=

# strace_calls FILE: "syscall calls failures" per line of a strace -c table.
strace_calls() {
	[ -s "$1" ] || return 0
	awk '/^---/ { d++; next }
	    d == 1 && NF >= 5 { print $NF, $4, NF == 6 ? $5 : 0 }' "$1"
}

# requests FILE: requests wrk completed, from its output.
requests() { parse_wrk "$1" | awk '{ print $6 }'; }

print_profile() {
	w=$1
	workload_info "$w"
	[ -s "$tmp/$w/systems" ] && W_SYSTEMS=$(cat "$tmp/$w/systems")
	p_client="wrk -t$THREADS -c$CONNS"
	[ "$W_CLIENT" != wrk ] && p_client="tlsload -m $W_CLIENT -c$CONNS"
	say "profile: $w, $p_client, ${PROFILE_DURATION}s per system and tool, master+workers"
	sw=$(name_width)
	printf "%-${sw}s %11s %11s %11s   (perf stat)\n" system "CPU us/req" \
	    "ctx-sw/req" "syscall/req"
	for s in $W_SYSTEMS; do
		f=$tmp/prof.$w.$s.perf
		[ -s "$f" ] || continue
		awk -F, -v s="$s" -v sw="$sw" -v req="$(requests "$f.wrk")" '
		    $3 ~ /^task-clock/ { ms = $1 }
		    $3 ~ /^context-switches/ { cs = $1 }
		    $3 ~ /^raw_syscalls:sys_enter/ { sc = $1 }
		    END { if (req > 0) printf "%-*s %11.2f %11.3f %11s\n", sw, s,
			ms * 1000 / req, cs / req,
			sc == "" ? "-" : sprintf("%.3f", sc / req) }' "$f"
	done
	# One line per system and syscall: "system syscall perf strace fail".
	hdr=
	for s in $W_SYSTEMS; do
		f=$tmp/prof.$w.$s
		[ -s "$f.strace" ] || continue
		hdr="$hdr $s"
		{
			strace_calls "$f.strace" | awk -v s="$s" \
			    -v req="$(requests "$f.strace.wrk")" '
			    { print s, $1, "strace", $2 / req, $3 / req }'
			[ -s "$f.perf" ] && awk -F, -v s="$s" \
			    -v req="$(requests "$f.perf.wrk")" '
			    $3 ~ /^syscalls:sys_enter_/ && $1 ~ /^[0-9]/ {
				n = $3; sub(/^syscalls:sys_enter_/, "", n)
				print s, n, "perf", $1 / req, 0 }' "$f.perf"
		}
	done >"$tmp/prof.$w.syscalls"
	[ -n "$hdr" ] || { say "(no strace: no syscall table)"; return 0; }
	say
	say "syscalls per request: counted by perf tracepoints at full speed where"
	say "marked p, else by strace -c -f (marked s; strace slows the server, so"
	say "batched calls such as epoll_wait come out lower); \"fail\": calls per"
	say "request that returned an error (strace)"
	awk -v hdr="$hdr" '
	    BEGIN { ns = split(hdr, sys, " ") }
	    {
		if (!(($2) in seen)) { seen[$2] = 1; names[++nn] = $2 }
		if ($3 == "perf") p[$1, $2] = $4
		else { st[$1, $2] = $4; fl[$1, $2] = $5 }
	    }
	    function val(s, n) { return ((s, n) in p) ? p[s, n] : st[s, n] + 0 }
	    END {
		for (i = 1; i <= nn; i++) for (j = i + 1; j <= nn; j++)
			if (val(sys[1], names[j]) > val(sys[1], names[i])) {
				t = names[i]; names[i] = names[j]; names[j] = t
			}
		printf "%-14s", "syscall"
		for (k = 1; k <= ns; k++) printf " %20s", sys[k]
		printf "\n"
		for (i = 1; i <= nn; i++) {
			n = names[i]
			printf "%-14s", n
			for (k = 1; k <= ns; k++) {
				s = sys[k]
				if ((s, n) in p) c = sprintf("%.3f p", p[s, n])
				else if ((s, n) in st) c = sprintf("%.3f s", st[s, n])
				else c = "-"
				if (fl[s, n] >= 0.01)
					c = sprintf("%.2f fail, %s", fl[s, n], c)
				printf " %20s", c
			}
			printf "\n"
		}
	    }' "$tmp/prof.$w.syscalls"
}

# ------------------------------------------------------------------- main

cleanup() {
	st=$?
	trap - EXIT INT TERM
	[ -n "$wrk_pid" ] && alive "$wrk_pid" && kill -TERM "$wrk_pid"
	[ -n "$wrk2_pid" ] && alive "$wrk2_pid" && kill -TERM "$wrk2_pid"
	[ -n "$strace_pid" ] && alive "$strace_pid" && kill -INT "$strace_pid"
	for p in $started; do
		stop_pid "$p"
	done
	if [ "$KEEP_TMP" = 1 ]; then
		warn "kept $tmp"
	else
		rm -rf "$tmp"
	fi
	exit "$st"
}

if [ -z "${KEYGATED:-}" ]; then
	for k in "$top/_build/src/keygated" "$top/src/keygated"; do
		[ -x "$k" ] && { KEYGATED=$k; break; }
	done
fi
[ -n "${KEYGATED:-}" ] && [ -x "$KEYGATED" ] ||
    die "no keygated binary: build it, or set KEYGATED=/path/to/keygated"
case $KEYGATED in /*) ;; *) KEYGATED=$(pwd)/$KEYGATED ;; esac

all=
any_keys=0
any_jwt=0
any_refresh=0
any_tls=0
any_tlsload=0
any_idle=0
any_scrape=0
for w in $WORKLOADS; do
	workload_info "$w"
	[ "$W_TLS" = 1 ] && any_tls=1
	[ "$W_CLIENT" != wrk ] || [ "$W_IDLE" = 1 ] && any_tlsload=1
	[ "$W_IDLE" = 1 ] && any_idle=1
	[ "$W_KEYS" = 1 ] && any_keys=1
	[ -n "$W_JWT" ] && any_jwt=1
	[ "$W_REFRESH" = 1 ] && any_refresh=1
	[ "$W_SCRAPE" = 1 ] && any_scrape=1
	for s in $W_SYSTEMS; do
		case " $all " in *" $s "*) ;; *) all="$all $s" ;; esac
	done
done
[ -n "$all" ] || die "WORKLOADS is empty"
if [ -n "$KEYGATED2" ]; then
	case $KEYGATED2 in /*) ;; *) KEYGATED2=$(pwd)/$KEYGATED2 ;; esac
	[ -x "$KEYGATED2" ] || die "KEYGATED2=$KEYGATED2 is not an executable"
fi

need wrk wrk
need curl curl
[ "$any_keys" = 1 ] || [ "$any_refresh" = 1 ] || [ "$any_scrape" = 1 ] &&
    need python3 python3
[ "$any_scrape" = 1 ] && need ss iproute2
if [ "$any_jwt" = 1 ]; then
	"$JWT_PYTHON" -c 'import jwt, cryptography' >/dev/null 2>&1 ||
	    die "$JWT_PYTHON lacks PyJWT or cryptography: apt-get install python3-jwt python3-cryptography, or set JWT_PYTHON"
fi
[ "$(id -u)" -eq 0 ] && PATH=$PATH:/usr/sbin:/sbin
if [ -z "${NGINX:-}" ]; then
	need nginx nginx-light
	NGINX=$(command -v nginx)
fi
case " $all " in
*" haproxy "*)
	if [ -z "${HAPROXY:-}" ]; then
		need haproxy haproxy
		HAPROXY=$(command -v haproxy)
	fi
	;;
esac
"$NGINX" -V 2>&1 | grep -q -- --with-http_stub_status_module &&
    upstream_stub=1
nginx_temps="client_body proxy"
for m in fastcgi uwsgi scgi; do
	"$NGINX" -V 2>&1 | grep -q -- "--without-http_${m}_module" ||
	    nginx_temps="$nginx_temps $m"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keygate-bench.XXXXXX")
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The keys of the keys-* workloads: secrets for wrk, keygated's snapshot,
# the nginx and HAProxy maps (keys.py); empty maps for the runs without
# keys; the first key's header for the checks; the admin token.
keysdir=
keys_empty=
keys_src=
if [ "$any_keys" = 1 ]; then
	keysdir=$tmp/keys
	keys_empty=$tmp/keys-empty
	mkdir -p "$keys_empty"
	: >"$keys_empty/nginx.map"
	: >"$keys_empty/haproxy.map"
	warn "making $KEYS API keys (keys.py)"
	t0=$(now_ms)
	python3 "$here/keys.py" "$KEYS" "$keysdir" || die "keys.py failed"
	keys_ms=$(($(now_ms) - t0))
	(
		umask 077
		printf 'X-API-KEY: %s\n' "$(head -n 1 "$keysdir/secrets.txt")" \
		    >"$keysdir/check.hdr"
		head -n 1 "$keysdir/secrets.txt" >"$keysdir/first.secret"
		sed -n '2,101p' "$keysdir/secrets.txt" >"$keysdir/warm.secrets"
		od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$keysdir/admin.token"
		say >>"$keysdir/admin.token"
		printf 'Authorization: Bearer %s\n' "$(cat "$keysdir/admin.token")" \
		    >"$keysdir/admin.hdr"
	)
	KEYS_FILE=$keysdir/secrets.txt
	export KEYS_FILE
	keys_src=$keysdir
fi

# The JWT workloads' keys, JWKS, PEM public keys and tokens (tokens.py;
# jwks-refresh's providers, CA and server certificate too).
jwtdir=
if [ "$any_jwt" = 1 ]; then
	jwtdir=$tmp/jwt
	warn "making the JWT keys and 2 x $JWT_TOKENS tokens (tokens.py)"
	t0=$(now_ms)
	set -- "$JWT_TOKENS" "$jwtdir"
	[ "$any_refresh" = 1 ] && set -- "$@" "$REFRESH_PROVIDERS"
	"$JWT_PYTHON" "$here/tokens.py" "$@" || die "tokens.py failed"
	jwt_ms=$(($(now_ms) - t0))
fi

# The TLS workloads' certificate, the same for every system: ECDSA P-256,
# self-signed, for 127.0.0.1 (curl_tls checks it); HAProxy takes the
# certificate and key in one file.  tlsload, built here.  For
# tls-idle-memory, room for the idle connections in every process started
# from here (servers and client): ulimit -n.
tlsdir=
tlsload=
keygated_tls=1
nofile=4096
if [ "$any_tls" = 1 ]; then
	need openssl openssl
	tlsdir=$tmp/tls
	mkdir -p "$tlsdir"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	    -keyout "$tlsdir/key.pem" -out "$tlsdir/cert.pem" -days 2 \
	    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
	    >"$tlsdir/openssl.log" 2>&1 ||
	    die "openssl could not make the certificate: $(tail -n 1 "$tlsdir/openssl.log")"
	cat "$tlsdir/cert.pem" "$tlsdir/key.pem" >"$tlsdir/haproxy.pem"
	keygated_tls_probe || keygated_tls=0
fi
if [ "$any_tlsload" = 1 ]; then
	need cc gcc
	cc -O2 -o "$tmp/tlsload" "$here/tlsload.c" -lssl -lcrypto \
	    >"$tmp/tlsload.log" 2>&1 ||
	    die "cannot build tlsload.c (libssl-dev?): $(tail -n 3 "$tmp/tlsload.log")"
	tlsload=$tmp/tlsload
fi
if [ "$any_idle" = 1 ]; then
	# The hard limit raised if need be (root), never lowered; the soft
	# one up to it.
	lim=$((2 * IDLE_CONNS + 4096))
	hard=$(ulimit -H -n)
	[ "$hard" != unlimited ] && [ "$hard" -lt "$lim" ] &&
	    { ulimit -H -n "$lim" 2>/dev/null || true; }
	ulimit -S -n "$(ulimit -H -n)" 2>/dev/null || true
	nofile=$(ulimit -n)
	[ "$nofile" = unlimited ] && nofile=$lim
	[ "$(ulimit -n)" = unlimited ] ||
	    [ "$(ulimit -n)" -ge $((IDLE_CONNS + 1024)) ] ||
	    warn "ulimit -n is $(ulimit -n), below $IDLE_CONNS idle connections: tls-idle-memory will fall short"
fi

keygated_opt_ok=$(keygated_probe "$KEYGATED")
[ -n "$KEYGATED2" ] && keygated2_opt_ok=$(keygated_probe "$KEYGATED2")

versions="$("$KEYGATED" -v 2>&1 | head -n 1) ($KEYGATED); $("$NGINX" -v 2>&1 | sed 's/^nginx version: //')"
case " $all " in
*" haproxy "*)
	versions="$versions; $("$HAPROXY" -v 2>&1 | head -n 1 |
	    awk '{ print "haproxy/" $3 }')"
	;;
esac
say "# keygate bench $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc 2>/dev/null || echo ?) CPUs, $WORKERS workers (HAProxy: threads) per gateway, upstream $UPSTREAM_WORKERS worker(s), pool $POOL"
say "# $versions; $(wrk -v 2>&1 | head -n 1 | awk '{ print "wrk", $2 }')"
[ -n "$KEYGATED2" ] &&
    say "# keygated2 (proxy, verify, keys-proxy): $("$KEYGATED2" -v 2>&1 | head -n 1) ($KEYGATED2)"
# The optional lines one binary takes and the other does not: the two
# configs differ by these.
if [ -n "$KEYGATED2" ] && [ "$keygated_opt_ok" != "$keygated2_opt_ok" ]; then
	n=0
	(keygated_admin_port=PORT; keygated_optional) | while IFS= read -r line; do
		n=$((n + 1))
		a=no
		b=no
		case " $keygated_opt_ok " in *" $n "*) a=yes ;; esac
		case " $keygated2_opt_ok " in *" $n "*) b=yes ;; esac
		[ $a = $b ] ||
		    say "# NOTE: \"$line\": keygated $a, keygated2 $b (keygated -t)"
	done
fi
[ "$any_tls" = 1 ] &&
    say "# TLS: one ECDSA P-256 certificate for all ($(openssl version | awk '{ print $1, $2 }')); handshakes by tlsload.c (one request per connection)$(test "$keygated_tls" = 1 || echo "; keygated: TLS not supported by this binary")"
[ "$any_keys" = 1 ] &&
    say "# keys-*: $KEYS keys made by keys.py in $(awk -v t="$keys_ms" 'BEGIN { printf "%.1f", t / 1000 }') s, keygated max_keys $KEYS ($((KEYS + CREATES)) in keys-create), wrk picks one at random per request (keys.lua)"
[ "$any_jwt" = 1 ] &&
    say "# jwt-*: keys and tokens made by tokens.py in $(awk -v t="$jwt_ms" 'BEGIN { printf "%.1f", t / 1000 }') s: RSA 2048 and P-256 keys, Entra-like claims, $JWT_TOKENS tokens per jwt-fresh pool, $(wc -c <"$jwtdir/check.hdr" | tr -d ' ')-byte Authorization header (RS256)"
for w in $WORKLOADS; do run_workload "$w"; done
for w in $WORKLOADS; do
	say
	print_table "$w"
done

if [ "$PROFILE" = 1 ]; then
	for w in $WORKLOADS; do
		[ -f "$tmp/$w/failed" ] && continue
		workload_info "$w"
		[ "$W_CREATE" = 1 ] || [ "$W_ACCURACY" = 1 ] ||
		    [ "$W_IDLE" = 1 ] || [ "$W_SCRAPE" = 1 ] && continue
		say
		print_profile "$w"
	done
fi
