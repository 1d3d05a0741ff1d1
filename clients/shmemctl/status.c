/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmemctl status: what the broker says of itself and of its limits
 * (BrokerStatus, docs/protocol.md): its version, pid, uptime, the files it
 * read and its service manager, then each limit with its use, then one row
 * per user (and VM) with what it holds against the per-user limits. A caller
 * who is not an administrator gets its own uid's row only (the broker
 * decides). Its two tables are table.h's.
 */
#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "escape.h"
#include "json.h"
#include "status.h"
#include "table.h"
#include "units.h"

/* --- text ------------------------------------------------------------------- */

#define CELL_MAX 256

enum { L_LIMIT, L_USED, L_MAX };

static const TableColumn limit_columns[] = {
        [L_LIMIT] = { "LIMIT", TABLE_STRING, true, "its key in broker.conf(5) [limits]" },
        [L_USED] = { "USED", TABLE_STRING, true, "its use in total, where the broker counts one" },
        [L_MAX] = { "MAX", TABLE_STRING, true, "its value" },
};

static const TableSpec limit_table = { "limits", limit_columns, sizeof(limit_columns) / sizeof(limit_columns[0]) };

enum { H_USER, H_REGIONS, H_BYTES, H_PEERS, H_CONNECTIONS, H_ADMIN };

static const TableColumn holder_columns[] = {
        [H_USER] = { "USER", TABLE_STRING, true, "uid N (name), vm uuid U, vm pid N" },
        [H_REGIONS] = { "REGIONS", TABLE_STRING, true, "regions it created that exist, of its limit" },
        [H_BYTES] = { "BYTES", TABLE_STRING, true, "their memory, of its limit" },
        [H_PEERS] = { "PEERS", TABLE_NUMBER, true, "its attached peers" },
        [H_CONNECTIONS] = { "CONNECTIONS", TABLE_STRING, true, "its connections, of its limit" },
        [H_ADMIN] = { "ADMIN", TABLE_BOOL, true, "root or the broker's user: no per-user limit" },
};

static const TableSpec holder_table = { "holders", holder_columns,
                                        sizeof(holder_columns) / sizeof(holder_columns[0]) };

/* "USED/LIMIT", "USED" when no limit applies. */
static char *used_of(char buf[CELL_MAX], uint64_t used, uint64_t limit, bool bytes, bool limited) {
        char u[UNITS_SIZE_STR_MAX], l[UNITS_SIZE_STR_MAX];

        if (bytes) {
                units_format_size(u, used);
                units_format_size(l, limit);
        } else {
                snprintf(u, sizeof(u), "%" PRIu64, used);
                snprintf(l, sizeof(l), "%" PRIu64, limit);
        }
        snprintf(buf, CELL_MAX, limited ? "%s/%s" : "%s", u, l);
        return buf;
}

/* "uid 1000 (alice)", "vm uuid U", "vm pid N": the holder key, readable (the table encodes what is not printable). */
static char *holder_str(char buf[CELL_MAX], const Shmem__StatusUse *h) {
        const char *key = h->holder ? h->holder : "";

        if (h->is_uid) {
                struct passwd *pw = getpwuid(h->uid);

                if (pw)
                        snprintf(buf, CELL_MAX, "uid %u (%s)", h->uid, pw->pw_name);
                else
                        snprintf(buf, CELL_MAX, "uid %u", h->uid);
        } else if (strncmp(key, "vm:uuid:", 8) == 0)
                snprintf(buf, CELL_MAX, "vm uuid %s", key + 8);
        else if (strncmp(key, "vm:pid:", 7) == 0)
                snprintf(buf, CELL_MAX, "vm pid %s", key + 7);
        else
                snprintf(buf, CELL_MAX, "%s", key);
        return buf;
}

static int oom(void) {
        fprintf(stderr, "shmemctl: out of memory\n");
        return EXIT_REFUSED;
}

