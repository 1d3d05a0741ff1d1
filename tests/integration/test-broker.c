/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Integration: the real shmem-brokerd on a temporary run directory, driven
 * through libshmem and, for misbehaving peers, through raw sockets.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test-util.h"
#include "client.h"
#include "msg.h"
#include "region-layout.h"
#include "shmem.h"

#define BROKER_READY_MS 20000 /* only a broker that does not come up waits it out */

static char rundir[256], sockpath[300], conf_path[400];
static pid_t broker_pid;

static int64_t now_ms(void) {
        struct timespec ts;

        ck_assert_int_eq(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Ready means the broker answered a Hello, not that its socket file exists:
 * the file appears at bind(), and a connect() before listen() is refused
 * (ECONNREFUSED; it failed 1 run in 3 under ASan). The connection is closed
 * again at once, and the broker has dropped it by the time it answers the
 * test's first request on a connection made after the close.
 */
static void broker_wait_ready(void) {
        int64_t deadline = now_ms() + BROKER_READY_MS;
        int r, status;

        for (;;) {
                Client *c = NULL;

                r = client_connect(&c, sockpath, "test-broker", 1000);
                client_free(c);
                if (r == 0)
                        return;
                ck_assert_msg(r < 0, "the broker refused the Hello: status %d", r);
                if (waitpid(broker_pid, &status, WNOHANG) == broker_pid)
                        ck_abort_msg("the broker exited (status 0x%x) before it answered a Hello on %s", status,
                                     sockpath);
                if (now_ms() > deadline)
                        ck_abort_msg("the broker answered no Hello on %s within %d ms: %s", sockpath,
                                     BROKER_READY_MS, strerror(-r));
                usleep(10000);
        }
}

static void broker_start(const char *const *extra) {
        const char *argv[32] = { BROKERD_PATH, "--rundir", rundir, "--region", "declared:64K" };
        size_t n = 5;

        for (; extra && *extra; extra++)
                argv[n++] = *extra;
        argv[n] = NULL;
        broker_pid = fork();
        ck_assert_int_ge(broker_pid, 0);
        if (broker_pid == 0) {
                execv(BROKERD_PATH, (char **) argv);
                _exit(127);
        }
        broker_wait_ready();
}

static void broker_stop(void) {
        int status;

        ck_assert_int_eq(kill(broker_pid, SIGTERM), 0);
        ck_assert_int_eq(waitpid(broker_pid, &status, 0), broker_pid);
        /* A clean exit proves the broker survived whatever the test did to it. */
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "broker died: status 0x%x", status);
}

static int fds_at_start;

static void setup_with(const char *const *extra) {
        static const char *const defaults[] = { "--no-config", NULL };

        if (!extra)
                extra = defaults;
        snprintf(rundir, sizeof(rundir), "/tmp/shmem-it-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(rundir));
        snprintf(sockpath, sizeof(sockpath), "%s/broker.sock", rundir);
        fds_at_start = count_fds();
        broker_start(extra);
}

static void setup(void) {
        static const char *const extra[] = { "--no-config", "--region", "pair:4K:peers=2", "--region",
                                             "compat:3M:ivshmem:vectors=3", NULL };

        setup_with(extra);
}

static void teardown(void) {
        char cmd[400];

        broker_stop();
        ck_assert_int_eq(count_fds(), fds_at_start);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", rundir);
        ck_assert_int_eq(system(cmd), 0);
}

static shmem_t *attach_flags(const char *name, uint64_t size, unsigned flags, int expect) {
        struct shmem_attach_opts o = { .size = sizeof(o), .socket = sockpath, .label = "it" };
        shmem_t *h = NULL;
        int r = shmem_attach(&h, name, size, flags, &o);

        ck_assert_msg(r == expect, "attach '%s': got %d (%s), want %d", name, r, shmem_strstatus(r), expect);
        return h;
}

static shmem_t *attach(const char *name, uint64_t size) {
        return attach_flags(name, size, 0, 0);
}

/* Waits until @h has seen all of @want as senders; returns what it saw in all. */
static uint64_t wait_senders(shmem_t *h, uint64_t want, int timeout_ms) {
        uint64_t seen = 0;

        for (int t = 0; t < timeout_ms && (seen & want) != want; t += 50) {
                struct shmem_event ev;
                int r = shmem_wait(h, 50, &ev);

                ck_assert_int_ge(r, 0);
                if (r > 0)
                        seen |= ev.senders;
        }
        return seen;
}

/* Waits for a membership event after which the active bitmap equals @active. */
static void wait_active(shmem_t *h, uint64_t active) {
        for (int t = 0; t < 5000; t += 50) {
                struct shmem_event ev;

                ck_assert_int_ge(shmem_wait(h, 50, &ev), 0);
                if (shmem_active(h) == active)
                        return;
        }
        ck_abort_msg("active is 0x%llx, want 0x%llx", (unsigned long long) shmem_active(h),
                     (unsigned long long) active);
}

START_TEST(test_first_attach_creates_and_fixes_size) {
        shmem_t *a = attach("r1", 100000);
        shmem_t *b = attach("r1", 8 << 20);

        /* 100000 rounded up to pages, whatever the second attacher asked for. */
        ck_assert_uint_eq(shmem_size(a), 102400);
        ck_assert_uint_eq(shmem_size(b), 102400);
        ck_assert_uint_eq(shmem_index(a), 0);
        ck_assert_uint_eq(shmem_index(b), 1);
        ck_assert_uint_eq(shmem_max_peers(a), 16);
        ck_assert_str_eq(shmem_name(b), "r1");

        strcpy(shmem_data(a), "written by a");
        ck_assert_str_eq(shmem_data(b), "written by a");
        strcpy((char *) shmem_data(b) + 100000, "tail by b");
        ck_assert_str_eq((char *) shmem_data(a) + 100000, "tail by b");

        shmem_detach(b);
        shmem_detach(a);
}
END_TEST

START_TEST(test_find_and_exclusive) {
        shmem_t *a;

        ck_assert_ptr_null(attach_flags("missing", 4096, SHMEM_FIND, SHMEM_STATUS_DOES_NOT_EXIST));
        a = attach_flags("ex", 4096, SHMEM_EXCLUSIVE, 0);
        ck_assert_ptr_null(attach_flags("ex", 4096, SHMEM_EXCLUSIVE, SHMEM_STATUS_EXISTS));
        shmem_detach(attach_flags("ex", 0, SHMEM_FIND, 0));
        /* A declared region exists before anyone attached. */
        shmem_detach(attach_flags("declared", 0, SHMEM_FIND, 0));
        shmem_detach(a);
        /* The last peer left an undeclared region: it is gone. */
        ck_assert_ptr_null(attach_flags("ex", 4096, SHMEM_FIND, SHMEM_STATUS_DOES_NOT_EXIST));
}
END_TEST

START_TEST(test_client_max) {
        shmem_t *h[16];

        for (unsigned i = 0; i < 16; i++) {
                h[i] = attach("full", 4096);
                ck_assert_uint_eq(shmem_index(h[i]), i);
        }
        ck_assert_ptr_null(attach_flags("full", 4096, 0, SHMEM_STATUS_CLIENT_MAX));
        /* Lowest free index is reused. */
        shmem_detach(h[5]);
        h[5] = attach("full", 4096);
        ck_assert_uint_eq(shmem_index(h[5]), 5);
        for (unsigned i = 0; i < 16; i++)
                shmem_detach(h[i]);
}
END_TEST

START_TEST(test_selective_signaling) {
        shmem_t *p[4];
        struct shmem_event ev;

        for (unsigned i = 0; i < 4; i++)
                p[i] = attach("sig", 4096);
        for (unsigned i = 0; i < 4; i++)
                wait_active(p[i], 0xf);
        for (unsigned i = 0; i < 4; i++)
                while (shmem_wait(p[i], 0, &ev) > 0)
                        ; /* drain membership events */

        ck_assert_int_eq(shmem_notify(p[3], 0x5), 0); /* {0, 2} */
        ck_assert_uint_eq(shmem_unconsumed(p[3]) & 0x5, 0x5);
        ck_assert_uint_eq(wait_senders(p[0], 0x8, 3000), 0x8);
        ck_assert_uint_eq(wait_senders(p[2], 0x8, 3000), 0x8);
        ck_assert_uint_eq(shmem_unconsumed(p[3]), 0);
        /* Peer 1 was not in the set: nothing arrives. */
        ck_assert_int_eq(shmem_wait(p[1], 300, &ev), 0);

        /* Two senders to one receiver: it learns exactly both. */
        ck_assert_int_eq(shmem_notify(p[0], 0x4), 0);
        ck_assert_int_eq(shmem_notify(p[1], 0x4), 0);
        ck_assert_uint_eq(wait_senders(p[2], 0x3, 3000), 0x3);
        ck_assert_int_eq(shmem_wait(p[3], 200, &ev), 0);

        /* All but me. */
        ck_assert_int_eq(shmem_notify(p[2], SHMEM_ALL_BUT_ME), 0);
        ck_assert_uint_eq(wait_senders(p[0], 0x4, 3000), 0x4);
        ck_assert_uint_eq(wait_senders(p[1], 0x4, 3000), 0x4);
        ck_assert_uint_eq(wait_senders(p[3], 0x4, 3000), 0x4);
        ck_assert_int_eq(shmem_wait(p[2], 200, &ev), 0);

        for (unsigned i = 0; i < 4; i++)
                shmem_detach(p[i]);
}
END_TEST

START_TEST(test_membership_events) {
        shmem_t *a = attach("mem", 4096), *b;
        struct shmem_event ev;
        uint64_t epoch;

        ck_assert_uint_eq(shmem_active(a), 0x1);
        b = attach("mem", 4096);
        ck_assert_int_eq(shmem_wait(a, 3000, &ev), 1);
        ck_assert(ev.membership_changed);
        ck_assert_uint_eq(ev.active, 0x3);
        epoch = ev.epoch;
        /* The new peer can be signaled at once. */
        ck_assert_int_eq(shmem_notify(a, 0x2), 0);
        ck_assert_uint_eq(wait_senders(b, 0x1, 3000), 0x1);

        shmem_detach(b);
        ck_assert_int_eq(shmem_wait(a, 3000, &ev), 1);
        ck_assert(ev.membership_changed);
        ck_assert_uint_eq(ev.active, 0x1);
        ck_assert_uint_gt(ev.epoch, epoch);
        shmem_detach(a);
}
END_TEST

START_TEST(test_sigkill_frees_index) {
        shmem_t *a = attach("kill", 4096), *c;
        int pipefd[2];
        pid_t child;
        char ch;

        ck_assert_int_eq(pipe(pipefd), 0);
        child = fork();
        if (child == 0) {
                shmem_t *b = attach("kill", 4096);

                /* Leave a signal unconsumed in a's slot, then die. */
                shmem_notify(b, 0x1);
                (void) !write(pipefd[1], "x", 1);
                pause();
                _exit(shmem_index(b) == 1 ? 0 : 1);
        }
        close(pipefd[1]);
        ck_assert_int_eq(read(pipefd[0], &ch, 1), 1);
        close(pipefd[0]);
        wait_active(a, 0x3);
        ck_assert_int_eq(kill(child, SIGKILL), 0);
        ck_assert_int_eq(waitpid(child, NULL, 0), child);
        wait_active(a, 0x1);
        /* Index 1 is free again, and its next holder inherits no signal. */
        c = attach("kill", 4096);
        ck_assert_uint_eq(shmem_index(c), 1);
        ck_assert_uint_eq(shmem_unconsumed(c), 0);
        shmem_detach(c);
        shmem_detach(a);
}
END_TEST

/* Runs shmem-peer on region @name with @script as its commands; returns its exit status, its output in @out. */
static int run_peer(const char *name, const char *script, char *out, size_t size) {
        char cmd[1024];
        size_t n;
        FILE *p;

        snprintf(cmd, sizeof(cmd), "%s --socket %s --label forger %s %s 2>&1", SHMEM_PEER_PATH, sockpath, name,
                 script);
        p = popen(cmd, "re");
        ck_assert_ptr_nonnull(p);
        n = fread(out, 1, size - 1, p);
        out[n] = '\0';
        return pclose(p);
}

/* Waits until @h's rung view holds @want; returns both views, summed over the waits. */
static void wait_rang(shmem_t *h, uint64_t want, uint64_t *ret_senders, uint64_t *ret_rang) {
        *ret_senders = *ret_rang = 0;
        for (int t = 0; t < 3000 && (*ret_rang & want) != want; t += 50) {
                struct shmem_event ev;
                int r = shmem_wait(h, 50, &ev);

                ck_assert_int_ge(r, 0);
                if (r > 0) {
                        *ret_senders |= ev.senders;
                        *ret_rang |= ev.rang;
                }
        }
}

START_TEST(test_forged_signal_names_the_ringer) {
        shmem_t *v = attach("forge", 4096), *a = attach("forge", 4096);
        uint64_t senders, rang;
        struct shmem_event ev;
        char out[4096];

        wait_active(v, 0x3);
        while (shmem_wait(v, 0, &ev) > 0)
                ; /* drain membership events */

        /* F (index 2) sets A's bit in V's pending word without ringing, then
         * rings V with its own eventfd without setting a bit. */
        ck_assert_int_eq(run_peer("forge", "info forge-pending 0 0x2 ring-only 0x1", out, sizeof(out)), 0);
        ck_assert_msg(strstr(out, "info index=2 "), "%s", out);
        /* The pending view is forged: even A thinks V has not consumed its signal yet. */
        ck_assert_uint_eq(shmem_unconsumed(a), 0x1);
        wait_rang(v, 0x4, &senders, &rang);
        ck_assert_uint_eq(senders, 0x2);
        ck_assert_uint_eq(rang, 0x4); /* only the forger rang */

        /* A real signal from A is in both views. */
        ck_assert_int_eq(shmem_notify(a, 0x1), 0);
        wait_rang(v, 0x2, &senders, &rang);
        ck_assert_uint_eq(senders, 0x2);
        ck_assert_uint_eq(rang, 0x2);
        shmem_detach(a);
        shmem_detach(v);
}
END_TEST

START_TEST(test_bad_names_and_sizes) {
        static const char *const bad[] = { "", ".hidden", "a/b", "sp ace", "nul\x01",
                "0123456789012345678901234567890123456789012345678901234567890123" };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                ck_assert_ptr_null(attach_flags(bad[i], 4096, 0, SHMEM_STATUS_ILLEGAL_NAME));
        /* 63 characters is fine. */
        shmem_detach(attach("012345678901234567890123456789012345678901234567890123456789012", 4096));
        ck_assert_ptr_null(attach_flags("zero", 0, 0, SHMEM_STATUS_BAD_SIZE));
        ck_assert_ptr_null(attach_flags("huge", UINT64_C(1) << 40, 0, SHMEM_STATUS_BAD_SIZE));
        /* Exactly at the 1 GiB default: data + control page must be a power of two <= 1 GiB. */
        ck_assert_ptr_null(attach_flags("edge", UINT64_C(1) << 30, 0, SHMEM_STATUS_BAD_SIZE));
        shmem_detach(attach("edge", (UINT64_C(1) << 30) - 4096));
}
END_TEST

/* --- misbehaving peers --- */

static int raw_connect(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        ck_assert_int_ge(fd, 0);
        strcpy(sa.sun_path, sockpath);
        ck_assert_int_eq(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        return fd;
}

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

static void send_message(int fd, const Message *m, const int *fds, size_t n_fds) {
        uint8_t buf[SHMEM_MSG_MAX];
        size_t n = shmem__message__pack(m, buf);

        ck_assert_int_eq(fdmsg_send_now(fd, buf, n, fds, n_fds), 0);
}

static void send_hello(int fd) {
        Shmem__Hello h = SHMEM__HELLO__INIT;
        Message m = SHMEM__MESSAGE__INIT;

        h.version = 1;
        h.label = "raw";
        m.serial = 1;
        m.body_case = SHMEM__MESSAGE__BODY_HELLO;
        m.hello = &h;
        send_message(fd, &m, NULL, 0);
}

/* The region of a well-behaved pair still works after each abuse. */
static void assert_others_unharmed(shmem_t *a, shmem_t *b) {
        shmem_t *c;

        ck_assert_int_eq(shmem_notify(a, 0x2), 0);
        ck_assert_uint_eq(wait_senders(b, 0x1, 3000) & 0x1, 0x1);
        c = attach("other", 4096);
        shmem_detach(c);
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

/* --- QEMU's side, spoken by a fake QEMU: message order and notices --- */

static int qemu_connect(const char *region) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%.50s/qemu/%.40s.sock", rundir, region);
        ck_assert_int_eq(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        return fd;
}

/* Reads one ivshmem message (int64 LE, maybe one fd) within 3 s; returns the fd or -1. */
static int qemu_read(int sock, int64_t *ret) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int))];
        } control;
        struct iovec iov = { .iov_base = ret, .iov_len = sizeof(*ret) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                             .msg_controllen = sizeof(control.buf) };
        struct pollfd p = { .fd = sock, .events = POLLIN };
        struct cmsghdr *c;
        int fd = -1;

        ck_assert_msg(poll(&p, 1, 3000) == 1, "no ivshmem message within 3 s");
        ck_assert_int_eq(recvmsg(sock, &mh, MSG_WAITALL | MSG_CMSG_CLOEXEC), (ssize_t) sizeof(*ret));
        ck_assert_int_eq(mh.msg_flags & MSG_CTRUNC, 0);
        c = CMSG_FIRSTHDR(&mh);
        if (c && c->cmsg_type == SCM_RIGHTS)
                memcpy(&fd, CMSG_DATA(c), sizeof(fd));
        return fd;
}

