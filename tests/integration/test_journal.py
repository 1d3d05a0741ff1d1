# SPDX-License-Identifier: LGPL-2.1-or-later
"""integration-journal: the broker's records over journald's native protocol
(broker/util/log.c, docs/systemd.md "The journal's fields").

The broker runs with $JOURNAL_STREAM naming its stderr (the log file's
dev:inode, as systemd sets it) in a mount namespace whose
/run/systemd/journal is a directory of the test's: its "socket" is a datagram
socket the test reads. No knob of the broker points it elsewhere. Each
datagram is parsed as journald does (FIELD=value lines, and the binary form
FIELD\\n<le64 length><value>\\n); the test checks the fields of the key
events, a VM name and a client label with a newline transported intact and
escaped in MESSAGE, and the fallback to "<N>" lines on stderr when the socket
is absent or stops taking records. Needs root (a mount namespace).

Run: python3 test_journal.py BUILD_DIR
"""

import os
import re
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
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir)
HOSTILE = "x\n<0>FORGED \x1b[2J"
HOSTILE_ESCAPED = r"x\x0a<0>FORGED \x1b[2J"
UUID = "0b2c9f4e-4d0a-4c55-9a43-5c1e1f0e7a11"
# A process that looks like a QEMU to the broker's identity (its -name and -uuid) and
# connects to the ivshmem socket argv[1], staying until its stdin closes.
FAKE_QEMU = ("import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
             "print('up', flush=True); sys.stdin.read()")
# In the namespace: a private /run, with the test's directory as /run/systemd/journal.
NAMESPACE = ('mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && '
             'mount --bind "$0" /run/systemd/journal && exec "$@"')


def message_ids():
    """{name: id} of broker/util/log-catalog.h."""
    with open(os.path.join(SOURCE, "broker", "util", "log-catalog.h")) as f:
        return dict(re.findall(r'#define LOG_MID_(\w+) "([0-9a-f]{32})"', f.read()))


def parse_record(data):
    """A native-protocol datagram as {field: bytes}."""
    fields, pos = {}, 0
    while pos < len(data):
        nl = data.index(b"\n", pos)
        line = data[pos:nl]
        if b"=" in line:
            name, value = line.split(b"=", 1)
            pos = nl + 1
        else:
            name = line
            (n,) = struct.unpack_from("<Q", data, nl + 1)
            value = data[nl + 9:nl + 9 + n]
            if data[nl + 9 + n:nl + 10 + n] != b"\n":
                raise ValueError(f"binary field {name!r} not ended by a newline: {data!r}")
            pos = nl + 10 + n
        fields[name.decode()] = value
    return fields


