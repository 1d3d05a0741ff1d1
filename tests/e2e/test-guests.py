#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""e2e: the real shmem-brokerd, real QEMU guests (TCG) and a host peer.

Every guest runs shmem-guest (libshmem-guest) from the image that
build-guest-image.sh makes; host peers run shmem-peer (libshmem). Paths come
from the environment (tests/e2e/CMakeLists.txt sets them):
SHMEM_BROKERD, SHMEM_PEER, SHMEM_GUEST, SHMEM_E2E_IMAGE_DIR.

    test-guests.py                  all tests (the image must exist)
    test-guests.py --build-image    build the image (the ctest fixture)
    test-guests.py GuestTest.test_polling_fallback
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
import harness  # noqa: E402
from harness import guestlab  # noqa: E402

ENV = {k: os.environ.get(k, "") for k in ("SHMEM_BROKERD", "SHMEM_PEER", "SHMEM_GUEST",
                                          "SHMEM_E2E_IMAGE_DIR")}
GUEST_TIMEOUT = 180  # s, QEMU start to power off; TCG on a loaded 2-core CI
MS = "30000"         # in-guest waits

# run_with_irqs and the counts it logs: guestlab.py.
GUEST_HELPERS = guestlab.GUEST_HELPERS
irq_counts = guestlab.irq_counts


def events(log):
    """The "event" lines as (senders, changed, active) tuples."""
    return [(int(s, 16), int(c), int(a, 16)) for s, c, a in
            re.findall(r"shmem-tool: event senders=0x(\w+) changed=(\d) active=0x(\w+)", log)]


def senders_seen(log):
    r = 0
    for s, _, _ in events(log):
        r |= s
    return r


