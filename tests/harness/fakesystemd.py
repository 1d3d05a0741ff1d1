# SPDX-License-Identifier: LGPL-2.1-or-later
"""fakesystemd: a service manager for tests, the parts of systemd's protocols the broker uses.

It owns a NOTIFY_SOCKET, keeps the file descriptors a service stores with
FDSTORE=1/FDNAME= (and drops them on FDSTOREREMOVE=1), records READY=1 and
STATUS=, and (re)starts the service handing the stored fds back as systemd
does: at fd 3 onwards, with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID. Nothing
here needs systemd as PID 1. start() returns once READY=1 arrived: the broker
sends it when its socket listens, as a unit of Type=notify is taken as up.
"""

import array
import ctypes
import fcntl
import os
import select
import signal
import socket
import subprocess
import threading
import time

FDS_MAX = 4096  # FileDescriptorStoreMax= of this test service
SYS_KCMP, KCMP_FILE = 312, 0  # x86_64
_libc = ctypes.CDLL(None, use_errno=True)


def same_fd(a, b):
    """Whether two fds are one open file, as systemd's same_fd() decides (kcmp)."""
    pid = os.getpid()
    return _libc.syscall(SYS_KCMP, pid, pid, KCMP_FILE, a, b) == 0


class FakeSystemd:
    def __init__(self, workdir, fds_max=FDS_MAX, indexed=False):
        """@fds_max: FileDescriptorStoreMax=. @indexed: find a stored fd's twin among those of its
        inode (fstat) instead of scanning the whole store: the same decisions as systemd's scan,
        without its cost in this process (for stores of 10,000s); `compares` counts the
        same_fd() calls systemd's scan makes either way."""
        self.path = os.path.join(workdir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.store = []           # [(name, fd)] in the order stored, as systemd keeps them
        self.stores = 0           # FDSTORE=1 datagrams received: each costs PID 1 a scan of the store
        self.stored_names = []    # the FDNAME of each of them, in order
        self.compares = 0         # same_fd() calls of systemd's scan: the store's size for each fd stored
        self.fds_max = fds_max
        self.by_inode = {} if indexed else None  # (st_dev, st_ino) -> [fd] of the store
        self.ready = 0            # READY=1 seen since the last start
        self.watchdog = 0         # WATCHDOG=1 seen since the last start
        self.stopping = 0
        self.status = None
        self.proc = None
        self.log_path = os.path.join(workdir, "service.log")
        self.log_file = open(self.log_path, "ab")
        # Like systemd, read the socket all the time: a full queue blocks the service.
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            self.pump(0.05)

    # --- the notify protocol -------------------------------------------------
    def pump(self, timeout=0.0):
        """Handles every datagram that arrives within @timeout seconds."""
        end = time.monotonic() + timeout
        while True:
            left = max(0.0, end - time.monotonic())
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return
            with self.lock:
                try:
                    data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(253 * 4),
                                                        socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                fds = array.array("i")
                for level, kind, payload in anc:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
                self.handle(data.decode(errors="replace"), list(fds))

    def handle(self, text, fds):
        fields = dict(line.split("=", 1) for line in text.split("\n") if "=" in line)
        if fields.get("FDSTORE") == "1":
            name = fields.get("FDNAME", "stored")
            self.stores += 1
            self.stored_names.append(name)
            for fd in fds:
                # systemd keeps one copy of an open file, whatever its name.
                self.compares += len(self.store)
                if self.by_inode is None:
                    dup = any(same_fd(fd, f) for _, f in self.store)
                else:
                    st = os.fstat(fd)
                    twins = self.by_inode.setdefault((st.st_dev, st.st_ino), [])
                    dup = any(same_fd(fd, f) for f in twins)
                if dup or len(self.store) >= self.fds_max:
                    os.close(fd)
                else:
                    self.store.append((name, fd))
                    if self.by_inode is not None:
                        twins.append(fd)
            fds = []
        if fields.get("FDSTOREREMOVE") == "1":
            name = fields.get("FDNAME")
            for n, fd in [e for e in self.store if e[0] == name]:
                if self.by_inode is not None:
                    st = os.fstat(fd)
                    self.by_inode[(st.st_dev, st.st_ino)].remove(fd)
                os.close(fd)
            self.store = [e for e in self.store if e[0] != name]
        if fields.get("READY") == "1":
            self.ready += 1
        if fields.get("WATCHDOG") == "1":
            self.watchdog += 1
        if fields.get("STOPPING") == "1":
            self.stopping += 1
        if "STATUS" in fields:
            self.status = fields["STATUS"]
        for fd in fds:  # fds without FDSTORE=1 are not kept, as systemd
            os.close(fd)

    def names(self):
        with self.lock:
            return sorted({n for n, _ in self.store})

    def wait_stored(self, prefix, count, timeout=10.0):
        """Waits until exactly @count stored fds have names starting with @prefix.

        A client that just closed its connection (a shmemctl inspect, say) is
        still in the store until the service has seen the hangup; a kill
        before that hands the closed socket to the next start."""
        end = time.monotonic() + timeout
        while True:
            with self.lock:
                # What the service sent before now is counted: an FDSTORE=1
                # still queued on the socket (the reader thread had not come
                # to it) made a count of @count pass with one fd more to come.
                self.pump()
                names = [n for n, _ in self.store if n.startswith(prefix)]
            if len(names) == count:
                return
            if time.monotonic() > end:
                raise TimeoutError(f"stored {prefix}*: {names}, not {count}")
            time.sleep(0.02)

    def fd(self, name):
        with self.lock:
            return next(fd for n, fd in self.store if n == name)

    # --- the service -----------------------------------------------------------
    def start(self, argv, env=None):
        """Starts the service with the stored fds; waits for READY=1."""
        environment = dict(os.environ if env is None else env)
        environment["NOTIFY_SOCKET"] = self.path
        self.ready = self.watchdog = self.stopping = 0
        # Under the lock: the reader thread may still be handling what the
        # previous process sent, and must not close a stored fd between the
        # snapshot and the fork.
        with self.lock:
            fds = [fd for _, fd in self.store]
            if fds:
                environment["LISTEN_FDS"] = str(len(fds))
                environment["LISTEN_FDNAMES"] = ":".join(n for n, _ in self.store)

            def place_fds():
                # Stored fds to 3.. in order, through high numbers so none is overwritten.
                high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 3 + len(fds) + 64) for fd in fds]
                for i, fd in enumerate(high):
                    os.dup2(fd, 3 + i, inheritable=True)
                    os.close(fd)
                # As close_fds would, but after the placing: nothing else reaches the service.
                os.closerange(3 + len(fds), os.sysconf("SC_OPEN_MAX"))

            # LISTEN_PID names the process the fds are for: sh's pid, which exec keeps.
            cmd = ["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"' if fds else 'exec "$0" "$@"'] + argv
            # Not pass_fds=range(3, 3 + n): the child marks those inheritable
            # before place_fds runs, and fails with EBADF where one of them is
            # not open in this process. place_fds places and closes itself.
            self.proc = subprocess.Popen(cmd, env=environment, preexec_fn=place_fds if fds else None,
                                         close_fds=not fds, stdout=self.log_file, stderr=subprocess.STDOUT)
        self.wait_ready()

    def wait_ready(self, timeout=10.0):
        end = time.monotonic() + timeout
        while not self.ready:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode}:\n" + self.log())
            if time.monotonic() > end:
                raise TimeoutError("no READY=1:\n" + self.log())
            time.sleep(0.02)

    def kill(self, sig=signal.SIGKILL):
        self.proc.send_signal(sig)
        self.proc.wait(10)
        # Everything it sent before it died is queued on the socket now:
        # handle it all here, then wait out a datagram the reader thread holds.
        self.pump()
        with self.lock:
            pass
        return self.proc.returncode

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stop.set()
        self.thread.join()
        for _, fd in self.store:
            os.close(fd)
        self.store = []
        self.by_inode = None if self.by_inode is None else {}
        self.sock.close()
        self.log_file.close()
