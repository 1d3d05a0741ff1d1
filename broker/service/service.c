/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fdstore.h"
#include "log.h"
#include "macro.h"
#include "map.h"
#include "service.h"

/* A region that changed: if it was destroyed meanwhile, one of its name made since is a new one. */
typedef struct ChangedRegion {
        bool destroyed;
        char name[];
} ChangedRegion;

/* What changed since the state was last stored: appended to its log as one record at the next flush. */
typedef struct Changes {
        bool all;        /* more than the sets say (a reload, out of memory): a new snapshot */
        Map *regions;    /* name -> ChangedRegion (owned) */
        Map *conns;      /* id -> the id (owned) */
        ChangedRegion **names; /* the regions' entries, in the order they changed */
        uint64_t **ids;
        size_t n_names, n_ids, alloc_names, alloc_ids;
} Changes;

struct Service {
        Keeper keeper; /* first: service_of() */
        struct event_base *base;
        Registry *registry;
        Notify *notify;
        FdStore *store;
        ServiceConnDumper conns; /* the front ends' connections */
        struct event *ev_flush, *ev_watchdog;
        bool dirty, started;
        Changes changes;
        StateImage image;    /* the newest stored: "st/GENERATION" holds the same file */
        uint64_t generation; /* of the newest state stored */
        char status[192];    /* the last STATUS= sent */
        void (*status_fn)(void *userdata);
        void *status_userdata;
};

static Service *service_of(Keeper *k) {
        return (Service *) k;
}

/* --- what changed --------------------------------------------------------------- */

static void changes_clear(Changes *c) {
        for (size_t i = 0; i < c->n_names; i++)
                free(map_remove(c->regions, c->names[i]->name));
        for (size_t i = 0; i < c->n_ids; i++)
                free(map_remove(c->conns, c->ids[i]));
        c->n_names = c->n_ids = 0;
        c->all = false;
}

static void changes_done(Changes *c) {
        changes_clear(c);
        map_free(c->regions);
        map_free(c->conns);
        free(c->names);
        free(c->ids);
}

/* Appends @e to *@a (of *@n, room for *@alloc): 0 or -ENOMEM. */
static int grow_push(void ***a, size_t *n, size_t *alloc, void *e) {
        if (*n == *alloc) {
                size_t k = *alloc ? 2 * *alloc : 16;
                void **b = realloc(*a, k * sizeof(void *));

                if (!b)
                        return -ENOMEM;
                *a = b;
                *alloc = k;
        }
        (*a)[(*n)++] = e;
        return 0;
}

static void changes_add_region(Changes *c, const char *name, bool destroyed) {
        ChangedRegion *e;
        size_t n;

        if (c->all)
                return;
        e = map_get(c->regions, name);
        if (e) {
                e->destroyed = e->destroyed || destroyed;
                return;
        }
        n = strlen(name) + 1;
        e = malloc(sizeof(*e) + n);
        if (e) {
                e->destroyed = destroyed;
                memcpy(e->name, name, n);
        }
        if (!e || grow_push((void ***) &c->names, &c->n_names, &c->alloc_names, e) < 0) {
                free(e);
                c->all = true;
        } else if (map_put(c->regions, e->name, e) < 0) {
                c->n_names--;
                free(e);
                c->all = true;
        }
}

static void changes_add_conn(Changes *c, uint64_t id) {
        uint64_t *key;

        if (c->all || map_get(c->conns, &id))
                return;
        key = malloc(sizeof(*key));
        if (key)
                *key = id;
        if (!key || grow_push((void ***) &c->ids, &c->n_ids, &c->alloc_ids, key) < 0) {
                free(key);
                c->all = true;
        } else if (map_put(c->conns, key, key) < 0) {
                c->n_ids--;
                free(key);
                c->all = true;
        }
}

/* --- the state ---------------------------------------------------------------- */

/* Something a stored state holds changed: it is written before the loop next sleeps. */
static bool service_dirty(Service *s) {
        if (!notify_enabled(s->notify) || !s->started)
                return false;
        if (!s->dirty) {
                s->dirty = true;
                event_active(s->ev_flush, 0, 0);
        }
        return true;
}

