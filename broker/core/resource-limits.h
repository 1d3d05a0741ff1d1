/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Limits: every resource a peer can make the broker spend has one, in total
 * and per user (per VM for QEMU peers), so that one unprivileged user cannot
 * deny service to the others (docs/security.md). broker.conf(5) documents
 * each; options.c has the one table that reads them from the file and the
 * command line. "Administrators" are root and the broker's own user: they
 * are not held to the per-user limits and may use the connections reserved
 * for them.
 */

#include <stddef.h>
#include <stdint.h>

#include "region-layout.h"

typedef struct Limits {
        /* The core (registry). */
        unsigned max_regions;
        unsigned max_regions_per_uid; /* regions one user's host attaches created */
        uint64_t max_total_bytes;     /* sum of allocated region sizes */
        uint64_t max_bytes_per_uid;   /* sum of the sizes of the regions one user created */
        uint64_t max_region_bytes;    /* one region's memfd size */
        unsigned default_max_peers;
        unsigned max_peers_per_uid;   /* indices of one region one user (host) or one VM (QEMU) holds */
        /* fds the regions and their peers may hold: endpoints, memfds, peers' rows
         * (0: no limit). Not an option: the daemon derives it from its fd limit. */
        unsigned max_fds;
        /* The front ends (frontend/frontend.h). */
        unsigned max_connections;         /* of all front ends together */
        unsigned max_connections_per_uid; /* native connections of one user */
        unsigned max_connections_per_vm;  /* QEMU connections of one VM (its UUID, else its pid) */
        unsigned admin_reserve;           /* of max_connections, for administrators only */
        unsigned hello_timeout_ms;        /* a native connection says Hello within this, or goes */
        size_t max_queued_bytes;          /* output queued for one connection */
        size_t max_total_queued_bytes;    /* ... for all connections together */
        unsigned max_total_queued_fds;    /* fds queued for all connections together */
} Limits;

#define LIMITS_DEFAULT                                                                             \
        ((Limits) {                                                                                \
                .max_regions = 256,                                                                \
                .max_regions_per_uid = 64,                                                         \
                .max_total_bytes = UINT64_C(16) << 30,                                             \
                .max_bytes_per_uid = UINT64_C(4) << 30,                                            \
                .max_region_bytes = UINT64_C(1) << 30,                                             \
                .default_max_peers = SHMEM_PEERS_DEFAULT,                                          \
                .max_peers_per_uid = 8,                                                            \
                .max_connections = 1024,                                                           \
                .max_connections_per_uid = 128,                                                    \
                .max_connections_per_vm = 64,                                                      \
                .admin_reserve = 16,                                                               \
                .hello_timeout_ms = 5000,                                                          \
                .max_queued_bytes = 256 * 1024,                                                    \
                .max_total_queued_bytes = 64 << 20,                                                \
                .max_total_queued_fds = 4096,                                                      \
        })
