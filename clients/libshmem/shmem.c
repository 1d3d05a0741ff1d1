/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libshmem on the host: a region attachment over the broker's native protocol
 * (docs/protocol.md §2) and the signal model of docs/region-layout.md.
 *
 * The broker is in neither the data nor the signal path: notify() and wait()
 * touch only the mapping and the eventfds; the control socket carries only
 * membership (Joined/Left), which is read whenever it is readable.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "clock.h"
#include "control-page.h"
#include "shmem-raw.h"
#include "shmem.h"
#include "shmem-internal.h"

#define EXPORT __attribute__((visibility("default")))

/* epoll data of the control socket; vectors use their number. */
#define TAG_SOCKET UINT32_MAX
#define TAG_TIMER (UINT32_MAX - 1)

/*
 * For a while after attach, look at the pending word every 100 ms even when
 * nothing rang: a guest's QEMU silently drops a doorbell to a peer it has not
 * been told about yet, although the control page already shows that peer as
 * active, so a guest can set its bit in a newcomer's pending word and ring
 * into the void. The bit is never lost; this makes sure it is seen.
 */
#define RECHECK_INTERVAL_NS (100 * 1000 * 1000)
#define RECHECK_PERIOD_S 10

struct shmem {
        Client *client;
        char *name;
        void *map;
        size_t map_size;
        struct shmem_control_page *page;
        uint8_t *data;
        uint64_t data_size;
        unsigned index, max_peers, vectors;
        int vec[SHMEM_PEERS_MAX + 1]; /* ev[me][v]: own vectors */
        int peer[SHMEM_PEERS_MAX];  /* ev[k][me]: rings peer k; -1 unknown */
        int epfd;                   /* own vectors + control socket + recheck timer: shmem_fd() */
        int timerfd;                /* the recheck timer, disarmed after RECHECK_PERIOD_S */
        struct timespec attached;   /* CLOCK_MONOTONIC at attach */
        uint64_t seen_epoch;        /* page epoch reported by the last wait */
        uint64_t event_epoch;       /* epoch of the last Joined/Left applied */
        int error;                  /* the broker connection is gone: -ECONNRESET */
        pid_t pid;                  /* the attacher: a forked child's copy detaches alone (shmem.h) */
};

/* Public structs grow at the end; only what the caller's size covers is read. */
#define OPT(o, field) \
        ((o) && (o)->size >= offsetof(struct shmem_attach_opts, field) + sizeof((o)->field) ? (o)->field : NULL)

static shmem_t *shmem_free(shmem_t *s) {
        if (!s)
                return NULL;
        for (unsigned v = 0; v < ELEMENTSOF(s->vec); v++)
                fd_close(s->vec[v]);
        for (unsigned k = 0; k < ELEMENTSOF(s->peer); k++)
                fd_close(s->peer[k]);
        fd_close(s->epfd);
        fd_close(s->timerfd);
        if (s->map)
                munmap(s->map, s->map_size);
        client_free(s->client);
        free(s->name);
        free(s);
        return NULL;
}
static void shmem_freep(shmem_t **s) { shmem_free(*s); }

static int shmem_alloc(shmem_t **ret) {
        shmem_t *s = calloc(1, sizeof(*s));

        if (!s)
                return -ENOMEM;
        for (unsigned v = 0; v < ELEMENTSOF(s->vec); v++)
                s->vec[v] = -1;
        for (unsigned k = 0; k < ELEMENTSOF(s->peer); k++)
                s->peer[k] = -1;
        s->epfd = -1;
        s->timerfd = -1;
        *ret = s;
        return 0;
}

