/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "msg.h"
#include "reply-page.h"

void reply_page_init(ReplyPage *p, uint32_t limit, size_t max) {
        *p = (ReplyPage) { .room = limit > 0 && limit < max ? limit : max };
}

void reply_page_reserve(ReplyPage *p, size_t size) {
        p->bytes += size;
}

/* A repeated field's element: its tag (field numbers under 16: one byte), its length, its bytes. */
static size_t packed_element(size_t size) {
        size_t n = 1 + size;

        do
                n++;
        while (size >>= 7);
        return n;
}

bool reply_page_take(ReplyPage *p, size_t size) {
        size_t n = packed_element(size);

        if (p->n >= p->room || p->bytes + n > SHMEM_MSG_MAX - REPLY_PAGE_FRAME_BYTES)
                return false;
        p->bytes += n;
        p->n++;
        return true;
}
