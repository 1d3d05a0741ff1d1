/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "escape.h"
#include "factory-private.h"
#include "ivshmem-wire.h"
#include "list.h"
#include "listen.h"
#include "log.h"
#include "qemu-identity.h"
#include "qemu-wire.h"
#include "shmem.pb-c.h"

#define FACTORY_KEY ".factory" /* its socket's name in the fd store: no region is called so */

extern char **environ;


static const char *vm_label(const FactoryVm *vm, char buf[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)]) {
        return str_escape(buf, STR_ESCAPE_SIZE(SHMEM_LABEL_MAX), vm->id.label);
}

/* The factory's answer to the request @seq: the fields, then state, then seq, each published; then a ring. */
void vm_answer(FactoryVm *vm, uint64_t seq, uint32_t state, int status, const Region *r, const char *fmt, ...) {
        struct shmem_factory_answer *a = &vm->page->answer;
        char detail[SHMEM_FACTORY_DETAIL_MAX + 1] = "";
        uint64_t one = 1;

        if (fmt) {
                va_list ap;

                va_start(ap, fmt);
                vsnprintf(detail, sizeof(detail), fmt, ap);
                va_end(ap);
        }
        a->status = (uint32_t) status;
        a->data_size = r ? r->data_size : 0;
        a->max_peers = r ? r->max_peers : 0;
        snprintf(a->region, sizeof(a->region), "%s", r ? r->name : "");
        memcpy(a->detail, detail, sizeof(a->detail));
        __atomic_store_n(&a->state, state, __ATOMIC_RELEASE);
        __atomic_store_n(&a->seq, seq, __ATOMIC_RELEASE);
        if (state == SHMEM_FACTORY_DONE) {
                vm->answered = seq;
                if (status == 0)
                        vm->served++;
                else
                        vm->refused++;
        }
        (void) !write(vm->ev_vm, &one, sizeof(one));
        factory_vm_changed(vm);
}

/* This VM's peer in @r, parked or not: its QEMU's. */
Peer *vm_peer(FactoryVm *vm, Region *r) {
        for (unsigned i = 0; r && i < r->max_peers; i++)
                if (r->peers[i] && r->peers[i]->id.kind == SHMEM_PEER_KIND_QEMU && r->peers[i]->id.pid == vm->id.pid)
                        return r->peers[i];
        return NULL;
}

/* --- the hotplug helper ------------------------------------------------------ */

void job_end(FactoryVm *vm) {
        Job *j = &vm->job;

        /* By its pidfd: one taken over after a restart may be no child of this process, its pid reused. */
        if (j->pid > 0 && j->pidfd >= 0) {
                (void) pidfd_send_signal(j->pidfd, SIGKILL, NULL, 0);
                (void) waitid(P_PIDFD, (id_t) j->pidfd, &(siginfo_t) {}, WEXITED);
        } else if (j->pid > 0 && !j->adopted) {
                /* Spawned here but no pidfd (pidfd_open() failed): its pid is still this process's child. */
                (void) kill(j->pid, SIGKILL);
                (void) waitpid(j->pid, NULL, 0);
        }
        if (j->ev_exit)
                event_free(j->ev_exit);
        if (j->ev_out)
                event_free(j->ev_out);
        if (j->ev_timeout)
                event_free(j->ev_timeout);
        if (j->ev_settle)
                event_free(j->ev_settle);
        if (j->running)
                factory_drop_job(vm);
        fd_close(j->pidfd);
        fd_close(j->out);
        if (j->held)
                registry_unhold(vm->factory->ctx.registry, j->held);
        registry_release_fds(vm->factory->ctx.registry, j->fds);
        *j = (Job) { .pidfd = -1, .out = -1 };
        factory_vm_changed(vm);
}

static void job_read(FactoryVm *vm) {
        Job *j = &vm->job;

        while (j->n_output < sizeof(j->output) - 1) {
                ssize_t n = read(j->out, j->output + j->n_output, sizeof(j->output) - 1 - j->n_output);

                if (n <= 0)
                        break;
                j->n_output += (size_t) n;
        }
        j->output[j->n_output] = 0;
}

