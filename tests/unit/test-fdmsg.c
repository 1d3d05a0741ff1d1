/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests of proto/fdmsg.c on real socketpairs: bytes and fds in, bytes and fds out. */
#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "fdmsg.h"
#include "test-util.h"

static void pair(int type, int sv[2]) {
        ck_assert_int_eq(socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv), 0);
}

/* @n fds, each a dup of one end of a fresh pipe (alternating), for sending. */
static void make_fds(int *fds, size_t n) {
        int p[2];

        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        for (size_t i = 0; i < n; i++) {
                fds[i] = fcntl(p[i % 2], F_DUPFD_CLOEXEC, 3);
                ck_assert_int_ge(fds[i], 0);
        }
        close(p[0]);
        close(p[1]);
}

static FdMsg *msg_with(const char *bytes, size_t n_bytes, size_t n_fds) {
        int fds[FDMSG_FDS_MAX];
        FdMsg *m = NULL;

        make_fds(fds, n_fds);
        ck_assert_int_eq(fdmsg_new(&m, bytes, n_bytes, fds, n_fds), 0);
        for (size_t i = 0; i < n_fds; i++)
                ck_assert_int_eq(fds[i], -1); /* consumed */
        return m;
}

static ino_t inode_of(int fd) {
        struct stat st;

        ck_assert_int_eq(fstat(fd, &st), 0);
        return st.st_ino;
}

/* --- datagrams --- */

START_TEST(test_seqpacket_roundtrip) {
        int sv[2], p[2];
        FdMsg *out, *in = NULL;
        char buf[8];

        pair(SOCK_SEQPACKET, sv);
        ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
        {
                int fds[2] = { dup(p[0]), dup(p[1]) };

                ck_assert_int_eq(fdmsg_new(&out, "hello", 5, fds, 2), 0);
        }
        ck_assert_int_eq(fdmsg_send(sv[0], out), 1);
        /* Sent: the sender's copies are closed at once. */
        ck_assert_int_eq(out->fds[0], -1);
        ck_assert_int_eq(out->fds[1], -1);
        fdmsg_free(out);

        ck_assert_int_eq(fdmsg_recv(sv[1], 100, 4, &in), 0);
        ck_assert_uint_eq(in->n_bytes, 5);
        ck_assert_mem_eq(in->bytes, "hello", 5);
        ck_assert_uint_eq(in->n_fds, 2);
        ck_assert(fd_is_cloexec(in->fds[0]));
        ck_assert(fd_is_cloexec(in->fds[1]));
        /* The same pipe: bytes written to the received write end come out of the original read end. */
        ck_assert_uint_eq(inode_of(in->fds[0]), inode_of(p[0]));
        ck_assert_int_eq(write(in->fds[1], "x", 1), 1);
        ck_assert_int_eq(read(p[0], buf, sizeof(buf)), 1);

        {
                int fd = fdmsg_steal_fd(in, 1);

                ck_assert_int_ge(fd, 0);
                ck_assert_int_eq(in->fds[1], -1);
                ck_assert_int_eq(fdmsg_steal_fd(in, 1), -1); /* taken already */
                ck_assert_int_eq(fdmsg_steal_fd(in, 2), -1); /* out of range */
                close(fd);
        }
        ck_assert_ptr_null(fdmsg_free(in));
        ck_assert_ptr_null(fdmsg_free(NULL));
        ck_assert_int_eq(fdmsg_recv(sv[1], 100, 4, &in), -EAGAIN);
        close(p[0]);
        close(p[1]);
        close(sv[0]);
        close(sv[1]);
}
END_TEST

START_TEST(test_seqpacket_boundaries) {
        int sv[2];
        FdMsg *in = NULL;

        pair(SOCK_SEQPACKET, sv);
        for (size_t i = 1; i <= 3; i++) {
                _cleanup_(fdmsg_freep) FdMsg *out = msg_with("abc", i, i);

                ck_assert_int_eq(fdmsg_send(sv[0], out), 1);
        }
        /* Each datagram comes with exactly its own fds. */
        for (size_t i = 1; i <= 3; i++) {
                ck_assert_int_eq(fdmsg_recv(sv[1], 100, 8, &in), 0);
                ck_assert_uint_eq(in->n_bytes, i);
                ck_assert_uint_eq(in->n_fds, i);
                in = fdmsg_free(in);
        }
        close(sv[0]);
        close(sv[1]);
}
END_TEST

