# SPDX-License-Identifier: LGPL-2.1-or-later
"""shmemctl's command line itself: help per command, its error messages,
that libvirt is loaded only by the commands that need it, and the progress
line of a slow libvirt call.

Part of integration-shmemctl: test_shmemctl.py runs these classes too
(BUILD is set by it). The broker is the real one on a temporary directory.
"""

import json
import os
import pty
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
import harness  # noqa: E402

BUILD = None
SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir)


class CliCase(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="shmemctl-cli-")
        self.rundir = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.rundir, "broker.sock")
        self.shmemctl = os.path.join(BUILD, "clients", "shmemctl", "shmemctl")
        self.broker = None

    def tearDown(self):
        if self.broker:
            self.broker.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start_broker(self):
        argv = [os.path.join(BUILD, "broker", "shmem-brokerd"), "--no-config"]
        self.broker = harness.Broker(argv, self.rundir, os.path.join(self.dir, "broker.log"))

    def ctl(self, *args, env=None):
        return subprocess.run([self.shmemctl, "--socket", self.sock] + list(args), capture_output=True,
                              text=True, timeout=60, env=env)

    def ctl_ok(self, *args):
        out = self.ctl(*args)
        self.assertEqual(out.returncode, 0, f"shmemctl {' '.join(args)}: {out.stderr}")
        return out.stdout


def listed_commands(text):
    """The command names of the global help: its two-space-indented lines under a heading ending in ':'."""
    names, inside = [], False
    for line in text.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            inside = line.startswith("Commands") or line.startswith("libvirt")
        elif inside and line.startswith("  ") and not line.startswith("   "):
            names.append(line.split()[0])
    return names


class ShmemctlHelp(CliCase):
    def global_help(self):
        return self.ctl_ok("--help")

    def test_global_help_lists_every_command_once(self):
        listed = listed_commands(self.global_help())
        self.assertEqual(len(listed), len(set(listed)), listed)
        # The commands shmemctl.c dispatches on, and the man page's, are the ones listed.
        with open(os.path.join(SRC, "clients", "shmemctl", "shmemctl.c")) as f:
            dispatched = set(re.findall(r'strcmp\(cmd, "([a-z-]+)"\)', f.read()))
        self.assertEqual(dispatched, set(listed), "shmemctl.c's commands vs --help's")
        with open(os.path.join(SRC, "man", "shmemctl.1")) as f:
            man = f.read()
        section = man[man.index(".SH COMMANDS"):man.index(".SH OPTIONS")]
        in_man = set(re.findall(r"^\.TP\n\.B[IR]? ([a-z-]+)", section, re.M))
        self.assertEqual(in_man, set(listed), "man/shmemctl.1's COMMANDS vs --help's")
        for line in self.global_help().splitlines():
            self.assertLessEqual(len(line), 80, line)

    def test_help_per_command(self):
        whole = self.global_help()
        for cmd in listed_commands(whole):
            with self.subTest(cmd=cmd):
                out = self.ctl("help", cmd)
                self.assertEqual(out.returncode, 0, out.stderr)
                self.assertEqual(out.stderr, "")
                text = out.stdout
                self.assertTrue(text.startswith(f"Usage: shmemctl [-s|--socket PATH] {cmd}"), text)
                self.assertNotEqual(text, whole)
                self.assertGreater(len(text.splitlines()), 2, text)
                # The same from COMMAND --help, wherever --help is and whatever else is given.
                self.assertEqual(self.ctl_ok(cmd, "--help"), text)
                self.assertEqual(self.ctl_ok("-h", cmd, "x", "y"), text)

    def test_help_names_the_options_of_its_command(self):
        self.assertIn("--max-peers N", self.ctl_ok("help", "create"))
        self.assertIn("--persistent", self.ctl_ok("create", "--help"))
        for opt in ("--offset N", "--length N", "--raw"):
            self.assertIn(opt, self.ctl_ok("dump", "--help"))
        for opt in ("--timeout SECONDS", "--force", "--connect URI", "--live, --config"):
            self.assertIn(opt, self.ctl_ok("help", "detach"))
        self.assertIn("--force", self.ctl_ok("help", "destroy"))
        self.assertNotIn("--force", self.ctl_ok("help", "list"))

    def test_help_alone_is_the_global_help(self):
        self.assertEqual(self.ctl_ok("help"), self.global_help())

    def test_help_of_an_unknown_command(self):
        for argv in (["help", "nosuch"], ["nosuch", "--help"]):
            with self.subTest(argv=argv):
                out = self.ctl(*argv)
                self.assertEqual(out.returncode, 2, out.stderr)
                self.assertEqual(out.stdout, "")
                self.assertIn("unknown command 'nosuch'", out.stderr)
        out = self.ctl("nosuch")
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn("Try 'shmemctl --help'.", out.stderr)
        # A known command's usage error points to its own help.
        out = self.ctl("create", "r")
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn("Try 'shmemctl help create'.", out.stderr)
        out = self.ctl("help", "list", "inspect")
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn("usage: help [COMMAND]", out.stderr)


