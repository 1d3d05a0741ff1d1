/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of proto/domain-xml.c: the <shmem> devices and root ports
 * shmemctl and shmem-hotplug write, and the root port chosen from live
 * domain XML that libvirt 9.0 wrote (tests/unit/domain-xml/, README there)
 * and from hand-made XML for the shapes no capture has.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "domain-xml.h"
#include "test-util.h"

#define MIB (UINT64_C(1) << 20)

static char *read_capture(const char *name) {
        char path[512], *text = malloc(65536);
        size_t n;
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s.xml", DOMAIN_XML_DIR, name);
        f = fopen(path, "re");
        ck_assert_msg(f, "%s: %s", path, strerror(errno));
        ck_assert_ptr_nonnull(text);
        n = fread(text, 1, 65535, f);
        ck_assert(feof(f));
        fclose(f);
        text[n] = 0;
        return text;
}

static DomainInfo *parse_ok(const char *xml) {
        DomainInfo *info = NULL;

        ck_assert_int_eq(domain_info_parse(xml, strlen(xml), &info), 0);
        ck_assert_ptr_nonnull(info);
        return info;
}

static int parse_error(const char *xml) {
        DomainInfo *info = NULL;
        int r = domain_info_parse(xml, strlen(xml), &info);

        ck_assert_ptr_null(info);
        return r;
}

static DomainInfo *parse_capture(const char *name) {
        char *xml = read_capture(name);
        DomainInfo *info = parse_ok(xml);

        free(xml);
        return info;
}

static const DomainPort *port(const DomainInfo *info, unsigned index) {
        for (size_t i = 0; i < info->n_ports; i++)
                if (info->ports[i].index == index)
                        return &info->ports[i];
        ck_abort_msg("no port of index %u", index);
        return NULL;
}

/* --- writing ------------------------------------------------------------------- */

START_TEST(test_shmem_as_shmemctl_xml_printed_it) {
        char *xml = domain_xml_shmem("demo", "/run/shmem-broker/qemu/demo.sock", 17, -1);

        /* docs/libvirt.md section 4 shows this, and e2e-libvirt defines domains with it. */
        ck_assert_str_eq(xml, "<shmem name='demo'>\n"
                              "  <model type='ivshmem-doorbell'/>\n"
                              "  <server path='/run/shmem-broker/qemu/demo.sock'/>\n"
                              "  <msi vectors='17' ioeventfd='on'/>\n"
                              "</shmem>\n");
        free(xml);
}
END_TEST

START_TEST(test_shmem_on_a_root_port) {
        char *xml = domain_xml_shmem("fig1.demo", "/run/q/fig1.demo.sock", 9, 0x1c);

        ck_assert_ptr_nonnull(strstr(xml, "  <msi vectors='9' ioeventfd='on'/>\n"
                                          "  <address type='pci' domain='0x0000' bus='0x1c' slot='0x00' "
                                          "function='0x0'/>\n</shmem>\n"));
        free(xml);
}
END_TEST

START_TEST(test_shmem_escapes) {
        char *xml = domain_xml_shmem("a'b", "/tmp/<x>&\"y\"", 2, -1);

        ck_assert_ptr_nonnull(strstr(xml, "<shmem name='a&apos;b'>"));
        ck_assert_ptr_nonnull(strstr(xml, "<server path='/tmp/&lt;x&gt;&amp;&quot;y&quot;'/>"));
        free(xml);
}
END_TEST

START_TEST(test_factory_and_ports) {
        char *xml = domain_xml_factory("/run/shmem-broker/qemu/factory.sock", 2, false), *p;

        ck_assert_ptr_eq(strstr(xml, "<shmem name='.factory'>\n"), xml);
        ck_assert_ptr_nonnull(strstr(xml, "<server path='/run/shmem-broker/qemu/factory.sock'/>\n"
                                          "  <msi vectors='1' ioeventfd='on'/>\n</shmem>\n"));
        p = strstr(xml, "</shmem>\n") + strlen("</shmem>\n");
        ck_assert_str_eq(p, "<controller type='pci' model='pcie-root-port'/>\n"
                            "<controller type='pci' model='pcie-root-port'/>\n");
        free(xml);
        xml = domain_xml_factory("/f.sock", 0, false);
        ck_assert_ptr_null(strstr(xml, "<controller"));
        free(xml);
        /* A new q35 definition: pcie-root first, or libvirt gives a root port index 0. */
        xml = domain_xml_factory("/f.sock", 1, true);
        ck_assert_ptr_eq(strstr(xml, "<controller type='pci' index='0' model='pcie-root'/>\n<shmem name='.factory'>"),
                         xml);
        ck_assert_int_eq(strstr(strstr(xml, "</shmem>"), "model='pcie-root-port'") != NULL, 1);
        free(xml);
}
END_TEST

