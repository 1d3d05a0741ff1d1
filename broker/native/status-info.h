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
        const char *upgrade_failed;       /* why the last upgrade accepted did not happen; NULL or "": none failed */
} NativeFacts;

typedef struct StatusInfo StatusInfo;

/* status_info_new()'s own conditions: no reply built, the error text says which. */
enum {
        STATUS_INFO_UNPAGED = 1, /* limit 0 (a client before paging): the holders do not fit in one message */
        STATUS_INFO_TOO_BIG,     /* the reply without holders (its configuration files) is more than a message */
};

/*
 * Builds the reply for the caller @caller with one page (reply-page.h) of
 * its holders: those after the holder @after, at most @limit (0: all, or
 * STATUS_INFO_UNPAGED). Returns 0, -ENOMEM, or a STATUS_INFO_* with @error
 * filled.
 */
int status_info_new(StatusInfo **ret, Registry *reg, const PeerIdentity *caller, const NativeFacts *facts,
                    uint32_t limit, const char *after, char *error, size_t size);
StatusInfo *status_info_free(StatusInfo *s);
Shmem__BrokerStatusReply *status_info_reply(StatusInfo *s);
