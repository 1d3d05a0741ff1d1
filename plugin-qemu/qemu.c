/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "domain-xml.h"
#include "escape.h"
#include "ivshmem-wire.h"
#include "list.h"
#include "listen.h"
#include "log.h"
#include "qemu-identity.h"
#include "factory.h"
#include "qemu-wire.h"
#include "qemu.h"

typedef struct QemuPlugin QemuPlugin;
typedef struct QemuClient QemuClient;

/* One listening socket: the endpoint of one region. */
typedef struct QemuEndpoint {
        QemuPlugin *plugin;
        char name[SHMEM_NAME_MAX + 1]; /* the region's */
        FrontListener *listener;
        char path[108];
} QemuEndpoint;

struct QemuClient {
        QemuPlugin *plugin;
        QemuClient *prev, *next;
        char region[SHMEM_NAME_MAX + 1]; /* whose socket it came in on */
        FrontConn *conn;
        PeerIdentity id;
        Peer *peer;
        /* Departures of other peers told to this QEMU: QEMU (7.2 at least)
         * aborts when its device is unplugged after one (docs/libvirt.md). */
        unsigned departures_told;
};

struct QemuPlugin {
        Plugin base;
        QemuSettings settings;
        PluginContext ctx;
        char dir[PATH_MAX];
        Map *endpoints; /* region name -> QemuEndpoint */
        QemuClient *clients;
        Factory *factory;
};

static const PeerOps qemu_peer_ops;
static const FrontConnOps qemu_conn_ops;

static QemuPlugin *qemu_plugin(Plugin *p) {
        return (QemuPlugin *) ((char *) p - offsetof(QemuPlugin, base));
}

/* The refusal QEMU understands (it exits with "server sent version N"): the one place core results meet this wire. */
static int qemu_refusal(int core) {
        return IVSHMEM_REFUSE_VERSION_BASE + front_status(core);
}

static const char *qemu_label(const PeerIdentity *id, char buf[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)]) {
        return str_escape(buf, STR_ESCAPE_SIZE(SHMEM_LABEL_MAX), id->label);
}

/* Queues one protocol message; @fd is borrowed and duplicated. */
static void qemu_client_send(QemuClient *c, int64_t value, int fd) {
        char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)];

        if (qemu_wire_send(c->conn, value, fd) == -ENOBUFS)
                log_peer_warning_event(LOG_FIELDS(LOG_FIELDS_PEER(&c->id), .message_id = LOG_MID_PEER_DROPPED),
                                       "QEMU '%s' (pid %d) does not read its socket, dropping it",
                                       qemu_label(&c->id, label), (int) c->id.pid);
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
 * has not allocated yet (docs/protocol.md).
 */
static void qemu_client_handshake(QemuClient *c) {
        Peer *me = c->peer;
        Region *r = me->region;

        qemu_client_send(c, IVSHMEM_PROTOCOL_VERSION, -1);
        qemu_client_send(c, me->doorbell_id, -1);
        qemu_client_send(c, -1, r->memfd);
        /* Shmem mode: one fd per other peer, as that peer's vector 0: ringing
         * it makes the other peer see "me signaled" (docs/region-layout.md).
         * Compat mode: all of the other peer's vectors, as contrib's server. */
        for (unsigned i = 0; i < r->max_peers; i++) {
                Peer *o = r->peers[i];

                if (o && o != me)
                        qemu_client_send_peer(c, o);
        }
        for (unsigned v = 0; v < r->vectors; v++)
                qemu_client_send(c, me->doorbell_id, me->ev[v]);
}

static QemuClient *qemu_client_new(QemuPlugin *qp, const char *region, const PeerIdentity *id) {
        QemuClient *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        c->plugin = qp;
        c->id = *id;
        snprintf(c->region, sizeof(c->region), "%s", region);
        LIST_PREPEND(qp->clients, c);
        return c;
}

