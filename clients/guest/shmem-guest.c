/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libshmem-guest: the libshmem API (clients/libshmem/shmem.h) inside a Linux
 * guest, over the ivshmem-doorbell PCI device QEMU gives it for a region
 * (docs/region-layout.md; QEMU docs/specs/ivshmem-spec.txt for the device).
 *
 * - The region: BAR2 is the broker's memfd; page 0 is the control page.
 *   A guest cannot create a region: it finds the device whose control page
 *   carries the name.
 * - Signals out: set my bit in the target's pending word, then ring the
 *   target's doorbell id through BAR0 Doorbell.
 * - Signals in: MSI-X vectors as eventfds from vfio-pci (no kernel module of
 *   our own). vfio-pci needs an IOMMU (Debian's kernel has no vfio no-IOMMU
 *   mode): q35 + intel-iommu,intremap=on and `intel_iommu=on` in the guest.
 *   Without one (or with SHMEM_GUEST_POLL=1 in the environment) the library
 *   maps the BARs through sysfs and polls the pending word and the epoch every
 *   millisecond; shmem_fd() is then -EOPNOTSUPP.
 *
 * The device's driver is left bound to vfio-pci at detach: rebinding gains
 * nothing. vfio allows one opener per IOMMU group, so one handle per device
 * per guest with vfio (another attach gets SHMEM_STATUS_BUSY); polling handles
 * can share a device. A guest's index stays attached while its QEMU runs,
 * whatever the handle does: the broker's peer is the QEMU, not this process,
 * so detach and attach again keep the index and the signals sent meanwhile.
 * Needs root (sysfs, /dev/vfio).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "region-layout.h"
#include "shmem.h"

#define PCI_DEVICES "/sys/bus/pci/devices"
#define IVSHMEM_VENDOR 0x1af4
#define IVSHMEM_DEVICE 0x1110 /* ivshmem-plain and -doorbell share it; doorbell has MSI-X */

/* BAR0 registers (ivshmem-spec.txt). */
#define REG_IV_POSITION 8
#define REG_DOORBELL 12
#define REGS_SIZE 16

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

enum {
        MODE_VFIO, /* MSI-X through vfio-pci eventfds */
        MODE_POLL, /* sysfs BARs, pending word polled */
};

struct shmem {
        char *name;
        char bdf[32];
        int mode;
        int container, group, device; /* vfio; -1 when polling */
        uint64_t regs_offset;         /* BAR0 in the vfio device fd, when not mapped */
        volatile uint32_t *regs;      /* BAR0 mapping, NULL if the BAR cannot be mapped */
        size_t regs_map_size;
        void *bar2;
        size_t bar2_size;
        struct shmem_control_page *page;
        uint8_t *data;
        uint64_t data_size;
        unsigned index, max_peers, vectors;
        uint64_t valid;               /* bits of indices 0..max_peers-1 */
        int vec[SHMEM_PEERS_MAX + 1]; /* MSI-X vector eventfds */
        int epfd;
        int timer;                    /* relook timer, RELOOK_WINDOW_MS after attach */
        int64_t relook_until;         /* CLOCK_MONOTONIC ns */
        uint64_t seen_epoch;
};

