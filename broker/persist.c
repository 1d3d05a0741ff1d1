/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fdmsg.h"
#include "log.h"
#include "macro.h"
#include "persist.h"

#define LISTEN_FDS_START 3
#define FDNAME_MAX 255     /* systemd's limit */
#define ADOPTED_MAX 65536  /* what one start may hand over */

typedef struct Adopted {
        char *name;
        int fd;
} Adopted;

typedef struct Named {
        char name[FDNAME_MAX + 1];
        int fd; /* borrowed from the object that owns it */
} Named;

struct Persist {
        int notify_fd; /* connected to $NOTIFY_SOCKET; -1 without one */
        /* What is stored now, by name (state excluded): what an upgrade hands over. */
        Named *live;
        size_t n_live, n_live_alloc;
        struct event *ev_write;
        bool dirty, warned;
        uint64_t generation;
        PersistDumpFn dump;
        void *dump_userdata;
        Adopted *adopted;
        size_t n_adopted;
};

static int notify_connect(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t n = strlen(path);
        socklen_t len;
        _cleanup_close_ int fd = -1;

        if (n == 0 || n >= sizeof(sa.sun_path) || (path[0] != '/' && path[0] != '@'))
                return -EINVAL;
        memcpy(sa.sun_path, path, n);
        if (path[0] == '@')
                sa.sun_path[0] = 0; /* abstract namespace */
        len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/'));
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, len) < 0)
                return -errno;
        return TAKE_FD(fd);
}

bool persist_inherited(void) {
        const char *pid = getenv("LISTEN_PID"), *count = getenv("LISTEN_FDS");

        return pid && count && strtoul(pid, NULL, 10) == (unsigned long) getpid() && strtoul(count, NULL, 10) > 0;
}

/* Takes the fds of $LISTEN_FDS if they are for this process, with their names. */
static int persist_adopt(Persist *p) {
        const char *names = getenv("LISTEN_FDNAMES");
        _cleanup_free_ char *copy = NULL;
        char *save = NULL, *name;
        unsigned long n;

        if (!persist_inherited())
                return 0;
        n = strtoul(getenv("LISTEN_FDS"), NULL, 10);
        if (n > ADOPTED_MAX)
                return 0;
        p->adopted = calloc(n, sizeof(Adopted));
        copy = strdup(names ? names : "");
        if (!p->adopted || !copy)
                return -ENOMEM;
        name = strtok_r(copy, ":", &save);
        for (unsigned long i = 0; i < n; i++) {
                int fd = (int) (LISTEN_FDS_START + i);

                /* Inherited without O_CLOEXEC by design; ours never leak to children. */
                (void) fcntl(fd, F_SETFD, FD_CLOEXEC);
                p->adopted[i].fd = fd;
                p->adopted[i].name = strdup(name ? name : "unknown");
                if (!p->adopted[i].name)
                        return -ENOMEM;
                name = strtok_r(NULL, ":", &save);
                p->n_adopted++;
        }
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
        return 0;
}

static void persist_on_write(evutil_socket_t fd, short what, void *userdata) {
        persist_flush(userdata);
}

int persist_new(Persist **ret, struct event_base *base) {
        const char *path = getenv("NOTIFY_SOCKET");
        Persist *p;
        int r;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->notify_fd = -1;
        if (path) {
                p->notify_fd = notify_connect(path);
                if (p->notify_fd < 0) {
                        r = log_error_errno(p->notify_fd, "Cannot reach $NOTIFY_SOCKET '%s': %m", path);
                        persist_free(p);
                        return r;
                }
        }
        p->ev_write = event_new(base, -1, 0, persist_on_write, p);
        r = p->ev_write ? persist_adopt(p) : -ENOMEM;
        if (r < 0) {
                persist_free(p);
                return r;
        }
        *ret = p;
        return 0;
}