/* What is written reads back: the parser and the writer agree. */
START_TEST(test_written_reads_back) {
        char *dev = domain_xml_shmem("r&1", "/s", 3, 7), xml[1024];
        const DomainShmem *s;
        DomainInfo *info;

        snprintf(xml, sizeof(xml), "<domain><devices>%s</devices></domain>", dev);
        info = parse_ok(xml);
        s = domain_info_shmem(info, "r&1");
        ck_assert_ptr_nonnull(s);
        ck_assert_str_eq(s->server, "/s");
        ck_assert_int_eq(s->bus, 7);
        domain_info_free(info);
        free(dev);
}
END_TEST

/* --- reading libvirt 9.0's live XML ------------------------------------------- */

START_TEST(test_q35_capture) {
        DomainInfo *info = parse_capture("live-q35");
        const DomainShmem *s;
        char text[512];

        ck_assert_str_eq(info->machine, "pc-q35-7.2");
        ck_assert(info->q35 && !info->pc && info->pci_bridge);
        ck_assert_uint_eq(info->n_ports, 5);
        /* pci.1 has the PCIe-to-PCI bridge the factory device is behind, pci.2 the USB controller. */
        ck_assert(port(info, 1)->occupied && port(info, 2)->occupied);
        ck_assert(port(info, 3)->occupied);       /* fig1.demo, plugged there */
        ck_assert(!port(info, 4)->hotplug);       /* <target hotplug='off'/> */
        ck_assert(!port(info, 5)->occupied && port(info, 5)->hotplug);
        ck_assert_str_eq(port(info, 5)->alias, "pci.5");
        ck_assert_uint_eq(domain_info_free_ports(info), 1);

        s = domain_info_shmem(info, ".factory");
        ck_assert_ptr_nonnull(s);
        ck_assert_str_eq(s->server, "/run/shmem-broker/qemu/factory.sock");
        ck_assert_int_eq(s->bus, 6);
        ck_assert_int_eq(domain_info_shmem(info, "fig1.demo")->bus, 3);
        ck_assert_ptr_null(domain_info_shmem(info, "fig1"));

        domain_ports_describe(info, 2 * MIB, text, sizeof(text));
        ck_assert_str_eq(text, "pci.1 in use, pci.2 in use, pci.3 in use, pci.4 not hot-pluggable, "
                               "pci.5 free (a 2 MiB window)");
        domain_ports_describe(info, 512 * MIB, text, sizeof(text));
        ck_assert(strstr(text, "pci.5 free (a 512 MiB window)"));
        domain_info_free(info);
}
END_TEST

START_TEST(test_q35_choice) {
        DomainInfo *info = parse_capture("live-q35");

        /* 1 MiB of data and its page: a 2 MiB BAR, what a plain port holds. */
        ck_assert_uint_eq(domain_port_choose(info, 2 * MIB, 2 * MIB)->index, 5);
        ck_assert_uint_eq(domain_port_choose(info, 4096, 2 * MIB)->index, 5);
        ck_assert_ptr_null(domain_port_choose(info, 4 * MIB, 2 * MIB));
        ck_assert_ptr_null(domain_port_choose(info, 256 * MIB, 2 * MIB));
        ck_assert_ptr_null(domain_port_choose(info, 0, 2 * MIB));
        /* Windows the guest kernel enlarged (libvirt-port-window=512M): the 128 MiB region's 256 MiB BAR. */
        ck_assert_uint_eq(domain_port_choose(info, 256 * MIB, 512 * MIB)->index, 5);
        ck_assert_ptr_null(domain_port_choose(info, 1024 * MIB, 512 * MIB));
        /* The last free one taken: none is left. */
        for (size_t i = 0; i < info->n_ports; i++)
                if (info->ports[i].index == 5)
                        info->ports[i].occupied = true;
        ck_assert_ptr_null(domain_port_choose(info, 2 * MIB, 2 * MIB));
        domain_info_free(info);
}
END_TEST

START_TEST(test_pc_capture) {
        DomainInfo *info = parse_capture("live-pc");

        ck_assert_str_eq(info->machine, "pc-i440fx-7.2");
        ck_assert(info->pc && !info->q35 && !info->pci_bridge);
        ck_assert_uint_eq(info->n_ports, 0);
        ck_assert_ptr_null(domain_port_choose(info, 2 * MIB, 2 * MIB));
        ck_assert_uint_eq(info->n_shmems, 2);
        ck_assert_int_eq(domain_info_shmem(info, "fig1.demo")->bus, 0);
        domain_info_free(info);
}
END_TEST

/* --- hand-made shapes ------------------------------------------------------------ */

