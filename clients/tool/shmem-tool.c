/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmem-tool: a scripted peer for the tests. One source, two builds: shmem-peer
 * on the host (libshmem, through the broker) and shmem-guest, static, inside
 * a guest (libshmem-guest, through the ivshmem device). It attaches, runs its
 * commands in order and prints one "shmem-tool: ..." line per observation, so
 * a test can drive peers on both sides with the same words and grep the same
 * output.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmem.h"

#ifdef SHMEM_TOOL_GUEST
#define PROGRAM "shmem-guest"
#else
#define PROGRAM "shmem-peer"
#endif

/* How often expect looks again: it watches memory, nothing rings for it. */
#define LOOK_INTERVAL_MS 2
/* wait-active also reads the bitmap this often, in case a change comes without an event. */
#define ACTIVE_INTERVAL_MS 50

typedef struct Tool {
        shmem_t *shm;
        uint64_t carry; /* senders seen by wait-active, counted by the next wait-from */
} Tool;

typedef int (*command_fn)(Tool *t, char **args);

typedef struct Command {
        const char *name;
        int nargs;
        command_fn fn;
} Command;

static void help(void) {
        printf("Usage: " PROGRAM " [OPTIONS] NAME COMMAND...\n"
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
               "                            active=0xHEX\"; fail if none comes within MS\n"
               "  wait-from MASK MS         Print events until every peer in MASK has signaled\n"
               "                            (senders the last wait-active saw count); fail on\n"
               "                            timeout. Other senders are printed too\n"
               "  wait-active MASK MS       Print events until the active bitmap is exactly MASK\n"
               "                            (at least one look), then \"active 0xHEX\"; senders\n"
               "                            seen meanwhile count for the next wait-from\n"
               "  expect-no-signal MS       Print events for MS; fail if one has a sender\n"
               "  unconsumed                Print \"unconsumed 0xHEX\": peers that have not\n"
               "                            consumed my last signal\n"
               "  sleep MS                  Sleep\n");
}

static void out(const char *fmt, ...) {
        va_list ap;

        fputs("shmem-tool: ", stdout);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        fputc('\n', stdout);
}

/* Prints the FAIL line; returns -1 so that `return fail(...)` ends the run. */
static int fail(const char *fmt, ...) {
        va_list ap;

        fputs("shmem-tool: FAIL ", stdout);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        fputc('\n', stdout);
        return -1;
}

static int parse_u64(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;
        bool hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');

        errno = 0;
        v = strtoull(hex ? s + 2 : s, &end, hex ? 16 : 10);
        if (errno || end == (hex ? s + 2 : s) || *end || s[0] == '-' || s[0] == '+' || (hex && s[2] == '-'))
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_ms(const char *s, int *ret) {
        uint64_t v;

        if (parse_u64(s, &v) < 0 || v > INT32_MAX)
                return -EINVAL;
        *ret = (int) v;
        return 0;
}

static int parse_size(const char *s, uint64_t *ret) {
        char buf[32];
        size_t n = strlen(s);
        unsigned shift = 0;
        uint64_t v;

        if (n == 0 || n >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, s, n + 1);
        switch (buf[n - 1]) {
        case 'K': case 'k': shift = 10; break;
        case 'M': case 'm': shift = 20; break;
        case 'G': case 'g': shift = 30; break;
        default: break;
        }
        if (shift)
                buf[n - 1] = '\0';
        if (parse_u64(buf, &v) < 0 || v > (UINT64_MAX >> shift))
                return -EINVAL;
        *ret = v << shift;
        return 0;
}

static int64_t now_ms(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000 };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Checks that [OFF, OFF+len) is inside the data area; OFF is parsed from @s. */
static int data_range(Tool *t, const char *s, uint64_t len, uint64_t *ret) {
        uint64_t off;

        if (parse_u64(s, &off) < 0)
                return fail("bad offset '%s'", s);
        if (off > shmem_size(t->shm) || len > shmem_size(t->shm) - off)
                return fail("%" PRIu64 "+%" PRIu64 " is outside the data (%" PRIu64 " bytes)", off, len,
                            shmem_size(t->shm));
        *ret = off;
        return 0;
}

static void print_event(const struct shmem_event *ev) {
        out("event senders=0x%" PRIx64 " changed=%d active=0x%" PRIx64, ev->senders,
            ev->membership_changed ? 1 : 0, ev->active);
}

/* Waits until @deadline (ms, monotonic); 0 on timeout, 1 with @ev, or -1 after a FAIL. */
static int wait_until(Tool *t, int64_t deadline, const char *what, struct shmem_event *ev) {
        int64_t left = deadline - now_ms();
        int r;

        r = shmem_wait(t->shm, left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int) left, ev);
        if (r < 0)
                return fail("%s: shmem_wait: %s", what, shmem_strstatus(r));
        if (r > 0)
                print_event(ev);
        return r;
}

