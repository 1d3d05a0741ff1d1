/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The guest factory across a restart or an upgrade of the broker
 * (docs/factory.md, docs/persistence.md): each VM's factory connection, its
 * page and eventfds, its counts and the request in flight with its hotplug
 * helper go to the fd store and the stored state, as the QEMU region peers'
 * do, and a restarted broker takes them back: QEMU never reconnects its
 * factory device either. And what `shmemctl factory` shows of them.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "escape.h"
#include "factory-private.h"
#include "list.h"
#include "log.h"

/* How long an adopted request whose helper is gone waits before it is decided: the
 * listeners accept what connected while the broker was down (QEMU's chardev-add). */
#define ORPHAN_SETTLE_MS 500

/* The names of a VM's fds beside its connection's (fdstore_key(): "cp/ID/PART"). */
static const char *const vm_parts[] = { "page", "ring", "bell" };
static const char *const job_parts[] = { "helper", "helper-out" };

#define PART(conn_id, name) (&(FdKey) { .kind = FD_CONN_PART, .id = (conn_id), .part = (name) })

static Keeper *factory_keeper(const Factory *f) {
        return frontends_keeper(f->ctx.table);
}

static const char *label_of(const PeerIdentity *id, char buf[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)]) {
        return str_escape(buf, STR_ESCAPE_SIZE(SHMEM_LABEL_MAX), id->label);
}

void factory_keep_vm(FactoryVm *vm) {
        Keeper *k = factory_keeper(vm->factory);
        const int fds[] = { vm->memfd, vm->ev_broker, vm->ev_vm };

        for (size_t i = 0; i < ELEMENTSOF(vm_parts); i++)
                keeper_keep(k, PART(vm->conn->id, vm_parts[i]), fds[i]);
        keeper_changed(k, vm->conn->id);
}

/* Forgets every part of connection @id (what is not stored is skipped). */
static void drop_parts(Keeper *k, uint64_t id, const char *const *parts, size_t n) {
        for (size_t i = 0; i < n; i++)
                keeper_drop(k, PART(id, parts[i]));
}

void factory_drop_vm(FactoryVm *vm) {
        if (vm->conn)
                drop_parts(factory_keeper(vm->factory), vm->conn->id, vm_parts, ELEMENTSOF(vm_parts));
}

void factory_keep_job(FactoryVm *vm) {
        Keeper *k = factory_keeper(vm->factory);

        keeper_keep(k, PART(vm->conn->id, job_parts[0]), vm->job.pidfd);
        keeper_keep(k, PART(vm->conn->id, job_parts[1]), vm->job.out);
}

void factory_drop_job(FactoryVm *vm) {
        if (vm->conn)
                drop_parts(factory_keeper(vm->factory), vm->conn->id, job_parts, ELEMENTSOF(job_parts));
}

void factory_vm_changed(FactoryVm *vm) {
        if (vm->conn)
                keeper_changed(factory_keeper(vm->factory), vm->conn->id);
}

/* --- a request taken over without its helper ------------------------------------ */

static void job_on_settle(evutil_socket_t fd, short what, void *userdata) {
        FactoryVm *vm = userdata;
        Job *j = &vm->job;
        Region *r = registry_find(vm->factory->ctx.registry, j->region);
        Peer *p = vm_peer(vm, r);
        char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)];

        /*
         * The helper connects the region's chardev before it adds the device, and QEMU's
         * attach is the device's (plugin-qemu/hotplug/README.md): a VM attached to the
         * region got its device, as far as the broker can tell without its helper.
         */
        if (p) {
                log_info("Factory of '%s': the broker restarted while '%s' was being plugged; its QEMU is "
                         "attached (peer %u), so the request is done", label_of(&vm->id, label), j->region, p->index);
                vm_answer(vm, j->seq, SHMEM_FACTORY_DONE, 0, r, NULL);
        } else {
                log_warning("Factory of '%s': the broker restarted while '%s' was being plugged, and its hotplug "
                            "helper did not finish", label_of(&vm->id, label), j->region);
                vm_answer(vm, j->seq, SHMEM_FACTORY_DONE, SHMEM_FACTORY_HOTPLUG, NULL,
                          "the broker restarted while this request's device was being plugged, and its hotplug "
                          "helper did not finish: ask again");
        }
        job_end(vm);
        /* A request the guest wrote meanwhile: its ring was taken while this one was busy. */
        event_active(vm->ev_ring, EV_READ, 0);
}

