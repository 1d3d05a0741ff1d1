#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""bench/factory.py: a guest's request to a usable region, through the factory.

    flock /tmp/shmem-e2e.lock bench/factory.py [--build BUILD] [--json OUT]

(docs/BENCHMARKS.md has the figures; boots TCG guests, so under the lock the
e2e tests share.) For each machine type a broker of its own on a temporary
directory (--no-config, --hotplug-helper from BUILD) and one TCG guest that
starts with the factory device alone:

- pc: pci.0, ACPI hotplug, no IOMMU (libshmem-guest polls);
- q35: intel-iommu (vfio MSI-X in the guest) and --root-ports plain
  pcie-root-ports, eight to a slot of pcie.0 (multifunction).

In the guest, for i = 1, 2, ... until the factory refuses:

    shmem-guest --detached attach rI 4K detach rI    # plugged: a new device
    shmem-guest --detached attach rI 4K detach rI    # parked: the same device

side by side, so that the machine's drift hits both alike. Each attach line
carries ms (shmem_attach(): from the call to the region mapped and usable,
on the guest's monotonic clock) and answer_ms (the request to the factory's
answer); the broker's log has the helper's own time ("plugged ... in N ms").
The refusal that ends the loop is the VM's capacity: its status and detail
are reported. Then --extra more parked re-attaches and the refused request
again, between two samples of the broker's and QEMU's open fds and of the
broker's regions: equal counts, or a leak.

--vms N repeats each machine type with fresh VMs (and brokers) and pools
their pairs too. --broker-limits adds two short runs on pc with a lowered
broker limit (connections-per-vm 4, regions-per-uid 3): which status says
so. A guest that fails or runs out of time (a VM that stopped answering) is
a row of the table, and the exit status is 1.

Stdlib and tests/harness only.
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests"))
import harness  # noqa: E402
from harness import guestlab  # noqa: E402

GUEST_TIMEOUT = 900  # s, QEMU start to power off
LIMIT_TIMEOUT = 120  # s, the same for a --broker-limits run: a VM that stops answering is a finding, not a wait
MARK_SLEEP = 3       # s the guest waits after a mark, for the host to sample

# $1: the most requests to try; $2: parked re-attaches and a refusal after the loop.
GUEST_SCRIPT = r"""
max={max}; extra={extra}
i=1
while [ $i -le $max ]; do
        shmem-guest --detached attach r$i 4K detach r$i >/tmp/o 2>&1; rc=$?
        cat /tmp/o
        [ $rc -eq 0 ] || break
        shmem-guest --detached attach r$i 4K detach r$i || {{ echo "bench: FAIL parked r$i"; exit 1; }}
        i=$((i + 1))
done
echo "bench: refused r$i rc=$rc"
echo "bench: devices=$(grep -l 0x1110 /sys/bus/pci/devices/*/device | wc -l)"
[ $i -gt 1 ] || exit 0
echo "bench: mark before"; sleep {sleep}
j=0
while [ $j -lt $extra ]; do
        shmem-guest --detached attach r1 4K detach r1 >/dev/null || {{ echo "bench: FAIL extra"; exit 1; }}
        j=$((j + 1))
done
# The refused request again; not when the loop ended at $max (it would make r$i).
[ $rc -eq 0 ] || {{ shmem-guest --detached attach r$i 4K; echo "bench: refused again rc=$?"; }}
echo "bench: mark after"; sleep {sleep}
"""

LINE_RE = re.compile(r"shmem-tool: (attach|detach) (r\d+) status=(\d+) \(([^)]*)\)(.*)")
PLUGGED_RE = re.compile(r"region '(r\d+)' plugged \(([^)]*)\) in (\d+) ms")
CANNOT_RE = re.compile(r"cannot plug '(r\d+)' \((\d+) ms\)")


def fields(rest):
    """{key: value} of an answer line's tail, detail (to the end of the line) included."""
    rest, _, detail = rest.partition(" detail=")
    out = dict(kv.split("=", 1) for kv in rest.split() if "=" in kv)
    if detail:
        out["detail"] = detail.strip()
    return out


