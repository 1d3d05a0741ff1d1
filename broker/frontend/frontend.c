/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "error.h"
#include "escape.h"
#include "frontend.h"
#include "list.h"
#include "log.h"
#include "policy.h"
#include "shmem.pb-c.h"

#define ACCEPTS_PER_WAKEUP 32  /* fairness: one busy listener cannot starve the loop */
#define ACCEPT_BACKOFF_MS 100  /* out of fds: wait this long before accepting again */

/* How many connections one user (host peers) or one VM (QEMU peers) holds. */
typedef struct Count {
        char holder[PEER_HOLDER_MAX];
        unsigned n;
} Count;

struct Frontends {
        struct event_base *base;
        Limits limits;
        Keeper *keeper;
        FrontConn *conns;
        unsigned n_conns;
        Map *by_id;  /* FrontConn.id -> FrontConn */
        Map *counts; /* holder -> Count */
        ConnBudget budget;
        ConnGate gate; /* every connection's writes pass it */
        char why[192];
};

struct FrontListener {
        Frontends *table;
        int fd;
        unsigned kind;
        struct event *ev_accept, *ev_resume;
        FrontAcceptFn fn;
        void *userdata;
};

/* Out of queue budget: the connection that holds the most fds (else bytes) is the one not reading. */
static void frontends_over_budget(ConnBudget *b, Conn *asking) {
        Frontends *t = (Frontends *) ((char *) b - offsetof(Frontends, budget));
        FrontConn *worst = NULL;
        char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)];

        for (FrontConn *c = t->conns; c; c = c->next)
                if (!c->conn.error && (!worst || c->conn.queued_fds > worst->conn.queued_fds ||
                                       (c->conn.queued_fds == worst->conn.queued_fds &&
                                        c->conn.queued_bytes > worst->conn.queued_bytes)))
                        worst = c;
        if (!worst || (worst->conn.queued_fds == 0 && worst->conn.queued_bytes == 0))
                return;
        log_peer_warning_event(LOG_FIELDS(LOG_FIELDS_PEER(&worst->peer), .message_id = LOG_MID_PEER_DROPPED),
                         "Dropping '%s' (pid %d): it holds %zu queued fds and %zu bytes of the %zu and %zu all "
                         "connections may hold (total-queued-fds, total-queued-bytes): it does not read",
                         str_escape(label, sizeof(label), worst->peer.label), (int) worst->peer.pid,
                         worst->conn.queued_fds, worst->conn.queued_bytes, b->max_fds, b->max_bytes);
        conn_break(&worst->conn, -ENOBUFS);
}

int frontends_new(Frontends **ret, struct event_base *base, const Limits *limits, Keeper *keeper) {
        Frontends *t = calloc(1, sizeof(*t));

        if (!t)
                return -ENOMEM;
        t->base = base;
        t->keeper = keeper;
        t->budget.over = frontends_over_budget;
        frontends_set_limits(t, limits);
        if (map_new(&t->counts, MAP_KEY_STRING) < 0 || map_new(&t->by_id, MAP_KEY_U64) < 0) {
                frontends_free(t);
                return -ENOMEM;
        }
        *ret = t;
        return 0;
}

Frontends *frontends_free(Frontends *t) {
        void *v;

        if (!t)
                return NULL;
        for (size_t i = 0; map_next(t->counts, &i, &v);)
                free(v);
        map_free(t->counts);
        map_free(t->by_id);
        free(t);
        return NULL;
}

void frontends_set_limits(Frontends *t, const Limits *limits) {
        t->limits = *limits;
        t->budget.max_bytes = limits->max_total_queued_bytes;
        t->budget.max_fds = limits->max_total_queued_fds;
}

void frontends_set_gate(Frontends *t, void (*before_send)(void *userdata), void *userdata) {
        t->gate = (ConnGate) { before_send, userdata };
}

struct event_base *frontends_base(Frontends *t) {
        return t->base;
}

Keeper *frontends_keeper(Frontends *t) {
        return t->keeper;
}

size_t frontends_queued_bytes(Frontends *t) {
        return t->budget.bytes;
}

unsigned frontends_count(Frontends *t) {
        return t->n_conns;
}

unsigned frontends_count_holder(Frontends *t, const char *holder) {
        const Count *c = map_get(t->counts, holder);

        return c ? c->n : 0;
}

bool frontends_next_holder(Frontends *t, size_t *cursor, const char **ret_holder, unsigned *ret_n) {
        void *v;

        if (!map_next(t->counts, cursor, &v))
                return false;
        *ret_holder = ((const Count *) v)->holder;
        *ret_n = ((const Count *) v)->n;
        return true;
}

FrontConn *frontends_first(Frontends *t) {
        return t->conns;
}

/* The count of @holder, created if @create. */
static Count *frontends_count_of(Frontends *t, const char *holder, bool create) {
        Count *c = map_get(t->counts, holder);

        if (c || !create)
                return c;
        c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        snprintf(c->holder, sizeof(c->holder), "%s", holder);
        if (map_put(t->counts, c->holder, c) < 0)
                return mfree(c);
        return c;
}

