/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "escape.h"
#include "macro.h"
#include "qemu-identity.h"

#define CMDLINE_MAX 16384 /* a libvirt QEMU's command line is a few KiB */

void qemu_identity_parse_cmdline(const char *buf, size_t n, char label[SHMEM_LABEL_MAX + 1],
                                 char uuid[PEER_UUID_MAX + 1]) {
        const char *end = buf + n;

        for (const char *p = buf; p < end;) {
                size_t len = strnlen(p, (size_t) (end - p));
                const char *v = p + len + 1;
                size_t vlen;

                if (v >= end)
                        break;
                /* The last argument may lack its NUL (a command line cut at CMDLINE_MAX):
                 * nothing below reads past vlen. */
                vlen = strnlen(v, (size_t) (end - v));
                if (len == 5 && memcmp(p, "-name", 5) == 0) {
                        const char *comma;

                        if (vlen >= 6 && memcmp(v, "guest=", 6) == 0)
                                v += 6, vlen -= 6;
                        /* QEMU's option syntax: the name ends at the first ',' */
                        comma = memchr(v, ',', vlen);
                        vlen = comma ? (size_t) (comma - v) : vlen;
                        /* A long name (libvirt's are UTF-8) is cut between characters. */
                        snprintf(label, SHMEM_LABEL_MAX + 1, "%.*s", (int) str_utf8_cut(v, vlen, SHMEM_LABEL_MAX),
                                 v);
                } else if (len == 5 && memcmp(p, "-uuid", 5) == 0 && vlen == PEER_UUID_MAX) {
                        char u[PEER_UUID_MAX + 1];

                        memcpy(u, v, PEER_UUID_MAX);
                        u[PEER_UUID_MAX] = 0;
                        if (strspn(u, "0123456789abcdefABCDEF-") == PEER_UUID_MAX)
                                memcpy(uuid, u, sizeof(u));
                }
                p += len + 1;
        }
}

bool qemu_identity_parse_monitor(const char *buf, size_t n, char *path, size_t size) {
        const char *end = buf + n;

        for (const char *p = buf; p < end;) {
                size_t len = strnlen(p, (size_t) (end - p));
                const char *v = p + len + 1;
                size_t vlen, plen;

                if (v >= end)
                        break;
                vlen = strnlen(v, (size_t) (end - v));
                if (len == 4 && memcmp(p, "-qmp", 4) == 0 && vlen > 5 && memcmp(v, "unix:", 5) == 0) {
                        v += 5, vlen -= 5;
                        plen = memchr(v, ',', vlen) ? (size_t) ((const char *) memchr(v, ',', vlen) - v) : vlen;
                        if (plen == 0 || plen >= size || v[0] != '/')
                                return false;
                        memcpy(path, v, plen);
                        path[plen] = 0;
                        return true;
                }
                p += len + 1;
        }
        return false;
}

bool qemu_identity_pidfile_matches(const char *buf, size_t n, pid_t pid) {
        char copy[32], *endp;
        long v;

        if (n == 0 || n >= sizeof(copy) || pid <= 0)
                return false;
        memcpy(copy, buf, n);
        copy[n] = 0;
        if (copy[0] < '0' || copy[0] > '9')
                return false;
        errno = 0;
        v = strtol(copy, &endp, 10);
        /* All @n bytes: a NUL in the file must not end the number early. */
        if (errno || (endp != copy + n && !(endp == copy + n - 1 && *endp == '\n')))
                return false;
        return v == (long) pid;
}

bool qemu_identity_domain_name_ok(const char *label) {
        return label[0] && label[0] != '.' && !strchr(label, '/');
}

/* Reads up to @size bytes of @path; -errno, or the count. */
static ssize_t read_file(const char *path, char *buf, size_t size, int flags) {
        ssize_t n;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | flags);

        if (fd < 0)
                return -errno;
        n = read(fd, buf, size);
        n = n < 0 ? -errno : n;
        close(fd);
        return n;
}

void qemu_identity_read(PeerIdentity *id, const char *libvirt_run_dir) {
        char path[4096 + SHMEM_LABEL_MAX + 8];
        _cleanup_free_ char *buf = malloc(CMDLINE_MAX);
        ssize_t n;

        snprintf(id->label, sizeof(id->label), "qemu-%d", (int) id->pid);
        id->vm_uuid[0] = 0;
        id->libvirt = false;
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int) id->pid);
        if (!buf || (n = read_file(path, buf, CMDLINE_MAX, 0)) <= 0)
                return;
        qemu_identity_parse_cmdline(buf, (size_t) n, id->label, id->vm_uuid);
        if (!libvirt_run_dir[0] || !qemu_identity_domain_name_ok(id->label))
                return;
        snprintf(path, sizeof(path), "%s/%s.pid", libvirt_run_dir, id->label);
        n = read_file(path, buf, 31, O_NOFOLLOW);
        id->libvirt = n > 0 && qemu_identity_pidfile_matches(buf, (size_t) n, id->pid);
}

bool qemu_identity_read_monitor(pid_t pid, char *path, size_t size) {
        char proc[64];
        _cleanup_free_ char *buf = malloc(CMDLINE_MAX);
        ssize_t n;

        snprintf(proc, sizeof(proc), "/proc/%d/cmdline", (int) pid);
        if (!buf || (n = read_file(proc, buf, CMDLINE_MAX, 0)) <= 0)
                return false;
        return qemu_identity_parse_monitor(buf, (size_t) n, path, size);
}
