/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * One message of QEMU's ivshmem server protocol (proto/ivshmem-wire.h) onto
 * a QEMU connection: what region endpoints and the factory both send.
 */

#include <stdint.h>

#include "frontend.h"

/*
 * qemu_wire_send() - queue @value with a copy of @fd (borrowed; -1 for
 * none) on @c. Returns 0, or a negative errno after which @c is broken
 * (-ENOBUFS: it does not read; the caller says so in the log).
 */
int qemu_wire_send(FrontConn *c, int64_t value, int fd);
