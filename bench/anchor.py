# SPDX-License-Identifier: LGPL-2.1-or-later
"""The QEMU-side attach, the broker beside its anchor (docs/BENCHMARKS.md, "The anchor").

A broker with one declared region of 1 MiB and 16 peers (17 vectors), and
QEMU's contrib/ivshmem-server (bench/anchor-ivshmem-server.sh builds it) with
1 MiB and 17 vectors: what a guest's `-device ivshmem-doorbell,vectors=17`
needs from either. bench-ivshmem first checks that it works against both
(join, memory, a ring, leave), then times them alternating in blocks.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = 17


def wait_for(path, proc, what):
    end = time.monotonic() + 10
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > end:
            raise RuntimeError(f"{what} did not create {path}")
        time.sleep(0.02)


def run(build, peers=16, rounds=20, blocks=5):
    """Starts both servers, checks and times them; returns bench-ivshmem's figures."""
    out = subprocess.run([os.path.join(HERE, "anchor-ivshmem-server.sh")], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("the anchor (QEMU's contrib/ivshmem-server) could not be built:\n" + out.stderr)
    server = out.stdout.strip().splitlines()[-1]
    client = os.path.join(build, "bench", "bench-ivshmem")
    d = tempfile.mkdtemp(prefix="shmem-bench-anchor-")
    shm = f"shmem-bench-anchor-{os.getpid()}"
    procs = []
    try:
        rundir = os.path.join(d, "run")
        log = open(os.path.join(d, "servers.log"), "w")
        procs.append(subprocess.Popen([os.path.join(build, "broker", "shmem-brokerd"), "--no-config",
                                       "--rundir", rundir, "--region", f"bench:1M:peers={VECTORS - 1}",
                                       "--max-peers-per-uid", str(VECTORS - 1)], stdout=log, stderr=log))
        broker_sock = os.path.join(rundir, "qemu", "bench.sock")
        wait_for(broker_sock, procs[-1], "shmem-brokerd")
        anchor_sock = os.path.join(d, "ivshmem-server.sock")
        procs.append(subprocess.Popen([server, "-F", "-S", anchor_sock, "-M", shm, "-l", str(1 << 20),
                                       "-n", str(VECTORS)], stdout=log, stderr=log))
        wait_for(anchor_sock, procs[-1], "ivshmem-server")
        checks = {}
        for name, sock in (("broker", broker_sock), ("anchor", anchor_sock)):
            c = subprocess.run([client, "check", sock, str(VECTORS)], capture_output=True, text=True, timeout=60)
            if c.returncode != 0:
                raise RuntimeError(f"bench-ivshmem check against the {name} failed:\n{c.stdout}{c.stderr}")
            checks[name] = c.stdout.strip().splitlines()
        js = os.path.join(d, "anchor.json")
        b = subprocess.run([client, "bench", "--peers", str(peers), "--rounds", str(rounds), "--blocks", str(blocks),
                            "--json", js, f"broker={broker_sock}:{VECTORS}", f"anchor={anchor_sock}:{VECTORS}"],
                           capture_output=True, text=True, timeout=600)
        if b.returncode != 0:
            raise RuntimeError(f"bench-ivshmem bench failed:\n{b.stdout}{b.stderr}")
        print(b.stdout, end="", flush=True)
        with open(js) as f:
            r = json.load(f)
        r["check"] = checks
        r["anchor_binary"] = server
        for k in ("p50_ns", "p99_ns", "max_ns", "last_attach_p50_ns"):
            r.setdefault("ratio", {})[k.replace("_ns", "")] = r["broker"][k] / r["anchor"][k]
        return r
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)
        try:
            os.unlink(f"/dev/shm/{shm}")
        except FileNotFoundError:
            pass
        shutil.rmtree(d, ignore_errors=True)
