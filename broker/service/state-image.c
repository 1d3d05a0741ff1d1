/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"
#include "map.h"
#include "state-image.h"

/* --- framing -------------------------------------------------------------------- */

/* CRC-32C (Castagnoli, reflected 0x82F63B78), a table of 256 built on first use. */
uint32_t state_crc32c(const uint8_t *p, size_t n) {
        static uint32_t table[256];
        uint32_t crc = 0xffffffffu;

        if (!table[1])
                for (uint32_t i = 0; i < 256; i++) {
                        uint32_t c = i;

                        for (int k = 0; k < 8; k++)
                                c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
                        table[i] = c;
                }
        while (n--)
                crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
        return crc ^ 0xffffffffu;
}

static void put_le32(uint8_t *out, uint32_t v) {
        for (int i = 0; i < 4; i++)
                out[i] = (uint8_t) (v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *in) {
        return (uint32_t) in[0] | (uint32_t) in[1] << 8 | (uint32_t) in[2] << 16 | (uint32_t) in[3] << 24;
}

void state_record_header(uint8_t out[STATE_RECORD_HEADER], const uint8_t *payload, size_t n) {
        put_le32(out, (uint32_t) n);
        put_le32(out + 4, state_crc32c(payload, n));
}

/* @s packed into one framed record at *@ret (malloc'd), its size in *@ret_n. */
static int record_pack(State *s, uint8_t **ret, size_t *ret_n) {
        size_t n;
        uint8_t *buf;

        s->version = STATE_VERSION;
        n = shmem__state__state__get_packed_size(s);
        if (n > STATE_SIZE_MAX)
                return -E2BIG;
        buf = malloc(STATE_RECORD_HEADER + n);
        if (!buf)
                return -ENOMEM;
        shmem__state__state__pack(s, buf + STATE_RECORD_HEADER);
        state_record_header(buf, buf + STATE_RECORD_HEADER, n);
        *ret = buf;
        *ret_n = STATE_RECORD_HEADER + n;
        return 0;
}

/* --- writing -------------------------------------------------------------------- */

static int write_at(int fd, const uint8_t *buf, size_t n, uint64_t offset) {
        while (n > 0) {
                ssize_t k = pwrite(fd, buf, n, (off_t) offset);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k < 0 ? -errno : -EIO;
                buf += k;
                n -= (size_t) k;
                offset += (uint64_t) k;
        }
        return 0;
}

int state_image_new(StateImage *ret, State *snapshot) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ uint8_t *buf = NULL;
        size_t n;
        int r;

        r = record_pack(snapshot, &buf, &n);
        if (r < 0)
                return r;
        fd = memfd_create("shmem-broker-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return -errno;
        r = write_at(fd, (const uint8_t *) STATE_IMAGE_MAGIC, STATE_IMAGE_MAGIC_SIZE, 0);
        if (r >= 0)
                r = write_at(fd, buf, n, STATE_IMAGE_MAGIC_SIZE);
        if (r < 0)
                return r;
        /* It only grows: what a successor reads was written whole, or is a torn last record. */
        (void) fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL);
        *ret = (StateImage) { .fd = TAKE_FD(fd), .size = STATE_IMAGE_MAGIC_SIZE + n,
                              .snapshot_end = STATE_IMAGE_MAGIC_SIZE + n };
        return 0;
}

int state_image_append(StateImage *img, State *change) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t n;
        int r;

        r = record_pack(change, &buf, &n);
        if (r < 0)
                return r;
        if (img->size + n > STATE_IMAGE_MAX)
                return -E2BIG;
        /* One pwrite(): a kill -9 can still stop it between pages, and the CRC tells. */
        r = write_at(img->fd, buf, n, img->size);
        if (r < 0)
                return r;
        img->size += n;
        return 0;
}

bool state_image_full(const StateImage *img) {
        uint64_t snapshot = img->snapshot_end - STATE_IMAGE_MAGIC_SIZE, log = img->size - img->snapshot_end;

        return log > STATE_LOG_FLOOR && log > 2 * snapshot;
}

void state_image_close(StateImage *img) {
        fd_close(img->fd);
        *img = STATE_IMAGE_NONE;
}

/* --- reading -------------------------------------------------------------------- */

/* The payload of the record at *@off of @buf, if it is whole; *@off moves past it. */
static const uint8_t *record_next(const uint8_t *buf, size_t n, size_t *off, size_t *ret_len) {
        size_t len;

        if (n - *off < STATE_RECORD_HEADER)
                return NULL;
        len = get_le32(buf + *off);
        if (len > STATE_SIZE_MAX || len > n - *off - STATE_RECORD_HEADER ||
            state_crc32c(buf + *off + STATE_RECORD_HEADER, len) != get_le32(buf + *off + 4))
                return NULL;
        *ret_len = len;
        *off += STATE_RECORD_HEADER + len;
        return buf + *off - len;
}

/* A state being rebuilt from its log: its regions by name, its conns by id (the index + 1). */
typedef struct Replay {
        State *s;
        Map *regions, *conns;
} Replay;

static void *slot(size_t i) {
        return (void *) (uintptr_t) (i + 1);
}

static size_t index_of(void *v) {
        return (size_t) (uintptr_t) v - 1;
}

static int replay_index(Replay *rp) {
        if (map_new(&rp->regions, MAP_KEY_STRING) < 0 || map_new(&rp->conns, MAP_KEY_U64) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < rp->s->n_regions; i++)
                if (map_put(rp->regions, rp->s->regions[i]->name, slot(i)) == -ENOMEM)
                        return -ENOMEM;
        for (size_t i = 0; i < rp->s->n_conns; i++)
                if (map_put(rp->conns, &rp->s->conns[i]->id, slot(i)) == -ENOMEM)
                        return -ENOMEM;
        return 0;
}

