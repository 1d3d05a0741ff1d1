/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of plugin-qemu/hotplug/hotplug-slot.c: the window arithmetic,
 * and the root port chosen from query-pci replies that QEMU 7.2 sent
 * (tests/unit/query-pci/, captured from the e2e guest image; README there)
 * and from hand-made ones for the shapes no capture has.
 */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "hotplug-slot.h"
#include "test-util.h"

#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)

typedef struct Parsed {
        struct json_object *reply;
        HotplugPort *ports;
        size_t n;
} Parsed;

static void parsed_free(Parsed *p) {
        free(p->ports);
        json_object_put(p->reply);
}

/* The ports of the query-pci reply {"return": [...]} in @text; the parse's result. */
static int parse_text(const char *text, Parsed *ret) {
        struct json_object *buses;

        *ret = (Parsed) { .reply = json_tokener_parse(text) };
        ck_assert_ptr_nonnull(ret->reply);
        ck_assert(json_object_object_get_ex(ret->reply, "return", &buses));
        return hotplug_ports_parse(buses, &ret->ports, &ret->n);
}

static void parse_capture(const char *name, Parsed *ret) {
        char path[512], text[16384];
        size_t n;
        FILE *f;

        snprintf(path, sizeof(path), "%s/query-pci-%s.json", QUERY_PCI_DIR, name);
        f = fopen(path, "re");
        ck_assert_msg(f, "%s: %s", path, strerror(errno));
        n = fread(text, 1, sizeof(text) - 1, f);
        ck_assert(feof(f));
        fclose(f);
        text[n] = 0;
        ck_assert_int_eq(parse_text(text, ret), 0);
}

/* The id of the port chosen for @bar_size, "" for none. */
static const char *choose(const Parsed *p, uint64_t bar_size) {
        const HotplugPort *port = hotplug_port_choose(p->ports, p->n, bar_size);

        return port ? port->id : "";
}

static void check_port(const HotplugPort *p, const char *id, bool occupied, uint64_t base, uint64_t limit) {
        ck_assert_str_eq(p->id, id);
        ck_assert_int_eq(p->occupied, occupied);
        ck_assert_uint_eq(p->pref_base, base);
        ck_assert_uint_eq(p->pref_limit, limit);
}

START_TEST(test_window_exact_fit) {
        uint64_t at = 0;

        /* 512 MiB aligned at 8 GiB, exactly 512 MiB long (query-pci-q35-above-4g). */
        ck_assert(hotplug_window_fits(0x200000000, 0x21fffffff, 512 * MIB, &at));
        ck_assert_uint_eq(at, 0x200000000);
        ck_assert(!hotplug_window_fits(0x200000000, 0x21fffffff, GIB, NULL));
        /* One byte short. */
        ck_assert(!hotplug_window_fits(0x100000, 0x1ffffe, MIB, NULL));
        ck_assert(hotplug_window_fits(0x100000, 0x1fffff, MIB, NULL));
        /* The smallest block, and a window of one byte that cannot hold it. */
        ck_assert(hotplug_window_fits(0x1000, 0x1000, 1, &at));
        ck_assert_uint_eq(at, 0x1000);
}
END_TEST

START_TEST(test_window_misaligned) {
        uint64_t at = 0;

        /* SeaBIOS gave rp0 512 MiB at 0xdea00000 (query-pci-q35-two-ports):
         * a 512 MiB BAR must start on a 512 MiB boundary, and the first one,
         * 0xe0000000, leaves too little; a 256 MiB BAR fits there. */
        ck_assert(!hotplug_window_fits(0xdea00000, 0xfe9fffff, 512 * MIB, NULL));
        ck_assert(hotplug_window_fits(0xdea00000, 0xfe9fffff, 256 * MIB, &at));
        ck_assert_uint_eq(at, 0xe0000000);
        /* A 2 MiB window at a 1 MiB boundary holds no 2 MiB BAR. */
        ck_assert(!hotplug_window_fits(0x100000, 0x2fffff, 2 * MIB, NULL));
        ck_assert(hotplug_window_fits(0x100000, 0x3fffff, 2 * MIB, &at));
        ck_assert_uint_eq(at, 0x200000);
}
END_TEST

