/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "msg.h"
#include "server.h"

#define CLIENT_READS_PER_WAKEUP 32 /* fairness: one busy client cannot starve the loop */

typedef struct Client Client;

struct Server {
        Registry *registry;
        ServerHooks hooks;
        int listen_fd;
        struct event *ev_accept;
        Client *clients;
        unsigned n_clients;
        uint64_t instance; /* HelloReply.instance: new in every image */
};

struct Client {
        Server *server;
        Client *prev, *next;
        uint64_t conn_id; /* registry_new_conn_id(): its fd is stored as "c/ID" */
        Conn conn;
        bool greeted, watching;
        PeerIdentity id;
        Peer *peer; /* at most one attachment per connection */
};

static const PeerOps client_peer_ops;

/* Queues @m with @fds (consumed). Errors break the connection (dropped later). */
static void client_send(Client *c, const Message *m, int *fds, size_t n_fds) {
        FdMsg *out;
        int r;

        r = msg_encode(&out, m, fds, n_fds);
        if (r < 0) {
                log_warning_errno(r, "Cannot encode a message for client '%s': %m", c->id.label);
                conn_break(&c->conn, r);
                return;
        }
        r = conn_queue(&c->conn, out);
        if (r == -ENOBUFS)
                log_peer_warning("Client '%s' (pid %d) does not read its messages, dropping it",
                                 c->id.label, (int) c->id.pid);
}

static void client_reply(Client *c, uint64_t serial, int status, const char *error,
                         Shmem__Reply *reply, int *fds, size_t n_fds) {
        Shmem__Reply empty = SHMEM__REPLY__INIT;
        Message m = SHMEM__MESSAGE__INIT;

        if (!reply)
                reply = &empty;
        reply->status = (Shmem__Status) status;
        reply->error = (char *) (error ? error : "");
        m.serial = serial;
        m.body_case = SHMEM__MESSAGE__BODY_REPLY;
        m.reply = reply;
        client_send(c, &m, fds, n_fds);
}

static void client_free(Client *c) {
        Server *s = c->server;

        if (c->peer)
                registry_detach(s->registry, c->peer);
        persist_remove(s->registry->persist, "c/%llu", (unsigned long long) c->conn_id);
        persist_dirty(s->registry->persist);
        conn_deinit(&c->conn);
        if (c->prev)
                c->prev->next = c->next;
        else
                s->clients = c->next;
        if (c->next)
                c->next->prev = c->prev;
        s->n_clients--;
        free(c);
}

static void client_on_drop(Conn *conn, int error, void *userdata) {
        Client *c = userdata;

        if (error && error != -ECONNRESET && error != -EPIPE)
                log_debug("Dropping client '%s' (pid %d): %s", c->id.label, (int) c->id.pid,
                          strerror(-error));
        client_free(c);
}

/* --- replies with region information --- */

typedef struct InfoBuf {
        Shmem__RegionInfo info;
        Shmem__PeerState states[SHMEM_PEERS_MAX];
        Shmem__PeerState *state_ptrs[SHMEM_PEERS_MAX];
        char socket[256];
} InfoBuf;

static void region_info_fill(InfoBuf *b, Region *r, bool with_peers) {
        Shmem__RegionInfo *info = &b->info;
        Registry *reg = r->registry;

        shmem__region_info__init(info);
        info->name = r->name;
        info->data_size = r->data_size;
        info->region_size = r->region_size;
        info->backend = r->backend;
        info->max_peers = r->max_peers;
        info->vectors = r->vectors;
        info->epoch = r->epoch;
        info->active = r->active;
        info->persistent = r->persistent;
        info->allocated = r->memfd >= 0;
        info->signal_mode = r->signal_mode;
        info->owner = r->owner;
        info->group = r->group;
        info->mode = r->mode;
        snprintf(b->socket, sizeof(b->socket), "%s/qemu/%s.sock", reg->rundir, r->name);
        info->qemu_socket = reg->n_plugins > 0 ? b->socket : "";
        if (!with_peers)
                return;
        for (unsigned i = 0; i < r->max_peers; i++) {
                Peer *p = r->peers[i];
                Shmem__PeerState *st = &b->states[info->n_peers];

                if (!p)
                        continue;
                shmem__peer_state__init(st);
                st->index = p->index;
                st->kind = (Shmem__PeerKind) p->id.kind;
                st->label = p->id.label;
                st->pid = (uint32_t) p->id.pid;
                st->uid = (uint32_t) p->id.uid;
                st->doorbell_id = p->doorbell_id;
                st->vm_uuid = p->id.vm_uuid;
                st->libvirt = p->id.libvirt;
                st->departures_told = p->departures_told;
                /* Shown as found: the page is peer-writable and never trusted. */
                if (r->page)
                        st->pending = __atomic_load_n(&r->page->slots[i].pending, __ATOMIC_ACQUIRE);
                b->state_ptrs[info->n_peers++] = st;
        }
        info->peers = b->state_ptrs;
}

