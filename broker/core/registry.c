/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "escape.h"
#include "log.h"
#include "macro.h"
#include "registry-private.h"


/* --- observers -------------------------------------------------------------- */


void registry_changed(Registry *reg, Region *r) {
        for (unsigned i = 0; i < reg->n_observers; i++)
                if (reg->observers[i].changed)
                        reg->observers[i].changed(reg->observers[i].userdata, r);
}

int registry_observe(Registry *reg, const RegistryObserver *o) {
        if (reg->n_observers >= REGISTRY_OBSERVERS_MAX)
                return -E2BIG;
        reg->observers[reg->n_observers++] = *o;
        return 0;
}

void registry_unobserve(Registry *reg, void *userdata) {
        for (unsigned i = 0; i < reg->n_observers;)
                if (reg->observers[i].userdata == userdata) {
                        memmove(&reg->observers[i], &reg->observers[i + 1],
                                (reg->n_observers - i - 1) * sizeof(RegistryObserver));
                        reg->n_observers--;
                } else
                        i++;
}

/* --- accounts --------------------------------------------------------------- */

/* The account of @holder, created if needed; NULL on out of memory. */
static Account *account_get(Registry *reg, const char *holder) {
        Account *a = map_get(reg->accounts, holder);

        if (a)
                return a;
        a = calloc(1, sizeof(*a));
        if (!a)
                return NULL;
        snprintf(a->key, sizeof(a->key), "%s", holder);
        if (map_put(reg->accounts, a->key, a) < 0)
                return mfree(a);
        return a;
}

/* Drops an account that holds nothing any more. */
void account_settle(Registry *reg, Account *a) {
        if (a && a->regions == 0 && a->bytes == 0)
                free(map_remove(reg->accounts, a->key));
}

Account *region_account(Registry *reg, const Region *r) {
        return r->creator[0] ? map_get(reg->accounts, r->creator) : NULL;
}

const Account *registry_account(Registry *reg, const char *holder) {
        return map_get(reg->accounts, holder);
}

/* --- the table -------------------------------------------------------------- */

int registry_new(Registry **ret, const Limits *limits) {
        Registry *reg = calloc(1, sizeof(*reg));

        if (!reg)
                return -ENOMEM;
        reg->limits = *limits;
        if (map_new(&reg->by_name, MAP_KEY_STRING) < 0 || map_new(&reg->by_conn, MAP_KEY_U64) < 0 ||
            map_new(&reg->accounts, MAP_KEY_STRING) < 0) {
                registry_free(reg);
                return -ENOMEM;
        }
        *ret = reg;
        return 0;
}

Registry *registry_free(Registry *reg) {
        void *a;

        if (!reg)
                return NULL;
        registry_clear(reg);
        policy_done(&reg->policy);
        for (size_t i = 0; map_next(reg->accounts, &i, &a);)
                free(a);
        map_free(reg->accounts);
        map_free(reg->by_conn);
        map_free(reg->by_name);
        free(reg->regions);
        free(reg->closed);
        free(reg);
        return NULL;
}

int registry_set_closed(Registry *reg, const char *reason) {
        char *copy = NULL;

        if (reason && !(copy = strdup(reason)))
                return -ENOMEM;
        free(reg->closed);
        reg->closed = copy;
        return 0;
}

int registry_add_plugin(Registry *reg, Plugin *p) {
        if (reg->n_plugins >= REGISTRY_PLUGINS_MAX)
                return -E2BIG;
        for (size_t i = 0; i < reg->n_regions; i++) {
                int r = p->ops->region_added(p, reg->regions[i]);

                if (r < 0) {
                        while (i-- > 0)
                                p->ops->region_removed(p, reg->regions[i]);
                        return r;
                }
        }
        reg->plugins[reg->n_plugins++] = p;
        registry_charge_all_fds(reg);
        return 0;
}

void registry_remove_plugin(Registry *reg, Plugin *p) {
        for (unsigned i = 0; i < reg->n_plugins; i++)
                if (reg->plugins[i] == p) {
                        for (size_t k = 0; k < reg->n_regions; k++)
                                p->ops->region_removed(p, reg->regions[k]);
                        memmove(&reg->plugins[i], &reg->plugins[i + 1],
                                (reg->n_plugins - i - 1) * sizeof(Plugin *));
                        reg->n_plugins--;
                        registry_charge_all_fds(reg);
                        return;
                }
}

