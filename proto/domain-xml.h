/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * domain-xml: the libvirt domain XML this project writes and reads, shared
 * by shmemctl (xml, attach, xml --factory) and the guest factory's hotplug
 * helper (shmem-hotplug libvirt): a region's <shmem> device, the factory
 * device and the root ports a q35 domain needs for the factory, and what a
 * domain's XML says about where a device can be hot-plugged. Pure: strings
 * in, strings or a DomainInfo out (libxml2 parses; nothing is fetched).
 *
 * Measured on Debian 12 (libvirt 9.0, QEMU 7.2, SeaBIOS 1.16, docs/libvirt.md
 * section 13): SeaBIOS gives a plain pcie-root-port a 2 MiB prefetchable and
 * a 2 MiB non-prefetchable window, the guest kernel does not grow them when a
 * device arrives, and libvirt 9.0 has no untainted way to reserve more
 * (<qemu:override> of pref64-reserve works and taints the domain). So a
 * region device hot-plugged into a q35 libvirt domain has a BAR2 (the
 * region: data and its 4 KiB control page, a power of two) of 2 MiB at
 * most; on pc (pci.0, ACPI hotplug) there is no such limit.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "region-layout.h"

/* The largest BAR2 a plain pcie-root-port holds (the window SeaBIOS gives it),
 * unless the guest kernel enlarges it (DOMAIN_PORT_KERNEL_PARAMS). */
#define DOMAIN_PORT_WINDOW (UINT64_C(2) << 20)
/* What the guest kernel's command line needs for root port windows of SIZE
 * (docs/libvirt.md section 13): "pci=hpmmioprefsize=" SIZE DOMAIN_PORT_RELEASE.
 * resource_alignment= on QEMU's pcie-root-port (1b36:000c) makes the kernel
 * drop the windows the firmware set and size them anew, with the hotplug
 * reserve hpmmioprefsize; hpmmioprefsize alone keeps the firmware's 2 MiB. */
#define DOMAIN_PORT_RELEASE ",resource_alignment=pci:1b36:000c"
/* The factory device's <shmem name>: no region is called so (names never start with '.'). */
#define DOMAIN_FACTORY_NAME ".factory"
/* Bounds of what a domain's XML may list, so that a strange one cannot make us spend much. */
#define DOMAIN_PORTS_MAX 256 /* one bus number each */
#define DOMAIN_SHMEMS_MAX 1024

/* A pcie-root-port controller of a domain. */
typedef struct DomainPort {
        unsigned index;  /* the controller's index: the bus its device has in <address bus=> */
        char alias[32];  /* libvirt's alias in a live XML (pci.N), else "" */
        bool hotplug;    /* no <target hotplug='off'> */
        bool occupied;   /* a device or a controller has an address on its bus */
} DomainPort;

/* A <shmem> device of a domain. */
typedef struct DomainShmem {
        char *name;
        char *server; /* <server path>, "" if none */
        int bus;      /* its <address bus>, -1 if none */
} DomainShmem;

typedef struct DomainInfo {
        char machine[64];  /* <os><type machine>: "pc-q35-7.2", "q35", "pc-i440fx-7.2", "pc" */
        bool q35, pc;      /* which family it is; neither: another machine */
        bool pci_bridge;   /* a pcie-to-pci-bridge is there (libvirt puts PCI devices behind one) */
        DomainPort *ports;
        size_t n_ports;
        DomainShmem *shmems;
        size_t n_shmems;
} DomainInfo;

/*
 * domain_xml_shmem() - the <shmem> element of a region: ivshmem-doorbell on
 * @socket, @vectors MSI vectors (the region's max_peers + 1: QEMU drops the
 * fds beyond them), ioeventfd on, and if @bus >= 0 the PCI address slot 0 of
 * that bus (a root port's). @name and @socket are XML-escaped. Newline-
 * terminated, malloc'd; NULL on ENOMEM.
 */
char *domain_xml_shmem(const char *name, const char *socket, unsigned vectors, int bus);

/*
 * domain_xml_factory() - the factory device on @socket (<shmem name='.factory'>,
 * one vector) and, after it, @ports empty <controller type='pci'
 * model='pcie-root-port'/> elements (0 for a pc machine); with @pcie_root,
 * first the <controller type='pci' index='0' model='pcie-root'/> of a new q35
 * definition: libvirt 9.0 gives the first PCI controller without an index
 * index 0, and refuses a pcie-root-port there ("must be model='pcie-root'").
 * Malloc'd; NULL on ENOMEM.
 */
char *domain_xml_factory(const char *socket, unsigned ports, bool pcie_root);

/*
 * domain_info_parse() - what @xml (virDomainGetXMLDesc()'s, live or not)
 * says: its machine, its root ports and which are used, its <shmem>
 * devices. 0, -ENOMEM, or -EBADMSG if it is not a domain's XML or lists
 * more than the bounds above; -ELIBACC if libxml2 could not be loaded
 * (shmemdomainxml-dl, xml-dl.h). Free with domain_info_free().
 */
int domain_info_parse(const char *xml, size_t size, DomainInfo **ret);
DomainInfo *domain_info_free(DomainInfo *info);
static inline void domain_info_freep(DomainInfo **p) {
        domain_info_free(*p);
}

/* The <shmem> device of @info named @name, else NULL. */
const DomainShmem *domain_info_shmem(const DomainInfo *info, const char *name);

/* Free hot-pluggable root ports of @info. */
unsigned domain_info_free_ports(const DomainInfo *info);

/*
 * domain_port_choose() - the root port that takes a BAR of @bar_size bytes:
 * a free hot-pluggable one, if @window (the bytes a root port's window holds,
 * the same for all: DOMAIN_PORT_WINDOW or what the guest kernel was told)
 * holds it, the lowest index of them; NULL if none does.
 */
const DomainPort *domain_port_choose(const DomainInfo *info, uint64_t bar_size, uint64_t window);

/* Each root port of @info (windows of @window bytes) and why it cannot take a device, for a refusal ("pci.1 in use, ..."). */
void domain_ports_describe(const DomainInfo *info, uint64_t window, char *buf, size_t size);

/* The largest region data size (bytes) a BAR of @bar bytes holds: less the control page. */
static inline uint64_t domain_data_max(uint64_t bar) {
        return bar - SHMEM_PAGE_SIZE;
}

/* The BAR2 of a region of @data bytes (core/region.c's rule: pages, the control page, a power of two). */
static inline uint64_t domain_bar_for(uint64_t data) {
        uint64_t need = ((data + SHMEM_PAGE_SIZE - 1) & ~(uint64_t) (SHMEM_PAGE_SIZE - 1)) + SHMEM_PAGE_SIZE, bar = 1;

        while (bar < need && bar < (UINT64_C(1) << 62))
                bar <<= 1;
        return bar;
}
