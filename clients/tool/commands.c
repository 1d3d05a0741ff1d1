/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmem-tool's commands on a region (commands.h): the data, the shmem.h API
 * (libshmem on the host, libshmem-guest in a guest) and, beyond the API, the
 * forgery commands of shmem-raw.h.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "commands.h"
#include "control-page.h"
#include "shmem-raw.h"
#include "shmem.h"

/* How often expect looks again: it watches memory, nothing rings for it. */
#define LOOK_INTERVAL_MS 2
/* wait-active also reads the bitmap this often, in case a change comes without an event. */
#define ACTIVE_INTERVAL_MS 50

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

const Command commands[] = {
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
        {},
};
