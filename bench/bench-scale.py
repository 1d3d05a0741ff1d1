#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""bench-scale: the broker with many regions (issue 10; docs/BENCHMARKS.md, "Scale").

Drives a real shmem-brokerd under the fake service manager of the tests
(tests/harness/fakesystemd.py): it de-duplicates every stored fd as systemd's
PID 1 does, and counts the same_fd() comparisons PID 1's scan of its whole
store makes (`compares`), which is what the fd store costs under systemd.
Figures, for each N given:

  create     N declared (idle) regions, then N persistent ones (4 KiB of
             memory each): time a create, and the broker's RSS and fds a region
  list       `shmemctl --json list` and `shmemctl --json inspect` beside N
  churn      attach + detach on one connection with 15 other peers attached
             to its region, alone and beside the N regions: cycles a second,
             the broker's CPU and PID 1's comparisons a cycle
  restart    kill -9 with N persistent regions and P host peers attached, to
             READY=1 and to a new peer's attach; FDSTORE=1 before READY=1
  upgrade    `shmemctl upgrade` (re-exec in place) with the same, to its
             answer and to a new peer's attach
  attach     bench-shmem: host-peer attach latency with 16 and 64 peers kept
  anchor     bench-ivshmem: the QEMU-side attach, broker beside QEMU's own
             contrib/ivshmem-server, alternating in one run (bench/anchor.py)

10,000 regions need more fds than a default hard limit of 20,000: the broker
gets the unit's LimitNOFILE (65536, systemd/shmem-brokerd.service.in) through
prlimit and the store the unit's FileDescriptorStoreMax (65536). Raising a
hard limit needs CAP_SYS_RESOURCE (root outside a container that drops it);
without it N is capped, and said so, to what the broker's fd budget holds
(its log: "File descriptor limit L leaves B fds": an idle region costs 1 of
B, a persistent one 2, a peer 17).

Usage: bench/bench-scale.py BUILD_DIR [--regions 1000,10000] [--peers 76] [--churn 200]
                            [--no-anchor] [--json FILE]
"""

import argparse
import json
import os
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "tests"))
from harness import FakeSystemd, proto  # noqa: E402

import anchor  # noqa: E402

CREATE_NAME, CREATE_SIZE, CREATE_PERSISTENT = 1, 2, 4
NOFILE = 65536  # LimitNOFILE= and FileDescriptorStoreMax= of systemd/shmem-brokerd.service.in
OTHERS = 15     # peers attached to the churning region besides the churner


def raise_nofile():
    """The broker's limit: NOFILE if this process may raise it, else its hard limit, said so.

    This process holds the fd store (up to NOFILE) and its sockets: it gets twice that."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * NOFILE
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError) as e:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        print(f"RLIMIT_NOFILE NOT raised: the hard limit is {hard} and this process cannot raise it ({e}; "
              f"root {'without' if os.geteuid() == 0 else 'and'} CAP_SYS_RESOURCE): the broker keeps {hard}, "
              f"10,000 regions do not fit and N is capped to what its fd budget holds", flush=True)
        return hard
    print(f"RLIMIT_NOFILE raised: the broker's to {NOFILE} (the unit's LimitNOFILE, with prlimit), the fake "
          f"service manager's (this process, holding the fd store) to {want}; the hard limit was {hard}",
          flush=True)
    return NOFILE


def proc_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


