/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmem-tool: a scripted peer for the tests. One source, two builds: shmem-peer
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
 * (signal-mode = ivshmem). It uses the device alone (clients/guest/ivshmem-dev.h):
 * IVPosition, Doorbell (peer << 16 | vector), BAR2 as data from offset 0, and
 * one MSI-X eventfd per vector, reporting which vector fired.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "control-page.h"
#include "shmem-raw.h"
#include "shmem.h"

#ifdef SHMEM_TOOL_GUEST
#include <sys/epoll.h>
#include <unistd.h>

#include "ivshmem-dev.h"

#define PROGRAM "shmem-guest"
#else
#define PROGRAM "shmem-peer"
#endif

/* How often expect looks again: it watches memory, nothing rings for it. */
#define LOOK_INTERVAL_MS 2
/* wait-active also reads the bitmap this often, in case a change comes without an event. */
#define ACTIVE_INTERVAL_MS 50

/* Which commands a run knows: Command.modes is a mask of these. */
enum {
        MODE_SHMEM = 1 << 0, /* a region through libshmem(-guest) */
        MODE_RAW = 1 << 1,   /* shmem-guest --raw: the ivshmem device alone */
};

typedef struct Tool {
        shmem_t *shm;
        uint64_t carry;      /* senders seen by wait-active, counted by the next wait-from */
        uint64_t carry_rang; /* rings seen by wait-active, counted by the next wait-rang */
        uint8_t *data;  /* what write/read/expect use: the region's data, or all of BAR2 */
        uint64_t size;
#ifdef SHMEM_TOOL_GUEST
        IvshmemDev dev; /* raw mode */
#endif
} Tool;

typedef int (*command_fn)(Tool *t, char **args);

typedef struct Command {
        const char *name;
        int nargs;
        command_fn fn;
        unsigned modes;
} Command;

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

/* Checks that [OFF, OFF+len) is inside the data area; OFF is parsed from @s. */
static int data_range(Tool *t, const char *s, uint64_t len, uint64_t *ret) {
        uint64_t off;

        if (parse_u64(s, &off) < 0)
                return fail("bad offset '%s'", s);
        if (off > t->size || len > t->size - off)
                return fail("%" PRIu64 "+%" PRIu64 " is outside the data (%" PRIu64 " bytes)", off, len,
                            t->size);
        *ret = off;
        return 0;
}

