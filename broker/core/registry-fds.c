/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fd budget (registry-private.h): what the regions and their peers hold,
 * and plugins beside them (registry_hold_fds()), against Limits.max_fds, so
 * that a region, a peer or a plugin's connection the fd limit cannot hold is refused before it exists rather than failing with EMFILE half-way (its
 * copy for a restart or the state that names it not stored).
 */
#include <stdio.h>

#include "registry-private.h"

/* The fds @r holds now: its endpoints (one per plugin), its memfd, its peers' rows (parked ones too). */
static unsigned region_fds(const Registry *reg, const Region *r) {
        return reg->n_plugins + (r->memfd >= 0 ? 1 : 0) + r->n_peers * r->vectors;
}

void registry_charge_fds(Registry *reg, Region *r) {
        unsigned now = region_fds(reg, r);

        reg->fds = reg->fds - r->fds + now;
        r->fds = now;
}

void registry_uncharge_fds(Registry *reg, Region *r) {
        reg->fds -= r->fds;
        r->fds = 0;
}

void registry_charge_all_fds(Registry *reg) {
        for (size_t i = 0; i < reg->n_regions; i++)
                registry_charge_fds(reg, reg->regions[i]);
}

const char *registry_fds_refuse(Registry *reg, unsigned need) {
        if (reg->limits.max_fds == 0 || reg->fds + need <= reg->limits.max_fds)
                return NULL;
        snprintf(reg->error_buf, sizeof(reg->error_buf),
                 /* Whole in a factory answer's detail (SHMEM_FACTORY_DETAIL_MAX): at most 190 characters. */
                 "the broker's file descriptor limit is reached: %llu of the %u fds left to regions, peers and "
                 "devices are held, %u more needed (raise LimitNOFILE=; see the start-up log)",
                 (unsigned long long) reg->fds, reg->limits.max_fds, need);
        return reg->error_buf;
}

int registry_hold_fds(Registry *reg, unsigned n, unsigned more, const char **ret_error) {
        if (ret_error && (*ret_error = registry_fds_refuse(reg, n + more)))
                return CORE_E_LIMIT;
        reg->fds += n;
        return 0;
}

void registry_release_fds(Registry *reg, unsigned n) {
        reg->fds -= n <= reg->fds ? n : reg->fds;
}