static int cmd_info(Tool *t, char **args) {
        out("info index=%u size=%" PRIu64 " max_peers=%u active=0x%" PRIx64, shmem_index(t->shm),
            shmem_size(t->shm), shmem_max_peers(t->shm), shmem_active(t->shm));
        return 0;
}

static int cmd_write(Tool *t, char **args) {
        size_t len = strlen(args[1]);
        uint64_t off;

        if (data_range(t, args[0], len, &off) < 0)
                return -1;
        memcpy((char *) shmem_data(t->shm) + off, args[1], len);
        __atomic_thread_fence(__ATOMIC_RELEASE);
        return 0;
}

/* Formats up to @len bytes at @p, stopping at a NUL, non-printables escaped. */
static void format_bytes(const unsigned char *p, uint64_t len, char *buf, size_t size) {
        size_t n = 0;

        for (uint64_t i = 0; i < len && p[i] && n + 5 < size; i++) {
                if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
                        buf[n++] = (char) p[i];
                else
                        n += (size_t) snprintf(buf + n, size - n, "\\x%02x", p[i]);
        }
        buf[n] = '\0';
}

static int cmd_read(Tool *t, char **args) {
        char buf[4096 * 4 + 1];
        uint64_t off, len;

        if (parse_u64(args[1], &len) < 0 || len > 4096)
                return fail("read: bad length '%s' (at most 4096)", args[1]);
        if (data_range(t, args[0], len, &off) < 0)
                return -1;
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        format_bytes((const unsigned char *) shmem_data(t->shm) + off, len, buf, sizeof(buf));
        out("read %" PRIu64 " %s", off, buf);
        return 0;
}

static int cmd_expect(Tool *t, char **args) {
        size_t len = strlen(args[1]);
        uint64_t off;
        int64_t deadline;
        int ms;

        if (parse_ms(args[2], &ms) < 0)
                return fail("expect: bad timeout '%s'", args[2]);
        if (data_range(t, args[0], len, &off) < 0)
                return -1;
        deadline = now_ms() + ms;
        for (;;) {
                const char *p = (const char *) shmem_data(t->shm) + off;

                __atomic_thread_fence(__ATOMIC_ACQUIRE);
                if (memcmp(p, args[1], len) == 0)
                        return 0;
                if (now_ms() >= deadline) {
                        char buf[1024];

                        format_bytes((const unsigned char *) p, len < 200 ? len : 200, buf, sizeof(buf));
                        return fail("expect %" PRIu64 ": '%s' not seen within %d ms (have '%s')", off, args[1],
                                    ms, buf);
                }
                sleep_ms(LOOK_INTERVAL_MS);
        }
}

static int cmd_notify(Tool *t, char **args) {
        uint64_t mask;
        int r;

        if (strcmp(args[0], "all") == 0)
                mask = SHMEM_ALL_BUT_ME;
        else if (parse_u64(args[0], &mask) < 0)
                return fail("notify: bad mask '%s'", args[0]);
        r = shmem_notify(t->shm, mask);
        if (r < 0)
                return fail("notify: %s", shmem_strstatus(r));
        return 0;
}

static int cmd_wait(Tool *t, char **args) {
        struct shmem_event ev;
        int ms, r;

        if (parse_ms(args[0], &ms) < 0)
                return fail("wait: bad timeout '%s'", args[0]);
        r = wait_until(t, now_ms() + ms, "wait", &ev);
        if (r == 0)
                return fail("wait: no event within %d ms", ms);
        return r < 0 ? -1 : 0;
}

static int cmd_wait_from(Tool *t, char **args) {
        struct shmem_event ev;
        uint64_t mask, got = 0;
        int64_t deadline;
        int ms;

        if (parse_u64(args[0], &mask) < 0)
                return fail("wait-from: bad mask '%s'", args[0]);
        if (parse_ms(args[1], &ms) < 0)
                return fail("wait-from: bad timeout '%s'", args[1]);
        deadline = now_ms() + ms;
        got = t->carry;
        t->carry = 0;
        while ((got & mask) != mask) {
                int r = wait_until(t, deadline, "wait-from", &ev);

                if (r < 0)
                        return -1;
                if (r == 0)
                        return fail("wait-from 0x%" PRIx64 ": only 0x%" PRIx64 " signaled within %d ms", mask,
                                    got & mask, ms);
                got |= ev.senders;
        }
        return 0;
}

/*
 * Waits for membership events, and reads the bitmap between them: a host
 * peer's bitmap can change before its event comes. Always one look first, so
 * a membership event that is already there is printed here, where a test
 * expects it. Signals that come meanwhile are printed, and kept for the next
 * wait-from, which would otherwise wait for them in vain.
 */
