#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The unit and integration tests built with AddressSanitizer (LeakSanitizer
# on) and UBSan, in build-asan (docs/fuzzing.md). Every report fails the run,
# also one from a broker or a client that a Python test started and whose
# stderr nobody reads: reports go to files, counted at the end.
# Usage: sanitize.sh [ctest options...]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${SANITIZE_BUILD_DIR:-$top/build-asan}
"$top/scripts/install-deps.sh"
BUILD_DIR=$build "$top/scripts/build.sh" -DSHMEM_SANITIZE=ON
logs=$build/sanitizer-reports
rm -rf "$logs"
mkdir -p "$logs"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:disable_coredump=1:strict_string_checks=1:detect_stack_use_after_return=1:log_path=$logs/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan"
cd "$build"
status=0
ctest --output-on-failure --timeout 900 -L 'unit|integration' -LE long "$@" || status=$?
for f in "$logs"/*; do
        [ -e "$f" ] || continue
        echo "sanitize: report in $f:" >&2
        cat "$f" >&2
        status=1
done
[ "$status" -eq 0 ] && echo "sanitize: no sanitizer report"
exit "$status"
