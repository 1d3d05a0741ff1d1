/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The monotonic clock, as every component reads it: timeouts and deadlines. */

#include <errno.h>
#include <stdint.h>
#include <time.h>

static inline int64_t now_ns(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t now_ms(void) {
        return now_ns() / 1000000;
}

/* Sleeps @ms milliseconds, signals or not. */
static inline void sleep_ms(int ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000 };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}
