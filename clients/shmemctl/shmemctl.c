/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmemctl: list, inspect, create and destroy the regions of shmem-brokerd
 * over its native protocol (docs/protocol.md §2); the operations commands
 * (watch, signal, dump, reload, upgrade) are in ops.c; attach, detach and
 * xml for libvirt domains in virt.c.
 *
 * Exit codes: 0 ok, 1 refused (by the broker or libvirt, or by shmemctl for
 * the broker's state: a signal to a peer that is not attached), 2 usage, 3 the
 * broker or libvirt cannot be reached (or stopped answering).
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "events.h"
#include "json.h"
#include "region-layout.h"
#include "shmemctl.h"
#include "units.h"

static const char *const usage_text =
        "Usage: shmemctl [-s|--socket PATH] [--json] COMMAND\n"
        "\n"
        "Commands:\n"
        "  list                     regions: NAME SIZE PEERS/MAX BACKEND FLAGS\n"
        "  inspect NAME             one region and its attached peers\n"
        "  create NAME SIZE [--max-peers N] [--persistent]\n"
        "                           declare a region (SIZE: bytes, or with K, M, G, T)\n"
        "  destroy NAME [--force]   forget a region (--force: detach its peers first)\n"
        "  watch [NAME]             one line per event until interrupted: regions\n"
        "                           created, allocated, freed, destroyed; peers joined,\n"
        "                           left (NAME: that region's only)\n"
        "  signal NAME MASK         signal the peers in MASK: bit i = peer index i,\n"
        "                           decimal or 0x-hex; 'all' = every attached peer\n"
        "  dump NAME [--offset N] [--length N] [--raw]\n"
        "                           hexdump of the data area from --offset (default 0),\n"
        "                           4K unless --length; --raw: the bytes as they are\n"
        "  reload                   make the broker re-read its configuration files\n"
        "  upgrade                  make the broker re-execute its binary, keeping every\n"
        "                           region, peer and connection; waits for the new one\n"
        "\n"
        "libvirt (docs/libvirt.md):\n"
        "  xml NAME                 the region's <shmem> device, for domain XML\n"
        "  attach DOMAIN NAME [--live] [--config] [-c URI]\n"
        "                           add that device to a domain (DOMAIN: name or UUID)\n"
        "  detach DOMAIN NAME [--live] [--config] [-c URI] [--timeout SECONDS] [--force]\n"
        "                           remove it; from a running domain, wait until the\n"
        "                           guest has let it go (default 30 s); refused where\n"
        "                           QEMU would crash, unless --force (docs/libvirt.md)\n"
        "\n"
        "Options:\n"
        "  -s, --socket PATH        broker socket (default: $SHMEM_BROKER_SOCKET, else\n"
        "                           " SHMEM_DEFAULT_RUNDIR "/broker.sock)\n"
        "      --json               machine-readable output (list, inspect, watch,\n"
        "                           signal, upgrade)\n"
        "  -c, --connect URI        libvirt URI (default: qemu:///system)\n"
        "      --live, --config     the running domain, its persistent configuration,\n"
        "                           or both (default: libvirt's \"current\")\n"
        "  -h, --help               this text\n"
        "  -V, --version            the version\n"
        "\n"
        "signal and dump attach to the region as a peer for a moment (label \"shmemctl\"):\n"
        "its peers see it join and leave, and receivers of a signal see its index as\n"
        "the sender. A MASK with a peer that is not attached is refused.\n"
        "create, destroy, reload and upgrade are for root and the broker's user; create,\n"
        "destroy, reload, attach and detach print nothing on success. watch ends with 0\n"
        "on SIGINT or SIGTERM, with 3 if the broker goes away.\n"
        "Exit status: 0 ok, 1 refused (by the broker or libvirt, or a signal to a peer\n"
        "that is not attached), 2 usage error, 3 broker or libvirt unreachable.\n";

int usage_error(const char *fmt, ...) {
        va_list ap;

        fputs("shmemctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\nTry 'shmemctl --help'.\n", stderr);
        return EXIT_USAGE;
}

int report_unreachable(const char *path, int error, bool connecting) {
        if (connecting)
                fprintf(stderr,
                        "shmemctl: cannot connect to the broker at %s: %s\n"
                        "shmemctl: is shmem-brokerd running? (choose the socket with --socket or "
                        "$SHMEM_BROKER_SOCKET)\n",
                        path, strerror(-error));
        else
                fprintf(stderr, "shmemctl: broker at %s: %s\n", path, strerror(-error));
        return EXIT_UNREACHABLE;
}

int report_refused(const char *what, int status, const char *detail) {
        fprintf(stderr, "shmemctl: %s: %s", what, status_text(status));
        if (detail && *detail)
                fprintf(stderr, ": %s", detail);
        fputc('\n', stderr);
        return EXIT_REFUSED;
}

int call(Client *c, const char *path, const char *what, Message *req, ClientMsg **ret) {
        ClientMsg *reply = NULL;
        const char *detail;
        int r;

        r = client_call(c, req, CLIENT_TIMEOUT_MS, &reply);
        if (r < 0)
                return report_unreachable(path, r, false);
        r = client_reply_status(reply, &detail);
        if (r != SHMEM__STATUS__OK) {
                r = report_refused(what, r, detail);
                client_msg_free(reply);
                return r;
        }
        *ret = reply;
        return EXIT_OK;
}

static const char *signal_mode_str(unsigned mode) {
        switch (mode) {
        case SHMEM_SIGNAL_MODE_SHMEM:
                return "shmem";
        case SHMEM_SIGNAL_MODE_IVSHMEM:
                return "ivshmem";
        default:
                return "unknown";
        }
}

static const char *str_or(const char *s, const char *dflt) {
        return s && *s ? s : dflt;
}

/* "persistent,declared": what is not the common case; "-" for none. */
static char *region_flags(char buf[64], const Shmem__RegionInfo *r) {
        buf[0] = '\0';
        if (r->persistent)
                strcat(buf, "persistent,");
        if (!r->allocated)
                strcat(buf, "no-memory,");
        if (r->signal_mode != SHMEM_SIGNAL_MODE_SHMEM)
                strcat(buf, "compat,");
        if (buf[0])
                buf[strlen(buf) - 1] = '\0';
        else
                strcpy(buf, "-");
        return buf;
}

/* The fields list and inspect share in --json. */
static void json_region_fields(Json *j, const Shmem__RegionInfo *r) {
        json_key(j, "name");
        json_string(j, r->name);
        json_key(j, "data_size");
        json_uint(j, r->data_size);
        json_key(j, "region_size");
        json_uint(j, r->region_size);
        json_key(j, "backend");
        json_string(j, r->backend);
        json_key(j, "signal_mode");
        json_string(j, signal_mode_str(r->signal_mode));
        json_key(j, "max_peers");
        json_uint(j, r->max_peers);
        json_key(j, "vectors");
        json_uint(j, r->vectors);
        json_key(j, "attached");
        json_uint(j, (uint64_t) __builtin_popcountll(r->active));
        json_key(j, "active");
        json_bits(j, r->active);
        json_key(j, "epoch");
        json_uint(j, r->epoch);
        json_key(j, "persistent");
        json_bool(j, r->persistent);
        json_key(j, "allocated");
        json_bool(j, r->allocated);
        json_key(j, "qemu_socket");
        json_string(j, r->qemu_socket);
}

static int cmd_list(Client *c, const char *path, const Args *a) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        Message m = SHMEM__MESSAGE__INIT;
        const Shmem__ListReply *l;
        int wname = 4, r;

        m.body_case = SHMEM__MESSAGE__BODY_LIST;
        m.list = &(Shmem__List) SHMEM__LIST__INIT;
        r = call(c, path, "list", &m, &reply);
        if (r != EXIT_OK)
                return r;
        l = reply->msg->reply->list;
        if (reply->msg->reply->body_case != SHMEM__REPLY__BODY_LIST || !l)
                return report_unreachable(path, -EPROTO, false);

        if (a->json) {
                Json j;

                json_init(&j, stdout);
                json_object_begin(&j);
                json_key(&j, "regions");
                json_array_begin(&j);
                for (size_t i = 0; i < l->n_regions; i++) {
                        json_object_begin(&j);
                        json_region_fields(&j, l->regions[i]);
                        json_object_end(&j);
                }
                json_array_end(&j);
                json_object_end(&j);
                return EXIT_OK;
        }

        for (size_t i = 0; i < l->n_regions; i++) {
                int n = (int) strlen(str_or(l->regions[i]->name, "?"));

                if (n > wname)
                        wname = n;
        }
        printf("%-*s %8s %-9s %-8s %s\n", wname, "NAME", "SIZE", "PEERS/MAX", "BACKEND", "FLAGS");
        for (size_t i = 0; i < l->n_regions; i++) {
                const Shmem__RegionInfo *ri = l->regions[i];
                char size[UNITS_SIZE_STR_MAX], peers[32], flags[64];

                snprintf(peers, sizeof(peers), "%d/%u", __builtin_popcountll(ri->active), ri->max_peers);
                printf("%-*s %8s %-9s %-8s %s\n", wname, str_or(ri->name, "?"),
                       units_format_size(size, ri->data_size), peers, str_or(ri->backend, "-"),
                       region_flags(flags, ri));
        }
        return EXIT_OK;
}

