/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* shmem_version(), built into both libshmem and libshmem-guest. */
#include "shmem.h"

__attribute__((visibility("default"))) const char *shmem_version(void) {
        return SHMEM_VERSION;
}
