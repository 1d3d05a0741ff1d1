#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The anchor of the attach bench (docs/BENCHMARKS.md, "The anchor"): QEMU's own
# contrib/ivshmem-server, built from Debian's qemu source package at bench time
# into a cache directory outside the tree. Neither its code nor its binary is
# part of this project. Prints the binary's path on stdout; the build's output
# goes to CACHE/build.log.
# Usage: bench/anchor-ivshmem-server.sh [CACHE_DIR]
#        (default $SHMEM_ANCHOR_CACHE, else ~/.cache/shmem-broker-anchor)
# Needs root the first time (apt-get: a deb-src line, dpkg-dev and the build
# dependencies below); about 2 minutes on 2 vCPUs.
set -eu
cache=${1:-${SHMEM_ANCHOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shmem-broker-anchor}}
bin=$cache/ivshmem-server
me=anchor-ivshmem-server.sh
if [ -x "$bin" ]; then
        echo "$bin"
        exit 0
fi
mkdir -p "$cache"
log=$cache/build.log
: >"$log"

# Debian package -> the command or file that proves it is installed.
need="dpkg-dev:dpkg-source ninja-build:ninja meson:meson pkg-config:pkg-config python3:python3
      gcc:gcc libglib2.0-dev:/usr/include/glib-2.0/glib.h libpixman-1-dev:/usr/include/pixman-1/pixman.h
      xz-utils:xz"
missing=
for pair in $need; do
        pkg=${pair%%:*} what=${pair#*:}
        case $what in
        /*) [ -e "$what" ] || missing="$missing $pkg" ;;
        *) command -v "$what" >/dev/null 2>&1 || missing="$missing $pkg" ;;
        esac
done
apt_get() {
        if [ "$(id -u)" -ne 0 ]; then
                echo "$me: needs root to run apt-get $* (or install it yourself)" >&2
                exit 1
        fi
        if ! DEBIAN_FRONTEND=noninteractive apt-get -y -q "$@" >>"$log" 2>&1; then
                echo "$me: apt-get $* failed (see $log):" >&2
                tail -5 "$log" >&2
                exit 1
        fi
}
if [ -n "$missing" ]; then
        if [ "$(id -u)" -ne 0 ]; then
                echo "$me: missing packages:$missing: install them (apt-get install$missing) or run this as root" >&2
                exit 1
        fi
        echo "$me: installing$missing" >&2
        apt_get install --no-install-recommends $missing
fi

# The source package: a deb-src line for bookworm, unless apt has one.
if ! grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        [ "$(id -u)" -eq 0 ] || { echo "$me: apt has no deb-src line; needs root to add one" >&2; exit 1; }
        cat >/etc/apt/sources.list.d/shmem-bench-deb-src.sources <<EOF
# Added by shmem-broker's bench/anchor-ivshmem-server.sh (QEMU's source package).
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        echo "$me: added /etc/apt/sources.list.d/shmem-bench-deb-src.sources" >&2
        apt_get update
fi
src=$(find "$cache" -maxdepth 1 -type d -name 'qemu-*' | head -1)
if [ -z "$src" ]; then
        echo "$me: apt-get source qemu into $cache" >&2
        (cd "$cache" && apt-get source -q qemu >>"$log" 2>&1) || {
                echo "$me: apt-get source qemu failed (see $log):" >&2
                tail -5 "$log" >&2
                exit 1
        }
        src=$(find "$cache" -maxdepth 1 -type d -name 'qemu-*' | head -1)
fi

# No emulator, no user mode: the tools alone, of which ivshmem-server is one.
echo "$me: building $src/b/contrib/ivshmem-server/ivshmem-server" >&2
(
        cd "$src"
        mkdir -p b
        cd b
        [ -f build.ninja ] || ../configure --target-list= --disable-system --disable-user --enable-tools \
                --without-default-features --disable-docs
        ninja -j2 contrib/ivshmem-server/ivshmem-server
) >>"$log" 2>&1 || {
        echo "$me: building ivshmem-server failed (see $log):" >&2
        tail -15 "$log" >&2
        exit 1
}
cp "$src/b/contrib/ivshmem-server/ivshmem-server" "$bin"
echo "$bin"
