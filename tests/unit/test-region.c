/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests of broker/core: regions and the registry, without transports or an event loop. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test-util.h"
#include "macro.h"
#include "registry.h"

/* A front end that records what the core told it. */
typedef struct Recorder {
        unsigned joined, left, evicted, parked, unparked;
        int last_joined_fd;
} Recorder;

static void rec_joined(Peer *self, Peer *other) {
        Recorder *r = self->userdata;
        const int *fds;

        r->joined++;
        if (region_fds_to(self->region, other, self, &fds) == 1)
                ck_assert_int_eq(fds[0], other->ev[self->index]);
        else
                ck_assert_int_eq(fds[0], other->ev[0]);
        r->last_joined_fd = fds[0];
}
static void rec_left(Peer *self, Peer *other) {
        ((Recorder *) self->userdata)->left++;
}
static void rec_evicted(Peer *self) {
        ((Recorder *) self->userdata)->evicted++;
}
static const PeerOps rec_ops = { .joined = rec_joined, .left = rec_left, .evicted = rec_evicted };

/* One whose wire takes departures back (the native protocol's shape). */
static void rec_parked(Peer *self, Peer *other) {
        ((Recorder *) self->userdata)->parked++;
}
static void rec_unparked(Peer *self, Peer *other) {
        ((Recorder *) self->userdata)->unparked++;
}
static const PeerOps rec_parking_ops = { .joined = rec_joined, .left = rec_left, .evicted = rec_evicted,
                                         .parked = rec_parked, .unparked = rec_unparked };

static Registry *reg;
static int fds_before;

static void setup(void) {
        Limits l = LIMITS_DEFAULT;

        fds_before = count_fds();
        l.max_regions = 4;
        l.max_total_bytes = 8u << 20;
        ck_assert_int_eq(registry_new(&reg, &l), 0);
}

static void teardown(void) {
        registry_free(reg);
        ck_assert_int_eq(count_fds(), fds_before);
}

static Peer *attach_full(unsigned kind, uid_t uid, const char *name, uint64_t size, Recorder *rec, int expect) {
        PeerIdentity id = { .kind = kind, .label = "unit", .uid = uid, .gid = uid };
        const char *error;
        Peer *p = NULL;
        int r = registry_attach(reg,
                                &(AttachRequest) { .name = name, .mode = ATTACH_CREATE, .size = size, .id = &id,
                                                   .ops = &rec_ops, .userdata = rec },
                                &p, NULL, &error);

        ck_assert_int_eq(r, expect);
        return r == 0 ? p : NULL;
}

static Peer *attach_as(unsigned kind, const char *name, uint64_t size, Recorder *rec, int expect) {
        return attach_full(kind, 0, name, size, rec, expect);
}

static Peer *attach(const char *name, uint64_t size, Recorder *rec, int expect) {
        return attach_as(SHMEM_PEER_KIND_HOST, name, size, rec, expect);
}

START_TEST(test_size_rounding) {
        uint64_t d, t;

        ck_assert(region_size_for(SHMEM_SIGNAL_MODE_SHMEM, 1, UINT64_MAX, &d, &t));
        ck_assert_uint_eq(d, 4096);
        ck_assert_uint_eq(t, 8192);
        ck_assert(region_size_for(SHMEM_SIGNAL_MODE_SHMEM, 1 << 20, UINT64_MAX, &d, &t));
        ck_assert_uint_eq(t, 2 << 20); /* 1 MiB + control page -> 2 MiB */
        ck_assert(region_size_for(SHMEM_SIGNAL_MODE_SHMEM, (1 << 20) - 4096, UINT64_MAX, &d, &t));
        ck_assert_uint_eq(t, 1 << 20);
        ck_assert(!region_size_for(SHMEM_SIGNAL_MODE_SHMEM, 0, UINT64_MAX, &d, &t));
        ck_assert(!region_size_for(SHMEM_SIGNAL_MODE_SHMEM, 1 << 30, 1 << 30, &d, &t));
        for (uint64_t s = 1; s < (UINT64_C(1) << 34); s = s * 3 + 7) {
                ck_assert(region_size_for(SHMEM_SIGNAL_MODE_SHMEM, s, UINT64_MAX, &d, &t));
                ck_assert_uint_eq(t & (t - 1), 0); /* a power of two: QEMU asserts it */
                ck_assert_uint_ge(t, d + SHMEM_PAGE_SIZE);
        }
}
END_TEST

