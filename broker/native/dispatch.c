/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "dispatch.h"
#include "escape.h"
#include "factory-info.h"
#include "region-info.h"
#include "reply-page.h"
#include "frontend.h"
#include "log.h"

/* The core's attach modes are the wire's. */
_Static_assert(ATTACH_CREATE == (int) SHMEM__ATTACH_MODE__CREATE, "attach mode");
_Static_assert(ATTACH_FIND == (int) SHMEM__ATTACH_MODE__FIND, "attach mode");
_Static_assert(ATTACH_EXCLUSIVE == (int) SHMEM__ATTACH_MODE__EXCLUSIVE, "attach mode");

Shmem__Status native_status(int core) {
        return (Shmem__Status) front_status(core);
}

void native_init(Native *n, Registry *registry, const PeerOps *peer_ops, const NativeHooks *hooks) {
        *n = (Native) { .registry = registry, .peer_ops = peer_ops };
        if (hooks)
                n->hooks = *hooks;
        /* Only has to differ from the image before (shmemctl upgrade waits for that). */
        if (getrandom(&n->instance, sizeof(n->instance), GRND_NONBLOCK) != sizeof(n->instance))
                n->instance = (uint64_t) time(NULL) << 20 ^ (uint64_t) getpid();
        if (n->instance == 0)
                n->instance = 1; /* 0: a broker that does not say */
}

void native_out_done(NativeOut *o) {
        while (o->head) {
                FdMsg *m = o->head;

                o->head = m->next;
                fdmsg_free(m);
        }
        o->tail = NULL;
}

/*
 * Appends @m with @fds, borrowed: the core's own fds (memfd, eventfds), which
 * live until the server queues what this returned, in the same call
 * (fdmsg_new_borrowed(): one sent at once is never dup()ed nor closed).
 * 0, or msg_encode_borrowed()'s error. Out of memory: the caller gets
 * nothing and is dropped by the server.
 */
static int out_send(NativeOut *o, const Message *m, const int *fds, size_t n_fds) {
        FdMsg *f;
        int r;

        r = msg_encode_borrowed(&f, m, fds, n_fds);
        if (r < 0)
                return r;
        f->next = NULL;
        if (o->tail)
                o->tail->next = f;
        else
                o->head = f;
        o->tail = f;
        return 0;
}

/*
 * A reply more than one message holds is answered LIMIT with its size,
 * not left unanswered: the listings page (List, Factory, BrokerStatus's
 * holders), but what is not paged (BrokerStatus's configuration files) must
 * still say why it cannot come.
 */
static void out_reply(NativeOut *o, uint64_t serial, Shmem__Status status, const char *error, Shmem__Reply *reply,
                      const int *fds, size_t n_fds) {
        Shmem__Reply empty = SHMEM__REPLY__INIT;
        Message m = SHMEM__MESSAGE__INIT;

        if (!reply)
                reply = &empty;
        reply->status = status;
        reply->error = (char *) (error ? error : "");
        m.serial = serial;
        m.body_case = SHMEM__MESSAGE__BODY_REPLY;
        m.reply = reply;
        if (out_send(o, &m, fds, n_fds) == -EMSGSIZE) {
                size_t n = shmem__message__get_packed_size(&m);
                char text[128];

                snprintf(text, sizeof(text),
                         "the reply would be %zu bytes and %zu fds, more than one message holds (%d, %d)", n, n_fds,
                         SHMEM_MSG_MAX, SHMEM_MSG_FDS_MAX);
                log_peer_warning("Answering request %" PRIu64 " LIMIT: %s", serial, text);
                empty.status = SHMEM__STATUS__LIMIT;
                empty.error = text;
                m.reply = &empty;
                (void) out_send(o, &m, NULL, 0);
        }
}

/* A core result as a reply without a body: a refusal's reason, or an errno's text. */
static void out_result(NativeOut *o, uint64_t serial, int core, const char *error) {
        out_reply(o, serial, native_status(core), core < 0 ? strerror(-core) : error, NULL, NULL, 0);
}

