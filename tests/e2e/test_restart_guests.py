# SPDX-License-Identifier: LGPL-2.1-or-later
"""e2e: kill -9 the broker under two TCG guests and a host peer; nobody notices.

The broker runs under a fake service manager (tests/integration/fakesystemd.py)
that keeps its fd store and restarts it with LISTEN_FDS, as systemd does.
During the outage the guests and the host peer go on signaling each other;
after the restart a new peer joins and the guests see the membership event;
indices, labels and region contents are unchanged. Phases are sequenced
through strings the harness writes into the region via the stored memfd.

Run: python3 test_restart_guests.py  (paths from the environment, as test-guests.py)
"""

import json
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import guestlab  # noqa: E402
from fakesystemd import FakeSystemd  # noqa: E402
from hostpeer import HostPeer  # noqa: E402

ENV = {k: os.environ.get(k, "") for k in ("SHMEM_BROKERD", "SHMEM_PEER", "SHMEM_GUEST",
                                          "SHMEM_E2E_IMAGE_DIR", "SHMEM_SHMEMCTL")}
MS = "120000"
DATA = 4096


class RestartUnderGuests(unittest.TestCase):
    def setUp(self):
        for k, v in ENV.items():
            self.assertTrue(v, f"${k} is not set (tests/e2e/CMakeLists.txt sets it)")
        self.dir = tempfile.mkdtemp(prefix="shmem-e2e-restart-")
        self.rundir = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.rundir, "broker.sock")
        self.sd = FakeSystemd(self.dir)
        self.argv = [ENV["SHMEM_BROKERD"], "--no-config", "--rundir", self.rundir, "--region", "r:64K"]
        self.image = guestlab.Image.build(ENV["SHMEM_E2E_IMAGE_DIR"], ENV["SHMEM_GUEST"])
        self.procs = []

    def tearDown(self):
        guestlab.kill_all()
        for p in self.procs:
            p.close()
        self.sd.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def guest(self, name, script):
        g = guestlab.Guest(self.image, f"shmem-guest r {script}", self.dir, name=name, timeout=240,
                           shmem=[guestlab.Shmem(os.path.join(self.rundir, "qemu", "r.sock"), 17)])
        g.start()
        g.wait_connected()
        return g

    def host(self, name, script):
        p = HostPeer(ENV["SHMEM_PEER"], self.sock, "r", script, name, self.dir)
        self.procs.append(p)
        return p

    def inspect(self):
        out = subprocess.run([ENV["SHMEM_SHMEMCTL"], "--socket", self.sock, "--json", "inspect", "r"],
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 0, out.stderr)
        region = json.loads(out.stdout)
        return region["active"], region["epoch"], sorted((p["index"], p["label"], p["kind"]) for p in region["peers"])

    def mark(self, offset, text):
        with mmap.mmap(self.sd.fd("m/r"), DATA + 4096) as m:
            m[DATA + offset:DATA + offset + len(text) + 1] = text.encode() + b"\0"

    def wait_for(self, what, pred, timeout=120):
        end = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > end:
                self.fail(f"timed out waiting for {what}")
            time.sleep(0.05)

    def test_kill_and_restart_under_guests(self):
        self.sd.start(self.argv)
        # Before the kill: everyone writes and reads; during it: A->B, B->A, B->H;
        # after it: a new peer N joins and every old peer sees active 0xf.
        a = self.guest("vm-a", f"info write 0 from-a expect 512 killed {MS} notify 0x2 wait-from 0x2 {MS} "
                               f"write 128 a-got-b expect 512 restarted {MS} wait-active 0xf {MS} "
                               f"write 320 a-saw expect 384 b-saw {MS} expect 448 h-saw {MS}")
        b = self.guest("vm-b", f"info write 64 from-b expect 512 killed {MS} wait-from 0x1 {MS} notify 0x1 "
                               f"notify 0x4 expect 512 restarted {MS} wait-active 0xf {MS} "
                               f"write 384 b-saw expect 320 a-saw {MS} expect 448 h-saw {MS}")
        h = self.host("host", f"info expect 0 from-a {MS} expect 64 from-b {MS} expect 512 killed {MS} "
                              f"wait-from 0x2 {MS} write 192 h-got-b expect 512 restarted {MS} "
                              f"wait-active 0xf {MS} write 448 h-saw expect 320 a-saw {MS} expect 384 b-saw {MS}")
        self.wait_for("the host peer", lambda: "info index=2" in h.output())
        before = self.inspect()
        self.assertEqual(before[0], [0, 1, 2])
        self.assertEqual([p[1] for p in before[2]], ["vm-a", "vm-b", "host"])

        self.sd.wait_stored("c/", 3)  # inspect's connection has left the store
        self.assertEqual(self.sd.kill(), -9)
        self.mark(512, "killed")
        # The broker is dead: guests and host signal each other through the fds they hold.
        self.wait_for("B's signal to the host", lambda: "senders=0x2" in h.output())
        self.wait_for("B's signal to A", lambda: b"a-got-b" in self._data(128, 7))

        self.sd.start(self.argv)
        self.assertIn("Restored 1 regions and 3 connections", self.sd.log())
        self.assertEqual(self.inspect(), before)
        self.mark(512, "restarted")
        n = self.host("new", f"info expect 0 from-a 10000 expect 64 from-b 10000 expect 320 a-saw {MS} "
                             f"expect 384 b-saw {MS} expect 448 h-saw {MS}")
        n.wait(240)
        self.assertEqual(n.returncode, 0, n.output())
        self.assertIn("info index=3 ", n.output())
        ra, rb = a.wait(), b.wait()
        h.wait(240)
        for name, rc, log in (("vm-a", ra.rc, ra.log), ("vm-b", rb.rc, rb.log),
                              ("host", h.returncode, h.output())):
            self.assertEqual(rc, 0, f"{name}:\n{log}\n--- broker:\n{self.sd.log()}")
        # Senders were right across the outage: A heard B (index 1), B heard A, the host heard B.
        self.assertIn("senders=0x2", ra.log)
        self.assertIn("senders=0x1", rb.log)
        self.assertIn("senders=0x2", h.output())
        # The guests saw the new peer join after the restart.
        self.assertIn("active 0xf", ra.log)
        self.assertIn("active 0xf", rb.log)

    def _data(self, offset, length):
        with mmap.mmap(self.sd.fd("m/r"), DATA + 4096) as m:
            return bytes(m[DATA + offset:DATA + offset + length])


if __name__ == "__main__":
    unittest.main(verbosity=2)
