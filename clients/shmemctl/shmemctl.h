/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What shmemctl's command files share: shmemctl.c (options, list, inspect,
 * create, destroy, and the broker's side of xml and attach), ops.c (watch,
 * signal, dump, reload, upgrade); virt.h is the libvirt side.
 *
 * Every cmd_*() and helper here returns the exit code, having printed why
 * when it is not EXIT_OK.
 */

#include <stdbool.h>
#include <stdint.h>

#include "client.h"
#include "virt.h"

enum {
        EXIT_OK = 0,
        EXIT_REFUSED = 1,
        EXIT_USAGE = 2,
        EXIT_UNREACHABLE = 3,
};

typedef struct Args {
        const char *socket; /* --socket; NULL: client_socket_path()'s default */
        bool json;
        unsigned max_peers; /* 0: the broker's default */
        bool max_peers_set, persistent, force;
        uint64_t offset, length; /* dump */
        bool length_set, raw;
        VirtOptions virt; /* attach, detach */
        bool virt_set, timeout_set;
} Args;

/* "shmemctl: <message>" and the hint to --help; always EXIT_USAGE. */
__attribute__((format(printf, 1, 2))) int usage_error(const char *fmt, ...);

/* Reports a -errno of the connection; always EXIT_UNREACHABLE. */
int report_unreachable(const char *path, int error, bool connecting);

/* `shmemctl: <what>: <status text>: <detail>`; always EXIT_REFUSED. */
int report_refused(const char *what, int status, const char *detail);

/* Sends @req; EXIT_OK with the OK reply in *ret. */
int call(Client *c, const char *path, const char *what, Message *req, ClientMsg **ret);

/* Inspect @name: EXIT_OK with the reply in *ret_reply (free it) and its region in *ret_info. */
int inspect_region(Client *c, const char *path, const char *name, ClientMsg **ret_reply,
                   const Shmem__RegionInfo **ret_info);

/* ops.c */

/* Prints the broker's events (events.h), of region @name only if not NULL, until SIGINT or SIGTERM. */
int cmd_watch(Client *c, const char *path, const Args *a, const char *name);

/*
 * Attaches to @name (FIND) as peer "shmemctl", signals the peers in @mask
 * (every other attached one if @all), detaches. Refuses a mask with a peer
 * that is not attached.
 */
int cmd_signal(Client *c, const char *path, const Args *a, const char *name, uint64_t mask, bool all);

/*
 * Attaches to @name as peer "shmemctl" and prints its data from a->offset
 * as hexdump -C does (a->raw: the bytes themselves).
 */
int cmd_dump(Client *c, const char *path, const Args *a, const char *name);

/* Asks the broker to re-read its configuration; prints the file:line reason if it refuses. */
int cmd_reload(Client *c, const char *path, const Args *a);

/* Asks the broker to re-execute in place and waits until the new image answers; prints its version. */
int cmd_upgrade(Client *c, const char *path, const Args *a);