def percentile(xs, p):
    """Nearest rank: with fewer than 100 samples, p99 is the largest."""
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def summary(xs):
    if not xs:
        return None
    return {"n": len(xs), "min": min(xs), "median": statistics.median(xs), "p90": percentile(xs, 90),
            "p99": percentile(xs, 99), "max": max(xs)}


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class Run:
    """One machine type: its broker, its guest, what they said."""

    def __init__(self, args, name, machine, broker_options=(), root_ports=0):
        self.args = args
        self.name = name
        self.machine = machine
        self.broker_options = list(broker_options)
        self.root_ports = root_ports
        self.samples = {}

    def guest(self, image, workdir, factory_sock):
        script = GUEST_SCRIPT.format(max=self.args.max, extra=self.args.extra, sleep=MARK_SLEEP)
        g = guestlab.Guest(image, script, workdir, [guestlab.Shmem(factory_sock, 1)], name=f"bench-{self.name}",
                           timeout=self.args.guest_timeout or (LIMIT_TIMEOUT if self.broker_options else GUEST_TIMEOUT),
                           iommu=self.machine == "q35")
        if self.machine == "pc":
            g.argv[g.argv.index("q35")] = "pc"
        # Eight root ports to a slot, from slot 2 (the factory device takes the first free slot, 1).
        for k in range(self.root_ports):
            slot, fn = 2 + k // 8, k % 8
            g.argv += ["-device", f"pcie-root-port,id=rp{k},chassis={k + 1},slot={k + 1},bus=pcie.0,"
                                  f"addr=0x{slot:x}.{fn}" + (",multifunction=on" if fn == 0 else "")]
        return g

    def sample(self, broker, guest, ctl, mark):
        # The fds first: shmemctl's own connection is not one of them.
        fds = {"broker_fds": fd_count(broker.pid), "qemu_fds": fd_count(guest.proc.pid)}
        regions = json.loads(subprocess.run([ctl, "--socket", broker.socket, "--json", "list"], check=True,
                                            capture_output=True, text=True, timeout=30).stdout)["regions"]
        self.samples[mark] = dict(fds, regions=len(regions), attached=sum(r["peers"] for r in regions))

    def execute(self, image):
        a = self.args
        d = tempfile.mkdtemp(prefix="shmem-bench-")  # short: Unix socket paths have 108 bytes
        broker = g = None
        try:
            run = os.path.join(d, "run")
            broker = harness.Broker([a.brokerd, "--no-config", "--hotplug-helper", a.hotplug] + self.broker_options,
                                    run, os.path.join(d, "broker.log"))
            g = self.guest(image, d, os.path.join(run, "qemu", "factory.sock"))
            g.start()
            seen = set()
            while g.proc.poll() is None and len(seen) < 2 and time.monotonic() < g.started + g.timeout:
                for mark in re.findall(rb"bench: mark (\w+)", g.log()):
                    if mark not in seen:
                        seen.add(mark)
                        self.sample(broker, g, a.shmemctl, mark.decode())
                time.sleep(0.05)
            res = g.wait()
            self.broker_log = broker.log()
            self.log = res.log.replace("\r", "")
            self.rc, self.timed_out, self.seconds = res.rc, res.timed_out, res.seconds
        finally:
            guestlab.kill_all()
            if broker:
                broker.close()
            if a.keep:
                print(f"factory.py: kept {d}", file=sys.stderr)
            else:
                shutil.rmtree(d, ignore_errors=True)
        return self.parse()

    def parse(self):
        failed = self.timed_out or self.rc != 0
        if failed:  # reported in the table, and factory.py exits 1
            tail = "\n".join(self.log.splitlines()[-20:])
            print(f"factory.py: {self.name}: guest rc={self.rc} timed_out={self.timed_out}; its log ends:\n{tail}",
                  file=sys.stderr)
        helper = {m.group(1): int(m.group(3)) for m in PLUGGED_RE.finditer(self.broker_log)}
        buses = {m.group(1): m.group(2) for m in PLUGGED_RE.finditer(self.broker_log)}
        attaches, detaches = {}, {}
        refusal = None
        for m in LINE_RE.finditer(self.log):
            command, region, status, f = m.group(1), m.group(2), int(m.group(3)), fields(m.group(5))
            if command == "detach":
                detaches.setdefault(region, []).append(f)
            elif status != 0:
                if not refusal:
                    cannot = [int(c.group(2)) for c in CANNOT_RE.finditer(self.broker_log) if c.group(1) == region]
                    refusal = {"region": region, "status": status, "text": m.group(4),
                               "detail": f.get("detail", ""), "ms": float(f["ms"]),
                               "answer_ms": float(f["answer_ms"]) if "answer_ms" in f else None,
                               "helper_ms": cannot[0] if cannot else None}
            else:
                attaches.setdefault(region, []).append(f)
        plugged = [r for r in sorted(attaches, key=lambda r: int(r[1:])) if r in helper and len(attaches[r]) >= 2]
        pairs = []
        for r in plugged:
            first, again = attaches[r][0], attaches[r][1]
            pairs.append({"region": r, "device": first["device"], "bus": buses[r],
                          "plug_ms": float(first["ms"]), "plug_answer_ms": float(first["answer_ms"]),
                          "helper_ms": helper[r], "parked_ms": float(again["ms"]),
                          "parked_answer_ms": float(again["answer_ms"]),
                          "detach_ms": [float(d["ms"]) for d in detaches.get(r, [])[:2]],
                          "same_device": again["device"] == first["device"]})
        m = re.search(r"bench: devices=(\d+)", self.log)
        again = re.search(r"bench: refused again rc=(\d+)", self.log)
        out = {
            "machine": self.machine,
            "broker_options": self.broker_options,
            "root_ports": self.root_ports,
            "guest_seconds": round(self.seconds, 1),
            "plugged": len(pairs),
            "devices_in_guest": int(m.group(1)) if m else None,
            "refusal": refusal,
            "refused_again_status": int(again.group(1)) if again else None,
            "samples": self.samples,
            "pairs": pairs,
        }
        if failed:
            out["guest_failed"] = f"rc={self.rc} timed_out={self.timed_out}"
            out["broker_warnings"] = [l for l in self.broker_log.splitlines() if "WARNING" in l]
        out.update(figures(pairs))
        before, after = self.samples.get("before"), self.samples.get("after")
        out["leak_free"] = bool(before and after and before == after)
        return out


