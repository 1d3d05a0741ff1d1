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

/* Takes @d's geometry now if @r has no memory (and so no peer that knows it), else once it is freed. */
static void registry_redeclare(Registry *reg, Region *r, const RegionDecl *d) {
        unsigned max_peers = d->max_peers ? d->max_peers : reg->limits.default_max_peers;
        uint64_t data_size, region_size;

        r->declared = true;
        r->from_config = true;
        r->persistent = d->persistent;
        if (registry_set_access(r, d) < 0)
                log_error("Region '%s': out of memory for its pins, keeping none", r->name);
        if (r->memfd < 0 && d->backend && region_set_backend(r, d->backend) < 0)
                log_error("Region '%s': cannot use backend '%s', keeping '%s'", r->name, d->backend, r->backend);
        r->declared_data_size = 0;
        r->declared_max_peers = 0;
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
                (void) region_set_backend(r, r->backend);
        } else if (data_size != r->data_size || max_peers != r->max_peers) {
                r->declared_data_size = data_size != r->data_size ? d->size : 0;
                r->declared_max_peers = max_peers != r->max_peers ? max_peers : 0;
                log_notice("Region '%s' is in use with %" PRIu64 " bytes and %u peers: the declared %" PRIu64
                           " bytes and %u peers apply once its memory is freed",
                           r->name, r->data_size, r->max_peers, data_size, max_peers);
        }
}

/* Whether the rules admit @id to @r: on the name the peer uses, without its subst prefix. */
static bool registry_rules_admit(Registry *reg, const Region *r, const PeerIdentity *id, const char **ret_error) {
        char prefixed[SHMEM_NAME_MAX + 1];
        const char *name = r->name;
        size_t n;

        /* The prefix is what policy_subst_name() puts before an empty name. */
        if (policy_subst_name(&reg->policy, id, "", prefixed) && (n = strlen(prefixed)) > 0 &&
            strncmp(r->name, prefixed, n) == 0)
                name = r->name + n;
        return policy_rules_allow(&reg->policy, id, name, ret_error);
}

/*
 * Cuts @r if a peer of it is one the region's access or the rules no longer
 * admit (registry_reconfigure()); returns whether it did.
 */
static bool registry_cut_if_refused(Registry *reg, Region *r) {
        char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)];
        const PeerIdentity *id = NULL;
        const char *why = NULL;
        unsigned index = 0;

        for (unsigned i = 0; i < r->max_peers && !why; i++) {
                const char *error = NULL;

                if (!r->peers[i])
                        continue;
                id = &r->peers[i]->id;
                index = i;
                why = registry_mode_refuses(reg, r, id);
                if (!why && !registry_rules_admit(reg, r, id, &error))
                        why = error ? error : "refused by the rules";
        }
        if (!why)
                return false;
        log_warning("Region '%s': the new configuration refuses its peer %u '%s' (pid %d, uid %u): %s; "
                    "evicting all %u peers and releasing its memory, which that peer may still map",
                    r->name, index, str_escape(label, sizeof(label), id->label), (int) id->pid,
                    (unsigned) id->uid, why, r->n_peers);
        registry_evict_all(reg, r);
        if (r->memfd >= 0) {
                registry_release_memory(reg, r);
                registry_apply_declared(r);
                NOTIFY(reg, region, r, REGION_FREED);
        }
        return true;
}

int registry_reconfigure(Registry *reg, const Limits *limits, const AccessRule *rules, size_t n_rules,
                         const RegionDecl *decls, size_t n) {
        unsigned failed = 0;
        int k;

        k = policy_set_rules(&reg->policy, rules, n_rules);
        if (k < 0)
                return k;
        reg->limits = *limits;

        /* Backwards: forgetting a region moves the later ones. */
        for (size_t i = reg->n_regions; i-- > 0;) {
                Region *r = reg->regions[i];
                bool kept = false;

                if (!r->from_config)
                        continue;
                for (size_t d = 0; d < n && !kept; d++)
                        kept = strcmp(decls[d].name, r->name) == 0;
                if (kept)
                        continue;
                log_info("Region '%s' is no longer configured%s", r->name,
                         r->n_peers > 0 ? ": it goes when its last peer leaves" : "");
                r->from_config = r->declared = r->persistent = false;
                registry_settle(reg, r);
        }

        for (size_t d = 0; d < n; d++) {
                const RegionDecl *decl = &decls[d];
                Region *r = registry_find(reg, decl->name);
                const char *error = NULL;
                int st;

                if (r) {
                        registry_redeclare(reg, r, decl);
                        st = r->persistent ? registry_allocate(reg, r, &error) : 0;
                        if (st == 0)
                                registry_settle(reg, r);
                } else
                        st = registry_declare(reg, decl, &r, &error);
                if (st != 0) {
                        log_error("Cannot apply region '%s': %s%s%s", decl->name,
                                  st > 0 ? core_error_name(st) : strerror(-st), error ? ": " : "",
                                  error ? error : "");
                        failed++;
                } else if (r)
                        r->from_config = true;
        }

        /* The rules and declarations in force: who is attached must be admitted by them. */
        for (size_t i = reg->n_regions; i-- > 0;) {
                Region *r = reg->regions[i];

                if (r->n_peers > 0 && registry_cut_if_refused(reg, r) && r->persistent) {
                        const char *error = NULL;

                        if (registry_allocate(reg, r, &error) != 0)
                                log_error("Region '%s': cannot allocate its memory again: %s", r->name, error);
                }
        }
        for (size_t i = reg->n_regions; i-- > 0;)
                if (reg->regions[i]->n_peers == 0)
                        registry_settle(reg, reg->regions[i]);
        registry_changed(reg, NULL);
        return (int) failed;
}
