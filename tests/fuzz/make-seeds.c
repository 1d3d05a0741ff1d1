/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * make-seeds OUTDIR: writes the seeds of the protobuf fuzz targets into
 * OUTDIR/<target>/seed-*, encoded by the real encoders (msg_encode(), the
 * state dump of a real registry), in the input formats the targets read
 * (tests/fuzz/fuzz-*.c). The corpus in the tree is its output; rerun it when
 * a format changes (docs/fuzzing.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "msg.h"
#include "state.h"

/* One seed file being built. */
typedef struct Seed {
        uint8_t buf[SHMEM_MSG_MAX];
        size_t n;
} Seed;

static void put(Seed *s, const void *p, size_t n) {
        if (s->n + n > sizeof(s->buf))
                abort();
        memcpy(s->buf + s->n, p, n);
        s->n += n;
}

static void put_u8(Seed *s, uint8_t v) {
        put(s, &v, 1);
}

/* @m encoded, behind a u16 length: a record of fuzz-util.h's fuzz_record(). */
static void put_msg(Seed *s, Message *m) {
        FdMsg *f;

        if (msg_encode(&f, m, NULL, 0) < 0 || f->n_bytes > UINT16_MAX)
                abort();
        put_u8(s, (uint8_t) f->n_bytes);
        put_u8(s, (uint8_t) (f->n_bytes >> 8));
        put(s, f->bytes, f->n_bytes);
        fdmsg_free(f);
}

static void save(const char *dir, const char *target, const char *name, const Seed *s) {
        char path[4096];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, target);
        (void) mkdir(path, 0755);
        snprintf(path, sizeof(path), "%s/%s/seed-%s", dir, target, name);
        f = fopen(path, "we");
        if (!f || fwrite(s->buf, 1, s->n, f) != s->n || fclose(f) != 0) {
                perror(path);
                exit(EXIT_FAILURE);
        }
}

/* --- fuzz-dispatch: [flags] then [caller][u16 length][Message] ----------------- */

/*
 * A Message of @serial with @body as a record, behind what the target reads
 * first. The body members share one pointer (a oneof), which protobuf-c
 * reads at the field's offset whatever its type.
 */
static void put_body(Seed *s, uint64_t serial, Shmem__Message__BodyCase body, ProtobufCMessage *sub) {
        Message m = SHMEM__MESSAGE__INIT;

        m.serial = serial;
        m.body_case = body;
        memcpy(&m.hello, &sub, sizeof(sub));
        put_msg(s, &m);
}

/* A request of fuzz-dispatch's @caller. */
static void put_request(Seed *s, uint8_t caller, uint64_t serial, Shmem__Message__BodyCase body,
                        ProtobufCMessage *sub) {
        put_u8(s, caller);
        put_body(s, serial, body, sub);
}

static void req_hello(Seed *s, uint8_t caller, uint64_t serial, const char *label) {
        Shmem__Hello h = SHMEM__HELLO__INIT;

        h.version = SHMEM_PROTOCOL_VERSION;
        h.label = (char *) label;
        put_request(s, caller, serial, SHMEM__MESSAGE__BODY_HELLO, &h.base);
}

static void req_attach(Seed *s, uint8_t caller, uint64_t serial, const char *name, uint64_t size,
                       Shmem__AttachMode mode) {
        Shmem__Attach a = SHMEM__ATTACH__INIT;

        a.name = (char *) name;
        a.size = size;
        a.mode = mode;
        put_request(s, caller, serial, SHMEM__MESSAGE__BODY_ATTACH, &a.base);
}

static void req_detach(Seed *s, uint8_t caller, uint64_t serial, const char *name) {
        Shmem__Detach d = SHMEM__DETACH__INIT;

        d.name = (char *) name;
        put_request(s, caller, serial, SHMEM__MESSAGE__BODY_DETACH, &d.base);
}

static void req_inspect(Seed *s, uint8_t caller, uint64_t serial, const char *name) {
        Shmem__Inspect i = SHMEM__INSPECT__INIT;

        i.name = (char *) name;
        put_request(s, caller, serial, SHMEM__MESSAGE__BODY_INSPECT, &i.base);
}

