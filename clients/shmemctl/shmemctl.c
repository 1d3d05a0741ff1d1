/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmemctl: the command line of shmem-brokerd's control tool. Parses the
 * options and arguments, connects to the broker and dispatches: the region
 * commands are in regions.c, factory in factory.c, status in status.c, the operations commands
 * (watch, signal, dump, reload, upgrade) in ops.c, the libvirt side of
 * attach, detach and xml in virt.c; what they share in common.c.
 *
 * Exit codes: 0 ok, 1 refused (by the broker or libvirt, or by shmemctl for
 * the broker's state: a signal to a peer that is not attached), 2 usage, 3 the
 * broker or libvirt cannot be reached (or stopped answering).
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "factory.h"
#include "factory-xml.h"
#include "table.h"
#include "help.h"
#include "ops.h"
#include "region-layout.h"
#include "region-virt.h"
#include "regions.h"
#include "status.h"
#include "units.h"

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
                OPT_MAX_PEERS = 0x100,
                OPT_PERSISTENT,
                OPT_FORCE,
                OPT_OFFSET,
                OPT_LENGTH,
                OPT_LIVE,
                OPT_CONFIG,
                OPT_TIMEOUT,
                OPT_FACTORY,
                OPT_MACHINE,
                OPT_REGIONS,
                OPT_MAX_REGION,
        };
        static const struct option options[] = {
                { "socket", required_argument, NULL, 's' },
                { "json", no_argument, NULL, 'J' },
                { "output", required_argument, NULL, 'o' },
                { "output-all", no_argument, NULL, 'O' },
                { "noheadings", no_argument, NULL, 'n' },
                { "bytes", no_argument, NULL, 'b' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { "max-peers", required_argument, NULL, OPT_MAX_PEERS },
                { "persistent", no_argument, NULL, OPT_PERSISTENT },
                { "force", no_argument, NULL, OPT_FORCE },
                { "offset", required_argument, NULL, OPT_OFFSET },
                { "length", required_argument, NULL, OPT_LENGTH },
                { "raw", no_argument, NULL, 'r' },
                { "connect", required_argument, NULL, 'c' },
                { "live", no_argument, NULL, OPT_LIVE },
                { "config", no_argument, NULL, OPT_CONFIG },
                { "timeout", required_argument, NULL, OPT_TIMEOUT },
                { "factory", no_argument, NULL, OPT_FACTORY },
                { "machine", required_argument, NULL, OPT_MACHINE },
                { "regions", required_argument, NULL, OPT_REGIONS },
                { "max-region", required_argument, NULL, OPT_MAX_REGION },
                { "timestamps", no_argument, NULL, 't' },
                {},
        };
        _cleanup_(client_freep) Client *c = NULL;
        Args a = { .virt.timeout_s = VIRT_DEFAULT_TIMEOUT_S, .regions = FACTORY_XML_REGIONS_DEFAULT,
                   .max_region = UINT64_C(1) << 20 };
        const char *cmd, *path;
        uint64_t size = 0, mask = 0;
        bool mask_all = false, dump_range = false, help = false;
        int opt, nargs, r;

        opterr = 0; /* our own messages, with the exit code of a usage error */
        while ((opt = getopt_long(argc, argv, ":s:c:htVJo:Onrb", options, NULL)) >= 0) {
                switch (opt) {
                case 's':
                        a.socket = optarg;
                        break;
                case 'J':
                        a.json = a.table.json = true;
                        break;
                case 'o':
                        a.table.output = optarg;
                        break;
                case 'O':
                        a.table.all = true;
                        break;
                case 'n':
                        a.table.noheadings = true;
                        break;
                case 'b':
                        a.table.bytes = true;
                        break;
                case 'h':
                        help = true;
                        break;
                case 't':
                        a.timestamps = true;
                        break;
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
                case 'r':
                        a.raw = a.table.raw = true; /* dump's bytes, or a table's raw form */
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
                case OPT_FACTORY:
                        a.factory = true;
                        break;
                case OPT_MACHINE:
                        if (strcmp(optarg, "q35") != 0 && strcmp(optarg, "pc") != 0)
                                return usage_error("--machine: '%s' is not q35 or pc", optarg);
                        a.machine_pc = strcmp(optarg, "pc") == 0;
                        a.machine_set = a.factory_opts_set = true;
                        break;
                case OPT_REGIONS: {
                        char *end;
                        unsigned long v;

                        errno = 0;
                        v = strtoul(optarg, &end, 10);
                        if (!isdigit((unsigned char) optarg[0]) || *end || errno || v < 1 || v > FACTORY_XML_REGIONS_MAX)
                                return usage_error("--regions: '%s' is not a number from 1 to %d", optarg,
                                                   FACTORY_XML_REGIONS_MAX);
                        a.regions = (unsigned) v;
                        a.factory_opts_set = true;
                        break;
                }
                case OPT_MAX_REGION:
                        r = units_parse_size(optarg, &a.max_region);
                        if (r < 0 || a.max_region == 0)
                                return usage_error("--max-region: '%s' is %s", optarg,
                                                   r == -ERANGE ? "too large" : "not a size (bytes, or with K, M, G, T)");
                        a.factory_opts_set = true;
                        break;
                case ':':
                        return usage_error("option '%s' needs an argument", argv[optind - 1]);
                default:
                        return usage_error("unknown option '%s'", argv[optind - 1]);
                }
        }
        /* --help anywhere: COMMAND's help if one is given, else the global one. */
        if (help && optind >= argc) {
                help_global(stdout);
                return EXIT_OK;
        }
        if (optind >= argc)
                return usage_error("%s", "no command given");
        cmd = argv[optind++];
        nargs = argc - optind;
        if (!help && strcmp(cmd, "help") == 0) {
                if (nargs > 1)
                        return usage_error("%s", "usage: help [COMMAND]");
                if (nargs == 0) {
                        help_global(stdout);
                        return EXIT_OK;
                }
                cmd = argv[optind];
                help = true;
        }
        if (help) {
                if (help_command(stdout, cmd) < 0)
                        return usage_error("unknown command '%s'", cmd);
                return EXIT_OK;
        }
        if (help_is_command(cmd))
                usage_error_command(cmd);

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
                        return usage_error("%s", "usage: watch [NAME] [-t|--timestamps]");
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
        } else if (strcmp(cmd, "reload") == 0 || strcmp(cmd, "upgrade") == 0 || strcmp(cmd, "factory") == 0 ||
                   strcmp(cmd, "status") == 0) {
                if (nargs != 0)
                        return usage_error("%s takes no arguments", cmd);
        } else if (strcmp(cmd, "dump") == 0) {
                if (nargs != 1)
                        return usage_error("%s", "usage: dump NAME [--offset N] [--length N] [--raw]");
        } else if (strcmp(cmd, "xml") == 0) {
                if (a.factory ? nargs > 1 : nargs != 1)
                        return usage_error("%s", "usage: xml NAME, or xml --factory [DOMAIN] [--machine q35|pc] "
                                                 "[--regions N] [--max-region SIZE] [-c URI]");
                if (a.factory && nargs == 1 && a.machine_set)
                        return usage_error("%s", "--machine is the domain's own when DOMAIN is given");
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
        if (dump_range && strcmp(cmd, "dump") != 0)
                return usage_error("%s", "--offset and --length go with dump");
        if ((a.table.output || a.table.all || a.table.noheadings || a.table.bytes || a.raw) &&
            strcmp(cmd, "list") != 0 && strcmp(cmd, "inspect") != 0 && strcmp(cmd, "factory") != 0 &&
            (strcmp(cmd, "dump") != 0 || a.table.output || a.table.all || a.table.noheadings || a.table.bytes))
                return usage_error("%s", "-o, -O, -n, -r and -b go with list, inspect and factory (and --raw with dump)");
        /* inspect's and factory's --json is the whole document, not their table's. */
        if (a.json && (a.table.output || a.table.all || a.table.noheadings || a.raw || a.table.bytes) &&
            strcmp(cmd, "list") != 0)
                return usage_error("%s: --json or -o, -O, -n, -r, -b, not both (--json is the whole document)", cmd);
        if ((a.factory || a.factory_opts_set) && (strcmp(cmd, "xml") != 0 || !a.factory))
                return usage_error("%s", "--factory goes with xml; --machine, --regions and --max-region with xml --factory");
        if (a.factory && (a.virt.live || a.virt.config || (a.virt.uri && nargs == 0)))
                return usage_error("%s", "xml --factory takes no --live or --config, and --connect with a DOMAIN only");
        if (a.virt_set && !a.factory && strcmp(cmd, "attach") != 0 && strcmp(cmd, "detach") != 0)
                return usage_error("%s", "--connect, --live and --config go with attach and detach");
        if (a.timeout_set && strcmp(cmd, "detach") != 0)
                return usage_error("%s", "--timeout goes with detach");
        if (a.timestamps && strcmp(cmd, "watch") != 0)
                return usage_error("%s", "--timestamps goes with watch");

        if (strcmp(cmd, "list") == 0 || strcmp(cmd, "inspect") == 0 || strcmp(cmd, "factory") == 0 ||
            strcmp(cmd, "status") == 0)
                table_locale();

        /* xml --factory needs no broker connection: the factory socket is beside the broker's. */
        if (a.factory)
                return cmd_factory_xml(&a, nargs == 1 ? argv[optind] : NULL);
        /* detach needs no broker connection: the device names its region. */
        if (strcmp(cmd, "detach") == 0)
                return cmd_detach(&a, argv[optind], argv[optind + 1]);

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
        if (strcmp(cmd, "factory") == 0)
                return cmd_factory(c, path, &a);
        if (strcmp(cmd, "status") == 0)
                return cmd_status(c, path, &a);
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
