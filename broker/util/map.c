/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "map.h"

#define MAP_MIN_CAPACITY 16

typedef struct MapEntry {
        uint64_t hash;
        uint64_t u64;       /* MAP_KEY_U64 */
        const char *string; /* MAP_KEY_STRING (borrowed) */
        void *value;        /* NULL: free slot */
} MapEntry;

struct Map {
        MapKeyKind kind;
        uint8_t seed[16];
        MapEntry *entries;
        size_t capacity; /* a power of two, or 0 */
        size_t n;
};

static uint64_t rotl(uint64_t x, unsigned b) {
        return (x << b) | (x >> (64 - b));
}

#define SIPROUND(v0, v1, v2, v3)                                                          \
        do {                                                                              \
                v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);                 \
                v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                                    \
                v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                                    \
                v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);                 \
        } while (0)

static uint64_t load64le(const uint8_t *p) {
        uint64_t v = 0;

        for (unsigned i = 0; i < 8; i++)
                v |= (uint64_t) p[i] << (8 * i);
        return v;
}

/* From the SipHash paper (Aumasson, Bernstein 2012): c = 1 compression, d = 3 finalization rounds. */
uint64_t map_siphash13(const uint8_t key[16], const void *data, size_t n) {
        const uint8_t *in = data;
        uint64_t k0 = load64le(key), k1 = load64le(key + 8);
        uint64_t v0 = k0 ^ UINT64_C(0x736f6d6570736575), v1 = k1 ^ UINT64_C(0x646f72616e646f6d),
                 v2 = k0 ^ UINT64_C(0x6c7967656e657261), v3 = k1 ^ UINT64_C(0x7465646279746573);
        uint64_t b = (uint64_t) n << 56, m;
        size_t i;

        for (i = 0; i + 8 <= n; i += 8) {
                m = load64le(in + i);
                v3 ^= m;
                SIPROUND(v0, v1, v2, v3);
                v0 ^= m;
        }
        for (size_t k = 0; i + k < n; k++)
                b |= (uint64_t) in[i + k] << (8 * k);
        v3 ^= b;
        SIPROUND(v0, v1, v2, v3);
        v0 ^= b;
        v2 ^= 0xff;
        SIPROUND(v0, v1, v2, v3);
        SIPROUND(v0, v1, v2, v3);
        SIPROUND(v0, v1, v2, v3);
        return v0 ^ v1 ^ v2 ^ v3;
}

int map_new(Map **ret, MapKeyKind kind) {
        Map *m = calloc(1, sizeof(*m));

        if (!m)
                return -ENOMEM;
        m->kind = kind;
        if (getrandom(m->seed, sizeof(m->seed), GRND_NONBLOCK) != (ssize_t) sizeof(m->seed)) {
                /* Early boot without entropy: the map works, collisions are merely guessable. */
                uint64_t t = (uint64_t) time(NULL) ^ ((uint64_t) getpid() << 32) ^ (uint64_t) (uintptr_t) m;

                memcpy(m->seed, &t, sizeof(t));
        }
        *ret = m;
        return 0;
}

Map *map_free(Map *m) {
        if (!m)
                return NULL;
        free(m->entries);
        free(m);
        return NULL;
}

static uint64_t map_hash(const Map *m, const void *key) {
        if (m->kind == MAP_KEY_STRING)
                return map_siphash13(m->seed, key, strlen(key));
        return map_siphash13(m->seed, key, sizeof(uint64_t));
}

static bool entry_is(const Map *m, const MapEntry *e, uint64_t hash, const void *key) {
        if (!e->value || e->hash != hash)
                return false;
        if (m->kind == MAP_KEY_STRING)
                return strcmp(e->string, key) == 0;
        return e->u64 == *(const uint64_t *) key;
}

/* The slot holding @key, or the free slot where it would go. */
static size_t map_slot(const Map *m, uint64_t hash, const void *key) {
        size_t mask = m->capacity - 1, i = hash & mask;

        while (m->entries[i].value && !entry_is(m, &m->entries[i], hash, key))
                i = (i + 1) & mask;
        return i;
}

void *map_get(const Map *m, const void *key) {
        uint64_t hash;

        if (!m || m->n == 0)
                return NULL;
        hash = map_hash(m, key);
        return m->entries[map_slot(m, hash, key)].value;
}

static int map_grow(Map *m) {
        size_t capacity = m->capacity ? m->capacity * 2 : MAP_MIN_CAPACITY;
        MapEntry *old = m->entries, *entries;
        size_t old_capacity = m->capacity;

        if (capacity < m->capacity || capacity > SIZE_MAX / sizeof(MapEntry))
                return -ENOMEM;
        entries = calloc(capacity, sizeof(MapEntry));
        if (!entries)
                return -ENOMEM;
        m->entries = entries;
        m->capacity = capacity;
        for (size_t i = 0; i < old_capacity; i++)
                if (old[i].value) {
                        size_t k = old[i].hash & (capacity - 1);

                        while (entries[k].value)
                                k = (k + 1) & (capacity - 1);
                        entries[k] = old[i];
                }
        free(old);
        return 0;
}

int map_put(Map *m, const void *key, void *value) {
        uint64_t hash = map_hash(m, key);
        MapEntry *e;
        int r;

        if (!value)
                return -EINVAL;
        if (m->capacity && map_get(m, key))
                return -EEXIST;
        if ((m->n + 1) * 4 > m->capacity * 3) {
                r = map_grow(m);
                if (r < 0)
                        return r;
        }
        e = &m->entries[map_slot(m, hash, key)];
        *e = (MapEntry) { .hash = hash, .value = value };
        if (m->kind == MAP_KEY_STRING)
                e->string = key;
        else
                e->u64 = *(const uint64_t *) key;
        m->n++;
        return 0;
}

void *map_remove(Map *m, const void *key) {
        size_t mask, i, k;
        uint64_t hash;
        void *value;

        if (!m || m->n == 0)
                return NULL;
        hash = map_hash(m, key);
        mask = m->capacity - 1;
        i = map_slot(m, hash, key);
        value = m->entries[i].value;
        if (!value)
                return NULL;
        /* Backward shift: pull later entries of the run into the hole if their home allows. */
        for (k = (i + 1) & mask; m->entries[k].value; k = (k + 1) & mask) {
                size_t home = m->entries[k].hash & mask;

                /* Movable unless home lies cyclically in (i, k]. */
                if ((k > i && (home <= i || home > k)) || (k < i && home <= i && home > k)) {
                        m->entries[i] = m->entries[k];
                        i = k;
                }
        }
        m->entries[i] = (MapEntry) {};
        m->n--;
        return value;
}

size_t map_size(const Map *m) {
        return m ? m->n : 0;
}

bool map_next(const Map *m, size_t *cursor, void **ret_value) {
        if (!m)
                return false;
        for (; *cursor < m->capacity; (*cursor)++)
                if (m->entries[*cursor].value) {
                        *ret_value = m->entries[(*cursor)++].value;
                        return true;
                }
        return false;
}
