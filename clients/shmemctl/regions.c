/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmemctl's region commands (regions.h): list, inspect, create and destroy
 * over the broker's native protocol (docs/protocol.md §2), and what the
 * broker says for xml, attach and detach of libvirt domains (virt.c does the
 * libvirt side).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "domain-xml.h"
#include "escape.h"
#include "events.h"
#include "json.h"
#include "region-layout.h"
#include "regions.h"
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
 * Who made the region, for list (@brief: "vm 'NAME'", "host 'LABEL'") and
 * inspect ("VM 'NAME' (UUID U, pid N) through its guest factory"); "-" for a
 * declared one. The label is the peer's own choice: escaped.
 */
static const char *creator_str(char *buf, size_t size, const Shmem__RegionInfo *r, bool brief) {
        const Shmem__Creator *c = r->created_by;
        char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)];
        bool vm;

        if (!c)
                return "-";
        vm = c->kind == SHMEM__PEER_KIND__KIND_QEMU;
        str_escape(label, sizeof(label), str_or(c->label, ""));
        if (brief)
                snprintf(buf, size, "%s '%s'", vm ? "vm" : "host", label);
        else if (vm)
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
        json_string(j, r->qemu_socket);
        json_key(j, "created_by");
        if (r->created_by) {
                json_object_begin(j);
                json_key(j, "kind");
                json_string(j, peer_kind_str(r->created_by->kind));
                json_key(j, "label");
                json_string(j, r->created_by->label);
                json_key(j, "vm_uuid");
                json_string(j, r->created_by->vm_uuid);
                json_key(j, "pid");
                json_uint(j, r->created_by->pid);
                json_key(j, "uid");
                json_uint(j, r->created_by->uid);
                json_key(j, "key");
                json_string(j, r->created_by->key);
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
        ClientMsg **pages; /* the replies, which the regions point into */
        size_t n_pages;
        const Shmem__RegionInfo **regions;
        size_t n_regions;
} Listing;

static void listing_done(Listing *l) {
        for (size_t i = 0; i < l->n_pages; i++)
                client_msg_free(l->pages[i]);
        free(l->pages);
        free(l->regions);
}

static int list_all(Client *c, const char *path, Listing *l) {
        uint64_t after = 0;

        do {
                Shmem__List req = SHMEM__LIST__INIT;
                Message m = SHMEM__MESSAGE__INIT;
                const Shmem__ListReply *page;
                ClientMsg *reply = NULL, **pages;
                const Shmem__RegionInfo **regions;
                int r;

                req.limit = LIST_PAGE;
                req.after = after;
                m.body_case = SHMEM__MESSAGE__BODY_LIST;
                m.list = &req;
                r = call(c, path, "list", &m, &reply);
                if (r != EXIT_OK)
                        return r;
                pages = realloc(l->pages, (l->n_pages + 1) * sizeof(*pages));
                if (!pages) {
                        client_msg_free(reply);
                        return report_unreachable(path, -ENOMEM, false);
                }
                l->pages = pages;
                l->pages[l->n_pages++] = reply;
                page = reply->msg->reply->list;
                if (reply->msg->reply->body_case != SHMEM__REPLY__BODY_LIST || !page)
                        return report_unreachable(path, -EPROTO, false);
                /* A cursor that does not move on would ask for ever. */
                if (page->next && (page->next <= after || page->n_regions == 0))
                        return report_unreachable(path, -EPROTO, false);
                regions = realloc(l->regions, (l->n_regions + page->n_regions + 1) * sizeof(*regions));
                if (!regions)
                        return report_unreachable(path, -ENOMEM, false);
                l->regions = regions;
                for (size_t i = 0; i < page->n_regions; i++)
                        l->regions[l->n_regions++] = page->regions[i];
                after = page->next;
        } while (after);
        return EXIT_OK;
}