START_TEST(test_compat_mode) {
        RegionDecl d = { .name = "compat", .size = 3 << 20, .signal_mode = SHMEM_SIGNAL_MODE_IVSHMEM, .vectors = 4 };
        Recorder rec[2] = {};
        const char *error;
        const int *fds;
        Region *r;
        Peer *a, *b;
        uint64_t dsz, tsz;

        /* No control page: 3 MiB of data is a 4 MiB BAR, all of it the guests'. */
        ck_assert(region_size_for(SHMEM_SIGNAL_MODE_IVSHMEM, 3 << 20, UINT64_MAX, &dsz, &tsz));
        ck_assert_uint_eq(tsz, 4 << 20);
        ck_assert_uint_eq(dsz, 4 << 20);
        ck_assert_int_eq(registry_declare(reg, &d, &r, &error), 0);
        ck_assert_uint_eq(r->vectors, 4);
        /* For QEMU guests only, whatever name a host peer reaches it by. */
        attach("compat", 0, &rec[0], CORE_E_INVALID);
        a = attach_as(SHMEM_PEER_KIND_QEMU, "compat", 0, &rec[0], 0);
        b = attach_as(SHMEM_PEER_KIND_QEMU, "compat", 0, &rec[1], 0);
        ck_assert_ptr_null(r->page);
        /* contrib's semantics: every vector of the other peer. */
        ck_assert_uint_eq(region_fds_to(r, b, a, &fds), 4);
        ck_assert_int_eq(fds[3], b->ev[3]);
        ck_assert_uint_eq(rec[0].joined, 1);
        registry_detach(reg, b);
        registry_detach(reg, a);
        ck_assert_int_eq(r->memfd, -1);
}
END_TEST

START_TEST(test_names) {
        ck_assert(shmem_name_valid("a"));
        ck_assert(shmem_name_valid("vm-a.ring_0"));
        ck_assert(!shmem_name_valid(""));
        ck_assert(!shmem_name_valid(".x"));
        ck_assert(!shmem_name_valid("a/b"));
        ck_assert(!shmem_name_valid("a b"));
}
END_TEST

START_TEST(test_indices_and_control_page) {
        Recorder r[3] = {};
        Peer *p0 = attach("r", 4096, &r[0], 0), *p1 = attach("r", 4096, &r[1], 0), *p2;
        Region *rg = p0->region;
        struct shmem_control_page *pg = rg->page;
        struct stat st;
        unsigned seals;

        ck_assert_uint_eq(pg->magic, SHMEM_LAYOUT_MAGIC);
        ck_assert_str_eq(pg->name, "r");
        ck_assert_uint_eq(pg->vectors, 17);
        ck_assert_uint_eq(pg->active, 0x3);
        ck_assert_uint_eq(pg->epoch, 2);
        ck_assert_uint_eq(r[0].joined, 1);
        ck_assert_uint_eq(pg->slots[1].state, SHMEM_SLOT_ACTIVE);
        ck_assert_str_eq(pg->slots[1].label, "unit");

        /* Memory: sealed against resizing, a power of two, writable. */
        ck_assert_int_eq(fstat(rg->memfd, &st), 0);
        ck_assert_int_eq(st.st_size, 8192);
        seals = (unsigned) fcntl(rg->memfd, F_GET_SEALS);
        ck_assert_uint_eq(seals, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);

        /* p1 signals p0 and leaves at once: the signal stays for p0... */
        __atomic_fetch_or(&pg->slots[0].pending, BIT(1), __ATOMIC_SEQ_CST);
        registry_detach(reg, p1);
        ck_assert_uint_eq(pg->slots[0].pending, BIT(1));
        ck_assert_uint_eq(pg->slots[1].state, SHMEM_SLOT_FREE);
        ck_assert_uint_eq(pg->active, 0x1);
        ck_assert_uint_eq(r[0].left, 1);

        /* Index 1 is reused; the doorbell id is not (QEMU 7.2 heap bug). */
        p2 = attach("r", 4096, &r[2], 0);
        ck_assert_uint_eq(p2->index, 1);
        /* ...until index 1 is given out again: the newcomer inherits nothing. */
        ck_assert_uint_eq(pg->slots[0].pending, 0);
        ck_assert_uint_eq(p2->doorbell_id, 2);
        ck_assert_uint_eq(pg->slots[1].doorbell_id, 2);
        registry_detach(reg, p2);
        registry_detach(reg, p0);
        /* Undeclared and empty: forgotten. */
        ck_assert_ptr_null(registry_find(reg, "r"));
}
END_TEST

