/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Policy: who may attach to what, apart from the limits. Access rules per VM
 * or client with QNX vdev-shmem semantics: the rules of every [client NAME]
 * or [domain NAME] section whose NAME (a glob) matches the peer's name (for
 * [domain], a QEMU peer's name or UUID), in file order; the first whose glob
 * matches the region name decides; if none does, the last rule's kind
 * decides the opposite ("allow" implies a final "deny *", "deny" a final
 * "allow *"). No rule: allowed. Rules see the region name as the peer uses
 * it, before its subst prefix (broker.conf(5)).
 *
 * Host peers are also held to the region's owner/group/mode
 * (region_may_attach()); administrators are root and the broker's own user.
 */

#include <stdbool.h>
#include <stddef.h>

#include "identity.h"
#include "region-layout.h"

typedef struct AccessRule {
        const char *client; /* glob on the VM's -name or the client's label */
        const char *glob;   /* on the region name; for subst, the prefix */
        bool allow;
        bool subst;         /* QNX subst: the names this peer uses get the prefix glob */
        bool domain;        /* [domain NAME]: QEMU peers only; NAME also matches the VM's UUID */
        unsigned line;      /* for the log: which rule refused whom */
} AccessRule;

typedef struct Policy {
        AccessRule *rules; /* owned copies */
        size_t n_rules;
        char error_buf[256]; /* for *ret_error texts; valid until the next call */
} Policy;

void policy_done(Policy *p);

/* Replaces the rules with copies of @rules; 0 or -ENOMEM (then the old ones stay). */
int policy_set_rules(Policy *p, const AccessRule *rules, size_t n);

/*
 * Whether the peer @id may attach to the region it calls @name by the rules;
 * on a refusal, @ret_error says which rule.
 */
bool policy_rules_allow(Policy *p, const PeerIdentity *id, const char *name, const char **ret_error);

/*
 * policy_subst_name() - the region name a peer means by @name: with a
 * "subst = PREFIX" for it, PREFIX + @name (QNX vdev-shmem's namespacing).
 * Returns false if the result does not fit a name.
 */
bool policy_subst_name(Policy *p, const PeerIdentity *id, const char *name, char ret[SHMEM_NAME_MAX + 1]);

/* Whether a subst prefix applies to @id (for the reason of a refused name). */
bool policy_has_subst(Policy *p, const PeerIdentity *id);

/* Root, or the broker's own user: exempt from per-user limits, may administer. */
bool policy_is_admin(const PeerIdentity *id);
