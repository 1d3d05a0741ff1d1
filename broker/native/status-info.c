/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"
#include "policy.h"
#include "region.h"
#include "reply-page.h"
#include "status-info.h"

/* One holder's row with its key. */
typedef struct Row {
        Shmem__StatusUse use;
        char holder[PEER_HOLDER_MAX];
} Row;

struct StatusInfo {
        Shmem__BrokerStatusReply reply;
        Shmem__StatusLimits limits;
        Shmem__StatusUse total;
        Map *by_holder; /* holder -> Row */
        Row **rows;
        size_t n_rows, n_alloc;
        Shmem__StatusUse **uses; /* the reply's: rows[i]->use */
        bool all;
        char mine[PEER_HOLDER_MAX];
};

StatusInfo *status_info_free(StatusInfo *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n_rows; i++)
                free(s->rows[i]);
        free(s->rows);
        free(s->uses);
        map_free(s->by_holder);
        free(s);
        return NULL;
}

/* The row of @holder, made if the caller may see it; NULL if not (*@error: -ENOMEM). */
static Row *row_of(StatusInfo *s, const char *holder, int *error) {
        Row *r = map_get(s->by_holder, holder);
        unsigned uid;
        char end;

        if (r || (!s->all && strcmp(holder, s->mine) != 0))
                return r;
        if (s->n_rows == s->n_alloc) {
                size_t n = s->n_alloc ? s->n_alloc * 2 : 16;
                Row **v = realloc(s->rows, n * sizeof(*v));

                if (!v)
                        goto oom;
                s->rows = v;
                s->n_alloc = n;
        }
        r = calloc(1, sizeof(*r));
        if (!r)
                goto oom;
        shmem__status_use__init(&r->use);
        snprintf(r->holder, sizeof(r->holder), "%s", holder);
        r->use.holder = r->holder;
        if (sscanf(holder, "uid:%u%c", &uid, &end) == 1) {
                r->use.is_uid = true;
                r->use.uid = uid;
                r->use.exempt = policy_is_admin(&(PeerIdentity) { .kind = SHMEM_PEER_KIND_HOST, .uid = uid });
        }
        if (map_put(s->by_holder, r->holder, r) < 0) {
                free(r);
                goto oom;
        }
        s->rows[s->n_rows++] = r;
        return r;
oom:
        *error = -ENOMEM;
        return NULL;
}

static void limits_fill(Shmem__StatusLimits *o, const Limits *l) {
        shmem__status_limits__init(o);
        o->max_regions = l->max_regions;
        o->max_regions_per_uid = l->max_regions_per_uid;
        o->max_total_bytes = l->max_total_bytes;
        o->max_bytes_per_uid = l->max_bytes_per_uid;
        o->max_region_bytes = l->max_region_bytes;
        o->default_max_peers = l->default_max_peers;
        o->max_peers_per_uid = l->max_peers_per_uid;
        o->max_fds = l->max_fds;
        o->max_connections = l->max_connections;
        o->max_connections_per_uid = l->max_connections_per_uid;
        o->max_connections_per_vm = l->max_connections_per_vm;
        o->admin_reserve = l->admin_reserve;
        o->hello_timeout_ms = l->hello_timeout_ms;
        o->max_queued_bytes = l->max_queued_bytes;
        o->max_total_queued_bytes = l->max_total_queued_bytes;
        o->max_total_queued_fds = l->max_total_queued_fds;
}

/* The registry's accounts and peers, the front ends' connections, into the rows. */
static int rows_fill(StatusInfo *s, Registry *reg, Frontends *t) {
        char holder[PEER_HOLDER_MAX];
        const char *key;
        unsigned n;
        int error = 0;
        void *v;
        Row *r;

        /* The caller's own row, even when it holds nothing: its limits apply to it. */
        (void) row_of(s, s->mine, &error);
        for (size_t i = 0; map_next(reg->accounts, &i, &v);)
                if ((r = row_of(s, ((const Account *) v)->key, &error))) {
                        r->use.regions = ((const Account *) v)->regions;
                        r->use.bytes = ((const Account *) v)->bytes;
                }
        for (size_t i = 0; i < reg->n_regions; i++)
                for (unsigned k = 0; k < reg->regions[i]->max_peers; k++) {
                        const Peer *p = reg->regions[i]->peers[k];

                        if (p && (r = row_of(s, peer_identity_holder(&p->id, holder), &error)))
                                r->use.peers++;
                }
        for (size_t i = 0; t && frontends_next_holder(t, &i, &key, &n);)
                if ((r = row_of(s, key, &error)))
                        r->use.connections = n;
        return error;
}

/* Users by uid, then VMs by key. */
static int use_compare(const Shmem__StatusUse *x, const Shmem__StatusUse *y) {
        if (x->is_uid != y->is_uid)
                return x->is_uid ? -1 : 1;
        if (x->is_uid)
                return x->uid < y->uid ? -1 : x->uid > y->uid;
        return strcmp(x->holder, y->holder);
}

