# SPDX-License-Identifier: LGPL-2.1-or-later
"""e2e-deb: the Debian packages built and installed as a user installs them.

scripts/build-deb.sh builds the .debs from this tree (dpkg-buildpackage -b,
lintian clean); they boot in the systemd VM of e2e-systemd (test_systemd.py,
the same Debian 12 root file system) and deb-vm-test.sh runs inside:
`dpkg -i` of the packages with the maintainer scripts under a real PID 1
systemd (sysusers.d, tmpfiles.d, enable and start), the service from the
installed files, a region added through conf.d and `systemctl reload`, the
installed man pages and example, an upgrade that re-executes the broker in
place (same MainPID, the region kept), and `dpkg --purge`. On the host, the
packages unpacked: libshmem-dev's example built with `pkg-config libshmem`
(the unpacked tree's libshmem.pc alone), two of it greeting each other
through shmem-broker's shmem-brokerd.

Run: python3 test_deb.py BUILD_DIR  (needs root, mmdebstrap, the e2e guest kernel)
"""

import glob
import os
import shutil
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.join(HERE, os.pardir, os.pardir)
sys.path.insert(0, os.path.join(HERE, os.pardir))  # tests/: harness
sys.path.insert(0, HERE)
from harness import example, systemdvm  # noqa: E402
import test_systemd  # noqa: E402

PACKAGES = ["shmem-broker", "libshmem0", "libshmem-dev", "shmem-guest"]


class DebianPackages(systemdvm.SystemdVmCase):
    needs_root_for = "mmdebstrap --mode=root, dpkg in the VM's root fs"

    def deb(self, debs, name):
        found = [d for d in os.listdir(debs) if d.startswith(name + "_") and d.endswith(".deb")]
        self.assertEqual(len(found), 1, f"{name}: {found} in {debs}")
        return os.path.join(debs, found[0])

    def make_overlay(self, debs):
        """The .debs in /debs, shmem-test.service enabled."""
        root = os.path.join(self.dir, "overlay")
        os.makedirs(os.path.join(root, "debs"))
        for name in PACKAGES:
            shutil.copy(self.deb(debs, name), os.path.join(root, "debs"))
        # Not Wants= the broker: nothing of it is installed before the test's dpkg -i.
        self.enable_test_unit(root, test_systemd.TEST_UNIT.replace(
            "Wants=shmem-brokerd.service\nAfter=shmem-brokerd.service\n", ""))
        return root

    def example_from_the_packages(self, debs):
        """What a user of libshmem-dev builds: the example, with pkg-config libshmem of the packages."""
        root = os.path.join(self.dir, "unpacked")
        for name in ("shmem-broker", "libshmem0", "libshmem-dev"):
            self.run_checked(["dpkg-deb", "-x", self.deb(debs, name), root])
        pcs = glob.glob(os.path.join(root, "usr/lib/*/pkgconfig/libshmem.pc"))
        self.assertEqual(len(pcs), 1, f"libshmem.pc in libshmem-dev: {pcs}")
        pcdir = os.path.dirname(pcs[0])
        libdir = os.path.dirname(pcdir)
        flags = example.pkg_config(self, "pkg-config", pcdir, root, "--cflags", "--libs", "libshmem")
        self.assertEqual(flags, [f"-I{root}/usr/include", f"-L{libdir}", "-lshmem"])
        version = example.pkg_config(self, "pkg-config", pcdir, root, "--modversion", "libshmem")[0]
        src = os.path.join(root, "usr/share/doc/libshmem-dev/examples/shmem-hello.c")
        exe = example.build(self, "cc", src, flags, os.path.join(self.dir, "shmem-hello"))
        work = os.path.join(self.dir, "greet")
        os.mkdir(work)
        example.greet(self, exe, os.path.join(root, "usr/sbin/shmem-brokerd"), work, libdir, version)

    def test_packages_install_and_run_under_systemd(self):
        debs = os.path.join(self.dir, "debs")
        self.run_checked([os.path.join(TOP, "scripts", "build-deb.sh"), debs], timeout=900)
        self.example_from_the_packages(debs)
        self.boot(self.make_overlay(debs), "deb-vm-test.sh")


if __name__ == "__main__":
    systemdvm.SystemdVmCase.build = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "build")
    unittest.main(verbosity=2)
