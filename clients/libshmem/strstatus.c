/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmem_strstatus(), built into both libshmem and libshmem-guest. The wire's
 * statuses have their text in proto/status.c; the factory's (shmem.h, 13 on)
 * are not on the native wire and have theirs here.
 */
#include <string.h>

#include "shmem.h"
#include "status.h"

__attribute__((visibility("default"))) const char *shmem_strstatus(int status) {
        const char *s;

        switch (status) {
        case SHMEM_STATUS_NO_SLOT:
                return "no free hot-pluggable slot for the region's device";
        case SHMEM_STATUS_HOTPLUG:
                return "the region's device could not be plugged";
        case SHMEM_STATUS_UNSAFE:
                return "serving the region could crash the VM's QEMU";
        default:
                break;
        }
        if (status >= 0)
                return status_text(status);
        s = strerrordesc_np(-status);
        return s ? s : "unknown error";
}
