/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmem-hotplug: plugs a region's ivshmem-doorbell device into a running
 * QEMU, for the broker's guest factory (docs/factory.md; what QEMU 7.2 does
 * here: README.md beside this file). The broker's loop never waits on QEMU,
 * so it runs this helper once per request, reads its one line of answer
 * from a pipe and kills it past its own deadline.
 *
 *   shmem-hotplug qmp --monitor QMP_SOCKET --id ID --server REGION_SOCKET
 *                 --vectors N --bar-size BYTES [--timeout-ms MS] [--verbose]
 *   shmem-hotplug qmp-unplug --monitor QMP_SOCKET --id ID [--timeout-ms MS] [--verbose]
 *   shmem-hotplug libvirt --uuid UUID [--name NAME] [--uri URI] --region NAME
 *                 --server REGION_SOCKET --vectors N --bar-size BYTES [--timeout-ms MS] [--verbose]
 *
 * The broker runs qmp for a QEMU that names its QMP socket on its command
 * line, libvirt for a libvirt domain (hotplug-libvirt.c: the <shmem> device
 * through virDomainAttachDeviceFlags, on q35 at slot 0 of a free root port
 * of the live XML that holds the BAR).
 *
 * qmp: on the QMP monitor socket, qmp_capabilities, then the machine type
 * (qom-get /machine type) decides the bus:
 *   q35: the free pcie-root-port (query-pci: a bridge with a qdev id and no
 *        device behind it) whose prefetchable window holds a naturally
 *        aligned BAR of BYTES, the smallest such window (hotplug-slot.h);
 *        none: no-slot, and nothing is plugged. The device goes to address 0
 *        of the port's bus: QEMU 7.2 would put a second device on an
 *        occupied port at slot 1, where no guest looks.
 *   pc (i440fx): bus pci.0, where ACPI hotplug picks a free slot; none
 *        (query-pci: a device at function 0 of all 32): no-slot, and
 *        nothing is plugged.
 * Then chardev-add ID (a Unix socket client to REGION_SOCKET, never with
 * reconnect: QEMU hangs with it on ivshmem) and device_add
 * ivshmem-doorbell, id ID, chardev ID, vectors N, on that bus. QEMU's
 * device_add returns only once the device's realize has read the ivshmem
 * handshake from REGION_SOCKET (the broker answers it from its loop); if
 * QEMU refuses it, chardev-remove ID.
 *
 * qmp-unplug: device_del ID and its DEVICE_DELETED event (the guest must
 * let go of the device), then chardev-remove ID; either that is not there
 * is skipped, so it also cleans up after a plug that stopped half-way.
 * Unplugging a device can crash QEMU 7.2 without KVM irqfd (README.md).
 *
 * stdout: exactly one line, "ok BUS" (qmp, libvirt), "ok" (qmp-unplug), or
 * "error CODE DETAIL" with CODE
 *   no-slot      no free hot-pluggable slot fits (exit 2)
 *   qmp          QEMU answered with an error: its class, then desc (exit 3)
 *   libvirt      libvirt refused the attach: its message (exit 3)
 *   timeout      the whole run took longer than --timeout-ms (exit 4)
 *   unreachable  no connection, not a QMP monitor, QEMU closed it; no such
 *                running domain, or one of another name (exit 4)
 *   usage        bad arguments (exit 1)
 * and exit status 0 for ok. BUS and DETAIL are one line each, control
 * characters escaped (proto/escape.h). Debug goes to stderr (--verbose).
 *
 * --timeout-ms (default 10000) bounds the whole run, connect included. A
 * timeout says nothing about QEMU's side: a device_add that QEMU is still
 * busy with may complete later.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "answer.h"
#include "clock.h"
#include "escape.h"
#include "hotplug-libvirt.h"
#include "hotplug-slot.h"
#include "macro.h"
#include "qmp.h"

#define ID_MAX 127

