/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A region as List and Inspect describe it (shmem.RegionInfo): filled into
 * buffers the caller owns, pointing at the registry's strings, valid until
 * the loop runs again.
 */

#include "msg.h"
#include "registry.h"

/* One region's RegionInfo and what it points to. */
typedef struct InfoBuf {
        Shmem__RegionInfo info;
        Shmem__Creator creator;
        char socket[256];
} InfoBuf;

/* Inspect's: every attached peer. */
typedef struct PeersBuf {
        Shmem__PeerState states[SHMEM_PEERS_MAX];
        Shmem__PeerState *state_ptrs[SHMEM_PEERS_MAX];
} PeersBuf;

/* @r's RegionInfo, without its peers, into @b. */
void region_info_fill(InfoBuf *b, Registry *reg, Region *r);
/* Inspect's: every attached peer of @r with its pending word as found on the control page. */
void region_peers_fill(Shmem__RegionInfo *info, PeersBuf *b, Region *r);
