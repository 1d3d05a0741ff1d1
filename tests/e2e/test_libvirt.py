# SPDX-License-Identifier: LGPL-2.1-or-later
"""e2e: a real libvirtd runs TCG domains that share regions of the real broker.

1. Two q35 domains (intel-iommu, so vfio MSI-X interrupts work in the guest)
   are defined with the device `shmemctl xml` prints and share region `lv`:
   data both ways, a signal each way with the right sender, both seen as
   interrupts; `shmemctl inspect` names both domains with libvirt's UUIDs.
2. A running `pc` domain gets region `hot` with `shmemctl attach --live`, uses
   it (data and a signal with a host peer, polling: no IOMMU), and
   `shmemctl detach --live` takes it away: the guest sees the device leave and
   the broker frees its index.

The test starts virtlogd and libvirtd if they are not running and stops only
what it started (and libvirtd not even then while domains of others exist);
its domains are named shmem-e2e-*-PID and are destroyed and undefined at the
end whatever happens; ones left by a killed run are undefined at the next
start. Needs root (qemu:///system, socket group libvirt-qemu) and the Debian
packages libvirt-daemon-system and libvirt-clients.

Run: python3 test_libvirt.py  (paths from the environment: tests/e2e/CMakeLists.txt)
"""

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest
from xml.sax.saxutils import escape, quoteattr

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
import harness  # noqa: E402
from harness import guestlab  # noqa: E402

ENV = {k: os.environ.get(k, "") for k in ("SHMEM_BROKERD", "SHMEM_PEER", "SHMEM_GUEST",
                                          "SHMEM_SHMEMCTL", "SHMEM_E2E_IMAGE_DIR")}
URI = "qemu:///system"
DOMAIN_TIMEOUT = 180  # s, start to power off, per domain (TCG on a shared 2-core machine)
MS = "60000"          # waits inside the scripts
PREFIX = "shmem-e2e-"
NAME_RE = re.compile(rf"^{PREFIX}[a-z]+-(\d+)$")


def sbin(tool):
    """@tool on $PATH or in /usr/sbin (a non-login root shell may lack it), else None."""
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")


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


QEMU_USER = "libvirt-qemu"  # Debian's libvirt runs QEMU as this user (qemu.conf's default)
PROBE_DEADLINE = 300        # s: a libvirtd that re-probes QEMU on every lookup (below) takes 32-35 s each


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
                 timeout=DOMAIN_TIMEOUT):
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
        self.xml = self.make_xml(devices)

    def make_xml(self, devices):
        q35 = self.machine == "q35"
        # no_timer_check as guestlab.py: no boot-time timer test to fail under load.
        cmdline = "console=ttyS0 quiet panic=-1 no_timer_check" + (" intel_iommu=on" if q35 else "")
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


def remove_stale_domains():
    """Undefines shmem-e2e-*-PID domains whose test process is gone (a run
    killed by ctest's timeout cannot clean up after itself)."""
    for name in virsh("list", "--all", "--name", check=False).stdout.split():
        m = NAME_RE.match(name)
        if not m:
            continue
        try:
            with open(f"/proc/{m.group(1)}/cmdline", "rb") as f:
                if b"test_libvirt" in f.read():
                    continue
        except OSError:
            pass
        remove_domain(name)


# --- the broker: harness.Broker ---------------------------------------------

def start_broker(workdir, regions):
    """The real shmem-brokerd on @workdir/run with @regions declared, once it answers."""
    argv = [ENV["SHMEM_BROKERD"], "--no-config", "-v"]
    for r in regions:
        argv += ["--region", r]
    return harness.Broker(argv, os.path.join(workdir, "run"), os.path.join(workdir, "broker.log"))


def shmemctl(broker, *args, timeout=90):
    return subprocess.run([ENV["SHMEM_SHMEMCTL"], "--socket", broker.socket, *args],
                          capture_output=True, text=True, timeout=timeout)


