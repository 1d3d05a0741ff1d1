/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Who a QEMU peer is, from its process: the VM's name and UUID from
 * /proc/PID/cmdline, and libvirt's confirmation that it runs that VM as the
 * domain of that name (its pid file). The parsers are pure (bytes in), for
 * the fuzzer (tests/fuzz/fuzz-qemu-identity.c); qemu_identity_read() does
 * the file reads around them.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "identity.h" /* core */

/*
 * The name of "-name guest=X,..." or "-name X" (the last one given) into
 * @label (else left alone), and "-uuid U" (36 hex digits and dashes) into
 * @uuid, from @n bytes of NUL-separated arguments.
 */
void qemu_identity_parse_cmdline(const char *buf, size_t n, char label[SHMEM_LABEL_MAX + 1],
                                 char uuid[PEER_UUID_MAX + 1]);

/*
 * The QMP monitor a QEMU command line names: the path of the first
 * "-qmp unix:PATH[,server=on,wait=off...]" into @path (@size bytes). Returns
 * false if there is none or it does not fit. This is how the broker reaches a
 * QEMU that runs without libvirt, to plug devices into it (docs/factory.md).
 */
bool qemu_identity_parse_monitor(const char *buf, size_t n, char *path, size_t size);

/* qemu_identity_parse_monitor() of the command line of @pid. */
bool qemu_identity_read_monitor(pid_t pid, char *path, size_t size);

/* Whether @n bytes of a pid file hold @pid (decimal, optionally a newline after). */
bool qemu_identity_pidfile_matches(const char *buf, size_t n, pid_t pid);

/* Whether @label can be a libvirt domain's pid file name (no '/', not starting with '.'). */
bool qemu_identity_domain_name_ok(const char *label);

/*
 * qemu_identity_read() - complete @id (kind, pid, uid, gid set): label
 * "qemu-PID" unless the command line names the VM, its UUID, and whether
 * libvirt's pid file <libvirt_run_dir>/<label>.pid holds its pid ("" run
 * dir: never). A file read, not a libvirt call: libvirtd may be waiting for
 * this very QEMU to start, and the broker's loop never waits on another
 * daemon (docs/libvirt.md).
 */
void qemu_identity_read(PeerIdentity *id, const char *libvirt_run_dir);
