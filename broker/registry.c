/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "msg.h"
#include "macro.h"
#include "registry.h"

int registry_new(Registry **ret, struct event_base *base, const Limits *limits, const char *rundir) {
        Registry *reg = calloc(1, sizeof(*reg));

        if (!reg)
                return -ENOMEM;
        reg->base = base;
        reg->limits = *limits;
        reg->rundir = strdup(rundir);
        reg->regions = calloc(limits->max_regions ? limits->max_regions : 1, sizeof(Region *));
        if (!reg->rundir || !reg->regions) {
                registry_free(reg);
                return -ENOMEM;
        }
        *ret = reg;
        return 0;
}

static void rules_free(AccessRule *rules, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free((char *) rules[i].client);
                free((char *) rules[i].glob);
        }
        free(rules);
}

Registry *registry_free(Registry *reg) {
        if (!reg)
                return NULL;
        registry_clear(reg);
        rules_free(reg->rules, reg->n_rules);
        for (unsigned i = 0; i < reg->n_plugins; i++) {
                reg->plugins[i]->ops->stop(reg->plugins[i]);
                reg->plugins[i]->ops->free(reg->plugins[i]);
        }
        free(reg->regions);
        free(reg->rundir);
        free(reg);
        return NULL;
}

int registry_add_plugin(Registry *reg, Plugin *p) {
        int r;

        if (reg->n_plugins >= REGISTRY_PLUGINS_MAX) {
                p->ops->free(p);
                return -E2BIG;
        }
        p->registry = reg;
        p->base = reg->base;
        r = p->ops->start(p);
        if (r < 0) {
                p->ops->free(p);
                return r;
        }
        reg->plugins[reg->n_plugins++] = p;
        return 0;
}

unsigned registry_plugin_slot(Registry *reg, Plugin *p) {
        for (unsigned i = 0; i < reg->n_plugins; i++)
                if (reg->plugins[i] == p)
                        return i;
        return 0;
}

Region *registry_find(Registry *reg, const char *name) {
        /* Linear: max_regions is a few hundred and lookups happen per attach,
         * not per signal (the broker is out of the signal path). */
        for (unsigned i = 0; i < reg->n_regions; i++)
                if (strcmp(reg->regions[i]->name, name) == 0)
                        return reg->regions[i];
        return NULL;
}

static void registry_notify_state(Registry *reg, Region *r, Shmem__RegionState state) {
        if (reg->observer.state)
                reg->observer.state(reg->observer.userdata, r, state);
}

/* Removes @r from the registry and the plugins, and frees it. No peers left. */
static void registry_forget(Registry *reg, Region *r) {
        for (unsigned i = 0; i < reg->n_plugins; i++)
                reg->plugins[i]->ops->region_removed(reg->plugins[i], r);
        if (r->memfd >= 0) {
                reg->allocated_bytes -= r->region_size;
                persist_remove(reg->persist, "m/%s", r->name);
        }
        persist_dirty(reg->persist);
        registry_notify_state(reg, r, SHMEM__REGION_STATE__DESTROYED);
        for (unsigned i = 0; i < reg->n_regions; i++)
                if (reg->regions[i] == r) {
                        reg->regions[i] = reg->regions[--reg->n_regions];
                        break;
                }
        region_free(r);
}

/* Allocates the memory of @r within the byte limit. */
static int registry_allocate(Registry *reg, Region *r, const char **ret_error) {
        int k;

        if (r->memfd >= 0)
                return 0;
        if (reg->allocated_bytes + r->region_size > reg->limits.max_total_bytes) {
                *ret_error = "the broker's total memory limit is reached";
                return SHMEM__STATUS__LIMIT;
        }
        k = region_allocate(r);
        if (k < 0) {
                *ret_error = "cannot allocate the region's memory";
                return k == -ENOMEM || k == -ENOSPC ? SHMEM__STATUS__NOMEM : k;
        }
        persist_store(reg->persist, r->memfd, "m/%s", r->name);
        reg->allocated_bytes += r->region_size;
        registry_notify_state(reg, r, SHMEM__REGION_STATE__ALLOCATED);
        return 0;
}