static void req_create(Seed *s, uint8_t caller, uint64_t serial, const char *name, uint64_t size,
                       unsigned max_peers, bool persistent) {
        Shmem__Create c = SHMEM__CREATE__INIT;

        c.name = (char *) name;
        c.size = size;
        c.max_peers = max_peers;
        c.persistent = persistent;
        put_request(s, caller, serial, SHMEM__MESSAGE__BODY_CREATE, &c.base);
}

static void req_destroy(Seed *s, uint8_t caller, uint64_t serial, const char *name, bool force) {
        Shmem__Destroy d = SHMEM__DESTROY__INIT;

        d.name = (char *) name;
        d.force = force;
        put_request(s, caller, serial, SHMEM__MESSAGE__BODY_DESTROY, &d.base);
}

static void req_list(Seed *s, uint8_t caller, uint64_t serial, uint32_t limit, uint64_t after) {
        Shmem__List l = SHMEM__LIST__INIT;

        l.limit = limit;
        l.after = after;
        put_request(s, caller, serial, SHMEM__MESSAGE__BODY_LIST, &l.base);
}

/* The requests without fields: Watch, Reload, Upgrade. */
static void req_status(Seed *s, uint8_t caller, uint64_t serial, uint32_t limit, const char *after) {
        Shmem__BrokerStatus st = SHMEM__BROKER_STATUS__INIT;

        st.limit = limit;
        st.after = (char *) after;
        put_request(s, caller, serial, SHMEM__MESSAGE__BODY_BROKER_STATUS, &st.base);
}

static void req_empty(Seed *s, uint8_t caller, uint64_t serial, Shmem__Message__BodyCase body,
                      const ProtobufCMessageDescriptor *desc) {
        ProtobufCMessage empty;

        if (desc->sizeof_message != sizeof(empty))
                abort();
        protobuf_c_message_init(desc, &empty);
        put_request(s, caller, serial, body, &empty);
}

static void seeds_dispatch(const char *dir) {
        static const struct {
                const char *name;
                Shmem__Message__BodyCase body;
                const ProtobufCMessageDescriptor *desc;
        } empties[] = {
                { "watch", SHMEM__MESSAGE__BODY_WATCH, &shmem__watch__descriptor },
                { "reload", SHMEM__MESSAGE__BODY_RELOAD, &shmem__reload__descriptor },
                { "upgrade", SHMEM__MESSAGE__BODY_UPGRADE, &shmem__upgrade__descriptor },
        };
        Seed s;

        /* One of each request, from root after its Hello. */
        s = (Seed) {};
        put_u8(&s, 0);
        req_hello(&s, 0, 1, "shmemctl");
        save(dir, "dispatch", "hello", &s);
        req_attach(&s, 0, 2, "demo", 65536, SHMEM__ATTACH_MODE__CREATE);
        save(dir, "dispatch", "attach", &s);
        req_detach(&s, 0, 3, "demo");
        save(dir, "dispatch", "detach", &s);

        s = (Seed) {};
        put_u8(&s, 1); /* root greeted already */
        req_attach(&s, 0, 1, "demo", 0, SHMEM__ATTACH_MODE__FIND);
        req_attach(&s, 0, 2, "demo", 4096, SHMEM__ATTACH_MODE__EXCLUSIVE);
        save(dir, "dispatch", "attach-find-exclusive", &s);

        s = (Seed) {};
        put_u8(&s, 1);
        req_create(&s, 0, 1, "camera0", 512 << 10, 4, true);
        req_inspect(&s, 0, 2, "camera0");
        req_destroy(&s, 0, 3, "camera0", false);
        save(dir, "dispatch", "create-inspect-destroy", &s);

        /* A List as clients before paging send it, then one in pages of two. */
        s = (Seed) {};
        put_u8(&s, 1);
        req_list(&s, 0, 1, 0, 0);
        save(dir, "dispatch", "list", &s);
        for (unsigned i = 0; i < 3; i++)
                req_create(&s, 0, 2 + i, (const char *[]) { "a", "b", "c" }[i], 4096, 0, false);
        req_list(&s, 0, 5, 2, 0);
        req_list(&s, 0, 6, 2, 2); /* after the second region created */
        save(dir, "dispatch", "list-pages", &s);

        for (size_t i = 0; i < ELEMENTSOF(empties); i++) {
                s = (Seed) {};
                put_u8(&s, 1);
                req_empty(&s, 0, 1, empties[i].body, empties[i].desc);
                save(dir, "dispatch", empties[i].name, &s);
        }

        /* A plain user asks what is for root. */
        s = (Seed) {};
        put_u8(&s, 2);
        req_create(&s, 1, 1, "mine", 4096, 0, false);
        req_empty(&s, 1, 2, SHMEM__MESSAGE__BODY_RELOAD, &shmem__reload__descriptor);
        save(dir, "dispatch", "refused", &s);

        /* What root and a plain user are told of the limits, after each made a region. */
        s = (Seed) {};
        put_u8(&s, 3); /* root and the user's first connection greeted */
        req_attach(&s, 0, 1, "mine", 4096, SHMEM__ATTACH_MODE__CREATE);
        req_attach(&s, 1, 1, "theirs", 65536, SHMEM__ATTACH_MODE__CREATE);
        req_status(&s, 0, 2, 0, "");
        req_status(&s, 1, 2, 0, "");
        save(dir, "dispatch", "status", &s);
        /* Root's holders in pages of one, after its own row. */
        req_status(&s, 0, 3, 1, "");
        req_status(&s, 0, 4, 1, "uid:0");
        save(dir, "dispatch", "status-pages", &s);

        /* Three connections: a watcher, two peers that meet, one leaves, root destroys by force. */
        s = (Seed) {};
        put_u8(&s, 0);
        req_hello(&s, 0, 1, "shmemctl");
        req_empty(&s, 0, 2, SHMEM__MESSAGE__BODY_WATCH, &shmem__watch__descriptor);
        req_hello(&s, 1, 1, "peer-a");
        req_attach(&s, 1, 2, "demo", 65536, SHMEM__ATTACH_MODE__CREATE);
        req_hello(&s, 2, 1, "peer-b");
        req_attach(&s, 2, 2, "demo", 0, SHMEM__ATTACH_MODE__FIND);
        req_inspect(&s, 0, 3, "demo");
        req_detach(&s, 1, 3, "demo");
        put_u8(&s, 3 | 2 << 2); /* caller 2's connection closes */
        put_u8(&s, 0);
        put_u8(&s, 0);
        req_attach(&s, 1, 4, "demo", 0, SHMEM__ATTACH_MODE__FIND);
        req_destroy(&s, 0, 4, "demo", true);
        req_list(&s, 0, 5, 0, 0);
        save(dir, "dispatch", "scenario", &s);
}

