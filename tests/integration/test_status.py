# SPDX-License-Identifier: LGPL-2.1-or-later
"""shmemctl status against the real broker: the limits in force and their use,
in total and per user (docs/protocol.md, "Status"; shmemctl(1)).

Regions are created by two users who are not administrators (uids 65534 and
65533, through raw connections made with those effective uids: the broker
reads them from SO_PEERCRED) and by root; the figures must follow. The limits
come from a configuration file, a drop-in and the command line. A user who is
not root sees the totals and its own row only. Needs root (to be the three).

Run: python3 test_status.py BUILD_DIR
"""

import contextlib
import json
import os
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
import harness  # noqa: E402
from harness import proto  # noqa: E402

BUILD = None
NOBODY = 65534
OTHER = 65533  # a second user who is neither root nor the broker's
MIB = 1 << 20
MESSAGE_BROKER_STATUS = 21  # proto/shmem.proto Message.broker_status
STATUS_LIMIT, STATUS_AFTER = 1, 2  # BrokerStatus
REPLY_BROKER_STATUS, STATUS_HOLDERS, STATUS_NEXT = 15, 12, 14  # Reply.broker_status, BrokerStatusReply


@contextlib.contextmanager
def as_user(uid):
    """Connections made inside carry @uid (SO_PEERCRED takes the effective ids at connect())."""
    os.setegid(uid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


class Status(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.fail("needs root: the test plays uids 65534 and 65533 and root against one broker")
        self.dir = tempfile.mkdtemp(prefix="shmem-status-")
        os.chmod(self.dir, 0o755)  # the other users must reach the socket
        self.rundir = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.rundir, "broker.sock")
        self.conf = os.path.join(self.dir, "broker.conf")
        with open(self.conf, "w") as f:
            f.write("[limits]\nregions = 50\nregions-per-uid = 5\nbytes-per-uid = 8M\n")
        os.mkdir(os.path.join(self.dir, "conf.d"))
        self.dropin = os.path.join(self.dir, "conf.d", "10-conn.conf")
        with open(self.dropin, "w") as f:
            f.write("[limits]\nconnections-per-uid = 20\n")
        self.sessions = []
        self.broker = harness.Broker([os.path.join(BUILD, "broker", "shmem-brokerd"), "-c", self.conf,
                                      "--max-connections-per-vm=9"],
                                     self.rundir, os.path.join(self.dir, "broker.log"))

    def tearDown(self):
        for s in self.sessions:
            s.close()
        self.broker.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def attach(self, uid, name, size):
        """@uid attaches to (creating) @name; the connection holds it until the test ends."""
        if uid:
            with as_user(uid):
                s = proto.Session(self.sock, f"u{uid}")
        else:
            s = proto.Session(self.sock, "root")
        self.sessions.append(s)
        r = s.attach(name, size)
        self.assertEqual(r.status, proto.STATUS_OK, r)
        return s

    def ctl(self, *args, user=None):
        kw = dict(user=user, group=user, extra_groups=[]) if user is not None else {}
        out = subprocess.run([os.path.join(BUILD, "clients", "shmemctl", "shmemctl"), "--socket", self.sock,
                              *args], capture_output=True, text=True, timeout=30, **kw)
        self.assertEqual(out.returncode, 0, f"shmemctl {' '.join(args)}: {out.stderr}")
        return out.stdout

    def status(self, user=None):
        return json.loads(self.ctl("--json", "status", user=user))

    @staticmethod
    def row(status, uid):
        rows = [h for h in status["holders"] if h["uid"] == uid]
        return rows[0] if rows else None

    def test_limits_are_the_configuration(self):
        """Each limit as the file, its drop-in and the command line set it; the defaults otherwise."""
        s = self.status()
        self.assertEqual(s["config_files"], [self.conf, self.dropin])
        lim = s["limits"]
        self.assertEqual((lim["regions"], lim["regions_per_uid"], lim["bytes_per_uid"]), (50, 5, 8 * MIB))
        self.assertEqual(lim["connections_per_uid"], 20)
        self.assertEqual(lim["connections_per_vm"], 9)
        self.assertEqual(lim["connections"], 1024)  # the default (core/resource-limits.h)
        self.assertEqual(s["pid"], self.broker.pid)
        version = subprocess.run([os.path.join(BUILD, "broker", "shmem-brokerd"), "--version"],
                                 capture_output=True, text=True, check=True).stdout.split()[-1]
        self.assertEqual(s["version"], version)
        self.assertFalse(s["managed"])
        self.assertIsNone(s["refusing"])
        self.assertGreater(s["uptime_usec"], 0)

    def test_use_follows_two_users_and_root(self):
        """Regions, bytes, peers and connections per user and in total, as regions come and go."""
        before = self.status()
        self.assertEqual(before["total"]["regions"], 0)
        self.assertIsNone(self.row(before, NOBODY))

        # 1 MiB of data + the control page: a 2 MiB memfd each.
        a1 = self.attach(NOBODY, "a1", MIB)
        self.attach(NOBODY, "a2", MIB)
        self.attach(NOBODY, "a1", 0)   # a second index of a1: a peer and a connection, no region
        self.attach(OTHER, "b1", 3 * MIB)
        self.attach(0, "r1", MIB)      # root's: in the totals, nobody's account

        s = self.status()
        self.assertTrue(s["all_holders"])
        self.assertEqual(s["total"]["regions"], 4)
        self.assertEqual(s["total"]["bytes"], 2 * MIB + 2 * MIB + 4 * MIB + 2 * MIB)
        self.assertEqual(s["total"]["peers"], 5)
        nobody, other, root = self.row(s, NOBODY), self.row(s, OTHER), self.row(s, 0)
        self.assertEqual((nobody["regions"], nobody["bytes"], nobody["peers"], nobody["connections"]),
                         (2, 4 * MIB, 3, 3))
        self.assertFalse(nobody["exempt"])
        self.assertEqual((other["regions"], other["bytes"], other["peers"], other["connections"]),
                         (1, 4 * MIB, 1, 1))
        # Root's region is charged to nobody; its connections (the session, shmemctl's own) count.
        self.assertTrue(root["exempt"])
        self.assertEqual((root["regions"], root["bytes"], root["peers"]), (0, 0, 1))
        self.assertGreaterEqual(root["connections"], 2)
        self.assertEqual(s["total"]["connections"], 3 + 1 + root["connections"])

        # a1's creator leaves, its other peer stays: the region and its bytes stay nobody's.
        a1.close()
        self.sessions.remove(a1)
        proto.Session(self.sock, "sync").close()  # the broker has seen the hangup: it came before
        s = self.status()
        nobody = self.row(s, NOBODY)
        self.assertEqual((nobody["regions"], nobody["peers"]), (2, 2))

    def test_a_user_sees_its_own_row_only(self):
        """uid 65534 gets the totals and its row; not 65533's, not root's; root gets all three."""
        self.attach(NOBODY, "a1", MIB)
        self.attach(OTHER, "b1", MIB)
        self.attach(0, "r1", MIB)
        s = self.status(user=NOBODY)
        self.assertFalse(s["all_holders"])
        self.assertEqual([h["holder"] for h in s["holders"]], [f"uid:{NOBODY}"])
        self.assertEqual(s["total"]["regions"], 3)
        self.assertEqual(self.row(s, NOBODY)["regions"], 1)
        text = self.ctl("status", user=NOBODY)
        self.assertIn(f"uid {NOBODY}", text)
        self.assertNotIn(f"uid {OTHER}", text)
        self.assertNotIn("uid 0 ", text)
        self.assertIn("your uid only", text)
        # A user with nothing still gets its row, with its limits.
        s = self.status(user=65532)
        self.assertEqual([(h["uid"], h["regions"], h["connections"]) for h in s["holders"]], [(65532, 0, 1)])
        s = self.status()
        self.assertEqual(sorted(h["uid"] for h in s["holders"]), [0, OTHER, NOBODY])

    def test_a_vm_row(self):
        """A QEMU connection (here this process on a region's QEMU socket: no -uuid, so the VM is
        its pid) is a row of its own, vm:pid:N, counted against connections-per-vm; root sees it,
        a user does not."""
        self.ctl("create", "q", "64K")
        q = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.addCleanup(q.close)
        q.settimeout(5)
        q.connect(os.path.join(self.rundir, "qemu", "q.sock"))
        self.assertEqual(struct.unpack("<q", q.recv(8, socket.MSG_WAITALL))[0], 0)  # admitted
        s = self.status()
        vm = [h for h in s["holders"] if h["holder"] == f"vm:pid:{os.getpid()}"]
        self.assertEqual(len(vm), 1, s["holders"])
        self.assertEqual((vm[0]["uid"], vm[0]["exempt"], vm[0]["peers"], vm[0]["connections"]), (None, False, 1, 1))
        self.assertEqual(s["holders"][-1], vm[0])  # users first, then VMs
        self.assertIn(f"vm pid {os.getpid()}", self.ctl("status"))
        self.assertEqual([h["holder"] for h in self.status(user=NOBODY)["holders"]], [f"uid:{NOBODY}"])

    def test_text(self):
        """The text form: the files, each limit with its use, the per-user table with the limits."""
        self.attach(NOBODY, "a1", MIB)
        text = self.ctl("status")
        self.assertIn(f"pid {self.broker.pid}", text)
        self.assertIn(self.conf, text)
        self.assertIn(self.dropin, text)
        lines = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}
        self.assertEqual(lines["regions"], ["1", "50"])
        self.assertEqual(lines["total-bytes"], ["2M", "16G"])
        self.assertEqual(lines["regions-per-uid"], ["-", "5"])
        row = [line for line in text.splitlines() if line.startswith(f"uid {NOBODY}")]
        self.assertEqual(len(row), 1, text)
        self.assertEqual(row[0].split()[-5:], ["1/5", "2M/8M", "1", "1/20", "no"])  # ... ADMIN
        # Both tables are libsmartcols' (clients/shmemctl/table.h): one-word headers.
        self.assertIn(["LIMIT", "USED", "MAX"], [line.split() for line in text.splitlines()])
        self.assertIn(["USER", "REGIONS", "BYTES", "PEERS", "CONNECTIONS", "ADMIN"],
                      [line.split() for line in text.splitlines()])

    def test_reload_changes_the_limits_and_the_files(self):
        """After a reload the limits and the file list are the new ones; a refused reload keeps both."""
        os.unlink(self.dropin)
        with open(self.conf, "a") as f:
            f.write("peers = 8\n")
        self.ctl("reload")
        s = self.status()
        self.assertEqual(s["config_files"], [self.conf])
        self.assertEqual(s["limits"]["peers"], 8)
        self.assertEqual(s["limits"]["connections_per_uid"], 128)
        with open(self.conf, "a") as f:
            f.write("this is not ini\n")
        out = subprocess.run([os.path.join(BUILD, "clients", "shmemctl", "shmemctl"), "--socket", self.sock,
                              "reload"], capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 1, out.stderr)
        s = self.status()
        self.assertEqual(s["config_files"], [self.conf])
        self.assertEqual(s["limits"]["peers"], 8)


