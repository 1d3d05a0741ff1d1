/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Integration, misbehaving peers: the real shmem-brokerd (broker-fixture.h)
 * and peers by hand (fake-peers.h): bad input on the native socket and on a
 * QEMU socket, requests only root may make, a connection over the limit, and
 * a peer that never reads. Each is dropped or refused; the others go on.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker-fixture.h"
#include "fake-peers.h"
#include "test-util.h"

/* The broker closes @fd within 3 s; any bytes before that are skipped. */
static void assert_dropped(int fd) {
        char buf[70000];

        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                ssize_t n;

                ck_assert_msg(poll(&p, 1, 3000) == 1, "broker did not drop the connection");
                n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n == 0)
                        break;
                ck_assert_int_gt(n, 0);
        }
        close(fd);
}

START_TEST(test_bad_input_dropped) {
        shmem_t *a = attach("victim", 4096), *b = attach("victim", 4096);
        static char big[SHMEM_MSG_MAX + 100];
        Message m = SHMEM__MESSAGE__INIT;
        Shmem__Reply reply = SHMEM__REPLY__INIT;
        int fd, pfd[2];

        /* Garbage bytes. */
        fd = raw_connect();
        ck_assert_int_eq(send(fd, "\xff\xff\xff\xff garbage", 13, 0), 13);
        assert_dropped(fd);
        assert_others_unharmed(a, b);

        /* A valid message before Hello. */
        fd = raw_connect();
        m.serial = 1;
        m.body_case = SHMEM__MESSAGE__BODY_LIST;
        m.list = &(Shmem__List) SHMEM__LIST__INIT;
        send_message(fd, &m, NULL, 0);
        assert_dropped(fd);

        /* Truncated: a protobuf length prefix running past the datagram. */
        fd = raw_connect();
        send_hello(fd);
        ck_assert_int_eq(send(fd, "\x5a\x40\x0a", 3, 0), 3);
        assert_dropped(fd);

        /* Oversized datagram. */
        fd = raw_connect();
        send_hello(fd);
        ck_assert_int_eq(send(fd, big, sizeof(big), 0), (ssize_t) sizeof(big));
        assert_dropped(fd);
        assert_others_unharmed(a, b);

        /* A message with fds: clients send none. */
        fd = raw_connect();
        send_hello(fd);
        ck_assert_int_eq(pipe2(pfd, O_CLOEXEC), 0);
        m.serial = 2;
        send_message(fd, &m, pfd, 2);
        close(pfd[0]);
        close(pfd[1]);
        assert_dropped(fd);

        /* An unknown message: a Reply is the broker's to send. */
        fd = raw_connect();
        send_hello(fd);
        m.serial = 3;
        m.body_case = SHMEM__MESSAGE__BODY_REPLY;
        m.reply = &reply;
        send_message(fd, &m, NULL, 0);
        assert_dropped(fd);

        /* An unsupported protocol version: told, then closed. */
        fd = raw_connect();
        {
                Shmem__Hello h = SHMEM__HELLO__INIT;
                Message hm = SHMEM__MESSAGE__INIT;

                h.version = 99;
                hm.serial = 1;
                hm.body_case = SHMEM__MESSAGE__BODY_HELLO;
                hm.hello = &h;
                send_message(fd, &hm, NULL, 0);
        }
        assert_dropped(fd);

        assert_others_unharmed(a, b);
        shmem_detach(b);
        shmem_detach(a);
}
END_TEST

