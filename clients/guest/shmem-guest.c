/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libshmem-guest: the libshmem API (clients/libshmem/shmem.h) inside a Linux
 * guest, over the ivshmem-doorbell PCI device QEMU gives it for a region
 * (docs/region-layout.md; QEMU docs/specs/ivshmem-spec.txt for the device).
 *
 * - The region: BAR2 is the broker's memfd; page 0 is the control page.
 *   The library finds the device whose control page carries the name and
 *   this VM's IVPosition in an active slot. Failing that, if the VM has a
 *   factory device (factory.h), it asks the factory, which creates the
 *   region or plugs a device for it, and waits for that device to appear.
 * - Signals out: set my bit in the target's pending word, then ring the
 *   target's doorbell id through BAR0 Doorbell.
 * - Signals in: MSI-X vectors as eventfds from vfio-pci (no kernel module of
 *   our own); vector j firing is peer j's ring (shmem_event.rang). vfio-pci
 *   needs an IOMMU (Debian's kernel has no vfio no-IOMMU mode): q35 +
 *   intel-iommu,intremap=on and `intel_iommu=on` in the guest.
 *   Without one (or with SHMEM_GUEST_POLL=1 in the environment) the library
 *   maps the BARs through sysfs and polls the pending word and the epoch every
 *   millisecond; shmem_fd() is then -EOPNOTSUPP.
 *
 * The device's driver is left bound to vfio-pci at detach: rebinding gains
 * nothing. vfio allows one opener per IOMMU group, so one handle per device
 * per guest with vfio (another attach gets SHMEM_STATUS_BUSY); polling handles
 * can share a device. The broker's peer is the QEMU, not this process.
 * Without a factory the guest's index stays attached while its QEMU runs,
 * whatever the handle does, so detach and attach again keep the index and
 * the signals sent meanwhile. With one, the last handle of the guest on a
 * device sends DETACH at detach (the others hold flock(LOCK_SH) on the
 * device's sysfs directory; every attach and detach runs under the factory's
 * lock, so none sees a device between a last holder's check and its DETACH):
 * the broker parks the device, and the next attach asks the factory again.
 * Needs root (sysfs, /dev/vfio).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "control-page.h"
#include "factory.h"
#include "ivshmem-dev.h"
#include "macro.h"
#include "shmem-guest.h"
#include "shmem-raw.h"
#include "shmem.h"

#define POLL_INTERVAL_NS 1000000L
/*
 * Even with MSI-X, shmem_wait() looks at the pending word at least this
 * often. A ring can be dropped with its bit left set: my QEMU drops rings that
 * come before I enabled MSI-X (the first look covers those), and the sender's
 * QEMU drops rings to a peer it has not been told about yet, which a guest
 * sender cannot see (the page says "active" before the broker's join message
 * reaches its QEMU). Nothing else would wake me for that bit.
 */
#define RELOOK_MS 100
/*
 * The same for shmem_fd() users, who do not call shmem_wait() until the fd is
 * readable: a timer in the epoll set, for a while after attach only. The drop
 * needs a sender that saw me join before its QEMU did, so it happens just
 * after my QEMU joined, which is at or before my attach.
 */
#define RELOOK_WINDOW_MS 10000
#define TAG_TIMER UINT32_MAX /* epoll data of the timer; vectors use their number */
/*
 * With a factory: how long an attach or detach waits for the other users of
 * the factory in this guest (one request takes at most the factory's answer
 * and busy times, factory.c, and DEVICE_WAIT_MS), and how long an attach
 * waits for the device of a region the factory said yes to: a hot-plugged
 * device appears when the guest's pciehp (q35) or acpiphp (pc) has seen it,
 * which takes seconds under TCG.
 */
#define FACTORY_LOCK_MS 60000
#define DEVICE_WAIT_MS 20000
#define DEVICE_LOOK_MS 20

struct shmem {
        char *name;                   /* as the caller named it */
        char *region;                 /* as the device's control page names it */
        IvshmemDev dev;               /* dev.vfio: MSI-X; else the pending word is polled */
        Factory *factory;             /* the VM's factory device; NULL without one */
        int hold;                     /* with a factory: the device's sysfs directory, LOCK_SH */
        struct shmem_control_page *page;
        uint8_t *data;
        uint64_t data_size;
        unsigned index, max_peers, vectors;
        int timer;                    /* relook timer, RELOOK_WINDOW_MS after attach */
        int64_t relook_until;         /* CLOCK_MONOTONIC ns */
        uint64_t seen_epoch;
};

static shmem_t *shmem_free(shmem_t *s) {
        if (!s)
                return NULL;
        fd_close(s->timer);
        fd_close(s->hold);
        ivshmem_dev_close(&s->dev);
        factory_free(s->factory);
        free(s->region);
        free(s->name);
        free(s);
        return NULL;
}
static void shmem_freep(shmem_t **s) { shmem_free(*s); }

static int shmem_alloc(shmem_t **ret) {
        shmem_t *s = calloc(1, sizeof(*s));

        if (!s)
                return -ENOMEM;
        ivshmem_dev_init(&s->dev);
        s->timer = -1;
        s->hold = -1;
        *ret = s;
        return 0;
}

/* --- the control page ------------------------------------------------------ */

/*
 * Whether the device at @bdf carries region @name: 1 yes, 0 no, -EBUSY if
 * its control page cannot be looked at, through sysfs: vfio holds the BAR of
 * a device another handle uses, and CONFIG_IO_STRICT_DEVMEM then refuses the
 * mapping. On 1, @ret_active says whether this VM is attached to it there: an
 * active slot carries the device's IVPosition (not so for a device the
 * broker parked at a DETACH, or one whose region is gone).
 */
static int device_has_region(const char *bdf, const char *name, bool *ret_active) {
        struct shmem_control_page page;
        uint64_t bar2_size;
        uint32_t ivposition;
        int r;

        r = ivshmem_dev_peek(bdf, &page, sizeof(page), &bar2_size);
        if (r == -EBUSY)
                return r;
        if (r < 0 || !shmem_page_header_valid(&page, bar2_size) || !shmem_page_header_names(&page, name))
                return 0;
        *ret_active = false;
        if (ivshmem_dev_peek_reg(bdf, IVSHMEM_REG_IV_POSITION, &ivposition) < 0)
                return 1;
        for (unsigned i = 0; i < page.max_peers; i++)
                if (page.slots[i].state == SHMEM_SLOT_ACTIVE && page.slots[i].doorbell_id == ivposition)
                        *ret_active = true;
        return 1;
}

/* --- attach ---------------------------------------------------------------- */

static int relook_timer_start(shmem_t *s) {
        const struct timespec period = { .tv_nsec = RELOOK_MS * 1000000L };
        struct itimerspec its = { .it_interval = period, .it_value = period };
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = TAG_TIMER };

        s->timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (s->timer < 0)
                return -errno;
        if (timerfd_settime(s->timer, 0, &its, NULL) < 0)
                return -errno;
        if (epoll_ctl(s->dev.epfd, EPOLL_CTL_ADD, s->timer, &ev) < 0)
                return -errno;
        s->relook_until = now_ns() + RELOOK_WINDOW_MS * 1000000L;
        return 0;
}

/* Reads the geometry from the mapped page and finds my index. */
static int shmem_setup_layout(shmem_t *s) {
        struct shmem_control_page h;
        uint32_t ivposition;
        int r;

        /* A copy: the page can change under us, the checks must hold for what is used. */
        memcpy(&h, s->dev.bar2, sizeof(h));
        if (!shmem_page_header_valid(&h, s->dev.bar2_size) || !shmem_page_header_names(&h, s->region))
                return SHMEM_STATUS_DOES_NOT_EXIST;
        /* QEMU's `vectors=` must be max_peers + 1: without the control vector no membership wakeup. */
        if (s->dev.vfio && s->dev.msix_count < h.vectors)
                return -ENXIO;
        s->page = s->dev.bar2;
        s->max_peers = h.max_peers;
        s->vectors = h.vectors;
        s->data = (uint8_t *) s->dev.bar2 + h.data_offset;
        s->data_size = h.data_size;

        /*
         * IVPosition is my QEMU's doorbell id, not my index (QEMU 7.2 must
         * never see an id reused, docs/design.md): the index is the active
         * slot that carries the id. The broker fills the slot before it
         * answers QEMU, and QEMU answers before the guest runs.
         */
        r = ivshmem_dev_read_reg(&s->dev, IVSHMEM_REG_IV_POSITION, &ivposition);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < s->max_peers; i++)
                if (shmem_page_load32(&s->page->slots[i].state) == SHMEM_SLOT_ACTIVE &&
                    shmem_page_load32(&s->page->slots[i].doorbell_id) == ivposition) {
                        s->index = i;
                        s->seen_epoch = shmem_page_load(&s->page->epoch);
                        return 0;
                }
        return -EPROTO;
}

