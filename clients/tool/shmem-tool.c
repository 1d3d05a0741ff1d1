/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmem-tool: a scripted peer for the tests. One program, two builds: shmem-peer
 * on the host (libshmem, through the broker) and shmem-guest, static, inside
 * a guest (libshmem-guest, through the ivshmem device). It attaches, runs its
 * commands in order and prints one "shmem-tool: ..." line per observation, so
 * a test can drive peers on both sides with the same words and grep the same
 * output.
 *
 * Forgery commands (forge-pending, ring-only) do what any member of a region
 * can do beyond the API (clients/libshmem/shmem-raw.h), for the tests of
 * docs/security.md: set pending bits without ringing, ring without bits.
 *
 * The guest build also has a raw mode (--raw): a plain ivshmem application,
 * as a guest written for QEMU's contrib/ivshmem-server is, on a compat region
 * (signal-mode = ivshmem), using the device alone.
 *
 * Here: the options, the help, the script's check and its run. The commands
 * are in commands.c, the raw ones in raw.c; tool.h is what they share.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "shmem.h"
#include "tool.h"

#ifdef SHMEM_TOOL_GUEST
#include "ivshmem-dev.h"
#include "raw.h"

#define PROGRAM "shmem-guest"
#else
#define PROGRAM "shmem-peer"
#endif

static void help(void) {
        printf("Usage: " PROGRAM " [OPTIONS] NAME COMMAND...\n"
#ifdef SHMEM_TOOL_GUEST
               "       " PROGRAM " --raw [--device=BDF] COMMAND...\n"
#endif
               "\n"
               "Attach to region NAME, run the commands in order, detach. Every output\n"
               "line starts with \"shmem-tool: \". Exit 0 if every command succeeded, else\n"
               "print \"shmem-tool: FAIL <reason>\" and exit 1 at the first failure.\n"
               "\n"
               "Options:\n"
               "  -h --help           Show this help\n"
#ifdef SHMEM_TOOL_GUEST
               "  Inside a guest the region is found on an ivshmem-doorbell device; a guest\n"
               "  cannot create one. --socket, --label and --size are accepted and ignored;\n"
               "  --exclusive always fails (EXISTS or DOES_NOT_EXIST). SHMEM_GUEST_POLL=1 in\n"
               "  the environment polls instead of using vfio-pci MSI-X.\n"
               "     --raw            Raw ivshmem mode, for a compat region (signal-mode =\n"
               "                      ivshmem, no control page): no NAME, the raw commands\n"
               "                      below; the other options are ignored\n"
               "     --device=BDF     Raw mode: the ivshmem device at PCI address BDF (e.g.\n"
               "                      0000:00:03.0; default: the first 1af4:1110 device)\n"
#endif
               "     --socket=PATH    Broker socket (default: $SHMEM_BROKER_SOCKET, else the\n"
               "                      system broker's)\n"
               "     --label=LABEL    Label shown to other peers (default: the program name)\n"
               "     --size=BYTES     Data size if this attach creates the region (K, M, G)\n"
               "     --find           Attach only if the region exists\n"
               "     --exclusive      Create only; fail if the region exists\n"
               "\n"
               "Commands (numbers decimal or 0x-hex; MASK bit i = peer index i):\n"
               "  info                      Print \"info index=I size=S max_peers=M active=0xHEX\"\n"
               "  write OFF STRING          Copy STRING (without NUL) to data offset OFF\n"
               "  read OFF LEN              Print \"read OFF STRING\" (up to LEN bytes or a NUL)\n"
               "  expect OFF STRING MS      Fail unless the data at OFF equals STRING within MS\n"
               "  notify MASK|all           Signal peers (all: every peer but me)\n"
               "  wait MS                   Print the next event: \"event senders=0xHEX changed=0|1\n"
               "                            active=0xHEX rang=0xHEX\"; fail if none comes within\n"
               "                            MS. senders: the bits taken from my pending word;\n"
               "                            rang: the peers whose own ring reached me (struct\n"
               "                            shmem_event in shmem.h: only rang cannot be forged)\n"
               "  wait-from MASK MS         Print events until every peer in MASK has signaled\n"
               "                            (senders the last wait-active saw count); fail on\n"
               "                            timeout. Other senders are printed too\n"
               "  wait-rang MASK MS         The same for rang: until every peer in MASK has rung\n"
               "  wait-active MASK MS       Print events until the active bitmap is exactly MASK\n"
               "                            (at least one look), then \"active 0xHEX\"; senders\n"
               "                            and rings seen meanwhile count for the next\n"
               "                            wait-from and wait-rang\n"
               "  expect-no-signal MS       Print events for MS; fail if one has a sender (a\n"
               "                            ring alone does not count: it may be a late one)\n"
               "  unconsumed                Print \"unconsumed 0xHEX\": peers that have not\n"
               "                            consumed my last signal\n"
               "  sleep MS                  Sleep\n"
               "\n"
               "Forgery commands (what any member can do; docs/security.md):\n"
               "  forge-pending SLOT MASK   OR MASK into the pending word of slot SLOT, any\n"
               "                            bits, any slot (mine too), ringing nobody\n"
               "  ring-only MASK|all        Ring the attached peers in MASK, each with my own\n"
               "                            eventfd or doorbell to it, setting no pending bit\n"
#ifdef SHMEM_TOOL_GUEST
               "\n"
               "Raw commands (--raw: what a guest written for contrib/ivshmem-server does;\n"
               "the data is all of BAR2, from offset 0):\n"
               "  info                      Print \"info position=P size=S vectors=N device=BDF\n"
               "                            interrupts=msix|none\": IVPosition, BAR2 bytes, MSI-X\n"
               "                            vectors with an eventfd (none: no vfio, no IOMMU)\n"
               "  write, read, expect, sleep  As above\n"
               "  ring PEER VECTOR          Write (PEER << 16) | VECTOR to the Doorbell register:\n"
               "                            interrupt VECTOR of the peer whose IVPosition is PEER\n"
               "  wait-vector V MS          Print \"vector W count=C\" for every vector that fired\n"
               "                            until V has; fail if V does not within MS, or if\n"
               "                            another vector fires first or with it\n"
               "  expect-no-vector MS       Print the vectors that fire within MS; fail if one does\n"
               "MSI-X is enabled before the first command: a doorbell rung at this guest\n"
               "earlier is lost by QEMU, so tell the sender you are ready through the data.\n"
#endif
               );
}

