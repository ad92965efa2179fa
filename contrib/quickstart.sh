#!/bin/sh
# keygate quick start, for a fresh Debian machine (run as root, or with sudo
# available).  From the top of the source tree:
#
#   sh contrib/quickstart.sh demo   install dependencies, build, and run
#                                   keygated in the foreground with the demo
#                                   configuration (127.0.0.1:8080, echo upstream)
#   sh contrib/quickstart.sh test   install dependencies, then build and run the
#                                   whole test suite: strict build + make check,
#                                   ASan/UBSan build + make check, the libFuzzer
#                                   targets for FUZZ_SECONDS (default 60) each,
#                                   and make distcheck
#
# Builds happen out of tree in _build, _build-asan and _build-fuzz.
set -eu

cd "$(dirname "$0")/.."
top=$(pwd)
jobs=$(nproc 2>/dev/null || echo 2)

PACKAGES="build-essential autoconf automake pkg-config libevent-dev \
libpcre2-dev libjansson-dev libssl-dev libcmocka-dev python3 curl clang \
libclang-rt-dev"
# The nginx auth_request integration test runs a private nginx.
TEST_PACKAGES="nginx-light"

# deps PACKAGE...: install what is missing.
deps() {
	if [ "$(id -u)" -eq 0 ]; then sudo=; else sudo=sudo; fi
	missing=
	for p in "$@"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	echo "quickstart: installing$missing"
	$sudo apt-get update -qq
	# Installing nginx must not start a system nginx on port 80.
	norc=
	if [ "$(id -u)" -eq 0 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		norc=1
	fi
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing \
	    >/dev/null
	[ -n "$norc" ] && rm -f /usr/sbin/policy-rc.d
	return 0
}

# build DIR [configure arguments...]
build() {
	dir=$1
	shift
	[ -x configure ] || autoreconf -fi
	mkdir -p "$dir"
	(cd "$dir" && { [ -f Makefile ] || "$top/configure" "$@"; } &&
	    make -j"$jobs")
}

summary() {
	pass=$(cat _build/test-suite.log _build-asan/test-suite.log 2>/dev/null |
	    sed -n 's/^# PASS: *//p' | awk '{s+=$1} END {print s+0}')
	fail=$(cat _build/test-suite.log _build-asan/test-suite.log 2>/dev/null |
	    sed -n 's/^# \(FAIL\|ERROR\|XPASS\): *//p' | awk '{s+=$1} END {print s+0}')
	skip=$(cat _build/test-suite.log _build-asan/test-suite.log 2>/dev/null |
	    sed -n 's/^# SKIP: *//p' | awk '{s+=$1} END {print s+0}')
	echo "test programs: $pass passed, $fail failed, $skip skipped"
}

case "${1:-}" in
demo)
	deps $PACKAGES
	build _build
	# The demo's admin API token: made once, kept with the demo's keys.
	mkdir -p demo-state && chmod 700 demo-state
	if [ ! -s demo-state/admin.token ]; then
		(umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' \
		    > demo-state/admin.token)
	fi
	echo "quickstart: keygated listens on http://127.0.0.1:8080 (^C stops it)"
	echo "quickstart: admin API on http://127.0.0.1:8081, token in demo-state/admin.token"
	exec ./_build/src/keygated -f -c contrib/keygate-demo.conf
	;;
test)
	deps $PACKAGES $TEST_PACKAGES
	autoreconf -fi
	status=0
	echo "== strict build (-Werror) and make check"
	build _build --enable-debug
	(cd _build && make -j"$jobs" check) || status=1
	echo "== ASan+UBSan build and make check"
	build _build-asan --enable-debug --enable-sanitizers
	(cd _build-asan && make -j"$jobs" check) ||
	    status=1
	echo "== fuzzing, ${FUZZ_SECONDS:-60}s per target"
	build _build-fuzz --enable-fuzzing CC=clang
	(cd _build-fuzz && make fuzz-run FUZZ_SECONDS="${FUZZ_SECONDS:-60}") ||
	    status=1
	echo "== make distcheck"
	(cd _build && make -j"$jobs" distcheck) || status=1
	for log in _build/test-suite.log _build-asan/test-suite.log; do
		if grep -q '^# \(FAIL\|ERROR\): *[1-9]' "$log" 2>/dev/null; then
			echo "== failures in $log"
			cat "$log"
		fi
	done
	summary
	exit $status
	;;
*)
	echo "usage: sh contrib/quickstart.sh demo|test" >&2
	exit 2
	;;
esac