/* What a scan of the ivshmem devices found for a region. */
typedef struct FindDevice {
        const char *name;
        char bdf[sizeof(((IvshmemDev *) NULL)->bdf)];
        bool found;  /* bdf carries the region */
        bool active; /* ... and this VM is attached to it there */
        bool busy;   /* a device could not be looked at */
} FindDevice;

static int find_device_one(const char *bdf, void *userdata) {
        FindDevice *f = userdata;
        bool active = false;
        int has;

        if (strlen(bdf) >= sizeof(f->bdf))
                return 0;
        has = device_has_region(bdf, f->name, &active);
        if (has < 0)
                f->busy = true;
        if (has <= 0 || (f->found && !active))
                return 0;
        memcpy(f->bdf, bdf, strlen(bdf) + 1);
        f->found = true;
        f->active = active;
        return active; /* an active one ends the scan; else the first that carries it is kept */
}

/*
 * The first ivshmem device (in PCI address order) whose control page names
 * @name and has this VM attached, else the first that names it. None, but
 * one could not be looked at: SHMEM_STATUS_BUSY, since it may be the one, in
 * use by another handle in this guest.
 */
static int shmem_find_device(const char *name, FindDevice *f) {
        int r;

        *f = (FindDevice) { .name = name };
        r = ivshmem_dev_scan(find_device_one, f);
        if (r < 0)
                return r;
        if (!f->found)
                return f->busy ? SHMEM_STATUS_BUSY : SHMEM_STATUS_DOES_NOT_EXIST;
        return 0;
}

