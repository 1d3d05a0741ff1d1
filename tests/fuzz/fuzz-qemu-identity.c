/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Who a QEMU peer is (plugin-qemu/qemu-identity.h): the bytes of a
 * /proc/PID/cmdline through qemu_identity_parse_cmdline(), and the same
 * bytes as a libvirt pid file through qemu_identity_pidfile_matches(). The
 * input is used in place, unterminated, as read() leaves a buffer: a parser
 * that reads past @n is caught by ASan.
 *
 * Checked beyond the sanitizers: the label and the UUID are terminated
 * within their arrays, the label is UTF-8 if the arguments are, the UUID is
 * "" or 36 of [0-9a-fA-F-], and a pid file matches only the decimal pid,
 * with at most a newline after it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "escape.h"
#include "fuzz-util.h"
#include "qemu-identity.h"

#define PID 4242

/* Whether every NUL-separated argument of the @n bytes is UTF-8. */
static bool arguments_utf8(const uint8_t *p, size_t n) {
        for (size_t i = 0; i < n;) {
                const uint8_t *nul = memchr(p + i, 0, n - i);
                size_t len = nul ? (size_t) (nul - (p + i)) : n - i;

                if (!str_is_utf8((const char *) p + i, len))
                        return false;
                i += len + 1;
        }
        return true;
}

/* Whether @n bytes are decimal digits worth @pid, with at most a newline after them. */
static bool is_pid_text(const uint8_t *p, size_t n, long pid) {
        long v = 0;

        if (n > 0 && p[n - 1] == '\n')
                n--;
        if (n == 0)
                return false;
        for (size_t i = 0; i < n; i++) {
                if (p[i] < '0' || p[i] > '9' || v > pid)
                        return false;
                v = v * 10 + (p[i] - '0');
        }
        return v == pid;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char label[SHMEM_LABEL_MAX + 1] = "qemu-4242", uuid[PEER_UUID_MAX + 1] = "";
        PeerIdentity id = { .kind = SHMEM_PEER_KIND_QEMU, .pid = PID };
        char key[PEER_HOLDER_MAX];
        bool matches;

        qemu_identity_parse_cmdline((const char *) data, size, label, uuid);
        if (strnlen(label, sizeof(label)) > SHMEM_LABEL_MAX || strnlen(uuid, sizeof(uuid)) > PEER_UUID_MAX)
                abort();
        if (uuid[0] && (strlen(uuid) != PEER_UUID_MAX || strspn(uuid, "0123456789abcdefABCDEF-") != PEER_UUID_MAX))
                abort();
        /* A name cut to fit stays UTF-8 where it was (inspect and Joined send it). */
        if (arguments_utf8(data, size) && !str_is_utf8(label, strlen(label)))
                abort();
        memcpy(id.label, label, sizeof(label));
        memcpy(id.vm_uuid, uuid, sizeof(uuid));
        if (qemu_identity_domain_name_ok(id.label) && (id.label[0] == '.' || strchr(id.label, '/')))
                abort();
        if (strnlen(peer_identity_holder(&id, key), sizeof(key)) >= sizeof(key))
                abort();

        matches = qemu_identity_pidfile_matches((const char *) data, size, PID);
        if (matches != is_pid_text(data, size, PID) && (matches || size < 32))
                abort();
        return 0;
}
