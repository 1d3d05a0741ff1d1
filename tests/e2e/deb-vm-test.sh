#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Runs inside the systemd test VM (test_deb.py) as shmem-test.service: installs
# the packages of /debs with dpkg under PID 1 systemd, as a user does, and
# checks what they installed and started. Prints "ok - ..." per check, or
# "not ok - ..." with the broker's journal and exits 1 at the first failure.
set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

. /vm-test-lib.sh

# 1. dpkg -i: the maintainer scripts create the user, conf.d, enable and start the unit.
dpkg -i /debs/*.deb > /tmp/dpkg.out 2>&1 || fail "dpkg -i /debs/*.deb: $(cat /tmp/dpkg.out)"
for p in shmem-broker libshmem0 libshmem-dev shmem-guest; do
        [ "$(dpkg-query -W -f='${db:Status-Status}' $p)" = installed ] || fail "$p is not installed"
done
ok "dpkg -i installed shmem-broker, libshmem0, libshmem-dev and shmem-guest"
[ "$(systemctl is-enabled shmem-brokerd.service)" = enabled ] || fail "the unit is not enabled"
wait_for 30 "shmem-brokerd active/running" running
[ "$(prop FragmentPath)" = /lib/systemd/system/shmem-brokerd.service ] || fail "unit from $(prop FragmentPath)"
[ "$(prop ExecMainPID)" -gt 0 ] && [ "$(readlink /proc/"$(prop MainPID)"/exe)" = /usr/sbin/shmem-brokerd ] ||
        fail "the broker is not /usr/sbin/shmem-brokerd: $(readlink /proc/"$(prop MainPID)"/exe)"
ok "postinst enabled and started shmem-brokerd.service from /lib/systemd/system, running /usr/sbin/shmem-brokerd"
[ "$(stat -c %U /proc/"$(prop MainPID)")" = shmem-broker ] || fail "the broker does not run as shmem-broker"
id -nG shmem-broker | grep -qw kvm || fail "user shmem-broker is not in group kvm: $(id shmem-broker)"
ok "runs as shmem-broker, in group kvm (postinst's systemd-sysusers)"
[ -d /etc/shmem-broker/conf.d ] || fail "no /etc/shmem-broker/conf.d"
dpkg-query -W -f='${Conffiles}\n' shmem-broker | grep -q ' /etc/shmem-broker/broker.conf ' ||
        fail "broker.conf is not a conffile: $(dpkg-query -W -f='${Conffiles}' shmem-broker)"
ok "/etc/shmem-broker/broker.conf (a conffile) and conf.d/ installed"

# 2. The installed tools talk to the service; a region added through conf.d.
shmemctl list > /tmp/list.out 2>&1 || fail "shmemctl list: $(cat /tmp/list.out)"
shmemctl inspect deb > /dev/null 2>&1 && fail "region 'deb' exists before it was declared"
printf '[region deb]\nsize = 64K\n' > /etc/shmem-broker/conf.d/deb.conf
systemctl reload shmem-brokerd.service || fail "systemctl reload"
shmemctl inspect deb > /tmp/inspect.out 2>&1 || fail "shmemctl inspect deb after the reload: $(cat /tmp/inspect.out)"
[ -S /run/shmem-broker/qemu/deb.sock ] || fail "no QEMU socket for region 'deb'"
ok "shmemctl lists and inspects; conf.d/deb.conf and systemctl reload added region 'deb' with its QEMU socket"
shmem-guest --help > /tmp/guest.out 2>&1 || fail "shmem-guest --help: $(cat /tmp/guest.out)"
[ -x /usr/libexec/shmem-hotplug ] || fail "no /usr/libexec/shmem-hotplug"
for m in man1/shmemctl.1 man1/shmem-guest.1 man5/broker.conf.5 man8/shmem-brokerd.8 man8/shmem-hotplug.8; do
        [ -f /usr/share/man/$m.gz ] || fail "no /usr/share/man/$m.gz"
done
for f in /usr/include/shmem/shmem.h /usr/lib/x86_64-linux-gnu/pkgconfig/libshmem.pc \
         /usr/share/doc/libshmem-dev/examples/shmem-hello.c; do
        [ -f "$f" ] || fail "no $f"
done
ok "shmem-guest runs; the hotplug helper, the man pages, the header, libshmem.pc and the example are installed"

# 3. An upgrade (the same package again: prerm upgrade, postinst configure
#    OLD-VERSION) re-executes the broker in place: same MainPID, no restart,
#    the region still there.
pid=$(prop MainPID)
restored() { [ "$(journalctl --no-pager -u shmem-brokerd -o cat | grep -c 'Restored 1 regions')" = 1 ]; }
dpkg -i /debs/shmem-broker_*.deb > /tmp/dpkg.out 2>&1 || fail "dpkg -i shmem-broker again: $(cat /tmp/dpkg.out)"
wait_for 30 "the re-executed broker's 'Restored 1 regions'" restored
running || fail "not running after the upgrade"
[ "$(prop MainPID)" = "$pid" ] && [ "$(prop NRestarts)" = 0 ] ||
        fail "upgrade: MainPID $pid -> $(prop MainPID), NRestarts $(prop NRestarts)"
shmemctl inspect deb > /dev/null 2>&1 || fail "region 'deb' is gone after the upgrade"
ok "an upgrade re-executed the broker in place (shmemctl upgrade in postinst): MainPID $pid kept, no restart, region 'deb' kept"

# 4. dpkg --purge stops the service and takes its files away.
dpkg --purge shmem-broker shmem-guest libshmem-dev libshmem0 > /tmp/purge.out 2>&1 ||
        fail "dpkg --purge: $(cat /tmp/purge.out)"
[ "$(prop ActiveState)" = inactive ] || fail "after purge: $(prop ActiveState)"
[ ! -e /usr/sbin/shmem-brokerd ] && [ ! -e /etc/shmem-broker/broker.conf ] || fail "files left after purge"
ok "dpkg --purge stopped the service and removed its files and broker.conf"
exit 0
