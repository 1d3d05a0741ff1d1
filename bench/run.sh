#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs a benchmark and writes its figures as JSON (docs/BENCHMARKS.md).
# Usage: bench/run.sh [BUILD_DIR] [JSON_OUT] [bench-shmem options: --peers N, --churn N]
#          bench-shmem against a fresh broker (host processes only)
#        flock /tmp/shmem-e2e.lock bench/run.sh --factory [BUILD_DIR] [JSON_OUT] [factory.py options]
#          bench/factory.py: TCG guests through the factory, so under the lock
#          the e2e tests share (not taken here: a second flock on it would wait forever)
#        bench/run.sh --scale [BUILD_DIR] [JSON_OUT] [bench-scale.py options]
#          issue 10's table: regions at scale, churn, restart and upgrade, attach
#          at 16 and 64 peers, the QEMU-side attach beside contrib/ivshmem-server
#          (built on first use by bench/anchor-ivshmem-server.sh; root)
set -eu
if [ "${1:-}" = --scale ]; then
        shift
        build=${1:-build}
        [ $# -eq 0 ] || shift
        out=${1:-$build/bench-scale.json}
        [ $# -eq 0 ] || shift
        exec python3 "$(dirname "$0")/bench-scale.py" "$build" --json "$out" "$@"
fi
if [ "${1:-}" = --factory ]; then
        shift
        build=${1:-build}
        [ $# -eq 0 ] || shift
        out=${1:-$build/bench-factory.json}
        [ $# -eq 0 ] || shift
        exec python3 "$(dirname "$0")/factory.py" --build "$build" --json "$out" "$@"
fi
build=${1:-build}
[ $# -eq 0 ] || shift
out=${1:-$build/bench.json}
[ $# -eq 0 ] || shift
exec "$build/bench/bench-shmem" --broker "$build/broker/shmem-brokerd" --json "$out" "$@"
