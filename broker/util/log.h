/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Logging of the daemon: one record per event. Under journald (stderr is the
 * journal stream $JOURNAL_STREAM names) a record is a datagram of journald's
 * native protocol, with MESSAGE=, PRIORITY=, CODE_* and the fields of the
 * event (LogFields); otherwise, or when that send fails, a line on stderr,
 * "<N>" priority-prefixed when stderr is the journal. Only broker-level code
 * logs; proto/ and the client library return errors instead.
 */

#include <stdarg.h>
#include <stdbool.h>
#include <sys/types.h>
#include <syslog.h>

#include "log-catalog.h"

/*
 * What a record says beyond its message, as journal fields (docs/systemd.md):
 * a string NULL and a has_* false leave the field out. Strings are passed as
 * they are, newlines and control characters included (binary-safe fields);
 * the message escapes them itself.
 */
typedef struct LogFields {
        const char *message_id; /* LOG_MID_* of log-catalog.h */
        const char *region;
        const char *peer_label; /* a host peer's Hello label */
        const char *vm_name, *vm_uuid;
        bool has_peer; /* peer_pid and peer_uid are set */
        pid_t peer_pid;
        uid_t peer_uid;
        bool has_index;
        unsigned peer_index;
} LogFields;

void log_set_max_level(int level);
int log_get_max_level(void);
void log_emit(int level, int error, const LogFields *fields, const char *file, int line, const char *func,
              const char *fmt, ...) __attribute__((format(printf, 7, 8)));

#define log_internal(level, error, ...) log_emit((level), (error), NULL, __FILE__, __LINE__, __func__, __VA_ARGS__)
/* A record with the fields @f: LOG_FIELDS(.region = name, ...), or a const LogFields *. */
#define LOG_FIELDS(...) (&(const LogFields) { __VA_ARGS__ })
#define log_event(level, f, ...) log_emit((level), 0, (f), __FILE__, __LINE__, __func__, __VA_ARGS__)

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
/* The same with the fields @f. */
#define log_peer_warning_event(f, ...)                                           \
        do {                                                                     \
                if (log_peer_ratelimit())                                        \
                        log_event(LOG_WARNING, (f), __VA_ARGS__);                \
        } while (0)
bool log_peer_ratelimit(void);