START_TEST(test_send_now_borrows) {
        int sv[2], fds[3];
        FdMsg *in = NULL;

        pair(SOCK_SEQPACKET, sv);
        make_fds(fds, 3);
        ck_assert_int_eq(fdmsg_send_now(sv[0], "xyz", 3, fds, 3), 0);
        for (size_t i = 0; i < 3; i++)
                ck_assert(fd_is_valid(fds[i])); /* still the caller's */
        ck_assert_int_eq(fdmsg_recv(sv[1], 100, 3, &in), 0);
        ck_assert_uint_eq(in->n_fds, 3);
        fdmsg_free(in);
        for (size_t i = 0; i < 3; i++)
                close(fds[i]);
        close(sv[0]);
        close(sv[1]);
}
END_TEST

START_TEST(test_empty_datagram_with_fds) {
        int sv[2];
        FdMsg *in = NULL;
        _cleanup_(fdmsg_freep) FdMsg *out = msg_with("", 0, 1);

        pair(SOCK_SEQPACKET, sv);
        ck_assert_int_eq(fdmsg_send(sv[0], out), 1);
        /* No bytes but an fd: a message, not end of file. */
        ck_assert_int_eq(fdmsg_recv(sv[1], 100, 1, &in), 0);
        ck_assert_uint_eq(in->n_bytes, 0);
        ck_assert_uint_eq(in->n_fds, 1);
        fdmsg_free(in);
        close(sv[0]);
        close(sv[1]);
}
END_TEST

START_TEST(test_send_full_keeps_fds) {
        int sv[2], sent = 0, r;
        char big[4096] = {};
        FdMsg *in = NULL;
        _cleanup_(fdmsg_freep) FdMsg *m = NULL;

        pair(SOCK_SEQPACKET, sv);
        /* Fill the socket until the kernel refuses. */
        for (;;) {
                _cleanup_(fdmsg_freep) FdMsg *filler = msg_with(big, sizeof(big), 0);

                r = fdmsg_send(sv[0], filler);
                ck_assert_int_ge(r, 0);
                if (r == 0)
                        break;
                sent++;
        }
        ck_assert_int_gt(sent, 0);
        m = msg_with("late", 4, 2);
        ck_assert_int_eq(fdmsg_send(sv[0], m), 0);
        /* Nothing went: the message keeps its fds for the next try. */
        ck_assert_uint_eq(m->sent, 0);
        ck_assert(fd_is_valid(m->fds[0]));
        ck_assert(fd_is_valid(m->fds[1]));
        for (int i = 0; i < sent; i++) {
                ck_assert_int_eq(fdmsg_recv(sv[1], sizeof(big), 0, &in), 0);
                in = fdmsg_free(in);
        }
        ck_assert_int_eq(fdmsg_send(sv[0], m), 1);
        ck_assert_int_eq(fdmsg_recv(sv[1], 100, 2, &in), 0);
        ck_assert_uint_eq(in->n_fds, 2);
        fdmsg_free(in);
        close(sv[0]);
        close(sv[1]);
}
END_TEST

START_TEST(test_send_to_closed_peer) {
        int sv[2];
        _cleanup_(fdmsg_freep) FdMsg *m = msg_with("x", 1, 1);

        pair(SOCK_SEQPACKET, sv);
        close(sv[1]);
        /* MSG_NOSIGNAL: an error, not SIGPIPE (which would kill this test). */
        ck_assert_int_eq(fdmsg_send(sv[0], m), -EPIPE);
        ck_assert(fd_is_valid(m->fds[0]));
        ck_assert_int_eq(fdmsg_send_now(sv[0], "x", 1, NULL, 0), -EPIPE);
        close(sv[0]);
}
END_TEST

/* --- end of file --- */

START_TEST(test_eof) {
        int sv[2];
        FdMsg *in = NULL;

        pair(_i == 0 ? SOCK_SEQPACKET : SOCK_STREAM, sv);
        ck_assert_int_eq(fdmsg_recv(sv[1], 100, 1, &in), -EAGAIN);
        close(sv[0]);
        ck_assert_int_eq(fdmsg_recv(sv[1], 100, 1, &in), FDMSG_E_EOF);
        ck_assert_int_eq(fdmsg_recv(sv[1], 100, 1, &in), FDMSG_E_EOF);
        close(sv[1]);
}
END_TEST

/* --- what must drop a peer, with every received fd closed --- */

