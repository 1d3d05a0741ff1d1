# SPDX-License-Identifier: LGPL-2.1-or-later
"""Bash completion of shmemctl and shmem-brokerd (shell-completion/bash/),
sourced into a real bash and run as bash runs it: COMP_WORDS split as
readline splits them (COMP_WORDBREAKS holds '=': "--socket=X" is three
words), COMPREPLY read back. Region names come from the real broker's
`shmemctl list` on the socket the command line names; each command's options
must be what `shmemctl help COMMAND` lists, and shmem-brokerd's what its
--help lists.

Run: python3 test_completion.py BUILD_DIR
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir))  # tests/: harness
import harness  # noqa: E402
from harness.completion import complete  # noqa: E402

BUILD = None


class Shmemctl(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="shmem-completion-")
        cls.rundir = os.path.join(cls.dir, "run")
        cls.sock = os.path.join(cls.rundir, "broker.sock")
        cls.shmemctl = os.path.join(BUILD, "clients", "shmemctl", "shmemctl")
        cls.broker = harness.Broker([os.path.join(BUILD, "broker", "shmem-brokerd"), "--no-config",
                                     "--region", "alpha:4K", "--region", "alps:4K", "--region", "beta.1:4K"],
                                    cls.rundir, os.path.join(cls.dir, "broker.log"))
        # A second broker with other regions: --socket must choose which one is asked.
        cls.other = harness.Broker([os.path.join(BUILD, "broker", "shmem-brokerd"), "--no-config",
                                    "--region", "other:4K"],
                                   os.path.join(cls.dir, "run2"), os.path.join(cls.dir, "broker2.log"))
        cls.other_sock = os.path.join(cls.dir, "run2", "broker.sock")
        cls.env = dict(os.environ, SHMEM_BROKER_SOCKET=cls.sock)

    @classmethod
    def tearDownClass(cls):
        cls.broker.close()
        cls.other.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def c(self, *words):
        return complete("shmemctl", [self.shmemctl, *words], self.env)

    def test_commands(self):
        listed = re.findall(r"^  ([a-z]+) ", subprocess.run([self.shmemctl, "--help"], capture_output=True,
                                                             text=True, check=True).stdout, re.M)
        self.assertEqual(self.c(""), sorted(listed))
        self.assertEqual(self.c("st"), ["status"])
        self.assertEqual(self.c("d"), ["destroy", "detach", "dump"])
        self.assertEqual(self.c("--json", "wa"), ["watch"])
        self.assertEqual(self.c("help", "up"), ["upgrade"])

    def test_options_of_each_command_are_its_help(self):
        """Every command's options, after its name, are the global ones and those `help COMMAND` lists."""
        glob = {"-s", "--socket", "-J", "--json", "-h", "--help", "-V", "--version"}
        for cmd in self.c(""):
            text = subprocess.run([self.shmemctl, "help", cmd], capture_output=True, text=True, check=True).stdout
            # Its option lines: "  -c, --connect URI   ...", "      --live, --config   ...".
            own = {word.split()[0] for line in text.splitlines() if re.match(r"^ +-", line)
                   for word in re.split(r"\s{2,}", line.strip())[0].split(", ")}
            self.assertEqual(set(self.c(cmd, "-")), glob | own, cmd)
        self.assertEqual(self.c("watch", "--t"), ["--timestamps"])
        # -o's value: the command's columns, after the ones given so far.
        self.assertEqual(self.c("list", "-o", "CREATOR-"), ["CREATOR-KEY", "CREATOR-KIND", "CREATOR-PID",
                                                            "CREATOR-UID", "CREATOR-UUID"])
        self.assertEqual(self.c("list", "--output", "NAME,SI"), ["NAME,SIGNAL-MODE", "NAME,SIZE"])
        self.assertEqual(self.c("inspect", "alpha", "-o", "VM"), ["VM-UUID"])
        self.assertEqual(self.c("-o", ""), [])  # before the command: no columns to offer
        self.assertEqual(self.c("-o", "NAME", "li"), ["list"])  # -o's value is no command
        self.assertEqual(self.c("xml", "--factory", "--machine", ""), ["pc", "q35"])

    def test_region_names_from_the_broker(self):
        for cmd in ("inspect", "destroy", "watch", "signal", "dump", "xml"):
            self.assertEqual(self.c(cmd, ""), ["alpha", "alps", "beta.1"], cmd)
        self.assertEqual(self.c("inspect", "al"), ["alpha", "alps"])
        self.assertEqual(self.c("--json", "inspect", "b"), ["beta.1"])
        # After an option with its value, and as attach's and detach's second word.
        self.assertEqual(self.c("dump", "--offset", "4K", "alph"), ["alpha"])
        self.assertEqual(self.c("attach", "vm-a", "be"), ["beta.1"])
        self.assertEqual(self.c("detach", "--timeout", "5", "vm-a", "alph"), ["alpha"])
        # signal's mask; nothing for a create's new name, or past the last argument.
        self.assertEqual(self.c("signal", "alpha", ""), ["all"])
        self.assertEqual(self.c("create", ""), [])
        self.assertEqual(self.c("inspect", "alpha", ""), [])

    def test_socket_of_the_command_line(self):
        """-s PATH, --socket PATH and --socket=PATH choose the broker asked; none: $SHMEM_BROKER_SOCKET."""
        self.assertEqual(self.c("-s", self.other_sock, "inspect", ""), ["other"])
        self.assertEqual(self.c("--socket", self.other_sock, "inspect", ""), ["other"])
        self.assertEqual(self.c("--socket", "=", self.other_sock, "inspect", ""), ["other"])
        self.assertEqual(self.c("inspect", "-s", self.other_sock, ""), ["other"])
        # No broker there: nothing, and nothing printed into the command line.
        self.assertEqual(self.c("-s", os.path.join(self.dir, "none"), "inspect", ""), [])

    def test_socket_value_is_a_file(self):
        self.assertEqual(self.c("--socket", self.rundir + "/bro"), [self.sock])
        self.assertEqual(self.c("--socket", "=", self.rundir + "/bro"), [self.sock])
        self.assertEqual(self.c("--socket", "="), self.c("--socket", ""))


