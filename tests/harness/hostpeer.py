# SPDX-License-Identifier: LGPL-2.1-or-later
"""hostpeer: a scripted host peer as the Python tests run it.

    p = HostPeer(peer_bin, sock, "r", "info write 0 hi", "a", workdir)
    p.wait_output("info index=0")   # AssertionError if it ends or times out first
    out = p.stop()                  # waits (kills past the timeout), returns the output
    p.close()                       # in tearDown: kills it if it still runs

shmem-peer (clients/tool/shmem-tool.c) writes its output to WORKDIR/LABEL.out,
which the test reads while the peer runs.
"""

import os
import subprocess
import time


class HostPeer(subprocess.Popen):
    def __init__(self, peer_bin, sock, region, script, label, workdir, options=(), **popen):
        """@popen: more of Popen's arguments (user=65534, group=65534 to run as nobody)."""
        self.label = label
        self.out = open(os.path.join(workdir, f"{label}.out"), "w+")
        super().__init__([peer_bin, "--socket", sock, "--label", label, *options, region] + script.split(),
                         stdout=self.out, stderr=subprocess.STDOUT, **popen)

    def output(self):
        self.out.seek(0)
        return self.out.read()

    def wait_output(self, text, timeout=30, interval=0.05):
        end = time.monotonic() + timeout
        while text not in self.output():
            if self.poll() is not None or time.monotonic() > end:
                raise AssertionError(f"{self.label}: '{text}' not printed:\n{self.output()}")
            time.sleep(interval)

    def stop(self, timeout=60):
        """Waits for the script to end, killing the peer past @timeout; returns its output."""
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.wait()
        return self.output()

    def close(self):
        if self.poll() is None:
            self.kill()
            self.wait()
        self.out.close()
