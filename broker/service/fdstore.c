/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdstore.h"
#include "log.h"
#include "macro.h"
#include "map.h"

#define LISTEN_FDS_START 3
#define ADOPTED_MAX 65536 /* what one start may hand over */

typedef struct Entry {
        char name[FDSTORE_NAME_MAX + 1];
        int fd;       /* the store's own copy */
        bool adopted; /* handed over at start: in the manager's store already */
        bool taken;   /* adopted, and rebuilt into an object */
} Entry;

struct FdStore {
        Notify *notify;
        Map *entries; /* name -> Entry */
};

const char *fdstore_key(char buf[FDSTORE_NAME_MAX + 1], const FdKey *key) {
        switch (key->kind) {
        case FD_MEMORY:
                snprintf(buf, FDSTORE_NAME_MAX + 1, "m/%s", key->region);
                break;
        case FD_VECTOR:
                snprintf(buf, FDSTORE_NAME_MAX + 1, "e/%s/%u/%u", key->region, key->index, key->vector);
                break;
        case FD_CONN:
                snprintf(buf, FDSTORE_NAME_MAX + 1, "c/%" PRIu64, key->id);
                break;
        case FD_ENDPOINT:
                /* "q/NAME" for the QEMU plugin, as images before the plugin table named it. */
                snprintf(buf, FDSTORE_NAME_MAX + 1, "%c/%s", key->plugin[0], key->region);
                break;
        case FD_CONTROL:
                snprintf(buf, FDSTORE_NAME_MAX + 1, "ctl");
                break;
        case FD_CONN_PART:
                snprintf(buf, FDSTORE_NAME_MAX + 1, "cp/%" PRIu64 "/%s", key->id, key->part);
                break;
        }
        return buf;
}

bool fdstore_inherited(void) {
        const char *pid = getenv("LISTEN_PID"), *count = getenv("LISTEN_FDS");

        return pid && count && strtoul(pid, NULL, 10) == (unsigned long) getpid() && strtoul(count, NULL, 10) > 0;
}

static Entry *entry_new(FdStore *s, const char *name, int fd) {
        Entry *e = calloc(1, sizeof(*e));

        if (!e)
                return NULL;
        snprintf(e->name, sizeof(e->name), "%s", name);
        e->fd = fd;
        if (map_put(s->entries, e->name, e) < 0)
                return mfree(e);
        return e;
}

static void entry_free(FdStore *s, Entry *e) {
        map_remove(s->entries, e->name);
        fd_close(e->fd);
        free(e);
}

/* Takes the fds of $LISTEN_FDS if they are for this process, with their names. */
static int fdstore_adopt(FdStore *s) {
        const char *names = getenv("LISTEN_FDNAMES");
        _cleanup_free_ char *copy = NULL;
        char *save = NULL, *name;
        unsigned long n;

        if (!fdstore_inherited())
                return 0;
        n = strtoul(getenv("LISTEN_FDS"), NULL, 10);
        copy = strdup(names ? names : "");
        if (!copy)
                return -ENOMEM;
        name = strtok_r(copy, ":", &save);
        for (unsigned long i = 0; i < n && i < ADOPTED_MAX; i++) {
                int fd = (int) (LISTEN_FDS_START + i);
                Entry *e;

                /* Inherited without O_CLOEXEC by design; ours never leak to children. */
                (void) fcntl(fd, F_SETFD, FD_CLOEXEC);
                if (!name || map_get(s->entries, name)) {
                        /* Unnamed, or a name twice: nothing will take it. */
                        log_notice("Closing stored fd %d '%s': %s", fd, name ? name : "",
                                   name ? "its name is stored twice" : "it has no name");
                        fd_close(fd);
                } else {
                        e = entry_new(s, name, fd);
                        if (!e)
                                return -ENOMEM;
                        e->adopted = true;
                }
                name = strtok_r(NULL, ":", &save);
        }
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
        return 0;
}

