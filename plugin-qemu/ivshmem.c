/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "conn.h"
#include "ivshmem-wire.h"
#include "ivshmem.h"
#include "log.h"
#include "msg.h"
#include "registry.h"

typedef struct QemuPlugin QemuPlugin;
typedef struct QemuClient QemuClient;

/* One listening socket: the endpoint of one region. */
typedef struct QemuEndpoint {
        QemuPlugin *plugin;
        Region *region;
        int fd;
        struct event *ev;
        char path[108];
} QemuEndpoint;

struct QemuClient {
        QemuPlugin *plugin;
        QemuClient *prev, *next;
        uint64_t conn_id; /* its fd is stored as "c/ID" */
        char region[SHMEM_NAME_MAX + 1]; /* whose socket it came in on */
        Conn conn;
        PeerIdentity id;
        Peer *peer;
};

struct QemuPlugin {
        Plugin base;
        QemuPluginConfig config;
        char dir[PATH_MAX];
        QemuClient *clients;
        unsigned n_clients;
};

static const PeerOps qemu_peer_ops;

static QemuPlugin *qemu_plugin(Plugin *p) {
        return (QemuPlugin *) p;
}

/* Queues one protocol message; @fd is borrowed and duplicated. */
static void qemu_client_send(QemuClient *c, int64_t value, int fd) {
        FdMsg *m;
        int dup_fd = -1, r;

        if (fd >= 0) {
                dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                if (dup_fd < 0) {
                        conn_break(&c->conn, -errno);
                        return;
                }
        }
        r = ivshmem_msg_new(&m, value, dup_fd);
        if (r < 0) {
                conn_break(&c->conn, r);
                return;
        }
        r = conn_queue(&c->conn, m);
        if (r == -ENOBUFS)
                log_peer_warning("QEMU '%s' (pid %d) does not read its socket, dropping it", c->id.label,
                                 (int) c->id.pid);
}

/* Announces @other to the client: its doorbell id once per fd the client holds for it. */
static void qemu_client_send_peer(QemuClient *c, Peer *other) {
        const int *fds;
        unsigned n = region_fds_to(other->region, other, c->peer, &fds);

        for (unsigned i = 0; i < n; i++)
                qemu_client_send(c, other->doorbell_id, fds[i]);
}

/*
 * The handshake, in contrib/ivshmem-server's order, which QEMU depends on:
 * its own-vector fds arriving before the shm message would touch vectors it
 * has not allocated yet (research/ivshmem-ecosystem.md §1).
 */
static void qemu_client_handshake(QemuClient *c) {
        Peer *me = c->peer;
        Region *r = me->region;

        qemu_client_send(c, IVSHMEM_PROTOCOL_VERSION, -1);
        qemu_client_send(c, me->doorbell_id, -1);
        qemu_client_send(c, -1, r->memfd);
        /* Shmem mode: one fd per other peer, as that peer's vector 0: ringing
         * it makes the other peer see "me signaled" (DESIGN.md §5). Compat
         * mode: all of the other peer's vectors, as contrib's server. */
        for (unsigned i = 0; i < r->max_peers; i++) {
                Peer *o = r->peers[i];

                if (o && o != me)
                        qemu_client_send_peer(c, o);
        }
        for (unsigned v = 0; v < r->vectors; v++)
                qemu_client_send(c, me->doorbell_id, me->ev[v]);
}

static void qemu_client_free(QemuClient *c) {
        QemuPlugin *qp = c->plugin;

        if (c->peer)
                registry_detach(qp->base.registry, c->peer);
        persist_remove(qp->base.registry->persist, "c/%llu", (unsigned long long) c->conn_id);
        persist_dirty(qp->base.registry->persist);
        conn_deinit(&c->conn);
        if (c->prev)
                c->prev->next = c->next;
        else
                qp->clients = c->next;
        if (c->next)
                c->next->prev = c->prev;
        qp->n_clients--;
        free(c);
}

static void qemu_client_on_drop(Conn *conn, int error, void *userdata) {
        QemuClient *c = userdata;

        if (c->peer)
                log_info("QEMU '%s' (pid %d) left '%s' (peer %u)", c->id.label, (int) c->id.pid,
                         c->peer->region->name, c->peer->index);
        qemu_client_free(c);
}

static void qemu_client_on_read(Conn *conn, void *userdata) {
        QemuClient *c = userdata;
        _cleanup_(fdmsg_freep) FdMsg *in = NULL;
        int r;

        /* The protocol is server -> client only: QEMU closing is all we expect. */
        r = fdmsg_recv(conn->fd, 64, 0, &in);
        if (r == -EAGAIN)
                return;
        if (r != FDMSG_E_EOF && r != -ECONNRESET)
                log_peer_warning("QEMU '%s' (pid %d) sent data on its ivshmem socket, dropping it",
                                 c->id.label, (int) c->id.pid);
        conn_break(conn, -ECONNRESET);
}

