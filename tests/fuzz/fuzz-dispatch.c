/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The native protocol's dispatcher (broker/native/dispatch.h) on a bare
 * registry: datagrams of three callers (root, and two connections of one
 * plain user) through msg_decode() and native_dispatch(), as the server
 * would hand them over, without sockets or an event loop.
 *
 * Input: one flags byte (bit i: caller i has said Hello already; bit 3: the
 * reload hook fails), then records of [u8 op][u16 length][datagram]: op % 4
 * is the caller (3: the connection of caller op / 4 % 3 closes instead).
 *
 * Checked beyond the sanitizers: every message the broker encodes decodes
 * cleanly (valid UTF-8, no NUL), a reply carries the request's serial, an
 * attach reply carries exactly the fds it names, and no fd outlives the input.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "dispatch.h"
#include "fuzz-util.h"
#include "log.h"

#define N_CALLERS 3

typedef struct Fuzz {
        Registry *reg;
        Native native;
        NativeCaller callers[N_CALLERS];
} Fuzz;

/* The front end's side of its peers: events are built (and thrown away) as the server would send them. */
static void peer_joined(Peer *self, Peer *other) {
        fdmsg_free(native_event_joined(self, other));
}

static void peer_left(Peer *self, Peer *other) {
        fdmsg_free(native_event_left(self, other));
}

static void peer_evicted(Peer *self) {
        NativeCaller *c = self->userdata;

        c->peer = NULL;
}

static const PeerOps peer_ops = { .joined = peer_joined, .left = peer_left, .evicted = peer_evicted };

/* The watchers' events, built for each watching caller. */
static void watch_region(void *userdata, Region *r, RegionState state) {
        Fuzz *f = userdata;

        for (unsigned i = 0; i < N_CALLERS; i++)
                if (f->callers[i].watching)
                        fdmsg_free(native_event_watch_state(r, state));
}

static void watch_joined(void *userdata, Region *r, Peer *p) {
        Fuzz *f = userdata;

        for (unsigned i = 0; i < N_CALLERS; i++)
                if (f->callers[i].watching)
                        fdmsg_free(native_event_watch_joined(r, p));
}

static void watch_left(void *userdata, Region *r, unsigned index, bool parked) {
        Fuzz *f = userdata;

        if (parked) /* as server.c: the watchers were told when it was parked */
                return;

        for (unsigned i = 0; i < N_CALLERS; i++)
                if (f->callers[i].watching)
                        fdmsg_free(native_event_watch_left(r, index));
}

static bool reload_fails;

static int hook_reload(void *userdata, const char **ret_error) {
        if (reload_fails) {
                *ret_error = "fuzz.conf:1: refused";
                return -EINVAL;
        }
        return 0;
}

static int hook_upgrade(void *userdata) {
        return 0;
}

/* A new connection of caller @i: what server.c's accept gives it. */
static void caller_connect(Fuzz *f, unsigned i, bool greeted) {
        static const struct { uid_t uid; pid_t pid; } who[N_CALLERS] = { { 0, 100 }, { 1000, 101 }, { 1000, 102 } };
        NativeCaller *c = &f->callers[i];

        *c = (NativeCaller) {
                .id = { .kind = SHMEM_PEER_KIND_HOST, .pid = who[i].pid, .uid = who[i].uid, .gid = who[i].uid },
                .conn_id = registry_new_conn_id(f->reg),
                .greeted = greeted,
                .userdata = c,
        };
        snprintf(c->id.label, sizeof(c->id.label), "pid-%d", (int) who[i].pid);
}

/* The connection closes: its peer leaves, as in server.c's client_free(). */
static void caller_close(Fuzz *f, unsigned i) {
        if (f->callers[i].peer)
                registry_detach(f->reg, f->callers[i].peer);
        caller_connect(f, i, false);
}

/* What the broker sends must be what a client can take. */
static void check_out(const NativeOut *out, const Message *req) {
        for (FdMsg *o = out->head; o; o = o->next) {
                _cleanup_(msg_freep) Message *m = NULL;
                const Shmem__AttachReply *a;

                if (msg_decode(&m, o) != 0)
                        abort();
                if (m->body_case != SHMEM__MESSAGE__BODY_REPLY || m->serial != req->serial)
                        abort();
                if (m->reply->body_case != SHMEM__REPLY__BODY_ATTACH)
                        continue;
                a = m->reply->attach;
                if (o->n_fds != 1 + a->vectors + a->n_peers)
                        abort();
                for (size_t i = 0; i < o->n_fds; i++)
                        if (fcntl(o->fds[i], F_GETFD) < 0)
                                abort();
        }
}

static void dispatch_one(Fuzz *f, unsigned i, const uint8_t *bytes, size_t n) {
        _cleanup_(fdmsg_freep) FdMsg *in = NULL;
        _cleanup_(msg_freep) Message *m = NULL;
        NativeOut out = {};
        int decoded, r;

        if (fdmsg_new(&in, bytes, n, NULL, 0) < 0)
                return;
        decoded = msg_decode(&m, in);
        if (decoded < 0) {
                caller_close(f, i); /* server.c drops a client whose datagram is not a Message */
                return;
        }
        r = native_dispatch(&f->native, &f->callers[i], m, decoded, &out);
        if (r < 0) {
                if (out.head)
                        abort(); /* a violation is answered by the drop alone */
                caller_close(f, i);
                return;
        }
        check_out(&out, m);
        native_out_done(&out);
        if (out.close)
                caller_close(f, i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const NativeHooks hooks = { .reload = hook_reload, .upgrade = hook_upgrade };
        FuzzInput in = { data, size };
        int fds = fuzz_count_fds();
        Limits limits = LIMITS_DEFAULT;
        Fuzz f = {};
        uint8_t flags;

        FUZZ_QUIET_LOGS();
        /* Small: what one input can make the registry allocate is bounded. */
        limits.max_regions = 8;
        limits.max_regions_per_uid = 4;
        limits.max_region_bytes = 1 << 20;
        limits.max_total_bytes = 4 << 20;
        limits.max_bytes_per_uid = 2 << 20;
        if (registry_new(&f.reg, &limits) < 0)
                return 0;
        if (registry_observe(f.reg, &(RegistryObserver) { .region = watch_region, .joined = watch_joined,
                                                          .left = watch_left, .userdata = &f }) < 0)
                abort();
        native_init(&f.native, f.reg, &peer_ops, &hooks);
        flags = fuzz_u8(&in);
        reload_fails = flags & 8;
        for (unsigned i = 0; i < N_CALLERS; i++)
                caller_connect(&f, i, flags & (1u << i));

        while (in.n > 0) {
                uint8_t op = fuzz_u8(&in);
                const uint8_t *bytes;
                size_t n;

                bytes = fuzz_record(&in, &n);
                if (op % 4 == 3)
                        caller_close(&f, op / 4 % N_CALLERS);
                else
                        dispatch_one(&f, op % 4, bytes, n);
        }

        for (unsigned i = 0; i < N_CALLERS; i++)
                if (f.callers[i].peer)
                        registry_detach(f.reg, f.callers[i].peer);
        registry_free(f.reg);
        fuzz_check_fds(fds, "fuzz-dispatch");
        return 0;
}
