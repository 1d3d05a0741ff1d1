/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmemctl's region commands (regions.h): list, inspect, create and destroy
 * over the broker's native protocol (docs/protocol.md §2). xml, attach and
 * detach are in region-virt.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "escape.h"
#include "events.h"
#include "json.h"
#include "region-layout.h"
#include "regions.h"
#include "table.h"
#include "units.h"

static const char *signal_mode_str(unsigned mode) {
        switch (mode) {
        case SHMEM_SIGNAL_MODE_SHMEM:
                return "shmem";
        case SHMEM_SIGNAL_MODE_IVSHMEM:
                return "ivshmem";
        default:
                return "unknown";
        }
}

static const char *str_or(const char *s, const char *dflt) {
        return s && *s ? s : dflt;
}

/* "persistent,declared": what is not the common case; "-" for none. */
static char *region_flags(char buf[64], const Shmem__RegionInfo *r) {
        buf[0] = '\0';
        if (r->persistent)
                strcat(buf, "persistent,");
        if (!r->allocated)
                strcat(buf, "no-memory,");
        if (r->signal_mode != SHMEM_SIGNAL_MODE_SHMEM)
                strcat(buf, "compat,");
        if (buf[0])
                buf[strlen(buf) - 1] = '\0';
        else
                strcpy(buf, "-");
        return buf;
}

/*
 * Who made the region, for inspect ("VM 'NAME' (UUID U, pid N) through its
 * guest factory"); "-" for a declared one. The label is the peer's own
 * choice: escaped.
 */
static const char *creator_str(char *buf, size_t size, const Shmem__RegionInfo *r) {
        const Shmem__Creator *c = r->created_by;
        char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)];
        bool vm;

        if (!c)
                return "-";
        vm = c->kind == SHMEM__PEER_KIND__KIND_QEMU;
        str_escape(label, sizeof(label), str_or(c->label, ""));
        if (vm)
                snprintf(buf, size, "VM '%s' (UUID %s, pid %u) through its guest factory", label,
                         str_or(c->vm_uuid, "-"), c->pid);
        else
                snprintf(buf, size, "host peer '%s' (pid %u, uid %u)", label, c->pid, c->uid);
        return buf;
}

/* The fields list and inspect share in --json. */
static void json_region_fields(Json *j, const Shmem__RegionInfo *r) {
        json_key(j, "name");
        json_string(j, r->name);
        json_key(j, "data_size");
        json_uint(j, r->data_size);
        json_key(j, "region_size");
        json_uint(j, r->region_size);
        json_key(j, "backend");
        json_string(j, r->backend);
        json_key(j, "signal_mode");
        json_string(j, signal_mode_str(r->signal_mode));
        json_key(j, "max_peers");
        json_uint(j, r->max_peers);
        json_key(j, "vectors");
        json_uint(j, r->vectors);
        json_key(j, "attached");
        json_uint(j, (uint64_t) __builtin_popcountll(r->active));
        json_key(j, "active");
        json_bits(j, r->active);
        json_key(j, "epoch");
        json_uint(j, r->epoch);
        json_key(j, "persistent");
        json_bool(j, r->persistent);
        json_key(j, "allocated");
        json_bool(j, r->allocated);
        json_key(j, "qemu_socket");
        json_string_opt(j, r->qemu_socket);
        json_key(j, "created_by");
        if (r->created_by) {
                json_object_begin(j);
                json_key(j, "kind");
                json_string(j, peer_kind_str(r->created_by->kind));
                json_key(j, "label");
                json_string(j, r->created_by->label);
                json_key(j, "vm_uuid");
                json_string_opt(j, r->created_by->vm_uuid);
                json_key(j, "pid");
                json_uint(j, r->created_by->pid);
                json_key(j, "uid");
                json_uint(j, r->created_by->uid);
                json_key(j, "key");
                json_string_opt(j, r->created_by->key);
                json_object_end(j);
        } else
                json_null(j);
        /* A declaration that waits for the memory to be freed (broker.conf(5)). */
        if (r->declared_size || r->declared_max_peers) {
                json_key(j, "declared_size");
                json_uint(j, r->declared_size ? r->declared_size : r->data_size);
                json_key(j, "declared_max_peers");
                json_uint(j, r->declared_max_peers ? r->declared_max_peers : r->max_peers);
        }
}