void factory_job_orphaned(FactoryVm *vm) {
        Job *j = &vm->job;
        struct timeval tv = { .tv_sec = 0, .tv_usec = ORPHAN_SETTLE_MS * 1000 };

        /* Nothing more comes from a helper that is gone: its pipe at its end would stay readable. */
        if (j->ev_out)
                event_del(j->ev_out);
        if (j->ev_exit)
                event_del(j->ev_exit);
        if (j->ev_timeout)
                event_del(j->ev_timeout);
        if (!j->ev_settle)
                j->ev_settle = evtimer_new(vm->factory->ctx.base, job_on_settle, vm);
        if (!j->ev_settle || evtimer_add(j->ev_settle, &tv) < 0)
                job_on_settle(-1, 0, vm);
}

/* --- dump --------------------------------------------------------------------------- */

int factory_vm_dump(FrontConn *conn, State *st) {
        FactoryVm *vm = conn->owner;
        Shmem__State__Conn *sc = front_conn_dump(conn, SHMEM__STATE__FRONTEND__FACTORY, st);
        Shmem__State__FactoryVm *sf = sc ? state_add_factory(sc) : NULL;

        if (!sf)
                return -ENOMEM;
        sf->vm_uuid = vm->id.vm_uuid;
        sf->libvirt = vm->id.libvirt;
        sf->monitor = vm->monitor;
        sf->vm_id = FACTORY_VM_ID;
        sf->broker_id = FACTORY_BROKER_ID;
        sf->answered = vm->answered;
        sf->served = vm->served;
        sf->refused = vm->refused;
        if (vm->job.running) {
                Shmem__State__FactoryJob *sj = state_add_factory_job(sf);
                Job *j = &vm->job;

                sj->seq = j->seq;
                sj->op = j->op;
                sj->region = j->region;
                sj->started_ns = (uint64_t) j->started_ns;
                sj->helper_pid = j->pid > 0 ? (uint32_t) j->pid : 0;
                sj->output.len = j->n_output;
                sj->output.data = (uint8_t *) j->output;
                sj->timed_out = j->timed_out;
        }
        return 0;
}

/* --- restore ------------------------------------------------------------------------- */

/*
 * Takes back the request @sj that the previous image was serving: its region held
 * again for the attach to come, its helper's pidfd and stdout from the store, and
 * what is left of its deadline. Without its helper it is decided at once
 * (factory_job_orphaned()).
 */
