/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "escape.h"
#include "log.h"
#include "macro.h"
#include "state.h"

int state_dump_region(Region *r, State *s) {
        Shmem__State__Region *sr = state_add_region(s);

        if (!sr)
                return -ENOMEM;
        sr->name = r->name;
        sr->data_size = r->data_size;
        sr->region_size = r->region_size;
        sr->max_peers = r->max_peers;
        sr->vectors = r->vectors;
        sr->signal_mode = r->signal_mode;
        sr->declared = r->declared;
        sr->persistent = r->persistent;
        sr->from_config = r->from_config;
        sr->allocated = r->memfd >= 0;
        sr->epoch = r->epoch;
        sr->active = r->active;
        sr->next_doorbell_id = r->next_doorbell_id;
        sr->owner = r->owner;
        sr->group = r->group;
        sr->mode = r->mode;
        sr->creator_key = r->creator;
        sr->creator = UINT32_MAX; /* for images before 0.2: "nobody's", creator_key says whose */
        sr->backend = r->backend;
        if (r->created_by.kind != SHMEM_PEER_KIND_NONE) {
                Shmem__State__Creator *sc = state_add_creator(sr);

                if (!sc)
                        return -ENOMEM;
                sc->kind = r->created_by.kind;
                sc->label = r->created_by.label;
                sc->vm_uuid = r->created_by.vm_uuid;
                sc->pid = (uint32_t) r->created_by.pid;
                sc->uid = (uint32_t) r->created_by.uid;
        }
        for (unsigned k = 0; k < r->max_peers; k++) {
                Peer *p = r->peers[k];
                Shmem__State__Peer *sp;

                if (!p)
                        continue;
                sp = state_add_peer(sr);
                if (!sp)
                        return -ENOMEM;
                sp->index = p->index;
                sp->doorbell_id = p->doorbell_id;
                sp->kind = p->id.kind;
                sp->label = p->id.label;
                sp->vm_uuid = p->id.vm_uuid;
                sp->libvirt = p->id.libvirt;
                sp->pid = (uint32_t) p->id.pid;
                sp->uid = (uint32_t) p->id.uid;
                sp->gid = (uint32_t) p->id.gid;
                sp->conn = p->conn_id;
                sp->parked = p->parked;
        }
        return 0;
}

int state_dump_registry(Registry *reg, State *s) {
        int r = 0;

        s->next_conn_id = reg->next_conn_id;
        for (size_t i = 0; r >= 0 && i < reg->n_regions; i++)
                r = state_dump_region(reg->regions[i], s);
        return r;
}

/* Rebuilds the peers of @sr whose whole row came back. */
static int state_adopt_peers(Registry *reg, Region *r, const Shmem__State__Region *sr, Keeper *keeper) {
        for (size_t i = 0; i < sr->n_peers; i++) {
                const Shmem__State__Peer *sp = sr->peers[i];
                PeerIdentity id = { .kind = sp->kind, .pid = (pid_t) sp->pid, .uid = sp->uid, .gid = sp->gid,
                                    .libvirt = sp->libvirt };
                int ev[SHMEM_PEERS_MAX + 1];
                bool complete = true;
                Peer *p;
                int k;

                if (sp->index >= r->max_peers || (sp->kind != SHMEM_PEER_KIND_QEMU && sp->kind != SHMEM_PEER_KIND_HOST)) {
                        log_warning("Region '%s': ignoring a stored peer with index %u of kind %u", r->name,
                                    sp->index, sp->kind);
                        continue;
                }
                snprintf(id.label, sizeof(id.label), "%s", sp->label);
                if (strlen(sp->vm_uuid) == PEER_UUID_MAX)
                        snprintf(id.vm_uuid, sizeof(id.vm_uuid), "%s", sp->vm_uuid);
                for (unsigned v = 0; v < r->vectors; v++) {
                        ev[v] = keeper_take(keeper, &(FdKey) { .kind = FD_VECTOR, .region = r->name,
                                                               .index = sp->index, .vector = v });
                        complete = complete && ev[v] >= 0;
                }
                if (!complete) {
                        log_warning("Peer %u of '%s' lost eventfds in the restart, dropping it", sp->index, r->name);
                        fds_close(ev, r->vectors);
                        continue;
                }
                k = registry_adopt_peer(reg, r, sp->index, sp->doorbell_id, &id, sp->parked, sp->conn, ev, &p);
                if (k == -ENOMEM)
                        return k;
                if (k < 0)
                        log_warning("Peer %u of '%s' cannot come back: %s", sp->index, r->name, strerror(-k));
        }
        return 0;
}