/* Logs a refusal of @c with the strings it chose escaped. */
static void log_refusal(const NativeCaller *c, const char *what, const char *name, int core, const char *error) {
        char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)], region[STR_ESCAPE_SIZE(SHMEM_NAME_MAX)];

        str_escape(label, sizeof(label), c->id.label);
        str_escape(region, sizeof(region), name);
        if (core < 0)
                log_error_errno(core, "Error %s '%s' for client '%s' (pid %d): %m", what, region, label,
                                (int) c->id.pid);
        else
                log_event(LOG_INFO,
                          LOG_FIELDS(LOG_FIELDS_PEER(&c->id), .region = name,
                                         .message_id = core == CORE_E_LIMIT || core == CORE_E_CLIENT_MAX
                                                               ? LOG_MID_LIMIT_REFUSED
                                                               : NULL),
                          "Refusing client '%s' (pid %d, uid %u) %s '%s': %s%s%s", label, (int) c->id.pid,
                          (unsigned) c->id.uid, what, region, core_error_name(core), error ? ": " : "",
                          error ? error : "");
}

static void peer_info_fill(Shmem__PeerInfo *pi, Peer *p, int fd_index) {
        shmem__peer_info__init(pi);
        pi->index = p->index;
        pi->kind = (Shmem__PeerKind) p->id.kind;
        pi->label = p->id.label;
        pi->pid = (uint32_t) p->id.pid;
        pi->fd = fd_index;
        pi->doorbell_id = p->doorbell_id;
}

/* --- handlers ---------------------------------------------------------------- */

typedef int (*Handler)(Native *n, NativeCaller *c, const Message *m, NativeOut *out);

static int handle_hello(Native *n, NativeCaller *c, const Message *m, NativeOut *out) {
        Shmem__HelloReply hr = SHMEM__HELLO_REPLY__INIT;
        Shmem__Reply reply = SHMEM__REPLY__INIT;
        const Shmem__Hello *h = m->hello;

        hr.version = SHMEM_PROTOCOL_VERSION;
        hr.broker = "shmem-brokerd " SHMEM_VERSION;
        hr.instance = n->instance;
        reply.body_case = SHMEM__REPLY__BODY_HELLO;
        reply.hello = &hr;
        if (h->version != SHMEM_PROTOCOL_VERSION) {
                out_reply(out, m->serial, SHMEM__STATUS__VERSION, "this broker speaks protocol version 1", &reply,
                          NULL, 0);
                out->close = true;
                return 0;
        }
        /* Cut between characters: what inspect and Joined send must stay UTF-8. */
        if (h->label && h->label[0])
                snprintf(c->id.label, sizeof(c->id.label), "%.*s",
                         (int) str_utf8_cut(h->label, strlen(h->label), SHMEM_LABEL_MAX), h->label);
        c->greeted = true;
        out->changed = true;
        out_reply(out, m->serial, SHMEM__STATUS__OK, NULL, &reply, NULL, 0);
        return 0;
}

/* Regions one page looks at: more than one message holds of the shortest names and paths. */
#define LIST_PAGE_MAX 2048

