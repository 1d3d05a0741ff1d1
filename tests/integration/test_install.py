# SPDX-License-Identifier: LGPL-2.1-or-later
"""integration-install: `cmake --install` staged (DESTDIR) under a prefix
that is not the configured one, and the library used from there.

Every file lands under DESTDIR/PREFIX, and none names /usr/local (the
configured prefix): the unit's ExecStart= and ExecReload=, the .pc's prefix
and the binaries follow the prefix of the install. `pkg-config libshmem`
works from the staged tree alone (PKG_CONFIG_LIBDIR, PKG_CONFIG_SYSROOT_DIR:
no other module, libprotobuf-c's neither, is needed), the installed example
client (examples/shmem-hello.c) builds with it, and two of them greet each
other through the installed broker.

Run: python3 test_install.py BUILD_DIR CMAKE PKG_CONFIG CC VERSION
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir))  # tests/: harness
import harness  # noqa: E402

PREFIX = "/opt/shmem-test"

# Relative to PREFIX; the library directory is GNUInstallDirs' (lib or lib/MULTIARCH).
EXPECTED = [
    "sbin/shmem-brokerd", "bin/shmemctl", "libexec/shmem-hotplug",
    "include/shmem/shmem.h", "include/shmem/shmem-version.h",
    "lib/systemd/system/shmem-brokerd.service",
    "lib/sysusers.d/shmem-broker.conf", "lib/tmpfiles.d/shmem-broker.conf",
    "lib/systemd/catalog/shmem-broker.catalog",
    "share/man/man1/shmemctl.1", "share/man/man5/broker.conf.5", "share/man/man8/shmem-brokerd.8",
    "share/doc/shmem-broker/examples/broker.conf", "share/doc/shmem-broker/examples/shmem-hello.c",
    "share/bash-completion/completions/shmemctl", "share/bash-completion/completions/shmem-brokerd",
]
LIBRARY = ["libshmem.so", "libshmem.so.0", "pkgconfig/libshmem.pc"]


class Install(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="shmem-install-")
        cls.destdir = os.path.join(cls.dir, "stage")
        r = subprocess.run([CMAKE, "--install", BUILD, "--prefix", PREFIX], capture_output=True, text=True,
                           env=dict(os.environ, DESTDIR=cls.destdir))
        assert r.returncode == 0, f"cmake --install failed:\n{r.stdout}{r.stderr}"
        cls.root = cls.destdir + PREFIX
        pcs = [os.path.join(d, f) for d, _, fs in os.walk(cls.root) for f in fs if f == "libshmem.pc"]
        assert len(pcs) == 1, f"libshmem.pc installed {len(pcs)} times: {pcs}"
        cls.pkgconfig_dir = os.path.dirname(pcs[0])
        cls.libdir = os.path.dirname(cls.pkgconfig_dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def installed(self):
        return [os.path.join(d, f) for d, ds, fs in os.walk(self.destdir) for f in fs + ds]

    def test_everything_under_the_prefix(self):
        outside = [p for p in self.installed() if not (p + "/").startswith(self.root + "/")
                   and not (self.root + "/").startswith(p + "/")]
        self.assertEqual(outside, [], "installed outside the prefix")
        for rel in EXPECTED:
            self.assertTrue(os.path.isfile(os.path.join(self.root, rel)), f"{rel} not installed")
        for rel in LIBRARY:
            self.assertTrue(os.path.exists(os.path.join(self.libdir, rel)), f"{rel} not in {self.libdir}")

    def test_nothing_names_the_configured_prefix(self):
        for path in self.installed():
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    self.assertNotIn(b"/usr/local", f.read(), f"{path} names /usr/local")

    def test_unit_and_pc_name_the_prefix(self):
        with open(os.path.join(self.root, "lib/systemd/system/shmem-brokerd.service")) as f:
            unit = f.read()
        self.assertIn(f"\nExecStart={PREFIX}/sbin/shmem-brokerd\n", unit)
        self.assertIn(f"\nExecReload={PREFIX}/bin/shmemctl reload\n", unit)
        with open(os.path.join(self.pkgconfig_dir, "libshmem.pc")) as f:
            pc = f.read()
        self.assertIn(f"\nprefix={PREFIX}\n", pc)
        self.assertIn(f"\nlibdir={self.libdir[len(self.destdir):]}\n", pc)
        self.assertNotRegex(pc, r"(?m)^Requires")

    def test_bash_completion_finds_the_installed_completions(self):
        """bash-completion's loader finds both under the prefix's share/ (XDG_DATA_DIRS, as for
        its own prefix /usr/share): the completionsdir is bash-completion.pc's, relative."""
        loader = "/usr/share/bash-completion/bash_completion"
        if not os.path.isfile(loader):
            self.fail(f"{loader} is missing: install the Debian package 'bash-completion' "
                      "(scripts/install-deps.sh does)")
        r = subprocess.run(["bash", "--norc", "--noprofile", "-c",
                            f"source {loader}; __load_completion shmemctl && __load_completion shmem-brokerd; "
                            "complete -p shmemctl shmem-brokerd"],
                           capture_output=True, text=True, env=dict(os.environ, XDG_DATA_DIRS=f"{self.root}/share"),
                           timeout=30)
        self.assertEqual(r.stdout.splitlines(), ["complete -F _shmemctl shmemctl",
                                                 "complete -F _shmem_brokerd shmem-brokerd"], r.stderr)

    def pkg_config(self, *args):
        return harness.example.pkg_config(self, PKG_CONFIG, self.pkgconfig_dir, self.destdir, *args)

    def test_example_built_with_pkg_config_runs_against_the_installed_broker(self):
        flags = self.pkg_config("--cflags", "--libs", "libshmem")
        self.assertEqual(flags, [f"-I{self.root}/include", f"-L{self.libdir}", "-lshmem"])
        self.assertEqual(self.pkg_config("--modversion", "libshmem"), [VERSION])
        self.pkg_config("--cflags", "--libs", "--static", "libshmem")
        src = os.path.join(self.root, "share/doc/shmem-broker/examples/shmem-hello.c")
        extra = os.environ.get("SHMEM_EXAMPLE_CFLAGS", "").split()  # the sanitizers, in their build
        exe = harness.example.build(self, CC, src, flags, os.path.join(self.dir, "shmem-hello"), extra)
        harness.example.greet(self, exe, os.path.join(self.root, "sbin/shmem-brokerd"), self.dir, self.libdir,
                              VERSION)


if __name__ == "__main__":
    BUILD, CMAKE, PKG_CONFIG, CC = (os.path.abspath(sys.argv.pop(1)), sys.argv.pop(1), sys.argv.pop(1),
                                    sys.argv.pop(1))
    VERSION = sys.argv.pop(1)
    unittest.main(verbosity=2)
