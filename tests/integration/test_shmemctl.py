# SPDX-License-Identifier: LGPL-2.1-or-later
"""shmemctl's operations commands against the real broker on a temporary directory.

watch, signal, dump, reload and upgrade, with host peers played by shmem-peer
(clients/tool). Every broker here is started directly (no service manager).

Run: python3 test_shmemctl.py BUILD_DIR
"""

import datetime
import json
import mmap
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
import harness  # noqa: E402
from harness import HostPeer  # noqa: E402

BUILD = None
DATA = 4096  # data offset in a shmem-mode region
NOBODY = 65534  # neither root nor the broker's user


class Watcher:
    """A running `shmemctl watch`, its stdout read line by line by a thread."""

    def __init__(self, argv, json_mode, stamped=False):
        self.json = json_mode
        self.stamped = stamped  # --timestamps: a text line's first word is the time
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.seen = []  # every line read, for failure messages
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # end of output

    def next_line(self, timeout=10):
        """The next line, or None at the end of the output or after @timeout."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is not None:
            self.seen.append(line)
        return line

    def event(self, line):
        """A line as a dict: JSON as it is; text 'EVENT REGION k=v ...' as {event, region, k: v}."""
        if self.json:
            return json.loads(line)
        words = line.split(" ")
        if self.stamped:
            words = words[1:]
        ev = {"event": words[0], "region": words[1]}
        for w in words[2:]:
            k, _, v = w.partition("=")
            ev[k] = v
        return ev

    def skip_past(self, pred, timeout):
        """Reads until a line whose event matches @pred; False if none came within @timeout."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return False
            line = self.next_line(left)
            if line is None:
                return False
            if pred(self.event(line)):
                return True

    def stop(self, sig):
        """Sends @sig; returns the exit status and what was left on stdout and stderr."""
        self.proc.send_signal(sig)
        status = self.proc.wait(10)
        self.thread.join(10)
        rest = []
        while not self.lines.empty():
            line = self.lines.get()
            if line is not None:
                rest.append(line)
        return status, rest, self.proc.stderr.read()


