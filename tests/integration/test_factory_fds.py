# SPDX-License-Identifier: LGPL-2.1-or-later
"""The guest factory's fds in the fd budget (broker/core/registry-fds.c,
plugin-qemu/factory.c; docs/factory.md, docs/persistence.md).

Under a low fd limit (prlimit, as tests/integration/test_fd_budget.py), with
the budget filled by persistent regions:

- a new factory device (tests/harness/fakefactory.py's fake VM on the real
  factory socket) is refused as a QEMU region connection is, with the
  version 1000 + LIMIT, before its page and eventfds exist;
- a connected VM's request that would need a hotplug helper and a peer's row
  is answered LIMIT with the reason, not HOTPLUG after a plug whose chardev
  the broker then refuses (with QEMU, a VM stopped in device_add);
- the broker and its other clients go on, and after regions are destroyed
  the same request is served and the same VM connects;
- the budget's use (shmemctl status --json, total.fds) grows by a VM's 3
  fds and by nothing of a finished request's helper, and shrinks back as
  they go; a kill -9 takes the VM back with its 3.

Run: python3 test_factory_fds.py BUILD_DIR
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
from harness import FakeSystemd, proto  # noqa: E402
from harness.fakefactory import FakeFactoryVm, write_helper  # noqa: E402

BUILD = None
NOFILE = 2600
EMFILE = "Too many open files"
REFUSE_BASE = 1000  # plugin-qemu/qemu.h IVSHMEM_REFUSE_VERSION_BASE
ROW = 17            # a peer's eventfds at the default 16 peers
REASON = "the broker's file descriptor limit is reached"


class FactoryFds(unittest.TestCase):
    def setUp(self):
        if not shutil.which("prlimit"):
            self.fail("needs prlimit (util-linux)")
        self.dir = tempfile.mkdtemp(prefix="shmem-facfd-")
        self.rundir = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.rundir, "broker.sock")
        helper = os.path.join(self.dir, "hotplug")
        write_helper(helper)
        self.shmemctl = os.path.join(BUILD, "clients", "shmemctl", "shmemctl")
        self.argv = ["prlimit", f"--nofile={NOFILE}", os.path.join(BUILD, "broker", "shmem-brokerd"),
                     "--no-config", "-v", "--rundir", self.rundir, "--max-regions", "5000",
                     "--max-connections", "64", "--max-total-queued-fds", "64",
                     "--hotplug-helper", helper, "--hotplug-timeout-ms", "20000"]
        self.sd = FakeSystemd(self.dir)
        self.vms = []

    def tearDown(self):
        for vm in self.vms:
            vm.close()
        self.sd.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def connect(self, name):
        vm = FakeFactoryVm(os.path.join(self.rundir, "qemu", "factory.sock"),
                           os.path.join(self.dir, f"mon-{len(self.vms)}.sock"), name)
        self.vms.append(vm)
        return vm

    def fds(self):
        out = subprocess.run([self.shmemctl, "-s", self.sock, "status", "--json"], capture_output=True, text=True,
                             timeout=20)
        self.assertEqual(out.returncode, 0, out.stderr)
        return json.loads(out.stdout)["total"]["fds"]

    def wait_fds(self, want, timeout=10.0):
        end = time.monotonic() + timeout
        while (got := self.fds()) != want:
            self.assertLess(time.monotonic(), end, f"the budget's use is {got}, not {want}:\n{self.sd.log()[-3000:]}")
            time.sleep(0.05)

    def answer(self, vm, seq, status):
        a = vm.wait(seq)
        self.assertEqual((a["event"], a["status"]), ("answer", status), f"{a}\n{self.sd.log()[-3000:]}")
        return a

    def test_refused_with_limit_not_emfile_then_served(self):
        self.sd.start(self.argv)
        a = self.connect("vm-a")
        self.assertEqual(a.ready["event"], "ready", a.ready)
        with proto.Session(self.sock, "maker") as s:
            made = []
            while (r := s.create(f"p{len(made)}", persistent=True)).status == proto.STATUS_OK:
                made.append(f"p{len(made)}")
                self.assertLess(len(made), NOFILE, "never refused")
            self.assertEqual(r.status, proto.STATUS_LIMIT, r.error)
            # A region costs 2: at most 1 is left, less than a VM's 3.
            b = self.connect("vm-b")
            self.assertEqual(b.ready, {"event": "refused", "version": REFUSE_BASE + proto.STATUS_LIMIT})
            # A request for a region that exists: nothing of the region's own to refuse; the
            # helper and the row its QEMU would attach with do not fit.
            full = self.fds()
            a_ans = self.answer(a, a.request("find", made[0]), proto.STATUS_LIMIT)
            self.assertIn(REASON, a_ans["detail"])
            self.assertTrue(a_ans["detail"].endswith("(raise LimitNOFILE=; see the start-up log)"), a_ans["detail"])
            self.assertEqual(self.fds(), full)
            # The broker and its other clients go on.
            self.assertEqual(s.inspect(made[0])[0].status, proto.STATUS_OK)
            with proto.Session(self.sock, "peer") as p:
                self.assertEqual(p.attach(made[1]).status, proto.STATUS_LIMIT)
            for name in made[-12:]:
                self.assertEqual(s.destroy(name).status, proto.STATUS_OK)
            room = self.fds()
            self.assertEqual(room, full - 24)
            # The same request served: the helper plugs, the VM's QEMU attaches with its row; the
            # helper's fds are given back as it ends.
            a_ans = self.answer(a, a.request("find", made[0]), 0)
            self.assertEqual(a_ans["region"], made[0])
            self.wait_fds(room + ROW)
            # The same VM connects, its 3 held while it is there.
            b2 = self.connect("vm-b")
            self.assertEqual(b2.ready["event"], "ready", b2.ready)
            self.assertEqual(self.fds(), room + ROW + 3)
            b2.close()
            self.wait_fds(room + ROW)
        log = self.sd.log()
        self.assertIn("Refusing the factory device of 'vm-b'", log)
        self.assertIn(f"Factory of 'vm-a': refusing '{made[0]}': {REASON}", log)
        self.assertNotIn(EMFILE, log)
        # A kill -9: vm-a and its device come back with their fds, charged as before.
        self.sd.wait_stored("m/", len(made) - 12)
        self.assertEqual(self.sd.kill(), -signal.SIGKILL)
        self.sd.start(self.argv)
        self.wait_fds(room + ROW)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: test_factory_fds.py BUILD_DIR")
    BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