int inspect_region(Client *c, const char *path, const char *name, ClientMsg **ret_reply,
                   const Shmem__RegionInfo **ret_info) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        Shmem__Inspect in = SHMEM__INSPECT__INIT;
        Message m = SHMEM__MESSAGE__INIT;
        int r;

        in.name = (char *) name;
        m.body_case = SHMEM__MESSAGE__BODY_INSPECT;
        m.inspect = &in;
        r = call(c, path, name, &m, &reply);
        if (r != EXIT_OK)
                return r;
        if (reply->msg->reply->body_case != SHMEM__REPLY__BODY_INSPECT || !reply->msg->reply->inspect ||
            !reply->msg->reply->inspect->region)
                return report_unreachable(path, -EPROTO, false);
        *ret_info = reply->msg->reply->inspect->region;
        *ret_reply = TAKE_PTR(reply);
        return EXIT_OK;
}

/* "UUID (libvirt)" for a VM, "-" for others. */
static const char *vm_str(char buf[64], const Shmem__PeerState *p) {
        if (p->kind != SHMEM__PEER_KIND__KIND_QEMU || !p->vm_uuid || !p->vm_uuid[0])
                return "-";
        snprintf(buf, 64, "%s%s", p->vm_uuid, p->libvirt ? " (libvirt)" : "");
        return buf;
}

