/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Persist: keeps everything a restarted broker needs where it will find it,
 * in systemd's file descriptor store (sd_notify FDSTORE=1 / FDNAME=), so that
 * a crash or restart loses no region, no peer and no QEMU connection: QEMU
 * never reconnects (DESIGN.md §8, docs/persistence.md).
 *
 * Every fd the broker owns goes to the store under a name as it is created
 * and leaves it as it is closed; the registry's state is serialized
 * (state.proto) into a fresh memfd after every change and stored as
 * "st/GENERATION" before the previous one is removed, so a crash at any point
 * leaves at least one complete state. On start, the fds systemd hands back
 * (LISTEN_FDS, LISTEN_FDNAMES) are taken by name by whoever rebuilds them.
 *
 * All functions accept a NULL Persist and then do nothing: the core calls
 * them unconditionally, and runs without a store when there is no
 * $NOTIFY_SOCKET.
 */

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "state.pb-c.h"

typedef struct Persist Persist;
typedef Shmem__State__State State;

/*
 * Fills @ret with the state to store, with the persist_state_add_*() helpers
 * (strings borrowed from live objects); returns 0 or -errno.
 */
typedef int (*PersistDumpFn)(void *userdata, State *ret);

/* Reads $NOTIFY_SOCKET and, if meant for this process, $LISTEN_FDS and $LISTEN_FDNAMES. */
/* Whether this process was started with fds handed over ($LISTEN_FDS): a restart or an upgrade. */
bool persist_inherited(void);

int persist_new(Persist **ret, struct event_base *base);
Persist *persist_free(Persist *p);

/* True if fds go to a store (a $NOTIFY_SOCKET exists). */
bool persist_enabled(Persist *p);

void persist_set_dump(Persist *p, PersistDumpFn dump, void *userdata);

/* Stores @fd (borrowed) under the printf-style name; failures are logged once. */
void persist_store(Persist *p, int fd, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Removes every fd stored under the name. */
void persist_remove(Persist *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The state changed: it is written before the loop next sleeps. */
void persist_dirty(Persist *p);
/* Writes the state now if it is dirty (also at shutdown). */
void persist_flush(Persist *p);

/* A clean stop: the stored state goes too (the broker has emptied the store). */
void persist_forget_state(Persist *p);

/*
 * persist_upgrade() - re-execute @exe with @argv, handing it every live fd and
 * a fresh state through LISTEN_FDS (same pid), as a systemd restart would.
 * Returns only if it cannot start (-errno, nothing changed); once the fds are
 * being handed over, a failing exec ends the process.
 */
int persist_upgrade(Persist *p, const char *exe, char *const *argv);

/* Sends an sd_notify message such as "READY=1"; 0 or -errno. */
int persist_notify(Persist *p, const char *text);

/* Building a State in a PersistDumpFn: NULL on out of memory. Free with persist_state_dump_free(). */
Shmem__State__Region *persist_state_add_region(State *s);
Shmem__State__Peer *persist_state_add_peer(Shmem__State__Region *r);
Shmem__State__Conn *persist_state_add_conn(State *s);
void persist_state_dump_free(State *s);

/* Hands over the fd adopted under the name (caller owns it), or -1. */
int persist_take(Persist *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The newest complete state handed over at start, or NULL; free with persist_state_free(). */
State *persist_take_state(Persist *p);
void persist_state_free(State *s);
static inline void persist_state_freep(State **s) { persist_state_free(*s); }
/* Closes the adopted fds nobody took, and removes them from the store. */
void persist_release_unclaimed(Persist *p);
