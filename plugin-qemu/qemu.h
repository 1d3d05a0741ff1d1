/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * plugin-qemu: QEMU's ivshmem chardev server protocol, one listening socket
 * per region at <rundir>/qemu/<name>.sock, so stock
 *   -chardev socket,path=...,id=X -device ivshmem-doorbell,chardev=X,vectors=N
 * and libvirt <shmem> attach to broker regions unmodified.
 *
 * A QEMU client is attached to the region as a peer the moment it connects
 * (QEMU blocks its device realize reading the handshake, so it is answered at
 * once). It is refused only by a version other than 0 (1000 + shmem.Status),
 * which makes QEMU fail cleanly; closing its socket mid-handshake would hang
 * QEMU for ever (docs/protocol.md).
 */

#include "plugins.h"

#define IVSHMEM_REFUSE_VERSION_BASE 1000

typedef struct QemuSettings {
        unsigned socket_mode; /* 0660 by default */
        gid_t socket_gid;     /* (gid_t) -1: leave the broker's group */
        /* Where libvirt keeps its QEMU pid files (NAME.pid), to confirm that a
         * VM is the libvirt domain it names; "" disables the check. */
        char libvirt_run_dir[OPTION_PATH_MAX];
        /* The guest factory (factory.h): the helper that plugs devices into
         * running VMs, and how long one plug may take. */
        char hotplug_helper[OPTION_PATH_MAX];
        unsigned hotplug_timeout_ms;
        /* The libvirt the helper plugs libvirt domains' devices through (their
         * monitor is libvirtd's): the one whose pid files libvirt_run_dir has. */
        char libvirt_uri[OPTION_PATH_MAX];
        /* What a libvirt q35 domain's root port window holds (the helper's
         * --port-window): 2 MiB, unless its guest kernel enlarges them. */
        uint64_t libvirt_port_window;
} QemuSettings;

extern const PluginModule qemu_plugin_module;