static void qemu_client_free(QemuClient *c) {
        QemuPlugin *qp = c->plugin;

        if (c->peer)
                registry_detach(qp->ctx.registry, c->peer);
        front_conn_free(c->conn);
        LIST_REMOVE(qp->clients, c);
        free(c);
}

static void qemu_client_on_drop(FrontConn *conn, int error) {
        QemuClient *c = conn->owner;
        char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)];

        if (c->peer)
                log_event(LOG_INFO,
                          LOG_FIELDS(LOG_FIELDS_PEER(&c->id), .region = c->peer->region->name, .has_index = true,
                                     .peer_index = c->peer->index, .message_id = LOG_MID_PEER_DETACHED),
                          "QEMU '%s' (pid %d) left '%s' (peer %u)", qemu_label(&c->id, label), (int) c->id.pid,
                          c->peer->region->name, c->peer->index);
        qemu_client_free(c);
}

static void qemu_client_on_read(FrontConn *conn) {
        QemuClient *c = conn->owner;
        char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)];
        _cleanup_(fdmsg_freep) FdMsg *in = NULL;
        int r;

        /* The protocol is server -> client only: QEMU closing is all we expect. */
        r = fdmsg_recv(front_conn_fd(conn), 64, 0, &in);
        if (r == -EAGAIN)
                return;
        if (r != FDMSG_E_EOF && r != -ECONNRESET)
                log_peer_warning_event(LOG_FIELDS(LOG_FIELDS_PEER(&c->id), .message_id = LOG_MID_PEER_DROPPED),
                                       "QEMU '%s' (pid %d) sent data on its ivshmem socket, dropping it",
                                       qemu_label(&c->id, label), (int) c->id.pid);
        conn_break(&conn->conn, -ECONNRESET);
}

/* What a restarted broker needs of a QEMU's connection; a refused QEMU is only waiting to read its refusal. */
static int qemu_client_dump(FrontConn *conn, State *st) {
        QemuClient *c = conn->owner;
        Shmem__State__Conn *sc;

        if (!c->peer)
                return 0;
        sc = front_conn_dump(conn, SHMEM__STATE__FRONTEND__QEMU, st);
        if (!sc)
                return -ENOMEM;
        sc->region = c->region;
        sc->departures_told = c->departures_told;
        return 0;
}

static const FrontConnOps qemu_conn_ops = {
        .read = qemu_client_on_read,
        .drop = qemu_client_on_drop,
        .dump = qemu_client_dump,
};

static void qemu_peer_joined(Peer *self, Peer *other) {
        qemu_client_send_peer(self->userdata, other);
}

static void qemu_peer_left(Peer *self, Peer *other) {
        QemuClient *c = self->userdata;

        qemu_client_send(c, other->doorbell_id, -1);
        c->departures_told++;
        keeper_changed(frontends_keeper(c->plugin->ctx.table), c->conn->id);
}

static void qemu_peer_evicted(Peer *self) {
        QemuClient *c = self->userdata;

        /* QEMU ignores a closed server socket once set up (it has no event
         * handler on the chardev); the guest keeps its mapping. */
        c->peer = NULL;
        conn_break(&c->conn->conn, -ECONNRESET);
}

static unsigned qemu_peer_departures_told(const Peer *self) {
        const QemuClient *c = self->userdata;

        return c->departures_told;
}

static const PeerOps qemu_peer_ops = {
        .joined = qemu_peer_joined,
        .left = qemu_peer_left,
        .evicted = qemu_peer_evicted,
        .departures_told = qemu_peer_departures_told,
};

/* Refuses a QEMU that has no connection yet: closing before a version would hang it. */
static void qemu_refuse_now(int fd, int core) {
        int64_t version = qemu_refusal(core);

        (void) send(fd, &version, IVSHMEM_MSG_SIZE, MSG_NOSIGNAL | MSG_DONTWAIT);
        fd_close(fd);
}

