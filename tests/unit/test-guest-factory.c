/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of the guest's side of the factory (clients/guest/factory.h)
 * against a factory page in memory: where a header puts the request and the
 * answer, what an answer must be to be taken (a hostile or broken page:
 * another seq, unknown states, strings without a NUL, sizes and peers out of
 * range), and the exchange itself with a fake broker thread that answers
 * rings as proto/factory-page.h says (BUSY, rings ignored meanwhile, late
 * answers, none at all).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

#include "clock.h"
#include "factory.h"
#include "shmem.h"
#include "test-util.h"

/* Short bounds, so that the timeouts are tested in well under a second. */
static const FactoryTiming timing = { .answer_ms = 100, .busy_ms = 300, .poll_ns = 1000000L };

static void page_init(struct shmem_factory_page *p, uint32_t header_size) {
        memset(p, 0, SHMEM_FACTORY_PAGE_SIZE);
        p->magic = SHMEM_FACTORY_MAGIC;
        p->version = SHMEM_FACTORY_VERSION;
        p->header_size = header_size;
        p->max_data_size = UINT64_C(1) << 24;
        p->max_peers = 16;
}

/* --- the header ------------------------------------------------------------ */

START_TEST(test_view_as_the_broker_writes_it) {
        struct shmem_factory_page *p = calloc(1, SHMEM_FACTORY_PAGE_SIZE);
        FactoryView v;

        page_init(p, offsetof(struct shmem_factory_page, request));
        ck_assert_int_eq(factory_view(&v, p, SHMEM_FACTORY_PAGE_SIZE), 0);
        ck_assert_ptr_eq(v.request, &p->request);
        ck_assert_ptr_eq(v.answer, &p->answer);
        ck_assert_uint_eq(v.max_data_size, UINT64_C(1) << 24);
        ck_assert_uint_eq(v.max_peers, 16);
        free(p);
}
END_TEST

START_TEST(test_view_longer_header) {
        uint8_t *page = calloc(1, SHMEM_FACTORY_PAGE_SIZE);
        FactoryView v;

        /* A later version of the header: the request follows it, the fields it adds are skipped. */
        page_init((struct shmem_factory_page *) page, 64);
        ck_assert_int_eq(factory_view(&v, page, SHMEM_FACTORY_PAGE_SIZE), 0);
        ck_assert_ptr_eq(v.request, page + 64);
        ck_assert_ptr_eq(v.answer, page + 64 + sizeof(struct shmem_factory_request));
        free(page);
}
END_TEST

START_TEST(test_view_refused) {
        struct shmem_factory_page *p = calloc(1, SHMEM_FACTORY_PAGE_SIZE);
        const uint32_t fits = SHMEM_FACTORY_PAGE_SIZE - sizeof(struct shmem_factory_request) -
                              sizeof(struct shmem_factory_answer);
        FactoryView v = {};

        page_init(p, 32);
        ck_assert_int_eq(factory_view(&v, p, 31), -ENODEV);
        /* The request and answer must fit the mapping, not just the header. */
        ck_assert_int_eq(factory_view(&v, p, 32), -EPROTO);
        p->magic = SHMEM_LAYOUT_MAGIC; /* a region's control page is no factory */
        ck_assert_int_eq(factory_view(&v, p, SHMEM_FACTORY_PAGE_SIZE), -ENODEV);
        page_init(p, 32);
        p->version = SHMEM_FACTORY_VERSION + 1;
        ck_assert_int_eq(factory_view(&v, p, SHMEM_FACTORY_PAGE_SIZE), -ENODEV);

        uint32_t bad[] = { 0, 16, 31, 36, fits - fits % 8 + 8, UINT32_MAX - 7 };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                page_init(p, bad[i]);
                ck_assert_msg(factory_view(&v, p, SHMEM_FACTORY_PAGE_SIZE) == -EPROTO, "header_size %u", bad[i]);
        }
        ck_assert_ptr_null(v.request); /* untouched */
        page_init(p, fits - fits % 8);
        ck_assert_int_eq(factory_view(&v, p, SHMEM_FACTORY_PAGE_SIZE), 0);
        free(p);
}
END_TEST

/* --- an answer --------------------------------------------------------------- */

