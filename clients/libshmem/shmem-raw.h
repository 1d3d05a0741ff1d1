/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * shmem-raw: what any member of a region holds beyond the API, for
 * shmem-tool's forgery commands, the tests of docs/security.md: the mapped
 * control page, which it can write at will, and its rings, which it can make
 * without the pending bits shmem_notify() sets first. Implemented by both
 * libraries; not part of libshmem.so's ABI (libshmem.sym leaves it out, and
 * shmem-peer links libshmem's objects statically for it). Not installed.
 */

#include <stdint.h>

#include "region-layout.h"
#include "shmem.h"

/* The control page as mapped: any byte of it may be written. */
struct shmem_control_page *shmem_raw_page(shmem_t *shm);

/*
 * Step 2 of shmem_notify() alone: rings each attached peer in @mask (my own
 * index ignored) with my fd to it (host: eventfd; guest: Doorbell), setting
 * no pending bit. Return: 0, or a negative errno.
 */
int shmem_raw_ring(shmem_t *shm, uint64_t mask);