static const char *const usage_text =
        "Usage: shmem-hotplug qmp --monitor QMP_SOCKET --id ID --server REGION_SOCKET\n"
        "                     --vectors N --bar-size BYTES [--timeout-ms MS] [--verbose]\n"
        "       shmem-hotplug qmp-unplug --monitor QMP_SOCKET --id ID [--timeout-ms MS] [--verbose]\n"
        "       shmem-hotplug libvirt --uuid UUID [--name NAME] [--uri URI] --region NAME\n"
        "                     --server REGION_SOCKET --vectors N --bar-size BYTES [--port-window BYTES]\n"
        "                     [--timeout-ms MS]\n"
        "\n"
        "Plugs an ivshmem-doorbell device for a region into a running QEMU through its\n"
        "QMP monitor (qmp), or takes one out (qmp-unplug: device_del, then\n"
        "chardev-remove; what is not there is skipped); or plugs the region's <shmem>\n"
        "into a running libvirt domain through the libvirt API (libvirt). For\n"
        "shmem-brokerd's guest factory.\n"
        "\n"
        "  --monitor QMP_SOCKET  QEMU's QMP Unix socket (-qmp unix:PATH,server=on,wait=off)\n"
        "  --id ID               the id of the chardev and of the device (letters, digits,\n"
        "                        '-', '.', '_'; a letter first)\n"
        "  --server REGION_SOCKET  the region's ivshmem socket, which the chardev connects to\n"
        "  --vectors N           MSI-X vectors of the device (the region's max_peers + 1)\n"
        "  --bar-size BYTES      the size of its BAR2, a power of two: on q35 the root port\n"
        "                        chosen is the free one with the smallest prefetchable window\n"
        "                        that holds it; on pc the bus is pci.0, if a slot is free\n"
        "  --uuid UUID           libvirt: the domain (--name: its name, which must agree)\n"
        "  --uri URI             libvirt: the connection (default qemu:///system)\n"
        "  --region NAME         libvirt: the <shmem name> (the region's name)\n"
        "  --port-window BYTES   libvirt: what a root port's prefetchable window holds\n"
        "                        (default 2097152, SeaBIOS's; larger if the guest\n"
        "                        kernel enlarges them: docs/libvirt.md section 13)\n"
        "  --timeout-ms MS       for the whole run (default 10000)\n"
        "  -v, --verbose         say each step on stderr\n"
        "  -h, --help            this text\n"
        "\n"
        "Output: one line on stdout, \"ok BUS\" (qmp, libvirt) or \"ok\" (qmp-unplug), else\n"
        "\"error CODE DETAIL\", CODE one of no-slot (exit 2), qmp (QEMU's error class and\n"
        "description; exit 3), libvirt (libvirt's message; exit 3), timeout or unreachable\n"
        "(exit 4), usage (exit 1).\n";

typedef struct Args {
        bool unplug;
        const char *monitor, *id, *server;
        unsigned vectors;
        uint64_t bar_size;
        unsigned timeout_ms;
        bool verbose;
} Args;

/* Why talking to QEMU failed (a negative errno of qmp.h), during @step. */
static int io_error(const Args *a, const char *step, int r) {
        switch (r) {
        case -ETIMEDOUT:
                return answer(EXIT_UNREACHABLE, "error timeout", "%s: no answer within %u ms", step,
                              a->timeout_ms);
        case -ECONNRESET:
                return answer(EXIT_UNREACHABLE, "error unreachable", "%s: QEMU closed the monitor", step);
        case -EPROTO:
                return answer(EXIT_UNREACHABLE, "error unreachable", "%s: not a QMP monitor's answer", step);
        case -EBADMSG:
                return answer(EXIT_UNREACHABLE, "error unreachable", "%s: a reply not shaped as QEMU's", step);
        default:
                return answer(EXIT_UNREACHABLE, "error unreachable", "%s: %s", step, strerror(-r));
        }
}

static int answer_qmp_error(struct json_object *error) {
        return answer(EXIT_QMP, "error qmp", "%s %s", qmp_error_class(error), qmp_error_desc(error));
}

static int answer_enomem(void) {
        return answer(EXIT_UNREACHABLE, "error unreachable", "%s", strerror(ENOMEM));
}

