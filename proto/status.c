/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stddef.h>

#include "status.h"

const char *status_text(int status) {
        /* Indexed by the wire's shmem.Status numbers (QNX's 0..6 first). */
        static const char *const table[] = {
                [0] = "ok",
                [1] = "unknown failure",
                [2] = "out of memory",
                [3] = "region has no free peer index",
                [4] = "illegal region name",
                [5] = "permission denied",
                [6] = "region does not exist",
                [7] = "region exists",
                [8] = "invalid region size",
                [9] = "limit reached",
                [10] = "bad request",
                [11] = "protocol version not supported",
                [12] = "region is in use",
        };

        if (status >= 0 && (size_t) status < sizeof(table) / sizeof(table[0]) && table[status])
                return table[status];
        return "unknown status";
}