Region *registry_find(Registry *reg, const char *name) {
        return map_get(reg->by_name, name);
}

int registry_endpoint(Registry *reg, const Region *r, const char *plugin, char *buf, size_t size) {
        for (unsigned i = 0; i < reg->n_plugins; i++)
                if (!strcmp(reg->plugins[i]->ops->name, plugin) && reg->plugins[i]->ops->endpoint)
                        return reg->plugins[i]->ops->endpoint(reg->plugins[i], r, buf, size);
        return -ENOENT;
}

uint64_t registry_new_conn_id(Registry *reg) {
        return ++reg->next_conn_id;
}

Peer *registry_find_peer_by_conn(Registry *reg, uint64_t conn_id) {
        return map_get(reg->by_conn, &conn_id);
}

/* Frees @r's memory, with the accounting. */
void registry_release_memory(Registry *reg, Region *r) {
        Account *a = region_account(reg, r);

        if (r->memfd < 0)
                return;
        reg->allocated_bytes -= r->region_size;
        if (a)
                a->bytes -= r->region_size;
        region_release(r);
        registry_charge_fds(reg, r);
}

/* Removes @r from the registry and the plugins, and frees it. No peers left. */
void registry_forget(Registry *reg, Region *r) {
        Account *a = region_account(reg, r);

        NOTIFY(reg, region, r, REGION_DESTROYED);
        for (unsigned i = 0; i < reg->n_plugins; i++)
                reg->plugins[i]->ops->region_removed(reg->plugins[i], r);
        registry_release_memory(reg, r);
        if (a) {
                a->regions--;
                account_settle(reg, a);
        }
        (void) map_remove(reg->by_name, r->name);
        /* Keep the creation order: list shows regions as they came. */
        memmove(&reg->regions[r->slot], &reg->regions[r->slot + 1],
                (reg->n_regions - r->slot - 1) * sizeof(Region *));
        reg->n_regions--;
        for (size_t i = r->slot; i < reg->n_regions; i++)
                reg->regions[i]->slot = i;
        registry_uncharge_fds(reg, r);
        region_free(r);
}

/* Allocates the memory of @r within the byte limits. */
int registry_allocate(Registry *reg, Region *r, const char **ret_error) {
        Account *a = region_account(reg, r);
        int k;

        if (r->memfd >= 0)
                return 0;
        if (reg->allocated_bytes + r->region_size > reg->limits.max_total_bytes) {
                *ret_error = "the broker's total memory limit (total-bytes) is reached";
                return CORE_E_LIMIT;
        }
        if (a && a->bytes + r->region_size > reg->limits.max_bytes_per_uid) {
                *ret_error = "this user's memory limit (bytes-per-uid) is reached";
                return CORE_E_LIMIT;
        }
        if ((*ret_error = registry_fds_refuse(reg, 1)))
                return CORE_E_LIMIT;
        k = region_allocate(r);
        if (k < 0) {
                *ret_error = "cannot allocate the region's memory";
                return k == -ENOMEM || k == -ENOSPC ? CORE_E_NOMEM : k;
        }
        reg->allocated_bytes += r->region_size;
        if (a)
                a->bytes += r->region_size;
        registry_charge_fds(reg, r);
        NOTIFY(reg, region, r, REGION_ALLOCATED);
        return 0;
}