static void qemu_expect(int sock, int64_t value, bool with_fd) {
        int64_t v;
        int fd = qemu_read(sock, &v);

        ck_assert_int_eq(v, value);
        ck_assert_msg((fd >= 0) == with_fd, "message %lld: fd %d", (long long) value, fd);
        if (fd >= 0)
                close(fd);
}

/* Nothing more arrives within 200 ms. */
static void qemu_expect_quiet(int sock) {
        struct pollfd p = { .fd = sock, .events = POLLIN };

        ck_assert_int_eq(poll(&p, 1, 200), 0);
}

START_TEST(test_qemu_protocol) {
        shmem_t *host = attach("declared", 0);
        int q1, q2, memfd, fd_to_host = -1;
        int64_t v;
        struct stat st;
        struct shmem_control_page *page;

        /* Handshake, in contrib/ivshmem-server's order. */
        q1 = qemu_connect("declared");
        qemu_expect(q1, 0, false);      /* version */
        qemu_expect(q1, 1, false);      /* doorbell id: the host peer has 0 */
        memfd = qemu_read(q1, &v);
        ck_assert_int_eq(v, -1);
        ck_assert_int_ge(memfd, 0);
        ck_assert_int_eq(fstat(memfd, &st), 0);
        ck_assert_int_eq(st.st_size & (st.st_size - 1), 0); /* a power of two, or QEMU aborts */
        fd_to_host = qemu_read(q1, &v); /* the host peer: one fd, its "vector 0" */
        ck_assert_int_eq(v, 0);
        ck_assert_int_ge(fd_to_host, 0);
        for (int i = 0; i < 17; i++)
                qemu_expect(q1, 1, true); /* own vectors: max_peers + 1 */
        qemu_expect_quiet(q1);

        page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
        ck_assert_ptr_ne(page, MAP_FAILED);
        ck_assert_uint_eq(page->magic, SHMEM_LAYOUT_MAGIC);
        ck_assert_uint_eq(page->slots[1].doorbell_id, 1);
        ck_assert_uint_eq(page->slots[1].kind, SHMEM_PEER_KIND_QEMU);

        /* What a guest does: its bit in the host's pending word, then the
         * doorbell, which QEMU turns into this eventfd write. */
        __atomic_fetch_or(&page->slots[0].pending, UINT64_C(1) << 1, __ATOMIC_SEQ_CST);
        ck_assert_int_eq(write(fd_to_host, &(uint64_t) { 1 }, 8), 8);
        ck_assert_uint_eq(wait_senders(host, 0x2, 3000), 0x2);

        /* A second QEMU: the first gets one join message with one fd. */
        q2 = qemu_connect("declared");
        qemu_expect(q1, 2, true);
        qemu_expect_quiet(q1);
        /* The host leaves: a leave notice is an id without fd. */
        shmem_detach(host);
        qemu_expect(q1, 0, false);
        close(q2);
        qemu_expect(q1, 2, false);
        /* Index 0 is free again, but its doorbell id is not reused (QEMU 7.2 heap bug). */
        host = attach("declared", 0);
        ck_assert_uint_eq(shmem_index(host), 0);
        qemu_expect(q1, 3, true);
        ck_assert_uint_eq(page->slots[0].doorbell_id, 3);

        munmap((void *) page, 4096);
        close(fd_to_host);
        close(memfd);
        close(q1);
        shmem_detach(host);
}
END_TEST

