/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fake broker of libshmem's unit tests (fake-broker.h): the broker's side
 * of Hello, Attach and Detach, and the membership events it sends.
 */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "fake-broker.h"
#include "msg.h"
#include "test-util.h"

Fake fake;

static void fake_send(int fd, const Message *m, int *fds, size_t n_fds) {
        _cleanup_(fdmsg_freep) FdMsg *out = NULL;

        ck_assert_int_eq(msg_encode(&out, m, fds, n_fds), 0);
        ck_assert_int_eq(fdmsg_send(fd, out), 1);
}

static void fake_reply(int fd, uint64_t serial, int status) {
        Shmem__Reply r = SHMEM__REPLY__INIT;
        Message m = SHMEM__MESSAGE__INIT;

        r.status = (Shmem__Status) status;
        r.error = status ? "refused by the fake" : "";
        m.serial = serial;
        m.body_case = SHMEM__MESSAGE__BODY_REPLY;
        m.reply = &r;
        fake_send(fd, &m, NULL, 0);
}

static Message *fake_recv(int fd) {
        _cleanup_(fdmsg_freep) FdMsg *in = NULL;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        Message *m = NULL;

        if (poll(&p, 1, 5000) != 1 || fdmsg_recv(fd, SHMEM_MSG_MAX, 0, &in) != 0 || msg_decode(&m, in) < 0)
                return NULL;
        return m;
}