class StatusOverOneMessage(unittest.TestCase):
    """A BrokerStatus larger than one message (it has no pages: here 300
    drop-ins of long names) is answered LIMIT with its size, not left
    unanswered; the connection and the broker go on."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="shmem-status-big-")
        self.rundir = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.rundir, "broker.sock")
        conf = os.path.join(self.dir, "broker.conf")
        with open(conf, "w") as f:
            f.write("[limits]\nregions = 50\n")
        os.mkdir(os.path.join(self.dir, "conf.d"))
        for i in range(300):
            with open(os.path.join(self.dir, "conf.d", f"{i:03d}-{'x' * 230}.conf"), "w") as f:
                f.write("[limits]\n")
        self.broker = harness.Broker([os.path.join(BUILD, "broker", "shmem-brokerd"), "-c", conf],
                                     self.rundir, os.path.join(self.dir, "broker.log"))

    def tearDown(self):
        self.broker.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_a_status_over_one_message_is_refused_with_its_size(self):
        with proto.Session(self.sock, "big") as s:
            # Its holders page, its configuration files do not: BrokerStatus says so.
            r = s.request(MESSAGE_BROKER_STATUS)
            self.assertEqual(r.status, proto.STATUS_LIMIT, r)
            self.assertRegex(r.error, r"^the broker's status is \d{5,} bytes without its holders, more than one "
                                      r"message holds$")
            self.assertGreater(int(r.error.split()[4]), proto.MSG_MAX)
            # A page after the last holder has none to leave out: any reply too large is LIMIT with its size.
            r = s.request(MESSAGE_BROKER_STATUS, proto.field(STATUS_AFTER, "uid:0"))
            self.assertEqual(r.status, proto.STATUS_LIMIT, r)
            self.assertRegex(r.error, r"^the reply would be \d{5,} bytes and 0 fds, more than one message "
                                      r"holds \(65536, 160\)$")
            self.assertGreater(int(r.error.split()[4]), proto.MSG_MAX)
            self.assertEqual(s.create("after").status, proto.STATUS_OK)
        out = subprocess.run([os.path.join(BUILD, "clients", "shmemctl", "shmemctl"), "--socket", self.sock,
                              "status"], capture_output=True, text=True, timeout=30)
        self.assertNotEqual(out.returncode, 0, out.stdout)
        self.assertIn("more than one message holds", out.stderr)
        self.assertEqual(self.broker.log().count("LIMIT: the reply would be "), 1, self.broker.log())


class StatusInPages(unittest.TestCase):
    """3,300 users with a connection each: their rows are more than one message
    holds (some 2,900 of these): BrokerStatus pages them, shmemctl status
    follows the pages, a client before paging gets LIMIT saying why."""

    USERS = 3300
    FIRST_UID = 100000

    def setUp(self):
        if os.geteuid() != 0:
            self.fail("needs root: the test connects as 3,300 uids")
        need = 2 * self.USERS + 1000
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < need:
            try:  # the broker inherits it
                resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
            except (ValueError, OSError) as e:
                self.fail(f"{self.USERS} connections need an RLIMIT_NOFILE of {need}, not {soft}/{hard} ({e})")
        self.dir = tempfile.mkdtemp(prefix="shmem-status-pages-")
        os.chmod(self.dir, 0o755)  # the other users must reach the socket
        self.rundir = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.rundir, "broker.sock")
        self.sessions = []
        self.broker = harness.Broker([os.path.join(BUILD, "broker", "shmem-brokerd"), "--no-config",
                                      "--max-connections", str(self.USERS + 100)],
                                     self.rundir, os.path.join(self.dir, "broker.log"))

    def tearDown(self):
        for s in self.sessions:
            s.close()
        self.broker.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_holders_over_one_message_listed_whole(self):
        uids = [self.FIRST_UID + i for i in range(self.USERS)]
        for uid in uids:
            with as_user(uid):
                self.sessions.append(proto.Session(self.sock, "u"))
        with proto.Session(self.sock, "pager") as s:
            holders, sizes, after = [], [], ""
            while True:
                r = s.request(MESSAGE_BROKER_STATUS, proto.field(STATUS_LIMIT, 100000) +
                              proto.field(STATUS_AFTER, after))
                self.assertEqual(r.status, proto.STATUS_OK, r.error)
                sizes.append(len(s.last))
                body = proto.fields(proto._last(proto.reply_fields(s.last), REPLY_BROKER_STATUS, b""))
                holders += [proto._last(proto.fields(v), 1, b"").decode() for n, v in body if n == STATUS_HOLDERS]
                after = proto._last(body, STATUS_NEXT, b"").decode()
                if not after:
                    break
            self.assertTrue(all(n <= proto.MSG_MAX for n in sizes), sizes)
            self.assertGreater(sum(sizes), proto.MSG_MAX)
            self.assertEqual(holders, ["uid:0"] + [f"uid:{uid}" for uid in uids])
            # A client before paging: LIMIT with the reason; the connection goes on.
            r = s.request(MESSAGE_BROKER_STATUS)
            self.assertEqual(r.status, proto.STATUS_LIMIT)
            self.assertEqual(r.error, f"{self.USERS + 1} holders do not fit in one message: ask in pages "
                                      "(BrokerStatus.limit)")
            self.assertEqual(s.create("after").status, proto.STATUS_OK)
        out = subprocess.run([os.path.join(BUILD, "clients", "shmemctl", "shmemctl"), "--socket", self.sock,
                              "--json", "status"], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        got = [h["holder"] for h in json.loads(out.stdout)["holders"]]
        self.assertEqual(got, ["uid:0"] + [f"uid:{uid}" for uid in uids])

def main():
    global BUILD
    if len(sys.argv) < 2:
        sys.exit("usage: test_status.py BUILD_DIR")
    BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)


if __name__ == "__main__":
    main()