static uint64_t page_load(const uint64_t *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static uint32_t page_load32(const uint32_t *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static int64_t now_ns(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static shmem_t *shmem_free(shmem_t *s) {
        if (!s)
                return NULL;
        for (unsigned v = 0; v < ELEMENTSOF(s->vec); v++)
                fd_close(s->vec[v]);
        fd_close(s->epfd);
        fd_close(s->timer);
        if (s->regs)
                munmap((void *) s->regs, s->regs_map_size);
        if (s->bar2)
                munmap(s->bar2, s->bar2_size);
        /* Closing the device fd disables MSI-X; the group fd releases the container. */
        fd_close(s->device);
        fd_close(s->group);
        fd_close(s->container);
        free(s->name);
        free(s);
        return NULL;
}
static void shmem_freep(shmem_t **s) { shmem_free(*s); }

static int shmem_alloc(shmem_t **ret) {
        shmem_t *s = calloc(1, sizeof(*s));

        if (!s)
                return -ENOMEM;
        for (unsigned v = 0; v < ELEMENTSOF(s->vec); v++)
                s->vec[v] = -1;
        s->epfd = s->timer = s->container = s->group = s->device = -1;
        *ret = s;
        return 0;
}

/* --- sysfs ---------------------------------------------------------------- */

static int sysfs_read(const char *bdf, const char *attr, char *buf, size_t size) {
        char path[PATH_MAX];
        _cleanup_close_ int fd = -1;
        ssize_t n;

        snprintf(path, sizeof(path), PCI_DEVICES "/%s/%s", bdf, attr);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, size - 1);
        if (n < 0)
                return -errno;
        while (n > 0 && buf[n - 1] == '\n')
                n--;
        buf[n] = '\0';
        return 0;
}

static int sysfs_write(const char *path, const char *value) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        size_t len = strlen(value);

        if (fd < 0)
                return -errno;
        if (write(fd, value, len) != (ssize_t) len)
                return -errno;
        return 0;
}

static int sysfs_write_attr(const char *bdf, const char *attr, const char *value) {
        char path[PATH_MAX];

        snprintf(path, sizeof(path), PCI_DEVICES "/%s/%s", bdf, attr);
        return sysfs_write(path, value);
}

static bool sysfs_is_ivshmem(const char *bdf) {
        char buf[32];

        if (sysfs_read(bdf, "vendor", buf, sizeof(buf)) < 0 || strtoul(buf, NULL, 16) != IVSHMEM_VENDOR)
                return false;
        return sysfs_read(bdf, "device", buf, sizeof(buf)) == 0 && strtoul(buf, NULL, 16) == IVSHMEM_DEVICE;
}

/* The basename of the symlink @attr of the device, "" if there is none. */
static void sysfs_link_name(const char *bdf, const char *attr, char *buf, size_t size) {
        char path[PATH_MAX], target[PATH_MAX];
        ssize_t n;
        const char *base;

        snprintf(path, sizeof(path), PCI_DEVICES "/%s/%s", bdf, attr);
        n = readlink(path, target, sizeof(target) - 1);
        if (n < 0) {
                buf[0] = '\0';
                return;
        }
        target[n] = '\0';
        base = strrchr(target, '/');
        base = base ? base + 1 : target;
        /* Longer than any driver or group name: treat as none rather than truncate. */
        if (strlen(base) >= size)
                base = "";
        memcpy(buf, base, strlen(base) + 1);
}

/* Maps BAR @bar through sysfs; @len 0 maps all of it. Memory decoding must be on. */
static int sysfs_map_bar(const char *bdf, unsigned bar, size_t len, int prot, void **ret, size_t *ret_size) {
        char path[PATH_MAX];
        _cleanup_close_ int fd = -1;
        struct stat st;
        void *p;

        snprintf(path, sizeof(path), PCI_DEVICES "/%s/resource%u", bdf, bar);
        fd = open(path, (prot & PROT_WRITE ? O_RDWR : O_RDONLY) | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (len == 0)
                len = (size_t) st.st_size;
        /* A BAR smaller than a page (BAR0: 256 bytes) is still mapped as a whole page. */
        if ((uint64_t) st.st_size < len && len > SHMEM_PAGE_SIZE)
                return -ERANGE;
        p = mmap(NULL, len, prot, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
                return -errno;
        *ret = p;
        *ret_size = len;
        return 0;
}

/* Memory decoding off reads BARs as nothing: `enable` turns it on (a reference count: once is enough). */
static void device_enable(const char *bdf) {
        char buf[16];

        if (sysfs_read(bdf, "enable", buf, sizeof(buf)) < 0 || strcmp(buf, "0") == 0)
                (void) sysfs_write_attr(bdf, "enable", "1");
}

/* --- the control page ------------------------------------------------------ */

static bool name_valid(const char *name) {
        size_t n = strlen(name);

        if (n < 1 || n > SHMEM_NAME_MAX || name[0] == '.')
                return false;
        return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

/*
 * Checks a copy of the control page header against the BAR it came from. Any
 * guest can write the page, so nothing in it may lead to an access outside
 * the mapping.
 */
static bool layout_valid(const struct shmem_control_page *h, size_t bar2_size) {
        if (h->magic != SHMEM_LAYOUT_MAGIC || h->version != SHMEM_LAYOUT_VERSION ||
            h->header_size != offsetof(struct shmem_control_page, slots) ||
            h->slot_size != sizeof(struct shmem_slot) || h->signal_mode != SHMEM_SIGNAL_MODE_SHMEM)
                return false;
        if (h->max_peers < 1 || h->max_peers > SHMEM_PEERS_MAX || h->vectors != h->max_peers + 1)
                return false;
        if (h->data_offset < SHMEM_PAGE_SIZE || h->data_offset % SHMEM_PAGE_SIZE != 0 ||
            h->data_offset > bar2_size || h->data_size > bar2_size - h->data_offset)
                return false;
        return true;
}

static bool layout_has_name(const struct shmem_control_page *h, const char *name) {
        return strnlen(h->name, sizeof(h->name)) < sizeof(h->name) && strcmp(h->name, name) == 0;
}

/*
 * Whether the device at @bdf carries region @name: 1 yes, 0 no, -EBUSY if
 * its control page cannot be looked at, through sysfs: vfio holds the BAR of
 * a device another handle uses, and CONFIG_IO_STRICT_DEVMEM then refuses the
 * mapping.
 */
static int device_has_region(const char *bdf, const char *name) {
        struct shmem_control_page h;
        char path[PATH_MAX];
        struct stat st;
        void *p;
        size_t size;

        snprintf(path, sizeof(path), PCI_DEVICES "/%s/resource2", bdf);
        if (stat(path, &st) < 0 || st.st_size < SHMEM_PAGE_SIZE)
                return 0;
        device_enable(bdf);
        if (sysfs_map_bar(bdf, 2, SHMEM_PAGE_SIZE, PROT_READ, &p, &size) < 0)
                return -EBUSY;
        memcpy(&h, p, sizeof(h));
        munmap(p, SHMEM_PAGE_SIZE);
        return layout_valid(&h, (size_t) st.st_size) && layout_has_name(&h, name);
}

/* --- BAR0 ----------------------------------------------------------------- */

static int regs_read(shmem_t *s, unsigned reg, uint32_t *ret) {
        if (s->regs) {
                *ret = s->regs[reg / 4];
                return 0;
        }
        if (pread(s->device, ret, sizeof(*ret), (off_t) (s->regs_offset + reg)) != sizeof(*ret))
                return -EIO;
        return 0;
}

static int regs_write(shmem_t *s, unsigned reg, uint32_t value) {
        if (s->regs) {
                s->regs[reg / 4] = value;
                return 0;
        }
        if (pwrite(s->device, &value, sizeof(value), (off_t) (s->regs_offset + reg)) != sizeof(value))
                return -EIO;
        return 0;
}

/* --- vfio ----------------------------------------------------------------- */

static bool vfio_usable(const char *bdf) {
        char path[PATH_MAX], driver[64];

        if (access("/sys/bus/pci/drivers/vfio-pci", F_OK) < 0 || access("/dev/vfio/vfio", F_OK) < 0)
                return false;
        /* No IOMMU group: no IOMMU, and Debian's kernel has no vfio no-IOMMU mode. */
        snprintf(path, sizeof(path), PCI_DEVICES "/%s/iommu_group", bdf);
        if (access(path, F_OK) < 0)
                return false;
        /* Another driver chose this device: do not take it away. */
        sysfs_link_name(bdf, "driver", driver, sizeof(driver));
        return driver[0] == '\0' || strcmp(driver, "vfio-pci") == 0;
}

static int vfio_bind(const char *bdf) {
        char driver[64];
        int r;

        sysfs_link_name(bdf, "driver", driver, sizeof(driver));
        if (strcmp(driver, "vfio-pci") == 0)
                return 0;
        r = sysfs_write_attr(bdf, "driver_override", "vfio-pci");
        if (r < 0)
                return r;
        r = sysfs_write("/sys/bus/pci/drivers_probe", bdf);
        if (r < 0)
                return r;
        sysfs_link_name(bdf, "driver", driver, sizeof(driver));
        return strcmp(driver, "vfio-pci") == 0 ? 0 : -ENODEV;
}

static int vfio_region(shmem_t *s, unsigned index, struct vfio_region_info *ret) {
        *ret = (struct vfio_region_info) { .argsz = sizeof(*ret), .index = index };
        return ioctl(s->device, VFIO_DEVICE_GET_REGION_INFO, ret) < 0 ? -errno : 0;
}

static int vfio_open(shmem_t *s) {
        struct vfio_group_status status = { .argsz = sizeof(status) };
        struct vfio_region_info bar0, bar2, config;
        struct vfio_irq_info irq = { .argsz = sizeof(irq), .index = VFIO_PCI_MSIX_IRQ_INDEX };
        char group[64], path[PATH_MAX];
        uint16_t cmd;
        void *p;
        int r;

        r = vfio_bind(s->bdf);
        if (r < 0)
                return r;
        sysfs_link_name(s->bdf, "iommu_group", group, sizeof(group));
        s->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
        if (s->container < 0)
                return -errno;
        if (ioctl(s->container, VFIO_GET_API_VERSION) != VFIO_API_VERSION ||
            ioctl(s->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) <= 0)
                return -EOPNOTSUPP;
        snprintf(path, sizeof(path), "/dev/vfio/%s", group);
        s->group = open(path, O_RDWR | O_CLOEXEC);
        if (s->group < 0)
                return errno == EBUSY ? SHMEM_STATUS_BUSY : -errno;
        if (ioctl(s->group, VFIO_GROUP_GET_STATUS, &status) < 0)
                return -errno;
        /* Not viable: another device of the group is bound to a host driver. */
        if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE))
                return -EBUSY;
        if (ioctl(s->group, VFIO_GROUP_SET_CONTAINER, &s->container) < 0 ||
            ioctl(s->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0)
                return -errno;
        s->device = ioctl(s->group, VFIO_GROUP_GET_DEVICE_FD, s->bdf);
        if (s->device < 0)
                return errno == EBUSY ? SHMEM_STATUS_BUSY : -errno;

        r = vfio_region(s, VFIO_PCI_BAR0_REGION_INDEX, &bar0);
        if (r < 0)
                return r;
        r = vfio_region(s, VFIO_PCI_BAR2_REGION_INDEX, &bar2);
        if (r < 0)
                return r;
        r = vfio_region(s, VFIO_PCI_CONFIG_REGION_INDEX, &config);
        if (r < 0)
                return r;
        if (bar0.size < REGS_SIZE || bar2.size < SHMEM_PAGE_SIZE || !(bar2.flags & VFIO_REGION_INFO_FLAG_MMAP))
                return -ENXIO;

        p = mmap(NULL, (size_t) bar2.size, PROT_READ | PROT_WRITE, MAP_SHARED, s->device, (off_t) bar2.offset);
        if (p == MAP_FAILED)
                return -errno;
        s->bar2 = p;
        s->bar2_size = (size_t) bar2.size;
        /* vfio maps a BAR smaller than a page only if it has the page to itself; else use pread/pwrite. */
        s->regs_offset = bar0.offset;
        if (bar0.flags & VFIO_REGION_INFO_FLAG_MMAP) {
                s->regs_map_size = (size_t) bar0.size < SHMEM_PAGE_SIZE ? SHMEM_PAGE_SIZE : (size_t) bar0.size;
                p = mmap(NULL, s->regs_map_size, PROT_READ | PROT_WRITE, MAP_SHARED, s->device,
                         (off_t) bar0.offset);
                if (p != MAP_FAILED)
                        s->regs = p;
        }

        /* Memory decoding for the BARs; bus mastering, because an MSI is a DMA write. */
        if (pread(s->device, &cmd, sizeof(cmd), (off_t) (config.offset + PCI_COMMAND)) != sizeof(cmd))
                return -EIO;
        cmd |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
        if (pwrite(s->device, &cmd, sizeof(cmd), (off_t) (config.offset + PCI_COMMAND)) != sizeof(cmd))
                return -EIO;

        if (ioctl(s->device, VFIO_DEVICE_GET_IRQ_INFO, &irq) < 0)
                return -errno;
        /* Checked against the page's vectors once the page is mapped. */
        s->vectors = irq.count < SHMEM_PEERS_MAX + 1 ? irq.count : SHMEM_PEERS_MAX + 1;
        return 0;
}

/* Gives every vector an eventfd and enables MSI-X. */
static int vfio_enable_irqs(shmem_t *s) {
        _cleanup_free_ struct vfio_irq_set *set = NULL;
        size_t argsz = sizeof(*set) + sizeof(int32_t) * s->vectors;

        set = calloc(1, argsz);
        if (!set)
                return -ENOMEM;
        *set = (struct vfio_irq_set) {
                .argsz = (uint32_t) argsz,
                .flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
                .index = VFIO_PCI_MSIX_IRQ_INDEX,
                .start = 0,
                .count = s->vectors,
        };
        s->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (s->epfd < 0)
                return -errno;
        for (unsigned v = 0; v < s->vectors; v++) {
                struct epoll_event ev = { .events = EPOLLIN, .data.u32 = v };

                s->vec[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (s->vec[v] < 0)
                        return -errno;
                if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->vec[v], &ev) < 0)
                        return -errno;
                ((int32_t *) (void *) set->data)[v] = s->vec[v];
        }
        if (ioctl(s->device, VFIO_DEVICE_SET_IRQS, set) < 0)
                return -errno;
        return 0;
}

static int relook_timer_start(shmem_t *s) {
        const struct timespec period = { .tv_nsec = RELOOK_MS * 1000000L };
        struct itimerspec its = { .it_interval = period, .it_value = period };
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = TAG_TIMER };

        s->timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (s->timer < 0)
                return -errno;
        if (timerfd_settime(s->timer, 0, &its, NULL) < 0)
                return -errno;
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->timer, &ev) < 0)
                return -errno;
        s->relook_until = now_ns() + RELOOK_WINDOW_MS * 1000000L;
        return 0;
}

