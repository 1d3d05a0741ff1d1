/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Integration, configuration: the real shmem-brokerd (broker-fixture.h) on
 * broker.conf and conf.d/: declared regions and limits, files refused with
 * file and line, reloads, who may attach to a region, [client] rules (allow,
 * deny, subst), pinned indices and memory backends.
 */
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker-fixture.h"
#include "fake-peers.h"
#include "test-util.h"

/*
 * Attaches to @name as uid/gid with @group as its only supplementary group
 * ((gid_t) -1: none), in a child. Returns the attach status. With @hold, the
 * child stays attached until *hold (a pipe) is closed; *hold is set then.
 */
static pid_t held_child;

static int attach_as(uid_t uid, gid_t gid, gid_t group, const char *name, unsigned flags, int *hold) {
        int result[2], stay[2] = { -1, -1 }, r = -1;
        pid_t child;

        ck_assert_int_eq(pipe(result), 0);
        if (hold)
                ck_assert_int_eq(pipe(stay), 0);
        child = fork();
        if (child == 0) {
                struct shmem_attach_opts o = { .size = sizeof(o), .socket = sockpath };
                shmem_t *h = NULL;
                char c;

                if (setgroups(group == (gid_t) -1 ? 0 : 1, &group) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
                        _exit(99);
                r = shmem_attach(&h, name, 4096, flags, &o);
                (void) !write(result[1], &r, sizeof(r));
                if (hold) {
                        close(stay[1]);
                        (void) !read(stay[0], &c, 1);
                }
                shmem_detach(h);
                _exit(0);
        }
        close(result[1]);
        ck_assert_int_eq(read(result[0], &r, sizeof(r)), (ssize_t) sizeof(r));
        close(result[0]);
        if (hold) {
                close(stay[0]);
                *hold = stay[1]; /* closing it lets the child detach and exit */
                held_child = child;
        } else
                ck_assert_int_eq(waitpid(child, NULL, 0), child);
        return r;
}

START_TEST(test_region_access) {
        int hold = -1;

        ck_assert_int_eq(chmod(rundir, 0755), 0);
        /* [region priv] group = nogroup, mode = 0660: others may not attach. */
        ck_assert_int_eq(attach_as(65533, 65533, (gid_t) -1, "priv", SHMEM_FIND, NULL), SHMEM_STATUS_NO_PERMISSION);
        ck_assert_int_eq(attach_as(65533, 65533, 65534, "priv", SHMEM_FIND, NULL), 0);  /* supplementary group */
        ck_assert_int_eq(attach_as(65534, 65534, (gid_t) -1, "priv", SHMEM_FIND, NULL), 0);  /* primary group */
        /* A declared region with no access keys is open. */
        ck_assert_int_eq(attach_as(65533, 65533, (gid_t) -1, "declared", SHMEM_FIND, NULL), 0);
        /* A region a host peer creates is its own and its group's (0660)... */
        ck_assert_int_eq(attach_as(65534, 65534, (gid_t) -1, "mine", 0, &hold), 0);
        ck_assert_int_eq(attach_as(65533, 65533, (gid_t) -1, "mine", SHMEM_FIND, NULL), SHMEM_STATUS_NO_PERMISSION);
        ck_assert_int_eq(attach_as(65533, 65533, 65534, "mine", SHMEM_FIND, NULL), 0);
        /* ...and [limits] regions-per-uid = 1 refuses its second. */
        ck_assert_int_eq(attach_as(65534, 65534, (gid_t) -1, "mine2", 0, NULL), SHMEM_STATUS_LIMIT);
        /* Root may attach anywhere. */
        shmem_detach(attach_flags("mine", 0, SHMEM_FIND, 0));
        close(hold);
        ck_assert_int_eq(waitpid(held_child, NULL, 0), held_child);
        /* Once "mine" is gone, the same user may create again. */
        ck_assert_int_eq(attach_as(65534, 65534, (gid_t) -1, "mine2", 0, NULL), 0);
}
END_TEST

static void setup_access(void) {
        static const char *const more[] = { "--region", "declared:4K", NULL };

        setup_with_config("[limits]\nregions-per-uid = 1\n[region priv]\nsize = 4K\ngroup = nogroup\nmode = 0660\n",
                          NULL, more);
}

static shmem_t *attach_labeled(const char *label, const char *name, int expect) {
        struct shmem_attach_opts o = { .size = sizeof(o), .socket = sockpath, .label = label };
        shmem_t *h = NULL;
        int r = shmem_attach(&h, name, 4096, SHMEM_FIND, &o);

        ck_assert_msg(r == expect, "%s -> %s: got %d (%s), want %d", label, name, r, shmem_strstatus(r), expect);
        return h;
}

START_TEST(test_access_rules) {
        int64_t v;
        int q;

        /* [client ci-*] allow = ok-* shared: an allow implies a final deny *. */
        shmem_detach(attach_labeled("ci-app", "ok-1", 0));
        shmem_detach(attach_labeled("ci-app", "shared", 0));
        attach_labeled("ci-app", "other", SHMEM_STATUS_NO_PERMISSION);
        /* No section matches: no rule applies. */
        shmem_detach(attach_labeled("tool", "other", 0));
        /* [client qemu-*] deny = secret, for the fake QEMU (labelled qemu-PID, no -name):
         * a deny implies a final allow *; refused by version 1000 + NO_PERMISSION. */
        q = qemu_connect("secret");
        ck_assert_int_eq(qemu_read(q, &v), -1);
        ck_assert_int_eq(v, 1000 + SHMEM_STATUS_NO_PERMISSION);
        close(q);
        q = qemu_connect("ok-1");
        qemu_expect(q, 0, false);
        close(q);
}
END_TEST

START_TEST(test_subst) {
        /* [client sub-*] subst = t1-: what sub-x calls "data" is "t1-data". */
        shmem_t *sub = attach_labeled("sub-x", "data", 0), *plain = attach_labeled("plain", "t1-data", 0),
                *other = attach_labeled("plain", "data", 0);

        ck_assert_str_eq(shmem_name(sub), "data");
        strcpy(shmem_data(sub), "via subst");
        ck_assert_str_eq(shmem_data(plain), "via subst");
        ck_assert_str_ne(shmem_data(other), "via subst");
        shmem_detach(other);
        shmem_detach(plain);
        shmem_detach(sub);
}
END_TEST

START_TEST(test_pinned_index) {
        /* [region pinned] pin = late:0: index 0 waits for "late" whoever comes first. */
        struct shmem_attach_opts o = { .size = sizeof(o), .socket = sockpath };
        shmem_t *early, *late, *other;

        o.label = "early";
        ck_assert_int_eq(shmem_find(&early, "pinned", &o), 0);
        ck_assert_uint_eq(shmem_index(early), 1);
        o.label = "other";
        ck_assert_int_eq(shmem_find(&other, "pinned", &o), 0);
        ck_assert_uint_eq(shmem_index(other), 2);
        o.label = "late";
        ck_assert_int_eq(shmem_find(&late, "pinned", &o), 0);
        ck_assert_uint_eq(shmem_index(late), 0);
        shmem_detach(late);
        shmem_detach(other);
        shmem_detach(early);
}
END_TEST

static long meminfo(const char *key) {
        char line[256];
        long v = -1;
        FILE *f = fopen("/proc/meminfo", "re");

        while (f && fgets(line, sizeof(line), f))
                if (strncmp(line, key, strlen(key)) == 0)
                        v = strtol(line + strlen(key), NULL, 10);
        if (f)
                fclose(f);
        return v;
}

static void write_sysctl(const char *path, long value) {
        FILE *f = fopen(path, "we");

        ck_assert_msg(f, "cannot open %s: run the tests as root (they set vm.nr_hugepages)", path);
        fprintf(f, "%ld\n", value);
        ck_assert_int_eq(fclose(f), 0);
}

START_TEST(test_backends) {
        shmem_t *a, *b;
        long before = meminfo("HugePages_Total:");

        /* [region dir] backend = /dev/shm: an unlinked file there, shared as any region. */
        a = attach("dir", 0);
        b = attach("dir", 0);
        ck_assert_uint_eq(shmem_size(a), 65536);
        strcpy(shmem_data(a), "on tmpfs");
        ck_assert_str_eq(shmem_data(b), "on tmpfs");
        shmem_detach(b);
        shmem_detach(a);

        /* [region huge] backend = hugetlb-2M: it really takes a huge page. */
        ck_assert_int_ge(before, 0);
        write_sysctl("/proc/sys/vm/nr_hugepages", before + 2);
        ck_assert_int_eq(meminfo("HugePages_Total:"), before + 2);
        a = attach("huge", 0);
        b = attach("huge", 0);
        ck_assert_int_eq(meminfo("HugePages_Free:"), before + 2 - 1);
        strcpy(shmem_data(a), "on huge pages");
        ck_assert_str_eq(shmem_data(b), "on huge pages");
        shmem_detach(b);
        shmem_detach(a);
        write_sysctl("/proc/sys/vm/nr_hugepages", before);
}
END_TEST

static void setup_rules(void) {
        setup_with_config("[client sub-*]\nsubst = t1-\n[region t1-data]\nsize = 4K\n[region data]\nsize = 4K\n"
                          "[client ci-*]\nallow = ok-* shared\n[client qemu-*]\ndeny = secret\n"
                         "[region ok-1]\nsize = 4K\n[region shared]\nsize = 4K\n"
                         "[region secret]\nsize = 4K\n[region other]\nsize = 4K\n"
                         "[region pinned]\nsize = 4K\npin = late:0\n"
                         "[region dir]\nsize = 64K\nbackend = /dev/shm\n"
                          "[region huge]\nsize = 64K\nbackend = hugetlb-2M\n",
                          NULL, NULL);
}

/* --- configuration --- */

/* Runs the broker on a configuration that must be refused; returns its stderr. */
static void assert_config_refused(const char *conf, const char *expect) {
        char path[300], cmd[1024], out[1024] = "";
        FILE *p;
        size_t n;

        snprintf(path, sizeof(path), "%s/bad.conf", rundir);
        write_file(path, conf);
        snprintf(cmd, sizeof(cmd), "%s --config %s --rundir %s/other 2>&1; echo rc=$?", BROKERD_PATH, path,
                 rundir);
        p = popen(cmd, "re");
        n = fread(out, 1, sizeof(out) - 1, p);
        out[n] = 0;
        pclose(p);
        ck_assert_msg(strstr(out, expect) && strstr(out, "rc=1"), "want '%s', got: %s", expect, out);
}

START_TEST(test_config_regions_and_limits) {
        shmem_t *h[3];

        /* setup_config() started the broker on the files written there. */
        shmem_detach(attach_flags("cfg-a", 0, SHMEM_FIND, 0)); /* from broker.conf */
        h[0] = attach_flags("cfg-b", 0, SHMEM_FIND, 0);         /* from conf.d/ */
        h[1] = attach("cfg-b", 0);
        /* max-peers = 2 from conf.d refuses a third peer. */
        ck_assert_ptr_null(attach_flags("cfg-b", 0, 0, SHMEM_STATUS_CLIENT_MAX));
        ck_assert_uint_eq(shmem_size(h[0]), 4096);
        /* [limits] region-bytes = 1M: a bigger region is refused. */
        ck_assert_ptr_null(attach_flags("big", 2 << 20, 0, SHMEM_STATUS_BAD_SIZE));
        /* [limits] peers = 3 is the default for new regions. */
        h[2] = attach("new", 4096);
        ck_assert_uint_eq(shmem_max_peers(h[2]), 3);
        for (int i = 0; i < 3; i++)
                shmem_detach(h[i]);
}
END_TEST

START_TEST(test_config_refused_with_file_and_line) {
        assert_config_refused("[limits]\npeers = 99\n", "bad.conf:2: '99' is not a number from 1 to 64");
        assert_config_refused("[region ok]\nsize = 1M\nnonsense\n", "bad.conf:3:");
        assert_config_refused("[region .x]\nsize = 1\n", "bad.conf:2: [region .x]: names are");
        assert_config_refused("[frobnicate]\nx = 1\n", "unknown section [frobnicate]");
        assert_config_refused("[broker]\nqemu-socket-mode = 999\n", "octal mode");
        assert_config_refused("[region nosize]\npersistent = yes\n", "[region nosize] has no size");
        assert_config_refused("[limits]\nregion-bytes = 12Q\n", "is not a size");
        assert_config_refused("[region c]\nsize = 4K\nsignal-mode = qnx\n", "signal-mode must be shmem or ivshmem");
        assert_config_refused("[region c]\nsize = 4K\nvectors = 4\n", "vectors is for signal-mode = ivshmem");
        assert_config_refused("[region c]\nsize = 4K\npin = vm-a:64\n", "pin wants NAME:INDEX");
        assert_config_refused("[region c]\nsize = 4K\nbackend = tape\n", "backend must be memfd");
        assert_config_refused("[client x]\nsubst = a/b\n", "subst wants a name prefix");
}
END_TEST

/* Attaches with FIND until @expect comes back (a reload is asynchronous). */
static void wait_find_status(const char *name, int expect) {
        struct shmem_attach_opts o = { .size = sizeof(o), .socket = sockpath };

        for (int i = 0; i < 300; i++) {
                shmem_t *h = NULL;
                int r = shmem_find(&h, name, &o);

                shmem_detach(h);
                if (r == expect)
                        return;
                usleep(10000);
        }
        ck_abort_msg("'%s' never gave status %d", name, expect);
}

START_TEST(test_config_reload) {
        shmem_t *a = attach_flags("cfg-b", 0, SHMEM_FIND, 0), *b = attach("cfg-b", 0);

        /* Drop cfg-a, grow cfg-b (in use: keeps its size), add cfg-c. */
        write_file(conf_path, "[limits]\npeers = 3\nregion-bytes = 1M\n[region cfg-b]\nsize = 64K\n"
                              "max-peers = 2\n[region cfg-c]\nsize = 8K\n");
        ck_assert_int_eq(kill(broker_pid, SIGHUP), 0);
        wait_find_status("cfg-c", 0);
        wait_find_status("cfg-a", SHMEM_STATUS_DOES_NOT_EXIST);
        /* Attached peers did not notice. */
        ck_assert_uint_eq(shmem_size(a), 4096);
        assert_others_unharmed(a, b);

        /* An invalid file is refused and the configuration in force stays;
         * a Reload request (shmemctl reload) gets the reason back. */
        write_file(conf_path, "[region cfg-d]\nsize = 8K\ngarbage\n");
        {
                char error[512];

                ck_assert_int_eq(admin_request(SHMEM__MESSAGE__BODY_RELOAD, error, sizeof(error)),
                                 SHMEM_STATUS_BAD_REQUEST);
                ck_assert_msg(strstr(error, "broker.conf:3:"), "reason: %s", error);
        }
        ck_assert_int_eq(kill(broker_pid, SIGHUP), 0);
        usleep(300000);
        wait_find_status("cfg-c", 0);
        wait_find_status("cfg-d", SHMEM_STATUS_DOES_NOT_EXIST);
        assert_others_unharmed(a, b);
        shmem_detach(b);
        shmem_detach(a);
}
END_TEST

static void setup_config(void) {
        setup_with_config("# comment\n[limits]\npeers = 3\nregion-bytes = 1M\n\n[region cfg-a]\nsize = 64K\n",
                          "[region cfg-b]\nsize = 4K\nmax-peers = 2\n", NULL);
}

static Suite *broker_config_suite(void) {
        Suite *s = suite_create("broker-config");
        TCase *tc;

        tc = broker_tcase(s, "config", setup_config, 30);
        tcase_add_test(tc, test_config_regions_and_limits);
        tcase_add_test(tc, test_config_refused_with_file_and_line);
        tcase_add_test(tc, test_config_reload);

        tc = broker_tcase(s, "access", setup_access, 30);
        tcase_add_test(tc, test_region_access);

        tc = broker_tcase(s, "rules", setup_rules, 30);
        tcase_add_test(tc, test_access_rules);
        tcase_add_test(tc, test_pinned_index);
        tcase_add_test(tc, test_subst);
        tcase_add_test(tc, test_backends);
        return s;
}

int main(void) {
        return run_suite(broker_config_suite());
}