static int print_limits(const Shmem__StatusLimits *l, const Shmem__StatusUse *t) {
        _cleanup_(table_freep) Table *tab = NULL;
        char num[UNITS_SIZE_STR_MAX], used[UNITS_SIZE_STR_MAX], max[UNITS_SIZE_STR_MAX];

        if (table_new(&tab, &limit_table, &(TableOptions) {}) != 0)
                return oom();
#define ROW(name, u, m)                                      \
        do {                                                \
                if (table_row(tab) < 0)                     \
                        return oom();                       \
                table_set_str(tab, L_LIMIT, name);          \
                table_set_str(tab, L_USED, u);              \
                table_set_str(tab, L_MAX, m);               \
        } while (0)
#define N(v) (snprintf(num, sizeof(num), "%" PRIu64, (uint64_t) (v)), num)
        snprintf(used, sizeof(used), "%u", t->regions);
        ROW("regions", used, N(l->max_regions));
        ROW("total-bytes", units_format_size(used, t->bytes), units_format_size(max, l->max_total_bytes));
        ROW("region-bytes", NULL, units_format_size(max, l->max_region_bytes));
        snprintf(used, sizeof(used), "%u", t->peers);
        ROW("peers", used, N(l->default_max_peers));
        snprintf(used, sizeof(used), "%" PRIu64, t->fds);
        ROW("fds", used, l->max_fds ? N(l->max_fds) : NULL);
        snprintf(used, sizeof(used), "%u", t->connections);
        ROW("connections", used, N(l->max_connections));
        ROW("admin-reserve", NULL, N(l->admin_reserve));
        ROW("regions-per-uid", NULL, N(l->max_regions_per_uid));
        ROW("bytes-per-uid", NULL, units_format_size(max, l->max_bytes_per_uid));
        ROW("peers-per-uid", NULL, N(l->max_peers_per_uid));
        ROW("connections-per-uid", NULL, N(l->max_connections_per_uid));
        ROW("connections-per-vm", NULL, N(l->max_connections_per_vm));
        ROW("queued-bytes", NULL, units_format_size(max, l->max_queued_bytes));
        ROW("total-queued-bytes", NULL, units_format_size(max, l->max_total_queued_bytes));
        ROW("total-queued-fds", NULL, N(l->max_total_queued_fds));
        ROW("hello-timeout-ms", NULL, N(l->hello_timeout_ms));
#undef N
#undef ROW
        return table_print(tab);
}

static int print_holders(const Shmem__BrokerStatusReply *s) {
        const Shmem__StatusLimits *l = s->limits;
        _cleanup_(table_freep) Table *tab = NULL;
        int r;

        if (table_new(&tab, &holder_table, &(TableOptions) {}) != 0)
                return oom();
        for (size_t i = 0; i < s->n_holders; i++) {
                const Shmem__StatusUse *h = s->holders[i];
                char cell[CELL_MAX];
                bool limited = !h->exempt;

                if (table_row(tab) < 0)
                        return oom();
                table_set_str(tab, H_USER, holder_str(cell, h));
                table_set_str(tab, H_REGIONS, used_of(cell, h->regions, l->max_regions_per_uid, false, limited));
                table_set_str(tab, H_BYTES, used_of(cell, h->bytes, l->max_bytes_per_uid, true, limited));
                table_set_uint(tab, H_PEERS, h->peers);
                table_set_str(tab, H_CONNECTIONS,
                              used_of(cell, h->connections,
                                      h->is_uid ? l->max_connections_per_uid : l->max_connections_per_vm, false,
                                      limited));
                table_set_bool(tab, H_ADMIN, h->exempt);
        }
        r = table_print(tab);
        if (r == EXIT_OK && !s->all_holders)
                printf("(your uid only: other users' rows are for root and the broker's user)\n");
        return r;
}

