/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Server: the native front end. A SOCK_SEQPACKET socket (<rundir>/broker.sock)
 * speaking shmem.proto, for host peers (libshmem) and for shmemctl.
 * docs/protocol.md describes the protocol.
 */

#include "registry.h"

typedef struct Server Server;

/* What admin requests ask of the daemon around the server. */
typedef struct ServerHooks {
        /* Reload: re-read the configuration; 0 or -errno with a reason. */
        int (*reload)(void *userdata, const char **ret_error);
        /* Upgrade: re-execute soon (after the reply went out); 0 or -errno. */
        int (*upgrade)(void *userdata);
        void *userdata;
} ServerHooks;

/* Consumes @listen_fd (a bound, listening SOCK_SEQPACKET socket) on failure too. */
int server_new(Server **ret, Registry *reg, int listen_fd, const ServerHooks *hooks);
Server *server_free(Server *s);

unsigned server_n_clients(Server *s);

/* Adds the clients to a state being dumped; rebinds them from a restored one (persist.h). */
int server_dump(Server *s, State *st);
void server_restore(Server *s, const State *st);

/* Creates, binds and listens on @path (removing a stale socket, refusing a live one). */
int server_listen(const char *path, int *ret_fd);