static struct shmem_factory_answer ok_answer(uint64_t seq) {
        struct shmem_factory_answer a = {
                .seq = seq, .state = SHMEM_FACTORY_DONE, .data_size = 65536, .max_peers = 16,
        };

        strcpy(a.region, "vm1.r");
        return a;
}

START_TEST(test_answer_ok) {
        struct shmem_factory_answer a = ok_answer(5);
        FactoryAnswer r;

        ck_assert_int_eq(factory_answer_check(&a, 5, SHMEM_FACTORY_OP_ATTACH, &r), 0);
        ck_assert_uint_eq(r.op, SHMEM_FACTORY_OP_ATTACH);
        ck_assert_uint_eq(r.status, 0);
        ck_assert_uint_eq(r.data_size, 65536);
        ck_assert_uint_eq(r.max_peers, 16);
        ck_assert_str_eq(r.region, "vm1.r");
        ck_assert_str_eq(r.detail, "");
        a.max_peers = SHMEM_PEERS_MAX;
        ck_assert_int_eq(factory_answer_check(&a, 5, SHMEM_FACTORY_OP_FIND, &r), 0);
}
END_TEST

START_TEST(test_answer_not_yet) {
        struct shmem_factory_answer a = ok_answer(5);
        FactoryAnswer r = { .status = 77 };

        ck_assert_int_eq(factory_answer_check(&a, 6, SHMEM_FACTORY_OP_ATTACH, &r), -EAGAIN);
        ck_assert_int_eq(factory_answer_check(&a, 4, SHMEM_FACTORY_OP_ATTACH, &r), -EAGAIN);
        a.state = SHMEM_FACTORY_BUSY;
        ck_assert_int_eq(factory_answer_check(&a, 5, SHMEM_FACTORY_OP_ATTACH, &r), -EAGAIN);
        a.state = SHMEM_FACTORY_IDLE;
        ck_assert_int_eq(factory_answer_check(&a, 5, SHMEM_FACTORY_OP_ATTACH, &r), -EAGAIN);
        ck_assert_uint_eq(r.status, 77); /* untouched */
}
END_TEST

