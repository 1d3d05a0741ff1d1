/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of clients/libshmem/client.c, the native-protocol connection,
 * against a scripted broker on the other end of a socketpair: the broker's
 * messages are queued before the request that they answer, which is possible
 * because serials are predictable (1, 2, ...).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "client.h"
#include "clock.h"
#include "test-util.h"

/* --- the scripted broker --- */

static void broker_send(int fd, const Message *m, int event_fd) {
        _cleanup_(fdmsg_freep) FdMsg *out = NULL;
        int fds[1] = { event_fd >= 0 ? eventfd(0, EFD_CLOEXEC) : -1 };

        ck_assert_int_eq(msg_encode(&out, m, fds, event_fd >= 0 ? 1 : 0), 0);
        ck_assert_int_eq(fdmsg_send(fd, out), 1);
}

static void broker_reply(int fd, uint64_t serial, int status, const char *error) {
        Shmem__Reply r = SHMEM__REPLY__INIT;
        Message m = SHMEM__MESSAGE__INIT;

        r.status = (Shmem__Status) status;
        r.error = (char *) (error ? error : "");
        m.serial = serial;
        m.body_case = SHMEM__MESSAGE__BODY_REPLY;
        m.reply = &r;
        broker_send(fd, &m, -1);
}

static void broker_hello_reply(int fd, uint64_t serial) {
        Shmem__HelloReply h = SHMEM__HELLO_REPLY__INIT;
        Shmem__Reply r = SHMEM__REPLY__INIT;
        Message m = SHMEM__MESSAGE__INIT;

        h.version = 1;
        h.broker = "fake";
        h.instance = 0x1234;
        r.body_case = SHMEM__REPLY__BODY_HELLO;
        r.hello = &h;
        m.serial = serial;
        m.body_case = SHMEM__MESSAGE__BODY_REPLY;
        m.reply = &r;
        broker_send(fd, &m, -1);
}

/* A Left event (no fd) or, with @with_fd, a Joined event carrying one eventfd. */
static void broker_event(int fd, unsigned index, bool with_fd) {
        Shmem__Joined j = SHMEM__JOINED__INIT;
        Shmem__Left l = SHMEM__LEFT__INIT;
        Shmem__PeerInfo pi = SHMEM__PEER_INFO__INIT;
        Message m = SHMEM__MESSAGE__INIT;

        if (with_fd) {
                pi.index = index;
                pi.fd = 0;
                j.name = "r";
                j.peer = &pi;
                m.body_case = SHMEM__MESSAGE__BODY_JOINED;
                m.joined = &j;
        } else {
                l.name = "r";
                l.index = index;
                m.body_case = SHMEM__MESSAGE__BODY_LEFT;
                m.left = &l;
        }
        broker_send(fd, &m, with_fd ? 0 : -1);
}

/* Reads the next request the client sent; returns its serial and body. */
static uint64_t broker_recv(int fd, int *ret_body) {
        _cleanup_(fdmsg_freep) FdMsg *in = NULL;
        _cleanup_(msg_freep) Message *m = NULL;

        ck_assert_int_eq(fdmsg_recv(fd, SHMEM_MSG_MAX, 0, &in), 0);
        ck_assert_int_eq(msg_decode(&m, in), 0);
        if (ret_body)
                *ret_body = m->body_case;
        return m->serial;
}

static Client *client_on(int sv[2]) {
        Client *c = NULL;

        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
        ck_assert_int_eq(client_new(&c, sv[0]), 0);
        return c;
}

static int list(Client *c, int timeout_ms, ClientMsg **ret) {
        Message m = SHMEM__MESSAGE__INIT;

        m.body_case = SHMEM__MESSAGE__BODY_LIST;
        m.list = &(Shmem__List) SHMEM__LIST__INIT;
        return client_call(c, &m, timeout_ms, ret);
}

/* --- request/reply --- */

START_TEST(test_hello) {
        int sv[2], body;
        _cleanup_(client_freep) Client *c = client_on(sv);

        ck_assert_str_eq(client_broker(c), "");
        ck_assert_uint_eq(client_broker_instance(c), 0);
        broker_hello_reply(sv[1], 1);
        ck_assert_int_eq(client_hello(c, "me", 1000), 0);
        ck_assert_str_eq(client_broker(c), "fake");
        ck_assert_uint_eq(client_broker_instance(c), 0x1234);
        ck_assert_uint_eq(broker_recv(sv[1], &body), 1);
        ck_assert_int_eq(body, SHMEM__MESSAGE__BODY_HELLO);
        close(sv[1]);
}
END_TEST

