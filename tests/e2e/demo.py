# SPDX-License-Identifier: LGPL-2.1-or-later
"""The README demo: the e2e scenario, narrated, ending with `shmemctl inspect`;
then a guest that creates a region at run time through the guest factory.

Usage: python3 demo.py BUILD_DIR
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
import scenario  # noqa: E402
from harness import guestlab  # noqa: E402

LINGER = " sleep 4000"  # A and the host stay attached while the demo inspects


def tool_lines(log):
    return [line for line in log.splitlines() if "shmem-tool:" in line or "SHMEM-RESULT" in line]


# Act 2, the guest factory (docs/factory.md): vm-c boots with its factory
# device alone and creates region 'made-in-vm-c' at run time; a host process
# finds it and answers.
FACTORY_REGION = "made-in-vm-c"
SCRIPT_C = (f"shmem-guest --detached attach {FACTORY_REGION} 64K info write 0 hello-from-vm-c "
            "wait-from 0x2 60000 expect 100 hello-from-host 60000 sleep 3000 detach " + FACTORY_REGION)
SCRIPT_HC = "info expect 0 hello-from-vm-c 60000 write 100 hello-from-host notify 0x1 sleep 2000"


def factory_act(lab, image):
    """Act 2; returns (ok, the lines to show)."""
    c = guestlab.Guest(image, SCRIPT_C, lab.workdir, name="vm-c", timeout=180,
                       shmem=[guestlab.Shmem(os.path.join(lab.rundir, "qemu", "factory.sock"), 1)])
    c.argv += ["-device", "pcie-root-port,id=rp0,chassis=1,slot=1"]
    c.start()
    print("demo: guest vm-c started with its factory device alone; it asks the broker for "
          f"'{FACTORY_REGION}' (64K), which creates it and hot-plugs its device")
    c.wait_log(rb"attach " + FACTORY_REGION.encode() + rb" status=0", timeout=150)
    h = subprocess.Popen([lab.peer, "--socket", lab.socket, "--label", "host", "--find", FACTORY_REGION]
                         + SCRIPT_HC.split(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    print(f"demo: host process found '{FACTORY_REGION}', attached as peer 1")
    time.sleep(1)
    inspect = lab.shmemctl_text("inspect", FACTORY_REGION)
    h_out = h.communicate(timeout=120)[0].decode(errors="replace")
    rc = c.wait()
    lines = [("vm-c (guest, created the region)", "\n".join(tool_lines(rc.log))),
             ("host (process, peer 1)", "\n".join(tool_lines(h_out))),
             (f"$ shmemctl inspect {FACTORY_REGION}", inspect.rstrip())]
    return rc.rc == 0 and h.returncode == 0, lines


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    hotplug = os.path.join(os.path.abspath(build), "plugin-qemu", "hotplug", "shmem-hotplug")
    lab = scenario.Lab(build, extra_args=["--hotplug-helper", hotplug])
    ok = False
    try:
        print("demo: building the guest image (Debian kernel + busybox; cached after the first run)")
        image = lab.image()
        lab.start_broker()
        print(f"demo: broker on {lab.rundir}, region '{scenario.REGION}' ({scenario.SIZE}), "
              f"QEMU socket {lab.qemu_socket()}")
        a = lab.guest(image, "vm-a", scenario.SCRIPT_A + LINGER).start()
        a.wait_connected()
        print("demo: guest vm-a started (TCG), attached as peer 0")
        b = lab.guest(image, "vm-b", scenario.SCRIPT_B).start()
        b.wait_connected()
        print("demo: guest vm-b started (TCG), attached as peer 1")
        h = lab.host_peer(scenario.SCRIPT_H + LINGER)
        print("demo: host process started, attached as peer 2")
        rb = b.wait()
        print(f"demo: vm-b powered off after {rb.seconds:.1f} s (rc={rb.rc}); waiting for the others to see it")
        for _ in range(200):
            if lab.shmemctl_json("inspect", scenario.REGION)["active"] == [0, 2]:
                break
            time.sleep(0.05)
        inspect = lab.shmemctl_text("inspect", scenario.REGION)
        h_out = h.communicate(timeout=120)[0].decode(errors="replace")
        ra = a.wait()
        for name, log in (("vm-a (guest, peer 0)", ra.log), ("vm-b (guest, peer 1)", rb.log),
                          ("host (process, peer 2)", h_out)):
            print(f"\n--- {name}")
            print("\n".join(tool_lines(log)))
        ok = ra.rc == 0 and rb.rc == 0 and h.returncode == 0
        print(f"\n$ shmemctl inspect {scenario.REGION}   (after vm-b powered off)")
        print(inspect, end="")
        print("demo: " + ("all three peers exchanged data and signals" if ok else "FAILED"))

        print("\ndemo: act 2, a guest creates a region at run time")
        ok_c, lines = factory_act(lab, image)
        for name, text in lines:
            print(f"\n--- {name}\n{text}")
        print("demo: " + (f"vm-c created '{FACTORY_REGION}' and the host answered" if ok_c else "FAILED"))
        ok = ok and ok_c
    finally:
        lab.stop()
        lab.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