static void client_handle_list(Client *c, uint64_t serial) {
        Registry *reg = c->server->registry;
        Shmem__ListReply list = SHMEM__LIST_REPLY__INIT;
        Shmem__Reply reply = SHMEM__REPLY__INIT;
        _cleanup_free_ InfoBuf *bufs = NULL;
        _cleanup_free_ Shmem__RegionInfo **ptrs = NULL;

        bufs = calloc(reg->n_regions + 1, sizeof(InfoBuf));
        ptrs = calloc(reg->n_regions + 1, sizeof(*ptrs));
        if (!bufs || !ptrs) {
                client_reply(c, serial, SHMEM__STATUS__NOMEM, "out of memory", NULL, NULL, 0);
                return;
        }
        for (unsigned i = 0; i < reg->n_regions; i++) {
                region_info_fill(&bufs[i], reg->regions[i], false);
                ptrs[i] = &bufs[i].info;
        }
        list.n_regions = reg->n_regions;
        list.regions = ptrs;
        reply.body_case = SHMEM__REPLY__BODY_LIST;
        reply.list = &list;
        client_reply(c, serial, 0, NULL, &reply, NULL, 0);
}

static void client_handle_inspect(Client *c, uint64_t serial, const char *name) {
        Region *r = registry_find(c->server->registry, name);
        Shmem__InspectReply inspect = SHMEM__INSPECT_REPLY__INIT;
        Shmem__Reply reply = SHMEM__REPLY__INIT;
        _cleanup_free_ InfoBuf *b = NULL;

        if (!r) {
                client_reply(c, serial, SHMEM__STATUS__DOES_NOT_EXIST, "no region of that name", NULL,
                             NULL, 0);
                return;
        }
        b = calloc(1, sizeof(*b));
        if (!b) {
                client_reply(c, serial, SHMEM__STATUS__NOMEM, "out of memory", NULL, NULL, 0);
                return;
        }
        region_info_fill(b, r, true);
        inspect.region = &b->info;
        reply.body_case = SHMEM__REPLY__BODY_INSPECT;
        reply.inspect = &inspect;
        client_reply(c, serial, 0, NULL, &reply, NULL, 0);
}

/* --- attach --- */

static void peer_info_fill(Shmem__PeerInfo *pi, Peer *p, int fd_index) {
        shmem__peer_info__init(pi);
        pi->index = p->index;
        pi->kind = (Shmem__PeerKind) p->id.kind;
        pi->label = p->id.label;
        pi->pid = (uint32_t) p->id.pid;
        pi->fd = fd_index;
        pi->doorbell_id = p->doorbell_id;
}