static int dup_fd(int fd) {
        return fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

static void fake_attach_reply(Fake *f, uint64_t serial) {
        Shmem__AttachReply ar = SHMEM__ATTACH_REPLY__INIT;
        Shmem__Reply r = SHMEM__REPLY__INIT;
        Message m = SHMEM__MESSAGE__INIT;
        Shmem__PeerInfo infos[2], *ptrs[2];
        int fds[1 + MAXP + 1 + 2], memfd;
        size_t n = 0;

        memfd = memfd_create("fake", MFD_CLOEXEC);
        if (memfd < 0 || ftruncate(memfd, REGION_SIZE) < 0)
                abort();
        f->map = mmap(NULL, REGION_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
        if (f->map == MAP_FAILED)
                abort();
        f->page = (struct shmem_control_page *) f->map;
        f->page->magic = SHMEM_LAYOUT_MAGIC;
        f->page->version = SHMEM_LAYOUT_VERSION;
        f->page->max_peers = MAXP;
        f->page->vectors = MAXP + 1;
        f->page->epoch = 5;
        f->page->active = BIT(0) | BIT(ME) | BIT(2);

        fds[n++] = memfd;
        for (unsigned v = 0; v <= MAXP; v++) {
                f->vec[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                fds[n++] = dup_fd(f->vec[v]);
        }
        for (unsigned i = 0; i < 2; i++) {
                unsigned k = i == 0 ? 0 : 2;

                f->to[k] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                shmem__peer_info__init(&infos[i]);
                infos[i].index = k;
                infos[i].kind = SHMEM__PEER_KIND__KIND_HOST;
                infos[i].label = "other";
                infos[i].fd = f->bad_fd_index && i == 1 ? 99 : (int32_t) n;
                ptrs[i] = &infos[i];
                fds[n++] = dup_fd(f->to[k]);
        }
        ar.index = ME;
        ar.data_offset = SHMEM_DATA_OFFSET;
        ar.data_size = 4096;
        ar.region_size = REGION_SIZE;
        ar.max_peers = MAXP;
        ar.vectors = MAXP + 1;
        ar.created = true;
        ar.n_peers = 2;
        ar.peers = ptrs;
        r.body_case = SHMEM__REPLY__BODY_ATTACH;
        r.attach = &ar;
        m.serial = serial;
        m.body_case = SHMEM__MESSAGE__BODY_REPLY;
        m.reply = &r;
        fake_send(f->conn, &m, fds, n);
}

/* The broker's side of shmem_attach(): Hello, then Attach. */
void *fake_run(void *userdata) {
        Fake *f = userdata;
        Message *m;

        f->conn = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (f->conn < 0)
                return NULL;
        m = fake_recv(f->conn);
        if (!m || m->body_case != SHMEM__MESSAGE__BODY_HELLO) {
                msg_free(m);
                return NULL;
        }
        snprintf(f->label, sizeof(f->label), "%s", m->hello->label);
        {
                Shmem__HelloReply h = SHMEM__HELLO_REPLY__INIT;
                Shmem__Reply r = SHMEM__REPLY__INIT;
                Message hr = SHMEM__MESSAGE__INIT;

                h.version = 1;
                h.broker = "fake";
                r.body_case = SHMEM__REPLY__BODY_HELLO;
                r.hello = &h;
                hr.serial = m->serial;
                hr.body_case = SHMEM__MESSAGE__BODY_REPLY;
                hr.reply = &r;
                fake_send(f->conn, &hr, NULL, 0);
        }
        m = msg_free(m);
        m = fake_recv(f->conn);
        if (!m || m->body_case != SHMEM__MESSAGE__BODY_ATTACH) {
                msg_free(m);
                return NULL;
        }
        snprintf(f->name, sizeof(f->name), "%s", m->attach->name);
        f->mode = m->attach->mode;
        if (f->status)
                fake_reply(f->conn, m->serial, f->status);
        else
                fake_attach_reply(f, m->serial);
        msg_free(m);
        return NULL;
}

void fake_setup(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        Fake *f = &fake;

        fd_leak_setup();
        *f = (Fake) { .conn = -1 };
        for (unsigned i = 0; i <= MAXP; i++)
                f->vec[i] = -1;
        for (unsigned i = 0; i < MAXP; i++)
                f->to[i] = -1;
        snprintf(f->dir, sizeof(f->dir), "/tmp/test-libshmem-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(f->dir));
        snprintf(f->path, sizeof(f->path), "%.63s/broker.sock", f->dir);
        strcpy(sa.sun_path, f->path);
        f->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(f->listen_fd, 0);
        ck_assert_int_eq(bind(f->listen_fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(f->listen_fd, 4), 0);
}

void fake_teardown(void) {
        Fake *f = &fake;

        fd_close(f->conn);
        fds_close(f->vec, MAXP + 1);
        fds_close(f->to, MAXP);
        if (f->map)
                munmap(f->map, REGION_SIZE);
        close(f->listen_fd);
        unlink(f->path);
        rmdir(f->dir);
        fd_leak_teardown();
}

int attach_with(shmem_t **ret, const char *name, unsigned flags, const struct shmem_attach_opts *o) {
        int r;

        ck_assert_int_eq(pthread_create(&fake.thread, NULL, fake_run, &fake), 0);
        r = shmem_attach(ret, name, 4096, flags, o);
        ck_assert_int_eq(pthread_join(fake.thread, NULL), 0);
        return r;
}

shmem_t *attach(void) {
        struct shmem_attach_opts o = { .size = sizeof(o), .socket = fake.path, .label = "unit" };
        shmem_t *s = NULL;

        ck_assert_int_eq(attach_with(&s, "region", 0, &o), 0);
        ck_assert_ptr_nonnull(s);
        return s;
}

/* shmem_detach() with the broker's reply queued before it asks (serial 3: Hello, Attach, Detach). */
void detach(shmem_t *s) {
        Message *m;

        fake_reply(fake.conn, 3, 0);
        ck_assert_ptr_null(shmem_detach(s));
        m = fake_recv(fake.conn);
        ck_assert_ptr_nonnull(m);
        ck_assert_int_eq(m->body_case, SHMEM__MESSAGE__BODY_DETACH);
        ck_assert_uint_eq(m->serial, 3);
        ck_assert_str_eq(m->detach->name, "region");
        msg_free(m);
}

/* The broker's membership change: page first, then the event, then the control vector. */
void fake_joined(unsigned k, bool ring) {
        Shmem__Joined j = SHMEM__JOINED__INIT;
        Shmem__PeerInfo pi = SHMEM__PEER_INFO__INIT;
        Message m = SHMEM__MESSAGE__INIT;
        int fd;
        uint64_t one = 1;

        fake.to[k] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        fd = dup_fd(fake.to[k]);
        __atomic_fetch_or(&fake.page->active, BIT(k), __ATOMIC_RELEASE);
        j.epoch = __atomic_add_fetch(&fake.page->epoch, 1, __ATOMIC_RELEASE);
        j.name = "region";
        pi.index = k;
        pi.kind = SHMEM__PEER_KIND__KIND_QEMU;
        pi.fd = 0;
        j.peer = &pi;
        m.body_case = SHMEM__MESSAGE__BODY_JOINED;
        m.joined = &j;
        fake_send(fake.conn, &m, &fd, 1);
        if (ring)
                ck_assert_int_eq(write(fake.vec[MAXP], &one, sizeof(one)), 8);
}

void fake_left(unsigned k) {
        Shmem__Left l = SHMEM__LEFT__INIT;
        Message m = SHMEM__MESSAGE__INIT;
        uint64_t one = 1;

        fake.to[k] = fd_close(fake.to[k]);
        __atomic_store_n(&fake.page->slots[k].pending, 0, __ATOMIC_RELEASE);
        __atomic_fetch_and(&fake.page->active, ~BIT(k), __ATOMIC_RELEASE);
        l.epoch = __atomic_add_fetch(&fake.page->epoch, 1, __ATOMIC_RELEASE);
        l.name = "region";
        l.index = k;
        m.body_case = SHMEM__MESSAGE__BODY_LEFT;
        m.left = &l;
        fake_send(fake.conn, &m, NULL, 0);
        ck_assert_int_eq(write(fake.vec[MAXP], &one, sizeof(one)), 8);
}
