/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * QEMU's ivshmem chardev server protocol (docs/specs/ivshmem-spec.rst in QEMU):
 * server -> client only, each message one int64 little-endian, optionally
 * with one fd. Order on connect: version 0; the client's id; -1 + shm fd;
 * every existing peer's id once per vector it passes, each with an fd; the
 * client's own id once per vector with its fds. Later: id + fd = a peer's
 * vector (join), id alone = the peer left.
 */

#include <stdint.h>

#include "fdmsg.h"

#define IVSHMEM_PROTOCOL_VERSION 0
#define IVSHMEM_MSG_SIZE 8

/* Builds one message; consumes @fd (-1 for none). */
int ivshmem_msg_new(FdMsg **ret, int64_t value, int fd);