static int dup_cloexec(int fd) {
        return fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

static void client_send_attach_reply(Client *c, uint64_t serial, bool created) {
        Peer *me = c->peer;
        Region *r = me->region;
        Shmem__AttachReply ar = SHMEM__ATTACH_REPLY__INIT;
        Shmem__Reply reply = SHMEM__REPLY__INIT;
        Shmem__PeerInfo infos[SHMEM_PEERS_MAX], *ptrs[SHMEM_PEERS_MAX];
        int fds[1 + (SHMEM_PEERS_MAX + 1) + SHMEM_PEERS_MAX];
        const int *to;
        size_t n = 0;

        /* fd layout (shmem.proto AttachReply): memfd, own row, one per other peer. */
        fds[n++] = dup_cloexec(r->memfd);
        for (unsigned v = 0; v < r->vectors; v++)
                fds[n++] = dup_cloexec(me->ev[v]);
        for (unsigned i = 0; i < r->max_peers; i++) {
                Peer *o = r->peers[i];

                if (!o || o == me)
                        continue;
                peer_info_fill(&infos[ar.n_peers], o, (int) n);
                ptrs[ar.n_peers] = &infos[ar.n_peers];
                ar.n_peers++;
                (void) region_fds_to(r, o, me, &to); /* one fd: native peers are never compat */
                fds[n++] = dup_cloexec(to[0]);
        }
        for (size_t i = 0; i < n; i++)
                if (fds[i] < 0) {
                        int e = -errno;

                        fds_close(fds, n);
                        log_error_errno(e, "Cannot duplicate fds for client '%s': %m", c->id.label);
                        conn_break(&c->conn, e);
                        return;
                }
        ar.index = me->index;
        ar.data_offset = r->data_offset;
        ar.data_size = r->data_size;
        ar.region_size = r->region_size;
        ar.max_peers = r->max_peers;
        ar.vectors = r->vectors;
        ar.created = created;
        ar.peers = ptrs;
        reply.body_case = SHMEM__REPLY__BODY_ATTACH;
        reply.attach = &ar;
        client_reply(c, serial, 0, NULL, &reply, fds, n);
}

static void client_handle_attach(Client *c, uint64_t serial, const Shmem__Attach *a) {
        char name[SHMEM_NAME_MAX + 1];
        const char *error = NULL;
        bool created = false;
        int r;

        if (c->peer) {
                client_reply(c, serial, SHMEM__STATUS__BAD_REQUEST,
                             "this connection is attached already (one attachment per connection)",
                             NULL, NULL, 0);
                return;
        }
        {
                Region *existing = registry_find(c->server->registry, a->name);

                if (existing && existing->signal_mode == SHMEM_SIGNAL_MODE_IVSHMEM) {
                        client_reply(c, serial, SHMEM__STATUS__BAD_REQUEST,
                                     "a compat region (signal-mode = ivshmem) is for QEMU guests only", NULL,
                                     NULL, 0);
                        return;
                }
        }
        if ((unsigned) a->mode > SHMEM__ATTACH_MODE__EXCLUSIVE) {
                client_reply(c, serial, SHMEM__STATUS__BAD_REQUEST, "unknown attach mode", NULL, NULL, 0);
                return;
        }
        /* Client names are the client's own choice: these rules sort
         * cooperating programs; owner/group/mode is what authenticates. */
        if (!registry_rules_allow(c->server->registry, &c->id, a->name, &error)) {
                log_info("Refusing client '%s' (pid %d) region '%s': %s", c->id.label, (int) c->id.pid, a->name,
                         error);
                client_reply(c, serial, SHMEM__STATUS__NO_PERMISSION, error, NULL, NULL, 0);
                return;
        }
        if (!registry_subst_name(c->server->registry, &c->id, a->name, name)) {
                client_reply(c, serial, SHMEM__STATUS__ILLEGAL_NAME, "the name with this client's subst prefix is "
                             "longer than 63 characters", NULL, NULL, 0);
                return;
        }
        r = registry_attach(c->server->registry, name, (AttachMode) a->mode, a->size, &c->id,
                            &client_peer_ops, c, &c->peer, &created, &error);
        if (r < 0) {
                log_error_errno(r, "Cannot attach client '%s' to '%s': %m", c->id.label, a->name);
                client_reply(c, serial, SHMEM__STATUS__UNKNOWN_FAILURE, strerror(-r), NULL, NULL, 0);
                return;
        }
        if (r > 0) {
                client_reply(c, serial, r, error, NULL, NULL, 0);
                return;
        }
        c->peer->conn_id = c->conn_id;
        log_debug("Client '%s' (pid %d) attached to '%s' as peer %u%s", c->id.label,
                  (int) c->id.pid, a->name, c->peer->index, created ? ", creating it" : "");
        client_send_attach_reply(c, serial, created);
}

static void client_handle_detach(Client *c, uint64_t serial, const Shmem__Detach *d) {
        if (!c->peer || strcmp(c->peer->region->name, d->name) != 0) {
                client_reply(c, serial, SHMEM__STATUS__BAD_REQUEST, "not attached to that region",
                             NULL, NULL, 0);
                return;
        }
        registry_detach(c->server->registry, TAKE_PTR(c->peer));
        client_reply(c, serial, 0, NULL, NULL, NULL, 0);
}

static void client_handle_create(Client *c, uint64_t serial, const Shmem__Create *cr) {
        const char *error = NULL;
        int r;

        r = registry_declare(c->server->registry,
                             &(RegionDecl) { .name = cr->name, .size = cr->size, .max_peers = cr->max_peers,
                                             .persistent = cr->persistent },
                             NULL, &error);
        if (r < 0) {
                log_error_errno(r, "Cannot create region '%s': %m", cr->name);
                client_reply(c, serial, SHMEM__STATUS__UNKNOWN_FAILURE, strerror(-r), NULL, NULL, 0);
                return;
        }
        if (r == 0)
                log_info("Region '%s' created by '%s' (pid %d)", cr->name, c->id.label, (int) c->id.pid);
        client_reply(c, serial, r, error, NULL, NULL, 0);
}

static void client_handle_destroy(Client *c, uint64_t serial, const Shmem__Destroy *d) {
        const char *error = NULL;
        int r;

        r = registry_destroy(c->server->registry, d->name, d->force, &error);
        if (r == 0)
                log_info("Region '%s' destroyed by '%s' (pid %d)", d->name, c->id.label, (int) c->id.pid);
        client_reply(c, serial, r, error, NULL, NULL, 0);
}

static void client_handle_hello(Client *c, uint64_t serial, const Shmem__Hello *h) {
        Shmem__HelloReply hr = SHMEM__HELLO_REPLY__INIT;
        Shmem__Reply reply = SHMEM__REPLY__INIT;

        hr.version = SHMEM_PROTOCOL_VERSION;
        hr.broker = "shmem-brokerd " SHMEM_VERSION;
        hr.instance = c->server->instance;
        reply.body_case = SHMEM__REPLY__BODY_HELLO;
        reply.hello = &hr;
        if (h->version != SHMEM_PROTOCOL_VERSION) {
                client_reply(c, serial, SHMEM__STATUS__VERSION, "this broker speaks protocol version 1",
                             &reply, NULL, 0);
                conn_close_after_flush(&c->conn);
                return;
        }
        if (h->label && h->label[0])
                snprintf(c->id.label, sizeof(c->id.label), "%s", h->label);
        c->greeted = true;
        persist_dirty(c->server->registry->persist);
        client_reply(c, serial, 0, NULL, &reply, NULL, 0);
}

/*
 * Requests that change what exists for everybody (Create, Destroy, Reload)
 * are for root and the broker's own user; attaching and looking are for
 * everyone. Per-region owner/group/mode rules come with the configuration's
 * access control (docs/security.md).
 */
static bool client_may_administer(Client *c, uint64_t serial) {
        if (c->id.uid == 0 || c->id.uid == geteuid())
                return true;
        client_reply(c, serial, SHMEM__STATUS__NO_PERMISSION,
                     "creating, destroying, reloading and upgrading are for root and the broker's user", NULL, NULL, 0);
        return false;
}

static void client_handle_reload(Client *c, uint64_t serial) {
        const char *error = NULL;
        int r;

        if (!c->server->hooks.reload) {
                client_reply(c, serial, SHMEM__STATUS__BAD_REQUEST, "this broker has no configuration to reload",
                             NULL, NULL, 0);
                return;
        }
        log_info("Reload requested by '%s' (pid %d)", c->id.label, (int) c->id.pid);
        r = c->server->hooks.reload(c->server->hooks.userdata, &error);
        client_reply(c, serial, r < 0 ? SHMEM__STATUS__BAD_REQUEST : 0, error, NULL, NULL, 0);
}

static void client_handle_upgrade(Client *c, uint64_t serial) {
        int r = c->server->hooks.upgrade ? c->server->hooks.upgrade(c->server->hooks.userdata) : -EOPNOTSUPP;

        if (r >= 0)
                log_info("Upgrade requested by '%s' (pid %d)", c->id.label, (int) c->id.pid);
        client_reply(c, serial, r < 0 ? SHMEM__STATUS__UNKNOWN_FAILURE : 0, r < 0 ? strerror(-r) : NULL,
                     NULL, NULL, 0);
}

/* Returns false if the message is not acceptable: the client is dropped. */
static bool client_dispatch(Client *c, const Message *m) {
        if (!c->greeted && m->body_case != SHMEM__MESSAGE__BODY_HELLO)
                return false;
        if (m->serial == 0)
                return false;

        switch (m->body_case) {
        case SHMEM__MESSAGE__BODY_HELLO:
                if (c->greeted)
                        return false;
                client_handle_hello(c, m->serial, m->hello);
                return true;
        case SHMEM__MESSAGE__BODY_ATTACH:
                client_handle_attach(c, m->serial, m->attach);
                return true;
        case SHMEM__MESSAGE__BODY_DETACH:
                client_handle_detach(c, m->serial, m->detach);
                return true;
        case SHMEM__MESSAGE__BODY_LIST:
                client_handle_list(c, m->serial);
                return true;
        case SHMEM__MESSAGE__BODY_INSPECT:
                client_handle_inspect(c, m->serial, m->inspect->name);
                return true;
        case SHMEM__MESSAGE__BODY_CREATE:
                if (client_may_administer(c, m->serial))
                        client_handle_create(c, m->serial, m->create);
                return true;
        case SHMEM__MESSAGE__BODY_DESTROY:
                if (client_may_administer(c, m->serial))
                        client_handle_destroy(c, m->serial, m->destroy);
                return true;
        case SHMEM__MESSAGE__BODY_RELOAD:
                if (client_may_administer(c, m->serial))
                        client_handle_reload(c, m->serial);
                return true;
        case SHMEM__MESSAGE__BODY_UPGRADE:
                if (client_may_administer(c, m->serial))
                        client_handle_upgrade(c, m->serial);
                return true;
        case SHMEM__MESSAGE__BODY_WATCH:
                c->watching = true;
                persist_dirty(c->server->registry->persist);
                client_reply(c, m->serial, 0, NULL, NULL, NULL, 0);
                return true;
        default:
                /* Replies and events are the broker's to send; unknown bodies
                 * come from a newer or broken client. */
                return false;
        }
}

static void client_on_read(Conn *conn, void *userdata) {
        Client *c = userdata;

        for (unsigned n = 0; n < CLIENT_READS_PER_WAKEUP && !conn->error; n++) {
                _cleanup_(fdmsg_freep) FdMsg *in = NULL;
                _cleanup_(msg_freep) Message *m = NULL;
                int r;

                /* Clients send no fds: any fd at all is a protocol violation. */
                r = fdmsg_recv(conn->fd, SHMEM_MSG_MAX, 0, &in);
                if (r == -EAGAIN)
                        return;
                if (r == FDMSG_E_EOF) {
                        conn_break(conn, -ECONNRESET);
                        return;
                }
                if (r != 0) {
                        log_peer_warning("Dropping client '%s' (pid %d): %s", c->id.label, (int) c->id.pid,
                                         r == FDMSG_E_TRUNCATED      ? "message or fds truncated"
                                         : r == FDMSG_E_TOO_MANY_FDS ? "it sent file descriptors"
                                         : r == FDMSG_E_BAD_CMSG     ? "unexpected control message"
                                                                     : strerror(-r));
                        conn_break(conn, -EPROTO);
                        return;
                }
                if (msg_decode(&m, in) < 0 || !client_dispatch(c, m)) {
                        log_peer_warning("Dropping client '%s' (pid %d): malformed or unexpected message",
                                         c->id.label, (int) c->id.pid);
                        conn_break(conn, -EPROTO);
                        return;
                }
        }
}

/* --- events to attached peers and watchers --- */

static void client_peer_joined(Peer *self, Peer *other) {
        Client *c = self->userdata;
        Shmem__Joined j = SHMEM__JOINED__INIT;
        Shmem__PeerInfo pi;
        Message m = SHMEM__MESSAGE__INIT;
        const int *to;
        int dup_fd;

        (void) region_fds_to(self->region, other, self, &to); /* one fd: native peers are never compat */
        dup_fd = dup_cloexec(to[0]);
        if (dup_fd < 0) {
                conn_break(&c->conn, -errno);
                return;
        }
        peer_info_fill(&pi, other, 0);
        j.name = self->region->name;
        j.epoch = self->region->epoch;
        j.peer = &pi;
        m.body_case = SHMEM__MESSAGE__BODY_JOINED;
        m.joined = &j;
        client_send(c, &m, &dup_fd, 1);
}

static void client_peer_left(Peer *self, Peer *other) {
        Client *c = self->userdata;
        Shmem__Left l = SHMEM__LEFT__INIT;
        Message m = SHMEM__MESSAGE__INIT;

        l.name = self->region->name;
        l.epoch = self->region->epoch;
        l.index = other->index;
        m.body_case = SHMEM__MESSAGE__BODY_LEFT;
        m.left = &l;
        client_send(c, &m, NULL, 0);
}

static void client_peer_evicted(Peer *self) {
        Client *c = self->userdata;

        c->peer = NULL;
        conn_break(&c->conn, -ECONNRESET);
}

static const PeerOps client_peer_ops = {
        .joined = client_peer_joined,
        .left = client_peer_left,
        .evicted = client_peer_evicted,
};

static void server_broadcast(Server *s, const Message *m) {
        for (Client *c = s->clients; c; c = c->next)
                if (c->watching)
                        client_send(c, m, NULL, 0);
}

static void server_observe_state(void *userdata, Region *r, Shmem__RegionState state) {
        Shmem__StatusChanged sc = SHMEM__STATUS_CHANGED__INIT;
        Message m = SHMEM__MESSAGE__INIT;

        sc.name = r->name;
        sc.state = state;
        m.body_case = SHMEM__MESSAGE__BODY_STATUS;
        m.status = &sc;
        server_broadcast(userdata, &m);
}

static void server_observe_joined(void *userdata, Region *r, Peer *p) {
        Shmem__Joined j = SHMEM__JOINED__INIT;
        Shmem__PeerInfo pi;
        Message m = SHMEM__MESSAGE__INIT;

        peer_info_fill(&pi, p, -1);
        j.name = r->name;
        j.epoch = r->epoch;
        j.peer = &pi;
        m.body_case = SHMEM__MESSAGE__BODY_JOINED;
        m.joined = &j;
        server_broadcast(userdata, &m);
}

static void server_observe_left(void *userdata, Region *r, unsigned index) {
        Shmem__Left l = SHMEM__LEFT__INIT;
        Message m = SHMEM__MESSAGE__INIT;

        l.name = r->name;
        l.epoch = r->epoch;
        l.index = index;
        m.body_case = SHMEM__MESSAGE__BODY_LEFT;
        m.left = &l;
        server_broadcast(userdata, &m);
}

/* --- accepting --- */

/* A Client on @fd (consumed, also on failure) with @id; NULL on failure. */
static Client *client_new(Server *s, int fd, uint64_t id, const PeerIdentity *ident) {
        Client *c = calloc(1, sizeof(*c));

        if (!c) {
                fd_close(fd);
                return NULL;
        }
        c->server = s;
        c->conn_id = id;
        c->id = *ident;
        if (conn_init(&c->conn, s->registry->base, fd, s->registry->limits.max_queued_bytes, client_on_read,
                      client_on_drop, c) < 0) {
                free(c);
                return NULL;
        }
        c->next = s->clients;
        if (s->clients)
                s->clients->prev = c;
        s->clients = c;
        s->n_clients++;
        return c;
}

static void server_on_accept(evutil_socket_t fd, short what, void *userdata) {
        Server *s = userdata;
        PeerIdentity ident = { .kind = SHMEM_PEER_KIND_HOST };
        struct ucred cred;
        socklen_t len = sizeof(cred);
        _cleanup_close_ int cfd = -1;
        Client *c;

        cfd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
                if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                        log_peer_warning("accept() on the control socket failed: %s", strerror(errno));
                return;
        }
        if (s->n_clients >= s->registry->limits.max_connections) {
                log_peer_warning("Refusing a control connection: %u connections is the limit",
                                 s->n_clients);
                return;
        }
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return;
        ident.pid = cred.pid;
        ident.uid = cred.uid;
        ident.gid = cred.gid;
        /* Supplementary groups, for the regions' group access; a peer in more
         * than fit is judged by the ones that do (ERANGE leaves none: then by
         * its primary group alone). */
        len = sizeof(ident.groups);
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERGROUPS, ident.groups, &len) == 0)
                ident.n_groups = len / sizeof(gid_t);
        snprintf(ident.label, sizeof(ident.label), "pid-%d", (int) cred.pid);
        c = client_new(s, TAKE_FD(cfd), registry_new_conn_id(s->registry), &ident);
        if (!c)
                return;
        persist_store(s->registry->persist, c->conn.fd, "c/%llu", (unsigned long long) c->conn_id);
        persist_dirty(s->registry->persist);
}

