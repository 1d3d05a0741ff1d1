#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""e2e: the guest's side of the factory device against a fake broker side.

libshmem-guest's factory client (clients/guest/factory.c) in real guests
(q35 with a virtual IOMMU; pc without), and a factory played here
(FakeFactory): an ivshmem server on its own socket that serves the VM's
factory device (vectors=1; the VM peer 1, the fake peer 0), holds the factory
page (proto/factory-page.h) in a memfd and answers each ring. For a region it
plugs an ivshmem-doorbell device into the running VM over QMP (behind a
pcie-root-port on q35, into pci.0 on pc), connected to the real broker's
socket of that region, as the broker's factory does
(plugin-qemu/factory.c, when it lands; this test stays as the guest's
half, independent of it). What it cannot do is park a device: its DETACH
answers yes and the VM stays attached.

Run by ctest as `python3 test_guest_factory.py BUILD_DIR` (scenario.Lab's
broker, tools and image).
"""

import json
import mmap
import os
import re
import select
import socket
import struct
import sys
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # scenario
import scenario  # noqa: E402
from harness import guestlab  # noqa: E402
from harness.hostpeer import HostPeer  # noqa: E402

BUILD = None
GUEST_TIMEOUT = 180
MS = "30000"

# proto/factory-page.h
MAGIC = 0x3130544341464253
HEADER = struct.Struct("<QIIQII")               # magic version header_size max_data_size max_peers reserved
REQUEST = struct.Struct("<QIIQ64s")             # seq op flags size name
ANSWER = struct.Struct("<QIIQII64s192s")        # seq state status data_size max_peers reserved region detail
REQUEST_AT, ANSWER_AT = 32, 120
OP_ATTACH, OP_FIND, OP_EXCLUSIVE, OP_DETACH = 1, 2, 3, 4
BUSY, DONE = 1, 2
OK, DOES_NOT_EXIST, EXISTS, NO_SLOT = 0, 6, 7, 13


def qmp(path, *commands):
    """Runs QMP @commands ((name, arguments) pairs) on a fresh connection; returns their answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(path)
        f = s.makefile("rwb")
        json.loads(f.readline())
        answers = []
        for name, args in (("qmp_capabilities", {}),) + commands:
            f.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
            f.flush()
            while True:
                m = json.loads(f.readline())
                if "return" in m or "error" in m:
                    break  # events come between
            answers.append(m)
        return answers[1:]


class FakeFactory:
    """The broker's side of one VM's factory device: @regions maps a guest's
    name to (host name, broker socket, data size) for ATTACH and FIND; the
    names in @refuse get (status, detail)."""

    def __init__(self, path, regions, refuse, bus):
        """@bus(n): where the n-th device plugged goes (q35: a pcie-root-port; pc: pci.0)."""
        self.regions = regions
        self.refuse = refuse
        self.bus = bus
        self.plugged = set()
        self.requests = []     # (seq, op, name, size) as copied out
        self.errors = []
        self.qmp_path = None   # set once the guest is known
        self.memfd = os.memfd_create("factory", os.MFD_CLOEXEC)
        os.ftruncate(self.memfd, 4096)
        self.page = mmap.mmap(self.memfd, 4096)
        HEADER.pack_into(self.page, 0, MAGIC, 1, REQUEST_AT, 1 << 24, 16, 0)
        self.ring = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)   # peer 0's vector 0
        self.vector = os.eventfd(0, os.EFD_CLOEXEC)                   # the VM's vector 0, never rung
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _send(self, conn, value, fd=None):
        fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))] if fd is not None else []
        conn.sendmsg([struct.pack("<q", value)], fds)

    def _run(self):
        try:
            conn, _ = self.listener.accept()
            # QEMU's ivshmem server protocol (docs/specs/ivshmem-spec.rst): version,
            # the client's id, the memory, then each peer's vectors, its own last.
            self._send(conn, 0)
            self._send(conn, 1)
            self._send(conn, -1, self.memfd)
            self._send(conn, 0, self.ring)
            self._send(conn, 1, self.vector)
            while not self.stop.is_set():
                if not select.select([self.ring], [], [], 0.05)[0]:
                    continue
                os.eventfd_read(self.ring)
                self._serve(*REQUEST.unpack_from(self.page, REQUEST_AT))
            conn.close()
        except Exception as e:  # reported by the test
            self.errors.append(repr(e))

    def _answer(self, seq, state, status=OK, data_size=0, region="", detail=""):
        # The order the guest expects: fields, state, seq (x86 keeps stores in order).
        a = ANSWER.pack(seq, state, status, data_size, 16 if status == OK else 0, 0,
                        region.encode(), detail.encode())
        self.page[ANSWER_AT + 12:ANSWER_AT + ANSWER.size] = a[12:]
        self.page[ANSWER_AT + 8:ANSWER_AT + 12] = a[8:12]
        self.page[ANSWER_AT:ANSWER_AT + 8] = a[:8]

    def _serve(self, seq, op, flags, size, name):
        name = name.split(b"\0", 1)[0].decode()
        self.requests.append((seq, op, name, size))
        if op == OP_DETACH:
            return self._answer(seq, DONE)
        if name in self.refuse:
            return self._answer(seq, DONE, *self.refuse[name][:1], detail=self.refuse[name][1])
        if name not in self.regions:
            return self._answer(seq, DONE, DOES_NOT_EXIST, detail="no such region")
        if op == OP_EXCLUSIVE:
            return self._answer(seq, DONE, EXISTS)
        host, sock, data_size = self.regions[name]
        if name not in self.plugged:
            self._answer(seq, BUSY)
            n = len(self.plugged)
            for m in qmp(self.qmp_path,
                         ("chardev-add", {"id": f"fac{n}", "backend": {"type": "socket", "data": {
                             "addr": {"type": "unix", "data": {"path": sock}}, "server": False}}}),
                         ("device_add", {"driver": "ivshmem-doorbell", "id": f"facdev{n}",
                                         "chardev": f"fac{n}", "vectors": 17, "bus": self.bus(n)})):
                if "error" in m:
                    return self._answer(seq, DONE, 14, detail=m["error"]["desc"][:190])
            self.plugged.add(name)
        self._answer(seq, DONE, OK, data_size, host)

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.listener.close()
        for fd in (self.memfd, self.ring, self.vector):
            os.close(fd)


