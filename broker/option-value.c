/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* An option's value: parsed from text, set into its settings, formatted back (options.h). */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "options.h"

int config_parse_size(const char *s, uint64_t *ret) {
        unsigned long long v;
        unsigned shift = 0;
        char *end;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || end == s || s[0] == '-')
                return -EINVAL;
        switch (*end) {
        case 'K': case 'k': shift = 10; end++; break;
        case 'M': case 'm': shift = 20; end++; break;
        case 'G': case 'g': shift = 30; end++; break;
        case 'T': case 't': shift = 40; end++; break;
        default: break;
        }
        if (*end && strcmp(end, "iB") != 0 && strcmp(end, "B") != 0)
                return -EINVAL;
        if (shift && v > (UINT64_MAX >> shift))
                return -ERANGE;
        *ret = (uint64_t) v << shift;
        return 0;
}

int config_parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret) {
        unsigned long v;
        char *end;

        errno = 0;
        v = strtoul(s, &end, 0);
        if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

/* A URI as libvirt takes them: a scheme of letters, digits, '+', '-', '.', then ':', then printable ASCII. */
static bool uri_ok(const char *s) {
        size_t n = strlen(s), scheme = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");

        if (n >= OPTION_PATH_MAX || scheme == 0 || s[scheme] != ':')
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i] <= ' ' || s[i] >= 0x7f)
                        return false;
        return true;
}

int config_parse_mode(const char *s, unsigned *ret) {
        unsigned mode;
        int n = 0;

        if (sscanf(s, "%o%n", &mode, &n) != 1 || s[n] || s[0] == '-' || s[0] == '+' || mode > 0777)
                return -EINVAL;
        *ret = mode;
        return 0;
}

int option_set(const Option *o, void *settings, const char *value, char *why, size_t why_size) {
        void *field = (char *) settings + o->offset;
        uint64_t v;
        unsigned u;

        switch (o->type) {
        case OPTION_UINT:
                if (config_parse_uint(value, (unsigned) o->min, (unsigned) o->max, &u) < 0) {
                        snprintf(why, why_size, "'%s' is not a number from %llu to %llu", value,
                                 (unsigned long long) o->min, (unsigned long long) o->max);
                        return -EINVAL;
                }
                *(unsigned *) field = u;
                return 0;
        case OPTION_SIZE:
        case OPTION_SIZE_T:
                if (config_parse_size(value, &v) < 0 || v < o->min || v > o->max) {
                        snprintf(why, why_size, "'%s' is not a size (bytes, or with K, M, G, T) from %llu to %llu",
                                 value, (unsigned long long) o->min, (unsigned long long) o->max);
                        return -EINVAL;
                }
                if (o->type == OPTION_SIZE)
                        *(uint64_t *) field = v;
                else
                        *(size_t *) field = (size_t) v;
                return 0;
        case OPTION_MODE:
                if (config_parse_mode(value, &u) < 0) {
                        snprintf(why, why_size, "'%s' is not an octal mode such as 0660", value);
                        return -EINVAL;
                }
                *(unsigned *) field = u;
                return 0;
        case OPTION_GROUP: {
                struct group *g = getgrnam(value);

                if (!g) {
                        snprintf(why, why_size, "unknown group '%s'", value);
                        return -EINVAL;
                }
                *(gid_t *) field = g->gr_gid;
                return 0;
        }
        case OPTION_PATH:
        case OPTION_PATH_OR_EMPTY:
                if ((value[0] != '/' && !(o->type == OPTION_PATH_OR_EMPTY && !value[0])) ||
                    strlen(value) >= OPTION_PATH_MAX) {
                        snprintf(why, why_size, "%s must be an absolute path%s of at most %d bytes", o->key,
                                 o->type == OPTION_PATH_OR_EMPTY ? ", or empty," : "", OPTION_PATH_MAX - 1);
                        return -EINVAL;
                }
                strcpy(field, value);
                return 0;
        case OPTION_URI:
                if (!uri_ok(value)) {
                        snprintf(why, why_size, "%s must be a URI such as qemu:///system (printable ASCII, no "
                                 "spaces, at most %d bytes)", o->key, OPTION_PATH_MAX - 1);
                        return -EINVAL;
                }
                strcpy(field, value);
                return 0;
        }
        snprintf(why, why_size, "%s: unknown option type", o->key);
        return -EINVAL;
}

/* Sizes as their largest exact unit: 1G, 256K, 4097. */
static const char *format_size(uint64_t v, char *buf, size_t size) {
        static const char units[] = "KMGT";
        int u = -1;

        while (u < 3 && v && v % 1024 == 0)
                v /= 1024, u++;
        if (u < 0)
                snprintf(buf, size, "%llu", (unsigned long long) v);
        else
                snprintf(buf, size, "%llu%c", (unsigned long long) v, units[u]);
        return buf;
}

const char *option_format(const Option *o, const void *settings, char *buf, size_t size) {
        const void *field = (const char *) settings + o->offset;

        switch (o->type) {
        case OPTION_UINT:
                snprintf(buf, size, "%u", *(const unsigned *) field);
                return buf;
        case OPTION_SIZE:
                return format_size(*(const uint64_t *) field, buf, size);
        case OPTION_SIZE_T:
                return format_size(*(const size_t *) field, buf, size);
        case OPTION_MODE:
                snprintf(buf, size, "%04o", *(const unsigned *) field);
                return buf;
        case OPTION_GROUP: {
                gid_t gid = *(const gid_t *) field;
                struct group *g = gid == (gid_t) -1 ? NULL : getgrgid(gid);

                snprintf(buf, size, "%s", gid == (gid_t) -1 ? "the broker's" : g ? g->gr_name : "?");
                return buf;
        }
        case OPTION_PATH:
        case OPTION_PATH_OR_EMPTY:
        case OPTION_URI:
                snprintf(buf, size, "%s", (const char *) field);
                return buf;
        }
        return "?";
}

int config_parse_bool(const char *s, bool *ret) {
        if (!strcmp(s, "yes") || !strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "on"))
                *ret = true;
        else if (!strcmp(s, "no") || !strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "off"))
                *ret = false;
        else
                return -EINVAL;
        return 0;
}
