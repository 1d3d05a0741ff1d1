/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* shmem_strstatus(), built into both libshmem and libshmem-guest. */
#include <string.h>

#include "shmem.h"
#include "status.h"

__attribute__((visibility("default"))) const char *shmem_strstatus(int status) {
        const char *s;

        if (status >= 0)
                return status_text(status);
        s = strerrordesc_np(-status);
        return s ? s : "unknown error";
}
