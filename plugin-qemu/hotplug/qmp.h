/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A QMP client (QEMU's docs/interop/qmp-spec): one command at a time on a
 * monitor socket, every wait bounded by one deadline for the whole
 * connection. QEMU ends every message with a newline and escapes control
 * characters inside strings, so a message is a line; each is parsed with
 * json-c in strict mode.
 *
 * Errors: 0 ok; QMP_ERROR (>0) QEMU answered the command with an error;
 * -ETIMEDOUT the deadline passed; -ECONNRESET QEMU closed the monitor;
 * -EPROTO what came is not QMP (no greeting, not JSON, a reply to another
 * command); -EMSGSIZE a message over QMP_MESSAGE_MAX; other -errno of the
 * socket calls.
 */

#include <stdint.h>

struct json_object;

#define QMP_ERROR 1
#define QMP_MESSAGE_MAX (8u << 20) /* query-pci of a large machine is some 100 KiB */

typedef struct Qmp Qmp;

/* Called for each asynchronous event read while waiting for something else. */
typedef void (*QmpEventFn)(const char *event, struct json_object *data, void *userdata);

/*
 * qmp_new() - a client on the connected stream socket @fd (consumed, also
 * on error), every wait ending at @deadline_ns (CLOCK_MONOTONIC, proto/clock.h).
 * Reads the greeting; does not negotiate capabilities.
 */
int qmp_new(Qmp **ret, int fd, int64_t deadline_ns);

/*
 * qmp_connect() - qmp_new() on a connection to the Unix socket @path,
 * made without blocking past @deadline_ns.
 */
int qmp_connect(Qmp **ret, const char *path, int64_t deadline_ns);

/* NULL-safe; closes the connection. Returns NULL. */
Qmp *qmp_free(Qmp *q);

/* Events read from now on go to @fn (NULL: dropped). */
void qmp_on_event(Qmp *q, QmpEventFn fn, void *userdata);

/*
 * qmp_execute() - runs @command with @arguments (consumed; NULL: none) and
 * waits for its reply, passing events on meanwhile. 0: *@ret_value (if
 * non-NULL) is a reference to the "return" value (json_object_put() it).
 * QMP_ERROR: *@ret_value is QEMU's "error" object (class, desc).
 */
int qmp_execute(Qmp *q, const char *command, struct json_object *arguments, struct json_object **ret_value);

/* qmp_read_event() - waits for the next message, which must be an event, and passes it on. */
int qmp_read_event(Qmp *q);

/*
 * qmp_error_class() / qmp_error_desc() - the members of an "error" object
 * from qmp_execute(), "" where missing. Valid while the object lives.
 */
const char *qmp_error_class(struct json_object *error);
const char *qmp_error_desc(struct json_object *error);