static int print_text(const Shmem__BrokerStatusReply *s, const Shmem__StatusUse *t) {
        char when[UNITS_TIME_STR_MAX], ago[UNITS_DURATION_STR_MAX];
        char refusing[STR_ESCAPE_SIZE(256)];
        int r;

        printf("shmem-brokerd %s, pid %u\n", s->version, s->pid);
        printf("      Since: %s (%s ago)\n", units_format_time(when, s->started_usec),
               units_format_duration(ago, s->uptime_usec));
        if (s->n_config_files == 0)
                printf("     Config: none (built-in defaults and the command line)\n");
        for (size_t i = 0; i < s->n_config_files; i++) {
                char file[STR_ESCAPE_SIZE(512)];

                printf("%s%s\n", i ? "             " : "     Config: ",
                       str_escape(file, sizeof(file), s->config_files[i]));
        }
        if (s->managed) {
                printf("    Service: under a service manager (sd_notify); %u fds in its fd store", s->stored_fds);
                if (s->fd_store_max)
                        printf(" (FileDescriptorStoreMax=%u)", s->fd_store_max);
                putchar('\n');
        } else
                printf("    Service: no service manager; %u fds kept for an upgrade in place\n", s->stored_fds);
        if (s->refusing && *s->refusing)
                printf("  Attaching: REFUSED: %s\n", str_escape(refusing, sizeof(refusing), s->refusing));
        if (s->upgrade_failed && *s->upgrade_failed)
                printf("    Upgrade: FAILED: %s\n", str_escape(refusing, sizeof(refusing), s->upgrade_failed));
        putchar('\n');
        r = print_limits(s->limits, t);
        if (r != EXIT_OK)
                return r;
        putchar('\n');
        return print_holders(s);
}

/* --- JSON ------------------------------------------------------------------- */

static void json_use(Json *j, const Shmem__StatusUse *u, bool total) {
        json_object_begin(j);
        if (!total) {
                json_key(j, "holder");
                json_string(j, u->holder);
                json_key(j, "uid");
                if (u->is_uid)
                        json_uint(j, u->uid);
                else
                        json_null(j);
                json_key(j, "exempt");
                json_bool(j, u->exempt);
        }
        json_key(j, "regions");
        json_uint(j, u->regions);
        json_key(j, "bytes");
        json_uint(j, u->bytes);
        json_key(j, "peers");
        json_uint(j, u->peers);
        json_key(j, "connections");
        json_uint(j, u->connections);
        if (total) {
                json_key(j, "fds");
                json_uint(j, u->fds);
        }
        json_object_end(j);
}

/* Keys as broker.conf(5) names the limits, '-' as '_'. */
static void json_limits(Json *j, const Shmem__StatusLimits *l) {
        const struct {
                const char *key;
                uint64_t v;
        } v[] = {
                { "regions", l->max_regions },
                { "regions_per_uid", l->max_regions_per_uid },
                { "total_bytes", l->max_total_bytes },
                { "bytes_per_uid", l->max_bytes_per_uid },
                { "region_bytes", l->max_region_bytes },
                { "peers", l->default_max_peers },
                { "peers_per_uid", l->max_peers_per_uid },
                { "fds", l->max_fds },
                { "connections", l->max_connections },
                { "connections_per_uid", l->max_connections_per_uid },
                { "connections_per_vm", l->max_connections_per_vm },
                { "admin_reserve", l->admin_reserve },
                { "hello_timeout_ms", l->hello_timeout_ms },
                { "queued_bytes", l->max_queued_bytes },
                { "total_queued_bytes", l->max_total_queued_bytes },
                { "total_queued_fds", l->max_total_queued_fds },
        };

        json_object_begin(j);
        for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
                json_key(j, v[i].key);
                json_uint(j, v[i].v);
        }
        json_object_end(j);
}

static void print_json(const Shmem__BrokerStatusReply *s, const Shmem__StatusUse *t) {
        char when[UNITS_TIME_STR_MAX];
        Json j;

        json_init_pretty(&j, stdout);
        json_object_begin(&j);
        json_key(&j, "version");
        json_string(&j, s->version);
        json_key(&j, "pid");
        json_uint(&j, s->pid);
        json_key(&j, "started");
        json_string(&j, units_format_time(when, s->started_usec));
        json_key(&j, "started_usec");
        json_uint(&j, s->started_usec);
        json_key(&j, "uptime_usec");
        json_uint(&j, s->uptime_usec);
        json_key(&j, "config_files");
        json_array_begin(&j);
        for (size_t i = 0; i < s->n_config_files; i++)
                json_string(&j, s->config_files[i]);
        json_array_end(&j);
        json_key(&j, "managed");
        json_bool(&j, s->managed);
        json_key(&j, "stored_fds");
        json_uint(&j, s->stored_fds);
        json_key(&j, "fd_store_max");
        json_uint(&j, s->fd_store_max);
        json_key(&j, "refusing");
        if (s->refusing && *s->refusing)
                json_string(&j, s->refusing);
        else
                json_null(&j);
        json_key(&j, "upgrade_failed");
        if (s->upgrade_failed && *s->upgrade_failed)
                json_string(&j, s->upgrade_failed);
        else
                json_null(&j);
        json_key(&j, "limits");
        json_limits(&j, s->limits);
        json_key(&j, "total");
        json_use(&j, t, true);
        json_key(&j, "holders");
        json_array_begin(&j);
        for (size_t i = 0; i < s->n_holders; i++)
                json_use(&j, s->holders[i], false);
        json_array_end(&j);
        json_key(&j, "all_holders");
        json_bool(&j, s->all_holders);
        json_object_end(&j);
}