static int cmd_inspect(Client *c, const char *path, const Args *a, const char *name) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        const Shmem__RegionInfo *ri;
        char size[UNITS_SIZE_STR_MAX], bits[UNITS_BITS_STR_MAX], flags[64], vm[64];
        int wlabel = 5, wpending = 12, r;

        r = inspect_region(c, path, name, &reply, &ri);
        if (r != EXIT_OK)
                return r;

        if (a->json) {
                Json j;

                json_init(&j, stdout);
                json_object_begin(&j);
                json_region_fields(&j, ri);
                json_key(&j, "peers");
                json_array_begin(&j);
                for (size_t i = 0; i < ri->n_peers; i++) {
                        const Shmem__PeerState *p = ri->peers[i];

                        json_object_begin(&j);
                        json_key(&j, "index");
                        json_uint(&j, p->index);
                        json_key(&j, "kind");
                        json_string(&j, peer_kind_str(p->kind));
                        json_key(&j, "label");
                        json_string(&j, p->label);
                        json_key(&j, "pid");
                        json_uint(&j, p->pid);
                        json_key(&j, "uid");
                        json_uint(&j, p->uid);
                        json_key(&j, "doorbell_id");
                        json_uint(&j, p->doorbell_id);
                        json_key(&j, "pending");
                        json_bits(&j, p->pending);
                        if (p->kind == SHMEM__PEER_KIND__KIND_QEMU) {
                                /* The label of a VM is its -name: libvirt's domain name. */
                                json_key(&j, "vm_name");
                                json_string(&j, p->label);
                                json_key(&j, "vm_uuid");
                                json_string(&j, p->vm_uuid);
                                json_key(&j, "libvirt");
                                json_bool(&j, p->libvirt);
                                json_key(&j, "departures_told");
                                json_uint(&j, p->departures_told);
                        }
                        json_object_end(&j);
                }
                json_array_end(&j);
                json_object_end(&j);
                return EXIT_OK;
        }

        printf("name:        %s\n", str_or(ri->name, "?"));
        printf("size:        %s (%" PRIu64 " bytes)\n", units_format_size(size, ri->region_size),
               ri->region_size);
        printf("data size:   %s (%" PRIu64 " bytes)\n", units_format_size(size, ri->data_size),
               ri->data_size);
        printf("backend:     %s\n", str_or(ri->backend, "-"));
        printf("mode:        %s, %u peers max, %u vectors\n", signal_mode_str(ri->signal_mode),
               ri->max_peers, ri->vectors);
        printf("flags:       %s\n", region_flags(flags, ri));
        printf("epoch:       %" PRIu64 "\n", ri->epoch);
        printf("active:      %s (0x%" PRIx64 ")\n", units_format_bits(bits, ri->active), ri->active);
        printf("qemu socket: %s\n", str_or(ri->qemu_socket, "-"));
        if (ri->n_peers == 0) {
                printf("peers:       none\n");
                return EXIT_OK;
        }
        for (size_t i = 0; i < ri->n_peers; i++) {
                int n = (int) strlen(str_or(ri->peers[i]->label, "-"));

                if (n > wlabel)
                        wlabel = n;
                n = (int) strlen(units_format_bits(bits, ri->peers[i]->pending));
                if (n > wpending)
                        wpending = n;
        }
        printf("\n%-5s %-4s %-*s %8s %6s %-*s %s\n", "INDEX", "KIND", wlabel, "LABEL", "PID", "UID", wpending,
               "PENDING FROM", "VM UUID");
        for (size_t i = 0; i < ri->n_peers; i++) {
                const Shmem__PeerState *p = ri->peers[i];

                printf("%-5u %-4s %-*s %8u %6u %-*s %s\n", p->index, peer_kind_str(p->kind), wlabel,
                       str_or(p->label, "-"), p->pid, p->uid, wpending, units_format_bits(bits, p->pending),
                       vm_str(vm, p));
        }
        return EXIT_OK;
}

