/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * ivshmem-dev: QEMU's ivshmem PCI device (1af4:1110) from Linux guest user
 * space, and nothing of shmem-broker's: BAR0 registers, BAR2 memory, and the
 * MSI-X vectors as one eventfd each through vfio-pci (QEMU
 * docs/specs/ivshmem-spec.rst; docs/region-layout.md, "In a guest").
 * Without vfio (no IOMMU in the guest: Debian's kernel has no vfio no-IOMMU
 * mode) the BARs are mapped through sysfs and there are no interrupts.
 *
 * libshmem-guest puts the control page's semantics on top; `shmem-guest
 * --raw` is a plain ivshmem application on it, as a guest written for QEMU's
 * contrib/ivshmem-server is. Internal to libshmem-guest.a: not installed.
 * Needs root (sysfs, /dev/vfio).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* BAR0 registers (ivshmem-spec.rst). */
#define IVSHMEM_REG_IV_POSITION 8
#define IVSHMEM_REG_DOORBELL 12

/* Vectors given an eventfd at most: the broker's limit in either signal mode. */
#define IVSHMEM_DEV_VECTORS_MAX 65

/* ivshmem_dev_open(): vfio holds the device for another opener (its IOMMU group is open). */
#define IVSHMEM_DEV_BUSY 1

typedef struct IvshmemDev {
        char bdf[32];
        bool vfio;                    /* MSI-X through vfio-pci; else sysfs BARs, no interrupts */
        int container, group, device; /* vfio; -1 otherwise */
        uint64_t regs_offset;         /* BAR0 in the vfio device fd, when not mapped */
        volatile uint32_t *regs;      /* BAR0 mapping, NULL if the BAR cannot be mapped */
        size_t regs_map_size;
        void *bar2;
        size_t bar2_size;
        unsigned msix_count;          /* the device's MSI-X vectors, at most _VECTORS_MAX; 0 without vfio */
        unsigned vectors;             /* vectors with an eventfd (ivshmem_dev_enable_irqs) */
        int vec[IVSHMEM_DEV_VECTORS_MAX];
        int epfd;                     /* epoll set of vec[], each with data.u32 = its vector */
} IvshmemDev;

/* An empty device: every fd -1, nothing mapped. */
void ivshmem_dev_init(IvshmemDev *d);

/* Unmaps and closes everything; closing the vfio device fd disables MSI-X. Back to init state. */
void ivshmem_dev_close(IvshmemDev *d);

/*
 * Calls @fn for every ivshmem device (1af4:1110) in PCI address order until
 * it returns non-zero, and returns that; 0 when all were seen, or -errno.
 */
int ivshmem_dev_scan(int (*fn)(const char *bdf, void *userdata), void *userdata);

/* Whether @bdf is an ivshmem device. */
bool ivshmem_dev_is_ivshmem(const char *bdf);

/*
 * Copies the first @len bytes of BAR2 of @bdf, through sysfs, without opening
 * the device. -ENXIO if BAR2 is smaller; -EBUSY if it cannot be mapped (vfio
 * holds the BAR for another opener and CONFIG_IO_STRICT_DEVMEM refuses it).
 */
int ivshmem_dev_peek(const char *bdf, void *buf, size_t len, uint64_t *ret_bar2_size);

/* Whether @bdf can be opened with vfio: vfio-pci present, an IOMMU group, no other driver. */
bool ivshmem_dev_vfio_usable(const char *bdf);

/*
 * Opens @bdf: with @vfio binds it to vfio-pci and maps its BARs through the
 * vfio device fd, else maps them through sysfs. On failure @d is left for
 * ivshmem_dev_close(). Returns 0, IVSHMEM_DEV_BUSY or -errno.
 */
int ivshmem_dev_open(IvshmemDev *d, const char *bdf, bool vfio);

/*
 * Gives vectors 0..@n-1 an eventfd each, in d->epfd, and enables MSI-X. A
 * doorbell rung at this device before this is lost by QEMU (docs/region-layout.md).
 * vfio only; @n at most d->msix_count.
 */
int ivshmem_dev_enable_irqs(IvshmemDev *d, unsigned n);

/* BAR0 register access, 32 bits (the device knows no other width). */
int ivshmem_dev_read_reg(IvshmemDev *d, unsigned reg, uint32_t *ret);
int ivshmem_dev_write_reg(IvshmemDev *d, unsigned reg, uint32_t value);