/* --- fuzz-libshmem: [u8 fds][u8 kind][u16 length][Message] ---------------------- */

static void reply_hello(Seed *s, uint64_t serial, Shmem__Status status) {
        Shmem__HelloReply hr = SHMEM__HELLO_REPLY__INIT;
        Shmem__Reply r = SHMEM__REPLY__INIT;

        hr.version = SHMEM_PROTOCOL_VERSION;
        hr.broker = "shmem-brokerd " SHMEM_VERSION;
        hr.instance = 0x1234;
        r.status = status;
        r.error = status ? "this broker speaks protocol version 1" : "";
        r.body_case = SHMEM__REPLY__BODY_HELLO;
        r.hello = &hr;
        put_u8(s, 0);
        put_u8(s, 0);
        put_body(s, serial, SHMEM__MESSAGE__BODY_REPLY, &r.base);
}

/* The attach reply of a region of @max_peers at index @index, with @n_peers others at 0, 1, ... */
static void reply_attach(Seed *s, uint64_t serial, unsigned index, unsigned max_peers, unsigned n_peers) {
        Shmem__AttachReply a = SHMEM__ATTACH_REPLY__INIT;
        Shmem__PeerInfo infos[SHMEM_PEERS_MAX], *ptrs[SHMEM_PEERS_MAX];
        Shmem__Reply r = SHMEM__REPLY__INIT;
        unsigned k = 0;

        a.index = index;
        a.data_offset = SHMEM_DATA_OFFSET;
        a.data_size = 4096;
        a.region_size = 8192;
        a.max_peers = max_peers;
        a.vectors = max_peers + 1;
        a.created = n_peers == 0;
        for (unsigned i = 0; k < n_peers; i++) {
                if (i == index)
                        continue;
                shmem__peer_info__init(&infos[k]);
                infos[k].index = i;
                infos[k].kind = SHMEM__PEER_KIND__KIND_HOST;
                infos[k].label = "peer";
                infos[k].pid = 100 + i;
                infos[k].fd = (int) (1 + a.vectors + k);
                ptrs[k] = &infos[k];
                k++;
        }
        a.n_peers = n_peers;
        a.peers = ptrs;
        r.body_case = SHMEM__REPLY__BODY_ATTACH;
        r.attach = &a;
        put_u8(s, (uint8_t) (1 + a.vectors + n_peers));
        put_u8(s, 13); /* the memfd: 2^13 = region_size */
        put_body(s, serial, SHMEM__MESSAGE__BODY_REPLY, &r.base);
}

