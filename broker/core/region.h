/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Region: one named shared-memory region, its peers and its signal matrix
 * (docs/region-layout.md).
 *
 * Memory is a sealed memfd whose size is a power of two (QEMU asserts that
 * for a BAR) holding the control page and the data. It exists from the first
 * attach (or from declaration, if persistent) until the last peer leaves.
 *
 * Signal matrix: for each attached peer i the region holds the eventfds
 * ev[i][0..vectors-1]; ev[i][j] means "peer j signaled i", ev[i][max_peers]
 * means "membership changed". Peer i receives its own row, and ev[k][i] for
 * every other peer k.
 *
 * Pure: memory, eventfds and the control page; no sockets, no event loop.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "identity.h"
#include "region-layout.h"

/* A pinned name: a peer's label, or a VM's UUID (36 characters). */
#define REGION_PIN_NAME_MAX PEER_UUID_MAX

typedef struct Peer Peer;
typedef struct Region Region;

/*
 * What the core tells one attached peer's front end. Called from inside
 * registry functions: a callback must not attach or detach anything; it
 * queues what it has to send and returns.
 */
typedef struct PeerOps {
        /*
         * Another peer @other joined @self's region: hand @self the fds that
         * region_fds_to(other, self) returns (borrowed: dup them to keep them).
         */
        void (*joined)(Peer *self, Peer *other);
        /* @other left @self's region: forget its fds. */
        void (*left)(Peer *self, Peer *other);
        /*
         * The core detached @self on its own (region destroyed by force, or a
         * reload's declaration that no longer admits it). The Peer is freed
         * right after this returns: the front end drops its pointer and
         * schedules closing its connection (never synchronously).
         */
        void (*evicted)(Peer *self);
        /*
         * Optional: @other was parked (it left the membership, keeps its index
         * and fds: region_park_peer()) / is back. A front end whose wire can
         * take a departure back tells its peer that @other left / joined
         * (the native protocol: Left, then Joined with the fd again); one
         * that cannot (QEMU: an id announced again after its departure
         * corrupts QEMU 7.2's heap) leaves these NULL and says nothing: its
         * peer learns membership from the control page and its control
         * vector. When a parked peer finally goes, left() is called only on
         * front ends without parked().
         */
        void (*parked)(Peer *self, Peer *other);
        void (*unparked)(Peer *self, Peer *other);
        /*
         * Optional: departures of other peers this peer's VMM was told of
         * (QEMU 7.2 aborts when its device is unplugged after one, docs/libvirt.md),
         * for inspect. NULL: 0.
         */
        unsigned (*departures_told)(const Peer *self);
} PeerOps;

struct Peer {
        Region *region;
        unsigned index;
        uint32_t doorbell_id; /* id on QEMU's ivshmem wire, see region-layout.h */
        PeerIdentity id;
        int *ev; /* [region->vectors], owned */
        const PeerOps *ops; /* NULL only between a restore and its front end's rebind */
        void *userdata;     /* the front end's connection */
        uint64_t conn_id;   /* that connection's id: opaque to the core, names it in a stored state */
        bool parked;        /* out of the membership, index and fds kept (region_park_peer()) */
};

struct Region {
        char name[SHMEM_NAME_MAX + 1];
        size_t slot;          /* position in the registry's region table */
        uint64_t seq;         /* rises with the slot: the native List's cursor (docs/protocol.md) */
        unsigned fds;         /* charged to the registry's fd budget (registry-fds.c) */
        unsigned signal_mode; /* SHMEM_SIGNAL_MODE_*: shmem, or ivshmem (compat: no control page) */
        uint64_t data_offset; /* SHMEM_DATA_OFFSET; 0 in compat mode */
        uint64_t data_size;   /* page-rounded request of the creator (compat: the whole region) */
        uint64_t region_size; /* memfd size: a power of two (QEMU asserts it for a BAR) */
        unsigned max_peers;
        unsigned vectors;     /* max_peers + 1; in compat mode as configured */
        bool declared;        /* known ahead (config, Create): survives its last peer */
        bool persistent;      /* memory survives its last peer too */
        bool from_config;     /* declared by the configuration: a reload may retract it */
        /* A declaration's size or max_peers that waits for the memory to be
         * freed (0: none): shown by inspect, so that a mismatch is visible. */
        uint64_t declared_data_size;
        unsigned declared_max_peers;
        unsigned holds;       /* registry_prepare()s waiting for their attach: kept while > 0 */
        /* Who may attach as a host peer: rw bits of owner, group, others (QEMU peers
         * are admitted by their socket's mode and group). */
        uid_t owner;
        gid_t group;
        unsigned mode;
        char creator[PEER_HOLDER_MAX]; /* whose limits it counts against (peer_identity_holder()); "": nobody's */
        /* Who made it by attaching (a host peer, or a VM through its guest factory), as the
         * broker knew that peer then: shown by inspect and list. Kind NONE: declared. */
        struct {
                unsigned kind; /* SHMEM_PEER_KIND_* */
                char label[SHMEM_LABEL_MAX + 1]; /* unescaped: print with str_escape() */
                char vm_uuid[PEER_UUID_MAX + 1];
                pid_t pid;
                uid_t uid;
        } created_by;
        /* Pinned indices: pin_name[i] (a VM or client name) always gets index i,
         * nobody else does; "" not pinned. NULL when nothing is pinned. */
        char (*pin_name)[REGION_PIN_NAME_MAX + 1];
        int memfd;            /* -1 while not allocated */
        char backend[256];    /* "memfd", "hugetlb-2M", "hugetlb-1G", or a directory */
        uint64_t page_len;    /* how much of the memory the broker maps for page 0 */
        struct shmem_control_page *page; /* our mapping of page 0, NULL while not allocated */
        uint64_t active, epoch;
        uint32_t next_doorbell_id; /* rolling; restarts only when the memory is freed */
        Peer *peers[SHMEM_PEERS_MAX];
        unsigned n_peers;
};

