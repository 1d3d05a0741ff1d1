/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* units: sizes and times as people type and read them. Binary multiples: 1K = 1024. */

#include <stddef.h>
#include <stdint.h>

#define UNITS_SIZE_STR_MAX 32

/*
 * units_parse_size() - "4096", "64K", "1M", "2G", "1T"; the suffix is
 * case-insensitive and may be followed by "B" or "iB" ("64KiB"); a bare "B"
 * is allowed too. No sign, no spaces.
 * Return: 0 with *ret, -EINVAL if it is not a size, -ERANGE if it overflows.
 */
int units_parse_size(const char *s, uint64_t *ret);

/*
 * units_parse_mask() - a peer bitmask: decimal ("5") or hexadecimal with 0x
 * ("0x5"). No sign, no spaces, no octal: "010" is ten.
 * Return: 0 with *ret, -EINVAL if it is not a number, -ERANGE beyond 64 bits.
 */
int units_parse_mask(const char *s, uint64_t *ret);

/*
 * units_format_size() - @v with the largest suffix that divides it exactly
 * ("64K", "1G", "100000"), so that what is shown is exact and parses back.
 * Return: @buf.
 */
char *units_format_size(char buf[static UNITS_SIZE_STR_MAX], uint64_t v);

/* units_format_bits() - "0,2,5" for the indices of bits set in @bits, "-" for none. Return: @buf. */
#define UNITS_BITS_STR_MAX (64 * 3 + 1)
char *units_format_bits(char buf[static UNITS_BITS_STR_MAX], uint64_t bits);

/*
 * units_format_time() - @usec (CLOCK_REALTIME, microseconds since the epoch)
 * as ISO 8601 local time with microseconds and the UTC offset, as journalctl
 * -o short-iso-precise: "2026-12-01T14:35:59.123456+00:00". Return: @buf.
 */
#define UNITS_TIME_STR_MAX 40
char *units_format_time(char buf[static UNITS_TIME_STR_MAX], uint64_t usec);

/* units_format_duration() - "3s", "2min 3s", "1h 2min", "4d 1h": the two largest units. Return: @buf. */
#define UNITS_DURATION_STR_MAX 32
char *units_format_duration(char buf[static UNITS_DURATION_STR_MAX], uint64_t usec);
