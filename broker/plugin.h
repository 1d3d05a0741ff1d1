/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The interface between the core (registry, regions, peers, signal matrix)
 * and a front end that attaches peers over some transport: the native
 * protocol (server.c) or a VMM plugin (plugin-qemu/). The core knows no
 * transport; adding another VMM is one new directory implementing this.
 *
 * Two halves:
 *  - PeerOps: what the core tells one attached peer's front end.
 *  - PluginOps: what the core tells a plugin about regions, so it can
 *    offer a per-region endpoint (QEMU: one listening socket per region).
 */

#include <event2/event.h>
#include <stdint.h>

#include "persist.h"

typedef struct Peer Peer;
typedef struct Region Region;
typedef struct Registry Registry;
typedef struct Plugin Plugin;

typedef struct PeerOps {
        /*
         * Another peer @other joined @self's region: hand @self the fds that
         * region_fds_to(other, self) returns (borrowed: dup them to keep
         * them). Must not detach anything; queue and return.
         */
        void (*joined)(Peer *self, Peer *other);
        /* @other left @self's region: forget its fds. Same rules as joined. */
        void (*left)(Peer *self, Peer *other);
        /*
         * The core detached @self on its own (region destroyed by force).
         * The Peer is freed right after this returns: the front end drops its
         * pointer and schedules closing its connection (never synchronously).
         */
        void (*evicted)(Peer *self);
} PeerOps;

typedef struct PluginOps {
        const char *name;
        /* Called once, after the registry exists and before the loop runs. */
        int (*start)(Plugin *p);
        /* Tears down every endpoint; attached peers were evicted before. */
        void (*stop)(Plugin *p);
        /* A region name became known (declared or created by an attach). */
        int (*region_added)(Plugin *p, Region *r);
        /* A region name is going away; its peers are gone already. */
        void (*region_removed)(Plugin *p, Region *r);
        void (*free)(Plugin *p);
        /* Adds its connections to a state being dumped / rebinds them after a restart (persist.h). */
        int (*dump)(Plugin *p, State *s);
        void (*restore)(Plugin *p, const State *s);
} PluginOps;

struct Plugin {
        const PluginOps *ops;
        Registry *registry;
        struct event_base *base;
        Plugin *next;
};
