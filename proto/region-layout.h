/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The control page: page 0 of every region in `shmem` signal mode.
 *
 * Written by the broker (membership) and by peers (their `pending` bits in
 * other peers' slots); read by everybody. The broker never trusts what it
 * reads back: a guest can scribble on any byte of it. All integers are
 * little-endian; all bitmaps are indexed by peer index (bit i = peer i).
 * docs/region-layout.md is the prose version of this file.
 */

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define SHMEM_LAYOUT_MAGIC UINT64_C(0x3152454b4f524253) /* "SBROKER1" little-endian */
#define SHMEM_LAYOUT_VERSION 1
#define SHMEM_PAGE_SIZE 4096u
#define SHMEM_DATA_OFFSET SHMEM_PAGE_SIZE
#define SHMEM_NAME_MAX 63            /* characters, without the NUL */
#define SHMEM_LABEL_MAX 31           /* characters, without the NUL */
#define SHMEM_PEERS_MAX 64           /* hard ceiling: bitmaps are 64 bits */
#define SHMEM_PEERS_DEFAULT 16       /* QNX's limit */
#define SHMEM_DOORBELL_ID_MAX 65535  /* QEMU refuses larger ivshmem ids */

/*
 * A region's name, wherever one is checked (the broker, the guest library,
 * the hotplug helper): 1 to SHMEM_NAME_MAX of [A-Za-z0-9._-], not starting
 * with '.'. A name is also a file name (QEMU sockets) and part of fd-store
 * names and libvirt XML, which this keeps safe.
 */
static inline bool shmem_name_valid(const char *name) {
        size_t n = strlen(name);

        return n >= 1 && n <= SHMEM_NAME_MAX && name[0] != '.' &&
               strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

enum {
        SHMEM_SIGNAL_MODE_SHMEM = 0, /* control page, vectors = max_peers + 1 */
        SHMEM_SIGNAL_MODE_IVSHMEM = 1, /* compat: no control page, vectors passed through */
};

enum {
        SHMEM_SLOT_FREE = 0,
        SHMEM_SLOT_ACTIVE = 1,
};

enum {
        SHMEM_PEER_KIND_NONE = 0,
        SHMEM_PEER_KIND_QEMU = 1,
        SHMEM_PEER_KIND_HOST = 2,
};

/* One per peer index. 56 bytes, so 64 slots fit the page after the header. */
struct shmem_slot {
        /* Bit j set: peer j signaled this peer and it has not consumed it yet.
         * Senders set bits with an atomic OR; the owner takes the word with an
         * atomic exchange to 0 (QNX read-clears its status word). */
        uint64_t pending;
        uint32_t state; /* SHMEM_SLOT_* */
        uint32_t kind;  /* SHMEM_PEER_KIND_* */
        /*
         * The peer's id on QEMU's ivshmem wire: a guest rings peer k by writing
         * (slots[k].doorbell_id << 16) to BAR0 Doorbell, and finds its own index
         * as the slot whose doorbell_id equals its IVPosition. It differs from
         * the index because QEMU 7.2 corrupts its heap when an id that left is
         * reused (docs/region-layout.md): doorbell ids are never reused while
         * the region's memory lives, indices are (lowest free, as in QNX).
         */
        uint32_t doorbell_id;
        uint32_t reserved;
        char label[SHMEM_LABEL_MAX + 1]; /* VM or client name, NUL-terminated */
};

struct shmem_control_page {
        uint64_t magic;        /* SHMEM_LAYOUT_MAGIC */
        uint32_t version;      /* SHMEM_LAYOUT_VERSION */
        uint32_t header_size;  /* offsetof(slots): readers skip fields they do not know */
        char name[SHMEM_NAME_MAX + 1]; /* region name, NUL-terminated */
        uint64_t data_offset;  /* SHMEM_DATA_OFFSET */
        uint64_t data_size;    /* bytes usable at data_offset (the creator's size, page-rounded) */
        uint32_t max_peers;    /* indices are 0..max_peers-1 */
        uint32_t vectors;      /* max_peers + 1: vector j = "peer j signaled", vector max_peers = membership */
        uint32_t signal_mode;  /* SHMEM_SIGNAL_MODE_* */
        uint32_t slot_size;    /* sizeof(struct shmem_slot) */
        uint64_t epoch;        /* bumped by the broker on every membership change */
        uint64_t active;       /* bit i set: index i is attached */
        struct shmem_slot slots[SHMEM_PEERS_MAX];
};

_Static_assert(sizeof(struct shmem_slot) == 56, "slot layout is ABI");
_Static_assert(__builtin_offsetof(struct shmem_control_page, slots) == 128, "header layout is ABI");
_Static_assert(sizeof(struct shmem_control_page) <= SHMEM_PAGE_SIZE, "control page must fit one page");

/* Vector number of the membership ("control") vector of a region. */
static inline unsigned shmem_control_vector(unsigned max_peers) {
        return max_peers;
}
