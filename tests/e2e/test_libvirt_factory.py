#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""e2e: a libvirt domain's guest creates a region at run time; the broker plugs it through libvirt.

The factory path of docs/libvirt.md section 13 with nothing played: a real
libvirtd (tests/harness/libvirt.py), the real broker with its hotplug helper
(shmem-hotplug), TCG domains defined with what `shmemctl xml --factory`
prints and nothing else of this project, and a host peer.

1. q35 (intel-iommu): the domain is defined with `shmemctl xml --factory
   --regions 1`, and `shmemctl xml --factory DOMAIN --regions 1` then finds it
   ready (nothing on stdout) and counts its free root ports, F. The guest
   attaches "lvf" (64 KiB), which does not exist: the broker creates it and
   plugs its <shmem> through libvirt (virDomainAttachDeviceFlags, no QMP: the
   broker log says the domain is served through libvirt, and `virsh dumpxml`
   shows the device on a root port). Guest and host peer exchange data and a
   signal each way, the host's seen as an MSI-X interrupt of the plugged
   device. F-1 more regions fill the other ports; the next is refused with
   NO_SLOT and libvirt's free ports named in the detail, nothing plugged.
2. pc: defined with `shmemctl xml --factory --machine pc`; "lvp" (1 MiB) is
   plugged on pci.0 and used with a host peer (polling: no IOMMU).
