#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs what building, running and testing shmem-broker needs on Debian 12.
# Everything comes from Debian's archive; nothing else is downloaded.
# Usage: install-deps.sh [fuzz]   fuzz: also clang and libFuzzer (scripts/fuzz.sh)
set -eu

packages="build-essential cmake pkg-config libevent-dev libprotobuf-c-dev protobuf-c-compiler
check libinih-dev libvirt-dev libxml2-dev libsmartcols-dev libjson-c-dev python3 qemu-system-x86 busybox-static cpio xz-utils zstd kmod systemd
libvirt-daemon-system libvirt-clients mmdebstrap bash-completion"
# libFuzzer and the sanitizers' runtimes are only recommended by clang-14;
# llvm-14 has llvm-profdata and llvm-cov for the coverage figures.
if [ "${1:-}" = fuzz ]; then
        packages="$packages clang-14 libclang-rt-14-dev llvm-14"
fi

missing=
for p in $packages; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
# The e2e guest image fetches the Debian kernel with `apt-get download`
# (tests/e2e/build-guest-image.sh): that needs package lists, which a machine
# with everything installed may still lack.
lists=ok
apt-cache show linux-image-amd64 >/dev/null 2>&1 || lists=missing
if [ -z "$missing" ] && [ "$lists" = ok ]; then
        exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: missing packages:${missing:- none}, package lists: $lists;" \
             "run as root (or: sudo apt-get update && sudo apt-get install$missing)" >&2
        exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
if [ -n "$missing" ]; then
        echo "install-deps: installing$missing"
        # shellcheck disable=SC2086
        apt-get install -y -q --no-install-recommends $missing
fi
