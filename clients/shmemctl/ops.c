/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmemctl's operations commands: watch the broker's events, signal or dump
 * a region as a short-lived peer, reload the configuration, upgrade the
 * broker in place.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>

#include "events.h"
#include "shmemctl.h"

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
                        event_print(stdout, e->msg, a->json);
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
