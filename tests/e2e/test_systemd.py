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
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir))  # tests/: harness
from harness import guestlab  # noqa: E402

TIMEOUT = 300  # s for the whole VM run
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


class SystemdUnit(unittest.TestCase):
    def setUp(self):
        self.assertEqual(os.geteuid(), 0, "needs root (mmdebstrap --mode=root, cmake --install into a root fs)")
        self.build = BUILD
        self.dir = tempfile.mkdtemp(prefix="shmem-e2e-systemd-")
        self.image_dir = os.path.join(self.build, "systemd-image")
        self.kernel = os.path.join(self.build, "guest-image", "vmlinux")
        self.assertTrue(os.path.exists(self.kernel), f"{self.kernel} missing: e2e-guest-image builds it")

    def tearDown(self):
        guestlab.kill_all()
        if not os.environ.get("SHMEM_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def run_checked(self, argv, **kw):
        r = subprocess.run(argv, capture_output=True, text=True, **kw)
        self.assertEqual(r.returncode, 0, f"{' '.join(argv)}:\n{r.stdout}{r.stderr}")
        return r.stdout

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
            os.path.join(units, "shmem-test.service"): TEST_UNIT,
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
        wants = os.path.join(units, "multi-user.target.wants")
        os.symlink("/etc/systemd/system/shmem-test.service", os.path.join(wants, "shmem-test.service"))
        shutil.copy(os.path.join(HERE, "systemd-vm-test.sh"), os.path.join(root, "test.sh"))
        os.chmod(os.path.join(root, "test.sh"), 0o755)
        archive = os.path.join(self.dir, "overlay.cpio")
        with open(archive, "wb") as f:
            listing = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
            subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=listing, stdout=f, check=True)
        return archive

    def test_unit_under_real_systemd(self):
        self.run_checked([os.path.join(HERE, "build-systemd-image.sh"), self.image_dir], timeout=900)
        text = boot_vm(self, self.dir, self.kernel, [os.path.join(self.image_dir, "rootfs.cpio"), self.make_overlay()])
        # Every check of systemd-vm-test.sh ran.
        assert_all_checks(self, text, os.path.join(HERE, "systemd-vm-test.sh"))


def boot_vm(tc, workdir, kernel, archives):
    """Boots @kernel with the cpio @archives as its initramfs (the systemd
    image, then an overlay with /test.sh run by shmem-test.service); returns
    what the test printed, failing @tc unless it powered off with rc=0."""
    initrd = os.path.join(workdir, "initrd.cpio")
    with open(initrd, "wb") as out:
        for part in archives:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out)
    console, result = os.path.join(workdir, "console.log"), os.path.join(workdir, "result.log")
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-machine", "q35", "-cpu", "qemu64", "-m", "1536M",
            "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-serial", f"file:{console}", "-serial", f"file:{result}",
            "-kernel", kernel, "-initrd", initrd,
            "-append", "console=ttyS0 rdinit=/sbin/init panic=-1 quiet no_timer_check systemd.show_status=error"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=guestlab.die_with_parent)
    timed_out = False
    try:
        qemu_out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        qemu_out, _ = proc.communicate()
    text = read_text(result)
    tail = "".join(read_text(console).splitlines(True)[-40:])
    report = f"--- test output:\n{text}\n--- console (tail):\n{tail}\n--- qemu:\n{qemu_out.decode(errors='replace')}"
    print(text)
    tc.assertFalse(timed_out, f"the VM did not power off within {TIMEOUT} s\n{report}")
    tc.assertIn("SHMEM-RESULT rc=0", text, report)
    tc.assertNotIn("not ok", text, report)
    return text


def read_text(path):
    if not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        return f.read()


def assert_all_checks(tc, text, script):
    """Every `ok "..."` line of @script printed its "ok - ..."."""
    with open(script) as f:
        checks = sum(1 for line in f if line.lstrip().startswith('ok "'))
    tc.assertEqual(text.count("\nok - ") + text.startswith("ok - "), checks, text)


if __name__ == "__main__":
    BUILD = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "build")
    unittest.main(verbosity=2)
