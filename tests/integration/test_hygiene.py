# SPDX-License-Identifier: LGPL-2.1-or-later
"""Input hygiene: what a peer chooses is checked where it takes effect and
escaped wherever it is printed (docs/security.md).

The real broker, driven through raw connections (harness.proto.Session) for
the requests no well-behaved client sends, and shmem-peer as uid 65534 where
an unprivileged squatter is needed. Needs root.

Run: python3 test_hygiene.py BUILD_DIR
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
import harness  # noqa: E402
from harness import HostPeer, proto  # noqa: E402

BUILD = None
NOBODY = 65534
REGION_INFO_DATA_SIZE, REGION_INFO_DECLARED_SIZE = 2, 17


class Hygiene(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.fail("needs root: the squatter runs as uid 65534")
        self.dir = tempfile.mkdtemp(prefix="shmem-hygiene-")
        os.chmod(self.dir, 0o755)
        self.rundir = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.rundir, "broker.sock")
        self.conf = os.path.join(self.dir, "broker.conf")
        self.peer_bin = os.path.join(BUILD, "clients", "tool", "shmem-peer")
        self.broker = None
        self.peers = []

    def tearDown(self):
        for p in self.peers:
            p.close()
        if self.broker:
            self.broker.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, config=None, env=None, *options):
        if config is not None:
            with open(self.conf, "w") as f:
                f.write(config)
        argv = [os.path.join(BUILD, "broker", "shmem-brokerd"),
                *(["--config", self.conf] if config is not None else ["--no-config"]), *options]
        self.broker = harness.Broker(argv, self.rundir, os.path.join(self.dir, "broker.log"), env=env)

    def reload(self, config):
        with open(self.conf, "w") as f:
            f.write(config)
        with proto.Session(self.sock, "root") as s:
            r = s.request(18)  # Reload
        self.assertEqual(r.status, proto.STATUS_OK, r.error)

    def peer(self, region, script, label, **popen):
        p = HostPeer(self.peer_bin, self.sock, region, script, label, self.dir, options=("--size", "64K"), **popen)
        self.peers.append(p)
        return p

    # --- names ----------------------------------------------------------------

    def test_name_with_a_nul_byte(self):
        """"a\\0b" attached region "a": the C string ended at the NUL. Now ILLEGAL_NAME, and nothing is made."""
        self.start()
        with proto.Session(self.sock, "t") as s:
            for name in (b"a\0b", b"a\0", b"\xff\xfe", b"caf\xc3"):
                r = s.attach(name, 4096)
                self.assertEqual(r.status, proto.STATUS_ILLEGAL_NAME, (name, r))
                self.assertIn("NUL byte or is not UTF-8", r.error)
            self.assertEqual(s.inspect("a")[0].status, proto.STATUS_DOES_NOT_EXIST)
            # Still connected and served.
            self.assertEqual(s.attach("a", 4096).status, proto.STATUS_OK)
        with proto.Session(self.sock, "root") as s:
            self.assertEqual(s.request(proto.MESSAGE_CREATE, proto.field(1, b"x\0y") + proto.field(2, 4096)).status,
                             proto.STATUS_ILLEGAL_NAME)
            self.assertEqual(s.inspect(b"x\0y")[0].status, proto.STATUS_ILLEGAL_NAME)

    def test_requests_out_of_place(self):
        """What a well-behaved client never sends: refused, or the client dropped, others unharmed."""
        self.start(None, None, "--region", "r:64K")
        with proto.Session(self.sock, "bystander") as bystander:
            self.assertEqual(bystander.attach("r").status, proto.STATUS_OK)
            # Serial 0 is the broker's (events): a request with it drops the client.
            with proto.Session(self.sock, "t") as s:
                s.send(proto.encode_request(0, proto.MESSAGE_LIST))
                self.assertTrue(s.closed())
            # A second Hello drops the client.
            with proto.Session(self.sock, "t") as s:
                s.send(proto.encode_hello(7, "again"))
                self.assertTrue(s.closed())
            with proto.Session(self.sock, "t") as s:
                # Two attachments on one connection: refused, the first stays.
                self.assertEqual(s.attach("r").status, proto.STATUS_OK)
                r = s.attach("r")
                self.assertEqual(r.status, proto.STATUS_BAD_REQUEST)
                self.assertIn("attached already", r.error)
                # Detach of a region it is not attached to.
                r = s.request(proto.MESSAGE_DETACH, proto.field(1, "other"))
                self.assertEqual(r.status, proto.STATUS_BAD_REQUEST)
                self.assertIn("not attached to that region", r.error)
            with proto.Session(self.sock, "t") as s:
                # An attach mode the protocol does not have.
                r = s.attach("r", 0, 7)
                self.assertEqual(r.status, proto.STATUS_BAD_REQUEST)
                self.assertIn("unknown attach mode", r.error)
                # Still served after each refusal.
                self.assertEqual(s.request(proto.MESSAGE_LIST).status, proto.STATUS_OK)
            # The bystander's attachment went through all of it.
            _, info = bystander.inspect("r")
            self.assertIn(13, info)
            self.assertEqual(bystander.request(proto.MESSAGE_LIST).status, proto.STATUS_OK)

    def test_label_with_a_nul_byte_is_refused(self):
        self.start()
        s = proto.Session(self.sock, None)
        s.serial = 1
        s.send(proto.field(proto.MESSAGE_SERIAL, 1) +
               proto.field(proto.MESSAGE_HELLO, proto.field(1, 1) + proto.field(2, b"ok\0forged")))
        self.assertEqual(s.reply().status, proto.STATUS_BAD_REQUEST)
        self.assertTrue(s.closed(), "a Hello that was refused left the connection open")
        s.close()

    def test_long_name_without_subst(self):
        """A 64-character name was refused with a message about a subst prefix nobody configured."""
        self.start()
        with proto.Session(self.sock, "t") as s:
            r = s.attach("n" * 64, 4096)
        self.assertEqual(r.status, proto.STATUS_ILLEGAL_NAME)
        self.assertIn("names are 1-63", r.error)
        self.assertNotIn("subst", r.error)

    def test_name_too_long_with_its_subst_prefix(self):
        """A name that fits alone but not with the client's subst prefix: ILLEGAL_NAME saying so."""
        self.start("[client prefixed]\nsubst = tenant-a-\n")
        with proto.Session(self.sock, "prefixed") as s:
            r = s.attach("n" * 60, 4096)
            self.assertEqual(r.status, proto.STATUS_ILLEGAL_NAME)
            self.assertIn("subst prefix", r.error)
            self.assertEqual(s.attach("short", 4096).status, proto.STATUS_OK)
            with proto.Session(self.sock, "root") as root:
                self.assertEqual(root.inspect("tenant-a-short")[0].status, proto.STATUS_OK)

    def test_compat_region_checked_on_the_final_name(self):
        """The "compat regions are for QEMU guests" check ran before subst: a client with a
        subst prefix got a host peer into compat region p-legacy."""
        self.start("[region p-legacy]\nsize = 64K\nsignal-mode = ivshmem\n\n"
                   "[client legacy-app]\nsubst = p-\n")
        with proto.Session(self.sock, "legacy-app") as s:
            r = s.attach("legacy")
        self.assertEqual(r.status, proto.STATUS_BAD_REQUEST, r)
        self.assertIn("compat region", r.error)
        with proto.Session(self.sock, "root") as s:
            _, info = s.inspect("p-legacy")
        self.assertNotIn(13, info, "a host peer is attached to the compat region")

    # --- what is printed ------------------------------------------------------

    def test_log_escapes_peer_strings(self):
        """A Hello label "x\\n<0>FORGED" wrote a priority-0 journal record."""
        # Plain stderr here; integration-journal checks the "<N>" lines and the journal's records.
        self.start(None, {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"})
        with proto.Session(self.sock, "x\n<0>FORGED \x1b[2J") as s:
            self.assertEqual(s.attach("nosuch", 0, proto.ATTACH_FIND).status, proto.STATUS_DOES_NOT_EXIST)
        self.broker.send_signal(signal.SIGTERM)
        self.broker.wait(10)
        log = self.broker.log()
        self.assertIn(r"x\x0a<0>FORGED \x1b[2J", log)
        for line in log.splitlines():
            self.assertRegex(line, r"^shmem-brokerd: ", f"a log line that is not one record: {line!r}")
            self.assertNotIn("\x1b", line)

    def test_shmemctl_escapes_peer_labels(self):
        """A host peer's label with an escape sequence and a newline cleared the screen and added a
        fake row to `shmemctl inspect`'s table."""
        self.start(None, None, "--region", "shown:64K")
        with proto.Session(self.sock, "ok\x1b[2J\n9     host fake") as s:
            self.assertEqual(s.attach("shown").status, proto.STATUS_OK)
            out = subprocess.run([os.path.join(BUILD, "clients", "shmemctl", "shmemctl"), "--socket", self.sock,
                                  "inspect", "shown"], capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertNotIn("\x1b", out.stdout)
        rows = [line for line in out.stdout.splitlines() if re.match(r"^ *\d+ ", line)]  # INDEX right-aligned
        self.assertEqual(len(rows), 1, out.stdout)
        self.assertIn(r"ok\x1b[2J\x0a9     host fake", rows[0])

    # --- declarations after the fact ----------------------------------------

    def test_declaration_evicts_a_squatter(self):
        """uid 65534 created `later` and stayed; root declared it owner=root mode=0600 and reloaded;
        root's peer wrote into it and the squatter read it. Now the reload evicts the squatter and
        releases the memory it maps: what root writes next is in memory the squatter never had."""
        self.start("")
        squatter = self.peer("later", "info write 0 squat sleep 3000 read 0 6", "squatter",
                             user=NOBODY, group=NOBODY)
        squatter.wait_output("info index=0")
        self.reload("[region later]\nsize = 64K\nowner = root\nmode = 0600\n")
        self.assertRegex(self.broker.log(), r"Region 'later': the new configuration refuses its peer 0 'squatter' "
                                            r"\(pid \d+, uid 65534\): the region is owner 0, group 0, mode 600")
        root = self.peer("later", "info write 0 secret read 0 6", "root")
        self.assertIn("read 0 secret", root.stop())
        self.assertEqual(root.returncode, 0, root.output())
        out = squatter.stop()
        self.assertIn("read 0 squat", out)
        self.assertNotIn("secret", out)
        with proto.Session(self.sock, "root") as s:
            _, info = s.inspect("later")
        self.assertNotIn(13, info, "the squatter is still attached")
        # And it cannot come back.
        again = self.peer("later", "info", "again", user=NOBODY, group=NOBODY)
        self.assertNotEqual(again.stop(), "")
        self.assertNotEqual(again.returncode, 0)
        self.assertIn("permission", again.output())

    def test_size_mismatch_is_visible(self):
        """A declaration whose size differs from the region in use shows in inspect and the log."""
        self.start("")
        holder = self.peer("grow", "info sleep 4000", "holder")
        holder.wait_output("info index=0")
        self.reload("[region grow]\nsize = 128K\n")
        with proto.Session(self.sock, "root") as s:
            _, info = s.inspect("grow")
        self.assertEqual(info.get(REGION_INFO_DECLARED_SIZE), 128 << 10, info)
        self.assertNotEqual(info.get(REGION_INFO_DATA_SIZE), 128 << 10)
        self.assertRegex(self.broker.log(), r"Region 'grow' is in use with \d+ bytes and 16 peers: "
                                            r"the declared 131072 bytes and 16 peers apply once its memory is freed")
        holder.stop()
        # Freed: the declaration takes effect, and nothing waits any more.
        end = time.monotonic() + 10
        while True:
            with proto.Session(self.sock, "root") as s:
                _, info = s.inspect("grow")
            if REGION_INFO_DECLARED_SIZE not in info or time.monotonic() > end:
                break
            time.sleep(0.05)
        self.assertNotIn(REGION_INFO_DECLARED_SIZE, info)
        self.assertEqual(info.get(REGION_INFO_DATA_SIZE), 128 << 10)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: test_hygiene.py BUILD_DIR")
    BUILD = sys.argv.pop(1)
    unittest.main(verbosity=2)