/* The helper is done: its one line says how (the contract in plugin-qemu/hotplug/). */
static void job_finish(FactoryVm *vm, int wstatus) {
        Job *j = &vm->job;
        Registry *reg = vm->factory->ctx.registry;
        char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)], line[STR_ESCAPE_SIZE(200)];
        Region *r = registry_find(reg, j->region);
        uint64_t seq = j->seq;
        const char *code, *detail;
        /* For the log: since the request was taken, just before its helper was spawned. */
        unsigned ms = (unsigned) ((now_ns() - j->started_ns) / 1000000);

        job_read(vm);
        if (j->adopted && !j->n_output && !j->timed_out) {
                /* Taken over from the image before a restart, and its helper said nothing: the old
                 * image's service manager stopped it, or it died. What the VM's QEMU did decides. */
                factory_job_orphaned(vm);
                return;
        }
        j->output[strcspn(j->output, "\n")] = 0;
        str_escape(line, sizeof(line), j->output);
        code = strncmp(j->output, "ok", 2) == 0 ? "ok" : strncmp(j->output, "error ", 6) == 0 ? j->output + 6 : "";
        detail = strchr(code, ' ') ? strchr(code, ' ') + 1 : "";
        if (j->timed_out) {
                log_warning("Factory of '%s': the hotplug of '%s' took too long, helper killed", vm_label(vm, label),
                            j->region);
                vm_answer(vm, seq, SHMEM_FACTORY_DONE, SHMEM_FACTORY_HOTPLUG, NULL, "%s did not answer within %u ms",
                          vm->id.libvirt ? "libvirt" : "the VM's monitor", vm->factory->settings.hotplug_timeout_ms);
        } else if (strcmp(code, "ok") == 0 && WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) {
                Peer *p = vm_peer(vm, r);

                if (p) {
                        log_info("Factory of '%s': region '%s' plugged (%s) in %u ms, peer %u", vm_label(vm, label),
                                 j->region, line, ms, p->index);
                        vm_answer(vm, seq, SHMEM_FACTORY_DONE, 0, r, NULL);
                } else {
                        log_warning("Factory of '%s': '%s' plugged, but its QEMU did not attach (see above)",
                                    vm_label(vm, label), j->region);
                        vm_answer(vm, seq, SHMEM_FACTORY_DONE, SHMEM_FACTORY_HOTPLUG, NULL,
                                  "the device was plugged but did not attach to the region");
                }
        } else {
                int status = strncmp(code, "no-slot", 7) == 0 ? SHMEM_FACTORY_NO_SLOT : SHMEM_FACTORY_HOTPLUG;
                char esc[STR_ESCAPE_SIZE(SHMEM_FACTORY_DETAIL_MAX)];

                log_warning("Factory of '%s': cannot plug '%s' (%u ms): %s", vm_label(vm, label), j->region, ms,
                            line[0] ? line : "the hotplug helper said nothing");
                vm_answer(vm, seq, SHMEM_FACTORY_DONE, status, NULL, "%s",
                          detail[0] ? str_escape(esc, sizeof(esc), detail) : "the hotplug helper failed");
        }
        job_end(vm);
}

void job_on_exit(evutil_socket_t fd, short what, void *userdata) {
        FactoryVm *vm = userdata;
        siginfo_t si = {};
        int wstatus = 0;

        /* Its pidfd is readable: it exited. Reaped here if this process is its parent; a helper
         * taken over after a kill -9 is not its child (its exit status is lost, its line is not). */
        if (waitid(P_PIDFD, (id_t) vm->job.pidfd, &si, WEXITED | WNOHANG) == 0) {
                if (si.si_pid == 0)
                        return;
                wstatus = si.si_code == CLD_EXITED ? W_EXITCODE(si.si_status, 0) : (si.si_status & 0x7f);
        } else if (errno != ECHILD)
                return;
        vm->job.pid = 0;
        job_finish(vm, wstatus);
}

void job_on_output(evutil_socket_t fd, short what, void *userdata) {
        FactoryVm *vm = userdata;

        job_read(vm);
        if (vm->job.n_output >= sizeof(vm->job.output) - 1)
                event_del(vm->job.ev_out); /* enough to know what it says */
}

void job_on_timeout(evutil_socket_t fd, short what, void *userdata) {
        FactoryVm *vm = userdata;

        vm->job.timed_out = true;
        (void) pidfd_send_signal(vm->job.pidfd, SIGKILL, NULL, 0);
        factory_vm_changed(vm);
}

/*
 * Runs the helper that plugs @r's device into the VM; its end comes back to
 * the loop. A libvirt domain (libvirt's pid file proved it) through libvirt,
 * by the UUID its QEMU was started with; any other QEMU through the QMP
 * monitor its command line names.
 */
