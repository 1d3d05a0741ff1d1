/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

/* The only process-wide state of the daemon: logging is per process by nature. */
static int log_max_level = LOG_INFO;

void log_set_max_level(int level) {
        log_max_level = level;
}

int log_get_max_level(void) {
        return log_max_level;
}

void log_internal(int level, int error, const char *fmt, ...) {
        static const char *const prefix[] = { "EMERG", "ALERT", "CRIT", "ERROR",
                                              "WARNING", "NOTICE", "INFO", "DEBUG" };
        char buf[1024];
        va_list ap;
        int saved = errno;

        if (level > log_max_level)
                return;
        if (error)
                errno = error < 0 ? -error : error; /* for %m */
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        if (getenv("JOURNAL_STREAM"))
                fprintf(stderr, "<%d>%s\n", level, buf);
        else
                fprintf(stderr, "shmem-brokerd: %s%s%s\n", level <= LOG_WARNING ? prefix[level & 7] : "",
                        level <= LOG_WARNING ? ": " : "", buf);
        errno = saved;
}

static unsigned long long now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (unsigned long long) ts.tv_sec * 1000000ULL + (unsigned long long) ts.tv_nsec / 1000;
}

bool ratelimit_below(RateLimit *rl) {
        unsigned long long t = now_usec();

        if (rl->begin == 0 || t - rl->begin >= rl->interval_usec) {
                if (rl->suppressed > 0)
                        log_internal(LOG_WARNING, 0, "%u log lines about misbehaving peers suppressed",
                                     rl->suppressed);
                rl->begin = t;
                rl->count = 0;
                rl->suppressed = 0;
        }
        if (rl->count < rl->burst) {
                rl->count++;
                return true;
        }
        rl->suppressed++;
        return false;
}

bool log_peer_ratelimit(void) {
        static RateLimit rl = RATELIMIT_INIT(1000000ULL, 20);

        return ratelimit_below(&rl);
}
