/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "escape.h"
#include "factory-info.h"
#include "macro.h"
#include "plugin.h"
#include "policy.h"
#include "region.h"
#include "reply-page.h"

/* One VM of the reply with what it owns. */
typedef struct VmInfo {
        Shmem__FactoryVm vm;
        Shmem__FactoryRequest request;
        Shmem__FactoryDevice *devices;
        Shmem__FactoryDevice **device_ptrs;
} VmInfo;

struct FactoryInfo {
        Registry *registry;
        const PeerIdentity *caller;
        uint64_t after;
        Shmem__FactoryReply reply;
        VmInfo **vms; /* every VM after the cursor the caller may see; the page is a prefix */
        size_t n_vms, n_alloc;
        int error;
};

static void vm_info_free(VmInfo *v) {
        if (!v)
                return;
        free(v->devices);
        free(v->device_ptrs);
        free(v);
}

FactoryInfo *factory_info_free(FactoryInfo *f) {
        if (!f)
                return NULL;
        for (size_t i = 0; i < f->n_vms; i++)
                vm_info_free(f->vms[i]);
        free(f->vms);
        free(f->reply.vms);
        free(f);
        return NULL;
}

/* The VM's devices: the peers of its VMM process (its pid) in every region, parked or not. */
static int vm_info_devices(VmInfo *v, Registry *reg, pid_t pid) {
        size_t n = 0;

        for (size_t i = 0; i < reg->n_regions; i++)
                for (unsigned k = 0; k < reg->regions[i]->max_peers; k++) {
                        Peer *p = reg->regions[i]->peers[k];

                        n += p && p->id.kind == SHMEM_PEER_KIND_QEMU && p->id.pid == pid;
                }
        if (n == 0)
                return 0;
        v->devices = calloc(n, sizeof(*v->devices));
        v->device_ptrs = calloc(n, sizeof(*v->device_ptrs));
        if (!v->devices || !v->device_ptrs)
                return -ENOMEM;
        for (size_t i = 0; i < reg->n_regions; i++) {
                Region *r = reg->regions[i];

                for (unsigned k = 0; k < r->max_peers; k++) {
                        Peer *p = r->peers[k];
                        Shmem__FactoryDevice *d = &v->devices[v->vm.n_devices];

                        if (!p || p->id.kind != SHMEM_PEER_KIND_QEMU || p->id.pid != pid)
                                continue;
                        shmem__factory_device__init(d);
                        d->region = r->name;
                        d->index = p->index;
                        d->parked = p->parked;
                        d->doorbell_id = p->doorbell_id;
                        v->device_ptrs[v->vm.n_devices++] = d;
                }
        }
        v->vm.devices = v->device_ptrs;
        return 0;
}

static void factory_info_add(void *userdata, const PluginFactoryVm *in) {
        FactoryInfo *f = userdata;
        VmInfo *v;

        if (f->error || in->conn <= f->after || (!f->reply.all_vms && in->id->uid != f->caller->uid))
                return;
        if (f->n_vms == f->n_alloc) {
                size_t n = f->n_alloc ? f->n_alloc * 2 : 8;
                VmInfo **vms = realloc(f->vms, n * sizeof(*vms));

                if (!vms) {
                        f->error = -ENOMEM;
                        return;
                }
                f->vms = vms;
                f->n_alloc = n;
        }
        v = calloc(1, sizeof(*v));
        if (!v) {
                f->error = -ENOMEM;
                return;
        }
        f->vms[f->n_vms++] = v;
        shmem__factory_vm__init(&v->vm);
        v->vm.label = (char *) in->id->label;
        v->vm.vm_uuid = (char *) in->id->vm_uuid;
        v->vm.pid = (uint32_t) in->id->pid;
        v->vm.libvirt = in->id->libvirt;
        v->vm.monitor = (char *) in->monitor;
        v->vm.conn = in->conn;
        v->vm.served = in->served;
        v->vm.refused = in->refused;
        if (in->op) {
                shmem__factory_request__init(&v->request);
                v->request.op = in->op;
                v->request.region = (char *) in->region;
                v->request.seq = in->seq;
                v->request.since_ms = in->since_ms;
                v->request.restarted = in->restarted;
                v->vm.in_flight = &v->request;
        }
}

/* By connection id: the order they connected in, whatever the plugins' lists are. */
static int vm_info_compare(const void *a, const void *b) {
        uint64_t x = (*(VmInfo *const *) a)->vm.conn, y = (*(VmInfo *const *) b)->vm.conn;

        return x < y ? -1 : x > y;
}

/* The VMs of the page, with their devices, into f->reply; 0, -ENOMEM or a FACTORY_INFO_*. */
static int factory_info_page(FactoryInfo *f, uint32_t limit, char *error, size_t size) {
        char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)];
        ReplyPage page;
        int r;

        reply_page_init(&page, limit, f->n_vms);
        while (page.n < page.room) {
                VmInfo *v = f->vms[page.n];

                r = vm_info_devices(v, f->registry, (pid_t) v->vm.pid);
                if (r < 0)
                        return r;
                f->reply.vms[page.n] = &v->vm;
                if (!reply_page_take(&page, shmem__factory_vm__get_packed_size(&v->vm)))
                        break;
        }
        if (page.n == 0 && f->n_vms > 0) {
                /* Only with connections-per-vm raised above some 800: each device is a QEMU connection. */
                snprintf(error, size, "VM '%s' (pid %u) has %zu devices, more than one message holds",
                         str_escape(label, sizeof(label), f->vms[0]->vm.label), f->vms[0]->vm.pid,
                         f->vms[0]->vm.n_devices);
                return FACTORY_INFO_VM_TOO_BIG;
        }
        if (page.n < f->n_vms) {
                if (limit == 0) {
                        snprintf(error, size, "%zu VMs do not fit in one message: list in pages (Factory.limit)",
                                 f->n_vms);
                        return FACTORY_INFO_UNPAGED;
                }
                f->reply.next = f->vms[page.n - 1]->vm.conn;
        }
        f->reply.n_vms = page.n;
        return 0;
}

int factory_info_new(FactoryInfo **ret, Registry *reg, const PeerIdentity *caller, uint32_t limit, uint64_t after,
                     char *error, size_t size) {
        FactoryInfo *f = calloc(1, sizeof(*f));
        int r;

        if (!f)
                return -ENOMEM;
        f->registry = reg;
        f->caller = caller;
        f->after = after;
        shmem__factory_reply__init(&f->reply);
        f->reply.all_vms = policy_is_admin(caller);
        for (unsigned i = 0; i < reg->n_plugins; i++)
                if (reg->plugins[i]->ops->factory_vms)
                        reg->plugins[i]->ops->factory_vms(reg->plugins[i], factory_info_add, f);
        if (!f->error && f->n_vms) {
                f->reply.vms = calloc(f->n_vms, sizeof(*f->reply.vms));
                if (!f->reply.vms)
                        f->error = -ENOMEM;
        }
        if (!f->error && f->n_vms)
                qsort(f->vms, f->n_vms, sizeof(*f->vms), vm_info_compare);
        r = f->error ? f->error : factory_info_page(f, limit, error, size);
        if (r != 0) {
                factory_info_free(f);
                return r;
        }
        *ret = f;
        return 0;
}

Shmem__FactoryReply *factory_info_reply(FactoryInfo *f) {
        return &f->reply;
}