static void qemu_endpoint_on_accept(FrontListener *l, int fd, const PeerIdentity *peer, void *userdata) {
        QemuEndpoint *ep = userdata;
        QemuPlugin *qp = ep->plugin;
        Registry *reg = qp->ctx.registry;
        char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)];
        PeerIdentity id = *peer;
        const char *error = NULL;
        QemuClient *c;
        int r;

        qemu_identity_read(&id, qp->settings.libvirt_run_dir);
        r = frontends_admit(qp->ctx.table, &id, &error);
        if (r != 0) {
                log_peer_warning_event(LOG_FIELDS(LOG_FIELDS_PEER(&id), .region = ep->name,
                                                  .message_id = LOG_MID_LIMIT_REFUSED),
                                       "Refusing QEMU '%s' (pid %d) on '%s': %s (sent version %d)",
                                       qemu_label(&id, label), (int) id.pid, ep->name, error, qemu_refusal(r));
                qemu_refuse_now(fd, r);
                return;
        }
        c = qemu_client_new(qp, ep->name, &id);
        if (!c) {
                qemu_refuse_now(fd, -ENOMEM);
                return;
        }
        if (front_conn_new(&c->conn, qp->ctx.table, fd, registry_new_conn_id(reg), &id, &qemu_conn_ops, c) < 0) {
                qemu_client_free(c);
                return;
        }
        /* With a subst prefix for this VM, the socket of "foo" attaches it to PREFIXfoo; a device
         * the VM's factory is plugging comes to the socket of its final name, checked already. */
        r = registry_attach(reg,
                            &(AttachRequest) { .name = ep->name, .mode = ATTACH_FIND, .id = &c->id,
                                               .ops = &qemu_peer_ops, .userdata = c, .conn_id = c->conn->id,
                                               .prepared = factory_expects(qp->factory, c->id.pid, ep->name) },
                            &c->peer, NULL, &error);
        if (r != 0) {
                log_event(LOG_WARNING,
                          LOG_FIELDS(LOG_FIELDS_PEER(&c->id), .region = ep->name,
                                     .message_id = r == CORE_E_LIMIT || r == CORE_E_CLIENT_MAX ? LOG_MID_LIMIT_REFUSED
                                                                                                 : NULL),
                          "Refusing QEMU '%s' (pid %d) on '%s': %s%s%s (sent version %d)", qemu_label(&c->id, label),
                          (int) c->id.pid, ep->name, r > 0 ? core_error_name(r) : strerror(-r), error ? ": " : "",
                          error ? error : "", qemu_refusal(r));
                qemu_client_send(c, qemu_refusal(r), -1);
                conn_close_after_flush(&c->conn->conn);
                return;
        }
        keeper_changed(frontends_keeper(qp->ctx.table), c->conn->id);
        log_event(LOG_INFO,
                  LOG_FIELDS(LOG_FIELDS_PEER(&c->id), .region = c->peer->region->name, .has_index = true,
                             .peer_index = c->peer->index, .message_id = LOG_MID_PEER_ATTACHED),
                  "QEMU '%s' (pid %d) attached to '%s' as peer %u", qemu_label(&c->id, label), (int) c->id.pid,
                  c->peer->region->name, c->peer->index);
        qemu_client_handshake(c);
}

/* --- endpoints ----------------------------------------------------------- */

static void qemu_endpoint_free(QemuPlugin *qp, QemuEndpoint *ep) {
        keeper_drop(frontends_keeper(qp->ctx.table), &(FdKey) { .kind = FD_ENDPOINT, .plugin = "qemu", .region = ep->name });
        front_listener_free(ep->listener);
        (void) unlink(ep->path);
        free(ep);
}

