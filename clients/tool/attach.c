/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmem-tool's attach, find, create and detach commands (attach.h). One line
 * each, for a test to parse:
 *
 *   attach NAME status=0 (ok) size=BYTES region=HOST[ device=BDF factory=0|1] ms=MS[ answer_ms=MS]
 *   attach NAME status=N (TEXT)[ factory=0|1] ms=MS[ answer_ms=MS][ detail=REASON]
 *   detach NAME status=N (TEXT)[ factory=0|1] ms=MS[ answer_ms=MS][ detail=REASON]
 *
 * (find and create alike). region is the name the region's control page
 * carries (in a guest, with the VM's subst prefix); device and factory are
 * shmem-guest's: the PCI address of the region's ivshmem device, and whether
 * the VM's factory was asked (shmem-guest.h); ms is the library call's own
 * time (the monotonic clock around shmem_attach() or shmem_detach(): for an
 * attach, until the region is mapped and usable), answer_ms the part of it
 * the factory took to answer, when it was asked; detail, the rest of the
 * line, is a refusal's reason as the factory gave it. A refusal ends the run
 * with its status as the exit code; a local failure is a FAIL line.
 * bench/factory.py reads ms and answer_ms.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "attach.h"
#include "clock.h"
#include "shmem.h"

#ifdef SHMEM_TOOL_GUEST
#include "shmem-guest.h"
#endif

static void set_region(Tool *t, shmem_t *shm) {
        t->shm = shm;
        t->data = shm ? shmem_data(shm) : NULL;
        t->size = shm ? shmem_size(shm) : 0;
        t->carry = t->carry_rang = 0;
}

/* " ms=MS": @took_ns, the library call's own time. */
static void format_ms(int64_t took_ns, char *buf, size_t size) {
        snprintf(buf, size, " ms=%.1f", (double) took_ns / 1e6);
}

#ifdef SHMEM_TOOL_GUEST
/*
 * " factory=0|1 ms=MS[ answer_ms=MS][ detail=REASON]" of an answer: what the
 * factory said, if asked, and the times; @took_ns is the whole call's.
 */
static void format_answer(const FactoryAnswer *a, int64_t took_ns, char *buf, size_t size) {
        char detail[sizeof(a->detail) * 4 + 1], ms[32], answer_ms[32] = "";
        bool asked = a->op != SHMEM_FACTORY_OP_NONE;

        format_bytes((const unsigned char *) a->detail, sizeof(a->detail), detail, sizeof(detail));
        format_ms(took_ns, ms, sizeof(ms));
        if (asked)
                snprintf(answer_ms, sizeof(answer_ms), " answer_ms=%.1f", (double) a->answer_ns / 1e6);
        snprintf(buf, size, " factory=%d%s%s%s%s", asked, ms, answer_ms, detail[0] ? " detail=" : "", detail);
}
#endif

/* attach, find and create: @flags for shmem_attach(), the size in args[1] if @sized. */
static int attach_with(Tool *t, const char *what, char **args, unsigned flags, bool sized) {
        const char *name = args[0];
        char tail[1024] = "";
        shmem_t *shm = NULL;
        uint64_t size = 0;
        int64_t took;
        int r;

        if (sized && parse_size(args[1], &size) < 0)
                return fail("%s: bad size '%s'", what, args[1]);
#ifdef SHMEM_TOOL_GUEST
        FactoryAnswer a;

        took = now_ns();
        r = shmem_guest_attach(&shm, name, size, flags, &a);
        took = now_ns() - took;
        if (r < 0 && a.op != SHMEM_FACTORY_OP_NONE && a.status == SHMEM_STATUS_OK)
                return fail("%s %s: %s (%d), after the factory's yes for region %s", what, name, shmem_strstatus(r), r,
                            a.region);
        if (r == 0)
                snprintf(tail, sizeof(tail), " size=%" PRIu64 " region=%s device=%s", shmem_size(shm),
                         shmem_guest_region(shm), shmem_guest_device(shm));
        if (r >= 0)
                format_answer(&a, took, tail + strlen(tail), sizeof(tail) - strlen(tail));
#else
        took = now_ns();
        r = shmem_attach(&shm, name, size, flags, t->opts);
        took = now_ns() - took;
        if (r == 0)
                snprintf(tail, sizeof(tail), " size=%" PRIu64 " region=%s", shmem_size(shm), shmem_name(shm));
        if (r >= 0)
                format_ms(took, tail + strlen(tail), sizeof(tail) - strlen(tail));
#endif
        if (r < 0)
                return fail("%s %s: %s (%d)", what, name, shmem_strstatus(r), r);
        out("%s %s status=%d (%s)%s", what, name, r, shmem_strstatus(r), tail);
        if (r == 0)
                set_region(t, shm);
        return r;
}

static int cmd_attach(Tool *t, char **args) {
        return attach_with(t, "attach", args, 0, true);
}

static int cmd_find(Tool *t, char **args) {
        return attach_with(t, "find", args, SHMEM_FIND, false);
}

static int cmd_create(Tool *t, char **args) {
        return attach_with(t, "create", args, SHMEM_EXCLUSIVE, true);
}

static int cmd_detach(Tool *t, char **args) {
        char tail[1024] = "";
        int64_t took;
        int r = 0;

        if (strcmp(args[0], shmem_name(t->shm)) != 0)
                return fail("detach %s: the region attached is %s", args[0], shmem_name(t->shm));
#ifdef SHMEM_TOOL_GUEST
        FactoryAnswer a;

        took = now_ns();
        r = shmem_guest_detach(t->shm, &a);
        took = now_ns() - took;
        if (r >= 0)
                format_answer(&a, took, tail, sizeof(tail));
#else
        took = now_ns();
        shmem_detach(t->shm);
        format_ms(now_ns() - took, tail, sizeof(tail));
#endif
        set_region(t, NULL);
        if (r < 0)
                return fail("detach %s: %s (%d)", args[0], shmem_strstatus(r), r);
        out("detach %s status=%d (%s)%s", args[0], r, shmem_strstatus(r), tail);
        return r;
}

const Command attach_commands[] = {
        { "attach", 2, cmd_attach, MODE_DETACHED, MODE_SHMEM },
        { "find", 1, cmd_find, MODE_DETACHED, MODE_SHMEM },
        { "create", 2, cmd_create, MODE_DETACHED, MODE_SHMEM },
        { "detach", 1, cmd_detach, MODE_SHMEM, MODE_DETACHED },
        {},
};
