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
 * Use: #include <shmem/shmem.h>, and build with
 * `pkg-config --cflags --libs libshmem` (a guest program links
 * libshmem-guest.a instead, statically: docs/factory.md). An example client
 * is examples/shmem-hello.c.
 *
 * Return convention: 0 on success; a positive SHMEM_STATUS_* when the broker
 * (or, in a guest, the device) refused; a negative errno for local failures.
 * A handle is not thread-safe: use one per thread, or lock around it.
 *
 * Across fork() (libshmem.so): the child gets a copy of the handle that is
 * the same attachment (the same peer index, mapping, eventfds and broker
 * connection), not a new one. Use a handle in one process only.
 * shmem_detach() in a process other than the one that attached frees that
 * process's copy and leaves the attachment to the other; any other call
 * there acts as the attacher would (a shmem_wait() takes its signals). Every
 * fd of a handle is close-on-exec: exec() drops the child's copy, as exit does.
 *
 * When the broker restarts (libshmem.so): under systemd (the unit's fd
 * store, docs/persistence.md), after a crash as after `kill -USR2`, the
 * connection survives and a handle notices nothing: index, data, pending
 * signals and membership events go on. When the broker stops, or dies
 * without a service manager to keep its fds, the mapping and the signals to
 * peers already known keep working, peers that come later are not seen, and
 * shmem_wait() returns -ECONNRESET once it has reported what was pending.
 * A new broker's region is new memory: shmem_detach() and attach again.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shmem-version.h" /* SHMEM_VERSION_MAJOR, _MINOR, _PATCH */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shmem shmem_t;

/*
 * Status codes, equal to the wire's shmem.Status (QNX's 0..6 kept), then the
 * factory's (proto/factory-page.h: what a guest's attach through its VM's
 * factory device may also get).
 */
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
        SHMEM_STATUS_NO_SLOT = 13, /* guest: no free hot-pluggable slot fits the region's device */
        SHMEM_STATUS_HOTPLUG = 14, /* guest: the region's device could not be plugged */
        SHMEM_STATUS_UNSAFE = 15,  /* guest: serving the region could crash the VM's QEMU */
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
 * In a guest, @opts is ignored. An ivshmem device of the VM whose control
 * page carries @name, with the VM attached to it, is used at once
 * (SHMEM_EXCLUSIVE gives SHMEM_STATUS_EXISTS; a device another handle of
 * the guest holds through vfio gives SHMEM_STATUS_BUSY). Otherwise:
 * - Without a factory device, a guest cannot create or attach: @size is
 *   ignored, a missing name gives SHMEM_STATUS_DOES_NOT_EXIST. A factory
 *   device that cannot be used (mapped by another driver, a malformed page)
 *   counts as none, but its -errno replaces DOES_NOT_EXIST.
 * - With the VM's factory device (docs/region-layout.md, "The factory, from
 *   a guest"), the library asks it, as QNX's guest factory does: FIND for
 *   SHMEM_FIND, EXCLUSIVE for SHMEM_EXCLUSIVE, else ATTACH with @size. A
 *   refusal is returned as its status (SHMEM_STATUS_NO_SLOT, _HOTPLUG and
 *   _UNSAFE are the factory's own). On yes the broker has plugged a device
 *   for the region into the running VM, or made the parked one active again,
 *   and the library waits for it: at most 5 s for the broker to take the
 *   request, 30 s while it plugs (twice that behind another request), then
 *   20 s for the device to appear in sysfs (-ETIMEDOUT past either). The
 *   region's name on the device may carry the VM's subst prefix;
 *   shmem_name() stays @name. Requests of all processes of the guest are
 *   serialized (flock on the factory device), for at most 60 s each.
 *
 * Return: 0, a positive SHMEM_STATUS_*, or a negative errno.
 */
int shmem_attach(shmem_t **ret, const char *name, uint64_t size, unsigned flags,
                 const struct shmem_attach_opts *opts);

/** shmem_find() - shmem_attach() with SHMEM_FIND. */
int shmem_find(shmem_t **ret, const char *name, const struct shmem_attach_opts *opts);

/**
 * shmem_detach() - detach and free the handle; NULL-safe. Return: NULL.
 *
 * In a guest without a factory device the VM stays attached (its QEMU is the
 * broker's peer): the index and the signals sent meanwhile are there at the
 * next attach. With one, the guest's last handle on the region's device
 * sends the factory DETACH: the broker parks the device (it stays plugged,
 * since unplugging can crash QEMU 7.2, docs/libvirt.md section 8), the other
 * peers see this VM leave, and the next attach asks the factory again, which
 * answers at once and the same device is found again. The answer is not
 * reported: the handle is freed whatever it is.
 */
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

/**
 * shmem_version() - the version of the library the program runs with,
 * "MAJOR.MINOR.PATCH"; the header it was built with has SHMEM_VERSION_MAJOR,
 * SHMEM_VERSION_MINOR and SHMEM_VERSION_PATCH.
 */
const char *shmem_version(void);

#ifdef __cplusplus
}
#endif