/* Applies one event from the broker. Events of other kinds or regions are ignored. */
static void shmem_apply_event(shmem_t *s, ClientMsg *e) {
        const Message *m = e->msg;

        if (m->body_case == SHMEM__MESSAGE__BODY_JOINED && m->joined->peer) {
                const Shmem__PeerInfo *pi = m->joined->peer;
                int fd = pi->fd >= 0 ? fdmsg_steal_fd(e->raw, (size_t) pi->fd) : -1;

                if (pi->index >= s->max_peers || pi->index == s->index || fd < 0) {
                        fd_close(fd);
                        return;
                }
                fd_close(s->peer[pi->index]);
                s->peer[pi->index] = fd;
                s->event_epoch = m->joined->epoch;
        } else if (m->body_case == SHMEM__MESSAGE__BODY_LEFT) {
                if (m->left->index >= s->max_peers || m->left->index == s->index)
                        return;
                s->peer[m->left->index] = fd_close(s->peer[m->left->index]);
                s->event_epoch = m->left->epoch;
        }
}

/* Applies every event there is, without blocking. Failures are sticky in s->error. */
static void shmem_process_events(shmem_t *s) {
        while (!s->error) {
                _cleanup_(client_msg_freep) ClientMsg *e = NULL;
                int r = client_next_event(s->client, &e);

                if (r == 0)
                        return;
                if (r < 0) {
                        s->error = r;
                        /* Level-triggered epoll would report the dead socket for ever. */
                        (void) epoll_ctl(s->epfd, EPOLL_CTL_DEL, client_fd(s->client), NULL);
                        return;
                }
                shmem_apply_event(s, e);
        }
}

static int epoll_add(int epfd, int fd, uint32_t tag) {
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = tag };

        return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* Checks the attach reply (the broker is trusted, but a bug must not become a wild mmap) and takes its fds. */
static int shmem_take_reply(shmem_t *s, ClientMsg *reply) {
        const Shmem__AttachReply *a = reply->msg->reply->attach;
        _cleanup_close_ int memfd = -1;
        struct stat st;
        void *map;

        if (reply->msg->reply->body_case != SHMEM__REPLY__BODY_ATTACH || !a)
                return -EPROTO;
        if (a->max_peers < 1 || a->max_peers > SHMEM_PEERS_MAX || a->vectors != a->max_peers + 1 ||
            a->index >= a->max_peers || a->data_offset < SHMEM_PAGE_SIZE ||
            a->data_offset % SHMEM_PAGE_SIZE != 0 || a->region_size > SIZE_MAX ||
            a->data_size > a->region_size || a->data_offset > a->region_size - a->data_size ||
            reply->raw->n_fds < 1 + (size_t) a->vectors)
                return -EPROTO;

        s->index = a->index;
        s->max_peers = a->max_peers;
        s->vectors = a->vectors;
        s->data_size = a->data_size;

        memfd = fdmsg_steal_fd(reply->raw, 0);
        for (unsigned v = 0; v < s->vectors; v++)
                s->vec[v] = fdmsg_steal_fd(reply->raw, 1 + v);
        for (size_t i = 0; i < a->n_peers; i++) {
                const Shmem__PeerInfo *pi = a->peers[i];
                int fd;

                if (pi->fd < 1 + (int) s->vectors || pi->index >= s->max_peers || pi->index == s->index)
                        return -EPROTO;
                fd = fdmsg_steal_fd(reply->raw, (size_t) pi->fd);
                if (fd < 0 || s->peer[pi->index] >= 0) {
                        fd_close(fd);
                        return -EPROTO;
                }
                s->peer[pi->index] = fd;
        }
        if (memfd < 0)
                return -EPROTO;
        for (unsigned v = 0; v < s->vectors; v++)
                if (s->vec[v] < 0)
                        return -EPROTO;

        /* Touching a mapping beyond the end of the file would be SIGBUS. */
        if (fstat(memfd, &st) < 0)
                return -errno;
        if ((uint64_t) st.st_size < a->region_size)
                return -EPROTO;
        map = mmap(NULL, (size_t) a->region_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
        if (map == MAP_FAILED)
                return -errno;
        s->map = map;
        s->map_size = (size_t) a->region_size;
        s->page = map;
        s->data = (uint8_t *) map + a->data_offset;
        /*
         * Geometry comes from the broker's reply, not the page: any peer can
         * write the page. The page is used only for what it is for: pending
         * words, active and epoch.
         */
        s->seen_epoch = s->event_epoch = shmem_page_load(&s->page->epoch);
        return 0;
}

static int shmem_setup_epoll(shmem_t *s) {
        int r;

        s->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (s->epfd < 0)
                return -errno;
        for (unsigned v = 0; v < s->vectors; v++) {
                r = epoll_add(s->epfd, s->vec[v], v);
                if (r < 0)
                        return r;
        }
        s->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (s->timerfd < 0)
                return -errno;
        (void) clock_gettime(CLOCK_MONOTONIC, &s->attached);
        if (timerfd_settime(s->timerfd, 0,
                            &(struct itimerspec) { .it_interval.tv_nsec = RECHECK_INTERVAL_NS,
                                                   .it_value.tv_nsec = RECHECK_INTERVAL_NS },
                            NULL) < 0)
                return -errno;
        r = epoll_add(s->epfd, s->timerfd, TAG_TIMER);
        if (r < 0)
                return r;
        return epoll_add(s->epfd, client_fd(s->client), TAG_SOCKET);
}

/* Reads the recheck timer; disarms it once the period after attach is over. */
static void shmem_recheck_tick(shmem_t *s) {
        struct timespec now;
        uint64_t n;

        (void) !read(s->timerfd, &n, sizeof(n));
        (void) clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - s->attached.tv_sec >= RECHECK_PERIOD_S)
                (void) timerfd_settime(s->timerfd, 0, &(struct itimerspec) {}, NULL);
}

