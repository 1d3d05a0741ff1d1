/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Server: the native front end's socket server. A SOCK_SEQPACKET socket
 * (<rundir>/broker.sock) whose connections carry one shmem.Message per
 * datagram to the dispatcher (native/dispatch.h) and its replies and events
 * back, for host peers (libshmem) and for shmemctl. docs/protocol.md
 * describes the protocol.
 */

#include "dispatch.h"
#include "frontend.h"
#include "state.pb-c.h"

typedef struct Server Server;

/*
 * server_new() - serve @path: the control socket handed over at a restart
 * (through the table's Keeper), else a new one (-EADDRINUSE if a live broker
 * serves it).
 */
int server_new(Server **ret, Registry *reg, Frontends *table, const char *path, const NativeHooks *hooks);
/* Closes every connection (their peers detach) and the socket, and removes its path. */
Server *server_free(Server *s);

unsigned server_n_clients(Server *s);

/* Rebinds the connections of a restored state (service/state.h); they are stored by FrontConnOps.dump. */
void server_restore(Server *s, const Shmem__State__State *st);