static int job_start(FactoryVm *vm, Region *r) {
        Factory *f = vm->factory;
        Job *j = &vm->job;
        char id[SHMEM_NAME_MAX + 16], server[PATH_MAX], vectors[16], bar[32], timeout[16], window[32];
        char *qmp_argv[] = { f->settings.hotplug_helper, "qmp", "--monitor", vm->monitor, "--id", id, "--server",
                             server, "--vectors", vectors, "--bar-size", bar, "--timeout-ms", timeout, NULL };
        char *libvirt_argv[] = { f->settings.hotplug_helper, "libvirt", "--uri", f->settings.libvirt_uri, "--uuid",
                                 vm->id.vm_uuid, "--name", vm->id.label, "--region", r->name, "--server", server,
                                 "--vectors", vectors, "--bar-size", bar, "--port-window", window,
                                 "--timeout-ms", timeout, NULL };
        char **argv = vm->id.libvirt ? libvirt_argv : qmp_argv;
        posix_spawn_file_actions_t actions;
        int pipefd[2], k;

        snprintf(id, sizeof(id), "shmem-f-%s", r->name);
        if (registry_endpoint(f->ctx.registry, r, "qemu", server, sizeof(server)) < 0)
                return -ENOENT;
        snprintf(vectors, sizeof(vectors), "%u", r->vectors);
        snprintf(bar, sizeof(bar), "%" PRIu64, r->region_size);
        snprintf(timeout, sizeof(timeout), "%u", f->settings.hotplug_timeout_ms);
        snprintf(window, sizeof(window), "%" PRIu64, f->settings.libvirt_port_window);
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, pipefd[1], STDOUT_FILENO);
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        k = posix_spawn(&j->pid, argv[0], &actions, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&actions);
        fd_close(pipefd[1]);
        if (k != 0) {
                fd_close(pipefd[0]);
                j->pid = 0;
                return -k;
        }
        j->out = pipefd[0];
        (void) fcntl(j->out, F_SETFL, O_NONBLOCK);
        j->pidfd = pidfd_open(j->pid, 0);
        j->ev_exit = j->pidfd >= 0 ? event_new(f->ctx.base, j->pidfd, EV_READ, job_on_exit, vm) : NULL;
        j->ev_out = event_new(f->ctx.base, j->out, EV_READ | EV_PERSIST, job_on_output, vm);
        j->ev_timeout = evtimer_new(f->ctx.base, job_on_timeout, vm);
        if (!j->ev_exit || !j->ev_out || !j->ev_timeout || event_add(j->ev_exit, NULL) < 0 ||
            event_add(j->ev_out, NULL) < 0)
                return -ENOMEM;
        {
                unsigned ms = f->settings.hotplug_timeout_ms + HELPER_GRACE_MS;
                struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (suseconds_t) (ms % 1000) * 1000 };

                if (evtimer_add(j->ev_timeout, &tv) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* --- requests ------------------------------------------------------------------ */

static AttachMode mode_of(uint32_t op) {
        return op == SHMEM_FACTORY_OP_FIND ? ATTACH_FIND : op == SHMEM_FACTORY_OP_EXCLUSIVE ? ATTACH_EXCLUSIVE
                                                                                          : ATTACH_CREATE;
}

/* Serves @req (a copy: the page may change meanwhile); answers it now, or once its device is plugged. */
static void vm_serve(FactoryVm *vm, const struct shmem_factory_request *req) {
        Registry *reg = vm->factory->ctx.registry;
        char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)], name[STR_ESCAPE_SIZE(SHMEM_NAME_MAX)];
        char host[SHMEM_NAME_MAX + 1];
        const char *error = NULL;
        Region *r = NULL;
        Peer *p;
        int k;

        if (!memchr(req->name, 0, sizeof(req->name)) || !shmem_name_valid(req->name)) {
                vm_answer(vm, req->seq, SHMEM_FACTORY_DONE, SHMEM__STATUS__ILLEGAL_NAME, NULL,
                          "names are 1-63 of [A-Za-z0-9._-], not starting with '.'");
                return;
        }
        if (req->op < SHMEM_FACTORY_OP_ATTACH || req->op > SHMEM_FACTORY_OP_DETACH) {
                vm_answer(vm, req->seq, SHMEM_FACTORY_DONE, SHMEM__STATUS__BAD_REQUEST, NULL, "unknown op %u", req->op);
                return;
        }
        /* The VM's own device for the region, if it has one: no hotplug, no new index. */
        if (policy_subst_name(&reg->policy, &vm->id, req->name, host))
                r = registry_find(reg, host);
        p = vm_peer(vm, r);
        if (req->op == SHMEM_FACTORY_OP_DETACH) {
                if (!p) {
                        vm_answer(vm, req->seq, SHMEM_FACTORY_DONE, SHMEM__STATUS__BAD_REQUEST, NULL,
                                  "this VM is not attached to that region");
                        return;
                }
                registry_park(reg, p);
                log_info("Factory of '%s': detached from '%s' (its device is kept for a later attach)",
                         vm_label(vm, label), r->name);
                vm_answer(vm, req->seq, SHMEM_FACTORY_DONE, 0, r, NULL);
                return;
        }
        if (p && req->op == SHMEM_FACTORY_OP_EXCLUSIVE) {
                vm_answer(vm, req->seq, SHMEM_FACTORY_DONE, SHMEM__STATUS__EXISTS, NULL, "a region of that name exists");
                return;
        }
        if (p) {
                registry_unpark(reg, p);
                vm_answer(vm, req->seq, SHMEM_FACTORY_DONE, 0, r, NULL);
                return;
        }
        /* A new device is a new connection of this VM: over a limit, QEMU's chardev would be
         * refused, and its device_add then never returned, the VM stopped (bench/factory.py
         * --broker-limits). So the limits are asked first, and nothing is plugged. */
        k = frontends_admit(vm->factory->ctx.table, &vm->id, &error);
        if (k != 0) {
                log_info("Factory of '%s': refusing '%s': %s", vm_label(vm, label),
                         str_escape(name, sizeof(name), req->name), error);
                vm_answer(vm, req->seq, SHMEM_FACTORY_DONE, front_status(k), NULL, "%s", error);
                return;
        }
        error = NULL;
        k = registry_prepare(reg, &(AttachRequest) { .name = req->name, .mode = mode_of(req->op), .size = req->size,
                                                     .id = &vm->id },
                             &r, NULL, &error);
        if (k != 0) {
                log_info("Factory of '%s': refusing '%s': %s%s%s", vm_label(vm, label),
                         str_escape(name, sizeof(name), req->name), k > 0 ? core_error_name(k) : strerror(-k),
                         error ? ": " : "", error ? error : "");
                vm_answer(vm, req->seq, SHMEM_FACTORY_DONE, front_status(k), NULL, "%s",
                          error ? error : k < 0 ? strerror(-k) : "");
                return;
        }
        vm->job = (Job) { .running = true, .seq = req->seq, .op = req->op, .held = r, .pidfd = -1, .out = -1,
                          .started_ns = now_ns() };
        snprintf(vm->job.region, sizeof(vm->job.region), "%s", r->name);
        if (!vm->id.libvirt && !vm->monitor[0]) {
                vm_answer(vm, req->seq, SHMEM_FACTORY_DONE, SHMEM_FACTORY_HOTPLUG, NULL,
                          "the broker cannot reach this VM's QEMU: start it with -qmp unix:PATH,server=on,wait=off, "
                          "or under libvirt (docs/factory.md)");
                job_end(vm);
                return;
        }
        if (vm->id.libvirt && !vm->id.vm_uuid[0]) {
                vm_answer(vm, req->seq, SHMEM_FACTORY_DONE, SHMEM_FACTORY_HOTPLUG, NULL,
                          "this libvirt domain's QEMU has no -uuid to find the domain by");
                job_end(vm);
                return;
        }
        /* The helper's fds, and the row of eventfds its QEMU will attach with: a device whose
         * chardev the broker then refused would hang the VM, as over a connection limit. */
        k = registry_hold_fds(reg, JOB_FDS, r->vectors, &error);
        if (k != 0) {
                log_info("Factory of '%s': refusing '%s': %s", vm_label(vm, label),
                         str_escape(name, sizeof(name), req->name), error);
                vm_answer(vm, req->seq, SHMEM_FACTORY_DONE, front_status(k), NULL, "%s", error);
                job_end(vm);
                return;
        }
        vm->job.fds = JOB_FDS;
        k = job_start(vm, r);
        if (k < 0) {
                log_error_errno(k, "Factory of '%s': cannot run '%s': %m", vm_label(vm, label),
                                vm->factory->settings.hotplug_helper);
                vm_answer(vm, req->seq, SHMEM_FACTORY_DONE, SHMEM_FACTORY_HOTPLUG, NULL, "cannot run the hotplug helper");
                job_end(vm);
                return;
        }
        factory_keep_job(vm);
        vm_answer(vm, req->seq, SHMEM_FACTORY_BUSY, 0, NULL, NULL);
}

