/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Peers that speak the wire by hand, for the integration-broker-* programs
 * (fake-peers.h): a native client on a raw socket, and a fake QEMU.
 */
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "broker-fixture.h"
#include "fake-peers.h"
#include "test-util.h"

int raw_connect(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        ck_assert_int_ge(fd, 0);
        strcpy(sa.sun_path, sockpath);
        ck_assert_int_eq(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        return fd;
}

void send_message(int fd, const Message *m, const int *fds, size_t n_fds) {
        uint8_t buf[SHMEM_MSG_MAX];
        size_t n = shmem__message__pack(m, buf);

        ck_assert_int_eq(fdmsg_send_now(fd, buf, n, fds, n_fds), 0);
}

void send_hello(int fd) {
        Shmem__Hello h = SHMEM__HELLO__INIT;
        Message m = SHMEM__MESSAGE__INIT;

        h.version = 1;
        h.label = "raw";
        m.serial = 1;
        m.body_case = SHMEM__MESSAGE__BODY_HELLO;
        m.hello = &h;
        send_message(fd, &m, NULL, 0);
}

int qemu_connect(const char *region) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%.50s/qemu/%.40s.sock", rundir, region);
        ck_assert_int_eq(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        return fd;
}

/* Reads one ivshmem message (int64 LE, maybe one fd) within 3 s; returns the fd or -1. */
int qemu_read(int sock, int64_t *ret) {
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

void qemu_expect(int sock, int64_t value, bool with_fd) {
        int64_t v;
        int fd = qemu_read(sock, &v);

        ck_assert_int_eq(v, value);
        ck_assert_msg((fd >= 0) == with_fd, "message %lld: fd %d", (long long) value, fd);
        if (fd >= 0)
                close(fd);
}

/* Sends @m on a raw connection after Hello; returns the reply's status (and its error text). */
int raw_request(int fd, Message *m, char *error, size_t size) {
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

int admin_request(int body, char *error, size_t size) {
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
