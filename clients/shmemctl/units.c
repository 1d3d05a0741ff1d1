/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "units.h"

int units_parse_size(const char *s, uint64_t *ret) {
        static const char suffixes[] = "KMGT";
        uint64_t v = 0, mult = 1;
        const char *p = s;

        if (!s || !isdigit((unsigned char) *p))
                return -EINVAL; /* strtoull would take "-1" and " 1" */
        for (; isdigit((unsigned char) *p); p++) {
                unsigned d = (unsigned) (*p - '0');

                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        if (*p) {
                const char *u = strchr(suffixes, toupper((unsigned char) *p));

                if (u) {
                        for (const char *q = suffixes; q <= u; q++)
                                mult *= 1024;
                        p++;
                        if (strcasecmp(p, "iB") == 0)
                                p += 2;
                }
                if (strcasecmp(p, "B") == 0)
                        p++;
                if (*p)
                        return -EINVAL;
        }
        if (v > UINT64_MAX / mult)
                return -ERANGE;
        *ret = v * mult;
        return 0;
}

int units_parse_mask(const char *s, uint64_t *ret) {
        bool hex = s && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
        unsigned base = hex ? 16 : 10;
        uint64_t v = 0;
        const char *p;

        if (!s)
                return -EINVAL;
        p = hex ? s + 2 : s;
        if (!isxdigit((unsigned char) *p))
                return -EINVAL;
        for (; *p; p++) {
                unsigned d;

                if (isdigit((unsigned char) *p))
                        d = (unsigned) (*p - '0');
                else if (hex && isxdigit((unsigned char) *p))
                        d = (unsigned) (tolower((unsigned char) *p) - 'a' + 10);
                else
                        return -EINVAL;
                if (v > (UINT64_MAX - d) / base)
                        return -ERANGE;
                v = v * base + d;
        }
        *ret = v;
        return 0;
}

char *units_format_size(char buf[static UNITS_SIZE_STR_MAX], uint64_t v) {
        static const char suffixes[] = "TGMK";

        for (unsigned i = 0; v && i < sizeof(suffixes) - 1; i++) {
                unsigned shift = 10 * (unsigned) (sizeof(suffixes) - 1 - i);

                if ((v & ((UINT64_C(1) << shift) - 1)) == 0) {
                        snprintf(buf, UNITS_SIZE_STR_MAX, "%" PRIu64 "%c", v >> shift, suffixes[i]);
                        return buf;
                }
        }
        snprintf(buf, UNITS_SIZE_STR_MAX, "%" PRIu64, v);
        return buf;
}

char *units_format_bits(char buf[static UNITS_BITS_STR_MAX], uint64_t bits) {
        size_t n = 0;

        buf[0] = '\0';
        for (unsigned i = 0; i < 64; i++)
                if (bits & (UINT64_C(1) << i))
                        n += (size_t) snprintf(buf + n, UNITS_BITS_STR_MAX - n, "%s%u", n ? "," : "", i);
        if (n == 0)
                strcpy(buf, "-");
        return buf;
}

char *units_format_time(char buf[static UNITS_TIME_STR_MAX], uint64_t usec) {
        time_t t = (time_t) (usec / 1000000);
        struct tm tm;
        char off[8];
        size_t n;

        if (!localtime_r(&t, &tm)) {
                snprintf(buf, UNITS_TIME_STR_MAX, "@%" PRIu64, usec);
                return buf;
        }
        n = strftime(buf, UNITS_TIME_STR_MAX, "%Y-%m-%dT%H:%M:%S", &tm);
        strftime(off, sizeof(off), "%z", &tm); /* "+0100": ISO 8601 writes "+01:00" */
        snprintf(buf + n, UNITS_TIME_STR_MAX - n, ".%06u%.3s:%.2s", (unsigned) (usec % 1000000), off, off + 3);
        return buf;
}

char *units_format_duration(char buf[static UNITS_DURATION_STR_MAX], uint64_t usec) {
        static const struct {
                const char *name;
                uint64_t s;
        } units[] = { { "d", 86400 }, { "h", 3600 }, { "min", 60 }, { "s", 1 } };
        uint64_t s = usec / 1000000;
        size_t n = 0;
        unsigned shown = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]) && shown < 2; i++) {
                if (s < units[i].s && !shown && units[i].s > 1)
                        continue;
                if (shown && s / units[i].s == 0) {
                        shown++;
                        continue;
                }
                n += (size_t) snprintf(buf + n, UNITS_DURATION_STR_MAX - n, "%s%" PRIu64 "%s", n ? " " : "",
                                       s / units[i].s, units[i].name);
                s %= units[i].s;
                shown++;
        }
        return buf;
}
