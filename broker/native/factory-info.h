/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The native Factory request's reply (`shmemctl factory`, docs/factory.md):
 * the VMs connected to every plugin's guest factory (PluginOps.factory_vms),
 * each with its devices: its VMM's peers in every region, plugged or parked.
 * One page of them (reply-page.h) by connection id, after a cursor that is
 * the last VM sent. A caller who is not an administrator (policy_is_admin())
 * sees the VMs whose VMM runs as its own uid only: another user's VM, its
 * monitor socket and what it is attaching are that user's (docs/security.md).
 * Built for one reply: its strings are the registry's and the plugins', valid
 * until the loop runs again.
 */

#include "msg.h"
#include "registry.h"

/* factory_info_new()'s own conditions: no reply built, the error text says which. */
enum {
        FACTORY_INFO_UNPAGED = 1, /* limit 0 (a client before paging): the VMs do not fit in one message */
        FACTORY_INFO_VM_TOO_BIG,  /* the next VM alone is more than one message */
};

/*
 * Builds the page for @caller of the VMs after connection @after, at most
 * @limit (0: all, or FACTORY_INFO_UNPAGED), into *ret (its ->reply).
 * Returns 0, -ENOMEM, or a FACTORY_INFO_* with @error filled.
 */
typedef struct FactoryInfo FactoryInfo;
int factory_info_new(FactoryInfo **ret, Registry *reg, const PeerIdentity *caller, uint32_t limit, uint64_t after,
                     char *error, size_t size);
FactoryInfo *factory_info_free(FactoryInfo *f);
Shmem__FactoryReply *factory_info_reply(FactoryInfo *f);
