#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The test command: installs what is missing, builds, and runs every test
# (unit, integration, e2e with real QEMU guests under TCG).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/root.sh"
as_root "$0" "$@"
"$top/scripts/install-deps.sh"
"$top/scripts/build.sh"
cd "${BUILD_DIR:-$top/build}"
# The long forms (label "long") are for `ctest -L long`; CI runs their short forms.
exec ctest --output-on-failure --timeout 900 -LE long "$@"