static int row_compare(const void *a, const void *b) {
        return use_compare(&(*(Row *const *) a)->use, &(*(Row *const *) b)->use);
}

/* The first row after the holder @after (a page's cursor: it may be gone meanwhile). */
static size_t rows_first_after(StatusInfo *s, const char *after) {
        Shmem__StatusUse key = SHMEM__STATUS_USE__INIT;
        size_t lo = 0, hi = s->n_rows;
        unsigned uid;
        char end;

        if (!after || !after[0])
                return 0;
        key.holder = (char *) after;
        if (sscanf(after, "uid:%u%c", &uid, &end) == 1) {
                key.is_uid = true;
                key.uid = uid;
        }
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (use_compare(&s->rows[mid]->use, &key) <= 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* The page of holders after @after into s->reply; 0 or a STATUS_INFO_*. */
static int status_info_page(StatusInfo *s, uint32_t limit, const char *after, char *error, size_t size) {
        Shmem__BrokerStatusReply *o = &s->reply;
        size_t first = rows_first_after(s, after), left = s->n_rows - first;
        size_t base = shmem__broker_status_reply__get_packed_size(o) + 2 + PEER_HOLDER_MAX; /* and its next */
        ReplyPage page;

        reply_page_init(&page, limit, left);
        reply_page_reserve(&page, base);
        while (page.n < page.room &&
               reply_page_take(&page, shmem__status_use__get_packed_size(&s->rows[first + page.n]->use)))
                ;
        if (page.n < left) {
                if (page.n == 0) {
                        snprintf(error, size,
                                 "the broker's status is %zu bytes without its holders, more than one message holds",
                                 base);
                        return STATUS_INFO_TOO_BIG;
                }
                if (limit == 0) {
                        snprintf(error, size,
                                 "%zu holders do not fit in one message: ask in pages (BrokerStatus.limit)",
                                 s->n_rows);
                        return STATUS_INFO_UNPAGED;
                }
                o->next = s->rows[first + page.n - 1]->holder;
        }
        o->holders = s->uses + first;
        o->n_holders = page.n;
        return 0;
}

int status_info_new(StatusInfo **ret, Registry *reg, const PeerIdentity *caller, const NativeFacts *facts,
                    uint32_t limit, const char *after, char *error, size_t size) {
        StatusInfo *s = calloc(1, sizeof(*s));
        Shmem__BrokerStatusReply *o;
        int r;

        if (!s || map_new(&s->by_holder, MAP_KEY_STRING) < 0) {
                status_info_free(s);
                return -ENOMEM;
        }
        s->all = policy_is_admin(caller);
        /* The caller's uid, whatever its kind: a QEMU does not ask Status. */
        snprintf(s->mine, sizeof(s->mine), "uid:%u", (unsigned) caller->uid);
        r = rows_fill(s, reg, facts->frontends);
        if (r < 0) {
                status_info_free(s);
                return r;
        }
        qsort(s->rows, s->n_rows, sizeof(*s->rows), row_compare);
        s->uses = calloc(s->n_rows + 1, sizeof(*s->uses));
        if (!s->uses) {
                status_info_free(s);
                return -ENOMEM;
        }
        for (size_t i = 0; i < s->n_rows; i++)
                s->uses[i] = &s->rows[i]->use;

        shmem__status_use__init(&s->total);
        s->total.holder = (char *) "";
        s->total.regions = reg->n_regions;
        s->total.bytes = reg->allocated_bytes;
        s->total.connections = facts->frontends ? frontends_count(facts->frontends) : 0;
        s->total.fds = reg->fds;
        for (size_t i = 0; i < reg->n_regions; i++)
                s->total.peers += reg->regions[i]->n_peers;
        limits_fill(&s->limits, &reg->limits);

        o = &s->reply;
        shmem__broker_status_reply__init(o);
        o->version = (char *) (facts->version ? facts->version : "");
        o->pid = (uint32_t) getpid();
        o->started_usec = facts->started_usec;
        o->uptime_usec = facts->uptime_usec;
        o->config_files = (char **) facts->config_files;
        o->n_config_files = facts->n_config_files;
        o->managed = facts->managed;
        o->stored_fds = (uint32_t) facts->stored_fds;
        o->fd_store_max = facts->fd_store_max;
        o->refusing = reg->closed ? reg->closed : (char *) "";
        o->upgrade_failed = (char *) (facts->upgrade_failed ? facts->upgrade_failed : "");
        o->limits = &s->limits;
        o->total = &s->total;
        o->all_holders = s->all;
        r = status_info_page(s, limit, after, error, size);
        if (r != 0) {
                status_info_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

Shmem__BrokerStatusReply *status_info_reply(StatusInfo *s) {
        return &s->reply;
}
