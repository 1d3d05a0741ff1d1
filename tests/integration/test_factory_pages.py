# SPDX-License-Identifier: LGPL-2.1-or-later
"""The guest factory's listing in pages (issue 10; docs/protocol.md, "Listing in pages").

500 VMs connect to the real factory socket (tests/harness/fakefactory.py's
FakeFactoryCrowd: one process per VM, QEMU's command line with a 31-character
-name and a 107-character monitor path): their FactoryReply is more than one
message of the native protocol holds (SHMEM_MSG_MAX, 64 KiB).

- `shmemctl factory --json` lists every one of them, in the order they
  connected, although no single reply could;
- a raw client paging with a large limit gets pages that are each one message
  under the cap, together over it, every VM once, and a small limit is kept;
- a client from before paging (no limit) gets LIMIT with the reason, not a
  dropped connection, and the connection goes on;
- a VM with more devices than one message holds (connections-per-vm raised
  to let it have 1,000) is answered LIMIT naming it, and the VMs before it
  are listed;
- a user who is not an administrator sees the VMs whose QEMU runs as its
  own uid only (all_vms false), root sees all (docs/security.md).

Run: python3 test_factory_pages.py BUILD_DIR
"""

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
import harness  # noqa: E402
from harness import proto  # noqa: E402
from harness.fakefactory import FakeFactoryCrowd  # noqa: E402

BUILD = None
MANY = 500
NAME = "crowd-vm-with-a-31-character-n"  # SHMEM_LABEL_MAX
NOBODY = 65534
FDS = 20000
DEVICES = 1000  # one VM's, each a QEMU connection to a region of its own


class as_user:
    """Connections made inside carry @uid (SO_PEERCRED takes the effective ids at connect())."""
    def __init__(self, uid):
        self.uid = uid

    def __enter__(self):
        os.setegid(self.uid)
        os.seteuid(self.uid)

    def __exit__(self, *exc):
        os.seteuid(0)
        os.setegid(0)


