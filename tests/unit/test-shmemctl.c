/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests of shmemctl's pure parts: units.c, json.c, hexdump.c and events.c in clients/shmemctl/. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "events.h"
#include "hexdump.h"
#include "json.h"
#include "region-layout.h"
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

START_TEST(test_parse_mask) {
        static const struct {
                const char *s;
                uint64_t v;
        } good[] = {
                { "0", 0 },
                { "5", 5 },
                { "010", 10 }, /* never octal */
                { "0x5", 5 },
                { "0X1f", 0x1f },
                { "0xFFFFFFFFFFFFFFFF", UINT64_MAX },
                { "18446744073709551615", UINT64_MAX },
        };
        static const char *const bad[] = { "", "0x", "x5", "-1", "+1", " 1", "1 ", "1K", "0x5g", "a",
                                           "0b1", "1,2", NULL };
        uint64_t v;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                v = 12345;
                ck_assert_msg(units_parse_mask(good[i].s, &v) == 0, "'%s' refused", good[i].s);
                ck_assert_uint_eq(v, good[i].v);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                v = 12345;
                ck_assert_msg(units_parse_mask(bad[i], &v) == -EINVAL, "'%s' accepted", bad[i]);
                ck_assert_uint_eq(v, 12345);
        }
        ck_assert_int_eq(units_parse_mask("18446744073709551616", &v), -ERANGE);
        ck_assert_int_eq(units_parse_mask("0x10000000000000000", &v), -ERANGE);
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

START_TEST(test_format_time) {
        char buf[UNITS_TIME_STR_MAX];

        /* 2026-12-01T14:35:59.000042Z, in two zones: the offset as ISO 8601 writes it. */
        setenv("TZ", "UTC", 1);
        tzset();
        ck_assert_str_eq(units_format_time(buf, UINT64_C(1796135759) * 1000000 + 42), "2026-12-01T14:35:59.000042+00:00");
        setenv("TZ", "XST-5:30", 1); /* POSIX: 5 h 30 min east of UTC */
        tzset();
        ck_assert_str_eq(units_format_time(buf, UINT64_C(1796135759) * 1000000 + 999999),
                         "2026-12-01T20:05:59.999999+05:30");
        setenv("TZ", "UTC", 1);
        tzset();
}
END_TEST

START_TEST(test_format_duration) {
        char buf[UNITS_DURATION_STR_MAX];

        ck_assert_str_eq(units_format_duration(buf, 0), "0s");
        ck_assert_str_eq(units_format_duration(buf, 999999), "0s");
        ck_assert_str_eq(units_format_duration(buf, 59 * UINT64_C(1000000)), "59s");
        ck_assert_str_eq(units_format_duration(buf, 123 * UINT64_C(1000000)), "2min 3s");
        ck_assert_str_eq(units_format_duration(buf, 3600 * UINT64_C(1000000)), "1h");
        ck_assert_str_eq(units_format_duration(buf, 3725 * UINT64_C(1000000)), "1h 2min");
        ck_assert_str_eq(units_format_duration(buf, (4 * 86400 + 3600 + 5) * UINT64_C(1000000)), "4d 1h");
        ck_assert_str_eq(units_format_duration(buf, (86400 + 5) * UINT64_C(1000000)), "1d");
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

/* Pretty: a member a line indented by 3 (as libsmartcols' JSON), bit arrays on one line, empty ones "[]". */
START_TEST(test_json_pretty) {
        char *got = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&got, &n);
        Json j;

        ck_assert_ptr_nonnull(f);
        json_init_pretty(&j, f);
        write_document(&j);
        fclose(f);
        ck_assert_str_eq(got, "{\n"
                              "   \"name\": \"r\\\"1\",\n"
                              "   \"size\": 18446744073709551615,\n"
                              "   \"ok\": true,\n"
                              "   \"active\": [0, 2],\n"
                              "   \"none\": [],\n"
                              "   \"list\": [\n"
                              "      {},\n"
                              "      {\n"
                              "         \"a\": false\n"
                              "      }\n"
                              "   ]\n"
                              "}\n");
        free(got);
}
END_TEST

/* Feeds @len bytes of @data to a Hexdump at @offset, @piece bytes at a time; returns the text. */
static char *hexdump_capture(const void *data, size_t len, uint64_t offset, size_t piece) {
        char *buf = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&buf, &n);
        Hexdump h;

        ck_assert_ptr_nonnull(f);
        hexdump_init(&h, f, offset);
        for (size_t i = 0; i < len; i += piece)
                hexdump_feed(&h, (const char *) data + i, len - i < piece ? len - i : piece);
        hexdump_end(&h);
        fclose(f);
        return buf;
}

