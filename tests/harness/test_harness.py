# SPDX-License-Identifier: LGPL-2.1-or-later
"""The harness's own test: the hand-made Hello against the real broker, and a
launcher that waits through the bind-to-listen gap and reports a broker that
does not come up (with its log) instead of hanging.

Run: python3 test_harness.py BUILD_DIR   (ctest: integration-harness)
"""

import array
import os
import shutil
import socket
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
import harness  # noqa: E402
from harness import proto  # noqa: E402

BUILD = None

# A stand-in broker that binds its socket, waits, then listens and answers
# one Hello: the gap in which the socket file exists and connect() is refused.
# Stdlib only; the reply is Message{serial=1, reply{hello{version=1}}}.
BIND_THEN_LISTEN = r"""
import os, socket, sys, time
rundir = sys.argv[sys.argv.index("--rundir") + 1]
os.makedirs(rundir, exist_ok=True)
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind(os.path.join(rundir, "broker.sock"))
print("bound", flush=True)
time.sleep(float(sys.argv[1]))
print("listening", flush=True)
s.listen()
while True:
    c, _ = s.accept()
    if c.recv(65536):
        c.send(bytes.fromhex("0801f2010452020801"))
    c.close()
"""


class Proto(unittest.TestCase):
    """The encoder and decoder on their own."""

    def test_hello_bytes(self):
        # The bytes test_restart.py wrote by hand before: serial 1, hello{version 1}.
        self.assertEqual(proto.encode_hello(1), bytes([0x08, 0x01, 0x52, 0x02, 0x08, 0x01]))
        self.assertEqual(proto.encode_hello(300, "ab"), bytes.fromhex("08ac02" "5206" "0801" "12026162"))

    def test_varints(self):
        for n, wire in ((0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"),
                        ((1 << 64) - 1, "ffffffffffffffffff01")):
            self.assertEqual(proto.varint(n).hex(), wire)
            self.assertEqual(proto.fields(proto.field(1, n)), [(1, n)])
        self.assertRaises(ValueError, proto.varint, 1 << 64)
        self.assertRaises(ValueError, proto.varint, -1)

    def test_decode(self):
        hello = proto.field(1, 1) + proto.field(2, "shmem-brokerd 9") + proto.field(3, 1 << 40)
        data = proto.field(1, 7) + proto.field(30, proto.field(1, 11) + proto.field(2, "no") + proto.field(10, hello))
        self.assertEqual(proto.decode_reply(data), proto.Reply(7, 11, "no", 1, "shmem-brokerd 9", 1 << 40))
        # proto3 leaves out what is 0 or empty: an OK Reply can be empty.
        self.assertEqual(proto.decode_reply(bytes.fromhex("0801f20100")), proto.Reply(1, 0, "", 0, "", 0))
        self.assertRaises(ValueError, proto.decode_reply, proto.encode_hello(1))  # a request, not a Reply
        for cut in range(1, len(data)):
            with self.assertRaises(ValueError, msg=f"{data[:cut].hex()} parsed"):
                proto.decode_reply(data[:cut])


class Launcher(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="shmem-harness-")
        self.rundir = os.path.join(self.dir, "run")
        self.log = os.path.join(self.dir, "broker.log")
        self.brokerd = os.path.join(BUILD, "broker", "shmem-brokerd")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def broker(self, argv, timeout=harness.broker.READY_TIMEOUT):
        b = harness.Broker(argv, self.rundir, self.log, timeout=timeout)
        self.addCleanup(b.close)
        return b

    def test_hello_answered_by_the_real_broker(self):
        b = self.broker([self.brokerd, "--no-config"])
        self.assertEqual((b.hello.serial, b.hello.status, b.hello.version), (1, proto.STATUS_OK, 1))
        self.assertTrue(b.hello.broker.startswith("shmem-brokerd "), b.hello)
        self.assertNotEqual(b.hello.instance, 0)
        again = proto.hello(b.socket, "again")
        self.assertEqual((again.status, again.broker, again.instance), (0, b.hello.broker, b.hello.instance))
        # A status other than OK decodes too: the broker answers version 2 with VERSION.
        other = proto.hello(b.socket, version=2)
        self.assertEqual((other.status, other.error), (proto.STATUS_VERSION, "this broker speaks protocol version 1"))
        self.assertEqual(b.stop(), 0, b.log())

    def test_waits_through_bind_to_listen(self):
        start = time.monotonic()
        b = self.broker([sys.executable, "-c", BIND_THEN_LISTEN, "0.5"])
        # The socket file existed for 0.5 s before anyone listened: ready only after.
        self.assertGreaterEqual(time.monotonic() - start, 0.5)
        self.assertEqual(b.log(), "bound\nlistening\n")
        self.assertEqual((b.hello.status, b.hello.version), (0, 1))

    def test_never_listens(self):
        start = time.monotonic()
        with self.assertRaises(TimeoutError) as e:
            self.broker([sys.executable, "-c", BIND_THEN_LISTEN, "60"], timeout=1)
        self.assertLess(time.monotonic() - start, 10)
        self.assertIn("answered no Hello", str(e.exception))
        self.assertIn("Connection refused", str(e.exception))
        self.assertIn("bound\n", str(e.exception))  # the log

    def test_broker_exits_at_once(self):
        # A real broker on a configuration file that is not there: it says why and exits.
        start = time.monotonic()
        with self.assertRaises(RuntimeError) as e:
            self.broker([self.brokerd, "--config", os.path.join(self.dir, "missing.conf")], timeout=60)
        self.assertLess(time.monotonic() - start, 10, "waited for the deadline")
        self.assertIn("shmem-brokerd exited with 1 before it answered a Hello", str(e.exception))
        self.assertIn("missing.conf", str(e.exception))  # the log

    def test_rundir_is_the_launchers(self):
        with self.assertRaises(ValueError):
            harness.Broker([self.brokerd, "--rundir", "/elsewhere"], self.rundir, self.log)


class FakeSystemdStore(unittest.TestCase):
    """The fd store of tests/harness/fakesystemd.py."""

    def setUp(self):
        from harness.fakesystemd import FakeSystemd
        self.dir = tempfile.mkdtemp(prefix="shmem-harness-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.sd = FakeSystemd(self.dir)
        self.addCleanup(self.sd.close)

    def send(self, text, fds=()):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
            s.sendmsg([text.encode()], anc, 0, self.sd.path)

    def test_wait_stored_counts_what_is_queued(self):
        # e2e-restart killed the broker with an FDSTORE=1 still on the socket:
        # wait_stored saw the count it wanted, the restart got one fd more.
        # With the reader thread held off, the datagram is only queued.
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        with self.sd.lock:
            self.send("FDSTORE=1\nFDNAME=c/1", [r])
            with self.assertRaises(TimeoutError):
                self.sd.wait_stored("c/", 0, timeout=0.2)
            self.sd.wait_stored("c/", 1, timeout=0.2)
        self.send("FDSTOREREMOVE=1\nFDNAME=c/1")
        self.sd.wait_stored("c/", 0)

    def test_indexed_store_decides_as_the_scan(self):
        """indexed=True (bench-scale's) keeps what the scan keeps and counts the scan's compares."""
        from harness.fakesystemd import FakeSystemd
        os.mkdir(os.path.join(self.dir, "i"))
        indexed = FakeSystemd(os.path.join(self.dir, "i"), fds_max=5, indexed=True)
        self.addCleanup(indexed.close)
        e1, e2, f, g, r, w = os.eventfd(0), os.eventfd(0), os.eventfd(0), os.eventfd(0), *os.pipe()
        c, e = os.dup(e1), os.dup(w)
        for fd in (e1, e2, f, g, r, w, c, e):
            self.addCleanup(os.close, fd)
        # Eventfds share one anonymous inode and are open files of their own; a dup is the same file.
        steps = [("a", [e1]), ("b", [e2]), ("c", [c]), ("d", [r, w]), ("e", [e]), ("f", [f]), ("g", [g])]
        for sd, kept in ((self.sd, 6), (indexed, 5)):
            for name, fds in steps:
                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                    s.sendmsg([f"FDSTORE=1\nFDNAME={name}".encode()],
                              [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))], 0, sd.path)
            sd.wait_stored("", kept)
        self.assertEqual([n for n, _ in self.sd.store], ["a", "b", "d", "d", "f", "g"])
        self.assertEqual([n for n, _ in indexed.store], ["a", "b", "d", "d", "f"])  # full at 5: g dropped
        # The store's size for each fd that came: 0 1 2 2 3 4 4 5.
        self.assertEqual((self.sd.compares, indexed.compares), (21, 21))
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendmsg([b"FDSTOREREMOVE=1\nFDNAME=d"], [], 0, indexed.path)
        indexed.wait_stored("", 3)
        self.assertEqual(sum(len(v) for v in indexed.by_inode.values()), 3)

if __name__ == "__main__":
    BUILD = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "build")
    unittest.main(verbosity=2)