/* Creates a region object for @d and offers it to the plugins. */
static int registry_add(Registry *reg, const RegionDecl *d, Region **ret, const char **ret_error) {
        const char *name = d->name;
        uint64_t size = d->size, data_size, region_size;
        unsigned max_peers = d->max_peers, vectors = d->vectors ? d->vectors : 1;
        Region *r;
        int k;

        if (!region_name_is_valid(name)) {
                *ret_error = "names are 1-63 of [A-Za-z0-9._-], not starting with '.'";
                return SHMEM__STATUS__ILLEGAL_NAME;
        }
        if (max_peers == 0)
                max_peers = reg->limits.default_max_peers;
        if (max_peers > SHMEM_PEERS_MAX) {
                *ret_error = "max_peers must be 1-64";
                return SHMEM__STATUS__BAD_REQUEST;
        }
        if (d->signal_mode > SHMEM_SIGNAL_MODE_IVSHMEM || vectors > SHMEM_PEERS_MAX + 1) {
                *ret_error = "unknown signal mode, or more than 65 vectors";
                return SHMEM__STATUS__BAD_REQUEST;
        }
        if (size == 0) {
                *ret_error = "a new region needs a size greater than 0";
                return SHMEM__STATUS__BAD_SIZE;
        }
        if (!region_size_for(d->signal_mode, size, reg->limits.max_region_bytes, &data_size, &region_size)) {
                snprintf(reg->error_buf, sizeof(reg->error_buf),
                         "data plus the 4 KiB control page, rounded up to a power of two, "
                         "must fit the per-region limit of %" PRIu64 " bytes",
                         reg->limits.max_region_bytes);
                *ret_error = reg->error_buf;
                return SHMEM__STATUS__BAD_SIZE;
        }
        if (reg->n_regions >= reg->limits.max_regions) {
                *ret_error = "the broker's region limit is reached";
                return SHMEM__STATUS__LIMIT;
        }
        k = region_new(&r, reg, name, size, max_peers, d->signal_mode, vectors);
        if (k < 0)
                return k;
        k = region_set_backend(r, d->backend);
        if (k < 0 || r->region_size > reg->limits.max_region_bytes) {
                snprintf(reg->error_buf, sizeof(reg->error_buf), "backend '%s': %s", d->backend ? d->backend : "memfd",
                         k < 0 ? strerror(-k) : "its page size makes the region exceed the per-region limit");
                *ret_error = reg->error_buf;
                region_free(r);
                return k == -EINVAL || k == 0 ? SHMEM__STATUS__BAD_REQUEST : SHMEM__STATUS__UNKNOWN_FAILURE;
        }
        reg->regions[reg->n_regions++] = r;
        for (unsigned i = 0; i < reg->n_plugins; i++) {
                k = reg->plugins[i]->ops->region_added(reg->plugins[i], r);
                if (k < 0) {
                        /* Tell the plugins that saw it, then drop it. */
                        *ret_error = "cannot set up the region's endpoints";
                        registry_forget(reg, r);
                        return k;
                }
        }
        registry_notify_state(reg, r, SHMEM__REGION_STATE__DECLARED);
        persist_dirty(reg->persist);
        *ret = r;
        return 0;
}

