# SPDX-License-Identifier: LGPL-2.1-or-later
"""guestlab: boot throw-away QEMU guests for the e2e tests (stdlib only).

    img = guestlab.Image.build(outdir, shmem_guest_binary)   # cached by the script
    g = guestlab.Guest(img, "shmem-guest demo info", workdir,
                       shmem=[guestlab.Shmem(sock_path, vectors=17)])
    g.start()
    g.wait_connected()      # QEMU has finished the ivshmem handshake(s)
    res = g.wait()          # rc of the guest's script, serial log, timing
    assert res.rc == 0, res.log

Guests run concurrently (start several, then wait on each). Every guest has a
hard time limit: past it QEMU is killed and the result says timed_out, so a
test fails instead of hanging (QEMU blocks for ever in its ivshmem handshake if
its server misbehaves: docs/design.md, "Refusing a QEMU").

The script reaches the guest as /test.sh in an overlay cpio appended to the
base initramfs (the kernel unpacks concatenated archives in order); the
image's /init runs it and prints "SHMEM-RESULT rc=N".
"""

import ctypes
import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid

# The image script stays with the e2e tests it serves.
E2E = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e")
RESULT_RE = re.compile(rb"SHMEM-RESULT rc=(\d+)")
_running = set()
PR_SET_PDEATHSIG = 1


