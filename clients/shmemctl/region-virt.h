/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* region-virt: a region's libvirt device (region-virt.c). Exit codes and Args: common.h. */

#include "common.h"

/* xml (@domain NULL) prints the <shmem> device of region @name; attach adds it to @domain. */
int cmd_virt(Client *c, const char *path, const Args *a, const char *cmd, const char *domain,
             const char *name);

/*
 * Removes region @name's device from @domain through libvirt alone (the
 * device names its region), asking the broker first whether QEMU would
 * survive the unplug (virt.h, VirtGuard).
 */
int cmd_detach(const Args *a, const char *domain, const char *name);
