/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What shmem-tool's modules share (shmem-tool.c, commands.c, raw.c): the
 * state of a run, the type of a command table, the output lines and the
 * parsing of numbers.
 */

#include <stdint.h>

#include "shmem.h"

#ifdef SHMEM_TOOL_GUEST
#include "ivshmem-dev.h"
#endif

/* Which commands a run knows: Command.modes is a mask of these. */
enum {
        MODE_SHMEM = 1 << 0, /* a region through libshmem(-guest) */
        MODE_RAW = 1 << 1,   /* shmem-guest --raw: the ivshmem device alone */
};

typedef struct Tool {
        shmem_t *shm;
        uint64_t carry;      /* senders seen by wait-active, counted by the next wait-from */
        uint64_t carry_rang; /* rings seen by wait-active, counted by the next wait-rang */
        uint8_t *data;  /* what write/read/expect use: the region's data, or all of BAR2 */
        uint64_t size;
#ifdef SHMEM_TOOL_GUEST
        IvshmemDev dev; /* raw mode */
#endif
} Tool;

typedef int (*command_fn)(Tool *t, char **args);

typedef struct Command {
        const char *name;
        int nargs;
        command_fn fn;
        unsigned modes;
} Command;

/* Prints "shmem-tool: " and the line. */
void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints the FAIL line; returns -1 so that `return fail(...)` ends the run. */
int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Numbers are decimal or 0x-hex, never signed; sizes may end in K, M or G. 0, or -EINVAL. */
int parse_u64(const char *s, uint64_t *ret);
int parse_ms(const char *s, int *ret);
int parse_size(const char *s, uint64_t *ret);