int shmem_from_reply(shmem_t **ret, Client *client, ClientMsg *reply, const char *name) {
        _cleanup_(shmem_freep) shmem_t *s = NULL;
        int r = shmem_alloc(&s);

        if (r < 0) {
                client_free(client);
                return r;
        }
        s->client = client;
        s->pid = getpid();
        s->name = strdup(name);
        if (!s->name)
                return -ENOMEM;
        r = shmem_take_reply(s, reply);
        if (r < 0)
                return r;
        r = shmem_setup_epoll(s);
        if (r < 0)
                return r;
        /* Events queued during the call would not make the socket readable again. */
        shmem_process_events(s);
        *ret = TAKE_PTR(s);
        return 0;
}

static const char *default_label(void) {
        return program_invocation_short_name && *program_invocation_short_name
                       ? program_invocation_short_name
                       : "libshmem";
}

EXPORT int shmem_attach(shmem_t **ret, const char *name, uint64_t size, unsigned flags,
                        const struct shmem_attach_opts *opts) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        Shmem__Attach at = SHMEM__ATTACH__INIT;
        Message m = SHMEM__MESSAGE__INIT;
        Client *client = NULL;
        const char *label;
        int r;

        if (!ret || !name || (flags & ~(unsigned) (SHMEM_FIND | SHMEM_EXCLUSIVE)) ||
            (flags & SHMEM_FIND && flags & SHMEM_EXCLUSIVE))
                return -EINVAL;
        label = OPT(opts, label) ? OPT(opts, label) : default_label();

        at.name = (char *) name;
        at.size = size;
        at.mode = flags & SHMEM_FIND        ? SHMEM__ATTACH_MODE__FIND
                  : flags & SHMEM_EXCLUSIVE ? SHMEM__ATTACH_MODE__EXCLUSIVE
                                            : SHMEM__ATTACH_MODE__CREATE;
        m.body_case = SHMEM__MESSAGE__BODY_ATTACH;
        m.attach = &at;
        r = client_connect_with(&client, client_socket_path(OPT(opts, socket)), label, CLIENT_TIMEOUT_MS, &m,
                                &reply);
        if (r != 0)
                return r;
        r = client_reply_status(reply, NULL);
        if (r != SHMEM_STATUS_OK) {
                client_free(client);
                return r > 0 ? r : SHMEM_STATUS_UNKNOWN_FAILURE;
        }
        return shmem_from_reply(ret, client, reply, name);
}