/* The slot of the first region created after the one whose seq is @after (seqs rise with the slot). */
static size_t list_first_after(Registry *reg, uint64_t after) {
        size_t lo = 0, hi = reg->n_regions;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (reg->regions[mid]->seq <= after)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/*
 * One page: the regions after List.after, as many as List.limit asks and one
 * message holds (docs/protocol.md, "Listing in pages"). Without a limit, a
 * client from before paging gets them all, or LIMIT if they do not fit: a
 * silently cut list would look complete to it.
 */
static int handle_list(Native *n, NativeCaller *c, const Message *m, NativeOut *out) {
        Registry *reg = n->registry;
        Shmem__ListReply list = SHMEM__LIST_REPLY__INIT;
        Shmem__Reply reply = SHMEM__REPLY__INIT;
        size_t first = list_first_after(reg, m->list->after), left = reg->n_regions - first;
        _cleanup_free_ InfoBuf *bufs = NULL;
        _cleanup_free_ Shmem__RegionInfo **ptrs = NULL;
        ReplyPage page;
        char error[128];

        reply_page_init(&page, m->list->limit, left < LIST_PAGE_MAX ? left : LIST_PAGE_MAX);
        bufs = calloc(page.room + 1, sizeof(InfoBuf));
        ptrs = calloc(page.room + 1, sizeof(*ptrs));
        if (!bufs || !ptrs) {
                out_reply(out, m->serial, SHMEM__STATUS__NOMEM, "out of memory", NULL, NULL, 0);
                return 0;
        }
        /* One region always fits: a RegionInfo without peers is under 1 KiB. */
        while (page.n < page.room) {
                InfoBuf *b = &bufs[page.n];

                region_info_fill(b, reg, reg->regions[first + page.n]);
                ptrs[page.n] = &b->info;
                if (!reply_page_take(&page, shmem__region_info__get_packed_size(&b->info)))
                        break;
        }
        if (page.n < left) {
                if (m->list->limit == 0) {
                        snprintf(error, sizeof(error),
                                 "%zu regions do not fit in one message: list in pages (List.limit)",
                                 reg->n_regions);
                        out_reply(out, m->serial, SHMEM__STATUS__LIMIT, error, NULL, NULL, 0);
                        return 0;
                }
                list.next = reg->regions[first + page.n - 1]->seq;
        }
        list.n_regions = page.n;
        list.regions = ptrs;
        reply.body_case = SHMEM__REPLY__BODY_LIST;
        reply.list = &list;
        out_reply(out, m->serial, SHMEM__STATUS__OK, NULL, &reply, NULL, 0);
        return 0;
}

static int handle_inspect(Native *n, NativeCaller *c, const Message *m, NativeOut *out) {
        Region *r = registry_find(n->registry, m->inspect->name);
        Shmem__InspectReply inspect = SHMEM__INSPECT_REPLY__INIT;
        Shmem__Reply reply = SHMEM__REPLY__INIT;
        _cleanup_free_ PeersBuf *peers = NULL;
        InfoBuf b;

        if (!r) {
                out_result(out, m->serial, CORE_E_NOT_FOUND, "no region of that name");
                return 0;
        }
        peers = calloc(1, sizeof(*peers));
        if (!peers) {
                out_reply(out, m->serial, SHMEM__STATUS__NOMEM, "out of memory", NULL, NULL, 0);
                return 0;
        }
        /* One region and its 64 peers at most: under 9 KiB, one message always holds it. */
        region_info_fill(&b, n->registry, r);
        region_peers_fill(&b.info, peers, r);
        inspect.region = &b.info;
        reply.body_case = SHMEM__REPLY__BODY_INSPECT;
        reply.inspect = &inspect;
        out_reply(out, m->serial, SHMEM__STATUS__OK, NULL, &reply, NULL, 0);
        return 0;
}

/* One page of the VMs this caller may see (factory-info.h), paged as List. */
/* A listing that could not be built: @r < 0 is out of memory, > 0 a page too big for a message (@error says which). */
static void out_listing_refused(NativeOut *out, uint64_t serial, int r, const char *error) {
        if (r < 0)
                out_reply(out, serial, SHMEM__STATUS__NOMEM, "out of memory", NULL, NULL, 0);
        else
                out_reply(out, serial, SHMEM__STATUS__LIMIT, error, NULL, NULL, 0);
}

static int handle_factory(Native *n, NativeCaller *c, const Message *m, NativeOut *out) {
        Shmem__Reply reply = SHMEM__REPLY__INIT;
        FactoryInfo *f = NULL;
        char error[160];
        int r;

        r = factory_info_new(&f, n->registry, &c->id, m->factory->limit, m->factory->after, error, sizeof(error));
        if (r != 0) {
                out_listing_refused(out, m->serial, r, error);
                return 0;
        }
        reply.body_case = SHMEM__REPLY__BODY_FACTORY;
        reply.factory = factory_info_reply(f);
        out_reply(out, m->serial, SHMEM__STATUS__OK, NULL, &reply, NULL, 0);
        factory_info_free(f);
        return 0;
}

static int handle_broker_status(Native *n, NativeCaller *c, const Message *m, NativeOut *out) {
        Shmem__Reply reply = SHMEM__REPLY__INIT;
        NativeFacts facts = {};
        StatusInfo *s = NULL;
        char error[128];
        int r;

        if (n->hooks.facts)
                n->hooks.facts(n->hooks.userdata, &facts);
        r = status_info_new(&s, n->registry, &c->id, &facts, m->broker_status->limit, m->broker_status->after,
                            error, sizeof(error));
        if (r != 0) {
                out_listing_refused(out, m->serial, r, error);
                return 0;
        }
        reply.body_case = SHMEM__REPLY__BODY_BROKER_STATUS;
        reply.broker_status = status_info_reply(s);
        out_reply(out, m->serial, SHMEM__STATUS__OK, NULL, &reply, NULL, 0);
        status_info_free(s);
        return 0;
}

static void out_attach_reply(NativeOut *out, NativeCaller *c, uint64_t serial, bool created) {
        Peer *me = c->peer;
        Region *r = me->region;
        Shmem__AttachReply ar = SHMEM__ATTACH_REPLY__INIT;
        Shmem__Reply reply = SHMEM__REPLY__INIT;
        Shmem__PeerInfo infos[SHMEM_PEERS_MAX], *ptrs[SHMEM_PEERS_MAX];
        int fds[1 + (SHMEM_PEERS_MAX + 1) + SHMEM_PEERS_MAX];
        const int *to;
        size_t n = 0;

        /* fd layout (shmem.proto AttachReply): memfd, own row, one per other peer. */
        fds[n++] = r->memfd;
        for (unsigned v = 0; v < r->vectors; v++)
                fds[n++] = me->ev[v];
        for (unsigned i = 0; i < r->max_peers; i++) {
                Peer *o = r->peers[i];

                if (!o || o == me)
                        continue;
                peer_info_fill(&infos[ar.n_peers], o, (int) n);
                ptrs[ar.n_peers] = &infos[ar.n_peers];
                ar.n_peers++;
                (void) region_fds_to(r, o, me, &to); /* one fd: native peers are never compat */
                fds[n++] = to[0];
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
        out_reply(out, serial, SHMEM__STATUS__OK, NULL, &reply, fds, n);
}

static int handle_attach(Native *n, NativeCaller *c, const Message *m, NativeOut *out) {
        const Shmem__Attach *a = m->attach;
        const char *error = NULL;
        bool created = false;
        int r;

        if (c->peer) {
                out_result(out, m->serial, CORE_E_INVALID,
                           "this connection is attached already (one attachment per connection)");
                return 0;
        }
        r = registry_attach(n->registry,
                            &(AttachRequest) { .name = a->name, .mode = (AttachMode) a->mode, .size = a->size,
                                               .id = &c->id, .ops = n->peer_ops, .userdata = c->userdata,
                                               .conn_id = c->conn_id },
                            &c->peer, &created, &error);
        if (r != 0) {
                log_refusal(c, "attaching", a->name, r, error);
                out_result(out, m->serial, r, error);
                return 0;
        }
        out->changed = true;
        if (created || log_get_max_level() >= LOG_DEBUG) {
                const char *name = c->peer->region->name;
                char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)];

                str_escape(label, sizeof(label), c->id.label);
                /* A region's creation is an event of its own; a client's attach is debug-level chatter. */
                if (created)
                        log_event(LOG_INFO,
                                  LOG_FIELDS(LOG_FIELDS_PEER(&c->id), .region = name,
                                             .message_id = LOG_MID_REGION_CREATED),
                                  "Region '%s' created by client '%s' (pid %d, uid %u) attaching", name, label,
                                  (int) c->id.pid, (unsigned) c->id.uid);
                log_event(LOG_DEBUG,
                          LOG_FIELDS(LOG_FIELDS_PEER(&c->id), .region = name, .has_index = true,
                                     .peer_index = c->peer->index, .message_id = LOG_MID_PEER_ATTACHED),
                          "Client '%s' (pid %d) attached to '%s' as peer %u%s", label, (int) c->id.pid, name,
                          c->peer->index, created ? ", creating it" : "");
        }
        out_attach_reply(out, c, m->serial, created);
        return 0;
}