static void registry_set_access(Region *r, const RegionDecl *d) {
        r->owner = d->owner;
        r->group = d->group;
        r->mode = d->mode ? d->mode : 0666;
        /* Validated by the configuration parser; indices beyond max_peers never match. */
        memset(r->pin_name, 0, sizeof(r->pin_name));
        if (d->pins) {
                char copy[4096], *save = NULL;

                snprintf(copy, sizeof(copy), "%s", d->pins);
                for (char *t = strtok_r(copy, " \t,", &save); t; t = strtok_r(NULL, " \t,", &save)) {
                        char *colon = strrchr(t, ':');
                        unsigned long index = colon ? strtoul(colon + 1, NULL, 10) : SHMEM_PEERS_MAX;

                        if (colon && index < r->max_peers) {
                                *colon = 0;
                                snprintf(r->pin_name[index], sizeof(r->pin_name[index]), "%s", t);
                        }
                }
        }
}

int registry_declare(Registry *reg, const RegionDecl *d, Region **ret, const char **ret_error) {
        Region *r;
        int k;

        *ret_error = NULL;
        if (registry_find(reg, d->name)) {
                *ret_error = "a region of that name exists";
                return SHMEM__STATUS__EXISTS;
        }
        k = registry_add(reg, d, &r, ret_error);
        if (k != 0)
                return k;
        r->declared = true;
        r->persistent = d->persistent;
        registry_set_access(r, d);
        persist_dirty(reg->persist);
        if (d->persistent) {
                k = registry_allocate(reg, r, ret_error);
                if (k != 0) {
                        registry_forget(reg, r);
                        return k;
                }
        }
        if (ret)
                *ret = r;
        return 0;
}

/* An empty region: free its memory unless persistent, forget it unless declared. */
static void registry_settle(Registry *reg, Region *r) {
        if (r->n_peers > 0 || r->persistent)
                return;
        if (!r->declared) {
                registry_forget(reg, r);
                return;
        }
        if (r->memfd >= 0) {
                reg->allocated_bytes -= r->region_size;
                persist_remove(reg->persist, "m/%s", r->name);
                region_release(r);
                registry_notify_state(reg, r, SHMEM__REGION_STATE__FREED);
        }
}

int registry_attach(Registry *reg, const char *name, AttachMode mode, uint64_t size,
                    const PeerIdentity *id, const PeerOps *ops, void *userdata, Peer **ret,
                    bool *ret_created, const char **ret_error) {
        Region *r = registry_find(reg, name);
        bool created = false;
        Peer *p;
        int k;

        *ret_error = NULL;
        if (!r && !region_name_is_valid(name)) {
                *ret_error = "names are 1-63 of [A-Za-z0-9._-], not starting with '.'";
                return SHMEM__STATUS__ILLEGAL_NAME;
        }
        if (r && mode == ATTACH_EXCLUSIVE) {
                *ret_error = "a region of that name exists";
                return SHMEM__STATUS__EXISTS;
        }
        if (r && id->kind == SHMEM_PEER_KIND_HOST && !region_may_attach(r, id)) {
                snprintf(reg->error_buf, sizeof(reg->error_buf),
                         "the region is owner %u, group %u, mode %03o", (unsigned) r->owner, (unsigned) r->group,
                         r->mode);
                *ret_error = reg->error_buf;
                return SHMEM__STATUS__NO_PERMISSION;
        }
        if (!r) {
                unsigned mine = 0;

                if (mode == ATTACH_FIND) {
                        *ret_error = "no region of that name";
                        return SHMEM__STATUS__DOES_NOT_EXIST;
                }
                for (unsigned i = 0; i < reg->n_regions; i++)
                        mine += reg->regions[i]->creator == id->uid;
                if (id->uid != 0 && mine >= reg->limits.max_regions_per_uid) {
                        *ret_error = "this user's region limit (regions-per-uid) is reached";
                        return SHMEM__STATUS__LIMIT;
                }
                k = registry_add(reg, &(RegionDecl) { .name = name, .size = size }, &r, ret_error);
                if (k != 0)
                        return k;
                /* Made by a host peer: its own, shared with its group (QNX 8.0 mode/gid). */
                r->owner = id->uid;
                r->group = id->gid;
                r->mode = 0660;
                r->creator = id->uid;
                created = true;
        }
        created = created || r->memfd < 0;
        k = registry_allocate(reg, r, ret_error);
        if (k == 0) {
                k = region_attach_peer(r, id, ops, userdata, &p);
                if (k == REGION_E_CLIENT_MAX) {
                        *ret_error = "every peer index of the region is taken";
                        k = SHMEM__STATUS__CLIENT_MAX;
                } else if (k < 0)
                        *ret_error = "cannot create the peer's eventfds";
        }
        if (k != 0) {
                registry_settle(reg, r);
                return k;
        }
        for (unsigned v = 0; v < r->vectors; v++)
                persist_store(reg->persist, p->ev[v], "e/%s/%u/%u", r->name, p->index, v);
        persist_dirty(reg->persist);
        if (reg->observer.joined)
                reg->observer.joined(reg->observer.userdata, r, p);
        *ret = p;
        if (ret_created)
                *ret_created = created;
        return 0;
}

