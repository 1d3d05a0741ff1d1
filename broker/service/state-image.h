/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * StateImage: the stored state as bytes in a memfd (docs/persistence.md, "The
 * stored image"): a header, a snapshot (a whole State), then a log of changes
 * (each a State that says what was put and what removed, proto/state.proto),
 * every one a record framed by its length and CRC-32C:
 *
 *     "\0shmst\x02\n"  then records:  u32 length (LE) | u32 crc32c (LE) | length bytes
 *
 * A change is appended with pwrite() to the memfd the fd store already holds:
 * no new FDSTORE. A record torn by a kill -9 in the middle of its write, or
 * damaged, ends the log: what came before it is read. When the log outgrows
 * its bound (twice the snapshot, at least STATE_LOG_FLOOR) the caller writes
 * a new image (state_image_new()) in its place.
 *
 * An image of a broker before the log is one bare packed State (its first
 * byte is a protobuf tag, never 0): state_parse() reads both.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "state-build.h"

#define STATE_VERSION 1
#define STATE_SIZE_MAX (64 << 20)             /* one record: a snapshot, or one change */
#define STATE_IMAGE_MAX (4 * STATE_SIZE_MAX)  /* a snapshot and its log */
#define STATE_LOG_FLOOR (64 << 10)            /* the log may always grow this far */
#define STATE_IMAGE_MAGIC "\0shmst\x02\n"
#define STATE_IMAGE_MAGIC_SIZE 8
#define STATE_RECORD_HEADER 8

typedef struct StateImage {
        int fd;                /* the memfd (owned), -1 none */
        uint64_t size;         /* bytes written: the end of the last whole record */
        uint64_t snapshot_end; /* where the log starts */
} StateImage;

#define STATE_IMAGE_NONE ((StateImage) { .fd = -1 })

/*
 * state_image_new() - a new memfd with @snapshot (version set here) as its
 * first record. Returns 0, -E2BIG (over STATE_SIZE_MAX), -errno.
 */
int state_image_new(StateImage *ret, State *snapshot);

/*
 * state_image_append() - appends @change as one record. Returns 0, or -errno
 * (-E2BIG: past STATE_IMAGE_MAX): then what the image holds is unknown past
 * its last whole record and nothing may be appended; write a new image.
 */
int state_image_append(StateImage *img, State *change);

/* Whether the log outgrew its bound: time for a new snapshot. */
bool state_image_full(const StateImage *img);

void state_image_close(StateImage *img);

/* The record framing of @n payload bytes at @out (STATE_RECORD_HEADER bytes). */
void state_record_header(uint8_t out[STATE_RECORD_HEADER], const uint8_t *payload, size_t n);
uint32_t state_crc32c(const uint8_t *p, size_t n);

/*
 * state_parse() - the state an image of @n bytes holds: its snapshot with
 * every whole record after it applied, or an older image's bare State. NULL
 * if its snapshot is not whole, not of STATE_VERSION, or out of memory. Free
 * with state_free().
 */
State *state_parse(const uint8_t *buf, size_t n);
/* state_parse() of a stored image's memfd (borrowed). */
State *state_read(int fd);
void state_free(State *s);
static inline void state_freep(State **s) {
        state_free(*s);
}
