#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""e2e: a guest's factory survives kill -9 of the broker (docs/factory.md).

The real broker under the fake service manager (tests/harness/fakesystemd.py,
which keeps its fd store and restarts it with LISTEN_FDS as systemd does),
its hotplug helper shmem-hotplug, and a TCG guest (pc) started with its
factory device alone:

- the guest creates "one" through the factory: a device is plugged;
- the broker is killed -9 and restarted; the harness then writes "restarted"
  into the region (the stored memfd), which the guest is waiting for;
- shmemctl factory and inspect show the VM, its device and who made "one";
- the guest detaches "one" (parked) and attaches it again: the same device,
  the same index, nothing plugged; then creates "two": a second device;
- QEMU's exit closes the restored factory connection.

Without the factory's state in the store the restarted broker has no
factory connection: the guest's detach is never answered.

Run: python3 test_factory_restart.py  (paths from the environment: tests/e2e/CMakeLists.txt)
"""

import mmap
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
from harness import FakeSystemd, guestlab, shmemctl_json  # noqa: E402

ENV = guestlab.Environment("SHMEM_BROKERD", "SHMEM_SHMEMCTL", "SHMEM_HOTPLUG", "SHMEM_E2E_IMAGE_DIR")

GUEST_TIMEOUT = 300  # s, QEMU start to power off, on a loaded 2-core machine
MS = "120000"        # every wait inside the script
DATA = 4096          # the data area's offset in the region's memfd (after the control page)

SCRIPT = f"""
shmem-guest --detached attach one 4K info write 0 from-guest expect 100 restarted {MS} \\
    detach one sleep 500 attach one 4K info expect 0 from-guest {MS} detach one || exit 1
shmem-guest --detached attach two 4K info detach two || exit 1
echo "devices=$(grep -l 0x1110 /sys/bus/pci/devices/*/device | wc -l)"
"""


def answers(log, command, name):
    """The fields of shmem-guest's answer lines for @command on @name, in order."""
    return [f for c, n, f in guestlab.answers(log) if (c, n) == (command, name)]


class FactoryRestartTest(unittest.TestCase):
    def setUp(self):
        ENV.require()
        self.image = guestlab.Image.from_dir(ENV["SHMEM_E2E_IMAGE_DIR"])
        self.dir = tempfile.mkdtemp(prefix="shmem-e2e-facr-")  # short: Unix socket paths have 108 bytes
        self.rundir = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.rundir, "broker.sock")
        self.sd = FakeSystemd(self.dir)
        self.argv = [ENV["SHMEM_BROKERD"], "--no-config", "-v", "--rundir", self.rundir,
                     "--hotplug-helper", ENV["SHMEM_HOTPLUG"]]

    def tearDown(self):
        guestlab.kill_all()
        self.sd.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def inspect(self, region):
        return shmemctl_json(ENV["SHMEM_SHMEMCTL"], self.sock, "inspect", region)

    def factory(self):
        return shmemctl_json(ENV["SHMEM_SHMEMCTL"], self.sock, "factory")["vms"]

    @staticmethod
    def peers(region):
        return [(p["index"], p.get("vm_name"), p["kind"], p.get("parked", False)) for p in region["peers"]]

    def test_park_and_reattach_after_a_kill(self):
        self.sd.start(self.argv)
        factory = [guestlab.Shmem(os.path.join(self.rundir, "qemu", "factory.sock"), 1)]
        vm = guestlab.Guest(self.image, SCRIPT, self.dir, factory, name="vmf", timeout=GUEST_TIMEOUT, iommu=False)
        vm.argv[vm.argv.index("q35")] = "pc"
        vm.start()
        try:
            vm.wait_log(rb"info index=0 ", timeout=GUEST_TIMEOUT)
            # The plug is over (its helper's fds left the store) and the state says so.
            self.sd.wait_stored("cp/", 3, timeout=60)
            before = self.inspect("one")
            self.assertEqual(self.sd.kill(), -signal.SIGKILL)
            self.sd.start(self.argv)
            self.assertEqual(self.peers(self.inspect("one")), self.peers(before))
            self.assertEqual(self.peers(before), [(0, "vmf", "qemu", False)])
            # What shmemctl shows came back too: the VM's factory, its device, who made the region.
            after = self.inspect("one")["created_by"]
            self.assertEqual((after["kind"], after["label"], after["pid"]), ("qemu", "vmf", vm.proc.pid))
            vms = self.factory()
            self.assertEqual([(v["name"], v["pid"], v["served"], v["in_flight"]) for v in vms],
                             [("vmf", vm.proc.pid, 1, None)], vms)
            self.assertEqual([(d["region"], d["index"], d["parked"]) for d in vms[0]["devices"]],
                             [("one", 0, False)])
            with mmap.mmap(self.sd.fd("m/one"), DATA + 4096) as m:
                m[DATA + 100:DATA + 110] = b"restarted\0"
            res = vm.wait()
        except BaseException:
            print(f"--- guest:\n{vm.log().decode(errors='replace')}\n--- broker:\n{self.sd.log()}", file=sys.stderr)
            raise
        log, blog = res.log.replace("\r", ""), self.sd.log()
        self.assertFalse(res.timed_out, f"the guest hit its time limit:\n{log}\n--- broker:\n{blog}")
        self.assertEqual(res.rc, 0, f"{log}\n--- broker:\n{blog}")
        self.assertIn("Factory device of 'vmf' (pid %d) restored: 1 requests served" % vm.proc.pid, blog)
        one, detach = answers(log, "attach", "one"), answers(log, "detach", "one")
        self.assertEqual([a["status"] for a in one] + [d["status"] for d in detach], [0, 0, 0, 0], log)
        # The same device and index after the kill: unparked, not plugged again.
        self.assertEqual(one[1]["device"], one[0]["device"])
        self.assertEqual(detach[0]["factory"], "1")
        self.assertEqual(log.count("info index=0 size=4096 "), 3, log)  # one, one again, two
        self.assertEqual(len(re.findall(r"region 'one' plugged", blog)), 1, blog)
        self.assertIn("Factory of 'vmf': detached from 'one' (its device is kept", blog)
        # A region made after the restart gets a device of its own.
        two = answers(log, "attach", "two")
        self.assertEqual([a["status"] for a in two], [0], log)
        self.assertNotEqual(two[0]["device"], one[0]["device"])
        self.assertEqual(len(re.findall(r"region 'two' plugged", blog)), 1, blog)
        self.assertIn("devices=3", log)  # the factory, one, two
        # QEMU's exit is the final detach: the restored factory connection goes with it.
        end = time.monotonic() + 30
        while self.factory() and time.monotonic() < end:
            time.sleep(0.1)
        self.assertEqual(self.factory(), [], blog)
        self.assertIn("Factory of 'vmf' (pid %d) closed: 6 requests served, 0 refused" % vm.proc.pid,
                      self.sd.log())
        self.assertEqual(vm.proc.returncode, 0)
        self.assertNotRegex(blog, r"(?i)assert|segfault|double free")


if __name__ == "__main__":
    unittest.main(verbosity=2)