EXPORT int shmem_find(shmem_t **ret, const char *name, const struct shmem_attach_opts *opts) {
        return shmem_attach(ret, name, 0, SHMEM_FIND, opts);
}

EXPORT shmem_t *shmem_detach(shmem_t *s) {
        if (!s)
                return NULL;
        /*
         * A forked child's copy shares the attacher's connection: a Detach
         * sent on it would detach the attacher. Closing the copies of its fds
         * alone leaves the attachment whole.
         */
        if (s->client && !s->error && s->pid == getpid()) {
                /*
                 * Closing the socket alone detaches too, but asynchronously: an
                 * explicit Detach means the index is free when this returns.
                 */
                _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
                Shmem__Detach d = SHMEM__DETACH__INIT;
                Message m = SHMEM__MESSAGE__INIT;

                d.name = s->name;
                m.body_case = SHMEM__MESSAGE__BODY_DETACH;
                m.detach = &d;
                (void) client_call(s->client, &m, CLIENT_TIMEOUT_MS, &reply);
        }
        return shmem_free(s);
}

EXPORT void *shmem_data(shmem_t *s) {
        return s ? s->data : NULL;
}

EXPORT uint64_t shmem_size(shmem_t *s) {
        return s ? s->data_size : 0;
}

EXPORT unsigned shmem_index(shmem_t *s) {
        return s ? s->index : 0;
}

EXPORT unsigned shmem_max_peers(shmem_t *s) {
        return s ? s->max_peers : 0;
}

EXPORT const char *shmem_name(shmem_t *s) {
        return s ? s->name : NULL;
}

EXPORT uint64_t shmem_active(shmem_t *s) {
        return s ? shmem_page_active(s->page, s->max_peers, s->index) : 0;
}

EXPORT uint64_t shmem_unconsumed(shmem_t *s) {
        return s ? shmem_page_unconsumed(s->page, s->max_peers, s->index) : 0;
}

/*
 * Signals the attached peers in @mask but me: ORs @bits into each one's
 * pending word (none if 0), then rings it. shmem_notify() sets my bit;
 * shmem_raw_ring() sets none.
 */
static int shmem_signal(shmem_t *s, uint64_t mask, uint64_t bits) {
        uint64_t targets, one = 1;
        int ret = 0;

        targets = mask & shmem_active(s) & ~BIT(s->index);
        if (!targets)
                return 0;
        /*
         * The broker updates the page before it sends Joined/Left: a peer that
         * just joined may have no fd here yet, and an index that changed hands
         * may still have the leaver's. Both show as an epoch not yet seen in an
         * event; then read the events first (one recvmsg, no wait).
         */
        if (shmem_page_load(&s->page->epoch) != s->event_epoch)
                shmem_process_events(s);
        else
                for (unsigned k = 0; k < s->max_peers; k++)
                        if (targets & BIT(k) && s->peer[k] < 0) {
                                shmem_process_events(s);
                                break;
                        }
        for (unsigned k = 0; k < s->max_peers; k++) {
                if (!(targets & BIT(k)))
                        continue;
                /* The bit first, then the ring: a receiver woken by the ring finds it. */
                if (bits)
                        shmem_page_set_pending(s->page, k, bits);
                /*
                 * No fd yet: a peer so new that its Joined is still on the way.
                 * The bit stays; a new peer re-reads its pending word (see
                 * shmem_wait), so the signal is late, not lost.
                 */
                if (s->peer[k] < 0)
                        continue;
                /* EAGAIN is a counter at its maximum: the peer has a wakeup pending anyway. */
                if (write(s->peer[k], &one, sizeof(one)) < 0 && errno != EAGAIN && ret == 0)
                        ret = -errno;
        }
        return ret;
}

