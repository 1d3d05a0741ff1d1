#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""bench-scale: the broker with many regions (issue 10; docs/BENCHMARKS.md, "Scale").

Drives a real shmem-brokerd under the fake service manager of the tests
(tests/harness/fakesystemd.py, which de-duplicates stored fds as systemd's
PID 1 does: one same_fd() scan of the whole store per fd stored), so that the
fd store costs what it would cost under systemd. Figures, for each N given:

  list       `shmemctl list --json` with N declared regions: whether it
             works, its time
  churn      attach + detach on one connection, alone and beside those N
             regions: cycles per second, CPU of the broker and of the
             manager per cycle
  restart    kill -9 with N persistent regions and P host peers attached, to
             READY=1 and to a new peer's attach answered by the restarted
             broker; the FDSTORE=1 datagrams the restarted broker sent before
             READY=1 (1: its new state, nothing stored again)

The fake keeps at most 4096 fds (FileDescriptorStoreMax of the tests): a
persistent region stores 2, a host peer 18.

Usage: bench/bench-scale.py BUILD_DIR [--regions 1000,9000] [--restart-regions 1000]
                            [--peers 76] [--churn 300] [--json FILE]
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))
from harness import FakeSystemd, proto  # noqa: E402

CREATE_NAME, CREATE_SIZE, CREATE_PERSISTENT = 1, 2, 4


class Bench:
    def __init__(self, build):
        self.build = build
        self.brokerd = os.path.join(build, "broker", "shmem-brokerd")
        self.shmemctl = os.path.join(build, "clients", "shmemctl", "shmemctl")
        self.dir = tempfile.mkdtemp(prefix="shmem-bench-scale-")
        self.rundir = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.rundir, "broker.sock")
        self.sd = FakeSystemd(self.dir)
        # 128 connections: the fd budget of a 20,000-fd limit then holds 9,000 regions.
        self.argv = [self.brokerd, "--no-config", "--max-regions", "20000", "--max-connections", "128",
                     "--rundir", self.rundir]

    def close(self):
        if self.sd.proc and self.sd.proc.poll() is None:
            self.sd.proc.send_signal(signal.SIGTERM)
            self.sd.proc.wait(30)
        self.sd.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self):
        self.sd.start(self.argv)
        proto.hello(self.sock)

    def create(self, n, persistent, prefix="r"):
        with proto.Session(self.sock, "bench") as s:
            for i in range(n):
                body = proto.field(CREATE_NAME, f"{prefix}{i}") + proto.field(CREATE_SIZE, 4096)
                if persistent:
                    body += proto.field(CREATE_PERSISTENT, 1)
                r = s.request(proto.MESSAGE_CREATE, body)
                if r.status != proto.STATUS_OK:
                    raise RuntimeError(f"create {prefix}{i}: {r}\n{self.sd.log()[-2000:]}")

    def list(self):
        t = time.monotonic()
        out = subprocess.run([self.shmemctl, "--socket", self.sock, "--json", "list"], capture_output=True,
                             text=True, timeout=120)
        dt = time.monotonic() - t
        n = len(json.loads(out.stdout)["regions"]) if out.returncode == 0 else None
        return {"ok": out.returncode == 0, "listed": n, "seconds": dt, "bytes": len(out.stdout),
                "error": out.stderr.strip()[-200:]}

    def restart(self, n_regions, n_peers):
        peers = []
        for i in range(n_peers):
            s = proto.Session(self.sock, f"peer{i}")
            r = s.attach(f"r{i % n_regions}")
            assert r.status == proto.STATUS_OK, r
            peers.append(s)
        self.sd.wait_stored("c/", n_peers, timeout=60)
        self.sd.kill()
        before = self.sd.stores
        t = time.monotonic()
        self.sd.start(self.argv)
        ready = time.monotonic() - t
        self.sd.pump()
        stored = self.sd.stores - before
        with proto.Session(self.sock, "new") as s:
            r = s.attach("r0")
            assert r.status == proto.STATUS_OK, r
        attached = time.monotonic() - t
        for s in peers:
            s.close()
        return {"ready_seconds": ready, "attach_seconds": attached, "stores_before_ready": stored,
                "fds_stored": len(self.sd.store)}

    def cpu(self):
        """The broker's and this process's (the fake service manager's) CPU seconds."""
        with open(f"/proc/{self.sd.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        t = os.times()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), t.user + t.system

    def churn(self, cycles):
        """Cycles per second, and the broker's and the manager's CPU milliseconds per cycle."""
        with proto.Session(self.sock, "churn") as s:
            t, (b0, m0) = time.monotonic(), self.cpu()
            for _ in range(cycles):
                r = s.attach("churn", 4096)
                assert r.status == proto.STATUS_OK, r
                r = s.request(proto.MESSAGE_DETACH, proto.field(1, "churn"))
                assert r.status == proto.STATUS_OK, r
            dt, (b1, m1) = time.monotonic() - t, self.cpu()
            return {"per_s": cycles / dt, "broker_ms": (b1 - b0) * 1000 / cycles,
                    "manager_ms": (m1 - m0) * 1000 / cycles}


def run_list(build, n, cycles):
    """@n declared regions (no memory: 2 fds each, their QEMU socket and its copy)."""
    b = Bench(build)
    try:
        b.start()
        alone = b.churn(cycles)
        b.create(n, persistent=False)
        r = {"regions": n, "list": b.list(), "churn_alone": alone, "churn_beside": b.churn(cycles)}
    finally:
        b.close()
    ls = r["list"]
    print(f"{n:>6} regions: list {'ok' if ls['ok'] else 'FAILS'} ({ls['listed']} listed, "
          f"{ls['seconds'] * 1000:.0f} ms{'' if ls['ok'] else ': ' + ls['error']}); attach+detach alone "
          f"{alone['per_s']:.0f}/s (CPU a cycle: broker {alone['broker_ms']:.2f} ms, manager "
          f"{alone['manager_ms']:.2f} ms), beside them {r['churn_beside']['per_s']:.0f}/s (broker "
          f"{r['churn_beside']['broker_ms']:.2f} ms, manager {r['churn_beside']['manager_ms']:.2f} ms)",
          flush=True)
    return r


def run_restart(build, n, peers):
    """@n persistent regions (4 fds each) and @peers host peers, killed and restarted."""
    b = Bench(build)
    try:
        b.start()
        b.create(n, persistent=True)
        r = {"regions": n, "peers": peers, "restart": b.restart(n, peers)}
    finally:
        b.close()
    rs = r["restart"]
    print(f"{n:>6} persistent regions, {peers} peers: kill -9 to READY=1 {rs['ready_seconds'] * 1000:.0f} ms, "
          f"to a new attach {rs['attach_seconds'] * 1000:.0f} ms; FDSTORE=1 before READY=1: "
          f"{rs['stores_before_ready']} (the store holds {rs['fds_stored']})", flush=True)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build")
    ap.add_argument("--regions", default="1000,9000", help="list and churn beside N regions")
    ap.add_argument("--restart-regions", default="1000", help="kill -9 with N persistent regions")
    ap.add_argument("--peers", type=int, default=76, help="host peers attached across the restart")
    ap.add_argument("--churn", type=int, default=300, help="attach+detach cycles")
    ap.add_argument("--json")
    a = ap.parse_args()
    results = {"list": [run_list(a.build, int(n), a.churn) for n in a.regions.split(",")],
               "restart": [run_restart(a.build, int(n), a.peers) for n in a.restart_regions.split(",")]}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