def senders(log):
    """Every sender bitmap other than 0 in the "event" lines of @log."""
    return [int(s, 16) for s in re.findall(r"shmem-tool: event senders=0x([0-9a-f]+)", log)
            if int(s, 16)]


# --- the test ---------------------------------------------------------------

class LibvirtTest(unittest.TestCase):
    daemons = None
    broker = None
    workdir = None

    @classmethod
    def setUpClass(cls):
        missing = [f"{k} is not set (tests/e2e/CMakeLists.txt sets it)" for k, v in ENV.items() if not v]
        for tool, package in (("libvirtd", "libvirt-daemon-system"), ("virtlogd", "libvirt-daemon-system"),
                              ("virsh", "libvirt-clients"), ("qemu-system-x86_64", "qemu-system-x86")):
            if not sbin(tool):
                missing.append(f"{tool} is missing: install the Debian package '{package}' "
                               "(scripts/install-deps.sh does)")
        if os.geteuid() != 0:
            missing.append("needs root: qemu:///system, and QEMU sockets owned by group libvirt-qemu")
        if missing:
            raise AssertionError("\n".join(missing))
        d = ENV["SHMEM_E2E_IMAGE_DIR"]
        cls.image = guestlab.Image(os.path.join(d, "vmlinux"), os.path.join(d, "initramfs.cpio.gz"))
        if not os.path.exists(cls.image.initrd):
            raise AssertionError(f"no guest image in {d}: run test-guests.py --build-image")

        # Short path (Unix socket paths have 108 bytes); 0755 so that
        # libvirt-qemu can reach the sockets, the kernel and the initrds.
        cls.workdir = tempfile.mkdtemp(prefix="shmem-e2e-lv-")
        os.chmod(cls.workdir, 0o755)
        # Class cleanups run even when setUpClass fails half-way.
        cls.addClassCleanup(shutil.rmtree, cls.workdir, ignore_errors=True)
        cls.addClassCleanup(cleanup_all)
        cls.daemons = Daemons(cls.workdir)
        _cleanups.append(cls.daemons)
        cls.daemons.ensure()
        remove_stale_domains()
        cls.broker = start_broker(cls.workdir, ["lv:1M", "hot:1M", "left:1M"])
        _cleanups.append(cls.broker)

    def setUp(self):
        self.domains = []
        self.diag = ""

    def tearDown(self):
        # Collected now, printed by run() if the test failed: undefine comes next.
        self.diag = "\n".join(d.diagnostics() for d in self.domains)
        self.diag += "\n----- broker.log\n" + self.broker.log()
        for d in self.domains:
            self.assertTrue(remove_domain(d.name), f"{d.name} is still defined")

    def run(self, result=None):
        result = result or self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        super().run(result)
        if len(result.failures) + len(result.errors) > before and getattr(self, "diag", ""):
            sys.stderr.write(self.diag + "\n")
        return result

    def domain(self, role, script, **kw):
        d = Domain(self.workdir, self.image, role, script, **kw)
        self.domains.append(d)
        return d.define()

    def finish(self, d):
        res = d.wait()
        self.assertFalse(res.timed_out, f"{d.name} did not power off within {d.timeout} s:\n{res.log}")
        self.assertEqual(res.rc, 0, f"{d.name} failed:\n{res.log}")
        return res

    def inspect(self, region):
        p = shmemctl(self.broker, "--json", "inspect", region)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def wait_peers(self, region, want, timeout=30):
        """Polls inspect until the peers' vm_name (label for host peers) are @want."""
        end = time.monotonic() + timeout
        while True:
            info = self.inspect(region)
            got = {p.get("vm_name", p["label"]) for p in info["peers"]}
            if got == set(want):
                return info
            if time.monotonic() > end:
                self.fail(f"peers of {region} are {got}, want {set(want)}: {info}")
            time.sleep(0.1)

    def test_00_broker_sockets_reachable_for_qemu(self):
        """The QEMU sockets are 0660 root:libvirt-qemu in directories libvirt-qemu can search."""
        import grp
        sock = self.broker.qemu_socket("lv")
        st = os.stat(sock)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(grp.getgrgid(st.st_gid).gr_name, "libvirt-qemu")
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        d = os.path.dirname(sock)
        while d != "/":
            st = os.stat(d)
            ok = st.st_mode & 0o001 or (st.st_mode & 0o010 and grp.getgrgid(st.st_gid).gr_name == "libvirt-qemu")
            self.assertTrue(ok, f"libvirt-qemu cannot search {d} ({oct(st.st_mode)})")
            d = os.path.dirname(d)

    def test_10_two_q35_domains_share_a_region(self):
        xml = shmemctl(self.broker, "xml", "lv")
        self.assertEqual(xml.returncode, 0, xml.stderr)
        self.assertIn("<model type='ivshmem-doorbell'/>", xml.stdout)
        self.assertIn(f"<server path='{self.broker.qemu_socket('lv')}'/>", xml.stdout)
        self.assertIn("<msi vectors='17' ioeventfd='on'/>", xml.stdout)

        # A's ring to B only after B wrote (so B has MSI-X on), B's to A only after
        # A's came: both rings hit enabled vectors and must count as interrupts.
        a = self.domain("a", guestlab.GUEST_HELPERS + f"""
run_with_irqs unconsumed shmem-guest lv info write 0 from-a expect 64 from-b {MS} read 64 6 \
        notify 0x2 wait-from 0x2 {MS} unconsumed sleep 300
""", devices=[xml.stdout])
        b = self.domain("b", guestlab.GUEST_HELPERS + f"""
run_with_irqs unconsumed shmem-guest lv info write 64 from-b expect 0 from-a {MS} read 0 6 \
        wait-from 0x1 {MS} notify 0x1 unconsumed sleep 300
""", devices=[xml.stdout])
        # One after the other: QEMU joins during `virsh start`, so A is index 0, B 1.
        a.start()
        b.start()

        # Both attached (QEMU holds its index until it exits): inspect names the domains.
        info = self.wait_peers("lv", {a.name, b.name})
        peers = {p["vm_name"]: p for p in info["peers"]}
        for d, index in ((a, 0), (b, 1)):
            p = peers[d.name]
            self.assertEqual(p["kind"], "qemu", p)
            self.assertEqual(p["index"], index, info)
            self.assertEqual(p["vm_uuid"], d.uuid(), p)
            self.assertTrue(p["libvirt"], f"{d.name} not confirmed by libvirt's pid file: {p}")
        text = shmemctl(self.broker, "inspect", "lv")
        self.assertEqual(text.returncode, 0, text.stderr)
        for d in (a, b):
            self.assertRegex(text.stdout, rf"{re.escape(d.name)} .* {d.uuid()} \(libvirt\)")

        ra, rb = self.finish(a), self.finish(b)
        # Data both ways (the expects passed, and each read the other's string).
        self.assertIn("shmem-tool: info index=0 size=1048576 max_peers=16", ra.log)
        self.assertIn("shmem-tool: info index=1 size=1048576 max_peers=16", rb.log)
        self.assertIn("shmem-tool: read 64 from-b", ra.log)
        self.assertIn("shmem-tool: read 0 from-a", rb.log)
        # Signals with the right sender: B heard A (index 0), A heard B (index 1).
        self.assertEqual(set(senders(rb.log)), {0x1}, rb.log)
        self.assertEqual(set(senders(ra.log)), {0x2}, ra.log)
        # ... as MSI-X interrupts through vfio (vector j: peer j rang): the IOMMU works.
        ia, ib = guestlab.irq_counts(ra.log), guestlab.irq_counts(rb.log)
        self.assertEqual(len(ib), 17, rb.log)
        self.assertGreater(ib.get(0, 0), 0, rb.log)
        self.assertGreater(ia.get(1, 0), 0, ra.log)
        # Both powered off: both indices are free again.
        self.assertEqual(self.inspect("lv")["peers"], [])

    def hotplug_domain(self, role, region, tool):
        """A running pc domain whose script waits for an ivshmem device
        (1af4:1110) to appear, runs `shmem-guest REGION TOOL...` on it, and
        waits for it to go; returned once the script waits for the device."""
        d = self.domain(role, f"""
ivshmem() {{
        for d in /sys/bus/pci/devices/*; do
                [ "$(cat $d/vendor)" = 0x1af4 ] && [ "$(cat $d/device)" = 0x1110 ] && {{ echo ${{d##*/}}; return 0; }}
        done
        return 1
}}
if dev=$(ivshmem); then echo "hotplug: FAIL $dev present at boot"; exit 2; fi
echo "hotplug: waiting for the device"
n=0
until dev=$(ivshmem); do
        n=$((n + 1)); [ $n -gt 2400 ] && {{ echo "hotplug: FAIL no device"; exit 3; }}; sleep 0.05
done
echo "hotplug: device $dev appeared"
shmem-guest {region} {tool} || exit 4
echo "hotplug: tool done"
n=0
while [ -e /sys/bus/pci/devices/$dev ]; do
        n=$((n + 1)); [ $n -gt 2400 ] && {{ echo "hotplug: FAIL device stayed"; exit 5; }}; sleep 0.05
done
echo "hotplug: device $dev gone"
# Lingers: a domain that powers off while libvirt completes the detach fails it.
sleep 5
""", machine="pc")
        d.start()
        d.wait_log(r"hotplug: waiting for the device")
        self.assertNotIn("<shmem", d.live_xml())
        return d

    def attach(self, d, region):
        t = time.monotonic()
        p = shmemctl(self.broker, "attach", d.name, region, "--live")
        self.assertEqual(p.returncode, 0, f"attach: {p.stdout}{p.stderr}")
        sys.stderr.write(f"test_libvirt: attach --live {time.monotonic() - t:.2f} s\n")
        self.assertIn(f"<shmem name='{region}'>", d.live_xml())
        info = self.wait_peers(region, {d.name})
        self.assertEqual(info["peers"][0]["vm_uuid"], d.uuid(), info)
        return info["peers"][0]

    def detach(self, d, region):
        t = time.monotonic()
        p = shmemctl(self.broker, "detach", d.name, region, "--live", "--timeout", "60")
        self.assertEqual(p.returncode, 0, f"detach: {p.stdout}{p.stderr}")
        sys.stderr.write(f"test_libvirt: detach --live {time.monotonic() - t:.2f} s\n")
        self.assertNotIn("<shmem", d.live_xml())

    def test_20_hotplug_into_running_pc_domain(self):
        c = self.hotplug_domain("hp", "hot", f"info expect 0 from-host {MS} write 64 from-guest notify 0x2")
        self.assertEqual(self.attach(c, "hot")["index"], 0)

        # The host peer stays until the guest's index is gone: it sees the
        # detach as a membership event (and QEMU 7.2 must not see a peer leave
        # before its device is unplugged: test_30).
        with open(os.path.join(self.workdir, "host.out"), "w+") as out:
            h = subprocess.Popen([ENV["SHMEM_PEER"], "--socket", self.broker.socket, "--label", "host",
                                  "hot", "info", "write", "0", "from-host", "expect", "64", "from-guest", MS,
                                  "wait-from", "0x1", MS, "wait-active", "0x2", MS],
                                 stdout=out, stderr=subprocess.STDOUT)
            try:
                c.wait_log(r"hotplug: tool done")
                self.detach(c, "hot")
                h.wait(90)
            finally:
                if h.poll() is None:
                    h.kill()
                    h.wait()
                out.seek(0)
                host = out.read()
        self.assertEqual(h.returncode, 0, host)
        self.assertIn("shmem-tool: info index=1 ", host)
        self.assertEqual(set(senders(host)), {0x1}, host)     # the guest (index 0) rang
        self.assertIn("shmem-tool: active 0x2", host)         # ... and left at the detach

        rc = self.finish(c)
        dev = re.search(r"hotplug: device (\S+) appeared", rc.log).group(1)
        self.assertIn("shmem-tool: info index=0 size=1048576 max_peers=16", rc.log)
        self.assertIn(f"hotplug: device {dev} gone", rc.log)
        # The broker freed the index: nobody is left, and a newcomer gets index 0.
        self.assertEqual(self.inspect("hot")["peers"], [])
        p = subprocess.run([ENV["SHMEM_PEER"], "--socket", self.broker.socket, "hot", "info"],
                           capture_output=True, text=True, timeout=30)
        self.assertIn("shmem-tool: info index=0 ", p.stdout)

    def test_30_detach_after_a_peer_left(self):
        """Detach from a QEMU that was told a peer left is refused. QEMU 7.2
        (Debian 12) aborts there ("double free or corruption"):
        close_peer_eventfds() in hw/misc/ivshmem.c frees a departed peer's
        eventfd array and keeps the pointer, and unplugging frees it again. The
        broker counts the departures it told each QEMU (departures_told) and
        shmemctl detach refuses while there is one; powering the guest off is
        the safe way to release the region (docs/libvirt.md)."""
        d = self.hotplug_domain("left", "left", f"info expect 0 from-host {MS}")
        self.attach(d, "left")
        p = subprocess.run([ENV["SHMEM_PEER"], "--socket", self.broker.socket, "--label", "host",
                            "left", "info", "write", "0", "from-host"],
                           capture_output=True, text=True, timeout=30)
        self.assertIn("shmem-tool: info index=1 ", p.stdout)
        d.wait_log(r"hotplug: tool done")
        info = self.wait_peers("left", {d.name})  # the broker has told QEMU that index 1 left
        self.assertEqual(info["peers"][0]["departures_told"], 1, info)
        p = shmemctl(self.broker, "detach", d.name, "left", "--live", "--timeout", "60")
        self.assertEqual(p.returncode, 1, f"detach: {p.stdout}{p.stderr}\n{d.diagnostics()}")
        self.assertIn(f"the QEMU of domain '{d.name}' was told that 1 peer left region 'left'", p.stderr)
        # Nothing was done: the guest runs on with its device, and holds its index.
        self.assertTrue(d.state().startswith("running"), d.state())
        self.assertIn("<shmem name='left'>", d.live_xml())
        self.wait_peers("left", {d.name})
        # Powering off releases the region: QEMU exits, the broker frees the index.
        virsh("destroy", d.name)
        self.wait_peers("left", set())

    def test_99_cleanup_leaves_nothing(self):
        """Runs last: the domains of the earlier tests were undefined."""
        left = [n for n in virsh("list", "--all", "--name").stdout.split() if n.endswith(f"-{os.getpid()}")]
        self.assertEqual(left, [])


_cleanups = []


def own_domains():
    """The domains of this run: those it defined, and any libvirt knows by its names."""
    names = set(_defined)
    if _libvirtd_up():
        names.update(n for n in virsh("list", "--all", "--name", check=False).stdout.split()
                     if NAME_RE.match(n) and n.endswith(f"-{os.getpid()}"))
    return names


def cleanup_all():
    """Domains first (they hold broker sockets), then the broker, then the daemons."""
    for name in own_domains():
        remove_domain(name)
    for c in reversed(_cleanups):
        try:
            c.stop()
        except Exception as e:  # noqa: BLE001 - cleanup goes on
            sys.stderr.write(f"cleanup: {e}\n")
        for note in getattr(c, "notes", []):
            sys.stderr.write(f"test_libvirt: {note}\n")
    _cleanups.clear()


def _on_signal(signum, frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _on_signal)
    t = time.monotonic()
    try:
        prog = unittest.main(verbosity=2, exit=False)
    finally:
        cleanup_all()
    sys.stderr.write(f"test_libvirt: {time.monotonic() - t:.1f} s\n")
    sys.exit(0 if prog.result.wasSuccessful() else 1)
