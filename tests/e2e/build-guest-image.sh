#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# build-guest-image.sh OUTDIR SHMEM_GUEST_BINARY
#
# Builds the e2e test guest from Debian packages only (tests/e2e/README.md):
#   OUTDIR/vmlinux          the Debian kernel's ELF image, booted with -kernel
#                           through its PVH entry (2-3x faster under TCG than
#                           the bzImage)
#   OUTDIR/initramfs.cpio.gz  busybox-static, the vfio modules, shmem-guest and
#                           an /init that runs /test.sh (added by a per-test
#                           overlay cpio, see tests/harness/guestlab.py), prints
#                           "SHMEM-RESULT rc=N" and powers off
# The kernel package is fetched with `apt-get download` (never installed: the
# host's own kernel is not Debian's) and cached in OUTDIR/cache with the few
# files used unpacked from it, so a second run only repacks the initramfs. Installs nothing: a missing tool is an error
# that names its package.
set -eu

die() { echo "build-guest-image: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: build-guest-image.sh OUTDIR SHMEM_GUEST_BINARY"
out=$1
guest_bin=$2
[ -f "$guest_bin" ] || die "no such file: $guest_bin (build the shmem-guest target first)"

need() { # need COMMAND PACKAGE
        command -v "$1" >/dev/null 2>&1 || die "'$1' not found: apt-get install $2"
}
need dpkg-deb dpkg
need apt-get apt
need apt-cache apt
need cpio cpio
need tar tar
need gzip gzip
need xz xz-utils
need zstd zstd
need od coreutils
# The dynamic busybox package installs /bin/busybox too, but would need a libc
# in the initramfs.
dpkg-query -W -f '${Status}\n' busybox-static 2>/dev/null | grep -q 'install ok installed' ||
        die "busybox-static is not installed: apt-get install busybox-static"
busybox=/bin/busybox
[ -x "$busybox" ] || die "$busybox missing: reinstall busybox-static"

mkdir -p "$out/cache"
out=$(cd "$out" && pwd)
cache=$out/cache

# --- the kernel package ------------------------------------------------------
# The ABI name (linux-image-6.1.0-N-amd64) changes with every Debian point
# release: ask apt what the meta package points to now, and fall back to a
# cached .deb when apt's lists are missing (offline re-runs).
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1)
if [ -n "$pkg" ]; then
        deb=$(ls "$cache/${pkg}_"*.deb 2>/dev/null | head -n 1 || true)
        if [ -z "$deb" ]; then
                echo "build-guest-image: apt-get download $pkg" >&2
                (cd "$cache" && apt-get download "$pkg" >/dev/null 2>"$cache/apt.log") ||
                        die "apt-get download $pkg failed (run apt-get update?): $(tail -n 3 "$cache/apt.log")"
                deb=$(ls "$cache/${pkg}_"*.deb | head -n 1)
        fi
else
        deb=$(ls -t "$cache"/linux-image-*-amd64_*.deb 2>/dev/null | head -n 1 || true)
        [ -n "$deb" ] || die "apt-cache cannot resolve linux-image-amd64 and nothing is cached: run apt-get update"
fi

tree=$cache/kernel-tree
stamp=$cache/kernel-tree.stamp
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$deb" ]; then
        rm -rf "$tree" "$stamp" "$out/vmlinux"
        mkdir -p "$tree"
        # `dpkg-deb -x` of only what the image uses: the whole tree is 400 MB.
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tree" --wildcards './boot/vmlinuz-*' \
                './lib/modules/*/kernel/drivers/vfio/*' './lib/modules/*/kernel/virt/lib/*' ||
                die "cannot unpack $deb"
        echo "$deb" >"$stamp"
        # Older ABIs are of no more use.
        find "$cache" -maxdepth 1 -name 'linux-image-*.deb' ! -name "$(basename "$deb")" -delete
fi
kver=$(ls "$tree/lib/modules" | head -n 1)
[ -n "$kver" ] || die "no lib/modules in $deb"
vmlinuz=$tree/boot/vmlinuz-$kver
[ -f "$vmlinuz" ] || die "no boot/vmlinuz-$kver in $deb"

