#!/bin/sh
# coverage.sh: what a harness's corpus reaches, function by function.
#
#   sh regress/fuzz/coverage.sh HARNESS SOURCE... [-- CORPUS...]
#
# e.g. sh regress/fuzz/coverage.sh fuzz_ipc smtpd/queue.c smtpd/auth.c
#
# Builds HARNESS with clang's source-based coverage in a copy of the tree
# (the fuzz binaries in regress/fuzz/ are left alone), runs the seed
# corpus (or the CORPUS directories given) once, and prints llvm-cov's
# report for each SOURCE (a file compiled into a harness by #include is
# reported under its own name).
set -eu
[ $# -ge 2 ] || { echo "usage: coverage.sh harness source... [-- corpus...]" >&2; exit 2; }
h=$1
shift
top=$(cd "$(dirname "$0")/../.." && pwd)
srcs=
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
	srcs="$srcs $1"
	shift
done
[ $# -gt 0 ] && shift
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fuzzcov.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/regress"
cp -r "$top/common" "$top/smtpd" "$tmp/"
cp -r "$top/regress/fuzz" "$tmp/regress/"
rm -rf "$tmp/regress/fuzz/obj" "$tmp/regress/fuzz/out"
make -s -f "$tmp/regress/fuzz/Makefile" -j2 "$tmp/regress/fuzz/$h" \
    SAN="-fsanitize=fuzzer -fprofile-instr-generate -fcoverage-mapping" \
    >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; exit 1; }
if [ $# -eq 0 ]; then
	set -- "$top/regress/fuzz/corpus/$h"
fi
LLVM_PROFILE_FILE="$tmp/run.profraw" "$tmp/regress/fuzz/$h" -runs=0 "$@" \
    >"$tmp/run.log" 2>&1 || { tail -n 30 "$tmp/run.log"; exit 1; }
grep '^#.*DONE' "$tmp/run.log" || true
llvm-profdata merge -o "$tmp/run.profdata" "$tmp/run.profraw"
files=
for s in $srcs; do
	files="$files $tmp/$s"
done
# shellcheck disable=SC2086
llvm-cov report "$tmp/regress/fuzz/$h" -instr-profile="$tmp/run.profdata" \
    -show-functions $files