static int handle_detach(Native *n, NativeCaller *c, const Message *m, NativeOut *out) {
        if (!c->peer || strcmp(c->peer->region->name, m->detach->name) != 0) {
                out_result(out, m->serial, CORE_E_INVALID, "not attached to that region");
                return 0;
        }
        registry_detach(n->registry, TAKE_PTR(c->peer));
        out->changed = true;
        out_result(out, m->serial, 0, NULL);
        return 0;
}

static int handle_create(Native *n, NativeCaller *c, const Message *m, NativeOut *out) {
        const Shmem__Create *cr = m->create;
        const char *error = NULL;
        int r;

        r = registry_declare(n->registry,
                             &(RegionDecl) { .name = cr->name, .size = cr->size, .max_peers = cr->max_peers,
                                             .persistent = cr->persistent },
                             NULL, &error);
        if (r != 0)
                log_refusal(c, "creating", cr->name, r, error);
        else
                log_event(LOG_INFO,
                          LOG_FIELDS(LOG_FIELDS_PEER(&c->id), .region = cr->name,
                                         .message_id = LOG_MID_REGION_CREATED),
                          "Region '%s' created by uid %u (pid %d)", cr->name, (unsigned) c->id.uid, (int) c->id.pid);
        out_result(out, m->serial, r, error);
        return 0;
}

