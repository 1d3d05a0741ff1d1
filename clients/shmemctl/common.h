/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * common: what shmemctl's command modules share, and nothing else: the exit
 * codes, the parsed options, the broker connection's calls and the messages
 * of their failures. shmemctl.c (options, dispatch) uses the command modules,
 * regions.h (list, inspect, create, destroy), region-virt.h (the broker's
 * side of xml, attach and detach), factory.h and ops.h (watch, signal, dump,
 * reload, upgrade); they use this and table.h (their tables) and no other;
 * virt.h is the libvirt side.
 *
 * Every cmd_*() and helper returns the exit code, having printed why when it
 * is not EXIT_OK.
 */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "table.h"
#include "virt.h"

enum {
        EXIT_OK = 0,
        EXIT_REFUSED = 1,
        EXIT_USAGE = 2,
        EXIT_UNREACHABLE = 3,
};

typedef struct Args {
        const char *socket; /* --socket; NULL: client_socket_path()'s default */
        bool json;          /* -J: a table's (table.json too), or the command's JSON object */
        TableOptions table; /* -o, -O, -n, -r, -b: list, inspect's peers, factory's devices */
        unsigned max_peers; /* 0: the broker's default */
        bool max_peers_set, persistent, force;
        uint64_t offset, length; /* dump */
        bool length_set, raw;
        bool timestamps; /* watch: each event line after the time it was read */
        VirtOptions virt; /* attach, detach, xml --factory DOMAIN */
        bool virt_set, timeout_set;
        /* xml --factory: the machine (default q35), how many regions, how large */
        bool factory, machine_pc, machine_set, factory_opts_set;
        unsigned regions;
        uint64_t max_region;
} Args;

/* "shmemctl: <message>" and the hint to --help (or to `help CMD`); always EXIT_USAGE. */
__attribute__((format(printf, 1, 2))) int usage_error(const char *fmt, ...);

/* From now on usage_error() points to `shmemctl help @cmd`, a known command's help. */
void usage_error_command(const char *cmd);

/* Reports a -errno of the connection; always EXIT_UNREACHABLE. */
int report_unreachable(const char *path, int error, bool connecting);

/*
 * `shmemctl: <what>: <status text>: <detail>`; for DOES_NOT_EXIST and EXISTS
 * `shmemctl: region '<what>' does not exist: <detail>` or `... exists: ...`
 * (@what the region's name); always EXIT_REFUSED.
 */
int report_refused(const char *what, int status, const char *detail);

/* Sends @req; EXIT_OK with the OK reply in *ret. */
int call(Client *c, const char *path, const char *what, Message *req, ClientMsg **ret);

/*
 * The replies of a listing the broker answers in pages (docs/protocol.md,
 * "Listing in pages"), kept while the items gathered from them are used.
 */
typedef struct Pages {
        ClientMsg **replies;
        size_t n_replies;
} Pages;

/* Keeps @reply (owned: freed if it cannot be kept); 0 or -ENOMEM. */
int pages_keep(Pages *p, ClientMsg *reply);
void pages_done(Pages *p);

/* Appends the @n items at @src to the array *@a of *@len items, a NULL kept after them; 0 or -ENOMEM. */
#define ARRAY_APPEND(a, len, src, n)                                                          \
        ({                                                                                    \
                size_t _n = (n);                                                              \
                typeof(*(a)) _new = realloc(*(a), (*(len) + _n + 1) * sizeof(**(a)));         \
                if (_new) {                                                                   \
                        if (_n > 0) /* @src may be NULL then */                               \
                                memcpy(_new + *(len), (src), _n * sizeof(*_new));             \
                        *(len) += _n;                                                         \
                        _new[*(len)] = NULL;                                                  \
                        *(a) = _new;                                                          \
                }                                                                             \
                _new ? 0 : -ENOMEM;                                                           \
        })

/* Inspect @name: EXIT_OK with the reply in *ret_reply (free it) and its region in *ret_info. */
int inspect_region(Client *c, const char *path, const char *name, ClientMsg **ret_reply,
                   const Shmem__RegionInfo **ret_info);
