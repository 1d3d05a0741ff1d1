/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "escape.h"
#include "log.h"
#include "macro.h"
#include "registry-private.h"

int registry_adopt_region(Registry *reg, RegionAdoption *a, Region **ret, const char **ret_error) {
        Account *acct;
        Region *r;
        int k;

        *ret_error = NULL;
        if (registry_find(reg, a->decl.name)) {
                a->memfd = fd_close(a->memfd);
                *ret_error = "a region of that name exists";
                return CORE_E_EXISTS;
        }
        /* Stored by a broker whose limits may have been larger: the state wins. */
        {
                Limits saved = reg->limits;

                reg->limits.max_regions = UINT_MAX;
                reg->limits.max_region_bytes = UINT64_MAX;
                reg->limits.max_regions_per_uid = UINT_MAX;
                reg->limits.max_fds = 0;
                k = registry_add(reg, &a->decl, a->creator, &r, ret_error);
                reg->limits = saved;
        }
        if (k != 0) {
                a->memfd = fd_close(a->memfd);
                return k;
        }
        r->declared = a->declared;
        r->persistent = a->decl.persistent;
        r->from_config = a->from_config;
        r->epoch = a->epoch;
        r->next_doorbell_id = a->next_doorbell_id % (SHMEM_DOORBELL_ID_MAX + 1);
        /* What the stored sizes say must be what QEMU and the peers were given: a
         * power of two, at least a backend page, holding the data after the page. */
        if (a->region_size == 0 || (a->region_size & (a->region_size - 1)) || a->region_size < r->page_len ||
            a->data_size == 0 || a->data_size > a->region_size - r->data_offset ||
            (r->signal_mode == SHMEM_SIGNAL_MODE_IVSHMEM && a->data_size != a->region_size)) {
                *ret_error = "its stored sizes are not those of a region";
                a->memfd = fd_close(a->memfd);
                registry_forget(reg, r);
                return CORE_E_INVALID;
        }
        r->data_size = a->data_size;
        r->region_size = a->region_size;
        k = registry_set_access(r, &a->decl);
        if (k == 0 && a->memfd >= 0)
                k = region_adopt_memory(r, TAKE_FD(a->memfd));
        if (k < 0) {
                *ret_error = "its memory did not come back";
                registry_forget(reg, r);
                return k;
        }
        if (r->memfd >= 0) {
                reg->allocated_bytes += r->region_size;
                acct = region_account(reg, r);
                if (acct)
                        acct->bytes += r->region_size;
        }
        registry_charge_fds(reg, r);
        *ret = r;
        return 0;
}

int registry_adopt_peer(Registry *reg, Region *r, unsigned index, uint32_t doorbell_id, const PeerIdentity *id,
                        bool parked, uint64_t conn_id, int *ev, Peer **ret) {
        Peer *p;
        int k;

        k = region_restore_peer(r, index, doorbell_id, id, parked, ev, &p);
        if (k < 0)
                return k;
        p->conn_id = conn_id;
        k = conn_id ? map_put(reg->by_conn, &p->conn_id, p) : 0;
        if (k < 0) {
                region_detach_peer(r, p);
                return k;
        }
        registry_charge_fds(reg, r);
        *ret = p;
        return 0;
}

/* For peers dropped after a restart: nobody is listening for them. */
static void orphan_joined(Peer *self, Peer *other) {
}
static void orphan_left(Peer *self, Peer *other) {
}
static void orphan_evicted(Peer *self) {
}
static const PeerOps registry_orphan_ops = { .joined = orphan_joined, .left = orphan_left, .evicted = orphan_evicted };

void registry_adopt_finish(Registry *reg) {
        for (size_t i = 0; i < reg->n_regions; i++) {
                Region *r = reg->regions[i];

                for (unsigned k = 0; k < r->max_peers; k++)
                        if (r->peers[k] && !r->peers[k]->ops) {
                                log_warning("Peer %u of '%s' has no connection after the restart, detaching it",
                                            k, r->name);
                                r->peers[k]->ops = &registry_orphan_ops;
                        }
        }
        /* Backwards, one region at a time: a detach may forget the region it was in. */
        for (size_t i = reg->n_regions; i-- > 0;) {
                Region *r = reg->regions[i];

                for (unsigned k = 0; k < r->max_peers; k++)
                        if (r->peers[k] && r->peers[k]->ops == &registry_orphan_ops)
                                registry_unlink_peer(reg, r, r->peers[k]);
                /* The page may still show peers that did not come back (a guest may have
                 * scribbled on it too: a resync rewrites it, which is harmless). */
                if (r->page && __atomic_load_n(&r->page->active, __ATOMIC_ACQUIRE) != r->active)
                        region_resync(r);
                registry_settle(reg, r);
        }
        registry_changed(reg, NULL);
}

/* A prepared attach that the image before a restart was serving (a guest factory's plug). */
void registry_hold(Registry *reg, Region *r) {
        r->holds++;
}