static int handle_destroy(Native *n, NativeCaller *c, const Message *m, NativeOut *out) {
        const Shmem__Destroy *d = m->destroy;
        const char *error = NULL;
        int r;

        r = registry_destroy(n->registry, d->name, d->force, &error);
        if (r == 0)
                log_event(LOG_INFO,
                          LOG_FIELDS(LOG_FIELDS_PEER(&c->id), .region = d->name,
                                         .message_id = LOG_MID_REGION_DESTROYED),
                          "Region '%s' destroyed by uid %u (pid %d)", d->name, (unsigned) c->id.uid, (int) c->id.pid);
        out_result(out, m->serial, r, error);
        return 0;
}

static int handle_reload(Native *n, NativeCaller *c, const Message *m, NativeOut *out) {
        const char *error = NULL;
        int r;

        if (!n->hooks.reload) {
                out_result(out, m->serial, CORE_E_INVALID, "this broker has no configuration to reload");
                return 0;
        }
        log_info("Reload requested by uid %u (pid %d)", (unsigned) c->id.uid, (int) c->id.pid);
        r = n->hooks.reload(n->hooks.userdata, &error);
        out_reply(out, m->serial, r < 0 ? SHMEM__STATUS__BAD_REQUEST : SHMEM__STATUS__OK, error, NULL, NULL, 0);
        return 0;
}

static int handle_upgrade(Native *n, NativeCaller *c, const Message *m, NativeOut *out) {
        int r = n->hooks.upgrade ? n->hooks.upgrade(n->hooks.userdata) : -EOPNOTSUPP;

        if (r >= 0)
                log_info("Upgrade requested by uid %u (pid %d)", (unsigned) c->id.uid, (int) c->id.pid);
        out_result(out, m->serial, r < 0 ? r : 0, NULL);
        return 0;
}

static int handle_watch(Native *n, NativeCaller *c, const Message *m, NativeOut *out) {
        c->watching = true;
        out->changed = true;
        out_result(out, m->serial, 0, NULL);
        return 0;
}

/*
 * Every request the broker takes. A body missing here (a Reply, an event,
 * one of a newer protocol) is a protocol violation. Requests that change
 * what exists for everybody are for administrators (root and the broker's
 * own user); attaching and looking are for everyone (BrokerStatus shows
 * others' use, Factory others' VMs, to administrators only: status-info.h,
 * factory-info.h), with the regions' owner/group/mode and the rules
 * deciding who may attach (docs/security.md).
 * Those whose strings are region names answer ILLEGAL_NAME to a name that
 * is cut at a NUL byte or is not UTF-8.
 */
static const struct {
        Handler handle;
        bool admin;
        bool names; /* its strings are region names */
} handlers[] = {
        [SHMEM__MESSAGE__BODY_HELLO] = { handle_hello, false, false },
        [SHMEM__MESSAGE__BODY_ATTACH] = { handle_attach, false, true },
        [SHMEM__MESSAGE__BODY_DETACH] = { handle_detach, false, true },
        [SHMEM__MESSAGE__BODY_LIST] = { handle_list, false, false },
        [SHMEM__MESSAGE__BODY_INSPECT] = { handle_inspect, false, true },
        [SHMEM__MESSAGE__BODY_CREATE] = { handle_create, true, true },
        [SHMEM__MESSAGE__BODY_DESTROY] = { handle_destroy, true, true },
        [SHMEM__MESSAGE__BODY_WATCH] = { handle_watch, false, false },
        [SHMEM__MESSAGE__BODY_RELOAD] = { handle_reload, true, false },
        [SHMEM__MESSAGE__BODY_UPGRADE] = { handle_upgrade, true, false },
        [SHMEM__MESSAGE__BODY_FACTORY] = { handle_factory, false, false },
        [SHMEM__MESSAGE__BODY_BROKER_STATUS] = { handle_broker_status, false, false },
};

