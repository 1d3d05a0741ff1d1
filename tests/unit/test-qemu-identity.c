/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of plugin-qemu/qemu-identity.c: a VM's name and UUID from its
 * command line, and libvirt's pid file, parsed from bytes the QEMU process
 * (its command line) or libvirtd (the pid file) wrote. Neither is trusted
 * further than the parsers here let it go.
 */
#include <string.h>

#include "qemu-identity.h"
#include "test-util.h"

#define CMDLINE(s) s, sizeof(s) /* with the final NUL, as /proc/PID/cmdline has it */

static void parse(const char *buf, size_t n, char label[SHMEM_LABEL_MAX + 1], char uuid[PEER_UUID_MAX + 1]) {
        strcpy(label, "qemu-1");
        uuid[0] = 0;
        qemu_identity_parse_cmdline(buf, n, label, uuid);
}

START_TEST(test_cmdline_libvirt) {
        char label[SHMEM_LABEL_MAX + 1], uuid[PEER_UUID_MAX + 1];

        parse(CMDLINE("/usr/bin/qemu-system-x86_64\0-name\0guest=vm-a,debug-threads=on\0-S\0"
                      "-uuid\0" "464cdf46-ca49-4757-aca9-81697d0283f7\0-machine\0q35"),
              label, uuid);
        ck_assert_str_eq(label, "vm-a");
        ck_assert_str_eq(uuid, "464cdf46-ca49-4757-aca9-81697d0283f7");
}
END_TEST

START_TEST(test_cmdline_by_hand) {
        char label[SHMEM_LABEL_MAX + 1], uuid[PEER_UUID_MAX + 1];

        parse(CMDLINE("qemu\0-name\0plain\0-m\0256M"), label, uuid);
        ck_assert_str_eq(label, "plain");
        ck_assert_str_eq(uuid, "");
        /* No -name: the label stays what the caller gave (qemu-PID). */
        parse(CMDLINE("qemu\0-m\0256M"), label, uuid);
        ck_assert_str_eq(label, "qemu-1");
        /* The last -name wins, as QEMU takes it. */
        parse(CMDLINE("qemu\0-name\0first\0-name\0second"), label, uuid);
        ck_assert_str_eq(label, "second");
}
END_TEST

START_TEST(test_cmdline_hostile) {
        char label[SHMEM_LABEL_MAX + 1], uuid[PEER_UUID_MAX + 1];
        char buf[256];

        /* A name longer than a label: cut to 31 bytes, never past the buffer. */
        parse(CMDLINE("qemu\0-name\0guest=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), label, uuid);
        ck_assert_uint_eq(strlen(label), SHMEM_LABEL_MAX);
        /* A UUID that is not one is ignored: wrong length, a character that is no hex digit. */
        parse(CMDLINE("qemu\0-uuid\0" "464cdf46-ca49-4757-aca9-81697d0283f"), label, uuid);
        ck_assert_str_eq(uuid, "");
        parse(CMDLINE("qemu\0-uuid\0" "464cdf46-ca49-4757-aca9-81697d0283fz"), label, uuid);
        ck_assert_str_eq(uuid, "");
        parse(CMDLINE("qemu\0-uuid\0" "464cdf46-ca49-4757-aca9-81697d0283f7/"), label, uuid);
        ck_assert_str_eq(uuid, "");
        /* An option at the very end with no value, and bytes without a final NUL. */
        parse(CMDLINE("qemu\0-name"), label, uuid);
        ck_assert_str_eq(label, "qemu-1");
        memcpy(buf, "qemu\0-name\0unterminated", 23);
        parse(buf, 23, label, uuid);
        ck_assert_str_eq(label, "unterminated");
        /* Control characters are taken as they are: escaped wherever printed (escape.h). */
        parse(CMDLINE("qemu\0-name\0x\n<0>forged"), label, uuid);
        ck_assert_str_eq(label, "x\n<0>forged");
        /* Nothing at all. */
        parse("", 0, label, uuid);
        ck_assert_str_eq(label, "qemu-1");
}
END_TEST

START_TEST(test_pidfile) {
        ck_assert(qemu_identity_pidfile_matches("1234", 4, 1234));
        ck_assert(qemu_identity_pidfile_matches("1234\n", 5, 1234));
        ck_assert(!qemu_identity_pidfile_matches("1234", 4, 1235));
        ck_assert(!qemu_identity_pidfile_matches("12345", 5, 1234));
        ck_assert(!qemu_identity_pidfile_matches("1234x", 5, 1234));
        ck_assert(!qemu_identity_pidfile_matches("1234\n\n", 6, 1234));
        ck_assert(!qemu_identity_pidfile_matches("-1234", 5, -1234));
        ck_assert(!qemu_identity_pidfile_matches(" 1234", 5, 1234));
        ck_assert(!qemu_identity_pidfile_matches("", 0, 0));
        ck_assert(!qemu_identity_pidfile_matches("99999999999999999999", 20, 1234));
}
END_TEST

START_TEST(test_domain_names) {
        ck_assert(qemu_identity_domain_name_ok("vm-a"));
        ck_assert(!qemu_identity_domain_name_ok(""));
        ck_assert(!qemu_identity_domain_name_ok("../etc/passwd"));
        ck_assert(!qemu_identity_domain_name_ok(".hidden"));
        ck_assert(!qemu_identity_domain_name_ok("a/b"));
}
END_TEST

START_TEST(test_vm_key) {
        PeerIdentity id = { .kind = SHMEM_PEER_KIND_QEMU, .pid = 42 };
        char key[64];

        qemu_identity_vm_key(&id, key, sizeof(key));
        ck_assert_str_eq(key, "pid:42");
        strcpy(id.vm_uuid, "464cdf46-ca49-4757-aca9-81697d0283f7");
        qemu_identity_vm_key(&id, key, sizeof(key));
        ck_assert_str_eq(key, "uuid:464cdf46-ca49-4757-aca9-81697d0283f7");
}
END_TEST

int main(void) {
        Suite *s = suite_create("qemu-identity");
        TCase *tc = tcase_new("parsers");

        tcase_add_test(tc, test_cmdline_libvirt);
        tcase_add_test(tc, test_cmdline_by_hand);
        tcase_add_test(tc, test_cmdline_hostile);
        tcase_add_test(tc, test_pidfile);
        tcase_add_test(tc, test_domain_names);
        tcase_add_test(tc, test_vm_key);
        suite_add_tcase(s, tc);
        return run_suite(s);
}