/* The layout of `hexdump -C` (util-linux), byte for byte. */
START_TEST(test_hexdump_layout) {
        _cleanup_free_ char *short_line = hexdump_capture("hello world\n", 12, 0, 5);
        _cleanup_free_ char *empty = hexdump_capture("", 0, 0x20, 1);
        _cleanup_free_ char *odd = hexdump_capture("A\x01\x7f\xff~ ", 6, 0x123456789, 16);

        ck_assert_str_eq(short_line, "00000000  68 65 6c 6c 6f 20 77 6f  72 6c 64 0a              |hello world.|\n"
                                     "0000000c\n");
        ck_assert_str_eq(empty, "00000020\n");
        /* Offsets grow past 8 digits; non-printables are dots. */
        ck_assert_str_eq(odd, "123456789  41 01 7f ff 7e 20                                 |A...~ |\n"
                              "12345678f\n");
}
END_TEST

START_TEST(test_hexdump_repeats) {
        char data[0x54];
        _cleanup_free_ char *whole = NULL, *pieces = NULL;
        static const char want[] =
                "00000000  68 65 6c 6c 6f 20 77 6f  72 6c 64 2c 20 68 65 6c  |hello world, hel|\n"
                "00000010  6c 6f 20 77 6f 72 6c 64  21 21 00 00 00 00 00 00  |lo world!!......|\n"
                "00000020  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|\n"
                "*\n"
                "00000050  00 00 00 00                                       |....|\n"
                "00000054\n";

        memset(data, 0, sizeof(data));
        memcpy(data, "hello world, hello world!!", 26);
        whole = hexdump_capture(data, sizeof(data), 0, sizeof(data));
        ck_assert_str_eq(whole, want);
        /* The same in pieces that do not fall on line boundaries. */
        pieces = hexdump_capture(data, sizeof(data), 0, 7);
        ck_assert_str_eq(pieces, want);
}
END_TEST

START_TEST(test_hexdump_run_ends) {
        char data[96];
        _cleanup_free_ char *got = NULL;

        /* Two runs of equal lines, each one "*"; the different line between them is shown. */
        memset(data, 'a', sizeof(data));
        memset(data + 48, 'b', 16);
        got = hexdump_capture(data, sizeof(data), 16, 96);
        ck_assert_str_eq(got,
                         "00000010  61 61 61 61 61 61 61 61  61 61 61 61 61 61 61 61  |aaaaaaaaaaaaaaaa|\n"
                         "*\n"
                         "00000040  62 62 62 62 62 62 62 62  62 62 62 62 62 62 62 62  |bbbbbbbbbbbbbbbb|\n"
                         "00000050  61 61 61 61 61 61 61 61  61 61 61 61 61 61 61 61  |aaaaaaaaaaaaaaaa|\n"
                         "*\n"
                         "00000070\n");
}
END_TEST

/* Prints @m with event_print() into memory, after @time if not NULL; NULL if it was not printed. */
static char *event_capture_at(const Message *m, bool json, const char *time) {
        char *buf = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&buf, &n);
        bool printed;

        ck_assert_ptr_nonnull(f);
        printed = event_print(f, m, json, time);
        fclose(f);
        if (!printed) {
                ck_assert_uint_eq(n, 0);
                free(buf);
                return NULL;
        }
        return buf;
}

static char *event_capture(const Message *m, bool json) {
        return event_capture_at(m, json, NULL);
}