/* Where command_find() looks: a name may stand in several, for other modes (info). */
static const Command *const command_tables[] = {
        commands,
#ifdef SHMEM_TOOL_GUEST
        raw_commands,
#endif
};

static const Command *command_find(const char *name, unsigned mode) {
        for (size_t t = 0; t < sizeof(command_tables) / sizeof(command_tables[0]); t++)
                for (const Command *c = command_tables[t]; c->name; c++)
                        if (c->modes & mode && strcmp(c->name, name) == 0)
                                return c;
        return NULL;
}

/* Checks the whole script before attaching: a typo must not cost a region attach. */
static int script_check(int argc, char **argv, unsigned mode) {
        for (int i = 0; i < argc;) {
                const Command *c = command_find(argv[i], mode);

                if (!c)
                        return fail("unknown command '%s'%s (see --help)", argv[i],
                                    mode == MODE_RAW ? " in raw mode" : "");
                if (argc - i - 1 < c->nargs)
                        return fail("%s needs %d argument(s)", c->name, c->nargs);
                i += 1 + c->nargs;
        }
        return 0;
}

int main(int argc, char **argv) {
        enum { ARG_SOCKET = 0x100, ARG_LABEL, ARG_SIZE, ARG_FIND, ARG_EXCLUSIVE, ARG_RAW, ARG_DEVICE };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "label", required_argument, NULL, ARG_LABEL },
                { "size", required_argument, NULL, ARG_SIZE },
                { "find", no_argument, NULL, ARG_FIND },
                { "exclusive", no_argument, NULL, ARG_EXCLUSIVE },
#ifdef SHMEM_TOOL_GUEST
                { "raw", no_argument, NULL, ARG_RAW },
                { "device", required_argument, NULL, ARG_DEVICE },
#endif
                {},
        };
        struct shmem_attach_opts opts = { .size = sizeof(opts) };
        Tool t = {};
        uint64_t size = 0;
        unsigned flags = 0, mode = MODE_SHMEM;
        const char *name = NULL;
#ifdef SHMEM_TOOL_GUEST
        const char *device = NULL;
#endif
        int c, r;

        /* Lines must reach a pipe or a serial console as they happen, not at exit. */
        setvbuf(stdout, NULL, _IOLBF, 0);

        /* "+": options end at NAME, so a command argument may start with '-'. */
        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_SOCKET:
                        opts.socket = optarg;
                        break;
                case ARG_LABEL:
                        opts.label = optarg;
                        break;
                case ARG_SIZE:
                        if (parse_size(optarg, &size) < 0) {
                                fail("bad size '%s'", optarg);
                                return 1;
                        }
                        break;
                case ARG_FIND:
                        flags |= SHMEM_FIND;
                        break;
                case ARG_EXCLUSIVE:
                        flags |= SHMEM_EXCLUSIVE;
                        break;
#ifdef SHMEM_TOOL_GUEST
                case ARG_RAW:
                        mode = MODE_RAW;
                        break;
                case ARG_DEVICE:
                        device = optarg;
                        break;
#endif
                default:
                        fail("bad option (see --help)");
                        return 1;
                }
        if (flags == (SHMEM_FIND | SHMEM_EXCLUSIVE)) {
                fail("--find and --exclusive exclude each other");
                return 1;
        }
        if (mode == MODE_SHMEM) {
                if (optind >= argc) {
                        fail("no region name (see --help)");
                        return 1;
                }
                name = argv[optind++];
        }
        if (script_check(argc - optind, argv + optind, mode) < 0)
                return 1;

#ifdef SHMEM_TOOL_GUEST
        ivshmem_dev_init(&t.dev);
        if (mode == MODE_RAW) {
                if (raw_open(&t, device) < 0) {
                        ivshmem_dev_close(&t.dev);
                        return 1;
                }
        } else
#endif
        {
                r = shmem_attach(&t.shm, name, size, flags, &opts);
                if (r != 0) {
                        fail("attach %s: %s (%d)", name, shmem_strstatus(r), r);
                        return 1;
                }
                t.data = shmem_data(t.shm);
                t.size = shmem_size(t.shm);
        }
        r = 0;
        for (int i = optind; i < argc && r == 0;) {
                const Command *cmd = command_find(argv[i], mode);

                r = cmd->fn(&t, argv + i + 1);
                i += 1 + cmd->nargs;
        }
        shmem_detach(t.shm);
#ifdef SHMEM_TOOL_GUEST
        ivshmem_dev_close(&t.dev);
#endif
        return r == 0 ? 0 : 1;
}
