# SPDX-License-Identifier: LGPL-2.1-or-later
"""libvirt: the libvirt side of the e2e tests (tests/e2e/test_libvirt.py), by virsh.

    daemons = libvirt.Daemons(workdir)
    daemons.ensure()                     # virtlogd and libvirtd up, QEMU probed
    libvirt.remove_stale_domains(b"test_libvirt")
    d = libvirt.Domain(workdir, image, "a", script, devices=[xml]).define().start()
    res = d.wait()                       # a guestlab.Result
    libvirt.remove_domain(d.name)        # destroy + undefine
    for name in libvirt.own_domains(): ...
    daemons.stop()                       # only what ensure() started

virtlogd and libvirtd are started if they are not running, and stopped only
if this process started them (and libvirtd not even then while domains of
others exist). Domains are named shmem-e2e-ROLE-PID, PID being the test's;
those of a process that is gone are stale. Needs root (qemu:///system) and
the Debian packages libvirt-daemon-system and libvirt-clients.
"""

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from xml.sax.saxutils import escape, quoteattr

from . import guestlab

URI = "qemu:///system"
DOMAIN_TIMEOUT = 180  # s, start to power off, per domain (TCG on a shared 2-core machine)
PREFIX = "shmem-e2e-"
NAME_RE = re.compile(rf"^{PREFIX}[a-z]+-(\d+)$")
QEMU_USER = "libvirt-qemu"  # Debian's libvirt runs QEMU as this user (qemu.conf's default)
PROBE_DEADLINE = 300        # s: a libvirtd that re-probes QEMU on every lookup (below) takes 32-35 s each


def sbin(tool):
    """@tool on $PATH or in /usr/sbin (a non-login root shell may lack it), else None."""
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")


def missing():
    """What the libvirt e2e tests lack to run, as sentences naming what to install
    or do; [] if nothing."""
    out = []
    for tool, package in (("libvirtd", "libvirt-daemon-system"), ("virtlogd", "libvirt-daemon-system"),
                          ("virsh", "libvirt-clients"), ("qemu-system-x86_64", "qemu-system-x86")):
        if not sbin(tool):
            out.append(f"{tool} is missing: install the Debian package '{package}' (scripts/install-deps.sh does)")
    if os.geteuid() != 0:
        out.append("needs root: qemu:///system, and QEMU sockets owned by group libvirt-qemu")
    return out


def virsh(*args, check=True, timeout=None):
    p = subprocess.run([sbin("virsh"), "-c", URI, *args], capture_output=True, text=True,
                       timeout=timeout or PROBE_DEADLINE)
    if check and p.returncode != 0:
        raise RuntimeError(f"virsh {' '.join(args)}: {p.stderr.strip()}")
    return p


# --- libvirtd -----------------------------------------------------------------

def _pid_of(name):
    """The pid in /run/NAME.pid if that process is @name, else None."""
    try:
        with open(f"/run/{name}.pid") as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/comm") as f:
            return pid if f.read().strip() == name else None
    except (OSError, ValueError):
        return None


def _virtlogd_up():
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect("/run/libvirt/virtlogd-sock")
        return True
    except OSError:
        return False