int native_dispatch(Native *n, NativeCaller *c, const Message *m, int decoded, NativeOut *out) {
        unsigned body = (unsigned) m->body_case;

        if (body >= ELEMENTSOF(handlers) || !handlers[body].handle || m->serial == 0)
                return -EPROTO;
        /* The Hello comes first, and once. */
        if (c->greeted == (body == SHMEM__MESSAGE__BODY_HELLO))
                return -EPROTO;
        if (decoded == MSG_E_BAD_STRING) {
                if (!handlers[body].names)
                        out_result(out, m->serial, CORE_E_INVALID, "a string holds a NUL byte or is not UTF-8");
                else
                        out_result(out, m->serial, CORE_E_ILLEGAL_NAME, "the name holds a NUL byte or is not UTF-8");
                if (body == SHMEM__MESSAGE__BODY_HELLO)
                        out->close = true;
                return 0;
        }
        if (handlers[body].admin && !policy_is_admin(&c->id)) {
                out_result(out, m->serial, CORE_E_NO_PERMISSION,
                           "creating, destroying, reloading and upgrading are for root and the broker's user");
                return 0;
        }
        return handlers[body].handle(n, c, m, out);
}

/* --- events ------------------------------------------------------------------ */

/* @fds borrowed, as out_send()'s: the server queues the event before the core goes on. */
static FdMsg *event_encode(Message *m, const int *fds, size_t n_fds) {
        FdMsg *f;

        return msg_encode_borrowed(&f, m, fds, n_fds) < 0 ? NULL : f;
}

static FdMsg *event_joined(Region *r, Peer *p, int fd) {
        Shmem__Joined j = SHMEM__JOINED__INIT;
        Shmem__PeerInfo pi;
        Message m = SHMEM__MESSAGE__INIT;

        peer_info_fill(&pi, p, fd >= 0 ? 0 : -1);
        j.name = r->name;
        j.epoch = r->epoch;
        j.peer = &pi;
        m.body_case = SHMEM__MESSAGE__BODY_JOINED;
        m.joined = &j;
        return event_encode(&m, fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0);
}

static FdMsg *event_left(Region *r, unsigned index) {
        Shmem__Left l = SHMEM__LEFT__INIT;
        Message m = SHMEM__MESSAGE__INIT;

        l.name = r->name;
        l.epoch = r->epoch;
        l.index = index;
        m.body_case = SHMEM__MESSAGE__BODY_LEFT;
        m.left = &l;
        return event_encode(&m, NULL, 0);
}

FdMsg *native_event_joined(Peer *self, Peer *other) {
        const int *to;

        (void) region_fds_to(self->region, other, self, &to); /* one fd: native peers are never compat */
        return event_joined(self->region, other, to[0]);
}

FdMsg *native_event_left(Peer *self, Peer *other) {
        return event_left(self->region, other->index);
}

FdMsg *native_event_watch_joined(Region *r, Peer *p) {
        return event_joined(r, p, -1);
}

FdMsg *native_event_watch_left(Region *r, unsigned index) {
        return event_left(r, index);
}

FdMsg *native_event_watch_state(Region *r, RegionState state) {
        static const Shmem__RegionState states[] = {
                [REGION_DECLARED] = SHMEM__REGION_STATE__DECLARED,
                [REGION_ALLOCATED] = SHMEM__REGION_STATE__ALLOCATED,
                [REGION_FREED] = SHMEM__REGION_STATE__FREED,
                [REGION_DESTROYED] = SHMEM__REGION_STATE__DESTROYED,
        };
        Shmem__StatusChanged sc = SHMEM__STATUS_CHANGED__INIT;
        Message m = SHMEM__MESSAGE__INIT;

        sc.name = r->name;
        sc.state = states[state];
        m.body_case = SHMEM__MESSAGE__BODY_STATUS;
        m.status = &sc;
        return event_encode(&m, NULL, 0);
}
