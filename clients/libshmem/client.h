/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * client: one connection to shmem-brokerd's native socket (docs/protocol.md §2),
 * shared by libshmem and shmemctl; not installed.
 *
 * Requests block until their Reply arrives or a deadline passes. Events
 * (serial 0) that arrive meanwhile are queued, in order, with their fds, and
 * handed out by client_next_event(). A Reply to an earlier request that timed
 * out is recognised by its older serial and discarded with its fds.
 *
 * Errors: 0, a positive shmem.Status where documented, or a negative errno:
 * -ETIMEDOUT (deadline), -ECONNRESET (the broker closed the connection),
 * -EPROTO (the peer does not speak the protocol). Once the connection has
 * failed, every later call returns the same error.
 */

#include <stdint.h>

#include "msg.h"

#define CLIENT_TIMEOUT_MS 5000

typedef struct Client Client;

/* One received message: the decoded Message and the datagram that carried it. */
typedef struct ClientMsg ClientMsg;
struct ClientMsg {
        ClientMsg *next;
        Message *msg;
        FdMsg *raw; /* its fds, by the index the message names: fdmsg_steal_fd() */
};

ClientMsg *client_msg_free(ClientMsg *m);
static inline void client_msg_freep(ClientMsg **m) { client_msg_free(*m); }

/*
 * client_socket_path() - the broker socket to use: @path if not NULL, else
 * $SHMEM_BROKER_SOCKET if set and not empty, else SHMEM_DEFAULT_RUNDIR/broker.sock.
 */
const char *client_socket_path(const char *path);

/*
 * client_connect() - connect to @path and say Hello with @label.
 * @timeout_ms: for the connect and the Hello together.
 *
 * Return: 0; a positive shmem.Status if the broker refused the Hello
 * (VERSION); a negative errno: -ENOENT / -ECONNREFUSED mean no broker
 * listens there, -ENAMETOOLONG a path longer than sockaddr_un allows.
 */
int client_connect(Client **ret, const char *path, const char *label, int timeout_ms);

/*
 * client_connect_with() - client_connect(), sending @first right behind Hello
 * without waiting (one round trip less); its Reply goes to *ret_first.
 * Returns as client_connect(); a refused Hello leaves *ret_first untouched.
 */
int client_connect_with(Client **ret, const char *path, const char *label, int timeout_ms, Message *first,
                        ClientMsg **ret_first);

/* client_new() - wrap @fd (consumed, also on failure), a connected SEQPACKET socket. No Hello. */
int client_new(Client **ret, int fd);

/* client_hello() - the Hello exchange; return as client_connect(). */
int client_hello(Client *c, const char *label, int timeout_ms);

Client *client_free(Client *c);
static inline void client_freep(Client **c) { client_free(*c); }

/* The socket (borrowed), to poll for events. */
int client_fd(Client *c);

/* What the broker said in its HelloReply: its version string ("" before the Hello). */
const char *client_broker(Client *c);

/*
 * client_broker_instance() - HelloReply.instance: a random number the broker
 * draws at every start and re-execution (0 before the Hello, or from a broker
 * that does not send it). Two connections that see different values were
 * answered by different images of the broker.
 */
uint64_t client_broker_instance(Client *c);

/*
 * client_call() - send @req and wait for its Reply.
 * @req: its serial is set here; the caller owns it.
 *
 * Return: 0 with *ret a message whose body is a Reply (its status may be
 * anything: the caller decides), or a negative errno. Events received while
 * waiting are queued for client_next_event().
 */
int client_call(Client *c, Message *req, int timeout_ms, ClientMsg **ret);

/*
 * client_next_event() - the oldest queued event, else one read from the
 * socket without blocking.
 *
 * Return: 1 with *ret, 0 if there is none, or a negative errno.
 */
int client_next_event(Client *c, ClientMsg **ret);

/*
 * client_reply_status() - the Status of a Reply returned by client_call(),
 * and its error text ("" if none) in @ret_error (may be NULL).
 */
int client_reply_status(const ClientMsg *m, const char **ret_error);
