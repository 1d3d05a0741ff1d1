/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmemctl's operations commands: watch the broker's events, signal or dump
 * a region as a short-lived peer, reload the configuration, upgrade the
 * broker in place.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>

#include "clock.h"
#include "escape.h"
#include "events.h"
#include "hexdump.h"
#include "json.h"
#include "ops.h"
#include "region-layout.h"
#include "shmem.h"
#include "units.h"

/* What dump shows without --length: enough to see a header, not a screenful of a 1 GiB region. */
#define DUMP_DEFAULT_LENGTH 4096
/* signal and dump attach under this label: what the region's peers see. */
#define PEER_LABEL "shmemctl"
/* How long upgrade waits for the new image: it restores every region and connection first. */
#define UPGRADE_TIMEOUT_MS 30000
#define UPGRADE_RETRY_MS 50
/*
 * The listening socket is handed over with the other fds, so connecting never
 * fails while the broker re-executes: refused for this long means it is gone.
 */
#define UPGRADE_GONE_MS 2000

/* The broker closed the connection or stopped answering: EXIT_UNREACHABLE. */
static int report_gone(const char *path, int error) {
        if (error == -ECONNRESET)
                fprintf(stderr, "shmemctl: the broker at %s went away (it closed the connection)\n", path);
        else
                fprintf(stderr, "shmemctl: lost the broker at %s: %s\n", path, strerror(-error));
        return EXIT_UNREACHABLE;
}

/* Flushes stdout, for a pipe that must see every line as it comes. */
static int flush_output(void) {
        if (fflush(stdout) == 0 && !ferror(stdout))
                return EXIT_OK;
        fprintf(stderr, "shmemctl: cannot write the output: %s\n", strerror(errno));
        return EXIT_REFUSED;
}

/*
 * SIGINT and SIGTERM as an fd, so that watch ends cleanly (exit 0) between
 * two lines; blocked before Watch is sent so that none is missed.
 */
static int watch_signals(int *ret_fd) {
        sigset_t set;
        int fd;

        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
                return -errno;
        fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
        if (fd < 0)
                return -errno;
        *ret_fd = fd;
        return 0;
}

int cmd_watch(Client *c, const char *path, const Args *a, const char *name) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        _cleanup_close_ int sigfd = -1;
        Message m = SHMEM__MESSAGE__INIT;
        int r;

        r = watch_signals(&sigfd);
        if (r < 0) {
                fprintf(stderr, "shmemctl: cannot set up signal handling: %s\n", strerror(-r));
                return EXIT_REFUSED;
        }
        m.body_case = SHMEM__MESSAGE__BODY_WATCH;
        m.watch = &(Shmem__Watch) SHMEM__WATCH__INIT;
        r = call(c, path, "watch", &m, &reply);
        if (r != EXIT_OK)
                return r;
        /*
         * Watch has no region of its own (docs/protocol.md): ask for NAME once,
         * after Watch, so that none of its events is missed; they are queued
         * meanwhile.
         */
        if (name) {
                _cleanup_(client_msg_freep) ClientMsg *info = NULL;
                const Shmem__RegionInfo *ri;

                r = inspect_region(c, path, name, &info, &ri);
                if (r != EXIT_OK)
                        return r;
        }

        for (;;) {
                struct pollfd p[2] = {
                        { .fd = client_fd(c), .events = POLLIN },
                        { .fd = sigfd, .events = POLLIN },
                };

                /* First what came with the Watch reply, then what the socket has. */
                for (;;) {
                        _cleanup_(client_msg_freep) ClientMsg *e = NULL;
                        const char *region;

                        r = client_next_event(c, &e);
                        if (r < 0)
                                return report_gone(path, r);
                        if (r == 0)
                                break;
                        region = event_region(e->msg);
                        if (!region || (name && strcmp(region, name) != 0))
                                continue;
                        if (a->timestamps) {
                                struct timespec ts;
                                char when[UNITS_TIME_STR_MAX];

                                clock_gettime(CLOCK_REALTIME, &ts);
                                units_format_time(when, (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000);
                                event_print(stdout, e->msg, a->json, when);
                        } else
                                event_print(stdout, e->msg, a->json, NULL);
                        r = flush_output();
                        if (r != EXIT_OK)
                                return r;
                }
                if (poll(p, 2, -1) < 0 && errno != EINTR) {
                        fprintf(stderr, "shmemctl: poll: %s\n", strerror(errno));
                        return EXIT_REFUSED;
                }
                if (p[1].revents)
                        return EXIT_OK;
        }
}