/* Opens the device at @bdf as the handle's, for region @region (its control page's name). */
static int shmem_open_device(shmem_t *s, const char *bdf, const char *region) {
        const char *force_poll;
        bool vfio;
        int r;

        s->region = strdup(region);
        if (!s->region)
                return -ENOMEM;
        force_poll = getenv("SHMEM_GUEST_POLL");
        vfio = !(force_poll && *force_poll && strcmp(force_poll, "0") != 0) && ivshmem_dev_vfio_usable(bdf);
        r = ivshmem_dev_open(&s->dev, bdf, vfio);
        if (r == IVSHMEM_DEV_BUSY)
                return SHMEM_STATUS_BUSY;
        if (r != 0)
                return r;
        r = shmem_setup_layout(s);
        if (r != 0)
                return r;
        if (s->factory) {
                /* A holder: while it is, another handle's detach does not make the VM leave. */
                s->hold = ivshmem_dev_open_dir(bdf);
                if (s->hold < 0)
                        return s->hold;
                if (flock(s->hold, LOCK_SH | LOCK_NB) < 0)
                        return -errno;
        }
        if (s->dev.vfio) {
                /*
                 * A ring that comes before MSI-X is on is lost by QEMU; its
                 * pending bit is not, and the first shmem_wait() takes the
                 * pending word before it sleeps (docs/region-layout.md, "In
                 * a guest").
                 */
                r = ivshmem_dev_enable_irqs(&s->dev, s->vectors);
                if (r < 0)
                        return r;
                r = relook_timer_start(s);
                if (r < 0)
                        return r;
        }
        return 0;
}

