#!/bin/sh
# run.sh: run the fuzz harnesses, called by the Makefile.
#
#   run.sh run SECONDS harness...	fuzz each for SECONDS
#   run.sh smoke 0 harness...		replay each seed corpus once
#
# The committed seeds (corpus/<harness>/) are only read: new inputs go to
# out/<harness>/corpus/, crash files to out/<harness>/.  Every harness is
# run even after one fails; the exit status is non-zero if any failed, and
# the crashing inputs are listed at the end.

set -u
mode=$1 secs=$2
shift 2
F=$(cd "$(dirname "$0")" && pwd)
failed=
found=

for h in "$@"; do
	seeds=$F/corpus/$h
	out=$F/out/$h
	mkdir -p "$out/corpus"
	case $mode in
	smoke)
		# each seed file once, as a regression test
		if ! "$F/$h" -rss_limit_mb=2048 -timeout=25 "$seeds"/* \
		    >"$out/smoke.log" 2>&1; then
			cat "$out/smoke.log"
			failed="$failed $h"
			# the last seed it started is the one that failed
			found="$found
  $h: $(sed -n 's/^Running: //p' "$out/smoke.log" | tail -n 1)"
		else
			echo "$h: $(ls "$seeds" | wc -l) seeds ok"
		fi
		;;
	run)
		echo "=== $h: ${secs}s"
		"$F/$h" -max_total_time="$secs" -print_final_stats=1 \
		    -rss_limit_mb=2048 -timeout=25 -artifact_prefix="$out/" \
		    "$out/corpus" "$seeds" >"$out/fuzz.log" 2>&1
		rc=$?
		grep -E '^(stat::|Done |#[0-9]+.*DONE)' "$out/fuzz.log"
		if [ $rc -ne 0 ]; then
			tail -n 60 "$out/fuzz.log"
			failed="$failed $h"
			found="$found
  $h: $(sed -n 's/.*Test unit written to //p' "$out/fuzz.log")"
		fi
		;;
	*)
		echo "usage: run.sh run|smoke seconds harness..." >&2
		exit 2
		;;
	esac
done

if [ -n "$failed" ]; then
	echo "FAILED:$failed"
	echo "failing inputs:$found"
	exit 1
fi
exit 0
