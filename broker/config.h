/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The configuration file: /etc/shmem-broker/broker.conf and then
 * /etc/shmem-broker/conf.d/ *.conf in name order, INI, parsed by libinih.
 * Later files override single settings and add regions. broker.conf(5) (man/)
 * documents every key.
 *
 *   [broker]          run-directory, qemu-socket-group, qemu-socket-mode,
 *                     libvirt-run-directory
 *   [limits]          regions, total-bytes, region-bytes, peers, connections, queued-bytes,
 *                     regions-per-uid
 *   [region NAME]     size, max-peers, persistent, signal-mode, vectors, owner, group, mode
 *   [client NAME]     allow, deny (globs of region names; NAME a glob of VM or client names)
 */

#include <stdbool.h>

#include "broker.h"

#define CONFIG_REGIONS_MAX 1024

typedef struct Config {
        char *rundir; /* NULL: not set */
        Limits limits;
        QemuPluginConfig qemu;
        RegionDecl *regions; /* names owned */
        size_t n_regions;
        AccessRule *rules;   /* strings owned */
        size_t n_rules;
        char error[512]; /* "FILE:LINE: reason" after a failed load */
} Config;

/* Defaults everywhere; nothing loaded. */
void config_init(Config *c);
void config_done(Config *c);

/*
 * config_load() - read @path, then every *.conf in @dropin_dir (may be NULL or
 * missing). A missing @path is fine if @must_exist is false.
 * Returns 0, or -EINVAL (and others) with c->error saying file, line and why;
 * on failure @c may be half-updated: load into a scratch Config and swap.
 */
int config_load(Config *c, const char *path, const char *dropin_dir, bool must_exist);

/* Shared by the command line: "1M", "64K", "4096". */
int config_parse_size(const char *s, uint64_t *ret);
int config_parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret);
