/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "escape.h"
#include "list.h"
#include "listen.h"
#include "log.h"
#include "server.h"

#define CLIENT_READS_PER_WAKEUP 32 /* fairness: one busy client cannot starve the loop */

typedef struct Client Client;

struct Server {
        Registry *registry;
        Frontends *table;
        Native native;
        FrontListener *listener;
        Client *clients;
        unsigned n_clients;
        char path[108];
};

struct Client {
        Server *server;
        Client *prev, *next;
        FrontConn *conn;
        NativeCaller caller;
        /*
         * Joined and Left still queued for the attachment @events_of, by the
         * other peer's index (conn_queue_ref() keeps them): a Left takes both
         * out and goes last, so a slow reader's queue holds at most one of
         * each an index, not the history of peers that came and went.
         */
        Peer *events_of;
        FdMsg *queued_joined[SHMEM_PEERS_MAX], *queued_left[SHMEM_PEERS_MAX];
};

static const PeerOps client_peer_ops;
static const FrontConnOps client_conn_ops;

static const char *client_label(const Client *c, char buf[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)]) {
        return str_escape(buf, STR_ESCAPE_SIZE(SHMEM_LABEL_MAX), c->caller.id.label);
}

/* Queues @m (consumed; NULL: it could not be built, and the client goes); @ref: conn_queue_ref()'s. */
static void client_queue_ref(Client *c, FdMsg *m, FdMsg **ref) {
        char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)];
        bool broken;

        if (!m) {
                conn_break(&c->conn->conn, -ENOMEM);
                return;
        }
        broken = c->conn->conn.error != 0; /* said once, not for each message after */
        if (conn_queue_ref(&c->conn->conn, m, ref) == -ENOBUFS && !broken)
                log_peer_warning_event(LOG_FIELDS(LOG_FIELDS_PEER(&c->caller.id), .message_id = LOG_MID_PEER_DROPPED),
                                       "Client '%s' (pid %d) does not read its messages, dropping it",
                                       client_label(c, label), (int) c->caller.id.pid);
}

static void client_queue(Client *c, FdMsg *m) {
        client_queue_ref(c, m, NULL);
}

/* Lets go of *@slot's message: it stays queued, untracked. */
static void client_forget(FdMsg **slot) {
        if (*slot) {
                (*slot)->ref = NULL;
                *slot = NULL;
        }
}

/* Takes *@slot's message out of the queue (if begun, it goes out, untracked). */
static void client_unqueue(Client *c, FdMsg **slot) {
        if (*slot)
                conn_unqueue(&c->conn->conn, *slot);
        client_forget(slot);
}

/*
 * Queues @m (consumed; NULL: the client goes), @self's Joined (@joined) or
 * Left of the peer at @index. Left supersedes what is queued of that index:
 * a Joined the client has not read (that peer came and went unseen) and an
 * earlier Left (it is told once, with the latest epoch, which libshmem
 * compares with the page's: the last event read must carry the page's epoch).
 */
static void client_queue_event(Client *c, Peer *self, unsigned index, bool joined, FdMsg *m) {
        if (c->events_of != self) { /* another attachment: what is queued of the last goes out as it is */
                for (unsigned i = 0; i < SHMEM_PEERS_MAX; i++) {
                        client_forget(&c->queued_joined[i]);
                        client_forget(&c->queued_left[i]);
                }
                c->events_of = self;
        }
        if (!m || index >= SHMEM_PEERS_MAX) {
                client_queue(c, m);
                return;
        }
        if (!joined) {
                client_unqueue(c, &c->queued_joined[index]);
                client_unqueue(c, &c->queued_left[index]);
        } else
                client_forget(&c->queued_joined[index]); /* never there: a Left comes between */
        client_queue_ref(c, m, joined ? &c->queued_joined[index] : &c->queued_left[index]);
}

static void client_free(Client *c) {
        Server *s = c->server;

        if (c->caller.peer)
                registry_detach(s->registry, c->caller.peer);
        front_conn_free(c->conn);
        LIST_REMOVE(s->clients, c);
        s->n_clients--;
        free(c);
}

static Client *client_new(Server *s) {
        Client *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        c->server = s;
        c->caller.userdata = c;
        LIST_PREPEND(s->clients, c);
        s->n_clients++;
        return c;
}

static void client_on_drop(FrontConn *conn, int error) {
        Client *c = conn->owner;
        char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)];

        if (error == -ETIMEDOUT)
                log_peer_warning_event(LOG_FIELDS(LOG_FIELDS_PEER(&c->caller.id), .message_id = LOG_MID_PEER_DROPPED),
                                       "Dropping client pid %d (uid %u): no Hello within %u ms",
                                       (int) c->caller.id.pid, (unsigned) c->caller.id.uid,
                                       c->server->registry->limits.hello_timeout_ms);
        else if (error && error != -ECONNRESET && error != -EPIPE && error != -ENOBUFS)
                log_debug("Dropping client '%s' (pid %d): %s", client_label(c, label), (int) c->caller.id.pid,
                          strerror(-error));
        client_free(c);
}