START_TEST(test_window_edges) {
        uint64_t at = 0;

        /* No window: base above limit (a bridge the firmware has not set up). */
        ck_assert(!hotplug_window_fits(0xfff00000, 0xfffff, MIB, NULL));
        /* Not a BAR size. */
        ck_assert(!hotplug_window_fits(0, UINT64_MAX, 0, NULL));
        ck_assert(!hotplug_window_fits(0, UINT64_MAX, 3 * MIB, NULL));
        /* At the top of the 64-bit space: the aligned address or its end would wrap. */
        ck_assert(hotplug_window_fits(0xfffffffffff00000, UINT64_MAX, MIB, &at));
        ck_assert_uint_eq(at, 0xfffffffffff00000);
        ck_assert(!hotplug_window_fits(0xfffffffffff00001, UINT64_MAX, MIB, NULL));
        ck_assert(!hotplug_window_fits(0xfffffffffff00000, UINT64_MAX, 2 * MIB, NULL));
        ck_assert(hotplug_window_fits(0, UINT64_MAX, UINT64_C(1) << 63, &at));
        ck_assert_uint_eq(at, 0);
        ck_assert(hotplug_window_fits(1, UINT64_MAX, UINT64_C(1) << 63, &at));
        ck_assert_uint_eq(at, UINT64_C(1) << 63);
}
END_TEST

/* A capture, the ports in it, and the port chosen for BARs of some sizes. */
static const struct {
        const char *name;
        const char *why;
        size_t n_ports;
        HotplugPort ports[3];
        struct {
                uint64_t bar_size;
                const char *port; /* "": none */
        } choices[6];
} captures[] = {
        {
                "q35-two-ports",
                "-device pcie-root-port,id=rp0,...,pref64-reserve=512M -device pcie-root-port,id=rp1,...; "
                "the smallest window that holds the BAR, not the first free port; "
                "512 MiB reserved, but not 512 MiB aligned",
                2,
                { { "rp0", false, 0xdea00000, 0xfe9fffff }, { "rp1", false, 0xfea00000, 0xfebfffff } },
                { { 2 * MIB, "rp1" }, { 4 * MIB, "rp0" }, { 256 * MIB, "rp0" }, { 512 * MIB, "" } },
        },
        {
                "q35-big-plugged",
                "the same machine with a 128 MiB region's device (BAR2 256 MiB) on rp0",
                2,
                { { "rp0", true, 0xdea00000, 0xfe9fffff }, { "rp1", false, 0xfea00000, 0xfebfffff } },
                { { 256 * MIB, "" }, { 4 * MIB, "" }, { 2 * MIB, "rp1" } },
        },
        {
                "q35-above-4g",
                "a third port with pref64-reserve=4G: the firmware moved every 64-bit window above 4 GiB; "
                "512 MiB fits rp0 exactly (and its window is smaller than rp2's), 4 GiB rp2 exactly",
                3,
                { { "rp0", false, 0x200000000, 0x21fffffff },
                  { "rp1", false, 0x220000000, 0x2201fffff },
                  { "rp2", false, 0x100000000, 0x1ffffffff } },
                { { 2 * MIB, "rp1" }, { 512 * MIB, "rp0" }, { GIB, "rp2" }, { 4 * GIB, "rp2" }, { 8 * GIB, "" } },
        },
        {
                "q35-before-firmware",
                "QEMU started with -S: the ports' windows are not set up yet",
                2,
                { { "rp0", false, 0xfff00000, 0xfffff }, { "rp1", false, 0xfff00000, 0xfffff } },
                { { 4096, "" }, { MIB, "" } },
        },
        {
                "pc",
                "i440fx with one ivshmem on pci.0: its PIIX bridges are no PCI-to-PCI bridges",
                0,
                {},
                { { MIB, "" } },
        },
};

START_TEST(test_capture) {
        __typeof__(captures[0]) *c = &captures[_i];
        Parsed p;

        parse_capture(c->name, &p);
        ck_assert_msg(p.n == c->n_ports, "%s (%s): %zu ports", c->name, c->why, p.n);
        for (size_t i = 0; i < p.n; i++)
                check_port(&p.ports[i], c->ports[i].id, c->ports[i].occupied, c->ports[i].pref_base,
                           c->ports[i].pref_limit);
        for (size_t i = 0; i < ELEMENTSOF(c->choices) && c->choices[i].bar_size; i++)
                ck_assert_msg(strcmp(choose(&p, c->choices[i].bar_size), c->choices[i].port) == 0,
                              "%s (%s): a BAR of %" PRIu64 " bytes went to '%s', not '%s'", c->name, c->why,
                              c->choices[i].bar_size, choose(&p, c->choices[i].bar_size), c->choices[i].port);
        parsed_free(&p);
}
END_TEST

