# SPDX-License-Identifier: LGPL-2.1-or-later
"""VM identity: libvirt's confirmation, [domain] rules and UUID pins (broker.conf(5)).

A fake QEMU is a python process whose command line carries "-name guest=X
-uuid U" as libvirt's QEMU does: the broker reads its identity from
/proc/PID/cmdline of the peer that connected, so that is all it takes. The
real-libvirtd proof is tests/e2e/test_libvirt.py.

Run: python3 test_domains.py BUILD_DIR
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
import harness  # noqa: E402

BUILD = None
U1 = "11111111-2222-3333-4444-555555555555"
U2 = "22222222-2222-3333-4444-555555555555"
U3 = "33333333-2222-3333-4444-555555555555"

# Connects when told ("go" on stdin), prints the ivshmem protocol version the
# broker sent (0: accepted; 1000 + status: refused), then holds on until stdin closes.
FAKE_QEMU = r"""
import socket, struct, sys
sys.stdin.readline()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
msg, _, _, _ = socket.recv_fds(s, 8, 1)
print(struct.unpack("<q", msg)[0], flush=True)
sys.stdin.read()
"""


class Domains(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="shmem-domains-")
        self.rundir = os.path.join(self.dir, "run")
        self.libvirt = os.path.join(self.dir, "libvirt")
        os.mkdir(self.libvirt)
        self.sock = os.path.join(self.rundir, "broker.sock")
        self.shmemctl = os.path.join(BUILD, "clients", "shmemctl", "shmemctl")
        self.peer = os.path.join(BUILD, "clients", "tool", "shmem-peer")
        conf = os.path.join(self.dir, "broker.conf")
        with open(conf, "w") as f:
            f.write(f"""[broker]
libvirt-run-directory = {self.libvirt}

[domain {U2}]
deny = ok-2

[domain dom-*]
allow = ok-* pinned

[region ok-1]
size = 64K
[region ok-2]
size = 64K
[region other]
size = 64K
[region pinned]
size = 64K
pin = {U3}:2
""")
        self.fakes = []
        self.broker = harness.Broker([os.path.join(BUILD, "broker", "shmem-brokerd"), "--config", conf],
                                     self.rundir, os.path.join(self.dir, "broker.log"))

    def tearDown(self):
        for p in self.fakes:
            p.kill()
            p.communicate()
        self.broker.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def broker_log(self):
        return self.broker.log()

    def vm(self, region, name, uuid, pidfile=True):
        """A fake QEMU of domain @name attached to @region's socket; returns (version, pid)."""
        p = subprocess.Popen([sys.executable, "-c", FAKE_QEMU, os.path.join(self.rundir, "qemu", f"{region}.sock"),
                              "-name", f"guest={name},debug-threads=on", "-uuid", uuid],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.fakes.append(p)
        if pidfile:  # as libvirt does before QEMU runs
            with open(os.path.join(self.libvirt, f"{name}.pid"), "w") as f:
                f.write(str(p.pid))
        p.stdin.write("go\n")
        p.stdin.flush()
        line = p.stdout.readline()
        self.assertTrue(line, f"fake QEMU {name} got no version:\n{self.broker_log()}")
        return int(line), p.pid

    def inspect(self, region):
        out = subprocess.run([self.shmemctl, "-s", self.sock, "--json", "inspect", region], check=True,
                             capture_output=True, text=True, timeout=10).stdout
        return {p["index"]: p for p in json.loads(out)["peers"]}

    def test_libvirt_confirms_domain(self):
        self.assertEqual(self.vm("ok-1", "dom-a", U1)[0], 0)
        version, pid_b = self.vm("ok-1", "dom-b", U2, pidfile=False)
        self.assertEqual(version, 0)
        with open(os.path.join(self.libvirt, "dom-b.pid"), "w") as f:
            f.write("1")  # libvirt runs another process as dom-b: not this VM
        peers = self.inspect("ok-1")
        self.assertEqual((peers[0]["vm_name"], peers[0]["vm_uuid"], peers[0]["libvirt"]), ("dom-a", U1, True))
        self.assertEqual((peers[1]["vm_name"], peers[1]["vm_uuid"], peers[1]["libvirt"]), ("dom-b", U2, False))
        self.assertEqual(peers[1]["pid"], pid_b)
        text = subprocess.run([self.shmemctl, "-s", self.sock, "inspect", "ok-1"], check=True,
                              capture_output=True, text=True, timeout=10).stdout
        # VM-UUID, LIBVIRT, PARKED
        self.assertRegex(text, rf"0 +qemu +dom-a .* {U1} +yes +no\n")
        self.assertRegex(text, rf"1 +qemu +dom-b .* {U2} +no +no\n")

    def test_domain_rules(self):
        # [domain dom-*] allow = ok-* pinned: an allow implies a final deny *.
        self.assertEqual(self.vm("ok-1", "dom-a", U1)[0], 0)
        self.assertEqual(self.vm("other", "dom-c", U3)[0], 1000 + 5)  # NO_PERMISSION
        # [domain U2] deny = ok-2 comes first in the file and names the VM by UUID.
        self.assertEqual(self.vm("ok-2", "dom-x", U2)[0], 1000 + 5)
        self.assertEqual(self.vm("ok-2", "dom-y", U1)[0], 0)
        log = self.broker_log()
        self.assertIn(f"denied by 'deny = ok-2' of [domain {U2}] (line 5)", log)
        self.assertRegex(log, r"not allowed by \[domain dom-\*\]: .* implies a final 'deny \*'")
        # A host client chooses its label: calling itself dom-a does not make it a domain.
        r = subprocess.run([self.peer, "--socket", self.sock, "--label", "dom-a", "other", "info"],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_pin_by_uuid(self):
        # A host peer comes first and does not get the index pinned to U3.
        host = subprocess.Popen([self.peer, "--socket", self.sock, "--label", "early", "pinned",
                                 "info", "sleep", "5000"], stdout=subprocess.PIPE, text=True)
        self.fakes.append(host)
        self.assertIn("index=0", host.stdout.readline())
        self.assertEqual(self.vm("pinned", "dom-other", U1)[0], 0)
        self.assertEqual(self.vm("pinned", "dom-pinned", U3)[0], 0)
        peers = self.inspect("pinned")
        self.assertEqual(peers[1]["vm_uuid"], U1)
        self.assertEqual(peers[2]["vm_uuid"], U3)


if __name__ == "__main__":
    BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