static void replay_remove_region(Replay *rp, const char *name) {
        void *v = map_remove(rp->regions, name);

        if (v) {
                shmem__state__region__free_unpacked(rp->s->regions[index_of(v)], NULL);
                rp->s->regions[index_of(v)] = NULL;
        }
}

static void replay_remove_conn(Replay *rp, uint64_t id) {
        void *v = map_remove(rp->conns, &id);

        if (v) {
                shmem__state__conn__free_unpacked(rp->s->conns[index_of(v)], NULL);
                rp->s->conns[index_of(v)] = NULL;
        }
}

/* Appends @e (taken) to the array *@a of *@n: replaced in place is the caller's business. */
static int array_append(void ***a, size_t *n, void *e) {
        void **grown = realloc(*a, (*n + 1) * sizeof(void *));

        if (!grown)
                return -ENOMEM;
        grown[(*n)++] = e;
        *a = grown;
        return 0;
}

/* Applies change @c to the state, taking its regions and conns (the arrays of @c emptied). */
static int replay_apply(Replay *rp, State *c) {
        State *s = rp->s;
        int r = 0;

        for (size_t i = 0; i < c->n_removed_regions; i++)
                replay_remove_region(rp, c->removed_regions[i]);
        for (size_t i = 0; i < c->n_removed_conns; i++)
                replay_remove_conn(rp, c->removed_conns[i]);
        /* A region put again keeps its place: the registry's order is the order of creation. */
        for (size_t i = 0; r >= 0 && i < c->n_regions; i++) {
                Shmem__State__Region *e = TAKE_PTR(c->regions[i]);
                void *v = map_remove(rp->regions, e->name);
                size_t at = v ? index_of(v) : s->n_regions;

                if (v) {
                        shmem__state__region__free_unpacked(s->regions[at], NULL);
                        s->regions[at] = e;
                } else if (array_append((void ***) &s->regions, &s->n_regions, e) < 0) {
                        shmem__state__region__free_unpacked(e, NULL);
                        r = -ENOMEM;
                        break;
                }
                r = map_put(rp->regions, e->name, slot(at));
        }
        for (size_t i = 0; r >= 0 && i < c->n_conns; i++) {
                Shmem__State__Conn *e = TAKE_PTR(c->conns[i]);
                void *v = map_remove(rp->conns, &e->id);
                size_t at = v ? index_of(v) : s->n_conns;

                if (v) {
                        shmem__state__conn__free_unpacked(s->conns[at], NULL);
                        s->conns[at] = e;
                } else if (array_append((void ***) &s->conns, &s->n_conns, e) < 0) {
                        shmem__state__conn__free_unpacked(e, NULL);
                        r = -ENOMEM;
                        break;
                }
                r = map_put(rp->conns, &e->id, slot(at));
        }
        s->next_conn_id = c->next_conn_id;
        return r;
}

/* Closes the holes removals left. */
static void compact(void **a, size_t *n) {
        size_t k = 0;

        for (size_t i = 0; i < *n; i++)
                if (a[i])
                        a[k++] = a[i];
        *n = k;
}

static State *parse_log(const uint8_t *buf, size_t n) {
        Replay rp = {};
        size_t off = STATE_IMAGE_MAGIC_SIZE, len;
        const uint8_t *p = record_next(buf, n, &off, &len);
        int r;

        rp.s = p ? shmem__state__state__unpack(NULL, len, p) : NULL;
        if (!rp.s)
                return NULL;
        /* The snapshot is a whole State of this version, or there is nothing to read. */
        r = rp.s->version == STATE_VERSION && rp.s->n_removed_regions == 0 && rp.s->n_removed_conns == 0
                    ? replay_index(&rp) : -EINVAL;
        while (r >= 0 && (p = record_next(buf, n, &off, &len))) {
                State *c = shmem__state__state__unpack(NULL, len, p);

                /* Whole and checked, yet not a change of this version: the log ends here too. */
                if (!c || c->version != STATE_VERSION) {
                        state_free(c);
                        break;
                }
                r = replay_apply(&rp, c);
                compact((void **) c->regions, &c->n_regions); /* what was taken from it */
                compact((void **) c->conns, &c->n_conns);
                state_free(c);
        }
        compact((void **) rp.s->regions, &rp.s->n_regions);
        compact((void **) rp.s->conns, &rp.s->n_conns);
        map_free(rp.regions);
        map_free(rp.conns);
        if (r < 0) {
                state_free(rp.s);
                return NULL;
        }
        return rp.s;
}

State *state_parse(const uint8_t *buf, size_t n) {
        State *s;

        if (n >= STATE_IMAGE_MAGIC_SIZE && memcmp(buf, STATE_IMAGE_MAGIC, STATE_IMAGE_MAGIC_SIZE) == 0)
                return parse_log(buf, n);
        /* An image before the log: one bare State. */
        s = shmem__state__state__unpack(NULL, n, buf);
        if (s && s->version != STATE_VERSION) {
                shmem__state__state__free_unpacked(s, NULL);
                return NULL;
        }
        return s;
}

State *state_read(int fd) {
        struct stat st;
        uint8_t *map;
        State *s;

        if (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size > STATE_IMAGE_MAX)
                return NULL;
        map = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED)
                return NULL;
        s = state_parse(map, (size_t) st.st_size);
        munmap(map, (size_t) st.st_size);
        return s;
}

void state_free(State *s) {
        if (s)
                shmem__state__state__free_unpacked(s, NULL);
}
