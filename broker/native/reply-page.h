/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * One page of a listing reply (List, Factory; docs/protocol.md, "Listing in
 * pages"): as many items as the request's limit allows and one message
 * (SHMEM_MSG_MAX) holds. The caller packs each item, asks whether it still
 * goes in, and stops at the first that does not: a page is a prefix, so the
 * cursor can be the last item sent and the broker keeps nothing between pages.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes a Message{serial, reply{status, body{items, next, flags}}} holds besides its items. */
#define REPLY_PAGE_FRAME_BYTES 64

typedef struct ReplyPage {
        size_t room;  /* items it may still take: the request's limit, or what the caller has */
        size_t bytes; /* of the items taken, as they are packed in the reply */
        size_t n;     /* items taken */
} ReplyPage;

/* A page of at most @limit items (0: no limit, as a client from before paging asks), and @max. */
void reply_page_init(ReplyPage *p, uint32_t limit, size_t max);

/* Counts @size bytes the reply holds besides its items (BrokerStatus's limits and files). */
void reply_page_reserve(ReplyPage *p, size_t size);

/*
 * reply_page_take() - whether an item that packs into @size bytes goes in
 * (then it is counted). False once the limit is reached or the item would
 * make the message larger than SHMEM_MSG_MAX; for the first item only when
 * it alone is larger (the caller says why it cannot be sent).
 */
bool reply_page_take(ReplyPage *p, size_t size);
