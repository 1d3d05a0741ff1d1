/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "fdmsg.h"

/* A message of copies of @bytes and of the numbers in @fds; nothing is closed on failure. */
static int fdmsg_make(FdMsg **ret, const void *bytes, size_t n_bytes, const int *fds, size_t n_fds) {
        FdMsg *m;

        if (n_fds > FDMSG_FDS_MAX)
                return -E2BIG;
        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->bytes = malloc(n_bytes ? n_bytes : 1);
        m->fds = malloc((n_fds ? n_fds : 1) * sizeof(int));
        if (!m->bytes || !m->fds) {
                free(m->bytes);
                free(m->fds);
                free(m);
                return -ENOMEM;
        }
        if (n_bytes)
                memcpy(m->bytes, bytes, n_bytes);
        if (n_fds)
                memcpy(m->fds, fds, n_fds * sizeof(int));
        m->n_bytes = n_bytes;
        m->n_fds = n_fds;
        *ret = m;
        return 0;
}

int fdmsg_new(FdMsg **ret, const void *bytes, size_t n_bytes, int *fds, size_t n_fds) {
        int r = fdmsg_make(ret, bytes, n_bytes, fds, n_fds);

        if (r < 0) {
                fds_close(fds, n_fds);
                return r;
        }
        for (size_t i = 0; i < n_fds; i++)
                fds[i] = -1;
        return 0;
}

int fdmsg_new_borrowed(FdMsg **ret, const void *bytes, size_t n_bytes, const int *fds, size_t n_fds) {
        int r = fdmsg_make(ret, bytes, n_bytes, fds, n_fds);

        if (r >= 0)
                (*ret)->borrowed = true;
        return r;
}

int fdmsg_own(FdMsg *m) {
        if (!m->borrowed)
                return 0;
        for (size_t i = 0; i < m->n_fds; i++) {
                int fd = m->fds[i] < 0 ? -1 : fcntl(m->fds[i], F_DUPFD_CLOEXEC, 3);

                if (m->fds[i] >= 0 && fd < 0) {
                        int r = -errno;

                        /* The copies made so far go; the borrowed rest are not ours to close. */
                        fds_close(m->fds, i);
                        for (size_t j = i; j < m->n_fds; j++)
                                m->fds[j] = -1;
                        m->borrowed = false;
                        return r;
                }
                m->fds[i] = fd;
        }
        m->borrowed = false;
        return 0;
}

FdMsg *fdmsg_free(FdMsg *m) {
        if (!m)
                return NULL;
        if (!m->borrowed)
                fds_close(m->fds, m->n_fds);
        free(m->fds);
        free(m->bytes);
        free(m);
        return NULL;
}

int fdmsg_steal_fd(FdMsg *m, size_t i) {
        if (i >= m->n_fds)
                return -1;
        return TAKE_FD(m->fds[i]);
}

static int send_raw(int fd, const uint8_t *bytes, size_t n_bytes, const int *fds, size_t n_fds,
                    int flags) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * FDMSG_FDS_MAX)];
        } control;
        struct iovec iov = { .iov_base = (void *) bytes, .iov_len = n_bytes };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n;

        if (n_fds > FDMSG_FDS_MAX)
                return -E2BIG;
        if (n_fds > 0) {
                struct cmsghdr *c;

                memset(&control, 0, sizeof(control));
                mh.msg_control = control.buf;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
        }
        do
                n = sendmsg(fd, &mh, MSG_NOSIGNAL | flags);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        return (int) n;
}

int fdmsg_send(int fd, FdMsg *m) {
        int n;

        if (m->sent >= m->n_bytes && m->n_bytes > 0)
                return 1;
        /* The kernel attaches SCM_RIGHTS to the first byte it queues, so fds go
         * only with the first write of a message, never with a continuation. */
        n = send_raw(fd, m->bytes + m->sent, m->n_bytes - m->sent, m->sent == 0 ? m->fds : NULL,
                     m->sent == 0 ? m->n_fds : 0, MSG_DONTWAIT);
        if (n == -EAGAIN || n == -EWOULDBLOCK)
                return 0;
        if (n < 0)
                return n;
        if (m->sent == 0 && !m->borrowed)
                /* Sent: the receiver has its own copies now. */
                fds_close(m->fds, m->n_fds);
        m->sent += (size_t) n;
        return m->sent >= m->n_bytes ? 1 : 0;
}

int fdmsg_send_now(int fd, const void *bytes, size_t n_bytes, const int *fds, size_t n_fds) {
        int n = send_raw(fd, bytes, n_bytes, fds, n_fds, 0);
        if (n < 0)
                return n;
        return (size_t) n == n_bytes ? 0 : -EIO;
}

int fdmsg_recv(int fd, size_t max_bytes, size_t max_fds, FdMsg **ret) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * FDMSG_FDS_MAX)];
        } control;
        int fds[FDMSG_FDS_MAX];
        size_t n_fds = 0;
        struct iovec iov;
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = control.buf,
                .msg_controllen = sizeof(control.buf),
        };
        _cleanup_free_ uint8_t *buf = NULL;
        bool bad_cmsg = false;
        ssize_t n;
        int r;

        /* One byte more than allowed, so an oversized datagram shows as MSG_TRUNC. */
        buf = malloc(max_bytes + 1);
        if (!buf)
                return -ENOMEM;
        iov.iov_base = buf;
        iov.iov_len = max_bytes + 1;
        do
                n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;

        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        int *p = (int *) CMSG_DATA(c);

                        for (size_t i = 0; i < k; i++) {
                                if (n_fds < ELEMENTSOF(fds))
                                        fds[n_fds++] = p[i];
                                else
                                        (void) close(p[i]);
                        }
                } else
                        bad_cmsg = true;
        }

        /* MSG_CTRUNC is also how the kernel reports fds that a security module
         * dropped: whatever arrived cannot be trusted to be complete. */
        if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC) || (size_t) n > max_bytes)
                r = FDMSG_E_TRUNCATED;
        else if (bad_cmsg)
                r = FDMSG_E_BAD_CMSG;
        else if (n_fds > max_fds)
                r = FDMSG_E_TOO_MANY_FDS;
        else if (n == 0 && n_fds == 0)
                r = FDMSG_E_EOF;
        else
                return fdmsg_new(ret, buf, (size_t) n, fds, n_fds);

        fds_close(fds, n_fds);
        return r;
}
