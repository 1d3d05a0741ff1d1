/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Helpers shared by the fuzz targets (header-only: each target is one
 * program): reading an input as records, and the fd-leak check every
 * target makes after every input (docs/fuzzing.md).
 */

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"

/* An input, consumed from the front. Reads past the end give zeros. */
typedef struct FuzzInput {
        const uint8_t *p;
        size_t n;
} FuzzInput;

static inline uint8_t fuzz_u8(FuzzInput *in) {
        if (in->n == 0)
                return 0;
        in->n--;
        return *in->p++;
}

static inline uint16_t fuzz_u16(FuzzInput *in) {
        uint16_t lo = fuzz_u8(in);

        return (uint16_t) (lo | fuzz_u8(in) << 8);
}

/* The next record: a little-endian u16 length, then that many bytes (fewer at the end). */
static inline const uint8_t *fuzz_record(FuzzInput *in, size_t *ret_n) {
        const uint8_t *p;
        size_t n = fuzz_u16(in);

        if (n > in->n)
                n = in->n;
        p = in->p;
        in->p += n;
        in->n -= n;
        *ret_n = n;
        return p;
}

/* Open fds of this process, counted without opening anything that stays open. */
static inline int fuzz_count_fds(void) {
        int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        char buf[4096] __attribute__((aligned(8)));
        ssize_t k;
        int n = 0;

        if (dir < 0)
                abort();
        while ((k = getdents64(dir, buf, sizeof(buf))) > 0)
                for (ssize_t off = 0; off < k;) {
                        const struct dirent64 *e = (const struct dirent64 *) (buf + off);

                        if (e->d_name[0] != '.')
                                n++;
                        off += e->d_reclen;
                }
        close(dir);
        return n - 1;
}

/* Aborts (a crash libFuzzer keeps) if this input left fds open or closed some it did not own. */
static inline void fuzz_check_fds(int before, const char *target) {
        int after = fuzz_count_fds();

        if (after != before) {
                fprintf(stderr, "%s: fd leak: %d fds open before the input, %d after\n", target, before, after);
                abort();
        }
}

/*
 * ASan's options for every run of a target, however started: string
 * functions are checked over the whole string, so a parser that runs past
 * an unterminated buffer is caught even where the bytes after it are zero.
 */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
        return "strict_string_checks=1:detect_stack_use_after_return=1";
}

/* Broker logging off unless $SHMEM_FUZZ_LOG is set (to reproduce a crash with its log). */
#define FUZZ_QUIET_LOGS()                                                \
        do {                                                             \
                if (!getenv("SHMEM_FUZZ_LOG"))                           \
                        log_set_max_level(-1);                           \
                else                                                     \
                        log_set_max_level(LOG_DEBUG);                    \
        } while (0)
