/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmemctl factory: the VMs connected to the broker's guest factory
 * (docs/factory.md), each with its factory connection, the request in flight
 * and its devices, plugged or parked, by region. What a VM chooses (its
 * -name, the monitor path on its command line) is printed escaped.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "escape.h"
#include "factory.h"
#include "json.h"
#include "region-layout.h"
#include "table.h"

static const char *op_str(uint32_t op) {
        static const char *const ops[] = { "none", "attach", "find", "exclusive", "detach" };

        return op < sizeof(ops) / sizeof(ops[0]) ? ops[op] : "unknown";
}

static const char *str_or(const char *s, const char *dflt) {
        return s && *s ? s : dflt;
}

static void json_vm(Json *j, const Shmem__FactoryVm *vm) {
        const Shmem__FactoryRequest *q = vm->in_flight;

        json_object_begin(j);
        json_key(j, "name");
        json_string(j, vm->label);
        json_key(j, "uuid");
        json_string_opt(j, vm->vm_uuid);
        json_key(j, "pid");
        json_uint(j, vm->pid);
        json_key(j, "libvirt");
        json_bool(j, vm->libvirt);
        json_key(j, "monitor");
        json_string_opt(j, vm->monitor); /* null for a libvirt domain's: libvirt's own */
        json_key(j, "connection");
        json_uint(j, vm->conn);
        json_key(j, "served");
        json_uint(j, vm->served);
        json_key(j, "refused");
        json_uint(j, vm->refused);
        json_key(j, "in_flight");
        if (q) {
                json_object_begin(j);
                json_key(j, "op");
                json_string(j, op_str(q->op));
                json_key(j, "region");
                json_string(j, q->region);
                json_key(j, "seq");
                json_uint(j, q->seq);
                json_key(j, "since_ms");
                json_uint(j, q->since_ms);
                json_key(j, "restarted");
                json_bool(j, q->restarted);
                json_object_end(j);
        } else
                json_null(j);
        json_key(j, "devices");
        json_array_begin(j);
        for (size_t i = 0; i < vm->n_devices; i++) {
                const Shmem__FactoryDevice *d = vm->devices[i];

                json_object_begin(j);
                json_key(j, "region");
                json_string(j, d->region);
                json_key(j, "index");
                json_uint(j, d->index);
                json_key(j, "parked");
                json_bool(j, d->parked);
                json_key(j, "doorbell_id");
                json_uint(j, d->doorbell_id);
                json_object_end(j);
        }
        json_array_end(j);
        json_object_end(j);
}

enum { D_REGION, D_INDEX, D_STATE, D_DOORBELL };

static const TableColumn device_columns[] = {
        [D_REGION] = { "REGION", TABLE_STRING, true, "the region of the device" },
        [D_INDEX] = { "INDEX", TABLE_NUMBER, true, "the VM's peer index in it" },
        [D_STATE] = { "STATE", TABLE_STRING, true, "plugged, or parked (unplugged by the guest, kept)" },
        [D_DOORBELL] = { "DOORBELL", TABLE_NUMBER, true, "its ivshmem doorbell id" },
};

const TableSpec device_table = { "devices", device_columns, sizeof(device_columns) / sizeof(device_columns[0]) };

/* One VM as a block: its identity, connection, requests, then a table of its devices. */
static int print_vm(const Shmem__FactoryVm *vm, const TableOptions *o) {
        const Shmem__FactoryRequest *q = vm->in_flight;
        char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)], uuid[STR_ESCAPE_SIZE(64)], monitor[STR_ESCAPE_SIZE(108)];
        char region[STR_ESCAPE_SIZE(SHMEM_NAME_MAX)];
        _cleanup_(table_freep) Table *t = NULL;
        int r;

        printf("vm:          '%s' (UUID %s, pid %u%s)\n", str_escape(label, sizeof(label), str_or(vm->label, "")),
               str_escape(uuid, sizeof(uuid), str_or(vm->vm_uuid, "-")), vm->pid, vm->libvirt ? ", libvirt" : "");
        printf("connection:  %" PRIu64 "\n", vm->conn);
        printf("monitor:     %s\n", vm->monitor && vm->monitor[0] ? str_escape(monitor, sizeof(monitor), vm->monitor)
                                    : vm->libvirt                 ? "libvirt's own (devices are plugged through libvirt)"
                                                                  : "- (nothing can be plugged)");
        printf("requests:    %u served, %u refused\n", vm->served, vm->refused);
        if (q)
                printf("in flight:   %s '%s' (seq %" PRIu64 ", for %" PRIu64 ".%" PRIu64 " s%s)\n", op_str(q->op),
                       str_escape(region, sizeof(region), str_or(q->region, "")), q->seq, q->since_ms / 1000,
                       q->since_ms % 1000 / 100, q->restarted ? ", begun before a restart" : "");
        else
                printf("in flight:   none\n");
        if (vm->n_devices == 0) {
                printf("devices:     none\n");
                return EXIT_OK;
        }
        r = table_new(&t, &device_table, o);
        if (r < 0)
                fputs("shmemctl: out of memory\n", stderr);
        if (r != 0)
                return r < 0 ? EXIT_REFUSED : r;
        putchar('\n');
        for (size_t i = 0; i < vm->n_devices; i++) {
                const Shmem__FactoryDevice *d = vm->devices[i];

                if (table_row(t) < 0) {
                        fputs("shmemctl: out of memory\n", stderr);
                        return EXIT_REFUSED;
                }
                table_set_str(t, D_REGION, d->region);
                table_set_uint(t, D_INDEX, d->index);
                table_set_str(t, D_STATE, d->parked ? "parked" : "plugged");
                table_set_uint(t, D_DOORBELL, d->doorbell_id);
        }
        return table_print(t);
}

