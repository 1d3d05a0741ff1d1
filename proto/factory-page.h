/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The factory page: BAR2 of a VM's factory device, through which a program
 * in the guest attaches to regions by name and size at run time, as QNX's
 * guest factory does (docs/factory.md).
 *
 * The factory device is a stock ivshmem-doorbell, vectors=1, connected to
 * the broker's factory socket (<rundir>/qemu/factory.sock). Its memory is
 * shared by that VM and the broker alone. On QEMU's ivshmem wire the VM is
 * peer 1 and the broker peer 0: the guest rings the broker with BAR0
 * Doorbell = 0 << 16 | 0, the broker rings the guest on its vector 0.
 *
 * A request: the guest fills `request` (name, size, op), then increments
 * request.seq, then rings. The broker copies the request out of the page
 * before it looks at it (the page is never trusted: the guest may change it
 * meanwhile), answers in `answer` with answer.seq = the seq it read, and
 * rings. While a request is in progress (a device being plugged) the
 * answer's state is BUSY with that seq; rings meanwhile are ignored, and a
 * guest that changed its request rings again after the answer. One request
 * at a time per VM.
 *
 * All integers little-endian; strings NUL-terminated within their field.
 */

#include <stdint.h>

#include "region-layout.h"

#define SHMEM_FACTORY_MAGIC UINT64_C(0x3130544341464253) /* "SBFACT01" little-endian */
#define SHMEM_FACTORY_VERSION 1
#define SHMEM_FACTORY_PAGE_SIZE 4096u
#define SHMEM_FACTORY_DETAIL_MAX 191 /* characters of a refusal's reason */

/* What a request asks (QNX: size written = attach, find = attach-only). */
enum {
        SHMEM_FACTORY_OP_NONE = 0,
        SHMEM_FACTORY_OP_ATTACH = 1,    /* create the region with `size` if it does not exist, and attach */
        SHMEM_FACTORY_OP_FIND = 2,      /* attach only if it exists (DOES_NOT_EXIST otherwise) */
        SHMEM_FACTORY_OP_EXCLUSIVE = 3, /* create only (EXISTS if it exists) */
        SHMEM_FACTORY_OP_DETACH = 4,    /* leave the region: the other peers see this VM go */
};

enum {
        SHMEM_FACTORY_IDLE = 0, /* no answer yet since the device was set up */
        SHMEM_FACTORY_BUSY = 1, /* request answer.seq accepted, its device being plugged */
        SHMEM_FACTORY_DONE = 2, /* request answer.seq answered: see status */
};

/*
 * Statuses of an answer: QNX's 0-6, then the native protocol's (shmem.Status,
 * proto/shmem.proto), then the factory's own.
 */
enum {
        SHMEM_FACTORY_NO_SLOT = 13, /* no free hot-pluggable slot fits the region's BAR */
        SHMEM_FACTORY_HOTPLUG = 14, /* the device could not be plugged (detail says why) */
        SHMEM_FACTORY_UNSAFE = 15,  /* serving it could crash this VM's QEMU (docs/factory.md) */
};

struct shmem_factory_request {
        uint64_t seq;  /* incremented by the guest for each request, written last */
        uint32_t op;   /* SHMEM_FACTORY_OP_* */
        uint32_t flags; /* 0 */
        uint64_t size; /* data bytes wanted (ATTACH, EXCLUSIVE); the first attach fixes the size */
        char name[SHMEM_NAME_MAX + 1]; /* as the guest names it */
};

struct shmem_factory_answer {
        uint64_t seq;       /* the request answered (or in progress) */
        uint32_t state;     /* SHMEM_FACTORY_IDLE, BUSY, DONE */
        uint32_t status;    /* 0 ok, or a status above */
        uint64_t data_size; /* the region's actual data bytes (the creator fixed them) */
        uint32_t max_peers;
        uint32_t reserved;
        /* The region as the host names it (with the VM's subst prefix): the
         * control page of the device the guest now finds carries this name. */
        char region[SHMEM_NAME_MAX + 1];
        char detail[SHMEM_FACTORY_DETAIL_MAX + 1]; /* why, for a refusal */
};

struct shmem_factory_page {
        uint64_t magic;       /* SHMEM_FACTORY_MAGIC, written by the broker at setup */
        uint32_t version;     /* SHMEM_FACTORY_VERSION */
        uint32_t header_size; /* offsetof(request): readers skip fields they do not know */
        uint64_t max_data_size; /* the largest region this VM may create now (its limits) */
        uint32_t max_peers;   /* of regions it creates */
        uint32_t reserved;
        struct shmem_factory_request request; /* the guest's */
        struct shmem_factory_answer answer;   /* the broker's */
};

_Static_assert(__builtin_offsetof(struct shmem_factory_page, request) == 32, "factory header is ABI");
_Static_assert(sizeof(struct shmem_factory_request) == 88, "factory request is ABI");
_Static_assert(__builtin_offsetof(struct shmem_factory_page, answer) == 120, "factory answer offset is ABI");
_Static_assert(sizeof(struct shmem_factory_answer) == 288, "factory answer is ABI");
_Static_assert(sizeof(struct shmem_factory_page) <= SHMEM_FACTORY_PAGE_SIZE, "the factory page is one page");
