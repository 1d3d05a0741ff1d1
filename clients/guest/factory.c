/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The guest's side of the factory device (factory.h, proto/factory-page.h). */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>

#include "clock.h"
#include "factory.h"
#include "macro.h"
#include "shmem.h"

#define LOCK_POLL_MS 10

/* shmem.h says a guest's attach returns the factory's statuses as they are. */
_Static_assert((int) SHMEM_STATUS_NO_SLOT == SHMEM_FACTORY_NO_SLOT && (int) SHMEM_STATUS_HOTPLUG == SHMEM_FACTORY_HOTPLUG &&
                       (int) SHMEM_STATUS_UNSAFE == SHMEM_FACTORY_UNSAFE,
               "the factory's statuses are shmem.h's");

const FactoryTiming factory_timing_default = {
        .answer_ms = 5000,
        /* A plug is a QMP device_add and the guest's pciehp; TCG makes both slow. */
        .busy_ms = 30000,
        .poll_ns = 1000000L,
};

/* --- the page -------------------------------------------------------------- */

int factory_view(FactoryView *ret, void *page, uint64_t size) {
        struct shmem_factory_page h;
        uint64_t end;

        if (size < offsetof(struct shmem_factory_page, request))
                return -ENODEV;
        /* A copy: the checks must hold for the values used. */
        memcpy(&h, page, offsetof(struct shmem_factory_page, request));
        if (h.magic != SHMEM_FACTORY_MAGIC || h.version != SHMEM_FACTORY_VERSION)
                return -ENODEV;
        end = (uint64_t) h.header_size + sizeof(struct shmem_factory_request) + sizeof(struct shmem_factory_answer);
        if (h.header_size < offsetof(struct shmem_factory_page, request) || h.header_size % 8 != 0 || end > size)
                return -EPROTO;
        *ret = (FactoryView) {
                .request = (struct shmem_factory_request *) ((uint8_t *) page + h.header_size),
                .answer = (struct shmem_factory_answer *) ((uint8_t *) page + h.header_size +
                                                           sizeof(struct shmem_factory_request)),
                .max_data_size = h.max_data_size,
                .max_peers = h.max_peers,
        };
        return 0;
}

/* Whether @s is NUL-terminated within its @size bytes. */
static bool terminated(const char *s, size_t size) {
        return memchr(s, '\0', size) != NULL;
}

int factory_answer_check(const struct shmem_factory_answer *a, uint64_t seq, uint32_t op, FactoryAnswer *ret) {
        if (a->seq != seq || a->state == SHMEM_FACTORY_IDLE || a->state == SHMEM_FACTORY_BUSY)
                return -EAGAIN;
        if (a->state != SHMEM_FACTORY_DONE || a->status > FACTORY_STATUS_MAX ||
            !terminated(a->region, sizeof(a->region)) || !terminated(a->detail, sizeof(a->detail)))
                return -EPROTO;
        /* What the guest then looks for and maps must be a region's. */
        if (a->status == SHMEM_STATUS_OK && op != SHMEM_FACTORY_OP_DETACH &&
            (!shmem_name_valid(a->region) || a->data_size == 0 || a->data_size % SHMEM_PAGE_SIZE != 0 ||
             a->max_peers < 1 || a->max_peers > SHMEM_PEERS_MAX))
                return -EPROTO;
        *ret = (FactoryAnswer) {
                .op = op,
                .status = a->status,
                .data_size = a->data_size,
                .max_peers = a->max_peers,
        };
        memcpy(ret->region, a->region, strlen(a->region) + 1);
        memcpy(ret->detail, a->detail, strlen(a->detail) + 1);
        return 0;
}

/* Writes the request, seq last (RELEASE): the broker that sees the seq sees the rest. */
static void request_put(struct shmem_factory_request *req, uint64_t seq, uint32_t op, const char *name,
                        uint64_t size) {
        char field[sizeof(req->name)] = {};

        /* The whole field: no byte of a longer earlier name stays behind the NUL. */
        memcpy(field, name, strlen(name));
        memcpy(req->name, field, sizeof(field));
        req->size = size;
        req->flags = 0;
        req->op = op;
        __atomic_store_n(&req->seq, seq, __ATOMIC_RELEASE);
}

static int ring_now(const FactoryTiming *t, int (*ring)(void *), void *userdata, int64_t *ret_deadline) {
        /* The request ahead of the ring, which is no atomic access of the page. */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        *ret_deadline = now_ns() + (int64_t) t->answer_ms * 1000000;
        return ring(userdata);
}

