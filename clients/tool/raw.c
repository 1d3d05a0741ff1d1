/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmem-guest's raw mode (raw.h): the ivshmem device alone, as a guest written
 * for QEMU's contrib/ivshmem-server uses it (clients/guest/ivshmem-dev.h):
 * IVPosition, Doorbell (peer << 16 | vector), BAR2 as data from offset 0, and
 * one MSI-X eventfd per vector, reporting which vector fired.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "clock.h"
#include "ivshmem-dev.h"
#include "raw.h"

static int first_device(const char *bdf, void *userdata) {
        char *ret = userdata;

        if (strlen(bdf) >= sizeof(((IvshmemDev *) NULL)->bdf))
                return 0;
        memcpy(ret, bdf, strlen(bdf) + 1);
        return 1;
}

/* Opens @bdf (NULL: the first ivshmem device) and enables every MSI-X vector. */
int raw_open(Tool *t, const char *bdf) {
        char found[sizeof(t->dev.bdf)];
        int r;

        if (!bdf) {
                r = ivshmem_dev_scan(first_device, found);
                if (r < 0)
                        return fail("raw: looking for an ivshmem device: %s", strerror(-r));
                if (r == 0)
                        return fail("raw: no ivshmem device (PCI 1af4:1110)");
                bdf = found;
        } else if (!ivshmem_dev_is_ivshmem(bdf))
                return fail("raw: %s is not an ivshmem device (PCI 1af4:1110)", bdf);
        r = ivshmem_dev_open(&t->dev, bdf, ivshmem_dev_vfio_usable(bdf));
        if (r == IVSHMEM_DEV_BUSY)
                return fail("raw: %s is in use (vfio allows one opener per device)", bdf);
        if (r < 0)
                return fail("raw: open %s: %s", bdf, strerror(-r));
        /* ivshmem-plain has no MSI-X: data only. */
        if (t->dev.vfio && t->dev.msix_count > 0) {
                r = ivshmem_dev_enable_irqs(&t->dev, t->dev.msix_count);
                if (r < 0)
                        return fail("raw: enabling MSI-X on %s: %s", bdf, strerror(-r));
        }
        t->data = t->dev.bar2;
        t->size = t->dev.bar2_size;
        return 0;
}

static int cmd_raw_info(Tool *t, char **args) {
        uint32_t position;
        int r;

        r = ivshmem_dev_read_reg(&t->dev, IVSHMEM_REG_IV_POSITION, &position);
        if (r < 0)
                return fail("info: reading IVPosition: %s", strerror(-r));
        out("info position=%" PRIu32 " size=%" PRIu64 " vectors=%u device=%s interrupts=%s", position, t->size,
            t->dev.vectors, t->dev.bdf, t->dev.vectors ? "msix" : "none");
        return 0;
}

static int cmd_ring(Tool *t, char **args) {
        uint64_t peer, vector;
        int r;

        if (parse_u64(args[0], &peer) < 0 || peer > 0xffff)
                return fail("ring: bad peer '%s' (0-65535)", args[0]);
        if (parse_u64(args[1], &vector) < 0 || vector > 0xffff)
                return fail("ring: bad vector '%s' (0-65535)", args[1]);
        /* Data written before the ring is seen by a peer the ring wakes. */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        r = ivshmem_dev_write_reg(&t->dev, IVSHMEM_REG_DOORBELL, (uint32_t) (peer << 16 | vector));
        if (r < 0)
                return fail("ring: writing Doorbell: %s", strerror(-r));
        return 0;
}

/*
 * Waits up to @ms for vectors to fire and reads their eventfds to zero,
 * printing "vector V count=C" for each. Returns the number of vectors that
 * fired, with their counts added to @fired, or -1 after a FAIL.
 */
static int raw_collect(Tool *t, const char *what, int ms, uint64_t fired[IVSHMEM_DEV_VECTORS_MAX]) {
        struct epoll_event evs[IVSHMEM_DEV_VECTORS_MAX];
        int n;

        n = epoll_wait(t->dev.epfd, evs, IVSHMEM_DEV_VECTORS_MAX, ms);
        if (n < 0)
                return errno == EINTR ? 0 : fail("%s: epoll_wait: %s", what, strerror(errno));
        for (int i = 0; i < n; i++) {
                unsigned v = evs[i].data.u32;
                uint64_t count;

                if (read(t->dev.vec[v], &count, sizeof(count)) != sizeof(count))
                        continue; /* EAGAIN: nothing to count after all */
                out("vector %u count=%" PRIu64, v, count);
                fired[v] += count;
        }
        return n;
}

/* Parses a wait's timeout; fails (-1) without interrupts, where a wait could only time out. */
static int raw_wait_args(Tool *t, const char *what, const char *ms_arg, int *ret_ms) {
        if (parse_ms(ms_arg, ret_ms) < 0)
                return fail("%s: bad timeout '%s'", what, ms_arg);
        if (t->dev.vectors == 0)
                return fail("%s: no interrupts on %s (MSI-X needs vfio-pci, which needs an IOMMU "
                            "in the guest: q35 + intel-iommu)", what, t->dev.bdf);
        return 0;
}

static int cmd_wait_vector(Tool *t, char **args) {
        uint64_t fired[IVSHMEM_DEV_VECTORS_MAX] = {}, vector;
        int64_t deadline;
        int ms = 0;

        if (parse_u64(args[0], &vector) < 0)
                return fail("wait-vector: bad vector '%s'", args[0]);
        if (raw_wait_args(t, "wait-vector", args[1], &ms) < 0)
                return -1;
        if (vector >= t->dev.vectors)
                return fail("wait-vector: vector %" PRIu64 " does not exist (%u vectors)", vector, t->dev.vectors);
        deadline = now_ms() + ms;
        for (;;) {
                int64_t left = deadline - now_ms();

                if (raw_collect(t, "wait-vector", left > 0 ? (int) left : 0, fired) < 0)
                        return -1;
                for (unsigned v = 0; v < t->dev.vectors; v++)
                        if (fired[v] && v != vector)
                                return fail("wait-vector %" PRIu64 ": vector %u fired", vector, v);
                if (fired[vector])
                        return 0;
                if (left <= 0)
                        return fail("wait-vector %" PRIu64 ": no interrupt within %d ms", vector, ms);
        }
}

static int cmd_expect_no_vector(Tool *t, char **args) {
        uint64_t fired[IVSHMEM_DEV_VECTORS_MAX] = {};
        int64_t deadline;
        int ms = 0;

        if (raw_wait_args(t, "expect-no-vector", args[0], &ms) < 0)
                return -1;
        deadline = now_ms() + ms;
        for (;;) {
                int64_t left = deadline - now_ms();
                int n = raw_collect(t, "expect-no-vector", left > 0 ? (int) left : 0, fired);

                if (n < 0)
                        return -1;
                for (unsigned v = 0; v < t->dev.vectors; v++)
                        if (fired[v])
                                return fail("expect-no-vector: vector %u fired", v);
                if (left <= 0)
                        return 0;
        }
}

const Command raw_commands[] = {
        { "info", 0, cmd_raw_info, MODE_RAW },
        { "ring", 2, cmd_ring, MODE_RAW },
        { "wait-vector", 2, cmd_wait_vector, MODE_RAW },
        { "expect-no-vector", 1, cmd_expect_no_vector, MODE_RAW },
        {},
};
