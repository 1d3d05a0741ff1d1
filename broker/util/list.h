/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Intrusive doubly-linked lists (systemd's LIST_* shape): an object that is
 * on a list has `prev` and `next` fields of its own type; the list is a head
 * pointer. O(1) prepend and remove, no allocation.
 */

#define LIST_PREPEND(head, item)                                 \
        do {                                                     \
                (item)->prev = NULL;                             \
                (item)->next = (head);                           \
                if (head)                                        \
                        (head)->prev = (item);                   \
                (head) = (item);                                 \
        } while (0)

#define LIST_REMOVE(head, item)                                  \
        do {                                                     \
                if ((item)->prev)                                \
                        (item)->prev->next = (item)->next;       \
                else                                             \
                        (head) = (item)->next;                   \
                if ((item)->next)                                \
                        (item)->next->prev = (item)->prev;       \
                (item)->prev = (item)->next = NULL;              \
        } while (0)