/* The VM rang: a new request, if its seq is one not answered yet. */
void vm_on_ring(evutil_socket_t fd, short what, void *userdata) {
        FactoryVm *vm = userdata;
        struct shmem_factory_request req;
        uint64_t count;

        (void) !read(vm->ev_broker, &count, sizeof(count));
        if (vm->job.running)
                return; /* one request at a time: the guest rings again after the answer */
        req.seq = __atomic_load_n(&vm->page->request.seq, __ATOMIC_ACQUIRE);
        if (req.seq == vm->answered)
                return;
        /* A copy before anything is decided on it: the guest may write the page meanwhile. */
        req.op = vm->page->request.op;
        req.flags = vm->page->request.flags;
        req.size = vm->page->request.size;
        memcpy(req.name, vm->page->request.name, sizeof(req.name));
        vm_serve(vm, &req);
}

/* --- VMs ---------------------------------------------------------------------------- */

void vm_free(FactoryVm *vm) {
        Factory *f = vm->factory;

        job_end(vm);
        if (vm->ev_ring)
                event_free(vm->ev_ring);
        factory_drop_vm(vm);
        front_conn_free(vm->conn);
        if (vm->page)
                munmap(vm->page, SHMEM_FACTORY_PAGE_SIZE);
        fd_close(vm->memfd);
        fd_close(vm->ev_broker);
        fd_close(vm->ev_vm);
        registry_release_fds(f->ctx.registry, vm->fds);
        LIST_REMOVE(f->vms, vm);
        free(vm);
}