def figures(pairs):
    """The summaries of @pairs (one VM's, or several VMs' pooled)."""
    if not pairs:
        return {}
    plug = [p["plug_ms"] for p in pairs]
    parked = [p["parked_ms"] for p in pairs]
    return {
        "n": len(pairs),
        "plug_ms": summary(plug),
        "parked_ms": summary(parked),
        "ratio_median": statistics.median(plug) / statistics.median(parked),
        "ratio_pairs": summary([p["plug_ms"] / p["parked_ms"] for p in pairs]),
        "plug_answer_ms": summary([p["plug_answer_ms"] for p in pairs]),
        "helper_ms": summary([p["helper_ms"] for p in pairs]),
        "guest_side_ms": summary([p["plug_ms"] - p["plug_answer_ms"] for p in pairs]),
        "parked_answer_ms": summary([p["parked_answer_ms"] for p in pairs]),
        "detach_ms": summary([d for p in pairs for d in p["detach_ms"]]),
        "all_same_device": all(p["same_device"] for p in pairs),
    }


def fmt(s, key="median"):
    return "-" if not s else f"{s[key]:.0f}" if s[key] >= 100 else f"{s[key]:.1f}"


def sampled(key):
    return lambda r: "/".join(str(r["samples"].get(k, {}).get(key, "-")) for k in ("before", "after")) \
        if "samples" in r else "-"


def refusal(key):
    return lambda r: "-" if not r.get("refusal") else str(r["refusal"][key] if r["refusal"][key] is not None
                                                           else "-")