/* A bridge device as query-pci has it, @behind the text of its "devices" array (NULL: none). */
#define BRIDGE(id, base, limit, behind)                                                                     \
        "{\"bus\": 0, \"qdev_id\": \"" id "\", \"pci_bridge\": {\"bus\": {\"prefetchable_range\": "    \
        "{\"base\": " base ", \"limit\": " limit "}}" behind "}}"
#define BEHIND(devices) ", \"devices\": [" devices "]"
#define DEVICE(id) "{\"bus\": 1, \"qdev_id\": \"" id "\"}"
#define REPLY(devices) "{\"return\": [{\"bus\": 0, \"devices\": [" devices "]}]}"

START_TEST(test_switch_and_anonymous_bridges) {
        Parsed p;

        /* A switch: its upstream port has downstream ports behind it, so it is
         * in use; a bridge without an id is no candidate, but what is behind
         * it is looked at. */
        ck_assert_int_eq(parse_text(REPLY(BRIDGE("up", "0", "8388607", BEHIND(
                                                 BRIDGE("dp0", "1048576", "2097151", "") ","
                                                 BRIDGE("dp1", "2097152", "4194303", BEHIND(DEVICE("disk")))))
                                          "," BRIDGE("", "0", "-1", BEHIND(BRIDGE("deep", "4194304", "5242879", "")))),
                                    &p),
                         0);
        ck_assert_uint_eq(p.n, 4);
        check_port(&p.ports[0], "up", true, 0, 8388607);
        check_port(&p.ports[1], "dp0", false, 1048576, 2097151);
        check_port(&p.ports[2], "dp1", true, 2097152, 4194303);
        check_port(&p.ports[3], "deep", false, 4194304, 5242879);
        ck_assert_str_eq(choose(&p, MIB), "dp0");
        ck_assert_str_eq(choose(&p, 2 * MIB), "");
        parsed_free(&p);
}
END_TEST

/* hotplug_bus_free_slots() of bus @bus in @p's reply. */
static int free_slots(const Parsed *p, unsigned bus) {
        struct json_object *buses;

        ck_assert(json_object_object_get_ex(p->reply, "return", &buses));
        return hotplug_bus_free_slots(buses, bus);
}

START_TEST(test_pc_free_slots) {
        Parsed p;

        /* Slot 0 the host bridge, 1 the PIIX3 (functions 0, 1, 3), 2 the ivshmem. */
        parse_capture("pc", &p);
        ck_assert_int_eq(free_slots(&p, 0), 29);
        ck_assert_int_eq(free_slots(&p, 1), -EBADMSG); /* no such bus */
        parsed_free(&p);
        /* 30 pci-testdev in slots 2-31: QEMU refused a 31st ("PCI: no slot/function available"). */
        parse_capture("pc-full", &p);
        ck_assert_int_eq(free_slots(&p, 0), 0);
        parsed_free(&p);
        /* A function other than 0 alone does not take the slot from device_add's search. */
        ck_assert_int_eq(parse_text("{\"return\": [{\"bus\": 0, \"devices\": [{\"slot\": 0, \"function\": 0}, "
                                    "{\"slot\": 0, \"function\": 1}, {\"slot\": 5, \"function\": 2}]}]}",
                                    &p),
                         0);
        ck_assert_int_eq(free_slots(&p, 0), 31);
        parsed_free(&p);
        /* Not query-pci's shape. */
        ck_assert_int_eq(parse_text("{\"return\": [{\"bus\": 0, \"devices\": [{\"slot\": 32, \"function\": 0}]}]}",
                                    &p),
                         0);
        ck_assert_int_eq(free_slots(&p, 0), -EBADMSG);
        parsed_free(&p);
        ck_assert_int_eq(parse_text("{\"return\": [{\"bus\": 0, \"devices\": [{\"slot\": 3}]}]}", &p), 0);
        ck_assert_int_eq(free_slots(&p, 0), -EBADMSG);
        parsed_free(&p);
        ck_assert_int_eq(parse_text("{\"return\": [{\"bus\": 0}]}", &p), -EBADMSG);
        ck_assert_int_eq(free_slots(&p, 0), -EBADMSG);
        parsed_free(&p);
}
END_TEST

