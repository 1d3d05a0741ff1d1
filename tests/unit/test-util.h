/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Helpers shared by the unit tests (header-only: each test is one program). */

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "macro.h"

/* Open fds of this process, not counting the one opendir() needs. */
static inline int count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        int n = 0;

        ck_assert_ptr_nonnull(d);
        while ((e = readdir(d)))
                if (e->d_name[0] != '.')
                        n++;
        closedir(d);
        return n - 1;
}

static inline int fd_is_valid(int fd) {
        return fcntl(fd, F_GETFD) >= 0;
}

static inline int fd_is_cloexec(int fd) {
        int flags = fcntl(fd, F_GETFD);

        return flags >= 0 && (flags & FD_CLOEXEC);
}

/* Whether @fd has something to read now. */
static inline bool fd_readable(int fd) {
        struct pollfd p = { .fd = fd, .events = POLLIN };

        return poll(&p, 1, 0) == 1;
}

/*
 * The fd-leak fixture: every TCase that uses it fails a test that ends with
 * more (or fewer) fds open than it started with. Checked fixtures run in the
 * test's own process (CK_FORK), so the count is per test.
 */
static int fds_at_setup;

static inline void fd_leak_setup(void) {
        fds_at_setup = count_fds();
}

static inline void fd_leak_teardown(void) {
        ck_assert_msg(count_fds() == fds_at_setup, "fd leak: %d open at setup, %d at teardown",
                      fds_at_setup, count_fds());
}

static inline TCase *tcase_new(const char *name) {
        TCase *tc = tcase_create(name);

        tcase_add_checked_fixture(tc, fd_leak_setup, fd_leak_teardown);
        tcase_set_timeout(tc, 30);
        return tc;
}

static inline int run_suite(Suite *s) {
        SRunner *sr = srunner_create(s);
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
