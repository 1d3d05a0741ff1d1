# SPDX-License-Identifier: LGPL-2.1-or-later
"""e2e: shmem-hotplug plugs regions' devices into running QEMU guests over QMP.

The guest factory's helper (plugin-qemu/hotplug/shmem-hotplug.c) against real
QEMU 7.2 under TCG and the real broker, which declares regions of 1 MiB
(BAR2 2 MiB: data and the control page, rounded up to a power of two) and
128 MiB (BAR2 256 MiB):

- q35, two root ports: rp0 with pref64-reserve=512M (a 512 MiB prefetchable
  window), rp1 plain (2 MiB). The 1 MiB region goes to rp1 (the smallest
  window that holds it, though rp0 is free), the 128 MiB one to rp0, a third
  request gets no-slot and plugs nothing (no chardev, no peer).
- pc: both regions on pci.0 (ACPI hotplug), then ten more 1 MiB regions,
  whose plug times are printed (median).
- In both guests the devices appear in sysfs with their BAR2 sizes, assigned,
  and shmem-guest attaches to each region through them; `shmemctl inspect`
  lists both VMs on both regions.
- qmp-unplug cleans up after a plug that stopped half-way (a chardev, no
  device): the chardev and the broker's peer go.
- pc's pci.0 full (QEMU's pci-testdev in every free slot): no-slot before
  any chardev-add, so the region never sees the VM (QEMU itself would
  refuse the device_add only after the chardev-add had attached it).
- A socket that accepts and says nothing: timeout within the deadline; one
  that talks something else, and a path with nothing: unreachable.
- Neither QEMU crashes: both power off with status 0 and nothing on stderr.

No device is hot-unplugged: QEMU 7.2 without KVM irqfd (TCG) leaves an
unplugged ivshmem-doorbell's vector handlers on closed fds and may segfault
at the next fd it opens (plugin-qemu/hotplug/README.md).

Run: python3 test_hotplug.py  (paths from the environment: tests/e2e/CMakeLists.txt)
"""

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
import harness  # noqa: E402
from harness import guestlab  # noqa: E402

ENV = guestlab.Environment("SHMEM_BROKERD", "SHMEM_PEER", "SHMEM_GUEST",
                            "SHMEM_SHMEMCTL", "SHMEM_HOTPLUG", "SHMEM_E2E_IMAGE_DIR")

GUEST_TIMEOUT = 240   # s, QEMU start to power off; TCG on a loaded 2-core machine
VECTORS = "17"        # max_peers 16 + 1
MIB = 1 << 20
BAR = {"small": 2 * MIB, "big": 256 * MIB, "third": 2 * MIB}
TIMED = [f"t{i}" for i in range(10)]
REGIONS = ["small:1M", "big:128M", "third:1M", "spare:1M"] + [f"{t}:1M" for t in TIMED]
ROOT_PORTS = ["pcie-root-port,id=rp0,chassis=1,slot=1,pref64-reserve=512M",
              "pcie-root-port,id=rp1,chassis=2,slot=2"]
HELPER_TIMEOUT_MS = 3000  # the silent monitor's deadline

# Waits for WANT ivshmem devices (1af4:1110; none at boot), prints each with
# its BAR2 (address, size) from sysfs, then attaches to the regions through
# them and stays until the host writes "release" into region small.
GUEST_SCRIPT = r"""
ivshmem() {{
        for d in /sys/bus/pci/devices/*; do
                [ "$(cat $d/vendor)" = 0x1af4 ] && [ "$(cat $d/device)" = 0x1110 ] && echo ${{d##*/}}
        done
}}
[ -z "$(ivshmem)" ] || {{ echo "hotplug: FAIL devices at boot: $(ivshmem)"; exit 2; }}
echo "hotplug: waiting"
n=0
until [ $(ivshmem | wc -l) -ge {want} ]; do
        n=$((n + 1)); [ $n -gt 3600 ] && {{ echo "hotplug: FAIL only $(ivshmem)"; exit 3; }}; sleep 0.05
done
for dev in $(ivshmem); do
        set -- $(sed -n 3p /sys/bus/pci/devices/$dev/resource)
        echo "hotplug: device $dev bar2 $(printf 0x%x $1) $(($2 - $1 + 1))"
done
echo "hotplug: all there"
shmem-guest big info || exit 4
shmem-guest small info expect 0 release 180000 || exit 5
echo "hotplug: done"
"""


def qmp(path, *commands):
    """Runs each (command, arguments) on the QMP socket @path; their replies
    ("return" or "error" dicts), events skipped. One client at a time: QEMU
    answers no other while this one is connected."""
    replies = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(path)
        f = s.makefile("rwb")
        json.loads(f.readline())
        for name, args in (("qmp_capabilities", None),) + commands:
            msg = {"execute": name}
            if args is not None:
                msg["arguments"] = args
            f.write(json.dumps(msg).encode() + b"\n")
            f.flush()
            while "event" in (reply := json.loads(f.readline())):
                pass
            replies.append(reply)
    return replies[1:]


