#!/bin/sh
# keygate benchmark harness (POSIX sh: runs under dash and bash alike).
#
# Starts keygated and the comparison servers on free loopback ports, in a
# private temporary directory, and measures each workload with wrk, taking
# the systems in turn for several rounds (A/B/A/B...) so that noise from a
# shared machine falls on all of them alike.  Prints, per workload and
# system, the median over the rounds of requests/s and of the p50 and p99
# latency, the ratios of the first system (keygated) to each other one, and
# the peak RSS of each server (VmHWM summed over master and workers).
#
#   sh contrib/bench/run.sh
#   KEYGATED=/tmp/bench-build/src/keygated ROUNDS=3 DURATION=5 sh contrib/bench/run.sh
#
# Environment (defaults in brackets):
#   KEYGATED   keygated binary [_build/src/keygated, then src/keygated, from
#              the top of the source tree]
#   NGINX      nginx binary [nginx from PATH]
#   WORKLOADS  space-separated workloads to run [echo]; see workload_info()
#   ROUNDS     rounds per workload [5]
#   DURATION   seconds per wrk run [10]
#   CONNS      wrk connections (-c) [64]
#   THREADS    wrk threads (-t) [1]
#   WORKERS    worker processes of every server [2]
#   WARMUP     seconds of untimed wrk load per system before the rounds [2]
#   PROFILE    1: after the rounds, measure CPU time and context switches per
#              request (perf stat) and syscalls per request (strace -c -f)
#              on each system's processes [0]
#   PROFILE_DURATION  seconds of wrk load per profile run [5]
#   KEEP_TMP   1: keep the temporary directory (configs, logs, wrk output)
#
# Adding a workload: give it a case in workload_info() (description and
# systems, the first being the one compared with the others), in
# workload_url() (one URL per system) and in workload_expect() (a string the
# response must contain), and serve its path in the start_SYSTEM functions.
# Adding a system: write start_SYSTEM (start it, set SYSTEM_PID to the pid
# of its master process, return non-zero if it would not start).
set -eu

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
WORKERS=${WORKERS:-2}
WARMUP=${WARMUP:-2}
WORKLOADS=${WORKLOADS:-echo}
PROFILE=${PROFILE:-0}
PROFILE_DURATION=${PROFILE_DURATION:-5}
KEEP_TMP=${KEEP_TMP:-0}

top=$(cd "$(dirname "$0")/../.." && pwd)

say() { printf '%s\n' "$*"; }
warn() { printf 'bench: %s\n' "$*" >&2; }
die() { warn "$*"; exit 1; }

val=
for v in ROUNDS DURATION CONNS THREADS WORKERS WARMUP PROFILE_DURATION; do
	eval "val=\$$v"
	case $val in
	'' | *[!0-9]*) die "$v must be a whole number, not \"$val\"" ;;
	esac
done
[ "$ROUNDS" -ge 1 ] && [ "$DURATION" -ge 1 ] && [ "$CONNS" -ge 1 ] &&
    [ "$THREADS" -ge 1 ] && [ "$WORKERS" -ge 1 ] ||
    die "ROUNDS, DURATION, CONNS, THREADS and WORKERS must be at least 1"

# ---------------------------------------------------------------- workloads

# workload_info NAME: set W_DESC and W_SYSTEMS (the first system is the one
# the ratios compare with each of the others).
workload_info() {
	case $1 in
	echo)
		W_DESC="keygated echo upstream vs nginx return 200"
		W_SYSTEMS="keygated nginx"
		;;
	# Next milestone, for example:
	# proxy)
	#	W_DESC="keygated -> backend vs nginx proxy_pass vs haproxy"
	#	W_SYSTEMS="keygated nginx haproxy"
	#	;;
	# verify)
	#	W_DESC="keygated verify_path vs nginx return 204"
	#	W_SYSTEMS="keygated nginx"
	#	;;
	*)
		die "unknown workload \"$1\" (known: echo)"
		;;
	esac
}

