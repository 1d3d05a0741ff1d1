/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What the benches do with their samples: the monotonic clock every
 * component reads (proto/clock.h's now_ns()), sorted in place, and a
 * percentile by nearest rank.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "clock.h"

static inline int samples_cmp(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

/* The @p quantile (0 to 1) of @n samples sorted with samples_cmp. */
static inline uint64_t samples_percentile(const uint64_t *v, size_t n, double p) {
        size_t i = (size_t) (p * (double) (n - 1) + 0.5);

        return v[i < n ? i : n - 1];
}
