/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Adopting a stored state after a restart (broker/service/state.h,
 * docs/persistence.md): state_parse(), then state_adopt_registry() with a
 * fake Keeper whose take() hands out fresh fds of the kind the key names (a
 * memfd of the size the state claims for the region, capped; eventfds), the
 * native connections of the state rebound as server_restore() does, then
 * registry_adopt_finish(), a dump of what came back, and registry_clear().
 *
 * Input: one byte of Keeper behaviour (bit i: every take() numbered i mod 8
 * fails, as an fd lost in the restart), then a stored image (state-image.h:
 * a snapshot and its log, or an older image's bare State).
 *
 * Checked beyond the sanitizers: what was adopted is written into an image
 * (a snapshot and one change) that reads back as it should, and no fd
 * outlives the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>

#include "fuzz-util.h"
#include "log.h"
#include "state.h"

#define MEMORY_MAX (UINT64_C(1) << 30) /* sparse: only the control page is touched */
#define TAKES_MAX 4096                 /* fds one input may be handed */

typedef struct FakeKeeper {
        Keeper keeper;
        const State *state;
        uint8_t fail;
        unsigned takes;
} FakeKeeper;

static void fake_keep(Keeper *k, const FdKey *key, int fd) {
}
static void fake_drop(Keeper *k, const FdKey *key) {
}
static void fake_changed(Keeper *k, uint64_t id) {
}

/* The size the state says region @name has (the first of that name), or 0. */
static uint64_t claimed_size(const State *s, const char *name) {
        for (size_t i = 0; i < s->n_regions; i++)
                if (strcmp(s->regions[i]->name, name) == 0)
                        return s->regions[i]->region_size;
        return 0;
}

static int fake_take(Keeper *k, const FdKey *key) {
        FakeKeeper *f = (FakeKeeper *) k;
        unsigned n = f->takes++;
        uint64_t size;
        int fd;

        if (n >= TAKES_MAX || f->fail & (1u << (n % 8)))
                return -1;
        switch (key->kind) {
        case FD_MEMORY:
                size = claimed_size(f->state, key->region);
                fd = memfd_create("fuzz-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);
                if (fd >= 0 && ftruncate(fd, (off_t) (size <= MEMORY_MAX ? size : SHMEM_PAGE_SIZE)) < 0)
                        fd = fd_close(fd);
                return fd;
        case FD_VECTOR:
                return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        default:
                return -1;
        }
}

static void peer_joined(Peer *self, Peer *other) {
}
static void peer_left(Peer *self, Peer *other) {
}
static void peer_evicted(Peer *self) {
}
static const PeerOps peer_ops = { .joined = peer_joined, .left = peer_left, .evicted = peer_evicted };

/* The native front end's part of a restore: its connections take their peers back. */
static void rebind(Registry *reg, const State *s) {
        for (size_t i = 0; i < s->n_conns; i++) {
                Peer *p;

                if (s->conns[i]->frontend != SHMEM__STATE__FRONTEND__NATIVE)
                        continue;
                p = registry_find_peer_by_conn(reg, s->conns[i]->id);
                if (p && !p->ops)
                        p->ops = &peer_ops;
        }
}

/* What came back must be storable again: a snapshot of it, and a log that removes the first
 * region and puts the last again, read back as one region fewer. */
static void check_dump(Registry *reg) {
        State d = SHMEM__STATE__STATE__INIT, c = SHMEM__STATE__STATE__INIT;
        StateImage image;
        State *again;
        size_t want = reg->n_regions;

        if (state_dump_registry(reg, &d) < 0 || state_image_new(&image, &d) < 0) {
                state_build_done(&d);
                return;
        }
        if (reg->n_regions > 1 && state_add_removed_region(&c, reg->regions[0]->name) == 0 &&
            state_dump_region(reg->regions[reg->n_regions - 1], &c) == 0 && state_image_append(&image, &c) == 0)
                want--;
        again = state_read(image.fd);
        if (!again || again->n_regions != want)
                abort();
        state_free(again);
        state_image_close(&image);
        state_build_done(&c);
        state_build_done(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        FakeKeeper keeper = { .keeper = { fake_keep, fake_drop, fake_take, fake_changed } };
        _cleanup_(state_freep) State *s = NULL;
        int fds = fuzz_count_fds();
        Limits limits = LIMITS_DEFAULT;
        Registry *reg;

        FUZZ_QUIET_LOGS();
        if (size < 1)
                return 0;
        keeper.fail = data[0];
        s = state_parse(data + 1, size - 1);
        if (!s)
                return 0;
        keeper.state = s;
        if (registry_new(&reg, &limits) < 0)
                return 0;
        if (state_adopt_registry(reg, s, &keeper.keeper) == 0) {
                rebind(reg, s);
                registry_adopt_finish(reg);
                check_dump(reg);
        }
        registry_clear(reg);
        registry_free(reg);
        fuzz_check_fds(fds, "fuzz-state");
        return 0;
}