START_TEST(test_client_max) {
        Recorder rec = {};
        Peer *p[16];
        const char *error;

        ck_assert_int_eq(registry_declare(reg, &(RegionDecl) { .name = "small", .size = 4096, .max_peers = 2, .persistent = false }, NULL, &error), 0);
        p[0] = attach("small", 0, &rec, 0);
        p[1] = attach("small", 0, &rec, 0);
        attach("small", 0, &rec, CORE_E_CLIENT_MAX);
        registry_detach(reg, p[0]);
        registry_detach(reg, p[1]);
        /* Declared: still known, memory freed. */
        ck_assert_ptr_nonnull(registry_find(reg, "small"));
        ck_assert_int_eq(registry_find(reg, "small")->memfd, -1);
        ck_assert_uint_eq(reg->allocated_bytes, 0);
}
END_TEST

START_TEST(test_limits) {
        Recorder rec = {};
        const char *error;
        Peer *a, *b;

        /* 8 MiB total: a 4 MiB region (3 MiB + page) fits twice, not three times. */
        a = attach("a", 3 << 20, &rec, 0);
        b = attach("b", 3 << 20, &rec, 0);
        attach("c", 3 << 20, &rec, CORE_E_LIMIT);
        ck_assert_ptr_null(registry_find(reg, "c"));
        ck_assert_int_eq(registry_declare(reg, &(RegionDecl) { .name = "d", .size = 4096, .max_peers = 0, .persistent = false }, NULL, &error), 0);
        ck_assert_int_eq(registry_declare(reg, &(RegionDecl) { .name = "e", .size = 4096, .max_peers = 0, .persistent = false }, NULL, &error), 0);
        /* Four regions is this registry's limit. */
        ck_assert_int_eq(registry_declare(reg, &(RegionDecl) { .name = "f", .size = 4096, .max_peers = 0, .persistent = false }, NULL, &error), CORE_E_LIMIT);
        ck_assert_int_eq(registry_declare(reg, &(RegionDecl) { .name = "d", .size = 4096, .max_peers = 0, .persistent = false }, NULL, &error), CORE_E_EXISTS);
        ck_assert_int_eq(registry_declare(reg, &(RegionDecl) { .name = "g", .size = 0, .max_peers = 0, .persistent = false }, NULL, &error), CORE_E_BAD_SIZE);
        ck_assert_int_eq(registry_declare(reg, &(RegionDecl) { .name = "h", .size = 4096, .max_peers = 65, .persistent = false }, NULL, &error),
                         CORE_E_INVALID);
        registry_detach(reg, a);
        registry_detach(reg, b);
        ck_assert_uint_eq(reg->allocated_bytes, 0);
}
END_TEST

