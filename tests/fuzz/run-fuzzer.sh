#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs one fuzz target (docs/fuzzing.md): first every input of its corpus in
# the tree (seeds and regression inputs: a crash fails), then fuzzing for
# $SHMEM_FUZZ_SECONDS (default 60; 0: until -runs= or a crash). What it
# finds goes to WORKDIR (corpus/ and artifacts/), never into the tree.
# Usage: run-fuzzer.sh BINARY CORPUS WORKDIR [libFuzzer options...]
set -eu
bin=$1 corpus=$2 work=$3
shift 3
mkdir -p "$work/corpus" "$work/artifacts"
# LSan on (the targets add their own ASan options: fuzz-util.h); an ASan or
# UBSan report ends the run with the input saved.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
dict=
[ -f "$corpus.dict" ] && dict="-dict=$corpus.dict"
# shellcheck disable=SC2086
exec nice -n 10 "$bin" -max_total_time="${SHMEM_FUZZ_SECONDS:-60}" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$work/artifacts/" $dict "$@" "$work/corpus" "$corpus"