/* Region @name changed, or went (@destroyed); NULL: any number of them did. */
static void service_region_changed(Service *s, const char *name, bool destroyed) {
        if (!service_dirty(s))
                return;
        if (name)
                changes_add_region(&s->changes, name, destroyed);
        else
                s->changes.all = true;
}

static void service_conn_changed(Service *s, uint64_t id) {
        if (service_dirty(s))
                changes_add_conn(&s->changes, id);
}

static int service_dump(Service *s, State *st) {
        int r = state_dump_registry(s->registry, st);

        if (r >= 0 && s->conns.all)
                r = s->conns.all(s->conns.userdata, st);
        return r;
}

/*
 * Writes a new image, a snapshot of everything, and stores it as
 * "st/GENERATION" in place of the last one; what changed is in it. 0 or -errno.
 */
static int service_store_state(Service *s) {
        State st = SHMEM__STATE__STATE__INIT;
        StateImage image;
        char name[FDSTORE_NAME_MAX + 1];
        int r;

        st.generation = s->generation + 1;
        r = service_dump(s, &st);
        if (r >= 0)
                r = state_image_new(&image, &st);
        state_build_done(&st);
        if (r < 0)
                return log_error_errno(r, "Cannot write the broker's state: %m");
        changes_clear(&s->changes);
        s->generation++;
        /* The new one first: a crash between the two leaves two, never none. */
        snprintf(name, sizeof(name), FDSTORE_STATE_PREFIX "%" PRIu64, s->generation);
        fdstore_put(s->store, name, image.fd);
        if (s->generation > 1) {
                snprintf(name, sizeof(name), FDSTORE_STATE_PREFIX "%" PRIu64, s->generation - 1);
                fdstore_remove(s->store, name);
        }
        state_image_close(&s->image);
        s->image = image;
        return 0;
}

/*
 * Appends what changed to the stored image as one record: each region that
 * changed with its peers, or its removal; each connection, or its removal;
 * the next connection id. Its cost is what changed, not what exists. 0 or -errno.
 */
static int service_store_changes(Service *s) {
        State c = SHMEM__STATE__STATE__INIT;
        int r = 0;

        c.generation = s->generation;
        c.next_conn_id = s->registry->next_conn_id;
        /* A removal comes before the puts of a record: a region made again goes to the end, as in the registry. */
        for (size_t i = 0; r >= 0 && i < s->changes.n_names; i++) {
                ChangedRegion *e = s->changes.names[i];
                Region *region = registry_find(s->registry, e->name);

                if (e->destroyed || !region)
                        r = state_add_removed_region(&c, e->name);
                if (r >= 0 && region)
                        r = state_dump_region(region, &c);
        }
        for (size_t i = 0; r >= 0 && i < s->changes.n_ids; i++) {
                size_t before = c.n_conns;
                uint64_t id = *s->changes.ids[i];

                r = s->conns.one ? s->conns.one(s->conns.userdata, id, &c) : 0;
                if (r >= 0 && c.n_conns == before)
                        r = state_add_removed_conn(&c, id);
        }
        if (r >= 0)
                r = state_image_append(&s->image, &c);
        state_build_done(&c);
        if (r < 0)
                log_warning_errno(r, "Cannot append to the broker's stored state, writing a new one: %m");
        return r;
}

void service_flush(Service *s) {
        if (!s->dirty)
                return;
        s->dirty = false;
        /* A log grown past its bound is replaced by a snapshot: O(1) a change, amortised. */
        if (s->image.fd >= 0 && !s->changes.all && service_store_changes(s) >= 0 && !state_image_full(&s->image)) {
                changes_clear(&s->changes);
                return;
        }
        (void) service_store_state(s);
}

static void service_on_flush(evutil_socket_t fd, short what, void *userdata) {
        service_flush(userdata);
}

typedef struct BestState {
        State *state;
} BestState;

static void consider_state(void *userdata, const char *name, int fd) {
        BestState *best = userdata;
        State *st = state_read(fd);

        if (!st)
                log_warning("Ignoring unreadable stored state '%s'", name);
        else if (!best->state || st->generation > best->state->generation) {
                state_free(best->state);
                best->state = st;
        } else
                state_free(st);
}