Persist *persist_free(Persist *p) {
        if (!p)
                return NULL;
        /* Our copies only: what the store holds stays for the next start. */
        for (size_t i = 0; i < p->n_adopted; i++) {
                fd_close(p->adopted[i].fd);
                free(p->adopted[i].name);
        }
        free(p->adopted);
        free(p->live);
        if (p->ev_write)
                event_free(p->ev_write);
        fd_close(p->notify_fd);
        free(p);
        return NULL;
}

bool persist_enabled(Persist *p) {
        return p && p->notify_fd >= 0;
}

void persist_set_dump(Persist *p, PersistDumpFn dump, void *userdata) {
        if (!p)
                return;
        p->dump = dump;
        p->dump_userdata = userdata;
}

static int notify_send(Persist *p, const char *text, int fd) {
        int r;

        if (!persist_enabled(p))
                return 0;
        r = fdmsg_send_now(p->notify_fd, text, strlen(text), &fd, fd >= 0 ? 1 : 0);
        if (r < 0 && !p->warned) {
                /* A store that refuses (FileDescriptorStoreMax= reached) must not
                 * flood the log; a restart then loses what was not stored. */
                p->warned = true;
                log_error_errno(r, "Cannot send to the service manager, state may not survive a restart: %m");
        }
        return r;
}

int persist_notify(Persist *p, const char *text) {
        return notify_send(p, text, -1);
}

static void vname(char *buf, const char *fmt, va_list ap) {
        vsnprintf(buf, FDNAME_MAX + 1, fmt, ap);
}

static void live_add(Persist *p, const char *name, int fd) {
        if (strncmp(name, "st/", 3) == 0)
                return; /* a state is written afresh for every hand-over */
        for (size_t i = 0; i < p->n_live; i++)
                if (p->live[i].fd == fd && strcmp(p->live[i].name, name) == 0)
                        return;
        if (p->n_live == p->n_live_alloc) {
                size_t n = p->n_live_alloc ? p->n_live_alloc * 2 : 256;
                Named *a = realloc(p->live, n * sizeof(Named));

                if (!a)
                        return; /* only an upgrade would miss it; it refuses then (persist_upgrade) */
                p->live = a;
                p->n_live_alloc = n;
        }
        snprintf(p->live[p->n_live].name, sizeof(p->live[p->n_live].name), "%s", name);
        p->live[p->n_live++].fd = fd;
}

static void live_remove(Persist *p, const char *name) {
        for (size_t i = 0; i < p->n_live;)
                if (strcmp(p->live[i].name, name) == 0)
                        p->live[i] = p->live[--p->n_live];
                else
                        i++;
}

void persist_store(Persist *p, int fd, const char *fmt, ...) {
        char name[FDNAME_MAX + 1], text[FDNAME_MAX + 32];
        va_list ap;

        if (!p)
                return;
        va_start(ap, fmt);
        vname(name, fmt, ap);
        va_end(ap);
        live_add(p, name, fd);
        if (!persist_enabled(p))
                return;
        snprintf(text, sizeof(text), "FDSTORE=1\nFDNAME=%s", name);
        (void) notify_send(p, text, fd);
}

void persist_remove(Persist *p, const char *fmt, ...) {
        char name[FDNAME_MAX + 1], text[FDNAME_MAX + 32];
        va_list ap;

        if (!p)
                return;
        va_start(ap, fmt);
        vname(name, fmt, ap);
        va_end(ap);
        live_remove(p, name);
        if (!persist_enabled(p))
                return;
        snprintf(text, sizeof(text), "FDSTOREREMOVE=1\nFDNAME=%s", name);
        (void) notify_send(p, text, -1);
}

void persist_dirty(Persist *p) {
        if (!persist_enabled(p) || !p->dump || p->dirty)
                return;
        p->dirty = true;
        event_active(p->ev_write, 0, 0);
}