int cmd_list(Client *c, const char *path, const Args *a) {
        _cleanup_(listing_done) Listing l = {};
        int wname = 4, wflags = 5, r;

        r = list_all(c, path, &l);
        if (r != EXIT_OK)
                return r;

        if (a->json) {
                Json j;

                json_init(&j, stdout);
                json_object_begin(&j);
                json_key(&j, "regions");
                json_array_begin(&j);
                for (size_t i = 0; i < l.n_regions; i++) {
                        json_object_begin(&j);
                        json_region_fields(&j, l.regions[i]);
                        json_object_end(&j);
                }
                json_array_end(&j);
                json_object_end(&j);
                return EXIT_OK;
        }

        for (size_t i = 0; i < l.n_regions; i++) {
                char flags[64];
                int n = (int) strlen(str_or(l.regions[i]->name, "?"));

                if (n > wname)
                        wname = n;
                n = (int) strlen(region_flags(flags, l.regions[i]));
                if (n > wflags)
                        wflags = n;
        }
        printf("%-*s %8s %-9s %-8s %-*s %s\n", wname, "NAME", "SIZE", "PEERS/MAX", "BACKEND", wflags, "FLAGS",
               "CREATED BY");
        for (size_t i = 0; i < l.n_regions; i++) {
                const Shmem__RegionInfo *ri = l.regions[i];
                char size[UNITS_SIZE_STR_MAX], peers[32], flags[64], creator[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX) + 16];

                snprintf(peers, sizeof(peers), "%d/%u", __builtin_popcountll(ri->active), ri->max_peers);
                printf("%-*s %8s %-9s %-8s %-*s %s\n", wname, str_or(ri->name, "?"),
                       units_format_size(size, ri->data_size), peers, str_or(ri->backend, "-"), wflags,
                       region_flags(flags, ri), creator_str(creator, sizeof(creator), ri, true));
        }
        return EXIT_OK;
}

/* "UUID (libvirt, parked)" for a VM (what applies in parentheses), "-" for others. */
static const char *vm_str(char buf[80], const Shmem__PeerState *p) {
        const char *uuid = p->vm_uuid && p->vm_uuid[0] ? p->vm_uuid : "-";

        if (p->kind != SHMEM__PEER_KIND__KIND_QEMU)
                return "-";
        if (p->libvirt || p->parked)
                snprintf(buf, 80, "%s (%s%s%s)", uuid, p->libvirt ? "libvirt" : "",
                         p->libvirt && p->parked ? ", " : "", p->parked ? "parked" : "");
        else
                snprintf(buf, 80, "%s", uuid);
        return buf;
}

int cmd_inspect(Client *c, const char *path, const Args *a, const char *name) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        const Shmem__RegionInfo *ri;
        char size[UNITS_SIZE_STR_MAX], bits[UNITS_BITS_STR_MAX], flags[64], vm[80];
        char creator[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX) + 128];
        int wlabel = 5, wpending = 12, r;

        r = inspect_region(c, path, name, &reply, &ri);
        if (r != EXIT_OK)
                return r;

        if (a->json) {
                Json j;

                json_init(&j, stdout);
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
                                json_string(&j, p->vm_uuid);
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
        printf("created by:  %s\n", creator_str(creator, sizeof(creator), ri, false));
        if (ri->declared_size || ri->declared_max_peers)
                printf("declared:    %s, %u peers max: applies once the memory is freed\n",
                       units_format_size(size, ri->declared_size ? ri->declared_size : ri->data_size),
                       ri->declared_max_peers ? ri->declared_max_peers : ri->max_peers);
        if (ri->n_peers == 0) {
                printf("peers:       none\n");
                return EXIT_OK;
        }
        /* Labels are the peers' own choice: printed escaped, never raw (docs/security.md). */
        for (size_t i = 0; i < ri->n_peers; i++) {
                char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)];
                int n = (int) strlen(str_escape(label, sizeof(label), str_or(ri->peers[i]->label, "-")));

                if (n > wlabel)
                        wlabel = n;
                n = (int) strlen(units_format_bits(bits, ri->peers[i]->pending));
                if (n > wpending)
                        wpending = n;
        }
        printf("\n%-5s %-4s %-*s %8s %6s %-*s %s\n", "INDEX", "KIND", wlabel, "LABEL", "PID", "UID", wpending,
               "PENDING FROM", "VM UUID");
        for (size_t i = 0; i < ri->n_peers; i++) {
                const Shmem__PeerState *p = ri->peers[i];
                char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)];

                printf("%-5u %-4s %-*s %8u %6u %-*s %s\n", p->index, peer_kind_str(p->kind), wlabel,
                       str_escape(label, sizeof(label), str_or(p->label, "-")), p->pid, p->uid, wpending,
                       units_format_bits(bits, p->pending), vm_str(vm, p));
        }
        return EXIT_OK;
}