/* Whether @id may attach to @r as a host peer: root, or rw in its class of r->mode. */
bool region_may_attach(const Region *r, const PeerIdentity *id);

/* Sets the pinned indices from "NAME:INDEX ..." (indices beyond max_peers never match); 0 or -ENOMEM. */
int region_set_pins(Region *r, const char *pins);

/*
 * Computes the memfd size for @data_size bytes of data: control page + data
 * (compat mode: data alone) rounded up to a power of two. Returns false if it
 * cannot be represented or exceeds @limit bytes.
 */
bool region_size_for(unsigned signal_mode, uint64_t data_size, uint64_t limit, uint64_t *ret_data_size,
                     uint64_t *ret_region_size);

/* @vectors is used in compat mode only (shmem mode: max_peers + 1). */
int region_new(Region **ret, const char *name, uint64_t data_size, unsigned max_peers, unsigned signal_mode,
               unsigned vectors);
Region *region_free(Region *r);

/*
 * region_set_backend() - where the memory comes from, before it is
 * allocated: "memfd" (default), "hugetlb-2M" / "hugetlb-1G" (memfd on huge
 * pages; the region grows to at least one), or an absolute directory (a
 * hugetlbfs or tmpfs mount, a DAX file system: an unlinked file there).
 * Returns 0, -EINVAL for an unknown backend, or -errno of the directory.
 */
int region_set_backend(Region *r, const char *backend);

/* Records @id as the peer whose attach made @r (r->created_by). */
void region_set_created_by(Region *r, const PeerIdentity *id);

/* Allocates the memfd and control page if not yet there. */
int region_allocate(Region *r);
/* Frees memory and control page; region must have no peers. */
void region_release(Region *r);

/* The index region_attach_peer() would give @id now, or -1: every index is taken. */
int region_pick_index(const Region *r, const PeerIdentity *id);

/*
 * region_attach_peer() - give @id the lowest free index of @r, with its row
 * of eventfds, and tell the other peers. The new peer's front end then sends
 * its setup from peer->ev and region_peer_fd_to().
 * Returns 0, CORE_E_CLIENT_MAX, or a negative errno.
 */
int region_attach_peer(Region *r, const PeerIdentity *id, const PeerOps *ops, void *userdata,
                       Peer **ret);

/*
 * Restoring after a restart (persist.h): the memory and the peers exist
 * already, the control page holds their truth, so nothing is written to it
 * and nobody is told anything.
 */
/* Takes @memfd (consumed, also on failure) as the region's memory. */
int region_adopt_memory(Region *r, int memfd);
/* Puts a peer back at @index with its row @ev (r->vectors fds, consumed, also on failure), parked or not. */
int region_restore_peer(Region *r, unsigned index, uint32_t doorbell_id, const PeerIdentity *id, bool parked,
                        int *ev, Peer **ret);

/*
 * region_park_peer() - @p leaves the membership as a detach would show it
 * (the active bitmap, the epoch, its slot; the others' front ends told
 * through PeerOps.parked; control vectors rung) but keeps its index, its row
 * of eventfds and its doorbell id, so that its VMM, which holds them, need
 * not be told anything it could not take back (QEMU 7.2: docs/factory.md).
 * region_unpark_peer() brings it back as it was. No-ops if already so.
 */
void region_park_peer(Region *r, Peer *p);
void region_unpark_peer(Region *r, Peer *p);

/* After peers were lost in a restart: the control page shows who is really there. */
void region_resync(Region *r);

/*
 * region_detach_peer() - the peer leaves: control page updated, other peers
 * told, its row closed, control vectors rung. Frees @p. The caller
 * (registry_detach_peer) decides what happens to an empty region.
 */
void region_detach_peer(Region *r, Peer *p);

/*
 * The fds (borrowed) @me holds to signal @other: in shmem mode exactly one,
 * ev[other][me], so that @other sees "@me signaled" (docs/region-layout.md, Signals); in compat
 * mode all of @other's vectors, as contrib/ivshmem-server hands them out.
 */
static inline unsigned region_fds_to(Region *r, Peer *other, Peer *me, const int **ret) {
        if (r->signal_mode == SHMEM_SIGNAL_MODE_IVSHMEM) {
                *ret = other->ev;
                return r->vectors;
        }
        *ret = &other->ev[me->index];
        return 1;
}
