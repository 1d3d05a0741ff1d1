/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Integration, regions and signals: the real shmem-brokerd (broker-fixture.h)
 * driven through libshmem: creating, finding and filling regions, names and
 * sizes refused, signals to chosen peers, membership events, a killed peer's
 * index, a signal forged by shmem-peer's forgery commands, and a forked
 * child's copy of a handle.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker-fixture.h"
#include "test-util.h"

START_TEST(test_first_attach_creates_and_fixes_size) {
        shmem_t *a = attach("r1", 100000);
        shmem_t *b = attach("r1", 8 << 20);

        /* 100000 rounded up to pages, whatever the second attacher asked for. */
        ck_assert_uint_eq(shmem_size(a), 102400);
        ck_assert_uint_eq(shmem_size(b), 102400);
        ck_assert_uint_eq(shmem_index(a), 0);
        ck_assert_uint_eq(shmem_index(b), 1);
        ck_assert_uint_eq(shmem_max_peers(a), 16);
        ck_assert_str_eq(shmem_name(b), "r1");

        strcpy(shmem_data(a), "written by a");
        ck_assert_str_eq(shmem_data(b), "written by a");
        strcpy((char *) shmem_data(b) + 100000, "tail by b");
        ck_assert_str_eq((char *) shmem_data(a) + 100000, "tail by b");

        shmem_detach(b);
        shmem_detach(a);
}
END_TEST

START_TEST(test_find_and_exclusive) {
        shmem_t *a;

        ck_assert_ptr_null(attach_flags("missing", 4096, SHMEM_FIND, SHMEM_STATUS_DOES_NOT_EXIST));
        a = attach_flags("ex", 4096, SHMEM_EXCLUSIVE, 0);
        ck_assert_ptr_null(attach_flags("ex", 4096, SHMEM_EXCLUSIVE, SHMEM_STATUS_EXISTS));
        shmem_detach(attach_flags("ex", 0, SHMEM_FIND, 0));
        /* A declared region exists before anyone attached. */
        shmem_detach(attach_flags("declared", 0, SHMEM_FIND, 0));
        shmem_detach(a);
        /* The last peer left an undeclared region: it is gone. */
        ck_assert_ptr_null(attach_flags("ex", 4096, SHMEM_FIND, SHMEM_STATUS_DOES_NOT_EXIST));
}
END_TEST

START_TEST(test_client_max) {
        shmem_t *h[16];

        for (unsigned i = 0; i < 16; i++) {
                h[i] = attach("full", 4096);
                ck_assert_uint_eq(shmem_index(h[i]), i);
        }
        ck_assert_ptr_null(attach_flags("full", 4096, 0, SHMEM_STATUS_CLIENT_MAX));
        /* Lowest free index is reused. */
        shmem_detach(h[5]);
        h[5] = attach("full", 4096);
        ck_assert_uint_eq(shmem_index(h[5]), 5);
        for (unsigned i = 0; i < 16; i++)
                shmem_detach(h[i]);
}
END_TEST

START_TEST(test_selective_signaling) {
        shmem_t *p[4];
        struct shmem_event ev;

        for (unsigned i = 0; i < 4; i++)
                p[i] = attach("sig", 4096);
        for (unsigned i = 0; i < 4; i++)
                wait_active(p[i], 0xf);
        for (unsigned i = 0; i < 4; i++)
                while (shmem_wait(p[i], 0, &ev) > 0)
                        ; /* drain membership events */

        ck_assert_int_eq(shmem_notify(p[3], 0x5), 0); /* {0, 2} */
        ck_assert_uint_eq(shmem_unconsumed(p[3]) & 0x5, 0x5);
        ck_assert_uint_eq(wait_senders(p[0], 0x8, 3000), 0x8);
        ck_assert_uint_eq(wait_senders(p[2], 0x8, 3000), 0x8);
        ck_assert_uint_eq(shmem_unconsumed(p[3]), 0);
        /* Peer 1 was not in the set: nothing arrives. */
        ck_assert_int_eq(shmem_wait(p[1], 300, &ev), 0);

        /* Two senders to one receiver: it learns exactly both. */
        ck_assert_int_eq(shmem_notify(p[0], 0x4), 0);
        ck_assert_int_eq(shmem_notify(p[1], 0x4), 0);
        ck_assert_uint_eq(wait_senders(p[2], 0x3, 3000), 0x3);
        ck_assert_int_eq(shmem_wait(p[3], 200, &ev), 0);

        /* All but me. */
        ck_assert_int_eq(shmem_notify(p[2], SHMEM_ALL_BUT_ME), 0);
        ck_assert_uint_eq(wait_senders(p[0], 0x4, 3000), 0x4);
        ck_assert_uint_eq(wait_senders(p[1], 0x4, 3000), 0x4);
        ck_assert_uint_eq(wait_senders(p[3], 0x4, 3000), 0x4);
        ck_assert_int_eq(shmem_wait(p[2], 200, &ev), 0);

        for (unsigned i = 0; i < 4; i++)
                shmem_detach(p[i]);
}
END_TEST

