/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What shmem.c offers inside the tree but not in libshmem's ABI
 * (libshmem.sym): for the fuzzer of the broker's replies
 * (tests/fuzz/fuzz-libshmem.c), which links shmem.c itself.
 */

#include "client.h"
#include "shmem.h"

/*
 * shmem_from_reply() - what shmem_attach() makes of @reply, the OK Reply to
 * an attach of @name sent on @client (consumed, also on failure): its checks
 * (a hostile broker must not become a wild mmap), the mapping, the fds
 * taken out of @reply (borrowed), the epoll set and the events queued
 * behind it. Returns 0 with *ret, or a negative errno (-EPROTO: a reply no
 * broker sends).
 */
int shmem_from_reply(shmem_t **ret, Client *client, ClientMsg *reply, const char *name);
