# SPDX-License-Identifier: LGPL-2.1-or-later
"""The broker survives kill -9 without any peer noticing (docs/persistence.md).

A fake service manager (fakesystemd.py) keeps what the broker stores with
FDSTORE=1 and restarts it with LISTEN_FDS, exactly as systemd does.

Run: python3 test_restart.py BUILD_DIR   (SHMEM_KILL_LOOPS=25 for the long loop)
"""

import json
import mmap
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
import harness  # noqa: E402
from harness import FakeSystemd, HostPeer  # noqa: E402

BUILD = None
DATA = 4096  # data offset in a shmem-mode region


def log_text(f):
    f.flush()
    f.seek(0)
    return f.read()


class Restart(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="shmem-restart-")
        self.rundir = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.rundir, "broker.sock")
        self.brokerd = os.path.join(BUILD, "broker", "shmem-brokerd")
        self.peer = os.path.join(BUILD, "clients", "tool", "shmem-peer")
        self.shmemctl = os.path.join(BUILD, "clients", "shmemctl", "shmemctl")
        self.sd = FakeSystemd(self.dir)
        self.args = [self.brokerd, "--no-config", "--region", "r:64K"]  # harness.Broker adds --rundir
        self.argv = self.args + ["--rundir", self.rundir]
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            p.close()
        self.sd.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start_peer(self, name, script):
        p = HostPeer(self.peer, self.sock, "r", script, name, self.dir)
        self.procs.append(p)
        return p

    def wait_output(self, p, text, timeout=30):
        p.wait_output(text, timeout)

    def finish(self, p, timeout=60):
        out = p.stop(timeout)
        time.sleep(0.1)
        others = "".join(f"\n--- {q.label}:\n{q.output()}" for q in self.procs if q is not p)
        self.assertEqual(p.returncode, 0, out + others + "\n--- broker:\n" + self.sd.log())
        return out

    def inspect(self):
        time.sleep(0.05)
        out = subprocess.run([self.shmemctl, "--socket", self.sock, "--json", "inspect", "r"],
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 0, out.stderr)
        region = json.loads(out.stdout)
        return {k: region[k] for k in ("epoch", "active", "data_size")}, \
               sorted((p["index"], p["label"], p["kind"], tuple(p["pending"])) for p in region["peers"])

    def wait_inspect(self, pred, timeout=10):
        end = time.monotonic() + timeout
        while True:
            got = self.inspect()
            if pred(got):
                return got
            if time.monotonic() > end:
                self.fail(f"inspect never matched: {got}")
            time.sleep(0.05)

    def mark(self, offset, text):
        """Writes into the region through the stored memfd, as no peer could while the broker is dead."""
        with mmap.mmap(self.sd.fd("m/r"), DATA + 4096) as m:
            m[DATA + offset:DATA + offset + len(text) + 1] = text.encode() + b"\0"

    def test_kill_and_restart(self):
        self.sd.start(self.argv)
        self.assertIn("ctl", self.sd.names())
        self.assertIn("q/r", self.sd.names())
        a = self.start_peer("a", "info write 0 from-a wait-active 0x3 30000 notify 0x2 "
                                 "expect 512 killed 30000 wait-from 0x2 30000 write 64 a-got-b "
                                 "expect 512 restarted 30000 wait-active 0x7 30000 write 320 a-saw-7 expect 384 b-saw-7 30000")
        self.wait_output(a, "info index=0")
        # B does not look at its signals before the kill: A's bit must wait in its pending word.
        b = self.start_peer("b", "info expect 512 killed 30000 notify 0x1 "
                                 "expect 64 a-got-b 30000 expect 512 restarted 30000 wait-from 0x1 30000 "
                                 "wait-active 0x7 30000 write 384 b-saw-7 expect 320 a-saw-7 30000")
        self.wait_output(b, "info index=1")
        # A's signal to B waits, unconsumed, in B's pending word.
        before = self.wait_inspect(lambda s: (1, "b", "host", (0,)) in s[1])
        self.assertIn("m/r", self.sd.names())
        self.assertTrue(any(n.startswith("st/") for n in self.sd.names()), self.sd.names())
        self.sd.wait_stored("c/", 2)  # inspect's connection has left the store

        self.assertEqual(self.sd.kill(), -9)
        # The broker is dead; the peers go on: B signals A through the eventfds it holds.
        self.mark(512, "killed")
        self.wait_output(a, "senders=0x2")

        self.sd.start(self.argv)
        self.assertIn("Restored 1 regions and 2 connections", self.sd.log())
        after = self.inspect()
        # Same indices, labels, epoch, active bitmap; B's pending bit from A survived.
        self.assertEqual(after, before)
        self.mark(512, "restarted")
        # A new peer joins the restored broker: both old peers see it (active 0x7).
        # Everybody stays until both old peers said they saw 0x7: the active
        # bitmap is a level, a peer leaving early would hide the join.
        c = self.start_peer("c", "info expect 0 from-a 5000 expect 64 a-got-b 5000 "
                                 "expect 320 a-saw-7 30000 expect 384 b-saw-7 30000")
        out_c = self.finish(c)
        self.assertIn("info index=2 ", out_c)
        self.assertIn("changed=1 active=0x7", self.finish(a))
        out_b = self.finish(b)
        self.assertIn("senders=0x1", out_b)  # the pending bit from before the kill
        self.assertIn("changed=1 active=0x7", out_b)
        # All gone: a clean stop empties the store.
        self.assertEqual(self.sd.kill(15), 0)
        self.assertEqual(self.sd.names(), [], self.sd.log())

    def test_restart_with_a_refused_configuration(self):
        """A configuration broken while the broker ran costs no region at the restart:
        the broker fails closed (no new attach) until a reload brings one that parses."""
        conf = os.path.join(self.dir, "broker.conf")
        with open(conf, "w") as f:
            f.write("[region r]\nsize = 64K\n")
        argv = [self.brokerd, "--config", conf, "--rundir", self.rundir]
        self.sd.start(argv)
        a = self.start_peer("a", "info wait-active 0x3 30000 expect 512 restarted 30000 notify 0x2")
        self.wait_output(a, "info index=0")
        b = self.start_peer("b", "info expect 512 restarted 30000 wait-from 0x1 30000")
        self.wait_output(b, "info index=1")
        with open(conf, "w") as f:
            f.write("[region r]\nsize = lots\n")

        self.assertEqual(self.sd.kill(), -9)
        self.sd.start(argv)  # comes up (READY=1) instead of exiting on the file
        log = self.sd.log()
        self.assertIn(f"{conf}:2:", log)
        self.assertIn("Keeping every region and peer handed over", log)
        self.assertIn("Restored 1 regions and 2 connections", log)
        self.sd.pump(0.5)
        self.assertIn("configuration refused", self.sd.status or "")
        late = subprocess.run([self.peer, "--socket", self.sock, "--label", "late", "r", "info"],
                              capture_output=True, text=True, timeout=10)
        self.assertNotEqual(late.returncode, 0, late.stdout)
        self.assertIn("permission", late.stdout + late.stderr)
        # The peers from before go on, signals included.
        self.mark(512, "restarted")
        self.assertIn("senders=0x1", self.finish(b))
        self.finish(a)

        # Fixed and reloaded: attaches are allowed again.
        with open(conf, "w") as f:
            f.write("[region r]\nsize = 64K\n")
        self.sd.proc.send_signal(signal.SIGHUP)
        self.wait_for(lambda: "Configuration reloaded" in self.sd.log())
        late = subprocess.run([self.peer, "--socket", self.sock, "--label", "late", "r", "info"],
                              capture_output=True, text=True, timeout=10)
        self.assertEqual(late.returncode, 0, late.stdout + late.stderr)
        self.assertEqual(self.sd.kill(15), 0)

    def test_upgrade_without_systemd(self):
        """SIGUSR2 and the Upgrade request re-execute the broker with every fd: nobody notices."""
        broker = harness.Broker(self.args, self.rundir, os.path.join(self.dir, "broker.log"))
        self.addCleanup(broker.close)
        log = open(broker.log_path)
        self.addCleanup(log.close)
        a = self.start_peer("a", "info write 0 from-a wait-active 0x3 30000 notify 0x2 expect 512 upgraded 30000 "
                                 "wait-active 0x7 30000 write 320 a-saw-7 expect 384 b-saw-7 30000")
        self.wait_output(a, "info index=0")
        b = self.start_peer("b", "info expect 512 upgraded 30000 wait-from 0x1 30000 wait-active 0x7 30000 "
                                 "write 384 b-saw-7 expect 320 a-saw-7 30000")
        self.wait_output(b, "info index=1")
        before = self.wait_inspect(lambda st: (1, "b", "host", (0,)) in st[1])
        memfd = self.broker_memfd(broker.pid)
        for trigger in ("signal", "request"):
            if trigger == "signal":
                broker.send_signal(signal.SIGUSR2)
            else:
                self.upgrade_request()
            # "and 2 connections", or 3 when inspect's closed connection was
            # handed over before the broker saw it close: the inspect below
            # is what shows that both peers came through.
            self.wait_for(lambda: log_text(log).count("Restored 1 regions and ") ==
                          (1 if trigger == "signal" else 2))
            self.assertIsNone(broker.poll(), log_text(log))
            self.assertEqual(self.inspect(), before, log_text(log))
        with mmap.mmap(memfd, DATA + 4096) as m:
            m[DATA + 512:DATA + 512 + 9] = b"upgraded\0"
        c = self.start_peer("c", "info expect 0 from-a 5000 expect 320 a-saw-7 30000 expect 384 b-saw-7 30000")
        self.assertIn("info index=2 ", self.finish(c))
        self.assertIn("senders=0x1", self.finish(b))  # the pending bit from before both upgrades
        self.finish(a)
        os.close(memfd)
        broker.send_signal(signal.SIGTERM)
        self.assertEqual(broker.wait(10), 0, log_text(log))

    def broker_memfd(self, pid):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("/memfd:r "):
                return os.open(f"/proc/{pid}/fd/{fd}", os.O_RDWR)
        self.fail("no memfd of region r in the broker")

    def upgrade_request(self):
        """Sends Upgrade{} on the native protocol (shmemctl upgrade does the same)."""
        import socket as so
        s = so.socket(so.AF_UNIX, so.SOCK_SEQPACKET)
        s.connect(self.sock)
        # Message{serial=1, hello{version=1}} then Message{serial=2, upgrade{}}: protobuf by hand.
        s.send(harness.proto.encode_hello(1))
        s.recv(65536)
        s.send(harness.proto.encode_upgrade(2))
        reply = s.recv(65536)
        s.close()
        self.assertIn(bytes([0x08, 0x02]), reply[:2])

    def wait_for(self, pred, timeout=10):
        end = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > end:
                self.fail("timed out")
            time.sleep(0.05)

    def test_notify_protocol(self):
        """READY=1 with a STATUS, WATCHDOG=1 at half of $WATCHDOG_USEC, STOPPING=1 at the end."""
        env = dict(os.environ, WATCHDOG_USEC="200000")
        start = time.monotonic()
        self.sd.start(self.argv, env=env)
        self.assertEqual(self.sd.ready, 1)
        self.assertRegex(self.sd.status, r"^1 regions, 0 peers, \d+ control connections$")
        # 100 ms apart. Not a timed test: wait for five, however slow the
        # machine, then check they did not come faster than one per 100 ms.
        self.wait_for(lambda: self.sd.watchdog >= 5)
        self.assertLessEqual(self.sd.watchdog, (time.monotonic() - start) / 0.1 + 2)
        self.assertEqual(self.sd.kill(signal.SIGTERM), 0)
        self.assertEqual(self.sd.stopping, 1)
        # An upgrade keeps systemd's watchdog fed: a ping before the exec and
        # one with the new image's READY=1, however long the interval.
        env["WATCHDOG_USEC"] = "60000000"
        self.sd.start(self.argv, env=env)
        self.assertEqual((self.sd.ready, self.sd.watchdog), (1, 1))
        self.sd.proc.send_signal(signal.SIGUSR2)
        self.wait_for(lambda: self.sd.ready == 2)
        self.sd.pump()
        self.assertEqual(self.sd.watchdog, 3)
        self.assertEqual(self.sd.kill(signal.SIGTERM), 0)
        # WATCHDOG_PID of another process: not for this one.
        env["WATCHDOG_PID"] = "1"
        self.sd.start(self.argv, env=env)
        time.sleep(0.5)
        self.assertEqual(self.sd.watchdog, 0)

    def test_nothing_stored_again(self):
        """A restart or an upgrade stores its new state and nothing else: every fd it was handed
        is in the manager's store already, and systemd scans its whole store for each fd stored
        (one same_fd() per stored fd, as fakesystemd does), so storing n fds again costs PID 1
        O(n^2)."""
        argv = self.argv + ["--region", "p:64K:persistent", "--region", "q:64K:persistent"]
        self.sd.start(argv)
        peers = [harness.proto.Session(self.sock, f"peer{i}") for i in range(3)]
        try:
            for i, s in enumerate(peers):
                self.assertEqual(s.attach("pq"[i % 2]).status, harness.proto.STATUS_OK)
            self.sd.wait_stored("c/", 3)
            self.sd.wait_stored("e/", 3 * 17)
            # An attach is stored before its reply leaves (docs/persistence.md, "Stored before
            # it is said"): the state has all three now, no round trip needed.
            names = self.sd.names()
            for how in ("kill", "upgrade"):
                stores, ready = self.sd.stores, self.sd.ready
                if how == "kill":
                    self.assertEqual(self.sd.kill(), -9)
                    self.sd.start(argv)
                else:  # the exec's own state, then the new image's
                    self.sd.proc.send_signal(signal.SIGUSR2)
                    self.wait_for(lambda: self.sd.ready == ready + 1)
                self.sd.pump()
                states = 2 if how == "upgrade" else 1
                self.assertEqual(self.sd.stores - stores, states,
                                 f"{how}: FDSTORE=1 other than the new state:\n{self.sd.log()}")
                self.assertEqual([n for n in self.sd.names() if not n.startswith("st/")],
                                 [n for n in names if not n.startswith("st/")], how)
                for s in peers:  # still served
                    self.assertEqual(s.inspect("p")[0].status, harness.proto.STATUS_OK, how)
        finally:
            for s in peers:
                s.close()

    def kill_at_reply(self, s, message, what):
        """Sends @message on @s and kills the broker -9 the moment the first datagram back
        arrives (no Watch: that is the reply); restarts it. The reply's status."""
        s.serial += 1
        s.send(message(s.serial))
        first = s.recv()
        self.sd.proc.send_signal(signal.SIGKILL)  # before anything else runs here
        self.assertEqual(self.sd.kill(), -9, what)
        self.assertTrue(first, f"{what}: the connection was closed, not restored:\n{self.sd.log()}")
        self.sd.start(self.argv)
        return harness.proto.decode_reply(first).status

    def test_kill_as_the_request_is_answered(self):
        """What a peer was told is in the state a kill -9 restores, even a kill the moment its
        reply arrives: a reply leaves the broker only after the state that explains it is stored
        (docs/persistence.md, "The stored image"). The broker stored it at the end of the loop
        turn, after the reply: a kill in between restored a connection told OK to Hello as not
        greeted (refusing its Attach), and one told OK to Attach with no peer."""
        loops = int(os.environ.get("SHMEM_ANSWER_KILLS", "30"))
        self.sd.start(self.argv)
        for i in range(loops):
            s = harness.proto.Session(self.sock, None)
            try:
                status = self.kill_at_reply(s, lambda n: harness.proto.encode_hello(n, f"w{i}"), f"round {i}, Hello")
                self.assertEqual(status, harness.proto.STATUS_OK, f"round {i}: Hello")
                status = self.kill_at_reply(s, lambda n: harness.proto.encode_attach(n, "r"), f"round {i}, Attach")
                self.assertEqual(status, harness.proto.STATUS_OK, f"round {i}: Attach after Hello and a kill")
                peers = [p[1] for p in self.inspect()[1]]
                self.assertEqual(peers, [f"w{i}"], f"round {i}: attached and told OK, not restored:\n"
                                                   f"{self.sd.log()}")
                self.assertEqual(s.inspect("r")[0].status, harness.proto.STATUS_OK, f"round {i}")
            finally:
                s.close()
            self.wait_inspect(lambda st: st[1] == [])

    def stored_states(self):
        self.sd.pump()
        return len([n for n in self.sd.stored_names if n.startswith("st/")])

    def ctl_json(self, *args):
        out = subprocess.run([self.shmemctl, "--socket", self.sock, "--json"] + list(args), capture_output=True,
                             text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        return json.loads(out.stdout)

    def test_churn_beside_many_regions_stores_its_log(self):
        """200 attach+detach cycles beside 1,000 regions store no new state: their changes are
        appended to the stored one's log (docs/persistence.md, "The stored image"), so FDSTORE=1
        of st/* comes only for the log's compactions; main's broker stored a whole state, and
        sent an FDSTORE=1, for every change. A kill -9 after them restores exactly what was
        attached, the peers' connections included."""
        many = 1000
        argv = self.argv + ["--max-regions", str(many + 10)]
        self.sd.start(argv)
        with harness.proto.Session(self.sock, "maker") as s:
            for i in range(many):
                self.assertEqual(s.create(f"m{i}", 4096).status, harness.proto.STATUS_OK)
        stay = [harness.proto.Session(self.sock, f"stay{i}") for i in range(3)]
        try:
            self.assertEqual(stay[0].attach("m7", 4096).status, harness.proto.STATUS_OK)
            self.sd.wait_stored("c/", 3)
            before = self.stored_states()
            with harness.proto.Session(self.sock, "churn") as s:
                for i in range(200):
                    self.assertEqual(s.attach("churn", 4096).status, harness.proto.STATUS_OK)
                    r = s.request(harness.proto.MESSAGE_DETACH, harness.proto.field(1, "churn"))
                    self.assertEqual(r.status, harness.proto.STATUS_OK)
                    # ... and a region of the many, made to hold memory and let go
                    self.assertEqual(s.attach(f"m{i}", 4096).status, harness.proto.STATUS_OK)
                    r = s.request(harness.proto.MESSAGE_DETACH, harness.proto.field(1, f"m{i}"))
                    self.assertEqual(r.status, harness.proto.STATUS_OK)
            # What stays attached at the kill: two peers on m7, one on m123, one on a region made by its attach.
            self.assertEqual(stay[1].attach("m7", 4096).status, harness.proto.STATUS_OK)
            self.assertEqual(stay[2].attach("m123", 4096).status, harness.proto.STATUS_OK)
            with harness.proto.Session(self.sock, "gone") as s:  # made, then gone: not restored
                self.assertEqual(s.attach("made-and-gone", 4096).status, harness.proto.STATUS_OK)
            self.sd.wait_stored("c/", 3)
            states = self.stored_states() - before
            # The log's bound is twice the snapshot (1,000 regions: some 40 KiB) and at least
            # 64 KiB; 800 changes of about 150 bytes each fill it once or twice.
            self.assertLessEqual(states, 3, f"{states} states stored for 800 changes")
            listed = self.ctl_json("list")
            inspected = {n: self.ctl_json("inspect", n) for n in ("m7", "m123")}
            self.assertEqual([p["label"] for p in inspected["m7"]["peers"]], ["stay0", "stay1"])
            self.assertNotIn("made-and-gone", [r["name"] for r in listed["regions"]])
            # shmemctl's connections gone too, and a round trip after: what their close changed is stored.
            self.sd.wait_stored("c/", 3)
            self.assertEqual(stay[0].inspect("m7")[0].status, harness.proto.STATUS_OK)

            self.assertEqual(self.sd.kill(), -9)
            self.sd.start(argv)
            log = self.sd.log()
            self.assertTrue(f"Restored {many + 1} regions and 3 connections" in log, log[-3000:])  # and "r"
            self.assertEqual(self.ctl_json("list"), listed)
            self.assertEqual({n: self.ctl_json("inspect", n) for n in ("m7", "m123")}, inspected)
            for s in stay:  # their connections came back from the log
                self.assertEqual(s.inspect("m7")[0].status, harness.proto.STATUS_OK)
        finally:
            for s in stay:
                s.close()

    def test_kill_loop(self):
        loops = int(os.environ.get("SHMEM_KILL_LOOPS", "3"))
        self.sd.start(self.argv)
        a = self.start_peer("a", "info wait-active 0x3 30000 expect 0 go 30000 sleep 600000")
        self.wait_output(a, "info index=0")
        b = self.start_peer("b", "info wait-active 0x3 30000 expect 0 go 30000 sleep 600000")
        self.wait_output(b, "info index=1")
        before = self.wait_inspect(lambda s: s[0]["active"] == [0, 1])
        for i in range(loops):
            self.assertEqual(self.sd.kill(), -9, f"round {i}")
            self.sd.start(self.argv)
            self.assertEqual(self.inspect(), before, f"round {i}:\n{self.sd.log()}")
            # A peer comes and goes on the restored broker: index 2, and everything else unchanged.
            c = subprocess.run([self.peer, "--socket", self.sock, "--label", "c", "r", "info", "notify", "0x3"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(c.returncode, 0, c.stdout + c.stderr)
            self.assertIn("info index=2", c.stdout)
            # Join and leave moved the epoch twice; A and B now hold C's pending bits.
            before = self.wait_inspect(lambda s: s[0]["epoch"] == before[0]["epoch"] + 2)
            self.assertEqual(before[0]["active"], [0, 1], f"round {i}")
        self.mark(0, "go")
        self.assertEqual(len([p for p in (a, b) if p.poll() is None]), 2, "a peer died in the loop")


if __name__ == "__main__":
    BUILD = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "build")
    unittest.main(verbosity=2)