int factory_exchange(const FactoryView *v, const FactoryTiming *t, int (*ring)(void *userdata), void *userdata,
                     uint32_t op, const char *name, uint64_t size, FactoryAnswer *ret) {
        uint64_t last_request, last_answer, seq, busy_seq = 0;
        int64_t start = now_ns(), deadline, busy_until = 0, end;
        bool foreign_busy = false;
        int r;

        end = start + ((int64_t) t->answer_ms + 2 * (int64_t) t->busy_ms) * 1000000;
        last_request = __atomic_load_n(&v->request->seq, __ATOMIC_ACQUIRE);
        last_answer = __atomic_load_n(&v->answer->seq, __ATOMIC_ACQUIRE);
        seq = (last_request > last_answer ? last_request : last_answer) + 1;
        request_put(v->request, seq, op, name, size);
        r = ring_now(t, ring, userdata, &deadline);
        if (r < 0)
                return r;

        for (;;) {
                uint64_t aseq = __atomic_load_n(&v->answer->seq, __ATOMIC_ACQUIRE);
                uint32_t state = __atomic_load_n(&v->answer->state, __ATOMIC_ACQUIRE);
                int64_t now = now_ns();

                if (aseq == seq && state == SHMEM_FACTORY_DONE) {
                        struct shmem_factory_answer copy;

                        memcpy(&copy, v->answer, sizeof(copy));
                        r = factory_answer_check(&copy, seq, op, ret);
                        /* -EAGAIN: rewritten under the copy, so not done after all; look again. */
                        if (r == 0)
                                ret->answer_ns = now_ns() - start;
                        if (r != -EAGAIN)
                                return r < 0 ? r : (int) ret->status;
                } else if (state == SHMEM_FACTORY_BUSY) {
                        /* Mine in progress, or another's, which ignores rings until it ends. Each has its time. */
                        if (!busy_until || aseq != busy_seq)
                                busy_until = now + (int64_t) t->busy_ms * 1000000;
                        busy_seq = aseq;
                        foreign_busy = aseq != seq;
                } else if (aseq == seq && state != SHMEM_FACTORY_IDLE)
                        return -EPROTO;
                else if (foreign_busy) {
                        /* The other request ended: mine was not looked at, ring again. */
                        foreign_busy = false;
                        busy_until = 0;
                        r = ring_now(t, ring, userdata, &deadline);
                        if (r < 0)
                                return r;
                }
                if (now >= end || now >= (state == SHMEM_FACTORY_BUSY ? busy_until : deadline))
                        return -ETIMEDOUT;
                (void) nanosleep(&(struct timespec) { .tv_nsec = t->poll_ns }, NULL);
        }
}

/* --- the device ------------------------------------------------------------ */

static int find_one(const char *bdf, void *userdata) {
        struct shmem_factory_page h;
        uint64_t bar2_size;

        if (strlen(bdf) >= sizeof(((IvshmemDev *) NULL)->bdf))
                return 0;
        /* The magic and version say what the device is; factory_open() checks the rest. */
        if (ivshmem_dev_peek(bdf, &h, offsetof(struct shmem_factory_page, header_size), &bar2_size) < 0 ||
            h.magic != SHMEM_FACTORY_MAGIC || h.version != SHMEM_FACTORY_VERSION)
                return 0;
        memcpy(userdata, bdf, strlen(bdf) + 1);
        return 1;
}

int factory_open(Factory **ret) {
        _cleanup_(factory_freep) Factory *f = NULL;
        char bdf[sizeof(f->dev.bdf)];
        int r;

        r = ivshmem_dev_scan(find_one, bdf);
        if (r < 0)
                return r;
        if (r == 0)
                return FACTORY_NONE;
        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        ivshmem_dev_init(&f->dev);
        f->lock = -1;
        /* No vfio: polling needs no vector, and the device stays free for other processes. */
        r = ivshmem_dev_open(&f->dev, bdf, false);
        if (r != 0)
                return r < 0 ? r : -EBUSY;
        r = factory_view(&f->view, f->dev.bar2, f->dev.bar2_size);
        if (r < 0)
                return r == -ENODEV ? -EPROTO : r; /* it was a factory page a moment ago */
        f->lock = ivshmem_dev_open_dir(bdf);
        if (f->lock < 0)
                return f->lock;
        *ret = TAKE_PTR(f);
        return 0;
}

Factory *factory_free(Factory *f) {
        if (!f)
                return NULL;
        fd_close(f->lock); /* releases the lock */
        ivshmem_dev_close(&f->dev);
        free(f);
        return NULL;
}

void factory_freep(Factory **f) {
        factory_free(*f);
}

int factory_lock(Factory *f, int timeout_ms) {
        int64_t deadline = now_ms() + timeout_ms;

        /* flock() cannot time out: poll it. */
        while (flock(f->lock, LOCK_EX | LOCK_NB) < 0) {
                if (errno != EWOULDBLOCK && errno != EINTR)
                        return -errno;
                if (now_ms() >= deadline)
                        return -ETIMEDOUT;
                sleep_ms(LOCK_POLL_MS);
        }
        return 0;
}

void factory_unlock(Factory *f) {
        (void) flock(f->lock, LOCK_UN);
}

static int ring_broker(void *userdata) {
        Factory *f = userdata;

        /* The broker is peer 0 on the factory's wire, its vector 0. */
        return ivshmem_dev_write_reg(&f->dev, IVSHMEM_REG_DOORBELL, 0u << 16 | 0u);
}

int factory_request(Factory *f, uint32_t op, const char *name, uint64_t size, FactoryAnswer *ret) {
        return factory_exchange(&f->view, &factory_timing_default, ring_broker, f, op, name, size, ret);
}
