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
#   sh contrib/quickstart.sh deps demo|test
#                                   only install what demo or test needs
#
# Builds happen out of tree in _build, _build-asan and _build-fuzz.  The
# test step reconfigures a build directory whose configure arguments differ
# from the ones it needs (a _build left by demo has no --enable-debug).
#
# apt-get waits up to 10 minutes for the dpkg lock (another apt-get or
# unattended-upgrades) instead of failing.
set -eu

cd "$(dirname "$0")/.."
top=$(pwd)
jobs=$(nproc 2>/dev/null || echo 2)

# What building and running keygated needs (demo: PyJWT to mint the demo's
# tokens, which the JWT tests use too), and what the tests add:
# cmocka for the unit tests, python3 for the integration tests, clang and
# its runtime for the fuzz targets, nginx for the auth_request test, and
# systemd-analyze (package systemd) to verify the installed unit, which
# also checks that the unit's /bin/kill (package procps) exists, and the
# openssl command line, which makes the TLS tests' certificates, and
# promtool (package prometheus), which checks the /metrics output and the
# example alert rules; the cluster tests start redis-server themselves;
# the web console's tests drive headless chromium through chromium-driver
# and python3-selenium, and headless firefox-esr
# (libhiredis-dev is the master's Redis client).
PACKAGES="build-essential autoconf automake pkg-config libevent-dev \
libpcre2-dev libjansson-dev libssl-dev libcurl4-openssl-dev libyaml-dev \
libhiredis-dev curl python3-jwt python3-cryptography"
TEST_PACKAGES="libcmocka-dev python3 clang libclang-rt-dev systemd procps \
openssl prometheus redis-server chromium chromium-driver python3-selenium \
firefox-esr"
# Any of these serves the nginx test; nginx-light is installed if none is.
NGINX_PACKAGES="nginx nginx-light nginx-core nginx-full nginx-extras"

APT_OPTS="-o DPkg::Lock::Timeout=600"
# (The tests of this script point it elsewhere.)
policy_rc_d=${QUICKSTART_POLICY_RC_D:-/usr/sbin/policy-rc.d}

# installed PACKAGE: is it installed (not merely known to dpkg)?
installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null |
	    grep -q ' installed$'
}

norc=
# A policy-rc.d made by deps() goes away however the script ends.
cleanup() {
	if [ -n "$norc" ]; then
		rm -f "$policy_rc_d"
		norc=
	fi
}
trap cleanup EXIT
trap 'cleanup; trap - INT; kill -INT $$' INT
trap 'cleanup; trap - TERM; kill -TERM $$' TERM

# deps PACKAGE...: install what is missing.
deps() {
	if [ "$(id -u)" -eq 0 ]; then sudo=; else sudo=sudo; fi
	missing=
	for p in "$@"; do
		installed "$p" || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	echo "quickstart: installing$missing"
	# shellcheck disable=SC2086 # APT_OPTS and missing are word lists
	$sudo apt-get $APT_OPTS update -qq
	# Installing nginx must not start a system nginx on port 80.
	if [ "$(id -u)" -eq 0 ] && [ ! -e "$policy_rc_d" ]; then
		norc=1
		printf '#!/bin/sh\nexit 101\n' >"$policy_rc_d"
		chmod 755 "$policy_rc_d"
	fi
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $sudo apt-get $APT_OPTS install -y -qq \
	    $missing >/dev/null
	cleanup
	return 0
}

# nginx_package: nothing if an nginx package is installed, else nginx-light.
nginx_package() {
	for p in $NGINX_PACKAGES; do
		installed "$p" && return 0
	done
	echo nginx-light
}

# build DIR [configure arguments...]: configure DIR with exactly these
# arguments (again if config.status was made with others), then make.
build() {
	dir=$1
	shift
	[ -x configure ] || autoreconf -fi
	mkdir -p "$dir"
	(cd "$dir" &&
	    { [ -f Makefile ] && [ -x config.status ] &&
	      [ "$(./config.status --config)" = "$*" ] ||
	      "$top/configure" "$@"; } &&
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
deps)
	case "${2:-}" in
	demo)
		# shellcheck disable=SC2086
		deps $PACKAGES
		;;
	test)
		nginx=$(nginx_package)
		# shellcheck disable=SC2086
		deps $PACKAGES $TEST_PACKAGES $nginx
		;;
	*)
		echo "usage: sh contrib/quickstart.sh deps demo|test" >&2
		exit 2
		;;
	esac
	;;
demo)
	# shellcheck disable=SC2086
	deps $PACKAGES
	# Any configuration will do for the demo: reuse _build as it is.
	if [ -f _build/Makefile ]; then
		(cd _build && make -j"$jobs")
	else
		build _build
	fi
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
	nginx=$(nginx_package)
	# shellcheck disable=SC2086
	deps $PACKAGES $TEST_PACKAGES $nginx
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
	# distcheck leaves its build tree behind when its tests fail
	for log in _build/test-suite.log _build-asan/test-suite.log \
	    _build/keygate-*/_build/sub/test-suite.log; do
		if grep -q '^# \(FAIL\|ERROR\): *[1-9]' "$log" 2>/dev/null; then
			echo "== failures in $log"
			cat "$log"
		fi
	done
	summary
	exit $status
	;;
*)
	echo "usage: sh contrib/quickstart.sh demo|test|deps demo|deps test" >&2
	exit 2
	;;
esac
