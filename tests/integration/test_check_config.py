# SPDX-License-Identifier: LGPL-2.1-or-later
"""shmem-brokerd --check-config: the files and options checked as a start
would check them, a summary, exit 0 or 1, nothing started or changed (as
nginx -t or sshd -t). The real broker binary.

Run: python3 test_check_config.py BUILD_DIR
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
import harness  # noqa: E402

BUILD = None
NOBODY = 65534

VALID = """[limits]
region-bytes = 64M

[client vm-infotainment]
allow = camera* audio

[region camera0]
size = 16M
max-peers = 4
persistent = yes

[region audio]
size = 1M
"""


class CheckConfig(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="shmem-check-config-")
        os.chmod(self.dir, 0o755)
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.conf = os.path.join(self.dir, "broker.conf")
        self.rundir = os.path.join(self.dir, "run")
        self.brokerd = os.path.join(BUILD, "broker", "shmem-brokerd")

    def check(self, text, *options, user=None):
        with open(self.conf, "w") as f:
            f.write(text)
        os.chmod(self.conf, 0o644)
        return subprocess.run([self.brokerd, "--config", self.conf, "--rundir", self.rundir, "--check-config",
                               *options], capture_output=True, text=True, timeout=30, user=user)

    def test_valid(self):
        out = self.check(VALID)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout, f"{self.conf}: valid; 2 regions declared (1 persistent, 16777216 bytes), "
                                     f"2 access rules, run directory {self.rundir}\n")
        self.assertFalse(os.path.exists(self.rundir), "a check created the run directory")
        # Options count as at a start: --region adds one.
        out = self.check(VALID, "--region", "extra:4K")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("3 regions declared", out.stdout)

    def test_limits_beyond_the_fd_limit(self):
        # Valid, but what the fd limit leaves regions and peers is said (stderr: stdout is the summary).
        low = ["prlimit", "--nofile=2600", self.brokerd, "--no-config", "--rundir", self.rundir, "--check-config"]
        out = subprocess.run(low, capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("File descriptor limit 2600 is below the 6714 fds set aside for 1024 connections, "
                      "4096 queued fds (--max-total-queued-fds) and the broker's own: no region and no peer fits",
                      out.stderr)
        out = subprocess.run(low + ["--max-connections", "64", "--max-total-queued-fds", "64"],
                             capture_output=True, text=True, timeout=30)
        self.assertIn("File descriptor limit 2600 leaves 919 fds to regions and peers", out.stderr)
        self.assertIn("below the 1600 that --max-regions=256", out.stderr)
        out = subprocess.run(low + ["--max-regions", "10", "--max-connections", "16", "--max-total-queued-fds", "16"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual((out.returncode, out.stderr), (0, ""))

    def test_syntax_error_names_file_and_line(self):
        out = self.check(VALID + "[region broken]\nsize = lots\n")
        self.assertEqual(out.returncode, 1)
        self.assertEqual(out.stdout, "")
        self.assertIn(f"{self.conf}:15:", out.stderr)

    def test_region_beyond_a_limit(self):
        # Parses, but a start refuses it: the check must too.
        out = self.check(VALID + "[region big]\nsize = 128M\n")
        self.assertEqual(out.returncode, 1, out.stdout)
        self.assertIn("Cannot apply region 'big'", out.stderr)
        self.assertIn("the configuration is not valid", out.stderr)
        # The same from the command line.
        out = self.check(VALID, "--max-region-size", "8M")
        self.assertEqual(out.returncode, 1, out.stdout)
        self.assertIn("Cannot apply region 'camera0'", out.stderr)

    def test_regions_up_to_max_regions(self):
        """1,024 [region] sections and 64 --region options were walls of their own; now both go
        up to max-regions, and past it the error names the limit."""
        many = "".join(f"[region r{i}]\nsize = 4K\n" for i in range(3000))
        options = [arg for i in range(100) for arg in ("--region", f"x{i}:4K")]
        out = self.check(many, *options, "--max-regions", "4096")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("valid; 3100 regions declared", out.stdout)
        # A section named again is the same region, also among thousands.
        out = self.check(many + "[region r7]\nmax-peers = 4\n", "--max-regions", "3000")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("valid; 3000 regions declared", out.stdout)
        out = self.check(many, *options, "--max-regions", "3099")
        self.assertEqual(out.returncode, 1, out.stdout)
        self.assertIn("3100 regions are declared ([region] sections and --region options), more than "
                      "max-regions (3099)", out.stderr)
        out = self.check("[limits]\nregions = 20\n", *options)
        self.assertEqual(out.returncode, 1, out.stdout)
        self.assertIn("more than max-regions (20)", out.stderr)

    def test_missing_explicit_file(self):
        out = subprocess.run([self.brokerd, "--config", os.path.join(self.dir, "nope.conf"), "--check-config"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 1)
        self.assertIn("nope.conf", out.stderr)

    def test_needs_no_root(self):
        if os.geteuid() != 0:
            self.fail("needs root: runs the check as uid 65534")
        out = self.check(VALID, user=NOBODY)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("valid;", out.stdout)

    def test_leaves_a_running_broker_alone(self):
        b = harness.Broker([self.brokerd, "--no-config"], self.rundir, os.path.join(self.dir, "broker.log"))
        self.addCleanup(b.close)
        out = self.check(VALID)
        self.assertEqual(out.returncode, 0, out.stderr)
        again = harness.proto.hello(b.socket, "after the check")
        self.assertEqual((again.status, again.instance), (0, b.hello.instance))
        self.assertEqual(b.stop(), 0, b.log())


if __name__ == "__main__":
    BUILD = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "build")
    unittest.main(verbosity=2)
