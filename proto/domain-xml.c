/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain-xml.h"
#include "xml-dl.h" /* after libxml2's headers */

/* @s with XML's five special characters escaped, malloc'd; NULL on ENOMEM. */
static char *xml_escape(const char *s) {
        size_t n = 1;
        char *out, *o;

        for (const char *p = s; *p; p++)
                n += strchr("&<>'\"", *p) ? 6 : 1;
        out = o = malloc(n);
        if (!out)
                return NULL;
        for (; *s; s++) {
                const char *e = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;"
                              : *s == '\'' ? "&apos;" : *s == '"' ? "&quot;" : NULL;

                if (e)
                        o = stpcpy(o, e);
                else
                        *o++ = *s;
        }
        *o = 0;
        return out;
}

char *domain_xml_shmem(const char *name, const char *socket, unsigned vectors, int bus) {
        char *n = xml_escape(name), *s = xml_escape(socket), *xml = NULL, address[128] = "";

        if (bus >= 0)
                snprintf(address, sizeof(address),
                         "  <address type='pci' domain='0x0000' bus='0x%02x' slot='0x00' function='0x0'/>\n",
                         (unsigned) bus);
        if (!n || !s || asprintf(&xml,
                                 "<shmem name='%s'>\n"
                                 "  <model type='ivshmem-doorbell'/>\n"
                                 "  <server path='%s'/>\n"
                                 "  <msi vectors='%u' ioeventfd='on'/>\n"
                                 "%s"
                                 "</shmem>\n",
                                 n, s, vectors, address) < 0)
                xml = NULL;
        free(n);
        free(s);
        return xml;
}

char *domain_xml_factory(const char *socket, unsigned ports, bool pcie_root) {
        static const char port[] = "<controller type='pci' model='pcie-root-port'/>\n";
        static const char root[] = "<controller type='pci' index='0' model='pcie-root'/>\n";
        char *device = domain_xml_shmem(DOMAIN_FACTORY_NAME, socket, 1, -1), *xml, *o;

        if (!device)
                return NULL;
        xml = malloc(strlen(root) + strlen(device) + (size_t) ports * strlen(port) + 1);
        if (xml) {
                o = stpcpy(xml, pcie_root ? root : "");
                o = stpcpy(o, device);
                for (unsigned i = 0; i < ports; i++)
                        o = stpcpy(o, port);
        }
        free(device);
        return xml;
}

/* --- reading a domain's XML ------------------------------------------------ */

static bool is(const xmlNode *n, const char *name) {
        return n->type == XML_ELEMENT_NODE && strcmp((const char *) n->name, name) == 0;
}

static const xmlNode *child(const xmlNode *n, const char *name) {
        for (const xmlNode *c = n ? n->children : NULL; c; c = c->next)
                if (is(c, name))
                        return c;
        return NULL;
}

/* Attribute @name of @n into @buf (@size bytes, cut to fit); false if it has none. */
static bool attr(const xmlNode *n, const char *name, char *buf, size_t size) {
        xmlChar *v = n ? xmlGetProp(n, (const xmlChar *) name) : NULL;

        if (!v)
                return false;
        snprintf(buf, size, "%s", (const char *) v);
        xmlFree(v);
        return true;
}

/* A number as libvirt writes them ("3", "0x03"), at most @max. */
static bool number(const char *s, unsigned long max, unsigned *ret) {
        unsigned long v;
        char *end;

        if (!*s || *s == '-' || *s == '+' || *s == ' ')
                return false;
        errno = 0;
        v = strtoul(s, &end, 0);
        if (errno || *end || v > max)
                return false;
        *ret = (unsigned) v;
        return true;
}

/* The bus of @n's <address type='pci'>: true with *@ret, false if it has none. */
static bool pci_bus_of(const xmlNode *n, unsigned *ret) {
        const xmlNode *a = child(n, "address");
        char type[16], bus[16];

        return a && attr(a, "type", type, sizeof(type)) && strcmp(type, "pci") == 0 &&
               attr(a, "bus", bus, sizeof(bus)) && number(bus, 0xff, ret);
}

static int add_port(DomainInfo *info, const xmlNode *c) {
        const xmlNode *target = child(c, "target"), *alias = child(c, "alias");
        char index[16], hotplug[8] = "";
        DomainPort *p;

        if (info->n_ports == DOMAIN_PORTS_MAX || !attr(c, "index", index, sizeof(index)))
                return -EBADMSG;
        p = realloc(info->ports, (info->n_ports + 1) * sizeof(*p));
        if (!p)
                return -ENOMEM;
        info->ports = p;
        p += info->n_ports;
        *p = (DomainPort) { .hotplug = true };
        if (!number(index, 0xff, &p->index))
                return -EBADMSG;
        (void) attr(alias, "name", p->alias, sizeof(p->alias));
        if (attr(target, "hotplug", hotplug, sizeof(hotplug)) && strcmp(hotplug, "off") == 0)
                p->hotplug = false;
        info->n_ports++;
        return 0;
}

