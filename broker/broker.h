/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Broker: the daemon's objects on one event loop (no globals). */

#include "registry.h"
#include "ivshmem.h"

typedef struct BrokerConfig {
        const char *rundir;
        Limits limits;
        QemuPluginConfig qemu;
        const RegionDecl *regions;
        size_t n_regions;
        const AccessRule *rules;
        size_t n_rules;
        const char *refused; /* set: the files were refused at a restart; rules deny every attach */
} BrokerConfig;

typedef struct Broker Broker;

/*
 * Builds the configuration anew (SIGHUP): fills @ret, whose strings must stay
 * valid until the next call. Returns 0, or a negative errno after logging why.
 */
typedef int (*BrokerReloadFn)(void *userdata, BrokerConfig *ret, const char **ret_error);

int broker_new(Broker **ret, const BrokerConfig *config, BrokerReloadFn reload, void *userdata);
Broker *broker_free(Broker *b);
/* Remembers how to re-execute for an upgrade (SIGUSR2, the Upgrade request). */
void broker_set_argv(Broker *b, char *const *argv);

/* Runs until SIGTERM or SIGINT; SIGHUP reloads the configuration. */
int broker_reload(Broker *b, const char **ret_error);
int broker_run(Broker *b);