/* Holders asked for per BrokerStatus: the broker sends fewer when they do not fit in one message. */
#define STATUS_PAGE 1024

/* The status with every holder, read page by page as list does (docs/protocol.md, "Listing in pages"). */
typedef struct StatusPages {
        Pages pages; /* the holders point into them; the first is the status */
        Shmem__StatusUse **holders;
        size_t n_holders;
} StatusPages;

static void status_pages_done(StatusPages *p) {
        pages_done(&p->pages);
        free(p->holders);
}

static int status_all(Client *c, const char *path, StatusPages *p) {
        _cleanup_free_ char *after = NULL;

        do {
                Shmem__BrokerStatus req = SHMEM__BROKER_STATUS__INIT;
                Message m = SHMEM__MESSAGE__INIT;
                const Shmem__BrokerStatusReply *s;
                ClientMsg *reply = NULL;
                const char *detail;
                int r;

                req.limit = STATUS_PAGE;
                req.after = after ? after : (char *) "";
                m.body_case = SHMEM__MESSAGE__BODY_BROKER_STATUS;
                m.broker_status = &req;
                r = client_call(c, &m, CLIENT_TIMEOUT_MS, &reply);
                if (r == -ECONNRESET) {
                        /* A broker before BrokerStatus drops a connection that asks an unknown request. */
                        fprintf(stderr, "shmemctl: the broker at %s closed the connection on status: "
                                        "it is older than this shmemctl and does not know the request\n", path);
                        return EXIT_UNREACHABLE;
                }
                if (r < 0)
                        return report_unreachable(path, r, false);
                if (pages_keep(&p->pages, reply) < 0)
                        return report_unreachable(path, -ENOMEM, false);
                r = client_reply_status(reply, &detail);
                if (r != SHMEM__STATUS__OK)
                        return report_refused("status", r, detail);
                s = reply->msg->reply->broker_status;
                if (reply->msg->reply->body_case != SHMEM__REPLY__BODY_BROKER_STATUS || !s || !s->limits || !s->total)
                        return report_unreachable(path, -EPROTO, false);
                /* A cursor that does not move on would ask for ever. */
                if (s->next && s->next[0] && (s->n_holders == 0 || (after && strcmp(s->next, after) == 0)))
                        return report_unreachable(path, -EPROTO, false);
                if (ARRAY_APPEND(&p->holders, &p->n_holders, s->holders, s->n_holders) < 0)
                        return report_unreachable(path, -ENOMEM, false);
                free(after);
                after = s->next && s->next[0] ? strdup(s->next) : NULL;
                if (s->next && s->next[0] && !after)
                        return report_unreachable(path, -ENOMEM, false);
        } while (after);
        return EXIT_OK;
}

int cmd_status(Client *c, const char *path, const Args *a) {
        _cleanup_(status_pages_done) StatusPages p = {};
        Shmem__BrokerStatusReply all;
        const Shmem__BrokerStatusReply *s = &all;
        int r;

        r = status_all(c, path, &p);
        if (r != EXIT_OK)
                return r;
        /* The first page's status with the holders of every page. */
        all = *p.pages.replies[0]->msg->reply->broker_status;
        all.holders = p.holders;
        all.n_holders = p.n_holders;
        if (a->json) {
                print_json(s, s->total);
                return EXIT_OK;
        }
        return print_text(s, s->total);
}
