/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of broker/service/state-image.c: a snapshot and its log of
 * changes in one memfd, every prefix of it (a kill -9 in the middle of a
 * write) read as the state of its last whole record, a damaged record ending
 * the log, and the bare State of a broker before the log.
 */
#include <stdio.h>
#include <string.h>

#include "test-util.h"
#include "state-image.h"

/* "NAME:EPOCH ... | ID ... | NEXT_CONN_ID", what the tests compare. */
static const char *describe(const State *s, char *buf, size_t size) {
        size_t n = 0;

        buf[0] = 0;
        for (size_t i = 0; i < s->n_regions; i++)
                n += (size_t) snprintf(buf + n, size - n, "%s:%llu ", s->regions[i]->name,
                                       (unsigned long long) s->regions[i]->epoch);
        n += (size_t) snprintf(buf + n, size - n, "|");
        for (size_t i = 0; i < s->n_conns; i++)
                n += (size_t) snprintf(buf + n, size - n, " %llu", (unsigned long long) s->conns[i]->id);
        snprintf(buf + n, size - n, " | %llu", (unsigned long long) s->next_conn_id);
        return buf;
}

static void put_region(State *s, const char *name, uint64_t epoch) {
        Shmem__State__Region *r = state_add_region(s);

        ck_assert_ptr_nonnull(r);
        r->name = (char *) name;
        r->epoch = epoch;
        r->max_peers = 4;
}

static void put_conn(State *s, uint64_t id) {
        Shmem__State__Conn *c = state_add_conn(s);

        ck_assert_ptr_nonnull(c);
        c->id = id;
        c->label = (char *) "peer";
}

/* One change of the log and what the state is once it is applied. */
typedef struct Step {
        const char *put[2];
        uint64_t epoch;
        const char *removed;
        uint64_t conn, removed_conn, next;
        const char *after;
} Step;

static const Step steps[] = {
        { .put = { "c" }, .epoch = 1, .conn = 3, .next = 4, .after = "a:1 b:1 c:1 | 1 3 | 4" },
        { .put = { "a" }, .epoch = 2, .next = 4, .after = "a:2 b:1 c:1 | 1 3 | 4" }, /* in place: creation order */
        { .removed = "b", .removed_conn = 1, .next = 4, .after = "a:2 c:1 | 3 | 4" },
        { .put = { "b", "d" }, .epoch = 3, .conn = 5, .next = 6, .after = "a:2 c:1 b:3 d:3 | 3 5 | 6" },
        { .removed = "nothing", .removed_conn = 77, .next = 6, .after = "a:2 c:1 b:3 d:3 | 3 5 | 6" },
        { .removed = "a", .conn = 3, .next = 6, .after = "c:1 b:3 d:3 | 3 5 | 6" },
        { .put = { "a" }, .epoch = 4, .removed_conn = 5, .next = 6, .after = "c:1 b:3 d:3 a:4 | 3 | 6" },
        /* destroyed and made again between two flushes: the new one is the last made */
        { .put = { "c" }, .epoch = 5, .removed = "c", .next = 6, .after = "b:3 d:3 a:4 c:5 | 3 | 6" },
};
#define STEPS (sizeof(steps) / sizeof(steps[0]))

/* The image of snapshot "a:1 b:1 | 1 | 2" and every step; ends[i]: where record i ends (0: the snapshot). */
static size_t write_image(uint8_t *buf, size_t size, size_t ends[STEPS + 1]) {
        State snap = SHMEM__STATE__STATE__INIT;
        StateImage img;
        ssize_t n;

        put_region(&snap, "a", 1);
        put_region(&snap, "b", 1);
        put_conn(&snap, 1);
        snap.next_conn_id = 2;
        snap.generation = 7;
        ck_assert_int_eq(state_image_new(&img, &snap), 0);
        state_build_done(&snap);
        ends[0] = img.size;
        for (size_t i = 0; i < STEPS; i++) {
                State c = SHMEM__STATE__STATE__INIT;

                for (size_t k = 0; k < 2 && steps[i].put[k]; k++)
                        put_region(&c, steps[i].put[k], steps[i].epoch);
                if (steps[i].removed)
                        ck_assert_int_eq(state_add_removed_region(&c, steps[i].removed), 0);
                if (steps[i].conn)
                        put_conn(&c, steps[i].conn);
                if (steps[i].removed_conn)
                        ck_assert_int_eq(state_add_removed_conn(&c, steps[i].removed_conn), 0);
                c.next_conn_id = steps[i].next;
                ck_assert_int_eq(state_image_append(&img, &c), 0);
                state_build_done(&c);
                ends[i + 1] = img.size;
        }
        n = pread(img.fd, buf, size, 0);
        ck_assert_int_eq(n, (ssize_t) img.size);
        state_image_close(&img);
        return (size_t) n;
}

