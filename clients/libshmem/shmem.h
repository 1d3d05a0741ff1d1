/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * libshmem: attach to named shared-memory regions of shmem-brokerd and signal
 * the other peers of a region, as QNX's hyp_shm does.
 *
 * The same API is implemented twice: libshmem.so on the host (talks to the
 * broker) and libshmem-guest.a inside a Linux guest (talks to the
 * ivshmem-doorbell PCI device QEMU gives the guest).
 *
 * Return convention: 0 on success; a positive SHMEM_STATUS_* when the broker
 * (or, in a guest, the device) refused; a negative errno for local failures.
 * A handle is not thread-safe: use one per thread, or lock around it.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shmem shmem_t;

/* Status codes, equal to the wire's shmem.Status (QNX's 0..6 kept). */
enum {
        SHMEM_STATUS_OK = 0,
        SHMEM_STATUS_UNKNOWN_FAILURE = 1,
        SHMEM_STATUS_NOMEM = 2,
        SHMEM_STATUS_CLIENT_MAX = 3,
        SHMEM_STATUS_ILLEGAL_NAME = 4,
        SHMEM_STATUS_NO_PERMISSION = 5,
        SHMEM_STATUS_DOES_NOT_EXIST = 6,
        SHMEM_STATUS_EXISTS = 7,
        SHMEM_STATUS_BAD_SIZE = 8,
        SHMEM_STATUS_LIMIT = 9,
        SHMEM_STATUS_BAD_REQUEST = 10,
        SHMEM_STATUS_VERSION = 11,
        SHMEM_STATUS_BUSY = 12,
};

/* Attach flags: at most one of FIND / EXCLUSIVE; neither means create-or-attach. */
enum {
        SHMEM_FIND = 1u << 0,      /* attach only if the region exists */
        SHMEM_EXCLUSIVE = 1u << 1, /* create only; SHMEM_STATUS_EXISTS if it exists */
};

/* Mask for shmem_notify(): every attached peer but the caller. */
#define SHMEM_ALL_BUT_ME (~UINT64_C(0))

struct shmem_attach_opts {
        size_t size;        /* sizeof(struct shmem_attach_opts), for extension */
        const char *socket; /* broker socket; NULL: $SHMEM_BROKER_SOCKET, else /run/shmem-broker/broker.sock */
        const char *label;  /* shown to other peers; NULL: the program name */
};

/**
 * struct shmem_event - what happened since the last shmem_wait()
 * @senders: the pending-word view, QNX's status bits: bit j set means bit j
 *      was found in my pending word (which the wait then cleared). A sender
 *      sets its own bit there before it rings, but any member of the region
 *      can set any bit in any peer's pending word: @senders says "bit j was
 *      set", not "peer j signaled". Each bit set is reported once.
 * @membership_changed: a peer attached or detached since the last wait
 * @active: attached peers now, me included
 * @epoch: membership epoch now
 * @rang: the rung view: bit j set means my vector j fired, that is, the fd
 *      that only peer j was given for me (host: its eventfd to me; guest: the
 *      Doorbell its QEMU turns into a write to it) was written. No other
 *      member holds that fd, so a bit here cannot be forged by one. Each ring
 *      is reported once; several rings of j between two waits are one bit.
 *      It differs from @senders:
 *      - A sender sets its bit, then rings. A wait between the two reports
 *        the bit in @senders and a later one (normally the next) the ring in
 *        @rang, so an event can have @rang without @senders.
 *      - A dropped ring is not here: QEMU drops a ring to a guest that has
 *        not enabled MSI-X yet, and one from a guest whose QEMU has not been
 *        told of me yet, while the bit stays for @senders.
 *      - Whoever held index j before and kept a copy of that fd (e.g. a
 *        host process that dup()ed it before it detached) can still ring as
 *        j: my vectors are mine for as long as I am attached.
 *      - In a guest without MSI-X (no IOMMU, or SHMEM_GUEST_POLL=1) nothing
 *        rings: @rang is always 0. shmem_fd() returns -EOPNOTSUPP exactly
 *        then, which is how an application tells.
 *      My own bit and the membership vector are never in @rang.
 *
 * An application that must not act on a forged signal acts on @rang; one
 * that must see every signal, dropped rings included, on @senders.
 */