/* Takes @d's geometry if @r has no memory (and so no peer that knows it). */
static void registry_redeclare(Registry *reg, Region *r, const RegionDecl *d) {
        unsigned max_peers = d->max_peers ? d->max_peers : reg->limits.default_max_peers;
        uint64_t data_size, region_size;

        r->declared = true;
        r->from_config = true;
        r->persistent = d->persistent;
        registry_set_access(r, d);
        if (r->memfd < 0 && d->backend && region_set_backend(r, d->backend) < 0)
                log_error("Region '%s': cannot use backend '%s', keeping '%s'", r->name, d->backend, r->backend);
        persist_dirty(reg->persist);
        if (d->signal_mode != r->signal_mode)
                log_notice("Region '%s': the signal mode changes only when the region is destroyed and "
                           "declared again", r->name);
        else if (!region_size_for(r->signal_mode, d->size, reg->limits.max_region_bytes, &data_size,
                                  &region_size))
                log_error("Region '%s': size %" PRIu64 " exceeds the per-region limit, keeping %" PRIu64,
                          r->name, d->size, r->data_size);
        else if (r->memfd < 0) {
                r->data_size = data_size;
                r->region_size = region_size;
                r->max_peers = max_peers;
                r->vectors = r->signal_mode == SHMEM_SIGNAL_MODE_IVSHMEM ? (d->vectors ? d->vectors : 1)
                                                                         : max_peers + 1;
        } else if (data_size != r->data_size || max_peers != r->max_peers)
                log_notice("Region '%s' is in use: its new size or max-peers applies once its memory is freed",
                           r->name);
}

unsigned registry_reconfigure(Registry *reg, const Limits *limits, const RegionDecl *decls, size_t n) {
        unsigned failed = 0;

        if (limits->max_regions > reg->limits.max_regions) {
                Region **a = realloc(reg->regions, limits->max_regions * sizeof(Region *));

                if (!a) {
                        log_error("Cannot grow the region table, keeping the old limits");
                        return 1;
                }
                reg->regions = a;
                reg->limits = *limits;
        } else {
                /* The table keeps its size: regions above a lowered limit stay. */
                unsigned capacity = reg->limits.max_regions;

                reg->limits = *limits;
                if (reg->limits.max_regions > capacity)
                        reg->limits.max_regions = capacity;
        }

        /* Backwards: forgetting a region moves the last one into its place. */
        for (unsigned i = reg->n_regions; i-- > 0;) {
                Region *r = reg->regions[i];
                bool kept = false;

                if (!r->from_config)
                        continue;
                for (size_t k = 0; k < n && !kept; k++)
                        kept = strcmp(decls[k].name, r->name) == 0;
                if (kept)
                        continue;
                log_info("Region '%s' is no longer configured%s", r->name,
                         r->n_peers > 0 ? ": it goes when its last peer leaves" : "");
                r->from_config = r->declared = r->persistent = false;
                registry_settle(reg, r);
        }

        for (size_t k = 0; k < n; k++) {
                const RegionDecl *d = &decls[k];
                Region *r = registry_find(reg, d->name);
                const char *error = NULL;
                int st;

                if (r) {
                        registry_redeclare(reg, r, d);
                        st = r->persistent ? registry_allocate(reg, r, &error) : 0;
                        if (st == 0)
                                registry_settle(reg, r);
                } else
                        st = registry_declare(reg, d, &r, &error);
                if (st != 0) {
                        log_error("Cannot apply region '%s': %s%s%s", d->name,
                                  st > 0 ? status_text(st) : strerror(-st), error ? ": " : "",
                                  error ? error : "");
                        failed++;
                } else if (r)
                        r->from_config = true;
        }
        return failed;
}

