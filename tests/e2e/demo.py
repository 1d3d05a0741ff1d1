# SPDX-License-Identifier: LGPL-2.1-or-later
"""The README demo: the e2e scenario, narrated, ending with `shmemctl inspect`.

Usage: python3 demo.py BUILD_DIR
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))  # tests/: harness
import scenario  # noqa: E402

LINGER = " sleep 4000"  # A and the host stay attached while the demo inspects


def tool_lines(log):
    return [line for line in log.splitlines() if "shmem-tool:" in line or "SHMEM-RESULT" in line]


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    lab = scenario.Lab(build)
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
    finally:
        lab.stop()
        lab.cleanup()
    print("\ndemo: " + ("all three peers exchanged data and signals" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
