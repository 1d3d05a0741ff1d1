/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Plugin: what the core asks of a VMM plugin, one that offers every region
 * an endpoint of its own (QEMU: a listening socket per region, so that stock
 * `-device ivshmem-doorbell` and libvirt <shmem> attach unmodified). The core
 * knows no transport: a plugin implements these, and attaches the peers it
 * accepts with registry_attach() and the PeerOps of region.h. How a plugin
 * is built, configured, stored across restarts and freed is the daemon's
 * business (broker/plugins.h); adding another VMM is one new directory
 * (docs/architecture.md).
 */

#include <stddef.h>

typedef struct Plugin Plugin;
typedef struct Region Region;

typedef struct PluginOps {
        const char *name; /* "qemu": names the endpoint in inspect and its fd in the store */
        /* A region name became known (declared, or created by an attach): offer its endpoint.
         * A negative errno refuses the region (the registry forgets it). */
        int (*region_added)(Plugin *p, Region *r);
        /* A region name is going away; its peers are gone already. */
        void (*region_removed)(Plugin *p, Region *r);
        /* Where a VMM finds @r's endpoint (QEMU: the socket's path), into @buf; 0 or -ENOENT. */
        int (*endpoint)(Plugin *p, const Region *r, char *buf, size_t size);
} PluginOps;

struct Plugin {
        const PluginOps *ops;
};
