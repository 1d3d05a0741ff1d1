/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>

#include "json.h"

void json_init(Json *j, FILE *f) {
        *j = (Json) { .f = f };
        j->first[0] = true;
}

void json_init_pretty(Json *j, FILE *f) {
        json_init(j, f);
        j->pretty = true;
}

void json_result_begin(Json *j, const char *region) {
        json_init_pretty(j, stdout);
        json_object_begin(j);
        json_key(j, "region");
        json_string(j, region);
}

static void json_newline(Json *j, unsigned depth) {
        if (!j->pretty)
                return;
        fputc('\n', j->f);
        for (unsigned i = 0; i < depth; i++)
                fputs("   ", j->f);
}

/* Length of the valid UTF-8 sequence at @s, or 0 if it is not one (RFC 3629 table 3-7). */
static size_t utf8_valid_len(const unsigned char *s) {
        unsigned char c = s[0];
        unsigned char lo = 0x80, hi = 0xbf;
        size_t n;

        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf)
                n = 2;
        else if (c >= 0xe0 && c <= 0xef) {
                n = 3;
                if (c == 0xe0)
                        lo = 0xa0; /* overlong */
                if (c == 0xed)
                        hi = 0x9f; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
                n = 4;
                if (c == 0xf0)
                        lo = 0x90; /* overlong */
                if (c == 0xf4)
                        hi = 0x8f; /* beyond U+10FFFF */
        } else
                return 0;
        if (s[1] < lo || s[1] > hi)
                return 0;
        for (size_t i = 2; i < n; i++)
                if (s[i] < 0x80 || s[i] > 0xbf)
                        return 0;
        return n;
}

void json_write_string(FILE *f, const char *str) {
        const unsigned char *s = (const unsigned char *) (str ? str : "");

        fputc('"', f);
        while (*s) {
                size_t n = utf8_valid_len(s);

                if (n == 0) {
                        fputs("\\ufffd", f);
                        s++;
                        continue;
                }
                if (n > 1) {
                        fwrite(s, 1, n, f);
                        s += n;
                        continue;
                }
                switch (*s) {
                case '"':
                        fputs("\\\"", f);
                        break;
                case '\\':
                        fputs("\\\\", f);
                        break;
                case '\b':
                        fputs("\\b", f);
                        break;
                case '\f':
                        fputs("\\f", f);
                        break;
                case '\n':
                        fputs("\\n", f);
                        break;
                case '\r':
                        fputs("\\r", f);
                        break;
                case '\t':
                        fputs("\\t", f);
                        break;
                default:
                        if (*s < 0x20)
                                fprintf(f, "\\u%04x", *s);
                        else
                                fputc(*s, f);
                }
                s++;
        }
        fputc('"', f);
}

/* Writes the separator a new value needs at the current depth. */
static void json_value_prefix(Json *j) {
        if (j->after_key) {
                j->after_key = false;
                return;
        }
        if (!j->first[j->depth])
                fputc(',', j->f);
        j->first[j->depth] = false;
        if (j->depth > 0)
                json_newline(j, j->depth);
}

static void json_open(Json *j, char c) {
        json_value_prefix(j);
        fputc(c, j->f);
        if (j->depth < JSON_DEPTH_MAX)
                j->depth++;
        j->first[j->depth] = true;
}

static void json_close(Json *j, char c) {
        if (!j->first[j->depth] && j->depth > 0)
                json_newline(j, j->depth - 1);
        fputc(c, j->f);
        if (j->depth > 0)
                j->depth--;
        if (j->depth == 0)
                fputc('\n', j->f);
}

void json_object_begin(Json *j) {
        json_open(j, '{');
}

void json_object_end(Json *j) {
        json_close(j, '}');
}

void json_array_begin(Json *j) {
        json_open(j, '[');
}

void json_array_end(Json *j) {
        json_close(j, ']');
}

void json_key(Json *j, const char *key) {
        json_value_prefix(j);
        json_write_string(j->f, key);
        fputs(j->pretty ? ": " : ":", j->f);
        j->after_key = true;
}

void json_string(Json *j, const char *s) {
        json_value_prefix(j);
        json_write_string(j->f, s);
}

void json_string_opt(Json *j, const char *s) {
        if (s && *s)
                json_string(j, s);
        else
                json_null(j);
}

void json_uint(Json *j, uint64_t v) {
        json_value_prefix(j);
        fprintf(j->f, "%" PRIu64, v);
}

void json_bool(Json *j, bool v) {
        json_value_prefix(j);
        fputs(v ? "true" : "false", j->f);
}

void json_null(Json *j) {
        json_value_prefix(j);
        fputs("null", j->f);
}

void json_bits(Json *j, uint64_t bits) {
        bool first = true;

        json_value_prefix(j);
        fputc('[', j->f);
        for (unsigned i = 0; i < 64; i++)
                if (bits & (UINT64_C(1) << i)) {
                        fprintf(j->f, "%s%u", first ? "" : j->pretty ? ", " : ",", i);
                        first = false;
                }
        fputc(']', j->f);
        if (j->depth == 0)
                fputc('\n', j->f);
}
