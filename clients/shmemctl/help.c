/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * help: the text of `shmemctl --help`, `shmemctl help CMD` and `shmemctl CMD
 * --help`, from one table of the commands (help.h). man/shmemctl.1 says the
 * same at length.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "factory.h"
#include "help.h"
#include "regions.h"

typedef struct Command {
        const char *name;
        const char *args;    /* after the name in its usage line */
        const char *summary; /* one line of the global help */
        const char *text;    /* what it does, then its own options */
        bool libvirt;        /* under "libvirt" in the global help */
        const TableSpec *columns; /* its table's, listed after the options */
} Command;

#define JSON_OPTION "  -J, --json               machine-readable output (pretty JSON)\n"
/* A command without a table prints a JSON object of its result: these keys. */
#define JSON_RESULT(keys) "  -J, --json               a JSON object of the result: " keys "\n"
#define TABLE_OPTIONS                                                                   \
        "  -o, --output COL,...     the columns to show (+COL,...: the default and these)\n" \
        "  -O, --output-all         every column\n"                                      \
        "  -n, --noheadings         no header line\n"                                    \
        "  -r, --raw                raw output: one space between columns, blanks as \\x20\n" \
        "  -b, --bytes              sizes in bytes, not 2M\n"

static const Command commands[] = {
        { "list", "", "the regions: name, size, peers, backend, flags, creator",
          "One line per region. A missing value is \"-\" (null in JSON); what a peer\n"
          "chose (a label) is printed with what is not printable as \\xNN.\n"
          "\nOptions:\n" TABLE_OPTIONS
          "  -J, --json               {\"regions\": [...]}: every column unless -o, keys in\n"
          "                           lower case, sizes in bytes, null for missing values\n",
          false, &list_table },
        { "inspect", "NAME", "one region, who created it, and its attached peers",
          "One region: its memory, signal mode, QEMU socket, who created it, and per\n"
          "attached peer its index, kind, label, pid, uid and pending signals (the\n"
          "table's columns below).\n"
          "\nOptions:\n" TABLE_OPTIONS
          "  -J, --json               the whole region, its peers included (man page)\n",
          false, &peer_table },
        { "factory", "", "the VMs connected to the guest factory and their devices",
          "The VMs connected to the guest factory: each one's connection, request in\n"
          "flight and devices by region (plugged or parked, index; the table's\n"
          "columns below).\n"
          "\nOptions:\n" TABLE_OPTIONS JSON_OPTION, false, &device_table },
        { "status", "", "the broker, its limits and their use, in total and per user",
          "The broker's version, pid, uptime, configuration files and service manager;\n"
          "each limit (broker.conf(5) [limits]) with its use; then per user (and per VM)\n"
          "the regions, bytes, peers and connections it holds against the per-user\n"
          "limits. Other users' rows are for root and the broker's user only.\n"
          "\nOptions:\n" JSON_OPTION, false, NULL },
        { "create", "NAME SIZE [--max-peers N] [--persistent]", "declare a region",
          "Declare a region; SIZE in bytes, or with K, M, G, T. Its QEMU socket exists\n"
          "until it is destroyed, its memory from its first attach. Root and the\n"
          "broker's user only; prints nothing on success.\n"
          "\nOptions:\n"
          "      --max-peers N        at most N peers, 1 to 64 (default: the broker's)\n"
          "      --persistent         its memory at once, kept while no peer is attached\n"
          JSON_RESULT("region, size,\n                           max_peers, persistent"), false, NULL },
        { "destroy", "NAME [--force]", "forget a region",
          "Forget a region; refused while peers are attached, unless --force. Root and\n"
          "the broker's user only; prints nothing on success.\n"
          "\nOptions:\n"
          "      --force              detach its peers first (QEMU guests keep their mapping)\n"
          JSON_RESULT("region,\n                           destroyed, forced"), false, NULL },
        { "watch", "[NAME] [-t|--timestamps]", "one line per event of the broker until interrupted",
          "One line per event until interrupted: regions created, allocated, freed,\n"
          "destroyed; peers joined, left. With NAME, that region's only (it must exist).\n"
          "Ends with 0 on SIGINT or SIGTERM, with 3 if the broker goes away.\n"
          "\nOptions:\n"
          "  -t, --timestamps         each line after the time shmemctl read the event,\n"
          "                           ISO 8601 with microseconds (journalctl -o\n"
          "                           short-iso-precise); with --json a \"time\" member\n"
          "  -J, --json               one JSON object a line (JSON Lines)\n", false, NULL },
        { "signal", "NAME MASK|all", "signal the peers in MASK",
          "Signal the peers of NAME in MASK: bit i = peer index i, decimal or 0x-hex;\n"
          "'all' = every attached peer. A MASK with a peer that is not attached is\n"
          "refused. shmemctl attaches as peer \"shmemctl\" for a moment: its peers see\n"
          "it join and leave, and receivers see its index as the sender.\n"
          "\nOptions:\n" JSON_OPTION, false, NULL },
        { "dump", "NAME [--offset N] [--length N] [--raw]", "hexdump of a region's data",
          "Hexdump (as hexdump -C) of the data area. Attaches as peer \"shmemctl\" for a\n"
          "moment, as signal does.\n"
          "\nOptions:\n"
          "      --offset N           from N bytes into the data (default 0; K, M, G, T)\n"
          "      --length N           N bytes (default: the rest, at most 4K)\n"
          "  -r, --raw                the bytes as they are, unformatted\n"
          JSON_RESULT("region, offset,\n                           length, hex (the bytes in hex)"), false, NULL },
        { "reload", "", "make the broker re-read its configuration files",
          "Make the broker re-read its configuration files, as SIGHUP does; a file it\n"
          "refuses is reported with its line, and the old configuration stays. Root\n"
          "and the broker's user only; prints nothing on success.\n"
          "\nOptions:\n" JSON_RESULT("reloaded"), false, NULL },
        { "upgrade", "", "make the broker re-execute its binary, keeping every region",
          "Make the broker re-execute its binary, keeping every region, peer and\n"
          "connection; waits for the new one and prints both versions. Root and the\n"
          "broker's user only.\n"
          "\nOptions:\n" JSON_OPTION, false, NULL },
        { "xml", "NAME | --factory [DOMAIN] [--machine q35|pc] [--regions N] [--max-region SIZE]",
          "a region's <shmem> device, or the guest factory's, for domain XML",
          "Print the region's <shmem> device for libvirt domain XML: model\n"
          "ivshmem-doorbell on the region's QEMU socket, with its MSI-X vectors.\n"
          "With --factory, the guest factory's device and, on q35, the root ports for\n"
          "the regions the broker will plug (docs/libvirt.md, section 13); with DOMAIN\n"
          "only what its definition lacks (needs no broker; libvirt for DOMAIN).\n"
          "\nOptions:\n"
          "      --factory            the guest factory's devices, not a region's\n"
          "      --machine q35|pc     the machine type (default q35; DOMAIN's own with DOMAIN)\n"
          "      --regions N          root ports for N regions (default 4)\n"
          "      --max-region SIZE    the largest region (default 1M; on q35 above 2044K, what\n"
          "                           the guest kernel and the broker need is said)\n"
          "  -c, --connect URI        libvirt URI of DOMAIN (default: qemu:///system)\n"
          JSON_RESULT("xml (the text\n                           above), region or domain"),
          true, NULL },
        { "attach", "DOMAIN NAME [--live] [--config] [-c URI]", "add a region's device to a domain",
          "Add the region's <shmem> device to a libvirt domain (DOMAIN: name or UUID),\n"
          "after checking that the domain's QEMU can reach the region's socket.\n"
          "Prints nothing on success.\n"
          "\nOptions:\n"
          "  -c, --connect URI        libvirt URI (default: qemu:///system)\n"
          "      --live, --config     the running domain, its persistent configuration,\n"
          "                           or both (default: libvirt's \"current\")\n"
          JSON_RESULT("domain, region,\n                           attached, live, config"),
          true, NULL },
        { "detach", "DOMAIN NAME [--live] [--config] [-c URI] [--timeout SECONDS] [--force]",
          "remove a region's device from a domain",
          "Remove the region's device from a libvirt domain; from a running domain,\n"
          "wait until the guest has let it go. Refused where QEMU would crash (its\n"
          "QEMU was told that another peer left: docs/libvirt.md), unless --force.\n"
          "Needs no broker. Prints nothing on success.\n"
          "\nOptions:\n"
          "  -c, --connect URI        libvirt URI (default: qemu:///system)\n"
          "      --live, --config     the running domain, its persistent configuration,\n"
          "                           or both (default: libvirt's \"current\")\n"
          "      --timeout SECONDS    how long to wait for the guest (default 30)\n"
          "      --force              detach even where QEMU would crash\n"
          JSON_RESULT("domain, region,\n                           detached, live, config, forced"),
          true, NULL },
        { "help", "[COMMAND]", "this text, or COMMAND's usage and options",
          "Print COMMAND's usage, what it does and its options; without COMMAND, the\n"
          "list of commands. 'shmemctl COMMAND --help' is the same.\n", false, NULL },
};