class ShmemctlErrors(CliCase):
    def refused(self, *args, timeout=10):
        start = time.monotonic()
        out = subprocess.run([self.shmemctl, "--socket", self.sock] + list(args), capture_output=True, text=True,
                             timeout=timeout)
        self.assertEqual(out.returncode, 1, f"{args}: {out.stdout} {out.stderr}")
        self.assertLess(time.monotonic() - start, 5, args)
        return out.stderr

    def test_no_such_region_said_once(self):
        self.start_broker()
        self.ctl_ok("create", "r", "4K")
        for args in (["inspect", "nosuch"], ["destroy", "nosuch"], ["signal", "nosuch", "1"], ["dump", "nosuch"],
                     ["xml", "nosuch"], ["watch", "nosuch"]):
            with self.subTest(args=args):
                self.assertEqual(self.refused(*args), "shmemctl: region 'nosuch' does not exist\n")
        self.assertEqual(self.refused("create", "r", "4K"), "shmemctl: region 'r' exists\n")

    def test_watch_of_an_existing_region_waits(self):
        self.start_broker()
        self.ctl_ok("create", "r", "4K")
        w = subprocess.Popen([self.shmemctl, "--socket", self.sock, "watch", "r"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            with self.assertRaises(subprocess.TimeoutExpired):
                w.wait(1)
            self.ctl_ok("destroy", "r")
            self.assertEqual(w.stdout.readline(), "destroyed r\n")
        finally:
            w.terminate()
            self.assertEqual(w.wait(10), 0)
            w.stdout.close()
            w.stderr.close()

    def test_destroy_names_the_force_flag(self):
        self.start_broker()
        self.ctl_ok("create", "r", "4K")
        peer = subprocess.Popen([os.path.join(BUILD, "clients", "tool", "shmem-peer"), f"--socket={self.sock}",
                                 "--find", "r", "sleep", "60000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            end = time.monotonic() + 20
            while not json.loads(self.ctl_ok("--json", "inspect", "r"))["peers"]:
                self.assertLess(time.monotonic(), end, "shmem-peer did not attach")
                time.sleep(0.05)
            err = self.refused("destroy", "r")
            self.assertIn("(--force detaches them)", err)
            self.assertNotIn("use force", err)
            self.ctl_ok("destroy", "r", "--force")
            self.assertEqual(self.refused("inspect", "r"), "shmemctl: region 'r' does not exist\n")
        finally:
            peer.kill()
            peer.wait()


class ShmemctlLibvirtLoading(CliCase):
    """libvirt is dlopen()ed by attach and detach only (clients/shmemctl/virt-dl.h), libxml2 by
    xml --factory DOMAIN only (proto/xml-dl.h)."""

    def mapped(self, pid):
        with open(f"/proc/{pid}/maps") as f:
            return {line.split()[-1] for line in f if len(line.split()) >= 6}

    def test_libvirt_not_mapped_by_other_commands(self):
        self.start_broker()
        self.ctl_ok("create", "r", "4K")
        w = subprocess.Popen([self.shmemctl, "--socket", self.sock, "watch", "r"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            # Waiting for events: connected to the broker (a socket among its fds), its Watch answered.
            end = time.monotonic() + 10
            while not any(os.readlink(f"/proc/{w.pid}/fd/{fd}").startswith("socket:")
                          for fd in os.listdir(f"/proc/{w.pid}/fd")):
                self.assertLess(time.monotonic(), end, "shmemctl watch never connected")
                time.sleep(0.02)
            with self.assertRaises(subprocess.TimeoutExpired):
                w.wait(0.5)
            libs = self.mapped(w.pid)
            self.assertTrue(any("libshmem.so" in p for p in libs), libs)  # the maps are the real ones
            self.assertFalse([p for p in libs if "libvirt" in p or "libxml2" in p], libs)
        finally:
            w.terminate()
            self.assertEqual(w.wait(10), 0)
            w.stdout.close()
            w.stderr.close()
        # The commands that do not talk to libvirt work without it.
        self.assertIn("<shmem name='r'>", self.ctl_ok("xml", "r"))
        self.assertIn("--connect URI", self.ctl_ok("attach", "--help"))

    def test_libvirt_commands_load_libvirt(self):
        """libvirt's in-process test driver (test:///default) answers: the symbols were resolved."""
        self.start_broker()
        self.ctl_ok("create", "r", "4K")
        for args in (["attach", "nodom", "r"], ["detach", "nodom", "r"], ["xml", "--factory", "nodom"]):
            with self.subTest(args=args):
                out = self.ctl(*args, "-c", "test:///default")
                self.assertEqual(out.returncode, 1, out.stderr)
                self.assertEqual(out.stderr, "shmemctl: no domain 'nodom' at test:///default "
                                             "(see: virsh -c test:///default list --all)\n")

    def test_libxml2_not_linked(self):
        ldd = subprocess.run(["ldd", self.shmemctl], capture_output=True, text=True, check=True).stdout
        self.assertIn("libshmem.so", ldd)
        self.assertNotIn("libxml2", ldd)

    def test_xml_factory_of_a_domain_reads_its_xml(self):
        """libxml2, loaded by the parse, read the q35 domain of a test driver file: its one root port."""
        self.start_broker()
        node = os.path.join(self.dir, "node.xml")
        with open(node, "w") as f:
            f.write("<node><domain type='test'><name>fq35</name><memory>65536</memory>"
                    "<os><type arch='x86_64' machine='q35'>hvm</type></os><devices>"
                    "<controller type='pci' index='0' model='pcie-root'/>"
                    "<controller type='pci' index='1' model='pcie-root-port'/></devices></domain></node>")
        out = self.ctl("xml", "--factory", "fq35", "-c", f"test://{node}")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("domain 'fq35' (q35) lacks its factory device, 1 free hot-pluggable root port", out.stderr)
        self.assertEqual(out.stdout.count("model='pcie-root-port'"), 4, out.stdout)

    def test_libvirt_missing_names_the_package(self):
        """With libvirt.so.0 unreadable (a mount namespace binds /dev/null on it), attach names libvirt0."""
        self.assertEqual(os.geteuid(), 0, "this test needs root (unshare -m, mount --bind)")
        self.start_broker()
        self.ctl_ok("create", "r", "4K")
        lib = subprocess.run(["sh", "-c", "ldconfig -p | sed -n 's/.*libvirt.so.0 (libc6,x86-64) => //p'"],
                             capture_output=True, text=True).stdout.strip()
        self.assertTrue(lib, "libvirt.so.0 is not installed: apt-get install libvirt0")
        script = (f'mount --bind /dev/null "$(readlink -f {lib})" && '
                  f'"$0" --socket "$1" attach nodom r; echo "status $?"; "$0" --socket "$1" xml r >/dev/null')
        out = subprocess.run(["unshare", "-m", "sh", "-c", script, self.shmemctl, self.sock], capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout, "status 1\n", out.stderr)
        self.assertIn("install the libvirt0 package", out.stderr)
        self.assertIn("libvirt.so.0", out.stderr)


class ShmemctlProgress(CliCase):
    """The status line of clients/shmemctl/progress.h: on a terminal after 0.5 s, erased before any
    other stderr output and at the end; never when stderr is not a terminal. libvirt is slow here
    through a fake libvirtd socket (qemu+unix:///system?socket=PATH) that accepts and never answers,
    then closes after HOLD seconds, so that virConnectOpen() fails."""

    HOLD = 2.2

    def slow_attach(self, stderr_tty):
        """shmemctl attach 'dom' r --config against the mute socket: (status, stdout, stderr bytes)."""
        self.start_broker()
        self.ctl_ok("create", "r", "4K")
        path = os.path.join(self.dir, "mute.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        srv.bind(path)
        srv.listen(4)
        srv.settimeout(20)
        master, slave = pty.openpty() if stderr_tty else os.pipe()
        argv = [self.shmemctl, "--socket", self.sock, "attach", "dom", "r", "--config",
                "-c", f"qemu+unix:///system?socket={path}"]
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        err = b""
        try:
            conn, _ = srv.accept()
            end = time.monotonic() + self.HOLD
            while time.monotonic() < end:  # read while it waits: a pty's buffer is small
                if select.select([master], [], [], 0.1)[0]:
                    err += os.read(master, 4096)
            conn.close()
            self.assertEqual(p.wait(20), 3, err)
            while select.select([master], [], [], 0.2)[0]:
                try:
                    data = os.read(master, 4096)
                except OSError:  # EIO: the pty's other side is closed
                    break
                if not data:
                    break
                err += data
            return p.returncode, p.stdout.read(), err
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
            os.close(master)
            srv.close()

    def test_slow_call_shows_a_line_on_a_terminal(self):
        status, out, err = self.slow_attach(stderr_tty=True)
        err = err.decode()
        text = "Defining domain 'dom' with region 'r' (libvirt)..."
        draws = re.findall(r"\r" + re.escape(text) + r" (\d+)\.(\d) s\x1b\[K", err)
        self.assertTrue(draws, repr(err))
        seconds = [int(a) + int(b) / 10 for a, b in draws]
        self.assertEqual(seconds[0], 0.5, f"first drawn at {seconds[0]} s, not after 0.5 s: {err!r}")
        self.assertEqual(seconds, sorted(seconds))
        self.assertGreaterEqual(seconds[-1], 1.5, f"not redrawn while libvirt was silent: {err!r}")
        # Erased before the error, which is the last thing written, on a line of its own.
        self.assertTrue(err.endswith("\r\x1b[Kshmemctl: cannot connect to libvirt at qemu+unix:///system?socket="
                                     + os.path.join(self.dir, "mute.sock") + ": Cannot recv data: Connection "
                                     "reset by peer\r\n"), repr(err[-300:]))
        self.assertEqual(out, b"")

    def test_no_line_when_stderr_is_not_a_terminal(self):
        status, out, err = self.slow_attach(stderr_tty=False)
        self.assertRegex(err.decode(), r"\Ashmemctl: cannot connect to libvirt at \S+: [^\r\x1b]*\n\Z")

    def test_a_fast_call_leaves_nothing_drawn(self):
        """xml --factory DOMAIN through libvirt's test driver takes milliseconds: what was drawn, if the
        machine was that slow, is erased before the first message."""
        self.start_broker()
        node = os.path.join(self.dir, "node.xml")
        with open(node, "w") as f:
            f.write("<node><domain type='test'><name>fq35</name><memory>65536</memory>"
                    "<os><type arch='x86_64' machine='q35'>hvm</type></os></domain></node>")
        master, slave = pty.openpty()
        p = subprocess.Popen([self.shmemctl, "--socket", self.sock, "xml", "--factory", "fq35",
                              "-c", f"test://{node}"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        err = b""
        while select.select([master], [], [], 5)[0]:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            err += data
        os.close(master)
        self.assertEqual(p.wait(20), 0, err)
        self.assertIn(b"<controller type='pci' model='pcie-root-port'/>", p.stdout.read())
        p.stdout.close()
        first = err.decode().split("shmemctl: domain 'fq35' (q35) lacks its factory device")
        self.assertEqual(len(first), 2, repr(err))
        self.assertRegex(first[0], r"\A((\r[^\r\n]*\x1b\[K)+\r\x1b\[K)?\Z", "a line left drawn")


if __name__ == "__main__":
    BUILD = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "build")
    unittest.main(verbosity=2)
