# SPDX-License-Identifier: LGPL-2.1-or-later
"""e2e: the unit as shipped, under a real PID 1 systemd in a TCG VM.

The fake service manager (tests/integration/fakesystemd.py) proves the
protocols; this proves the packaging: `cmake --install` into a Debian 12 root
file system (build-systemd-image.sh), systemd-sysusers and systemd-tmpfiles
at boot, `systemctl enable` through the unit's [Install] section, and every
hardening setting of the unit. systemd-vm-test.sh runs inside as
shmem-test.service: STATUS=, the QEMU socket's group, libvirtd autostarting a
domain with a <shmem> device at boot, a real QEMU peer as an unprivileged kvm
member, kill -9 and Restart= with the fd store, SIGUSR2 upgrade, systemctl
reload, shmemctl attach through libvirtd, the watchdog, a clean stop.

Run: python3 test_systemd.py BUILD_DIR  (needs root, mmdebstrap, the e2e guest kernel)
"""

import os
import shutil
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir))  # tests/: harness
from harness import systemdvm  # noqa: E402

# SHMEM_KEEP=1 keeps the work directory (console.log, result.log, the initrd).

TEST_UNIT = """\
[Unit]
Description=shmem-broker systemd test (tests/e2e/systemd-vm-test.sh)
Wants=shmem-brokerd.service
After=shmem-brokerd.service
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
ExecStart=/bin/sh -c '/test.sh; echo "SHMEM-RESULT rc=$?"'
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS1

[Install]
WantedBy=multi-user.target
"""

# The only change to the unit as shipped: a watchdog short enough to watch.
WATCHDOG_DROPIN = "[Service]\nWatchdogSec=4s\n"
CONFIG = "[region r]\nsize = 64K\n[region boot]\nsize = 64K\n"
# A libvirt domain that autostarts at boot with region 'boot', as docs/libvirt.md
# writes it by hand: the unit's Before=libvirtd.service is what makes its socket
# exist when libvirtd starts the domain. No OS: SeaBIOS finds nothing to boot.
DOMAIN = """\
<domain type='qemu'>
  <name>vm-boot</name>
  <uuid>5f0c3f0e-9a55-4e0b-8d0e-2b7c1f6a9e11</uuid>
  <memory unit='MiB'>32</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/></features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <shmem name='boot'>
      <model type='ivshmem-doorbell'/>
      <server path='/run/shmem-broker/qemu/boot.sock'/>
      <msi vectors='17' ioeventfd='on'/>
    </shmem>
    <memballoon model='none'/>
  </devices>
</domain>
"""


class SystemdUnit(systemdvm.SystemdVmCase):
    needs_root_for = "mmdebstrap --mode=root, cmake --install into a root fs"

    def make_overlay(self):
        """The project as `cmake --install` lays it out, plus the test's own files."""
        root = os.path.join(self.dir, "overlay")
        # Everything under the prefix (/usr/local): systemd looks in its lib/systemd/system too.
        self.run_checked(["cmake", "--install", self.build], env=dict(os.environ, DESTDIR=root))
        prefix = self.run_checked(["cmake", "-L", "-N", self.build]).split("CMAKE_INSTALL_PREFIX:PATH=")[1].split()[0]
        bindir = os.path.join(root, prefix.lstrip("/"), "bin")
        shutil.copy(os.path.join(self.build, "clients", "tool", "shmem-peer"), bindir)
        # Enabled through its [Install] section, as `systemctl enable` does.
        self.run_checked(["systemctl", f"--root={root}", "enable", "shmem-brokerd.service"])
        units = os.path.join(root, "etc", "systemd", "system")
        files = {
            os.path.join(units, "shmem-brokerd.service.d", "watchdog.conf"): WATCHDOG_DROPIN,
            os.path.join(root, "etc", "shmem-broker", "broker.conf"): CONFIG,
            os.path.join(root, "etc", "libvirt", "qemu", "vm-boot.xml"): DOMAIN,
        }
        for path, text in files.items():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
        os.makedirs(os.path.join(root, "etc", "libvirt", "qemu", "autostart"))
        os.symlink("/etc/libvirt/qemu/vm-boot.xml", os.path.join(root, "etc", "libvirt", "qemu", "autostart", "vm-boot.xml"))
        self.enable_test_unit(root, TEST_UNIT)
        return root

    def test_unit_under_real_systemd(self):
        self.boot(self.make_overlay(), "systemd-vm-test.sh")


if __name__ == "__main__":
    systemdvm.SystemdVmCase.build = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "build")
    unittest.main(verbosity=2)
