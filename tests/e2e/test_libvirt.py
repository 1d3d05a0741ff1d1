# SPDX-License-Identifier: LGPL-2.1-or-later
"""e2e: a real libvirtd runs TCG domains that share regions of the real broker.

1. Two q35 domains (intel-iommu, so vfio MSI-X interrupts work in the guest)
   are defined with the device `shmemctl xml` prints and share region `lv`:
   data both ways, a signal each way with the right sender, both seen as
   interrupts; `shmemctl inspect` names both domains with libvirt's UUIDs.
2. A running `pc` domain (which shmemctl's bash completion offers to attach) gets
   region `hot` with `shmemctl attach --live`, uses
   it (data and a signal with a host peer, polling: no IOMMU), and
   `shmemctl detach --live` takes it away: the guest sees the device leave and
   the broker frees its index.

The test starts virtlogd and libvirtd if they are not running and stops only
what it started (and libvirtd not even then while domains of others exist);
its domains are named shmem-e2e-*-PID and are destroyed and undefined at the
end whatever happens; ones left by a killed run are undefined at the next
start (the daemons, the domains and their removal: tests/harness/libvirt.py).
Needs root (qemu:///system, socket group libvirt-qemu) and the Debian
packages libvirt-daemon-system and libvirt-clients.

Run: python3 test_libvirt.py  (paths from the environment: tests/e2e/CMakeLists.txt)
"""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
import harness  # noqa: E402
from harness import guestlab  # noqa: E402
from harness.libvirt import (Daemons, DiagnosticsOnFailure, Domain, remove_domain,  # noqa: E402
                             remove_stale_domains, virsh)
from harness.libvirt import missing as libvirt_missing  # noqa: E402
from harness.libvirt import cleanup as libvirt_cleanup, main as libvirt_main, register as libvirt_register  # noqa: E402

ENV = {k: os.environ.get(k, "") for k in ("SHMEM_BROKERD", "SHMEM_PEER", "SHMEM_GUEST",
                                          "SHMEM_SHMEMCTL", "SHMEM_E2E_IMAGE_DIR")}
MS = "60000"          # waits inside the scripts


# --- the broker: harness.Broker ---------------------------------------------

def start_broker(workdir, regions):
    """The real shmem-brokerd on @workdir/run with @regions declared, once it answers."""
    argv = [ENV["SHMEM_BROKERD"], "--no-config", "-v"]
    for r in regions:
        argv += ["--region", r]
    return harness.Broker(argv, os.path.join(workdir, "run"), os.path.join(workdir, "broker.log"))


def shmemctl(broker, *args, timeout=90):
    return subprocess.run([ENV["SHMEM_SHMEMCTL"], "--socket", broker.socket, *args],
                          capture_output=True, text=True, timeout=timeout)


def senders(log):
    """Every sender bitmap other than 0 in the "event" lines of @log."""
    return [int(s, 16) for s in re.findall(r"shmem-tool: event senders=0x([0-9a-f]+)", log)
            if int(s, 16)]


# --- the test ---------------------------------------------------------------