/* Validates a declaration's geometry: 0 with the sizes, or CORE_E_* with a reason. */
static int registry_check_geometry(Registry *reg, const RegionDecl *d, unsigned *ret_max_peers,
                                   const char **ret_error) {
        unsigned max_peers = d->max_peers ? d->max_peers : reg->limits.default_max_peers;
        uint64_t data_size, region_size;

        if (max_peers > SHMEM_PEERS_MAX) {
                *ret_error = "max_peers must be 1-64";
                return CORE_E_INVALID;
        }
        if (d->signal_mode > SHMEM_SIGNAL_MODE_IVSHMEM || d->vectors > SHMEM_PEERS_MAX + 1) {
                *ret_error = "unknown signal mode, or more than 65 vectors";
                return CORE_E_INVALID;
        }
        if (d->size == 0) {
                *ret_error = "a new region needs a size greater than 0";
                return CORE_E_BAD_SIZE;
        }
        if (!region_size_for(d->signal_mode, d->size, reg->limits.max_region_bytes, &data_size, &region_size)) {
                snprintf(reg->error_buf, sizeof(reg->error_buf),
                         "data plus the 4 KiB control page, rounded up to a power of two, "
                         "must fit the per-region limit of %" PRIu64 " bytes",
                         reg->limits.max_region_bytes);
                *ret_error = reg->error_buf;
                return CORE_E_BAD_SIZE;
        }
        *ret_max_peers = max_peers;
        return 0;
}

/* Creates a region object for @d, charged to @creator, and offers it to the plugins. */
int registry_add(Registry *reg, const RegionDecl *d, const char *creator, Region **ret, const char **ret_error) {
        Account *a = NULL;
        unsigned max_peers;
        Region *r;
        int k;

        if (!shmem_name_valid(d->name)) {
                *ret_error = NAME_RULE;
                return CORE_E_ILLEGAL_NAME;
        }
        k = registry_check_geometry(reg, d, &max_peers, ret_error);
        if (k != 0)
                return k;
        if (reg->n_regions >= reg->limits.max_regions) {
                *ret_error = "the broker's region limit (regions) is reached";
                return CORE_E_LIMIT;
        }
        if ((*ret_error = registry_fds_refuse(reg, reg->n_plugins)))
                return CORE_E_LIMIT;
        if (creator && creator[0]) {
                a = account_get(reg, creator);
                if (!a)
                        return -ENOMEM;
                if (a->regions >= reg->limits.max_regions_per_uid) {
                        account_settle(reg, a);
                        *ret_error = "this user's region limit (regions-per-uid) is reached";
                        return CORE_E_LIMIT;
                }
        }
        if (reg->n_regions == reg->n_regions_alloc) {
                size_t n = reg->n_regions_alloc ? reg->n_regions_alloc * 2 : 64;
                Region **v = realloc(reg->regions, n * sizeof(Region *));

                if (!v) {
                        account_settle(reg, a);
                        return -ENOMEM;
                }
                reg->regions = v;
                reg->n_regions_alloc = n;
        }
        k = region_new(&r, d->name, d->size, max_peers, d->signal_mode, d->vectors ? d->vectors : 1);
        if (k < 0) {
                account_settle(reg, a);
                return k;
        }
        k = region_set_backend(r, d->backend);
        if (k < 0 || r->region_size > reg->limits.max_region_bytes) {
                snprintf(reg->error_buf, sizeof(reg->error_buf), "backend '%s': %s", d->backend ? d->backend : "memfd",
                         k < 0 ? strerror(-k) : "its page size makes the region exceed the per-region limit");
                *ret_error = reg->error_buf;
                region_free(r);
                account_settle(reg, a);
                return k == -EINVAL ? CORE_E_INVALID : k < 0 ? k : CORE_E_BAD_SIZE;
        }
        k = map_put(reg->by_name, r->name, r);
        if (k < 0) {
                region_free(r);
                account_settle(reg, a);
                return k;
        }
        snprintf(r->creator, sizeof(r->creator), "%s", creator ? creator : "");
        if (a)
                a->regions++;
        r->slot = reg->n_regions;
        r->seq = ++reg->next_seq;
        reg->regions[reg->n_regions++] = r;
        for (unsigned i = 0; i < reg->n_plugins; i++) {
                k = reg->plugins[i]->ops->region_added(reg->plugins[i], r);
                if (k < 0) {
                        *ret_error = "cannot set up the region's endpoints";
                        while (i-- > 0)
                                reg->plugins[i]->ops->region_removed(reg->plugins[i], r);
                        /* No plugin holds it now: forget it without telling them again. */
                        map_remove(reg->by_name, r->name);
                        reg->n_regions--;
                        if (a) {
                                a->regions--;
                                account_settle(reg, a);
                        }
                        region_free(r);
                        return k;
                }
        }
        registry_charge_fds(reg, r);
        NOTIFY(reg, region, r, REGION_DECLARED);
        *ret = r;
        return 0;
}

