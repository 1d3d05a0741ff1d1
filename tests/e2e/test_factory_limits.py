#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""e2e: a factory request over a broker limit is refused before anything is plugged.

The real broker with --max-connections-per-vm 3 and its hotplug helper; a pc
guest started with its factory device alone. The factory's connection and
the devices of r1 and r2 are the VM's three: a request for r3 is answered
LIMIT (9), naming the limit, and nothing is plugged. Before the factory asked
the limits itself, the broker refused the new device's chardev and QEMU's
device_add never returned, with the VM stopped until the guest's time ran
out (bench/factory.py --broker-limits). A parked re-attach needs no new
connection and still works.

Run: python3 test_factory_limits.py  (paths from the environment: tests/e2e/CMakeLists.txt)
"""

import os
import re
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
import harness  # noqa: E402
from harness import guestlab  # noqa: E402

ENV = guestlab.Environment("SHMEM_BROKERD", "SHMEM_HOTPLUG", "SHMEM_E2E_IMAGE_DIR")

GUEST_TIMEOUT = 120  # s; the guest needs about 10 under TCG

SCRIPT = """
shmem-guest --detached attach r1 4K detach r1 || exit 1
shmem-guest --detached attach r2 4K detach r2 || exit 1
shmem-guest --detached attach r3 4K; echo "rc=$?"
shmem-guest --detached attach r1 4K detach r1 || exit 1
echo "devices=$(grep -l 0x1110 /sys/bus/pci/devices/*/device | wc -l)"
"""


class FactoryLimitsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        ENV.require()
        cls.dir = tempfile.mkdtemp(prefix="shmem-e2e-fl-")  # short: Unix socket paths have 108 bytes
        broker = None
        try:
            image = guestlab.Image.from_dir(ENV["SHMEM_E2E_IMAGE_DIR"])
            run = os.path.join(cls.dir, "run")
            broker = harness.Broker([ENV["SHMEM_BROKERD"], "--no-config", "-v", "--hotplug-helper",
                                     ENV["SHMEM_HOTPLUG"], "--max-connections-per-vm", "3"],
                                    run, os.path.join(cls.dir, "broker.log"))
            g = guestlab.Guest(image, SCRIPT, cls.dir, [guestlab.Shmem(os.path.join(run, "qemu", "factory.sock"), 1)],
                               name="vm-limits", timeout=GUEST_TIMEOUT, iommu=False)
            g.argv[g.argv.index("q35")] = "pc"
            g.start()
            cls.res = g.wait()
            cls.log = cls.res.log.replace("\r", "")
            cls.broker_log = broker.log()
        finally:
            guestlab.kill_all()
            if broker:
                broker.close()
            shutil.rmtree(cls.dir, ignore_errors=True)

    def test_guest_goes_on_and_powers_off(self):
        self.assertFalse(self.res.timed_out, f"{self.log}\n--- broker:\n{self.broker_log}")
        self.assertEqual(self.res.rc, 0, f"{self.log}\n--- broker:\n{self.broker_log}")

    def test_refused_with_limit_naming_it(self):
        m = re.search(r"shmem-tool: attach r3 status=(\d+) .* answer_ms=([\d.]+) detail=(.*)\nrc=(\d+)", self.log)
        self.assertIsNotNone(m, self.log)
        self.assertEqual((m.group(1), m.group(4)), ("9", "9"))
        self.assertIn("connections-per-vm", m.group(3))
        self.assertLess(float(m.group(2)), 5000)  # the helper's own timeout is 10 s
        self.assertRegex(self.broker_log, r"refusing 'r3': this VM's connection limit \(connections-per-vm\)")

    def test_nothing_plugged_for_it(self):
        self.assertNotIn("cannot plug", self.broker_log)
        self.assertNotRegex(self.broker_log, r"Refusing QEMU .* on 'r3'")
        self.assertIn("devices=3", self.log)  # the factory's, r1's and r2's
        self.assertEqual(len(re.findall(r"attach r1 status=0 ", self.log)), 2, self.log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