# workload_url NAME SYSTEM: the URL wrk loads.
workload_url() {
	case $1:$2 in
	echo:keygated) say "http://127.0.0.1:$keygated_port/bench" ;;
	echo:nginx) say "http://127.0.0.1:$nginx_port/bench" ;;
	*) die "workload $1 has no URL for $2" ;;
	esac
}

# workload_expect NAME SYSTEM: a string a good response (headers and body)
# contains, checked once before the rounds.
workload_expect() {
	case $1:$2 in
	echo:keygated) say '"path":"/bench"' ;;
	echo:nginx) say '{"ok":true}' ;;
	*) say 'HTTP/1.1 200' ;;
	esac
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
		r=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
		p=$((lo + r % (hi - lo + 1)))
		case " $ports_taken " in *" $p "*) continue ;; esac
		hex=$(printf '%04X' "$p")
		if ! awk -v h=":$hex" 'NR > 1 && substr($2, length($2) - 4) == h \
		    { f = 1 } END { exit !f }' /proc/net/tcp /proc/net/tcp6 \
		    2>/dev/null; then
			ports_taken="$ports_taken $p"
			PORT=$p
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

# wait_ready PID URL: wait until URL answers while PID lives (10 s at most).
wait_ready() {
	n=0
	while [ $n -lt 100 ]; do
		alive "$1" || return 1
		curl -s -o /dev/null --max-time 1 "$2" && return 0
		sleep 0.1
		n=$((n + 1))
	done
	return 1
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

# start_keygated: keygated in the foreground (-f) as a background job, with
# its config, state and pidfile in $tmp/keygated.  No access_log directive
# (the default is off).
keygated_conf() {
	cat <<EOF
# generated by contrib/bench/run.sh
listen			127.0.0.1:$keygated_port
workers			$WORKERS
state_dir		$d/state
pidfile			$d/keygated.pid
log_level		warn
keepalive_requests	100000
upstream		echo echo
route GET ^/bench\$	auth=anonymous
EOF
}

# Directives a later keygated may know, kept only if "keygated -t" accepts
# them: the admin listener on a free port (not the default 8081), and no
# per-IP limit on anonymous routes (wrk comes from one address).
keygated_optional() {
	say "admin_listen 127.0.0.1:$keygated_admin_port"
	say "anonymous_rate_limit off"
}

start_keygated() {
	d=$tmp/keygated
	mkdir -p "$d/state"
	free_port
	keygated_port=$PORT
	free_port
	keygated_admin_port=$PORT
	keygated_conf >"$d/keygated.conf"
	keygated_optional | while IFS= read -r line; do
		{ keygated_conf; say "$line"; } >"$d/try.conf"
		"$KEYGATED" -t -c "$d/try.conf" >/dev/null 2>&1 &&
		    say "$line" >>"$d/extra.conf"
	done
	[ -f "$d/extra.conf" ] && cat "$d/extra.conf" >>"$d/keygated.conf"
	rm -f "$d/try.conf" "$d/extra.conf"
	"$KEYGATED" -t -c "$d/keygated.conf" >"$d/check.log" 2>&1 || {
		cat "$d/check.log" >&2
		return 1
	}
	"$KEYGATED" -f -c "$d/keygated.conf" >"$d/stderr.log" 2>&1 &
	SYSTEM_PID=$!
	wait_ready "$SYSTEM_PID" "http://127.0.0.1:$keygated_port/" || {
		stop_pid "$SYSTEM_PID"
		tail -n 5 "$d/stderr.log" >&2
		return 1
	}
}

# start_nginx: a private nginx (-p prefix, -c config, -e error log, daemon
# off) that never touches the system nginx's files.
start_nginx() {
	d=$tmp/nginx
	mkdir -p "$d/logs" "$d/tmp"
	free_port
	nginx_port=$PORT
	temps="client_body proxy"
	for m in fastcgi uwsgi scgi; do
		"$NGINX" -V 2>&1 | grep -q -- "--without-http_${m}_module" ||
		    temps="$temps $m"
	done
	{
		cat <<EOF
# generated by contrib/bench/run.sh
worker_processes $WORKERS;
pid $d/nginx.pid;
error_log $d/logs/error.log error;
events { worker_connections 4096; }
http {
	access_log off;
	keepalive_requests 100000;
EOF
		for m in $temps; do
			say "	${m}_temp_path $d/tmp/$m;"
		done
		cat <<EOF
	server {
		listen 127.0.0.1:$nginx_port;
		location = /bench {
			default_type application/json;
			return 200 '{"ok":true}';
		}
	}
}
EOF
	} >"$d/nginx.conf"
	"$NGINX" -p "$d/" -c "$d/nginx.conf" -e "$d/logs/error.log" \
	    -g 'daemon off;' >"$d/stderr.log" 2>&1 &
	SYSTEM_PID=$!
	wait_ready "$SYSTEM_PID" "http://127.0.0.1:$nginx_port/" || {
		stop_pid "$SYSTEM_PID"
		tail -n 5 "$d/stderr.log" "$d/logs/error.log" >&2
		return 1
	}
}

# start_haproxy: next milestone.

# start_system NAME: start it (three tries, in case another program takes
# the port first), remember its pid in $tmp/NAME.pid.
start_system() {
	n=0
	while [ $n -lt 3 ]; do
		n=$((n + 1))
		SYSTEM_PID=
		if "start_$1"; then
			say "$SYSTEM_PID" >"$tmp/$1.pid"
			started="$started $1"
			return 0
		fi
		warn "$1 did not start (try $n of 3)"
	done
	die "cannot start $1"
}
started=

system_pid() { cat "$tmp/$1.pid"; }

# -------------------------------------------------------------------- wrk

# run_wrk OUTFILE SECONDS URL: wrk in the background, so that a signal
# reaches the trap at once.
run_wrk() {
	wrk -t"$THREADS" -c"$CONNS" -d"$2s" --latency "$3" >"$1" 2>&1 &
	wrk_pid=$!
	wait "$wrk_pid" || { wrk_pid=; cat "$1" >&2; die "wrk failed"; }
	wrk_pid=
}
wrk_pid=

# parse_wrk FILE: print "req/s p50_us p99_us non2xx socket_errors requests".
parse_wrk() {
	awk '
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

check_workload() {
	for s in $W_SYSTEMS; do
		url=$(workload_url "$1" "$s")
		resp=$(curl -s -i --max-time 5 "$url" || true)
		case $resp in
		"HTTP/1.1 200"*) ;;
		*) die "$s: $url answered: $(say "$resp" | head -n 1)" ;;
		esac
		case $resp in
		*"$(workload_expect "$1" "$s")"*) ;;
		*) die "$s: $url: unexpected response: $resp" ;;
		esac
	done
}