class Brokerd(unittest.TestCase):
    def c(self, *words):
        return complete("shmem-brokerd", [os.path.join(BUILD, "broker", "shmem-brokerd"), *words])

    def test_options_are_its_help(self):
        text = subprocess.run([os.path.join(BUILD, "broker", "shmem-brokerd"), "--help"], capture_output=True,
                              text=True, check=True).stdout
        listed = set(re.findall(r"^ +(?:(-\w) )?(--[a-z-]+)", text, re.M))
        want = {o for pair in listed for o in pair if o}
        self.assertIn("--max-connections-per-vm", want)  # the daemon's table
        self.assertIn("--libvirt-port-window", want)     # the QEMU plugin's
        self.assertEqual(set(self.c("-")), want)
        self.assertEqual(self.c("--max-regions"), ["--max-regions", "--max-regions-per-uid"])
        self.assertEqual(self.c("--no-"), ["--no-config"])

    def test_values(self):
        d = tempfile.mkdtemp(prefix="shmem-completion-")
        try:
            os.mkdir(os.path.join(d, "rundir"))
            open(os.path.join(d, "broker.conf"), "w").close()
            self.assertEqual(self.c("--config", d + "/b"), [d + "/broker.conf"])
            self.assertEqual(self.c("--config", "=", d + "/b"), [d + "/broker.conf"])
            self.assertEqual(self.c("-r", d + "/"), [d + "/rundir"])
            self.assertIn("root", self.c("--qemu-group", "ro"))
            self.assertEqual(self.c("--max-regions", ""), [])
        finally:
            shutil.rmtree(d)


def main():
    global BUILD
    if len(sys.argv) < 2:
        sys.exit("usage: test_completion.py BUILD_DIR")
    BUILD = os.path.abspath(sys.argv.pop(1))
    if not shutil.which("bash"):
        sys.exit("test_completion.py: bash is missing (apt-get install bash)")
    unittest.main(verbosity=2)


if __name__ == "__main__":
    main()
