/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * PeerIdentity: who a peer is, as its front end learned it from the kernel
 * (SO_PEERCRED, SO_PEERGROUPS) and, for a VM, from its QEMU process
 * (plugin-qemu/identity.h). Never from anything the peer writes into a
 * region: the broker trusts no page.
 */

#include <stdbool.h>
#include <sys/types.h>

#include "log.h"
#include "region-layout.h"

#define PEER_UUID_MAX 36     /* a VM's UUID as text */
#define PEER_GROUPS_MAX 32   /* supplementary groups judged for a host peer */

typedef struct PeerIdentity {
        unsigned kind; /* SHMEM_PEER_KIND_*: host or qemu */
        /* A host peer's label from its Hello (its own choice: never used to
         * authenticate), or a VM's -name. Unescaped: print with str_escape(). */
        char label[SHMEM_LABEL_MAX + 1];
        char vm_uuid[PEER_UUID_MAX + 1]; /* QEMU's -uuid (libvirt always passes one), or "" */
        bool libvirt;     /* libvirt's pid file for the domain named label holds pid */
        pid_t pid;
        uid_t uid;
        gid_t gid;
        gid_t groups[PEER_GROUPS_MAX]; /* supplementary groups, host peers only */
        unsigned n_groups;
} PeerIdentity;

/*
 * The journal fields of the peer @id, inside a LogFields initializer: its pid
 * and uid, and a host peer's label as PEER_LABEL, a VM's name and UUID as
 * VM_NAME and VM_UUID, unescaped (log.h: binary-safe fields).
 */
#define LOG_FIELDS_PEER(id)                                                                       \
        .has_peer = true, .peer_pid = (id)->pid, .peer_uid = (id)->uid,                           \
        .peer_label = (id)->kind == SHMEM_PEER_KIND_HOST ? (id)->label : NULL,                    \
        .vm_name = (id)->kind != SHMEM_PEER_KIND_HOST && (id)->label[0] ? (id)->label : NULL,     \
        .vm_uuid = (id)->vm_uuid[0] ? (id)->vm_uuid : NULL

/* Whether @name names the peer: its label, or a VM's UUID (libvirt's domain UUID). */
bool peer_identity_is(const PeerIdentity *id, const char *name);

/* Whether the peer is in group @gid (primary or supplementary). */
bool peer_identity_in_group(const PeerIdentity *id, gid_t gid);

#define PEER_HOLDER_MAX 48 /* "vm:uuid:" and a UUID, "vm:pid:N", "uid:N" */

/*
 * peer_identity_holder() - who a peer's resources are counted for, as a key:
 * "uid:N" for a host peer (the user), "vm:uuid:U" for a QEMU peer with a
 * UUID, else "vm:pid:N" (one VM, whatever user runs its QEMU: libvirt runs
 * every VM as libvirt-qemu). Returns @buf.
 */
const char *peer_identity_holder(const PeerIdentity *id, char buf[PEER_HOLDER_MAX]);
