# SPDX-License-Identifier: LGPL-2.1-or-later
"""The fd budget (broker/core/registry-fds.c, broker/main.c fd_budget()):
under a low fd limit (prlimit), what the limit cannot hold is refused (LIMIT,
with the reason) as it is asked for, never EMFILE half-way; what fills the
budget survives a kill -9 and an upgrade (whose handover takes one fd, not
one per stored fd); an upgrade that cannot happen says why at once; peers
that do not read fill their queues without pushing the broker past its limit.

Run: python3 test_fd_budget.py BUILD_DIR
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
from harness import FakeSystemd, proto  # noqa: E402

BUILD = None
NOFILE = 2600
EMFILE = "Too many open files"


class FdBudget(unittest.TestCase):
    """A broker under the fake service manager with an fd limit of NOFILE."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="shmem-fds-")
        self.rundir = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.rundir, "broker.sock")
        self.sd = FakeSystemd(self.dir)
        self.exe = os.path.join(BUILD, "broker", "shmem-brokerd")
        self.shmemctl = os.path.join(BUILD, "clients", "shmemctl", "shmemctl")

    def tearDown(self):
        self.sd.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def argv(self, *limits, exe=None):
        return ["prlimit", f"--nofile={NOFILE}", exe or self.exe, "--no-config", "--max-regions", "5000",
                "--rundir", self.rundir] + list(limits)

    def budget(self):
        m = re.search(r"File descriptor limit (\d+) leaves (\d+) fds to regions and peers", self.sd.log())
        self.assertIsNotNone(m, self.sd.log())
        self.assertEqual(int(m.group(1)), NOFILE)
        return int(m.group(2))

    def fill(self, s, budget, prefix="p"):
        """Persistent regions (a QEMU socket and a memfd, each kept twice) until LIMIT; their names."""
        made = []
        while True:
            r = s.create(f"{prefix}{len(made)}", persistent=True)
            if r.status != proto.STATUS_OK:
                break
            made.append(f"{prefix}{len(made)}")
            self.assertLess(len(made), budget, "never refused")
        self.assertEqual(r.status, proto.STATUS_LIMIT, r.error)
        self.assertIn("the broker's file descriptor limit is reached", r.error)
        return made

    def listed(self):
        with proto.Session(self.sock, "lister") as s:
            names, after = [], 0
            while True:
                r, regions, after = s.list(limit=1000, after=after)
                self.assertEqual(r.status, proto.STATUS_OK, r.error)
                names += [reg[proto.REGION_NAME].decode() for reg in regions]
                if not after:
                    return names

    def upgrade(self):
        start = time.monotonic()
        out = subprocess.run([self.shmemctl, "--socket", self.sock, "upgrade"], capture_output=True, text=True,
                             timeout=60)
        return out, time.monotonic() - start

    def wait_ready(self, n, timeout=10.0):
        """Until the manager got READY=1 @n times (an upgraded image's comes after shmemctl saw it)."""
        end = time.monotonic() + timeout
        while self.sd.ready < n:
            self.assertLess(time.monotonic(), end, f"READY=1 {self.sd.ready} times, not {n}:\n{self.sd.log()}")
            time.sleep(0.02)

    def test_refused_before_the_fd_limit_and_all_kept(self):
        argv = self.argv("--max-connections", "64", "--max-total-queued-fds", "64")
        self.sd.start(argv)
        budget = self.budget()
        with proto.Session(self.sock, "maker") as s:
            made = self.fill(s, budget)
            self.assertEqual(len(made), budget // 2)
            # A peer's row (17 eventfds) does not fit either, until regions make room for it.
            with proto.Session(self.sock, "peer") as p:
                r = p.attach("p0")
                self.assertEqual(r.status, proto.STATUS_LIMIT, r.error)
                for name in made[-9:]:
                    self.assertEqual(s.destroy(name).status, proto.STATUS_OK)
                del made[-9:]
                self.assertEqual(p.attach("p0").status, proto.STATUS_OK)
                self.sd.wait_stored("e/p0/", 17)
        self.assertNotIn(EMFILE, self.sd.log())
        self.assertNotIn("Cannot", self.sd.log())
        # Everything made was stored: a kill -9 loses none of it.
        self.sd.wait_stored("m/", len(made))
        self.assertEqual(self.sd.kill(), -9)
        self.sd.start(argv)
        self.assertIn(f"Restored {len(made)} regions", self.sd.log())
        self.assertEqual(self.listed(), made)

    def test_upgrade_with_the_budget_full(self):
        # Few connections and queued fds set aside: the budget is most of the limit, and
        # a handover that took a copy of every stored fd would not fit beside it.
        self.sd.start(self.argv("--max-connections", "16", "--max-total-queued-fds", "16"))
        budget = self.budget()
        self.assertGreater(3 * budget, NOFILE)
        with proto.Session(self.sock, "maker") as s:
            made = self.fill(s, budget)
            self.sd.wait_stored("m/", len(made))
            ready = self.sd.ready
            out, took = self.upgrade()
            self.assertEqual(out.returncode, 0, out.stderr + self.sd.log()[-3000:])
            self.assertIn("upgraded:", out.stdout)
            self.wait_ready(ready + 1)
            # The maker's connection was handed over too.
            self.assertEqual(s.inspect(made[-1])[0].status, proto.STATUS_OK)
        self.assertEqual(self.listed(), made)
        self.assertIn(f"Restored {len(made)} regions", self.sd.log())
        self.assertNotIn(EMFILE, self.sd.log())
        self.assertNotIn("Cannot upgrade", self.sd.log())

    def test_an_upgrade_that_cannot_happen_says_why_at_once(self):
        exe = os.path.join(self.dir, "shmem-brokerd")
        shutil.copy(self.exe, exe)
        self.sd.start(self.argv("--max-connections", "64", "--max-total-queued-fds", "64", exe=exe))
        with proto.Session(self.sock, "peer") as p:
            r = p.attach("kept", 4096)
            self.assertEqual(r.status, proto.STATUS_OK, r.error)
            # Missing: refused before the reply.
            os.unlink(exe)
            out, took = self.upgrade()
            self.assertNotEqual(out.returncode, 0, out.stdout)
            self.assertIn("No such file or directory", out.stderr)
            self.assertLess(took, 1.0, out.stderr)
            # There and executable, but no program: execv() fails after the reply, and the
            # broker goes on with every fd it had.
            with open(exe, "w") as f:
                f.write("not a program\n")
            os.chmod(exe, 0o755)
            out, took = self.upgrade()
            self.assertNotEqual(out.returncode, 0, out.stdout)
            self.assertIn("did not upgrade and goes on: the upgrade to '" + exe + "' failed: Exec format error",
                          out.stderr)
            self.assertLess(took, 1.0, out.stderr)
            self.assertRegex(self.sd.log(), r"Cannot upgrade to '.*' with \d+ stored fds, going on: Exec format")
            st = subprocess.run([self.shmemctl, "--socket", self.sock, "status"], capture_output=True, text=True,
                                timeout=10)
            self.assertIn("Upgrade: FAILED: the upgrade to", st.stdout)
            self.assertEqual(p.inspect("kept")[0].status, proto.STATUS_OK)
            # The real binary back: the same broker upgrades, its fds intact.
            os.unlink(exe)
            shutil.copy(self.exe, exe)
            ready = self.sd.ready
            out, took = self.upgrade()
            self.assertEqual(out.returncode, 0, out.stderr + self.sd.log()[-3000:])
            self.wait_ready(ready + 1)
            r, region = p.inspect("kept")
            self.assertEqual(r.status, proto.STATUS_OK, r.error)
        self.assertEqual(self.sd.proc.poll(), None)

    def test_declared_beyond_the_budget_is_said(self):
        """More declared regions than the fd limit leaves them: the start fails and says so, once."""
        args = []
        for i in range(1200):
            args += ["--region", f"d{i}:4K"]
        out = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 1, out.stderr[-2000:])
        self.assertRegex(out.stderr, r"Cannot apply region 'd1199': limit: the broker's file descriptor limit")
        self.assertRegex(out.stderr, r"Cannot start: \d+ of the 1200 declared regions cannot be made")

    def test_peers_that_do_not_read_meet_limit_not_emfile(self):
        self.sd.start(self.argv("--max-connections", "64", "--max-total-queued-fds", "1024",
                                 "--max-queued-bytes", "16K"))
        budget = self.budget()
        deaf = [proto.Session(self.sock, f"deaf{i}") for i in range(8)]
        churner = proto.Session(self.sock, "churner")
        try:
            for d in deaf + [churner]:
                r = d.attach("hub", 4096)
                self.assertEqual(r.status, proto.STATUS_OK, r.error)
            # Watchers: their events are not folded as a Left folds a Joined, so their
            # queues fill with what nothing cancels.
            for d in deaf:
                self.assertEqual(d.request(proto.MESSAGE_WATCH).status, proto.STATUS_OK)
            with proto.Session(self.sock, "maker") as s:
                made = self.fill(s, budget)
                # Left and Joined, with the churner's fds, and the watch events, for every deaf
                # peer, which reads none.
                for i in range(400):
                    r = churner.request(proto.MESSAGE_DETACH, proto.field(1, "hub"))
                    self.assertEqual(r.status, proto.STATUS_OK, f"cycle {i}: {r.error}")
                    r = churner.attach("hub", 4096)  # made again once the deaf are gone
                    self.assertEqual(r.status, proto.STATUS_OK, f"cycle {i}: {r.error}")
                # The deaf peers were dropped as their queues filled, their rows with them;
                # with regions in their room, a new peer's row is refused with the reason.
                log = self.sd.log()
                for d in range(8):  # each said once
                    self.assertEqual(log.count(f"Client 'deaf{d}' (pid {os.getpid()}) does not read its messages"), 1, log)
                made += self.fill(s, budget, "q")
                with proto.Session(self.sock, "late") as p:
                    r = p.attach("hub", 4096)
                    self.assertEqual(r.status, proto.STATUS_LIMIT, r.error)
                    self.assertIn("the broker's file descriptor limit is reached", r.error)
                # The broker and its other clients go on.
                self.assertEqual(s.inspect("hub")[0].status, proto.STATUS_OK)
                self.assertEqual(s.destroy(made[-1]).status, proto.STATUS_OK)
            self.assertNotIn(EMFILE, self.sd.log())
            # hub was made again when the deaf were gone and the churner left it: order aside.
            self.assertEqual(sorted(self.listed()), sorted(["hub"] + made[:-1]))
        finally:
            for d in deaf + [churner]:
                d.close()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: test_fd_budget.py BUILD_DIR")
    BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
