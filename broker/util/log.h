/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Logging of the daemon: one line per event on stderr, with a "<N>" syslog
 * priority prefix when stderr is the journal ($JOURNAL_STREAM), so journald
 * files each line at its level. Only broker-level code logs; proto/ and the
 * client library return errors instead.
 */

#include <stdarg.h>
#include <stdbool.h>
#include <syslog.h>

void log_set_max_level(int level);
int log_get_max_level(void);
void log_internal(int level, int error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Returns -abs(error), so "return log_error_errno(r, ...)" logs and propagates. */
#define log_full_errno(level, error, ...) ({ int _e = (error); log_internal((level), _e, __VA_ARGS__); _e < 0 ? _e : -_e; })
#define log_debug(...) log_internal(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...) log_internal(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...) log_internal(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_internal(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...) log_internal(LOG_ERR, 0, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, (e), __VA_ARGS__)

/*
 * A token bucket for lines a remote party can provoke (a misbehaving peer
 * must not flood the journal): at most @burst lines per @interval_usec.
 */
typedef struct RateLimit {
        unsigned long long interval_usec, begin;
        unsigned burst, count, suppressed;
} RateLimit;
#define RATELIMIT_INIT(i, b) { .interval_usec = (i), .burst = (b) }
bool ratelimit_below(RateLimit *rl);

/* Logs at warning level through one shared limiter for peer-caused events. */
#define log_peer_warning(...)                                                    \
        do {                                                                     \
                if (log_peer_ratelimit())                                        \
                        log_internal(LOG_WARNING, 0, __VA_ARGS__);               \
        } while (0)
bool log_peer_ratelimit(void);
