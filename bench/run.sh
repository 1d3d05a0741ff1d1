#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs the benchmarks against a fresh broker and writes the figures as JSON.
# Usage: bench/run.sh [BUILD_DIR] [JSON_OUT]
set -eu
build=${1:-build}
out=${2:-$build/bench.json}
exec "$build/bench/bench-shmem" --broker "$build/broker/shmem-brokerd" --json "$out"
