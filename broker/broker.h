/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Broker: the daemon's objects on one event loop (no globals). */

#include "registry.h"
#include "ivshmem.h"

typedef struct RegionDecl {
        const char *name;
        uint64_t size;
        unsigned max_peers;
        bool persistent;
} RegionDecl;

typedef struct BrokerConfig {
        const char *rundir;
        Limits limits;
        QemuPluginConfig qemu;
        const RegionDecl *regions;
        size_t n_regions;
} BrokerConfig;

typedef struct Broker Broker;

int broker_new(Broker **ret, const BrokerConfig *config);
Broker *broker_free(Broker *b);
/* Runs until SIGTERM or SIGINT. */
int broker_run(Broker *b);