class FactoryPages(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.fail("needs root: the test runs VMs and shmemctl as uid 65534 besides root")
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < FDS:
            try:  # the broker and the crowd inherit it
                resource.setrlimit(resource.RLIMIT_NOFILE, (FDS, max(hard, FDS)))
            except (ValueError, OSError) as e:
                self.fail(f"{MANY} VMs need an RLIMIT_NOFILE of {FDS}, not {soft}/{hard} ({e})")
        self.dir = tempfile.mkdtemp(prefix="shmem-facp-")
        os.chmod(self.dir, 0o755)  # uid 65534 must reach the sockets
        self.rundir = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.rundir, "broker.sock")
        self.factory = os.path.join(self.rundir, "qemu", "factory.sock")
        # The longest monitor a VM's entry can carry (sun_path: 107 bytes); it need not exist.
        self.monitor = os.path.join(self.dir, "m" * (107 - len(self.dir) - 1))
        self.shmemctl = os.path.join(BUILD, "clients", "shmemctl", "shmemctl")
        self.crowds = []
        self.broker = harness.Broker([os.path.join(BUILD, "broker", "shmem-brokerd"), "--no-config",
                                      "--max-connections", str(MANY + DEVICES + 100),
                                      "--max-regions", str(DEVICES + 10),
                                      "--max-connections-per-vm", str(DEVICES + 10)],
                                     self.rundir, os.path.join(self.dir, "broker.log"))

    def tearDown(self):
        for c in self.crowds:
            c.close()
        self.broker.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def crowd(self, n, name=NAME, **popen):
        try:
            c = FakeFactoryCrowd(self.factory, self.monitor, name, n, **popen)
        except RuntimeError as e:
            self.fail(f"{e}\n{self.broker.log()[-3000:]}")
        self.crowds.append(c)
        return c

    def page_through(self, s, limit):
        """Every VM's (pid, conn) by Factory pages of @limit; the pages' datagram sizes."""
        vms, sizes, after = [], [], 0
        while True:
            r, page, after, all_vms = s.factory(limit=limit, after=after)
            self.assertEqual(r.status, proto.STATUS_OK, r.error)
            self.assertTrue(all_vms)
            sizes.append(len(s.last))
            self.assertLessEqual(len(page), limit)
            vms += [(vm[proto.FACTORY_VM_PID], vm[proto.FACTORY_VM_CONN]) for vm in page]
            if not after:
                return vms, sizes

    def test_more_vms_than_one_message_listed_whole(self):
        self.crowd(MANY)
        with proto.Session(self.sock, "pager") as s:
            vms, sizes = self.page_through(s, 100000)
            # Each page one message under the cap; together more than one message holds.
            self.assertTrue(all(n <= proto.MSG_MAX for n in sizes), sizes)
            self.assertGreater(sum(sizes), proto.MSG_MAX)
            self.assertGreaterEqual(len(sizes), 2)
            self.assertEqual(len(vms), MANY)
            self.assertEqual(len(set(vms)), MANY)
            conns = [conn for _, conn in vms]
            self.assertEqual(conns, sorted(conns))
            # A small limit is kept, and gives the same VMs.
            small, sizes = self.page_through(s, 7)
            self.assertEqual(small, vms)
            self.assertEqual(len(sizes), (MANY + 6) // 7)

        out = subprocess.run([self.shmemctl, "--socket", self.sock, "--json", "factory"], capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr + self.broker.log()[-3000:])
        self.assertGreater(len(out.stdout), proto.MSG_MAX)
        got = json.loads(out.stdout)["vms"]
        self.assertEqual([(vm["pid"], vm["connection"]) for vm in got], vms)
        self.assertEqual({(vm["name"], vm["monitor"]) for vm in got}, {(NAME, self.monitor)})
        text = subprocess.run([self.shmemctl, "--socket", self.sock, "factory"], capture_output=True, text=True,
                              timeout=60)
        self.assertEqual(text.returncode, 0, text.stderr)
        self.assertEqual(text.stdout.count(f"vm:          '{NAME}'"), MANY)

    def test_a_client_before_paging_is_refused_not_dropped(self):
        self.crowd(5)
        with proto.Session(self.sock, "old") as s:
            # Without a limit, what fits comes whole, as before paging.
            r, vms, after, _ = s.factory()
            self.assertEqual((r.status, len(vms), after), (proto.STATUS_OK, 5, 0))
            self.crowd(MANY - 5)
            r, vms, after, _ = s.factory()
            self.assertEqual(r.status, proto.STATUS_LIMIT)
            self.assertIn(f"{MANY} VMs do not fit in one message: list in pages (Factory.limit)", r.error)
            self.assertEqual((vms, after), ([], 0))
            # The connection goes on.
            r, vms, after, _ = s.factory(limit=3)
            self.assertEqual((r.status, len(vms)), (proto.STATUS_OK, 3), r.error)
            self.assertNotEqual(after, 0)

    def test_a_vm_with_more_devices_than_a_message_is_refused_naming_it(self):
        names = [f"{i:04d}-" + "r" * 58 for i in range(DEVICES)]  # 63 characters
        with proto.Session(self.sock, "admin") as s:
            for name in names:
                r = s.request(proto.MESSAGE_CREATE, proto.field(proto.CREATE_NAME, name) +
                              proto.field(proto.CREATE_SIZE, 4096) + proto.field(proto.CREATE_MAX_PEERS, 1))
                self.assertEqual(r.status, proto.STATUS_OK, f"create {name}: {r.error}")
        self.crowd(3, name="before")
        plugs = os.path.join(self.dir, "plugs")
        with open(plugs, "w") as f:
            f.write("\n".join(os.path.join(self.rundir, "qemu", f"{name}.sock") for name in names))
        self.crowd(1, name="many-devices", plugs=plugs)
        with proto.Session(self.sock, "pager") as s:
            r, vms, after, _ = s.factory(limit=100)
            self.assertEqual((r.status, len(vms)), (proto.STATUS_OK, 3), r.error)
            self.assertEqual({vm[proto.FACTORY_VM_LABEL] for vm in vms}, {b"before"})
            r, vms, next_, _ = s.factory(limit=100, after=after)
            self.assertEqual(r.status, proto.STATUS_LIMIT)
            self.assertRegex(r.error, rf"^VM 'many-devices' \(pid \d+\) has {DEVICES} devices, more than one "
                                      r"message holds$")
            # The connection goes on.
            self.assertEqual(s.inspect(names[0])[0].status, proto.STATUS_OK)

    def test_a_user_sees_the_vms_of_its_own_uid_only(self):
        group = os.stat(self.factory).st_gid  # the factory socket's group lets a VM of 65534 in
        self.crowd(3, name="root-vm")
        python = shutil.which("python3", path="/usr/bin:/bin")  # not one under root's home
        if not python:
            self.fail("needs /usr/bin/python3 (apt install python3) to run a VM as uid 65534")
        self.crowd(2, name="nobody-vm", python=python, user=NOBODY, group=group, extra_groups=[])

        def names(user=None):
            kw = dict(user=user, group=user, extra_groups=[]) if user is not None else {}
            out = subprocess.run([self.shmemctl, "--socket", self.sock, "--json", "factory"], capture_output=True,
                                 text=True, timeout=30, **kw)
            self.assertEqual(out.returncode, 0, out.stderr)
            return [vm["name"] for vm in json.loads(out.stdout)["vms"]]

        self.assertEqual(names(), ["root-vm"] * 3 + ["nobody-vm"] * 2)
        self.assertEqual(names(NOBODY), ["nobody-vm"] * 2)
        self.assertEqual(names(65533), [])
        out = subprocess.run([self.shmemctl, "--socket", self.sock, "factory"], capture_output=True, text=True,
                             timeout=30, user=65533, group=65533, extra_groups=[])
        self.assertEqual(out.stdout, "No VM of uid 65533 is connected to the guest factory (an administrator "
                                     "sees every user's).\n", out.stderr)
        with as_user(NOBODY):
            s = proto.Session(self.sock, "nobody")
        with s:
            r, vms, after, all_vms = s.factory(limit=100)
            self.assertEqual((r.status, len(vms), after, all_vms), (proto.STATUS_OK, 2, 0, False))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: test_factory_pages.py BUILD_DIR")
    BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