/* A definition (no aliases), decimal numbers, the lowest free index first, a switch behind a port. */
START_TEST(test_definition_shapes) {
        static const char xml[] =
                "<domain type='qemu'><os><type machine='q35'>hvm</type></os><devices>"
                "<controller type='pci' index='0' model='pcie-root'/>"
                "<controller type='pci' index='9' model='pcie-root-port'/>"
                "<controller type='pci' index='3' model='pcie-root-port'><target hotplug='on'/></controller>"
                "<controller type='pci' index='4' model='pcie-root-port'/>"
                "<controller type='pci' index='5' model='pcie-switch-upstream-port'>"
                "<address type='pci' bus='4' slot='0'/></controller>"
                "<disk><address type='drive' bus='3'/></disk>" /* not PCI: port 3 stays free */
                "</devices></domain>";
        DomainInfo *info = parse_ok(xml);
        char text[256];

        ck_assert(info->q35);
        ck_assert_uint_eq(info->n_ports, 3);
        ck_assert(port(info, 4)->occupied && !port(info, 3)->occupied && port(info, 3)->hotplug);
        ck_assert_uint_eq(domain_port_choose(info, MIB, 2 * MIB)->index, 3);
        domain_ports_describe(info, 2 * MIB, text, sizeof(text));
        ck_assert_str_eq(text, "index 9 free (a 2 MiB window), index 3 free (a 2 MiB window), index 4 in use");
        domain_info_free(info);
}
END_TEST

START_TEST(test_not_a_domain) {
        ck_assert_int_eq(parse_error(""), -EBADMSG);
        ck_assert_int_eq(parse_error("not xml"), -EBADMSG);
        ck_assert_int_eq(parse_error("<domain><devices>"), -EBADMSG); /* cut */
        ck_assert_int_eq(parse_error("<network><name>default</name></network>"), -EBADMSG);
        ck_assert_int_eq(parse_error("<domain><devices><controller type='pci' model='pcie-root-port'/>"
                                     "</devices></domain>"), -EBADMSG);   /* no index */
        ck_assert_int_eq(parse_error("<domain><devices><controller type='pci' index='300' "
                                     "model='pcie-root-port'/></devices></domain>"), -EBADMSG);
        ck_assert_int_eq(parse_error("<domain><devices><shmem/></devices></domain>"), -EBADMSG);
}
END_TEST

START_TEST(test_bounds) {
        size_t size = 64 + (DOMAIN_PORTS_MAX + 1) * 64;
        char *xml = malloc(size), *p = xml;
        DomainInfo *info;

        p += sprintf(p, "<domain><devices>");
        for (unsigned i = 0; i < DOMAIN_PORTS_MAX; i++)
                p += sprintf(p, "<controller type='pci' index='%u' model='pcie-root-port'/>", i % 256);
        strcpy(p, "</devices></domain>");
        info = parse_ok(xml);
        ck_assert_uint_eq(info->n_ports, DOMAIN_PORTS_MAX);
        domain_info_free(info);
        p += sprintf(p, "<controller type='pci' index='1' model='pcie-root-port'/>");
        strcpy(p, "</devices></domain>");
        ck_assert_int_eq(parse_error(xml), -EBADMSG);
        free(xml);
}
END_TEST

/* An external entity is never read: what a domain's XML says is all that is parsed. */
START_TEST(test_no_entities) {
        static const char dtd[] = "<?xml version='1.0'?><!DOCTYPE domain [<!ENTITY m SYSTEM '/etc/hostname'>]>";
        char xml[512];
        DomainInfo *info;

        /* In an attribute, XML forbids it. */
        snprintf(xml, sizeof(xml), "%s<domain><os><type machine='&m;'>hvm</type></os></domain>", dtd);
        ck_assert_int_eq(parse_error(xml), -EBADMSG);
        /* In content it stays a reference, unread. */
        snprintf(xml, sizeof(xml), "%s<domain><os><type machine='q35'>&m;</type></os><devices>"
                 "<shmem name='x'><server path='/s'/></shmem></devices></domain>", dtd);
        info = parse_ok(xml);
        ck_assert(info->q35);
        ck_assert_str_eq(domain_info_shmem(info, "x")->server, "/s");
        domain_info_free(info);
}
END_TEST

int main(void) {
        Suite *s = suite_create("domain-xml");
        TCase *tc;

        tc = tcase_new("write");
        tcase_add_test(tc, test_shmem_as_shmemctl_xml_printed_it);
        tcase_add_test(tc, test_shmem_on_a_root_port);
        tcase_add_test(tc, test_shmem_escapes);
        tcase_add_test(tc, test_factory_and_ports);
        tcase_add_test(tc, test_written_reads_back);
        suite_add_tcase(s, tc);

        tc = tcase_new("libvirt-9.0-captures");
        tcase_add_test(tc, test_q35_capture);
        tcase_add_test(tc, test_q35_choice);
        tcase_add_test(tc, test_pc_capture);
        suite_add_tcase(s, tc);

        tc = tcase_new("shapes");
        tcase_add_test(tc, test_definition_shapes);
        tcase_add_test(tc, test_not_a_domain);
        tcase_add_test(tc, test_bounds);
        tcase_add_test(tc, test_no_entities);
        suite_add_tcase(s, tc);
        return run_suite(s);
}