START_TEST(test_hello_refused) {
        int sv[2];
        _cleanup_(client_freep) Client *c = client_on(sv);

        broker_reply(sv[1], 1, SHMEM__STATUS__VERSION, "speaks 1");
        ck_assert_int_eq(client_hello(c, "me", 1000), SHMEM__STATUS__VERSION);
        close(sv[1]);
}
END_TEST

START_TEST(test_hello_without_body) {
        int sv[2];
        _cleanup_(client_freep) Client *c = client_on(sv);

        /* OK, but not a HelloReply: not a broker we understand. */
        broker_reply(sv[1], 1, 0, NULL);
        ck_assert_int_eq(client_hello(c, "me", 1000), -EPROTO);
        close(sv[1]);
}
END_TEST

START_TEST(test_reply_status_and_error) {
        int sv[2];
        _cleanup_(client_freep) Client *c = client_on(sv);
        _cleanup_(client_msg_freep) ClientMsg *r = NULL;
        const char *error;

        broker_reply(sv[1], 1, SHMEM__STATUS__DOES_NOT_EXIST, "no region of that name");
        ck_assert_int_eq(list(c, 1000, &r), 0);
        ck_assert_int_eq(client_reply_status(r, &error), SHMEM__STATUS__DOES_NOT_EXIST);
        ck_assert_str_eq(error, "no region of that name");
        ck_assert_uint_eq(r->msg->serial, 1);
        close(sv[1]);
}
END_TEST

/* Events that arrive before a reply are kept, in order, with their fds. */
START_TEST(test_events_queued_during_call) {
        int sv[2];
        _cleanup_(client_freep) Client *c = client_on(sv);
        ClientMsg *r = NULL, *e = NULL;

        broker_event(sv[1], 4, true);
        broker_event(sv[1], 5, false);
        broker_reply(sv[1], 1, 0, NULL);
        broker_event(sv[1], 6, true);
        ck_assert_int_eq(list(c, 1000, &r), 0);
        ck_assert_uint_eq(r->msg->serial, 1);
        client_msg_free(r);

        ck_assert_int_eq(client_next_event(c, &e), 1);
        ck_assert_int_eq(e->msg->body_case, SHMEM__MESSAGE__BODY_JOINED);
        ck_assert_uint_eq(e->msg->joined->peer->index, 4);
        ck_assert_uint_eq(e->raw->n_fds, 1);
        ck_assert(fd_is_cloexec(e->raw->fds[0]));
        e = client_msg_free(e);
        ck_assert_int_eq(client_next_event(c, &e), 1);
        ck_assert_uint_eq(e->msg->left->index, 5);
        e = client_msg_free(e);
        /* Not read yet during the call: straight from the socket. */
        ck_assert_int_eq(client_next_event(c, &e), 1);
        ck_assert_uint_eq(e->msg->joined->peer->index, 6);
        e = client_msg_free(e);
        ck_assert_int_eq(client_next_event(c, &e), 0);
        close(sv[1]);
}
END_TEST

START_TEST(test_serials_rise) {
        int sv[2];
        _cleanup_(client_freep) Client *c = client_on(sv);

        for (uint64_t s = 1; s <= 3; s++) {
                ClientMsg *r = NULL;

                broker_reply(sv[1], s, 0, NULL);
                ck_assert_int_eq(list(c, 1000, &r), 0);
                ck_assert_uint_eq(broker_recv(sv[1], NULL), s);
                client_msg_free(r);
        }
        close(sv[1]);
}
END_TEST

START_TEST(test_timeout_then_late_reply) {
        int sv[2];
        _cleanup_(client_freep) Client *c = client_on(sv);
        _cleanup_(client_msg_freep) ClientMsg *r = NULL;
        int64_t t0 = now_ms();

        ck_assert_int_eq(list(c, 150, &r), -ETIMEDOUT);
        ck_assert_int_ge(now_ms() - t0, 140);
        ck_assert_int_lt(now_ms() - t0, 2000);
        /* The first reply comes late, with an event in between: skipped, the event kept. */
        broker_reply(sv[1], 1, SHMEM__STATUS__LIMIT, "late");
        broker_event(sv[1], 2, true);
        broker_reply(sv[1], 2, 0, NULL);
        ck_assert_int_eq(list(c, 1000, &r), 0);
        ck_assert_uint_eq(r->msg->serial, 2);
        ck_assert_int_eq(client_reply_status(r, NULL), 0);
        {
                _cleanup_(client_msg_freep) ClientMsg *e = NULL;

                ck_assert_int_eq(client_next_event(c, &e), 1);
                ck_assert_uint_eq(e->msg->joined->peer->index, 2);
        }
        close(sv[1]);
}
END_TEST

