/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Registry: name -> Region, the limits and the per-user accounts they are
 * charged to, the policy (rules), the plugins that offer an endpoint per
 * region, and the observers told of every change (the native front end's
 * watchers, the service layer's fd store and state).
 *
 * Pure C over fds: no sockets, no event loop, no service manager, no VMM.
 * Results follow core/error.h: 0, a positive CORE_E_* with a reason in
 * *ret_error (valid until the next registry call), or a negative errno.
 */

#include <stdbool.h>
#include <stdint.h>

#include "resource-limits.h"
#include "map.h"
#include "plugin.h"
#include "policy.h"
#include "region.h"

#define REGISTRY_PLUGINS_MAX 4
#define REGISTRY_OBSERVERS_MAX 4

typedef enum RegionState {
        REGION_DECLARED,  /* known (endpoints exist), no memory yet */
        REGION_ALLOCATED, /* memory exists */
        REGION_FREED,     /* memory freed after the last peer left; still declared */
        REGION_DESTROYED, /* the name is going away (told before the Region is freed) */
} RegionState;

/*
 * Told after the fact, in the order the observers were added. Called from
 * inside registry functions: an observer must not change the registry.
 */
typedef struct RegistryObserver {
        void (*region)(void *userdata, Region *r, RegionState state);
        void (*joined)(void *userdata, Region *r, Peer *p);
        /* The peer at @index left (its row is closed, the control page says so);
         * @parked: it had been parked, and the observers were told then. */
        void (*left)(void *userdata, Region *r, unsigned index, bool parked);
        /* @p was parked (registry_park()) / is back. */
        void (*parked)(void *userdata, Region *r, Peer *p);
        void (*unparked)(void *userdata, Region *r, Peer *p);
        /* Something else a stored state holds of @r changed (flags, access, geometry);
         * @r NULL: of any number of regions (a reload, the end of a restore). */
        void (*changed)(void *userdata, Region *r);
        void *userdata;
} RegistryObserver;

/* A region the configuration (or shmemctl create) declares. */
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

typedef enum AttachMode {
        ATTACH_CREATE,    /* attach, creating the region if it does not exist */
        ATTACH_FIND,      /* attach only if it exists */
        ATTACH_EXCLUSIVE, /* create only */
} AttachMode;

/* One attach, as a front end asks it. */
typedef struct AttachRequest {
        const char *name;   /* as the peer names it: rules apply to it, then the subst prefix */
        AttachMode mode;
        uint64_t size;      /* data bytes if this creates the region */
        const PeerIdentity *id;
        const PeerOps *ops;
        void *userdata;
        uint64_t conn_id;   /* the front end's connection (registry_new_conn_id()) */
        /* @name is the final name of a region registry_prepare() held for this
         * peer: the rules and the subst prefix were applied then. */
        bool prepared;
} AttachRequest;

/* What one user (host peers) or one VM has made the broker spend, for the per-user limits. */
typedef struct Account {
        char key[PEER_HOLDER_MAX]; /* peer_identity_holder() */
        unsigned regions;   /* regions it created that exist */
        uint64_t bytes;     /* allocated memory of those */
} Account;

typedef struct Registry {
        Limits limits;
        Region **regions;   /* in creation order, as list shows them; Region.slot indexes it */
        uint64_t next_seq;  /* Region.seq of the next one, from 1 */
        size_t n_regions, n_regions_alloc;
        Map *by_name;       /* name -> Region */
        Map *by_conn;       /* conn_id -> Peer */
        Map *accounts;      /* holder key -> Account */
        uint64_t allocated_bytes;
        uint64_t fds;       /* held by the regions and their peers (the sum of Region.fds) and plugins */
        Plugin *plugins[REGISTRY_PLUGINS_MAX]; /* borrowed */
        unsigned n_plugins;
        RegistryObserver observers[REGISTRY_OBSERVERS_MAX];
        unsigned n_observers;
        Policy policy;
        uint64_t next_conn_id; /* ids of front-end connections, unique across restarts */
        char *closed;          /* set: every new attach is refused, for this reason */
        char error_buf[256];
} Registry;

int registry_new(Registry **ret, const Limits *limits);
/* Evicts every peer and forgets every region, then frees. */
Registry *registry_free(Registry *reg);

/* Adds @p (borrowed: it must outlive the registry, or be removed) and offers it every region there is. */
int registry_add_plugin(Registry *reg, Plugin *p);
void registry_remove_plugin(Registry *reg, Plugin *p);

int registry_observe(Registry *reg, const RegistryObserver *o);
void registry_unobserve(Registry *reg, void *userdata);

Region *registry_find(Registry *reg, const char *name);

/* The endpoint of @r that plugin @plugin offers (QEMU: its socket path); 0 or -ENOENT. */
int registry_endpoint(Registry *reg, const Region *r, const char *plugin, char *buf, size_t size);

/*
 * registry_declare() - make @d->name known ahead of any attach (configuration,
 * shmemctl create). Persistent regions get their memory at once.
 * Returns 0 with *ret (may be NULL), a CORE_E_* (ILLEGAL_NAME, EXISTS,
 * BAD_SIZE, LIMIT, INVALID, NOMEM) or a negative errno.
 */
int registry_declare(Registry *reg, const RegionDecl *d, Region **ret, const char **ret_error);

/*
 * registry_attach() - attach a peer per @req: the rules on the name it uses,
 * its subst prefix, then the region found or created under the limits (and,
 * for a host peer, the region's owner/group/mode).
 * Returns 0 with *ret (and *ret_created), a CORE_E_*, or a negative errno.
 */
int registry_attach(Registry *reg, const AttachRequest *req, Peer **ret, bool *ret_created,
                    const char **ret_error);

/* The peer leaves; an empty region is freed or forgotten per its kind. */
void registry_detach(Registry *reg, Peer *p);

/*
 * registry_prepare() - everything registry_attach() would decide for @req,
 * short of attaching: the rules, the subst prefix, the region found or
 * created (with its memory) under the limits, a free index for the peer. On
 * success the region is held (it stays, even empty, until
 * registry_unhold()) with its final name in *ret for the attach to come
 * (AttachRequest.prepared). The guest factory prepares, plugs a device into
 * the VM, and the VM's QEMU then attaches. Returns as registry_attach().
 */
int registry_prepare(Registry *reg, const AttachRequest *req, Region **ret, bool *ret_created, const char **ret_error);
void registry_unhold(Registry *reg, Region *r);
/* Holds @r again for a prepared attach that a restarted broker takes over (service/state.h). */
void registry_hold(Registry *reg, Region *r);

/*
 * registry_park() - @p leaves the membership, keeping its index and fds
 * (region_park_peer()); registry_unpark() brings it back. The guest factory
 * parks a VM that detaches, because its QEMU cannot safely lose the device
 * (docs/factory.md).
 */
void registry_park(Registry *reg, Peer *p);
void registry_unpark(Registry *reg, Peer *p);

/* Forgets @name; CORE_E_BUSY if peers are attached and !@force (then they are evicted). */
int registry_destroy(Registry *reg, const char *name, bool force, const char **ret_error);

/*
 * registry_reconfigure() - apply a reloaded configuration without disturbing
 * peers it admits: new limits (existing regions and peers stay even if now
 * over them), rules, declarations. A declared region whose size or max_peers
 * changed takes them when it has no memory, else when its memory is freed
 * (Region.declared_*). A region whose owner, group, mode or the rules no
 * longer admit an attached peer is cut: every peer is evicted and its memory
 * released, so that nothing written after the reload reaches memory the
 * refused peer still maps. Regions no longer declared are forgotten when
 * unused. Returns how many declarations could not be applied (each logged),
 * or a negative errno (nothing changed).
 */
int registry_reconfigure(Registry *reg, const Limits *limits, const AccessRule *rules, size_t n_rules,
                         const RegionDecl *decls, size_t n);

/*
 * registry_set_closed() - refuse every new attach with @reason (a broker whose
 * configuration was refused at a restart fails closed: its rules are
 * unknown), or admit them again (NULL). Attached peers stay. 0 or -ENOMEM.
 */
int registry_set_closed(Registry *reg, const char *reason);

/*
 * registry_hold_fds() - @n fds a plugin holds beside the regions (the guest
 * factory's pages, eventfds and hotplug helpers), charged to the fd budget
 * (Limits.max_fds) as the regions' are, if they fit with @more beside them
 * (fds that will be asked for soon: a peer's row). Returns 0, or
 * CORE_E_LIMIT with the reason in *ret_error and nothing held. @ret_error
 * NULL: held whatever the budget says (fds that exist already, taken back
 * after a restart). registry_release_fds() gives @n back.
 */
int registry_hold_fds(Registry *reg, unsigned n, unsigned more, const char **ret_error);
void registry_release_fds(Registry *reg, unsigned n);

/* A new id for a front-end connection (the stored state names connections by it). */
uint64_t registry_new_conn_id(Registry *reg);

/* The attached peer whose front-end connection has @conn_id, or NULL. */
Peer *registry_find_peer_by_conn(Registry *reg, uint64_t conn_id);

/* The account of @holder (peer_identity_holder()), or NULL if it has nothing. */
const Account *registry_account(Registry *reg, const char *holder);

/*
 * Adopting a stored state after a restart (service/state.c): the memory and
 * the peers exist already, the control page holds their truth, so nothing is
 * written to it and no peer is told anything.
 */
typedef struct RegionAdoption {
        RegionDecl decl;      /* geometry, mode, backend */
        uint64_t data_size, region_size;
        bool declared, from_config;
        uint64_t epoch, active;
        uint32_t next_doorbell_id;
        const char *creator;  /* holder key, or "" */
        int memfd;            /* consumed; -1: no memory */
} RegionAdoption;

/* Rebuilds a region; CORE_E_* or -errno if it cannot come back (@a->memfd closed then). */
int registry_adopt_region(Registry *reg, RegionAdoption *a, Region **ret, const char **ret_error);

/* Puts a peer back with its row @ev (consumed, also on failure), without PeerOps until its front end rebinds it. */
int registry_adopt_peer(Registry *reg, Region *r, unsigned index, uint32_t doorbell_id, const PeerIdentity *id,
                        bool parked, uint64_t conn_id, int *ev, Peer **ret);

/* Peers no front end rebound leave now, as if their connection had closed; stale control pages are fixed. */
void registry_adopt_finish(Registry *reg);

/* Evicts every peer and forgets every region (shutdown). */
void registry_clear(Registry *reg);
