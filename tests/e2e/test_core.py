# SPDX-License-Identifier: LGPL-2.1-or-later
"""e2e: real qemu-system-x86_64 guests (TCG) and host peers on the real broker.

Run by ctest as `python3 test_core.py BUILD_DIR`. Every guest is time-limited
by guestlab; a hung QEMU fails its test, never the suite.
"""

import os
import re
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
from harness import guestlab  # noqa: E402
import scenario  # noqa: E402

BUILD = None


def require(tool, package):
    if not shutil.which(tool):
        raise AssertionError(f"{tool} is missing: install the Debian package '{package}' "
                             "(scripts/install-deps.sh does)")


class CoreScenario(unittest.TestCase):
    """Two guests and a host process share a region: data, signals, membership."""

    @classmethod
    def setUpClass(cls):
        require("qemu-system-x86_64", "qemu-system-x86")
        cls.lab = scenario.Lab(BUILD)
        cls.image = cls.lab.image()
        t = time.monotonic()
        cls.results = scenario.run(cls.lab, cls.image, on_step=lambda s: None)
        cls.inspect = cls.results.pop("inspect")
        cls.seconds = time.monotonic() - t
        cls.broker_rc = cls.lab.stop()

    @classmethod
    def tearDownClass(cls):
        cls.lab.cleanup()

    def check_ran(self, name):
        rc, log, timed_out, _ = self.results[name]
        self.assertFalse(timed_out, f"{name} hit its time limit:\n{log}")
        self.assertEqual(rc, 0, f"{name} failed:\n{log}")
        return log

    def test_data_shared_by_all(self):
        for name in ("vm-a", "vm-b", "host"):
            log = self.check_ran(name)
            # Each expect of the others' strings succeeded (the tool fails otherwise).
            self.assertNotIn("FAIL", log)

    def test_indices_in_attach_order(self):
        for name, index in (("vm-a", 0), ("vm-b", 1), ("host", 2)):
            log = self.check_ran(name)
            self.assertRegex(log, rf"shmem-tool: info index={index} size=1048576 max_peers=16")

    def test_guest_to_guest_selective(self):
        # A signaled {1}: B saw exactly sender 0; H (not in the set) had nothing pending from A.
        b = self.check_ran("vm-b")
        self.assertIn(0x1, scenario.senders(b), b)
        self.assertEqual({s for s in scenario.senders(b) if s}, {0x1}, b)
        self.check_ran("host")  # its expect-no-signal passed

    def test_guest_to_host(self):
        h = self.check_ran("host")
        self.assertEqual({s for s in scenario.senders(h) if s}, {0x2}, h)

    def test_host_to_guest(self):
        a = self.check_ran("vm-a")
        self.assertEqual({s for s in scenario.senders(a) if s}, {0x4}, a)

    def test_poweroff_raises_membership_and_frees_index(self):
        for name in ("vm-a", "host"):
            log = self.check_ran(name)
            # wait-active 0x5 passed: the membership changed and index 1 is gone.
            self.assertRegex(log, r"changed=1 active=0x5", log)
        # After B powered off, while A still holds index 0: a new host peer gets B's index back.
        rc, out, _, _ = self.results["late"]
        self.assertEqual(rc, 0, out)
        self.assertIn("info index=1 ", out)

    def test_inspect_names_the_vms(self):
        peers = {p["index"]: p for p in self.inspect["peers"]}
        self.assertEqual(peers[0]["label"], "vm-a", self.inspect)
        # The VM's -uuid, read from its command line; no libvirt runs this QEMU.
        self.assertEqual((peers[0]["vm_name"], peers[0]["vm_uuid"], peers[0]["libvirt"]),
                         ("vm-a", guestlab.Guest.uuid_of("vm-a"), False), self.inspect)

    def test_broker_exits_cleanly(self):
        self.assertEqual(self.broker_rc, 0, open(self.lab.broker_log).read())


class QemuIndexReuse(unittest.TestCase):
    """QEMU 7.2 corrupts its heap when an ivshmem id it saw leave comes back;
    the broker's rolling doorbell ids must keep every QEMU alive while peer
    indices are reused (docs/design.md)."""

    def test_reuse_keeps_qemu_alive(self):
        require("qemu-system-x86_64", "qemu-system-x86")
        lab = scenario.Lab(BUILD)
        lab.start_broker()
        procs = {}

        def qmp_path(name):
            return os.path.join(lab.workdir, f"{name}.qmp")

        def qemu(name):
            procs[name] = subprocess.Popen(
                ["qemu-system-x86_64", "-accel", "tcg", "-S", "-display", "none", "-nodefaults",
                 "-no-user-config", "-monitor", "none", "-name", f"guest={name}",
                 "-qmp", f"unix:{qmp_path(name)},server=on,wait=off",
                 "-chardev", f"socket,path={lab.qemu_socket()},id=ivs",
                 "-device", f"ivshmem-doorbell,chardev=ivs,vectors={scenario.VECTORS}"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

        def wait_labels(labels):
            for _ in range(300):
                got = {p["label"] for p in lab.shmemctl_json("inspect", scenario.REGION)["peers"]}
                if got == set(labels):
                    return
                time.sleep(0.05)
            self.fail(f"peers are {got}, want {labels}")

        def stop(name):
            # The device connects during QEMU's start-up, before QEMU handles
            # SIGTERM: once QMP answers its main loop runs, and a SIGTERM
            # then is a clean exit (0), not death by signal (-15).
            end = time.monotonic() + 30
            while not guestlab.qmp_answers(qmp_path(name)):
                self.assertLess(time.monotonic(), end, f"QEMU {name} does not answer on QMP")
                time.sleep(0.05)
            procs[name].terminate()
            out, _ = procs[name].communicate(timeout=30)
            return procs[name].returncode, out.decode(errors="replace")

        try:
            qemu("A")
            wait_labels({"A"})
            qemu("B")
            wait_labels({"A", "B"})
            self.assertEqual(stop("A")[0], 0)
            wait_labels({"B"})
            qemu("C")  # takes A's index 0, must get a new doorbell id
            wait_labels({"B", "C"})
            peers = lab.shmemctl_json("inspect", scenario.REGION)["peers"]
            self.assertEqual(sorted(p["index"] for p in peers), [0, 1])
            rc, out = stop("B")  # B saw A leave and C join
            self.assertEqual(rc, 0, f"QEMU B died: {out}")
            rc, out = stop("C")
            self.assertEqual(rc, 0, f"QEMU C died: {out}")
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.kill()
            self.assertEqual(lab.stop(), 0)
            lab.cleanup()


if __name__ == "__main__":
    BUILD = sys.argv.pop(1) if len(sys.argv) > 1 else "build"
    unittest.main(verbosity=2)
