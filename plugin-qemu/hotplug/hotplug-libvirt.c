/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmem-hotplug libvirt: a region's device into a running libvirt domain
 * through the libvirt API, never through its monitor: libvirt owns a
 * domain's QMP socket, and QMP passthrough (virDomainQemuMonitorCommand)
 * taints the domain. The device is the <shmem> of `shmemctl xml`
 * (proto/domain-xml.h), attached with virDomainAttachDeviceFlags(LIVE).
 *
 * The domain is the one of --uuid, which the broker took from the QEMU
 * process whose pid libvirt's pid file holds (never from anything the
 * guest wrote); --name, the domain's name as the broker saw it, must agree.
 * On q35 the device goes to slot 0 of a free hot-pluggable pcie-root-port
 * of the live XML whose window holds the BAR, else no-slot. The window is
 * --port-window (default DOMAIN_PORT_WINDOW, SeaBIOS's): libvirt 9.0 cannot
 * reserve a larger one without tainting the domain, and the guest cannot be
 * asked, so a larger one is the broker's word (libvirt-port-window) that the
 * guest kernel enlarges its ports' windows (DOMAIN_PORT_RELEASE);
 * on pc libvirt chooses a slot of pci.0 (ACPI hotplug).
 *
 * A libvirt call cannot be interrupted, so the deadline is a timer whose
 * handler writes the timeout line and exits: libvirtd may still complete
 * an attach it was busy with (as QEMU may a device_add, README.md).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "answer.h"
#include "hotplug-libvirt.h"

#ifndef SHMEM_HAVE_LIBVIRT

int hotplug_libvirt_main(int argc, char **argv) {
        (void) argc, (void) argv;
        return answer(EXIT_UNREACHABLE, "error unreachable",
                      "shmem-hotplug was built without libvirt (cmake -DSHMEM_LIBVIRT=ON, needs libvirt-dev)");
}

#else

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "domain-xml.h"
#include "macro.h"
#include "region-layout.h"

#define UUID_LEN 36
#define NAME_MAX_LEN 255 /* a domain name, for the check only */

typedef struct Args {
        const char *uri, *uuid, *name, *region, *server;
        unsigned vectors;
        uint64_t bar_size, port_window;
        unsigned timeout_ms;
} Args;

static char timeout_line[128];
static size_t timeout_len;

/* The deadline: libvirt's calls block, so the line is written from the handler. */
static void on_alarm(int sig) {
        (void) sig;
        (void) !write(STDOUT_FILENO, timeout_line, timeout_len);
        _exit(EXIT_UNREACHABLE);
}

static void deadline_arm(unsigned ms) {
        struct itimerval it = { .it_value = { .tv_sec = ms / 1000, .tv_usec = (suseconds_t) (ms % 1000) * 1000 } };

        timeout_len = (size_t) snprintf(timeout_line, sizeof(timeout_line),
                                        "error timeout libvirt did not complete the attach within %u ms\n", ms);
        signal(SIGALRM, on_alarm);
        (void) setitimer(ITIMER_REAL, &it, NULL);
}

/* Past this, the answer is ours to print: the timer must not cut it. */
static void deadline_disarm(void) {
        struct itimerval off = {};

        (void) setitimer(ITIMER_REAL, &off, NULL);
        signal(SIGALRM, SIG_IGN);
}

static const char *virt_error(void) {
        const char *m = virGetLastErrorMessage();

        return m && *m ? m : "unknown libvirt error";
}

static void virt_quiet(void *userdata, virErrorPtr error) {
        (void) userdata, (void) error;
}

static bool uuid_ok(const char *s) {
        if (strlen(s) != UUID_LEN)
                return false;
        for (size_t i = 0; i < UUID_LEN; i++)
                if (i == 8 || i == 13 || i == 18 || i == 23 ? s[i] != '-' : !strchr("0123456789abcdefABCDEF", s[i]))
                        return false;
        return true;
}

static int parse_args(int argc, char **argv, Args *a) {
        enum { OPT_URI = 0x100, OPT_UUID, OPT_NAME, OPT_REGION, OPT_SERVER, OPT_VECTORS, OPT_BAR_SIZE, OPT_TIMEOUT,
               OPT_PORT_WINDOW };
        static const struct option options[] = {
                { "uri", required_argument, NULL, OPT_URI },
                { "uuid", required_argument, NULL, OPT_UUID },
                { "name", required_argument, NULL, OPT_NAME },
                { "region", required_argument, NULL, OPT_REGION },
                { "server", required_argument, NULL, OPT_SERVER },
                { "vectors", required_argument, NULL, OPT_VECTORS },
                { "bar-size", required_argument, NULL, OPT_BAR_SIZE },
                { "timeout-ms", required_argument, NULL, OPT_TIMEOUT },
                { "port-window", required_argument, NULL, OPT_PORT_WINDOW },
                { "verbose", no_argument, NULL, 'v' },
                {},
        };
        uint64_t v;
        int c;

        *a = (Args) { .uri = "qemu:///system", .timeout_ms = DEFAULT_TIMEOUT_MS,
                      .port_window = DOMAIN_PORT_WINDOW };
        opterr = 0;
        optind = 2;
        while ((c = getopt_long(argc, argv, "v", options, NULL)) >= 0) {
                switch (c) {
                case OPT_URI:
                        a->uri = optarg;
                        break;
                case OPT_UUID:
                        if (!uuid_ok(optarg))
                                return usage_error("--uuid %s: not a UUID", optarg);
                        a->uuid = optarg;
                        break;
                case OPT_NAME:
                        if (!*optarg || strlen(optarg) > NAME_MAX_LEN)
                                return usage_error("--name: 1 to %d characters", NAME_MAX_LEN);
                        a->name = optarg;
                        break;
                case OPT_REGION:
                        if (!shmem_name_valid(optarg))
                                return usage_error("--region %s: not a region name", optarg);
                        a->region = optarg;
                        break;
                case OPT_SERVER:
                        a->server = optarg;
                        break;
                case OPT_VECTORS:
                        if (!parse_number(optarg, 1, VECTORS_MAX, &v))
                                return usage_error("--vectors %s: not a number of 1 to 2048", optarg);
                        a->vectors = (unsigned) v;
                        break;
                case OPT_BAR_SIZE:
                        if (!parse_number(optarg, 1, UINT64_C(1) << 62, &v) || (v & (v - 1)) != 0)
                                return usage_error("--bar-size %s: not a power of two", optarg);
                        a->bar_size = v;
                        break;
                case OPT_PORT_WINDOW:
                        if (!parse_number(optarg, DOMAIN_PORT_WINDOW, UINT64_C(1) << 62, &v))
                                return usage_error("--port-window %s: not a number of bytes of 2097152 or more", optarg);
                        a->port_window = v;
                        break;
                case OPT_TIMEOUT:
                        if (!parse_number(optarg, 1, TIMEOUT_MS_MAX, &v))
                                return usage_error("--timeout-ms %s: not a number of 1 to 3600000", optarg);
                        a->timeout_ms = (unsigned) v;
                        break;
                case 'v':
                        hotplug_verbose = true;
                        break;
                default:
                        return usage_error("unknown option or missing value: %s", argv[optind - 1]);
                }
        }
        if (optind < argc)
                return usage_error("unexpected argument %s", argv[optind]);
        if (!a->uuid || !a->region || !a->server || !a->vectors || !a->bar_size)
                return usage_error("libvirt needs --uuid, --region, --server, --vectors and --bar-size");
        return 0;
}

/* Where the device goes: @ret_bus (-1: libvirt's choice) and its name, or the answer's exit status. */
static int choose_bus(const Args *a, const DomainInfo *info, int *ret_bus, char *name, size_t size) {
        const DomainPort *port;
        char described[DETAIL_MAX];

        if (info->pc) {
                *ret_bus = -1;
                snprintf(name, size, "pci.0");
                return 0;
        }
        if (!info->q35)
                return answer(EXIT_NO_SLOT, "error no-slot", "machine %s: not q35 or pc", info->machine);
        port = domain_port_choose(info, a->bar_size, a->port_window);
        if (!port) {
                domain_ports_describe(info, a->port_window, described, sizeof(described));
                return answer(EXIT_NO_SLOT, "error no-slot",
                              "no free hot-pluggable pcie-root-port holds a BAR of %" PRIu64 " bytes (%s); "
                              "the broker's libvirt-port-window says %" PRIu64 " MiB (docs/libvirt.md section 13)",
                              a->bar_size, info->n_ports ? described : "the domain has none",
                              a->port_window >> 20);
        }
        *ret_bus = (int) port->index;
        if (port->alias[0])
                snprintf(name, size, "%s", port->alias);
        else
                snprintf(name, size, "pci.%u", port->index);
        return 0;
}

static int plug(const Args *a, virDomainPtr dom) {
        _cleanup_(domain_info_freep) DomainInfo *info = NULL;
        _cleanup_free_ char *xml = NULL, *device = NULL;
        char bus_name[48];
        int bus = -1, r;

        if (virDomainIsActive(dom) != 1)
                return answer(EXIT_UNREACHABLE, "error unreachable", "domain %s is not running", a->uuid);
        xml = virDomainGetXMLDesc(dom, 0);
        if (!xml)
                return answer(EXIT_UNREACHABLE, "error unreachable", "no live XML of domain %s: %s", a->uuid,
                              virt_error());
        r = domain_info_parse(xml, strlen(xml), &info);
        if (r < 0)
                return answer(EXIT_UNREACHABLE, "error unreachable", "the live XML of domain %s: %s", a->uuid,
                              strerror(-r));
        debug("machine %s, %zu root ports, %u free", info->machine, info->n_ports, domain_info_free_ports(info));
        if (domain_info_shmem(info, a->region))
                return answer(EXIT_QMP, "error libvirt", "the domain has a <shmem name='%s'> already", a->region);
        r = choose_bus(a, info, &bus, bus_name, sizeof(bus_name));
        if (r > 0)
                return r;
        device = domain_xml_shmem(a->region, a->server, a->vectors, bus);
        if (!device)
                return answer(EXIT_UNREACHABLE, "error unreachable", "%s", strerror(ENOMEM));
        debug("attaching on %s:\n%s", bus_name, device);
        /* libvirt's chardev-add and device_add; the latter returns once the broker answered the handshake. */
        if (virDomainAttachDeviceFlags(dom, device, VIR_DOMAIN_AFFECT_LIVE) < 0)
                return answer(EXIT_QMP, "error libvirt", "%s", virt_error());
        deadline_disarm();
        return answer(EXIT_OK, "ok", "%s", bus_name);
}

int hotplug_libvirt_main(int argc, char **argv) {
        virConnectPtr conn;
        virDomainPtr dom;
        const char *name;
        Args a;
        int r;

        r = parse_args(argc, argv, &a);
        if (r > 0)
                return r;
        deadline_arm(a.timeout_ms);
        virSetErrorFunc(NULL, virt_quiet);
        /* No auth callbacks: nobody is there to answer a prompt (stdin is /dev/null). */
        conn = virConnectOpen(a.uri);
        if (!conn)
                return answer(EXIT_UNREACHABLE, "error unreachable", "cannot connect to libvirt at %s: %s", a.uri,
                              virt_error());
        debug("connected to %s", a.uri);
        dom = virDomainLookupByUUIDString(conn, a.uuid);
        if (!dom) {
                r = answer(EXIT_UNREACHABLE, "error unreachable", "no domain %s at %s: %s", a.uuid, a.uri,
                           virt_error());
                virConnectClose(conn);
                return r;
        }
        name = virDomainGetName(dom);
        if (a.name && (!name || strcmp(name, a.name) != 0))
                r = answer(EXIT_UNREACHABLE, "error unreachable", "domain %s is named '%s' at %s, not '%s'", a.uuid,
                           name ? name : "?", a.uri, a.name);
        else
                r = plug(&a, dom);
        deadline_disarm();
        virDomainFree(dom);
        virConnectClose(conn);
        return r;
}

#endif
