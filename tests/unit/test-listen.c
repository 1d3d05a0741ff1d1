/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of broker/frontend/listen.c: a socket's path appears only once
 * it listens. The broker bound its sockets at their path before listen(), so
 * a client could connect in between and get ECONNREFUSED (integration-broker
 * failed that way 1 run in 3 under ASan). listen() is wrapped
 * (-Wl,--wrap=listen): at that moment the path must not exist yet.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "listen.h"
#include "test-util.h"

int __real_listen(int fd, int backlog);

static const char *watched;       /* the path socket_listen() is making */
static int listens, path_existed; /* listen() calls, and how many found the path there */

int __wrap_listen(int fd, int backlog) {
        struct stat st;

        listens++;
        if (watched && lstat(watched, &st) == 0)
                path_existed++;
        return __real_listen(fd, backlog);
}

static char dir[] = "/tmp/shmem-listen-XXXXXX";

static void setup(void) {
        fd_leak_setup();
        ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void) {
        char cmd[64];

        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        ck_assert_int_eq(system(cmd), 0);
        fd_leak_teardown();
}

static int connect_to(const char *path, int type) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0), r;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        r = connect(fd, (struct sockaddr *) &sa, sizeof(sa));
        close(fd);
        return r < 0 ? -errno : 0;
}

START_TEST(test_path_appears_listening) {
        char path[128];
        struct stat st;
        int fd;

        snprintf(path, sizeof(path), "%s/broker.sock", dir);
        watched = path;
        listens = path_existed = 0;
        ck_assert_int_eq(socket_listen(path, SOCK_SEQPACKET, 0640, (gid_t) -1, true, &fd), 0);
        watched = NULL;
        ck_assert_int_eq(listens, 1);
        ck_assert_msg(path_existed == 0, "the path existed before the socket listened");
        /* Mode given before it appeared; connectable; no temporary name left behind. */
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert(S_ISSOCK(st.st_mode));
        ck_assert_uint_eq(st.st_mode & 0777, 0640);
        ck_assert_int_eq(connect_to(path, SOCK_SEQPACKET), 0);
        {
                char cmd[128];

                snprintf(cmd, sizeof(cmd), "test $(ls -A %s | grep -c '^\\.#') -eq 0", dir);
                ck_assert_int_eq(system(cmd), 0);
        }
        close(fd);
}
END_TEST

START_TEST(test_live_and_stale_sockets) {
        char path[128];
        int fd, fd2;

        snprintf(path, sizeof(path), "%s/s.sock", dir);
        ck_assert_int_eq(socket_listen(path, SOCK_STREAM, 0600, (gid_t) -1, true, &fd), 0);
        /* Someone serves it: refused. */
        ck_assert_int_eq(socket_listen(path, SOCK_STREAM, 0600, (gid_t) -1, true, &fd2), -EADDRINUSE);
        close(fd);
        /* A stale file of a dead server is replaced. */
        ck_assert_int_eq(connect_to(path, SOCK_STREAM), -ECONNREFUSED);
        ck_assert_int_eq(socket_listen(path, SOCK_STREAM, 0600, (gid_t) -1, true, &fd), 0);
        ck_assert_int_eq(connect_to(path, SOCK_STREAM), 0);
        close(fd);
}
END_TEST

START_TEST(test_path_too_long) {
        char path[200];
        int fd;

        memset(path, 'x', sizeof(path) - 1);
        path[0] = '/';
        path[sizeof(path) - 1] = 0;
        ck_assert_int_eq(socket_listen(path, SOCK_STREAM, 0600, (gid_t) -1, false, &fd), -ENAMETOOLONG);
}
END_TEST

int main(void) {
        Suite *s = suite_create("listen");
        TCase *tc = tcase_create("listen");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_path_appears_listening);
        tcase_add_test(tc, test_live_and_stale_sockets);
        tcase_add_test(tc, test_path_too_long);
        suite_add_tcase(s, tc);
        return run_suite(s);
}
