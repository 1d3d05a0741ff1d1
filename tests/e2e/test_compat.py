# SPDX-License-Identifier: LGPL-2.1-or-later
"""e2e: compat mode (signal-mode = ivshmem) with two real QEMU guests.

The promise: people who run QEMU's contrib/ivshmem-server with libvirt
<shmem> today switch to the broker with no guest change. So the guests here
run `shmem-guest --raw`, which does what an ivshmem guest application does
and nothing of shmem-broker's: IVPosition, Doorbell (peer << 16 | vector),
BAR2 as data from offset 0, one MSI-X eventfd per vector through vfio-pci.

The broker declares the region from a configuration file (broker.conf(5):
signal-mode = ivshmem, vectors = 4); both QEMUs have ivshmem-doorbell,vectors=4.
A then B ring each other on vectors 0, 1 and 3 (never 2), each ring
acknowledged through the shared memory before the next; the receiver's
wait-vector fails if any other vector fires. Every phase is sequenced through
strings in the region, never by sleeping. B is started once A has enabled
MSI-X, so that a ring the broker made on B's join (compat mode makes none)
would be seen by A as a stray vector.

Run: python3 test_compat.py  (paths from the environment, as test-guests.py;
tests/e2e/CMakeLists.txt sets them)
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
import harness  # noqa: E402
from harness import guestlab  # noqa: E402

ENV = {k: os.environ.get(k, "") for k in ("SHMEM_BROKERD", "SHMEM_GUEST", "SHMEM_SHMEMCTL",
                                          "SHMEM_E2E_IMAGE_DIR")}
REGION = "compat"
SIZE = 1 << 20       # the whole BAR2 is data in compat mode
VECTORS = 4
MS = "60000"         # in-guest waits
GUEST_TIMEOUT = 180  # s, QEMU start to power off; TCG on a loaded 2-core machine

CONFIG = f"""[region {REGION}]
size = 1M
signal-mode = ivshmem
vectors = {VECTORS}
"""

# Offsets in BAR2. A writes at 0: there is no control page.
END = SIZE - 16
A_READY, B_READY = 64, 128   # written once MSI-X is on (raw mode enables it first)
ACK = 256                    # acknowledgements, 16 bytes apart

A_TO_B = (0, 1, 3)
B_TO_A = (1, 3, 0)


def ring_script(peer, vectors, ack):
    """Ring @peer on each of @vectors, each time waiting for the receiver's ack."""
    return " ".join(f"ring {peer} {v} expect {ack + 16 * i} got-{v} {MS}" for i, v in enumerate(vectors))


def wait_script(vectors, ack):
    """Wait for each of @vectors in turn (no other may fire) and acknowledge it."""
    return " ".join(f"wait-vector {v} {MS} write {ack + 16 * i} got-{v}" for i, v in enumerate(vectors))


# A (IVPosition 0): checks the library sees no region of its own on the
# device, then in raw mode reads offset 0 before anyone wrote it.
SCRIPT_A = f"""
shmem-guest {REGION} info | grep -q 'FAIL attach {REGION}: region does not exist' || exit 10
shmem-guest --raw info read 0 16 write 0 from-a write {A_READY} a-ready \\
        expect {B_READY} b-ready {MS} expect {END} from-b-at-end {MS} \\
        {ring_script(1, A_TO_B, ACK)} \\
        {wait_script(B_TO_A, ACK + 64)} expect-no-vector 300
"""
# B (IVPosition 1): reads A's offset 0, writes at the very end of BAR2.
SCRIPT_B = f"""
shmem-guest --raw info write {B_READY} b-ready expect 0 from-a {MS} write {END} from-b-at-end \\
        expect {A_READY} a-ready {MS} \\
        {wait_script(A_TO_B, ACK)} \\
        {ring_script(0, B_TO_A, ACK + 64)} expect-no-vector 300
"""


def clean(log):
    """The serial console ends lines with CR LF."""
    return log.replace("\r", "")


def vectors_seen(log):
    """Every "vector V count=C" line of a raw shmem-guest, as (V, C)."""
    return [(int(v), int(c)) for v, c in re.findall(r"^shmem-tool: vector (\d+) count=(\d+)$", log, re.M)]


