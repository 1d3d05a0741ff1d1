/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Registry: name -> Region, the limits, and the plugins that offer endpoints
 * per region. All results that a client should see are shmem.Status numbers
 * (positive); negative values are errnos.
 */

#include <stdbool.h>
#include <stdint.h>

#include "persist.h"
#include "plugin.h"
#include "region.h"
#include "shmem.pb-c.h"

#define REGISTRY_PLUGINS_MAX 4

typedef struct Limits {
        unsigned max_regions;
        uint64_t max_total_bytes;  /* sum of allocated region sizes */
        uint64_t max_region_bytes; /* one region's memfd size */
        unsigned default_max_peers;
        unsigned max_connections;  /* per front end */
        unsigned max_regions_per_uid; /* created by host attaches of one non-root uid */
        size_t max_queued_bytes;   /* per connection */
} Limits;

#define LIMITS_DEFAULT                                                                             \
        {                                                                                          \
                .max_regions = 256, .max_total_bytes = UINT64_C(16) << 30,                        \
                .max_region_bytes = UINT64_C(1) << 30, .default_max_peers = SHMEM_PEERS_DEFAULT,   \
                .max_connections = 1024, .max_queued_bytes = 256 * 1024,                          \
                .max_regions_per_uid = 64,                                                         \
        }

/* A region the configuration declares. */
typedef struct RegionDecl {
        const char *name;
        uint64_t size;
        unsigned max_peers;   /* 0: the default */
        bool persistent;
        unsigned signal_mode; /* SHMEM_SIGNAL_MODE_*: 0 is shmem */
        unsigned vectors;     /* compat mode only: vectors passed through (0: 1, as contrib's server) */
        uid_t owner;          /* 0 = root */
        gid_t group;          /* 0 = root */
        unsigned mode;        /* host peers' access, 0: 0666 */
        const char *pins;     /* "NAME:INDEX ..." pinned indices, or NULL */
        const char *backend;  /* region_set_backend(); NULL: memfd */
} RegionDecl;

/*
 * Access rules per VM or client, QNX vdev-shmem semantics: the rules of every
 * [client NAME] or [domain NAME] section whose NAME (a glob) matches the
 * peer's name (for [domain], a QEMU peer's name or UUID), in file
 * order; the first whose glob matches the region name decides; if none does,
 * the last rule's kind decides the opposite ("allow" implies a final
 * "deny *", "deny" a final "allow *"). No rule: allowed.
 */
typedef struct AccessRule {
        const char *client; /* glob on the VM's -name or the client's label */
        const char *glob;   /* on the region name; for subst, the prefix */
        bool allow;
        bool subst;         /* QNX subst: the names this peer uses get the prefix glob */
        bool domain;        /* [domain NAME]: QEMU peers only; NAME also matches the VM's UUID */
        unsigned line;      /* for the log: which rule refused whom */
} AccessRule;

/* Watchers of the whole registry (shmemctl watch): told after the fact. */
typedef struct RegistryObserver {
        void (*state)(void *userdata, Region *r, Shmem__RegionState state);
        void (*joined)(void *userdata, Region *r, Peer *p);
        void (*left)(void *userdata, Region *r, unsigned index);
        void *userdata;
} RegistryObserver;

struct Registry {
        struct event_base *base;
        Limits limits;
        char *rundir;
        Region **regions;
        unsigned n_regions;
        uint64_t allocated_bytes;
        Plugin *plugins[REGISTRY_PLUGINS_MAX];
        unsigned n_plugins;
        RegistryObserver observer;
        Persist *persist;     /* NULL: nothing survives a restart (tests, no service manager) */
        uint64_t next_conn_id; /* ids of front-end connections, unique across restarts */
        char error_buf[256]; /* for *ret_error texts that carry numbers; valid until the next call */
        AccessRule *rules;   /* owned copies */
        size_t n_rules;
};

