/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The native protocol (proto/shmem.proto, docs/protocol.md) as a pure
 * dispatcher: a decoded Message and the caller's state in; encoded replies
 * and what became of the caller out. It calls the core (registry) and three
 * hooks (reload, upgrade, facts); it touches no socket and no event loop, so the
 * fuzzer drives it with bytes alone (tests/fuzz/fuzz-dispatch.c).
 * native/server.c is the socket server around it.
 *
 * Core results become wire statuses in one place: native_status() (over
 * front_status(), the table both front ends' wires share).
 */

#include <stdbool.h>
#include <stdint.h>

#include "msg.h"
#include "registry.h"
#include "status-info.h"

/* One connection as the protocol sees it. */
typedef struct NativeCaller {
        PeerIdentity id; /* the kernel's credentials; the label from Hello (before: "pid-N") */
        uint64_t conn_id;
        bool greeted, watching;
        Peer *peer;      /* at most one attachment per connection */
        void *userdata;  /* given to the peer's PeerOps (the server's connection) */
} NativeCaller;

/* What one dispatch produced. */
typedef struct NativeOut {
        FdMsg *head, *tail; /* encoded messages for the caller, in order */
        bool close;         /* close the connection once they are sent */
        bool changed;       /* the caller's stored state changed (greeted, watching, attached) */
} NativeOut;

void native_out_done(NativeOut *o);

typedef struct NativeHooks {
        /* Reload: re-read the configuration; 0, or -errno with a reason. */
        int (*reload)(void *userdata, const char **ret_error);
        /* Upgrade: re-execute soon (after the reply went out); 0 or -errno. */
        int (*upgrade)(void *userdata);
        /* BrokerStatus: what the daemon says of itself (unset: nothing, no connections counted). */
        void (*facts)(void *userdata, NativeFacts *ret);
        void *userdata;
} NativeHooks;

typedef struct Native {
        Registry *registry;
        const PeerOps *peer_ops; /* for the peers of native callers */
        NativeHooks hooks;
        uint64_t instance;       /* HelloReply.instance: new in every image */
} Native;

/* Fills @n; instance drawn at random. */
void native_init(Native *n, Registry *registry, const PeerOps *peer_ops, const NativeHooks *hooks);

/*
 * native_dispatch() - handle @m from @c; @decoded is msg_decode()'s result
 * (MSG_E_BAD_STRING: a string of @m was cut at a NUL or is not UTF-8).
 * Returns 0 with what to send in @out, or -EPROTO: the caller violated the
 * protocol (no Hello first, serial 0, a message only the broker sends) and
 * is dropped.
 */
int native_dispatch(Native *n, NativeCaller *c, const Message *m, int decoded, NativeOut *out);

/* The wire status of a core result (core/error.h). */
Shmem__Status native_status(int core);

/* Events for attached peers and watchers, encoded (NULL on failure: the caller drops the receiver). */
FdMsg *native_event_joined(Peer *self, Peer *other);
FdMsg *native_event_left(Peer *self, Peer *other);
FdMsg *native_event_watch_joined(Region *r, Peer *p);
FdMsg *native_event_watch_left(Region *r, unsigned index);
FdMsg *native_event_watch_state(Region *r, RegionState state);