static int qemu_plugin_region_added(Plugin *p, Region *r) {
        QemuPlugin *qp = qemu_plugin(p);
        Keeper *keeper = frontends_keeper(qp->ctx.table);
        FdKey key = { .kind = FD_ENDPOINT, .plugin = "qemu", .region = r->name };
        QemuEndpoint *ep;
        int fd, n;

        ep = calloc(1, sizeof(*ep));
        if (!ep)
                return -ENOMEM;
        ep->plugin = qp;
        snprintf(ep->name, sizeof(ep->name), "%s", r->name);
        n = snprintf(ep->path, sizeof(ep->path), "%s/%s.sock", qp->dir, r->name);
        if (n < 0 || (size_t) n >= sizeof(ep->path)) {
                free(ep);
                return -ENAMETOOLONG;
        }
        /* After a restart, the very socket QEMUs know: they never reconnect. */
        fd = keeper_take(keeper, &key);
        if (fd < 0) {
                /* The name is ours: the registry just declared it, so a file there is stale. */
                n = socket_listen(ep->path, SOCK_STREAM, qp->settings.socket_mode, qp->settings.socket_gid, false, &fd);
                if (n < 0) {
                        log_error_errno(n, "Cannot listen on '%s': %m", ep->path);
                        free(ep);
                        return n;
                }
        }
        keeper_keep(keeper, &key, fd);
        n = front_listener_new(&ep->listener, qp->ctx.table, fd, SHMEM_PEER_KIND_QEMU, qemu_endpoint_on_accept, ep);
        if (n >= 0)
                n = map_put(qp->endpoints, ep->name, ep);
        if (n < 0) {
                qemu_endpoint_free(qp, ep);
                return n;
        }
        return 0;
}

static void qemu_plugin_region_removed(Plugin *p, Region *r) {
        QemuPlugin *qp = qemu_plugin(p);
        QemuEndpoint *ep = map_remove(qp->endpoints, r->name);

        if (ep)
                qemu_endpoint_free(qp, ep);
}

static int qemu_plugin_endpoint(Plugin *p, const Region *r, char *buf, size_t size) {
        QemuEndpoint *ep = map_get(qemu_plugin(p)->endpoints, r->name);

        if (!ep || strlen(ep->path) >= size)
                return -ENOENT;
        strcpy(buf, ep->path);
        return 0;
}

static void qemu_plugin_factory_vms(Plugin *p, PluginFactoryFn fn, void *userdata) {
        factory_foreach_vm(qemu_plugin(p)->factory, fn, userdata);
}

static const PluginOps qemu_plugin_ops = {
        .name = "qemu",
        .region_added = qemu_plugin_region_added,
        .region_removed = qemu_plugin_region_removed,
        .endpoint = qemu_plugin_endpoint,
        .factory_vms = qemu_plugin_factory_vms,
};

/* --- the module ---------------------------------------------------------- */

static Plugin *qemu_plugin_free(Plugin *p) {
        QemuPlugin *qp;

        if (!p)
                return NULL;
        qp = qemu_plugin(p);
        factory_free(qp->factory);
        while (qp->clients)
                qemu_client_free(qp->clients);
        registry_remove_plugin(qp->ctx.registry, p);
        map_free(qp->endpoints);
        free(qp);
        return NULL;
}

static int qemu_plugin_new(Plugin **ret, const PluginContext *ctx, const void *settings) {
        QemuPlugin *qp = calloc(1, sizeof(*qp));
        int r, n;

        if (!qp)
                return -ENOMEM;
        qp->base.ops = &qemu_plugin_ops;
        qp->ctx = *ctx;
        qp->settings = *(const QemuSettings *) settings;
        r = map_new(&qp->endpoints, MAP_KEY_STRING);
        if (r < 0)
                goto fail;
        n = snprintf(qp->dir, sizeof(qp->dir), "%s/qemu", ctx->rundir);
        if (n < 0 || (size_t) n >= sizeof(qp->dir)) {
                r = -ENAMETOOLONG;
                goto fail;
        }
        /* Explicit mode: the service runs with UMask=0077, and QEMU must traverse it. */
        if ((mkdir(qp->dir, 0755) < 0 && errno != EEXIST) || chmod(qp->dir, 0755) < 0) {
                r = log_error_errno(-errno, "Cannot create '%s': %m", qp->dir);
                goto fail;
        }
        if (qp->settings.socket_gid != (gid_t) -1 && chown(qp->dir, (uid_t) -1, qp->settings.socket_gid) < 0) {
                r = log_error_errno(-errno, "Cannot set the group of '%s': %m", qp->dir);
                goto fail;
        }
        r = registry_add_plugin(ctx->registry, &qp->base);
        if (r < 0)
                goto fail;
        r = factory_new(&qp->factory, ctx, &qp->settings, qp->dir);
        if (r < 0) {
                registry_remove_plugin(ctx->registry, &qp->base);
                goto fail;
        }
        *ret = &qp->base;
        return 0;

fail:
        map_free(qp->endpoints);
        free(qp);
        return r;
}