static void qemu_peer_joined(Peer *self, Peer *other) {
        qemu_client_send_peer(self->userdata, other);
}

static void qemu_peer_left(Peer *self, Peer *other) {
        qemu_client_send(self->userdata, other->doorbell_id, -1);
        self->departures_told++;
}

static void qemu_peer_evicted(Peer *self) {
        QemuClient *c = self->userdata;

        /* QEMU ignores a closed server socket once set up (it has no event
         * handler on the chardev); the guest keeps its mapping. */
        c->peer = NULL;
        conn_break(&c->conn, -ECONNRESET);
}

static const PeerOps qemu_peer_ops = {
        .joined = qemu_peer_joined,
        .left = qemu_peer_left,
        .evicted = qemu_peer_evicted,
};

/*
 * Whether libvirt runs the QEMU of @id as the domain @id->label: libvirt
 * writes <libvirt_run_dir>/<domain>.pid before it executes QEMU, so QEMU's
 * connection finds it. A file read, not a libvirt API call: libvirtd may be
 * waiting for this very QEMU to start, and the broker's loop never blocks on
 * another daemon (docs/libvirt.md).
 */
static bool qemu_libvirt_confirms(const char *run_dir, const PeerIdentity *id) {
        char path[sizeof(((QemuPluginConfig *) NULL)->libvirt_run_dir) + SHMEM_LABEL_MAX + 8], buf[32];
        ssize_t n;
        int fd;

        if (!run_dir[0] || strchr(id->label, '/') || id->label[0] == '.')
                return false;
        snprintf(path, sizeof(path), "%s/%s.pid", run_dir, id->label);
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
                return false;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return false;
        buf[n] = 0;
        return strtol(buf, NULL, 10) == (long) id->pid;
}

/*
 * The VM's identity from its command line: the name of "-name guest=X,..." or
 * "-name X" as the label (else "qemu-PID"), and "-uuid U", which libvirt
 * always passes and which names the domain for good (docs/protocol.md).
 */
static void qemu_identity_from_pid(PeerIdentity *id, const char *libvirt_run_dir) {
        char path[64], buf[16384];
        ssize_t n;
        int fd;

        snprintf(id->label, sizeof(id->label), "qemu-%d", (int) id->pid);
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int) id->pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return;
        buf[n] = 0;
        for (char *p = buf; p < buf + n; p += strlen(p) + 1) {
                char *v = p + strlen(p) + 1;

                if (v >= buf + n)
                        break;
                if (strcmp(p, "-name") == 0) {
                        if (strncmp(v, "guest=", 6) == 0)
                                v += 6;
                        snprintf(id->label, sizeof(id->label), "%.*s", (int) strcspn(v, ","), v);
                } else if (strcmp(p, "-uuid") == 0 && strlen(v) == 36 &&
                           strspn(v, "0123456789abcdefABCDEF-") == 36)
                        memcpy(id->vm_uuid, v, 37);
        }
        id->libvirt = qemu_libvirt_confirms(libvirt_run_dir, id);
}

/* A QemuClient on @fd (consumed, also on failure); NULL on failure. */
static QemuClient *qemu_client_new(QemuPlugin *qp, int fd, uint64_t conn_id, const char *region,
                                   const PeerIdentity *ident) {
        QemuClient *c = calloc(1, sizeof(*c));

        if (!c) {
                fd_close(fd);
                return NULL;
        }
        c->plugin = qp;
        c->conn_id = conn_id;
        c->id = *ident;
        snprintf(c->region, sizeof(c->region), "%s", region);
        if (conn_init(&c->conn, qp->base.base, fd, qp->base.registry->limits.max_queued_bytes,
                      qemu_client_on_read, qemu_client_on_drop, c) < 0) {
                free(c);
                return NULL;
        }
        c->next = qp->clients;
        if (qp->clients)
                qp->clients->prev = c;
        qp->clients = c;
        qp->n_clients++;
        return c;
}

