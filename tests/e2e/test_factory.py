#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""e2e: guests create regions at run time through the real broker's factory.

The whole path of docs/factory.md with nothing played: shmem-brokerd with its
factory socket and its hotplug helper (shmem-hotplug), two TCG guests that
start with the factory device alone, libshmem-guest's factory client in them
(shmem-guest --detached), and a host peer. QNX's Figure 1, with the VMs in no
set order:

- vma (q35, intel-iommu, a root port with pref64-reserve=512M and a plain
  one) is told no for a find of a region nobody made (DOES_NOT_EXIST) and for
  a name its domain's rules deny (NO_PERMISSION), then attaches "demo" with
  128 MiB: the broker creates fig1.demo (its domain's subst prefix) and plugs
  a device on the big port.
- vmb (pc: pci.0) finds "demo" as soon as it exists (DOES_NOT_EXIST until
  then), then attaches "demo" asking 4 MiB and learns 128 MiB.
- a host peer attaches fig1.demo; the three exchange data and signals.
- vma detaches (its peer is parked: the others see it leave, its device stays)
  and attaches again: the same device, nothing plugged, the data written
  meanwhile there. Then EXISTS for a create of "demo", a second region on
  the plain port, and NO_SLOT for a third.

Both QEMUs exit 0 (no device is ever unplugged: plugin-qemu/hotplug/README.md).

Run: python3 test_factory.py  (paths from the environment: tests/e2e/CMakeLists.txt)
"""

import os
import re
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
import harness  # noqa: E402
from harness import figure1, guestlab  # noqa: E402
from harness.guestlab import answer  # noqa: E402
from harness.hostpeer import HostPeer  # noqa: E402

ENV = guestlab.Environment("SHMEM_BROKERD", "SHMEM_PEER", "SHMEM_SHMEMCTL",
                            "SHMEM_HOTPLUG", "SHMEM_E2E_IMAGE_DIR")

GUEST_TIMEOUT = 300   # s, QEMU start to power off; two TCG guests on a loaded 2-core machine
MS = "60000"          # every wait inside a script
MIB = 1 << 20
CONFIG = """\
[limits]
region-bytes = 256M

[region fig1.full]
size = 64K
max-peers = 1

[domain vma]
deny = secret*
subst = fig1.

[domain vmb]
subst = fig1.
"""

# Figure 1's scripts (harness/figure1.py: peer indices, data, signals), with
# vma's detach and attach again after them: the host writes while vma is
# parked. vma's attach of demo runs under run_with_irqs: the vfio MSI-X counts
# of its device, logged once the host's data is read, show that vmb's and the
# host's signals came as interrupts on their vectors.
VMA_SCRIPT = guestlab.GUEST_HELPERS + f"""
shmem-guest --detached find demo; echo "rc=$?"
shmem-guest --detached attach secret1 4K; echo "rc=$?"
shmem-guest --detached attach bad/name 4K; echo "rc=$?"
shmem-guest --detached attach full 4K; echo "rc=$?"
shmem-guest --detached attach huge 1G; echo "rc=$?"
run_with_irqs "{figure1.VMA_MARKER}" \\
    shmem-guest --detached attach demo 128M {figure1.vma(MS)} sleep 1500 detach demo sleep 5000 \\
    attach demo 4K info expect 200 while-parked {MS} wait-active 0x7 {MS} notify 0x4 detach demo || exit 1
shmem-guest --detached create demo 4K; echo "rc=$?"
shmem-guest --detached attach two 4K info detach two || exit 1
shmem-guest --detached attach three 4K; echo "rc=$?"
echo "devices=$(grep -l 0x1110 /sys/bus/pci/devices/*/device | wc -l)"
"""

VMB_SCRIPT = figure1.find_loop("demo") + f"""
shmem-guest --detached attach demo 4M {figure1.vmb(MS)} {figure1.vmb_end(MS)} detach demo || exit 1
"""

HOST_SCRIPT = (f"{figure1.host(MS)} wait-active 0x6 {MS} write 200 while-parked "
               f"wait-active 0x7 {MS} wait-from 0x1 {MS} {figure1.HOST_END}")
# Holds fig1.full (max-peers 1) while the guests run.
FULL_SCRIPT = f"info expect 0 release {GUEST_TIMEOUT * 1000}"


class FactoryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        ENV.require()
        cls.image = guestlab.Image.from_dir(ENV["SHMEM_E2E_IMAGE_DIR"])
        cls.dir = tempfile.mkdtemp(prefix="shmem-e2e-fac-")  # short: Unix socket paths have 108 bytes
        cls.broker = None
        cls.host = cls.full = None
        try:
            cls.run_scenario()
        except BaseException:
            for g in (getattr(cls, "vma", None), getattr(cls, "vmb", None)):
                if g:
                    print(f"--- {g.name}:\n{g.log().decode(errors='replace')}", file=sys.stderr)
            if cls.broker:
                print(f"--- broker:\n{cls.broker.log()}", file=sys.stderr)
            cls.tearDownClass()
            raise

    @classmethod
    def run_scenario(cls):
        conf = os.path.join(cls.dir, "broker.conf")
        with open(conf, "w") as f:
            f.write(CONFIG)
        run = os.path.join(cls.dir, "run")
        cls.broker = harness.Broker([ENV["SHMEM_BROKERD"], "-c", conf, "-v", "--hotplug-helper",
                                     ENV["SHMEM_HOTPLUG"]], run, os.path.join(cls.dir, "broker.log"))
        cls.full = HostPeer(ENV["SHMEM_PEER"], cls.broker.socket, "fig1.full", FULL_SCRIPT, "full", cls.dir)
        cls.full.wait_output("info index=0 ")
        factory = [guestlab.Shmem(os.path.join(run, "qemu", "factory.sock"), 1)]
        vma = guestlab.Guest(cls.image, VMA_SCRIPT, cls.dir, factory, name="vma", timeout=GUEST_TIMEOUT)
        vma.argv += ["-device", "pcie-root-port,id=rp0,chassis=1,slot=1,pref64-reserve=512M",
                     "-device", "pcie-root-port,id=rp1,chassis=2,slot=2"]
        vmb = guestlab.Guest(cls.image, VMB_SCRIPT, cls.dir, factory, name="vmb", timeout=GUEST_TIMEOUT,
                             iommu=False)
        vmb.argv[vmb.argv.index("q35")] = "pc"
        cls.vma, cls.vmb = vma, vmb
        vma.start()
        vmb.start()

        # The host joins once both guests are attached: vmb's attach comes
        # after vma's (vmb only finds), and vma's output waits in run_with_irqs.
        vmb.wait_log(rb"attach demo status=0", timeout=GUEST_TIMEOUT)
        cls.host = HostPeer(ENV["SHMEM_PEER"], cls.broker.socket, "fig1.demo", HOST_SCRIPT, "host", cls.dir,
                            options=("--find",))
        # vma is parked for 5 s: the host saw it leave, then writes.
        cls.host.wait_output("active 0x6", timeout=GUEST_TIMEOUT)
        cls.parked = cls.inspect("fig1.demo")
        cls.vma_res, cls.vmb_res = vma.wait(), vmb.wait()
        cls.host_out = cls.host.stop()
        cls.full.close()
        cls.vma_rc, cls.vmb_rc = vma.proc.returncode, vmb.proc.returncode
        cls.log = cls.broker.log()

    @classmethod
    def inspect(cls, region):
        return harness.shmemctl_json(ENV["SHMEM_SHMEMCTL"], cls.broker.socket, "inspect", region)

    @classmethod
    def tearDownClass(cls):
        guestlab.kill_all()
        for peer in (cls.host, cls.full):
            if peer:
                peer.close()
        if cls.broker:
            cls.broker.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def ran(self, res, guest):
        self.assertFalse(res.timed_out, f"{guest.name} hit its time limit:\n{res.log}\n--- broker:\n{self.log}")
        self.assertEqual(res.rc, 0, f"{guest.name}:\n{res.log}\n--- broker:\n{self.log}")
        return res.log.replace("\r", "")

    def test_refusals_are_printed_and_exited_with(self):
        log = self.ran(self.vma_res, self.vma)
        for command, name, status in (("find", "demo", 6),       # DOES_NOT_EXIST: nobody made it yet
                                      ("attach", "secret1", 5),  # deny = secret*: NO_PERMISSION
                                      ("attach", "bad/name", 4),  # ILLEGAL_NAME
                                      ("attach", "full", 3),     # CLIENT_MAX: fig1.full has max-peers 1
                                      ("attach", "huge", 8)):    # BAD_SIZE: over region-bytes
            with self.subTest(name=name):
                self.assertEqual(answer(log, command, name)["status"], status)
                self.assertRegex(log, rf"{command} {name} status={status} .*\nrc={status}\n")
        self.assertRegex(self.log, r"refusing '(fig1\.)?secret1'")
        self.assertNotRegex(self.log, r"plugged.*'fig1\.(full|huge|secret1)'")

    def test_first_attach_creates_with_the_subst_prefix(self):
        a = answer(self.ran(self.vma_res, self.vma), "attach", "demo")
        self.assertEqual((a["status"], a["size"], a["region"], a["factory"]),
                         (0, str(128 * MIB), "fig1.demo", "1"), a)

    def test_find_waits_for_the_creator_then_attach_learns_its_size(self):
        log = self.ran(self.vmb_res, self.vmb)
        self.assertRegex(log, r"finds refused=\d+")
        found, attached = answer(log, "find", "demo"), answer(log, "attach", "demo")
        self.assertEqual((found["status"], found["size"], found["region"]), (0, str(128 * MIB), "fig1.demo"))
        self.assertEqual((attached["status"], attached["size"]), (0, str(128 * MIB)))  # asked 4M
        self.assertEqual(attached["device"], found["device"])
        self.assertEqual(answer(log, "detach", "demo")["status"], 0)

    def test_three_peers_exchange_data_and_signals(self):
        log = self.ran(self.vma_res, self.vma)
        self.ran(self.vmb_res, self.vmb)
        self.assertEqual(self.host.returncode, 0, f"{self.host_out}\n--- broker:\n{self.log}")
        self.assertRegex(self.host_out, r"info index=2 size=134217728 ")
        # On q35 + intel-iommu, vmb's and the host's signals reached vma as
        # MSI-X interrupts of its region device, on their senders' vectors.
        irqs = guestlab.irq_counts(log, answer(log, "attach", "demo")["device"])
        self.assertEqual(len(irqs), 17, log)
        self.assertTrue(irqs[1] > 0 and irqs[2] > 0, irqs)

    def test_detach_parks_and_attach_again_reuses_the_device(self):
        log = self.ran(self.vma_res, self.vma)
        first, again = answer(log, "attach", "demo"), answer(log, "attach", "demo", 1)
        self.assertEqual((answer(log, "detach", "demo")["factory"], again["status"]), ("1", 0))
        self.assertEqual(again["device"], first["device"])
        self.assertRegex(log, r"info index=0 size=134217728 ")  # its index back
        # Plugged once for vma and once for vmb, never again.
        self.assertEqual(len(re.findall(r"region 'fig1\.demo' plugged", self.log)), 2, self.log)
        self.assertIn("detached from 'fig1.demo' (its device is kept", self.log)
        parked = [(p["index"], p["vm_name"]) for p in self.parked["peers"] if p.get("parked")]
        self.assertEqual(parked, [(0, "vma")], self.parked)
        self.assertEqual(self.parked["active"], [1, 2], self.parked)

    def test_exists_second_region_and_no_slot(self):
        log = self.ran(self.vma_res, self.vma)
        self.assertEqual(answer(log, "create", "demo")["status"], 7)  # EXISTS
        two = answer(log, "attach", "two")
        self.assertEqual((two["status"], two["region"]), (0, "fig1.two"))
        self.assertNotEqual(two["device"], answer(log, "attach", "demo")["device"])
        self.assertEqual(answer(log, "attach", "three")["status"], 13)  # NO_SLOT: both root ports taken
        self.assertIn("devices=3", log)  # the factory, demo, two: nothing was plugged for three

    def test_qemu_exits_cleanly(self):
        self.ran(self.vma_res, self.vma)
        self.ran(self.vmb_res, self.vmb)
        self.assertEqual((self.vma_rc, self.vmb_rc), (0, 0))
        self.assertNotRegex(self.log, r"(?i)assert|segfault|double free")


if __name__ == "__main__":
    unittest.main(verbosity=2)
