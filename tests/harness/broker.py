# SPDX-License-Identifier: LGPL-2.1-or-later
"""broker: start a shmem-brokerd for a test and wait until it serves.

    b = Broker([brokerd, "--no-config", "--region", "r:64K"], rundir, log_path)
    ...                    # a Popen: pid, poll(), wait(), send_signal() as usual
    assert b.stop() == 0, b.log()
    b.close()              # in tearDown: kills it if it still runs

Ready means that a Hello on RUNDIR/broker.sock was answered OK, not that the
socket file exists: the file appears at bind(), and a connect() before the
broker's listen() is refused (ECONNREFUSED). Regions declared on the command
line or in the configuration have their QEMU sockets by then. A broker that
exits first, or answers nothing by the deadline, fails the start with its log.
Under a service manager (fakesystemd) ready means READY=1 instead.
"""

import json
import os
import signal
import subprocess
import time

from . import proto

READY_TIMEOUT = 20.0  # s; only a broker that does not come up waits it out
STOP_TIMEOUT = 10.0
# Nobody listens yet (no file, or bound and not listening), or a broker that
# dies starting up closed the connection: try again until the deadline.
NOT_YET = (FileNotFoundError, ConnectionRefusedError, ConnectionResetError, TimeoutError)


class Broker(subprocess.Popen):
    def __init__(self, argv, rundir, log_path, env=None, timeout=READY_TIMEOUT):
        """Starts @argv (shmem-brokerd and its options but --rundir, which is
        added here so that the socket awaited is the broker's) on @rundir,
        stdout and stderr appended to @log_path; returns once it is ready.
        RuntimeError if it exits first or refuses the Hello, TimeoutError past
        @timeout seconds; the broker is killed then."""
        if any(a == "--rundir" or a.startswith("--rundir=") for a in argv):
            raise ValueError("the launcher passes --rundir itself")
        self.rundir = rundir
        self.socket = os.path.join(rundir, "broker.sock")
        self.log_path = log_path
        with open(log_path, "ab") as log:
            super().__init__(list(argv) + ["--rundir", rundir], env=env, stdin=subprocess.DEVNULL,
                             stdout=log, stderr=subprocess.STDOUT)
        try:
            self.hello = self.wait_ready(timeout)
        except BaseException:
            self.close()
            raise

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Says Hello until the broker answers one; returns its proto.Reply."""
        end = time.monotonic() + timeout
        while True:
            if self.poll() is not None:
                raise RuntimeError(f"shmem-brokerd exited with {self.returncode} before it answered "
                                   f"a Hello on {self.socket}:\n{self.log()}")
            try:
                reply = proto.hello(self.socket, timeout=min(2.0, max(0.1, end - time.monotonic())))
            except NOT_YET as e:
                if time.monotonic() > end:
                    raise TimeoutError(f"shmem-brokerd answered no Hello on {self.socket} within "
                                       f"{timeout:g} s ({e}):\n{self.log()}") from None
                time.sleep(0.01)
                continue
            if reply.status != proto.STATUS_OK:
                raise RuntimeError(f"shmem-brokerd refused the Hello: status {reply.status} "
                                   f"{reply.error}:\n{self.log()}")
            return reply

    def qemu_socket(self, region):
        """The ivshmem server socket of @region, for QEMU's -chardev."""
        return os.path.join(self.rundir, "qemu", f"{region}.sock")

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, then SIGKILL past @timeout; returns the exit status."""
        if self.poll() is None:
            self.send_signal(signal.SIGTERM)
            try:
                self.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self.wait()
        return self.returncode

    def close(self):
        """Kills the broker if it still runs (for tearDown: whatever the test did)."""
        if self.poll() is None:
            self.kill()
            self.wait()


def shmemctl_json(shmemctl, socket_path, *args, timeout=30):
    """`shmemctl --socket SOCKET --json ARGS...` parsed; RuntimeError with its stderr if it fails."""
    p = subprocess.run([shmemctl, "--socket", socket_path, "--json", *args], capture_output=True, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"shmemctl {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return json.loads(p.stdout)
