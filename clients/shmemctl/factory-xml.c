/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmemctl xml --factory [DOMAIN]: what a libvirt domain needs for the guest
 * factory (docs/factory.md, docs/libvirt.md section 13): the factory device
 * and, on q35, one free hot-pluggable pcie-root-port per region the guest
 * will create. Without DOMAIN, all of it, for a new definition; with one,
 * only what its definition lacks, and what it has is said on stderr.
 *
 * A plain root port holds a region of up to DOMAIN_PORT_WINDOW less the
 * control page (libvirt 9.0 can reserve no more without tainting the
 * domain); a --max-region beyond that on q35 is said to need the guest
 * kernel's larger windows (DOMAIN_PORT_RELEASE) and the broker's
 * libvirt-port-window; pc has no such limit and needs no controllers. When libvirt defines a q35 domain it puts
 * the factory device, a conventional PCI device to libvirt, behind a
 * pcie-to-pci-bridge that it adds on a free root port: counted here, in a
 * new definition too, which also needs its pcie-root (domain_xml_factory()).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "domain-xml.h"
#include "escape.h"
#include "factory-xml.h"
#include "json.h"

/* <rundir>/qemu/factory.sock beside <rundir>/broker.sock, which the broker must be serving. */
static int factory_socket(const Args *a, char *buf, size_t size) {
        const char *sock = client_socket_path(a->socket), *slash = strrchr(sock, '/'), *why;
        struct stat st;
        int n;

        n = slash ? snprintf(buf, size, "%.*s/qemu/factory.sock", (int) (slash - sock), sock)
                  : snprintf(buf, size, "qemu/factory.sock");
        if (n < 0 || (size_t) n >= size) {
                fprintf(stderr, "shmemctl: the broker socket path %s is too long\n", sock);
                return EXIT_USAGE;
        }
        why = stat(buf, &st) < 0 ? strerror(errno) : !S_ISSOCK(st.st_mode) ? "not a socket" : NULL;
        if (why) {
                fprintf(stderr, "shmemctl: no factory socket at %s (%s): is shmem-brokerd running there? "
                        "(--socket names its broker.sock)\n", buf, why);
                return EXIT_UNREACHABLE;
        }
        return EXIT_OK;
}

/* Regions of @a->max_region bytes on @machine: on q35 above a plain root
 * port's window, what the guest kernel and the broker need (always EXIT_OK:
 * the domain's XML does not change, its guest's command line does). */
static int check_max_region(const Args *a, bool q35) {
        uint64_t bar = domain_bar_for(a->max_region);

        if (!q35 || bar <= DOMAIN_PORT_WINDOW)
                return EXIT_OK;
        fprintf(stderr,
                "shmemctl: a region of %" PRIu64 " bytes needs a BAR of %" PRIu64 " MiB, and a plain "
                "pcie-root-port holds %" PRIu64 " MiB (regions of up to %" PRIu64 " KiB; libvirt 9.0 reserves no "
                "more without tainting the domain): boot the guest kernel with "
                "pci=hpmmioprefsize=%" PRIu64 "M" DOMAIN_PORT_RELEASE " and give the broker libvirt-port-window=%"
                PRIu64 "M (docs/libvirt.md, section 13)\n",
                a->max_region, bar >> 20, DOMAIN_PORT_WINDOW >> 20, domain_data_max(DOMAIN_PORT_WINDOW) >> 10,
                bar >> 20, bar >> 20);
        return EXIT_OK;
}

static int print(FILE *out, char *xml) {
        if (!xml) {
                fputs("shmemctl: out of memory\n", stderr);
                return EXIT_REFUSED;
        }
        fputs(xml, out);
        free(xml);
        return EXIT_OK;
}

/* The factory device of @socket in @info: one named .factory or on that socket. */
static bool has_factory(const DomainInfo *info, const char *socket) {
        for (size_t i = 0; i < info->n_shmems; i++)
                if (strcmp(info->shmems[i].name, DOMAIN_FACTORY_NAME) == 0 || strcmp(info->shmems[i].server, socket) == 0)
                        return true;
        return false;
}