static void qemu_endpoint_on_accept(evutil_socket_t fd, short what, void *userdata) {
        QemuEndpoint *ep = userdata;
        QemuPlugin *qp = ep->plugin;
        struct ucred cred;
        socklen_t len = sizeof(cred);
        _cleanup_close_ int cfd = -1;
        char name[SHMEM_NAME_MAX + 1];
        const char *error = NULL;
        PeerIdentity ident = {};
        QemuClient *c;
        int r;

        cfd = accept4(ep->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
                return;
        if (qp->n_clients >= qp->base.registry->limits.max_connections) {
                log_peer_warning("Refusing a QEMU connection to '%s': %u connections is the limit",
                                 ep->region->name, qp->n_clients);
                /* Closing before the version would hang QEMU: refuse properly. */
                (void) send(cfd, &(int64_t) { IVSHMEM_REFUSE_VERSION_BASE + SHMEM__STATUS__LIMIT },
                            IVSHMEM_MSG_SIZE, MSG_NOSIGNAL | MSG_DONTWAIT);
                return;
        }
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return;
        ident.kind = SHMEM_PEER_KIND_QEMU;
        ident.pid = cred.pid;
        ident.uid = cred.uid;
        ident.gid = cred.gid;
        qemu_identity_from_pid(&ident, qp->config.libvirt_run_dir);
        c = qemu_client_new(qp, TAKE_FD(cfd), registry_new_conn_id(qp->base.registry), ep->region->name, &ident);
        if (!c)
                return;
        persist_store(qp->base.registry->persist, c->conn.fd, "c/%llu", (unsigned long long) c->conn_id);

        /* With a subst prefix for this VM, the socket of "foo" attaches it to PREFIXfoo. */
        if (!registry_rules_allow(qp->base.registry, &c->id, ep->region->name, &error))
                r = SHMEM__STATUS__NO_PERMISSION;
        else if (!registry_subst_name(qp->base.registry, &c->id, ep->region->name, name))
                r = SHMEM__STATUS__ILLEGAL_NAME;
        else
                r = registry_attach(qp->base.registry, name, ATTACH_FIND, 0, &c->id, &qemu_peer_ops, c,
                                    &c->peer, NULL, &error);
        if (r != 0) {
                int status = r > 0 ? r : SHMEM__STATUS__UNKNOWN_FAILURE;

                log_warning("Refusing QEMU '%s' (pid %d) on '%s': %s%s%s (sent version %d)", c->id.label,
                            (int) c->id.pid, ep->region->name, status_text(status), error ? ": " : "",
                            error ? error : "", IVSHMEM_REFUSE_VERSION_BASE + status);
                qemu_client_send(c, IVSHMEM_REFUSE_VERSION_BASE + status, -1);
                conn_close_after_flush(&c->conn);
                return;
        }
        c->peer->conn_id = c->conn_id;
        persist_dirty(qp->base.registry->persist);
        log_info("QEMU '%s' (pid %d) attached to '%s' as peer %u", c->id.label, (int) c->id.pid,
                 ep->region->name, c->peer->index);
        qemu_client_handshake(c);
}

static int qemu_plugin_region_added(Plugin *p, Region *r) {
        QemuPlugin *qp = qemu_plugin(p);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        QemuEndpoint *ep;
        int n;

        ep = calloc(1, sizeof(*ep));
        if (!ep)
                return -ENOMEM;
        ep->plugin = qp;
        ep->region = r;
        ep->fd = -1;
        n = snprintf(ep->path, sizeof(ep->path), "%s/%s.sock", qp->dir, r->name);
        if (n < 0 || (size_t) n >= sizeof(sa.sun_path)) {
                free(ep);
                return -ENAMETOOLONG;
        }
        strcpy(sa.sun_path, ep->path);
        /* After a restart, the very socket QEMUs know: they never reconnect. */
        fd = persist_take(p->registry->persist, "q/%s", r->name);
        if (fd < 0) {
                fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        goto fail;
                /* The name is ours: the registry just declared it, so a file there is stale. */
                (void) unlink(ep->path);
                if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 64) < 0)
                        goto fail;
                if (chmod(ep->path, qp->config.socket_mode) < 0)
                        goto fail;
                if (qp->config.socket_gid != (gid_t) -1 &&
                    chown(ep->path, (uid_t) -1, qp->config.socket_gid) < 0)
                        goto fail;
        }
        persist_store(p->registry->persist, fd, "q/%s", r->name);
        ep->ev = event_new(p->base, fd, EV_READ | EV_PERSIST, qemu_endpoint_on_accept, ep);
        if (!ep->ev || event_add(ep->ev, NULL) < 0)
                goto fail;
        ep->fd = TAKE_FD(fd);
        r->plugin_data[registry_plugin_slot(p->registry, p)] = ep;
        return 0;

fail:
        n = -errno;
        log_error_errno(n, "Cannot listen on '%s': %m", ep->path);
        if (ep->ev)
                event_free(ep->ev);
        (void) unlink(ep->path);
        free(ep);
        return n < 0 ? n : -EIO;
}

