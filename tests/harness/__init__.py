# SPDX-License-Identifier: LGPL-2.1-or-later
"""harness: how the tests start what they test, and know it is ready.

    sys.path.insert(0, TESTS_DIR)       # tests/; every test script does it
    import harness

    harness.Broker(argv, rundir, log)   # broker.py: ready = a Hello answered
    harness.shmemctl_json(ctl, sock, "inspect", "r")   # broker.py: shmemctl --json, parsed
    harness.FakeSystemd(workdir)        # fakesystemd.py: ready = READY=1 arrived
    harness.HostPeer(...)               # hostpeer.py: a scripted shmem-peer
    harness.guestlab.Guest(...)         # guestlab.py: a QEMU TCG guest
    harness.libvirt.Domain(...)         # libvirt.py: a libvirt domain; libvirtd, virtlogd
    harness.proto.hello(sock)           # proto.py: the native Hello by hand
    harness.figure1.vma(ms)             # figure1.py: the scripts of QNX's Figure 1
    harness.completion.complete(...)    # completion.py: COMPREPLY of a bash completion
    harness.example.greet(...)          # example.py: the example client built and run as a user does

Nothing here takes a socket file for a server that listens.
"""

from . import completion, example, figure1, guestlab, libvirt, proto  # noqa: F401
from .broker import Broker, shmemctl_json  # noqa: F401
from .fakesystemd import FakeSystemd  # noqa: F401
from .hostpeer import HostPeer  # noqa: F401
