/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>

#include "conn.h"

static void conn_on_drop(evutil_socket_t fd, short what, void *userdata) {
        Conn *c = userdata;

        /* The owner frees the Conn (and may free itself) in here. */
        c->drop_fn(c, c->error, c->userdata);
}

/* Frees @m, which the queue lets go of: its owner's pointer to it goes first. */
static void conn_msg_free(FdMsg *m) {
        if (m->ref)
                *m->ref = NULL;
        fdmsg_free(m);
}

/* Takes @m out of the queue and frees it, with the accounting. */
static void conn_remove(Conn *c, FdMsg *m) {
        if (m->prev)
                m->prev->next = m->next;
        else
                c->head = m->next;
        if (m->next)
                m->next->prev = m->prev;
        else
                c->tail = m->prev;
        c->queued_bytes -= m->n_bytes;
        c->queued_fds -= m->n_fds;
        if (c->budget) {
                c->budget->bytes -= m->n_bytes;
                c->budget->fds -= m->n_fds;
        }
        conn_msg_free(m);
}

/* Takes the queue's head off. */
static void conn_pop(Conn *c) {
        conn_remove(c, c->head);
}

void conn_unqueue(Conn *c, FdMsg *m) {
        /* Begun (a stream's part written): it must go out whole. Never so on a datagram socket. */
        if (m->sent > 0)
                return;
        conn_remove(c, m);
}

static int conn_flush(Conn *c) {
        if (c->head && c->gate && c->gate->before_send)
                c->gate->before_send(c->gate->userdata);
        while (c->head) {
                FdMsg *m = c->head;
                int r = fdmsg_send(c->fd, m);

                if (r < 0)
                        return r;
                if (r == 0)
                        return event_add(c->ev_write, NULL) < 0 ? -ENOMEM : 0;
                conn_pop(c);
        }
        event_del(c->ev_write);
        if (c->close_when_flushed && c->error == 0)
                event_active(c->ev_drop, 0, 0);
        return 0;
}

static void conn_on_write(evutil_socket_t fd, short what, void *userdata) {
        Conn *c = userdata;
        int r = conn_flush(c);

        if (r < 0)
                conn_break(c, r);
}

static void conn_on_read(evutil_socket_t fd, short what, void *userdata) {
        Conn *c = userdata;

        c->read_fn(c, c->userdata);
}

int conn_init(Conn *c, struct event_base *base, int fd, size_t max_queued_bytes, ConnReadFn read_fn,
              ConnDropFn drop_fn, void *userdata) {
        *c = (Conn) CONN_NULL;
        c->fd = fd;
        c->max_queued_bytes = max_queued_bytes;
        c->read_fn = read_fn;
        c->drop_fn = drop_fn;
        c->userdata = userdata;
        c->ev_read = event_new(base, fd, EV_READ | EV_PERSIST, conn_on_read, c);
        c->ev_write = event_new(base, fd, EV_WRITE | EV_PERSIST, conn_on_write, c);
        c->ev_drop = event_new(base, -1, 0, conn_on_drop, c);
        if (!c->ev_read || !c->ev_write || !c->ev_drop || event_add(c->ev_read, NULL) < 0) {
                conn_deinit(c);
                return -ENOMEM;
        }
        return 0;
}

void conn_deinit(Conn *c) {
        if (c->ev_read)
                event_free(c->ev_read);
        if (c->ev_write)
                event_free(c->ev_write);
        if (c->ev_drop)
                event_free(c->ev_drop);
        while (c->head)
                conn_pop(c);
        fd_close(c->fd);
        *c = (Conn) CONN_NULL;
}

void conn_set_budget(Conn *c, ConnBudget *b) {
        c->budget = b;
}

void conn_set_gate(Conn *c, const ConnGate *g) {
        c->gate = g;
}

void conn_break(Conn *c, int error) {
        if (c->error)
                return;
        c->error = error < 0 ? error : -EIO;
        while (c->head)
                conn_pop(c);
        event_del(c->ev_read);
        event_del(c->ev_write);
        event_active(c->ev_drop, 0, 0);
}

int conn_queue(Conn *c, FdMsg *m) {
        return conn_queue_ref(c, m, NULL);
}

int conn_queue_ref(Conn *c, FdMsg *m, FdMsg **ref) {
        int r;

        m->ref = ref;
        if (ref)
                *ref = m;
        if (c->error) {
                conn_msg_free(m);
                return c->error;
        }
        if (c->queued_bytes + m->n_bytes > c->max_queued_bytes ||
            c->queued_fds + m->n_fds > FDMSG_FDS_MAX * 4)
                goto full;
        if (c->budget && (c->budget->bytes + m->n_bytes > c->budget->max_bytes ||
                          c->budget->fds + m->n_fds > c->budget->max_fds)) {
                if (c->budget->over)
                        c->budget->over(c->budget, c);
                if (c->error || c->budget->bytes + m->n_bytes > c->budget->max_bytes ||
                    c->budget->fds + m->n_fds > c->budget->max_fds)
                        goto full;
        }
        /* Borrowed fds (fdmsg_new_borrowed()) live only as long as the caller: what waits owns its own. */
        if (c->head && fdmsg_own(m) < 0)
                goto nomem;
        m->next = NULL;
        m->prev = c->tail;
        if (c->tail)
                c->tail->next = m;
        else
                c->head = m;
        c->tail = m;
        c->queued_bytes += m->n_bytes;
        c->queued_fds += m->n_fds;
        if (c->budget) {
                c->budget->bytes += m->n_bytes;
                c->budget->fds += m->n_fds;
        }
        if (c->head != m)
                return 0; /* the write event is armed already */
        r = conn_flush(c);
        if (r < 0)
                conn_break(c, r);
        else if (c->head == m && fdmsg_own(m) < 0) /* not sent: it waits */
                conn_break(c, -ENOMEM);
        return r;

nomem:
        conn_msg_free(m);
        conn_break(c, -ENOMEM);
        return -ENOMEM;

full:
        conn_msg_free(m);
        conn_break(c, -ENOBUFS);
        return -ENOBUFS;
}

void conn_close_after_flush(Conn *c) {
        c->close_when_flushed = true;
        event_del(c->ev_read);
        if (!c->head && c->error == 0)
                event_active(c->ev_drop, 0, 0);
}

int conn_set_reading(Conn *c, bool on) {
        if (c->error || c->close_when_flushed)
                return 0;
        return (on ? event_add(c->ev_read, NULL) : event_del(c->ev_read)) < 0 ? -ENOMEM : 0;
}
