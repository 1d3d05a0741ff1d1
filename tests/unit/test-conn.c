/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests of broker/conn.c on real socketpairs: output queue, limits, deferred drops. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include "test-util.h"
#include "conn.h"

typedef struct State {
        int reads, drops, drop_error;
        Conn *conn;
} State;

static void on_read(Conn *c, void *userdata) {
        State *s = userdata;
        FdMsg *m = NULL;

        s->reads++;
        if (fdmsg_recv(c->fd, 4096, 4, &m) == 0)
                fdmsg_free(m);
        else
                conn_break(c, -ECONNRESET);
}

static void on_drop(Conn *c, int error, void *userdata) {
        State *s = userdata;

        s->drops++;
        s->drop_error = error;
        conn_deinit(c);
}

static int fds_before;
static struct event_base *base;
static int sp[2];
static Conn conn;
static State st;

static void setup(void) {
        fds_before = count_fds();
        base = event_base_new();
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sp), 0);
        memset(&st, 0, sizeof(st));
        ck_assert_int_eq(conn_init(&conn, base, sp[0], 8192, on_read, on_drop, &st), 0);
}

static void teardown(void) {
        if (conn.fd >= 0)
                conn_deinit(&conn);
        close(sp[1]);
        event_base_free(base);
        ck_assert_int_eq(count_fds(), fds_before);
}

static FdMsg *msg_with_eventfd(size_t n_bytes) {
        static char buf[65536];
        int fd = eventfd(0, EFD_CLOEXEC);
        FdMsg *m;

        ck_assert_int_eq(fdmsg_new(&m, buf, n_bytes, &fd, 1), 0);
        return m;
}

START_TEST(test_queue_writes_at_once) {
        FdMsg *in = NULL;

        ck_assert_int_eq(conn_queue(&conn, msg_with_eventfd(100)), 0);
        ck_assert_ptr_null(conn.head); /* written, nothing queued */
        ck_assert_int_eq(fdmsg_recv(sp[1], 4096, 4, &in), 0);
        ck_assert_uint_eq(in->n_bytes, 100);
        ck_assert_uint_eq(in->n_fds, 1);
        fdmsg_free(in);
}
END_TEST

START_TEST(test_full_socket_queues_then_flushes) {
        unsigned sent = 0, got = 0;
        FdMsg *in = NULL;

        /* Fill the socket until the Conn has to queue. */
        while (!conn.head) {
                ck_assert_int_eq(conn_queue(&conn, msg_with_eventfd(2000)), 0);
                sent++;
        }
        ck_assert_uint_gt(conn.queued_bytes, 0);
        /* The peer reads; the loop flushes the queue. */
        for (int spins = 0; got < sent && spins < 100000; spins++) {
                while (fdmsg_recv(sp[1], 4096, 4, &in) == 0) {
                        fdmsg_free(in);
                        got++;
                }
                event_base_loop(base, EVLOOP_NONBLOCK);
        }
        ck_assert_uint_eq(got, sent);
        ck_assert_ptr_null(conn.head);
        ck_assert_uint_eq(conn.queued_bytes, 0);
        ck_assert_int_eq(st.drops, 0);
}
END_TEST

/* The gate: counts its calls; whether the peer could read anything at the first. */
static int gate_calls;
static bool gate_first_saw_bytes;

static void gate_before_send(void *userdata) {
        char b;

        if (gate_calls++ == 0)
                gate_first_saw_bytes = recv(sp[1], &b, 1, MSG_PEEK | MSG_DONTWAIT) >= 0;
}

/* Before anything leaves the broker the gate runs (the state that explains it is stored then). */
START_TEST(test_gate_runs_before_bytes_leave) {
        static const ConnGate gate = { gate_before_send, NULL };
        FdMsg *in = NULL;

        conn_set_gate(&conn, &gate);
        gate_calls = 0;
        ck_assert_int_eq(conn_queue(&conn, msg_with_eventfd(100)), 0);
        ck_assert_int_eq(gate_calls, 1);
        ck_assert(!gate_first_saw_bytes);
        ck_assert_int_eq(fdmsg_recv(sp[1], 4096, 4, &in), 0);
        fdmsg_free(in);
        /* Queued behind a full socket: nothing is sent at once, so no gate. */
        while (!conn.head)
                ck_assert_int_eq(conn_queue(&conn, msg_with_eventfd(2000)), 0);
        gate_calls = 0;
        ck_assert_int_eq(conn_queue(&conn, msg_with_eventfd(2000)), 0);
        ck_assert_int_eq(gate_calls, 0);
        /* What waits passes the gate when the write event sends it. */
        while (fdmsg_recv(sp[1], 4096, 4, &in) == 0)
                fdmsg_free(in);
        for (int spins = 0; conn.head && spins < 100000; spins++)
                event_base_loop(base, EVLOOP_NONBLOCK);
        ck_assert_ptr_null(conn.head);
        ck_assert_int_ge(gate_calls, 1);
        ck_assert(!gate_first_saw_bytes);
}
END_TEST

/* An eventfd's count after one write of @v through @fd (a copy that crossed the socket). */
static void assert_same_eventfd(int fd, int original, uint64_t v) {
        uint64_t got = 0;

        ck_assert_int_eq(write(fd, &v, sizeof(v)), 8);
        ck_assert_int_eq(read(original, &got, sizeof(got)), 8);
        ck_assert_uint_eq(got, v);
}

