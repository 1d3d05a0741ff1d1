#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""e2e: a guest forges a signal against another guest (docs/security.md).

One region, three peers: guest V (index 0) and guest F (index 1), both q35 +
intel-iommu so that libshmem-guest gets its MSI-X vectors through vfio-pci,
and a host peer A (index 2).

1. F sets A's bit in V's pending word without ringing (forge-pending), then
   rings V through its own Doorbell without setting a bit (ring-only). V's
   pending view (senders) names A, who did nothing; its rung view (rang, the
   vectors that fired) names only F: F's QEMU holds no fd that fires V's
   vector 2.
2. A signals V for real: both views name A.

Every phase is sequenced through strings in the region's data, never by
sleeping. V writes its "ready" string only once attached, MSI-X enabled: a
ring before that would be dropped by QEMU.

Run by ctest as `python3 test_forgery.py BUILD_DIR` (scenario.Lab's broker,
tools and image).
"""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # scenario
import scenario  # noqa: E402

BUILD = None
MS = "60000"             # in-guest waits
V, F, A = 0x1, 0x2, 0x4  # the peers' bits: indices 0, 1, 2
READY, FORGED, DONE = 0, 64, 128  # data offsets of the phase strings

# "read FORGED" prints the line that ends phase 1 in V's log.
SCRIPT_V = (f"info write {READY} v-ready wait-rang {F:#x} {MS} write {FORGED} v-forged read {FORGED} 8 "
            f"wait-rang {A:#x} {MS} write {DONE} v-done")
SCRIPT_F = (f"info wait-active 0x7 {MS} expect {READY} v-ready {MS} "
            f"forge-pending 0 {A:#x} ring-only {V:#x} expect {DONE} v-done {MS}")
SCRIPT_A = f"info expect {FORGED} v-forged {MS} notify {V:#x} expect {DONE} v-done {MS}"
PHASE_END = f"shmem-tool: read {FORGED} v-forged"


def views(log):
    """The (senders, rang) of every event line of a tool's output, each ORed together."""
    senders = rang = 0
    for s, r in re.findall(r"shmem-tool: event senders=0x(\w+) changed=\d active=0x\w+ rang=0x(\w+)", log):
        senders |= int(s, 16)
        rang |= int(r, 16)
    return senders, rang


class Forgery(unittest.TestCase):
    def setUp(self):
        self.lab = scenario.Lab(BUILD)
        self.image = self.lab.image()
        self.lab.start_broker()

    def tearDown(self):
        self.lab.stop()
        self.lab.cleanup()

    def finish(self, g):
        res = g.wait()
        with open(self.lab.broker_log, errors="replace") as f:
            context = f"{res.log}\n----- broker\n{f.read()}"
        self.assertFalse(res.timed_out, f"{g.name} timed out:\n{context}")
        self.assertEqual(res.rc, 0, f"{g.name} failed:\n{context}")
        return res.log.replace("\r", "")

    def test_forged_signal_names_the_ringer(self):
        guests = []
        for name, script in (("v", SCRIPT_V), ("f", SCRIPT_F)):
            g = self.lab.guest(self.image, name, script).start()
            g.wait_connected()  # QEMU joins during its start-up: its index is taken
            guests.append(g)
        a = self.lab.host_peer(SCRIPT_A, label="a")
        log_v, log_f = (self.finish(g) for g in guests)
        out_a = a.communicate(timeout=120)[0].decode(errors="replace")
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
        self.assertEqual(self.lab.stop(), 0, "the broker did not exit cleanly")


if __name__ == "__main__":
    BUILD = sys.argv.pop(1) if len(sys.argv) > 1 else "build"
    unittest.main(verbosity=2)