def chardevs(path):
    return {c["label"] for c in qmp(path, ("query-chardev", None))[0]["return"]}


def devices_behind(path):
    """{root port id: [qdev ids of the devices on its secondary bus]} from query-pci."""
    ports = {}
    for bus in qmp(path, ("query-pci", None))[0]["return"]:
        for d in bus["devices"]:
            if "pci_bridge" in d and d["qdev_id"]:
                ports[d["qdev_id"]] = [x["qdev_id"] for x in d["pci_bridge"].get("devices", [])]
    return ports


class Listener:
    """A Unix socket at @path that accepts and then sends @greeting (None:
    nothing), holding every connection until closed."""

    def __init__(self, path, greeting=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.greeting = greeting
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            if self.greeting:
                c.sendall(self.greeting)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


class Run:
    def __init__(self, argv):
        t = time.monotonic()
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        self.seconds = time.monotonic() - t
        self.rc = p.returncode
        self.stdout = p.stdout
        self.stderr = p.stderr

    def __repr__(self):
        return f"rc={self.rc} stdout={self.stdout!r} ({self.seconds:.2f} s) stderr:\n{self.stderr}"


def hotplug(*args):
    return Run([ENV["SHMEM_HOTPLUG"], *args, "--verbose"])


def plug(guest, broker, region):
    """shmem-hotplug qmp of @region's device (id: the region's name) into @guest."""
    return hotplug("qmp", "--monitor", guest.qmp_path, "--id", region, "--server", broker.qemu_socket(region),
                   "--vectors", VECTORS, "--bar-size", str(BAR.get(region, 2 * MIB)))


def fill_pci0(path):
    """Puts a pci-testdev in every slot of pci.0 that has no device at
    function 0 (where device_add looks); returns how many."""
    used = {d["slot"] for b in qmp(path, ("query-pci", None))[0]["return"] if b["bus"] == 0
            for d in b["devices"] if d["function"] == 0}
    free = [s for s in range(32) if s not in used]
    for s in free:
        reply = qmp(path, ("device_add", {"driver": "pci-testdev", "id": f"fill{s}", "bus": "pci.0",
                                          "addr": f"{s:#x}"}))[0]
        assert "return" in reply, reply
    return len(free)


def guest_devices(log):
    """{bdf: (bar2 address, bar2 size)} from the guest's "hotplug: device" lines."""
    return {bdf: (int(a, 16), int(n)) for bdf, a, n in
            re.findall(r"hotplug: device (\S+) bar2 (0x[0-9a-f]+) (\d+)", log)}


class HotplugTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        ENV.require()
        cls.image = guestlab.Image.from_dir(ENV["SHMEM_E2E_IMAGE_DIR"])
        # Short: Unix socket paths have 108 bytes.
        cls.dir = tempfile.mkdtemp(prefix="shmem-e2e-hp-")
        cls.broker = None
        cls.listeners = []
        try:
            cls.run_scenario()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def run_scenario(cls):
        argv = [ENV["SHMEM_BROKERD"], "--no-config", "-v"]
        for r in REGIONS:
            argv += ["--region", r]
        cls.broker = harness.Broker(argv, os.path.join(cls.dir, "run"), os.path.join(cls.dir, "broker.log"))

        q35 = guestlab.Guest(cls.image, GUEST_SCRIPT.format(want=2), cls.dir, name="hp-q35",
                             timeout=GUEST_TIMEOUT)
        for port in ROOT_PORTS:
            q35.argv += ["-device", port]
        pc = guestlab.Guest(cls.image, GUEST_SCRIPT.format(want=2), cls.dir, name="hp-pc",
                            timeout=GUEST_TIMEOUT, iommu=False)
        pc.argv[pc.argv.index("q35")] = "pc"
        cls.q35, cls.pc = q35, pc
        q35.start()
        pc.start()

        # While they boot: monitors that are none.
        silent = os.path.join(cls.dir, "silent.sock")
        cls.listeners.append(Listener(silent))
        cls.silent = hotplug("qmp", "--monitor", silent, "--id", "x", "--server", cls.broker.qemu_socket("third"),
                             "--vectors", VECTORS, "--bar-size", str(2 * MIB), "--timeout-ms", str(HELPER_TIMEOUT_MS))
        other = os.path.join(cls.dir, "other.sock")
        cls.listeners.append(Listener(other, b"SSH-2.0-OpenSSH_9.2\r\n"))
        cls.other = hotplug("qmp-unplug", "--monitor", other, "--id", "x")
        cls.nothing = hotplug("qmp-unplug", "--monitor", os.path.join(cls.dir, "nothing.sock"), "--id", "x")

        # Plug once the guests run their scripts: the firmware has set the
        # root ports' windows up (before, query-pci shows none) and the
        # kernel's hotplug drivers are bound.
        for g in (q35, pc):
            g.wait_connected(timeout=60)
            g.wait_log(rb"hotplug: waiting", timeout=120)

        cls.q35_small = plug(q35, cls.broker, "small")
        cls.q35_big = plug(q35, cls.broker, "big")
        t = time.monotonic()
        cls.q35_third = plug(q35, cls.broker, "third")
        cls.q35_chardevs = chardevs(q35.qmp_path)
        cls.q35_ports = devices_behind(q35.qmp_path)
        cls.third_after_no_slot = cls.inspect("third")
        q35.wait_log(rb"hotplug: all there", timeout=60)
        cls.q35_seen = time.monotonic() - t

        cls.pc_small = plug(pc, cls.broker, "small")
        cls.pc_big = plug(pc, cls.broker, "big")
        t = time.monotonic()
        pc.wait_log(rb"hotplug: all there", timeout=60)
        cls.pc_seen = time.monotonic() - t
        cls.timed = [plug(pc, cls.broker, r) for r in TIMED]

        # A plug that stopped after chardev-add (a helper killed there): qmp-unplug cleans up.
        qmp(pc.qmp_path, ("chardev-add", {"id": "orphan", "backend": {"type": "socket", "data": {
            "addr": {"type": "unix", "data": {"path": cls.broker.qemu_socket("third")}}, "server": False}}}))
        cls.orphan_attached = cls.wait_peers("third", 1)
        cls.orphan_unplug = hotplug("qmp-unplug", "--monitor", pc.qmp_path, "--id", "orphan")
        cls.orphan_gone = cls.wait_peers("third", 0)
        cls.pc_chardevs = chardevs(pc.qmp_path)

        # pci.0 full: no-slot, and the region never saw the VM.
        cls.fillers = fill_pci0(pc.qmp_path)
        cls.pc_full = plug(pc, cls.broker, "spare")
        cls.pc_full_chardevs = chardevs(pc.qmp_path)
        cls.spare_after_no_slot = cls.inspect("spare")

        # Both guests attached to both regions through the new devices.
        for g in (q35, pc):
            g.wait_log(rb"shmem-tool: info index=\d+ size=1048576 ", timeout=60)
        cls.small, cls.big = cls.inspect("small"), cls.inspect("big")
        subprocess.run([ENV["SHMEM_PEER"], "--socket", cls.broker.socket, "--label", "host", "small",
                        "write", "0", "release"], check=True, capture_output=True, timeout=30)
        cls.q35_res, cls.pc_res = q35.wait(), pc.wait()
        cls.broker_rc = cls.broker.stop()

    @classmethod
    def inspect(cls, region):
        return harness.shmemctl_json(ENV["SHMEM_SHMEMCTL"], cls.broker.socket, "inspect", region)

    @classmethod
    def wait_peers(cls, region, n, timeout=10):
        """The inspect of @region once it has @n peers (the last one seen past @timeout)."""
        end = time.monotonic() + timeout
        while len((info := cls.inspect(region))["peers"]) != n and time.monotonic() < end:
            time.sleep(0.05)
        return info

    @classmethod
    def tearDownClass(cls):
        guestlab.kill_all()
        for listener in cls.listeners:
            listener.close()
        if cls.broker:
            cls.broker.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def assertAnswer(self, run, rc, line):
        self.assertEqual((run.rc, run.stdout.count("\n")), (rc, 1), run)
        self.assertRegex(run.stdout, line, run)

    def ran(self, res, guest):
        self.assertFalse(res.timed_out, f"{guest.name} hit its time limit:\n{res.log}")
        self.assertEqual(res.rc, 0, f"{guest.name}:\n{res.log}\n--- broker:\n{self.broker.log()}")
        return res.log.replace("\r", "")

    def test_q35_smallest_window_that_fits(self):
        # The 2 MiB BAR takes the plain port although the 512M one is free;
        # the 256 MiB BAR then takes the 512M one.
        self.assertAnswer(self.q35_small, 0, r"^ok rp1\n$")
        self.assertAnswer(self.q35_big, 0, r"^ok rp0\n$")
        self.assertEqual(self.q35_ports, {"rp0": ["big"], "rp1": ["small"]})

    def test_q35_no_slot_plugs_nothing(self):
        self.assertAnswer(self.q35_third, 2, r"^error no-slot no free root port fits a BAR of 2097152 bytes "
                                             r"\(rp0 in use, rp1 in use\)\n$")
        self.assertNotIn("third", self.q35_chardevs)
        self.assertEqual(self.third_after_no_slot["peers"], [])

    def test_q35_guest_sees_both_bars_assigned(self):
        log = self.ran(self.q35_res, self.q35)
        # rp0's secondary bus is 1, rp1's 2 (the firmware numbers them in slot order).
        devs = guest_devices(log)
        self.assertEqual({bdf: size for bdf, (_, size) in devs.items()},
                         {"0000:01:00.0": 256 * MIB, "0000:02:00.0": 2 * MIB}, log)
        for bdf, (address, size) in devs.items():
            self.assertTrue(address and address % size == 0, f"{bdf}: BAR2 not assigned:\n{log}")
        self.assertIn("shmem-tool: info index=0 size=134217728 max_peers=16", log)
        self.assertIn("shmem-tool: info index=0 size=1048576 max_peers=16", log)
        self.assertIn("hotplug: done", log)

    def test_pc_plugs_on_pci0(self):
        self.assertAnswer(self.pc_small, 0, r"^ok pci\.0\n$")
        self.assertAnswer(self.pc_big, 0, r"^ok pci\.0\n$")
        log = self.ran(self.pc_res, self.pc)
        devs = guest_devices(log)
        self.assertEqual(sorted(size for _, size in devs.values()), [2 * MIB, 256 * MIB], log)
        for bdf, (address, size) in devs.items():
            self.assertTrue(address and address % size == 0, f"{bdf}: BAR2 not assigned:\n{log}")
        self.assertIn("shmem-tool: info index=1 size=134217728 max_peers=16", log)
        self.assertIn("shmem-tool: info index=1 size=1048576 max_peers=16", log)

    def test_pc_no_slot_plugs_nothing(self):
        # 32 slots: the host bridge, the PIIX3, small, big and ten timed ones; the rest filled.
        self.assertEqual(self.fillers, 32 - 14)
        self.assertAnswer(self.pc_full, 2, r"^error no-slot pci\.0 has no free slot \(all 32 in use\)\n$")
        self.assertNotIn("spare", self.pc_full_chardevs)
        self.assertEqual(self.spare_after_no_slot["peers"], [])
        self.assertNotIn("attached to 'spare'", self.broker.log())

    def test_pc_plug_times(self):
        for r in self.timed:
            self.assertAnswer(r, 0, r"^ok pci\.0\n$")
        ms = sorted(r.seconds * 1000 for r in self.timed)
        device_add = sorted(int(re.search(r"device_add: done in (\d+) ms", r.stderr).group(1)) for r in self.timed)
        sys.stderr.write(f"test_hotplug: pc plug (helper start to exit) median {statistics.median(ms):.1f} ms, "
                         f"range {ms[0]:.1f}-{ms[-1]:.1f} ms; device_add median {statistics.median(device_add)} ms; "
                         f"the guests listed both devices {self.q35_seen:.2f} s (q35) and {self.pc_seen:.2f} s (pc) "
                         f"after their second plug\n")

    def test_inspect_shows_both_vms(self):
        for info in (self.small, self.big):
            labels = sorted(p["label"] for p in info["peers"] if p.get("vm_name"))
            self.assertEqual(labels, ["hp-pc", "hp-q35"], info)

    def test_unplug_cleans_up_a_half_plug(self):
        self.assertEqual(len(self.orphan_attached["peers"]), 1, self.orphan_attached)
        self.assertAnswer(self.orphan_unplug, 0, r"^ok\n$")
        self.assertEqual(self.orphan_gone["peers"], [], self.orphan_gone)
        self.assertNotIn("orphan", self.pc_chardevs)

    def test_silent_monitor_times_out(self):
        self.assertAnswer(self.silent, 4, r"^error timeout no QMP greeting on \S+ within 3000 ms")
        self.assertGreaterEqual(self.silent.seconds, HELPER_TIMEOUT_MS / 1000 - 0.05, self.silent)
        self.assertLess(self.silent.seconds, HELPER_TIMEOUT_MS / 1000 + 1.0, self.silent)

    def test_not_a_monitor_is_unreachable(self):
        self.assertAnswer(self.other, 4, r"^error unreachable \S+: not a QMP monitor\n$")
        self.assertAnswer(self.nothing, 4, r"^error unreachable \S+: No such file or directory\n$")
        self.assertLess(self.nothing.seconds, 1.0, self.nothing)

    def test_no_qemu_crashed(self):
        for g in (self.q35, self.pc):
            self.assertEqual(g.proc.returncode, 0, f"{g.name}: {g.qemu_stderr()}")
            self.assertEqual(g.qemu_stderr(), "", g.name)
        self.assertEqual(self.broker_rc, 0, self.broker.log())


if __name__ == "__main__":
    unittest.main(verbosity=2)
