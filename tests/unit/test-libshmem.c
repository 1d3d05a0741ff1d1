/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of libshmem.so (clients/libshmem/shmem.c), attaching: against
 * the fake broker of fake-broker.h, which also says who is attached at start.
 * Signals and membership: test-libshmem-signals.c. test_attach_modes checks
 * that the default label is this program's name.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fake-broker.h"
#include "msg.h"
#include "shmem.h"
#include "test-util.h"


/* --- attach --- */

START_TEST(test_attach_geometry) {
        shmem_t *s = attach();

        ck_assert_str_eq(fake.name, "region");
        ck_assert_int_eq(fake.mode, SHMEM__ATTACH_MODE__CREATE);
        ck_assert_str_eq(fake.label, "unit");
        ck_assert_uint_eq(shmem_index(s), ME);
        ck_assert_uint_eq(shmem_max_peers(s), MAXP);
        ck_assert_uint_eq(shmem_size(s), 4096);
        ck_assert_str_eq(shmem_name(s), "region");
        ck_assert_uint_eq(shmem_active(s), 0x7);
        ck_assert_uint_eq(shmem_unconsumed(s), 0);
        /* The data area is the memfd's, after the control page. */
        strcpy(shmem_data(s), "from the handle");
        ck_assert_str_eq((char *) fake.map + SHMEM_DATA_OFFSET, "from the handle");
        ck_assert_int_ge(shmem_fd(s), 0);
        ck_assert(fd_is_cloexec(shmem_fd(s)));
        ck_assert(!fd_readable(shmem_fd(s)));
        detach(s);
}
END_TEST

START_TEST(test_attach_modes) {
        struct shmem_attach_opts o = { .size = sizeof(o), .socket = fake.path };
        shmem_t *s = NULL;

        ck_assert_int_eq(attach_with(&s, "region", SHMEM_EXCLUSIVE, &o), 0);
        ck_assert_int_eq(fake.mode, SHMEM__ATTACH_MODE__EXCLUSIVE);
        /* No label given: the program's name. */
        ck_assert_str_eq(fake.label, "test-libshmem");
        detach(s);
}
END_TEST

START_TEST(test_attach_find_via_environment) {
        shmem_t *s = NULL;

        ck_assert_int_eq(setenv("SHMEM_BROKER_SOCKET", fake.path, 1), 0);
        ck_assert_int_eq(pthread_create(&fake.thread, NULL, fake_run, &fake), 0);
        ck_assert_int_eq(shmem_find(&s, "region", NULL), 0);
        ck_assert_int_eq(pthread_join(fake.thread, NULL), 0);
        ck_assert_int_eq(fake.mode, SHMEM__ATTACH_MODE__FIND);
        detach(s);
}
END_TEST

START_TEST(test_attach_refused) {
        struct shmem_attach_opts o = { .size = sizeof(o), .socket = fake.path };
        shmem_t *s = (shmem_t *) 0x1;

        fake.status = SHMEM_STATUS_CLIENT_MAX;
        ck_assert_int_eq(attach_with(&s, "region", 0, &o), SHMEM_STATUS_CLIENT_MAX);
        ck_assert_ptr_eq(s, (shmem_t *) 0x1); /* untouched */
}
END_TEST

START_TEST(test_attach_bad_reply) {
        struct shmem_attach_opts o = { .size = sizeof(o), .socket = fake.path };
        shmem_t *s = (shmem_t *) 0x1;

        /* Every fd that did arrive is closed again (the fd-leak fixture checks). */
        fake.bad_fd_index = true;
        ck_assert_int_eq(attach_with(&s, "region", 0, &o), -EPROTO);
        ck_assert_ptr_eq(s, (shmem_t *) 0x1);
}
END_TEST

START_TEST(test_attach_no_broker) {
        struct shmem_attach_opts o = { .size = sizeof(o), .socket = "/nonexistent/broker.sock" };
        /* An old caller's smaller struct: fields past its size are not read. */
        struct shmem_attach_opts old = { .size = offsetof(struct shmem_attach_opts, socket),
                                         .socket = fake.path };
        shmem_t *s = NULL;

        ck_assert_int_eq(shmem_attach(&s, "region", 4096, 0, &o), -ENOENT);
        ck_assert_int_eq(setenv("SHMEM_BROKER_SOCKET", "/nonexistent/env.sock", 1), 0);
        ck_assert_int_eq(shmem_attach(&s, "region", 4096, 0, &old), -ENOENT);
        ck_assert_ptr_null(s);
}
END_TEST

START_TEST(test_args) {
        shmem_t *s = NULL;
        struct shmem_event ev;

        ck_assert_int_eq(shmem_attach(&s, "r", 1, SHMEM_FIND | SHMEM_EXCLUSIVE, NULL), -EINVAL);
        ck_assert_int_eq(shmem_attach(&s, "r", 1, 1u << 7, NULL), -EINVAL);
        ck_assert_int_eq(shmem_attach(&s, NULL, 1, 0, NULL), -EINVAL);
        ck_assert_int_eq(shmem_attach(NULL, "r", 1, 0, NULL), -EINVAL);
        ck_assert_ptr_null(shmem_detach(NULL));
        ck_assert_ptr_null(shmem_data(NULL));
        ck_assert_uint_eq(shmem_size(NULL), 0);
        ck_assert_int_eq(shmem_notify(NULL, 1), -EINVAL);
        ck_assert_int_eq(shmem_wait(NULL, 0, &ev), -EINVAL);
        ck_assert_int_lt(shmem_fd(NULL), 0);
        ck_assert_str_eq(shmem_strstatus(0), "ok");
        ck_assert_str_eq(shmem_strstatus(SHMEM_STATUS_CLIENT_MAX), "region has no free peer index");
        ck_assert_str_eq(shmem_strstatus(-ENOENT), "No such file or directory");
        ck_assert_str_eq(shmem_strstatus(-100000), "unknown error");
        ck_assert_str_eq(shmem_strstatus(1000), "unknown status");
}
END_TEST

/* The header's macros and the library's string are one version, the project's. */
START_TEST(test_version) {
        char want[32];

        snprintf(want, sizeof(want), "%d.%d.%d", SHMEM_VERSION_MAJOR, SHMEM_VERSION_MINOR, SHMEM_VERSION_PATCH);
        ck_assert_str_eq(shmem_version(), want);
        ck_assert_str_eq(shmem_version(), SHMEM_VERSION);
}
END_TEST

static Suite *libshmem_suite(void) {
        Suite *s = suite_create("libshmem");
        TCase *tc;

        tc = tcase_create("attach");
        tcase_add_checked_fixture(tc, fake_setup, fake_teardown);
        tcase_add_test(tc, test_attach_geometry);
        tcase_add_test(tc, test_attach_modes);
        tcase_add_test(tc, test_attach_find_via_environment);
        tcase_add_test(tc, test_attach_refused);
        tcase_add_test(tc, test_attach_bad_reply);
        tcase_add_test(tc, test_attach_no_broker);
        tcase_add_test(tc, test_args);
        tcase_add_test(tc, test_version);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return run_suite(libshmem_suite());
}
