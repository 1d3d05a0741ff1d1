/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>

#include "ivshmem-wire.h"
#include "qemu-wire.h"

int qemu_wire_send(FrontConn *c, int64_t value, int fd) {
        FdMsg *m;
        int dup_fd = -1, r;

        if (fd >= 0) {
                dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                if (dup_fd < 0) {
                        r = -errno;
                        conn_break(&c->conn, r);
                        return r;
                }
        }
        r = ivshmem_msg_new(&m, value, dup_fd);
        if (r < 0) {
                conn_break(&c->conn, r);
                return r;
        }
        return conn_queue(&c->conn, m);
}