int server_dump(Server *s, State *st) {
        for (Client *c = s->clients; c; c = c->next) {
                Shmem__State__Conn *sc;

                if (c->conn.error || c->conn.close_when_flushed)
                        continue; /* on its way out */
                sc = persist_state_add_conn(st);
                if (!sc)
                        return -ENOMEM;
                sc->id = c->conn_id;
                sc->frontend = SHMEM__STATE__FRONTEND__NATIVE;
                sc->greeted = c->greeted;
                sc->watching = c->watching;
                sc->label = c->id.label;
                sc->pid = (uint32_t) c->id.pid;
                sc->uid = c->id.uid;
                sc->gid = c->id.gid;
        }
        return 0;
}

void server_restore(Server *s, const State *st) {
        for (size_t i = 0; i < st->n_conns; i++) {
                const Shmem__State__Conn *sc = st->conns[i];
                PeerIdentity ident = { .kind = SHMEM_PEER_KIND_HOST, .pid = (pid_t) sc->pid, .uid = sc->uid,
                                       .gid = sc->gid };
                int fd;
                Client *c;

                if (sc->frontend != SHMEM__STATE__FRONTEND__NATIVE)
                        continue;
                fd = persist_take(s->registry->persist, "c/%llu", (unsigned long long) sc->id);
                if (fd < 0)
                        continue; /* its peer, if any, is detached by registry_restore_finish() */
                snprintf(ident.label, sizeof(ident.label), "%s", sc->label);
                c = client_new(s, fd, sc->id, &ident);
                if (!c)
                        continue;
                persist_store(s->registry->persist, c->conn.fd, "c/%llu", (unsigned long long) c->conn_id);
                c->greeted = sc->greeted;
                c->watching = sc->watching;
                c->peer = registry_find_peer_by_conn(s->registry, sc->id);
                if (c->peer) {
                        c->peer->ops = &client_peer_ops;
                        c->peer->userdata = c;
                }
        }
}

