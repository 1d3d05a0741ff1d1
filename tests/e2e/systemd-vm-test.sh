#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Runs inside the systemd test VM (test_systemd.py) as shmem-test.service,
# after PID 1 systemd started shmem-brokerd.service from the files
# `cmake --install` put in place. Prints "ok - ..." per check, or
# "not ok - ..." with the broker's journal and exits 1 at the first failure.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
T=60000   # ms, for shmem-peer
W=/tmp/w
mkdir -p $W

. /vm-test-lib.sh
fail_more() { for f in $W/*.out; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done; }
journal_count() { journalctl --no-pager -u shmem-brokerd -o cat | grep -c "$1"; }
inspect() { shmemctl --json inspect r > "$1" || fail "shmemctl inspect r"; }
peer() { # peer LABEL SCRIPT...: a host peer in the background, output in $W/LABEL.out
        label=$1; shift
        shmem-peer --label "$label" r "$@" > $W/$label.out 2>&1 &
        echo $! > $W/$label.pid
}
peer_done() { # peer_done LABEL: waits for it, fails unless it exited 0
        pid=$(cat $W/$1.pid)
        wait "$pid" || fail "peer $1 exited $?: $(cat $W/$1.out)"
}

ldconfig

# 1. systemd started the unit as installed: sysusers.d, tmpfiles.d,
#    RuntimeDirectory=, Type=notify with STATUS=.
wait_for 30 "shmem-brokerd active/running" running
ok "systemd started shmem-brokerd.service (Type=notify): $(prop ActiveState)/$(prop SubState)"

# libvirtd starts after the broker (Before=libvirtd.service) and autostarts
# vm-boot, whose QEMU (user libvirt-qemu) finds the socket of region 'boot'.
boot_running() { [ "$(virsh -c qemu:///system domstate vm-boot 2>/dev/null)" = running ]; }
wait_for 120 "libvirtd to autostart vm-boot" boot_running
boot_in() {
        shmemctl --json inspect boot | json_line |
                grep -q "\"uid\":$(id -u libvirt-qemu),[^}]*\"vm_name\":\"vm-boot\"[^}]*\"libvirt\":true"
}
wait_for 30 "vm-boot in 'shmemctl inspect boot' as libvirt's, uid libvirt-qemu" boot_in
ok "libvirtd autostarted vm-boot at boot; its QEMU (libvirt-qemu) is peer 0 of 'boot', confirmed as libvirt's"
settled() { [ "$(prop StatusText)" = "$1" ]; }
wait_for 10 "STATUS=2 regions, 1 peers, 0 control connections" settled "2 regions, 1 peers, 0 control connections"
ok "STATUS=$(prop StatusText)"
# The records came over journald's native socket with their fields (docs/systemd.md), and
# the installed catalog (/usr/local/lib/systemd/catalog) explains their MESSAGE_IDs.
ready_id=ec13ebdb5c654c33b2f184efac43c113 attached_id=b99b77873edf47c5b426628c1c8df7ef
journalctl --no-pager -u shmem-brokerd MESSAGE_ID=$ready_id SYSLOG_IDENTIFIER=shmem-brokerd -o cat |
        grep -q "^Ready: [0-9]* regions" || fail "no 'Ready' record with MESSAGE_ID=$ready_id in the journal"
attached() {
        journalctl --no-pager -u shmem-brokerd MESSAGE_ID=$attached_id REGION=boot VM_NAME=vm-boot PEER_INDEX=0 \
                PEER_UID="$(id -u libvirt-qemu)" -o cat | grep -q "^QEMU 'vm-boot' (pid [0-9]*) attached to 'boot'"
}
attached || fail "no record of vm-boot's attach with MESSAGE_ID=$attached_id REGION=boot VM_NAME=vm-boot PEER_INDEX=0"
journalctl --update-catalog || fail "journalctl --update-catalog"
journalctl --no-pager -x -u shmem-brokerd MESSAGE_ID=$attached_id | grep -q "A peer attached to a shared-memory region" ||
        fail "journalctl -x shows no catalog text for MESSAGE_ID=$attached_id"
ok "journald has the records' fields (MESSAGE_ID=, REGION=boot VM_NAME=vm-boot PEER_INDEX=0) and the catalog's text"
id -nG shmem-broker | grep -qw kvm || fail "user shmem-broker (sysusers.d) is not in group kvm: $(id shmem-broker)"
[ "$(stat -c %U /proc/"$(prop MainPID)")" = shmem-broker ] || fail "the broker does not run as shmem-broker"
ok "runs as shmem-broker, in group kvm (sysusers.d)"
[ -d /etc/shmem-broker/conf.d ] || fail "tmpfiles.d did not create /etc/shmem-broker/conf.d"
qdir=$(stat -c '%U:%G' /run/shmem-broker/qemu)
[ "$qdir" = shmem-broker:kvm ] || fail "/run/shmem-broker/qemu is $qdir, not shmem-broker:kvm"
qsock=$(stat -c '%G %a' /run/shmem-broker/qemu/r.sock)
[ "$qsock" = "kvm 660" ] || fail "r.sock is '$qsock', not 'kvm 660'"
ok "the QEMU socket directory and r.sock have group kvm, r.sock mode 660"

# 2. A real QEMU as an unprivileged member of kvm (as libvirt-qemu is): it can
#    reach the socket, and the hardened broker reads its identity in /proc.
setpriv --reuid=nobody --regid=nogroup --groups=kvm --inh-caps=-all \
        qemu-system-x86_64 -S -accel tcg -machine pc -nodefaults -display none \
        -name guest=vm-x -uuid 0b5e6f1e-6d8a-4c21-9d7e-3f1c2b4a5d60 \
        -chardev socket,path=/run/shmem-broker/qemu/r.sock,id=ivs \
        -device ivshmem-doorbell,chardev=ivs,vectors=17 > $W/qemu.out 2>&1 < /dev/null &
qemu=$!
qemu_in() { shmemctl inspect r | grep -q "vm-x"; }
wait_for 60 "the QEMU peer in 'shmemctl inspect r'" qemu_in
shmemctl --json inspect r | json_line | grep -q '"vm_uuid":"0b5e6f1e-6d8a-4c21-9d7e-3f1c2b4a5d60"' ||
        fail "inspect lacks the QEMU's UUID: $(shmemctl --json inspect r)"
ok "a QEMU running as nobody:kvm attached as peer 0, named vm-x with its UUID"

# 3. kill -9: Restart=on-failure and the fd store bring everything back.
#    A signals B before the kill; B reads it after the restart.
peer a info write 0 from-a wait-active 0x7 $T notify 0x4 expect 16 go $T wait-active 0xf $T write 32 a-saw expect 64 c-done $T
a_in() { grep -q "info index=1" $W/a.out; }
wait_for 30 "peer a" a_in
peer b info expect 0 from-a $T expect 16 go $T wait-from 0x2 $T wait-active 0xf $T write 48 b-saw expect 64 c-done $T
b_in() { grep -q "info index=2" $W/b.out; }
wait_for 30 "peer b" b_in
pending_b() { shmemctl --json inspect r | json_line | grep -q '"index":2,[^}]*"pending":\[1\]'; }
wait_for 10 "A's signal pending at B" pending_b
stored=$(prop NFileDescriptorStore)
[ -n "$stored" ] && [ "$stored" -gt 0 ] || fail "NFileDescriptorStore='$stored'"
ok "peers a (1) and b (2) attached; A's signal waits at B; $stored fds in systemd's fd store"
inspect $W/before.json
# inspect's connection closed: the fd store holds exactly the four peers'.
wait_for 10 "STATUS=2 regions, 4 peers, 2 control connections" settled "2 regions, 4 peers, 2 control connections"
pid=$(prop MainPID)
systemctl kill -s KILL --kill-who=main shmem-brokerd.service || fail "systemctl kill"
restarted() { [ "$(prop NRestarts)" = 1 ] && running && [ "$(prop MainPID)" != "$pid" ]; }
wait_for 30 "the restart" restarted
[ "$(journal_count 'Restored 2 regions and 4 connections')" = 1 ] || fail "no 'Restored 2 regions and 4 connections'"
inspect $W/after.json
cmp -s $W/before.json $W/after.json || fail "inspect changed across the kill: $(cat $W/before.json) $(cat $W/after.json)"
boot_in || fail "vm-boot is not in region 'boot' after the kill"
ok "after kill -9 systemd restarted the broker (NRestarts=1): 2 regions, 4 connections restored, inspect unchanged"
peer c info write 16 go expect 32 a-saw $T expect 48 b-saw $T write 64 c-done
peer_done c
peer_done a
peer_done b
grep -q "info index=3" $W/c.out || fail "the new peer is not index 3: $(cat $W/c.out)"
grep -q "senders=0x2" $W/b.out || fail "B never got A's signal from before the kill"
ok "a new peer joined as 3, a and b saw it; B got A's signal from before the kill"

# 4. Live upgrade under systemd: same MainPID, no restart counted.
inspect $W/before.json
wait_for 10 "STATUS=2 regions, 2 peers, 0 control connections" settled "2 regions, 2 peers, 0 control connections"
pid=$(prop MainPID)
kill -USR2 "$pid"
upgraded() { [ "$(journal_count 'Restored 2 regions and 2 connections')" = 1 ] && running; }
wait_for 30 "the upgrade (SIGUSR2)" upgraded
[ "$(prop MainPID)" = "$pid" ] && [ "$(prop NRestarts)" = 1 ] ||
        fail "upgrade: MainPID $pid -> $(prop MainPID), NRestarts $(prop NRestarts)"
inspect $W/after.json
cmp -s $W/before.json $W/after.json || fail "inspect changed across the upgrade"
ok "SIGUSR2 re-executed the broker in place (MainPID $pid, NRestarts 1), the QEMU peer kept"
by_id() { journalctl --no-pager -u shmem-brokerd MESSAGE_ID="$1" -o cat | grep -c "$2"; }
n_up=$(by_id 6f187aae750a477199cc76e3684e87f8 "^Upgrading: re-executing ")
n_restored=$(by_id 7509f8fb6c914ed7ae7e683d83817193 "^Restored [0-9]* regions")
[ "$n_up" = 1 ] && [ "$n_restored" = 2 ] ||
        fail "the journal has $n_up upgrading and $n_restored restored records by MESSAGE_ID, not 1 and 2"
ok "the journal has the kill's and the upgrade's restored records and the upgrading one by their MESSAGE_IDs"

# 5. systemctl reload: a refused file fails the reload with its reason and
#    changes nothing; a good one adds a region; the attached QEMU stays.
printf '[region added]\nsize = lots\n' > /etc/shmem-broker/conf.d/added.conf
systemctl reload shmem-brokerd.service 2>/dev/null && fail "systemctl reload accepted a broken file"
journalctl --no-pager -u shmem-brokerd -o cat | grep -q "conf.d/added.conf:2:" ||
        fail "the refused reload does not name added.conf:2 in the journal"
running || fail "not running after the refused reload"
ok "systemctl reload of a broken file fails, naming added.conf:2; the broker runs on"
printf '[region added]\nsize = 8K\n' > /etc/shmem-broker/conf.d/added.conf
systemctl reload shmem-brokerd.service || fail "systemctl reload"
shmemctl list | grep -q '^added ' || fail "no region 'added' after systemctl reload: $(shmemctl list)"
qemu_in || fail "the QEMU peer is gone after the reload"
ok "systemctl reload added region 'added'; the QEMU peer stayed"

# 6. shmemctl attach through libvirtd: region 'added' hot-plugged into the
#    running vm-boot; its QEMU joins. Destroying the domain frees both indices.
shmemctl attach vm-boot added --live > $W/attach.out 2>&1 || fail "shmemctl attach: $(cat $W/attach.out)"
added_in() { shmemctl --json inspect added | json_line | grep -q '"vm_name":"vm-boot"[^}]*"libvirt":true'; }
wait_for 30 "vm-boot in region 'added'" added_in
ok "shmemctl attach vm-boot added --live: vm-boot's QEMU joined 'added'"
virsh -c qemu:///system destroy vm-boot > /dev/null || fail "virsh destroy vm-boot"
left() { [ "$(shmemctl --json inspect boot | grep -c vm-boot)" = 0 ] && [ "$(shmemctl --json inspect added | json_line | grep -c vm-boot)" = 0 ]; }
wait_for 30 "vm-boot to leave 'boot' and 'added'" left
ok "virsh destroy vm-boot: its QEMU left both regions"

# 7. The watchdog (WatchdogSec=4s in a drop-in): pings keep coming.
w1=$(prop WatchdogTimestampMonotonic)
sleep 5
w2=$(prop WatchdogTimestampMonotonic)
[ "$w1" -gt 0 ] && [ "$w2" -gt "$w1" ] || fail "watchdog timestamps $w1 -> $w2"
[ "$(prop NRestarts)" = 1 ] || fail "restarted meanwhile: NRestarts $(prop NRestarts)"
ok "WATCHDOG=1 reaches systemd ($w1 -> $w2 us), no watchdog restart"

# 8. A clean stop: STOPPING=1, exit 0, the fd store emptied; a start comes up fresh.
systemctl stop shmem-brokerd.service || fail "systemctl stop"
[ "$(prop ActiveState)" = inactive ] || fail "after stop: $(prop ActiveState)"
[ "$(prop ExecMainStatus)" = 0 ] || fail "exit status $(prop ExecMainStatus)"
[ "$(prop NFileDescriptorStore)" = 0 ] || fail "fd store after stop: $(prop NFileDescriptorStore)"
ok "systemctl stop: exit 0, fd store empty"
systemctl start shmem-brokerd.service || fail "systemctl start"
running || fail "not running after start"
[ "$(shmemctl --json inspect r | json_line | grep -c vm-x)" = 0 ] || fail "the region kept its peer across a stop"
ok "systemctl start: a fresh broker, region r without peers"
kill "$qemu" 2>/dev/null
exit 0
