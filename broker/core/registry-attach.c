/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A peer's way into a region and out of it: who may take an index (owner,
 * group and mode; peers-per-uid), an attach request resolved to its region
 * (rules on the name the peer used, then subst, then the final name's
 * checks; found or created, with its memory), attach, prepare (an index
 * kept for a front end that attaches later: the guest factory), park and
 * unpark. registry.c keeps the table, and detaching (registry_unlink_peer(),
 * registry_detach()).
 */
#include <stdio.h>
#include <string.h>

#include "registry-private.h"

/* Why a host peer may not attach to @r by its owner/group/mode, or NULL. */
const char *registry_mode_refuses(Registry *reg, const Region *r, const PeerIdentity *id) {
        if (id->kind != SHMEM_PEER_KIND_HOST || region_may_attach(r, id))
                return NULL;
        snprintf(reg->error_buf, sizeof(reg->error_buf), "the region is owner %u, group %u, mode %03o",
                 (unsigned) r->owner, (unsigned) r->group, r->mode);
        return reg->error_buf;
}

/* Why @id may not take one more index of @r (peers-per-uid), or NULL. */
static const char *registry_holder_refuses(Registry *reg, const Region *r, const PeerIdentity *id) {
        char mine[PEER_HOLDER_MAX], theirs[PEER_HOLDER_MAX];
        unsigned held = 0;

        if (id->kind == SHMEM_PEER_KIND_HOST && policy_is_admin(id))
                return NULL;
        peer_identity_holder(id, mine);
        for (unsigned i = 0; i < r->max_peers; i++)
                held += r->peers[i] && strcmp(peer_identity_holder(&r->peers[i]->id, theirs), mine) == 0;
        if (held < reg->limits.max_peers_per_uid)
                return NULL;
        snprintf(reg->error_buf, sizeof(reg->error_buf),
                 "this %s holds %u of the region's indices already (peers-per-uid)",
                 id->kind == SHMEM_PEER_KIND_QEMU ? "VM" : "user", held);
        return reg->error_buf;
}

/*
 * What registry_attach() and registry_prepare() share: the region @req
 * attaches to, found or created, with its memory, every check passed but a
 * free index. On failure a region this made is gone again.
 */
static int registry_resolve(Registry *reg, const AttachRequest *req, Region **ret, bool *ret_created,
                            const char **ret_error) {
        const PeerIdentity *id = req->id;
        char name[SHMEM_NAME_MAX + 1], holder[PEER_HOLDER_MAX];
        bool created = false;
        Region *r;
        int k;

        *ret_error = NULL;
        if (reg->closed) {
                *ret_error = reg->closed;
                return CORE_E_NO_PERMISSION;
        }
        if (!shmem_name_valid(req->name)) {
                *ret_error = NAME_RULE;
                return CORE_E_ILLEGAL_NAME;
        }
        if ((unsigned) req->mode > ATTACH_EXCLUSIVE) {
                *ret_error = "unknown attach mode";
                return CORE_E_INVALID;
        }
        if (req->prepared)
                snprintf(name, sizeof(name), "%s", req->name);
        else {
                /* Client names are the client's own choice: these rules sort
                 * cooperating programs; owner/group/mode is what authenticates. */
                if (!policy_rules_allow(&reg->policy, id, req->name, ret_error))
                        return CORE_E_NO_PERMISSION;
                if (!policy_subst_name(&reg->policy, id, req->name, name)) {
                        *ret_error = "the name with this peer's subst prefix is longer than 63 characters";
                        return CORE_E_ILLEGAL_NAME;
                }
        }
        r = registry_find(reg, name);
        /* On the final name: a subst prefix must not lead a host peer into a compat region. */
        if (r && r->signal_mode == SHMEM_SIGNAL_MODE_IVSHMEM && id->kind != SHMEM_PEER_KIND_QEMU) {
                *ret_error = "a compat region (signal-mode = ivshmem) is for QEMU guests only";
                return CORE_E_INVALID;
        }
        if (r && req->mode == ATTACH_EXCLUSIVE) {
                *ret_error = "a region of that name exists";
                return CORE_E_EXISTS;
        }
        if (r && (*ret_error = registry_mode_refuses(reg, r, id)))
                return CORE_E_NO_PERMISSION;
        if (r && (*ret_error = registry_holder_refuses(reg, r, id)))
                return CORE_E_LIMIT;
        if (!r) {
                if (req->mode == ATTACH_FIND) {
                        *ret_error = "no region of that name";
                        return CORE_E_NOT_FOUND;
                }
                k = registry_add(reg, &(RegionDecl) { .name = name, .size = req->size },
                                 id->kind == SHMEM_PEER_KIND_HOST && policy_is_admin(id) ? NULL
                                                                                       : peer_identity_holder(id, holder),
                                 &r, ret_error);
                if (k != 0)
                        return k;
                /* Made by a peer: its own, shared with its group (QNX 8.0 mode/gid). */
                region_set_created_by(r, id);
                r->owner = id->uid;
                r->group = id->gid;
                r->mode = 0660;
                created = true;
        }
        created = created || r->memfd < 0;
        k = registry_allocate(reg, r, ret_error);
        if (k != 0) {
                registry_settle(reg, r);
                return k;
        }
        *ret = r;
        *ret_created = created;
        return 0;
}