START_TEST(test_qemu_compat_mode) {
        int q1 = qemu_connect("compat"), q2, memfd, own1[3], to_q1[3];
        uint64_t head, count;
        struct stat st;
        int64_t v;

        /* contrib/ivshmem-server's handshake: no control page, 3 vectors each. */
        qemu_expect(q1, 0, false);
        qemu_expect(q1, 0, false); /* doorbell id 0 */
        memfd = qemu_read(q1, &v);
        ck_assert_int_eq(v, -1);
        ck_assert_int_eq(fstat(memfd, &st), 0);
        ck_assert_int_eq(st.st_size, 4 << 20); /* 3M rounded to a power of two: all data */
        ck_assert_int_eq(pread(memfd, &head, sizeof(head), 0), (ssize_t) sizeof(head));
        ck_assert_uint_eq(head, 0); /* no control page magic: the guests own every byte */
        for (int i = 0; i < 3; i++) {
                own1[i] = qemu_read(q1, &v);
                ck_assert_int_eq(v, 0);
                ck_assert_int_ge(own1[i], 0);
        }
        qemu_expect_quiet(q1);

        q2 = qemu_connect("compat");
        qemu_expect(q2, 0, false);
        qemu_expect(q2, 1, false);
        qemu_expect(q2, -1, true);
        for (int i = 0; i < 3; i++) { /* every vector of peer 0 */
                to_q1[i] = qemu_read(q2, &v);
                ck_assert_int_eq(v, 0);
        }
        for (int i = 0; i < 3; i++)
                qemu_expect(q2, 1, true);
        for (int i = 0; i < 3; i++) /* q1 learns all of q2's vectors */
                qemu_expect(q1, 1, true);

        /* Guest 1 rings guest 0's vector 2: exactly that vector fires. */
        ck_assert_int_eq(write(to_q1[2], &(uint64_t) { 1 }, 8), 8);
        ck_assert_int_eq(read(own1[2], &count, 8), 8);
        ck_assert_int_eq(fcntl(own1[0], F_SETFL, O_NONBLOCK), 0);
        ck_assert_int_eq(read(own1[0], &count, 8), -1);

        /* Host peers speak the control-page protocol: refused here. */
        ck_assert_ptr_null(attach_flags("compat", 0, 0, SHMEM_STATUS_BAD_REQUEST));
        close(q2);
        qemu_expect(q1, 1, false);
        for (int i = 0; i < 3; i++) {
                close(own1[i]);
                close(to_q1[i]);
        }
        close(memfd);
        close(q1);
}
END_TEST