int server_listen(const char *path, int *ret_fd) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                _cleanup_close_ int probe = -1;

                if (errno != EADDRINUSE)
                        return -errno;
                /* A live broker answers; a stale socket of a dead one refuses. */
                probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
                if (probe >= 0 && connect(probe, (struct sockaddr *) &sa, sizeof(sa)) == 0)
                        return -EADDRINUSE;
                if (unlink(path) < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                        return -errno;
        }
        /* Who may do what is decided per request, not by the socket (docs/security.md). */
        if (chmod(path, 0666) < 0)
                return -errno;
        if (listen(fd, 128) < 0)
                return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int server_new(Server **ret, Registry *reg, int listen_fd, const ServerHooks *hooks) {
        Server *s = calloc(1, sizeof(*s));

        if (!s) {
                fd_close(listen_fd);
                return -ENOMEM;
        }
        s->registry = reg;
        /* Only has to differ from the image before (shmemctl upgrade waits for that). */
        if (getrandom(&s->instance, sizeof(s->instance), GRND_NONBLOCK) != sizeof(s->instance))
                s->instance = (uint64_t) time(NULL) << 20 ^ (uint64_t) getpid();
        if (s->instance == 0)
                s->instance = 1; /* 0: a broker that does not say */
        if (hooks)
                s->hooks = *hooks;
        s->listen_fd = listen_fd;
        persist_store(reg->persist, listen_fd, "ctl");
        s->ev_accept = event_new(reg->base, listen_fd, EV_READ | EV_PERSIST, server_on_accept, s);
        if (!s->ev_accept || event_add(s->ev_accept, NULL) < 0) {
                server_free(s);
                return -ENOMEM;
        }
        reg->observer = (RegistryObserver) {
                .state = server_observe_state,
                .joined = server_observe_joined,
                .left = server_observe_left,
                .userdata = s,
        };
        *ret = s;
        return 0;
}

Server *server_free(Server *s) {
        if (!s)
                return NULL;
        while (s->clients)
                client_free(s->clients);
        if (s->registry->observer.userdata == s)
                s->registry->observer = (RegistryObserver) {};
        if (s->ev_accept)
                event_free(s->ev_accept);
        persist_remove(s->registry->persist, "ctl");
        fd_close(s->listen_fd);
        free(s);
        return NULL;
}

unsigned server_n_clients(Server *s) {
        return s->n_clients;
}
