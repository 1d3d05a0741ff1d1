/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests of broker/service/fdstore.c: what is handed over at a start ($LISTEN_FDS, an upgrade's
 * list), without a manager. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
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

static bool cloexec(int fd) {
        return (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0;
}

/* An upgrade's list (fdstore_exec()) as this process's, with lines a broken one may have. */
START_TEST(test_handover_list) {
        int a = eventfd(0, 0), b = eventfd(0, 0), c = eventfd(0, 0), list = memfd_create("list", 0);
        FdStore *s = NULL;
        char text[256], buf[32];
        int fd;

        ck_assert(a >= 0 && b >= 0 && c >= 0 && list >= 0);
        snprintf(text, sizeof(text), "%d m/a\n%d m/twice\nnot a line\n999 m/closed\n%d m/a\n%d e/a/0/0\n", a, a,
                 b, c);
        ck_assert_int_eq(write(list, text, strlen(text)), (ssize_t) strlen(text));
        snprintf(buf, sizeof(buf), "%d", list);
        setenv("SHMEM_HANDOVER_FD", buf, 1);
        snprintf(buf, sizeof(buf), "%d", (int) getpid());
        setenv("SHMEM_HANDOVER_PID", buf, 1);
        ck_assert(fdstore_inherited());
        ck_assert_int_eq(fdstore_new(&s, NULL), 0);
        ck_assert(!getenv("SHMEM_HANDOVER_FD") && !getenv("SHMEM_HANDOVER_PID"));
        /* Taken where they are, close-on-exec again; a name twice: the later fd closed. */
        ck_assert_uint_eq(fdstore_size(s), 2);
        ck_assert(cloexec(a) && cloexec(c));
        ck_assert(!fd_is_valid(b) && !fd_is_valid(list));
        fd = fdstore_take(s, "e/a/0/0");
        ck_assert_int_ge(fd, 0);
        close(fd);
        fdstore_free(s);
        ck_assert(!fd_is_valid(a) && !fd_is_valid(c));
}
END_TEST

/* An exec that fails leaves every fd as it was, close-on-exec included, and the environment. */
START_TEST(test_failed_exec_changes_nothing) {
        char exe[] = "/tmp/test-fdstore-XXXXXX";
        int not_a_program = mkstemp(exe), a;
        char *const argv[] = { exe, NULL };
        bool before[64];
        FdStore *s = NULL;

        ck_assert_int_ge(not_a_program, 0);
        ck_assert_int_eq(write(not_a_program, "nothing\n", 8), 8);
        close(not_a_program);
        ck_assert_int_eq(chmod(exe, 0755), 0);
        ck_assert_int_eq(fdstore_new(&s, NULL), 0);
        a = eventfd(0, EFD_CLOEXEC);
        fdstore_put(s, "m/a", a);
        close(a);
        for (int fd = 0; fd < 64; fd++)
                before[fd] = fd_is_valid(fd) && cloexec(fd);
        ck_assert_int_eq(fdstore_exec(s, exe, argv), -ENOEXEC);
        ck_assert(!getenv("SHMEM_HANDOVER_FD") && !getenv("SHMEM_HANDOVER_PID"));
        a = fdstore_take(s, "m/a"); /* not adopted: -1 */
        ck_assert_int_lt(a, 0);
        ck_assert_uint_eq(fdstore_size(s), 1);
        for (int fd = 0; fd < 64; fd++)
                ck_assert_msg(before[fd] == (fd_is_valid(fd) && cloexec(fd)), "fd %d changed", fd);
        fdstore_free(s);
        unlink(exe);
}
END_TEST

static Suite *fdstore_suite(void) {
        Suite *s = suite_create("fdstore");
        TCase *tc = tcase_new("handed-over");

        tcase_add_test(tc, test_release_unclaimed);
        tcase_add_test(tc, test_handover_list);
        tcase_add_test(tc, test_failed_exec_changes_nothing);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return run_suite(fdstore_suite());
}
