#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# build-systemd-image.sh OUTDIR
#
# Builds OUTDIR/rootfs.cpio: a Debian 12 root file system with systemd as
# init, the libraries the broker and shmemctl link against, QEMU (a paused
# QEMU is a real ivshmem peer inside the VM) and libvirtd. test_systemd.py appends the
# project, installed with `cmake --install`, as a second archive and boots it
# as an initramfs with the e2e guest kernel: a real PID 1 systemd runs the
# unit as shipped. Everything comes from Debian's archive through mmdebstrap;
# the archive is cached and rebuilt only when this script changes.
set -eu

die() { echo "build-systemd-image: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: build-systemd-image.sh OUTDIR"
command -v mmdebstrap >/dev/null 2>&1 || die "'mmdebstrap' not found: apt-get install mmdebstrap"
command -v cpio >/dev/null 2>&1 || die "'cpio' not found: apt-get install cpio"
[ "$(id -u)" -eq 0 ] || die "mmdebstrap --mode=root needs root"

mkdir -p "$1"
out=$(cd "$1" && pwd)
stamp=$(sha256sum "$0" | cut -c1-16)
if [ -f "$out/rootfs.cpio" ] && [ "$(cat "$out/rootfs.stamp" 2>/dev/null)" = "$stamp" ]; then
        exit 0
fi

root=$out/rootfs
rm -rf "$root" "$out/rootfs.cpio" "$out/rootfs.stamp"
# shmem-brokerd: libevent, protobuf-c, libinih; shmemctl: libvirt0; a QEMU
# peer: qemu-system-x86 (without its Recommends: no firmware beyond SeaBIOS);
# libvirt-daemon-system, enabled at boot as on a Debian host.
# The host's own package sources (mirror, security), as apt-get uses them here.
set --
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && set -- "$@" "$f"
done
mmdebstrap --quiet --variant=minbase --mode=root --format=directory \
        --aptopt='APT::Install-Recommends "false"' --aptopt='Acquire::Check-Valid-Until "false"' \
        --include=systemd,systemd-sysv,udev,libevent-core-2.1-7,libprotobuf-c1,libinih1,libvirt0,qemu-system-x86,libvirt-daemon-system,libvirt-clients \
        bookworm "$root" "$@" || die "mmdebstrap failed (is Debian's archive reachable?)"

rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/locale" "$root/usr/share/info" \
       "$root/var/cache/apt" "$root/var/lib/apt/lists"
echo systemd-vm > "$root/etc/hostname"
# No login prompts: a getty on the console would hang up the test's output.
ln -sf /dev/null "$root/etc/systemd/system/getty.target"
ln -sf /dev/null "$root/etc/systemd/system/serial-getty@.service"

(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$out/rootfs.cpio.tmp"
mv "$out/rootfs.cpio.tmp" "$out/rootfs.cpio"
rm -rf "$root"
echo "$stamp" > "$out/rootfs.stamp"