static const Command *find(const char *name) {
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (strcmp(commands[i].name, name) == 0)
                        return &commands[i];
        return NULL;
}

int help_is_command(const char *name) {
        return find(name) != NULL;
}

static void list(FILE *f, bool libvirt) {
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (commands[i].libvirt == libvirt)
                        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

void help_global(FILE *f) {
        fputs("Usage: shmemctl [-s|--socket PATH] [-J|--json] COMMAND [ARGS]\n"
              "       shmemctl help COMMAND      COMMAND's usage, options and what it does\n"
              "\n"
              "Commands:\n",
              f);
        list(f, false);
        fputs("\nlibvirt (docs/libvirt.md):\n", f);
        list(f, true);
        fputs("\n"
              "Options:\n"
              "  -s, --socket PATH        broker socket (default: $SHMEM_BROKER_SOCKET, else\n"
              "                           " SHMEM_DEFAULT_RUNDIR "/broker.sock)\n"
              "  -J, --json               machine-readable output, for every command\n"
              "  -o, -O, -n, -r, -b       columns and format of a table (list, inspect,\n"
              "                           factory): see 'shmemctl help list'\n"
              "  -h, --help               this text; after COMMAND, COMMAND's\n"
              "  -V, --version            the version\n"
              "\n"
              "Exit status: 0 ok, 1 refused (by the broker or libvirt, or a signal to a peer\n"
              "that is not attached), 2 usage error, 3 broker or libvirt unreachable.\n",
              f);
}

int help_command(FILE *f, const char *name) {
        const Command *c = find(name);

        if (!c)
                return -ENOENT;
        fprintf(f, "Usage: shmemctl [-s|--socket PATH] %s%s%s\n\n%s", c->name, *c->args ? " " : "", c->args,
                c->text);
        if (c->columns)
                table_help(f, c->columns);
        return 0;
}