static int cmd_wait_active(Tool *t, char **args) {
        struct shmem_event ev;
        uint64_t mask;
        int64_t deadline;
        int ms, r;

        if (parse_u64(args[0], &mask) < 0)
                return fail("wait-active: bad mask '%s'", args[0]);
        if (parse_ms(args[1], &ms) < 0)
                return fail("wait-active: bad timeout '%s'", args[1]);
        deadline = now_ms() + ms;
        r = wait_until(t, 0, "wait-active", &ev);
        for (;;) {
                if (r < 0)
                        return -1;
                if (r > 0)
                        t->carry |= ev.senders;
                if (shmem_active(t->shm) == mask)
                        break;
                if (now_ms() >= deadline)
                        return fail("wait-active 0x%" PRIx64 ": active is 0x%" PRIx64 " after %d ms", mask,
                                    shmem_active(t->shm), ms);
                int64_t next = now_ms() + ACTIVE_INTERVAL_MS;

                r = wait_until(t, next < deadline ? next : deadline, "wait-active", &ev);
        }
        out("active 0x%" PRIx64, mask);
        return 0;
}

static int cmd_expect_no_signal(Tool *t, char **args) {
        struct shmem_event ev;
        int64_t deadline;
        int ms;

        if (parse_ms(args[0], &ms) < 0)
                return fail("expect-no-signal: bad timeout '%s'", args[0]);
        deadline = now_ms() + ms;
        for (;;) {
                int r = wait_until(t, deadline, "expect-no-signal", &ev);

                if (r < 0)
                        return -1;
                if (r == 0)
                        return 0;
                if (ev.senders)
                        return fail("expect-no-signal: signaled by 0x%" PRIx64, ev.senders);
        }
}

static int cmd_unconsumed(Tool *t, char **args) {
        out("unconsumed 0x%" PRIx64, shmem_unconsumed(t->shm));
        return 0;
}

static int cmd_sleep(Tool *t, char **args) {
        int ms;

        if (parse_ms(args[0], &ms) < 0)
                return fail("sleep: bad duration '%s'", args[0]);
        sleep_ms(ms);
        return 0;
}

static const Command commands[] = {
        { "info", 0, cmd_info },
        { "write", 2, cmd_write },
        { "read", 2, cmd_read },
        { "expect", 3, cmd_expect },
        { "notify", 1, cmd_notify },
        { "wait", 1, cmd_wait },
        { "wait-from", 2, cmd_wait_from },
        { "wait-active", 2, cmd_wait_active },
        { "expect-no-signal", 1, cmd_expect_no_signal },
        { "unconsumed", 0, cmd_unconsumed },
        { "sleep", 1, cmd_sleep },
};

static const Command *command_find(const char *name) {
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (strcmp(commands[i].name, name) == 0)
                        return &commands[i];
        return NULL;
}

/* Checks the whole script before attaching: a typo must not cost a region attach. */
static int script_check(int argc, char **argv) {
        for (int i = 0; i < argc;) {
                const Command *c = command_find(argv[i]);

                if (!c)
                        return fail("unknown command '%s' (see --help)", argv[i]);
                if (argc - i - 1 < c->nargs)
                        return fail("%s needs %d argument(s)", c->name, c->nargs);
                i += 1 + c->nargs;
        }
        return 0;
}

int main(int argc, char **argv) {
        enum { ARG_SOCKET = 0x100, ARG_LABEL, ARG_SIZE, ARG_FIND, ARG_EXCLUSIVE };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "label", required_argument, NULL, ARG_LABEL },
                { "size", required_argument, NULL, ARG_SIZE },
                { "find", no_argument, NULL, ARG_FIND },
                { "exclusive", no_argument, NULL, ARG_EXCLUSIVE },
                {},
        };
        struct shmem_attach_opts opts = { .size = sizeof(opts) };
        Tool t = {};
        uint64_t size = 0;
        unsigned flags = 0;
        const char *name;
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
                default:
                        fail("bad option (see --help)");
                        return 1;
                }
        if (flags == (SHMEM_FIND | SHMEM_EXCLUSIVE)) {
                fail("--find and --exclusive exclude each other");
                return 1;
        }
        if (optind >= argc) {
                fail("no region name (see --help)");
                return 1;
        }
        name = argv[optind++];
        if (script_check(argc - optind, argv + optind) < 0)
                return 1;

        r = shmem_attach(&t.shm, name, size, flags, &opts);
        if (r != 0) {
                fail("attach %s: %s (%d)", name, shmem_strstatus(r), r);
                return 1;
        }
        r = 0;
        for (int i = optind; i < argc && r == 0;) {
                const Command *cmd = command_find(argv[i]);

                r = cmd->fn(&t, argv + i + 1);
                i += 1 + cmd->nargs;
        }
        shmem_detach(t.shm);
        return r == 0 ? 0 : 1;
}
