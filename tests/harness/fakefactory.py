# SPDX-License-Identifier: LGPL-2.1-or-later
"""fakefactory: a VM's factory device and a hotplug helper, played without QEMU.

    vm = FakeFactoryVm(factory_sock, monitor, name="vm-a", uuid=U)  # connects, reads the handshake
    seq = vm.request("attach", "demo", 4096)   # writes the request into the page, rings the broker
    vm.wait(seq)                               # {"state", "status", "region", "size", "detail"}
    write_helper(path, gate_dir)               # a --hotplug-helper that plugs through the fake VM

The fake VM is a process of its own whose command line carries "-name NAME
-uuid U -qmp unix:MONITOR,server=on,wait=off" as QEMU's does: the broker reads
the VM's identity and its monitor from /proc/PID/cmdline. It connects to the
broker's factory socket, checks the handshake (version 0, its id 1, the page,
the broker's eventfd as peer 0, its own as peer 1), maps the page and, on its
"monitor", takes the helper's plug requests: it connects to the region's
socket itself, so that the region's new QEMU peer has the VM's pid, as with
QEMU's chardev-add. The page layout is proto/factory-page.h's.

FakeFactoryCrowd plays many VMs at once, for listings larger than one message:
one process with QEMU's command line forks a child per VM, each connected to
the factory socket with the handshake read (each child has its own pid, so
the broker sees VMs "vm:pid:N" of the one -name and monitor), nothing more;
the first may also connect to region sockets, for a VM with many devices.

The helper is what the broker runs as shmem-hotplug: `qmp --monitor M --server
S ...`. With GATE/hold present it writes its pid to GATE/started and waits
while hold exists (a plug in flight, for as long as a test wants); with
GATE/hold-after present it does the same after the VM has its handshake
(started-after). GATE/connected says that the VM connected to the region's socket.
"""

import json
import os
import struct
import subprocess
import sys
import time

OPS = {"attach": 1, "find": 2, "exclusive": 3, "detach": 4}
STATES = {0: "idle", 1: "busy", 2: "done"}

# The fake VM: commands on stdin, one JSON line per answer on stdout.
VM_SCRIPT = r'''
import json, mmap, os, select, socket, struct, sys, threading, time
factory, monitor = sys.argv[1], sys.argv[2]
REQ, ANS = 32, 120
out_lock = threading.Lock()
def say(**kw):
    with out_lock:
        print(json.dumps(kw), flush=True)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(factory)
msgs = []
for _ in range(5):
    data, fds, _, _ = socket.recv_fds(s, 8, 1)
    if len(data) != 8:
        say(event="closed", got=len(msgs)); sys.exit(1)
    value = struct.unpack("<q", data)[0]
    msgs.append((value, fds[0] if fds else -1))
    if value != 0 and len(msgs) == 1:
        say(event="refused", version=value); sys.stdin.read(); sys.exit(0)
ids = [m[0] for m in msgs]
if ids[:2] != [0, 1] or ids[2] != -1 or ids[3:] != [0, 1] or min(m[1] for m in msgs[2:]) < 0:
    say(event="bad-handshake", ids=ids); sys.exit(1)
page = mmap.mmap(msgs[2][1], 4096)
ring = msgs[3][1]
held = []
def serve(conn):
    f = conn.makefile("rw")
    line = f.readline().split()
    if len(line) != 2 or line[0] != "plug":
        f.write("error usage\n"); f.flush(); return
    r = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        r.connect(line[1])
        f.write("connected\n"); f.flush()
        data, _, _, _ = socket.recv_fds(r, 8, 1)
        version = struct.unpack("<q", data)[0] if len(data) == 8 else -2
        held.append(r)
        f.write(f"ok {version}\n" if version == 0 else f"error version {version}\n"); f.flush()
    except OSError as e:
        try:
            f.write(f"error unreachable {e}\n"); f.flush()
        except OSError:
            pass  # the helper is gone
def listen():
    l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    l.bind(monitor)
    l.listen(8)
    while True:
        c, _ = l.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
threading.Thread(target=listen, daemon=True).start()
def u64(off): return struct.unpack_from("<Q", page, off)[0]
def u32(off): return struct.unpack_from("<I", page, off)[0]
def cstr(off, n): return page[off:off + n].split(b"\0")[0].decode(errors="replace")
say(event="ready", magic=u64(0), version=u32(8), max_peers=u32(24))
for line in sys.stdin:
    cmd = line.split()
    if not cmd:
        continue
    if cmd[0] == "request":
        op, name, size = int(cmd[1]), cmd[2].encode(), int(cmd[3])
        seq = max(u64(REQ), u64(ANS)) + 1
        page[REQ + 24:REQ + 88] = name + b"\0" * (64 - len(name))
        struct.pack_into("<IIQ", page, REQ + 8, op, 0, size)
        struct.pack_into("<Q", page, REQ, seq)
        if len(cmd) < 5 or cmd[4] != "silent":
            os.write(ring, struct.pack("<Q", 1))
        say(event="sent", seq=seq)
    elif cmd[0] == "ring":
        os.write(ring, struct.pack("<Q", 1))
        say(event="rang")
    elif cmd[0] == "wait":
        seq, state, end = int(cmd[1]), cmd[2], time.monotonic() + float(cmd[3])
        want = {"busy": (1, 2), "done": (2,)}[state]
        while True:
            aseq, st = u64(ANS), u32(ANS + 8)
            if aseq == seq and st in want:
                say(event="answer", seq=aseq, state=st, status=u32(ANS + 12), size=u64(ANS + 16),
                    max_peers=u32(ANS + 24), region=cstr(ANS + 32, 64), detail=cstr(ANS + 96, 192))
                break
            if time.monotonic() > end:
                say(event="timeout", seq=aseq, state=st)
                break
            time.sleep(0.002)
    elif cmd[0] == "regions":
        say(event="regions", held=len(held))
'''