/* Regions asked for per List: the broker sends fewer when they do not fit in one message. */
#define LIST_PAGE 1024

/* Every region, read page by page (docs/protocol.md, "Listing in pages"). */
typedef struct Listing {
        Pages pages; /* the regions point into them */
        const Shmem__RegionInfo **regions;
        size_t n_regions;
} Listing;

static void listing_done(Listing *l) {
        pages_done(&l->pages);
        free(l->regions);
}

static int list_all(Client *c, const char *path, Listing *l) {
        uint64_t after = 0;

        do {
                Shmem__List req = SHMEM__LIST__INIT;
                Message m = SHMEM__MESSAGE__INIT;
                const Shmem__ListReply *page;
                ClientMsg *reply = NULL;
                int r;

                req.limit = LIST_PAGE;
                req.after = after;
                m.body_case = SHMEM__MESSAGE__BODY_LIST;
                m.list = &req;
                r = call(c, path, "list", &m, &reply);
                if (r != EXIT_OK)
                        return r;
                if (pages_keep(&l->pages, reply) < 0)
                        return report_unreachable(path, -ENOMEM, false);
                page = reply->msg->reply->list;
                if (reply->msg->reply->body_case != SHMEM__REPLY__BODY_LIST || !page)
                        return report_unreachable(path, -EPROTO, false);
                /* A cursor that does not move on would ask for ever. */
                if (page->next && (page->next <= after || page->n_regions == 0))
                        return report_unreachable(path, -EPROTO, false);
                if (ARRAY_APPEND(&l->regions, &l->n_regions, page->regions, page->n_regions) < 0)
                        return report_unreachable(path, -ENOMEM, false);
                after = page->next;
        } while (after);
        return EXIT_OK;
}

enum {
        L_NAME, L_SIZE, L_PEERS, L_MAX, L_BACKEND, L_FLAGS, L_CREATOR_KIND, L_CREATOR, L_REGION_SIZE,
        L_SIGNAL_MODE, L_VECTORS, L_ACTIVE, L_EPOCH, L_PERSISTENT, L_ALLOCATED, L_QEMU_SOCKET, L_CREATOR_PID,
        L_CREATOR_UID, L_CREATOR_UUID, L_CREATOR_KEY, L_DECLARED_SIZE, L_DECLARED_MAX,
};

static const TableColumn list_columns[] = {
        [L_NAME] = { "NAME", TABLE_STRING, true, "the region's name" },
        [L_SIZE] = { "SIZE", TABLE_SIZE, true, "its data size (what peers use)" },
        [L_PEERS] = { "PEERS", TABLE_NUMBER, true, "peers attached" },
        [L_MAX] = { "MAX", TABLE_NUMBER, true, "peers it takes at most" },
        [L_BACKEND] = { "BACKEND", TABLE_STRING, true, "where its memory comes from (memfd, file, hugetlbfs)" },
        [L_FLAGS] = { "FLAGS", TABLE_STRING, true, "persistent, no-memory (declared, none yet), compat" },
        [L_CREATOR_KIND] = { "CREATOR-KIND", TABLE_STRING, true, "host or qemu: what created it (none: declared)" },
        [L_CREATOR] = { "CREATOR", TABLE_STRING, true, "the label of the peer whose attach created it (a VM's name)" },
        [L_REGION_SIZE] = { "REGION-SIZE", TABLE_SIZE, false, "its size with the control page, a power of two" },
        [L_SIGNAL_MODE] = { "SIGNAL-MODE", TABLE_STRING, false, "shmem, or ivshmem (compat)" },
        [L_VECTORS] = { "VECTORS", TABLE_NUMBER, false, "MSI-X vectors of its QEMU device" },
        [L_ACTIVE] = { "ACTIVE", TABLE_STRING, false, "indices of the attached peers (\"0,2\")" },
        [L_EPOCH] = { "EPOCH", TABLE_NUMBER, false, "changes at every join and leave" },
        [L_PERSISTENT] = { "PERSISTENT", TABLE_BOOL, false, "its memory kept while no peer is attached" },
        [L_ALLOCATED] = { "ALLOCATED", TABLE_BOOL, false, "it has memory now" },
        [L_QEMU_SOCKET] = { "QEMU-SOCKET", TABLE_STRING, false, "its ivshmem-doorbell socket for QEMU" },
        [L_CREATOR_PID] = { "CREATOR-PID", TABLE_NUMBER, false, "the pid of its creator" },
        [L_CREATOR_UID] = { "CREATOR-UID", TABLE_NUMBER, false, "the uid of its creator" },
        [L_CREATOR_UUID] = { "CREATOR-UUID", TABLE_STRING, false, "the UUID of the VM that created it" },
        [L_CREATOR_KEY] = { "CREATOR-KEY", TABLE_STRING, false, "who the broker counts it against (vm:uuid:U, uid:N)" },
        [L_DECLARED_SIZE] = { "DECLARED-SIZE", TABLE_SIZE, false, "a declaration's size, once the memory is freed" },
        [L_DECLARED_MAX] = { "DECLARED-MAX", TABLE_NUMBER, false, "a declaration's peers at most, likewise" },
};