class Journal(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.fail("needs root: the broker runs in a mount namespace with the test's journal socket")
        if not shutil.which("unshare"):
            self.fail("needs unshare(1) (util-linux)")
        self.ids = message_ids()
        self.dir = tempfile.mkdtemp(prefix="shmem-journal-")
        self.jdir = os.path.join(self.dir, "journal")
        os.mkdir(self.jdir)
        self.jsock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.jsock.bind(os.path.join(self.jdir, "socket"))
        self.jsock.settimeout(5)
        self.log_path = os.path.join(self.dir, "broker.log")
        open(self.log_path, "w").close()
        self.rundir = os.path.join(self.dir, "run")
        self.broker = None
        self.records = []

    def tearDown(self):
        if self.broker:
            self.broker.close()
        self.jsock.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, *options, stream=None):
        st = os.stat(self.log_path)
        env = dict(os.environ, JOURNAL_STREAM=stream or f"{st.st_dev}:{st.st_ino}")
        argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", NAMESPACE, self.jdir,
                os.path.join(BUILD, "broker", "shmem-brokerd"), "--no-config", *options]
        self.broker = harness.Broker(argv, self.rundir, self.log_path, env=env)
        self.sock = self.broker.socket

    def record(self, message_id, timeout=5):
        """The next record with MESSAGE_ID @message_id (a LOG_MID_ name); the others read are kept."""
        want = self.ids[message_id].encode()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for r in self.records:
                if r.get("MESSAGE_ID") == want:
                    self.records.remove(r)
                    return r
            try:
                self.records.append(parse_record(self.jsock.recv(65536)))
            except socket.timeout:
                break
        self.fail(f"no record {message_id} within {timeout} s; read: {self.records}\nstderr:\n{self.broker.log()}")

    def test_key_events_carry_their_fields(self):
        self.start("--region", "lim:64K:peers=1")
        ready = self.record("BROKER_STARTED")
        self.assertEqual(ready["PRIORITY"], b"6")
        self.assertEqual(ready["SYSLOG_IDENTIFIER"], b"shmem-brokerd")
        self.assertTrue(ready["CODE_FILE"].endswith(b"broker/broker.c"), ready)
        self.assertEqual(ready["CODE_FUNC"], b"broker_run")
        self.assertRegex(ready["CODE_LINE"].decode(), r"^[1-9][0-9]*$")
        self.assertRegex(ready["MESSAGE"].decode(), r"^Ready: 1 regions, control socket '.*broker\.sock'$")

        with proto.Session(self.sock, HOSTILE) as s:
            self.assertEqual(s.create("made", 4096).status, proto.STATUS_OK)
            r = self.record("REGION_CREATED")
            self.assertEqual((r["REGION"], r["PEER_PID"], r["PEER_UID"], r["PEER_LABEL"]),
                             (b"made", str(os.getpid()).encode(), b"0", HOSTILE.encode()))
            self.assertEqual(s.attach("byattach", 4096).status, proto.STATUS_OK)
            r = self.record("REGION_CREATED")
            self.assertEqual(r["REGION"], b"byattach")
            self.assertEqual(r["PEER_LABEL"], HOSTILE.encode(), "the label not transported intact")
            self.assertEqual(r["MESSAGE"].decode(), f"Region 'byattach' created by client '{HOSTILE_ESCAPED}' "
                             f"(pid {os.getpid()}, uid 0) attaching")
            self.assertEqual(s.destroy("made").status, proto.STATUS_OK)
            r = self.record("REGION_DESTROYED")
            self.assertEqual((r["REGION"], r["PEER_UID"]), (b"made", b"0"))

        # A VM (a process with QEMU's -name and -uuid) takes the one peer of 'lim'; a client is refused.
        vm = subprocess.Popen([sys.executable, "-c", FAKE_QEMU, self.broker.qemu_socket("lim"),
                               "-name", "vm\nj,debug-threads=on", "-uuid", UUID],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            self.assertEqual(vm.stdout.readline(), b"up\n")
            r = self.record("PEER_ATTACHED")
            self.assertEqual((r["REGION"], r["PEER_INDEX"], r["PEER_PID"], r["VM_NAME"], r["VM_UUID"]),
                             (b"lim", b"0", str(vm.pid).encode(), b"vm\nj", UUID.encode()))
            self.assertNotIn("PEER_LABEL", r)
            self.assertIn(r"QEMU 'vm\x0aj'", r["MESSAGE"].decode())
            with proto.Session(self.sock, HOSTILE) as s:
                self.assertEqual(s.attach("lim", 0, proto.ATTACH_FIND).status, proto.STATUS_CLIENT_MAX)
            r = self.record("LIMIT_REFUSED")
            self.assertEqual((r["REGION"], r["PEER_LABEL"], r["PRIORITY"]), (b"lim", HOSTILE.encode(), b"6"))
            self.assertIn(f"Refusing client '{HOSTILE_ESCAPED}'", r["MESSAGE"].decode())
        finally:
            vm.stdin.close()
            vm.wait(10)
            vm.stdout.close()
        r = self.record("PEER_DETACHED")
        self.assertEqual((r["REGION"], r["PEER_INDEX"], r["VM_NAME"]), (b"lim", b"0", b"vm\nj"))

        self.assertEqual(self.broker.stop(), 0)
        for r in self.records:
            self.assertNotIn(b"\x1b", r["MESSAGE"], f"an unescaped peer string in MESSAGE: {r}")
        self.assertNotIn("Ready", self.broker.log(), "a record went to stderr too")

    def test_catalogue_describes_every_id(self):
        with open(os.path.join(SOURCE, "systemd", "shmem-broker.catalog")) as f:
            catalogue = re.findall(r"(?m)^-- ([0-9a-f]{32})$", f.read())
        with open(os.path.join(SOURCE, "docs", "systemd.md")) as f:
            doc = f.read()
        self.assertEqual(len(self.ids), 9)
        self.assertEqual(sorted(catalogue), sorted(self.ids.values()))
        for name, mid in self.ids.items():
            self.assertIn(mid, doc, f"docs/systemd.md does not list {name}")

    def test_falls_back_to_stderr_when_the_socket_is_gone(self):
        self.start()
        self.record("BROKER_STARTED")
        self.jsock.close()
        os.unlink(os.path.join(self.jdir, "socket"))
        with proto.Session(self.sock, HOSTILE) as s:
            self.assertEqual(s.create("later", 4096).status, proto.STATUS_OK)
        self.assertEqual(self.broker.stop(), 0)
        log = self.broker.log()
        self.assertIn("<6>Region 'later' created by uid 0", log)
        self.assertNotIn("Ready", log, "the record journald took went to stderr too")
        for line in log.splitlines():
            self.assertRegex(line, r"^<[0-7]>", f"a line that is not one record: {line!r}")

    def test_without_the_socket_lines_go_to_stderr(self):
        os.unlink(os.path.join(self.jdir, "socket"))
        self.start()
        with proto.Session(self.sock, HOSTILE) as s:
            self.assertEqual(s.attach("made", 4096).status, proto.STATUS_OK)
        self.assertEqual(self.broker.stop(), 0)
        log = self.broker.log()
        self.assertRegex(log, r"(?m)^<6>Ready: 0 regions")
        self.assertIn(f"<6>Region 'made' created by client '{HOSTILE_ESCAPED}'", log)
        for line in log.splitlines():  # the label's "\n<0>" forged no priority-0 record
            self.assertRegex(line, r"^<[1-7]>", f"a line that is not one record: {line!r}")
            self.assertNotIn("\x1b", line)

    def test_a_journal_stream_that_is_not_stderr_is_not_the_journal(self):
        """$JOURNAL_STREAM inherited by a broker whose stderr was redirected: plain lines, no datagrams."""
        self.start(stream="8:1234")
        self.assertRegex(self.broker.log(), r"(?m)^shmem-brokerd: Ready: 0 regions")
        self.jsock.settimeout(0.5)
        with self.assertRaises(socket.timeout):
            self.jsock.recv(65536)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: test_journal.py BUILD_DIR")
    BUILD = sys.argv.pop(1)
    unittest.main(verbosity=2)