START_TEST(test_late_reply_without_call) {
        int sv[2];
        _cleanup_(client_freep) Client *c = client_on(sv);
        _cleanup_(client_msg_freep) ClientMsg *r = NULL;
        ClientMsg *e = NULL;

        ck_assert_int_eq(list(c, 0, &r), -ETIMEDOUT);
        broker_reply(sv[1], 1, 0, NULL);
        /* A reply nobody waits for any more is not an event. */
        ck_assert_int_eq(client_next_event(c, &e), 0);
        close(sv[1]);
}
END_TEST

/* --- broken brokers --- */

START_TEST(test_future_serial) {
        int sv[2];
        _cleanup_(client_freep) Client *c = client_on(sv);
        _cleanup_(client_msg_freep) ClientMsg *r = NULL;
        ClientMsg *e = NULL;

        broker_reply(sv[1], 7, 0, NULL);
        ck_assert_int_eq(list(c, 1000, &r), -EPROTO);
        /* Sticky: the connection is not trusted any more. */
        ck_assert_int_eq(list(c, 1000, &r), -EPROTO);
        ck_assert_int_eq(client_next_event(c, &e), -EPROTO);
        close(sv[1]);
}
END_TEST

START_TEST(test_reply_serial_on_non_reply) {
        int sv[2];
        _cleanup_(client_freep) Client *c = client_on(sv);
        _cleanup_(client_msg_freep) ClientMsg *r = NULL;
        Shmem__Hello h = SHMEM__HELLO__INIT;
        Message m = SHMEM__MESSAGE__INIT;

        m.serial = 1;
        m.body_case = SHMEM__MESSAGE__BODY_HELLO;
        m.hello = &h;
        broker_send(sv[1], &m, -1);
        ck_assert_int_eq(list(c, 1000, &r), -EPROTO);
        close(sv[1]);
}
END_TEST

START_TEST(test_garbage_from_broker) {
        int sv[2];
        _cleanup_(client_freep) Client *c = client_on(sv);
        _cleanup_(client_msg_freep) ClientMsg *r = NULL;

        ck_assert_int_eq(send(sv[1], "\xff\xff\xff\xff garbage", 13, 0), 13);
        ck_assert_int_eq(list(c, 1000, &r), -EPROTO);
        close(sv[1]);
}
END_TEST

START_TEST(test_broker_closes) {
        int sv[2];
        _cleanup_(client_freep) Client *c = client_on(sv);
        _cleanup_(client_msg_freep) ClientMsg *r = NULL;
        ClientMsg *e = NULL;

        broker_event(sv[1], 1, true);
        close(sv[1]);
        /* Sending fails (EPIPE) or the reply never comes (EOF): both read as ECONNRESET. */
        ck_assert_int_eq(list(c, 1000, &r), -ECONNRESET);
        ck_assert_int_eq(client_next_event(c, &e), -ECONNRESET);
}
END_TEST

START_TEST(test_broker_closes_while_waiting) {
        int sv[2];
        _cleanup_(client_freep) Client *c = client_on(sv);
        ClientMsg *e = NULL;

        broker_event(sv[1], 1, false);
        ck_assert_int_eq(client_next_event(c, &e), 1);
        client_msg_free(e);
        ck_assert_int_eq(client_next_event(c, &e), 0);
        shutdown(sv[1], SHUT_RDWR);
        ck_assert_int_eq(client_next_event(c, &e), -ECONNRESET);
        close(sv[1]);
}
END_TEST

/* --- connecting --- */

START_TEST(test_socket_path) {
        ck_assert_int_eq(unsetenv("SHMEM_BROKER_SOCKET"), 0);
        ck_assert_str_eq(client_socket_path(NULL), SHMEM_DEFAULT_RUNDIR "/broker.sock");
        ck_assert_str_eq(client_socket_path("/x/y.sock"), "/x/y.sock");
        ck_assert_int_eq(setenv("SHMEM_BROKER_SOCKET", "/env.sock", 1), 0);
        ck_assert_str_eq(client_socket_path(NULL), "/env.sock");
        ck_assert_str_eq(client_socket_path("/x/y.sock"), "/x/y.sock");
        ck_assert_int_eq(setenv("SHMEM_BROKER_SOCKET", "", 1), 0);
        ck_assert_str_eq(client_socket_path(NULL), SHMEM_DEFAULT_RUNDIR "/broker.sock");
}
END_TEST

typedef struct Listener {
        char dir[64], path[128];
        int fd;
        bool answer; /* else accept and stay silent */
        char label[64];
        pthread_t thread;
} Listener;

