/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* shmem-tool's output lines and number parsing (tool.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

void out(const char *fmt, ...) {
        va_list ap;

        fputs("shmem-tool: ", stdout);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        fputc('\n', stdout);
}

/* Prints the FAIL line; returns -1 so that `return fail(...)` ends the run. */
int fail(const char *fmt, ...) {
        va_list ap;

        fputs("shmem-tool: FAIL ", stdout);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        fputc('\n', stdout);
        return -1;
}

int parse_u64(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;
        bool hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');

        errno = 0;
        v = strtoull(hex ? s + 2 : s, &end, hex ? 16 : 10);
        if (errno || end == (hex ? s + 2 : s) || *end || s[0] == '-' || s[0] == '+' || (hex && s[2] == '-'))
                return -EINVAL;
        *ret = v;
        return 0;
}

int parse_ms(const char *s, int *ret) {
        uint64_t v;

        if (parse_u64(s, &v) < 0 || v > INT32_MAX)
                return -EINVAL;
        *ret = (int) v;
        return 0;
}

int parse_size(const char *s, uint64_t *ret) {
        char buf[32];
        size_t n = strlen(s);
        unsigned shift = 0;
        uint64_t v;

        if (n == 0 || n >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, s, n + 1);
        switch (buf[n - 1]) {
        case 'K': case 'k': shift = 10; break;
        case 'M': case 'm': shift = 20; break;
        case 'G': case 'g': shift = 30; break;
        default: break;
        }
        if (shift)
                buf[n - 1] = '\0';
        if (parse_u64(buf, &v) < 0 || v > (UINT64_MAX >> shift))
                return -EINVAL;
        *ret = v << shift;
        return 0;
}