int frontends_admit(Frontends *t, const PeerIdentity *id, const char **ret_why) {
        const Limits *l = &t->limits;
        bool admin = policy_is_admin(id);
        char holder[PEER_HOLDER_MAX];
        Count *c = frontends_count_of(t, peer_identity_holder(id, holder), false);

        *ret_why = NULL;
        if (t->n_conns >= l->max_connections)
                *ret_why = "the broker's connection limit (connections) is reached";
        else if (!admin && t->n_conns + l->admin_reserve >= l->max_connections) {
                snprintf(t->why, sizeof(t->why), "the last %u of %u connections are for administrators (admin-reserve)",
                         l->admin_reserve, l->max_connections);
                *ret_why = t->why;
        } else if (id->kind == SHMEM_PEER_KIND_QEMU && c && c->n >= l->max_connections_per_vm)
                *ret_why = "this VM's connection limit (connections-per-vm) is reached";
        else if (id->kind != SHMEM_PEER_KIND_QEMU && !admin && c && c->n >= l->max_connections_per_uid)
                *ret_why = "this user's connection limit (connections-per-uid) is reached";
        return *ret_why ? CORE_E_LIMIT : 0;
}

static void front_conn_on_read(Conn *conn, void *userdata) {
        FrontConn *c = userdata;

        c->ops->read(c);
}

static void front_conn_on_drop(Conn *conn, int error, void *userdata) {
        FrontConn *c = userdata;

        c->ops->drop(c, error);
}

int front_conn_new(FrontConn **ret, Frontends *t, int fd, uint64_t id, const PeerIdentity *peer,
                   const FrontConnOps *ops, void *owner) {
        FrontConn *c = calloc(1, sizeof(*c));
        Count *count;
        int r;

        if (!c) {
                fd_close(fd);
                return -ENOMEM;
        }
        c->table = t;
        c->ops = ops;
        c->owner = owner;
        c->id = id;
        c->peer = *peer;
        peer_identity_holder(peer, c->holder);
        if (conn_init(&c->conn, t->base, fd, t->limits.max_queued_bytes, front_conn_on_read, front_conn_on_drop,
                      c) < 0) {
                free(c);
                return -ENOMEM;
        }
        conn_set_budget(&c->conn, &t->budget);
        conn_set_gate(&c->conn, &t->gate);
        count = frontends_count_of(t, c->holder, true);
        if (count) {
                count->n++;
                c->counted = true;
        }
        r = map_put(t->by_id, &c->id, c);
        if (r < 0) {
                if (c->counted && --count->n == 0)
                        free(map_remove(t->counts, count->holder));
                conn_deinit(&c->conn);
                free(c);
                return r;
        }
        LIST_PREPEND(t->conns, c);
        t->n_conns++;
        keeper_keep(t->keeper, &(FdKey) { .kind = FD_CONN, .id = id }, fd);
        *ret = c;
        return 0;
}

FrontConn *front_conn_free(FrontConn *c) {
        Frontends *t;

        if (!c)
                return NULL;
        t = c->table;
        keeper_drop(t->keeper, &(FdKey) { .kind = FD_CONN, .id = c->id });
        if (c->counted) {
                Count *count = frontends_count_of(t, c->holder, false);

                if (count && --count->n == 0)
                        free(map_remove(t->counts, count->holder));
        }
        if (c->ev_deadline)
                event_free(c->ev_deadline);
        conn_deinit(&c->conn);
        map_remove(t->by_id, &c->id);
        LIST_REMOVE(t->conns, c);
        t->n_conns--;
        free(c);
        return NULL;
}

static void front_conn_on_deadline(evutil_socket_t fd, short what, void *userdata) {
        FrontConn *c = userdata;

        conn_break(&c->conn, -ETIMEDOUT);
}

int front_conn_set_deadline(FrontConn *c, unsigned ms) {
        struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (suseconds_t) (ms % 1000) * 1000 };

        if (!c->ev_deadline) {
                c->ev_deadline = evtimer_new(c->table->base, front_conn_on_deadline, c);
                if (!c->ev_deadline)
                        return -ENOMEM;
        }
        return evtimer_add(c->ev_deadline, &tv) < 0 ? -ENOMEM : 0;
}

void front_conn_clear_deadline(FrontConn *c) {
        if (c->ev_deadline)
                evtimer_del(c->ev_deadline);
}

Shmem__State__Conn *front_conn_dump(FrontConn *c, Shmem__State__Frontend frontend, State *s) {
        Shmem__State__Conn *sc = state_add_conn(s);

        if (!sc)
                return NULL;
        sc->id = c->id;
        sc->frontend = frontend;
        sc->label = c->peer.label;
        sc->pid = (uint32_t) c->peer.pid;
        sc->uid = c->peer.uid;
        sc->gid = c->peer.gid;
        return sc;
}

static int front_conn_store(FrontConn *c, State *s) {
        return c->ops->dump && !front_conn_leaving(c) ? c->ops->dump(c, s) : 0;
}