START_TEST(test_membership_events) {
        shmem_t *a = attach("mem", 4096), *b;
        struct shmem_event ev;
        uint64_t epoch;

        ck_assert_uint_eq(shmem_active(a), 0x1);
        b = attach("mem", 4096);
        ck_assert_int_eq(shmem_wait(a, 3000, &ev), 1);
        ck_assert(ev.membership_changed);
        ck_assert_uint_eq(ev.active, 0x3);
        epoch = ev.epoch;
        /* The new peer can be signaled at once. */
        ck_assert_int_eq(shmem_notify(a, 0x2), 0);
        ck_assert_uint_eq(wait_senders(b, 0x1, 3000), 0x1);

        shmem_detach(b);
        ck_assert_int_eq(shmem_wait(a, 3000, &ev), 1);
        ck_assert(ev.membership_changed);
        ck_assert_uint_eq(ev.active, 0x1);
        ck_assert_uint_gt(ev.epoch, epoch);
        shmem_detach(a);
}
END_TEST

START_TEST(test_sigkill_frees_index) {
        shmem_t *a = attach("kill", 4096), *c;
        int pipefd[2];
        pid_t child;
        char ch;

        ck_assert_int_eq(pipe(pipefd), 0);
        child = fork();
        if (child == 0) {
                shmem_t *b = attach("kill", 4096);

                /* Leave a signal unconsumed in a's slot, then die. */
                shmem_notify(b, 0x1);
                (void) !write(pipefd[1], "x", 1);
                pause();
                _exit(shmem_index(b) == 1 ? 0 : 1);
        }
        close(pipefd[1]);
        ck_assert_int_eq(read(pipefd[0], &ch, 1), 1);
        close(pipefd[0]);
        wait_active(a, 0x3);
        ck_assert_int_eq(kill(child, SIGKILL), 0);
        ck_assert_int_eq(waitpid(child, NULL, 0), child);
        wait_active(a, 0x1);
        /* Index 1 is free again, and its next holder inherits no signal. */
        c = attach("kill", 4096);
        ck_assert_uint_eq(shmem_index(c), 1);
        ck_assert_uint_eq(shmem_unconsumed(c), 0);
        shmem_detach(c);
        shmem_detach(a);
}
END_TEST

/* Runs shmem-peer on region @name with @script as its commands; returns its exit status, its output in @out. */
static int run_peer(const char *name, const char *script, char *out, size_t size) {
        char cmd[1024];
        size_t n;
        FILE *p;

        snprintf(cmd, sizeof(cmd), "%s --socket %s --label forger %s %s 2>&1", SHMEM_PEER_PATH, sockpath, name,
                 script);
        p = popen(cmd, "re");
        ck_assert_ptr_nonnull(p);
        n = fread(out, 1, size - 1, p);
        out[n] = '\0';
        return pclose(p);
}

/* Waits until @h's rung view holds @want; returns both views, summed over the waits. */
static void wait_rang(shmem_t *h, uint64_t want, uint64_t *ret_senders, uint64_t *ret_rang) {
        *ret_senders = *ret_rang = 0;
        for (int t = 0; t < 3000 && (*ret_rang & want) != want; t += 50) {
                struct shmem_event ev;
                int r = shmem_wait(h, 50, &ev);

                ck_assert_int_ge(r, 0);
                if (r > 0) {
                        *ret_senders |= ev.senders;
                        *ret_rang |= ev.rang;
                }
        }
}

