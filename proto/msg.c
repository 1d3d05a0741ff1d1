/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>

#include "escape.h"
#include "msg.h"

#define MSG_DEPTH_MAX 16 /* nesting of shmem.proto is 4 deep; anything deeper is not ours */

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *ret) {
        uint64_t v = 0;

        for (unsigned shift = 0; shift < 64; shift += 7) {
                if (*p >= end)
                        return -EBADMSG;
                v |= (uint64_t) (**p & 0x7f) << shift;
                if (!(*(*p)++ & 0x80)) {
                        *ret = v;
                        return 0;
                }
        }
        return -EBADMSG;
}

/*
 * Walks the wire encoding of a message of @desc: 0 if every string field
 * (nested ones too) is UTF-8 without NUL bytes, MSG_E_BAD_STRING if one is
 * not, -EBADMSG if the encoding is malformed. protobuf-c gives strings to C
 * as NUL-terminated copies, so "a\0b" would arrive as "a": decided here, on
 * the bytes, before anyone acts on a shortened text.
 */
static int msg_check_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *p, const uint8_t *end,
                             unsigned depth) {
        int bad = 0;

        if (depth > MSG_DEPTH_MAX)
                return -EBADMSG;
        while (p < end) {
                const ProtobufCFieldDescriptor *f;
                uint64_t key, len;
                int r;

                r = read_varint(&p, end, &key);
                if (r < 0)
                        return r;
                switch (key & 7) {
                case 0: /* varint */
                        r = read_varint(&p, end, &len);
                        if (r < 0)
                                return r;
                        continue;
                case 1: /* 64-bit */
                        if (end - p < 8)
                                return -EBADMSG;
                        p += 8;
                        continue;
                case 5: /* 32-bit */
                        if (end - p < 4)
                                return -EBADMSG;
                        p += 4;
                        continue;
                case 2: /* length-delimited */
                        r = read_varint(&p, end, &len);
                        if (r < 0 || len > (uint64_t) (end - p))
                                return -EBADMSG;
                        break;
                default: /* groups, and no wire type at all */
                        return -EBADMSG;
                }
                f = key >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(desc, (unsigned) (key >> 3))
                                           : NULL;
                if (f && f->type == PROTOBUF_C_TYPE_STRING && !str_is_utf8((const char *) p, (size_t) len))
                        bad = MSG_E_BAD_STRING;
                else if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                        r = msg_check_strings(f->descriptor, p, p + len, depth + 1);
                        if (r < 0)
                                return r;
                        if (r > 0)
                                bad = r;
                }
                p += len;
        }
        return bad;
}

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

int msg_encode_borrowed(FdMsg **ret, const Message *m, const int *fds, size_t n_fds) {
        size_t n = shmem__message__get_packed_size(m);
        _cleanup_free_ uint8_t *buf = NULL;

        if (n > SHMEM_MSG_MAX || n_fds > SHMEM_MSG_FDS_MAX)
                return -EMSGSIZE;
        buf = malloc(n ? n : 1);
        if (!buf)
                return -ENOMEM;
        shmem__message__pack(m, buf);
        return fdmsg_new_borrowed(ret, buf, n, fds, n_fds);
}

int msg_decode(Message **ret, const FdMsg *in) {
        Message *m;
        int r;

        if (in->n_bytes > SHMEM_MSG_MAX)
                return -EBADMSG;
        r = msg_check_strings(&shmem__message__descriptor, in->bytes, in->bytes + in->n_bytes, 0);
        if (r < 0)
                return r;
        m = shmem__message__unpack(NULL, in->n_bytes, in->bytes);
        if (!m)
                return -EBADMSG;
        *ret = m;
        return r;
}

Message *msg_free(Message *m) {
        if (m)
                shmem__message__free_unpacked(m, NULL);
        return NULL;
}
