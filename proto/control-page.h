/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The shared words of the control page (region-layout.h), accessed as the
 * signal model of docs/region-layout.md needs: the one implementation that
 * libshmem on the host and libshmem-guest in a VM both use.
 *
 * Geometry is the caller's: @max_peers and my index @me come from a source
 * it trusts (host: the broker's attach reply; guest: a checked copy of the
 * header), never from the live page, which any peer can rewrite. Bits of
 * indices max_peers..63 are dropped wherever they are read.
 *
 * The ordering rule, for every access here:
 * - Loads (active, epoch, pending, a slot's state and doorbell_id) ACQUIRE:
 *   the broker fills a slot, then stores active and epoch with RELEASE
 *   (broker/region.c), so a reader that sees an index active or an epoch
 *   moved sees the slot that goes with it.
 * - A sender ORs its bit into the receiver's pending word with RELEASE:
 *   what it wrote to the data before shmem_notify() is visible to whoever
 *   takes the bit. Then a full fence: the ring that follows is no atomic
 *   access of this page (host: write() to an eventfd; guest: an uncached
 *   store to BAR0 Doorbell that QEMU traps), so only a full barrier keeps the
 *   bit ahead of it, and a receiver woken by the ring must find the bit.
 *   (x86's locked OR happens to be one already; the fence states it for
 *   every architecture, and costs nothing next to a syscall or a VM exit.)
 * - The receiver drains the eventfds that fired, then takes its pending word
 *   with an exchange to 0, ACQ_REL. ACQUIRE pairs with the senders' RELEASE
 *   OR (their data is visible); RELEASE pairs with the ACQUIRE load in
 *   shmem_page_unconsumed(): a sender that sees its bit gone knows the
 *   receiver has done what it did before the take. Taking after the drain
 *   means a ring's bit, set before the ring, is in this take or an earlier
 *   one, never a later one.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "region-layout.h"

/* Bits of the indices 0..@max_peers-1 (1..SHMEM_PEERS_MAX). */
static inline uint64_t shmem_page_valid(unsigned max_peers) {
        return max_peers >= 64 ? ~UINT64_C(0) : (UINT64_C(1) << max_peers) - 1;
}

static inline uint64_t shmem_page_load(const uint64_t *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline uint32_t shmem_page_load32(const uint32_t *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* The attached peers, me always included: my index is mine whatever the page says. */
static inline uint64_t shmem_page_active(const struct shmem_control_page *page, unsigned max_peers,
                                         unsigned me) {
        return (shmem_page_load(&page->active) & shmem_page_valid(max_peers)) | UINT64_C(1) << me;
}

/*
 * Step 1 of signaling peer @k: ORs @bits (a sender's own bit) into its
 * pending word, then the full fence that keeps them ahead of step 2, the ring.
 */
static inline void shmem_page_set_pending(struct shmem_control_page *page, unsigned k, uint64_t bits) {
        __atomic_fetch_or(&page->slots[k].pending, bits, __ATOMIC_RELEASE);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* Takes my pending word (read-clears): the bits set since the last take, but mine. */
static inline uint64_t shmem_page_take_pending(struct shmem_control_page *page, unsigned max_peers,
                                               unsigned me) {
        uint64_t bits = __atomic_exchange_n(&page->slots[me].pending, 0, __ATOMIC_ACQ_REL);

        return bits & shmem_page_valid(max_peers) & ~(UINT64_C(1) << me);
}

/* The attached peers whose pending word still has my bit: my signal, not yet taken. */
static inline uint64_t shmem_page_unconsumed(const struct shmem_control_page *page, unsigned max_peers,
                                             unsigned me) {
        uint64_t others = shmem_page_active(page, max_peers, me) & ~(UINT64_C(1) << me), ret = 0;

        for (unsigned k = 0; k < max_peers; k++)
                if (others & UINT64_C(1) << k && shmem_page_load(&page->slots[k].pending) & UINT64_C(1) << me)
                        ret |= UINT64_C(1) << k;
        return ret;
}

/*
 * Checks a copy of the page's header against the mapping it came from (a
 * guest's BAR2 of @map_size bytes): any peer can write the page, so nothing
 * in it may lead to an access outside the mapping. The geometry of a header
 * that passes can be used; its name is compared with shmem_page_header_names().
 */
static inline bool shmem_page_header_valid(const struct shmem_control_page *h, uint64_t map_size) {
        if (h->magic != SHMEM_LAYOUT_MAGIC || h->version != SHMEM_LAYOUT_VERSION ||
            h->header_size != offsetof(struct shmem_control_page, slots) ||
            h->slot_size != sizeof(struct shmem_slot) || h->signal_mode != SHMEM_SIGNAL_MODE_SHMEM)
                return false;
        if (h->max_peers < 1 || h->max_peers > SHMEM_PEERS_MAX || h->vectors != h->max_peers + 1)
                return false;
        if (map_size < SHMEM_PAGE_SIZE || h->data_offset < SHMEM_PAGE_SIZE || h->data_offset % SHMEM_PAGE_SIZE != 0 ||
            h->data_offset > map_size || h->data_size > map_size - h->data_offset)
                return false;
        return true;
}

/* Whether a header's name, NUL-terminated within its field, is @name. */
static inline bool shmem_page_header_names(const struct shmem_control_page *h, const char *name) {
        return strnlen(h->name, sizeof(h->name)) < sizeof(h->name) && strcmp(h->name, name) == 0;
}
