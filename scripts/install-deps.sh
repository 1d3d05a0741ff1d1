#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs what building, running and testing shmem-broker needs on Debian 12.
# Everything comes from Debian's archive; nothing else is downloaded.
set -eu

packages="build-essential cmake pkg-config libevent-dev libprotobuf-c-dev protobuf-c-compiler
check libinih-dev libvirt-dev python3 qemu-system-x86 busybox-static cpio xz-utils zstd kmod systemd
libvirt-daemon-system libvirt-clients"

missing=
for p in $packages; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
        exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: missing packages:$missing; run as root (or: sudo apt-get install$missing)" >&2
        exit 1
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