/* Tests grep "event senders=0x..": new fields go at the end of the line. */
static void print_event(const struct shmem_event *ev) {
        out("event senders=0x%" PRIx64 " changed=%d active=0x%" PRIx64 " rang=0x%" PRIx64, ev->senders,
            ev->membership_changed ? 1 : 0, ev->active, ev->rang);
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
        memcpy(t->data + off, args[1], len);
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
        format_bytes(t->data + off, len, buf, sizeof(buf));
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
                const char *p = (const char *) t->data + off;

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

/* notify and ring-only: MASK|all, then @fn on it. */
static int signal_with(Tool *t, const char *what, int (*fn)(shmem_t *shm, uint64_t mask), const char *arg) {
        uint64_t mask;
        int r;

        if (strcmp(arg, "all") == 0)
                mask = SHMEM_ALL_BUT_ME;
        else if (parse_u64(arg, &mask) < 0)
                return fail("%s: bad mask '%s'", what, arg);
        r = fn(t->shm, mask);
        if (r < 0)
                return fail("%s: %s", what, shmem_strstatus(r));
        return 0;
}

static int cmd_notify(Tool *t, char **args) {
        return signal_with(t, "notify", shmem_notify, args[0]);
}

static int cmd_ring_only(Tool *t, char **args) {
        return signal_with(t, "ring-only", shmem_raw_ring, args[0]);
}

static int cmd_forge_pending(Tool *t, char **args) {
        uint64_t slot, mask;

        if (parse_u64(args[0], &slot) < 0 || slot >= shmem_max_peers(t->shm))
                return fail("forge-pending: bad slot '%s' (0-%u)", args[0], shmem_max_peers(t->shm) - 1);
        if (parse_u64(args[1], &mask) < 0)
                return fail("forge-pending: bad mask '%s'", args[1]);
        /* What shmem_notify() does first, with bits of my choosing. */
        shmem_page_set_pending(shmem_raw_page(t->shm), (unsigned) slot, mask);
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

/*
 * wait-from (@rang false: the senders view) and wait-rang: prints events
 * until every peer in MASK is in that view, counting what the last
 * wait-active carried over.
 */
static int wait_for_view(Tool *t, char **args, bool rang) {
        const char *what = rang ? "wait-rang" : "wait-from";
        uint64_t *carry = rang ? &t->carry_rang : &t->carry;
        struct shmem_event ev;
        uint64_t mask, got;
        int64_t deadline;
        int ms;

        if (parse_u64(args[0], &mask) < 0)
                return fail("%s: bad mask '%s'", what, args[0]);
        if (parse_ms(args[1], &ms) < 0)
                return fail("%s: bad timeout '%s'", what, args[1]);
        deadline = now_ms() + ms;
        got = *carry;
        *carry = 0;
        while ((got & mask) != mask) {
                int r = wait_until(t, deadline, what, &ev);

                if (r < 0)
                        return -1;
                if (r == 0)
                        return fail("%s 0x%" PRIx64 ": only 0x%" PRIx64 " %s within %d ms", what, mask, got & mask,
                                    rang ? "rang" : "signaled", ms);
                got |= rang ? ev.rang : ev.senders;
        }
        return 0;
}

static int cmd_wait_from(Tool *t, char **args) {
        return wait_for_view(t, args, false);
}

static int cmd_wait_rang(Tool *t, char **args) {
        return wait_for_view(t, args, true);
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
                if (r > 0) {
                        t->carry |= ev.senders;
                        t->carry_rang |= ev.rang;
                }
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

#ifdef SHMEM_TOOL_GUEST
/* --- raw mode: the ivshmem device alone ------------------------------------ */

static int first_device(const char *bdf, void *userdata) {
        char *ret = userdata;

        if (strlen(bdf) >= sizeof(((IvshmemDev *) NULL)->bdf))
                return 0;
        memcpy(ret, bdf, strlen(bdf) + 1);
        return 1;
}

/* Opens @bdf (NULL: the first ivshmem device) and enables every MSI-X vector. */
static int raw_open(Tool *t, const char *bdf) {
        char found[sizeof(t->dev.bdf)];
        int r;

        if (!bdf) {
                r = ivshmem_dev_scan(first_device, found);
                if (r < 0)
                        return fail("raw: looking for an ivshmem device: %s", strerror(-r));
                if (r == 0)
                        return fail("raw: no ivshmem device (PCI 1af4:1110)");
                bdf = found;
        } else if (!ivshmem_dev_is_ivshmem(bdf))
                return fail("raw: %s is not an ivshmem device (PCI 1af4:1110)", bdf);
        r = ivshmem_dev_open(&t->dev, bdf, ivshmem_dev_vfio_usable(bdf));
        if (r == IVSHMEM_DEV_BUSY)
                return fail("raw: %s is in use (vfio allows one opener per device)", bdf);
        if (r < 0)
                return fail("raw: open %s: %s", bdf, strerror(-r));
        /* ivshmem-plain has no MSI-X: data only. */
        if (t->dev.vfio && t->dev.msix_count > 0) {
                r = ivshmem_dev_enable_irqs(&t->dev, t->dev.msix_count);
                if (r < 0)
                        return fail("raw: enabling MSI-X on %s: %s", bdf, strerror(-r));
        }
        t->data = t->dev.bar2;
        t->size = t->dev.bar2_size;
        return 0;
}

static int cmd_raw_info(Tool *t, char **args) {
        uint32_t position;
        int r;

        r = ivshmem_dev_read_reg(&t->dev, IVSHMEM_REG_IV_POSITION, &position);
        if (r < 0)
                return fail("info: reading IVPosition: %s", strerror(-r));
        out("info position=%" PRIu32 " size=%" PRIu64 " vectors=%u device=%s interrupts=%s", position, t->size,
            t->dev.vectors, t->dev.bdf, t->dev.vectors ? "msix" : "none");
        return 0;
}

static int cmd_ring(Tool *t, char **args) {
        uint64_t peer, vector;
        int r;

        if (parse_u64(args[0], &peer) < 0 || peer > 0xffff)
                return fail("ring: bad peer '%s' (0-65535)", args[0]);
        if (parse_u64(args[1], &vector) < 0 || vector > 0xffff)
                return fail("ring: bad vector '%s' (0-65535)", args[1]);
        /* Data written before the ring is seen by a peer the ring wakes. */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        r = ivshmem_dev_write_reg(&t->dev, IVSHMEM_REG_DOORBELL, (uint32_t) (peer << 16 | vector));
        if (r < 0)
                return fail("ring: writing Doorbell: %s", strerror(-r));
        return 0;
}

/*
 * Waits up to @ms for vectors to fire and reads their eventfds to zero,
 * printing "vector V count=C" for each. Returns the number of vectors that
 * fired, with their counts added to @fired, or -1 after a FAIL.
 */
static int raw_collect(Tool *t, const char *what, int ms, uint64_t fired[IVSHMEM_DEV_VECTORS_MAX]) {
        struct epoll_event evs[IVSHMEM_DEV_VECTORS_MAX];
        int n;

        n = epoll_wait(t->dev.epfd, evs, IVSHMEM_DEV_VECTORS_MAX, ms);
        if (n < 0)
                return errno == EINTR ? 0 : fail("%s: epoll_wait: %s", what, strerror(errno));
        for (int i = 0; i < n; i++) {
                unsigned v = evs[i].data.u32;
                uint64_t count;

                if (read(t->dev.vec[v], &count, sizeof(count)) != sizeof(count))
                        continue; /* EAGAIN: nothing to count after all */
                out("vector %u count=%" PRIu64, v, count);
                fired[v] += count;
        }
        return n;
}

/* Parses a wait's timeout; fails (-1) without interrupts, where a wait could only time out. */
static int raw_wait_args(Tool *t, const char *what, const char *ms_arg, int *ret_ms) {
        if (parse_ms(ms_arg, ret_ms) < 0)
                return fail("%s: bad timeout '%s'", what, ms_arg);
        if (t->dev.vectors == 0)
                return fail("%s: no interrupts on %s (MSI-X needs vfio-pci, which needs an IOMMU "
                            "in the guest: q35 + intel-iommu)", what, t->dev.bdf);
        return 0;
}

static int cmd_wait_vector(Tool *t, char **args) {
        uint64_t fired[IVSHMEM_DEV_VECTORS_MAX] = {}, vector;
        int64_t deadline;
        int ms = 0;

        if (parse_u64(args[0], &vector) < 0)
                return fail("wait-vector: bad vector '%s'", args[0]);
        if (raw_wait_args(t, "wait-vector", args[1], &ms) < 0)
                return -1;
        if (vector >= t->dev.vectors)
                return fail("wait-vector: vector %" PRIu64 " does not exist (%u vectors)", vector, t->dev.vectors);
        deadline = now_ms() + ms;
        for (;;) {
                int64_t left = deadline - now_ms();

                if (raw_collect(t, "wait-vector", left > 0 ? (int) left : 0, fired) < 0)
                        return -1;
                for (unsigned v = 0; v < t->dev.vectors; v++)
                        if (fired[v] && v != vector)
                                return fail("wait-vector %" PRIu64 ": vector %u fired", vector, v);
                if (fired[vector])
                        return 0;
                if (left <= 0)
                        return fail("wait-vector %" PRIu64 ": no interrupt within %d ms", vector, ms);
        }
}

static int cmd_expect_no_vector(Tool *t, char **args) {
        uint64_t fired[IVSHMEM_DEV_VECTORS_MAX] = {};
        int64_t deadline;
        int ms = 0;

        if (raw_wait_args(t, "expect-no-vector", args[0], &ms) < 0)
                return -1;
        deadline = now_ms() + ms;
        for (;;) {
                int64_t left = deadline - now_ms();
                int n = raw_collect(t, "expect-no-vector", left > 0 ? (int) left : 0, fired);

                if (n < 0)
                        return -1;
                for (unsigned v = 0; v < t->dev.vectors; v++)
                        if (fired[v])
                                return fail("expect-no-vector: vector %u fired", v);
                if (left <= 0)
                        return 0;
        }
}
#endif

static const Command commands[] = {
        { "info", 0, cmd_info, MODE_SHMEM },
        { "write", 2, cmd_write, MODE_SHMEM | MODE_RAW },
        { "read", 2, cmd_read, MODE_SHMEM | MODE_RAW },
        { "expect", 3, cmd_expect, MODE_SHMEM | MODE_RAW },
        { "notify", 1, cmd_notify, MODE_SHMEM },
        { "wait", 1, cmd_wait, MODE_SHMEM },
        { "wait-from", 2, cmd_wait_from, MODE_SHMEM },
        { "wait-rang", 2, cmd_wait_rang, MODE_SHMEM },
        { "wait-active", 2, cmd_wait_active, MODE_SHMEM },
        { "expect-no-signal", 1, cmd_expect_no_signal, MODE_SHMEM },
        { "unconsumed", 0, cmd_unconsumed, MODE_SHMEM },
        { "sleep", 1, cmd_sleep, MODE_SHMEM | MODE_RAW },
        { "forge-pending", 2, cmd_forge_pending, MODE_SHMEM },
        { "ring-only", 1, cmd_ring_only, MODE_SHMEM },
#ifdef SHMEM_TOOL_GUEST
        { "info", 0, cmd_raw_info, MODE_RAW },
        { "ring", 2, cmd_ring, MODE_RAW },
        { "wait-vector", 2, cmd_wait_vector, MODE_RAW },
        { "expect-no-vector", 1, cmd_expect_no_vector, MODE_RAW },
#endif
};

static const Command *command_find(const char *name, unsigned mode) {
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (commands[i].modes & mode && strcmp(commands[i].name, name) == 0)
                        return &commands[i];
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