START_TEST(test_oversized_datagram) {
        static char big[101];
        int sv[2];
        FdMsg *in = NULL;

        pair(SOCK_SEQPACKET, sv);
        {
                _cleanup_(fdmsg_freep) FdMsg *over = msg_with(big, 101, 2);
                _cleanup_(fdmsg_freep) FdMsg *exact = msg_with(big, 100, 2);

                ck_assert_int_eq(fdmsg_send(sv[0], over), 1);
                ck_assert_int_eq(fdmsg_send(sv[0], exact), 1);
        }
        ck_assert_int_eq(fdmsg_recv(sv[1], 100, 2, &in), FDMSG_E_TRUNCATED);
        /* The limit itself is fine. */
        ck_assert_int_eq(fdmsg_recv(sv[1], 100, 2, &in), 0);
        ck_assert_uint_eq(in->n_bytes, 100);
        fdmsg_free(in);
        close(sv[0]);
        close(sv[1]);
}
END_TEST

START_TEST(test_too_many_fds) {
        int sv[2];
        FdMsg *in = NULL;

        pair(SOCK_SEQPACKET, sv);
        for (int i = 0; i < 3; i++) {
                _cleanup_(fdmsg_freep) FdMsg *out = msg_with("m", 1, i == 2 ? 1 : 3);

                ck_assert_int_eq(fdmsg_send(sv[0], out), 1);
        }
        ck_assert_int_eq(fdmsg_recv(sv[1], 100, 2, &in), FDMSG_E_TOO_MANY_FDS);
        ck_assert_int_eq(fdmsg_recv(sv[1], 100, 3, &in), 0);
        ck_assert_uint_eq(in->n_fds, 3);
        in = fdmsg_free(in);
        /* max_fds 0: any fd at all is too many (the broker's clients send none). */
        ck_assert_int_eq(fdmsg_recv(sv[1], 100, 0, &in), FDMSG_E_TOO_MANY_FDS);
        close(sv[0]);
        close(sv[1]);
}
END_TEST

START_TEST(test_ctrunc_closes_installed_fds) {
        int sv[2], lowest_free;
        struct rlimit old, low;
        FdMsg *in = NULL;

        pair(SOCK_SEQPACKET, sv);
        {
                _cleanup_(fdmsg_freep) FdMsg *out = msg_with("ctrunc", 6, 32);

                ck_assert_int_eq(fdmsg_send(sv[0], out), 1);
        }
        /*
         * The kernel sets MSG_CTRUNC when it cannot install every fd (here:
         * RLIMIT_NOFILE leaves room for a few of 32) and installs the ones it
         * could: those must be closed, not leaked. New fds get the lowest free
         * numbers below the limit, so lowest_free + 2 leaves room for one or two.
         */
        lowest_free = dup(0);
        ck_assert_int_ge(lowest_free, 0);
        close(lowest_free);
        ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
        low = old;
        low.rlim_cur = (rlim_t) lowest_free + 2;
        ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
        ck_assert_int_eq(fdmsg_recv(sv[1], 100, 32, &in), FDMSG_E_TRUNCATED);
        ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
        close(sv[0]);
        close(sv[1]);
}
END_TEST

START_TEST(test_bad_cmsg) {
        int sv[2], on = 1;
        FdMsg *in = NULL;

        pair(SOCK_SEQPACKET, sv);
        /* SO_PASSCRED adds SCM_CREDENTIALS to every message: not what fdmsg expects. */
        ck_assert_int_eq(setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)), 0);
        {
                _cleanup_(fdmsg_freep) FdMsg *out = msg_with("c", 1, 2);

                ck_assert_int_eq(fdmsg_send(sv[0], out), 1);
        }
        ck_assert_int_eq(fdmsg_recv(sv[1], 100, 2, &in), FDMSG_E_BAD_CMSG);
        close(sv[0]);
        close(sv[1]);
}
END_TEST

START_TEST(test_limits_at_creation) {
        int fds[FDMSG_FDS_MAX + 1];
        FdMsg *m = NULL;
        int sv[2];

        make_fds(fds, ELEMENTSOF(fds));
        ck_assert_int_eq(fdmsg_send_now(-1, "x", 1, fds, ELEMENTSOF(fds)), -E2BIG);
        /* Consumed on failure too. */
        ck_assert_int_eq(fdmsg_new(&m, "x", 1, fds, ELEMENTSOF(fds)), -E2BIG);
        ck_assert_ptr_null(m);
        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                ck_assert_int_eq(fds[i], -1);

        /* SCM_MAX_FD itself goes through. */
        pair(SOCK_SEQPACKET, sv);
        {
                _cleanup_(fdmsg_freep) FdMsg *out = msg_with("max", 3, FDMSG_FDS_MAX);

                ck_assert_int_eq(fdmsg_send(sv[0], out), 1);
        }
        ck_assert_int_eq(fdmsg_recv(sv[1], 100, FDMSG_FDS_MAX, &m), 0);
        ck_assert_uint_eq(m->n_fds, FDMSG_FDS_MAX);
        fdmsg_free(m);
        close(sv[0]);
        close(sv[1]);
}
END_TEST