3. q35 with a region beyond a plain root port's 2 MiB window: `shmemctl xml
   --factory --max-region 128M` names the guest kernel's parameters, the
   domain boots with them (WINDOWS) and plain root ports, and the guest
   creates "lvb" of 128 MiB (BAR2 256 MiB): the broker (libvirt-port-window
   512M, for all three: test 1's regions are small) plugs it on a root port,
   the guest's sysfs shows BAR2 assigned with 256 MiB, and data and a signal
   each way pass as in 1 (the host's as an MSI-X interrupt). Without the
   kernel parameters BAR2 stays unassigned (the attach fails); without
   libvirt-port-window the plug is refused with NO_SLOT.
4. QNX's Figure 1 (harness/figure1.py) with two domains at once: a q35 one
   as in 3 creates "fig1" with 128 MiB, a pc one finds it and attaches it
   asking 4 MiB (it learns 128 MiB), a host peer joins; both plugs go through
   libvirt, the three read each other's data, the guests signal each other
   and the host, the host signals the q35 guest, whose signals from the pc
   guest and the host come as MSI-X interrupts of its device.

Neither QEMU has a -qmp socket: a factory that fell back to QMP would answer
HOTPLUG and the test fail. Daemons, domains and their removal (also those of
an earlier run that was killed) as test_libvirt.py. Needs root and the Debian
packages libvirt-daemon-system and libvirt-clients.

Run: python3 test_libvirt_factory.py  (paths from the environment: tests/e2e/CMakeLists.txt)
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
import harness  # noqa: E402
from harness import figure1, guestlab, libvirt  # noqa: E402
from harness.guestlab import answer  # noqa: E402
from harness.hostpeer import HostPeer  # noqa: E402

ENV = guestlab.Environment("SHMEM_BROKERD", "SHMEM_PEER", "SHMEM_SHMEMCTL", "SHMEM_HOTPLUG",
                           "SHMEM_E2E_IMAGE_DIR")
MS = "60000"  # every wait inside a script
# The guest's side of a region it creates (peer 0) with a host peer (1): data
# both ways, a signal each way; the guest holds the region until the test
# has looked at the live XML ("unconsumed" is run_with_irqs' marker).
GUEST = (f"info write 0 from-guest wait-active 0x3 {MS} notify 0x2 wait-from 0x2 {MS} "
         f"expect 100 from-host {MS} unconsumed sleep 300")
HOST = f"info expect 0 from-guest {MS} wait-from 0x1 {MS} write 100 from-host notify 0x1"
# The guest kernel's root port windows for test 3 (docs/libvirt.md section 13),
# and the broker's word for them.
WINDOWS = "pci=hpmmioprefsize=512M,resource_alignment=pci:1b36:000c"
PORT_WINDOW = "512M"
# BAR2 of every region device the guest has: "bar2 BDF START SIZE".
BAR2 = r"""
for d in $(grep -l 0x1110 /sys/bus/pci/devices/*/device); do
        d=${d%/device}; set -- $(sed -n 3p $d/resource)
        echo "bar2 ${d##*/} $(printf 0x%x $1) $(($2 - $1 + 1))"
done
"""
# The end of every script: the devices the guest has, then time for `virsh dumpxml`.
TAIL = """
echo "devices=$(grep -l 0x1110 /sys/bus/pci/devices/*/device | wc -l)"
sleep 5
"""


def shmemctl(broker, *args, timeout=90):
    return subprocess.run([ENV["SHMEM_SHMEMCTL"], "--socket", broker.socket, *args],
                          capture_output=True, text=True, timeout=timeout)


def live_shmems(xml):
    """{name: bus} of the <shmem> devices of a domain's XML (bus None without an address)."""
    out = {}
    for m in re.finditer(r"<shmem name='([^']*)'>(.*?)</shmem>", xml, re.S):
        bus = re.search(r"<address type='pci' [^>]*bus='(0x[0-9a-f]+)'", m.group(2))
        out[m.group(1)] = int(bus.group(1), 16) if bus else None
    return out


class LibvirtFactoryTest(libvirt.DiagnosticsOnFailure, unittest.TestCase):
    broker = None

    @classmethod
    def setUpClass(cls):
        ENV.require()
        missing = libvirt.missing()
        if missing:
            raise AssertionError("\n".join(missing))
        cls.image = guestlab.Image.from_dir(ENV["SHMEM_E2E_IMAGE_DIR"])
        # Short (Unix socket paths have 108 bytes), 0755: libvirt-qemu reaches the
        # factory socket, the kernel and the initrds through it.
        cls.workdir = tempfile.mkdtemp(prefix="shmem-e2e-lvf-")
        os.chmod(cls.workdir, 0o755)
        cls.addClassCleanup(shutil.rmtree, cls.workdir, ignore_errors=True)
        cls.addClassCleanup(libvirt.cleanup, "test_libvirt_factory")
        cls.daemons = libvirt.Daemons(cls.workdir)
        libvirt.register(cls.daemons)
        cls.daemons.ensure()
        libvirt.remove_stale_domains(b"test_libvirt_factory")
        # No region declared: the guests create theirs. Regions are plugged
        # through qemu:///system, the default --libvirt-uri.
        cls.broker = harness.Broker([ENV["SHMEM_BROKERD"], "--no-config", "-v", "--hotplug-helper",
                                     ENV["SHMEM_HOTPLUG"], "--libvirt-port-window", PORT_WINDOW], os.path.join(cls.workdir, "run"),
                                    os.path.join(cls.workdir, "broker.log"))
        libvirt.register(cls.broker)
        cls.factory_socket = os.path.join(cls.workdir, "run", "qemu", "factory.sock")

    def setUp(self):
        self.domains = []
        self.host = None
        self.diag = ""

    def tearDown(self):
        # Collected now, printed by run() if the test failed: undefine comes next.
        self.diag = "\n".join(d.diagnostics() for d in self.domains)
        self.diag += "\n----- broker.log\n" + self.broker.log()
        if self.host:
            self.diag += f"\n----- host peer\n{self.host.output()}"
            self.host.close()
        for d in self.domains:
            self.assertTrue(libvirt.remove_domain(d.name), f"{d.name} is still defined")

    def factory_xml(self, *args):
        """`shmemctl xml --factory ARGS` for a new definition: the factory device on the broker's socket."""
        p = shmemctl(self.broker, "xml", "--factory", *args)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(f"<server path='{self.factory_socket}'/>", p.stdout)
        return p

    def define(self, role, machine, xml, append=""):
        """A domain of @machine with @xml among its devices (@append: kernel parameters), defined;
        its script comes later (set_script)."""
        d = libvirt.Domain(self.workdir, self.image, role, "exit 99", machine=machine, devices=[xml],
                           append=append)
        self.domains.append(d)
        return d.define()

    def set_script(self, d, script):
        guestlab.write_initrd(self.image, guestlab.overlay(guestlab.GUEST_HELPERS + script), d.initrd)

    def plugged(self, d, region, index=0):
        """Waits until the broker has plugged @region into @d (the guest's output
        may be held back by run_with_irqs), then checks that libvirt did: the
        broker served the domain through libvirt, libvirt's live XML has the
        device, the broker knows the region's new peer (@index) as that domain's QEMU.
        Returns (the bus of the device in the live XML, the helper's bus name)."""
        rx = re.compile(rf"Factory of '{re.escape(d.name)}': region '{re.escape(region)}' plugged \(ok "
                        r"(\S+)\) in (\d+) ms")
        end = d.started + d.timeout
        while not rx.search(self.broker.log()):
            if time.monotonic() > end or not d.state().startswith("running"):
                self.fail(f"'{region}' was not plugged into {d.name} ({d.state()})")
            time.sleep(0.2)
        log = self.broker.log()
        m = rx.search(log)
        self.assertRegex(log, rf"Factory device of '{re.escape(d.name)}' \(pid \d+\) connected: a libvirt "
                              "domain, served through libvirt")
        self.assertNotIn("cannot reach this VM's QEMU", log)
        shmems = live_shmems(d.live_xml())
        self.assertIn(".factory", shmems)
        self.assertIn(region, shmems, d.live_xml())
        info = json.loads(shmemctl(self.broker, "--json", "inspect", region).stdout)
        peer = [p for p in info["peers"] if p.get("vm_name") == d.name]
        self.assertEqual(len(peer), 1, info)
        self.assertEqual((peer[0]["index"], peer[0]["vm_uuid"], peer[0]["libvirt"]), (index, d.uuid(), True), info)
        # shmemctl factory: the VM as a libvirt domain, plugged through libvirt.
        p = shmemctl(self.broker, "factory")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(f"vm:          '{d.name}' (UUID {d.uuid()}, pid ", p.stdout)
        self.assertRegex(p.stdout, r", libvirt\)\n.*\nmonitor:     libvirt's own \(devices are plugged through "
                                   r"libvirt\)\n")
        self.assertRegex(p.stdout, rf"\n{re.escape(region)} +{index} plugged ")
        sys.stderr.write(f"test_libvirt_factory: {d.machine}: '{region}' plugged on {m.group(1)} "
                         f"in {m.group(2)} ms\n")
        return shmems[region], m.group(1)

    def exchange(self, d, region):
        """The host peer's side of GUEST on @region; returns its output."""
        self.host = HostPeer(ENV["SHMEM_PEER"], self.broker.socket, region, HOST, "host", self.workdir,
                             options=("--find",))
        out = self.host.stop(timeout=d.timeout)
        self.assertEqual(self.host.returncode, 0, out)
        self.assertIn("shmem-tool: info index=1 ", out)
        return out

    def finish(self, d):
        """Waits for the guest's script; returns its log and the <shmem> devices the
        domain had at its end, before it powered off."""
        d.wait_log(r"devices=\d+", timeout=d.timeout)
        live = live_shmems(d.live_xml())
        res = d.wait()
        self.assertFalse(res.timed_out, f"{d.name} did not power off within {d.timeout} s:\n{res.log}")
        self.assertEqual(res.rc, 0, f"{d.name} failed:\n{res.log}")
        return res.log.replace("\r", ""), live

    def test_10_q35_plugs_on_a_root_port_then_no_slot(self):
        new = self.factory_xml("--regions", "1")
        self.assertTrue(new.stdout.startswith("<controller type='pci' index='0' model='pcie-root'/>\n"), new.stdout)
        d = self.define("fq", "q35", new.stdout)
        # Defined as printed, the domain is ready: libvirt's bridge and devices were counted.
        again = shmemctl(self.broker, "xml", "--factory", d.name, "--regions", "1")
        self.assertEqual((again.returncode, again.stdout), (0, ""), again.stderr)
        m = re.search(r"has its factory device, (\d+) free hot-pluggable root ports? .*: ready", again.stderr)
        self.assertTrue(m, again.stderr)
        free = int(m.group(1))
        self.assertGreaterEqual(free, 1)
        self.set_script(d, f"""
run_with_irqs unconsumed shmem-guest --detached attach lvf 64K {GUEST} detach lvf || exit 1
i=1
while [ $i -lt {free} ]; do
        shmem-guest --detached attach fill$i 4K info detach fill$i || exit 1
        i=$((i + 1))
done
shmem-guest --detached attach over 4K; echo "rc=$?"
""" + TAIL)
        d.start()
        bus, alias = self.plugged(d, "lvf")
        ports = re.findall(r"<controller type='pci' index='(\d+)' model='pcie-root-port'>", d.live_xml())
        self.assertIn(str(bus), ports, f"'lvf' is on bus {bus}, not on a root port ({ports})")
        self.assertEqual(alias, f"pci.{bus}")
        host = self.exchange(d, "lvf")
        self.assertRegex(host, r"info index=1 size=65536 ")

        log, live = self.finish(d)
        a = answer(log, "attach", "lvf")
        self.assertEqual((a["status"], a["size"], a["region"], a["factory"]), (0, "65536", "lvf", "1"), a)
        self.assertIn("shmem-tool: info index=0 size=65536 ", log)
        # The host's signal (peer 1: vector 1) came as an interrupt of the plugged device.
        irqs = guestlab.irq_counts(log, a["device"])
        self.assertGreater(irqs.get(1, 0), 0, log)
        for i in range(1, free):
            self.assertEqual(answer(log, "attach", f"fill{i}")["status"], 0)
        over = answer(log, "attach", "over")
        self.assertEqual(over["status"], 13, log)  # NO_SLOT
        self.assertIn("no free hot-pluggable pcie-root-port holds a BAR of 8192 bytes", over.get("detail", ""))
        self.assertIn("rc=13", log)
        self.assertIn(f"devices={1 + free}", log)  # the factory's and one per port: nothing for "over"
        self.assertEqual(set(live), {".factory", "lvf", *(f"fill{i}" for i in range(1, free))}, live)
        self.assertRegex(self.broker.log(), r"cannot plug 'over'( \(\d+ ms\))?: error no-slot ")
        # The broker goes on (test_20 uses it next).
        self.assertIsNone(self.broker.poll())
        self.assertEqual(shmemctl(self.broker, "list").returncode, 0)

    def test_20_pc_plugs_on_pci0(self):
        new = self.factory_xml("--machine", "pc")
        self.assertNotIn("<controller", new.stdout)
        d = self.define("fp", "pc", new.stdout)
        self.set_script(d, f"shmem-guest --detached attach lvp 1M {GUEST} detach lvp || exit 1\n" + TAIL)
        d.start()
        bus, alias = self.plugged(d, "lvp")
        self.assertEqual((bus, alias), (0, "pci.0"))
        host = self.exchange(d, "lvp")
        self.assertRegex(host, r"info index=1 size=1048576 ")
        log, live = self.finish(d)
        self.assertEqual(answer(log, "attach", "lvp")["status"], 0, log)
        self.assertEqual(set(live), {".factory", "lvp"}, live)
        self.assertIn("devices=2", log)

    def test_30_q35_region_beyond_a_plain_window(self):
        new = self.factory_xml("--regions", "1", "--max-region", "128M")
        self.assertIn(f"boot the guest kernel with pci=hpmmioprefsize=256M,resource_alignment=pci:1b36:000c "
                      f"and give the broker libvirt-port-window=256M", new.stderr)
        self.assertNotIn("pref64-reserve", new.stdout)  # plain root ports: nothing libvirt would taint for
        d = self.define("fb", "q35", new.stdout, append=WINDOWS)
        # A failed attach shows the kernel's view of the windows and BARs.
        self.set_script(d, f"run_with_irqs unconsumed shmem-guest --detached attach lvb 128M {GUEST} detach lvb "
                           "|| { dmesg | grep -i 'pci\\|bar'; cat /proc/iomem; exit 1; }\n" + BAR2 + TAIL)
        d.start()
        bus, alias = self.plugged(d, "lvb")
        self.assertEqual(alias, f"pci.{bus}")
        host = self.exchange(d, "lvb")
        self.assertRegex(host, r"info index=1 size=134217728 ")
        log, live = self.finish(d)
        a = answer(log, "attach", "lvb")
        self.assertEqual((a["status"], a["size"]), (0, "134217728"), a)
        self.assertIn("shmem-tool: info index=0 size=134217728 ", log)
        bar2 = re.search(rf"bar2 {re.escape(a['device'])} (0x[0-9a-f]+) (\d+)", log)
        self.assertTrue(bar2, log)
        address, size = int(bar2.group(1), 16), int(bar2.group(2))
        self.assertEqual(size, 256 << 20, log)
        self.assertTrue(address and address % size == 0, f"BAR2 not assigned:\n{log}")
        irqs = guestlab.irq_counts(log, a["device"])
        self.assertGreater(irqs.get(1, 0), 0, log)
        self.assertIn("lvb", live)

    def test_40_figure_1(self):
        a = self.define("figa", "q35", self.factory_xml("--regions", "1", "--max-region", "128M").stdout,
                        append=WINDOWS)
        b = self.define("figb", "pc", self.factory_xml("--machine", "pc").stdout)
        # A's output waits in run_with_irqs until the host's data is read: the
        # MSI-X counts of its device are taken then. B finds "fig1" as soon as A made it.
        self.set_script(a, f'run_with_irqs "{figure1.VMA_MARKER}" shmem-guest --detached attach fig1 128M '
                           f"{figure1.vma(MS)} sleep 300 detach fig1 || exit 1\n" + TAIL)
        self.set_script(b, figure1.find_loop("fig1") + "shmem-guest --detached attach fig1 4M "
                           f"{figure1.vmb(MS)} {figure1.vmb_end(MS)} detach fig1 || exit 1\n" + TAIL)
        a.start()
        b.start()
        bus, alias = self.plugged(a, "fig1")
        self.assertEqual(alias, f"pci.{bus}")
        self.assertEqual(self.plugged(b, "fig1", index=1), (0, "pci.0"))
        self.host = HostPeer(ENV["SHMEM_PEER"], self.broker.socket, "fig1", f"{figure1.host(MS)} {figure1.HOST_END}",
                             "host", self.workdir, options=("--find",))
        host = self.host.stop(timeout=a.timeout)
        self.assertEqual(self.host.returncode, 0, host)
        self.assertIn("shmem-tool: info index=2 size=134217728 ", host)

        log_a, _ = self.finish(a)
        log_b, _ = self.finish(b)
        made = answer(log_a, "attach", "fig1")
        self.assertEqual((made["status"], made["size"], made["region"], made["factory"]),
                         (0, "134217728", "fig1", "1"), made)
        self.assertIn("shmem-tool: info index=0 size=134217728 ", log_a)
        self.assertRegex(log_b, r"finds refused=\d+")
        found, joined = answer(log_b, "find", "fig1"), answer(log_b, "attach", "fig1")
        self.assertEqual((found["status"], found["size"]), (0, "134217728"), found)
        self.assertEqual((joined["status"], joined["size"], joined["device"]), (0, "134217728", found["device"]),
                         joined)  # asked 4M
        self.assertIn("shmem-tool: info index=1 size=134217728 ", log_b)
        # B's (peer 1) and the host's (peer 2) signals reached A as interrupts on their vectors.
        irqs = guestlab.irq_counts(log_a, made["device"])
        self.assertTrue(irqs.get(1, 0) > 0 and irqs.get(2, 0) > 0, log_a)
        self.assertEqual(len(re.findall(r"region 'fig1' plugged", self.broker.log())), 2, self.broker.log())

    def test_99_cleanup_leaves_nothing(self):
        """Runs last: the domains of the earlier tests were undefined."""
        left = [n for n in libvirt.virsh("list", "--all", "--name").stdout.split()
                if n.endswith(f"-{os.getpid()}")]
        self.assertEqual(left, [])


if __name__ == "__main__":
    libvirt.main("test_libvirt_factory")