START_TEST(test_forged_signal_names_the_ringer) {
        shmem_t *v = attach("forge", 4096), *a = attach("forge", 4096);
        uint64_t senders, rang;
        struct shmem_event ev;
        char out[4096];

        wait_active(v, 0x3);
        while (shmem_wait(v, 0, &ev) > 0)
                ; /* drain membership events */

        /* F (index 2) sets A's bit in V's pending word without ringing, then
         * rings V with its own eventfd without setting a bit. */
        ck_assert_int_eq(run_peer("forge", "info forge-pending 0 0x2 ring-only 0x1", out, sizeof(out)), 0);
        ck_assert_msg(strstr(out, "info index=2 "), "%s", out);
        /* The pending view is forged: even A thinks V has not consumed its signal yet. */
        ck_assert_uint_eq(shmem_unconsumed(a), 0x1);
        wait_rang(v, 0x4, &senders, &rang);
        ck_assert_uint_eq(senders, 0x2);
        ck_assert_uint_eq(rang, 0x4); /* only the forger rang */

        /* A real signal from A is in both views. */
        ck_assert_int_eq(shmem_notify(a, 0x1), 0);
        wait_rang(v, 0x2, &senders, &rang);
        ck_assert_uint_eq(senders, 0x2);
        ck_assert_uint_eq(rang, 0x2);
        shmem_detach(a);
        shmem_detach(v);
}
END_TEST

START_TEST(test_bad_names_and_sizes) {
        static const char *const bad[] = { "", ".hidden", "a/b", "sp ace", "nul\x01",
                "0123456789012345678901234567890123456789012345678901234567890123" };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                ck_assert_ptr_null(attach_flags(bad[i], 4096, 0, SHMEM_STATUS_ILLEGAL_NAME));
        /* 63 characters is fine. */
        shmem_detach(attach("012345678901234567890123456789012345678901234567890123456789012", 4096));
        ck_assert_ptr_null(attach_flags("zero", 0, 0, SHMEM_STATUS_BAD_SIZE));
        ck_assert_ptr_null(attach_flags("huge", UINT64_C(1) << 40, 0, SHMEM_STATUS_BAD_SIZE));
        /* Exactly at the 1 GiB default: data + control page must be a power of two <= 1 GiB. */
        ck_assert_ptr_null(attach_flags("edge", UINT64_C(1) << 30, 0, SHMEM_STATUS_BAD_SIZE));
        shmem_detach(attach("edge", (UINT64_C(1) << 30) - 4096));
}
END_TEST

/* shmem.h: a forked child's shmem_detach() frees its copy; the attacher stays attached. */
START_TEST(test_fork_child_detach_keeps_attacher) {
        shmem_t *a = attach("forked", 4096), *b = attach("forked", 4096);
        struct shmem_event ev;
        int status;
        pid_t pid;

        wait_active(b, 0x3);
        while (shmem_wait(b, 0, &ev) > 0)
                ; /* drain membership events */
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                shmem_detach(a);
                _exit(0);
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        /* The broker still counts a (a Detach would have cleared its bit at once), and a signals b. */
        ck_assert_uint_eq(shmem_active(b), 0x3);
        ck_assert_int_eq(shmem_wait(b, 0, &ev), 0);
        ck_assert_int_eq(shmem_notify(a, 0x2), 0);
        ck_assert_uint_eq(wait_senders(b, 0x1, 3000), 0x1);
        shmem_detach(b);
        shmem_detach(a);
}
END_TEST

static Suite *broker_regions_suite(void) {
        Suite *s = suite_create("broker-regions");
        TCase *tc;

        tc = broker_tcase(s, "regions", setup, 30);
        tcase_add_test(tc, test_first_attach_creates_and_fixes_size);
        tcase_add_test(tc, test_find_and_exclusive);
        tcase_add_test(tc, test_client_max);
        tcase_add_test(tc, test_bad_names_and_sizes);

        tc = broker_tcase(s, "signals", setup, 30);
        tcase_add_test(tc, test_selective_signaling);
        tcase_add_test(tc, test_membership_events);
        tcase_add_test(tc, test_sigkill_frees_index);
        tcase_add_test(tc, test_forged_signal_names_the_ringer);
        tcase_add_test(tc, test_fork_child_detach_keeps_attacher);
        return s;
}

int main(void) {
        return run_suite(broker_regions_suite());
}
