/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Notify: the service manager's notification socket ($NOTIFY_SOCKET,
 * sd_notify(3)'s protocol): READY=1, STATUS=, WATCHDOG=1, STOPPING=1, and
 * FDSTORE=1 with an fd. Without $NOTIFY_SOCKET every send succeeds and does
 * nothing.
 */

#include <stdbool.h>

typedef struct Notify Notify;

/* Connects to $NOTIFY_SOCKET if set (-errno if set but unreachable). */
int notify_new(Notify **ret);
Notify *notify_free(Notify *n);

/* Whether a service manager listens. */
bool notify_enabled(const Notify *n);

/*
 * notify_send() - one datagram of @text with @fd (borrowed; -1 for none).
 * Returns 0 or -errno; the first failure is logged (a store that refuses,
 * FileDescriptorStoreMax= reached, must not flood the log).
 */
int notify_send(Notify *n, const char *text, int fd);

/* The watchdog interval systemd asked for ($WATCHDOG_USEC, for this pid), 0 for none. */
unsigned long long notify_watchdog_usec(void);
