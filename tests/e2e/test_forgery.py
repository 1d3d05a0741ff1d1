#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""e2e: a guest forges a signal against another guest (docs/security.md).

Region "forge" with three peers: guest V (index 0) and guest F (index 1),
both q35 + intel-iommu so that libshmem-guest gets its MSI-X vectors through
vfio-pci, and a host peer A (index 2).

1. F sets A's bit in V's pending word without ringing (forge-pending), then
   rings V through its own Doorbell without setting a bit (ring-only). V's
   pending view (senders) names A, who did nothing; its rung view (rang, the
   vectors that fired) names only F: F's QEMU holds no fd that fires V's
   vector 2.
2. A signals V for real: both views name A.

Every phase is sequenced through strings in the region's data, never by
sleeping. V writes its "ready" string only once attached, MSI-X enabled: a
ring before that would be dropped by QEMU.

Run: python3 test_forgery.py  (paths from the environment, as test-guests.py;
tests/e2e/CMakeLists.txt sets them)
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import guestlab  # noqa: E402

ENV = {k: os.environ.get(k, "") for k in ("SHMEM_BROKERD", "SHMEM_PEER", "SHMEM_GUEST",
                                          "SHMEM_E2E_IMAGE_DIR")}
REGION = "forge"
VECTORS = 17         # max_peers + 1
MS = "60000"         # in-guest waits
GUEST_TIMEOUT = 180  # s, QEMU start to power off; TCG on a loaded 2-core machine
V, F, A = 0x1, 0x2, 0x4  # the peers' bits: indices 0, 1, 2

# Data offsets of the phase strings.
READY, FORGED, DONE = 0, 64, 128

# "read FORGED" prints the line that ends phase 1 in V's log.
SCRIPT_V = (f"shmem-guest {REGION} info write {READY} v-ready wait-rang {F:#x} {MS} "
            f"write {FORGED} v-forged read {FORGED} 8 wait-rang {A:#x} {MS} write {DONE} v-done")
SCRIPT_F = (f"shmem-guest {REGION} info wait-active 0x7 {MS} expect {READY} v-ready {MS} "
            f"forge-pending 0 {A:#x} ring-only {V:#x} expect {DONE} v-done {MS}")
SCRIPT_A = ["info", "expect", str(FORGED), "v-forged", MS, "notify", hex(V),
            "expect", str(DONE), "v-done", MS]
PHASE_END = "shmem-tool: read 64 v-forged"


def views(log):
    """The (senders, rang) of every event line of a tool's output, ORed together."""
    senders = rang = 0
    for s, r in re.findall(r"shmem-tool: event senders=0x(\w+) changed=\d active=0x\w+ rang=0x(\w+)", log):
        senders |= int(s, 16)
        rang |= int(r, 16)
    return senders, rang


class Forgery(unittest.TestCase):
    def setUp(self):
        for k, v in ENV.items():
            if not v:
                self.fail(f"{k} is not set (run through ctest)")
        d = ENV["SHMEM_E2E_IMAGE_DIR"]
        self.image = guestlab.Image(os.path.join(d, "vmlinux"), os.path.join(d, "initramfs.cpio.gz"))
        if not os.path.exists(self.image.initrd):
            self.fail(f"no guest image in {d}: run test-guests.py --build-image")
        # Short: Unix socket paths have 108 bytes.
        self.dir = tempfile.mkdtemp(prefix="shmem-e2e-forge-")
        self.broker = None

    def tearDown(self):
        guestlab.kill_all()
        if self.broker:
            self.broker.kill()
            self.broker.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def broker_log(self):
        with open(os.path.join(self.dir, "broker.log"), errors="replace") as f:
            return f.read()

    def start_broker(self):
        argv = [ENV["SHMEM_BROKERD"], "--no-config", "--rundir", self.dir, "-v",
                "--region", f"{REGION}:60K"]
        with open(os.path.join(self.dir, "broker.log"), "w") as log:
            self.broker = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        sock = os.path.join(self.dir, "broker.sock")
        end = time.monotonic() + 10
        while not os.path.exists(sock):
            self.assertIsNone(self.broker.poll(), "shmem-brokerd exited")
            self.assertLess(time.monotonic(), end, "shmem-brokerd did not come up")
            time.sleep(0.02)

    def guest(self, name, script):
        g = guestlab.Guest(self.image, script, self.dir,
                           [guestlab.Shmem(os.path.join(self.dir, "qemu", f"{REGION}.sock"), VECTORS)],
                           name=name, timeout=GUEST_TIMEOUT, iommu=True)
        g.start()
        # QEMU joins the region during its start-up: after this, its index is taken.
        g.wait_connected()
        return g

    def finish(self, g):
        res = g.wait()
        self.assertFalse(res.timed_out, f"{g.name} timed out:\n{res.log}\n--- broker\n{self.broker_log()}")
        self.assertEqual(res.rc, 0, f"{g.name} failed:\n{res.log}\n--- broker\n{self.broker_log()}")
        return res.log.replace("\r", "")

    def test_forged_signal_names_the_ringer(self):
        self.start_broker()
        v = self.guest("v", SCRIPT_V)
        f = self.guest("f", SCRIPT_F)
        a = subprocess.Popen([ENV["SHMEM_PEER"], "--socket", os.path.join(self.dir, "broker.sock"),
                              "--find", "--label", "a", REGION, *SCRIPT_A],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        log_v, log_f = self.finish(v), self.finish(f)
        out_a, _ = a.communicate(timeout=120)
        self.assertEqual(a.returncode, 0, f"host peer A failed:\n{out_a}")

        self.assertIn("info index=0 ", log_v)
        self.assertIn("info index=1 ", log_f)
        self.assertIn("info index=2 ", out_a)
        self.assertIn(PHASE_END, log_v)
        forged, real = log_v.split(PHASE_END, 1)
        # 1: the pending word says A signaled; only F's own ring fired.
        self.assertEqual(views(forged), (A, F), log_v)
        # 2: A's real signal is in both views.
        self.assertEqual(views(real), (A, A), log_v)


if __name__ == "__main__":
    unittest.main(verbosity=2)