static void *listener_run(void *userdata) {
        Listener *l = userdata;
        _cleanup_(fdmsg_freep) FdMsg *in = NULL;
        _cleanup_(msg_freep) Message *m = NULL;
        int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);

        if (fd < 0)
                return NULL;
        if (l->answer) {
                struct pollfd p = { .fd = fd, .events = POLLIN };

                if (poll(&p, 1, 5000) == 1 && fdmsg_recv(fd, SHMEM_MSG_MAX, 0, &in) == 0 &&
                    msg_decode(&m, in) == 0 && m->body_case == SHMEM__MESSAGE__BODY_HELLO) {
                        snprintf(l->label, sizeof(l->label), "%s", m->hello->label);
                        broker_hello_reply(fd, m->serial);
                }
        } else {
                char buf[256];

                /* Read and never answer, until the client gives up. */
                while (read(fd, buf, sizeof(buf)) > 0)
                        ;
        }
        close(fd);
        return NULL;
}

static void listener_start(Listener *l, bool answer) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        snprintf(l->dir, sizeof(l->dir), "/tmp/test-client-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(l->dir));
        snprintf(l->path, sizeof(l->path), "%s/broker.sock", l->dir);
        strcpy(sa.sun_path, l->path);
        l->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(l->fd, 0);
        ck_assert_int_eq(bind(l->fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(l->fd, 4), 0);
        l->answer = answer;
        ck_assert_int_eq(pthread_create(&l->thread, NULL, listener_run, l), 0);
}

static void listener_stop(Listener *l) {
        pthread_join(l->thread, NULL);
        close(l->fd);
        unlink(l->path);
        rmdir(l->dir);
}

START_TEST(test_connect) {
        Listener l = {};
        Client *c = NULL;

        listener_start(&l, true);
        ck_assert_int_eq(client_connect(&c, l.path, "tester", 2000), 0);
        ck_assert_ptr_nonnull(c);
        ck_assert(fd_is_cloexec(client_fd(c)));
        ck_assert(fcntl(client_fd(c), F_GETFL) & O_NONBLOCK);
        listener_stop(&l);
        ck_assert_str_eq(l.label, "tester");
        ck_assert_ptr_null(client_free(c));
        ck_assert_ptr_null(client_free(NULL));
}
END_TEST

START_TEST(test_connect_silent_broker) {
        Listener l = {};
        Client *c = NULL;
        int64_t t0 = now_ms();

        listener_start(&l, false);
        ck_assert_int_eq(client_connect(&c, l.path, "tester", 200), -ETIMEDOUT);
        ck_assert_ptr_null(c);
        ck_assert_int_lt(now_ms() - t0, 2000);
        listener_stop(&l);
}
END_TEST

START_TEST(test_connect_errors) {
        char path[200], dir[64] = "/tmp/test-client-XXXXXX";
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        Client *c = NULL;
        int fd;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/none.sock", dir);
        ck_assert_int_eq(client_connect(&c, path, "t", 1000), -ENOENT);

        /* A socket file nobody listens on: a broker that died. */
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/stale.sock", dir);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        close(fd);
        ck_assert_int_eq(client_connect(&c, sa.sun_path, "t", 1000), -ECONNREFUSED);
        unlink(sa.sun_path);

        memset(path, 'x', sizeof(path) - 1);
        path[0] = '/';
        path[sizeof(path) - 1] = '\0';
        ck_assert_int_eq(client_connect(&c, path, "t", 1000), -ENAMETOOLONG);
        ck_assert_ptr_null(c);
        rmdir(dir);
}
END_TEST

static Suite *client_suite(void) {
        Suite *s = suite_create("client");
        TCase *tc;

        tc = tcase_new("hello");
        tcase_add_test(tc, test_hello);
        tcase_add_test(tc, test_hello_refused);
        tcase_add_test(tc, test_hello_without_body);
        suite_add_tcase(s, tc);

        tc = tcase_new("request-reply");
        tcase_add_test(tc, test_reply_status_and_error);
        tcase_add_test(tc, test_events_queued_during_call);
        tcase_add_test(tc, test_serials_rise);
        tcase_add_test(tc, test_timeout_then_late_reply);
        tcase_add_test(tc, test_late_reply_without_call);
        suite_add_tcase(s, tc);

        tc = tcase_new("broken-broker");
        tcase_add_test(tc, test_future_serial);
        tcase_add_test(tc, test_reply_serial_on_non_reply);
        tcase_add_test(tc, test_garbage_from_broker);
        tcase_add_test(tc, test_broker_closes);
        tcase_add_test(tc, test_broker_closes_while_waiting);
        suite_add_tcase(s, tc);

        tc = tcase_new("connect");
        tcase_add_test(tc, test_socket_path);
        tcase_add_test(tc, test_connect);
        tcase_add_test(tc, test_connect_silent_broker);
        tcase_add_test(tc, test_connect_errors);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return run_suite(client_suite());
}