static int for_domain(const Args *a, const char *domain, const char *socket, FILE *out) {
        _cleanup_(domain_info_freep) DomainInfo *info = NULL;
        char *xml = NULL, esc[STR_ESCAPE_SIZE(256)];
        unsigned free_ports, needed = 0;
        bool factory;
        int r;

        r = virt_definition(&a->virt, domain, &xml);
        if (r != EXIT_OK)
                return r;
        r = domain_info_parse(xml, strlen(xml), &info);
        free(xml);
        if (r == -ELIBACC) {
                fprintf(stderr, "shmemctl: cannot load libxml2.so.2, which reading a domain's XML needs: "
                                "install the libxml2 package\n");
                return EXIT_REFUSED;
        }
        if (r < 0) {
                fprintf(stderr, "shmemctl: the definition of domain '%s': %s\n", domain, strerror(-r));
                return EXIT_REFUSED;
        }
        str_escape(esc, sizeof(esc), info->machine);
        if (!info->q35 && !info->pc) {
                fprintf(stderr, "shmemctl: domain '%s' has machine '%s': the factory serves q35 and pc\n", domain, esc);
                return EXIT_REFUSED;
        }
        r = check_max_region(a, info->q35);
        if (r != EXIT_OK)
                return r;
        factory = has_factory(info, socket);
        free_ports = domain_info_free_ports(info);
        if (info->q35) {
                /* libvirt's bridge for the factory device takes a root port of its own. */
                unsigned want = a->regions + (!factory && !info->pci_bridge);

                needed = want > free_ports ? want - free_ports : 0;
        }
        fprintf(stderr, "shmemctl: domain '%s' (%s) %s its factory device", domain, esc, factory ? "has" : "lacks");
        if (info->q35)
                fprintf(stderr, ", %u free hot-pluggable root port%s (each holds a region of up to %" PRIu64
                        " KiB, more if the guest kernel enlarges its window); for %u region%s: %s\n",
                        free_ports, free_ports == 1 ? "" : "s",
                        domain_data_max(DOMAIN_PORT_WINDOW) >> 10, a->regions, a->regions == 1 ? "" : "s",
                        factory && !needed ? "ready" : "add what follows (virsh edit), then run this again");
        else
                fprintf(stderr, "; on pc it needs nothing else: %s\n", factory ? "ready" : "add what follows");
        if (factory && !needed)
                return EXIT_OK;
        if (factory) {
                for (unsigned i = 0; i < needed; i++)
                        fputs("<controller type='pci' model='pcie-root-port'/>\n", out);
                return EXIT_OK;
        }
        return print(out, domain_xml_factory(socket, needed, false));
}

/* The XML of xml --factory [DOMAIN] on @out. */
static int factory_xml(const Args *a, const char *domain, FILE *out) {
        char socket[4096];
        int r;

        r = factory_socket(a, socket, sizeof(socket));
        if (r != EXIT_OK)
                return r;
        if (domain)
                return for_domain(a, domain, socket, out);
        r = check_max_region(a, !a->machine_pc);
        if (r != EXIT_OK)
                return r;
        if (a->machine_pc)
                return print(out, domain_xml_factory(socket, 0, false));
        /* One more root port for libvirt's bridge, as for_domain() counts it. */
        fprintf(stderr, "shmemctl: for a new q35 definition: %u root ports, one of them for the PCIe-to-PCI bridge "
                "libvirt adds for the factory device; after `virsh define`, `shmemctl xml --factory DOMAIN` says "
                "what the domain still lacks (libvirt puts devices of its own, its USB controller, on free root "
                "ports too)\n", a->regions + 1);
        return print(out, domain_xml_factory(socket, a->regions + 1, true));
}

int cmd_factory_xml(const Args *a, const char *domain) {
        _cleanup_free_ char *xml = NULL;
        size_t size = 0;
        FILE *f;
        Json j;
        int r;

        if (!a->json)
                return factory_xml(a, domain, stdout);
        /* --json: {"domain": DOMAIN or null, "xml": what would be printed ("" when DOMAIN lacks nothing)}. */
        f = open_memstream(&xml, &size);
        if (!f) {
                fputs("shmemctl: out of memory\n", stderr);
                return EXIT_REFUSED;
        }
        r = factory_xml(a, domain, f);
        if (fclose(f) != 0 && r == EXIT_OK) {
                fputs("shmemctl: out of memory\n", stderr);
                return EXIT_REFUSED;
        }
        if (r != EXIT_OK)
                return r;
        json_init_pretty(&j, stdout);
        json_object_begin(&j);
        json_key(&j, "domain");
        if (domain)
                json_string(&j, domain);
        else
                json_null(&j);
        json_key(&j, "xml");
        json_string(&j, xml);
        json_object_end(&j);
        return EXIT_OK;
}