HELPER_SCRIPT = r'''#!{python}
import os, socket, sys, time
args = dict(zip(sys.argv[2::2], sys.argv[3::2]))
gate = os.environ.get("FAKE_HOTPLUG_GATE", "")
def mark(name):
    if gate:
        with open(os.path.join(gate, name + ".tmp"), "w") as f:
            f.write(str(os.getpid()))
        os.rename(os.path.join(gate, name + ".tmp"), os.path.join(gate, name))
def hold(flag, name):
    if gate and os.path.exists(os.path.join(gate, flag)):
        mark(name)
        end = time.monotonic() + 60
        while os.path.exists(os.path.join(gate, flag)) and time.monotonic() < end:
            time.sleep(0.01)
hold("hold", "started")
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(args["--monitor"])
except OSError as e:
    print(f"error unreachable {{e}}", flush=True)
    sys.exit(4)
f = s.makefile("rw")
f.write(f"plug {{args['--server']}}\n")
f.flush()
reply = f.readline().strip()
if reply == "connected":
    mark("connected")
    reply = f.readline().strip()
hold("hold-after", "started-after")
if reply.startswith("ok"):
    print("ok pci.0", flush=True)
    sys.exit(0)
print(f"error qmp {{reply}}", flush=True)
sys.exit(3)
'''


def write_helper(path):
    """Writes the fake hotplug helper to @path (executable); its gate is $FAKE_HOTPLUG_GATE."""
    with open(path, "w") as f:
        f.write(HELPER_SCRIPT.format(python=sys.executable))
    os.chmod(path, 0o755)


class FakeFactoryVm:
    def __init__(self, factory_sock, monitor, name, uuid=None, timeout=10.0):
        argv = [sys.executable, "-c", VM_SCRIPT, factory_sock, monitor, "-name", name]
        if uuid:
            argv += ["-uuid", uuid]
        argv += ["-qmp", f"unix:{monitor},server=on,wait=off"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        self.timeout = timeout
        self.ready = self._read()

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"fake VM {self.pid} exited with {self.proc.poll()}")
        return json.loads(line)

    def _cmd(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self._read()

    def request(self, op, name, size=0, ring=True):
        """Writes a request and rings (unless not @ring); returns its seq."""
        reply = self._cmd(f"request {OPS[op]} {name} {size}" + ("" if ring else " silent"))
        return reply["seq"]

    def ring(self):
        self._cmd("ring")

    def wait(self, seq, state="done", timeout=None):
        """The answer to @seq once it is @state ("busy": busy or done); its fields, or a timeout's."""
        return self._cmd(f"wait {seq} {state} {timeout or self.timeout}")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


# The crowd: one child per VM, connected in turn; "ready N" once all have the handshake.
CROWD_SCRIPT = r'''
import os, socket, struct, sys
factory, n, plugs = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sockets = open(plugs).read().split() if plugs else []
life_r, life_w = os.pipe()
for i in range(n):
    ok_r, ok_w = os.pipe()
    if os.fork() == 0:
        os.close(life_w); os.close(ok_r)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(factory)
        values = []
        for _ in range(5):
            data, fds, _, _ = socket.recv_fds(s, 8, 1)
            values.append(struct.unpack("<q", data)[0] if len(data) == 8 else None)
        # The first VM's devices: it connects to each region socket itself, as QEMU's chardev does.
        held = []
        for path in sockets if i == 0 else []:
            r = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            r.connect(path)
            data, fds, _, _ = socket.recv_fds(r, 8, 1)
            if len(data) != 8 or struct.unpack("<q", data)[0] != 0:
                values = ["refused", path]
            held.append(r)
        os.write(ok_w, b"1" if values[:2] == [0, 1] else b"0")
        os.read(life_r, 1)  # until the crowd goes
        os._exit(0)
    os.close(ok_w)
    if os.read(ok_r, 1) != b"1":
        print(f"refused {i}", flush=True); sys.exit(1)
    os.close(ok_r)
print(f"ready {n}", flush=True)
sys.stdin.read()
'''


class FakeFactoryCrowd:
    def __init__(self, factory_sock, monitor, name, n, plugs="", python=sys.executable, **popen):
        """@n VMs named @name with the monitor @monitor; the first with a device in each region
        whose QEMU socket the file @plugs lists; @popen for Popen (user=, group=: then a @python
        that user may run)."""
        argv = [python, "-c", CROWD_SCRIPT, factory_sock, str(n), plugs, "-name", name,
                "-qmp", f"unix:{monitor},server=on,wait=off"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **popen)
        line = self.proc.stdout.readline().strip()
        if line != f"ready {n}":
            self.close()
            raise RuntimeError(f"fake VM crowd: {line or 'exited with ' + str(self.proc.returncode)}")

    def close(self):
        """Every VM of the crowd goes (its children read end of file and exit)."""
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


def wait_file(path, timeout=20.0):
    """Waits until @path exists; returns its text."""
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > end:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.01)
    with open(path) as f:
        return f.read()
