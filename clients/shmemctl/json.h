/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * json: a minimal streaming JSON writer for shmemctl --json: pretty (one
 * member a line, indented by 3 as libsmartcols' JSON of the tables is) for
 * the documents a command prints once, compact (one line) for watch's events;
 * commas handled by the writer. Strings are escaped per RFC 8259; bytes that
 * are not valid UTF-8 (labels come from peers) become U+FFFD, so the output
 * is always valid JSON.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_DEPTH_MAX 16

typedef struct Json {
        FILE *f;
        unsigned depth;
        bool first[JSON_DEPTH_MAX + 1]; /* nothing written yet at this depth */
        bool after_key;
        bool pretty;
} Json;

/* Compact: the whole document on one line (watch's JSON Lines). */
void json_init(Json *j, FILE *f);
/* Pretty: what a command prints once. */
void json_init_pretty(Json *j, FILE *f);
/* A small command's result on stdout, pretty: {"region": @region, ... (the caller adds the rest and ends it). */
void json_result_begin(Json *j, const char *region);

void json_object_begin(Json *j);
void json_object_end(Json *j);
void json_array_begin(Json *j);
void json_array_end(Json *j);

/* The key of the next value inside an object. */
void json_key(Json *j, const char *key);

void json_string(Json *j, const char *s);
/* A string that may be missing: null for NULL or "". */
void json_string_opt(Json *j, const char *s);
void json_uint(Json *j, uint64_t v);
void json_bool(Json *j, bool v);
void json_null(Json *j);
/* An array of the indices of the bits set in @bits, on one line in pretty output too. */
void json_bits(Json *j, uint64_t bits);

/* Writes @s as a quoted, escaped JSON string to @f. */
void json_write_string(FILE *f, const char *s);
