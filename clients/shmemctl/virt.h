/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * virt: shmemctl's libvirt side. Builds the <shmem> device of a region and
 * attaches it to, or detaches it from, a libvirt domain through the libvirt
 * C API (docs/libvirt.md). The broker itself never talks to libvirt.
 *
 * The functions print their own errors ("shmemctl: ...") and return an exit
 * code of shmemctl(1): 0 done, 1 refused or failed, 3 libvirt unreachable.
 */

#include <stdbool.h>

typedef struct VirtOptions {
        const char *uri;   /* NULL: qemu:///system */
        bool live, config; /* neither: libvirt's "current" state */
        unsigned timeout_s; /* detach: how long to wait for the guest to let go */
} VirtOptions;

/* What shmemctl learned from the broker about a region. */
typedef struct VirtRegion {
        const char *name;
        const char *socket; /* its QEMU socket */
        unsigned vectors;   /* the MSI-X vectors QEMU's device must have */
} VirtRegion;

#define VIRT_DEFAULT_URI "qemu:///system"
#define VIRT_DEFAULT_TIMEOUT_S 30

/* Whether libvirt support was built in (else attach and detach only say so). */
bool virt_available(void);

/*
 * What detach asks the broker before it unplugs a device from a running VM:
 * how many departures of other peers the QEMU of VM @uuid on @region was
 * told of (0 if it is not attached), or a negative errno if the broker cannot
 * say. QEMU (7.2 at least) aborts when a device that was told of one is
 * unplugged (docs/libvirt.md), so then detach refuses unless @force.
 */
typedef struct VirtGuard {
        int (*departures_told)(void *userdata, const char *region, const char *uuid);
        void *userdata;
        bool force;
} VirtGuard;

int virt_attach(const VirtOptions *o, const char *domain, const VirtRegion *r);

/* The persistent definition of @domain (name or UUID) as libvirt keeps it, into *@ret (free it). */
int virt_definition(const VirtOptions *o, const char *domain, char **ret);
int virt_detach(const VirtOptions *o, const char *domain, const char *region, const VirtGuard *guard);
