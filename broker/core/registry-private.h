/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What registry.c, registry-attach.c, registry-reconfigure.c, registry-adopt.c
 * and registry-fds.c share: the registry's own steps, not its interface
 * (registry.h is that).
 */

#include "registry.h"

#define NAME_RULE "names are 1-63 of [A-Za-z0-9._-], not starting with '.'"

#define NOTIFY(reg, member, ...)                                                              \
        do {                                                                                  \
                for (unsigned _i = 0; _i < (reg)->n_observers; _i++)                          \
                        if ((reg)->observers[_i].member)                                      \
                                (reg)->observers[_i].member((reg)->observers[_i].userdata, __VA_ARGS__); \
        } while (0)

/* Tells the observers that something a stored state holds of @r changed (NULL: of any region). */
void registry_changed(Registry *reg, Region *r);

/* Drops an account that holds nothing any more; the account @r is charged to, or NULL. */
void account_settle(Registry *reg, Account *a);
Account *region_account(Registry *reg, const Region *r);

/* Creates a region object for @d, charged to the holder @creator (NULL or "": nobody), offered to the plugins. */
int registry_add(Registry *reg, const RegionDecl *d, const char *creator, Region **ret, const char **ret_error);
/* Owner, group, mode and pins of a declaration. */
int registry_set_access(Region *r, const RegionDecl *d);
/* Allocates @r's memory within the byte limits. */
int registry_allocate(Registry *reg, Region *r, const char **ret_error);
/* Frees @r's memory, with the accounting. */
void registry_release_memory(Registry *reg, Region *r);
/* A declaration's geometry that waited for the memory to go takes effect. */
void registry_apply_declared(Region *r);
/* An empty region: its memory freed unless persistent, it forgotten unless declared. */
void registry_settle(Registry *reg, Region *r);
/* Removes @r from the registry and the plugins, and frees it. No peers left. */
void registry_forget(Registry *reg, Region *r);

/*
 * The fd budget (registry-fds.c): Region.fds is what @r holds and is charged
 * for; call registry_charge_fds() after its memory, peers or endpoints
 * changed, registry_uncharge_fds() before it is freed. registry_fds_refuse():
 * why @need more fds do not fit Limits.max_fds, or NULL.
 */
void registry_charge_fds(Registry *reg, Region *r);
void registry_uncharge_fds(Registry *reg, Region *r);
void registry_charge_all_fds(Registry *reg);
const char *registry_fds_refuse(Registry *reg, unsigned need);

/* Why a host peer may not attach to @r by its owner/group/mode, or NULL. */
const char *registry_mode_refuses(Registry *reg, const Region *r, const PeerIdentity *id);
/* Detaches @p (freed), then tells the observers. */
void registry_unlink_peer(Registry *reg, Region *r, Peer *p);
/* Evicts (PeerOps.evicted) and detaches every peer of @r. */
void registry_evict_all(Registry *reg, Region *r);
