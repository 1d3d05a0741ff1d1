/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdstore.h"
#include "log.h"
#include "macro.h"
#include "map.h"

#define LISTEN_FDS_START 3
#define ADOPTED_MAX 65536 /* what one start may hand over */
/* fdstore_exec()'s handover to the new image: the memfd that lists the fds, for that pid. */
#define HANDOVER_FD_ENV "SHMEM_HANDOVER_FD"
#define HANDOVER_PID_ENV "SHMEM_HANDOVER_PID"
#define HANDOVER_MAX (64u << 20) /* bytes of the list: ADOPTED_MAX names at most */

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

static bool for_this_pid(const char *pid) {
        return pid && strtoul(pid, NULL, 10) == (unsigned long) getpid();
}

static bool handed_over(void) {
        return for_this_pid(getenv(HANDOVER_PID_ENV)) && getenv(HANDOVER_FD_ENV);
}

bool fdstore_inherited(void) {
        const char *count = getenv("LISTEN_FDS");

        return handed_over() || (for_this_pid(getenv("LISTEN_PID")) && count && strtoul(count, NULL, 10) > 0);
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
static int adopt_listen_fds(FdStore *s) {
        const char *names = getenv("LISTEN_FDNAMES");
        _cleanup_free_ char *copy = NULL;
        char *save = NULL, *name;
        unsigned long n;

        if (!for_this_pid(getenv("LISTEN_PID")) || !getenv("LISTEN_FDS"))
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

typedef struct Handed {
        int fd;
        const char *name;
} Handed;

static int handed_by_fd(const void *a, const void *b) {
        int x = ((const Handed *) a)->fd, y = ((const Handed *) b)->fd;

        return (x > y) - (x < y);
}

/* Adopts the fds of fdstore_exec()'s list (@text, "FD NAME" lines): where they are, by name. */
static int adopt_list(FdStore *s, char *text, int list) {
        _cleanup_free_ Handed *h = NULL;
        size_t n = 0, max = 0;
        char *save = NULL;

        for (char *line = strtok_r(text, "\n", &save); line && n < ADOPTED_MAX; line = strtok_r(NULL, "\n", &save)) {
                char *end;
                long fd = strtol(line, &end, 10);

                if (end == line || *end != ' ' || fd < LISTEN_FDS_START || fd > INT_MAX || fd == list ||
                    !end[1] || strlen(end + 1) > FDSTORE_NAME_MAX) {
                        log_notice("Ignoring a malformed line of the upgrade's fd list");
                        continue;
                }
                if (n == max) {
                        Handed *bigger = reallocarray(h, max ? 2 * max : 256, sizeof(*h));

                        if (!bigger)
                                return -ENOMEM;
                        h = bigger;
                        max = max ? 2 * max : 256;
                }
                h[n++] = (Handed) { (int) fd, end + 1 };
        }
        qsort(h, n, sizeof(*h), handed_by_fd);
        for (size_t i = 0; i < n; i++) {
                /* An fd listed twice is one fd: the first name keeps it. */
                if (i > 0 && h[i].fd == h[i - 1].fd) {
                        log_notice("Ignoring stored fd %d '%s': its number is listed twice", h[i].fd, h[i].name);
                        continue;
                }
                if (fcntl(h[i].fd, F_SETFD, FD_CLOEXEC) < 0) {
                        log_notice("Ignoring stored fd %d '%s': it is not open", h[i].fd, h[i].name);
                        continue;
                }
                if (map_get(s->entries, h[i].name)) {
                        log_notice("Closing stored fd %d '%s': its name is stored twice", h[i].fd, h[i].name);
                        fd_close(h[i].fd);
                } else if (!entry_new(s, h[i].name, h[i].fd))
                        return -ENOMEM;
                else
                        ((Entry *) map_get(s->entries, h[i].name))->adopted = true;
        }
        return 0;
}

/* Takes the fds an upgrade (fdstore_exec()) left open for this process. */
static int adopt_handover(FdStore *s) {
        _cleanup_free_ char *text = NULL;
        struct stat st;
        long list;
        ssize_t n;
        int r;

        if (!handed_over())
                return 0;
        list = strtol(getenv(HANDOVER_FD_ENV), NULL, 10);
        unsetenv(HANDOVER_FD_ENV);
        unsetenv(HANDOVER_PID_ENV);
        if (list < LISTEN_FDS_START || list > INT_MAX || fstat((int) list, &st) < 0 || st.st_size > HANDOVER_MAX) {
                log_error("The upgrade's fd list (fd %ld) is missing or too large: nothing is taken over", list);
                return 0;
        }
        (void) fcntl((int) list, F_SETFD, FD_CLOEXEC);
        text = malloc((size_t) st.st_size + 1);
        if (!text) {
                fd_close((int) list);
                return -ENOMEM;
        }
        n = pread((int) list, text, (size_t) st.st_size, 0);
        r = n < 0 ? -errno : 0;
        fd_close((int) list);
        if (r < 0)
                return log_error_errno(r, "Cannot read the upgrade's fd list: %m");
        text[n] = 0;
        return adopt_list(s, text, (int) list);
}

int fdstore_new(FdStore **ret, Notify *notify) {
        FdStore *s = calloc(1, sizeof(*s));
        int r;

        if (!s)
                return -ENOMEM;
        s->notify = notify;
        r = map_new(&s->entries, MAP_KEY_STRING);
        if (r >= 0)
                r = adopt_handover(s);
        if (r >= 0)
                r = adopt_listen_fds(s);
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

/* Sets or clears close-on-exec on every stored fd and @list. */
static void set_cloexec_all(FdStore *s, int list, bool on) {
        void *v;

        for (size_t i = 0; map_next(s->entries, &i, &v);)
                (void) fcntl(((Entry *) v)->fd, F_SETFD, on ? FD_CLOEXEC : 0);
        (void) fcntl(list, F_SETFD, on ? FD_CLOEXEC : 0);
}

/* A sealed memfd of "FD NAME\n" lines, one per stored fd; -errno. */
static int handover_list(FdStore *s) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        int fd, r = 0;
        void *v;

        if (!f)
                return -ENOMEM;
        for (size_t i = 0; map_next(s->entries, &i, &v);)
                fprintf(f, "%d %s\n", ((Entry *) v)->fd, ((Entry *) v)->name);
        if (fclose(f) != 0)
                return -ENOMEM;
        fd = memfd_create("shmem-broker-handover", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return -errno;
        for (size_t done = 0; done < len && r == 0;) {
                ssize_t n = write(fd, buf + done, len - done);

                if (n < 0)
                        r = -errno;
                else
                        done += (size_t) n;
        }
        if (r == 0 && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
                r = -errno;
        if (r < 0) {
                fd_close(fd);
                return r;
        }
        return fd;
}

int fdstore_exec(FdStore *s, const char *exe, char *const *argv) {
        char list_fd[32], pid[32];
        int list, r;

        if (access(exe, X_OK) < 0)
                return -errno;
        /*
         * The stored fds stay where they are, as systemd's own re-execution
         * keeps its fd set: close-on-exec is cleared on them alone and their
         * numbers and names go in one memfd. Placing them at 3.. as $LISTEN_FDS
         * does would take a second copy of each (or overwrite the running
         * image's), and an exec that fails could not be undone.
         */
        list = handover_list(s);
        if (list < 0)
                return list;
        snprintf(list_fd, sizeof(list_fd), "%d", list);
        snprintf(pid, sizeof(pid), "%d", (int) getpid());
        if (setenv(HANDOVER_FD_ENV, list_fd, 1) < 0 || setenv(HANDOVER_PID_ENV, pid, 1) < 0) {
                r = -errno;
                goto fail;
        }
        set_cloexec_all(s, list, false);
        execv(exe, argv);
        r = -errno;
        /* Nothing was lost: the fds get their flag back and this image goes on. */
        set_cloexec_all(s, list, true);
fail:
        unsetenv(HANDOVER_FD_ENV);
        unsetenv(HANDOVER_PID_ENV);
        fd_close(list);
        return r;
}