static int cmd_create(Client *c, const char *path, const Args *a, const char *name, uint64_t size) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        Shmem__Create cr = SHMEM__CREATE__INIT;
        Message m = SHMEM__MESSAGE__INIT;

        cr.name = (char *) name;
        cr.size = size;
        cr.max_peers = a->max_peers;
        cr.persistent = a->persistent;
        m.body_case = SHMEM__MESSAGE__BODY_CREATE;
        m.create = &cr;
        return call(c, path, name, &m, &reply);
}

static int cmd_destroy(Client *c, const char *path, const Args *a, const char *name) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        Shmem__Destroy d = SHMEM__DESTROY__INIT;
        Message m = SHMEM__MESSAGE__INIT;

        d.name = (char *) name;
        d.force = a->force;
        m.body_case = SHMEM__MESSAGE__BODY_DESTROY;
        m.destroy = &d;
        return call(c, path, name, &m, &reply);
}

/* detach's guard (virt.h): asks the broker, printing nothing. */
static int departures_told(void *userdata, const char *region, const char *uuid) {
        const Args *a = userdata;
        _cleanup_(client_freep) Client *c = NULL;
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        Shmem__Inspect in = SHMEM__INSPECT__INIT;
        Message m = SHMEM__MESSAGE__INIT;
        const Shmem__RegionInfo *ri;
        const char *detail;
        int r;

        r = client_connect(&c, client_socket_path(a->socket), "shmemctl", CLIENT_TIMEOUT_MS);
        if (r != 0)
                return r < 0 ? r : -ECONNREFUSED;
        in.name = (char *) region;
        m.body_case = SHMEM__MESSAGE__BODY_INSPECT;
        m.inspect = &in;
        r = client_call(c, &m, CLIENT_TIMEOUT_MS, &reply);
        if (r < 0)
                return r;
        r = client_reply_status(reply, &detail);
        if (r == SHMEM__STATUS__DOES_NOT_EXIST)
                return 0;
        if (r != SHMEM__STATUS__OK || reply->msg->reply->body_case != SHMEM__REPLY__BODY_INSPECT ||
            !reply->msg->reply->inspect || !reply->msg->reply->inspect->region)
                return -EPROTO;
        ri = reply->msg->reply->inspect->region;
        for (size_t i = 0; i < ri->n_peers; i++)
                if (ri->peers[i]->kind == SHMEM__PEER_KIND__KIND_QEMU && ri->peers[i]->vm_uuid &&
                    strcasecmp(ri->peers[i]->vm_uuid, uuid) == 0)
                        return (int) ri->peers[i]->departures_told;
        return 0;
}