static void event_joined(Seed *s, unsigned index, uint64_t epoch) {
        Shmem__Joined j = SHMEM__JOINED__INIT;
        Shmem__PeerInfo pi = SHMEM__PEER_INFO__INIT;

        pi.index = index;
        pi.kind = SHMEM__PEER_KIND__KIND_QEMU;
        pi.label = "guest1";
        pi.fd = 0;
        j.name = "fuzz";
        j.epoch = epoch;
        j.peer = &pi;
        put_u8(s, 1);
        put_u8(s, 0x20); /* an eventfd, rung */
        put_body(s, 0, SHMEM__MESSAGE__BODY_JOINED, &j.base);
}

static void event_left(Seed *s, unsigned index, uint64_t epoch) {
        Shmem__Left l = SHMEM__LEFT__INIT;

        l.name = "fuzz";
        l.epoch = epoch;
        l.index = index;
        put_u8(s, 0);
        put_u8(s, 0);
        put_body(s, 0, SHMEM__MESSAGE__BODY_LEFT, &l.base);
}

static void seeds_libshmem(const char *dir) {
        Seed s;

        s = (Seed) {};
        reply_hello(&s, 1, SHMEM__STATUS__VERSION);
        save(dir, "libshmem", "hello-refused", &s);

        s = (Seed) {};
        reply_hello(&s, 1, SHMEM__STATUS__OK);
        reply_attach(&s, 2, 0, 2, 0);
        save(dir, "libshmem", "attach-alone", &s);

        s = (Seed) {};
        reply_hello(&s, 1, SHMEM__STATUS__OK);
        event_left(&s, 3, 1); /* an event before the reply is queued */
        reply_attach(&s, 2, 1, 4, 2);
        event_joined(&s, 3, 4);
        event_left(&s, 0, 5);
        save(dir, "libshmem", "attach-peers-events", &s);

        s = (Seed) {};
        reply_hello(&s, 1, SHMEM__STATUS__OK);
        reply_attach(&s, 2, 63, 64, 3);
        save(dir, "libshmem", "attach-64", &s);
}

/* --- fuzz-state: [keeper flags][image], a real registry's dump ---------------------- */

static void peer_joined(Peer *self, Peer *other) {
}
static void peer_left(Peer *self, Peer *other) {
}
static void peer_evicted(Peer *self) {
}
static const PeerOps peer_ops = { .joined = peer_joined, .left = peer_left, .evicted = peer_evicted };

static Peer *attach(Registry *reg, const char *name, const PeerIdentity *id) {
        const char *error;
        bool created;
        Peer *p;

        if (registry_attach(reg,
                            &(AttachRequest) { .name = name, .mode = ATTACH_CREATE, .size = 65536, .id = id,
                                               .ops = &peer_ops, .conn_id = registry_new_conn_id(reg) },
                            &p, &created, &error) != 0)
                abort();
        return p;
}

/* The native front end's part: host peers' connections, as its FrontConnOps.dump adds them. */
static void add_host_conns(Region *r, State *st) {
        for (unsigned k = 0; k < r->max_peers; k++) {
                Peer *p = r->peers[k];
                Shmem__State__Conn *c;

                if (!p || p->id.kind != SHMEM_PEER_KIND_HOST)
                        continue;
                c = state_add_conn(st);
                if (!c)
                        abort();
                c->id = p->conn_id;
                c->frontend = SHMEM__STATE__FRONTEND__NATIVE;
                c->greeted = true;
                c->label = p->id.label;
                c->pid = (uint32_t) p->id.pid;
        }
}

/* The bytes of image @fd after the keeper byte already in @s. */
static void put_image(Seed *s, int fd) {
        ssize_t n = pread(fd, s->buf + s->n, sizeof(s->buf) - s->n, 0);

        if (n <= 0 || (size_t) n == sizeof(s->buf) - s->n)
                abort();
        s->n += (size_t) n;
}