/*
 * Runs @command with @arguments (consumed; NULL: none); 0 with *@ret_value
 * (if non-NULL), or the helper's answer printed and its exit status (> 0)
 * returned.
 */
static int run(const Args *a, Qmp *q, const char *command, struct json_object *arguments,
               struct json_object **ret_value) {
        struct json_object *value = NULL;
        int64_t t = now_ns();
        int r;

        r = qmp_execute(q, command, arguments, &value);
        debug("%s: %s in %" PRId64 " ms", command, r == 0 ? "done" : r == QMP_ERROR ? "refused" : "failed",
              (now_ns() - t) / 1000000);
        if (r < 0)
                return io_error(a, command, r);
        if (r == QMP_ERROR) {
                r = answer_qmp_error(value);
                json_object_put(value);
                return r;
        }
        if (ret_value)
                *ret_value = value;
        else
                json_object_put(value);
        return 0;
}

/* run() of a command that has arguments: @arguments NULL means there was no memory for them. */
static int run_args(const Args *a, Qmp *q, const char *command, struct json_object *arguments,
                    struct json_object **ret_value) {
        return arguments ? run(a, q, command, arguments, ret_value) : answer_enomem();
}

/* A json object of @n key/value pairs, values json objects (consumed); NULL without memory. */
static struct json_object *object_of(size_t n, ...) {
        struct json_object *o = json_object_new_object();
        va_list ap;

        va_start(ap, n);
        for (size_t i = 0; i < n; i++) {
                const char *key = va_arg(ap, const char *);
                struct json_object *v = va_arg(ap, struct json_object *);

                if (o && v && json_object_object_add(o, key, v) == 0)
                        continue;
                /* Without memory: the values left are consumed all the same. */
                json_object_put(v);
                json_object_put(o);
                o = NULL;
        }
        va_end(ap);
        return o;
}

static int connect_monitor(const Args *a, Qmp **ret) {
        Qmp *q = NULL;
        int r;

        r = qmp_connect(&q, a->monitor, hotplug_started_ns + (int64_t) a->timeout_ms * 1000000);
        if (r == -ETIMEDOUT)
                /* QEMU serves one monitor client at a time: the others wait, unanswered. */
                return answer(EXIT_UNREACHABLE, "error timeout",
                              "no QMP greeting on %s within %u ms (another client on it?)", a->monitor,
                              a->timeout_ms);
        if (r < 0)
                return answer(EXIT_UNREACHABLE, "error unreachable", "%s: %s", a->monitor,
                              r == -EPROTO ? "not a QMP monitor" : strerror(-r));
        debug("connected to %s", a->monitor);
        r = run(a, q, "qmp_capabilities", NULL, NULL);
        if (r > 0) {
                qmp_free(q);
                return r;
        }
        *ret = q;
        return 0;
}

/* What goes into no-slot's detail: each port and why it did not do. */
static void describe_ports(char *buf, size_t size, const HotplugPort *ports, size_t n) {
        size_t len = 0;

        buf[0] = 0;
        for (size_t i = 0; i < n && len < size; i++) {
                const HotplugPort *p = &ports[i];

                len += (size_t) snprintf(buf + len, size - len, "%s%s ", i ? ", " : "", p->id);
                if (len >= size)
                        break;
                if (p->occupied)
                        len += (size_t) snprintf(buf + len, size - len, "in use");
                else if (p->pref_base > p->pref_limit)
                        len += (size_t) snprintf(buf + len, size - len, "no window");
                else
                        len += (size_t) snprintf(buf + len, size - len, "0x%" PRIx64 "-0x%" PRIx64, p->pref_base,
                                                 p->pref_limit);
        }
}