/* Handles one datagram; false if the client must go. */
static bool client_handle(Client *c, FdMsg *in) {
        _cleanup_(msg_freep) Message *m = NULL;
        NativeOut out = {};
        int decoded, r;

        decoded = msg_decode(&m, in);
        if (decoded < 0)
                return false;
        r = native_dispatch(&c->server->native, &c->caller, m, decoded, &out);
        if (r < 0) {
                native_out_done(&out);
                return false;
        }
        if (c->caller.greeted)
                front_conn_clear_deadline(c->conn);
        /* The label from Hello names the connection in logs and the stored state too. */
        memcpy(c->conn->peer.label, c->caller.id.label, sizeof(c->conn->peer.label));
        /* Before the reply: the state stored as it leaves (the Conns' gate) must say it (Hello done). */
        if (out.changed)
                keeper_changed(frontends_keeper(c->server->table), c->caller.conn_id);
        while (out.head && !c->conn->conn.error) {
                FdMsg *f = out.head;

                out.head = f->next;
                client_queue(c, f);
        }
        native_out_done(&out);
        if (out.close)
                conn_close_after_flush(&c->conn->conn);
        return true;
}

static void client_on_read(FrontConn *conn) {
        Client *c = conn->owner;
        char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)];

        for (unsigned n = 0; n < CLIENT_READS_PER_WAKEUP && !conn->conn.error && !conn->conn.close_when_flushed; n++) {
                _cleanup_(fdmsg_freep) FdMsg *in = NULL;
                int r;

                /* Clients send no fds: any fd at all is a protocol violation. */
                r = fdmsg_recv(front_conn_fd(conn), SHMEM_MSG_MAX, 0, &in);
                if (r == -EAGAIN)
                        return;
                if (r == FDMSG_E_EOF) {
                        conn_break(&conn->conn, -ECONNRESET);
                        return;
                }
                if (r != 0) {
                        log_peer_warning_event(LOG_FIELDS(LOG_FIELDS_PEER(&c->caller.id),
                                                          .message_id = LOG_MID_PEER_DROPPED),
                                         "Dropping client '%s' (pid %d): %s", client_label(c, label),
                                         (int) c->caller.id.pid,
                                         r == FDMSG_E_TRUNCATED      ? "message or fds truncated"
                                         : r == FDMSG_E_TOO_MANY_FDS ? "it sent file descriptors"
                                         : r == FDMSG_E_BAD_CMSG     ? "unexpected control message"
                                                                     : strerror(-r));
                        conn_break(&conn->conn, -EPROTO);
                        return;
                }
                if (!client_handle(c, in)) {
                        log_peer_warning_event(LOG_FIELDS(LOG_FIELDS_PEER(&c->caller.id),
                                                          .message_id = LOG_MID_PEER_DROPPED),
                                               "Dropping client '%s' (pid %d): malformed or unexpected message",
                                               client_label(c, label), (int) c->caller.id.pid);
                        conn_break(&conn->conn, -EPROTO);
                        return;
                }
        }
}

/* What a restarted broker needs of a client (state.proto's Conn). */
static int client_dump(FrontConn *conn, State *st) {
        Client *c = conn->owner;
        Shmem__State__Conn *sc = front_conn_dump(conn, SHMEM__STATE__FRONTEND__NATIVE, st);

        if (!sc)
                return -ENOMEM;
        sc->greeted = c->caller.greeted;
        sc->watching = c->caller.watching;
        return 0;
}

static const FrontConnOps client_conn_ops = {
        .read = client_on_read,
        .drop = client_on_drop,
        .dump = client_dump,
};

/* --- events to attached peers and watchers --- */

static void client_peer_joined(Peer *self, Peer *other) {
        client_queue_event(self->userdata, self, other->index, true, native_event_joined(self, other));
}

static void client_peer_left(Peer *self, Peer *other) {
        client_queue_event(self->userdata, self, other->index, false, native_event_left(self, other));
}

static void client_peer_evicted(Peer *self) {
        Client *c = self->userdata;

        c->caller.peer = NULL;
        conn_break(&c->conn->conn, -ECONNRESET);
}

static const PeerOps client_peer_ops = {
        .joined = client_peer_joined,
        .left = client_peer_left,
        .evicted = client_peer_evicted,
        /* The native protocol takes a departure back: a parked peer is one that left, then joined again. */
        .parked = client_peer_left,
        .unparked = client_peer_joined,
};

/* Sends what @build makes to every watcher (built once per watcher: each message is consumed). */
#define BROADCAST(s, build)                                                   \
        do {                                                                  \
                for (Client *_c = (s)->clients; _c; _c = _c->next)            \
                        if (_c->caller.watching && !_c->conn->conn.error)     \
                                client_queue(_c, (build));                    \
        } while (0)

static void server_observe_region(void *userdata, Region *r, RegionState state) {
        BROADCAST((Server *) userdata, native_event_watch_state(r, state));
}

