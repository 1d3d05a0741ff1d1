#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Configures and builds into BUILD_DIR (default: build). Extra args go to cmake.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$top/build}
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHMEM_WERROR=ON "$@" >/dev/null
cmake --build "$build" -j"$(nproc)"
