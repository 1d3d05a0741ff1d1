/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * libshmem-guest beyond shmem.h, for shmem-guest (clients/tool): what the
 * VM's factory answered an attach or a detach, and where a handle's region
 * is. shmem_attach() and shmem_detach() are these with the answer dropped.
 * Not installed.
 */

#include "factory.h"
#include "shmem.h"

/*
 * shmem_attach(), and in @ret_answer (if not NULL) what the factory
 * answered, also on a refusal or a failure after it; op OP_NONE when it was
 * not asked (a device for @name was there, or the VM has no factory).
 */
int shmem_guest_attach(shmem_t **ret, const char *name, uint64_t size, unsigned flags,
                       FactoryAnswer *ret_answer);

/*
 * shmem_detach(), returning what the factory answered the DETACH (0, a
 * refusal's status, or -errno; 0 if it was not asked: no factory, or another
 * handle of the guest still uses the device), in @ret_answer if not NULL.
 * @shm is freed whatever the result.
 */
int shmem_guest_detach(shmem_t *shm, FactoryAnswer *ret_answer);

/* The region as the host names it: the name its device's control page carries. */
const char *shmem_guest_region(shmem_t *shm);

/* The PCI address of the handle's ivshmem device. */
const char *shmem_guest_device(shmem_t *shm);