/* Connects to a QEMU socket as uid 65534 with @gid as its only group; returns errno or 0. */
static int qemu_connect_as(gid_t gid) {
        int pipefd[2], err = -1;
        pid_t child;

        ck_assert_int_eq(pipe(pipefd), 0);
        child = fork();
        if (child == 0) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                int fd, e = 0;

                if (setgroups(1, &gid) < 0 || setgid(gid) < 0 || setuid(65534) < 0)
                        _exit(1);
                snprintf(sa.sun_path, sizeof(sa.sun_path), "%.80s/qemu/declared.sock", rundir);
                fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                        e = errno;
                (void) !write(pipefd[1], &e, sizeof(e));
                _exit(0);
        }
        close(pipefd[1]);
        ck_assert_int_eq(read(pipefd[0], &err, sizeof(err)), (ssize_t) sizeof(err));
        close(pipefd[0]);
        ck_assert_int_eq(waitpid(child, NULL, 0), child);
        return err;
}

START_TEST(test_qemu_socket_group) {
        const char *const groups[] = { "libvirt-qemu", "kvm" };
        struct group *g = NULL;
        char path[300];
        struct stat st;

        ck_assert_int_eq(chmod(rundir, 0755), 0); /* mkdtemp() made it 0700 */
        snprintf(path, sizeof(path), "%.200s/qemu/declared.sock", rundir);
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_int_eq(st.st_mode & 0777, 0660);
        for (size_t i = 0; i < 2 && !g; i++)
                g = getgrnam(groups[i]);
        if (g) {
                /* The group QEMU runs in (libvirt-qemu, else kvm) may connect... */
                ck_assert_int_eq(st.st_gid, g->gr_gid);
                ck_assert_int_eq(qemu_connect_as(g->gr_gid), 0);
        } else
                ck_assert_int_eq(st.st_gid, getegid());
        /* ...anyone else may not. */
        ck_assert_int_eq(qemu_connect_as(65534), EACCES);
}
END_TEST

