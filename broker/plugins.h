/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What the daemon knows of a VMM plugin: how to build it with its options,
 * store its connections across a restart and free it. main.c's table lists
 * the plugins the broker runs; the core sees only core/plugin.h.
 */

#include <event2/event.h>

#include "frontend.h"
#include "options.h"
#include "plugin.h"
#include "registry.h"
#include "state-build.h"

typedef struct PluginContext {
        struct event_base *base;
        Registry *registry;
        Frontends *table; /* its connections go here (limits, fd store) */
        const char *rundir;
} PluginContext;

typedef struct PluginModule {
        const char *name;
        /* Its settings: an Option table over a struct of settings_size bytes. */
        const Option *options;
        size_t n_options;
        size_t settings_size;
        void (*settings_init)(void *settings);
        /* Builds the plugin and adds it to ctx->registry (its endpoints come back from the store). */
        int (*new)(Plugin **ret, const PluginContext *ctx, const void *settings);
        /* Removes it from the registry; its connections close (their peers detach). */
        Plugin *(*free)(Plugin *p);
        /* Rebinds its connections from a restored state (they are stored by their FrontConnOps.dump). */
        void (*restore)(Plugin *p, const State *s);
} PluginModule;