/* --- signal and dump: a short-lived peer of the region --- */

static void shmem_detachp(shmem_t **s) {
        shmem_detach(*s);
}

/* Host peers cannot attach to compat regions (docs/protocol.md §1): say why rather than BAD_REQUEST. */
static int check_not_compat(const char *name, const Shmem__RegionInfo *ri, const char *verb) {
        if (ri->signal_mode == SHMEM_SIGNAL_MODE_SHMEM)
                return EXIT_OK;
        fprintf(stderr,
                "shmemctl: %s is a compat region (signal-mode = ivshmem): only QEMU guests attach to it, "
                "so shmemctl cannot %s it\n",
                name, verb);
        return EXIT_REFUSED;
}

/* Attaches to the existing region @name as peer PEER_LABEL. */
static int attach_peer(const char *path, const char *name, const Shmem__RegionInfo *ri, shmem_t **ret) {
        struct shmem_attach_opts o = { .size = sizeof(o), .socket = path, .label = PEER_LABEL };
        char detail[256];
        int r;

        r = shmem_find(ret, name, &o);
        if (r == 0)
                return EXIT_OK;
        if (r == -ENOENT || r == -ECONNREFUSED)
                return report_unreachable(path, r, true);
        if (r == -ETIMEDOUT || r == -ECONNRESET)
                return report_gone(path, r);
        if (r < 0) {
                fprintf(stderr, "shmemctl: %s: cannot attach: %s\n", name, strerror(-r));
                return EXIT_REFUSED;
        }
        switch (r) {
        case SHMEM_STATUS_CLIENT_MAX:
                return report_refused(name, r,
                                      "shmemctl attaches as a peer for a moment and needs a free index");
        case SHMEM_STATUS_NO_PERMISSION:
                snprintf(detail, sizeof(detail),
                         "shmemctl attaches as peer '" PEER_LABEL "': the region's access (owner %u, "
                         "group %u, mode %03o) or the broker's allow/deny rules refuse it",
                         ri->owner, ri->group, ri->mode);
                return report_refused(name, r, detail);
        case SHMEM_STATUS_DOES_NOT_EXIST:
                return report_refused(name, r, "it was destroyed meanwhile");
        default:
                return report_refused(name, r, NULL);
        }
}

/* Refuses a mask with peers that are not attached: nothing is signaled then. */
static int report_not_attached(const char *name, uint64_t missing, uint64_t attached) {
        char m[UNITS_BITS_STR_MAX], at[UNITS_BITS_STR_MAX];

        fprintf(stderr, "shmemctl: %s: %s %s %s not attached (attached: %s); nothing was signaled\n", name,
                __builtin_popcountll(missing) == 1 ? "peer" : "peers", units_format_bits(m, missing),
                __builtin_popcountll(missing) == 1 ? "is" : "are", units_format_bits(at, attached));
        return EXIT_REFUSED;
}

int cmd_signal(Client *c, const char *path, const Args *a, const char *name, uint64_t mask, bool all) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        _cleanup_(shmem_detachp) shmem_t *shm = NULL;
        const Shmem__RegionInfo *ri;
        char bits[UNITS_BITS_STR_MAX];
        uint64_t others;
        unsigned me;
        int r;

        /* Looked at first: a refusal must not cost the peers a join and a leave. */
        r = inspect_region(c, path, name, &reply, &ri);
        if (r != EXIT_OK)
                return r;
        r = check_not_compat(name, ri, "signal");
        if (r != EXIT_OK)
                return r;
        if (all ? ri->active == 0 : (mask & ~ri->active) != 0) {
                if (all) {
                        fprintf(stderr, "shmemctl: %s: no peer is attached; nothing was signaled\n", name);
                        return EXIT_REFUSED;
                }
                return report_not_attached(name, mask & ~ri->active, ri->active);
        }

        r = attach_peer(path, name, ri, &shm);
        if (r != EXIT_OK)
                return r;
        /* Again as seen now: a peer may have left meanwhile. My index was free, so it is not in @mask. */
        me = shmem_index(shm);
        others = shmem_active(shm) & ~(UINT64_C(1) << me);
        /*
         * all: the peers there before and after the attach. One that joined
         * since is on the control page before its fd reaches me, and
         * shmem_notify() would skip it without a word.
         */
        if (all)
                mask = others & ri->active;
        if (mask == 0) {
                fprintf(stderr, "shmemctl: %s: no other peer is attached any more; nothing was signaled\n",
                        name);
                return EXIT_REFUSED;
        }
        if ((mask & ~others) != 0)
                return report_not_attached(name, mask & ~others, others);
        r = shmem_notify(shm, mask);
        if (r < 0) {
                fprintf(stderr, "shmemctl: %s: cannot signal: %s\n", name, strerror(-r));
                return EXIT_REFUSED;
        }

        if (a->json) {
                Json j;

                json_result_begin(&j, name);
                json_key(&j, "signaled");
                json_bits(&j, mask);
                json_key(&j, "sender");
                json_uint(&j, me);
                json_object_end(&j);
        } else
                printf("signaled %s peers=%s sender=%u\n", name, units_format_bits(bits, mask), me);
        return flush_output();
}