const TableSpec list_table = { "regions", list_columns, sizeof(list_columns) / sizeof(list_columns[0]) };

static void list_row(Table *t, const Shmem__RegionInfo *ri) {
        const Shmem__Creator *c = ri->created_by;
        char flags[64];

        table_set_str(t, L_NAME, ri->name);
        table_set_size(t, L_SIZE, ri->data_size);
        table_set_uint(t, L_PEERS, (uint64_t) __builtin_popcountll(ri->active));
        table_set_uint(t, L_MAX, ri->max_peers);
        table_set_str(t, L_BACKEND, ri->backend);
        region_flags(flags, ri);
        table_set_str(t, L_FLAGS, strcmp(flags, "-") ? flags : NULL);
        table_set_size(t, L_REGION_SIZE, ri->region_size);
        table_set_str(t, L_SIGNAL_MODE, signal_mode_str(ri->signal_mode));
        table_set_uint(t, L_VECTORS, ri->vectors);
        if (ri->active) {
                char bits[UNITS_BITS_STR_MAX];

                table_set_str(t, L_ACTIVE, units_format_bits(bits, ri->active));
        }
        table_set_uint(t, L_EPOCH, ri->epoch);
        table_set_bool(t, L_PERSISTENT, ri->persistent);
        table_set_bool(t, L_ALLOCATED, ri->allocated);
        table_set_str(t, L_QEMU_SOCKET, ri->qemu_socket);
        if (c) {
                table_set_str(t, L_CREATOR_KIND, peer_kind_str(c->kind));
                table_set_str(t, L_CREATOR, c->label);
                table_set_uint(t, L_CREATOR_PID, c->pid);
                table_set_uint(t, L_CREATOR_UID, c->uid);
                table_set_str(t, L_CREATOR_UUID, c->vm_uuid);
                table_set_str(t, L_CREATOR_KEY, c->key);
        }
        /* A declaration that waits for the memory to be freed (broker.conf(5)). */
        if (ri->declared_size || ri->declared_max_peers) {
                table_set_size(t, L_DECLARED_SIZE, ri->declared_size ? ri->declared_size : ri->data_size);
                table_set_uint(t, L_DECLARED_MAX, ri->declared_max_peers ? ri->declared_max_peers : ri->max_peers);
        }
}

int cmd_list(Client *c, const char *path, const Args *a) {
        _cleanup_(listing_done) Listing l = {};
        _cleanup_(table_freep) Table *t = NULL;
        int r;

        r = table_new(&t, &list_table, &a->table);
        if (r != 0)
                return r < 0 ? report_unreachable(path, r, false) : r;
        r = list_all(c, path, &l);
        if (r != EXIT_OK)
                return r;
        for (size_t i = 0; i < l.n_regions; i++) {
                if (table_row(t) < 0)
                        return report_unreachable(path, -ENOMEM, false);
                list_row(t, l.regions[i]);
        }
        return table_print(t);
}

enum { P_INDEX, P_KIND, P_LABEL, P_PID, P_UID, P_PENDING, P_VM_UUID, P_LIBVIRT, P_PARKED, P_DOORBELL, P_DEPARTURES };

