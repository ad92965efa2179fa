#!/bin/sh
# Run fuzz targets for a bounded time each, several at once (make fuzz-run).
#
#	sh run.sh SRCDIR TARGET...
#
# Run from the fuzz build's top directory.  FUZZ_SECONDS (default 60) is
# each target's time; FUZZ_JOBS (default: the number of processors) how
# many run at once.  Each target starts from its seed corpus in
# SRCDIR/tests/fuzz/corpus/TARGET and keeps what it finds in
# tests/fuzz/corpus-run/TARGET; its output goes to tests/fuzz/fuzz_TARGET.log.
# Every target runs even after one fails; the end names each failure, with
# the tail of its log (the crash, the input in base64), and exits 1.

srcdir=$1
shift
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
[ "$jobs" -ge 1 ] 2>/dev/null || jobs=1

one() {
	mkdir -p "tests/fuzz/corpus-run/$1"
	./tests/fuzz/"fuzz_$1" -max_total_time="$seconds" -max_len=16384 \
	    -print_final_stats=1 "tests/fuzz/corpus-run/$1" \
	    "$srcdir/tests/fuzz/corpus/$1" > "tests/fuzz/fuzz_$1.log" 2>&1
	echo $? > "tests/fuzz/fuzz_$1.rc"
}

echo "fuzzing $# targets, ${seconds}s each, $jobs at a time"
n=0
for t in "$@"; do
	rm -f "tests/fuzz/fuzz_$t.rc"
	one "$t" &
	n=$((n + 1))
	if [ "$n" -ge "$jobs" ]; then
		wait
		n=0
	fi
done
wait

failed=
for t in "$@"; do
	rc=$(cat "tests/fuzz/fuzz_$t.rc" 2>/dev/null || echo "none")
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' \
	    "tests/fuzz/fuzz_$t.log")
	added=$(sed -n 's/^stat::new_units_added: *//p' \
	    "tests/fuzz/fuzz_$t.log")
	if [ "$rc" = 0 ]; then
		echo "fuzz_$t: ok, ${runs:-?} runs, ${added:-?} new inputs"
	else
		echo "fuzz_$t: FAILED (exit status $rc)"
		failed="$failed fuzz_$t"
	fi
done
for t in $failed; do
	echo "== $t: the end of tests/fuzz/$t.log"
	tail -n 60 "tests/fuzz/$t.log"
done
if [ -n "$failed" ]; then
	echo "fuzz-run: failed:$failed"
	exit 1
fi
exit 0