class LibvirtTest(DiagnosticsOnFailure, unittest.TestCase):
    daemons = None
    broker = None
    workdir = None

    @classmethod
    def setUpClass(cls):
        missing = [f"{k} is not set (tests/e2e/CMakeLists.txt sets it)" for k, v in ENV.items() if not v]
        missing += libvirt_missing()
        if missing:
            raise AssertionError("\n".join(missing))
        d = ENV["SHMEM_E2E_IMAGE_DIR"]
        cls.image = guestlab.Image(os.path.join(d, "vmlinux"), os.path.join(d, "initramfs.cpio.gz"))
        if not os.path.exists(cls.image.initrd):
            raise AssertionError(f"no guest image in {d}: run test-guests.py --build-image")

        # Short path (Unix socket paths have 108 bytes); 0755 so that
        # libvirt-qemu can reach the sockets, the kernel and the initrds.
        cls.workdir = tempfile.mkdtemp(prefix="shmem-e2e-lv-")
        os.chmod(cls.workdir, 0o755)
        # Class cleanups run even when setUpClass fails half-way.
        cls.addClassCleanup(shutil.rmtree, cls.workdir, ignore_errors=True)
        cls.addClassCleanup(libvirt_cleanup, "test_libvirt")
        cls.daemons = Daemons(cls.workdir)
        libvirt_register(cls.daemons)
        cls.daemons.ensure()
        remove_stale_domains(b"test_libvirt")
        cls.broker = start_broker(cls.workdir, ["lv:1M", "hot:1M", "left:1M"])
        libvirt_register(cls.broker)

    def setUp(self):
        self.domains = []
        self.diag = ""

    def tearDown(self):
        # Collected now, printed by run() if the test failed: undefine comes next.
        self.diag = "\n".join(d.diagnostics() for d in self.domains)
        self.diag += "\n----- broker.log\n" + self.broker.log()
        for d in self.domains:
            self.assertTrue(remove_domain(d.name), f"{d.name} is still defined")

    def domain(self, role, script, **kw):
        d = Domain(self.workdir, self.image, role, script, **kw)
        self.domains.append(d)
        return d.define()

    def finish(self, d):
        res = d.wait()
        self.assertFalse(res.timed_out, f"{d.name} did not power off within {d.timeout} s:\n{res.log}")
        self.assertEqual(res.rc, 0, f"{d.name} failed:\n{res.log}")
        return res

    def inspect(self, region):
        p = shmemctl(self.broker, "--json", "inspect", region)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def wait_peers(self, region, want, timeout=30):
        """Polls inspect until the peers' vm_name (label for host peers) are @want."""
        end = time.monotonic() + timeout
        while True:
            info = self.inspect(region)
            got = {p.get("vm_name", p["label"]) for p in info["peers"]}
            if got == set(want):
                return info
            if time.monotonic() > end:
                self.fail(f"peers of {region} are {got}, want {set(want)}: {info}")
            time.sleep(0.1)

    def test_00_broker_sockets_reachable_for_qemu(self):
        """The QEMU sockets are 0660 root:libvirt-qemu in directories libvirt-qemu can search."""
        import grp
        sock = self.broker.qemu_socket("lv")
        st = os.stat(sock)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(grp.getgrgid(st.st_gid).gr_name, "libvirt-qemu")
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        d = os.path.dirname(sock)
        while d != "/":
            st = os.stat(d)
            ok = st.st_mode & 0o001 or (st.st_mode & 0o010 and grp.getgrgid(st.st_gid).gr_name == "libvirt-qemu")
            self.assertTrue(ok, f"libvirt-qemu cannot search {d} ({oct(st.st_mode)})")
            d = os.path.dirname(d)

    def test_10_two_q35_domains_share_a_region(self):
        xml = shmemctl(self.broker, "xml", "lv")
        self.assertEqual(xml.returncode, 0, xml.stderr)
        self.assertIn("<model type='ivshmem-doorbell'/>", xml.stdout)
        self.assertIn(f"<server path='{self.broker.qemu_socket('lv')}'/>", xml.stdout)
        self.assertIn("<msi vectors='17' ioeventfd='on'/>", xml.stdout)

        # A's ring to B only after B wrote (so B has MSI-X on), B's to A only after
        # A's came: both rings hit enabled vectors and must count as interrupts.
        a = self.domain("a", guestlab.GUEST_HELPERS + f"""
run_with_irqs unconsumed shmem-guest lv info write 0 from-a expect 64 from-b {MS} read 64 6 \
        notify 0x2 wait-from 0x2 {MS} unconsumed sleep 300
""", devices=[xml.stdout])
        b = self.domain("b", guestlab.GUEST_HELPERS + f"""
run_with_irqs unconsumed shmem-guest lv info write 64 from-b expect 0 from-a {MS} read 0 6 \
        wait-from 0x1 {MS} notify 0x1 unconsumed sleep 300
""", devices=[xml.stdout])
        # One after the other: QEMU joins during `virsh start`, so A is index 0, B 1.
        a.start()
        b.start()

        # Both attached (QEMU holds its index until it exits): inspect names the domains.
        info = self.wait_peers("lv", {a.name, b.name})
        peers = {p["vm_name"]: p for p in info["peers"]}
        for d, index in ((a, 0), (b, 1)):
            p = peers[d.name]
            self.assertEqual(p["kind"], "qemu", p)
            self.assertEqual(p["index"], index, info)
            self.assertEqual(p["vm_uuid"], d.uuid(), p)
            self.assertTrue(p["libvirt"], f"{d.name} not confirmed by libvirt's pid file: {p}")
        text = shmemctl(self.broker, "inspect", "lv")
        self.assertEqual(text.returncode, 0, text.stderr)
        for d in (a, b):
            self.assertRegex(text.stdout, rf"{re.escape(d.name)} .* {d.uuid()} +yes +no\n")  # LIBVIRT, PARKED

        ra, rb = self.finish(a), self.finish(b)
        # Data both ways (the expects passed, and each read the other's string).
        self.assertIn("shmem-tool: info index=0 size=1048576 max_peers=16", ra.log)
        self.assertIn("shmem-tool: info index=1 size=1048576 max_peers=16", rb.log)
        self.assertIn("shmem-tool: read 64 from-b", ra.log)
        self.assertIn("shmem-tool: read 0 from-a", rb.log)
        # Signals with the right sender: B heard A (index 0), A heard B (index 1).
        self.assertEqual(set(senders(rb.log)), {0x1}, rb.log)
        self.assertEqual(set(senders(ra.log)), {0x2}, ra.log)
        # ... as MSI-X interrupts through vfio (vector j: peer j rang): the IOMMU works.
        ia, ib = guestlab.irq_counts(ra.log), guestlab.irq_counts(rb.log)
        self.assertEqual(len(ib), 17, rb.log)
        self.assertGreater(ib.get(0, 0), 0, rb.log)
        self.assertGreater(ia.get(1, 0), 0, ra.log)
        # Both powered off: both indices are free again.
        self.assertEqual(self.inspect("lv")["peers"], [])

    def hotplug_domain(self, role, region, tool):
        """A running pc domain whose script waits for an ivshmem device
        (1af4:1110) to appear, runs `shmem-guest REGION TOOL...` on it, and
        waits for it to go; returned once the script waits for the device."""
        d = self.domain(role, f"""
ivshmem() {{
        for d in /sys/bus/pci/devices/*; do
                [ "$(cat $d/vendor)" = 0x1af4 ] && [ "$(cat $d/device)" = 0x1110 ] && {{ echo ${{d##*/}}; return 0; }}
        done
        return 1
}}
if dev=$(ivshmem); then echo "hotplug: FAIL $dev present at boot"; exit 2; fi
echo "hotplug: waiting for the device"
n=0
until dev=$(ivshmem); do
        n=$((n + 1)); [ $n -gt 2400 ] && {{ echo "hotplug: FAIL no device"; exit 3; }}; sleep 0.05
done
echo "hotplug: device $dev appeared"
shmem-guest {region} {tool} || exit 4
echo "hotplug: tool done"
n=0
while [ -e /sys/bus/pci/devices/$dev ]; do
        n=$((n + 1)); [ $n -gt 2400 ] && {{ echo "hotplug: FAIL device stayed"; exit 5; }}; sleep 0.05
done
echo "hotplug: device $dev gone"
# Lingers: a domain that powers off while libvirt completes the detach fails it.
sleep 5
""", machine="pc")
        d.start()
        d.wait_log(r"hotplug: waiting for the device")
        self.assertNotIn("<shmem", d.live_xml())
        return d

    def attach(self, d, region):
        t = time.monotonic()
        p = shmemctl(self.broker, "--json", "attach", d.name, region, "--live")
        self.assertEqual(p.returncode, 0, f"attach: {p.stdout}{p.stderr}")
        self.assertEqual(json.loads(p.stdout), {"domain": d.name, "region": region, "attached": True, "live": True,
                                                "config": False})
        sys.stderr.write(f"test_libvirt: attach --live {time.monotonic() - t:.2f} s\n")
        self.assertIn(f"<shmem name='{region}'>", d.live_xml())
        info = self.wait_peers(region, {d.name})
        self.assertEqual(info["peers"][0]["vm_uuid"], d.uuid(), info)
        return info["peers"][0]

    def detach(self, d, region):
        t = time.monotonic()
        p = shmemctl(self.broker, "--json", "detach", d.name, region, "--live", "--timeout", "60")
        self.assertEqual(p.returncode, 0, f"detach: {p.stdout}{p.stderr}")
        self.assertEqual(json.loads(p.stdout), {"domain": d.name, "region": region, "detached": True, "live": True,
                                                "config": False, "forced": False})
        sys.stderr.write(f"test_libvirt: detach --live {time.monotonic() - t:.2f} s\n")
        self.assertNotIn("<shmem", d.live_xml())

    def test_20_hotplug_into_running_pc_domain(self):
        c = self.hotplug_domain("hp", "hot", f"info expect 0 from-host {MS} write 64 from-guest notify 0x2")
        # shmemctl's bash completion offers the domain to attach (virsh list on qemu:///system, within
        # its 2 s), and then the broker's regions.
        t = time.monotonic()
        got = harness.completion.complete("shmemctl", [ENV["SHMEM_SHMEMCTL"], "attach", c.name[:-2]])
        sys.stderr.write(f"test_libvirt: completion of a domain {time.monotonic() - t:.2f} s\n")
        self.assertEqual(got, [c.name], f"domains completed in {time.monotonic() - t:.2f} s")
        self.assertEqual(harness.completion.complete("shmemctl", [ENV["SHMEM_SHMEMCTL"], "-s", self.broker.socket,
                                                                 "attach", c.name, "ho"]), ["hot"])
        self.assertEqual(self.attach(c, "hot")["index"], 0)

        # The host peer stays until the guest's index is gone: it sees the
        # detach as a membership event (and QEMU 7.2 must not see a peer leave
        # before its device is unplugged: test_30).
        with open(os.path.join(self.workdir, "host.out"), "w+") as out:
            h = subprocess.Popen([ENV["SHMEM_PEER"], "--socket", self.broker.socket, "--label", "host",
                                  "hot", "info", "write", "0", "from-host", "expect", "64", "from-guest", MS,
                                  "wait-from", "0x1", MS, "wait-active", "0x2", MS],
                                 stdout=out, stderr=subprocess.STDOUT)
            try:
                c.wait_log(r"hotplug: tool done")
                self.detach(c, "hot")
                h.wait(90)
            finally:
                if h.poll() is None:
                    h.kill()
                    h.wait()
                out.seek(0)
                host = out.read()
        self.assertEqual(h.returncode, 0, host)
        self.assertIn("shmem-tool: info index=1 ", host)
        self.assertEqual(set(senders(host)), {0x1}, host)     # the guest (index 0) rang
        self.assertIn("shmem-tool: active 0x2", host)         # ... and left at the detach

        rc = self.finish(c)
        dev = re.search(r"hotplug: device (\S+) appeared", rc.log).group(1)
        self.assertIn("shmem-tool: info index=0 size=1048576 max_peers=16", rc.log)
        self.assertIn(f"hotplug: device {dev} gone", rc.log)
        # The broker freed the index: nobody is left, and a newcomer gets index 0.
        self.assertEqual(self.inspect("hot")["peers"], [])
        p = subprocess.run([ENV["SHMEM_PEER"], "--socket", self.broker.socket, "hot", "info"],
                           capture_output=True, text=True, timeout=30)
        self.assertIn("shmem-tool: info index=0 ", p.stdout)

    def test_30_detach_after_a_peer_left(self):
        """Detach from a QEMU that was told a peer left is refused. QEMU 7.2
        (Debian 12) aborts there ("double free or corruption"):
        close_peer_eventfds() in hw/misc/ivshmem.c frees a departed peer's
        eventfd array and keeps the pointer, and unplugging frees it again. The
        broker counts the departures it told each QEMU (departures_told) and
        shmemctl detach refuses while there is one; powering the guest off is
        the safe way to release the region (docs/libvirt.md)."""
        d = self.hotplug_domain("left", "left", f"info expect 0 from-host {MS}")
        self.attach(d, "left")
        p = subprocess.run([ENV["SHMEM_PEER"], "--socket", self.broker.socket, "--label", "host",
                            "left", "info", "write", "0", "from-host"],
                           capture_output=True, text=True, timeout=30)
        self.assertIn("shmem-tool: info index=1 ", p.stdout)
        d.wait_log(r"hotplug: tool done")
        info = self.wait_peers("left", {d.name})  # the broker has told QEMU that index 1 left
        self.assertEqual(info["peers"][0]["departures_told"], 1, info)
        p = shmemctl(self.broker, "detach", d.name, "left", "--live", "--timeout", "60")
        self.assertEqual(p.returncode, 1, f"detach: {p.stdout}{p.stderr}\n{d.diagnostics()}")
        self.assertIn(f"the QEMU of domain '{d.name}' was told that 1 peer left region 'left'", p.stderr)
        # Nothing was done: the guest runs on with its device, and holds its index.
        self.assertTrue(d.state().startswith("running"), d.state())
        self.assertIn("<shmem name='left'>", d.live_xml())
        self.wait_peers("left", {d.name})
        # Powering off releases the region: QEMU exits, the broker frees the index.
        virsh("destroy", d.name)
        self.wait_peers("left", set())

    def test_99_cleanup_leaves_nothing(self):
        """Runs last: the domains of the earlier tests were undefined."""
        left = [n for n in virsh("list", "--all", "--name").stdout.split() if n.endswith(f"-{os.getpid()}")]
        self.assertEqual(left, [])


if __name__ == "__main__":
    libvirt_main("test_libvirt")