/* What an image before 0.2 stored with the peer rather than the connection. */
static unsigned qemu_stored_departures(const State *st, uint64_t conn_id) {
        for (size_t i = 0; i < st->n_regions; i++)
                for (size_t k = 0; k < st->regions[i]->n_peers; k++)
                        if (st->regions[i]->peers[k]->conn == conn_id)
                                return st->regions[i]->peers[k]->departures_told;
        return 0;
}

static void qemu_plugin_restore(Plugin *p, const State *st) {
        QemuPlugin *qp = qemu_plugin(p);
        Keeper *keeper = frontends_keeper(qp->ctx.table);

        for (size_t i = 0; i < st->n_conns; i++) {
                const Shmem__State__Conn *sc = st->conns[i];
                Peer *peer;
                QemuClient *c;
                unsigned old;

                if (sc->frontend != SHMEM__STATE__FRONTEND__QEMU)
                        continue;
                peer = registry_find_peer_by_conn(qp->ctx.registry, sc->id);
                if (!peer) {
                        /* Closing a QEMU's socket is harmless once its handshake is done. */
                        fd_close(keeper_take(keeper, &(FdKey) { .kind = FD_CONN, .id = sc->id }));
                        continue;
                }
                c = qemu_client_new(qp, sc->region, &peer->id);
                if (!c)
                        continue;
                if (front_conn_restore(&c->conn, qp->ctx.table, sc, &peer->id, &qemu_conn_ops, c) < 0) {
                        qemu_client_free(c);
                        continue;
                }
                old = qemu_stored_departures(st, sc->id);
                c->departures_told = sc->departures_told > old ? sc->departures_told : old;
                c->peer = peer;
                peer->ops = &qemu_peer_ops;
                peer->userdata = c;
        }
        factory_restore(qp->factory, st);
}

/* --- options ------------------------------------------------------------- */

/* Whether this process may give a file group @gid (chown(2): root, or a member). */
static bool may_use_group(gid_t gid) {
        gid_t groups[256];
        int n;

        if (geteuid() == 0 || getegid() == gid)
                return true;
        n = getgroups((int) ELEMENTSOF(groups), groups);
        for (int i = 0; i < n; i++)
                if (groups[i] == gid)
                        return true;
        return false;
}

/*
 * The hotplug helper installed with this broker: SHMEM_HOTPLUG_FROM_SBINDIR
 * (the install's libexec directory seen from its sbin, ../libexec/shmem-hotplug)
 * from this executable's directory, so that an install under any prefix
 * (`cmake --install --prefix DIR`, a package) finds its own helper. A binary
 * replaced on disk (an upgrade) reads as "PATH (deleted)": the helper
 * beside its successor is the one to run. Without /proc: "", which the
 * factory reports when it first needs the helper.
 */
