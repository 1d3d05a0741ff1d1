/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "progress.h"

#define PROGRESS_DELAY_MS 500
#define PROGRESS_PERIOD_MS 500

static struct {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        pthread_t thread;
        bool running, stop, drawn;
        int64_t start_ms;
        char text[256];
} P = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* Under P.lock. "\r" and erase-to-end: the line was cut to the terminal's width, so it is one row. */
static void erase(void) {
        if (P.drawn)
                fputs("\r\033[K", stderr);
        P.drawn = false;
}

static void draw(int64_t now) {
        struct winsize ws = {};
        unsigned long ms = (unsigned long) (now - P.start_ms);
        char line[320];
        int n, cols;

        n = snprintf(line, sizeof(line), "%s... %lu.%lu s", P.text, ms / 1000, ms % 1000 / 100);
        cols = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 ? ws.ws_col - 1 : 79;
        if (n > cols)
                n = cols;
        fprintf(stderr, "\r%.*s\033[K", n, line);
        fflush(stderr);
        P.drawn = true;
}

static void *progress_thread(void *unused) {
        int64_t next = P.start_ms + PROGRESS_DELAY_MS;

        (void) unused;
        pthread_mutex_lock(&P.lock);
        while (!P.stop) {
                int64_t now = now_ms();

                if (now >= next) {
                        draw(now);
                        next += PROGRESS_PERIOD_MS;
                        continue;
                }
                pthread_cond_timedwait(&P.cond, &P.lock,
                                       &(struct timespec) { .tv_sec = next / 1000,
                                                            .tv_nsec = (long) (next % 1000) * 1000000 });
        }
        erase();
        pthread_mutex_unlock(&P.lock);
        return NULL;
}

void progress_begin(const char *fmt, ...) {
        pthread_condattr_t attr;
        va_list ap;

        if (P.running || !isatty(STDERR_FILENO))
                return;
        va_start(ap, fmt);
        vsnprintf(P.text, sizeof(P.text), fmt, ap);
        va_end(ap);
        /* now_ms() is CLOCK_MONOTONIC's, and so are the waits. */
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&P.cond, &attr);
        pthread_condattr_destroy(&attr);
        P.start_ms = now_ms();
        P.stop = P.drawn = false;
        /* Without the thread there is no line: the operation runs the same. */
        P.running = pthread_create(&P.thread, NULL, progress_thread, NULL) == 0;
        if (!P.running)
                pthread_cond_destroy(&P.cond);
}

void progress_end(void) {
        if (!P.running)
                return;
        pthread_mutex_lock(&P.lock);
        P.stop = true;
        pthread_cond_signal(&P.cond);
        pthread_mutex_unlock(&P.lock);
        pthread_join(P.thread, NULL);
        pthread_cond_destroy(&P.cond);
        P.running = false;
}

void progress_veprintf(const char *fmt, va_list ap) {
        pthread_mutex_lock(&P.lock);
        erase();
        vfprintf(stderr, fmt, ap);
        pthread_mutex_unlock(&P.lock);
}

void progress_eprintf(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        progress_veprintf(fmt, ap);
        va_end(ap);
}
