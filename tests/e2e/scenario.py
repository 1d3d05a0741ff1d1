# SPDX-License-Identifier: LGPL-2.1-or-later
"""The core end-to-end scenario: two QEMU guests and one host process on one region.

Used by test_core.py (which asserts on it) and by scripts/demo.sh (which shows
it). Every participant runs a script of the shmem-tool command language
(clients/tool/shmem-tool.c); phases are sequenced through strings in the shared
memory itself, so no timing assumption is made:

  1. data:     each writes its string, and reads the other two;
  2. selective guest -> guest: A signals B only; B sees sender 0;
               H checks that nothing from A is pending for it;
  3. guest -> host: B signals H; H sees sender 1;
  4. host -> guest: H signals A; A sees sender 2;
  5. B powers off: A and H see the membership event with index 1 gone;
     H stays until A has seen it (the active bitmap is a level: had H left
     first, A would see 0x1 and never 0x5);
  6. while A still holds index 0, a late host peer gets B's index 1 back.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile

import harness
from harness import guestlab

REGION = "e2e"
SIZE = "1M"
VECTORS = 17  # max_peers + 1

SCRIPT_A = ("info write 0 from-a expect 64 from-b 60000 expect 128 from-h 60000 "
            "notify 0x2 wait-from 0x4 60000 wait-active 0x5 60000 write 256 a-saw-5 sleep 3000")
SCRIPT_B = ("info write 64 from-b expect 0 from-a 60000 expect 128 from-h 60000 "
            "wait-from 0x1 60000 write 192 b-got-a expect 200 h-ready 60000 notify 0x4")
SCRIPT_H = ("info write 128 from-h expect 0 from-a 60000 expect 64 from-b 60000 "
            "expect 192 b-got-a 60000 expect-no-signal 300 write 200 h-ready "
            "wait-from 0x2 60000 notify 0x1 wait-active 0x5 60000 expect 256 a-saw-5 60000")


class Lab:
    """A broker on a private run directory plus the paths of the built tools."""

    def __init__(self, build, workdir=None, extra_args=()):
        self.build = os.path.abspath(build)
        self.workdir = workdir or tempfile.mkdtemp(prefix="shmem-e2e-")
        self.rundir = os.path.join(self.workdir, "run")
        self.socket = os.path.join(self.rundir, "broker.sock")
        self.brokerd = os.path.join(self.build, "broker", "shmem-brokerd")
        self.shmemctl = os.path.join(self.build, "clients", "shmemctl", "shmemctl")
        self.peer = os.path.join(self.build, "clients", "tool", "shmem-peer")
        self.guest_bin = os.path.join(self.build, "clients", "tool", "shmem-guest")
        self.broker = None
        self.broker_log = os.path.join(self.workdir, "broker.log")
        self.extra_args = list(extra_args)

    def image(self):
        return guestlab.Image.build(os.path.join(self.build, "guest-image"), self.guest_bin)

    def start_broker(self):
        self.broker = harness.Broker([self.brokerd, "--no-config", "--region", f"{REGION}:{SIZE}"]
                                     + self.extra_args, self.rundir, self.broker_log)

    def qemu_socket(self, region=REGION):
        return os.path.join(self.rundir, "qemu", f"{region}.sock")

    def shmemctl_json(self, *args):
        out = subprocess.run([self.shmemctl, "--socket", self.socket, "--json", *args],
                             check=True, capture_output=True, text=True, timeout=10)
        return json.loads(out.stdout)

    def shmemctl_text(self, *args):
        return subprocess.run([self.shmemctl, "--socket", self.socket, *args], check=True,
                              capture_output=True, text=True, timeout=10).stdout

    def host_peer(self, script, label="host", timeout=120):
        """Starts a host peer running @script; returns the Popen (stdout piped)."""
        return subprocess.Popen([self.peer, "--socket", self.socket, "--label", label, REGION]
                                + script.split(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def guest(self, image, name, script, timeout=180):
        return guestlab.Guest(image, f"shmem-guest {REGION} {script}", self.workdir, name=name,
                              timeout=timeout, shmem=[guestlab.Shmem(self.qemu_socket(), VECTORS)])

    def stop(self):
        guestlab.kill_all()
        return self.broker.stop() if self.broker else None

    def cleanup(self):
        shutil.rmtree(self.workdir, ignore_errors=True)


def senders(log):
    """Every 'senders=0x..' a tool printed in @log, as ints."""
    return [int(m, 16) for m in re.findall(r"shmem-tool: event senders=(0x[0-9a-f]+)", log)]


def run(lab, image, on_step=print):
    """Runs the scenario; returns {name: (rc, log)} and the inspect taken mid-way."""
    lab.start_broker()
    a = lab.guest(image, "vm-a", SCRIPT_A).start()
    a.wait_connected()
    on_step("guest vm-a attached (index 0)")
    b = lab.guest(image, "vm-b", SCRIPT_B).start()
    b.wait_connected()
    on_step("guest vm-b attached (index 1)")
    h = lab.host_peer(SCRIPT_H)
    on_step("host process attached (index 2)")
    late = None
    inspect = {}
    try:
        # A prints "active 0x5" once it has seen B leave, then lingers.
        a.wait_log(rb"shmem-tool: active 0x5", timeout=180)
        late = subprocess.run([lab.peer, "--socket", lab.socket, "--label", "late", REGION, "info"],
                              capture_output=True, text=True, timeout=30)
        inspect = lab.shmemctl_json("inspect", REGION)
    except TimeoutError as e:
        on_step(f"vm-a never saw B leave: {e}")
    try:
        h_out, _ = h.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        h.kill()
        h_out, _ = h.communicate()
    ra, rb = a.wait(), b.wait()
    return {
        "vm-a": (ra.rc, ra.log, ra.timed_out, ra.seconds),
        "vm-b": (rb.rc, rb.log, rb.timed_out, rb.seconds),
        "host": (h.returncode, h_out.decode(errors="replace"), False, 0.0),
        "late": (late.returncode, late.stdout + late.stderr, False, 0.0) if late else
                (None, "never started", False, 0.0),
        "inspect": inspect,
    }
