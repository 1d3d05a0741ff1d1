/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The ivshmem PCI device from guest user space: sysfs and vfio-pci (ivshmem-dev.h). */
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
#include <time.h>
#include <unistd.h>

#include "ivshmem-dev.h"
#include "macro.h"

#define PCI_DEVICES "/sys/bus/pci/devices"
#define IVSHMEM_VENDOR 0x1af4
#define IVSHMEM_DEVICE 0x1110 /* ivshmem-plain and -doorbell share it; doorbell has MSI-X */
#define REGS_SIZE 16
#define PAGE 4096u

void ivshmem_dev_init(IvshmemDev *d) {
        *d = (IvshmemDev) { .container = -1, .group = -1, .device = -1, .epfd = -1 };
        for (unsigned v = 0; v < ELEMENTSOF(d->vec); v++)
                d->vec[v] = -1;
}

void ivshmem_dev_close(IvshmemDev *d) {
        for (unsigned v = 0; v < ELEMENTSOF(d->vec); v++)
                fd_close(d->vec[v]);
        fd_close(d->epfd);
        if (d->regs)
                munmap((void *) d->regs, d->regs_map_size);
        if (d->bar2)
                munmap(d->bar2, d->bar2_size);
        /* Closing the device fd disables MSI-X; the group fd releases the container. */
        fd_close(d->device);
        fd_close(d->group);
        fd_close(d->container);
        ivshmem_dev_init(d);
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

bool ivshmem_dev_is_ivshmem(const char *bdf) {
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
        if ((uint64_t) st.st_size < len && len > PAGE)
                return -ERANGE;
        p = mmap(NULL, len, prot, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
                return -errno;
        *ret = p;
        *ret_size = len;
        return 0;
}

/* Memory decoding off reads BARs as nothing: `enable` turns it on (a reference count: once is enough). */
static void sysfs_enable(const char *bdf) {
        char buf[16];

        if (sysfs_read(bdf, "enable", buf, sizeof(buf)) < 0 || strcmp(buf, "0") == 0)
                (void) sysfs_write_attr(bdf, "enable", "1");
}

static int scan_filter(const struct dirent *d) {
        return d->d_name[0] != '.';
}

int ivshmem_dev_scan(int (*fn)(const char *bdf, void *userdata), void *userdata) {
        struct dirent **list = NULL;
        int n, r = 0;

        n = scandir(PCI_DEVICES, &list, scan_filter, alphasort);
        if (n < 0)
                return errno == ENOENT ? 0 : -errno;
        for (int i = 0; i < n; i++) {
                if (r == 0 && ivshmem_dev_is_ivshmem(list[i]->d_name))
                        r = fn(list[i]->d_name, userdata);
                free(list[i]);
        }
        free(list);
        return r;
}

int ivshmem_dev_peek(const char *bdf, void *buf, size_t len, uint64_t *ret_bar2_size) {
        char path[PATH_MAX];
        struct stat st;
        void *p;
        size_t size;

        snprintf(path, sizeof(path), PCI_DEVICES "/%s/resource2", bdf);
        if (stat(path, &st) < 0)
                return -errno;
        if ((uint64_t) st.st_size < len)
                return -ENXIO;
        sysfs_enable(bdf);
        if (sysfs_map_bar(bdf, 2, len, PROT_READ, &p, &size) < 0)
                return -EBUSY;
        memcpy(buf, p, len);
        munmap(p, size);
        *ret_bar2_size = (uint64_t) st.st_size;
        return 0;
}

int ivshmem_dev_peek_reg(const char *bdf, unsigned reg, uint32_t *ret) {
        void *p;
        size_t size;
        int r;

        if (reg > REGS_SIZE - 4 || reg % 4 != 0)
                return -EINVAL;
        sysfs_enable(bdf);
        r = sysfs_map_bar(bdf, 0, PAGE, PROT_READ, &p, &size);
        if (r < 0)
                return r == -ENOENT ? r : -EBUSY;
        /* The device knows 32-bit accesses only. */
        *ret = ((volatile uint32_t *) p)[reg / 4];
        munmap(p, size);
        return 0;
}

int ivshmem_dev_open_dir(const char *bdf) {
        char path[PATH_MAX];
        int fd;

        snprintf(path, sizeof(path), PCI_DEVICES "/%s", bdf);
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

static int sysfs_open(IvshmemDev *d) {
        void *p;
        size_t size;
        int r;

        sysfs_enable(d->bdf);
        r = sysfs_map_bar(d->bdf, 0, PAGE, PROT_READ | PROT_WRITE, &p, &size);
        if (r < 0)
                return r;
        d->regs = p;
        d->regs_map_size = size;
        r = sysfs_map_bar(d->bdf, 2, 0, PROT_READ | PROT_WRITE, &p, &size);
        if (r < 0)
                return r;
        d->bar2 = p;
        d->bar2_size = size;
        return 0;
}

/* --- BAR0 ----------------------------------------------------------------- */

int ivshmem_dev_read_reg(IvshmemDev *d, unsigned reg, uint32_t *ret) {
        if (d->regs) {
                *ret = d->regs[reg / 4];
                return 0;
        }
        if (pread(d->device, ret, sizeof(*ret), (off_t) (d->regs_offset + reg)) != sizeof(*ret))
                return -EIO;
        return 0;
}

int ivshmem_dev_write_reg(IvshmemDev *d, unsigned reg, uint32_t value) {
        if (d->regs) {
                d->regs[reg / 4] = value;
                return 0;
        }
        if (pwrite(d->device, &value, sizeof(value), (off_t) (d->regs_offset + reg)) != sizeof(value))
                return -EIO;
        return 0;
}

/* --- vfio ----------------------------------------------------------------- */

bool ivshmem_dev_vfio_usable(const char *bdf) {
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

/*
 * A device just hot-plugged has its sysfs files (resource2 is readable, its
 * control page was peeked) a moment before the PCI core lets drivers match it
 * (pci_bus_add_device() sets match_driver after creating them): a probe in
 * that moment binds nothing. So the probe is repeated, for a bounded time;
 * the kernel's own probe, once it comes, takes driver_override too.
 */
#define VFIO_BIND_TRIES 100
#define VFIO_BIND_PAUSE_NS 10000000L

static int vfio_bind(const char *bdf) {
        char driver[64];
        int r;

        sysfs_link_name(bdf, "driver", driver, sizeof(driver));
        if (strcmp(driver, "vfio-pci") == 0)
                return 0;
        r = sysfs_write_attr(bdf, "driver_override", "vfio-pci");
        if (r < 0)
                return r;
        for (unsigned i = 0; i < VFIO_BIND_TRIES; i++) {
                if (i > 0)
                        nanosleep(&(struct timespec) { .tv_nsec = VFIO_BIND_PAUSE_NS }, NULL);
                r = sysfs_write("/sys/bus/pci/drivers_probe", bdf);
                if (r < 0)
                        return r;
                sysfs_link_name(bdf, "driver", driver, sizeof(driver));
                if (strcmp(driver, "vfio-pci") == 0)
                        return 0;
                if (driver[0])
                        return -ENODEV; /* another driver took it */
        }
        return -ENODEV;
}

static int vfio_region(IvshmemDev *d, unsigned index, struct vfio_region_info *ret) {
        *ret = (struct vfio_region_info) { .argsz = sizeof(*ret), .index = index };
        return ioctl(d->device, VFIO_DEVICE_GET_REGION_INFO, ret) < 0 ? -errno : 0;
}

static int vfio_open(IvshmemDev *d) {
        struct vfio_group_status status = { .argsz = sizeof(status) };
        struct vfio_region_info bar0, bar2, config;
        struct vfio_irq_info irq = { .argsz = sizeof(irq), .index = VFIO_PCI_MSIX_IRQ_INDEX };
        char group[64], path[PATH_MAX];
        uint16_t cmd;
        void *p;
        int r;

        r = vfio_bind(d->bdf);
        if (r < 0)
                return r;
        sysfs_link_name(d->bdf, "iommu_group", group, sizeof(group));
        d->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
        if (d->container < 0)
                return -errno;
        if (ioctl(d->container, VFIO_GET_API_VERSION) != VFIO_API_VERSION ||
            ioctl(d->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) <= 0)
                return -EOPNOTSUPP;
        snprintf(path, sizeof(path), "/dev/vfio/%s", group);
        d->group = open(path, O_RDWR | O_CLOEXEC);
        if (d->group < 0)
                return errno == EBUSY ? IVSHMEM_DEV_BUSY : -errno;
        if (ioctl(d->group, VFIO_GROUP_GET_STATUS, &status) < 0)
                return -errno;
        /* Not viable: another device of the group is bound to a host driver. */
        if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE))
                return -EBUSY;
        if (ioctl(d->group, VFIO_GROUP_SET_CONTAINER, &d->container) < 0 ||
            ioctl(d->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0)
                return -errno;
        d->device = ioctl(d->group, VFIO_GROUP_GET_DEVICE_FD, d->bdf);
        if (d->device < 0)
                return errno == EBUSY ? IVSHMEM_DEV_BUSY : -errno;

        r = vfio_region(d, VFIO_PCI_BAR0_REGION_INDEX, &bar0);
        if (r < 0)
                return r;
        r = vfio_region(d, VFIO_PCI_BAR2_REGION_INDEX, &bar2);
        if (r < 0)
                return r;
        r = vfio_region(d, VFIO_PCI_CONFIG_REGION_INDEX, &config);
        if (r < 0)
                return r;
        if (bar0.size < REGS_SIZE || bar2.size < PAGE || !(bar2.flags & VFIO_REGION_INFO_FLAG_MMAP))
                return -ENXIO;

        p = mmap(NULL, (size_t) bar2.size, PROT_READ | PROT_WRITE, MAP_SHARED, d->device, (off_t) bar2.offset);
        if (p == MAP_FAILED)
                return -errno;
        d->bar2 = p;
        d->bar2_size = (size_t) bar2.size;
        /* vfio maps a BAR smaller than a page only if it has the page to itself; else use pread/pwrite. */
        d->regs_offset = bar0.offset;
        if (bar0.flags & VFIO_REGION_INFO_FLAG_MMAP) {
                d->regs_map_size = (size_t) bar0.size < PAGE ? PAGE : (size_t) bar0.size;
                p = mmap(NULL, d->regs_map_size, PROT_READ | PROT_WRITE, MAP_SHARED, d->device,
                         (off_t) bar0.offset);
                if (p != MAP_FAILED)
                        d->regs = p;
        }

        /* Memory decoding for the BARs; bus mastering, because an MSI is a DMA write. */
        if (pread(d->device, &cmd, sizeof(cmd), (off_t) (config.offset + PCI_COMMAND)) != sizeof(cmd))
                return -EIO;
        cmd |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
        if (pwrite(d->device, &cmd, sizeof(cmd), (off_t) (config.offset + PCI_COMMAND)) != sizeof(cmd))
                return -EIO;

        if (ioctl(d->device, VFIO_DEVICE_GET_IRQ_INFO, &irq) < 0)
                return -errno;
        d->msix_count = irq.count < IVSHMEM_DEV_VECTORS_MAX ? irq.count : IVSHMEM_DEV_VECTORS_MAX;
        return 0;
}

int ivshmem_dev_open(IvshmemDev *d, const char *bdf, bool vfio) {
        if (strlen(bdf) >= sizeof(d->bdf))
                return -ENAMETOOLONG;
        memcpy(d->bdf, bdf, strlen(bdf) + 1);
        d->vfio = vfio;
        return vfio ? vfio_open(d) : sysfs_open(d);
}

int ivshmem_dev_enable_irqs(IvshmemDev *d, unsigned n) {
        _cleanup_free_ struct vfio_irq_set *set = NULL;
        size_t argsz = sizeof(*set) + sizeof(int32_t) * n;

        if (!d->vfio || n == 0 || n > d->msix_count || d->epfd >= 0)
                return -EINVAL;
        set = calloc(1, argsz);
        if (!set)
                return -ENOMEM;
        *set = (struct vfio_irq_set) {
                .argsz = (uint32_t) argsz,
                .flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
                .index = VFIO_PCI_MSIX_IRQ_INDEX,
                .start = 0,
                .count = n,
        };
        d->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (d->epfd < 0)
                return -errno;
        for (unsigned v = 0; v < n; v++) {
                struct epoll_event ev = { .events = EPOLLIN, .data.u32 = v };

                d->vec[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (d->vec[v] < 0)
                        return -errno;
                if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->vec[v], &ev) < 0)
                        return -errno;
                ((int32_t *) (void *) set->data)[v] = d->vec[v];
        }
        if (ioctl(d->device, VFIO_DEVICE_SET_IRQS, set) < 0)
                return -errno;
        d->vectors = n;
        return 0;
}
