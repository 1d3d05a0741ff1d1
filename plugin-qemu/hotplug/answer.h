/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * answer: what every mode of shmem-hotplug shares: its one line of answer on
 * stdout ("ok ..." or "error CODE DETAIL", DETAIL escaped), its exit
 * statuses, its debug lines on stderr and the parsing of its numbers. The
 * contract of the line is in shmem-hotplug.c's header comment.
 */

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

enum {
        EXIT_OK = 0,
        EXIT_USAGE = 1,
        EXIT_NO_SLOT = 2,
        EXIT_QMP = 3,         /* QEMU, or libvirt, refused */
        EXIT_UNREACHABLE = 4, /* and timeout */
};

#define DEFAULT_TIMEOUT_MS 10000u
#define TIMEOUT_MS_MAX 3600000u
#define VECTORS_MAX 2048u /* MSI-X */
#define DETAIL_MAX 512

/* --verbose; when the run started (CLOCK_MONOTONIC, ns), for the debug lines. */
extern bool hotplug_verbose;
extern int64_t hotplug_started_ns;

/* "shmem-hotplug: [MS ms] ..." on stderr, with --verbose only. */
__attribute__((format(printf, 1, 2))) void debug(const char *fmt, ...);

/* Prints the answer line "WORD DETAIL" (DETAIL escaped); returns @status. */
__attribute__((format(printf, 3, 0))) int answerv(int status, const char *word, const char *fmt, va_list ap);
__attribute__((format(printf, 3, 4))) int answer(int status, const char *word, const char *fmt, ...);

/* "error usage DETAIL" and a pointer to --help on stderr; returns EXIT_USAGE. */
__attribute__((format(printf, 1, 2))) int usage_error(const char *fmt, ...);

/* A decimal number in [@min, @max], nothing around it. */
bool parse_number(const char *s, uint64_t min, uint64_t max, uint64_t *ret);