State *service_take_state(Service *s) {
        BestState best = {};

        fdstore_foreach_adopted(s->store, FDSTORE_STATE_PREFIX, consider_state, &best);
        if (best.state)
                s->generation = best.state->generation;
        return best.state;
}

void service_set_conn_dumper(Service *s, const ServiceConnDumper *d) {
        s->conns = *d;
}

/* --- the Keeper, and the registry's fds --------------------------------------- */

/* A connection's fds come and go with it, or with what it does (a factory's helper). */
static void keeper_conn_fd(Service *s, const FdKey *key) {
        if (key->kind == FD_CONN || key->kind == FD_CONN_PART)
                service_conn_changed(s, key->id);
}

static void keeper_keep_fd(Keeper *k, const FdKey *key, int fd) {
        char name[FDSTORE_NAME_MAX + 1];

        fdstore_put(service_of(k)->store, fdstore_key(name, key), fd);
        keeper_conn_fd(service_of(k), key);
}

static void keeper_drop_fd(Keeper *k, const FdKey *key) {
        char name[FDSTORE_NAME_MAX + 1];

        fdstore_remove(service_of(k)->store, fdstore_key(name, key));
        keeper_conn_fd(service_of(k), key);
}

static int keeper_take_fd(Keeper *k, const FdKey *key) {
        char name[FDSTORE_NAME_MAX + 1];

        return fdstore_take(service_of(k)->store, fdstore_key(name, key));
}

static void keeper_state_changed(Keeper *k, uint64_t id) {
        service_conn_changed(service_of(k), id);
}

static void service_observe_region(void *userdata, Region *r, RegionState state) {
        Service *s = userdata;
        FdKey key = { .kind = FD_MEMORY, .region = r->name };

        if (state == REGION_ALLOCATED)
                keeper_keep_fd(&s->keeper, &key, r->memfd);
        else if (state == REGION_FREED || state == REGION_DESTROYED)
                keeper_drop_fd(&s->keeper, &key);
        service_region_changed(s, r->name, state == REGION_DESTROYED);
}

static void service_observe_joined(void *userdata, Region *r, Peer *p) {
        Service *s = userdata;

        for (unsigned v = 0; v < r->vectors; v++)
                keeper_keep_fd(&s->keeper,
                               &(FdKey) { .kind = FD_VECTOR, .region = r->name, .index = p->index, .vector = v },
                               p->ev[v]);
        service_region_changed(s, r->name, false);
}

static void service_observe_left(void *userdata, Region *r, unsigned index, bool parked) {
        Service *s = userdata;

        for (unsigned v = 0; v < r->vectors; v++)
                keeper_drop_fd(&s->keeper,
                               &(FdKey) { .kind = FD_VECTOR, .region = r->name, .index = index, .vector = v });
        service_region_changed(s, r->name, false);
}

static void service_observe_changed(void *userdata, Region *r) {
        service_region_changed(userdata, r ? r->name : NULL, false);
}

/* Parked or back: its row stays stored; the state says which. */
static void service_observe_parking(void *userdata, Region *r, Peer *p) {
        service_region_changed(userdata, r->name, false);
}

/* --- readiness, status, watchdog ------------------------------------------------ */

void service_set_status_fn(Service *s, void (*fn)(void *userdata), void *userdata) {
        s->status_fn = fn;
        s->status_userdata = userdata;
}

static void service_say(Service *s, const char *status, bool ready) {
        char text[sizeof(s->status) + 64];

        if (!ready && strcmp(status, s->status) == 0)
                return;
        snprintf(s->status, sizeof(s->status), "%s", status);
        /* systemd's watchdog runs on across an exec: READY=1 of a new image pings too. */
        snprintf(text, sizeof(text), "%s%sSTATUS=%s", ready ? "READY=1\n" : "",
                 ready && s->ev_watchdog ? "WATCHDOG=1\n" : "", status);
        (void) notify_send(s->notify, text, -1);
}

void service_status(Service *s, const char *status) {
        service_say(s, status, false);
}

/* WATCHDOG=1 at half the interval systemd asked for; STATUS= on the way. */
static void service_on_watchdog(evutil_socket_t fd, short what, void *userdata) {
        Service *s = userdata;

        (void) notify_send(s->notify, "WATCHDOG=1", -1);
        if (s->status_fn)
                s->status_fn(s->status_userdata);
}