struct shmem_event {
        uint64_t senders;
        bool membership_changed;
        uint64_t active;
        uint64_t epoch;
        uint64_t rang;
};

/**
 * shmem_attach() - attach to a region, creating it if needed
 * @ret: the new handle, untouched on failure
 * @name: 1..63 of [A-Za-z0-9._-], not starting with '.'
 * @size: data bytes wanted if this attach creates the region (page-rounded);
 *        ignored otherwise: the creator fixes the size, see shmem_size()
 * @flags: SHMEM_FIND, SHMEM_EXCLUSIVE or 0
 * @opts: NULL for defaults
 *
 * In a guest, the region must be one of the VM's ivshmem devices: @size and
 * @opts are ignored, a missing name gives SHMEM_STATUS_DOES_NOT_EXIST,
 * SHMEM_EXCLUSIVE gives SHMEM_STATUS_EXISTS, and a device another handle of
 * the guest holds gives SHMEM_STATUS_BUSY.
 *
 * Return: 0, a positive SHMEM_STATUS_*, or a negative errno.
 */
int shmem_attach(shmem_t **ret, const char *name, uint64_t size, unsigned flags,
                 const struct shmem_attach_opts *opts);

/** shmem_find() - shmem_attach() with SHMEM_FIND. */
int shmem_find(shmem_t **ret, const char *name, const struct shmem_attach_opts *opts);

/** shmem_detach() - detach and free the handle; NULL-safe. Return: NULL. */
shmem_t *shmem_detach(shmem_t *shm);

void *shmem_data(shmem_t *shm);          /* start of the data area */
uint64_t shmem_size(shmem_t *shm);       /* bytes usable at shmem_data() */
unsigned shmem_index(shmem_t *shm);      /* my peer index */
unsigned shmem_max_peers(shmem_t *shm);
const char *shmem_name(shmem_t *shm);

/**
 * shmem_notify() - signal a set of peers
 * @mask: bit k = signal peer k; SHMEM_ALL_BUT_ME for everyone else. Bits of
 *        absent peers and my own bit are ignored.
 *
 * Return: 0, or a negative errno.
 */
int shmem_notify(shmem_t *shm, uint64_t mask);

/**
 * shmem_wait() - wait for signals or a membership change
 * @timeout_ms: -1 waits for ever, 0 polls
 * @ret: what happened since the last wait (struct shmem_event: senders and
 *       rings are consumed, read-clears)
 *
 * Return: 1 if something happened (a pending bit, a ring, a membership
 * change), 0 on timeout, a negative errno on failure.
 */
int shmem_wait(shmem_t *shm, int timeout_ms, struct shmem_event *ret);

/** shmem_active() - bitmap of attached peers, me included. */
uint64_t shmem_active(shmem_t *shm);

/** shmem_unconsumed() - peers I signaled that have not yet consumed my signal. */
uint64_t shmem_unconsumed(shmem_t *shm);

/**
 * shmem_fd() - an fd to poll (e.g. in an epoll set) before calling shmem_wait()
 *
 * It becomes readable whenever shmem_wait() may have something to report; it
 * can also wake with nothing to report (shmem_wait(shm, 0, ...) then returns 0).
 * In a guest without a virtual IOMMU the library polls and this returns
 * -EOPNOTSUPP: call shmem_wait() with a timeout instead.
 */
int shmem_fd(shmem_t *shm);

/** shmem_strstatus() - a constant string for a status code or negative errno. */
const char *shmem_strstatus(int status);

#ifdef __cplusplus
}
#endif