START_TEST(test_qemu_socket_abuse) {
        shmem_t *a = attach("declared", 0), *b = attach("declared", 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int64_t hs[3];
        int fd;

        /* A "QEMU" that talks back is dropped; the region goes on. */
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%.80s/qemu/declared.sock", rundir);
        ck_assert_int_eq(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        ck_assert_int_eq(recv(fd, hs, sizeof(hs), MSG_WAITALL), (ssize_t) sizeof(hs));
        ck_assert_int_eq(hs[0], 0);  /* version */
        ck_assert_int_eq(hs[2], -1); /* the shm message follows the id */
        wait_active(a, 0x7);
        ck_assert_int_eq(send(fd, "hi", 2, MSG_NOSIGNAL), 2);
        wait_active(a, 0x3);
        close(fd);
        assert_others_unharmed(a, b);
        shmem_detach(b);
        shmem_detach(a);
}
END_TEST

START_TEST(test_admin_needs_root) {
        pid_t child;
        int status;

        ck_assert_int_eq(chmod(rundir, 0755), 0); /* mkdtemp() made it 0700 */
        child = fork();
        if (child == 0) {
                shmem_t *h;

                /* Everyone may attach and look... */
                if (setgid(65534) < 0 || setuid(65534) < 0)
                        _exit(10);
                h = attach("declared", 0);
                shmem_detach(h);
                /* ...but not change what exists for everybody. */
                if (admin_request(SHMEM__MESSAGE__BODY_CREATE, NULL, 0) != SHMEM_STATUS_NO_PERMISSION)
                        _exit(11);
                if (admin_request(SHMEM__MESSAGE__BODY_DESTROY, NULL, 0) != SHMEM_STATUS_NO_PERMISSION)
                        _exit(12);
                if (admin_request(SHMEM__MESSAGE__BODY_RELOAD, NULL, 0) != SHMEM_STATUS_NO_PERMISSION)
                        _exit(13);
                _exit(0);
        }
        ck_assert_int_eq(waitpid(child, &status, 0), child);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status 0x%x", status);
        /* The region is still there; root may create. */
        shmem_detach(attach_flags("declared", 0, SHMEM_FIND, 0));
        ck_assert_int_eq(admin_request(SHMEM__MESSAGE__BODY_CREATE, NULL, 0), 0);
        shmem_detach(attach_flags("admin", 0, SHMEM_FIND, 0));
}
END_TEST

static void setup_two_connections(void) {
        static const char *const extra[] = { "--no-config", "--max-connections=2", "--region", "lim:4K", NULL };

        setup_with(extra);
}

START_TEST(test_connection_limit) {
        shmem_t *a = attach("lim", 0), *b = attach("lim", 0);
        int q1, fd;
        int64_t v;
        char c;

        /* A third native connection is closed at once; the two go on. */
        fd = raw_connect();
        ck_assert_int_eq(recv(fd, &c, 1, 0), 0);
        close(fd);
        ck_assert_int_eq(shmem_notify(a, 0x2), 0);
        ck_assert_uint_eq(wait_senders(b, 0x1, 3000), 0x1);
        /* The limit is of all front ends together: a QEMU is refused by version 1009 (LIMIT)... */
        fd = qemu_connect("lim");
        ck_assert_int_eq(qemu_read(fd, &v), -1);
        ck_assert_int_eq(v, 1000 + SHMEM_STATUS_LIMIT);
        close(fd);
        /* ...until a connection goes: once the broker has seen b's close (its detach
         * is answered before the socket closes), a QEMU gets in. */
        shmem_detach(b);
        for (int tries = 0;; tries++) {
                q1 = qemu_connect("lim");
                if (qemu_read(q1, &v) < 0 && v == 0)
                        break;
                ck_assert_int_eq(v, 1000 + SHMEM_STATUS_LIMIT);
                ck_assert_msg(tries < 300, "a QEMU was still refused 3 s after a connection went");
                close(q1);
                usleep(10000);
        }
        close(q1);
        shmem_detach(a);
}
END_TEST

static void setup_small_queue(void) {
        static const char *const extra[] = { "--no-config", "--max-queued-bytes=4096", NULL };

        setup_with(extra);
}

/* Other peers attach to @name and detach, @n times, while @a reads its events. */
static void churn(shmem_t *a, const char *name, unsigned n, int lazy_fd) {
        for (unsigned i = 0; i < n; i++) {
                shmem_t *c = attach(name, 4096);
                struct shmem_event ev;

                shmem_detach(c);
                (void) shmem_wait(a, 0, &ev);
                if (lazy_fd >= 0 && (poll(&(struct pollfd) { .fd = lazy_fd, .events = POLLRDHUP }, 1, 0) == 1))
                        break; /* dropped already */
        }
}

/*
 * Every join and leave used to queue an event for a peer that did not read,
 * and the peers that came and went got it dropped at the queue limit. A
 * Joined whose Left is queued too leaves the queue now: a slow reader stays,
 * and what it reads later is the membership as it is.
 */
START_TEST(test_slow_reader_survives_churn) {
        shmem_t *a = attach("busy", 4096), *lazy = attach("busy", 4096), *late;
        unsigned me = shmem_index(lazy);
        struct shmem_event ev;
        int fds;

        wait_active(a, 0x3);
        fds = count_fds();
        churn(a, "busy", 3000, -1); /* lazy reads nothing meanwhile */
        ck_assert_msg(shmem_active(a) & BIT(me), "the slow reader was dropped");

        /* It reads now: one membership change, the two of them, no fd of a peer gone. */
        ck_assert_int_eq(shmem_wait(lazy, 3000, &ev), 1);
        ck_assert(ev.membership_changed);
        ck_assert_uint_eq(ev.active, 0x3);
        ck_assert_int_eq(shmem_wait(lazy, 0, &ev), 0);
        ck_assert_int_eq(count_fds(), fds);
        /* Signals both ways, and to a peer that joins now. */
        ck_assert_int_eq(shmem_notify(lazy, SHMEM_ALL_BUT_ME), 0);
        ck_assert_uint_eq(wait_senders(a, BIT(me), 3000), BIT(me));
        ck_assert_int_eq(shmem_notify(a, SHMEM_ALL_BUT_ME), 0);
        ck_assert_uint_eq(wait_senders(lazy, BIT(0), 3000), BIT(0));
        late = attach("busy", 4096);
        ck_assert_int_eq(shmem_wait(lazy, 3000, &ev), 1);
        ck_assert_uint_eq(ev.active, 0x7);
        ck_assert_int_eq(shmem_notify(lazy, BIT(2)), 0);
        ck_assert_uint_eq(wait_senders(late, BIT(me), 3000), BIT(me));
        shmem_detach(late);
        shmem_detach(lazy);
        shmem_detach(a);
}
END_TEST

/* A peer that never reads, whose queue holds what nothing cancels (a watcher's events), still goes. */
START_TEST(test_peer_that_never_reads) {
        shmem_t *a = attach("busy", 4096);
        int lazy = raw_connect(), status = -1;
        Message m = SHMEM__MESSAGE__INIT;
        Shmem__Attach at = SHMEM__ATTACH__INIT;
        char buf[SHMEM_MSG_MAX];

        /* A raw peer that watches, attaches, then never reads. */
        send_hello(lazy);
        m.body_case = SHMEM__MESSAGE__BODY_WATCH;
        m.watch = &(Shmem__Watch) SHMEM__WATCH__INIT;
        ck_assert_int_eq(raw_request(lazy, &m, NULL, 0), SHMEM_STATUS_OK);
        at.name = "busy";
        at.size = 4096;
        m.serial = 8;
        m.body_case = SHMEM__MESSAGE__BODY_ATTACH;
        m.attach = &at;
        send_message(lazy, &m, NULL, 0);
        wait_active(a, 0x3);

        /* The same churn: the watcher's Joined and Left of every peer pile up. */
        churn(a, "busy", 3000, lazy);
        wait_active(a, 0x1);
        /* It was dropped: its socket reaches end of file after what was queued. */
        while ((status = (int) recv(lazy, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
                ;
        ck_assert_int_eq(status, 0);
        close(lazy);
        shmem_detach(a);
}
END_TEST

static Suite *broker_misbehaving_suite(void) {
        Suite *s = suite_create("broker-misbehaving");
        TCase *tc;

        tc = broker_tcase(s, "misbehaving", setup, 60);
        tcase_add_test(tc, test_bad_input_dropped);
        tcase_add_test(tc, test_qemu_socket_abuse);
        tcase_add_test(tc, test_admin_needs_root);

        tc = broker_tcase(s, "connection-limit", setup_two_connections, 30);
        tcase_add_test(tc, test_connection_limit);

        tc = broker_tcase(s, "slow-reader", setup_small_queue, 120);
        tcase_add_test(tc, test_slow_reader_survives_churn);
        tcase_add_test(tc, test_peer_that_never_reads);
        return s;
}

int main(void) {
        return run_suite(broker_misbehaving_suite());
}
