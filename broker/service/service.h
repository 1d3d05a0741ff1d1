/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Service: the broker as a service of its manager (systemd, or the tests'
 * fake one): readiness and status (sd_notify), the watchdog, and everything
 * that lets a crash, a restart or an upgrade lose nothing: the fd store, the
 * stored state kept up to date as anything in it changes, and re-execution in
 * place. It subscribes to the registry's events for the memory and eventfds
 * of regions and peers, and is the Keeper of the front ends' fds. What
 * changed (a region, a connection) is appended to the stored image's log at
 * the end of the loop's turn; a log past its bound is replaced by a snapshot
 * (state-image.h). Outside the core: the core does not know it exists.
 */

#include <event2/event.h>
#include <stdbool.h>

#include "keeper.h"
#include "registry.h"
#include "state.h"

typedef struct Service Service;

/*
 * The front ends' connections in a stored state (frontends_dump() and
 * frontends_dump_conn(), which the service layer does not see): @all adds
 * every one to a snapshot, @one the one of @id to a change, or nothing if it
 * is gone. Each returns 0 or -ENOMEM.
 */
typedef struct ServiceConnDumper {
        int (*all)(void *userdata, State *s);
        int (*one)(void *userdata, uint64_t id, State *s);
        void *userdata;
} ServiceConnDumper;

/*
 * service_new() - reach the manager ($NOTIFY_SOCKET), adopt what it handed
 * over ($LISTEN_FDS), and observe @reg. Without a manager the fd store still
 * keeps copies, for an upgrade; no state is written until one is needed.
 */
int service_new(Service **ret, struct event_base *base, Registry *reg);
/* A clean stop (@clean): the store is emptied and STOPPING=1 said. Else everything stays stored. */
Service *service_free(Service *s, bool clean);

Keeper *service_keeper(Service *s);
bool service_managed(Service *s); /* a service manager listens */
/* The fds kept for a restart (copies the broker owns; the manager's store holds the same if managed). */
size_t service_stored_fds(Service *s);

/* The newest complete state handed over at start, or NULL (free with state_free()). */
State *service_take_state(Service *s);

void service_set_conn_dumper(Service *s, const ServiceConnDumper *d);

/*
 * service_started() - everything was rebuilt: the new state goes to the
 * store before the fds nobody took leave it; then READY=1 with @status, and
 * the watchdog runs if the manager asked for one.
 */
int service_started(Service *s, const char *status);

/* STATUS= if it changed (and a watchdog ping comes with it at its interval). */
void service_status(Service *s, const char *status);
/* Sets the function that says the status at each watchdog ping. */
void service_set_status_fn(Service *s, void (*fn)(void *userdata), void *userdata);

/* Stores what changed now, if anything did (before an exec, at a stop). */
void service_flush(Service *s);

/*
 * service_exec() - re-execute @exe with @argv, handing over every stored fd
 * and a fresh state, as systemd would restart it (same pid, no restart
 * counted). Returns only if it cannot start (-errno, nothing changed).
 */
int service_exec(Service *s, const char *exe, char *const *argv);
