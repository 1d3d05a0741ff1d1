/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Server: the native front end. A SOCK_SEQPACKET socket (<rundir>/broker.sock)
 * speaking shmem.proto, for host peers (libshmem) and for shmemctl.
 * docs/protocol.md describes the protocol.
 */

#include "registry.h"

typedef struct Server Server;

/* Re-reads the configuration for a Reload request; 0 or -errno with a reason. */
typedef int (*ServerReloadFn)(void *userdata, const char **ret_error);

/* Consumes @listen_fd (a bound, listening SOCK_SEQPACKET socket) on failure too. */
int server_new(Server **ret, Registry *reg, int listen_fd, ServerReloadFn reload, void *userdata);
Server *server_free(Server *s);

unsigned server_n_clients(Server *s);

/* Adds the clients to a state being dumped; rebinds them from a restored one (persist.h). */
int server_dump(Server *s, State *st);
void server_restore(Server *s, const State *st);

/* Creates, binds and listens on @path (removing a stale socket, refusing a live one). */
int server_listen(const char *path, int *ret_fd);