static void default_hotplug_helper(char *buf, size_t size) {
        static const char deleted[] = " (deleted)";
        char exe[OPTION_PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        char *slash;

        buf[0] = 0;
        if (n <= 0)
                return;
        exe[n] = 0;
        if ((size_t) n > strlen(deleted) && strcmp(exe + n - strlen(deleted), deleted) == 0)
                exe[n - strlen(deleted)] = 0;
        slash = strrchr(exe, '/');
        if (!slash)
                return;
        *slash = 0;
        if ((size_t) snprintf(buf, size, "%s/%s", exe, SHMEM_HOTPLUG_FROM_SBINDIR) >= size)
                buf[0] = 0;
}

/*
 * The group QEMU sockets get unless configured: the one QEMU runs in here,
 * among those this process may use. Debian's libvirt runs QEMU as user
 * libvirt-qemu, group libvirt-qemu, with kvm as a further group; QEMU run by
 * hand usually needs kvm too. The service runs with kvm as a supplementary
 * group (systemd/shmem-brokerd.service).
 */
static void qemu_settings_init(void *settings) {
        static const char *const groups[] = { "libvirt-qemu", "kvm" };
        QemuSettings *s = settings;

        *s = (QemuSettings) { .socket_mode = 0660, .socket_gid = (gid_t) -1,
                              .libvirt_run_dir = "/run/libvirt/qemu", .hotplug_timeout_ms = 10000,
                              .libvirt_uri = "qemu:///system", .libvirt_port_window = DOMAIN_PORT_WINDOW };
        default_hotplug_helper(s->hotplug_helper, sizeof(s->hotplug_helper));
        for (size_t i = 0; i < ELEMENTSOF(groups); i++) {
                struct group *g = getgrnam(groups[i]);

                if (g && may_use_group(g->gr_gid)) {
                        s->socket_gid = g->gr_gid;
                        return;
                }
        }
}

static const Option qemu_options[] = {
        { .section = "broker", .key = "qemu-socket-group", .long_name = "qemu-group", .type = OPTION_GROUP,
          .offset = offsetof(QemuSettings, socket_gid), .arg = "GROUP",
          .help = "Group owning the QEMU sockets; unset: libvirt-qemu if this process may use it, else kvm" },
        { .section = "broker", .key = "qemu-socket-mode", .long_name = "qemu-socket-mode", .type = OPTION_MODE,
          .offset = offsetof(QemuSettings, socket_mode), .arg = "MODE", .help = "Mode of the QEMU sockets" },
        { .section = "broker", .key = "libvirt-run-directory", .type = OPTION_PATH_OR_EMPTY,
          .offset = offsetof(QemuSettings, libvirt_run_dir), .arg = "DIR",
          .help = "Where libvirt keeps its QEMU pid files (\"\": do not confirm domains)" },
        { .section = "broker", .key = "hotplug-helper", .long_name = "hotplug-helper", .type = OPTION_PATH,
          .offset = offsetof(QemuSettings, hotplug_helper), .arg = "FILE",
          .help = "The program that plugs a factory's devices into running VMs (default: "
                  SHMEM_HOTPLUG_FROM_SBINDIR " from the broker's directory)" },
        { .section = "broker", .key = "hotplug-timeout-ms", .long_name = "hotplug-timeout-ms", .type = OPTION_UINT,
          .offset = offsetof(QemuSettings, hotplug_timeout_ms), .min = 100, .max = 600000, .arg = "MS",
          .help = "How long plugging one device may take" },
        { .section = "broker", .key = "libvirt-uri", .long_name = "libvirt-uri", .type = OPTION_URI,
          .offset = offsetof(QemuSettings, libvirt_uri), .arg = "URI",
          .help = "The libvirt that the factory plugs devices into its domains through" },
        { .section = "broker", .key = "libvirt-port-window", .long_name = "libvirt-port-window", .type = OPTION_SIZE,
          .offset = offsetof(QemuSettings, libvirt_port_window), .min = DOMAIN_PORT_WINDOW, .max = UINT64_C(1) << 40,
          .arg = "SIZE",
          .help = "What a root port window of a libvirt q35 domain holds: 2M, or what its guest kernel's "
                  "pci=hpmmioprefsize= says (docs/libvirt.md section 13)" },
};

const PluginModule qemu_plugin_module = {
        .name = "qemu",
        .options = qemu_options,
        .n_options = ELEMENTSOF(qemu_options),
        .settings_size = sizeof(QemuSettings),
        .settings_init = qemu_settings_init,
        .new = qemu_plugin_new,
        .free = qemu_plugin_free,
        .restore = qemu_plugin_restore,
};
