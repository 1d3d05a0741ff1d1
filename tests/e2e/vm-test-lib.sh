# SPDX-License-Identifier: LGPL-2.1-or-later
# Sourced by the scripts that run inside the systemd test VM
# (systemd-vm-test.sh, deb-vm-test.sh; tests/harness/systemdvm.py puts it at
# /vm-test-lib.sh): "ok - ..." per check, "not ok - ..." with the broker's
# status and journal (and what fail_more prints, if the script defines it)
# and exit 1 at the first failure; the unit's properties; waiting.

fail() {
        echo "not ok - $*"
        systemctl status --no-pager shmem-brokerd 2>&1 | head -n 12
        journalctl --no-pager -o short-monotonic -u shmem-brokerd | tail -n 40
        if command -v fail_more >/dev/null 2>&1; then
                fail_more
        fi
        exit 1
}
ok() { echo "ok - $*"; }
# shmemctl --json pretty-prints: one line without blanks, for grep patterns across members.
json_line() { tr -d ' \t\n'; }
prop() { systemctl show -p "$1" --value shmem-brokerd.service; }
# wait_for SECONDS WHAT COMMAND...
wait_for() {
        n=$(($1 * 10)); what=$2; shift 2
        while ! "$@" >/dev/null 2>&1; do
                n=$((n - 1))
                [ $n -gt 0 ] || fail "timed out waiting for $what"
                sleep 0.1
        done
}
running() { [ "$(prop ActiveState)/$(prop SubState)" = active/running ]; }