/* --- polling fallback ------------------------------------------------------ */

static int poll_open(shmem_t *s) {
        void *p;
        size_t size;
        int r;

        device_enable(s->bdf);
        r = sysfs_map_bar(s->bdf, 0, SHMEM_PAGE_SIZE, PROT_READ | PROT_WRITE, &p, &size);
        if (r < 0)
                return r;
        s->regs = p;
        s->regs_map_size = size;
        r = sysfs_map_bar(s->bdf, 2, 0, PROT_READ | PROT_WRITE, &p, &size);
        if (r < 0)
                return r;
        s->bar2 = p;
        s->bar2_size = size;
        return 0;
}

/* --- attach ---------------------------------------------------------------- */

/* Reads the geometry from the mapped page and finds my index. */
static int shmem_setup_layout(shmem_t *s) {
        struct shmem_control_page h;
        uint32_t ivposition;
        int r;

        /* A copy: the page can change under us, the checks must hold for what is used. */
        memcpy(&h, s->bar2, sizeof(h));
        if (!layout_valid(&h, s->bar2_size) || !layout_has_name(&h, s->name))
                return SHMEM_STATUS_DOES_NOT_EXIST;
        /* QEMU's `vectors=` must be max_peers + 1: without the control vector no membership wakeup. */
        if (s->mode == MODE_VFIO && s->vectors < h.vectors)
                return -ENXIO;
        s->page = s->bar2;
        s->max_peers = h.max_peers;
        s->vectors = h.vectors;
        s->valid = h.max_peers == 64 ? ~UINT64_C(0) : BIT(h.max_peers) - 1;
        s->data = (uint8_t *) s->bar2 + h.data_offset;
        s->data_size = h.data_size;

        /*
         * IVPosition is my QEMU's doorbell id, not my index (QEMU 7.2 must
         * never see an id reused, docs/design.md): the index is the active
         * slot that carries the id. The broker fills the slot before it
         * answers QEMU, and QEMU answers before the guest runs.
         */
        r = regs_read(s, REG_IV_POSITION, &ivposition);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < s->max_peers; i++)
                if (page_load32(&s->page->slots[i].state) == SHMEM_SLOT_ACTIVE &&
                    page_load32(&s->page->slots[i].doorbell_id) == ivposition) {
                        s->index = i;
                        s->seen_epoch = page_load(&s->page->epoch);
                        return 0;
                }
        return -EPROTO;
}

