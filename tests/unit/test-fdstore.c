/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests of broker/service/fdstore.c: what is handed over at a start ($LISTEN_FDS), without a manager. */
#include <stdio.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "test-util.h"
#include "fdstore.h"

#define HANDED 3

/* What check itself keeps at 3.. (its results file), moved up while the test hands fds over there. */
static int aside[HANDED];

static void move_aside(void) {
        for (int i = 0; i < HANDED; i++) {
                aside[i] = fcntl(3 + i, F_DUPFD_CLOEXEC, 64);
                if (aside[i] >= 0)
                        close(3 + i);
        }
}

static void move_back(void) {
        for (int i = 0; i < HANDED; i++)
                if (aside[i] >= 0) {
                        ck_assert_int_eq(dup2(aside[i], 3 + i), 3 + i);
                        aside[i] = fd_close(aside[i]);
                }
}

/* Hands this process HANDED eventfds at 3.. named @names, as systemd or an upgrade would. */
static void hand_over(const char *names) {
        char buf[32];

        for (int i = 0; i < HANDED; i++)
                ck_assert_int_eq(eventfd(0, EFD_CLOEXEC), 3 + i);
        snprintf(buf, sizeof(buf), "%d", (int) getpid());
        setenv("LISTEN_PID", buf, 1);
        setenv("LISTEN_FDS", "3", 1);
        setenv("LISTEN_FDNAMES", names, 1);
}

START_TEST(test_release_unclaimed) {
        FdStore *s = NULL;
        int fd;

        move_aside();
        hand_over("m/a:e/a/0/0:st/1");
        ck_assert_int_eq(fdstore_new(&s, NULL), 0);
        ck_assert_uint_eq(fdstore_size(s), HANDED);
        fd = fdstore_take(s, "m/a");
        ck_assert_int_ge(fd, 0);
        close(fd);
        /* Removes the two nobody took, by the names the store holds (freed with them). */
        fdstore_release_unclaimed(s);
        ck_assert_uint_eq(fdstore_size(s), 1);
        ck_assert_int_lt(fdstore_take(s, "e/a/0/0"), 0);
        fdstore_free(s);
        for (int i = 0; i < HANDED; i++)
                ck_assert(!fd_is_valid(3 + i));
        move_back();
}
END_TEST

static Suite *fdstore_suite(void) {
        Suite *s = suite_create("fdstore");
        TCase *tc = tcase_new("handed-over");

        tcase_add_test(tc, test_release_unclaimed);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return run_suite(fdstore_suite());
}
