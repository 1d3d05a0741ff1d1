/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Listening Unix sockets that are connectable the moment their path exists:
 * bound to a temporary name beside the path, set listening, given their mode
 * and group, and only then renamed to the path. A client that finds the path
 * never gets ECONNREFUSED from a socket bound but not yet listening.
 */

#include <stdbool.h>
#include <sys/types.h>

/*
 * socket_listen() - a listening socket of @type (SOCK_SEQPACKET, SOCK_STREAM)
 * at @path, non-blocking and close-on-exec, with @mode and group @gid
 * ((gid_t) -1: the process's).
 * @refuse_live: if a socket at @path answers a connect, fail with -EADDRINUSE
 *               (another broker serves it); else a file there is replaced.
 * Returns 0 with *ret_fd, or a negative errno (-ENAMETOOLONG: @path does not fit sockaddr_un).
 */
int socket_listen(const char *path, int type, mode_t mode, gid_t gid, bool refuse_live, int *ret_fd);
