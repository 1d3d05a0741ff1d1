/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The guest factory: a VM's factory device is an ivshmem-doorbell connected
 * to <rundir>/qemu/factory.sock, whose 4 KiB page (proto/factory-page.h) that
 * VM and the broker alone share. A program in the guest asks for a region
 * there; the broker applies the VM's rules and limits (registry_prepare()),
 * plugs an ivshmem-doorbell for the region into the running VM through a
 * helper process (shmem-hotplug: the loop never waits on QEMU), and answers
 * when the VM's QEMU has attached. A detach parks the VM's peer: QEMU 7.2
 * cannot safely lose the device (docs/factory.md).
 */

#include <stdbool.h>
#include <sys/types.h>

#include "plugins.h"
#include "qemu.h"

typedef struct Factory Factory;

/* Listens on @dir/factory.sock (taken back from the Keeper after a restart). */
int factory_new(Factory **ret, const PluginContext *ctx, const QemuSettings *settings, const char *dir);
/* Closes every factory connection and the socket; helpers in flight are killed. */
Factory *factory_free(Factory *f);

/* Whether the QEMU of @pid is being given a device for region @name: its attach comes prepared. */
bool factory_expects(Factory *f, pid_t pid, const char *name);

/*
 * Across restarts and upgrades (factory-state.c): each VM's factory device is
 * stored with its connection (its FrontConnOps.dump: counts, the request in
 * flight); factory_restore() rebuilds them from a restored state, their fds taken
 * back through the Keeper, before registry_adopt_finish() (a request in flight
 * holds its region again).
 */
void factory_restore(Factory *f, const State *st);

/* @fn for each VM connected (PluginOps.factory_vms: `shmemctl factory`). */
void factory_foreach_vm(Factory *f, PluginFactoryFn fn, void *userdata);