static void vm_on_drop(FrontConn *conn, int error) {
        FactoryVm *vm = conn->owner;
        char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)];

        log_info("Factory of '%s' (pid %d) closed: %u requests served, %u refused", vm_label(vm, label),
                 (int) vm->id.pid, vm->served, vm->refused);
        vm_free(vm);
}

static void vm_on_read(FrontConn *conn) {
        _cleanup_(fdmsg_freep) FdMsg *in = NULL;
        int r = fdmsg_recv(front_conn_fd(conn), 64, 0, &in);

        /* QEMU never writes to its ivshmem socket: closing is all it does. */
        if (r != -EAGAIN)
                conn_break(&conn->conn, -ECONNRESET);
}

const FrontConnOps factory_conn_ops = {
        .read = vm_on_read,
        .drop = vm_on_drop,
        .dump = factory_vm_dump,
};

/* The page, its eventfds, its header: everything a VM's factory device needs before its handshake. */
static int vm_setup(FactoryVm *vm) {
        const Limits *l = &vm->factory->ctx.registry->limits;
        struct shmem_factory_page *page;

        vm->memfd = memfd_create("shmem-factory", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (vm->memfd < 0 || ftruncate(vm->memfd, SHMEM_FACTORY_PAGE_SIZE) < 0 ||
            fcntl(vm->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
                return -errno;
        page = mmap(NULL, SHMEM_FACTORY_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, vm->memfd, 0);
        if (page == MAP_FAILED)
                return -errno;
        vm->page = page;
        vm->ev_broker = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        vm->ev_vm = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (vm->ev_broker < 0 || vm->ev_vm < 0)
                return -errno;
        page->version = SHMEM_FACTORY_VERSION;
        page->header_size = (uint32_t) offsetof(struct shmem_factory_page, request);
        page->max_data_size = l->max_region_bytes > SHMEM_PAGE_SIZE ? l->max_region_bytes - SHMEM_PAGE_SIZE : 0;
        page->max_peers = l->default_max_peers;
        __atomic_store_n(&page->magic, SHMEM_FACTORY_MAGIC, __ATOMIC_RELEASE);
        vm->ev_ring = event_new(vm->factory->ctx.base, vm->ev_broker, EV_READ | EV_PERSIST, vm_on_ring, vm);
        return vm->ev_ring && event_add(vm->ev_ring, NULL) == 0 ? 0 : -ENOMEM;
}

/* contrib/ivshmem-server's order, as for a region: version, id, memory, the other peer (the broker), own vector. */
static void vm_handshake(FactoryVm *vm) {
        (void) qemu_wire_send(vm->conn, IVSHMEM_PROTOCOL_VERSION, -1);
        (void) qemu_wire_send(vm->conn, FACTORY_VM_ID, -1);
        (void) qemu_wire_send(vm->conn, -1, vm->memfd);
        (void) qemu_wire_send(vm->conn, FACTORY_BROKER_ID, vm->ev_broker);
        (void) qemu_wire_send(vm->conn, FACTORY_VM_ID, vm->ev_vm);
}

static void factory_on_accept(FrontListener *l, int fd, const PeerIdentity *peer, void *userdata) {
        Factory *f = userdata;
        char label[STR_ESCAPE_SIZE(SHMEM_LABEL_MAX)];
        const char *why = NULL;
        FactoryVm *vm;
        int64_t refusal;
        int r;

        vm = calloc(1, sizeof(*vm));
        if (!vm) {
                fd_close(fd);
                return;
        }
        vm->factory = f;
        vm->id = *peer;
        vm->memfd = vm->ev_broker = vm->ev_vm = -1;
        vm->job = (Job) { .pidfd = -1, .out = -1 };
        LIST_PREPEND(f->vms, vm);
        qemu_identity_read(&vm->id, f->settings.libvirt_run_dir);
        (void) qemu_identity_read_monitor(vm->id.pid, vm->monitor, sizeof(vm->monitor));
        r = frontends_admit(f->ctx.table, &vm->id, &why);
        if (r == 0)
                r = registry_hold_fds(f->ctx.registry, VM_FDS, 0, &why);
        if (r == 0) {
                vm->fds = VM_FDS;
                r = vm_setup(vm);
        }
        if (r != 0) {
                /* Closing before a version would hang QEMU: refuse properly. */
                refusal = IVSHMEM_REFUSE_VERSION_BASE + front_status(r);
                (void) send(fd, &refusal, IVSHMEM_MSG_SIZE, MSG_NOSIGNAL | MSG_DONTWAIT);
                log_peer_warning("Refusing the factory device of '%s' (pid %d): %s", vm_label(vm, label),
                                 (int) vm->id.pid, why ? why : strerror(-r));
                fd_close(fd);
                vm_free(vm);
                return;
        }
        if (front_conn_new(&vm->conn, f->ctx.table, fd, registry_new_conn_id(f->ctx.registry), &vm->id,
                           &factory_conn_ops, vm) < 0) {
                vm_free(vm);
                return;
        }
        log_info("Factory device of '%s' (pid %d) connected%s", vm_label(vm, label), (int) vm->id.pid,
                 vm->id.libvirt    ? ": a libvirt domain, served through libvirt"
                 : vm->monitor[0] ? ""
                                  : ": its QEMU names no -qmp unix: socket and is no libvirt domain, so nothing can "
                                    "be plugged into it");
        factory_keep_vm(vm);
        vm_handshake(vm);
}

bool factory_expects(Factory *f, pid_t pid, const char *name) {
        for (FactoryVm *vm = f ? f->vms : NULL; vm; vm = vm->next)
                if (vm->id.pid == pid && vm->job.running && strcmp(vm->job.region, name) == 0)
                        return true;
        return false;
}

int factory_new(Factory **ret, const PluginContext *ctx, const QemuSettings *settings, const char *dir) {
        Keeper *keeper = frontends_keeper(ctx->table);
        FdKey key = { .kind = FD_ENDPOINT, .plugin = "qemu", .region = FACTORY_KEY };
        Factory *f = calloc(1, sizeof(*f));
        int fd, r;

        if (!f)
                return -ENOMEM;
        f->ctx = *ctx;
        f->settings = *settings;
        if ((size_t) snprintf(f->path, sizeof(f->path), "%s/factory.sock", dir) >= sizeof(f->path)) {
                free(f);
                return -ENAMETOOLONG;
        }
        fd = keeper_take(keeper, &key);
        if (fd < 0) {
                r = socket_listen(f->path, SOCK_STREAM, settings->socket_mode, settings->socket_gid, false, &fd);
                if (r < 0) {
                        free(f);
                        return log_error_errno(r, "Cannot listen on '%s': %m", f->path);
                }
        }
        keeper_keep(keeper, &key, fd);
        r = front_listener_new(&f->listener, ctx->table, fd, SHMEM_PEER_KIND_QEMU, factory_on_accept, f);
        if (r < 0) {
                factory_free(f);
                return r;
        }
        *ret = f;
        return 0;
}

Factory *factory_free(Factory *f) {
        if (!f)
                return NULL;
        while (f->vms)
                vm_free(f->vms);
        if (f->listener) {
                (void) unlink(f->path);
                keeper_drop(frontends_keeper(f->ctx.table),
                            &(FdKey) { .kind = FD_ENDPOINT, .plugin = "qemu", .region = FACTORY_KEY });
                front_listener_free(f->listener);
        }
        free(f);
        return NULL;
}
