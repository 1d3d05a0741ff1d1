#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Checks the unit offline (no systemd as PID 1 needed): verify, then the
# exposure score against a threshold. Usage: check-units.sh UNIT BROKERD SHMEMCTL
set -eu
unit=$1
brokerd=$2
shmemctl=$3
# The goal is 2.0; the unit reaches 0.7, so a regression past 1.0 fails.
threshold=${SHMEM_EXPOSURE_MAX:-1.0}

if ! command -v systemd-analyze >/dev/null; then
        echo "check-units: systemd-analyze is missing: install the Debian package 'systemd'" >&2
        exit 1
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# verify wants the Exec*= binaries to exist: point them at the build's.
sed -e "s|^ExecStart=[^ ]*|ExecStart=$brokerd|" -e "s|^ExecReload=[^ ]*|ExecReload=$shmemctl|" \
        "$unit" > "$dir/shmem-brokerd.service"
# The man pages are in the source tree, not installed here: checked with man -l elsewhere.
if ! out=$(systemd-analyze verify --man=no "$dir/shmem-brokerd.service" 2>&1); then
        echo "$out" >&2
        echo "check-units: systemd-analyze verify failed" >&2
        exit 1
fi
# Anything verify prints is a finding, even when it exits 0.
if [ -n "$out" ]; then
        echo "$out" >&2
        echo "check-units: systemd-analyze verify printed warnings" >&2
        exit 1
fi
report=$(systemd-analyze security --offline=true "$dir/shmem-brokerd.service" 2>&1) || {
        echo "$report" >&2
        echo "check-units: exposure above $threshold" >&2
        exit 1
}
score=$(echo "$report" | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
echo "check-units: verify clean; exposure $score (threshold $threshold)"
awk -v s="$score" -v t="$threshold" 'BEGIN { exit !(s != "" && s + 0 <= t + 0) }' || {
        echo "$report" >&2
        echo "check-units: exposure $score is above $threshold" >&2
        exit 1
}
