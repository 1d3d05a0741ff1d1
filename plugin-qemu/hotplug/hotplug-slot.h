/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Which PCI Express root port of a q35 VM takes a hot-plugged ivshmem
 * device, and whether a pc VM's pci.0 has room for one: pure functions over
 * QEMU's query-pci reply (json-c objects in, a choice out), for
 * shmem-hotplug and its unit test.
 *
 * A BAR2 is only usable if the guest can place it inside the prefetchable
 * window its root port was given at boot: the guest kernel does not grow
 * a window when a device arrives, so a 256 MiB BAR behind a plain port
 * (2 MiB window) stays unassigned (research/qemu-lab.md, q35 hotplug).
 * QEMU itself accepts the device anyway, so the choice has to be made here.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_object;

/* Bridges counted at most in one reply: PCI has 256 buses per segment. */
#define HOTPLUG_PORTS_MAX 1024

/* A PCI bridge with a qdev id, as query-pci describes it. */
typedef struct HotplugPort {
        const char *id;      /* qdev id, also its secondary bus's name; borrowed from the reply */
        bool occupied;       /* a device is on its secondary bus */
        uint64_t pref_base;  /* prefetchable window [base, limit] as programmed by the */
        uint64_t pref_limit; /* guest's firmware; base > limit: no window (not yet set up) */
} HotplugPort;

/*
 * hotplug_window_fits() - whether a naturally aligned block of @size bytes
 * (a power of two, as every BAR) lies in [@base, @limit]: its address is
 * the first multiple of @size at or above @base, into *@ret_address if
 * non-NULL. A window with base > limit holds nothing.
 */
bool hotplug_window_fits(uint64_t base, uint64_t limit, uint64_t size, uint64_t *ret_address);

/*
 * hotplug_ports_parse() - every PCI bridge with a non-empty qdev id in
 * @buses, query-pci's "return" array, at any depth (a switch's downstream
 * ports are behind its upstream port). *@ret_ports (free() it) borrows the
 * ids from @buses. Returns 0, -ENOMEM, or -EBADMSG if @buses is not shaped
 * like query-pci's reply or lists more than HOTPLUG_PORTS_MAX bridges.
 */
int hotplug_ports_parse(struct json_object *buses, HotplugPort **ret_ports, size_t *ret_n);

/*
 * hotplug_port_choose() - the free port (nothing on its secondary bus)
 * whose prefetchable window holds a BAR of @bar_size bytes, the smallest
 * such window, the first of equal ones; NULL if there is none.
 */
const HotplugPort *hotplug_port_choose(const HotplugPort *ports, size_t n, uint64_t bar_size);

/* Slots of a conventional PCI bus. */
#define HOTPLUG_BUS_SLOTS 32

/*
 * hotplug_bus_free_slots() - how many of the HOTPLUG_BUS_SLOTS slots of the
 * top-level bus numbered @bus in @buses (query-pci's "return" array) have
 * no device at function 0: where QEMU's device_add without addr= looks for
 * room (hw/pci/pci.c, in steps of 8 from devfn 0 on pc's pci.0). When it
 * finds none it refuses the device, but only after the chardev-add of a
 * region, which the region's peers see as a VM that joined and left
 * (README.md), so the helper asks first. Returns the count, or -EBADMSG if
 * @buses is not shaped like query-pci's reply or has no such bus.
 */
int hotplug_bus_free_slots(struct json_object *buses, unsigned bus);