static int scan_filter(const struct dirent *d) {
        return d->d_name[0] != '.';
}

/*
 * The first ivshmem device (in PCI address order) whose control page names
 * @name. None, but one could not be looked at: SHMEM_STATUS_BUSY, since it may
 * be the one, in use by another handle in this guest.
 */
static int shmem_find_device(const char *name, char *ret, size_t size) {
        struct dirent **list = NULL;
        int n, r = SHMEM_STATUS_DOES_NOT_EXIST;
        bool busy = false;

        n = scandir(PCI_DEVICES, &list, scan_filter, alphasort);
        if (n < 0)
                return errno == ENOENT ? SHMEM_STATUS_DOES_NOT_EXIST : -errno;
        for (int i = 0; i < n; i++) {
                const char *bdf = list[i]->d_name;

                if (r == SHMEM_STATUS_DOES_NOT_EXIST && strlen(bdf) < size && sysfs_is_ivshmem(bdf)) {
                        int has = device_has_region(bdf, name);

                        if (has > 0) {
                                memcpy(ret, bdf, strlen(bdf) + 1);
                                r = 0;
                        } else if (has < 0)
                                busy = true;
                }
                free(list[i]);
        }
        free(list);
        return r == SHMEM_STATUS_DOES_NOT_EXIST && busy ? SHMEM_STATUS_BUSY : r;
}