START_TEST(test_every_prefix) {
        static uint8_t buf[4096];
        size_t ends[STEPS + 1], n = write_image(buf, sizeof(buf), ends);
        char got[256];

        for (size_t len = 0; len <= n; len++) {
                _cleanup_(state_freep) State *s = state_parse(buf, len);
                size_t whole = 0;

                if (len < ends[0]) {
                        ck_assert_msg(!s, "a snapshot cut at %zu of %zu bytes was read", len, ends[0]);
                        continue;
                }
                while (whole < STEPS && ends[whole + 1] <= len)
                        whole++;
                ck_assert_msg(s, "cut at %zu: nothing read", len);
                ck_assert_uint_eq(s->generation, 7);
                describe(s, got, sizeof(got));
                ck_assert_msg(strcmp(got, whole ? steps[whole - 1].after : "a:1 b:1 | 1 | 2") == 0,
                              "cut at %zu (%zu whole changes): '%s'", len, whole, got);
        }
}
END_TEST

/* A record damaged anywhere (its length, its CRC, its bytes) ends the log there, the later ones intact. */
START_TEST(test_damaged_record_ends_the_log) {
        static uint8_t buf[4096];
        size_t ends[STEPS + 1], n = write_image(buf, sizeof(buf), ends);
        char got[256];

        for (size_t at = ends[2]; at < ends[3]; at++) {
                State *s;

                buf[at] ^= 0x40;
                s = state_parse(buf, n);
                ck_assert_ptr_nonnull(s);
                ck_assert_str_eq(describe(s, got, sizeof(got)), steps[1].after);
                state_free(s);
                buf[at] ^= 0x40;
        }
        /* Damage in the snapshot: nothing at all is read. */
        buf[ends[0] - 1] ^= 1;
        ck_assert_ptr_null(state_parse(buf, n));
}
END_TEST

/* What a broker before the log stored: one bare State, read as before; another version refused. */
START_TEST(test_bare_state) {
        State st = SHMEM__STATE__STATE__INIT;
        uint8_t buf[512];
        char got[256];
        State *s;
        size_t n;

        put_region(&st, "x", 9);
        put_conn(&st, 4);
        st.next_conn_id = 5;
        st.version = STATE_VERSION;
        n = shmem__state__state__pack(&st, buf);
        s = state_parse(buf, n);
        ck_assert_ptr_nonnull(s);
        ck_assert_str_eq(describe(s, got, sizeof(got)), "x:9 | 4 | 5");
        state_free(s);
        st.version = STATE_VERSION + 1;
        n = shmem__state__state__pack(&st, buf);
        ck_assert_ptr_null(state_parse(buf, n));
        state_build_done(&st);
}
END_TEST

/* main's make-seeds wrote tests/fuzz/corpus/state/compat-main-registry: a keeper byte, then the image. */
START_TEST(test_image_of_main) {
        static uint8_t buf[65536];
        FILE *f = fopen(CORPUS_DIR "/compat-main-registry", "rb");
        char got[256];
        State *s;
        size_t n;

        ck_assert_ptr_nonnull(f);
        n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        ck_assert_uint_gt(n, 1);
        s = state_parse(buf + 1, n - 1);
        ck_assert_ptr_nonnull(s);
        ck_assert_str_eq(describe(s, got, sizeof(got)), "camera0:2 compat:1 later:0 demo:1 | 1 4 | 4");
        ck_assert_uint_eq(s->regions[0]->n_peers, 2);
        ck_assert_str_eq(s->regions[0]->peers[1]->vm_uuid, "7f3c0a52-6c1e-4c55-9a55-0d1f2e3a4b5c");
        state_free(s);
}
END_TEST

/* A new snapshot is due once the log is past twice the snapshot and past the floor. */
START_TEST(test_full) {
        State snap = SHMEM__STATE__STATE__INIT, c = SHMEM__STATE__STATE__INIT;
        StateImage img;
        unsigned appended = 0;

        put_region(&snap, "a", 1);
        ck_assert_int_eq(state_image_new(&img, &snap), 0);
        put_region(&c, "a", 2);
        while (!state_image_full(&img)) {
                ck_assert_int_eq(state_image_append(&img, &c), 0);
                appended++;
        }
        ck_assert_uint_gt(img.size - img.snapshot_end, STATE_LOG_FLOOR);
        ck_assert_uint_le(img.size - img.snapshot_end, STATE_LOG_FLOOR + 64);
        ck_assert_uint_gt(appended, 1000);
        state_image_close(&img);
        state_build_done(&c);
        state_build_done(&snap);
}
END_TEST

static Suite *state_image_suite(void) {
        Suite *s = suite_create("state-image");
        TCase *tc = tcase_new("log");

        tcase_add_test(tc, test_every_prefix);
        tcase_add_test(tc, test_damaged_record_ends_the_log);
        tcase_add_test(tc, test_full);
        suite_add_tcase(s, tc);
        tc = tcase_new("older-images");
        tcase_add_test(tc, test_bare_state);
        tcase_add_test(tc, test_image_of_main);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return run_suite(state_image_suite());
}