START_TEST(test_answer_hostile) {
        const struct shmem_factory_answer good = ok_answer(5);
        struct shmem_factory_answer a;
        FactoryAnswer r = { .status = 77 };

#define REFUSED(field_set)                                                                       \
        do {                                                                                     \
                a = good;                                                                        \
                field_set;                                                                       \
                ck_assert_msg(factory_answer_check(&a, 5, SHMEM_FACTORY_OP_ATTACH, &r) == -EPROTO, \
                              #field_set);                                                       \
        } while (0)
        REFUSED(a.state = SHMEM_FACTORY_DONE + 1);
        REFUSED(a.state = UINT32_MAX);
        REFUSED(a.status = FACTORY_STATUS_MAX + 1);
        REFUSED(a.status = UINT32_MAX); /* would read as a negative errno */
        REFUSED(memset(a.region, 'x', sizeof(a.region)));
        REFUSED(memset(a.detail, 'x', sizeof(a.detail)));
        /* A refusal's strings must end too: the tool prints them. */
        REFUSED(a.status = SHMEM_STATUS_HOTPLUG; memset(a.detail, 'x', sizeof(a.detail)));
        REFUSED(a.status = SHMEM_STATUS_HOTPLUG; memset(a.region, 'x', sizeof(a.region)));
        /* A yes must name a region the guest can look for, with a size and peers it can map. */
        REFUSED(a.region[0] = '\0');
        REFUSED(strcpy(a.region, ".hidden"));
        REFUSED(strcpy(a.region, "../x"));
        REFUSED(strcpy(a.region, "a b"));
        REFUSED(a.data_size = 0);
        REFUSED(a.data_size = 4095);
        REFUSED(a.data_size = 4097);
        REFUSED(a.max_peers = 0);
        REFUSED(a.max_peers = SHMEM_PEERS_MAX + 1);
#undef REFUSED
        ck_assert_uint_eq(r.status, 77); /* untouched */
}
END_TEST

START_TEST(test_answer_refusal_and_detach) {
        struct shmem_factory_answer a = { .seq = 9, .state = SHMEM_FACTORY_DONE, .status = SHMEM_STATUS_NO_SLOT };
        FactoryAnswer r;

        /* A refusal needs no region, size or peers. */
        strcpy(a.detail, "no free pcie-root-port");
        ck_assert_int_eq(factory_answer_check(&a, 9, SHMEM_FACTORY_OP_ATTACH, &r), 0);
        ck_assert_uint_eq(r.status, SHMEM_STATUS_NO_SLOT);
        ck_assert_str_eq(r.detail, "no free pcie-root-port");
        ck_assert_str_eq(r.region, "");
        /* Nor does a DETACH's yes. A newer status is passed on as it is. */
        a.status = 0;
        ck_assert_int_eq(factory_answer_check(&a, 9, SHMEM_FACTORY_OP_DETACH, &r), 0);
        ck_assert_uint_eq(r.op, SHMEM_FACTORY_OP_DETACH);
        a.status = FACTORY_STATUS_MAX;
        ck_assert_int_eq(factory_answer_check(&a, 9, SHMEM_FACTORY_OP_ATTACH, &r), 0);
        ck_assert_uint_eq(r.status, FACTORY_STATUS_MAX);
        ck_assert_str_eq(shmem_strstatus(SHMEM_STATUS_NO_SLOT), "no free hot-pluggable slot for the region's device");
        ck_assert_str_eq(shmem_strstatus(SHMEM_STATUS_UNSAFE), "serving the region could crash the VM's QEMU");
        ck_assert_str_eq(shmem_strstatus(SHMEM_STATUS_UNSAFE + 1), "unknown status");
}
END_TEST

START_TEST(test_name_rule) {
        char longest[SHMEM_NAME_MAX + 2];

        ck_assert(shmem_name_valid("a.b-c_D9"));
        ck_assert(!shmem_name_valid(""));
        ck_assert(!shmem_name_valid(".a"));
        ck_assert(!shmem_name_valid("a/b"));
        memset(longest, 'a', SHMEM_NAME_MAX);
        longest[SHMEM_NAME_MAX] = '\0';
        ck_assert(shmem_name_valid(longest));
        strcat(longest, "a");
        ck_assert(!shmem_name_valid(longest));
}
END_TEST

/* --- the exchange, with a fake broker ---------------------------------------- */

enum {
        ANSWER,         /* DONE at once */
        BUSY_THEN_DONE, /* BUSY, then DONE after busy_for_ms */
        BUSY_FOREVER,
        SILENT,         /* reads the rings, answers nothing */
        FOREIGN_BUSY,   /* another request is BUSY at start, rings ignored until it ends */
        FOREIGN_THEN_MINE, /* the same, then the broker takes the page's request itself, BUSY a while */
        BAD_STATE,      /* answers the seq with an unknown state */
};

static struct Broker {
        struct shmem_factory_page *page;
        FactoryView view;
        int mode;
        int busy_for_ms;
        uint32_t status;
        int ring_fd;                        /* the guest's rings (eventfd) */
        int rings, answered;
        struct shmem_factory_request seen;  /* the last request, as copied out */
        bool stop;
        pthread_t thread;
} b;

/* The answer, in the order factory.h expects: fields, then state, then seq, with RELEASE. */
static void answer(uint64_t seq, uint32_t state, uint32_t status) {
        struct shmem_factory_answer *a = b.view.answer;

        if (state == SHMEM_FACTORY_DONE) {
                a->status = status;
                a->data_size = status ? 0 : 65536;
                a->max_peers = status ? 0 : 16;
                memset(a->region, 0, sizeof(a->region));
                memset(a->detail, 0, sizeof(a->detail));
                if (status)
                        strcpy(a->detail, "refused by the fake");
                else
                        snprintf(a->region, sizeof(a->region), "vm1.%.59s", b.seen.name);
        }
        __atomic_store_n(&a->state, state, __ATOMIC_RELEASE);
        __atomic_store_n(&a->seq, seq, __ATOMIC_RELEASE);
}

static bool stopped(void) {
        return __atomic_load_n(&b.stop, __ATOMIC_ACQUIRE);
}

/* Waits up to @ms for a ring; true if there was one (counted). */
static bool ring_wait(int ms) {
        int64_t end = now_ms() + ms;
        uint64_t n;

        while (!stopped() && now_ms() < end) {
                if (read(b.ring_fd, &n, sizeof(n)) == sizeof(n)) {
                        __atomic_fetch_add(&b.rings, (int) n, __ATOMIC_ACQ_REL);
                        return true;
                }
                sleep_ms(1);
        }
        return false;
}

static void *broker_run(void *arg) {
        int64_t foreign_until = now_ms() + b.busy_for_ms;

        while (!stopped()) {
                if (b.mode == FOREIGN_BUSY && foreign_until && now_ms() >= foreign_until) {
                        answer(3, SHMEM_FACTORY_DONE, 0);
                        foreign_until = 0;
                }
                if (b.mode == FOREIGN_THEN_MINE && foreign_until && now_ms() >= foreign_until) {
                        memcpy(&b.seen, b.view.request, sizeof(b.seen));
                        answer(b.seen.seq, SHMEM_FACTORY_BUSY, 0);
                        sleep_ms(b.busy_for_ms);
                        answer(b.seen.seq, SHMEM_FACTORY_DONE, 0);
                        __atomic_fetch_add(&b.answered, 1, __ATOMIC_ACQ_REL);
                        foreign_until = 0;
                        continue;
                }
                if (!ring_wait(5))
                        continue;
                /* A ring during the other request's BUSY is ignored (factory-page.h). */
                if ((b.mode == FOREIGN_BUSY || b.mode == FOREIGN_THEN_MINE) && (foreign_until || b.answered))
                        continue;
                /* Copied out before it is looked at: the page is the guest's. */
                memcpy(&b.seen, b.view.request, sizeof(b.seen));
                switch (b.mode) {
                case SILENT:
                        break;
                case BAD_STATE:
                        answer(b.seen.seq, 7, 0);
                        break;
                case BUSY_FOREVER:
                        answer(b.seen.seq, SHMEM_FACTORY_BUSY, 0);
                        break;
                case BUSY_THEN_DONE:
                        answer(b.seen.seq, SHMEM_FACTORY_BUSY, 0);
                        sleep_ms(b.busy_for_ms);
                        /* fall through */
                default:
                        answer(b.seen.seq, SHMEM_FACTORY_DONE, b.status);
                        __atomic_fetch_add(&b.answered, 1, __ATOMIC_ACQ_REL);
                }
        }
        return NULL;
}

static int ring(void *userdata) {
        uint64_t one = 1;

        ck_assert_ptr_eq(userdata, &b);
        return write(b.ring_fd, &one, sizeof(one)) == sizeof(one) ? 0 : -errno;
}

static int ring_broken(void *userdata) {
        return -EIO;
}

static void broker_setup(void) {
        b = (struct Broker) { .mode = ANSWER };
        b.page = calloc(1, SHMEM_FACTORY_PAGE_SIZE);
        page_init(b.page, offsetof(struct shmem_factory_page, request));
        ck_assert_int_eq(factory_view(&b.view, b.page, SHMEM_FACTORY_PAGE_SIZE), 0);
        b.ring_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        ck_assert_int_ge(b.ring_fd, 0);
}

static void broker_start(int mode) {
        b.mode = mode;
        ck_assert_int_eq(pthread_create(&b.thread, NULL, broker_run, NULL), 0);
}

/* The fixture's teardown, before the fd-leak check (checked fixtures run in reverse order). */
static void broker_teardown(void) {
        __atomic_store_n(&b.stop, true, __ATOMIC_RELEASE);
        if (b.thread)
                ck_assert_int_eq(pthread_join(b.thread, NULL), 0);
        fd_close(b.ring_fd);
        free(b.page);
}

static int exchange(uint32_t op, const char *name, uint64_t size, FactoryAnswer *ret) {
        return factory_exchange(&b.view, &timing, ring, &b, op, name, size, ret);
}

/*
 * A successful exchange of @op for "r" after a page whose last request and
 * answer were @request_seq and @answer_seq; returns the seq the fake saw.
 */
static uint64_t exchange_after(uint64_t request_seq, uint64_t answer_seq, uint32_t op, uint64_t size,
                               FactoryAnswer *ret) {
        b.page->request.seq = request_seq;
        b.page->answer = ok_answer(answer_seq);
        ck_assert_int_eq(exchange(op, "r", size, ret), 0);
        ck_assert_uint_eq(b.seen.op, op);
        return b.seen.seq;
}

START_TEST(test_exchange_request_written) {
        FactoryAnswer r;

        /* What an earlier request left: a longer name, other fields. */
        memset(b.page->request.name, 'z', sizeof(b.page->request.name) - 1);
        b.page->request.flags = 0xff;
        broker_start(ANSWER);
        ck_assert_uint_eq(exchange_after(4, 4, SHMEM_FACTORY_OP_ATTACH, 8192, &r), 5);
        ck_assert_uint_eq(b.seen.flags, 0);
        ck_assert_uint_eq(b.seen.size, 8192);
        ck_assert_str_eq(b.seen.name, "r");
        for (size_t i = 1; i < sizeof(b.seen.name); i++)
                ck_assert_msg(b.seen.name[i] == '\0', "byte %zu of the name field left over", i);
        ck_assert_uint_eq(r.op, SHMEM_FACTORY_OP_ATTACH);
        ck_assert_str_eq(r.region, "vm1.r");
        ck_assert_uint_eq(r.data_size, 65536);
        ck_assert_uint_eq(r.max_peers, 16);
        ck_assert_int_eq(b.rings, 1);
        /* The next one follows the answer. */
        ck_assert_int_eq(exchange(SHMEM_FACTORY_OP_DETACH, "r", 0, &r), 0);
        ck_assert_uint_eq(b.seen.seq, 6);
        ck_assert_uint_eq(b.seen.op, SHMEM_FACTORY_OP_DETACH);
}
END_TEST

START_TEST(test_exchange_seq_past_an_unanswered_request) {
        FactoryAnswer r;

        broker_start(ANSWER);
        /* A process wrote request 7 and died before it rang: 7's answer must not be taken for mine. */
        ck_assert_uint_eq(exchange_after(7, 5, SHMEM_FACTORY_OP_FIND, 0, &r), 8);
        /* And a page whose answer ran ahead of every request. */
        ck_assert_uint_eq(exchange_after(3, 100, SHMEM_FACTORY_OP_FIND, 0, &r), 101);
}
END_TEST

START_TEST(test_exchange_refusal) {
        FactoryAnswer r;

        b.status = SHMEM_STATUS_NO_SLOT;
        broker_start(ANSWER);
        ck_assert_int_eq(exchange(SHMEM_FACTORY_OP_ATTACH, "r", 4096, &r), SHMEM_STATUS_NO_SLOT);
        ck_assert_uint_eq(r.status, SHMEM_STATUS_NO_SLOT);
        ck_assert_str_eq(r.detail, "refused by the fake");
}
END_TEST

START_TEST(test_exchange_busy_waits_longer) {
        FactoryAnswer r;
        int64_t start = now_ms();

        /* BUSY for twice the answer time: a plug in progress, not a broker gone. */
        b.busy_for_ms = 2 * timing.answer_ms;
        broker_start(BUSY_THEN_DONE);
        ck_assert_int_eq(exchange(SHMEM_FACTORY_OP_ATTACH, "r", 4096, &r), 0);
        ck_assert_int_ge(now_ms() - start, 2 * timing.answer_ms);
        /* The answer's own time covers the BUSY, and no more than the call. */
        ck_assert_int_ge(r.answer_ns, (int64_t) b.busy_for_ms * 1000000);
        ck_assert_int_le(r.answer_ns / 1000000, now_ms() - start);
        ck_assert_str_eq(r.region, "vm1.r");
        ck_assert_int_eq(b.rings, 1);
}
END_TEST

START_TEST(test_exchange_busy_bounded) {
        FactoryAnswer r = { .status = 77 };
        int64_t start = now_ms(), took;

        broker_start(BUSY_FOREVER);
        ck_assert_int_eq(exchange(SHMEM_FACTORY_OP_ATTACH, "r", 4096, &r), -ETIMEDOUT);
        took = now_ms() - start;
        ck_assert_int_ge(took, timing.busy_ms);
        ck_assert_int_lt(took, timing.busy_ms + 1000);
        ck_assert_uint_eq(r.status, 77);
}
END_TEST

START_TEST(test_exchange_no_answer) {
        FactoryAnswer r;
        int64_t start = now_ms(), took;

        /* The old answer stays DONE with a region: it is not the answer to this request. */
        b.page->request.seq = 2;
        b.page->answer = ok_answer(2);
        broker_start(SILENT);
        ck_assert_int_eq(exchange(SHMEM_FACTORY_OP_ATTACH, "r", 4096, &r), -ETIMEDOUT);
        took = now_ms() - start;
        ck_assert_int_ge(took, timing.answer_ms);
        ck_assert_int_lt(took, timing.answer_ms + 1000);
        ck_assert_uint_eq(b.seen.seq, 3);
}
END_TEST

/*
 * Request 3 of another process BUSY for @busy_ms, the fake in @mode, then a
 * successful ATTACH of "r": it is request 4, answered once.
 */
static void attach_behind_another(int mode, int busy_ms, FactoryAnswer *ret) {
        b.page->request.seq = 3;
        b.page->answer.seq = 3;
        b.page->answer.state = SHMEM_FACTORY_BUSY;
        b.busy_for_ms = busy_ms;
        broker_start(mode);
        ck_assert_int_eq(exchange(SHMEM_FACTORY_OP_ATTACH, "r", 4096, ret), 0);
        ck_assert_uint_eq(b.seen.seq, 4);
        ck_assert_int_eq(b.answered, 1);
}

START_TEST(test_exchange_rings_again_after_another_request) {
        FactoryAnswer r;

        /* The other request ends after the guest's ring, which it ignored. */
        attach_behind_another(FOREIGN_BUSY, 2 * timing.answer_ms, &r);
        ck_assert_str_eq(r.region, "vm1.r");
}
END_TEST

START_TEST(test_exchange_each_busy_has_its_time) {
        FactoryAnswer r;

        /* The other BUSY for 2/3 of busy_ms, then mine for as long: neither is over its time. */
        attach_behind_another(FOREIGN_THEN_MINE, 2 * timing.busy_ms / 3, &r);
}
END_TEST

START_TEST(test_exchange_bad_state) {
        FactoryAnswer r;

        broker_start(BAD_STATE);
        ck_assert_int_eq(exchange(SHMEM_FACTORY_OP_ATTACH, "r", 4096, &r), -EPROTO);
}
END_TEST

START_TEST(test_exchange_ring_fails) {
        FactoryAnswer r;

        ck_assert_int_eq(factory_exchange(&b.view, &timing, ring_broken, NULL, SHMEM_FACTORY_OP_ATTACH, "r", 4096, &r),
                         -EIO);
}
END_TEST

int main(void) {
        Suite *s = suite_create("guest-factory");
        TCase *tc;

        tc = tcase_new("header");
        tcase_add_test(tc, test_view_as_the_broker_writes_it);
        tcase_add_test(tc, test_view_longer_header);
        tcase_add_test(tc, test_view_refused);
        suite_add_tcase(s, tc);

        tc = tcase_new("answer");
        tcase_add_test(tc, test_answer_ok);
        tcase_add_test(tc, test_answer_not_yet);
        tcase_add_test(tc, test_answer_hostile);
        tcase_add_test(tc, test_answer_refusal_and_detach);
        tcase_add_test(tc, test_name_rule);
        suite_add_tcase(s, tc);

        tc = tcase_new("exchange");
        tcase_add_checked_fixture(tc, broker_setup, broker_teardown);
        tcase_add_test(tc, test_exchange_request_written);
        tcase_add_test(tc, test_exchange_seq_past_an_unanswered_request);
        tcase_add_test(tc, test_exchange_refusal);
        tcase_add_test(tc, test_exchange_busy_waits_longer);
        tcase_add_test(tc, test_exchange_busy_bounded);
        tcase_add_test(tc, test_exchange_no_answer);
        tcase_add_test(tc, test_exchange_rings_again_after_another_request);
        tcase_add_test(tc, test_exchange_each_busy_has_its_time);
        tcase_add_test(tc, test_exchange_bad_state);
        tcase_add_test(tc, test_exchange_ring_fails);
        suite_add_tcase(s, tc);

        return run_suite(s);
}