run_workload() {
	w=$1
	workload_info "$w"
	check_workload "$w"
	mkdir -p "$tmp/out"
	if [ "$WARMUP" -gt 0 ]; then
		for s in $W_SYSTEMS; do
			run_wrk "$tmp/out/$w.$s.warmup" "$WARMUP" \
			    "$(workload_url "$w" "$s")"
		done
	fi
	for s in $W_SYSTEMS; do : >"$tmp/res.$w.$s"; done
	r=0
	while [ $r -lt "$ROUNDS" ]; do
		r=$((r + 1))
		for s in $W_SYSTEMS; do
			out=$tmp/out/$w.$s.$r
			run_wrk "$out" "$DURATION" "$(workload_url "$w" "$s")"
			parse_wrk "$out" >>"$tmp/res.$w.$s"
			warn "$w round $r/$ROUNDS $s: $(tail -n 1 \
			    "$tmp/res.$w.$s" | awk '{ printf "%.0f req/s, p99 %.3fms", $1, $3 / 1000 }')"
		done
	done
}

# print_table NAME: the results of one workload.
print_table() {
	w=$1
	workload_info "$w"
	nsys=0
	for s in $W_SYSTEMS; do nsys=$((nsys + 1)); done
	say "workload: $w ($W_DESC), wrk -t$THREADS -c$CONNS, $ROUNDS x ${DURATION}s"
	printf '%-10s %8s %9s %9s\n' system req/s p50 p99
	for s in $W_SYSTEMS; do
		f=$tmp/res.$w.$s
		rps=$(field "$f" 1 | median)
		p50=$(field "$f" 2 | median)
		p99=$(field "$f" 3 | median)
		say "$rps $p99" >"$f.median"
		printf '%-10s %8.0f %7.3fms %7.3fms\n' "$s" "$rps" \
		    "$(awk -v v="$p50" 'BEGIN { print v / 1000 }')" \
		    "$(awk -v v="$p99" 'BEGIN { print v / 1000 }')"
	done
	set -- $W_SYSTEMS
	a=$1
	shift
	for b in "$@"; do
		awk -v a="$a" -v b="$b" '
		    NR == FNR { ar = $1; ap = $2; next }
		    { printf "ratio %s/%s: req/s %.2fx, p99 %.2fx\n", a, b,
			$1 ? ar / $1 : 0, $2 ? ap / $2 : 0 }' \
		    "$tmp/res.$w.$a.median" "$tmp/res.$w.$b.median"
	done
	for s in $W_SYSTEMS; do
		printf 'req/s per round, %s:' "$s"
		awk '{ printf " %.0f", $1 }' "$tmp/res.$w.$s"
		say
		awk -v s="$s" '$4 || $5 { printf "WARNING: %s round %d: %d non-2xx responses, %d socket errors\n", s, NR, $4, $5 }' \
		    "$tmp/res.$w.$s"
	done
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
		run_wrk "$out.strace.wrk" "$PROFILE_DURATION" "$url"
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
		run_wrk "$out.perf.wrk" "$PROFILE_DURATION" "$url"
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
	say "profile: $w, wrk -t$THREADS -c$CONNS, ${PROFILE_DURATION}s per system and tool, master+workers"
	printf '%-10s %11s %11s %11s   (perf stat)\n' system "CPU us/req" \
	    "ctx-sw/req" "syscall/req"
	for s in $W_SYSTEMS; do
		f=$tmp/prof.$w.$s.perf
		[ -s "$f" ] || continue
		awk -F, -v s="$s" -v req="$(requests "$f.wrk")" '
		    $3 ~ /^task-clock/ { ms = $1 }
		    $3 ~ /^context-switches/ { cs = $1 }
		    $3 ~ /^raw_syscalls:sys_enter/ { sc = $1 }
		    END { if (req > 0) printf "%-10s %11.2f %11.3f %11s\n", s,
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
	[ -n "$strace_pid" ] && alive "$strace_pid" && kill -INT "$strace_pid"
	for s in $started; do
		stop_pid "$(system_pid "$s")"
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

need wrk wrk
need curl curl
if [ -z "${NGINX:-}" ]; then
	[ "$(id -u)" -eq 0 ] && PATH=$PATH:/usr/sbin:/sbin
	need nginx nginx-light
	NGINX=$(command -v nginx)
fi
for w in $WORKLOADS; do workload_info "$w"; done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keygate-bench.XXXXXX")
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

systems=
for w in $WORKLOADS; do
	workload_info "$w"
	for s in $W_SYSTEMS; do
		case " $systems " in *" $s "*) ;; *) systems="$systems $s" ;; esac
	done
done
for s in $systems; do start_system "$s"; done

say "# keygate bench $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc 2>/dev/null || echo ?) CPUs, $WORKERS workers per server"
say "# $("$KEYGATED" -v 2>&1 | head -n 1) ($KEYGATED); $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'); $(wrk -v 2>&1 | head -n 1 | awk '{ print "wrk", $2 }')"
for w in $WORKLOADS; do run_workload "$w"; done
for w in $WORKLOADS; do
	say
	print_table "$w"
done
say
for s in $systems; do
	say "$s peak RSS (master+workers): $(peak_rss "$(system_pid "$s")") KiB"
done

if [ "$PROFILE" = 1 ]; then
	for w in $WORKLOADS; do
		workload_info "$w"
		for s in $W_SYSTEMS; do profile_system "$s" "$w"; done
		say
		print_profile "$w"
	done
fi