/* xml, attach: the device of region @name as the broker describes it. */
static int cmd_virt(Client *c, const char *path, const Args *a, const char *cmd, const char *domain,
                    const char *name) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        const Shmem__RegionInfo *ri;
        VirtRegion vr;
        char *xml;
        int r;

        r = inspect_region(c, path, name, &reply, &ri);
        if (r != EXIT_OK)
                return r;
        if (!ri->qemu_socket || !ri->qemu_socket[0]) {
                fprintf(stderr, "shmemctl: region '%s' has no QEMU socket\n", name);
                return EXIT_REFUSED;
        }
        vr = (VirtRegion) { .name = name, .socket = ri->qemu_socket, .vectors = ri->vectors };
        if (strcmp(cmd, "attach") == 0)
                return virt_attach(&a->virt, domain, &vr);
        xml = virt_shmem_xml(&vr);
        if (!xml) {
                fputs("shmemctl: out of memory\n", stderr);
                return EXIT_REFUSED;
        }
        fputs(xml, stdout);
        free(xml);
        return EXIT_OK;
}

static int parse_max_peers(const char *s, unsigned *ret) {
        unsigned long v;
        char *end;

        if (!isdigit((unsigned char) s[0]))
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || *end || v < 1 || v > SHMEM_PEERS_MAX)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