START_TEST(test_persistent_and_destroy) {
        Recorder rec = {};
        const char *error;
        Region *r;
        Peer *p;

        ck_assert_int_eq(registry_declare(reg, &(RegionDecl) { .name = "keep", .size = 4096, .max_peers = 0, .persistent = true }, &r, &error), 0);
        ck_assert_int_ge(r->memfd, 0);
        p = attach("keep", 0, &rec, 0);
        strcpy((char *) r->page + SHMEM_PAGE_SIZE - 8, "x"); /* touch */
        ck_assert_int_eq(registry_destroy(reg, "keep", false, &error), CORE_E_BUSY);
        registry_detach(reg, p);
        ck_assert_int_ge(r->memfd, 0); /* persistent: memory survives its last peer */
        p = attach("keep", 0, &rec, 0);
        ck_assert_int_eq(registry_destroy(reg, "keep", true, &error), 0);
        ck_assert_uint_eq(rec.evicted, 1);
        ck_assert_ptr_null(registry_find(reg, "keep"));
        ck_assert_int_eq(registry_destroy(reg, "keep", true, &error), CORE_E_NOT_FOUND);
}
END_TEST


START_TEST(test_accounts) {
        Recorder rec = {};
        const char *error;
        Peer *a, *b;

        reg->limits.max_regions_per_uid = 1;
        a = attach_full(SHMEM_PEER_KIND_HOST, 1000, "mine", 4096, &rec, 0);
        ck_assert_uint_eq(registry_account(reg, "uid:1000")->regions, 1);
        ck_assert_uint_eq(registry_account(reg, "uid:1000")->bytes, 8192);
        attach_full(SHMEM_PEER_KIND_HOST, 1000, "more", 4096, &rec, CORE_E_LIMIT);
        /* Attaching to another's region costs nothing; root is charged nothing. */
        b = attach_full(SHMEM_PEER_KIND_HOST, 1000, "mine", 0, &rec, 0);
        ck_assert_uint_eq(registry_account(reg, "uid:1000")->regions, 1);
        ck_assert_int_eq(registry_declare(reg, &(RegionDecl) { .name = "decl", .size = 4096 }, NULL, &error), 0);
        ck_assert_ptr_null(registry_account(reg, "uid:0"));
        registry_detach(reg, b);
        registry_detach(reg, a);
        /* The region went with its last peer, and the account with it. */
        ck_assert_ptr_null(registry_account(reg, "uid:1000"));
}
END_TEST

START_TEST(test_closed) {
        Recorder rec = {};
        Peer *p;

        ck_assert_int_eq(registry_set_closed(reg, "refusing"), 0);
        attach("r", 4096, &rec, CORE_E_NO_PERMISSION);
        ck_assert_int_eq(registry_set_closed(reg, NULL), 0);
        p = attach("r", 4096, &rec, 0);
        registry_detach(reg, p);
}
END_TEST

START_TEST(test_reconfigure_cuts_a_refused_peer) {
        RegionDecl open = { .name = "later", .size = 4096, .mode = 0666 };
        RegionDecl root_only = { .name = "later", .size = 4096, .owner = 0, .mode = 0600 };
        Recorder rec[2] = {};
        Region *r;
        int memfd_before;

        ck_assert_int_eq(registry_reconfigure(reg, &reg->limits, NULL, 0, &open, 1), 0);
        attach_full(SHMEM_PEER_KIND_HOST, 1000, "later", 0, &rec[0], 0);
        attach("later", 0, &rec[1], 0);
        r = registry_find(reg, "later");
        memfd_before = r->memfd;
        ck_assert_int_ge(memfd_before, 0);
        /* uid 1000 may no longer attach: everybody goes, and the memory with them. */
        ck_assert_int_eq(registry_reconfigure(reg, &reg->limits, NULL, 0, &root_only, 1), 0);
        ck_assert_uint_eq(rec[0].evicted, 1);
        ck_assert_uint_eq(rec[1].evicted, 1);
        ck_assert_uint_eq(r->n_peers, 0);
        ck_assert_int_eq(r->memfd, -1);
        ck_assert_uint_eq(reg->allocated_bytes, 0);
        /* A reload that admits everybody attached cuts nothing. */
        attach("later", 0, &rec[1], 0);
        ck_assert_int_eq(registry_reconfigure(reg, &reg->limits, NULL, 0, &root_only, 1), 0);
        ck_assert_uint_eq(rec[1].evicted, 1);
        ck_assert_uint_eq(r->n_peers, 1);
        registry_clear(reg);
}
END_TEST

