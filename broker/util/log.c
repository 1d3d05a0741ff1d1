/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* The only process-wide state of the daemon: logging is per process by nature. */
static int log_max_level = LOG_INFO;

/* Where records go, decided at the first one (a re-executed broker decides again). */
enum { TARGET_UNKNOWN, TARGET_STDERR, TARGET_STREAM, TARGET_JOURNAL };
static int log_target = TARGET_UNKNOWN;
static int journal_fd = -1;

#define JOURNAL_SOCKET "/run/systemd/journal/socket"
#define JOURNAL_RECORD_MAX 8192 /* a message of 1 KiB and fields of at most a few hundred bytes each */

void log_set_max_level(int level) {
        log_max_level = level;
}

int log_get_max_level(void) {
        return log_max_level;
}

/* Whether stderr is the stream $JOURNAL_STREAM ("DEV:INODE") names: systemd sets it for the
 * service's stdout/stderr, and a child that redirected stderr keeps the variable. */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;
        int n = 0;

        if (!e || sscanf(e, "%llu:%llu%n", &dev, &ino, &n) != 2 || e[n] != '\0')
                return false;
        return fstat(STDERR_FILENO, &st) == 0 && (unsigned long long) st.st_dev == dev &&
               (unsigned long long) st.st_ino == ino;
}

static void log_decide_target(void) {
        if (!stderr_is_journal()) {
                log_target = TARGET_STDERR;
                return;
        }
        log_target = TARGET_STREAM;
        /* Non-blocking: a busy journald gets the line on stderr, the loop does not wait. */
        journal_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (journal_fd >= 0)
                log_target = TARGET_JOURNAL;
}

typedef struct Record {
        char buf[JOURNAL_RECORD_MAX];
        size_t len;
        bool overflow;
} Record;

/* FIELD=value, or, for a value with a newline, journald's binary form: FIELD, a newline,
 * the value's length as 64-bit little endian, the value and a newline. */
static void record_add(Record *r, const char *field, const char *value, size_t n) {
        size_t f = strlen(field);
        bool binary = memchr(value, '\n', n) != NULL;

        if (r->overflow || r->len + f + 1 + (binary ? 8 : 0) + n + 1 > sizeof(r->buf)) {
                r->overflow = true;
                return;
        }
        memcpy(r->buf + r->len, field, f);
        r->len += f;
        if (binary) {
                uint64_t le = htole64((uint64_t) n);

                r->buf[r->len++] = '\n';
                memcpy(r->buf + r->len, &le, sizeof(le));
                r->len += sizeof(le);
        } else
                r->buf[r->len++] = '=';
        memcpy(r->buf + r->len, value, n);
        r->len += n;
        r->buf[r->len++] = '\n';
}

static void record_add_str(Record *r, const char *field, const char *value) {
        if (value)
                record_add(r, field, value, strlen(value));
}

static void record_add_num(Record *r, const char *field, unsigned long long v) {
        char num[24];

        record_add(r, field, num, (size_t) snprintf(num, sizeof(num), "%llu", v));
}

/* One datagram to journald; false if it did not take it (no socket, full, too big). */
static bool journal_send(int level, int error, const LogFields *f, const char *file, int line, const char *func,
                         const char *message) {
        static const struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = JOURNAL_SOCKET };
        Record r = { .len = 0 };
        struct iovec iov;

        record_add_str(&r, "MESSAGE", message);
        record_add_num(&r, "PRIORITY", (unsigned) level & 7);
        record_add_str(&r, "SYSLOG_IDENTIFIER", "shmem-brokerd");
        record_add_str(&r, "CODE_FILE", file);
        record_add_num(&r, "CODE_LINE", (unsigned) line);
        record_add_str(&r, "CODE_FUNC", func);
        if (error)
                record_add_num(&r, "ERRNO", (unsigned) (error < 0 ? -error : error));
        if (f) {
                record_add_str(&r, "MESSAGE_ID", f->message_id);
                record_add_str(&r, "REGION", f->region);
                if (f->has_peer) {
                        record_add_num(&r, "PEER_PID", (unsigned long long) f->peer_pid);
                        record_add_num(&r, "PEER_UID", (unsigned long long) f->peer_uid);
                }
                if (f->has_index)
                        record_add_num(&r, "PEER_INDEX", f->peer_index);
                record_add_str(&r, "PEER_LABEL", f->peer_label);
                record_add_str(&r, "VM_NAME", f->vm_name);
                record_add_str(&r, "VM_UUID", f->vm_uuid);
        }
        if (r.overflow)
                return false;
        iov = (struct iovec) { .iov_base = r.buf, .iov_len = r.len };
        return sendmsg(journal_fd,
                       &(struct msghdr) { .msg_name = (void *) &sa, .msg_namelen = sizeof(sa), .msg_iov = &iov,
                                          .msg_iovlen = 1 },
                       MSG_NOSIGNAL) == (ssize_t) r.len;
}

void log_emit(int level, int error, const LogFields *fields, const char *file, int line, const char *func,
              const char *fmt, ...) {
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
        if (log_target == TARGET_UNKNOWN)
                log_decide_target();
        if (log_target == TARGET_JOURNAL && journal_send(level, error, fields, file, line, func, buf)) {
                errno = saved;
                return;
        }
        /* Not journald's, or it did not take the record: the line, which loses the fields only. */
        if (log_target != TARGET_STDERR)
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