int frontends_dump(Frontends *t, State *s) {
        int r = 0;

        for (FrontConn *c = t->conns; c && r >= 0; c = c->next)
                r = front_conn_store(c, s);
        return r;
}

int frontends_dump_conn(Frontends *t, uint64_t id, State *s) {
        FrontConn *c = map_get(t->by_id, &id);

        return c ? front_conn_store(c, s) : 0;
}

int front_conn_restore(FrontConn **ret, Frontends *t, const Shmem__State__Conn *sc, const PeerIdentity *peer,
                       const FrontConnOps *ops, void *owner) {
        int fd = keeper_take(t->keeper, &(FdKey) { .kind = FD_CONN, .id = sc->id });

        if (fd < 0)
                return -ENOENT;
        return front_conn_new(ret, t, fd, sc->id, peer, ops, owner);
}

int front_status(int core) {
        static const int status[CORE_E_MAX] = {
                [0] = SHMEM__STATUS__OK,
                [CORE_E_CLIENT_MAX] = SHMEM__STATUS__CLIENT_MAX,
                [CORE_E_ILLEGAL_NAME] = SHMEM__STATUS__ILLEGAL_NAME,
                [CORE_E_NO_PERMISSION] = SHMEM__STATUS__NO_PERMISSION,
                [CORE_E_NOT_FOUND] = SHMEM__STATUS__DOES_NOT_EXIST,
                [CORE_E_EXISTS] = SHMEM__STATUS__EXISTS,
                [CORE_E_BAD_SIZE] = SHMEM__STATUS__BAD_SIZE,
                [CORE_E_LIMIT] = SHMEM__STATUS__LIMIT,
                [CORE_E_BUSY] = SHMEM__STATUS__BUSY,
                [CORE_E_INVALID] = SHMEM__STATUS__BAD_REQUEST,
                [CORE_E_NOMEM] = SHMEM__STATUS__NOMEM,
        };

        return core >= 0 && core < CORE_E_MAX ? status[core] : SHMEM__STATUS__UNKNOWN_FAILURE;
}

/* --- listening ------------------------------------------------------------ */

static void front_listener_on_resume(evutil_socket_t fd, short what, void *userdata) {
        FrontListener *l = userdata;

        (void) event_add(l->ev_accept, NULL);
}

/* Fills @peer with the kernel's view of the process at the other end of @fd. */
static int peer_credentials(int fd, unsigned kind, PeerIdentity *peer) {
        struct ucred cred;
        socklen_t len = sizeof(cred);

        *peer = (PeerIdentity) { .kind = kind };
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return -errno;
        peer->pid = cred.pid;
        peer->uid = cred.uid;
        peer->gid = cred.gid;
        if (kind == SHMEM_PEER_KIND_HOST) {
                /* For the regions' group access; a peer in more groups than fit is
                 * judged by those that do (ERANGE leaves none: its primary alone). */
                len = sizeof(peer->groups);
                if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, peer->groups, &len) == 0)
                        peer->n_groups = len / sizeof(gid_t);
        }
        return 0;
}

static void front_listener_on_accept(evutil_socket_t fd, short what, void *userdata) {
        FrontListener *l = userdata;

        for (unsigned n = 0; n < ACCEPTS_PER_WAKEUP; n++) {
                PeerIdentity peer;
                int cfd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (cfd < 0) {
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return;
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        /* Out of fds or memory: the socket stays readable, so pause
                         * rather than spin; what waits in the backlog waits. */
                        log_peer_warning("Cannot accept connections for %d ms: %s", ACCEPT_BACKOFF_MS,
                                         strerror(errno));
                        event_del(l->ev_accept);
                        (void) evtimer_add(l->ev_resume,
                                           &(struct timeval) { .tv_usec = ACCEPT_BACKOFF_MS * 1000 });
                        return;
                }
                if (peer_credentials(cfd, l->kind, &peer) < 0) {
                        fd_close(cfd);
                        continue;
                }
                l->fn(l, cfd, &peer, l->userdata);
        }
}

int front_listener_new(FrontListener **ret, Frontends *t, int fd, unsigned kind, FrontAcceptFn fn, void *userdata) {
        FrontListener *l = calloc(1, sizeof(*l));

        if (!l) {
                fd_close(fd);
                return -ENOMEM;
        }
        l->table = t;
        l->fd = fd;
        l->kind = kind;
        l->fn = fn;
        l->userdata = userdata;
        l->ev_accept = event_new(t->base, fd, EV_READ | EV_PERSIST, front_listener_on_accept, l);
        l->ev_resume = evtimer_new(t->base, front_listener_on_resume, l);
        if (!l->ev_accept || !l->ev_resume || event_add(l->ev_accept, NULL) < 0) {
                front_listener_free(l);
                return -ENOMEM;
        }
        *ret = l;
        return 0;
}

FrontListener *front_listener_free(FrontListener *l) {
        if (!l)
                return NULL;
        if (l->ev_accept)
                event_free(l->ev_accept);
        if (l->ev_resume)
                event_free(l->ev_resume);
        fd_close(l->fd);
        free(l);
        return NULL;
}

int front_listener_fd(FrontListener *l) {
        return l->fd;
}
