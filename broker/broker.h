/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Broker: the daemon's objects on one event loop (no globals), wired from
 * the layers (docs/architecture.md): the core (registry), the service layer
 * (fd store, state, notify), the front ends' connection table, the native
 * server and the VMM plugins of main.c's table. Signals: SIGTERM/SIGINT stop,
 * SIGHUP reloads, SIGUSR2 re-executes in place.
 */

#include "plugins.h"
#include "registry.h"

typedef struct BrokerPlugin {
        const PluginModule *module;
        const void *settings;
} BrokerPlugin;

typedef struct BrokerConfig {
        const char *rundir;
        Limits limits;
        const BrokerPlugin *plugins;
        size_t n_plugins;
        const RegionDecl *regions;
        size_t n_regions;
        const AccessRule *rules;
        size_t n_rules;
        const char *const *config_files; /* the files read, in order (for Status) */
        size_t n_config_files;
        const char *refused; /* set: the files were refused at a restart; the registry refuses every attach */
} BrokerConfig;

typedef struct Broker Broker;

/*
 * Builds the configuration anew (SIGHUP, Reload): fills @ret, whose strings
 * must stay valid until the next call. Returns 0, or a negative errno with a
 * reason in *ret_error.
 */
typedef int (*BrokerReloadFn)(void *userdata, BrokerConfig *ret, const char **ret_error);

/*
 * broker_new() - build the broker; a broker started with the fds of one
 * before it (a restart, an upgrade) adopts them. On failure everything it
 * was handed stays in the service manager's store.
 */
int broker_new(Broker **ret, const BrokerConfig *config, BrokerReloadFn reload, void *userdata);
Broker *broker_free(Broker *b);
/* Remembers how to re-execute for an upgrade (SIGUSR2, the Upgrade request). */
void broker_set_argv(Broker *b, char *const *argv);

int broker_reload(Broker *b, const char **ret_error);

/*
 * broker_check_config() - what broker_new() would make of @config's regions
 * and rules, in a registry of its own: nothing listens, nothing is stored,
 * persistent regions' memory is allocated (sparse) and freed again. Each
 * refusal is logged. Returns the number of refusals, or a negative errno.
 */
int broker_check_config(const BrokerConfig *config);
/* Runs until SIGTERM or SIGINT. */
int broker_run(Broker *b);