int main(int argc, char **argv) {
        enum {
                OPT_JSON = 0x100,
                OPT_MAX_PEERS,
                OPT_PERSISTENT,
                OPT_FORCE,
                OPT_OFFSET,
                OPT_LENGTH,
                OPT_RAW,
                OPT_LIVE,
                OPT_CONFIG,
                OPT_TIMEOUT,
        };
        static const struct option options[] = {
                { "socket", required_argument, NULL, 's' },
                { "json", no_argument, NULL, OPT_JSON },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { "max-peers", required_argument, NULL, OPT_MAX_PEERS },
                { "persistent", no_argument, NULL, OPT_PERSISTENT },
                { "force", no_argument, NULL, OPT_FORCE },
                { "offset", required_argument, NULL, OPT_OFFSET },
                { "length", required_argument, NULL, OPT_LENGTH },
                { "raw", no_argument, NULL, OPT_RAW },
                { "connect", required_argument, NULL, 'c' },
                { "live", no_argument, NULL, OPT_LIVE },
                { "config", no_argument, NULL, OPT_CONFIG },
                { "timeout", required_argument, NULL, OPT_TIMEOUT },
                {},
        };
        _cleanup_(client_freep) Client *c = NULL;
        Args a = { .virt.timeout_s = VIRT_DEFAULT_TIMEOUT_S };
        const char *cmd, *path;
        uint64_t size = 0, mask = 0;
        bool mask_all = false, dump_range = false;
        int opt, nargs, r;

        opterr = 0; /* our own messages, with the exit code of a usage error */
        while ((opt = getopt_long(argc, argv, ":s:c:hV", options, NULL)) >= 0) {
                switch (opt) {
                case 's':
                        a.socket = optarg;
                        break;
                case OPT_JSON:
                        a.json = true;
                        break;
                case 'h':
                        fputs(usage_text, stdout);
                        return EXIT_OK;
                case 'V':
                        printf("shmemctl %s\n", SHMEM_VERSION);
                        return EXIT_OK;
                case OPT_MAX_PEERS:
                        if (parse_max_peers(optarg, &a.max_peers) < 0)
                                return usage_error("--max-peers: '%s' is not a number from 1 to 64",
                                                   optarg);
                        a.max_peers_set = true;
                        break;
                case OPT_PERSISTENT:
                        a.persistent = true;
                        break;
                case OPT_FORCE:
                        a.force = true;
                        break;
                case OPT_OFFSET:
                case OPT_LENGTH:
                        r = units_parse_size(optarg, opt == OPT_OFFSET ? &a.offset : &a.length);
                        if (r < 0)
                                return usage_error("--%s: '%s' is %s",
                                                   opt == OPT_OFFSET ? "offset" : "length", optarg,
                                                   r == -ERANGE ? "too large"
                                                                : "not a size (bytes, or with K, M, G, T)");
                        if (opt == OPT_LENGTH && a.length == 0)
                                return usage_error("%s", "--length must be at least 1");
                        a.length_set = a.length_set || opt == OPT_LENGTH;
                        dump_range = true;
                        break;
                case OPT_RAW:
                        a.raw = true;
                        break;
                case 'c':
                        a.virt.uri = optarg;
                        a.virt_set = true;
                        break;
                case OPT_LIVE:
                        a.virt.live = a.virt_set = true;
                        break;
                case OPT_CONFIG:
                        a.virt.config = a.virt_set = true;
                        break;
                case OPT_TIMEOUT: {
                        char *end;
                        unsigned long v;

                        errno = 0;
                        v = strtoul(optarg, &end, 10);
                        if (!isdigit((unsigned char) optarg[0]) || *end || errno || v < 1 || v > 3600)
                                return usage_error("--timeout: '%s' is not a number of seconds from 1 to 3600",
                                                   optarg);
                        a.virt.timeout_s = (unsigned) v;
                        a.timeout_set = true;
                        break;
                }
                case ':':
                        return usage_error("option '%s' needs an argument", argv[optind - 1]);
                default:
                        return usage_error("unknown option '%s'", argv[optind - 1]);
                }
        }
        if (optind >= argc)
                return usage_error("%s", "no command given");
        cmd = argv[optind++];
        nargs = argc - optind;

        if (strcmp(cmd, "list") == 0) {
                if (nargs != 0)
                        return usage_error("%s", "list takes no arguments");
        } else if (strcmp(cmd, "inspect") == 0) {
                if (nargs != 1)
                        return usage_error("%s", "usage: inspect NAME");
        } else if (strcmp(cmd, "create") == 0) {
                if (nargs != 2)
                        return usage_error("%s", "usage: create NAME SIZE [--max-peers N] [--persistent]");
                r = units_parse_size(argv[optind + 1], &size);
                if (r < 0)
                        return usage_error("'%s' is %s", argv[optind + 1],
                                           r == -ERANGE ? "too large"
                                                        : "not a size (bytes, or with K, M, G, T)");
        } else if (strcmp(cmd, "destroy") == 0) {
                if (nargs != 1)
                        return usage_error("%s", "usage: destroy NAME [--force]");
        } else if (strcmp(cmd, "watch") == 0) {
                if (nargs > 1)
                        return usage_error("%s", "usage: watch [NAME]");
        } else if (strcmp(cmd, "signal") == 0) {
                const char *m = nargs == 2 ? argv[optind + 1] : "";

                if (nargs != 2)
                        return usage_error("%s", "usage: signal NAME MASK|all");
                if (strcmp(m, "all") == 0)
                        mask_all = true;
                else if ((r = units_parse_mask(m, &mask)) < 0)
                        return usage_error("MASK '%s' is %s", m,
                                           r == -ERANGE ? "more than 64 bits"
                                                        : "not a number (decimal, 0x-hex) or 'all'");
                else if (mask == 0)
                        return usage_error("%s", "MASK 0 names no peer");
        } else if (strcmp(cmd, "reload") == 0 || strcmp(cmd, "upgrade") == 0) {
                if (nargs != 0)
                        return usage_error("%s takes no arguments", cmd);
        } else if (strcmp(cmd, "dump") == 0) {
                if (nargs != 1)
                        return usage_error("%s", "usage: dump NAME [--offset N] [--length N] [--raw]");
                if (a.json)
                        return usage_error("%s", "dump has no --json (--raw writes the bytes themselves)");
        } else if (strcmp(cmd, "xml") == 0) {
                if (nargs != 1)
                        return usage_error("%s", "usage: xml NAME");
        } else if (strcmp(cmd, "attach") == 0 || strcmp(cmd, "detach") == 0) {
                if (nargs != 2)
                        return usage_error("usage: %s DOMAIN NAME [--live] [--config] [-c URI]%s", cmd,
                                           cmd[0] == 'd' ? " [--timeout SECONDS] [--force]" : "");
        } else
                return usage_error("unknown command '%s'", cmd);
        if ((a.max_peers_set || a.persistent) && strcmp(cmd, "create") != 0)
                return usage_error("%s", "--max-peers and --persistent go with create");
        if (a.force && strcmp(cmd, "destroy") != 0 && strcmp(cmd, "detach") != 0)
                return usage_error("%s", "--force goes with destroy and detach");
        if ((dump_range || a.raw) && strcmp(cmd, "dump") != 0)
                return usage_error("%s", "--offset, --length and --raw go with dump");
        if (a.virt_set && strcmp(cmd, "attach") != 0 && strcmp(cmd, "detach") != 0)
                return usage_error("%s", "--connect, --live and --config go with attach and detach");
        if (a.timeout_set && strcmp(cmd, "detach") != 0)
                return usage_error("%s", "--timeout goes with detach");

        /* detach needs libvirt only: the device names its region. */
        if (strcmp(cmd, "detach") == 0) {
                VirtGuard guard = { .departures_told = departures_told, .userdata = &a, .force = a.force };

                return virt_detach(&a.virt, argv[optind], argv[optind + 1], &guard);
        }

        path = client_socket_path(a.socket);
        r = client_connect(&c, path, "shmemctl", CLIENT_TIMEOUT_MS);
        if (r < 0)
                return report_unreachable(path, r, true);
        if (r > 0)
                return report_refused(path, r, "the broker refused the connection");

        if (strcmp(cmd, "list") == 0)
                return cmd_list(c, path, &a);
        if (strcmp(cmd, "inspect") == 0)
                return cmd_inspect(c, path, &a, argv[optind]);
        if (strcmp(cmd, "create") == 0)
                return cmd_create(c, path, &a, argv[optind], size);
        if (strcmp(cmd, "watch") == 0)
                return cmd_watch(c, path, &a, nargs == 1 ? argv[optind] : NULL);
        if (strcmp(cmd, "signal") == 0)
                return cmd_signal(c, path, &a, argv[optind], mask, mask_all);
        if (strcmp(cmd, "dump") == 0)
                return cmd_dump(c, path, &a, argv[optind]);
        if (strcmp(cmd, "reload") == 0)
                return cmd_reload(c, path, &a);
        if (strcmp(cmd, "upgrade") == 0)
                return cmd_upgrade(c, path, &a);
        if (strcmp(cmd, "xml") == 0)
                return cmd_virt(c, path, &a, cmd, NULL, argv[optind]);
        if (strcmp(cmd, "attach") == 0)
                return cmd_virt(c, path, &a, cmd, argv[optind], argv[optind + 1]);
        return cmd_destroy(c, path, &a, argv[optind]);
}