static void server_observe_joined(void *userdata, Region *r, Peer *p) {
        BROADCAST((Server *) userdata, native_event_watch_joined(r, p));
}

static void server_observe_left(void *userdata, Region *r, unsigned index, bool parked) {
        if (!parked) /* watchers saw it leave when it was parked */
                BROADCAST((Server *) userdata, native_event_watch_left(r, index));
}

static void server_observe_parked(void *userdata, Region *r, Peer *p) {
        BROADCAST((Server *) userdata, native_event_watch_left(r, p->index));
}

/* --- accepting --- */

static void server_on_accept(FrontListener *l, int fd, const PeerIdentity *peer, void *userdata) {
        Server *s = userdata;
        const char *why;
        Client *c;

        if (frontends_admit(s->table, peer, &why) != 0) {
                log_peer_warning_event(LOG_FIELDS(LOG_FIELDS_PEER(peer), .message_id = LOG_MID_LIMIT_REFUSED),
                                       "Refusing a control connection of pid %d (uid %u): %s", (int) peer->pid,
                                       (unsigned) peer->uid, why);
                fd_close(fd);
                return;
        }
        c = client_new(s);
        if (!c) {
                fd_close(fd);
                return;
        }
        c->caller.id = *peer;
        snprintf(c->caller.id.label, sizeof(c->caller.id.label), "pid-%d", (int) peer->pid);
        c->caller.conn_id = registry_new_conn_id(s->registry);
        if (front_conn_new(&c->conn, s->table, fd, c->caller.conn_id, &c->caller.id, &client_conn_ops, c) < 0) {
                client_free(c);
                return;
        }
        if (front_conn_set_deadline(c->conn, s->registry->limits.hello_timeout_ms) < 0)
                conn_break(&c->conn->conn, -ENOMEM);
}

void server_restore(Server *s, const State *st) {
        for (size_t i = 0; i < st->n_conns; i++) {
                const Shmem__State__Conn *sc = st->conns[i];
                PeerIdentity id = { .kind = SHMEM_PEER_KIND_HOST, .pid = (pid_t) sc->pid, .uid = sc->uid,
                                    .gid = sc->gid };
                Client *c;

                if (sc->frontend != SHMEM__STATE__FRONTEND__NATIVE)
                        continue;
                c = client_new(s);
                if (!c)
                        continue;
                snprintf(id.label, sizeof(id.label), "%s", sc->label);
                c->caller.id = id;
                c->caller.conn_id = sc->id;
                c->caller.greeted = sc->greeted;
                c->caller.watching = sc->watching;
                /* Its peer, if any, is detached by registry_adopt_finish() when the fd did not come back. */
                if (front_conn_restore(&c->conn, s->table, sc, &id, &client_conn_ops, c) < 0) {
                        client_free(c);
                        continue;
                }
                if (!c->caller.greeted && front_conn_set_deadline(c->conn, s->registry->limits.hello_timeout_ms) < 0)
                        conn_break(&c->conn->conn, -ENOMEM);
                c->caller.peer = registry_find_peer_by_conn(s->registry, sc->id);
                if (c->caller.peer) {
                        c->caller.peer->ops = &client_peer_ops;
                        c->caller.peer->userdata = c;
                }
        }
}

int server_new(Server **ret, Registry *reg, Frontends *table, const char *path, const NativeHooks *hooks) {
        Keeper *keeper = frontends_keeper(table);
        Server *s;
        int fd, r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->registry = reg;
        s->table = table;
        native_init(&s->native, reg, &client_peer_ops, hooks);
        if (strlen(path) >= sizeof(s->path)) {
                free(s);
                return -ENAMETOOLONG;
        }
        strcpy(s->path, path);
        fd = keeper_take(keeper, &(FdKey) { .kind = FD_CONTROL });
        if (fd < 0) {
                /* Who may do what is decided per request, not by the socket (docs/security.md). */
                r = socket_listen(path, SOCK_SEQPACKET, 0666, (gid_t) -1, true, &fd);
                if (r < 0) {
                        free(s);
                        return r;
                }
        }
        keeper_keep(keeper, &(FdKey) { .kind = FD_CONTROL }, fd);
        r = front_listener_new(&s->listener, table, fd, SHMEM_PEER_KIND_HOST, server_on_accept, s);
        if (r >= 0)
                r = registry_observe(reg, &(RegistryObserver) { .region = server_observe_region,
                                                                .joined = server_observe_joined,
                                                                .left = server_observe_left,
                                                                .parked = server_observe_parked,
                                                                .unparked = server_observe_joined,
                                                                .userdata = s });
        if (r < 0) {
                server_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

Server *server_free(Server *s) {
        if (!s)
                return NULL;
        while (s->clients)
                client_free(s->clients);
        registry_unobserve(s->registry, s);
        if (s->listener) {
                (void) unlink(s->path);
                keeper_drop(frontends_keeper(s->table), &(FdKey) { .kind = FD_CONTROL });
                front_listener_free(s->listener);
        }
        free(s);
        return NULL;
}

unsigned server_n_clients(Server *s) {
        return s->n_clients;
}