/* --- streams --- */

START_TEST(test_stream_roundtrip) {
        int sv[2];
        FdMsg *in = NULL;
        _cleanup_(fdmsg_freep) FdMsg *out = msg_with("\x01\x00\x00\x00\x00\x00\x00\x00", 8, 1);

        pair(SOCK_STREAM, sv);
        ck_assert_int_eq(fdmsg_send(sv[0], out), 1);
        ck_assert_int_eq(fdmsg_recv(sv[1], 8, 1, &in), 0);
        ck_assert_uint_eq(in->n_bytes, 8);
        ck_assert_uint_eq(in->n_fds, 1);
        ck_assert(fd_is_cloexec(in->fds[0]));
        fdmsg_free(in);
        close(sv[0]);
        close(sv[1]);
}
END_TEST

START_TEST(test_stream_partial_write_fds_with_first_byte) {
        enum { SIZE = 1 << 20 };
        _cleanup_free_ uint8_t *big = malloc(SIZE), *got = malloc(SIZE);
        _cleanup_(fdmsg_freep) FdMsg *out = NULL;
        size_t received = 0, fds_received = 0, first_fds = 0;
        int sv[2], small = 4096, r, calls = 0;

        for (size_t i = 0; i < SIZE; i++)
                big[i] = (uint8_t) (i * 7);
        out = msg_with((const char *) big, SIZE, 2);
        pair(SOCK_STREAM, sv);
        ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);

        r = fdmsg_send(sv[0], out);
        ck_assert_int_eq(r, 0); /* 1 MiB does not fit a small socket buffer */
        ck_assert_uint_gt(out->sent, 0);
        ck_assert_uint_lt(out->sent, SIZE);
        /* The fds went with the first write and the sender's copies are closed. */
        ck_assert_int_eq(out->fds[0], -1);
        ck_assert_int_eq(out->fds[1], -1);

        while (received < SIZE) {
                FdMsg *in = NULL;

                r = fdmsg_recv(sv[1], 65536, 4, &in);
                if (r == -EAGAIN) {
                        ck_assert_int_ge(fdmsg_send(sv[0], out), 0);
                        ck_assert_int_lt(++calls, 100000);
                        continue;
                }
                ck_assert_int_eq(r, 0);
                if (received == 0)
                        first_fds = in->n_fds;
                fds_received += in->n_fds;
                memcpy(got + received, in->bytes, in->n_bytes);
                received += in->n_bytes;
                fdmsg_free(in);
                if (out->sent < SIZE)
                        ck_assert_int_ge(fdmsg_send(sv[0], out), 0);
        }
        ck_assert_int_eq(fdmsg_send(sv[0], out), 1);
        ck_assert_uint_eq(received, SIZE);
        ck_assert_mem_eq(got, big, SIZE);
        /* Exactly once, with the first bytes: never repeated with a continuation. */
        ck_assert_uint_eq(first_fds, 2);
        ck_assert_uint_eq(fds_received, 2);
        close(sv[0]);
        close(sv[1]);
}
END_TEST

static Suite *fdmsg_suite(void) {
        Suite *s = suite_create("fdmsg");
        TCase *tc;

        tc = tcase_new("seqpacket");
        tcase_add_test(tc, test_seqpacket_roundtrip);
        tcase_add_test(tc, test_seqpacket_boundaries);
        tcase_add_test(tc, test_send_now_borrows);
        tcase_add_test(tc, test_empty_datagram_with_fds);
        suite_add_tcase(s, tc);

        tc = tcase_new("send-errors");
        tcase_add_test(tc, test_send_full_keeps_fds);
        tcase_add_test(tc, test_send_to_closed_peer);
        tcase_add_test(tc, test_limits_at_creation);
        suite_add_tcase(s, tc);

        tc = tcase_new("eof");
        tcase_add_loop_test(tc, test_eof, 0, 2); /* 0 seqpacket, 1 stream */
        suite_add_tcase(s, tc);

        tc = tcase_new("drop-conditions");
        tcase_add_test(tc, test_oversized_datagram);
        tcase_add_test(tc, test_too_many_fds);
        tcase_add_test(tc, test_ctrunc_closes_installed_fds);
        tcase_add_test(tc, test_bad_cmsg);
        suite_add_tcase(s, tc);

        tc = tcase_new("stream");
        tcase_add_test(tc, test_stream_roundtrip);
        tcase_add_test(tc, test_stream_partial_write_fds_with_first_byte);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return run_suite(fdmsg_suite());
}