EXPORT int shmem_notify(shmem_t *s, uint64_t mask) {
        return s ? shmem_signal(s, mask, BIT(s->index)) : -EINVAL;
}

int shmem_raw_ring(shmem_t *s, uint64_t mask) {
        return s ? shmem_signal(s, mask, 0) : -EINVAL;
}

struct shmem_control_page *shmem_raw_page(shmem_t *s) {
        return s ? s->page : NULL;
}

/* Something to report without sleeping: my pending word, an epoch not reported yet, or a dead connection. */
static bool shmem_ready(shmem_t *s) {
        uint64_t mine = shmem_page_load(&s->page->slots[s->index].pending);

        return (mine & shmem_page_valid(s->max_peers) & ~BIT(s->index)) ||
               shmem_page_load(&s->page->epoch) != s->seen_epoch || s->error;
}

EXPORT int shmem_wait(shmem_t *s, int timeout_ms, struct shmem_event *ret) {
        int64_t deadline;

        if (!s || !ret)
                return -EINVAL;
        deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;

        for (;;) {
                struct epoll_event evs[SHMEM_PEERS_MAX + 3]; /* every fd of the set */
                uint64_t senders = 0, rang = 0, epoch;
                bool socket = false;
                int n, wait_ms;

                /*
                 * One epoll_wait() a call in the common case: sleep at once
                 * unless the page already has something to report (then only
                 * drain the rings that fired, without sleeping). A bit set
                 * after this look comes with a ring, which wakes the sleep.
                 */
                if (shmem_ready(s))
                        wait_ms = 0;
                else if (deadline < 0)
                        wait_ms = -1;
                else {
                        int64_t left = deadline - now_ms();

                        wait_ms = left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int) left;
                }
                n = epoll_wait(s->epfd, evs, (int) ELEMENTSOF(evs), wait_ms);
                if (n < 0) {
                        if (errno != EINTR)
                                return -errno;
                        continue;
                }
                for (int i = 0; i < n; i++) {
                        uint32_t v = evs[i].data.u32;
                        uint64_t count;

                        if (v == TAG_SOCKET) {
                                socket = true;
                                continue;
                        }
                        if (v == TAG_TIMER) {
                                shmem_recheck_tick(s);
                                continue;
                        }
                        /*
                         * Read clears the vector (a counting eventfd): each
                         * ring is reported once, in @rang, whatever the
                         * pending word says. The pending word is the other
                         * view, taken below, and membership is the epoch
                         * alone. A sender sets its bit before it rings (the
                         * broker publishes the epoch before it rings the
                         * control vector), so the bit may be taken by an
                         * earlier look than the one the ring wakes; folding
                         * the ring into @senders would report one signal twice
                         * (docs/design.md).
                         */
                        if (read(s->vec[v], &count, sizeof(count)) != (ssize_t) sizeof(count))
                                continue;
                        if (v >= s->max_peers)
                                socket = true; /* Joined/Left come before the control ring */
                        else if (v != s->index)
                                rang |= BIT(v);
                }
                if (socket)
                        shmem_process_events(s);
                senders = shmem_page_take_pending(s->page, s->max_peers, s->index);
                epoch = shmem_page_load(&s->page->epoch);

                /* Drained rings are reported now or never: one is reason enough to return. */
                if (senders || rang || epoch != s->seen_epoch) {
                        *ret = (struct shmem_event) {
                                .senders = senders,
                                .membership_changed = epoch != s->seen_epoch,
                                .active = shmem_active(s),
                                .epoch = epoch,
                                .rang = rang,
                        };
                        s->seen_epoch = epoch;
                        return 1;
                }
                if (s->error)
                        return s->error;
                if (wait_ms == 0 && timeout_ms == 0)
                        return 0;
                if (n == 0 || (deadline >= 0 && now_ms() >= deadline))
                        return 0;
        }
}

EXPORT int shmem_fd(shmem_t *s) {
        return s ? s->epfd : -EINVAL;
}