class Bench:
    nofile = NOFILE

    def __init__(self, build):
        self.build = build
        self.shmemctl = os.path.join(build, "clients", "shmemctl", "shmemctl")
        self.dir = tempfile.mkdtemp(prefix="shmem-bench-scale-")
        self.rundir = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.rundir, "broker.sock")
        self.sd = FakeSystemd(self.dir, fds_max=NOFILE, indexed=True)
        self.argv = ["prlimit", f"--nofile={self.nofile}", os.path.join(build, "broker", "shmem-brokerd"),
                     "--no-config", "--max-regions", "30000", "--max-connections", "256", "--rundir", self.rundir]
        self.sessions = []  # attached peers, read by the drainer only
        self.stop = threading.Event()
        self.drainer = threading.Thread(target=self.drain, daemon=True)
        self.drainer.start()

    def drain(self):
        """Reads the attached peers' events, as libshmem does: unread, their fds pile up in the broker
        (its queues, up to --max-total-queued-fds) and churn beside N regions meets the fd limit."""
        while not self.stop.is_set():
            sessions, poll = {s.sock.fileno(): s for s in list(self.sessions)}, select.poll()
            for fd in sessions:  # poll(), not select(): these fds are past FD_SETSIZE beside 9,000 regions
                poll.register(fd, select.POLLIN)
            for fd, _ in poll.poll(50) if sessions else time.sleep(0.05) or []:
                try:
                    sessions[fd].recv()
                except OSError:
                    pass

    def close(self):
        self.stop.set()
        self.drainer.join()
        for s in self.sessions:
            s.close()
        if self.sd.proc and self.sd.proc.poll() is None:
            self.sd.proc.send_signal(signal.SIGTERM)
            self.sd.proc.wait(60)
        self.sd.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self):
        self.sd.start(self.argv)
        proto.hello(self.sock)

    def cap(self, n, cost, peers):
        """@n, or the thousands of regions costing @cost that the broker's fd budget holds beside @peers."""
        m = re.search(r"File descriptor limit (\d+) leaves (\d+) fds", self.sd.log())
        if not m:
            return n
        fit = (int(m.group(2)) - (peers + 1) * 17) // cost // 1000 * 1000
        if fit >= n:
            return n
        print(f"{n:,} regions of {cost} fd(s) each do not fit in the broker's fd budget ({m.group(0)}): "
              f"{fit:,} instead", flush=True)
        return fit

    @property
    def pid(self):
        return self.sd.proc.pid

    def create(self, n, persistent, prefix):
        """@n regions; seconds a create, and the broker's RSS (KiB) and fds a region."""
        fds, rss = proc_fds(self.pid), proc_rss_kib(self.pid)
        t = time.monotonic()
        with proto.Session(self.sock, "bench") as s:
            for i in range(n):
                body = proto.field(CREATE_NAME, f"{prefix}{i}") + proto.field(CREATE_SIZE, 4096)
                if persistent:
                    body += proto.field(CREATE_PERSISTENT, 1)
                r = s.request(proto.MESSAGE_CREATE, body)
                if r.status != proto.STATUS_OK:
                    raise RuntimeError(f"create {prefix}{i}: {r}\n{self.sd.log()[-2000:]}")
        dt = time.monotonic() - t
        return {"regions": n, "create_s": dt / n, "rss_kib": (proc_rss_kib(self.pid) - rss) / n,
                "fds": (proc_fds(self.pid) - fds) / n}

    def ctl(self, *args, repeat=1):
        """Median seconds of @repeat calls of `shmemctl --json ARGS`, and the last output."""
        times = []
        for _ in range(repeat):
            t = time.monotonic()
            out = subprocess.run([self.shmemctl, "--socket", self.sock, "--json"] + list(args), capture_output=True,
                                 text=True, timeout=300)
            times.append(time.monotonic() - t)
            if out.returncode != 0:
                raise RuntimeError(f"shmemctl {' '.join(args)}: {out.stderr.strip()[-300:]}")
        return sorted(times)[len(times) // 2], json.loads(out.stdout)

    def listing(self, n, prefix):
        dt, out = self.ctl("list", repeat=3)
        if len(out["regions"]) < n:
            raise RuntimeError(f"list: {len(out['regions'])} regions, not {n}")
        di, ins = self.ctl("inspect", f"{prefix}{n - 1}", repeat=5)
        assert ins["name"] == f"{prefix}{n - 1}", ins
        return {"list_s": dt, "listed": len(out["regions"]), "inspect_s": di}

    def attach_others(self, region, n):
        for i in range(n):
            s = proto.Session(self.sock, f"other{len(self.sessions)}")
            r = s.attach(region, 4096)
            assert r.status == proto.STATUS_OK, r
            s.sock.setblocking(False)
            self.sessions.append(s)

    def cpu(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def churn(self, cycles):
        """Cycles a second, the broker's CPU ms and PID 1's same_fd() comparisons a cycle."""
        with proto.Session(self.sock, "churn") as s:
            t, b0, c0 = time.monotonic(), self.cpu(), self.sd.compares
            for i in range(cycles):
                r = s.attach("churn", 4096)
                if r.status == proto.STATUS_OK:
                    r = s.request(proto.MESSAGE_DETACH, proto.field(1, "churn"))
                if r.status != proto.STATUS_OK:  # a figure of its own, with what the broker said
                    print(f"churn: cycle {i + 1} of {cycles} failed: {r}; broker fds {proc_fds(self.pid)}\n"
                          + "\n".join(self.sd.log().splitlines()[-5:]), flush=True)
                    return {"per_s": 0, "broker_ms": 0, "pid1_compares": 0, "failed": f"cycle {i + 1}: {r.error}"}
            dt = time.monotonic() - t
            self.sd.pump(0.2)
            return {"per_s": cycles / dt, "broker_ms": (self.cpu() - b0) * 1000 / cycles,
                    "pid1_compares": (self.sd.compares - c0) / cycles}

    def new_attach(self):
        with proto.Session(self.sock, "new") as s:
            r = s.attach("p0")
            assert r.status == proto.STATUS_OK, r

    def restart(self, n_peers):
        for i in range(n_peers):
            s = proto.Session(self.sock, f"peer{i}")
            r = s.attach(f"p{i}")
            assert r.status == proto.STATUS_OK, r
            s.sock.setblocking(False)
            self.sessions.append(s)
        self.sd.wait_stored("c/", n_peers, timeout=120)
        self.sd.kill()
        before = self.sd.stores
        t = time.monotonic()
        self.sd.start(self.argv)
        ready = time.monotonic() - t
        self.sd.pump()
        stored = self.sd.stores - before
        self.new_attach()
        return {"ready_s": ready, "attach_s": time.monotonic() - t, "stores_before_ready": stored,
                "fds_stored": len(self.sd.store)}

    def upgrade(self):
        t = time.monotonic()
        out = subprocess.run([self.shmemctl, "--socket", self.sock, "upgrade"], capture_output=True, text=True,
                             timeout=300)
        answered = time.monotonic() - t
        if out.returncode != 0:  # a figure of its own, with what the broker said
            print(f"upgrade failed: {out.stderr.strip()[-300:]}\n" + "\n".join(self.sd.log().splitlines()[-3:]),
                  flush=True)
            errors = [line for line in self.sd.log().splitlines() if "ERROR" in line] or ["(no ERROR logged)"]
            return {"answer_s": 0, "attach_s": 0, "failed": errors[-1][-200:]}
        self.new_attach()
        return {"answer_s": answered, "attach_s": time.monotonic() - t, "pid_kept": self.sd.proc.poll() is None}


def run_declared(build, n, cycles):
    """Idle regions: create, list, inspect; churn with OTHERS peers, alone and beside them."""
    b = Bench(build)
    try:
        b.start()
        asked, n = n, b.cap(n, 1, OTHERS + 1)
        b.attach_others("churn", OTHERS)
        r = {"regions": n, "asked": asked, "churn_alone": b.churn(cycles), "create": b.create(n, False, "r")}
        r.update(b.listing(n, "r"))
        r["churn_beside"] = b.churn(cycles)
    finally:
        b.close()
    c, a, s = r["create"], r["churn_alone"], r["churn_beside"]
    print(f"{n:>6} idle regions: create {c['create_s'] * 1e6:.0f} us, {c['rss_kib']:.1f} KiB RSS, {c['fds']:.2f} "
          f"fds a region; list {r['list_s'] * 1000:.0f} ms ({r['listed']} listed), inspect {r['inspect_s'] * 1000:.1f} "
          f"ms; attach+detach with {OTHERS} peers: alone {a['per_s']:.0f}/s (broker {a['broker_ms']:.2f} ms, PID 1 "
          f"{a['pid1_compares']:.0f} compares a cycle), beside them {s['per_s']:.0f}/s (broker "
          f"{s['broker_ms']:.2f} ms, PID 1 {s['pid1_compares']:.0f})", flush=True)
    return r


def run_persistent(build, n, peers):
    """Persistent regions: create, then kill -9 and an upgrade with @peers host peers attached."""
    b = Bench(build)
    try:
        b.start()
        asked, n = n, b.cap(n, 2, peers + 1)
        r = {"regions": n, "asked": asked, "peers": peers, "create": b.create(n, True, "p")}
        r["restart"] = b.restart(peers)
        r["upgrade"] = b.upgrade()
    finally:
        b.close()
    c, rs, up = r["create"], r["restart"], r["upgrade"]
    print(f"{n:>6} persistent regions: create {c['create_s'] * 1e6:.0f} us, {c['rss_kib']:.1f} KiB RSS, "
          f"{c['fds']:.2f} fds a region; {peers} peers: kill -9 to READY=1 {rs['ready_s'] * 1000:.0f} ms, to a new "
          f"attach {rs['attach_s'] * 1000:.0f} ms (FDSTORE=1 before READY=1: {rs['stores_before_ready']}, store "
          f"{rs['fds_stored']}); upgrade answered {up['answer_s'] * 1000:.0f} ms, a new attach "
          f"{up['attach_s'] * 1000:.0f} ms", flush=True)
    return r


def run_attach(build, peers):
    js = tempfile.mktemp(prefix="shmem-bench-attach-", suffix=".json")
    out = subprocess.run([os.path.join(build, "bench", "bench-shmem"), "--broker",
                          os.path.join(build, "broker", "shmem-brokerd"), "--round-trips", "200", "--rounds", "100",
                          "--peers", str(peers), "--json", js], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"bench-shmem --peers {peers}: {out.stderr}")
    with open(js) as f:
        r = json.load(f)["attach"]
    os.unlink(js)
    print(f"host-peer attach, {peers} kept attached: p50 {r['p50_ns'] / 1e3:.0f} us, p99 {r['p99_ns'] / 1e3:.0f} us, "
          f"max {r['max_ns'] / 1e3:.0f} us, last attach p50 {r['last_attach_p50_ns'] / 1e3:.0f} us", flush=True)
    return r


def table(res):
    """Issue 10's table: (figure, measured, goal)."""
    rows = []
    ms, us = (lambda s: f"{s * 1000:.1f} ms"), (lambda s: f"{s * 1e6:.0f} µs")
    def count(r):  # N, and the N asked for where the fd limit capped it
        return f"{r['regions']:,}" + (f" (for {r['asked']:,})" if r["asked"] != r["regions"] else "")

    for d in res["declared"]:
        n = count(d)
        rows += [(f"create an idle region, {n} made", us(d["create"]["create_s"]), ""),
                 (f"broker RSS / fds an idle region, {n}", f"{d['create']['rss_kib']:.1f} KiB / "
                  f"{d['create']['fds']:.2f}", ""),
                 (f"`shmemctl --json list`, {n} regions", ms(d["list_s"]), "works"),
                 (f"`shmemctl --json inspect`, beside {n}", ms(d["inspect_s"]), ""),
                 (f"attach+detach with {OTHERS} peers, alone / beside {n}",
                  " / ".join(c.get("failed") and f"FAILS ({c['failed']})" or f"{c['per_s']:.0f}"
                             for c in (d["churn_alone"], d["churn_beside"])) + " /s", "flat"),
                 (f"  broker CPU a cycle, alone / beside {n}",
                  f"{d['churn_alone']['broker_ms']:.2f} / {d['churn_beside']['broker_ms']:.2f} ms", "flat"),
                 (f"  PID 1 same_fd() a cycle, alone / beside {n}",
                  f"{d['churn_alone']['pid1_compares']:,.0f} / {d['churn_beside']['pid1_compares']:,.0f}", "")]
    if len(res["declared"]) >= 2:
        a, z = res["declared"][0], res["declared"][-1]
        rows.append((f"list {z['regions']:,} / list {a['regions']:,}", f"{z['list_s'] / a['list_s']:.1f}x",
                     f"≤ {1.2 * z['regions'] / a['regions']:.0f}x"))
    for p in res["persistent"]:
        n, k = count(p), p["peers"]
        rows += [(f"create a persistent region, {n} made", us(p["create"]["create_s"]), ""),
                 (f"broker RSS / fds a persistent region, {n}", f"{p['create']['rss_kib']:.1f} KiB / "
                  f"{p['create']['fds']:.2f}", ""),
                 (f"kill -9 to READY=1, {n} persistent + {k} peers", ms(p["restart"]["ready_s"]), ""),
                 (f"kill -9 to a new attach, {n} persistent + {k} peers", ms(p["restart"]["attach_s"]),
                  "≤ 100 ms" if p["regions"] <= 1000 else ""),
                 (f"FDSTORE=1 before READY=1, {n}", str(p["restart"]["stores_before_ready"]), "1"),
                 (f"`shmemctl upgrade` answered, {n} persistent + {k} peers",
                  f"FAILS: {p['upgrade']['failed']}" if "failed" in p["upgrade"] else ms(p["upgrade"]["answer_s"]),
                  "works"),
                 (f"upgrade to a new attach, {n} persistent + {k} peers",
                  "—" if "failed" in p["upgrade"] else ms(p["upgrade"]["attach_s"]), "")]
    for a in res["attach"]:
        rows += [(f"host-peer attach p50 / p99, {a['peers']} kept attached",
                  f"{a['p50_ns'] / 1e3:.0f} / {a['p99_ns'] / 1e3:.0f} µs",
                  "p99 < 300 µs" if a["peers"] == 16 else "")]
    q = res.get("anchor")
    if q:
        for key, label in (("p50", "p50"), ("p99", "p99"), ("max", "max"), ("last_attach_p50", "16th attach p50")):
            rows.append((f"QEMU-side attach {label}, broker / ivshmem-server",
                         f"{q['broker'][key + '_ns'] / 1e3:.0f} / {q['anchor'][key + '_ns'] / 1e3:.0f} µs = "
                         f"{q['ratio'][key]:.2f}", "< 1"))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build")
    ap.add_argument("--regions", default="1000,10000", help="N, comma-separated")
    ap.add_argument("--peers", type=int, default=76, help="host peers attached across kill -9 and upgrade")
    ap.add_argument("--churn", type=int, default=200, help="attach+detach cycles")
    ap.add_argument("--attach-peers", default="16,64")
    ap.add_argument("--no-anchor", action="store_true", help="skip the QEMU-side attach against ivshmem-server")
    ap.add_argument("--json")
    a = ap.parse_args()
    Bench.nofile = raise_nofile()
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"load average at the start: {' '.join(load)}", flush=True)
    ns = [int(n) for n in a.regions.split(",")]
    res = {"load_start": load, "nofile": Bench.nofile,
           "declared": [run_declared(a.build, n, a.churn) for n in ns],
           "persistent": [run_persistent(a.build, n, a.peers) for n in ns],
           "attach": [run_attach(a.build, int(p)) for p in a.attach_peers.split(",")]}
    if not a.no_anchor:
        res["anchor"] = anchor.run(a.build)
    with open("/proc/loadavg") as f:
        res["load_end"] = f.read().split()[:3]
    res["table"] = [{"figure": f, "measured": m, "goal": g} for f, m, g in table(res)]
    print(f"\nload average at the end: {' '.join(res['load_end'])}\n")
    print("| figure | measured | goal |\n|---|---|---|")
    for r in res["table"]:
        print(f"| {r['figure']} | {r['measured']} | {r['goal']} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