/* VMs asked for per Factory request: the broker sends fewer when they do not fit in one message. */
#define FACTORY_PAGE 256

/* Every VM, read page by page as list does (docs/protocol.md, "Listing in pages"). */
typedef struct FactoryListing {
        Pages pages; /* the VMs point into them */
        Shmem__FactoryVm **vms;
        size_t n_vms;
        bool all_vms; /* every user's VMs, else the caller's uid's only */
} FactoryListing;

static void factory_listing_done(FactoryListing *l) {
        pages_done(&l->pages);
        free(l->vms);
}

static int factory_all(Client *c, const char *path, FactoryListing *l) {
        uint64_t after = 0;

        do {
                Shmem__Factory req = SHMEM__FACTORY__INIT;
                Message m = SHMEM__MESSAGE__INIT;
                const Shmem__FactoryReply *page;
                ClientMsg *reply = NULL;
                int r;

                req.limit = FACTORY_PAGE;
                req.after = after;
                m.body_case = SHMEM__MESSAGE__BODY_FACTORY;
                m.factory = &req;
                r = call(c, path, "factory", &m, &reply);
                if (r != EXIT_OK)
                        return r;
                if (pages_keep(&l->pages, reply) < 0)
                        return report_unreachable(path, -ENOMEM, false);
                page = reply->msg->reply->factory;
                if (reply->msg->reply->body_case != SHMEM__REPLY__BODY_FACTORY || !page)
                        return report_unreachable(path, -EPROTO, false);
                /* A cursor that does not move on would ask for ever. */
                if (page->next && (page->next <= after || page->n_vms == 0))
                        return report_unreachable(path, -EPROTO, false);
                l->all_vms = page->all_vms;
                if (ARRAY_APPEND(&l->vms, &l->n_vms, page->vms, page->n_vms) < 0)
                        return report_unreachable(path, -ENOMEM, false);
                after = page->next;
        } while (after);
        return EXIT_OK;
}

int cmd_factory(Client *c, const char *path, const Args *a) {
        _cleanup_(factory_listing_done) FactoryListing l = {};
        Shmem__FactoryReply all = SHMEM__FACTORY_REPLY__INIT;
        const Shmem__FactoryReply *f = &all;
        _cleanup_(table_freep) Table *check = NULL;
        int r;

        /* -o's columns checked before the broker is asked, as list and inspect do. */
        if (!a->json && (r = table_new(&check, &device_table, &a->table)) != 0)
                return r < 0 ? EXIT_REFUSED : r;
        r = factory_all(c, path, &l);
        if (r != EXIT_OK)
                return r;
        all.vms = l.vms;
        all.n_vms = l.n_vms;
        all.all_vms = l.all_vms;

        if (a->json) {
                Json j;

                json_init_pretty(&j, stdout);
                json_object_begin(&j);
                json_key(&j, "vms");
                json_array_begin(&j);
                for (size_t i = 0; i < f->n_vms; i++)
                        json_vm(&j, f->vms[i]);
                json_array_end(&j);
                json_object_end(&j);
                return EXIT_OK;
        }
        if (f->n_vms == 0) {
                if (f->all_vms)
                        printf("No VM is connected to the guest factory.\n");
                else
                        printf("No VM of uid %u is connected to the guest factory (an administrator sees every "
                               "user's).\n", (unsigned) getuid());
                return EXIT_OK;
        }
        for (size_t i = 0; i < f->n_vms; i++) {
                if (i > 0)
                        putchar('\n');
                r = print_vm(f->vms[i], &a->table);
                if (r != EXIT_OK)
                        return r;
        }
        return EXIT_OK;
}