static void restore_job(FactoryVm *vm, uint64_t id, const Shmem__State__FactoryJob *sj) {
        Factory *f = vm->factory;
        Keeper *k = factory_keeper(f);
        Job *j = &vm->job;
        int64_t now = now_ns(), left;
        char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)];
        struct timeval tv;
        Region *r;

        if (sj->seq == 0 || sj->seq == vm->answered || sj->op < SHMEM_FACTORY_OP_ATTACH ||
            sj->op > SHMEM_FACTORY_OP_EXCLUSIVE || !shmem_name_valid(sj->region)) {
                log_warning("Factory of '%s': ignoring a stored request that is none (seq %" PRIu64 ", op %u)",
                            label_of(&vm->id, label), sj->seq, sj->op);
                return;
        }
        *j = (Job) { .running = true, .adopted = true, .seq = sj->seq, .op = sj->op, .pidfd = -1, .out = -1,
                     .pid = (pid_t) sj->helper_pid, .timed_out = sj->timed_out,
                     .started_ns = sj->started_ns <= (uint64_t) now ? (int64_t) sj->started_ns : now };
        snprintf(j->region, sizeof(j->region), "%s", sj->region);
        j->n_output = sj->output.len < sizeof(j->output) - 1 ? sj->output.len : sizeof(j->output) - 1;
        if (j->n_output)
                memcpy(j->output, sj->output.data, j->n_output);
        j->output[j->n_output] = 0;
        r = registry_find(f->ctx.registry, j->region);
        if (r) {
                registry_hold(f->ctx.registry, r);
                j->held = r;
        }
        j->pidfd = keeper_take(k, PART(id, job_parts[0]));
        j->out = keeper_take(k, PART(id, job_parts[1]));
        /* They exist already: held whatever the budget (a lower fd limit now) says. */
        j->fds = (j->pidfd >= 0) + (j->out >= 0);
        (void) registry_hold_fds(f->ctx.registry, j->fds, 0, NULL);
        log_info("Factory of '%s': taking over the request for '%s' (seq %" PRIu64 ")%s", label_of(&vm->id, label),
                 j->region, j->seq, j->pidfd < 0 ? ", whose hotplug helper is gone" : "");
        if (!r || j->pidfd < 0) {
                factory_job_orphaned(vm);
                return;
        }
        if (j->out >= 0)
                (void) fcntl(j->out, F_SETFL, O_NONBLOCK);
        j->ev_exit = event_new(f->ctx.base, j->pidfd, EV_READ, job_on_exit, vm);
        j->ev_out = j->out >= 0 ? event_new(f->ctx.base, j->out, EV_READ | EV_PERSIST, job_on_output, vm) : NULL;
        j->ev_timeout = evtimer_new(f->ctx.base, job_on_timeout, vm);
        left = j->started_ns + (int64_t) (f->settings.hotplug_timeout_ms + HELPER_GRACE_MS) * 1000000 - now;
        if (left < 0 || j->timed_out)
                left = 0;
        tv = (struct timeval) { .tv_sec = left / 1000000000, .tv_usec = (suseconds_t) (left % 1000000000 / 1000) };
        if (!j->ev_exit || (j->out >= 0 && !j->ev_out) || !j->ev_timeout || event_add(j->ev_exit, NULL) < 0 ||
            (j->ev_out && event_add(j->ev_out, NULL) < 0) || evtimer_add(j->ev_timeout, &tv) < 0)
                factory_job_orphaned(vm);
}