int shmem_attach(shmem_t **ret, const char *name, uint64_t size, unsigned flags,
                 const struct shmem_attach_opts *opts) {
        _cleanup_(shmem_freep) shmem_t *s = NULL;
        const char *force_poll;
        int r;

        if (!ret || !name || (flags & ~(unsigned) (SHMEM_FIND | SHMEM_EXCLUSIVE)) ||
            (flags & SHMEM_FIND && flags & SHMEM_EXCLUSIVE))
                return -EINVAL;
        if (!name_valid(name))
                return SHMEM_STATUS_ILLEGAL_NAME;

        r = shmem_alloc(&s);
        if (r < 0)
                return r;
        s->name = strdup(name);
        if (!s->name)
                return -ENOMEM;
        /* A guest cannot create: create-or-attach finds, exclusive create always fails. */
        r = shmem_find_device(name, s->bdf, sizeof(s->bdf));
        if (r != 0)
                return r;
        if (flags & SHMEM_EXCLUSIVE)
                return SHMEM_STATUS_EXISTS;

        force_poll = getenv("SHMEM_GUEST_POLL");
        s->mode = (force_poll && *force_poll && strcmp(force_poll, "0") != 0) || !vfio_usable(s->bdf)
                          ? MODE_POLL
                          : MODE_VFIO;
        r = s->mode == MODE_VFIO ? vfio_open(s) : poll_open(s);
        if (r != 0)
                return r;
        r = shmem_setup_layout(s);
        if (r != 0)
                return r;
        if (s->mode == MODE_VFIO) {
                /*
                 * A ring that comes before MSI-X is on is lost by QEMU; its
                 * pending bit is not, and the first shmem_wait() takes the
                 * pending word before it sleeps (qemu-lab.md).
                 */
                r = vfio_enable_irqs(s);
                if (r < 0)
                        return r;
                r = relook_timer_start(s);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(s);
        return 0;
}

int shmem_find(shmem_t **ret, const char *name, const struct shmem_attach_opts *opts) {
        return shmem_attach(ret, name, 0, SHMEM_FIND, opts);
}

shmem_t *shmem_detach(shmem_t *s) {
        return shmem_free(s);
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
        if (!s)
                return 0;
        return (page_load(&s->page->active) & s->valid) | BIT(s->index);
}

uint64_t shmem_unconsumed(shmem_t *s) {
        uint64_t others, ret = 0;

        if (!s)
                return 0;
        others = shmem_active(s) & ~BIT(s->index);
        for (unsigned k = 0; k < s->max_peers; k++)
                if (others & BIT(k) && page_load(&s->page->slots[k].pending) & BIT(s->index))
                        ret |= BIT(k);
        return ret;
}

int shmem_notify(shmem_t *s, uint64_t mask) {
        uint64_t targets;
        int ret = 0;

        if (!s)
                return -EINVAL;
        targets = mask & shmem_active(s) & ~BIT(s->index);
        for (unsigned k = 0; k < s->max_peers; k++) {
                uint32_t id;
                int r;

                if (!(targets & BIT(k)) || page_load32(&s->page->slots[k].state) != SHMEM_SLOT_ACTIVE)
                        continue;
                id = page_load32(&s->page->slots[k].doorbell_id);
                if (id > SHMEM_DOORBELL_ID_MAX)
                        continue;
                /*
                 * The bit first, then the ring: a receiver woken by the ring
                 * finds it, and a ring QEMU drops (the receiver has no MSI-X
                 * yet, or my QEMU does not know the peer yet) leaves the bit
                 * for its next look. A locked OR is a full barrier on x86; the
                 * fence says so for the uncached doorbell store after it.
                 */
                __atomic_fetch_or(&s->page->slots[k].pending, BIT(s->index), __ATOMIC_SEQ_CST);
                __atomic_thread_fence(__ATOMIC_SEQ_CST);
                /* Vector 0 of peer `id` is the one fd that means "I signaled k". */
                r = regs_write(s, REG_DOORBELL, id << 16);
                if (r < 0 && ret == 0)
                        ret = r;
        }
        return ret;
}

/*
 * One look at the page; fills @ret and returns true if there is something to
 * report. Who signaled is the pending word alone, and whether membership
 * changed is the epoch alone: vectors, the control vector included, only wake
 * (docs/design.md). The broker bumps the epoch before it rings the control
 * vector, so a look after that ring sees the change; counting the ring too
 * would report one change twice when an earlier look already saw the epoch.
 */
static bool shmem_look(shmem_t *s, struct shmem_event *ret) {
        uint64_t senders, epoch;
        bool membership;

        senders = __atomic_exchange_n(&s->page->slots[s->index].pending, 0, __ATOMIC_ACQ_REL);
        senders &= s->valid & ~BIT(s->index);
        epoch = page_load(&s->page->epoch);
        membership = epoch != s->seen_epoch;
        if (!senders && !membership)
                return false;
        *ret = (struct shmem_event) {
                .senders = senders,
                .membership_changed = membership,
                .active = shmem_active(s),
                .epoch = epoch,
        };
        s->seen_epoch = epoch;
        return true;
}

/* Reads an eventfd or timerfd to zero, so that it can fire again. */
static void fd_drain(int fd) {
        uint64_t count;
        ssize_t n = read(fd, &count, sizeof(count));

        (void) n; /* EAGAIN: already zero; nothing else can fail here */
}

/* Drains the vectors and the relook timer that fired; ends the relook window when it is over. */
static void shmem_drain(shmem_t *s, const struct epoll_event *evs, int n) {
        for (int i = 0; i < n; i++) {
                uint32_t v = evs[i].data.u32;

                if (v == TAG_TIMER) {
                        const struct itimerspec off = {};

                        fd_drain(s->timer);
                        if (now_ns() >= s->relook_until)
                                timerfd_settime(s->timer, 0, &off, NULL);
                } else if (v < s->vectors)
                        fd_drain(s->vec[v]);
        }
}

int shmem_wait(shmem_t *s, int timeout_ms, struct shmem_event *ret) {
        int64_t deadline;
        bool first = true;

        if (!s || !ret)
                return -EINVAL;
        deadline = timeout_ms < 0 ? -1 : now_ns() + (int64_t) timeout_ms * 1000000;

        for (;;) {
                int64_t left = deadline < 0 ? INT64_MAX : deadline - now_ns();

                if (s->mode == MODE_VFIO) {
                        struct epoll_event evs[SHMEM_PEERS_MAX + 2];
                        int n, wait_ms;

                        /* First a look without sleeping: what is there is reported at once. */
                        if (first || left <= 0)
                                wait_ms = 0;
                        else if (left >= RELOOK_MS * 1000000L)
                                wait_ms = RELOOK_MS;
                        else
                                wait_ms = (int) ((left + 999999) / 1000000);
                        n = epoll_wait(s->epfd, evs, (int) ELEMENTSOF(evs), wait_ms);
                        if (n < 0 && errno != EINTR)
                                return -errno;
                        if (n > 0)
                                shmem_drain(s, evs, n);
                } else if (!first) {
                        struct timespec ts = { .tv_nsec = left < POLL_INTERVAL_NS ? left : POLL_INTERVAL_NS };

                        if (ts.tv_nsec > 0)
                                (void) nanosleep(&ts, NULL);
                }
                if (shmem_look(s, ret))
                        return 1;
                if (deadline >= 0 && now_ns() >= deadline)
                        return 0;
                first = false;
        }
}

int shmem_fd(shmem_t *s) {
        if (!s)
                return -EINVAL;
        return s->mode == MODE_VFIO ? s->epfd : -EOPNOTSUPP;
}