/* Borrowed fds: sent at once, neither dup()ed nor closed; queued, copied before the caller lets go. */
START_TEST(test_borrowed_fds) {
        static char buf[2000];
        int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), fds_open;
        FdMsg *m, *in = NULL;
        unsigned queued = 0;

        ck_assert_int_ge(efd, 0);
        fds_open = count_fds();
        ck_assert_int_eq(fdmsg_new_borrowed(&m, buf, 10, &efd, 1), 0);
        ck_assert_int_eq(conn_queue(&conn, m), 0);
        ck_assert_ptr_null(conn.head);
        ck_assert_int_eq(count_fds(), fds_open); /* still the caller's, nothing more open */
        ck_assert_int_eq(fdmsg_recv(sp[1], 4096, 4, &in), 0);
        assert_same_eventfd(in->fds[0], efd, 3);
        fdmsg_free(in);

        /* Behind a full socket: queued with a copy of its own. */
        while (!conn.head)
                ck_assert_int_eq(conn_queue(&conn, msg_with_eventfd(2000)), 0);
        ck_assert_int_eq(fdmsg_new_borrowed(&m, buf, 20, &efd, 1), 0);
        ck_assert_int_eq(conn_queue(&conn, m), 0);
        ck_assert_ptr_eq(conn.tail, m);
        ck_assert(!m->borrowed);
        ck_assert_int_ne(m->fds[0], efd);
        /* The caller's fd is read through the copy once the queue is flushed. */
        for (int spins = 0; spins < 100000; spins++) {
                if (fdmsg_recv(sp[1], 4096, 4, &in) == 0) {
                        bool last = in->n_bytes == 20;

                        if (last)
                                assert_same_eventfd(in->fds[0], efd, 5);
                        fdmsg_free(in);
                        queued++;
                        if (last)
                                break;
                }
                event_base_loop(base, EVLOOP_NONBLOCK);
        }
        ck_assert_uint_gt(queued, 1);
        ck_assert_ptr_null(conn.head);
        close(efd);
}
END_TEST

/* A queued message taken back: its accounting and its fds go with it; the rest keep their order. */
START_TEST(test_unqueue) {
        FdMsg *first = NULL, *mid = NULL, *in = NULL;
        size_t bytes;

        while (!conn.head)
                ck_assert_int_eq(conn_queue(&conn, msg_with_eventfd(2000)), 0);
        ck_assert_int_eq(conn_queue_ref(&conn, msg_with_eventfd(30), &first), 0);
        ck_assert_int_eq(conn_queue_ref(&conn, msg_with_eventfd(40), &mid), 0);
        ck_assert_int_eq(conn_queue(&conn, msg_with_eventfd(50)), 0);
        ck_assert_ptr_nonnull(mid);
        bytes = conn.queued_bytes;
        conn_unqueue(&conn, mid);
        ck_assert_ptr_null(mid);
        ck_assert_uint_eq(conn.queued_bytes, bytes - 40);
        for (int spins = 0; spins < 100000 && conn.head; spins++) {
                while (fdmsg_recv(sp[1], 4096, 4, &in) == 0) {
                        ck_assert_uint_ne(in->n_bytes, 40);
                        fdmsg_free(in);
                }
                event_base_loop(base, EVLOOP_NONBLOCK);
        }
        while (fdmsg_recv(sp[1], 4096, 4, &in) == 0)
                fdmsg_free(in);
        ck_assert_ptr_null(first); /* sent: the Conn let go of it */
}
END_TEST

START_TEST(test_over_limit_drops_later) {
        int r = 0;

        /* A peer that never reads: past 8 KiB queued the Conn breaks... */
        while (r == 0)
                r = conn_queue(&conn, msg_with_eventfd(2000));
        ck_assert_int_eq(r, -ENOBUFS);
        /* ...but the owner hears of it only from the loop, never inside conn_queue(). */
        ck_assert_int_eq(st.drops, 0);
        ck_assert_int_eq(conn_queue(&conn, msg_with_eventfd(10)), -ENOBUFS);
        event_base_loop(base, EVLOOP_NONBLOCK);
        ck_assert_int_eq(st.drops, 1);
        ck_assert_int_eq(st.drop_error, -ENOBUFS);
}
END_TEST

START_TEST(test_close_after_flush) {
        FdMsg *in = NULL;

        ck_assert_int_eq(conn_queue(&conn, msg_with_eventfd(10)), 0);
        conn_close_after_flush(&conn);
        event_base_loop(base, EVLOOP_NONBLOCK);
        ck_assert_int_eq(st.drops, 1);
        ck_assert_int_eq(st.drop_error, 0);
        ck_assert_int_eq(fdmsg_recv(sp[1], 4096, 4, &in), 0); /* it did go out */
        fdmsg_free(in);
        ck_assert_int_eq(fdmsg_recv(sp[1], 4096, 4, &in), FDMSG_E_EOF);
}
END_TEST

START_TEST(test_peer_hangup_reads_then_drops) {
        close(sp[1]);
        sp[1] = eventfd(0, EFD_CLOEXEC); /* keep teardown's close() valid */
        event_base_loop(base, EVLOOP_NONBLOCK);
        ck_assert_int_eq(st.reads, 1);
        event_base_loop(base, EVLOOP_NONBLOCK);
        ck_assert_int_eq(st.drops, 1);
        ck_assert_int_eq(st.drop_error, -ECONNRESET);
}
END_TEST

int main(void) {
        Suite *s = suite_create("conn");
        TCase *tc = tcase_create("queue");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_queue_writes_at_once);
        tcase_add_test(tc, test_full_socket_queues_then_flushes);
        tcase_add_test(tc, test_gate_runs_before_bytes_leave);
        tcase_add_test(tc, test_borrowed_fds);
        tcase_add_test(tc, test_unqueue);
        tcase_add_test(tc, test_over_limit_drops_later);
        tcase_add_test(tc, test_close_after_flush);
        tcase_add_test(tc, test_peer_hangup_reads_then_drops);
        suite_add_tcase(s, tc);
        return run_suite(s);
}