static void seeds_state(const char *dir) {
        static const RegionDecl decls[] = {
                { .name = "camera0", .size = 1 << 20, .max_peers = 4, .persistent = true, .mode = 0660 },
                { .name = "compat", .size = 1 << 20, .signal_mode = SHMEM_SIGNAL_MODE_IVSHMEM, .vectors = 4 },
                { .name = "later", .size = 65536 },
        };
        PeerIdentity host = { .kind = SHMEM_PEER_KIND_HOST, .label = "shmem-peer", .pid = 200, .uid = 0 };
        PeerIdentity vm = { .kind = SHMEM_PEER_KIND_QEMU, .label = "demo1", .pid = 201, .uid = 64055,
                            .gid = 64055, .vm_uuid = "7f3c0a52-6c1e-4c55-9a55-0d1f2e3a4b5c", .libvirt = true };
        Limits limits = LIMITS_DEFAULT;
        State st = SHMEM__STATE__STATE__INIT, c1 = SHMEM__STATE__STATE__INIT, c2 = SHMEM__STATE__STATE__INIT;
        StateImage image;
        Registry *reg;
        Peer *gone;
        Seed s = {};
        size_t n;

        if (registry_new(&reg, &limits) < 0 ||
            registry_reconfigure(reg, &limits, NULL, 0, decls, ELEMENTSOF(decls)) != 0)
                abort();
        attach(reg, "camera0", &host);
        attach(reg, "camera0", &vm);
        attach(reg, "compat", &vm);
        /* A snapshot, then two changes: "demo" made by a host peer's attach; its peer on
         * "later" gone, "later" declared with none. */
        gone = attach(reg, "later", &host);
        if (state_dump_registry(reg, &st) < 0)
                abort();
        for (size_t i = 0; i < reg->n_regions; i++)
                add_host_conns(reg->regions[i], &st);
        st.generation = 3;
        if (state_image_new(&image, &st) < 0)
                abort();
        attach(reg, "demo", &host);
        if (state_dump_region(registry_find(reg, "demo"), &c1) < 0)
                abort();
        add_host_conns(registry_find(reg, "demo"), &c1);
        c1.next_conn_id = reg->next_conn_id;
        c1.generation = 3;
        if (state_add_removed_conn(&c2, gone->conn_id) < 0)
                abort();
        registry_detach(reg, gone);
        if (state_dump_region(registry_find(reg, "later"), &c2) < 0)
                abort();
        c2.next_conn_id = reg->next_conn_id;
        c2.generation = 3;
        if (state_image_append(&image, &c1) < 0 || state_image_append(&image, &c2) < 0)
                abort();
        put_u8(&s, 0); /* every fd comes back */
        put_image(&s, image.fd);
        save(dir, "state", "registry", &s);
        s.buf[0] = 0x04; /* one take in eight fails */
        save(dir, "state", "registry-lost-fds", &s);
        /* A third change torn by a kill -9 half-way through its write. */
        s.buf[0] = 0;
        n = s.n;
        if (state_image_append(&image, &c1) < 0)
                abort();
        s.n = 1;
        put_image(&s, image.fd);
        s.n = n + (s.n - n) / 2;
        save(dir, "state", "registry-torn", &s);
        state_image_close(&image);
        /* What a broker before the log stored: one bare State, the whole registry. */
        state_build_done(&st);
        if (state_dump_registry(reg, &st) < 0)
                abort();
        for (size_t i = 0; i < reg->n_regions; i++)
                add_host_conns(reg->regions[i], &st);
        st.version = STATE_VERSION;
        st.generation = 3;
        s.n = 0;
        put_u8(&s, 0);
        n = shmem__state__state__get_packed_size(&st);
        if (s.n + n > sizeof(s.buf))
                abort();
        s.n += shmem__state__state__pack(&st, s.buf + s.n);
        save(dir, "state", "registry-bare", &s);
        state_build_done(&c1);
        state_build_done(&c2);
        state_build_done(&st);
        registry_free(reg);
}

int main(int argc, char **argv) {
        if (argc != 2) {
                fprintf(stderr, "Usage: make-seeds OUTDIR (tests/fuzz/corpus)\n");
                return EXIT_FAILURE;
        }
        seeds_dispatch(argv[1]);
        seeds_libshmem(argv[1]);
        seeds_state(argv[1]);
        return EXIT_SUCCESS;
}