static const TableColumn peer_columns[] = {
        [P_INDEX] = { "INDEX", TABLE_NUMBER, true, "the peer's index in the region (its bit in masks)" },
        [P_KIND] = { "KIND", TABLE_STRING, true, "host (libshmem) or qemu (a VM's ivshmem device)" },
        [P_LABEL] = { "LABEL", TABLE_STRING, true, "the label it chose; a VM's: its -name (libvirt's domain)" },
        [P_PID] = { "PID", TABLE_NUMBER, true, "its process" },
        [P_UID] = { "UID", TABLE_NUMBER, true, "its user" },
        [P_PENDING] = { "PENDING", TABLE_STRING, true, "indices of the peers whose signals it has not taken" },
        [P_VM_UUID] = { "VM-UUID", TABLE_STRING, true, "a VM's UUID" },
        [P_LIBVIRT] = { "LIBVIRT", TABLE_BOOL, true, "a VM that libvirt runs" },
        [P_PARKED] = { "PARKED", TABLE_BOOL, true, "a VM's device unplugged by its guest factory, kept" },
        [P_DOORBELL] = { "DOORBELL", TABLE_NUMBER, false, "its ivshmem doorbell id" },
        [P_DEPARTURES] = { "DEPARTURES", TABLE_NUMBER, false, "peers a VM's QEMU was told left (docs/libvirt.md)" },
};

const TableSpec peer_table = { "peers", peer_columns, sizeof(peer_columns) / sizeof(peer_columns[0]) };

static void peer_row(Table *t, const Shmem__PeerState *p) {
        table_set_uint(t, P_INDEX, p->index);
        table_set_str(t, P_KIND, peer_kind_str(p->kind));
        table_set_str(t, P_LABEL, p->label);
        table_set_uint(t, P_PID, p->pid);
        table_set_uint(t, P_UID, p->uid);
        if (p->pending) {
                char bits[UNITS_BITS_STR_MAX];

                table_set_str(t, P_PENDING, units_format_bits(bits, p->pending));
        }
        table_set_uint(t, P_DOORBELL, p->doorbell_id);
        if (p->kind == SHMEM__PEER_KIND__KIND_QEMU) {
                table_set_str(t, P_VM_UUID, p->vm_uuid);
                table_set_bool(t, P_LIBVIRT, p->libvirt);
                table_set_bool(t, P_PARKED, p->parked);
                table_set_uint(t, P_DEPARTURES, p->departures_told);
        }
}