def report(results):
    """The Markdown table of docs/BENCHMARKS.md, one column per run (pooled ones last)."""
    rows = [
        ("samples (pairs plugged, then parked)", lambda r: str(r.get("n", 0))),
        ("**plugged attach**, median ms", lambda r: fmt(r.get("plug_ms"))),
        ("plugged attach, p90 ms", lambda r: fmt(r.get("plug_ms"), "p90")),
        ("plugged attach, p99 ms", lambda r: fmt(r.get("plug_ms"), "p99")),
        ("plugged attach, max ms", lambda r: fmt(r.get("plug_ms"), "max")),
        ("  of it: request to answer, median ms", lambda r: fmt(r.get("plug_answer_ms"))),
        ("  of that: shmem-hotplug (broker log), median ms", lambda r: fmt(r.get("helper_ms"))),
        ("  shmem-hotplug, p99 ms", lambda r: fmt(r.get("helper_ms"), "p99")),
        ("  answer to usable (guest side), median ms", lambda r: fmt(r.get("guest_side_ms"))),
        ("**parked re-attach**, median ms", lambda r: fmt(r.get("parked_ms"))),
        ("parked re-attach, p90 ms", lambda r: fmt(r.get("parked_ms"), "p90")),
        ("parked re-attach, p99 ms", lambda r: fmt(r.get("parked_ms"), "p99")),
        ("  of it: request to answer, median ms", lambda r: fmt(r.get("parked_answer_ms"))),
        ("detach (parks), median ms", lambda r: fmt(r.get("detach_ms"))),
        ("**ratio plugged / parked** (medians)",
         lambda r: f"{r['ratio_median']:.1f}" if "ratio_median" in r else "-"),
        ("ratio of each pair, min .. max",
         lambda r: f"{r['ratio_pairs']['min']:.1f} .. {r['ratio_pairs']['max']:.1f}" if "ratio_pairs" in r
         else "-"),
        ("re-attach got the same device", lambda r: "-" if "all_same_device" not in r
         else "yes" if r["all_same_device"] else "NO"),
        ("**regions the VM took** (ivshmem devices in the guest)",
         lambda r: f"{r['plugged']} ({r['devices_in_guest']})" if "plugged" in r else "-"),
        ("refused by: status", refusal("status")),
        ("  its request to answer, ms", refusal("answer_ms")),
        ("  its shmem-hotplug, ms", refusal("helper_ms")),
        ("  the same request again: status",
         lambda r: "-" if r.get("refused_again_status") is None else str(r["refused_again_status"])),
        ("broker fds before / after", sampled("broker_fds")),
        ("QEMU fds before / after", sampled("qemu_fds")),
        ("broker regions before / after", sampled("regions")),
        ("fds and regions equal", lambda r: "-" if "leak_free" not in r else "yes" if r["leak_free"] else "NO"),
        ("guest, QEMU start to power off, s", lambda r: str(r.get("guest_seconds", "-"))),
        ("guest failed", lambda r: r.get("guest_failed", "no") if "machine" in r and "plugged" in r else "-"),
    ]
    names = list(results)
    print("| figure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for label, f in rows:
        print(f"| {label} | " + " | ".join(f(results[n]) for n in names) + " |")
    for n in names:
        r = results[n].get("refusal")
        if r:
            print(f"{n}: {r['region']} refused, status {r['status']} ({r['text']}): {r['detail']}")
        for w in results[n].get("broker_warnings", []):
            print(f"{n}: broker: {w}")


def main():
    ap = argparse.ArgumentParser(description="Times a guest's factory requests and finds how many regions one "
                                             "VM can attach that way (docs/BENCHMARKS.md). Boots TCG guests: run "
                                             "it under flock /tmp/shmem-e2e.lock.")
    ap.add_argument("--build", default=os.path.join(TOP, "build"), help="the build directory (default: build)")
    ap.add_argument("--json", help="write the figures here as JSON")
    ap.add_argument("--machines", default="pc,q35", help="pc, q35 or both (default: pc,q35)")
    ap.add_argument("--root-ports", type=int, default=30, help="q35's pcie-root-ports (default: 30)")
    ap.add_argument("--max", type=int, default=100, help="requests at most per guest (default: 100)")
    ap.add_argument("--extra", type=int, default=20,
                    help="parked re-attaches after the loop, for the leak check (default: 20)")
    ap.add_argument("--vms", type=int, default=1,
                    help="fresh VMs (each with its own broker) per machine type, one after another; their "
                         "pairs are also pooled (default: 1)")
    ap.add_argument("--broker-limits", action="store_true",
                    help="also pc with connections-per-vm 4, and with regions-per-uid 3")
    ap.add_argument("--guest-timeout", type=int, help=f"s, each guest's QEMU start to power off (default: "
                                                       f"{GUEST_TIMEOUT}, {LIMIT_TIMEOUT} for --broker-limits)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories")
    a = ap.parse_args()
    b = os.path.abspath(a.build)
    a.brokerd = os.path.join(b, "broker", "shmem-brokerd")
    a.hotplug = os.path.join(b, "plugin-qemu", "hotplug", "shmem-hotplug")
    a.shmemctl = os.path.join(b, "clients", "shmemctl", "shmemctl")
    guest_bin = os.path.join(b, "clients", "tool", "shmem-guest")
    for p in (a.brokerd, a.hotplug, a.shmemctl, guest_bin):
        if not os.access(p, os.X_OK):
            ap.error(f"{p}: not built (./scripts/build.sh)")
    image = guestlab.Image.build(os.path.join(b, "guest-image"), guest_bin)

    runs = []
    for m in a.machines.split(","):
        if m not in ("pc", "q35"):
            ap.error(f"unknown machine type {m}")
        for k in range(a.vms):
            runs.append(Run(a, m if a.vms == 1 else f"{m}-{k + 1}", m, root_ports=a.root_ports if m == "q35" else 0))
    if a.broker_limits:
        runs.append(Run(a, "pc-conn4", "pc", ["--max-connections-per-vm", "4"]))
        runs.append(Run(a, "pc-regions3", "pc", ["--max-regions-per-uid", "3"]))
    started = datetime.datetime.now(datetime.timezone.utc)
    results = {}
    for r in runs:
        t = time.monotonic()
        results[r.name] = r.execute(image)
        print(f"factory.py: {r.name} done in {time.monotonic() - t:.0f} s", file=sys.stderr)
    if a.vms > 1:
        for m in a.machines.split(","):
            pooled = [p for r in runs if r.machine == m and not r.broker_options for p in results[r.name]["pairs"]]
            results[f"{m}, {a.vms} VMs pooled"] = dict(figures(pooled), machine=m)
    report(results)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"started": started.isoformat(timespec="seconds"), "host": platform.node(),
                       "cpus": os.cpu_count(), "kernel": platform.release(),
                       "qemu": subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                                              text=True).stdout.splitlines()[0],
                       "results": results}, f, indent=1)
    sys.exit(1 if any("guest_failed" in r for r in results.values()) else 0)


if __name__ == "__main__":
    main()
