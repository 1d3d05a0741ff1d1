# SPDX-License-Identifier: LGPL-2.1-or-later
"""e2e-deb: the Debian packages built and installed as a user installs them.

scripts/build-deb.sh builds the .debs from this tree (dpkg-buildpackage -b,
lintian clean); they boot in the systemd VM of e2e-systemd (test_systemd.py,
the same Debian 12 root file system) and deb-vm-test.sh runs inside:
`dpkg -i` of the packages with the maintainer scripts under a real PID 1
systemd (sysusers.d, tmpfiles.d, enable and start), the service from the
installed files, a region added through conf.d and `systemctl reload`, the
installed man pages and example, an upgrade that re-executes the broker in
place (same MainPID, the region kept), and `dpkg --purge`.

Run: python3 test_deb.py BUILD_DIR  (needs root, mmdebstrap, the e2e guest kernel)
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.join(HERE, os.pardir, os.pardir)
sys.path.insert(0, os.path.join(HERE, os.pardir))  # tests/: harness
sys.path.insert(0, HERE)
from harness import guestlab  # noqa: E402
import test_systemd  # noqa: E402

PACKAGES = ["shmem-broker", "libshmem0", "libshmem-dev", "shmem-guest"]


class DebianPackages(unittest.TestCase):
    def setUp(self):
        self.assertEqual(os.geteuid(), 0, "needs root (mmdebstrap --mode=root, dpkg in the VM's root fs)")
        self.dir = tempfile.mkdtemp(prefix="shmem-e2e-deb-")
        self.image_dir = os.path.join(BUILD, "systemd-image")
        self.kernel = os.path.join(BUILD, "guest-image", "vmlinux")
        self.assertTrue(os.path.exists(self.kernel), f"{self.kernel} missing: e2e-guest-image builds it")

    def tearDown(self):
        guestlab.kill_all()
        if not os.environ.get("SHMEM_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def run_checked(self, argv, **kw):
        r = subprocess.run(argv, capture_output=True, text=True, **kw)
        self.assertEqual(r.returncode, 0, f"{' '.join(argv)}:\n{r.stdout}{r.stderr}")
        return r.stdout

    def make_overlay(self, debs):
        """The .debs in /debs, the test in /test.sh, shmem-test.service enabled."""
        root = os.path.join(self.dir, "overlay")
        os.makedirs(os.path.join(root, "debs"))
        for name in PACKAGES:
            found = [d for d in os.listdir(debs) if d.startswith(name + "_") and d.endswith(".deb")]
            self.assertEqual(len(found), 1, f"{name}: {found} in {debs}")
            shutil.copy(os.path.join(debs, found[0]), os.path.join(root, "debs"))
        units = os.path.join(root, "etc", "systemd", "system")
        os.makedirs(os.path.join(units, "multi-user.target.wants"))
        with open(os.path.join(units, "shmem-test.service"), "w") as f:
            # Not Wants= the broker: nothing of it is installed before the test's dpkg -i.
            f.write(test_systemd.TEST_UNIT.replace("Wants=shmem-brokerd.service\nAfter=shmem-brokerd.service\n", ""))
        os.symlink("/etc/systemd/system/shmem-test.service",
                   os.path.join(units, "multi-user.target.wants", "shmem-test.service"))
        shutil.copy(os.path.join(HERE, "deb-vm-test.sh"), os.path.join(root, "test.sh"))
        os.chmod(os.path.join(root, "test.sh"), 0o755)
        archive = os.path.join(self.dir, "overlay.cpio")
        with open(archive, "wb") as f:
            listing = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
            subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=listing, stdout=f, check=True)
        return archive

    def test_packages_install_and_run_under_systemd(self):
        debs = os.path.join(self.dir, "debs")
        self.run_checked([os.path.join(TOP, "scripts", "build-deb.sh"), debs], timeout=900)
        self.run_checked([os.path.join(HERE, "build-systemd-image.sh"), self.image_dir], timeout=900)
        text = test_systemd.boot_vm(self, self.dir, self.kernel,
                                    [os.path.join(self.image_dir, "rootfs.cpio"), self.make_overlay(debs)])
        test_systemd.assert_all_checks(self, text, os.path.join(HERE, "deb-vm-test.sh"))


if __name__ == "__main__":
    BUILD = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "build")
    unittest.main(verbosity=2)