START_TEST(test_adopt_checks_the_stored_sizes) {
        RegionAdoption a = { .decl = { .name = "adopted", .size = 4096 }, .data_size = 4096,
                             .region_size = 3 * 4096, .declared = true };
        const char *error;
        Region *r;

        /* Not a power of two: QEMU would abort on it, and it is not what any broker made. */
        a.memfd = memfd_create("test", MFD_CLOEXEC);
        ck_assert_int_eq(ftruncate(a.memfd, 3 * 4096), 0);
        ck_assert_int_eq(registry_adopt_region(reg, &a, &r, &error), CORE_E_INVALID);
        ck_assert_int_eq(a.memfd, -1);
        ck_assert_ptr_null(registry_find(reg, "adopted"));
        /* A memfd whose size is not the stored one. */
        a.region_size = 8192;
        a.memfd = memfd_create("test", MFD_CLOEXEC);
        ck_assert_int_eq(ftruncate(a.memfd, 4096), 0);
        ck_assert_int_lt(registry_adopt_region(reg, &a, &r, &error), 0);
        ck_assert_ptr_null(registry_find(reg, "adopted"));
        /* The right one comes back, with no peer. */
        a.memfd = memfd_create("test", MFD_CLOEXEC);
        ck_assert_int_eq(ftruncate(a.memfd, 8192), 0);
        ck_assert_int_eq(registry_adopt_region(reg, &a, &r, &error), 0);
        ck_assert_int_ge(r->memfd, 0);
        registry_adopt_finish(reg);
        ck_assert_ptr_nonnull(registry_find(reg, "adopted"));
}
END_TEST

START_TEST(test_park) {
        Recorder rec[4] = {};
        PeerIdentity id = { .kind = SHMEM_PEER_KIND_HOST, .label = "native" };
        const char *error;
        Peer *a = attach("p", 4096, &rec[0], 0), *b = attach_as(SHMEM_PEER_KIND_QEMU, "p", 0, &rec[1], 0), *n, *c;
        struct shmem_control_page *pg = a->region->page;
        uint64_t epoch = pg->epoch;
        uint32_t id_b = b->doorbell_id;

        ck_assert_int_eq(registry_attach(reg, &(AttachRequest) { .name = "p", .id = &id, .ops = &rec_parking_ops,
                                                                 .userdata = &rec[2] },
                                         &n, NULL, &error), 0);
        /* Parked: out of the membership as a detach shows it, index and doorbell id kept. */
        registry_park(reg, b);
        ck_assert(b->parked);
        ck_assert_uint_eq(pg->active, 0x5);
        ck_assert_uint_gt(pg->epoch, epoch);
        ck_assert_uint_eq(pg->slots[1].state, SHMEM_SLOT_FREE);
        ck_assert_uint_eq(rec[0].left, 0);    /* a front end that cannot take it back is told nothing */
        ck_assert_uint_eq(rec[2].parked, 1);  /* one that can is */
        c = attach("p", 0, &rec[3], 0);
        ck_assert_uint_eq(c->index, 3);       /* the parked index stays its own */
        registry_detach(reg, c);
        /* Back as it was. */
        registry_unpark(reg, b);
        ck_assert(!b->parked);
        ck_assert_uint_eq(pg->active, 0x7);
        ck_assert_uint_eq(pg->slots[1].state, SHMEM_SLOT_ACTIVE);
        ck_assert_uint_eq(pg->slots[1].doorbell_id, id_b);
        ck_assert_uint_eq(rec[2].unparked, 1);
        /* Parked again and gone for good: left only where the parking was not told. */
        registry_park(reg, b);
        rec[0].left = rec[2].left = 0;
        registry_detach(reg, b);
        ck_assert_uint_eq(rec[0].left, 1);
        ck_assert_uint_eq(rec[2].left, 0);
        registry_detach(reg, n);
        registry_detach(reg, a);
}
END_TEST

