/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests of shmemctl's pure parts: clients/shmemctl/units.c and json.c. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "json.h"
#include "test-util.h"
#include "units.h"

START_TEST(test_parse_size) {
        static const struct {
                const char *s;
                uint64_t v;
        } good[] = {
                { "0", 0 },
                { "4096", 4096 },
                { "1K", 1024 },
                { "64k", 65536 },
                { "64KiB", 65536 },
                { "64kb", 65536 },
                { "1M", 1 << 20 },
                { "2G", UINT64_C(2) << 30 },
                { "1T", UINT64_C(1) << 40 },
                { "512B", 512 },
                { "18446744073709551615", UINT64_MAX },
                { "16777215T", UINT64_C(16777215) << 40 },
        };
        static const char *const bad[] = { "", "K", "-1", " 1", "1 ", "1.5M", "1KK", "1X", "1iB",
                                           "0x10", "1Kb2", NULL };
        uint64_t v;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                v = 12345;
                ck_assert_msg(units_parse_size(good[i].s, &v) == 0, "'%s' refused", good[i].s);
                ck_assert_uint_eq(v, good[i].v);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                v = 12345;
                ck_assert_msg(units_parse_size(bad[i], &v) == -EINVAL, "'%s' accepted", bad[i]);
                ck_assert_uint_eq(v, 12345);
        }
        ck_assert_int_eq(units_parse_size("18446744073709551616", &v), -ERANGE);
        ck_assert_int_eq(units_parse_size("16777216T", &v), -ERANGE);
}
END_TEST

START_TEST(test_format_size) {
        char buf[UNITS_SIZE_STR_MAX];
        uint64_t back;

        ck_assert_str_eq(units_format_size(buf, 0), "0");
        ck_assert_str_eq(units_format_size(buf, 1000), "1000");
        ck_assert_str_eq(units_format_size(buf, 4096), "4K");
        ck_assert_str_eq(units_format_size(buf, 102400), "100K");
        ck_assert_str_eq(units_format_size(buf, 1 << 20), "1M");
        ck_assert_str_eq(units_format_size(buf, (1 << 20) + 4096), "1028K");
        ck_assert_str_eq(units_format_size(buf, UINT64_C(3) << 30), "3G");
        ck_assert_str_eq(units_format_size(buf, UINT64_C(5) << 40), "5T");
        ck_assert_str_eq(units_format_size(buf, UINT64_MAX), "18446744073709551615");
        /* What is shown parses back to the same number. */
        ck_assert_int_eq(units_parse_size(units_format_size(buf, 1028 * 1024), &back), 0);
        ck_assert_uint_eq(back, 1028 * 1024);
}
END_TEST

START_TEST(test_format_bits) {
        char buf[UNITS_BITS_STR_MAX];

        ck_assert_str_eq(units_format_bits(buf, 0), "-");
        ck_assert_str_eq(units_format_bits(buf, 0x5), "0,2");
        ck_assert_str_eq(units_format_bits(buf, UINT64_C(1) << 63), "63");
        units_format_bits(buf, UINT64_MAX);
        ck_assert_uint_eq(strlen(buf), 10 + 54 * 2 + 63);
        ck_assert(strncmp(buf, "0,1,2,", 6) == 0);
}
END_TEST

/* Runs @fn on a Json writing to memory and returns what it wrote (free it). */
static char *json_capture(void (*fn)(Json *j)) {
        char *buf = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&buf, &n);
        Json j;

        ck_assert_ptr_nonnull(f);
        json_init(&j, f);
        fn(&j);
        fclose(f);
        return buf;
}

static char *escape(const char *s) {
        char *buf = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&buf, &n);

        json_write_string(f, s);
        fclose(f);
        return buf;
}

START_TEST(test_json_escaping) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "plain", "\"plain\"" },
                { "", "\"\"" },
                { "q\"b\\s/", "\"q\\\"b\\\\s/\"" },
                { "\n\r\t\b\f", "\"\\n\\r\\t\\b\\f\"" },
                { "\x01\x1f\x7f", "\"\\u0001\\u001f\x7f\"" },
                { "é€😀", "\"é€😀\"" },                          /* valid UTF-8 passes through */
                { "a\xff" "b", "\"a\\ufffdb\"" },                   /* invalid byte */
                { "\xc3", "\"\\ufffd\"" },                          /* truncated sequence */
                { "\xc0\xaf", "\"\\ufffd\\ufffd\"" },               /* overlong '/' */
                { "\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"" },    /* a surrogate */
                { "\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"" }, /* > U+10FFFF */
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *got = escape(cases[i].in);

                ck_assert_msg(strcmp(got, cases[i].out) == 0, "case %zu: got %s want %s", i, got,
                              cases[i].out);
        }
        {
                _cleanup_free_ char *got = escape(NULL);

                ck_assert_str_eq(got, "\"\"");
        }
}
END_TEST

static void write_document(Json *j) {
        json_object_begin(j);
        json_key(j, "name");
        json_string(j, "r\"1");
        json_key(j, "size");
        json_uint(j, UINT64_MAX);
        json_key(j, "ok");
        json_bool(j, true);
        json_key(j, "active");
        json_bits(j, 0x5);
        json_key(j, "none");
        json_bits(j, 0);
        json_key(j, "list");
        json_array_begin(j);
        json_object_begin(j);
        json_object_end(j);
        json_object_begin(j);
        json_key(j, "a");
        json_bool(j, false);
        json_object_end(j);
        json_array_end(j);
        json_object_end(j);
}

START_TEST(test_json_document) {
        _cleanup_free_ char *got = json_capture(write_document);

        ck_assert_str_eq(got, "{\"name\":\"r\\\"1\",\"size\":18446744073709551615,\"ok\":true,"
                              "\"active\":[0,2],\"none\":[],\"list\":[{},{\"a\":false}]}\n");
}
END_TEST

static Suite *shmemctl_suite(void) {
        Suite *s = suite_create("shmemctl");
        TCase *tc;

        tc = tcase_new("units");
        tcase_add_test(tc, test_parse_size);
        tcase_add_test(tc, test_format_size);
        tcase_add_test(tc, test_format_bits);
        suite_add_tcase(s, tc);

        tc = tcase_new("json");
        tcase_add_test(tc, test_json_escaping);
        tcase_add_test(tc, test_json_document);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return run_suite(shmemctl_suite());
}