START_TEST(test_qemu_refused_by_version) {
        shmem_t *a = attach("pair", 0), *b = attach("pair", 0);
        int q = qemu_connect("pair");
        int64_t v;
        char c;

        /* Full: refused by a version QEMU reports ("server sent version 1003"),
         * never by a close mid-handshake, which hangs QEMU. */
        ck_assert_int_eq(qemu_read(q, &v), -1);
        ck_assert_int_eq(v, 1000 + SHMEM_STATUS_CLIENT_MAX);
        ck_assert_int_eq(recv(q, &c, 1, 0), 0);
        close(q);
        assert_others_unharmed(a, b);
        shmem_detach(b);
        shmem_detach(a);
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
        /* ...until a connection goes. */
        shmem_detach(b);
        q1 = qemu_connect("lim");
        qemu_expect(q1, 0, false);
        close(q1);
        shmem_detach(a);
}
END_TEST

static void setup_small_queue(void) {
        static const char *const extra[] = { "--no-config", "--max-queued-bytes=4096", NULL };

        setup_with(extra);
}

START_TEST(test_peer_that_never_reads) {
        shmem_t *a = attach("busy", 4096);
        int lazy = raw_connect(), status = -1;
        Message m = SHMEM__MESSAGE__INIT;
        Shmem__Attach at = SHMEM__ATTACH__INIT;
        char buf[SHMEM_MSG_MAX];

        /* Attach a raw peer that then never reads its events. */
        send_hello(lazy);
        at.name = "busy";
        at.size = 4096;
        m.serial = 2;
        m.body_case = SHMEM__MESSAGE__BODY_ATTACH;
        m.attach = &at;
        send_message(lazy, &m, NULL, 0);
        wait_active(a, 0x3);

        /* Churn: every join and leave queues an event for the lazy peer. */
        for (int i = 0; i < 3000 && (shmem_active(a) & 0x2); i++) {
                shmem_t *c = attach("busy", 4096);
                struct shmem_event ev;

                shmem_detach(c);
                (void) shmem_wait(a, 0, &ev);
        }
        wait_active(a, 0x1);
        /* It was dropped: its socket reaches end of file after what was queued. */
        while ((status = (int) recv(lazy, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
                ;
        ck_assert_int_eq(status, 0);
        close(lazy);
        shmem_detach(a);
}
END_TEST

/* Sends @m on a raw connection after Hello; returns the reply's status (and its error text). */
static int raw_request(int fd, Message *m, char *error, size_t size) {
        uint8_t buf[SHMEM_MSG_MAX];
        struct pollfd p = { .fd = fd, .events = POLLIN };
        Message *reply = NULL;
        ssize_t n;
        int status;

        for (;;) {
                ck_assert_int_eq(poll(&p, 1, 5000), 1);
                n = recv(fd, buf, sizeof(buf), 0);
                ck_assert_int_gt(n, 0);
                reply = shmem__message__unpack(NULL, (size_t) n, buf);
                ck_assert_ptr_nonnull(reply);
                if (reply->serial == 1) /* the Hello reply */
                        break;
                shmem__message__free_unpacked(reply, NULL);
        }
        shmem__message__free_unpacked(reply, NULL);
        m->serial = 7;
        send_message(fd, m, NULL, 0);
        for (;;) {
                ck_assert_int_eq(poll(&p, 1, 5000), 1);
                n = recv(fd, buf, sizeof(buf), 0);
                ck_assert_int_gt(n, 0);
                reply = shmem__message__unpack(NULL, (size_t) n, buf);
                ck_assert_ptr_nonnull(reply);
                if (reply->serial == 7)
                        break;
                shmem__message__free_unpacked(reply, NULL);
        }
        ck_assert_int_eq(reply->body_case, SHMEM__MESSAGE__BODY_REPLY);
        status = reply->reply->status;
        if (error)
                snprintf(error, size, "%s", reply->reply->error);
        shmem__message__free_unpacked(reply, NULL);
        return status;
}

static int admin_request(int body, char *error, size_t size) {
        Shmem__Create cr = SHMEM__CREATE__INIT;
        Shmem__Destroy de = SHMEM__DESTROY__INIT;
        Shmem__Reload rl = SHMEM__RELOAD__INIT;
        Message m = SHMEM__MESSAGE__INIT;
        int fd = raw_connect(), status;

        send_hello(fd);
        m.body_case = body;
        cr.name = "admin";
        cr.size = 4096;
        de.name = "declared";
        m.create = &cr;
        if (body == SHMEM__MESSAGE__BODY_DESTROY)
                m.destroy = &de;
        else if (body == SHMEM__MESSAGE__BODY_RELOAD)
                m.reload = &rl;
        status = raw_request(fd, &m, error, size);
        close(fd);
        return status;
}

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

static void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "we");

        ck_assert_ptr_nonnull(f);
        fputs(text, f);
        fclose(f);
}

/*
 * Attaches to @name as uid/gid with @group as its only supplementary group
 * ((gid_t) -1: none), in a child. Returns the attach status. With @hold, the
 * child stays attached until *hold (a pipe) is closed; *hold is set then.
 */
static pid_t held_child;

static int attach_as(uid_t uid, gid_t gid, gid_t group, const char *name, unsigned flags, int *hold) {
        int result[2], stay[2] = { -1, -1 }, r = -1;
        pid_t child;

        ck_assert_int_eq(pipe(result), 0);
        if (hold)
                ck_assert_int_eq(pipe(stay), 0);
        child = fork();
        if (child == 0) {
                struct shmem_attach_opts o = { .size = sizeof(o), .socket = sockpath };
                shmem_t *h = NULL;
                char c;

                if (setgroups(group == (gid_t) -1 ? 0 : 1, &group) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
                        _exit(99);
                r = shmem_attach(&h, name, 4096, flags, &o);
                (void) !write(result[1], &r, sizeof(r));
                if (hold) {
                        close(stay[1]);
                        (void) !read(stay[0], &c, 1);
                }
                shmem_detach(h);
                _exit(0);
        }
        close(result[1]);
        ck_assert_int_eq(read(result[0], &r, sizeof(r)), (ssize_t) sizeof(r));
        close(result[0]);
        if (hold) {
                close(stay[0]);
                *hold = stay[1]; /* closing it lets the child detach and exit */
                held_child = child;
        } else
                ck_assert_int_eq(waitpid(child, NULL, 0), child);
        return r;
}

START_TEST(test_region_access) {
        int hold = -1;

        ck_assert_int_eq(chmod(rundir, 0755), 0);
        /* [region priv] group = nogroup, mode = 0660: others may not attach. */
        ck_assert_int_eq(attach_as(65533, 65533, (gid_t) -1, "priv", SHMEM_FIND, NULL), SHMEM_STATUS_NO_PERMISSION);
        ck_assert_int_eq(attach_as(65533, 65533, 65534, "priv", SHMEM_FIND, NULL), 0);  /* supplementary group */
        ck_assert_int_eq(attach_as(65534, 65534, (gid_t) -1, "priv", SHMEM_FIND, NULL), 0);  /* primary group */
        /* A declared region with no access keys is open. */
        ck_assert_int_eq(attach_as(65533, 65533, (gid_t) -1, "declared", SHMEM_FIND, NULL), 0);
        /* A region a host peer creates is its own and its group's (0660)... */
        ck_assert_int_eq(attach_as(65534, 65534, (gid_t) -1, "mine", 0, &hold), 0);
        ck_assert_int_eq(attach_as(65533, 65533, (gid_t) -1, "mine", SHMEM_FIND, NULL), SHMEM_STATUS_NO_PERMISSION);
        ck_assert_int_eq(attach_as(65533, 65533, 65534, "mine", SHMEM_FIND, NULL), 0);
        /* ...and [limits] regions-per-uid = 1 refuses its second. */
        ck_assert_int_eq(attach_as(65534, 65534, (gid_t) -1, "mine2", 0, NULL), SHMEM_STATUS_LIMIT);
        /* Root may attach anywhere. */
        shmem_detach(attach_flags("mine", 0, SHMEM_FIND, 0));
        close(hold);
        ck_assert_int_eq(waitpid(held_child, NULL, 0), held_child);
        /* Once "mine" is gone, the same user may create again. */
        ck_assert_int_eq(attach_as(65534, 65534, (gid_t) -1, "mine2", 0, NULL), 0);
}
END_TEST

/* Starts the broker on conf_path with @text, and @dropin (or nothing) in conf.d/ beside it. */
static void setup_with_config(const char *text, const char *dropin, const char *const *more) {
        const char *extra[8] = { "--config", conf_path };
        size_t n = 2;
        char dir[400], conf[500];

        snprintf(rundir, sizeof(rundir), "/tmp/shmem-it-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(rundir));
        snprintf(dir, sizeof(dir), "%.200s/etc", rundir);
        ck_assert_int_eq(mkdir(dir, 0755), 0);
        snprintf(conf, sizeof(conf), "%.200s/conf.d", dir);
        ck_assert_int_eq(mkdir(conf, 0755), 0);
        if (dropin) {
                snprintf(conf, sizeof(conf), "%.200s/conf.d/10-test.conf", dir);
                write_file(conf, dropin);
        }
        snprintf(conf_path, sizeof(conf_path), "%.200s/broker.conf", dir);
        write_file(conf_path, text);
        for (; more && *more; more++)
                extra[n++] = *more;
        snprintf(sockpath, sizeof(sockpath), "%s/broker.sock", rundir);
        fds_at_start = count_fds();
        broker_start(extra);
}

static void setup_access(void) {
        static const char *const more[] = { "--region", "declared:4K", NULL };

        setup_with_config("[limits]\nregions-per-uid = 1\n[region priv]\nsize = 4K\ngroup = nogroup\nmode = 0660\n",
                          NULL, more);
}

static shmem_t *attach_labeled(const char *label, const char *name, int expect) {
        struct shmem_attach_opts o = { .size = sizeof(o), .socket = sockpath, .label = label };
        shmem_t *h = NULL;
        int r = shmem_attach(&h, name, 4096, SHMEM_FIND, &o);

        ck_assert_msg(r == expect, "%s -> %s: got %d (%s), want %d", label, name, r, shmem_strstatus(r), expect);
        return h;
}

START_TEST(test_access_rules) {
        int64_t v;
        int q;

        /* [client ci-*] allow = ok-* shared: an allow implies a final deny *. */
        shmem_detach(attach_labeled("ci-app", "ok-1", 0));
        shmem_detach(attach_labeled("ci-app", "shared", 0));
        attach_labeled("ci-app", "other", SHMEM_STATUS_NO_PERMISSION);
        /* No section matches: no rule applies. */
        shmem_detach(attach_labeled("tool", "other", 0));
        /* [client qemu-*] deny = secret, for the fake QEMU (labelled qemu-PID, no -name):
         * a deny implies a final allow *; refused by version 1000 + NO_PERMISSION. */
        q = qemu_connect("secret");
        ck_assert_int_eq(qemu_read(q, &v), -1);
        ck_assert_int_eq(v, 1000 + SHMEM_STATUS_NO_PERMISSION);
        close(q);
        q = qemu_connect("ok-1");
        qemu_expect(q, 0, false);
        close(q);
}
END_TEST

START_TEST(test_subst) {
        /* [client sub-*] subst = t1-: what sub-x calls "data" is "t1-data". */
        shmem_t *sub = attach_labeled("sub-x", "data", 0), *plain = attach_labeled("plain", "t1-data", 0),
                *other = attach_labeled("plain", "data", 0);

        ck_assert_str_eq(shmem_name(sub), "data");
        strcpy(shmem_data(sub), "via subst");
        ck_assert_str_eq(shmem_data(plain), "via subst");
        ck_assert_str_ne(shmem_data(other), "via subst");
        shmem_detach(other);
        shmem_detach(plain);
        shmem_detach(sub);
}
END_TEST

START_TEST(test_pinned_index) {
        /* [region pinned] pin = late:0: index 0 waits for "late" whoever comes first. */
        struct shmem_attach_opts o = { .size = sizeof(o), .socket = sockpath };
        shmem_t *early, *late, *other;

        o.label = "early";
        ck_assert_int_eq(shmem_find(&early, "pinned", &o), 0);
        ck_assert_uint_eq(shmem_index(early), 1);
        o.label = "other";
        ck_assert_int_eq(shmem_find(&other, "pinned", &o), 0);
        ck_assert_uint_eq(shmem_index(other), 2);
        o.label = "late";
        ck_assert_int_eq(shmem_find(&late, "pinned", &o), 0);
        ck_assert_uint_eq(shmem_index(late), 0);
        shmem_detach(late);
        shmem_detach(other);
        shmem_detach(early);
}
END_TEST

static long meminfo(const char *key) {
        char line[256];
        long v = -1;
        FILE *f = fopen("/proc/meminfo", "re");

        while (f && fgets(line, sizeof(line), f))
                if (strncmp(line, key, strlen(key)) == 0)
                        v = strtol(line + strlen(key), NULL, 10);
        if (f)
                fclose(f);
        return v;
}

static void write_sysctl(const char *path, long value) {
        FILE *f = fopen(path, "we");

        ck_assert_msg(f, "cannot open %s: run the tests as root (they set vm.nr_hugepages)", path);
        fprintf(f, "%ld\n", value);
        ck_assert_int_eq(fclose(f), 0);
}

START_TEST(test_backends) {
        shmem_t *a, *b;
        long before = meminfo("HugePages_Total:");

        /* [region dir] backend = /dev/shm: an unlinked file there, shared as any region. */
        a = attach("dir", 0);
        b = attach("dir", 0);
        ck_assert_uint_eq(shmem_size(a), 65536);
        strcpy(shmem_data(a), "on tmpfs");
        ck_assert_str_eq(shmem_data(b), "on tmpfs");
        shmem_detach(b);
        shmem_detach(a);

        /* [region huge] backend = hugetlb-2M: it really takes a huge page. */
        ck_assert_int_ge(before, 0);
        write_sysctl("/proc/sys/vm/nr_hugepages", before + 2);
        ck_assert_int_eq(meminfo("HugePages_Total:"), before + 2);
        a = attach("huge", 0);
        b = attach("huge", 0);
        ck_assert_int_eq(meminfo("HugePages_Free:"), before + 2 - 1);
        strcpy(shmem_data(a), "on huge pages");
        ck_assert_str_eq(shmem_data(b), "on huge pages");
        shmem_detach(b);
        shmem_detach(a);
        write_sysctl("/proc/sys/vm/nr_hugepages", before);
}
END_TEST

static void setup_rules(void) {
        setup_with_config("[client sub-*]\nsubst = t1-\n[region t1-data]\nsize = 4K\n[region data]\nsize = 4K\n"
                          "[client ci-*]\nallow = ok-* shared\n[client qemu-*]\ndeny = secret\n"
                         "[region ok-1]\nsize = 4K\n[region shared]\nsize = 4K\n"
                         "[region secret]\nsize = 4K\n[region other]\nsize = 4K\n"
                         "[region pinned]\nsize = 4K\npin = late:0\n"
                         "[region dir]\nsize = 64K\nbackend = /dev/shm\n"
                          "[region huge]\nsize = 64K\nbackend = hugetlb-2M\n",
                          NULL, NULL);
}

/* --- configuration --- */

/* Runs the broker on a configuration that must be refused; returns its stderr. */
static void assert_config_refused(const char *conf, const char *expect) {
        char path[300], cmd[1024], out[1024] = "";
        FILE *p;
        size_t n;

        snprintf(path, sizeof(path), "%s/bad.conf", rundir);
        write_file(path, conf);
        snprintf(cmd, sizeof(cmd), "%s --config %s --rundir %s/other 2>&1; echo rc=$?", BROKERD_PATH, path,
                 rundir);
        p = popen(cmd, "re");
        n = fread(out, 1, sizeof(out) - 1, p);
        out[n] = 0;
        pclose(p);
        ck_assert_msg(strstr(out, expect) && strstr(out, "rc=1"), "want '%s', got: %s", expect, out);
}

START_TEST(test_config_regions_and_limits) {
        shmem_t *h[3];

        /* setup_config() started the broker on the files written there. */
        shmem_detach(attach_flags("cfg-a", 0, SHMEM_FIND, 0)); /* from broker.conf */
        h[0] = attach_flags("cfg-b", 0, SHMEM_FIND, 0);         /* from conf.d/ */
        h[1] = attach("cfg-b", 0);
        /* max-peers = 2 from conf.d refuses a third peer. */
        ck_assert_ptr_null(attach_flags("cfg-b", 0, 0, SHMEM_STATUS_CLIENT_MAX));
        ck_assert_uint_eq(shmem_size(h[0]), 4096);
        /* [limits] region-bytes = 1M: a bigger region is refused. */
        ck_assert_ptr_null(attach_flags("big", 2 << 20, 0, SHMEM_STATUS_BAD_SIZE));
        /* [limits] peers = 3 is the default for new regions. */
        h[2] = attach("new", 4096);
        ck_assert_uint_eq(shmem_max_peers(h[2]), 3);
        for (int i = 0; i < 3; i++)
                shmem_detach(h[i]);
}
END_TEST

START_TEST(test_config_refused_with_file_and_line) {
        assert_config_refused("[limits]\npeers = 99\n", "bad.conf:2: '99' is not a number from 1 to 64");
        assert_config_refused("[region ok]\nsize = 1M\nnonsense\n", "bad.conf:3:");
        assert_config_refused("[region .x]\nsize = 1\n", "bad.conf:2: [region .x]: names are");
        assert_config_refused("[frobnicate]\nx = 1\n", "unknown section [frobnicate]");
        assert_config_refused("[broker]\nqemu-socket-mode = 999\n", "octal mode");
        assert_config_refused("[region nosize]\npersistent = yes\n", "[region nosize] has no size");
        assert_config_refused("[limits]\nregion-bytes = 12Q\n", "is not a size");
        assert_config_refused("[region c]\nsize = 4K\nsignal-mode = qnx\n", "signal-mode must be shmem or ivshmem");
        assert_config_refused("[region c]\nsize = 4K\nvectors = 4\n", "vectors is for signal-mode = ivshmem");
        assert_config_refused("[region c]\nsize = 4K\npin = vm-a:64\n", "pin wants NAME:INDEX");
        assert_config_refused("[region c]\nsize = 4K\nbackend = tape\n", "backend must be memfd");
        assert_config_refused("[client x]\nsubst = a/b\n", "subst wants a name prefix");
}
END_TEST

/* Attaches with FIND until @expect comes back (a reload is asynchronous). */
static void wait_find_status(const char *name, int expect) {
        struct shmem_attach_opts o = { .size = sizeof(o), .socket = sockpath };

        for (int i = 0; i < 300; i++) {
                shmem_t *h = NULL;
                int r = shmem_find(&h, name, &o);

                shmem_detach(h);
                if (r == expect)
                        return;
                usleep(10000);
        }
        ck_abort_msg("'%s' never gave status %d", name, expect);
}


START_TEST(test_config_reload) {
        shmem_t *a = attach_flags("cfg-b", 0, SHMEM_FIND, 0), *b = attach("cfg-b", 0);

        /* Drop cfg-a, grow cfg-b (in use: keeps its size), add cfg-c. */
        write_file(conf_path, "[limits]\npeers = 3\nregion-bytes = 1M\n[region cfg-b]\nsize = 64K\n"
                              "max-peers = 2\n[region cfg-c]\nsize = 8K\n");
        ck_assert_int_eq(kill(broker_pid, SIGHUP), 0);
        wait_find_status("cfg-c", 0);
        wait_find_status("cfg-a", SHMEM_STATUS_DOES_NOT_EXIST);
        /* Attached peers did not notice. */
        ck_assert_uint_eq(shmem_size(a), 4096);
        assert_others_unharmed(a, b);

        /* An invalid file is refused and the configuration in force stays;
         * a Reload request (shmemctl reload) gets the reason back. */
        write_file(conf_path, "[region cfg-d]\nsize = 8K\ngarbage\n");
        {
                char error[512];

                ck_assert_int_eq(admin_request(SHMEM__MESSAGE__BODY_RELOAD, error, sizeof(error)),
                                 SHMEM_STATUS_BAD_REQUEST);
                ck_assert_msg(strstr(error, "broker.conf:3:"), "reason: %s", error);
        }
        ck_assert_int_eq(kill(broker_pid, SIGHUP), 0);
        usleep(300000);
        wait_find_status("cfg-c", 0);
        wait_find_status("cfg-d", SHMEM_STATUS_DOES_NOT_EXIST);
        assert_others_unharmed(a, b);
        shmem_detach(b);
        shmem_detach(a);
}
END_TEST

static void setup_config(void) {
        setup_with_config("# comment\n[limits]\npeers = 3\nregion-bytes = 1M\n\n[region cfg-a]\nsize = 64K\n",
                          "[region cfg-b]\nsize = 4K\nmax-peers = 2\n", NULL);
}

/* A TCase of @s whose tests each get a broker from @fixture. */
static TCase *broker_tcase(Suite *s, const char *name, void (*fixture)(void), int timeout) {
        TCase *tc = tcase_create(name);

        tcase_add_checked_fixture(tc, fixture, teardown);
        tcase_set_timeout(tc, timeout);
        suite_add_tcase(s, tc);
        return tc;
}

static Suite *broker_suite(void) {
        Suite *s = suite_create("broker");
        TCase *tc;

        tc = broker_tcase(s, "regions", setup, 30);
        tcase_add_test(tc, test_first_attach_creates_and_fixes_size);
        tcase_add_test(tc, test_find_and_exclusive);
        tcase_add_test(tc, test_client_max);
        tcase_add_test(tc, test_bad_names_and_sizes);

        tc = broker_tcase(s, "signals", setup, 30);
        tcase_add_test(tc, test_selective_signaling);
        tcase_add_test(tc, test_membership_events);
        tcase_add_test(tc, test_sigkill_frees_index);
        tcase_add_test(tc, test_forged_signal_names_the_ringer);

        tc = broker_tcase(s, "misbehaving", setup, 60);
        tcase_add_test(tc, test_bad_input_dropped);
        tcase_add_test(tc, test_qemu_socket_abuse);
        tcase_add_test(tc, test_admin_needs_root);

        tc = broker_tcase(s, "qemu-protocol", setup, 30);
        tcase_add_test(tc, test_qemu_protocol);
        tcase_add_test(tc, test_qemu_refused_by_version);
        tcase_add_test(tc, test_qemu_compat_mode);
        tcase_add_test(tc, test_qemu_socket_group);

        tc = broker_tcase(s, "config", setup_config, 30);
        tcase_add_test(tc, test_config_regions_and_limits);
        tcase_add_test(tc, test_config_refused_with_file_and_line);
        tcase_add_test(tc, test_config_reload);

        tc = broker_tcase(s, "access", setup_access, 30);
        tcase_add_test(tc, test_region_access);

        tc = broker_tcase(s, "rules", setup_rules, 30);
        tcase_add_test(tc, test_access_rules);
        tcase_add_test(tc, test_pinned_index);
        tcase_add_test(tc, test_subst);
        tcase_add_test(tc, test_backends);

        tc = broker_tcase(s, "connection-limit", setup_two_connections, 30);
        tcase_add_test(tc, test_connection_limit);

        tc = broker_tcase(s, "slow-reader", setup_small_queue, 120);
        tcase_add_test(tc, test_peer_that_never_reads);
        return s;
}

int main(void) {
        return run_suite(broker_suite());
}
