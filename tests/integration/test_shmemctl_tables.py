# SPDX-License-Identifier: LGPL-2.1-or-later
"""shmemctl's tables (clients/shmemctl/table.h, libsmartcols): columns, formats,
JSON, what a peer chose printed safely, widths by display width; and --json on
every command.

Part of integration-shmemctl: test_shmemctl.py runs these classes too (BUILD
is set by it). The broker is the real one on a temporary directory; the
creators of regions are raw protocol sessions (harness.proto), whose labels
are whatever the test chooses.
"""

import json
import os
import re
import subprocess
import sys
import unicodedata
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
import harness  # noqa: E402
from harness import proto  # noqa: E402
import test_shmemctl_cli  # noqa: E402
from test_shmemctl_cli import CliCase  # noqa: E402

HOSTILE = "ok\x1b[2J\n9 host fake"
WIDE = "ünï-日本語"  # 3 two-byte letters, 3 letters two columns wide


def width(s):
    """Display columns of @s on a terminal (East Asian wide and full-width: 2)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def locale_env(**kw):
    """The environment without the locale variables, plus @kw."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LC_") and k not in ("LANG", "LANGUAGE")}
    env.update(kw)
    return env


class ShmemctlTables(CliCase):
    def setUp(self):
        super().setUp()
        self.sessions = []

    def tearDown(self):
        for s in self.sessions:
            s.close()
        super().tearDown()

    def made_by(self, region, label, size=8192):
        """@region created by the attach of a host peer labelled @label, which stays."""
        s = proto.Session(self.sock, label)
        self.sessions.append(s)
        self.assertEqual(s.attach(region, size).status, proto.STATUS_OK)
        return s

    def start(self):
        argv = [os.path.join(test_shmemctl_cli.BUILD, "broker", "shmem-brokerd"), "--no-config",
                "--region", "declared:4K"]
        self.broker = harness.Broker(argv, self.rundir, os.path.join(self.dir, "broker.log"))
        self.ctl_ok("create", "r", "64K", "--max-peers", "3")
        self.made_by("made", "maker")

    def rows(self, *args):
        return sorted(self.ctl_ok(*args).splitlines())

    def help_columns(self, cmd):
        """The column names `shmemctl help CMD` lists, and which are default (marked *)."""
        text = self.ctl_ok("help", cmd)
        part = text[text.index("Available columns"):].splitlines()[1:]
        cols = [(line[2:].split()[0], line[1] == "*") for line in part]
        self.assertTrue(cols, text)
        return cols

    def test_output_columns_and_formats(self):
        self.start()
        self.assertEqual(self.rows("list", "-r", "-n", "-o", "NAME,SIZE,MAX"),
                         ["declared 4K 16", "made 8K 16", "r 64K 3"])
        # Column names in any case; -b: sizes in bytes.
        self.assertEqual(self.rows("list", "--raw", "--noheadings", "--output", "name,size", "--bytes"),
                         ["declared 4096", "made 8192", "r 65536"])
        # The header: one word per column, PEERS and MAX apart; +COL adds to the default ones.
        default = [c for c, shown in self.help_columns("list") if shown]
        self.assertEqual(self.ctl_ok("list", "-r").splitlines()[0].split(), default)
        self.assertEqual(default[:4], ["NAME", "SIZE", "PEERS", "MAX"])
        self.assertEqual(self.ctl_ok("list", "-r", "-o", "+EPOCH").splitlines()[0].split(), default + ["EPOCH"])
        # -O: every column help lists, and each row has a field for each (missing ones "-").
        every = [c for c, _ in self.help_columns("list")]
        lines = self.ctl_ok("list", "-O", "-r").splitlines()
        self.assertEqual(lines[0].split(), every)
        for line in lines[1:]:
            self.assertEqual(len(line.split(" ")), len(every), line)
        declared = next(line for line in lines if line.startswith("declared "))
        self.assertEqual(dict(zip(every, declared.split(" ")))["CREATOR"], "-")
        # The default table, aligned: made's creator named.
        self.assertRegex(self.ctl_ok("list"), r"\nmade +8K +1 +16 +memfd +- +host +maker\n")
        # inspect's peer table and factory's devices take the same options.
        self.assertEqual(self.ctl_ok("inspect", "made", "-r", "-n", "-o", "index,kind,label").splitlines()[-1],
                         "0 host maker")
        self.assertEqual(self.ctl_ok("inspect", "made", "-o", "LABEL").splitlines()[-2:], ["LABEL", "maker"])
        self.assertEqual([c for c, _ in self.help_columns("inspect")][:7],
                         ["INDEX", "KIND", "LABEL", "PID", "UID", "PENDING", "VM-UUID"])
        self.assertTrue(self.help_columns("factory"))

    def test_usage_errors(self):
        self.start()
        for args, why in ((["list", "-o", "NAME,NOPE"], "unknown column 'NOPE'"),
                          (["inspect", "made", "-o", "SIZE"], "unknown column 'SIZE'"),
                          (["factory", "-o", "NAME"], "unknown column 'NAME'"),
                          (["create", "x", "4K", "-o", "NAME"], "go with list, inspect and factory"),
                          (["signal", "made", "1", "--raw"], "go with list, inspect and factory"),
                          (["dump", "made", "-n"], "go with list, inspect and factory")):
            with self.subTest(args=args):
                out = self.ctl(*args)
                self.assertEqual((out.returncode, out.stdout), (2, ""), out.stderr)
                self.assertIn(why, out.stderr)

    def test_json_of_a_table(self):
        self.start()
        out = self.ctl_ok("-J", "list")
        self.assertTrue(out.startswith('{\n   "regions": [\n      {\n         "name": '), out)  # pretty
        got = {r["name"]: r for r in json.loads(out)["regions"]}
        self.assertEqual(sorted(got), ["declared", "made", "r"])
        # Every column unless -o, lower case keys; numbers, booleans and null by the column's type.
        every = [c.lower() for c, _ in self.help_columns("list")]
        for r in got.values():
            self.assertEqual(list(r), every)
        d, m = got["declared"], got["made"]
        self.assertEqual((d["size"], d["peers"], d["max"], d["persistent"], d["allocated"], d["flags"]),
                         (4096, 0, 16, False, False, "no-memory"))
        self.assertEqual((d["creator"], d["creator-kind"], d["creator-pid"], d["active"]), (None, None, None, None))
        self.assertEqual((m["creator"], m["creator-kind"], m["creator-pid"], m["peers"], m["flags"], m["active"]),
                         ("maker", "host", os.getpid(), 1, None, "0"))
        self.assertEqual(got["r"]["region-size"], 128 * 1024)
        # -o chooses the keys; -b changes nothing (sizes are bytes in JSON).
        self.assertEqual(json.loads(self.ctl_ok("list", "--json", "-o", "name,size", "-b"))["regions"][0],
                         {"name": "declared", "size": 4096})
        peers = json.loads(self.ctl_ok("-J", "inspect", "made"))["peers"]
        self.assertEqual([(p["index"], p["label"], p["kind"]) for p in peers], [(0, "maker", "host")])

    def test_hostile_label_shown_escaped(self):
        """A creator's label with ESC and a newline: encoded as \\xNN in every format of every
        table, no row added; the label itself in JSON."""
        self.start()
        self.made_by("evil", HOSTILE, 4096)
        for args, shown in ((["list"], r"ok\x1b[2J\x0a9 host fake"),
                            (["list", "-r"], r"ok\x1b[2J\x0a9\x20host\x20fake"),
                            (["inspect", "evil"], r"ok\x1b[2J\x0a9 host fake"),
                            (["inspect", "evil", "-r"], r"ok\x1b[2J\x0a9\x20host\x20fake")):
            with self.subTest(args=args):
                out = self.ctl_ok(*args)
                self.assertNotIn("\x1b", out)
                self.assertIn(shown, out)
                if args[0] == "list":
                    self.assertEqual(len(out.splitlines()), 1 + 4, out)
                else:
                    self.assertEqual(len([line for line in out.splitlines() if re.match(r"^ *\d+ ", line)]), 1, out)
        made = {r["name"]: r for r in json.loads(self.ctl_ok("-J", "list"))["regions"]}["evil"]
        self.assertEqual(made["creator"], HOSTILE)
        self.assertEqual(json.loads(self.ctl_ok("-J", "inspect", "evil"))["peers"][0]["label"], HOSTILE)

    def test_utf8_label_aligned_by_display_width(self):
        """The column after a label with two-byte and double-width letters starts where the header
        says, in a UTF-8 locale and in the C locale alike (C.UTF-8's character classes then)."""
        self.start()
        self.made_by("wide", WIDE, 4096)
        for env in (locale_env(LANG="C.UTF-8"), locale_env()):
            with self.subTest(lang=env.get("LANG")):
                out = self.ctl("list", "-o", "CREATOR,NAME", env=env)
                self.assertEqual(out.returncode, 0, out.stderr)
                lines = out.stdout.splitlines()
                self.assertIn(WIDE, out.stdout)  # shown, not encoded
                column = width(lines[0][:lines[0].index("NAME")])
                for line in lines[1:]:
                    name = line.split()[-1]
                    self.assertEqual(width(line[:line.rindex(name)]), column, out.stdout)


