/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>

#include "msg.h"

int msg_encode(FdMsg **ret, const Message *m, int *fds, size_t n_fds) {
        size_t n = shmem__message__get_packed_size(m);
        _cleanup_free_ uint8_t *buf = NULL;

        if (n > SHMEM_MSG_MAX || n_fds > SHMEM_MSG_FDS_MAX) {
                fds_close(fds, n_fds);
                return -EMSGSIZE;
        }
        buf = malloc(n ? n : 1);
        if (!buf) {
                fds_close(fds, n_fds);
                return -ENOMEM;
        }
        shmem__message__pack(m, buf);
        return fdmsg_new(ret, buf, n, fds, n_fds);
}

int msg_decode(Message **ret, const FdMsg *in) {
        Message *m;

        if (in->n_bytes > SHMEM_MSG_MAX)
                return -EBADMSG;
        m = shmem__message__unpack(NULL, in->n_bytes, in->bytes);
        if (!m)
                return -EBADMSG;
        *ret = m;
        return 0;
}

Message *msg_free(Message *m) {
        if (m)
                shmem__message__free_unpacked(m, NULL);
        return NULL;
}