int cmd_inspect(Client *c, const char *path, const Args *a, const char *name) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        const Shmem__RegionInfo *ri;
        char size[UNITS_SIZE_STR_MAX], bits[UNITS_BITS_STR_MAX], flags[64];
        char creator[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX) + 128];
        _cleanup_(table_freep) Table *t = NULL;
        int r;

        /* The options' columns are checked before the broker is asked. */
        if (!a->json) {
                r = table_new(&t, &peer_table, &a->table);
                if (r != 0)
                        return r < 0 ? report_unreachable(path, r, false) : r;
        }
        r = inspect_region(c, path, name, &reply, &ri);
        if (r != EXIT_OK)
                return r;

        if (a->json) {
                Json j;

                json_init_pretty(&j, stdout);
                json_object_begin(&j);
                json_region_fields(&j, ri);
                json_key(&j, "peers");
                json_array_begin(&j);
                for (size_t i = 0; i < ri->n_peers; i++) {
                        const Shmem__PeerState *p = ri->peers[i];

                        json_object_begin(&j);
                        json_key(&j, "index");
                        json_uint(&j, p->index);
                        json_key(&j, "kind");
                        json_string(&j, peer_kind_str(p->kind));
                        json_key(&j, "label");
                        json_string(&j, p->label);
                        json_key(&j, "pid");
                        json_uint(&j, p->pid);
                        json_key(&j, "uid");
                        json_uint(&j, p->uid);
                        json_key(&j, "doorbell_id");
                        json_uint(&j, p->doorbell_id);
                        json_key(&j, "pending");
                        json_bits(&j, p->pending);
                        if (p->kind == SHMEM__PEER_KIND__KIND_QEMU) {
                                /* The label of a VM is its -name: libvirt's domain name. */
                                json_key(&j, "vm_name");
                                json_string(&j, p->label);
                                json_key(&j, "vm_uuid");
                                json_string_opt(&j, p->vm_uuid);
                                json_key(&j, "libvirt");
                                json_bool(&j, p->libvirt);
                                json_key(&j, "departures_told");
                                json_uint(&j, p->departures_told);
                                json_key(&j, "parked");
                                json_bool(&j, p->parked);
                        }
                        json_object_end(&j);
                }
                json_array_end(&j);
                json_object_end(&j);
                return EXIT_OK;
        }

        printf("name:        %s\n", str_or(ri->name, "?"));
        printf("size:        %s (%" PRIu64 " bytes)\n", units_format_size(size, ri->region_size),
               ri->region_size);
        printf("data size:   %s (%" PRIu64 " bytes)\n", units_format_size(size, ri->data_size),
               ri->data_size);
        printf("backend:     %s\n", str_or(ri->backend, "-"));
        printf("mode:        %s, %u peers max, %u vectors\n", signal_mode_str(ri->signal_mode),
               ri->max_peers, ri->vectors);
        printf("flags:       %s\n", region_flags(flags, ri));
        printf("epoch:       %" PRIu64 "\n", ri->epoch);
        printf("active:      %s (0x%" PRIx64 ")\n", units_format_bits(bits, ri->active), ri->active);
        printf("qemu socket: %s\n", str_or(ri->qemu_socket, "-"));
        printf("created by:  %s\n", creator_str(creator, sizeof(creator), ri));
        if (ri->declared_size || ri->declared_max_peers)
                printf("declared:    %s, %u peers max: applies once the memory is freed\n",
                       units_format_size(size, ri->declared_size ? ri->declared_size : ri->data_size),
                       ri->declared_max_peers ? ri->declared_max_peers : ri->max_peers);
        if (ri->n_peers == 0) {
                printf("peers:       none\n");
                return EXIT_OK;
        }
        /* Labels are the peers' own choice: libsmartcols encodes what is not printable (docs/security.md). */
        putchar('\n');
        for (size_t i = 0; i < ri->n_peers; i++) {
                if (table_row(t) < 0)
                        return report_unreachable(path, -ENOMEM, false);
                peer_row(t, ri->peers[i]);
        }
        return table_print(t);
}

int cmd_create(Client *c, const char *path, const Args *a, const char *name, uint64_t size) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        Shmem__Create cr = SHMEM__CREATE__INIT;
        Message m = SHMEM__MESSAGE__INIT;
        Json j;
        int r;

        cr.name = (char *) name;
        cr.size = size;
        cr.max_peers = a->max_peers;
        cr.persistent = a->persistent;
        m.body_case = SHMEM__MESSAGE__BODY_CREATE;
        m.create = &cr;
        r = call(c, path, name, &m, &reply);
        if (r != EXIT_OK || !a->json)
                return r;
        /* What was asked and accepted; the broker rounds the size up to 4 KiB (inspect shows it). */
        json_result_begin(&j, name);
        json_key(&j, "created");
        json_bool(&j, true);
        json_key(&j, "size");
        json_uint(&j, size);
        json_key(&j, "max_peers");
        if (a->max_peers)
                json_uint(&j, a->max_peers);
        else
                json_null(&j); /* the broker's default */
        json_key(&j, "persistent");
        json_bool(&j, a->persistent);
        json_object_end(&j);
        return EXIT_OK;
}

int cmd_destroy(Client *c, const char *path, const Args *a, const char *name) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        Shmem__Destroy d = SHMEM__DESTROY__INIT;
        Message m = SHMEM__MESSAGE__INIT;
        Json j;
        int r;

        d.name = (char *) name;
        d.force = a->force;
        m.body_case = SHMEM__MESSAGE__BODY_DESTROY;
        m.destroy = &d;
        r = call(c, path, name, &m, &reply);
        if (r != EXIT_OK || !a->json)
                return r;
        json_result_begin(&j, name);
        json_key(&j, "destroyed");
        json_bool(&j, true);
        json_key(&j, "forced");
        json_bool(&j, a->force);
        json_object_end(&j);
        return EXIT_OK;
}