class ShmemctlJson(CliCase):
    """--json of the commands without a table: a small pretty object each."""

    def json_ok(self, *args):
        out = self.ctl_ok("--json", *args)
        self.assertTrue(out.startswith("{\n   \""), out)
        return json.loads(out)

    def test_every_command_takes_json(self):
        """help CMD names -J, --json for every command but help."""
        text = self.ctl_ok("--help")
        for cmd in test_shmemctl_cli.listed_commands(text):
            if cmd == "help":
                continue
            with self.subTest(cmd=cmd):
                self.assertIn("-J, --json", self.ctl_ok("help", cmd))

    def test_results(self):
        self.start_broker()
        self.assertEqual(self.ctl_ok("-J", "list"), '{\n   "regions": []\n}\n')
        self.assertEqual(self.json_ok("create", "r", "10K", "--max-peers", "3"),
                         {"region": "r", "created": True, "size": 10240, "max_peers": 3, "persistent": False})
        self.assertEqual(self.json_ok("create", "p", "4K", "--persistent")["max_peers"], None)
        xml = self.json_ok("xml", "r")
        self.assertEqual(sorted(xml), ["region", "xml"])
        self.assertEqual(xml["xml"], self.ctl_ok("xml", "r"))
        fx = self.json_ok("xml", "--factory", "--machine", "pc")
        self.assertEqual((fx["domain"], fx["xml"]), (None, self.ctl_ok("xml", "--factory", "--machine", "pc")))
        self.assertEqual(self.json_ok("reload"), {"reloaded": True})
        self.assertEqual(self.json_ok("factory"), {"vms": []})
        made = self.json_ok("inspect", "r")
        self.assertEqual((made["name"], made["created_by"], made["peers"]), ("r", None, []))
        self.assertEqual(self.json_ok("destroy", "r"), {"region": "r", "destroyed": True, "forced": False})
        # A refusal prints no JSON: the error on stderr, status 1.
        out = self.ctl("--json", "destroy", "r")
        self.assertEqual((out.returncode, out.stdout), (1, ""), out.stderr)
        for args in (["inspect", "p", "-o", "LABEL"], ["factory", "-n"], ["dump", "p", "--raw"]):
            out = self.ctl("--json", *args)
            self.assertEqual(out.returncode, 2, out.stderr)
            self.assertIn("--json or -o, -O, -n, -r, -b, not both", out.stderr)


if __name__ == "__main__":
    test_shmemctl_cli.BUILD = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "build")
    unittest.main(verbosity=2)