/* Who made the region, if the state says (an older image's does not: nobody is shown). */
static void state_adopt_creator(Region *r, const Shmem__State__Creator *sc) {
        if (!sc || (sc->kind != SHMEM_PEER_KIND_QEMU && sc->kind != SHMEM_PEER_KIND_HOST))
                return;
        r->created_by.kind = sc->kind;
        snprintf(r->created_by.label, sizeof(r->created_by.label), "%s", sc->label);
        if (strlen(sc->vm_uuid) == PEER_UUID_MAX)
                snprintf(r->created_by.vm_uuid, sizeof(r->created_by.vm_uuid), "%s", sc->vm_uuid);
        r->created_by.pid = (pid_t) sc->pid;
        r->created_by.uid = (uid_t) sc->uid;
}

int state_adopt_registry(Registry *reg, const State *s, Keeper *keeper) {
        reg->next_conn_id = s->next_conn_id;
        for (size_t i = 0; i < s->n_regions; i++) {
                const Shmem__State__Region *sr = s->regions[i];
                char name[STR_ESCAPE_SIZE(SHMEM_NAME_MAX)], creator[PEER_HOLDER_MAX] = "";
                RegionAdoption a = {
                        .decl = { .name = sr->name, .size = sr->data_size, .max_peers = sr->max_peers,
                                  .persistent = sr->persistent, .signal_mode = sr->signal_mode,
                                  .vectors = sr->signal_mode == SHMEM_SIGNAL_MODE_IVSHMEM ? sr->vectors : 0,
                                  .owner = sr->owner, .group = sr->group, .mode = sr->mode,
                                  .backend = sr->backend },
                        .data_size = sr->data_size, .region_size = sr->region_size, .declared = sr->declared,
                        .from_config = sr->from_config, .epoch = sr->epoch, .active = sr->active,
                        .next_doorbell_id = sr->next_doorbell_id, .creator = creator, .memfd = -1,
                };
                const char *error = NULL;
                Region *r;
                int k;

                if (sr->creator_key[0] && strlen(sr->creator_key) < sizeof(creator))
                        snprintf(creator, sizeof(creator), "%s", sr->creator_key);
                else if (!sr->creator_key[0] && sr->creator != UINT32_MAX)
                        snprintf(creator, sizeof(creator), "uid:%u", sr->creator); /* stored by an image before 0.2 */
                if (sr->allocated) {
                        a.memfd = keeper_take(keeper, &(FdKey) { .kind = FD_MEMORY, .region = sr->name });
                        if (a.memfd < 0) {
                                /* Without its memory nothing of the region can come back. */
                                log_error("Region '%s' lost its memory in the restart, dropping it",
                                          str_escape(name, sizeof(name), sr->name));
                                continue;
                        }
                }
                k = registry_adopt_region(reg, &a, &r, &error);
                if (k == -ENOMEM)
                        return k;
                if (k != 0) {
                        log_error("Cannot restore region '%s': %s", str_escape(name, sizeof(name), sr->name),
                                  error ? error : k > 0 ? core_error_name(k) : strerror(-k));
                        continue;
                }
                state_adopt_creator(r, sr->created_by);
                k = state_adopt_peers(reg, r, sr, keeper);
                if (k < 0)
                        return k;
        }
        return 0;
}