def lines(log, what):
    """The attach/find/create/detach lines of shmem-guest in @log, as dicts."""
    out = []
    for m in re.finditer(rf"shmem-tool: {what} (\S+) status=(-?\d+) \(([^)]*)\)(.*)", log):
        d = dict(kv.split("=", 1) for kv in m.group(4).split(" detail=")[0].split())
        d.update(name=m.group(1), status=int(m.group(2)), text=m.group(3))
        if " detail=" in m.group(4):
            d["detail"] = m.group(4).split(" detail=", 1)[1].strip()
        out.append(d)
    return out


class GuestFactoryTest(unittest.TestCase):
    def setUp(self):
        self.lab = scenario.Lab(BUILD)
        self.image = self.lab.image()
        self.factory = self.peer = None

    def tearDown(self):
        self.lab.stop()
        for x in (self.peer, self.factory):
            if x:
                x.close()
        self.lab.cleanup()

    def start(self, regions, script, machine="q35", iommu=True, cold=()):
        """The broker with @regions (host names), the fake factory serving the guest's name
        of each (the host's without "vm1."), a host peer on the first, and the guest vm1
        with the factory device, two free hot-pluggable slots and the regions in @cold on
        its command line. Returns the guest's and the host peer's output."""
        self.lab.extra_args = [a for r in regions for a in ("--region", f"{r}:60K")]
        self.lab.start_broker()
        served = {r.split("vm1.", 1)[-1]: (r, self.lab.qemu_socket(r), 61440) for r in regions}
        self.factory = FakeFactory(os.path.join(self.lab.workdir, "factory.sock"), served,
                                   {"full": (NO_SLOT, "no free pcie-root-port")},
                                   (lambda n: f"rp{n}") if machine == "q35" else (lambda n: "pci.0"))
        self.peer = HostPeer(self.lab.peer, self.lab.socket, regions[0],
                             f"info wait-active 0x3 {MS} wait-from 0x2 {MS} expect 0 from-guest {MS} "
                             f"write 100 from-host notify all wait-active 0x1 {MS}",
                             "host", self.lab.workdir, options=("--find",))
        self.peer.wait_output("info index=0")
        shmem = [guestlab.Shmem(self.factory.listener.getsockname(), 1)]
        shmem += [guestlab.Shmem(self.lab.qemu_socket(r), 17) for r in cold]
        g = guestlab.Guest(self.image, script, self.lab.workdir, shmem, name="vm1", timeout=GUEST_TIMEOUT,
                           iommu=iommu)
        if machine == "q35":
            # acpiphp (QEMU 7.2's default on q35) or pciehp in the guest sees a device come.
            g.argv += ["-device", "pcie-root-port,id=rp0,bus=pcie.0,chassis=1,slot=1",
                       "-device", "pcie-root-port,id=rp1,bus=pcie.0,chassis=2,slot=2"]
        else:
            g.argv[g.argv.index("q35")] = "pc"
        self.factory.qmp_path = g.qmp_path
        g.start()
        res = g.wait()
        out = self.peer.stop()
        with open(self.lab.broker_log, errors="replace") as f:
            broker = f.read()
        ctx = (f"\n--- guest\n{res.log}\n--- host\n{out}\n--- broker\n{broker}\n"
               f"--- factory {self.factory.requests} {self.factory.errors}")
        self.assertFalse(res.timed_out, ctx)
        self.assertEqual(res.rc, 0, ctx)
        self.assertEqual(self.peer.returncode, 0, ctx)
        self.assertEqual(self.factory.errors, [], ctx)
        self.assertIn("active 0x1", out, ctx)  # the guest left when it powered off
        return res.log, ctx

    def test_q35_hotplug_vfio(self):
        """Refusals, then a region hot-plugged on request (q35, vfio MSI-X), used with a host
        peer, detached and attached again; requests of two processes one after the other."""
        log, ctx = self.start(["vm1.hot"], f"""
shmem-guest --detached find nosuch; echo "find-rc=$?"
shmem-guest --detached attach full 4K; echo "full-rc=$?"
shmem-guest --detached attach full 4K > /tmp/p1 & shmem-guest --detached attach full 4K > /tmp/p2; wait
cat /tmp/p1 /tmp/p2
shmem-guest --detached attach hot 60K info wait-active 0x3 {MS} write 0 from-guest notify 0x1 \\
        expect 100 from-host {MS} detach hot attach hot 60K info read 100 9 detach hot || exit 1
shmem-guest --detached create hot 60K; echo "create-rc=$?"
echo "vfio-bound=$(ls /sys/bus/pci/drivers/vfio-pci | grep -c '^0000:')"
""")
        self.assertIn("find-rc=6", log, ctx)
        self.assertIn("full-rc=13", log, ctx)
        self.assertIn("create-rc=7", log, ctx)
        # The hot-plugged device only: the factory's is mapped through sysfs.
        self.assertIn("vfio-bound=1", log, ctx)
        finds = lines(log, "find")
        self.assertEqual((finds[0]["status"], finds[0]["factory"], finds[0]["detail"]),
                         (DOES_NOT_EXIST, "1", "no such region"), ctx)
        attaches = lines(log, "attach")
        for a in attaches[:3]:
            self.assertEqual((a["name"], a["status"], a["text"], a["factory"], a["detail"]),
                             ("full", NO_SLOT, "no free hot-pluggable slot for the region's device", "1",
                              "no free pcie-root-port"), ctx)
        first, again = attaches[3:]
        self.assertEqual((first["status"], first["size"], first["region"], first["factory"]),
                         (OK, "61440", "vm1.hot", "1"), ctx)
        # The device carries the host's name, so the guest's name is asked for again; the fake
        # did not park, so it answers at once and the same device is used.
        self.assertEqual((again["status"], again["region"], again["device"], again["factory"]),
                         (OK, "vm1.hot", first["device"], "1"), ctx)
        self.assertIn("info index=1 size=61440 max_peers=16", log, ctx)
        self.assertIn("read 100 from-host", log, ctx)
        self.assertEqual([d["factory"] for d in lines(log, "detach")], ["1", "1"], ctx)
        # One request at a time, each seq one more than the last.
        seqs = [r[0] for r in self.factory.requests]
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)), ctx)
        ops = [(op, name, size) for _, op, name, size in self.factory.requests]
        self.assertEqual(ops, [(OP_FIND, "nosuch", 0)] + [(OP_ATTACH, "full", 4096)] * 3 +
                         [(OP_ATTACH, "hot", 61440), (OP_DETACH, "hot", 0)] * 2 +
                         [(OP_EXCLUSIVE, "hot", 61440)], ctx)

    def test_pc_acpi_polling(self):
        """pc (ACPI hotplug), no IOMMU (polling): a region on QEMU's command line is used
        without a request and detached through the factory; another is hot-plugged."""
        log, ctx = self.start(["hot", "cold"], f"""
shmem-guest --detached attach cold 60K detach cold attach cold 60K detach cold || exit 1
shmem-guest --detached attach hot 60K info wait-active 0x3 {MS} write 0 from-guest notify 0x1 \\
        expect 100 from-host {MS} detach hot || exit 2
grep -q vfio-msix /proc/interrupts && exit 3
exit 0
""", machine="pc", iommu=False, cold=["cold"])
        attaches, detaches = lines(log, "attach"), lines(log, "detach")
        # cold: there at boot, so no request; its detach asks, the fake does not park.
        self.assertEqual([(a["name"], a["factory"]) for a in attaches],
                         [("cold", "0"), ("cold", "0"), ("hot", "1")], ctx)
        self.assertEqual(attaches[0]["device"], attaches[1]["device"], ctx)
        self.assertNotEqual(attaches[0]["device"], attaches[2]["device"], ctx)
        self.assertEqual([(d["name"], d["status"], d["factory"]) for d in detaches],
                         [("cold", OK, "1")] * 2 + [("hot", OK, "1")], ctx)
        self.assertEqual([(op, name) for _, op, name, _ in self.factory.requests],
                         [(OP_DETACH, "cold")] * 2 + [(OP_ATTACH, "hot"), (OP_DETACH, "hot")], ctx)


if __name__ == "__main__":
    BUILD = sys.argv.pop(1) if len(sys.argv) > 1 else "build"
    unittest.main(verbosity=2)
