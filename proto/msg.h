/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * msg: one shmem.Message (shmem.proto) per datagram, with its fds.
 * Used by the broker's native front end and by libshmem alike.
 */

#include <stddef.h>

#include "fdmsg.h"
#include "shmem.pb-c.h"
#include "status.h"

#define SHMEM_PROTOCOL_VERSION 1
#define SHMEM_MSG_MAX 65536 /* bytes of one serialized Message */
#define SHMEM_MSG_FDS_MAX 160 /* attach reply with 64 peers: 1 + 65 + 63 */

typedef Shmem__Message Message;

/* Serializes @m; consumes @fds (closed on failure too). */
int msg_encode(FdMsg **ret, const Message *m, int *fds, size_t n_fds);
/* msg_encode() with @fds borrowed (fdmsg_new_borrowed()): nothing closed, also on failure. */
int msg_encode_borrowed(FdMsg **ret, const Message *m, const int *fds, size_t n_fds);

/* msg_decode(): decoded, but a string field holds a NUL byte or is not UTF-8. */
#define MSG_E_BAD_STRING 1

/*
 * Parses the bytes of @in (borrowed; its fds stay in it for the caller to
 * steal). Returns 0; MSG_E_BAD_STRING with *ret set (the C strings end at the
 * first NUL: the caller must not act on them as if they were what was sent);
 * -EBADMSG if it is not a Message; -ENOMEM. Free the result with msg_free().
 */
int msg_decode(Message **ret, const FdMsg *in);
Message *msg_free(Message *m);
static inline void msg_freep(Message **m) { msg_free(*m); }