int cmd_create(Client *c, const char *path, const Args *a, const char *name, uint64_t size) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        Shmem__Create cr = SHMEM__CREATE__INIT;
        Message m = SHMEM__MESSAGE__INIT;

        cr.name = (char *) name;
        cr.size = size;
        cr.max_peers = a->max_peers;
        cr.persistent = a->persistent;
        m.body_case = SHMEM__MESSAGE__BODY_CREATE;
        m.create = &cr;
        return call(c, path, name, &m, &reply);
}

int cmd_destroy(Client *c, const char *path, const Args *a, const char *name) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        Shmem__Destroy d = SHMEM__DESTROY__INIT;
        Message m = SHMEM__MESSAGE__INIT;

        d.name = (char *) name;
        d.force = a->force;
        m.body_case = SHMEM__MESSAGE__BODY_DESTROY;
        m.destroy = &d;
        return call(c, path, name, &m, &reply);
}

/* detach's guard (virt.h): asks the broker, printing nothing. */
static int departures_told(void *userdata, const char *region, const char *uuid) {
        const Args *a = userdata;
        _cleanup_(client_freep) Client *c = NULL;
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        Shmem__Inspect in = SHMEM__INSPECT__INIT;
        Message m = SHMEM__MESSAGE__INIT;
        const Shmem__RegionInfo *ri;
        const char *detail;
        int r;

        r = client_connect(&c, client_socket_path(a->socket), "shmemctl", CLIENT_TIMEOUT_MS);
        if (r != 0)
                return r < 0 ? r : -ECONNREFUSED;
        in.name = (char *) region;
        m.body_case = SHMEM__MESSAGE__BODY_INSPECT;
        m.inspect = &in;
        r = client_call(c, &m, CLIENT_TIMEOUT_MS, &reply);
        if (r < 0)
                return r;
        r = client_reply_status(reply, &detail);
        if (r == SHMEM__STATUS__DOES_NOT_EXIST)
                return 0;
        if (r != SHMEM__STATUS__OK || reply->msg->reply->body_case != SHMEM__REPLY__BODY_INSPECT ||
            !reply->msg->reply->inspect || !reply->msg->reply->inspect->region)
                return -EPROTO;
        ri = reply->msg->reply->inspect->region;
        for (size_t i = 0; i < ri->n_peers; i++)
                if (ri->peers[i]->kind == SHMEM__PEER_KIND__KIND_QEMU && ri->peers[i]->vm_uuid &&
                    strcasecmp(ri->peers[i]->vm_uuid, uuid) == 0)
                        return (int) ri->peers[i]->departures_told;
        return 0;
}

/* xml, attach: the device of region @name as the broker describes it. */
int cmd_virt(Client *c, const char *path, const Args *a, const char *cmd, const char *domain,
                    const char *name) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        const Shmem__RegionInfo *ri;
        VirtRegion vr;
        char *xml;
        int r;

        r = inspect_region(c, path, name, &reply, &ri);
        if (r != EXIT_OK)
                return r;
        if (!ri->qemu_socket || !ri->qemu_socket[0]) {
                fprintf(stderr, "shmemctl: region '%s' has no QEMU socket\n", name);
                return EXIT_REFUSED;
        }
        vr = (VirtRegion) { .name = name, .socket = ri->qemu_socket, .vectors = ri->vectors };
        if (strcmp(cmd, "attach") == 0)
                return virt_attach(&a->virt, domain, &vr);
        xml = domain_xml_shmem(vr.name, vr.socket, vr.vectors, -1);
        if (!xml) {
                fputs("shmemctl: out of memory\n", stderr);
                return EXIT_REFUSED;
        }
        fputs(xml, stdout);
        free(xml);
        return EXIT_OK;
}

int cmd_detach(const Args *a, const char *domain, const char *name) {
        VirtGuard guard = { .departures_told = departures_told, .userdata = (void *) a, .force = a->force };

        return virt_detach(&a->virt, domain, name, &guard);
}