/* Rebuilds the factory device of the stored connection @sc; false: it could not come back. */
static bool restore_vm(Factory *f, const Shmem__State__Conn *sc) {
        const Shmem__State__FactoryVm *sf = sc->factory;
        Keeper *k = factory_keeper(f);
        char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)];
        const char *why = NULL;
        struct ucred cred;
        socklen_t len = sizeof(cred);
        struct stat st;
        FactoryVm *vm;
        void *page;

        if (!sf || sf->vm_id != FACTORY_VM_ID || sf->broker_id != FACTORY_BROKER_ID) {
                log_warning("Dropping stored factory connection %" PRIu64 ": its device speaks another wire",
                            sc->id);
                return false;
        }
        vm = calloc(1, sizeof(*vm));
        if (!vm)
                return false;
        vm->factory = f;
        vm->memfd = vm->ev_broker = vm->ev_vm = -1;
        vm->job = (Job) { .pidfd = -1, .out = -1 };
        LIST_PREPEND(f->vms, vm);
        vm->id = (PeerIdentity) { .kind = SHMEM_PEER_KIND_QEMU, .pid = (pid_t) sc->pid, .uid = sc->uid,
                                  .gid = sc->gid, .libvirt = sf->libvirt };
        snprintf(vm->id.label, sizeof(vm->id.label), "%s", sc->label);
        if (strlen(sf->vm_uuid) == PEER_UUID_MAX)
                snprintf(vm->id.vm_uuid, sizeof(vm->id.vm_uuid), "%s", sf->vm_uuid);
        if (strlen(sf->monitor) < sizeof(vm->monitor))
                snprintf(vm->monitor, sizeof(vm->monitor), "%s", sf->monitor);
        vm->memfd = keeper_take(k, PART(sc->id, vm_parts[0]));
        vm->ev_broker = keeper_take(k, PART(sc->id, vm_parts[1]));
        vm->ev_vm = keeper_take(k, PART(sc->id, vm_parts[2]));
        vm->fds = (vm->memfd >= 0) + (vm->ev_broker >= 0) + (vm->ev_vm >= 0);
        (void) registry_hold_fds(f->ctx.registry, vm->fds, 0, NULL);
        if (vm->memfd < 0 || vm->ev_broker < 0 || vm->ev_vm < 0)
                why = "its page or an eventfd did not come back";
        /* The page the broker made: sealed at one page, so a mapping of it cannot fault. */
        else if (fstat(vm->memfd, &st) < 0 || st.st_size != SHMEM_FACTORY_PAGE_SIZE ||
                 (page = mmap(NULL, SHMEM_FACTORY_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, vm->memfd, 0)) ==
                         MAP_FAILED)
                why = "its page is not a factory page";
        else {
                vm->page = page;
                if (front_conn_restore(&vm->conn, f->ctx.table, sc, &vm->id, &factory_conn_ops, vm) < 0)
                        why = "its connection did not come back";
                /* The kernel's word for whose device it is, not the state's. */
                else if (getsockopt(front_conn_fd(vm->conn), SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
                         cred.pid != vm->id.pid || cred.uid != vm->id.uid)
                        why = "its socket is another process's than the state says";
        }
        if (!why) {
                vm->ev_ring = event_new(f->ctx.base, vm->ev_broker, EV_READ | EV_PERSIST, vm_on_ring, vm);
                if (!vm->ev_ring || event_add(vm->ev_ring, NULL) < 0)
                        why = "out of memory";
        }
        if (why) {
                log_warning("Factory device of '%s' (pid %d) lost in the restart: %s", label_of(&vm->id, label),
                            (int) vm->id.pid, why);
                drop_parts(k, sc->id, vm_parts, ELEMENTSOF(vm_parts));
                drop_parts(k, sc->id, job_parts, ELEMENTSOF(job_parts));
                vm_free(vm);
                return false;
        }
        vm->answered = sf->answered;
        vm->served = sf->served;
        vm->refused = sf->refused;
        if (sf->job)
                restore_job(vm, sc->id, sf->job);
        /* One look at the page once the loop runs: a ring the old image took whose request no
         * stored state shows (the kill came before the state was written) is served again. */
        if (!vm->job.running)
                event_active(vm->ev_ring, EV_READ, 0);
        log_info("Factory device of '%s' (pid %d) restored: %u requests served, %u refused%s",
                 label_of(&vm->id, label), (int) vm->id.pid, vm->served, vm->refused,
                 vm->job.running ? ", one in flight" : "");
        return true;
}

void factory_restore(Factory *f, const State *st) {
        for (size_t i = 0; f && i < st->n_conns; i++)
                if (st->conns[i]->frontend == SHMEM__STATE__FRONTEND__FACTORY)
                        (void) restore_vm(f, st->conns[i]);
}

/* --- shmemctl factory --------------------------------------------------------------- */

void factory_foreach_vm(Factory *f, PluginFactoryFn fn, void *userdata) {
        int64_t now = now_ns();

        for (FactoryVm *vm = f ? f->vms : NULL; vm; vm = vm->next) {
                const Job *j = &vm->job;
                PluginFactoryVm info = { .id = &vm->id, .monitor = vm->monitor, .conn = vm->conn ? vm->conn->id : 0,
                                         .served = vm->served, .refused = vm->refused };

                if (!vm->conn || front_conn_leaving(vm->conn))
                        continue;
                if (j->running) {
                        info.op = j->op;
                        info.seq = j->seq;
                        info.region = j->region;
                        info.since_ms = now > j->started_ns ? (uint64_t) (now - j->started_ns) / 1000000 : 0;
                        info.restarted = j->adopted;
                }
                fn(userdata, &info);
        }
}