static int add_shmem(DomainInfo *info, const xmlNode *s) {
        xmlChar *name = xmlGetProp(s, (const xmlChar *) "name"), *path = NULL;
        const xmlNode *server = child(s, "server");
        DomainShmem *d;
        unsigned bus;

        if (!name || info->n_shmems == DOMAIN_SHMEMS_MAX) {
                xmlFree(name);
                return -EBADMSG;
        }
        d = realloc(info->shmems, (info->n_shmems + 1) * sizeof(*d));
        if (!d) {
                xmlFree(name);
                return -ENOMEM;
        }
        info->shmems = d;
        d += info->n_shmems;
        if (server)
                path = xmlGetProp(server, (const xmlChar *) "path");
        *d = (DomainShmem) { .name = strdup((const char *) name), .server = strdup(path ? (const char *) path : ""),
                             .bus = pci_bus_of(s, &bus) ? (int) bus : -1 };
        xmlFree(name);
        xmlFree(path);
        info->n_shmems++; /* counted even half-made: domain_info_free() frees it */
        return d->name && d->server ? 0 : -ENOMEM;
}

static int read_devices(DomainInfo *info, const xmlNode *devices, bool used[256]) {
        for (const xmlNode *c = devices ? devices->children : NULL; c; c = c->next) {
                char type[32] = "", model[64] = "";
                unsigned bus;
                int r = 0;

                if (c->type != XML_ELEMENT_NODE)
                        continue;
                /* Whatever has an address on a bus uses it: a device, or a controller behind a port. */
                if (pci_bus_of(c, &bus))
                        used[bus] = true;
                if (is(c, "controller") && attr(c, "type", type, sizeof(type)) && strcmp(type, "pci") == 0 &&
                    attr(c, "model", model, sizeof(model))) {
                        if (strcmp(model, "pcie-root-port") == 0)
                                r = add_port(info, c);
                        else if (strcmp(model, "pcie-to-pci-bridge") == 0)
                                info->pci_bridge = true;
                } else if (is(c, "shmem"))
                        r = add_shmem(info, c);
                if (r < 0)
                        return r;
        }
        return 0;
}

int domain_info_parse(const char *xml, size_t size, DomainInfo **ret) {
        const xmlNode *root;
        bool used[256] = {};
        DomainInfo *info;
        xmlDoc *doc;
        int r;

        r = xml_dl_open();
        if (r < 0)
                return r;
        /* No network, no entities substituted, no messages on stderr. */
        doc = size > INT32_MAX ? NULL
                               : xmlReadMemory(xml, (int) size, "domain.xml", NULL,
                                               XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        root = doc ? xmlDocGetRootElement(doc) : NULL;
        if (!root || !is(root, "domain")) {
                xmlFreeDoc(doc);
                return -EBADMSG;
        }
        info = calloc(1, sizeof(*info));
        if (!info) {
                xmlFreeDoc(doc);
                return -ENOMEM;
        }
        (void) attr(child(child(root, "os"), "type"), "machine", info->machine, sizeof(info->machine));
        /* libvirt expands the aliases ("q35", "pc") to versioned names in what it stores. */
        info->q35 = strcmp(info->machine, "q35") == 0 || strncmp(info->machine, "pc-q35-", 7) == 0;
        info->pc = strcmp(info->machine, "pc") == 0 || strncmp(info->machine, "pc-i440fx-", 10) == 0;
        r = read_devices(info, child(root, "devices"), used);
        xmlFreeDoc(doc);
        if (r < 0) {
                domain_info_free(info);
                return r;
        }
        for (size_t i = 0; i < info->n_ports; i++)
                info->ports[i].occupied = used[info->ports[i].index];
        *ret = info;
        return 0;
}

DomainInfo *domain_info_free(DomainInfo *info) {
        if (!info)
                return NULL;
        for (size_t i = 0; i < info->n_shmems; i++) {
                free(info->shmems[i].name);
                free(info->shmems[i].server);
        }
        free(info->shmems);
        free(info->ports);
        free(info);
        return NULL;
}

const DomainShmem *domain_info_shmem(const DomainInfo *info, const char *name) {
        for (size_t i = 0; i < info->n_shmems; i++)
                if (strcmp(info->shmems[i].name, name) == 0)
                        return &info->shmems[i];
        return NULL;
}

unsigned domain_info_free_ports(const DomainInfo *info) {
        unsigned n = 0;

        for (size_t i = 0; i < info->n_ports; i++)
                n += info->ports[i].hotplug && !info->ports[i].occupied;
        return n;
}

const DomainPort *domain_port_choose(const DomainInfo *info, uint64_t bar_size, uint64_t window) {
        const DomainPort *best = NULL;

        if (bar_size == 0 || bar_size > window)
                return NULL;
        for (size_t i = 0; i < info->n_ports; i++) {
                const DomainPort *p = &info->ports[i];

                if (p->hotplug && !p->occupied && (!best || p->index < best->index))
                        best = p;
        }
        return best;
}

void domain_ports_describe(const DomainInfo *info, uint64_t window, char *buf, size_t size) {
        size_t len = 0;

        buf[0] = 0;
        for (size_t i = 0; i < info->n_ports && len < size; i++) {
                const DomainPort *p = &info->ports[i];
                char name[40], state[48];

                if (p->alias[0])
                        snprintf(name, sizeof(name), "%s", p->alias);
                else
                        snprintf(name, sizeof(name), "index %u", p->index);
                snprintf(state, sizeof(state), "free (a %" PRIu64 " MiB window)", window >> 20);
                len += (size_t) snprintf(buf + len, size - len, "%s%s %s", i ? ", " : "", name,
                                         !p->hotplug ? "not hot-pluggable" : p->occupied ? "in use" : state);
        }
}