static void registry_unstore_row(Registry *reg, Region *r, unsigned index) {
        for (unsigned v = 0; v < r->vectors; v++)
                persist_remove(reg->persist, "e/%s/%u/%u", r->name, index, v);
        persist_dirty(reg->persist);
}

void registry_detach(Registry *reg, Peer *p) {
        Region *r = p->region;
        unsigned index = p->index;

        region_detach_peer(r, p);
        registry_unstore_row(reg, r, index);
        if (reg->observer.left)
                reg->observer.left(reg->observer.userdata, r, index);
        registry_settle(reg, r);
}

static void registry_evict_all(Registry *reg, Region *r) {
        for (unsigned i = 0; i < r->max_peers; i++) {
                Peer *p = r->peers[i];

                if (!p)
                        continue;
                p->ops->evicted(p);
                region_detach_peer(r, p);
                registry_unstore_row(reg, r, i);
                if (reg->observer.left)
                        reg->observer.left(reg->observer.userdata, r, i);
        }
}

int registry_destroy(Registry *reg, const char *name, bool force, const char **ret_error) {
        Region *r = registry_find(reg, name);

        *ret_error = NULL;
        if (!r) {
                *ret_error = "no region of that name";
                return SHMEM__STATUS__DOES_NOT_EXIST;
        }
        if (r->n_peers > 0 && !force) {
                *ret_error = "peers are attached (use force to detach them)";
                return SHMEM__STATUS__BUSY;
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

/* For peers being dropped after a restart: nobody is listening for them. */
static void orphan_joined(Peer *self, Peer *other) {
}
static void orphan_left(Peer *self, Peer *other) {
}
static void orphan_evicted(Peer *self) {
}
static const PeerOps registry_orphan_ops = { orphan_joined, orphan_left, orphan_evicted };

Peer *registry_find_peer_by_conn(Registry *reg, uint64_t conn_id) {
        for (unsigned i = 0; i < reg->n_regions; i++) {
                Region *r = reg->regions[i];

                for (unsigned k = 0; k < r->max_peers; k++)
                        if (r->peers[k] && r->peers[k]->conn_id == conn_id)
                                return r->peers[k];
        }
        return NULL;
}

int registry_dump(Registry *reg, State *s) {
        s->next_conn_id = reg->next_conn_id;
        for (unsigned i = 0; i < reg->n_regions; i++) {
                Region *r = reg->regions[i];
                Shmem__State__Region *sr = persist_state_add_region(s);

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
                sr->creator = r->creator;
                sr->backend = r->backend;
                for (unsigned k = 0; k < r->max_peers; k++) {
                        Peer *p = r->peers[k];
                        Shmem__State__Peer *sp;

                        if (!p)
                                continue;
                        sp = persist_state_add_peer(sr);
                        if (!sp)
                                return -ENOMEM;
                        sp->index = p->index;
                        sp->doorbell_id = p->doorbell_id;
                        sp->kind = p->id.kind;
                        sp->label = p->id.label;
                        sp->vm_uuid = p->id.vm_uuid;
                        sp->libvirt = p->id.libvirt;
                        sp->departures_told = p->departures_told;
                        sp->pid = (uint32_t) p->id.pid;
                        sp->uid = (uint32_t) p->id.uid;
                        sp->gid = (uint32_t) p->id.gid;
                        sp->conn = p->conn_id;
                }
        }
        return 0;
}

/* Rebuilds one region and the peers whose whole row was stored. */
static int registry_restore_region(Registry *reg, const Shmem__State__Region *sr) {
        const char *error = NULL;
        Region *r;
        int k;

        k = registry_add(reg,
                         &(RegionDecl) { .name = sr->name, .size = sr->data_size, .max_peers = sr->max_peers,
                                         .signal_mode = sr->signal_mode, .vectors = sr->vectors,
                                         .backend = sr->backend },
                         &r, &error);
        if (k != 0)
                return log_error_errno(k < 0 ? k : -EINVAL, "Cannot restore region '%s': %s", sr->name,
                                       error ? error : "invalid");
        r->declared = sr->declared;
        r->persistent = sr->persistent;
        r->from_config = sr->from_config;
        r->epoch = sr->epoch;
        r->next_doorbell_id = sr->next_doorbell_id;
        r->owner = sr->owner;
        r->group = sr->group;
        r->mode = sr->mode;
        r->creator = sr->creator;
        if (sr->allocated) {
                int fd = persist_take(reg->persist, "m/%s", sr->name);

                k = fd < 0 ? -ENOENT : region_adopt_memory(r, fd);
                if (k < 0) {
                        /* Without its memory nothing of the region can come back. */
                        log_error_errno(k, "Region '%s' lost its memory in the restart: %m", sr->name);
                        registry_forget(reg, r);
                        return 0;
                }
                reg->allocated_bytes += r->region_size;
                /* Known again, for the next hand-over (the store drops duplicates). */
                persist_store(reg->persist, r->memfd, "m/%s", r->name);
        }
        for (size_t i = 0; i < sr->n_peers && r->memfd >= 0; i++) {
                const Shmem__State__Peer *sp = sr->peers[i];
                PeerIdentity id = { .kind = sp->kind, .pid = (pid_t) sp->pid, .uid = sp->uid, .gid = sp->gid,
                                    .libvirt = sp->libvirt };
                int ev[SHMEM_PEERS_MAX + 1];
                bool complete = true;
                Peer *p;

                snprintf(id.label, sizeof(id.label), "%s", sp->label);
                snprintf(id.vm_uuid, sizeof(id.vm_uuid), "%s", sp->vm_uuid);
                for (unsigned v = 0; v < r->vectors; v++) {
                        ev[v] = persist_take(reg->persist, "e/%s/%u/%u", sr->name, sp->index, v);
                        complete = complete && ev[v] >= 0;
                }
                if (!complete) {
                        log_warning("Peer %u of '%s' lost eventfds in the restart, dropping it", sp->index,
                                    sr->name);
                        fds_close(ev, r->vectors);
                        continue;
                }
                if (region_restore_peer(r, sp->index, sp->doorbell_id, &id, ev, &p) == 0) {
                        p->conn_id = sp->conn;
                        p->departures_told = sp->departures_told;
                        for (unsigned v = 0; v < r->vectors; v++)
                                persist_store(reg->persist, p->ev[v], "e/%s/%u/%u", r->name, p->index, v);
                }
        }
        if (r->memfd >= 0 && r->active != sr->active)
                region_resync(r);
        return 0;
}

int registry_restore(Registry *reg, const State *s) {
        reg->next_conn_id = s->next_conn_id;
        for (size_t i = 0; i < s->n_regions; i++) {
                int k = registry_restore_region(reg, s->regions[i]);

                if (k < 0)
                        return k;
        }
        return 0;
}

/* Peers nobody rebound (their connection did not come back) leave now, as if they had closed it. */
void registry_restore_finish(Registry *reg) {
        for (unsigned i = reg->n_regions; i-- > 0;) {
                Region *r = reg->regions[i];

                for (unsigned k = 0; k < r->max_peers; k++)
                        if (r->peers[k] && !r->peers[k]->ops) {
                                log_warning("Peer %u of '%s' has no connection after the restart, detaching it",
                                            k, r->name);
                                r->peers[k]->ops = &registry_orphan_ops;
                        }
        }
        /* One at a time: a detach may forget the region it was in. */
        for (bool found = true; found;) {
                found = false;
                for (unsigned i = 0; i < reg->n_regions && !found; i++) {
                        Region *r = reg->regions[i];

                        for (unsigned k = 0; k < r->max_peers && !found; k++)
                                if (r->peers[k] && r->peers[k]->ops == &registry_orphan_ops) {
                                        registry_detach(reg, r->peers[k]);
                                        found = true;
                                }
                }
        }
        for (unsigned i = reg->n_regions; i-- > 0;)
                registry_settle(reg, reg->regions[i]);
        persist_dirty(reg->persist);
}

int registry_set_rules(Registry *reg, const AccessRule *rules, size_t n) {
        AccessRule *copy = calloc(n ? n : 1, sizeof(*copy));

        if (!copy)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                copy[i] = rules[i];
                copy[i].client = strdup(rules[i].client);
                copy[i].glob = strdup(rules[i].glob);
                if (!copy[i].client || !copy[i].glob) {
                        rules_free(copy, i + 1);
                        return -ENOMEM;
                }
        }
        rules_free(reg->rules, reg->n_rules);
        reg->rules = copy;
        reg->n_rules = n;
        return 0;
}

/* Whether @rule's section names the peer @id. */
static bool rule_names(const AccessRule *rule, const PeerIdentity *id) {
        if (!rule->domain)
                return fnmatch(rule->client, id->label, 0) == 0;
        /* A host client chooses its label: only a VM can be a domain. */
        return id->kind == SHMEM_PEER_KIND_QEMU &&
               (fnmatch(rule->client, id->label, 0) == 0 || (id->vm_uuid[0] && !strcasecmp(rule->client, id->vm_uuid)));
}

static const char *rule_section(const AccessRule *rule) {
        return rule->domain ? "domain" : "client";
}

bool registry_rules_allow(Registry *reg, const PeerIdentity *id, const char *region, const char **ret_error) {
        const AccessRule *last = NULL;

        for (size_t i = 0; i < reg->n_rules; i++) {
                const AccessRule *rule = &reg->rules[i];

                if (rule->subst || !rule_names(rule, id))
                        continue;
                last = rule;
                if (fnmatch(rule->glob, region, 0) != 0)
                        continue;
                if (rule->allow)
                        return true;
                snprintf(reg->error_buf, sizeof(reg->error_buf), "denied by 'deny = %s' of [%s %s] (line %u)",
                         rule->glob, rule_section(rule), rule->client, rule->line);
                *ret_error = reg->error_buf;
                return false;
        }
        if (!last || !last->allow)
                return true;
        snprintf(reg->error_buf, sizeof(reg->error_buf),
                 "not allowed by [%s %s]: 'allow = %s' (line %u) implies a final 'deny *'", rule_section(last),
                 last->client, last->glob, last->line);
        *ret_error = reg->error_buf;
        return false;
}

bool registry_subst_name(Registry *reg, const PeerIdentity *id, const char *name, char ret[SHMEM_NAME_MAX + 1]) {
        const char *prefix = "";

        for (size_t i = 0; i < reg->n_rules; i++)
                if (reg->rules[i].subst && rule_names(&reg->rules[i], id)) {
                        prefix = reg->rules[i].glob;
                        break;
                }
        return snprintf(ret, SHMEM_NAME_MAX + 1, "%s%s", prefix, name) <= SHMEM_NAME_MAX;
}