/* --offset and --length inside @size bytes of data; a usage error otherwise. */
static int check_range(const Args *a, const char *name, uint64_t size) {
        if (a->offset >= size)
                return usage_error("--offset %" PRIu64 " is not inside the data of %s (%" PRIu64 " bytes)",
                                   a->offset, name, size);
        if (a->length_set && a->length > size - a->offset)
                return usage_error("--offset %" PRIu64 " --length %" PRIu64
                                   " ends beyond the data of %s (%" PRIu64 " bytes)",
                                   a->offset, a->length, name, size);
        return EXIT_OK;
}

int cmd_dump(Client *c, const char *path, const Args *a, const char *name) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        _cleanup_(shmem_detachp) shmem_t *shm = NULL;
        const Shmem__RegionInfo *ri;
        uint64_t size, length, done;
        const uint8_t *data;
        Hexdump h;
        int r;

        r = inspect_region(c, path, name, &reply, &ri);
        if (r != EXIT_OK)
                return r;
        r = check_not_compat(name, ri, "dump");
        if (r != EXIT_OK)
                return r;
        if (!ri->allocated) {
                fprintf(stderr,
                        "shmemctl: %s has no memory now (a declared region gets it at its first attach and "
                        "loses it when its last peer leaves): nothing to dump\n",
                        name);
                return EXIT_REFUSED;
        }
        /* Checked before attaching, and again against the mapping: the region may be a new one now. */
        r = check_range(a, name, ri->data_size);
        if (r != EXIT_OK)
                return r;
        r = attach_peer(path, name, ri, &shm);
        if (r != EXIT_OK)
                return r;
        size = shmem_size(shm);
        r = check_range(a, name, size);
        if (r != EXIT_OK)
                return r;
        length = a->length_set ? a->length : size - a->offset;
        if (!a->length_set && length > DUMP_DEFAULT_LENGTH)
                length = DUMP_DEFAULT_LENGTH;

        /* Copied out a page at a time: peers may be writing while it is formatted. */
        data = (const uint8_t *) shmem_data(shm) + a->offset;
        if (a->json) { /* json.c's layout, the data as one hex string written as it is copied */
                printf("{\n   \"region\": ");
                json_write_string(stdout, name);
                printf(",\n   \"offset\": %" PRIu64 ",\n   \"length\": %" PRIu64 ",\n   \"hex\": \"", a->offset,
                       length);
        }
        hexdump_init(&h, stdout, a->offset);
        for (done = 0; done < length;) {
                uint8_t buf[4096];
                size_t n = length - done < sizeof(buf) ? (size_t) (length - done) : sizeof(buf);

                __atomic_thread_fence(__ATOMIC_ACQUIRE);
                memcpy(buf, data + done, n);
                if (a->json)
                        for (size_t i = 0; i < n; i++)
                                printf("%02x", buf[i]);
                else if (a->raw) {
                        if (fwrite(buf, 1, n, stdout) != n)
                                break;
                } else
                        hexdump_feed(&h, buf, n);
                done += n;
        }
        if (a->json)
                printf("\"\n}\n");
        else if (!a->raw)
                hexdump_end(&h);
        return flush_output();
}

/* --- reload and upgrade --- */

int cmd_reload(Client *c, const char *path, const Args *a) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        Message m = SHMEM__MESSAGE__INIT;
        int r;

        m.body_case = SHMEM__MESSAGE__BODY_RELOAD;
        m.reload = &(Shmem__Reload) SHMEM__RELOAD__INIT;
        /* A refused file comes back as BAD_REQUEST with "FILE:LINE: reason": call() prints it. */
        r = call(c, path, "reload", &m, &reply);
        if (r == EXIT_OK && a->json) {
                Json j;

                json_init_pretty(&j, stdout);
                json_object_begin(&j);
                json_key(&j, "reloaded");
                json_bool(&j, true);
                json_object_end(&j);
                r = flush_output();
        }
        return r;
}

