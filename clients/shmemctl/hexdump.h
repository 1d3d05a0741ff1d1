/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * hexdump: shmemctl dump's output, the layout of `hexdump -C`: the offset,
 * 16 bytes in hex in two groups of 8, the same bytes as text (printable ASCII,
 * else '.'); a run of full lines equal to the one before is shown as one "*";
 * the last line is the offset just past the end. Bytes come in pieces of any
 * size, so that a large region is never copied whole.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define HEXDUMP_LINE 16

typedef struct Hexdump {
        FILE *f;
        uint64_t offset; /* of line[0] */
        uint8_t line[HEXDUMP_LINE], prev[HEXDUMP_LINE];
        size_t n;        /* bytes in line */
        bool have_prev;  /* prev holds the last full line */
        bool starred;    /* "*" printed for the run prev belongs to */
} Hexdump;

/* @offset: what the first byte is shown as (its offset in the data area). */
void hexdump_init(Hexdump *h, FILE *f, uint64_t offset);
void hexdump_feed(Hexdump *h, const void *p, size_t n);
/* Prints what is left and the end offset. */
void hexdump_end(Hexdump *h);