/*
 * After the factory's yes: waits up to DEVICE_WAIT_MS for the device of
 * @region with this VM attached (a hot-plugged one appears when the guest
 * has seen the plug; a parked one is active again once the broker has
 * answered), and opens it. Timed out: SHMEM_STATUS_BUSY if a device could
 * not be looked at (it may be that one, held by another handle), else
 * -ETIMEDOUT.
 */
static int shmem_open_region(shmem_t *s, const char *region) {
        int64_t deadline = now_ms() + DEVICE_WAIT_MS;
        FindDevice f;
        int r;

        for (;;) {
                r = shmem_find_device(region, &f);
                if (r < 0)
                        return r;
                if (f.active)
                        return shmem_open_device(s, f.bdf, region);
                if (now_ms() >= deadline)
                        return f.busy ? SHMEM_STATUS_BUSY : -ETIMEDOUT;
                sleep_ms(DEVICE_LOOK_MS);
        }
}

/* shmem_attach() once the handle has its name and, with a factory, the factory's lock. */
static int shmem_attach_locked(shmem_t *s, uint64_t size, unsigned flags, FactoryAnswer *answer) {
        FindDevice f;
        uint32_t op;
        int r;

        r = shmem_find_device(s->name, &f);
        if (r < 0)
                return r;
        /* Without a factory, a guest cannot create: create-or-attach finds, exclusive create always fails. */
        if (!s->factory || f.active) {
                if (r != 0)
                        return r;
                if (flags & SHMEM_EXCLUSIVE)
                        return SHMEM_STATUS_EXISTS;
                return shmem_open_device(s, f.bdf, s->name);
        }
        op = flags & SHMEM_FIND ? SHMEM_FACTORY_OP_FIND :
             flags & SHMEM_EXCLUSIVE ? SHMEM_FACTORY_OP_EXCLUSIVE : SHMEM_FACTORY_OP_ATTACH;
        r = factory_request(s->factory, op, s->name, op == SHMEM_FACTORY_OP_FIND ? 0 : size, answer);
        if (r != 0)
                return r;
        return shmem_open_region(s, answer->region);
}