/* Serializes the state into a new sealed memfd; returns it or -errno. */
static int persist_write_state(Persist *p) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ uint8_t *buf = NULL;
        State s = SHMEM__STATE__STATE__INIT;
        size_t n = 0;
        int r;

        if (!p->dump)
                return -EINVAL;
        s.version = 1;
        s.generation = ++p->generation;
        r = p->dump(p->dump_userdata, &s);
        if (r >= 0) {
                n = shmem__state__state__get_packed_size(&s);
                buf = malloc(n ? n : 1);
                if (!buf)
                        r = -ENOMEM;
                else
                        shmem__state__state__pack(&s, buf);
        }
        persist_state_dump_free(&s);
        if (r >= 0) {
                fd = memfd_create("shmem-broker-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);
                if (fd < 0 || write(fd, buf, n) != (ssize_t) n)
                        r = -errno;
        }
        if (r < 0)
                return r;
        /* Sealed: whoever reads it after a restart reads what was written. */
        (void) fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
        return TAKE_FD(fd);
}

void persist_flush(Persist *p) {
        _cleanup_close_ int fd = -1;

        if (!persist_enabled(p) || !p->dirty)
                return;
        p->dirty = false;
        fd = persist_write_state(p);
        if (fd < 0) {
                log_error_errno(fd, "Cannot write the broker's state: %m");
                return;
        }
        /* The new one first: a crash between the two leaves two, never none. */
        persist_store(p, fd, "st/%llu", (unsigned long long) p->generation);
        if (p->generation > 1)
                persist_remove(p, "st/%llu", (unsigned long long) p->generation - 1);
}

void persist_forget_state(Persist *p) {
        if (persist_enabled(p) && p->generation > 0)
                persist_remove(p, "st/%llu", (unsigned long long) p->generation);
        if (p)
                p->dirty = false;
}

int persist_take(Persist *p, const char *fmt, ...) {
        char name[FDNAME_MAX + 1];
        va_list ap;

        if (!p)
                return -1;
        va_start(ap, fmt);
        vname(name, fmt, ap);
        va_end(ap);
        for (size_t i = 0; i < p->n_adopted; i++)
                if (p->adopted[i].fd >= 0 && strcmp(p->adopted[i].name, name) == 0)
                        return TAKE_FD(p->adopted[i].fd);
        return -1;
}

static State *state_read(int fd) {
        struct stat st;
        uint8_t *map;
        State *s;

        if (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size > (64 << 20))
                return NULL;
        map = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED)
                return NULL;
        s = shmem__state__state__unpack(NULL, (size_t) st.st_size, map);
        munmap(map, (size_t) st.st_size);
        if (s && s->version != 1) {
                shmem__state__state__free_unpacked(s, NULL);
                return NULL;
        }
        return s;
}

State *persist_take_state(Persist *p) {
        State *best = NULL;

        if (!p)
                return NULL;
        for (size_t i = 0; i < p->n_adopted; i++) {
                State *s;

                if (p->adopted[i].fd < 0 || strncmp(p->adopted[i].name, "st/", 3) != 0)
                        continue;
                s = state_read(p->adopted[i].fd);
                if (!s)
                        log_warning("Ignoring unreadable stored state '%s'", p->adopted[i].name);
                else if (!best || s->generation > best->generation) {
                        persist_state_free(best);
                        best = s;
                } else
                        persist_state_free(s);
        }
        if (best)
                p->generation = best->generation;
        return best;
}

void persist_state_free(State *s) {
        if (s)
                shmem__state__state__free_unpacked(s, NULL);
}

void persist_release_unclaimed(Persist *p) {
        if (!p)
                return;
        for (size_t i = 0; i < p->n_adopted; i++) {
                if (p->adopted[i].fd >= 0) {
                        /* Old states are expected; anything else was not rebuilt. */
                        if (strncmp(p->adopted[i].name, "st/", 3) != 0)
                                log_notice("Closing stored fd '%s': nothing of the state uses it",
                                           p->adopted[i].name);
                        p->adopted[i].fd = fd_close(p->adopted[i].fd);
                        persist_remove(p, "%s", p->adopted[i].name);
                }
                free(p->adopted[i].name);
                p->adopted[i].name = NULL;
        }
        p->n_adopted = 0;
}

