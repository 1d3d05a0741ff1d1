# SPDX-License-Identifier: LGPL-2.1-or-later
# Sourced by the scripts that need root (installing packages, the tests that
# play other users, QEMU sockets of group kvm): as root they go on; as a user
# they run again through sudo. A fresh Debian installed as root has no sudo,
# so it is never required of root.
# Usage: . "$top/scripts/root.sh"; as_root "$0" "$@"
as_root() {
        [ "$(id -u)" -eq 0 ] && return 0
        if ! command -v sudo >/dev/null 2>&1; then
                echo "$(basename "$1"): needs root: run it as root, or install sudo" >&2
                exit 1
        fi
        exec sudo --preserve-env=BUILD_DIR "$@"
}
