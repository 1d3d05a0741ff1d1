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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "identity.h"

typedef struct Plugin Plugin;
typedef struct Region Region;

/* A VM connected to a plugin's run-time factory (docs/factory.md), as `shmemctl factory` shows it. */
typedef struct PluginFactoryVm {
        const PeerIdentity *id; /* what the broker learned of its VMM process */
        const char *monitor;    /* the socket the broker plugs devices through; "" none */
        uint64_t conn;          /* its connection's id (fd store "c/ID") */
        unsigned served, refused;
        /* The request in flight; op 0: none. */
        uint32_t op;            /* SHMEM_FACTORY_OP_* */
        uint64_t seq;
        const char *region;
        uint64_t since_ms;      /* how long it has been served */
        bool restarted;         /* taken over from an image before a restart or an upgrade */
} PluginFactoryVm;

typedef void (*PluginFactoryFn)(void *userdata, const PluginFactoryVm *vm);

typedef struct PluginOps {
        const char *name; /* "qemu": names the endpoint in inspect and its fd in the store */
        /* A region name became known (declared, or created by an attach): offer its endpoint.
         * A negative errno refuses the region (the registry forgets it). */
        int (*region_added)(Plugin *p, Region *r);
        /* A region name is going away; its peers are gone already. */
        void (*region_removed)(Plugin *p, Region *r);
        /* Where a VMM finds @r's endpoint (QEMU: the socket's path), into @buf; 0 or -ENOENT. */
        int (*endpoint)(Plugin *p, const Region *r, char *buf, size_t size);
        /* Optional: @fn for each VM connected to its factory (a VM's devices are its peers). */
        void (*factory_vms)(Plugin *p, PluginFactoryFn fn, void *userdata);
} PluginOps;

struct Plugin {
        const PluginOps *ops;
};