typedef enum AttachMode {
        ATTACH_CREATE = SHMEM__ATTACH_MODE__CREATE,
        ATTACH_FIND = SHMEM__ATTACH_MODE__FIND,
        ATTACH_EXCLUSIVE = SHMEM__ATTACH_MODE__EXCLUSIVE,
} AttachMode;

int registry_new(Registry **ret, struct event_base *base, const Limits *limits, const char *rundir);
Registry *registry_free(Registry *reg);

/* Adds @p (consumed, also on failure) and starts it. */
int registry_add_plugin(Registry *reg, Plugin *p);
/* The slot of @p in Region.plugin_data. */
unsigned registry_plugin_slot(Registry *reg, Plugin *p);

Region *registry_find(Registry *reg, const char *name);

/*
 * registry_declare() - make @name known ahead of any attach (configuration,
 * shmemctl create). Persistent regions get their memory at once.
 * Returns 0 with *ret, or a shmem.Status (ILLEGAL_NAME, EXISTS, BAD_SIZE,
 * LIMIT), or a negative errno. @ret_error gets a human-readable reason.
 */
int registry_declare(Registry *reg, const RegionDecl *d, Region **ret, const char **ret_error);

/*
 * registry_attach() - attach a peer to @name per @mode, creating the region
 * if allowed. Returns 0 with *ret (and *ret_created), a shmem.Status, or a
 * negative errno; @ret_error as above.
 */
int registry_attach(Registry *reg, const char *name, AttachMode mode, uint64_t size,
                    const PeerIdentity *id, const PeerOps *ops, void *userdata, Peer **ret,
                    bool *ret_created, const char **ret_error);

/* The peer leaves; an empty region is freed or forgotten per its kind. */
void registry_detach(Registry *reg, Peer *p);

/* Forgets @name; BUSY if peers are attached and !@force (then they are evicted). */
int registry_destroy(Registry *reg, const char *name, bool force, const char **ret_error);

/*
 * registry_reconfigure() - apply a reloaded configuration without disturbing
 * attached peers: new limits (existing regions and peers stay even if now over
 * them), new declarations; a declared region whose size or max_peers changed
 * takes the new values when it has no memory, else keeps its own until its
 * memory is freed; regions the configuration no longer declares are forgotten
 * when unused (now, or when their last peer leaves). Returns how many
 * declarations could not be applied (each logged).
 */
unsigned registry_reconfigure(Registry *reg, const Limits *limits, const RegionDecl *decls, size_t n);

/* Replaces the access rules (copied). */
int registry_set_rules(Registry *reg, const AccessRule *rules, size_t n);

/*
 * Whether the peer @id may attach to @region by the rules; on a refusal,
 * @ret_error says which rule (a text valid until the next call).
 */
bool registry_rules_allow(Registry *reg, const PeerIdentity *id, const char *region, const char **ret_error);

/*
 * registry_subst_name() - the region name a peer means by @name: with a
 * "subst = PREFIX" for it, PREFIX + @name (QNX vdev-shmem's namespacing).
 * Returns false if the result does not fit a name.
 */
bool registry_subst_name(Registry *reg, const PeerIdentity *id, const char *name, char ret[SHMEM_NAME_MAX + 1]);

/* A new id for a front-end connection (the stored state names connections by it). */
static inline uint64_t registry_new_conn_id(Registry *reg) {
        return ++reg->next_conn_id;
}

/* The attached peer whose front-end connection has @conn_id, or NULL. */
Peer *registry_find_peer_by_conn(Registry *reg, uint64_t conn_id);

/* Adds the regions and their peers to a state being dumped (persist.h). */
int registry_dump(Registry *reg, State *s);

/*
 * registry_restore() - rebuild regions and peers from @s and the fds stored
 * with it, before the front ends rebind their connections. Peers come back
 * with no PeerOps; registry_restore_finish() detaches those no front end took.
 */
int registry_restore(Registry *reg, const State *s);
void registry_restore_finish(Registry *reg);

/* Evicts every peer and forgets every region (shutdown). */
void registry_clear(Registry *reg);
