#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds the Debian packages (debian/) from a copy of the source tree and
# checks them with lintian; the .debs and the .changes go to OUTDIR.
# Usage: build-deb.sh OUTDIR     (installs debhelper and lintian if missing)
set -eu

die() { echo "build-deb: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: build-deb.sh OUTDIR"
top=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)

# The tools the packaging needs, beyond install-deps.sh's build dependencies.
missing=
for p in debhelper lintian dpkg-dev fakeroot; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
        [ "$(id -u)" -eq 0 ] || die "missing packages:$missing; run as root (or: sudo apt-get install$missing)"
        echo "build-deb: installing$missing"
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi

# dpkg-buildpackage writes into the source tree and beside it: a copy of the
# files git knows (tracked, or new and not ignored) keeps both clean.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=$work/shmem-broker
mkdir "$src"
if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
        git -C "$top" ls-files -z --cached --others --exclude-standard |
                (cd "$top" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\n" "$f"; done' sh) |
                (cd "$top" && cpio -pdm --quiet "$src")
else
        (cd "$top" && tar --exclude='./build*' --exclude=./.git -cf - .) | (cd "$src" && tar -xf -)
fi

cd "$src"
DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" dpkg-buildpackage -b -us -uc >"$work/build.log" 2>&1 || {
        tail -n 60 "$work/build.log" >&2
        die "dpkg-buildpackage failed"
}
changes=$(ls "$work"/*.changes)
# lintian's default level (errors and warnings) must be silent.
lintian --fail-on error,warning "$changes" || die "lintian found the problems above"
rm -f "$out"/*.deb "$out"/*.changes "$out"/*.buildinfo
cp "$work"/*.deb "$changes" "$work"/*.buildinfo "$out"/
echo "build-deb: $(cd "$out" && ls ./*.deb | tr '\n' ' ')in $out"