/* --- building a State to dump: arrays grown here, strings borrowed from live objects --- */

static void *array_grow(void ***array, size_t *n, size_t size, void (*init)(void *)) {
        void **a = realloc(*array, (*n + 1) * sizeof(void *));
        void *e;

        if (!a)
                return NULL;
        *array = a;
        e = calloc(1, size);
        if (!e)
                return NULL;
        init(e);
        a[(*n)++] = e;
        return e;
}

Shmem__State__Region *persist_state_add_region(State *s) {
        return array_grow((void ***) &s->regions, &s->n_regions, sizeof(Shmem__State__Region),
                          (void (*)(void *)) shmem__state__region__init);
}

Shmem__State__Peer *persist_state_add_peer(Shmem__State__Region *r) {
        return array_grow((void ***) &r->peers, &r->n_peers, sizeof(Shmem__State__Peer),
                          (void (*)(void *)) shmem__state__peer__init);
}

Shmem__State__Conn *persist_state_add_conn(State *s) {
        return array_grow((void ***) &s->conns, &s->n_conns, sizeof(Shmem__State__Conn),
                          (void (*)(void *)) shmem__state__conn__init);
}

void persist_state_dump_free(State *s) {
        for (size_t i = 0; i < s->n_regions; i++) {
                for (size_t k = 0; k < s->regions[i]->n_peers; k++)
                        free(s->regions[i]->peers[k]);
                free(s->regions[i]->peers);
                free(s->regions[i]);
        }
        free(s->regions);
        for (size_t i = 0; i < s->n_conns; i++)
                free(s->conns[i]);
        free(s->conns);
        s->regions = NULL;
        s->conns = NULL;
        s->n_regions = s->n_conns = 0;
}

int persist_upgrade(Persist *p, const char *exe, char *const *argv) {
        _cleanup_free_ int *high = NULL;
        _cleanup_free_ char *names = NULL;
        size_t n, len = 0;
        int state;

        if (access(exe, X_OK) < 0)
                return -errno;
        state = persist_write_state(p);
        if (state < 0)
                return state;
        n = p->n_live + 1;
        high = calloc(n, sizeof(int));
        names = malloc(n * (FDNAME_MAX + 1) + 1);
        if (!high || !names) {
                fd_close(state);
                return -ENOMEM;
        }
        /*
         * Everything the new image must find goes to fds 3.. in order, as
         * systemd hands them over. First to numbers above that range (close-
         * on-exec, so they vanish in the exec), then down without the flag.
         * From here on the running image's fds are overwritten: no way back.
         */
        for (size_t i = 0; i < n; i++) {
                int fd = i < p->n_live ? p->live[i].fd : state;

                high[i] = fcntl(fd, F_DUPFD_CLOEXEC, (int) (LISTEN_FDS_START + n));
                if (high[i] < 0) {
                        int r = -errno;

                        for (size_t k = 0; k < i; k++)
                                fd_close(high[k]);
                        fd_close(state);
                        return r;
                }
                len += (size_t) snprintf(names + len, FDNAME_MAX + 2, "%s%s", i ? ":" : "",
                                         i < p->n_live ? p->live[i].name : "st/upgrade");
        }
        for (size_t i = 0; i < n; i++)
                if (dup2(high[i], (int) (LISTEN_FDS_START + i)) < 0)
                        _exit(EXIT_FAILURE);
        {
                char count[32], pid[32];

                snprintf(count, sizeof(count), "%zu", n);
                snprintf(pid, sizeof(pid), "%d", (int) getpid());
                setenv("LISTEN_FDS", count, 1);
                setenv("LISTEN_FDNAMES", names, 1);
                setenv("LISTEN_PID", pid, 1);
        }
        execv(exe, argv);
        /* The fds are shuffled: this image cannot go on. Whoever started it restarts it. */
        log_error_errno(-errno, "Cannot execute '%s' for the upgrade, exiting: %m", exe);
        _exit(EXIT_FAILURE);
}
