/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <endian.h>

#include "ivshmem-wire.h"

int ivshmem_msg_new(FdMsg **ret, int64_t value, int fd) {
        uint64_t le = htole64((uint64_t) value);

        return fdmsg_new(ret, &le, sizeof(le), &fd, fd >= 0 ? 1 : 0);
}
