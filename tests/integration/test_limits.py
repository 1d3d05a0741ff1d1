# SPDX-License-Identifier: LGPL-2.1-or-later
"""Limits per user, and no spinning: one unprivileged user cannot deny service
to the others (docs/security.md, broker.conf(5) [limits]).

Each test starts the real broker with small limits and plays an unprivileged
user (uid 65534: neither root nor the broker's user) against it, through raw
connections (harness.proto.Session), connected with that effective uid: the
broker reads it from SO_PEERCRED. Root, the administrator, must keep being
served. Needs root (to be both).

Run: python3 test_limits.py BUILD_DIR
"""

import contextlib
import os
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
import harness  # noqa: E402
from harness import proto  # noqa: E402

BUILD = None
NOBODY = 65534


@contextlib.contextmanager
def as_nobody():
    """Connections made inside carry uid/gid 65534 (SO_PEERCRED takes the effective ids at connect())."""
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def qemu_first_messages(path, n):
    """Connects @n times to the QEMU socket @path as one process (one VM: no -uuid, so counted
    by its pid); returns the first message of each: 0, the version, or a refusal 1000 + status."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            s.settimeout(3)
            s.connect(path)
            socks.append(s)
        return [struct.unpack("<q", s.recv(8, socket.MSG_WAITALL))[0] for s in socks]
    finally:
        for s in socks:
            s.close()


def cpu_seconds(pid):
    """utime + stime of @pid, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Limits(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.fail("needs root: the test plays uid 65534 and root against one broker")
        self.dir = tempfile.mkdtemp(prefix="shmem-limits-")
        os.chmod(self.dir, 0o755)  # nobody must reach the socket
        self.rundir = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.rundir, "broker.sock")
        self.broker = None
        self.sessions = []

    def tearDown(self):
        for s in self.sessions:
            s.close()
        if self.broker:
            self.broker.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, *options, preexec_fn=None):
        argv = [os.path.join(BUILD, "broker", "shmem-brokerd"), "--no-config", *options]
        if preexec_fn:
            # harness.Broker has no preexec: rlimits go through a wrapper that sets them and execs.
            argv = [sys.executable, "-c", preexec_fn] + argv
        self.broker = harness.Broker(argv, self.rundir, os.path.join(self.dir, "broker.log"))

    def session(self, label="t", nobody=False, hello=True):
        if nobody:
            with as_nobody():
                s = proto.Session(self.sock, label if hello else None)
        else:
            s = proto.Session(self.sock, label if hello else None)
        self.sessions.append(s)
        return s

    def raw(self, nobody=True):
        """A connection that says nothing."""
        return self.session(nobody=nobody, hello=False)

    def assert_root_served(self):
        with proto.Session(self.sock, "root") as s:
            self.assertEqual(s.request(proto.MESSAGE_LIST).status, proto.STATUS_OK)

    def wait_log(self, text, timeout=10):
        end = time.monotonic() + timeout
        while text not in self.broker.log():
            if time.monotonic() > end:
                self.fail(f"not in the broker's log: {text!r}\n{self.broker.log()}")
            time.sleep(0.05)

    # --- connections --------------------------------------------------------

    def test_connections_per_uid(self):
        """1,100 silent connections took all 1,024 slots; now a user gets connections-per-uid of them."""
        self.start("--max-connections-per-uid=8", "--hello-timeout-ms=60000")
        held = [self.raw() for _ in range(8)]
        over = [self.raw() for _ in range(4)]
        for s in over:
            self.assertTrue(s.closed(), "a connection over the user's limit stayed open")
        for s in held:
            self.assertFalse(s.closed(0.1), "a connection within the limit was closed")
        self.assert_root_served()
        self.wait_log("this user's connection limit (connections-per-uid) is reached")

    def test_hello_deadline(self):
        """A connection that never says Hello is closed after hello-timeout-ms; one that did is not."""
        self.start("--hello-timeout-ms=300")
        silent = self.raw()
        greeted = self.session(nobody=True)
        t = time.monotonic()
        self.assertTrue(silent.closed(5), "a connection without Hello stayed open")
        self.assertGreaterEqual(time.monotonic() - t, 0.25)
        time.sleep(0.3)
        self.assertEqual(greeted.request(proto.MESSAGE_LIST).status, proto.STATUS_OK)
        self.wait_log("no Hello within 300 ms")

    def test_admin_reserve(self):
        """The last admin-reserve connections are for root and the broker's user."""
        self.start("--max-connections=10", "--admin-reserve=3", "--max-connections-per-uid=100",
                   "--hello-timeout-ms=60000")
        # The launcher's Hello closed its connection, but the broker may not
        # have seen the hangup yet (users got 6 on a loaded machine). A round
        # trip on a root session settles that: the hangup was ready before the
        # session's accept. The session stays open and is counted.
        root = self.session("root")
        self.assertEqual(root.request(proto.MESSAGE_LIST).status, proto.STATUS_OK)
        users = [self.raw() for _ in range(10)]
        open_ = [s for s in users if not s.closed(0.3)]
        self.assertEqual(len(open_), 6, "a user got more than max-connections - admin-reserve - root's one")
        admins = [self.session("root") for _ in range(3)]
        for s in admins:
            self.assertEqual(s.request(proto.MESSAGE_LIST).status, proto.STATUS_OK)
        self.wait_log("are for administrators (admin-reserve)")

    def test_connections_per_vm(self):
        """A VM (here one process: no -uuid, so counted by its pid) gets connections-per-vm QEMU sockets."""
        self.start("--max-connections-per-vm=2", "--region", "r:64K")
        self.assertEqual(qemu_first_messages(os.path.join(self.rundir, "qemu", "r.sock"), 3),
                         [0, 0, 1000 + proto.STATUS_LIMIT])

    # --- memory and regions -------------------------------------------------

    def test_bytes_per_uid(self):
        """16 attaches of 1 GiB took the whole 16 GiB; now a user's regions hold at most bytes-per-uid."""
        self.start("--max-bytes-per-uid=4M", "--max-total-size=64M")
        # 1 MiB of data + the control page is a 2 MiB memfd: two fit, the third does not.
        for name, want in (("u1", proto.STATUS_OK), ("u2", proto.STATUS_OK), ("u3", proto.STATUS_LIMIT)):
            r = self.session(nobody=True).attach(name, 1 << 20)
            self.assertEqual(r.status, want, r)
        self.assertIn("bytes-per-uid", r.error)
        # Root's create is not held to it.
        self.assertEqual(self.session("root").attach("mine", 8 << 20).status, proto.STATUS_OK)

    def test_peers_per_uid(self):
        """One user could take every index of an open region: now peers-per-uid of them,
        and a VM (one QEMU process here) as many."""
        self.start("--max-peers-per-uid=2", "--region", "open:64K")
        replies = [self.session(nobody=True).attach("open") for _ in range(3)]
        self.assertEqual([r.status for r in replies], [proto.STATUS_OK, proto.STATUS_OK, proto.STATUS_LIMIT])
        self.assertIn("peers-per-uid", replies[2].error)
        self.assertEqual(self.session("root").attach("open").status, proto.STATUS_OK)
        self.assertEqual(qemu_first_messages(os.path.join(self.rundir, "qemu", "open.sock"), 3),
                         [0, 0, 1000 + proto.STATUS_LIMIT])

    def test_regions_per_uid(self):
        self.start("--max-regions-per-uid=2")
        for name, want in (("a", proto.STATUS_OK), ("b", proto.STATUS_OK), ("c", proto.STATUS_LIMIT)):
            self.assertEqual(self.session(nobody=True).attach(name, 4096).status, want)
        self.assertEqual(self.session("root").attach("d", 4096).status, proto.STATUS_OK)

    # --- queues ------------------------------------------------------------

    def test_total_queued_fds(self):
        """Peers that never read plus churn drove the broker to 19,016 of 20,000 fds, dropping
        receivers without a word. Now all queues together hold total-queued-fds; the one holding
        the most goes, with a log line, and a peer that reads stays. Churn alone fills no queue
        (a Joined whose Left is queued leaves the queue): peers that stay do."""
        self.start("--max-total-queued-fds=32", "--region", "q:64K")
        lazy = self.session("lazy", nobody=True)
        self.assertEqual(lazy.attach("q").status, proto.STATUS_OK)
        lazy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # stops reading: the broker queues
        reader = self.session("reader")
        self.assertEqual(reader.attach("q").status, proto.STATUS_OK)

        def read_all():
            reader.sock.settimeout(0.01)
            try:
                while reader.recv():
                    pass
            except (TimeoutError, socket.timeout):
                pass

        for i in range(200):  # fills lazy's socket; what the broker queues for it cancels out
            with proto.Session(self.sock, f"churn-{i}") as c:
                self.assertEqual(c.attach("q").status, proto.STATUS_OK)
            read_all()
        self.assertNotIn("Dropping 'lazy'", self.broker.log())
        stay = []
        for i in range(12):  # each one's Joined holds an fd in lazy's queue, with its attach reply's 20 and more
            stay.append(proto.Session(self.sock, f"stay-{i}"))
            self.assertEqual(stay[-1].attach("q").status, proto.STATUS_OK)
            read_all()
        self.wait_log("Dropping 'lazy'")
        self.assertIn("total-queued-fds", self.broker.log())
        self.assertTrue(lazy.closed(), "the peer that does not read is still attached")
        reader.sock.settimeout(5)
        _, info = reader.inspect("q")
        self.assertEqual(reader.inspect("q")[0].status, proto.STATUS_OK)
        self.assertNotIn(b"lazy", b"".join(v for v in info.values() if isinstance(v, bytes)))
        self.assert_root_served()
        for s in stay:
            s.close()

    # --- out of fds ---------------------------------------------------------

    def test_emfile_backs_off(self):
        """Under EMFILE accept() failed and the listening socket stayed readable: 94% CPU.
        Now the broker pauses accepting for a while, and takes the backlog once fds are free."""
        limit = "import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)); " \
                "os.execv(sys.argv[1], sys.argv[1:])"
        self.start("--hello-timeout-ms=60000", "--max-connections-per-uid=1000", preexec_fn=limit)
        held = []
        # Each connection costs the broker its socket and the fd store's copy: 64 fds run out soon.
        for _ in range(60):
            held.append(self.raw(nobody=False))
        self.wait_log("Cannot accept connections")
        before = cpu_seconds(self.broker.pid)
        time.sleep(2)
        spent = cpu_seconds(self.broker.pid) - before
        self.assertLess(spent, 0.5, f"the broker spent {spent:.2f} s of CPU in 2 s while out of fds")
        for s in held:
            s.close()
        self.sessions.clear()
        self.assert_root_served()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: test_limits.py BUILD_DIR")
    BUILD = sys.argv.pop(1)
    unittest.main(verbosity=2)