def _libvirtd_up():
    try:
        return virsh("uri", check=False, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def kvm_node_unusable_by_qemu():
    """Whether /dev/kvm exists but QEMU's user may not open it read-write.

    Debian's udev makes /dev/kvm root:kvm 0660 (50-udev-default.rules) and
    libvirt-qemu is in kvm. A machine without udev (a container, a Firecracker
    VM like the CI's) keeps the kernel's root:root 0600. libvirtd (9.0) then
    probes QEMU with KVM (the probe can open the node) but judges KVM "not
    available now" for QEMU's user on every capability lookup, discards its
    cache and probes again: 32-35 s for each `virsh define`
    (docs/libvirt.md, troubleshooting)."""
    import grp
    import pwd
    try:
        st = os.stat("/dev/kvm")
        pw = pwd.getpwnam(QEMU_USER)
    except (FileNotFoundError, KeyError):
        return False
    groups = set(os.getgrouplist(pw.pw_name, pw.pw_gid))
    if st.st_uid == pw.pw_uid:
        bits = st.st_mode >> 6
    elif st.st_gid in groups:
        bits = st.st_mode >> 3
    else:
        bits = st.st_mode
    return bits & 0o6 != 0o6


def start_libvirtd(workdir):
    """`libvirtd -d`; where /dev/kvm lacks udev's permissions, in a private
    mount namespace whose /dev/kvm is the same device with udev's owner and
    mode, so that libvirtd sees the same accelerators at every lookup and
    probes QEMU once. The host's /dev/kvm is left as it is; libvirtd and the
    QEMUs it starts see the node of the namespace."""
    if not kvm_node_unusable_by_qemu():
        subprocess.run([sbin("libvirtd"), "-d"], check=True, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return "as it is"
    import grp
    st = os.stat("/dev/kvm")
    node = os.path.join(workdir, "kvm")
    if os.path.exists(node):
        os.unlink(node)
    os.mknod(node, 0o600 | stat.S_IFCHR, st.st_rdev)
    os.chown(node, 0, grp.getgrnam("kvm").gr_gid)
    os.chmod(node, 0o660)
    subprocess.run([sbin("unshare"), "--mount", "--propagation", "private", "sh", "-c",
                    'mount --bind "$1" /dev/kvm && exec "$2" -d', "sh", node, sbin("libvirtd")],
                   check=True, timeout=60, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return "in a mount namespace with /dev/kvm as root:kvm 0660 (udev's), the host's being " \
           f"{stat.filemode(st.st_mode)} {st.st_uid}:{st.st_gid}"


class Daemons:
    """virtlogd and libvirtd: started if down (`NAME -d`, as docs/libvirt.md section 2);
    stop() ends only those this object started."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.started = []  # (name, pid)
        self.notes = []

    def ensure(self):
        for name, up in (("virtlogd", _virtlogd_up), ("libvirtd", _libvirtd_up)):
            if up():
                continue
            if name == "libvirtd":
                how = start_libvirtd(self.workdir)
            else:
                subprocess.run([sbin(name), "-d"], check=True, timeout=60,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                how = "as it is"
            end = time.monotonic() + 60
            while not up():
                if time.monotonic() > end:
                    raise RuntimeError(f"{name} -d did not come up within 60 s")
                time.sleep(0.1)
            pid = _pid_of(name)
            if pid:
                self.started.append((name, pid))
                self.notes.append(f"started {name} {pid} {how}")
        self.wait_capabilities()

    def wait_capabilities(self):
        """Ready means libvirtd has QEMU's capabilities: the first lookup
        probes QEMU, which under TCG on a loaded machine takes seconds (and a
        libvirtd someone else started on a machine without udev probes again
        on every lookup, 32-35 s each: then every virsh call below needs its
        long deadline). Awaited here, explicitly, with a deadline that fits."""
        t = time.monotonic()
        virsh("domcapabilities", "--virttype", "qemu", "--arch", "x86_64", "--machine", "q35",
              timeout=PROBE_DEADLINE)
        first = time.monotonic() - t
        t = time.monotonic()
        virsh("domcapabilities", "--virttype", "qemu", "--arch", "x86_64", "--machine", "q35",
              timeout=PROBE_DEADLINE)
        again = time.monotonic() - t
        self.notes.append(f"QEMU capabilities: first lookup {first:.2f} s, second {again:.2f} s")
        if again > 1:
            self.notes.append("libvirtd re-probes QEMU on every lookup (see kvm_node_unusable_by_qemu): "
                              f"each define and start takes that long, within their {PROBE_DEADLINE} s deadline")

    def stop(self):
        keep = False  # libvirtd stays, and so does the virtlogd it uses
        for name, pid in reversed(self.started):
            if name == "libvirtd":
                others = [d for d in virsh("list", "--all", "--name", check=False).stdout.split()
                          if not d.endswith(f"-{os.getpid()}")]
                keep = bool(others)
            if keep:
                self.notes.append(f"left {name} {pid} running: libvirtd has domains of others {others}")
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            end = time.monotonic() + 30
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < end:
                time.sleep(0.1)
            self.notes.append(f"stopped {name} {pid}" if not os.path.exists(f"/proc/{pid}")
                              else f"{name} {pid} did not stop within 30 s of SIGTERM")
        self.started = []


# --- domains -----------------------------------------------------------------

class Domain:
    """A libvirt domain that boots the e2e guest image and runs @script.

    Its initrd is the image's plus the script's overlay, built as
    guestlab.Guest builds its own; its serial console goes to a file;
    `poweroff` in the guest destroys it. Every file libvirt's QEMU reads is in
    @workdir, which must be traversable by libvirt-qemu (libvirt's DAC driver
    chowns the kernel and initrd, not the directories above them).
    """

    def __init__(self, workdir, image, role, script, machine="q35", devices=(),
                 timeout=DOMAIN_TIMEOUT, append=""):
        """@append: more kernel parameters."""
        self.name = f"{PREFIX}{role}-{os.getpid()}"
        self.workdir = workdir
        self.timeout = timeout
        self.machine = machine
        self.initrd = os.path.join(workdir, f"{role}.initrd")
        self.serial = os.path.join(workdir, f"{role}.serial")
        self.xml_path = os.path.join(workdir, f"{role}.xml")
        self.kernel = os.path.join(workdir, "vmlinux")
        if not os.path.exists(self.kernel):
            # A copy, not a link: libvirt chowns it while a domain runs.
            shutil.copyfile(image.kernel, self.kernel)
        guestlab.write_initrd(image, guestlab.overlay(script), self.initrd)
        self.started = None
        self.xml = self.make_xml(devices, append)

    def make_xml(self, devices, append=""):
        q35 = self.machine == "q35"
        # no_timer_check as guestlab.py: no boot-time timer test to fail under load.
        cmdline = "console=ttyS0 quiet panic=-1 no_timer_check" + (" intel_iommu=on" if q35 else "")
        cmdline = f"{cmdline} {append}".strip()
        # libvirt 9.0 refuses intremap without the split irqchip ("IOMMU
        # interrupt remapping requires split I/O APIC (ioapic driver='qemu')").
        # ACPI carries the IOMMU's DMAR table to the guest, and hotplug on pc.
        features = "<acpi/><ioapic driver='qemu'/>" if q35 else "<acpi/>"
        iommu = "<iommu model='intel'><driver intremap='on'/></iommu>" if q35 else ""
        return f"""<domain type='qemu'>
  <name>{escape(self.name)}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine={quoteattr(self.machine)}>hvm</type>
    <kernel>{escape(self.kernel)}</kernel>
    <initrd>{escape(self.initrd)}</initrd>
    <cmdline>{escape(cmdline)}</cmdline>
  </os>
  <features>{features}</features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'><source path={quoteattr(self.serial)}/><target port='0'/></serial>
    <memballoon model='none'/>
    {iommu}
{"".join(devices)}  </devices>
</domain>
"""

    def define(self):
        with open(self.xml_path, "w") as f:
            f.write(self.xml)
        # Remembered first: a define that outlives its deadline may still
        # complete in libvirtd, and the domain must go at the end all the same.
        _defined.add(self.name)
        virsh("define", self.xml_path)
        return self

    def start(self):
        """Starts the domain; QEMU has joined the regions of its XML when this returns."""
        if os.path.exists(self.serial):
            os.unlink(self.serial)
        self.started = time.monotonic()
        virsh("start", self.name)
        return self

    def uuid(self):
        return virsh("domuuid", self.name).stdout.strip()

    def state(self):
        return virsh("domstate", "--reason", self.name, check=False).stdout.strip()

    def live_xml(self):
        return virsh("dumpxml", self.name).stdout

    def log(self):
        try:
            with open(self.serial, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def wait_log(self, pattern, timeout=120):
        """Waits until the serial console matches @pattern (a str regex); returns the match."""
        end = min(time.monotonic() + timeout, self.started + self.timeout)
        rx = re.compile(pattern.encode())
        while True:
            m = rx.search(self.log())
            if m:
                return m
            if time.monotonic() > end or not self.state().startswith("running"):
                raise AssertionError(f"{self.name}: {pattern!r} not seen (state: {self.state()}):\n"
                                     + self.log().decode(errors="replace"))
            time.sleep(0.1)

    def wait(self):
        """Waits for the guest to power off, at most until its time limit (then
        destroys it); returns a guestlab.Result."""
        timed_out = False
        while self.state().startswith(("running", "paused", "in shutdown")):
            if time.monotonic() > self.started + self.timeout:
                timed_out = True
                virsh("destroy", self.name, check=False)
                break
            time.sleep(0.2)
        raw = self.log()
        m = guestlab.RESULT_RE.search(raw)
        log = raw.decode(errors="replace")
        state = self.state()
        if "crashed" in state:
            log += f"\n[{self.name}: {state}]"
        return guestlab.Result(int(m.group(1)) if m else None, log, timed_out,
                               time.monotonic() - self.started)

    def qemu_log(self):
        """libvirt's log of the domain's QEMU (command line, stderr)."""
        try:
            with open(f"/var/log/libvirt/qemu/{self.name}.log", errors="replace") as f:
                return f.read()
        except OSError as e:
            return f"(no QEMU log: {e})"

    def diagnostics(self):
        """libvirt's view of the domain, for a failed test."""
        out = [f"----- {self.name}: state {self.state()}"]
        p = virsh("dumpxml", self.name, check=False)
        out.append(p.stdout or p.stderr)
        out.append(f"----- /var/log/libvirt/qemu/{self.name}.log (end)\n"
                   + "\n".join(self.qemu_log().splitlines()[-25:]))
        out.append(f"----- {self.name} serial console\n" + self.log().decode(errors="replace"))
        return "\n".join(out)


_defined = set()


def remove_domain(name):
    """destroy + undefine; True if libvirt no longer knows @name."""
    virsh("destroy", name, check=False)
    virsh("undefine", name, check=False)
    gone = virsh("domstate", name, check=False).returncode != 0
    if gone:
        _defined.discard(name)
    return gone


def remove_stale_domains(owner):
    """Undefines shmem-e2e-*-PID domains whose test process is gone (a run
    killed by ctest's timeout cannot clean up after itself): PID is no
    process, or one whose command line lacks @owner (bytes: the test's name)."""
    for name in virsh("list", "--all", "--name", check=False).stdout.split():
        m = NAME_RE.match(name)
        if not m:
            continue
        try:
            with open(f"/proc/{m.group(1)}/cmdline", "rb") as f:
                if owner in f.read():
                    continue
        except OSError:
            pass
        remove_domain(name)


def own_domains():
    """The domains of this run: those it defined, and any libvirt knows by its names."""
    names = set(_defined)
    if _libvirtd_up():
        names.update(n for n in virsh("list", "--all", "--name", check=False).stdout.split()
                     if NAME_RE.match(n) and n.endswith(f"-{os.getpid()}"))
    return names


# --- a test program's cleanup --------------------------------------------------
# What a libvirt test started (Daemons, a Broker: anything with stop()) is
# registered here; cleanup() removes this run's domains first (they hold
# broker sockets), then stops the rest in reverse. main() runs the tests and
# cleans up whatever happens, SIGTERM (ctest's timeout) included.

_cleanups = []


def register(thing):
    """@thing (with stop(), and optional notes to print) is stopped by cleanup()."""
    _cleanups.append(thing)
    return thing


def cleanup(tag="libvirt"):
    for name in own_domains():
        remove_domain(name)
    for c in reversed(_cleanups):
        try:
            c.stop()
        except Exception as e:  # noqa: BLE001 - cleanup goes on
            sys.stderr.write(f"cleanup: {e}\n")
        for note in getattr(c, "notes", []):
            sys.stderr.write(f"{tag}: {note}\n")
    _cleanups.clear()


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def main(tag):
    """unittest.main() of the calling test program, then cleanup(); exits with its result."""
    import unittest
    signal.signal(signal.SIGTERM, _on_sigterm)
    t = time.monotonic()
    try:
        prog = unittest.main(module="__main__", verbosity=2, exit=False)
    finally:
        cleanup(tag)
    sys.stderr.write(f"{tag}: {time.monotonic() - t:.1f} s\n")
    sys.exit(0 if prog.result.wasSuccessful() else 1)


class DiagnosticsOnFailure:
    """A TestCase mixin: what tearDown() collected in self.diag (logs, XML:
    tearDown undefines the domains next) goes to stderr if the test failed."""

    def run(self, result=None):
        result = result or self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        super().run(result)
        if len(result.failures) + len(result.errors) > before and getattr(self, "diag", ""):
            sys.stderr.write(self.diag + "\n")
        return result
