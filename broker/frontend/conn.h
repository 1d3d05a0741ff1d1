/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Conn: one connected socket on the broker's event loop, with a bounded
 * output queue (tmux proc.c's shape: the write event is armed only while the
 * queue is non-empty). Used by every front end, native and QEMU alike.
 *
 * A Conn never calls its owner back from inside conn_queue(): when a send
 * fails or the queue limit is hit, the Conn is marked broken and the owner's
 * drop callback runs later from the loop. So the core can broadcast to many
 * peers without any of them vanishing under its feet.
 */

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>

#include "fdmsg.h"

typedef struct Conn Conn;

/*
 * A budget shared by many Conns: what they may hold queued together. When a
 * message would take it over, over() may break other connections to make room
 * (a broken Conn releases its queue at once); if there is still no room, the
 * Conn queueing the message breaks with -ENOBUFS.
 */
typedef struct ConnBudget ConnBudget;
struct ConnBudget {
        size_t bytes, max_bytes;
        size_t fds, max_fds;
        void (*over)(ConnBudget *b, Conn *c);
};

/*
 * A gate shared by many Conns: before_send() runs before any of them writes
 * to its socket, for what must be done before anything leaves the broker (the
 * service stores the state that explains the reply: docs/persistence.md). It
 * must not queue on a Conn. Cheap when there is nothing to do: it runs for
 * every write.
 */
typedef struct ConnGate {
        void (*before_send)(void *userdata);
        void *userdata;
} ConnGate;

/* Readable: the owner reads with fdmsg_recv(conn->fd, ...). */
typedef void (*ConnReadFn)(Conn *c, void *userdata);
/* The connection must go: @error is a negative errno (-ENOBUFS: queue limit). */
typedef void (*ConnDropFn)(Conn *c, int error, void *userdata);

struct Conn {
        int fd;
        struct event *ev_read, *ev_write, *ev_drop;
        FdMsg *head, *tail;
        size_t queued_bytes, queued_fds, max_queued_bytes;
        ConnBudget *budget; /* NULL: only the Conn's own limit */
        const ConnGate *gate; /* NULL: none */
        int error; /* set once broken */
        bool close_when_flushed;
        ConnReadFn read_fn;
        ConnDropFn drop_fn;
        void *userdata;
};

#define CONN_NULL { .fd = -1 }

/*
 * conn_init() - put @fd (consumed, also on failure) on @base.
 * @max_queued_bytes: queue limit; a peer that does not read is dropped past it.
 */
int conn_init(Conn *c, struct event_base *base, int fd, size_t max_queued_bytes, ConnReadFn read_fn,
              ConnDropFn drop_fn, void *userdata);
void conn_deinit(Conn *c);

/*
 * conn_queue() - send @m (consumed) after what is queued. Writes at once when
 * nothing is queued. Returns 0, or a negative errno after which the Conn is
 * broken (the drop callback follows from the loop); @m is freed either way.
 * A message with borrowed fds (fdmsg_new_borrowed()) is sent at once or
 * made to own them before it waits in the queue.
 */
int conn_queue(Conn *c, FdMsg *m);

/*
 * conn_queue_ref() - conn_queue() that keeps @*ref pointing to @m for as long
 * as @m is queued and unsent: the Conn sets @*ref to NULL when it lets go of
 * @m (sent, freed, or taken out by conn_unqueue()), also from in here.
 */
int conn_queue_ref(Conn *c, FdMsg *m, FdMsg **ref);

/*
 * conn_unqueue() - takes @m, queued on @c and not begun (conn_queue_ref()'s
 * *ref is that), out of the queue and frees it: news that no longer holds
 * (Joined of a peer whose Left is queued now) leaves a slow reader's queue.
 */
void conn_unqueue(Conn *c, FdMsg *m);

/* Charges the Conn's queue to @b from now on (set before anything is queued). */
void conn_set_budget(Conn *c, ConnBudget *b);

/* Passes every write of the Conn through @g from now on (NULL: none). */
void conn_set_gate(Conn *c, const ConnGate *g);

/* Frees what is queued (nothing more will be sent) and schedules the drop callback with @error; idempotent. */
void conn_break(Conn *c, int error);

/* Stops reading; the drop callback (error 0) runs once the queue is flushed. */
void conn_close_after_flush(Conn *c);

/* Pauses or resumes the read event (e.g. while a reply is pending). */
int conn_set_reading(Conn *c, bool on);