class GuestTest(unittest.TestCase):
    def setUp(self):
        for k, v in ENV.items():
            if not v:
                self.fail(f"{k} is not set (run through ctest)")
        d = ENV["SHMEM_E2E_IMAGE_DIR"]
        self.image = guestlab.Image(os.path.join(d, "vmlinux"), os.path.join(d, "initramfs.cpio.gz"))
        if not os.path.exists(self.image.initrd):
            self.fail(f"no guest image in {d}: run test-guests.py --build-image")
        # Short: Unix socket paths have 108 bytes.
        self.dir = tempfile.mkdtemp(prefix="shmem-e2e-")
        self.guests = []
        self.broker = None

    def tearDown(self):
        guestlab.kill_all()
        if self.broker:
            self.broker.close()

    def run(self, result=None):
        # tearDown cannot tell whether the test failed; run() can: the logs of
        # a failed test go to stderr, then the directory goes.
        result = result or self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        self.dir = None
        super().run(result)
        if not self.dir:
            return result
        if len(result.failures) + len(result.errors) > before:
            for name in sorted(os.listdir(self.dir)):
                if name.endswith((".log", ".stderr")):
                    with open(os.path.join(self.dir, name), errors="replace") as f:
                        sys.stderr.write(f"----- {name}\n{f.read()}\n")
        shutil.rmtree(self.dir, ignore_errors=True)
        return result

    def start_broker(self, *regions):
        argv = [ENV["SHMEM_BROKERD"], "--no-config", "-v"]
        for r in regions:
            argv += ["--region", r]
        self.broker = harness.Broker(argv, self.dir, os.path.join(self.dir, "broker.log"))

    def qemu_socket(self, region):
        return os.path.join(self.dir, "qemu", f"{region}.sock")

    def guest(self, name, script, region="demo", vectors=17, iommu=True):
        g = guestlab.Guest(self.image, GUEST_HELPERS + script, self.dir,
                           [guestlab.Shmem(self.qemu_socket(region), vectors)],
                           name=name, timeout=GUEST_TIMEOUT, iommu=iommu)
        g.start()
        self.guests.append(g)
        # QEMU joins the region during its start-up: after this, its index is taken.
        g.wait_connected()
        return g

    def peer(self, *args, timeout=120):
        argv = [ENV["SHMEM_PEER"], "--socket", os.path.join(self.dir, "broker.sock"), *args]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def finish(self, g):
        res = g.wait()
        self.assertFalse(res.timed_out, f"{g.name} timed out:\n{res.log}")
        self.assertEqual(res.rc, 0, f"{g.name} failed:\n{res.log}")
        return res

    def finish_peer(self, p, timeout=120):
        out, _ = p.communicate(timeout=timeout)
        self.assertEqual(p.returncode, 0, f"host peer failed:\n{out}")
        return out

    def test_guests_and_host(self):
        """Two guests (vfio MSI-X) and a host process: data and signals every way."""
        self.start_broker("demo:60K")
        # A ring to a guest that has not enabled MSI-X yet is dropped (its bit is
        # not): only rings to a peer known to wait make interrupts for sure. So
        # the host rings last, once both guests have signaled it, and waits for
        # their answers before it leaves (the broker clears a leaver's bits).
        a = self.guest("a", f"""
shmem-guest nosuch info | grep -q 'FAIL attach nosuch: region does not exist' || exit 10
shmem-guest --exclusive demo info | grep -q 'FAIL attach demo: region exists' || exit 11
shmem-guest demo info || exit 12
# vfio: one handle per device; a second attach while the first holds it is BUSY.
shmem-guest demo sleep 1500 >/dev/null &
holder=$!
while kill -0 $holder 2>/dev/null && ! grep -q vfio-msix /proc/interrupts; do sleep 0.05; done
shmem-guest demo info | grep -q 'FAIL attach demo: region is in use' || exit 13
wait $holder || exit 14
run_with_irqs unconsumed shmem-guest demo wait-active 0x7 {MS} write 0 hello-from-A notify 0x6 \
        wait-from 0x6 {MS} expect 100 hello-from-B {MS} expect 200 from-host {MS} notify 0x4 \
        unconsumed sleep 300
""")
        b = self.guest("b", f"""
run_with_irqs unconsumed shmem-guest demo info wait-active 0x7 {MS} wait-from 0x1 {MS} \
        expect 0 hello-from-A {MS} write 100 hello-from-B notify 0x5 wait-from 0x4 {MS} \
        expect 200 from-host {MS} notify 0x4 unconsumed sleep 300
""")
        h = self.peer("--find", "--label", "host", "demo", "info", "wait-active", "0x7", MS,
                      "wait-from", "0x3", MS, "expect", "0", "hello-from-A", MS,
                      "expect", "100", "hello-from-B", MS, "write", "200", "from-host", "notify", "all",
                      "wait-from", "0x3", MS)
        ra, rb = self.finish(a), self.finish(b)
        out = self.finish_peer(h)

        self.assertIn("info index=0 size=61440 max_peers=16", ra.log)
        self.assertIn("info index=1 size=61440 max_peers=16", rb.log)
        self.assertIn("info index=2 size=61440 max_peers=16 active=0x7", out)
        self.assertEqual(senders_seen(ra.log), 0x6)
        self.assertEqual(senders_seen(rb.log), 0x5)
        self.assertEqual(senders_seen(out), 0x3)
        # Vector j fires for "peer j signaled me", never for my own index.
        ia, ib = irq_counts(ra.log), irq_counts(rb.log)
        self.assertEqual(len(ia), 17, ra.log)
        self.assertTrue(ia[1] > 0 and ia[2] > 0 and ia[0] == 0, ra.log)
        self.assertTrue(ib[2] > 0 and ib[1] == 0, rb.log)

    def test_index_reuse(self):
        """A leaves, C gets A's index but a new doorbell id: B and C still reach each other."""
        self.start_broker("demo:60K")
        # A waits for B's answer: the broker clears a leaver's pending bits.
        a = self.guest("a", f"shmem-guest demo info wait-active 0x3 {MS} notify 0x2 wait-from 0x2 {MS}")
        b = self.guest("b", f"""
run_with_irqs unconsumed shmem-guest demo info wait-from 0x1 {MS} notify 0x1 wait-active 0x2 {MS} \
        wait-active 0x3 {MS} expect 0 C-ready {MS} notify 0x1 wait-from 0x1 {MS} expect 0 from-C {MS} \
        unconsumed sleep 300
""")
        self.finish(a)
        c = self.guest("c", f"""
run_with_irqs unconsumed shmem-guest demo info write 0 C-ready wait-from 0x2 {MS} write 0 from-C \
        notify 0x2 unconsumed sleep 300
""")
        rb, rc = self.finish(b), self.finish(c)
        self.assertIn("info index=0 ", rc.log)
        self.assertEqual(senders_seen(rc.log), 0x2)
        # B: signaled by A, then by C, both index 0.
        self.assertEqual([s for s, _, _ in events(rb.log) if s], [0x1, 0x1])
        self.assertGreater(irq_counts(rc.log).get(1, 0), 0, rc.log)
        self.assertGreater(irq_counts(rb.log).get(0, 0), 0, rb.log)

    def test_polling_fallback(self):
        """No IOMMU, so no vfio: the library maps sysfs BARs and polls, and nothing is lost."""
        self.start_broker("demo:60K")
        a = self.guest("a", f"""
shmem-guest demo info wait-active 0x3 {MS} write 0 ping notify 0x2 wait-from 0x2 {MS} expect 0 pong {MS} || exit 1
grep -q vfio-msix /proc/interrupts && exit 20
[ -e /sys/bus/pci/devices/0000:00:01.0/driver ] && exit 21
exit 0
""", iommu=False)
        b = self.guest("b", f"""
shmem-guest demo info wait-from 0x1 {MS} expect 0 ping {MS} write 0 pong notify 0x1
""", iommu=False)
        ra, rb = self.finish(a), self.finish(b)
        self.assertEqual(senders_seen(ra.log), 0x2)
        self.assertEqual(senders_seen(rb.log), 0x1)


def build_image():
    guestlab.Image.build(ENV["SHMEM_E2E_IMAGE_DIR"], ENV["SHMEM_GUEST"])


if __name__ == "__main__":
    if sys.argv[1:] == ["--build-image"]:
        build_image()
        sys.exit(0)
    unittest.main(verbosity=2)
