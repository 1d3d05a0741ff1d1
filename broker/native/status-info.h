/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The native BrokerStatus request's reply (`shmemctl status`): the limits in
 * force and what is used of them, in total and per holder (a user's "uid:N",
 * a VM's "vm:..."; peer_identity_holder()), with what the daemon says of
 * itself (NativeFacts). The registry knows regions, bytes, peers and fds;
 * the front ends' table the connections. A caller who is not an
 * administrator (policy_is_admin()) sees the totals and its own uid's row
 * only: what other users hold is theirs, as `ps` would not show it either.
 * Built for one reply: its strings are the registry's, valid until the loop
 * runs again.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend.h"
#include "msg.h"
#include "registry.h"

/* What only the daemon knows (broker.c fills it; the fuzzer leaves it empty). */
typedef struct NativeFacts {
        const char *version;
        uint64_t started_usec;            /* CLOCK_REALTIME at the start of this image */
        uint64_t uptime_usec;
        const char *const *config_files;  /* read, in order */
        size_t n_config_files;
        bool managed;                     /* a service manager listens */
        size_t stored_fds;
        unsigned fd_store_max;            /* $FDSTORE, 0: not said */
        Frontends *frontends;             /* connections; NULL: none counted */
} NativeFacts;

typedef struct StatusInfo StatusInfo;

/* Builds the reply for the caller @caller; 0 or -ENOMEM. */
int status_info_new(StatusInfo **ret, Registry *reg, const PeerIdentity *caller, const NativeFacts *facts);
StatusInfo *status_info_free(StatusInfo *s);
Shmem__BrokerStatusReply *status_info_reply(StatusInfo *s);
