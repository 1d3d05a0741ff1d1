/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * fdmsg: the only place that calls sendmsg()/recvmsg() with SCM_RIGHTS.
 *
 * An FdMsg is a byte buffer plus the fds that travel with it. It owns both:
 * fdmsg_free() closes every fd it still holds. Callers take fds out with
 * fdmsg_steal_fd(), which leaves -1 behind.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>

#include "macro.h"

#define FDMSG_FDS_MAX 253 /* SCM_MAX_FD */

typedef struct FdMsg FdMsg;
struct FdMsg {
        FdMsg *next;      /* for queues (see broker/conn.h); NULL when not queued */
        FdMsg *prev;      /* ... and back, for a queue that takes a message out (conn_unqueue()) */
        FdMsg **ref;      /* a queue's owner's pointer to this message: the queue sets it NULL when it lets go */
        size_t n_bytes;
        size_t sent;      /* bytes already written (stream sockets) */
        size_t n_fds;
        int *fds;
        uint8_t *bytes;
        bool borrowed;    /* fds are the sender's, valid until it returns: never closed here (fdmsg_own()) */
};

/* Result of fdmsg_recv() that is not a plain errno. */
enum {
        FDMSG_E_EOF = 1,       /* orderly shutdown by the peer */
        FDMSG_E_TRUNCATED,     /* MSG_TRUNC or MSG_CTRUNC: the peer must be dropped */
        FDMSG_E_TOO_MANY_FDS,  /* more fds than the caller allows */
        FDMSG_E_BAD_CMSG,      /* a control message that is not SCM_RIGHTS */
};

/* Copies @bytes; consumes @fds (closes them on failure too). */
int fdmsg_new(FdMsg **ret, const void *bytes, size_t n_bytes, int *fds, size_t n_fds);
/*
 * fdmsg_new_borrowed() - a message whose @fds stay the caller's: valid only
 * until the caller returns, so that one sent at once costs no dup() and no
 * close(). Whoever keeps it longer (a queue) calls fdmsg_own() first.
 */
int fdmsg_new_borrowed(FdMsg **ret, const void *bytes, size_t n_bytes, const int *fds, size_t n_fds);
/* Makes borrowed fds the message's own (F_DUPFD_CLOEXEC); 0 or -errno (then it holds no fds). */
int fdmsg_own(FdMsg *m);
FdMsg *fdmsg_free(FdMsg *m);
static inline void fdmsg_freep(FdMsg **m) { fdmsg_free(*m); }

/* Takes fd @i out of @m (-1 if out of range or already taken). Caller owns it. */
int fdmsg_steal_fd(FdMsg *m, size_t i);

/*
 * fdmsg_send() - write what is left of @m to @fd (borrowed), non-blocking.
 * Fds travel with the first byte. Returns 1 when all of @m is written, 0 if
 * the socket is full (call again on EPOLLOUT), or a negative errno.
 * MSG_NOSIGNAL: a vanished peer gives -EPIPE, never SIGPIPE.
 */
int fdmsg_send(int fd, FdMsg *m);

/* Sends @bytes with a copy of @fds (borrowed) in one blocking call. */
int fdmsg_send_now(int fd, const void *bytes, size_t n_bytes, const int *fds, size_t n_fds);

/*
 * fdmsg_recv() - read one datagram (or up to @max_bytes of a stream) from @fd
 * (borrowed). Received fds are O_CLOEXEC. On any positive FDMSG_E_* or
 * negative errno, every received fd has been closed already.
 * Returns 0 with *ret set, -EAGAIN if nothing is there, FDMSG_E_*, or -errno.
 */
int fdmsg_recv(int fd, size_t max_bytes, size_t max_fds, FdMsg **ret);