static void qemu_plugin_region_removed(Plugin *p, Region *r) {
        unsigned slot = registry_plugin_slot(p->registry, p);
        QemuEndpoint *ep = r->plugin_data[slot];

        if (!ep)
                return;
        persist_remove(p->registry->persist, "q/%s", r->name);
        event_free(ep->ev);
        fd_close(ep->fd);
        (void) unlink(ep->path);
        free(ep);
        r->plugin_data[slot] = NULL;
}

static int qemu_plugin_start(Plugin *p) {
        QemuPlugin *qp = qemu_plugin(p);
        Registry *reg = p->registry;
        int n;

        n = snprintf(qp->dir, sizeof(qp->dir), "%s/qemu", reg->rundir);
        if (n < 0 || (size_t) n >= sizeof(qp->dir))
                return -ENAMETOOLONG;
        /* Explicit mode: the service runs with UMask=0077, and QEMU must traverse it. */
        if ((mkdir(qp->dir, 0755) < 0 && errno != EEXIST) || chmod(qp->dir, 0755) < 0)
                return log_error_errno(-errno, "Cannot create '%s': %m", qp->dir);
        if (qp->config.socket_gid != (gid_t) -1 && chown(qp->dir, (uid_t) -1, qp->config.socket_gid) < 0)
                return log_error_errno(-errno, "Cannot set the group of '%s': %m", qp->dir);
        for (unsigned i = 0; i < reg->n_regions; i++) {
                int r = qemu_plugin_region_added(p, reg->regions[i]);

                if (r < 0)
                        return r;
        }
        return 0;
}

static void qemu_plugin_stop(Plugin *p) {
        QemuPlugin *qp = qemu_plugin(p);
        Registry *reg = p->registry;

        while (qp->clients)
                qemu_client_free(qp->clients);
        for (unsigned i = 0; i < reg->n_regions; i++)
                qemu_plugin_region_removed(p, reg->regions[i]);
}

static int qemu_plugin_dump(Plugin *p, State *st) {
        for (QemuClient *c = qemu_plugin(p)->clients; c; c = c->next) {
                Shmem__State__Conn *sc;

                /* A refused QEMU is only waiting to read its refusal. */
                if (!c->peer || c->conn.error || c->conn.close_when_flushed)
                        continue;
                sc = persist_state_add_conn(st);
                if (!sc)
                        return -ENOMEM;
                sc->id = c->conn_id;
                sc->frontend = SHMEM__STATE__FRONTEND__QEMU;
                sc->region = c->region;
                sc->label = c->id.label;
                sc->pid = (uint32_t) c->id.pid;
                sc->uid = c->id.uid;
                sc->gid = c->id.gid;
        }
        return 0;
}

static void qemu_plugin_restore(Plugin *p, const State *st) {
        QemuPlugin *qp = qemu_plugin(p);

        for (size_t i = 0; i < st->n_conns; i++) {
                const Shmem__State__Conn *sc = st->conns[i];
                Peer *peer = registry_find_peer_by_conn(p->registry, sc->id);
                int fd;
                QemuClient *c;

                if (sc->frontend != SHMEM__STATE__FRONTEND__QEMU)
                        continue;
                fd = persist_take(p->registry->persist, "c/%llu", (unsigned long long) sc->id);
                if (fd < 0 || !peer) {
                        /* Closing a QEMU's socket is harmless once its handshake is done. */
                        fd_close(fd);
                        continue;
                }
                c = qemu_client_new(qp, fd, sc->id, sc->region, &peer->id);
                if (!c)
                        continue;
                persist_store(p->registry->persist, c->conn.fd, "c/%llu", (unsigned long long) c->conn_id);
                c->peer = peer;
                peer->ops = &qemu_peer_ops;
                peer->userdata = c;
        }
}

static void qemu_plugin_free(Plugin *p) {
        free(qemu_plugin(p));
}

static const PluginOps qemu_plugin_ops = {
        .name = "qemu",
        .start = qemu_plugin_start,
        .stop = qemu_plugin_stop,
        .region_added = qemu_plugin_region_added,
        .region_removed = qemu_plugin_region_removed,
        .free = qemu_plugin_free,
        .dump = qemu_plugin_dump,
        .restore = qemu_plugin_restore,
};

int qemu_plugin_new(Plugin **ret, const QemuPluginConfig *config) {
        QemuPlugin *qp = calloc(1, sizeof(*qp));

        if (!qp)
                return -ENOMEM;
        qp->base.ops = &qemu_plugin_ops;
        qp->config = *config;
        *ret = &qp->base;
        return 0;
}
