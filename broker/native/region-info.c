/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "region-info.h"

void region_info_fill(InfoBuf *b, Registry *reg, Region *r) {
        Shmem__RegionInfo *info = &b->info;

        shmem__region_info__init(info);
        info->name = r->name;
        info->data_size = r->data_size;
        info->region_size = r->region_size;
        info->backend = r->backend;
        info->max_peers = r->max_peers;
        info->vectors = r->vectors;
        info->epoch = r->epoch;
        info->active = r->active;
        info->persistent = r->persistent;
        info->allocated = r->memfd >= 0;
        info->signal_mode = r->signal_mode;
        info->owner = r->owner;
        info->group = r->group;
        info->mode = r->mode;
        info->declared_size = r->declared_data_size;
        info->declared_max_peers = r->declared_max_peers;
        info->qemu_socket = registry_endpoint(reg, r, "qemu", b->socket, sizeof(b->socket)) == 0 ? b->socket : "";
        if (r->created_by.kind != SHMEM_PEER_KIND_NONE) {
                shmem__creator__init(&b->creator);
                b->creator.kind = (Shmem__PeerKind) r->created_by.kind;
                b->creator.label = r->created_by.label;
                b->creator.vm_uuid = r->created_by.vm_uuid;
                b->creator.pid = (uint32_t) r->created_by.pid;
                b->creator.uid = (uint32_t) r->created_by.uid;
                b->creator.key = r->creator;
                info->created_by = &b->creator;
        }
}

void region_peers_fill(Shmem__RegionInfo *info, PeersBuf *b, Region *r) {
        for (unsigned i = 0; i < r->max_peers; i++) {
                Peer *p = r->peers[i];
                Shmem__PeerState *st = &b->states[info->n_peers];

                if (!p)
                        continue;
                shmem__peer_state__init(st);
                st->index = p->index;
                st->kind = (Shmem__PeerKind) p->id.kind;
                st->label = p->id.label;
                st->pid = (uint32_t) p->id.pid;
                st->uid = (uint32_t) p->id.uid;
                st->doorbell_id = p->doorbell_id;
                st->vm_uuid = p->id.vm_uuid;
                st->libvirt = p->id.libvirt;
                st->departures_told = p->ops && p->ops->departures_told ? p->ops->departures_told(p) : 0;
                st->parked = p->parked;
                /* Shown as found: the page is peer-writable and never trusted. */
                if (r->page)
                        st->pending = __atomic_load_n(&r->page->slots[i].pending, __ATOMIC_ACQUIRE);
                b->state_ptrs[info->n_peers++] = st;
        }
        info->peers = b->state_ptrs;
}
