/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>

#include "factory-info.h"
#include "macro.h"
#include "plugin.h"
#include "region.h"

/* One VM of the reply with what it owns. */
typedef struct VmInfo {
        Shmem__FactoryVm vm;
        Shmem__FactoryRequest request;
        Shmem__FactoryDevice *devices;
        Shmem__FactoryDevice **device_ptrs;
} VmInfo;

struct FactoryInfo {
        Registry *registry;
        Shmem__FactoryReply reply;
        VmInfo **vms;
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

        if (f->error)
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
        f->error = vm_info_devices(v, f->registry, in->id->pid);
}

/* By connection id: the order they connected in, whatever the plugins' lists are. */
static int vm_info_compare(const void *a, const void *b) {
        uint64_t x = (*(VmInfo *const *) a)->vm.conn, y = (*(VmInfo *const *) b)->vm.conn;

        return x < y ? -1 : x > y;
}

int factory_info_new(FactoryInfo **ret, Registry *reg) {
        FactoryInfo *f = calloc(1, sizeof(*f));

        if (!f)
                return -ENOMEM;
        f->registry = reg;
        shmem__factory_reply__init(&f->reply);
        for (unsigned i = 0; i < reg->n_plugins; i++)
                if (reg->plugins[i]->ops->factory_vms)
                        reg->plugins[i]->ops->factory_vms(reg->plugins[i], factory_info_add, f);
        if (!f->error && f->n_vms) {
                f->reply.vms = calloc(f->n_vms, sizeof(*f->reply.vms));
                if (!f->reply.vms)
                        f->error = -ENOMEM;
        }
        if (f->error) {
                int k = f->error;

                factory_info_free(f);
                return k;
        }
        if (f->n_vms)
                qsort(f->vms, f->n_vms, sizeof(*f->vms), vm_info_compare);
        for (size_t i = 0; i < f->n_vms; i++)
                f->reply.vms[i] = &f->vms[i]->vm;
        f->reply.n_vms = f->n_vms;
        *ret = f;
        return 0;
}

Shmem__FactoryReply *factory_info_reply(FactoryInfo *f) {
        return &f->reply;
}
