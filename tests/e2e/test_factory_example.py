#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""e2e: the guest program of docs/factory.md runs as the page says.

clients/guest/example-creator.c, linked statically with libshmem-guest, in a
q35 guest started with its factory device alone and a root port with
pref64-reserve=512M; the real broker and its hotplug helper. The program
creates "demo" (128 MiB), waits for a peer, greets it and waits for its
signal; the host peer reads the greeting and signals back.

Run: python3 test_factory_example.py  (paths from the environment: tests/e2e/CMakeLists.txt)
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
import harness  # noqa: E402
from harness import guestlab  # noqa: E402

ENV = guestlab.Environment("SHMEM_BROKERD", "SHMEM_PEER", "SHMEM_HOTPLUG",
                            "SHMEM_GUEST_EXAMPLE", "SHMEM_E2E_IMAGE_DIR")


class FactoryExampleTest(unittest.TestCase):
    def setUp(self):
        ENV.require()
        self.dir = tempfile.mkdtemp(prefix="shmem-e2e-ex-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.addCleanup(guestlab.kill_all)
        run = os.path.join(self.dir, "run")
        self.broker = harness.Broker([ENV["SHMEM_BROKERD"], "--no-config", "-v", "--hotplug-helper",
                                      ENV["SHMEM_HOTPLUG"]], run, os.path.join(self.dir, "broker.log"))
        self.addCleanup(self.broker.close)
        self.factory = guestlab.Shmem(os.path.join(run, "qemu", "factory.sock"), 1)

    def test_the_documented_program_creates_and_talks(self):
        image = guestlab.Image.from_dir(ENV["SHMEM_E2E_IMAGE_DIR"])
        with open(ENV["SHMEM_GUEST_EXAMPLE"], "rb") as f:
            program = f.read()
        g = guestlab.Guest(image, "/usr/bin/example-creator", self.dir, [self.factory], name="vm-a",
                           timeout=180, files={"/usr/bin/example-creator": program})
        g.argv += ["-device", "pcie-root-port,id=rp0,chassis=1,slot=1,pref64-reserve=512M"]
        g.start()
        g.wait_log(rb"I am peer 0", timeout=150)
        host = subprocess.run([ENV["SHMEM_PEER"], "--socket", self.broker.socket, "--find", "demo", "info",
                               "expect", "0", "hello from the guest", "60000", "wait-from", "0x1", "60000",
                               "notify", "0x1"], capture_output=True, text=True, timeout=150)
        res = g.wait()
        self.assertEqual(host.returncode, 0, host.stdout + self.broker.log())
        self.assertIn("info index=1 size=134217728 ", host.stdout)
        self.assertEqual(res.rc, 0, res.log)
        self.assertIn("demo: 134217728 bytes, I am peer 0", res.log)
        self.assertIn("signaled by 0x2", res.log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
