/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * `shmem-hotplug libvirt ...`: the region's <shmem> device into a running
 * libvirt domain through the libvirt API (hotplug-libvirt.c). @argv[1] is
 * "libvirt"; returns the exit status, the answer line printed.
 */
int hotplug_libvirt_main(int argc, char **argv);
