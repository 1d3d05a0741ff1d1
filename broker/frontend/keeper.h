/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Keeper: what a front end tells the service layer about the fds it owns, so
 * that a restarted or upgraded broker gets them back (docs/persistence.md):
 * QEMU never reconnects, so its socket must outlive the broker. Implemented
 * by service/service.c over the fd store; a NULL Keeper keeps nothing (tests,
 * fuzzing, a broker without a service manager).
 *
 * An fd is named by an FdKey; service/fdstore.c is the one place that spells
 * keys as fd store names.
 */

#include <stdint.h>

typedef enum FdKind {
        FD_MEMORY,   /* a region's memfd: .region */
        FD_VECTOR,   /* an eventfd of a peer's row: .region, .index, .vector */
        FD_CONN,     /* a front end's connected socket: .id (registry_new_conn_id()) */
        FD_ENDPOINT, /* a plugin's listening socket for a region: .plugin, .region */
        FD_CONTROL,  /* the native control socket */
        FD_CONN_PART, /* another fd a front end keeps with one of its connections: .id, .part (its name) */
} FdKind;

typedef struct FdKey {
        FdKind kind;
        const char *region;
        const char *plugin;
        uint64_t id;
        unsigned index, vector;
        const char *part; /* FD_CONN_PART: [a-z-]+, the front end's name for it */
} FdKey;

typedef struct Keeper Keeper;
struct Keeper {
        /* Keeps a copy of @fd (borrowed) under @key, replacing what was there. */
        void (*keep)(Keeper *k, const FdKey *key, int fd);
        /* Forgets @key (its fd is about to be closed). */
        void (*drop)(Keeper *k, const FdKey *key);
        /* A copy of the fd handed over under @key at start (the caller owns it), or -1. */
        int (*take)(Keeper *k, const FdKey *key);
        /* Something the front end stores of its connection @id changed (or it went: the
         * service then finds no such connection). Keeping or dropping an FD_CONN says so too. */
        void (*changed)(Keeper *k, uint64_t id);
};

static inline void keeper_keep(Keeper *k, const FdKey *key, int fd) {
        if (k)
                k->keep(k, key, fd);
}

static inline void keeper_drop(Keeper *k, const FdKey *key) {
        if (k)
                k->drop(k, key);
}

static inline int keeper_take(Keeper *k, const FdKey *key) {
        return k ? k->take(k, key) : -1;
}

static inline void keeper_changed(Keeper *k, uint64_t id) {
        if (k)
                k->changed(k, id);
}