/*
 * Whether the image @c talks to says its last upgrade failed (BrokerStatus),
 * why into @why; a broker before BrokerStatus.upgrade_failed never says.
 */
static bool upgrade_failed(Client *c, char why[STR_ESCAPE_SIZE(512)]) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        Message m = SHMEM__MESSAGE__INIT;
        const Shmem__BrokerStatusReply *s;

        m.body_case = SHMEM__MESSAGE__BODY_BROKER_STATUS;
        m.broker_status = &(Shmem__BrokerStatus) SHMEM__BROKER_STATUS__INIT;
        if (client_call(c, &m, CLIENT_TIMEOUT_MS, &reply) < 0 ||
            client_reply_status(reply, NULL) != SHMEM__STATUS__OK ||
            reply->msg->reply->body_case != SHMEM__REPLY__BODY_BROKER_STATUS)
                return false;
        s = reply->msg->reply->broker_status;
        if (!s || !s->upgrade_failed || !*s->upgrade_failed)
                return false;
        str_escape(why, STR_ESCAPE_SIZE(512), s->upgrade_failed);
        return true;
}

/*
 * The broker replies to Upgrade and re-executes once its queues are written
 * (at most 100 ms later); until then the old image still answers. A new
 * connection whose Hello carries another instance than @c's is answered by
 * the new image.
 */
int cmd_upgrade(Client *c, const char *path, const Args *a) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        _cleanup_free_ char *was = NULL;
        char why[STR_ESCAPE_SIZE(512)];
        Message m = SHMEM__MESSAGE__INIT;
        uint64_t before = client_broker_instance(c);
        int64_t deadline, refused_since = -1;
        int r, last = 0; /* the last attempt: 0 = the old image answered, else -errno */

        was = strdup(client_broker(c));
        if (!was)
                return report_unreachable(path, -ENOMEM, false);
        m.body_case = SHMEM__MESSAGE__BODY_UPGRADE;
        m.upgrade = &(Shmem__Upgrade) SHMEM__UPGRADE__INIT;
        r = call(c, path, "upgrade", &m, &reply);
        if (r != EXIT_OK)
                return r;

        deadline = now_ms() + UPGRADE_TIMEOUT_MS;
        for (;;) {
                _cleanup_(client_freep) Client *n = NULL;
                int64_t left = deadline - now_ms();

                if (left <= 0)
                        break;
                r = client_connect(&n, path, "shmemctl",
                                   left < CLIENT_TIMEOUT_MS ? (int) left : CLIENT_TIMEOUT_MS);
                if (r > 0)
                        return report_refused(path, r, "the upgraded broker refused the connection");
                if (r == 0 && client_broker_instance(n) != before) {
                        if (a->json) {
                                Json j;

                                json_init_pretty(&j, stdout);
                                json_object_begin(&j);
                                json_key(&j, "broker");
                                json_string(&j, client_broker(n));
                                json_key(&j, "previous");
                                json_string(&j, was);
                                json_object_end(&j);
                        } else
                                printf("upgraded: %s (was %s)\n", client_broker(n), was);
                        return flush_output();
                }
                if (r == 0 && upgrade_failed(n, why)) {
                        fprintf(stderr, "shmemctl: the broker at %s did not upgrade and goes on: %s\n", path, why);
                        return EXIT_REFUSED;
                }
                last = r;
                if (r != -ECONNREFUSED && r != -ENOENT)
                        refused_since = -1;
                else if (refused_since < 0)
                        refused_since = now_ms();
                else if (now_ms() - refused_since >= UPGRADE_GONE_MS) {
                        fprintf(stderr,
                                "shmemctl: the broker at %s is gone after the upgrade (%s): the new image "
                                "did not start (see the broker's log)\n",
                                path, strerror(-r));
                        return EXIT_UNREACHABLE;
                }
                sleep_ms(UPGRADE_RETRY_MS);
        }
        if (last == 0) {
                fprintf(stderr,
                        "shmemctl: the broker at %s accepted the upgrade, but after %d s the old image still "
                        "answers: the re-execution did not happen (see the broker's log)\n",
                        path, UPGRADE_TIMEOUT_MS / 1000);
                return EXIT_REFUSED;
        }
        fprintf(stderr, "shmemctl: the broker at %s did not answer within %d s of the upgrade: %s\n", path,
                UPGRADE_TIMEOUT_MS / 1000, strerror(-last));
        return EXIT_UNREACHABLE;
}
