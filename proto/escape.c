/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "escape.h"

/*
 * Length of the well-formed UTF-8 sequence at @s (at most @n bytes), 0 if
 * there is none (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF);
 * its code point in *@ret.
 */
static size_t utf8_sequence(const unsigned char *s, size_t n, uint32_t *ret) {
        uint32_t cp;
        size_t len;

        if (s[0] < 0x80) {
                *ret = s[0];
                return 1;
        }
        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                len = 2, cp = s[0] & 0x1f;
        else if (s[0] >= 0xe0 && s[0] <= 0xef)
                len = 3, cp = s[0] & 0x0f;
        else if (s[0] >= 0xf0 && s[0] <= 0xf4)
                len = 4, cp = s[0] & 0x07;
        else
                return 0;
        if (len > n)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        *ret = cp;
        return len;
}

int str_is_utf8(const char *s, size_t n) {
        const unsigned char *p = (const unsigned char *) s;

        for (size_t i = 0; i < n;) {
                uint32_t cp;
                size_t len = utf8_sequence(p + i, n - i, &cp);

                if (len == 0 || cp == 0)
                        return 0;
                i += len;
        }
        return 1;
}

size_t str_utf8_cut(const char *s, size_t n, size_t max) {
        if (n <= max)
                return n;
        /* s[max] is the first byte left out: back off the sequence it continues. */
        while (max > 0 && ((unsigned char) s[max] & 0xc0) == 0x80)
                max--;
        return max;
}

char *str_escape_n(char *buf, size_t size, const char *s, size_t n) {
        static const char hex[] = "0123456789abcdef";
        const unsigned char *p = (const unsigned char *) s;
        size_t out = 0;

        if (size < 4) {
                if (size > 0)
                        buf[0] = 0;
                return buf;
        }
        for (size_t i = 0; i < n;) {
                /* No code point when there is no sequence: not the previous one's (a backslash's). */
                uint32_t cp = 0;
                size_t len = utf8_sequence(p + i, n - i, &cp), need;
                bool plain = len > 0 && cp >= 0x20 && cp != 0x7f && !(cp >= 0x80 && cp <= 0x9f) && cp != '\\';

                if (!plain)
                        len = len ? len : 1;
                need = plain ? len : cp == '\\' && len == 1 ? 2 : 4 * len;
                /* Room for this piece and, if more follows, for "..." and the NUL. */
                if (out + need + (i + len < n ? 3 : 0) + 1 > size) {
                        while (out + 4 > size)
                                out--;
                        memcpy(buf + out, "...", 3);
                        out += 3;
                        break;
                }
                if (plain)
                        memcpy(buf + out, p + i, len), out += len;
                else if (cp == '\\' && len == 1)
                        buf[out++] = '\\', buf[out++] = '\\';
                else
                        for (size_t k = 0; k < len; k++) {
                                buf[out++] = '\\';
                                buf[out++] = 'x';
                                buf[out++] = hex[p[i + k] >> 4];
                                buf[out++] = hex[p[i + k] & 15];
                        }
                i += len;
        }
        buf[out] = 0;
        return buf;
}

char *str_escape(char *buf, size_t size, const char *s) {
        return str_escape_n(buf, size, s ? s : "", s ? strlen(s) : 0);
}
