#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The demo: installs what is missing, builds, starts the broker, boots two QEMU
# guests (TCG) and one host process on the region 'e2e', lets them exchange
# data and signals, and ends with `shmemctl inspect e2e`.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/root.sh"
as_root "$0" "$@"
"$top/scripts/install-deps.sh"
"$top/scripts/build.sh"
exec python3 "$top/tests/e2e/demo.py" "${BUILD_DIR:-$top/build}"
