/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "answer.h"
#include "clock.h"
#include "escape.h"

bool hotplug_verbose;
int64_t hotplug_started_ns;

void debug(const char *fmt, ...) {
        va_list ap;

        if (!hotplug_verbose)
                return;
        va_start(ap, fmt);
        fprintf(stderr, "shmem-hotplug: [%" PRId64 " ms] ", (now_ns() - hotplug_started_ns) / 1000000);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
}

int answerv(int status, const char *word, const char *fmt, va_list ap) {
        char detail[DETAIL_MAX], escaped[STR_ESCAPE_SIZE(DETAIL_MAX)];

        vsnprintf(detail, sizeof(detail), fmt, ap);
        str_escape(escaped, sizeof(escaped), detail);
        printf("%s%s%s\n", word, *escaped ? " " : "", escaped);
        fflush(stdout);
        return status;
}

int answer(int status, const char *word, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = answerv(status, word, fmt, ap);
        va_end(ap);
        return r;
}

int usage_error(const char *fmt, ...) {
        va_list ap;
        int r;

        fprintf(stderr, "shmem-hotplug: see --help\n");
        va_start(ap, fmt);
        r = answerv(EXIT_USAGE, "error usage", fmt, ap);
        va_end(ap);
        return r;
}

bool parse_number(const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
        unsigned long long v;
        char *end;

        if (s[0] < '0' || s[0] > '9')
                return false; /* strtoull takes "-1" and " 1" */
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || *end || v < min || v > max)
                return false;
        *ret = v;
        return true;
}
