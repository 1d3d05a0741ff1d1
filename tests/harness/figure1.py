# SPDX-License-Identifier: LGPL-2.1-or-later
"""figure1: the scripts of QNX's Figure 1, two guests and a host peer on one region.

    from harness import figure1
    a = f"shmem-guest --detached attach demo 128M {figure1.vma(ms)} detach demo"
    b = figure1.find_loop("demo") + f"shmem-guest --detached attach demo 4M {figure1.vmb(ms)} ..."
    host = f"{figure1.host(ms)} ... {figure1.HOST_END}"

Peer indices: vma creates the region (0), vmb attaches next (1), the host
last (2). Each writes its data and reads the others': vma's at 0, vmb's at
50, the host's at 100, and "done" at 300, the host's last word, which vmb
waits for. Signals: vma to vmb and the host, vmb to vma and the host, the
host to vma; each waits until all of its senders signaled (wait-from MASK).
vma's piece ends with `read 100 9`, whose output line (VMA_MARKER) is the
marker for guestlab's run_with_irqs: the MSI-X counts taken then show
vmb's and the host's signals (vectors 1 and 2). Used by tests/e2e/
test_factory.py (QEMU alone) and test_libvirt_factory.py (libvirt).
"""


def vma(ms):
    return (f"info write 0 from-vma wait-active 0x7 {ms} notify 0x6 wait-from 0x6 {ms} "
            f"expect 50 from-vmb {ms} expect 100 from-host {ms} read 100 9")


VMA_MARKER = "read 100 from-host"


def vmb(ms):
    return f"info expect 0 from-vma {ms} wait-from 0x1 {ms} write 50 from-vmb notify 0x5"


def vmb_end(ms):
    return f"expect 300 done {ms}"


def host(ms):
    return (f"info wait-active 0x7 {ms} wait-from 0x3 {ms} expect 0 from-vma {ms} expect 50 from-vmb {ms} "
            f"write 100 from-host notify 0x1")


HOST_END = "write 300 done"


def find_loop(name, tries=240):
    """Shell: finds @name every 0.5 s until it exists (exit 1 after @tries
    refusals); prints "finds refused=N" and the find's answer."""
    return f"""
n=0
until shmem-guest --detached find {name} >/tmp/find 2>&1; do
        n=$((n + 1)); [ $n -lt {tries} ] || {{ cat /tmp/find; exit 1; }}
        sleep 0.5
done
echo "finds refused=$n"; cat /tmp/find
"""