/* The root port of a q35 machine for @a's BAR into @ret_bus (a copy), or the answer's exit status. */
static int choose_root_port(const Args *a, Qmp *q, char **ret_bus) {
        _cleanup_free_ HotplugPort *ports = NULL;
        struct json_object *buses = NULL;
        const HotplugPort *port;
        char described[DETAIL_MAX];
        size_t n = 0;
        int r;

        r = run(a, q, "query-pci", NULL, &buses);
        if (r > 0)
                return r;
        r = hotplug_ports_parse(buses, &ports, &n);
        if (r < 0) {
                json_object_put(buses);
                return io_error(a, "query-pci", r);
        }
        port = hotplug_port_choose(ports, n, a->bar_size);
        if (!port) {
                describe_ports(described, sizeof(described), ports, n);
                json_object_put(buses);
                return answer(EXIT_NO_SLOT, "error no-slot", "no free root port fits a BAR of %" PRIu64 " bytes (%s)",
                              a->bar_size, n ? described : "the machine has none");
        }
        debug("root port %s: window 0x%" PRIx64 "-0x%" PRIx64, port->id, port->pref_base, port->pref_limit);
        *ret_bus = strdup(port->id);
        json_object_put(buses);
        return *ret_bus ? 0 : answer_enomem();
}

/* Whether pc's pci.0 has a free slot, from query-pci: 0, or the answer's exit status (no-slot). */
static int check_pci0(const Args *a, Qmp *q) {
        struct json_object *buses = NULL;
        int r, n;

        r = run(a, q, "query-pci", NULL, &buses);
        if (r > 0)
                return r;
        n = hotplug_bus_free_slots(buses, 0);
        json_object_put(buses);
        if (n < 0)
                return io_error(a, "query-pci", n);
        /* QEMU would refuse the device_add, after the chardev-add that the region's peers see. */
        if (n == 0)
                return answer(EXIT_NO_SLOT, "error no-slot", "pci.0 has no free slot (all %d in use)",
                              HOTPLUG_BUS_SLOTS);
        debug("pci.0: %d of %d slots free", n, HOTPLUG_BUS_SLOTS);
        return 0;
}

static int cmd_plug(const Args *a, Qmp *q) {
        _cleanup_free_ char *bus = NULL;
        struct json_object *type = NULL, *args;
        const char *machine;
        bool q35;
        int r;

        r = run_args(a, q, "qom-get", object_of(2, "path", json_object_new_string("/machine"), "property",
                                           json_object_new_string("type")), &type);
        if (r > 0)
                return r;
        machine = json_object_get_string(type);
        debug("machine type %s", machine);
        /* "pc-q35-7.2-machine", "pc-i440fx-7.2-machine" */
        q35 = strstr(machine, "-q35-") != NULL;
        if (!q35 && strncmp(machine, "pc-i440fx-", 10) != 0) {
                r = answer(EXIT_NO_SLOT, "error no-slot", "machine type %s: not q35 or pc", machine);
                json_object_put(type);
                return r;
        }
        json_object_put(type);

        if (q35) {
                r = choose_root_port(a, q, &bus);
                if (r > 0)
                        return r;
        } else {
                r = check_pci0(a, q);
                if (r > 0)
                        return r;
                bus = strdup("pci.0");
                if (!bus)
                        return answer_enomem();
        }

        /* No "reconnect": with it QEMU 7.2 hangs in ivshmem (research/qemu-lab.md). */
        r = run_args(a, q, "chardev-add",
                object_of(2, "id", json_object_new_string(a->id), "backend",
                          object_of(2, "type", json_object_new_string("socket"), "data",
                                    object_of(2, "addr",
                                              object_of(2, "type", json_object_new_string("unix"), "data",
                                                        object_of(1, "path", json_object_new_string(a->server))),
                                              "server", json_object_new_boolean(false)))),
                NULL);
        if (r > 0)
                return r;

        args = object_of(5, "driver", json_object_new_string("ivshmem-doorbell"), "id", json_object_new_string(a->id),
                         "chardev", json_object_new_string(a->id), "vectors", json_object_new_int64(a->vectors),
                         "bus", json_object_new_string(bus));
        /* Slot 0 of a root port's bus: QEMU 7.2 places a second device at slot 1 otherwise. */
        if (q35 && args && json_object_object_add(args, "addr", json_object_new_string("0")) < 0) {
                json_object_put(args);
                args = NULL;
        }
        r = run_args(a, q, "device_add", args, NULL);
        if (r == EXIT_QMP) {
                /* Refused: nothing holds the chardev; removing it lets the broker see this VM go.
                 * After a timeout QEMU is still in device_add, and the monitor answers nothing. */
                int k = qmp_execute(q, "chardev-remove", object_of(1, "id", json_object_new_string(a->id)), NULL);

                debug("chardev-remove %s after the refused device_add: %d", a->id, k);
        }
        if (r > 0)
                return r;
        return answer(EXIT_OK, "ok", "%s", bus);
}