static int service_start_watchdog(Service *s) {
        unsigned long long interval = notify_watchdog_usec() / 2;
        struct timeval tv;

        if (interval == 0)
                return 0;
        tv.tv_sec = (time_t) (interval / 1000000);
        tv.tv_usec = (suseconds_t) (interval % 1000000);
        s->ev_watchdog = event_new(s->base, -1, EV_PERSIST, service_on_watchdog, s);
        if (!s->ev_watchdog || event_add(s->ev_watchdog, &tv) < 0)
                return -ENOMEM;
        return 0;
}

int service_started(Service *s, const char *status) {
        int r;

        s->started = true;
        /* The new state goes to the store before the old fds leave it. */
        if (notify_enabled(s->notify)) {
                s->dirty = false;
                r = service_store_state(s);
                if (r < 0)
                        return r;
        }
        fdstore_release_unclaimed(s->store);
        r = service_start_watchdog(s);
        if (r < 0)
                return r;
        service_say(s, status, true);
        return 0;
}

int service_exec(Service *s, const char *exe, char *const *argv) {
        int r;

        /* The exec's own state: whatever the manager's store holds, the new image reads this one. */
        s->dirty = false;
        r = service_store_state(s);
        if (r < 0)
                return r;
        /* The watchdog runs on across the exec: ping now, the new image pings with its READY=1. */
        if (s->ev_watchdog)
                (void) notify_send(s->notify, "WATCHDOG=1", -1);
        return fdstore_exec(s->store, exe, argv);
}

/* --- lifetime ----------------------------------------------------------------------- */

int service_new(Service **ret, struct event_base *base, Registry *reg) {
        Service *s = calloc(1, sizeof(*s));
        int r;

        if (!s)
                return -ENOMEM;
        s->keeper = (Keeper) { keeper_keep_fd, keeper_drop_fd, keeper_take_fd, keeper_state_changed };
        s->image = STATE_IMAGE_NONE;
        s->base = base;
        s->registry = reg;
        r = notify_new(&s->notify);
        if (r >= 0 && (map_new(&s->changes.regions, MAP_KEY_STRING) < 0 || map_new(&s->changes.conns, MAP_KEY_U64) < 0))
                r = -ENOMEM;
        if (r >= 0)
                r = fdstore_new(&s->store, s->notify);
        if (r >= 0) {
                s->ev_flush = event_new(base, -1, 0, service_on_flush, s);
                r = s->ev_flush ? 0 : -ENOMEM;
        }
        if (r >= 0)
                r = registry_observe(reg, &(RegistryObserver) { .region = service_observe_region,
                                                                .joined = service_observe_joined,
                                                                .left = service_observe_left,
                                                                .parked = service_observe_parking,
                                                                .unparked = service_observe_parking,
                                                                .changed = service_observe_changed,
                                                                .userdata = s });
        if (r < 0) {
                service_free(s, false);
                return r;
        }
        *ret = s;
        return 0;
}

Service *service_free(Service *s, bool clean) {
        char name[FDSTORE_NAME_MAX + 1];

        if (!s)
                return NULL;
        registry_unobserve(s->registry, s);
        if (clean && s->store) {
                (void) notify_send(s->notify, "STOPPING=1", -1);
                /* Everything else left the store as it closed; the state goes too. */
                if (s->generation > 0) {
                        snprintf(name, sizeof(name), FDSTORE_STATE_PREFIX "%" PRIu64, s->generation);
                        fdstore_remove(s->store, name);
                }
        }
        if (s->ev_flush)
                event_free(s->ev_flush);
        if (s->ev_watchdog)
                event_free(s->ev_watchdog);
        fdstore_free(s->store);
        notify_free(s->notify);
        state_image_close(&s->image);
        changes_done(&s->changes);
        free(s);
        return NULL;
}

Keeper *service_keeper(Service *s) {
        return &s->keeper;
}

size_t service_stored_fds(Service *s) {
        return fdstore_size(s->store);
}

bool service_managed(Service *s) {
        return notify_enabled(s->notify);
}
