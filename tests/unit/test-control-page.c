/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of proto/control-page.h: what a guest makes of a control page any
 * peer may have rewritten. A header passes only if nothing in it leads
 * outside the mapping it came from; bits of indices beyond max_peers are
 * never reported.
 */
#include <stdlib.h>
#include <string.h>

#include "control-page.h"
#include "test-util.h"

static struct shmem_control_page *page;

static void setup(void) {
        page = calloc(1, sizeof(*page));
        page->magic = SHMEM_LAYOUT_MAGIC;
        page->version = SHMEM_LAYOUT_VERSION;
        page->header_size = offsetof(struct shmem_control_page, slots);
        strcpy(page->name, "r");
        page->data_offset = SHMEM_DATA_OFFSET;
        page->data_size = 4096;
        page->max_peers = 16;
        page->vectors = 17;
        page->signal_mode = SHMEM_SIGNAL_MODE_SHMEM;
        page->slot_size = sizeof(struct shmem_slot);
}

static void teardown(void) {
        free(page);
}

START_TEST(test_header_as_the_broker_writes_it) {
        ck_assert(shmem_page_header_valid(page, 8192));
        ck_assert(shmem_page_header_names(page, "r"));
        ck_assert(!shmem_page_header_names(page, "s"));
}
END_TEST

START_TEST(test_header_rewritten) {
        struct shmem_control_page saved = *page;

#define REJECTED(field, value, map)                                                         \
        do {                                                                               \
                *page = saved;                                                             \
                page->field = (value);                                                     \
                ck_assert_msg(!shmem_page_header_valid(page, (map)), #field " = " #value); \
        } while (0)
        REJECTED(magic, 0, 8192);
        REJECTED(version, SHMEM_LAYOUT_VERSION + 1, 8192);
        REJECTED(header_size, 0, 8192);
        REJECTED(slot_size, 64, 8192);
        REJECTED(signal_mode, SHMEM_SIGNAL_MODE_IVSHMEM, 8192);
        REJECTED(max_peers, 0, 8192);
        REJECTED(max_peers, SHMEM_PEERS_MAX + 1, 8192);
        REJECTED(vectors, 16, 8192);
        REJECTED(data_offset, 0, 8192);
        REJECTED(data_offset, 4097, 8192);
        REJECTED(data_offset, 16384, 8192);
        REJECTED(data_size, 4097, 8192);
        /* An offset and a size that wrap around 2^64 together. */
        REJECTED(data_size, UINT64_MAX - 4095, 8192);
        REJECTED(data_offset, UINT64_MAX & ~UINT64_C(4095), 8192);
        /* A mapping smaller than the page itself. */
        REJECTED(data_size, 0, 4095);
#undef REJECTED
        /* A name that fills its field without a NUL: never compared past it. */
        *page = saved;
        memset(page->name, 'x', sizeof(page->name));
        ck_assert(!shmem_page_header_names(page, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"));
}
END_TEST

START_TEST(test_bits_beyond_max_peers) {
        page->max_peers = 4;
        __atomic_store_n(&page->active, ~UINT64_C(0), __ATOMIC_RELEASE);
        ck_assert_uint_eq(shmem_page_active(page, 4, 1), 0xf);
        __atomic_store_n(&page->slots[1].pending, ~UINT64_C(0), __ATOMIC_RELEASE);
        /* Mine and those of indices that do not exist are dropped; the word is cleared. */
        ck_assert_uint_eq(shmem_page_take_pending(page, 4, 1), 0xd);
        ck_assert_uint_eq(page->slots[1].pending, 0);
        ck_assert_uint_eq(shmem_page_valid(64), ~UINT64_C(0));
        ck_assert_uint_eq(shmem_page_valid(1), 1);
        /* Unconsumed: peers whose word holds my bit, among those attached. */
        __atomic_store_n(&page->active, 0x5, __ATOMIC_RELEASE);
        shmem_page_set_pending(page, 2, 1 << 1);
        shmem_page_set_pending(page, 3, 1 << 1);
        ck_assert_uint_eq(shmem_page_unconsumed(page, 4, 1), 0x4);
}
END_TEST

int main(void) {
        Suite *s = suite_create("control-page");
        TCase *tc = tcase_new("page");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_header_as_the_broker_writes_it);
        tcase_add_test(tc, test_header_rewritten);
        tcase_add_test(tc, test_bits_beyond_max_peers);
        suite_add_tcase(s, tc);
        return run_suite(s);
}
