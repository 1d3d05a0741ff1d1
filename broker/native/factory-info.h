/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The native Factory request's reply (`shmemctl factory`, docs/factory.md):
 * the VMs connected to every plugin's guest factory (PluginOps.factory_vms),
 * each with its devices: its VMM's peers in every region, plugged or parked.
 * Built for one reply: its strings are the registry's and the plugins', valid
 * until the loop runs again.
 */

#include "msg.h"
#include "registry.h"

typedef struct FactoryInfo FactoryInfo;

/* Builds the reply of @reg's factories into *ret (its ->reply); 0 or -ENOMEM. */
int factory_info_new(FactoryInfo **ret, Registry *reg);
FactoryInfo *factory_info_free(FactoryInfo *f);
Shmem__FactoryReply *factory_info_reply(FactoryInfo *f);