int registry_attach(Registry *reg, const AttachRequest *req, Peer **ret, bool *ret_created,
                    const char **ret_error) {
        bool created;
        Region *r;
        Peer *p;
        int k;

        k = registry_resolve(reg, req, &r, &created, ret_error);
        if (k != 0)
                return k;
        if ((*ret_error = registry_fds_refuse(reg, r->vectors))) {
                registry_settle(reg, r);
                return CORE_E_LIMIT;
        }
        k = region_attach_peer(r, req->id, req->ops, req->userdata, &p);
        if (k == CORE_E_CLIENT_MAX)
                *ret_error = "every peer index of the region is taken";
        else if (k < 0)
                *ret_error = "cannot create the peer's eventfds";
        if (k == 0 && req->conn_id) {
                p->conn_id = req->conn_id;
                k = map_put(reg->by_conn, &p->conn_id, p);
                if (k < 0) {
                        region_detach_peer(r, p);
                        *ret_error = "out of memory";
                }
        }
        if (k != 0) {
                registry_settle(reg, r);
                return k;
        }
        registry_charge_fds(reg, r);
        NOTIFY(reg, joined, r, p);
        *ret = p;
        if (ret_created)
                *ret_created = created;
        return 0;
}

int registry_prepare(Registry *reg, const AttachRequest *req, Region **ret, bool *ret_created, const char **ret_error) {
        bool created;
        Region *r;
        int k;

        k = registry_resolve(reg, req, &r, &created, ret_error);
        if (k != 0)
                return k;
        if (region_pick_index(r, req->id) < 0) {
                *ret_error = "every peer index of the region is taken";
                registry_settle(reg, r);
                return CORE_E_CLIENT_MAX;
        }
        r->holds++;
        *ret = r;
        if (ret_created)
                *ret_created = created;
        return 0;
}

void registry_unhold(Registry *reg, Region *r) {
        if (r->holds > 0 && --r->holds == 0)
                registry_settle(reg, r);
}

void registry_park(Registry *reg, Peer *p) {
        if (p->parked)
                return;
        region_park_peer(p->region, p);
        NOTIFY(reg, parked, p->region, p);
        registry_changed(reg, p->region);
}

void registry_unpark(Registry *reg, Peer *p) {
        if (!p->parked)
                return;
        region_unpark_peer(p->region, p);
        NOTIFY(reg, unparked, p->region, p);
        registry_changed(reg, p->region);
}
