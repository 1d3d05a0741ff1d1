/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Ownership helpers used by every component (systemd's conventions). */

#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_close_ _cleanup_(fd_closep)
#define _cleanup_free_ _cleanup_(freep)

/* Closes @fd if valid; returns -1 so that `fd = fd_close(fd);` reads well. */
static inline int fd_close(int fd) {
        if (fd >= 0)
                (void) close(fd);
        return -1;
}
static inline void fd_closep(int *fd) { fd_close(*fd); }
/* Closes every fd in @fds[0..n), setting each to -1. */
static inline void fds_close(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                fds[i] = fd_close(fds[i]);
}
/* Frees @p; returns NULL so that `p = mfree(p);` reads well. */
static inline void *mfree(void *p) {
        free(p);
        return NULL;
}
static inline void freep(void *p) { free(*(void **) p); }

/* Hands ownership of an fd or pointer on: returns the value, leaves -1 / NULL. */
#define TAKE_FD(fd) ({ int _t = (fd); (fd) = -1; _t; })
#define TAKE_PTR(p) ({ __typeof__(p) _t = (p); (p) = NULL; _t; })

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))
#define BIT(i) (UINT64_C(1) << (i))
