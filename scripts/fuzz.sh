#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds the libFuzzer targets (tests/fuzz, clang, in build-fuzz) and runs
# them, one at a time (docs/fuzzing.md):
#   fuzz.sh                          each target for $SHMEM_FUZZ_SECONDS (60): ctest -L fuzz
#   fuzz.sh --runs N [TARGET...]     each until N executions, a summary line each
#   fuzz.sh --coverage [TARGET...]   line coverage of what the corpora reach (build-fuzz-cov)
# What the fuzzers find stays in build-fuzz/tests/fuzz/work/TARGET/.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$top/build-fuzz}
targets="dispatch config qemu-identity state libshmem"

mode=smoke runs=
case "${1:-}" in
--runs) mode=long runs=${2:?--runs N}; shift 2 ;;
--coverage) mode=coverage; shift ;;
esac
[ $# -gt 0 ] && targets="$*"

"$top/scripts/install-deps.sh" fuzz

# $1: build directory; the rest: cmake options.
configure() {
        dir=$1
        shift
        cmake -S "$top" -B "$dir" -DCMAKE_C_COMPILER=clang-14 -DCMAKE_BUILD_TYPE=RelWithDebInfo \
              -DSHMEM_WERROR=ON -DSHMEM_FUZZ=ON "$@" >/dev/null
        cmake --build "$dir" -j"$(nproc)" --target fuzz-targets
}

case $mode in
smoke)
        configure "$build" -DSHMEM_FUZZ_SECONDS="${SHMEM_FUZZ_SECONDS:-60}"
        cd "$build"
        exec ctest --output-on-failure -L fuzz
        ;;
long)
        configure "$build"
        for t in $targets; do
                work=$build/tests/fuzz/work/$t
                mkdir -p "$work"
                start=$(date +%s)
                SHMEM_FUZZ_SECONDS=0 "$top/tests/fuzz/run-fuzzer.sh" "$build/tests/fuzz/fuzz-$t" \
                        "$top/tests/fuzz/corpus/$t" "$work" -runs="$runs" >"$work/long.log" 2>&1 ||
                        { tail -50 "$work/long.log"; exit 1; }
                end=$(date +%s)
                # libFuzzer's last status line: cov (edges), ft (features), corp (inputs kept).
                last=$(grep -E '^#[0-9]+' "$work/long.log" | tail -1)
                execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/long.log")
                echo "fuzz-$t: $execs executions in $((end - start)) s: $last"
        done
        ;;
coverage)
        configure "$build"
        cov=${FUZZ_COVERAGE_BUILD_DIR:-$top/build-fuzz-cov}
        configure "$cov" -DSHMEM_FUZZ_COVERAGE=ON
        for t in $targets; do
                work=$build/tests/fuzz/work/$t
                mkdir -p "$work/corpus" "$cov/profiles"
                rm -f "$cov/profiles/$t".*
                # Every input once: the corpus the fuzzer kept and the one in the tree.
                LLVM_PROFILE_FILE="$cov/profiles/$t.%p.profraw" "$cov/tests/fuzz/fuzz-$t" -runs=0 \
                        "$work/corpus" "$top/tests/fuzz/corpus/$t" >/dev/null 2>&1
                llvm-profdata-14 merge -sparse "$cov/profiles/$t".*.profraw -o "$cov/profiles/$t.profdata"
                echo "== fuzz-$t"
                llvm-cov-14 report "$cov/tests/fuzz/fuzz-$t" -instr-profile="$cov/profiles/$t.profdata" \
                        -ignore-filename-regex='(tests/fuzz/|\.pb-c\.c$)'
        done
        ;;
esac
