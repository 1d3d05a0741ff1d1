/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The front ends' shared connection module: what the native protocol
 * (native/server.c) and every VMM plugin (plugin-qemu/) do alike with the
 * sockets their peers connect on.
 *
 * - FrontListener: a listening socket on the loop; accepts, reads the
 *   kernel's credentials (SO_PEERCRED, and SO_PEERGROUPS for host peers), and
 *   backs off for a while when the process is out of fds (EMFILE/ENFILE)
 *   instead of spinning on a socket that stays readable.
 * - FrontConn: one connected peer socket (a Conn with its bounded queue) with
 *   the id that names it in the fd store, kept there through the Keeper.
 * - Frontends: the table of all of them: the connection limits in total, per
 *   user and per VM, the connections reserved for administrators, the queue
 *   budget of all connections together, and the Hello deadline.
 */

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "identity.h"
#include "keeper.h"
#include "resource-limits.h"
#include "map.h"
#include "state-build.h"

typedef struct Frontends Frontends;
typedef struct FrontConn FrontConn;
typedef struct FrontListener FrontListener;

typedef struct FrontConnOps {
        /* Readable: the owner reads with fdmsg_recv(front_conn_fd(c), ...). */
        void (*read)(FrontConn *c);
        /* The connection must go (@error: a negative errno; -ENOBUFS queue limit,
         * -ETIMEDOUT no Hello in time; 0 closed after flush): the owner frees it. */
        void (*drop)(FrontConn *c, int error);
        /* Adds what a restarted broker needs of @c to @s (front_conn_dump() and the front
         * end's fields): 0, or -ENOMEM. NULL, or nothing added: it is not stored. */
        int (*dump)(FrontConn *c, State *s);
} FrontConnOps;

struct FrontConn {
        Frontends *table;
        FrontConn *prev, *next;
        const FrontConnOps *ops;
        void *owner;      /* the front end's object for this connection */
        uint64_t id;      /* names it in the fd store and a stored state */
        PeerIdentity peer; /* the kernel's credentials; the front end completes the rest */
        char holder[PEER_HOLDER_MAX]; /* whose connection it counts as: its user's, or its VM's */
        bool counted;     /* holds a place in that count */
        Conn conn;
        struct event *ev_deadline;
};

int frontends_new(Frontends **ret, struct event_base *base, const Limits *limits, Keeper *keeper);
/* Frees the table; its connections must be freed before (by their owners). */
Frontends *frontends_free(Frontends *t);

/* Limits changed (a reload): existing connections stay even if now over them. */
void frontends_set_limits(Frontends *t, const Limits *limits);
/*
 * @before_send runs before any connection writes to its socket (ConnGate),
 * from inside whatever queued the message: the broker stores the state that
 * explains what is sent (docs/persistence.md). It must not queue anything.
 */
void frontends_set_gate(Frontends *t, void (*before_send)(void *userdata), void *userdata);
struct event_base *frontends_base(Frontends *t);
Keeper *frontends_keeper(Frontends *t);
unsigned frontends_count(Frontends *t);
/* What every connection has queued and not yet written, in bytes. */
size_t frontends_queued_bytes(Frontends *t);

/*
 * Connections counted for one holder (peer_identity_holder()), for the
 * native Status: frontends_count_holder() of @holder now (0: none);
 * frontends_next_holder() iterates the holders with any, from *@cursor = 0,
 * false at the end.
 */
unsigned frontends_count_holder(Frontends *t, const char *holder);
bool frontends_next_holder(Frontends *t, size_t *cursor, const char **ret_holder, unsigned *ret_n);

/*
 * frontends_admit() - whether a new connection of @id may be added now: the
 * total (less the administrators' reserve for others), the per-user limit
 * for host peers, the per-VM limit for QEMU peers (peer_identity_holder()).
 * Returns 0, or CORE_E_LIMIT with a reason (valid until the next call).
 */
int frontends_admit(Frontends *t, const PeerIdentity *id, const char **ret_why);

/*
 * front_conn_new() - a connection on @fd (consumed, also on failure) with @id
 * (registry_new_conn_id(), or a stored one being restored), counted against
 * the limits of @peer (admitted before, or restored) and kept by the Keeper.
 */
int front_conn_new(FrontConn **ret, Frontends *t, int fd, uint64_t id, const PeerIdentity *peer,
                   const FrontConnOps *ops, void *owner);
/* Closes and frees; NULL-safe. */
FrontConn *front_conn_free(FrontConn *c);

static inline int front_conn_fd(FrontConn *c) {
        return c->conn.fd;
}

/* Drops the connection unless front_conn_clear_deadline() comes within @ms. */
int front_conn_set_deadline(FrontConn *c, unsigned ms);
void front_conn_clear_deadline(FrontConn *c);

/* Whether it is going: broken, or closing once flushed (not to be stored). */
static inline bool front_conn_leaving(const FrontConn *c) {
        return c->conn.error || c->conn.close_when_flushed;
}

/*
 * Stored state (state.proto) of a connection, the fields every front end
 * has: front_conn_dump() adds @c as a Conn of @frontend to @s (NULL: out of
 * memory) for the caller to complete; front_conn_restore() takes the fd
 * stored for @sc back from the Keeper and makes the connection, with the
 * identity @peer the front end rebuilt (-ENOENT: its fd did not come back).
 */
Shmem__State__Conn *front_conn_dump(FrontConn *c, Shmem__State__Frontend frontend, State *s);
int front_conn_restore(FrontConn **ret, Frontends *t, const Shmem__State__Conn *sc, const PeerIdentity *peer,
                       const FrontConnOps *ops, void *owner);

/* Iterates the table's connections (every front end's). */
FrontConn *frontends_first(Frontends *t);

/*
 * The connections' part of a stored state, through each one's FrontConnOps.dump
 * (one going away is not stored): frontends_dump() adds every connection to @s;
 * frontends_dump_conn() the one of @id, if there is one to store. Both return 0
 * or -ENOMEM.
 */
int frontends_dump(Frontends *t, State *s);
int frontends_dump_conn(Frontends *t, uint64_t id, State *s);

/*
 * front_status() - the wire status of a core result (core/error.h): the
 * shmem.Status numbers, QNX's first, that both front ends' wires speak (the
 * native Reply.status; QEMU's refusal version 1000 + status). -errno values
 * are UNKNOWN_FAILURE.
 */
int front_status(int core);

/* Accepted: @fd (consumed) with the kernel's credentials in @peer (kind set from the listener). */
typedef void (*FrontAcceptFn)(FrontListener *l, int fd, const PeerIdentity *peer, void *userdata);

/*
 * front_listener_new() - accept on @fd (a listening socket, consumed also on
 * failure) for peers of @kind (SHMEM_PEER_KIND_*), handing each to @fn.
 */
int front_listener_new(FrontListener **ret, Frontends *t, int fd, unsigned kind, FrontAcceptFn fn, void *userdata);
FrontListener *front_listener_free(FrontListener *l);
int front_listener_fd(FrontListener *l);
