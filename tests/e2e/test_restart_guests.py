# SPDX-License-Identifier: LGPL-2.1-or-later
"""e2e: kill -9 the broker under two TCG guests and a host peer; nobody notices.

The broker runs under a fake service manager (tests/harness/fakesystemd.py)
that keeps its fd store and restarts it with LISTEN_FDS, as systemd does.
During each outage the guests and the host peer go on signaling each other;
after the last restart a new peer joins and the guests see the membership event;
indices, labels and region contents are unchanged. Phases are sequenced
through strings the harness writes into the region via the stored memfd.

The broker is killed $SHMEM_KILL_LOOPS times (ctest: 5, and 25 under -L long).

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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
from harness import FakeSystemd, HostPeer, guestlab  # noqa: E402

ENV = {k: os.environ.get(k, "") for k in ("SHMEM_BROKERD", "SHMEM_PEER", "SHMEM_GUEST",
                                          "SHMEM_E2E_IMAGE_DIR", "SHMEM_SHMEMCTL")}
MS = "120000"
DATA = 4096
# Data offsets of round k's marks: KILLED + 64 k and RESTARTED + 64 k.
KILLED, RESTARTED, ROUNDS_MAX = 4096, 8192, 64


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

    def guest(self, name, script, rounds):
        g = guestlab.Guest(self.image, f"shmem-guest r {script}", self.dir, name=name, timeout=240 + 10 * rounds,
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
        with mmap.mmap(self.sd.fd("m/r"), DATA + offset + len(text) + 1) as m:
            m[DATA + offset:DATA + offset + len(text) + 1] = text.encode() + b"\0"

    def wait_for(self, what, pred, timeout=120):
        end = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > end:
                self.fail(f"timed out waiting for {what}")
            time.sleep(0.05)

    def test_kill_and_restart_under_guests(self):
        rounds = int(os.environ.get("SHMEM_KILL_LOOPS", "3"))
        self.assertTrue(1 <= rounds <= ROUNDS_MAX, f"SHMEM_KILL_LOOPS={rounds}: 1..{ROUNDS_MAX}")
        self.sd.start(self.argv)
        # Before the kills: everyone writes and reads. In each outage k: A->B,
        # B->A, B->H. After the last restart: a new peer N joins and every old
        # peer sees active 0xf. Round k's marks have offsets of their own, so
        # a peer that is slow to see one never misses it.
        a = ["info write 0 from-a"]
        b = ["info write 64 from-b"]
        h = [f"info expect 0 from-a {MS} expect 64 from-b {MS}"]
        for k in range(rounds):
            killed, restarted = f"expect {KILLED + 64 * k} killed-{k} {MS}", f"expect {RESTARTED + 64 * k} restarted-{k} {MS}"
            a.append(f"{killed} notify 0x2 wait-from 0x2 {MS} write 128 a-got-b-{k} {restarted}")
            b.append(f"{killed} wait-from 0x1 {MS} notify 0x1 notify 0x4 {restarted}")
            h.append(f"{killed} wait-from 0x2 {MS} write 192 h-got-b-{k} {restarted}")
        a.append(f"wait-active 0xf {MS} write 320 a-saw expect 384 b-saw {MS} expect 448 h-saw {MS}")
        b.append(f"wait-active 0xf {MS} write 384 b-saw expect 320 a-saw {MS} expect 448 h-saw {MS}")
        h.append(f"wait-active 0xf {MS} write 448 h-saw expect 320 a-saw {MS} expect 384 b-saw {MS}")
        a, b = self.guest("vm-a", " ".join(a), rounds), self.guest("vm-b", " ".join(b), rounds)
        h = self.host("host", " ".join(h))
        self.wait_for("the host peer", lambda: "info index=2" in h.output())
        before = self.inspect()
        self.assertEqual(before[0], [0, 1, 2])
        self.assertEqual([p[1] for p in before[2]], ["vm-a", "vm-b", "host"])

        for k in range(rounds):
            self.sd.wait_stored("c/", 3)  # inspect's connection has left the store
            self.assertEqual(self.sd.kill(), -9, f"round {k}")
            self.mark(KILLED + 64 * k, f"killed-{k}")
            # The broker is dead: guests and host signal each other through the fds they hold.
            self.wait_for(f"B's signal to A in round {k}", lambda: self._data(128, 16).startswith(f"a-got-b-{k}\0".encode()))
            self.wait_for(f"B's signal to the host in round {k}",
                          lambda: self._data(192, 16).startswith(f"h-got-b-{k}\0".encode()))
            self.sd.start(self.argv)
            self.assertEqual(self.sd.log().count("Restored 1 regions and 3 connections"), k + 1, self.sd.log())
            self.assertEqual(self.inspect(), before, f"round {k}")
            self.mark(RESTARTED + 64 * k, f"restarted-{k}")

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
        # Senders were right across every outage: A heard B (index 1), B heard A, the host heard B.
        self.assertEqual(ra.log.count("senders=0x2"), rounds, ra.log)
        self.assertEqual(rb.log.count("senders=0x1"), rounds, rb.log)
        self.assertEqual(h.output().count("senders=0x2"), rounds, h.output())
        # The guests saw the new peer join after the last restart.
        self.assertIn("active 0xf", ra.log)
        self.assertIn("active 0xf", rb.log)

    def _data(self, offset, length):
        with mmap.mmap(self.sd.fd("m/r"), DATA + offset + length) as m:
            return bytes(m[DATA + offset:DATA + offset + length])


if __name__ == "__main__":
    unittest.main(verbosity=2)