START_TEST(test_event_lines) {
        Shmem__PeerInfo pi = SHMEM__PEER_INFO__INIT;
        Shmem__Joined jo = SHMEM__JOINED__INIT;
        Shmem__Left le = SHMEM__LEFT__INIT;
        Shmem__StatusChanged sc = SHMEM__STATUS_CHANGED__INIT;
        Message m = SHMEM__MESSAGE__INIT;
        static const struct {
                Shmem__RegionState state;
                const char *text, *json;
        } states[] = {
                { SHMEM__REGION_STATE__DECLARED, "created r\n", "{\"event\":\"created\",\"region\":\"r\"}\n" },
                { SHMEM__REGION_STATE__ALLOCATED, "allocated r\n", "{\"event\":\"allocated\",\"region\":\"r\"}\n" },
                { SHMEM__REGION_STATE__FREED, "freed r\n", "{\"event\":\"freed\",\"region\":\"r\"}\n" },
                { SHMEM__REGION_STATE__DESTROYED, "destroyed r\n", "{\"event\":\"destroyed\",\"region\":\"r\"}\n" },
                { 9, "state r state=9\n", "{\"event\":\"state\",\"region\":\"r\",\"state\":9}\n" },
        };

        pi.index = 3;
        pi.kind = SHMEM__PEER_KIND__KIND_HOST;
        pi.label = "my peer\\\n";
        pi.pid = 42;
        pi.fd = -1;
        pi.doorbell_id = 7;
        jo.name = "r";
        jo.epoch = 5;
        jo.peer = &pi;
        m.body_case = SHMEM__MESSAGE__BODY_JOINED;
        m.joined = &jo;
        ck_assert_str_eq(event_region(&m), "r");
        {
                _cleanup_free_ char *text = event_capture(&m, false), *json = event_capture(&m, true);

                /* The label cannot split the line or its fields. */
                ck_assert_str_eq(text, "joined r index=3 kind=host pid=42 epoch=5 label=my\\x20peer\\x5c\\x0a\n");
                ck_assert_str_eq(json, "{\"event\":\"joined\",\"region\":\"r\",\"index\":3,\"kind\":\"host\","
                                       "\"label\":\"my peer\\\\\\n\",\"pid\":42,\"doorbell_id\":7,\"epoch\":5}\n");
        }

        le.name = "r";
        le.epoch = 6;
        le.index = 3;
        m.body_case = SHMEM__MESSAGE__BODY_LEFT;
        m.left = &le;
        {
                _cleanup_free_ char *text = event_capture(&m, false), *json = event_capture(&m, true);

                ck_assert_str_eq(text, "left r index=3 epoch=6\n");
                ck_assert_str_eq(json, "{\"event\":\"left\",\"region\":\"r\",\"index\":3,\"epoch\":6}\n");
        }

        sc.name = "r";
        m.body_case = SHMEM__MESSAGE__BODY_STATUS;
        m.status = &sc;
        for (size_t i = 0; i < ELEMENTSOF(states); i++) {
                sc.state = states[i].state;
                _cleanup_free_ char *text = event_capture(&m, false), *json = event_capture(&m, true);

                ck_assert_str_eq(text, states[i].text);
                ck_assert_str_eq(json, states[i].json);
        }

        /* Replies and requests are not events; a Joined without its peer is not shown. */
        m.body_case = SHMEM__MESSAGE__BODY_LIST;
        m.list = &(Shmem__List) SHMEM__LIST__INIT;
        ck_assert_ptr_null(event_region(&m));
        ck_assert_ptr_null(event_capture(&m, false));
        jo.peer = NULL;
        m.body_case = SHMEM__MESSAGE__BODY_JOINED;
        m.joined = &jo;
        ck_assert_ptr_null(event_capture(&m, true));
}
END_TEST

/* watch --timestamps: the time first, the line as without it; in JSON the first member. */
START_TEST(test_event_lines_with_time) {
        static const char time[] = "2026-12-01T14:35:59.000042+00:00";
        Shmem__Left le = SHMEM__LEFT__INIT;
        Message m = SHMEM__MESSAGE__INIT;

        le.name = "r";
        le.epoch = 6;
        le.index = 3;
        m.body_case = SHMEM__MESSAGE__BODY_LEFT;
        m.left = &le;
        {
                _cleanup_free_ char *text = event_capture_at(&m, false, time), *json = event_capture_at(&m, true, time);

                ck_assert_str_eq(text, "2026-12-01T14:35:59.000042+00:00 left r index=3 epoch=6\n");
                ck_assert_str_eq(json, "{\"time\":\"2026-12-01T14:35:59.000042+00:00\",\"event\":\"left\","
                                       "\"region\":\"r\",\"index\":3,\"epoch\":6}\n");
        }
        /* What is not an event stays unprinted, time or not. */
        m.body_case = SHMEM__MESSAGE__BODY_LIST;
        m.list = &(Shmem__List) SHMEM__LIST__INIT;
        ck_assert_ptr_null(event_capture_at(&m, false, time));
}
END_TEST

static Suite *shmemctl_suite(void) {
        Suite *s = suite_create("shmemctl");
        TCase *tc;

        tc = tcase_new("units");
        tcase_add_test(tc, test_parse_size);
        tcase_add_test(tc, test_parse_mask);
        tcase_add_test(tc, test_format_size);
        tcase_add_test(tc, test_format_bits);
        tcase_add_test(tc, test_format_time);
        tcase_add_test(tc, test_format_duration);
        suite_add_tcase(s, tc);

        tc = tcase_new("json");
        tcase_add_test(tc, test_json_escaping);
        tcase_add_test(tc, test_json_document);
        tcase_add_test(tc, test_json_pretty);
        suite_add_tcase(s, tc);

        tc = tcase_new("hexdump");
        tcase_add_test(tc, test_hexdump_layout);
        tcase_add_test(tc, test_hexdump_repeats);
        tcase_add_test(tc, test_hexdump_run_ends);
        suite_add_tcase(s, tc);

        tc = tcase_new("events");
        tcase_add_test(tc, test_event_lines);
        tcase_add_test(tc, test_event_lines_with_time);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return run_suite(shmemctl_suite());
}
