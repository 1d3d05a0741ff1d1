/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * factory: the guest's side of the VM's factory device (proto/factory-page.h,
 * docs/region-layout.md "The factory, from a guest"): a request for a region
 * by name and size, and the broker's answer. Internal to libshmem-guest.a.
 *
 * Requests are rare (an attach or a detach), so the guest does not take the
 * device's vector: it rings the broker and polls the page every millisecond,
 * bounded. Ordering, as this side reads the ABI:
 * - the request's fields first, then request.seq with RELEASE, then a full
 *   fence and the ring (an uncached BAR0 store QEMU traps, no atomic of the
 *   page);
 * - the broker is expected to write an answer's fields, then its state, then
 *   answer.seq, each with RELEASE (BUSY: state, then seq; the DONE that
 *   follows a BUSY: the fields, then state). The guest loads seq, then state,
 *   ACQUIRE, and takes an answer only when seq is its own and state DONE; it
 *   then copies the answer out and checks the copy, never the live page.
 *
 * The pure part (factory_view, factory_exchange, factory_answer_check) works
 * on any memory holding a page, which is how tests/unit/test-guest-factory.c
 * drives it with a fake broker thread. The device part (factory_open,
 * factory_lock, factory_request) is the real page in BAR2 through sysfs.
 */

#include <stdbool.h>
#include <stdint.h>

#include "factory-page.h"
#include "ivshmem-dev.h"
#include "region-layout.h" /* shmem_name_valid() */

/* factory_open(): the VM has no factory device. */
#define FACTORY_NONE 1

/* --- the page, in any memory ----------------------------------------------- */

/* Where a checked page keeps its request and answer, and its header's limits when it was looked at. */
typedef struct FactoryView {
        struct shmem_factory_request *request;
        struct shmem_factory_answer *answer;
        uint64_t max_data_size;
        uint32_t max_peers;
} FactoryView;

/*
 * Checks a copy of the header of the @size bytes at @page. The request is at
 * header_size (readers skip header fields they do not know), the answer
 * right after it; both must lie within @size and be 8-byte aligned.
 * Returns 0, -ENODEV if @page is no factory page (magic, version), -EPROTO
 * if its header_size is impossible.
 */
int factory_view(FactoryView *ret, void *page, uint64_t size);

/* An answer, copied out of the page and checked. */
typedef struct FactoryAnswer {
        uint32_t op;        /* SHMEM_FACTORY_OP_* asked; OP_NONE: the factory was not asked */
        uint32_t status;    /* 0, or the refusal's SHMEM_STATUS_* */
        uint64_t data_size; /* status 0 but for DETACH: the region's data bytes */
        uint32_t max_peers; /* likewise: 1..SHMEM_PEERS_MAX */
        char region[SHMEM_NAME_MAX + 1];             /* the region as the host names it ("" if none) */
        char detail[SHMEM_FACTORY_DETAIL_MAX + 1];   /* a refusal's reason ("" if none) */
        int64_t answer_ns;  /* factory_exchange(): writing the request to taking this answer (monotonic) */
} FactoryAnswer;

/* Statuses an answer may carry: the factory's own end at 15; room for newer ones, not for nonsense. */
#define FACTORY_STATUS_MAX 255

/*
 * Checks @copy, an answer copied out of the page, as the answer to request
 * @seq, operation @op, and fills @ret. Returns 0 (@ret filled, its status
 * may be a refusal), -EAGAIN if it is not that answer yet (another seq, IDLE
 * or BUSY), -EPROTO if it is that answer but makes no sense: an unknown
 * state, a status above FACTORY_STATUS_MAX, a string not NUL-terminated
 * within its field, or for a successful attach a region that is no valid
 * name, no data or a max_peers out of range.
 */
int factory_answer_check(const struct shmem_factory_answer *copy, uint64_t seq, uint32_t op, FactoryAnswer *ret);

/* How long an exchange waits: the defaults, or a test's. */
typedef struct FactoryTiming {
        int answer_ms; /* from a ring until the broker answers or says BUSY */
        int busy_ms;   /* while a request is BUSY (its device being plugged), from the first BUSY seen */
        long poll_ns;  /* between two looks at the answer */
} FactoryTiming;

extern const FactoryTiming factory_timing_default; /* 5 s, 30 s, 1 ms */

/*
 * One request: writes it with seq = 1 + the larger of request.seq and
 * answer.seq (a request left unanswered by a process that died is never
 * taken for this one), rings with @ring(@userdata), and polls until the
 * answer to it is DONE. An answer BUSY for another seq is a request in
 * progress that ignores rings: when it ends, this one rings again. At most
 * answer_ms + 2 * busy_ms in all. The caller serializes requests
 * (factory_lock). @name is valid, @op not OP_NONE.
 *
 * Returns the answer's status (0 or positive, @ret filled), -ETIMEDOUT, or
 * -EPROTO (factory_answer_check), or what @ring returned if negative.
 */
int factory_exchange(const FactoryView *v, const FactoryTiming *t, int (*ring)(void *userdata), void *userdata,
                     uint32_t op, const char *name, uint64_t size, FactoryAnswer *ret);

/* --- the device ------------------------------------------------------------ */

typedef struct Factory {
        IvshmemDev dev; /* sysfs BARs: BAR2 the page, BAR0 for the Doorbell */
        FactoryView view;
        int lock;       /* the device's sysfs directory, for flock() */
} Factory;

/*
 * Finds the VM's factory device: the first ivshmem device (1af4:1110, PCI
 * address order) whose BAR2 is a factory page, and maps it through sysfs.
 * Returns 0, FACTORY_NONE, or -errno.
 */
int factory_open(Factory **ret);

/* Unlocks (if locked), unmaps and frees; NULL-safe. Returns NULL. */
Factory *factory_free(Factory *f);
void factory_freep(Factory **f);

/*
 * Serializes the factory's users in the guest, processes and handles alike:
 * flock(LOCK_EX) on the device's sysfs directory, waited for at most
 * @timeout_ms (a request takes well under a minute; a holder that hangs must
 * not hang everyone). 0, -ETIMEDOUT, or -errno.
 */
int factory_lock(Factory *f, int timeout_ms);
void factory_unlock(Factory *f);

/* factory_exchange() on the device, ringing the broker (peer 0, vector 0). Call it locked. */
int factory_request(Factory *f, uint32_t op, const char *name, uint64_t size, FactoryAnswer *ret);