def die_with_parent():
    """In the child: SIGKILL when the test process dies, even by SIGKILL (a
    ctest timeout), so that no QEMU outlives its test."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Image:
    def __init__(self, kernel, initrd):
        self.kernel = kernel
        self.initrd = initrd

    @classmethod
    def from_dir(cls, outdir):
        """The image build() made in @outdir (the e2e-guest-image fixture's);
        AssertionError if there is none."""
        img = cls(os.path.join(outdir, "vmlinux"), os.path.join(outdir, "initramfs.cpio.gz"))
        if not os.path.exists(img.initrd):
            raise AssertionError(f"no guest image in {outdir}: run tests/e2e/test-guests.py --build-image")
        return img

    @classmethod
    def build(cls, outdir, guest_binary):
        """Runs build-guest-image.sh (fast when its cache is warm)."""
        subprocess.run([os.path.join(E2E, "build-guest-image.sh"), outdir, guest_binary],
                       check=True, stdout=subprocess.DEVNULL)
        return cls(os.path.join(outdir, "vmlinux"), os.path.join(outdir, "initramfs.cpio.gz"))


class Shmem:
    """One -device ivshmem-doorbell on the chardev socket at @path."""

    def __init__(self, path, vectors):
        self.path = path
        self.vectors = vectors


class Result:
    def __init__(self, rc, log, timed_out, seconds):
        self.rc = rc              # the script's exit status; None if it never finished
        self.log = log            # serial console, decoded
        self.timed_out = timed_out
        self.seconds = seconds    # QEMU start to exit

    def __repr__(self):
        return f"Result(rc={self.rc}, timed_out={self.timed_out}, seconds={self.seconds:.1f})"


def cpio_newc(files):
    """An uncompressed newc archive of {path: (mode, bytes)}; directories have bytes None."""
    out = bytearray()

    def entry(name, mode, data, ino):
        name_b = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_b), 0]
        out.extend(b"070701" + b"".join(b"%08x" % f for f in fields) + name_b)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, (mode, data)) in enumerate(sorted(files.items()), start=1):
        if data is None:
            entry(name, 0o040000 | mode, b"", ino)
        else:
            entry(name, 0o100000 | mode, data, ino)
    entry("TRAILER!!!", 0, b"", 0)
    return bytes(out)


def overlay(script, files=None):
    """The gzipped overlay cpio of a guest: @script as /test.sh, @files
    {guest_path: bytes} beside it, all executable."""
    entries = {"test.sh": (0o755, script.encode())}
    for path, data in (files or {}).items():
        entries[path.lstrip("/")] = (0o755, data)
    for d in sorted({os.path.dirname(p) for p in entries if os.path.dirname(p)}):
        entries.setdefault(d, (0o755, None))
    return gzip.compress(cpio_newc(entries), mtime=0)


def write_initrd(image, overlay_gz, path):
    """Writes @image's initramfs followed by @overlay_gz to @path (the kernel
    unpacks concatenated archives in order, so the overlay's files win)."""
    with open(image.initrd, "rb") as f, open(path, "wb") as o:
        o.write(f.read())
        o.write(overlay_gz)


# Shell functions for test scripts. run_with_irqs MARKER COMMAND... runs a
# shmem-guest command line in the background and, while it still holds its
# vfio device, copies the vfio MSI-X interrupt counts to the log once its
# output has a line matching MARKER: the counts are the proof that signals
# came as interrupts, not through the library's periodic look at the pending
# word. irq_counts() reads them back.
GUEST_HELPERS = r"""
run_with_irqs() {
        marker=$1; shift
        "$@" >/tmp/out 2>&1 &
        pid=$!
        while kill -0 $pid 2>/dev/null && ! grep -q "$marker" /tmp/out; do sleep 0.05; done
        grep vfio-msix /proc/interrupts | sed 's/^/irq: /'
        wait $pid; rc=$?
        cat /tmp/out
        return $rc
}
"""


def irq_counts(log, device=None):
    """{vector: count} from the "irq:" lines of run_with_irqs; of the device
    at PCI address @device (e.g. "0000:01:00.0") alone if given, as a process
    holding several (the factory's and a region's) has vectors of each."""
    counts = {}
    for m in re.finditer(r"^irq:\s+\d+:\s+(\d+)\s.*vfio-msix\[(\d+)\]\(([^)]*)\)", log, re.M):
        if device is None or m.group(3) == device:
            counts[int(m.group(2))] = int(m.group(1))
    return counts


def answers(log):
    """[(command, name, {field: value})] of shmem-guest's factory answer lines
    (clients/tool/attach.c), in order: status (an int), size, region, device,
    factory, and detail (the rest of the line) if there is one."""
    out = []
    for m in re.finditer(r"shmem-tool: (attach|find|create|detach) (\S+) status=(\d+) \([^)]*\)(.*)", log):
        head, _, detail = m.group(4).partition(" detail=")
        fields = dict(f.split("=", 1) for f in head.split() if "=" in f)
        fields["status"] = int(m.group(3))
        if detail:
            fields["detail"] = detail.strip()
        out.append((m.group(1), m.group(2), fields))
    return out


def answer(log, command, name, nth=0):
    """The fields of the @nth answer line of @command on @name; AssertionError if there is none."""
    found = [f for c, n, f in answers(log) if (c, n) == (command, name)]
    if len(found) <= nth:
        raise AssertionError(f"no {command} {name} #{nth} in:\n{log}")
    return found[nth]


def qmp_answers(path):
    """True when the QEMU whose QMP socket is @path answers a command: its
    main loop runs (devices realized, signals handled); False if not yet."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(path)
            f = s.makefile("rwb")
            json.loads(f.readline())  # greeting
            f.write(b'{"execute":"qmp_capabilities"}\n')
            f.flush()
            return "return" in json.loads(f.readline())
    except (OSError, ValueError):
        return False


class Guest:
    def __init__(self, image, script, workdir, shmem=(), name="guest", timeout=120,
                 iommu=True, memory="256M", files=None, append=""):
        """@script: shell run as /test.sh in the guest; @files: more overlay files
        {guest_path: bytes} (made executable); @iommu: intel-iommu, which vfio
        needs (without it libshmem-guest falls back to polling)."""
        self.image = image
        self.name = name
        self.workdir = workdir
        self.timeout = timeout
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.qmp_path = os.path.join(workdir, f"{name}.qmp")
        self.initrd = os.path.join(workdir, f"{name}.initrd")
        self.proc = None
        self.started = None
        self.connected = False
        self.overlay = overlay(script, files)

        self.uuid = self.uuid_of(name)
        self.argv = ["qemu-system-x86_64", "-name", f"guest={name}", "-uuid", self.uuid,
                     "-accel", "tcg", "-machine", "q35", "-cpu", "qemu64",
                     "-m", memory, "-smp", "1", "-nodefaults", "-no-user-config",
                     "-display", "none", "-serial", f"file:{self.log_path}", "-no-reboot",
                     "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        # no_timer_check: a TCG guest on a loaded host can fail the boot-time
        # timer IRQ test, which panics with interrupt remapping on.
        cmdline = "console=ttyS0 quiet panic=-1 no_timer_check"
        if iommu:
            self.argv += ["-device", "intel-iommu,intremap=on"]
            cmdline += " intel_iommu=on"
        self.argv += ["-kernel", image.kernel, "-initrd", self.initrd,
                      "-append", f"{cmdline} {append}".strip()]
        for i, s in enumerate(shmem):
            self.argv += ["-chardev", f"socket,path={s.path},id=ivs{i}",
                          "-device", f"ivshmem-doorbell,chardev=ivs{i},vectors={s.vectors}"]

    @staticmethod
    def uuid_of(name):
        """The guest's -uuid, one per name (libvirt passes the domain's): inspect shows it."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"shmem-e2e:{name}"))

    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        write_initrd(self.image, self.overlay, self.initrd)
        for p in (self.log_path, self.qmp_path):
            if os.path.exists(p):
                os.unlink(p)
        self.started = time.monotonic()
        self.stderr_path = os.path.join(self.workdir, f"{self.name}.stderr")
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=err,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=die_with_parent)
        _running.add(self)
        return self

    def _deadline(self):
        return self.started + self.timeout

    def is_connected(self):
        """True once QEMU answers on QMP: its main loop runs, so every device,
        ivshmem handshake included, is realized."""
        self.connected = self.connected or qmp_answers(self.qmp_path)
        return self.connected

    def wait_connected(self, timeout=30):
        """Polls until QEMU is connected; raises if it exits or time runs out."""
        end = min(time.monotonic() + timeout, self._deadline())
        while not self.is_connected():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: QEMU exited with {self.proc.returncode}: "
                                   f"{self.qemu_stderr()}")
            if time.monotonic() > end:
                raise TimeoutError(f"{self.name}: QEMU did not come up within {timeout}s")
            time.sleep(0.05)

    def qemu_stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace").strip()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def wait_log(self, pattern, timeout=60):
        """Waits until the serial log matches @pattern (bytes regex); returns the match."""
        end = min(time.monotonic() + timeout, self._deadline())
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.log())
            if m:
                return m
            if self.proc.poll() is not None or time.monotonic() > end:
                raise TimeoutError(f"{self.name}: {pattern!r} not seen:\n"
                                   + self.log().decode(errors="replace"))
            time.sleep(0.05)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        _running.discard(self)

    def wait(self):
        """Waits for the guest to power off, at most until its time limit."""
        timed_out = False
        try:
            self.proc.wait(timeout=max(0.0, self._deadline() - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
        self.kill()
        seconds = time.monotonic() - self.started
        raw = self.log()
        m = RESULT_RE.search(raw)
        log = raw.decode(errors="replace")
        if self.proc.returncode not in (0, -signal.SIGKILL):
            log += f"\n[qemu exit {self.proc.returncode}] {self.qemu_stderr()}"
        return Result(int(m.group(1)) if m else None, log, timed_out, seconds)


class Environment(dict):
    """The environment variables an e2e test's registration (tests/e2e/
    CMakeLists.txt) sets, read at import: ENV = Environment("SHMEM_BROKERD", ...),
    then ENV.require() where the test starts."""

    def __init__(self, *names):
        super().__init__((k, os.environ.get(k, "")) for k in names)

    def require(self):
        """AssertionError naming every variable that is unset or empty."""
        unset = [k for k, v in self.items() if not v]
        if unset:
            raise AssertionError(f"not set: {', '.join(unset)} (tests/e2e/CMakeLists.txt sets them)")


def kill_all():
    for g in list(_running):
        g.kill()


def _main():
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(description="Boot one e2e guest and run SCRIPT in it.")
    ap.add_argument("--image-dir", required=True)
    ap.add_argument("--guest-bin", required=True, help="the static shmem-guest")
    ap.add_argument("--shmem", action="append", default=[], metavar="SOCKET:VECTORS")
    ap.add_argument("--no-iommu", action="store_true")
    ap.add_argument("--timeout", type=int, default=120)
    ap.add_argument("script")
    a = ap.parse_args()
    img = Image.build(a.image_dir, a.guest_bin)
    shm = [Shmem(p, int(v)) for p, v in (s.rsplit(":", 1) for s in a.shmem)]
    with tempfile.TemporaryDirectory() as wd:
        g = Guest(img, a.script, wd, shm, iommu=not a.no_iommu, timeout=a.timeout).start()
        try:
            res = g.wait()
        finally:
            kill_all()
    sys.stdout.write(res.log)
    print(f"guestlab: {res}")
    sys.exit(0 if res.rc == 0 else 1)


if __name__ == "__main__":
    _main()