class CompatGuests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for k, v in ENV.items():
            if not v:
                raise AssertionError(f"${k} is not set (tests/e2e/CMakeLists.txt sets it)")
        d = ENV["SHMEM_E2E_IMAGE_DIR"]
        image = guestlab.Image(os.path.join(d, "vmlinux"), os.path.join(d, "initramfs.cpio.gz"))
        if not os.path.exists(image.initrd):
            raise AssertionError(f"no guest image in {d}: run test-guests.py --build-image")
        # Short: Unix socket paths have 108 bytes.
        cls.dir = tempfile.mkdtemp(prefix="shmem-e2e-compat-")
        cls.broker = None
        try:
            cls.run_scenario(image)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def run_scenario(cls, image):
        conf = os.path.join(cls.dir, "broker.conf")
        with open(conf, "w") as f:
            f.write(CONFIG)
        rundir = os.path.join(cls.dir, "run")
        cls.broker_log = os.path.join(cls.dir, "broker.log")
        # Ready (a Hello answered) after the configuration's regions have their sockets.
        cls.broker = harness.Broker([ENV["SHMEM_BROKERD"], "--config", conf, "-v"], rundir, cls.broker_log)
        sock = cls.broker.qemu_socket(REGION)

        t = time.monotonic()
        shm = [guestlab.Shmem(sock, VECTORS)]
        a = guestlab.Guest(image, SCRIPT_A, cls.dir, shm, name="vm-a", timeout=GUEST_TIMEOUT).start()
        a.wait_connected()
        # A's MSI-X is on once raw mode prints its info: from now on a stray ring would count.
        a.wait_log(rb"shmem-tool: info position=", timeout=60)
        b = guestlab.Guest(image, SCRIPT_B, cls.dir, shm, name="vm-b", timeout=GUEST_TIMEOUT).start()
        b.wait_connected()
        cls.inspect = json.loads(subprocess.run(
            [ENV["SHMEM_SHMEMCTL"], "--socket", os.path.join(rundir, "broker.sock"), "--json", "inspect", REGION],
            check=True, capture_output=True, text=True, timeout=10).stdout)
        cls.a, cls.b = a.wait(), b.wait()
        cls.seconds = time.monotonic() - t
        cls.broker.send_signal(signal.SIGTERM)
        cls.broker_rc = cls.broker.wait(10)

    @classmethod
    def tearDownClass(cls):
        guestlab.kill_all()
        if cls.broker:
            cls.broker.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    @staticmethod
    def read(path):
        with open(path, errors="replace") as f:
            return f.read()

    def ran(self, res, name):
        """The clean log of a guest whose script ran to the end and passed."""
        self.assertFalse(res.timed_out, f"{name} hit its time limit:\n{res.log}")
        self.assertEqual(res.rc, 0, f"{name} failed:\n{res.log}\n--- broker:\n{self.read(self.broker_log)}")
        return clean(res.log)

    def test_positions_size_and_vectors(self):
        # IVPosition as contrib's server numbers clients, in connection order;
        # all of BAR2 is data; the device's 4 vectors each have an eventfd.
        for res, name, position in ((self.a, "vm-a", 0), (self.b, "vm-b", 1)):
            log = self.ran(res, name)
            self.assertRegex(log, rf"shmem-tool: info position={position} size={SIZE} vectors={VECTORS} "
                                  r"device=\S+ interrupts=msix\n")

    def test_no_control_page(self):
        # Before A wrote anything, offset 0 was zero (the broker put nothing
        # there); libshmem-guest found no region of its own on the device (A's
        # script exits 10 otherwise); A's write at 0 and B's at the very last
        # bytes reached the other guest (their expects passed).
        a = self.ran(self.a, "vm-a")
        self.assertRegex(a, r"shmem-tool: read 0 \n")
        self.ran(self.b, "vm-b")

    def test_a_rings_b_on_each_vector(self):
        # Exactly the rung vector, once per ring: wait-vector fails on any
        # other, and expect-no-vector on a late one.
        b = self.ran(self.b, "vm-b")
        self.assertEqual(vectors_seen(b), [(v, 1) for v in A_TO_B], b)

    def test_b_rings_a_on_each_vector(self):
        a = self.ran(self.a, "vm-a")
        self.assertEqual(vectors_seen(a), [(v, 1) for v in B_TO_A], a)

    def test_broker_serves_the_region_in_compat_mode(self):
        r = self.inspect
        self.assertEqual((r["signal_mode"], r["vectors"], r["data_size"], r["region_size"]),
                         ("ivshmem", VECTORS, SIZE, SIZE), r)
        self.assertEqual(sorted(p["label"] for p in r["peers"]), ["vm-a", "vm-b"], r)

    def test_broker_exits_cleanly(self):
        self.assertEqual(self.broker_rc, 0, self.read(self.broker_log))


if __name__ == "__main__":
    unittest.main(verbosity=2)
