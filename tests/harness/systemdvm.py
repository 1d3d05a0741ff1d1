# SPDX-License-Identifier: LGPL-2.1-or-later
"""systemdvm: the Debian 12 VM under a real PID 1 systemd that e2e-systemd and
e2e-deb boot (TCG). Its initramfs is the root file system of
tests/e2e/build-systemd-image.sh plus an overlay of the test's own: the files
it installs, shmem-test.service (enabled) and the script that service runs,
/test.sh, with tests/e2e/vm-test-lib.sh beside it. The script prints
"ok - ..." per check and powers the VM off; SystemdVmCase.boot() fails the
test unless it ended with rc=0 and every check it has ran.
"""

import os
import shutil
import subprocess
import tempfile
import unittest

from . import guestlab

E2E = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "e2e")
TIMEOUT = 300  # s for the whole VM run
# SHMEM_KEEP=1 keeps the work directory (console.log, result.log, the initrd).


class SystemdVmCase(unittest.TestCase):
    """A test that boots the systemd VM; `build` is the build directory (set by the test's main)."""

    build = None
    needs_root_for = "mmdebstrap --mode=root, files installed into a root fs"

    def setUp(self):
        self.assertEqual(os.geteuid(), 0, f"needs root ({self.needs_root_for})")
        self.dir = tempfile.mkdtemp(prefix=f"shmem-{self.id().split('.')[-2].lower()}-")
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

    def enable_test_unit(self, root, unit_text):
        """shmem-test.service in @root's /etc/systemd/system, wanted by multi-user.target."""
        units = os.path.join(root, "etc", "systemd", "system")
        wants = os.path.join(units, "multi-user.target.wants")
        os.makedirs(wants, exist_ok=True)
        with open(os.path.join(units, "shmem-test.service"), "w") as f:
            f.write(unit_text)
        os.symlink("/etc/systemd/system/shmem-test.service", os.path.join(wants, "shmem-test.service"))

    def boot(self, root, script):
        """Boots the VM with @root as the overlay and @script (tests/e2e/NAME) as /test.sh; returns its output."""
        self.run_checked([os.path.join(E2E, "build-systemd-image.sh"), self.image_dir], timeout=900)
        for src, dst in ((os.path.join(E2E, script), "test.sh"), (os.path.join(E2E, "vm-test-lib.sh"), "vm-test-lib.sh")):
            shutil.copy(src, os.path.join(root, dst))
            os.chmod(os.path.join(root, dst), 0o755)
        overlay = os.path.join(self.dir, "overlay.cpio")
        with open(overlay, "wb") as f:
            listing = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
            subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=listing, stdout=f, check=True)
        text = self._run_vm([os.path.join(self.image_dir, "rootfs.cpio"), overlay])
        # Every `ok "..."` line of the script printed its "ok - ...".
        with open(os.path.join(E2E, script)) as f:
            checks = sum(1 for line in f if line.lstrip().startswith('ok "'))
        self.assertEqual(text.count("\nok - ") + text.startswith("ok - "), checks, text)
        return text

    def _run_vm(self, archives):
        initrd = os.path.join(self.dir, "initrd.cpio")
        with open(initrd, "wb") as out:
            for part in archives:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out)
        console, result = os.path.join(self.dir, "console.log"), os.path.join(self.dir, "result.log")
        argv = ["qemu-system-x86_64", "-accel", "tcg", "-machine", "q35", "-cpu", "qemu64", "-m", "1536M",
                "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-serial", f"file:{console}", "-serial", f"file:{result}",
                "-kernel", self.kernel, "-initrd", initrd,
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
        text = _read_text(result)
        tail = "".join(_read_text(console).splitlines(True)[-40:])
        report = f"--- test output:\n{text}\n--- console (tail):\n{tail}\n--- qemu:\n{qemu_out.decode(errors='replace')}"
        print(text)
        self.assertFalse(timed_out, f"the VM did not power off within {TIMEOUT} s\n{report}")
        self.assertIn("SHMEM-RESULT rc=0", text, report)
        self.assertNotIn("not ok", text, report)
        return text


def _read_text(path):
    if not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        return f.read()
