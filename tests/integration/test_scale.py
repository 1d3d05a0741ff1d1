# SPDX-License-Identifier: LGPL-2.1-or-later
"""Walls at scale (issue 10). 6,000 regions are listed and inspected although
their list is many times what one message of the native protocol holds
(SHMEM_MSG_MAX, 64 KiB): List is answered in pages (docs/protocol.md,
"Listing in pages"). The fd limit's walls are test_fd_budget.py's. Speed
is the benchmark's (bench/bench-scale.py), not checked here.

Run: python3 test_scale.py BUILD_DIR
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

BUILD = None
# Each region costs the broker 2 fds (its QEMU socket and the copy kept for an
# upgrade): 10,000 would need more than the 20,000 of a default unit
# (bench/bench-scale.py measures them). 6,000 take about 10 messages. Beside
# them the fd limit sets 6,714 aside with the default limits (docs/systemd.md).
MANY = 6000
FDS = 2 * MANY + 7000


class Scale(unittest.TestCase):
    def setUp(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard < FDS:
            try:  # the broker inherits it
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, FDS))
            except (ValueError, OSError) as e:
                self.fail(f"{MANY} regions need a hard RLIMIT_NOFILE of {FDS}, not {hard} ({e}): "
                          f"run as root or with `ulimit -Hn {FDS}`")
        self.dir = tempfile.mkdtemp(prefix="shmem-scale-")
        self.rundir = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.rundir, "broker.sock")
        self.shmemctl = os.path.join(BUILD, "clients", "shmemctl", "shmemctl")
        self.broker = harness.Broker([os.path.join(BUILD, "broker", "shmem-brokerd"), "--no-config",
                                      "--max-regions", str(MANY + 10)],
                                     self.rundir, os.path.join(self.dir, "broker.log"))

    def tearDown(self):
        self.broker.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def create(self, s, names):
        for name in names:
            r = s.create(name)
            self.assertEqual(r.status, proto.STATUS_OK, f"create {name}: {r.error}")

    def ctl(self, *args):
        out = subprocess.run([self.shmemctl, "--socket", self.sock] + list(args), capture_output=True,
                             text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr + self.broker.log()[-3000:])
        return out.stdout

    def page_through(self, s, limit):
        """Every region's name by List pages of @limit; the pages' datagram sizes."""
        names, sizes, after = [], [], 0
        while True:
            r, regions, after = s.list(limit=limit, after=after)
            self.assertEqual(r.status, proto.STATUS_OK, r.error)
            sizes.append(len(s.last))
            names += [reg[proto.REGION_NAME].decode() for reg in regions]
            if not after:
                return names, sizes

    def test_regions_over_many_messages_listed_and_inspected(self):
        names = [f"scale-region-{i:05d}" for i in range(MANY)]
        with proto.Session(self.sock, "scale") as s:
            self.create(s, names)
            # The broker's own pages: each one message, together far over one.
            listed, sizes = self.page_through(s, 100000)
            self.assertEqual(listed, names)
            self.assertGreater(sum(sizes), 8 * proto.MSG_MAX)
            self.assertGreaterEqual(len(sizes), 9)
            self.assertTrue(all(n <= proto.MSG_MAX for n in sizes), sizes)
            # Every region inspected, on one connection.
            for name in names:
                r, region = s.inspect(name)
                self.assertEqual(r.status, proto.STATUS_OK, f"inspect {name}: {r.error}")
                self.assertEqual(region[proto.REGION_NAME].decode(), name)

        got = json.loads(self.ctl("--json", "list"))["regions"]
        self.assertEqual([r["name"] for r in got], names)
        text = self.ctl("list").splitlines()
        self.assertEqual(len(text), MANY + 1)
        self.assertEqual([line.split()[0] for line in text[1:]], names)
        last = json.loads(self.ctl("--json", "inspect", names[-1]))
        self.assertEqual((last["name"], last["peers"]), (names[-1], []))

    def test_a_client_before_paging_is_refused_not_dropped(self):
        with proto.Session(self.sock, "old") as s:
            self.create(s, [f"few-{i}" for i in range(10)])
            # Without a limit, what fits comes whole, as before paging.
            r, regions, after = s.list()
            self.assertEqual((r.status, len(regions), after), (proto.STATUS_OK, 10, 0))
            self.create(s, [f"long-name-of-a-region-{i:04d}" for i in range(1000)])
            r, regions, after = s.list()
            self.assertEqual(r.status, proto.STATUS_LIMIT)
            self.assertIn("1010 regions do not fit in one message: list in pages", r.error)
            self.assertEqual((regions, after), ([], 0))
            # The connection goes on.
            r, region = s.inspect("few-0")
            self.assertEqual(r.status, proto.STATUS_OK, r.error)

    def test_pages_follow_creation_order_across_changes(self):
        with proto.Session(self.sock, "pager") as s:
            self.create(s, [f"p{i}" for i in range(12)])
            r, regions, after = s.list(limit=5)
            self.assertEqual([reg[proto.REGION_NAME] for reg in regions], [b"p0", b"p1", b"p2", b"p3", b"p4"])
            self.assertNotEqual(after, 0)
            # The cursor's own region and one already listed go; one comes: the listing goes on
            # after p4 without repeating or missing any region that stayed.
            for name in ("p4", "p1"):
                self.assertEqual(s.destroy(name).status, proto.STATUS_OK)
            self.create(s, ["p12"])
            r, regions, after = s.list(limit=5, after=after)
            self.assertEqual([reg[proto.REGION_NAME] for reg in regions], [b"p5", b"p6", b"p7", b"p8", b"p9"])
            r, regions, after = s.list(limit=5, after=after)
            self.assertEqual([reg[proto.REGION_NAME] for reg in regions], [b"p10", b"p11", b"p12"])
            self.assertEqual(after, 0)


class TenThousand(unittest.TestCase):
    """Issue 10's 10,000 regions, listed by `shmemctl --json list`. Each costs the broker 2 fds
    (see MANY): it runs at the unit's LimitNOFILE, which only root with CAP_SYS_RESOURCE may
    give it where the hard limit is lower. `ctest -L long` (integration-scale-10k)."""
    N = 10000
    NOFILE = 65536  # LimitNOFILE= of systemd/shmem-brokerd.service.in

    def setUp(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.NOFILE, max(hard, self.NOFILE)))
        except (ValueError, OSError) as e:
            self.fail(f"{self.N} regions need RLIMIT_NOFILE {self.NOFILE} (the unit's LimitNOFILE), the hard limit "
                      f"is {hard} and this process cannot raise it ({e}): run as root, with CAP_SYS_RESOURCE "
                      f"(a container may drop it; see CapEff in /proc/self/status)")
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        self.dir = tempfile.mkdtemp(prefix="shmem-scale10k-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.rundir = os.path.join(self.dir, "run")
        self.broker = harness.Broker([os.path.join(BUILD, "broker", "shmem-brokerd"), "--no-config",
                                      "--max-regions", str(self.N + 10)],
                                     self.rundir, os.path.join(self.dir, "broker.log"))
        self.addCleanup(self.broker.close)

    def test_ten_thousand_regions_listed(self):
        names = [f"r{i:05d}" for i in range(self.N)]
        with proto.Session(os.path.join(self.rundir, "broker.sock"), "scale") as s:
            for name in names:
                r = s.create(name)
                self.assertEqual(r.status, proto.STATUS_OK, f"create {name}: {r.error}")
        out = subprocess.run([os.path.join(BUILD, "clients", "shmemctl", "shmemctl"), "--socket",
                              os.path.join(self.rundir, "broker.sock"), "--json", "list"],
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr + self.broker.log()[-3000:])
        self.assertEqual([r["name"] for r in json.loads(out.stdout)["regions"]], names)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: test_scale.py BUILD_DIR")
    BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