int registry_set_access(Region *r, const RegionDecl *d) {
        r->owner = d->owner;
        r->group = d->group;
        r->mode = d->mode ? d->mode : 0666;
        return region_set_pins(r, d->pins);
}

int registry_declare(Registry *reg, const RegionDecl *d, Region **ret, const char **ret_error) {
        Region *r;
        int k;

        *ret_error = NULL;
        if (registry_find(reg, d->name)) {
                *ret_error = "a region of that name exists";
                return CORE_E_EXISTS;
        }
        k = registry_add(reg, d, NULL, &r, ret_error);
        if (k != 0)
                return k;
        r->declared = true;
        r->persistent = d->persistent;
        k = registry_set_access(r, d);
        if (k == 0 && d->persistent)
                k = registry_allocate(reg, r, ret_error);
        if (k != 0) {
                registry_forget(reg, r);
                return k;
        }
        registry_changed(reg, r);
        if (ret)
                *ret = r;
        return 0;
}

/* A declaration's geometry that waited for the memory to go takes effect. */
void registry_apply_declared(Region *r) {
        uint64_t data_size, region_size;

        if (r->memfd >= 0 || (!r->declared_data_size && !r->declared_max_peers))
                return;
        if (r->declared_max_peers) {
                r->max_peers = r->declared_max_peers;
                r->vectors = r->signal_mode == SHMEM_SIGNAL_MODE_IVSHMEM ? r->vectors : r->max_peers + 1;
        }
        if (r->declared_data_size &&
            region_size_for(r->signal_mode, r->declared_data_size, UINT64_MAX, &data_size, &region_size)) {
                r->data_size = data_size;
                r->region_size = region_size;
                (void) region_set_backend(r, r->backend); /* rounds up to the backend's page again */
        }
        r->declared_data_size = 0;
        r->declared_max_peers = 0;
}

/* An empty region: free its memory unless persistent, forget it unless declared. */
void registry_settle(Registry *reg, Region *r) {
        if (r->n_peers > 0 || r->persistent || r->holds > 0)
                return;
        if (!r->declared) {
                registry_forget(reg, r);
                return;
        }
        if (r->memfd >= 0) {
                registry_release_memory(reg, r);
                registry_apply_declared(r);
                NOTIFY(reg, region, r, REGION_FREED);
        }
}

/* Detaches @p (freed), then tells the observers. */
void registry_unlink_peer(Registry *reg, Region *r, Peer *p) {
        unsigned index = p->index;
        bool parked = p->parked;

        if (map_get(reg->by_conn, &p->conn_id) == p)
                (void) map_remove(reg->by_conn, &p->conn_id);
        region_detach_peer(r, p);
        registry_charge_fds(reg, r);
        NOTIFY(reg, left, r, index, parked);
}

void registry_detach(Registry *reg, Peer *p) {
        Region *r = p->region;

        registry_unlink_peer(reg, r, p);
        registry_settle(reg, r);
}

void registry_evict_all(Registry *reg, Region *r) {
        for (unsigned i = 0; i < r->max_peers; i++) {
                Peer *p = r->peers[i];

                if (!p)
                        continue;
                if (p->ops)
                        p->ops->evicted(p);
                registry_unlink_peer(reg, r, p);
        }
}

int registry_destroy(Registry *reg, const char *name, bool force, const char **ret_error) {
        Region *r = registry_find(reg, name);

        *ret_error = NULL;
        if (!r) {
                *ret_error = "no region of that name";
                return CORE_E_NOT_FOUND;
        }
        if (r->n_peers > 0 && !force) {
                *ret_error = "peers are attached (--force detaches them)";
                return CORE_E_BUSY;
        }
        registry_evict_all(reg, r);
        registry_forget(reg, r);
        return 0;
}

void registry_clear(Registry *reg) {
        while (reg->n_regions > 0) {
                Region *r = reg->regions[reg->n_regions - 1];

                registry_evict_all(reg, r);
                registry_forget(reg, r);
        }
}
