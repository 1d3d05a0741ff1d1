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
#include "service.h"

#define SERVICE_DUMPERS_MAX 8

struct Service {
        Keeper keeper; /* first: service_of() */
        struct event_base *base;
        Registry *registry;
        Notify *notify;
        FdStore *store;
        struct { ServiceDumpFn fn; void *userdata; } dumpers[SERVICE_DUMPERS_MAX];
        unsigned n_dumpers;
        struct event *ev_flush, *ev_watchdog;
        bool dirty, started;
        uint64_t generation; /* of the newest state stored */
        char status[192];    /* the last STATUS= sent */
        void (*status_fn)(void *userdata);
        void *status_userdata;
};

static Service *service_of(Keeper *k) {
        return (Service *) k;
}

/* --- the state ---------------------------------------------------------------- */

/* Something a stored state holds changed: it is written before the loop next sleeps. */
static void service_dirty(Service *s) {
        if (!notify_enabled(s->notify) || s->dirty || !s->started)
                return;
        s->dirty = true;
        event_active(s->ev_flush, 0, 0);
}

static int service_dump(Service *s, State *st) {
        int r = state_dump_registry(s->registry, st);

        for (unsigned i = 0; r >= 0 && i < s->n_dumpers; i++)
                r = s->dumpers[i].fn(s->dumpers[i].userdata, st);
        return r;
}

/* Writes a new state and stores it as "st/GENERATION"; returns its fd (borrowed from the store) or -errno. */
static int service_store_state(Service *s) {
        State st = SHMEM__STATE__STATE__INIT;
        char name[FDSTORE_NAME_MAX + 1];
        int fd, r;

        st.generation = s->generation + 1;
        r = service_dump(s, &st);
        fd = r < 0 ? r : state_write(&st);
        state_build_done(&st);
        if (fd < 0)
                return log_error_errno(fd, "Cannot write the broker's state: %m");
        s->generation++;
        /* The new one first: a crash between the two leaves two, never none. */
        snprintf(name, sizeof(name), FDSTORE_STATE_PREFIX "%" PRIu64, s->generation);
        fdstore_put(s->store, name, fd);
        fd_close(fd);
        if (s->generation > 1) {
                snprintf(name, sizeof(name), FDSTORE_STATE_PREFIX "%" PRIu64, s->generation - 1);
                fdstore_remove(s->store, name);
        }
        return 0;
}

void service_flush(Service *s) {
        if (!s->dirty)
                return;
        s->dirty = false;
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

int service_add_dumper(Service *s, ServiceDumpFn fn, void *userdata) {
        if (s->n_dumpers >= SERVICE_DUMPERS_MAX)
                return -E2BIG;
        s->dumpers[s->n_dumpers].fn = fn;
        s->dumpers[s->n_dumpers++].userdata = userdata;
        return 0;
}

/* --- the Keeper, and the registry's fds --------------------------------------- */

static void keeper_keep_fd(Keeper *k, const FdKey *key, int fd) {
        char name[FDSTORE_NAME_MAX + 1];

        fdstore_put(service_of(k)->store, fdstore_key(name, key), fd);
}

static void keeper_drop_fd(Keeper *k, const FdKey *key) {
        char name[FDSTORE_NAME_MAX + 1];

        fdstore_remove(service_of(k)->store, fdstore_key(name, key));
}

static int keeper_take_fd(Keeper *k, const FdKey *key) {
        char name[FDSTORE_NAME_MAX + 1];

        return fdstore_take(service_of(k)->store, fdstore_key(name, key));
}

static void keeper_state_changed(Keeper *k) {
        service_dirty(service_of(k));
}

static void service_observe_region(void *userdata, Region *r, RegionState state) {
        Service *s = userdata;
        FdKey key = { .kind = FD_MEMORY, .region = r->name };

        if (state == REGION_ALLOCATED)
                keeper_keep_fd(&s->keeper, &key, r->memfd);
        else if (state == REGION_FREED || state == REGION_DESTROYED)
                keeper_drop_fd(&s->keeper, &key);
        service_dirty(s);
}

static void service_observe_joined(void *userdata, Region *r, Peer *p) {
        Service *s = userdata;

        for (unsigned v = 0; v < r->vectors; v++)
                keeper_keep_fd(&s->keeper,
                               &(FdKey) { .kind = FD_VECTOR, .region = r->name, .index = p->index, .vector = v },
                               p->ev[v]);
        service_dirty(s);
}

static void service_observe_left(void *userdata, Region *r, unsigned index, bool parked) {
        Service *s = userdata;

        for (unsigned v = 0; v < r->vectors; v++)
                keeper_drop_fd(&s->keeper,
                               &(FdKey) { .kind = FD_VECTOR, .region = r->name, .index = index, .vector = v });
        service_dirty(s);
}

static void service_observe_changed(void *userdata) {
        service_dirty(userdata);
}

/* Parked or back: its row stays stored; the state says which. */
static void service_observe_parking(void *userdata, Region *r, Peer *p) {
        service_dirty(userdata);
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
        s->base = base;
        s->registry = reg;
        r = notify_new(&s->notify);
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