START_TEST(test_prepare_holds) {
        PeerIdentity vm = { .kind = SHMEM_PEER_KIND_QEMU, .label = "vm", .pid = 4242, .uid = 64055 };
        Recorder rec = {};
        const char *error;
        bool created;
        Region *r;
        Peer *p;

        /* Created for a VM, charged to it, and held while nobody is attached. */
        ck_assert_int_eq(registry_prepare(reg, &(AttachRequest) { .name = "made", .size = 4096, .id = &vm },
                                          &r, &created, &error), 0);
        ck_assert(created);
        ck_assert_int_ge(r->memfd, 0);
        ck_assert_uint_eq(registry_account(reg, "vm:pid:4242")->regions, 1);
        ck_assert_int_eq(registry_reconfigure(reg, &reg->limits, NULL, 0, NULL, 0), 0);
        ck_assert_ptr_eq(registry_find(reg, "made"), r);
        /* The VM's attach comes with the final name, checked already. */
        ck_assert_int_eq(registry_attach(reg, &(AttachRequest) { .name = "made", .mode = ATTACH_FIND, .id = &vm,
                                                                 .ops = &rec_ops, .userdata = &rec, .prepared = true },
                                         &p, NULL, &error), 0);
        registry_unhold(reg, r);
        ck_assert_ptr_eq(registry_find(reg, "made"), r);
        registry_detach(reg, p);
        ck_assert_ptr_null(registry_find(reg, "made"));
        ck_assert_ptr_null(registry_account(reg, "vm:pid:4242"));
        /* A hold that ends without an attach lets the region go. */
        ck_assert_int_eq(registry_prepare(reg, &(AttachRequest) { .name = "unused", .size = 4096, .id = &vm },
                                          &r, &created, &error), 0);
        registry_unhold(reg, r);
        ck_assert_ptr_null(registry_find(reg, "unused"));
        /* What an attach would refuse, a prepare refuses. */
        ck_assert_int_eq(registry_prepare(reg, &(AttachRequest) { .name = "nosuch", .mode = ATTACH_FIND, .id = &vm },
                                          &r, &created, &error), CORE_E_NOT_FOUND);
        ck_assert_int_eq(registry_prepare(reg, &(AttachRequest) { .name = ".bad", .id = &vm }, &r, &created, &error),
                         CORE_E_ILLEGAL_NAME);
}
END_TEST

START_TEST(test_prepare_full_region) {
        Recorder rec = {};
        PeerIdentity vm = { .kind = SHMEM_PEER_KIND_QEMU, .label = "vm", .pid = 7 };
        const char *error;
        bool created;
        Region *r;
        Peer *p[2];

        ck_assert_int_eq(registry_declare(reg, &(RegionDecl) { .name = "two", .size = 4096, .max_peers = 2 }, NULL,
                                          &error), 0);
        p[0] = attach("two", 0, &rec, 0);
        p[1] = attach("two", 0, &rec, 0);
        ck_assert_int_eq(registry_prepare(reg, &(AttachRequest) { .name = "two", .id = &vm }, &r, &created, &error),
                         CORE_E_CLIENT_MAX);
        ck_assert_uint_eq(registry_find(reg, "two")->holds, 0);
        registry_detach(reg, p[1]);
        registry_detach(reg, p[0]);
}
END_TEST

int main(void) {
        Suite *s = suite_create("region");
        TCase *tc = tcase_create("core");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_size_rounding);
        tcase_add_test(tc, test_names);
        tcase_add_test(tc, test_compat_mode);
        tcase_add_test(tc, test_indices_and_control_page);
        tcase_add_test(tc, test_client_max);
        tcase_add_test(tc, test_limits);
        tcase_add_test(tc, test_persistent_and_destroy);
        tcase_add_test(tc, test_accounts);
        tcase_add_test(tc, test_closed);
        tcase_add_test(tc, test_reconfigure_cuts_a_refused_peer);
        tcase_add_test(tc, test_adopt_checks_the_stored_sizes);
        tcase_add_test(tc, test_park);
        tcase_add_test(tc, test_prepare_holds);
        tcase_add_test(tc, test_prepare_full_region);
        suite_add_tcase(s, tc);
        return run_suite(s);
}
