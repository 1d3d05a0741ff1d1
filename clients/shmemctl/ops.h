/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* ops: shmemctl's operations commands (ops.c). Exit codes and Args: common.h. */

#include <stdbool.h>
#include <stdint.h>

#include "common.h"

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