int fdstore_new(FdStore **ret, Notify *notify) {
        FdStore *s = calloc(1, sizeof(*s));
        int r;

        if (!s)
                return -ENOMEM;
        s->notify = notify;
        r = map_new(&s->entries, MAP_KEY_STRING);
        if (r >= 0)
                r = fdstore_adopt(s);
        if (r < 0) {
                fdstore_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

FdStore *fdstore_free(FdStore *s) {
        void *v;

        if (!s)
                return NULL;
        /* The map goes as a whole: no removal per entry. */
        for (size_t i = 0; map_next(s->entries, &i, &v);) {
                Entry *e = v;

                fd_close(e->fd);
                free(e);
        }
        map_free(s->entries);
        free(s);
        return NULL;
}

static void manager_store(FdStore *s, const char *name, int fd) {
        char text[FDSTORE_NAME_MAX + 32];

        snprintf(text, sizeof(text), "FDSTORE=1\nFDNAME=%s", name);
        (void) notify_send(s->notify, text, fd);
}

static void manager_remove(FdStore *s, const char *name) {
        char text[FDSTORE_NAME_MAX + 32];

        snprintf(text, sizeof(text), "FDSTOREREMOVE=1\nFDNAME=%s", name);
        (void) notify_send(s->notify, text, -1);
}

/* Whether two fds are the same object (one inode: a memfd, an eventfd, a socket). */
static bool same_object(int a, int b) {
        struct stat sa, sb;

        return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

void fdstore_put(FdStore *s, const char *name, int fd) {
        Entry *e = map_get(s->entries, name);
        int copy;

        /* What was handed over and is given back: the manager has it already. */
        if (e && same_object(e->fd, fd))
                return;
        copy = fcntl(fd, F_DUPFD_CLOEXEC, LISTEN_FDS_START);
        if (copy < 0) {
                log_error_errno(-errno, "Cannot keep fd '%s' for a restart: %m", name);
                return;
        }
        if (e) {
                manager_remove(s, name);
                fd_close(e->fd);
                e->fd = copy;
                e->adopted = e->taken = false;
        } else if (!entry_new(s, name, copy)) {
                log_error("Cannot keep fd '%s' for a restart: out of memory", name);
                fd_close(copy);
                return;
        }
        manager_store(s, name, copy);
}

void fdstore_remove(FdStore *s, const char *name) {
        Entry *e = map_get(s->entries, name);

        if (!e)
                return;
        /* First: @name may be e->name (fdstore_release_unclaimed()). */
        manager_remove(s, name);
        entry_free(s, e);
}

int fdstore_take(FdStore *s, const char *name) {
        Entry *e = map_get(s->entries, name);

        if (!e || !e->adopted)
                return -1;
        e->taken = true;
        return fcntl(e->fd, F_DUPFD_CLOEXEC, LISTEN_FDS_START);
}

void fdstore_foreach_adopted(FdStore *s, const char *prefix, void (*fn)(void *userdata, const char *name, int fd),
                             void *userdata) {
        size_t n = strlen(prefix);
        void *v;

        for (size_t i = 0; map_next(s->entries, &i, &v);) {
                Entry *e = v;

                if (e->adopted && strncmp(e->name, prefix, n) == 0)
                        fn(userdata, e->name, e->fd);
        }
}

void fdstore_release_unclaimed(FdStore *s) {
        _cleanup_free_ Entry **unclaimed = calloc(map_size(s->entries) + 1, sizeof(Entry *));
        size_t n = 0;
        void *v;

        if (!unclaimed) {
                log_error("Cannot release the stored fds nobody took: out of memory");
                return;
        }
        /* Collected first: a removal moves entries of the map. */
        for (size_t i = 0; map_next(s->entries, &i, &v);)
                if (((Entry *) v)->adopted && !((Entry *) v)->taken)
                        unclaimed[n++] = v;
        for (size_t i = 0; i < n; i++) {
                /* Old states are expected; anything else was not rebuilt. */
                if (strncmp(unclaimed[i]->name, FDSTORE_STATE_PREFIX, strlen(FDSTORE_STATE_PREFIX)) != 0)
                        log_notice("Closing stored fd '%s': nothing of the state uses it", unclaimed[i]->name);
                fdstore_remove(s, unclaimed[i]->name);
        }
}

size_t fdstore_size(FdStore *s) {
        return map_size(s->entries);
}

int fdstore_exec(FdStore *s, const char *exe, char *const *argv) {
        size_t n = map_size(s->entries), len = 0, k = 0;
        _cleanup_free_ int *high = NULL;
        _cleanup_free_ char *names = NULL;
        char count[32], pid[32];
        void *v;

        if (access(exe, X_OK) < 0)
                return -errno;
        high = calloc(n ? n : 1, sizeof(int));
        names = malloc(n * (FDSTORE_NAME_MAX + 1) + 1);
        if (!high || !names)
                return -ENOMEM;
        names[0] = 0;
        /*
         * Everything the new image must find goes to fds 3.. in order, as
         * systemd hands them over. First to numbers above that range (close-
         * on-exec, so they vanish in the exec), then down without the flag.
         * From here on the running image's fds are overwritten: no way back.
         */
        for (size_t i = 0; map_next(s->entries, &i, &v); k++) {
                Entry *e = v;

                high[k] = fcntl(e->fd, F_DUPFD_CLOEXEC, (int) (LISTEN_FDS_START + n));
                if (high[k] < 0) {
                        int r = -errno;

                        for (size_t j = 0; j < k; j++)
                                fd_close(high[j]);
                        return r;
                }
                len += (size_t) snprintf(names + len, FDSTORE_NAME_MAX + 2, "%s%s", k ? ":" : "", e->name);
        }
        for (size_t i = 0; i < n; i++)
                if (dup2(high[i], (int) (LISTEN_FDS_START + i)) < 0)
                        _exit(EXIT_FAILURE);
        snprintf(count, sizeof(count), "%zu", n);
        snprintf(pid, sizeof(pid), "%d", (int) getpid());
        setenv("LISTEN_FDS", count, 1);
        setenv("LISTEN_FDNAMES", names, 1);
        setenv("LISTEN_PID", pid, 1);
        execv(exe, argv);
        /* The fds are shuffled: this image cannot go on. Whoever started it restarts it. */
        log_error_errno(-errno, "Cannot execute '%s' for the upgrade, exiting: %m", exe);
        _exit(EXIT_FAILURE);
}