typedef struct Deleted {
        const char *id;
        bool seen;
} Deleted;

static void on_event(const char *event, struct json_object *data, void *userdata) {
        Deleted *d = userdata;
        struct json_object *device;

        debug("event %s", event);
        if (strcmp(event, "DEVICE_DELETED") == 0 && data && json_object_object_get_ex(data, "device", &device) &&
            json_object_is_type(device, json_type_string) && strcmp(json_object_get_string(device), d->id) == 0)
                d->seen = true;
}

/* Whether the chardev @id exists (query-chardev), or the answer's exit status (> 0). */
static int chardev_exists(const Args *a, Qmp *q, bool *ret) {
        struct json_object *list = NULL;
        int r;

        r = run(a, q, "query-chardev", NULL, &list);
        if (r > 0)
                return r;
        *ret = false;
        for (size_t i = 0; json_object_is_type(list, json_type_array) && i < json_object_array_length(list); i++) {
                struct json_object *label;

                if (json_object_object_get_ex(json_object_array_get_idx(list, i), "label", &label) &&
                    strcmp(json_object_get_string(label), a->id) == 0)
                        *ret = true;
        }
        json_object_put(list);
        return 0;
}

static int cmd_unplug(const Args *a, Qmp *q) {
        Deleted deleted = { .id = a->id };
        struct json_object *error = NULL;
        bool chardev;
        int r;

        qmp_on_event(q, on_event, &deleted);
        r = qmp_execute(q, "device_del", object_of(1, "id", json_object_new_string(a->id)), &error);
        if (r < 0)
                return io_error(a, "device_del", r);
        if (r == QMP_ERROR) {
                if (strcmp(qmp_error_class(error), "DeviceNotFound") != 0) {
                        r = answer_qmp_error(error);
                        json_object_put(error);
                        return r;
                }
                debug("device %s: not there", a->id);
                deleted.seen = true;
        }
        json_object_put(error);
        while (!deleted.seen) {
                r = qmp_read_event(q);
                if (r < 0)
                        return io_error(a, "waiting for DEVICE_DELETED", r);
        }
        r = chardev_exists(a, q, &chardev);
        if (r > 0)
                return r;
        if (chardev) {
                r = run_args(a, q, "chardev-remove", object_of(1, "id", json_object_new_string(a->id)), NULL);
                if (r > 0)
                        return r;
        }
        return answer(EXIT_OK, "ok", "%s", "");
}

/* QEMU's id_wellformed(): a letter, then letters, digits, '-', '.', '_'. */
static bool id_ok(const char *id) {
        size_t n = strlen(id);

        if (n == 0 || n > ID_MAX || !((id[0] >= 'a' && id[0] <= 'z') || (id[0] >= 'A' && id[0] <= 'Z')))
                return false;
        return strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._") == n;
}

