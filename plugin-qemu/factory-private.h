/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What factory.c (the factory's protocol, its helper, its VMs) and
 * factory-state.c (their state across restarts, `shmemctl factory`) share:
 * the factory's own objects and steps, not its interface (factory.h is that).
 */

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "factory-page.h"
#include "factory.h"

#define FACTORY_BROKER_ID 0 /* the broker's id on the factory device's wire */
#define FACTORY_VM_ID 1     /* the VM's */
#define HELPER_GRACE_MS 2000 /* past the helper's own deadline, it is killed */
/* What the fd budget is charged (registry_hold_fds()): a VM's page and its two eventfds;
 * a request's hotplug helper, its pidfd and stdout (the spawn pipe is those two at most). */
#define VM_FDS 3
#define JOB_FDS 2

typedef struct FactoryVm FactoryVm;

/* The request a VM's factory is serving: at most one. */
typedef struct Job {
        bool running;
        uint64_t seq;
        uint32_t op;
        char region[SHMEM_NAME_MAX + 1]; /* the final name */
        Region *held;                    /* registry_prepare()'s, until the job ends */
        pid_t pid;                       /* the hotplug helper */
        int pidfd, out;                  /* its exit, its stdout */
        unsigned fds;                    /* held in the fd budget for them */
        struct event *ev_exit, *ev_out, *ev_timeout;
        bool timed_out;
        char output[512];
        size_t n_output;
        /* Across restarts (factory-state.c): */
        int64_t started_ns;      /* CLOCK_MONOTONIC, when the request was taken */
        bool adopted;            /* taken over from the image before a restart or an upgrade */
        struct event *ev_settle; /* adopted, its helper gone: decided once the listeners had their turn */
} Job;

struct FactoryVm {
        Factory *factory;
        FactoryVm *prev, *next;
        FrontConn *conn;
        PeerIdentity id;
        char monitor[108];          /* its QMP socket, from its command line; "" none */
        int memfd, ev_broker, ev_vm; /* the page; the VM rings the broker; the broker rings the VM */
        unsigned fds;               /* held in the fd budget for them */
        struct shmem_factory_page *page;
        struct event *ev_ring;
        uint64_t answered;          /* the seq of the last request answered */
        Job job;
        unsigned served, refused;
};

struct Factory {
        PluginContext ctx;
        QemuSettings settings;
        char path[108];
        FrontListener *listener;
        FactoryVm *vms;
};

extern const FrontConnOps factory_conn_ops;

/* The factory's answer to the request @seq (fields, state, seq published; then a ring); kept for a restart. */
void vm_answer(FactoryVm *vm, uint64_t seq, uint32_t state, int status, const Region *r, const char *fmt, ...)
        __attribute__((format(printf, 6, 7)));
/* This VM's peer in @r, parked or not: its QEMU's. */
Peer *vm_peer(FactoryVm *vm, Region *r);
/* The VM rang (or a restart wants a look): a new request, if its seq is one not answered yet. */
void vm_on_ring(evutil_socket_t fd, short what, void *userdata);
void vm_free(FactoryVm *vm);

/* The job ends: its helper killed if still running, its region unheld. */
void job_end(FactoryVm *vm);
/* The helper's exit, output and deadline on the loop. */
void job_on_exit(evutil_socket_t fd, short what, void *userdata);
void job_on_output(evutil_socket_t fd, short what, void *userdata);
void job_on_timeout(evutil_socket_t fd, short what, void *userdata);

/* factory-state.c: the fds of a VM and of its job go to the fd store, and leave it. */
void factory_keep_vm(FactoryVm *vm);
void factory_drop_vm(FactoryVm *vm);
void factory_keep_job(FactoryVm *vm);
void factory_drop_job(FactoryVm *vm);
/* What is stored of @vm changed (its counts, its job); factory_vm_dump() is its FrontConnOps.dump. */
void factory_vm_changed(FactoryVm *vm);
int factory_vm_dump(FrontConn *conn, State *st);
/*
 * An adopted job whose helper did not outlive the old image, or ended without a
 * word: answered once the listeners had their turn (a QEMU whose chardev
 * connected while the broker was down waits in the backlog of the region's socket).
 */
void factory_job_orphaned(FactoryVm *vm);
