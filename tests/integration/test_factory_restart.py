# SPDX-License-Identifier: LGPL-2.1-or-later
"""The guest factory across kill -9 and live upgrade, and shmemctl factory (docs/factory.md).

The broker runs under the fake service manager (tests/harness/fakesystemd.py),
which keeps its fd store and restarts it with LISTEN_FDS as systemd does. A
VM's factory device is played by tests/harness/fakefactory.py: a process with
QEMU's command line (-name, -uuid, -qmp) on the real factory socket, the real
page and eventfds, and a fake hotplug helper that plugs through it (the VM
connects to the region's socket itself, as QEMU's chardev-add does). Every
request goes through the real broker: its rules, its registry, its helper
handling, its stored state.

- between requests: a request rung while the broker is down and those after
  the restart are served on the same device; a device parked before a kill is
  unparked after it (same index, nothing plugged); the same across an upgrade;
  a VM gone while the broker was down is dropped with its fds;
- a request in flight (the helper held at a gate): after the restart it
  completes when its helper survived; is answered HOTPLUG ("the broker
  restarted ...") when the helper died with the broker; completes (DONE 0)
  when the helper died but the VM's QEMU had connected meanwhile;
- shmemctl factory (text, --json): each VM's connection, counts, request in
  flight and devices (plugged, parked, index) before and after a kill;
  inspect and list show who created a region; a hostile VM name is escaped.

Run: python3 test_factory_restart.py BUILD_DIR
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
from harness import FakeSystemd  # noqa: E402
from harness.fakefactory import FakeFactoryVm, wait_file, write_helper  # noqa: E402

BUILD = None
U1 = "11111111-2222-3333-4444-555555555555"
U2 = "66666666-2222-3333-4444-555555555555"
HOSTILE = "evil\x1b[2J\x07name\\x"
HOTPLUG = 14


class FactoryRestart(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="shmem-facr-")
        self.rundir = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.rundir, "broker.sock")
        self.gate = os.path.join(self.dir, "gate")
        os.mkdir(self.gate)
        helper = os.path.join(self.dir, "hotplug")
        write_helper(helper)
        self.shmemctl = os.path.join(BUILD, "clients", "shmemctl", "shmemctl")
        self.argv = [os.path.join(BUILD, "broker", "shmem-brokerd"), "--no-config", "-v", "--rundir", self.rundir,
                     "--hotplug-helper", helper, "--hotplug-timeout-ms", "20000"]
        self.env = dict(os.environ, FAKE_HOTPLUG_GATE=self.gate)
        self.sd = FakeSystemd(self.dir)
        self.vms = []

    def tearDown(self):
        for vm in self.vms:
            vm.close()
        self.sd.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- helpers ---------------------------------------------------------------
    def start(self):
        self.sd.start(self.argv, env=self.env)

    def restart(self):
        self.assertEqual(self.sd.kill(), -signal.SIGKILL)
        self.start()

    def vm(self, name, uuid=U1):
        vm = FakeFactoryVm(os.path.join(self.rundir, "qemu", "factory.sock"),
                           os.path.join(self.dir, f"mon-{len(self.vms)}.sock"), name, uuid)
        self.vms.append(vm)
        self.assertEqual(vm.ready["event"], "ready", vm.ready)
        return vm

    def ctl(self, *args, check=True):
        r = subprocess.run([self.shmemctl, "-s", self.sock] + list(args), capture_output=True, text=True, timeout=20)
        if check:
            self.assertEqual(r.returncode, 0, r.stderr + self.sd.log())
        return r

    def done(self, vm, seq, status=0, timeout=None):
        a = vm.wait(seq, timeout=timeout)
        self.assertEqual((a["event"], a["status"]), ("answer", status), f"{a}\n{self.sd.log()}")
        return a

    def hold(self, flag="hold"):
        open(os.path.join(self.gate, flag), "w").close()

    def release(self, flag="hold"):
        os.unlink(os.path.join(self.gate, flag))

    def helper_started(self, mark="started"):
        return int(wait_file(os.path.join(self.gate, mark)))

    def stored(self, prefix):
        return [n for n in self.sd.names() if n.startswith(prefix)]

    # --- between requests --------------------------------------------------------
    def test_requests_before_during_and_after_a_kill(self):
        self.start()
        vm = self.vm("vm-a")
        self.done(vm, vm.request("attach", "one", 4096))
        self.done(vm, vm.request("find", "nothing"), status=6)  # DOES_NOT_EXIST: refused
        self.sd.wait_stored("cp/", 3)  # the page, the VM's ring, the broker's bell
        self.assertEqual(self.sd.kill(), -signal.SIGKILL)
        # Rung while nobody listens: the ring waits in the stored eventfd.
        during = vm.request("attach", "two", 8192)
        self.start()
        self.assertIn("Factory device of 'vm-a' (pid %d) restored: 1 requests served, 1 refused" % vm.pid,
                      self.sd.log())
        two = self.done(vm, during)
        self.assertEqual((two["region"], two["size"]), ("two", 8192))
        # The next requests on the same device, from the restarted broker: detach parks ...
        self.done(vm, vm.request("detach", "one"))
        self.assertEqual(self.peers("one"), [(0, vm.pid, True)])
        self.restart()
        # ... and a parked device survives a kill too: the attach unparks it, nothing is plugged.
        self.assertEqual(self.done(vm, vm.request("attach", "one", 4096))["region"], "one")
        self.assertEqual(self.peers("one"), [(0, vm.pid, False)])
        self.assertEqual(self.sd.log().count("region 'one' plugged"), 1, self.sd.log())
        self.assertEqual(self.sd.log().count("QEMU 'vm-a' (pid %d) attached to 'one'" % vm.pid), 1)
        self.done(vm, vm.request("exclusive", "three", 4096))
        self.assertEqual(self.peers("three"), [(0, vm.pid, False)])
        self.assertIn("restored: 3 requests served, 1 refused", self.sd.log())

    def test_upgrade_keeps_the_factory(self):
        self.start()
        vm = self.vm("vm-a")
        self.done(vm, vm.request("attach", "one", 4096))
        self.done(vm, vm.request("detach", "one"))
        self.assertEqual(self.ctl("upgrade").returncode, 0)
        self.done(vm, vm.request("attach", "two", 4096))
        self.done(vm, vm.request("attach", "one", 4096))
        self.assertEqual(self.peers("one"), [(0, vm.pid, False)])
        self.assertEqual(self.sd.log().count("region 'one' plugged"), 1, self.sd.log())
        self.assertIn("Factory device of 'vm-a' (pid %d) restored: 2 requests served, 0 refused" % vm.pid,
                      self.sd.log())

    def test_vm_gone_while_the_broker_was_down(self):
        self.start()
        vm = self.vm("vm-a")
        self.done(vm, vm.request("attach", "one", 4096))
        self.sd.wait_stored("cp/", 3)
        self.assertEqual(self.sd.kill(), -signal.SIGKILL)
        vm.close()
        self.start()
        self.wait_for("the factory to drop the VM", lambda: "Factory of 'vm-a' (pid %d) closed" % vm.pid
                      in self.sd.log())
        self.wait_for("its fds to leave the store", lambda: not self.stored("cp/"))
        self.assertEqual(self.ctl("inspect", "one", check=False).returncode, 1)  # its region went with it

    def test_two_vms_keep_their_own_devices(self):
        self.start()
        a, b = self.vm("vm-a"), self.vm("vm-b", uuid=U2)
        self.done(a, a.request("attach", "shared", 4096))
        self.done(b, b.request("attach", "shared", 4096))
        self.done(a, a.request("detach", "shared"))
        self.restart()
        self.done(b, b.request("detach", "shared"))
        self.done(a, a.request("attach", "shared", 4096))
        self.assertEqual(self.peers("shared"), [(0, a.pid, False), (1, b.pid, True)])
        self.assertEqual(self.sd.log().count("region 'shared' plugged"), 2, self.sd.log())

    # --- a request in flight ------------------------------------------------------
    def in_flight(self, vm, name):
        """A request for @name whose helper is held at the gate; returns (seq, helper pid)."""
        self.hold()
        seq = vm.request("attach", name, 4096)
        self.assertEqual(vm.wait(seq, "busy")["state"], 1)
        return seq, self.helper_started()

    def test_in_flight_helper_outlives_the_broker(self):
        self.start()
        vm = self.vm("vm-a")
        seq, helper = self.in_flight(vm, "slow")
        self.sd.wait_stored("cp/", 5)  # and the helper's pidfd and stdout
        self.restart()
        self.assertIn(f"taking over the request for 'slow' (seq {seq})\n", self.sd.log())
        self.release()  # the same helper goes on: the VM connects to the region, the helper says ok
        a = self.done(vm, seq)
        self.assertEqual((a["region"], a["size"]), ("slow", 4096))
        self.assertIn("region 'slow' plugged (ok pci.0)", self.sd.log())
        self.wait_for("the helper's fds to leave the store", lambda: len(self.stored("cp/")) == 3)
        self.done(vm, vm.request("attach", "next", 4096))

    def test_in_flight_helper_dies_with_the_broker(self):
        self.start()
        vm = self.vm("vm-a")
        seq, helper = self.in_flight(vm, "slow")
        # As systemd's KillMode=control-group would: the helper goes with the broker.
        os.kill(helper, signal.SIGKILL)
        self.restart()
        a = self.done(vm, seq, status=HOTPLUG)
        self.assertIn("the broker restarted while this request's device was being plugged", a["detail"])
        self.assertEqual(self.ctl("inspect", "slow", check=False).returncode, 1)  # made for the request, gone
        self.release()
        # The device answers on: the next request is served.
        self.done(vm, vm.request("attach", "next", 4096))

    def test_in_flight_vm_connected_while_the_broker_was_down(self):
        self.start()
        vm = self.vm("vm-a")
        seq, helper = self.in_flight(vm, "slow")
        self.assertEqual(self.sd.kill(), -signal.SIGKILL)
        # The helper goes on: the VM connects to the region's socket, which waits in its backlog ...
        self.release()
        self.helper_started("connected")
        # ... and the helper dies before it can tell (its VM is blocked reading the handshake).
        os.kill(helper, signal.SIGKILL)
        self.start()
        a = self.done(vm, seq)
        self.assertEqual(a["region"], "slow")
        self.assertIn("its QEMU is attached (peer 0), so the request is done", self.sd.log())
        self.assertEqual(self.peers("slow"), [(0, vm.pid, False)])

    def test_in_flight_across_an_upgrade(self):
        self.start()
        vm = self.vm("vm-a")
        seq, _ = self.in_flight(vm, "slow")
        self.assertEqual(self.ctl("upgrade").returncode, 0)
        self.release()
        self.done(vm, seq)
        self.done(vm, vm.request("attach", "next", 4096))
        self.assertIn("restored: 0 requests served, 0 refused, one in flight", self.sd.log())

    # --- what shmemctl shows: factory, and who created a region ------------------------
    def factory(self):
        return sorted(json.loads(self.ctl("--json", "factory").stdout)["vms"], key=lambda v: v["pid"])

    def devices(self, vm):
        return [(d["region"], d["index"], d["parked"]) for d in vm["devices"]]

    def test_shmemctl_factory_lists_vms_and_devices_across_a_kill(self):
        self.start()
        self.assertEqual(self.ctl("factory").stdout, "No VM is connected to the guest factory.\n")
        self.assertEqual(self.factory(), [])
        a, b = self.vm("vm-a"), self.vm("vm-b", uuid=U2)
        self.done(a, a.request("attach", "one", 4096))
        self.done(a, a.request("attach", "two", 4096))
        self.done(a, a.request("detach", "two"))
        self.done(b, b.request("attach", "one", 4096))
        self.done(b, b.request("find", "nothing"), status=6)
        self.ctl("create", "declared", "4K")
        for when in ("before", "after"):
            with self.subTest(when=when):
                va, vb = self.factory()
                self.assertEqual((va["name"], va["uuid"], va["pid"], va["served"], va["refused"], va["in_flight"]),
                                 ("vm-a", U1, a.pid, 3, 0, None))
                self.assertEqual((vb["name"], vb["uuid"], vb["pid"], vb["served"], vb["refused"]),
                                 ("vm-b", U2, b.pid, 1, 1))
                self.assertEqual(self.devices(va), [("one", 0, False), ("two", 0, True)])
                self.assertEqual(self.devices(vb), [("one", 1, False)])
                self.assertTrue(va["monitor"].endswith("mon-0.sock"), va)
                self.assertGreater(va["connection"], 0)
                self.assertIn(f"c/{va['connection']}", self.sd.names())
                text = self.ctl("factory").stdout
                self.assertIn(f"vm:          'vm-a' (UUID {U1}, pid {a.pid})\n"
                              f"connection:  {va['connection']}\n"
                              f"monitor:     {va['monitor']}\n"
                              "requests:    3 served, 0 refused\n"
                              "in flight:   none\n\n"
                              "REGION INDEX STATE   DOORBELL\n"
                              f"one        0 plugged {va['devices'][0]['doorbell_id']:>8}\n"
                              f"two        0 parked  {va['devices'][1]['doorbell_id']:>8}\n", text)
                self.assertIn(f"vm:          'vm-b' (UUID {U2}, pid {b.pid})\n", text)
                # Who created each region: vm-a's factory, or nobody (declared).
                one = json.loads(self.ctl("--json", "inspect", "one").stdout)["created_by"]
                self.assertEqual((one["kind"], one["label"], one["vm_uuid"], one["pid"], one["key"]),
                                 ("qemu", "vm-a", U1, a.pid, f"vm:uuid:{U1}"))
                self.assertIsNone(json.loads(self.ctl("--json", "inspect", "declared").stdout)["created_by"])
                self.assertIn(f"created by:  VM 'vm-a' (UUID {U1}, pid {a.pid}) through its guest factory\n",
                              self.ctl("inspect", "one").stdout)
                self.assertIn("created by:  -\n", self.ctl("inspect", "declared").stdout)
                listing = self.ctl("list").stdout
                self.assertRegex(listing, r"^NAME +SIZE +PEERS +MAX +BACKEND +FLAGS +CREATOR-KIND +CREATOR\n")
                self.assertRegex(listing, r"\none +4K +2 +16 +memfd +- +qemu +vm-a\n")
                self.assertRegex(listing, r"\ndeclared +4K +0 +16 +memfd +no-memory +- +-\n")
                self.assertEqual({r["name"]: r["creator"] for r in
                                  json.loads(self.ctl("--json", "list").stdout)["regions"]},
                                 {"one": "vm-a", "two": "vm-a", "declared": None})
            if when == "before":
                self.sd.wait_stored("cp/", 6)
                self.restart()

    def test_shmemctl_factory_shows_a_request_in_flight(self):
        self.start()
        vm = self.vm("vm-a")
        seq, _ = self.in_flight(vm, "slow")
        flight = self.factory()[0]["in_flight"]
        self.assertEqual((flight["op"], flight["region"], flight["seq"], flight["restarted"]),
                         ("attach", "slow", seq, False), flight)
        self.sd.wait_stored("cp/", 5)
        self.restart()
        flight = self.factory()[0]["in_flight"]
        self.assertEqual((flight["op"], flight["region"], flight["seq"], flight["restarted"]),
                         ("attach", "slow", seq, True), flight)
        self.assertRegex(self.ctl("factory").stdout,
                         rf"\nin flight:   attach 'slow' \(seq {seq}, for \d+\.\d s, begun before a restart\)\n")
        self.release()
        self.done(vm, seq)
        self.assertIsNone(self.factory()[0]["in_flight"])
        self.assertEqual(self.devices(self.factory()[0]), [("slow", 0, False)])

    def test_hostile_vm_name_is_escaped(self):
        self.start()
        vm = self.vm(HOSTILE, uuid=None)
        self.done(vm, vm.request("attach", "mine", 4096))
        self.restart()  # and the name survives the state round trip
        escaped = "evil\\x1b[2J\\x07name\\\\x"
        # list's table is libsmartcols': a backslash is \x5c where an x follows it, else as it is.
        for args, shown in ((("factory",), escaped), (("inspect", "mine"), escaped),
                            (("list",), "evil\\x1b[2J\\x07name\\x5cx")):
            with self.subTest(args=args):
                text = self.ctl(*args).stdout
                self.assertNotIn("\x1b", text)
                self.assertNotIn("\x07", text)
                self.assertIn(shown, text)
        self.assertIn(f"vm:          '{escaped}' (UUID -, pid {vm.pid})\n", self.ctl("factory").stdout)
        self.assertIn(f"created by:  VM '{escaped}' (UUID -, pid {vm.pid}) through its guest factory\n",
                      self.ctl("inspect", "mine").stdout)
        # JSON: the name itself, escaped as JSON.
        self.assertEqual(self.factory()[0]["name"], HOSTILE)
        self.assertIn('"name": "evil\\u001b[2J\\u0007name\\\\x"', self.ctl("--json", "factory").stdout)
        self.assertEqual(json.loads(self.ctl("--json", "inspect", "mine").stdout)["created_by"]["label"], HOSTILE)

    def peers(self, region):
        """(index, pid, parked) of each peer of @region, from shmemctl inspect."""
        peers = json.loads(self.ctl("--json", "inspect", region).stdout)["peers"]
        return [(p["index"], p["pid"], p["parked"]) for p in peers]

    def wait_for(self, what, pred, timeout=20):
        end = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > end:
                self.fail(f"timed out waiting for {what}\n{self.sd.log()}")
            time.sleep(0.05)


if __name__ == "__main__":
    BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
