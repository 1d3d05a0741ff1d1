/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Map: a hash map from a key to a pointer, for every lookup the broker makes
 * by a name or an id (regions by name, peers by connection id, accounts by
 * uid). Open addressing with linear probing and backward-shift deletion (no
 * tombstones), grown at 3/4 full. Keys are hashed with SipHash-1-3 under a
 * key drawn at random per map, so that names a peer chooses cannot be made to
 * collide on purpose.
 *
 * String keys are borrowed: the string must live as long as its entry
 * (usually it is a field of the value). Integer keys are copied.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum MapKeyKind {
        MAP_KEY_STRING, /* const char *, NUL-terminated */
        MAP_KEY_U64,    /* uint64_t, passed by address */
} MapKeyKind;

typedef struct Map Map;

int map_new(Map **ret, MapKeyKind kind);
Map *map_free(Map *m);
static inline void map_freep(Map **m) {
        map_free(*m);
}

/* The value stored under @key, or NULL. */
void *map_get(const Map *m, const void *key);

/*
 * map_put() - store @value (not NULL) under @key.
 * Returns 0, -EEXIST if @key is there already (nothing changed), -ENOMEM.
 */
int map_put(Map *m, const void *key, void *value);

/* Removes @key; returns its value, or NULL if it was not there. */
void *map_remove(Map *m, const void *key);

size_t map_size(const Map *m);

/*
 * map_next() - iterate: start with *@cursor = 0; returns false at the end.
 * The map must not change during an iteration, except for map_remove() of
 * the entry just returned, which may move a later entry before the cursor:
 * restart from 0 after a removal, or collect first.
 */
bool map_next(const Map *m, size_t *cursor, void **ret_value);

/* SipHash-1-3 of @n bytes under the 16-byte @key (exposed for tests). */
uint64_t map_siphash13(const uint8_t key[16], const void *data, size_t n);