/* Parses the command line into @a; 0, -1 for --help, or the usage answer's exit status. */
static int parse_args(int argc, char **argv, Args *a) {
        enum { OPT_MONITOR = 0x100, OPT_ID, OPT_SERVER, OPT_VECTORS, OPT_BAR_SIZE, OPT_TIMEOUT };
        static const struct option options[] = {
                { "monitor", required_argument, NULL, OPT_MONITOR },
                { "id", required_argument, NULL, OPT_ID },
                { "server", required_argument, NULL, OPT_SERVER },
                { "vectors", required_argument, NULL, OPT_VECTORS },
                { "bar-size", required_argument, NULL, OPT_BAR_SIZE },
                { "timeout-ms", required_argument, NULL, OPT_TIMEOUT },
                { "verbose", no_argument, NULL, 'v' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        bool have_vectors = false, have_bar = false;
        uint64_t v;
        int c;

        *a = (Args) { .timeout_ms = DEFAULT_TIMEOUT_MS };
        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
                return -1;
        if (argc < 2 || (strcmp(argv[1], "qmp") != 0 && strcmp(argv[1], "qmp-unplug") != 0))
                return usage_error("a command first: qmp, qmp-unplug or libvirt");
        a->unplug = strcmp(argv[1], "qmp-unplug") == 0;
        opterr = 0;
        optind = 2;
        while ((c = getopt_long(argc, argv, "vh", options, NULL)) >= 0) {
                switch (c) {
                case OPT_MONITOR:
                        a->monitor = optarg;
                        break;
                case OPT_ID:
                        a->id = optarg;
                        break;
                case OPT_SERVER:
                        a->server = optarg;
                        break;
                case OPT_VECTORS:
                        if (!parse_number(optarg, 1, VECTORS_MAX, &v))
                                return usage_error("--vectors %s: not a number of 1 to 2048", optarg);
                        a->vectors = (unsigned) v;
                        have_vectors = true;
                        break;
                case OPT_BAR_SIZE:
                        if (!parse_number(optarg, 1, UINT64_C(1) << 62, &v) || (v & (v - 1)) != 0)
                                return usage_error("--bar-size %s: not a power of two", optarg);
                        a->bar_size = v;
                        have_bar = true;
                        break;
                case OPT_TIMEOUT:
                        if (!parse_number(optarg, 1, TIMEOUT_MS_MAX, &v))
                                return usage_error("--timeout-ms %s: not a number of 1 to 3600000", optarg);
                        a->timeout_ms = (unsigned) v;
                        break;
                case 'v':
                        a->verbose = true;
                        break;
                case 'h':
                        return -1;
                default:
                        return usage_error("unknown option or missing value: %s", argv[optind - 1]);
                }
        }
        if (optind < argc)
                return usage_error("unexpected argument %s", argv[optind]);
        if (!a->monitor || !a->id)
                return usage_error("--monitor and --id are needed");
        if (!id_ok(a->id))
                return usage_error("--id %s: a letter, then letters, digits, '-', '.' or '_' (127 at most)", a->id);
        if (strlen(a->monitor) >= sizeof(((struct sockaddr_un *) NULL)->sun_path))
                return usage_error("--monitor %s: too long for a Unix socket", a->monitor);
        if (a->unplug && (a->server || have_vectors || have_bar))
                return usage_error("qmp-unplug takes --monitor, --id and --timeout-ms only");
        if (!a->unplug && (!a->server || !have_vectors || !have_bar))
                return usage_error("qmp needs --server, --vectors and --bar-size");
        if (a->server && strlen(a->server) >= sizeof(((struct sockaddr_un *) NULL)->sun_path))
                return usage_error("--server %s: too long for a Unix socket", a->server);
        return 0;
}

int main(int argc, char **argv) {
        Qmp *q = NULL;
        Args a;
        int r;

        hotplug_started_ns = now_ns();
        /* A broker that stopped reading gets no answer, and no SIGPIPE kills us mid-QMP. */
        signal(SIGPIPE, SIG_IGN);
        if (argc >= 2 && strcmp(argv[1], "libvirt") == 0)
                return hotplug_libvirt_main(argc, argv);
        r = parse_args(argc, argv, &a);
        if (r < 0) {
                fputs(usage_text, stdout);
                return EXIT_OK;
        }
        if (r > 0)
                return r;
        hotplug_verbose = a.verbose;
        r = connect_monitor(&a, &q);
        if (r > 0)
                return r;
        r = a.unplug ? cmd_unplug(&a, q) : cmd_plug(&a, q);
        qmp_free(q);
        return r;
}