START_TEST(test_numbers_beyond_int64) {
        Parsed p;

        /* QEMU prints a uint64 above INT64_MAX as a negative QAPI int; json-c
         * reads a number above INT64_MAX as a uint64: both are the same address. */
        ck_assert_int_eq(parse_text(REPLY(BRIDGE("neg", "-1048576", "-1", "") ","
                                          BRIDGE("big", "18446744073707454464", "18446744073708503039", "")),
                                    &p),
                         0);
        check_port(&p.ports[0], "neg", false, 0xfffffffffff00000, UINT64_MAX);
        check_port(&p.ports[1], "big", false, 0xffffffffffe00000, 0xffffffffffefffff);
        /* Equal windows: the first. */
        ck_assert_str_eq(choose(&p, MIB), "neg");
        ck_assert_str_eq(choose(&p, 2 * MIB), "");
        parsed_free(&p);
}
END_TEST

START_TEST(test_not_query_pci) {
        HotplugPort *ports = NULL;
        struct json_object *o;
        size_t n = 0;
        Parsed p;

        o = json_tokener_parse("{\"bus\": 0}");
        ck_assert_int_eq(hotplug_ports_parse(o, &ports, &n), -EBADMSG);
        json_object_put(o);
        ck_assert_int_eq(parse_text("{\"return\": [1]}", &p), -EBADMSG);
        parsed_free(&p);
        ck_assert_int_eq(parse_text("{\"return\": [{\"bus\": 0}]}", &p), -EBADMSG);
        parsed_free(&p);
        /* A bridge without its window, or with a window that is no number. */
        ck_assert_int_eq(parse_text(REPLY("{\"qdev_id\": \"rp0\", \"pci_bridge\": {\"bus\": {}}}"), &p), -EBADMSG);
        parsed_free(&p);
        ck_assert_int_eq(parse_text(REPLY(BRIDGE("rp0", "\"0\"", "1", "")), &p), -EBADMSG);
        parsed_free(&p);
        ck_assert_int_eq(parse_text(REPLY(BRIDGE("rp0", "0", "1.5", "")), &p), -EBADMSG);
        parsed_free(&p);
        /* Nothing to choose from. */
        ck_assert_ptr_null(hotplug_port_choose(NULL, 0, MIB));
        ck_assert_ptr_null(ports);
}
END_TEST

/* A query-pci reply of @n bridges on bus 0 (free() it). */
static char *bridges_reply(size_t n) {
        static const char bridge[] = BRIDGE("p", "0", "1048575", "");
        char *text = malloc(n * sizeof(bridge) + 64), *t = text;

        ck_assert_ptr_nonnull(text);
        t += sprintf(t, "{\"return\": [{\"bus\": 0, \"devices\": [");
        for (size_t i = 0; i < n; i++)
                t += sprintf(t, "%s%s", i ? "," : "", bridge);
        strcpy(t, "]}]}");
        return text;
}

START_TEST(test_too_many_bridges) {
        char *text;
        Parsed p;

        text = bridges_reply(HOTPLUG_PORTS_MAX);
        ck_assert_int_eq(parse_text(text, &p), 0);
        ck_assert_uint_eq(p.n, HOTPLUG_PORTS_MAX);
        parsed_free(&p);
        free(text);
        text = bridges_reply(HOTPLUG_PORTS_MAX + 1);
        ck_assert_int_eq(parse_text(text, &p), -EBADMSG);
        parsed_free(&p);
        free(text);
}
END_TEST

int main(void) {
        Suite *s = suite_create("hotplug-slot");
        TCase *tc;

        tc = tcase_new("window");
        tcase_add_test(tc, test_window_exact_fit);
        tcase_add_test(tc, test_window_misaligned);
        tcase_add_test(tc, test_window_edges);
        suite_add_tcase(s, tc);

        tc = tcase_new("qemu-7.2-captures");
        tcase_add_loop_test(tc, test_capture, 0, ELEMENTSOF(captures));
        suite_add_tcase(s, tc);

        tc = tcase_new("pc-slots");
        tcase_add_test(tc, test_pc_free_slots);
        suite_add_tcase(s, tc);

        tc = tcase_new("shapes");
        tcase_add_test(tc, test_switch_and_anonymous_bridges);
        tcase_add_test(tc, test_numbers_beyond_int64);
        tcase_add_test(tc, test_not_query_pci);
        tcase_add_test(tc, test_too_many_bridges);
        suite_add_tcase(s, tc);
        return run_suite(s);
}