# --- vmlinux out of vmlinuz -------------------------------------------------
# The bzImage carries the ELF kernel as one compressed payload after its setup
# code. Find each place a compression magic occurs, try to decompress from
# there, and keep the first result that is an ELF file. Decompressors complain
# about the bytes after the payload: their status is ignored, the ELF check is
# what counts.
is_elf() { [ "$(od -An -c -N4 "$1" 2>/dev/null | tr -d ' ')" = '177ELF' ]; }

try_magic() { # try_magic GREP_PATTERN DECOMPRESSOR...
        pattern=$1
        shift
        for off in $(LC_ALL=C grep -obUaP "$pattern" "$vmlinuz" 2>/dev/null | cut -d: -f1); do
                tail -c +$((off + 1)) "$vmlinuz" | "$@" >"$out/vmlinux.tmp" 2>/dev/null || true
                if is_elf "$out/vmlinux.tmp"; then
                        mv "$out/vmlinux.tmp" "$out/vmlinux"
                        return 0
                fi
        done
        return 1
}

if [ ! -f "$out/vmlinux" ]; then
        try_magic '\xfd7zXZ\x00' xz -dc --single-stream ||
                try_magic '\x28\xb5\x2f\xfd' zstd -dcq ||
                try_magic '\x1f\x8b\x08' gzip -dc ||
                { rm -f "$out/vmlinux.tmp"; die "no xz/zstd/gzip ELF payload found in $vmlinuz"; }
fi

# --- the initramfs ----------------------------------------------------------
root=$(mktemp -d "$out/root.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/sbin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" \
        "$root/lib/modules" "$root/usr/bin" "$root/usr/sbin" "$root/run"
cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$guest_bin" "$root/bin/shmem-guest"
chmod 0755 "$root/bin/shmem-guest"

# Modules in dependency order (each one's `depends=` comes before it).
# vfio_virqfd is a module of its own only up to 6.2; skip it when absent.
modorder="irqbypass vfio vfio_virqfd vfio_iommu_type1 vfio-pci-core vfio-pci"
moddir=$tree/lib/modules/$kver/kernel
: >"$root/lib/modules/order"
loaded=" "
for m in $modorder; do
        src=$(find "$moddir" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n 1)
        if [ -z "$src" ]; then
                [ "$m" = vfio_virqfd ] && continue
                die "module $m not found in $deb"
        fi
        case $src in
        *.xz) xz -dc "$src" >"$root/lib/modules/$m.ko" ;;
        *.zst) zstd -dcq "$src" >"$root/lib/modules/$m.ko" ;;
        *) cp "$src" "$root/lib/modules/$m.ko" ;;
        esac
        # modinfo -F depends, without kmod: .modinfo is NUL-separated key=value.
        deps=$(tr '\0' '\n' <"$root/lib/modules/$m.ko" | sed -n 's/^depends=//p' | head -n 1)
        for d in $(echo "$deps" | tr ',' ' '); do
                case $loaded in
                *" $d "*) ;;
                *) die "module $m depends on $d, which is not loaded before it" ;;
                esac
        done
        loaded="$loaded$m "
        echo "$m" >>"$root/lib/modules/order"
done

cat >"$root/init" <<'EOF'
#!/bin/sh
# The e2e guest's init: set up, run /test.sh, report its status, power off.
/bin/busybox mount -t devtmpfs devtmpfs /dev
# The kernel found no /dev/console in the archive: take the console now.
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
for m in $(cat /lib/modules/order); do
        insmod /lib/modules/$m.ko || echo "init: insmod $m failed"
done
rc=127
if [ -f /test.sh ]; then
        cd /tmp
        sh /test.sh
        rc=$?
else
        echo "init: no /test.sh (add a test overlay to the initramfs)"
fi
echo "SHMEM-RESULT rc=$rc"
poweroff -f
EOF
chmod 0755 "$root/init"

(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -6n >"$out/initramfs.cpio.gz.tmp"
mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"
echo "$out/vmlinux $out/initramfs.cpio.gz ($kver)"
