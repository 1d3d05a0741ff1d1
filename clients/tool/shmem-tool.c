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
 * A run may also attach and detach as it goes (attach, find, create, detach;
 * --detached starts with no region): in a guest with a factory device, that
 * is how a test hot-plugs a region, uses it, parks it and gets it back.
 *
 * Here: the options, the help, the script's check and its run. The commands
 * are in commands.c, the attach ones in attach.c, the raw ones in raw.c;
 * tool.h is what they share.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "attach.h"
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
               "       " PROGRAM " [OPTIONS] --detached COMMAND...\n"
#ifdef SHMEM_TOOL_GUEST
               "       " PROGRAM " --raw [--device=BDF] COMMAND...\n"
#endif
               "\n"
               "Attach to region NAME, run the commands in order, detach. Every output\n"
               "line starts with \"shmem-tool: \". Exit 0 if every command succeeded, else\n"
               "print \"shmem-tool: FAIL <reason>\" and exit 1 at the first failure; a\n"
               "refused attach, find, create or detach command exits with its status\n"
               "(UNKNOWN_FAILURE is 1 too: its line tells it from a FAIL).\n"
               "\n"
               "Options:\n"
               "  -h --help           Show this help\n"
               "     --detached       Start with no region (no NAME): the script attaches\n"
               "                      with attach, find or create (Region commands below)\n"
#ifdef SHMEM_TOOL_GUEST
               "  Inside a guest the region is found on an ivshmem-doorbell device. If none\n"
               "  carries it and the VM has a factory device, the factory is asked (it may\n"
               "  create the region and plug a device for it); without one a guest cannot\n"
               "  create, --size is ignored and --exclusive always fails (EXISTS or\n"
               "  DOES_NOT_EXIST). --socket and --label are accepted and ignored.\n"
               "  SHMEM_GUEST_POLL=1 in the environment polls instead of using vfio-pci MSI-X.\n"
               "     --raw            Raw ivshmem mode, for a compat region (signal-mode =\n"
               "                      ivshmem, no control page): no NAME, the raw commands\n"
               "                      below; the other options are ignored\n"
               "     --device=BDF     Raw mode: the ivshmem device at PCI address BDF (e.g.\n"
               "                      0000:00:03.0; default: the first 1af4:1110 device)\n"
#endif
               "     --socket=PATH    Broker socket (default: $SHMEM_BROKER_SOCKET, else the\n"
               "                      system broker's)\n"
               "     --label=LABEL    Label shown to other peers (default: the program name)\n"
               "     --size=BYTES     Data size if NAME's attach creates the region (K, M, G)\n"
               "     --find           Attach NAME only if the region exists\n"
               "     --exclusive      Create NAME only; fail if the region exists\n"
               "\n"
               "Region commands (at most one region at a time; they print one line each):\n"
               "  attach NAME SIZE          Attach, creating the region with SIZE data bytes\n"
               "                            (K, M, G) if it does not exist\n"
               "  find NAME                 Attach only if the region exists\n"
               "  create NAME SIZE          Create only: EXISTS if the region exists\n"
               "  detach NAME               Detach from NAME, the region attached\n"
               "    Each prints \"COMMAND NAME status=N (TEXT)\" (COMMAND: attach, find,\n"
               "    create or detach); a successful attach, find or create follows it with\n"
               "    \" size=BYTES region=HOST\": HOST is the name the region's control page\n"
               "    carries"
#ifdef SHMEM_TOOL_GUEST
               " (with the VM's subst prefix), then\n"
               "    \" device=BDF\" (its ivshmem device). In a guest every line then has\n"
               "    \" factory=0|1\" (whether the VM's factory was asked; a detach asks it\n"
               "    when this is the guest's last handle on the device, which the broker then\n"
               "    parks: the next attach gets the same device back). Every line then has\n"
               "    \" ms=MS\": the library call's own time on the monotonic clock (an\n"
               "    attach's until the region is mapped and usable), then \" answer_ms=MS\"\n"
               "    if the factory was asked (its part: the request to the factory's answer)\n"
               "    and, for a refusal with a reason, \" detail=REASON\" to the end of the line.\n"
#else
               ". Every line then has \" ms=MS\": the library call's own time on\n"
               "    the monotonic clock (an attach's until the region is mapped and usable).\n"
#endif
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
        attach_commands,
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

/*
 * Checks the whole script before attaching: a typo must not cost a region
 * attach. It follows the run's mode from @mode, with @region attached (NULL
 * if none): a failed command ends the run, so every command runs in the mode
 * the check gives it.
 */
static int script_check(int argc, char **argv, unsigned mode, const char *region) {
        for (int i = 0; i < argc;) {
                const Command *c = command_find(argv[i], mode);

                if (!c && mode != MODE_RAW && command_find(argv[i], MODE_SHMEM | MODE_DETACHED))
                        return mode == MODE_SHMEM ? fail("%s: %s is attached (detach it first)", argv[i], region)
                                                  : fail("%s: no region is attached here", argv[i]);
                if (!c)
                        return fail("unknown command '%s'%s (see --help)", argv[i],
                                    mode == MODE_RAW ? " in raw mode" : "");
                if (argc - i - 1 < c->nargs)
                        return fail("%s needs %d argument(s)", c->name, c->nargs);
                if (c->then == MODE_DETACHED && strcmp(argv[i + 1], region) != 0)
                        return fail("%s %s: the region attached is %s", c->name, argv[i + 1], region);
                if (c->then) {
                        mode = c->then;
                        region = mode == MODE_SHMEM ? argv[i + 1] : NULL;
                }
                i += 1 + c->nargs;
        }
        return 0;
}

int main(int argc, char **argv) {
        enum { ARG_SOCKET = 0x100, ARG_LABEL, ARG_SIZE, ARG_FIND, ARG_EXCLUSIVE, ARG_DETACHED, ARG_RAW, ARG_DEVICE };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "label", required_argument, NULL, ARG_LABEL },
                { "size", required_argument, NULL, ARG_SIZE },
                { "find", no_argument, NULL, ARG_FIND },
                { "exclusive", no_argument, NULL, ARG_EXCLUSIVE },
                { "detached", no_argument, NULL, ARG_DETACHED },
#ifdef SHMEM_TOOL_GUEST
                { "raw", no_argument, NULL, ARG_RAW },
                { "device", required_argument, NULL, ARG_DEVICE },
#endif
                {},
        };
        struct shmem_attach_opts opts = { .size = sizeof(opts) };
        Tool t = { .opts = &opts };
        uint64_t size = 0;
        unsigned flags = 0, mode = MODE_SHMEM;
        bool detached = false;
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
                case ARG_DETACHED:
                        detached = true;
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
        if (detached && mode == MODE_RAW) {
                fail("--detached and --raw exclude each other");
                return 1;
        }
        if (detached)
                mode = MODE_DETACHED;
        if (mode == MODE_SHMEM) {
                if (optind >= argc) {
                        fail("no region name (see --help)");
                        return 1;
                }
                name = argv[optind++];
        }
        if (script_check(argc - optind, argv + optind, mode, name) < 0)
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
        if (mode == MODE_SHMEM) {
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
                if (r == 0 && cmd->then)
                        mode = cmd->then;
                i += 1 + cmd->nargs;
        }
        shmem_detach(t.shm);
#ifdef SHMEM_TOOL_GUEST
        ivshmem_dev_close(&t.dev);
#endif
        return r < 0 ? 1 : r;
}
