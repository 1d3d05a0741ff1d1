/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * FdStore: every fd that must outlive this process, by name, as a copy the
 * store owns (so nobody has to remember to take an fd out before closing
 * it), mirrored into the service manager's fd store (FDSTORE=1, FDNAME=;
 * FDSTOREREMOVE=1) when there is one, and handed over whole when the broker
 * re-executes itself (an upgrade). docs/persistence.md.
 *
 * At start it adopts the fds handed in ($LISTEN_FDS, $LISTEN_FDNAMES, or an
 * upgrade's list: fdstore_exec()): those
 * are in the manager's store already and are not sent again; whoever rebuilds
 * an object takes a copy by name; fdstore_release_unclaimed() closes and
 * removes what nobody took.
 *
 * fdstore_key() is the one place where an FdKey becomes a name.
 */

#include <stdbool.h>
#include <stddef.h>

#include "keeper.h"
#include "notify.h"

#define FDSTORE_NAME_MAX 255 /* systemd's limit */
#define FDSTORE_STATE_PREFIX "st/"

typedef struct FdStore FdStore;

/* Whether this process was started with fds handed over ($LISTEN_FDS): a restart or an upgrade. */
bool fdstore_inherited(void);

/* Adopts what was handed over; @notify (borrowed) reaches the manager's store. */
int fdstore_new(FdStore **ret, Notify *notify);
/* Closes the store's copies; what the manager holds stays for the next start. */
FdStore *fdstore_free(FdStore *s);

/* The name of @key in the store, into @buf of FDSTORE_NAME_MAX + 1 bytes. */
const char *fdstore_key(char buf[FDSTORE_NAME_MAX + 1], const FdKey *key);

/* Keeps a copy of @fd (borrowed) under @name, replacing what was there; failures are logged. */
void fdstore_put(FdStore *s, const char *name, int fd);
/* Closes the copy under @name and removes it from the manager's store. */
void fdstore_remove(FdStore *s, const char *name);

/* A copy (the caller owns it) of the fd adopted under @name, which the store keeps; -1 if none. */
int fdstore_take(FdStore *s, const char *name);

/* Calls @fn for every adopted fd whose name starts with @prefix (borrowed fd). */
void fdstore_foreach_adopted(FdStore *s, const char *prefix, void (*fn)(void *userdata, const char *name, int fd),
                             void *userdata);

/* Closes the adopted fds nobody took, and removes them from the manager's store. */
void fdstore_release_unclaimed(FdStore *s);

/* How many fds the store holds now. */
size_t fdstore_size(FdStore *s);

/*
 * fdstore_exec() - re-execute @exe with @argv, handing it every fd of the
 * store (and nothing else) where it is, close-on-exec cleared, with a memfd
 * that lists their numbers and names ($SHMEM_HANDOVER_FD, for the pid in
 * $SHMEM_HANDOVER_PID); the new image's fdstore_new() adopts them as it does
 * $LISTEN_FDS. Takes one fd more than the store holds. Returns only if the
 * exec failed (-errno), with every fd as it was: the caller goes on.
 */
int fdstore_exec(FdStore *s, const char *exe, char *const *argv);