class ShmemctlOps(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="shmemctl-ops-")
        os.chmod(self.dir, 0o755)  # the socket must be reachable by NOBODY
        self.rundir = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.rundir, "broker.sock")
        self.brokerd = os.path.join(BUILD, "broker", "shmem-brokerd")
        self.peer_bin = os.path.join(BUILD, "clients", "tool", "shmem-peer")
        self.shmemctl = os.path.join(BUILD, "clients", "shmemctl", "shmemctl")
        self.procs = []
        self.watchers = []
        self.broker = None

    def tearDown(self):
        for w in self.watchers:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()
            w.thread.join(10)
            w.proc.stdout.close()
            w.proc.stderr.close()
        for p in self.procs:
            p.close()
        if self.broker:
            self.broker.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- the broker ---

    def start_broker(self, *extra, config=None):
        argv = [self.brokerd] + (["--config", config] if config else ["--no-config"])
        self.broker = harness.Broker(argv + list(extra), self.rundir, os.path.join(self.dir, "broker.log"))

    def log_text(self):
        return self.broker.log()

    def stop_broker(self):
        self.broker.send_signal(signal.SIGTERM)
        self.assertEqual(self.broker.wait(10), 0, self.log_text())

    def mark(self, region, offset, text):
        """Writes into @region's data through the broker's memfd, as no peer would."""
        pid = self.broker.pid
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except FileNotFoundError:
                continue
            if target.startswith(f"/memfd:{region} "):
                memfd = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDWR)
                try:
                    with mmap.mmap(memfd, DATA + offset + len(text)) as m:
                        m[DATA + offset:DATA + offset + len(text)] = text.encode()
                finally:
                    os.close(memfd)
                return
        self.fail(f"no memfd of region {region} in the broker")

    # --- shmemctl and peers ---

    def ctl(self, *args, user=None, timeout=60):
        """Runs shmemctl; as uid/gid @user without supplementary groups if given."""
        kw = {}
        if user is not None:
            kw = dict(user=user, group=user, extra_groups=[])
        return subprocess.run([self.shmemctl, "--socket", self.sock] + list(args), capture_output=True,
                              text=True, timeout=timeout, **kw)

    def ctl_ok(self, *args):
        out = self.ctl(*args)
        self.assertEqual(out.returncode, 0, f"shmemctl {' '.join(args)}: {out.stderr}")
        return out.stdout

    def regions(self):
        return sorted(r["name"] for r in json.loads(self.ctl_ok("--json", "list"))["regions"])

    def start_peer(self, region, script, label, size=None, find=False):
        options = ([f"--size={size}"] if size else []) + (["--find"] if find else [])
        p = HostPeer(self.peer_bin, self.sock, region, script, label, self.dir, options)
        self.procs.append(p)
        return p

    def wait_output(self, p, text, timeout=30):
        p.wait_output(text, timeout, interval=0.02)

    def finish(self, p, timeout=60):
        out = p.stop(timeout)
        self.assertEqual(p.returncode, 0, f"{p.label}:\n{out}\n--- broker:\n{self.log_text()}")
        return out

    def run_peer(self, region, script, label, size=None, find=False):
        """Runs a peer to its end; returns (pid, output)."""
        p = self.start_peer(region, script, label, size, find)
        return p.pid, self.finish(p)

    def watch(self, *args, json_mode=False):
        argv = [self.shmemctl, "--socket", self.sock] + (["--json"] if json_mode else []) + ["watch"]
        w = Watcher(argv + list(args), json_mode, stamped=bool({"-t", "--timestamps"} & set(args)))
        self.watchers.append(w)
        return w

    def sync(self, watchers, region, declared=False):
        """
        Returns once every watcher's Watch is in place: a peer with a new label
        comes and goes on @region until each watcher has shown it (and the
        region's destruction after it; its freeing if @declared: the region
        exists and stays). Whatever a watcher printed before is dropped, so
        its next line is the first event after this.
        """
        synced = set()
        last = "freed" if declared else "destroyed"
        for k in range(100):
            label = f"sync-{k}"
            self.run_peer(region, "info", label, size=None if declared else "4K", find=declared)
            for w in watchers:
                # One synced in an earlier round shows this one too, for sure: skip it all.
                if w.skip_past(lambda e: e["event"] == "joined" and e.get("label") == label,
                               10 if w in synced else 0.5):
                    self.assertTrue(w.skip_past(lambda e: e["event"] == last and e["region"] == region, 10),
                                    f"no '{last} {region}' after the join of {label}: {w.seen}")
                    synced.add(w)
                else:
                    self.assertNotIn(w, synced, f"a synced watcher did not show {label}: {w.seen}")
            if len(synced) == len(watchers):
                return
        self.fail("a watcher never showed the sync peers")

    def expect_lines(self, w, want):
        got = [w.next_line() for _ in want]
        self.assertEqual(got, want, f"all lines: {w.seen}\n--- broker:\n{self.log_text()}")

    # --- watch ---

    def test_watch_regions_and_peers(self):
        """watch shows create/destroy of regions and join/leave of host peers, in both formats, filtered by NAME."""
        self.start_broker()
        text = self.watch()
        self.ctl_ok("create", "r", "4K")  # watch NAME needs the region to exist as it starts
        js = self.watch("r", json_mode=True)
        self.sync([text, js], "r", declared=True)
        self.ctl_ok("destroy", "r")
        for w in (text, js):
            self.assertTrue(w.skip_past(lambda e: e["event"] == "destroyed" and e["region"] == "r", 10), w.seen)

        self.ctl_ok("create", "d", "4K")
        qpid, _ = self.run_peer("d", "info", "q", find=True)
        ppid, _ = self.run_peer("r", "info", "the peer", size="4K")
        self.ctl_ok("destroy", "d")

        self.expect_lines(text, [
            "created d",
            "allocated d",
            f"joined d index=0 kind=host pid={qpid} epoch=1 label=q",
            "left d index=0 epoch=2",
            "freed d",
            "created r",
            "allocated r",
            f"joined r index=0 kind=host pid={ppid} epoch=1 label=the\\x20peer",
            "left r index=0 epoch=2",
            "destroyed r",
            "destroyed d",
        ])
        # NAME filters: region d never shows; JSON has the label as it is.
        got = [json.loads(js.next_line()) for _ in range(5)]
        self.assertEqual(got, [
            {"event": "created", "region": "r"},
            {"event": "allocated", "region": "r"},
            {"event": "joined", "region": "r", "index": 0, "kind": "host", "label": "the peer", "pid": ppid,
             "doorbell_id": got[2].get("doorbell_id", -1), "epoch": 1},
            {"event": "left", "region": "r", "index": 0, "epoch": 2},
            {"event": "destroyed", "region": "r"},
        ], js.seen)
        self.assertIsInstance(got[2]["doorbell_id"], int)

        # Interrupted: exit 0, nothing more printed.
        self.assertEqual(text.stop(signal.SIGINT)[:2], (0, []))
        self.assertEqual(js.stop(signal.SIGTERM)[:2], (0, []))

    def test_watch_broker_goes_away(self):
        """The broker stopping ends watch with 3 and says so."""
        self.start_broker()
        w = self.watch()
        self.sync([w], "r")
        self.stop_broker()
        self.assertEqual(w.proc.wait(10), 3)
        self.assertIn("went away", w.proc.stderr.read())

    def test_watch_timestamps(self):
        """watch -t: each line after the time it was read, ISO 8601 with microseconds and the
        offset; --json --timestamps: "time", first. Without it, no time (test_watch_regions_and_peers)."""
        self.start_broker()
        text = self.watch("-t")
        js = self.watch("--timestamps", json_mode=True)
        self.sync([text, js], "s")
        before = time.time()
        self.ctl_ok("create", "t", "4K")
        line = text.next_line()
        read = time.time()
        m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d) created t", line or "")
        self.assertIsNotNone(m, f"not a stamped line: {line!r}")
        stamp = datetime.datetime.fromisoformat(m.group(1)).timestamp()
        self.assertTrue(before - 0.001 <= stamp <= read + 0.001, (before, stamp, read))
        ev = json.loads(js.next_line())
        self.assertEqual(list(ev), ["time", "event", "region"])
        self.assertEqual((ev["event"], ev["region"]), ("created", "t"))
        self.assertRegex(ev["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d$")
        self.assertTrue(before - 0.001 <= datetime.datetime.fromisoformat(ev["time"]).timestamp() <= time.time())
        out = self.ctl("-t", "list")
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn("--timestamps goes with watch", out.stderr)

    def test_watch_usage(self):
        self.start_broker()
        out = self.ctl("watch", "a", "b")
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn("usage: watch [NAME]", out.stderr)

    # --- signal ---

    def test_signal_reaches_the_masked_peer_only(self):
        """signal r 1 wakes peer 0 with shmemctl's index as the sender; peers 1 and 2 get nothing."""
        self.start_broker()
        a = self.start_peer("r", "info wait-from 0x8 30000", "a", size="4K")
        self.wait_output(a, "info index=0 ")
        # b and c look at their signals only after the test says "go": anything sent to them waits in
        # their pending word, so expect-no-signal then sees it.
        b = self.start_peer("r", "info expect 64 go 60000 expect-no-signal 300", "b", find=True)
        self.wait_output(b, "info index=1 ")
        c = self.start_peer("r", "info expect 64 go 60000 expect-no-signal 300", "c", find=True)
        self.wait_output(c, "info index=2 ")

        out = self.ctl("signal", "r", "1")
        self.assertEqual(out.returncode, 0, out.stderr)
        # shmemctl joined as the lowest free index, 3, and says so.
        self.assertEqual(out.stdout, "signaled r peers=0 sender=3\n")
        self.assertIn("senders=0x8 ", self.finish(a))
        self.mark("r", 64, "go")
        for p in (b, c):
            out_p = self.finish(p)
            self.assertNotIn("FAIL", out_p)
            self.assertNotIn("senders=0x8", out_p)

    def test_signal_all(self):
        """signal all reaches every attached peer; --json prints the indices and the sender."""
        self.start_broker()
        a = self.start_peer("r", "info wait-from 0x4 30000", "a", size="4K")
        self.wait_output(a, "info index=0 ")
        b = self.start_peer("r", "info wait-from 0x4 30000", "b", find=True)
        self.wait_output(b, "info index=1 ")
        out = self.ctl("--json", "signal", "r", "all")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout), {"region": "r", "signaled": [0, 1], "sender": 2})
        for p in (a, b):
            self.assertIn("senders=0x4 ", self.finish(p))

    def test_signal_refused(self):
        """A mask with a peer that is not attached, a missing region, a compat region: refused, nothing sent."""
        self.start_broker("--region", "legacy:4M:ivshmem:vectors=2", "--region", "empty:4K")
        a = self.start_peer("r", "info expect 64 go 60000 expect-no-signal 300", "a", size="4K")
        self.wait_output(a, "info index=0 ")

        out = self.ctl("signal", "r", "0x2")
        self.assertEqual(out.returncode, 1)
        self.assertIn("r: peer 1 is not attached (attached: 0); nothing was signaled", out.stderr)
        self.assertEqual(out.stdout, "")
        out = self.ctl("signal", "r", "6")
        self.assertEqual(out.returncode, 1)
        self.assertIn("peers 1,2 are not attached", out.stderr)
        out = self.ctl("signal", "r", "0x3")  # peer 0 is attached, peer 1 is not: all refused
        self.assertEqual(out.returncode, 1)
        self.assertIn("peer 1 is not attached", out.stderr)

        out = self.ctl("signal", "nope", "1")
        self.assertEqual(out.returncode, 1)
        self.assertIn("region 'nope' does not exist", out.stderr)
        out = self.ctl("signal", "legacy", "1")
        self.assertEqual(out.returncode, 1)
        self.assertIn("legacy is a compat region (signal-mode = ivshmem)", out.stderr)
        out = self.ctl("signal", "empty", "all")
        self.assertEqual(out.returncode, 1)
        self.assertIn("empty: no peer is attached", out.stderr)

        for bad in ("0", "x1", "-1", "1K", "0x"):
            out = self.ctl("signal", "r", bad)
            self.assertEqual(out.returncode, 2, f"mask {bad}: {out.stderr}")
        self.assertIn("more than 64 bits", self.ctl("signal", "r", "0x10000000000000000").stderr)

        # Refused before attaching: peer a saw no join, no leave, no signal.
        self.mark("r", 64, "go")
        self.assertNotIn("event", self.finish(a))

    # --- who created a region ---

    def test_list_and_inspect_show_who_created_a_region(self):
        """A host peer's attach that made a region names it, escaped; a declared region names nobody."""
        self.start_broker("--region", "declared:4K")
        label = "mk\x1b[1m\\er"
        p = self.start_peer("made", "info expect 0 end 60000", label, size="4K")
        self.wait_output(p, "info index=0 size=4096 ")
        escaped = "mk\\x1b[1m\\\\er"
        listing = self.ctl_ok("list")
        self.assertNotIn("\x1b", listing)
        self.assertRegex(listing, r"^NAME +SIZE +PEERS +MAX +BACKEND +FLAGS +CREATOR-KIND +CREATOR\n")
        # libsmartcols' encoding: the ESC as \x1b, a backslash as it is (only one before an x is \x5c).
        self.assertIn(" host         mk\\x1b[1m\\er\n", listing)
        self.assertRegex(listing, r"\ndeclared +4K +0 +16 +memfd +no-memory +- +-\n")
        self.assertIn(f"created by:  host peer '{escaped}' (pid {p.pid}, uid {os.getuid()})\n",
                      self.ctl_ok("inspect", "made"))
        self.assertIn("created by:  -\n", self.ctl_ok("inspect", "declared"))
        made = json.loads(self.ctl_ok("--json", "inspect", "made"))["created_by"]
        self.assertEqual((made["kind"], made["label"], made["pid"], made["uid"], made["vm_uuid"]),
                         ("host", label, p.pid, os.getuid(), None))
        self.assertEqual({r["name"]: (r["creator"], r["creator-pid"])
                          for r in json.loads(self.ctl_ok("--json", "list"))["regions"]},
                         {"made": (label, p.pid), "declared": (None, None)})
        p.close()

    # --- dump ---

    def test_dump(self):
        """dump shows what a peer wrote, honours --offset/--length/--raw, refuses ranges outside the data."""
        self.start_broker("--region", "declared:4K")
        w = self.start_peer("d", "info write 100 hello-dump expect 0 end 60000", "w", size="8K")
        self.wait_output(w, "info index=0 size=8192 ")

        out = self.ctl_ok("dump", "d", "--offset", "96", "--length", "32")
        self.assertEqual(out,
                         "00000060  00 00 00 00 68 65 6c 6c  6f 2d 64 75 6d 70 00 00  |....hello-dump..|\n"
                         "00000070  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|\n"
                         "00000080\n")
        # Without --length: the first 4K of the 8K, repeated zero lines as one "*".
        out = self.ctl_ok("dump", "d")
        self.assertEqual(out.splitlines(), [
            "00000000  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|",
            "*",
            "00000060  00 00 00 00 68 65 6c 6c  6f 2d 64 75 6d 70 00 00  |....hello-dump..|",
            "00000070  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|",
            "*",
            "00001000",
        ])
        # Sizes with suffixes; the whole rest of the data fits exactly.
        out = self.ctl_ok("dump", "d", "--offset", "4K", "--length", "4K")
        self.assertEqual(out.splitlines()[-1], "00002000")
        self.assertTrue(out.startswith("00001000  00 "), out)
        raw = subprocess.run([self.shmemctl, "--socket", self.sock, "dump", "d", "--offset", "100", "--length",
                              "10", "--raw"], capture_output=True, timeout=30)
        self.assertEqual((raw.returncode, raw.stdout), (0, b"hello-dump"), raw.stderr)

        for args, why in ((["--offset", "8K"], "--offset 8192 is not inside the data of d (8192 bytes)"),
                          (["--offset", "8000", "--length", "1K"], "ends beyond the data of d"),
                          (["--length", "8193"], "ends beyond the data of d"),
                          (["--length", "0"], "--length must be at least 1"),
                          (["--offset", "1Q"], "not a size")):
            out = self.ctl("dump", "d", *args)
            self.assertEqual(out.returncode, 2, f"{args}: {out.stderr}")
            self.assertIn(why, out.stderr)
            self.assertEqual(out.stdout, "")
        self.assertEqual(json.loads(self.ctl_ok("--json", "dump", "d", "--offset", "100", "--length", "10")),
                         {"region": "d", "offset": 100, "length": 10, "hex": b"hello-dump".hex()})
        self.assertEqual(self.ctl("--json", "dump", "d", "--raw").returncode, 2)
        self.assertEqual(self.ctl("create", "x", "4K", "--raw").returncode, 2)
        self.assertEqual(self.ctl("dump", "d", "-o", "NAME").returncode, 2)

        out = self.ctl("dump", "nope")
        self.assertEqual(out.returncode, 1)
        self.assertIn("region 'nope' does not exist", out.stderr)
        out = self.ctl("dump", "declared")
        self.assertEqual(out.returncode, 1)
        self.assertIn("declared has no memory now", out.stderr)

        self.mark("d", 0, "end")
        self.finish(w)

    # --- reload ---

    def test_reload(self):
        """reload applies a good file and refuses a bad one with FILE:LINE (the old one stays)."""
        conf = os.path.join(self.dir, "broker.conf")
        with open(conf, "w") as f:
            f.write("[region cfg]\nsize = 64K\n")
        self.start_broker(config=conf)
        self.assertEqual(self.regions(), ["cfg"])

        with open(conf, "a") as f:
            f.write("[region cfg2]\nsize = 4K\n")
        out = self.ctl("reload")
        self.assertEqual((out.returncode, out.stdout, out.stderr), (0, "", ""))
        self.assertEqual(self.regions(), ["cfg", "cfg2"])

        # Without cfg2 and with a broken third line: refused as a whole, cfg2 stays.
        with open(conf, "w") as f:
            f.write("[region cfg]\nsize = 64K\nthis is no line\n")
        out = self.ctl("reload")
        self.assertEqual(out.returncode, 1, out.stderr)
        self.assertIn(f"shmemctl: reload: bad request: {conf}:3: ", out.stderr)
        self.assertEqual(self.regions(), ["cfg", "cfg2"])

        # Fixed: applied, cfg2 goes.
        with open(conf, "w") as f:
            f.write("[region cfg]\nsize = 64K\n")
        self.ctl_ok("reload")
        self.assertEqual(self.regions(), ["cfg"])
        self.assertEqual(self.ctl("reload", "now").returncode, 2)

    def test_reload_and_upgrade_refused_to_other_users(self):
        """Neither root nor the broker's user: NO_PERMISSION, and the broker does nothing."""
        self.assertEqual(os.geteuid(), 0, "run the tests as root (./scripts/test.sh does, through sudo for a user): this one runs "
                                          "shmemctl as another uid than the broker's")
        conf = os.path.join(self.dir, "broker.conf")
        with open(conf, "w") as f:
            f.write("[region cfg]\nsize = 64K\n")
        self.start_broker(config=conf)
        with open(conf, "a") as f:
            f.write("[region cfg2]\nsize = 4K\n")
        for cmd in ("reload", "upgrade"):
            out = self.ctl(cmd, user=NOBODY)
            self.assertEqual(out.returncode, 1, out.stderr)
            self.assertIn(f"shmemctl: {cmd}: permission denied: ", out.stderr)
        # The socket was reachable (the broker answered), and nothing happened.
        self.assertEqual(self.ctl("list", user=NOBODY).returncode, 0)
        self.assertNotIn("Reload requested", self.log_text())
        self.assertNotIn("Upgrading", self.log_text())
        self.assertEqual(self.regions(), ["cfg"])

    # --- upgrade ---

    def test_xml_factory(self):
        """xml --factory: the factory device on the broker's factory socket, the root ports a q35
        domain needs, sizes a plain root port cannot hold refused (docs/libvirt.md, section 13)."""
        self.start_broker()
        factory = os.path.join(self.rundir, "qemu", "factory.sock")
        # A new q35 definition: its pcie-root (libvirt 9.0 refuses a root port as the first
        # PCI controller), the factory device, a root port per region and one for the
        # PCIe-to-PCI bridge libvirt puts the factory device behind.
        out = self.ctl_ok("xml", "--factory")
        self.assertEqual(out, "<controller type='pci' index='0' model='pcie-root'/>\n"
                              "<shmem name='.factory'>\n  <model type='ivshmem-doorbell'/>\n"
                              f"  <server path='{factory}'/>\n  <msi vectors='1' ioeventfd='on'/>\n</shmem>\n"
                         + "<controller type='pci' model='pcie-root-port'/>\n" * 5)
        self.assertEqual(self.ctl_ok("xml", "--factory", "--regions", "2", "--max-region", "2044K").count(
            "model='pcie-root-port'"), 3)
        self.assertNotIn("<controller", self.ctl_ok("xml", "--factory", "--machine", "pc", "--max-region", "256M"))
        # Above a plain root port's 2 MiB: the same XML, and what the guest kernel and the broker need.
        big = self.ctl("xml", "--factory", "--max-region", "128M")
        self.assertEqual((big.returncode, big.stdout.count("model='pcie-root-port'")), (0, 5), big.stderr)
        self.assertIn("needs a BAR of 256 MiB, and a plain pcie-root-port holds 2 MiB", big.stderr)
        self.assertIn("boot the guest kernel with pci=hpmmioprefsize=256M,resource_alignment=pci:1b36:000c and "
                      "give the broker libvirt-port-window=256M", big.stderr)
        for args in (["--regions", "0"], ["--machine", "s390"], ["--max-region", "x"], ["--live"], ["a", "b"]):
            p = self.ctl("xml", "--factory", *args)
            self.assertEqual(p.returncode, 2, f"{args}: {p.stderr}")
        p = self.ctl("xml", "--regions", "2", "demo")
        self.assertEqual(p.returncode, 2, p.stderr)
        # No broker there: no factory socket.
        self.stop_broker()
        p = self.ctl("xml", "--factory")
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertIn(f"no factory socket at {factory}", p.stderr)

    def test_upgrade(self):
        """upgrade waits for the new image; peers attached before keep their indices and signals; watch goes on."""
        self.start_broker()
        before_pid = self.broker.pid
        # After the upgrades a and b signal each other with the fds they got before, and c (a newcomer)
        # signals both. a and b do not signal c: a peer sees a newcomer on the control page before the
        # Joined event with its fd arrives; libshmem's notify then sets only the pending bit, which a
        # peer that does not wait-from could miss.
        a = self.start_peer("u", "info expect 0 upgraded 60000 notify 0x2 wait-from 0x6 30000", "a", size="4K")
        self.wait_output(a, "info index=0 ")
        b = self.start_peer("u", "info expect 0 upgraded 60000 notify 0x1 wait-from 0x5 30000", "b", find=True)
        self.wait_output(b, "info index=1 ")
        w = self.watch()
        self.sync([w], "sync")

        out = self.ctl("upgrade")
        self.assertEqual(out.returncode, 0, out.stderr + self.log_text())
        self.assertRegex(out.stdout, r"^upgraded: shmem-brokerd \S+ \(was shmem-brokerd \S+\)\n$")
        # shmemctl returned only once the new image answered: it has restored everything already.
        self.assertEqual(self.log_text().count("Restored 1 regions and "), 1, self.log_text())
        out = self.ctl("--json", "upgrade")
        self.assertEqual(out.returncode, 0, out.stderr + self.log_text())
        self.assertEqual(sorted(json.loads(out.stdout)), ["broker", "previous"])
        self.assertEqual(self.log_text().count("Restored 1 regions and "), 2, self.log_text())
        self.assertEqual((self.broker.poll(), self.broker.pid), (None, before_pid))

        region = json.loads(self.ctl_ok("--json", "inspect", "u"))
        self.assertEqual(sorted((p["index"], p["label"]) for p in region["peers"]), [(0, "a"), (1, "b")])
        self.mark("u", 0, "upgraded")
        c = self.start_peer("u", "info notify 0x3", "c", find=True)
        self.assertIn("info index=2 ", self.finish(c))
        self.finish(a)  # wait-from 0x6: b and c signaled it
        self.finish(b)  # wait-from 0x5: a and c
        # The watch survived both upgrades: the next thing it shows is c joining.
        self.assertTrue(w.skip_past(lambda e: True, 10), w.seen)
        self.assertRegex(w.seen[-1], rf"^joined u index=2 kind=host pid={c.pid} epoch=\d+ label=c$")
        self.assertIsNone(w.proc.poll())

        self.assertEqual(self.ctl("upgrade", "now").returncode, 2)
        self.stop_broker()

    def test_upgrade_broker_does_not_come_back(self):
        """A new binary that dies at start: upgrade says so with 3, soon."""
        self.brokerd = os.path.join(self.dir, "shmem-brokerd")
        shutil.copy2(os.path.join(BUILD, "broker", "shmem-brokerd"), self.brokerd)
        self.start_broker()
        # Installed in place as a package manager does: a new file renamed over the old one.
        broken = self.brokerd + ".new"
        with open(broken, "w") as f:
            f.write("#!/bin/sh\nexit 1\n")
        os.chmod(broken, 0o755)
        os.rename(broken, self.brokerd)
        start = time.monotonic()
        out = self.ctl("upgrade")
        self.assertEqual(out.returncode, 3, out.stderr)
        self.assertIn("is gone after the upgrade", out.stderr)
        self.assertLess(time.monotonic() - start, 20)
        self.assertEqual(self.broker.wait(10), 1, self.log_text())

if __name__ == "__main__":
    BUILD = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "build")
    # shmemctl's command line itself (help, error messages, libvirt loading): the same test.
    import test_shmemctl_cli  # noqa: E402
    from test_shmemctl_cli import (ShmemctlErrors, ShmemctlHelp, ShmemctlLibvirtLoading,  # noqa: E402,F401
                                   ShmemctlProgress)
    test_shmemctl_cli.BUILD = BUILD
    # Its tables and every command's --json: the same test too.
    from test_shmemctl_tables import ShmemctlJson, ShmemctlTables  # noqa: E402,F401
    unittest.main(verbosity=2)