int shmem_guest_attach(shmem_t **ret, const char *name, uint64_t size, unsigned flags,
                       FactoryAnswer *ret_answer) {
        _cleanup_(shmem_freep) shmem_t *s = NULL;
        FactoryAnswer answer = { .op = SHMEM_FACTORY_OP_NONE };
        int r, factory_error;

        if (ret_answer)
                *ret_answer = answer;
        if (!ret || !name || (flags & ~(unsigned) (SHMEM_FIND | SHMEM_EXCLUSIVE)) ||
            (flags & SHMEM_FIND && flags & SHMEM_EXCLUSIVE))
                return -EINVAL;
        if (!shmem_name_valid(name))
                return SHMEM_STATUS_ILLEGAL_NAME;

        r = shmem_alloc(&s);
        if (r < 0)
                return r;
        s->name = strdup(name);
        if (!s->name)
                return -ENOMEM;
        /* A factory that cannot be used does not keep the VM's present devices from being. */
        factory_error = factory_open(&s->factory);
        if (s->factory) {
                r = factory_lock(s->factory, FACTORY_LOCK_MS);
                if (r < 0)
                        return r;
        }
        r = shmem_attach_locked(s, size, flags, &answer);
        if (s->factory)
                factory_unlock(s->factory);
        if (r == SHMEM_STATUS_DOES_NOT_EXIST && factory_error < 0)
                r = factory_error;
        if (ret_answer)
                *ret_answer = answer;
        if (r != 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

int shmem_attach(shmem_t **ret, const char *name, uint64_t size, unsigned flags,
                 const struct shmem_attach_opts *opts) {
        return shmem_guest_attach(ret, name, size, flags, NULL);
}

int shmem_find(shmem_t **ret, const char *name, const struct shmem_attach_opts *opts) {
        return shmem_attach(ret, name, 0, SHMEM_FIND, opts);
}

int shmem_guest_detach(shmem_t *s, FactoryAnswer *ret_answer) {
        FactoryAnswer answer = { .op = SHMEM_FACTORY_OP_NONE };
        int r = 0;

        if (s && s->factory) {
                r = factory_lock(s->factory, FACTORY_LOCK_MS);
                if (r == 0) {
                        /* The guest's last handle on the device (a failed upgrade drops the lock: fine here). */
                        bool last = flock(s->hold, LOCK_EX | LOCK_NB) == 0;

                        /* Done with the device before the others see the VM leave. */
                        ivshmem_dev_close(&s->dev);
                        if (last)
                                r = factory_request(s->factory, SHMEM_FACTORY_OP_DETACH, s->name, 0, &answer);
                        /* Unheld before the next attach may look: its LOCK_SH must not meet my LOCK_EX. */
                        s->hold = fd_close(s->hold);
                        factory_unlock(s->factory);
                }
        }
        if (ret_answer)
                *ret_answer = answer;
        shmem_free(s);
        return r;
}

shmem_t *shmem_detach(shmem_t *s) {
        (void) shmem_guest_detach(s, NULL);
        return NULL;
}

const char *shmem_guest_region(shmem_t *s) {
        return s ? s->region : NULL;
}

const char *shmem_guest_device(shmem_t *s) {
        return s ? s->dev.bdf : NULL;
}

void *shmem_data(shmem_t *s) {
        return s ? s->data : NULL;
}

uint64_t shmem_size(shmem_t *s) {
        return s ? s->data_size : 0;
}

unsigned shmem_index(shmem_t *s) {
        return s ? s->index : 0;
}

unsigned shmem_max_peers(shmem_t *s) {
        return s ? s->max_peers : 0;
}

const char *shmem_name(shmem_t *s) {
        return s ? s->name : NULL;
}

uint64_t shmem_active(shmem_t *s) {
        return s ? shmem_page_active(s->page, s->max_peers, s->index) : 0;
}

uint64_t shmem_unconsumed(shmem_t *s) {
        return s ? shmem_page_unconsumed(s->page, s->max_peers, s->index) : 0;
}

/*
 * Signals the attached peers in @mask but me: ORs @bits into each one's
 * pending word (none if 0), then rings its doorbell id. shmem_notify() sets
 * my bit; shmem_raw_ring() sets none.
 */
static int shmem_signal(shmem_t *s, uint64_t mask, uint64_t bits) {
        uint64_t targets;
        int ret = 0;

        targets = mask & shmem_active(s) & ~BIT(s->index);
        for (unsigned k = 0; k < s->max_peers; k++) {
                uint32_t id;
                int r;

                if (!(targets & BIT(k)) || shmem_page_load32(&s->page->slots[k].state) != SHMEM_SLOT_ACTIVE)
                        continue;
                id = shmem_page_load32(&s->page->slots[k].doorbell_id);
                if (id > SHMEM_DOORBELL_ID_MAX)
                        continue;
                /*
                 * The bit first, then the ring: a receiver woken by the ring
                 * finds it, and a ring QEMU drops (the receiver has no MSI-X
                 * yet, or my QEMU does not know the peer yet) leaves the bit
                 * for its next look (control-page.h: why it is a full barrier).
                 */
                if (bits)
                        shmem_page_set_pending(s->page, k, bits);
                /* Vector 0 of peer `id` is the one fd that means "I signaled k". */
                r = ivshmem_dev_write_reg(&s->dev, IVSHMEM_REG_DOORBELL, id << 16);
                if (r < 0 && ret == 0)
                        ret = r;
        }
        return ret;
}

int shmem_notify(shmem_t *s, uint64_t mask) {
        return s ? shmem_signal(s, mask, BIT(s->index)) : -EINVAL;
}

int shmem_raw_ring(shmem_t *s, uint64_t mask) {
        return s ? shmem_signal(s, mask, 0) : -EINVAL;
}

struct shmem_control_page *shmem_raw_page(shmem_t *s) {
        return s ? s->page : NULL;
}

/*
 * One look at the page, after the vectors in @rang were drained; fills @ret
 * and returns true if there is something to report. The pending word and the
 * rings are two views, each reported once: a sender sets its bit before it
 * rings, so the bit may be taken by an earlier look than the one its ring
 * wakes, and folding the ring into senders would report one signal twice
 * (docs/design.md). Whether membership changed is the epoch alone: the broker
 * bumps it before it rings the control vector, so a look after that ring sees
 * the change, and counting the ring too would report one change twice.
 */
static bool shmem_look(shmem_t *s, uint64_t rang, struct shmem_event *ret) {
        uint64_t senders, epoch;
        bool membership;

        senders = shmem_page_take_pending(s->page, s->max_peers, s->index);
        epoch = shmem_page_load(&s->page->epoch);
        membership = epoch != s->seen_epoch;
        if (!senders && !rang && !membership)
                return false;
        *ret = (struct shmem_event) {
                .senders = senders,
                .membership_changed = membership,
                .active = shmem_active(s),
                .epoch = epoch,
                .rang = rang,
        };
        s->seen_epoch = epoch;
        return true;
}

/* Reads an eventfd or timerfd to zero, so that it can fire again; whether it had fired. */
static bool fd_drain(int fd) {
        uint64_t count;

        /* EAGAIN: already zero; nothing else can fail here */
        return read(fd, &count, sizeof(count)) == (ssize_t) sizeof(count);
}

/*
 * Drains the vectors and the relook timer that fired; ends the relook window
 * when it is over. Returns the peers whose vector fired: each MSI-X vector j
 * is the eventfd that only peer j's doorbell writes.
 */
static uint64_t shmem_drain(shmem_t *s, const struct epoll_event *evs, int n) {
        uint64_t rang = 0;

        for (int i = 0; i < n; i++) {
                uint32_t v = evs[i].data.u32;

                if (v == TAG_TIMER) {
                        const struct itimerspec off = {};

                        fd_drain(s->timer);
                        if (now_ns() >= s->relook_until)
                                timerfd_settime(s->timer, 0, &off, NULL);
                } else if (v < s->vectors && fd_drain(s->dev.vec[v]) && v < s->max_peers && v != s->index)
                        rang |= BIT(v);
        }
        return rang;
}

int shmem_wait(shmem_t *s, int timeout_ms, struct shmem_event *ret) {
        int64_t deadline;
        bool first = true;

        if (!s || !ret)
                return -EINVAL;
        deadline = timeout_ms < 0 ? -1 : now_ns() + (int64_t) timeout_ms * 1000000;

        for (;;) {
                int64_t left = deadline < 0 ? INT64_MAX : deadline - now_ns();
                uint64_t rang = 0; /* drained rings are reported now or never */

                if (s->dev.vfio) {
                        struct epoll_event evs[SHMEM_PEERS_MAX + 2];
                        int n, wait_ms;

                        /* First a look without sleeping: what is there is reported at once. */
                        if (first || left <= 0)
                                wait_ms = 0;
                        else if (left >= RELOOK_MS * 1000000L)
                                wait_ms = RELOOK_MS;
                        else
                                wait_ms = (int) ((left + 999999) / 1000000);
                        n = epoll_wait(s->dev.epfd, evs, (int) ELEMENTSOF(evs), wait_ms);
                        if (n < 0 && errno != EINTR)
                                return -errno;
                        if (n > 0)
                                rang = shmem_drain(s, evs, n);
                } else if (!first) {
                        struct timespec ts = { .tv_nsec = left < POLL_INTERVAL_NS ? left : POLL_INTERVAL_NS };

                        if (ts.tv_nsec > 0)
                                (void) nanosleep(&ts, NULL);
                }
                if (shmem_look(s, rang, ret))
                        return 1;
                if (deadline >= 0 && now_ns() >= deadline)
                        return 0;
                first = false;
        }
}

int shmem_fd(shmem_t *s) {
        if (!s)
                return -EINVAL;
        return s->dev.vfio ? s->dev.epfd : -EOPNOTSUPP;
}
